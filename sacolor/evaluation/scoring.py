"""The library half of ``sacolor-eval``: colourise the gray version of colour
photos and films and score the result next to the all-gray baseline.

``evaluate_images`` is also what the trainer's periodic evaluation calls, so
``metrics.jsonl`` and ``sacolor-eval`` agree on the same images.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..colour import to_float, to_uint8
from ..inference.colorizer import Colorizer
from ..inference.hints import Hint
from ..inference.temporal import DEFAULT_STRENGTH, ChromaStabilizer, color_distribution_consistency, color_histograms
from ..io.images import load_rgb
from ..io.video import iter_rgb_batches
from .flicker import FlickerMeter
from .metrics import ciede2000, colorfulness, psnr, ssim

# Rows of the report: what each one colourises with.
MODEL, UNSTABILIZED, GRAY, TRUTH = "model", "model_no_temporal", "gray", "truth"
# An exact match (a gray "ground truth" against the gray baseline) has infinite
# PSNR; capping it keeps the means finite and the JSON valid.
PSNR_CAP_DB = 100.0


def frame_scores(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """PSNR (capped), SSIM, mean CIEDE2000 and colourfulness of one RGB frame (3, H, W) against the truth."""
    return {
        "psnr": min(psnr(pred, truth), PSNR_CAP_DB), "ssim": ssim(pred, truth),
        "ciede2000": ciede2000(pred, truth), "colorfulness": colorfulness(pred),
    }


class Tally:
    """Running sums of per-frame metrics, per-image rows, and per-video CDCs, for each row."""

    def __init__(self) -> None:
        self.sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.cdc: dict[str, list[float]] = defaultdict(list)
        self.counts: dict[str, int] = defaultdict(int)  # frames behind each row's sums
        self.images: list[dict] = []
        self.n = 0

    def add_frames(self, truth: torch.Tensor, predictions: dict[str, torch.Tensor]) -> list[dict[str, dict[str, float]]]:
        """Adds frames; returns their scores, ``[{row: {metric: value}}]``.

        Args:
            truth, each prediction: RGB (B, 3, H, W) in [0, 1].
        """
        scores: list[dict[str, dict[str, float]]] = [{} for _ in range(truth.shape[0])]
        self.n += truth.shape[0]
        for row in (*predictions, TRUTH):
            self.counts[row] += truth.shape[0]
        for row, rgb in predictions.items():
            for frame_score, pred_frame, true_frame in zip(scores, rgb, truth):
                frame_score[row] = frame_scores(pred_frame, true_frame)
                for metric, value in frame_score[row].items():
                    self.sums[row][metric] += value
        for frame_score, true_frame in zip(scores, truth):
            frame_score[TRUTH] = {"colorfulness": colorfulness(true_frame)}
            self.sums[TRUTH]["colorfulness"] += frame_score[TRUTH]["colorfulness"]
        return scores

    def add_image(self, path: str, truth: torch.Tensor, predictions: dict[str, torch.Tensor]) -> None:
        """Adds one image (truth (1, 3, H, W)) and keeps its scores as a per-image row."""
        self.images.append({"path": path, **self.add_frames(truth, predictions)[0]})

    def summary(self) -> dict:
        """{row: {metric: mean}} plus "n", rows with no frame metrics holding only CDC."""
        result: dict = {}
        for row in (MODEL, GRAY, UNSTABILIZED, TRUTH):
            values = {name: total / self.counts[row] for name, total in self.sums.get(row, {}).items()}
            if self.cdc.get(row):
                values["cdc"] = float(np.mean(self.cdc[row]))
            if values:
                result[row] = values
        result["n"] = self.n
        if self.images:
            result["images"] = self.images
        return result


def quantize(rgb: torch.Tensor) -> torch.Tensor:
    """Float RGB (B, 3, H, W) -> the 8-bit values a written file would hold, as float."""
    return to_float(to_uint8(rgb))


def predictions(
    colorizer: Colorizer, truth: torch.Tensor, stabilizer: ChromaStabilizer | None, hints: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Colourise the gray version of ``truth`` (B, 3, H, W) with the model, and as all-gray.

    With a stabilizer (videos) the model row is stabilised and the
    unstabilised output is reported too; the model runs once for both.
    ``hints``: optional hint channels at the render size (see ``Colorizer.hint_channels``).
    """
    lightness = colorizer.lightness(truth)
    ab = colorizer.predict_ab(lightness, hints)
    rows = {GRAY: colorizer.compose(lightness, torch.zeros_like(ab))}
    if stabilizer is None:
        rows[MODEL] = colorizer.compose(lightness, ab)
    else:
        rows[UNSTABILIZED] = colorizer.compose(lightness, ab)
        rows[MODEL] = colorizer.compose(lightness, stabilizer(colorizer.to_render_size(lightness), ab))
    return {row: quantize(rgb) for row, rgb in rows.items()}


