"""The fused C++ CPU kernel (backend "cpu") against the reference backend.

The oracle is the reference backend run in float64 on the same input values,
so the measured error is the CPU kernel's own (the float32 reference is itself
about as far from the exact result as the kernel is).
"""

import itertools
import zlib

import pytest
import torch

import sacolor
from sacolor.attention.inputs import AttentionInputs

pytestmark = pytest.mark.skipif(
    "cpu" not in sacolor.available_backends(),
    reason="the cpu backend is not built (pip install --no-build-isolation -e .)",
)

GRAD_NAMES = ("x", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo", "gamma")


def _seed(*key) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def _make(batch, c, height, width, v, pool, bias, out_proj, dtype=torch.float32, qk=None, gen=None):
    """Random inputs of the op with O(1) scores: weights ~ N(0, 1/C), gamma 0.7."""
    gen = gen or _seed(batch, c, height, width, v, pool, bias, out_proj)
    qk = qk or max(1, c // 8)

    def r(*shape, std=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * std).to(dtype)

    p = {"wq": r(qk, c, std=c**-0.5), "wk": r(qk, c, std=c**-0.5), "wv": r(v, c, std=c**-0.5)}
    if bias:
        p.update(bq=r(qk, std=0.3), bk=r(qk, std=0.3), bv=r(v, std=0.3))
    if out_proj:
        p["wo"] = r(c, v, std=v**-0.5)
        if bias:
            p["bo"] = r(c, std=0.3)
    p["gamma"] = torch.full((1,), 0.7, dtype=dtype)
    x = r(batch, c, height, width)
    dy = r(batch, c, height, width)
    return x, p, dy, pool


def _run(x, p, dy, pool, backend, dtype=None):
    """y and the gradients of every input (None for absent ones), optionally cast first."""
    cast = (lambda t: t.detach().to(dtype)) if dtype else (lambda t: t.detach().clone())
    x = cast(x).requires_grad_()
    p = {k: cast(t).requires_grad_() for k, t in p.items()}
    y = sacolor.self_attention(x, p["wq"], p["wk"], p["wv"], p["gamma"], pool=pool, backend=backend,
                               **{k: p[k] for k in ("bq", "bk", "bv", "wo", "bo") if k in p})
    grads = torch.autograd.grad(y, [x, *p.values()], cast(dy))
    return y.detach(), {"x": grads[0], **dict(zip(p, grads[1:]))}


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _assert_matches(got, want, tol, x, dy, gamma):
    y, grads = got
    y_ref, grads_ref = want
    assert _rel(y, y_ref) <= tol, f"y: relative error {_rel(y, y_ref):.2e}"
    for name, g in grads.items():
        g_ref = grads_ref[name]
        assert g.dtype == y.dtype and g.shape == g_ref.shape, name
        if name == "bk":
            # A key bias adds q.bk to a whole score row, which the softmax
            # ignores: its gradient is 0 up to rounding. Measure it against dbq.
            assert g.double().norm() <= tol * grads_ref["bq"].double().norm(), "bk"
        elif name == "gamma":
            # dgamma = sum(dy * attention): a sum of B*N*C terms of both signs,
            # so bound its error by the sum of their magnitudes, not by the sum.
            attention = (y_ref.double() - x.double()) / gamma.double()
            magnitude = (dy.double() * attention).abs().sum()
            assert (g.double() - g_ref.double()).abs().item() <= tol * magnitude, "gamma"
        else:
            assert _rel(g, g_ref) <= tol, f"grad of {name}: relative error {_rel(g, g_ref):.2e}"


def _check(inputs, tol, dtype=torch.float64):
    """Runs the cpu backend on ``inputs`` and the reference on them cast to ``dtype``."""
    x, p, dy, pool = inputs
    want = _run(*inputs, "reference", dtype)
    _assert_matches(_run(*inputs, "cpu"), want, tol, x, dy, p["gamma"])


# -- float64 gradcheck ---------------------------------------------------------------------


@pytest.mark.parametrize("pool", [1, 2])
@pytest.mark.parametrize("bias, out_proj, v", [(True, False, 4), (False, True, 3), (True, True, 6)])
def test_gradcheck_float64(pool, bias, out_proj, v):
    # N = 48 spans two float64 query blocks (32) and two key blocks (24), so the online softmax
    # merges blocks.
    x, p, _, _ = _make(2, 4, 6, 8, v, pool, bias, out_proj, torch.float64, qk=2)
    names = list(p)

    def f(x, *ts):
        t = dict(zip(names, ts))
        return sacolor.self_attention(
            x, t["wq"], t["wk"], t["wv"], t["gamma"], pool=pool, backend="cpu",
            **{k: t[k] for k in ("bq", "bk", "bv", "wo", "bo") if k in t})

    inputs = [x.requires_grad_(), *(t.requires_grad_() for t in p.values())]
    assert torch.autograd.gradcheck(f, inputs, fast_mode=True)


# -- float32 against the float64 reference ------------------------------------------------

FACTORS = {
    "batch": [1, 3],
    "c": [8, 24, 64, 96],
    "hw": [(7, 5), (33, 17), (64, 64)],
    "pool": [1, 2],
    "bias": [True, False],
    "out_proj": [True, False],
    "v_div": [1, 2, 8],  # v = C // v_div
}


def _feasible(case):
    even = all(s % 2 == 0 for s in case["hw"])
    return (case["pool"] == 1 or even) and (case["v_div"] == 1 or case["out_proj"])


def _cost(case):
    n = case["hw"][0] * case["hw"][1]
    return case["batch"] * n * (n // case["pool"] ** 2) * case["c"]


def _pairwise(factors, feasible, cost):
    """A covering set: every feasible pair of factor values appears in some case.

    Greedy (as in AETG): repeatedly take the feasible case covering the most
    uncovered pairs, the cheapest among ties; about 14 cases instead of 576.
    """
    names = list(factors)
    everything = [dict(zip(names, values)) for values in itertools.product(*factors.values())]
    everything = [c for c in everything if feasible(c)]

    def pairs(case):
        return {(a, case[a], b, case[b]) for a, b in itertools.combinations(names, 2)}

    uncovered = set().union(*(pairs(c) for c in everything))
    cases = []
    while uncovered:
        best = max(everything, key=lambda c: (len(pairs(c) & uncovered), -cost(c)))
        cases.append(best)
        uncovered -= pairs(best)
    return cases


FLOAT32_CASES = _pairwise(FACTORS, _feasible, _cost)


def _case_id(case):
    h, w = case["hw"]
    return (f"B{case['batch']}-C{case['c']}-{h}x{w}-pool{case['pool']}-v{case['c'] // case['v_div']}"
            f"{'-bias' if case['bias'] else ''}{'-outproj' if case['out_proj'] else ''}")


@pytest.mark.parametrize("case", FLOAT32_CASES, ids=_case_id)
def test_float32_matches_reference(case):
    c = case["c"]
    inputs = _make(case["batch"], c, *case["hw"], c // case["v_div"], case["pool"], case["bias"],
                   case["out_proj"])
    _check(inputs, 1e-5)


def test_bfloat16_within_1e2_of_reference_on_upcast_inputs(monkeypatch):
    """bf16 widened to float32 tiles (the best float32 path); the bf16 tiles (AMX,
    vdpbf16ps) round P and dS to bf16 and are held to PyTorch's bf16 instead
    (test_cpu_paths)."""
    monkeypatch.setenv("SACOLOR_CPU_ISA", torch.ops.sacolor_C.cpu_isa(torch.float32))
    _check(_make(2, 64, 16, 12, 32, 2, True, True, torch.bfloat16), 1e-2, torch.float32)


def test_float16_within_5e3_of_reference_on_upcast_inputs():
    """fp16 runs the fused kernel as bf16 does (fp32 inside), not the N x N reference."""
    inputs = _make(2, 64, 16, 12, 32, 2, True, True, torch.float16)
    assert sacolor.attention.backends.select(_op_inputs(inputs)).name == "cpu"
    _check(inputs, 5e-3, torch.float32)


def _op_inputs(inputs):
    x, p, _, pool = inputs
    return AttentionInputs.create(x, p["wq"], p.get("bq"), p["wk"], p.get("bk"), p["wv"], p.get("bv"),
                                  p.get("wo"), p.get("bo"), p["gamma"], pool)


# -- special values, layouts, determinism ----------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_propagate_like_the_reference(bad):
    x, p, dy, pool = _make(1, 16, 9, 11, 16, 1, True, False)
    x[0, 3, 4, 5] = bad
    with torch.no_grad():
        y = sacolor.self_attention(x, p["wq"], p["wk"], p["wv"], p["gamma"], bq=p["bq"], bk=p["bk"],
                                   bv=p["bv"], backend="cpu")
        y_ref = sacolor.self_attention(x, p["wq"], p["wk"], p["wv"], p["gamma"], bq=p["bq"],
                                       bk=p["bk"], bv=p["bv"], backend="reference")
    assert not torch.isfinite(y_ref).all()
    torch.testing.assert_close(y, y_ref, equal_nan=True, rtol=1e-5, atol=1e-5)


HUGE_SCORES = pytest.mark.parametrize("x_factor, scale", [(1e4, 1.0), (1.0, 1e7)], ids=["x*1e4", "scale=1e7"])


def _huge_score_gradients(x_factor: float, scale: float, pool: int) -> tuple[dict, dict, dict]:
    """Gradients of every input at scores of ~1e8 and more, where the softmax is one-hot:
    (cpu in float32, reference in float32, reference in float64)."""
    x, p, dy, _ = _make(1, 16, 10, 12, 16, pool, False, False)
    x = x * x_factor

    def grads(backend, dtype):
        t = {"x": x, **p}
        t = {k: v.detach().to(dtype).requires_grad_() for k, v in t.items()}
        y = sacolor.self_attention(t["x"], t["wq"], t["wk"], t["wv"], t["gamma"], pool=pool, scale=scale,
                                   backend=backend)
        return dict(zip(t, (g.double() for g in torch.autograd.grad(y, list(t.values()), dy.to(dtype)))))

    return grads("cpu", torch.float32), grads("reference", torch.float32), grads("reference", torch.float64)


@HUGE_SCORES
@pytest.mark.parametrize("pool", [1, 2])
def test_huge_scores_give_finite_gradients_like_the_reference(x_factor, scale, pool):
    # Scores of ~1e8 and more: a log-sum-exp that moved by one ulp between forward and
    # backward made exp2(score - lse) overflow to inf and the gradients NaN. The softmax
    # is one-hot here, so dv is exact.
    got, _, exact = _huge_score_gradients(x_factor, scale, pool)
    for name, g in got.items():
        assert torch.isfinite(g).all(), name
    torch.testing.assert_close(got["wv"], exact["wv"], rtol=1e-5, atol=1e-5 * exact["wv"].abs().max().item())


@HUGE_SCORES
@pytest.mark.parametrize("pool", [1, 2])
def test_huge_scores_give_dx_within_4x_of_the_reference_in_float32(x_factor, scale, pool):
    # One-hot softmax: dS = P (dP - delta) must come out exactly 0, or its rounding, times
    # |q| and |k| of ~1e4, swamps dx. The kernel sums delta = dO . (O - mean v) by the same
    # FMA chain as dP = dO . (v - mean v), so the two cancel bit for bit (tiles.h, row_dots).
    got, ref32, exact = _huge_score_gradients(x_factor, scale, pool)
    assert (got["x"] - exact["x"]).norm() <= 4 * (ref32["x"] - exact["x"]).norm()


def test_all_nan_scores_give_nan_not_zero():
    x, p, dy, pool = _make(1, 8, 4, 4, 8, 1, False, False)
    with torch.no_grad():
        y = sacolor.self_attention(x, p["wq"] * float("nan"), p["wk"], p["wv"], p["gamma"],
                                   backend="cpu")
    assert torch.isnan(y).all()


def test_channels_last_and_strided_inputs():
    module = sacolor.SelfAttention(16, backend="cpu")
    with torch.no_grad():
        module.gamma.fill_(0.7)
    x = torch.randn(2, 16, 10, 6, generator=_seed("layout"))
    y = module(x)
    y_cl = module(x.to(memory_format=torch.channels_last))
    assert y_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y_cl, y)
    torch.testing.assert_close(module(x.transpose(2, 3).contiguous().transpose(2, 3)), y)
    wq = module.query.weight.detach()[:, :, 0, 0]
    strided = torch.empty(wq.shape[1], wq.shape[0]).t().copy_(wq)  # same values, transposed strides
    y_strided = sacolor.self_attention(
        x, strided, module.key.weight, module.value.weight, module.gamma, bq=module.query.bias,
        bk=module.key.bias, bv=module.value.bias, backend="cpu")
    torch.testing.assert_close(y_strided, y)


def test_large_maps_take_several_blocks_per_task_and_agree_with_float32():
    # From 256 blocks up the forward gives each task four blocks of queries (the backward takes
    # up to eight blocks of keys per call on every map). The float64 tiles (blocks of 32
    # queries, 24 keys) do so from 8 192 positions, where the float32 forward (64 to
    # 112-blocks) still takes one block per task: 9 000 positions (282 blocks, 70.5 tasks)
    # checks the one path against the other.
    x, p, dy, pool = inputs = _make(1, 8, 90, 100, 8, 1, True, False)
    _assert_matches(_run(*inputs, "cpu"), _run(*inputs, "cpu", torch.float64), 2e-5, x, dy, p["gamma"])


def test_backward_is_deterministic_and_thread_count_independent():
    inputs = _make(2, 32, 24, 20, 32, 1, True, False)
    first = _run(*inputs, "cpu")
    again = _run(*inputs, "cpu")
    for name in first[1]:
        assert torch.equal(first[1][name], again[1][name]), name
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = _run(*inputs, "cpu")
    finally:
        torch.set_num_threads(threads)
    x, p, dy, _ = inputs
    _assert_matches(single, first, 1e-6, x, dy, p["gamma"])


# -- registration ---------------------------------------------------------------------------


def test_opcheck_cpu():
    x, p, _, pool = _make(2, 16, 4, 6, 8, 2, True, True)
    args = (x, p["wq"], p["bq"], p["wk"], p["bk"], p["wv"], p["bv"], p["wo"], p["bo"], p["gamma"],
            pool, 1.0, "cpu")
    torch.library.opcheck(torch.ops.sacolor.self_attention.default, args)
