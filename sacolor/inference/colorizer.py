"""Colour transfer: the generator predicts chroma at its render size, the input keeps its own L.

``Colorizer`` resizes the input's lightness to the render size, runs the
generator there (eval mode, no grad; bf16 autocast on CUDA, as
``options.autocast_dtype`` decides), upsamples the predicted ab to the
input's full resolution and joins it with the input's own L. Where that Lab
colour falls outside sRGB, its chroma is reduced until it fits instead of
clipping RGB, so the output's L equals the input's L (up to 8-bit rounding)
and detail and tone are the input's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import load_generator
from ..colour import AB_SCALE, denormalize_ab, lab_to_rgb_in_gamut, normalize_l, rgb_to_lab, to_float, to_uint8
from ..options import autocast, autocast_dtype, check_chroma_floor, check_chroma_gain, check_multiple, resolve_device
from .hints import Hint, hint_map

BUILTIN_CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "builtin.safetensors"
# (L (T, 1, h, w), ab (T, 2, h, w)) -> ab, applied to consecutive frames.
Stabilize = Callable[[Tensor, Tensor], Tensor]


class Colorizer:
    """A generator plus the render size it runs at.

    A square render size N x N keeps the input's aspect ratio: the model runs
    at about N*N pixels shaped like the input (sides rounded to the
    generator's multiple), so a wide film frame is not squashed into a
    square. A non-square render size is used exactly.

    Args:
        generator: normalised L (B, 1, h, w) -> normalised ab (B, 2, h, w).
        render_size: (h, w) the generator runs at; multiples of its ``multiple``.
        device: where the generator lives; bf16 autocast is used on CUDA.
        chroma_gain, chroma_floor: the chroma c of the generator's ab (hue kept) is shown as
            ``chroma_gain * max(c - chroma_floor, 0)`` (1 and 0: as predicted). A model trained with
            an L2 loss paints the mean of the colours a gray patch could have, which is grayer than
            any of them: a gain above 1 gives that chroma back, and the floor drops the weakest
            chroma, where the model was unsure of the hue (a neutral ground tinted blue or orange),
            so the gain does not strengthen it. Hints go through the inverse on the way in, so a
            hinted colour comes out as given.

    Raises:
        ValueError: the render size does not suit the generator, or a bad chroma gain or floor.
    """

    def __init__(
        self,
        generator: nn.Module,
        render_size: tuple[int, int],
        device: torch.device,
        chroma_gain: float = 1.0,
        chroma_floor: float = 0.0,
    ) -> None:
        multiple = getattr(generator, "multiple", 1)
        check_multiple("render size", render_size, multiple, "this generator", f"use e.g. {multiple}x{2 * multiple}")
        self.generator = generator.to(device).eval()
        self.render_size = render_size
        self.multiple = multiple
        self.device = device
        self.chroma_gain = check_chroma_gain("chroma gain", chroma_gain)
        self.chroma_floor = check_chroma_floor("chroma floor", chroma_floor)

    def model_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) the generator runs at for an input of ``input_size`` (H, W)."""
        side, width = self.render_size
        if side != width:
            return self.render_size
        aspect = math.sqrt(input_size[0] / input_size[1])
        return tuple(max(self.multiple, round(side * f / self.multiple) * self.multiple) for f in (aspect, 1 / aspect))

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike | None = None,
        device: str = "auto",
        render_size: tuple[int, int] | None = None,
        chroma_gain: float | None = None,
        chroma_floor: float | None = None,
    ) -> "Colorizer":
        """Load a checkpoint (the built-in model when ``path`` is None).

        Args:
            path: a checkpoint directory or ``.safetensors`` file.
            device: "cpu", "cuda" or "auto".
            render_size: (h, w); the checkpoint's training size when None.
            chroma_gain, chroma_floor: see the class; the checkpoint's ``chroma_gain`` and
                ``chroma_floor`` (1 and 0 if it has none) when None.

        Raises:
            FileNotFoundError / ValueError: a missing or bad checkpoint, or a bad
                device, render size, chroma gain or floor.
        """
        torch_device = resolve_device(device)
        generator, config = load_generator(BUILTIN_CHECKPOINT if path is None else path, torch_device)
        size = render_size or tuple(config["size"])
        gain = config["chroma_gain"] if chroma_gain is None else chroma_gain
        floor = config["chroma_floor"] if chroma_floor is None else chroma_floor
        return cls(generator, (int(size[0]), int(size[1])), torch_device, gain, floor)

    def lightness(self, rgb: Tensor) -> Tensor:
        """L (B, 1, H, W) in 0..100 of RGB (B, 3, H, W) in [0, 1], on this device."""
        return rgb_to_lab(rgb.to(self.device, torch.float32))[:, :1]

    @property
    def accepts_hints(self) -> bool:
        """Whether the generator takes colour hints (``efficientnet_unet`` does)."""
        return bool(getattr(self.generator, "accepts_hints", False))

    def hint_channels(self, hints: Sequence[Hint], input_size: tuple[int, int]) -> Tensor:
        """Users' points (in pixels of an input of ``input_size`` (H, W)) -> hint channels (1, 3, h, w).

        Raises:
            ValueError: the generator takes no hints.
        """
        if not self.accepts_hints:
            raise ValueError(
                "this model takes no colour hints; use a checkpoint of --netG efficientnet_unet "
                "(the built-in model is one)"
            )
        return hint_map(hints, input_size, self.model_size(input_size), self.device)

    @torch.inference_mode()
    def encode(self, lightness: Tensor) -> list[Tensor] | None:
        """What ``predict_ab`` can reuse while only the hints change (the generator's ``encode``:
        the features of L), or None for a generator without that split.

        Args:
            lightness: L in 0..100, (B, 1, H, W), any H and W.
        """
        if not hasattr(self.generator, "encode"):
            return None
        with autocast(self.device, autocast_dtype(self.device)):
            return self.generator.encode(normalize_l(self.to_render_size(lightness)))

    @torch.inference_mode()
    def predict_ab(self, lightness: Tensor, hints: Tensor | None = None, encoded: list[Tensor] | None = None) -> Tensor:
        """The generator's ab at the render size.

        Args:
            lightness: L in 0..100, (B, 1, H, W), any H and W.
            hints: optional hint channels (B or 1, 3, h, w) at the model size (see ``hint_channels``).
            encoded: optional ``encode(lightness)``, kept from an earlier call (the same result, sooner).

        Returns:
            ab in Lab units, float32 (B, 2, h, w) with (h, w) the model size (``model_size``).
        """
        extra = {}
        if hints is not None:
            hints = hints.to(self.device)
            if self.shapes_chroma:
                hints = torch.cat((self.unshape_chroma(hints[:, :2]), hints[:, 2:]), 1)
            extra["hints"] = hints.expand(lightness.shape[0], -1, -1, -1)
        if encoded is not None:
            extra["features"] = encoded
        with autocast(self.device, autocast_dtype(self.device)):
            ab = self.generator(normalize_l(self.to_render_size(lightness)), **extra)
        ab = denormalize_ab(ab.float())
        return self.shape_chroma(ab) if self.shapes_chroma else ab

    @property
    def shapes_chroma(self) -> bool:
        """Whether the chroma curve changes anything: gain 1 with floor 0 (the built-in model's) does not,
        and then frames skip it and come out exactly as predicted."""
        return self.chroma_gain != 1.0 or self.chroma_floor != 0.0

    def shape_chroma(self, ab: Tensor) -> Tensor:
        """ab (B, 2, h, w) in Lab units with its chroma c shown as ``chroma_gain * max(c - chroma_floor, 0)``."""
        chroma = ab.norm(dim=1, keepdim=True)
        return ab * (self.chroma_gain * (chroma - self.chroma_floor).clamp_min(0) / chroma.clamp_min(1e-6))

    def unshape_chroma(self, ab_norm: Tensor) -> Tensor:
        """The inverse of ``shape_chroma`` on normalised hint colours (B, 2, h, w): what the generator must
        paint for a hinted colour to be shown as given (gray, ab 0, stays gray)."""
        chroma = ab_norm.norm(dim=1, keepdim=True)
        return ab_norm * ((chroma / self.chroma_gain + self.chroma_floor / AB_SCALE) / chroma.clamp_min(1e-12))

    def to_render_size(self, lightness: Tensor) -> Tensor:
        """L (B, 1, H, W) resized (antialiased) to the model size, on this device, float32."""
        lightness = lightness.to(self.device, torch.float32)
        size = self.model_size(tuple(lightness.shape[-2:]))
        if tuple(lightness.shape[-2:]) == size:
            return lightness
        return F.interpolate(lightness, size=size, mode="bilinear", antialias=True, align_corners=False)

    def compose(self, lightness: Tensor, ab: Tensor) -> Tensor:
        """Join full-resolution L with ab upsampled to it.

        Args:
            lightness: L in 0..100, (B, 1, H, W).
            ab: ab in Lab units, (B, 2, h, w), any h and w.

        Returns:
            RGB in [0, 1], float32 (B, 3, H, W), whose L is ``lightness``.
        """
        ab = F.interpolate(ab.to(lightness.device, torch.float32), size=lightness.shape[-2:], mode="bilinear", align_corners=False)
        return lab_to_rgb_in_gamut(torch.cat([lightness.float(), ab], dim=1))

    def colorize(
        self, frames: np.ndarray, stabilize: Stabilize | None = None, hints: Sequence[Hint] = ()
    ) -> np.ndarray:
        """Colourise same-sized 8-bit RGB frames or photos, using only their L.

        Args:
            frames: uint8 (B, H, W, 3); colour inputs are treated as gray.
            stabilize: optional ``(L, ab) -> ab`` applied at the render size,
                in frame order (e.g. ``temporal.ChromaStabilizer``).
            hints: colour hints, (x, y) in the frames' pixels, for every frame.

        Returns:
            uint8 (B, H, W, 3).

        Raises:
            ValueError: hints for a model that takes none.
        """
        return to_uint8(self.colorize_float(to_float(frames, self.device), stabilize, hints))

    def colorize_float(self, rgb: Tensor, stabilize: Stabilize | None = None, hints: Sequence[Hint] = ()) -> Tensor:
        """``colorize`` on float RGB (B, 3, H, W) in [0, 1]; returns float RGB (B, 3, H, W)."""
        lightness = self.lightness(rgb)
        channels = self.hint_channels(hints, tuple(rgb.shape[-2:])) if hints else None
        return self.colorize_lightness(lightness, channels, stabilize)

    def colorize_lightness(self, lightness: Tensor, hints: Tensor | None = None, stabilize: Stabilize | None = None) -> Tensor:
        """Full-resolution L (B, 1, H, W) -> float RGB (B, 3, H, W): predict (with optional hint
        channels at the model size, see ``hint_channels``), stabilise, compose."""
        ab = self.predict_ab(lightness, hints)
        if stabilize is not None:
            ab = stabilize(self.to_render_size(lightness), ab)
        return self.compose(lightness, ab)
