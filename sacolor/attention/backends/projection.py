"""The 1x1 projections and the BigGAN-order max-pool around the attention core,
in PyTorch, shared by the backends that do not fuse them into a kernel.

Layout: positions-major, (B, N, channels), as the kernels take them.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def project(w: Tensor, b: Tensor | None, src: Tensor) -> Tensor:
    """(out, C) weight applied to src (B, C, N) -> (B, N, out)."""
    out = src.transpose(1, 2) @ w.t()
    return out if b is None else out + b


def max_pool_positions(t: Tensor, pool: int, height: int, width: int) -> tuple[Tensor, Tensor | None]:
    """t (B, N, ch) on an H x W grid, max-pooled pool x pool -> (B, M, ch) and the argmax.

    The argmax (None when pool == 1) is what ``unpool_positions`` routes gradients through.
    """
    if pool == 1:
        return t, None
    grid = t.transpose(1, 2).reshape(t.shape[0], -1, height, width)
    pooled, indices = F.max_pool2d(grid, pool, return_indices=True)
    return pooled.flatten(2).transpose(1, 2), indices


def unpool_positions(d: Tensor, indices: Tensor | None, pool: int, height: int, width: int) -> Tensor:
    """Gradient d (B, M, ch) of pooled positions -> (B, N, ch), each value at its argmax."""
    if indices is None:
        return d
    grid = d.transpose(1, 2).reshape(d.shape[0], -1, height // pool, width // pool)
    full = F.max_unpool2d(grid, indices, pool, output_size=(height, width))
    return full.flatten(2).transpose(1, 2)
