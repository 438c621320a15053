"""Video on this CPU: frames per second of the naive per-frame pipeline vs the shipped video path (same run),
and per-frame gesture accuracy on recorded clips with and without smoothing.

    .venv/bin/python bench/video.py --detector models/detector --classifier models/classifier \
        [--held-out DETECTOR CLASSIFIER]

Clips: every run of >= 10 consecutive captures (`<recording>_picNNNNN`) in the Hands Dataset subset, 8 runs,
114 frames; ground truth from their VOC boxes. The first, `2_pic00199..220` (one hand; 4 fingers, then 3), is
the one the tests record and the speed clip. Speed: its frames resized to 640x480 and 1280x720, one frame per
call, the two paths alternating frame by frame so both see the same load. Naive:
`HybridPipeline(fast=False)(frame)` on every frame (fp32 eager PyTorch, no tracking). Shipped:
`hybrid.video.HandTracker` on the default pipeline (OpenVINO, detector at <= 320; ByteTrack; smoothing).
Accuracy: a true hand is right when the tracked hand that best overlaps it (IoU >= 0.5) has the true label
(labels are the classifier's best class: min_confidence 0); a hand with no such match is wrong. Every model
pair is printed with how many clip frames its split.json puts in its training split: a clip the models
trained on says little about smoothing, so `--held-out` scores a second pair (e.g. trained on Roboflow
only: `python -m bench.generalize` builds it) that never saw these recordings.
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
from hybrid.data.records import ImageRecord  # noqa: E402
from hybrid.data.splits import load_split, record_id  # noqa: E402
from hybrid.evaluate import iou_matrix  # noqa: E402
from hybrid.pipeline import HybridPipeline  # noqa: E402
from hybrid.video import WINDOW, HandTracker  # noqa: E402

# (recording, first, last capture): the runs of >= 10 consecutive captures in the Hands subset
CLIPS = (
    ("2", 199, 220),
    ("3_1528499009.07", 14, 26),
    ("2", 248, 257),
    ("2", 304, 313),
    ("2", 525, 539),
    ("5", 90, 103),
    ("3_1528505750.77", 12, 23),
    ("996", 53, 70),
)
SIZES = ((640, 480), (1280, 720))

Truth = list[tuple[tuple[float, ...], str]]  # (true box, true label) per hand


def clip(recording: str, first: int, last: int) -> tuple[list[Image.Image], list[Truth], list[Path]]:
    """The clip's frames (RGB), the true hands per frame, and the frames' image paths."""
    images = data_root() / "subhih-handsdataset" / "images"
    frames, truth, paths = [], [], []
    for number in range(first, last + 1):
        xml = next(images.glob(f"*/{recording}_pic{number:05d}.xml"))
        hands = ET.parse(xml).getroot().findall("object")
        truth.append([(tuple(float(hand.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")),
                       canonical_label(hand.findtext("name"))) for hand in hands])  # fmt: skip
        paths.append(xml.with_suffix(".jpg"))
        frames.append(Image.open(paths[-1]).convert("RGB"))
    return frames, truth, paths


def right_hands(pipe: HybridPipeline, frames, truth: list[Truth], window: int) -> int:
    """True hands whose best-overlapping tracked hand has the true label, one tracker over the clip."""
    tracker = HandTracker(pipe, fps=10.0, window=window)
    right = 0
    for frame, hands_true in zip(frames, truth):
        hands = tracker(frame).hands
        overlaps = iou_matrix([hand.box for hand in hands], [box for box, _ in hands_true])  # found x true
        for column, (_, label) in enumerate(hands_true):
            if hands and overlaps[:, column].max() >= 0.5:
                right += hands[int(overlaps[:, column].argmax())].label == label
    return right


def trained_on(folders, paths: list[Path]) -> int:
    """How many of these images the models' split.json files put in a training split."""
    ids = {record_id(ImageRecord(name=p.name, boxes=[], image=p, source="hands")) for p in paths}
    return len(set().union(*[(load_split(f) or {}).get("train", set()) & ids for f in folders]))


def accuracy_rows(name: str, folders, pipe: HybridPipeline, clips) -> None:
    """Prints raw and smoothed per-frame accuracy on the first clip and on all clips."""
    paths = [p for _, _, clip_paths in clips for p in clip_paths]
    seen = trained_on(folders, paths)
    print(f"\n{name}: {', '.join(map(str, folders))} (trained on {seen} of these {len(paths)} frames)")
    for label, chosen in ((f"clip {clip_name(*CLIPS[0])}", clips[:1]), (f"all {len(clips)} clips", clips)):
        hands = sum(len(t) for _, truth, _ in chosen for t in truth)
        raw = sum(right_hands(pipe, frames, truth, 1) for frames, truth, _ in chosen) / hands
        smooth = sum(right_hands(pipe, frames, truth, WINDOW) for frames, truth, _ in chosen) / hands
        print(f"  {label:<28} {hands:>4} hands: raw {raw:6.1%}, smoothed (window {WINDOW}) {smooth:6.1%}")


def clip_name(recording: str, first: int, last: int) -> str:
    return f"{recording}_pic{first:05d}..{last:05d}"


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
    parser.add_argument(
        "--held-out", nargs=2, metavar=("DETECTOR", "CLASSIFIER"), help="a pair that never saw the clips"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    naive = HybridPipeline.from_pretrained(args.detector, args.classifier, fast=False)
    shipped = HybridPipeline.from_pretrained(args.detector, args.classifier, min_confidence=0.0)
    clips = [clip(*c) for c in CLIPS]
    frames = clips[0][0]
    print(machine())
    print(f"models: {args.detector}, {args.classifier}; shipped: {shipped!r}")
    print(f"speed clip: {clip_name(*CLIPS[0])}, {len(frames)} frames, {args.rounds} rounds per size\n")
    print(f"{'frame size':<12}{'naive fps':>11}{'shipped video fps':>19}{'hands/frame':>13}")
    for size in SIZES:
        slow, fast, hands = fps(naive, shipped, frames, size, args.rounds)
        print(f"{size[0]}x{size[1]:<8}{slow:>11.1f}{fast:>19.1f}{hands:>13.2f}")
    print(f"\nper-frame gesture accuracy (clips: {', '.join(clip_name(*c) for c in CLIPS)})")
    accuracy_rows("shipped models", (args.detector, args.classifier), shipped, clips)
    if args.held_out:
        pipe = HybridPipeline.from_pretrained(*args.held_out, min_confidence=0.0)
        accuracy_rows("held-out models", args.held_out, pipe, clips)
    return 0


if __name__ == "__main__":
    sys.exit(main())
