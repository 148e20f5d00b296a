"""Builds bench/results/calibrate.{json,md,png}: `tq calibrate` plans against uniform widths.

Reads, from the record folder (default bench/results/calibrate):

- `ev_<label>.json`: the `tq perplexity --kld REF --json` output of one scheme (uniform `tqB`
  or `plan=FILE`), all with the same text, context and chunks;
- `plan<budget>.json`: the plans `tq calibrate -o` wrote, and `table.json` (`--table`);
- `cal<budget>.out` (optional): what `tq calibrate` printed (the plan's bits/value as it
  computed them), used only as a cross-check.

Bits/value are the tool's own `kv_bits_per_value` (stored bytes of K and V, codes + fp16
norms, x8 / values); the predicted KLD of a scheme is the sum over layers and sides of the
calibration table's single-side KLD at that scheme's widths (what the plan's DP minimises).

Usage: python3 bench/calibrate_report.py [--dir DIR] [--out DIR] [--machine TEXT] [--notes FILE]
"""
from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def load_table(path: Path) -> dict[str, Any]:
    table = json.loads(path.read_text())
    for key in ("candidates", "kld_keys", "kld_values"):
        if key not in table:
            raise SystemExit(f"{path}: no '{key}' (not a table written by tq calibrate --table)")
    return table


def predicted_kld(table: dict[str, Any], widths: list[tuple[float, float]]) -> float | None:
    """Sum of the table's per-layer key and value KLDs at the given widths (None: not in it)."""
    cands = [float(c) for c in table["candidates"]]
    total = 0.0
    for layer, (k, v) in enumerate(widths):
        if k not in cands or v not in cands:
            return None
        total += table["kld_keys"][layer][cands.index(k)]
        total += table["kld_values"][layer][cands.index(v)]
    return total


def parse_scheme(kv: str) -> tuple[str, str | None, dict[str, str]]:
    """'tq3.5:window=0,center=k' -> ('tq3.5', None, {...}); 'plan=F,window=0' -> ('plan', F)."""
    if kv.startswith("plan="):
        path, _, rest = kv[len("plan="):].partition(",")
        base, plan = "plan", path
    else:
        base, _, rest = kv.partition(":")
        plan = None
    options = dict(o.split("=", 1) for o in rest.split(",") if "=" in o)
    return base, plan, options


def calibrate_bits(path: Path) -> float | None:
    """The bits/value `tq calibrate` printed for its plan ('plan F: 3.4875 bits/value ...')."""
    if not path.exists():
        return None
    m = re.search(r"^plan .*?: ([\d.]+) bits/value", path.read_text(), re.M)
    return float(m[1]) if m else None


def load_rows(folder: Path, table: dict[str, Any], n_layers: int) -> list[Row]:
    rows: list[Row] = []
    for path in sorted(folder.glob("ev_*.json")):
        r = json.loads(path.read_text())
        if "kld_mean" not in r:
            raise SystemExit(f"{path}: no kld_mean (run tq perplexity with --kld REF --json)")
        base, plan_path, options = parse_scheme(r["kv"])
        row: Row = {
            "label": path.stem[3:],
            "scheme": r["kv"],
            "kind": "plan" if plan_path else "uniform",
            "center": options.get("center", "0"),
            "window": options.get("window"),
            "bits": r["kv_bits_per_value"],
            "kv_ratio": r["kv_ratio"],
            "ppl": r["ppl"],
            "ppl_stderr": r["ppl_stderr"],
            "delta_ppl": r["delta_ppl"],
            "delta_ppl_stderr": r["delta_ppl_stderr"],
            "kld": r["kld_mean"],
            "kld_stderr": r["kld_mean_stderr"],
            "kld_median": r["kld_median"],
            "kld_p99": r["kld_p99"],
            "top1": r["top1_agree"],
            "tokens_scored": r["tokens_scored"],
            "windows": r["windows"],
            "context": r["context"],
            "seconds": r["seconds"],
        }
        if plan_path:
            plan = json.loads(Path(plan_path).read_text())
            widths = [(float(b["k"]), float(b["v"])) for b in plan["bits"]]
            row.update(budget=plan["budget_bits"], predicted_kld=plan["predicted_kld"],
                       plan=Path(plan_path).name,
                       widths=[list(w) for w in widths])
            row["calibrate_bits"] = calibrate_bits(
                folder / f"cal{Path(plan_path).stem[len('plan'):]}.out")
        else:
            bits = float(base[2:])
            row["predicted_kld"] = predicted_kld(table, [(bits, bits)] * n_layers)
        rows.append(row)
    rows.sort(key=lambda r: (r["center"], r["bits"], r["kind"]))
    return rows


