#!/usr/bin/env bash
# Sanitizer and fuzz job of CI (issue 17, item 4), called by .ci/run after scripts/test.sh:
# 1. an AddressSanitizer + UndefinedBehaviorSanitizer build (g++, -O1) of the CPU test suites of
#    the parsing and loading layers (tq_tests_base: integer parsing; tq_tests_model: GGUF reader,
#    tokenizer, model files) and their run under CTest, any sanitizer report failing the test;
# 2. the libFuzzer target of the GGUF parser and tokenizer (tests/fuzz, clang) for
#    TQ_FUZZ_SECONDS (default 60) on the committed seed corpus tests/fuzz/corpus;
# 3. scripts/mutation_sweep.py on a small `tq make-model` file with the release tq
#    (TQ_MUTATION_CASES cases, default 300; 0 skips).
# Builds go to build/sanitize and build/fuzz. TQ_SANITIZERS=0 skips the whole job.
set -euo pipefail
TQ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ "${TQ_SANITIZERS:-1}" == 0 ]]; then
  echo "sanitizers: skipped (TQ_SANITIZERS=0)"
  exit 0
fi
jobs="$(nproc)"
# The model-file tests that read the real model (GgufRealModel, SmolLM2Reference) need it; the
# fetch is cached and checksum-verified (scripts/test.sh fetched it already).
TQ_MODEL="${TQ_MODEL:-$("$TQ_ROOT/scripts/fetch_model.sh")}"
export TQ_MODEL
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
start=$SECONDS

# clang and its runtimes (libFuzzer) are not on a fresh machine of this kind.
if ! command -v clang++ >/dev/null || ! dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null |
    grep -q "install ok installed"; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "error: the fuzz build needs clang and libclang-rt-14-dev (run as root or install them)" >&2
    exit 1
  fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang \
    libclang-rt-14-dev >&2
fi

# 1. ASan + UBSan unit tests. -fno-sanitize-recover makes any UBSan report fatal.
san_flags="-O1 -g1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cmake -S "$TQ_ROOT" -B "$TQ_ROOT/build/sanitize" -DCMAKE_BUILD_TYPE=Debug -DTQ_CUDA=OFF \
  -DTQ_BUILD_BENCH=OFF "-DCMAKE_CXX_FLAGS=$san_flags" \
  "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined" >&2
cmake --build "$TQ_ROOT/build/sanitize" -j "$jobs" --target tq_tests_base tq_tests_model >&2
echo "sanitizers: ASan+UBSan build of tq_tests_base and tq_tests_model took $((SECONDS - start)) s"
(
  cd "$TQ_ROOT/build/sanitize"
  # OpenBLAS and libgomp are not instrumented; leaks of their thread pools are not ours to fix.
  export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  # The model-reference suites run the 135M model many times: minutes under ASan; they test
  # arithmetic, not input handling, and run unsanitized in scripts/test.sh.
  ctest --output-on-failure -j "$jobs" --timeout 600 -L 'base|model' \
    -E 'ModelReference|TokenizerReference|RandomModel|GpuRunner|GpuWeights|QMatmul'
)
t1=$SECONDS
echo "sanitizers: ASan+UBSan tests done at $((t1 - start)) s"

# 2. libFuzzer on the committed seed corpus (copied: the fuzzer adds files to its corpus).
cmake -S "$TQ_ROOT" -B "$TQ_ROOT/build/fuzz" -DCMAKE_BUILD_TYPE=Debug -DTQ_CUDA=OFF \
  -DTQ_BUILD_BENCH=OFF -DTQ_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang >&2
cmake --build "$TQ_ROOT/build/fuzz" -j "$jobs" --target tq_fuzz_gguf >&2
corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT
mkdir "$corpus/seeds"
cp "$TQ_ROOT"/tests/fuzz/corpus/* "$corpus/seeds/"
fuzz_rc=0
"$TQ_ROOT/build/fuzz/tests/fuzz/tq_fuzz_gguf" -max_total_time="${TQ_FUZZ_SECONDS:-60}" \
  -max_len=8192 -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 "$corpus/seeds" \
  >"$corpus/fuzz.log" 2>&1 || fuzz_rc=$?
grep -E "^#[0-9]+.*(INITED|DONE)|^Done|stat::number_of_executed_units|stat::peak_rss" \
  "$corpus/fuzz.log" || true
if [[ $fuzz_rc -ne 0 ]]; then
  tail -n 60 "$corpus/fuzz.log" >&2
  echo "error: the GGUF fuzzer found a failure (exit $fuzz_rc)" >&2
  exit 1
fi
t2=$SECONDS
echo "sanitizers: fuzz build and run took $((t2 - t1)) s"

# 3. Mutation sweep of a small synthetic GGUF with the release tq of scripts/test.sh.
cases="${TQ_MUTATION_CASES:-300}"
if [[ "$cases" != 0 ]]; then
  tq="${TQ_BUILD:-$TQ_ROOT/build/release}/tools/tq"
  model="$corpus/sweep.gguf"
  "$tq" make-model --shape smollm2-135m --layers 2 -q -o "$model"
  python3 "$TQ_ROOT/scripts/mutation_sweep.py" --tq "$tq" --model "$model" --limit "$cases" \
    --jobs "$jobs"
fi
echo "sanitizers: job took $((SECONDS - start)) s"
