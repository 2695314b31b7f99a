"""SelfAttention.from_state_dict computes what the public SAGAN modules compute.

Oracles: the re-implemented originals in ``originals.py``, each with random
weights, a non-zero gamma and (where spectrally normalised) power-iteration
vectors that have not converged, so an exact match needs the original's own
eval-mode sigma.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from originals import (
    BigGANAttention,
    FastaiSelfAttention,
    HeykeetaeSelfAttn,
    StudioGANSelfAttention,
)
from sacolor import SelfAttention
from sacolor.attention.sagan_weights import SOURCES, convert_state_dict

CHANNELS = 16


def _prepared(module: nn.Module, gamma_name: str, size: tuple[int, int]) -> nn.Module:
    """Random non-zero gamma; one training step of power iteration; then eval mode."""
    torch.manual_seed(1)
    with torch.no_grad():
        getattr(module, gamma_name).fill_(0.7)
        module.train()
        module(torch.randn(1, CHANNELS, *size))
    return module.eval()


def _output(module: nn.Module, x: Tensor) -> Tensor:
    y = module(x)
    return y[0] if isinstance(y, tuple) else y  # heykeetae also returns its attention map


# name -> (source, builder, gamma parameter's name, input H x W: even where the original pools)
CASES: dict[str, tuple[str, Callable[[], nn.Module], str, tuple[int, int]]] = {
    "heykeetae": ("heykeetae", lambda: HeykeetaeSelfAttn(CHANNELS), "gamma", (5, 7)),
    "biggan-sn": ("biggan", lambda: BigGANAttention(CHANNELS), "gamma", (6, 10)),
    "biggan-sn-2svs": ("biggan", lambda: BigGANAttention(CHANNELS, num_svs=2), "gamma", (6, 10)),
    "biggan-plain": ("biggan", lambda: BigGANAttention(CHANNELS, spectral_norm=False), "gamma", (6, 10)),
    "fastai-v1": ("fastai", lambda: FastaiSelfAttention(CHANNELS), "gamma", (5, 7)),
    "fastai-v2": ("fastai", lambda: FastaiSelfAttention(CHANNELS, v2=True), "gamma", (5, 7)),
    "deoldify": ("deoldify", lambda: FastaiSelfAttention(CHANNELS), "gamma", (3, 9)),
    "studiogan": ("studiogan", lambda: StudioGANSelfAttention(CHANNELS), "sigma", (6, 10)),
    "studiogan-sn": (
        "studiogan", lambda: StudioGANSelfAttention(CHANNELS, spectral_norm=True), "sigma", (6, 10)
    ),
}


def _case(name: str) -> tuple[str, nn.Module, Tensor]:
    source, build, gamma_name, size = CASES[name]
    torch.manual_seed(0)
    original = _prepared(build(), gamma_name, size)
    x = 3 * torch.randn(2, CHANNELS, *size)  # large enough that the softmax is far from uniform
    return source, original, x


def _assert_same_attention(ours: Tensor, theirs: Tensor, x: Tensor) -> None:
    """Compares the attention term gamma * (...), not y, which x would dominate."""
    expected = theirs - x
    torch.testing.assert_close(ours - x, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


@pytest.mark.parametrize("name", sorted(CASES))
def test_converted_module_matches_original(name: str) -> None:
    source, original, x = _case(name)
    module = SelfAttention.from_state_dict(original.state_dict(), source, backend="reference")
    with torch.no_grad():
        _assert_same_attention(module(x), _output(original, x), x)


def test_config_describes_each_layout() -> None:
    expected = {
        "heykeetae": dict(qk_channels=2, v_channels=16, out_proj=False, pool=1, bias=True),
        "biggan-sn": dict(qk_channels=2, v_channels=8, out_proj=True, pool=2, bias=False),
        "fastai-v1": dict(qk_channels=2, v_channels=16, out_proj=False, pool=1, bias=False),
        "studiogan-sn": dict(qk_channels=2, v_channels=8, out_proj=True, pool=2, bias=False),
    }
    for name, fields in expected.items():
        source, original, _ = _case(name)
        config, converted = convert_state_dict(original.state_dict(), source)
        assert config == {**fields, "in_channels": CHANNELS, "spectral_norm": False, "scale": 1.0}
        assert converted["gamma"].shape == (1,)
        assert converted["query.weight"].shape == (2, CHANNELS, 1, 1)


def test_fastai_key_conv_plays_the_query_role() -> None:
    _, original, _ = _case("fastai-v1")
    original.query = nn.utils.remove_spectral_norm(original.query)
    original.key = nn.utils.remove_spectral_norm(original.key)
    original.value = nn.utils.remove_spectral_norm(original.value)
    _, converted = convert_state_dict(original.state_dict(), "fastai")
    torch.testing.assert_close(converted["query.weight"][..., 0], original.key.weight)
    torch.testing.assert_close(converted["key.weight"][..., 0], original.query.weight)


def test_parametrized_spectral_norm_loads_as_its_effective_weight() -> None:
    torch.manual_seed(0)
    original = SelfAttention(CHANNELS, spectral_norm=True, bias=True)
    with torch.no_grad():
        original.gamma.fill_(0.5)
        original(torch.randn(1, CHANNELS, 4, 4))  # one training-mode power iteration
    original.eval()
    renamed = {
        key.replace("query.", "query_conv.").replace("key.", "key_conv.").replace("value.", "value_conv."): t
        for key, t in original.state_dict().items()
    }
    module = SelfAttention.from_state_dict(renamed, "heykeetae", backend="reference")
    for ours, theirs in ((module.query, original.query), (module.key, original.key), (module.value, original.value)):
        torch.testing.assert_close(ours.weight, theirs.weight)


# -- errors --------------------------------------------------------------------


def _heykeetae_state() -> dict[str, Tensor]:
    return dict(HeykeetaeSelfAttn(CHANNELS).state_dict())


def test_unknown_source_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown source 'sagan'") as err:
        convert_state_dict(_heykeetae_state(), "sagan")
    for source in SOURCES:
        assert source in str(err.value)


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda sd: sd.pop("key_conv.bias"), "key_conv.bias"),
        (lambda sd: sd.update({"extra.weight": torch.zeros(1)}), "extra.weight"),
        (lambda sd: sd.update({"query_conv.weight": torch.zeros(2, CHANNELS, 3, 3)}), "query_conv.weight"),
        (lambda sd: sd.update({"key_conv.weight": torch.zeros(3, CHANNELS, 1, 1)}), "key_conv.weight"),
        (lambda sd: sd.update({"value_conv.weight": torch.zeros(8, CHANNELS, 1, 1)}), "value_conv.weight"),
        (lambda sd: sd.update({"value_conv.bias": torch.zeros(3)}), "value_conv.bias"),
        (lambda sd: sd.update({"gamma": torch.zeros(2)}), "gamma"),
    ],
    ids=["missing", "unexpected", "kernel-3x3", "qk-mismatch", "value-channels", "bias-shape", "gamma"],
)
def test_bad_state_dict_names_key_and_source(edit, key: str) -> None:
    state = _heykeetae_state()
    edit(state)
    with pytest.raises(ValueError, match=rf"'heykeetae'.*{key}"):
        convert_state_dict(state, "heykeetae")


def test_bad_spectral_norm_vector_is_named() -> None:
    state = dict(FastaiSelfAttention(CHANNELS).state_dict())
    state["value.weight_u"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"'fastai'.*value\.weight_u"):
        convert_state_dict(state, "deoldify")


def test_state_dict_of_another_source_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'heykeetae'.*missing key 'query_conv"):
        convert_state_dict(BigGANAttention(CHANNELS).state_dict(), "heykeetae")


def test_non_tensor_values_are_a_type_error() -> None:
    state = _heykeetae_state()
    state["gamma"] = 0.5
    with pytest.raises(TypeError, match="gamma"):
        convert_state_dict(state, "heykeetae")
