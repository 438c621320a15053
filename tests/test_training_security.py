"""Hostile recipes for train/classifier.py and train/detector.py (hybrid.training): each is refused with one clear
line, before any work, and leaves nothing behind. The scripts run in a subprocess whose working folder is an empty
tmp folder, so a stray `models/` or `runs/` (the default outputs are relative) is seen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid.training.detector import parse

REPO = Path(__file__).resolve().parent.parent
CLASSIFIER = REPO / "train" / "classifier.py"
DETECTOR = REPO / "train" / "detector.py"
# The cheapest real classifier run that makes a checkpoint: 20 Sign Language Digits images, 32 px, 1 epoch.
TINY = ["--data", "sign-digits", "--limit", "20", "--image-size", "32", "--batch-size", "8", "--epochs", "1"]


def _run(script: Path, *args: str, cwd: Path, data_root: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1", "HYBRID_DATA": str(data_root)}
    return subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _refused(done: subprocess.CompletedProcess, *words: str) -> str:
    """A non-zero exit whose stderr is one error line (no traceback) holding `words`; returns that line."""
    assert done.returncode != 0, done.stdout[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under `folder`, with size and mtime for files (a folder's mtime moves with the write probe)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
        for p in folder.rglob("*")
    }


@pytest.fixture()
def workdir(tmp_path) -> Path:
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder


@pytest.mark.parametrize(
    "flag, value, words",
    [("--epochs", "-1", ["--epochs", ">= 1", "-1"]), ("--image-size", "0", ["--image-size", ">= 32", "0"])],
)
def test_classifier_bad_number_refused_before_work(workdir, data_root, flag, value, words):
    done = _run(CLASSIFIER, "--data", "sign-digits", "--limit", "20", flag, value, cwd=workdir, data_root=data_root)
    _refused(done, *words)
    assert list(workdir.iterdir()) == []  # no models/classifier, no runs/


def test_classifier_empty_data_refused_before_output(workdir, tmp_path, data_root):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _run(CLASSIFIER, "--data", str(empty), cwd=workdir, data_root=data_root)
    _refused(done, "--data", str(empty))
    assert list(workdir.iterdir()) == []  # the default output models/classifier is not made
    assert list(empty.iterdir()) == []


def test_detector_empty_data_refused_before_work_folder(workdir, tmp_path, data_root):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _run(DETECTOR, "--data", str(empty), "--epochs", "1", cwd=workdir, data_root=data_root)
    _refused(done, "data:", str(empty))
    assert list(workdir.iterdir()) == []  # no models/detector.work, no models/detector


def test_detector_conf_is_not_config(workdir, data_root):
    """argparse abbreviations are off: `--conf` is the score threshold, never a prefix of `--config`."""
    assert parse(["--conf", "0.3", "--output", str(workdir / "out")])[0].conf == 0.3
    done = _run(DETECTOR, "--conf", "1.5", cwd=workdir, data_root=data_root)
    line = _refused(done, "conf=1.5")
    assert "--config" not in line
    assert list(workdir.iterdir()) == []


@pytest.mark.slow  # trains a model (~30 s or more)
def test_classifier_resume_refuses_a_changed_recipe(workdir, data_root):
    """A checkpoint of a 32 px run cannot be resumed at 48 px (metrics.json and config.json would disagree);
    the refusal names the field and leaves the folder as it was. Extending the run (more epochs) is allowed."""
    output = workdir / "clf"
    done = _run(CLASSIFIER, *TINY, "--output", str(output), cwd=workdir, data_root=data_root, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (output / "checkpoints" / "epoch_1" / "trainer_state.json").is_file()
    before = _files(workdir)

    changed = _run(
        CLASSIFIER,
        *TINY,
        "--output",
        str(output),
        "--resume",
        "--image-size",
        "48",
        "--epochs",
        "2",
        cwd=workdir,
        data_root=data_root,
    )
    _refused(changed, "--resume: image_size is 48 but the checkpoint was trained with 32")
    other_data = _run(
        CLASSIFIER,
        *TINY,
        "--output",
        str(output),
        "--resume",
        "--data",
        "hands",
        "--epochs",
        "2",
        cwd=workdir,
        data_root=data_root,
    )
    _refused(other_data, "--resume: data is hands but the checkpoint was trained with sign-digits")
    assert _files(workdir) == before

    extended = _run(
        CLASSIFIER,
        *TINY,
        "--output",
        str(output),
        "--resume",
        "--epochs",
        "2",
        cwd=workdir,
        data_root=data_root,
        timeout=600,
    )
    assert extended.returncode == 0, extended.stderr[-3000:]
    assert "resumed from" in extended.stderr
