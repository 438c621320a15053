"""HandDetector and hybrid.training.detector (train/detector.py) on a tiny real training run (the session
fixture `trained_detector`)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hybrid.detector import CHECKPOINT_NAME, CONFIG_NAME, WEIGHTS_NAME, Detection, HandDetector
from hybrid.training import detector as train_detector
from hybrid.training.recipe import DetectorRecipe

REPO = Path(__file__).resolve().parent.parent

CONF = 0.001  # the 1-epoch model only scores its prior: a low threshold gives many boxes to compare


@pytest.fixture(scope="module")
def images(data_root) -> list[Image.Image]:
    """Real photos of both sets: 800x600 (Hands) and 224x224 (Roboflow), i.e. two aspect ratios."""
    hands = sorted((data_root / "subhih-handsdataset" / "images" / "test").glob("*.jpg"))[:2]
    roboflow = sorted((data_root / "roboflow-hand-gesture-recognition-v6" / "test" / "images").glob("*.jpg"))[:1]
    return [Image.open(path).convert("RGB") for path in hands + roboflow]


def _as_array(detections: list[Detection]) -> np.ndarray:
    return np.array([[*d.box, d.score] for d in detections]).reshape(-1, 5)


def _assert_same(a: list[Detection], b: list[Detection], box_tol: float = 0.05, score_tol: float = 1e-5) -> None:
    assert len(a) == len(b) > 0
    assert [d.label for d in a] == [d.label for d in b]
    np.testing.assert_allclose(_as_array(a), _as_array(b), atol=box_tol, rtol=0)
    np.testing.assert_allclose(_as_array(a)[:, 4], _as_array(b)[:, 4], atol=score_tol, rtol=0)


def test_folder_has_everything(trained_detector: Path):
    for name in (CHECKPOINT_NAME, WEIGHTS_NAME, CONFIG_NAME, "metrics.json", "README.md", "pr_curve.png"):
        assert (trained_detector / name).is_file(), name
    config = json.loads((trained_detector / CONFIG_NAME).read_text())
    assert config["names"] == ["hand"]
    assert config["image_size"] == 64
    assert config["conf"] == 0.01
    metrics = json.loads((trained_detector / "metrics.json").read_text())
    assert metrics["split"] == "test"
    assert metrics["images"] > 0
    for key in ("precision", "recall", "mAP50", "mAP50-95"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["speed_ms_per_image"]["inference"] > 0
    assert metrics["epochs_trained"] == 1
    assert metrics["initialisation"] == "random (from yolov8n.yaml)"
    card = (trained_detector / "README.md").read_text()
    for expected in (
        "library_name: ultralytics",
        "pipeline_tag: object-detection",
        "license: agpl-3.0",
        "CC BY 4.0",
        "Soubhi Hadri",
        "pr_curve.png",
    ):
        assert expected in card
    assert not list(trained_detector.parent.glob("*.work")), "the Ultralytics work folder is left behind"


def test_tensorboard_events_in_output(trained_detector: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((trained_detector / "runs").glob("events.out.tfevents*"))
    assert len(events) == 1
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert "train/box_loss" in tags, tags
    assert "metrics/mAP50(B)" in tags, tags


def test_reloads_without_pickle_same_boxes_as_best_pt(trained_detector: Path, images, tmp_path, monkeypatch):
    pickled = HandDetector.from_pretrained(trained_detector / CHECKPOINT_NAME, allow_pickle=True)
    expected = pickled.predict(images, conf=CONF)

    # a folder without best.pt, loaded while every unpickling path is booby-trapped
    safe_dir = tmp_path / "safe"
    safe_dir.mkdir()
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        shutil.copy2(trained_detector / name, safe_dir / name)

    def refuse(*args, **kwargs):
        raise AssertionError("from_pretrained unpickled something")

    with monkeypatch.context() as patch:
        patch.setattr(torch, "load", refuse)
        patch.setattr(pickle, "load", refuse)
        patch.setattr(pickle, "loads", refuse)
        detector = HandDetector.from_pretrained(safe_dir)
    assert detector.names == ["hand"]
    assert detector.image_size == 64
    assert isinstance(detector.model, torch.nn.Module)
    got = detector.predict(images, conf=CONF)
    assert len(got) == len(images)
    for a, b in zip(got, expected):
        _assert_same(a, b)


def test_same_boxes_as_ultralytics_predict(trained_detector: Path, images):
    """Our letterbox + NMS reproduce Ultralytics' own predictor on best.pt (which fuses Conv+BN, hence the
    small tolerance), and the RGB input reaches the network in the channel order Ultralytics uses."""
    from ultralytics import YOLO

    detector = HandDetector.from_pretrained(trained_detector)
    yolo = YOLO(str(trained_detector / CHECKPOINT_NAME))
    for image in images:
        result = yolo.predict(image, imgsz=64, conf=CONF, iou=detector.iou, verbose=False, device="cpu")[0]
        ours = detector.predict(image, conf=CONF)
        theirs = [
            Detection(tuple(box), score, "hand")
            for box, score in zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist())
        ]
        _assert_same(
            sorted(ours, key=lambda d: -d.score)[:5],
            sorted(theirs, key=lambda d: -d.score)[:5],
            box_tol=0.5,
            score_tol=1e-3,
        )

        # the exact network input: Ultralytics' predictor gets BGR arrays (PIL inputs are converted to BGR)
        bgr = np.ascontiguousarray(np.asarray(image)[..., ::-1])
        expected_input = yolo.predictor.preprocess([bgr])
        assert torch.equal(detector.preprocess([np.asarray(image)], 64), expected_input)


def test_numpy_nms_equals_ultralytics(trained_detector: Path, images):
    """hybrid.detector.non_max_suppression keeps exactly what Ultralytics' keeps: on the real network's
    thousands of low-score boxes, and on crowded random boxes of three classes (per-class suppression)."""
    from ultralytics.utils.nms import non_max_suppression as theirs

    from hybrid.detector import non_max_suppression as ours

    detector = HandDetector.from_pretrained(trained_detector)
    raw = detector.raw_predictions(detector.letterboxed([np.asarray(image) for image in images[:2]], 64))
    rng = np.random.default_rng(0)
    crowded = np.concatenate(
        [rng.uniform(20, 60, (2, 2, 500)), rng.uniform(5, 30, (2, 2, 500)), rng.random((2, 3, 500))], 1
    )
    for prediction, conf, iou in ((raw, CONF, detector.iou), (crowded, 0.3, 0.5), (crowded, 0.9, 0.2)):
        prediction = torch.as_tensor(prediction, dtype=torch.float32)
        expected = theirs(prediction.clone(), conf, iou, max_det=300)
        got = ours(prediction.numpy(), conf, iou, max_det=300)
        for mine, want in zip(got, expected):
            assert len(mine) == len(want) > 0
            order = np.lexsort((mine[:, 0], -mine[:, 4]))  # both best first; equal scores in any order
            want = want.numpy()
            np.testing.assert_allclose(mine[order], want[np.lexsort((want[:, 0], -want[:, 4]))], atol=1e-4)
    assert len(ours(crowded.astype(np.float32), 0.3, 0.5, max_det=7)[0]) == 7
    assert ours(np.zeros((1, 5, 10), np.float32), 0.1, 0.5)[0].shape == (0, 6)


def test_rect_letterbox_is_ultralytics_rect_and_finds_the_same_hands(trained_detector: Path, images):
    """`rect` (the shipped path) pads a photo only to a stride multiple, as Ultralytics' predictor with
    rect=True does: the square input minus its extra padding rows. (bench/evaluate.py --paths naive shipped
    checks on trained models that it finds the same hands: the shipped path uses it.)"""
    from ultralytics import YOLO

    detector = HandDetector.from_pretrained(trained_detector)
    yolo = YOLO(str(trained_detector / CHECKPOINT_NAME))
    for image in images:
        array = np.asarray(image)
        yolo.predict(image, imgsz=128, rect=True, verbose=False, device="cpu")
        rect = detector.preprocess([array], 128, rect=True)
        assert torch.equal(rect, yolo.predictor.preprocess([np.ascontiguousarray(array[..., ::-1])]))
        square = detector.preprocess([array], 128)
        pad = (square.shape[2] - rect.shape[2]) // 2
        assert pad == (0 if image.width == image.height else 16)  # 800x600 at 128: 128x96, not 128x128
        assert torch.equal(square[:, :, pad : pad + rect.shape[2]], rect)
        shapes, run = [], detector.network.run
        detector.network.run = lambda batch: shapes.append(tuple(batch.shape)) or run(batch)
        found = detector.predict(image, conf=CONF, image_size=128, rect=True)
        del detector.network.run
        assert shapes == [tuple(rect.shape)]  # predict(rect=True) runs the network on the rect input
        assert all(0 <= d.box[0] < d.box[2] <= image.width and 0 <= d.box[1] < d.box[3] <= image.height for d in found)
    # images of different shapes share one batch: square, as before
    mixed = detector.preprocess([np.asarray(images[0]), np.asarray(images[0])[:, :100]], 128, rect=True)
    assert mixed.shape[2:] == (128, 128)


def test_predict_inputs_and_outputs(trained_detector: Path, images, data_root):
    detector = HandDetector.from_pretrained(trained_detector)
    image = images[0]
    single = detector.predict(image, conf=CONF)
    assert isinstance(single, list)
    assert single, f"no detection at conf={CONF}"
    assert all(isinstance(d, Detection) for d in single)
    x0, y0, x1, y1 = single[0].box
    assert 0 <= x0 < x1 <= image.width
    assert 0 <= y0 < y1 <= image.height
    assert single == detector.predict([image], conf=CONF)[0]
    assert single == detector.predict(np.asarray(image), conf=CONF)  # RGB array = PIL image
    path = sorted((data_root / "subhih-handsdataset" / "images" / "test").glob("*.jpg"))[0]
    assert detector.predict(path, conf=CONF) == single
    assert detector.predict([]) == []
    assert len(detector.predict(image)) >= 1  # the recipe's stored conf (0.01) keeps the prior's boxes
    assert detector.predict(image, conf=0.99) == []
    assert single[0].to_dict()["label"] == "hand"
    with pytest.raises(ValueError, match="image_size"):
        detector.predict(image, image_size=16)


def test_save_pretrained_round_trip(trained_detector: Path, images, tmp_path):
    detector = HandDetector.from_pretrained(trained_detector)
    detector.conf = 0.2
    detector.save_pretrained(tmp_path / "copy")
    again = HandDetector.from_pretrained(tmp_path / "copy")
    assert again.conf == 0.2
    assert again.names == detector.names
    assert again.predict(images, conf=CONF) == detector.predict(images, conf=CONF)


def test_pickle_needs_opt_in(trained_detector: Path, tmp_path):
    with pytest.raises(ValueError, match="allow_pickle=True"):
        HandDetector.from_pretrained(trained_detector / CHECKPOINT_NAME)
    only_pt = tmp_path / "only-pt"
    only_pt.mkdir()
    shutil.copy2(trained_detector / CHECKPOINT_NAME, only_pt / CHECKPOINT_NAME)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        HandDetector.from_pretrained(only_pt)
    assert HandDetector.from_pretrained(only_pt, allow_pickle=True).names == ["hand"]


def test_broken_folders_fail_clearly(trained_detector: Path, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy2(trained_detector / WEIGHTS_NAME, broken / WEIGHTS_NAME)
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        HandDetector.from_pretrained(broken)
    config = json.loads((trained_detector / CONFIG_NAME).read_text())
    config["names"] = ["hand", "extra"]  # a head for 2 classes cannot take 1-class weights
    (broken / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not match"):
        HandDetector.from_pretrained(broken)
    del config["model_yaml"]
    (broken / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model_yaml"):
        HandDetector.from_pretrained(broken)


def _parse(argv: list[str]) -> DetectorRecipe:
    return train_detector.parse(argv)[0]


def test_bad_recipes_fail_clearly(tmp_path, caplog):
    with pytest.raises(ValueError, match="--model: unknown YOLOv8 size 'q'"):
        _parse(["--model", "q"])
    ten = DetectorRecipe(epochs="ten")
    with pytest.raises(ValueError, match="--epochs: expected an integer"):
        ten.check()
    with pytest.raises(ValueError, match="--image-size: must be a multiple of 32"):
        _parse(["--image-size", "100"])
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("epochs: 1\nimgsz: 64\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown field\(s\) imgsz"):
        _parse(["--config", str(recipe)])
    with caplog.at_level(logging.ERROR, logger="hybrid.training.detector"):
        assert train_detector.main(["--config", str(REPO / "train/configs/detector-tiny.yaml"), "--model", "xl"]) == 2
    assert "unknown YOLOv8 size 'xl'" in caplog.text
    parsed = _parse(
        [
            "--config",
            str(REPO / "train/configs/detector.yaml"),
            "--epochs",
            "3",
            "--data",
            "a,b",
            "--gestures",
            "--device",
            "0,1",
        ]
    )
    assert (parsed.epochs, parsed.data, parsed.gestures, parsed.device) == (3, ["a", "b"], True, "0,1")
    resume = _parse(["--resume", "--output", str(tmp_path / "none")])
    with pytest.raises(FileNotFoundError, match="--resume: no interrupted run"):
        train_detector.train(resume)


def test_offline_pretrained_falls_back_with_one_line(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("HYBRID_WEIGHTS", str(tmp_path / "no-weights"))  # and no local COCO copy
    recipe = _parse(["--pretrained", "auto"])
    with caplog.at_level(logging.WARNING, logger="hybrid.training.detector"):
        model = train_detector.build_model(recipe)
    assert [r.getMessage() for r in caplog.records if r.name == "hybrid.training.detector"] == [
        "no yolov8n.pt (COCO) here, offline, and no yolov8n-coco.pt in the weights folder: training yolov8n from "
        "scratch"
    ]
    assert model.model.yaml["yaml_file"] == "yolov8n.yaml"


def test_ddp_switches_tensorboard_on_in_a_settings_copy(monkeypatch):
    """DDP workers only run Ultralytics' own callbacks: they get TensorBoard through a temporary settings
    folder (YOLO_CONFIG_DIR, inherited by the workers), never by editing the user's settings file."""
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    user_settings = USER_CONFIG_DIR / "settings.json"
    before = user_settings.read_bytes() if user_settings.exists() else None
    monkeypatch.delenv("YOLO_CONFIG_DIR", raising=False)
    train_detector._enable_ultralytics_tensorboard_for_ddp()
    copy_dir = Path(os.environ["YOLO_CONFIG_DIR"])
    try:
        assert copy_dir != USER_CONFIG_DIR
        settings = json.loads((copy_dir / "settings.json").read_text())
        assert settings["tensorboard"] is True
        assert settings["runs_dir"] == SETTINGS["runs_dir"]
        assert (user_settings.read_bytes() if user_settings.exists() else None) == before
    finally:
        shutil.rmtree(copy_dir, ignore_errors=True)


def test_folder_holds_its_split_and_refuses_its_training_records(trained_detector: Path, data_root):
    """split.json lists the 40 records of the tiny run (train 23 / val 10 / test 7, seed 0), recipe.yaml the
    resolved recipe; scoring the folder on its own training records is refused with one line."""
    from hybrid.data import read_dataset
    from hybrid.data.splits import held_out, load_split, record_id

    split = load_split(trained_detector)
    assert {name: len(ids) for name, ids in split.items()} == {"train": 23, "val": 10, "test": 7}
    recipe = yaml.safe_load((trained_detector / "recipe.yaml").read_text())
    assert (recipe["limit"], recipe["batch_size"], recipe["pretrained"]) == (40, 8, "false")
    records = read_dataset("hands", merge_labels=True) + read_dataset("roboflow", merge_labels=True)
    test = held_out(records, [trained_detector], "test")
    assert split["test"] <= {record_id(r) for r in test}
    assert not split["train"] & {record_id(r) for r in test}
    with pytest.raises(ValueError, match=f"refusing to score {trained_detector} on 23 records it was trained on"):
        held_out(records, [trained_detector], "train")
