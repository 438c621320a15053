"""Hands tracked across video frames, with steady gestures: detect -> track (ByteTrack, hybrid.tracking) -> crop ->
classify -> smooth each track's class probabilities over its recent frames.

Example:
    >>> from hybrid import HybridPipeline
    >>> from hybrid.video import track_video
    >>> pipe = HybridPipeline.from_pretrained(detector="models/detector", classifier="models/classifier")
    >>> for frame in track_video(pipe, "clip.mp4", output="out/clip.mp4"):
    ...     print(frame.index, [(h.track_id, h.label) for h in frame.hands])

Tracks: a hand keeps its `track_id` while it stays in view; one not seen for `lost_seconds` is forgotten, so a
hand that leaves and comes back later gets a new id. ByteTrack confirms a track that starts after the first
frame on its second frame. Gestures: the label of a track is the best class of the mean of its last `window`
probability vectors, so one odd frame does not flip it (`window=1` turns smoothing off).

Video files are read and written with OpenCV (FFmpeg): any frame rate, rotation metadata applied, audio ignored
(the written video has none); a file OpenCV cannot decode raises `VideoError`, and the annotated video is written
atomically (hybrid.files), so a failure leaves no partial file.

A video is a file, never a playlist: only MP4/MOV, Matroska/WebM and AVI files are opened (checked from their
first bytes, and FFmpeg is told to accept only those demuxers and only the `file` protocol), so an HLS playlist,
an ffconcat list or any other input that names further files or URLs is refused before FFmpeg reads a byte of
what it lists. Budgets (hybrid.limits): a frame over MAX_VIDEO_FRAME_PIXELS is refused from the header, a clip
whose frames x pixels exceed MAX_CLIP_PIXELS is refused (from the header, and again while decoding, for files
that misstate their length), and decoded frames are shrunk to VIDEO_MAX_SIDE before anything else sees them.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
from PIL import Image

from hybrid.files import atomic_file
from hybrid.fingers import readings
from hybrid.limits import (
    MAX_AUDIO_SAMPLES,
    MAX_CLIP_PIXELS,
    MAX_MP4_BOXES,
    MAX_TRACK_SAMPLES,
    MAX_VIDEO_FRAME_PIXELS,
    VIDEO_MAX_SIDE,
)
from hybrid.pipeline import UNKNOWN, Hand, HybridPipeline, draw_hands
from hybrid.tracking import ByteTracker

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own lines ("moov atom not found") stay quiet
import cv2  # noqa: E402  (after the log level, which OpenCV reads once)

logger = logging.getLogger(__name__)

WINDOW = 8  # frames whose class probabilities a track's gesture is the mean of
LOST_SECONDS = 0.5  # a track unseen this long is forgotten: the hand gets a new id when it comes back
MATCH_THRESHOLD = 0.95  # IoU cost; ByteTrack's 0.8 loses hands that move fast (10% overlap between frames)
LOW_SCORE_RATIO = 0.4  # ByteTrack's second stage: detections down to this fraction of the detector threshold
DEFAULT_FPS = 30.0  # when a file does not state its frame rate
FOURCC = "mp4v"  # MPEG-4 part 2 in .mp4: the encoder every OpenCV wheel ships
# What OpenCV passes to FFmpeg's avformat_open_input for every file we read: the local file itself and nothing
# else (no http, no concat/subfile/crypto protocols), read by a demuxer of a real container only (no hls, concat,
# image2 patterns or other demuxers that open further inputs).
DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi"
CAPTURE_OPTIONS = f"protocol_whitelist;file|format_whitelist;{DEMUXERS}"
CONTAINERS = "MP4, MOV, WebM, Matroska or AVI"
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")  # what an MP4/MOV file starts with


class VideoError(ValueError):
    """A video that cannot be read (missing, corrupt, not a video) or written."""


class VideoTooLarge(VideoError):
    """A video over a budget of hybrid.limits (frame pixels, frames x pixels): readable, but refused."""


@dataclass
class TrackedHand:
    """One hand in one frame: `track_id` stays the same while the hand stays in view; `label`/`probability`
    are the smoothed gesture (mean over the track's recent frames), `raw_label`/`raw_probability` this
    frame's own classification; `box` (x0, y0, x1, y1) pixels and `score` are the detector's."""

    track_id: int
    box: tuple[float, float, float, float]
    score: float
    label: str
    probability: float
    raw_label: str
    raw_probability: float
    fingers: Optional[dict] = None  # smoothed like the gesture, when the classifier learned them (pipeline.Hand)
    right_hand: Optional[float] = None

    def to_dict(self) -> dict:
        hand = Hand(
            self.box, self.score, self.label, self.probability, fingers=self.fingers, right_hand=self.right_hand
        )
        return {
            "track_id": self.track_id,
            **{k: v for k, v in hand.to_dict().items() if k != "top_k"},
            "raw_label": self.raw_label,
            "raw_probability": round(float(self.raw_probability), 4),
        }

    def as_hand(self) -> Hand:
        """A pipeline Hand labelled '#id gesture', for drawing."""
        label = f"#{self.track_id} {self.label}"
        return Hand(self.box, self.score, label, self.probability, fingers=self.fingers, right_hand=self.right_hand)


@dataclass
class FrameResult:
    """The tracked hands of frame `index` (from 0) at `timestamp` seconds."""

    index: int
    timestamp: float
    hands: list[TrackedHand] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-able: {"frame", "timestamp", "hands": [TrackedHand.to_dict()...]}."""
        return {"frame": self.index, "timestamp": round(self.timestamp, 4), "hands": [h.to_dict() for h in self.hands]}


# --- tracking -------------------------------------------------------------------------------------


def tracker_settings(detector_threshold: float, fps: float, lost_seconds: float = LOST_SECONDS) -> dict:
    """ByteTrack's settings scaled to our detector and frame rate: tracks start at the detector's threshold, lost
    tracks live `lost_seconds` (the rest: Ultralytics' cfg/trackers/bytetrack.yaml, ByteTracker's defaults)."""
    return dict(
        track_high_thresh=detector_threshold,
        new_track_thresh=detector_threshold,
        track_low_thresh=detector_threshold * LOW_SCORE_RATIO,
        track_buffer=max(1, round(fps * lost_seconds)),
        match_thresh=MATCH_THRESHOLD,
    )


class HandTracker:
    """Feed frames in order; each call returns that frame's tracked hands with smoothed gestures.

    `pipe` does the detection, crops and classification (its thresholds apply); `fps` the frame rate (for
    how long a lost track lives); `window` frames of probabilities per gesture (1 = no smoothing)."""

    def __init__(
        self, pipe: HybridPipeline, fps: float = DEFAULT_FPS, window: int = WINDOW, lost_seconds: float = LOST_SECONDS
    ) -> None:
        if int(window) < 1:
            raise ValueError(f"window must be at least 1 frame, got {window}")
        self.pipe = pipe
        self.window = int(window)
        self.tracker = ByteTracker(**tracker_settings(pipe.detector_threshold, fps, lost_seconds))
        self.names = list(pipe.classifier.label_names)
        self.history: dict[int, deque] = {}
        self.frames = 0

    def __call__(self, frame: Union[Image.Image, np.ndarray], timestamp: Optional[float] = None) -> FrameResult:
        """The tracked hands in `frame` (RGB PIL image or HxWx3 uint8 array), the next frame of the video."""
        image = frame if isinstance(frame, Image.Image) else Image.fromarray(frame)
        index, self.frames = self.frames, self.frames + 1
        timestamp = index / DEFAULT_FPS if timestamp is None else float(timestamp)
        detections = self.pipe.detect([image], threshold=self.tracker.low)[0]
        rows = self.tracker.update([d.box for d in detections], [d.score for d in detections])
        self._forget()
        if len(rows) == 0:
            return FrameResult(index, timestamp)
        found = [detections[int(row[7])] for row in rows]
        probabilities, extra = self.pipe.score(self.pipe.crops(image, [d.box for d in found]))
        scores = np.concatenate([probabilities, extra], axis=1).astype(np.float32)
        hands = [
            self._hand(int(row[4]), detection, row_scores) for row, detection, row_scores in zip(rows, found, scores)
        ]
        return FrameResult(index, timestamp, sorted(hands, key=lambda hand: hand.track_id))

    def _hand(self, track_id: int, detection, scores: np.ndarray) -> TrackedHand:
        """`scores`: this frame's class probabilities, then the extra outputs' (both smoothed over the window)."""
        history = self.history.setdefault(track_id, deque(maxlen=self.window))
        history.append(scores)
        classes = len(self.names)
        label, probability = self._label(scores[:classes])
        smooth = np.mean(history, axis=0)
        smooth_label, smooth_probability = self._label(smooth[:classes])
        fingers, right_hand = readings(self.pipe.classifier.outputs, smooth[classes:])
        box = tuple(map(float, detection.box))
        return TrackedHand(
            track_id,
            box,
            float(detection.score),
            smooth_label,
            smooth_probability,
            label,
            probability,
            fingers,
            right_hand,
        )

    def _label(self, probabilities: np.ndarray) -> tuple[str, float]:
        best = int(np.argmax(probabilities))
        probability = float(probabilities[best])
        return (self.names[best] if probability >= self.pipe.min_confidence else UNKNOWN), probability

    def _forget(self) -> None:
        """Drop the probability history of tracks ByteTrack no longer keeps (tracked or lost)."""
        alive = {track.track_id for track in (*self.tracker.tracked, *self.tracker.lost)}
        for track_id in set(self.history) - alive:
            del self.history[track_id]


# --- video files --------------------------------------------------------------------------------


@dataclass
class VideoInfo:
    """What a video file states: frame rate, frame size (after rotation), frame count (0 when unknown)."""

    fps: float
    width: int
    height: int
    frames: int


def container(path: Path) -> str:
    """'mp4' (MP4/MOV), 'matroska' (Matroska/WebM) or 'avi', from the file's first bytes; VideoError otherwise
    (a playlist, a text file, an image, anything that is not a regular file)."""
    try:
        if not path.is_file():  # also refuses FIFOs and devices: reading one would block or never end
            raise VideoError(f"{path}: no such video file")
        with open(path, "rb") as file:
            head = file.read(12)
    except OSError as error:
        raise VideoError(f"{path}: cannot be read ({error.strerror})") from None
    if head[4:8] in _MP4_BOXES:
        check_sample_tables(path)
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    raise VideoError(f"{path}: not a video file (expected {CONTAINERS})")


_MP4_PARENTS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"moof", b"traf", b"mvex", b"edts"}


