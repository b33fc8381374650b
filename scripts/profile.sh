#!/usr/bin/env bash
# Per-kernel GPU time and occupancy of the cuda prefill on chosen suite rows
# (Nsight Compute, first call of each row). Usage on the GPU machine:
#   GDN_ROWS="q3n-tp1 32x1024,q3n-tp1 1x64" bash scripts/profile.sh
# Writes $OUT/profile.csv and prints one line per kernel.
set -u
cd "$(dirname "$0")/.."
BIN=${GDN_DEVICE_BIN:-.deps/device-bin}
OUT=${OUT:-/tmp/gdn-device-out}
ROWS=${GDN_ROWS:-"q3n-tp1 32x1024,q35-397b-tp8 1x8192,q3n-tp1 1x64"}
mkdir -p "$OUT"
metrics=gpu__time_duration.sum,sm__warps_active.avg.pct_of_peak_sustained_active,launch__occupancy_limit_shared_mem,launch__occupancy_limit_registers,launch__grid_size,smsp__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__average_warp_latency_per_inst_issued.ratio,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__average_warps_issue_stalled_wait_per_issue_active.ratio,smsp__average_warps_issue_stalled_dispatch_stall_per_issue_active.ratio,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active
IFS=, read -ra rows <<<"$ROWS"
: >"$OUT/profile.csv"
for row in "${rows[@]}"; do
  echo "== $row" | tee -a "$OUT/profile.csv"
  timeout 300 ncu --metrics "$metrics" --kernel-name regex:'prefill|chunk_meta' --launch-count 3 --csv \
    "$BIN/gdn" bench --suite bench/suite.json --backend cuda --rows "$row" --reps 1 --max-seconds 1 \
    >>"$OUT/profile.csv" 2>"$OUT/profile.err"
done
python3 - "$OUT/profile.csv" <<'PY'
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if r]
for r in rows:
    if r[0].startswith("=="):
        print(r[0]); continue
    if len(r) > 14 and r[0] != "ID":
        print(f"  {r[4][:40]:40s} {r[12][-48:]:48s} {r[13]:>10s} {r[14]}")
PY
