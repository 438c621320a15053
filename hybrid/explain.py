"""Explanations: Grad-CAM for the gesture classifier, EigenCAM for the hand detector.

Grad-CAM runs on the exact crops the classifier saw (hybrid.crops.square_crop), for each hand's predicted
class, and is pasted back into full-image coordinates through the crop's geometry
(hybrid.crops.crop_square_box), so one overlay shows every hand. EigenCAM runs on the detector's plain
`nn.Module` (never Ultralytics' `YOLO` wrapper, whose `.eval()` would start training). Both compute what
pytorch-grad-cam's GradCAM and EigenCAM compute (tests/test_explain.py checks it against that library), in a
few lines here: the library imports scikit-learn, SciPy and matplotlib's pyplot, ~100 MB in the app's process.

A classifier or detector compiled without its PyTorch model (hybrid.serving: a process that never imports
torch) is explained from its network's extra outputs (hybrid.runtime `run_all`): EigenCAM from the neck maps
the same way; Grad-CAM as CAM, which it equals when the logits are a linear map of the last stage's mean (a
ResNet's global average pooling and fc: each channel's mean gradient is then that class's fc weight over h*w),
so no backward pass is needed (`cam_weights`, checked when hybrid.serving writes the model).

Thread safety: the hooks that read a layer's output live for one call and record only the forward pass of
the thread that made them, so concurrent explanations, and predictions running on the same model in other
threads, never mix activations. No model is copied. Gradients are taken with `torch.autograd.grad` with respect
to the recorded activations only: no parameter's `.grad` is written, so explanations need no lock.

Example:
    >>> hands = pipe(image)[0]
    >>> explain.gradcam_image(pipe, image, hands)      # PIL: the photo with one heat overlay for all hands
    >>> explain.gradcam_hands(pipe, image, hands)      # [PIL]: each hand's crop with its own overlay
    >>> explain.eigencam_image(pipe, image)            # PIL: what the detector looks at
"""

from __future__ import annotations

import logging
import math
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from hybrid.crops import crop_square_box, square_crop
from hybrid.images import ImageInput, load_image
from hybrid.runtime import layer_outputs

logger = logging.getLogger(__name__)

IMAGE_WEIGHT = 0.5  # overlay: this much photo, the rest heat colour
SHOWN_CROP_SIDE = 512  # a hand's crop with its overlay is shown at most this large (a 50 MP photo's hand: ~7000 px)


# --- the two CAMs ---------------------------------------------------------------------------------------


def normalised(maps: np.ndarray, size: Optional[tuple[int, int]] = None) -> np.ndarray:
    """Each (h, w) map shifted to 0 and divided by its maximum (0..1), resized to `size` (width, height)."""
    import cv2

    result = []
    for heat in maps:
        heat = heat - np.min(heat)
        heat = heat / (1e-7 + np.max(heat))
        result.append(cv2.resize(np.float32(heat), size) if size else heat)
    return np.float32(result)


def first_component(activations: np.ndarray) -> np.ndarray:
    """(B, C, H, W) -> (B, H, W): each position's projection on the first principal component of the
    channels, sign-corrected as in pytorch-grad-cam's `get_2d_projection_with_sign_correction` (the SVD's sign
    is arbitrary; without the fix half the maps come out inverted and clip to nothing). The component comes
    from the C x C covariance (eigh), not an SVD of the (H*W) x C matrix (seconds on a 640 px YOLO map)."""
    maps = []
    for sample in np.nan_to_num(np.asarray(activations, dtype=np.float64)):
        flat = sample.reshape(sample.shape[0], -1).T
        flat = flat - flat.mean(axis=0)
        _, vectors = np.linalg.eigh(flat.T @ flat)
        projection = (flat @ vectors[:, -1]).reshape(sample.shape[1:])
        maps.append(-projection if abs(projection.min()) > abs(projection.max()) else projection)
    return np.stack(maps).astype(np.float32)


