"""Pieces the generator and the discriminator share: norms, weight init,
spectral norm, and where self-attention goes."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import nn

NORMS = ("batch", "instance", "none")


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
    from ..nn import SelfAttention

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
    from ..nn import SelfAttention

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
