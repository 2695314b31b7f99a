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

from ..inputs import AttentionInputs


class ForwardResult(NamedTuple):
    y: Tensor  # (B, C, H, W), contiguous, x's dtype
    o: Tensor  # (B, N, v), accumulation dtype: what the backward needs
    lse: Tensor  # (B, N), accumulation dtype, log-sum-exp per query; only the same backend's backward reads it
    # (natural log for reference and triton; base 2 for cpu, so the backward sees the exact value)


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
    pools: ClassVar[frozenset[int]] = frozenset({1, 2})
    max_qk_channels: ClassVar[int | None] = None
    max_v_channels: ClassVar[int | None] = None
    supports_backward: ClassVar[bool] = True

    def unavailable_reason(self) -> str | None:
        """Why this install cannot run the backend at all, or None."""
        return None

    def supports_device(self, device: torch.device) -> bool:
        return device.type in self.devices

    def accepts_auto(self, inputs: AttentionInputs) -> bool:
        """Whether ``backend="auto"`` may pick this backend; naming it skips this check."""
        return True

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

    def backward(self, inputs: AttentionInputs, dy: Tensor, o: Tensor, lse: Tensor) -> Gradients:
        raise NotImplementedError


def _needs_grad(inputs: AttentionInputs) -> bool:
    return torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in inputs.named_tensors().values()
    )
