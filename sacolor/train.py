"""``sacolor-train``: trains the self-attention Pix2Pix colouriser (L -> ab).

One process, or many through ``torchrun --nproc_per_node=K -m sacolor.train``
(DistributedDataParallel; NCCL on GPUs, gloo on CPU; only rank 0 writes).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from .checkpoint import (
    DISCRIMINATOR_PREFIX,
    EMA_PREFIX,
    GENERATOR_PREFIX,
    CheckpointFiles,
    load_checkpoint,
    load_training_state,
    save_checkpoint,
    strip_prefix,
)
from .config import PRESETS, TrainConfig, merge_config
from .data.dataset import ColorizationDataset, PairTransform
from .data.lab import AB_SCALE, normalized_lab_to_rgb
from .data.sampler import ResumableSampler
from .data.splits import collect_splits
from .io.paths import suffix_help
from .losses import GANLoss, l1_loss
from .metrics import colorfulness, psnr, ssim
from .models import build_discriminator, build_generator

METRICS_NAME = "metrics.jsonl"


class EMA:
    """An exponential moving average of a model's parameters (buffers are copied).

    The decay ramps up as min(decay, (1 + n) / (10 + n)) over the first
    updates, so a short run's average is not dominated by the initial weights.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for averaged, current in zip(self.model.parameters(), model.parameters()):
            averaged.lerp_(current, 1.0 - decay)
        for averaged, current in zip(self.model.buffers(), model.buffers()):
            averaged.copy_(current)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def _prefixed(prefix: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {prefix + k: v for k, v in state.items()}


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _tensorboard(log_dir: Path):
    """A SummaryWriter when TensorBoard is installed (it is optional)."""
    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(log_dir))


