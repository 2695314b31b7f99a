"""Image files -> training pairs: finding and screening images, the crop /
resize / flip transform, and the dataset that yields normalised L and ab."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from .lab import rgb_to_normalized_lab

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# PIL modes that carry no colour at all.
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
# An RGB image whose channels differ by at most this (0..255) everywhere is gray;
# the slack absorbs JPEG's chroma noise.
GRAY_TOLERANCE = 3
# Side of the thumbnail the gray check looks at (a cheap, reduced decode).
GRAY_CHECK_SIDE = 64

_LOAD_ERRORS = (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError)


def find_images(root: str | Path) -> list[Path]:
    """Every image file under ``root`` (recursive), sorted; extensions in ``IMAGE_EXTENSIONS``."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _is_gray(image: Image.Image) -> bool:
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
            with Image.open(path) as image:
                (scan.gray if _is_gray(image) else scan.colour).append(path)
        except _LOAD_ERRORS as err:
            scan.unreadable.append((path, f"{type(err).__name__}: {err}"))
    return scan


class PairTransform:
    """PIL image -> RGB tensor (3, H, W) in [0, 1] at the training size.

    ``crop`` keeps the aspect ratio: the image is scaled to cover the target
    (times ``load_scale`` when training, giving the random crop its slack)
    and cropped, randomly when training, centred otherwise. ``stretch``
    resizes to the target (times ``load_scale``) ignoring the aspect ratio.
    Training also flips horizontally with probability 1/2.

    Args:
        size: (H, W) of the output.
        train: random crop and flip (else deterministic centre crop).
        resize: "crop" or "stretch".
        load_scale: >= 1, the slack of the random crop.
        flip: allow horizontal flips when training.
    """

    def __init__(
        self, size: tuple[int, int], train: bool, resize: str = "crop", load_scale: float = 1.12, flip: bool = True
    ) -> None:
        self.size = size
        self.train = train
        self.resize = resize
        self.load_scale = load_scale if train else 1.0
        self.flip = flip and train

    def scaled_size(self, width: int, height: int) -> tuple[int, int]:
        """(W, H) the image is resized to before the crop."""
        target_h, target_w = self.size
        if self.resize == "stretch":
            return (round(target_w * self.load_scale), round(target_h * self.load_scale))
        scale = max(target_h / height, target_w / width) * self.load_scale
        return (max(target_w, round(width * scale)), max(target_h, round(height * scale)))

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> Tensor:
        """Args: image: any PIL image; generator: randomness of crop and flip (training)."""
        new_w, new_h = self.scaled_size(*image.size)
        image.draft("RGB", (new_w, new_h))  # JPEG: decode big photos at reduced scale
        image = image.convert("RGB").resize((new_w, new_h), Image.Resampling.BICUBIC)
        target_h, target_w = self.size
        if self.train:
            top = int(torch.randint(new_h - target_h + 1, (1,), generator=generator))
            left = int(torch.randint(new_w - target_w + 1, (1,), generator=generator))
        else:
            top, left = (new_h - target_h) // 2, (new_w - target_w) // 2
        image = image.crop((left, top, left + target_w, top + target_h))
        if self.flip and bool(torch.rand((), generator=generator) < 0.5):
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


class ColorizationDataset(Dataset):
    """Images -> ``{"L": (1, H, W), "ab": (2, H, W), "path": str}``, normalised.

    An index may be an int, or an ``(index, sample_seed)`` pair (what
    ``ResumableSampler`` yields): the seed makes each sample's random crop
    and flip reproducible, independent of workers and of where training
    resumed. A file that fails to load is reported once and replaced by the
    next one, so one bad file never stops training.

    Args:
        paths: screened colour images (see ``scan_images``).
        transform: a ``PairTransform``.

    Raises:
        ValueError: ``paths`` is empty.
    """

    def __init__(self, paths: Sequence[Path], transform: PairTransform) -> None:
        if not paths:
            raise ValueError("ColorizationDataset needs at least one image")
        self.paths = list(paths)
        self.transform = transform
        self._reported: set[Path] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor | str]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        for offset in range(len(self.paths)):
            path = self.paths[(index + offset) % len(self.paths)]
            try:
                with Image.open(path) as image:
                    rgb = self.transform(image, generator)
            except _LOAD_ERRORS as err:
                if path not in self._reported:
                    self._reported.add(path)
                    warnings.warn(f"could not load {path} ({type(err).__name__}: {err}); using the next image", stacklevel=2)
                continue
            l_norm, ab_norm = rgb_to_normalized_lab(rgb)
            return {"L": l_norm, "ab": ab_norm, "path": str(path)}
        raise ValueError(f"none of the {len(self.paths)} images could be loaded (first: {self.paths[0]})")
