#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs what is missing, fetches the default
# model (checksum-verified), builds everything and runs all tests with CTest, then the Python
# package's tests (scripts/test_python.sh; TQ_PYTHON_TESTS=0 skips them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
tq_install_deps
TQ_MODEL="$("$TQ_ROOT/scripts/fetch_model.sh")"
export TQ_MODEL
# Sleeping OpenMP waiters: ctest runs tests in parallel on few cores (see tools/tq/main.cpp).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
tq_build
cd "$TQ_BUILD"
ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@"
# The Python package: `pip install .` into a fresh venv and pytest (README, "Python").
if [[ "${TQ_PYTHON_TESTS:-1}" != 0 ]]; then
  "$TQ_ROOT/scripts/test_python.sh"
fi
