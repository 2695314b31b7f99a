"""Temporal colour stability for films: flicker suppression and the CDC metric.

A frame-by-frame colouriser predicts each frame's chroma independently, so a
wall can turn from beige to grey and back between two frames. ``ChromaStabilizer``
blends each frame's predicted ab with the previous output's ab, warped onto
the current frame by optical flow computed on L; pixels where the warped L does
not match (occlusions, flow failures) keep their own prediction, and a scene
cut resets the memory. ``FlowSettings.motion`` is that one estimate of motion
(flow, occlusion mask, scene cut); film hints (``film_hints``) and the flicker
report (``flicker``) use it too.

``color_distribution_consistency`` (CDC) is TCVC's flicker measure (Liu et al.,
"Temporally Consistent Video Colorization"): the Jensen-Shannon divergence
between per-channel RGB histograms of frames t and t+d, averaged over channels
and frames, then over d in {1, 2, 4}. Lower is steadier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..colour import channel_histograms

CDC_DILATIONS = (1, 2, 4)
HISTOGRAM_BINS = 256
# The stabiliser's default weight of the previous frame's colour (--temporal-strength).
DEFAULT_STRENGTH = 0.7


@dataclass(frozen=True)
class Motion:
    """How one frame's content moved from another's, estimated on L.

    ``source`` sampled at p + ``flow``(p) matches ``target`` at p, where ``valid``.

    Attributes:
        flow: (2, H, W) row and column displacement in pixels, at the target's size.
        valid: (1, H, W) 1.0 where the warped source's L is within the occlusion
            threshold of the target's L, else 0.0 (occluded, or the flow failed).
        cut: whether so much is occluded that the frames belong to different shots.
    """

    flow: Tensor
    valid: Tensor
    cut: bool

    def warp(self, image: Tensor) -> Tensor:
        """The source frame's ``image`` (C, H, W) moved onto the target frame."""
        return warp_by_flow(image, self.flow)


@dataclass(frozen=True)
class FlowSettings:
    """How ``Motion`` is estimated: one rule for the stabiliser, film hints and the flicker report.

    Attributes:
        occlusion_threshold: L difference (Lab units, 0..100) above which a
            warped pixel counts as occluded.
        scene_cut_fraction: fraction of occluded pixels that marks a scene cut.
        flow_size: the longest side of the grid the flow is computed on;
            chroma is smooth, so a coarse flow is enough and keeps it cheap.

    Raises:
        ValueError: a setting out of range.
    """

    occlusion_threshold: float = 6.0
    scene_cut_fraction: float = 0.5
    flow_size: int = 256

    def __post_init__(self) -> None:
        if self.occlusion_threshold <= 0:
            raise ValueError(f"occlusion_threshold must be positive; got {self.occlusion_threshold!r}")
        if not 0.0 < self.scene_cut_fraction <= 1.0:
            raise ValueError(f"scene_cut_fraction must be in (0, 1]; got {self.scene_cut_fraction!r}")
        if self.flow_size < 8:
            raise ValueError(f"flow_size must be at least 8; got {self.flow_size!r}")

    def motion(self, target: Tensor, source: Tensor) -> Motion:
        """The motion from ``source`` to ``target``, both L (1, H, W) in Lab units (float32, CPU)."""
        flow = self.flow(target, source)
        valid = ((warp_by_flow(source, flow) - target).abs() <= self.occlusion_threshold).float()
        return Motion(flow, valid, 1.0 - valid.mean().item() > self.scene_cut_fraction)

    def flow(self, target: Tensor, source: Tensor) -> Tensor:
        """Flow (2, H, W) in pixels, (dy, dx): ``source`` sampled at p + flow matches ``target`` at p."""
        from skimage.registration import optical_flow_ilk  # imports scipy: seconds, only for videos

        height, width = target.shape[-2:]
        scale = min(1.0, self.flow_size / max(height, width))
        size = (max(8, round(height * scale)), max(8, round(width * scale)))
        pair = F.interpolate(torch.stack([target, source]), size=size, mode="area") / 100.0
        flow = optical_flow_ilk(pair[0, 0].numpy(), pair[1, 0].numpy(), radius=4, num_warp=3)
        flow = torch.from_numpy(np.ascontiguousarray(flow)).unsqueeze(0)
        flow = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)[0]
        return flow * torch.tensor([height / size[0], width / size[1]]).view(2, 1, 1)


