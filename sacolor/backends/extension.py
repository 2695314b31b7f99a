"""Backends implemented by the compiled extension ``sacolor._C``.

The CPU and CUDA kernels implement the same private schemas
(``sacolor_C::self_attention_fwd`` / ``_bwd``, see csrc/ops.cpp) under
different dispatch keys, so they share this calling code.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from ..inputs import AttentionInputs
from .base import Backend, ForwardResult, Gradients


def _load_extension() -> str | None:
    """Imports sacolor._C once; returns why it failed, or None."""
    try:
        from .. import _C  # noqa: F401  (registers torch.ops.sacolor_C)
    except ImportError as err:
        return (
            f"the compiled extension sacolor._C did not import ({err}); "
            "reinstall with `pip install --no-build-isolation -e .`"
        )
    return None


@torch.compiler.assume_constant_result
def _has_kernel(dispatch_key: str) -> bool:
    # Fixed for the life of the process; torch.compile cannot trace the
    # dispatcher query, so it records the answer as a constant instead.
    return torch._C._dispatch_has_kernel_for_dispatch_key(
        "sacolor_C::self_attention_fwd", dispatch_key
    )


class ExtensionBackend(Backend):
    # The dispatch key the kernel registers under in csrc/ (e.g. "CPU", "CUDA").
    dispatch_key: ClassVar[str]

    def unavailable_reason(self) -> str | None:
        failure = _load_extension()
        if failure:
            return failure
        if not _has_kernel(self.dispatch_key):
            return f"sacolor._C was built without a {self.dispatch_key} kernel"
        return None

    def forward(self, inputs: AttentionInputs) -> ForwardResult:
        y, o, lse = torch.ops.sacolor_C.self_attention_fwd(
            *inputs.named_tensors().values(), inputs.pool, float(inputs.scale)
        )
        return ForwardResult(y, o, lse)

    def backward(self, inputs: AttentionInputs, dy: Tensor, o: Tensor, lse: Tensor) -> Gradients:
        t = inputs.named_tensors()
        grads = torch.ops.sacolor_C.self_attention_bwd(
            dy, *t.values(), o, lse, inputs.pool, float(inputs.scale)
        )
        return Gradients(*grads)
