"""Per-image latency of the hybrid pipeline on this CPU: the naive path vs the shipped path, same run.

    .venv/bin/python bench/latency.py                        # architecture-only models (random weights)
    .venv/bin/python bench/latency.py --detector models/detector --classifier models/classifier

Photos: 800x600 Hands Dataset test images with 1-2 hands, one image at a time. Each timed call is what
`pipe(image)` does for that photo: decode, detect, cut THE crops, classify all crops in one batch.
Without trained models (the default) the networks have the shipped architectures (YOLOv8n at 320, ResNet-50
at --classifier-size, 112) and random weights; latency does not depend on the weights, but an untrained detector
finds no hands, so the classifier then gets the photo's ground-truth boxes (1-2 per photo, as the real detector
would give). The paths take turns in blocks of --block photos (10), so all see the same machine load (this
machine is shared: the load average is printed with the table), and a path's timing does not include the
thread pools the previous path left spinning (eager PyTorch's would otherwise slow OpenVINO's next photo).

Naive: fp32 eager PyTorch, detector at its trained size (320 for the architecture-only model, as
detector.yaml trains it), square letterbox. Shipped: `HybridPipeline` defaults (both networks in OpenVINO at
<= 320 px, letterbox padded to a stride multiple: 320x256 for these photos; int8 for both where the CPU has
VNNI/AMX and the models' training data calibrates them, else a bf16 classifier where native and an fp32
detector). `--precisions bf16 fp32` adds those OpenVINO
paths (bf16 was the shipped path before int8); `--torch-bf16` adds the best PyTorch-only path: what runs
without openvino.

Then a per-stage breakdown of each fast path (median ms per photo): decode, detector pre-processing
(letterbox), detector network, NMS + box scaling, crops, classifier pre-processing, classifier network, and
drawing the result (what the app adds). Architecture-only models are calibrated for int8 on Hands training
photos (their split.json is written to a temporary folder).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import cpu_name  # noqa: E402

from hybrid.detector import Detection, non_max_suppression  # noqa: E402
from hybrid.images import load_image  # noqa: E402
from hybrid.pipeline import HybridPipeline  # noqa: E402


def architecture_models(classifier_size: int = 112, detector_size: int = 320, calibration_folder=None):
    """YOLOv8n + ResNet-50 with random weights; with `calibration_folder`, both get a split.json there whose
    train split is Hands' (what int8 calibrates on)."""
    from ultralytics.nn.tasks import DetectionModel

    from hybrid.classifier import GestureClassifier
    from hybrid.data import read_dataset, split_records
    from hybrid.data.splits import save_split
    from hybrid.detector import HandDetector

    torch.manual_seed(0)
    detector = HandDetector(DetectionModel("yolov8n.yaml", nc=1, verbose=False), ["hand"], image_size=detector_size)
    classifier = GestureClassifier.create("resnet50", [str(i) for i in range(6)], image_size=classifier_size)
    if calibration_folder is not None:
        save_split(calibration_folder, split_records(read_dataset("hands", merge_labels=True)), 0, [0.8, 0.1, 0.1])
        detector.folder = classifier.folder = Path(calibration_folder)
    return detector, classifier


