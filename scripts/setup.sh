#!/usr/bin/env bash
# Installs what the build needs (Debian packages, when run as root and something is missing,
# and matplotlib + pytest for the python3 on PATH), then configures and builds the project into
# build/release (CUDA when nvcc is found).
# Sourced by scripts/test.sh and scripts/run_main.sh; usable alone: scripts/setup.sh
set -euo pipefail
TQ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TQ_BUILD="${TQ_BUILD:-$TQ_ROOT/build/release}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

tq_packages=(cmake g++ make pkg-config libgtest-dev libgmock-dev libbenchmark-dev libopenblas-dev
             libcli11-dev nlohmann-json3-dev python3 python3-pip
             python3-venv)  # python3-venv: scripts/test_python.sh's fresh venv

tq_install_deps() {
  local missing=()
  for p in "${tq_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
      echo "error: missing Debian packages: ${missing[*]} (run as root or install them)" >&2
      return 1
    fi
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
  tq_install_python_deps
  # nvcc is optional; the CUDA toolkit is often outside PATH.
  if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
    export PATH="/usr/local/cuda/bin:$PATH"
  fi
}

# scripts/plot.py draws every figure (`tq niah|bench|sensitivity --plot`, scripts/report.py) with
# matplotlib; its tests (tests/scripts, run by CTest) need pytest. They go to the python3 on PATH,
# the interpreter tq and CTest run, which may be a pyenv or venv Python rather than Debian's.
tq_install_python_deps() {
  python3 -c "import matplotlib, pytest" 2>/dev/null && return 0
  echo "installing for $(command -v python3): matplotlib pytest" >&2
  if ! PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
      matplotlib pytest >&2; then
    # Debian's own python3 refuses pip into the system (externally managed): its packages.
    if [[ $(id -u) -eq 0 ]] && [[ "$(command -v python3)" == /usr/bin/python3 ]]; then
      apt-get update -qq >&2  # the lists may be gone when every build package was already there
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3-matplotlib python3-pytest >&2
    fi
  fi
  if ! python3 -c "import matplotlib, pytest" 2>/dev/null; then
    echo "error: python3 ($(command -v python3)) lacks matplotlib or pytest; install them with" \
      "'python3 -m pip install matplotlib pytest' (Debian's own python3:" \
      "'apt-get install python3-matplotlib python3-pytest')" >&2
    return 1
  fi
}

tq_build() {
  local jobs
  jobs="$(nproc)"
  cmake -S "$TQ_ROOT" -B "$TQ_BUILD" -DCMAKE_BUILD_TYPE=Release "$@" >&2
  cmake --build "$TQ_BUILD" -j "$jobs" >&2
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  tq_install_deps
  tq_build "$@"
fi
