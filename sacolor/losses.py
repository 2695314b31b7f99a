"""GAN losses (vanilla / log, least squares, hinge) and pix2pix's L1 term.

Discriminator outputs are raw logits of any shape (a PatchGAN gives one per
patch); losses are means over every element and computed in float32, so they
stay accurate under mixed precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

GAN_MODES = ("vanilla", "lsgan", "hinge")


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


def l1_loss(fake_ab: Tensor, real_ab: Tensor) -> Tensor:
    """Mean absolute error on normalised ab (pix2pix's L1 term, before lambda)."""
    return F.l1_loss(fake_ab.float(), real_ab.float())
