#!/usr/bin/env python3
"""Writes the GGUF fuzzer's committed seed corpus (tests/fuzz/corpus).

Each seed is a small valid GGUF v3 file, so libFuzzer starts from inputs that reach past the
header: metadata of every value type, tensors of several types and ranks, and a tiny BPE and
SentencePiece tokenizer (the fuzz target builds a tokenizer when tokenizer.ggml.model is set).
Run from the repository root: python3 tests/fuzz/make_seeds.py
"""

from __future__ import annotations

import struct
from pathlib import Path

ALIGN = 32


def s(text: str) -> bytes:
    """A GGUF string: u64 length and the bytes."""
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def kv_str(key: str, value: str) -> bytes:
    return s(key) + struct.pack("<I", 8) + s(value)


def kv_u32(key: str, value: int) -> bytes:
    return s(key) + struct.pack("<II", 4, value)


def kv_f32(key: str, value: float) -> bytes:
    return s(key) + struct.pack("<If", 6, value)


def kv_str_array(key: str, values: list[str]) -> bytes:
    return s(key) + struct.pack("<IIQ", 9, 8, len(values)) + b"".join(s(v) for v in values)


def kv_f32_array(key: str, values: list[float]) -> bytes:
    return s(key) + struct.pack("<IIQ", 9, 6, len(values)) + struct.pack(
        f"<{len(values)}f", *values)


def kv_i32_array(key: str, values: list[int]) -> bytes:
    return s(key) + struct.pack("<IIQ", 9, 5, len(values)) + struct.pack(
        f"<{len(values)}i", *values)


# (ggml type id, values per block, bytes per block)
TYPES = {"f32": (0, 1, 4), "f16": (1, 1, 2), "q4_0": (2, 32, 18), "q8_0": (8, 32, 34)}


def gguf(kvs: list[bytes], tensors: list[tuple[str, list[int], str]]) -> bytes:
    """A GGUF v3 file with these metadata entries and tensors (data: a byte pattern)."""
    infos, blobs, offset = b"", b"", 0
    for name, dims, type_name in tensors:
        type_id, per_block, block_bytes = TYPES[type_name]
        count = 1
        for d in dims:
            count *= d
        size = count // per_block * block_bytes
        infos += s(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        infos += struct.pack("<IQ", type_id, offset)
        blob = bytes((i * 7 + 3) % 251 for i in range(size))
        if type_name in ("q4_0", "q8_0"):  # small fp16 scales (0x2c00 = 1/16) in each block
            blob = bytearray(blob)
            for b in range(0, size, block_bytes):
                blob[b: b + 2] = b"\x00\x2c"
            blob = bytes(blob)
        pad = (-size) % ALIGN
        blobs += blob + b"\0" * pad
        offset += size + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + infos
    head += b"\0" * ((-len(head)) % ALIGN)
    return head + blobs


def main() -> None:
    out = Path(__file__).resolve().parent / "corpus"
    out.mkdir(exist_ok=True)
    bpe_tokens = ["a", "b", "c", "ab", "bc", "Ġ", "Ġa", "<s>", "</s>", "1", "2"]
    seeds = {
        "empty.gguf": gguf([], []),
        "scalars.gguf": gguf([kv_str("general.architecture", "llama"),
                              kv_u32("llama.block_count", 1),
                              kv_f32("llama.rope.freq_base", 10000.0),
                              kv_f32_array("x.floats", [1.0, -2.5]),
                              kv_i32_array("x.ints", [1, 2, 3])], []),
        "tensors.gguf": gguf([kv_str("general.name", "seed")],
                             [("t.f32", [4, 2], "f32"), ("t.f16", [8], "f16"),
                              ("t.q4_0", [64, 2], "q4_0"), ("t.q8_0", [32], "q8_0")]),
        "bpe.gguf": gguf([kv_str("tokenizer.ggml.model", "gpt2"),
                          kv_str("tokenizer.ggml.pre", "smollm"),
                          kv_str_array("tokenizer.ggml.tokens", bpe_tokens),
                          kv_i32_array("tokenizer.ggml.token_type", [1] * 7 + [3, 3, 1, 1]),
                          kv_str_array("tokenizer.ggml.merges", ["a b", "b c", "Ġ a"]),
                          kv_u32("tokenizer.ggml.bos_token_id", 7),
                          kv_u32("tokenizer.ggml.eos_token_id", 8)],
                         [("token_embd.weight", [4, 11], "f32")]),
        "spm.gguf": gguf([kv_str("tokenizer.ggml.model", "llama"),
                          kv_str_array("tokenizer.ggml.tokens",
                                       ["<unk>", "<s>", "</s>", "▁", "▁a", "a", "b", "<0x41>"]),
                          kv_f32_array("tokenizer.ggml.scores",
                                       [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0]),
                          kv_i32_array("tokenizer.ggml.token_type", [2, 3, 3, 1, 1, 1, 1, 6])],
                         []),
    }
    for name, data in seeds.items():
        (out / name).write_bytes(data)
        print(f"{out / name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
