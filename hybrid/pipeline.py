"""HybridPipeline: detect hands (YOLOv8) -> cut THE square crop -> classify all crops in one batch -> Hands.

Example:
    >>> from hybrid import HybridPipeline
    >>> pipe = HybridPipeline.from_pretrained(detector="models/detector", classifier="models/classifier")
    >>> hands = pipe("photo.jpg")[0]          # one list of Hand per image
    >>> hands[0].label, hands[0].probability, hands[0].box
    ('5', 0.98, (412.0, 120.5, 530.2, 301.9))

Speed: the default ("shipped") path runs both networks in OpenVINO (hybrid.runtime): the detector in
fp32 at `detector_size` <= 320 (the same letterbox as PyTorch), the classifier in bf16 where the CPU
computes bf16 natively (AVX512-BF16 or AMX), fp32 elsewhere. Without openvino (or on a GPU) the networks
run in PyTorch, the classifier in bf16 where native. `HybridPipeline(..., fast=False)` is the naive
path: fp32 eager PyTorch, detector at its trained size. bench/latency.py measures both, and
bench/evaluate.py --paths shipped naive checks that the fast path keeps the accuracy.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageColor, ImageDraw, ImageFont

from hybrid.classifier import Prediction
from hybrid.crops import square_crop
from hybrid.images import ImageError, ImageInput, load_image

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"        # the label of a hand whose best gesture probability is below min_confidence
NO_GESTURE = "no_gesture"  # a classifier class meaning "a hand, but no gesture": kept as is, not a gesture
MIN_CONFIDENCE = 0.5
TOP_K = 3
FAST_DETECTOR_SIZE = 320   # hands in 800x600 photos stay >= ~40 px at 320; see bench/latency.py


@dataclass
class Hand:
    """One hand: `box` (x0, y0, x1, y1) pixels of the input image, `score` the detector's confidence,
    `label` the gesture (or 'unknown' below min_confidence, or 'no_gesture'), `probability` the
    classifier's probability of its top class, `top_k` the classifier's best classes."""

    box: tuple[float, float, float, float]
    score: float
    label: str
    probability: float
    top_k: list = field(default_factory=list)

    @property
    def is_gesture(self) -> bool:
        return self.label not in (UNKNOWN, NO_GESTURE)

    def to_dict(self) -> dict:
        """JSON-able: {"box": [x0, y0, x1, y1], "score", "label", "probability", "top_k": [{"label", "score"}]}."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "label": self.label,
            "probability": round(float(self.probability), 4),
            "top_k": [{"label": p.label, "score": round(float(p.score), 4)} for p in self.top_k],
        }


def image_result(name: str, image: Image.Image, hands: Sequence[Hand]) -> dict:
    """The JSON of one image, as `hybrid predict --json` prints it."""
    return {"image": str(name), "width": image.width, "height": image.height,
            "hands": [hand.to_dict() for hand in hands]}


