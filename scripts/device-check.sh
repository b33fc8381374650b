#!/usr/bin/env bash
# One call on the GPU machine: GPU tests, compute-sanitizer (memcheck,
# racecheck, synccheck) on a reduced set, the benchmark suite on the cuda
# backend, SASS facts, the Python package's tests (CUDA tensors included),
# where a Python call's time goes (overhead), flash-linear-attention side by
# side (compare), and a short summary table printed last. GDN_STEPS picks steps. Uses the
# binaries scripts/build-device.sh put in .deps/device-bin (carry it).
# Every log lands in $OUT as it is written and goes into $OUT/logs.tgz after
# its step (the device tool returns at most 8 files; see pack_logs).
set -u
cd "$(dirname "$0")/.."
BIN=${GDN_DEVICE_BIN:-.deps/device-bin}
OUT=${OUT:-/tmp/gdn-device-out}
STEPS=${GDN_STEPS:-"tests sanitize bench sm90 sass python overhead compare"}
ROWS=${GDN_ROWS:-} # rows for bench, sm90 and compare: names (comma-separated), or prefill / decode
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
summary="$OUT/summary.txt"
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }
suite_rows() { python3 -c "import json;print(','.join(r['name'] for r in json.load(open('bench/suite.json'))['$1']))"; }
# A row list as given, or the suite's rows of a kind for "prefill" / "decode". gdn bench
# takes the kinds itself since c9861d3; the names stay spelt out here for the binaries of
# earlier commits that A/B runs carry and for compare_fla.py, which takes names only.
row_set() { case $1 in prefill | decode) suite_rows "$1" ;; *) echo "$1" ;; esac; }
# bench_with BIN BACKEND ROWS ASSIGN OUT: the rows on the backend with the settings of ASSIGN
# (none, or NAME=VALUE, commas joining several), JSON and table to OUT.json and OUT.txt, the
# rc and the rows into the summary (env-ab and candidates).
bench_with() {
  local env_args=() rc
  [ "$4" != none ] && IFS=, read -r -a env_args <<<"$4"
  env "${env_args[@]}" timeout "${GDN_BENCH_TIMEOUT:-150}" "$1/gdn" bench --suite bench/suite.json --backend "$2" \
    --rows "$3" --json "$5.json" >"$5.txt" 2>&1
  rc=$?
  note "bench $(basename "$1") ($(cat "$1/COMMIT" 2>/dev/null)) $2 with $4: rc=$rc"
  grep -E "^q3|^row" "$5.txt" | tee -a "$summary"
}
# The candidates step's groups: the rows each candidate setting can change, and its settings.
cand_rows() {
  case $1 in
    heads-all) suite_rows prefill ;;
    heads) echo "q3n-tp1 4x1000,q3n-tp1 8x1024,q3n-tp1 32x1024,q36-27b-tp1 2x4096,q3n-tp1 1x8192,q35-397b-tp1 1x8192" ;;
    persist) echo "q3n-tp1 8x1024,q3n-tp1 32x1024,q3n-tp1 128x256,q3n-tp4 64x512,q3n-tp1 mixed16,q3n-tp1 257 short,q3n-tp1 skewed" ;;
    overlap) echo "q3n-tp1 1x8192,q3n-tp1 1x32768" ;;
    local) echo "q35-397b-tp8 1x2048,q35-397b-tp8 1x8192,q35-397b-tp8 1x65536,q3n-tp4 1x16384" ;;
    pfirst) echo "q3n-tp1 1x8192,q36-27b-tp1 1x8192,q35-397b-tp1 1x8192,q36-27b-tp1 2x4096,q3n-tp1 4x1000,q35-397b-tp8 1x2048,q35-397b-tp8 1x8192" ;;
  esac
}
cand_envs() {
  case $1 in
    heads | heads-all) echo "GDN_PREP_HEADS=max" ;;
    persist) echo "GDN_SM90_PERSIST=1 GDN_SM90_PERSIST=1,GDN_PREP_HEADS=max" ;;
    overlap) echo "GDN_SM90_OVERLAP=1 GDN_SM90_OVERLAP=1,GDN_PREP_HEADS=max" ;;
    local) echo "GDN_SM90_LOCAL_SKIP=1" ;;
    pfirst) echo "GDN_SM90_PFIRST=1" ;;
  esac
}

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv >"$OUT/gpu.txt" 2>&1
note "device: $(head -2 "$OUT/gpu.txt" | tail -1)"
note "binaries built from: $(cat "$BIN/COMMIT" 2>/dev/null)"

