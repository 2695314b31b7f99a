"""Flicker on a film without its colour original: warp error, CDC and colourfulness per shot.

A user's own footage has no colour original, so PSNR and the CDC against
truth cannot be computed. What can be measured is how much a colouring's
chroma changes where the picture does not: for each pair of frames,
``FlickerMeter`` estimates the motion on the input's L (``temporal.FlowSettings``,
the estimate the stabiliser uses), warps frame t+1's ab back onto frame t, and
takes the mean squared ab difference over the pixels that pass the occlusion
check (the warp error of Lai et al., "Learning Blind Video Temporal
Consistency", ECCV 2018, on ab only: the output's L is the input's). Beside it
are TCVC's CDC on the ab histograms (flow-free, so it does not share the
stabiliser's flow, whose own warp error it partly minimises) and
colourfulness, per shot (scene cuts split the film and no pair spans one) and in total.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from torch import Tensor

from ..colour import channel_histograms, rgb_to_lab
from ..inference.temporal import CDC_DILATIONS, FlowSettings, Motion, color_distribution_consistency
from ..io.paths import atomic_output
from .metrics import colorfulness

# One bin per Lab unit, centred on the integers -128..127, so that gray (ab within float
# error of 0) always falls in one bin.
AB_BINS = 256
AB_RANGE = (-128.5, 127.5)
WORST_FRAMES = 3
WARP_ERROR_UNITS = "mean squared ab difference, Lab units squared"


def ab_histograms(ab: Tensor) -> np.ndarray:
    """Per-channel normalised histograms of a and b, one bin per Lab unit (``AB_RANGE``).

    Args:
        ab: (T, 2, H, W) in Lab units.

    Returns:
        float64 (T, 2, AB_BINS); each row sums to 1 (values outside the range go to the end bins).
    """
    return channel_histograms(ab, AB_BINS, *AB_RANGE)


def warp_error(motion: Motion, ab: Tensor, ab_next: Tensor) -> float:
    """Lai et al.'s warp error on ab: the mean, over the pixels that pass the occlusion check, of
    |ab - warp(ab_next)|^2 (summed over a and b; Lab units squared).

    Args:
        motion: from the next frame (source) to this one (target).
        ab, ab_next: (2, H, W) of this frame and the next.
    """
    squared = (ab - motion.warp(ab_next)).square().sum(dim=0, keepdim=True)
    return float((squared * motion.valid).sum() / motion.valid.sum().clamp_min(1.0))


class FlickerMeter:
    """Collects per-frame flicker measures of one film's colourings ("rows"), frames in order.

    Args:
        settings: how motion, occlusions and scene cuts are estimated.
    """

    def __init__(self, settings: FlowSettings = FlowSettings()) -> None:
        self.settings = settings
        self.frames = 0
        self.shot_starts: list[int] = []
        # Per row and frame t: the warp error between frames t-1 and t (None where a shot starts).
        self.warp: dict[str, list[float | None]] = defaultdict(list)
        self.colorfulness: dict[str, list[float]] = defaultdict(list)
        self.histograms: dict[str, list[np.ndarray]] = defaultdict(list)
        self._previous: tuple[Tensor, dict[str, Tensor]] | None = None

    def add(self, lightness: Tensor, rows: dict[str, Tensor]) -> None:
        """Adds the next frames.

        Args:
            lightness: the input's L in Lab units, (B, 1, H, W).
            rows: each colouring's RGB in [0, 1], (B, 3, H, W), e.g. as written to a file.
        """
        rgb_rows = {row: rgb.float().cpu() for row, rgb in rows.items()}
        ab_rows = {row: rgb_to_lab(rgb)[:, 1:] for row, rgb in rgb_rows.items()}
        for row, ab in ab_rows.items():
            self.histograms[row].append(ab_histograms(ab))
            self.colorfulness[row] += [colorfulness(frame) for frame in rgb_rows[row]]
        for index, l_t in enumerate(lightness.float().cpu()):
            self._add_frame(l_t, {row: ab[index] for row, ab in ab_rows.items()})

    def _add_frame(self, lightness: Tensor, ab: dict[str, Tensor]) -> None:
        motion = None
        if self._previous is not None:
            # Lai et al.'s direction: frame t+1 (source) warped back onto frame t (target).
            motion = self.settings.motion(self._previous[0], lightness)
        if motion is None or motion.cut:
            self.shot_starts.append(self.frames)
        for row, ab_t in ab.items():
            self.warp[row].append(None if motion is None or motion.cut else warp_error(motion, self._previous[1][row], ab_t))
        self._previous = (lightness, ab)
        self.frames += 1

    def report(self, worst_row: str, worst: int = WORST_FRAMES) -> dict:
        """The measures per shot and in total, and the frames where ``worst_row`` flickers most.

        Returns:
            {"frames", "scene_cuts" (first frames of the shots after the first),
            "shots": [{"first", "last", row: {"warp_error", "cdc", "colorfulness"}}],
            "total": {row: {...}}, "worst_frames": [frame t whose change from t-1 is largest],
            "warp_error_per_frame": {row: [None or the error between t-1 and t]}}.
            A shot of one frame has no warp error, one of fewer than 5 frames no CDC (None);
            the total CDC is the mean of the shots' CDCs weighted by their lengths.
        """
        bounds = list(zip(self.shot_starts, self.shot_starts[1:] + [self.frames]))
        histograms = {row: np.concatenate(parts) for row, parts in self.histograms.items()}
        shots = [
            {"first": first, "last": end - 1, **{row: self._shot(row, histograms[row][first:end], first, end) for row in self.warp}}
            for first, end in bounds
        ]
        pairs = self.warp.get(worst_row, [])
        ranked = sorted((t for t, e in enumerate(pairs) if e is not None), key=lambda t: -pairs[t])
        return {
            "frames": self.frames,
            "scene_cuts": self.shot_starts[1:],
            "shots": shots,
            "total": {row: self._total(row, shots) for row in self.warp},
            "worst_frames": sorted(ranked[:worst]),
            "warp_error_per_frame": dict(self.warp),
        }

    def _shot(self, row: str, histograms: np.ndarray, first: int, end: int) -> dict[str, float | None]:
        return {
            "warp_error": _mean([e for e in self.warp[row][first:end] if e is not None]),
            "cdc": color_distribution_consistency(histograms) if end - first > max(CDC_DILATIONS) else None,
            "colorfulness": _mean(self.colorfulness[row][first:end]),
        }

    def _total(self, row: str, shots: list[dict]) -> dict[str, float | None]:
        weighted = [(shot[row]["cdc"], shot["last"] - shot["first"] + 1) for shot in shots if shot[row]["cdc"] is not None]
        return {
            "warp_error": _mean([e for e in self.warp[row] if e is not None]),
            "cdc": float(np.average([c for c, _ in weighted], weights=[n for _, n in weighted])) if weighted else None,
            "colorfulness": _mean(self.colorfulness[row]),
        }


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def format_report(report: dict, rows: list[str]) -> str:
    """A flicker report as an aligned text table: one block per shot, then the total."""
    columns = ("warp_error", "cdc", "colorfulness")
    lines = [f"{report['frames']} frames, {len(report['shots'])} shots; frames that flicker most: "
             f"{', '.join(map(str, report['worst_frames'])) or 'none'}"]
    blocks = [(f"shot {i + 1} (frames {s['first']}-{s['last']})", s) for i, s in enumerate(report["shots"])]
    blocks.append(("total", report["total"]))
    label_width, row_width = max(len(label) for label, _ in blocks) + 2, max(map(len, rows)) + 2
    lines.append(" " * (label_width + row_width) + "".join(f"{c:>14}" for c in columns))
    for label, block in blocks:
        for index, row in enumerate(rows):
            cells = "".join(f"{'-':>14}" if block[row][c] is None else f"{block[row][c]:>14.4f}" for c in columns)
            lines.append(f"{label if index == 0 else '':{label_width}}{row:{row_width}}{cells}")
    return "\n".join(lines)


def plot_report(report: dict, rows: list[str], worst_row: str, target: Path, title: str) -> None:
    """Writes a PNG of the per-frame warp error of each row, scene cuts and the worst frames marked.

    The file is written under a temporary name and renamed, replacing ``target`` if it exists.

    Raises:
        ImportError: matplotlib is missing (the message says how to install it).
    """
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("--plot needs matplotlib: pip install matplotlib") from error
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 3.6), dpi=110, layout="constrained")
    frames = np.arange(report["frames"])
    for index, row in enumerate(rows):  # the first row on top
        values = np.array([np.nan if e is None else e for e in report["warp_error_per_frame"][row]])
        axes.plot(frames, values, label=row, linewidth=1.3, zorder=2 + len(rows) - index)
    for index, cut in enumerate(report["scene_cuts"]):
        axes.axvline(cut - 0.5, color="gray", linestyle="--", linewidth=1, label="scene cut" if index == 0 else None)
    worst = report["worst_frames"]
    errors = report["warp_error_per_frame"][worst_row]
    axes.scatter(worst, [errors[t] for t in worst], s=60, facecolors="none", edgecolors="red", zorder=3,
                 label=f"worst frames ({worst_row})")
    for t in worst:
        axes.annotate(str(t), (t, errors[t]), textcoords="offset points", xytext=(4, 4), fontsize=8, color="red")
    axes.set(xlabel="frame t (error between frames t-1 and t)", ylabel="ab warp error (Lab units²)", title=title)
    axes.set_xlim(-0.5, max(report["frames"] - 0.5, 0.5))
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=8, loc="upper right")
    with atomic_output(target, overwrite=True) as temporary:
        figure.savefig(temporary)
    plt.close(figure)