def check_sample_tables(path: Path) -> None:
    """Refuse an MP4/MOV whose tracks state more samples than the budgets (hybrid.limits MAX_TRACK_SAMPLES,
    MAX_AUDIO_SAMPLES), read from its boxes before FFmpeg builds an index entry for each: a constant-size `stsz`
    states any count in 12 bytes, and so does a fragment's `trun`."""
    import struct

    boxes, fragments = 0, 0

    def check(track: dict) -> None:
        audio = track["handler"] == b"soun"
        limit = MAX_AUDIO_SAMPLES if audio else MAX_TRACK_SAMPLES
        if track["samples"] > limit:
            kind = "an audio" if audio else "a video"
            raise VideoError(f"{path}: {kind} track of {track['samples']:,} samples (at most {limit:,}); trim it first")

    def walk(file, start: int, end: int, depth: int, track: Optional[dict]) -> None:
        nonlocal boxes, fragments
        position = start
        while position + 8 <= end:
            boxes += 1
            if boxes > MAX_MP4_BOXES:
                raise VideoError(f"{path}: over {MAX_MP4_BOXES} MP4 boxes (not a video this app reads)")
            file.seek(position)
            size, kind = struct.unpack(">I4s", file.read(8))
            header = 8
            if size == 1:
                size, header = struct.unpack(">Q", file.read(8))[0], 16
            elif size == 0:
                size = end - position
            if size < header or position + size > end:
                return  # a cut or broken box: FFmpeg says what it makes of it
            body = position + header
            if kind == b"trak" and depth < 8:
                own = {"handler": b"", "samples": 0}
                walk(file, body, position + size, depth + 1, own)
                check(own)
            elif kind in _MP4_PARENTS and depth < 8:
                walk(file, body, position + size, depth + 1, track)
            elif kind == b"trun":
                file.seek(body + 4)
                fragments += struct.unpack(">I", file.read(4))[0]
            elif track is not None and kind == b"hdlr":
                file.seek(body + 8)
                track["handler"] = file.read(4)
            elif track is not None and kind in (b"stsz", b"stz2"):
                file.seek(body + 8)
                track["samples"] = max(track["samples"], struct.unpack(">I", file.read(4))[0])
            elif track is not None and kind == b"stts":  # entries of (count, delta), as many as the box holds
                file.seek(body + 4)
                entries = min(struct.unpack(">I", file.read(4))[0], max(size - header - 8, 0) // 8)
                table = file.read(8 * entries)
                if len(table) == 8 * entries:
                    track["samples"] = max(track["samples"], sum(struct.unpack(f">{2 * entries}I", table)[::2]))
            position += size

    try:
        with open(path, "rb") as file:
            walk(file, 0, os.fstat(file.fileno()).st_size, 0, None)
    except (OSError, struct.error) as error:
        raise VideoError(f"{path}: cannot be read ({error})") from None
    if fragments > MAX_TRACK_SAMPLES:
        raise VideoError(f"{path}: fragments of {fragments:,} samples (at most {MAX_TRACK_SAMPLES:,}); trim it first")


def _open(path: Path) -> "cv2.VideoCapture":
    container(path)
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # its WARN lines; the error below says it
    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = CAPTURE_OPTIONS  # read by OpenCV at every open
    try:
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not capture.isOpened():
        raise VideoError(f"{path}: not a video OpenCV can decode (corrupt, truncated or another kind of file)")
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # apply the rotation metadata of phone videos
    return capture


def _info(capture: "cv2.VideoCapture") -> VideoInfo:
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if fps and np.isfinite(fps) and 0 < fps <= 1000 else DEFAULT_FPS
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if int(capture.get(cv2.CAP_PROP_ORIENTATION_META)) % 180 == 90:
        width, height = height, width
    return VideoInfo(fps, width, height, max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))))


