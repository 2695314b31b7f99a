"""The cpu backend's kernel paths as a pytest fixture: every path this machine
runs, forced in-process through SACOLOR_CPU_ISA (the extension reads it on every
call); the others skipped with the CPU flag they lack."""

from __future__ import annotations

import pytest

import sacolor
from sacolor.attention.backends.cpu import ISA_ENV_VAR, supported_paths

# Every path the extension has (test_cpu_paths checks this against it), so the
# parameters exist at collection time without loading the extension.
PATHS = ("generic", "avx2", "avx512", "avx512bf16", "amx")
# The paths that compute bfloat16 inputs with bfloat16 products.
BF16_PATHS = ("avx512bf16", "amx")


def skip_unless_runs(path: str) -> None:
    if "cpu" not in sacolor.available_backends():
        pytest.skip("the cpu backend is not built (pip install --no-build-isolation -e .)")
    missing = supported_paths()[path]
    if missing:
        pytest.skip(f"this CPU lacks {missing}, which the {path} kernels need")


@pytest.fixture(params=PATHS)
def cpu_path(request, monkeypatch) -> str:
    """The kernel path this test runs on, forced for its duration."""
    skip_unless_runs(request.param)
    monkeypatch.setenv(ISA_ENV_VAR, request.param)
    return request.param
