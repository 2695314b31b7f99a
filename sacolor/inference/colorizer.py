"""Colour transfer: the generator predicts chroma at its render size, the input keeps its own L.

``Colorizer`` resizes the input's lightness to the render size, runs the
generator there (bf16 autocast on CUDA, eval mode, no grad), upsamples the
predicted ab to the input's full resolution and joins it with the input's own
L. Where that Lab colour falls outside sRGB, its chroma is reduced until it
fits instead of clipping RGB, so the output's L equals the input's L (up to
8-bit rounding) and detail and tone are the input's.
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
from ..colour import denormalize_ab, lab_to_rgb, normalize_l, rgb_to_lab
from .hints import Hint, hint_map

BUILTIN_CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "builtin.safetensors"
# Lab round-trip error above which a colour counts as out of the sRGB gamut.
GAMUT_TOLERANCE = 0.05
GAMUT_BISECTION_STEPS = 8  # chroma scale to 1/256: finer than 8-bit output shows
# (L (T, 1, h, w), ab (T, 2, h, w)) -> ab, applied to consecutive frames.
Stabilize = Callable[[Tensor, Tensor], Tensor]


def resolve_device(name: str) -> torch.device:
    """"cpu", "cuda" or "auto" (CUDA when available) -> a torch.device.

    Raises:
        ValueError: an unknown name, or "cuda" without a CUDA device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda or auto; got {name!r}")
    return torch.device(name)


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

    Raises:
        ValueError: the render size does not suit the generator.
    """

    def __init__(self, generator: nn.Module, render_size: tuple[int, int], device: torch.device) -> None:
        multiple = getattr(generator, "multiple", 1)
        if render_size[0] % multiple or render_size[1] % multiple:
            raise ValueError(
                f"render size {render_size[0]}x{render_size[1]} is not a multiple of {multiple}, "
                f"which this generator needs; use e.g. {multiple}x{2 * multiple}"
            )
        self.generator = generator.to(device).eval()
        self.render_size = render_size
        self.multiple = multiple
        self.device = device

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
    ) -> "Colorizer":
        """Load a checkpoint (the built-in model when ``path`` is None).

        Args:
            path: a checkpoint directory or ``.safetensors`` file.
            device: "cpu", "cuda" or "auto".
            render_size: (h, w); the checkpoint's training size when None.

        Raises:
            FileNotFoundError / ValueError: a missing or bad checkpoint, or a bad
                device or render size.
        """
        torch_device = resolve_device(device)
        generator, config = load_generator(BUILTIN_CHECKPOINT if path is None else path, torch_device)
        size = render_size or tuple(config["size"])
        return cls(generator, (int(size[0]), int(size[1])), torch_device)

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
    def predict_ab(self, lightness: Tensor, hints: Tensor | None = None) -> Tensor:
        """The generator's ab at the render size.

        Args:
            lightness: L in 0..100, (B, 1, H, W), any H and W.
            hints: optional hint channels (B or 1, 3, h, w) at the model size (see ``hint_channels``).

        Returns:
            ab in Lab units, float32 (B, 2, h, w) with (h, w) the model size (``model_size``).
        """
        extra = {}
        if hints is not None:
            extra["hints"] = hints.to(self.device).expand(lightness.shape[0], -1, -1, -1)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            ab = self.generator(normalize_l(self.to_render_size(lightness)), **extra)
        return denormalize_ab(ab.float())

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
        rgb = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        return to_uint8(self.colorize_float(rgb, stabilize, hints))

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


def to_uint8(rgb: Tensor) -> np.ndarray:
    """Float RGB (B, 3, H, W) in [0, 1] -> uint8 (B, H, W, 3), rounded."""
    return (rgb.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def lab_to_rgb_in_gamut(lab: Tensor) -> Tensor:
    """Lab -> sRGB, shrinking the chroma of out-of-gamut colours instead of clipping RGB.

    Clipping RGB changes a colour's lightness; scaling its ab towards 0 (gray,
    always in gamut) keeps L. The largest in-gamut scale is found by bisection,
    only for the pixels that need it.

    Args:
        lab: (B, 3, H, W) float, L in 0..100.

    Returns:
        (B, 3, H, W) RGB in [0, 1].
    """
    rgb = lab_to_rgb(lab)
    # Only a colour that ``lab_to_rgb`` clipped can be out of gamut, and a
    # clipped colour has a channel at 0 or 1: check just those pixels.
    clipped = ((rgb <= 0.0) | (rgb >= 1.0)).any(dim=-3)  # (B, H, W)
    if not clipped.any():
        return rgb
    outside = clipped.clone()
    outside[clipped] = _gamut_error(_as_image(lab.permute(0, 2, 3, 1)[clipped]), _as_image(rgb.permute(0, 2, 3, 1)[clipped]))[0, 0] > GAMUT_TOLERANCE
    if not outside.any():
        return rgb
    pixels = lab.permute(0, 2, 3, 1)[outside]  # (N, 3)
    lightness, chroma = pixels[:, :1], pixels[:, 1:]
    low = torch.zeros_like(lightness)
    high = torch.ones_like(lightness)
    for _ in range(GAMUT_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        trial = _as_image(torch.cat([lightness, middle * chroma], dim=1))
        fits = (_gamut_error(trial, lab_to_rgb(trial)) <= GAMUT_TOLERANCE).reshape(-1, 1)
        low = torch.where(fits, middle, low)
        high = torch.where(fits, high, middle)
    fitted = lab_to_rgb(_as_image(torch.cat([lightness, low * chroma], dim=1)))
    rgb = rgb.permute(0, 2, 3, 1).clone()
    rgb[outside] = fitted[0, :, 0].T
    return rgb.permute(0, 3, 1, 2)


def _as_image(pixels: Tensor) -> Tensor:
    """(N, 3) -> (1, 3, 1, N), the (..., 3, H, W) layout the Lab functions take."""
    return pixels.T.unsqueeze(0).unsqueeze(2)


def _gamut_error(lab: Tensor, rgb: Tensor) -> Tensor:
    """Largest Lab change (over the channels, dim -3) made by the clipping in ``lab_to_rgb``."""
    return (rgb_to_lab(rgb) - lab).abs().amax(dim=-3)
