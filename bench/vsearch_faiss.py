#!/usr/bin/env python3
"""TurboQuant FlatIndex (`tq vsearch bench`) against faiss-cpu in the same run (issue 15).

For each data set (scripts/vsearch_data.py) and each index: bytes per vector, encode time
(train + add) per million vectors, recall@1/10/100 against exact inner-product ground truth
(|returned top-n ∩ true top-n| / n) and queries/s at 1 and 2 threads with k = 100.
Writes bench/results/vector_search_flat.json, .md (the table) and .png (recall@10 against
queries/s at 1 thread, one panel per data set); bench/results/vector_search.md reads them.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import faiss
import numpy as np

REPO = Path(__file__).resolve().parent.parent
K = 100


def recall(ids: np.ndarray, truth: np.ndarray, at: int) -> float:
    hits = sum(len(set(a[:at]) & set(t[:at])) for a, t in zip(ids, truth))
    return hits / (len(ids) * at)


def faiss_row(name: str, make: Callable[[], Any], base: np.ndarray, queries: np.ndarray,
              truth: np.ndarray, threads: list[int]) -> dict[str, Any]:
    faiss.omp_set_num_threads(max(threads))
    index = make()
    t0 = time.perf_counter()
    if not index.is_trained:
        index.train(base)
    index.add(base)
    encode_s = time.perf_counter() - t0
    row: dict[str, Any] = {"index": name, "library": "faiss " + faiss.__version__,
                           "encode_s": encode_s,
                           "encode_s_per_million": encode_s * 1e6 / len(base)}
    try:
        row["bytes_per_vector"] = int(index.sa_code_size())
    except RuntimeError:
        row["bytes_per_vector"] = None
    ids = None
    for t in threads:
        faiss.omp_set_num_threads(t)
        t0 = time.perf_counter()
        _, ids = index.search(queries, K)
        row[f"qps_{t}t"] = len(queries) / (time.perf_counter() - t0)
    for at in (1, 10, 100):
        row[f"recall@{at}"] = recall(ids, truth, at)
    return row


def faiss_indexes(d: int) -> dict[str, Callable[[], Any]]:
    ip = faiss.METRIC_INNER_PRODUCT
    sq = faiss.ScalarQuantizer
    out: dict[str, Callable[[], Any]] = {
        "IndexFlatIP (exact)": lambda: faiss.IndexFlatIP(d),
        "SQ 8bit": lambda: faiss.IndexScalarQuantizer(d, sq.QT_8bit, ip),
        "SQ 4bit": lambda: faiss.IndexScalarQuantizer(d, sq.QT_4bit, ip),
    }
    for qt in ("QT_4bit_tqmse", "QT_4bit_tq"):
        if hasattr(sq, qt):
            out[f"SQ {qt[3:]} (FAISS TurboQuant)"] = (
                lambda qt=qt: faiss.IndexScalarQuantizer(d, getattr(sq, qt), ip))
    if hasattr(faiss, "IndexRaBitQ"):
        out["RaBitQ (1 bit)"] = lambda: faiss.IndexRaBitQ(d, ip)
    if hasattr(faiss, "IndexRaBitQFastScan"):
        out["RaBitQFastScan (1 bit)"] = lambda: faiss.IndexRaBitQFastScan(d, ip)
    if hasattr(faiss, "IndexRaBitQ"):
        out["RaBitQ 4 bit"] = lambda: faiss.IndexRaBitQ(d, ip, 4)
    if hasattr(faiss, "IndexRaBitQFastScan"):
        out["RaBitQFastScan 4 bit"] = lambda: faiss.IndexRaBitQFastScan(d, ip, 32, 4)
    out[f"PQFastScan M={d // 2} x 4 bit"] = lambda: faiss.IndexPQFastScan(d, d // 2, 4, ip)
    return out


TQ_CONFIGS: dict[str, list[str]] = {
    "tq mse 4bit": [],
    "tq mse 4bit +center": ["--center"],
    "tq mse 4bit +center +fast-scan": ["--center", "--fast-scan"],
    "tq mse 4bit +center +fast-scan +norm-correction": ["--center", "--fast-scan",
                                                        "--norm-correction"],
    "tq mse 4bit +center +fast-scan, haar rotation": ["--center", "--fast-scan", "--rotation",
                                                      "haar"],
    "tq mse 4bit +center +fast-scan +rerank 200": ["--center", "--fast-scan", "--rerank", "200"],
    "tq mse 2bit +center": ["--center", "--bits", "2"],
}


def tq_row(name: str, extra: list[str], tq: Path, base: Path, queries: Path,
           threads: list[int]) -> dict[str, Any]:
    cmd = [str(tq), "vsearch", "bench", "-d", str(base), "-q", str(queries), "--json",
           "--threads", ",".join(map(str, threads))] + extra
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    row = json.loads(res.stdout)
    row.update({"index": name, "library": "turboquant", "command": " ".join(cmd)})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=REPO / "build" / "vsearch_data")
    ap.add_argument("--tq", type=Path, default=REPO / "build" / "vsearch" / "tools" / "tq")
    ap.add_argument("--sets", nargs="+", default=["smollm2", "gaussian"])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "vector_search_flat")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    for s in args.sets:
        bpath, qpath = args.data_dir / f"{s}_base.npy", args.data_dir / f"{s}_queries.npy"
        base, queries = np.load(bpath), np.load(qpath)
        exact = faiss.IndexFlatIP(base.shape[1])
        exact.add(base)
        _, truth = exact.search(queries, K)
        for name, make in faiss_indexes(base.shape[1]).items():
            r = faiss_row(name, make, base, queries, truth, args.threads)
            r.update({"dataset": s, "n": len(base), "dim": base.shape[1]})
            rows.append(r)
            print(json.dumps(r))
        for name, extra in TQ_CONFIGS.items():
            r = tq_row(name, extra, args.tq, bpath, qpath, args.threads)
            r.update({"dataset": s})
            rows.append(r)
            print(json.dumps(r))
    meta = {"machine": f"{platform.processor() or platform.machine()}, 2 CPU cores shared with "
                       "other jobs (timings are noisy)",
            "command": "python3 bench/vsearch_faiss.py " + " ".join(
                ["--sets", *args.sets, "--threads", *map(str, args.threads)]),
            "k": K, "metric": "inner product"}
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    cols = ["dataset", "index", "bytes_per_vector", "encode_s_per_million", "recall@1",
            "recall@10", "recall@100"] + [f"qps_{t}t" for t in args.threads]
    lines = ["# Vector search: TurboQuant FlatIndex vs faiss-cpu (same run)", "",
             f"Machine: {meta['machine']}. Command: `{meta['command']}`. k = {K}, inner "
             "product, exact ground truth by IndexFlatIP. Encode = train + add.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(f"{v:.3f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(rows, args.sets, args.out.with_suffix(".png"), meta["machine"])


def plot(rows: list[dict[str, Any]], sets: list[str], path: Path, machine: str) -> None:
    """recall@10 against queries/s at 1 thread, one panel per data set (log x)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(sets), figsize=(7 * len(sets), 5.5), squeeze=False)
    for ax, s in zip(axes[0], sets):
        for r in (r for r in rows if r["dataset"] == s and r.get("qps_1t")):
            ours = r["library"] == "turboquant"
            ax.scatter(r["qps_1t"], r["recall@10"], marker="o" if ours else "s",
                       color="tab:red" if ours else "tab:blue", s=30)
            ax.annotate(f"{r['index']} ({r['bytes_per_vector']} B)", (r["qps_1t"], r["recall@10"]),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("queries/s, 1 thread (k = 100)")
        ax.set_ylabel("recall@10")
        ax.set_title(f"{s}: turboquant (red) vs faiss-cpu (blue)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Flat indexes, same run ({machine})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


if __name__ == "__main__":
    main()
