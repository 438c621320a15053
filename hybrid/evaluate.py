"""End-to-end metrics for the hybrid pipeline (and a one-stage gesture detector) on a labelled set.

The arithmetic (`match`, `hand_metrics`, `average_precision`) works on plain boxes and labels, so
it is tested on hand-made cases with known answers; `evaluate` runs the models (`hybrid eval` is in hybrid/cli).

Definitions (IoU threshold 0.5 throughout):
- matching: per image, predictions in descending score order each take the unmatched ground-truth
  box with the highest IoU, if that IoU >= 0.5 (the VOC/COCO rule; boxes only, labels ignored).
- hybrid accuracy: ground-truth hands matched by a prediction with the right gesture / all
  ground-truth hands. Precision: such correct predictions / all predictions (unmatched predictions,
  and hands labelled 'unknown', count against it).
- per class c: TP = correct matches of ground truth c; FP = predictions labelled c that are not a
  correct match; FN = ground truth c not correctly matched.
- detection recall: ground-truth hands matched by any prediction (labels ignored).
- mAP50: all-point interpolated average precision (area under the precision envelope). Class
  agnostic ("hand") for the detector; class-aware and averaged over ground-truth classes for gestures.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from hybrid.files import atomic_file

logger = logging.getLogger(__name__)

IOU_THRESHOLD = 0.5
MISSED = "(none)"  # confusion-matrix row/column for an unmatched ground truth or prediction

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Truth:
    """A ground-truth hand."""

    box: Box
    label: str


@dataclass(frozen=True)
class Guess:
    """A predicted hand: anything with box/score/label converts (Hand, Detection)."""

    box: Box
    score: float
    label: str


def as_truth(item: Any) -> Truth:
    """A Truth from a `HandBox` (.xyxy) or anything with .box and .label."""
    box = item.xyxy if hasattr(item, "xyxy") else item.box
    return Truth(tuple(float(v) for v in box), str(item.label))


def as_guess(item: Any) -> Guess:
    return Guess(tuple(float(v) for v in item.box), float(item.score), str(item.label))


def iou_matrix(boxes_a: Sequence[Sequence[float]], boxes_b: Sequence[Sequence[float]]) -> np.ndarray:
    """Pairwise intersection-over-union of two lists of xyxy boxes, shape (len(a), len(b))."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match(
    truths: Sequence[Truth], guesses: Sequence[Guess], iou_threshold: float = IOU_THRESHOLD
) -> list[Optional[int]]:
    """For each guess (in input order), the index of the truth it matches, or None."""
    matched: list[Optional[int]] = [None] * len(guesses)
    if not truths or not guesses:
        return matched
    ious = iou_matrix([t.box for t in truths], [g.box for g in guesses])
    taken = np.zeros(len(truths), dtype=bool)
    # Stable sort: equal scores keep input order, so results are deterministic.
    for g in sorted(range(len(guesses)), key=lambda i: -guesses[i].score):
        candidates = np.where(taken, -1.0, ious[:, g])
        best = int(np.argmax(candidates))
        if candidates[best] >= iou_threshold:
            taken[best] = True
            matched[g] = best
    return matched


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def hand_metrics(
    truths: Sequence[Sequence[Truth]], guesses: Sequence[Sequence[Guess]], iou_threshold: float = IOU_THRESHOLD
) -> dict:
    """Hybrid accuracy, precision, detection recall, per-class P/R/F1 and the confusion matrix.

    `truths[i]` and `guesses[i]` are the hands of image i. Labels are compared as given (canonicalise
    them first)."""
    if len(truths) != len(guesses):
        raise ValueError(f"{len(truths)} images of ground truth but {len(guesses)} of predictions")
    pairs: list[tuple[str, str]] = []  # (truth label | MISSED, guess label | MISSED)
    n_truth = n_guess = n_found = n_correct = 0
    for image_truths, image_guesses in zip(truths, guesses):
        matched = match(image_truths, image_guesses, iou_threshold)
        n_truth += len(image_truths)
        n_guess += len(image_guesses)
        used = set()
        for g, t in enumerate(matched):
            guess = image_guesses[g]
            if t is None:
                pairs.append((MISSED, guess.label))
            else:
                used.add(t)
                n_found += 1
                n_correct += guess.label == image_truths[t].label
                pairs.append((image_truths[t].label, guess.label))
        pairs.extend((truth.label, MISSED) for t, truth in enumerate(image_truths) if t not in used)

    classes = sorted({t for t, _ in pairs if t != MISSED})
    per_class = {}
    for name in classes:
        tp = sum(1 for t, g in pairs if t == name and g == name)
        fp = sum(1 for t, g in pairs if g == name and t != name)
        fn = sum(1 for t, g in pairs if t == name and g != name)
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        per_class[name] = {"precision": precision, "recall": recall, "f1": _f1(precision, recall), "support": tp + fn}

    labels = sorted(({t for t, _ in pairs} | {g for _, g in pairs}) - {MISSED}) + [MISSED]
    index = {name: i for i, name in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=int)
    for t, g in pairs:
        confusion[index[t], index[g]] += 1

    accuracy, precision = _ratio(n_correct, n_truth), _ratio(n_correct, n_guess)
    return {
        "images": len(truths),
        "hands": n_truth,
        "predictions": n_guess,
        "correct": n_correct,
        "hybrid_accuracy": accuracy,
        "precision": precision,
        "f1": _f1(precision, accuracy),
        "detection_recall": _ratio(n_found, n_truth),
        "per_class": per_class,
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])) if per_class else 0.0,
        "confusion": {"labels": labels, "matrix": confusion.tolist()},
    }