def true_colour_hints(truth: torch.Tensor, count: int, seed: int) -> list[Hint]:
    """``count`` hints at random pixels of ``truth`` (3, H, W), each with the true colour there."""
    generator = torch.Generator().manual_seed(seed)
    height, width = truth.shape[-2:]
    ys = torch.randint(height, (count,), generator=generator).tolist()
    xs = torch.randint(width, (count,), generator=generator).tolist()
    rgb = (truth[:, ys, xs] * 255).round().to(torch.int64).T.tolist()
    return [Hint(x, y, tuple(colour)) for x, y, colour in zip(xs, ys, rgb)]


def evaluate_image(colorizer: Colorizer, path, tally: Tally, hint_points: int = 0, seed: int = 0) -> None:
    """Colourise the gray version of the image at ``path`` (with ``hint_points`` true-colour hints) and score it.

    Raises:
        ValueError: an unreadable image, or hints for a model that takes none.
    """
    truth = torch.from_numpy(load_rgb(path)).permute(2, 0, 1)[None]
    hints = None
    if hint_points:
        points = true_colour_hints(truth[0], hint_points, seed)
        hints = colorizer.hint_channels(points, tuple(truth.shape[-2:]))
    tally.add_image(str(path), truth, predictions(colorizer, truth, None, hints))


def evaluate_images(colorizer: Colorizer, paths, hint_points: int = 0) -> dict:
    """The summary (as ``Tally.summary``) of ``evaluate_image`` over image files, in order."""
    tally = Tally()
    for index, path in enumerate(paths):
        evaluate_image(colorizer, path, tally, hint_points, seed=index)
    return tally.summary()


@dataclass(frozen=True)
class VideoOptions:
    """How a film is read and stabilised: frames per batch, at most ``max_frames``
    (None: all), the stabiliser's strength, and ``on_frames(n)`` after each batch
    (a progress bar's ``update``)."""

    batch_size: int = 8
    max_frames: int | None = None
    temporal_strength: float = DEFAULT_STRENGTH
    on_frames: Callable[[int], object] = lambda n: None


def video_batches(path, options: VideoOptions) -> Iterator[torch.Tensor]:
    """A video's frames as RGB (B, 3, H, W) in [0, 1], ``batch_size`` at a time, up to ``max_frames``."""
    seen = 0
    for frames in iter_rgb_batches(path, options.batch_size):
        if options.max_frames is not None:
            frames = frames[: options.max_frames - seen]
        yield to_float(frames)
        seen += len(frames)
        options.on_frames(len(frames))
        if options.max_frames is not None and seen >= options.max_frames:
            break


def evaluate_video(colorizer: Colorizer, path, options: VideoOptions, tally: Tally) -> None:
    """Add a video's frames and its CDCs to ``tally``."""
    stabilizer = ChromaStabilizer(strength=options.temporal_strength)
    histograms: dict[str, list[np.ndarray]] = defaultdict(list)
    for truth in video_batches(path, options):
        rows = predictions(colorizer, truth, stabilizer)
        tally.add_frames(truth, rows)
        for row, rgb in {**rows, TRUTH: truth}.items():
            histograms[row].append(color_histograms(to_uint8(rgb)))
    for row, parts in histograms.items():
        stacked = np.concatenate(parts)
        if len(stacked) > 4:
            tally.cdc[row].append(color_distribution_consistency(stacked))


FLICKER_ROWS = [MODEL, UNSTABILIZED, GRAY]


def flicker_report(colorizer: Colorizer, path, options: VideoOptions) -> dict:
    """The no-truth flicker report (``FlickerMeter.report``) of the model's colourings of a film.

    Raises:
        ValueError: the file is not a readable video, or has no frames.
    """
    stabilizer = ChromaStabilizer(strength=options.temporal_strength)
    meter = FlickerMeter(stabilizer.settings)
    for rgb in video_batches(path, options):
        meter.add(colorizer.lightness(rgb), predictions(colorizer, rgb, stabilizer))
    if meter.frames == 0:
        raise ValueError(f"{path}: has no frames")
    return meter.report(MODEL)
