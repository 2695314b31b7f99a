"""``sacolor::self_attention`` and its backward, registered with torch.library.

The only module that talks to torch.library. The backend name is an op
argument so the backward runs on the backend that ran the forward, and so
``torch.compile`` sees one opaque op (no graph break) whatever the backend.
``sacolor.attention.functional`` validates its inputs and picks the backend; the op is
also reachable directly as ``torch.ops.sacolor.self_attention``, so it checks
shapes itself too (metadata only: no device sync).

There is no double backward: ``self_attention_backward`` is not itself
differentiable, and differentiating it raises ``DOUBLE_BACKWARD_ERROR``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .backends import registry
from .backends.base import accumulation_dtype
from .inputs import AttentionInputs

DOUBLE_BACKWARD_ERROR = (
    "sacolor self-attention has no double backward: its backward is not differentiable, so "
    "create_graph=True through it (an R1 or gradient penalty, or double backprop) cannot work. "
    "Compute the penalty through a discriminator without sacolor.SelfAttention, or through one "
    "whose attention is plain PyTorch (e.g. 1x1 convs with torch.softmax) for that pass."
)


def _in_layout_of(like: Tensor, t: Tensor) -> Tensor:
    """``t`` with the strides ``torch.empty_like(like)`` would have (e.g. channels_last)."""
    out = torch.empty_like(like, dtype=t.dtype)
    if out.stride() == t.stride():
        return t
    return out.copy_(t)


def _inputs(x, wq, bq, wk, bk, wv, bv, wo, bo, gamma, pool, scale) -> AttentionInputs:
    """The validated inputs; backends get contiguous tensors (kernels index them with plain strides)."""
    AttentionInputs(x, wq, bq, wk, bk, wv, bv, wo, bo, gamma, pool, scale).validate()

    def c(t):
        return None if t is None else t.contiguous()

    return AttentionInputs(
        c(x), c(wq), c(bq), c(wk), c(bk), c(wv), c(bv), c(wo), c(bo), c(gamma), pool, scale
    )


@torch.library.custom_op("sacolor::self_attention", mutates_args=())
def self_attention(
    x: Tensor,
    wq: Tensor,
    bq: Tensor | None,
    wk: Tensor,
    bk: Tensor | None,
    wv: Tensor,
    bv: Tensor | None,
    wo: Tensor | None,
    bo: Tensor | None,
    gamma: Tensor,
    pool: int,
    scale: float,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Returns (y in x's layout, o (B, N, v), lse (B, N), q (B, N, qk)); the last
    three feed the backward (``sacolor.attention.backends.ForwardResult``)."""
    inputs = _inputs(x, wq, bq, wk, bk, wv, bv, wo, bo, gamma, pool, scale)
    y, o, lse, q = registry.get(backend).forward(inputs)
    return _in_layout_of(x, y), o, lse, q


@self_attention.register_fake
def _(x, wq, bq, wk, bk, wv, bv, wo, bo, gamma, pool, scale, backend):
    inputs = _inputs(x, wq, bq, wk, bk, wv, bv, wo, bo, gamma, pool, scale)
    acc = accumulation_dtype(x.dtype)
    batch, n = inputs.batch, inputs.num_queries
    return (
        torch.empty_like(x),
        x.new_empty((batch, n, inputs.v_channels), dtype=acc),
        x.new_empty((batch, n), dtype=acc),
        x.new_empty((batch, n, inputs.qk_channels), dtype=acc),
    )


@torch.library.custom_op("sacolor::self_attention_backward", mutates_args=())
def self_attention_backward(
    dy: Tensor,
    x: Tensor,
    wq: Tensor,
    bq: Tensor | None,
    wk: Tensor,
    bk: Tensor | None,
    wv: Tensor,
    bv: Tensor | None,
    wo: Tensor | None,
    bo: Tensor | None,
    gamma: Tensor,
    o: Tensor,
    lse: Tensor,
    q: Tensor,
    pool: int,
    scale: float,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients for (x, wq, bq, wk, bk, wv, bv, wo, bo, gamma); numel-0 for absent inputs."""
    inputs = _inputs(x, wq, bq, wk, bk, wv, bv, wo, bo, gamma, pool, scale)
    grads = registry.get(backend).backward(
        inputs, dy.contiguous(), o.contiguous(), lse.contiguous(), q.contiguous()
    )
    dx, *rest = grads
    # Outputs of a custom op may alias neither its inputs nor each other (the
    # weight gradients can be slices of one stacked gradient): fresh copies of
    # the small ones; dx is a fresh sum.
    return (_in_layout_of(x, dx), *(g.clone(memory_format=torch.contiguous_format) for g in rest))


@self_attention_backward.register_fake
def _(dy, x, wq, bq, wk, bk, wv, bv, wo, bo, gamma, o, lse, q, pool, scale, backend):
    def like(t):
        return x.new_empty(0) if t is None else torch.empty(t.shape, dtype=t.dtype, device=t.device)

    return (torch.empty_like(x), *(like(t) for t in (wq, bq, wk, bk, wv, bv, wo, bo, gamma)))


def _setup_context(ctx, inputs, output):
    *tensors, pool, scale, backend = inputs
    _, o, lse, q = output
    ctx.save_for_backward(*tensors, o, lse, q)
    ctx.pool, ctx.scale, ctx.backend = pool, scale, backend


def _backward(ctx, dy, _do, _dlse, _dq):
    *tensors, o, lse, q = ctx.saved_tensors
    grads = self_attention_backward(dy, *tensors, o, lse, q, ctx.pool, ctx.scale, ctx.backend)
    wanted = ctx.needs_input_grad
    return (
        *(g if (t is not None and wanted[i]) else None for i, (t, g) in enumerate(zip(tensors, grads))),
        None,
        None,
        None,
    )


self_attention.register_autograd(_backward, setup_context=_setup_context)


def _setup_double_backward(ctx, inputs, output) -> None:
    pass


def _double_backward(ctx, *grads):
    raise RuntimeError(DOUBLE_BACKWARD_ERROR)


self_attention_backward.register_autograd(_double_backward, setup_context=_setup_double_backward)
