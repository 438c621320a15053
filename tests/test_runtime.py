"""hybrid.runtime: the one owner of backends and precision, seen through the models' `compile()`."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from hybrid.classifier import GestureClassifier
from hybrid.crops import square_crop
from hybrid.pipeline import HybridPipeline
from hybrid.runtime import Backend, Precision, TorchNetwork

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def crops(data_root):
    """THE inference crops of real hands (Hands Dataset test photos, their labelled boxes)."""
    from hybrid.data import read_dataset

    records = [record for record in read_dataset("hands", split="test") if record.boxes][:6]
    found = [square_crop(record.load(), box.xyxy) for record in records for box in record.boxes]
    assert len(found) >= 6
    return found


@pytest.fixture(scope="module")
def tiny_models():
    """Untrained YOLOv8n and ResNet-18 (built from their architectures; no training, no download)."""
    from ultralytics.nn.tasks import DetectionModel

    from hybrid.detector import HandDetector

    detector = HandDetector(DetectionModel("yolov8n.yaml", nc=1, verbose=False), ["hand"], image_size=64)
    return detector, GestureClassifier.create("resnet18", ["a", "b"], image_size=32, device="cpu", precision="fp32")


def test_compiled_classifier_agrees_with_torch(trained_classifier, crops, tmp_path):
    clf = GestureClassifier.from_pretrained(trained_classifier, device="cpu", precision="fp32")
    expected = torch.from_numpy(clf.probabilities(crops))
    top2 = expected.topk(2, dim=-1).values
    for precision, tolerance in ((Precision.FP32, 1e-4), (Precision.BF16, 0.05)):
        compiled = clf.compile("openvino", precision, cache_dir=tmp_path)
        assert compiled.network.backend is Backend.OPENVINO
        assert compiled.model is clf.model
        assert compiled.precision == compiled.network.precision != Precision.AUTO  # precision lives in one object
        got = torch.from_numpy(compiled.probabilities(crops))
        assert got.shape == expected.shape
        difference = (got - expected).abs().max()
        assert difference < tolerance, precision
        clear = top2[:, 0] - top2[:, 1] > 2 * difference  # top-1 can only flip where two classes are that close
        assert clear.sum() >= len(crops) // 2, "the fixture classifier is too unsure to compare top-1"
        assert got.argmax(-1)[clear].tolist() == expected.argmax(-1)[clear].tolist(), precision
    exact = clf.compile("openvino", "fp32", cache_dir=tmp_path)
    assert [r[0].label for r in exact.predict(crops, top_k=1)] == [r[0].label for r in clf.predict(crops, top_k=1)]
    # The original keeps running in PyTorch: compile() returns a copy.
    assert isinstance(clf.network, TorchNetwork)
    assert clf.precision == Precision.FP32


@pytest.mark.parametrize(
    "field, value", [("backend", "tensorrt"), ("backend", "OpenVINO"), ("precision", "fp16"), ("precision", "half")]
)
def test_unknown_backend_or_precision_is_refused_before_any_export(tiny_models, tmp_path, field, value):
    detector, classifier = tiny_models
    with pytest.raises(ValueError) as error:
        HybridPipeline(detector, classifier, onnx_cache_dir=tmp_path, **{field: value})
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{field} must be one of")
    assert repr(value) in message
    assert not any(tmp_path.iterdir())  # refused before anything was exported
    with pytest.raises(ValueError, match=f"^{field} must be one of"):
        classifier.compile(cache_dir=tmp_path, **{field: value})


def test_auto_falls_back_to_torch_when_the_export_fails(tiny_models, tmp_path, monkeypatch, caplog):
    from hybrid import runtime

    def broken(*args):
        raise RuntimeError("exporter broke")

    _, classifier = tiny_models
    monkeypatch.setitem(runtime._EXPORTS, "classifier", broken)
    with caplog.at_level(logging.WARNING, logger="hybrid.runtime"):
        fallback = classifier.compile("auto", "fp32", cache_dir=tmp_path)
    assert isinstance(fallback.network, TorchNetwork)
    assert "exporter broke" in caplog.text
    with pytest.raises(RuntimeError, match="exporter broke"):  # asked for by name: no silent fallback
        classifier.compile("openvino", "fp32", cache_dir=tmp_path)


def test_detector_compiles_in_fp32_only(tiny_models, tmp_path):
    detector, _ = tiny_models
    compiled = detector.compile("openvino", cache_dir=tmp_path)
    assert compiled.network.backend is Backend.OPENVINO
    assert compiled.network.precision is Precision.FP32
    assert isinstance(detector.network, TorchNetwork)
    batch = torch.rand(2, 3, 64, 96)
    with torch.inference_mode():
        torch.testing.assert_close(compiled.network(batch), detector.network(batch)[0], rtol=1e-3, atol=1e-3)


def test_first_input_shapes_get_their_own_compiled_model_and_answer_the_same(tiny_models, tmp_path):
    from hybrid import runtime

    _, classifier = tiny_models
    network = classifier.compile("openvino", "fp32", cache_dir=tmp_path).network
    batches = [torch.rand(n, 3, 32, 32) for n in (1, 2, 3, 1)]
    with torch.inference_mode():
        for batch in batches:
            torch.testing.assert_close(network(batch), classifier.network(batch), rtol=1e-4, atol=1e-4)
    assert list(network._static) == [(1, 3, 32, 32), (2, 3, 32, 32)][: runtime.STATIC_SHAPES]
    assert network._compiled_for((3, 3, 32, 32)) is network.model  # later shapes: the dynamic model


def test_threads_share_a_few_infer_requests_and_get_their_own_answers(tiny_models, tmp_path):
    """The app's worker pool has up to 40 threads: a network keeps as many infer requests (each with its own
    activation buffers) as calls ran at once, not one per thread that ever called it."""
    import threading

    _, classifier = tiny_models
    network = classifier.compile("openvino", "fp32", cache_dir=tmp_path).network
    batches = [torch.rand(1, 3, 32, 32) for _ in range(12)]
    expected = [network(batch) for batch in batches]
    for batch, want in zip(batches, expected):  # twelve threads, one after another
        got = []
        thread = threading.Thread(target=lambda: got.append(network(batch)))
        thread.start()
        thread.join()
        torch.testing.assert_close(got[0], want)
    assert network.infer_requests == 1
    results, barrier = {}, threading.Barrier(4)

    def run(i):
        barrier.wait()
        for j in range(i, 12, 4):
            results[j] = network(batches[j])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for j, want in enumerate(expected):
        torch.testing.assert_close(results[j], want)
    assert 1 <= network.infer_requests <= 4


def _exports(folder, kind: str = "classifier") -> list:
    return sorted(p.name for p in folder.glob(f"{kind}-*.onnx"))


def test_onnx_cache_keeps_the_newest_exports_per_kind(tiny_models, tmp_path, monkeypatch):
    """Each new set of weights is a new export; the cache keeps the `keep` most recently used of each kind
    (argument, else $HYBRID_ONNX_KEEP, else 3) and never touches the other kind's."""
    import copy
    import os

    from hybrid.runtime import cached_onnx

    detector, classifier = tiny_models
    detector_export = cached_onnx(detector.model, "detector", 64, tmp_path)
    made = []
    for step in range(4):
        model = copy.deepcopy(classifier.model)
        with torch.no_grad():
            model.get_classifier().bias.fill_(step)  # new weights: a new fingerprint
        made.append(cached_onnx(model, "classifier", 32, tmp_path, keep=2))
    assert _exports(tmp_path) == sorted(p.name for p in made[-2:])
    os.utime(made[2], (1, 1))  # long unused: the next export pushes it out, not the newer one
    monkeypatch.setenv("HYBRID_ONNX_KEEP", "2")
    newest = cached_onnx(classifier.model, "classifier", 32, tmp_path)
    assert _exports(tmp_path) == sorted([made[3].name, newest.name])
    assert detector_export.is_file()
    monkeypatch.delenv("HYBRID_ONNX_KEEP")
    for step in (10, 11):
        model = copy.deepcopy(classifier.model)
        with torch.no_grad():
            model.get_classifier().bias.fill_(step)
        last = cached_onnx(model, "classifier", 32, tmp_path)
    assert len(_exports(tmp_path)) == 3  # the default
    assert last.name in _exports(tmp_path)


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_onnx_keep_env_var_is_checked(monkeypatch, value):
    from hybrid import constants

    monkeypatch.setenv("HYBRID_ONNX_KEEP", value)
    with pytest.raises(ValueError, match=rf"^HYBRID_ONNX_KEEP: expected an integer >= 1, got '{value}'$"):
        constants.onnx_keep()


