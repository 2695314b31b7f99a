"""Colour as a distribution over ab bins (Zhang et al. 2016, "Colorful Image Colorization").

A regression head trained with L1 or L2 predicts one colour per pixel, and
where the colour is uncertain (a shirt, a car, a cloth) that colour is the
median or mean of the possibilities: a muted brown-gray. A classification
head predicts the probability of every ab bin instead, and the output colour
is the distribution's *annealed mean*: the mean of ``softmax(logits / T)``.
T = 1 is the plain mean (as muted as L2), T -> 0 the most likely bin (vivid,
but noisy where two bins are close); Zhang et al.'s T = 0.38 keeps the vivid
mode where the model is sure and the mean where it is not.

The bins are a ``bins`` x ``bins`` grid of cells over normalised ab [-1, 1]^2.
A true colour is encoded softly over the four cell centres around it with
bilinear weights, so the encoding's mean is the colour itself (inside the
grid) and the cross-entropy has no quantisation floor.
"""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_BINS = 20  # cells of 0.1 normalised ab = 11 ab units (Zhang et al. use 10)
DEFAULT_TEMPERATURE = 0.38  # Zhang et al.'s annealed-mean temperature
MAX_COLOUR_BINS = 64


def bin_centres(bins: int) -> Tensor:
    """Centres (bins,) of the grid's cells along one axis of normalised ab."""
    return (torch.arange(bins, dtype=torch.float32) * 2 + 1) / bins - 1


def annealed_mean(logits: Tensor, temperature: float) -> Tensor:
    """Normalised ab (B, 2, H, W) from bin logits (B, bins*bins, H, W): the mean of softmax(logits / T).

    Bin q = i * bins + j is the cell with a at centre i and b at centre j.
    """
    batch, cells, height, width = logits.shape
    bins = round(cells**0.5)
    probabilities = torch.softmax(logits.float() / temperature, dim=1).view(batch, bins, bins, height, width)
    centres = bin_centres(bins).to(logits.device)
    a = torch.einsum("bijhw,i->bhw", probabilities, centres)
    b = torch.einsum("bijhw,j->bhw", probabilities, centres)
    return torch.stack((a, b), dim=1).to(logits.dtype)


def soft_encoding(ab_norm: Tensor, bins: int) -> tuple[Tensor, Tensor]:
    """The four bins around each true colour and their bilinear weights: (index, weight), each (B, 4, H, W).

    Colours beyond the outermost centres go to those centres (their weights clamp).
    """
    # Position in cell-centre units: centre i sits at i.
    position = ((ab_norm.float() + 1) * bins - 1) / 2
    position = position.clamp(0, bins - 1)
    low = position.floor().clamp(max=bins - 2)
    frac = position - low
    low = low.long()
    a_low, b_low, a_frac, b_frac = low[:, 0], low[:, 1], frac[:, 0], frac[:, 1]
    index = torch.stack([(a_low + da) * bins + (b_low + db) for da in (0, 1) for db in (0, 1)], dim=1)
    weight = torch.stack([(a_frac if da else 1 - a_frac) * (b_frac if db else 1 - b_frac)
                          for da in (0, 1) for db in (0, 1)], dim=1)
    return index, weight


def bin_cross_entropy(logits: Tensor, ab_norm: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean cross-entropy of bin logits (B, bins*bins, H, W) against the soft-encoded true ab (B, 2, H, W),
    optionally times per-pixel ``weights`` (B, 1, H, W) (class rebalancing)."""
    bins = round(logits.shape[1] ** 0.5)
    index, weight = soft_encoding(ab_norm, bins)
    log_probabilities = torch.log_softmax(logits.float(), dim=1)
    loss = -(log_probabilities.gather(1, index) * weight).sum(1, keepdim=True)
    return (loss if weights is None else loss * weights).mean()
