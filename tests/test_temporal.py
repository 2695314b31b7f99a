"""sacolor.inference.temporal: CDC against scipy's Jensen-Shannon, flow warping against
integer shifts, and the stabiliser's effect on flicker, occlusions and cuts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy
from skimage import color, data

from sacolor.inference.temporal import (
    ChromaStabilizer,
    color_distribution_consistency,
    color_histograms,
    jensen_shannon,
    warp_by_flow,
)


def test_jensen_shannon_matches_scipy():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(256), size=(5, 3)), rng.dirichlet(np.ones(256), size=(5, 3))
    p[0, 0, :100] = 0  # zeros must contribute nothing
    p[0, 0] /= p[0, 0].sum()
    np.testing.assert_allclose(jensen_shannon(p, q), jensenshannon(p, q, axis=-1) ** 2, rtol=1e-10, atol=1e-14)


def test_histograms_match_numpy():
    frames = np.random.default_rng(1).integers(0, 256, size=(3, 9, 13, 3), dtype=np.uint8)
    hist = color_histograms(frames)
    for t in range(3):
        for c in range(3):
            expected, _ = np.histogram(frames[t, ..., c], bins=256, range=(0, 256))
            np.testing.assert_allclose(hist[t, c], expected / (9 * 13))


def tcvc_cdc(frames):
    """TCVC's definition written out with scipy, as an independent oracle."""
    hists = [[np.histogram(f[..., c], bins=256, range=(0, 256))[0] / f[..., c].size for c in range(3)] for f in frames]
    per_dilation = []
    for d in (1, 2, 4):
        per_channel = []
        for c in range(3):
            js = []
            for t in range(len(frames) - d):
                p, q = hists[t][c], hists[t + d][c]
                m = (p + q) / 2
                js.append(0.5 * entropy(p, m) + 0.5 * entropy(q, m))
            per_channel.append(np.mean(js))
        per_dilation.append(np.mean(per_channel))
    return np.mean(per_dilation)


def test_cdc_matches_tcvc_definition():
    frames = np.random.default_rng(2).integers(0, 256, size=(7, 8, 10, 3), dtype=np.uint8)
    assert color_distribution_consistency(color_histograms(frames)) == pytest.approx(tcvc_cdc(frames), rel=1e-9)
    still = np.repeat(frames[:1], 6, axis=0)
    assert color_distribution_consistency(color_histograms(still)) == 0.0


def test_cdc_needs_enough_frames():
    with pytest.raises(ValueError, match="more than 4 frames"):
        color_distribution_consistency(np.full((4, 3, 256), 1 / 256))


def test_warp_by_integer_flow_is_a_shift():
    image = torch.rand(2, 20, 30)
    flow = torch.zeros(2, 20, 30)
    flow[0], flow[1] = 3.0, -2.0  # sample from (row + 3, col - 2)
    warped = warp_by_flow(image, flow)
    torch.testing.assert_close(warped[:, :-3, 2:], image[:, 3:, :-2])


def lab_photo(top, left, size=(64, 96)):
    lab = color.rgb2lab(data.astronaut()[top : top + size[0], left : left + size[1]])
    return torch.from_numpy(lab).permute(2, 0, 1).float()


def test_stabilizer_damps_flicker_on_a_still_scene():
    lab = lab_photo(100, 100)
    lightness = lab[:1].expand(8, 1, -1, -1)
    noise = torch.randn(8, 2, 1, 1, generator=torch.Generator().manual_seed(0)) * 10
    ab = lab[1:] + noise  # whole-frame colour jumps, the flicker a per-frame model makes
    out = ChromaStabilizer(strength=0.7)(lightness, ab)
    torch.testing.assert_close(out[0], ab[0])  # nothing to blend with yet
    assert out.mean(dim=(2, 3)).std(dim=0).max() < 0.6 * ab.mean(dim=(2, 3)).std(dim=0).max()


def test_stabilizer_follows_motion():
    # The scene pans; colour is the true colour plus a per-frame offset. With
    # flow warping, a stabilised frame stays close to the true colour.
    frames = [lab_photo(100 + 2 * t, 100 + 3 * t) for t in range(6)]
    lightness = torch.stack([f[:1] for f in frames])
    truth = torch.stack([f[1:] for f in frames])
    offsets = torch.tensor([0.0, 12, -12, 12, -12, 12]).view(6, 1, 1, 1)
    out = ChromaStabilizer(strength=0.7)(lightness, truth + offsets)
    error_in = (truth + offsets - truth)[1:].abs().mean()
    error_out = (out - truth)[1:, :, 8:-8, 8:-8].abs().mean()
    assert error_out < 0.6 * error_in


def test_scene_cut_resets():
    first = lab_photo(0, 0)
    other = torch.from_numpy(color.rgb2lab(data.coffee()[:64, :96])).permute(2, 0, 1).float()
    lightness = torch.stack([first[:1], other[:1]])
    ab = torch.stack([first[1:], other[1:]])
    stabilizer = ChromaStabilizer()
    out = stabilizer(lightness, ab)
    torch.testing.assert_close(out, ab)
    assert stabilizer.scene_cuts == 1


def test_strength_zero_is_identity_and_bad_arguments_are_refused():
    lab = lab_photo(0, 0).unsqueeze(0).repeat(2, 1, 1, 1)
    torch.testing.assert_close(ChromaStabilizer(strength=0.0)(lab[:, :1], lab[:, 1:] + 1), lab[:, 1:] + 1)
    with pytest.raises(ValueError, match="strength"):
        ChromaStabilizer(strength=1.0)
    with pytest.raises(ValueError, match="lightness must be"):
        ChromaStabilizer()(lab[:, 1:], lab[:, 1:])
