#!/usr/bin/env bash
# Runs on the GPU machine: CUDA tests, our benchmark, PyTorch SDPA, and the joined report.
# Usage: scripts/gpu_bench.sh OUTDIR [--quick]   (expects build/cuda built with TQ_CUDA=ON;
# builds it with cmake if the binaries are missing)
set -euo pipefail
out=${1:-bench/results}  # extra args (--quick, --read-flush) go to both benchmarks
shift || true
mkdir -p "$out"
if [[ ! -x build/cuda/bench/cuda/tq_bench_cuda ]]; then
  cmake -S . -B build/cuda -DTQ_BUILD_BENCH=OFF -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
  cmake --build build/cuda -j"$(nproc)" --target tq_bench_cuda tq_tests_cuda
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw --format=csv | tee "$out/gpu_info.txt"
build/cuda/bench/cuda/tq_bench_cuda "$out/ours.json" "$@"
python3 bench/cuda/sdpa_bench.py "$out/sdpa.json" "$@"
python3 bench/cuda/report.py "$out/ours.json" "$out/sdpa.json" "$out/cuda_attention"
