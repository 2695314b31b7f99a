"""The photo data: the screening rule, near-duplicate hashes, licences, and the manifest's split."""

import csv
import hashlib
import io
from dataclasses import replace
from itertools import product
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sacolor.training.data import licences
from sacolor.training.data.manifest import CATEGORIES, MANIFEST, SKIMAGE, Photo, materialise, read_manifest
from sacolor.training.data.photo_rule import NEAR_DUPLICATE_BITS, difference_hash, hash_distance, photo_features, rejection

# The 24 photos held out before the package photos were added: they stay held out.
FIRST_HELD_OUT = {
    "ColorfulCups", "EveningGlow", "Kite", "OneStandsOut", "summer_1am", "FallenLeaf", "Garden", "LadyBird",
    "GreenMeadow", "Storm", "YellowFlower", "Aqua", "Picture_0B", "friends", "picosdeeuropa", "sunset", "Kleiber",
    "Wine", "seeding", "astronaut", "chelsea", "coffee", "rocket", "Dragonfly",
}


def cartoon(size=(320, 240)) -> Image.Image:
    """Flat fills with black outlines on a white ground, as a drawing is."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((30, 30, 200, 200), fill=(250, 200, 40), outline="black", width=4)
    draw.rectangle((150, 60, 300, 220), fill=(60, 120, 220), outline="black", width=4)
    draw.polygon([(20, 230), (120, 120), (160, 230)], fill=(230, 60, 60), outline="black")
    return image


def photo_like(size=(320, 240), seed=0) -> Image.Image:
    """Smooth shading plus texture and sensor noise everywhere, as a photograph has."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]] / max(size)
    base = np.stack([0.5 + 0.3 * np.sin(6 * x + seed), 0.4 + 0.3 * y, 0.3 + 0.2 * np.cos(5 * y * x)], axis=-1)
    noisy = base + rng.normal(0, 0.04, base.shape)
    return Image.fromarray((np.clip(noisy, 0, 1) * 255).astype(np.uint8))


def test_a_flat_cartoon_is_dropped_and_a_noisy_photo_kept():
    assert rejection(photo_features(cartoon())) == "drawing"
    assert rejection(photo_features(photo_like())) is None


def test_a_cartoon_saved_as_lossy_jpeg_is_still_a_drawing():
    buffer = io.BytesIO()
    cartoon().save(buffer, "JPEG", quality=90)
    assert rejection(photo_features(Image.open(buffer))) == "drawing"


def test_cut_outs_small_and_gray_images_are_dropped():
    cut_out = photo_like().convert("RGBA")
    alpha = Image.new("L", cut_out.size, 0)
    ImageDraw.Draw(alpha).ellipse((60, 40, 260, 200), fill=255)
    cut_out.putalpha(alpha)
    assert rejection(photo_features(cut_out)) == "cut-out"
    assert rejection(photo_features(photo_like(size=(180, 120)))) == "small"
    assert rejection(photo_features(photo_like().convert("L").convert("RGB"))) == "gray"


def test_near_duplicates_are_close_and_different_photos_far():
    original = photo_like(size=(640, 480), seed=1)
    buffer = io.BytesIO()
    original.resize((400, 300)).save(buffer, "JPEG", quality=70)
    resized = Image.open(buffer)
    assert hash_distance(difference_hash(original), difference_hash(resized)) <= NEAR_DUPLICATE_BITS
    other = photo_like(size=(640, 480), seed=4).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    assert hash_distance(difference_hash(original), difference_hash(other)) > NEAR_DUPLICATE_BITS


def test_licence_is_the_last_matching_stanza(tmp_path, monkeypatch):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: someone\nLicense: GPL-3+\n\n"
        "Files: src/activities/erase/resource/*\n       src/other/x.svg\nCopyright: someone\nLicense: CC-BY-SA-4.0\n\n"
        "Files: nature/Aqua.jpg\nCopyright: someone\nLicense: GPL-2+\n"
    )
    monkeypatch.setattr(licences, "COPYRIGHT", str(tmp_path / "{}" / "copyright"))
    licences._stanzas.cache_clear()
    assert licences.package_licence("pkg", "src/activities/erase/resource/gorilla.webp") == "CC-BY-SA-4.0"
    assert licences.package_licence("pkg", "src/activities/menu/resource/a.webp") == "GPL-3+"
    assert licences.package_licence("pkg", "/usr/share/backgrounds/mate/nature/Aqua.jpg") == "GPL-2+"
    licences._stanzas.cache_clear()


