"""``sacolor-eval``: how much colour the model adds, next to an all-gray guess.

    sacolor-eval held_out_photos/ [clip.mp4] [--json]
    sacolor-eval --no-truth old_film.mp4 [--json] [--plot flicker.png]

Each colour input is turned gray (its L), colourised, and compared with the
original: PSNR, SSIM, mean CIEDE2000 and colourfulness, and for videos TCVC's
CDC (frame-to-frame colour flicker), with and without temporal stabilisation.
The same is reported for the all-gray baseline (ab = 0, i.e. the gray input
itself), so a model that beats it demonstrably adds the right colour.
The scoring is ``sacolor.evaluation.scoring``, which the trainer's periodic
evaluation calls too, so ``metrics.jsonl`` and ``sacolor-eval`` agree on the
same images.

Films with no colour original get ``--no-truth``: a flicker report per shot
and in total (``flicker``: the ab warp error, the ab CDC, colourfulness) for
the same three colourings, with an optional PNG plot.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from ..attention.backends.registry import environment_backend
from ..evaluation.flicker import WARP_ERROR_UNITS, format_report, plot_report
from ..evaluation.scoring import (
    FLICKER_ROWS,
    GRAY,
    MODEL,
    PSNR_CAP_DB,
    TRUTH,
    UNSTABILIZED,
    Tally,
    VideoOptions,
    evaluate_image,
    evaluate_video,
    flicker_report,
)
from ..inference.colorizer import Colorizer
from ..inference.temporal import DEFAULT_STRENGTH
from ..io.paths import collect_sources, is_media, suffix_help
from .common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    add_model_arguments,
    positive_int,
    show_warnings_as_messages,
    strength,
)


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
        "--temporal-strength", type=strength, default=DEFAULT_STRENGTH, metavar="S",
        help="strength in [0, 1) of the temporal stabilisation of the model row for videos, as in sacolor-infer "
        f"(default {DEFAULT_STRENGTH:g}); the model_no_temporal row shows the same frames without it",
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
        "as a PNG (replaced if it exists; checked before any work); with several films, each gets PATH_<film name>.png, "
        "named by their folders too where two films share a name",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar; errors and the results are still printed")
    return parser


def video_options(args: argparse.Namespace, bar: tqdm) -> VideoOptions:
    """--batch-size, --max-frames and --temporal-strength, with ``bar`` counting the frames."""
    return VideoOptions(args.batch_size, args.max_frames, args.temporal_strength, bar.update)


def plot_targets(plot: str, videos: list[Path]) -> dict[Path, Path]:
    """Where ``--plot`` draws each film's plot: PATH itself for one film; with several, PATH_<film name>.png,
    the name made unique (by the film's folders, then a number) where two films share a name."""
    target = Path(plot)
    if len(videos) == 1:
        return {videos[0]: target}
    stems = [video.stem for video in videos]
    folders = Path(os.path.commonpath([video.resolve().parent for video in videos]))
    targets: dict[Path, Path] = {}
    for video in videos:
        name = video.stem
        if stems.count(name) > 1:
            name = "_".join(video.resolve().relative_to(folders).with_suffix("").parts)
        candidate, number = name, 1
        while target.with_name(f"{target.stem}_{candidate}.png") in targets.values():
            number += 1
            candidate = f"{name}_{number}"
        targets[video] = target.with_name(f"{target.stem}_{candidate}.png")
    return targets


def plot_problem(plot: str) -> str | None:
    """Why ``--plot PATH`` cannot be drawn, checked before any work (or None): matplotlib missing,
    no .png suffix, a folder, or a folder that does not exist or cannot be written to."""
    target = Path(plot)
    if importlib.util.find_spec("matplotlib") is None:
        return f"--plot needs matplotlib: pip install matplotlib (or leave out --plot {plot})"
    if target.is_dir() or plot.endswith(("/", os.sep)):
        return f"--plot {plot} is a folder; pass a file name such as {target / 'flicker.png'}"
    if target.suffix.lower() != ".png":
        return f"--plot {plot}: the plot is a PNG; pass a file name ending in .png, such as {target.with_suffix('.png')}"
    folder = target.parent
    if not folder.is_dir():
        return f"--plot {plot}: the folder {folder} does not exist; create it first"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"--plot {plot}: cannot write to the folder {folder}; check its permissions"
    return None


def report_flicker(colorizer: Colorizer, sources: list, problems: list[str], args: argparse.Namespace) -> int:
    """``--no-truth``: the flicker report of each film; returns the exit status."""
    videos = [source.path for source in sources if source.is_video]
    problems += [f"{s.path}: --no-truth reports flicker on films; give images without it" for s in sources if not s.is_video]
    reports = []
    plots = plot_targets(args.plot, videos) if args.plot else {}
    with tqdm(unit="frame", disable=args.quiet, desc="flicker") as bar:
        for video in videos:
            try:
                report = flicker_report(colorizer, video, video_options(args, bar))
            except (ValueError, OSError) as error:
                problems.append(str(error) if str(video) in str(error) else f"{video}: {error}")
                continue
            reports.append({"path": str(video), **report})
            if video in plots:  # a failed drawing loses the plot, never the report
                try:
                    plot_report(report, FLICKER_ROWS, MODEL, plots[video], video.name)
                except (ValueError, OSError, ImportError) as error:
                    problems.append(f"{video}: --plot {plots[video]}: cannot draw the plot ({error})")
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
    mismatch = no_truth_mismatch(args) or (plot_problem(args.plot) if args.plot else None)
    if mismatch:
        print(f"sacolor-eval: error: {mismatch}", file=sys.stderr)
        return EXIT_USAGE
    try:
        colorizer = Colorizer.from_checkpoint(
            args.checkpoint, args.device, args.render_size, args.chroma_gain, args.chroma_floor
        )
        environment_backend(colorizer.device)
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
                    evaluate_video(colorizer, source.path, video_options(args, bar), tally)
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
