"""Detector benchmark: held-out accuracy of the hands-only and one-stage gesture detectors, and CPU latency.

    python bench/detector.py --hands outputs/bench/detector-hands --gestures outputs/bench/detector-gestures
    python bench/detector.py --train ...       # first train both with train/configs/detector{,-gestures}.yaml

Accuracy is recomputed here from `HandDetector.predict` on the held-out test split of the training data
(the split.json of the model folders, via `hybrid.data.splits.held_out`), with `hybrid.evaluate`'s matching
(IoU >= 0.5):
- recall@conf: ground-truth hands matched by a detection scoring >= the model's stored threshold;
- max recall: the same at conf 0.001 (the top of the precision-recall curve);
- AP50: all-point AP at IoU 0.5 (hands-only: class agnostic; gestures: mean over gesture classes, plus the
  class-agnostic hand AP50 and the gesture accuracy of matched hands at the stored threshold).
Targets (issue 4): hands-only recall >= 0.99 at IoU 0.5 and mAP50 >= 0.95. For scale, MediaPipe's palm
detector finds about 94% of hands of this kind at IoU 0.5.
Latency: one image per call (an 800x600 photo), median of --repeats after warm-up, per input size, on
PyTorch (and OpenVINO via HandDetector.compile("openvino"), the pipeline's fast path, when --openvino).
Prints the machine, thread count and load average with the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine_info import machine

REPO = Path(__file__).resolve().parent.parent

LOW_CONF = 0.001
THRESHOLDS = (0.01, 0.05, 0.1, 0.15, 0.25, 0.4)


def _detection_precision(metrics: dict) -> float:
    """Predictions that matched a hand (any label) / all predictions."""
    found = metrics["detection_recall"] * metrics["hands"]
    return found / metrics["predictions"] if metrics["predictions"] else 0.0


def test_split(data: list[str], folders: list[Path], seed: int, limit: int | None) -> list:
    """The held-out test records of `data` as the models' split.json files list them (`held_out`: refuses
    records a model trained on; models without split.json: the seeded `split_records` convention)."""
    from hybrid.data import read_dataset
    from hybrid.data.splits import held_out

    existing = [folder for folder in folders if folder.is_dir()]
    records = []
    for name in data:
        records.extend(held_out(read_dataset(name, merge_labels=True), existing, "test", seed=seed))
    return records[:limit] if limit else records


def accuracy(folder: Path, records: list, gestures: bool) -> dict:
    from hybrid.detector import HandDetector
    from hybrid.evaluate import as_guess, as_truth, average_precision, gesture_average_precision, hand_metrics

    detector = HandDetector.from_pretrained(folder)
    truths = [[as_truth(box) for box in record.boxes] for record in records]
    started = time.perf_counter()
    guesses = [[as_guess(d) for d in detector.predict(record.load(), conf=LOW_CONF)] for record in records]
    seconds = time.perf_counter() - started
    at_conf = [[g for g in image if g.score >= detector.conf] for image in guesses]
    result = {
        "folder": str(folder),
        "images": len(records),
        "hands": sum(len(t) for t in truths),
        "conf": detector.conf,
        "image_size": detector.image_size,
        "recall@conf": hand_metrics(truths, at_conf)["detection_recall"],
        "max_recall": hand_metrics(truths, guesses)["detection_recall"],
        "hand_AP50": average_precision(truths, guesses),
        # operating points: (detection recall, detection precision) per score threshold, labels ignored
        "recall_precision_at": {
            str(t): [round(m["detection_recall"], 4), round(_detection_precision(m), 4)]
            for t in THRESHOLDS
            for m in [hand_metrics(truths, [[g for g in image if g.score >= t] for image in guesses])]
        },
        "eval_seconds": round(seconds, 1),
    }
    if gestures:
        per_class = gesture_average_precision(truths, guesses)
        result["gesture_mAP50"] = sum(per_class.values()) / len(per_class) if per_class else 0.0
        result["gesture_AP50"] = per_class
        metrics = hand_metrics(truths, at_conf)
        result["gesture_accuracy@conf"] = metrics["hybrid_accuracy"]  # right gesture at IoU 0.5 / all hands
    ultralytics = folder / "metrics.json"
    if ultralytics.is_file():
        result["ultralytics"] = {
            k: v
            for k, v in json.loads(ultralytics.read_text()).items()
            if k in ("split", "precision", "recall", "mAP50", "mAP50-95")
        }
    return result


def _median_ms(run, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def latency(
    folder: Path, sizes: list[int], repeats: int, image_path: Path, openvino: bool, threads: int | None = None
) -> dict:

    from hybrid.detector import HandDetector
    from hybrid.images import load_image

    detector = HandDetector.from_pretrained(folder)
    image = load_image(image_path)
    rows = {f"torch@{size}": _median_ms(lambda: detector.predict(image, image_size=size), repeats) for size in sizes}
    if openvino:  # the pipeline's fast path: the same predict() with the network compiled by OpenVINO
        runner = detector.compile("openvino", threads=threads)
        for size in sizes:
            rows[f"openvino@{size}"] = _median_ms(lambda: runner.predict(image, image_size=size), repeats)
    return rows


def train(recipe: str, output: Path, extra: list[str]) -> None:
    command = [
        sys.executable,
        str(REPO / "train" / "detector.py"),
        "--config",
        str(REPO / "train" / "configs" / recipe),
        "--output",
        str(output),
        *extra,
    ]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--hands", type=Path, default=REPO / "outputs/bench/detector-hands", help="hands-only folder")
    parser.add_argument(
        "--gestures",
        type=Path,
        default=REPO / "outputs/bench/detector-gestures",
        help="one-stage gesture detector folder",
    )
    parser.add_argument("--train", action="store_true", help="train both first (train/configs/detector*.yaml)")
    parser.add_argument(
        "--train-args",
        nargs=argparse.REMAINDER,
        default=[],
        help="extra flags for train/detector.py, e.g. --train-args --epochs 100 --device 0",
    )
    parser.add_argument("--data", nargs="+", default=["hands", "roboflow"])
    parser.add_argument(
        "--seed", type=int, default=0, help="the split seed of models trained before split.json was written"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N test images only")
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 416, 640])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch / OpenVINO intra-op threads (default: torch's default, all cores); on a "
        "busy machine use 1: spinning threads that wait for each other make 2 far slower",
    )
    parser.add_argument("--no-latency", action="store_true", help="accuracy only")
    parser.add_argument("--openvino", action="store_true", help="also time OpenVINO (HandDetector.compile('openvino'))")
    parser.add_argument("--json", type=Path, default=REPO / "bench/results/detector.json")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    if args.train:
        train("detector.yaml", args.hands, args.train_args)
        train("detector-gestures.yaml", args.gestures, args.train_args)
    records = test_split(args.data, [args.hands, args.gestures], args.seed, args.limit)
    results = {"machine": machine(), "data": args.data, "test_images": len(records)}
    for key, folder, gestures in (("hands", args.hands, False), ("gestures", args.gestures, True)):
        if (folder / "model.safetensors").is_file():
            results[key] = accuracy(folder, records, gestures)
        else:
            print(f"(no trained folder at {folder}: skipped)")
    if (args.hands / "model.safetensors").is_file() and not args.no_latency:
        image = sorted((REPO.parent / "shared/data/subhih-handsdataset/images/test").glob("*.jpg"))
        image_path = image[0] if image else records[0].image
        results["latency_ms"] = latency(args.hands, args.sizes, args.repeats, image_path, args.openvino, args.threads)

    print(f"\n{results['machine']}")
    print(f"held-out test split of {' + '.join(args.data)}: {len(records)} images\n")
    print(
        "| model | image size | recall@conf (conf) | max recall | hand AP50 | gesture mAP50 | gesture acc@conf "
        "| Ultralytics P / R / mAP50 / mAP50-95 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for key in ("hands", "gestures"):
        if key not in results:
            continue
        r = results[key]
        u = r.get("ultralytics", {})
        print(
            f"| {key} | {r['image_size']} | {r['recall@conf']:.3f} ({r['conf']}) | {r['max_recall']:.3f} "
            f"| {r['hand_AP50']:.3f} | {r.get('gesture_mAP50', float('nan')):.3f} "
            f"| {r.get('gesture_accuracy@conf', float('nan')):.3f} "
            f"| {u.get('precision', '?')} / {u.get('recall', '?')} / {u.get('mAP50', '?')} / {u.get('mAP50-95', '?')} |"
        )
    print("\n| model | " + " | ".join(f"conf {t}: recall / precision" for t in THRESHOLDS) + " |")
    print("|---|" + "---|" * len(THRESHOLDS))
    for key in ("hands", "gestures"):
        if key in results:
            points = results[key]["recall_precision_at"]
            print(
                f"| {key} | "
                + " | ".join(f"{points[str(t)][0]:.3f} / {points[str(t)][1]:.3f}" for t in THRESHOLDS)
                + " |"
            )
    print("\ntargets (hands-only): recall >= 0.99 at IoU 0.5, mAP50 >= 0.95; MediaPipe palm detector ~0.94 recall\n")
    if "latency_ms" in results:
        print("| backend@input size | ms / image (median, batch 1, incl. pre/post-processing) |")
        print("|---|---|")
        for name, ms in results["latency_ms"].items():
            print(f"| {name} | {ms:.1f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
