"""Choosing a kernel configuration on a GPU: bucketed keys, a cache that outlives the process.

``triton.autotune`` re-benchmarks every configuration for every distinct key
value (each new N and M) and again in every process. Here a launch is tuned
once per *tuning key*: the kernel, its constexprs (the config family, input
precision, qk width and flags), the power-of-two buckets of its sizes, the
GPU and the Triton version. The winner is kept in memory and in a JSON file
(``SACOLOR_TRITON_CACHE``, default ``~/.cache/sacolor/triton_tuning.json``),
written atomically, so later processes on the same machine skip the search.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import triton

CACHE_ENV_VAR = "SACOLOR_TRITON_CACHE"

_chosen: dict[str, str] = {}  # tuning key -> config name, this process


def bucket(size: int) -> int:
    """The power of two at or above ``size``: launches in one bucket share a configuration."""
    return triton.next_power_of_2(max(1, size))


def config_name(config: triton.Config) -> str:
    kw = config.kwargs
    return f"BLOCK_M={kw['BLOCK_M']},BLOCK_N={kw['BLOCK_N']},warps={config.num_warps},stages={config.num_stages}"


def tuning_key(kernel: str, constexprs: Mapping[str, object], sizes: Mapping[str, int], device: str) -> str:
    """What decides the best configuration; equal keys share one tuning run."""
    parts = [kernel, device, f"triton={triton.__version__}"]
    parts += [f"{name}={value}" for name, value in sorted(constexprs.items())]
    parts += [f"{name}~{bucket(size)}" for name, size in sorted(sizes.items())]
    return "|".join(parts)


def cache_path() -> Path:
    default = Path.home() / ".cache" / "sacolor" / "triton_tuning.json"
    return Path(os.environ.get(CACHE_ENV_VAR) or default)


def _read_cache(path: Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # no cache yet, or one a crash left unreadable
        return {}


def _write_cache(path: Path, key: str, name: str) -> None:
    """Adds key -> name to the file, merged with what other processes wrote, atomically."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = {**_read_cache(path), key: name}
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
            json.dump(entries, tmp, indent=0, sort_keys=True)
        os.replace(tmp.name, path)
    except OSError:
        pass  # a read-only home only costs re-tuning in the next process


def best_config(
    key: str, configs: list[triton.Config], benchmark: Callable[[triton.Config], float]
) -> triton.Config:
    """The fastest of ``configs`` for ``key``: remembered, read from the cache, or measured.

    Args:
        key: from ``tuning_key``.
        configs: the candidates (a kernel's family list).
        benchmark: runs one configuration and returns its time (only called on a miss).
    """
    by_name = {config_name(c): c for c in configs}
    name = _chosen.get(key) or _read_cache(cache_path()).get(key)
    if name not in by_name:  # never tuned, or tuned with configurations since changed
        times = {candidate: benchmark(config) for candidate, config in by_name.items()}
        name = min(times, key=times.__getitem__)
        _write_cache(cache_path(), key, name)
    _chosen[key] = name
    return by_name[name]