class ChromaStabilizer:
    """Blends each frame's ab with the previous output's flow-warped ab.

    ab_out[t] = ab[t] + strength * valid * (warp(ab_out[t-1]) - ab[t]), where
    ``valid`` is 1 where the previous frame's L, warped by the same flow, is
    within ``occlusion_threshold`` of the current L. When more than
    ``scene_cut_fraction`` of the pixels are invalid the frame starts afresh.

    Args:
        strength: weight of the previous frame's colour, in [0, 1); 0 turns the
            stabiliser off. Higher is steadier but lags real colour changes.
        settings: how motion, occlusions and scene cuts are found.
    """

    def __init__(self, strength: float = DEFAULT_STRENGTH, settings: FlowSettings = FlowSettings()) -> None:
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"strength must be in [0, 1); got {strength!r}")
        self.strength = strength
        self.settings = settings
        self._previous_l: Tensor | None = None
        self._previous_ab: Tensor | None = None
        self.scene_cuts = 0

    def __call__(self, lightness: Tensor, ab: Tensor) -> Tensor:
        """Stabilise a batch of consecutive frames, continuing from the last call.

        Args:
            lightness: L in Lab units (0..100), (T, 1, H, W), frames in order.
            ab: predicted a and b in Lab units, (T, 2, H, W), same H and W.

        Returns:
            The stabilised ab, (T, 2, H, W), same dtype and device as ``ab``.

        Raises:
            ValueError: the shapes do not match.
        """
        if lightness.dim() != 4 or lightness.shape[1] != 1 or ab.dim() != 4 or ab.shape[1] != 2:
            raise ValueError(f"lightness must be (T, 1, H, W) and ab (T, 2, H, W); got {tuple(lightness.shape)} and {tuple(ab.shape)}")
        if lightness.shape[0] != ab.shape[0] or lightness.shape[2:] != ab.shape[2:]:
            raise ValueError(f"lightness {tuple(lightness.shape)} and ab {tuple(ab.shape)} differ in frames or size")
        if self.strength == 0.0:
            return ab
        out = []
        for l_t, ab_t in zip(lightness.float().cpu(), ab.float().cpu()):
            out.append(self._step(l_t, ab_t))
        return torch.stack(out).to(dtype=ab.dtype, device=ab.device)

    def _step(self, l_t: Tensor, ab_t: Tensor) -> Tensor:
        if self._previous_l is None or self._previous_l.shape != l_t.shape:
            result = ab_t
        else:
            motion = self.settings.motion(l_t, self._previous_l)
            if motion.cut:
                self.scene_cuts += 1
                result = ab_t
            else:
                result = ab_t + self.strength * motion.valid * (motion.warp(self._previous_ab) - ab_t)
        self._previous_l, self._previous_ab = l_t, result
        return result


def warp_by_flow(image: Tensor, flow: Tensor) -> Tensor:
    """Sample ``image`` at p + flow(p) (bilinear, borders clamped).

    Args:
        image: (C, H, W).
        flow: (2, H, W), row and column displacement in pixels.

    Returns:
        (C, H, W) warped image.
    """
    height, width = image.shape[-2:]
    rows, cols = torch.meshgrid(torch.arange(height, dtype=flow.dtype), torch.arange(width, dtype=flow.dtype), indexing="ij")
    y = (rows + flow[0]) * (2.0 / max(height - 1, 1)) - 1.0
    x = (cols + flow[1]) * (2.0 / max(width - 1, 1)) - 1.0
    grid = torch.stack([x, y], dim=-1).unsqueeze(0)
    return F.grid_sample(image.unsqueeze(0), grid, mode="bilinear", padding_mode="border", align_corners=True)[0]


def color_histograms(frames: np.ndarray) -> np.ndarray:
    """Per-channel normalised histograms of uint8 RGB frames.

    Args:
        frames: uint8 (T, H, W, 3).

    Returns:
        float64 (T, 3, 256); each row sums to 1.

    Raises:
        ValueError: not a uint8 (T, H, W, 3) array.
    """
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be a uint8 array (T, H, W, 3); got {getattr(frames, 'dtype', type(frames))} {getattr(frames, 'shape', '')}")
    # One bin per 8-bit value: bin edges halfway between the integers.
    return channel_histograms(torch.from_numpy(frames).permute(0, 3, 1, 2), HISTOGRAM_BINS, -0.5, HISTOGRAM_BINS - 0.5)


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (natural log) along the last axis.

    Args:
        p, q: distributions (..., K), each summing to 1.

    Returns:
        (...) divergences in [0, ln 2].
    """
    m = 0.5 * (p + q)
    return 0.5 * (_kl(p, m) + _kl(q, m))


def _kl(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    # 0 * log(0 / m) = 0; where p > 0, m >= p / 2 > 0.
    ratio = np.divide(p, m, out=np.ones_like(p), where=p > 0)
    return np.sum(p * np.log(ratio), axis=-1)


def color_distribution_consistency(histograms: np.ndarray, dilations: tuple[int, ...] = CDC_DILATIONS) -> float:
    """TCVC's CDC of a clip from its frames' colour histograms. Lower is steadier.

    Args:
        histograms: (T, 3, 256) from ``color_histograms``, frames in order.
        dilations: frame gaps d to compare; CDC is the mean over them.

    Returns:
        mean over d of mean over t and channels of JS(hist[t], hist[t + d]).

    Raises:
        ValueError: fewer than max(dilations) + 1 frames.
    """
    histograms = np.asarray(histograms, dtype=np.float64)
    if histograms.ndim != 3:
        raise ValueError(f"histograms must be (T, 3, bins); got shape {histograms.shape}")
    if histograms.shape[0] <= max(dilations):
        raise ValueError(f"CDC needs more than {max(dilations)} frames; got {histograms.shape[0]}")
    per_dilation = [jensen_shannon(histograms[:-d], histograms[d:]).mean() for d in dilations]
    return float(np.mean(per_dilation))
