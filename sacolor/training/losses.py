"""GAN losses (vanilla / log, least squares, hinge) and pix2pix's L1 term.

Discriminator outputs are raw logits of any shape (a PatchGAN gives one per
patch); losses are means over every element and computed in float32, so they
stay accurate under mixed precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..colour import AB_SCALE, histogram_bins
from .config import GAN_MODES, RECON_LOSSES


EPSILON = 1e-6  # keeps square roots differentiable at zero (gray, or a perfect prediction)


class GANLoss:
    """The adversarial loss of one ``mode``.

    - ``vanilla``: BCE with logits (the "log loss" of the original GAN and pix2pix).
    - ``lsgan``: least squares towards 1 (real) and 0 (fake).
    - ``hinge``: D: relu(1 - D(real)) + relu(1 + D(fake)); G: -D(fake) (SAGAN).

    The discriminator's loss is halved for vanilla and lsgan, as pix2pix does,
    so D learns at half the rate of G for the same learning rate.
    """

    def __init__(self, mode: str) -> None:
        if mode not in GAN_MODES:
            raise ValueError(f"gan mode must be one of {GAN_MODES}; got {mode!r}")
        self.mode = mode

    def discriminator(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """D's loss from its logits on real pairs and on (detached) fake pairs."""
        real, fake = real_logits.float(), fake_logits.float()
        if self.mode == "hinge":
            return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
        return 0.5 * (self._towards(real, True) + self._towards(fake, False))

    def generator(self, fake_logits: Tensor) -> Tensor:
        """G's adversarial loss from D's logits on fake pairs."""
        fake = fake_logits.float()
        if self.mode == "hinge":
            return -fake.mean()
        return self._towards(fake, True)

    def _towards(self, logits: Tensor, real: bool) -> Tensor:
        target = torch.full_like(logits, 1.0 if real else 0.0)
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(logits, target)
        return F.mse_loss(logits, target)


def reconstruction_loss(fake_ab: Tensor, real_ab: Tensor, kind: str = "l1", weights: Tensor | None = None) -> Tensor:
    """Mean |fake - real| ("l1", pix2pix), (fake - real)^2 ("l2") or ``colour_difference`` ("delta-e")
    on normalised ab, optionally times per-pixel ``weights`` (B, 1, H, W).

    L1 is minimised by the median colour, L2 by the mean: where the colour is
    uncertain L2 hedges towards gray, which is what PSNR rewards.
    """
    if kind == "delta-e":
        error = colour_difference(fake_ab, real_ab)
    elif kind in ("l1", "l2"):
        error = (fake_ab.float() - real_ab.float()).abs()
        error = error.square() if kind == "l2" else error
    else:
        raise ValueError(f"reconstruction loss must be one of {RECON_LOSSES}; got {kind!r}")
    return (error if weights is None else error * weights).mean()


def colour_difference(fake_ab: Tensor, real_ab: Tensor) -> Tensor:
    """Perceptual colour difference (B, 1, H, W) at equal lightness of normalised ab (B, 2, H, W), divided by
    ``AB_SCALE`` so that ``--lambda-l1`` weighs it as it weighs L1.

    CIE94's form, sqrt((dC / S_C)^2 + (dH / S_H)^2) with dH^2 = da^2 + db^2 - dC^2 (no hue
    angles, so smooth away from gray), with CIEDE2000's weights on the pair's mean chroma
    C: S_C = 1 + 0.045 C, S_H = 1 + 0.015 C. Because the weights grow with the *mean*
    chroma, a colour that is too vivid costs less than one as much too dull: the
    metric that judges the model does not reward hedging towards gray, and neither
    does this loss.
    """
    fake, real = fake_ab.float() * AB_SCALE, real_ab.float() * AB_SCALE
    chroma_fake = fake.square().sum(1, keepdim=True).add(EPSILON).sqrt()
    chroma_real = real.square().sum(1, keepdim=True).add(EPSILON).sqrt()
    mean_chroma = (chroma_fake + chroma_real) / 2
    d_chroma = chroma_fake - chroma_real
    d_hue_squared = ((fake - real).square().sum(1, keepdim=True) - d_chroma.square()).clamp_min(0)
    difference = (d_chroma / (1 + 0.045 * mean_chroma)).square() + d_hue_squared / (1 + 0.015 * mean_chroma).square()
    return difference.add(EPSILON).sqrt() / AB_SCALE


