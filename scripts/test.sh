#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs what is missing, fetches the default
# models (SmolLM2 and Gemma 3, checksum-verified), builds everything and runs all tests with CTest, then the Python
# package's tests (scripts/test_python.sh; TQ_PYTHON_TESTS=0 skips them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
tq_install_deps
TQ_MODEL="$("$TQ_ROOT/scripts/fetch_model.sh")"
export TQ_MODEL
# The second model family (Gemma 3 270M, sliding-window layers): tests/model/test_gemma3*.cpp.
TQ_GEMMA3="$("$TQ_ROOT/scripts/fetch_gemma3.sh")"
export TQ_GEMMA3
# Sleeping OpenMP waiters: ctest runs tests in parallel on few cores (see tools/tq/main.cpp).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
tq_build
cd "$TQ_BUILD"
ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@"
# The Python package: `pip install .` into a fresh venv and pytest (README, "Python").
if [[ "${TQ_PYTHON_TESTS:-1}" != 0 ]]; then
  "$TQ_ROOT/scripts/test_python.sh"
fi
