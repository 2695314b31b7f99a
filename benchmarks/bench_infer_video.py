"""Frames per second of ``sacolor-infer`` on a 640x272 film clip, and its flicker (CDC).

    python -m benchmarks.bench_infer_video [--frames 48] [--checkpoint DIR] [--render-size 128x256] [--plot flicker.png]

The clip is made here with PyAV from scikit-image photographs: a slow pan
across one photo, a cut to another, 24 fps, with an AAC tone. The script
times ``sacolor-infer`` with and without temporal stabilisation (the whole
command: decode, model, stabiliser, colour transfer, H.264 encode, audio copy),
after a first, separately timed call that also pays the process's one-off costs,
then runs ``sacolor-eval`` on the clip to report CDC with and without it and
PSNR against the all-gray baseline, and ``sacolor-eval --no-truth`` for the
flicker report that needs no colour original (``--plot`` keeps its PNG). A model whose colours barely flicker gives
the stabiliser little to do, so a stress test adds a random per-frame chroma
offset (``JITTER`` ab units, a flickery model) and reports, with the
stabiliser off and at several strengths, the CDC against nothing (RGB
histograms of the output alone) and the no-truth ab warp error of
``sacolor-eval --no-truth`` (``sacolor.evaluation.flicker``). It prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

from sacolor.cli.evaluate import main as evaluate
from sacolor.cli.infer import main as infer
from sacolor.colour import to_float, to_uint8
from sacolor.evaluation.flicker import FlickerMeter
from sacolor.evaluation.scoring import MODEL, quantize
from sacolor.inference.colorizer import Colorizer
from sacolor.inference.temporal import ChromaStabilizer, color_distribution_consistency, color_histograms
from sacolor.options import parse_size
from tests.media import write_video

WIDTH, HEIGHT, FPS, SAMPLE_RATE = 640, 272, 24, 44100
JITTER = 6.0
STRENGTHS = (0.5, 0.7, 0.85)


def film_frames(count: int) -> list[np.ndarray]:
    """A pan across the coffee photo, then a cut to a pan across the rocket photo."""
    frames = []
    for index in range(count):
        first_half = index < count // 2
        photo = Image.fromarray(data.coffee() if first_half else data.rocket())
        scale = (WIDTH + 4 * count) / photo.width
        photo = np.asarray(photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.BICUBIC))
        step = index if first_half else index - count // 2
        frames.append(np.ascontiguousarray(photo[step : step + HEIGHT, 3 * step : 3 * step + WIDTH]))
    return frames


def flicker_stress(frames: list[np.ndarray], checkpoint: str | None, render_size: tuple[int, int] | None) -> dict[str, dict[str, float]]:
    """CDC and no-truth warp error of the model's output with a random per-frame ab offset, stabiliser off
    ("off") and at each of ``STRENGTHS`` ("strength_S")."""
    colorizer = Colorizer.from_checkpoint(checkpoint, "cpu", render_size)
    rgb = to_float(np.stack(frames))
    lightness = colorizer.lightness(rgb)
    ab = colorizer.predict_ab(lightness)
    ab = ab + JITTER * torch.randn(len(frames), 2, 1, 1, generator=torch.Generator().manual_seed(0))
    small = colorizer.to_render_size(lightness)
    result = {}
    for strength in (0.0, *STRENGTHS):
        output = quantize(colorizer.compose(lightness, ChromaStabilizer(strength=strength)(small, ab)))
        meter = FlickerMeter()
        meter.add(lightness, {MODEL: output})
        result["off" if strength == 0.0 else f"strength_{strength}"] = {
            "cdc": round(color_distribution_consistency(color_histograms(to_uint8(output))), 5),
            "warp_error": round(meter.report(MODEL)["total"][MODEL]["warp_error"], 3),
        }
    return result


def evaluate_json(argv: list[str]) -> dict:
    """What ``sacolor-eval ARGV --json --quiet`` prints."""
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        evaluate([*argv, "--json", "--quiet"])
    return json.loads(report.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--checkpoint", default=None, help="default: the built-in model")
    parser.add_argument("--render-size", default=None)
    parser.add_argument("--plot", default=None, metavar="PATH.png", help="keep sacolor-eval --no-truth's flicker plot of the clip")
    args = parser.parse_args()
    common = [] if args.checkpoint is None else ["--checkpoint", args.checkpoint]
    common += [] if args.render_size is None else ["--render-size", args.render_size]

    with tempfile.TemporaryDirectory() as scratch:
        clip = Path(scratch) / "film.mp4"
        seconds = np.arange(int(SAMPLE_RATE * args.frames / FPS)) / SAMPLE_RATE
        frames = film_frames(args.frames)
        write_video(clip, frames, fps=FPS, audio=(0.2 * np.sin(2 * np.pi * 440 * seconds)).astype(np.float32), sample_rate=SAMPLE_RATE)
        result = {"clip": f"{WIDTH}x{HEIGHT}, {args.frames} frames", "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count()}

        def timed_infer(name: str, flag: str) -> tuple[float, int]:
            """Seconds and exit status of ``sacolor-infer`` on the clip, written to ``name``.mp4."""
            started = time.perf_counter()
            status = infer([str(clip), "-o", str(Path(scratch) / f"{name}.mp4"), flag, "--quiet", *common])
            return time.perf_counter() - started, status

        # The first call in a process also reads the model and imports scipy (the flow): about 2 s, which on a
        # 2-second clip would be counted as frame time. It is timed on its own; the frame rates are the steady state.
        elapsed, status = timed_infer("first", "--temporal")
        result["seconds_first_call_temporal"] = round(elapsed, 2) if status == 0 else f"failed ({status})"
        for label, flag in (("temporal", "--temporal"), ("no_temporal", "--no-temporal")):
            elapsed, status = timed_infer(label, flag)
            result[f"fps_{label}"] = round(args.frames / elapsed, 2) if status == 0 else f"failed ({status})"
        result["eval"] = evaluate_json([str(clip), *common])
        plot = [] if args.plot is None else ["--plot", args.plot]
        (no_truth,) = evaluate_json(["--no-truth", str(clip), *plot, *common])["videos"]
        result["eval_no_truth"] = {key: no_truth[key] for key in ("scene_cuts", "worst_frames", "shots", "total")}
    result[f"cdc_with_chroma_jitter_{JITTER}"] = flicker_stress(frames, args.checkpoint, parse_size(args.render_size) if args.render_size else None)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
