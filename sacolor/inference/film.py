"""Colour hints on films: "this point is this colour" once, held through the shot.

A film hint is a ``Hint`` (x, y in the video's pixels, a colour) that holds
from a frame (or a time) onwards. ``HintTracker`` carries each point from
frame to frame with the optical flow on L (``temporal.FlowSettings``, the
estimate the stabiliser uses), drops it where the flow's occlusion check fails
around it or it leaves the frame, clears every point at a scene cut, and lets
a later hint with the same ``id`` replace an earlier one. ``FilmColorizer``
feeds the carried points to the generator as its hint channels, frame by frame.

The hints file (``--hints`` of ``sacolor-infer``) is the photo format plus
when each hint starts and, optionally, a name::

    [{"frame": 0, "x": 120, "y": 40, "color": "#b22222", "id": "coat"},
     {"time": 2.5, "x": 300, "y": 90, "color": "#3366cc"},
     {"frame": 60, "x": 131, "y": 52, "color": "#2e8b57", "id": "coat"}]
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .colorizer import Colorizer, to_uint8
from .hints import Hint, check_inside, load_hints
from .temporal import ChromaStabilizer, FlowSettings, Motion

# A point survives a frame when at least KEEP_FRACTION of the KEEP_WINDOW x KEEP_WINDOW
# pixels around it pass the flow's occlusion check: one pixel alone is too noisy a witness.
KEEP_WINDOW = 3
KEEP_FRACTION = 0.5
# Slack, in frames, for converting a time to a frame: 2.5 s at 24 fps is frame 60, not 59.
TIME_SLACK = 1e-6

Schedule = Mapping[int, Sequence["FilmHint"]]


@dataclass(frozen=True)
class FilmHint:
    """A hint that holds from frame ``frame`` (or from ``time`` seconds) until its shot ends.

    Attributes:
        hint: the point, in the video's pixels, and its colour.
        frame: the first frame (0-based) it applies to; or None when ``time`` says.
        time: the time in seconds it starts; converted to a frame with the video's frame rate.
        key: a name ("id" in the file); a later hint with the same name replaces this one.
        source: where it came from, for error messages (e.g. "--hints h.json, entry 2").
    """

    hint: Hint
    frame: int | None = 0
    time: float | None = None
    key: str | None = None
    source: str = "--hint"

    def start(self, fps: Fraction) -> int:
        """The first frame it applies to, at ``fps`` frames per second."""
        if self.frame is not None:
            return self.frame
        return math.floor(self.time * fps + TIME_SLACK)


def load_film_hints(path: str | Path) -> list[FilmHint]:
    """Reads a hints file: the photo format (``hints.load_hints``) plus optional "frame" or
    "time" (default frame 0) and "id" per entry.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a bad entry; the message names the file and the entry.
    """
    points = load_hints(path)  # checks the file, x, y and colour
    entries = json.loads(Path(path).read_text())
    entries = entries["hints"] if isinstance(entries, dict) else entries
    return [_film_hint(point, entry, f"--hints {path}, entry {index}") for index, (point, entry) in enumerate(zip(points, entries))]


def _film_hint(point: Hint, entry: dict, where: str) -> FilmHint:
    frame, time, key = entry.get("frame"), entry.get("time"), entry.get("id")
    if frame is not None and time is not None:
        raise ValueError(f'{where}: give "frame" or "time", not both')
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int) or frame < 0):
        raise ValueError(f'{where}: "frame" must be a frame number >= 0 (the first frame is 0); got {frame!r}')
    if time is not None and (isinstance(time, bool) or not isinstance(time, (int, float)) or not 0 <= time < math.inf):
        raise ValueError(f'{where}: "time" must be seconds >= 0 from the start of the video; got {time!r}')
    if key is not None and not isinstance(key, (str, int)):
        raise ValueError(f'{where}: "id" must be a name or a number; got {key!r}')
    if frame is None and time is None:
        frame = 0
    return FilmHint(point, frame, time, None if key is None else str(key), where)


def schedule(hints: Sequence[FilmHint], width: int, height: int, fps: Fraction, frames: int | None, video: str) -> dict[int, list[FilmHint]]:
    """Hints grouped by the frame they start at, checked against a video.

    Args:
        width, height, fps, frames: the video's (``io.video.probe``); ``frames`` None when unknown.
        video: its name, for error messages.

    Raises:
        ValueError: a hint outside the frame, or starting after the last frame; the message
            names the video and the hint.
    """
    starts: dict[int, list[FilmHint]] = defaultdict(list)
    for film_hint in hints:
        check_inside([film_hint.hint], width, height, f"{video}: {film_hint.source}")
        start = film_hint.start(fps)
        if frames is not None and start >= frames:
            when = f"frame {start}" if film_hint.time is None else f"time {film_hint.time:g} s (frame {start})"
            raise ValueError(f"{video}: {film_hint.source}: starts at {when}, but the video has {frames} frames (0 to {frames - 1})")
        starts[start].append(film_hint)
    return dict(starts)


class HintTracker:
    """Carries film hints through their shots, frame by frame.

    Args:
        starts: hints by the frame they start at (``schedule``).
        settings: how the flow, its occlusion check and scene cuts are estimated.
    """

    def __init__(self, starts: Schedule, settings: FlowSettings = FlowSettings()) -> None:
        self.starts = starts
        self.settings = settings
        self.frame = 0
        self.points: dict[object, Hint] = {}
        self._previous: Tensor | None = None

    def __call__(self, lightness: Tensor) -> list[list[Hint]]:
        """The points that hold on each of a batch of consecutive frames, continuing from the last call.

        Args:
            lightness: L in Lab units (0..100), (T, 1, H, W), the frames in order.

        Returns:
            For each frame, its points in that frame's pixels.
        """
        return [self.step(l_t) for l_t in lightness.float().cpu()]

    def step(self, lightness: Tensor) -> list[Hint]:
        """Moves the points onto the next frame (L (1, H, W)), adds the hints that start there."""
        if self.points and self._previous is not None:
            motion = self.settings.motion(self._previous, lightness)
            self.points = {} if motion.cut else carry(self.points, motion)
        for index, film_hint in enumerate(self.starts.get(self.frame, ())):
            self.points[film_hint.key if film_hint.key is not None else (self.frame, index)] = film_hint.hint
        self._previous = lightness
        self.frame += 1
        return list(self.points.values())


def carry(points: dict[object, Hint], motion: Motion) -> dict[object, Hint]:
    """The points moved by ``motion`` (from the target frame, where they are, to its source frame),
    without those whose surroundings fail the occlusion check or that leave the frame."""
    height, width = motion.flow.shape[-2:]
    xs = torch.tensor([p.x for p in points.values()], dtype=torch.float32)
    ys = torch.tensor([p.y for p in points.values()], dtype=torch.float32)
    kept = F.avg_pool2d(motion.valid[None], KEEP_WINDOW, stride=1, padding=KEEP_WINDOW // 2, count_include_pad=False)[0]
    shift = sample_at(torch.cat([motion.flow, kept]), ys, xs)
    ys, xs = ys + shift[0], xs + shift[1]
    keep = (shift[2] >= KEEP_FRACTION) & (xs >= 0) & (xs <= width - 1) & (ys >= 0) & (ys <= height - 1)
    return {
        key: replace(point, x=float(x), y=float(y))
        for (key, point), x, y, ok in zip(points.items(), xs.tolist(), ys.tolist(), keep.tolist()) if ok
    }


def sample_at(image: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
    """Bilinear samples of ``image`` (C, H, W) at the points (ys[i], xs[i]) in pixels; returns (C, N)."""
    height, width = image.shape[-2:]
    grid = torch.stack([xs * (2.0 / max(width - 1, 1)) - 1.0, ys * (2.0 / max(height - 1, 1)) - 1.0], dim=-1)
    return F.grid_sample(image[None], grid.view(1, 1, -1, 2), mode="bilinear", padding_mode="border", align_corners=True)[0, :, 0]


class FilmColorizer:
    """Colourises a film's frames in order, with its hints carried through each shot.

    Args:
        colorizer: the model; it must take hints when ``starts`` has any.
        stabilizer: optional temporal stabilisation of the predicted ab.
        starts: hints by the frame they start at (``schedule``).

    A model that takes no hints raises ``ValueError`` (``Colorizer.hint_channels``) on the first call.
    """

    def __init__(self, colorizer: Colorizer, stabilizer: ChromaStabilizer | None = None, starts: Schedule | None = None) -> None:
        self.colorizer = colorizer
        self.stabilizer = stabilizer
        self.tracker = HintTracker(starts) if starts else None

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB frames (B, H, W, 3), the next ones of the film -> colourised uint8 (B, H, W, 3)."""
        if self.tracker is None:
            return self.colorizer.colorize(frames, self.stabilizer)
        rgb = torch.from_numpy(frames).to(self.colorizer.device).permute(0, 3, 1, 2).float() / 255.0
        lightness = self.colorizer.lightness(rgb)
        size = tuple(frames.shape[1:3])
        channels = torch.cat([self.colorizer.hint_channels(points, size) for points in self.tracker(lightness)])
        return to_uint8(self.colorizer.colorize_lightness(lightness, channels, self.stabilizer))