def _checked_info(capture: "cv2.VideoCapture", path: Path) -> VideoInfo:
    """The header's VideoInfo, refused when a frame or the whole clip is over its pixel budget."""
    info = _info(capture)
    pixels = info.width * info.height
    if pixels > MAX_VIDEO_FRAME_PIXELS:
        raise VideoTooLarge(
            f"{path}: frames of {info.width}x{info.height} pixels are over the limit of "
            f"{MAX_VIDEO_FRAME_PIXELS / 1e6:.1f} megapixels per frame (4K); resize the video first"
        )
    if info.frames * pixels > MAX_CLIP_PIXELS:
        raise VideoTooLarge(f"{path}: {clip_budget_message(info.width, info.height)}")
    return info


def clip_budget_message(width: int, height: int) -> str:
    frames = MAX_CLIP_PIXELS // max(width * height, 1)
    return f"too long for its frame size: at most {frames} frames of {width}x{height} pixels; trim or resize it"


def probe_video(path: Union[str, Path]) -> VideoInfo:
    """The frame rate, size and frame count of a video file; VideoError when it cannot be decoded or is over the
    budgets of hybrid.limits (frame pixels, frames x pixels)."""
    path = Path(path)
    capture = _open(path)
    try:
        return _checked_info(capture, path)
    finally:
        capture.release()


