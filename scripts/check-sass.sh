#!/usr/bin/env bash
# SASS facts of a built binary (default build/tools/gdn), readable without a
# GPU: every kernel's registers and local memory, the tensor-core
# instructions, and two rules that fail the script:
#   - no kernel uses local memory or a stack (a spill, or an array the
#     compiler could not keep in registers);
#   - the sm90 state pass, where its sm_90a code is built, runs on HGMMA
#     (wgmma), not on a fallback.
# cuobjdump comes from the CUDA toolkit, or from the pip package
# nvidia-cuda-cuobjdump with nvidia-cuda-nvdisasm, which its --dump-sass runs
# since 13.5 (the toolkit on the build machine has neither). Used by
# .ci/run after the tests and by scripts/device-check.sh's sass step.
set -euo pipefail
bin=${1:-build/tools/gdn}
out=${2:-} # optional folder for the full dumps
find_cuobjdump() {
  command -v cuobjdump && return
  [ -x /usr/local/cuda/bin/cuobjdump ] && echo /usr/local/cuda/bin/cuobjdump && return
  python3 - <<'EOF'
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit(1)
for base in nvidia.__path__:
    for path in sorted(glob.glob(os.path.join(base, "cu*", "bin", "cuobjdump")), reverse=True):
        print(path)
        raise SystemExit(0)
raise SystemExit(1)
EOF
}
cuobjdump=$(find_cuobjdump) || {
  echo "check-sass: no cuobjdump (CUDA toolkit or pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)" >&2
  exit 2
}
[ -f "$bin" ] || {
  echo "check-sass: $bin not found" >&2
  exit 2
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$cuobjdump" --dump-resource-usage "$bin" >"$tmp/res.txt"
"$cuobjdump" --dump-sass "$bin" >"$tmp/sass.txt"
[ -n "$out" ] && mkdir -p "$out" && cp "$tmp/res.txt" "$out/resource-usage.txt"

# Kernels and their usage: "Function <mangled>:" then a line of REG/STACK/SHARED/LOCAL.
awk '/Function/ {name = $2; sub(/:$/, "", name)} /REG:/ {
  reg = stack = local = ""
  for (i = 1; i <= NF; ++i) {
    if ($i ~ /^REG:/) reg = substr($i, 5)
    if ($i ~ /^STACK:/) stack = substr($i, 7)
    if ($i ~ /^LOCAL:/) local = substr($i, 7)
  }
  print name, reg, stack, local
}' "$tmp/res.txt" >"$tmp/usage.txt"
kernels=$(wc -l <"$tmp/usage.txt")
[ "$kernels" -gt 0 ] || {
  echo "check-sass: no device code in $bin" >&2
  exit 2
}
echo "kernels: $kernels (registers $(awk '{print $2}' "$tmp/usage.txt" | sort -n | head -1)-$(awk '{print $2}' "$tmp/usage.txt" | sort -n | tail -1))"
echo "SASS: $(grep -c HMMA "$tmp/sass.txt" || true) HMMA, $(grep -c HGMMA "$tmp/sass.txt" || true) HGMMA, $(grep -cE '\b(LDL|STL)\b' "$tmp/sass.txt" || true) LDL/STL"
status=0
if awk '$3 != 0 || $4 != 0' "$tmp/usage.txt" | grep -q .; then
  echo "FAIL: kernels with a stack or local memory (name, registers, stack, local):"
  awk '$3 != 0 || $4 != 0' "$tmp/usage.txt"
  status=1
fi
# The sm90 state pass's functions and the HGMMA in each (sm_90a code only).
if grep -q 'Function : .*prefill_state_sm90' "$tmp/sass.txt"; then
  awk '/Function :/ {f = ($3 ~ /prefill_state_sm90/) ? $3 : ""} f != "" && /HGMMA/ {n[f]++}
       /Function :/ && $3 ~ /prefill_state_sm90/ {seen[$3] = 1}
       END {for (k in seen) print (k in n ? n[k] : 0), k}' "$tmp/sass.txt" >"$tmp/hgmma.txt"
  echo "sm90 state pass: $(wc -l <"$tmp/hgmma.txt") kernels, HGMMA per kernel $(awk '{print $1}' "$tmp/hgmma.txt" | sort -n | tr '\n' ' ')"
  if awk '$1 == 0' "$tmp/hgmma.txt" | grep -q .; then
    echo "FAIL: sm90 state pass kernels without HGMMA:"
    awk '$1 == 0 {print $2}' "$tmp/hgmma.txt"
    status=1
  fi
fi
exit $status
