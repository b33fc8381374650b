#!/usr/bin/env bash
# One device call that times candidate settings against the defaults, each on
# the rows it can change, in the same call (so on the same card), after an
# optional GPU-test run: GDN_CAND_TESTS (a gtest filter; empty: no tests) and
# GDN_CAND_GROUPS (space-separated, from the list below; each runs its rows
# once without the group's settings and once per setting). Writes
# $OUT/summary.txt as results come and every bench JSON and log into
# $OUT/candidates.tgz after each run (the device tool returns at most 8
# files). Uses the binaries of scripts/build-device.sh in .deps/device-bin.
set -u
cd "$(dirname "$0")/.."
BIN=${GDN_DEVICE_BIN:-.deps/device-bin}
OUT=${OUT:-/tmp/gdn-device-out}
mkdir -p "$OUT/cand"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
summary="$OUT/summary.txt"
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }
pack() { tar czf "$OUT/candidates.tgz" -C "$OUT" cand; }
note "device: $(nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader 2>&1 | head -1)"
note "binaries built from: $(cat "$BIN/COMMIT" 2>/dev/null)"

prefill=$(python3 -c "import json;print(','.join(r['name'] for r in json.load(open('bench/suite.json'))['prefill']))")
batch="q3n-tp1 8x1024,q3n-tp1 32x1024,q3n-tp1 128x256,q3n-tp4 64x512,q3n-tp1 mixed16,q3n-tp1 257 short,q3n-tp1 skewed"
long="q3n-tp1 1x8192,q3n-tp1 1x32768"
split="q35-397b-tp8 1x2048,q35-397b-tp8 1x8192,q35-397b-tp8 1x65536,q3n-tp4 1x16384"
two_kernel="q3n-tp1 1x8192,q36-27b-tp1 1x8192,q35-397b-tp1 1x8192,q36-27b-tp1 2x4096,q3n-tp1 4x1000,q35-397b-tp8 1x2048,q35-397b-tp8 1x8192"
# rows where the prep takes the largest share (ncu at f1a7f35: 27-44%)
prep_heavy="q3n-tp1 4x1000,q3n-tp1 8x1024,q3n-tp1 32x1024,q36-27b-tp1 2x4096,q3n-tp1 1x8192,q35-397b-tp1 1x8192"
# group: rows, then the settings (commas join several into one run)
group_rows() {
  case $1 in
    heads-all) echo "$prefill" ;; heads) echo "$prep_heavy" ;; persist) echo "$batch" ;; overlap) echo "$long" ;;
    local) echo "$split" ;; pfirst) echo "$two_kernel" ;;
  esac
}
group_envs() {
  case $1 in
    heads | heads-all) echo "GDN_PREP_HEADS=max" ;;
    persist) echo "GDN_SM90_PERSIST=1 GDN_SM90_PERSIST=1,GDN_PREP_HEADS=max" ;;
    overlap) echo "GDN_SM90_OVERLAP=1 GDN_SM90_OVERLAP=1,GDN_PREP_HEADS=max" ;;
    local) echo "GDN_SM90_LOCAL_SKIP=1" ;;
    pfirst) echo "GDN_SM90_PFIRST=1" ;;
  esac
}

if [ -n "${GDN_CAND_TESTS:-}" ]; then
  t0=$SECONDS
  timeout "${GDN_CAND_TESTS_TIMEOUT:-240}" "$BIN/gdn_gpu_tests" --gtest_filter="$GDN_CAND_TESTS" >"$OUT/cand/gpu-tests.log" 2>&1
  rc=$?
  note "gpu tests ($GDN_CAND_TESTS): rc=$rc, $(grep -E '^\[  PASSED  \]' "$OUT/cand/gpu-tests.log" | head -1) $(grep -cE '^\[  FAILED  \] .*\)$' "$OUT/cand/gpu-tests.log") failed, $((SECONDS - t0)) s"
  grep -E '^\[  FAILED  \]|Failure|error' "$OUT/cand/gpu-tests.log" | head -20 | tee -a "$summary"
  pack
fi

for g in ${GDN_CAND_GROUPS:-}; do
  rows=$(group_rows "$g")
  i=0
  for assign in none $(group_envs "$g"); do
    t0=$SECONDS
    env_args=()
    [ "$assign" != none ] && IFS=, read -r -a env_args <<<"$assign"
    out=$OUT/cand/$g-$i
    env "${env_args[@]}" timeout "${GDN_CAND_BENCH_TIMEOUT:-240}" "$BIN/gdn" bench --suite bench/suite.json \
      --backend sm90 --rows "$rows" --json "$out.json" >"$out.txt" 2>&1
    rc=$?
    note "== $g with $assign: rc=$rc, $((SECONDS - t0)) s"
    grep -E "^q3|^row" "$out.txt" | tee -a "$summary"
    pack
    i=$((i + 1))
  done
done
note "done"
