"""Run-time choice of the cpu backend's kernels (csrc/cpu/isa.cpp), and every
path this machine runs against the float64 oracle.

float32 (and float16, which runs float32 tiles) keeps the tolerance of
test_cpu_backend on every path. bfloat16 is held to the issue's bar: the
output and every gradient, against float64 on the same bfloat16 values, within
2x the error of the same computation written in PyTorch in bfloat16 (1x1
convs + F.scaled_dot_product_attention, q and k zero-padded to v's width so
its flash kernel runs), at ordinary and peaky (q and k weights x3) scores.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from cpu_paths import BF16_PATHS, PATHS, cpu_path, skip_unless_runs  # noqa: F401 (fixture)
from test_cpu_backend import _check, _make

import sacolor
from sacolor.attention.backends.cpu import ISA_ENV_VAR, kernel_path, supported_paths


@pytest.fixture(autouse=True)
def _built():
    if "cpu" not in sacolor.available_backends():
        pytest.skip("the cpu backend is not built (pip install --no-build-isolation -e .)")


# -- choosing the path -----------------------------------------------------------------------


def test_path_names_match_the_extension():
    assert tuple(supported_paths()) == PATHS
    assert supported_paths()["generic"] == ""  # the portable path runs anywhere


def test_unknown_path_is_a_value_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv(ISA_ENV_VAR, "avx1024")
    with pytest.raises(ValueError, match=f"{ISA_ENV_VAR}=avx1024 is not one of: generic, avx2"):
        kernel_path()
    x, p, _, _ = _make(1, 8, 4, 4, 8, 1, False, False)
    with pytest.raises(ValueError, match=ISA_ENV_VAR):
        sacolor.self_attention(x, p["wq"], p["wk"], p["wv"], p["gamma"], backend="cpu")


def test_a_path_this_cpu_cannot_run_is_refused_naming_the_flag(monkeypatch):
    lacking = {name: why for name, why in supported_paths().items() if why}
    if not lacking:
        pytest.skip("this CPU runs every path")
    name, why = next(iter(lacking.items()))
    monkeypatch.setenv(ISA_ENV_VAR, name)
    with pytest.raises(ValueError, match=f"{ISA_ENV_VAR}={name}, but this CPU lacks {why.split(' ')[0]}"):
        kernel_path()


def test_forced_path_is_what_runs_and_what_explain_says(cpu_path):
    # The bf16 paths run float32 on the AVX-512 tiles; float64 always runs the portable ones.
    assert kernel_path(torch.float32) == ("avx512" if cpu_path in BF16_PATHS else cpu_path)
    assert kernel_path(torch.bfloat16) == cpu_path
    assert kernel_path(torch.float64) == "generic"
    module = sacolor.SelfAttention(16)
    report = module.explain(torch.zeros(1, 16, 4, 4, dtype=torch.bfloat16))
    assert report.splitlines()[0] == f"auto -> cpu [{cpu_path} kernels, from {ISA_ENV_VAR}={cpu_path}]"


def test_default_is_the_best_path_this_cpu_runs(monkeypatch):
    monkeypatch.delenv(ISA_ENV_VAR, raising=False)
    best = [name for name, why in supported_paths().items() if not why][-1]
    assert kernel_path(torch.bfloat16) == best
    assert kernel_path(torch.float32) == ("avx512" if best in BF16_PATHS else best)


# -- float32 and float16 on every path ---------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [(2, 24, 18, 10, 12, 2, True, True), (3, 64, 33, 17, 64, 1, True, False), (1, 8, 7, 5, 8, 1, False, True)],
    ids=["B2-C24-18x10-pool2-outproj", "B3-C64-33x17", "B1-C8-7x5-outproj"],
)
def test_float32_matches_reference_on_every_path(cpu_path, case):
    _check(_make(*case), 1e-5)


def test_float16_runs_float32_tiles_on_every_path(cpu_path):
    # float16 keeps its 11-bit significand in float32 tiles; bfloat16 tiles would drop 3 bits.
    inputs = _make(2, 64, 16, 12, 32, 2, True, True, torch.float16)
    assert kernel_path(torch.float16) == kernel_path(torch.float32)
    _check(inputs, 5e-3, torch.float32)


# -- bfloat16 against PyTorch's own bfloat16 ------------------------------------------------------

CHANNELS = 64
_ORACLES: dict = {}  # per case: the float64 oracle and PyTorch's bfloat16 errors, path-independent


def _module(pool: int, peaky: bool) -> sacolor.SelfAttention:
    torch.manual_seed(pool + 10 * peaky)
    module = sacolor.SelfAttention(CHANNELS, pool=pool)
    with torch.no_grad():
        module.gamma.fill_(0.7)
        module.value.bias.normal_(0, 0.3)
        if peaky:  # scores 9x larger: a few keys take most of each softmax row
            module.query.weight.mul_(3)
            module.key.weight.mul_(3)
    return module


def _input(size: int, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(size)
    return torch.randn(2, CHANNELS, size, size, generator=gen).to(dtype)


def _pytorch_bf16(module: sacolor.SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """SAGAN attention as a PyTorch user writes it in bfloat16: 1x1 convs, max-pool, SDPA."""
    q = F.conv2d(x, module.query.weight, module.query.bias)
    k = F.conv2d(x, module.key.weight, module.key.bias)
    v = F.conv2d(x, module.value.weight, module.value.bias)
    if module.pool > 1:
        k, v = F.max_pool2d(k, module.pool), F.max_pool2d(v, module.pool)
    q, k, v = (t.flatten(2).transpose(1, 2).unsqueeze(1).contiguous() for t in (q, k, v))
    pad = (0, v.shape[-1] - q.shape[-1])  # zeros leave q.k unchanged and let the flash kernel run
    o = F.scaled_dot_product_attention(F.pad(q, pad), F.pad(k, pad), v, scale=module.scale)
    return module.gamma * o.squeeze(1).transpose(1, 2).reshape(x.shape) + x


UPSTREAM_GRADIENTS = 4


def _output_and_grads(module, x, run) -> dict[str, torch.Tensor]:
    """y, and each input's gradients for UPSTREAM_GRADIENTS random dy stacked: a
    gradient's error is then measured over several draws, not one (dgamma, a sum
    of N x C terms of both signs, is one number whose rounding error is luck in a
    single draw)."""
    x = x.detach().requires_grad_()
    y = run(module, x)
    params = dict(module.named_parameters())
    gen = torch.Generator().manual_seed(7)
    draws = []
    for _ in range(UPSTREAM_GRADIENTS):
        # bf16 values for every run, the float64 oracle included: the same dy everywhere.
        dy = torch.randn(y.shape, generator=gen).to(torch.bfloat16).to(y.dtype)
        draws.append(torch.autograd.grad(y, [x, *params.values()], dy, retain_graph=True))
    grads = [torch.stack(g) for g in zip(*draws)]
    return {"y": y.detach(), "x": grads[0], **dict(zip(params, grads[1:]))}


def _oracle(size: int, pool: int, peaky: bool) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """float64 on the bfloat16 values (the reference backend at 64x64; at 128x128, whose
    N x N float64 scores would need gigabytes, the cpu backend's float64 kernels, which
    test_cpu_backend gradchecks and holds to the reference), and PyTorch's errors."""
    key = (size, pool, peaky)
    if key not in _ORACLES:
        module = _module(pool, peaky).to(torch.bfloat16).double()
        module.backend = "reference" if size <= 64 else "cpu"
        want = _output_and_grads(module, _input(size, torch.bfloat16).double(), lambda m, x: m(x))
        module = _module(pool, peaky).to(torch.bfloat16)
        theirs = _errors(_output_and_grads(module, _input(size, torch.bfloat16), _pytorch_bf16), want)
        _ORACLES[key] = want, theirs
    return _ORACLES[key]


