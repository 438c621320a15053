"""Generalization to people and cameras the models never saw: leave one domain out, whole pipeline.

    .venv/bin/python -m bench.generalize [--rows baseline zoom ...] [--threads 1] [--work outputs/generalize]
        [--card model_cards/generalization.md] [--report-only]

A row is a change to the project's recipes (detector, classifier), applied to the CPU tier of those recipes
(train/configs/detector-demo.yaml and classifier-demo.yaml: YOLOv8n 160 px 10 epochs, ResNet-18 64 px 30
epochs, fixed seed 0). For each row it trains on Hands only, on Roboflow only and on both, and scores:
- Hands -> Roboflow's test split; Roboflow -> Hands' test split, with and without its fist ('0') images
  (Roboflow has no fist, so its models cannot name one);
- in-domain: trained on both, each test split (generalizing must not cost more than a point here);
- the classifier alone on Sign Language Digits 1-5 (ASL 1-5 extend one to five fingers; registered as
  `sign-digits-counts`), for each classifier that never saw it.
Hybrid accuracy and detector recall are `hybrid.evaluate` (IoU 0.5, the naive fp32 path, which the
shipped path matches). Trained models are cached under --work by a digest of their recipe, so a row that
changes one model reuses the other's runs. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from hybrid.training.recipe import ClassifierRecipe, DetectorRecipe, parse_recipe

REPO = Path(__file__).resolve().parent.parent
RECIPE_CLASSES = {"detector": DetectorRecipe, "classifier": ClassifierRecipe}
RECIPES = {kind: REPO / "train" / "configs" / f"{kind}-demo.yaml" for kind in ("detector", "classifier")}
DOMAINS = {"hands": ["hands"], "roboflow": ["roboflow"], "both": ["hands", "roboflow"]}
SLD = "sign-digits-counts"

# row name -> (detector flags, classifier flags, what it is)
# Every row names each lever's setting, so it measures the same thing whatever the recipes now hold (they hold
# all three: the last row is the shipped recipes). Levers off = the recipes before this work.
NO_ZOOM = {"zoom-copies": "0"}
NO_PHOTOMETRIC = {"color-jitter": "0", "grayscale": "0", "blur": "0"}
PHOTOMETRIC = {"color-jitter": "0.4", "grayscale": "0.2", "blur": "0.2"}
SIZE96 = {**PHOTOMETRIC, "+data": SLD, "epochs": "60", "image-size": "96"}  # all+long+size96's classifiers


def demo_train_args(**extra) -> str:
    """--train-args: the detector demo recipe's train_args before the COCO start (a flag replaces them all)
    plus `extra`."""
    return json.dumps({"warmup_epochs": 1, "close_mosaic": 3, **extra})


ROWS = {
    "baseline": (NO_ZOOM, NO_PHOTOMETRIC, "the recipes before this work (no zoom copies, no SLD, no photometric)"),
    "zoom": ({"zoom-copies": "1"}, NO_PHOTOMETRIC, "detector: + 1 zoom copy per image, hands 8-80 % of the width"),
    "sld": (NO_ZOOM, {**NO_PHOTOMETRIC, "+data": SLD}, "classifier: + Sign Language Digits 1-5 crops (many people)"),
    "photometric": (NO_ZOOM, PHOTOMETRIC, "classifier: colour jitter 0.4, grey 20 %, blur 20 %"),
    "all": ({"zoom-copies": "1"}, {**PHOTOMETRIC, "+data": SLD}, "zoom + sld + photometric (shipped until all+long)"),
    "all+zoom3": ({"zoom-copies": "3"}, {**PHOTOMETRIC, "+data": SLD}, "all, with 3 zoom copies per image"),
    "all+balanced": (
        {"zoom-copies": "1"},
        {**PHOTOMETRIC, "+data": SLD, "balanced": None},
        "all, and the classifier draws each class equally often (class-balanced sampling)",
    ),
    "all+background50": (
        {"zoom-copies": "1"},
        {**PHOTOMETRIC, "+data": SLD, "background-swap": "0.5"},
        "all, and half of the classifier's training crops get another photo's background around the hand",
    ),
    "all+background20": (
        {"zoom-copies": "1"},
        {**PHOTOMETRIC, "+data": SLD, "background-swap": "0.2"},
        "all, and 20 % of the classifier's training crops get another photo's background around the hand",
    ),
    "all+mix": (
        {"zoom-copies": "1"},
        {**PHOTOMETRIC, "+data": SLD, "mixup": "0.2", "cutmix": "1.0"},
        "all, and the classifier trains on mixup (alpha 0.2) or cutmix (alpha 1.0) batches, half each",
    ),
    "all+ema": (
        {"zoom-copies": "1"},
        {**PHOTOMETRIC, "+data": SLD, "ema": "0.998"},
        "all, and the classifier keeps a moving average of its weights (decay 0.998, warmed up) as its model",
    ),
    "all+long": (
        {"zoom-copies": "1"},
        {**PHOTOMETRIC, "+data": SLD, "epochs": "60"},
        "all, and the classifier trains 60 epochs instead of 30 (cosine schedule over 60): the shipped recipes",
    ),
    "all+long+det20": (
        {"zoom-copies": "1", "epochs": "20"},
        {**PHOTOMETRIC, "+data": SLD, "epochs": "60"},
        "all+long, and the detector trains 20 epochs instead of 10",
    ),
    "all+long+randconv": (
        {"zoom-copies": "1"},
        {**PHOTOMETRIC, "+data": SLD, "epochs": "60", "random-convolution": "0.5"},
        "all+long, and half of the classifier's training crops are blended with a random convolution of "
        "themselves (RandConv)",
    ),
    "photometric+long": (
        NO_ZOOM,
        {**PHOTOMETRIC, "epochs": "60"},
        "photometric, trained 60 epochs: the classifiers that never see SLD, scored on it",
    ),
    "photometric+background50": (
        NO_ZOOM,
        {**PHOTOMETRIC, "background-swap": "0.5"},
        "photometric, and half of the classifier's training crops get another photo's background",
    ),
    "photometric+long+background50": (
        NO_ZOOM,
        {**PHOTOMETRIC, "epochs": "60", "background-swap": "0.5"},
        "photometric+long, and half of the classifier's training crops get another photo's background",
    ),
    "all+long+mix+ema": (
        {"zoom-copies": "1"},
        {**PHOTOMETRIC, "+data": SLD, "epochs": "60", "mixup": "0.2", "cutmix": "1.0", "ema": "0.998"},
        "all+long, with mixup / cutmix and weight averaging (each lifted every cross-set number at 30 epochs)",
    ),
    "all+long+rotate45": (
        {"zoom-copies": "1"},
        {**PHOTOMETRIC, "+data": SLD, "epochs": "60", "rotation": "45"},
        "all+long, and the classifier's crops turn up to 45 degrees instead of 15 (Roboflow's hands point every way, "
        "Hands' point up)",
    ),
    "all+long+turn50": (
        {"zoom-copies": "1", "zoom-turn": "0.5"},
        {**PHOTOMETRIC, "+data": SLD, "epochs": "60"},
        "all+long, and half of the detector's zoom copies are turned a quarter (hands pointing sideways; Hands' "
        "boxes are 1.9x taller than wide, Roboflow's 1:1)",
    ),
    "all+long+turn50+rotate45": (
        {"zoom-copies": "1", "zoom-turn": "0.5"},
        {**PHOTOMETRIC, "+data": SLD, "epochs": "60", "rotation": "45"},
        "all+long+turn50's detectors with all+long+rotate45's classifiers: both turn levers together",
    ),
    "all+long+turn25": (
        {"zoom-copies": "1", "zoom-turn": "0.25"},
        {**PHOTOMETRIC, "+data": SLD, "epochs": "60"},
        "all+long, and a quarter of the detector's zoom copies are turned a quarter",
    ),
    "all+zoom3+rotate45": (
        {"zoom-copies": "3"},
        {**PHOTOMETRIC, "+data": SLD, "epochs": "60", "rotation": "45"},
        "all+zoom3's detectors with all+long+rotate45's classifiers (no new training)",
    ),
    "all+long+mixstyle": (
        {"zoom-copies": "1"},
        {**PHOTOMETRIC, "+data": SLD, "epochs": "60", "mix-style": "0.5"},
        "all+long, and half of the classifier's training batches mix their crops' early feature statistics (MixStyle)",
    ),
    "all+long+size96": (
        {"zoom-copies": "1"},
        SIZE96,
        "all+long, and the classifier sees 96 px crops instead of 64 (at 64 px a finger is 3-4 pixels wide)",
    ),
    "all+long+size96+multiscale": (
        {"zoom-copies": "1", "train-args": demo_train_args(multi_scale=0.5)},
        SIZE96,
        "all+long+size96, and the detector trains at a new size for each batch, 0.5-1.5x its 160 px (multi-scale)",
    ),
    "all+long+size96+multiscale25": (
        {"zoom-copies": "1", "train-args": demo_train_args(multi_scale=0.25)},
        SIZE96,
        "all+long+size96, and the detector trains at a new size for each batch, 0.75-1.25x its 160 px",
    ),
    "all+long+size96+detmixup": (
        {"zoom-copies": "1", "train-args": demo_train_args(mixup=0.2)},
        SIZE96,
        "all+long+size96, and a fifth of the detector's mosaics are blended with another mosaic (mixup 0.2)",
    ),
    "all+long+size96+detphoto": (
        {"zoom-copies": "1", "zoom-photometric": "0.5"},
        SIZE96,
        "all+long+size96, and half of the detector's zoom copies are made grey or blurred (half each)",
    ),
    "zoom+photometric+long+background50+size96": (
        {"zoom-copies": "1"},
        {**PHOTOMETRIC, "epochs": "60", "background-swap": "0.5", "image-size": "96"},
        "photometric+long+background50 with 96 px crops, and the zoom detectors: classifiers that never see SLD",
    ),
    "all+long+size96+seed1": (
        {"zoom-copies": "1", "seed": "1"},
        SIZE96,
        "all+long+size96 with the detectors trained from seed 1 instead of 0: how far a number moves by chance",
    ),
}
# The classifier rows were measured at 30 epochs, the demo recipe's count before all+long: they keep saying so.
# Their detectors were trained from scratch (`pretrained: auto` found no COCO weights then): they keep that too.
# The detector rows before all+long+coco+freeze10+e6 pin its 10 epochs and the recipe's train_args of then.
ROWS = {
    name: (
        {"pretrained": "false", "epochs": "10", "train-args": demo_train_args(), **detector},
        {"epochs": "30", **classifier},
        text,
    )
    for name, (detector, classifier, text) in ROWS.items()
}
# Rows whose detectors start from COCO YOLOv8n (`pretrained: auto`: Ultralytics' yolov8n.pt, else the weights
# folder's yolov8n-coco.pt, ../shared/weights here).
ROWS["all+long+coco"] = (
    {"pretrained": "auto", "zoom-copies": "1", "epochs": "10", "train-args": demo_train_args()},
    {**PHOTOMETRIC, "+data": SLD, "epochs": "60"},
    "all+long (the shipped recipes), and the detectors start from COCO-pretrained YOLOv8n instead of from scratch",
)
ROWS["all+long+coco+freeze10"] = (
    {"pretrained": "auto", "zoom-copies": "1", "epochs": "10", "train-args": demo_train_args(freeze=10)},
    {**PHOTOMETRIC, "+data": SLD, "epochs": "60"},
    "all+long+coco, with the detector's COCO backbone (its first 10 layers) frozen: only the neck and head learn",
)
ROWS["all+long+coco+freeze5"] = (
    {"pretrained": "auto", "zoom-copies": "1", "epochs": "10", "train-args": demo_train_args(freeze=5)},
    {**PHOTOMETRIC, "+data": SLD, "epochs": "60"},
    "all+long+coco, with the first 5 of the detector's 10 COCO backbone layers frozen",
)
ROWS["all+long+coco+freeze10+e6"] = (
    {"pretrained": "auto", "zoom-copies": "1", "epochs": "6", "train-args": demo_train_args(freeze=10, close_mosaic=2)},
    {**PHOTOMETRIC, "+data": SLD, "epochs": "60"},
    "all+long+coco+freeze10, the detector trained 6 epochs instead of 10 (the last 2 without mosaic instead of 3)",
)
# Rows whose classifiers also learn which fingers are up and which hand it is (hybrid.fingers: MediaPipe labels in
# annotations/fingers.json), with the shipped detectors. `photometric+long`'s classifiers never see SLD.
SHIPPED_DETECTOR = ROWS["all+long+coco+freeze10+e6"][0]
COUNT_ONLY = {**PHOTOMETRIC, "epochs": "60"}
ROWS["coco+photometric+long"] = (
    SHIPPED_DETECTOR,
    COUNT_ONLY,
    "photometric+long's classifiers (never see SLD; count only) with the shipped COCO-start detectors",
)
ROWS["coco+photometric+long+fingers"] = (
    SHIPPED_DETECTOR,
    {**COUNT_ONLY, "fingers": "1"},
    "coco+photometric+long, and the classifier also learns the five finger states (weight 1)",
)
ROWS["coco+photometric+long+fingers+hand"] = (
    SHIPPED_DETECTOR,
    {**COUNT_ONLY, "fingers": "1", "handedness": "1"},
    "coco+photometric+long+fingers, and the classifier also learns which hand it is (weight 1)",
)
ROWS["all+long+coco+freeze10+e6+fingers+hand"] = (
    SHIPPED_DETECTOR,
    {**PHOTOMETRIC, "+data": SLD, "epochs": "60", "fingers": "1", "handedness": "1"},
    "the shipped recipes, and the classifier also learns the finger states and the hand",
)
# lever rows skip the in-domain models (CPU time); the kept recipe, a candidate for it, and the rows without SLD
# (whose Hands + Roboflow classifier is one more that never saw it) have them
IN_DOMAIN_ROWS = {
    "baseline",
    "all",
    "all+balanced",
    "all+zoom3",
    "all+background50",
    "all+background20",
    "all+mix",
    "all+ema",
    "all+long",
    "all+long+det20",
    "all+long+randconv",
    "photometric",
    "photometric+long",
    "photometric+long+background50",
    "all+long+mix+ema",
    "all+long+rotate45",
    "all+long+turn50",
    "all+long+turn50+rotate45",
    "all+long+turn25",
    "all+zoom3+rotate45",
    "all+long+mixstyle",
    "all+long+size96",
    "all+long+size96+multiscale",
    "all+long+size96+multiscale25",
    "all+long+size96+detmixup",
    "all+long+size96+detphoto",
    "zoom+photometric+long+background50+size96",
    "all+long+size96+seed1",
    "all+long+coco",
    "all+long+coco+freeze10",
    "all+long+coco+freeze5",
    "all+long+coco+freeze10+e6",
}


def recipe_digest(recipe) -> str:
    """A digest of what a run trains: the recipe's fields that differ from the defaults (output and resume left
    out), so a recipe file reworded to the same values, or a new field at its default, keeps the cached runs."""
    default = type(recipe)()
    fields = {k: v for k, v in recipe.as_dict().items() if k not in ("output", "resume") and v != getattr(default, k)}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


def recipe_argv(kind: str, domain: str, flags: dict[str, str]) -> list[str]:
    """The train/KIND.py arguments of `kind` on `domain` with a row's `flags`."""
    flags = dict(flags)
    data = DOMAINS[domain] + ([flags.pop("+data")] if "+data" in flags else [])
    argv = ["--config", str(RECIPES[kind]), "--data", ",".join(data)]
    for name, value in sorted(flags.items()):
        argv += [f"--{name}"] + ([] if value is None else [value])  # None: a switch (--balanced)
    return argv


