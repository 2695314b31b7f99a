"""Generators and discriminators, built by name from plain dicts.

``build_generator("unet_128", sa_sizes=(64,))`` -> a module mapping normalised
L (B, 1, H, W) to normalised ab (B, 2, H, W) in tanh range.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .discriminator import PatchDiscriminator
from .generator import UNetGenerator

# name -> number of downsamplings (pix2pix: unet_128 has 7, unet_256 has 8).
GENERATORS: dict[str, int] = {"unet_64": 6, "unet_128": 7, "unet_256": 8}


def _size_pair(input_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(input_size, int):
        return (input_size, input_size)
    pair = tuple(int(s) for s in input_size)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"input_size must be an int or (H, W); got {input_size!r}")
    return pair


def build_generator(
    name: str,
    ngf: int = 64,
    norm: str = "batch",
    dropout: bool = False,
    sa_sizes: Sequence[int] = (),
    spectral_norm: bool = False,
    input_size: int | Sequence[int] = (128, 128),
    attention_backend: str = "auto",
) -> nn.Module:
    """A UNet generator by name (see ``GENERATORS``).

    Args:
        name: "unet_64", "unet_128" or "unet_256" (6, 7 or 8 downsamplings).
        ngf: channels of the first conv.
        norm: "batch", "instance" or "none".
        dropout: pix2pix dropout in the innermost decoder stages (off in eval mode).
        sa_sizes: feature sizes (shorter side) that get self-attention, e.g. (64,).
        spectral_norm: spectral norm on every conv.
        input_size: (H, W) or one int; ``sa_sizes`` refer to it. H and W must be
            multiples of 2**depth.
        attention_backend: the attention op's backend ("auto" by default).

    Returns:
        A ``UNetGenerator``: normalised L (B, 1, H, W) -> normalised ab (B, 2, H, W).

    Raises:
        ValueError: an unknown name, a bad norm, an input size not divisible by
            2**depth, or an ``sa_sizes`` entry no level has.
    """
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose one of {sorted(GENERATORS)}")
    depth = GENERATORS[name]
    size = _size_pair(input_size)
    multiple = 2**depth
    if size[0] % multiple or size[1] % multiple:
        raise ValueError(
            f"input size {size[0]}x{size[1]} is not divisible by 2**{depth} = {multiple}, "
            f"which {name} needs; use sides that are multiples of {multiple}"
        )
    return UNetGenerator(
        depth=depth, ngf=ngf, norm=norm, dropout=dropout, sa_sizes=tuple(sa_sizes),
        spectral_norm=spectral_norm, input_size=size, attention_backend=attention_backend,
    )


def build_discriminator(
    ndf: int = 64,
    n_layers: int = 3,
    norm: str = "batch",
    sa_sizes: Sequence[int] = (),
    spectral_norm: bool = False,
    input_size: int | Sequence[int] = (128, 128),
    attention_backend: str = "auto",
) -> nn.Module:
    """A PatchGAN discriminator on concat(normalised L, normalised ab): (B, 3, H, W) -> (B, 1, H', W').

    Args:
        ndf: channels of the first conv.
        n_layers: stride-2 convs (3 by default, pix2pix's 70x70 PatchGAN).
        norm: "batch", "instance" or "none".
        sa_sizes: feature sizes (shorter side) that get self-attention.
        spectral_norm: spectral norm on every conv.
        input_size: (H, W) or one int; ``sa_sizes`` refer to it.
        attention_backend: the attention op's backend.

    Raises:
        ValueError: a bad norm or n_layers, or an ``sa_sizes`` entry no layer has.
    """
    return PatchDiscriminator(
        ndf=ndf, n_layers=n_layers, norm=norm, sa_sizes=tuple(sa_sizes),
        spectral_norm=spectral_norm, input_size=_size_pair(input_size),
        attention_backend=attention_backend,
    )


__all__ = ["GENERATORS", "PatchDiscriminator", "UNetGenerator", "build_discriminator", "build_generator"]
