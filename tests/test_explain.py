"""Grad-CAM / EigenCAM: shapes, paste-back geometry, heat inside the hand box, thread safety.

Geometry is checked with a classifier whose evidence we know: its "last stage" is the image brightness
(a fixed 1x1 convolution), so Grad-CAM of its class must light up a bright patch, and the pasted map
must put that light where the patch is in the full photo. A real trained network's heat is checked in
`test_trained_heat_lies_inside_the_hand_box`.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch import nn

from hybrid import explain
from hybrid.classifier import GestureClassifier
from hybrid.crops import crop_square_box
from hybrid.pipeline import Hand


class Brightness(nn.Module):
    """Class 0 = "bright", class 1 = "dark"; `layer4` (the Grad-CAM target) is a 4x-downsampled brightness map."""

    num_classes = 2

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 1, 1, bias=False)
        nn.init.constant_(conv.weight, 1 / 3)
        self.layer4 = nn.Sequential(conv, nn.AvgPool2d(4))

    def forward(self, x):
        score = self.layer4(x).mean(dim=(1, 2, 3))
        return torch.stack([score, -score], dim=1)


def brightness_classifier(crop_pct: float = 1.0) -> GestureClassifier:
    config = {
        "input_size": (3, 96, 96),
        "interpolation": "bilinear",
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
        "crop_pct": crop_pct,
        "crop_mode": "center",
    }
    return GestureClassifier(Brightness(), ["bright", "dark"], config, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def photo(data_root) -> Image.Image:
    path = sorted((data_root / "subhih-handsdataset" / "images" / "test").glob("*.jpg"))[0]
    return Image.open(path).convert("RGB")


def _dim_with_patch(photo: Image.Image, patch) -> Image.Image:
    dark = Image.eval(photo, lambda v: v // 4)
    ImageDraw.Draw(dark).rectangle(patch, fill=(255, 255, 255))
    return dark


@pytest.mark.parametrize("crop_pct", [1.0, 0.8])
def test_gradcam_pastes_back_where_the_evidence_is(photo, crop_pct):
    classifier = brightness_classifier(crop_pct)
    patch = (300, 200, 340, 260)
    image = _dim_with_patch(photo, patch)
    hands = [
        Hand((260.0, 150.0, 400.0, 330.0), 0.9, "bright", 0.9, []),  # contains the patch
        Hand((-30.0, 500.0, 60.0, 640.0), 0.5, "bright", 0.6, []),
    ]  # past the image's corner
    maps = explain.gradcam_heatmaps(classifier, image, hands)
    assert maps.shape == (2, image.height, image.width)
    assert maps.dtype == np.float32
    assert 0.0 <= maps.min()
    assert maps.max() <= 1.0 + 1e-6
    y, x = np.unravel_index(np.argmax(maps[0]), maps[0].shape)
    assert patch[0] - 8 <= x <= patch[2] + 8
    assert patch[1] - 8 <= y <= patch[3] + 8
    inside = maps[0][patch[1] : patch[3], patch[0] : patch[2]].mean()
    assert inside > 2 * maps[0][150:330, 260:400].mean()
    # Zero outside each hand's crop square (clipped to the image).
    for heat, hand in zip(maps, hands):
        x0, y0, x1, y1 = (int(round(v)) for v in crop_square_box(hand.box))
        outside = heat.copy()
        outside[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = 0
        assert outside.max() == 0
    assert maps[1].max() > 0  # the border hand got a map, inside the image part of its square


def test_overlays_and_per_hand_crops(photo):
    classifier = brightness_classifier()
    hands = [
        Hand((100.0, 100.0, 200.0, 300.0), 0.9, "bright", 0.9, []),
        Hand((500.0, 50.0, 560.0, 100.0), 0.5, "dark", 0.6, []),
    ]
    overlay = explain.gradcam_image(classifier, photo, hands)
    assert overlay.size == photo.size
    assert overlay.mode == "RGB"
    crops = explain.gradcam_hands(classifier, photo, hands)
    sides = [round(max(x1 - x0, y1 - y0) * 1.3) for x0, y0, x1, y1 in (h.box for h in hands)]
    assert [c.size for c in crops] == [(s, s) for s in sides]
    assert explain.gradcam_hands(classifier, photo, []) == []
    assert explain.gradcam_image(classifier, photo, []).size == photo.size


def test_gradcam_concurrent_equals_sequential(photo):
    """Four threads explaining while four others run predictions on the same model: same maps."""
    classifier = brightness_classifier()
    hands = [
        Hand((260.0, 150.0, 400.0, 330.0), 0.9, "bright", 0.9, []),
        Hand((20.0, 20.0, 90.0, 120.0), 0.9, "dark", 0.9, []),
    ]
    images = [_dim_with_patch(photo, (300 + 10 * i, 200, 340 + 10 * i, 260)) for i in range(4)]
    expected = [explain.gradcam_heatmaps(classifier, image, hands) for image in images]
    got: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def explain_one(i):
        try:
            barrier.wait()
            for _ in range(3):
                got[i] = explain.gradcam_heatmaps(classifier, images[i], hands)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def predict_one(i):
        try:
            barrier.wait()
            for _ in range(3):
                classifier.predict([images[i]] * 3)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=explain_one, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=predict_one, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for i in range(4):
        np.testing.assert_allclose(got[i], expected[i], atol=1e-5)
    # No hook left behind on the shared model.
    assert not classifier.target_layer._forward_hooks


def test_gradcam_from_many_threads_on_a_real_network(photo):
    """Backward passes on one shared ResNet from 6 threads at once: no crash, no error, same maps, no parameter
    gradient written. (pytorch-grad-cam's backward fills the parameters' .grad: from several threads without a
    lock it raised 'cannot call bump_version() on undefined tensor' or crashed the process.)"""
    torch.manual_seed(0)
    classifier = GestureClassifier.create("resnet18", ["a", "b"], image_size=64, precision="fp32")
    hands = [Hand((100.0, 50.0, 200.0, 250.0), 1.0, "a", 1.0, [])]
    expected = explain.gradcam_heatmaps(classifier, photo, hands)
    errors: list[BaseException] = []
    results: list[np.ndarray] = []

    def work():
        try:
            for _ in range(10):
                results.append(explain.gradcam_heatmaps(classifier, photo, hands))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:1]
    assert len(results) == 60
    for heat in results:
        np.testing.assert_allclose(heat, expected, atol=1e-5)
    assert all(p.grad is None for p in classifier.model.parameters())


def test_gradcam_on_trained_fixture_shapes(trained_classifier, photo):
    classifier = GestureClassifier.from_pretrained(trained_classifier)
    hands = [Hand((100.0, 100.0, 200.0, 300.0), 0.9, classifier.label_names[0], 0.9, [])]
    heats = explain.gradcam(classifier, [photo.crop((100, 100, 300, 300))] * 2)
    size = classifier.image_size
    assert heats.shape == (2, size, size)
    assert explain.gradcam_heatmaps(classifier, photo, hands).shape == (1, photo.height, photo.width)
    assert all(p.grad is None for p in classifier.model.parameters())  # grads dropped after the CAM


def test_eigencam_on_the_detector_module(trained_detector, photo):
    from hybrid.detector import HandDetector

    detector = HandDetector.from_pretrained(trained_detector)
    heat = explain.eigencam(detector, photo, image_size=128)
    assert heat.shape == (photo.height, photo.width)
    assert heat.dtype == np.float32
    assert 0.0 <= heat.min()
    assert heat.max() <= 1.0
    assert heat.max() > 0.5
    assert not detector.model.training  # hooked the nn.Module; nothing started training
    assert not any(m._forward_hooks for m in detector.model.modules())
    assert explain.eigencam_image(detector, photo, image_size=128).size == photo.size


@pytest.mark.parametrize("size", [(1, 100_000), (100_000, 1), (3, 20_000)])
def test_eigencam_of_extreme_aspect_ratios(trained_detector, size):
    """A 1 x 100000 image letterboxes to one row of pixels: its map is that row, not an OpenCV error."""
    from hybrid.detector import HandDetector

    detector = HandDetector.from_pretrained(trained_detector)
    image = Image.new("RGB", size, (200, 150, 120))
    assert explain.eigencam(detector, image, image_size=64).shape == (size[1], size[0])
    shown = explain.eigencam_image(detector, image, image_size=64, max_side=2048)
    assert max(shown.size) == 2048


def test_overlays_on_a_large_photo_are_drawn_at_the_display_size(photo):
    """`max_side`: the whole-photo overlay of a large photo comes back shrunk (the maps still come from the
    full-size crops: the same heat as without it, resized)."""
    classifier = brightness_classifier()
    large = photo.resize((photo.width * 4, photo.height * 4))
    hands = [Hand((400.0, 400.0, 1200.0, 1200.0), 0.9, "bright", 0.9, [])]
    full, crops = explain.gradcam_explain(classifier, large, hands)
    small, small_crops = explain.gradcam_explain(classifier, large, hands, max_side=800)
    assert full.size == large.size and max(small.size) == 800
    assert [c.size for c in crops] == [c.size for c in small_crops] == [(explain.SHOWN_CROP_SIDE,) * 2]
    reference = np.asarray(full.resize(small.size, Image.Resampling.BILINEAR), np.float32)
    assert np.abs(np.asarray(small, np.float32) - reference).mean() < 8


def test_gradcam_equals_pytorch_grad_cams(photo):
    """Our few lines compute what pytorch-grad-cam's GradCAM computes (the library the app used before; it is
    now a test requirement only), for the predicted class and for a class asked for."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    classifier = GestureClassifier.create("resnet18", ["a", "b", "c"], image_size=64, precision="fp32")
    crops = [photo.crop((100, 50, 300, 250)), photo.crop((300, 200, 420, 320))]
    ours = explain.gradcam(classifier, crops, [None, 2])
    batch = classifier.preprocess(crops).float()
    with torch.no_grad():
        predicted = int(classifier.model(batch)[0].argmax())
    with GradCAM(model=classifier.model, target_layers=[classifier.target_layer]) as cam:
        theirs = cam(input_tensor=batch, targets=[ClassifierOutputTarget(predicted), ClassifierOutputTarget(2)])
    classifier.model.zero_grad(set_to_none=True)
    assert ours.shape == theirs.shape == (2, 64, 64)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_eigencam_equals_pytorch_grad_cams(trained_detector, photo):
    from pytorch_grad_cam import EigenCAM

    from hybrid.detector import HandDetector

    class SignCorrected(EigenCAM):  # what explain used: the library's EigenCAM, sign-corrected first component
        def get_cam_image(self, input_tensor, target_layer, target_category, activations, grads, eigen_smooth):
            return explain.first_component(activations)

    class FirstOutput(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x)[0]

    detector = HandDetector.from_pretrained(trained_detector)
    network = detector.model
    head = network.model[-1]
    layers = [network.model[i] for i in head.f]
    batch = detector.preprocess([np.asarray(photo)], 128)
    with torch.no_grad(), SignCorrected(model=FirstOutput(network), target_layers=layers) as cam:
        theirs = cam(input_tensor=batch, targets=None)[0]
    with torch.no_grad():
        _, activations = explain.layer_outputs(network, layers, batch)
    ours = explain.combined([explain.first_component(a.numpy()) for a in activations], (128, 128))[0]
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_overlay_equals_pytorch_grad_cams(photo):
    from pytorch_grad_cam.utils.image import show_cam_on_image

    heat = np.random.default_rng(0).random((photo.height, photo.width), dtype=np.float32)
    rgb = np.asarray(photo, dtype=np.float32) / 255
    theirs = show_cam_on_image(rgb, heat, use_rgb=True, image_weight=explain.IMAGE_WEIGHT)
    assert np.array_equal(np.asarray(explain.overlay(photo, heat)), theirs)


