#!/usr/bin/env bash
# The project's main job (README): builds, then shows what TurboQuant does on this machine —
# the default model (SmolLM2-135M-Instruct) in a short chat, the codec report (measured vs
# theoretical distortion and bits per value), KV-cache sizes for larger models and, last, one
# table of the fp16, baseline and TurboQuant caches on a 2048-token prompt: memory, agreement
# with the fp16 cache's tokens and distribution, prefill and decode speed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
tq_install_deps
TQ_MODEL="$("$TQ_ROOT/scripts/fetch_model.sh")"
tq_build
tq="$TQ_BUILD/tools/tq"

echo "== Default model: $TQ_MODEL =="
"$tq" info "$TQ_MODEL"
echo
# A short chat: the whole conversation fits in the fp16 window that TurboQuant schemes keep for
# the most recent tokens (128), so nothing is compressed yet, and `tq generate` says so.
prompt="Explain in three sentences why the sky is blue."
for scheme in fp16 tq3.5; do
  echo "== tq generate --kv $scheme --chat (greedy, 64 tokens) =="
  "$tq" generate -m "$TQ_MODEL" -p "$prompt" -n 64 --kv "$scheme" --chat
  echo
done

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
echo

# The comparison: a context long enough that the cache is mostly compressed. WikiText-2 (or a
# novel of the NIAH haystack) from ../shared/data when present, else this repository's design
# document, which is always there.
shared_data="$(cd "$TQ_ROOT/.." && pwd)/shared/data"
long_text=""
for candidate in "$shared_data/wikitext-2-raw/wiki.test.raw" \
                 "$shared_data/haystack/pride-and-prejudice-pg1342.txt" \
                 "$TQ_ROOT/docs/DESIGN.md"; do
  if [[ -f "$candidate" ]]; then long_text="$candidate"; break; fi
  echo "note: $candidate not found, trying the next text" >&2
done
echo "== tq compare: fp16, q4r, tq4, tq3.5, tq3 on a 2048-token prompt from $(basename "$long_text") (greedy, 64 tokens) =="
"$tq" compare -m "$TQ_MODEL" -f "$long_text" --prompt-tokens 2048 -n 64 \
  --kv fp16 --kv q4r --kv tq4 --kv tq3.5 --kv tq3
