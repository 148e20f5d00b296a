#!/usr/bin/env python3
"""Mutation sweep of GGUF model files (issue 17, item 4).

Takes one valid GGUF file (a small `tq make-model` file, or a real model), writes mutated copies
of it one at a time -- truncations, absurd header counts, metadata key/type/length/value edits,
tensor-info name/rank/dim/type/offset edits, seeded byte and bit flips -- and loads each with
`tq generate -n 1` (which reads the whole file, builds the model and the tokenizer and runs one
token). Every case must end in one of two ways:

* ``ok``: exit 0 (the file still loads), or
* ``error``: exit code 1 with one ``tq: error:`` line on stderr.

Anything else is a finding: ``crash`` (killed by a signal, a sanitizer report, an uncaught
exception), ``hang`` (past the time limit), ``unclear`` (a refusal whose message is a raw
library message such as ``std::bad_alloc``) or ``accepted`` (exit 0 for a mutation that must be
refused, e.g. a truncated file or a wrong tensor count). The figures per category are printed and
written as JSON; the exit status is 1 when there is any finding.

The mutations are deterministic for a given input file and ``--seed``.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# GGUF metadata value types and the byte size of the fixed-size ones.
SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY = 8, 9
# ggml tensor types: values per block and bytes per block (those the sweep writes).
TYPE_BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
               8: (32, 34), 12: (256, 144), 20: (32, 18), 30: (1, 2)}
U64_ABSURD = [2**32, 2**40, 2**63, 2**64 - 1]
# Messages that mean a library failure reached the user unexplained.
UNCLEAR = ["std::bad_alloc", "max_size()", "basic_string", "vector::", "stoi", "stoul"]
# Output that means the process did something undefined, whatever its exit code.
CRASH_MARKERS = ["AddressSanitizer", "runtime error:", "LeakSanitizer", "terminate called"]


@dataclasses.dataclass
class Field:
    """One header field: where it is in the file and how it is encoded."""

    offset: int
    fmt: str  # struct format of the field: '<Q', '<I', ...
    value: int | float


@dataclasses.dataclass
class Kv:
    """One metadata entry."""

    key: str
    key_len: Field
    type_field: Field
    value_type: int
    value: Field | None  # scalar value
    str_len: Field | None  # string length (string values)
    arr_type: Field | None
    arr_count: Field | None


@dataclasses.dataclass
class TensorInfo:
    """One tensor-info record."""

    name: str
    name_len: Field
    n_dims: Field
    dims: list[Field]
    type_field: Field
    offset_field: Field


@dataclasses.dataclass
class Layout:
    """Where the fields of a GGUF file are."""

    version: Field
    n_tensors: Field
    n_kv: Field
    kvs: list[Kv]
    tensors: list[TensorInfo]
    header_end: int  # end of the tensor infos
    data_start: int


@dataclasses.dataclass
class Mutation:
    """One mutated file: a name, the edits, and whether a load must be refused."""

    category: str
    name: str
    must_fail: bool
    truncate: int | None = None
    patches: list[tuple[int, bytes]] = dataclasses.field(default_factory=list)


def parse_layout(data: bytes) -> Layout:
    """Parses a valid GGUF file's header into field positions."""
    pos = 0

    def take(fmt: str) -> Field:
        nonlocal pos
        (value,) = struct.unpack_from(fmt, data, pos)
        field = Field(pos, fmt, value)
        pos += struct.calcsize(fmt)
        return field

    def take_string() -> tuple[Field, str]:
        nonlocal pos
        length = take("<Q")
        text = data[pos : pos + int(length.value)].decode("utf-8", "replace")
        pos += int(length.value)
        return length, text

    if data[:4] != b"GGUF":
        raise ValueError("not a GGUF file (no GGUF magic)")
    pos = 4
    version = take("<I")
    n_tensors = take("<Q")
    n_kv = take("<Q")
    kvs: list[Kv] = []
    alignment = 32
    scalar_fmt = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B",
                  10: "<Q", 11: "<q", 12: "<d"}
    for _ in range(int(n_kv.value)):
        key_len, key = take_string()
        type_field = take("<I")
        vtype = int(type_field.value)
        kv = Kv(key, key_len, type_field, vtype, None, None, None, None)
        if vtype == STRING:
            kv.str_len, _ = take_string()
        elif vtype == ARRAY:
            kv.arr_type = take("<I")
            kv.arr_count = take("<Q")
            etype = int(kv.arr_type.value)
            for _ in range(int(kv.arr_count.value)):
                if etype == STRING:
                    take_string()
                else:
                    pos += SCALAR_SIZES[etype]
        else:
            kv.value = take(scalar_fmt[vtype])
        if key == "general.alignment":
            alignment = int(kv.value.value) if kv.value else alignment
        kvs.append(kv)
    tensors: list[TensorInfo] = []
    for _ in range(int(n_tensors.value)):
        name_len, name = take_string()
        n_dims = take("<I")
        dims = [take("<Q") for _ in range(int(n_dims.value))]
        tensors.append(TensorInfo(name, name_len, n_dims, dims, take("<I"), take("<Q")))
    header_end = pos
    data_start = (pos + alignment - 1) // alignment * alignment
    return Layout(version, n_tensors, n_kv, kvs, tensors, header_end, data_start)


