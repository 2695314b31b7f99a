"""What one training process holds (``TrainingRun``), and the EMA of the generator."""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..options import autocast
from .config import TrainConfig
from .data.dataset import ColorizationDataset
from .data.sampler import ResumableSampler
from .losses import ColourRebalance, FeatureLoss, GANLoss


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


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


@dataclass
class TrainingRun:
    """Everything one training process holds; ``step`` counts optimisation steps done."""

    config: TrainConfig
    rank: int
    world_size: int
    device: torch.device
    run_dir: Path
    train_set: ColorizationDataset
    test_paths: list[Path]
    sampler: ResumableSampler
    loader: DataLoader
    steps_per_epoch: int
    max_steps: int
    G: nn.Module
    D: nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    gan_loss: GANLoss
    scaler: torch.amp.GradScaler
    autocast_dtype: torch.dtype | None
    ema: EMA | None = None
    rebalance: ColourRebalance | None = None
    feature_loss: FeatureLoss | None = None
    step: int = 0

    def log(self, message: str) -> None:
        """A line on stderr from rank 0 that leaves the progress bar intact."""
        log_line(self.rank, message)

    def autocast(self):
        """Mixed precision on CUDA when ``--amp``; a no-op otherwise."""
        return autocast(self.device, self.autocast_dtype)

    @property
    def eval_model(self) -> nn.Module:
        """The generator that evaluation and inference use: the EMA when kept."""
        return self.ema.model if self.ema is not None else unwrap(self.G)


def log_line(rank: int, message: str) -> None:
    """``message`` on stderr from rank 0 only, without breaking a tqdm progress bar."""
    if rank == 0:
        tqdm.write(message, file=sys.stderr)
