#!/usr/bin/env python3
"""Memory traffic of the suite's prefill rows: the floor of DESIGN section 7
(tools/gdn/cost.h: q, k, v, o, g, beta and the states once) against what the
sm90 backend's two kernels move (the prep writes Au, L and the row factors of
every chunk and value head, the state pass reads them back, the prep reads q
and k once more, and a split into segments adds a local pass and the
segments' states), each as a time at a copy bandwidth, beside a measured run
and FlashInfer's H100 times.

  python3 scripts/traffic_model.py [--measured bench/results/sm90-h100-....json]
                                   [--copy-gbps 3020] [--matmul-gflops 793000] [--skip-local]

The byte counts follow src/cuda/sm80/prefill.cu (segments_for) and
src/cuda/prep/tile_layout.cuh (three quarters of each fp32 64 x 64 tile kept);
q and k rows are counted once per q/k head and chunk in each pass (the value
heads of a group share them through L2).
"""
import argparse
import json
import math
import os

CHUNK = 64
SMS = 132
MIN_SEGMENT_TOKENS, MIN_SEGMENTS, MAX_SEGMENTS = 512, 3, 16
KEPT_TILE = 64 * 64 * 4 * 3 // 4  # bytes of Au or L a chunk and value head moves
FACTORS = 200 * 4                 # kFactorStride floats
SHORT_PREFILL_TOKENS = 16         # kShortPrefillTokens


def segments_for(row):
    n, hv, v = len(row["seq_lens"]), row["hv"], row["v"]
    ctas = n * hv * (v // 64)
    if 4 * ctas > SMS:
        return 1
    s = min(SMS // ctas, sum(row["seq_lens"]) // (n * MIN_SEGMENT_TOKENS), MAX_SEGMENTS)
    return s if s >= MIN_SEGMENTS else 1


def floor_bytes(row):
    t, n = sum(row["seq_lens"]), len(row["seq_lens"])
    h, hv, k, v = row["h"], row["hv"], row["k"], row["v"]
    return t * 2 * h * k * 2 + t * 2 * hv * v * 2 + t * hv * 8 + n * hv * k * v * 4 * 2


def flops(row):
    t, hv, k, v = sum(row["seq_lens"]), row["hv"], row["k"], row["v"]
    return 2.0 * (3 * CHUNK * k + 2 * CHUNK * v + 3 * k * v) * t * hv


def sm90_bytes(row, skip_local=False):
    """The bytes and the segment count; (floor, 0) for a prefill whose sequences are all
    at most 16 tokens long, which runs the token recurrence (one launch, src/cuda/sm80/prefill.cu)."""
    if max(row["seq_lens"]) <= SHORT_PREFILL_TOKENS:
        return floor_bytes(row), 0
    t, n = sum(row["seq_lens"]), len(row["seq_lens"])
    h, hv, k, v = row["h"], row["hv"], row["k"], row["v"]
    chunk_heads = sum(math.ceil(l / CHUNK) for l in row["seq_lens"]) * hv
    prep = 2 * KEPT_TILE + FACTORS  # per chunk and value head, written by the prep, read per pass
    b = floor_bytes(row)
    b += t * 2 * h * k * 2  # the prep's read of q and k
    b += chunk_heads * prep * 2  # written, then read by the state pass
    s = segments_for(row)
    if s > 1:
        b += t * (2 * h * k + hv * v) * 2 + chunk_heads * prep  # the local pass's reads
        if skip_local:  # (GDN_SM90_LOCAL_SKIP=1: the local pass copies neither q nor L)
            b -= t * h * k * 2 + chunk_heads * KEPT_TILE
        b += n * s * hv * (k * v + k * k) * 4 * 2  # its end states and maps, written and read
        b += n * s * hv * k * v * 4 * 2  # the combined entering states
    return b, s


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default=os.path.join(root, "bench", "suite.json"))
    ap.add_argument("--measured", default=os.path.join(root, "bench", "results", "sm90-h100-2026-12-07-342e57c.json"))
    ap.add_argument("--flashinfer", default=os.path.join(root, "bench", "baselines", "flashinfer-sm90-h100.json"))
    ap.add_argument("--copy-gbps", type=float, default=3020.0, help="copy bandwidth (gdn bench measures ~3,020 on an H100)")
    ap.add_argument("--matmul-gflops", type=float, default=793000.0, help="bf16 matrix product rate")
    ap.add_argument("--skip-local", action="store_true",
                    help="the local pass without its copies of q and L (GDN_SM90_LOCAL_SKIP=1)")
    args = ap.parse_args()
    rows = json.load(open(args.suite))["prefill"]
    measured = {}
    if args.measured and os.path.exists(args.measured):
        measured = {r["name"]: r["ms_graph"] * 1e3 for r in json.load(open(args.measured))["rows"] if r.get("ms_graph")}
    fi = {}
    if args.flashinfer and os.path.exists(args.flashinfer):
        fi = {k: v["graph_ms"] * 1e3 for k, v in json.load(open(args.flashinfer))["rows"].items()}
    bw = args.copy_gbps * 1e3  # bytes per us
    print(f"{'row':26s} {'seg':>3s} {'floor us':>9s} {'sm90 bytes us':>13s} {'x floor':>7s} "
          f"{'measured':>9s} {'of bytes':>8s} {'FI us':>8s} {'FI/floor':>8s}")
    for row in rows:
        fb = floor_bytes(row)
        floor_us = max(fb / bw, flops(row) / (args.matmul_gflops * 1e3))
        sb, s = sm90_bytes(row, args.skip_local)
        sm90_us = sb / bw
        m = measured.get(row["name"])
        f = fi.get(row["name"])
        print(f"{row['name']:26s} {s:3d} {floor_us:9.1f} {sm90_us:13.1f} {sb / fb:7.2f} "
              f"{(f'{m:9.1f}' if m else '        -')} {(f'{sm90_us / m:8.2f}' if m else '       -')} "
              f"{(f'{f:8.1f}' if f else '       -')} {(f'{floor_us / f:8.2f}' if f else '       -')}")


if __name__ == "__main__":
    main()
