"""``sacolor-eval``: how much colour the model adds, next to an all-gray guess.

    sacolor-eval held_out_photos/ [clip.mp4] [--json]

Each colour input is turned gray (its L), colourised, and compared with the
original: PSNR, SSIM and colourfulness, and for videos TCVC's CDC (frame-to-
frame colour flicker), with and without temporal stabilisation. The same is
reported for the all-gray baseline (ab = 0, i.e. the gray input itself), so a
model that beats it demonstrably adds the right colour.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from .cli import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    add_model_arguments,
    positive_int,
    show_warnings_as_messages,
    strength,
)
from .colorizer import Colorizer, to_uint8
from .io.images import load_rgb
from .io.paths import collect_sources, is_media, suffix_help
from .io.video import iter_rgb_batches
from .metrics import colorfulness, psnr, ssim
from .temporal import ChromaStabilizer, color_distribution_consistency, color_histograms

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
        "compared with the original (PSNR, SSIM, colourfulness; CDC for videos), next to the all-gray baseline.",
        epilog=f"Rows: {MODEL} (the model; temporally stabilised for videos), {UNSTABILIZED} (videos: the model "
        f"without stabilisation), {GRAY} (ab = 0, the baseline to beat), {TRUTH} (the inputs' own colourfulness and "
        f"CDC). PSNR (dB, capped at {PSNR_CAP_DB:g}) and SSIM are against the input, higher is better; CDC is "
        f"frame-to-frame colour flicker, lower is steadier. {suffix_help()} Exit status: {EXIT_OK} when every input "
        f"was evaluated, {EXIT_SOME_FAILED} when some could not be (each is reported by name) or nothing could, "
        f"{EXIT_USAGE} for bad options or an unusable checkpoint or device.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="colour images or videos (the ground truth): files, folders (searched recursively) or glob patterns "
        "(quote them; ** recurses)",
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
        help='print one JSON object instead of the table: {"model": {"psnr": ..., ...}, "gray": {...}, "n": ...}, '
        "with the model_no_temporal and truth rows too when there are videos",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar; errors and the results are still printed")
    return parser


class Tally:
    """Running sums of per-frame metrics, and per-video CDCs, for each row."""

    def __init__(self) -> None:
        self.sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.cdc: dict[str, list[float]] = defaultdict(list)
        self.counts: dict[str, int] = defaultdict(int)  # frames behind each row's sums
        self.n = 0

    def add_frames(self, truth: torch.Tensor, predictions: dict[str, torch.Tensor]) -> None:
        """truth and each prediction: RGB (B, 3, H, W) in [0, 1]."""
        count = truth.shape[0]
        self.n += count
        for row in (*predictions, TRUTH):
            self.counts[row] += count
        for row, rgb in predictions.items():
            for pred_frame, true_frame in zip(rgb, truth):
                self.sums[row]["psnr"] += min(psnr(pred_frame, true_frame), PSNR_CAP_DB)
                self.sums[row]["ssim"] += ssim(pred_frame, true_frame)
            self.sums[row]["colorfulness"] += colorfulness(rgb) * count
        self.sums[TRUTH]["colorfulness"] += colorfulness(truth) * count

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
        return result


def quantize(rgb: torch.Tensor) -> torch.Tensor:
    """Float RGB (B, 3, H, W) -> the 8-bit values a written file would hold, as float."""
    return torch.from_numpy(to_uint8(rgb)).permute(0, 3, 1, 2).float() / 255.0


def predictions(colorizer: Colorizer, truth: torch.Tensor, stabilizer: ChromaStabilizer | None) -> dict[str, torch.Tensor]:
    """Colourise the gray version of ``truth`` (B, 3, H, W) with the model, and as all-gray.

    With a stabilizer (videos) the model row is stabilised and the
    unstabilised output is reported too; the model runs once for both.
    """
    lightness = colorizer.lightness(truth)
    ab = colorizer.predict_ab(lightness)
    rows = {GRAY: colorizer.compose(lightness, torch.zeros_like(ab))}
    if stabilizer is None:
        rows[MODEL] = colorizer.compose(lightness, ab)
    else:
        rows[UNSTABILIZED] = colorizer.compose(lightness, ab)
        rows[MODEL] = colorizer.compose(lightness, stabilizer(colorizer.to_render_size(lightness), ab))
    return {row: quantize(rgb) for row, rgb in rows.items()}


def evaluate_video(colorizer: Colorizer, path, args: argparse.Namespace, tally: Tally, bar: tqdm) -> None:
    """Add a video's frames and its CDCs to ``tally``."""
    stabilizer = ChromaStabilizer(strength=args.temporal_strength)
    histograms: dict[str, list[np.ndarray]] = defaultdict(list)
    seen = 0
    for frames in iter_rgb_batches(path, args.batch_size):
        if args.max_frames is not None:
            frames = frames[: args.max_frames - seen]
        truth = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        rows = predictions(colorizer, truth, stabilizer)
        tally.add_frames(truth, rows)
        for row, rgb in {**rows, TRUTH: truth}.items():
            histograms[row].append(color_histograms(to_uint8(rgb)))
        seen += len(frames)
        bar.update(len(frames))
        if args.max_frames is not None and seen >= args.max_frames:
            break
    for row, parts in histograms.items():
        stacked = np.concatenate(parts)
        if len(stacked) > 4:
            tally.cdc[row].append(color_distribution_consistency(stacked))


def format_table(summary: dict) -> str:
    """The summary as an aligned text table."""
    columns = ["psnr", "ssim", "colorfulness", "cdc"]
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
    tally = Tally()
    with tqdm(unit="frame", disable=args.quiet, desc="evaluating") as bar:
        for source in sources:
            try:
                if source.is_video:
                    evaluate_video(colorizer, source.path, args, tally, bar)
                else:
                    truth = torch.from_numpy(load_rgb(source.path)).permute(2, 0, 1)[None]
                    tally.add_frames(truth, predictions(colorizer, truth, None))
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
