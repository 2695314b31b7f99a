"""One training step with attention on a 128x128 map, float32 against bf16, and the attention's share.

    python -m benchmarks.bench_train_step [--steps 3] [--batch-size 4] [--threads T] [--out FILE]

Runs ``sacolor.training.step.train_step`` (what ``sacolor-train`` runs each
step: a discriminator update, then the generator's) on the options of

    sacolor-train --netG efficientnet_unet --size 256x256 --sa-sizes 128 --no-pretrained
                  --batch-size B --num-workers 0 [--amp]

that is, self-attention after the generator's stride-2 decoder stage: a
128x128 map (N = 16 384 positions, C = 32), rendered at 256x256. ``--amp``
on CPU is bf16 autocast with float32 master weights, so the attention runs
the cpu kernel's bf16 tiles (AMX or vdpbf16ps where the CPU has them). The
photos are random images written to a temporary folder; one batch is loaded
once and reused, so data loading is not timed (--no-pretrained only skips
loading weights: the step's work is the same).

Reported per precision: the best step time over --steps (wall clock, after
a warm-up step), and the attention's share of a profiled step: the time
torch.profiler attributes to sacolor::self_attention and
sacolor::self_attention_backward (children included) over that step's time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile

from sacolor.attention.backends.cpu import kernel_path
from sacolor.cli.train import parse_config
from sacolor.training import build_run, train_step

ATTENTION_OPS = ("sacolor::self_attention", "sacolor::self_attention_backward")


def _write_photos(folder: Path, count: int) -> None:
    gen = np.random.default_rng(0)
    for i in range(count):
        # Smooth random colour fields (noise upsampled), not white noise: JPEG-friendly, photo-like spectra.
        small = gen.integers(0, 256, (9, 9, 3), dtype=np.uint8)
        Image.fromarray(small).resize((300, 300), Image.BICUBIC).save(folder / f"photo_{i:02d}.jpg", quality=90)


def _argv(data: Path, checkpoints: Path, batch_size: int, amp: bool) -> list[str]:
    return ["--data", str(data), "--checkpoints-dir", str(checkpoints), "--netG", "efficientnet_unet",
            "--size", "256x256", "--sa-sizes", "128", "--no-pretrained", "--batch-size", str(batch_size),
            "--num-workers", "0", *(["--amp"] if amp else [])]


def measure(argv: list[str], steps: int) -> dict[str, float]:
    """Best step seconds (wall) and the attention's share of one profiled step's CPU time."""
    run = build_run(parse_config(argv))
    batch = next(iter(run.loader))
    train_step(run, batch)  # warm-up: allocations, thread start-up, oneDNN kernel generation
    best = float("inf")
    for _ in range(steps):
        start = time.perf_counter()
        train_step(run, batch)
        best = min(best, time.perf_counter() - start)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        train_step(run, batch)
        step = time.perf_counter() - start
    # The profiler's op times are elapsed (wall) times on the calling thread, children included.
    attention_us = sum(e.cpu_time_total for e in prof.key_averages() if e.key in ATTENTION_OPS)
    return {"step_s": best, "attention_share": attention_us * 1e-6 / step}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per precision (default 3)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per step (default 4)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads first")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    header = (f"sacolor-train step, efficientnet_unet, 256x256 render, attention on 128x128 (C = 32), "
              f"batch {args.batch_size}, {torch.get_num_threads()} threads, cpu kernels "
              f"{kernel_path(torch.float32)} (float32) / {kernel_path(torch.bfloat16)} (bf16); "
              f"load average at start {load}")
    print(header, flush=True)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "photos"
        data.mkdir()
        _write_photos(data, 2 * args.batch_size)
        for name, amp in (("float32", False), ("bf16 (--amp)", True)):
            rows[name] = measure(_argv(data, Path(tmp) / "checkpoints", args.batch_size, amp), args.steps)
            print(f"  {name}: step {rows[name]['step_s']:.3f} s, attention {rows[name]['attention_share']:.0%} "
                  f"of the step", flush=True)
    speedup = rows["float32"]["step_s"] / rows["bf16 (--amp)"]["step_s"]
    table = [header, "", "| precision | step s | attention's share |", "| --- | ---: | ---: |"]
    table += [f"| {name} | {r['step_s']:.3f} | {r['attention_share']:.0%} |" for name, r in rows.items()]
    table += ["", f"bf16 step {speedup:.2f}x faster than float32."]
    print(table[-1])
    if args.out:
        tmp_out = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp_out.write_text("\n".join(table) + "\n")
        tmp_out.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
