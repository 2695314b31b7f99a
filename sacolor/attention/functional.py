"""``self_attention()``: the functional form of the fused SAGAN attention."""

from __future__ import annotations

import torch
from torch import Tensor

from . import ops
from .backends import registry
from .inputs import AttentionInputs


def _is_identity(inputs: AttentionInputs) -> bool:
    """gamma == 0 and nothing needs a gradient: y == x, so skip the attention.

    Decided only where reading gamma is free and belongs to this call alone: a
    CPU gamma (reading a GPU one would wait for the device, serialise inference
    and break CUDA-graph capture; a meta one has no value), and not under
    torch.compile or torch.jit.trace, which would record the answer as a
    constant for every later gamma.
    """
    if inputs.gamma.device.type != "cpu" or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    tensors = [t for t in inputs.named_tensors().values() if t is not None]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    return bool(inputs.gamma.reshape(()) == 0)


def self_attention(
    x: Tensor,
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    gamma: Tensor | float,
    *,
    bq: Tensor | None = None,
    bk: Tensor | None = None,
    bv: Tensor | None = None,
    wo: Tensor | None = None,
    bo: Tensor | None = None,
    pool: int = 1,
    scale: float = 1.0,
    backend: str = "auto",
) -> Tensor:
    """SAGAN self-attention with fused projections, O(N) memory on fused backends.

    Args:
        x: (B, C, H, W) input feature map.
        wq, wk: (qk, C) query / key projections (1x1 conv weights also accepted).
        wv: (v, C) value projection.
        gamma: one-element residual gate (tensor or number); y = gamma * attention + x.
        bq, bk, bv: optional biases (qk,), (qk,), (v,).
        wo, bo: optional output projection (C, v) and bias (C,); without it v must equal C.
        pool: max-pool factor (1 or 2) applied to x before the key/value projections.
        scale: finite; multiplies q.k before the softmax (SAGAN uses 1.0).
        backend: "auto", or a name from ``sacolor.available_backends()``.
            The environment variable SACOLOR_BACKEND overrides "auto".

    Returns:
        y: (B, C, H, W), same dtype and memory layout as x (B = 0 gives an empty y, as convolutions do).

    Raises:
        ValueError / TypeError: bad shapes, dtypes, devices, an unknown backend or one
            that refuses these inputs (the message names the argument and the reason).
        NotImplementedError: no backend can run these inputs under "auto" (including
            where only ``reference`` could, and its N x M scores would be too large).

    There is no double backward (create_graph=True through the op raises a
    RuntimeError that says so; see ``sacolor.attention.ops.DOUBLE_BACKWARD_ERROR``).
    """
    inputs = AttentionInputs.create(x, wq, bq, wk, bk, wv, bv, wo, bo, gamma, pool, scale)
    chosen = registry.select(inputs, backend)
    if _is_identity(inputs):
        return x
    if inputs.batch == 0:  # nothing to attend over; the weights get zero gradients, as in nn.Conv2d
        weights = [t for name, t in inputs.named_tensors().items() if t is not None and name != "x"]
        return x + 0 * sum(t.sum() for t in weights)
    y, *_ = ops.self_attention(
        *inputs.named_tensors().values(), inputs.pool, float(inputs.scale), chosen.name
    )
    return y


def explain(
    x: Tensor,
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    gamma: Tensor | float = 0.0,
    *,
    bq: Tensor | None = None,
    bk: Tensor | None = None,
    bv: Tensor | None = None,
    wo: Tensor | None = None,
    bo: Tensor | None = None,
    pool: int = 1,
    scale: float = 1.0,
) -> str:
    """Which backend ``auto`` would pick for these inputs, and each other backend's refusals."""
    inputs = AttentionInputs.create(x, wq, bq, wk, bk, wv, bv, wo, bo, gamma, pool, scale)
    return registry.explain(inputs)
