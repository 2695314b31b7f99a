"""The scaling report's bookkeeping (benchmarks/scaling.py, cases.py, floor.py)
on made-up timings: which baseline is best, the ratios, the floor, and that a
baseline too big for memory is reported as such instead of being run."""

import pytest
import torch

from benchmarks import scaling
from benchmarks.cases import Case, Implementation, timed_repeats
from benchmarks.floor import Rates, floor_seconds, work

CASE = Case("heykeetae", 64, 128, 128)  # N = M = 16 384, qk 8, v 64
RATES = Rates(fma_per_s=50e9, bf16_fma_per_s=100e9, exp_per_s=1e9, threads=2)


def test_work_counts_the_fmas_and_exps_of_the_algorithm():
    n = 16384
    pairs = n * n
    projections = n * 64 * (8 + 8 + 64)  # q, k, v from x (C = 64)
    assert work(CASE, "fwd") == (pairs * (8 + 64) + projections, pairs)
    assert work(CASE, "fwd+bwd") == (pairs * (8 + 64 + 3 * 8 + 2 * 64) + 3 * projections, 2 * pairs)
    pooled = Case("biggan", 64, 128, 128)  # M = N / 4, v = 32, projected at full size, out_proj
    pooled_projections = n * 64 * (8 + 8 + 32 + 32)
    assert work(pooled, "fwd") == (n * 4096 * (8 + 32) + pooled_projections, n * 4096)
    fmas = pairs * 72 + projections
    assert floor_seconds(CASE, "fwd", RATES, fma_only=True) == pytest.approx(fmas / 50e9)
    assert floor_seconds(CASE, "fwd", RATES) == pytest.approx(fmas / 50e9 + pairs / 1e9)
    bf16 = Case("heykeetae", 64, 128, 128, dtype=torch.bfloat16)  # at the bfloat16 GEMM rate
    assert floor_seconds(bf16, "fwd", RATES, fma_only=True) == pytest.approx(fmas / 100e9)


def test_short_steps_get_about_a_seconds_worth_of_repeats_long_ones_none():
    assert timed_repeats(10.0) == 0
    assert timed_repeats(5.0) == 0
    assert timed_repeats(0.5) == 3
    assert timed_repeats(0.5, minimum=1) == 2
    assert timed_repeats(0.1) == 10
    assert timed_repeats(1e-6) == 50


@pytest.mark.parametrize("name", ["sdpa", "reference"])
def test_n_by_m_baselines_that_would_not_fit_are_refused_not_run(name):
    film = Case("heykeetae", 64, 256, 512)  # one N x N fp32 matrix is 64 GiB
    refusal = Implementation(name, True).refusal(film, "fwd", memory_limit_gib=8.0)
    assert refusal is not None and refusal.startswith("does not fit")
    assert Implementation(name, True).refusal(Case("heykeetae", 64, 32, 32), "fwd", 8.0) is None


def test_the_flash_baseline_and_the_cpu_backend_are_never_refused_for_memory():
    film = Case("heykeetae", 64, 256, 512)
    assert Implementation("sdpa_padded", True).refusal(film, "fwd+bwd", 8.0) is None
    assert Implementation("cpu", False).refusal(film, "fwd+bwd", 8.0) is None


def _results() -> list[scaling.Result]:
    times = {("cpu", "fwd"): 0.4, ("cpu", "fwd+bwd"): 1.2,
             ("sdpa", "fwd"): 2.4, ("sdpa", "fwd+bwd"): 6.0,
             ("sdpa_padded", "fwd"): 0.8, ("sdpa_padded", "fwd+bwd"): 3.0}
    results = [scaling.Result(CASE, name, mode, seconds, 1 << 20) for (name, mode), seconds in times.items()]
    return results + [scaling.Result(CASE, "reference", mode, refusal="does not fit: needs ~9 GiB")
                      for mode in ("fwd", "fwd+bwd")]


def test_the_best_baseline_is_the_fastest_one_that_ran():
    assert scaling._best_baseline(_results(), CASE, "fwd").implementation == "sdpa_padded"
    only_refused = [r for r in _results() if r.implementation in ("cpu", "reference")]
    assert scaling._best_baseline(only_refused, CASE, "fwd") is None


def test_report_gives_speed_up_floor_and_refusals():
    names = ["cpu", "reference", "sdpa", "sdpa_padded"]
    text = scaling._markdown(_results(), [CASE], names, RATES, "# header")
    fma_floor = floor_seconds(CASE, "fwd", RATES, fma_only=True)
    fwd_row = next(line for line in text.splitlines() if line.startswith(f"| {CASE} | fwd |"))
    cells = [c.strip() for c in fwd_row.strip("|").split("|")]
    assert cells[2:6] == ["sdpa_padded", "0.8000", "0.4000", "2.0x"]
    assert cells[6] == f"{0.8 / fma_floor:.1f}x"
    assert cells[8] == f"{0.4 / floor_seconds(CASE, 'fwd', RATES):.2f}"
    assert "| reference | does not fit | does not fit |" in text
    assert "- reference, every case: does not fit: needs ~9 GiB" in text
    one_mode = [r for r in _results() if not (r.implementation == "reference" and r.mode == "fwd")]
    text = scaling._markdown(one_mode, [CASE], names, RATES, "# header")
    assert f"- reference, {CASE} fwd+bwd: does not fit: needs ~9 GiB" in text
    summary = scaling._summary_lines(_results(), CASE, RATES)
    assert summary[0].startswith(f"{CASE} fwd      cpu: 0.400 s, 2.0x faster than sdpa_padded")
    assert f"at the FMA-only floor: {0.8 / fma_floor:.1f}x" in summary[0]


def test_report_files_are_replaced_whole(tmp_path):
    names = ["cpu", "sdpa", "sdpa_padded"]
    scaling._write_report(tmp_path, "# first\n", _results(), names)
    scaling._write_report(tmp_path, "# second\n", _results(), names)
    assert (tmp_path / "scaling.md").read_text() == "# second\n"
    assert (tmp_path / "scaling.png").read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scaling.md", "scaling.png"]
