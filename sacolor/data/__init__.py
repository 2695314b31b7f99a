"""Data: RGB <-> Lab conversion, image-folder and video datasets.

Datasets yield ``{"L": (1, H, W), "ab": (2, H, W), "path": str}``, both
normalised (``lab.normalize_l`` / ``lab.normalize_ab``).
"""

from .images import IMAGE_EXTENSIONS, ColorizationDataset, PairTransform, find_images, scan_images
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
from .sources import collect_splits
from .video import VIDEO_EXTENSIONS, cached_frames, split_by_time

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ColorizationDataset",
    "PairTransform",
    "cached_frames",
    "collect_splits",
    "find_images",
    "scan_images",
    "split_by_time",
    "denormalize_ab",
    "denormalize_l",
    "lab_to_rgb",
    "normalize_ab",
    "normalize_l",
    "normalized_lab_to_rgb",
    "rgb_to_lab",
    "rgb_to_normalized_lab",
]
