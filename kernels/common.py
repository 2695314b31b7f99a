"""Pieces shared by the forward and backward attention kernels.

Layout inside every kernel: (batch, positions, channels), each tensor indexed
through its own strides, so x and y are read and written in the module's
(B, C, H, W) layout (positions contiguous) without a transpose.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
import triton.testing

from . import LOG2E as BASE2_LOG2E
from . import interpreting, tuning

# The kernels run the softmax in base 2 (MUFU ex2), and the backward
# differentiates the base-2 scores (d exp2(s) / ds = LN2 exp2(s)).
LOG2E = tl.constexpr(BASE2_LOG2E)
LN2 = tl.constexpr(0.6931471805599453)
# tl.dot needs every dimension to be at least 16.
MIN_DOT_DIM = 16
# Widest value slice one program accumulates; wider v is split across programs
# (grid axis 2), each recomputing the scores for its slice (see FLOOR_H100.md).
MAX_BLOCK_V = 128
# With TF32 dots the operands are fp32, twice the registers of 16-bit ones: on
# sm_80, 128-wide value slices spill or make Triton split the score tile over
# warps that then compute the same exponentials (tests/test_triton_compile.py).
MAX_BLOCK_V_TF32 = 64
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


def value_block(v_channels: int, precision: str) -> int:
    """Value channels per program: all of v up to the slice limit of the precision."""
    return dot_width(v_channels, MAX_BLOCK_V_TF32 if precision == "tf32" else MAX_BLOCK_V)


def autotuning() -> bool:
    """Autotune on a GPU unless SACOLOR_TRITON_AUTOTUNE=0; never under the interpreter.

    Reads the environment, not ``triton.knobs`` (absent before Triton 3.4).
    """
    return not interpreting() and os.environ.get(AUTOTUNE_ENV_VAR, "1") != "0"


def configs(rows: list[tuple[int, int, int, int]]) -> list[triton.Config]:
    """(BLOCK_M, BLOCK_N, warps, stages) rows as autotune configs; the first is the default."""
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s) for bm, bn, w, s in rows
    ]


def config_family(dtype: torch.dtype | str, precision: str = "ieee") -> str:
    """The config family: fp32 (IEEE dots on the FMA units: small tiles), tf32
    (fp32 operands on the tensor cores: twice the bytes of 16bit) or 16bit."""
    if dtype in (torch.float32, "fp32"):
        return "tf32" if precision == "tf32" else "fp32"
    return "16bit"


@dataclass(frozen=True)
class Launch:
    """One kernel launch as a launcher builds it: enough to run it, or to compile
    it ahead of time exactly as it would specialise (benchmarks/aot.py)."""

    kernel: TunedKernel
    dtype: torch.dtype  # the input dtype: with INPUT_PRECISION, picks the config family
    grid: Callable[[dict], tuple]  # BLOCK_* values -> grid
    args: tuple
    constexprs: dict
    sizes: dict[str, int]  # the sizes the best configuration depends on (tuning buckets)

    @property
    def family(self) -> str:
        return config_family(self.dtype, self.constexprs["INPUT_PRECISION"])

    def run(self) -> None:
        if _recorder is not None:
            _recorder.append(self)
        else:
            self.kernel.run(self)


_recorder: list[Launch] | None = None


@contextlib.contextmanager
def recording_launches() -> Iterator[list[Launch]]:
    """Within the block, kernel launches are recorded into the yielded list instead
    of run: what ahead-of-time compilation (benchmarks/aot.py) and the config
    benchmark (benchmarks/gpu_check.py) start from. Not thread-safe."""
    global _recorder
    saved, _recorder = _recorder, []
    try:
        yield _recorder
    finally:
        _recorder = saved


def _meta(config: triton.Config) -> dict:
    return {**config.kwargs, "num_warps": config.num_warps, "num_stages": config.num_stages}


class TunedKernel:
    """A jit kernel with candidate configurations per config family.

    On a GPU, each launch runs the family's fastest configuration for its tuning
    key (kernels/tuning.py); with autotuning off, or under the interpreter, the
    family's first (default) configuration.
    """

    def __init__(self, fn, configs: dict[str, list[triton.Config]]) -> None:
        self.fn = fn
        self.configs = configs

    def default(self, family: str) -> triton.Config:
        return self.configs[family][0]

    def run(self, launch: Launch) -> None:
        candidates = self.configs[launch.family]
        config = candidates[0]
        if autotuning() and len(candidates) > 1:
            key = tuning.tuning_key(
                self.fn.__name__, launch.constexprs, launch.sizes, torch.cuda.get_device_name()
            )
            config = tuning.best_config(key, candidates, lambda c: self.time(launch, c))
        self.run_config(launch, config)

    def run_config(self, launch: Launch, config: triton.Config) -> None:
        meta = _meta(config)
        self.fn[launch.grid(meta)](*launch.args, **launch.constexprs, **meta)

    def time(self, launch: Launch, config: triton.Config) -> float:
        """Median milliseconds of ``launch`` with ``config``; the kernels only write
        their outputs, so rerunning them is harmless."""
        return triton.testing.do_bench(lambda: self.run_config(launch, config))


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
