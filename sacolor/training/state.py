"""Saving a training run to its checkpoint, and resuming one exactly."""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from ..checkpoint import (
    DISCRIMINATOR_PREFIX,
    EMA_PREFIX,
    GENERATOR_PREFIX,
    CheckpointFiles,
    load_checkpoint,
    load_training_state,
    save_checkpoint,
    strip_prefix,
)
from .build import TrainingRun, unwrap


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


def save_run(run: TrainingRun) -> None:
    """Writes ``<run>/latest.{safetensors,json,pt}`` (rank 0 writes; every rank must call it)."""
    rng = _rng_state(run.device)
    if run.world_size > 1:
        states: list[Any] = [None] * run.world_size
        dist.all_gather_object(states, rng)
    else:
        states = [rng]
    if run.rank != 0:
        return
    tensors = _prefixed(GENERATOR_PREFIX, unwrap(run.G).state_dict())
    tensors.update(_prefixed(DISCRIMINATOR_PREFIX, unwrap(run.D).state_dict()))
    if run.ema is not None:
        tensors.update(_prefixed(EMA_PREFIX, run.ema.model.state_dict()))
    config = {
        "format": "sacolor-checkpoint", "version": 1, "step": run.step,
        "generator": run.config.generator_spec(), "size": list(run.config.size),
        "train": run.config.to_dict(),
    }
    state = {
        "step": run.step, "world_size": run.world_size, "rng": states,
        "optimizer_G": run.opt_G.state_dict(), "optimizer_D": run.opt_D.state_dict(),
        "scaler": run.scaler.state_dict(), "ema_updates": run.ema.updates if run.ema else 0,
    }
    save_checkpoint(run.run_dir, tensors, config, state)


def resume_run(run: TrainingRun) -> None:
    """Loads weights, optimisers, scaler, EMA, step and random state from ``<run>/latest``.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: it describes another generator than the options do.
    """
    files = CheckpointFiles.at(run.run_dir)
    if not files.current(files.weights).is_file():  # a first save killed mid-commit is still a save
        raise FileNotFoundError(
            f"--resume: no checkpoint at {files.weights}; train without --resume first "
            f"(or check --checkpoints-dir and --name)"
        )
    tensors, saved = load_checkpoint(run.run_dir, run.device)
    if saved.get("generator") != run.config.generator_spec():
        raise ValueError(
            f"--resume: {files.config} describes generator {saved.get('generator')}, but the options "
            f"give {run.config.generator_spec()}; resume with the options it was trained with"
        )
    state = load_training_state(run.run_dir)
    unwrap(run.G).load_state_dict(strip_prefix(tensors, GENERATOR_PREFIX))
    unwrap(run.D).load_state_dict(strip_prefix(tensors, DISCRIMINATOR_PREFIX))
    if run.ema is not None:
        ema_weights = strip_prefix(tensors, EMA_PREFIX)
        if ema_weights:
            run.ema.model.load_state_dict(ema_weights)
            run.ema.updates = state["ema_updates"]
        else:
            run.log("--resume: the checkpoint has no EMA; starting the EMA from the generator")
            run.ema.model.load_state_dict(unwrap(run.G).state_dict())
    run.opt_G.load_state_dict(state["optimizer_G"])
    run.opt_D.load_state_dict(state["optimizer_D"])
    run.scaler.load_state_dict(state["scaler"])
    run.step = int(state["step"])
    if state["world_size"] == run.world_size:
        _set_rng_state(state["rng"][run.rank], run.device)
    else:
        run.log(
            f"--resume: saved with {state['world_size']} process(es), now {run.world_size}; "
            "random streams restart from --seed, so the run is not bit-identical"
        )
    run.log(f"resumed from {files.weights} at step {run.step}")
