"""A consensus of generators: the colour that every member agrees on.

Each member is a full generator; the members share one encoder (the frozen ImageNet one), so the
encoder runs once and only the decoders run per member. Where members disagree about a pixel's hue,
the consensus fades it to gray; where they agree, it keeps the weakest member's chroma. Two runs of one
recipe differ most on what a gray photo cannot tell (a sweater's colour, a chair's backdrop), so the
consensus is grayer exactly there, and a chroma gain at display time (``Colorizer``'s ``chroma_gain``)
restores the colour of what they agree on (docs/TRAINING.md, "Two runs that must agree").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

CONSENSUS = "consensus"  # the generator name a checkpoint config gives a consensus
MIN_MEMBERS = 2
_EPS = 1e-6


def consensus_ab(members_ab: Tensor) -> Tensor:
    """The colour members agree on, per pixel.

    The hue is the members' mean ab's; the chroma is the smallest member chroma, times the smallest
    cosine between any two members' ab, clamped at 0 (so members 90 degrees or more apart in hue give gray).

    Args:
        members_ab: (M, B, 2, H, W), M >= 2, normalised or Lab ab (the rule is scale-free).

    Returns:
        (B, 2, H, W), no more chroma than any member's.
    """
    if members_ab.dim() != 5 or members_ab.shape[0] < MIN_MEMBERS or members_ab.shape[2] != 2:
        raise ValueError(f"members_ab must be (M >= {MIN_MEMBERS}, B, 2, H, W); got {tuple(members_ab.shape)}")
    chroma = members_ab.norm(dim=2, keepdim=True)
    unit = members_ab / chroma.clamp_min(_EPS)
    cosines = [(unit[i] * unit[j]).sum(1, keepdim=True) for i in range(len(unit)) for j in range(i)]
    agreement = torch.stack(cosines).amin(0).clamp_min(0)
    mean = members_ab.mean(0)
    return mean / mean.norm(dim=1, keepdim=True).clamp_min(_EPS) * chroma.amin(0) * agreement


class ConsensusGenerator(nn.Module):
    """Generators that share one encoder, combined by ``consensus_ab``.

    Same interface as ``EfficientNetUNet`` at inference: ``encode(l_norm)`` and
    ``forward(l_norm, hints=None, features=None)``; members take the same hints.

    Args:
        members: at least two generators with ``encode`` and a ``features=`` argument, whose encoders
            hold the same weights (``tie_encoders`` checks that and ties them, as ``load_generator`` does;
            the first member's encoder is the one that runs).

    Raises:
        ValueError: fewer than two members, or members without an ``encode``.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < MIN_MEMBERS:
            raise ValueError(f"a consensus needs at least {MIN_MEMBERS} members; got {len(members)}")
        if not all(hasattr(m, "encode") for m in members):
            raise ValueError("consensus members must share an encoder: use efficientnet_unet members")
        self.members = nn.ModuleList(members)
        self.multiple = max(getattr(m, "multiple", 1) for m in members)
        self.accepts_hints = all(getattr(m, "accepts_hints", False) for m in members)

    def tie_encoders(self) -> None:
        """Make every member use the first member's encoder module, once their weights are loaded.

        Raises:
            ValueError: a member's encoder holds other weights than the first's.
        """
        first = self.members[0].encoder.state_dict()
        for i, member in enumerate(self.members[1:], 1):
            if any(not torch.equal(first[k], v) for k, v in member.encoder.state_dict().items()):
                raise ValueError(f"consensus member {i}'s encoder differs from member 0's; the members must share "
                                 "one (frozen) encoder")
        for member in self.members[1:]:
            member.encoder = self.members[0].encoder

    def encode(self, l_norm: Tensor) -> list[Tensor]:
        """The shared encoder's features of normalised L (B, 1, H, W)."""
        return self.members[0].encode(l_norm)

    def forward(self, l_norm: Tensor, hints: Tensor | None = None, features: list[Tensor] | None = None) -> Tensor:
        """Normalised L (B, 1, H, W) -> the members' consensus, normalised ab (B, 2, H, W)."""
        if features is None:
            features = self.encode(l_norm)
        ab = torch.stack([m(l_norm, hints=hints, features=features).float() for m in self.members])
        return consensus_ab(ab)
