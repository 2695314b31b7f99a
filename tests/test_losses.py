"""GAN losses against their textbook formulas."""

import math

import numpy as np
import pytest
import torch
from skimage.color import deltaE_ciede2000

from sacolor.colour import AB_SCALE
from sacolor.training.losses import (GAN_MODES, ColourRebalance, GANLoss, ab_histogram, colour_difference,
                                     reconstruction_loss)

REAL = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
FAKE = torch.tensor([[-2.0, 0.0], [1.5, -0.5]])


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def mean(values) -> float:
    return sum(values) / len(values)


def test_vanilla_is_log_loss():
    loss = GANLoss("vanilla")
    real, fake = REAL.flatten().tolist(), FAKE.flatten().tolist()
    d_expected = 0.5 * (mean([-log_sigmoid(r) for r in real]) + mean([-log_sigmoid(-f) for f in fake]))
    assert float(loss.discriminator(REAL, FAKE)) == pytest.approx(d_expected, rel=1e-6)
    assert float(loss.generator(FAKE)) == pytest.approx(mean([-log_sigmoid(f) for f in fake]), rel=1e-6)


def test_lsgan_is_least_squares():
    loss = GANLoss("lsgan")
    real, fake = REAL.flatten().tolist(), FAKE.flatten().tolist()
    d_expected = 0.5 * (mean([(r - 1) ** 2 for r in real]) + mean([f**2 for f in fake]))
    assert float(loss.discriminator(REAL, FAKE)) == pytest.approx(d_expected, rel=1e-6)
    assert float(loss.generator(FAKE)) == pytest.approx(mean([(f - 1) ** 2 for f in fake]), rel=1e-6)


def test_hinge():
    loss = GANLoss("hinge")
    real, fake = REAL.flatten().tolist(), FAKE.flatten().tolist()
    d_expected = mean([max(0.0, 1 - r) for r in real]) + mean([max(0.0, 1 + f) for f in fake])
    assert float(loss.discriminator(REAL, FAKE)) == pytest.approx(d_expected, rel=1e-6)
    assert float(loss.generator(FAKE)) == pytest.approx(-mean(fake), rel=1e-6)


@pytest.mark.parametrize("mode", GAN_MODES)
def test_float32_under_low_precision_and_gradients_flow(mode):
    loss = GANLoss(mode)
    fake = FAKE.to(torch.bfloat16).requires_grad_(True)
    value = loss.generator(fake)
    assert value.dtype == torch.float32
    value.backward()
    assert fake.grad is not None and torch.isfinite(fake.grad.float()).all()


def test_reconstruction_losses_and_errors():
    a, b = torch.zeros(2, 2, 4, 4), torch.full((2, 2, 4, 4), -0.25)
    assert float(reconstruction_loss(a, b)) == pytest.approx(0.25)
    assert float(reconstruction_loss(a, b, "l2")) == pytest.approx(0.0625)
    weights = torch.zeros(2, 1, 4, 4)
    weights[0] = 2.0
    assert float(reconstruction_loss(a, b, "l1", weights)) == pytest.approx(0.25)  # (2 * 0.25 + 0) / 2
    with pytest.raises(ValueError, match="reconstruction loss must be one of"):
        reconstruction_loss(a, b, "l3")
    with pytest.raises(ValueError, match="gan mode must be one of"):
        GANLoss("wgan")


def test_colour_rebalance_weights_rare_colours_up():
    gray, red = torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)
    red[:, 0] = 0.6
    prior = ab_histogram(torch.cat([gray.repeat(9, 1, 1, 1), red]), bins=8)  # red is 9x rarer than gray
    rebalance = ColourRebalance(prior, strength=0.5)
    w_gray, w_red = float(rebalance(gray).mean()), float(rebalance(red).mean())
    assert w_red / w_gray == pytest.approx(3.0, rel=0.05)  # (1/9) ** -0.5
    assert (0.9 * w_gray + 0.1 * w_red) == pytest.approx(1.0, rel=0.05)  # mean 1 over the prior
    assert float(ColourRebalance(prior, strength=0.0)(red).mean()) == pytest.approx(1.0)


def as_normalised_ab(ab: np.ndarray) -> torch.Tensor:
    """(N, 2) ab in ab units -> (1, 2, N, 1) normalised."""
    return torch.tensor(ab.T[None, :, :, None] / AB_SCALE, dtype=torch.float32)


def test_colour_difference_follows_ciede2000_at_equal_lightness_and_spares_vivid_over_dull():
    rng = np.random.default_rng(4)
    real, fake = rng.uniform(-60, 60, (2, 500, 2))
    lightness = np.full((500, 1), 55.0)
    truth = deltaE_ciede2000(np.hstack([lightness, real]), np.hstack([lightness, fake]))
    ours = colour_difference(as_normalised_ab(fake), as_normalised_ab(real)).flatten().numpy() * AB_SCALE
    # CIEDE2000 also rotates blues and weights hue by angle: a close, not an exact, match.
    assert np.corrcoef(ours, truth)[0, 1] > 0.9 and np.median(np.abs(ours / truth - 1)) < 0.15
    # A red of chroma 40: 20 too vivid costs less than 20 too dull, in both.
    red, vivid, dull = (as_normalised_ab(np.array([[a, 0.0]])) for a in (40.0, 60.0, 20.0))
    assert colour_difference(vivid, red) < colour_difference(dull, red)
    lab = lambda a: np.array([55.0, a, 0.0])
    assert deltaE_ciede2000(lab(60.0), lab(40.0)) < deltaE_ciede2000(lab(20.0), lab(40.0))
    gray = torch.zeros(1, 2, 1, 1, requires_grad=True)
    reconstruction_loss(gray, torch.zeros(1, 2, 1, 1), "delta-e").backward()
    assert torch.isfinite(gray.grad).all()