def _to_uint8(rgb: Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (rgb.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


class Trainer:
    """Builds models, optimisers and data from a ``TrainConfig`` and trains.

    ``step(batch)`` runs one D update and one G update and returns the losses;
    ``fit()`` loops, evaluates, saves and resumes.

    Args:
        config: the options.
        rank, world_size: this process's place in a torchrun job (0 and 1 alone).

    Raises:
        ValueError / FileNotFoundError: bad data, a batch size larger than the
            training set, or ``resume`` without a checkpoint.
    """

    def __init__(self, config: TrainConfig, rank: int = 0, world_size: int = 1) -> None:
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.device = self._device()
        self.run_dir = Path(config.checkpoints_dir) / config.name
        self.step_count = 0

        train_paths, test_paths = self._splits()
        transform = dict(resize=config.resize, load_scale=config.load_scale, flip=config.flip)
        self.train_set = ColorizationDataset(train_paths, PairTransform(config.size, True, **transform))
        self.test_set = ColorizationDataset(test_paths[: config.eval_images], PairTransform(config.size, False, **transform))
        self.sampler = ResumableSampler(self.train_set, world_size, rank, shuffle=True, seed=config.seed)
        self.steps_per_epoch = self.sampler.num_samples // config.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"--batch-size {config.batch_size} is larger than the {self.sampler.num_samples} training "
                f"images each of the {world_size} process(es) gets; lower --batch-size or add images"
            )
        self.max_steps = config.max_steps or config.n_epochs * self.steps_per_epoch
        self.loader = DataLoader(
            self.train_set, batch_size=config.batch_size, sampler=self.sampler, drop_last=True,
            num_workers=config.num_workers, persistent_workers=config.num_workers > 0,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),  # keeps the global RNG untouched by loader iterators
        )

        torch.manual_seed(config.seed)  # identical initial weights on every rank
        generator_spec = config.generator_spec()
        self.G = build_generator(
            generator_spec["name"], **generator_spec["kwargs"], attention_backend=config.attention_backend
        ).to(self.device)
        self.D = build_discriminator(
            ndf=config.ndf, n_layers=config.n_layers_D, norm=config.norm, sa_sizes=config.sa_sizes_D,
            spectral_norm=config.spectral_norm, input_size=config.size, attention_backend=config.attention_backend,
        ).to(self.device)
        self.ema = EMA(self.G, config.ema_decay) if config.ema else None
        betas = (config.beta1, config.beta2)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=config.lr_g, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=config.lr_d, betas=betas)
        self.gan_loss = GANLoss(config.gan_mode)
        self.autocast_dtype = self._autocast_dtype()
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.autocast_dtype == torch.float16
        )
        if world_size > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.G = DistributedDataParallel(self.G, device_ids=device_ids)
            self.D = DistributedDataParallel(self.D, device_ids=device_ids)
        torch.manual_seed(config.seed + rank)  # dropout noise differs between ranks
        random.seed(config.seed + rank)
        if config.resume:
            self._resume()

    # ----- setup -------------------------------------------------------------------

    def _device(self) -> torch.device:
        wanted = self.config.device
        if wanted == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda, but torch sees no CUDA device; use --device cpu or auto")
        if wanted == "cpu" or (wanted == "auto" and not torch.cuda.is_available()):
            return torch.device("cpu")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)

    def _autocast_dtype(self) -> torch.dtype | None:
        if not self.config.amp:
            return None
        if self.device.type != "cuda":
            self._log("--amp applies to CUDA devices only; training in float32 on CPU")
            return None
        if self.config.amp_dtype == "bf16" and not torch.cuda.is_bf16_supported():
            self._log("this GPU has no bfloat16; --amp uses float16 with loss scaling")
            return torch.float16
        return torch.bfloat16 if self.config.amp_dtype == "bf16" else torch.float16

    def _splits(self) -> tuple[list[Path], list[Path]]:
        """Only rank 0 extracts video frames; the others then read its cache."""
        config = self.config
        cover = tuple(round(s * config.load_scale) for s in config.size)
        cache = config.frame_cache or str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sacolor" / "frames")
        if self.rank == 0:
            splits = collect_splits(config.data, config.val_fraction, config.fps, cache, cover)
        if self.world_size > 1:
            dist.barrier()
        if self.rank != 0:
            splits = collect_splits(config.data, config.val_fraction, config.fps, cache, cover)
        return splits

    def _log(self, message: str) -> None:
        if self.rank == 0:
            tqdm.write(message, file=sys.stderr)

    # ----- training -----------------------------------------------------------------

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)

    def step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """One discriminator update, then one generator update.

        Args:
            batch: ``{"L": (B, 1, H, W), "ab": (B, 2, H, W)}`` normalised.

        Returns:
            ``{"loss_D", "loss_G_GAN", "loss_G_L1", "loss_G"}`` as floats (L1 already times lambda).
        """
        L = batch["L"].to(self.device, non_blocking=True)
        ab = batch["ab"].to(self.device, non_blocking=True)
        self.G.train()
        self.D.train()
        with self._autocast():
            fake = self.G(L)
            # Real and fake pairs in one forward: DDP allows one forward per backward.
            logits = self.D(torch.cat((torch.cat((L, ab), 1), torch.cat((L, fake.detach()), 1)), 0))
        real_logits, fake_logits = logits.chunk(2)
        loss_D = self.gan_loss.discriminator(real_logits, fake_logits)
        self.opt_D.zero_grad(set_to_none=True)
        self.scaler.scale(loss_D).backward()
        self.scaler.step(self.opt_D)

        with self._autocast():
            fake_logits = self.D(torch.cat((L, fake), 1))
        loss_G_GAN = self.gan_loss.generator(fake_logits)
        loss_G_L1 = self.config.lambda_l1 * l1_loss(fake, ab)
        loss_G = loss_G_GAN + loss_G_L1
        # D's gradients from this backward are discarded by its next zero_grad.
        self.opt_G.zero_grad(set_to_none=True)
        self.scaler.scale(loss_G).backward()
        self.scaler.step(self.opt_G)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(_unwrap(self.G))
        self.step_count += 1
        return {
            "loss_D": loss_D.item(), "loss_G_GAN": loss_G_GAN.item(),
            "loss_G_L1": loss_G_L1.item(), "loss_G": loss_G.item(),
        }

    def fit(self) -> list[dict[str, float]]:
        """Trains until ``max_steps``, evaluating and saving on schedule.

        Returns:
            The loss dict of every step this call ran (for tests and scripts).
        """
        config = self.config
        history: list[dict[str, float]] = []
        writer = _tensorboard(self.run_dir / "tensorboard") if self.rank == 0 else None
        bar = tqdm(
            total=self.max_steps, initial=self.step_count, disable=self.rank != 0 or not config.progress,
            desc=config.name, dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0,
        )
        started, start_step = time.perf_counter(), self.step_count
        try:
            while self.step_count < self.max_steps:
                epoch, offset = divmod(self.step_count, self.steps_per_epoch)
                self.sampler.set_position(epoch, offset * config.batch_size)
                for batch in self.loader:
                    losses = self.step(batch)
                    history.append(losses)
                    images_per_s = (self.step_count - start_step) * config.batch_size * self.world_size / (time.perf_counter() - started)
                    bar.set_postfix({**{k: f"{v:.3f}" for k, v in losses.items()}, "img/s": f"{images_per_s:.1f}"}, refresh=False)
                    bar.update(1)  # redraws at most every mininterval
                    if writer is not None:
                        for key, value in losses.items():
                            writer.add_scalar(f"train/{key}", value, self.step_count)
                    last = self.step_count >= self.max_steps
                    if self.step_count % config.eval_every == 0 or last:
                        self.evaluate(writer)
                    if self.step_count % config.save_every == 0 or last:
                        self.save()
                    if last:
                        break
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        return history

    # ----- evaluation ---------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, writer=None) -> dict[str, float] | None:
        """Scores the generator (its EMA when enabled) on the held-out images.

        Appends ``{"step", "psnr", "ssim", "colorfulness", "l1", ...}`` to
        ``<run>/metrics.jsonl`` and writes a sample grid (gray | truth |
        generated) to ``<run>/samples/``. ``l1`` is the mean |ab error| in Lab
        units; ``psnr_gray`` scores the uncoloured input, a baseline.
        Only rank 0 evaluates; other ranks return None.
        """
        if self.rank != 0:
            return None
        model = self.ema.model if self.ema is not None else _unwrap(self.G)
        was_training = model.training
        model.eval()
        loader = DataLoader(self.test_set, batch_size=self.config.batch_size, num_workers=0, generator=torch.Generator())
        scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "colorfulness": [], "colorfulness_true": [], "psnr_gray": []}
        l1_sum, pixels, samples = 0.0, 0, []
        for batch in loader:
            L, ab = batch["L"].to(self.device), batch["ab"].to(self.device)
            with self._autocast():
                fake = model(L)
            fake = fake.float()
            pred, true = normalized_lab_to_rgb(L, fake), normalized_lab_to_rgb(L, ab)
            gray = normalized_lab_to_rgb(L, torch.zeros_like(ab))
            l1_sum += float((fake - ab).abs().sum()) * AB_SCALE
            pixels += ab.numel()
            for p, t, g in zip(pred, true, gray):
                scores["psnr"].append(psnr(p, t))
                scores["ssim"].append(ssim(p, t))
                scores["colorfulness"].append(colorfulness(p))
                scores["colorfulness_true"].append(colorfulness(t))
                scores["psnr_gray"].append(psnr(g, t))
                if len(samples) < self.config.n_samples:
                    samples.append(torch.cat((g, t, p), dim=2))
        model.train(was_training)
        record = {"step": self.step_count, **{k: float(np.mean(v)) for k, v in scores.items()},
                  "l1": l1_sum / pixels, "images": len(self.test_set)}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / METRICS_NAME, "a") as f:
            f.write(json.dumps(record) + "\n")
        if samples:
            grid = torch.cat(samples, dim=1)
            (self.run_dir / "samples").mkdir(exist_ok=True)
            Image.fromarray(_to_uint8(grid)).save(self.run_dir / "samples" / f"step_{self.step_count:07d}.png")
        if writer is not None:
            for key, value in record.items():
                if key not in ("step", "images"):
                    writer.add_scalar(f"eval/{key}", value, self.step_count)
        self._log(
            f"step {self.step_count}: PSNR {record['psnr']:.2f} dB (gray input {record['psnr_gray']:.2f}), "
            f"SSIM {record['ssim']:.4f}, L1(ab) {record['l1']:.2f}, colourfulness {record['colorfulness']:.1f} "
            f"(truth {record['colorfulness_true']:.1f})"
        )
        return record

    # ----- checkpoints --------------------------------------------------------------

    def save(self) -> None:
        """Writes ``<run>/latest.{safetensors,json,pt}`` (rank 0; all ranks must call it)."""
        rng = _rng_state(self.device)
        if self.world_size > 1:
            states: list[Any] = [None] * self.world_size
            dist.all_gather_object(states, rng)
        else:
            states = [rng]
        if self.rank != 0:
            return
        tensors = _prefixed(GENERATOR_PREFIX, _unwrap(self.G).state_dict())
        tensors.update(_prefixed(DISCRIMINATOR_PREFIX, _unwrap(self.D).state_dict()))
        if self.ema is not None:
            tensors.update(_prefixed(EMA_PREFIX, self.ema.model.state_dict()))
        config = {
            "format": "sacolor-checkpoint", "version": 1, "step": self.step_count,
            "generator": self.config.generator_spec(), "size": list(self.config.size),
            "train": self.config.to_dict(),
        }
        state = {
            "step": self.step_count, "world_size": self.world_size, "rng": states,
            "optimizer_G": self.opt_G.state_dict(), "optimizer_D": self.opt_D.state_dict(),
            "scaler": self.scaler.state_dict(), "ema_updates": self.ema.updates if self.ema else 0,
        }
        save_checkpoint(self.run_dir, tensors, config, state)

    def _resume(self) -> None:
        files = CheckpointFiles.at(self.run_dir)
        if not files.weights.is_file():
            raise FileNotFoundError(
                f"--resume: no checkpoint at {files.weights}; train without --resume first "
                f"(or check --checkpoints-dir and --name)"
            )
        tensors, saved = load_checkpoint(self.run_dir, self.device)
        if saved.get("generator") != self.config.generator_spec():
            raise ValueError(
                f"--resume: {files.config} describes generator {saved.get('generator')}, but the options "
                f"give {self.config.generator_spec()}; resume with the options it was trained with"
            )
        state = load_training_state(self.run_dir)
        _unwrap(self.G).load_state_dict(strip_prefix(tensors, GENERATOR_PREFIX))
        _unwrap(self.D).load_state_dict(strip_prefix(tensors, DISCRIMINATOR_PREFIX))
        if self.ema is not None:
            ema_weights = strip_prefix(tensors, EMA_PREFIX)
            if ema_weights:
                self.ema.model.load_state_dict(ema_weights)
                self.ema.updates = state["ema_updates"]
            else:
                self._log("--resume: the checkpoint has no EMA; starting the EMA from the generator")
                self.ema.model.load_state_dict(_unwrap(self.G).state_dict())
        self.opt_G.load_state_dict(state["optimizer_G"])
        self.opt_D.load_state_dict(state["optimizer_D"])
        self.scaler.load_state_dict(state["scaler"])
        self.step_count = int(state["step"])
        if state["world_size"] == self.world_size:
            _set_rng_state(state["rng"][self.rank], self.device)
        else:
            self._log(
                f"--resume: saved with {state['world_size']} process(es), now {self.world_size}; "
                "random streams restart from --seed, so the run is not bit-identical"
            )
        self._log(f"resumed from {files.weights} at step {self.step_count}")


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
            "Multi-GPU/CPU: torchrun --nproc_per_node=K -m sacolor.train ..."
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
    add(src, "--resize", "crop: keep aspect ratio, scale to cover the size, crop; stretch: resize ignoring aspect",
        choices=("crop", "stretch"))
    add(src, "--load-scale", "training images are scaled to cover size x this before the random crop", type=float)
    add(src, "--flip", "random horizontal flips when training", action=flag)
    add(src, "--val-fraction", "held-out fraction of a folder without train/test subfolders (at least 1 image), "
        "or the final fraction of each video's running time", type=float)
    add(src, "--fps", "video frames sampled per second", type=float)
    add(src, "--frame-cache", "where sampled video frames are cached (default: $XDG_CACHE_HOME/sacolor/frames, "
        "~/.cache/sacolor/frames without it)")
    add(src, "--num-workers", "data loading processes per training process; 0 loads in the training process", type=int)

    model = parser.add_argument_group("models")
    add(model, "--netG", "generator: UNet with 6, 7 or 8 downsamplings", choices=("unet_64", "unet_128", "unet_256"))
    add(model, "--ngf", "generator channels after its first conv", type=int)
    add(model, "--ndf", "discriminator channels after its first conv", type=int)
    add(model, "--n-layers-D", "PatchGAN stride-2 conv layers (3: pix2pix's 70x70 patches)", type=int)
    add(model, "--norm", "normalisation in G and D", choices=("batch", "instance", "none"))
    add(model, "--dropout", "pix2pix dropout in G's innermost decoder stages (never at inference)", action=flag)
    add(model, "--sa-sizes", "feature-map sizes (shorter side) where G has self-attention, e.g. 64 or 32 64; "
        "give no value for none", nargs="*")
    add(model, "--sa-sizes-D", "feature-map sizes where D has self-attention", nargs="*")
    add(model, "--spectral-norm", "spectral normalisation on every conv of G and D", action=flag)
    add(model, "--attention-backend", "self-attention backend: auto, or a name from sacolor.available_backends()")

    train = parser.add_argument_group("optimisation")
    add(train, "--gan-mode", "adversarial loss: vanilla (log), lsgan (least squares) or hinge",
        choices=("vanilla", "lsgan", "hinge"))
    add(train, "--lambda-l1", "weight of the L1 loss on ab", type=float)
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
    """Entry point of ``sacolor-train`` and ``python -m sacolor.train``; returns the exit status."""
    parser = build_parser()
    options = vars(parser.parse_args(argv))
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
        trainer = Trainer(config, rank, world_size)
        trainer.fit()
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