def _errors(got: dict, want: dict) -> dict[str, float]:
    return {name: (got[name].double() - want[name]).norm().item() for name in want}


def _check_bf16(path: str, size: int, pool: int, peaky: bool) -> str:
    want, theirs = _oracle(size, pool, peaky)
    return _assert_within_2x(path, _module(pool, peaky).to(torch.bfloat16), _input(size, torch.bfloat16), want, theirs)


def _assert_within_2x(path: str, module: sacolor.SelfAttention, x: torch.Tensor, want: dict, theirs: dict) -> str:
    """The cpu backend's errors against the oracle ``want``, each at most 2x PyTorch's (``theirs``)."""
    module.backend = "cpu"
    ours = _errors(_output_and_grads(module, x, lambda m, v: m(v)), want)
    scale = {name: want[name].norm().item() for name in want}
    report = ", ".join(f"{n} {ours[n] / max(scale[n], 1e-30):.1e} vs {theirs[n] / max(scale[n], 1e-30):.1e}" for n in want)
    for name in want:
        # bk's gradient is exactly 0 (a key bias shifts whole softmax rows); the cpu
        # backend returns 0, PyTorch rounding noise: the comparison holds all the same.
        assert ours[name] <= 2 * theirs[name], f"{path}: {name} error {ours[name]:.3g} > 2 x PyTorch's {theirs[name]:.3g}; {report}"
    return report


