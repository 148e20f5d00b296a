#!/usr/bin/env python3
"""One-command evaluation report of the KV-cache schemes on the default model.

Runs, through the `tq` binary: `tq niah` (single and multi needle grids for the key schemes),
`tq perplexity` (fp16 reference logits, then the KLD of every scheme on the same WikiText-2
tokens), `tq bench` (decode speed at 1k and at the longest context) and optionally
`tq sensitivity`; then writes bench/results/quality.md and quality.json and draws the figures
next to them with scripts/plot.py: quality_kld_vs_bits.png, decode_speed.png, one NIAH heatmap
per run (with its JSON record beside it, niah_<scheme>_<mode>.json, to redraw it from) and
sensitivity_tq3.png.

Sized for a 2-core CPU (about 90 minutes). Every size is an environment variable, e.g.
CHUNKS=4 NIAH_LENGTHS=1024 NIAH_OTHER_LENGTHS=1024 for a 20-minute smoke run, or NIAH_SEEDS=3
for a finer grid on a bigger box:

    TQ MODEL DATA TEXT HAYSTACK CTX CHUNKS THREADS PROTECT NIAH_LENGTHS NIAH_OTHER_LENGTHS
    NIAH_DEPTHS NIAH_MULTI_DEPTHS NIAH_SEEDS BENCH_CONTEXTS SENSITIVITY OUT WORK

Usage: scripts/report.py            (TQ=path/to/tq picks the binary)
Resumable: with WORK=DIR of an interrupted run, results already in DIR are reused (delete a
file there to redo that step).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import plot  # noqa: E402  (scripts/plot.py, beside this file)

# TurboQuant presets keep a 128-token fp16 window by default; `window=0` rows show the codes
# alone, and q4r:window=128 gives the block baseline the same window for a like-for-like
# comparison. {p} is the protect option (PROTECT).
SCHEMES = [
    "q8", "q8r", "q4", "q4r", "q4r:window=128", "tq4", "tq3.5", "k4v3", "tq3", "tq2.5",
    "tq3.5:window=64", "tq4:kcodec=prod", "tq3.5:kcodec=prod",
    "tq4:{p}", "tq3.5:{p}", "k4v3:{p}", "tq3:{p}", "tq2.5:{p}", "tq4:kcodec=prod,{p}",
    "tq3.5:kcodec=prod,{p}",
    "tq4:window=0", "tq3.5:window=0", "k4v3:window=0", "tq3:window=0", "tq2.5:window=0",
]
NIAH_KEY = ["fp16", "tq3.5"]  # single + multi needle, NIAH_LENGTHS
NIAH_OTHER = ["q4r", "tq4", "tq3.5:window=0"]  # single needle, NIAH_OTHER_LENGTHS
SENSITIVITY_SCHEME = "tq3"


@dataclass
class Settings:
    tq: Path
    model: Path
    text: Path
    haystack: Path
    ctx: int
    chunks: int
    threads: int
    protect: str
    niah_lengths: str
    niah_other_lengths: str
    niah_depths: str
    niah_multi_depths: str
    niah_seeds: int
    bench_contexts: str
    sensitivity: bool
    out: Path
    work: Path

    @staticmethod
    def from_environment() -> Settings:
        env = os.environ.get
        data = Path(env("DATA", "../shared/data"))
        tq = env("TQ") or next((p for p in ("build/release/tools/tq", "build/evalsuite/tools/tq")
                                if os.access(p, os.X_OK)), "build/release/tools/tq")
        text = Path(env("TEXT", str(data / "wikitext-2-raw/wiki.test.raw")))
        if not text.is_file():
            text = Path("/work/shared/data/wikitext-2-raw/wiki.test.raw")
        haystack = Path(env("HAYSTACK", str(data / "haystack/pride-and-prejudice-pg1342.txt")))
        if not haystack.is_file():
            haystack = Path("/work/shared/data/haystack/pride-and-prejudice-pg1342.txt")
        work = env("WORK") or tempfile.mkdtemp(prefix="tq_report.", dir="/tmp")
        return Settings(
            tq=Path(tq),
            model=Path(env("MODEL", "models/SmolLM2-135M-Instruct.Q4_1.gguf")),
            text=text, haystack=haystack,
            ctx=int(env("CTX", "1024")), chunks=int(env("CHUNKS", "12")),
            threads=int(env("THREADS", "2")),
            # tq sensitivity: layer 1 dominates; layer 0 and the last layers do not stand out.
            protect=env("PROTECT", "2/0"),
            niah_lengths=env("NIAH_LENGTHS", "1024,2048,4096,8192"),
            niah_other_lengths=env("NIAH_OTHER_LENGTHS", "1024,2048,4096"),
            niah_depths=env("NIAH_DEPTHS", "0,25,50,75,100"),
            niah_multi_depths=env("NIAH_MULTI_DEPTHS", "0,50,100"),
            niah_seeds=int(env("NIAH_SEEDS", "1")),
            bench_contexts=env("BENCH_CONTEXTS", "1024,8192"),
            sensitivity=env("SENSITIVITY", "0") == "1",
            out=Path(env("OUT", "bench/results")), work=Path(work))

    def schemes(self) -> list[str]:
        return [s.format(p=f"protect={self.protect}") for s in SCHEMES]


def tag(scheme: str) -> str:
    """File-name form of a scheme for the work files ('tq4:protect=2/0' -> 'tq4_protect~2-0')."""
    return scheme.translate(str.maketrans(":,/=", "_+-~"))


def done(result: Path) -> bool:
    """Whether a step's result is already in the work directory."""
    return result.is_file() and result.stat().st_size > 0


