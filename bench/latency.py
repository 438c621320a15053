"""Per-image latency of the hybrid pipeline on this CPU: the naive path vs the shipped path, same run.

    .venv/bin/python bench/latency.py                        # architecture-only models (random weights)
    .venv/bin/python bench/latency.py --detector models/detector --classifier models/classifier

Photos: 800x600 Hands Dataset test images with 1-2 hands, one image at a time. Each timed call is what
`pipe(image)` does for that photo: decode, detect, cut THE crops, classify all crops in one batch.
Without trained models (the default) the networks have the shipped architectures (YOLOv8n, ResNet-50 at
224) and random weights; latency does not depend on the weights, but an untrained detector finds no
hands, so the classifier then gets the photo's ground-truth boxes (1-2 per photo, as the real detector
would give). The paths alternate image by image, so both see the same machine load (this machine is
shared: the load average is printed with the table).

Naive: fp32 eager PyTorch, detector at its trained size (640 for the architecture-only model), square
letterbox. Shipped: `HybridPipeline` defaults (both networks in OpenVINO: detector fp32 at <= 320, same
letterbox, classifier bf16 where the CPU has native bf16, else fp32). `--torch-bf16` adds
the best PyTorch-only path (same sizes, classifier in bf16 where native): what runs without openvino.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hybrid.detector import Detection
from hybrid.images import load_image
from hybrid.pipeline import HybridPipeline


def architecture_models(classifier_size: int = 224, detector_size: int = 640):
    from ultralytics.nn.tasks import DetectionModel

    from hybrid.classifier import GestureClassifier
    from hybrid.detector import HandDetector

    torch.manual_seed(0)
    detector = HandDetector(DetectionModel("yolov8n.yaml", nc=1, verbose=False), ["hand"], image_size=detector_size)
    classifier = GestureClassifier.create("resnet50", [str(i) for i in range(6)], image_size=classifier_size)
    return detector, classifier


def photos(limit: int):
    from hybrid.data import read_dataset

    records = [
        r for r in read_dataset("hands", split="test") if (r.width, r.height) == (800, 600) and 1 <= len(r.boxes) <= 2
    ]
    step = max(1, len(records) // limit)
    return records[::step][:limit]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run_once(pipe: HybridPipeline, record, use_truth: bool) -> tuple[float, float]:
    """(wall seconds, process CPU seconds over all threads) of one photo."""
    start, cpu = time.perf_counter(), time.process_time()
    image = load_image(record.image)
    found = pipe.detect([image])
    if use_truth:
        found = [[Detection(box.xyxy, 1.0, "hand") for box in record.boxes]]
    pipe.hands([image], found)
    return time.perf_counter() - start, time.process_time() - cpu


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
    parser.add_argument("--torch-bf16", action="store_true", help="also time the PyTorch-only fast path")
    args = parser.parse_args(argv)

    if args.detector and args.classifier:
        from hybrid.classifier import GestureClassifier
        from hybrid.detector import HandDetector

        detector, classifier = (
            HandDetector.from_pretrained(args.detector),
            GestureClassifier.from_pretrained(args.classifier),
        )
        use_truth = False
    else:
        detector, classifier = architecture_models()
        use_truth = True
    paths = {
        "naive (fp32 eager torch)": HybridPipeline(detector, classifier, fast=False),
        "shipped (defaults)": HybridPipeline(detector, classifier),
    }
    if args.torch_bf16:
        paths["torch only (bf16 where native)"] = HybridPipeline(detector, classifier, backend="torch")
    records = photos(args.images)
    for pipe in paths.values():
        for record in records[: args.warmup]:
            run_once(pipe, record, use_truth)
    times: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    for record in records:  # alternate the paths so both see the same load
        for name, pipe in paths.items():
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
        f"{'path':<36} {'backend':<9} {'det px':>6} {'classifier':>10} {'median ms':>10} {'p95 ms':>8} "
        f"{'CPU ms':>7} {'speed-up':>8}"
    )
    baseline = None
    for name, pipe in paths.items():
        median, p95 = summarise(times[name])
        baseline = baseline or median
        print(
            f"{name:<36} {pipe.backend:<9} {pipe.detector_size:>6} "
            f"{pipe.precision + ' ' + str(classifier.image_size):>10} "
            f"{median:>10.1f} {p95:>8.1f} {statistics.median(cpu[name]) * 1000:>7.1f} {baseline / median:>7.2f}x"
        )
    print("CPU ms: median process CPU time per photo over all threads (less sensitive to other load than wall time)")
    print(f"peak memory (RSS, whole process, both paths loaded): {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
