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
from .run import TrainingRun, unwrap


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


# Options that decide the shapes of the weights and optimiser states a run saves: a resume with
# any of them changed cannot load the checkpoint.
SHAPE_OPTIONS = ("netG", "size", "ngf", "ndf", "n_layers_D", "norm", "sa_sizes", "sa_sizes_D", "spectral_norm")
STATE_KEYS = ("step", "world_size", "rng", "optimizer_G", "optimizer_D", "scaler", "ema_updates")


def _check_options(saved: dict, run: TrainingRun, source) -> None:
    """Raises ValueError naming the first shape-bearing option that differs from the saved run's."""
    trained = saved.get("train")
    if not isinstance(trained, dict):
        return  # an older checkpoint: the generator check below still holds
    now = run.config.to_dict()
    for option in SHAPE_OPTIONS:
        if option in trained and trained[option] != now[option]:
            flag = "--" + option.replace("_", "-")
            raise ValueError(
                f"--resume: {source} was trained with {flag} {_shown(trained[option])}, but the options give "
                f"{flag} {_shown(now[option])}; resume with the options it was trained with"
            )


def _shown(value) -> str:
    """An option's value as it is written on the command line."""
    if isinstance(value, list):
        return " ".join(map(str, value)) or "(none)"
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def resume_run(run: TrainingRun) -> None:
    """Loads weights, optimisers, scaler, EMA, step and random state from ``<run>/latest``.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: it was trained with other shape-bearing options than these (naming the option), or
            its training state is incomplete or damaged (naming the file).
    """
    files = CheckpointFiles.at(run.run_dir)
    if not files.current(files.weights).is_file():  # a first save killed mid-commit is still a save
        raise FileNotFoundError(
            f"--resume: no checkpoint at {files.weights}; train without --resume first "
            f"(or check --checkpoints-dir and --name)"
        )
    tensors, saved = load_checkpoint(run.run_dir, run.device)
    _check_options(saved, run, files.config)
    if saved.get("generator") != run.config.generator_spec():
        raise ValueError(
            f"--resume: {files.config} describes generator {saved.get('generator')}, but the options "
            f"give {run.config.generator_spec()}; resume with the options it was trained with"
        )
    state = load_training_state(run.run_dir)
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise ValueError(
            f"--resume: training state {files.state} lacks {', '.join(missing)}: it is damaged or not a "
            "sacolor-train save; resume from an intact checkpoint, or train without --resume"
        )
    try:
        unwrap(run.G).load_state_dict(strip_prefix(tensors, GENERATOR_PREFIX))
        unwrap(run.D).load_state_dict(strip_prefix(tensors, DISCRIMINATOR_PREFIX))
    except RuntimeError as error:
        raise ValueError(
            f"--resume: {files.weights} does not fit the models these options build ({str(error).splitlines()[0]}); "
            "resume with the options it was trained with"
        ) from None
    try:
        if run.ema is not None:
            ema_weights = strip_prefix(tensors, EMA_PREFIX)
            if ema_weights:
                run.ema.model.load_state_dict(ema_weights)
                run.ema.updates = int(state["ema_updates"])
            else:
                run.log("--resume: the checkpoint has no EMA; starting the EMA from the generator")
                run.ema.model.load_state_dict(unwrap(run.G).state_dict())
        run.opt_G.load_state_dict(state["optimizer_G"])
        run.opt_D.load_state_dict(state["optimizer_D"])
        run.scaler.load_state_dict(state["scaler"])
        run.step = int(state["step"])
        same_world = state["world_size"] == run.world_size
        if same_world:
            _set_rng_state(state["rng"][run.rank], run.device)
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise ValueError(
            f"--resume: training state {files.state} is damaged ({type(error).__name__}: {error}); resume from an "
            "intact checkpoint, or train without --resume"
        ) from None
    if not same_world:
        run.log(
            f"--resume: saved with {state['world_size']} process(es), now {run.world_size}; "
            "random streams restart from --seed, so the run is not bit-identical"
        )
    run.log(f"resumed from {files.weights} at step {run.step}")
