"""Hostile input to the `hybrid` command: decompression bombs in a batch, same-stem outputs, a file as
--save-dir, abbreviated options, and an eval that must say what it scores. Each test fails on the code
before issue 12 (see the docstrings). Model-backed tests use the tiny fixture models."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from hybrid.cli import main
from tests.test_images import bomb_png

HYBRID = Path(sys.executable).parent / "hybrid"


@pytest.fixture(scope="module")
def photos(data_root) -> list[Path]:
    found = sorted((data_root / "subhih-handsdataset" / "images" / "test").glob("*.jpg"))[:6]
    assert len(found) == 6, "no Hands Dataset test photos"
    return found


# --- predict --------------------------------------------------------------------------------------


def test_predict_batch_goes_on_past_a_bomb(trained_detector, trained_classifier, photos, tmp_path, model_cache):
    """`hybrid predict a.jpg bomb.png b.jpg --json`: used to print a DecompressionBombError traceback and
    lose b.jpg. Now every image gets its JSON line (the bomb's with "error"), stderr holds exactly one
    line naming the bomb, and the exit status is 1. Run as the installed command, as a user would."""
    a, b = shutil.copy(photos[0], tmp_path / "a.jpg"), shutil.copy(photos[1], tmp_path / "b.jpg")
    bomb = bomb_png(tmp_path / "bomb.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HYBRID_CACHE": str(model_cache)}
    done = subprocess.run(
        [
            str(HYBRID),
            "predict",
            str(a),
            str(bomb),
            str(b),
            "--json",
            "--detector",
            str(trained_detector),
            "--classifier",
            str(trained_classifier),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["image"] for line in lines] == [str(a), str(bomb), str(b)]
    assert "hands" in lines[0]
    assert "hands" in lines[2]
    assert "error" not in lines[2]
    assert set(lines[1]) == {"image", "error"}
    assert "megapixels" in lines[1]["error"]
    errors = [line for line in done.stderr.splitlines() if not line.startswith("INFO ")]
    assert errors == [f"hybrid: error: {lines[1]['error']}"]


def test_save_dir_same_stem_never_overwrites(
    trained_detector, trained_classifier, photos, tmp_path, capsys, monkeypatch, model_cache
):
    """a/x.jpg and b/x.jpg both used to be saved as DIR/x.jpg (the first one lost), and an earlier run's
    x.jpg was replaced. Now each gets its own name and nothing already there is touched."""
    monkeypatch.setenv("HYBRID_CACHE", str(model_cache))
    first, second = tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg"
    for source, target in ((photos[0], first), (photos[1], second)):
        target.parent.mkdir()
        shutil.copy(source, target)
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.jpg").write_bytes(b"an earlier result")
    code = main(
        [
            "predict",
            str(first),
            str(second),
            "--json",
            "--save-dir",
            str(out),
            "--detector",
            str(trained_detector),
            "--classifier",
            str(trained_classifier),
        ]
    )
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    saved = [Path(line["annotated"]) for line in lines]
    assert saved == [out / "x-1.jpg", out / "x-2.jpg"]
    assert (out / "x.jpg").read_bytes() == b"an earlier result"
    for path, source in zip(saved, (first, second)):
        assert Image.open(path).size == Image.open(source).size
    assert sorted(p.name for p in out.iterdir()) == ["x-1.jpg", "x-2.jpg", "x.jpg"]  # no temporary files left


def test_save_dir_that_is_a_file_is_refused_before_any_work(tmp_path, photos, capsys):
    """`--save-dir FILE` used to end in a FileExistsError traceback after loading both models. Now one
    line names the flag before any model is loaded (the missing model folders are never reached)."""
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    models = ["--detector", str(tmp_path / "no-detector"), "--classifier", str(tmp_path / "no-classifier")]
    for save_dir in (existing, existing / "inside"):
        assert main(["predict", str(photos[0]), "--save-dir", str(save_dir), *models]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"hybrid: error: --save-dir {save_dir}: {existing} is a file, expected a folder"
    assert existing.read_text() == "keep me"
    assert main(["predict", str(photos[0]), "--min-confidence", "1.5", *models]) == 2
    assert capsys.readouterr().err.strip() == "hybrid: error: --min-confidence must be between 0 and 1, got 1.5"


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "a.jpg", "--min", "0.3"],  # used to mean --min-confidence
        ["predict", "a.jpg", "--save", "out"],  # used to mean --save-dir
        ["data", "stats", "hands", "--merge"],  # used to mean --merge-labels
        ["eval", "hands", "--gesture", "m"],  # used to mean --gesture-detector
    ],
)
def test_abbreviated_options_are_refused(argv, capsys):
    """argparse's prefix matching read a mistyped or half-typed option as another one; now it is an error."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    option = next(arg for arg in argv if arg.startswith("--"))
    assert f"unrecognized arguments: {option}" in capsys.readouterr().err


# --- eval -----------------------------------------------------------------------------------------


def test_eval_help_documents_split_all(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{train,val,test,all}" in text
    assert "'all' scores every image" in text


def test_eval_says_what_it_scores_and_lists_unknown_labels(
    trained_detector, trained_classifier, photos, tmp_path, capsys, monkeypatch, model_cache
):
    """A folder without splits (6 images: 3 of a known label '5', 3 of 'thumbs_up' the classifier lacks).
    `hybrid eval` used to score the seeded test split (1 image) without saying so and count the unknown
    label silently. Now it says which split, how many of how many images, and names the unknown label."""
    monkeypatch.setenv("HYBRID_CACHE", str(model_cache))
    for label, chosen in (("5", photos[:3]), ("thumbs_up", photos[3:])):
        (tmp_path / "set" / label).mkdir(parents=True)
        for photo in chosen:
            shutil.copy(photo, tmp_path / "set" / label / photo.name)
    models = ["--detector", str(trained_detector), "--classifier", str(trained_classifier)]
    assert main(["eval", str(tmp_path / "set"), "--json", *models]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(captured.out)
    test_images = metrics["dataset"]["images"]
    assert 0 < test_images < 6
    assert metrics["dataset"]["dataset_images"] == 6
    assert f"scoring {test_images} images of {tmp_path / 'set'} (of 6 in all): a seeded test split" in captured.err
    assert "--split all scores every image" in captured.err

    assert main(["eval", str(tmp_path / "set"), "--split", "all", "--json", *models]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(captured.out)
    assert metrics["images"] == 6
    assert metrics["dataset"]["unknown_labels"] == {"thumbs_up": 3}
    assert "scoring 6 images" in captured.err
    assert "every image" in captured.err
    assert "labels the classifier does not know (they count as errors): 'thumbs_up' (3 hands)" in captured.err


def test_eval_output_that_is_a_file_is_refused_before_any_work(tmp_path, capsys):
    """`--output FILE` used to end in a traceback after scoring; now one line, before the models (missing here)
    are loaded."""
    existing = tmp_path / "metrics"
    existing.write_text("keep me")
    assert main(["eval", "hands", "--output", str(existing), "--detector", str(tmp_path / "none")]) == 2
    expected = f"hybrid: error: --output {existing}: {existing} is a file, expected a folder"
    assert capsys.readouterr().err.strip() == expected
    assert existing.read_text() == "keep me"


def test_eval_refuses_a_models_own_training_records(trained_detector, trained_classifier, tmp_path, model_cache):
    """`hybrid eval hands --split train` with models whose split.json lists those records: one line, exit 2,
    before anything is scored (it used to score them and report a flattering number)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HYBRID_CACHE": str(model_cache)}
    models = ["--detector", str(trained_detector), "--classifier", str(trained_classifier)]
    done = subprocess.run(
        [str(HYBRID), "eval", "hands", "--split", "train", *models], capture_output=True, text=True, env=env
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, done.stderr
    assert "refusing to score" in errors[0]
    assert "records it was trained on" in errors[0]


# --- issue 29: files that are not files, names that are not plain, outputs that are not ours -------------------


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> list[str]:
    """`--detector DIR --classifier DIR` of an untrained YOLOv8n (64 px) and ResNet-18 (32 px), saved as their
    classes save them: a model loads in a second and no training is needed (their answers are noise)."""
    from ultralytics.nn.tasks import DetectionModel

    from hybrid.classifier import GestureClassifier
    from hybrid.detector import HandDetector

    root = tmp_path_factory.mktemp("tiny-models")
    HandDetector(DetectionModel("yolov8n.yaml", nc=1, verbose=False), ["hand"], image_size=64).save_pretrained(
        root / "detector"
    )
    GestureClassifier.create("resnet18", ["fist", "palm"], image_size=32, device="cpu").save_pretrained(
        root / "classifier"
    )
    return ["--detector", str(root / "detector"), "--classifier", str(root / "classifier")]


def _clip(path: Path, photo: Path, frames: int = 3) -> Path:
    """A real 3-frame MP4 (mp4v, 160x120) of `photo`."""
    import cv2

    frame = cv2.resize(cv2.imread(str(photo)), (160, 120))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (160, 120))
    for _ in range(frames):
        writer.write(frame)
    writer.release()
    return path


def test_predict_reads_only_regular_files(tiny_models, photos, tmp_path):
    """A FIFO named x.jpg (or x.mp4) used to hang `hybrid predict` forever (the open blocks until a writer
    comes); a folder named like an image was handed to the decoder. Now each gets one error line naming it, its
    JSON error line, and the batch goes on to the real photo. Run as the installed command, under a timeout."""
    fifo_image, fifo_video, folder = tmp_path / "x.jpg", tmp_path / "x.mp4", tmp_path / "album.jpg"
    os.mkfifo(fifo_image)
    os.mkfifo(fifo_video)
    folder.mkdir()
    photo = shutil.copy(photos[0], tmp_path / "photo.jpg")
    inputs = [str(fifo_image), str(fifo_video), str(folder), str(photo)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [str(HYBRID), "predict", *inputs, "--json", *tiny_models], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line.get("image", line.get("video")) for line in lines] == inputs
    assert "hands" in lines[3]
    errors = [line for line in done.stderr.splitlines() if not line.startswith("INFO ")]
    assert errors == [
        f"hybrid: error: {fifo_image}: a FIFO, not a regular file",
        f"hybrid: error: {fifo_video}: a FIFO, not a regular file",
        f"hybrid: error: {folder}: a folder, not a regular file",
    ]
    assert [line["error"] for line in lines[:3]] == [error.removeprefix("hybrid: error: ") for error in errors]


def test_plain_output_escapes_control_characters_in_names(tiny_models, photos, tmp_path):
    """A file named 'a.jpg: 5 99%\\nforged.jpg' used to print a second, forged result line; an ANSI escape in a
    name reached the terminal; a name that is not UTF-8 ended the batch in a UnicodeEncodeError. Now every
    result is one line, with control characters written as escapes (\\n, \\x1b, ...), in plain and --json output."""
    names = ["a.jpg: 5 99%\nforged", "b\r\x1b[2Kc", "tab\there", "bell\x07", "not-utf8-\udcff"]
    paths = [str(shutil.copy(photos[0], tmp_path / f"{name}.jpg")) for name in names]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    argv = [str(HYBRID), "predict", *paths, *tiny_models]
    done = subprocess.run(argv, env=env, capture_output=True, timeout=180)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode("ascii").splitlines()  # every byte printable: the escapes are ASCII
    assert len(lines) == len(names)
    escaped = ["a.jpg: 5 99%\\nforged", "b\\r\\x1b[2Kc", "tab\\there", "bell\\x07", "not-utf8-\\udcff"]
    for line, name in zip(lines, escaped):
        assert line.startswith(f"{tmp_path}/{name}.jpg: "), line

    done = subprocess.run([*argv, "--json"], env=env, capture_output=True, timeout=180)
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.decode("utf-8").splitlines()]
    assert [result["image"] for result in results] == paths  # JSON keeps the name as it is, escaped by JSON


def test_long_names_stay_under_the_file_system_limit(tiny_models, photos, tmp_path, capsys):
    """A 240-character stem with --save-dir used to end the batch with an OSError (File name too long) from the
    temporary name, which adds a prefix and suffix to the output's. Now the output stem is cut (with a hash of
    the whole: two long stems that start alike keep apart) and every name stays under 255 bytes."""
    stems = ["a" * 240, "a" * 251, "a" * 250 + "b", "é" * 120]
    inputs = [shutil.copy(photos[0], tmp_path / f"{stem}.jpg") for stem in stems]
    inputs.append(_clip(tmp_path / f"{'v' * 240}.mp4", photos[1]))
    out = tmp_path / "out"
    out.mkdir()
    assert main(["predict", *map(str, inputs), "--json", "--save-dir", str(out), *tiny_models]) == 0
    lines = capsys.readouterr().out.splitlines()
    annotated = [json.loads(line)["annotated"] for line in lines[: len(stems)]]
    assert len(set(annotated)) == len(stems)
    saved = sorted(p.name for p in out.iterdir())
    assert len(saved) == len(stems) + 2  # the images, the video's .mp4 and .jsonl; no temporary file left
    assert sorted(Path(name).name for name in annotated) == sorted(n for n in saved if n.endswith(".jpg"))
    assert all(len(name.encode()) <= 255 for name in saved)
    assert sum(name.endswith((".mp4", ".jsonl")) for name in saved) == 2


def test_save_dir_never_replaces_or_writes_through_a_symlink(tiny_models, photos, tmp_path, capsys):
    """A dangling symlink out/clip.mp4 did not count as taken: the annotated video replaced it. Now a symlink,
    dangling or not, is a taken name for the video (clip.mp4, then clip-1.jsonl are links: clip-2.mp4 and
    clip-2.jsonl) and for an image (x-1.jpg); the links stay as they were and nothing appears where they point."""
    clip = _clip(tmp_path / "clip.mp4", photos[1])
    image = shutil.copy(photos[0], tmp_path / "x.jpg")
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    links = {"clip.mp4": elsewhere / "clip.mp4", "x.jpg": elsewhere / "x.jpg", "clip-1.jsonl": elsewhere / "l"}
    for name, target in links.items():
        (out / name).symlink_to(target)
    assert main(["predict", str(clip), str(image), "--save-dir", str(out), *tiny_models]) == 0
    captured = capsys.readouterr().out
    assert f"-> {out / 'clip-2.mp4'}" in captured
    assert sorted(p.name for p in out.iterdir()) == sorted([*links, "clip-2.mp4", "clip-2.jsonl", "x-1.jpg"])
    for name, target in links.items():
        assert os.readlink(out / name) == str(target)
    assert list(elsewhere.iterdir()) == []
    json_lines = (out / "clip-2.jsonl").read_text().splitlines()
    assert len(json_lines) == 3


def test_concurrent_runs_on_one_clip_keep_both_results(tiny_models, photos, tmp_path):
    """Two `hybrid predict clip.mp4 --save-dir out` at once: both used to pick clip.mp4 / clip.jsonl when they
    started and the second to finish replaced the first's. Now each pair is linked in place when it is done,
    under the first stem free for both: clip.* and clip-1.*, each whole (one JSON line per frame)."""
    clip = _clip(tmp_path / "clip.mp4", photos[1], frames=120)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [str(HYBRID), "predict", str(clip), "--save-dir", str(out), *tiny_models]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    runs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    answers = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in answers]
    written = sorted(stdout.strip().splitlines()[-1].rsplit(" -> ", 1)[1] for stdout, _ in answers)
    assert written == [str(out / "clip-1.mp4"), str(out / "clip.mp4")], answers
    assert sorted(p.name for p in out.iterdir()) == ["clip-1.jsonl", "clip-1.mp4", "clip.jsonl", "clip.mp4"]
    for stem in ("clip", "clip-1"):
        assert len((out / f"{stem}.jsonl").read_text().splitlines()) == 120


def test_eval_output_refuses_a_model_folder(tiny_models, tmp_path, capsys):
    """`hybrid eval --output MODEL_FOLDER` used to replace the metrics.json that `hybrid push` publishes with
    the model (and add confusion PNGs to it). Now one line, before anything is scored; the folder is untouched."""
    model = tmp_path / "model"
    shutil.copytree(tiny_models[3], model)
    (model / "metrics.json").write_text('{"val_accuracy": 0.9}')
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    assert main(["eval", "hands", "--limit", "1", "--output", str(model), *tiny_models]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hybrid: error: --output {model}: a model folder (it holds config.json")
    assert "\n" not in err
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


def test_video_summary_escapes_the_models_label_names():
    """A model's label names come from its config.json: 'fist\\n/etc/x.jpg: palm 99%' used to forge a result line
    in the plain video summary of `hybrid predict clip.mp4`, and an ANSI/OSC escape reached the terminal."""
    from hybrid.cli.predict import video_summary

    summary = video_summary({1: ["fist\n/etc/x.jpg: palm 99%"] * 3, 2: ["\x1b]0;pwned\x07palm"]})
    assert summary == "#1 fist\\n/etc/x.jpg: palm 99% (100% of 3 frames), #2 \\x1b]0;pwned\\x07palm (100% of 1 frames)"


def test_eval_output_refuses_a_folder_it_did_not_write(tiny_models, tmp_path, capsys):
    """`hybrid eval --output DIR` replaced metrics.json and confusion_matrix.png in any folder that was not a model
    folder, e.g. an Ultralytics run folder. Now a non-empty folder is refused (one line, before anything is scored)
    unless it is an earlier `hybrid eval` output, which a new evaluation replaces."""
    run = tmp_path / "runs" / "detect" / "train"
    (run / "weights").mkdir(parents=True)
    (run / "metrics.json").write_text('{"map50": 0.9}')
    (run / "confusion_matrix.png").write_bytes(b"their plot")
    (run / "results.csv").write_text("epoch,map50\n1,0.9\n")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert main(["eval", "hands", "--limit", "1", "--output", str(run), *tiny_models]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hybrid: error: --output {run}: not empty and not an earlier `hybrid eval` output")
    assert "\n" not in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before

    ours = tmp_path / "eval"
    for _ in range(2):  # a new folder, then the same one again: an earlier eval output is replaced
        assert main(["eval", "hands", "--limit", "1", "--output", str(ours), *tiny_models]) == 0
        assert json.loads((ours / "metrics.json").read_text())["dataset"]["images"] == 1
    capsys.readouterr()
