"""Still images in and out: the one image reader (training and inference), float RGB; outputs as 8-bit RGB.

Scans and old photographs come as 8-bit gray, palette, 16-bit gray, CMYK or
camera JPEGs with an EXIF rotation. ``open_image`` opens any of them upright,
leaving the decode lazy so that training can still ``draft`` a big JPEG at
reduced scale; ``load_rgb`` turns any of them into one float RGB array so the
rest of the inference pipeline sees a single format.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

# What Pillow raises for a file it cannot read: not an image, truncated or
# corrupt data, or a decompression bomb.
READ_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)
# Modes whose samples are wider than 8 bits, and the value that means white.
_WIDE_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}
JPEG_QUALITY = 95
_BOMB_LIMIT_LOCK = threading.Lock()


@contextmanager
def open_image(path: str | Path, bomb_guard: bool = True) -> Iterator[Image.Image]:
    """Open an image file with Pillow, turned upright by its EXIF orientation.

    An image that needs no turning is yielded still undecoded (``draft`` works
    on it); one that does is decoded and transposed. The file is closed on exit.

    Args:
        path: the image file.
        bomb_guard: keep Pillow's decompression-bomb limit (about 179 MP); a caller that
            checks the size against the memory it has itself (``photo.check_memory``) turns it off.

    Yields:
        The upright PIL image, in the file's own mode.

    Raises:
        One of ``READ_ERRORS``: Pillow cannot read the file.
    """
    with _opened(path, bomb_guard) as image:
        # exif_transpose always decodes; reading the tag first keeps the common case lazy.
        upright = image.getexif().get(ExifTags.Base.Orientation, 1) == 1
        yield image if upright else ImageOps.exif_transpose(image)


@contextmanager
def _opened(path: str | Path, bomb_guard: bool) -> Iterator[Image.Image]:
    if bomb_guard:
        with Image.open(path) as image:
            yield image
        return
    with _BOMB_LIMIT_LOCK:  # Pillow reads the limit from a module global when it opens a file
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            image = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    with image:
        yield image


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image upright (EXIF orientation applied) as RGB in [0, 1].

    Gray, palette, alpha, CMYK and 16-bit images are converted; alpha is
    dropped. 16-bit and 32-bit integer gray images are scaled by 65535.

    Args:
        path: the image file.

    Returns:
        float32 array (H, W, 3) in [0, 1].

    Raises:
        ValueError: the file is not an image Pillow can decode (naming it).
    """
    try:
        with open_image(path) as image:
            image.load()
            return rgb_array(image)
    except READ_ERRORS as error:
        raise ValueError(f"{path}: cannot read image ({error})") from error


def rgb_array(image: Image.Image) -> np.ndarray:
    """A decoded PIL image in any mode (gray, palette, alpha, CMYK, 16-bit) as float32 RGB (H, W, 3) in [0, 1]."""
    if image.mode in _WIDE_MODES:
        gray = np.asarray(image, dtype=np.float32) / _WIDE_MODES[image.mode]
        return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def save_rgb(path: str | Path, rgb: np.ndarray) -> None:
    """Write uint8 RGB (H, W, 3) in the format the path's suffix names.

    Raises:
        ValueError: ``rgb`` is not uint8 (H, W, 3), or Pillow cannot write the format.
        OSError: the file system refuses the file (permissions, space).
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb must be a uint8 array (H, W, 3); got {rgb.dtype} {rgb.shape}")
    image = Image.fromarray(rgb, mode="RGB")
    fmt = image_format_for(path)
    options = {"quality": JPEG_QUALITY} if fmt == "JPEG" else {}
    try:
        image.save(path, format=fmt, **options)
    except OSError as error:
        if error.errno is not None:  # the file system's refusal (permissions, space), not the format's
            raise
        raise ValueError(f"{path}: cannot write this image format ({error})") from error
    except (KeyError, ValueError) as error:
        raise ValueError(f"{path}: cannot write this image format ({error})") from error


def image_format_for(path: str | Path) -> str:
    """Pillow's format name for a path's suffix, e.g. "PNG" for "a.png".

    Raises:
        ValueError: Pillow has no writer for the suffix.
    """
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"{path}: cannot write images with suffix {Path(path).suffix!r}")
    return fmt
