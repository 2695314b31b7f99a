"""The one chain rule around the attention core, shared by every fused backend.

A fused backend computes the attention core in its own kernels: in the
forward o = softmax(s) v with base-2 scores s_ji = q_j . k_i (q already times
scale * log2 e), and in the backward dq, dk, dv from dO. Everything around the
core, the 1x1 projections, the BigGAN-order max-pool, Wo, gamma and the
residual, is differentiated here, once. The reference backend does not use
this: its backward is autograd of its own forward, so it stays an
independent oracle for both.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..inputs import AttentionInputs
from .base import Backend, Gradients, accumulation_dtype, pack_gradients
from .projection import max_pool_positions, project, unpool_positions


class KeysValues(NamedTuple):
    k: Tensor  # (B, M, qk)
    v: Tensor  # (B, M, v)
    # The max-pool's argmax over the stacked (B, qk + v) channels; None when pool == 1.
    pool_indices: Tensor | None


def keys_values(inputs: AttentionInputs, dtype: torch.dtype) -> KeysValues:
    """k and v computed in ``dtype`` from one GEMM over x, then max-pooled (BigGAN order)."""
    x = inputs.x.to(dtype)
    w = torch.cat([inputs.wk, inputs.wv]).to(dtype)
    b = None
    if inputs.bk is not None or inputs.bv is not None:
        b = torch.cat([
            inputs.bk if inputs.bk is not None else inputs.wk.new_zeros(inputs.qk_channels),
            inputs.bv if inputs.bv is not None else inputs.wv.new_zeros(inputs.v_channels),
        ]).to(dtype)
    kv = project(w, b, x.flatten(2))  # (B, N, qk + v)
    kv, indices = max_pool_positions(kv, inputs.pool, *x.shape[2:])
    k, v = kv.split([inputs.qk_channels, inputs.v_channels], dim=-1)
    return KeysValues(k, v, indices)


class FusedBackend(Backend):
    """A backend whose kernels compute the attention core; its backward is ``chain_rule``."""

    def keys_values(self, inputs: AttentionInputs) -> KeysValues:
        """The keys and values the forward's kernel read, bit for bit."""
        raise NotImplementedError

    def attention_backward(
        self, q: Tensor, k: Tensor, v: Tensor, d_o: Tensor, o: Tensor, lse: Tensor, scale: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The core's gradients, in the accumulation dtype.

        Args:
            q: (B, N, qk) the forward's saved queries (times scale * log2 e).
            k: (B, M, qk), v: (B, M, v) from ``keys_values``.
            d_o: (B, N, v) gradient of o; o: (B, N, v); lse: (B, N) base 2.
            scale: the forward's score scale.

        Returns:
            dq (B, N, qk) w.r.t. the unscaled queries Wq x + bq, dk (B, M, qk), dv (B, M, v).
        """
        raise NotImplementedError

    def backward(self, inputs: AttentionInputs, dy: Tensor, o: Tensor, lse: Tensor, q: Tensor) -> Gradients:
        return chain_rule(self, inputs, dy, o, lse, q)


def chain_rule(
    core: FusedBackend, inputs: AttentionInputs, dy: Tensor, o: Tensor, lse: Tensor, q: Tensor
) -> Gradients:
    """Every input's gradient from dy (B, C, H, W) and the forward's o, lse and q
    (``ForwardResult``), with ``core`` computing dq, dk, dv."""
    acc = accumulation_dtype(inputs.x.dtype)
    t = {name: None if v is None else v.to(acc) for name, v in inputs.named_tensors().items()}
    x = t["x"]
    height, width = x.shape[2:]
    qk, v_channels = inputs.qk_channels, inputs.v_channels

    # Through the epilogue: y = gamma * (Wo o + bo) + x. dy is transposed once,
    # here: an elementwise op between a transposed view and a contiguous
    # tensor ran 10x slower than the copy (9 ms at 128x128, C = 64, on CPU).
    dy_rows = dy.to(acc).flatten(2).transpose(1, 2).contiguous()  # (B, N, C)
    out = o if t["wo"] is None else project(t["wo"], t["bo"], o.transpose(1, 2))
    grads = {"gamma": torch.dot(dy_rows.flatten(), out.flatten()).reshape(inputs.gamma.shape)}
    d_o = t["gamma"].reshape(()) * dy_rows
    if t["wo"] is not None:
        grads["wo"] = torch.einsum("bnc,bnv->cv", d_o, o)
        if t["bo"] is not None:
            grads["bo"] = d_o.sum((0, 1))
        d_o = d_o @ t["wo"]

    kv = core.keys_values(inputs)
    dq, dk, dv = core.attention_backward(q, kv.k, kv.v, d_o.contiguous(), o, lse, inputs.scale)

    # Through the pool, then the stacked projection [q k v] = [Wq Wk Wv] x + [bq bk bv].
    dkv = unpool_positions(torch.cat([dk, dv], dim=-1), kv.pool_indices, inputs.pool, height, width)
    d_proj = torch.cat([dq, dkv], dim=-1)  # (B, N, 2 qk + v)
    sizes = [qk, qk, v_channels]
    dw = torch.einsum("bno,bcn->oc", d_proj, x.flatten(2))
    grads.update(zip(("wq", "wk", "wv"), dw.split(sizes)))
    for name, db in zip(("bq", "bk", "bv"), d_proj.sum((0, 1)).split(sizes)):
        if t[name] is not None:
            grads[name] = db
    if t["bk"] is not None:
        # bk adds q.bk to every score of a query's row (the max-pool commutes with
        # it), which the softmax ignores: its gradient is exactly zero, where the
        # sum of dk would only return rounding noise.
        grads["bk"] = torch.zeros_like(t["bk"])
    w_all = torch.cat([t["wq"], t["wk"], t["wv"]])
    # dx as (B, C, N) straight from the GEMM (its operands transposed, not its result).
    grads["x"] = (w_all.t() @ d_proj.transpose(1, 2)).reshape(x.shape).add_(dy.to(acc))
    return pack_gradients(inputs, grads)
