"""Prefill attention report: tq_bench_prefill's JSON next to sdpa_bench.py --prefill's JSON from
the same run (Llama-3.1-8B layer: 32 query heads, 8 KV heads, d = 128, batch 1, a causal chunk of
n queries ending a cache of ctx tokens).

Writes OUT.md (a table per context: each kernel's time, and the best of ours against SDPA),
OUT.json (both inputs merged) and OUT.png (time vs chunk length per context, log-log).
Usage: python3 prefill_report.py OURS.json SDPA.json OUT_PREFIX
"""
import json
import sys
from collections import defaultdict

# Kernels shown in the table, in order, with the column names used for them.
COLUMNS = [
    ("fp16_flash", "fp16 flash"),
    ("fp16_flash_v1", "fp16 flash v1"),
    ("fp16_split", "fp16 split"),
    ("tq4_deq_flash", "tq4 deq+flash"),
    ("tq4_mq", "tq4 multi-query"),
    ("tq3.5_deq_flash", "tq3.5 deq+flash"),
    ("k4v3_deq_flash", "k4v3 deq+flash"),
]
SDPA = "sdpa_fp16_lower_right_gqa"


def load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def table(rows: list[dict]) -> dict[int, dict[int, dict[str, float]]]:
    """context -> n_queries -> kernel -> microseconds."""
    out: dict[int, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        out[r["context"]][r["n_queries"]][r["kernel"]] = r["us"]
    return out


def markdown(ours: dict, sdpa: dict, t: dict) -> str:
    lines = [
        f"# Prefill attention, {ours['device']} (tq_bench_prefill + sdpa_bench.py --prefill, "
        "same run)",
        "",
        "Llama-3.1-8B layer (32 query heads, 8 KV heads, d = 128), batch 1: a causal chunk of n "
        "queries at the end of a cache of ctx tokens. Times in µs (median of 7 CUDA-event "
        f"timings). SDPA: PyTorch {sdpa.get('torch', '?')} "
        "`scaled_dot_product_attention` with a lower-right causal mask and GQA, fp16. "
        "*ours / SDPA*: the fastest of our fp16 kernels at that point over SDPA (lower is "
        "better); *tq4 / SDPA*: the faster tq4 route.",
        "",
    ]
    for ctx in sorted(t):
        names = [c for c in COLUMNS if any(c[0] in t[ctx][n] for n in t[ctx])]
        lines.append(f"## ctx = {ctx}")
        lines.append("")
        head = ["n"] + [c[1] for c in names] + ["SDPA", "ours / SDPA", "tq4 / SDPA"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---:|" * len(head))
        for n in sorted(t[ctx]):
            row = t[ctx][n]
            cells = [str(n)] + [f"{row[k]:.0f}" if k in row else "" for k, _ in names]
            s = row.get(SDPA)
            fp16 = [row[k] for k in ("fp16_flash", "fp16_split") if k in row]
            tq4 = [row[k] for k in ("tq4_deq_flash", "tq4_mq") if k in row]
            cells.append(f"{s:.0f}" if s else "")
            cells.append(f"{min(fp16) / s:.2f}" if s and fp16 else "")
            cells.append(f"{min(tq4) / s:.2f}" if s and tq4 else "")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(t: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ctxs = sorted(t)
    fig, axes = plt.subplots(1, len(ctxs), figsize=(5 * len(ctxs), 4), squeeze=False)
    for ax, ctx in zip(axes[0], ctxs):
        for key, label in COLUMNS[:1] + COLUMNS[2:5] + [(SDPA, "PyTorch SDPA")]:
            pts = [(n, t[ctx][n][key]) for n in sorted(t[ctx]) if key in t[ctx][n]]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"prefill attention, ctx = {ctx}")
        ax.set_xlabel("queries in the chunk (n)")
        ax.set_ylabel("µs")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit("usage: prefill_report.py OURS.json SDPA.json OUT_PREFIX")
    ours, sdpa = load(sys.argv[1]), load(sys.argv[2])
    t = table(ours["rows"] + sdpa["rows"])
    prefix = sys.argv[3]
    with open(prefix + ".md", "w") as f:
        f.write(markdown(ours, sdpa, t))
    with open(prefix + ".json", "w") as f:
        json.dump({"ours": ours, "sdpa": sdpa}, f, indent=1)
    plot(t, prefix + ".png")


if __name__ == "__main__":
    main()
