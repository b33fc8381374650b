#!/usr/bin/env bash
# Builds the libFuzzer targets of the C ABI with clang, ASan and UBSan and runs
# them for $1 seconds in all (default 60): fuzz/fuzz_c_api.cc (prefill, decode,
# verify; three quarters of the time, on a copy of the seed corpus
# fuzz/corpus/) and fuzz/fuzz_commit.cc (commit_states; the rest). Exits
# non-zero when a fuzzer finds a crash, a sanitizer report, an oracle
# violation, a leak, a timeout or an OOM; the reproducer is left in
# build-fuzz/artifacts/.
#
#   scripts/fuzz.sh [seconds]
#   build-fuzz/fuzz/gdn_fuzz_c_api build-fuzz/artifacts/crash-...   # replay one input
#   GDN_FUZZ_VERBOSE=1 build-fuzz/fuzz/gdn_fuzz_c_api <input>       # print the case
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${root}/build-fuzz"
cd "${root}"

CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DGDN_FUZZ=ON -DGDN_CUDA=OFF \
  -DGDN_BUILD_TESTS=OFF -DGDN_BUILD_CLI=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build-fuzz --target gdn_fuzz_c_api gdn_fuzz_commit

artifacts="${build}/artifacts"
mkdir -p "${artifacts}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# run TARGET SECONDS [SEED_DIR]
run() {
  local target=$1 secs=$2 seeds=${3:-}
  local corpus="${build}/corpus-${target}"
  rm -rf "${corpus}"
  mkdir -p "${corpus}"
  [[ -n "${seeds}" ]] && cp "${seeds}"/* "${corpus}/"
  local status=0
  "${build}/fuzz/${target}" -max_total_time="${secs}" -timeout=10 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix="${artifacts}/" "${corpus}" || status=$?
  if [[ ${status} -ne 0 ]]; then
    echo "fuzz.sh: ${target} failed (exit ${status}); reproducers in ${artifacts}:" >&2
    ls -l "${artifacts}" >&2 || true
    exit 1
  fi
}
commit_seconds=$((seconds / 4 > 5 ? seconds / 4 : 5))
run gdn_fuzz_c_api $((seconds - commit_seconds > 5 ? seconds - commit_seconds : 5)) fuzz/corpus
run gdn_fuzz_commit "${commit_seconds}"
echo "fuzz.sh: no crash in ${seconds} s"
