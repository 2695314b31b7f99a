"""Time and peak memory against N, every implementation side by side, in one process.

    python -m benchmarks.scaling [--quick] [--out DIR] [--memory-limit-gib 8] [--repeats 3]
                                 [--threads T] [--clock wall|cpu] [--dtype float32|bfloat16]
                                 [--sizes 128x128,256x512] [--layouts heykeetae] [--only cpu,sdpa_padded]

For each case (benchmarks.cases) and each implementation (the registry's
backends plus the SDPA baselines) it times one forward (no grad) and one
forward + backward (best of --repeats, more for short steps, wall clock) and
reads the peak growth of the resident set during the first run. An
implementation that refuses a case, or whose N x M scores would not fit in
--memory-limit-gib, is reported with its reason instead of being run. It
prints, per case, each backend's speed-up over the best baseline, the speed-up
a kernel running at the FMA-only floor would reach (the most any kernel can
show on this machine), and the cpu backend's time against the floor
(benchmarks.floor). After every case it rewrites DIR/scaling.md (the tables)
and DIR/scaling.png (time and peak memory against N), so a stopped run keeps
what it measured.

On a machine shared with other jobs, wall-clock times measure the share of
the cores this process got as much as the code; ``--threads 1 --clock cpu``
times single-threaded CPU time instead, which other processes do not inflate.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import sacolor
from sacolor.attention.backends.cpu import kernel_path

from .cases import (BASELINES, CHANNELS, LAYOUTS, MODES, SIZES, Case, Implementation, all_cases,
                    implementations, timed_repeats)
from .floor import Rates, floor_seconds, measure_rates
from .memory import MIB, peak_growth

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    try:
        return tuple(tuple(int(d) for d in size.split("x")) for size in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes takes HxW,HxW...; got {text!r}") from None


@dataclass
class Result:
    case: Case
    implementation: str
    mode: str
    seconds: float | None = None
    peak_bytes: int | None = None
    refusal: str | None = None


def _run(impl: Implementation, case: Case, mode: str, repeats: int, limit_gib: float, clock) -> Result:
    refusal = impl.refusal(case, mode, limit_gib)
    if refusal:
        return Result(case, impl.name, mode, refusal=refusal)
    step = impl.step(case, mode)
    start = clock()
    peak = peak_growth(step)  # the first run: allocations, thread start-up
    first = clock() - start
    times = [first]
    for _ in range(timed_repeats(first, repeats)):
        start = clock()
        step()
        times.append(clock() - start)
    return Result(case, impl.name, mode, min(times[1:] or times), peak)


def _best_baseline(results: list[Result], case: Case, mode: str) -> Result | None:
    ran = [r for r in results if r.case == case and r.mode == mode and r.implementation in BASELINES
           and r.seconds is not None]
    return min(ran, key=lambda r: r.seconds) if ran else None


def _summary_lines(results: list[Result], case: Case, rates: Rates) -> list[str]:
    """One line per mode: each fused backend against the best baseline and the floor."""
    lines = []
    for mode in MODES:
        best = _best_baseline(results, case, mode)
        floor = floor_seconds(case, mode, rates)
        fma_floor = floor_seconds(case, mode, rates, fma_only=True)
        for r in results:
            if r.case != case or r.mode != mode or r.implementation in BASELINES or r.seconds is None:
                continue
            versus = (f"{best.seconds / r.seconds:.1f}x faster than {best.implementation} "
                      f"({best.seconds:.3f} s)") if best else "no baseline fits"
            allows = f" (at the FMA-only floor: {best.seconds / fma_floor:.1f}x)" if best else ""
            lines.append(f"{case} {mode:8s} {r.implementation}: {r.seconds:.3f} s, {versus}{allows}; "
                         f"{r.seconds / floor:.2f}x the floor ({floor:.3f} s), "
                         f"{r.seconds / fma_floor:.2f}x the FMA-only floor")
    return lines


def _cell(r: Result | None) -> str:
    if r is None:
        return ""
    if r.refusal:
        return "does not fit" if r.refusal.startswith("does not fit") else "refused"
    return f"{r.seconds:.4f}"


def _markdown(results: list[Result], cases: list[Case], impls: list[str], rates: Rates, header: str) -> str:
    find = {(r.case, r.implementation, r.mode): r for r in results}
    out = [header, "", "## Time (s, best of the repeats) and peak memory growth (MiB, forward + backward)", ""]
    out.append("| case | N | M | implementation | fwd s | fwd+bwd s | peak MiB |")
    out.append("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
    for case in cases:
        for name in impls:
            fwd, both = find.get((case, name, "fwd")), find.get((case, name, "fwd+bwd"))
            peak = "" if both is None or both.peak_bytes is None else f"{both.peak_bytes / MIB:.0f}"
            out.append(f"| {case} | {case.queries} | {case.keys} | {name} | {_cell(fwd)} | {_cell(both)} | {peak} |")
    out += ["", "## Against the best baseline and the floor", ""]
    # "at the floor": the speed-up over the best baseline that a kernel running
    # at the FMA-only floor would reach, i.e. the most any kernel here can show.
    out.append("| case | mode | best baseline | s | cpu s | speed-up | at the floor | floor s | cpu / floor "
               "| cpu / FMA-only floor |")
    out.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in cases:
        for mode in MODES:
            best, cpu = _best_baseline(results, case, mode), find.get((case, "cpu", mode))
            if cpu is None or cpu.seconds is None:
                continue
            floor = floor_seconds(case, mode, rates)
            fma_floor = floor_seconds(case, mode, rates, fma_only=True)
            base = f"{best.implementation} | {best.seconds:.4f} | " if best else "none fits | | "
            speedup = f"{best.seconds / cpu.seconds:.1f}x | {best.seconds / fma_floor:.1f}x" if best else " | "
            out.append(f"| {case} | {mode} | {base}{cpu.seconds:.4f} | {speedup} | {floor:.4f} | "
                       f"{cpu.seconds / floor:.2f} | {cpu.seconds / fma_floor:.2f} |")
    refused: dict[tuple[str, str], list[str]] = {}
    for r in results:
        if r.refusal:
            refused.setdefault((r.implementation, r.refusal), []).append(f"{r.case} {r.mode}")
    if refused:
        out += ["", "## Not run", ""]
        every = len(cases) * len(MODES)
        for (name, reason), where in refused.items():
            out.append(f"- {name}, {'every case' if len(where) == every else ', '.join(where)}: {reason}")
    return "\n".join(out) + "\n"


def _plot(results: list[Result], impls: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r.case.layout, r.case.channels) for r in results})
    fig, axes = plt.subplots(2, len(groups), figsize=(4.5 * len(groups), 7.5), squeeze=False)
    for col, (layout, channels) in enumerate(groups):
        for name in impls:
            ran = sorted((r for r in results if (r.case.layout, r.case.channels) == (layout, channels)
                          and r.implementation == name and r.mode == "fwd+bwd" and r.seconds is not None),
                         key=lambda r: r.case.queries)
            if not ran:
                continue
            n = [r.case.queries for r in ran]
            axes[0, col].plot(n, [r.seconds for r in ran], marker="o", label=name)
            axes[1, col].plot(n, [r.peak_bytes / MIB for r in ran], marker="o", label=name)
        axes[0, col].set_title(f"{layout}, C={channels}: forward + backward")
        axes[0, col].set_ylabel("seconds")
        axes[1, col].set_ylabel("peak RSS growth (MiB)")
        axes[0, col].set_yscale("log")
        axes[1, col].set_yscale("symlog", linthresh=1.0)  # growth can be 0: freed memory reused
        for ax in axes[:, col]:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("N = H x W")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _ran(results: list[Result], impls: list[Implementation]) -> list[str]:
    """The implementations that ran at least one case, in registry order."""
    return [i.name for i in impls if any(r.implementation == i.name and r.seconds for r in results)]


def _write_report(out: Path, markdown: str, results: list[Result], names: list[str]) -> None:
    """DIR/scaling.md and DIR/scaling.png, each replaced whole (written aside, then renamed)."""
    out.mkdir(parents=True, exist_ok=True)
    md, png = out / "scaling.md", out / "scaling.png"
    md_tmp, png_tmp = md.with_suffix(".md.tmp"), png.with_name("scaling.tmp.png")
    md_tmp.write_text(markdown)
    _plot(results, names, png_tmp)
    md_tmp.replace(md)
    png_tmp.replace(png)


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    isa = (f"{kernel_path(torch.float32)} (float32), {kernel_path(torch.bfloat16)} (bfloat16)"
           if "cpu" in sacolor.available_backends() else "n/a")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"{model}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"cpu kernel ISA {isa}, load average at start {load}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="C=64 only, up to 128x128 (the issue's targets)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder for scaling.md and scaling.png (default: benchmarks/results)")
    parser.add_argument("--memory-limit-gib", type=float, default=8.0,
                        help="report an implementation as 'does not fit' when its N x M scores "
                             "would need more than this (default 8)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs after the first, best one reported: at least this many, about a "
                             "second's worth for short steps, none when the first took 5 s or more (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads first")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: time.perf_counter; cpu: time.process_time (all threads summed)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                        help="the inputs' dtype (default float32); the cpu kernel path for it is in the report")
    parser.add_argument("--sizes", type=_sizes, default=None,
                        help="feature maps HxW, comma-separated, e.g. 128x128,256x512 (default: every size, "
                             "or up to 128x128 with --quick)")
    parser.add_argument("--layouts", type=lambda s: tuple(s.split(",")), default=tuple(LAYOUTS),
                        help=f"comma-separated, of {', '.join(LAYOUTS)} (default: both)")
    parser.add_argument("--only", type=lambda s: set(s.split(",")), default=None,
                        help="run only these implementations, e.g. cpu,sdpa_padded (default: every one)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    machine = _machine()
    print(machine)
    rates = measure_rates()
    print(f"floor rates: {rates.describe()}")
    dtype = DTYPES[args.dtype]
    channels = (64,) if args.quick else CHANNELS
    sizes = args.sizes or (SIZES[:3] if args.quick else SIZES)
    cases = all_cases(channels=channels, sizes=sizes, layouts=args.layouts, dtype=dtype)
    impls = [i for i in implementations() if args.only is None or i.name in args.only]
    command = " ".join(["python -m benchmarks.scaling", *(argv if argv is not None else sys.argv[1:])])
    header = (f"# Scaling report\n\n`{command}` ({args.clock}-clock seconds)\n\n"
              f"Machine: {machine}.\n\nFloor rates (benchmarks.floor): {rates.describe()}.")
    results: list[Result] = []
    for done, case in enumerate(cases, 1):
        for impl in impls:
            for mode in MODES:
                result = _run(impl, case, mode, args.repeats, args.memory_limit_gib, clock)
                results.append(result)
                shown = result.refusal or f"{result.seconds:.4f} s, peak +{result.peak_bytes / MIB:.0f} MiB"
                print(f"  {case} {impl.name:12s} {mode:8s} {shown}", flush=True)
        for line in _summary_lines(results, case, rates):
            print(line, flush=True)
        # Rewritten after every case, so a long run that is stopped keeps what it measured.
        progress = "" if done == len(cases) else f"\n\n**Partial: {done} of {len(cases)} cases so far.**"
        names = _ran(results, impls)
        _write_report(args.out, _markdown(results, cases[:done], names, rates, header + progress), results, names)
    print(f"wrote {args.out / 'scaling.md'} and {args.out / 'scaling.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