# The decode profiles' row and flags, and the median kernel duration an ncu log reports.
drow=${GDN_NCU_DECODE_ROW:-q3n-tp1 decode b1 t1}
ncu_decode_flags=(--clock-control none --cache-control none
  --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,smsp__inst_executed.sum)
ncu_median() {
  echo "median gpu__time_duration $(grep gpu__time_duration "$1" | awk '{print $NF, $(NF-1)}' | sort -n |
    awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}') over $(grep -c gpu__time_duration "$1") kernels"
}
# The headline figures of an `ncu --set full` details page, into the summary.
ncu_headline() {
  grep -E "Duration|Elapsed Cycles|Warp Cycles Per Issued|Issued Warp Per|Achieved Occupancy|Registers Per" "$1" |
    head -12 | tee -a "$summary"
}

# At most 8 files come back from the device: the suite JSONs (bench-cuda,
# bench-sm90, bench-probe-*), the comparison's JSON and chart and the summary
# stay as they are; every other file goes into one archive, logs.tgz, refreshed
# after each step, so a call that runs out of time loses only the step it was in
# (bash runs the TERM trap only once the step's command returns). Logs read by a
# later step are read from $LOGS.
LOGS=$(mktemp -d)
pack_logs() {
  (
    cd "$OUT" || exit
    ls | grep -vE '^(bench-(cuda|sm90|probe-.*)|compare-fla)\.json$|\.png$|^summary\.txt$|^logs\.tgz$' >"$LOGS/.pack"
    [ -s "$LOGS/.pack" ] && xargs -a "$LOGS/.pack" -d '\n' mv -t "$LOGS" --
    rm -f "$LOGS/.pack"
    [ -n "$(ls "$LOGS")" ] && tar czf logs.tgz -C "$LOGS" .
  )
}
trap 'pack_logs; rm -rf "$LOGS"' EXIT
trap 'exit 143' TERM INT

