"""Load the weights of public SAGAN attention modules into ``SelfAttention``.

Each public implementation names its 1x1 convs differently, and in fastai /
DeOldify the conv called ``key`` plays the query role (its softmax runs over
the positions projected by ``query``). ``convert_state_dict`` maps a state
dict onto ``SelfAttention``'s keys (``query``, ``key``, ``value``, ``out``,
``gamma``) and turns spectral normalisation into the effective weights the
original uses in eval mode, so a plain (non-SN) module computes the same
function.

BigGAN and StudioGAN max-pool *after* their phi / g projections
(``max_pool(W x)``), which is the op's own ``pool=2`` order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

# BigGAN-PyTorch's SN mixin default; its eps is not stored in the state dict.
BIGGAN_SN_EPS = 1e-12


@dataclass(frozen=True)
class _Layout:
    """How one public module stores SelfAttention's parameters."""

    convs: dict[str, str]  # our role -> their conv's name
    gamma: str
    bias: bool
    pool: int
    kernel_dims: int  # 2 for Conv2d, 1 for Conv1d
    # Prefixes a conv's tensors may sit under, e.g. fastai v2's ConvLayer is a
    # Sequential, so its conv's tensors are "query.0.*".
    wrappers: tuple[str, ...] = ("",)


_LAYOUTS: dict[str, _Layout] = {
    "heykeetae": _Layout(
        convs={"query": "query_conv", "key": "key_conv", "value": "value_conv"},
        gamma="gamma", bias=True, pool=1, kernel_dims=2,
    ),
    "biggan": _Layout(
        convs={"query": "theta", "key": "phi", "value": "g", "out": "o"},
        gamma="gamma", bias=False, pool=2, kernel_dims=2,
    ),
    # fastai: beta = softmax_i(f_i . g_j), o_j = sum_i h_i beta_ij with f = query(x),
    # g = key(x): output position j asks with key(x)_j and is answered by query(x)_i.
    "fastai": _Layout(
        convs={"query": "key", "key": "query", "value": "value"},
        gamma="gamma", bias=False, pool=1, kernel_dims=1, wrappers=("", "0."),
    ),
    "studiogan": _Layout(
        convs={
            "query": "conv1x1_theta", "key": "conv1x1_phi",
            "value": "conv1x1_g", "out": "conv1x1_attn",
        },
        gamma="sigma", bias=False, pool=2, kernel_dims=2,
    ),
}
_ALIASES = {"deoldify": "fastai"}

SOURCES: tuple[str, ...] = (*_LAYOUTS, *_ALIASES)


class _Reader:
    """A state dict whose keys are consumed one by one, so leftovers can be reported."""

    def __init__(self, state_dict: Mapping[str, Tensor], source: str) -> None:
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of tensors; got {type(state_dict).__name__}")
        for key, value in state_dict.items():
            if not isinstance(value, Tensor):
                raise TypeError(
                    f"state_dict[{key!r}] must be a torch.Tensor for source {source!r}; "
                    f"got {type(value).__name__}"
                )
        self.source = source
        self._tensors = dict(state_dict)
        self._unused = set(self._tensors)

    def has(self, key: str) -> bool:
        return key in self._tensors

    def take(self, key: str) -> Tensor:
        if key not in self._tensors:
            raise ValueError(f"{self.error_prefix()}missing key {key!r}")
        self._unused.discard(key)
        return self._tensors[key].detach()

    def check_all_used(self) -> None:
        if self._unused:
            raise ValueError(f"{self.error_prefix()}unexpected keys {sorted(self._unused)}")

    def expect_shape(self, key: str, tensor: Tensor, shape: tuple[int, ...]) -> None:
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"{self.error_prefix()}{key!r} has shape {tuple(tensor.shape)}; expected {shape}"
            )

    def error_prefix(self) -> str:
        return f"state dict for source {self.source!r}: "


# (weight, u, v) key suffixes of the two spectral-norm APIs in torch.
_SPECTRAL_NORM_KEYS = (
    ("weight_orig", "weight_u", "weight_v"),  # torch.nn.utils.spectral_norm
    (  # torch.nn.utils.parametrizations.spectral_norm
        "parametrizations.weight.original",
        "parametrizations.weight.0._u",
        "parametrizations.weight.0._v",
    ),
)
_WEIGHT_KEYS = ("weight", *(names[0] for names in _SPECTRAL_NORM_KEYS))


def _as_matrix(reader: _Reader, key: str, weight: Tensor) -> Tensor:
    """(out, in, k...) -> (out, in * k...), as both spectral norms reshape it."""
    if weight.dim() < 2:
        raise ValueError(
            f"{reader.error_prefix()}{key!r} must be a conv weight; got shape {tuple(weight.shape)}"
        )
    return weight.reshape(weight.shape[0], -1)


