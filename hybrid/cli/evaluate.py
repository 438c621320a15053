"""`hybrid eval DATASET`: end-to-end metrics on a labelled detection dataset."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from hybrid.cli.predict import add_model_arguments, check_output_folder, model_source, printable

MODEL_FILES = ("config.json", "model.safetensors")  # a folder holding one is a model's: `hybrid push` sends it
EVAL_MARKER = ".hybrid-eval"  # in every --output folder an evaluation writes: a later one may replace its files


def check_eval_output(folder: Path) -> None:
    """Refuse, before any work, an --output that is a file, not writable, a model folder (its metrics.json is
    the one `hybrid push` publishes with the model) or any other non-empty folder that is not an earlier
    evaluation's (e.g. an Ultralytics run folder, which has its own metrics.json and confusion_matrix.png)."""
    check_output_folder(folder, "--output")
    held = [name for name in MODEL_FILES if os.path.lexists(folder / name)]
    if held:
        raise ValueError(
            f"--output {folder}: a model folder (it holds {' and '.join(held)}), whose metrics.json `hybrid push` "
            "publishes; choose another folder for the evaluation"
        )
    if folder.is_dir() and any(folder.iterdir()) and not os.path.lexists(folder / EVAL_MARKER):
        raise ValueError(
            f"--output {folder}: not empty and not an earlier `hybrid eval` output (no {EVAL_MARKER}), so its "
            "metrics.json and confusion_matrix.png are not ours to replace; choose an empty or new folder"
        )


def _notice(text: str) -> None:
    """A line for the person at the terminal, on stderr so that --json output stays JSON (names in it escaped)."""
    print(f"hybrid eval: {printable(text)}", file=sys.stderr, flush=True)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _save_outputs(metrics: dict, output: Path) -> None:
    """The confusion matrix PNG(s) and metrics.json, each written whole (hybrid.files), and the marker that
    lets a later evaluation replace them."""
    from hybrid.evaluate import save_confusion_png
    from hybrid.files import write_text

    write_text(output / EVAL_MARKER, "written by `hybrid eval --output`, which may replace the files it wrote here\n")
    metrics["confusion_png"] = str(save_confusion_png(metrics["confusion"], output / "confusion_matrix.png"))
    if "gesture_detector" in metrics:
        metrics["gesture_detector"]["confusion_png"] = str(
            save_confusion_png(
                metrics["gesture_detector"]["confusion"],
                output / "confusion_matrix_gesture_detector.png",
                title="one-stage gesture detector",
            )
        )
    write_text(output / "metrics.json", json.dumps(metrics, indent=2))


def eval_command(args: argparse.Namespace) -> int:
    """`hybrid eval DATASET [--split test|train|val|all] [--limit N] [--gesture-detector M] [--output DIR] [--json]`.

    Says first (on stderr) which split it scores, how many images, and where the split comes from; lists
    ground-truth labels the classifier does not know."""
    from hybrid.data import read_dataset
    from hybrid.evaluate import evaluate, select_split, summary_table, unknown_labels
    from hybrid.pipeline import HybridPipeline

    if args.output:
        check_eval_output(Path(args.output))
    from hybrid.hub import snapshot

    detector, classifier = model_source(args.detector, "detector"), model_source(args.classifier, "classifier")
    every = read_dataset(args.dataset, format=args.format, merge_labels=True)
    records, origin = select_split(every, args.split, [snapshot(detector), snapshot(classifier)])
    total = len(records)
    if args.limit:
        records = records[: args.limit]
    if not records:
        raise ValueError(f"{args.dataset}: no images in split {args.split!r} ({origin})")
    counted = f"the first {len(records)} of {total}" if len(records) < total else f"{total}"
    _notice(f"scoring {counted} images of {args.dataset} (of {len(every)} in all): {origin}")
    pipeline = HybridPipeline.from_pretrained(detector=detector, classifier=classifier)
    unknown = unknown_labels(records, pipeline.classifier.label_names)
    if unknown:
        listed = ", ".join(f"'{label}' ({count} hands)" for label, count in unknown.items())
        _notice(f"ground-truth labels the classifier does not know (they count as errors): {listed}")
    gesture_detector = None
    if args.gesture_detector:
        from hybrid.detector import HandDetector

        gesture_detector = HandDetector.from_pretrained(args.gesture_detector)
    metrics = evaluate(pipeline, records, gesture_detector)
    metrics["dataset"] = {
        "name": str(args.dataset),
        "split": args.split,
        "split_from": origin,
        "images": len(records),
        "split_images": total,
        "dataset_images": len(every),
        "unknown_labels": unknown,
    }
    if args.output:
        _save_outputs(metrics, Path(args.output))
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:  # class names come from the data and the model: escaped, so none forges a line
        print(summary_table({**metrics, "per_class": {printable(k): v for k, v in metrics["per_class"].items()}}))
    return 0


EVAL_DESCRIPTION = (
    "End-to-end metrics on a labelled detection dataset. Says first which split it scores and how "
    "many images, and lists ground-truth labels the classifier does not know (they count as errors)."
)


def add_commands(commands) -> None:
    evaluate = commands.add_parser(
        "eval", help="end-to-end metrics on a labelled detection dataset", description=EVAL_DESCRIPTION
    )
    evaluate.add_argument("dataset", help="dataset folder or registered name")
    evaluate.add_argument(
        "--split",
        default="test",
        choices=["train", "val", "test", "all"],
        help="split to score (default: test): the dataset's own split where it has one, else the "
        "seeded split of hybrid.data.split_records; 'all' scores every image",
    )
    add_model_arguments(evaluate)
    evaluate.add_argument("--gesture-detector", default=None, help="one-stage gesture detector to compare against")
    evaluate.add_argument("--format", default=None, help="voc | yolo | imagefolder | hagrid | hf (default: detected)")
    evaluate.add_argument("--limit", type=_positive_int, default=None, help="first N images only")
    evaluate.add_argument(
        "--output",
        default=None,
        help="folder for the confusion matrix PNG and metrics JSON: new, empty, or an earlier eval's --output",
    )
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    evaluate.set_defaults(func=eval_command)