class HybridPipeline:
    """Detector + classifier as one callable. `pipe(image or list)` -> one list of `Hand` per image.

    `min_confidence`: below this top-class probability a hand is labelled 'unknown'.
    `detector_threshold`: minimum detector score (default: the detector's own `conf`).
    `fast`: the shipped speed path (see module doc); `backend` 'openvino' | 'torch' | 'auto' for both networks;
    `detector_size`: detector input side (default 320 when fast, else the detector's trained size);
    `precision` of the classifier: 'auto' (bf16 where native, when fast) | 'bf16' | 'fp32'.
    """

    def __init__(
        self,
        detector,
        classifier,
        min_confidence: float = MIN_CONFIDENCE,
        detector_threshold: Optional[float] = None,
        top_k: int = TOP_K,
        fast: bool = True,
        backend: str = "auto",
        detector_size: Optional[int] = None,
        precision: Optional[str] = None,
        onnx_cache_dir: Optional[Union[str, Path]] = None,
    ) -> None:
        from hybrid.classifier import resolve_precision

        if backend not in ("auto", "openvino", "torch"):
            raise ValueError(f"backend must be 'auto', 'openvino' or 'torch', got {backend!r}")
        self.detector = detector
        self.classifier = classifier
        self.min_confidence = float(min_confidence)
        self.detector_threshold = float(detector.conf if detector_threshold is None else detector_threshold)
        self.top_k = int(top_k)
        self.fast = bool(fast)
        self.detector_size = int(detector_size or (min(FAST_DETECTOR_SIZE, detector.image_size) if fast else detector.image_size))
        self.precision = resolve_precision(precision or ("auto" if fast else "fp32"), classifier.device)
        self.fast_detector = self.fast_classifier = None  # OpenVINO runners, when used
        if backend == "openvino" or (backend == "auto" and fast):
            from hybrid.runtime import OpenVinoClassifier, OpenVinoDetector

            required = backend == "openvino"
            self.fast_detector = self._compiled(OpenVinoDetector, detector, "detector", onnx_cache_dir, required)
            self.fast_classifier = self._compiled(OpenVinoClassifier, classifier, "classifier", onnx_cache_dir, required,
                                                  precision=self.precision)
        if self.fast_classifier is not None:
            self.precision = self.fast_classifier.precision
        self.backend = {2: "openvino", 1: "mixed", 0: "torch"}[(self.fast_detector is not None) + (self.fast_classifier is not None)]

    @staticmethod
    def _compiled(runner, model, kind: str, cache_dir, required: bool, **options):
        """An OpenVINO runner for `model`, or None (PyTorch runs it) when that cannot or should not be."""
        from hybrid.runtime import openvino_available

        if torch.device(model.device).type != "cpu" and not required:
            return None  # on a GPU, PyTorch is the fast path
        if not openvino_available():
            if required:
                raise RuntimeError("backend='openvino' needs the onnx and openvino packages")
            logger.info("onnx/openvino not installed: the %s runs in PyTorch", kind)
            return None
        try:
            return runner(model, cache_dir=cache_dir, **options)
        except Exception as error:  # an export failure must not stop inference: PyTorch still works
            if required:
                raise
            logger.warning("OpenVINO could not take the %s (%s: %s); it runs in PyTorch", kind, type(error).__name__, error)
            return None

    @classmethod
    def from_pretrained(
        cls,
        detector: Union[str, Path],
        classifier: Union[str, Path],
        revision: Optional[str] = None,
        **kwargs,
    ) -> "HybridPipeline":
        """Load both models from Hub ids (`org/name`, `org/name@rev`) or local folders; `revision`
        applies to both (an `@rev` in an id wins for that id). Other arguments go to `__init__`."""
        from hybrid.classifier import GestureClassifier
        from hybrid.detector import HandDetector
        from hybrid.hub import split_revision

        def rev(name):  # an explicit '@rev' in the id is that model's revision
            return None if split_revision(str(name))[1] else revision

        return cls(HandDetector.from_pretrained(detector, revision=rev(detector)),
                   GestureClassifier.from_pretrained(classifier, revision=rev(classifier)), **kwargs)

    # --- the steps ---------------------------------------------------------------------------------

    def detect(self, images: Sequence[Image.Image], threshold: Optional[float] = None) -> list:
        """Hand detections (list per image) for RGB PIL images, at `threshold` (default detector_threshold)."""
        conf = self.detector_threshold if threshold is None else float(threshold)
        if not 0.0 <= conf <= 1.0:
            raise ValueError(f"detector_threshold must be between 0 and 1, got {conf}")
        if self.fast_detector is not None:
            return self.fast_detector.predict([np.asarray(image) for image in images], conf, self.detector.iou, self.detector_size)
        return self.detector.predict(list(images), conf=conf, image_size=self.detector_size)

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.classifier.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def classify(self, crops: Sequence[Image.Image]) -> torch.Tensor:
        """Class probabilities (N, classes), fp32, of all crops in ONE forward pass."""
        if not crops:
            return torch.empty(0, len(self.classifier.label_names))
        batch = self.classifier.preprocess(list(crops))
        if self.fast_classifier is not None:
            return self.fast_classifier.logits(batch).softmax(dim=-1)
        with torch.inference_mode(), self.autocast():
            logits = self.classifier.model(batch)
        return logits.float().softmax(dim=-1).cpu()

    def crops(self, image: Image.Image, boxes: Sequence[Sequence[float]]) -> list[Image.Image]:
        """THE inference crops (hybrid.crops.square_crop, no jitter) of `boxes` in `image`."""
        return [square_crop(image, box) for box in boxes]

    def hands(self, images: Sequence[Image.Image], detections: Sequence[Sequence], min_confidence: Optional[float] = None) -> list[list[Hand]]:
        """Classify every detection of every image in one batch and merge into Hands."""
        min_confidence = self.min_confidence if min_confidence is None else float(min_confidence)
        crops = [crop for image, found in zip(images, detections) for crop in self.crops(image, [d.box for d in found])]
        probabilities = self.classify(crops)
        k = max(1, min(self.top_k, len(self.classifier.label_names)))
        scores, indices = probabilities.topk(k, dim=-1) if len(crops) else (torch.empty(0, k), torch.empty(0, k))
        names = self.classifier.label_names
        results, row = [], 0
        for found in detections:
            image_hands = []
            for detection in found:
                top = [Prediction(names[int(i)], float(s)) for s, i in zip(scores[row].tolist(), indices[row].tolist())]
                row += 1
                best = top[0]
                label = best.label if best.score >= min_confidence else UNKNOWN
                image_hands.append(Hand(tuple(float(v) for v in detection.box), float(detection.score), label, best.score, top))
            results.append(image_hands)
        return results

    def __call__(
        self,
        images: Union[ImageInput, Sequence[ImageInput]],
        detector_threshold: Optional[float] = None,
        min_confidence: Optional[float] = None,
    ) -> list[list[Hand]]:
        """Hands in one image or a list of images: always one list of Hand per image (a single image
        gives a list of one list). Images: paths, bytes, PIL, RGB arrays (hybrid.images.load_image)."""
        sources = list(images) if isinstance(images, (list, tuple)) else [images]
        loaded = [load_image(source) for source in sources]
        return self.hands(loaded, self.detect(loaded, detector_threshold), min_confidence)

    def __repr__(self) -> str:
        return (f"HybridPipeline(detector={self.detector!r}, classifier={self.classifier!r}, backend={self.backend}, "
                f"detector_size={self.detector_size}, precision={self.precision}, min_confidence={self.min_confidence}, "
                f"detector_threshold={self.detector_threshold})")