def test_first_component_matches_pytorch_grad_cam():
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

    rng = np.random.default_rng(0)
    activations = rng.random((2, 16, 12, 10), dtype=np.float32)
    activations[:, :4, 3:7, 2:5] += 3.0
    np.testing.assert_allclose(
        explain.first_component(activations), get_2d_projection_with_sign_correction(activations), atol=1e-4
    )


def _heat_inside_over_outside(classifier, records) -> float:
    """Mean Grad-CAM heat (class 'hand') inside the ground-truth box over the mean in the rest of the crop
    square, pooled over `records` (photos with one hand)."""
    inside, outside = [], []
    for record in records:
        image, box = record.load(), record.boxes[0].xyxy
        heat = explain.gradcam_heatmaps(classifier, image, [Hand(tuple(map(float, box)), 1.0, "hand", 1.0, [])])[0]
        in_box = np.zeros(heat.shape, bool)
        in_square = np.zeros(heat.shape, bool)
        x0, y0, x1, y1 = (max(int(round(v)), 0) for v in box)
        in_box[y0:y1, x0:x1] = True
        x0, y0, x1, y1 = (max(int(round(v)), 0) for v in crop_square_box(box))
        in_square[y0:y1, x0:x1] = True
        inside.append(heat[in_box].mean())
        outside.append(heat[in_square & ~in_box].mean())
    return float(np.mean(inside) / np.mean(outside))


def test_trained_heat_lies_inside_the_hand_box(hand_classifier):
    """A trained network's Grad-CAM, pasted back into held-out photos, is hotter on the hand than on the
    crop's context, and clearly more so than the same network untrained (whose maps already favour the
    centre, where the box sits)."""
    from hybrid.data import read_dataset

    records = [r for r in read_dataset("hands", split="test") if len(r.boxes) == 1][::8][:25]
    trained = GestureClassifier.from_pretrained(hand_classifier, precision="fp32")
    assert trained.label_names == ["background", "hand"]
    assert trained.image_size == 160
    torch.manual_seed(0)
    untrained = GestureClassifier.create("resnet18", trained.label_names, image_size=160, precision="fp32")
    trained_ratio, untrained_ratio = (
        _heat_inside_over_outside(trained, records),
        _heat_inside_over_outside(untrained, records),
    )
    assert trained_ratio > 1.6, (trained_ratio, untrained_ratio)
    assert trained_ratio > 1.2 * untrained_ratio, (trained_ratio, untrained_ratio)
