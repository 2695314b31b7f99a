"""Colour hints (Zhang et al. 2017): "this point has this colour", as the
generator's three extra input channels (normalised ab, and a 0/1 mask).

A hint is a small square patch at the render size. Training samples hints
from the true colours (``sample_hints``); users give points in the input's
pixels (``Hint``, ``hint_map``), from the command line (``parse_hint``) or a
JSON file (``load_hints``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..colour import normalize_ab, rgb_to_lab
from ..messages import brief
from ..models.efficientnet_unet import HINT_CHANNELS

# Side, in render pixels, of the patch a user's point paints. Training samples
# patches of these sides, so a user's patch is one the model has seen.
USER_PATCH = 3
TRAIN_PATCHES = (1, 3, 5)
# Points per hinted training image: geometric with this mean, capped (Zhang et al. use p = 1/8).
MEAN_TRAIN_POINTS = 8
MAX_TRAIN_POINTS = 32
_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


@dataclass(frozen=True)
class Hint:
    """A user's hint: the pixel (x, y) of the input image has colour ``rgb`` (0..255 each)."""

    x: float
    y: float
    rgb: tuple[int, int, int]


def parse_colour(text: str, what: str = "colour") -> tuple[int, int, int]:
    """"#RRGGBB" (or "RRGGBB") -> (r, g, b).

    Raises:
        ValueError: anything else; the message names ``what``.
    """
    match = _HEX.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{what}: {text!r} is not a colour; write it as #RRGGBB, e.g. #3366cc")
    value = match[1]
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


def parse_hint(text: str) -> Hint:
    """"X,Y,#RRGGBB" -> a ``Hint`` (the ``--hint`` option).

    Raises:
        ValueError: a malformed hint; the message shows the expected form.
    """
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        raise ValueError(f"--hint {text!r}: expected X,Y,#RRGGBB (pixels from the top-left), e.g. 120,40,#3366cc")
    try:
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"--hint {text!r}: X and Y must be numbers (pixels from the top-left)") from None
    return Hint(x, y, parse_colour(parts[2], f"--hint {text!r}"))


def load_hints(path: str | Path) -> list[Hint]:
    """Reads ``[{"x": 120, "y": 40, "color": "#3366cc"}, ...]`` (or ``{"hints": [...]}``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a file, not valid JSON, or an entry without numeric x, y and a
            "#RRGGBB" string color (the message names the file and the entry).
    """
    return [hint for hint, _, _ in hint_entries(path)]


def hint_entries(path: str | Path) -> list[tuple[Hint, dict, str]]:
    """The entries of a hints file, each checked as ``load_hints`` does: (its point, the raw
    entry for readers of further keys such as film hints' "frame", where it is for messages).

    Raises:
        FileNotFoundError, ValueError: as ``load_hints``.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--hints {path} is a folder; pass a JSON file of hints")
    if not path.is_file():
        raise FileNotFoundError(f"--hints {path} does not exist")
    try:
        entries = json.loads(path.read_bytes())
    except ValueError as err:  # JSON syntax, UTF-8, or an integer past Python's 4300 digits
        raise ValueError(f"--hints {path} is not valid JSON: {err}") from err
    except RecursionError:
        raise ValueError(f"--hints {path}: nested too deeply; a hints file is a list of flat objects") from None
    if isinstance(entries, dict):
        entries = entries.get("hints")
    if not isinstance(entries, list):
        raise ValueError(f'--hints {path}: expected a list of {{"x": .., "y": .., "color": "#RRGGBB"}} objects')
    checked = []
    for index, entry in enumerate(entries):
        where = f"--hints {path}, entry {index}"
        if not isinstance(entry, dict) or not {"x", "y", "color"} <= set(entry):
            raise ValueError(f'{where}: expected {{"x": .., "y": .., "color": "#RRGGBB"}}; got {brief(entry)}')
        x, y, colour = _coordinate(entry["x"], "x", where), _coordinate(entry["y"], "y", where), entry["color"]
        if not isinstance(colour, str):
            raise ValueError(f'{where}: "color" must be a string such as "#3366cc"; got {brief(colour)}')
        checked.append((Hint(x, y, parse_colour(colour, where)), entry, where))
    return checked


def _coordinate(value: object, axis: str, where: str) -> float:
    """An entry's x or y as a float; ValueError naming ``where`` for anything but a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: x and y must be numbers (pixels from the top-left); got {axis} = {brief(value)}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{where}: {axis} is far outside any image; got a {len(str(abs(value)))}-digit number") from None


