#!/usr/bin/env bash
# One-command evaluation report (issue 4): runs `tq perplexity` (fp16 reference logits, then KLD
# of every scheme on the same tokens), `tq niah` (single and multi needle heatmaps for the key
# schemes), `tq bench` (decode speed at 1k and at the trained context) and optionally
# `tq sensitivity` on the default model and WikiText-2 test, then writes
# bench/results/quality.md and quality.json (+ the PNGs next to them).
#
# Sized for a 2-core CPU (about 90 minutes); every size is an environment variable, e.g.
# CHUNKS=4 NIAH_LENGTHS=1024 NIAH_OTHER_LENGTHS=1024 for a 20-minute smoke run, or
# NIAH_SEEDS=3 for a finer grid on a bigger box.
# Usage: scripts/report.sh            (TQ=path/to/tq to pick the binary)
# Resumable: with WORK=DIR of an interrupted run, results already in DIR are reused (delete a
# file there to redo that step).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TQ="${TQ:-build/evalsuite/tools/tq}"
MODEL="${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
DATA="${DATA:-../shared/data}"
TEXT="${TEXT:-$DATA/wikitext-2-raw/wiki.test.raw}"
HAYSTACK="${HAYSTACK:-$DATA/haystack/pride-and-prejudice-pg1342.txt}"
CTX="${CTX:-1024}"
CHUNKS="${CHUNKS:-12}"
THREADS="${THREADS:-2}"
PROTECT="${PROTECT:-2/0}"  # tq sensitivity: layer 1 dominates; layer 0 and the last layers do not stand out
NIAH_LENGTHS="${NIAH_LENGTHS:-1024,2048,4096,8192}"  # fp16 and tq3.5: single + multi needle
NIAH_OTHER_LENGTHS="${NIAH_OTHER_LENGTHS:-1024,2048,4096}"  # other schemes: single needle
NIAH_DEPTHS="${NIAH_DEPTHS:-0,25,50,75,100}"
NIAH_MULTI_DEPTHS="${NIAH_MULTI_DEPTHS:-0,50,100}"
NIAH_SEEDS="${NIAH_SEEDS:-1}"
BENCH_CONTEXTS="${BENCH_CONTEXTS:-1024,8192}"
SENSITIVITY="${SENSITIVITY:-0}"  # 1: also run `tq sensitivity` (tq3, 1 chunk)
OUT="${OUT:-bench/results}"
WORK="${WORK:-$(mktemp -d /tmp/tq_report.XXXXXX)}"
# OpenMP threads that spin while waiting starve each other on a loaded machine (decode ran 15x
# slower with the default policy on the shared 2-core box).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

[ -x "$TQ" ] || { echo "report: no tq binary at $TQ (set TQ=...)" >&2; exit 1; }
[ -f "$MODEL" ] || MODEL="$(scripts/fetch_model.sh)"
[ -f "$TEXT" ] || TEXT="/work/shared/data/wikitext-2-raw/wiki.test.raw"
[ -f "$HAYSTACK" ] || HAYSTACK="/work/shared/data/haystack/pride-and-prejudice-pg1342.txt"
mkdir -p "$OUT" "$WORK"
echo "report: work dir $WORK" >&2
START=$(date +%s)

P="protect=$PROTECT"
# TurboQuant presets keep a 128-token fp16 window by default; `window=0` rows show the codes
# alone, and q4r:window=128 gives the block baseline the same window for a like-for-like
# comparison.
SCHEMES=(
  q8 q8r q4 q4r "q4r:window=128" tq4 tq3.5 k4v3 tq3 tq2.5 "tq3.5:window=64"
  "tq4:kcodec=prod" "tq3.5:kcodec=prod"
  "tq4:$P" "tq3.5:$P" "k4v3:$P" "tq3:$P" "tq2.5:$P" "tq4:kcodec=prod,$P" "tq3.5:kcodec=prod,$P"
  "tq4:window=0" "tq3.5:window=0" "k4v3:window=0" "tq3:window=0" "tq2.5:window=0"
)
NIAH_KEY=(fp16 tq3.5)
NIAH_OTHER=(q4r tq4 "tq3.5:window=0")

