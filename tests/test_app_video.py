"""The app's Video tab over HTTP: app.py (the shared server from tests/fixtures_app.py) gets the real clip of
tests/test_video.py (22 consecutive Hands Dataset captures) and answers with an annotated clip a browser plays
(VP8 WebM, every frame) and one row per track; a clip it cannot read, or one that is too long, gets one clear
message and the server keeps serving."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from hybrid.video import read_video
from tests import test_video

clip = test_video.clip  # the real clip: 22 consecutive Hands Dataset captures, as .mp4
LOW = 0.01  # detector threshold for the tiny test detector, which is barely trained
COLUMNS = ["track", "frames seen", "gesture", "share of frames"]
WEBM = b"\x1a\x45\xdf\xa3"  # the EBML magic every WebM file starts with


@pytest.fixture(scope="module")
def client(app_url: str) -> Client:
    return Client(app_url, verbose=False, download_files=False)


def track(client: Client, path: Path, threshold: float = LOW, confidence: float = 0.0):
    return client.predict(handle_file(str(path)), threshold, confidence, api_name="/track")


def test_uploaded_clip_comes_back_annotated_with_one_row_per_track(client: Client, clip, trained_classifier):
    path, truth = clip
    video, status, table = track(client, path)
    output = Path(video["path"])
    assert output.suffix == ".webm" and output.read_bytes()[:4] == WEBM, output
    frames = list(read_video(output))
    assert len(frames) == len(truth)  # frames out = frames in
    assert frames[0][1].shape == (600, 800, 3)
    original = next(read_video(path))[1]
    assert np.abs(frames[0][1].astype(int) - original.astype(int)).max() > 100  # boxes and labels were drawn
    assert table["headers"] == COLUMNS
    rows = table["data"]
    assert rows, f"no tracks: {status}"
    labels = set(_labels(trained_classifier))
    for track_id, seen, gesture, share in rows:
        assert int(track_id) >= 1 and 1 <= int(seen) <= len(truth), rows
        assert gesture in labels, rows
        assert re.fullmatch(r"\d+%", share) and 0 < int(share[:-1]) <= 100, rows
    assert len({row[0] for row in rows}) == len(rows)  # one row per track
    assert status.startswith(f"**{len(rows)} track") and f"in {len(truth)} frames" in status, status


def _labels(classifier: Path) -> list[str]:
    return json.loads((classifier / "config.json").read_text())["label_names"]


def _too_long(tmp_path: Path) -> Path:
    """A real, tiny video of 31 seconds (one frame a second): over the 30 s limit."""
    path = tmp_path / "long.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 1.0, (64, 48))
    for second in range(31):
        writer.write(np.full((48, 64, 3), 8 * second, np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize(
    "kind, expected",
    [("text", "not a readable video"), ("truncated", "not a readable video"), ("long", "too long (31 s")],
)
def test_a_bad_clip_gets_a_clear_message_and_the_server_keeps_serving(
    client: Client, clip, tmp_path: Path, kind: str, expected: str
):
    if kind == "text":
        bad = tmp_path / "notes.mp4"
        bad.write_text("this is not a video\n")
    elif kind == "truncated":
        bad = tmp_path / "cut.mp4"
        bad.write_bytes(clip[0].read_bytes()[:3000])
    else:
        bad = _too_long(tmp_path)
    with pytest.raises(AppError) as error:
        track(client, bad)
    message = str(error.value)
    assert expected in message, message
    assert bad.name in message, message
    assert "at most 30 s" in message, message  # the limits are stated
    assert "Traceback" not in message and str(tmp_path) not in message, message
    video, _, table = track(client, clip[0])
    assert len(list(read_video(video["path"]))) == len(clip[1]), "the next clip failed"
