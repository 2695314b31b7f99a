"""Checkpoints: weights as safetensors, a JSON config beside them, and the
training state (optimisers, scaler, RNG, step) as a ``torch.save`` file that
loads with ``weights_only=True``. A save is atomic across its files (see
``CheckpointFiles``).

Layout for ``<dir>/latest.safetensors``:

- ``latest.safetensors``: tensors named ``generator.*``, ``discriminator.*``
  and ``ema.*`` (EMA of the generator), metadata ``{"step": ...}``.
- ``latest.json``: the config: ``{"step", "generator": {"name", "kwargs"},
  "size": [H, W], ...}``, or for a consensus of generators that share one encoder
  ``"generator": {"name": "consensus", "members": [{"name", "kwargs"}, ...]}`` with
  weights ``ema.members.<i>.*``; an exported model may add ``"chroma_gain"`` and
  ``"chroma_floor"`` (see ``Colorizer``), 1 and 0 when absent.
- ``latest.pt``: what an exact ``--resume`` needs besides the weights.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from .messages import brief
from .models import GENERATORS, build_generator
from .models.consensus import CONSENSUS, MIN_MEMBERS, ConsensusGenerator
from .models.colour_bins import MAX_COLOUR_BINS
from .options import MAX_CHANNELS, check_chroma_floor, check_chroma_gain, check_int, check_size, parse_int_list

WEIGHTS_NAME = "latest.safetensors"
GENERATOR_PREFIX = "generator."
EMA_PREFIX = "ema."
DISCRIMINATOR_PREFIX = "discriminator."


@dataclass(frozen=True)
class CheckpointFiles:
    """The three files of one checkpoint, and where a save stages them.

    A save writes every file under a staged name (``.latest.json.next``),
    then creates the commit marker (``.latest.commit``), then renames the
    staged files over the old ones and removes the marker. Readers take a
    member's staged file while the marker exists, so they always see one
    whole save: the old one (no marker yet) or the new one (marker present,
    part of it still staged). A kill at any point loses at most the save in
    progress; the next save finishes or discards what it left.
    """

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

    @property
    def members(self) -> tuple[Path, Path, Path]:
        return (self.weights, self.config, self.state)

    @property
    def commit_marker(self) -> Path:
        """Exists while a complete save is being renamed into place."""
        return self.weights.with_name(f".{self.weights.stem}.commit")

    @staticmethod
    def staged(member: Path) -> Path:
        """Where a save writes ``member`` before the commit."""
        return member.with_name(f".{member.name}.next")

    def current(self, member: Path) -> Path:
        """The file that holds ``member``'s committed contents: its staged copy during a commit."""
        staged = self.staged(member)
        return staged if self.commit_marker.exists() and staged.exists() else member


