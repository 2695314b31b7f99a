"""Image files -> training pairs: the crop / resize / flip transform, and the
dataset that yields normalised L and ab."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ..io.images import READ_ERRORS, open_image
from .lab import rgb_to_normalized_lab


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
        paths: screened colour images (see ``screening.scan_images``).
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
                with open_image(path) as image:
                    rgb = self.transform(image, generator)
            except READ_ERRORS as err:
                if path not in self._reported:
                    self._reported.add(path)
                    warnings.warn(f"could not load {path} ({type(err).__name__}: {err}); using the next image", stacklevel=2)
                continue
            l_norm, ab_norm = rgb_to_normalized_lab(rgb)
            return {"L": l_norm, "ab": ab_norm, "path": str(path)}
        raise ValueError(f"none of the {len(self.paths)} images could be loaded (first: {self.paths[0]})")