# --- the committed manifest ---

@pytest.fixture(scope="module")
def manifest():
    return read_manifest(MANIFEST)


def test_no_held_out_photo_is_in_training_by_content(manifest):
    train = [p for p in manifest if p.split == "train"]
    held = [p for p in manifest if p.split == "heldout"]
    assert not {p.sha256 for p in train} & {p.sha256 for p in held}
    close = [(t.name, h.name) for t, h in product(train, held)
             if hash_distance(int(t.dhash, 16), int(h.dhash, 16)) <= NEAR_DUPLICATE_BITS]
    assert not close, f"near-duplicates across the split: {close}"


def test_no_photo_is_listed_twice(manifest):
    assert len({p.sha256 for p in manifest}) == len(manifest)
    assert len({(p.package, p.file, p.entry) for p in manifest}) == len(manifest)


def test_every_looked_at_candidate_is_in_training(manifest):
    """docs/candidate_photos.csv (photos of eight more packages, each looked at) is training data only."""
    with open(Path(__file__).parents[1] / "docs" / "candidate_photos.csv", newline="", encoding="utf-8") as handle:
        candidates = {(row["package"], row["file"]) for row in csv.DictReader(handle)}
    splits = {(p.package, p.file): p.split for p in manifest}
    assert {splits.get(c) for c in candidates} == {"train"}


def test_held_out_set_keeps_the_first_24_and_adds_a_balanced_share(manifest):
    held = [p for p in manifest if p.split == "heldout"]
    assert FIRST_HELD_OUT <= {p.name for p in held}
    assert len(held) >= len(FIRST_HELD_OUT) + 60
    new_by_category = {c: sum(p.category == c for p in held if p.name not in FIRST_HELD_OUT) for c in CATEGORIES}
    for category in ("animals", "food", "objects", "buildings_streets", "landscapes_water", "people"):
        assert new_by_category[category] >= 4, new_by_category
    assert all(p.licence for p in manifest)


def skimage_photo(name: str, split: str) -> Photo:
    from skimage import data

    blob = (Path(data.data_dir) / name).read_bytes()
    return Photo(name.split(".")[0], SKIMAGE, name, "", hashlib.sha256(blob).hexdigest(), "0", "animals", "x", split)


def test_materialise_writes_the_split_folders_and_removes_strays(tmp_path):
    photos = [skimage_photo("chelsea.png", "heldout"), skimage_photo("coffee.png", "train")]
    stray = tmp_path / "train" / "animals" / "chelsea.jpg"  # an older manifest's split
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"old")
    materialise(photos, tmp_path, progress=False)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.*")) == [
        "test/animals/chelsea.png", "train/animals/coffee.jpg"]
    assert min(Image.open(tmp_path / "test/animals/chelsea.png").size) == 300  # never enlarged


def test_a_changed_file_is_refused(tmp_path):
    photo = replace(skimage_photo("chelsea.png", "train"), sha256="0" * 64)
    with pytest.raises(ValueError, match="another version"):
        materialise([photo], tmp_path, progress=False)


def test_scores_are_averaged_per_category_folder():
    from sacolor.evaluation.categories import by_category

    images = [
        {"path": "test/food/a.png", "model": {"psnr": 20.0}, "gray": {"psnr": 18.0}},
        {"path": "test/food/b.png", "model": {"psnr": 22.0}, "gray": {"psnr": 19.0}},
        {"path": "test/people/c.png", "model": {"psnr": 15.0}, "gray": {"psnr": 16.0}},
    ]
    assert by_category(images) == {
        "food": {"n": 2, "model": {"psnr": 21.0}, "gray": {"psnr": 18.5}},
        "people": {"n": 1, "model": {"psnr": 15.0}, "gray": {"psnr": 16.0}},
    }
