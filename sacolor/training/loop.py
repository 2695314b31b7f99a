"""The training loop: ``fit`` steps a run to its end, evaluating and saving on schedule."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..colour import denormalize_l, normalized_lab_to_rgb, to_uint8
from ..evaluation.scoring import GRAY, MODEL, TRUTH, evaluate_images
from ..inference.colorizer import Colorizer
from .data.dataset import ColorizationDataset, PairTransform
from .run import TrainingRun
from .state import save_run
from .step import train_step

METRICS_NAME = "metrics.jsonl"


def _tensorboard(log_dir: Path):
    """A SummaryWriter when TensorBoard is installed (it is optional)."""
    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(log_dir))


def fit(run: TrainingRun) -> list[dict[str, float]]:
    """Trains ``run`` until its ``max_steps``, evaluating and saving on schedule.

    Returns:
        The loss dict of every step this call ran (for tests and scripts).
    """
    config = run.config
    history: list[dict[str, float]] = []
    writer = _tensorboard(run.run_dir / "tensorboard") if run.rank == 0 else None
    bar = tqdm(
        total=run.max_steps, initial=run.step, disable=run.rank != 0 or not config.progress,
        desc=config.name, dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0,
    )
    started, start_step = time.perf_counter(), run.step
    try:
        while run.step < run.max_steps:
            epoch, offset = divmod(run.step, run.steps_per_epoch)
            run.sampler.set_position(epoch, offset * config.batch_size)
            for batch in run.loader:
                losses = train_step(run, batch)
                history.append(losses)
                images_per_s = (run.step - start_step) * config.batch_size * run.world_size / (time.perf_counter() - started)
                bar.set_postfix({**{k: f"{v:.3f}" for k, v in losses.items()}, "img/s": f"{images_per_s:.1f}"}, refresh=False)
                bar.update(1)  # redraws at most every mininterval
                if writer is not None:
                    for key, value in losses.items():
                        writer.add_scalar(f"train/{key}", value, run.step)
                last = run.step >= run.max_steps
                if run.step % config.eval_every == 0 or last:
                    evaluate_run(run, writer)
                if run.step % config.save_every == 0 or last:
                    save_run(run)
                if last:
                    break
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return history


@torch.no_grad()
def evaluate_run(run: TrainingRun, writer=None) -> dict[str, float] | None:
    """Scores the generator (its EMA when kept) on the held-out images, as ``sacolor-eval`` does.

    The held-out files are colourised at the training size and scored whole
    by ``evaluation.scoring.evaluate_images``, the code behind ``sacolor-eval``, so a
    checkpoint's ``sacolor-eval --render-size <size>`` on the same files gives
    the same numbers. Appends ``{"step", "psnr", "ssim", "ciede2000",
    "colorfulness", "psnr_gray", "ciede2000_gray", "colorfulness_true", ...}``
    to ``<run>/metrics.jsonl`` and writes a sample grid (gray | truth |
    generated) of centre crops to ``<run>/samples/``. Only rank 0
    evaluates; other ranks return None.
    """
    if run.rank != 0:
        return None
    model = run.eval_model
    was_training = model.training
    colorizer = Colorizer(model, run.config.size, run.device)  # puts the model in eval mode
    try:
        paths = run.test_paths[: run.config.eval_images]
        summary = evaluate_images(colorizer, paths)
        samples = _sample_grid(run, colorizer, paths[: run.config.n_samples])
    finally:
        model.train(was_training)
    record = {"step": run.step, **summary[MODEL], **{f"{k}_gray": v for k, v in summary[GRAY].items()},
              "colorfulness_true": summary[TRUTH]["colorfulness"], "images": summary["n"]}
    run.run_dir.mkdir(parents=True, exist_ok=True)
    with open(run.run_dir / METRICS_NAME, "a") as f:
        f.write(json.dumps(record) + "\n")
    if samples is not None:
        (run.run_dir / "samples").mkdir(exist_ok=True)
        Image.fromarray(to_uint8(samples[None])[0]).save(run.run_dir / "samples" / f"step_{run.step:07d}.png")
    if writer is not None:
        for key, value in record.items():
            if key not in ("step", "images"):
                writer.add_scalar(f"eval/{key}", value, run.step)
    run.log(
        f"step {run.step}: PSNR {record['psnr']:.2f} dB (gray {record['psnr_gray']:.2f}), "
        f"CIEDE2000 {record['ciede2000']:.2f} (gray {record['ciede2000_gray']:.2f}), SSIM {record['ssim']:.4f}, "
        f"colourfulness {record['colorfulness']:.1f} (truth {record['colorfulness_true']:.1f})"
    )
    return record


def _sample_grid(run: TrainingRun, colorizer: Colorizer, paths: list[Path]) -> Tensor | None:
    """Rows of gray | truth | generated centre crops at the training size, or None without paths."""
    if not paths:
        return None
    crops = ColorizationDataset(paths, PairTransform(run.config.size, False, resize="crop"))
    rows = []
    for sample in DataLoader(crops, batch_size=len(paths)):
        L, ab = sample["L"].to(run.device), sample["ab"].to(run.device)
        truth = normalized_lab_to_rgb(L, ab)
        gray = normalized_lab_to_rgb(L, torch.zeros_like(ab))
        generated = colorizer.colorize_lightness(denormalize_l(L))
        rows += [torch.cat(triple, dim=2) for triple in zip(gray, truth, generated)]
    return torch.cat(rows, dim=1)
