"""Photographs from Debian packages for training and held-out evaluation.

    apt-get install --no-install-recommends gcompris-qt-data tuxpaint-stamps-default \\
        mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers \\
        argyll-doc plasma-workspace-data gnome-control-center-data kphotoalbum \\
        lirc-doc expeyes eyes17 qtwebengine5-examples
    python scripts/prepare_photos.py --work ~/.cache/sacolor/photos     # write train/ and test/ from the manifest
    python scripts/prepare_photos.py --work DIR --screen                # re-screen the packages, rewrite the manifest

Without ``--screen`` the committed manifest (``sacolor/training/data/photos.csv``) is
materialised: ``DIR/data/train/<category>/*.jpg`` and the held-out
``DIR/data/test/<category>/*.png`` (``sacolor-train --data DIR/data``;
``sacolor-eval DIR/data/test/<category>`` per category).

``--screen`` measures every raster image of ``SCREENED_PACKAGES`` (inside Qt
resource files too) with ``sacolor.training.data.photo_rule``, drops near-duplicates,
draws contact sheets of what was kept and dropped (``docs/screening_*.png``),
scores the rule against the labels in ``docs/photo_labels.csv`` (every candidate
there was looked at), and writes the manifest: what the rule keeps and the
labels call a photograph (paintings are photographs of paintings: the labels
drop them), plus ``CURATED``, the wallpapers and scikit-image photos chosen
by looking before (their held-out split unchanged), and ``CANDIDATES``,
photographs of eight more packages chosen by looking (training only).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, ImageDraw
from tqdm import tqdm

from sacolor.training.data.licences import package_licence
from sacolor.training.data.manifest import MANIFEST, SKIMAGE, Photo, materialise, read_manifest, write_manifest
from sacolor.training.data.package_images import PackageImage, package_images
from sacolor.training.data.photo_rule import NEAR_DUPLICATE_BITS, difference_hash, hash_distance, photo_features, rejection

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
LABELS = DOCS / "photo_labels.csv"
# Photographs of eight more packages, each looked at (docs/TRAINING.md): training only, with their category and
# licence (kphotoalbum's copyright file is not machine-readable: its licence is copied from it by hand).
CANDIDATES = DOCS / "candidate_photos.csv"
SCREENED_PACKAGES = ("gcompris-qt-data", "lomiri-wallpapers-20.04", "tuxpaint-stamps-default")
PLASMA = "/usr/share/wallpapers/{}/contents/images/{}"
MATE = "/usr/share/backgrounds/mate/nature/{}.jpg"
LOMIRI = "/usr/share/backgrounds/{}.jpg"
# name -> (package, file, category, held out): looked at one by one before the packages were screened.
CURATED = {
    **{name: ("plasma-workspace-wallpapers", PLASMA.format(name, size), category, held)
       for name, size, category, held in (
           ("BytheWater", "2560x1600.jpg", "landscapes_water", False),
           ("ColorfulCups", "2560x1600.jpg", "objects", True),
           ("DarkestHour", "2560x1600.jpg", "landscapes_water", False),
           ("EveningGlow", "2560x1600.jpg", "landscapes_water", True),
           ("FallenLeaf", "2560x1600.jpg", "plants", True),
           ("Kite", "2560x1600.jpg", "landscapes_water", True),
           ("OneStandsOut", "2560x1600.jpg", "plants", True),
           ("Path", "2560x1600.jpg", "landscapes_water", False),
           ("Volna", "5120x2880.jpg", "landscapes_water", False),
           ("summer_1am", "2560x1600.jpg", "landscapes_water", True))},
    **{name: ("mate-backgrounds", MATE.format(name), category, held) for name, category, held in (
        ("Aqua", "landscapes_water", True), ("Blinds", "plants", False), ("Dune", "landscapes_water", False),
        ("FreshFlower", "plants", False), ("Garden", "plants", True), ("GreenMeadow", "plants", True),
        ("LadyBird", "animals", True), ("RainDrops", "plants", False), ("Storm", "landscapes_water", True),
        ("TwoWings", "plants", False), ("Wood", "objects", False), ("YellowFlower", "plants", True))},
    # lomiri-wallpapers installs its 16.04 and 20.04 sets, each its own package.
    **{file.split("_by_")[0]: (f"lomiri-wallpapers-{'20.04' if file.startswith('Kleiber') else '16.04'}",
                               LOMIRI.format(file), category, held) for file, category, held in (
        ("Bridge_by_Sander_Klootwijk", "buildings_streets", False), ("Dragonfly_by_Bolly", "plants", True),
        ("Kleiber_by_Lukas_Baubkus", "animals", True), ("Picture_0B_by_freespace", "food", True),
        ("Picture_1A_by_freespace", "objects", False), ("Wine_by_Jakkub_Mede", "objects", True),
        ("aitzgorri_by_Aitzol_Berasategi", "landscapes_water", False), ("free_by_Peter_Nerlich", "animals", False),
        ("friends_by_Aitzol_Berasategi", "animals", True), ("life_by_Aitzol_Berasategi", "landscapes_water", False),
        ("picosdeeuropa_by_Aitzol_Berasategi", "landscapes_water", True),
        ("seeding_by_Clements_Engelhardt", "plants", True), ("sunset_by_Aitzol_Berasategi", "landscapes_water", True))},
    **{file.split(".")[0]: (SKIMAGE, file, category, held) for file, category, held in (
        ("astronaut.png", "people", True), ("chelsea.png", "animals", True), ("coffee.png", "food", True),
        ("rocket.jpg", "objects", True), ("motorcycle_left.png", "objects", False),
        ("motorcycle_right.png", "objects", False), ("hubble_deep_field.jpg", "landscapes_water", False))},
}
# New held-out photos per category, taken in sha256 order (a fixed, content-defined choice).
HELDOUT_PER_CATEGORY = {"animals": 15, "buildings_streets": 15, "objects": 12, "food": 8,
                        "landscapes_water": 6, "people": 4, "plants": 0}
SHEET_TILE = 72
SHEET_COLUMNS = 20
SKIMAGE_LICENCE = "see skimage/data/README.txt (scikit-image)"


@dataclass
class Candidate:
    image: PackageImage
    sha256: str
    dhash: int
    reason: str | None  # the rule's rejection, None when kept
    thumb: Image.Image


def measure(image: PackageImage) -> Candidate | None:
    blob = image.read()
    try:
        with Image.open(io.BytesIO(blob)) as picture:
            picture.load()
            reason = rejection(photo_features(picture))
            thumb = picture.convert("RGBA")
    except (OSError, ValueError) as err:
        print(f"unreadable: {image.location} ({err})", file=sys.stderr)
        return None
    thumb.thumbnail((SHEET_TILE, SHEET_TILE))
    return Candidate(image, hashlib.sha256(blob).hexdigest(), difference_hash(thumb.convert("RGB")), reason, thumb)


def contact_sheet(candidates: list[Candidate], target: Path, title: str) -> None:
    """Thumbnails on a light green ground (so transparency shows), the reason under each dropped one."""
    rows = (len(candidates) + SHEET_COLUMNS - 1) // SHEET_COLUMNS
    sheet = Image.new("RGB", (SHEET_COLUMNS * SHEET_TILE, 16 + rows * (SHEET_TILE + 12)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 2), title, fill="black")
    for k, c in enumerate(candidates):
        x, y = (k % SHEET_COLUMNS) * SHEET_TILE, 16 + (k // SHEET_COLUMNS) * (SHEET_TILE + 12)
        ground = Image.new("RGBA", c.thumb.size, (200, 255, 200, 255))
        ground.alpha_composite(c.thumb)
        sheet.paste(ground.convert("RGB"), (x, y))
        draw.text((x + 1, y + SHEET_TILE), (c.reason or c.image.name)[:12], fill="black")
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=256).save(target, optimize=True)  # a palette keeps the sheet well under 1 MB


def read_labels() -> dict[str, tuple[str, str]]:
    """location -> (label, category) from docs/photo_labels.csv."""
    with open(LABELS, newline="", encoding="utf-8") as handle:
        return {row["location"]: (row["label"], row["category"]) for row in csv.DictReader(handle)}


def licence_of(image: PackageImage) -> str:
    if image.package == SKIMAGE:
        return SKIMAGE_LICENCE
    if image.entry:  # GCompris keeps its activities under src/activities/ in the source tree
        source = image.entry.removeprefix("gcompris/") if image.entry.startswith("gcompris/") else f"src/activities/{image.entry}"
        return package_licence(image.package, source)
    return package_licence(image.package, image.file)


def photo_name(image: PackageImage) -> str:
    """A short unique name: the package's folder (or the resource file) and the file's stem."""
    path = PurePosixPath(image.entry or image.file)
    group = PurePosixPath(image.file).stem if image.entry else path.parent.name
    return f"{group}-{path.stem}"


def screen(work: Path) -> None:
    labels = read_labels()
    candidates = [c for package in SCREENED_PACKAGES
                  for c in map(measure, tqdm(list(package_images(package)), desc=package, unit="image")) if c]
    candidates = [c for c in candidates if c.reason != "small"]
    kept: list[Candidate] = []
    dropped: list[Candidate] = []
    for c in candidates:
        twin = next((k for k in kept if hash_distance(k.dhash, c.dhash) <= NEAR_DUPLICATE_BITS), None)
        if c.reason is None and twin is not None:
            c.reason = f"dup {twin.image.name}"
        (dropped if c.reason else kept).append(c)
    contact_sheet(kept, DOCS / "screening_kept.png", f"kept by the rule: {len(kept)}")
    contact_sheet(dropped, DOCS / "screening_dropped.png", f"dropped by the rule: {len(dropped)} (reason under each)")

    # The rule against the labels: a photograph is what the labels call "photo".
    scored = [(c.reason is None or c.reason.startswith("dup"), labels[c.image.location][0] == "photo")
              for c in candidates if c.image.location in labels]
    confusion = Counter(scored)
    accuracy = {"labelled": len(scored), "correct": confusion[(True, True)] + confusion[(False, False)],
                "photos_kept": confusion[(True, True)], "photos_dropped": confusion[(False, True)],
                "others_kept": confusion[(True, False)], "others_dropped": confusion[(False, False)],
                "others_kept_by_label": dict(Counter(labels.get(c.image.location, ("unlabelled", ""))[0] for c in kept
                                                     if labels.get(c.image.location, ("", ""))[0] != "photo"))}
    per_package = {package: dict(Counter((c.reason or "kept").split(" ")[0] for c in candidates
                                         if c.image.package == package)) for package in SCREENED_PACKAGES}
    misses = {"photos_dropped": [f"{c.image.name}: {c.reason}" for c in dropped
                                 if labels.get(c.image.location, ("", ""))[0] == "photo"],
              "others_kept": [f"{c.image.name}: {labels[c.image.location][0]}" for c in kept
                              if labels.get(c.image.location, ("photo", ""))[0] != "photo"]}
    print(json.dumps({"rule_on_labelled_sample": accuracy, "misses": misses,
                      "screened_at_least_200px": per_package}, indent=1))

    photos = [curated_photo(name, spec) for name, spec in CURATED.items()] + candidate_photos()
    curated_hashes = [int(p.dhash, 16) for p in photos]
    fresh: dict[str, list[Photo]] = defaultdict(list)
    # Labelled photo cut-outs (tuxpaint's food) are admitted by label, not by the rule.
    chosen = [c for c in candidates if labels.get(c.image.location, ("", ""))[0] == "photo-cut-out"]
    chosen += [c for c in kept if labels.get(c.image.location, ("", ""))[0] == "photo"]
    for c in chosen:
        if any(hash_distance(h, c.dhash) <= NEAR_DUPLICATE_BITS for h in curated_hashes):
            continue
        category = labels[c.image.location][1]
        fresh[category].append(Photo(photo_name(c.image), c.image.package, c.image.file, c.image.entry, c.sha256,
                                     f"{c.dhash:016x}", category, licence_of(c.image), "train"))
    for category, group in fresh.items():
        group.sort(key=lambda p: p.sha256)
        held = HELDOUT_PER_CATEGORY.get(category, 0)
        photos += [Photo(**{**vars(p), "split": "heldout" if i < held else "train"}) for i, p in enumerate(group)]
    write_manifest(photos)
    print(json.dumps(manifest_counts(photos), indent=1))


def curated_photo(name: str, spec: tuple[str, str, str, bool], licence: str = "") -> Photo:
    package, file, category, held = spec
    image = Photo(name, package, file, "", "", "", category, "", "").source()
    blob = image.read()
    with Image.open(io.BytesIO(blob)) as picture:
        dhash = difference_hash(picture.convert("RGB"))
    return Photo(name, package, file, "", hashlib.sha256(blob).hexdigest(), f"{dhash:016x}", category,
                 licence or licence_of(image), "heldout" if held else "train")


def candidate_photos() -> list[Photo]:
    """``CANDIDATES`` as manifest rows, all for training."""
    with open(CANDIDATES, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [curated_photo(photo_name(PackageImage(row["package"], row["file"])).replace(" ", "_"),
                          (row["package"], row["file"], row["category"], False), row["licence"]) for row in rows]


def manifest_counts(photos: list[Photo]) -> dict:
    """Photos per split and category, and per source package."""
    counts: dict = {"total": len(photos)}
    for split in ("train", "heldout"):
        part = [p for p in photos if p.split == split]
        counts[split] = {"total": len(part), **dict(sorted(Counter(p.category for p in part).items()))}
    counts["by_package"] = {f"{package} {split}": n for (package, split), n in
                            sorted(Counter((p.package, p.split) for p in photos).items())}
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True,
                        help="folder for the photos (DIR/data/train, DIR/data/test); outside the repository")
    parser.add_argument("--screen", action="store_true",
                        help="re-screen the packages and rewrite sacolor/training/data/photos.csv and docs/screening_*.png")
    args = parser.parse_args(argv)
    if args.screen:
        screen(args.work)
    photos = read_manifest(MANIFEST)
    root = materialise(photos, args.work / "data")
    print(json.dumps({"data": str(root), **manifest_counts(photos)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
