"""What the CPU benchmarks time: the cases, and every implementation side by side.

Implementations are the sacolor backends from the registry (whichever this
machine can run) plus what a PyTorch user would write instead, all computing
the same function from the same ``SelfAttention`` weights with the same
1x1-conv projections:

- ``sdpa``: ``F.scaled_dot_product_attention``; with qk != v its CPU flash
  kernel refuses the input and PyTorch falls back to the math path (N x M);
- ``sdpa_padded``: the same with q and k zero-padded to v's width (which
  leaves q.k unchanged), so the CPU flash kernel runs (O(N) memory).

The ``reference`` backend (N x M, plain PyTorch) is a baseline too. An
implementation that would not fit in memory is reported with the reason,
never silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

import sacolor
from sacolor.attention.backends import registry
from sacolor.attention.inputs import AttentionInputs

GIB = 1 << 30
MODES = ("fwd", "fwd+bwd")
BASELINES = ("reference", "sdpa", "sdpa_padded")
# A step slower than this is timed once more at most.
LONG_STEP_SECONDS = 5.0


def timed_repeats(first_seconds: float, minimum: int = 3) -> int:
    """How many timed runs to take after a first one that took ``first_seconds``:
    none for a long step, otherwise ``minimum``, or about a second's worth (at
    most 50) for short steps, whose best of three is at the mercy of one noisy
    neighbour."""
    if first_seconds >= LONG_STEP_SECONDS:
        return 0
    return max(minimum, min(50, int(1.0 / max(first_seconds, 1e-3))))

# name: SelfAttention keyword arguments for C channels.
LAYOUTS: dict[str, Callable[[int], dict]] = {
    "heykeetae": lambda c: {},  # qk = C/8, v = C, bias, no pooling
    "biggan": lambda c: {"v_channels": c // 2, "out_proj": True, "pool": 2, "bias": False},
}
SIZES = ((32, 32), (64, 64), (128, 128), (128, 256), (256, 512))
CHANNELS = (64, 256)


@dataclass(frozen=True)
class Case:
    layout: str
    channels: int
    height: int
    width: int
    batch: int = 1
    dtype: torch.dtype = torch.float32

    @property
    def queries(self) -> int:
        return self.height * self.width

    @property
    def pool(self) -> int:
        return LAYOUTS[self.layout](self.channels).get("pool", 1)

    @property
    def keys(self) -> int:
        return self.queries // self.pool**2

    @property
    def qk(self) -> int:
        return max(1, self.channels // 8)

    @property
    def v(self) -> int:
        return LAYOUTS[self.layout](self.channels).get("v_channels", self.channels)

    @property
    def out_proj(self) -> bool:
        return LAYOUTS[self.layout](self.channels).get("out_proj", False)

    def __str__(self) -> str:
        dtype = "" if self.dtype == torch.float32 else f" {str(self.dtype).removeprefix('torch.')}"
        return f"{self.layout} C={self.channels} {self.batch}x{self.height}x{self.width}{dtype}"

    def module(self, backend: str = "auto") -> sacolor.SelfAttention:
        """The case's module with fixed random weights and gamma = 0.7."""
        torch.manual_seed(0)
        module = sacolor.SelfAttention(self.channels, backend=backend, **LAYOUTS[self.layout](self.channels))
        with torch.no_grad():
            module.gamma.fill_(0.7)
        return module.to(self.dtype)

    def input(self) -> Tensor:
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(self.batch, self.channels, self.height, self.width, generator=gen)
        return x.to(self.dtype).requires_grad_()


def all_cases(channels=CHANNELS, sizes=SIZES, layouts=tuple(LAYOUTS)) -> list[Case]:
    return [Case(layout, c, h, w) for layout in layouts for c in channels for h, w in sizes]


def quick_cases() -> list[Case]:
    """The target cases of issue 4: C = 64, both layouts, up to 128 x 128."""
    return all_cases(channels=(64,), sizes=SIZES[:3])