def interpolate_uniform(uniform: list[Row], bits: float) -> float | None:
    """Uniform mean KLD at `bits`, log-linear between the two measured neighbours."""
    pts = sorted((r["bits"], r["kld"]) for r in uniform)
    for (b0, k0), (b1, k1) in zip(pts, pts[1:]):
        if b0 <= bits <= b1:
            t = (bits - b0) / (b1 - b0)
            return math.exp((1 - t) * math.log(k0) + t * math.log(k1))
    return None


def comparisons(rows: list[Row]) -> list[Row]:
    """Each plan against uniform widths: same stored bits, or interpolated, or the next up."""
    out: list[Row] = []
    for p in (r for r in rows if r["kind"] == "plan"):
        uniform = [r for r in rows if r["kind"] == "uniform" and r["center"] == p["center"]]
        same = [u for u in uniform if abs(u["bits"] - p["bits"]) < 1e-3]
        above = [u for u in uniform if u["bits"] > p["bits"] + 1e-3]
        c: Row = {"plan": p["label"], "bits": p["bits"], "kld": p["kld"], "center": p["center"]}
        if same:
            c.update(uniform=same[0]["scheme"], uniform_bits=same[0]["bits"],
                     uniform_kld=same[0]["kld"], ratio=p["kld"] / same[0]["kld"],
                     how="same bits")
        else:
            interp = interpolate_uniform(uniform, p["bits"])
            if interp is not None:
                c.update(uniform="interpolated", uniform_bits=p["bits"], uniform_kld=interp,
                         ratio=p["kld"] / interp, how="log-linear between uniform rows")
        if above:
            nxt = min(above, key=lambda u: u["bits"])
            c.update(next_uniform=nxt["scheme"], next_bits=nxt["bits"], next_kld=nxt["kld"],
                     next_ratio=p["kld"] / nxt["kld"])
        out.append(c)
    return out


