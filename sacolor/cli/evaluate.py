"""``sacolor-eval``: how much colour the model adds, next to an all-gray guess.

    sacolor-eval held_out_photos/ [clip.mp4] [--json]
    sacolor-eval --no-truth old_film.mp4 [--json] [--plot flicker.png]

Each colour input is turned gray (its L), colourised, and compared with the
original: PSNR, SSIM, mean CIEDE2000 and colourfulness, and for videos TCVC's
CDC (frame-to-frame colour flicker), with and without temporal stabilisation.
The same is reported for the all-gray baseline (ab = 0, i.e. the gray input
itself), so a model that beats it demonstrably adds the right colour.
``evaluate_images`` is also what the trainer's periodic evaluation calls, so
``metrics.jsonl`` and ``sacolor-eval`` agree on the same images.

Films with no colour original get ``--no-truth``: a flicker report per shot
and in total (``flicker``: the ab warp error, the ab CDC, colourfulness) for
the same three colourings, with an optional PNG plot.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    add_model_arguments,
    positive_int,
    show_warnings_as_messages,
    strength,
)
from ..inference.colorizer import Colorizer, to_uint8
from ..io.images import load_rgb
from ..evaluation.flicker import FlickerMeter, WARP_ERROR_UNITS, format_report, plot_report
from ..io.paths import collect_sources, is_media, suffix_help
from ..inference.hints import Hint
from ..io.video import iter_rgb_batches
from ..evaluation.metrics import ciede2000, colorfulness, psnr, ssim
from ..inference.temporal import ChromaStabilizer, color_distribution_consistency, color_histograms

# Rows of the report: what each one colourises with.
MODEL, UNSTABILIZED, GRAY, TRUTH = "model", "model_no_temporal", "gray", "truth"
# An exact match (a gray "ground truth" against the gray baseline) has infinite
# PSNR; capping it keeps the means finite and the JSON valid.
PSNR_CAP_DB = 100.0


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``sacolor-eval``."""
    parser = argparse.ArgumentParser(
        prog="sacolor-eval",
        description="Evaluate colourisation on colour ground truth: each input is turned gray, colourised, and "
        "compared with the original (PSNR, SSIM, colourfulness; CDC for videos), next to the all-gray baseline. "
        "Films without a colour original get a flicker report instead (--no-truth).",
        epilog=f"Rows: {MODEL} (the model; temporally stabilised for videos), {UNSTABILIZED} (videos: the model "
        f"without stabilisation), {GRAY} (ab = 0, the baseline to beat), {TRUTH} (the inputs' own colourfulness and "
        f"CDC). PSNR (dB, capped at {PSNR_CAP_DB:g}) and SSIM are against the input, higher is better; ciede2000 is "
        f"the mean CIEDE2000 colour difference from it, lower is better (about 1 is just noticeable); CDC is "
        f"frame-to-frame colour flicker, lower is steadier. {suffix_help()} Exit status: {EXIT_OK} when every input "
        f"was evaluated, {EXIT_SOME_FAILED} when some could not be (each is reported by name) or nothing could, "
        f"{EXIT_USAGE} for bad options or an unusable checkpoint or device.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="colour images or videos (the ground truth): files, folders (searched recursively) or glob patterns "
        "(quote them; ** recurses); with --no-truth, films (gray or colour)",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--batch-size", type=positive_int, default=8, metavar="N",
        help="video frames per model call (default 8); images go one at a time",
    )
    parser.add_argument(
        "--max-frames", type=positive_int, default=None, metavar="N",
        help="evaluate only the first N frames of each video (default: all)",
    )
    parser.add_argument(
        "--temporal-strength", type=strength, default=0.7, metavar="S",
        help="strength in [0, 1) of the temporal stabilisation of the model row for videos, as in sacolor-infer "
        "(default 0.7); the model_no_temporal row shows the same frames without it",
    )
    parser.add_argument(
        "--json", action="store_true",
        help='print one JSON object instead of the table: {"model": {"psnr": ..., ...}, "gray": {...}, "n": ..., '
        '"images": [{"path": ..., "model": {...}, "gray": {...}}, ...]}, with the model_no_temporal and truth rows '
        "too when there are videos",
    )
    parser.add_argument(
        "--hint-points", type=int, default=0, metavar="N",
        help="give the model N colour hints per image, at random pixels (seeded by the image's position in the "
        "list) with the true colour there, as a user who knows some colours would (default 0: automatic; needs "
        "a model that takes hints)",
    )
    parser.add_argument(
        "--no-truth", action="store_true",
        help="the inputs are films without a colour original (gray or colour, only their L is used): report "
        f"flicker instead, per shot and in total, for the {MODEL}, {UNSTABILIZED} and {GRAY} rows: the ab warp error "
        f"(Lai et al. 2018: frame t+1's ab warped back onto frame t by optical flow on the input's L, occluded "
        f"pixels left out; {WARP_ERROR_UNITS}), the CDC of the ab histograms, and colourfulness; lower warp "
        "error and CDC are steadier. With --json: {\"videos\": [{\"path\": ..., \"shots\": [...], \"total\": {...}, "
        "\"scene_cuts\": [...], \"worst_frames\": [...], \"warp_error_per_frame\": {...}}, ...]}",
    )
    parser.add_argument(
        "--plot", metavar="PATH.png",
        help="with --no-truth, also draw each film's per-frame warp error, scene cuts and worst frames marked, "
        "as a PNG (replaced if it exists); with several films, each gets PATH_<film name>.png",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar; errors and the results are still printed")
    return parser


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
    return torch.from_numpy(to_uint8(rgb)).permute(0, 3, 1, 2).float() / 255.0


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


def video_batches(path, args: argparse.Namespace, bar: tqdm) -> Iterator[torch.Tensor]:
    """A video's frames as RGB (B, 3, H, W) in [0, 1], ``--batch-size`` at a time, up to ``--max-frames``."""
    seen = 0
    for frames in iter_rgb_batches(path, args.batch_size):
        if args.max_frames is not None:
            frames = frames[: args.max_frames - seen]
        yield torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        seen += len(frames)
        bar.update(len(frames))
        if args.max_frames is not None and seen >= args.max_frames:
            break


def evaluate_video(colorizer: Colorizer, path, args: argparse.Namespace, tally: Tally, bar: tqdm) -> None:
    """Add a video's frames and its CDCs to ``tally``."""
    stabilizer = ChromaStabilizer(strength=args.temporal_strength)
    histograms: dict[str, list[np.ndarray]] = defaultdict(list)
    for truth in video_batches(path, args, bar):
        rows = predictions(colorizer, truth, stabilizer)
        tally.add_frames(truth, rows)
        for row, rgb in {**rows, TRUTH: truth}.items():
            histograms[row].append(color_histograms(to_uint8(rgb)))
    for row, parts in histograms.items():
        stacked = np.concatenate(parts)
        if len(stacked) > 4:
            tally.cdc[row].append(color_distribution_consistency(stacked))


FLICKER_ROWS = [MODEL, UNSTABILIZED, GRAY]


def flicker_report(colorizer: Colorizer, path, args: argparse.Namespace, bar: tqdm) -> dict:
    """The no-truth flicker report (``FlickerMeter.report``) of the model's colourings of a film.

    Raises:
        ValueError: the file is not a readable video, or has no frames.
    """
    stabilizer = ChromaStabilizer(strength=args.temporal_strength)
    meter = FlickerMeter(stabilizer.settings)
    for rgb in video_batches(path, args, bar):
        meter.add(colorizer.lightness(rgb), predictions(colorizer, rgb, stabilizer))
    if meter.frames == 0:
        raise ValueError(f"{path}: has no frames")
    return meter.report(MODEL)


def plot_target(plot: str, video: Path, several: bool) -> Path:
    """Where ``--plot`` draws ``video``'s plot: PATH itself, or PATH_<video name>.png with several films."""
    target = Path(plot)
    return target.with_name(f"{target.stem}_{video.stem}.png") if several else target


def report_flicker(colorizer: Colorizer, sources: list, problems: list[str], args: argparse.Namespace) -> int:
    """``--no-truth``: the flicker report of each film; returns the exit status."""
    videos = [source.path for source in sources if source.is_video]
    problems += [f"{s.path}: --no-truth reports flicker on films; give images without it" for s in sources if not s.is_video]
    reports = []
    with tqdm(unit="frame", disable=args.quiet, desc="flicker") as bar:
        for video in videos:
            try:
                report = flicker_report(colorizer, video, args, bar)
                if args.plot:
                    plot_report(report, FLICKER_ROWS, MODEL, plot_target(args.plot, video, len(videos) > 1), video.name)
            except (ValueError, OSError, ImportError) as error:
                problems.append(str(error) if str(video) in str(error) else f"{video}: {error}")
                continue
            reports.append({"path": str(video), **report})
    for problem in problems:
        print(f"sacolor-eval: error: {problem}", file=sys.stderr)
    if not reports:
        print("sacolor-eval: error: no film could be evaluated", file=sys.stderr)
        return EXIT_SOME_FAILED
    if args.json:
        print(json.dumps({"videos": reports}))
    else:
        print("\n\n".join(f"{r['path']}: " + format_report(r, FLICKER_ROWS) for r in reports))
    return EXIT_SOME_FAILED if problems else EXIT_OK


def no_truth_mismatch(args: argparse.Namespace) -> str | None:
    """What is wrong with the combination of --no-truth and the options of one mode only, if anything."""
    if args.plot and not args.no_truth:
        return "--plot draws the --no-truth flicker report; add --no-truth"
    if args.no_truth and args.hint_points:
        return "--hint-points needs the colour original for its hints' colours; it does not go with --no-truth"
    return None


def format_table(summary: dict) -> str:
    """The summary as an aligned text table."""
    columns = ["psnr", "ssim", "ciede2000", "colorfulness", "cdc"]
    rows = [row for row in (MODEL, UNSTABILIZED, GRAY, TRUTH) if row in summary]
    used = [c for c in columns if any(c in summary[row] for row in rows)]
    lines = [f"{'':18}" + "".join(f"{c:>14}" for c in used)]
    for row in rows:
        cells = "".join(f"{summary[row][c]:>14.4f}" if c in summary[row] else f"{'':>14}" for c in used)
        lines.append(f"{row:18}{cells}")
    lines.append(f"n = {summary['n']} images/frames")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sacolor-eval``; returns the exit status."""
    args = build_parser().parse_args(argv)
    show_warnings_as_messages("sacolor-eval")
    mismatch = no_truth_mismatch(args)
    if mismatch:
        print(f"sacolor-eval: error: {mismatch}", file=sys.stderr)
        return EXIT_USAGE
    try:
        colorizer = Colorizer.from_checkpoint(args.checkpoint, args.device, args.render_size)
    except (FileNotFoundError, ValueError) as error:
        print(f"sacolor-eval: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    sources, problems = collect_sources(args.inputs)
    for source in sources:
        if not is_media(source.path):
            problems.append(f"{source.path}: unsupported file type {source.path.suffix!r}")
    sources = [s for s in sources if is_media(s.path)]
    if args.no_truth:
        return report_flicker(colorizer, sources, problems, args)
    tally = Tally()
    if args.hint_points < 0:
        print("sacolor-eval: error: --hint-points must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    if args.hint_points and not colorizer.accepts_hints:
        print("sacolor-eval: error: --hint-points: this model takes no colour hints; use a checkpoint of "
              "--netG efficientnet_unet", file=sys.stderr)
        return EXIT_USAGE
    with tqdm(unit="frame", disable=args.quiet, desc="evaluating") as bar:
        for index, source in enumerate(sources):
            try:
                if source.is_video:
                    evaluate_video(colorizer, source.path, args, tally, bar)
                else:
                    evaluate_image(colorizer, source.path, tally, args.hint_points, seed=index)
                    bar.update(1)
            except ValueError as error:
                problems.append(str(error) if str(source.path) in str(error) else f"{source.path}: {error}")
    for problem in problems:
        print(f"sacolor-eval: error: {problem}", file=sys.stderr)
    if tally.n == 0:
        print("sacolor-eval: error: nothing could be evaluated", file=sys.stderr)
        return EXIT_SOME_FAILED
    summary = tally.summary()
    print(json.dumps(summary) if args.json else format_table(summary))
    return EXIT_SOME_FAILED if problems else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