# -- implementations -----------------------------------------------------------------------


def _sdpa_module(module: sacolor.SelfAttention, pad_qk: bool) -> Callable[[Tensor], Tensor]:
    """SAGAN attention written with F.scaled_dot_product_attention on the module's weights."""

    def forward(x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        q = F.conv2d(x, module.query.weight, module.query.bias)
        k = F.conv2d(x, module.key.weight, module.key.bias)
        v = F.conv2d(x, module.value.weight, module.value.bias)
        if module.pool > 1:  # keys and values pooled after projection, as the op does
            k, v = F.max_pool2d(k, module.pool), F.max_pool2d(v, module.pool)
        # (B, 1, L, ch), contiguous: SDPA's CPU flash kernel refuses a strided last dim.
        q, k, v = (t.flatten(2).transpose(1, 2).unsqueeze(1).contiguous() for t in (q, k, v))
        if pad_qk and q.shape[-1] < v.shape[-1]:
            pad = (0, v.shape[-1] - q.shape[-1])
            q, k = F.pad(q, pad), F.pad(k, pad)
        o = F.scaled_dot_product_attention(q, k, v, scale=module.scale)
        o = o.squeeze(1).transpose(1, 2).reshape(batch, -1, height, width)
        if module.out is not None:
            o = F.conv2d(o, module.out.weight, module.out.bias)
        return module.gamma * o + x

    return forward


# Peak N x M fp32 matrices alive at once, by implementation and mode (measured
# with benchmarks.scaling on small cases, rounded up).
_SCORE_MATRICES = {
    ("reference", "fwd"): 3, ("reference", "fwd+bwd"): 6,
    ("sdpa", "fwd"): 3, ("sdpa", "fwd+bwd"): 5,
}


@dataclass(frozen=True)
class Implementation:
    name: str
    is_baseline: bool

    def refusal(self, case: Case, mode: str, memory_limit_gib: float) -> str | None:
        """Why this implementation does not run ``case``, or None."""
        if self.name in ("sdpa", "sdpa_padded"):
            matrices = _SCORE_MATRICES.get((self.name, mode), 0)
            if self.name == "sdpa_padded" and case.qk >= case.v:  # padding does nothing here
                matrices = _SCORE_MATRICES[("sdpa", mode)]
        else:
            backend = registry.get(self.name)
            module = case.module(self.name)
            w = module.projection_weights(case.dtype)
            x = case.input()
            inputs = AttentionInputs.create(x, w["wq"], w["bq"], w["wk"], w["bk"], w["wv"], w["bv"],
                                            w["wo"], w["bo"], module.gamma, case.pool, module.scale)
            reasons = backend.refusals(inputs)
            if reasons:
                return "; ".join(reasons)
            matrices = _SCORE_MATRICES.get((self.name, mode), 0)
        need = matrices * case.batch * case.queries * case.keys * 4
        if need > memory_limit_gib * GIB:
            return f"does not fit: needs ~{need / GIB:.0f} GiB for N x M scores (limit {memory_limit_gib:g} GiB)"
        return None

    def step(self, case: Case, mode: str) -> Callable[[], None]:
        """One forward (no grad) or one forward + backward of ``case``."""
        if self.name in ("sdpa", "sdpa_padded"):
            module = case.module("reference")
            forward = _sdpa_module(module, pad_qk=self.name == "sdpa_padded")
        else:
            forward = case.module(self.name)
        x = case.input()
        if mode == "fwd":

            def run() -> None:
                with torch.no_grad():
                    forward(x)
        else:

            def run() -> None:
                forward(x).sum().backward()

        return run


def implementations() -> list[Implementation]:
    """Every registered backend (best first) and the SDPA baselines."""
    backends = [Implementation(b.name, b.name in BASELINES) for b in registry.all_backends()]
    return backends + [Implementation("sdpa", True), Implementation("sdpa_padded", True)]