class ColourRebalance:
    """Per-pixel weights that make rare colours count (Zhang et al. 2016, "Colorful Image Colorization").

    A plain L1 on ab is minimised by a muted median colour: most pixels of most
    photos are near gray, so predicting "a bit of sepia" everywhere scores well.
    Weighting each pixel by how rare its true colour is pushes the model
    towards saturated colours where it can tell them apart. The weight of ab
    bin q is ``mixed[q] ** -strength`` with ``mixed`` the prior mixed with 1 % of
    uniform (no bin's weight is infinite), normalised to mean 1 over the
    prior (so the loss keeps its scale on the training data).

    Args:
        prior: (bins, bins) frequencies of the true ab over the training data,
            on a grid of ``bins`` cells per axis over normalised ab in [-1, 1].
        strength: 0 (plain L1) .. 1 (fully inverse frequency).
    """

    def __init__(self, prior: Tensor, strength: float) -> None:
        empirical = prior.double() / prior.sum()
        weights = (0.99 * empirical + 0.01 / empirical.numel()).pow(-strength)
        self.weights = (weights / (weights * empirical).sum()).float()
        self.bins = prior.shape[0]

    def __call__(self, ab_norm: Tensor) -> Tensor:
        """Weights (B, 1, H, W) for true normalised ab (B, 2, H, W)."""
        index = ab_bins(ab_norm, self.bins)
        return self.weights.to(ab_norm.device).flatten()[index].unsqueeze(1)


def ab_bins(ab_norm: Tensor, bins: int) -> Tensor:
    """Flat histogram-bin index (B, H, W) of normalised ab (B, 2, H, W)."""
    cells = histogram_bins(ab_norm, bins, -1.0, 1.0)
    return cells[:, 0] * bins + cells[:, 1]


def ab_histogram(ab_norm: Tensor, bins: int) -> Tensor:
    """Counts (bins, bins) of normalised ab (B, 2, H, W) on ``ColourRebalance``'s grid."""
    return torch.bincount(ab_bins(ab_norm, bins).flatten(), minlength=bins * bins).view(bins, bins).double()


class FeatureLoss(torch.nn.Module):
    """Perceptual loss: L1 between frozen ImageNet EfficientNet-Lite0 features
    (strides 4, 8 and 16) of the colourised image and of the true one.

    It judges colour by what it does to recognisable content (a blue apple
    looks wrong to an ImageNet classifier), which a per-pixel L1 cannot.

    Raises:
        ImportError: the pretrained weights package is not installed.
    """

    FEATURES = (1, 2, 3)

    def __init__(self) -> None:
        super().__init__()
        from ..models.efficientnet import EfficientNetLite, pretrained_state_dict

        self.encoder = EfficientNetLite("lite0")
        self.encoder.load_state_dict(pretrained_state_dict())
        self.encoder.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "FeatureLoss":
        return super().train(False)  # frozen, BatchNorm on ImageNet statistics

    def forward(self, l_norm: Tensor, fake_ab: Tensor, real_ab: Tensor) -> Tensor:
        """Args: normalised L (B, 1, H, W), predicted and true normalised ab (B, 2, H, W)."""
        from ..colour import normalized_lab_to_rgb

        fake = self.encoder.features(normalized_lab_to_rgb(l_norm.float(), fake_ab.float()))
        with torch.no_grad():
            real = self.encoder.features(normalized_lab_to_rgb(l_norm.float(), real_ab.float()))
        return sum(F.l1_loss(fake[i], real[i]) for i in self.FEATURES) / len(self.FEATURES)
