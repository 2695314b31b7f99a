"""Image files -> training pairs: the crop / resize / flip transform, and the
dataset that yields normalised L and ab."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ...io.images import READ_ERRORS, open_image
from ...colour import rgb_to_normalized_lab


# Random resized crops: the default smallest area fraction (Inception's was 0.08), a close-up's default smallest
# area, and the aspect-ratio factor range.
MIN_CROP_AREA = 0.1
CLOSE_UP_AREA = 0.1
RANDOM_ASPECT = (3 / 4, 4 / 3)


class PairTransform:
    """PIL image -> RGB tensor (3, H, W) in [0, 1] at the training size.

    ``crop`` keeps the aspect ratio: the image is scaled to cover the target
    (times ``load_scale`` when training, giving the random crop its slack)
    and cropped, randomly when training, centred otherwise. ``stretch``
    resizes to the target (times ``load_scale``) ignoring the aspect ratio.
    ``random`` (training; ``crop`` otherwise) is the random resized crop of
    Inception/ImageNet training: a region of ``min_area`` to all of the image's
    area with an aspect ratio within ``RANDOM_ASPECT`` of the target's, resized
    to the target, so a few large photos give views at many scales. A
    ``close_up_share`` of the crops instead take ``close_up_area`` to
    ``min_area`` of it: mostly whole scenes, with some close-ups.
    Training also flips horizontally with probability 1/2.

    Args:
        size: (H, W) of the output.
        train: random crop and flip (else deterministic centre crop).
        resize: "crop", "stretch" or "random".
        load_scale: >= 1, the slack of the random crop.
        flip: allow horizontal flips when training.
        min_area: ``random``'s smallest crop, as a fraction (0, 1] of the image's area.
        close_up_share: the share [0, 1) of ``random``'s crops that are close-ups.
        close_up_area: a close-up's smallest area, a fraction (0, ``min_area``) of the image's.
    """

    def __init__(
        self, size: tuple[int, int], train: bool, resize: str = "crop", load_scale: float = 1.12, flip: bool = True,
        min_area: float = MIN_CROP_AREA, close_up_share: float = 0.0, close_up_area: float = CLOSE_UP_AREA,
    ) -> None:
        if not 0 < min_area <= 1:
            raise ValueError(f"min_area must be in (0, 1] (a fraction of the image's area); got {min_area}")
        if not 0 <= close_up_share < 1:
            raise ValueError(f"close_up_share must be in [0, 1) (a share of the crops); got {close_up_share}")
        if close_up_share and not 0 < close_up_area < min_area:
            raise ValueError(f"close_up_area must be in (0, min_area={min_area}) (close-ups are smaller than the "
                             f"other crops); got {close_up_area}")
        self.size = size
        self.train = train
        self.resize = resize
        self.load_scale = load_scale if train else 1.0
        self.flip = flip and train
        self.min_area = min_area
        self.close_up_share = close_up_share
        self.close_up_area = close_up_area

    def scaled_size(self, width: int, height: int) -> tuple[int, int]:
        """(W, H) the image is resized to before the crop."""
        target_h, target_w = self.size
        if self.resize == "stretch":
            return (round(target_w * self.load_scale), round(target_h * self.load_scale))
        scale = max(target_h / height, target_w / width) * self.load_scale
        return (max(target_w, round(width * scale)), max(target_h, round(height * scale)))

    def random_box(self, width: int, height: int, generator: torch.Generator | None) -> tuple[float, float, float, float]:
        """A random (left, top, right, bottom) region for the random resized crop."""
        target_h, target_w = self.size
        low, high = self.min_area, 1.0
        # Drawn only when asked for, so the crops of runs without close-ups stay as they were.
        if self.close_up_share and float(torch.rand((), generator=generator)) < self.close_up_share:
            low, high = self.close_up_area, self.min_area
        area = width * height * float(torch.empty(()).uniform_(low, high, generator=generator))
        log_low, log_high = (math.log(r) for r in RANDOM_ASPECT)
        aspect = target_w / target_h * math.exp(float(torch.empty(()).uniform_(log_low, log_high, generator=generator)))
        box_w = min(math.sqrt(area * aspect), width)
        box_h = min(box_w / aspect, height)
        left = float(torch.rand((), generator=generator)) * (width - box_w)
        top = float(torch.rand((), generator=generator)) * (height - box_h)
        return (left, top, left + box_w, top + box_h)

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> Tensor:
        """Args: image: any PIL image; generator: randomness of crop and flip (training)."""
        if self.train and self.resize == "random":
            return self._finish(self._random_resized_crop(image, generator), generator)
        new_w, new_h = self.scaled_size(*image.size)
        image.draft("RGB", (new_w, new_h))  # JPEG: decode big photos at reduced scale
        image = image.convert("RGB").resize((new_w, new_h), Image.Resampling.BICUBIC)
        target_h, target_w = self.size
        if self.train:
            top = int(torch.randint(new_h - target_h + 1, (1,), generator=generator))
            left = int(torch.randint(new_w - target_w + 1, (1,), generator=generator))
        else:
            top, left = (new_h - target_h) // 2, (new_w - target_w) // 2
        return self._finish(image.crop((left, top, left + target_w, top + target_h)), generator)

    def _random_resized_crop(self, image: Image.Image, generator: torch.Generator | None) -> Image.Image:
        width, height = image.size
        left, top, right, bottom = self.random_box(width, height, generator)
        target_h, target_w = self.size
        # JPEG: decode at the smallest scale that still gives the region its target size.
        image.draft("RGB", (math.ceil(width * target_w / (right - left)), math.ceil(height * target_h / (bottom - top))))
        scale_x, scale_y = image.size[0] / width, image.size[1] / height
        box = (left * scale_x, top * scale_y, min(right * scale_x, image.size[0]), min(bottom * scale_y, image.size[1]))
        return image.convert("RGB").resize((target_w, target_h), Image.Resampling.BICUBIC, box=box)

    def _finish(self, image: Image.Image, generator: torch.Generator | None) -> Tensor:
        """The training flip, then (3, H, W) float in [0, 1]."""
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
