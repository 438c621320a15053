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


@pytest.fixture(scope="session")
def trained_detector(tmp_path_factory, data_root) -> Path:
    """A tiny hands-only YOLOv8n folder (best.pt, model.safetensors, config.json, metrics.json, README.md,
    runs/ with TensorBoard events), trained once through `train/detector.py` with
    train/configs/detector-tiny.yaml: 40 real Hands + Roboflow images, 64 px, 1 epoch (~25 s here).

    One epoch from scratch learns nothing yet: its scores are the prior (~0.012), so the recipe stores
    conf=0.01 and `predict` returns a few boxes per image for plumbing tests; do not assert accuracy."""
    output = tmp_path_factory.mktemp("detector") / "detector"
    env = {**os.environ, "HYBRID_DATA": str(data_root), "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1"}
    command = [sys.executable, str(_REPO / "train" / "detector.py"), "--config",
               str(_REPO / "train" / "configs" / "detector-tiny.yaml"), "--output", str(output)]
    done = subprocess.run(command, env=env, cwd=output.parent, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return output


def train_classifier(output: Path, *args: str, data_root: Path | None = None, launcher: list[str] | None = None,
                     timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `train/classifier.py` (optionally under a launcher, e.g. accelerate) in a subprocess, offline."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if data_root is not None:
        env["HYBRID_DATA"] = str(data_root)
    command = [*(launcher or [sys.executable]), str(_REPO / "train" / "classifier.py"), "--output", str(output), *args]
    return subprocess.run(command, env=env, cwd=_REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def trained_classifier(tmp_path_factory, data_root) -> Path:
    """A tiny finger-count classifier folder (model.safetensors, config.json in timm format, metrics.json,
    README.md, confusion_matrix.png, runs/ with TensorBoard events, checkpoints/), trained once through
    `train/classifier.py` with train/configs/classifier-tiny.yaml: ~160 real Hands + Roboflow images
    (labels '0'..'5'), resnet50 at 32 px, 1 epoch. Loads with GestureClassifier.from_pretrained, timm and
    transformers. One epoch learns little: do not assert accuracy."""
    output = tmp_path_factory.mktemp("classifier") / "classifier"
    done = train_classifier(output, "--config", str(_REPO / "train" / "configs" / "classifier-tiny.yaml"),
                            data_root=data_root)
    if done.returncode != 0 or not (output / "metrics.json").is_file():
        raise RuntimeError(f"train/classifier.py failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return output
