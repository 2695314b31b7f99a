"""Every registered backend against the float64 reference, over what it declares.

The cases come from the registry: each backend, each dtype and pool it
declares, each layout in ``LAYOUTS``, forward and (when it has one) backward,
on a device it declares. A case the backend refuses here (no CUDA, no
compiled extension, a channel limit) is skipped with the backend's own
reason, so registering a new backend gets it tested with no new test code.
"""

from __future__ import annotations

import dataclasses
import zlib

import pytest
import torch
from attention_cases import Case, assert_close

from sacolor.attention.backends import registry
from sacolor.attention.inputs import AttentionInputs

# Error allowed against the float64 reference on the same input values, over
# max(1, |reference|) (``assert_close``): the rounding of the input dtype.
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 1e-2}
# Sides divisible by every declared pool (2); sizes that leave ragged tiles.
LAYOUTS = {
    "sagan": Case(channels=16, qk=2, v=16, height=6, width=10),  # qk = C/8, v = C, biases
    "biggan": Case(channels=16, qk=2, v=8, height=8, width=6, out_proj=True, bias=False),  # v = C/2, Wo
    "wide": Case(channels=24, qk=8, v=40, height=10, width=14, out_proj=True, batch=1, scale=0.3),
}


def _device(backend) -> torch.device:
    """A device the backend declares and this machine has (CPU when none: the refusal says why)."""
    for name in ("cuda", "cpu"):
        available = name == "cpu" or torch.cuda.is_available()
        if available and backend.supports_device(torch.device(name)):
            return torch.device(name)
    return torch.device("cpu")


def _params():
    for backend in registry.all_backends():
        for dtype in sorted(backend.dtypes, key=str):
            for pool in sorted(backend.pools):
                for layout in LAYOUTS:
                    name = str(dtype).removeprefix("torch.")
                    yield pytest.param(backend.name, dtype, pool, layout, id=f"{backend.name}-{name}-pool{pool}-{layout}")


@pytest.mark.parametrize("name, dtype, pool, layout", list(_params()))
def test_backend_matches_the_float64_reference(name, dtype, pool, layout):
    backend = registry.get(name)
    case = dataclasses.replace(LAYOUTS[layout], pool=pool)
    seed = zlib.crc32(f"{name}{dtype}{pool}{layout}".encode())
    t = case.tensors(dtype, _device(backend), seed=seed)
    refusals = backend.refusals(AttentionInputs.create(**t, pool=pool, scale=case.scale))
    if refusals:
        pytest.skip(f"{name}: {'; '.join(refusals)}")
    leaves = {key: value.requires_grad_() for key, value in t.items() if value is not None}
    exact = {key: None if value is None else value.detach().double().requires_grad_() for key, value in t.items()}
    with torch.set_grad_enabled(backend.supports_backward):
        y = case.call(t, name)
    y_exact = case.call(exact, "reference")
    assert y.dtype == dtype and y.device == t["x"].device
    assert_close("y", y, y_exact, TOLERANCE[dtype])
    if not backend.supports_backward:
        return
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y.device)
    grads = torch.autograd.grad(y, list(leaves.values()), dy.to(dtype))
    exact_grads = torch.autograd.grad(y_exact, [exact[key] for key in leaves], dy.double())
    for key, grad, exact_grad in zip(leaves, grads, exact_grads):
        assert grad.dtype == dtype, key
        assert_close(f"d{key}", grad, exact_grad, TOLERANCE[dtype])


def test_every_backend_is_tested():
    # The parametrisation above is the registry's: a registered backend cannot be left out.
    tested = {param.values[0] for param in _params()}
    assert tested == {backend.name for backend in registry.all_backends()}
    assert {"reference", "cpu", "triton"} <= tested
