#!/usr/bin/env python3
"""TurboQuant IvfIndex (`tq vsearch bench --ivf`) vs faiss-cpu IVF indexes, same run (issue 15).

Matched nlist and nprobe: faiss IndexIVFScalarQuantizer (4 bit; IP and L2 coarse quantizers),
IndexIVFRaBitQ (1 bit) and IndexIVFPQFastScan (M = d/2 x 4 bit) against tq 4-bit mse (+fast scan)
lists. Inner product, k = 100, exact ground truth by IndexFlatIP. Encode = train + add. Data:
scripts/vsearch_data.py. Writes bench/results/vector_search_ivf.json and .md.
"""
from __future__ import annotations

import argparse
import json
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


def faiss_rows(name: str, make: Callable[[], Any], base: np.ndarray, queries: np.ndarray,
               truth: np.ndarray, nprobes: list[int], threads: list[int]) -> list[dict[str, Any]]:
    faiss.omp_set_num_threads(max(threads))
    index = make()
    t0 = time.perf_counter()
    index.train(base)
    index.add(base)
    encode_s = time.perf_counter() - t0
    rows = []
    for np_ in nprobes:
        index.nprobe = np_
        row: dict[str, Any] = {"index": name, "nprobe": np_,
                               "bytes_per_vector": index.sa_code_size(),
                               "encode_s_per_million": encode_s * 1e6 / len(base)}
        for t in threads:
            faiss.omp_set_num_threads(t)
            t1 = time.perf_counter()
            _, ids = index.search(queries, K)
            row[f"qps_{t}t"] = len(queries) / (time.perf_counter() - t1)
        for at in (1, 10, 100):
            row[f"recall@{at}"] = recall(ids, truth, at)
        rows.append(row)
    return rows


def tq_rows(tq: Path, base: Path, queries: Path, nlist: int, nprobes: list[int],
            threads: list[int]) -> list[dict[str, Any]]:
    cmd = [str(tq), "vsearch", "bench", "-d", str(base), "-q", str(queries), "--fast-scan",
           "--ivf", str(nlist), "--nprobe", ",".join(map(str, nprobes)),
           "--threads", ",".join(map(str, threads))]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        r = json.loads(line)
        r["index"] = "tq IVF mse 4bit +fast-scan"
        rows.append(r)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=["smollm2", "sentences"])
    ap.add_argument("--data-dir", type=Path, default=REPO / "build" / "vsearch_data")
    ap.add_argument("--tq", type=Path, default=REPO / "build" / "vsearch" / "tools" / "tq")
    ap.add_argument("--nlist", type=int, default=64)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "vector_search_ivf")
    args = ap.parse_args()
    ip = faiss.METRIC_INNER_PRODUCT
    results = []
    for name in args.sets:
        bp, qp = args.data_dir / f"{name}_base.npy", args.data_dir / f"{name}_queries.npy"
        base, queries = np.load(bp), np.load(qp)
        d = base.shape[1]
        exact = faiss.IndexFlatIP(d)
        exact.add(base)
        _, truth = exact.search(queries, K)
        makers: dict[str, Callable[[], Any]] = {
            "IVF SQ 4bit": lambda: faiss.IndexIVFScalarQuantizer(
                faiss.IndexFlatIP(d), d, args.nlist, faiss.ScalarQuantizer.QT_4bit, ip),
            # The same codes with an L2 coarse quantizer (k-means, assignment and probing by L2).
            "IVF SQ 4bit (L2 quantizer)": lambda: faiss.IndexIVFScalarQuantizer(
                faiss.IndexFlatL2(d), d, args.nlist, faiss.ScalarQuantizer.QT_4bit, ip),
            f"IVFPQFastScan M={d // 2} x 4 bit": lambda: faiss.IndexIVFPQFastScan(
                faiss.IndexFlatIP(d), d, args.nlist, d // 2, 4, ip),
        }
        if hasattr(faiss, "IndexIVFRaBitQ"):
            makers["IVFRaBitQ (1 bit)"] = lambda: faiss.IndexIVFRaBitQ(
                faiss.IndexFlatIP(d), d, args.nlist, ip)
        rows = tq_rows(args.tq, bp, qp, args.nlist, args.nprobe, args.threads)
        for label, make in makers.items():
            rows += faiss_rows(label, make, base, queries, truth, args.nprobe, args.threads)
        for r in rows:
            r["dataset"] = name
            print(json.dumps({k: r[k] for k in ("dataset", "index", "nprobe", "recall@10")}),
                  flush=True)
        results += rows
    cols = ["dataset", "index", "nprobe", "bytes_per_vector", "encode_s_per_million",
            "recall@1", "recall@10", "recall@100"] + [f"qps_{t}t" for t in args.threads]
    args.out.with_suffix(".json").write_text(json.dumps(
        {"command": "python3 bench/vsearch_ivf.py " + " ".join(
            ["--sets", *args.sets, "--nlist", str(args.nlist), "--nprobe",
             *map(str, args.nprobe), "--threads", *map(str, args.threads)]),
         "faiss": faiss.__version__, "nlist": args.nlist, "rows": results}, indent=1))
    lines = [f"# IVF: TurboQuant IvfIndex vs faiss-cpu {faiss.__version__} IVF (same run)", "",
             f"nlist = {args.nlist}, k = {K}, inner product, exact ground truth by IndexFlatIP; "
             "encode = train + add.", "", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]
    for r in results:
        cells = [f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