@pytest.mark.parametrize("peaky", [False, True], ids=["ordinary", "peaky"])
@pytest.mark.parametrize("pool", [1, 2])
@pytest.mark.parametrize("path", [
    # The portable tiles are slow (tens of seconds here) and test_cpu_backend checks them.
    pytest.param(p, marks=pytest.mark.slow) if p == "generic" else p for p in PATHS])
def test_bfloat16_within_2x_pytorch_bfloat16_64x64(monkeypatch, path, pool, peaky):
    skip_unless_runs(path)
    monkeypatch.setenv(ISA_ENV_VAR, path)
    _check_bf16(path, 64, pool, peaky)


@pytest.mark.slow
@pytest.mark.parametrize("peaky", [False, True], ids=["ordinary", "peaky"])
@pytest.mark.parametrize("pool", [1, 2])
@pytest.mark.parametrize("path", BF16_PATHS)
def test_bfloat16_within_2x_pytorch_bfloat16_128x128(monkeypatch, path, pool, peaky):
    skip_unless_runs(path)
    monkeypatch.setenv(ISA_ENV_VAR, path)
    _check_bf16(path, 128, pool, peaky)


# qk 8 (C / 8), odd (the AMX forward's shift column the second of a depth
# pair), 31 (the shift column the tile's last), 32 (no room for it: the AMX
# forward's generic tiles).
@pytest.mark.parametrize("qk", [8, 7, 31, 32])
@pytest.mark.parametrize("path", BF16_PATHS)
def test_bfloat16_where_scores_rise_along_the_keys(monkeypatch, path, qk):
    """Every query's scores climb along the key order (by about 290 in log2 units
    for the largest queries), so a row's max keeps moving: the AMX forward's lazy
    softmax, which rescales a row's output only when a score passes its shift by
    more than 14 (log2), must take that branch many times per row, within chunks
    and across them (without it, probabilities past 2^128 overflow), and each
    time compute the step's scores again with the row's new shift. Held to the
    same bar as the cases above, at 32x32 (1024 keys)."""
    skip_unless_runs(path)
    monkeypatch.setenv(ISA_ENV_VAR, path)
    torch.manual_seed(3)
    module = sacolor.SelfAttention(CHANNELS, qk_channels=qk)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, CHANNELS, 32, 32, generator=gen)
    with torch.no_grad():
        module.gamma.fill_(0.7)
        # q and k both read channel 0, which rises along the raster (key) order.
        x[:, 0] = torch.linspace(0, 1, 32 * 32).view(32, 32)
        module.query.weight[:, 0] = 5.0
        module.key.weight[:, 0] = 5.0
    module = module.to(torch.bfloat16)
    x = x.to(torch.bfloat16)
    oracle = copy.deepcopy(module).double()
    oracle.backend = "reference"
    want = _output_and_grads(oracle, x.double(), lambda m, v: m(v))
    theirs = _errors(_output_and_grads(module, x, _pytorch_bf16), want)
    _assert_within_2x(path, module, x, want, theirs)


# B, C, H, W, qk, v, bias: positions past a whole tile (99 = 6 x 16 + 3), channels
# not a multiple of the tile depth (40, 33: an odd one pairs with a zero; 200: seven
# depth steps), qk odd (the shift row the second of a pair) and 31 (the last), v of
# one, one and a bit, and four value tiles.
OPERAND_SHAPES = [(2, 64, 9, 11, 8, 64, True), (1, 40, 5, 7, 5, 40, True), (2, 33, 10, 13, 7, 17, False),
                  (1, 64, 12, 12, 31, 64, True), (1, 200, 12, 12, 3, 1, True)]