def shrunk(frame: np.ndarray, max_side: Optional[int]) -> np.ndarray:
    """`frame` scaled down (area averaging) so that its longer side is at most `max_side` (None: as it is)."""
    height, width = frame.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return frame
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def read_video(path: Union[str, Path], max_side: Optional[int] = VIDEO_MAX_SIDE) -> Iterator[tuple[float, np.ndarray]]:
    """(timestamp seconds, RGB HxWx3 uint8 frame) for every frame, rotation applied, shrunk to `max_side` (None:
    the stored size). VideoError when the file cannot be decoded, holds no frame, or is over the budgets."""
    path = Path(path)
    capture = _open(path)
    try:
        fps, index, decoded = _checked_info(capture, path).fps, 0, 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            decoded += bgr.shape[0] * bgr.shape[1]
            if decoded > MAX_CLIP_PIXELS:  # a file that misstates its length or size
                raise VideoTooLarge(f"{path}: {clip_budget_message(bgr.shape[1], bgr.shape[0])}")
            milliseconds = capture.get(cv2.CAP_PROP_POS_MSEC)
            frame = np.ascontiguousarray(shrunk(bgr, max_side)[..., ::-1])
            yield (milliseconds / 1000 if milliseconds > 0 or index == 0 else index / fps), frame
            index += 1
        if index == 0:
            raise VideoError(f"{path}: no video frames could be decoded")
    finally:
        capture.release()


