#!/usr/bin/env python3
"""Generates tests/fixtures/smollm2_reference{,_f32}.json from llama.cpp (via llama-cpp-python).

This file owns the independent reference that our C++ GGUF runner is checked against:
tokenizer outputs, per-position next-token top-k logits (+ full-vocab logsumexp), greedy
continuations with their top-1/top-2 margins, and the full last-position logit vector.
See docs/reference_fixtures.md for the schema and how to regenerate it.

With --f32 the Q4_1 model is first converted to F32 by llama.cpp's own quantize API
(llama_model_quantize, ftype ALL_F32, allow_requantize: an exact dequantization), so that
llama.cpp runs fp32 weight x fp32 activation products instead of rounding activations to
8 bits for its quantized dot products; that fixture checks our forward pass tightly.

Usage: .venv-ref/bin/python scripts/make_reference_fixtures.py [--model PATH] [--out PATH]
                                                               [--f32 [--f32-model PATH]]
        [--n-ctx N] [--long-text FILE --long-tokens N] [--no-chat]

--long-text adds a plain prompt of the first N tokens of FILE (for sliding-window models: longer
than the window, so that the window is exercised); --no-chat leaves out the ChatML prompts (models
with another chat format). The Gemma 3 fixture: --model models/gemma-3-270m-q4_k_m.gguf --f32
--n-ctx 1024 --long-text <haystack>/pride-and-prejudice-pg1342.txt --long-tokens 640 --no-chat
--out tests/fixtures/gemma3_reference_f32.json (docs/reference_fixtures.md).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime
import hashlib
import json
import math
import os
import platform
import subprocess
import sys

import numpy as np

import llama_cpp
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Fixed generation settings: everything that can change numerics is pinned and recorded.
N_CTX = 512
N_THREADS = 2
N_BATCH = 512
SEED = 1234
TOP_K = 10
N_GREEDY = 32
KV_TYPE_NAME = "f16"
KV_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "f32": llama_cpp.GGML_TYPE_F32}

# Strings chosen to exercise the pre-tokenizer and BPE merges in the ways that usually break
# hand-written tokenizers (whitespace runs, digit splitting, byte fallback, special tokens).
TOKENIZER_STRINGS = [
    ("plain_english", "The quick brown fox jumps over the lazy dog."),
    ("leading_space", " Hello world"),
    ("trailing_spaces", "Hello world   "),
    ("multiple_spaces", "a  b   c    d"),
    ("newlines_tabs", "line one\nline two\n\n\tindented\r\nwindows"),
    ("digits", "In 2024, 3 cats ate 12 fish."),
    ("long_number", "1234567890 3.14159 -42 1,000,000"),
    ("contractions", "I don't think I'll go; it's what we've done, isn't it?"),
    ("punctuation", "Wait... what?! (yes) [no] {maybe} \"quoted\" 'single' -- end."),
    ("accented_latin", "Café naïve résumé Ångström façade"),
    ("cjk", "你好，世界。日本語のテキスト"),
    ("emoji", "I love 🦙 and 🚀🔥! 👍🏽"),
    ("code", "def f(x):\n    return x**2 + 1  # square\n\nprint(f(3))"),
    ("chatml_special", "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"),
    ("mixed_unicode_spaces", "tab\there\u00a0nbsp  \n  mixed\n"),
]

# The string for which both special=True and special=False tokenizations are recorded.
SPECIAL_VARIANT_NAME = "chatml_special"

# Prompts were picked (see docs/reference_fixtures.md) so that the greedy top-1/top-2 logit
# margin stays above 0.1 for all generated steps: the consumer requires exact greedy agreement,
# which is only meaningful when the reference's choice is not a near-tie.
PLAIN_PROMPTS = [
    ("counting", "1, 2, 3, 4, 5, 6,"),
    (
        "capital_chain",
        "Paris is the capital of France. Berlin is the capital of Germany. "
        "Madrid is the capital of",
    ),
    ("fibonacci", "The Fibonacci sequence: 1, 1, 2, 3, 5, 8, 13,"),
    ("numpy_imports", "import numpy as np\nimport"),
]
CHAT_PROMPTS = [
    ("chat_count", [{"role": "user", "content": "Count from 1 to 20."}]),
    ("chat_math", [{"role": "user", "content": "What is 2+2?"}]),
]
# Full last-position logit vectors are large (~262 KB base64 each); keep a representative subset
# (prose, code, chat) so the fixture stays well under 2 MB.
FULL_LOGITS_PROMPTS = {"capital_chain", "numpy_imports", "chat_count"}


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def logsumexp(v: np.ndarray) -> float:
    v = v.astype(np.float64)
    m = float(v.max())
    return m + math.log(float(np.exp(v - m).sum()))


def topk(v: np.ndarray, k: int) -> list[list]:
    # Stable ordering: by logit descending, then id ascending, so ties are reproducible.
    idx = np.lexsort((np.arange(v.size), -v.astype(np.float64)))[:k]
    return [[int(i), round(float(v[i]), 5)] for i in idx]


def margin(v: np.ndarray) -> float:
    top2 = np.partition(v.astype(np.float64), -2)[-2:]
    return float(top2[1] - top2[0])


def render_chat(llm: Llama, messages: list[dict]) -> str:
    import jinja2

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise RuntimeError("model has no tokenizer.chat_template metadata")
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(
        messages=messages,
        add_generation_prompt=True,
        bos_token=llm.detokenize([llm.token_bos()], special=True).decode("utf-8"),
        eos_token=llm.detokenize([llm.token_eos()], special=True).decode("utf-8"),
    )


def run_prompt(
    llm: Llama, name: str, text: str, add_bos: bool, kind: str, full_logits: set[str]
) -> dict:
    ids = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
    llm.reset()
    llm.eval(ids)
    scores = np.array(llm.scores[: llm.n_tokens], dtype=np.float32)
    if scores.shape[0] != len(ids):
        raise RuntimeError(f"expected {len(ids)} logit rows, got {scores.shape[0]}")
    positions = [
        {"top": topk(row, TOP_K), "logsumexp": round(logsumexp(row), 5)} for row in scores
    ]
    last_logits = scores[-1].copy()

    # Greedy continuation, one token per eval (as an incremental decoder would do it).
    greedy_ids, margins, step_top = [], [], []
    row = scores[-1]
    for _ in range(N_GREEDY):
        tok = int(topk(row, 1)[0][0])
        greedy_ids.append(tok)
        margins.append(round(margin(row), 5))
        step_top.append(topk(row, 2))
        if tok == llm.token_eos():
            break
        llm.eval([tok])
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)

    return {
        "name": name,
        "kind": kind,
        "text": text,
        "add_bos": add_bos,
        "ids": [int(t) for t in ids],
        "positions": positions,
        "greedy": {
            "ids": greedy_ids,
            "text": llm.detokenize(greedy_ids, special=True).decode("utf-8", errors="replace"),
            "margins": margins,
            "top2": step_top,
            "min_margin": min(margins),
        },
        "last_logits_f32_b64": (
            base64.b64encode(last_logits.astype("<f4").tobytes()).decode()
            if name in full_logits
            else None
        ),
    }


@contextlib.contextmanager
def quiet_stderr():
    # llama_model_quantize logs one line per tensor on fd 2; keep the script's output readable.
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def convert_to_f32(src: str, dst: str) -> None:
    """Writes `src` with every tensor converted to F32 by llama.cpp itself (exact dequantization:
    Q4_1 -> d*q + m and Q8_0 -> d*q in fp32, F32 tensors copied)."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True  # the source is already quantized
    params.nthread = N_THREADS
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    tmp = dst + ".tmp"
    with quiet_stderr():
        rc = llama_cpp.llama_model_quantize(src.encode(), tmp.encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src!r} -> {tmp!r}, ALL_F32) returned {rc}")
    os.replace(tmp, dst)


