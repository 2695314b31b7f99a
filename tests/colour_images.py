"""Small synthetic colour photos and videos for the data and training tests (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from media import write_video
from PIL import Image


def smooth_colour_image(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    """(H, W, 3) uint8: smooth waves whose colour is a fixed function of brightness,
    so a colouriser can learn it from L alone."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / 32.0
    f = 0.5 + 0.5 * np.sin(rng.uniform(2, 6) * x + rng.uniform(0, 6)) * np.cos(rng.uniform(2, 6) * y + rng.uniform(0, 6))
    rgb = np.stack([f, 0.3 + 0.4 * (1 - f), 1 - f], axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def write_image_folder(root: Path, count: int, height: int = 48, width: int = 64) -> list[Path]:
    """``count`` colour images in mixed formats, half of them in a subfolder."""
    paths = []
    for i in range(count):
        ext = (".png", ".jpg", ".bmp", ".webp", ".tiff")[i % 5]
        folder = root / "nested" if i % 2 else root
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"image{i:03d}{ext}"
        Image.fromarray(smooth_colour_image(i, height, width)).save(path)
        paths.append(path)
    return paths


def write_drifting_video(path: Path, seconds: float = 3.0, rate: int = 10, height: int = 48, width: int = 64) -> Path:
    """An H.264 video whose colours drift over time."""
    frames = (np.roll(smooth_colour_image(0, height, width), shift=i, axis=1) for i in range(round(seconds * rate)))
    write_video(path, frames, fps=rate)
    return path
