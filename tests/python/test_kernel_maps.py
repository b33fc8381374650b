"""The lane-level emulations of CUDA kernels' warp mappings
(scripts/check_decode_warp.py, check_prep_fragments.py, check_combine_tiles.py) run as tests:
they need NumPy only, so CPU-only CI keeps them in step with their checks."""

import pathlib
import subprocess
import sys

import pytest

SCRIPTS = pathlib.Path(__file__).resolve().parents[2] / "scripts"


@pytest.mark.parametrize("script", ["check_decode_warp.py", "check_prep_fragments.py", "check_combine_tiles.py"])
def test_kernel_map_emulation(script):
    run = subprocess.run([sys.executable, str(SCRIPTS / script)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
