"""hybrid.tracking.ByteTracker gives Ultralytics' BYTETracker rows, frame for frame, on real hand trajectories
(consecutive Hands Dataset captures) made hard: jitter, missed frames, low-score boxes, spurious boxes, a second
hand, a hand that leaves and comes back."""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest

from hybrid.data import read_dataset
from hybrid.tracking import ByteTracker
from hybrid.video import tracker_settings


class Boxes:
    """The results object Ultralytics' tracker reads (xyxy, xywh, conf, cls; boolean indexing)."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray) -> None:
        self.xyxy, self.conf = xyxy.reshape(-1, 4).astype(np.float32), conf.reshape(-1).astype(np.float32)
        self.cls = np.zeros_like(self.conf)

    @property
    def xywh(self) -> np.ndarray:
        x0, y0, x1, y1 = self.xyxy.T
        return np.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index) -> "Boxes":
        return Boxes(self.xyxy[index], self.conf[index])


@pytest.fixture(scope="module")
def trajectories(data_root) -> list[np.ndarray]:
    """Runs of >= 8 consecutive single-hand captures of one recording: (frames, 4) true boxes each."""
    by_recording = defaultdict(dict)
    for record in read_dataset("hands"):
        match = re.fullmatch(r"(\d+)_pic(\d+)", record.image.stem)
        if match and len(record.boxes) == 1:
            by_recording[match[1]][int(match[2])] = record.boxes[0].xyxy
    runs = []
    for frames in by_recording.values():
        run = []
        for number in sorted(frames):
            if run and number != run[-1][0] + 1:
                runs.append(run) if len(run) >= 8 else None
                run = []
            run.append((number, frames[number]))
        runs.append(run) if len(run) >= 8 else None
    assert len(runs) >= 4, "too few consecutive captures in the Hands Dataset"
    return [np.array([box for _, box in run], np.float64) for run in runs]


def hard_frames(trajectory: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> list[tuple]:
    """Per frame (boxes, scores): the true box jittered, sometimes missed or low-scored; a second hand for a
    while; spurious boxes."""
    frames = []
    for i, box in enumerate(trajectory):
        boxes, scores = [], []
        if rng.random() > 0.15 and not 8 <= i <= 10:  # missed now and then, and gone for 3 frames
            boxes.append(box + rng.normal(0, 6, 4))
            scores.append(rng.choice([rng.uniform(0.5, 0.95), rng.uniform(0.05, 0.3)], p=[0.8, 0.2]))
        if 3 <= i < 3 + len(other):
            boxes.append(other[i - 3] + rng.normal(0, 4, 4))
            scores.append(rng.uniform(0.3, 0.9))
        for _ in range(rng.poisson(0.7)):
            x, y = rng.uniform(0, 700, 2)
            boxes.append([x, y, x + rng.uniform(-5, 120), y + rng.uniform(20, 120)])  # some with no width
            scores.append(rng.uniform(0.05, 0.6))
        frames.append((np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32)))
    return frames


@pytest.mark.parametrize("threshold, fps", [(0.25, 10.0), (0.5, 30.0)])
def test_rows_equal_ultralytics_bytetracker(trajectories, threshold, fps):
    from ultralytics.trackers.byte_tracker import BYTETracker

    rng = np.random.default_rng(0)
    settings = tracker_settings(threshold, fps)
    compared = rows = 0
    for k in range(30):  # each run several times, with other noise and another second hand
        trajectory = trajectories[k % len(trajectories)]
        other = trajectories[(k + 1 + k // len(trajectories)) % len(trajectories)][: len(trajectory) // 2]
        ours = ByteTracker(**settings)
        theirs = BYTETracker(SimpleNamespace(**settings, fuse_score=True))
        for boxes, scores in hard_frames(trajectory, other, rng):
            expected = theirs.update(Boxes(boxes, scores))
            got = ours.update(boxes, scores)
            np.testing.assert_array_equal(got.reshape(-1, 8), np.asarray(expected).reshape(-1, 8))
            assert {t.track_id for t in ours.lost} == {t.track_id for t in theirs.lost_stracks}
            compared, rows = compared + 1, rows + len(got)
    assert compared > 300 and rows > 200


def test_tracking_imports_neither_ultralytics_nor_torch():
    import subprocess

    code = "import sys, hybrid.video; print('torch' in sys.modules, 'ultralytics' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == [
        "False",
        "False",
    ]
