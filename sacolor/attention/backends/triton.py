"""The fused Triton kernels of ``kernels/`` (installed as ``sacolor.kernels``).

Runs on CUDA tensors. With TRITON_INTERPRET=1 the same kernels run on CPU
tensors through Triton's interpreter; that path is for testing, so
``backend="auto"`` never picks it (``auto_refusals``): only an explicit
``backend="triton"`` does.

Around the kernels, in PyTorch: the key/value projection GEMM (fp32
accumulation, rounded once to the input dtype) and the max-pool after it
(BigGAN order), and in the backward delta = rowsum(dO * O); the rest of the
backward is the shared chain rule (``chain.py``).
"""

from __future__ import annotations

import contextlib
import importlib
from types import ModuleType

import torch
from torch import Tensor

from ...kernels import INTERPRET_ENV_VAR, interpreting
from ..inputs import AttentionInputs
from .base import ForwardResult
from .chain import FusedBackend, KeysValues, keys_values

ROW_ALIGNMENT = 16  # elements
# The kernels index within one image with 32-bit offsets (the batch offset is
# 64-bit): every per-image tensor must stay below 2**31 elements.
MAX_IMAGE_ELEMENTS = 2**31 - 1


def _kernels(name: str) -> ModuleType:
    """A kernel module, imported on first use: importing it imports Triton."""
    return importlib.import_module(f"sacolor.kernels.{name}")


def _on_device_of(t: Tensor) -> contextlib.AbstractContextManager:
    """Triton launches on the current CUDA device: make it ``t``'s (e.g. cuda:1)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _aligned_rows(t: Tensor) -> Tensor:
    """``t`` (..., n) with each row starting a multiple of 16 elements apart.

    Same values (a view into a zero-padded buffer when n is not a multiple of
    16): Triton then specialises the row stride as divisible by 16 and the
    kernels' main-loop loads become 16-byte vectors pipelined with cp.async.
    """
    n = t.shape[-1]
    if n % ROW_ALIGNMENT == 0 and t.is_contiguous():
        return t
    padded = t.new_zeros(*t.shape[:-1], -(-n // ROW_ALIGNMENT) * ROW_ALIGNMENT)
    padded[..., :n] = t
    return padded[..., :n]


class TritonBackend(FusedBackend):
    name = "triton"
    priority = 30
    devices = frozenset({"cuda"})
    dtypes = frozenset({torch.float32, torch.bfloat16, torch.float16})
    # The widest query tile the compile tests check for spills (qk = C / 8 at C = 512);
    # v has no limit: values wider than one slice are split across programs.
    max_qk_channels = 64

    def unavailable_reason(self) -> str | None:
        try:
            import triton  # noqa: F401
        except ImportError as err:
            return f"triton did not import ({err}); install it with `pip install triton`"
        if not interpreting() and not torch.cuda.is_available():
            return f"no CUDA device ({INTERPRET_ENV_VAR}=1 runs the kernels on the CPU, for tests)"
        return None

    def supports_device(self, device: torch.device) -> bool:
        return device.type == "cuda" or (device.type == "cpu" and interpreting())

    def refusals(self, inputs: AttentionInputs) -> list[str]:
        reasons = super().refusals(inputs)
        widest = max(inputs.channels, inputs.qk_channels, inputs.v_channels)
        if widest * inputs.num_queries > MAX_IMAGE_ELEMENTS:
            reasons.append(f"{widest} channels x {inputs.num_queries} positions per image >= 2**31 elements")
        return reasons

    def auto_refusals(self, inputs: AttentionInputs) -> list[str]:
        if inputs.x.device.type == "cuda":
            return []
        return ["auto does not pick it on CPU tensors: the Triton interpreter is a test harness"]

    def keys_values(self, inputs: AttentionInputs) -> KeysValues:
        # Projected with fp32 accumulation and bias, then rounded once to the
        # input dtype, as the kernel rounds q: a 16-bit GEMM followed by a 16-bit
        # bias add rounds twice, and with peaky scores that alone tripled the
        # fp16 gradient error (tests/test_triton_interpreter.py, peaky cases).
        # 16-bit values are exact in TF32, so allow_tf32 changes nothing here.
        k, v, indices = keys_values(inputs, torch.float32)
        dtype = inputs.x.dtype
        return KeysValues(_aligned_rows(k.to(dtype)), _aligned_rows(v.to(dtype)), indices)

    def forward(self, inputs: AttentionInputs) -> ForwardResult:
        x = inputs.x
        batch, channels, height, width = x.shape
        kv = self.keys_values(inputs)
        with _on_device_of(x):
            y, o, lse, q = _kernels("attention_fwd").launch_attention_fwd(
                x.view(batch, channels, height * width), inputs.wq, inputs.bq, kv.k, kv.v,
                inputs.wo, inputs.bo, inputs.gamma, float(inputs.scale),
            )
        return ForwardResult(y.view(x.shape), o, lse, q)

    def attention_backward(
        self, q: Tensor, k: Tensor, v: Tensor, d_o: Tensor, o: Tensor, lse: Tensor, scale: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        d_o = d_o.to(k.dtype)
        # delta from the dO the kernels read: each row of dS = P (dO v^T - delta)
        # then sums to zero up to P's rounding, so dq = dS k cancels a common
        # offset of the keys instead of amplifying dO's rounding by it.
        delta = (d_o.float() * o).sum(-1)
        with _on_device_of(q):
            # q.to(k.dtype) rounds the saved fp32 queries exactly as the forward kernel did.
            return _kernels("attention_bwd").launch_attention_bwd(
                _aligned_rows(q.to(k.dtype)), k, v, _aligned_rows(d_o), lse, delta, float(scale)
            )
