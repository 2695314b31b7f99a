"""The inputs of one self-attention call, validated once.

Shapes (DESIGN.md, "The attention contract"):

- ``x``: (B, C, H, W)
- ``wq``, ``wk``: (qk, C); ``bq``, ``bk``: (qk,)
- ``wv``: (v, C); ``bv``: (v,)
- ``wo``: (C, v); ``bo``: (C,)  (only with an output projection; else v == C)
- ``gamma``: one element

With ``pool`` = 2, keys and values are max-pooled 2x2 *after* their projection,
k = maxpool(Wk x + bk), as BigGAN and StudioGAN do (max does not commute with
the projection, so this order is what loading their weights requires).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

SUPPORTED_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)
SUPPORTED_POOLS = (1, 2)


def check_pool(pool: int, height: int | None = None, width: int | None = None) -> None:
    """ValueError unless ``pool`` is a supported pool and, given the map's size, divides both sides.

    The one check of ``pool``: the op, ``SelfAttention`` and the backends' declarations use it.
    """
    if not isinstance(pool, int) or pool not in SUPPORTED_POOLS:
        raise ValueError(f"pool must be {' or '.join(map(str, SUPPORTED_POOLS))}; got {pool!r}")
    if height is not None and (height % pool or width % pool):
        raise ValueError(
            f"pool={pool} needs H and W divisible by {pool}; x has H={height}, W={width}. "
            "Pad or resize the input, or use pool=1."
        )


def _weight_2d(name: str, w: Tensor) -> Tensor:
    """Accepts (out, in) or a 1x1 conv weight (out, in, 1, 1) / conv1d (out, in, 1)."""
    if not isinstance(w, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(w).__name__}")
    if w.dim() == 2:
        return w
    if w.dim() in (3, 4) and all(s == 1 for s in w.shape[2:]):
        return w.reshape(w.shape[0], w.shape[1])
    raise ValueError(
        f"{name} must have shape (out, in) or be a 1x1 conv weight (out, in, 1, 1); "
        f"got {tuple(w.shape)}"
    )


@dataclass(frozen=True)
class AttentionInputs:
    """Everything one call of the op needs; weights already 2-D."""

    x: Tensor
    wq: Tensor
    bq: Tensor | None
    wk: Tensor
    bk: Tensor | None
    wv: Tensor
    bv: Tensor | None
    wo: Tensor | None
    bo: Tensor | None
    gamma: Tensor
    pool: int = 1
    scale: float = 1.0

    @classmethod
    def create(
        cls,
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
        pool: int = 1,
        scale: float = 1.0,
    ) -> "AttentionInputs":
        """Normalises weight shapes, then validates; raises ValueError/TypeError."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if isinstance(gamma, (int, float)) and not isinstance(gamma, bool):
            gamma = torch.tensor(float(gamma), dtype=x.dtype, device=x.device)
        elif not isinstance(gamma, Tensor):
            raise TypeError(
                f"gamma must be a one-element torch.Tensor or a number; got {type(gamma).__name__}"
            )
        inputs = cls(
            x=x,
            wq=_weight_2d("wq", wq),
            bq=bq,
            wk=_weight_2d("wk", wk),
            bk=bk,
            wv=_weight_2d("wv", wv),
            bv=bv,
            wo=None if wo is None else _weight_2d("wo", wo),
            bo=bo,
            gamma=gamma,
            pool=pool,
            scale=scale,
        )
        inputs.validate(empty_batch=True)
        return inputs

    # -- derived sizes -------------------------------------------------------

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    @property
    def channels(self) -> int:
        return self.x.shape[1]

    @property
    def qk_channels(self) -> int:
        return self.wq.shape[0]

    @property
    def v_channels(self) -> int:
        return self.wv.shape[0]

    @property
    def num_queries(self) -> int:
        return self.x.shape[2] * self.x.shape[3]

    @property
    def num_keys(self) -> int:
        return self.num_queries // (self.pool * self.pool)

    @property
    def out_proj(self) -> bool:
        return self.wo is not None

    def named_tensors(self) -> dict[str, Tensor | None]:
        return {
            "x": self.x, "wq": self.wq, "bq": self.bq, "wk": self.wk, "bk": self.bk,
            "wv": self.wv, "bv": self.bv, "wo": self.wo, "bo": self.bo, "gamma": self.gamma,
        }

    def describe(self) -> str:
        """One line naming shapes, dtype and device, for error messages."""
        return (
            f"x {tuple(self.x.shape)} {self.x.dtype} on {self.x.device}, "
            f"qk={self.qk_channels}, v={self.v_channels}, pool={self.pool}, "
            f"out_proj={self.out_proj}, scale={self.scale}"
        )

    # -- validation ----------------------------------------------------------

    def validate(self, empty_batch: bool = False) -> None:
        """Raises ValueError/TypeError naming the bad input. ``empty_batch``: accept B = 0
        (the functional form returns such an x at once; the op and its kernels never see it)."""
        x = self.x
        if x.dim() != 4:
            raise ValueError(f"x must be 4-D (B, C, H, W); got {x.dim()}-D shape {tuple(x.shape)}")
        if x.dtype not in SUPPORTED_DTYPES:
            raise TypeError(
                f"x has dtype {x.dtype}; supported: " + ", ".join(str(d) for d in SUPPORTED_DTYPES)
            )
        if (x.shape[0] == 0 and not empty_batch) or x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f"x must have non-zero batch and spatial size; got {tuple(x.shape)}")
        check_pool(self.pool, x.shape[2], x.shape[3])
        if not isinstance(self.scale, (int, float)) or isinstance(self.scale, bool):
            raise TypeError(f"scale must be a float; got {type(self.scale).__name__}")
        if not math.isfinite(self.scale):
            raise ValueError(f"scale must be finite; got {self.scale} (it multiplies every score)")

        for name, t in self.named_tensors().items():
            if t is None:
                continue
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor or None, got {type(t).__name__}")
            if t.device != x.device:
                raise ValueError(
                    f"{name} is on {t.device} but x is on {x.device}; move both to one device"
                )
            if t.dtype != x.dtype:
                raise TypeError(
                    f"{name} has dtype {t.dtype} but x has {x.dtype}; cast both to one dtype"
                )

        c, qk, v = self.channels, self.qk_channels, self.v_channels
        for name, w in (("wq", self.wq), ("wk", self.wk), ("wv", self.wv)):
            if w.shape[1] != c:
                raise ValueError(
                    f"{name} has shape {tuple(w.shape)}: its input channels ({w.shape[1]}) "
                    f"must equal x's channels C={c}"
                )
        if self.wk.shape[0] != qk:
            raise ValueError(
                f"wq and wk must have the same output channels; got {qk} and {self.wk.shape[0]}"
            )
        if qk == 0 or v == 0:
            raise ValueError(f"qk and v channels must be positive; got qk={qk}, v={v}")
        for name, b, n in (("bq", self.bq, qk), ("bk", self.bk, qk), ("bv", self.bv, v)):
            if b is not None and tuple(b.shape) != (n,):
                raise ValueError(f"{name} must have shape ({n},); got {tuple(b.shape)}")
        if self.wo is None:
            if v != c:
                raise ValueError(
                    f"without an output projection v_channels must equal C; got v={v}, C={c}. "
                    f"Pass wo (C, v) or use v_channels == C."
                )
            if self.bo is not None:
                raise ValueError("bo given without wo; pass wo too or drop bo")
        else:
            if tuple(self.wo.shape) != (c, v):
                raise ValueError(f"wo must have shape ({c}, {v}); got {tuple(self.wo.shape)}")
            if self.bo is not None and tuple(self.bo.shape) != (c,):
                raise ValueError(f"bo must have shape ({c},); got {tuple(self.bo.shape)}")
        if self.gamma.numel() != 1:
            raise ValueError(f"gamma must have one element; got shape {tuple(self.gamma.shape)}")