tag() { echo "$1" | tr ':,/=' '_+-~'; }
ppl_args=(-m "$MODEL" -f "$TEXT" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS" --json)

niah_common=(-m "$MODEL" --haystack "$HAYSTACK" --seeds "$NIAH_SEEDS" -t "$THREADS" --out "$OUT" -q)
i=0
for s in "${NIAH_KEY[@]}"; do
  echo "== niah $s  ($(($(date +%s) - START)) s)" >&2
  [ -s "$WORK/niah_single_$i.json" ] ||
    "$TQ" niah "${niah_common[@]}" --kv "$s" --lengths "$NIAH_LENGTHS" --mode single \
      --depths "$NIAH_DEPTHS" --json-out "$WORK/niah_single_$i.json"
  [ -s "$WORK/niah_multi_$i.json" ] ||
    "$TQ" niah "${niah_common[@]}" --kv "$s" --lengths "$NIAH_LENGTHS" --mode multi --needles 2 \
      --depths "$NIAH_MULTI_DEPTHS" --json-out "$WORK/niah_multi_$i.json"
  i=$((i + 1))
done

echo "== perplexity fp16 (reference logits)  ($(($(date +%s) - START)) s)" >&2
if [ ! -s "$WORK/ppl_fp16.json" ] || [ ! -s "$WORK/ref.logits" ]; then
  "$TQ" perplexity "${ppl_args[@]}" --kv fp16 --save-logits "$WORK/ref.logits" >"$WORK/ppl_fp16.json"
fi
for s in "${SCHEMES[@]}"; do
  echo "== perplexity $s  ($(($(date +%s) - START)) s)" >&2
  out_json="$WORK/ppl_$(tag "$s").json"
  [ -s "$out_json" ] ||
    "$TQ" perplexity "${ppl_args[@]}" --kv "$s" --kld "$WORK/ref.logits" -q >"$out_json.tmp"
  [ -s "$out_json" ] || mv "$out_json.tmp" "$out_json"
done
rm -f "$WORK/ref.logits"

echo "== bench  ($(($(date +%s) - START)) s)" >&2
bench_kv=()
for s in fp16 "${SCHEMES[@]}"; do bench_kv+=(--kv "$s"); done
"$TQ" bench -m "$MODEL" "${bench_kv[@]}" --contexts "$BENCH_CONTEXTS" --steps 8 -t "$THREADS" \
  --out "$OUT/decode_speed" -q

for s in "${NIAH_OTHER[@]}"; do
  echo "== niah $s  ($(($(date +%s) - START)) s)" >&2
  [ -s "$WORK/niah_single_$i.json" ] ||
    "$TQ" niah "${niah_common[@]}" --kv "$s" --lengths "$NIAH_OTHER_LENGTHS" --mode single \
      --depths "$NIAH_DEPTHS" --json-out "$WORK/niah_single_$i.json"
  i=$((i + 1))
done

if [ "$SENSITIVITY" = 1 ]; then
  echo "== sensitivity  ($(($(date +%s) - START)) s)" >&2
  "$TQ" sensitivity -m "$MODEL" -f "$TEXT" --kv tq3 -c "$CTX" --chunks 1 -t "$THREADS" \
    --out "$OUT/sensitivity_tq3" -q >/dev/null
fi

ELAPSED=$(($(date +%s) - START))
echo "== assembling ($ELAPSED s)" >&2
python3 - "$WORK" "$OUT" "$MODEL" "$TEXT" "$HAYSTACK" "$CTX" "$CHUNKS" "$THREADS" "$ELAPSED" \
  "$NIAH_LENGTHS" "$NIAH_DEPTHS" "$NIAH_MULTI_DEPTHS" "$NIAH_SEEDS" "$NIAH_OTHER_LENGTHS" <<'PY'
import glob, json, os, platform, subprocess, sys
(work, out, model, text, haystack, ctx, chunks, threads, elapsed,
 niah_lengths, niah_depths, niah_multi_depths, niah_seeds, niah_other_lengths) = sys.argv[1:]

ppl = {}
# Runs are sequential in the script's scheme order: file times give the table order.
for f in sorted(glob.glob(os.path.join(work, "ppl_*.json")), key=os.path.getmtime):
    j = json.load(open(f))
    ppl[j["kv"]] = j
ref = ppl["fp16"]
bench = json.load(open(os.path.join(out, "decode_speed.json")))
speed = {}
for r in bench["rows"]:
    speed.setdefault(r["kv"], {})[r["context"]] = r
niah = {}
niah_by_length = {}  # (kv, mode) -> {context: [correct, cells]}
for f in sorted(glob.glob(os.path.join(work, "niah_*.json"))):
    for r in json.load(open(f))["runs"]:
        n = sum(1 for c in r["cells"])
        ok = sum(1 for c in r["cells"] if c["correct"])
        niah.setdefault(r["kv"], {})[r["mode"]] = (ok, n, r.get("heatmap", ""))
        per = niah_by_length.setdefault((r["kv"], r["mode"]), {})
        for c in r["cells"]:
            cell = per.setdefault(c["context"], [0, 0])
            cell[0] += 1 if c["correct"] else 0
            cell[1] += 1

contexts = sorted({r["context"] for r in bench["rows"]})
c_short, c_long = contexts[0], contexts[-1]
order = ["fp16"] + [k for k in ppl if k != "fp16"]
rows = []
for kv in order:
    p = ppl[kv]
    sp = speed.get(kv, {})
    row = {
        "kv": kv,
        "bits_per_value": sp.get(c_long, {}).get("kv_bits_per_value"),
        "kv_ratio": sp[c_long]["kv_bits_per_value"] / 16.0 if c_long in sp else None,
        "ppl": p["ppl"], "ppl_stderr": p["ppl_stderr"],
        "delta_ppl": p.get("delta_ppl", 0.0), "delta_ppl_stderr": p.get("delta_ppl_stderr", 0.0),
        "kld_mean": p.get("kld_mean", 0.0), "kld_mean_stderr": p.get("kld_mean_stderr", 0.0),
        "kld_median": p.get("kld_median", 0.0), "kld_p99": p.get("kld_p99", 0.0),
        "top1_agree": p.get("top1_agree", 1.0),
        "tokens_scored": p["tokens_scored"],
        f"tps_{c_short}": sp.get(c_short, {}).get("tokens_per_second"),
        f"tps_{c_long}": sp.get(c_long, {}).get("tokens_per_second"),
        f"attention_share_{c_long}": sp.get(c_long, {}).get("attention_share"),
        f"attention_ms_{c_long}": sp.get(c_long, {}).get("attention_ms"),
    }
    for mode in ("single", "multi"):
        if mode in niah.get(kv, {}):
            ok, n, png = niah[kv][mode]
            row[f"niah_{mode}"] = [ok, n]
            row[f"niah_{mode}_heatmap"] = png
    rows.append(row)

cpu = "unknown CPU"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip(); break
except OSError:
    pass
ncpu = os.cpu_count()
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
meta = {"model": model, "text": text, "context": int(ctx), "chunks": int(chunks),
        "tokens_scored": ref["tokens_scored"], "tokens_evaluated": ref["tokens_evaluated"],
        "threads": int(threads), "cpu": cpu, "cpus": ncpu, "commit": commit,
        "elapsed_seconds": int(elapsed), "haystack": haystack,
        "niah": {"lengths": niah_lengths, "single_depths": niah_depths,
                 "multi_depths": niah_multi_depths, "multi_needles": 2, "seeds": int(niah_seeds),
                 "other_lengths": niah_other_lengths,
                 "by_length": [{"kv": kv, "mode": mode, "context": c, "correct": v[0], "cells": v[1]}
                               for (kv, mode), per in niah_by_length.items() for c, v in sorted(per.items())]},
        "decode_contexts": contexts}
json.dump({"meta": meta, "rows": rows}, open(os.path.join(out, "quality.json"), "w"), indent=2)

def f(x, fmt):
    return "—" if x is None else format(x, fmt)
def niah_cell(r, mode):
    if f"niah_{mode}" not in r: return "—"
    ok, n = r[f"niah_{mode}"]
    return f"{ok}/{n}"

L = []
L.append("# KV-cache quality and speed report\n")
L.append(f"Generated by `scripts/report.sh` (commit {commit}) in {int(elapsed)//60} min on this machine: "
         f"{cpu}, {ncpu} cores shared with other jobs, {threads} threads.\n")
L.append(f"- Model: `{os.path.basename(model)}` (30 layers, 9 query / 3 KV heads, d = 64).")
L.append(f"- Perplexity/KLD: WikiText-2 raw test (`wiki.test.raw`), llama-perplexity convention: "
         f"the first {chunks} non-overlapping chunks of {ctx} tokens (BOS at each chunk start), second "
         f"half of each scored: **{ref['tokens_scored']} scored tokens** ({ref['tokens_evaluated']} evaluated). "
         f"KLD = KL(P_fp16 ‖ P_scheme) per token, nats, on the same tokens; top-1 = same argmax as fp16.")
L.append(f"- NIAH: haystack `{os.path.basename(haystack)}`, context {niah_lengths} tokens for fp16 and tq3.5 "
         f"({niah_other_lengths} for the other schemes, single needle only) "
         f"(whole chat-templated prompt + answer), single needle at depths {niah_depths}%, "
         f"multi (2 needles, both required) at depths {niah_multi_depths}%, {niah_seeds} seed(s) per cell; "
         f"greedy answer, exact 7-digit match. Cells correct / cells.")
L.append(f"- Bits/value: stored bytes of K and V (codes + fp16 norms/scales, protected layers and the "
         f"fp16 window included) at {c_long} tokens, ×8 / values. KV ratio = bytes / fp16 bytes.")
L.append(f"- Decode speed (`tq bench`): fixed per-step cost measured on the real model at 64 tokens plus the "
         f"attention over a cache of {c_short} / {c_long} tokens measured per layer in the scheme's format "
         f"(CPU, {threads} threads). On a shared machine the tok/s columns swing with the load; the attention ms column is the comparable one.\n")
L.append("| scheme | bits/value | KV vs fp16 | PPL | ΔPPL | mean KLD | KLD p99 | top-1 | NIAH single | NIAH multi | "
         f"tok/s @{c_short} | tok/s @{c_long} | attn ms @{c_long} | attn share @{c_long} |")
L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    L.append(f"| `{r['kv']}` | {f(r['bits_per_value'], '.3f')} | {f(r['kv_ratio'], '.3f')} | "
             f"{r['ppl']:.3f} ± {r['ppl_stderr']:.2f} | {r['delta_ppl']:+.3f} ± {r['delta_ppl_stderr']:.3f} | "
             f"{r['kld_mean']:.5f} ± {r['kld_mean_stderr']:.5f} | {r['kld_p99']:.4f} | {100*r['top1_agree']:.1f}% | "
             f"{niah_cell(r, 'single')} | {niah_cell(r, 'multi')} | {f(r[f'tps_{c_short}'], '.2f')} | "
             f"{f(r[f'tps_{c_long}'], '.2f')} | {f(r.get(f'attention_ms_{c_long}'), '.1f')} | {f(r[f'attention_share_{c_long}'] and 100*r[f'attention_share_{c_long}'], '.0f')}% |")
L.append("")
pngs = sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "niah_*.png")))
L.append("Plots: `quality_kld_vs_bits.png` (mean KLD vs bits/value), `decode_speed.png` (tokens/s vs context), NIAH heatmaps " +
         ", ".join(f"`{p}`" for p in pngs) + ".\n")
