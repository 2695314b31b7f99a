"""The floor: the least time this machine needs for the attention core.

    python -m benchmarks.floor [--quick]

Two micro-benchmarks, each on one thread and timed in CPU time (the machine
may be shared: CPU time does not count the time other processes hold the
core), scaled by torch's thread count (perfect scaling, so the floor errs
low): the FMA rate torch's SGEMM reaches (a 2048^3 matmul; MKL is a fair
ceiling) and the rate of torch.exp on an L3-resident float32 tensor (SLEEF,
vectorised, 1 ulp; the kernel's own exp2 is a cheaper polynomial, so the exp
term errs high: the FMA term alone is reported too). The attention core must
do, per batch element with N queries, M keys, C input, qk and v channels:

- forward: N*M*(qk + v) FMAs (scores, then P V) and N*M exponentials;
- backward: N*M*(3 qk + 2 v) FMAs (scores again, dV, dP, dQ, dK) and N*M
  exponentials (probabilities recomputed from the saved log-sum-exp).

and the module around it, which every implementation must do as well: the
1x1 projections, N*C*(2 qk + v) FMAs forward (keys and values are projected
at full resolution, then pooled) and twice that backward (dx and dW), plus
N*v*C forward and 2*N*v*C backward for an output projection. They matter only
for small maps (0.4 % of the forward at 128x128, C = 64; two thirds at 32x32,
BigGAN layout, C = 256). Recomputing anything in the backward is not counted.

floor = FMAs / FMA rate + exps / exp rate. Elementwise work (pooling, gamma,
the residual) is left out: the floor is a bound, not an estimate.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import torch

from .cases import Case, all_cases, quick_cases


@dataclass(frozen=True)
class Rates:
    fma_per_s: float
    exp_per_s: float
    threads: int


def _best_cpu_seconds(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def measure_rates(repeats: int = 5) -> Rates:
    """SGEMM FMAs per second and torch.exp exponentials per second, all threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _single_thread_rates(repeats)
    finally:
        torch.set_num_threads(threads)
    return Rates(single.fma_per_s * threads, single.exp_per_s * threads, threads)


def _single_thread_rates(repeats: int) -> Rates:
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    fma = n**3 / _best_cpu_seconds(lambda: torch.mm(a, b, out=out), repeats)
    x = torch.randn(1 << 20)
    y = torch.empty_like(x)
    calls = 20

    def exps() -> None:
        for _ in range(calls):
            torch.exp(x, out=y)

    exp = calls * x.numel() / _best_cpu_seconds(exps, repeats)
    return Rates(fma, exp, 1)


def work(case: Case, mode: str) -> tuple[float, float]:
    """(FMAs, exponentials) ``case`` must do in ``mode``: attention core and projections."""
    pairs = case.batch * case.queries * case.keys
    positions = case.batch * case.queries
    projections = positions * case.channels * (2 * case.qk + case.v + (case.v if case.out_proj else 0))
    fmas = pairs * (case.qk + case.v) + projections
    exps = pairs
    if mode == "fwd+bwd":
        fmas += pairs * (3 * case.qk + 2 * case.v) + 2 * projections
        exps += pairs
    return float(fmas), float(exps)


def floor_seconds(case: Case, mode: str, rates: Rates, fma_only: bool = False) -> float:
    fmas, exps = work(case, mode)
    return fmas / rates.fma_per_s + (0.0 if fma_only else exps / rates.exp_per_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the C=64 cases up to 128x128")
    args = parser.parse_args(argv)
    rates = measure_rates()
    print(f"{rates.threads} threads: SGEMM {rates.fma_per_s / 1e9:.1f} GFMA/s, "
          f"exp {rates.exp_per_s / 1e9:.2f} G/s")
    for case in quick_cases() if args.quick else all_cases():
        floors = ", ".join(f"{mode} {floor_seconds(case, mode, rates) * 1e3:.1f} ms" for mode in ("fwd", "fwd+bwd"))
        print(f"{case}: floor {floors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
