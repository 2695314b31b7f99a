"""Implementations of the one attention op; see ``registry`` for selection."""

from .base import Backend, ForwardResult, Gradients
from .registry import all_backends, available_backends, explain, get, select

__all__ = [
    "Backend", "ForwardResult", "Gradients",
    "all_backends", "available_backends", "explain", "get", "select",
]
