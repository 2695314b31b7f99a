"""Attention test cases and comparisons shared by the Triton interpreter and GPU tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch

import sacolor
from sacolor.kernels import LOG2E
from sacolor.attention.backends.projection import max_pool_positions, project
from sacolor.attention.inputs import AttentionInputs


@dataclass(frozen=True)
class Case:
    channels: int
    qk: int
    v: int
    height: int
    width: int
    pool: int = 1
    out_proj: bool = False
    bias: bool = True
    batch: int = 2
    scale: float = 1.0

    def __str__(self) -> str:
        return (
            f"C{self.channels}-qk{self.qk}-v{self.v}-{self.height}x{self.width}-pool{self.pool}"
            f"{'-out' if self.out_proj else ''}{'-bias' if self.bias else ''}-s{self.scale}"
        )

    def tensors(
        self, dtype: torch.dtype, device: str | torch.device = "cpu", seed: int = 0, std: float | None = None
    ) -> dict:
        """x ~ N(0, 1) and the op's weights, gamma 0.7.

        Weights and biases have standard deviation ``std``; by default the weights
        are fan-in scaled (scores stay O(1) at any C) and the biases 0.1. On the
        meta device (shapes only, e.g. to record kernel launches) nothing is drawn.
        """
        meta = torch.device(device).type == "meta"
        gen = None if meta else torch.Generator(device=device).manual_seed(seed)

        def rand(*shape, scale=None):
            if meta:
                return torch.empty(*shape, dtype=dtype, device=device)
            scale = scale or std or shape[-1] ** -0.5
            return (torch.randn(*shape, generator=gen, device=device) * scale).to(dtype)

        c, qk, v = self.channels, self.qk, self.v
        bias = (lambda n: rand(n, scale=std or 0.1)) if self.bias else (lambda n: None)
        return {
            "x": rand(self.batch, c, self.height, self.width, scale=1.0),
            "wq": rand(qk, c), "bq": bias(qk), "wk": rand(qk, c), "bk": bias(qk),
            "wv": rand(v, c), "bv": bias(v),
            "wo": rand(c, v) if self.out_proj else None,
            "bo": bias(c) if self.out_proj else None,
            "gamma": torch.tensor([0.7], device=device, dtype=dtype),
        }

    def inputs(
        self, dtype: torch.dtype, device: str | torch.device = "cpu", seed: int = 0, std: float | None = None
    ) -> AttentionInputs:
        t = self.tensors(dtype, device, seed, std)
        return AttentionInputs.create(**t, pool=self.pool, scale=self.scale)

    def oracle(self, t: dict) -> AttentionInputs:
        """The tensors ``t`` in float64 as op inputs: what the reference is run on."""
        return in_float64(AttentionInputs.create(**t, pool=self.pool, scale=self.scale))

    def call(self, t: dict, backend: str) -> torch.Tensor:
        """sacolor.self_attention on the tensors ``t`` (as from ``tensors``): the public op path."""
        return sacolor.self_attention(
            t["x"], t["wq"], t["wk"], t["wv"], t["gamma"], bq=t["bq"], bk=t["bk"], bv=t["bv"],
            wo=t["wo"], bo=t["bo"], pool=self.pool, scale=self.scale, backend=backend,
        )


def in_float64(inputs: AttentionInputs) -> AttentionInputs:
    """The same inputs in float64: the oracle's, so its own rounding does not count."""
    t = {n: None if v is None else v.double() for n, v in inputs.named_tensors().items()}
    return AttentionInputs.create(**t, pool=inputs.pool, scale=inputs.scale)


def assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    """Error within tol of the reference's magnitude (at least 1): gradients such as
    dbk are zero in exact arithmetic, so a purely relative test would be meaningless."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if expected.numel() == 0:  # an absent optional input
        return
    err = max_error(actual, expected)
    assert err <= tol, f"{name}: max error {err:.3g} > {tol:g} of max(1, |reference|)"


def same_precision_gradients(inputs: AttentionInputs, dy: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every input's gradient from the attention computed in PyTorch the way a
    kernel at the inputs' precision computes it: projections rounded to that
    dtype, fp32 scores and softmax, P (and o before Wo) rounded to it; autograd
    rounds the gradients at the same points. The yardstick for a kernel's error."""
    dtype = inputs.x.dtype
    t = {n: v.float().requires_grad_() for n, v in inputs.named_tensors().items() if v is not None}

    def rounded(a: torch.Tensor) -> torch.Tensor:
        return a.to(dtype).float()

    x = t["x"]
    batch, channels, height, width = x.shape
    q = rounded(project(t["wq"], t.get("bq"), x.flatten(2)) * (inputs.scale * LOG2E))
    k, _ = max_pool_positions(rounded(project(t["wk"], t.get("bk"), x.flatten(2))), inputs.pool, height, width)
    v, _ = max_pool_positions(rounded(project(t["wv"], t.get("bv"), x.flatten(2))), inputs.pool, height, width)
    p = rounded(torch.softmax((q @ k.transpose(1, 2)) / LOG2E, dim=-1))
    o = p @ v
    out = o if "wo" not in t else project(t["wo"], t.get("bo"), rounded(o).transpose(1, 2))
    y = t["gamma"].reshape(()) * out.transpose(1, 2).reshape(batch, channels, height, width) + x
    grads = torch.autograd.grad(y, list(t.values()), dy.float())
    return {f"d{name}": g for name, g in zip(t, grads)}


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest absolute error, over the reference's magnitude (at least 1), as ``assert_close``."""
    magnitude = max(1.0, expected.double().abs().max().item())
    return (actual.double() - expected.double()).abs().max().item() / magnitude
