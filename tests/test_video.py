"""Tracked hands in video (hybrid.video) and `hybrid predict clip.mp4`, on a real clip.

The clip: 22 consecutive captures (`2_pic00199` .. `2_pic00220`) of one Hands Dataset recording, one hand
that stays in view (4 fingers, then 3 in the last 3 frames), written at 10 fps by OpenCV here; the VOC boxes
are its ground truth. The fixture detector is one epoch old (its boxes are noise), so the tracking tests feed
ByteTrack the true boxes through `pipe.detect`; crops and classification are the real pipeline's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hybrid.data.labels import canonical_label
from hybrid.detector import Detection
from hybrid.pipeline import HybridPipeline
from hybrid.video import WINDOW, HandTracker, VideoError, probe_video, read_video, track_video

REPO = Path(__file__).resolve().parent.parent
RECORDING, FIRST, LAST = "2", 199, 220  # consecutive captures of one recording
FPS = 10.0


@pytest.fixture(scope="module")
def clip(data_root, tmp_path_factory) -> tuple[Path, list[tuple[tuple[float, ...], str]]]:
    """(clip.mp4, [(true box, true label) per frame])."""
    images = data_root / "subhih-handsdataset" / "images"
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (800, 600))
    truth = []
    for number in range(FIRST, LAST + 1):
        xml = next(images.glob(f"*/{RECORDING}_pic{number:05d}.xml"))
        (hand,) = ET.parse(xml).getroot().findall("object")
        box = tuple(float(hand.findtext(f"bndbox/{tag}")) for tag in ("xmin", "ymin", "xmax", "ymax"))
        truth.append((box, canonical_label(hand.findtext("name"))))
        writer.write(cv2.imread(str(xml.with_suffix(".jpg"))))
    writer.release()
    assert len(truth) == LAST - FIRST + 1
    return path, truth


@pytest.fixture(scope="module")
def pipe(trained_detector, trained_classifier, model_cache) -> HybridPipeline:
    return HybridPipeline.from_pretrained(
        detector=str(trained_detector), classifier=str(trained_classifier), onnx_cache_dir=model_cache / "onnx"
    )


def with_true_boxes(pipe: HybridPipeline, truth: list, monkeypatch, absent: range = range(0)) -> None:
    """pipe.detect returns frame i's true box (score 0.9), or nothing for the frames in `absent`."""
    frames = iter(range(10**6))

    def detect(images, threshold=None):
        index = next(frames)
        return [[] if index in absent else [Detection(truth[index][0], 0.9, "hand")] for _ in images]

    monkeypatch.setattr(pipe, "detect", detect)


def frames(pipe: HybridPipeline, clip_path: Path, **kwargs) -> list:
    tracker = HandTracker(pipe, fps=FPS, **kwargs)
    return [tracker(frame, timestamp) for timestamp, frame in read_video(clip_path)]


def test_a_hand_that_stays_keeps_its_id_in_every_frame(pipe, clip, monkeypatch):
    path, truth = clip
    with_true_boxes(pipe, truth, monkeypatch)
    results = frames(pipe, path)
    assert [r.index for r in results] == list(range(len(truth)))
    assert [len(r.hands) for r in results] == [1] * len(truth)
    assert {r.hands[0].track_id for r in results} == {1}
    assert results[3].timestamp == pytest.approx(3 / FPS, abs=0.01)
    assert all(r.hands[0].raw_label in [*pipe.classifier.label_names, "unknown"] for r in results)


def test_a_hand_that_leaves_and_comes_back_gets_a_new_id_and_empty_frames_are_fine(pipe, clip, monkeypatch):
    path, truth = clip
    gone = range(6, 14)  # 0.8 s without the hand: longer than a lost track lives (0.5 s)
    with_true_boxes(pipe, truth, monkeypatch, absent=gone)
    results = frames(pipe, path)
    assert len(results) == len(truth)
    assert all(not results[i].hands for i in gone)
    before = {h.track_id for r in results[:6] for h in r.hands}
    after = {h.track_id for r in results[15:] for h in r.hands}  # ByteTrack confirms a new track on its 2nd frame
    assert len(before) == 1 and len(after) == 1 and before != after


