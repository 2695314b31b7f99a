"""Telling photographs from drawings, cartoons, cut-outs and renders, and finding near-duplicates.

A drawing or cartoon is made of flat fills bounded by sharp edges: inside the
picture (its background left aside) many neighbouring pixels are almost equal,
and a few colours cover most of it. A photograph has noise and texture
everywhere. A cut-out (a stamp, a sprite, a rendered planet) has a transparent
background. ``photo_features`` measures these on a reduced copy and
``rejection`` is the rule; its thresholds were chosen on package images
labelled by looking at them (docs/TRAINING.md gives the sample and the
accuracy). Near-duplicates are found with a difference hash.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .screening import is_gray

# Images are measured at this longer side (sizes differ; the measurements should not).
MEASURE_SIDE = 256
# Two neighbouring pixels are "flat" when no channel differs by more than this (0..255):
# lossy compression adds a little noise to a drawing's fills, a photo's texture more.
FLAT_STEP = 2
# Colours are counted after keeping this many bits per channel.
COLOUR_BITS = 5
# The palette share is the share of pixels covered by this many most frequent colours.
PALETTE_SIZE = 8
# Shorter side below which an image is too small to train on.
MIN_SHORT_SIDE = 200
# Share of (partly) transparent pixels above which an image is a cut-out, not a photographed scene.
MAX_TRANSPARENT = 0.02
# A drawing: flat inside (beyond this share of flat neighbour pairs off the background
# colour) and few colours (the palette covers more than this share). docs/TRAINING.md.
DRAWING_FLAT_SHARE = 0.30
DRAWING_PALETTE_SHARE = 0.60
# Difference hash: a (HASH_SIDE) x (HASH_SIDE + 1) gray thumbnail, one bit per horizontal step.
HASH_SIDE = 8
# Hashes this close (bits of 64) are near-duplicates: the same photo resized, recompressed or lightly edited.
NEAR_DUPLICATE_BITS = 6


@dataclass(frozen=True)
class PhotoFeatures:
    """What the rule looks at.

    ``flat_share``: share of neighbouring-pixel pairs off the most frequent (background)
    colour that are flat; ``palette_share``: share of pixels covered by the
    ``PALETTE_SIZE`` most frequent colours; ``transparent``: share of (partly)
    transparent pixels; ``short_side``: of the full-size image; ``gray``: no colour at all.
    """

    flat_share: float
    palette_share: float
    transparent: float
    short_side: int
    gray: bool


def measured_copy(image: Image.Image) -> Image.Image:
    """``image`` reduced to ``MEASURE_SIDE`` on its longer side (box filter: no new colours from ringing)."""
    image = image.copy()
    image.thumbnail((MEASURE_SIDE, MEASURE_SIDE), Image.Resampling.BOX)
    return image


def photo_features(image: Image.Image) -> PhotoFeatures:
    """The rule's measurements of one image (any mode)."""
    small = measured_copy(image)
    has_alpha = "A" in small.getbands() or "transparency" in small.info
    rgba = np.asarray(small.convert("RGBA"))
    transparent = float((rgba[..., 3] < 250).mean()) if has_alpha else 0.0
    rgb = rgba[..., :3].astype(np.int16)
    packed = rgb >> (8 - COLOUR_BITS)
    codes = (packed[..., 0].astype(np.int32) << 2 * COLOUR_BITS) | (packed[..., 1] << COLOUR_BITS) | packed[..., 2]
    values, counts = np.unique(codes, return_counts=True)
    background = values[counts.argmax()]
    flat = inside = 0
    for axis in (0, 1):
        step_flat = np.abs(np.diff(rgb, axis=axis)).max(axis=-1) <= FLAT_STEP
        off_background = (np.delete(codes, 0, axis=axis) != background) & (np.delete(codes, -1, axis=axis) != background)
        flat += int(step_flat[off_background].sum())
        inside += int(off_background.sum())
    palette_share = float(np.sort(counts)[::-1][:PALETTE_SIZE].sum() / codes.size)
    return PhotoFeatures(flat / max(inside, 1), palette_share, transparent, min(image.size), is_gray(image))


def rejection(features: PhotoFeatures) -> str | None:
    """Why the image is not a usable photograph ("small", "gray", "cut-out", "drawing"), or None to keep it."""
    if features.short_side < MIN_SHORT_SIDE:
        return "small"
    if features.gray:
        return "gray"
    if features.transparent > MAX_TRANSPARENT:
        return "cut-out"
    if features.flat_share > DRAWING_FLAT_SHARE and features.palette_share > DRAWING_PALETTE_SHARE:
        return "drawing"
    return None


def difference_hash(image: Image.Image) -> int:
    """A 64-bit difference hash: whether each pixel of a small gray copy is brighter than its right neighbour."""
    gray = np.asarray(image.convert("L").resize((HASH_SIDE + 1, HASH_SIDE), Image.Resampling.BOX), dtype=np.int16)
    bits = (gray[:, 1:] > gray[:, :-1]).ravel()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def hash_distance(a: int, b: int) -> int:
    """Differing bits of two hashes."""
    return (a ^ b).bit_count()
