"""What every backend declares and implements.

A backend declares what it can run (devices, dtypes, limits); ``refusals``
turns those declarations into human-readable reasons, and subclasses extend it
through ``super()``. ``unavailable_reason`` is evaluated lazily so importing
sacolor never imports Triton or probes a GPU.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from ..inputs import SUPPORTED_POOLS, AttentionInputs


class ForwardResult(NamedTuple):
    """The op's output and what its backward needs, the last three in the accumulation dtype."""

    y: Tensor  # (B, C, H, W), contiguous, x's dtype
    o: Tensor  # (B, N, v): the attention output before Wo, gamma and the residual
    # (B, N): log2 of sum_i exp2(q_j . k_i), the scores in base 2 (q holds log2 e).
    lse: Tensor
    # (B, N, qk): the queries the scores used, times scale * log2(e), before any
    # rounding to the input dtype; the backward rounds them again bit for bit.
    q: Tensor


class Gradients(NamedTuple):
    """Gradients in the op's argument order; absent optional inputs give numel-0 tensors."""

    dx: Tensor
    dwq: Tensor
    dbq: Tensor
    dwk: Tensor
    dbk: Tensor
    dwv: Tensor
    dbv: Tensor
    dwo: Tensor
    dbo: Tensor
    dgamma: Tensor




def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64 (for gradcheck); everything else accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class Backend:
    name: ClassVar[str]
    # Higher wins in backend="auto"; ``reference`` ranks last.
    priority: ClassVar[int]
    devices: ClassVar[frozenset[str]]
    dtypes: ClassVar[frozenset[torch.dtype]]
    pools: ClassVar[frozenset[int]] = frozenset(SUPPORTED_POOLS)
    max_qk_channels: ClassVar[int | None] = None
    max_v_channels: ClassVar[int | None] = None
    supports_backward: ClassVar[bool] = True

    def unavailable_reason(self) -> str | None:
        """Why this install cannot run the backend at all, or None."""
        return None

    def supports_device(self, device: torch.device) -> bool:
        return device.type in self.devices

    def auto_refusals(self, inputs: AttentionInputs) -> list[str]:
        """Reasons ``backend="auto"`` passes this backend over although it could run
        ``inputs``; naming the backend skips them. Empty when auto may pick it."""
        return []

    def refusals(self, inputs: AttentionInputs) -> list[str]:
        """Reasons this backend cannot run ``inputs``; empty when it can."""
        reasons = []
        unavailable = self.unavailable_reason()
        if unavailable:
            reasons.append(unavailable)
        device = inputs.x.device
        if not self.supports_device(device):
            reasons.append(f"device {device.type}; supports {', '.join(sorted(self.devices))}")
        if inputs.x.dtype not in self.dtypes:
            names = ", ".join(sorted(str(d).removeprefix("torch.") for d in self.dtypes))
            reasons.append(f"dtype {str(inputs.x.dtype).removeprefix('torch.')}; supports {names}")
        if inputs.pool not in self.pools:
            reasons.append(f"pool {inputs.pool}; supports {sorted(self.pools)}")
        if self.max_qk_channels is not None and inputs.qk_channels > self.max_qk_channels:
            reasons.append(f"qk_channels {inputs.qk_channels} > {self.max_qk_channels}")
        if self.max_v_channels is not None and inputs.v_channels > self.max_v_channels:
            reasons.append(f"v_channels {inputs.v_channels} > {self.max_v_channels}")
        if not self.supports_backward and _needs_grad(inputs):
            reasons.append("no backward, and an input requires grad")
        return reasons

    def forward(self, inputs: AttentionInputs) -> ForwardResult:
        raise NotImplementedError

    def backward(self, inputs: AttentionInputs, dy: Tensor, o: Tensor, lse: Tensor, q: Tensor) -> Gradients:
        """Gradients of every input from dy (B, C, H, W) and what the forward saved
        (``ForwardResult``'s o, lse and q)."""
        raise NotImplementedError


def pack_gradients(inputs: AttentionInputs, grads: dict[str, Tensor]) -> Gradients:
    """Gradients in op order, each in its input's dtype; absent inputs get empty
    tensors (the op's return types are fixed)."""
    originals = inputs.named_tensors()
    return Gradients(*(
        grads[name].to(t.dtype) if t is not None else inputs.x.new_empty(0)
        for name, t in originals.items()
    ))


def _needs_grad(inputs: AttentionInputs) -> bool:
    return torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in inputs.named_tensors().values()
    )
