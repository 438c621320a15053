"""HybridPipeline on real photos with the tiny trained fixture models, plus the `hybrid predict` CLI.

The fixture detector is one epoch old: its scores are its prior (~0.012) and it stores conf=0.01, so it
returns boxes on any image. Tests therefore check the plumbing (shapes, one batched classifier call,
crops, labels, JSON, drawing) and never the accuracy; "no hands" is tested with a threshold above every
score (the detector's answer for that image is then empty), which is what a real no-hand photo gives.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import ultralytics
from PIL import Image

from hybrid.classifier import square_resize
from hybrid.cli import main
from hybrid.crops import square_crop
from hybrid.detector import Detection
from hybrid.files import umask
from hybrid.images import ImageError
from hybrid.pipeline import NO_GESTURE, UNKNOWN, Hand, HybridPipeline, draw_hands, image_result

ASSETS = Path(ultralytics.__file__).parent / "assets"
ZIDANE, BUS = ASSETS / "zidane.jpg", ASSETS / "bus.jpg"


@pytest.fixture(scope="module")
def pipe(trained_detector, trained_classifier, tmp_path_factory) -> HybridPipeline:
    return HybridPipeline.from_pretrained(
        detector=str(trained_detector),
        classifier=str(trained_classifier),
        onnx_cache_dir=tmp_path_factory.mktemp("onnx"),
    )


@pytest.fixture(scope="module")
def hands_photo(data_root) -> Path:
    photos = sorted((data_root / "subhih-handsdataset" / "images" / "test").glob("*.jpg"))
    assert photos, "no Hands Dataset test photos"
    return photos[0]


def _count_forwards(module: torch.nn.Module):
    calls = []
    handle = module.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    return calls, handle


def test_real_photos_one_batched_forward(pipe, hands_photo, monkeypatch):
    # The shipped path is the default (the fixture detector was trained at 64 px, below 320).
    assert pipe.backend == "openvino"
    assert pipe.detector_size == min(320, pipe.detector.image_size)
    calls, run = [], pipe.classifier.network.run
    monkeypatch.setattr(pipe.classifier.network, "run", lambda array: calls.append(array.shape[0]) or run(array))
    results = pipe([ZIDANE, BUS, hands_photo])
    assert len(results) == 3
    total = sum(len(hands) for hands in results)
    assert total > 0
    assert calls == [total]  # every crop of every image in ONE forward pass
    names = set(pipe.classifier.label_names) | {UNKNOWN}
    for path, hands in zip([ZIDANE, BUS, hands_photo], results):
        width, height = Image.open(path).size
        for hand in hands:
            assert isinstance(hand, Hand)
            assert hand.label in names
            x0, y0, x1, y1 = hand.box
            assert -1 <= x0 <= x1 <= width + 1
            assert -1 <= y0 <= y1 <= height + 1
            assert 0 <= hand.score <= 1
            assert 0 <= hand.probability <= 1
            assert hand.top_k[0].score == pytest.approx(hand.probability)
            assert [p.score for p in hand.top_k] == sorted((p.score for p in hand.top_k), reverse=True)
            assert hand.score >= pipe.detector_threshold


def test_single_image_inputs_and_thresholds(pipe, hands_photo):
    as_path = pipe(hands_photo)
    assert len(as_path) == 1
    as_pil = pipe(Image.open(hands_photo))
    as_bytes = pipe(hands_photo.read_bytes())
    as_array = pipe(np.asarray(Image.open(hands_photo).convert("RGB")))
    for other in (as_pil, as_bytes, as_array):
        assert [h.to_dict() for h in other[0]] == [h.to_dict() for h in as_path[0]]
    # Nothing clears the threshold: zero hands, and the classifier is not run at all.
    calls, handle = _count_forwards(pipe.classifier.model)
    try:
        assert pipe(hands_photo, detector_threshold=1.0) == [[]]
        assert pipe([hands_photo, ZIDANE], detector_threshold=1.0) == [[], []]
    finally:
        handle.remove()
    assert calls == []
    with pytest.raises(ValueError, match="detector_threshold"):
        pipe(hands_photo, detector_threshold=1.5)
    # min_confidence above any probability: every hand is 'unknown', with its top-k kept.
    unsure = pipe(hands_photo, min_confidence=1.01)[0]
    assert unsure
    assert all(h.label == UNKNOWN and h.top_k for h in unsure)


def test_crops_are_the_training_crops(pipe, hands_photo, monkeypatch):
    """The pipeline cuts THE training crop at the size the classifier's preprocessing resizes it to (never at the
    photo's resolution): what the network sees equals what the full-size crop gives it, but for the pixels where
    the photo meets the grey padding."""
    image = Image.open(hands_photo).convert("RGB")
    boxes = [(10.0, 20.0, 110.0, 220.0), (-30.0, -30.0, 25.0, 40.0)]
    seen = []
    original = pipe.classifier.pixel_values
    monkeypatch.setattr(pipe.classifier, "pixel_values", lambda crops: seen.extend(crops) or original(crops))
    pipe.hands([image], [[Detection(box, 0.9, "hand") for box in boxes]])
    assert len(seen) == 2
    side, _ = square_resize(pipe.classifier.data_config)
    for crop, box in zip(seen, boxes):
        assert crop.size == (side, side)
        full = pipe.classifier.to_array(square_crop(image, box))
        assert np.abs(pipe.classifier.to_array(crop) - full).mean() < 0.05, box  # normalised units (~1/20 std)


def test_a_large_photo_keeps_the_best_hands_at_the_classifiers_size(pipe, data_root):
    """Threshold 0 on a 48 MP photo: hundreds of boxes with the demo models, each cut at full resolution once
    (~17 GB: the kernel killed the app). Now at most MAX_HANDS hands, the highest-scoring, each crop small."""
    import io

    from hybrid.limits import MAX_HANDS
    from tests.hostile import large_photo

    image = Image.open(io.BytesIO(large_photo(data_root)))
    image.load()
    every = pipe.detect([image], threshold=0.0, max_hands=300)[0]
    best = pipe.detect([image], threshold=0.0, max_hands=5)[0]
    assert len(every) > 5
    assert [d.box for d in best] == [d.box for d in sorted(every, key=lambda d: -d.score)[:5]]
    hands = pipe(image, detector_threshold=0.0)[0]
    assert len(hands) == min(len(every), MAX_HANDS)
    side, _ = square_resize(pipe.classifier.data_config)
    assert all(crop.size == (side, side) for crop in pipe.crops(image, [hand.box for hand in hands]))


def test_tiny_and_border_boxes(pipe):
    image = Image.open(BUS).convert("RGB")
    w, h = image.size
    boxes = [
        (0.0, 0.0, 1.0, 1.0),
        (5.0, 5.0, 5.0, 5.0),
        (-40.0, -40.0, 30.0, 60.0),
        (w - 10.0, h - 10.0, w + 90.0, h + 50.0),
        (0.0, 0.0, float(w), float(h)),
    ]
    hands = pipe.hands([image], [[Detection(box, 0.5, "hand") for box in boxes]])[0]
    assert [hand.box for hand in hands] == boxes
    assert all(hand.top_k and hand.label for hand in hands)


def test_no_gesture_class_is_kept(pipe, hands_photo):
    from hybrid.classifier import CompiledClassifier

    class Fixed:  # a classifier whose answer we choose
        label_names, outputs, ranked = [NO_GESTURE, "1"], (), CompiledClassifier.ranked

        def scores(self, crops):
            return np.tile(np.float32([0.9, 0.1]), (len(crops), 1)), np.zeros((len(crops), 0), np.float32)

    fixed = HybridPipeline(pipe.detector, pipe.classifier, backend="torch", min_confidence=0.5)
    fixed.classifier = Fixed()
    image = Image.open(hands_photo).convert("RGB")
    hand = fixed.hands([image], [[Detection((10, 10, 90, 90), 0.8, "hand")]])[0][0]
    assert hand.label == NO_GESTURE
    assert not hand.is_gesture
    assert hand.probability == pytest.approx(0.9)
    unsure = fixed.hands([image], [[Detection((10, 10, 90, 90), 0.8, "hand")]], min_confidence=0.95)[0][0]
    assert unsure.label == UNKNOWN


def test_openvino_detector_matches_pytorch_and_is_cached(pipe, tmp_path):
    from hybrid.runtime import cpu_has_fast_int8

    # shipped: int8 where the CPU has VNNI/AMX (the fixture models' training data is here to calibrate them)
    expected_precisions = ("int8", "int8") if cpu_has_fast_int8() else ("fp32", pipe.precision)
    assert (pipe.detector_precision, pipe.precision) == expected_precisions
    batch = torch.rand(1, 3, 256, 320)
    with torch.inference_mode():
        expected = pipe.detector.model(batch)[0].numpy()
    got = pipe.detector.compile("openvino", cache_dir=tmp_path).network.run(batch.numpy())  # fp32
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-3
    # Cached by weight digest: same model -> same file, not rewritten (same inode: exports are written to a temp
    # file and renamed; a reuse only touches the file); changed weights -> new file.
    first = pipe.detector.compile("openvino", cache_dir=tmp_path).network
    inode = first.path.stat().st_ino
    assert pipe.detector.compile("openvino", cache_dir=tmp_path).network.path.stat().st_ino == inode
    assert first.path.stat().st_mode & 0o777 == 0o666 & ~umask()  # hybrid.files: not mkstemp's 0600
    import copy

    changed = copy.deepcopy(pipe.detector)
    with torch.no_grad():
        next(changed.model.parameters()).add_(1.0)
    assert changed.compile("openvino", cache_dir=tmp_path).network.path != first.path


def test_openvino_detector_sees_the_pixels_pytorch_sees(pipe, hands_photo, monkeypatch):
    # The OpenVINO runner goes through HandDetector.predict with only the network swapped: the same
    # letterboxed batch goes in (the raw outputs agree to 1e-3: test above), so the same boxes come out.
    images = [np.asarray(Image.open(path).convert("RGB")) for path in (ZIDANE, BUS, hands_photo)]
    size = 256  # large enough that a rectangular letterbox would differ from the square one
    seen, run = [], pipe.detector.network.run
    monkeypatch.setattr(pipe.detector.network, "run", lambda array: seen.append(array.copy()) or run(array))
    found = pipe.detector.predict(images, conf=0.001, image_size=size, max_det=20)
    assert np.array_equal(np.concatenate(seen), pipe.detector.preprocess(images, size).numpy())
    assert len(found) == 3
    assert all(0 < len(hands) <= 20 for hands in found)


def test_openvino_classifier_matches_pytorch_and_is_cached(pipe, hands_photo, tmp_path):
    crops = pipe.crops(Image.open(hands_photo).convert("RGB"), [(100, 100, 300, 400), (0, 0, 50, 80)])
    batch = pipe.classifier.preprocess(crops)
    with torch.inference_mode():
        expected = pipe.classifier.model.float()(batch)
    exact = pipe.classifier.compile("openvino", "fp32", cache_dir=tmp_path)
    assert exact.precision == "fp32"
    got = exact.network(batch)
    assert got.shape == expected.shape == (2, len(pipe.classifier.label_names))
    assert (got - expected).abs().max() < 1e-3
    inode = exact.network.path.stat().st_ino
    best = pipe.classifier.compile("openvino", "bf16", cache_dir=tmp_path)  # bf16 where the CPU has it
    assert best.network.path.stat().st_ino == inode
    assert best.precision in ("bf16", "fp32")
    assert (best.network(batch) - expected).abs().max() < 0.05 * expected.abs().max() + 0.05


def test_naive_path_runs_in_fp32_pytorch(pipe, hands_photo):
    naive = HybridPipeline(pipe.detector, pipe.classifier, fast=False)
    assert (naive.backend, naive.precision, naive.detector_size) == ("torch", "fp32", pipe.detector.image_size)
    # Built from the shipped pipeline's models: it shares their weights and leaves their networks alone.
    assert naive.classifier.model is pipe.classifier.model
    assert pipe.backend == "openvino"
    calls, handle = _count_forwards(pipe.classifier.model)
    try:
        hands = naive([hands_photo, ZIDANE])
    finally:
        handle.remove()
    assert hands[0]
    assert all(isinstance(h, Hand) for h in hands[0])
    assert calls == [len(hands[0]) + len(hands[1])]  # PyTorch path: one batched forward too
    # Same answers as the shipped path when the detector runs at the same size (OpenVINO in fp32).
    shipped = HybridPipeline(
        pipe.detector,
        pipe.classifier,
        detector_size=naive.detector_size,
        precision="fp32",
        onnx_cache_dir=pipe.detector.network.path.parent,
    )
    for a, b in zip(naive([hands_photo])[0], shipped([hands_photo])[0]):
        assert a.label == b.label
        assert a.probability == pytest.approx(b.probability, abs=1e-3)
        assert a.box == pytest.approx(b.box, abs=0.5)


def test_to_dict_and_image_result_are_json(pipe, hands_photo):
    image = Image.open(hands_photo)
    hands = pipe(image)[0]
    result = json.loads(json.dumps(image_result(str(hands_photo), image, hands)))
    assert result["image"] == str(hands_photo)
    assert (result["width"], result["height"]) == image.size
    first = result["hands"][0]
    assert set(first) == {"box", "score", "label", "probability", "top_k"}
    assert len(first["box"]) == 4
    assert set(first["top_k"][0]) == {"label", "score"}


def test_bad_images_raise_image_error(pipe, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    for bad in (broken, tmp_path / "missing.jpg", b"\x00\x01"):
        with pytest.raises(ImageError):
            pipe(bad)


def test_draw_hands(hands_photo):
    image = Image.open(hands_photo).convert("RGB")
    hands = [Hand((100, 100, 300, 400), 0.9, "5", 0.97, []), Hand((700, -10, 820, 80), 0.4, UNKNOWN, 0.2, [])]
    drawn = draw_hands(image, hands)
    assert drawn.size == image.size
    assert drawn is not image
    diff = np.abs(np.asarray(drawn, dtype=int) - np.asarray(image, dtype=int)).sum(axis=2) > 0
    assert diff[100, 150:250].all()  # the top edge of the first box
    assert not diff[500:, :].any()  # nothing drawn far from the boxes
    assert np.array_equal(np.asarray(draw_hands(image, [])), np.asarray(image))


def test_predict_cli(trained_detector, trained_classifier, hands_photo, tmp_path, capsys, monkeypatch, model_cache):
    monkeypatch.setenv("HYBRID_CACHE", str(model_cache))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "annotated"
    code = main(
        [
            "predict",
            str(hands_photo),
            str(broken),
            str(ZIDANE),
            "--json",
            *("--save-dir", str(out), "--detector", str(trained_detector), "--classifier", str(trained_classifier)),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1  # one image failed; the others were still done
    assert "broken.jpg" in captured.err
    lines = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert [line["image"] for line in lines] == [str(hands_photo), str(broken), str(ZIDANE)]
    assert set(lines[1]) == {"image", "error"}
    assert "broken.jpg: not a readable image" in lines[1]["error"]
    for line in (lines[0], lines[2]):
        assert line["hands"]
        assert Image.open(line["annotated"]).size == (line["width"], line["height"])
    # Models from the environment when no flags are given; plain-text output.
    monkeypatch.setenv("HYBRID_DETECTOR", str(trained_detector))
    monkeypatch.setenv("HYBRID_CLASSIFIER", str(trained_classifier))
    assert main(["predict", str(hands_photo), "--detector-threshold", "1.0"]) == 0
    assert capsys.readouterr().out.strip() == f"{hands_photo}: no hands"
    # A missing model folder: one clear error line, exit status 2.
    assert main(["predict", str(hands_photo), "--detector", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
