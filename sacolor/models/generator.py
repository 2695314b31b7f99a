"""The pix2pix UNet generator with optional SAGAN self-attention: normalised L -> ab."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..options import check_multiple
from .layers import LayerOptions


class UNetGenerator(nn.Module):
    """pix2pix's UnetGenerator, written as an encoder/decoder with skips.

    Level i (0 = input) holds feature maps of size input / 2**i. The encoder
    has ``depth`` stride-2 convs; the decoder mirrors them with transposed
    convs and concatenates the matching encoder features (the skips).
    Self-attention at level i >= 1 follows the decoder stage that produces
    level i (as DeOldify's UNet puts attention in the decoder). Attention at
    level 0 (full resolution) makes the last stage upsample to ``ngf``
    channels, attend, then map to ab with a 1x1 conv.

    Args:
        in_channels: 1 (normalised L).
        out_channels: 2 (normalised ab, tanh range).
        depth: number of downsamplings (6 for unet_64, 7 for unet_128, 8 for unet_256).
        ngf: channels after the first conv; deeper levels use up to 8 * ngf.
        dropout: pix2pix's dropout (0.5) in the innermost 8*ngf decoder stages;
            inactive in eval mode.
        options: norm, self-attention sizes, spectral norm, input size and
            attention backend (see ``LayerOptions``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        depth: int = 7,
        ngf: int = 64,
        dropout: bool = False,
        options: LayerOptions = LayerOptions(),
    ) -> None:
        super().__init__()
        if depth < 5:
            raise ValueError(f"depth must be at least 5 (pix2pix's UNet); got {depth}")
        self.depth = depth
        make_norm = options.make_norm
        bias = options.conv_bias
        # channels[i]: channels of the encoder feature map at level i.
        channels = [in_channels] + [ngf * min(2**i, 8) for i in range(depth)]
        attend = options.attention_levels(depth, "the generator")

        self.encoder = nn.ModuleList()
        for i in range(depth):
            layers: list[nn.Module] = []
            if i > 0:
                layers.append(nn.LeakyReLU(0.2, True))
            layers.append(nn.Conv2d(channels[i], channels[i + 1], 4, 2, 1, bias=bias))
            if 0 < i < depth - 1:  # no norm on the first conv or the innermost one
                layers.append(make_norm(channels[i + 1]))
            self.encoder.append(nn.Sequential(*layers))

        # decoder[j] maps level depth-j to level depth-j-1.
        self.decoder = nn.ModuleList()
        dropout_levels = set(range(5, depth)) if dropout else set()
        for level in range(depth, 0, -1):
            c_in = channels[level] if level == depth else 2 * channels[level]
            layers = [nn.ReLU(True)]
            if level > 1:
                layers += [
                    nn.ConvTranspose2d(c_in, channels[level - 1], 4, 2, 1, bias=bias),
                    make_norm(channels[level - 1]),
                ]
                if level in dropout_levels:
                    layers.append(nn.Dropout(0.5))
                if level - 1 in attend:
                    layers.append(options.attention(channels[level - 1]))
            elif 0 in attend:
                layers += [
                    nn.ConvTranspose2d(c_in, ngf, 4, 2, 1, bias=bias),
                    make_norm(ngf),
                    nn.ReLU(True),
                    options.attention(ngf),
                    nn.Conv2d(ngf, out_channels, 1),
                    nn.Tanh(),
                ]
            else:
                layers += [nn.ConvTranspose2d(c_in, out_channels, 4, 2, 1), nn.Tanh()]
            self.decoder.append(nn.Sequential(*layers))

        options.initialize(self)

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this (2**depth)."""
        return 2**self.depth

    def forward(self, l_norm: Tensor) -> Tensor:
        """Normalised L (B, 1, H, W) -> normalised ab (B, 2, H, W) in [-1, 1].

        Raises:
            ValueError: H or W is not a multiple of 2**depth.
        """
        height, width = l_norm.shape[-2:]
        check_multiple("input size", (height, width), self.multiple, "this UNet", "resize or pad it", name="2**depth")
        skips = []
        x = l_norm
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        skips.pop()  # the innermost features feed the decoder directly
        for stage in self.decoder:
            x = stage(x)
            if skips:
                x = torch.cat((skips.pop(), x), dim=1)
        return x