def _default_mode() -> int:
    """0o666 less the umask: what ``open()`` gives a new file (safetensors writes 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write_synced(target: Path, write: Callable[[str], None]) -> None:
    """Writes ``target`` through ``write(path)``, with the usual permissions, flushed to disk."""
    write(str(target))
    os.chmod(target, _default_mode())
    with open(target, "rb") as f:
        os.fsync(f.fileno())


def _sync_directory(directory: Path) -> None:
    """Makes renames and new names in ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _settle(files: CheckpointFiles) -> None:
    """Finishes a save that was interrupted after its commit marker, or discards one interrupted before it."""
    if files.commit_marker.exists():
        for member in files.members:
            staged = files.staged(member)
            if staged.exists():
                os.replace(staged, member)
        _sync_directory(files.weights.parent)
        files.commit_marker.unlink()
    for member in files.members:
        files.staged(member).unlink(missing_ok=True)


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
    """Writes weights, config and (optionally) training state, all or nothing.

    See ``CheckpointFiles`` for how: a process killed at any point leaves the
    previous save or this one, never a mix.

    Args:
        path: a ``.safetensors`` file, or a directory (``latest.safetensors`` inside).
        tensors: name -> tensor (any device; saved from CPU copies, so entries may alias).
        config: JSON-serialisable; its ``"step"`` (if any) is also stored in the
            weights' metadata so a mixed-up pair of files is detected on load.
        training_state: tensors and plain Python values only (``weights_only`` loadable).

    Returns:
        The path of the weights file.

    Raises:
        OSError: the files cannot be written (a full disk says so and names the folder); what this
            save staged is removed and the previous save is left whole.
    """
    files = CheckpointFiles.at(path)
    # Copies: safetensors refuses tensors that share storage (tied or aliased entries).
    cpu = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()}
    metadata = {"step": str(config.get("step", ""))}
    writes: dict[Path, Callable[[str], None]] = {
        files.weights: lambda tmp: save_file(cpu, tmp, metadata=metadata),
        files.config: _write_json(config),
    }
    if training_state is not None:
        writes[files.state] = lambda tmp: torch.save(dict(training_state), tmp)
    files.weights.parent.mkdir(parents=True, exist_ok=True)
    _settle(files)
    try:
        for member, write in writes.items():
            _write_synced(files.staged(member), write)
        _write_synced(files.commit_marker, lambda marker: open(marker, "w").close())
    except (OSError, RuntimeError, SafetensorError) as error:  # torch.save reports a full disk as RuntimeError
        failure = _save_error(error, files.weights.parent, sum(t.nbytes for t in cpu.values()))
        files.commit_marker.unlink(missing_ok=True)
        _settle(files)  # discards what was staged: the previous save stays whole
        raise failure from error
    _sync_directory(files.weights.parent)
    _settle(files)
    return files.weights


def _save_error(error: BaseException, folder: Path, weight_bytes: int) -> OSError:
    """The error a failed save raises: what went wrong and what to do, naming the folder. Called before
    the staged files are removed: a disk that filled up has less room left than the weights take."""
    code = getattr(error, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT) or shutil.disk_usage(folder).free < weight_bytes:
        code, cause = errno.ENOSPC, ("no space left on the device; free some space there or pass another "
                                     "--checkpoints-dir (the previous save, if any, is intact)")
    else:
        cause = str(error)
    failure = OSError(f"cannot save the checkpoint in {folder}: {cause}")
    failure.errno = code
    return failure


def check_checkpoint_dir(path: str | os.PathLike, option: str = "--checkpoints-dir") -> None:
    """Makes sure checkpoints can be written to the folder ``path`` before any work is spent.

    Creates the folder (and its parents) and writes and removes a probe file in it.

    Args:
        path: the folder a run saves into (e.g. ``<checkpoints-dir>/<name>``).
        option: the command-line option that chose it, for the message.

    Raises:
        ValueError: ``path`` or a parent is a file, or the folder cannot be created or written to.
    """
    folder = Path(path)
    probe = folder / f".write-test.{os.getpid()}.{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
    except FileExistsError as error:
        raise ValueError(
            f"{option}: {error.filename or folder} is a file, not a folder; pass a folder path (or move the file)"
        ) from error
    except OSError as error:
        raise ValueError(
            f"{option}: cannot write checkpoints to {folder} ({error.strerror or error}); pass a folder you can "
            "write to, or fix its permissions"
        ) from error


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict]:
    """Reads the weights and the config of a checkpoint (of its last complete save).

    Args:
        path: a ``.safetensors`` file, or a directory holding ``latest.safetensors``.
        device: where the tensors go.

    Returns:
        (tensors, config).

    Raises:
        FileNotFoundError: a file is missing (the message names it).
        ValueError: a file is corrupt, weights and config are from different
            steps, or a weight holds NaN or Inf.
    """
    files = CheckpointFiles.at(path)
    weights, config_file = files.current(files.weights), files.current(files.config)
    for required in (weights, config_file):
        if not required.is_file():
            raise FileNotFoundError(
                f"checkpoint file {required} does not exist; pass a checkpoint directory "
                f"(holding {WEIGHTS_NAME} and latest.json) or a .safetensors file with its .json beside it"
            )
    try:
        config = json.loads(config_file.read_bytes())
    except ValueError as err:  # JSON syntax, UTF-8, or an integer past 4300 digits
        raise ValueError(f"checkpoint config {files.config} is not valid JSON: {err}") from err
    except RecursionError:
        raise ValueError(f"checkpoint config {files.config} is nested too deeply to be a sacolor config") from None
    if not isinstance(config, dict):
        raise ValueError(f"checkpoint config {files.config} must hold a JSON object; got {type(config).__name__}")
    try:
        with safe_open(str(weights), framework="pt", device=str(device)) as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"checkpoint weights {files.weights} are corrupt or not safetensors: {err}") from err
    if "step" in config and metadata.get("step") != str(config["step"]):
        raise ValueError(
            f"{files.weights} (step {metadata.get('step')!r}) and {files.config} (step {config['step']!r}) "
            "belong to different saves; an interrupted save? Re-save or use a consistent pair"
        )
    _check_finite(tensors, files.weights)
    return tensors, config


