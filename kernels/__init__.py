"""Triton kernels for the ``triton`` backend (installed as ``sacolor.kernels``).

Importing this package imports nothing heavy: each kernel module imports
Triton itself, so a CPU-only install never needs it. What the kernels and
the backends that launch them must agree on, and that needs no Triton, is
here.
"""

import os

# exp(s) == exp2(s * LOG2E): every backend and kernel keeps the softmax and its
# log-sum-exp in base 2, from the forward through the backward.
LOG2E = 1.4426950408889634
INTERPRET_ENV_VAR = "TRITON_INTERPRET"


def interpreting() -> bool:
    """Whether Triton runs its kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get(INTERPRET_ENV_VAR, "0") == "1"
