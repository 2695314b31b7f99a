"""What ``sacolor-infer`` and ``sacolor-eval`` share on the command line: exit
statuses, argument types, and the options that choose and place the model."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from typing import Any

from ..options import DEVICES, check_chroma_floor, check_chroma_gain, parse_size

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for Ctrl-C


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1.

    Raises:
        argparse.ArgumentTypeError: not a positive integer.
    """
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text}")
    return value


def strength(text: str) -> float:
    """argparse type: a blending weight in [0, 1).

    Raises:
        argparse.ArgumentTypeError: outside [0, 1).
    """
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1); got {text}")
    return value


def checked_float(check: Callable[[str, Any], float], what: str) -> Callable[[str], float]:
    """argparse type: a number that ``check(what, value)`` (e.g. ``options.check_chroma_gain``) accepts.

    The returned function raises argparse.ArgumentTypeError with ``check``'s message otherwise.
    """

    def parse(text: str) -> float:
        try:
            return check(what, float(text))
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --checkpoint, --render-size, --chroma-gain, --chroma-floor and --device, the options
    ``Colorizer.from_checkpoint`` takes."""
    parser.add_argument(
        "--checkpoint", default=None, metavar="PATH",
        help="checkpoint directory or .safetensors file from sacolor-train (default: the built-in model)",
    )
    parser.add_argument(
        "--render-size", type=parse_size, default=None, metavar="N|HxW",
        help="size the model runs at, e.g. 256 or 256x512 for films; multiples of the generator's 2**depth "
        "(default: the checkpoint's training size)",
    )
    parser.add_argument(
        "--chroma-gain", type=checked_float(check_chroma_gain, "the gain"), default=None, metavar="G",
        help="multiply the model's colour (Lab chroma) by G: above 1 more vivid, below 1 more muted, 1 as predicted; "
        "hints keep their colour (default: the gain the checkpoint was exported with, 1 if none)",
    )
    parser.add_argument(
        "--chroma-floor", type=checked_float(check_chroma_floor, "the floor"), default=None, metavar="T",
        help="before the gain, take T (Lab units, 0-20) off every pixel's chroma, so weak colour, where the model "
        "was unsure of the hue, is shown gray (default: the checkpoint's, 0 if none)",
    )
    parser.add_argument(
        "--device", choices=DEVICES, default="auto",
        help="where the model runs; auto (the default) picks CUDA when present; on CUDA the model runs in bf16",
    )


def show_warnings_as_messages(prog: str) -> None:
    """Print warnings (skipped gray photos, animated images, ...) as ``prog: warning: message``
    lines instead of Python's ``file:line: UserWarning`` form with a source line."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"{prog}: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show
