"""THE crop: a pixel box -> a square crop with context around it.

Training (crop datasets) and inference (the pipeline) both call `square_crop`, so the classifier
sees at serve time exactly what it saw in training. Only the jitter differs: training may randomly
scale and shift the square; inference never does.
"""

from __future__ import annotations

import math
import random
from typing import Optional, Sequence

from PIL import Image

CONTEXT = 0.15  # the square's side is the box's longer side times (1 + 2 * CONTEXT)
FILL = (114, 114, 114)  # the grey Ultralytics pads with; used where the square leaves the image


def crop_square_box(
    box: Sequence[float],
    context: float = CONTEXT,
    scale_jitter: float = 0.0,
    shift_jitter: float = 0.0,
    rng: Optional[random.Random] = None,
) -> tuple[float, float, float, float]:
    """The square (x0, y0, x1, y1) that `square_crop` cuts for `box`; it may extend past the image."""
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"box must be 4 numbers (x0, y0, x1, y1), got {box!r}") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"box must be finite numbers, got {box!r}")
    side = max(x1 - x0, y1 - y0, 1.0) * (1.0 + 2.0 * context)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    if scale_jitter or shift_jitter:
        rng = rng or random.Random()
        side *= rng.uniform(1.0 - scale_jitter, 1.0 + scale_jitter)
        cx += rng.uniform(-shift_jitter, shift_jitter) * side
        cy += rng.uniform(-shift_jitter, shift_jitter) * side
    half = side / 2.0
    return cx - half, cy - half, cx + half, cy + half


def square_crop(
    image: Image.Image,
    box: Sequence[float],
    context: float = CONTEXT,
    scale_jitter: float = 0.0,
    shift_jitter: float = 0.0,
    rng: Optional[random.Random] = None,
) -> Image.Image:
    """Cut the square around `box` (pixels, x0 y0 x1 y1) out of `image`, padding with grey outside it."""
    left, top, right, bottom = (round(v) for v in crop_square_box(box, context, scale_jitter, shift_jitter, rng))
    side = max(right - left, 1)
    # PIL pads out-of-image regions with black; paste onto grey ourselves instead.
    canvas = Image.new("RGB", (side, side), FILL)
    inside = (max(left, 0), max(top, 0), min(left + side, image.width), min(top + side, image.height))
    if inside[2] > inside[0] and inside[3] > inside[1]:
        canvas.paste(image.crop(inside), (inside[0] - left, inside[1] - top))
    return canvas
