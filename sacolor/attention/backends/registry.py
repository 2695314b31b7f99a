"""Backend lookup and selection (``backend="auto"`` or by name)."""

from __future__ import annotations

import os

import torch

from ..inputs import AttentionInputs
from .base import Backend
from .cpu import CpuBackend
from .reference import ReferenceBackend
from .triton import TritonBackend  # imports Triton only when it first runs

ENV_VAR = "SACOLOR_BACKEND"

_BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    _BACKENDS[backend.name] = backend
    return backend


for _backend in (ReferenceBackend(), CpuBackend(), TritonBackend()):
    register(_backend)


def all_backends() -> list[Backend]:
    """Every known backend, best priority first."""
    return sorted(_BACKENDS.values(), key=lambda b: -b.priority)


def get(name: str) -> Backend:
    try:
        return _BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(_BACKENDS))
        raise ValueError(f"unknown backend {name!r}; choose one of: auto, {known}") from None


def available_backends() -> list[str]:
    """Names of the backends this install can run, best first."""
    return [b.name for b in all_backends() if b.unavailable_reason() is None]


def _refusal_report(inputs: AttentionInputs) -> str:
    lines = [f"inputs: {inputs.describe()}"]
    for b in all_backends():
        reasons = b.refusals(inputs) or b.auto_refusals(inputs)
        lines.append(f"  {b.name}: " + ("ok" if not reasons else "; ".join(reasons)))
    return "\n".join(lines)


def explain(inputs: AttentionInputs) -> str:
    """Which backend ``auto`` runs for ``inputs`` (SACOLOR_BACKEND included) and
    why each backend refuses."""
    try:
        chosen = select(inputs).name
    except (ValueError, NotImplementedError) as err:
        chosen = f"none ({str(err).splitlines()[0]})"
    override = os.environ.get(ENV_VAR)
    via = f" (from {ENV_VAR}={override})" if override else ""
    return f"auto -> {chosen}{via}\n" + _refusal_report(inputs)


def environment_backend(device: torch.device | str | None = None) -> Backend | None:
    """The backend SACOLOR_BACKEND names (None when unset or "auto"), checked: command lines
    call this once at start-up, so a bad value is one usage error, not one per input.

    Args:
        device: where the attention will run, when known: the backend must run there.

    Raises:
        ValueError: an unknown name, or one that cannot run here; the message names the variable.
    """
    value = os.environ.get(ENV_VAR)
    if not value or value == "auto":
        return None
    choices = ", ".join(["auto", *sorted(_BACKENDS)])
    if value not in _BACKENDS:
        raise ValueError(
            f"{ENV_VAR}={value!r} is not a backend; set it to one of {choices} (names are exact, "
            f"lower case, without spaces), or unset it"
        )
    chosen = _BACKENDS[value]
    reasons = [chosen.unavailable_reason()]
    if device is not None and not chosen.supports_device(torch.device(device)):
        reasons.append(f"it runs on {', '.join(sorted(chosen.devices))}, not {torch.device(device).type}")
    reasons = [reason for reason in reasons if reason]
    if reasons:
        raise ValueError(
            f"{ENV_VAR}={value}: {'; '.join(reasons)}; unset {ENV_VAR} (or set it to auto) to let sacolor choose, "
            f"or set it to one of {available_backends()}"
        )
    return chosen


def select(inputs: AttentionInputs, backend: str | None = None) -> Backend:
    """The named backend (checked), or the best one that accepts ``inputs``.

    ``backend`` None or "auto" means automatic choice, unless the environment
    variable SACOLOR_BACKEND names one.

    Raises:
        ValueError: an unknown name, or a named backend that refuses the inputs.
        NotImplementedError: no backend accepts the inputs.
    """
    if backend is None or backend == "auto":
        from_environment = environment_backend()
        if from_environment is not None:
            reasons = from_environment.refusals(inputs)
            if reasons:
                raise ValueError(
                    f"{ENV_VAR}={from_environment.name} cannot run these inputs: {'; '.join(reasons)}. Unset "
                    f"{ENV_VAR} (or set it to auto) to let sacolor choose.\n{_refusal_report(inputs)}"
                )
            return from_environment
        backend = "auto"
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string; got {type(backend).__name__}")
    if backend != "auto":
        chosen = get(backend)
        reasons = chosen.refusals(inputs)
        if reasons:
            raise ValueError(
                f"backend {backend!r} cannot run these inputs: {'; '.join(reasons)}. "
                f"Use backend='auto' or one of {available_backends()}.\n{_refusal_report(inputs)}"
            )
        return chosen
    for candidate in all_backends():
        if not candidate.refusals(inputs) and not candidate.auto_refusals(inputs):
            return candidate
    raise NotImplementedError(
        "backend='auto' found no backend for these inputs (it never falls back to an N x M "
        "computation silently)\n" + _refusal_report(inputs)
    )