@pytest.mark.parametrize("shape", OPERAND_SHAPES, ids=lambda s: "B{}-C{}-{}x{}-qk{}-v{}{}".format(*s[:6], "-bias" * s[6]))
def test_amx_forward_projects_and_packs_its_own_operands(monkeypatch, shape):
    """Without pooling, the AMX forward (qk < 32, v <= 64) takes q, k and v from
    its own projection of the bfloat16 x on the tile unit (forward_operands), not
    from ATen's float32 GEMM: the float32 queries it returns must be ATen's up to
    summation order, and o and the log-sum-exp those of float64 attention on the
    same projections rounded to bfloat16 (a key, value or channel packed in the
    wrong place is an error of order 1)."""
    skip_unless_runs("amx")
    monkeypatch.setenv(ISA_ENV_VAR, "amx")
    batch, c, height, width, qk, v, bias = shape
    gen = torch.Generator().manual_seed(c + qk)

    def r(*size, std=1.0):
        return (torch.randn(*size, generator=gen) * std).to(torch.bfloat16)

    x = r(batch, c, height, width)
    w = {name: r(rows, c, std=c**-0.5) for name, rows in (("q", qk), ("k", qk), ("v", v))}
    b = {name: r(t.shape[0], std=0.5) if bias else None for name, t in w.items()}
    wo = r(c, v, std=v**-0.5) if v != c else None  # an output projection where v_channels != C
    gamma = torch.tensor(0.7).to(torch.bfloat16)
    y, o, lse, q = torch.ops.sacolor_C.self_attention_fwd(x, w["q"], b["q"], w["k"], b["k"], w["v"], b["v"],
                                                          wo, None, gamma, 1, 1.0)

    def project(name):  # (B, N, rows) in float32, as the float32 path computes it
        out = torch.einsum("oc,bcn->bno", w[name].float(), x.float().flatten(2))
        return out if b[name] is None else out + b[name].float()

    log2e = torch.tensor(1.0).exp().log2().item()
    q_want = project("q") * log2e
    assert ((q - q_want).norm() / q_want.norm()).item() < 1e-6
    k_bf16, v_bf16 = (project(name).to(torch.bfloat16).double() for name in "kv")
    scores = q_want.to(torch.bfloat16).double() @ k_bf16.transpose(1, 2)  # base 2
    lse_want = torch.logsumexp(scores * torch.log(torch.tensor(2.0)).double(), -1) * log2e
    o_want = torch.softmax(scores / log2e, -1) @ v_bf16
    # P is rounded to bfloat16 (a relative 2^-9 each): errors of about 1e-3
    assert ((o.double() - o_want).norm() / o_want.norm()).item() < 4e-3
    assert (lse.double() - lse_want).abs().max().item() < 1e-2
    out = o_want if wo is None else o_want @ wo.double().t()
    y_want = 0.7 * out.transpose(1, 2).reshape(x.shape) + x.double()
    assert ((y.double() - y_want).norm() / y_want.norm()).item() < 1e-2


@pytest.mark.parametrize("path", BF16_PATHS)
@pytest.mark.parametrize("out_proj", [False, True], ids=["in-kernel", "after-wo"])
@pytest.mark.parametrize("channels, height, width", [(64, 9, 11), (40, 5, 7), (24, 16, 12)])
def test_bfloat16_residual_rounds_as_the_generic_one(monkeypatch, path, out_proj, channels, height, width):
    """y = gamma * o^T + x, written by the bf16 forward's blocks (no output
    projection) or by the vectorised residual after Wo, bit for bit the float32
    product, the float32 sum, then bfloat16, at positions past a whole vector
    (99, 35, 192) and channels not a multiple of 16 (40, 24)."""
    skip_unless_runs(path)
    monkeypatch.setenv(ISA_ENV_VAR, path)
    gen = torch.Generator().manual_seed(channels)
    x = torch.randn(2, channels, height, width, generator=gen).to(torch.bfloat16)
    v = channels // 2 if out_proj else channels
    w = [(torch.randn(rows, channels, generator=gen) * channels**-0.5).to(torch.bfloat16)
         for rows in (channels // 8, channels // 8, v)]
    wo = (torch.randn(channels, v, generator=gen) * v**-0.5).to(torch.bfloat16) if out_proj else None
    gamma = torch.tensor(0.7).to(torch.bfloat16)
    y, o, _, _ = torch.ops.sacolor_C.self_attention_fwd(x, w[0], None, w[1], None, w[2], None, wo, None,
                                                        gamma, 1, 1.0)
    rows = o if wo is None else F.linear(o, wo.float())
    want = (rows.transpose(1, 2).reshape(x.shape) * gamma.float() + x.float()).to(torch.bfloat16)
    assert torch.equal(y, want)


def test_amx_forward_in_blocks_of_1024_queries_matches_512(monkeypatch):
    """The AMX forward takes blocks of 1024 queries where each thread still gets
    four (9 600 queries on one thread), of 512 otherwise (on eight): every row's
    arithmetic is its own strip's either way, so o, the log-sum-exp and y agree
    bit for bit, the last, partly padded block included."""
    skip_unless_runs("amx")
    monkeypatch.setenv(ISA_ENV_VAR, "amx")
    x, p, _, pool = _make(1, 64, 96, 100, 64, 1, True, False, torch.bfloat16)
    args = (x, p["wq"], p["bq"], p["wk"], p["bk"], p["wv"], p["bv"], None, None, p["gamma"], pool, 1.0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        large = torch.ops.sacolor_C.self_attention_fwd(*args)
        torch.set_num_threads(8)
        small = torch.ops.sacolor_C.self_attention_fwd(*args)
    finally:
        torch.set_num_threads(threads)
    for name, a, b in zip(("y", "o", "lse", "q"), large, small):
        assert torch.equal(a, b), name
