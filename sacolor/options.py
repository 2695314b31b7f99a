"""The checks every command and config shares: sizes, integer ranges, side
multiples and devices. Each is written once here, so ``sacolor-train``,
``sacolor-infer``, ``sacolor-eval``, checkpoints and the library give the same
answer and the same message for the same mistake."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import torch

from .messages import brief

# Bounds that keep a typo (ngf 1e9, size 65536) from becoming an allocation failure
# deep inside the model: far above any configuration that trains in practice.
MAX_CHANNELS = 1024
MAX_SIDE = 8192
DEVICES = ("auto", "cpu", "cuda")
# A chroma gain above this paints most colours out of sRGB's gamut; it is a slider, not a recolouring.
MAX_CHROMA_GAIN = 2.0
# A chroma floor (Lab units) above this would gray out skin and foliage, not only unsure hues.
MAX_CHROMA_FLOOR = 20.0


def parse_size(value: int | str | Sequence[int]) -> tuple[int, int]:
    """"128" -> (128, 128); "256x512" -> (256, 512) as (H, W); also ints and pairs of ints.

    Raises:
        ValueError: anything else (64.5 is not rounded), or non-positive sides.
    """
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", value)
        if not match:
            raise ValueError(f"size must look like 128 or 256x512 (HxW); got {brief(value)}")
        pair = (int(match[1]), int(match[2] or match[1]))
    else:
        pair = (value, value) if is_int(value) else tuple(value) if isinstance(value, (list, tuple)) else ()
        if len(pair) != 2 or not all(is_int(side) for side in pair):
            raise ValueError(f"size must be one whole number of pixels or [height, width]; got {brief(value)}")
    if min(pair) < 1:
        raise ValueError(f"size sides must be positive; got {brief(value)}")
    return pair


def is_int(value: Any) -> bool:
    """Whether ``value`` is a whole number as JSON and YAML give one (an int, not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def parse_int_list(value: str | int | Sequence[int] | Sequence[str] | None) -> tuple[int, ...]:
    """"64" / "32,64" / "" / [32, 64] / ["32", "64"] (command-line words) -> a tuple of ints.

    Raises:
        ValueError: anything else, e.g. 16.7 (not rounded) or a mapping.
    """
    if value is None:
        return ()
    if is_int(value):
        return (value,)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        value = ",".join(value)
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,\s]+", value.strip()) if p]
        try:
            return tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"expected integers separated by commas; got {brief(value)}") from None
    if not isinstance(value, (list, tuple)) or not all(is_int(v) for v in value):
        raise ValueError(f"expected a list of whole numbers such as [32, 64]; got {brief(value)}")
    return tuple(value)


def check_int(option: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` if it is an int (not a bool) in [low, high]; else ValueError naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{option} must be an integer; got {brief(value)} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{option} must be {bound}; got {brief(value)}")
    return value


def check_multiple(
    what: str, size: Sequence[int], multiple: int, needed_by: str, fix: str | None = None, name: str | None = None
) -> None:
    """ValueError unless both sides of ``size`` (H, W) are multiples of ``multiple``.

    Args:
        what: what ``size`` is, as the user named it ("--size", "render size").
        needed_by: what needs the multiple ("--netG unet_128").
        fix: how to mend it (default: use sides that are multiples of it).
        name: how the multiple is derived, shown beside it ("2**depth").
    """
    height, width = size
    if height % multiple == 0 and width % multiple == 0:
        return
    divisor = f"{name} = {multiple}" if name else str(multiple)
    fix = fix or f"use sides that are multiples of {multiple}"
    raise ValueError(
        f"{what} {height}x{width} must be a multiple of {multiple} on both sides "
        f"(not divisible by {divisor}, which {needed_by} needs); {fix}"
    )


def check_number(option: str, value: Any, low: float, high: float, low_allowed: bool = True) -> float:
    """``value`` as a float if it is a number (not a bool) in [low, high], or (low, high] when not
    ``low_allowed``; else ValueError naming ``option`` (NaN is refused)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or not ((low <= value if low_allowed else low < value) and value <= high):
        bound = f"from {low} to {high}" if low_allowed else f"above {low} and at most {high}"
        raise ValueError(f"{option} must be a number {bound}; got {brief(value)}")
    return float(value)


def check_chroma_gain(option: str, value: Any) -> float:
    """``value`` as a float if it is a number in (0, MAX_CHROMA_GAIN]; else ValueError naming ``option``."""
    return check_number(option, value, 0, MAX_CHROMA_GAIN, low_allowed=False)


def check_chroma_floor(option: str, value: Any) -> float:
    """``value`` as a float if it is a number in [0, MAX_CHROMA_FLOOR]; else ValueError naming ``option``."""
    return check_number(option, value, 0, MAX_CHROMA_FLOOR)


def check_size(option: str, value: Any, multiple: int = 1, needed_by: str = "the generator") -> tuple[int, int]:
    """``value`` as (H, W) if it is a pair of ints in [1, MAX_SIDE] divisible by ``multiple``; else ValueError."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{option} must be [height, width]; got {brief(value)}")
    pair = (check_int(f"{option} height", value[0], 1, MAX_SIDE), check_int(f"{option} width", value[1], 1, MAX_SIDE))
    check_multiple(option, pair, multiple, needed_by)
    return pair


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """"cpu", "cuda" or "auto" (CUDA when available) -> this process's torch.device.

    Under torchrun, CUDA is the process's own GPU (``LOCAL_RANK``), made current.

    Raises:
        ValueError: an unknown name, or "cuda" without a CUDA device.
    """
    if name not in DEVICES:
        raise ValueError(f"{option} must be one of {', '.join(DEVICES)}; got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{option} cuda: no CUDA device is available; use {option} cpu or auto")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def autocast_dtype(device: torch.device, wanted: str = "bf16") -> torch.dtype | None:
    """The one mixed-precision policy: None (float32) off CUDA; on CUDA ``wanted``
    ("bf16" or "fp16"), with float16 where the GPU has no bfloat16."""
    if device.type != "cuda":
        return None
    if wanted == "bf16" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """``torch.autocast`` to ``dtype`` on ``device``; a no-op when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

