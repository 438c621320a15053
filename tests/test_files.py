"""hybrid/files.py is THE writer: what it writes gets the umask's normal mode (mkstemp alone gives 0600) and
appears whole or not at all. `hybrid eval --output` and `hybrid predict --save-dir` write through it: before
issue 13, eval's metrics.json and confusion matrix were created 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hybrid.cli import main
from hybrid.files import atomic_file, write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_file_gets_the_umask_mode(tmp_path, umask_022):
    with atomic_file(tmp_path / "new" / "metrics.json") as tmp:
        tmp.write_text("{}")
    assert mode(tmp_path / "new" / "metrics.json") == 0o644
    assert mode(write_text(tmp_path / "README.md", "# card")) == 0o644


def test_failure_inside_atomic_file_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_file(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_eval_output_and_predict_save_dir_files_get_the_umask_mode(
    trained_detector, trained_classifier, data_root, tmp_path, umask_022, monkeypatch, capsys, model_cache
):
    monkeypatch.setenv("HYBRID_CACHE", str(model_cache))
    models = ["--detector", str(trained_detector), "--classifier", str(trained_classifier)]
    out = tmp_path / "eval"
    assert main(["eval", "hands", "--split", "test", "--limit", "1", "--output", str(out), "--json", *models]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == [".hybrid-eval", "confusion_matrix.png", "metrics.json"]  # its marker; no temporary file left
    assert {name: oct(mode(out / name)) for name in written} == {name: oct(0o644) for name in written}

    photo = sorted((data_root / "subhih-handsdataset" / "images" / "test").glob("*.jpg"))[0]
    saved = tmp_path / "saved"
    assert main(["predict", str(photo), "--save-dir", str(saved), *models]) == 0
    assert [(p.name, oct(mode(p))) for p in saved.iterdir()] == [(f"{photo.stem}.jpg", oct(0o644))]
    capsys.readouterr()
