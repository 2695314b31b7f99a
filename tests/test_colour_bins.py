"""The classification head (colour as a distribution over ab bins): encoding, annealed mean, loss, generator."""

import numpy as np
import pytest
import torch

from colour_images import write_image_folder
from sacolor.checkpoint import load_generator
from sacolor.models import build_generator
from sacolor.models.colour_bins import annealed_mean, bin_centres, bin_cross_entropy, soft_encoding
from sacolor.training import build_run, fit
from sacolor.training.config import TrainConfig

BINS = 7  # odd, and not the default: nothing may assume 20


def random_ab(seed: int, shape=(2, 2, 5, 3)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_soft_encoding_weights_sum_to_one_and_their_mean_is_the_colour_inside_the_grid():
    inside = bin_centres(BINS)[-1].item()
    ab = random_ab(0) * inside
    index, weight = soft_encoding(ab, BINS)
    assert index.min() >= 0 and index.max() < BINS * BINS
    torch.testing.assert_close(weight.sum(1), torch.ones_like(weight[:, 0]))
    centres = bin_centres(BINS)
    mean_a = (centres[index // BINS] * weight).sum(1)
    mean_b = (centres[index % BINS] * weight).sum(1)
    torch.testing.assert_close(torch.stack((mean_a, mean_b), 1), ab)


def test_colours_beyond_the_grid_go_to_its_outermost_centres():
    index, weight = soft_encoding(torch.tensor([[[[1.0]], [[-1.0]]]]), BINS)
    assert index[0, weight[0].argmax(), 0, 0] == (BINS - 1) * BINS + 0
    assert weight.max() == 1


def test_annealed_mean_is_the_mean_at_temperature_one_and_the_mode_when_cold():
    logits = torch.randn(2, BINS * BINS, 3, 4, generator=torch.Generator().manual_seed(1))
    probabilities = logits.softmax(1).view(2, BINS, BINS, 3, 4)
    centres = bin_centres(BINS)
    mean = torch.stack((torch.einsum("bijhw,i->bhw", probabilities, centres),
                        torch.einsum("bijhw,j->bhw", probabilities, centres)), 1)
    torch.testing.assert_close(annealed_mean(logits, 1.0), mean)
    mode = logits.argmax(1)
    torch.testing.assert_close(annealed_mean(logits, 1e-4), torch.stack((centres[mode // BINS], centres[mode % BINS]), 1))


def test_cross_entropy_is_smallest_for_logits_of_the_true_encoding_and_rebalancing_weights_pixels():
    ab = random_ab(2) * 0.5
    index, weight = soft_encoding(ab, BINS)
    truth = torch.full((2, BINS * BINS, 5, 3), -30.0).scatter(1, index, weight.clamp_min(1e-12).log())
    best = bin_cross_entropy(truth, ab)
    assert best < bin_cross_entropy(torch.zeros_like(truth), ab)
    assert best < bin_cross_entropy(truth + 0.3 * torch.randn_like(truth), ab)
    weights = torch.zeros(2, 1, 5, 3)
    assert bin_cross_entropy(torch.randn_like(truth), ab, weights) == 0


def test_a_few_steps_of_cross_entropy_teach_the_head_a_colour():
    # At temperature 1 the output is the learnt distribution's mean, which the soft encoding makes the colour.
    G = build_generator("efficientnet_unet", colour_bins=BINS, temperature=1.0, input_size=32)
    torch.manual_seed(3)
    L = torch.rand(2, 1, 32, 32) * 2 - 1
    ab = torch.zeros(2, 2, 32, 32)
    ab[:, 0], ab[:, 1] = 0.5, -0.3  # one vivid colour everywhere
    # Zero-initialised head: the uniform distribution, whose mean is gray up to the rounding of the bin sum
    # (1.5e-8 where AVX2 kernels add in another order than AVX-512 ones).
    assert G(L).abs().max() < 1e-6
    optimiser = torch.optim.Adam(G.head.parameters(), lr=0.1)
    for _ in range(60):
        fake, logits = G(L, with_logits=True)
        assert logits.shape == (2, BINS * BINS, 32, 32) and fake.shape == (2, 2, 32, 32)
        optimiser.zero_grad()
        bin_cross_entropy(logits, ab).backward()
        optimiser.step()
    torch.testing.assert_close(G(L).mean((0, 2, 3)), torch.tensor([0.5, -0.3]), atol=0.05, rtol=0)


@pytest.mark.parametrize("kwargs", [{"colour_bins": 1}, {"colour_bins": -2}, {"colour_bins": 4, "temperature": 0.0}])
def test_bad_bins_or_temperature_are_refused(kwargs):
    with pytest.raises(ValueError, match="colour_bins"):
        build_generator("efficientnet_unet", input_size=32, **kwargs)


def test_a_regression_generator_returns_no_logits_and_pix2pix_unets_refuse_bins():
    fake, logits = build_generator("efficientnet_unet", input_size=32).eval()(torch.zeros(1, 1, 32, 32), with_logits=True)
    assert logits is None and fake.shape == (1, 2, 32, 32)
    with pytest.raises(ValueError, match="colour_bins"):
        build_generator("unet_64", colour_bins=4, input_size=64)


def test_a_cross_entropy_run_trains_every_phase_and_its_checkpoint_rebuilds_the_head(tmp_path):
    write_image_folder(tmp_path / "photos", 8, height=72, width=96)
    config = TrainConfig(
        data=[str(tmp_path / "photos")], checkpoints_dir=str(tmp_path), name="ce", netG="efficientnet_unet", size=64,
        resize="random", batch_size=4, max_steps=3, eval_every=3, save_every=3, num_workers=0, progress=False,
        ndf=8, ema=True, gan_start_step=2, hint_share=0.5, rebalance=0.5, val_fraction=0.25,
        recon_loss="ce", colour_bins=6, temperature=0.5,
    )
    history = fit(build_run(config))
    assert all(np.isfinite(v) for step in history for v in step.values()) and "loss_D" in history[2]
    generator, saved = load_generator(tmp_path / "ce")
    assert saved["generator"]["kwargs"]["colour_bins"] == 6 and generator.head.out_channels == 36
    assert generator.temperature == 0.5
    assert generator(torch.zeros(1, 1, 64, 64)).abs().max() <= 1


def test_cross_entropy_needs_the_generator_with_a_classification_head(tmp_path):
    with pytest.raises(ValueError, match="--recon-loss ce needs --netG efficientnet_unet"):
        TrainConfig(data=[str(tmp_path)], netG="unet_64", size=64, recon_loss="ce")
