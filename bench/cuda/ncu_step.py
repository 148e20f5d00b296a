#!/usr/bin/env python3
"""Kernel times of one repeating run of kernels (a decode step, or a layer) from an ncu log.

Input: the log of `ncu --metrics gpu__time_duration.sum --csv --log-file LOG.csv tq bench ...`
(or LOG.csv.gz). The run is the shortest sequence of at least --min-period kernels (name, grid,
block) that the log's end repeats twice in a row (with identical layers, one layer's kernels),
unless --marker names the kernel that closes a step (a regex on the kernel name): then the
kernels after its second-to-last occurrence up to its last. It is summarised per kernel name and
grid: calls, summed microseconds, and the share of the run. ncu serialises kernels and flushes
caches between them, so the sums exceed wall time; the per-kernel split is what it is for.

Usage: ncu_step.py LOG.csv [LOG2.csv ...] [--marker REGEX] [--top N] [--min-period N]
"""
from __future__ import annotations

import argparse
import csv
import gzip
import re
import sys
from collections import defaultdict
from dataclasses import dataclass

UNIT_TO_US = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3,
              "second": 1e6, "s": 1e6}


@dataclass
class Kernel:
    name: str
    grid: str
    block: str
    us: float


def read_kernels(path: str) -> list[Kernel]:
    """The kernels of an ncu CSV log, in launch order (one row per kernel and metric)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="", errors="replace") as f:
        lines = [ln for ln in f if ln.startswith('"')]
    if not lines:
        raise SystemExit(f"{path}: no CSV rows (was ncu run with --csv --log-file?)")
    kernels: list[Kernel] = []
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        unit = row.get("Metric Unit", "nsecond")
        if unit not in UNIT_TO_US:
            raise SystemExit(f"{path}: unknown time unit {unit!r}")
        value = float(row["Metric Value"].replace(",", ""))
        kernels.append(Kernel(row["Kernel Name"], row.get("Grid Size", ""),
                              row.get("Block Size", ""), value * UNIT_TO_US[unit]))
    if not kernels:
        raise SystemExit(f"{path}: no gpu__time_duration.sum rows")
    return kernels


def short_name(name: str) -> str:
    """The kernel's name without its trailing parameter list and anonymous namespaces."""
    text = re.sub(r"\(anonymous namespace\)::|<unnamed>::", "", name).strip()
    if text.endswith(")"):
        depth = 0
        for i in range(len(text) - 1, -1, -1):
            depth += text[i] == ")"
            depth -= text[i] == "("
            if depth == 0:
                return text[:i].strip()
    return text


def last_step(kernels: list[Kernel], marker: str | None, min_period: int = 8) -> list[Kernel]:
    """The kernels of the log's last complete step (see the module docstring)."""
    if marker:
        pattern = re.compile(marker)
        closing = [i for i, k in enumerate(kernels) if pattern.search(k.name)]
        if len(closing) < 2:
            raise SystemExit(f"fewer than two kernels match {marker!r}: no complete step")
        return kernels[closing[-2] + 1: closing[-1] + 1]
    keys = [(k.name, k.grid, k.block) for k in kernels]
    for period in range(max(1, min_period), len(keys) // 2 + 1):
        if keys[-period:] == keys[-2 * period: -period]:
            return kernels[-period:]
    raise SystemExit("the log's end does not repeat: no complete step found (give --marker)")


def summarise(path: str, marker: str | None, top: int, min_period: int) -> None:
    step = last_step(read_kernels(path), marker, min_period)
    groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for k in step:
        groups[(short_name(k.name), k.grid, k.block)].append(k.us)
    total = sum(k.us for k in step)
    print(f"## {path}: {len(step)} kernels in the last step, {total:.1f} us summed")
    rows = sorted(groups.items(), key=lambda kv: -sum(kv[1]))
    for (name, grid, block), times in rows[:top]:
        s = sum(times)
        print(f"{len(times):5d} {s:10.1f} us {100 * s / total:5.1f}%  {name} g{grid} b{block}")
    rest = rows[top:]
    if rest:
        s = sum(sum(t) for _, t in rest)
        print(f"  ... {len(rest)} more kinds, {s:.1f} us")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+")
    ap.add_argument("--marker", help="regex of the kernel that closes a step")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--min-period", type=int, default=8,
                    help="fewest kernels in a repeating run (default 8)")
    args = ap.parse_args()
    for path in args.logs:
        summarise(path, args.marker, args.top, args.min_period)
    return 0


if __name__ == "__main__":
    sys.exit(main())
