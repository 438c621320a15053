"""Session fixtures: tiny models trained once on real data, shared by pipeline, hub and app tests.

`trained_classifier` is filled in by the classifier work, `trained_detector` by the detector work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parent.parent


def _failed(what: str, done: subprocess.CompletedProcess) -> RuntimeError:
    return RuntimeError(f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


@pytest.fixture(scope="session")
def trained_detector(tmp_path_factory, data_root) -> Path:
    """A tiny hands-only YOLOv8n folder (best.pt, model.safetensors, config.json, metrics.json, README.md,
    runs/ with TensorBoard events), trained once through `train/detector.py` with
    train/configs/detector-tiny.yaml: 40 real Hands + Roboflow images, 64 px, 1 epoch (~25 s here).

    One epoch from scratch learns nothing yet: its scores are the prior (~0.012), so the recipe stores
    conf=0.01 and `predict` returns a few boxes per image for plumbing tests; do not assert accuracy."""
    output = tmp_path_factory.mktemp("detector") / "detector"
    env = {**os.environ, "HYBRID_DATA": str(data_root), "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1"}
    command = [
        sys.executable,
        str(_REPO / "train" / "detector.py"),
        "--config",
        str(_REPO / "train" / "configs" / "detector-tiny.yaml"),
        "--output",
        str(output),
    ]
    done = subprocess.run(command, env=env, cwd=output.parent, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise _failed(" ".join(command), done)
    return output


def train_classifier(
    output: Path, *args: str, data_root: Path | None = None, launcher: list[str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run `train/classifier.py` (optionally under a launcher, e.g. accelerate) in a subprocess, offline,
    from the output's parent folder, so nothing the run writes lands in the checkout."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if data_root is not None:
        env["HYBRID_DATA"] = str(data_root)
    command = [*(launcher or [sys.executable]), str(_REPO / "train" / "classifier.py"), "--output", str(output), *args]
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run(command, env=env, cwd=output.parent, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def trained_classifier(tmp_path_factory, data_root) -> Path:
    """A tiny finger-count classifier folder (model.safetensors, config.json in timm format, metrics.json,
    README.md, confusion_matrix.png, runs/ with TensorBoard events, checkpoints/), trained once through
    `train/classifier.py` with train/configs/classifier-tiny.yaml: ~160 real Hands + Roboflow images
    (labels '0'..'5'), resnet50 at 32 px, 1 epoch. Loads with GestureClassifier.from_pretrained, timm and
    transformers. One epoch learns little: do not assert accuracy."""
    output = tmp_path_factory.mktemp("classifier") / "classifier"
    done = train_classifier(
        output, "--config", str(_REPO / "train" / "configs" / "classifier-tiny.yaml"), data_root=data_root
    )
    if done.returncode != 0 or not (output / "metrics.json").is_file():
        raise _failed("train/classifier.py", done)
    return output


def hand_or_background_crops(folder: Path, photos: int = 300, seed: int = 0) -> Path:
    """An image folder (hand/, background/) cut from real Hands train photos: THE square crop of each
    photo's first hand, and a square of the same size elsewhere in the photo that touches no hand."""
    import random

    from hybrid.crops import crop_square_box, square_crop
    from hybrid.data import read_dataset

    rng = random.Random(seed)
    (folder / "hand").mkdir(parents=True, exist_ok=True)
    (folder / "background").mkdir(parents=True, exist_ok=True)
    records = [r for r in read_dataset("hands", split="train") if r.boxes][:photos]
    for number, record in enumerate(records):
        image = record.load()
        square_crop(image, record.boxes[0].xyxy).save(folder / "hand" / f"{number}.jpg")
        x0, y0, x1, y1 = crop_square_box(record.boxes[0].xyxy)
        side = x1 - x0
        for _ in range(20):
            left, top = rng.uniform(0, image.width - side), rng.uniform(0, image.height - side)
            if all(
                left + side < b.xyxy[0] or left > b.xyxy[2] or top + side < b.xyxy[1] or top > b.xyxy[3]
                for b in record.boxes
            ):
                image.crop((round(left), round(top), round(left + side), round(top + side))).save(
                    folder / "background" / f"{number}.jpg"
                )
                break
    return folder


@pytest.fixture(scope="session")
def hand_classifier(tmp_path_factory, data_root) -> Path:
    """A classifier that has learnt what a hand looks like: resnet18 at 160 px (a 5x5 last stage, fine
    enough for Grad-CAM to say where), trained 4 epochs through `train/classifier.py` on ~490 real crops
    (hand vs background, from `hand_or_background_crops`); ~90% test accuracy, ~1 min here."""
    root = tmp_path_factory.mktemp("hand-or-background")
    crops = hand_or_background_crops(root / "crops")
    output = root / "classifier"
    done = train_classifier(
        output,
        "--config",
        str(_REPO / "train" / "configs" / "classifier.yaml"),
        "--data",
        str(crops),
        "--model",
        "resnet18",
        "--image-size",
        "160",
        "--epochs",
        "4",
        "--scheduler",
        "cosine",
        "--crop-scale",
        "0.5,1",
        # 4 epochs are enough without classifier.yaml's photometric jitter (a generalization lever that slows
        # learning: with it this model put 1.3x, not 2x, more Grad-CAM heat on the hand)
        "--color-jitter",
        "0",
        "--grayscale",
        "0",
        "--blur",
        "0",
        data_root=data_root,
    )
    if done.returncode != 0 or not (output / "metrics.json").is_file():
        raise _failed("train/classifier.py", done)
    return output
