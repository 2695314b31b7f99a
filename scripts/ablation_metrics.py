"""Score trained checkpoints on what attention could change: the figures of issue 16's ablation.

    python scripts/ablation_metrics.py HELD_OUT_DIR RUN_DIR [RUN_DIR ...] [--json out.json]
    python scripts/ablation_metrics.py HELD_OUT_DIR RUN_DIR --time-steps 10   # + seconds per training step

For each checkpoint, on every photo under HELD_OUT_DIR (recursive), rendered at
the checkpoint's size:

- ``psnr``, ``ciede2000``, ``colorfulness``: ``sacolor-eval``'s own scores
  (``evaluate_images``), and ``gray``'s beside them;
- ``spread``: colour consistency, "one object, one colour". The photo is cut
  into ``SUPERPIXELS`` SLIC superpixels of the original; inside each, the
  spread of ab (sqrt(var a + var b)) of the colourised photo, over the same of
  the original (pixel-weighted means, per photo, then the mean over photos):
  1 is the original's texture, below 1 flatter, above 1 blotchy;
- ``ciede2000_hints_1`` / ``_3``: with 1 or 3 true-colour hints at random
  pixels (``sacolor-eval --hint-points``, same seeds);
- ``hint_reach_far`` (and ``hint_reach_far_unhinted``): the reach of one
  hint. Its object is every superpixel whose true mean ab is within
  ``SAME_COLOUR`` of the hinted superpixel's; of those farther than
  ``FAR`` x the longer side from the hint, the pixel share whose colourised
  mean ab is within ``SAME_COLOUR`` of the hint's colour, with the hint (and
  without it, the model's own guess). Only hints of chroma >= ``MIN_CHROMA``
  count (a gray hint is "taken" by a gray output).

``--time-steps N`` also times N training steps (batch 16 at the checkpoint's
size, forward and backward, the encoder frozen as in the shipped recipe's
first phase) of the generator as it is and with its attention replaced by the
identity: seconds per step and the attention's share of it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage.color import rgb2lab
from skimage.segmentation import slic
from tqdm import tqdm

from sacolor import SelfAttention
from sacolor.inference.colorizer import Colorizer
from sacolor.evaluation.scoring import GRAY, MODEL, evaluate_images, true_colour_hints
from sacolor.io.images import load_rgb
from sacolor.io.paths import is_image

SUPERPIXELS = 200
SLIC_COMPACTNESS = 10.0
SAME_COLOUR = 10.0  # ab units: "the same colour" for objects and for taking a hint
MIN_CHROMA = 15.0
FAR = 0.25
HINT_COUNTS = (1, 3)
TIMING_BATCH = 16


def segment_means(values: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """(H, W, C) values -> (count, C) mean per superpixel label."""
    sizes = np.bincount(labels.ravel(), minlength=count).astype(np.float64)
    sums = np.stack([np.bincount(labels.ravel(), weights=values[..., c].ravel(), minlength=count)
                     for c in range(values.shape[-1])], axis=1)
    return sums / np.maximum(sizes, 1)[:, None]


def spread(ab: np.ndarray, labels: np.ndarray, count: int) -> float:
    """Pixel-weighted mean over superpixels of sqrt(var a + var b) inside each."""
    mean = segment_means(ab, labels, count)
    squared = segment_means(ab**2, labels, count)
    variance = np.clip(squared - mean**2, 0, None).sum(axis=1)
    sizes = np.bincount(labels.ravel(), minlength=count)
    return float((np.sqrt(variance) * sizes).sum() / sizes.sum())


def colourised_ab(colorizer: Colorizer, truth: torch.Tensor, hints=()) -> np.ndarray:
    """The colourised photo's ab (H, W, 2) from its gray version, as ``sacolor-infer`` writes it."""
    rgb = colorizer.colorize((truth.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8), hints=hints)[0]
    return rgb2lab(rgb)[..., 1:]


