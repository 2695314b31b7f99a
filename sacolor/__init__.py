"""sacolor: colourise black-and-white photos and films with a self-attention
Pix2Pix GAN, and the fused O(N)-memory SAGAN attention that makes it affordable.

``import sacolor`` loads only the op (``sacolor.attention``): the drop-in layer
costs no PIL, safetensors or application code. ``sacolor.colorize`` loads the
application the first time it is used.
"""

from typing import Any

from .attention import SelfAttention, available_backends, explain, self_attention

__all__ = ["SelfAttention", "available_backends", "colorize", "explain", "self_attention"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # PEP 562: the application half is imported on first use, not with the op.
    if name == "colorize":
        from .inference.photo import colorize

        return colorize
    raise AttributeError(f"module 'sacolor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
