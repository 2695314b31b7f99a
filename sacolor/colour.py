"""Colour in one place: RGB <-> CIE Lab on torch tensors, the network's
normalisation of L and ab, 8-bit <-> float images, and fitting Lab colours
into the sRGB gamut.

Matches ``skimage.color.rgb2lab`` / ``lab2rgb`` (sRGB gamma, D65 white, 2 degree
observer) and follows the tensor's device and floating dtype, batched and
differentiable. Every colour constant of the package lives here.

Layout: channels are dimension -3, i.e. (..., 3, H, W).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# sRGB (linear) -> XYZ, as scikit-image's ``xyz_from_rgb``.
XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
# D65 reference white, 2 degree observer.
WHITE_D65 = (0.95047, 1.0, 1.08883)

# sRGB transfer function.
SRGB_LINEAR_THRESHOLD = 0.04045  # encoded value where the curve turns from linear to power
SRGB_ENCODED_THRESHOLD = 0.0031308  # the same point on the linear side
SRGB_GAMMA = 2.4
SRGB_SLOPE = 12.92
SRGB_OFFSET = 0.055

# CIE Lab's f(t): cube root above EPSILON, a line below (scikit-image's constants).
LAB_EPSILON = 0.008856
LAB_KAPPA_SLOPE = 7.787
LAB_OFFSET = 16.0 / 116.0
LAB_F_THRESHOLD = 0.2068966  # f(LAB_EPSILON), where lab2xyz switches branch

# Network normalisation: L in [0, 100] -> [-1, 1]; ab (about +-110) -> about [-1, 1].
L_CENTER = 50.0
AB_SCALE = 110.0

# Lab round-trip error above which a colour counts as out of the sRGB gamut.
GAMUT_TOLERANCE = 0.05
GAMUT_BISECTION_STEPS = 8  # chroma scale to 1/256: finer than 8-bit output shows


def _channels(t: Tensor, name: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() < 3 or t.shape[-3] != 3:
        raise ValueError(f"{name} must have shape (..., 3, H, W); got {tuple(t.shape)}")
    return t if t.is_floating_point() else t.float()


def _mix(matrix: Tensor, t: Tensor) -> Tensor:
    """Applies a 3x3 colour matrix along dimension -3."""
    return torch.einsum("ij,...jhw->...ihw", matrix, t)


def _constant(values, like: Tensor) -> Tensor:
    # Built in float64 then cast, so float64 inputs keep full precision.
    return torch.tensor(values, dtype=torch.float64, device=like.device).to(like.dtype)


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB in [0, 1] -> CIE Lab (L in [0, 100], a and b about [-110, 110]).

    Args:
        rgb: (..., 3, H, W) float tensor in [0, 1], any device.

    Returns:
        (..., 3, H, W) tensor of L, a, b, same device and dtype.

    Raises:
        TypeError / ValueError: not a tensor, or no channel dimension of size 3 at -3.
    """
    rgb = _channels(rgb, "rgb")
    # The clamps keep the unused branch of each torch.where finite, so gradients are too.
    power = ((rgb.clamp(min=SRGB_LINEAR_THRESHOLD) + SRGB_OFFSET) / (1 + SRGB_OFFSET)) ** SRGB_GAMMA
    linear = torch.where(rgb > SRGB_LINEAR_THRESHOLD, power, rgb / SRGB_SLOPE)
    xyz = _mix(_constant(XYZ_FROM_RGB, rgb), linear)
    xyz = xyz / _constant(WHITE_D65, rgb)[:, None, None]
    f = torch.where(
        xyz > LAB_EPSILON,
        xyz.clamp(min=LAB_EPSILON) ** (1.0 / 3.0),
        LAB_KAPPA_SLOPE * xyz + LAB_OFFSET,
    )
    fx, fy, fz = f.unbind(dim=-3)
    return torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=-3)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """CIE Lab -> sRGB, clipped to [0, 1] (as ``skimage.color.lab2rgb``).

    Args:
        lab: (..., 3, H, W) float tensor: L in [0, 100], a and b, any device.

    Returns:
        (..., 3, H, W) RGB in [0, 1], same device and dtype.

    Raises:
        TypeError / ValueError: not a tensor, or no channel dimension of size 3 at -3.
    """
    lab = _channels(lab, "lab")
    L, a, b = lab.unbind(dim=-3)
    fy = (L + 16.0) / 116.0
    # Negative z is out of gamut; scikit-image clips it to 0 as well.
    f = torch.stack((a / 500.0 + fy, fy, (fy - b / 200.0).clamp(min=0)), dim=-3)
    xyz = torch.where(
        f > LAB_F_THRESHOLD, f**3, (f - LAB_OFFSET) / LAB_KAPPA_SLOPE
    ) * _constant(WHITE_D65, lab)[:, None, None]
    rgb_from_xyz = torch.linalg.inv(_constant(XYZ_FROM_RGB, lab).double()).to(lab.dtype)
    linear = _mix(rgb_from_xyz, xyz)
    encoded = torch.where(
        linear > SRGB_ENCODED_THRESHOLD,
        (1 + SRGB_OFFSET) * linear.clamp(min=SRGB_ENCODED_THRESHOLD) ** (1.0 / SRGB_GAMMA) - SRGB_OFFSET,
        linear * SRGB_SLOPE,
    )
    return encoded.clamp(0.0, 1.0)


def normalize_l(L: Tensor) -> Tensor:
    """L in [0, 100] -> [-1, 1] (the generator's input)."""
    return L / L_CENTER - 1.0