if niah_by_length:
    lengths = sorted({c for per in niah_by_length.values() for c in per})
    L.append("NIAH by context length (cells correct / cells):\n")
    L.append("| scheme | mode | " + " | ".join(str(c) for c in lengths) + " |")
    L.append("|---|---|" + "---:|" * len(lengths))
    for (kv, mode), per in niah_by_length.items():
        L.append(f"| `{kv}` | {mode} | " + " | ".join(
            f"{per[c][0]}/{per[c][1]}" if c in per else "—" for c in lengths) + " |")
    L.append("")
byname = {r["kv"]: r for r in rows}
def kld(r): return f"{r['kld_mean']:.4f}"
def bits(r): return "?" if r["bits_per_value"] is None else f"{r['bits_per_value']:.2f}"
L.append("## Comparisons (computed from the table)\n")
q4r = byname.get("q4r")
if q4r and q4r["bits_per_value"]:
    L.append(f"TurboQuant at ≤ the bits of `q4r` ({bits(q4r)} bits/value, mean KLD {kld(q4r)}):\n")
    for r in rows:
        if r["kv"].startswith(("tq", "k")) and r["bits_per_value"] and r["bits_per_value"] <= q4r["bits_per_value"] + 1e-9:
            verdict = "lower" if r["kld_mean"] < q4r["kld_mean"] else "higher"
            L.append(f"- `{r['kv']}`: {bits(r)} bits, KLD {kld(r)} — {verdict} than q4r "
                     f"({r['kld_mean'] / q4r['kld_mean']:.2f}×)")
    L.append("")
