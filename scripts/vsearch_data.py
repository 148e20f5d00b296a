#!/usr/bin/env python3
"""Build and cache the vector-search data sets of issue 15 (nothing large is committed).

smollm2: the token-embedding table of SmolLM2-135M (49,152 x 576), dequantized from the GGUF
         by `tq vsearch export`; 1,000 rows chosen at random (seed 0) are held out as queries
         and the rest are the base set.
gaussian: i.i.d. N(0, 1) vectors (base 50,000 x 128, 1,000 queries), the sanity case.

Each set is written as <name>_base.npy and <name>_queries.npy (float32) in --out-dir; a set
whose files exist is left alone.
"""
from __future__ import annotations

import argparse
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
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if not have(args.out_dir, "smollm2"):
        build_smollm2(args.out_dir, args.tq, args.model)
    if not have(args.out_dir, "gaussian"):
        build_gaussian(args.out_dir)


if __name__ == "__main__":
    main()
