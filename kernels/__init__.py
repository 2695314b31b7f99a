"""Triton kernels for the ``triton`` backend (installed as ``sacolor.kernels``).

Importing this package imports nothing heavy: each kernel module imports
Triton itself, so a CPU-only install never needs it.
"""
