"""scripts/traffic_model.py's floor is the benchmark's: for every prefill row of a committed
H100 run, its bytes and FLOP at that run's measured ceilings give the floor that gdn bench
reported (ms_graph times floor_fraction), and the sm90 design's bytes never fall below it."""

import json

import repo_scripts
from repo_scripts import ROOT


def test_floor_matches_the_benchmark():
    model = repo_scripts.load("traffic_model")
    run = json.load(open(ROOT / "bench" / "results" / "sm90-h100-2026-12-07-342e57c.json"))
    copy = run["ceilings"]["copy_gbps"] * 1e3  # bytes per us
    matmul = run["ceilings"]["matmul_gflops"] * 1e3  # FLOP per us
    measured = {r["name"]: r for r in run["rows"]}
    rows = json.load(open(ROOT / "bench" / "suite.json"))["prefill"]
    assert rows
    for row in rows:
        r = measured[row["name"]]
        reported = r["ms_graph"] * 1e3 * r["floor_fraction"]
        modelled = max(model.floor_bytes(row) / copy, model.flops(row) / matmul)
        assert abs(modelled / reported - 1) < 5e-3, (row["name"], modelled, reported)
        assert model.sm90_bytes(row)[0] >= model.floor_bytes(row)
