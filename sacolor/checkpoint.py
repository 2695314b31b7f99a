"""Checkpoints: weights as safetensors, a JSON config beside them, and the
training state (optimisers, scaler, RNG, step) as a ``torch.save`` file that
loads with ``weights_only=True``. Every file is written atomically.

Layout for ``<dir>/latest.safetensors``:

- ``latest.safetensors``: tensors named ``generator.*``, ``discriminator.*``
  and ``ema.*`` (EMA of the generator), metadata ``{"step": ...}``.
- ``latest.json``: the config: ``{"step", "generator": {"name", "kwargs"},
  "size": [H, W], ...}``.
- ``latest.pt``: what an exact ``--resume`` needs besides the weights.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

WEIGHTS_NAME = "latest.safetensors"
GENERATOR_PREFIX = "generator."
EMA_PREFIX = "ema."
DISCRIMINATOR_PREFIX = "discriminator."


@dataclass(frozen=True)
class CheckpointFiles:
    """The three files of one checkpoint."""

    weights: Path
    config: Path
    state: Path

    @classmethod
    def at(cls, path: str | os.PathLike) -> "CheckpointFiles":
        """``path``: a ``.safetensors`` file, or a directory holding ``latest.safetensors``."""
        weights = Path(path)
        if weights.suffix != ".safetensors":
            weights = weights / WEIGHTS_NAME
        return cls(weights, weights.with_suffix(".json"), weights.with_suffix(".pt"))


def _atomic_write(target: Path, write: Callable[[str], None]) -> None:
    """Writes through ``write(tmp_path)`` then renames, so readers never see half a file.

    The temporary name is unique per process and call; it is created by ``write``
    itself, so the file gets the usual permissions (umask), unlike ``mkstemp``'s 0600.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        write(str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_json(obj: Mapping[str, Any]) -> Callable[[str], None]:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)

    return write


def save_checkpoint(
    path: str | os.PathLike,
    tensors: Mapping[str, Tensor],
    config: Mapping[str, Any],
    training_state: Mapping[str, Any] | None = None,
) -> Path:
    """Writes weights, config and (optionally) training state, each atomically.

    Args:
        path: a ``.safetensors`` file, or a directory (``latest.safetensors`` inside).
        tensors: name -> tensor (any device; saved from CPU copies, so entries may alias).
        config: JSON-serialisable; its ``"step"`` (if any) is also stored in the
            weights' metadata so a mixed-up pair of files is detected on load.
        training_state: tensors and plain Python values only (``weights_only`` loadable).

    Returns:
        The path of the weights file.
    """
    files = CheckpointFiles.at(path)
    # Copies: safetensors refuses tensors that share storage (tied or aliased entries).
    cpu = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()}
    metadata = {"step": str(config.get("step", ""))}
    if training_state is not None:
        _atomic_write(files.state, lambda tmp: torch.save(dict(training_state), tmp))
    _atomic_write(files.weights, lambda tmp: save_file(cpu, tmp, metadata=metadata))
    _atomic_write(files.config, _write_json(config))
    return files.weights


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict]:
    """Reads the weights and the config of a checkpoint.

    Args:
        path: a ``.safetensors`` file, or a directory holding ``latest.safetensors``.
        device: where the tensors go.

    Returns:
        (tensors, config).

    Raises:
        FileNotFoundError: a file is missing (the message names it).
        ValueError: a file is corrupt, or weights and config are from different steps.
    """
    files = CheckpointFiles.at(path)
    for required in (files.weights, files.config):
        if not required.is_file():
            raise FileNotFoundError(
                f"checkpoint file {required} does not exist; pass a checkpoint directory "
                f"(holding {WEIGHTS_NAME} and latest.json) or a .safetensors file with its .json beside it"
            )
    try:
        config = json.loads(files.config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"checkpoint config {files.config} is not valid JSON: {err}") from err
    try:
        with safe_open(str(files.weights), framework="pt", device=str(device)) as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"checkpoint weights {files.weights} are corrupt or not safetensors: {err}") from err
    if "step" in config and metadata.get("step") != str(config["step"]):
        raise ValueError(
            f"{files.weights} (step {metadata.get('step')!r}) and {files.config} (step {config['step']!r}) "
            "belong to different saves; an interrupted save? Re-save or use a consistent pair"
        )
    return tensors, config


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """Reads ``latest.pt`` (optimisers, scaler, RNG, step) with ``weights_only=True``.

    Raises:
        FileNotFoundError / ValueError: missing or unreadable, naming the file.
    """
    state = CheckpointFiles.at(path).state
    if not state.is_file():
        raise FileNotFoundError(f"training state {state} does not exist; it is needed to resume")
    try:
        return torch.load(state, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a bad file
        raise ValueError(f"training state {state} is corrupt or not a torch.save file: {err}") from err


def strip_prefix(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors under ``prefix``, with it removed (e.g. a module's state_dict)."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuilds the generator from a checkpoint's config and loads its weights.

    The EMA weights are used when the checkpoint has them. The module is in
    eval mode (dropout off, batch norm on running statistics).

    Args:
        path: a checkpoint directory, or its ``.safetensors`` file.
        device: where the module goes.

    Returns:
        (generator, config): generator maps normalised L (B, 1, H, W) to
        normalised ab (B, 2, H, W); ``config["size"]`` is the training size [H, W].

    Raises:
        FileNotFoundError / ValueError: missing or corrupt files, or a config
            without a generator description (the message names the file).
    """
    from .models import build_generator

    tensors, config = load_checkpoint(path, device)
    files = CheckpointFiles.at(path)
    spec = config.get("generator")
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"{files.config} has no 'generator' entry with a 'name'; not a sacolor checkpoint?")
    # JSON gives lists where the builder took tuples; LayerOptions accepts either.
    generator = build_generator(spec["name"], **spec.get("kwargs", {}))
    weights = strip_prefix(tensors, EMA_PREFIX) or strip_prefix(tensors, GENERATOR_PREFIX)
    if not weights:
        raise ValueError(f"{files.weights} has no '{EMA_PREFIX}*' or '{GENERATOR_PREFIX}*' tensors")
    try:
        generator.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"{files.weights} does not match the generator its config describes: {err}") from err
    return generator.to(device).eval(), config
