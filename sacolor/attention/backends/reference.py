"""Plain PyTorch attention that materialises the N x M score matrix.

The oracle for every test: it runs anywhere and on anything, and its backward
is autograd of its forward (``torch.func.vjp``), independent of the chain rule
the fused backends share (``chain.py``). It ranks last, and ``auto`` passes it
over where its score matrix would exceed ``AUTO_SCORE_BYTES``: it only runs
at that size when named.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
from torch import Tensor

from ...kernels import LOG2E
from ..inputs import AttentionInputs
from .base import Backend, ForwardResult, Gradients, accumulation_dtype, pack_gradients
from .projection import max_pool_positions, project

# The largest B x N x M score matrix ``auto`` lets the reference allocate; it
# holds several of them at once. 256 MiB is N = M = 4 096 for 4 images in fp32.
AUTO_SCORE_BYTES = 256 * 2**20


class _Forward(NamedTuple):
    """The forward's results in the accumulation dtype."""

    q: Tensor  # (B, N, qk), times scale * log2(e)
    p: Tensor  # (B, N, M) softmax weights: the O(N^2) part
    lse: Tensor  # (B, N), base 2
    o: Tensor  # (B, N, v)
    y: Tensor  # (B, C, H, W)


def _forward(inputs: AttentionInputs) -> _Forward:
    acc = accumulation_dtype(inputs.x.dtype)
    t = {k: (None if v is None else v.to(acc)) for k, v in inputs.named_tensors().items()}
    x = t["x"]
    batch, channels, height, width = x.shape
    q = project(t["wq"], t["bq"], x.flatten(2)) * (inputs.scale * LOG2E)
    # Keys and values: project at full resolution, then max-pool (BigGAN order).
    k, _ = max_pool_positions(project(t["wk"], t["bk"], x.flatten(2)), inputs.pool, height, width)
    v, _ = max_pool_positions(project(t["wv"], t["bv"], x.flatten(2)), inputs.pool, height, width)
    scores = q @ k.transpose(1, 2)  # base 2
    # The row max is subtracted in the compute precision before exp2, and p is normalised by its
    # own sum: at |score| ~ 1e4 and above, a log-sum-exp converted to base e and back loses enough
    # bits that the weights no longer sum to 1. The max only shifts, so it needs no gradient.
    row_max = scores.amax(dim=-1, keepdim=True).detach()
    weights = torch.exp2(scores - row_max)
    total = weights.sum(dim=-1, keepdim=True)
    p = weights / total
    lse = (row_max + torch.log2(total)).squeeze(-1)
    o = p @ v
    out = o if t["wo"] is None else project(t["wo"], t["bo"], o.transpose(1, 2))
    y = t["gamma"].reshape(()) * out.transpose(1, 2).reshape(batch, channels, height, width) + x
    return _Forward(q, p, lse, o, y)


def reference_forward(inputs: AttentionInputs) -> ForwardResult:
    f = _forward(inputs)
    return ForwardResult(f.y.to(inputs.x.dtype).contiguous(), f.o, f.lse, f.q)


def reference_backward(inputs: AttentionInputs, dy: Tensor) -> Gradients:
    """Autograd (``torch.func.vjp``, which also runs inside a custom op) of ``_forward``."""
    present = {name: t for name, t in inputs.named_tensors().items() if t is not None}

    def y_of(*tensors: Tensor) -> Tensor:
        return _forward(dataclasses.replace(inputs, **dict(zip(present, tensors)))).y

    y, vjp = torch.func.vjp(y_of, *present.values())
    return pack_gradients(inputs, dict(zip(present, vjp(dy.to(y.dtype)))))


class ReferenceBackend(Backend):
    name = "reference"
    priority = 0
    devices = frozenset({"cpu", "cuda", "mps", "xpu"})
    dtypes = frozenset({torch.float64, torch.float32, torch.bfloat16, torch.float16})

    def supports_device(self, device: torch.device) -> bool:
        return True

    def auto_refusals(self, inputs: AttentionInputs) -> list[str]:
        itemsize = torch.empty(0, dtype=accumulation_dtype(inputs.x.dtype)).element_size()
        score_bytes = inputs.batch * inputs.num_queries * inputs.num_keys * itemsize
        if score_bytes <= AUTO_SCORE_BYTES:
            return []
        return [
            f"auto does not pick it: its {inputs.batch} x {inputs.num_queries} x {inputs.num_keys} "
            f"score matrix would take {score_bytes / 2**30:.1f} GiB (limit {AUTO_SCORE_BYTES // 2**20} MiB). "
            "Use a fused backend: `pip install triton` for CUDA tensors, float32/bfloat16/float16 with "
            "qk <= 64 (cpu, triton); or pass backend='reference' to run it anyway"
        ]

    def forward(self, inputs: AttentionInputs) -> ForwardResult:
        return reference_forward(inputs)

    def backward(self, inputs: AttentionInputs, dy: Tensor, o: Tensor, lse: Tensor, q: Tensor) -> Gradients:
        return reference_backward(inputs, dy)