def photos(limit: int):
    from hybrid.data import read_dataset

    records = [
        r for r in read_dataset("hands", split="test") if (r.width, r.height) == (800, 600) and 1 <= len(r.boxes) <= 2
    ]
    step = max(1, len(records) // limit)
    return records[::step][:limit]


def run_once(pipe: HybridPipeline, record, use_truth: bool) -> tuple[float, float]:
    """(wall seconds, process CPU seconds over all threads) of one photo."""
    start, cpu = time.perf_counter(), time.process_time()
    image = load_image(record.image)
    found = pipe.detect([image])
    if use_truth:
        found = [[Detection(box.xyxy, 1.0, "hand") for box in record.boxes]]
    pipe.hands([image], found)
    return time.perf_counter() - start, time.process_time() - cpu


STAGES = ["decode", "det pre", "det network", "NMS", "crops", "clf pre", "clf network", "draw"]


def stage_times(pipe: HybridPipeline, record, use_truth: bool) -> dict[str, float]:
    """Seconds of each stage of one photo, run step by step as `pipe(image)` runs them."""
    with torch.inference_mode():
        return _stage_times(pipe, record, use_truth)


def _stage_times(pipe: HybridPipeline, record, use_truth: bool) -> dict[str, float]:
    from hybrid.classifier import Prediction
    from hybrid.detector import scale_boxes
    from hybrid.pipeline import draw_hands, merge

    times, clock = {}, time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        times[stage], clock = now - clock, now

    image = load_image(record.image)
    lap("decode")
    detector, size = pipe.detector, pipe.detector_size
    array = np.asarray(image)
    batch = detector.letterboxed([array], size, rect=pipe.fast)
    lap("det pre")
    raw = detector.raw_predictions(batch)
    lap("det network")
    output = non_max_suppression(raw, pipe.detector_threshold, detector.iou)[0]
    boxes = scale_boxes(batch.shape[2:], output[:, :4].astype(np.float64), array.shape[:2]).tolist()
    found = [Detection(tuple(box), float(score), "hand") for box, score in zip(boxes, output[:, 4].tolist())]
    if use_truth:
        found = [Detection(box.xyxy, 1.0, "hand") for box in record.boxes]
    lap("NMS")
    crops = pipe.crops(image, [d.box for d in found])
    lap("crops")
    pixels = pipe.classifier.pixel_values(crops)
    lap("clf pre")
    logits = pipe.classifier.network.run(pixels)
    probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    lap("clf network")
    names = pipe.classifier.label_names
    hands = [
        merge(d, [Prediction(names[int(row.argmax())], float(row.max()))], min_confidence=0.0)
        for d, row in zip(found, probabilities)
    ]
    draw_hands(image, hands)
    lap("draw")
    return times


def summarise(times: list[float]) -> tuple[float, float]:
    ms = sorted(1000 * t for t in times)
    return statistics.median(ms), ms[min(len(ms) - 1, int(np.ceil(0.95 * len(ms))) - 1)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--detector", default=None, help="trained detector folder/Hub id (default: architecture only)")
    parser.add_argument(
        "--classifier", default=None, help="trained classifier folder/Hub id (default: architecture only)"
    )
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--block", type=int, default=10, help="photos per turn of each path")
    parser.add_argument("--torch-bf16", action="store_true", help="also time the PyTorch-only fast path")
    parser.add_argument(
        "--precisions",
        nargs="*",
        choices=["fp32", "bf16", "int8"],
        default=["bf16"],
        help="also time the OpenVINO path in these precisions (default: bf16, the shipped path before int8)",
    )
    parser.add_argument("--classifier-size", type=int, default=112, help="architecture-only classifier input side")
    parser.add_argument("--threads", type=int, default=None, help="torch/OpenVINO threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.detector and args.classifier:
        from hybrid.classifier import GestureClassifier
        from hybrid.detector import HandDetector

        detector, classifier = (
            HandDetector.from_pretrained(args.detector),
            GestureClassifier.from_pretrained(args.classifier),
        )
        use_truth = False
    else:
        calibration = tempfile.mkdtemp(prefix="latency-calibration-")
        detector, classifier = architecture_models(args.classifier_size, calibration_folder=calibration)
        use_truth = True
    paths = {
        "naive (fp32 eager torch)": HybridPipeline(detector, classifier, fast=False),
        "shipped (defaults)": HybridPipeline(detector, classifier),
    }
    for precision in args.precisions:
        paths[f"openvino {precision}"] = HybridPipeline(detector, classifier, precision=precision)
    if args.torch_bf16:
        paths["torch only (bf16 where native)"] = HybridPipeline(detector, classifier, backend="torch")
    records = photos(args.images)
    for pipe in paths.values():
        for record in records[: args.warmup]:
            run_once(pipe, record, use_truth)
    times: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    for start in range(0, len(records), args.block):  # the paths take turns, a block of photos each
        for name, pipe in paths.items():
            block = records[start : start + args.block]
            run_once(pipe, block[0], use_truth)  # not timed: the previous path's threads may still spin
            for record in block:
                wall, used = run_once(pipe, record, use_truth)
                times[name].append(wall)
                cpu[name].append(used)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    capability = torch.backends.cpu.get_cpu_capability()
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"CPU capability {capability}, load average {os.getloadavg()[0]:.1f} (shared machine)"
    )
    print(
        f"models: {'trained folders' if not use_truth else 'YOLOv8n + ResNet-50 architectures, random weights'}; "
        f"{len(records)} Hands test photos 800x600, {sum(len(r.boxes) for r in records)} hands, one image per call"
    )
    print(
        f"{'path':<36} {'backend':<9} {'detector':>10} {'classifier':>10} {'median ms':>10} {'p95 ms':>8} "
        f"{'CPU ms':>7} {'speed-up':>8}"
    )
    baseline = None
    for name, pipe in paths.items():
        median, p95 = summarise(times[name])
        baseline = baseline or median
        print(
            f"{name:<36} {pipe.backend:<9} {pipe.detector_precision + ' ' + str(pipe.detector_size):>10} "
            f"{pipe.precision + ' ' + str(classifier.image_size):>10} "
            f"{median:>10.1f} {p95:>8.1f} {statistics.median(cpu[name]) * 1000:>7.1f} {baseline / median:>7.2f}x"
        )
    print("CPU ms: median process CPU time per photo over all threads (less sensitive to other load than wall time)")
    print(f"peak memory (RSS, whole process, all paths loaded): {peak_mb:.0f} MB")
    print()
    print("per stage, median ms per photo:")
    print(f"{'path':<36} " + " ".join(f"{stage:>11}" for stage in STAGES))
    for name, pipe in paths.items():
        if not pipe.fast:
            continue
        laps = [stage_times(pipe, record, use_truth) for record in records]
        print(f"{name:<36} " + " ".join(f"{statistics.median(1000 * t[s] for t in laps):>11.2f}" for s in STAGES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
