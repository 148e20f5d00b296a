"""Same-run A/B comparison of two builds of the attention benchmark (bench_attention.cu).

ab_timing.sh runs the BEFORE and AFTER binaries alternately, several rounds, on one card; this
script takes the median over rounds of each (kernel, shape, context, batch) row for each side
and writes a markdown table with the after/before ratio, plus the joined JSON.
Usage: python3 ab_compare.py OUT_PREFIX before1.json after1.json [before2.json after2.json ...]
"""
import json
import statistics
import sys
from pathlib import Path

RowKey = tuple[str, str, int, int]


def medians(paths: list[str]) -> tuple[dict[RowKey, float], dict]:
    samples: dict[RowKey, list[float]] = {}
    header: dict = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        header = {k: data[k] for k in ("device", "sms", "copy_gbs", "flush") if k in data}
        for r in data["rows"]:
            key = (r["kernel"], r["shape"], r["context"], r["batch"])
            samples.setdefault(key, []).append(r["us"])
    return {k: statistics.median(v) for k, v in samples.items()}, header


def main(argv: list[str]) -> int:
    if len(argv) < 4 or len(argv) % 2 != 0:
        print(__doc__, file=sys.stderr)
        return 2
    prefix, files = argv[1], argv[2:]
    before, header = medians(files[0::2])
    after, _ = medians(files[1::2])
    rounds = len(files) // 2
    lines = [
        f"# Same-run A/B: attention kernels before vs after ({header.get('device', '?')})",
        "",
        f"{rounds} alternating rounds per side, median µs per row; L2 flush: "
        f"{header.get('flush', '?')}; copy bandwidth {header.get('copy_gbs', 0):.0f} GB/s.",
        "",
        "| kernel | shape | context | batch | before µs | after µs | after / before |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = []
    for key in sorted(before):
        if key not in after:
            continue
        b, a = before[key], after[key]
        rows.append(dict(kernel=key[0], shape=key[1], context=key[2], batch=key[3],
                         before_us=b, after_us=a, ratio=a / b))
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {b:.1f} | {a:.1f} | "
                     f"{a / b:.3f} |")
    Path(prefix + ".md").write_text("\n".join(lines) + "\n")
    Path(prefix + ".json").write_text(json.dumps(dict(header, rounds=rounds, rows=rows), indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
