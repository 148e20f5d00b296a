#!/usr/bin/env bash
# The Python package's check (README, "Python"; scripts/test.sh runs it after CTest): builds and
# installs the package with `pip install .` into a fresh venv (scikit-build-core and nanobind
# come from PyPI through pip's build isolation, NumPy as the runtime dependency), then runs
# pytest on tests/python against the tq CLI of the CTest build ($TQ_BUILD/tools/tq; the tests that
# compare with it skip when it is missing). Usable alone: scripts/test_python.sh [pytest args]
# The torch layer's tests (tests/python/test_torch_ops.py, test_hf.py) skip unless torch and
# transformers are installed; CI does not install them (PyPI's Linux torch wheel brings the CUDA
# libraries, over 3 GB). TQ_PYTHON_TORCH=1 installs the package's `hf` extra (torch, transformers)
# into the venv so they run (30 tests, 14 s warm on the 2-core machine, after the download).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
venv="${TQ_PYTHON_VENV:-$TQ_BUILD/python-venv}"
rm -rf "$venv"
python3 -m venv "$venv"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
if command -v ccache >/dev/null && [[ -z "${CMAKE_ARGS:-}" ]]; then
  export CMAKE_ARGS="-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
fi
pkg="$TQ_ROOT"
if [[ "${TQ_PYTHON_TORCH:-0}" == 1 ]]; then pkg="$TQ_ROOT[hf]"; fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$pkg" pytest >&2
# Run from the build folder, not the checkout, so that the installed package is what is imported.
cd "$TQ_BUILD"
TQ_BINARY="$TQ_BUILD/tools/tq" OMP_WAIT_POLICY=passive \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider "$TQ_ROOT/tests/python" "$@"
