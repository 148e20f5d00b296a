"""Joins bench_attention.cu and sdpa_bench.py results into one JSON and a markdown table with
ratios to SDPA and to our fp16 kernel (all measured in the same run on the same card).
Usage: python3 report.py ours.json sdpa.json OUT_PREFIX"""
import json
import sys


def main():
    ours = json.load(open(sys.argv[1]))
    sdpa = json.load(open(sys.argv[2]))
    prefix = sys.argv[3]
    key = lambda r: (r["shape"], r["context"], r["batch"])
    sd = {key(r): r for r in sdpa["rows"]}
    f16 = {key(r): r for r in ours["rows"] if r["kernel"] == "fp16_ours"}
    copy = ours["copy_gbs"]
    for r in sdpa["rows"]:
        r["pct_copy"] = 100.0 * r["gbs"] / copy
    rows = ours["rows"] + sdpa["rows"]
    for r in rows:
        if r["kernel"].startswith("quantize"):
            continue
        s = sd.get(key(r))
        h = f16.get(key(r))
        r["speedup_vs_sdpa"] = s["us"] / r["us"] if s else None
        r["speedup_vs_fp16_ours"] = h["us"] / r["us"] if h else None
    json.dump(dict(device=ours["device"], sms=ours["sms"], copy_gbs=copy, torch=sdpa["torch"],
                   flush=sdpa.get("flush", "write"), rows=rows), open(prefix + ".json", "w"), indent=1)
    flush_note = ("L2 emptied by reading 256 MiB before each timed call: no foreign dirty lines "
                  "are written back during it" if sdpa.get("flush") == "read" else
                  "256 MiB rewritten before each timed call: up to ~50 MB of dirty lines are "
                  "written back during it")
    lines = [f"# CUDA attention benchmark — {ours['device']} ({ours['sms']} SMs)", "",
             f"Copy bandwidth (1 GiB D2D, read+write) measured in the same run: {copy:.0f} GB/s. "
             f"PyTorch {sdpa['torch']}. Median µs, cold L2 ({flush_note}). GB/s over the bytes each kernel must read "
             "(compressed codes + norms for tq; fp16 K+V for fp16 kernels).", "",
             "| kernel | shape | context | batch | µs | GB/s | % copy | × vs SDPA | × vs our fp16 |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    order = {"tq4_tc": 0, "tq3.5_tc": 1, "k4v3_tc": 2, "tq3_tc": 3, "tq2.5_tc": 4,
             "tq4_tc_w128": 5, "tq3.5_tc_w128": 6, "tq3_generic": 7, "fp16_ours": 8,
             "sdpa_fp16": 9}
    for r in sorted((r for r in rows if not r["kernel"].startswith("quantize")),
                    key=lambda r: (r["shape"], r["batch"], r["context"], order.get(r["kernel"], 9))):
        sv = r.get("speedup_vs_sdpa")
        fv = r.get("speedup_vs_fp16_ours")
        lines.append(f"| {r['kernel']} | {r['shape']} | {r['context']} | {r['batch']} | {r['us']:.1f} | "
                     f"{r['gbs']:.0f} | {r['pct_copy']:.1f} | {sv:.2f} | {fv:.2f} |" if sv and fv else
                     f"| {r['kernel']} | {r['shape']} | {r['context']} | {r['batch']} | {r['us']:.1f} | "
                     f"{r['gbs']:.0f} | {r['pct_copy']:.1f} | {'' if not sv else f'{sv:.2f}'} | {'' if not fv else f'{fv:.2f}'} |")
    lines += ["", "| quantize-append (K, 4-bit, fp16 in) | shape | tokens | batch | µs |",
              "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        if r["kernel"].startswith("quantize"):
            lines.append(f"| {r['kernel']} | {r['shape']} | {r['context']} | {r['batch']} | {r['us']:.1f} |")
    open(prefix + ".md", "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
