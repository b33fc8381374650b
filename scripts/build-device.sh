#!/usr/bin/env bash
# Builds, on this (GPU-less) machine, the binaries the GPU machine runs:
# gdn, gdn_gpu_tests and gdn_cpu_tests for sm_80 and sm_90, without
# -march=native (the GPU host's CPU may differ), linked against the static
# CUDA runtime, then copies them to .deps/device-bin for `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHS=${GDN_DEVICE_ARCHS:-"90-real"}
cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=Release -DGDN_CUDA=ON -DGDN_NATIVE=OFF \
  "-DCMAKE_CUDA_ARCHITECTURES=${ARCHS}" -DGDN_BUILD_TESTS=ON -DGDN_BUILD_CLI=ON >/dev/null
ninja -C build-device gdn gdn_gpu_tests gdn_cpu_tests
mkdir -p .deps/device-bin
cp build-device/tools/gdn build-device/tests/gdn_gpu_tests build-device/tests/gdn_cpu_tests .deps/device-bin/
git rev-parse --short=12 HEAD > .deps/device-bin/COMMIT
git status --porcelain --untracked-files=no | grep -q . && sed -i 's/$/-dirty/' .deps/device-bin/COMMIT || true
ls -la .deps/device-bin
