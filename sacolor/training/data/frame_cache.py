"""The report's movie dataset: frames sampled k per second (``io.video.sample_frames``),
resized and cached as images on first use (``splits.split_by_time`` splits them)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...io.video import sample_frames

INDEX_NAME = "index.json"


@dataclass(frozen=True)
class Frame:
    """One cached frame: its time in the video (seconds) and its image file."""

    time: float
    path: Path


def _cache_dir(video: Path, cache_root: Path, fps: float, cover: tuple[int, int]) -> Path:
    stat = video.stat()
    key = f"{video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{fps}|{cover}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return cache_root / f"{video.stem}-{digest}"


def _cover(image: Image.Image, cover: tuple[int, int]) -> Image.Image:
    """Resizes keeping the aspect ratio so that H >= cover[0] and W >= cover[1]."""
    scale = max(cover[0] / image.height, cover[1] / image.width)
    size = (max(cover[1], round(image.width * scale)), max(cover[0], round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def _extract(video: Path, out_dir: Path, fps: float, cover: tuple[int, int]) -> dict:
    frames = []

    def keep(time: float, rgb: np.ndarray) -> None:
        name = f"t{round(time * 1000):010d}.png"
        _cover(Image.fromarray(rgb), cover).save(out_dir / name)
        frames.append({"time": time, "file": name})

    try:
        duration = sample_frames(video, fps, keep)
    except ValueError as err:
        raise ValueError(f"could not decode video ({err})") from err
    if not frames:
        raise ValueError(f"video {video} has no decodable frames")
    return {"video": str(video), "fps": fps, "duration": duration, "frames": frames}


def cached_frames(
    video: str | Path, cache_root: str | Path, fps: float = 2.0, cover: tuple[int, int] = (256, 512)
) -> tuple[list[Frame], float]:
    """Frames sampled every 1/fps seconds, decoded once and cached as PNGs.

    Later calls (and later epochs) read the cache. The cache directory is
    written under a temporary name and renamed when complete, so an
    interrupted extraction is never mistaken for a finished one.

    Args:
        video: a video file PyAV can decode.
        cache_root: where cache directories go (one per video, fps and size).
        fps: frames kept per second of video (the report uses 2).
        cover: (H, W) the cached frames at least cover, aspect ratio kept.

    Returns:
        (frames in time order, duration of the video in seconds).

    Raises:
        FileNotFoundError: no such video.
        ValueError: not decodable, or no frames.
    """
    video = Path(video)
    if not video.is_file():
        raise FileNotFoundError(f"video {video} does not exist")
    cache_root = Path(cache_root)
    target = _cache_dir(video, cache_root, fps, cover)
    if not (target / INDEX_NAME).is_file():
        cache_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache_root, prefix=f".{target.name}."))
        try:
            index = _extract(video, tmp, fps, cover)
            (tmp / INDEX_NAME).write_text(json.dumps(index))
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    index = json.loads((target / INDEX_NAME).read_text())
    return [Frame(f["time"], target / f["file"]) for f in index["frames"]], float(index["duration"])
