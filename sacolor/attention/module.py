"""``SelfAttention``: a drop-in SAGAN self-attention module.

The module only owns the projections (1x1 convs, optionally spectrally
normalised) and gamma; the attention itself is ``sacolor.self_attention``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .functional import explain, self_attention
from .inputs import check_pool


def _query_positions(
    positions: Sequence[tuple[int, int]] | Tensor, height: int, width: int, device: torch.device
) -> Tensor:
    """(P, 2) long tensor of (row, col) pairs inside an H x W grid, or ValueError."""
    try:
        pos = torch.as_tensor(positions, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"positions must be (row, col) integer pairs; got {positions!r} ({err})") from None
    if pos.dim() != 2 or pos.shape[0] == 0 or pos.shape[1] != 2 or pos.is_floating_point() or pos.is_complex():
        raise ValueError(
            f"positions must be a non-empty list of (row, col) integer pairs or a (P, 2) integer "
            f"tensor; got {pos.dtype} shape {tuple(pos.shape)}"
        )
    pos = pos.long()
    rows, cols = pos[:, 0], pos[:, 1]
    if (rows < 0).any() or (rows >= height).any() or (cols < 0).any() or (cols >= width).any():
        raise ValueError(f"positions must lie inside H={height}, W={width}; got {pos.tolist()}")
    return pos


class SelfAttention(nn.Module):
    """SAGAN self-attention: y = gamma * Wo(softmax(scale q k^T) v) + x.

    Args:
        in_channels: C, the channels of the input feature map.
        qk_channels: channels of queries and keys (default C // 8, at least 1).
        v_channels: channels of values (default C; must be C without out_proj).
        out_proj: add a 1x1 output projection v -> C (BigGAN / StudioGAN layout).
        pool: 2 max-pools the projected keys and values 2x2 (BigGAN), 1 does not.
        bias: biases on the projections (heykeetae has them, BigGAN does not).
        spectral_norm: spectrally normalise every projection.
        scale: multiplies q.k before the softmax (SAGAN uses 1.0).
        backend: "auto" or a name from ``sacolor.available_backends()``.
    """

    def __init__(
        self,
        in_channels: int,
        qk_channels: int | None = None,
        v_channels: int | None = None,
        out_proj: bool = False,
        pool: int = 1,
        bias: bool = True,
        spectral_norm: bool = False,
        scale: float = 1.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int; got {in_channels!r}")
        qk_channels = qk_channels or max(1, in_channels // 8)
        v_channels = v_channels or in_channels
        if not out_proj and v_channels != in_channels:
            raise ValueError(
                f"v_channels={v_channels} differs from in_channels={in_channels}: "
                "set out_proj=True to project values back to in_channels"
            )
        check_pool(pool)
        self.in_channels = in_channels
        self.qk_channels = qk_channels
        self.v_channels = v_channels
        self.pool = pool
        self.scale = float(scale)
        self.backend = backend
        self.spectral_norm = spectral_norm

        self.query = nn.Conv2d(in_channels, qk_channels, 1, bias=bias)
        self.key = nn.Conv2d(in_channels, qk_channels, 1, bias=bias)
        self.value = nn.Conv2d(in_channels, v_channels, 1, bias=bias)
        self.out = nn.Conv2d(v_channels, in_channels, 1, bias=bias) if out_proj else None
        self.gamma = nn.Parameter(torch.zeros(1))
        if spectral_norm:
            for conv in self._convs():
                nn.utils.parametrizations.spectral_norm(conv)

    def _convs(self) -> list[nn.Conv2d]:
        return [c for c in (self.query, self.key, self.value, self.out) if c is not None]

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, qk_channels={self.qk_channels}, v_channels={self.v_channels}, "
            f"out_proj={self.out is not None}, pool={self.pool}, bias={self.query.bias is not None}, "
            f"spectral_norm={self.spectral_norm}, scale={self.scale}, backend={self.backend!r}"
        )

    def projection_weights(self, dtype: torch.dtype | None = None) -> dict[str, Tensor | None]:
        """The effective (spectrally normalised) weights, as the op takes them."""

        def cast(t: Tensor | None) -> Tensor | None:
            return t if t is None or dtype is None else t.to(dtype)

        weights: dict[str, Tensor | None] = {}
        for short, conv in (("q", self.query), ("k", self.key), ("v", self.value), ("o", self.out)):
            weights[f"w{short}"] = None if conv is None else cast(conv.weight)
            weights[f"b{short}"] = None if conv is None else cast(conv.bias)
        return weights

    def _check_input(self, x: Tensor) -> None:
        """Refusals said in the module's terms; the op alone would blame its weight wq."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}; convert it with torch.as_tensor(x)")
        if x.dim() == 4 and x.shape[1] != self.in_channels:
            raise ValueError(
                f"x has {x.shape[1]} channels (shape {tuple(x.shape)}) but this SelfAttention "
                f"was built with in_channels={self.in_channels}"
            )

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B, C, H, W). Weights follow x's dtype (as autocast would).
        An empty batch (B = 0) gives an empty output, as ``nn.Conv2d`` does."""
        self._check_input(x)
        w = self.projection_weights(x.dtype)
        return self_attention(
            x, w["wq"], w["wk"], w["wv"], self.gamma.to(x.dtype),
            bq=w["bq"], bk=w["bk"], bv=w["bv"], wo=w["wo"], bo=w["bo"],
            pool=self.pool, scale=self.scale, backend=self.backend,
        )

    @torch.no_grad()
    def explain(self, x: Tensor) -> str:
        """Which backend ``backend="auto"`` picks for this module on x (B, C, H, W), and why each other refuses."""
        self._check_input(x)
        w = self.projection_weights(x.dtype)
        return explain(
            x, w["wq"], w["wk"], w["wv"], self.gamma.to(x.dtype),
            bq=w["bq"], bk=w["bk"], bv=w["bv"], wo=w["wo"], bo=w["bo"], pool=self.pool, scale=self.scale,
        )

    @torch.no_grad()
    def attention_rows(self, x: Tensor, positions: Sequence[tuple[int, int]] | Tensor) -> Tensor:
        """Attention weights of chosen query positions over all keys.

        Forms only a P x M matrix (P queries, M keys), never N x N.

        Args:
            x: (B, C, H, W) input.
            positions: P query positions as (row, col) pairs, or a (P, 2) integer tensor.

        Returns:
            (B, P, H', W') float32 weights summing to 1 over (H', W'), the key grid
            (H' = H / pool, W' = W / pool).

        Raises:
            ValueError: x not (B, C, H, W), H or W not divisible by pool, or positions
                not (row, col) integer pairs inside the grid.
        """
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be (B, {self.in_channels}, H, W); got {shape}")
        height, width = x.shape[2:]
        check_pool(self.pool, height, width)
        pos = _query_positions(positions, height, width, x.device)
        rows, cols = pos[:, 0], pos[:, 1]
        # Conv weights are (out, in, 1, 1); the einsums take (out, in).
        w = {
            name: t.reshape(t.shape[0], -1) if t is not None and name.startswith("w") else t
            for name, t in self.projection_weights(torch.float32).items()
        }
        xf = x.float()
        q = torch.einsum("oc,bcp->bpo", w["wq"], xf[:, :, rows, cols])
        k = torch.einsum("oc,bchw->bohw", w["wk"], xf)
        if w["bq"] is not None:
            q = q + w["bq"]
            k = k + w["bk"][:, None, None]
        if self.pool > 1:  # BigGAN order: project, then max-pool the keys
            k = F.max_pool2d(k, self.pool)
        weights = torch.softmax(self.scale * (q @ k.flatten(2)), dim=-1)
        return weights.reshape(x.shape[0], pos.shape[0], *k.shape[2:])

    @classmethod
    def from_state_dict(
        cls, state_dict: Mapping[str, Tensor], source: str, backend: str = "auto"
    ) -> "SelfAttention":
        """Builds a module computing the same function as a public SAGAN module.

        Args:
            state_dict: the original module's ``state_dict()``.
            source: "heykeetae" (Self_Attn), "biggan" (Attention), "fastai" or
                "deoldify" (fastai / DeOldify SelfAttention) or "studiogan"
                (SelfAttention).
            backend: as in the constructor.

        Raises:
            ValueError: an unknown source, or keys/shapes that do not fit it.
        """
        from .sagan_weights import convert_state_dict

        config, converted = convert_state_dict(state_dict, source)
        module = cls(**config, backend=backend)
        module.load_state_dict(converted)
        return module
