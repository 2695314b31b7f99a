"""The ``triton`` backend on a CUDA GPU (compiled kernels, autotuning on).

Forward, and forward + backward, against the float64 ``reference`` and
against ``torch.nn.functional.scaled_dot_product_attention`` with the
projections done by 1x1 convolutions (how SAGAN code computes it). Ragged N,
pool 2, the output projection, and v split across programs. Every test skips
cleanly without a CUDA device (checked when the test runs, not at import).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

import sacolor
from sacolor.backends.reference import reference_backward, reference_forward
from sacolor.inputs import AttentionInputs

pytestmark = pytest.mark.gpu

TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 2e-2}
DTYPES = list(TOLERANCE)


@pytest.fixture
def cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("triton")
    return torch.device("cuda")


@pytest.fixture(autouse=True)
def ieee_fp32():
    """fp32 tests check the IEEE path; TF32 has its own test."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = saved


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

    def __str__(self) -> str:
        return (
            f"C{self.channels}-qk{self.qk}-v{self.v}-{self.height}x{self.width}-pool{self.pool}"
            f"{'-out' if self.out_proj else ''}{'-bias' if self.bias else ''}"
        )

    def tensors(self, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor | None]:
        gen = torch.Generator(device=device).manual_seed(0)

        def rand(*shape, std=None):
            std = std if std is not None else shape[-1] ** -0.5
            return (torch.randn(*shape, generator=gen, device=device) * std).to(dtype)

        c, qk, v = self.channels, self.qk, self.v
        bias = (lambda n: rand(n, std=0.1)) if self.bias else (lambda n: None)
        return {
            "x": rand(self.batch, c, self.height, self.width, std=1.0),
            "wq": rand(qk, c), "bq": bias(qk), "wk": rand(qk, c), "bk": bias(qk),
            "wv": rand(v, c), "bv": bias(v),
            "wo": rand(c, v) if self.out_proj else None,
            "bo": bias(c) if self.out_proj else None,
            "gamma": torch.tensor([0.7], device=device, dtype=dtype),
        }


CASES = [
    Case(channels=64, qk=8, v=64, height=32, width=32),  # SAGAN at 32x32
    Case(channels=32, qk=5, v=32, height=63, width=65, batch=1),  # N = 4095: ragged tiles, qk < 16
    Case(channels=128, qk=16, v=64, height=24, width=40, pool=2, out_proj=True, bias=False),  # BigGAN
    Case(channels=256, qk=32, v=256, height=17, width=19, batch=1),  # v split over 2 programs
    Case(channels=48, qk=24, v=160, height=20, width=20, out_proj=True),  # split v, Wo after the kernel
]


def _call(t: dict, pool: int, backend: str) -> torch.Tensor:
    return sacolor.self_attention(
        t["x"], t["wq"], t["wk"], t["wv"], t["gamma"], bq=t["bq"], bk=t["bk"], bv=t["bv"],
        wo=t["wo"], bo=t["bo"], pool=pool, backend=backend,
    )


def _assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    if expected.numel() == 0:
        assert actual.numel() == 0, name
        return
    magnitude = max(1.0, expected.double().abs().max().item())
    err = (actual.double() - expected.double()).abs().max().item()
    assert err <= tol * magnitude, f"{name}: max error {err:.3g} > {tol:g} x {magnitude:.3g}"


def _float64(t: dict, pool: int = 1) -> AttentionInputs:
    """The oracle's inputs: the same tensors in float64."""
    return AttentionInputs.create(**{n: None if v is None else v.double() for n, v in t.items()}, pool=pool)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_matches_reference(cuda, case: Case, dtype: torch.dtype) -> None:
    t = case.tensors(dtype, cuda)
    with torch.no_grad():
        y = _call(t, case.pool, "triton")
    expected = reference_forward(_float64(t, case.pool)).y
    assert y.dtype == dtype and y.shape == t["x"].shape
    _assert_close("y", y, expected, TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_backward_matches_reference(cuda, case: Case, dtype: torch.dtype) -> None:
    t = case.tensors(dtype, cuda)
    leaves = {n: None if v is None else v.clone().requires_grad_() for n, v in t.items()}
    y = _call(leaves, case.pool, "triton")
    dy = torch.randn_like(y)
    y.backward(dy)
    expected = reference_backward(_float64(t, case.pool), dy.double())._asdict()
    for name, leaf in leaves.items():
        if leaf is not None:
            assert leaf.grad.dtype == dtype, name
            _assert_close(f"d{name}", leaf.grad, expected[f"d{name}"], TOLERANCE[dtype])


def _sdpa_attention(t: dict, pool: int) -> torch.Tensor:
    """The same attention the way SAGAN code writes it: 1x1 convs, then SDPA (scale 1)."""
    x = t["x"]
    batch, channels, height, width = x.shape

    def conv(w, b, inp):
        return F.conv2d(inp, w[:, :, None, None], b)

    q = conv(t["wq"], t["bq"], x)
    k = conv(t["wk"], t["bk"], x)
    v = conv(t["wv"], t["bv"], x)
    if pool > 1:
        k, v = F.max_pool2d(k, pool), F.max_pool2d(v, pool)
    # (B, 1 head, positions, channels)
    q, k, v = (z.flatten(2).transpose(1, 2).unsqueeze(1) for z in (q, k, v))
    o = F.scaled_dot_product_attention(q, k, v, scale=1.0)
    o = o.squeeze(1).transpose(1, 2).reshape(batch, -1, height, width)
    out = o if t["wo"] is None else conv(t["wo"], t["bo"], o)
    return t["gamma"].reshape(()) * out + x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", [CASES[0], CASES[2]], ids=str)
def test_matches_sdpa_with_conv_projections(cuda, case: Case, dtype: torch.dtype) -> None:
    t = case.tensors(dtype, cuda)
    grads = []
    for run in (lambda z: _call(z, case.pool, "triton"), lambda z: _sdpa_attention(z, case.pool)):
        leaves = {n: None if v is None else v.clone().requires_grad_() for n, v in t.items()}
        y = run(leaves)
        y.backward(torch.ones_like(y))
        grads.append((y.detach(), {n: v.grad for n, v in leaves.items() if v is not None}))
    (y, g), (y_sdpa, g_sdpa) = grads
    _assert_close("y", y, y_sdpa, TOLERANCE[dtype])
    for name in g:
        _assert_close(f"d{name}", g[name], g_sdpa[name], TOLERANCE[dtype])


def test_backward_is_deterministic(cuda) -> None:
    """No atomics: two backward passes give bit-identical gradients."""
    t = CASES[1].tensors(torch.float32, cuda)
    runs = []
    for _ in range(2):
        leaves = {n: None if v is None else v.clone().requires_grad_() for n, v in t.items()}
        _call(leaves, 1, "triton").sum().backward()
        runs.append([v.grad for v in leaves.values() if v is not None])
    for first, second in zip(*runs):
        assert torch.equal(first, second)


def test_tf32_when_pytorch_allows_it(cuda) -> None:
    torch.backends.cuda.matmul.allow_tf32 = True
    t = CASES[0].tensors(torch.float32, cuda)
    with torch.no_grad():
        y = _call(t, 1, "triton")
    _assert_close("y", y, reference_forward(_float64(t)).y, 2e-2)


def test_auto_picks_triton_on_cuda(cuda) -> None:
    t = CASES[0].tensors(torch.float32, cuda)
    inputs = AttentionInputs.create(**t)
    assert sacolor.backends.select(inputs).name == "triton"
