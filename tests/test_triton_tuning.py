"""Kernel configuration choice (kernels/tuning.py), without a GPU: launches in one
size bucket share one tuning run, and the winner outlives the process."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("triton")

import triton  # noqa: E402

from sacolor.kernels import tuning  # noqa: E402
from sacolor.kernels.common import configs  # noqa: E402

CANDIDATES = configs([(128, 64, 8, 3), (64, 64, 4, 3)])
CONSTEXPRS = {"QK": 8, "QK_PAD": 16, "INPUT_PRECISION": "ieee"}


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(tuning.CACHE_ENV_VAR, str(tmp_path / "tuning.json"))
    monkeypatch.setattr(tuning, "_chosen", {})


def _timer(times: dict[int, float], calls: list[str]):
    """A benchmark that returns times[BLOCK_M] and records what it ran."""

    def benchmark(config: triton.Config) -> float:
        calls.append(tuning.config_name(config))
        return times[config.kwargs["BLOCK_M"]]

    return benchmark


def test_sizes_in_one_power_of_two_bucket_share_a_key() -> None:
    def key(n: int, m: int) -> str:
        return tuning.tuning_key("k", CONSTEXPRS, {"N": n, "M": m}, "H100")

    assert key(3000, 4000) == key(4096, 2049)
    assert key(4096, 4096) != key(4097, 4096)
    assert key(4096, 4096) != tuning.tuning_key("k", {**CONSTEXPRS, "QK": 16}, {"N": 4096, "M": 4096}, "H100")
    assert key(4096, 4096) != tuning.tuning_key("k", CONSTEXPRS, {"N": 4096, "M": 4096}, "A100")


def test_the_fastest_config_is_measured_once_and_kept_across_processes() -> None:
    calls: list[str] = []
    fast_second = _timer({128: 2.0, 64: 1.0}, calls)
    assert tuning.best_config("key", CANDIDATES, fast_second) is CANDIDATES[1]
    assert len(calls) == 2
    assert tuning.best_config("key", CANDIDATES, fast_second) is CANDIDATES[1]
    assert len(calls) == 2  # remembered in this process
    tuning._chosen.clear()  # as in a new process: only the file remains
    assert tuning.best_config("key", CANDIDATES, _timer({128: 1.0, 64: 2.0}, calls)) is CANDIDATES[1]
    assert len(calls) == 2
    assert json.loads(tuning.cache_path().read_text()) == {"key": tuning.config_name(CANDIDATES[1])}


def test_a_cached_config_no_longer_shipped_is_tuned_again() -> None:
    tuning.cache_path().write_text(json.dumps({"key": "BLOCK_M=32,BLOCK_N=32,warps=4,stages=2"}))
    calls: list[str] = []
    assert tuning.best_config("key", CANDIDATES, _timer({128: 1.0, 64: 2.0}, calls)) is CANDIDATES[0]
    assert len(calls) == 2


def test_an_unwritable_cache_only_costs_retuning(tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(tuning.CACHE_ENV_VAR, str(blocker / "tuning.json"))  # parent is a file
    calls: list[str] = []
    assert tuning.best_config("key", CANDIDATES, _timer({128: 1.0, 64: 2.0}, calls)) is CANDIDATES[0]
