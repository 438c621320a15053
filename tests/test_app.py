"""The Gradio app, end to end: app.py serving the tiny trained models on 127.0.0.1, driven with
gradio_client like any API user would (the shared server comes from tests/fixtures_app.py)."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import urllib.request
import zlib
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.fixtures_app import running_app
from tests.hubserver import HubServer

REPO = Path(__file__).resolve().parent.parent
# A real photo from the Hands Dataset (Soubhi Hadri, Apache-2.0): two raised fists.
PHOTO = "subhih-handsdataset/images/test/16_pic00008.jpg"
LOW = 0.01  # detector threshold for the tiny test detector, which is barely trained


@pytest.fixture(scope="module")
def client(app_url: str) -> Client:
    return Client(app_url, verbose=False, download_files=False)


@pytest.fixture(scope="module")
def photo(data_root: Path) -> Path:
    path = data_root / PHOTO
    assert path.is_file(), f"missing real photo {path}"
    return path


def predict(client: Client, path: Path, threshold: float = LOW, confidence: float = 0.0) -> dict:
    return client.predict(handle_file(str(path)), threshold, confidence, api_name="/predict")


def test_real_photo_gives_hands_and_gradcam(client: Client, photo: Path):
    annotated, status, table, overlay, gallery, eigen, result = client.predict(
        handle_file(str(photo)), LOW, 0.0, True, api_name="/analyse"
    )
    assert result["hands"], f"no hands found in {photo}: {result}"
    hand = result["hands"][0]
    assert set(hand) >= {"box", "score", "label", "probability"}
    width, height = Image.open(photo).size
    x0, y0, x1, y1 = hand["box"]
    assert 0 <= x0 < x1 <= width
    assert 0 <= y0 < y1 <= height
    assert len(table["data"]) == len(result["hands"])
    assert status.startswith(f"**{len(result['hands'])} hand"), status
    for image in (annotated, overlay, eigen):  # real images of the photo's size came back
        assert Image.open(image["path"]).size == (width, height)
    assert len(gallery) == min(len(result["hands"]), 8)
    for item in gallery:  # 'hand N: <gesture> NN%', N counting the table's rows
        number, label = re.fullmatch(r"hand (\d+): (\S+) \d+%", item["caption"]).groups()
        assert result["hands"][int(number) - 1]["label"] == label, item["caption"]
    # The Grad-CAM overlay is not the photo itself: the heat map changed pixels.
    assert Image.open(overlay["path"]).convert("RGB").tobytes() != Image.open(photo).convert("RGB").tobytes()


def test_api_json_is_the_cli_json(client: Client, photo: Path, trained_detector: Path, trained_classifier: Path):
    """/predict returns what `hybrid predict --json` prints for the same photo and thresholds."""
    result = predict(client, photo, LOW, 0.3)
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "hybrid.cli",
            "predict",
            str(photo),
            "--json",
            "--detector",
            str(trained_detector),
            "--classifier",
            str(trained_classifier),
            "--detector-threshold",
            str(LOW),
            "--min-confidence",
            "0.3",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=True,
    )
    expected = json.loads(cli.stdout)
    expected = expected[0] if isinstance(expected, list) else expected
    assert set(result) == set(expected)
    assert result["image"] == photo.name
    assert (result["width"], result["height"]) == (expected["width"], expected["height"])
    assert_close(result["hands"], expected["hands"])


def assert_close(got, want, path="hands"):
    """Equal JSON, numbers to 1e-3 (the app and the CLI are separate processes)."""
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{path}: {got} != {want}"
        assert set(got) == set(want), f"{path}: {got} != {want}"
        for key in want:
            assert_close(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list), f"{path}: {got} != {want}"
        assert len(got) == len(want), f"{path}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-3), f"{path}: {got} != {want}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def _corrupt_jpeg(tmp_path: Path, photo: Path) -> Path:
    data = photo.read_bytes()
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(data[: len(data) // 2])  # the header survives, half the scan data does not
    return path


def _huge_png(tmp_path: Path) -> Path:
    """A PNG whose header says 10000x10000 (100 megapixels) but which is a few bytes on disk."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = struct.pack(">II", 10_000, 10_000) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path = tmp_path / "huge.png"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "kind, expected", [("corrupt", "corrupt"), ("text", "not a readable image"), ("huge", "megapixels")]
)
def test_bad_upload_gets_a_clear_message_and_the_server_keeps_serving(
    client: Client, photo: Path, tmp_path: Path, kind: str, expected: str
):
    if kind == "corrupt":
        bad = _corrupt_jpeg(tmp_path, photo)
    elif kind == "text":
        bad = tmp_path / "notes.jpg"
        bad.write_text("this is not an image\n")
    else:
        bad = _huge_png(tmp_path)
    with pytest.raises(AppError) as error:
        predict(client, bad)
    message = str(error.value)
    assert "can't be analysed" in message, message
    assert expected in message, message
    assert bad.name in message, message
    assert "Traceback" not in message, message
    assert predict(client, photo)["hands"], "the next request after a bad upload failed"


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_grayscale_and_transparent_photos_work(client: Client, photo: Path, tmp_path: Path, mode: str):
    path = tmp_path / f"photo-{mode}.png"
    Image.open(photo).convert(mode).save(path)
    result = predict(client, path)
    assert isinstance(result["hands"], list), result
    assert result["hands"], result


