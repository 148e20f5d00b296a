"""Issue #12's end-to-end GPU report: `tq bench --device cuda` JSON (+ hf_baseline.py JSON).

Reads the decode/prefill rows that `tq bench --device cuda --out PREFIX` writes for each model
(Llama-3.1-8B shape with Q4_0 weights, its batch-32 rows, the same shape with F16 weights, the
SmolLM2-135M shape) and the Hugging Face baseline, and writes

    OUT.json  every row, with its ratio to the fp16-cache row of the same (context, batch)
    OUT.md    the tables, the targets of issue #12 with pass/miss, the HF comparison
    OUT.png   decode tokens/s against context (batch 1 and 8) and the speed-up over fp16

Usage:
    python3 bench/cuda/e2e_report.py --q4 A.json [--q4 B32.json] --f16 F.json --smol S.json \
        --hf HF.json --card "NVIDIA H200" --out bench/results/gpu_e2e
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

GIB = 1024.0**3


def load_rows(paths: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    for p in paths:
        d = json.loads(Path(p).read_text(encoding="utf-8"))
        meta = {k: v for k, v in d.items() if k != "rows"}
        rows += d["rows"]
    return rows, meta


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds speedup_vs_fp16 (fp16 ms / this ms) to every decode row that has an fp16 twin."""
    fp16 = {(r["context"], r["batch"]): r["ms_per_step"] for r in rows
            if r["kind"] == "decode" and r["kv"] == "fp16"}
    for r in rows:
        if r["kind"] == "decode" and (r["context"], r["batch"]) in fp16:
            r["speedup_vs_fp16"] = fp16[(r["context"], r["batch"])] / r["ms_per_step"]
    return rows


def decode_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| cache | context | batch | ms/step | tokens/s | vs fp16 | attention share | "
           "of floor | KiB/token | tokens in 80 GiB |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in sorted((r for r in rows if r["kind"] == "decode"),
                    key=lambda r: (r["batch"], r["context"], r["kv"] != "fp16", r["kv"])):
        out.append(
            f"| `{r['kv']}` | {r['context'] // 1024}k | {r['batch']} | {r['ms_per_step']:.3f} | "
            f"{r['tokens_per_second']:.1f} | {r.get('speedup_vs_fp16', float('nan')):.2f}x | "
            f"{r['attention_share']:.1%} | {r['floor_fraction']:.1%} | "
            f"{r['kv_bytes_per_token'] / 1024:.1f} | {r['tokens_in_budget'] / 1e6:.2f} M |")
    return out


def prefill_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| cache | prompt | chunk | seconds | tokens/s |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if r["kind"] == "prefill":
            out.append(f"| `{r['kv']}` | {r['context']} | {r['chunk']} | {r['seconds']:.2f} | "
                       f"{r['prefill_tokens_per_second']:.0f} |")
    return out


def find(rows: list[dict[str, Any]], kv: str, context: int, batch: int) -> dict[str, Any] | None:
    for r in rows:
        if r["kind"] == "decode" and (r["kv"], r["context"], r["batch"]) == (kv, context, batch):
            return r
    return None