@pytest.mark.parametrize("window", [WINDOW, 1])
def test_smoothing_removes_a_one_frame_flip(pipe, clip, monkeypatch, window):
    """The classifier (real probabilities, leaning to the true label) flips to another gesture in one frame:
    the smoothed label stays; with smoothing off (window=1) the flip shows."""
    path, truth = clip
    with_true_boxes(pipe, truth, monkeypatch)
    names = list(pipe.classifier.label_names)
    flip, calls = 8, iter(range(10**6))
    real = pipe.score

    def score(crops):
        (probabilities, extra), index = real(crops), next(calls)
        wanted = names.index("2") if index == flip else names.index(truth[index][1])
        leaning = np.eye(len(names), dtype=np.float32)[wanted]
        return (0.5 * probabilities + 0.5 * leaning if index != flip else leaning[None]), extra

    monkeypatch.setattr(pipe, "score", score)
    monkeypatch.setattr(pipe, "min_confidence", 0.0)
    hands = [r.hands[0] for r in frames(pipe, path, window=window)]
    labels = [hand.label for hand in hands]
    assert labels[:flip] == ["4"] * flip and hands[flip].raw_label == "2"
    if window == 1:
        assert labels[flip] == "2"  # the flip reaches the output when nothing smooths it
    else:
        assert labels[: LAST - FIRST - 2] == ["4"] * (LAST - FIRST - 2)  # the frames before the real change


def test_annotated_video_has_every_frame_and_a_stopped_run_writes_nothing(pipe, clip, tmp_path):
    path, truth = clip
    output = tmp_path / "out" / "annotated.mp4"
    results = list(track_video(pipe, path, output=output))
    assert len(results) == len(truth)
    written = list(read_video(output))
    assert len(written) == len(truth) and written[0][1].shape == (600, 800, 3)
    stopped = tmp_path / "stopped.mp4"
    run = track_video(pipe, path, output=stopped)
    next(run)
    run.close()  # the caller gives up after one frame: no partial file
    assert not stopped.exists() and list(tmp_path.glob(".stopped*")) == []


