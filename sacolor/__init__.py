"""sacolor: colourise black-and-white photos and films with a self-attention
Pix2Pix GAN, and the fused O(N)-memory SAGAN attention that makes it affordable.
"""

from . import ops  # noqa: F401  (registers torch.ops.sacolor.*)
from .backends.registry import available_backends
from .functional import explain, self_attention
from .nn import SelfAttention
from .photo import colorize

__all__ = ["SelfAttention", "available_backends", "colorize", "explain", "self_attention"]
__version__ = "0.1.0"
