"""The cpu backend never builds the N x N score matrix: peak memory of one
forward + backward stays far below it (measured in a fresh process by
benchmarks/memory.py, so earlier allocations of the test session do not count)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import sacolor

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


@pytest.mark.skipif("cpu" not in sacolor.available_backends(), reason="the cpu backend is not built")
def test_cpu_forward_backward_peak_memory_is_far_below_n_squared():
    # N = 128 * 128 = 16 384: one fp32 N x N matrix is 1 GiB, and the
    # reference backend grows by about 4 GiB here.
    command = [sys.executable, "-m", "benchmarks.memory", "--child", "--channels", "32",
               "--height", "128", "--width", "128", "--backend", "cpu"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["growth_bytes"] < 300 * MIB, result