def hybrid(*args: str, env: dict) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "hybrid.cli", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_cli_writes_the_annotated_clip_and_one_json_line_per_frame(
    clip, trained_detector, trained_classifier, tmp_path, model_cache
):
    path, truth = clip
    env = {**os.environ, "HYBRID_CACHE": str(model_cache), "OMP_NUM_THREADS": "1"}
    models = ("--detector", str(trained_detector), "--classifier", str(trained_classifier))
    done = hybrid("predict", str(path), "--save-dir", str(tmp_path / "out"), *models, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = [json.loads(line) for line in (tmp_path / "out" / "clip.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(len(truth)))
    assert lines[1]["timestamp"] == pytest.approx(1 / FPS, abs=0.01)
    assert all({"track_id", "box", "label", "probability"} <= set(h) for line in lines for h in line["hands"])
    assert len(list(read_video(tmp_path / "out" / "clip.mp4"))) == len(truth)


@pytest.mark.parametrize("content", [b"not a video at all\n", "truncated"])
def test_a_corrupt_video_gets_one_error_line_and_no_output(
    clip, trained_detector, trained_classifier, tmp_path, content, model_cache
):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(clip[0].read_bytes()[:3000] if content == "truncated" else content)
    with pytest.raises(VideoError, match="bad.mp4"):
        next(read_video(bad))
    env = {**os.environ, "HYBRID_CACHE": str(model_cache), "OMP_NUM_THREADS": "1"}
    models = ("--detector", str(trained_detector), "--classifier", str(trained_classifier))
    done = hybrid("predict", str(bad), "--save-dir", str(tmp_path / "out"), *models, env=env)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"hybrid: error: {bad}: not a video")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_read_video_frames_are_rgb(clip, data_root):
    path, _ = clip
    _, first = next(read_video(path))
    photo = np.asarray(Image.open(next((data_root / "subhih-handsdataset" / "images").glob("*/2_pic00199.jpg"))))
    assert np.abs(first.astype(int) - photo.astype(int)).mean() < 12  # mp4v is lossy; BGR order would be far off


# --- a video is a file: budgets and containers (hybrid.limits) ----------------------------------------------


@pytest.mark.parametrize("listed", ["absolute", "relative", "file url"])
def test_playlists_and_concat_lists_are_refused_before_ffmpeg_opens_what_they_list(clip, tmp_path, listed):
    """An HLS playlist or an ffconcat list naming a real clip: FFmpeg (with OpenCV's defaults) opens the clip it
    lists. Both are refused as 'not a video file', as is the same list renamed .mp4."""
    from tests.hostile import playlists

    real = str(clip[0].resolve())
    target = {"absolute": real, "relative": "../" * 12 + real.lstrip("/"), "file url": f"file://{real}"}[listed]
    for name, data in playlists(target).items():
        for path in (tmp_path / name, tmp_path / f"{name}.mp4"):
            path.write_bytes(data)
            with pytest.raises(VideoError, match="not a video file"):
                probe_video(path)
            with pytest.raises(VideoError, match="not a video file"):
                next(read_video(path))


def test_ffmpeg_itself_opens_only_real_containers_of_the_one_file(clip, tmp_path):
    """Behind the first-bytes check, FFmpeg is told the same: with CAPTURE_OPTIONS a playlist does not open
    (without them it does), a real clip does."""
    from hybrid.video import CAPTURE_OPTIONS
    from tests.hostile import playlists

    playlist = tmp_path / "playlist.m3u8"
    playlist.write_bytes(playlists(str(clip[0].resolve()))["playlist.m3u8"])
    saved = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
    try:
        opened = {}
        for options in ("", CAPTURE_OPTIONS):
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = options
            for path in (playlist, clip[0]):
                capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
                opened[options, path.suffix] = capture.isOpened()
                capture.release()
    finally:
        os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS") if saved is None else os.environ.update(
            OPENCV_FFMPEG_CAPTURE_OPTIONS=saved
        )
    assert opened == {
        ("", ".m3u8"): True,
        ("", ".mp4"): True,
        (CAPTURE_OPTIONS, ".m3u8"): False,
        (CAPTURE_OPTIONS, ".mp4"): True,
    }


def test_frames_over_4k_and_clips_over_the_pixel_budget_are_refused_from_the_header(tmp_path, monkeypatch):
    from hybrid import video
    from tests.hostile import mp4

    eight_k = tmp_path / "eight-k.mp4"
    eight_k.write_bytes(mp4((7680, 4320), 2))
    with pytest.raises(VideoError, match=r"7680x4320 .* 8\.3 megapixels per frame \(4K\)"):
        probe_video(eight_k)
    with pytest.raises(VideoError, match="4K"):
        next(read_video(eight_k))
    small = tmp_path / "small.mp4"
    small.write_bytes(mp4((320, 240), 12))
    monkeypatch.setattr(video, "MAX_CLIP_PIXELS", 320 * 240 * 10)  # ten frames' worth
    with pytest.raises(VideoError, match="at most 10 frames of 320x240"):
        probe_video(small)


def test_a_clip_that_misstates_its_length_stops_at_the_budget(tmp_path, monkeypatch):
    """Counted while decoding too: a header that states no frame count (or a wrong one) does not lift the budget."""
    from hybrid import video
    from tests.hostile import mp4

    small = tmp_path / "small.mp4"
    small.write_bytes(mp4((320, 240), 12))
    monkeypatch.setattr(video, "_info", lambda capture: video.VideoInfo(10.0, 320, 240, 0))
    monkeypatch.setattr(video, "MAX_CLIP_PIXELS", 320 * 240 * 10)
    with pytest.raises(VideoError, match="at most 10 frames"):
        list(read_video(small))


def test_large_frames_are_shrunk_as_they_are_decoded(tmp_path):
    from hybrid.limits import VIDEO_MAX_SIDE
    from tests.hostile import mp4

    path = tmp_path / "uhd.mp4"
    path.write_bytes(mp4((3840, 2160), 2))
    assert probe_video(path).width == 3840  # the header's size
    sizes = {frame.shape for _, frame in read_video(path)}
    assert sizes == {(VIDEO_MAX_SIDE * 9 // 16, VIDEO_MAX_SIDE, 3)}
    assert {frame.shape for _, frame in read_video(path, max_side=None)} == {(2160, 3840, 3)}


def test_a_clip_stating_millions_of_samples_is_refused_before_ffmpeg_indexes_them(tmp_path):
    """Probe of issue 29: a 1.3 KB MOV whose stsz states 60 M samples made FFmpeg build a 2.2 GB index inside
    OpenCV's open, before any budget saw the clip. Its sample tables are read first now (hybrid.limits
    MAX_TRACK_SAMPLES); the same file stating 10 samples is a clip (it holds one real frame)."""
    from tests.hostile import mov_stating

    bomb = tmp_path / "bomb.mov"
    bomb.write_bytes(mov_stating(60_000_000))
    with pytest.raises(VideoError, match="a video track of 60,000,000 samples"):
        probe_video(bomb)
    with pytest.raises(VideoError, match="60,000,000 samples"):
        next(read_video(bomb))
    fine = tmp_path / "fine.mov"
    fine.write_bytes(mov_stating(10))
    assert probe_video(fine).frames == 10