def _check_finite(tensors: Mapping[str, Tensor], source: Path) -> None:
    """Raises ValueError naming the tensors of ``source`` that hold NaN or Inf."""
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        listed = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(
            f"checkpoint weights {source} hold NaN or Inf values (in {listed}): the training diverged before "
            "this save; use an earlier checkpoint, or retrain (e.g. with lower --lr-g/--lr-d)"
        )


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """Reads ``latest.pt`` (optimisers, scaler, RNG, step) with ``weights_only=True``.

    Raises:
        FileNotFoundError / ValueError: missing or unreadable, naming the file, or
            from another step than the checkpoint's config.
    """
    files = CheckpointFiles.at(path)
    state_file = files.current(files.state)
    if not state_file.is_file():
        raise FileNotFoundError(f"training state {files.state} does not exist; it is needed to resume")
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a bad file
        raise ValueError(f"training state {files.state} is corrupt or not a torch.save file: {err}") from err
    config_file = files.current(files.config)
    saved_step = json.loads(config_file.read_text()).get("step") if config_file.is_file() else None
    if saved_step is not None and state.get("step") != saved_step:
        raise ValueError(
            f"training state {files.state} (step {state.get('step')!r}) and {files.config} (step {saved_step!r}) "
            "belong to different saves; resume from a consistent checkpoint"
        )
    return state


# What ``build_generator`` may be given from a checkpoint's config.
GENERATOR_OPTIONS = frozenset(
    {"ngf", "norm", "dropout", "sa_sizes", "spectral_norm", "input_size", "encoder", "colour_bins", "temperature",
     "global_context"}
)


