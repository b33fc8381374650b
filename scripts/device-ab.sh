#!/usr/bin/env bash
# Quick A/B on the GPU machine: the prefill GPU tests, then the prefill rows
# of the suite with the default kernels and with the variant an environment
# variable selects (GDN_AB_ENV, e.g. "GDN_CUDA_STATE_PASS=tiles"), and the
# decode rows with GDN_AB_DECODE_ENV; GDN_AB_BACKEND_B=sm90 runs the second
# set of prefill rows on that backend. Uses .deps/device-bin (carry it).
set -u
cd "$(dirname "$0")/.."
BIN=${GDN_DEVICE_BIN:-.deps/device-bin}
OUT=${OUT:-/tmp/gdn-device-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
echo "binaries built from: $(cat "$BIN/COMMIT")" | tee "$OUT/ab.txt"
B=${GDN_AB_BACKEND_B:-cuda}
timeout 30 "$BIN/gdn" run --backend "$B" >"$OUT/run.txt" 2>&1
echo "gdn run --backend $B: rc=$?" | tee -a "$OUT/ab.txt"
tail -5 "$OUT/run.txt" | tee -a "$OUT/ab.txt"
timeout ${GDN_AB_TEST_TIMEOUT:-200} "$BIN/gdn_gpu_tests" --gtest_filter="${GDN_AB_TESTS:-Matrix/CudaMatrix.*:CudaProperties.*}" >"$OUT/tests.log" 2>&1
echo "tests rc=$? $(grep -E '^\[  PASSED  \]' "$OUT/tests.log")" | tee -a "$OUT/ab.txt"
grep -E '^\[  FAILED  \]|rel_rms|Failure|error' "$OUT/tests.log" | head -30 | tee -a "$OUT/ab.txt"
prefill=$(python3 -c "import json;print(','.join(r['name'] for r in json.load(open('bench/suite.json'))['prefill']))")
decode=$(python3 -c "import json;print(','.join(r['name'] for r in json.load(open('bench/suite.json'))['decode']))")
rows=${GDN_AB_ROWS:-$prefill}
timeout 150 "$BIN/gdn" bench --suite bench/suite.json --backend cuda --rows "$rows" --json "$OUT/bench-a.json" >"$OUT/bench-a.txt" 2>/dev/null
echo "== default" | tee -a "$OUT/ab.txt"; cat "$OUT/bench-a.txt" | tee -a "$OUT/ab.txt"
if [ -n "${GDN_AB_ENV:-}" ] || [ "$B" != cuda ]; then
  env ${GDN_AB_ENV:-GDN_AB=1} timeout 150 "$BIN/gdn" bench --suite bench/suite.json --backend "$B" --rows "$rows" \
    --json "$OUT/bench-b.json" >"$OUT/bench-b.txt" 2>/dev/null
  echo "== backend $B ${GDN_AB_ENV:-}" | tee -a "$OUT/ab.txt"; cat "$OUT/bench-b.txt" | tee -a "$OUT/ab.txt"
fi
if [ -n "${GDN_AB_DECODE_ENV:-}" ]; then
  timeout 60 "$BIN/gdn" bench --suite bench/suite.json --backend cuda --rows "$decode" >"$OUT/dec-a.txt" 2>/dev/null
  env $GDN_AB_DECODE_ENV timeout 60 "$BIN/gdn" bench --suite bench/suite.json --backend cuda --rows "$decode" >"$OUT/dec-b.txt" 2>/dev/null
  { echo "== decode default"; cat "$OUT/dec-a.txt"; echo "== decode $GDN_AB_DECODE_ENV"; cat "$OUT/dec-b.txt"; } | tee -a "$OUT/ab.txt"
fi
