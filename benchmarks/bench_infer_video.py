"""Frames per second of ``sacolor-infer`` on a 640x272 film clip, and its flicker (CDC).

    python benchmarks/bench_infer_video.py [--frames 48] [--checkpoint DIR] [--render-size 128x256]

The clip is made here with PyAV from scikit-image photographs: a slow pan
across one photo, a cut to another, 24 fps, with an AAC tone. The script
times ``sacolor-infer`` with and without temporal stabilisation (the whole
command: decode, model, stabiliser, colour transfer, H.264 encode, audio copy),
then runs ``sacolor-eval`` on the clip to report CDC with and without it and
PSNR against the all-gray baseline. It prints one JSON object.
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

from sacolor.evaluate import main as evaluate
from sacolor.infer import main as infer
from sacolor.video import write_video

WIDTH, HEIGHT, FPS, SAMPLE_RATE = 640, 272, 24, 44100


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--checkpoint", default=None, help="default: the built-in model")
    parser.add_argument("--render-size", default=None)
    args = parser.parse_args()
    common = [] if args.checkpoint is None else ["--checkpoint", args.checkpoint]
    common += [] if args.render_size is None else ["--render-size", args.render_size]

    with tempfile.TemporaryDirectory() as scratch:
        clip = Path(scratch) / "film.mp4"
        seconds = np.arange(int(SAMPLE_RATE * args.frames / FPS)) / SAMPLE_RATE
        write_video(clip, film_frames(args.frames), fps=FPS, audio=(0.2 * np.sin(2 * np.pi * 440 * seconds)).astype(np.float32), sample_rate=SAMPLE_RATE)
        result = {"clip": f"{WIDTH}x{HEIGHT}, {args.frames} frames", "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count()}
        for label, flag in (("temporal", "--temporal"), ("no_temporal", "--no-temporal")):
            started = time.perf_counter()
            status = infer([str(clip), "-o", str(Path(scratch) / f"{label}.mp4"), flag, "--quiet", *common])
            elapsed = time.perf_counter() - started
            result[f"fps_{label}"] = round(args.frames / elapsed, 2) if status == 0 else f"failed ({status})"
        report = io.StringIO()
        with contextlib.redirect_stdout(report):
            evaluate([str(clip), "--json", "--quiet", *common])
        result["eval"] = json.loads(report.getvalue())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
