"""A spy on the generator that takes hints: records the hint channels of every forward call."""

from __future__ import annotations

import pytest

from sacolor.models.efficientnet_unet import EfficientNetUNet


def spy_on_hints(monkeypatch: pytest.MonkeyPatch) -> list:
    """Patches ``EfficientNetUNet.forward`` to record its ``hints`` (None or (B, 3, h, w)); returns the list it fills."""
    seen = []
    forward = EfficientNetUNet.forward

    def spy(self, l_norm, hints=None):
        seen.append(hints)
        return forward(self, l_norm, hints)

    monkeypatch.setattr(EfficientNetUNet, "forward", spy)
    return seen
