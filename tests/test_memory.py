"""The cpu backend never builds the N x N score matrix: peak memory of one
forward + backward stays far below it (measured in a fresh process by
benchmarks/memory.py, so earlier allocations of the test session do not count).
``backend="auto"`` is measured too: in fp16 it must pick the fused cpu kernel,
not fall back to the reference's N x N matrix."""

import pytest

import sacolor
from benchmarks.memory import measure_in_subprocess

MIB = 1 << 20


@pytest.mark.skipif("cpu" not in sacolor.available_backends(), reason="the cpu backend is not built")
@pytest.mark.parametrize("channels, dtype, backend", [(32, "float32", "cpu"), (64, "float16", "auto")])
def test_forward_backward_peak_memory_is_far_below_n_squared(channels: int, dtype: str, backend: str):
    # N = 128 * 128 = 16 384: one fp32 N x N matrix is 1 GiB, and the
    # reference backend grows by about 3-4 GiB here.
    result = measure_in_subprocess(channels, 128, 128, backend, dtype=dtype)
    assert result["growth_bytes"] < 300 * MIB, result
