"""The cpu backend never builds the N x N score matrix: peak memory of one
forward + backward stays far below it (measured in a fresh process)."""

import pytest

import sacolor
from benchmarks.memory import MIB, measure_in_subprocess


@pytest.mark.skipif("cpu" not in sacolor.available_backends(), reason="the cpu backend is not built")
def test_cpu_forward_backward_peak_memory_is_far_below_n_squared():
    # N = 128 * 128 = 16 384: one fp32 N x N matrix is 1 GiB, and the
    # reference backend builds several.
    result = measure_in_subprocess(32, 128, 128, "cpu")
    assert result["growth_bytes"] < 300 * MIB, result