def check_inside(hints: Sequence[Hint], width: int, height: int, source: str) -> None:
    """Raises ValueError naming the first hint outside a ``width`` x ``height`` image."""
    for hint in hints:
        if not (0 <= hint.x < width and 0 <= hint.y < height):
            raise ValueError(
                f"{source}: hint at ({hint.x:g}, {hint.y:g}) is outside the {width}x{height} image; "
                f"x must be in [0, {width}) and y in [0, {height})"
            )


def patch(row: int, col: int, side: int) -> tuple[slice, slice]:
    """The rows and columns of a ``side`` x ``side`` patch centred at (row, col), clipped to the image
    (slicing clips the bottom/right; the top/left are clipped here)."""
    top, left = row - side // 2, col - side // 2
    return slice(max(top, 0), top + side), slice(max(left, 0), left + side)


def paint(hints: Tensor, index: int, row: int, col: int, side: int, ab_norm: Tensor) -> None:
    """Marks a ``side`` x ``side`` patch centred at (row, col) of image ``index`` with ``ab_norm`` (2,)."""
    rows, cols = patch(row, col, side)
    hints[index, :2, rows, cols] = ab_norm.view(2, 1, 1).to(hints)
    hints[index, 2, rows, cols] = 1.0


def hint_map(hints: Sequence[Hint], input_size: tuple[int, int], render_size: tuple[int, int], device: torch.device) -> Tensor:
    """Users' hints in input pixels -> the generator's hint channels (1, 3, h, w) at the render size.

    Args:
        hints: points and colours; only their chroma is used (the image keeps its own L).
        input_size: (H, W) of the input image the points refer to.
        render_size: (h, w) the generator runs at.
    """
    out = torch.zeros(1, HINT_CHANNELS, *render_size, device=device)
    if not hints:
        return out
    rgb = torch.tensor([h.rgb for h in hints], dtype=torch.float32, device=device) / 255.0
    ab_norm = normalize_ab(rgb_to_lab(rgb.T.reshape(1, 3, 1, -1))[0, 1:, 0].T)  # (n, 2)
    scale_y, scale_x = render_size[0] / input_size[0], render_size[1] / input_size[1]
    for hint, ab in zip(hints, ab_norm):
        row = min(int((hint.y + 0.5) * scale_y), render_size[0] - 1)
        col = min(int((hint.x + 0.5) * scale_x), render_size[1] - 1)
        paint(out, 0, row, col, USER_PATCH, ab)
    return out


def sample_hints(ab_norm: Tensor, share: float, generator: torch.Generator | None = None) -> Tensor:
    """Training hints from the true colours, for a random ``share`` of the images.

    A hinted image gets a geometric number of points (mean ``MEAN_TRAIN_POINTS``),
    each a patch of a side from ``TRAIN_PATCHES`` at a uniform position, coloured
    with the true mean ab of that patch; the other images get no hints, so one
    model learns both to colour alone and to follow hints.

    Args:
        ab_norm: true normalised ab (B, 2, H, W).
        share: probability in [0, 1] that an image gets hints.
        generator: CPU random generator (reproducible training).

    Returns:
        (B, 3, H, W) hints on ``ab_norm``'s device.
    """
    batch, _, height, width = ab_norm.shape
    hints = ab_norm.new_zeros(batch, HINT_CHANNELS, height, width)
    log_q = math.log(1.0 - 1.0 / MEAN_TRAIN_POINTS)
    for index in range(batch):
        if float(torch.rand((), generator=generator)) >= share:
            continue
        uniform = float(torch.rand((), generator=generator))
        count = min(1 + int(math.log(max(uniform, 1e-12)) / log_q), MAX_TRAIN_POINTS)
        rows = torch.randint(height, (count,), generator=generator).tolist()
        cols = torch.randint(width, (count,), generator=generator).tolist()
        sides = torch.randint(len(TRAIN_PATCHES), (count,), generator=generator).tolist()
        for row, col, choice in zip(rows, cols, sides):
            side = TRAIN_PATCHES[choice]
            rows_in, cols_in = patch(row, col, side)
            paint(hints, index, row, col, side, ab_norm[index, :, rows_in, cols_in].mean(dim=(1, 2)))
    return hints
