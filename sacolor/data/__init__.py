"""Data: RGB <-> Lab conversion, image-folder and video datasets.

Datasets yield ``{"L": (1, H, W), "ab": (2, H, W), "path": str}``, both
normalised (``lab.normalize_l`` / ``lab.normalize_ab``).
"""

from .lab import (
    denormalize_ab,
    denormalize_l,
    lab_to_rgb,
    normalize_ab,
    normalize_l,
    normalized_lab_to_rgb,
    rgb_to_lab,
    rgb_to_normalized_lab,
)

__all__ = [
    "denormalize_ab",
    "denormalize_l",
    "lab_to_rgb",
    "normalize_ab",
    "normalize_l",
    "normalized_lab_to_rgb",
    "rgb_to_lab",
    "rgb_to_normalized_lab",
]
