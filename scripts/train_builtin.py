"""Reproduce the built-in model that ``sacolor-infer`` uses without ``--checkpoint``.

    apt-get install mate-backgrounds plasma-workspace-wallpapers   # the photographs (Debian)
    python scripts/train_builtin.py --work /tmp/builtin            # prepare, train, export, evaluate

Data: 20 colour photographs: 12 from Debian's ``mate-backgrounds`` (nature)
and ``plasma-workspace-wallpapers`` (2560x1600 versions), plus three of
scikit-image's bundled photographs; five more are held out (never trained on)
for the evaluation. The wallpapers that are drawings or abstract art are not
used. Each training photo is cut into overlapping 160x160 tiles at three
scales, so the small set still shows the model many views.

Training: ``sacolor-train`` with the options in ``TRAIN_ARGS`` (a unet_128
generator with 16 base channels and self-attention on its 32x32 features,
PatchGAN with 32 base channels, log GAN loss + 100 x L1, batches of 8,
lr 4e-4 (G) / 2e-4 (D), EMA 0.99, 128x128 crops, seed 0) for ``--steps`` steps on the CPU. The EMA generator is exported as
fp16 safetensors + JSON to ``sacolor/assets/builtin.*`` (5.2 MB), the README picture
(``docs/sample_gray_colourised.png``) is drawn, and ``sacolor-eval`` compares
the model with the all-gray baseline on the held-out photos.

The shipped model: 300 steps (2 400 crops, about 5 passes over the 462
tiles), 38 minutes of wall time on a 2-core CPU shared with other jobs (load
average 6-8), torch 2.13.0. Held-out photos (sacolor-eval, 5 photos at 256 px
on the short side): PSNR 18.39 dB vs 16.31 dB all-gray, SSIM 0.820 vs 0.818,
colourfulness 27.0 vs 0.1 (the originals: 68.9).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from sacolor.checkpoint import EMA_PREFIX, GENERATOR_PREFIX, load_checkpoint, save_checkpoint
from sacolor.evaluate import main as evaluate
from sacolor.infer import main as infer
from sacolor.train import main as train

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "sacolor" / "assets"
PLASMA = "/usr/share/wallpapers/{}/contents/images/2560x1600.jpg"
MATE = "/usr/share/backgrounds/mate/nature/{}.jpg"
TRAIN_PHOTOS = [PLASMA.format(n) for n in ("BytheWater", "ColorfulCups", "DarkestHour", "FallenLeaf", "OneStandsOut", "Path", "summer_1am")] + [
    MATE.format(n) for n in ("Aqua", "Blinds", "Dune", "FreshFlower", "GreenMeadow", "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower")
] + ["skimage:astronaut", "skimage:rocket", "skimage:stereo_motorcycle"]
TEST_PHOTOS = [PLASMA.format("EveningGlow"), MATE.format("Garden"), MATE.format("LadyBird"), "skimage:chelsea", "skimage:coffee"]
TILE = 160
TILE_STRIDE = 128
TILE_SCALES = (160, 288, 512)  # shorter side of each photo before tiling
TEST_SHORT_SIDE = 256  # held-out photos are evaluated at this size (the model renders at 128)
SEED = 0
STEPS = 300
FIGURE_GAP = 8
TRAIN_ARGS = [
    "--netG", "unet_128", "--ngf", "16", "--ndf", "32", "--sa-sizes", "32", "--size", "128",
    "--gan-mode", "vanilla", "--lambda-l1", "100", "--batch-size", "8", "--lr-g", "4e-4", "--lr-d", "2e-4",
    "--ema", "--ema-decay", "0.99", "--seed", str(SEED), "--num-workers", "1", "--device", "cpu",
    # The plain PyTorch attention is the faster one for 32x32 maps on 2 cores; results are the same op.
    "--attention-backend", "reference",
    "--eval-every", "100", "--save-every", "50", "--n-samples", "4", "--no-progress",
]


def read_photo(source: str) -> Image.Image:
    """A photo by path, or ``skimage:<name>`` for a scikit-image bundled photograph."""
    if source.startswith("skimage:"):
        pixels = getattr(data, source.split(":", 1)[1])()
        return Image.fromarray(pixels[0] if isinstance(pixels, tuple) else pixels).convert("RGB")
    if not Path(source).is_file():
        raise FileNotFoundError(f"{source} is missing: apt-get install mate-backgrounds plasma-workspace-wallpapers")
    return Image.open(source).convert("RGB")


def photo_name(source: str) -> str:
    """"skimage:coffee" -> "coffee"; a wallpaper -> its folder's name; else the file's stem."""
    if source.startswith("skimage:"):
        return source.split(":", 1)[1]
    path = Path(source)
    return path.parts[4] if source.startswith("/usr/share/wallpapers/") else path.stem


def scaled(image: Image.Image, short_side: int) -> Image.Image:
    scale = short_side / min(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def tiles(image: Image.Image) -> list[Image.Image]:
    """Overlapping TILE x TILE crops of ``image`` at every scale in TILE_SCALES."""
    crops = []
    for short_side in TILE_SCALES:
        layer = scaled(image, short_side)
        for top in range(0, layer.height - TILE + 1, TILE_STRIDE):
            for left in range(0, layer.width - TILE + 1, TILE_STRIDE):
                crops.append(layer.crop((left, top, left + TILE, top + TILE)))
    return crops


def prepare(work: Path) -> tuple[Path, Path]:
    """Write ``work/data/train`` (tiles), ``work/data/test`` (tiles, for the trainer's
    evaluation) and ``work/heldout`` (whole held-out photos, for sacolor-eval)."""
    train_dir, test_dir, heldout = work / "data" / "train", work / "data" / "test", work / "heldout"
    for folder in (train_dir, test_dir, heldout):
        folder.mkdir(parents=True, exist_ok=True)
    for source in TRAIN_PHOTOS:
        for index, tile in enumerate(tiles(read_photo(source))):
            tile.save(train_dir / f"{photo_name(source)}_{index:03d}.png")
    for source in TEST_PHOTOS:
        photo = read_photo(source)
        scaled(photo, TEST_SHORT_SIDE).save(heldout / f"{photo_name(source)}.png")
        scaled(photo, TILE).crop((0, 0, TILE, TILE)).save(test_dir / f"{photo_name(source)}.png")
    return work / "data", heldout


def export(run_dir: Path, target: Path) -> None:
    """Keep only the inference weights (EMA if present), in fp16, with the config."""
    tensors, config = load_checkpoint(run_dir)
    prefix = EMA_PREFIX if any(k.startswith(EMA_PREFIX) for k in tensors) else GENERATOR_PREFIX
    weights = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items() if k.startswith(prefix)}
    save_checkpoint(target, weights, {"step": config["step"], "generator": config["generator"], "size": config["size"],
                                      "trained_by": "scripts/train_builtin.py"})
    for written in (target, target.with_suffix(".json")):
        written.chmod(0o644)  # package data: readable by every user of an installed copy


def make_figure(target: Path) -> None:
    """docs/ picture: the shipped gray sample | the built-in model's colourisation."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for data and the training run")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"optimisation steps (default {STEPS}, the shipped model)")
    parser.add_argument("--skip-prepare", action="store_true", help="reuse the data already in --work")
    parser.add_argument("--skip-train", action="store_true", help="export and evaluate the run already in --work")
    args = parser.parse_args(argv)

    data_dir, heldout = (args.work / "data", args.work / "heldout") if args.skip_prepare else prepare(args.work)
    run_dir = args.work / "runs" / "builtin"
    if not args.skip_train:
        started = time.time()
        status = train(["--data", str(data_dir), "--checkpoints-dir", str(args.work / "runs"), "--name", "builtin",
                        "--max-steps", str(args.steps), *TRAIN_ARGS])
        minutes = (time.time() - started) / 60
        print(json.dumps({"train_status": status, "steps": args.steps, "wall_minutes": round(minutes, 1)}), flush=True)
        if status:
            return status
    export(run_dir, ASSETS / "builtin.safetensors")
    make_figure(REPO / "docs" / "sample_gray_colourised.png")
    return evaluate([str(heldout), "--json", "--quiet"])


if __name__ == "__main__":
    sys.exit(main())
