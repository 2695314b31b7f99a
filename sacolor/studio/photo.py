"""One photo being colourised in the studio: its L, its hints, the latest result.

The photo is decoded once (``photo.read_lightness``); every hint change runs
``photo.colorize_lightness`` on that L, the function ``sacolor-infer`` runs on
the file, so the PNG saved here is the one ``sacolor-infer --hints`` writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..colour import lab_to_rgb, to_uint8
from ..inference.colorizer import Colorizer
from ..inference.hints import Hint, check_inside, parse_colour
from ..inference.photo import colorize_lightness, read_lightness
from ..io.images import save_rgb


def hex_colour(rgb: tuple[int, int, int]) -> str:
    """(r, g, b) -> "#rrggbb"."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


@dataclass(frozen=True)
class StudioHint:
    """A hint as the page lists it: a point in the photo's (or film's) pixels and a colour,
    and for films the frame it is placed on."""

    x: int
    y: int
    colour: str
    frame: int = 0

    @property
    def hint(self) -> Hint:
        return Hint(float(self.x), float(self.y), parse_colour(self.colour, f"hint at ({self.x}, {self.y})"))


class HintList:
    """The hints of one photo or film, in the order they were placed, and which one is selected.

    Args:
        width, height: the picture's size in pixels.
        frames: a film's frame count (None for a photo, whose hints are all on frame 0).
    """

    def __init__(self, width: int, height: int, frames: int | None = None) -> None:
        self.width, self.height, self.frames = width, height, frames
        self.items: list[StudioHint] = []
        self.selected: int | None = None

    def _check(self, hint: StudioHint, name: str) -> None:
        """Raises ValueError, naming the hint, for a point outside the picture or a frame outside the film."""
        check_inside([hint.hint], self.width, self.height, name)
        if not 0 <= hint.frame < (self.frames or 1):
            raise ValueError(f"{name}: frame {hint.frame} is not in the film (frames 0-{(self.frames or 1) - 1})")

    def add(self, x: int, y: int, colour: str, frame: int = 0) -> None:
        """Adds a hint and selects it.

        Raises:
            ValueError: the point is outside the picture or the colour is not #RRGGBB.
        """
        hint = StudioHint(x, y, hex_colour(parse_colour(colour, "hint colour")), frame)
        self._check(hint, "hint")
        self.items.append(hint)
        self.selected = len(self.items) - 1

    def select(self, index: int | None) -> None:
        self.selected = index if index is not None and 0 <= index < len(self.items) else None

    def move(self, x: int, y: int, frame: int = 0) -> None:
        """Moves the selected hint (to ``frame`` for films)."""
        if self.selected is not None:
            moved = replace(self.items[self.selected], x=x, y=y, frame=frame)
            self._check(moved, "hint")
            self.items[self.selected] = moved

    def recolour(self, colour: str) -> None:
        """Gives the selected hint a new colour."""
        if self.selected is not None:
            colour = hex_colour(parse_colour(colour, "hint colour"))
            self.items[self.selected] = replace(self.items[self.selected], colour=colour)

    def remove(self) -> None:
        """Removes the selected hint; nothing is selected afterwards."""
        if self.selected is not None:
            del self.items[self.selected]
            self.selected = None

    def replace_all(self, rows: list[list]) -> None:
        """Takes the hints from an edited table: rows of (x, y, colour) or (frame, x, y, colour).

        Raises:
            ValueError: a row that is not a point inside the picture with a #RRGGBB colour (named).
        """
        hints = []
        for number, row in enumerate(rows, start=1):
            *frame, x, y, colour = row
            try:
                hint = StudioHint(int(float(x)), int(float(y)), hex_colour(parse_colour(str(colour), f"hint {number}")),
                                  int(float(frame[0])) if frame else 0)
            except (TypeError, ValueError) as error:
                raise ValueError(f"hint {number}: {error}" if "hint" not in str(error) else str(error)) from None
            self._check(hint, f"hint {number}")
            hints.append(hint)
        self.items = hints
        self.select(self.selected)

    def json_entries(self, with_frames: bool) -> list[dict]:
        """The hints as ``sacolor-infer --hints`` reads them."""
        return [
            {**({"frame": h.frame} if with_frames else {}), "x": h.x, "y": h.y, "color": h.colour}
            for h in self.items
        ]


class PhotoEditor:
    """A photo's L, its hints and the latest colourisation at full resolution.

    Args:
        colorizer: the model.
        path: the photo (any format ``sacolor-infer`` reads).

    Raises:
        ValueError: the file is not a readable image.
        MemoryError: the photo is too large for the memory available.
    """

    def __init__(self, colorizer: Colorizer, path: Path) -> None:
        self.colorizer = colorizer
        self.lightness = read_lightness(path)
        height, width = self.lightness.shape
        self.hints = HintList(width, height)
        self._gray: tuple[float, np.ndarray] | None = None
        self.encoded = colorizer.encode(torch.from_numpy(self.lightness)[None, None])  # L's part, once per photo
        self.result = self.render()

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.hints.width, self.hints.height

    def gray(self, scale: float) -> np.ndarray:
        """The photo as the model sees it (its L, no colour) scaled by ``scale``, uint8 RGB (h, w, 3).
        The last one is kept: the page asks for the same scale after every hint."""
        if self._gray is None or self._gray[0] != scale:
            self._gray = (scale, self._gray_at(scale))
        return self._gray[1]

    def _gray_at(self, scale: float) -> np.ndarray:
        lightness = torch.from_numpy(self.lightness)[None, None]
        if scale != 1.0:
            size = (max(1, round(lightness.shape[2] * scale)), max(1, round(lightness.shape[3] * scale)))
            lightness = F.interpolate(lightness, size=size, mode="area" if scale < 1.0 else "nearest")
        return to_uint8(lab_to_rgb(torch.cat([lightness, torch.zeros_like(lightness).expand(-1, 2, -1, -1)], dim=1)))[0]

    def render(self) -> np.ndarray:
        """Colourises the photo with the current hints; uint8 RGB (H, W, 3), also kept as ``result``."""
        self.result = colorize_lightness(self.colorizer, self.lightness, [h.hint for h in self.hints.items], "photo", self.encoded)
        return self.result

    def colour_at(self, x: int, y: int) -> str:
        """The colour of the current result at (x, y), "#rrggbb"."""
        check_inside([Hint(x, y, (0, 0, 0))], *self.size, "point")
        return hex_colour(tuple(int(v) for v in self.result[y, x]))

    def save_png(self, target: Path) -> Path:
        """Writes the current result as PNG (as ``sacolor-infer -o x.png`` does)."""
        save_rgb(target, self.result)
        return target

    def save_hints(self, target: Path) -> Path:
        """Writes the hints as the JSON ``sacolor-infer --hints`` reads."""
        target.write_text(json.dumps(self.hints.json_entries(with_frames=False), indent=1) + "\n")
        return target