def run_folder(kind: str, domain: str, flags: dict[str, str], work: Path) -> Path:
    """Where the run of `kind` on `domain` with `flags` is (or will be) cached."""
    recipe = parse_recipe(RECIPE_CLASSES[kind], recipe_argv(kind, domain, flags))[0]
    return work / f"{kind}-{domain}-{recipe_digest(recipe)}"


def train(kind: str, domain: str, flags: dict[str, str], work: Path, threads: int) -> Path:
    """The trained folder of `kind` on `domain` with `flags` (trained now unless cached)."""
    argv, out = recipe_argv(kind, domain, flags), run_folder(kind, domain, flags, work)
    if (out / "config.json").is_file():
        return out
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, str(REPO / "train" / f"{kind}.py"), *argv, "--output", str(out)]
    print(f"training {out.name}: {' '.join(argv[2:])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, env=env, stdout=subprocess.DEVNULL)
    (out / "bench_seconds.txt").write_text(f"{time.perf_counter() - started:.0f}\n")
    return out


def score(detector: Path, classifier: Path, dataset: str, drop_fist: bool = False) -> dict:
    from hybrid.data import read_dataset
    from hybrid.data.splits import held_out
    from hybrid.evaluate import evaluate
    from hybrid.pipeline import HybridPipeline

    records = held_out(read_dataset(dataset, merge_labels=True), [detector, classifier], "test")
    if drop_fist:
        records = [r for r in records if all(box.label != "0" for box in r.boxes)]
    pipe = HybridPipeline.from_pretrained(detector, classifier, fast=False)
    metrics = evaluate(pipe, records, latency_images=0)
    return {
        "hybrid": metrics["hybrid_accuracy"],
        "recall": metrics["detection_recall"],
        "classifier": metrics["classifier_accuracy"],  # on the true boxes' crops: the classifier alone
        "images": len(records),
    }


def sld_accuracy(classifier: Path) -> float:
    """Top-1 accuracy of the classifier alone on every Sign Language Digits 1-5 image."""
    return score_crops(classifier, SLD, split=None)["count head"]


def run_row(name: str, work: Path, threads: int) -> dict:
    detector_flags, classifier_flags, _ = ROWS[name]
    domains = list(DOMAINS) if name in IN_DOMAIN_ROWS else ["hands", "roboflow"]
    models = {
        domain: (
            train("detector", domain, detector_flags, work, threads),
            train("classifier", domain, classifier_flags, work, threads),
        )
        for domain in domains
    }
    result = {
        "h->r": score(*models["hands"], "roboflow"),
        "r->h": score(*models["roboflow"], "hands"),
        "r->h no fist": score(*models["roboflow"], "hands", drop_fist=True),
    }
    if "both" in models:
        result["both: hands"] = score(*models["both"], "hands")
        result["both: roboflow"] = score(*models["both"], "roboflow")
    if "+data" not in classifier_flags:
        for domain in domains:
            result[f"sld ({domain})"] = sld_accuracy(models[domain][1])
    return result


def score_crops(classifier: Path, dataset: str, drop_fist: bool = False, split: Optional[str] = "test") -> dict:
    """The classifier alone on the true boxes' crops of `dataset`'s `split` (None: every image): the count from
    its count head and, when it has finger outputs, from the sum of the fingers it sees up; each extra output's
    accuracy on the crops whose MediaPipe label has it (hybrid.fingers)."""
    import numpy as np

    from hybrid.classifier import GestureClassifier
    from hybrid.data import iter_crops, read_dataset
    from hybrid.data.splits import held_out
    from hybrid.fingers import FINGERS, OUTPUTS, UNKNOWN, box_key, count_distribution, load_labels

    records = read_dataset(dataset, merge_labels=True)
    if split is not None:
        records = held_out(records, [classifier], split)
    if drop_fist:
        records = [r for r in records if all(box.label != "0" for box in r.boxes)]
    clf = GestureClassifier.from_pretrained(classifier, device="cpu", precision="fp32")
    labels, crops = load_labels(), list(iter_crops(records))
    keys = [box_key(r, i) for r in records for i in range(len(r.boxes))]
    counts, extra = [], []
    for start in range(0, len(crops), 64):
        probabilities, outputs = clf.scores([crop for crop, _ in crops[start : start + 64]])
        counts.append(probabilities)
        extra.append(outputs)
    counts, extra = np.concatenate(counts), np.concatenate(extra)
    truth = [int(label) for _, label in crops]
    names = [int(n) for n in clf.label_names]
    result = {
        "count head": float(np.mean([names[int(row.argmax())] == t for row, t in zip(counts, truth)])),
        "crops": len(crops),
    }
    if set(FINGERS) <= set(clf.outputs):  # the count from the fingers, and from both (mean of the distributions)
        from_fingers = count_distribution(extra[:, [clf.outputs.index(f) for f in FINGERS]])
        head = np.zeros_like(from_fingers)
        head[:, names] = counts
        result["finger sum"] = float(np.mean(from_fingers.argmax(1) == np.array(truth)))
        result["both"] = float(np.mean((from_fingers + head).argmax(1) == np.array(truth)))
    for column, name in enumerate(clf.outputs):
        target = np.array([labels.get(k, (UNKNOWN,) * len(OUTPUTS))[OUTPUTS.index(name)] for k in keys])
        known = target != UNKNOWN
        result[name] = float(np.mean((extra[known, column] > 0.5) == target[known])) if known.any() else None
    return result


def run_classifiers(name: str, work: Path, threads: int) -> dict:
    """The row's classifiers alone on true crops: across sets, in-domain, and on SLD 1-5 when they never saw it."""
    _, flags, _ = ROWS[name]
    domains = list(DOMAINS) if name in IN_DOMAIN_ROWS else ["hands", "roboflow"]
    models = {domain: train("classifier", domain, flags, work, threads) for domain in domains}
    result = {
        "h->r": score_crops(models["hands"], "roboflow"),
        "r->h": score_crops(models["roboflow"], "hands"),
        "r->h no fist": score_crops(models["roboflow"], "hands", drop_fist=True),
        "train seconds": {d: int((m / "bench_seconds.txt").read_text()) for d, m in models.items()},
    }
    if "both" in models:
        result["both: hands"] = score_crops(models["both"], "hands")
        result["both: roboflow"] = score_crops(models["both"], "roboflow")
    if "+data" not in flags:
        for domain in domains:
            result[f"sld ({domain})"] = score_crops(models[domain], SLD, split=None)
    return result


CLASSIFIER_COLUMNS = [
    ("h->r", "H→R"),
    ("r->h", "R→H"),
    ("r->h no fist", "R→H no fist"),
    ("both: hands", "both→Hands"),
    ("both: roboflow", "both→Roboflow"),
    ("sld (hands)", "SLD, Hands clf"),
    ("sld (roboflow)", "SLD, Roboflow clf"),
    ("sld (both)", "SLD, both clf"),
]


def classifier_table(results: dict[str, dict]) -> str:
    """Count accuracy (count head / finger sum / both), then finger and hand accuracy against the MediaPipe
    labels."""
    from hybrid.fingers import FINGERS, RIGHT_HAND

    lines = [
        "| row | " + " | ".join(title for _, title in CLASSIFIER_COLUMNS) + " | fingers H→R / R→H | hand H→R / R→H "
        "| train s H / R / both |",
        "|---" * (len(CLASSIFIER_COLUMNS) + 4) + "|",
    ]
    for name, result in results.items():
        cells = []
        for key, _ in CLASSIFIER_COLUMNS:
            value = result.get(key)
            if value is None:
                cells.append("-")
            else:
                cells.append(" / ".join(f"{value[k]:.3f}" for k in ("count head", "finger sum", "both") if k in value))

        def mean_fingers(value):
            known = [value[f] for f in FINGERS if value.get(f) is not None]
            return f"{sum(known) / len(known):.3f}" if known else "-"

        fingers = " / ".join(mean_fingers(result[k]) for k in ("h->r", "r->h"))
        hand = " / ".join(
            "-" if result[k].get(RIGHT_HAND) is None else f"{result[k][RIGHT_HAND]:.3f}" for k in ("h->r", "r->h")
        )
        seconds = " / ".join(str(result["train seconds"].get(d, "-")) for d in DOMAINS)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {fingers} | {hand} | {seconds} |")
    return "\n".join(lines)


def score_detector(detector: Path, dataset: str) -> dict:
    """The detector alone on `dataset`'s test split, at its stored threshold and trained size (the naive path):
    recall and precision of its boxes at IoU 0.5 (hybrid.evaluate.hand_metrics, every label 'hand')."""
    from hybrid.data import read_dataset
    from hybrid.data.splits import held_out
    from hybrid.detector import HandDetector
    from hybrid.evaluate import Guess, Truth, hand_metrics

    records = held_out(read_dataset(dataset, merge_labels=True), [detector], "test")
    model = HandDetector.from_pretrained(detector, device="cpu")
    truths, guesses = [], []
    for record in records:
        truths.append([Truth(tuple(map(float, box.xyxy)), "hand") for box in record.boxes])
        guesses.append([Guess(tuple(d.box), d.score, "hand") for d in model.predict(record.load())])
    metrics = hand_metrics(truths, guesses)
    return {"recall": metrics["detection_recall"], "precision": metrics["precision"], "images": len(records)}


def run_detectors(name: str, work: Path, threads: int) -> dict:
    """A row's detectors only (trained on Hands, on Roboflow and on both), scored alone: cross-set and in-domain
    recall and precision, and the seconds each took to train."""
    detector_flags = ROWS[name][0]
    models = {domain: train("detector", domain, detector_flags, work, threads) for domain in DOMAINS}
    seconds = {domain: int((folder / "bench_seconds.txt").read_text()) for domain, folder in models.items()}
    return {
        "h->r": score_detector(models["hands"], "roboflow"),
        "r->h": score_detector(models["roboflow"], "hands"),
        "both: hands": score_detector(models["both"], "hands"),
        "both: roboflow": score_detector(models["both"], "roboflow"),
        "train seconds": seconds,
    }


def detector_table(results: dict[str, dict]) -> str:
    keys = ("h->r", "r->h", "both: hands", "both: roboflow")
    titles = ["H→R", "R→H", "both→Hands", "both→Roboflow"]
    head = " | ".join(f"{t} recall / precision" for t in titles)
    lines = [f"| row | {head} | train s (Hands / Roboflow / both) |", "|---" * 6 + "|"]
    for name, result in results.items():
        cells = [f"{result[k]['recall']:.3f} / {result[k]['precision']:.3f}" for k in keys]
        seconds = " / ".join(str(result["train seconds"][d]) for d in DOMAINS)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {seconds} |")
    return "\n".join(lines)


COLUMNS = [
    ("h->r", "hybrid", "Hands→Roboflow hybrid"),
    ("h->r", "recall", "H→R det recall"),
    ("h->r", "classifier", "H→R clf, true crops"),
    ("r->h", "hybrid", "Roboflow→Hands hybrid"),
    ("r->h no fist", "hybrid", "R→H hybrid, no fist"),
    ("r->h", "recall", "R→H det recall"),
    ("r->h no fist", "classifier", "R→H clf, true crops, no fist"),
    ("both: hands", "hybrid", "both→Hands hybrid"),
    ("both: roboflow", "hybrid", "both→Roboflow hybrid"),
    ("sld (hands)", None, "SLD 1-5, Hands clf"),
    ("sld (roboflow)", None, "SLD 1-5, Roboflow clf"),
    ("sld (both)", None, "SLD 1-5, both clf"),
]


def table(results: dict[str, dict]) -> str:
    lines = ["| row | " + " | ".join(title for _, _, title in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, result in results.items():
        cells = []
        for key, field, _ in COLUMNS:
            value = result.get(key)
            value = value[field] if isinstance(value, dict) else value
            cells.append("-" if value is None else f"{value:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS), help="rows to run, in order")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each training and of the scoring")
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "generalize", help="trained models (cache)")
    parser.add_argument(
        "--card",
        type=Path,
        default=None,
        help="also write the table as the model cards' section (model_cards/generalization.md)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="no training or scoring: the table of the rows' results this bench saved under --work",
    )
    parser.add_argument(
        "--detectors-only",
        action="store_true",
        help="train and score only the rows' detectors (recall and precision alone, no classifier)",
    )
    parser.add_argument(
        "--classifiers-only",
        action="store_true",
        help="train and score only the rows' classifiers, alone on true crops (count, fingers, hand)",
    )
    args = parser.parse_args(argv)
    import torch

    from bench.machine_info import machine

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    results = {}
    if args.detectors_only:
        for name in args.rows:
            results[name] = run_detectors(name, args.work, args.threads)
            (args.work / f"detectors-{name}.json").write_text(json.dumps(results[name], indent=1))
        print(f"{machine()}; {args.threads} threads per process\n\n{detector_table(results)}")
        return 0
    if args.classifiers_only:
        for name in args.rows:
            saved = args.work / f"classifiers-{name}.json"
            results[name] = (
                json.loads(saved.read_text()) if args.report_only else run_classifiers(name, args.work, args.threads)
            )
            saved.write_text(json.dumps(results[name], indent=1))
            print(classifier_table(results), file=sys.stderr, flush=True)
        print(f"{machine()}; {args.threads} threads per process\n\n{classifier_table(results)}")
        return 0
    for name in args.rows:
        saved = args.work / f"row-{name}.json"
        if args.report_only:
            if not saved.is_file():
                parser.error(f"--report-only: row {name!r} has no saved result ({saved}); run it first")
            results[name] = json.loads(saved.read_text())
            continue
        results[name] = run_row(name, args.work, args.threads)
        saved.write_text(json.dumps(results[name], indent=1))
        print(table(results), file=sys.stderr, flush=True)
    text = report(results, f"{machine()}; {args.threads} threads per process")
    print(text)
    if args.card:
        args.card.write_text(text + "\n")
    return 0


def report(results: dict[str, dict], machine_line: str) -> str:
    rows = "\n".join(f"- **{name}**: {ROWS[name][2]}" for name in results)
    return f"""Leave one domain out (`python -m bench.generalize`): both models trained on one set, tested on
the other's test split. Hands = one person, webcam photos, hands ~19 % of the width; Roboflow = close-ups of
several people, stretched to 224x224, hands ~59 % of the width, no fist (`0`) class. Hybrid accuracy: hands
found (IoU >= 0.5) and named right / all hands; clf, true crops: the classifier alone on the true boxes'
crops; SLD 1-5: the classifier alone on the 1,032 Sign Language Digits images of ASL 1-5 (one to five raised
fingers; many people, white background), which none of these classifiers saw; `-`: not measured (in-domain
models only for the rows that might ship and some rows without SLD) or not applicable (trained on SLD).
CPU tier of the recipes (`train/configs/*-demo.yaml`: YOLOv8n 160 px 10 epochs, ResNet-18 64 px 30 epochs,
seed 0), from scratch.
{machine_line}.

{rows}

{table(results)}"""


if __name__ == "__main__":
    sys.exit(main())
