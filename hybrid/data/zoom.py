"""Zoom copies: extra detector training images that show the same hands at other sizes.

The Hands Dataset's webcam photos show hands at ~19 % of the image width, Roboflow's close-ups at ~60 %.
A detector trained on one size range misses the other (cross-set recall 0.36 / 0.42). Ultralytics'
`scale` augmentation varies size by at most 2x, and mosaic only shrinks. A zoom copy crops (zoom in) or
pads (zoom out) a training image so its largest hand spans a random fraction of the copy's width, drawn
log-uniformly from `span` (e.g. 8-80 %), with a random aspect ratio (Roboflow stretches everything to a
square) and a random JPEG quality. With `turn`, that share of the copies is also turned a quarter (either way):
the Hands Dataset's hands point up (boxes ~1.9x taller than wide), Roboflow's point every way (~1:1), and a
quarter turn moves the boxes exactly, where Ultralytics' `degrees` can only grow them. With `photometric`, that
share of the copies is made grey or blurred (half each; Ultralytics already jitters hue, saturation and value):
one person's skin and one webcam's sharpness should not be what a hand is. Copies are written once, before
training, next to the YOLO dataset.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageFilter, ImageOps

from hybrid.crops import FILL
from hybrid.data.records import HandBox, ImageRecord

ASPECT = (0.75, 1.33)  # width / height of a copy, log-uniform
JPEG_QUALITY = (40, 95)
MIN_VISIBLE = 0.4  # a hand cut by the crop keeps its box when this much of it is inside, else the copy is dropped
MAX_SIDE = 800  # copies are downscaled to this longer side
BLUR = (0.002, 0.008)  # Gaussian blur radius / the copy's longer side: 0.3-1.3 px at a 160 px detector


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _window(rng: random.Random, length: float, size: float, lo: float, hi: float) -> float:
    """Start of a window of `length` on [0, size] (or around it when longer) that holds [lo, hi] if it can."""
    first, last = hi - length, lo  # starts that keep the hand inside
    if length <= size:
        first, last = max(first, 0.0), min(last, size - length)
    else:
        first, last = max(first, size - length), min(last, 0.0)
    return rng.uniform(first, last) if first <= last else (lo + hi - length) / 2


def zoom_copy(
    record: ImageRecord, span: Sequence[float], rng: random.Random, turn: float = 0.0
) -> tuple[Image.Image, list[HandBox]]:
    """One copy of `record` (image, boxes in the copy's pixels), turned a quarter with probability `turn`; raises
    ValueError when no hand stays whole."""
    image = record.load()
    width, height = image.size
    hand = max(record.boxes, key=lambda b: b.x1 - b.x0)
    copy_w = (hand.x1 - hand.x0) / _log_uniform(rng, *span)
    copy_h = copy_w / _log_uniform(rng, *ASPECT)
    copy_h = max(copy_h, (hand.y1 - hand.y0) * 1.05)  # a tall hand is never cut
    left = _window(rng, copy_w, width, hand.x0, hand.x1)
    top = _window(rng, copy_h, height, hand.y0, hand.y1)
    boxes = []
    for box in record.boxes:
        x0, y0 = max(box.x0, left), max(box.y0, top)
        x1, y1 = min(box.x1, left + copy_w), min(box.y1, top + copy_h)
        if x1 <= x0 or y1 <= y0:
            continue
        if (x1 - x0) * (y1 - y0) < MIN_VISIBLE * box.area:
            raise ValueError("a hand would be cut")
        boxes.append(HandBox(x0 - left, y0 - top, x1 - left, y1 - top, box.label))
    out_w, out_h = max(round(copy_w), 8), max(round(copy_h), 8)
    canvas = Image.new("RGB", (out_w, out_h), FILL)
    inside = (
        max(round(left), 0),
        max(round(top), 0),
        min(round(left + copy_w), width),
        min(round(top + copy_h), height),
    )
    canvas.paste(image.crop(inside), (inside[0] - round(left), inside[1] - round(top)))
    scale = min(1.0, MAX_SIDE / max(out_w, out_h))
    if scale < 1.0:
        canvas = canvas.resize((max(round(out_w * scale), 8), max(round(out_h * scale), 8)), Image.Resampling.BILINEAR)
        boxes = [HandBox(b.x0 * scale, b.y0 * scale, b.x1 * scale, b.y1 * scale, b.label) for b in boxes]
    if turn and rng.random() < turn:  # no draw when off: copies without turns stay as they were
        return quarter_turn(canvas, boxes, clockwise=rng.random() < 0.5)
    return canvas, boxes


def quarter_turn(image: Image.Image, boxes: Sequence[HandBox], clockwise: bool) -> tuple[Image.Image, list[HandBox]]:
    """`image` turned 90 degrees and its boxes with it."""
    width, height = image.size
    if clockwise:  # (x, y) -> (height - y, x)
        turned = [HandBox(height - b.y1, b.x0, height - b.y0, b.x1, b.label) for b in boxes]
        return image.transpose(Image.Transpose.ROTATE_270), turned
    turned = [HandBox(b.y0, width - b.x1, b.y1, width - b.x0, b.label) for b in boxes]  # (x, y) -> (y, width - x)
    return image.transpose(Image.Transpose.ROTATE_90), turned


def grey_or_blurred(image: Image.Image, rng: random.Random) -> Image.Image:
    """`image` in grey or blurred, half each; the same size, so the boxes stay."""
    if rng.random() < 0.5:
        return ImageOps.grayscale(image).convert("RGB")
    return image.filter(ImageFilter.GaussianBlur(max(image.size) * rng.uniform(*BLUR)))


def zoom_copies(
    records: Sequence[ImageRecord],
    out_dir: Path,
    copies: int,
    span: Sequence[float],
    seed: int = 0,
    turn: float = 0.0,
    photometric: float = 0.0,
) -> list[ImageRecord]:
    """`copies` zoom copies of each record with hands (a `turn` share turned a quarter, a `photometric` share grey
    or blurred), written as JPEGs under `out_dir`; their records."""
    rng = random.Random(seed)
    looks = random.Random(f"photometric-{seed}")  # its own draws: the copies' geometry is the same with it or without
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for index, record in enumerate(records):
        if not record.boxes:
            continue
        for copy in range(copies):
            try:
                image, boxes = zoom_copy(record, span, rng, turn)
            except ValueError:
                continue
            if photometric and looks.random() < photometric:
                image = grey_or_blurred(image, looks)
            path = out_dir / f"{index:05d}-{copy}.jpg"
            image.save(path, quality=rng.randint(*JPEG_QUALITY))
            name = f"zoom-{copy}-{record.name or index}"
            made.append(ImageRecord(path, boxes, record.source, "train", image.width, image.height, name))
    return made