@contextmanager
def video_writer(path: Union[str, Path], fps: float) -> Iterator:
    """A function that appends one RGB frame to the .mp4 at `path` (the first frame sets the size); the file
    appears whole when the block ends without error, and not at all otherwise."""
    path = Path(path)
    writer = None

    def write(frame: Union[Image.Image, np.ndarray]) -> None:
        nonlocal writer
        bgr = np.ascontiguousarray(np.asarray(frame)[..., ::-1])
        if writer is None:
            size = (bgr.shape[1], bgr.shape[0])
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*FOURCC), float(fps), size)
            if not writer.isOpened():
                raise VideoError(f"{path}: OpenCV cannot write an {FOURCC} video of size {size} at {fps} fps")
        writer.write(bgr)

    with atomic_file(path) as tmp:
        try:
            yield write
        finally:
            if writer is not None:
                writer.release()
        if writer is None:
            raise VideoError(f"{path}: no frames to write")


def annotate(frame: Union[Image.Image, np.ndarray], result: FrameResult, names: Sequence[str] = ()) -> Image.Image:
    """The frame with each tracked hand's box and '#id gesture probability' drawn (hybrid.pipeline.draw_hands)."""
    image = frame if isinstance(frame, Image.Image) else Image.fromarray(frame)
    return draw_hands(image, [hand.as_hand() for hand in result.hands], names)


def track_video(
    pipe: HybridPipeline, source: Union[str, Path], output: Optional[Union[str, Path]] = None, **tracker_kwargs
) -> Iterator[FrameResult]:
    """Track the hands of every frame of the video file `source`, one FrameResult per frame, in order.
    With `output`, the annotated video (same frame rate and size) is written there as .mp4, atomically:
    it only appears once the last frame is done. `tracker_kwargs` go to HandTracker (window, lost_seconds)."""
    fps = probe_video(source).fps
    tracker = HandTracker(pipe, fps=fps, **tracker_kwargs)
    if output is None:
        for timestamp, frame in read_video(source):
            yield tracker(frame, timestamp)
        return
    with video_writer(output, fps) as write:
        for timestamp, frame in read_video(source):
            result = tracker(frame, timestamp)
            write(annotate(frame, result, tracker.names))
            yield result


__all__ = [
    "FrameResult",
    "HandTracker",
    "TrackedHand",
    "VideoError",
    "VideoTooLarge",
    "VideoInfo",
    "annotate",
    "probe_video",
    "read_video",
    "track_video",
    "video_writer",
]