def plot(rows: list[Row], path: Path, title: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {("uniform", "0"): ("o-", "uniform tqB:window=0"),
              ("plan", "0"): ("s-", "tq calibrate plan, window=0"),
              ("uniform", "k"): ("o", "uniform, center=k"),
              ("plan", "k"): ("s", "plan, center=k")}
    for (kind, center), (fmt, label) in styles.items():
        pts = sorted((r["bits"], r["kld"]) for r in rows
                     if r["kind"] == kind and r["center"] == center)
        if pts:
            ax.plot([x for x, _ in pts], [y for _, y in pts], fmt, label=label)
    for r in rows:
        if r["center"] == "0":
            name = r["scheme"].split(":")[0] if r["kind"] == "uniform" else f"B={r['budget']:g}"
            ax.annotate(name, (r["bits"], r["kld"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
    ax.set_xlabel("stored bits / value (tq kv_bits_per_value: codes + fp16 norms)")
    ax.set_ylabel("mean KLD vs fp16 (nats / token)")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def fmt_kld(r: Row) -> str:
    return f"{r['kld']:.5f} ± {r['kld_stderr']:.5f}"


def markdown(rows: list[Row], comps: list[Row], table: dict[str, Any], args: argparse.Namespace,
             commit: str) -> str:
    ev = rows[0]
    plans = [r for r in rows if r["kind"] == "plan" and r["center"] == "0"]
    lines = [
        "# Per-layer widths from `tq calibrate` vs uniform TurboQuant (SmolLM2-135M)",
        "",
        f"Generated by `python3 bench/calibrate_report.py` from the records in "
        f"`{args.dir}` (tq at commit {commit}). Machine: {args.machine}.",
        "",
        f"- Model `SmolLM2-135M-Instruct.Q4_1.gguf` (30 layers, 3 KV heads, d = 64); all rows "
        f"`window=0` (every token coded, no fp16 window), default Hadamard rotation, MSE codes.",
        f"- Evaluation: as `quality.md`: WikiText-2 raw test, the first {ev['windows']} chunks of "
        f"{ev['context']} tokens, second half scored: **{ev['tokens_scored']} scored tokens**; "
        f"KLD = KL(P_fp16 ‖ P_scheme) per token (nats) against fp16 logits saved by the same "
        f"command; top-1 = same argmax as fp16.",
        f"- Calibration: on tokens the evaluation does not see: the same file after its first "
        f"{table['skip_tokens']} tokens (the evaluation reads the first "
        f"{ev['windows'] * ev['context']}), {table['chunks']} chunk(s) of {table['context']} "
        f"tokens; candidates {', '.join(f'{c:g}' for c in table['candidates'])} bits; each "
        f"layer's K and V measured alone ({len(table['candidates'])} x 30 x 2 runs).",
        "- Bits/value: `kv_bits_per_value` as `tq perplexity --json` reports it (stored bytes of "
        "K and V: codes + fp16 norms (+ fp16 means with center=k), x8 / values).",
        "",
        "Commands:",
        "",
        "```sh",
        "M=models/SmolLM2-135M-Instruct.Q4_1.gguf T=../shared/data/wikitext-2-raw/wiki.test.raw",
        "P=bench/results/calibrate",
        "tq perplexity -m $M -f $T -c 1024 --chunks 12 -t 2 --kv fp16 --save-logits ref.logits",
        f"tq calibrate -m $M -f $T --skip {table['skip_tokens']} -c {table['context']} "
        f"--chunks {table['chunks']} -t 2 \\",
        f"    --candidates {','.join(f'{c:g}' for c in table['candidates'])} "
        f"--options {table['options']} --budget 3.5 --table $P/table.json -o $P/plan3.5.json",
        "tq calibrate ... --budget B --from-table $P/table.json -o $P/planB.json"
        "   # B = 3.0 4.0 3.25 3.75 4.25",
        "tq perplexity -m $M -f $T -c 1024 --chunks 12 -t 2 --kld ref.logits --json \\",
        "    --kv tqB:window=0 | --kv plan=$P/planB.json,window=0 [,center=k]",
        "python3 bench/calibrate_report.py",
        "```",
        "",
        "Note: a plan file's `base` field is not applied when it is loaded; `window=0` has to be "
        "given after the plan (`plan=FILE,window=0`), otherwise the default 128-token window is "
        "used.",
        "",
        "## Results",
        "",
        "| scheme | bits/value | PPL | ΔPPL | mean KLD | KLD p99 | top-1 | predicted KLD |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        name = r["scheme"].replace("bench/results/calibrate/", "")
        pred = f"{r['predicted_kld']:.4f}" if r.get("predicted_kld") is not None else "—"
        lines.append(
            f"| `{name}` | {r['bits']:.4f} | {r['ppl']:.3f} ± {r['ppl_stderr']:.2f} | "
            f"{r['delta_ppl']:+.3f} ± {r['delta_ppl_stderr']:.3f} | {fmt_kld(r)} | "
            f"{r['kld_p99']:.4f} | {100 * r['top1']:.1f}% | {pred} |")
    lines += [
        "",
        "Predicted KLD: the sum over layers of the calibration table's KLD with only that "
        "layer's K (or V) quantized at its width (for a plan, the value its DP minimised). It "
        "ignores interactions between layers and is measured on 256-token chunks, so it is a "
        "ranking device, not an estimate of the 1024-token KLD; the ratio measured / predicted "
        "is in the reading below.",
        "",
        "Figure: `calibrate.png` (mean KLD vs stored bits/value, uniform vs plan).",
        "",
        "## Plan vs uniform",
        "",
        "| plan | bits/value | plan KLD | uniform at the same bits | uniform KLD | plan / uniform "
        "| next uniform up | its KLD | plan / it |",
        "|---|---:|---:|---|---:|---:|---|---:|---:|",
    ]
    for c in comps:
        uni = (f"`{c['uniform']}`" if c.get("how") == "same bits"
               else "interpolated" if "uniform" in c else "—")
        ukld = f"{c['uniform_kld']:.5f}" if "uniform_kld" in c else "—"
        ratio = f"{c['ratio']:.2f}×" if "ratio" in c else "—"
        nxt = (f"`{c['next_uniform']}` ({c['next_bits']:.3f})" if "next_uniform" in c else "—")
        nkld = f"{c['next_kld']:.5f}" if "next_kld" in c else "—"
        nratio = f"{c['next_ratio']:.2f}×" if "next_ratio" in c else "—"
        lines.append(f"| `{c['plan']}` | {c['bits']:.4f} | {c['kld']:.5f} | {uni} | {ukld} | "
                     f"{ratio} | {nxt} | {nkld} | {nratio} |")
    lines += [
        "",
        "\"interpolated\": log-linear between the two uniform rows around the plan's bits "
        "(uniform widths only exist every 0.5 bit).",
        "",
        "## Chosen widths per layer (K / V bits)",
        "",
        "| layer | " + " | ".join(f"B = {p['budget']:g}" for p in plans) + " |",
        "|---:|" + "---|" * len(plans),
    ]
    n_layers = len(plans[0]["widths"]) if plans else 0
    for layer in range(n_layers):
        cells = [f"{p['widths'][layer][0]:g} / {p['widths'][layer][1]:g}" for p in plans]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    for p in plans:
        ks = [w[0] for w in p["widths"]]
        vs = [w[1] for w in p["widths"]]
        lines.append("")
        lines.append(f"- B = {p['budget']:g}: mean K {sum(ks) / len(ks):.3f} bits, mean V "
                     f"{sum(vs) / len(vs):.3f} bits; stored {p['bits']:.4f} bits/value "
                     f"(tq calibrate said {p['calibrate_bits']}).")
    if args.notes and Path(args.notes).exists():
        lines += ["", Path(args.notes).read_text().rstrip()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="bench/results/calibrate", help="record folder")
    ap.add_argument("--out", default="bench/results", help="where calibrate.* go")
    ap.add_argument("--machine", default="2-core shared CPU, 2 threads", help="machine line")
    ap.add_argument("--notes", default="bench/results/calibrate/reading.md",
                    help="hand-written reading appended to the md (if it exists)")
    args = ap.parse_args()
    folder, out = Path(args.dir), Path(args.out)
    table = load_table(folder / "table.json")
    n_layers = len(table["kld_keys"])
    rows = load_rows(folder, table, n_layers)
    if not rows:
        raise SystemExit(f"{folder}: no ev_*.json records")
    comps = comparisons(rows)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    record = {"machine": args.machine, "commit": commit, "table": {
        k: table[k] for k in ("candidates", "context", "chunks", "skip_tokens", "options")},
        "rows": rows, "comparisons": comps}
    (out / "calibrate.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "calibrate.md").write_text(markdown(rows, comps, table, args, commit))
    title = (f"SmolLM2-135M, WikiText-2 {rows[0]['windows']}x{rows[0]['context']} "
             f"({rows[0]['tokens_scored']} scored tokens), window=0")
    if not plot(rows, out / "calibrate.png", title):
        print("matplotlib missing: calibrate.png not drawn")
    for c in comps:
        print(json.dumps(c))


if __name__ == "__main__":
    main()