def test_int8_is_calibrated_on_the_training_split_cached_and_close_to_fp32(trained_classifier, crops, tmp_path, caplog):
    from hybrid.calibration import training_ids
    from hybrid.data.splits import load_split

    splits = load_split(trained_classifier)
    ids = training_ids(trained_classifier)
    assert ids and set(ids) <= splits["train"] and not set(ids) & (splits["test"] | splits["val"])
    clf = GestureClassifier.from_pretrained(trained_classifier, device="cpu", precision="fp32")
    with caplog.at_level(logging.DEBUG, logger="hybrid.runtime"):
        compiled = clf.compile("openvino", "int8", cache_dir=tmp_path)
    assert "quantizing" in caplog.text
    assert compiled.precision == compiled.network.precision == Precision.INT8
    (xml,) = tmp_path.glob("classifier-*-int8-*.xml")
    assert xml.with_suffix(".bin").is_file()
    assert not list(tmp_path.glob(".*"))  # no temporary files left
    expected, got = clf.probabilities(crops), compiled.probabilities(crops)
    assert np.abs(got - expected).max() < 0.1
    caplog.clear()
    inode = xml.stat().st_ino
    with caplog.at_level(logging.DEBUG, logger="hybrid.runtime"):
        again = clf.compile("openvino", "int8", cache_dir=tmp_path)
    assert "quantizing" not in caplog.text and xml.stat().st_ino == inode  # reused, not quantized again
    np.testing.assert_array_equal(again.probabilities(crops), got)


