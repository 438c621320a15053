"""End-to-end evaluation table: the hybrid (and optionally a one-stage gesture detector) on held-out sets.

    .venv/bin/python bench/evaluate.py --detector models/detector --classifier models/classifier \
        [--gesture-detector models/detector-gestures] [--datasets hands roboflow] [--split test] [--limit N]

In-set vs cross-set is a matter of which models you pass: models trained on Hands and evaluated on
Roboflow give the cross-set row. `--paths shipped naive` scores both inference paths of bench/latency.py
on the same images (the shipped path must not cost accuracy). The records of `--split` are the ones the
model folders' split.json files hold out (`hybrid.data.splits.held_out`); a record a model trained on is refused.
Metrics are `hybrid.evaluate.evaluate`
(definitions in its docstring); the table is Markdown, ready for the README.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hybrid.data import read_dataset
from hybrid.data.splits import held_out
from hybrid.evaluate import evaluate
from hybrid.hub import default_model
from hybrid.pipeline import HybridPipeline

COLUMNS = [
    "set",
    "path",
    "images",
    "hands",
    "hybrid acc",
    "precision",
    "det recall",
    "det mAP50",
    "gesture mAP50",
    "clf acc (GT crops)",
    "1-stage acc",
    "1-stage gesture mAP50",
    "median ms",
]


def row(name: str, path: str, metrics: dict) -> list[str]:
    one = metrics.get("gesture_detector")
    cells = [name, path, str(metrics["images"]), str(metrics["hands"])]
    cells += [
        f"{metrics[k]:.3f}"
        for k in ("hybrid_accuracy", "precision", "detection_recall", "map50", "gesture_map50", "classifier_accuracy")
    ]
    cells += [f"{one['hybrid_accuracy']:.3f}", f"{one['gesture_map50']:.3f}"] if one else ["-", "-"]
    latency = metrics["latency"]
    cells.append(f"{latency['median_ms']:.0f}" if latency.get("images") else "-")
    return cells


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--detector", default=None)
    parser.add_argument("--classifier", default=None)
    parser.add_argument("--gesture-detector", default=None)
    parser.add_argument("--datasets", nargs="+", default=["hands", "roboflow"])
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument(
        "--paths",
        nargs="+",
        choices=["shipped", "naive", "int8", "bf16", "fp32"],
        default=["shipped"],
        help="inference paths to score: shipped (defaults), naive (fp32 eager PyTorch), or the OpenVINO path in "
        "one precision (int8: both networks quantized, calibrated on the models' training split)",
    )
    args = parser.parse_args(argv)

    sources = {kind: getattr(args, kind) or default_model(kind) for kind in ("detector", "classifier")}
    shipped = HybridPipeline.from_pretrained(detector=sources["detector"], classifier=sources["classifier"])
    detector, classifier = shipped.detector, shipped.classifier
    pipes = {"shipped": shipped, "naive": HybridPipeline(detector, classifier, fast=False)}
    pipes |= {p: HybridPipeline(detector, classifier, precision=p) for p in ("int8", "bf16", "fp32") if p in args.paths}
    gesture = None
    if args.gesture_detector:
        from hybrid.detector import HandDetector

        gesture = HandDetector.from_pretrained(args.gesture_detector)
    # the models' own held-out records (their split.json); records one of them trained on are refused
    folders = [Path(m) for m in (*sources.values(), args.gesture_detector) if m and Path(m).is_dir()]
    rows = []
    for name in args.datasets:
        records = held_out(read_dataset(name, merge_labels=True), folders, args.split)[: args.limit]
        for path in args.paths:
            rows.append(row(f"{name} {args.split}", path, evaluate(pipes[path], records, gesture)))
    print(
        f"models: detector {sources['detector']}, classifier {sources['classifier']}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for path in args.paths:
        print(f"{path}: {pipes[path]!r}")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
