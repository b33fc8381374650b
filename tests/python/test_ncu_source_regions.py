"""scripts/ncu_source_regions.py: stretches end at barriers, waits, arrives and exits, every
sample lands in exactly one stretch and one execution-count class, and a committed H100
profile's prep loop sums to what the results file quotes."""

import csv

import repo_scripts
from repo_scripts import ROOT


def write_page(path, lines):
    header = ["Address", "Source", "Warp Stall Sampling (All Samples)", "Instructions Executed",
              "stall_barrier", "stall_wait", "stall_barrier (Not Issued)"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Kernel Name", "k"])
        w.writerow(header)
        for i, (text, samples, executed, barrier) in enumerate(lines):
            w.writerow([hex(i * 16), text, samples, executed, barrier, samples - barrier, barrier])


def test_stretches_and_classes(tmp_path):
    mod = repo_scripts.load("ncu_source_regions")
    page = tmp_path / "page.csv"
    write_page(page, [
        ("IMAD R1, R2, R3, RZ", 5, 64, 0),
        ("BAR.SYNC.DEFER_BLOCKING 0x2, 0x80", 1, 64, 1),
        ("HGMMA.64x64x16.F32.BF16 R56, gdesc[UR12], RZ", 7, 64, 0),
        ("WARPGROUP.DEPBAR.LE gsb0, 0x0", 2, 64, 0),
        ("FADD R4, R5, R6", 3, 128, 0),
        ("EXIT", 0, 8, 0),
    ])
    header, data = mod.load(str(page))
    assert len(data) == 6
    classes, stretches = mod.summarise(header, data)
    assert [(a, b, s) for a, b, s, _, _ in stretches] == [(0, 1, 6.0), (2, 3, 9.0), (4, 5, 3.0)]
    assert stretches[0][3]["stall_barrier"] == 1  # the Not Issued column is not counted twice
    assert {n: (c[0], c[1]) for n, c in classes.items()} == {64: (4, 15.0), 128: (1, 3.0), 8: (1, 0.0)}


def test_committed_profile():
    mod = repo_scripts.load("ncu_source_regions")
    header, data = mod.load(str(ROOT / "bench" / "results" / "h100-2026-12-07-6dde681-ncu-fused-32x1024-source.csv.gz"))
    classes, stretches = mod.summarise(header, data[5483:8520])
    assert sum(c[1] for c in classes.values()) == 28052
    products = [s for a, b, s, _, _ in stretches if (a, b) == (6220 - 5483, 6526 - 5483)]
    assert products == [10511.0]
