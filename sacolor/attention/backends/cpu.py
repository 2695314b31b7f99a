"""The fused C++ CPU kernel (csrc/cpu/): O(N) memory, OpenMP, its instruction set
chosen at run time (SACOLOR_CPU_ISA forces one: generic, avx2, avx512,
avx512bf16, amx). float32 and float16 run float32 tiles (float16 keeps its
11-bit significand that way; bfloat16 tiles would drop 3 bits, and AVX512-FP16
accumulates in float16); bfloat16 runs bfloat16 products with float32 sums on
AMX tiles or vdpbf16ps where the CPU has them, float32 tiles elsewhere; float64
(for gradcheck) runs the portable tiles."""

from __future__ import annotations

import os

import torch
from torch import Tensor

from ..inputs import AttentionInputs
from .base import ForwardResult, accumulation_dtype
from .chain import FusedBackend, KeysValues, keys_values

ISA_ENV_VAR = "SACOLOR_CPU_ISA"
# The kernel paths that compute bfloat16 inputs natively (bfloat16 operands, float32 sums).
BF16_PATHS = frozenset({"avx512bf16", "amx"})


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


def _require_extension() -> None:
    reason = _load_extension()
    if reason:
        raise RuntimeError(reason)


def kernel_path(dtype: torch.dtype = torch.float32) -> str:
    """The tile kernels the cpu backend runs now for inputs of ``dtype`` ("generic",
    "avx2", "avx512", "avx512bf16" or "amx"), after SACOLOR_CPU_ISA.

    Raises:
        ValueError: SACOLOR_CPU_ISA names an unknown path or one this CPU cannot run.
        RuntimeError: the extension is not built.
    """
    _require_extension()
    return torch.ops.sacolor_C.cpu_isa(dtype)


def supported_paths() -> dict[str, str]:
    """Every kernel path, each with "" if this machine runs it or the CPU flag it lacks."""
    _require_extension()
    return {name: torch.ops.sacolor_C.cpu_isa_missing(name) for name in torch.ops.sacolor_C.cpu_isa_names()}


class CpuBackend(FusedBackend):
    name = "cpu"
    priority = 10
    devices = frozenset({"cpu"})
    dtypes = frozenset({torch.float64, torch.float32, torch.bfloat16, torch.float16})

    def unavailable_reason(self) -> str | None:
        return _load_extension()

    def code_path(self, inputs: AttentionInputs) -> str | None:
        forced = os.environ.get(ISA_ENV_VAR)
        return f"{kernel_path(inputs.x.dtype)} kernels" + (f", from {ISA_ENV_VAR}={forced}" if forced else "")

    def keys_values(self, inputs: AttentionInputs) -> KeysValues:
        # The kernel projects in the accumulation dtype (its stacked GEMM rounds
        # like this one up to float32 summation order); the bfloat16 tiles then
        # round keys and values to bfloat16, and so does this.
        kv = keys_values(inputs, accumulation_dtype(inputs.x.dtype))
        if inputs.x.dtype == torch.bfloat16 and kernel_path(torch.bfloat16) in BF16_PATHS:
            return KeysValues(kv.k.to(torch.bfloat16), kv.v.to(torch.bfloat16), kv.pool_indices)
        return kv

    def forward(self, inputs: AttentionInputs) -> ForwardResult:
        y, o, lse, q = torch.ops.sacolor_C.self_attention_fwd(
            *inputs.named_tensors().values(), inputs.pool, float(inputs.scale)
        )
        return ForwardResult(y, o, lse, q)

    def attention_backward(
        self, q: Tensor, k: Tensor, v: Tensor, d_o: Tensor, o: Tensor, lse: Tensor, scale: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        # bfloat16 k and v (keys_values) select the bfloat16 tiles.
        return torch.ops.sacolor_C.attention_bwd(
            q, k.contiguous(), v.contiguous(), d_o, o, lse, float(scale)
        )