def test_int8_detector_keeps_its_box_decoding_in_floating_point(trained_detector, tmp_path):
    import openvino as ov

    from hybrid.detector import HandDetector

    detector = HandDetector.from_pretrained(trained_detector)
    compiled = detector.compile("openvino", cache_dir=tmp_path, precision="int8")
    assert compiled.network.precision is Precision.INT8
    (xml,) = tmp_path.glob("detector-*-int8-*.xml")
    model = ov.Core().read_model(xml)
    quantized_inputs = {
        op.get_friendly_name()
        for op in model.get_ops()
        for value in op.input_values()
        if value.get_node().get_type_name() == "FakeQuantize"
    }
    assert any("/cv2." in name or "/cv3." in name for name in quantized_inputs)  # the head's convs are int8
    head = f"/model.{len(detector.model.model) - 1}/"
    decoding = [n for n in quantized_inputs if head in n and "/cv" not in n and "/Shape" not in n]  # shapes: sizes
    assert not decoding, decoding


def test_int8_needs_calibration_and_openvino(tiny_models, tmp_path):
    detector, classifier = tiny_models  # built in memory: no split.json, nothing to calibrate on
    for model in (detector, classifier):
        with pytest.raises(ValueError, match="^precision 'int8' needs calibration samples for the"):
            model.compile("openvino", cache_dir=tmp_path, precision="int8")
    with pytest.raises(ValueError, match="needs calibration"):
        HybridPipeline(detector, classifier, precision="int8", onnx_cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # refused before any export
    auto = HybridPipeline(detector, classifier, onnx_cache_dir=tmp_path)  # 'auto' falls back quietly
    assert auto.precision in ("bf16", "fp32") and auto.detector_precision == "fp32"
    with pytest.raises(ValueError, match="fp32 or int8"):
        detector.compile("openvino", cache_dir=tmp_path, precision="bf16")


def test_int8_is_not_a_torch_precision(trained_classifier, tmp_path):
    clf = GestureClassifier.from_pretrained(trained_classifier, device="cpu", precision="fp32")
    with pytest.raises(RuntimeError, match="int8' needs the openvino backend"):
        clf.compile("torch", "int8", cache_dir=tmp_path)
    assert clf.compile("torch", "auto").precision in (Precision.BF16, Precision.FP32)  # auto: never int8 in torch
