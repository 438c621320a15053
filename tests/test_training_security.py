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


# --- writers never replace what they did not write (issue 29) -----------------------------------------------


def _user_folder(folder: Path) -> dict[str, str]:
    """A folder of the user's own: a README.md and a config.json that are not a trainer's output."""
    folder.mkdir(parents=True)
    files = {"README.md": "# my notes\n", "config.json": '{"mine": true}\n'}
    for name, text in files.items():
        (folder / name).write_text(text)
    return files


def _contents(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run_of(recipe, folder: Path) -> Path:
    """A folder as a run of `recipe` leaves it when stopped before its first checkpoint: recipe.yaml and runs/."""
    from hybrid.training.recipe import save_recipe

    save_recipe(recipe, folder)
    (folder / "runs").mkdir()
    (folder / "runs" / "events.out.tfevents.1").write_bytes(b"events")
    return folder


@pytest.mark.parametrize("kind", ["user folder", "run of another recipe"])
def test_classifier_refuses_a_folder_that_is_not_a_run_of_its_recipe(workdir, data_root, kind):
    """`train/classifier.py --output EXISTING_FOLDER` used to train into a user's folder (README.md, config.json)
    or into a run of another recipe and replace their files, exit 0. Now one line, before any training (no
    runs/, no checkpoints/ appear), says how to go on."""
    from hybrid.training.recipe import ClassifierRecipe, parse_recipe

    output = workdir / "mine"
    if kind == "user folder":
        _user_folder(output)
    else:
        output.mkdir()
        other, _ = parse_recipe(ClassifierRecipe, [*TINY, "--image-size", "48", "--output", str(output)])
        _run_of(other, output)
    before = _contents(output)
    done = _run(CLASSIFIER, *TINY, "--output", str(output), cwd=workdir, data_root=data_root)
    line = _refused(done, f"--output {output}", "--resume", "new or empty --output")
    if kind != "user folder":
        assert "image_size was 48, now 32" in line
    assert _contents(output) == before
    assert sorted(p.name for p in workdir.iterdir()) == ["mine"]


def test_detector_refuses_a_folder_it_did_not_write(workdir, data_root):
    """`train/detector.py --output EXISTING_FOLDER`: a config.json used to count as "an earlier detector folder",
    so a user's folder was trained into and then replaced whole. Now one line before any work."""
    output = workdir / "mine"
    before = _user_folder(output)
    tiny = REPO / "train" / "configs" / "detector-tiny.yaml"
    done = _run(DETECTOR, "--config", str(tiny), "--output", str(output), cwd=workdir, data_root=data_root)
    _refused(done, f"--output {output}", "no recipe.yaml", "--resume")
    assert _contents(output) == before
    assert sorted(p.name for p in workdir.iterdir()) == ["mine"]  # no mine.work either


def test_detector_never_removes_a_work_folder_it_did_not_make(workdir, data_root):
    """The Ultralytics run lives in `<output>.work`; a folder of that name that is not such a run (no split.json,
    recipe.json) used to be removed as "the previous unfinished run". Now it is refused, before any work."""
    output = workdir / "detector"
    before = _user_folder(workdir / "detector.work")
    tiny = REPO / "train" / "configs" / "detector-tiny.yaml"
    done = _run(DETECTOR, "--config", str(tiny), "--output", str(output), cwd=workdir, data_root=data_root)
    _refused(done, str(workdir / "detector.work"), "not a run of this trainer")
    assert _contents(workdir / "detector.work") == before
    assert sorted(p.name for p in workdir.iterdir()) == ["detector.work"]


def test_a_run_of_the_same_recipe_may_be_trained_into(tmp_path):
    """The decision, without training: a folder holding a run of the same recipe (fields that change neither the
    model nor its data may differ) is fine; another recipe, no recipe.yaml, or a recipe.yaml that is not a
    readable file (a FIFO would hang a reader) is refused with one line; an empty or missing folder is fine."""
    from hybrid.training.recipe import ClassifierRecipe, DetectorRecipe, check_run_folder, parse_recipe

    folder = tmp_path / "run"
    folder.mkdir()
    recipe, _ = parse_recipe(DetectorRecipe, ["--image-size", "64", "--output", str(folder)])
    check_run_folder(recipe, tmp_path / "missing")
    check_run_folder(recipe, folder)  # empty
    _run_of(recipe, folder)
    check_run_folder(recipe, folder)
    same, _ = parse_recipe(DetectorRecipe, ["--image-size", "64", "--output", "elsewhere", "--num-workers", "0"])
    check_run_folder(same, folder)
    other, _ = parse_recipe(DetectorRecipe, ["--image-size", "96", "--output", str(folder)])
    with pytest.raises(ValueError, match=r"holds a run of another recipe \(image_size was 64, now 96\)"):
        check_run_folder(other, folder)
    classifier, _ = parse_recipe(ClassifierRecipe, ["--output", str(folder)])
    with pytest.raises(ValueError, match="holds a run of another recipe"):
        check_run_folder(classifier, folder)

    (folder / "recipe.yaml").unlink()
    os.mkfifo(folder / "recipe.yaml")
    with pytest.raises(ValueError, match=r"no recipe\.yaml .*--resume") as refused:
        check_run_folder(recipe, folder)
    assert "\n" not in str(refused.value)
    (folder / "recipe.yaml").unlink()
    (folder / "recipe.yaml").write_text("a: &a [1, 2]\nb: [*a, *a]\n")  # yaml aliases: never expanded
    with pytest.raises(ValueError, match=r"no recipe\.yaml"):
        check_run_folder(recipe, folder)
