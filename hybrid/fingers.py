"""Which fingers are up and which hand it is: the labels (annotations/fingers.json.gz, made by
tools/label_fingers.py with MediaPipe) and the classifier's extra outputs that learn them.

A classifier with these outputs keeps its count head as it is (timm and transformers load `model.safetensors`
as a plain 6-class model); the extra outputs live in `fingers.safetensors` beside it, one row each of a linear
map from the same pooled features, named in the file's metadata. In memory `GestureClassifier` appends them to
the count head, so every network (PyTorch, OpenVINO, int8) computes them in the same pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from hybrid.limits import MAX_MODEL_JSON_BYTES

FINGERS = ("thumb", "index", "middle", "ring", "pinky")
RIGHT_HAND = "right_hand"  # its logit > 0: the person's right hand, as an unmirrored photo shows it
OUTPUTS = (*FINGERS, RIGHT_HAND)
FINGERS_NAME = "fingers.safetensors"
LABELS = Path(__file__).resolve().parent.parent / "annotations" / "fingers.json.gz"  # gzip: 2 MB of JSON, 0.4 MB
UNKNOWN = -1  # a label MediaPipe could not give (no landmarks, a count that disagrees, an unsure hand)
# Where a classifier with finger outputs takes the count from: its count head, the fingers it sees up (their
# count's distribution), or the mean of the two; chosen on the validation split when it is trained.
COUNT_FROM = ("head", "fingers", "both")


def box_key(record, index: int) -> str:
    """The annotation key of a record's `index`-th box: its split.json id and the box number."""
    from hybrid.data.splits import record_id

    return f"{record_id(record)}#{index}"


def read_annotations(path: Path = LABELS) -> dict:
    """The annotation file (tools/label_fingers.py writes it): gzip-compressed JSON, at most 32 MB unpacked."""
    import gzip

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no finger labels (make them with tools/label_fingers.py)")
    with gzip.open(path, "rb") as file:
        text = file.read(8 * MAX_MODEL_JSON_BYTES + 1)
    if len(text) > 8 * MAX_MODEL_JSON_BYTES:
        raise ValueError(f"{path}: over {8 * MAX_MODEL_JSON_BYTES} bytes unpacked; not a finger label file")
    return json.loads(text)


def load_labels(path: Path = LABELS) -> dict[str, tuple[int, ...]]:
    """Box key -> the six targets (thumb .. pinky up = 1 / down = 0, right hand = 1 / left = 0; UNKNOWN where
    the annotation has none)."""
    boxes = read_annotations(path)["boxes"]
    return {key: targets(entry) for key, entry in boxes.items()}


def targets(entry: Mapping) -> tuple[int, ...]:
    fingers = entry.get("fingers") or {}
    hand = entry.get("handedness")
    return (
        *(int(fingers[name]) if name in fingers else UNKNOWN for name in FINGERS),
        {"right": 1, "left": 0}.get(hand, UNKNOWN),
    )


def mirrored(target: tuple[int, ...]) -> tuple[int, ...]:
    """The targets of the mirror image: the same fingers, the other hand."""
    *fingers, hand = target
    return (*fingers, UNKNOWN if hand == UNKNOWN else 1 - hand)


def readings(outputs: Sequence[str], row: Sequence[float]) -> tuple[Optional[dict], Optional[float]]:
    """({finger: probability up} or None, probability of the right hand or None) from a classifier's extra
    output probabilities `row`, named by `outputs`."""
    values = dict(zip(outputs, (float(v) for v in row)))
    fingers = {name: values[name] for name in FINGERS} if set(FINGERS) <= set(values) else None
    return fingers, values.get(RIGHT_HAND)


def count_distribution(up: np.ndarray) -> np.ndarray:
    """P(0..5 fingers up) per row of five finger probabilities (N, 5) -> (N, 6), the fingers taken as
    independent (a Poisson-binomial distribution)."""
    up = np.asarray(up, dtype=np.float64)
    counts = np.zeros((len(up), len(FINGERS) + 1))
    counts[:, 0] = 1.0
    for finger in range(len(FINGERS)):
        p = up[:, finger : finger + 1]
        counts = counts * (1 - p) + np.concatenate([np.zeros((len(up), 1)), counts[:, :-1]], axis=1) * p
    return counts


def check_count_from(count_from: str, label_names: Sequence[str], outputs: Sequence[str]) -> str:
    if count_from not in COUNT_FROM:
        raise ValueError(f"count_from must be one of {COUNT_FROM}, got {count_from!r}")
    counts = {str(n) for n in range(len(FINGERS) + 1)}
    if count_from != "head" and not (set(FINGERS) <= set(outputs) and set(label_names) <= counts):
        raise ValueError(f"count_from {count_from!r} needs the five finger outputs and labels in 0..5")
    return count_from


def count_probabilities(head: np.ndarray, extra: np.ndarray, classifier) -> np.ndarray:
    """The class probabilities a classifier reports: its count head's, or per its `count_from` the distribution
    of the fingers it sees up over its labels, or the mean of the two."""
    if classifier.count_from == "head" or not len(head):
        return head
    up = extra[:, [classifier.outputs.index(name) for name in FINGERS]]
    from_fingers = count_distribution(up)[:, [int(name) for name in classifier.label_names]]
    from_fingers = (from_fingers / np.maximum(from_fingers.sum(axis=1, keepdims=True), 1e-12)).astype(np.float32)
    return from_fingers if classifier.count_from == "fingers" else (head + from_fingers) / 2


def hand_name(right_probability: Optional[float]) -> Optional[str]:
    if right_probability is None:
        return None
    return "right" if right_probability >= 0.5 else "left"