for step in $STEPS; do
  step_t0=$SECONDS
  case $step in
    tests)
      # GDN_TESTS_FILTER: a gtest filter (default: every test).
      timeout 400 "$BIN/gdn_gpu_tests" --gtest_brief=0 --gtest_filter="${GDN_TESTS_FILTER:-*}" >"$OUT/gpu-tests.log" 2>&1
      rc=$?
      note "gpu tests: rc=$rc, $(grep -E '^\[  PASSED  \]' "$OUT/gpu-tests.log" | head -1) $(grep -cE '^\[  FAILED  \] .*\)$' "$OUT/gpu-tests.log") failed, $(grep -cE '^\[  SKIPPED \] .*\)$' "$OUT/gpu-tests.log") skipped"
      grep -E '^\[  FAILED  \]' "$OUT/gpu-tests.log" | head -20 | tee -a "$summary"
      ;;
    sanitize)
      # Prefill properties and the segment split on both backends, cases 10-13 on both;
      # decode, verify and commit: their tests and matrix cases 22-33; one or two value
      # heads: cases 34-37 (34 and 35, the prefills, on sm90 too).
      # GDN_SANITIZE_FILTER replaces the set, GDN_SANITIZE_TIMEOUT each tool's limit (300 s).
      # (GoogleTest filters know * and ? only: a [0-3] class matches no test name.)
      cases() {
        local suite=$1
        shift
        for i in "$@"; do printf ':%s/%s_*' "$suite" "$i"; done
      }
      filter='CudaProperties.*:Backends/GpuPrefill.*:Sm90Groups.*:CudaDecode.*:CudaCommit.*:Shapes/CudaVerifyVsDecode.*'
      filter+=$(cases Matrix/CudaMatrix.MatchesReference 10 11 12 13 $(seq 22 37))
      filter+=$(cases Matrix/Sm90Matrix.MatchesReferenceAndTheCudaBackend 10 11 12 13 34 35)
      filter=${GDN_SANITIZE_FILTER:-$filter}
      for tool in memcheck racecheck synccheck; do
        timeout "${GDN_SANITIZE_TIMEOUT:-300}" compute-sanitizer --tool "$tool" --error-exitcode 99 "$BIN/gdn_gpu_tests" \
          --gtest_filter="$filter" >"$OUT/sanitize-$tool.log" 2>&1
        rc=$?
        note "compute-sanitizer $tool: rc=$rc, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize-$tool.log" | tail -1)"
      done
      ;;
    bench)
      args=(bench --suite bench/suite.json --backend cuda --json "$OUT/bench-cuda.json")
      [ -n "$ROWS" ] && args+=(--rows "$(row_set "$ROWS")")
      timeout 420 "$BIN/gdn" "${args[@]}" >"$OUT/bench-cuda.txt" 2>"$OUT/bench-cuda.err"
      note "bench: rc=$?"
      ;;
    sm90)
      # The prefill rows on the sm90 backend (auto picks it on sm_90 unless the sequences
      # average at most 64 tokens).
      args=(bench --suite bench/suite.json --backend sm90 --json "$OUT/bench-sm90.json")
      [ -n "$ROWS" ] && args+=(--rows "$(row_set "$ROWS")")
      timeout 300 "$BIN/gdn" "${args[@]}" >"$OUT/bench-sm90.txt" 2>"$OUT/bench-sm90.err"
      note "bench sm90: rc=$?"
      ;;
    probe)
      # The prefill rows (or GDN_PROBE_ROWS) on a measurement build (GDN_PROBE_BIN, e.g. one
      # built with -DCMAKE_CUDA_FLAGS=-DGDN_CUDA_PROBE=1 and carried) on each backend of
      # GDN_PROBE_BACKEND (cuda; several, space-separated), to set beside the bench and sm90
      # steps' rows of the same run (not a default step). GDN_PROBE_ROWS=decode takes the
      # decode rows. GDN_PROBE_BIN may name several builds (space-separated); each writes
      # files named after its folder. GDN_PROBE_NORUN=1 skips the prefill error runs.
      prows=$(row_set "${GDN_PROBE_ROWS:-${ROWS:-prefill}}")
      for pb in ${GDN_PROBE_BACKEND:-cuda}; do
        for pbin in ${GDN_PROBE_BIN:-.deps/probe}; do
          tag=$(basename "$pbin")
          timeout 200 "$pbin/gdn" bench --suite bench/suite.json --backend "$pb" \
            --rows "$prows" --json "$OUT/bench-probe-$tag-$pb.json" \
            >"$OUT/bench-probe-$tag-$pb.txt" 2>&1
          rc=$?
          note "bench probe $tag $pb ($(cat "$pbin/COMMIT" 2>/dev/null)): rc=$rc"
          grep -E "^q3|^row" "$OUT/bench-probe-$tag-$pb.txt" | tee -a "$summary"
        done
        # The error beside the default build's, on the built-in inputs and one 8192-token sequence.
        if [ -z "${GDN_PROBE_NORUN:-}" ]; then
          for lens in 1000,333,77,1 8192; do
            for bin in "$BIN" ${GDN_PROBE_BIN:-.deps/probe}; do
              timeout 60 "$bin/gdn" run --backend "$pb" --seq-lens "$lens" >"$OUT/run-probe.txt" 2>&1
              rc=$?
              note "gdn run $pb $lens ($(cat "$bin/COMMIT" 2>/dev/null)): rc=$rc, $(grep -iE 'error|PASS|FAIL' "$OUT/run-probe.txt" | tr '\n' ' ' | head -c 300)"
            done
          done
        fi
      done
      ;;
    env-ab)
      # GDN_AB_ROWS (default: the prefill rows; "decode": the decode rows) on each backend of
      # GDN_AB_BACKEND (cuda; several, space-separated) once per assignment in GDN_AB_ENVS
      # (e.g. "GDN_CUDA_SEGMENTS=1 GDN_CUDA_SEGMENTS=8"; commas join several into one run,
      # "GDN_SM90_FUSED=0,GDN_PREP_HEADS=max"), after a run without any, each in its
      # own file, for each build folder of GDN_AB_BINS (default $BIN; several, space-separated,
      # each with its gdn and COMMIT, files named after the folder), so candidate builds time
      # side by side in one call (not a default step).
      ab_rows=$(row_set "${GDN_AB_ROWS:-prefill}")
      for ab_bin in ${GDN_AB_BINS:-$BIN}; do
        ab_tag=$(basename "$ab_bin")
        for ab_backend in ${GDN_AB_BACKEND:-cuda}; do
          i=0
          for assign in none ${GDN_AB_ENVS:-}; do
            bench_with "$ab_bin" "$ab_backend" "$ab_rows" "$assign" "$OUT/bench-env-$ab_tag-$ab_backend-$i"
            i=$((i + 1))
          done
        done
      done
      ;;
    candidates)
      # The sm90 candidate settings not yet on by default, each group of GDN_CAND_GROUPS
      # (default: overlap local persist heads pfirst; heads-all: GDN_PREP_HEADS on every
      # prefill row) on the rows it can change (cand_rows), once with the defaults and once
      # per setting (cand_envs), all in one call, so on one card (not a default step).
      for g in ${GDN_CAND_GROUPS:-overlap local persist heads pfirst}; do
        i=0
        for assign in none $(cand_envs "$g"); do
          bench_with "$BIN" sm90 "$(cand_rows "$g")" "$assign" "$OUT/bench-cand-$g-$i"
          i=$((i + 1))
        done
      done
      ;;
    sm90-groups)
      # The prefill rows on sm90 with one and with two column tiles per CTA forced
      # (GDN_SM90_GROUPS): what pairing a head's tiles brings, row by row (not a default step).
      for g in 1 2; do
        GDN_SM90_GROUPS=$g timeout 200 "$BIN/gdn" bench --suite bench/suite.json --backend sm90 --rows "$(row_set "${ROWS:-prefill}")" \
          --json "$OUT/bench-sm90-groups$g.json" >"$OUT/bench-sm90-groups$g.txt" 2>&1
        note "bench sm90, GDN_SM90_GROUPS=$g: rc=$?"
      done
      ;;
    decode-pdl)
      # The decode rows again with programmatic launches off: what they bring (not a default step).
      GDN_DISABLE_PDL=1 timeout 120 "$BIN/gdn" bench --suite bench/suite.json --backend cuda --rows "$(row_set decode)" \
        --json "$OUT/bench-decode-nopdl.json" >"$OUT/bench-decode-nopdl.txt" 2>&1
      note "bench decode, GDN_DISABLE_PDL=1: rc=$?"
      ;;
    ncu-decode)
      # The decode kernel's own duration (Nsight Compute, caches left as they are), next to its
      # graph time, on the row GDN_NCU_DECODE_ROW (default the batch-1 one-token decode; any
      # suite row whose call runs the recurrent kernel, e.g. "q3n-tp1 4x7") (not a default step).
      timeout 180 ncu "${ncu_decode_flags[@]}" -k regex:recurrent_kernel -c 24 \
        "$BIN/gdn" bench --suite bench/suite.json --backend cuda --rows "$drow" --reps 8 >"$OUT/ncu-decode.txt" 2>&1
      note "ncu '$drow': rc=$?, $(ncu_median "$OUT/ncu-decode.txt")"
      ;;
    ncu-full)
      # Every Nsight Compute section, with source-line counters, of one launch of each kernel
      # in GDN_NCU_FULL: "kernel regex|row|backend[|launches to skip, default 8]" items separated
      # by ';' (default the decode kernel on GDN_NCU_DECODE_ROW): where its warps stall (not a
      # default step). An odd skip count picks the second of two alternating launches (e.g. a
      # prefill's final state pass after its local one).
      IFS=';' read -ra specs <<<"${GDN_NCU_FULL:-recurrent_kernel|$drow|cuda}"
      for spec in "${specs[@]}"; do
        IFS='|' read -r kre row backend skip <<<"$spec"
        tag=ncu-full-${kre//[^A-Za-z0-9]/_}
        timeout 180 ncu --clock-control none --set full --import-source yes -k "regex:$kre" -s "${skip:-8}" -c 1 \
          -o "$OUT/$tag" "$BIN/gdn" bench --suite bench/suite.json --backend "$backend" --rows "$row" --reps 8 \
          >"$OUT/$tag.log" 2>&1
        note "ncu --set full $kre on $backend '$row': rc=$?"
        ncu -i "$OUT/$tag.ncu-rep" --page details >"$OUT/$tag.txt" 2>&1
        ncu -i "$OUT/$tag.ncu-rep" --page source --csv --print-source sass >"$OUT/$tag-source.csv" 2>&1
        ncu_headline "$OUT/$tag.txt"
      done
      ;;
    fla-decode)
      # flash-linear-attention's recurrent kernel on GDN_NCU_DECODE_ROW: its graph time in this
      # process, then its own duration under the ncu-decode step's flags (not a default step;
      # needs fla carried as for compare).
      fla=.peers/flash-linear-attention
      PYTHONPATH=$fla timeout 150 python3 scripts/compare_fla.py --fla-only --rows "$drow" --json "$OUT/fla-only.json" \
        >"$OUT/fla-only.txt" 2>&1
      note "fla alone '$drow': rc=$?, $(grep -o "'fla_ms_graph': [0-9.e-]*" "$OUT/fla-only.txt")"
      PYTHONPATH=$fla timeout 180 ncu "${ncu_decode_flags[@]}" -k regex:fused_recurrent -c 24 \
        python3 scripts/compare_fla.py --fla-only --rows "$drow" --reps 8 --json "$OUT/fla-ncu.json" \
        >"$OUT/ncu-fla-decode.txt" 2>&1
      note "ncu fla '$drow': rc=$?, $(ncu_median "$OUT/ncu-fla-decode.txt")"
      PYTHONPATH=$fla timeout 180 ncu --clock-control none --set full -k regex:fused_recurrent -s 8 -c 1 \
        python3 scripts/compare_fla.py --fla-only --rows "$drow" --reps 8 --json "$OUT/fla-ncu.json" \
        >"$OUT/ncu-fla-decode-full.txt" 2>&1
      note "ncu --set full fla: rc=$?"
      ncu_headline "$OUT/ncu-fla-decode-full.txt"
      ;;
    ncu-prefill)
      # Each prefill kernel's own duration (Nsight Compute, median per kernel)
      # on the rows in GDN_NCU_ROWS (comma-separated; default the short and
      # the batch anchor rows), cuda and sm90: where a call's time goes (not a
      # default step). Every ncu step here passes --clock-control none: the
      # clocks stay as the card runs them (ncu's default locks them to base).
      # GDN_NCU_BACKENDS picks the backends (default "cuda sm90"), GDN_NCU_BINS
      # several binary folders to set side by side (default $BIN).
      IFS=, read -ra nrows <<<"${GDN_NCU_ROWS:-q3n-tp1 1x64,q3n-tp1 32x1024}"
      for row in "${nrows[@]}"; do
        for backend in ${GDN_NCU_BACKENDS:-cuda sm90}; do
          for nbin in ${GDN_NCU_BINS:-$BIN}; do
            log="$OUT/ncu-prefill-$backend-${row// /_}-$(basename "$nbin").csv"
            timeout 150 ncu --csv --print-units base --cache-control none --clock-control none \
              --metrics gpu__time_duration.sum \
              "$nbin/gdn" bench --suite bench/suite.json --backend "$backend" --rows "$row" --reps 3 >"$log" 2>&1
            note "ncu $backend '$row' ($nbin): rc=$?"
            python3 scripts/ncu_kernel_times.py "$log" | tee -a "$summary"
          done
        done
      done
      ;;
    ncu-detail)
      # Where the sm90 prefill's kernels stall (Nsight Compute sections: speed of light,
      # memory workload, occupancy, warp states) on GDN_NCU_ROWS' first row (default
      # q3n-tp1 32x1024), one launch of each of the prep and the state pass (not a default step).
      # GDN_NCU_BACKEND and GDN_NCU_KERNELS (an ncu regex) profile another backend's kernels,
      # e.g. cuda and recurrent for the token recurrence of a short prefill.
      row=${GDN_NCU_ROWS:-q3n-tp1 32x1024}
      row=${row%%,*}
      nbackend=${GDN_NCU_BACKEND:-sm90}
      timeout 200 ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy \
        --section WarpStateStats --section LaunchStats --section SchedulerStats \
        -k "regex:${GDN_NCU_KERNELS:-prefill_prep_kernel|prefill_state_sm90}" -c 2 \
        "$BIN/gdn" bench --suite bench/suite.json --backend "$nbackend" --rows "$row" --reps 1 >"$OUT/ncu-detail.txt" 2>&1
      note "ncu detail $nbackend '$row': rc=$?"
      grep -E "prefill_(prep|state)|recurrent|Duration|Cycles|Issued|DRAM Throughput|Memory Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Stall" \
        "$OUT/ncu-detail.txt" | head -40 | tee -a "$summary"
      ;;
    sass)
      # The same check CI runs (scripts/check-sass.sh), on the carried binary.
      bash scripts/check-sass.sh "$BIN/gdn" "$OUT" >"$OUT/sass-facts.txt" 2>&1
      note "sass check: rc=$?"
      tee -a "$summary" <"$OUT/sass-facts.txt"
      ;;
    python | pybuild)
      # The Python package built here (the device has nanobind, scikit-build-core and
      # PyTorch but no network, hence no build isolation), then its tests, CUDA ones
      # included (pybuild: the build alone, for the overhead and compare steps).
      # The system g++ links libstdc++ dynamically: a module built by a compiler
      # wrapper that links it statically segfaulted on the first C++ exception
      # (numpy and torch load the shared libstdc++ into the same process).
      cxx=$(command -v /usr/bin/g++ || command -v g++)
      rm -rf build-python
      GDN_SOURCE_COMMIT=$(cat "$BIN/COMMIT" 2>/dev/null) CXX=$cxx CUDAHOSTCXX=$cxx \
        CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=90-real" \
        timeout 400 python3 -m pip install -q --no-build-isolation . >"$OUT/python-build.log" 2>&1
      note "python build: rc=$?"
      if [ "$step" = python ]; then
        (cd tests/python && timeout "${GDN_PYTEST_TIMEOUT:-300}" python3 -X faulthandler -m pytest -q -rs >"$OUT/python-tests.log" 2>&1)
        note "python tests: rc=$?, $(tail -1 "$OUT/python-tests.log")"
      fi
      ;;
    overhead)
      # Where a plain Python call's time goes (needs the python or pybuild step first).
      timeout 120 python3 scripts/py_overhead.py >"$OUT/py-overhead.txt" 2>&1
      note "python call overhead: rc=$?"
      ;;
    compare)
      # gdn and flash-linear-attention side by side (needs the python or pybuild step first
      # and flash-linear-attention's fla/ folder carried in .peers, see README).
      fla=.peers/flash-linear-attention
      if [ -d "$fla/fla" ]; then
        args=(--json "$OUT/compare-fla.json" --png "$OUT/compare-fla.png")
        [ -n "$ROWS" ] && args+=(--rows "$(row_set "$ROWS")")
        PYTHONPATH=$fla FLA_COMMIT=$(cat "$fla/COMMIT" 2>/dev/null) timeout "${GDN_COMPARE_TIMEOUT:-400}" python3 -X faulthandler scripts/compare_fla.py \
          "${args[@]}" >"$OUT/compare-fla.txt" 2>&1
        note "compare with flash-linear-attention: rc=$?, $(grep -c agree "$OUT/compare-fla.json" 2>/dev/null) rows"
      else
        note "compare with flash-linear-attention: skipped ($fla/fla not carried)"
      fi
      ;;
  esac
  note "step $step: $((SECONDS - step_t0)) s"
  pack_logs
done
[ -f "$LOGS/bench-cuda.txt" ] && cat "$LOGS/bench-cuda.txt"
[ -f "$LOGS/bench-sm90.txt" ] && cat "$LOGS/bench-sm90.txt"
for f in "$LOGS"/bench-probe-*.txt; do [ -f "$f" ] && grep -E "^q3|^row" "$f"; done
[ -f "$LOGS/bench-decode-nopdl.txt" ] && grep -E "^q3n|^row" "$LOGS/bench-decode-nopdl.txt"
[ -f "$LOGS/compare-fla.txt" ] && tail -25 "$LOGS/compare-fla.txt"
[ -f "$LOGS/py-overhead.txt" ] && cat "$LOGS/py-overhead.txt"
echo "---"
cat "$summary"