def denormalize_l(l_norm: Tensor) -> Tensor:
    """Inverse of ``normalize_l``: [-1, 1] -> L in [0, 100]."""
    return (l_norm + 1.0) * L_CENTER


def normalize_ab(ab: Tensor) -> Tensor:
    """ab (about [-110, 110]) -> about [-1, 1] (the generator's tanh range)."""
    return ab / AB_SCALE


def denormalize_ab(ab_norm: Tensor) -> Tensor:
    """Inverse of ``normalize_ab``."""
    return ab_norm * AB_SCALE


def rgb_to_normalized_lab(rgb: Tensor) -> tuple[Tensor, Tensor]:
    """sRGB (..., 3, H, W) in [0, 1] -> (normalised L (..., 1, H, W), normalised ab (..., 2, H, W))."""
    lab = rgb_to_lab(rgb)
    return normalize_l(lab[..., :1, :, :]), normalize_ab(lab[..., 1:, :, :])


def normalized_lab_to_rgb(l_norm: Tensor, ab_norm: Tensor) -> Tensor:
    """Normalised L (..., 1, H, W) and ab (..., 2, H, W) -> sRGB (..., 3, H, W) in [0, 1]."""
    lab = torch.cat((denormalize_l(l_norm), denormalize_ab(ab_norm)), dim=-3)
    return lab_to_rgb(lab)


def to_float(frames: np.ndarray, device: torch.device | str | None = None) -> Tensor:
    """uint8 RGB (B, H, W, 3) -> float32 RGB (B, 3, H, W) in [0, 1], on ``device``."""
    # torch warns on read-only arrays (PIL's np.asarray gives them): copy only those.
    return torch.from_numpy(np.require(frames, requirements="W")).to(device).permute(0, 3, 1, 2).float() / 255.0


def to_uint8(rgb: Tensor) -> np.ndarray:
    """Float RGB (B, 3, H, W) in [0, 1] -> uint8 (B, H, W, 3), rounded."""
    return (rgb.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def lab_to_rgb_in_gamut(lab: Tensor) -> Tensor:
    """Lab -> sRGB, shrinking the chroma of out-of-gamut colours instead of clipping RGB.

    Clipping RGB changes a colour's lightness; scaling its ab towards 0 (gray,
    always in gamut) keeps L. The largest in-gamut scale is found by bisection,
    only for the pixels that need it.

    Args:
        lab: (B, 3, H, W) float, L in 0..100.

    Returns:
        (B, 3, H, W) RGB in [0, 1].
    """
    rgb = lab_to_rgb(lab)
    # Only a colour that ``lab_to_rgb`` clipped can be out of gamut, and a
    # clipped colour has a channel at 0 or 1: check just those pixels. They are
    # picked by index, (N, 3) at a time, so the whole image is never copied.
    batch, row, col = ((rgb <= 0.0) | (rgb >= 1.0)).any(dim=-3).nonzero(as_tuple=True)
    if not batch.numel():
        return rgb
    lab_clipped = lab[batch, :, row, col]  # (N, 3)
    outside = _gamut_error(_as_image(lab_clipped), _as_image(rgb[batch, :, row, col]))[0, 0] > GAMUT_TOLERANCE
    if not outside.any():
        return rgb
    pixels = lab_clipped[outside]  # (M, 3)
    lightness, chroma = pixels[:, :1], pixels[:, 1:]
    low = torch.zeros_like(lightness)
    high = torch.ones_like(lightness)
    for _ in range(GAMUT_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        trial = _as_image(torch.cat([lightness, middle * chroma], dim=1))
        fits = (_gamut_error(trial, lab_to_rgb(trial)) <= GAMUT_TOLERANCE).reshape(-1, 1)
        low = torch.where(fits, middle, low)
        high = torch.where(fits, high, middle)
    fitted = lab_to_rgb(_as_image(torch.cat([lightness, low * chroma], dim=1)))
    rgb = rgb.clone()
    rgb[batch[outside], :, row[outside], col[outside]] = fitted[0, :, 0].T
    return rgb


def _as_image(pixels: Tensor) -> Tensor:
    """(N, 3) -> (1, 3, 1, N), the (..., 3, H, W) layout the Lab functions take."""
    return pixels.T.unsqueeze(0).unsqueeze(2)


def _gamut_error(lab: Tensor, rgb: Tensor) -> Tensor:
    """Largest Lab change (over the channels, dim -3) made by the clipping in ``lab_to_rgb``."""
    return (rgb_to_lab(rgb) - lab).abs().amax(dim=-3)


def histogram_bins(values: Tensor, bins: int, low: float, high: float) -> Tensor:
    """The bin (0 .. bins - 1) of each value on ``bins`` equal bins over [low, high]; values
    outside the range fall in the end bins. Every colour histogram of the package bins with this."""
    return ((values.float().clamp(low, high) - low) * (bins / (high - low))).long().clamp(0, bins - 1)


def channel_histograms(values: Tensor, bins: int, low: float, high: float) -> np.ndarray:
    """Per-frame, per-channel histograms of ``values`` (T, C, H, W) on ``histogram_bins``.

    Returns:
        float64 (T, C, bins); each row sums to 1.
    """
    count, channels = values.shape[:2]
    codes = histogram_bins(values.cpu(), bins, low, high).flatten(2)
    # One bincount over (frame, channel, bin) codes: no Python loop over frames.
    codes = codes + bins * torch.arange(count * channels).view(count, channels, 1)
    histograms = torch.bincount(codes.flatten(), minlength=count * channels * bins).view(count, channels, bins)
    return (histograms.double() / codes.shape[-1]).numpy()

