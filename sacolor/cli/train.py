"""``sacolor-train``: trains the self-attention Pix2Pix colouriser (L -> ab).

One process, or many through ``torchrun --nproc_per_node=K -m sacolor.cli.train``
(DistributedDataParallel; NCCL on GPUs, gloo on CPU; only rank 0 writes).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from ..attention.backends.registry import environment_backend
from ..io.paths import suffix_help
from ..options import resolve_device
from ..training import build_run, fit
from ..training.config import DATA, PRESETS, TrainConfig, flag, merge_config
from .common import show_warnings_as_messages


# How each field type of TrainConfig is read from the command line (sizes and
# lists stay text here: TrainConfig parses them, for config files too).
ARGUMENT_KINDS: dict[str, dict] = {
    "bool": {"action": argparse.BooleanOptionalAction},
    "int": {"type": int},
    "int | None": {"type": int},
    "float": {"type": float},
    "str": {},
    "str | None": {},
    "tuple[int, int]": {},
    "list[str]": {"nargs": "+"},
    "tuple[int, ...]": {"nargs": "*"},
}


def build_parser() -> argparse.ArgumentParser:
    """The CLI, generated from ``TrainConfig``'s fields; every option defaults to "not given"
    so presets and config files can fill it."""
    parser = argparse.ArgumentParser(
        prog="sacolor-train",
        description=(
            "Train the self-attention Pix2Pix colouriser: a UNet generator maps the L channel of "
            "Lab to ab, a PatchGAN discriminator judges (L, ab) pairs. Settings come from, in rising "
            "priority: built-in defaults, --preset, --config, then these options. "
            "Multi-GPU/CPU: torchrun --nproc_per_node=K -m sacolor.cli.train ..."
        ),
        epilog=f"{suffix_help()} Exit status: 0 when training finished, 1 when a checkpoint could not be written "
        "(e.g. a full disk), 2 for bad options or unusable data.",
        argument_default=argparse.SUPPRESS,
    )
    groups = {}
    sources = groups[DATA] = parser.add_argument_group(DATA)
    sources.add_argument("--config", help="YAML or JSON file of options (keys as below, e.g. lr_g: 0.0002)")
    sources.add_argument("--preset", choices=sorted(PRESETS), help=(
        "the report's experiments (UNet128, 128x128, lr 2e-4): expt1/2 no attention, expt3/4 SA at 32^2, "
        "expt5/6 at 64^2, expt7/8 at 128^2; odd = log (vanilla) loss, even = least squares"))
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        option = f.metadata["option"]
        group = groups.get(option.group) or groups.setdefault(option.group, parser.add_argument_group(option.group))
        kwargs = dict(ARGUMENT_KINDS[f.type])
        if option.choices is not None:
            kwargs["choices"] = option.choices
        group.add_argument(flag(f.name), help=option.help + _default_note(getattr(defaults, f.name), f.type), **kwargs)
    return parser


def _default_note(default: Any, kind: str) -> str:
    """" (default: ...)" for --help, or nothing for an option without a default."""
    if kind == "tuple[int, int]":
        default = "x".join(map(str, default))
    elif isinstance(default, tuple):
        default = " ".join(map(str, default)) or "none"
    return "" if default is None or default == [] else f" (default: {default})"


def _init_distributed(device: torch.device) -> tuple[int, int]:
    """Joins the torchrun job, if any: NCCL between GPUs, gloo on CPU. Returns (rank, world size)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sacolor-train`` and ``python -m sacolor.cli.train``; returns the exit status."""
    parser = build_parser()
    options = vars(parser.parse_args(argv))
    show_warnings_as_messages(parser.prog)
    config_file, preset = options.pop("config", None), options.pop("preset", None)
    try:
        config = merge_config(options, config_file, preset)
        device = resolve_device(config.device)
        environment_backend(device)
    except (ValueError, FileNotFoundError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    rank, world_size = _init_distributed(device)
    try:
        fit(build_run(config, rank, world_size))
        if world_size > 1:
            # Let gloo's workers free the last checkpoint's all_gather (its tensors need the
            # GIL) while we wait here without it: tearing DDP down first can deadlock on exit.
            dist.barrier()
    except (ValueError, FileNotFoundError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a checkpoint that cannot be written (a full disk): the message says what to do
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    finally:
        if world_size > 1:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
