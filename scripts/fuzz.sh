#!/usr/bin/env bash
# Builds the libFuzzer target of the C ABI (fuzz/fuzz_c_api.cc) with clang,
# ASan and UBSan, and runs it for $1 seconds (default 60) on a copy of the
# seed corpus fuzz/corpus/. Exits non-zero when the fuzzer finds a crash, a
# sanitizer report, an oracle violation, a leak, a timeout or an OOM; the
# reproducer is left in build-fuzz/artifacts/.
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
cmake --build build-fuzz --target gdn_fuzz_c_api

corpus="${build}/corpus"
artifacts="${build}/artifacts"
rm -rf "${corpus}"
mkdir -p "${corpus}" "${artifacts}"
cp fuzz/corpus/* "${corpus}/"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
"${build}/fuzz/gdn_fuzz_c_api" -max_total_time="${seconds}" -timeout=10 -rss_limit_mb=4096 \
  -print_final_stats=1 -artifact_prefix="${artifacts}/" "${corpus}" || status=$?
if [[ ${status} -ne 0 ]]; then
  echo "fuzz.sh: the fuzzer failed (exit ${status}); reproducers in ${artifacts}:" >&2
  ls -l "${artifacts}" >&2 || true
  exit 1
fi
echo "fuzz.sh: no crash in ${seconds} s"
