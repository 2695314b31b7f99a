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

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..colour import to_float, to_uint8
from ..io.video import VideoInfo, frame_times, probe, recolor_video
from ..messages import brief
from .colorizer import Colorizer
from .hints import Hint, check_inside, hint_entries
from .temporal import ChromaStabilizer, FlowSettings, Motion

# A point survives a frame when at least KEEP_FRACTION of the KEEP_WINDOW x KEEP_WINDOW
# pixels around it pass the flow's occlusion check: one pixel alone is too noisy a witness.
KEEP_WINDOW = 3
KEEP_FRACTION = 0.5
# Slack, in seconds, for converting a time to a frame: a hint at 2.5 s starts at a frame
# stamped 2.4999999 s (timestamps are rounded to the stream's unit).
TIME_SLACK = 1e-6

Schedule = Mapping[int, Sequence["FilmHint"]]


@dataclass(frozen=True)
class FilmHint:
    """A hint that holds from frame ``frame`` (or from ``time`` seconds) until its shot ends.

    Attributes:
        hint: the point, in the video's pixels, and its colour.
        frame: the first frame (0-based) it applies to; or None when ``time`` says.
        time: the time in seconds it starts: the first frame whose timestamp reaches it.
        key: a name ("id" in the file); a later hint with the same name replaces this one.
        source: where it came from, for error messages (e.g. "--hints h.json, entry 2").
    """

    hint: Hint
    frame: int | None = 0
    time: float | None = None
    key: str | None = None
    source: str = "--hint"

    def start(self, times: Sequence[float]) -> int:
        """The first frame it applies to, given every frame's time in seconds from the first
        (``io.video.frame_times``; only read for a hint given by time). ``len(times)`` when the
        film ends before it."""
        if self.frame is not None:
            return self.frame
        return bisect.bisect_left(times, self.time - TIME_SLACK)


def load_film_hints(path: str | Path) -> list[FilmHint]:
    """Reads a hints file: the photo format (``hints.load_hints``) plus optional "frame" or
    "time" (default frame 0) and "id" per entry.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a bad entry; the message names the file and the entry.
    """
    return [_film_hint(point, entry, where) for point, entry, where in hint_entries(path)]


def _film_hint(point: Hint, entry: dict, where: str) -> FilmHint:
    frame, time, key = entry.get("frame"), entry.get("time"), entry.get("id")
    if frame is not None and time is not None:
        raise ValueError(f'{where}: give "frame" or "time", not both')
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int) or frame < 0):
        raise ValueError(f'{where}: "frame" must be a frame number >= 0 (the first frame is 0); got {brief(frame)}')
    if time is not None and (isinstance(time, bool) or not isinstance(time, (int, float)) or not 0 <= time < math.inf):
        raise ValueError(f'{where}: "time" must be seconds >= 0 from the start of the video; got {brief(time)}')
    if key is not None and (isinstance(key, bool) or not isinstance(key, (str, int))):
        raise ValueError(f'{where}: "id" must be a name or a number; got {brief(key)}')
    if frame is None and time is None:
        frame = 0
    return FilmHint(point, frame, time, None if key is None else str(key), where)


def schedule(
    hints: Sequence[FilmHint],
    info: VideoInfo,
    video: str,
    times: Sequence[float] = (),
) -> dict[int, list[FilmHint]]:
    """Hints grouped by the frame they start at, checked against a video, their points in its stored frames.

    Points are given in displayed pixels, as players show the film (after its display rotation), the
    way a photo's are after its EXIF rotation; the frames the model sees are the stored ones, so each
    point is turned into those.

    Args:
        info: the video's (``io.video.probe``); ``info.frames`` None when the container does not say.
        video: its name, for error messages.
        times: every frame's time in seconds (``io.video.frame_times``), needed for hints given by
            time: a variable frame rate makes a time's frame unknowable from the average rate.

    Raises:
        ValueError: a hint outside the displayed frame, or starting after the last frame; the message
            names the video and the hint.
    """
    frames = len(times) if any(h.time is not None for h in hints) else info.frames
    width, height = info.display_size
    starts: dict[int, list[FilmHint]] = defaultdict(list)
    for film_hint in hints:
        check_inside([film_hint.hint], width, height, f"{video}: {film_hint.source}")
        start = film_hint.start(times)
        if frames is not None:
            check_start(film_hint, start, frames, video)
        stored = stored_point(film_hint.hint, info.rotation, info.width, info.height)
        starts[start].append(replace(film_hint, hint=stored))
    return dict(starts)