# --- drawing -----------------------------------------------------------------------------------------

# Colour-blind-safe (Okabe-Ito) colours, one per label; grey for hands that are not a gesture.
_PALETTE = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"]
_NOT_GESTURE = "#9E9E9E"


def label_colour(label: str, names: Optional[Sequence[str]] = None) -> str:
    if label in (UNKNOWN, NO_GESTURE):
        return _NOT_GESTURE
    index = list(names).index(label) if names and label in names else sum(map(ord, label))
    return _PALETTE[index % len(_PALETTE)]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizing
        return ImageFont.load_default()


def draw_hands(image: Union[ImageInput, Image.Image], hands: Sequence[Hand], names: Optional[Sequence[str]] = None) -> Image.Image:
    """A copy of `image` with each hand's box and 'label prob' drawn (text on a filled tag, readable
    on any photo; line width and text size scale with the image)."""
    canvas = load_image(image).copy()
    draw = ImageDraw.Draw(canvas)
    scale = max(canvas.width, canvas.height)
    width = max(2, round(scale / 300))
    font = _font(max(12, round(scale / 40)))
    for hand in hands:
        x0, y0, x1, y1 = hand.box
        colour = label_colour(hand.label, names)
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        text = f"{hand.label} {hand.probability:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tag_w, tag_h = right - left + 2 * width, bottom - top + 2 * width
        ty = y0 - tag_h if y0 - tag_h >= 0 else min(y0 + width, canvas.height - tag_h)  # above the box, else inside
        tx = min(max(x0, 0), max(canvas.width - tag_w, 0))
        draw.rectangle((tx, ty, tx + tag_w, ty + tag_h), fill=colour)
        rgb = ImageColor.getrgb(colour)
        ink = "black" if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 else "white"
        draw.text((tx + width - left, ty + width - top), text, fill=ink, font=font)
    return canvas


