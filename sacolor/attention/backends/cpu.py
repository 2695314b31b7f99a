"""The fused C++ CPU kernel (csrc/cpu/): O(N) memory, OpenMP; fp32, bf16 and fp16
accumulate in fp32 (fp64 exists for gradcheck)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..inputs import AttentionInputs
from .base import ForwardResult, accumulation_dtype
from .chain import FusedBackend, KeysValues, keys_values


def _load_extension() -> str | None:
    """Imports sacolor._C once; returns why it failed, or None."""
    try:
        from ... import _C  # noqa: F401  (registers torch.ops.sacolor_C)
    except ImportError as err:
        return (
            f"the compiled extension sacolor._C did not import ({err}); "
            "reinstall with `pip install --no-build-isolation -e .`"
        )
    return None


class CpuBackend(FusedBackend):
    name = "cpu"
    priority = 10
    devices = frozenset({"cpu"})
    dtypes = frozenset({torch.float64, torch.float32, torch.bfloat16, torch.float16})

    def unavailable_reason(self) -> str | None:
        return _load_extension()

    def keys_values(self, inputs: AttentionInputs) -> KeysValues:
        # The kernel projects in the accumulation dtype (its stacked GEMM rounds
        # like this one up to float32 summation order).
        return keys_values(inputs, accumulation_dtype(inputs.x.dtype))

    def forward(self, inputs: AttentionInputs) -> ForwardResult:
        y, o, lse, q = torch.ops.sacolor_C.self_attention_fwd(
            *inputs.named_tensors().values(), inputs.pool, float(inputs.scale)
        )
        return ForwardResult(y, o, lse, q)

    def attention_backward(
        self, q: Tensor, k: Tensor, v: Tensor, d_o: Tensor, o: Tensor, lse: Tensor, scale: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        return torch.ops.sacolor_C.attention_bwd(
            q, k.contiguous(), v.contiguous(), d_o, o, lse, float(scale)
        )
