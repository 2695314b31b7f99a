"""One film being colourised in the studio: its shots, its hints, a frame's preview, the render.

Opening a film decodes it once to find its shots (``film_hints.shot_starts``,
the scene cuts at which hints are dropped) and every frame's timestamp, so a
frame can be shown by seeking. The render is ``film_hints.colorize_film``, the
film path of ``sacolor-infer``, with the same stabiliser and batch size, and a
``FlickerMeter`` fed with what it writes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..evaluation.flicker import FlickerMeter, format_report, plot_report
from ..inference.colorizer import Colorizer
from ..inference.film import FilmHint, HintTracker, colorize_film, displayed_point, schedule, shot_starts
from ..inference.temporal import ChromaStabilizer
from ..io.video import VideoInfo, iter_timed_frames, probe, read_frames
from .photo import HintList

# sacolor-infer's defaults, so that the studio's film is the file sacolor-infer writes.
TEMPORAL_STRENGTH = 0.7
BATCH_SIZE = 8
FLICKER_ROWS = ["model", "gray"]


class RenderCancelled(Exception):
    """The user pressed Cancel; the partial film is discarded."""


class FilmEditor:
    """A film's shots and hints, previews of its frames, and its render.

    Args:
        colorizer: the model.
        path: the film (any format ``sacolor-infer`` reads).
        on_scan: called with the number of frames decoded so far while the shots are found.

    Raises:
        ValueError: not a readable video, or one without frames.
    """

    def __init__(self, colorizer: Colorizer, path: Path, on_scan: Callable[[int], None] | None = None) -> None:
        self.colorizer = colorizer
        self.path = path
        self.info: VideoInfo = probe(path)
        self.timestamps: list[int | None] = []

        def lightness_of_frames():
            for pts, rgb in iter_timed_frames(path):
                self.timestamps.append(pts)
                if on_scan is not None:
                    on_scan(len(self.timestamps))
                yield self._lightness(rgb[None])[0].cpu()

        self.shots = shot_starts(lightness_of_frames())
        if not self.timestamps:
            raise ValueError(f"{path.name}: the film has no frames")
        self.hints = HintList(self.info.width, self.info.height, self.frames)
        self.cancel = threading.Event()

    @property
    def frames(self) -> int:
        return len(self.timestamps)

    def shot_of(self, index: int) -> tuple[int, int]:
        """(first, last) frame of the shot that holds frame ``index``."""
        first = max(start for start in self.shots if start <= index)
        later = [start for start in self.shots if start > index]
        return first, (later[0] if later else self.frames) - 1

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as uint8 RGB (H, W, 3)."""
        return read_frames(self.path, self.timestamps, index, 1)[0]

    def film_hints(self) -> list[FilmHint]:
        """The hints as ``sacolor-infer --hints`` reads them from ``save_hints``'s file: in the pixels
        players show (this page shows the stored frames, which a display rotation turns)."""
        return [
            FilmHint(displayed_point(h.hint, self.info.rotation, self.info.width, self.info.height), frame=h.frame,
                     source=f"hint {n}")
            for n, h in enumerate(self.hints.items, start=1)
        ]

    def points_on(self, index: int) -> list:
        """The hints that hold on frame ``index``, where the render carries them (``HintTracker``)."""
        first, _ = self.shot_of(index)
        placed = [h for h in self.hints.items if first <= h.frame <= index]
        if not placed:
            return []
        start = min(h.frame for h in placed)
        starts = schedule(self.film_hints(), self.info, self.path.name)
        tracker = HintTracker(starts)
        tracker.frame = start
        points: list = []
        for rgb in read_frames(self.path, self.timestamps, start, index - start + 1):
            points = tracker.step(self._lightness(rgb[None])[0].cpu())
        return points

    def preview(self, index: int) -> tuple[np.ndarray, np.ndarray, list]:
        """Frame ``index``, its colourisation with the hints that hold on it (without the render's
        flicker smoothing, which needs the frames before it), and those hints (``points_on``)."""
        rgb, points = self.frame(index), self.points_on(index)
        return rgb, self.colorizer.colorize(rgb[None], hints=points)[0], points

    def _lightness(self, rgb: np.ndarray) -> torch.Tensor:
        return self.colorizer.lightness(torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0)

    def render(self, target: Path, plot: Path, on_frames: Callable[[int], None]) -> str:
        """Colourises the whole film into ``target`` (MP4, audio kept) and draws its flicker plot.

        Returns:
            The flicker report as text (``sacolor-eval --no-truth``'s table, rows model and gray).

        Raises:
            RenderCancelled: ``cancel`` was set; nothing is left at ``target``.
            ValueError: the film cannot be read or written.
        """
        self.cancel.clear()
        stabilizer = ChromaStabilizer(strength=TEMPORAL_STRENGTH)
        meter = FlickerMeter(stabilizer.settings)

        def measure(frames: np.ndarray, colored: np.ndarray) -> None:
            if self.cancel.is_set():
                raise RenderCancelled
            lightness = self._lightness(frames)
            rows = {"model": torch.from_numpy(colored).permute(0, 3, 1, 2).float() / 255.0,
                    "gray": self.colorizer.compose(lightness, torch.zeros_like(lightness).expand(-1, 2, -1, -1))}
            meter.add(lightness, rows)

        partial = target.with_name(f"partial-{target.name}")
        try:
            colorize_film(self.colorizer, self.path, partial, self.film_hints(), stabilizer, BATCH_SIZE,
                          on_frames=on_frames, on_colored=measure)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        report = meter.report("model")
        plot_report(report, FLICKER_ROWS, "model", plot, "flicker of the render")
        return format_report(report, FLICKER_ROWS)

    def save_hints(self, target: Path) -> Path:
        """Writes the hints as the JSON ``sacolor-infer --hints`` reads (with their frames; points where
        players show them, as ``film_hints``)."""
        entries = self.hints.json_entries(with_frames=True)
        for entry, film_hint in zip(entries, self.film_hints()):
            entry["x"], entry["y"] = film_hint.hint.x, film_hint.hint.y
        target.write_text(json.dumps(entries, indent=1) + "\n")
        return target