def targets(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| target | measured | |", "| --- | ---: | --- |"]

    def line(what: str, value: float | None, goal: float) -> None:
        if value is None:
            out.append(f"| {what} | not measured | — |")
        else:
            out.append(f"| {what} | {value:.2f}x | {'met' if value >= goal else 'missed'} |")

    r = find(rows, "tq4", 131072, 1)
    line("tq4 decode ≥ 1.5x fp16 at 128k, batch 1", r and r.get("speedup_vs_fp16"), 1.5)
    r = find(rows, "tq4", 32768, 8)
    line("tq4 decode ≥ 1.8x fp16 at 32k, batch 8", r and r.get("speedup_vs_fp16"), 1.8)
    for kv in sorted({r["kv"] for r in rows if r["kind"] == "decode"} - {"fp16"}):
        r = find(rows, kv, 4096, 1)
        line(f"`{kv}` no slower than fp16 at 4k, batch 1", r and r.get("speedup_vs_fp16"), 1.0)
    f, t = find(rows, "fp16", 4096, 1), find(rows, "tq4", 4096, 1)
    if f and t:
        line("tq4 tokens in the same memory ≥ 3.5x fp16",
             t["tokens_in_budget"] / f["tokens_in_budget"], 3.5)
    return out


def hf_table(hf: dict[str, Any], f16: list[dict[str, Any]], q4: list[dict[str, Any]]) -> list[str]:
    bw = hf["copy_bandwidth_bytes_per_s"]
    out = [f"Hugging Face transformers {hf['transformers']} / torch {hf['torch']}, bf16, "
           f"StaticCache + SDPA, `torch.compile(mode=\"reduce-overhead\")` (mode per row); "
           f"copy bandwidth {bw / 1e9:.0f} GB/s in its run. Floor = (weights read per step + "
           "K/V at the context) / copy bandwidth.", "",
           "| context | HF bf16 ms | HF of floor | tq F16 weights, fp16 cache ms | vs HF | "
           "tq Q4_0, fp16 cache ms | vs HF | tq Q4_0, tq4 ms | vs HF |",
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for h in hf["rows"]:
        c = h["context"]
        a, b, t = find(f16, "fp16", c, 1), find(q4, "fp16", c, 1), find(q4, "tq4", c, 1)

        def cell(r: dict[str, Any] | None) -> str:
            if not r:
                return "— | —"
            return f"{r['ms_per_step']:.3f} | {h['decode_ms_median'] / r['ms_per_step']:.2f}x"

        out.append(f"| {c // 1024}k | {h['decode_ms_median']:.3f} ({h['mode']}) | "
                   f"{h['fraction_of_floor']:.1%} | {cell(a)} | {cell(b)} | {cell(t)} |")
    return out


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    kvs = sorted({r["kv"] for r in rows if r["kind"] == "decode"}, key=lambda k: k != "fp16")
    colour = {kv: f"C{i}" for i, kv in enumerate(kvs)}  # one colour per cache, both batches
    for batch, style in ((1, "-o"), (8, "--s")):
        for kv in kvs:
            pts = sorted((r["context"], r["tokens_per_second"], r.get("speedup_vs_fp16", 1.0))
                         for r in rows if r["kind"] == "decode" and r["kv"] == kv
                         and r["batch"] == batch)
            if not pts:
                continue
            xs = [p[0] for p in pts]
            axes[0].plot(xs, [p[1] for p in pts], style, color=colour[kv], label=f"{kv} b{batch}")
            if kv != "fp16":
                axes[1].plot(xs, [p[2] for p in pts], style, color=colour[kv],
                             label=f"{kv} b{batch}")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context (tokens per sequence)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("decode tokens/s (all sequences)")
    axes[0].set_yscale("log")
    axes[1].axhline(1.0, color="k", lw=0.8)
    axes[1].set_ylabel("speed-up over the fp16 cache")
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--q4", action="append", required=True, help="8B-shape Q4_0 bench JSON")
    p.add_argument("--f16", help="8B-shape F16 bench JSON")
    p.add_argument("--smol", help="SmolLM2-shape bench JSON")
    p.add_argument("--hf", help="hf_baseline.py JSON")
    p.add_argument("--card", default="NVIDIA H200")
    p.add_argument("--out", required=True, help="output prefix")
    a = p.parse_args(argv)

    q4, q4_meta = load_rows(a.q4)
    with_ratios(q4)
    f16 = with_ratios(load_rows([a.f16])[0]) if a.f16 else []
    smol, smol_meta = load_rows([a.smol]) if a.smol else ([], {})
    with_ratios(smol)
    hf = json.loads(Path(a.hf).read_text(encoding="utf-8")) if a.hf else None

    md = [f"# End-to-end GPU decode ({a.card})", "",
          "Random-weight models of real shapes (`tq make-model`): speed only, never quality. "
          "Each decode row: a `Session` of `batch` sequences filled with `context` synthetic "
          "K/V tokens, median of the timed `decode_batch` steps (CUDA-graph replays, logits back "
          "on the host). Attention share = (step − the same step at a 16-token context) / step. "
          "Floor = (weight bytes + every sequence's cache bytes) / the copy bandwidth measured in "
          "the same run. Tokens in 80 GiB = (80 GiB − weights) / cache bytes per token.", "",
          f"## Llama-3.1-8B shape, Q4_0 weights ({q4_meta.get('weight_bytes_on_gpu', 0) / GIB:.2f}"
          f" GiB on the GPU; copy bandwidth "
          f"{q4_meta.get('copy_bandwidth_bytes_per_s', 0) / 1e9:.0f} GB/s)", "",
          *decode_table(q4), "", *prefill_table(q4), "", "### Targets of issue #12", "",
          *targets(q4), ""]
    if hf:
        md += ["## Outside baseline: Hugging Face transformers, same 8B shape, batch 1", "",
               *hf_table(hf, f16, q4), ""]
    if smol:
        md += [f"## SmolLM2-135M shape, Q4_0 weights "
               f"({smol_meta.get('weight_bytes_on_gpu', 0) / 2**20:.0f} MiB)", "",
               *decode_table(smol), "", *prefill_table(smol), ""]
    out = Path(a.out)
    out.with_suffix(".md").write_text("\n".join(md) + "\n", encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(
        {"card": a.card, "llama8b_q4_0": {"meta": q4_meta, "rows": q4},
         "llama8b_f16": f16, "smollm2_shape": {"meta": smol_meta, "rows": smol},
         "hf_baseline": hf}, indent=1) + "\n", encoding="utf-8")
    plot(q4, out.with_suffix(".png"), f"Llama-3.1-8B shape, Q4_0 weights, {a.card}")
    print(f"wrote {out}.md, .json, .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
