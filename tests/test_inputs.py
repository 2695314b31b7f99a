"""Bad inputs get a clear error naming the argument; backend choice is explainable.

Where a backend must run these tests name ``reference``: the others may be
missing from this build, and their own tests cover them.
"""

from __future__ import annotations

import pytest
import torch

import sacolor
from sacolor import SelfAttention, self_attention
from sacolor.attention.backends import registry
from sacolor.attention.backends.reference import ReferenceBackend
from sacolor.attention.inputs import AttentionInputs

C, QK = 8, 2


def _weights(dtype: torch.dtype = torch.float32, device: str = "cpu") -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "wq": torch.randn(QK, C, dtype=dtype, device=device),
        "wk": torch.randn(QK, C, dtype=dtype, device=device),
        "wv": torch.randn(C, C, dtype=dtype, device=device),
        "gamma": torch.tensor(0.5, dtype=dtype, device=device),
    }


def _x(*shape: int, dtype: torch.dtype = torch.float32, device: str = "cpu") -> torch.Tensor:
    return torch.randn(*(shape or (2, C, 4, 6)), dtype=dtype, device=device)


def _call(x, backend: str = "reference", pool: int = 1, **overrides):
    args = {**_weights(), **overrides}
    return self_attention(x, args["wq"], args["wk"], args["wv"], args["gamma"], pool=pool, backend=backend)


# -- shapes, devices, dtypes -----------------------------------------------------


@pytest.mark.parametrize("shape", [(C, 4, 6), (1, 2, C, 4, 6)], ids=["3-D", "5-D"])
def test_wrong_ndim_names_x(shape) -> None:
    with pytest.raises(ValueError, match=r"x must be 4-D \(B, C, H, W\)"):
        _call(torch.randn(*shape))


def test_x_that_is_not_a_tensor_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        _call(_x().numpy())


@pytest.mark.parametrize(
    "name, weight", [("wq", torch.randn(QK, C + 1)), ("wk", torch.randn(QK, C - 1)), ("wv", torch.randn(C, 3))]
)
def test_channel_mismatch_names_the_weight(name: str, weight: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=rf"{name} has shape .*must equal x's channels C={C}"):
        _call(_x(), **{name: weight})


def test_module_channel_mismatch_names_x_and_in_channels() -> None:
    module = SelfAttention(C, backend="reference")
    with pytest.raises(ValueError, match=rf"x has {C + 2} channels .*in_channels={C}"):
        module(_x(1, C + 2, 4, 4))


@pytest.mark.parametrize("size", [(5, 6), (4, 7)])
def test_odd_size_with_pool_2_names_pool(size) -> None:
    with pytest.raises(ValueError, match=r"pool=2 needs H and W divisible by 2"):
        _call(_x(1, C, *size), pool=2)


def test_mixed_devices_name_the_tensor_and_both_devices() -> None:
    wq = _weights(device="meta")["wq"]
    with pytest.raises(ValueError, match=r"wq is on meta but x is on cpu"):
        _call(_x(), wq=wq)


def test_mixed_dtypes_name_the_tensor_and_both_dtypes() -> None:
    with pytest.raises(TypeError, match=r"wk has dtype torch.float64 but x has torch.float32"):
        _call(_x(), wk=_weights(torch.float64)["wk"])


def test_unsupported_dtype_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"x has dtype torch.int64"):
        _call(torch.ones(1, C, 2, 2, dtype=torch.long))


# -- backends ----------------------------------------------------------------------


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown backend 'fastest'; choose one of: auto, .*reference"):
        _call(_x(), backend="fastest")


def test_backend_on_a_device_it_does_not_support() -> None:
    w = _weights(device="meta")
    x = _x(device="meta")
    with pytest.raises(ValueError, match=r"backend 'cpu' cannot run these inputs: .*device meta; supports cpu"):
        self_attention(x, w["wq"], w["wk"], w["wv"], w["gamma"], backend="cpu")


def test_backend_without_the_dtype() -> None:
    w = _weights(torch.float64)
    with pytest.raises(ValueError, match=r"backend 'triton' cannot run these inputs: .*dtype float64"):
        self_attention(_x(dtype=torch.float64), w["wq"], w["wk"], w["wv"], w["gamma"], backend="triton")


def _inputs(dtype: torch.dtype = torch.float32) -> AttentionInputs:
    w = _weights(dtype)
    return AttentionInputs.create(_x(dtype=dtype), w["wq"], None, w["wk"], None, w["wv"], None,
                                  None, None, w["gamma"])


def test_environment_variable_overrides_auto_but_not_a_named_backend(monkeypatch) -> None:
    monkeypatch.setenv(registry.ENV_VAR, "reference")
    assert registry.select(_inputs(), "auto").name == "reference"
    assert registry.select(_inputs(), None).name == "reference"
    monkeypatch.setenv(registry.ENV_VAR, "no-such-backend")
    assert registry.select(_inputs(), "reference").name == "reference"
    with pytest.raises(ValueError, match=f"{registry.ENV_VAR}='no-such-backend' is not a backend; set it to one of"):
        _call(_x(), backend="auto")