def ggml_build_info() -> dict:
    # The bindings do not wrap ggml_version()/ggml_commit(); call them from the bundled
    # libggml-base so the fixture names the exact vendored llama.cpp/ggml revision.
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    info = {}
    try:
        lib = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"))
        for fn in ("ggml_version", "ggml_commit"):
            f = getattr(lib, fn)
            f.restype = ctypes.c_char_p
            info[fn.removeprefix("ggml_")] = f().decode()
    except (OSError, AttributeError) as e:
        info["error"] = str(e)
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="GGUF path (default: scripts/fetch_model.sh)")
    ap.add_argument("--out", default=None, help="output JSON (default depends on --f32)")
    ap.add_argument(
        "--f32",
        action="store_true",
        help="convert --model to F32 with llama.cpp's quantize API first and run that",
    )
    ap.add_argument(
        "--f32-model",
        default=None,
        help="where the F32 conversion is written (default: models/<stem>.F32.gguf, git-ignored)",
    )
    ap.add_argument(
        "--kv-type", choices=sorted(KV_TYPES), default=KV_TYPE_NAME, help="K and V cache type"
    )
    ap.add_argument("--n-ctx", type=int, default=N_CTX, help="llama.cpp context (tokens)")
    ap.add_argument("--long-text", default=None, help="text file for the long prompt")
    ap.add_argument("--long-tokens", type=int, default=0, help="tokens of the long prompt")
    ap.add_argument("--no-chat", action="store_true", help="leave out the ChatML prompts")
    args = ap.parse_args()
    if args.long_tokens and not args.long_text:
        ap.error("--long-tokens needs --long-text")
    if args.long_tokens + N_GREEDY + 1 > args.n_ctx:
        ap.error(f"--long-tokens {args.long_tokens} + {N_GREEDY} greedy steps exceed "
                 f"--n-ctx {args.n_ctx}")

    source = args.model or subprocess.check_output(
        [os.path.join(ROOT, "scripts", "fetch_model.sh")], text=True
    ).strip()
    fixture_name = "smollm2_reference_f32.json" if args.f32 else "smollm2_reference.json"
    out_path = args.out or os.path.join(ROOT, "tests", "fixtures", fixture_name)
    converted_from = None
    if args.f32:
        stem = os.path.basename(source)
        stem = stem[: -len(".gguf")] if stem.endswith(".gguf") else stem
        stem = stem.rsplit(".", 1)[0] if "." in stem else stem  # drop the quant suffix (Q4_1)
        model = args.f32_model or os.path.join(ROOT, "models", stem + ".F32.gguf")
        convert_to_f32(source, model)
        converted_from = {
            "model_file": os.path.basename(source),
            "model_sha256": sha256_file(source),
            "method": "llama_model_quantize(ftype=LLAMA_FTYPE_ALL_F32, allow_requantize=true)",
        }
        # Keep the F32 fixture small: the per-position top-10 and logsumexp carry the check.
        full_logits = set()
    else:
        model = source
        full_logits = FULL_LOGITS_PROMPTS
    kv_type = KV_TYPES[args.kv_type]

    llm = Llama(
        model_path=model,
        n_ctx=args.n_ctx,
        n_batch=N_BATCH,
        n_ubatch=N_BATCH,
        n_threads=N_THREADS,
        n_threads_batch=N_THREADS,
        seed=SEED,
        logits_all=True,
        type_k=kv_type,
        type_v=kv_type,
        flash_attn=False,
        n_gpu_layers=0,
        verbose=False,
    )
    md = llm.metadata
    add_bos_meta = md.get("tokenizer.ggml.add_bos_token")
    add_bos = bool(add_bos_meta == "true") if add_bos_meta is not None else False

    tokenizer = []
    for name, text in TOKENIZER_STRINGS:
        entry = {
            "name": name,
            "text": text,
            "add_bos": False,
            "special": True,
            "ids": [int(t) for t in llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)],
        }
        tokenizer.append(entry)
        if name == SPECIAL_VARIANT_NAME:
            tokenizer.append(
                {
                    "name": name + "_nospecial",
                    "text": text,
                    "add_bos": False,
                    "special": False,
                    "ids": [
                        int(t)
                        for t in llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
                    ],
                }
            )
        if name == "plain_english":
            tokenizer.append(
                {
                    "name": name + "_metadata_bos",
                    "text": text,
                    "add_bos": add_bos,
                    "special": True,
                    "ids": [
                        int(t)
                        for t in llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
                    ],
                }
            )
    for e in tokenizer:
        # Round-trip check so a broken detokenizer on the reference side is noticed here.
        back = llm.detokenize(e["ids"], special=e["special"]).decode("utf-8", errors="replace")
        e["roundtrip_ok"] = back == e["text"]

    plain = list(PLAIN_PROMPTS)
    if args.long_tokens:
        with open(args.long_text, encoding="utf-8") as fh:
            text = fh.read(args.long_tokens * 16)
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)[: args.long_tokens]
        plain.append(("long_text", llm.detokenize(ids).decode("utf-8", errors="replace")))
    prompts = [run_prompt(llm, n, t, add_bos, "plain", full_logits) for n, t in plain]
    if not args.no_chat:
        prompts += [
            run_prompt(llm, n, render_chat(llm, m), add_bos, "chatml", full_logits)
            for n, m in CHAT_PROMPTS
        ]

    meta = {
        "generator": "scripts/make_reference_fixtures.py",
        "backend": "llama-cpp-python",
        "llama_cpp_python_version": llama_cpp.__version__,
        "ggml_build_info": ggml_build_info(),
        "llama_system_info": llama_cpp.llama_print_system_info().decode(),
        "model_file": os.path.basename(model),
        "model_sha256": sha256_file(model),
        "n_vocab": llm.n_vocab(),
        "n_ctx": args.n_ctx,
        "n_batch": N_BATCH,
        "n_threads": N_THREADS,
        "seed": SEED,
        "temperature": 0.0,
        "kv_type": args.kv_type,
        "flash_attn": False,
        "logits_all": True,
        "add_bos_metadata": add_bos_meta,
        "add_bos_used": add_bos,
        "bos_id": llm.token_bos(),
        "eos_id": llm.token_eos(),
        "tokenizer_model": md.get("tokenizer.ggml.model"),
        "tokenizer_pre": md.get("tokenizer.ggml.pre"),
        "chat_template": md.get("tokenizer.chat_template"),
        "top_k": TOP_K,
        "n_greedy": N_GREEDY,
        "logit_rounding_decimals": 5,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    }

    if converted_from is not None:
        meta["converted_from"] = converted_from
    out = {"meta": meta, "tokenizer": tokenizer, "prompts": prompts}
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")

    size = os.path.getsize(out_path)
    print(f"wrote {out_path} ({size} bytes)", file=sys.stderr)
    for p in prompts:
        print(
            f"  {p['name']:18s} n_prompt={len(p['ids']):3d} min_margin={p['greedy']['min_margin']:.4f}"
            f"  -> {p['greedy']['text']!r}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
