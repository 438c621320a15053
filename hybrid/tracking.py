"""ByteTrack (Zhang et al., ECCV 2022) as Ultralytics' `BYTETracker` runs it for axis-aligned boxes, in numpy.

Ultralytics' tracker module cannot be imported without Ultralytics' package, which loads torch and torchvision
(~650 MB): the app serves video without them (hybrid.serving), so the algorithm is here, step for step as
Ultralytics 8.x writes it (two association stages, a constant-velocity Kalman filter on centre, aspect ratio
and height, lapjv assignment with `lap`), without what we never use (oriented boxes, camera-motion compensation,
appearance features). tests/test_tracking.py checks that it gives Ultralytics' rows on real detections.

Example:
    >>> tracker = ByteTracker(track_high_thresh=0.25, track_low_thresh=0.1, new_track_thresh=0.25, track_buffer=15)
    >>> rows = tracker.update(boxes, scores)   # per frame; rows: x0, y0, x1, y1, track id, score, class, index
"""

from __future__ import annotations

from enum import IntEnum
from typing import Optional, Sequence

import numpy as np


class State(IntEnum):
    NEW, TRACKED, LOST, REMOVED = range(4)


class KalmanXYAH:
    """The constant-velocity Kalman filter of Ultralytics' KalmanFilterXYAH: state (x, y, a, h) + velocities,
    noise proportional to the box height."""

    POSITION, VELOCITY = 1.0 / 20, 1.0 / 160

    def __init__(self) -> None:
        self.motion = np.eye(8)
        self.motion[range(4), range(4, 8)] = 1.0
        self.project_mat = np.eye(4, 8)

    def initiate(self, xyah: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xyah = np.asarray(xyah, dtype=np.float64)
        h, p, v = xyah[3], self.POSITION, self.VELOCITY
        std = [2 * p * h, 2 * p * h, 0.01, 2 * p * h, 10 * v * h, 10 * v * h, 1e-05, 10 * v * h]
        return np.r_[xyah, np.zeros_like(xyah)], np.diag(np.square(std))

    def multi_predict(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, p, v = mean[:, 3], self.POSITION, self.VELOCITY
        std = [p * h, p * h, 0.01 * np.ones_like(h), p * h, v * h, v * h, 1e-05 * np.ones_like(h), v * h]
        motion_cov = np.zeros((len(mean), 8, 8))
        motion_cov[:, range(8), range(8)] = np.square(np.array(std)).T
        left = np.dot(self.motion, covariance).transpose((1, 0, 2))
        return np.dot(mean, self.motion.T), np.dot(left, self.motion.T) + motion_cov

    def update(self, mean: np.ndarray, covariance: np.ndarray, xyah: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.POSITION
        innovation_cov = np.diag(np.square([p * mean[3], p * mean[3], 0.1, p * mean[3]]))
        projected_mean, projected_cov = mean[:4].copy(), covariance[:4, :4] + innovation_cov
        gain = np.linalg.solve(projected_cov, covariance[:, :4].T).T
        new_mean = mean + np.dot(xyah - projected_mean, gain.T)
        return new_mean, covariance - np.linalg.multi_dot((gain, projected_cov, gain.T))


class Track:
    """One detection, then (activated) one tracked object."""

    def __init__(self, xywh: np.ndarray, score: float, index: int) -> None:
        tlwh = np.array([xywh[0] - xywh[2] / 2, xywh[1] - xywh[3] / 2, xywh[2], xywh[3]])
        self._tlwh = tlwh.astype(np.float32)
        self.score, self.index = score, index
        self.mean: Optional[np.ndarray] = None
        self.covariance: Optional[np.ndarray] = None
        self.state, self.is_activated, self.track_id = State.NEW, False, 0
        self.frame_id = self.start_frame = self.tracklet_len = 0

    @property
    def tlwh(self) -> np.ndarray:
        if self.mean is None:
            return self._tlwh.copy()
        box = self.mean[:4].copy()
        box[2] *= box[3]
        box[:2] -= box[2:] / 2
        return box

    @property
    def xyxy(self) -> np.ndarray:
        box = self.tlwh
        box[2:] += box[:2]
        return box

    @property
    def xyah(self) -> np.ndarray:
        box = self.tlwh.copy()
        box[:2] += box[2:] / 2
        box[2] /= box[3]
        return box

    def activate(self, kalman: KalmanXYAH, frame_id: int, track_id: int) -> None:
        self.track_id = track_id
        self.mean, self.covariance = kalman.initiate(self.xyah)
        self.tracklet_len, self.state = 0, State.TRACKED
        self.is_activated = frame_id == 1
        self.frame_id = self.start_frame = frame_id

    def update(self, kalman: KalmanXYAH, detection: "Track", frame_id: int, refound: bool = False) -> None:
        self.mean, self.covariance = kalman.update(self.mean, self.covariance, detection.xyah)
        self.tracklet_len = 0 if refound else self.tracklet_len + 1
        self.state, self.is_activated, self.frame_id = State.TRACKED, True, frame_id
        self.score, self.index = detection.score, detection.index


class ByteTracker:
    """Feed each frame's boxes (x0, y0, x1, y1) and scores to `update`; it returns the rows of the activated
    tracks: x0, y0, x1, y1, track id, score, class (0), index of the detection in this frame's input."""

    def __init__(
        self,
        track_high_thresh: float = 0.25,
        track_low_thresh: float = 0.1,
        new_track_thresh: float = 0.25,
        track_buffer: int = 30,
        match_thresh: float = 0.8,
        fuse_score: bool = True,
    ) -> None:
        self.high, self.low, self.new = track_high_thresh, track_low_thresh, new_track_thresh
        self.max_frames_lost, self.match_thresh, self.fuse_score = track_buffer, match_thresh, fuse_score
        self.tracked: list[Track] = []
        self.lost: list[Track] = []
        self.removed: list[Track] = []
        self.frame_id, self.last_id = 0, 0
        self.kalman = KalmanXYAH()

    def update(self, boxes: Sequence, scores: Sequence) -> np.ndarray:
        self.frame_id += 1
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        xywh = np.stack(
            [(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2, *(boxes[:, 2:] - boxes[:, :2]).T], 1
        )
        valid = (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
        high = np.flatnonzero(valid & (scores >= self.high))
        low = np.flatnonzero(valid & (scores > self.low) & (scores < self.high))
        detections = [Track(xywh[i].astype(np.float64), scores[i], int(i)) for i in high]
        second = [Track(xywh[i].astype(np.float64), scores[i], int(i)) for i in low]
        activated, refound, lost, removed = [], [], [], []
        unconfirmed = [t for t in self.tracked if not t.is_activated]
        pool = _joint([t for t in self.tracked if t.is_activated], self.lost)
        self._predict(pool)

        # 1: confident detections against tracked and lost tracks
        matches, u_track, u_detection = _assign(self._distances(pool, detections), self.match_thresh)
        for t, d in matches:
            self._match(pool[t], detections[d], activated, refound)
        # 2: the tracks still unmatched against the low-score detections
        remaining = [pool[i] for i in u_track if pool[i].state == State.TRACKED]
        if remaining and second:
            matches, u_remaining, _ = _assign(_iou_distance(remaining, second), 0.5)
            for t, d in matches:
                self._match(remaining[t], second[d], activated, refound)
        else:
            u_remaining = range(len(remaining))
        for i in u_remaining:
            remaining[i].state = State.LOST
            lost.append(remaining[i])
        # 3: tracks born last frame against the confident detections left; the rest start new tracks
        detections = [detections[i] for i in u_detection]
        u_detection = range(len(detections))
        if unconfirmed:
            matches, u_unconfirmed, u_detection = _assign(self._distances(unconfirmed, detections), 0.7)
            for t, d in matches:
                unconfirmed[t].update(self.kalman, detections[d], self.frame_id)
                activated.append(unconfirmed[t])
            for i in u_unconfirmed:
                unconfirmed[i].state = State.REMOVED
                removed.append(unconfirmed[i])
        for i in u_detection:
            if detections[i].score >= self.new:
                self.last_id += 1
                detections[i].activate(self.kalman, self.frame_id, self.last_id)
                activated.append(detections[i])
        for track in self.lost:
            if self.frame_id - track.frame_id > self.max_frames_lost:
                track.state = State.REMOVED
                removed.append(track)
        self._merge(activated, refound, lost, removed)
        rows = [[*t.xyxy.tolist(), t.track_id, t.score, 0.0, t.index] for t in self.tracked if t.is_activated]
        return np.asarray(rows, dtype=np.float32)

    def _predict(self, tracks: list[Track]) -> None:
        if not tracks:
            return
        means = np.asarray([t.mean for t in tracks])
        means[[t.state != State.TRACKED for t in tracks], 7] = 0
        means, covariances = self.kalman.multi_predict(means, np.asarray([t.covariance for t in tracks]))
        for track, mean, covariance in zip(tracks, means, covariances):
            track.mean, track.covariance = mean, covariance

    def _distances(self, tracks: list[Track], detections: list[Track]) -> np.ndarray:
        distances = _iou_distance(tracks, detections)
        if self.fuse_score and distances.size:
            distances = 1 - (1 - distances) * np.array([d.score for d in detections])[None]
        return distances

    def _match(self, track: Track, detection: Track, activated: list, refound: list) -> None:
        refind = track.state != State.TRACKED
        track.update(self.kalman, detection, self.frame_id, refound=refind)
        (refound if refind else activated).append(track)

    def _merge(self, activated: list, refound: list, lost: list, removed: list) -> None:
        tracked = _joint(_joint([t for t in self.tracked if t.state == State.TRACKED], activated), refound)
        still_lost = _without(_without(self.lost, tracked) + lost, self.removed)
        self.tracked, self.lost = _without_duplicates(tracked, still_lost)
        self.removed = (self.removed + removed)[-1000:]


def _assign(cost: np.ndarray, thresh: float) -> tuple[list, list, list]:
    """(matches [(row, col)], unmatched rows, unmatched cols) of lapjv with a cost limit (Ultralytics' way)."""
    import lap

    if cost.size == 0:
        return [], list(range(cost.shape[0])), list(range(cost.shape[1]))
    _, x, y = lap.lapjv(cost, extend_cost=True, cost_limit=thresh)
    return [(i, j) for i, j in enumerate(x) if j >= 0], list(np.flatnonzero(x < 0)), list(np.flatnonzero(y < 0))


def _iou_distance(a: list[Track], b: list[Track]) -> np.ndarray:
    """1 - IoU of every track in `a` with every one in `b`: Ultralytics' bbox_ioa(iou=True) in float32 with its eps
    (not hybrid.evaluate.iou_matrix, float64: the assignments must come out as Ultralytics' do)."""
    if not a or not b:
        return np.ones((len(a), len(b)), dtype=np.float32)
    box1 = np.ascontiguousarray([t.xyxy for t in a], dtype=np.float32)
    box2 = np.ascontiguousarray([t.xyxy for t in b], dtype=np.float32)
    width = (np.minimum(box1[:, None, 2], box2[:, 2]) - np.maximum(box1[:, None, 0], box2[:, 0])).clip(0)
    height = (np.minimum(box1[:, None, 3], box2[:, 3]) - np.maximum(box1[:, None, 1], box2[:, 1])).clip(0)
    inter = width * height
    area1 = (box1[:, 2] - box1[:, 0]) * (box1[:, 3] - box1[:, 1])
    area2 = (box2[:, 2] - box2[:, 0]) * (box2[:, 3] - box2[:, 1])
    return 1 - inter / (area2 + area1[:, None] - inter + 1e-7)


def _joint(a: list[Track], b: list[Track]) -> list[Track]:
    ids = {t.track_id for t in a}
    return a + [t for t in b if t.track_id not in ids]


def _without(a: list[Track], b: list[Track]) -> list[Track]:
    ids = {t.track_id for t in b}
    return [t for t in a if t.track_id not in ids]


def _without_duplicates(a: list[Track], b: list[Track]) -> tuple[list[Track], list[Track]]:
    """A tracked and a lost track on the same object (1 - IoU < 0.15): the younger one goes."""
    drop_a, drop_b = set(), set()
    for p, q in zip(*np.where(_iou_distance(a, b) < 0.15)):
        if a[p].frame_id - a[p].start_frame > b[q].frame_id - b[q].start_frame:
            drop_b.add(q)
        else:
            drop_a.add(p)
    return [t for i, t in enumerate(a) if i not in drop_a], [t for i, t in enumerate(b) if i not in drop_b]