def _ranked(
    truths: Sequence[Sequence[Truth]], guesses: Sequence[Sequence[Guess]], iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Every guess's score, best first, the hits among the guesses up to each (cumulative), and the truths."""
    scored: list[tuple[float, bool]] = []
    for image_truths, image_guesses in zip(truths, guesses):
        matched = match(image_truths, image_guesses, iou_threshold)
        scored.extend((guess.score, m is not None) for guess, m in zip(image_guesses, matched))
    scored.sort(key=lambda item: -item[0])
    scores = np.array([score for score, _ in scored], dtype=float)
    hits = np.cumsum([hit for _, hit in scored], dtype=float)
    return scores, hits, sum(len(t) for t in truths)


def average_precision(
    truths: Sequence[Sequence[Truth]], guesses: Sequence[Sequence[Guess]], iou_threshold: float = IOU_THRESHOLD
) -> float:
    """All-point interpolated AP of `guesses` against `truths`, labels ignored (filter them first)."""
    scores, hits, n_truth = _ranked(truths, guesses, iou_threshold)
    if n_truth == 0 or not len(scores):
        return 0.0
    recall = hits / n_truth
    precision = hits / np.arange(1, len(scores) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope))


def best_f1_threshold(
    truths: Sequence[Sequence[Truth]], guesses: Sequence[Sequence[Guess]], iou_threshold: float = IOU_THRESHOLD
) -> dict:
    """The score threshold that maximises F1 of `guesses` (found at a low threshold) against `truths`, labels
    ignored: {"threshold", "precision", "recall", "f1"} at it. The threshold lies halfway between the last
    score kept and the next one, so a rounding of either side keeps the same boxes. None with no hit at all."""
    scores, hits, n_truth = _ranked(truths, guesses, iou_threshold)
    if n_truth == 0 or not len(scores) or hits[-1] == 0:
        return {"threshold": None, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    precision, recall = hits / np.arange(1, len(scores) + 1), hits / n_truth
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    last = np.flatnonzero(np.diff(scores, append=-np.inf))  # the last guess of each run of equal scores
    best = int(last[np.argmax(f1[last])])
    below = scores[best + 1] if best + 1 < len(scores) else 0.0
    return {
        "threshold": float((scores[best] + below) / 2),
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "f1": float(f1[best]),
    }


def gesture_average_precision(
    truths: Sequence[Sequence[Truth]], guesses: Sequence[Sequence[Guess]], iou_threshold: float = IOU_THRESHOLD
) -> dict[str, float]:
    """Class-aware AP per ground-truth class (a guess counts only for its own label)."""
    classes = sorted({t.label for image in truths for t in image})
    return {
        name: average_precision(
            [[t for t in image if t.label == name] for image in truths],
            [[g for g in image if g.label == name] for image in guesses],
            iou_threshold,
        )
        for name in classes
    }


# --- running the models -----------------------------------------------------------------------------

AP_CONFIDENCE = 0.001  # detections this confident or more enter the AP curves (the operating threshold is higher)
AP_MAX_DETECTIONS = 300  # per image, as Ultralytics' val: AP counts the low-scoring detections the app caps
AP_MAX_HANDS = 10  # per image, the most confident detections classified for the hybrid's gesture AP


def _canonical(label: str) -> str:
    from hybrid.data import canonical_label

    return canonical_label(label)


def _truths(record) -> list[Truth]:
    """The ground-truth hands of a record (canonical labels); a box that is not 4 finite numbers is a ValueError
    naming the image (the readers refuse one; a record made in Python may still have it)."""
    truths = []
    for number, box in enumerate(record.boxes, 1):
        xyxy = tuple(float(v) for v in box.xyxy)
        if not all(math.isfinite(v) for v in xyxy):
            name = record.name or record.image
            raise ValueError(f"{name}: ground-truth box #{number} {xyxy} is not 4 finite numbers")
        truths.append(Truth(xyxy, _canonical(box.label)))
    return truths


def _latency(times_s: Sequence[float]) -> dict:
    ms = sorted(1000.0 * t for t in times_s)
    if not ms:
        return {"images": 0}
    p95 = ms[min(len(ms) - 1, math.ceil(0.95 * len(ms)) - 1)]
    return {"images": len(ms), "median_ms": statistics.median(ms), "p95_ms": p95}


def evaluate(pipeline, records: Sequence, gesture_detector=None, latency_images: int = 20) -> dict:
    """All metrics of `pipeline` (and optionally a one-stage gesture `HandDetector`) on labelled records.

    The hybrid is scored as shipped except `min_confidence` (0 here: every hand gets its top gesture, so
    accuracy measures the models, not the 'unknown' cut-off). Labels go through canonical_label."""
    truths = [_truths(record) for record in records]  # checked before a model runs
    hybrid: list[list[Guess]] = []  # at the operating detector threshold, scored by the detector
    detections: list[list[Guess]] = []  # every detection >= AP_CONFIDENCE, for the detector's AP
    gesture_scored: list[list[Guess]] = []  # top detections, scored detector x classifier, for gesture AP
    crop_right = crop_total = 0
    one_stage: list[list[Guess]] = []
    one_stage_ap: list[list[Guess]] = []
    times: list[float] = []
    for number, record in enumerate(records):
        image = record.load()
        found = pipeline.detect([image], threshold=AP_CONFIDENCE, max_hands=AP_MAX_DETECTIONS)[0]
        found = sorted(found, key=lambda d: -d.score)
        detections.append([Guess(tuple(d.box), d.score, "hand") for d in found])
        top = found[:AP_MAX_HANDS]
        hands = pipeline.hands([image], [top], min_confidence=0.0)[0]
        gesture_scored.append([Guess(h.box, h.score * h.probability, _canonical(h.label)) for h in hands])
        hybrid.append(
            [Guess(h.box, h.score, _canonical(h.label)) for h in hands if h.score >= pipeline.detector_threshold]
        )
        if record.boxes:  # the classifier alone, on ground-truth crops
            probabilities = pipeline.classify(pipeline.crops(image, [box.xyxy for box in record.boxes]))
            names = pipeline.classifier.label_names
            for box, row in zip(record.boxes, probabilities):
                crop_right += _canonical(names[int(row.argmax())]) == _canonical(box.label)
                crop_total += 1
        if gesture_detector is not None:
            raw = gesture_detector.predict(image, conf=AP_CONFIDENCE)
            one_stage_ap.append([Guess(tuple(d.box), d.score, _canonical(d.label)) for d in raw])
            one_stage.append([g for g in one_stage_ap[-1] if g.score >= gesture_detector.conf])
        if number < latency_images:
            if number == 0:
                pipeline([image])  # warm-up: first-call allocations and kernel choices are not latency
            start = time.perf_counter()
            pipeline([image])
            times.append(time.perf_counter() - start)

    metrics = hand_metrics(truths, hybrid)
    gesture_ap = gesture_average_precision(truths, gesture_scored)
    metrics.update(
        map50=average_precision(truths, detections),
        gesture_map50=float(np.mean(list(gesture_ap.values()))) if gesture_ap else 0.0,
        gesture_ap50=gesture_ap,
        classifier_accuracy=_ratio(crop_right, crop_total),
        latency=_latency(times),
        settings={
            "detector_threshold": pipeline.detector_threshold,
            "detector_size": pipeline.detector_size,
            "backend": pipeline.backend,
            "precision": pipeline.precision,
            "min_confidence": 0.0,
        },
    )
    if gesture_detector is not None:
        one = hand_metrics(truths, one_stage)
        one_ap = gesture_average_precision(truths, one_stage_ap)
        metrics["gesture_detector"] = {
            key: one[key]
            for key in ("hybrid_accuracy", "precision", "f1", "detection_recall", "per_class", "macro_f1", "confusion")
        } | {
            "map50": average_precision(
                truths, [[Guess(g.box, g.score, "hand") for g in image] for image in one_stage_ap]
            ),
            "gesture_map50": float(np.mean(list(one_ap.values()))) if one_ap else 0.0,
            "gesture_ap50": one_ap,
            "conf": gesture_detector.conf,
        }
    return metrics


def save_confusion_png(confusion: dict, path: Path, title: str = "hybrid: ground truth vs predicted") -> Path:
    """The confusion matrix (counts; rows ground truth, columns predicted; '(none)' = unmatched) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    labels, matrix = confusion["labels"], np.asarray(confusion["matrix"])
    size = 1.2 + 0.55 * len(labels)
    figure, axes = plt.subplots(figsize=(size + 1.0, size))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("ground truth")
    axes.set_title(title, fontsize=10)
    limit = matrix.max() / 2 if matrix.size else 0
    for (row, column), value in np.ndenumerate(matrix):
        if value:
            axes.text(
                column,
                row,
                str(value),
                ha="center",
                va="center",
                color="white" if value > limit else "black",
                fontsize=8,
            )
    figure.tight_layout()
    try:
        with atomic_file(path) as tmp:
            figure.savefig(tmp, dpi=120)
    finally:
        plt.close(figure)
    return path


def summary_table(metrics: dict) -> str:
    """A few lines for the terminal."""
    rows = [
        ("hybrid accuracy", metrics["hybrid_accuracy"]),
        ("precision", metrics["precision"]),
        ("detection recall", metrics["detection_recall"]),
        ("detector mAP50", metrics["map50"]),
        ("gesture mAP50", metrics["gesture_map50"]),
        ("classifier accuracy (GT crops)", metrics["classifier_accuracy"]),
    ]
    lines = [f"{metrics['images']} images, {metrics['hands']} hands, {metrics['predictions']} predicted"]
    lines += [f"  {name:<32} {value:.3f}" for name, value in rows]
    if "gesture_detector" in metrics:
        one = metrics["gesture_detector"]
        lines += ["one-stage gesture detector:"] + [
            f"  {name:<32} {one[key]:.3f}"
            for name, key in (
                ("hybrid-style accuracy", "hybrid_accuracy"),
                ("precision", "precision"),
                ("detection recall", "detection_recall"),
                ("gesture mAP50", "gesture_map50"),
            )
        ]
    latency = metrics.get("latency", {})
    if latency.get("images"):
        lines.append(
            f"  latency: median {latency['median_ms']:.1f} ms, p95 {latency['p95_ms']:.1f} ms "
            f"({latency['images']} images, one at a time)"
        )
    lines.append("per class (P / R / F1 / n):")
    lines += [
        f"  {name:<10} {c['precision']:.3f} {c['recall']:.3f} {c['f1']:.3f} {c['support']}"
        for name, c in metrics["per_class"].items()
    ]
    return "\n".join(lines)


def select_split(records: Sequence, split: str, model_folders: Sequence = (), seed: int = 0) -> tuple[list, str]:
    """The records of `split` ('all': every record) as the models in `model_folders` were trained (their
    split.json; `hybrid.data.splits.held_out`), and a few words on where that split comes from.
    Raises ValueError when a chosen record is one the models trained on."""
    from hybrid.data.splits import held_out, load_split, record_id

    chosen = held_out(records, model_folders, split, seed=seed)
    if split == "all":
        return chosen, "every image"
    recorded = set()
    for folder in model_folders:
        splits = load_split(folder) if folder is not None else None
        recorded |= set().union(*splits.values()) if splits else set()
    listed = sum(record_id(record) in recorded for record in chosen)
    if listed:
        rest = len(chosen) - listed
        return chosen, f"the {split} split recorded with the models (split.json)" + (
            f", and a seeded {split} split of the {rest} images they do not list" if rest else ""
        )
    if any(record.split == split for record in records):
        return chosen, f"the dataset's own {split} split"
    return chosen, (
        f"a seeded {split} split (the dataset has no {split} split of its own; see "
        "hybrid.data.split_records); --split all scores every image"
    )


def unknown_labels(records: Sequence, label_names: Sequence[str]) -> dict[str, int]:
    """Ground-truth labels (canonical) that are not among the classifier's labels, with their hand counts:
    those hands can never be named right, so they count as errors."""
    known = {_canonical(name) for name in label_names}
    counts = Counter(_canonical(box.label) for record in records for box in record.boxes)
    return {label: count for label, count in sorted(counts.items()) if label not in known}
