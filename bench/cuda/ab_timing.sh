#!/usr/bin/env bash
# Same-run A/B timing of two builds of tq_bench_cuda on one GPU: the binaries run alternately
# (BEFORE, AFTER, BEFORE, AFTER, ...) so that clock and thermal drift hit both sides alike, then
# ab_compare.py reports the per-row medians and the after/before ratio.
# Usage: bench/cuda/ab_timing.sh BEFORE_BIN AFTER_BIN OUTDIR ROUNDS [bench args...]
#   e.g. ... 3 --kernels=tq4_tc,tq3.5_tc --contexts=32768,131072 --read-flush
set -euo pipefail
before=$1 after=$2 out=$3 rounds=$4
shift 4
mkdir -p "$out"
files=()
for ((r = 1; r <= rounds; ++r)); do
  "$before" "$out/before_$r.json" "$@" >"$out/before_$r.log"
  "$after" "$out/after_$r.json" "$@" >"$out/after_$r.log"
  files+=("$out/before_$r.json" "$out/after_$r.json")
done
python3 "$(dirname "${BASH_SOURCE[0]}")/ab_compare.py" "$out/ab" "${files[@]}"