@pytest.mark.parametrize("value, message", [
    ("bogus", "SACOLOR_BACKEND='bogus' is not a backend; set it to one of auto, cpu, reference, triton"),
    ("CPU", "SACOLOR_BACKEND='CPU' is not a backend"),
    (" cpu", "SACOLOR_BACKEND=' cpu' is not a backend"),
    ("triton", "SACOLOR_BACKEND=triton cannot run these inputs: .*Unset SACOLOR_BACKEND \\(or set it to auto\\)"),
])
def test_a_bad_environment_backend_names_the_variable(monkeypatch, value, message) -> None:
    # Issue 18, item 19: these errors advised "use backend='auto'", which the caller already did.
    monkeypatch.setenv(registry.ENV_VAR, value)
    monkeypatch.setattr(registry.TritonBackend, "unavailable_reason", lambda self: None)  # as on a GPU machine
    with pytest.raises(ValueError, match=message) as error:
        _call(_x(), backend="auto")
    assert "backend='auto'" not in str(error.value)


def test_available_backends_lists_runnable_names_reference_last() -> None:
    names = sacolor.available_backends()
    assert names[-1] == "reference"
    assert len(set(names)) == len(names)
    known = {b.name for b in registry.all_backends()}
    assert set(names) <= known
    for name in known - set(names):
        assert registry.get(name).unavailable_reason()  # left out only with a reason


def test_explain_names_the_choice_and_every_backend(monkeypatch) -> None:
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    w = _weights(torch.float64)
    report = sacolor.explain(_x(dtype=torch.float64), w["wq"], w["wk"], w["wv"])
    first, *lines = report.splitlines()
    assert first.startswith("auto -> ")
    assert "float64" in lines[0]  # the inputs line
    for backend in registry.all_backends():
        line = next(line for line in lines if line.strip().startswith(f"{backend.name}:"))
        reasons = backend.refusals(_inputs(torch.float64)) or backend.auto_refusals(_inputs(torch.float64))
        assert line.strip().endswith("ok") == (not reasons)
    assert "dtype float64" in next(line for line in lines if line.strip().startswith("triton:"))
    assert first == f"auto -> {registry.select(_inputs(torch.float64), 'auto').name}"


def test_module_explain_reports_what_its_forward_runs(monkeypatch) -> None:
    # Issue 12, item 19: sacolor.explain needs every weight; the module knows its own.
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    module = SelfAttention(16, qk_channels=4, v_channels=8, out_proj=True, pool=2)
    x = _x(2, 16, 8, 10)
    w = module.projection_weights()
    expected = sacolor.explain(x, w["wq"], w["wk"], w["wv"], module.gamma, bq=w["bq"], bk=w["bk"], bv=w["bv"],
                               wo=w["wo"], bo=w["bo"], pool=2)
    assert module.explain(x) == expected and expected.startswith("auto -> ")


# -- gamma = 0 ----------------------------------------------------------------------


@pytest.fixture
def attention_forbidden(monkeypatch):
    """Makes running the reference attention an error, to see whether it runs."""

    def refuse(self, inputs):
        raise RuntimeError("attention ran")

    monkeypatch.setattr(ReferenceBackend, "forward", refuse)


def test_zero_gamma_without_grad_returns_x_without_attention(attention_forbidden) -> None:
    module = SelfAttention(C, backend="reference")
    x = _x()
    with torch.no_grad():
        assert module(x) is x
    module.requires_grad_(False)
    assert module(x) is x


def test_zero_gamma_with_grad_still_runs_attention(attention_forbidden) -> None:
    module = SelfAttention(C, backend="reference")  # gamma needs a gradient even at 0
    with pytest.raises(RuntimeError, match="attention ran"):
        module(_x())


def test_zero_gamma_still_validates_the_backend() -> None:
    module = SelfAttention(C, backend="fastest")
    with torch.no_grad(), pytest.raises(ValueError, match="unknown backend 'fastest'"):
        module(_x())


def test_nonzero_gamma_does_not_shortcut(attention_forbidden) -> None:
    module = SelfAttention(C, backend="reference")
    with torch.no_grad():
        module.gamma.fill_(1e-3)
        with pytest.raises(RuntimeError, match="attention ran"):
            module(_x())


def test_explain_follows_the_environment_override(monkeypatch) -> None:
    monkeypatch.setenv(registry.ENV_VAR, "reference")
    w = _weights(torch.float32)
    first = sacolor.explain(_x(), w["wq"], w["wk"], w["wv"]).splitlines()[0]
    assert first == f"auto -> reference (from {registry.ENV_VAR}=reference)"


# -- op-level validation: gamma, scale, the raw op, meta tensors --------------------