def combined(per_layer: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """pytorch-grad-cam's way of turning per-layer maps (B, h, w) into one map per image at `size`: each
    layer's map clipped at 0 and normalised at `size`, then their mean, normalised again."""
    scaled = np.stack([normalised(np.maximum(cam, 0), size) for cam in per_layer], axis=1)
    return normalised(np.maximum(scaled, 0).mean(axis=1))


# --- geometry ------------------------------------------------------------------------------------------


def _shown_fraction(classifier) -> float:
    """The fraction of a square crop's side that the input tensor shows: 1, less when timm's eval
    transform centre-crops (crop_pct < 1)."""
    config = getattr(classifier, "data_config", {}) or {}
    crop_pct = float(config.get("crop_pct") or 1.0)
    size = int(config.get("input_size", (3, 224, 224))[-1])
    return size / math.floor(size / crop_pct) if crop_pct < 1.0 else 1.0


def _centred(region: Sequence[float], fraction: float) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = region
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * fraction / 2
    return cx - half, cy - half, cx + half, cy + half


def input_region(classifier, box: Sequence[float]) -> tuple[float, float, float, float]:
    """The part of the image (x0, y0, x1, y1, may pass the border) that the classifier's input tensor
    shows for a hand `box`: THE square crop (crop_square_box), narrowed if the transform centre-crops."""
    return _centred(crop_square_box(box), _shown_fraction(_classifier_of(classifier)))


def paste(heat: np.ndarray, region: Sequence[float], width: int, height: int) -> np.ndarray:
    """A (height, width) map, zero outside `region`, holding `heat` resized onto `region` (clipped to the image)."""
    import cv2

    left, top = round(region[0]), round(region[1])
    w, h = max(1, round(region[2] - region[0])), max(1, round(region[3] - region[1]))
    resized = cv2.resize(heat.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    full = np.zeros((height, width), dtype=np.float32)
    ix0, iy0, ix1, iy1 = max(left, 0), max(top, 0), min(left + w, width), min(top + h, height)
    if ix1 > ix0 and iy1 > iy0:
        full[iy0:iy1, ix0:ix1] = resized[iy0 - top : iy1 - top, ix0 - left : ix1 - left]
    return full


def overlay(image: Image.Image, heat: np.ndarray, image_weight: float = IMAGE_WEIGHT) -> Image.Image:
    """The image blended with `heat` (values 0..1, same size) in the JET colours, brightest pixel at 255."""
    import cv2

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    colours = cv2.applyColorMap(np.uint8(255 * np.clip(heat, 0, 1)), cv2.COLORMAP_JET)
    colours = np.float32(cv2.cvtColor(colours, cv2.COLOR_BGR2RGB)) / 255
    blended = (1 - image_weight) * colours + image_weight * rgb
    return Image.fromarray(np.uint8(255 * (blended / np.max(blended))))


# --- Grad-CAM (classifier) ---------------------------------------------------------------------------


def _classifier_of(obj):
    return getattr(obj, "classifier", obj)


def gradcam(classifier, crops: Sequence[Image.Image], classes: Optional[Sequence[Optional[int]]] = None) -> np.ndarray:
    """Grad-CAM of the classifier's last stage for each crop, (N, H, W) at the input size, each 0..1.

    `classes[i]`: the class index to explain for crop i (None or missing: the predicted class). All
    crops go through in one batch; fp32 (no autocast), gradients enabled even inside no_grad code."""
    classifier = _classifier_of(classifier)
    if not crops:
        size = int(classifier.data_config["input_size"][-1])
        return np.zeros((0, size, size), dtype=np.float32)
    if getattr(classifier, "model", None) is None:
        return _compiled_gradcam(classifier, crops, classes)
    import torch

    batch = classifier.preprocess(list(crops)).float().requires_grad_(True)  # a graph even for frozen weights
    with torch.enable_grad():
        logits, (activations,) = layer_outputs(classifier.model, [classifier.target_layer], batch)
        predicted = logits[:, : len(classifier.label_names)].argmax(dim=-1).tolist()  # not the finger outputs
        classes = [p if classes is None or classes[i] is None else int(classes[i]) for i, p in enumerate(predicted)]
        chosen = logits[torch.arange(len(classes)), torch.tensor(classes)].sum()  # each crop's own logit
        (gradients,) = torch.autograd.grad(chosen, activations)
    weights = gradients.mean(dim=(2, 3), keepdim=True)  # Grad-CAM: each channel weighted by its mean gradient
    cams = (weights * activations).sum(dim=1).detach().float().numpy()
    return combined([cams], (batch.shape[3], batch.shape[2]))


def _compiled_gradcam(classifier, crops: Sequence[Image.Image], classes: Optional[Sequence[Optional[int]]]):
    """Grad-CAM of a classifier without its PyTorch model: its network's last-stage output times `cam_weights`."""
    if classifier.cam_weights is None:
        raise ValueError("Grad-CAM of this compiled classifier needs its cam_weights (see hybrid.serving)")
    batch = classifier.pixel_values(list(crops))
    logits, activations = classifier.network.run_all(batch)[:2]
    predicted = logits[:, : len(classifier.label_names)].argmax(axis=-1).tolist()  # not the finger outputs
    classes = [p if classes is None or classes[i] is None else int(classes[i]) for i, p in enumerate(predicted)]
    weights = classifier.cam_weights[classes] / (activations.shape[2] * activations.shape[3])  # mean gradients
    cams = np.einsum("nc,nchw->nhw", weights.astype(np.float32), activations.astype(np.float32))
    return combined([cams], (batch.shape[3], batch.shape[2]))


def _hand_classes(classifier, hands) -> list[Optional[int]]:
    names = list(classifier.label_names)
    classes = []
    for hand in hands:
        top = hand.top_k[0].label if getattr(hand, "top_k", None) else hand.label
        classes.append(names.index(top) if top in names else None)
    return classes


def _heats(classifier, image: Image.Image, hands: Sequence) -> np.ndarray:
    """The Grad-CAM maps of `hands` (one batched backward) on THE crops the pipeline classifies: cut at the size
    the classifier's preprocessing resizes them to (hybrid.pipeline.HybridPipeline.crops)."""
    from hybrid.classifier import square_resize

    size, resample = square_resize(getattr(classifier, "data_config", {})) or (None, Image.Resampling.BILINEAR)
    crops = [square_crop(image, hand.box, size=size, resample=resample) for hand in hands]
    return gradcam(classifier, crops, _hand_classes(classifier, hands))


def _shown_crop(image: Image.Image, box: Sequence[float]) -> Image.Image:
    """THE square crop of `box` as the page shows it: at its own size, or SHOWN_CROP_SIDE when larger."""
    x0, _, x1, _ = crop_square_box(box)
    side = max(round(x1) - round(x0), 1)
    return square_crop(image, box, size=min(side, SHOWN_CROP_SIDE))


def shrunk(image: Image.Image, max_side: Optional[int]) -> tuple[Image.Image, float]:
    """`image` scaled down so that its longer side is at most `max_side` (None: as it is), and the scale."""
    if not max_side or max(image.size) <= max_side:
        return image, 1.0
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0), scale


def _pasted(classifier, heats: np.ndarray, boxes: Sequence, width: int, height: int) -> np.ndarray:
    maps = [paste(heat, input_region(classifier, box), width, height) for heat, box in zip(heats, boxes)]
    return np.stack(maps) if maps else np.zeros((0, height, width), dtype=np.float32)


def _whole_image_overlay(classifier, image: Image.Image, boxes: Sequence, heats: np.ndarray) -> Image.Image:
    """Heat blended inside the hands' crop squares only; the rest of the photo stays as it is."""
    heat = np.zeros((image.height, image.width), dtype=np.float32)
    for single, box in zip(heats, boxes):  # one map at a time: a photo's worth of floats per hand adds up
        np.maximum(heat, paste(single, input_region(classifier, box), image.width, image.height), out=heat)
    if not len(boxes):
        return image.copy()
    blended = overlay(image, heat)
    inside = np.zeros((image.height, image.width), dtype=bool)
    for box in boxes:
        x0, y0, x1, y1 = input_region(classifier, box)
        inside[max(round(y0), 0) : max(round(y1), 0), max(round(x0), 0) : max(round(x1), 0)] = True
    return Image.fromarray(np.where(inside[..., None], np.asarray(blended), np.asarray(image)))


def _crop_overlays(classifier, crops: Sequence[Image.Image], heats: np.ndarray) -> list[Image.Image]:
    fraction = _shown_fraction(classifier)
    results = []
    for crop, heat in zip(crops, heats):
        region = _centred((0, 0, crop.width, crop.height), fraction)
        results.append(overlay(crop, paste(heat, region, crop.width, crop.height)))
    return results


def gradcam_heatmaps(pipeline_or_classifier, image: ImageInput, hands: Sequence) -> np.ndarray:
    """One full-image Grad-CAM map per hand, (N, H, W), each zero outside that hand's crop square."""
    classifier = _classifier_of(pipeline_or_classifier)
    image = load_image(image)
    return _pasted(
        classifier, _heats(classifier, image, hands), [hand.box for hand in hands], image.width, image.height
    )


def gradcam_image(pipeline_or_classifier, image: ImageInput, hands: Sequence) -> Image.Image:
    """The photo with one Grad-CAM overlay for all hands (per pixel, the strongest hand's heat)."""
    return gradcam_explain(pipeline_or_classifier, image, hands)[0]


def gradcam_hands(pipeline_or_classifier, image: ImageInput, hands: Sequence) -> list[Image.Image]:
    """Each hand's square crop (what the classifier saw) with its own Grad-CAM overlay."""
    return gradcam_explain(pipeline_or_classifier, image, hands)[1]


def gradcam_explain(
    pipeline_or_classifier, image: ImageInput, hands: Sequence, max_side: Optional[int] = None
) -> tuple[Image.Image, list[Image.Image]]:
    """Both views from one Grad-CAM pass: (whole-photo overlay, [per-hand crop overlays]). With `max_side`, the
    whole-photo overlay is drawn on a copy shrunk to that longer side (the maps still come from full-size crops)."""
    classifier = _classifier_of(pipeline_or_classifier)
    image = load_image(image)
    heats = _heats(classifier, image, hands)
    crops = [_shown_crop(image, hand.box) for hand in hands]
    shown, scale = shrunk(image, max_side)
    boxes = [tuple(v * scale for v in hand.box) for hand in hands]
    return _whole_image_overlay(classifier, shown, boxes, heats), _crop_overlays(classifier, crops, heats)


# --- EigenCAM (detector) -------------------------------------------------------------------------------


def _detector_of(obj):
    return getattr(obj, "detector", obj)


def eigencam(
    pipeline_or_detector, image: ImageInput, image_size: Optional[int] = None, max_side: Optional[int] = None
) -> np.ndarray:
    """EigenCAM of the detector's neck outputs (the three maps its Detect head reads), averaged, as a
    (H, W) map 0..1 over the input image (shrunk to `max_side`, when given). `image_size` defaults to the
    pipeline's detector size."""
    import cv2

    detector = _detector_of(pipeline_or_detector)
    size = image_size or getattr(pipeline_or_detector, "detector_size", None) or detector.image_size
    array = np.asarray(load_image(image))
    batch = detector.letterboxed([array], int(size))
    if getattr(detector, "model", None) is None:  # compiled without PyTorch: the network outputs the neck maps
        activations = detector.network.run_all(batch)[1:]
    else:
        import torch

        layers = [detector.model.model[i] for i in detector.neck_layers]
        with torch.no_grad():
            _, outputs = layer_outputs(detector.model, layers, torch.from_numpy(batch).to(detector.device))
        activations = [output.float().cpu().numpy() for output in outputs]
    per_layer = [first_component(a) for a in activations]
    heat = combined(per_layer, (batch.shape[3], batch.shape[2]))[0]
    # Undo the letterbox (Ultralytics' LetterBox: scale to fit, centre, pad): drop the padding, resize back.
    height, width = array.shape[:2]
    gain = min(heat.shape[0] / height, heat.shape[1] / width)
    inner_w, inner_h = max(round(width * gain), 1), max(round(height * gain), 1)  # as the letterbox rounds
    left, top = round((heat.shape[1] - inner_w) / 2 - 0.1), round((heat.shape[0] - inner_h) / 2 - 0.1)
    inner = heat[top : top + inner_h, left : left + inner_w]
    scale = min(1.0, max_side / max(width, height)) if max_side else 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.clip(cv2.resize(inner, size, interpolation=cv2.INTER_LINEAR), 0, 1).astype(np.float32)


def eigencam_image(
    pipeline_or_detector, image: ImageInput, image_size: Optional[int] = None, max_side: Optional[int] = None
) -> Image.Image:
    """The photo with the detector's EigenCAM overlay (on a copy shrunk to `max_side`, when given)."""
    image = load_image(image)
    shown, _ = shrunk(image, max_side)
    return overlay(shown, eigencam(pipeline_or_detector, image, image_size, max_side))
