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
from PIL import Image, ImageOps
from torch import Tensor

from ..colour import lab_to_rgb_in_gamut, rgb_to_lab, to_uint8
from ..io.images import READ_ERRORS, open_image, rgb_array
from ..options import parse_size
from .colorizer import Colorizer
from .hints import Hint, check_inside

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
    render_size: int | str | Sequence[int] | None = None,
    chroma_gain: float | None = None,
    chroma_floor: float | None = None,
) -> np.ndarray:
    """Colourise one photo: ``sacolor.colorize("old.jpg")`` -> uint8 RGB (H, W, 3).

    The output has the input's size and luminance; only the model's colour is
    added. A file is processed in strips (``BYTES_PER_PIXEL`` per pixel); an
    image already in memory is processed whole. The model is loaded once per
    (checkpoint, device, render_size, chroma_gain, chroma_floor) and kept.

    Args:
        image: an image file (str, bytes or path), a PIL image (any mode; turned upright
            by its EXIF orientation, as a file is), or an array: uint8, or float with
            finite values in [0, 1], gray (H, W) or RGB (H, W, 3); colour is treated as gray.
        checkpoint: a ``sacolor-train`` checkpoint (directory or .safetensors);
            None for the built-in model.
        device: "auto", "cpu" or "cuda".
        render_size: the size the model runs at, as in the CLI's --render-size: N (keeps the
            aspect ratio), "HxW" or (h, w); the checkpoint's training size when None.
        chroma_gain, chroma_floor: the chroma curve, as the CLI's --chroma-gain (above 1 more
            vivid) and --chroma-floor (weak colour shown gray); the checkpoint's own when None.

    Returns:
        uint8 RGB (H, W, 3).

    Raises:
        ValueError: an unreadable file, an empty image, an array of the wrong shape, dtype or
            range, a bad render size, chroma gain or floor, or a bad checkpoint.
        TypeError: ``image`` is none of the above.
        FileNotFoundError: a missing checkpoint.
    """
    if isinstance(image, (str, bytes, os.PathLike)):
        rgb = None
    elif isinstance(image, Image.Image):
        rgb = rgb_array(ImageOps.exif_transpose(image))
    elif isinstance(image, np.ndarray):
        rgb = _float_rgb(image)
    else:
        raise TypeError(
            f"image must be a file path, a PIL image or a numpy array; got {type(image).__name__}"
        )
    if rgb is not None and 0 in rgb.shape[:2]:
        raise ValueError(f"image is empty ({rgb.shape[0]}x{rgb.shape[1]} pixels); give a photo of at least 1x1")
    size = None if render_size is None else _render_size(render_size)
    colorizer = _colorizer(None if checkpoint is None else str(checkpoint), device, size, chroma_gain, chroma_floor)
    if rgb is None:
        return colorize_photo(colorizer, os.fsdecode(image))
    return to_uint8(colorizer.colorize_float(torch.from_numpy(rgb).permute(2, 0, 1)[None]))[0]


def _render_size(value: int | str | Sequence[int]) -> tuple[int, int]:
    """``render_size`` as the CLI's --render-size reads it (128, "256x512", (256, 512))."""
    try:
        return parse_size(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"render_size: {error}; give N, 'HxW' or (h, w)") from None


@lru_cache(maxsize=2)
def _colorizer(
    checkpoint: str | None,
    device: str,
    render_size: tuple[int, int] | None,
    chroma_gain: float | None,
    chroma_floor: float | None,
) -> Colorizer:
    return Colorizer.from_checkpoint(checkpoint, device, render_size, chroma_gain, chroma_floor)


def _float_rgb(array: np.ndarray) -> np.ndarray:
    """uint8 or float [0, 1] gray (H, W) or RGB (H, W, 3) -> float32 RGB (H, W, 3).

    Raises:
        ValueError: another shape or dtype, or floats that are not finite values in [0, 1]
            (clipping them would colourise a black or white picture without a word).
    """
    if array.ndim == 2:
        array = array[..., None].repeat(3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"image must be gray (H, W) or RGB (H, W, 3); got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(
                f"image holds {np.count_nonzero(~np.isfinite(array))} NaN or infinite values; "
                "a float image must hold finite values in [0, 1]"
            )
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise ValueError(
                f"float image values must be in [0, 1]; got {array.min():g} to {array.max():g} "
                "(for 0..255 pass uint8, or divide by 255)"
            )
        return array.astype(np.float32)
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
    return colorize_lightness(colorizer, read_lightness(path), hints, str(path))


