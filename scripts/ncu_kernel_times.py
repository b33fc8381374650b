#!/usr/bin/env python3
"""Median duration per kernel from an Nsight Compute CSV (--csv --print-units
base --metrics gpu__time_duration.sum): one line per kernel, in the order the
kernels first ran, with the count of launches seen, and the sum of the medians."""
import csv
import statistics
import sys


def main(path):
    times = {}
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]
    for r in csv.DictReader(lines):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = r["Kernel Name"].split("(")[0]
        times.setdefault(name, []).append(float(r["Metric Value"].replace(",", "")))
    total = 0.0
    for name, t in times.items():
        med = statistics.median(t) / 1e3  # ns -> us
        total += med
        print(f"  {med:9.2f} us  x{len(t):<4d} {name[:90]}")
    print(f"  {total:9.2f} us  sum of medians")


if __name__ == "__main__":
    main(sys.argv[1])