def photo_figures(colorizer: Colorizer, path: Path, seed: int) -> dict[str, float | None]:
    """Spread ratio and one hint's far reach (with and without it) on one photo."""
    original = load_rgb(path)  # (H, W, 3) float in [0, 1]
    truth = torch.from_numpy(original).permute(2, 0, 1)[None]
    labels = slic(original, n_segments=SUPERPIXELS, compactness=SLIC_COMPACTNESS, start_label=0)
    count = int(labels.max()) + 1
    true_ab = rgb2lab(original)[..., 1:]
    plain = colourised_ab(colorizer, truth)
    figures: dict[str, float | None] = {"spread": spread(plain, labels, count) / max(spread(true_ab, labels, count), 1e-6)}
    hint = true_colour_hints(truth[0], 1, seed)[0]
    hint_ab = rgb2lab(np.array(hint.rgb, dtype=np.float64)[None, None] / 255.0)[0, 0, 1:]
    figures["hint_reach_far"] = figures["hint_reach_far_unhinted"] = None
    if np.hypot(*hint_ab) < MIN_CHROMA:
        return figures
    true_means = segment_means(true_ab, labels, count)
    hinted_label = labels[int(hint.y), int(hint.x)]
    rows, cols = np.mgrid[: labels.shape[0], : labels.shape[1]]
    centres = segment_means(np.stack([rows, cols], axis=-1).astype(np.float64), labels, count)
    distance = np.hypot(centres[:, 0] - hint.y, centres[:, 1] - hint.x) / max(labels.shape)
    same = np.linalg.norm(true_means - true_means[hinted_label], axis=1) < SAME_COLOUR
    far = same & (distance > FAR)
    sizes = np.bincount(labels.ravel(), minlength=count)
    if not far.any():
        return figures
    hinted = colourised_ab(colorizer, truth, [hint])
    for key, ab in (("hint_reach_far", hinted), ("hint_reach_far_unhinted", plain)):
        takes = np.linalg.norm(segment_means(ab, labels, count) - hint_ab, axis=1) < SAME_COLOUR
        figures[key] = float((sizes * (far & takes)).sum() / (sizes * far).sum())
    return figures


def step_seconds(colorizer: Colorizer, steps: int) -> dict[str, float]:
    """Seconds per training step of the generator with and without its attention, and the attention's share."""
    generator = colorizer.generator.float().train()
    generator.freeze_encoder = True
    height, width = colorizer.render_size
    l_norm = torch.rand(TIMING_BATCH, 1, height, width) * 2 - 1

    def timed() -> float:
        generator.zero_grad(set_to_none=True)
        generator(l_norm).square().mean().backward()  # one warm-up step
        start = time.perf_counter()
        for _ in range(steps):
            generator.zero_grad(set_to_none=True)
            generator(l_norm).square().mean().backward()
        return (time.perf_counter() - start) / steps

    with_attention = timed()
    attention = {name: module for name, module in generator.named_modules() if isinstance(module, SelfAttention)}
    for name in attention:
        parent, _, child = name.rpartition(".")
        setattr(generator.get_submodule(parent), child, torch.nn.Identity())
    without = timed() if attention else with_attention
    generator.eval()
    return {"seconds_per_step": with_attention, "seconds_per_step_no_attention": without,
            "attention_share": max(0.0, 1.0 - without / with_attention)}


def score(run: str, held_out: Path, time_steps: int) -> dict:
    colorizer = Colorizer.from_checkpoint(run, "cpu")
    paths = sorted(p for p in held_out.rglob("*") if is_image(p))
    if not paths:
        raise FileNotFoundError(f"no images under {held_out}")
    summary = evaluate_images(colorizer, paths)
    result = {"run": run, "n": len(paths), **{k: summary[MODEL][k] for k in ("psnr", "ciede2000", "colorfulness")},
              "gray": {k: summary[GRAY][k] for k in ("psnr", "ciede2000")}}
    for count in HINT_COUNTS:
        result[f"ciede2000_hints_{count}"] = evaluate_images(colorizer, paths, hint_points=count)[MODEL]["ciede2000"]
    per_photo = [photo_figures(colorizer, path, index) for index, path in enumerate(tqdm(paths, desc=Path(run).name))]
    for key in ("spread", "hint_reach_far", "hint_reach_far_unhinted"):
        values = [p[key] for p in per_photo if p[key] is not None]
        result[key] = float(np.mean(values)) if values else None
    result["hint_reach_photos"] = sum(p["hint_reach_far"] is not None for p in per_photo)
    if time_steps:
        result.update(step_seconds(colorizer, time_steps))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("held_out", type=Path, help="folder of held-out colour photos (searched recursively)")
    parser.add_argument("runs", nargs="+", help="checkpoint directories or .safetensors files to score")
    parser.add_argument("--time-steps", type=int, default=0, help="also time this many training steps (0: no timing)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.time_steps < 0:
        parser.error(f"--time-steps must be >= 0; got {args.time_steps}")
    results = [score(run, args.held_out, args.time_steps) for run in args.runs]
    text = json.dumps(results, indent=1)
    if args.json:
        partial = args.json.with_name(f".{args.json.name}.partial")
        partial.write_text(text)
        partial.replace(args.json)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
