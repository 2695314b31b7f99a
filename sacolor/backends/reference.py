"""Plain PyTorch attention that materialises the N x M score matrix.

The oracle for every test; it never refuses and ranks last, so ``auto`` only
picks it when nothing else can run.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..inputs import AttentionInputs
from .base import Backend, ForwardResult, Gradients, accumulation_dtype
from .projection import max_pool_positions, project, unpool_positions


class _Forward(NamedTuple):
    """Every intermediate of the forward, in the accumulation dtype."""

    t: dict[str, Tensor | None]  # the inputs, cast
    k_indices: Tensor | None  # max-pool argmax of the full-resolution keys (pool > 1)
    v_indices: Tensor | None
    q: Tensor  # (B, N, qk)
    k: Tensor  # (B, M, qk)
    v: Tensor  # (B, M, v)
    p: Tensor  # (B, N, M) softmax weights: the O(N^2) part
    lse: Tensor  # (B, N)
    o: Tensor  # (B, N, v)
    out: Tensor  # (B, N, C): o after the optional output projection
    y: Tensor  # (B, C, H, W)


def _forward(inputs: AttentionInputs) -> _Forward:
    acc = accumulation_dtype(inputs.x.dtype)
    t = {k: (None if v is None else v.to(acc)) for k, v in inputs.named_tensors().items()}
    x = t["x"]
    batch, channels, height, width = x.shape
    q = project(t["wq"], t["bq"], x.flatten(2))
    # Keys and values: project at full resolution, then max-pool (BigGAN order).
    k, k_indices = max_pool_positions(project(t["wk"], t["bk"], x.flatten(2)), inputs.pool, height, width)
    v, v_indices = max_pool_positions(project(t["wv"], t["bv"], x.flatten(2)), inputs.pool, height, width)
    scores = inputs.scale * (q @ k.transpose(1, 2))
    lse = torch.logsumexp(scores, dim=-1)
    p = torch.exp(scores - lse.unsqueeze(-1))
    o = p @ v
    out = o if t["wo"] is None else project(t["wo"], t["bo"], o.transpose(1, 2))
    y = t["gamma"].reshape(()) * out.transpose(1, 2).reshape(batch, channels, height, width) + x
    return _Forward(t, k_indices, v_indices, q, k, v, p, lse, o, out, y)


def reference_forward(inputs: AttentionInputs) -> ForwardResult:
    f = _forward(inputs)
    return ForwardResult(f.y.to(inputs.x.dtype).contiguous(), f.o, f.lse)


def reference_backward(inputs: AttentionInputs, dy: Tensor) -> Gradients:
    """The analytic backward, written out step by step (flash-attention's notation)."""
    f = _forward(inputs)
    t = f.t
    x = t["x"]
    dy_t = dy.to(x.dtype).flatten(2).transpose(1, 2)  # (B, N, C)
    grads = {"gamma": (dy_t * f.out).sum().reshape(inputs.gamma.shape)}
    d_out = t["gamma"].reshape(()) * dy_t
    if t["wo"] is not None:
        grads["wo"] = torch.einsum("bnc,bnv->cv", d_out, f.o)
        if t["bo"] is not None:
            grads["bo"] = d_out.sum((0, 1))
        d_o = d_out @ t["wo"]  # (B, N, v)
    else:
        d_o = d_out
    dv = f.p.transpose(1, 2) @ d_o  # (B, M, v)
    dp = d_o @ f.v.transpose(1, 2)  # (B, N, M)
    delta = (d_o * f.o).sum(-1, keepdim=True)  # rowsum(dO * O)
    ds = f.p * (dp - delta)
    dq = inputs.scale * (ds @ f.k)  # (B, N, qk)
    dk = inputs.scale * (ds.transpose(1, 2) @ f.q)  # (B, M, qk)
    # Through the max-pool: each pooled gradient goes back to its argmax position.
    height, width = x.shape[2:]
    dk = unpool_positions(dk, f.k_indices, inputs.pool, height, width)
    dv = unpool_positions(dv, f.v_indices, inputs.pool, height, width)
    dx = dy.to(x.dtype)
    for name, d in (("q", dq), ("k", dk), ("v", dv)):  # d: (B, N, out), full resolution
        grads[f"w{name}"] = torch.einsum("bno,bcn->oc", d, x.flatten(2))
        if t[f"b{name}"] is not None:
            grads[f"b{name}"] = d.sum((0, 1))
        dx = dx + torch.einsum("bno,oc->bcn", d, t[f"w{name}"]).reshape(x.shape)
    grads["x"] = dx
    originals = inputs.named_tensors()
    return pack_gradients(inputs, {k: g.to(originals[k].dtype) for k, g in grads.items()})


def pack_gradients(inputs: AttentionInputs, grads: dict[str, Tensor]) -> Gradients:
    """Gradients in op order; absent inputs get empty tensors (fixed op return types)."""
    return Gradients(
        *(grads[name] if name in grads else inputs.x.new_empty(0) for name in inputs.named_tensors())
    )


class ReferenceBackend(Backend):
    name = "reference"
    priority = 0
    devices = frozenset({"cpu", "cuda", "mps", "xpu"})
    dtypes = frozenset({torch.float64, torch.float32, torch.bfloat16, torch.float16})

    def supports_device(self, device: torch.device) -> bool:
        return True

    def forward(self, inputs: AttentionInputs) -> ForwardResult:
        return reference_forward(inputs)

    def backward(self, inputs: AttentionInputs, dy: Tensor, o: Tensor, lse: Tensor) -> Gradients:
        return reference_backward(inputs, dy)
