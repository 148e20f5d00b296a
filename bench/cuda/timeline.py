#!/usr/bin/env python3
"""Summarises a TQ_CUDA_TIMELINE file (per-CTA %globaltimer stamps of the tensor-core attention
kernel, see src/cuda/attention.cu): for the last recorded call, when CTAs start, how long their
prologue, tile loop and epilogue take, and how long the merge tail runs after the others end.
Usage: timeline.py FILE [--all]"""
import struct
import sys

STAMPS = ["entry", "loop start", "loop end", "partials", "arrival", "end"]


def records(path):
    data = open(path, "rb").read()
    at = 0
    while at < len(data):
        (n,) = struct.unpack_from("<Q", data, at)
        at += 8
        words = struct.unpack_from(f"<{8 * n}Q", data, at)
        at += 8 * 8 * n
        yield [words[8 * i:8 * i + 8] for i in range(n)]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))]


def summarise(ctas):
    t0 = min(c[0] for c in ctas)
    end = max(max(c[3], c[4], c[5]) for c in ctas)
    print(f"{len(ctas)} CTAs on {len({c[7] for c in ctas})} SMs; kernel span {(end - t0) / 1e3:.1f} us")
    def row(name, xs):
        print(f"  {name:<28} min {min(xs) / 1e3:7.2f}  p50 {pct(xs, .5) / 1e3:7.2f}  "
              f"p90 {pct(xs, .9) / 1e3:7.2f}  max {max(xs) / 1e3:7.2f} us")
    row("entry (from first entry)", [c[0] - t0 for c in ctas])
    row("prologue (entry→loop)", [c[1] - c[0] for c in ctas])
    row("tile loop", [c[2] - c[1] for c in ctas])
    row("partials written", [c[3] - c[2] for c in ctas])
    row("arrival counted", [c[4] - c[3] for c in ctas if c[4]])
    row("CTA done (from first entry)", [c[4] - t0 for c in ctas if c[4]])
    merges = [c for c in ctas if c[5]]
    if merges:
        row("merge (arrival→end)", [c[5] - c[4] for c in merges])
        row("merge end (from first entry)", [c[5] - t0 for c in merges])
    done = sorted(c[4] - t0 for c in ctas if c[4])
    if done:
        print(f"  SM-time idle after CTA end, share of span: "
              f"{sum((end - t0) - d for d in done) / (len(done) * (end - t0)) * 100:.1f}%")


if __name__ == "__main__":
    recs = list(records(sys.argv[1]))
    for r in (recs if "--all" in sys.argv else recs[-1:]):
        summarise(r)
