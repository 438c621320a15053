"""Finger states and handedness for every hand box, labelled by MediaPipe Hands: derived training labels.

Runs in its own venv (MediaPipe 0.10.21 needs numpy < 2; never a dependency of the app or the library):

    python3.11 -m venv .venv-label && .venv-label/bin/pip install -r tools/requirements-label.txt
    .venv-label/bin/python tools/label_fingers.py            # writes annotations/fingers.json.gz

For each hand box of Hands, Roboflow and Sign Language Digits 1-5 it runs MediaPipe on the square crop the
pipeline makes (hybrid.crops.square_crop; on a grey border when the hand fills the crop) and on its mirror
image, and keeps per box: the 21 landmarks (crop-normalised), the five finger states from them, the finger
count they give, and the handedness. A box whose landmark count disagrees with its human label keeps only the
human count (no finger states); a handedness is kept only when the mirror image gets the other hand.

MediaPipe's handedness assumes a mirrored (selfie) image; our photos are not mirrored, so its label is swapped:
`handedness` is the person's own hand as an unmirrored photo shows it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hybrid.crops import FILL, square_crop  # noqa: E402
from hybrid.data import read_dataset  # noqa: E402
from hybrid.data.registry import REGISTRY  # noqa: E402
from hybrid.fingers import FINGERS, LABELS, box_key, read_annotations  # noqa: E402

SETS = ("hands", "roboflow", "sign-digits-counts")
MIN_SIDE = 256  # crops are scaled up to this side: MediaPipe's palm detector misses small hands
BORDER = 0.3  # a hand MediaPipe misses in its crop is tried again on a grey border of this much per side
MIN_HANDEDNESS_SCORE = 0.8

# MediaPipe's 21 landmarks: 0 wrist; per finger four joints, base to tip.
JOINTS = {
    "thumb": (1, 2, 3, 4),
    "index": (5, 6, 7, 8),
    "middle": (9, 10, 11, 12),
    "ring": (13, 14, 15, 16),
    "pinky": (17, 18, 19, 20),
}
# The rule's three numbers were chosen for the best agreement with the human counts on the train folders of
# Hands and Roboflow (1,180 boxes with landmarks: 0.838; the first guess, 50 / 50 / 1.0 from the index base, 0.814).
STRAIGHT_DEGREES = 50  # a finger is up when its two upper joints together bend less than this much
THUMB_STRAIGHT_DEGREES = 60  # the thumb: the same at its two upper joints, and
THUMB_OUT = 1.2  # its tip farther from the pinky's base than this times its middle joint is (spread from the palm)


def _bend(points: np.ndarray, a: int, b: int, c: int) -> float:
    """Degrees the chain a -> b -> c turns at b (0: straight)."""
    u, v = points[b] - points[a], points[c] - points[b]
    cosine = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-9))
    return math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


def finger_states(landmarks: np.ndarray) -> list[bool]:
    """Which of thumb, index, middle, ring, pinky are up, from 21 (x, y, z) landmarks."""
    points = np.asarray(landmarks, dtype=float)
    states = []
    for finger, (base, low, high, tip) in JOINTS.items():
        if finger == "thumb":
            straight = _bend(points, base, low, high) + _bend(points, low, high, tip) < THUMB_STRAIGHT_DEGREES
            pinky_base = points[17]
            out = np.linalg.norm(points[tip] - pinky_base) > THUMB_OUT * np.linalg.norm(points[low] - pinky_base)
            states.append(bool(straight and out))
        else:
            states.append(_bend(points, base, low, high) + _bend(points, low, high, tip) < STRAIGHT_DEGREES)
    return states


def _detect(hands, crop: Image.Image):
    """(landmarks 21x3 in crop-normalised coordinates, MediaPipe's label, its score), or None."""
    for border in (0.0, BORDER):
        if border:
            pad = round(crop.width * border)
            image = ImageOps.expand(crop, pad, fill=FILL)
        else:
            pad, image = 0, crop
        found = hands.process(np.asarray(image))
        if found.multi_hand_landmarks:
            scale = image.width / crop.width
            points = np.array([(p.x, p.y, p.z) for p in found.multi_hand_landmarks[0].landmark])
            points[:, :2] = points[:, :2] * scale - pad / crop.width
            points[:, 2] *= scale
            category = found.multi_handedness[0].classification[0]
            return points, category.label, float(category.score)
    return None


def label_box(hands, crop: Image.Image, count: str) -> dict:
    """The annotation of one box whose human label is `count` ('0'..'5')."""
    entry: dict = {"label": count, "found": False}
    seen = _detect(hands, crop)
    if seen is None:
        return entry
    points, mediapipe_label, score = seen
    entry.update(found=True, landmarks=np.round(points, 3).tolist())
    apply_rule(entry)
    mirrored = _detect(hands, ImageOps.mirror(crop))
    own_hand = {"Left": "right", "Right": "left"}[mediapipe_label]  # MediaPipe assumes a mirrored image
    if mirrored is not None and mirrored[1] != mediapipe_label and min(score, mirrored[2]) >= MIN_HANDEDNESS_SCORE:
        entry.update(handedness=own_hand, handedness_score=round(min(score, mirrored[2]), 4))
    return entry


def apply_rule(entry: dict) -> None:
    """Set the finger states, their count and whether it agrees with the human label from the landmarks."""
    states = finger_states(entry["landmarks"])
    entry.pop("fingers", None)
    entry.update(landmark_count=sum(states), agrees=sum(states) == int(entry["label"]))
    if entry["agrees"]:
        entry["fingers"] = dict(zip(FINGERS, states))


def label_all(sets=SETS, limit: int | None = None) -> dict:
    import mediapipe as mp

    boxes: dict[str, dict] = {}
    with mp.solutions.hands.Hands(
        static_image_mode=True, max_num_hands=1, model_complexity=1, min_detection_confidence=0.3
    ) as hands:
        for name in sets:
            records = read_dataset(name, merge_labels=True)[:limit]
            for record in records:
                image = record.load()
                for index, box in enumerate(record.boxes):
                    crop = square_crop(image, box.xyxy)
                    if crop.width < MIN_SIDE:
                        crop = crop.resize((MIN_SIDE, MIN_SIDE), Image.Resampling.BILINEAR)
                    boxes[box_key(record, index)] = {
                        "box": [round(v, 1) for v in box.xyxy],
                        **label_box(hands, crop, box.label),
                    }
            print(f"{name}: {len(records)} images", file=sys.stderr, flush=True)
    return {"meta": meta(sets), "agreement": agreement(boxes), "boxes": boxes}


def meta(sets) -> dict:
    import mediapipe as mp

    return {
        "labeller": "MediaPipe Hands (mediapipe.solutions.hands, model_complexity 1, static images), "
        f"mediapipe {mp.__version__}, Apache License 2.0, https://github.com/google-ai-edge/mediapipe",
        "rule": f"a finger is up when its two upper joints bend less than {STRAIGHT_DEGREES} degrees together; the "
        f"thumb ({THUMB_STRAIGHT_DEGREES} degrees) also needs its tip farther from the pinky base than {THUMB_OUT} "
        "times its middle joint is",
        "fingers": list(FINGERS),
        "handedness": "the person's own hand as the unmirrored photo shows it; kept when the mirrored crop gets "
        f"the other hand, both scored >= {MIN_HANDEDNESS_SCORE}",
        "landmarks": "21 MediaPipe hand landmarks (x, y, z), x and y as fractions of the square crop hybrid.crops "
        "cuts for the box",
        "data": {name: REGISTRY[name].attribution for name in sets},
    }


def agreement(boxes: dict) -> dict:
    """Per set and human label: boxes, boxes with landmarks, boxes whose landmark count agrees."""
    table: dict[str, dict[str, Counter]] = {}
    for key, entry in boxes.items():
        counts = table.setdefault(key.split(":", 1)[0], {}).setdefault(entry["label"], Counter())
        counts["boxes"] += 1
        counts["found"] += entry["found"]
        counts["agree"] += entry.get("agrees", False)
        counts["handedness"] += "handedness" in entry
    return {name: {label: dict(c) for label, c in sorted(labels.items())} for name, labels in sorted(table.items())}


def write(result: dict, path: Path) -> None:
    """One box per line (`zcat` it: a re-labelling reads as a diff), gzip-compressed with no timestamp."""
    lines = [
        f"  {json.dumps(key)}: {json.dumps(entry, separators=(',', ':'))}" for key, entry in result["boxes"].items()
    ]
    head = {k: v for k, v in result.items() if k != "boxes"}
    text = json.dumps(head, indent=1)[:-2] + ',\n "boxes": {\n' + ",\n".join(lines) + "\n }\n}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(gzip.compress(text.encode(), 9, mtime=0))  # the same labels give the same bytes
    temporary.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--output", type=Path, default=LABELS)
    parser.add_argument("--limit", type=int, default=None, help="images per set (a quick look)")
    parser.add_argument(
        "--rules-only", action="store_true", help="re-derive the finger states from the landmarks already in --output"
    )
    args = parser.parse_args()
    if args.rules_only:
        result = read_annotations(args.output)
        for entry in result["boxes"].values():
            if entry["found"]:
                apply_rule(entry)
        result.update(meta={**result["meta"], "rule": meta(SETS)["rule"]}, agreement=agreement(result["boxes"]))
    else:
        result = label_all(limit=args.limit)
    write(result, args.output)
    print(json.dumps(result["agreement"], indent=1))


if __name__ == "__main__":
    main()
