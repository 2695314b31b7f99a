"""The reference backend (the oracle) against a plain autograd implementation,
and the op's registration (opcheck through it; torch.compile through it and cpu)."""

import dataclasses
import zlib

import pytest
import torch
import torch.nn.functional as F
from attention_cases import Case

import sacolor

LAYOUTS = {
    "heykeetae": Case(channels=16, qk=2, v=16, height=6, width=10, batch=3),
    "biggan": Case(channels=16, qk=2, v=8, height=6, width=10, pool=2, out_proj=True, bias=False, batch=3),
    "out_proj_bias": Case(channels=12, qk=3, v=6, height=6, width=10, out_proj=True, batch=3),
}
# Weights, biases and x all ~ N(0, 0.5^2): scores of a few units, far from a one-hot softmax.
STD = 0.5


def _params(case: Case, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, dict]:
    """x and the present weights of ``case`` (absent ones left out, as a user would)."""
    t = case.tensors(dtype, seed=seed, std=STD)
    return t.pop("x"), {name: value for name, value in t.items() if value is not None}


def _autograd_attention(x, p, pool, scale):
    """SAGAN attention the textbook way, differentiated by autograd: an independent oracle."""
    b, c, h, w = x.shape
    q = F.conv2d(x, p["wq"][:, :, None, None], p.get("bq")).flatten(2)  # (B, qk, N)
    k = F.conv2d(x, p["wk"][:, :, None, None], p.get("bk"))
    v = F.conv2d(x, p["wv"][:, :, None, None], p.get("bv"))
    if pool > 1:  # BigGAN order: project, then max-pool keys and values
        k, v = F.max_pool2d(k, pool), F.max_pool2d(v, pool)
    k, v = k.flatten(2), v.flatten(2)  # (B, qk, M), (B, v, M)
    attn = torch.softmax(scale * q.transpose(1, 2) @ k, dim=-1)  # (B, N, M)
    o = (v @ attn.transpose(1, 2)).reshape(b, -1, h, w)
    if "wo" in p:
        o = F.conv2d(o, p["wo"][:, :, None, None], p.get("bo"))
    return p["gamma"] * o + x


def _call(x, p, pool, scale, backend="reference"):
    return sacolor.self_attention(
        x, p["wq"], p["wk"], p["wv"], p["gamma"],
        bq=p.get("bq"), bk=p.get("bk"), bv=p.get("bv"), wo=p.get("wo"), bo=p.get("bo"),
        pool=pool, scale=scale, backend=backend,
    )


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_reference_matches_autograd(layout, scale):
    seed = zlib.crc32(f"{layout}{scale}".encode())
    case = LAYOUTS[layout]
    pool = case.pool
    x, p = _params(case, torch.float64, seed)
    leaves = [x] + list(p.values())
    for t in leaves:
        t.requires_grad_(True)
    dy = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))

    y = _call(x, p, pool, scale)
    y_ref = _autograd_attention(x, p, pool, scale)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    grads = torch.autograd.grad(y, leaves, dy)
    grads_ref = torch.autograd.grad(y_ref, leaves, dy)
    for name, g, g_ref in zip(["x", *p], grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10, msg=f"grad of {name}")


def test_reference_gradcheck():
    case = dataclasses.replace(LAYOUTS["biggan"], height=4, width=6, batch=2, bias=True)
    pool = case.pool
    x, p = _params(case, torch.float64, 0)
    x.requires_grad_(True)
    p = {k: t.requires_grad_(True) for k, t in p.items()}
    names = list(p)

    def f(x, *ts):
        return _call(x, dict(zip(names, ts)), pool, 1.0)

    assert torch.autograd.gradcheck(f, (x, *p.values()))


def test_opcheck_reference():
    case = dataclasses.replace(LAYOUTS["biggan"], height=4, width=6, batch=2, bias=True)
    pool = case.pool
    x, p = _params(case, torch.float32, 1)
    args = (x, p["wq"], p["bq"], p["wk"], p["bk"], p["wv"], p["bv"], p["wo"], p["bo"], p["gamma"], pool, 1.0, "reference")
    torch.library.opcheck(torch.ops.sacolor.self_attention.default, args)


def test_channels_last_keeps_layout_and_values():
    x, p = _params(dataclasses.replace(LAYOUTS["heykeetae"], height=5, width=7, batch=2), torch.float32, 2)
    y = _call(x.to(memory_format=torch.channels_last), p, 1, 1.0)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, _call(x, p, 1, 1.0))
    y_strided = _call(x.transpose(2, 3).contiguous().transpose(2, 3), p, 1, 1.0)
    torch.testing.assert_close(y_strided, _call(x, p, 1, 1.0))


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_torch_compile_fullgraph(backend):
    """torch.compile traces the op without a graph break, forward and backward, on each CPU backend."""
    if backend not in sacolor.available_backends():
        pytest.skip(f"the {backend} backend is not built")
    module = sacolor.SelfAttention(16, backend=backend)
    with torch.no_grad():
        module.gamma.fill_(0.5)
    x = torch.randn(2, 16, 6, 5, generator=torch.Generator().manual_seed(3), requires_grad=True)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    y.square().sum().backward()
    g_compiled = x.grad.clone()
    x.grad = None
    y_eager = module(x)
    y_eager.square().sum().backward()
    torch.testing.assert_close(y, y_eager)
    torch.testing.assert_close(g_compiled, x.grad)


@pytest.mark.parametrize("magnitude", [1e2, 2e4, 2e6, 1e8])
def test_reference_is_stable_at_large_scores(magnitude):
    # Issue 18, item 2: the oracle's error against float64 was 0.086 at |score| ~ 2e4 (cpu: 0.004)
    # and 75 at 2e6, outside the values' range: its weights no longer summed to 1.
    from attention_cases import Case

    from sacolor.attention.backends import registry
    from sacolor.attention.inputs import AttentionInputs

    if "cpu" not in sacolor.available_backends():
        pytest.skip("the cpu backend is not built")
    case = Case(channels=8, qk=4, v=8, height=7, width=9, bias=False)
    t = {**case.tensors(torch.float32, seed=4), "gamma": torch.ones(1)}
    x = t["x"].flatten(2)
    largest = ((t["wq"] @ x).transpose(1, 2) @ (t["wk"] @ x)).abs().max().item()
    factor = (magnitude / largest) ** 0.5  # the largest |score| is about `magnitude`
    t.update(wq=t["wq"] * factor, wk=t["wk"] * factor)
    exact = registry.get("reference").forward(case.oracle(t)).o
    values = (t["wv"].double() @ x.double()).transpose(1, 2)  # (B, M, v)
    errors = {}
    for name in ("reference", "cpu"):
        o = registry.get(name).forward(AttentionInputs.create(**t, pool=1, scale=1.0)).o.double()
        slack = 1e-5 * values.abs().amax()
        assert (o >= values.amin(dim=1, keepdim=True) - slack).all(), f"{name}: below the values' range"
        assert (o <= values.amax(dim=1, keepdim=True) + slack).all(), f"{name}: above the values' range"
        errors[name] = (o - exact).abs().max().item()
    assert errors["reference"] <= max(2 * errors["cpu"], 1e-5), errors
