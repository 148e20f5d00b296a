#!/usr/bin/env bash
# The project's main job (README): builds, then shows what TurboQuant does on this machine —
# the codec report (measured vs theoretical distortion and bits per value) and KV-cache sizes
# for the default model and Llama-3.1-8B across schemes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
tq_install_deps
TQ_MODEL="$("$TQ_ROOT/scripts/fetch_model.sh")"
tq_build
tq="$TQ_BUILD/tools/tq"

echo "== TurboQuant codecs: measured vs theory (20k random unit vectors, d = 128) =="
for codec in mse prod; do
  for bits in 1 2 3 4; do "$tq" codec --dim 128 --bits "$bits" --codec "$codec"; done
done
for bits in 2.5 3.5; do "$tq" codec --dim 128 --bits "$bits"; done
echo
echo "== KV-cache size: default model (SmolLM2-135M) =="
"$tq" kv-size --model smollm2-135m --context 2048,8192
echo
echo "== KV-cache size: Llama-3.1-8B =="
"$tq" kv-size --model llama-3.1-8b --context 32768,131072
if "$tq" info --help >/dev/null 2>&1; then
  echo
  echo "== Default model: $TQ_MODEL =="
  "$tq" info "$TQ_MODEL"
fi
