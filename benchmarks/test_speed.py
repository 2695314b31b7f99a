"""pytest-benchmark suite: SelfAttention forward and forward + backward, every
available backend and the SDPA baselines side by side.

    pytest benchmarks/ --benchmark-only [-k "heykeetae and 1x128x128"]

Not collected by the default test run (pyproject's testpaths is tests/). A
case an implementation cannot run (a backend's refusal, or N x M scores that
would not fit in SACOLOR_BENCH_MEMORY_GIB, default 8) is skipped with the
reason, so nothing disappears silently.
"""

import os
import time

import pytest

from benchmarks.cases import MODES, all_cases, implementations, timed_repeats

MEMORY_LIMIT_GIB = float(os.environ.get("SACOLOR_BENCH_MEMORY_GIB", "8"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("impl", implementations(), ids=lambda i: i.name)
@pytest.mark.parametrize("case", all_cases(), ids=str)
def test_self_attention(benchmark, case, impl, mode):
    refusal = impl.refusal(case, mode, MEMORY_LIMIT_GIB)
    if refusal:
        pytest.skip(f"{impl.name}: {refusal}")
    step = impl.step(case, mode)
    benchmark.group = f"{case} {mode}"
    benchmark.extra_info.update(queries=case.queries, keys=case.keys, implementation=impl.name)
    benchmark.pedantic(step, rounds=_rounds(step), iterations=1)


def _rounds(step) -> int:
    """Runs step once (the warm-up) and picks the rounds from its time
    (benchmarks.cases.timed_repeats): one for a long step (the 256x512, C = 256
    cases take minutes each)."""
    start = time.perf_counter()
    step()
    return max(1, timed_repeats(time.perf_counter() - start))
