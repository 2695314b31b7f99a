"""Colourising one photo of any size in a small, constant amount of memory per pixel.

The model runs at the render size; the full-resolution work is the colour
transfer (the photo's own L joined with the model's ab, upsampled). Done on
whole float32 images that costs about 120 bytes per pixel; here it runs in
strips of rows, so what a photo costs is its decoded pixels (Pillow: 4 bytes
for RGB), its L (float32, 4 bytes) and the 8-bit result (3 bytes), never all
at once: see ``BYTES_PER_PIXEL``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .colorizer import Colorizer, lab_to_rgb_in_gamut, to_uint8
from ..colour import rgb_to_lab
from .hints import Hint, check_inside
from ..io.images import READ_ERRORS, open_image, rgb_array

# Peak memory of ``colorize_photo`` per input pixel, measured on a 6000x4000
# RGB JPEG (tests/test_photo.py), rounded up; the constant part (the model,
# one strip's temporaries) is extra.
BYTES_PER_PIXEL = 12
# Pixels per strip: large enough to keep the per-call overhead negligible,
# small enough that a strip's float temporaries (~100 bytes a pixel) stay ~25 MB.
STRIP_PIXELS = 1 << 18


def colorize(
    image: str | os.PathLike | Image.Image | np.ndarray,
    checkpoint: str | os.PathLike | None = None,
    device: str = "auto",
    render_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Colourise one photo: ``sacolor.colorize("old.jpg")`` -> uint8 RGB (H, W, 3).

    The output has the input's size and luminance; only the model's colour is
    added. A file is processed in strips (``BYTES_PER_PIXEL`` per pixel); an
    image already in memory is processed whole. The model is loaded once per
    (checkpoint, device, render_size) and kept.

    Args:
        image: an image file, a PIL image (any mode), or an array: uint8 or
            float in [0, 1], gray (H, W) or RGB (H, W, 3); colour is treated as gray.
        checkpoint: a ``sacolor-train`` checkpoint (directory or .safetensors);
            None for the built-in model.
        device: "auto", "cpu" or "cuda".
        render_size: (h, w) the model runs at; the checkpoint's training size when None.

    Returns:
        uint8 RGB (H, W, 3).

    Raises:
        ValueError: an unreadable file, an array of the wrong shape or dtype, or a bad checkpoint.
        FileNotFoundError: a missing checkpoint.
    """
    colorizer = _colorizer(None if checkpoint is None else str(checkpoint), device, render_size)
    if isinstance(image, (str, os.PathLike)):
        return colorize_photo(colorizer, image)
    rgb = rgb_array(image) if isinstance(image, Image.Image) else _float_rgb(np.asarray(image))
    return to_uint8(colorizer.colorize_float(torch.from_numpy(rgb).permute(2, 0, 1)[None]))[0]


@lru_cache(maxsize=2)
def _colorizer(checkpoint: str | None, device: str, render_size: tuple[int, int] | None) -> Colorizer:
    return Colorizer.from_checkpoint(checkpoint, device, render_size)


