"""End-to-end metrics for the hybrid pipeline (and a one-stage gesture detector) on a labelled set.

The arithmetic (`match`, `hand_metrics`, `average_precision`) works on plain boxes and labels, so
it is tested on hand-made cases with known answers; `evaluate` and `eval_command` run the models.

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

import json
import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

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


def match(truths: Sequence[Truth], guesses: Sequence[Guess], iou_threshold: float = IOU_THRESHOLD) -> list[Optional[int]]:
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
    truths: Sequence[Sequence[Truth]],
    guesses: Sequence[Sequence[Guess]],
    iou_threshold: float = IOU_THRESHOLD,
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


def average_precision(
    truths: Sequence[Sequence[Truth]],
    guesses: Sequence[Sequence[Guess]],
    iou_threshold: float = IOU_THRESHOLD,
) -> float:
    """All-point interpolated AP of `guesses` against `truths`, labels ignored (filter them first)."""
    n_truth = sum(len(t) for t in truths)
    if n_truth == 0:
        return 0.0
    scored: list[tuple[float, bool]] = []
    for image_truths, image_guesses in zip(truths, guesses):
        matched = match(image_truths, image_guesses, iou_threshold)
        scored.extend((guess.score, m is not None) for guess, m in zip(image_guesses, matched))
    if not scored:
        return 0.0
    scored.sort(key=lambda item: -item[0])
    hits = np.cumsum([hit for _, hit in scored])
    recall = hits / n_truth
    precision = hits / np.arange(1, len(scored) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope))


def gesture_average_precision(
    truths: Sequence[Sequence[Truth]],
    guesses: Sequence[Sequence[Guess]],
    iou_threshold: float = IOU_THRESHOLD,
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