def test_gamma_none_names_gamma() -> None:
    w = _weights()
    with pytest.raises(TypeError, match=r"gamma must be a one-element torch.Tensor or a number; got NoneType"):
        self_attention(_x(), w["wq"], w["wk"], w["wv"], None)


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_scale_is_refused(scale: float) -> None:
    w = _weights()
    with pytest.raises(ValueError, match=r"scale must be finite"):
        self_attention(_x(), w["wq"], w["wk"], w["wv"], w["gamma"], scale=scale)
    with pytest.raises(ValueError, match=r"scale must be finite"):
        torch.ops.sacolor.self_attention(
            _x(), w["wq"], None, w["wk"], None, w["wv"], None, None, None, w["gamma"], 1, scale, "reference"
        )


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_raw_op_refuses_key_rows_unlike_query_rows(backend: str) -> None:
    w = _weights()
    wk = torch.randn(QK + 1, C)
    with pytest.raises(ValueError, match=rf"wq and wk must have the same output channels; got {QK} and {QK + 1}"):
        torch.ops.sacolor.self_attention(
            _x(), w["wq"], None, wk, None, w["wv"], None, None, None, w["gamma"], 1, 1.0, backend
        )


def test_auto_on_meta_tensors_reads_no_values() -> None:
    """Meta tensors have shapes and no values: choosing a backend and the gamma
    short cut must not read one (``.item()`` on a meta tensor raises)."""
    w = _weights(device="meta")
    x = _x(device="meta")
    with torch.no_grad():
        y = self_attention(x, w["wq"], w["wk"], w["wv"], torch.zeros((), device="meta"))
    assert y.device.type == "meta" and y.shape == x.shape


def test_auto_refuses_the_reference_where_its_scores_would_not_fit() -> None:
    """On a device no fused backend runs on (meta here, CUDA without Triton in
    tests/test_gpu.py), a large N is an error naming the fix, not an N x N allocation."""
    w = _weights(device="meta")
    x = _x(1, C, 128, 128, device="meta")
    with pytest.raises(NotImplementedError, match=r"(?s)reference: auto does not pick it.*1.0 GiB.*pip install triton"):
        self_attention(x, w["wq"], w["wk"], w["wv"], w["gamma"])
    assert "reference: auto does not pick it" in sacolor.explain(x, w["wq"], w["wk"], w["wv"])
    y = self_attention(x, w["wq"], w["wk"], w["wv"], w["gamma"], backend="reference")  # named: runs
    assert y.shape == x.shape


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_zero_gamma_short_cut_is_not_traced_as_a_constant() -> None:
    """torch.jit.trace at gamma = 0 must record the attention, not the identity."""
    w = _weights()
    x = _x()

    def attend(x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        return self_attention(x, w["wq"], w["wk"], w["wv"], gamma, backend="reference")

    with torch.no_grad():
        traced = torch.jit.trace(attend, (x, torch.zeros(())), check_trace=False)
        gamma = torch.tensor(0.5)
        assert torch.allclose(traced(x, gamma), attend(x, gamma))
        assert not torch.allclose(traced(x, gamma), x)


def test_double_backward_is_a_clear_error() -> None:
    """create_graph=True through the op (an R1 penalty) says there is no double backward."""
    w = {name: t.requires_grad_() for name, t in _weights().items()}
    x = _x().requires_grad_()
    y = self_attention(x, w["wq"], w["wk"], w["wv"], w["gamma"], backend="reference")
    (dx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r"no double backward.*R1 or gradient penalty"):
        dx.square().sum().backward()


def test_an_empty_batch_gives_an_empty_output_as_conv2d_does() -> None:
    # Issue 18, item 24: SelfAttention refused batch 0, which nn.Conv2d accepts.
    module = SelfAttention(C, backend="reference")
    x = torch.zeros(0, C, 6, 5, requires_grad=True)
    y = module(x)
    assert y.shape == (0, C, 6, 5) and y.dtype == x.dtype
    y.sum().backward()
    assert module.gamma.grad is not None and module.gamma.grad.abs().sum() == 0
    assert torch.nn.Conv2d(C, C, 1)(x).shape == (0, C, 6, 5)  # the behaviour matched
    with pytest.raises(ValueError, match="non-zero batch"):  # the raw op still refuses it
        torch.ops.sacolor.self_attention(x.detach(), *[None if t is None else t.detach() for t in (
            module.query.weight.flatten(1), module.query.bias, module.key.weight.flatten(1), module.key.bias,
            module.value.weight.flatten(1), module.value.bias, None, None, module.gamma)], 1, 1.0, "reference")


def test_module_explain_speaks_of_the_module() -> None:
    # Issue 18, item 24: explain() with the wrong channel count blamed "wq"; a numpy array gave a raw TypeError.
    module = SelfAttention(C)
    with pytest.raises(ValueError, match=f"x has {C + 1} channels .* built with in_channels={C}"):
        module.explain(_x(2, C + 1, 4, 4))
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got ndarray; convert it with torch.as_tensor"):
        module.explain(_x().numpy())
