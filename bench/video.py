"""Video on this CPU: frames per second of the naive per-frame pipeline vs the shipped video path (same run),
and per-frame gesture accuracy on a recorded clip with and without smoothing.

    .venv/bin/python bench/video.py --detector models/detector --classifier models/classifier

Clip: 22 consecutive captures (`2_pic00199` .. `2_pic00220`) of one Hands Dataset recording (one hand;
4 fingers, then 3), ground truth from its VOC boxes. Speed: the clip's frames resized to 640x480 and
1280x720, one frame per call, the two paths alternating frame by frame so both see the same load.
Naive: `HybridPipeline(fast=False)(frame)` on every frame (fp32 eager PyTorch, no tracking). Shipped:
`hybrid.video.HandTracker` on the default pipeline (OpenVINO, detector at <= 320; ByteTrack; smoothing).
Accuracy: a frame is right when the tracked hand that best overlaps the true box (IoU >= 0.5) has the true
label (labels are the classifier's best class: min_confidence 0); a frame with no such hand is wrong.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import machine  # noqa: E402

from hybrid.constants import data_root  # noqa: E402
from hybrid.data.labels import canonical_label  # noqa: E402
from hybrid.pipeline import HybridPipeline  # noqa: E402
from hybrid.video import WINDOW, HandTracker  # noqa: E402

RECORDING, FIRST, LAST = "2", 199, 220
SIZES = ((640, 480), (1280, 720))


def clip() -> tuple[list[Image.Image], list[tuple[tuple[float, ...], str]]]:
    """The clip's frames (RGB) and (true box, true label) per frame."""
    images = data_root() / "subhih-handsdataset" / "images"
    frames, truth = [], []
    for number in range(FIRST, LAST + 1):
        xml = next(images.glob(f"*/{RECORDING}_pic{number:05d}.xml"))
        (hand,) = ET.parse(xml).getroot().findall("object")
        truth.append((tuple(float(hand.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")),
                      canonical_label(hand.findtext("name"))))  # fmt: skip
        frames.append(Image.open(xml.with_suffix(".jpg")).convert("RGB"))
    return frames, truth


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def accuracy(pipe: HybridPipeline, frames, truth, window: int) -> float:
    tracker = HandTracker(pipe, fps=10.0, window=window)
    right = 0
    for frame, (box, label) in zip(frames, truth):
        hands = [h for h in tracker(frame).hands if iou(h.box, box) >= 0.5]
        best = max(hands, key=lambda h: iou(h.box, box), default=None)
        right += best is not None and best.label == label
    return right / len(frames)


def fps(naive: HybridPipeline, shipped: HybridPipeline, frames, size, rounds: int) -> tuple[float, float, float]:
    """(naive fps, shipped fps, hands per frame of the shipped path) over `rounds` passes of the clip."""
    resized = [np.asarray(frame.resize(size)) for frame in frames]
    tracker = HandTracker(shipped, fps=30.0)
    naive(resized[0]), tracker(resized[0])  # warm up
    times = {"naive": [], "shipped": []}
    hands = 0
    for _ in range(rounds):
        for frame in resized:
            start = time.perf_counter()
            naive(frame)
            times["naive"].append(time.perf_counter() - start)
            start = time.perf_counter()
            hands += len(tracker(frame).hands)
            times["shipped"].append(time.perf_counter() - start)
    return 1 / statistics.mean(times["naive"]), 1 / statistics.mean(times["shipped"]), hands / len(times["shipped"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--detector", required=True, help="trained detector folder or Hub id")
    parser.add_argument("--classifier", required=True, help="trained classifier folder or Hub id")
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenVINO threads")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the 22-frame clip per size")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    naive = HybridPipeline.from_pretrained(args.detector, args.classifier, fast=False)
    shipped = HybridPipeline.from_pretrained(args.detector, args.classifier, min_confidence=0.0)
    frames, truth = clip()
    print(machine())
    print(f"models: {args.detector}, {args.classifier}; shipped: {shipped!r}")
    print(f"clip: {RECORDING}_pic{FIRST:05d}..{LAST:05d}, {len(frames)} frames, {args.rounds} rounds per size\n")
    print(f"{'frame size':<12}{'naive fps':>11}{'shipped video fps':>19}{'hands/frame':>13}")
    for size in SIZES:
        slow, fast, hands = fps(naive, shipped, frames, size, args.rounds)
        print(f"{size[0]}x{size[1]:<8}{slow:>11.1f}{fast:>19.1f}{hands:>13.2f}")
    raw, smooth = accuracy(shipped, frames, truth, 1), accuracy(shipped, frames, truth, WINDOW)
    print(f"\nper-frame gesture accuracy on the clip: raw {raw:.1%}, smoothed (window {WINDOW}) {smooth:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