def variant_pairs(option_key):
    pairs = []
    for r in rows:
        kv = r["kv"]
        if ":" not in kv: continue
        base, opts = kv.split(":", 1)
        parts = opts.split(",")
        if not any(p.startswith(option_key) for p in parts): continue
        rest = [p for p in parts if not p.startswith(option_key)]
        base_kv = base + (":" + ",".join(rest) if rest else "")
        if base_kv in byname: pairs.append((byname[base_kv], r))
    return pairs
for title, key in (("Prod (1-bit QJL residual) keys vs MSE keys", "kcodec="),
                   ("Protected boundary layers", "protect="), ("Exact recent window", "window=")):
    pairs = variant_pairs(key)
    if not pairs: continue
    L.append(f"{title}:\n")
    for a, b in pairs:
        L.append(f"- `{a['kv']}` → `{b['kv']}`: bits {bits(a)} → {bits(b)}, KLD {kld(a)} → {kld(b)} "
                 f"({b['kld_mean'] / max(a['kld_mean'], 1e-12):.2f}×), top-1 {100*a['top1_agree']:.1f}% → "
                 f"{100*b['top1_agree']:.1f}%, ΔPPL {a['delta_ppl']:+.3f} → {b['delta_ppl']:+.3f}")
    L.append("")
# Hand-written analysis below the marker survives a rerun.
marker = "<!-- analysis: kept across reruns -->"
md_path = os.path.join(out, "quality.md")
kept = ""
if os.path.exists(md_path):
    old = open(md_path).read()
    if marker in old: kept = old[old.index(marker):]
open(md_path, "w").write("\n".join(L) + "\n" + (kept or marker + "\n"))
print("\n".join(L))
PY
"$TQ" report-plot --json "$OUT/quality.json" --out "$OUT/quality_kld_vs_bits.png"
echo "report: wrote $OUT/quality.md and $OUT/quality.json in $(($(date +%s) - START)) s" >&2
