#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs what is missing, fetches the default
# model (checksum-verified), builds everything and runs all tests with CTest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
tq_install_deps
TQ_MODEL="$("$TQ_ROOT/scripts/fetch_model.sh")"
export TQ_MODEL
tq_build
cd "$TQ_BUILD"
ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@"