def put(field: Field, value: int | float, fmt: str | None = None) -> tuple[int, bytes]:
    """A patch writing `value` over `field` (in the field's own format unless `fmt`).

    Unsigned fields take a negative value modulo their width (-1 is all ones).
    """
    fmt = fmt or field.fmt
    if fmt[1] in "BHIQ":
        value = int(value) % 2 ** (8 * struct.calcsize(fmt))
    return field.offset, struct.pack(fmt, value)


def mutations(data: bytes, layout: Layout, seed: int, flips: int) -> list[Mutation]:
    """Every mutation of the sweep, in a fixed order."""
    out: list[Mutation] = []
    rng = random.Random(seed)
    size = len(data)
    last = max(layout.tensors, key=lambda t: int(t.offset_field.value))
    data_end = layout.data_start + int(last.offset_field.value) + 1  # at least one byte in

    # Truncations: at every header field boundary, inside the data, one byte short.
    cuts = {0, 3, 4, 8, 16, 24, layout.header_end - 1, layout.header_end, layout.data_start,
            layout.data_start + 1, data_end, size - 1}
    for kv in layout.kvs:
        cuts.update({kv.key_len.offset, kv.type_field.offset + 4})
    for t in layout.tensors[:8]:
        cuts.update({t.name_len.offset, t.type_field.offset, t.offset_field.offset + 8,
                     layout.data_start + int(t.offset_field.value) + 7})
    cuts.update(rng.randrange(1, size - 1) for _ in range(40))
    for cut in sorted(c for c in cuts if 0 <= c < data_end):
        out.append(Mutation("truncation", f"cut at {cut} of {size}", True, truncate=cut))

    # Header: magic, version and the two counts.
    out.append(Mutation("header", "magic GGUX", True, patches=[(0, b"GGUX")]))
    for v in [0, 1, 2, 4, 2**31, 2**32 - 1]:
        # v2 has the v3 layout (v3 added only big-endian files): both may load.
        out.append(Mutation("header", f"version {v}", v not in (2, 3),
                            patches=[put(layout.version, v)]))
    for field, what in [(layout.n_tensors, "tensor count"), (layout.n_kv, "kv count")]:
        n = int(field.value)
        for v in [0, 1, n - 1, n + 1, 2 * n, *U64_ABSURD]:
            out.append(Mutation("header", f"{what} {v}", True, patches=[put(field, v)]))

    # Metadata entries: key length, value type, string lengths, array counts and element types.
    for kv in layout.kvs:
        k = int(kv.key_len.value)
        for v in [0, k - 1, k + 1, 2**20, *U64_ABSURD]:
            out.append(Mutation("metadata", f"{kv.key}: key length {v}", False,
                                patches=[put(kv.key_len, v)]))
        for t in [0, 4, 6, 8, 9, 10, 12, 13, 255, 2**32 - 1]:
            if t != kv.value_type:
                out.append(Mutation("metadata", f"{kv.key}: type {t}", False,
                                    patches=[put(kv.type_field, t)]))
        if kv.str_len is not None:
            s = int(kv.str_len.value)
            for v in [0, s + 1, *U64_ABSURD]:
                out.append(Mutation("metadata", f"{kv.key}: string length {v}", False,
                                    patches=[put(kv.str_len, v)]))
        if kv.arr_count is not None and kv.arr_type is not None:
            c = int(kv.arr_count.value)
            for v in [0, c - 1, c + 1, *U64_ABSURD]:
                out.append(Mutation("metadata", f"{kv.key}: array count {v}", False,
                                    patches=[put(kv.arr_count, v)]))
            for t in [0, 8, 9, 12, 13, 2**32 - 1]:
                if t != int(kv.arr_type.value):
                    out.append(Mutation("metadata", f"{kv.key}: array type {t}", False,
                                        patches=[put(kv.arr_type, t)]))
        # Absurd values for the numbers the model is built from.
        if kv.value is not None:
            if kv.value.fmt in ("<f", "<d"):
                values: list[int | float] = [0.0, -1.0, float("inf"), float("-inf"),
                                             float("nan"), 1e30]
            else:
                bits = struct.calcsize(kv.value.fmt) * 8
                signed = kv.value.fmt[1].islower()
                top = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
                values = [0, 1, top, int(kv.value.value) + 1, int(kv.value.value) * 2 + 1]
                values += [-1] if signed else [2 ** (bits - 1)]
            for v in values:
                if v == kv.value.value or (isinstance(v, int) and not fits(kv.value.fmt, v)):
                    continue
                out.append(Mutation("metadata", f"{kv.key} = {v}", must_fail_value(kv.key, v),
                                    patches=[put(kv.value, v)]))

    # Tensor infos: name length, rank, dims, type, offset.
    for i, t in enumerate(layout.tensors):
        n = int(t.name_len.value)
        for v in [0, n - 1, n + 1, 64, *U64_ABSURD]:
            out.append(Mutation("tensor-info", f"{t.name}: name length {v}", True,
                                patches=[put(t.name_len, v)]))
        r = int(t.n_dims.value)
        for v in [0, r - 1, r + 1, 5, 2**31, 2**32 - 1]:
            if v != r:
                out.append(Mutation("tensor-info", f"{t.name}: rank {v}", True,
                                    patches=[put(t.n_dims, v)]))
        for j, d in enumerate(t.dims):
            dv = int(d.value)
            for v in [0, 1, dv - 1, dv + 1, 2 * dv, *U64_ABSURD]:
                if v != dv:
                    out.append(Mutation("tensor-info", f"{t.name}: dim {j} = {v}", True,
                                        patches=[put(d, v)]))
        ty = int(t.type_field.value)
        for v in [0, 1, 2, 3, 6, 7, 8, 12, 20, 30, 39, 40, 255, 2**32 - 1]:
            if v != ty:
                # A type with the same bytes per value may load (Q4_0 <-> IQ4_NL or Q4_K).
                same_size = (ty in TYPE_BLOCKS and v in TYPE_BLOCKS
                             and int(t.dims[0].value) % TYPE_BLOCKS[v][0] == 0
                             and TYPE_BLOCKS[ty][1] * TYPE_BLOCKS[v][0]
                             == TYPE_BLOCKS[v][1] * TYPE_BLOCKS[ty][0])
                out.append(Mutation("tensor-info", f"{t.name}: type {v}", not same_size,
                                    patches=[put(t.type_field, v)]))
        off = int(t.offset_field.value)
        prev = int(layout.tensors[i - 1].offset_field.value) if i else 1
        for v in [off + 1, off + 32, off - 32 if off >= 32 else 2**40, prev, *U64_ABSURD]:
            if v != off:
                out.append(Mutation("tensor-info", f"{t.name}: offset {v}", True,
                                    patches=[put(t.offset_field, v)]))

    # Seeded flips: header bytes set to random values, single bits, and data bytes (must load).
    for k in range(flips):
        at = rng.randrange(4, layout.header_end)
        byte = rng.randrange(256)
        out.append(Mutation("header-flip", f"byte {at} = {byte}", False,
                            patches=[(at, bytes([byte]))]))
        at = rng.randrange(4, layout.header_end)
        bit = rng.randrange(8)
        out.append(Mutation("header-flip", f"bit {bit} of byte {at}", False,
                            patches=[(at, bytes([data[at] ^ (1 << bit)]))]))
    for k in range(max(flips // 10, 1)):
        at = rng.randrange(layout.data_start, size)
        out.append(Mutation("data-flip", f"data byte {at} = 0x5a", False,
                            patches=[(at, b"\x5a")]))
    return out


def fits(fmt: str, value: int) -> bool:
    """Whether `value` can be packed in `fmt`."""
    try:
        struct.pack(fmt, value)
        return True
    except struct.error:
        return False


def must_fail_value(key: str, value: int | float) -> bool:
    """Whether a model built with metadata `key` = `value` must be refused.

    The shape keys must match the tensors exactly, and the hyper-parameters must be finite and
    positive; other keys (context length, token ids, names) may take any value.
    """
    shape_keys = ("block_count", "embedding_length", "feed_forward_length", "head_count",
                  "head_count_kv")
    if key.endswith(shape_keys):
        return True
    if key.endswith(("rope.freq_base", "layer_norm_rms_epsilon")):
        return not (isinstance(value, float) and value == value and 0 < value < float("inf")
                    and (value > 1 if key.endswith("freq_base") else value < 1))
    return key == "general.alignment"


@dataclasses.dataclass
class Outcome:
    """What one load did."""

    category: str
    name: str
    verdict: str  # ok, error, crash, hang, unclear, accepted
    seconds: float
    message: str


def run_one(tq: Path, data: bytes, m: Mutation, workdir: Path, timeout: float) -> Outcome:
    """Writes the mutated file, loads it with tq and classifies the result."""
    path = workdir / f"m{os.getpid()}_{id(m)}.gguf"
    with open(path, "wb") as f:
        if m.truncate is not None:
            f.write(data[: m.truncate])
        else:
            buf = bytearray(data)
            for at, patch in m.patches:
                buf[at : at + len(patch)] = patch
            f.write(buf)
    cmd = [str(tq), "generate", "-m", str(path), "-p", "hi", "-n", "1", "-t", "1", "--json"]
    env = dict(os.environ, OMP_WAIT_POLICY="passive", OMP_NUM_THREADS="1")
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        path.unlink()
        return Outcome(m.category, m.name, "hang", time.monotonic() - start, "")
    seconds = time.monotonic() - start
    path.unlink()
    err = proc.stderr
    lines = [ln for ln in err.splitlines() if ln.startswith("tq: error:")]
    message = lines[0][len("tq: error: "):][:200] if lines else err.strip()[-200:]
    if proc.returncode < 0 or any(mark in err for mark in CRASH_MARKERS):
        verdict = "crash"
    elif proc.returncode == 0:
        verdict = "accepted" if m.must_fail else "ok"
    elif proc.returncode == 1 and len(lines) == 1:
        verdict = "unclear" if any(u in message for u in UNCLEAR) else "error"
    else:
        verdict = "crash"  # an exit code tq does not use, or no error line
    return Outcome(m.category, m.name, verdict, seconds, message)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tq", type=Path, required=True, help="the tq binary")
    parser.add_argument("--model", type=Path, required=True, help="a valid GGUF file to mutate")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--flips", type=int, default=250,
                        help="seeded header byte flips and bit flips (each)")
    parser.add_argument("--limit", type=int, default=0,
                        help="run only every k-th case so that at most this many run (0: all)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case (hang)")
    parser.add_argument("--json-out", type=Path, help="write the outcomes here")
    args = parser.parse_args()

    data = args.model.read_bytes()
    layout = parse_layout(data)
    cases = mutations(data, layout, args.seed, args.flips)
    if args.limit and len(cases) > args.limit:
        step = len(cases) / args.limit
        cases = [cases[int(i * step)] for i in range(args.limit)]
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tq_mutation_") as tmp:
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            outcomes = list(pool.map(
                lambda m: run_one(args.tq, data, m, Path(tmp), args.timeout), cases))
    elapsed = time.monotonic() - start

    table: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for o in outcomes:
        table[o.category][o.verdict] += 1
    verdicts = ["ok", "error", "crash", "hang", "unclear", "accepted"]
    print(f"mutation sweep of {args.model} ({len(data)} bytes): {len(outcomes)} cases "
          f"in {elapsed:.0f} s")
    print(f"{'category':<12} {'cases':>6} " + " ".join(f"{v:>8}" for v in verdicts))
    for cat, counts in table.items():
        print(f"{cat:<12} {sum(counts.values()):>6} "
              + " ".join(f"{counts[v]:>8}" for v in verdicts))
    findings = [o for o in outcomes if o.verdict not in ("ok", "error")]
    for o in findings[:40]:
        print(f"FINDING {o.verdict}: {o.category} / {o.name}: {o.message}")
    slowest = max(outcomes, key=lambda o: o.seconds)
    print(f"slowest case {slowest.seconds:.1f} s ({slowest.category} / {slowest.name})")
    if args.json_out:
        args.json_out.write_text(json.dumps({
            "model": str(args.model), "bytes": len(data), "seed": args.seed,
            "cases": len(outcomes), "seconds": round(elapsed, 1),
            "counts": {c: dict(v) for c, v in table.items()},
            "findings": [dataclasses.asdict(o) for o in findings],
        }, indent=1) + "\n")
    print(f"{len(outcomes) - len(findings)} passed, {len(findings)} failed")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
