"""The ``triton`` backend on a CUDA GPU (compiled kernels; tuned unless
SACOLOR_TRITON_AUTOTUNE=0, as ``python -m benchmarks.gpu_check`` sets it).

Forward, and forward + backward, against the float64 ``reference`` and
against ``torch.nn.functional.scaled_dot_product_attention`` with the
projections done by 1x1 convolutions (how SAGAN code computes it). Ragged N,
pool 2, the output projection, and v split across programs. Every test skips
cleanly without a CUDA device (checked when the test runs, not at import).
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from attention_cases import Case, assert_close, max_error, same_precision_gradients

import sacolor
from sacolor.attention.backends.reference import reference_backward, reference_forward
from sacolor.attention.inputs import AttentionInputs

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


CASES = [
    Case(channels=64, qk=8, v=64, height=32, width=32),  # SAGAN at 32x32
    Case(channels=32, qk=5, v=32, height=63, width=65, batch=1),  # N = 4095: ragged tiles, qk < 16
    Case(channels=128, qk=16, v=64, height=24, width=40, pool=2, out_proj=True, bias=False),  # BigGAN
    Case(channels=256, qk=32, v=256, height=17, width=19, batch=1),  # v split over 2 programs
    Case(channels=48, qk=24, v=160, height=20, width=20, out_proj=True),  # split v, Wo after the kernel
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_matches_reference(cuda, case: Case, dtype: torch.dtype) -> None:
    t = case.tensors(dtype, cuda)
    with torch.no_grad():
        y = case.call(t, "triton")
    expected = reference_forward(case.oracle(t)).y
    assert y.dtype == dtype and y.shape == t["x"].shape
    assert_close("y", y, expected, TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_backward_matches_reference(cuda, case: Case, dtype: torch.dtype) -> None:
    t = case.tensors(dtype, cuda)
    leaves = {n: None if v is None else v.clone().requires_grad_() for n, v in t.items()}
    y = case.call(leaves, "triton")
    dy = torch.randn_like(y)
    y.backward(dy)
    expected = reference_backward(case.oracle(t), dy.double())._asdict()
    for name, leaf in leaves.items():
        if leaf is not None:
            assert leaf.grad.dtype == dtype, name
            assert_close(f"d{name}", leaf.grad, expected[f"d{name}"], TOLERANCE[dtype])


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
    for run in (lambda z: case.call(z, "triton"), lambda z: _sdpa_attention(z, case.pool)):
        leaves = {n: None if v is None else v.clone().requires_grad_() for n, v in t.items()}
        y = run(leaves)
        y.backward(torch.ones_like(y))
        grads.append((y.detach(), {n: v.grad for n, v in leaves.items() if v is not None}))
    (y, g), (y_sdpa, g_sdpa) = grads
    assert_close("y", y, y_sdpa, TOLERANCE[dtype])
    for name in g:
        assert_close(f"d{name}", g[name], g_sdpa[name], TOLERANCE[dtype])


def test_backward_is_deterministic(cuda) -> None:
    """No atomics: two backward passes give bit-identical gradients."""
    t = CASES[1].tensors(torch.float32, cuda)
    runs = []
    for _ in range(2):
        leaves = {n: None if v is None else v.clone().requires_grad_() for n, v in t.items()}
        CASES[1].call(leaves, "triton").sum().backward()
        runs.append([v.grad for v in leaves.values() if v is not None])
    for first, second in zip(*runs):
        assert torch.equal(first, second)


def test_tf32_when_pytorch_allows_it(cuda) -> None:
    torch.backends.cuda.matmul.allow_tf32 = True
    t = CASES[0].tensors(torch.float32, cuda)
    with torch.no_grad():
        y = CASES[0].call(t, "triton")
    assert_close("y", y, reference_forward(CASES[0].oracle(t)).y, 2e-2)


def test_auto_picks_triton_on_cuda(cuda) -> None:
    inputs = CASES[0].inputs(torch.float32, cuda)
    assert sacolor.attention.backends.select(inputs).name == "triton"


def test_auto_refuses_the_n_squared_reference_when_triton_is_missing(cuda, monkeypatch) -> None:
    """Without Triton only the reference runs CUDA tensors; at N = 16 384 its scores
    need 1 GiB, so auto raises an error naming the fix instead of allocating them."""
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now raises ImportError
    t = Case(channels=64, qk=8, v=64, height=128, width=128, batch=1).tensors(torch.float32, cuda)
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    with pytest.raises(NotImplementedError, match=r"(?s)reference: auto does not pick it.*pip install triton"):
        sacolor.self_attention(t["x"], t["wq"], t["wk"], t["wv"], t["gamma"], bq=t["bq"], bk=t["bk"], bv=t["bv"])
    assert torch.cuda.max_memory_allocated() - before < 2**20


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_peaky_scores_gradients_within_2x_of_pytorch_at_the_same_precision(cuda, dtype: torch.dtype) -> None:
    """q/k weights x3 (score std ~3): each gradient's error against float64 is at most
    twice that of the same computation in PyTorch at this precision."""
    case = CASES[0]
    t = case.tensors(dtype, cuda)
    t["wq"], t["wk"] = t["wq"] * 3, t["wk"] * 3
    inputs = AttentionInputs.create(**t, pool=case.pool, scale=case.scale)
    leaves = {n: None if v is None else v.clone().requires_grad_() for n, v in t.items()}
    y = case.call(leaves, "triton")
    dy = torch.randn_like(y)
    y.backward(dy)
    expected = reference_backward(case.oracle(t), dy.double())._asdict()
    for name, pytorch in same_precision_gradients(inputs, dy).items():
        err = max_error(leaves[name[1:]].grad, expected[name])
        assert err <= 2 * max_error(pytorch, expected[name]) + 1e-6, name
