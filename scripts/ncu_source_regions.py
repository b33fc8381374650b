#!/usr/bin/env python3
"""Where a kernel's warps stall, by stretch of SASS, from an Nsight Compute source page.

Input: the CSV of `ncu -i REP --page source --csv --print-source sass` (gzip or plain), as
scripts/device-check.sh's ncu-full step and the session scripts write it. The warp-stall
samples of every instruction are summed over stretches of code that end at a barrier,
an mbarrier wait or arrive, a wgmma wait or an exit, and over classes of instructions by
execution count (in a warp-specialised kernel the roles' loop bodies run different counts:
e.g. 8 state warps x 16 chunks against 4 prep warps x 16 chunks per CTA), each with its
top stall reasons. Usage:
  ncu_source_regions.py SOURCE.csv[.gz] [--from LINE --to LINE] [--classes N]
"""

import argparse
import csv
import gzip
import io
import sys
from collections import Counter, defaultdict

ENDS = ("BAR.SYNC", "BAR.ARV", "SYNCS.", "WARPGROUP.DEPBAR", "DEPBAR", "EXIT")


def load(path):
    raw = gzip.open(path, "rt") if path.endswith(".gz") else open(path, newline="")
    with raw as f:
        rows = list(csv.reader(io.StringIO(f.read())))
    # Row 0 names the kernel; row 1 is the header.
    start = next(i for i, r in enumerate(rows) if r and r[0] == "Address")
    header, data = rows[start], rows[start + 1:]
    return header, [r for r in data if len(r) == len(header)]


def num(x):
    try:
        return float(x)
    except ValueError:
        return 0.0


def top(counter):
    return ", ".join(f"{k[6:]} {v:.0f}" for k, v in counter.most_common(3) if v > 0)


def summarise(header, data):
    """(classes, stretches): {execution count: [instructions, samples, Counter of reasons]} and
    [(first line, last line, samples, Counter of reasons, last instruction)], lines counted in data."""
    col = {h: i for i, h in enumerate(header)}
    stalls = [h for h in header if h.startswith("stall_") and "Not Issued" not in h]
    samples, executed = col["Warp Stall Sampling (All Samples)"], col["Instructions Executed"]
    classes = defaultdict(lambda: [0, 0.0, Counter()])
    stretches = []
    first, s, why = 0, 0.0, Counter()
    for i, r in enumerate(data):
        c = classes[int(num(r[executed]))]
        c[0] += 1
        c[1] += num(r[samples])
        s += num(r[samples])
        for st in stalls:
            c[2][st] += num(r[col[st]])
            why[st] += num(r[col[st]])
        text = r[col["Source"]].strip()
        if any(e in text for e in ENDS) or i == len(data) - 1:
            stretches.append((first, i, s, why, text))
            first, s, why = i + 1, 0.0, Counter()
    return dict(classes), stretches


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--from", dest="lo", type=int, default=0, help="first SASS line (0-based)")
    ap.add_argument("--to", dest="hi", type=int, default=None, help="line past the last")
    ap.add_argument("--classes", type=int, default=12, help="execution-count classes to list")
    args = ap.parse_args()
    header, data = load(args.csv)
    classes, stretches = summarise(header, data[args.lo:args.hi])
    total = sum(c[1] for c in classes.values()) or 1.0
    print(f"{sum(c[0] for c in classes.values())} instructions, {total:.0f} samples")
    print("\nby execution count (warps x iterations over the grid):")
    for n, (count, s, why) in sorted(classes.items(), key=lambda kv: -kv[1][1])[: args.classes]:
        print(f"  executed {n:>10d}: {count:5d} instructions, {s:7.0f} samples ({100 * s / total:4.1f}%): {top(why)}")
    print("\nby stretch (each ends at a barrier, wait, arrive or exit):")
    for first, last, s, why, text in stretches:
        if s > 0:
            print(f"  {args.lo + first:6d}-{args.lo + last:6d} {s:7.0f} ({100 * s / total:4.1f}%) "
                  f"[{top(why)}] ends: {text[:60]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