def _spectral_sigma(weight_mat: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """torch's spectral norms in eval mode: sigma = u . (W v), from the stored vectors."""
    return torch.dot(u, torch.mv(weight_mat, v))


def _biggan_sigma(weight_mat: Tensor, u: Tensor) -> Tensor:
    """BigGAN's SN.W_() in eval mode: one power-iteration step from u0, not written back.

    The first singular value needs no Gram-Schmidt (nothing precedes it), so
    extra u1, u2... buffers do not change it; sv0 is only a training log.
    """
    v = F.normalize(u @ weight_mat, eps=BIGGAN_SN_EPS)
    u = F.normalize(v @ weight_mat.t(), eps=BIGGAN_SN_EPS)
    return ((v @ weight_mat.t()) @ u.t()).squeeze()


def _effective_weight(reader: _Reader, prefix: str) -> tuple[str, Tensor]:
    """The weight a conv at ``prefix`` applies in eval mode, and the key it came from.

    Understands plain weights, both torch spectral norms, and BigGAN's SN mixin
    (``weight`` with ``u0``/``sv0`` buffers).
    """
    for names in _SPECTRAL_NORM_KEYS:
        weight_key, u_key, v_key = (prefix + name for name in names)
        if reader.has(weight_key):
            weight, u, v = reader.take(weight_key), reader.take(u_key), reader.take(v_key)
            weight_mat = _as_matrix(reader, weight_key, weight)
            reader.expect_shape(u_key, u, (weight_mat.shape[0],))
            reader.expect_shape(v_key, v, (weight_mat.shape[1],))
            return weight_key, weight / _spectral_sigma(weight_mat, u, v)
    weight_key = prefix + "weight"
    weight = reader.take(weight_key)
    if not reader.has(prefix + "u0"):
        return weight_key, weight
    weight_mat = _as_matrix(reader, weight_key, weight)
    u0 = reader.take(prefix + "u0")
    reader.expect_shape(prefix + "u0", u0, (1, weight_mat.shape[0]))
    index = 0
    while reader.has(f"{prefix}u{index}") or reader.has(f"{prefix}sv{index}"):
        reader.take(f"{prefix}u{index}")
        reader.take(f"{prefix}sv{index}")
        index += 1
    return weight_key, weight / _biggan_sigma(weight_mat, u0)


def _find_prefix(reader: _Reader, layout: _Layout, conv: str) -> str:
    """``conv.`` or, for wrapped layers, e.g. ``conv.0.``, whichever the dict holds."""
    for wrapper in layout.wrappers:
        prefix = f"{conv}.{wrapper}"
        if any(reader.has(prefix + name) for name in _WEIGHT_KEYS):
            return prefix
    return f"{conv}.{layout.wrappers[0]}"


def _conv_weight(reader: _Reader, layout: _Layout, conv: str) -> tuple[str, Tensor]:
    """A 1x1 conv's effective weight as (out, in, 1, 1), plus its key for error messages."""
    key, weight = _effective_weight(reader, _find_prefix(reader, layout, conv))
    if weight.dim() != 2 + layout.kernel_dims or any(s != 1 for s in weight.shape[2:]):
        kernel = "(out, in" + ", 1" * layout.kernel_dims + ")"
        raise ValueError(
            f"{reader.error_prefix()}{key!r} must be a 1x1 conv weight {kernel}; "
            f"got shape {tuple(weight.shape)}"
        )
    return key, weight.reshape(weight.shape[0], weight.shape[1], 1, 1)


def _canonical(source: str) -> str:
    if not isinstance(source, str) or source.lower() not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of: {', '.join(SOURCES)}")
    source = source.lower()
    return _ALIASES.get(source, source)


def convert_state_dict(
    state_dict: Mapping[str, Tensor], source: str
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Maps a public SAGAN module's state dict onto ``SelfAttention``.

    Args:
        state_dict: the original module's ``state_dict()`` (its own keys, no prefix).
        source: "heykeetae" (Self-Attention-GAN ``Self_Attn``), "biggan"
            (BigGAN-PyTorch ``Attention``), "fastai" or "deoldify" (fastai
            ``SelfAttention``, v1 or v2 layout), "studiogan" (StudioGAN
            ``SelfAttention``, with or without spectral norm).

    Returns:
        (config, converted): ``SelfAttention`` constructor keyword arguments
        (without ``backend``), and a state dict for that module: ``query.weight``
        (qk, C, 1, 1), ``key.weight`` (qk, C, 1, 1), ``value.weight`` (v, C, 1, 1),
        ``out.weight`` (C, v, 1, 1) when the source has an output projection,
        ``*.bias`` when it has biases, and ``gamma`` (1,). Spectrally normalised
        weights arrive divided by the sigma the original uses in eval mode.

    Raises:
        ValueError: an unknown source; a missing or unexpected key; a shape that
            does not fit the source (the message names the key and the source).
        TypeError: a state dict that is not a mapping of tensors.
    """
    source = _canonical(source)
    layout = _LAYOUTS[source]
    reader = _Reader(state_dict, source)

    weights: dict[str, tuple[str, Tensor]] = {
        role: _conv_weight(reader, layout, conv) for role, conv in layout.convs.items()
    }
    query = weights["query"][1]
    value = weights["value"][1]
    qk_channels, channels = query.shape[:2]
    v_channels = value.shape[0]
    has_out = "out" in weights
    expected = {
        "query": (qk_channels, channels),
        "key": (qk_channels, channels),
        "value": (v_channels if has_out else channels, channels),
        "out": (channels, v_channels),
    }
    for role, (key, weight) in weights.items():
        reader.expect_shape(key, weight, (*expected[role], 1, 1))

    converted: dict[str, Tensor] = {f"{role}.weight": w for role, (_, w) in weights.items()}
    if layout.bias:
        for role, conv in layout.convs.items():
            key = f"{_find_prefix(reader, layout, conv)}bias"
            bias = reader.take(key)
            reader.expect_shape(key, bias, (expected[role][0],))
            converted[f"{role}.bias"] = bias
    gamma = reader.take(layout.gamma)
    if gamma.numel() != 1:
        raise ValueError(
            f"{reader.error_prefix()}{layout.gamma!r} must have one element; "
            f"got shape {tuple(gamma.shape)}"
        )
    converted["gamma"] = gamma.reshape(1)
    reader.check_all_used()

    config = {
        "in_channels": int(channels),
        "qk_channels": int(qk_channels),
        "v_channels": int(v_channels),
        "out_proj": has_out,
        "pool": layout.pool,
        "bias": layout.bias,
        "spectral_norm": False,
        "scale": 1.0,
    }
    return config, {k: v.contiguous() for k, v in converted.items()}