def colorize_lightness(
    colorizer: Colorizer, lightness: np.ndarray, hints: Sequence[Hint] = (), source: str = "photo", encoded: list[Tensor] | None = None
) -> np.ndarray:
    """``colorize_photo`` on a photo's L already read (``read_lightness``), so that an editor
    can colourise one photo again and again with other hints without decoding it each time.

    Args:
        lightness: float32 (H, W), L in 0..100.
        hints: colour hints in the photo's pixels.
        source: the photo's name, for error messages.
        encoded: optional ``colorizer.encode`` of this L, kept from an earlier call.

    Returns:
        uint8 RGB (H, W, 3).

    Raises:
        ValueError: a hint is outside the photo, or the model takes no hints.
    """
    channels = None
    if hints:
        check_inside(hints, lightness.shape[1], lightness.shape[0], source)
        channels = colorizer.hint_channels(hints, lightness.shape)
    ab = colorizer.predict_ab(torch.from_numpy(lightness)[None, None], channels, encoded)
    return _compose_in_strips(lightness, ab[0].float())


def read_lightness(path: str | Path) -> np.ndarray:
    """L (0..100) of an image file as float32 (H, W), converted a strip at a time.

    Raises:
        ValueError: the file is not a readable image.
        MemoryError: the photo would not fit in the memory available.
    """
    try:
        # Where the memory available is known, it decides (a real bomb claims more than there is);
        # Pillow's fixed 179 MP guard refused scans that fit easily.
        with open_image(path, bomb_guard=available_memory() is None) as image:
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
            f"{megabytes(needed)} and {megabytes(max(available, 0))} is available; free memory or "
            "scale the photo down first"
        )


def megabytes(size: int) -> str:
    """A byte count for a message: "2,184 MB", "96 MB", "0.086 MB"."""
    return f"{size / 1e6:,.0f} MB" if size >= 10e6 else f"{size / 1e6:.2g} MB"


def available_memory() -> int | None:
    """Bytes this process can still allocate: the least of the system's available memory and the
    headroom under every memory limit of its cgroups (v1 and v2, its own and their ancestors'; Linux);
    None where none is known."""
    limits = []
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError):
        pass
    try:
        membership, mounts = Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text()
    except OSError:
        membership = mounts = ""
    headroom = cgroup_headroom(membership, mounts)
    if headroom is not None:
        limits.append(headroom)
    return min(limits) if limits else None


# (limit file, usage file) of the memory controller in cgroup v2 and v1.
_CGROUP_FILES = {"cgroup2": ("memory.max", "memory.current"), "cgroup": ("memory.limit_in_bytes", "memory.usage_in_bytes")}
# cgroup v1 writes "no limit" as a huge number (PAGE_COUNTER_MAX pages).
_UNLIMITED = 2**62


def cgroup_headroom(membership: str, mountinfo: str) -> int | None:
    """The least (limit - usage) over the memory cgroups a process belongs to and their ancestors.

    Args:
        membership: the text of /proc/self/cgroup ("0::/a/b" for v2, "4:memory:/a/b" for v1).
        mountinfo: the text of /proc/self/mountinfo, which says where each hierarchy is mounted.

    Returns:
        Bytes, or None where no limit applies or none can be read.
    """
    paths = {}
    for line in membership.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            paths["cgroup2"] = path
        elif "memory" in controllers.split(","):
            paths["cgroup"] = path
    headrooms = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        kind, _, options = line.split(" - ", 1)[1].partition(" ")
        root, mount_point = fields[3], Path(fields[4])
        if kind not in paths or (kind == "cgroup" and "memory" not in options.split()[-1].split(",")):
            continue
        relative = os.path.relpath(paths[kind], root)
        if relative.startswith(".."):
            continue  # the process's cgroup is outside what is mounted here
        folder = Path(os.path.normpath(mount_point / relative))
        limit_name, usage_name = _CGROUP_FILES[kind]
        while True:
            try:
                limit = (folder / limit_name).read_text().strip()
                if limit != "max" and int(limit) < _UNLIMITED:
                    headrooms.append(int(limit) - int((folder / usage_name).read_text()))
            except (OSError, ValueError):
                pass
            if folder == mount_point or mount_point not in folder.parents:
                break
            folder = folder.parent
    return min(headrooms) if headrooms else None
