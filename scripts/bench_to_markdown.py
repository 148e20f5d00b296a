#!/usr/bin/env python3
"""Turns a Google Benchmark JSON file into a short markdown table (median rows only when the
run has repetitions). Usage: bench_to_markdown.py RESULT.json [TITLE] > RESULT.md"""
import json
import sys


def main() -> None:
    path = sys.argv[1]
    title = sys.argv[2] if len(sys.argv) > 2 else path
    with open(path) as f:
        data = json.load(f)
    ctx = data.get("context", {})
    rows = [b for b in data["benchmarks"] if b.get("aggregate_name", "median") == "median"]
    counters = []
    for b in rows:
        for key, value in b.items():
            if isinstance(value, (int, float)) and key not in counters and (
                "/s" in key or key.startswith("GB") or key.endswith("_ratio")
            ):
                counters.append(key)
    print(f"# {title}\n")
    print(f"Machine: {ctx.get('host_name', '?')}, {ctx.get('num_cpus', '?')} CPUs at "
          f"{ctx.get('mhz_per_cpu', '?')} MHz, caches "
          + ", ".join(f"L{c['level']} {c['size'] // 1024} KiB" for c in ctx.get("caches", []))
          + f"; date {ctx.get('date', '?')}. Median of repetitions.\n")
    print("| benchmark | time (µs) | " + " | ".join(counters) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in counters) + " |")
    for b in rows:
        name = b.get("run_name", b["name"])
        unit = b.get("time_unit", "ns")
        scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[unit]
        cells = []
        for key in counters:
            v = b.get(key)
            if v is None:
                cells.append("")
            elif v >= 1e6:
                cells.append(f"{v / 1e6:.2f} M")
            elif v >= 1e3:
                cells.append(f"{v / 1e3:.1f} k")
            else:
                cells.append(f"{v:.3f}")
        print(f"| {name} | {b['real_time'] * scale:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
