"""pix2pix's PatchGAN discriminator on concat(L, ab), with optional self-attention."""

from __future__ import annotations

from torch import Tensor, nn

from .layers import LayerOptions


class PatchDiscriminator(nn.Module):
    """A PatchGAN: one real/fake logit per overlapping patch.

    ``n_layers`` stride-2 convs (the first without norm), one stride-1 conv,
    and a stride-1 conv to one channel. Self-attention at a size follows the
    stride-2 conv whose output has that size (shorter side).

    Args:
        in_channels: 3 (L and ab).
        ndf: channels of the first conv; deeper ones use up to 8 * ndf.
        n_layers: stride-2 convs (3 is pix2pix's 70x70 PatchGAN).
        options: norm, self-attention sizes, spectral norm, input size and
            attention backend (see ``LayerOptions``).
    """

    def __init__(
        self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, options: LayerOptions = LayerOptions()
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be at least 1; got {n_layers}")
        make_norm = options.make_norm
        bias = options.conv_bias
        attend = options.attention_levels(n_layers + 1, "the discriminator")
        if 0 in attend:  # the raw (L, ab) input is not a feature map
            raise ValueError(
                f"sa_sizes: the discriminator has no feature map at the input size {min(options.input_size)}"
            )

        layers: list[nn.Module] = []
        c_prev = in_channels
        for i in range(1, n_layers + 1):
            c = ndf * min(2 ** (i - 1), 8)
            layers.append(nn.Conv2d(c_prev, c, 4, 2, 1, bias=bias if i > 1 else True))
            if i > 1:
                layers.append(make_norm(c))
            layers.append(nn.LeakyReLU(0.2, True))
            if i in attend:
                layers.append(options.attention(c))
            c_prev = c
        c = ndf * min(2**n_layers, 8)
        layers += [
            nn.Conv2d(c_prev, c, 4, 1, 1, bias=bias),
            make_norm(c),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(c, 1, 4, 1, 1),
        ]
        self.net = nn.Sequential(*layers)
        options.initialize(self)

    def forward(self, l_and_ab: Tensor) -> Tensor:
        """(B, 3, H, W) normalised L and ab -> (B, 1, H', W') patch logits."""
        return self.net(l_and_ab)
