"""Pieces shared by the forward and backward attention kernels.

Layout inside every kernel: (batch, positions, channels), each tensor indexed
through its own strides, so x and y are read and written in the module's
(B, C, H, W) layout (positions contiguous) without a transpose.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import triton
import triton.language as tl

# exp(s) == exp2(s * LOG2E): the kernels run the softmax in base 2 (MUFU ex2),
# and the backward differentiates the base-2 scores (d exp2(s) / ds = LN2 exp2(s)).
LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)
# tl.dot needs every dimension to be at least 16.
MIN_DOT_DIM = 16
# Widest value slice one program accumulates; wider v is split across programs
# (grid axis 2), each recomputing the scores for its slice (see FLOOR_H100.md).
MAX_BLOCK_V = 128
# Channel chunk for the projections computed inside the kernels (32 keeps the
# fused Wo epilogue from spilling).
MAX_BLOCK_C = 32

AUTOTUNE_ENV_VAR = "SACOLOR_TRITON_AUTOTUNE"


def dot_width(size: int, cap: int | None = None) -> int:
    """``size`` rounded up to a power of two that tl.dot accepts (>= 16), at most ``cap``."""
    width = max(MIN_DOT_DIM, triton.next_power_of_2(size))
    return width if cap is None else min(width, cap)


def input_precision(dtype: torch.dtype) -> str:
    """IEEE fp32 dots unless PyTorch itself allows TF32 matmuls."""
    if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def autotuning() -> bool:
    """Autotune on a GPU unless SACOLOR_TRITON_AUTOTUNE=0; never under the interpreter."""
    return not triton.knobs.runtime.interpret and os.environ.get(AUTOTUNE_ENV_VAR, "1") != "0"


def configs(rows: list[tuple[int, int, int, int]]) -> list[triton.Config]:
    """(BLOCK_M, BLOCK_N, warps, stages) rows as autotune configs; the first is the default."""
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s) for bm, bn, w, s in rows
    ]


def dtype_family(dtype: torch.dtype | str) -> str:
    """The config family: fp32 (IEEE dots run on the FMA units: small tiles) or 16bit (tensor cores)."""
    return "fp32" if dtype in (torch.float32, "fp32") else "16bit"


class TunedKernel:
    """A jit kernel with autotune configs per dtype family.

    Launched through ``triton.autotune`` (keyed on ``key``) on a GPU, or with
    the family's first (default) config when autotuning is off.
    """

    def __init__(self, fn, configs: dict[str, list[triton.Config]], key: list[str]) -> None:
        self.fn = fn
        self.configs = configs
        self._tuned = {family: triton.autotune(configs=cs, key=key)(fn) for family, cs in configs.items()}

    def default(self, dtype: torch.dtype | str) -> triton.Config:
        return self.configs[dtype_family(dtype)][0]

    def launch(self, dtype: torch.dtype, grid: Callable[[dict], tuple], args: tuple, constexprs: dict) -> None:
        """Runs the kernel; ``grid`` maps the launch's BLOCK_* values to the grid."""
        if autotuning():
            self._tuned[dtype_family(dtype)][grid](*args, **constexprs)
        else:
            config = self.default(dtype)
            meta = {**config.kwargs, "num_warps": config.num_warps, "num_stages": config.num_stages}
            self.fn[grid(meta)](*args, **constexprs, **meta)


@triton.jit
def tile_offsets(rows, row_mask, stride_row, cols, col_mask, stride_col):
    """Offsets and mask of the (rows x cols) tile of a strided 2-D tensor."""
    return rows[:, None] * stride_row + cols[None, :] * stride_col, row_mask[:, None] & col_mask[None, :]


@triton.jit
def load_tile(ptr, rows, row_mask, stride_row, cols, col_mask, stride_col):
    """The (rows x cols) tile of a strided 2-D tensor, 0 outside the masks."""
    offsets, mask = tile_offsets(rows, row_mask, stride_row, cols, col_mask, stride_col)
    return tl.load(ptr + offsets, mask=mask, other=0.0)


@triton.jit
def store_tile(ptr, value, rows, row_mask, stride_row, cols, col_mask, stride_col):
    """Writes value to the (rows x cols) tile of a strided 2-D tensor, inside the masks."""
    offsets, mask = tile_offsets(rows, row_mask, stride_row, cols, col_mask, stride_col)
    tl.store(ptr + offsets, value, mask=mask)


@triton.jit
def dot_over_channels(
    a_ptr, stride_a_row, stride_a_ch, a_rows, a_mask,
    b_ptr, stride_b_row, stride_b_ch, b_rows, b_mask,
    n_channels,
    A_ROWS: tl.constexpr, B_ROWS: tl.constexpr, BLOCK_CH: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    """sum_ch A[a_rows, ch] * B[b_rows, ch] as an (A_ROWS, B_ROWS) fp32 tile.

    Streams the channels in BLOCK_CH chunks so wide operands (x with C = 512,
    a value row split across programs) never sit in registers whole.
    """
    acc = tl.zeros((A_ROWS, B_ROWS), dtype=tl.float32)
    for ch0 in range(0, n_channels, BLOCK_CH):
        offs_ch = ch0 + tl.arange(0, BLOCK_CH)
        mask_ch = offs_ch < n_channels
        a = load_tile(a_ptr, a_rows, a_mask, stride_a_row, offs_ch, mask_ch, stride_a_ch)
        b_t = load_tile(b_ptr, offs_ch, mask_ch, stride_b_ch, b_rows, b_mask, stride_b_row)
        acc = tl.dot(a, b_t, acc, input_precision=INPUT_PRECISION)
    return acc