# --- the command ---------------------------------------------------------------------------------

def check_output_folder(folder: Path, flag: str) -> None:
    """Refuse, before any work, an output folder (`flag` names the option) that is a file or cannot be
    created or written; creates nothing."""
    existing = next(path for path in (folder, *folder.absolute().parents) if path.exists())
    if not existing.is_dir():
        raise ValueError(f"{flag} {folder}: {existing} is a file, expected a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {folder}: {existing} is not writable")


def save_unique(image: Image.Image, save_dir: Path, stem: str) -> Path:
    """Save `image` as save_dir/STEM.jpg, or STEM-1.jpg, STEM-2.jpg, ... when taken; never replaces a file.
    Written to a temporary file first, then hard-linked in place: the link is atomic and fails on an
    existing name, so no file is half-written or overwritten, even by a concurrent run."""
    from hybrid.files import umask

    save_dir.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=save_dir, prefix=f".{stem}.", suffix=".tmp.jpg")
    os.close(handle)
    try:
        image.save(tmp, format="JPEG", quality=90)
        os.chmod(tmp, 0o666 & ~umask())
        number = 0
        while True:
            target = save_dir / (f"{stem}.jpg" if number == 0 else f"{stem}-{number}.jpg")
            try:
                os.link(tmp, target)
                return target
            except FileExistsError:
                number += 1
    finally:
        Path(tmp).unlink(missing_ok=True)


def model_source(given: Optional[str], kind: str) -> str:
    """--detector/--classifier, else $HYBRID_<KIND>, else the Space pin, else models/<kind>."""
    if given:
        return given
    from hybrid.hub import default_model

    return default_model(kind)


def predict_command(args) -> int:
    """`hybrid predict IMG... [--json] [--save-dir DIR]`. With --json: one JSON object per image, one per
    line ({"image", "width", "height", "hands": [Hand.to_dict()...]}, plus "annotated" with --save-dir).
    An unreadable image (corrupt, missing, too large) gets an error line on stderr (with --json also its
    JSON line {"image", "error"}) and the others go on; the exit status is then 1."""
    for flag, value in (("--min-confidence", args.min_confidence), ("--detector-threshold", args.detector_threshold)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"{flag} must be between 0 and 1, got {value}")
    save_dir = Path(args.save_dir) if args.save_dir else None
    if save_dir:
        check_output_folder(save_dir, "--save-dir")
    pipe = HybridPipeline.from_pretrained(
        detector=model_source(args.detector, "detector"), classifier=model_source(args.classifier, "classifier"),
        **{k: v for k, v in (("min_confidence", args.min_confidence), ("detector_threshold", args.detector_threshold))
           if v is not None},
    )
    failed = 0
    for path in args.images:
        try:
            image = load_image(path)
        except ImageError as error:  # report it, go on with the other images
            print(f"hybrid: error: {error}", file=sys.stderr, flush=True)
            if args.json:
                print(json.dumps({"image": str(path), "error": str(error)}, ensure_ascii=False), flush=True)
            failed += 1
            continue
        hands = pipe(image)[0]
        result = image_result(path, image, hands)
        if save_dir:
            target = save_unique(draw_hands(image, hands, pipe.classifier.label_names), save_dir, Path(path).stem)
            result["annotated"] = str(target)
        if args.json:
            print(json.dumps(result, ensure_ascii=False), flush=True)
        else:
            found = ", ".join(f"{h.label} {h.probability:.0%}" for h in hands) or "no hands"
            print(f"{path}: {found}", flush=True)
    return 1 if failed else 0
