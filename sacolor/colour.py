"""RGB <-> CIE Lab on torch tensors, and the network's normalisation of L and ab.

Matches ``skimage.color.rgb2lab`` / ``lab2rgb`` (sRGB gamma, D65 white, 2 degree
observer) and follows the tensor's device and floating dtype, batched and
differentiable. Every colour constant of the package lives here.

Layout: channels are dimension -3, i.e. (..., 3, H, W).
"""

from __future__ import annotations

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
