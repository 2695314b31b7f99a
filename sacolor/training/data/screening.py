"""Screening candidate training images: colour ones are kept, gray and
unreadable ones are set aside and reported."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ...io.images import READ_ERRORS, open_image

# PIL modes that carry no colour at all.
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
# An RGB image whose channels differ by at most this (0..255) everywhere is gray;
# the slack absorbs JPEG's chroma noise.
GRAY_TOLERANCE = 3
# Side of the thumbnail the gray check looks at (a cheap, reduced decode).
GRAY_CHECK_SIDE = 64


def is_gray(image: Image.Image) -> bool:
    """Whether the image carries no colour (a gray mode, or RGB channels within GRAY_TOLERANCE)."""
    if image.mode in GRAY_MODES:
        return True
    image.draft("RGB", (GRAY_CHECK_SIDE, GRAY_CHECK_SIDE))  # JPEG: decode at reduced scale
    thumb = image.convert("RGB")
    thumb.thumbnail((GRAY_CHECK_SIDE, GRAY_CHECK_SIDE))
    rgb = np.asarray(thumb, dtype=np.int16)
    return int(np.abs(rgb - rgb.mean(axis=-1, keepdims=True)).max()) <= GRAY_TOLERANCE


@dataclass
class ImageScan:
    """The outcome of screening candidate files."""

    colour: list[Path] = field(default_factory=list)
    gray: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def report(self, where: str) -> None:
        """One warning for the gray files, one for the unreadable ones."""
        if self.gray:
            warnings.warn(
                f"{where}: skipped {len(self.gray)} grayscale image(s) (no colour to learn from), "
                f"e.g. {self.gray[0]}",
                stacklevel=2,
            )
        if self.unreadable:
            shown = "; ".join(f"{p}: {why}" for p, why in self.unreadable[:5])
            more = f" (and {len(self.unreadable) - 5} more)" if len(self.unreadable) > 5 else ""
            warnings.warn(f"{where}: skipped {len(self.unreadable)} unreadable file(s): {shown}{more}", stacklevel=2)


def scan_images(paths: Iterable[Path]) -> ImageScan:
    """Sorts files into colour, gray and unreadable (the latter with the reason)."""
    scan = ImageScan()
    for path in paths:
        try:
            with open_image(path) as image:
                (scan.gray if is_gray(image) else scan.colour).append(path)
        except READ_ERRORS as err:
            scan.unreadable.append((path, f"{type(err).__name__}: {err}"))
    return scan
