"""Pieces the generator and the discriminator share: the layer choices both
take (``LayerOptions``), norms, weight init, spectral norm, and where
self-attention goes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from torch import nn

from ..attention.module import SelfAttention

NORMS = ("batch", "instance", "none")


@dataclass(frozen=True)
class LayerOptions:
    """The layer choices the generator and the discriminator both take.

    Args:
        norm: "batch", "instance" or "none".
        sa_sizes: feature sizes (shorter side) that get self-attention, e.g. (64,).
        spectral_norm: spectrally normalise every conv.
        input_size: (H, W) or one int, the input the network is built for;
            ``sa_sizes`` refer to it.
        attention_backend: backend of the attention op ("auto" picks the best).

    Raises:
        ValueError: a bad norm or input size.
    """

    norm: str = "batch"
    sa_sizes: Sequence[int] = ()
    spectral_norm: bool = False
    input_size: int | Sequence[int] = (128, 128)
    attention_backend: str = "auto"

    def __post_init__(self) -> None:
        norm_layer(self.norm)  # raises for an unknown norm
        object.__setattr__(self, "sa_sizes", tuple(self.sa_sizes))
        object.__setattr__(self, "input_size", _size_pair(self.input_size))

    def make_norm(self, channels: int) -> nn.Module:
        """The norm layer for ``channels`` channels."""
        return norm_layer(self.norm)(channels)

    @property
    def conv_bias(self) -> bool:
        """Whether convs followed by the norm need a bias (see ``conv_bias``)."""
        return conv_bias(self.norm)

    def attention(self, channels: int) -> nn.Module:
        """A self-attention layer on ``channels`` channels."""
        return SelfAttention(channels, spectral_norm=self.spectral_norm, backend=self.attention_backend)

    def attention_levels(self, levels: int, what: str) -> set[int]:
        """The levels (of ``levels``) that get self-attention; see ``attention_levels``."""
        return attention_levels(self.sa_sizes, self.input_size, levels, what)

    def initialize(self, network: nn.Module) -> None:
        """pix2pix init of ``network``'s weights, then spectral norm when chosen."""
        init_weights(network)
        if self.spectral_norm:
            apply_spectral_norm(network)


def _size_pair(input_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(input_size, int):
        return (input_size, input_size)
    pair = tuple(int(s) for s in input_size)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"input_size must be an int or (H, W); got {input_size!r}")
    return pair


def norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """A factory ``channels -> norm module`` for "batch", "instance" or "none"."""
    if norm == "batch":
        return lambda c: nn.BatchNorm2d(c)
    if norm == "instance":
        # pix2pix's choice: no affine parameters, no running statistics.
        return lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
    if norm == "none":
        return lambda c: nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}; got {norm!r}")


def conv_bias(norm: str) -> bool:
    """BatchNorm's shift makes a conv bias redundant; other norms need it (as pix2pix)."""
    return norm != "batch"


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """pix2pix / DCGAN init: conv weights N(0, std), norm scales N(1, std), biases 0.

    Self-attention projections keep PyTorch's default init (SAGAN does), and
    their gamma stays 0 so attention starts as the identity.
    """
    attention_convs = {
        id(c) for m in module.modules() if isinstance(m, SelfAttention) for c in m.modules()
    }
    for m in module.modules():
        if id(m) in attention_convs:
            continue
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def apply_spectral_norm(module: nn.Module) -> None:
    """Spectrally normalises every conv of ``module`` (attention convs do it themselves)."""
    attention_convs = {
        id(c) for m in module.modules() if isinstance(m, SelfAttention) for c in m.modules()
    }
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and id(m) not in attention_convs:
            nn.utils.parametrizations.spectral_norm(m)


def attention_levels(
    sa_sizes: Iterable[int], input_size: tuple[int, int], levels: int, what: str
) -> set[int]:
    """Maps feature sizes to the downsampling levels that produce them.

    Level i is a feature map of input_size / 2**i; a size names its shorter side.

    Args:
        sa_sizes: requested feature sizes, e.g. (64,) or (32, 64).
        input_size: (H, W) the network is built for.
        levels: the levels that exist, 0..levels-1 are checked.
        what: names the network in error messages.

    Raises:
        ValueError: a size that no level has; the message lists the valid ones.
    """
    shorter = min(input_size)
    valid = {shorter >> i: i for i in range(levels) if shorter % (1 << i) == 0}
    chosen = set()
    for size in sa_sizes:
        if size not in valid:
            raise ValueError(
                f"sa_sizes: {what} has no feature map of size {size} for input "
                f"{input_size[0]}x{input_size[1]}; choose from {sorted(valid, reverse=True)}"
            )
        chosen.add(valid[size])
    return chosen