def check_start(film_hint: FilmHint, start: int, frames: int, video: str) -> None:
    """Raises ValueError when ``film_hint`` starts at frame ``start`` of a video of ``frames`` frames, or after it."""
    if start >= frames:
        when = f"frame {start}" if film_hint.time is None else f"time {film_hint.time:g} s"
        raise ValueError(f"{video}: {film_hint.source}: starts at {when}, but the video has {frames} frames (0 to {frames - 1})")


def check_starts(starts: Schedule, frames: int, video: str) -> None:
    """``check_start`` for every hint, once decoding has counted a film's frames (its container did not say)."""
    for start, hints in starts.items():
        for film_hint in hints:
            check_start(film_hint, start, frames, video)


def displayed_point(hint: Hint, rotation: int, width: int, height: int) -> Hint:
    """The inverse of ``stored_point``: a point of the stored frame (``width`` x ``height``) where
    players show it."""
    shown_width, shown_height = (height, width) if rotation % 180 else (width, height)
    return stored_point(hint, -rotation % 360, shown_width, shown_height)


def stored_point(hint: Hint, rotation: int, width: int, height: int) -> Hint:
    """A point in displayed pixels -> the same point in the stored frame (``width`` x ``height``),
    which players turn ``rotation`` degrees counter-clockwise (``np.rot90``'s sense)."""
    x, y = hint.x, hint.y
    turns = (rotation // 90) % 4
    if turns == 1:
        x, y = width - 1 - y, x
    elif turns == 2:
        x, y = width - 1 - x, height - 1 - y
    elif turns == 3:
        x, y = y, height - 1 - x
    return replace(hint, x=x, y=y)


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


def shot_starts(lightness: Iterable[Tensor], settings: FlowSettings = FlowSettings()) -> list[int]:
    """The first frame of each shot: 0, and every frame at which ``HintTracker`` clears its points.

    Args:
        lightness: each frame's L in Lab units, (1, H, W) float32 on the CPU, in order.
    """
    starts, previous = [], None
    for index, current in enumerate(lightness):
        # The tracker's estimate, in its direction (from this frame onto the previous one).
        if previous is None or settings.motion(previous, current).cut:
            starts.append(index)
        previous = current
    return starts


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
        rgb = to_float(frames, self.colorizer.device)
        lightness = self.colorizer.lightness(rgb)
        size = tuple(frames.shape[1:3])
        channels = torch.cat([self.colorizer.hint_channels(points, size) for points in self.tracker(lightness)])
        return to_uint8(self.colorizer.colorize_lightness(lightness, channels, self.stabilizer))


def colorize_film(
    colorizer: Colorizer,
    src: str | Path,
    dst: str | Path,
    hints: Sequence[FilmHint] = (),
    stabilizer: ChromaStabilizer | None = None,
    batch_size: int = 8,
    on_frames: Callable[[int], None] | None = None,
    on_colored: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> int:
    """Colourise the film ``src`` into ``dst`` (``io.video.recolor_video``: frame count, timing and
    audio kept), with ``hints`` carried through their shots: the one film path of ``sacolor-infer``
    and ``sacolor-studio``.

    Args:
        stabilizer: optional temporal stabilisation (a fresh one per film).
        batch_size: frames per model call.
        on_frames: called with the number of frames after each batch is written (progress).
        on_colored: called with each batch's input and colourised uint8 frames (B, H, W, 3), in
            order, before they are written; an exception it raises stops the film.

    Returns:
        The number of frames written.

    Raises:
        ValueError: an unreadable video, a hint outside it or past its end, or hints for a model
            that takes none.
    """
    info = probe(src)
    timed = any(film_hint.time is not None for film_hint in hints)
    starts = schedule(hints, info, str(src), frame_times(src) if timed else ())
    film = FilmColorizer(colorizer, stabilizer, starts)

    def process(frames: np.ndarray) -> np.ndarray:
        colored = film(frames)
        if on_colored is not None:
            on_colored(frames, colored)
        return colored

    frames = recolor_video(src, dst, process, batch_size, on_frames=on_frames)
    check_starts(starts, frames, str(src))  # where the container states no frame count
    return frames
