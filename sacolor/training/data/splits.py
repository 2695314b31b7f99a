"""``--data`` entries (image folders, video files) -> train and test image lists:
folders split at random (with a fixed seed), videos split by time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ...io.paths import IMAGE_SUFFIXES, VIDEO_SUFFIXES, find_images, is_video, suffix_list
from .frame_cache import Frame, cached_frames
from .screening import ImageScan, scan_images

# The held-out split of a folder without train/ and test/ must not move when
# --seed changes, so it has its own fixed seed.
SPLIT_SEED = 0


def split_fraction(paths: Sequence[Path], val_fraction: float) -> tuple[list[Path], list[Path]]:
    """A deterministic random split; the test part gets at least one image.

    Raises:
        ValueError: fewer than two images.
    """
    if len(paths) < 2:
        raise ValueError(f"need at least 2 images to hold one out for testing; got {len(paths)}")
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    n_test = min(max(1, round(val_fraction * len(paths))), len(paths) - 1)
    test = set(order[:n_test])
    return [p for i, p in enumerate(paths) if i not in test], [p for i, p in enumerate(paths) if i in test]


def split_by_time(frames: list[Frame], duration: float, val_fraction: float) -> tuple[list[Frame], list[Frame]]:
    """The first (1 - val_fraction) of the running time trains, the rest tests.

    Both parts keep at least one frame when there are two or more.

    Raises:
        ValueError: fewer than two frames.
    """
    if len(frames) < 2:
        raise ValueError(f"a video needs at least 2 sampled frames to split into train and test; got {len(frames)}")
    cut = (1.0 - val_fraction) * duration
    n_train = sum(f.time < cut for f in frames)
    n_train = min(max(n_train, 1), len(frames) - 1)
    return frames[:n_train], frames[n_train:]


def collect_splits(
    data: Sequence[str | Path],
    val_fraction: float = 0.1,
    fps: float = 2.0,
    frame_cache: str | Path = "frames",
    frame_cover: tuple[int, int] = (256, 512),
) -> tuple[list[Path], list[Path]]:
    """Train and test images from every ``--data`` entry.

    - A folder with ``train/`` and ``test/`` subfolders: those.
    - Any other folder: its images (recursive), split by ``split_fraction``.
    - A video file: frames every 1/fps seconds (cached), split by time.

    Grayscale and unreadable images are skipped and reported in one warning each.

    Returns:
        (train paths, test paths), both non-empty.

    Raises:
        FileNotFoundError: an entry that does not exist.
        ValueError: no entries, an entry that is neither folder nor video, or no
            usable colour images (the message says what was found).
    """
    if not data:
        raise ValueError("--data is required: one or more image folders or video files")
    train: list[Path] = []
    test: list[Path] = []
    scan_total = ImageScan()

    def screen(paths: list[Path]) -> list[Path]:
        scan = scan_images(paths)
        scan_total.colour += scan.colour
        scan_total.gray += scan.gray
        scan_total.unreadable += scan.unreadable
        return scan.colour

    for entry in map(Path, data):
        if entry.is_dir():
            if (entry / "train").is_dir() and (entry / "test").is_dir():
                parts = [screen(find_images(entry / "train")), screen(find_images(entry / "test"))]
                for part, name in zip(parts, ("train", "test")):
                    if not part:
                        raise ValueError(f"--data {entry / name} has no usable colour images ({suffix_list(IMAGE_SUFFIXES)})")
                train += parts[0]
                test += parts[1]
                continue
            found = find_images(entry)
            if not found:
                raise ValueError(f"--data {entry} has no images (searched recursively for {suffix_list(IMAGE_SUFFIXES)})")
            colour = screen(found)
            if len(colour) < 2:
                raise ValueError(
                    f"--data {entry}: {len(colour)} usable colour image(s) of {len(found)} found "
                    "(the rest are gray or unreadable); need at least 2 to hold one out"
                )
            part_train, part_test = split_fraction(colour, val_fraction)
            train += part_train
            test += part_test
        elif entry.is_file() and is_video(entry):
            frames, duration = cached_frames(entry, frame_cache, fps, frame_cover)
            colour = set(screen([f.path for f in frames]))
            part_train, part_test = split_by_time([f for f in frames if f.path in colour], duration, val_fraction)
            train += [f.path for f in part_train]
            test += [f.path for f in part_test]
        elif entry.exists():
            raise ValueError(
                f"--data {entry} is neither a folder nor a video file ({suffix_list(VIDEO_SUFFIXES)})"
            )
        else:
            raise FileNotFoundError(f"--data {entry} does not exist")
    scan_total.report("--data")
    return train, test