def _float_rgb(array: np.ndarray) -> np.ndarray:
    """uint8 or float [0, 1] gray (H, W) or RGB (H, W, 3) -> float32 RGB (H, W, 3)."""
    if array.ndim == 2:
        array = array[..., None].repeat(3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"image must be gray (H, W) or RGB (H, W, 3); got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if np.issubdtype(array.dtype, np.floating):
        return np.clip(array, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"image must be uint8 or float in [0, 1]; got {array.dtype}")


def colorize_photo(colorizer: Colorizer, path: str | Path, hints: Sequence[Hint] = ()) -> np.ndarray:
    """Colourise an image file at its own resolution, keeping its luminance.

    The same result as ``Colorizer.colorize`` on the decoded photo (up to
    float rounding), in ``BYTES_PER_PIXEL`` per pixel instead of ~120. An
    animated image gives its first frame, with a warning.

    Args:
        colorizer: the model and its render size.
        path: an image file in any mode Pillow reads (gray, palette, 16-bit, CMYK, EXIF-rotated).
        hints: colour hints in the photo's pixels (a model that takes hints).

    Returns:
        uint8 RGB (H, W, 3).

    Raises:
        ValueError: the file is not a readable image, or a hint is outside it.
        MemoryError: the photo needs more memory than is available (the message gives sizes).
    """
    lightness = _lightness(path)
    channels = None
    if hints:
        check_inside(hints, lightness.shape[1], lightness.shape[0], str(path))
        channels = colorizer.hint_channels(hints, lightness.shape)
    ab = colorizer.predict_ab(torch.from_numpy(lightness)[None, None], channels)
    return _compose_in_strips(lightness, ab[0].float())


def _lightness(path: str | Path) -> np.ndarray:
    """L (0..100) of an image file as float32 (H, W), converted a strip at a time."""
    try:
        with open_image(path) as image:
            if getattr(image, "n_frames", 1) > 1:
                warnings.warn(f"{path}: has {image.n_frames} frames; only the first is colourised", stacklevel=3)
            check_memory(image.width, image.height, path)
            image.load()
            lightness = np.empty((image.height, image.width), np.float32)
            for rows in strips(image.height, image.width):
                strip = rgb_array(image.crop((0, rows.start, image.width, rows.stop)))
                lightness[rows] = rgb_to_lab(torch.from_numpy(strip).permute(2, 0, 1))[0].numpy()
            return lightness
    except READ_ERRORS as error:
        raise ValueError(f"{path}: cannot read image ({error})") from error


def _compose_in_strips(lightness: np.ndarray, ab: Tensor) -> np.ndarray:
    """Full-resolution L (H, W) joined with ab (2, h, w) bilinearly upsampled to it, as uint8 RGB.

    Bilinear interpolation is separable: ab is first widened to (2, h, W)
    (small), then each strip's rows are blended from two of its rows, exactly
    where ``F.interpolate(..., align_corners=False)`` would take them. The
    strips are computed on ab's device (the model's); the result is on the CPU.
    """
    height, width = lightness.shape
    wide = F.interpolate(ab[None], size=(ab.shape[1], width), mode="bilinear", align_corners=False)[0]
    out = np.empty((height, width, 3), np.uint8)
    for rows in strips(height, width):
        index = torch.arange(rows.start, rows.stop, dtype=torch.float32, device=ab.device)
        source = ((index + 0.5) * (ab.shape[1] / height) - 0.5).clamp(min=0)
        top = source.floor().long().clamp(max=ab.shape[1] - 1)
        bottom = (top + 1).clamp(max=ab.shape[1] - 1)
        weight = (source - top)[None, :, None]
        ab_rows = wide[:, top] * (1 - weight) + wide[:, bottom] * weight
        lab = torch.cat([torch.from_numpy(lightness[rows]).to(ab.device)[None], ab_rows])[None]
        out[rows] = to_uint8(lab_to_rgb_in_gamut(lab))[0]
    return out


def strips(height: int, width: int) -> Iterator[slice]:
    """Row ranges of about ``STRIP_PIXELS`` pixels covering an image."""
    step = max(1, STRIP_PIXELS // max(width, 1))
    for start in range(0, height, step):
        yield slice(start, min(start + step, height))


def check_memory(width: int, height: int, path: str | Path) -> None:
    """Raises MemoryError, with the sizes, when a photo would not fit in the memory available now."""
    available = available_memory()
    needed = width * height * BYTES_PER_PIXEL
    if available is not None and needed > available:
        raise MemoryError(
            f"{path}: a {width}x{height} photo ({width * height / 1e6:.0f} MP) needs about "
            f"{needed / 2**30:.1f} GiB and {available / 2**30:.1f} GiB is available; free memory or "
            "scale the photo down first"
        )


def available_memory() -> int | None:
    """Bytes this process can still allocate: the least of the system's available memory and its
    cgroup's remaining limit (Linux); None where neither is known."""
    limits = []
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            limits.append(int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(limits) if limits else None