def _generator_spec(spec: Any, size: Any, source: Path, entry: str = "generator") -> tuple[str, dict[str, Any]]:
    """One generator's name and keyword arguments from a checkpoint config's ``entry``, checked
    (``size`` is the config's render size, which must suit the generator).

    Raises:
        ValueError: naming ``source`` and the entry: no generator, an unknown name
            or option, a channel count or size that is not a sane integer.
    """
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"{source} has no '{entry}' entry with a 'name'; not a sacolor checkpoint?")
    if spec["name"] not in GENERATORS:
        raise ValueError(f"{source}: {entry} name must be one of {sorted(GENERATORS)}; got {spec['name']!r}")
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, dict) or not set(kwargs) <= GENERATOR_OPTIONS:
        raise ValueError(f"{source}: {entry} kwargs must be an object with keys from {sorted(GENERATOR_OPTIONS)}; got {kwargs!r}")
    multiple = GENERATORS[spec["name"]]
    if "ngf" in kwargs:
        check_int(f"{source}: {entry} ngf", kwargs["ngf"], 1, MAX_CHANNELS)
    for flag in ("dropout", "spectral_norm", "global_context"):
        if flag in kwargs and not isinstance(kwargs[flag], bool):
            raise ValueError(f"{source}: {entry} {flag} must be true or false; got {brief(kwargs[flag])}")
    if "sa_sizes" in kwargs:
        if not isinstance(kwargs["sa_sizes"], list):
            raise ValueError(f"{source}: {entry} sa_sizes must be a list of whole numbers; got {brief(kwargs['sa_sizes'])}")
        try:
            parse_int_list(kwargs["sa_sizes"])
        except ValueError as err:
            raise ValueError(f"{source}: {entry} sa_sizes: {err}") from None
    if "colour_bins" in kwargs:
        check_int(f"{source}: {entry} colour_bins", kwargs["colour_bins"], 2, MAX_COLOUR_BINS)
    temperature = kwargs.get("temperature", 1.0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature <= 1:
        raise ValueError(f"{source}: {entry} temperature must be a number in (0, 1]; got {brief(temperature)}")
    if "input_size" in kwargs:
        check_size(f"{source}: {entry} input_size", kwargs["input_size"], multiple, f"generator {spec['name']}")
    check_size(f"{source}: size", size, multiple, f"generator {spec['name']}")
    return spec["name"], kwargs


def _build(name: str, kwargs: Mapping[str, Any], source: Path, entry: str) -> nn.Module:
    """``build_generator(name, **kwargs)``, its errors naming the config file and entry."""
    try:
        # JSON gives lists where the builder took tuples; LayerOptions accepts either.
        return build_generator(name, **kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: its {entry} entry cannot be built: {err}") from err


def _consensus(spec: Mapping[str, Any], size: Any, source: Path) -> ConsensusGenerator:
    """A ``"consensus"`` generator entry, ``{"name": "consensus", "members": [<generator entry>, ...]}``, built."""
    members = spec.get("members")
    if not isinstance(members, list) or len(members) < MIN_MEMBERS:
        raise ValueError(f"{source}: a consensus generator needs a 'members' list of at least {MIN_MEMBERS} "
                         f"generator entries; got {brief(members)}")
    built = []
    for i, member in enumerate(members):
        entry = f"generator member {i}"
        built.append(_build(*_generator_spec(member, size, source, entry), source, entry))
    try:
        return ConsensusGenerator(built)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err


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
        normalised ab (B, 2, H, W); ``config["size"]`` is the training size [H, W],
        ``config["chroma_gain"]`` and ``config["chroma_floor"]`` the chroma curve its ab is meant
        to be shown with (1 and 0 if unset).

    Raises:
        FileNotFoundError / ValueError: missing or corrupt files, or a config
            without a generator description (the message names the file).
    """
    tensors, config = load_checkpoint(path, device)
    files = CheckpointFiles.at(path)
    spec = config.get("generator")
    if isinstance(spec, dict) and spec.get("name") == CONSENSUS:
        generator = _consensus(spec, config.get("size"), files.config)
    else:
        generator = _build(*_generator_spec(spec, config.get("size"), files.config), files.config, "generator")
    config["chroma_gain"] = check_chroma_gain(f"{files.config}: chroma_gain", config.get("chroma_gain", 1.0))
    config["chroma_floor"] = check_chroma_floor(f"{files.config}: chroma_floor", config.get("chroma_floor", 0.0))
    weights = strip_prefix(tensors, EMA_PREFIX) or strip_prefix(tensors, GENERATOR_PREFIX)
    if not weights:
        raise ValueError(f"{files.weights} has no '{EMA_PREFIX}*' or '{GENERATOR_PREFIX}*' tensors")
    try:
        generator.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"{files.weights} does not match the generator its config describes: {err}") from err
    if isinstance(generator, ConsensusGenerator):
        try:
            generator.tie_encoders()
        except ValueError as err:
            raise ValueError(f"{files.weights}: {err}") from err
    return generator.to(device).eval(), config
