"""The photo manifest (``photos.csv`` beside this module): every training and held-out
photograph, where it comes from, its content hash, category, licence and split;
and writing the train / held-out folders from it.

Each row names a file of a Debian package (``package``, ``file``, and ``entry``
inside a Qt resource file), or a photo bundled with scikit-image (``package``
``scikit-image``, ``file`` relative to ``skimage.data.data_dir``). ``sha256`` is
of the file's bytes, so a different package version is caught, not silently
used; ``dhash`` (hex) is the difference hash that finds near-duplicates.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from .package_images import PackageImage

MANIFEST = Path(__file__).with_name("photos.csv")
SPLITS = ("train", "heldout")
CATEGORIES = ("animals", "food", "objects", "buildings_streets", "people", "landscapes_water", "plants")
SKIMAGE = "scikit-image"
# Photos are stored at these shorter sides: training crops are cut at run time; held-out
# photos are evaluated (and shown) at their stored size.
TRAIN_SHORT_SIDE = 768
HELDOUT_SHORT_SIDE = 384
# Folder names of the materialised splits (what sacolor-train's --data expects).
SPLIT_FOLDERS = {"train": "train", "heldout": "test"}


@dataclass(frozen=True)
class Photo:
    """One manifest row."""

    name: str
    package: str
    file: str
    entry: str
    sha256: str
    dhash: str
    category: str
    licence: str
    split: str

    def source(self) -> PackageImage:
        """Where the bytes are."""
        if self.package == SKIMAGE:
            from skimage import data

            return PackageImage(SKIMAGE, str(Path(data.data_dir) / self.file))
        return PackageImage(self.package, self.file, self.entry)

    def read(self) -> bytes:
        """The file's bytes, checked against ``sha256``.

        Raises:
            FileNotFoundError: the package is not installed.
            ValueError: the bytes differ from the manifest's (another package version).
        """
        blob = self.source().read()
        if (digest := hashlib.sha256(blob).hexdigest()) != self.sha256:
            raise ValueError(
                f"{self.name}: {self.source().location} has sha256 {digest[:12]}..., the manifest says "
                f"{self.sha256[:12]}...: another version of {self.package}? Regenerate with scripts/prepare_photos.py screen"
            )
        return blob


def read_manifest(path: str | Path = MANIFEST) -> list[Photo]:
    """The manifest's rows.

    Raises:
        ValueError: a row with an unknown split or category, or a repeated name.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        photos = [Photo(**row) for row in csv.DictReader(handle)]
    seen: set[str] = set()
    for photo in photos:
        if photo.split not in SPLITS:
            raise ValueError(f"{path}: {photo.name} has split {photo.split!r}; expected one of {SPLITS}")
        if photo.category not in CATEGORIES:
            raise ValueError(f"{path}: {photo.name} has category {photo.category!r}; expected one of {CATEGORIES}")
        if photo.name in seen:
            raise ValueError(f"{path}: the name {photo.name} is used twice")
        seen.add(photo.name)
    return photos


def write_manifest(photos: Iterable[Photo], path: str | Path = MANIFEST) -> None:
    """Writes the manifest atomically, sorted by split, category and name."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([f.name for f in fields(Photo)])
        writer.writerows(astuple(p) for p in sorted(photos, key=lambda p: (p.split, p.category, p.name)))
    os.replace(partial, path)


def scaled(image: Image.Image, short_side: int) -> Image.Image:
    """``image`` as RGB with its shorter side ``short_side`` (never enlarged); a cut-out on white."""
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.new("RGBA", rgba.size, "white")
        image.alpha_composite(rgba)
    image = image.convert("RGB")
    scale = min(short_side / min(image.size), 1.0)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def target_path(photo: Photo, root: Path) -> Path:
    """Where ``materialise`` writes ``photo``: held-out photos lossless, training photos as JPEG."""
    suffix = "png" if photo.split == "heldout" else "jpg"
    return root / SPLIT_FOLDERS[photo.split] / photo.category / f"{photo.name}.{suffix}"


def materialise(photos: Sequence[Photo], root: str | Path, progress: bool = True) -> Path:
    """Writes ``root/train/<category>/<name>.jpg`` and ``root/test/<category>/<name>.png``
    (the held-out split), skipping files already there; returns ``root``.

    ``sacolor-train --data root`` trains on ``train/`` and evaluates on ``test/``;
    ``sacolor-eval root/test/<category>`` scores one category.
    """
    root = Path(root)
    targets = {photo: target_path(photo, root) for photo in photos}
    expected = set(targets.values())
    # A file left by an older manifest (a photo since moved to the other split) must not stay.
    for folder in SPLIT_FOLDERS.values():
        for stray in (p for p in (root / folder).rglob("*") if p.is_file() and p not in expected):
            stray.unlink()
    for photo, target in tqdm(targets.items(), desc="photos", unit="photo", disable=not progress):
        held_out = photo.split == "heldout"
        if target.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(io.BytesIO(photo.read())) as image:
            picture = scaled(image, HELDOUT_SHORT_SIDE if held_out else TRAIN_SHORT_SIDE)
        partial = target.with_name(f".{target.stem}.partial{target.suffix}")
        picture.save(partial, quality=95)
        os.replace(partial, target)
    return root
