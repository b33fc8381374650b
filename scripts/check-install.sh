#!/usr/bin/env bash
# Proves the installed package works: builds gdn in build-install, installs it
# into a temporary prefix, then configures, builds and runs
# examples/consumer (find_package(gdn); one executable on gdn::gdn, one on
# gdn::gdn_static). Exits non-zero on any failure.
#
#   scripts/check-install.sh                 # GDN_CUDA=AUTO (CUDA when nvcc is found)
#   GDN_CUDA=OFF scripts/check-install.sh
#   KEEP=1 scripts/check-install.sh          # keep the temporary prefix and consumer build
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
cuda="${GDN_CUDA:-AUTO}"
build="build-install"
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)

# A build dir configured for another GDN_CUDA would be reused as is: reconfigure.
cmake -S . -B "${build}" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DGDN_CUDA="${cuda}" \
  -DGDN_BUILD_TESTS=OFF -DGDN_BUILD_CLI=OFF -DGDN_FUZZ=OFF
cmake --build "${build}" --target gdn_static gdn_shared

tmp="$(mktemp -d "${TMPDIR:-/tmp}/gdn-check-install.XXXXXX")"
if [[ -z "${KEEP:-}" ]]; then
  trap 'rm -rf "${tmp}"' EXIT
else
  echo "check-install: keeping ${tmp}"
fi
prefix="${tmp}/prefix"
cmake --install "${build}" --prefix "${prefix}"

cmake -S examples/consumer -B "${tmp}/consumer" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="${prefix}"
cmake --build "${tmp}/consumer"
"${tmp}/consumer/app"
"${tmp}/consumer/app_static"
echo "check-install: ok (GDN_CUDA=${cuda}, prefix ${prefix})"
