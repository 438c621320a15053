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
    size: Optional[int] = None,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> Image.Image:
    """Cut the square around `box` (pixels, x0 y0 x1 y1) out of `image`, padding with grey outside it; with
    `size`, the square comes out `size` x `size` pixels (see `cut_square`)."""
    return cut_square(image, crop_square_box(box, context, scale_jitter, shift_jitter, rng), size, resample)


def cut_square(
    image: Image.Image,
    square: Sequence[float],
    size: Optional[int] = None,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> Image.Image:
    """The pixels of `square` (x0, y0, x1, y1, from `crop_square_box`), grey where it leaves the image.

    With `size`, the square is resized to `size` x `size` as it is cut (with `resample`): only the part inside
    the image is read and scaled, so a hand box of a 50-megapixel photo never exists at full resolution (the
    pipeline cuts at the classifier's input size; the same crop cut whole and then resized differs only in the
    pixels where the image meets the grey)."""
    left, top, right, bottom = (round(v) for v in square)
    side = max(right - left, 1)
    inside = (max(left, 0), max(top, 0), min(left + side, image.width), min(top + side, image.height))
    if size is None or size == side:
        # PIL pads out-of-image regions with black; paste onto grey ourselves instead.
        canvas = Image.new("RGB", (side, side), FILL)
        if inside[2] > inside[0] and inside[3] > inside[1]:
            canvas.paste(image.crop(inside), (inside[0] - left, inside[1] - top))
        return canvas
    scale = size / side
    canvas = Image.new("RGB", (size, size), FILL)
    x0, y0 = round((inside[0] - left) * scale), round((inside[1] - top) * scale)
    x1, y1 = round((inside[2] - left) * scale), round((inside[3] - top) * scale)
    if x1 > x0 and y1 > y0:
        source = (
            max(left + x0 / scale, 0.0),
            max(top + y0 / scale, 0.0),
            min(left + x1 / scale, image.width),
            min(top + y1 / scale, image.height),
        )
        canvas.paste(image.resize((x1 - x0, y1 - y0), resample, box=source), (x0, y0))
    return canvas


def on_background(crop: Image.Image, square: Sequence[float], box: Sequence[float], background: Image.Image):
    """`crop` (cut from `square`) with everything outside the hand's `box` taken from `background` (a training
    augmentation: the context around a hand then says nothing about the room or camera it came from)."""
    left, top = round(square[0]), round(square[1])
    inner = tuple(round(v) for v in (box[0] - left, box[1] - top, box[2] - left, box[3] - top))
    inner = (max(inner[0], 0), max(inner[1], 0), min(inner[2], crop.width), min(inner[3], crop.height))
    result = background.convert("RGB").resize(crop.size, Image.Resampling.BILINEAR)
    if inner[2] > inner[0] and inner[3] > inner[1]:
        result.paste(crop.crop(inner), inner[:2])
    return result