def test_no_hands_is_an_empty_answer_not_an_error(client: Client, tmp_path: Path):
    path = tmp_path / "wall.png"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(path)
    annotated, status, table, overlay, gallery, eigen, result = client.predict(
        handle_file(str(path)), 0.5, 0.5, False, api_name="/analyse"
    )
    assert result["hands"] == []
    assert gallery == []
    assert overlay is None
    assert status.startswith("**0 hands**")


# Upload a model folder with the plain huggingface_hub client; print the commit. (HF_* come from the env.)
UPLOAD = """
import sys
from huggingface_hub import HfApi
folder, repo, revision = sys.argv[1:]
api = HfApi()
api.create_repo(repo, exist_ok=True)
if revision != "main":
    api.create_branch(repo, branch=revision, exist_ok=True)
info = api.upload_folder(repo_id=repo, folder_path=folder, revision=revision, ignore_patterns=["checkpoints/*"])
print(info.oid)
"""


def test_page_names_the_hub_models_and_revisions_it_runs(
    trained_detector: Path, trained_classifier: Path, photo: Path, tmp_path: Path
):
    """Models pulled from a Hub (the test Hub on 127.0.0.1) by id@revision: the page says which commit runs."""
    with HubServer(tmp_path / "hub") as hub:
        env = hub.client_env(tmp_path / "hf-home")
        shas = {}
        for kind, folder, repo, revision in (
            ("detector", trained_detector, "hybrid-org/hand-detector", "v1"),
            ("classifier", trained_classifier, "hybrid-org/gesture-classifier", "main"),
        ):
            done = subprocess.run(
                [sys.executable, "-c", UPLOAD, str(folder), repo, revision],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stderr
            shas[kind] = done.stdout.strip().splitlines()[-1]
        env["HF_HUB_OFFLINE"] = "0"
        with running_app(
            "hybrid-org/hand-detector@v1", "hybrid-org/gesture-classifier", tmp_path / "app.log", env=env
        ) as url:
            config = json.loads(urllib.request.urlopen(url + "config", timeout=30).read())
            texts = [c.get("props", {}).get("value") for c in config["components"]]
            shown = next(t for t in texts if isinstance(t, str) and "Models running" in t)
            assert f"`hybrid-org/hand-detector@v1` (v1, commit {shas['detector'][:10]})" in shown, shown
            assert f"`hybrid-org/gesture-classifier` (commit {shas['classifier'][:10]})" in shown, shown
            result = Client(url, verbose=False).predict(handle_file(str(photo)), api_name="/predict")
            assert result["hands"], result  # the pulled models run


def test_server_limits_malloc_arenas_unless_told_otherwise(monkeypatch):
    """2 glibc arenas instead of one per allocating thread: bench/load_test.py measured the peak RSS ~140 MB lower."""
    import app

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert app.limit_malloc_arenas() is False  # the variable wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert app.limit_malloc_arenas() is True  # glibc took M_ARENA_MAX


def test_a_space_pin_is_a_hub_id_even_where_a_folder_bears_its_name(tmp_path, monkeypatch):
    """A Space pinned to org/c@<sha>, started from a folder that holds a directory `org/c@<sha>`: that directory
    is never loaded instead of the Hub repo (offline and not in the Hub cache: the pin cannot be resolved)."""
    import app

    sha = "a" * 40
    monkeypatch.delenv("HYBRID_CLASSIFIER", raising=False)
    monkeypatch.setattr("hybrid.hub.project_root", lambda: tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    (tmp_path / "hybrid_space.json").write_text(json.dumps({"classifier": f"org/c@{sha}", "detector": "org/d"}))
    (tmp_path / "org" / f"c@{sha}").mkdir(parents=True)  # someone's folder, named like the pin
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"org/c@{sha}: no such local folder, and org/c@{sha} is not in"):
        app.resolve_model("classifier")
