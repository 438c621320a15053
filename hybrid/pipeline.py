"""HybridPipeline: detect hands (YOLOv8) -> cut THE square crop -> classify all crops in one batch -> Hands.

Example:
    >>> from hybrid import HybridPipeline
    >>> pipe = HybridPipeline.from_pretrained(detector="models/detector", classifier="models/classifier")
    >>> hands = pipe("photo.jpg")[0]          # one list of Hand per image
    >>> hands[0].label, hands[0].probability, hands[0].box
    ('5', 0.98, (412.0, 120.5, 530.2, 301.9))

Speed: the default ("shipped") path runs both networks in OpenVINO (hybrid.runtime): int8 where the CPU has
fast int8 and the models' training data is here to calibrate them, else an fp32 detector and a bf16 classifier
where the CPU computes bf16 natively (fp32 elsewhere). The detector runs at `detector_size` <= 320 with the
letterbox padded only to a multiple of its stride (an 800x600 photo: 320x256, not 320x320). Without openvino
(or on a GPU) the networks run in PyTorch. `HybridPipeline(..., fast=False)` is the naive path: fp32 eager
PyTorch, detector at its trained size, square letterbox. bench/latency.py measures both, and
bench/evaluate.py --paths checks that the fast path keeps the accuracy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from hybrid.classifier import Prediction, square_resize
from hybrid.crops import square_crop
from hybrid.fingers import hand_name, readings
from hybrid.images import ImageInput, load_image
from hybrid.limits import MAX_HANDS

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"  # the label of a hand whose best gesture probability is below min_confidence
NO_GESTURE = "no_gesture"  # a classifier class meaning "a hand, but no gesture": kept as is, not a gesture
MIN_CONFIDENCE = 0.5
TOP_K = 3
FAST_DETECTOR_SIZE = 320  # hands in 800x600 photos stay >= ~40 px at 320; see bench/latency.py


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
    fingers: Optional[dict] = None  # each finger's probability of being up, when the classifier learned them
    right_hand: Optional[float] = None  # the probability that it is the person's right hand (unmirrored photo)

    @property
    def is_gesture(self) -> bool:
        return self.label not in (UNKNOWN, NO_GESTURE)

    @property
    def fingers_up(self) -> Optional[list[str]]:
        """The fingers the classifier sees up (thumb, index, middle, ring, pinky), or None when it has no such
        outputs."""
        return None if self.fingers is None else [name for name, p in self.fingers.items() if p >= 0.5]

    @property
    def handedness(self) -> Optional[str]:
        """'left' | 'right': the person's own hand as an unmirrored photo shows it (a mirrored selfie or webcam
        frame shows the other one); None when the classifier has no hand output."""
        return hand_name(self.right_hand)

    def to_dict(self) -> dict:
        """JSON-able: {"box": [x0, y0, x1, y1], "score", "label", "probability", "top_k": [{"label", "score"}]}, and
        with a classifier that learned them "fingers" {name: probability up}, "fingers_up" [names], "handedness"
        and "handedness_probability"."""
        result = {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "label": self.label,
            "probability": round(float(self.probability), 4),
            "top_k": [{"label": p.label, "score": round(float(p.score), 4)} for p in self.top_k],
        }
        if self.fingers is not None:
            result["fingers"] = {name: round(float(p), 4) for name, p in self.fingers.items()}
            result["fingers_up"] = self.fingers_up
        if self.right_hand is not None:
            result["handedness"] = self.handedness
            result["handedness_probability"] = round(max(self.right_hand, 1 - self.right_hand), 4)
        return result


def total_count(hands: Sequence[Hand]) -> int:
    """The fingers raised on all of an image's hands (0-10 for two): the sum of the hands' finger-count labels."""
    return sum(int(hand.label) for hand in hands if hand.label.isdigit())


def image_result(name: str, image: Image.Image, hands: Sequence[Hand]) -> dict:
    """The JSON of one image, as `hybrid predict --json` prints it."""
    return {
        "image": str(name),
        "width": image.width,
        "height": image.height,
        "hands": [hand.to_dict() for hand in hands],
        "total_count": total_count(hands),
    }


class HybridPipeline:
    """Detector + classifier as one callable. `pipe(image or list)` -> one list of `Hand` per image.

    `min_confidence`: below this top-class probability a hand is labelled 'unknown'.
    `detector_threshold`: minimum detector score (default: the detector's own `conf`).
    `fast`: the shipped speed path (see module doc); `backend` 'openvino' | 'torch' | 'auto' for both networks;
    `detector_size`: detector input side (default 320 when fast, else the detector's trained size);
    `precision`: 'auto' (when fast: int8 for both networks where the CPU has fast int8 and the models' training
    data is here to calibrate them, hybrid.calibration; else bf16 classifier where native, fp32 detector) |
    'int8' | 'bf16' (the classifier; the detector stays fp32) | 'fp32'.
    `detector` and `classifier` hold the networks compiled for this pipeline (copies sharing the given
    models' weights; hybrid.runtime), so the pipeline only wires detect -> crop -> classify -> merge.
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
        from hybrid.runtime import Backend, Precision, parse_backend, parse_precision

        backend = parse_backend(backend)
        if backend is Backend.AUTO and not fast:
            backend = Backend.TORCH  # the naive path: eager PyTorch
        precision = parse_precision(precision or ("auto" if fast else "fp32"))
        fast_size = min(FAST_DETECTOR_SIZE, detector.image_size)
        detector_size = int(detector_size or (fast_size if fast else detector.image_size))
        # the detector never computes in bf16 (pixel coordinates): 'bf16' means bf16 for the classifier only
        detector_precision = Precision.FP32 if precision is Precision.BF16 else precision
        self._wire(
            detector.compile(backend, cache_dir=onnx_cache_dir, precision=detector_precision, image_size=detector_size),
            classifier.compile(backend, precision, cache_dir=onnx_cache_dir),
            detector_size,
            fast,
            min_confidence,
            detector_threshold,
            top_k,
        )

    @classmethod
    def compiled(
        cls,
        detector,
        classifier,
        detector_size: int,
        fast: bool = True,
        min_confidence: float = MIN_CONFIDENCE,
        detector_threshold: Optional[float] = None,
        top_k: int = TOP_K,
    ) -> "HybridPipeline":
        """A pipeline of a detector and a classifier compiled already (e.g. hybrid.detector.CompiledDetector and
        hybrid.classifier.CompiledClassifier, which hybrid.serving loads without PyTorch): nothing is compiled
        here. The arguments mean what they mean for `__init__`."""
        pipe = cls.__new__(cls)
        pipe._wire(detector, classifier, detector_size, fast, min_confidence, detector_threshold, top_k)
        return pipe

    def _wire(self, detector, classifier, detector_size, fast, min_confidence, detector_threshold, top_k) -> None:
        self.detector, self.classifier = detector, classifier
        self.detector_size, self.fast, self.top_k = int(detector_size), bool(fast), int(top_k)
        self.min_confidence = float(min_confidence)
        self.detector_threshold = float(detector.conf if detector_threshold is None else detector_threshold)

    @property
    def precision(self) -> str:
        """What the classifier computes in: 'fp32' | 'bf16' | 'int8' (the detector: `detector_precision`)."""
        return self.classifier.precision

    @property
    def detector_precision(self) -> str:
        """What the detector computes in: 'fp32' | 'int8'."""
        return self.detector.network.precision

    @property
    def backend(self) -> str:
        """Where the two networks run: their backend when they share it, else 'mixed'."""
        backends = {str(self.detector.network.backend), str(self.classifier.network.backend)}
        return backends.pop() if len(backends) == 1 else "mixed"

    @classmethod
    def from_pretrained(
        cls, detector: Union[str, Path], classifier: Union[str, Path], revision: Optional[str] = None, **kwargs
    ) -> "HybridPipeline":
        """Load both models from Hub ids (`org/name`, `org/name@rev`) or local folders; `revision`
        applies to both (an `@rev` in an id wins for that id). Other arguments go to `__init__`."""
        from hybrid.classifier import GestureClassifier
        from hybrid.detector import HandDetector
        from hybrid.hub import split_revision

        def rev(name):  # an explicit '@rev' in the id is that model's revision
            return None if split_revision(str(name))[1] else revision

        return cls(
            HandDetector.from_pretrained(detector, revision=rev(detector)),
            GestureClassifier.from_pretrained(classifier, revision=rev(classifier)),
            **kwargs,
        )

    # --- the steps ---------------------------------------------------------------------------------

    def detect(
        self, images: Sequence[Image.Image], threshold: Optional[float] = None, max_hands: int = MAX_HANDS
    ) -> list:
        """Hand detections (list per image, best first) for RGB PIL images, at `threshold` (default
        detector_threshold): at most `max_hands` per image, the highest-scoring (hybrid.limits.MAX_HANDS)."""
        conf = self.detector_threshold if threshold is None else float(threshold)
        if not 0.0 <= conf <= 1.0:  # also refuses NaN
            raise ValueError(f"detector_threshold must be between 0 and 1, got {conf}")
        arrays = [np.asarray(image) for image in images]
        return self.detector.predict(
            arrays, conf=conf, image_size=self.detector_size, rect=self.fast, max_det=int(max_hands)
        )

    def classify(self, crops: Sequence[Image.Image]) -> np.ndarray:
        """Class probabilities (N, classes), float32, of all crops in ONE forward pass (the classifier's)."""
        return self.score(crops)[0]

    def score(self, crops: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities (N, classes) and the probabilities of the classifier's extra outputs (N, outputs:
        hybrid.fingers), float32, of all crops in ONE forward pass."""
        return self.classifier.scores(list(crops))

    def crops(self, image: Image.Image, boxes: Sequence[Sequence[float]]) -> list[Image.Image]:
        """THE inference crops (hybrid.crops.square_crop, no jitter) of `boxes` in `image`, cut at the size the
        classifier's preprocessing resizes them to (so no crop is ever held at the photo's resolution)."""
        resize = square_resize(getattr(self.classifier, "data_config", {}))
        size, resample = resize or (None, Image.Resampling.BILINEAR)
        return [square_crop(image, box, size=size, resample=resample) for box in boxes]

    def hands(
        self, images: Sequence[Image.Image], detections: Sequence[Sequence], min_confidence: Optional[float] = None
    ) -> list[list[Hand]]:
        """Classify every detection of every image in one batch and merge into Hands."""
        min_confidence = self.min_confidence if min_confidence is None else float(min_confidence)
        crops = [crop for image, found in zip(images, detections) for crop in self.crops(image, [d.box for d in found])]
        probabilities, extra = self.score(crops)
        outputs = self.classifier.outputs
        answers = iter(zip(self.classifier.ranked(probabilities, self.top_k), extra))
        return [
            [merge(detection, *next(answers), min_confidence, outputs) for detection in found] for found in detections
        ]

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
        return (
            f"HybridPipeline(detector={self.detector!r}, classifier={self.classifier!r}, backend={self.backend}, "
            f"detector_size={self.detector_size}, precision={self.precision}, "
            f"detector_precision={self.detector_precision}, "
            f"min_confidence={self.min_confidence}, detector_threshold={self.detector_threshold})"
        )


def merge(
    detection,
    top: Sequence[Prediction],
    extra: Sequence[float] = (),
    min_confidence: float = MIN_CONFIDENCE,
    outputs: Sequence[str] = (),
) -> Hand:
    """One Hand from a detection, its crop's top-k predictions ('unknown' below `min_confidence`) and the
    probabilities of the classifier's extra `outputs` (hybrid.fingers)."""
    best = top[0]
    label = best.label if best.score >= min_confidence else UNKNOWN
    fingers, right_hand = readings(outputs, extra)
    box = tuple(float(v) for v in detection.box)
    return Hand(box, float(detection.score), label, best.score, list(top), fingers, right_hand)


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


def hand_tag(hand: Hand) -> str:
    """' R TIM--' for the overlay: the hand (L/R) and the fingers up (thumb, index, middle, ring, pinky; '-' down),
    '' for a classifier without those outputs."""
    tag = f" {hand.handedness[0].upper()}" if hand.handedness else ""
    if hand.fingers is not None:
        tag += " " + "".join(name[0].upper() if p >= 0.5 else "-" for name, p in hand.fingers.items())
    return tag


def draw_hands(
    image: Union[ImageInput, Image.Image], hands: Sequence[Hand], names: Optional[Sequence[str]] = None
) -> Image.Image:
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
        text = f"{hand.label} {hand.probability:.0%}{hand_tag(hand)}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tag_w, tag_h = right - left + 2 * width, bottom - top + 2 * width
        ty = y0 - tag_h if y0 - tag_h >= 0 else min(y0 + width, canvas.height - tag_h)  # above the box, else inside
        tx = min(max(x0, 0), max(canvas.width - tag_w, 0))
        draw.rectangle((tx, ty, tx + tag_w, ty + tag_h), fill=colour)
        rgb = ImageColor.getrgb(colour)
        ink = "black" if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 else "white"
        draw.text((tx + width - left, ty + width - top), text, fill=ink, font=font)
    return canvas