class Steps:
    """Runs the `tq` steps, each skipped when its result is already in the work directory."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.start = time.time()

    def log(self, what: str) -> None:
        print(f"== {what}  ({int(time.time() - self.start)} s)", file=sys.stderr, flush=True)

    def tq(self, *args: str, stdout: Path | None = None) -> None:
        command = [str(self.s.tq), *args]
        if stdout is None:
            result = subprocess.run(command, check=False)
        else:
            with open(stdout, "w", encoding="utf-8") as sink:
                result = subprocess.run(command, stdout=sink, check=False)
        if result.returncode != 0:
            raise SystemExit(f"report: `{' '.join(command)}` failed with exit status "
                             f"{result.returncode}")

    def once(self, result: Path, run: Callable[[Path], None]) -> None:
        """run(tmp) writes tmp; renamed to result on success, so a killed step is redone."""
        if done(result):
            return
        partial = result.with_name(result.name + ".tmp")
        run(partial)
        partial.replace(result)

    def niah(self, scheme: str, mode: str, lengths: str, depths: str, index: int) -> None:
        s = self.s
        extra = ["--needles", "2"] if mode == "multi" else []
        self.once(s.work / f"niah_{mode}_{index}.json", lambda path: self.tq(
            "niah", "-m", str(s.model), "--haystack", str(s.haystack), "--seeds",
            str(s.niah_seeds), "-t", str(s.threads), "-q", "--kv", scheme, "--lengths", lengths,
            "--mode", mode, *extra, "--depths", depths, "--json-out", str(path)))

    def run_all(self) -> int:
        s = self.s
        index = 0
        for scheme in NIAH_KEY:
            self.log(f"niah {scheme}")
            self.niah(scheme, "single", s.niah_lengths, s.niah_depths, index)
            self.niah(scheme, "multi", s.niah_lengths, s.niah_multi_depths, index)
            index += 1

        ppl_args = ["-m", str(s.model), "-f", str(s.text), "-c", str(s.ctx), "--chunks",
                    str(s.chunks), "-t", str(s.threads), "--json"]
        reference = s.work / "ref.logits"
        self.log("perplexity fp16 (reference logits)")
        fp16 = s.work / "ppl_fp16.json"
        if not (done(fp16) and reference.is_file()):
            fp16.unlink(missing_ok=True)
            self.once(fp16, lambda path: self.tq("perplexity", *ppl_args, "--kv", "fp16",
                                                 "--save-logits", str(reference),
                                                 stdout=path))
        for scheme in s.schemes():
            self.log(f"perplexity {scheme}")
            self.once(s.work / f"ppl_{tag(scheme)}.json", lambda path: self.tq(
                "perplexity", *ppl_args, "--kv", scheme, "--kld", str(reference), "-q",
                stdout=path))
        reference.unlink(missing_ok=True)

        self.log("bench")
        kv_args = [a for scheme in ["fp16", *s.schemes()] for a in ("--kv", scheme)]
        if not done(s.work / "decode_speed.json"):  # tq writes PREFIX.json once it is complete
            self.tq("bench", "-m", str(s.model), *kv_args, "--contexts", s.bench_contexts,
                    "--steps", "8", "-t", str(s.threads), "--out", str(s.work / "decode_speed"),
                    "-q")
        shutil.copyfile(s.work / "decode_speed.json", s.out / "decode_speed.json")

        for scheme in NIAH_OTHER:
            self.log(f"niah {scheme}")
            self.niah(scheme, "single", s.niah_other_lengths, s.niah_depths, index)
            index += 1

        if s.sensitivity:
            self.log("sensitivity")
            prefix = s.work / f"sensitivity_{SENSITIVITY_SCHEME}"
            if not done(prefix.with_suffix(".json")):
                self.tq("sensitivity", "-m", str(s.model), "-f", str(s.text), "--kv",
                        SENSITIVITY_SCHEME, "-c", str(s.ctx), "--chunks", "1", "-t",
                        str(s.threads), "--out", str(prefix), "-q", stdout=Path(os.devnull))
            for suffix in (".json", ".md"):
                shutil.copyfile(prefix.with_suffix(suffix),
                                s.out / f"sensitivity_{SENSITIVITY_SCHEME}{suffix}")
        return int(time.time() - self.start)


def publish_niah(settings: Settings) -> list[dict[str, Any]]:
    """Copies each NIAH run's record to OUT/niah_<scheme>_<mode>.json and draws its heatmap;
    returns the records of the work files, in name order."""
    records = []
    for path in sorted(Path(p) for p in glob.glob(str(settings.work / "niah_*.json"))):
        record = json.loads(path.read_text(encoding="utf-8"))
        for run in record["runs"]:
            png = plot.niah_png_name(run["kv"], run["mode"])
            single = dict(record, runs=[run])
            target = settings.out / (png.removesuffix(".png") + ".json")
            target.write_text(json.dumps(single, indent=2) + "\n", encoding="utf-8")
            plot.draw_file(target, settings.out)
        records.append(record)
    return records


def assemble(settings: Settings, elapsed: int, niah_records: list[dict[str, Any]]) -> None:
    """Writes quality.json and quality.md (keeping the analysis below the marker)."""
    s = settings
    work, out = s.work, s.out
    ppl: dict[str, Any] = {}
    for scheme in ["fp16", *s.schemes()]:
        path = work / ("ppl_fp16.json" if scheme == "fp16" else f"ppl_{tag(scheme)}.json")
        record = json.loads(path.read_text(encoding="utf-8"))
        ppl[record["kv"]] = record
    ref = ppl["fp16"]
    bench = json.loads((out / "decode_speed.json").read_text(encoding="utf-8"))
    speed: dict[str, dict[int, Any]] = {}
    for r in bench["rows"]:
        speed.setdefault(r["kv"], {})[r["context"]] = r
    niah: dict[str, dict[str, tuple[int, int, str]]] = {}
    niah_by_length: dict[tuple[str, str], dict[int, list[int]]] = {}
    for record in niah_records:
        for r in record["runs"]:
            n = len(r["cells"])
            ok = sum(1 for c in r["cells"] if c["correct"])
            png = os.path.join(str(out), plot.niah_png_name(r["kv"], r["mode"]))
            niah.setdefault(r["kv"], {})[r["mode"]] = (ok, n, png)
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
            "delta_ppl": p.get("delta_ppl", 0.0),
            "delta_ppl_stderr": p.get("delta_ppl_stderr", 0.0),
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
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    ncpu = os.cpu_count()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    meta = {
        "model": str(s.model), "text": str(s.text), "context": s.ctx, "chunks": s.chunks,
        "tokens_scored": ref["tokens_scored"], "tokens_evaluated": ref["tokens_evaluated"],
        "threads": s.threads, "cpu": cpu, "cpus": ncpu, "commit": commit,
        "elapsed_seconds": elapsed, "haystack": str(s.haystack),
        "niah": {"lengths": s.niah_lengths, "single_depths": s.niah_depths,
                 "multi_depths": s.niah_multi_depths, "multi_needles": 2,
                 "seeds": s.niah_seeds, "other_lengths": s.niah_other_lengths,
                 "by_length": [{"kv": kv, "mode": mode, "context": c, "correct": v[0],
                                "cells": v[1]}
                               for (kv, mode), per in niah_by_length.items()
                               for c, v in sorted(per.items())]},
        "decode_contexts": contexts,
    }
    (out / "quality.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2),
                                      encoding="utf-8")
    lines = quality_markdown(s, rows, ref, niah_by_length, commit, cpu, ncpu, elapsed,
                             c_short, c_long)
    # Hand-written analysis below the marker survives a rerun.
    marker = "<!-- analysis: kept across reruns -->"
    md_path = out / "quality.md"
    kept = ""
    if md_path.exists():
        old = md_path.read_text(encoding="utf-8")
        if marker in old:
            kept = old[old.index(marker):]
    md_path.write_text("\n".join(lines) + "\n" + (kept or marker + "\n"), encoding="utf-8")
    print("\n".join(lines))


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def quality_markdown(s: Settings, rows: list[dict[str, Any]], ref: dict[str, Any],
                     niah_by_length: dict[tuple[str, str], dict[int, list[int]]],
                     commit: str, cpu: str, ncpu: int | None, elapsed: int,
                     c_short: int, c_long: int) -> list[str]:
    """The report's markdown: setup, the table, NIAH by length and computed comparisons."""
    def niah_cell(r: dict[str, Any], mode: str) -> str:
        if f"niah_{mode}" not in r:
            return "—"
        ok, n = r[f"niah_{mode}"]
        return f"{ok}/{n}"

    chunks, ctx, threads = s.chunks, s.ctx, s.threads
    L = []
    L.append("# KV-cache quality and speed report\n")
    L.append(f"Generated by `scripts/report.py` (commit {commit}) in {elapsed // 60} min on this "
             f"machine: {cpu}, {ncpu} cores shared with other jobs, {threads} threads.\n")
    L.append(f"- Model: `{os.path.basename(s.model)}` (30 layers, 9 query / 3 KV heads, d = 64).")
    L.append(f"- Perplexity/KLD: WikiText-2 raw test (`wiki.test.raw`), llama-perplexity "
             f"convention: the first {chunks} non-overlapping chunks of {ctx} tokens (BOS at "
             f"each chunk start), second half of each scored: **{ref['tokens_scored']} scored "
             f"tokens** ({ref['tokens_evaluated']} evaluated). KLD = KL(P_fp16 ‖ P_scheme) per "
             f"token, nats, on the same tokens; top-1 = same argmax as fp16.")
    L.append(f"- NIAH: haystack `{os.path.basename(s.haystack)}`, context {s.niah_lengths} "
             f"tokens for fp16 and tq3.5 ({s.niah_other_lengths} for the other schemes, single "
             f"needle only) (whole chat-templated prompt + answer), single needle at depths "
             f"{s.niah_depths}%, multi (2 needles, both required) at depths "
             f"{s.niah_multi_depths}%, {s.niah_seeds} seed(s) per cell; greedy answer, exact "
             f"7-digit match. Cells correct / cells.")
    L.append(f"- Bits/value: stored bytes of K and V (codes + fp16 norms/scales, protected "
             f"layers and the fp16 window included) at {c_long} tokens, ×8 / values. KV ratio = "
             f"bytes / fp16 bytes.")
    L.append(f"- Decode speed (`tq bench`): fixed per-step cost measured on the real model at "
             f"64 tokens plus the attention over a cache of {c_short} / {c_long} tokens measured "
             f"per layer in the scheme's format (CPU, {threads} threads). On a shared machine "
             f"the tok/s columns swing with the load; the attention ms column is the comparable "
             f"one.\n")
    L.append("| scheme | bits/value | KV vs fp16 | PPL | ΔPPL | mean KLD | KLD p99 | top-1 | "
             f"NIAH single | NIAH multi | tok/s @{c_short} | tok/s @{c_long} | "
             f"attn ms @{c_long} | attn share @{c_long} |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        share = r[f"attention_share_{c_long}"]
        L.append(
            f"| `{r['kv']}` | {_fmt(r['bits_per_value'], '.3f')} | "
            f"{_fmt(r['kv_ratio'], '.3f')} | {r['ppl']:.3f} ± {r['ppl_stderr']:.2f} | "
            f"{r['delta_ppl']:+.3f} ± {r['delta_ppl_stderr']:.3f} | "
            f"{r['kld_mean']:.5f} ± {r['kld_mean_stderr']:.5f} | {r['kld_p99']:.4f} | "
            f"{100 * r['top1_agree']:.1f}% | {niah_cell(r, 'single')} | "
            f"{niah_cell(r, 'multi')} | {_fmt(r[f'tps_{c_short}'], '.2f')} | "
            f"{_fmt(r[f'tps_{c_long}'], '.2f')} | "
            f"{_fmt(r.get(f'attention_ms_{c_long}'), '.1f')} | "
            f"{_fmt(share and 100 * share, '.0f')}% |")
    L.append("")
    pngs = sorted(os.path.basename(p) for p in glob.glob(str(s.out / "niah_*.png")))
    L.append("Plots: `quality_kld_vs_bits.png` (mean KLD vs bits/value), `decode_speed.png` "
             "(tokens/s vs context), NIAH heatmaps " + ", ".join(f"`{p}`" for p in pngs)
             + ".\n")
    if niah_by_length:
        lengths = sorted({c for per in niah_by_length.values() for c in per})
        L.append("NIAH by context length (cells correct / cells):\n")
        L.append("| scheme | mode | " + " | ".join(str(c) for c in lengths) + " |")
        L.append("|---|---|" + "---:|" * len(lengths))
        for (kv, mode), per in niah_by_length.items():
            L.append(f"| `{kv}` | {mode} | " + " | ".join(
                f"{per[c][0]}/{per[c][1]}" if c in per else "—" for c in lengths) + " |")
        L.append("")
    L.extend(comparisons(rows))
    return L


def comparisons(rows: list[dict[str, Any]]) -> list[str]:
    """The comparisons computed from the table: TurboQuant vs q4r at equal size, and each
    option (prod keys, protected layers, the fp16 window) against the same scheme without it."""
    byname = {r["kv"]: r for r in rows}

    def kld(r: dict[str, Any]) -> str:
        return f"{r['kld_mean']:.4f}"

    def bits(r: dict[str, Any]) -> str:
        return "?" if r["bits_per_value"] is None else f"{r['bits_per_value']:.2f}"

    L = ["## Comparisons (computed from the table)\n"]
    q4r = byname.get("q4r")
    if q4r and q4r["bits_per_value"]:
        L.append(f"TurboQuant at ≤ the bits of `q4r` ({bits(q4r)} bits/value, mean KLD "
                 f"{kld(q4r)}):\n")
        for r in rows:
            if r["kv"].startswith(("tq", "k")) and r["bits_per_value"] \
                    and r["bits_per_value"] <= q4r["bits_per_value"] + 1e-9:
                verdict = "lower" if r["kld_mean"] < q4r["kld_mean"] else "higher"
                L.append(f"- `{r['kv']}`: {bits(r)} bits, KLD {kld(r)} — {verdict} than q4r "
                         f"({r['kld_mean'] / q4r['kld_mean']:.2f}×)")
        L.append("")

    def variant_pairs(option_key: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        pairs = []
        for r in rows:
            kv = r["kv"]
            if ":" not in kv:
                continue
            base, opts = kv.split(":", 1)
            parts = opts.split(",")
            if not any(p.startswith(option_key) for p in parts):
                continue
            rest = [p for p in parts if not p.startswith(option_key)]
            base_kv = base + (":" + ",".join(rest) if rest else "")
            if base_kv in byname:
                pairs.append((byname[base_kv], r))
        return pairs

    for title, key in (("Prod (1-bit QJL residual) keys vs MSE keys", "kcodec="),
                       ("Protected boundary layers", "protect="),
                       ("Exact recent window", "window=")):
        pairs = variant_pairs(key)
        if not pairs:
            continue
        L.append(f"{title}:\n")
        for a, b in pairs:
            L.append(f"- `{a['kv']}` → `{b['kv']}`: bits {bits(a)} → {bits(b)}, KLD {kld(a)} → "
                     f"{kld(b)} ({b['kld_mean'] / max(a['kld_mean'], 1e-12):.2f}×), top-1 "
                     f"{100 * a['top1_agree']:.1f}% → {100 * b['top1_agree']:.1f}%, ΔPPL "
                     f"{a['delta_ppl']:+.3f} → {b['delta_ppl']:+.3f}")
        L.append("")
    return L


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="report.py", description=__doc__.split("\n\n")[0],
        epilog="Settings are environment variables; see the top of scripts/report.py.",
        formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    os.chdir(ROOT)
    # OpenMP threads that spin while waiting starve each other on a loaded machine (decode ran
    # 15x slower with the default policy on the shared 2-core box).
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    try:
        plot.require_matplotlib()  # before 90 minutes of runs, not after
    except plot.MissingDependency as error:
        print(f"report: {error}", file=sys.stderr)
        return plot.EXIT_MISSING_DEPENDENCY
    s = Settings.from_environment()
    if not os.access(s.tq, os.X_OK):
        print(f"report: no tq binary at {s.tq} (set TQ=...)", file=sys.stderr)
        return 1
    if not s.model.is_file():
        s.model = Path(subprocess.run(["scripts/fetch_model.sh"], capture_output=True,
                                      text=True, check=True).stdout.strip())
    s.out.mkdir(parents=True, exist_ok=True)
    s.work.mkdir(parents=True, exist_ok=True)
    print(f"report: work dir {s.work}", file=sys.stderr)

    steps = Steps(s)
    elapsed = steps.run_all()
    steps.log("assembling")
    with_heatmaps = publish_niah(s)
    plot.draw_file(s.out / "decode_speed.json")
    if s.sensitivity:
        plot.draw_file(s.out / f"sensitivity_{SENSITIVITY_SCHEME}.json")
    assemble(s, elapsed, with_heatmaps)
    plot.draw_file(s.out / "quality.json")
    print(f"report: wrote {s.out}/quality.md and {s.out}/quality.json in "
          f"{int(time.time() - steps.start)} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
