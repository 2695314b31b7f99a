"""sacolor.colour against scikit-image on real photos."""

import warnings

import numpy as np
import pytest
import skimage.data
import torch
from skimage.color import lab2rgb, rgb2lab

from sacolor.colour import (
    denormalize_ab,
    denormalize_l,
    lab_to_rgb,
    normalize_ab,
    normalize_l,
    normalized_lab_to_rgb,
    rgb_to_lab,
    rgb_to_normalized_lab,
    to_float,
)

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def photo(name: str) -> np.ndarray:
    """(H, W, 3) float64 in [0, 1], downsampled to keep the suite fast."""
    return getattr(skimage.data, name)()[::2, ::2, :3] / 255.0


def chw(array: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).to(dtype)


@pytest.mark.parametrize("name", PHOTOS)
def test_rgb_to_lab_matches_skimage(name):
    rgb = photo(name)
    ours = rgb_to_lab(chw(rgb)).permute(1, 2, 0).double().numpy()
    np.testing.assert_allclose(ours, rgb2lab(rgb), atol=1e-3, rtol=0)


@pytest.mark.parametrize("name", PHOTOS)
def test_lab_to_rgb_matches_skimage(name):
    lab = rgb2lab(photo(name))
    ours = lab_to_rgb(chw(lab)).permute(1, 2, 0).double().numpy()
    np.testing.assert_allclose(ours, lab2rgb(lab), atol=1e-3, rtol=0)


def test_lab_to_rgb_clips_out_of_gamut_like_skimage():
    rng = np.random.default_rng(0)
    lab = rng.uniform([0, -110, -110], [100, 110, 110], size=(32, 32, 3))
    with pytest.warns(UserWarning):  # scikit-image warns about negative Z it clips
        expected = lab2rgb(lab)
    ours = lab_to_rgb(chw(lab, torch.float64)).permute(1, 2, 0).numpy()
    assert ours.min() >= 0 and ours.max() <= 1
    np.testing.assert_allclose(ours, expected, atol=1e-6, rtol=0)


def test_batched_leading_dims_and_dtype():
    batch = torch.stack([chw(photo(n)[:64, :64]) for n in PHOTOS]).reshape(2, 2, 3, 64, 64)
    lab = rgb_to_lab(batch)
    assert lab.shape == batch.shape and lab.dtype == torch.float32
    torch.testing.assert_close(lab[1, 0], rgb_to_lab(batch[1, 0]))
    assert rgb_to_lab(batch.double()).dtype == torch.float64


def test_round_trip_and_normalisation():
    rgb = chw(photo("coffee"), torch.float64)
    l_norm, ab_norm = rgb_to_normalized_lab(rgb)
    assert l_norm.shape == (1, *rgb.shape[1:]) and ab_norm.shape == (2, *rgb.shape[1:])
    assert -1 <= l_norm.min() and l_norm.max() <= 1 and ab_norm.abs().max() <= 1
    torch.testing.assert_close(normalized_lab_to_rgb(l_norm, ab_norm), rgb, atol=1e-6, rtol=0)
    x = torch.linspace(-1, 1, 11)
    torch.testing.assert_close(normalize_l(denormalize_l(x)), x)
    torch.testing.assert_close(normalize_ab(denormalize_ab(x)), x)
    assert float(normalize_l(torch.tensor(0.0))) == -1 and float(normalize_l(torch.tensor(100.0))) == 1


def test_gradients_are_finite_and_correct():
    # Values on both sides of every branch point (sRGB knee, Lab's cube-root knee), and 0 and 1.
    rgb = torch.tensor([0.0, 0.01, 0.04, 0.05, 0.3, 0.7, 1.0], dtype=torch.float64)
    rgb = torch.stack(torch.meshgrid(rgb, rgb.flip(0), rgb.roll(3), indexing="ij")).reshape(3, 49, 7)
    rgb.requires_grad_(True)
    lab = rgb_to_lab(rgb)
    lab.sum().backward()
    assert torch.isfinite(rgb.grad).all()
    # gradcheck away from the knees (finite differences straddling one are wrong), on few elements.
    inner = (rgb.detach()[:, :2, :4] * 0.9 + 0.05).requires_grad_(True)
    torch.autograd.gradcheck(rgb_to_lab, (inner,))
    lab_inner = rgb_to_lab(inner.detach() * 0.8 + 0.1).requires_grad_(True)
    torch.autograd.gradcheck(lab_to_rgb, (lab_inner,))


def test_rejects_bad_layouts():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        rgb_to_lab(torch.rand(4, 4, 3))
    with pytest.raises(TypeError, match="lab must be a torch.Tensor"):
        lab_to_rgb(np.zeros((3, 4, 4)))


def test_read_only_frames_convert_without_a_warning():
    frames = np.full((1, 2, 2, 3), 255, np.uint8)
    frames.setflags(write=False)  # as PIL's np.asarray gives them
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert to_float(frames).min() == 1
