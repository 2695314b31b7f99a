"""``sacolor-infer``: colourise photos, folders and films.

    sacolor-infer old_photo.jpg -o colour.jpg
    sacolor-infer scans/ film.mp4 "more/**/*.png" -o out/
    sacolor-infer film.mp4 -o colour.mp4 --hints hints.json

Each output keeps its input's resolution and luminance (only the model's
chroma is used) and its name. Outputs are written to a temporary file and
renamed, so an interrupted or failed run leaves no half-written file; an
existing output is kept unless ``--overwrite`` is given. A bad input is
reported by name and skipped; the exit status is 1 if any input failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..attention.backends.registry import environment_backend
from ..inference.colorizer import Colorizer
from ..inference.film import FilmHint, colorize_film, load_film_hints
from ..inference.hints import parse_hint
from ..inference.photo import colorize_photo
from ..inference.temporal import DEFAULT_STRENGTH, ChromaStabilizer, color_distribution_consistency, color_histograms
from ..io.images import save_rgb
from ..io.paths import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    Source,
    atomic_output,
    collect_sources,
    is_media,
    suffix_help,
)
from ..io.video import probe
from .common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    add_model_arguments,
    positive_int,
    show_warnings_as_messages,
    strength,
)

@dataclass(frozen=True)
class Job:
    """One input and the output path it becomes."""

    source: Source
    output: Path


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``sacolor-infer``."""
    parser = argparse.ArgumentParser(
        prog="sacolor-infer",
        description="Colourise black-and-white photos and films. The model predicts colour at "
        "--render-size; each output keeps its input's own resolution, detail and luminance.",
        epilog=f"{suffix_help()} Exit status: {EXIT_OK} when every input was colourised, {EXIT_SOME_FAILED} when "
        f"some failed (each is reported by name), {EXIT_USAGE} for bad options or an unusable checkpoint or device, "
        f"{EXIT_INTERRUPTED} when interrupted (Ctrl-C; the output in progress is not written).",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="image or video files, folders (searched recursively) or glob patterns (quote them; ** recurses). "
        "Colour inputs are treated as gray.",
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="PATH",
        help="output file (one input file; its suffix picks the format) or folder (created if missing; outputs "
        "keep the inputs' names and formats, folder inputs keep their sub-folders)",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--batch-size", type=positive_int, default=8, metavar="N",
        help="video frames per model call (default 8); photos go one at a time; lower it if memory runs out",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist (default: skip them with an error)")
    parser.add_argument(
        "--temporal", action=argparse.BooleanOptionalAction, default=True,
        help="suppress colour flicker in videos by blending in the previous frame's colour, warped by optical "
        "flow (default on; --no-temporal turns it off)",
    )
    parser.add_argument(
        "--temporal-strength", type=strength, default=DEFAULT_STRENGTH, metavar="S",
        help=f"with --temporal, weight of the previous frame's colour in [0, 1) (default {DEFAULT_STRENGTH:g}); higher is steadier "
        "but slower to follow real changes",
    )
    parser.add_argument(
        "--hint", action="append", default=[], metavar="X,Y,#RRGGBB",
        help="a colour hint: the pixel X,Y (from the top-left, in the input's pixels) is this colour; the model "
        "colours the region around it to match (its lightness stays the input's). In a video it applies from the "
        "first frame and follows the point through the shot (see --hints). Repeatable. Needs a model that takes "
        "hints (the built-in one does)",
    )
    parser.add_argument(
        "--hints", metavar="FILE.json",
        help='colour hints from a JSON file: [{"x": 120, "y": 40, "color": "#3366cc"}, ...], as --hint. For '
        'videos an entry may also give "frame": N (0 = the first) or "time": SECONDS, where it starts (default '
        'frame 0), and "id": NAME, so that a later entry with the same id replaces it. A video hint holds from its '
        "frame on: its point is carried frame to frame by the optical flow on L, dropped where the flow fails "
        "(occlusion) or it leaves the frame, and cleared at a scene cut. Entries with a later frame or a time "
        "apply to videos only",
    )
    parser.add_argument(
        "--quiet", action="store_true",
        help="no progress bars, per-video flicker (CDC) lines or final count; errors are still printed",
    )
    return parser


def read_hints(args: argparse.Namespace) -> list[FilmHint]:
    """The hints of --hint (from a video's first frame) and --hints together.

    Raises:
        ValueError / FileNotFoundError: a malformed hint or hints file (named).
    """
    hints = [FilmHint(parse_hint(text), source=f"--hint {text}") for text in args.hint]
    if args.hints:
        hints += load_film_hints(args.hints)
    return hints


def plan_jobs(sources: list[Source], output: str, overwrite: bool) -> tuple[list[Job], list[str]]:
    """Map sources to output paths.

    The output is a single file when there is exactly one source, named
    directly (not found in a folder), and ``output`` has a suffix and is not an
    existing folder; otherwise ``output`` is a folder.

    Returns:
        (jobs, problems): problems name sources whose output is the source itself,
        exists (without ``overwrite``), clashes with another's, or has the wrong
        kind of suffix.
    """
    out = Path(output)
    single_file = (
        len(sources) == 1 and not sources[0].from_folder and out.suffix != ""
        and not out.is_dir() and not output.endswith(("/", os.sep))
    )
    jobs: list[Job] = []
    problems: list[str] = []
    taken: dict[Path, Path] = {}
    for source in sources:
        target = out if single_file else out / source.relative
        allowed = VIDEO_SUFFIXES if source.is_video else IMAGE_SUFFIXES
        key = target.resolve()
        if not is_media(source.path):
            problems.append(
                f"{source.path}: unsupported file type {source.path.suffix!r}; "
                f"images: {' '.join(sorted(IMAGE_SUFFIXES))}; videos: {' '.join(sorted(VIDEO_SUFFIXES))}"
            )
        elif target.suffix.lower() not in allowed:
            kind = "video" if source.is_video else "image"
            problems.append(f"{source.path}: output {target} needs a {kind} suffix such as {'.mp4' if source.is_video else '.png'}")
        elif key == source.path.resolve() or (target.exists() and os.path.samefile(target, source.path)):
            problems.append(
                f"{source.path}: output {target} is the input itself, which is never replaced (not even with "
                "--overwrite); pass another -o"
            )
        elif key in taken:
            problems.append(f"{source.path}: output {target} would also be written by {taken[key]}; rename one input")
        elif target.exists() and not overwrite:
            problems.append(f"{source.path}: output {target} already exists; pass --overwrite to replace it")
        else:
            taken[key] = source.path
            jobs.append(Job(source, target))
    return jobs, problems


def file_target_problem(sources: list[Source], output: str) -> str | None:
    """Why ``-o`` cannot take these sources, or None: a target named like an image or
    video file (not an existing folder) takes exactly one input file."""
    out = Path(output)
    looks_like_file = is_media(out) and not out.is_dir() and not output.endswith(("/", os.sep))
    if not looks_like_file or (len(sources) == 1 and not sources[0].from_folder):
        return None
    what = f"{len(sources)} inputs need" if len(sources) != 1 else "an input found in a folder needs"
    return f"-o {output} names a file, but {what} a folder; pass a folder such as -o {out.with_suffix('')}/"


# What colourising one input can raise without the others being affected: unreadable or
# unwritable files, a backend that refuses (ValueError/NotImplementedError), out of memory.
INPUT_ERRORS = (ValueError, OSError, RuntimeError, MemoryError)


def describe(error: BaseException, path: Path) -> str:
    """One line for a failed input: the error's message, starting with the input's name."""
    message = str(error) or type(error).__name__
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)) and "memory" not in message:
        message = f"out of memory ({message}); lower --batch-size, free memory or use a smaller input"
    return message if str(path) in message else f"{path}: {message}"


