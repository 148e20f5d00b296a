"""Merges `tq niah --json-out` records and compares schemes cell by cell.

A long NIAH grid is often run as one `tq niah` call per context length (so that a time limit
loses one length, not the grid). This script joins such records into one per (scheme, mode) —
contexts in increasing order, the accuracy table stacked, cells concatenated, overall accuracy
recomputed from the cells — writes them as one `tq niah` record (which `scripts/plot.py niah`
draws), and writes a markdown report: accuracy per scheme and mode, and every (context, depth,
seed) cell where a scheme and the reference scheme (default fp16) disagree.

Usage:
    python3 scripts/niah_merge.py --out merged.json --report report.md [--reference fp16] A.json...
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any


def load_runs(paths: list[Path]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    for p in paths:
        record = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not isinstance(record.get("runs"), list):
            raise ValueError(f"{p}: not a tq niah record (expected an object with 'runs')")
        meta.setdefault("model", record.get("model"))
        meta.setdefault("haystack", record.get("haystack"))
        runs += record["runs"]
    return runs, meta


def merge(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per (kv, mode): rows of `table` follow `contexts`, sorted by context."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(r["kv"], r["mode"])].append(r)
    merged = []
    for (kv, mode), parts in groups.items():
        depths = parts[0]["depths"]
        rows: dict[int, list[float]] = {}
        cells: list[dict[str, Any]] = []
        for part in parts:
            if part["depths"] != depths:
                raise ValueError(f"{kv} {mode}: depths differ between records "
                                 f"({part['depths']} vs {depths})")
            for c, row in zip(part["contexts"], part["table"]):
                if c in rows:
                    raise ValueError(f"{kv} {mode}: context {c} appears in two records")
                rows[c] = row
            cells += part["cells"]
        contexts = sorted(rows)
        correct = sum(1 for c in cells if c["correct"])
        merged.append({**{k: v for k, v in parts[0].items() if k not in ("cells", "table")},
                       "contexts": contexts, "table": [rows[c] for c in contexts],
                       "cells": sorted(cells, key=lambda c: (c["context"], c["depth"], c["seed"])),
                       "accuracy": correct / len(cells) if cells else 0.0})
    return sorted(merged, key=lambda r: (r["mode"], r["kv"] != "fp16", r["kv"]))


def cell_key(c: dict[str, Any]) -> tuple[int, float, int]:
    return (c["context"], round(c["depth"], 6), c["seed"])


def report(runs: list[dict[str, Any]], reference: str, title: str) -> str:
    lines = [f"# {title}", "", "| scheme | mode | cells | correct | accuracy |",
             "| --- | --- | ---: | ---: | ---: |"]
    for r in runs:
        n = len(r["cells"])
        ok = sum(1 for c in r["cells"] if c["correct"])
        lines.append(f"| `{r['kv']}` | {r['mode']} | {n} | {ok} | {r['accuracy']:.1%} |")
    by = {(r["kv"], r["mode"]): r for r in runs}
    for r in runs:
        ref = by.get((reference, r["mode"]))
        if r["kv"] == reference or not ref:
            continue
        ref_cells = {cell_key(c): c for c in ref["cells"]}
        gained, lost, both = [], [], 0
        for c in r["cells"]:
            rc = ref_cells.get(cell_key(c))
            if rc is None:
                continue
            both += 1
            if c["correct"] and not rc["correct"]:
                gained.append(c)
            elif rc["correct"] and not c["correct"]:
                lost.append(c)
        lines += ["", f"## `{r['kv']}` vs `{reference}`, {r['mode']} needle",
                  f"{both} common cells; `{r['kv']}` retrieves {len(gained)} that `{reference}` "
                  f"misses and misses {len(lost)} that `{reference}` retrieves; the other "
                  f"{both - len(gained) - len(lost)} agree."]
        if gained or lost:
            lines += ["", f"| context | depth | seed | `{reference}` | `{r['kv']}` | "
                      f"`{r['kv']}` answer |", "| ---: | ---: | ---: | --- | --- | --- |"]
            for c in sorted(gained + lost, key=cell_key):
                rc = ref_cells[cell_key(c)]
                answer = " ".join(str(c.get("answer", "")).split())[:60].replace("|", "/")
                lines.append(f"| {c['context']} | {c['depth']:.0%} | {c['seed']} | "
                             f"{'ok' if rc['correct'] else 'miss'} | "
                             f"{'ok' if c['correct'] else 'miss'} | {answer} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("records", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True, help="merged tq niah record (JSON)")
    p.add_argument("--report", type=Path, help="markdown comparison")
    p.add_argument("--reference", default="fp16", help="scheme the others are compared with")
    p.add_argument("--title", default="Needle in a haystack")
    a = p.parse_args(argv)
    runs, meta = load_runs(a.records)
    merged = merge(runs)
    a.out.write_text(json.dumps({**meta, "runs": merged}, indent=1) + "\n", encoding="utf-8")
    if a.report:
        a.report.write_text(report(merged, a.reference, a.title), encoding="utf-8")
    print(f"merged {len(runs)} runs into {len(merged)}: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
