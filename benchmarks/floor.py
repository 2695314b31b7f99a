"""The floor: the least time this machine needs for the attention core.

    python -m benchmarks.floor [--quick]

Micro-benchmarks, each on one thread and timed in CPU time (the machine may
be shared: CPU time does not count the time other processes hold the core),
scaled by torch's thread count (perfect scaling, so the floor errs low): the
FMA rate torch's SGEMM reaches (a 2048^3 matmul; MKL is a fair ceiling; with
MKL_ENABLE_INSTRUCTIONS=AVX2 the AVX2 rate), the rate of torch's bfloat16
GEMM (oneDNN: AMX tiles where the CPU has them) for bfloat16 cases, and the
rate of the cpu kernel's own exp2 (torch.ops.sacolor_C.cpu_exp2_, the
polynomial its softmax runs, on the path SACOLOR_CPU_ISA selects) on an
L2-resident tensor, alone: in the kernel each exp also needs a max, a
subtraction and a sum, so the exp term errs low too, and the floor stays a
bound. The FMA-only floor (no exp term) is the bound for any kernel and is
reported beside it. The attention core must do, per batch element with N
queries, M keys, C input, qk and v channels:

- forward: N*M*(qk + v) FMAs (scores, then P V) and N*M exponentials;
- backward: N*M*(3 qk + 2 v) FMAs (scores again, dV, dP, dQ, dK) and N*M
  exponentials (probabilities recomputed from the saved log-sum-exp).

and the module around it, which every implementation must do as well: the
1x1 projections, N*C*(2 qk + v) FMAs forward (keys and values are projected
at full resolution, then pooled) and twice that backward (dx and dW), plus
N*v*C forward and 2*N*v*C backward for an output projection. They matter only
for small maps (0.4 % of the forward at 128x128, C = 64; two thirds at 32x32,
BigGAN layout, C = 256). Recomputing anything in the backward is not counted.

floor = FMAs / FMA rate + exps / exp rate (bfloat16 cases: FMAs at the
bfloat16 GEMM rate). Elementwise work (pooling, gamma, the residual) is left
out: the floor is a bound, not an estimate.
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
    fma_per_s: float  # float32 SGEMM
    bf16_fma_per_s: float  # bfloat16 GEMM
    exp_per_s: float  # the cpu kernel's exp2
    threads: int

    def describe(self) -> str:
        return (f"{self.threads} threads: SGEMM {self.fma_per_s / 1e9:.1f} GFMA/s, bf16 GEMM "
                f"{self.bf16_fma_per_s / 1e9:.1f} GFMA/s, kernel exp2 {self.exp_per_s / 1e9:.2f} G/s")


def _best_cpu_seconds(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def measure_rates(repeats: int = 5) -> Rates:
    """GEMM FMAs per second (float32, bfloat16) and the cpu kernel's exp2 per second, all threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _single_thread_rates(repeats)
    finally:
        torch.set_num_threads(threads)
    return Rates(single.fma_per_s * threads, single.bf16_fma_per_s * threads, single.exp_per_s * threads,
                 threads)


def _gemm_rate(dtype: torch.dtype, repeats: int) -> float:
    n = 2048
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    return n**3 / _best_cpu_seconds(lambda: torch.mm(a, b, out=out), repeats)


def _kernel_exp2_rate(repeats: int) -> float:
    import sacolor

    if "cpu" not in sacolor.available_backends():
        raise RuntimeError("benchmarks.floor times the cpu kernel's exp2: build it first "
                           "(pip install --no-build-isolation -e .)")
    # 256 KiB: L2-resident, as the kernel's score tiles are. In place, so the values
    # move (0, 1, 2, ..., inf, inf): the exp2 is branchless and never meets a denormal,
    # so its time does not depend on them.
    x = torch.rand(1 << 16) * -20
    calls = 100

    def exps() -> None:
        for _ in range(calls):
            torch.ops.sacolor_C.cpu_exp2_(x)

    return calls * x.numel() / _best_cpu_seconds(exps, repeats)


def _single_thread_rates(repeats: int) -> Rates:
    return Rates(_gemm_rate(torch.float32, repeats), _gemm_rate(torch.bfloat16, repeats),
                 _kernel_exp2_rate(repeats), 1)


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
    fma_rate = rates.bf16_fma_per_s if case.dtype == torch.bfloat16 else rates.fma_per_s
    return fmas / fma_rate + (0.0 if fma_only else exps / rates.exp_per_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the C=64 cases up to 128x128")
    args = parser.parse_args(argv)
    rates = measure_rates()
    print(rates.describe())
    for case in quick_cases() if args.quick else all_cases():
        floors = ", ".join(f"{mode} {floor_seconds(case, mode, rates, fma_only=True) * 1e3:.1f} ms "
                           f"(+ exp term {(floor_seconds(case, mode, rates) - floor_seconds(case, mode, rates, fma_only=True)) * 1e3:.1f} ms)"
                           for mode in ("fwd", "fwd+bwd"))
        print(f"{case}: FMA-only floor {floors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