class Runner:
    """Runs jobs with one colouriser, reporting failures by input name."""

    def __init__(self, colorizer: Colorizer, args: argparse.Namespace, hints: Sequence[FilmHint] = ()) -> None:
        self.colorizer = colorizer
        self.args = args
        self.film_hints = list(hints)
        self.hints = [film_hint.hint for film_hint in hints]
        self.failures = 0
        self.done = 0

    def fail(self, message: str) -> None:
        self.failures += 1
        print(f"sacolor-infer: error: {message}", file=sys.stderr)

    def run_images(self, jobs: list[Job]) -> None:
        """Colourise photos one at a time, each at its own aspect ratio and in strips at its full resolution
        (see ``sacolor.inference.photo``)."""
        with tqdm(total=len(jobs), unit="img", disable=self.args.quiet or not jobs, desc="images") as bar:
            for job in jobs:
                try:
                    pixels = colorize_photo(self.colorizer, job.source.path, self.hints)
                    with atomic_output(job.output, self.args.overwrite) as temporary:
                        save_rgb(temporary, pixels)
                    self.done += 1
                except INPUT_ERRORS as error:
                    self.fail(describe(error, job.source.path))
                bar.update(1)

    def run_video(self, job: Job) -> None:
        """Colourise one video, frame batches through the model, audio copied."""
        stabilizer = ChromaStabilizer(strength=self.args.temporal_strength) if self.args.temporal else None
        histograms = []
        try:
            total = probe(job.source.path).frames
            with tqdm(total=total, unit="frame", disable=self.args.quiet, desc=job.source.path.name) as bar:
                with atomic_output(job.output, self.args.overwrite) as temporary:
                    frames = colorize_film(
                        self.colorizer, job.source.path, temporary, self.film_hints, stabilizer, self.args.batch_size,
                        on_frames=bar.update, on_colored=lambda _, colored: histograms.append(color_histograms(colored)),
                    )
        except INPUT_ERRORS as error:
            self.fail(describe(error, job.source.path))
            return
        self.done += 1
        stacked = np.concatenate(histograms) if histograms else np.zeros((0, 3, 256))
        if not self.args.quiet and len(stacked) > 4:
            cdc = color_distribution_consistency(stacked)
            mode = "on" if stabilizer is not None else "off"
            print(f"{job.output}: {frames} frames, CDC {cdc:.5f} (temporal stabilisation {mode}; lower is steadier)", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sacolor-infer``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    show_warnings_as_messages(parser.prog)
    sources, problems = collect_sources(args.inputs)
    target_problem = file_target_problem(sources, args.output)
    if target_problem is not None:
        print(f"sacolor-infer: error: {target_problem}", file=sys.stderr)
        return EXIT_USAGE
    jobs, output_problems = plan_jobs(sources, args.output, args.overwrite)
    try:
        hints = read_hints(args)
        colorizer = Colorizer.from_checkpoint(
            args.checkpoint, args.device, args.render_size, args.chroma_gain, args.chroma_floor
        )
        environment_backend(colorizer.device)
        if hints and not colorizer.accepts_hints:
            raise ValueError("--hint/--hints: this model takes no colour hints; use a checkpoint of --netG "
                             "efficientnet_unet (the built-in model is one)")
        later = next((hint for hint in hints if hint.frame != 0), None)
        if later is not None and any(not job.source.is_video for job in jobs):
            raise ValueError(f"{later.source}: starts at a later frame or time, which only videos have; "
                             "give the images in a separate run")
    except (FileNotFoundError, ValueError) as error:
        print(f"sacolor-infer: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    runner = Runner(colorizer, args, hints)
    for problem in problems + output_problems:
        runner.fail(problem)
    try:
        runner.run_images([job for job in jobs if not job.source.is_video])
        for job in jobs:
            if job.source.is_video:
                runner.run_video(job)
    except KeyboardInterrupt:  # the output in progress is removed on the way out (atomic_output)
        finished = f" ({runner.done} output(s) finished before it are kept)" if runner.done else ""
        print(f"sacolor-infer: interrupted; nothing written for the input in progress{finished}", file=sys.stderr)
        return EXIT_INTERRUPTED
    total = runner.done + runner.failures
    if not args.quiet:
        print(f"sacolor-infer: colourised {runner.done} of {total} inputs", file=sys.stderr)
    return EXIT_SOME_FAILED if runner.failures else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
