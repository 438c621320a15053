"""Serving without PyTorch (hybrid.serving): the numpy pre-processing equals the libraries', the explanations from
the networks' extra outputs equal the PyTorch ones, and a served process answers like the in-process pipeline
without ever importing torch (the app's process included)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import psutil
import pytest
import torch
from PIL import Image

from hybrid import explain, serving
from hybrid.classifier import CompiledClassifier, GestureClassifier, numpy_transform
from hybrid.detector import CompiledDetector, HandDetector, letterbox
from hybrid.pipeline import HybridPipeline
from tests import test_video
from tests.fixtures_app import call_api, upload

REPO = Path(__file__).resolve().parent.parent
PHOTOS = "subhih-handsdataset/images/test"
clip = test_video.clip  # the real clip: 22 consecutive Hands Dataset captures, as .mp4


@pytest.fixture(scope="module")
def photo(data_root) -> Image.Image:
    return Image.open(sorted((data_root / PHOTOS).glob("*.jpg"))[0]).convert("RGB")


@pytest.mark.parametrize(
    "config",
    [
        {"input_size": (3, 64, 64), "crop_pct": 1.0, "interpolation": "bilinear", "crop_mode": "center"},
        {"input_size": (3, 64, 64), "crop_pct": 0.875, "interpolation": "bicubic", "crop_mode": "center"},
        {"input_size": (3, 48, 48), "crop_pct": 0.9, "interpolation": "lanczos", "crop_mode": "squash"},
    ],
)
def test_numpy_transform_equals_timms(config, photo):
    import timm.data

    config = dict(config, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    ours, timms = numpy_transform(config), timm.data.create_transform(**config, is_training=False)
    for image in (photo.crop((0, 0, 200, 200)), photo.crop((0, 0, 301, 150)), photo.crop((0, 0, 120, 333))):
        np.testing.assert_allclose(ours(image), timms(image).permute(1, 2, 0).numpy(), atol=1e-6)
    assert numpy_transform(dict(config, crop_mode="border")) is None  # timm's own transform is then used


@pytest.mark.parametrize("shape", [(1, 1), (7, 300), (300, 7), (480, 640), (601, 799)])
def test_letterbox_equals_ultralytics(shape):
    from ultralytics.data.augment import LetterBox

    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    for size in (64, 320):
        for stride in (None, 32):
            theirs = LetterBox((size, size), auto=stride is not None, stride=stride or 32, padding_value=114)
            np.testing.assert_array_equal(letterbox(image, size, stride), theirs(image=image))


def test_explanations_from_network_outputs_equal_pytorchs(trained_detector, photo, tmp_path):
    """Grad-CAM as CAM (fc weights x the network's last-stage output) and EigenCAM from the network's neck
    outputs, both without the PyTorch model, give the PyTorch explanations (fp32 networks)."""
    torch.manual_seed(0)
    clf = GestureClassifier.create("resnet18", ["a", "b", "c"], image_size=128, device="cpu", precision="fp32")
    compiled = clf.compile("openvino", "fp32", cache_dir=tmp_path)
    served = CompiledClassifier(compiled.network, clf.label_names, clf.data_config, serving.linear_cam_weights(clf))
    crops = [photo.crop((100, 50, 300, 250)), photo.crop((300, 200, 420, 320))]
    ours = explain.gradcam(served, crops, [None, 2])
    assert ours.shape == (2, 128, 128) and ours.max() > 0.5
    np.testing.assert_allclose(ours, explain.gradcam(clf, crops, [None, 2]), atol=2e-3)

    detector = HandDetector.from_pretrained(trained_detector)
    network = detector.compile("openvino", cache_dir=tmp_path).network
    bare = CompiledDetector(network, detector.names, detector.image_size, detector.conf, detector.iou, detector.stride)
    heat = explain.eigencam(bare, photo, image_size=128)
    assert heat.shape == (photo.height, photo.width) and heat.max() > 0.5
    np.testing.assert_allclose(heat, explain.eigencam(detector, photo, image_size=128), atol=2e-3)


SERVED = """
import json, sys
from PIL import Image
from hybrid import explain, serving
pipe = serving.load(sys.argv[1], sys.argv[2])
hands = [[hand.to_dict() for hand in pipe(path)[0]] for path in sys.argv[3:]]
image = Image.open(sys.argv[3]).convert("RGB")
found = pipe(image)[0][:2]
overlay, crops = explain.gradcam_explain(pipe, image, found)
eigen = explain.eigencam_image(pipe, image)
print(json.dumps({"torch": "torch" in sys.modules, "hands": hands, "backend": pipe.backend,
                  "precision": [pipe.detector_precision, pipe.precision], "explained": len(crops)}))
"""


def test_served_process_answers_like_the_pipeline_without_torch(
    trained_detector, trained_classifier, data_root, model_cache, monkeypatch
):
    monkeypatch.setenv("HYBRID_CACHE", str(model_cache))
    photos = [str(p) for p in sorted((data_root / PHOTOS).glob("*.jpg"))[:4]]
    command = [sys.executable, "-c", SERVED, str(trained_detector), str(trained_classifier), *photos]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert served["torch"] is False
    assert served["explained"] > 0
    pipe = HybridPipeline.from_pretrained(detector=trained_detector, classifier=trained_classifier)
    assert served["backend"] == pipe.backend == "openvino"
    assert served["precision"] == [pipe.detector_precision, pipe.precision]
    expected = [[hand.to_dict() for hand in pipe(path)[0]] for path in photos]
    assert [[h["label"] for h in hs] for hs in served["hands"]] == [[h["label"] for h in hs] for hs in expected]
    for got, want in zip(served["hands"], expected):
        for a, b in zip(got, want):
            assert a["box"] == pytest.approx(b["box"], abs=0.05)
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-3)


def test_a_classifier_whose_gradcam_is_not_cam_is_served_with_torch(trained_detector, tmp_path, photo, caplog):
    """Max pooling: the logits are not a linear map of the last stage's mean, so CAM would not be Grad-CAM."""
    folder = GestureClassifier.create("resnet18", ["a", "b"], image_size=64, global_pool="max").save_pretrained(
        tmp_path / "max-pool"
    )
    with caplog.at_level(logging.INFO, logger="hybrid.serving"):
        pipe = serving.load(trained_detector, folder)
    assert "not served without PyTorch: the classifier's logits are not a linear map" in caplog.text
    assert isinstance(pipe.classifier, GestureClassifier)  # in this process, with its PyTorch model
    hands = pipe(photo)[0]
    assert explain.gradcam(pipe, [photo.crop((0, 0, 100, 100))]).shape == (1, 64, 64)
    assert all(hand.label in ("a", "b", "unknown") for hand in hands)


def test_a_broken_model_is_one_clear_error(trained_detector, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"architecture": "resnet50; import os"}')
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"loading the models failed: ValueError: .*config\.json") as error:
        serving.load(trained_detector, tmp_path / "bad")
    assert "\n" not in str(error.value)


def test_the_app_process_serves_photos_explanations_and_video_without_torch(app_url, data_root, clip):
    photo = upload(app_url, "hands.jpg", sorted((data_root / PHOTOS).glob("*.jpg"))[0].read_bytes())
    event, outputs = call_api(app_url, "analyse", [photo, 0.01, 0.0, True])
    assert event == "complete" and outputs[3] is not None and outputs[5] is not None  # Grad-CAM and EigenCAM
    video = upload(app_url, "clip.mp4", clip[0].read_bytes())
    event, outputs = call_api(app_url, "track", [video, 0.01, 0.0])
    assert event == "complete" and outputs[2]["data"], outputs  # tracked: one row per track
    port = urlparse(app_url).port
    (server,) = [p for p in psutil.Process().children() if p.environ().get("GRADIO_SERVER_PORT") == str(port)]
    libraries = {Path(m.path).name for m in server.memory_maps()}
    assert not any(name.startswith(("libtorch", "libc10")) for name in libraries), sorted(libraries)
    assert any(name.startswith("libopenvino") for name in libraries)
