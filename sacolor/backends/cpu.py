"""The fused C++ CPU kernel (csrc/cpu/): O(N) memory, OpenMP, fp32/bf16."""

from __future__ import annotations

import torch

from .extension import ExtensionBackend


class CpuBackend(ExtensionBackend):
    name = "cpu"
    priority = 10
    dispatch_key = "CPU"
    devices = frozenset({"cpu"})
    # float64 exists for gradcheck; bf16 accumulates in fp32.
    dtypes = frozenset({torch.float64, torch.float32, torch.bfloat16})
