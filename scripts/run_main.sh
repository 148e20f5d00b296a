#!/usr/bin/env bash
# The project's main job (README): builds, then shows what TurboQuant does on this machine —
# the default model (SmolLM2-135M-Instruct) generating with an fp16 cache and with TurboQuant
# and baseline caches side by side (text, memory, speed), the codec report (measured vs
# theoretical distortion and bits per value) and KV-cache sizes for larger models.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
tq_install_deps
TQ_MODEL="$("$TQ_ROOT/scripts/fetch_model.sh")"
tq_build
tq="$TQ_BUILD/tools/tq"

echo "== Default model: $TQ_MODEL =="
"$tq" info "$TQ_MODEL"
echo
prompt="Explain in three sentences why the sky is blue."
for scheme in fp16 q4r tq4 tq3.5 tq3; do
  echo "== tq generate --kv $scheme --chat (greedy, 64 tokens) =="
  "$tq" generate -m "$TQ_MODEL" -p "$prompt" -n 64 --kv "$scheme" --chat
  echo
done
# A longer context: the first ~1500 tokens of WikiText-2 as the prompt, so the cache matters.
wiki="$TQ_ROOT/../shared/data/wikitext-2-raw/wiki.test.raw"
if [[ -f "$wiki" ]]; then
  for scheme in fp16 tq3.5; do
    echo "== 1.5k-token prompt from WikiText-2, --kv $scheme =="
    "$tq" generate -m "$TQ_MODEL" -f "$wiki" --prompt-tokens 1500 -n 32 --kv "$scheme"
    echo
  done
fi

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
