"""What the page shows of a photo or a frame: previews sized for the browser, the hints drawn on
them, and the way back from a click on a preview to the picture's pixel."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .photo import HintList, PhotoEditor, hex_colour

PREVIEW_SIDE = 1024  # longest side, in pixels, of the pictures sent to the browser
SMALL_SIDE = 512  # pictures smaller than this are sent enlarged
MARKER_RADIUS = 7


def preview_scale(width: int, height: int) -> float:
    """The scale from a picture's pixels to its preview's: down to ``PREVIEW_SIDE`` for large
    pictures, up by a whole factor towards ``SMALL_SIDE`` for small ones (film frames of old
    footage), so that they can be clicked precisely."""
    side = max(height, width)
    return PREVIEW_SIDE / side if side > PREVIEW_SIDE else float(max(1, SMALL_SIDE // side))


def preview(pixels: np.ndarray) -> np.ndarray:
    """A picture (H, W, 3) at its preview's scale (``preview_scale``)."""
    height, width = pixels.shape[:2]
    scale = preview_scale(width, height)
    if scale == 1.0:
        return pixels
    if scale > 1.0:
        return np.repeat(np.repeat(pixels, int(scale), axis=0), int(scale), axis=1)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))


def with_markers(pixels: np.ndarray, hints: HintList, frame: int | None = None, points=(), scaled: bool = False) -> np.ndarray:
    """The preview of ``pixels`` (already one when ``scaled``) with each hint drawn as a disc of its
    colour, the selected one ringed in red. For films, only the hints placed on ``frame`` are drawn, and
    ``points``: the others that hold there, where the render carries them.
    """
    scale = preview_scale(hints.width, hints.height)
    image = pixels if scaled else preview(pixels)
    canvas = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    marks = [(h.x, h.y, h.colour, i == hints.selected) for i, h in enumerate(hints.items) if frame is None or h.frame == frame]
    marks += [(p.x, p.y, hex_colour(p.rgb), False) for p in points]
    for x, y, colour, selected in marks:
        cx, cy = (x + 0.5) * scale, (y + 0.5) * scale
        r = MARKER_RADIUS + (3 if selected else 0)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour, outline="#d00000" if selected else "white", width=3)
        draw.ellipse((cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1), outline="black", width=1)
    return np.asarray(canvas)


def photo_pictures(editor: PhotoEditor) -> tuple[np.ndarray, np.ndarray]:
    """What the page shows of a photo: its gray preview with the hints marked, and the result's preview."""
    return with_markers(editor.gray(preview_scale(*editor.size)), editor.hints, scaled=True), preview(editor.result)


def clicked_pixel(index: Sequence[float], width: int, height: int) -> tuple[int, int]:
    """The picture's pixel under a click at ``index`` (x, y) on its preview."""
    scale = preview_scale(width, height)
    x, y = index[0], index[1]
    return min(width - 1, max(0, int(x / scale))), min(height - 1, max(0, int(y / scale)))
