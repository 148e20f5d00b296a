#!/usr/bin/env bash
# One GPU call of issue #12's measurements, in order of importance, each step under its own time
# limit so that a slow step cannot eat the ones after it:
#   1. the GPU suites (tq_tests_cuda, the GpuRunner / GpuWeights tests of tq_tests_model);
#   2. tq bench --device cuda on a random Llama-3.1-8B-shaped model (Q4_0 weights): decode
#      tokens/s for fp16, tq4, tq3.5, k4v3 at 4k/32k/128k, batch 1/8 (32 at 4k/32k), prefill 8k;
#   3. the same bench on the full SmolLM2-135M shape;
#   4. Hugging Face transformers on the same 8B shape (bench/cuda/hf_baseline.py) at 4k and 32k,
#      batch 1, and our runner with F16 weights of that shape at the same points;
#   5. NIAH on the GPU when the real SmolLM2 file is at $SMOL (fetched in two parts).
# Usage: bench/cuda/gpu_e2e.sh BIN_DIR OUT_DIR [SMOL_GGUF]
#   BIN_DIR holds tq, tq_tests_cuda and tq_tests_model built for this GPU (they need only the
#   CUDA runtime). Everything lands in OUT_DIR: logs, bench JSON, and a summary at the end.
set -uo pipefail
bin=$1 out=$2 smol=${3:-}
mkdir -p "$out"
work=${TMPDIR:-/tmp}/tq_gpu_e2e
mkdir -p "$work"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
step() {  # step NAME SECONDS COMMAND...: runs under a limit, logs, reports the status
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  echo "[$name] status $? after $((SECONDS - t0)) s" | tee -a "$out/summary.txt"
}

step tests_cuda 120 "$bin/tq_tests_cuda"
TQ_MODEL=${smol:-none} TQ_FIXTURES=$here/../../tests/fixtures step tests_model_gpu 240 "$bin/tq_tests_model" --gtest_filter='Gpu*'
grep -hE "gpu vs cpu|batched vs single|FAILED|PASSED" "$out"/tests_*.log | tee -a "$out/summary.txt"

step make_llama8b_q4 120 "$bin/tq" make-model --shape llama-3.1-8b --weights q4_0 --seed 1 \
  -o "$work/llama8b_q4_0.gguf" -q
step bench_llama8b 600 "$bin/tq" bench -m "$work/llama8b_q4_0.gguf" --device cuda \
  --kv fp16 --kv tq4 --kv tq3.5 --kv k4v3 --contexts 4096,32768,131072 --batch 1,8 \
  --prefill 8192 --steps 16 --out "$out/gpu_e2e_llama8b_q4_0"
step bench_llama8b_b32 300 "$bin/tq" bench -m "$work/llama8b_q4_0.gguf" --device cuda \
  --kv fp16 --kv tq4 --contexts 4096,32768 --batch 32 --steps 8 \
  --out "$out/gpu_e2e_llama8b_q4_0_b32"
step make_smol 60 "$bin/tq" make-model --shape smollm2-135m --weights q4_0 --seed 1 \
  -o "$work/smol_q4_0.gguf" -q
step bench_smol 300 "$bin/tq" bench -m "$work/smol_q4_0.gguf" --device cuda \
  --kv fp16 --kv tq4 --kv tq3.5 --kv k4v3 --contexts 4096,32768 --batch 1,8,32 --steps 16 \
  --out "$out/gpu_e2e_smollm2_shape"

step hf_baseline 900 python3 "$here/hf_baseline.py" --contexts 4096,32768 --steps 64 \
  --json "$out/hf_baseline_llama8b.json"
step make_llama8b_f16 300 "$bin/tq" make-model --shape llama-3.1-8b --weights f16 --seed 1 \
  -o "$work/llama8b_f16.gguf" -q
step bench_llama8b_f16 300 "$bin/tq" bench -m "$work/llama8b_f16.gguf" --device cuda \
  --kv fp16 --contexts 4096,32768 --batch 1 --steps 32 --out "$out/gpu_e2e_llama8b_f16"

if [[ -n "$smol" && -f "$smol" ]]; then
  for mode in single multi; do
    step "niah_$mode" 600 "$bin/tq" niah -m "$smol" --device cuda --kv fp16 --kv tq4 \
      --kv tq3.5 --kv k4v3 --mode "$mode" --lengths 1024,2048,4096,8192 \
      --depths 0,10,20,30,40,50,60,70,80,90,100 --seeds 3 --json-out "$out/niah_gpu_$mode.json"
  done
fi
cat "$out/summary.txt"
