"""The op: fused SAGAN self-attention with O(N) memory, on its own.

``self_attention`` (functional), ``SelfAttention`` (the module), ``explain``
(which backend runs and why the others refuse) and the op
``torch.ops.sacolor.self_attention`` (registered by importing ``ops``). This
package imports torch, its own modules and ``sacolor.kernels`` only: never
the application around it.
"""

from . import ops  # noqa: F401  (registers torch.ops.sacolor.*)
from .backends.registry import available_backends
from .functional import explain, self_attention
from .module import SelfAttention

__all__ = ["SelfAttention", "available_backends", "explain", "self_attention"]
