"""Gradio Space: a YOLOv8 detector finds every hand, a ResNet-50 names its gesture, Grad-CAM shows why.

UI and wiring only; the work is done by `hybrid.pipeline` and `hybrid.explain`. Models come from
$HYBRID_DETECTOR / $HYBRID_CLASSIFIER (Hub id[@revision] or a local folder), else the models the
Space is pinned to, else models/detector and models/classifier (what `make demo` trains). They are
loaded once, at start-up, by hybrid.serving: a child process builds the shipped pipeline and this process runs
its compiled networks without importing PyTorch (~650 MB less memory), unless the models need it. Host and
port: $GRADIO_SERVER_NAME / $GRADIO_SERVER_PORT (127.0.0.1:7860).
"""

from __future__ import annotations

import base64
import copy
import ctypes
import dataclasses
import functools
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

try:  # ZeroGPU Spaces lend a GPU per call through `spaces` (imported before torch, as it requires)
    import spaces

    gpu: Callable = spaces.GPU
    ZERO_GPU = True  # the pipeline then runs in PyTorch in this process, on the lent GPU
except ImportError:
    ZERO_GPU = False

    def gpu(fn: Callable) -> Callable:
        return fn


import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from gradio.utils import get_upload_folder  # noqa: E402
from PIL import Image  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from hybrid import explain, serving  # noqa: E402
from hybrid.constants import data_root  # noqa: E402
from hybrid.data.registry import REGISTRY  # noqa: E402
from hybrid.hub import resolve_model as hub_resolve_model  # noqa: E402
from hybrid.hub import split_revision  # noqa: E402
from hybrid.images import ImageError, ImageTooLarge, load_image, read_header  # noqa: E402
from hybrid.limits import (  # noqa: E402
    CONFIDENCE_RANGE,
    DECODE_IN_TURN_PIXELS,
    MAX_CHECKING,
    MAX_DISPLAY_SIDE,
    MAX_EXPLAINED,
    MAX_PIXELS,
    MAX_QUEUE,
    MAX_REQUEST_BODY_BYTES,
    MAX_REQUEST_SECONDS,
    MAX_SESSIONS,
    MAX_UPLOAD,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_CACHE_BYTES,
    MAX_UPLOAD_REQUEST_BYTES,
    MAX_VIDEO_FRAMES,
    MAX_VIDEO_SECONDS,
    THRESHOLD_RANGE,
    UPLOAD_MAX_AGE_SECONDS,
    UPLOAD_SWEEP_SECONDS,
)
from hybrid.pipeline import HybridPipeline, draw_hands, image_result  # noqa: E402
from hybrid.video import HandTracker, VideoError, VideoTooLarge, annotate, probe_video, read_video, track_video  # noqa: E402

logger = logging.getLogger("hybrid.app")

REPO = Path(__file__).resolve().parent
# Live webcam: frames the browser sends per second (stream_every = 1 / LIVE_FPS). Measured on the 2-core dev CPU
# with the demo models and Chromium on the same cores: 8 frames/s answered at 10 sent, 11 at 20 sent (the tracker
# alone: ~22 frames/s at 640x480); 12 keeps the answers coming without a backlog.
LIVE_FPS = 12.0
LIVE_NOTE = (
    f"The browser sends {LIVE_FPS:g} frames per second (stream_every {1 / LIVE_FPS:.3f} s); on 2 CPU cores the "
    "server answers about 8 to 11 of them. Each hand keeps a track id (#N) while it stays in view; its gesture is "
    "the mean over its last frames, so one odd frame does not flip it."
)
LIVE_SECONDS = 120  # one live session streams this long, then the user starts it again
HINT = "Upload a photo, take a webcam shot or pick an example to find hands."
VIDEO_HINT = (
    f"Upload a clip (MP4, WebM, MOV or AVI; at most {MAX_VIDEO_SECONDS} s, {MAX_VIDEO_FRAMES} frames, 4K frames and "
    f"{MAX_UPLOAD.upper()}): every hand gets a track id, its gesture is smoothed over its recent frames."
)

# --- models ------------------------------------------------------------------------------------


@dataclass
class ModelSource:
    """Where one model came from, for loading and for showing on the page."""

    kind: str  # "detector" | "classifier"
    name: str  # as configured: Hub id[@revision] or folder
    path: Path  # the local folder loaded
    revision: str  # what the page shows: Hub commit, or "local folder"

    @property
    def shown_name(self) -> str:
        """The Hub id, or only the folder's own name: the page never shows a server path."""
        return Path(self.name).name if self.revision == "local folder" else self.name


def resolve_model(kind: str) -> ModelSource:
    """$HYBRID_<KIND>, else the Space's pinned model, else models/<kind> (`hybrid.hub.default_model`);
    a Hub id is downloaded (or read from the Hub cache)."""
    try:
        name, path = hub_resolve_model(kind)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error}. Set HYBRID_{kind.upper()} to a Hub id[@revision] or a trained folder, "
            f"or run `make demo` to train the quick demo models into models/."
        ) from None
    if path == Path(name).expanduser():  # a local folder (a Space pin never is one)
        return ModelSource(kind, name, path.resolve(), "local folder")
    revision = split_revision(name)[1]
    commit = path.name if path.parent.name == "snapshots" else "?"
    shown = f"commit {commit[:10]}"
    if revision and not commit.startswith(revision):
        shown = f"{revision}, {shown}"
    return ModelSource(kind, name, path, shown)


def load_pipeline() -> tuple[HybridPipeline, list[ModelSource]]:
    detector, classifier = resolve_model("detector"), resolve_model("classifier")
    started = time.perf_counter()
    if ZERO_GPU:
        pipeline = HybridPipeline.from_pretrained(detector=str(detector.path), classifier=str(classifier.path))
    else:
        pipeline = serving.load(detector.path, classifier.path)
    logger.info(
        "models loaded in %.1f s (%s): detector %s (%s), classifier %s (%s)",
        time.perf_counter() - started,
        "torch imported" if "torch" in sys.modules else "without PyTorch",
        detector.name,
        detector.revision,
        classifier.name,
        classifier.revision,
    )
    return pipeline, [detector, classifier]


# --- input handling ------------------------------------------------------------------------------
# The app reads only what the user sent: a file Gradio received through its upload route (so it lies in
# Gradio's upload cache) or an inline data: URL. Any other {"path": ...} in a payload, whatever endpoint it
# reaches, gets NOT_AN_UPLOAD: the same words for a missing file, a directory or a real server file, so the
# errors tell nothing about the server's disk. Gradio alone does not enforce this: it checks a payload's path
# only when the payload carries {"meta": {"_type": "gradio.FileData"}}, with or without preprocessing.

NOT_AN_UPLOAD = "This is not an uploaded file. Please upload a photo (JPEG, PNG or WebP) or a clip and try again."
GRAYSCALE, TRANSPARENT = ("L", "I", "I;16", "F", "1"), ("RGBA", "LA", "PA")


def _name(payload: dict) -> str:
    """The name to show the user: the upload's own file name (never a server path)."""
    name = Path(str(payload.get("orig_name") or "")).name[:200]
    return name or "the upload"


def upload_cache_bytes() -> int:
    """Bytes of the files in Gradio's upload cache now (uploads older than UPLOAD_MAX_AGE_SECONDS are swept)."""
    total, stack = 0, [get_upload_folder()]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:  # not there yet, or swept meanwhile
            continue
    return total


def uploaded_file(path: Any) -> str:
    """`path` resolved, if it is a regular file inside Gradio's upload cache; else gr.Error(NOT_AN_UPLOAD)."""
    try:
        cache = Path(get_upload_folder()).resolve()
        resolved = Path(path).resolve()
        ok = resolved.is_relative_to(cache) and resolved.is_file()
    except (TypeError, ValueError, OSError, RuntimeError):  # not a string, NUL byte, symlink loop
        ok = False
    if not ok:
        raise gr.Error(NOT_AN_UPLOAD)
    return str(resolved)


def _source(payload: Any) -> tuple[str | bytes, str]:
    """The upload Gradio hands us (preprocessing off, so nothing has decoded it yet) ->
    (a file in the upload cache or the bytes of a data: URL, the name to show the user)."""
    if payload is None:
        raise gr.Error("Please upload an image (or take a webcam shot) first.")
    if not isinstance(payload, dict):
        raise gr.Error(NOT_AN_UPLOAD)
    name, url = _name(payload), payload.get("url")
    if payload.get("path") is not None:
        return uploaded_file(payload["path"]), name
    if isinstance(url, str) and url.startswith("data:"):
        if len(url) > MAX_UPLOAD_BYTES * 4 // 3 + 100:  # BodyLimit bounds the request; this, the image
            raise gr.Error(f"{name} is too large: at most {MAX_UPLOAD} per image.")
        try:
            return base64.b64decode(url.split(",", 1)[1]), name
        except (ValueError, IndexError):
            raise gr.Error(f"{name}: the image data could not be decoded.") from None
    raise gr.Error(NOT_AN_UPLOAD)


@dataclass(frozen=True)
class Upload:
    """An image upload whose header passed the pixel budget; nothing has decoded it yet."""

    source: str | bytes  # a file in the upload cache, or a data: URL's bytes
    name: str  # what to call it in messages
    mode: Optional[str]  # from its header; None when the header is unreadable (decoding says why)
    pixels: int


def checked_upload(payload: Any) -> Upload:
    """The upload, refused at once if it is not one, states more than MAX_PIXELS in its header, or costs more to
    read than it states (hybrid.images.read_header: another format, an EXIF or scan bomb)."""
    source, name = _source(payload)
    try:
        header = read_header(source, name)
    except ImageTooLarge:
        raise gr.Error(
            f"This file can't be analysed: {name} is too large (more than {MAX_PIXELS / 1e6:.0f} "
            "megapixels). Please resize the photo first."
        ) from None
    except ImageError as error:
        raise gr.Error(refusal(error, source, name)) from None
    return Upload(source, name, header.mode, header.width * header.height)


def refusal(error: ImageError, source: str | bytes, name: str) -> str:
    """The page's words for an image that cannot be analysed, naming the upload, never its server path."""
    message = str(error)
    if isinstance(source, str):
        message = message.replace(source, name)
    return (
        f"This file can't be analysed: {message}. Please upload a photo (JPEG, PNG or WebP) "
        f"of at most {MAX_PIXELS / 1e6:.0f} megapixels."
    )


def decoded(upload: Upload, notify: bool = True) -> Image.Image:
    """The upload decoded whole, as RGB, or a gr.Error that says plainly what is wrong with it."""
    try:
        image = load_image(upload.source)
    except ImageError as error:
        raise gr.Error(refusal(error, upload.source, upload.name)) from None
    if notify and upload.mode in GRAYSCALE:
        gr.Info("Grayscale image: analysed as RGB.")
    elif notify and upload.mode in TRANSPARENT:
        gr.Info("Transparent image: analysed on a white background.")
    return image


def read_video_upload(payload: Any) -> tuple[str, str]:
    """An uploaded clip -> (its file in Gradio's upload cache, the name to show); a clip that cannot be decoded,
    or is longer than the limits, gets a gr.Error that says so (and names no server path)."""
    if payload is None:
        raise gr.Error("Please upload a video clip first.")
    if not isinstance(payload, dict) or payload.get("path") is None:
        raise gr.Error(NOT_AN_UPLOAD)
    path, name = uploaded_file(payload["path"]), _name(payload)
    try:
        info = probe_video(path)  # refuses anything but a real container, and frames or clips over the budgets
    except VideoError as error:
        raise gr.Error(video_refusal(error, path, name)) from None
    if info.frames > MAX_VIDEO_FRAMES or info.frames / info.fps > MAX_VIDEO_SECONDS:
        raise gr.Error(f"{name} is too long ({info.frames / info.fps:.0f} s, {info.frames} frames). {VIDEO_HINT}")
    return path, name


def video_refusal(error: VideoError, path: str, name: str) -> str:
    """The page's words for a clip hybrid.video refused: too large (a budget) or not readable, and why; the
    upload's own name stands for its server path."""
    reason = str(error).removeprefix(f"{path}: ")
    if isinstance(error, VideoTooLarge):
        return f"{name} is too large: {reason}. {VIDEO_HINT}"
    return f"This file can't be analysed: {name} is not a readable video ({reason}). {VIDEO_HINT}"


def checked_settings(detector_threshold: Any, min_confidence: Any) -> tuple[float, float]:
    """The page's two thresholds as numbers within its sliders' ranges. The API takes any JSON, so a request
    sent without the page (detector threshold 0: hundreds of boxes; NaN; a string) gets one line naming the
    setting instead."""
    checked = []
    for name, value, (low, high) in (
        ("detector threshold", detector_threshold, THRESHOLD_RANGE),
        ("classifier threshold", min_confidence, CONFIDENCE_RANGE),
    ):
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if number is None or not low <= number <= high:  # NaN fails the comparison too
            raise gr.Error(f"The {name} must be a number from {low:g} to {high:g}; got {str(value)[:20]!r}.")
        checked.append(float(number))
    return checked[0], checked[1]


def shown(image: Image.Image, hands: list) -> tuple[Image.Image, list]:
    """The photo as the page shows it (shrunk to MAX_DISPLAY_SIDE: a 50 MP PNG is ~100 MB to send and to draw)
    and the hands with their boxes scaled onto it."""
    small, scale = explain.shrunk(image, MAX_DISPLAY_SIDE)
    if scale == 1.0:
        return image, hands
    return small, [dataclasses.replace(hand, box=tuple(v * scale for v in hand.box)) for hand in hands]


def write_webm(source: Path, output: Path, deadline: float = float("inf")) -> None:
    """The .mp4 `track_video` wrote, re-encoded as VP8 WebM: what browsers play (OpenCV's wheel has no H.264
    encoder, and the MPEG-4 part 2 video it writes plays in no browser). Past `deadline` (time.perf_counter)
    -> TimeoutError."""
    import cv2  # after hybrid.video, which sets FFmpeg's log level before OpenCV reads it

    writer = None
    try:
        for _, frame in read_video(source):
            if time.perf_counter() > deadline:
                raise TimeoutError("re-encoding the tracked clip took too long")
            if writer is None:
                fps, size = probe_video(source).fps, (frame.shape[1], frame.shape[0])
                writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"VP80"), fps, size)
            writer.write(np.ascontiguousarray(frame[..., ::-1]))
    finally:
        if writer is not None:
            writer.release()


def track_rows(results: list) -> list[list]:
    """One row per track: id, frames seen, its most frequent (smoothed) gesture, that gesture's share of them."""
    labels: dict[int, list[str]] = defaultdict(list)
    for result in results:
        for hand in result.hands:
            labels[hand.track_id].append(hand.label)
    rows = []
    for track_id in sorted(labels):
        label, count = Counter(labels[track_id]).most_common(1)[0]
        rows.append([track_id, len(labels[track_id]), label, f"{count / len(labels[track_id]):.0%}"])
    return rows


def live_text(result) -> str:
    """The live view's hands as text, one '#id gesture probability' per tracked hand."""
    if not result.hands:
        return "No hands in view."
    return "  \n".join(f"**#{hand.track_id}** {hand.label} {hand.probability:.0%}" for hand in result.hands)


def friendly(fn: Callable) -> Callable:
    """Any unexpected failure becomes a readable message in the page; the server keeps serving."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:  # noqa: BLE001 - the page must never show a traceback
            logger.exception("request failed")  # the details stay in the server log: they may name server paths
            raise gr.Error(
                f"Sorry, analysing this image failed ({type(error).__name__}). "
                "The app is still running; please try another image."
            ) from None

    return wrapper


# --- the work: thin calls into the library --------------------------------------------------------


class App:
    """The loaded pipeline plus the handlers the page calls."""

    def __init__(self, pipeline, sources: list[ModelSource]):
        self.pipeline = pipeline
        self.sources = sources
        self.names = list(pipeline.classifier.label_names)  # fixed box colour per gesture
        self.scratch = Path(tempfile.mkdtemp(prefix="hybrid-app-"))  # the annotated clip being written
        # One request at a time through the model (Grad-CAM hooks must not see another request's pass). Up to
        # MAX_CHECKING requests run their handlers at once, so each one's inputs are checked, and a bad one
        # refused, before it waits here: a refusal never waits behind a 48 MP photo.
        self.model_turn = threading.Lock()

    @contextmanager
    def image_turn(self, payload, notify: bool = True):
        """The model's turn, with the upload decoded. A photo up to DECODE_IN_TURN_PIXELS is decoded (and
        refused if broken) before waiting; a larger one when its turn comes, so waiting requests hold no
        decoded pixels."""
        upload = checked_upload(payload)
        image = decoded(upload, notify) if upload.pixels <= DECODE_IN_TURN_PIXELS else None
        with self.model_turn:
            yield image if image is not None else decoded(upload, notify)

    def tuned(self, detector_threshold: float, min_confidence: float) -> HybridPipeline:
        """The pipeline with the page's thresholds (a shallow copy: the networks are shared, not copied)."""
        pipeline = copy.copy(self.pipeline)
        pipeline.detector_threshold, pipeline.min_confidence = float(detector_threshold), float(min_confidence)
        return pipeline

    def hands(self, image: Image.Image, detector_threshold: float, min_confidence: float) -> list:
        return self.pipeline(image, detector_threshold=detector_threshold, min_confidence=min_confidence)[0]

    def analyse(self, payload, detector_threshold: float, min_confidence: float, eigencam: bool):
        """Upload -> (annotated image, status, table rows, Grad-CAM overlay, per-hand gallery, EigenCAM, JSON)."""
        detector_threshold, min_confidence = checked_settings(detector_threshold, min_confidence)
        with self.image_turn(payload) as image:
            return self._analyse(payload, image, detector_threshold, min_confidence, eigencam)

    def _analyse(self, payload, image: Image.Image, detector_threshold: float, min_confidence: float, eigencam: bool):
        started = time.perf_counter()
        hands = self.hands(image, detector_threshold, min_confidence)
        annotated = draw_hands(*shown(image, hands), self.names)
        result = self.to_json(payload, image, hands)
        if not hands:
            gr.Warning(
                "No hands found in this image. Try a photo where the hands are clearly visible, "
                "or lower the detector threshold."
            )
            overlay, gallery = None, []
        else:
            best = sorted(range(len(hands)), key=lambda i: hands[i].score, reverse=True)[:MAX_EXPLAINED]
            explained = [hands[i] for i in best]
            overlay, crops = explain.gradcam_explain(self.pipeline, image, explained, max_side=MAX_DISPLAY_SIDE)
            gallery = [
                (crop, f"hand {i + 1}: {hands[i].label} {hands[i].probability:.0%}") for i, crop in zip(best, crops)
            ]
        eigen = explain.eigencam_image(self.pipeline, image, max_side=MAX_DISPLAY_SIDE) if eigencam else None
        seconds = time.perf_counter() - started
        status = f"**{len(hands)} hand{'s' if len(hands) != 1 else ''}** found in {seconds:.2f} s"
        if any(hand.label.isdigit() for hand in hands):
            status += f"; **{result['total_count']} fingers** raised in all"
        if len(hands) > MAX_EXPLAINED:
            status += f" (Grad-CAM for the {MAX_EXPLAINED} with the highest detector scores)"
        return annotated, status, table_rows(hands), overlay, gallery, eigen, result

    def changed(self, payload, detector_threshold: float, min_confidence: float, eigencam: bool):
        """The photo or a setting changed: analyse again; a cleared photo clears the outputs quietly."""
        if payload is None:
            return None, HINT, [], None, [], None, None
        return self.analyse(payload, detector_threshold, min_confidence, eigencam)

    def predict(self, payload, detector_threshold: float, min_confidence: float) -> dict:
        """The `/predict` API: one image in, the JSON of `hybrid predict --json` out."""
        detector_threshold, min_confidence = checked_settings(detector_threshold, min_confidence)
        with self.image_turn(payload) as image:
            return self.to_json(payload, image, self.hands(image, detector_threshold, min_confidence))

    def live(self, frame, detector_threshold: float, min_confidence: float, tracker: Optional[HandTracker]):
        """One webcam frame -> (the frame with tracked hands drawn, their ids and smoothed gestures as text, the
        session's tracker). A changed threshold starts a new tracker (new ids). No Grad-CAM: too slow per frame."""
        if frame is None:
            return None, "", tracker
        settings = checked_settings(detector_threshold, min_confidence)
        with self.image_turn(frame, notify=False) as image:
            if tracker is None or (tracker.pipe.detector_threshold, tracker.pipe.min_confidence) != settings:
                tracker = HandTracker(self.tuned(*settings), fps=LIVE_FPS)
            result = tracker(image, time.monotonic())
            return annotate(image, result, self.names), live_text(result), tracker

    def track(self, payload, detector_threshold: float, min_confidence: float, progress=gr.Progress()):
        """Uploaded clip -> (annotated clip, status, one row per track)."""
        detector_threshold, min_confidence = checked_settings(detector_threshold, min_confidence)
        path, name = read_video_upload(payload)
        with self.model_turn:
            return self._track(path, name, self.tuned(detector_threshold, min_confidence), progress)

    def _track(self, path: str, name: str, pipeline: HybridPipeline, progress):
        started = time.perf_counter()
        for old in self.scratch.iterdir():  # earlier outputs: Gradio copied them to its cache when they were sent
            old.unlink(missing_ok=True)
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(name).stem)[:60] or "clip"
        tracked, output = self.scratch / f"{stem}-tracked.mp4", self.scratch / f"{stem}-tracked.webm"
        try:
            results = []
            for result in progress.tqdm(track_video(pipeline, path, output=tracked), desc="tracking hands"):
                results.append(result)
                if len(results) > MAX_VIDEO_FRAMES:  # a file that did not state its length
                    raise gr.Error(f"{name} is too long (more than {MAX_VIDEO_FRAMES} frames). {VIDEO_HINT}")
                if time.perf_counter() - started > MAX_REQUEST_SECONDS:
                    raise gr.Error(
                        f"{name} takes too long to track here (stopped after {MAX_REQUEST_SECONDS} s, at frame "
                        f"{len(results)}). Please send a shorter or smaller clip."
                    )
            write_webm(tracked, output, deadline=started + MAX_REQUEST_SECONDS)
        except TimeoutError:
            raise gr.Error(
                f"{name} takes too long to track here (over {MAX_REQUEST_SECONDS} s). Please send a shorter or "
                "smaller clip."
            ) from None
        except VideoError as error:
            raise gr.Error(video_refusal(error, path, name)) from None
        rows = track_rows(results)
        seconds = time.perf_counter() - started
        status = (
            f"**{len(rows)} track{'s' if len(rows) != 1 else ''}** in {len(results)} frames "
            f"({results[-1].timestamp:.1f} s of video), tracked in {seconds:.1f} s"
        )
        return str(output), status, rows

    @staticmethod
    def to_json(payload, image: Image.Image, hands: list) -> dict:
        return image_result(_name(payload), image, hands)


TRACK_COLUMNS = ["track", "frames seen", "gesture", "share of frames"]
HAND_COLUMNS = ["hand", "gesture", "probability", "detector score", "box (x0, y0, x1, y1)", "top 3", "which hand"]
HAND_COLUMNS += ["fingers up"]


def table_rows(hands: list) -> list[list]:
    """One row per hand; 'which hand' and 'fingers up' are '-' for a classifier that did not learn them."""
    rows = []
    for i, hand in enumerate(hands):
        box = ", ".join(f"{v:.0f}" for v in hand.box)
        top = ", ".join(f"{p.label} {p.score:.0%}" for p in hand.top_k[:3])
        which = f"{hand.handedness} {max(hand.right_hand, 1 - hand.right_hand):.0%}" if hand.handedness else "-"
        fingers = "-" if hand.fingers_up is None else ", ".join(hand.fingers_up) or "none"
        rows.append([i + 1, hand.label, round(hand.probability, 3), round(hand.score, 3), box, top, which, fingers])
    return rows


# --- the page --------------------------------------------------------------------------------------


def model_facts(source: ModelSource) -> tuple[str, Optional[float]]:
    """What a model folder says of itself, for the page: 'YOLOv8n at 160 px' / 'resnet18 at 64 px', and the
    seconds its training took (metrics.json), when recorded."""
    try:
        config = json.loads((source.path / "config.json").read_text(encoding="utf-8"))
        metrics = json.loads((source.path / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "", None
    if source.kind == "detector":
        size, seconds = config.get("image_size"), metrics.get("train_seconds")
        architecture = str(config.get("architecture", "")).replace("yolov8", "YOLOv8")
    else:
        size = (config.get("pretrained_cfg") or {}).get("input_size", [None])[-1]
        architecture, timing = config.get("architecture", ""), metrics.get("timing") or {}
        seconds = timing.get("train_seconds_total")
        seconds = seconds + timing.get("data_seconds", 0) if isinstance(seconds, (int, float)) else None
    facts = f"{architecture} at {size} px" if architecture and size else str(architecture)
    return facts, seconds if isinstance(seconds, (int, float)) else None


def model_markdown(sources: list[ModelSource]) -> str:
    facts = {s.kind: model_facts(s) for s in sources}
    lines = [
        f"- **{s.kind}**: {facts[s.kind][0] + ', ' if facts[s.kind][0] else ''}`{s.shown_name}` ({s.revision})"
        for s in sources
    ]
    text = "**Models running**\n" + "\n".join(lines)
    if any((s.path / ".demo-recipe").is_file() for s in sources):  # the mark train/demo.py leaves (RECIPE_MARK)
        times = [f"{kind} {seconds / 60:.0f} min" for kind, (_, seconds) in facts.items() if seconds]
        trained = f": {', '.join(times)} of CPU training" if times else ""
        text += (
            f"\n\n*These are quick local demo models (`make demo`{trained}), so expect "
            "mistakes. For the real ones, train the full recipes in `train/configs/` or set `HYBRID_DETECTOR` / "
            "`HYBRID_CLASSIFIER` to Hub models (see the README).*"
        )
    return text


def example_images() -> tuple[list[str], str]:
    """A few real photos from the data root (only where the data is present) and their attribution."""
    try:
        root = data_root()
    except FileNotFoundError:  # a Space without the datasets: no examples
        return [], ""
    picks, used = [], []
    for name, folder, step in (("hands", "images/test", 40), ("roboflow", "test/images", 20)):
        found = sorted((root / REGISTRY[name].folder / folder).glob("*.jpg"))[::step][: 4 if name == "hands" else 2]
        if found:
            picks += found
            used.append(REGISTRY[name].attribution)
    return [str(p) for p in picks], ("Example photos: " + " ".join(used)) if used else ""


def build(app: App) -> gr.Blocks:
    threshold = float(getattr(app.pipeline, "detector_threshold", 0.25))
    confidence = float(getattr(app.pipeline, "min_confidence", 0.5))
    examples, attribution = example_images()
    with gr.Blocks(title="hybrid hand gestures", delete_cache=(UPLOAD_SWEEP_SECONDS, UPLOAD_MAX_AGE_SECONDS)) as page:
        gr.Markdown(
            "# hybrid: hand-gesture recognition\nA **YOLOv8** detector finds every hand, a "
            "**ResNet** classifier names its gesture (number of extended fingers), and **Grad-CAM** shows "
            "which pixels drove each decision."
        )
        gr.Markdown(model_markdown(app.sources), elem_id="models")
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Tab("Photo"):
                    image = gr.Image(
                        label="Photo (upload, webcam shot or paste)",
                        type="filepath",
                        sources=["upload", "webcam", "clipboard"],
                        elem_id="input-image",
                    )
                    run = gr.Button("Find hands", variant="primary")
                    if examples:
                        # A gallery filled when the page loads, not gr.Examples: those list the examples'
                        # server paths in /config for anyone to read.
                        example_gallery = gr.Gallery(
                            label="Examples (real photos): click one",
                            elem_id="examples",
                            columns=6,
                            height=120,
                            allow_preview=False,
                            interactive=False,
                        )
                        gr.Markdown(attribution, elem_id="attribution")
                with gr.Tab("Video"):
                    clip = gr.Video(label="Video clip", sources=["upload"], elem_id="input-video")
                    track = gr.Button("Track hands", variant="primary")
                    video_status = gr.Markdown(VIDEO_HINT, elem_id="video-status")
                    tracked = gr.Video(label="Tracked hands", elem_id="tracked-video", interactive=False)
                    tracks = gr.Dataframe(
                        headers=TRACK_COLUMNS, label="Tracks", elem_id="tracks-table", interactive=False
                    )
                with gr.Tab("Live webcam"):
                    camera = gr.Image(label="Webcam", sources=["webcam"], streaming=True, type="numpy")
                    live = gr.Image(
                        label=f"Live: {LIVE_FPS:g} frames per second, hands tracked", elem_id="live", format="jpeg"
                    )
                    live_hands = gr.Markdown(elem_id="live-hands")
                    gr.Markdown(LIVE_NOTE, elem_id="live-note")
                    tracker = gr.State(None)  # one HandTracker per browser session
                det = gr.Slider(
                    0.01,
                    0.95,
                    value=threshold,
                    step=0.01,
                    label="Detector threshold",
                    info="minimum detector score for a hand",
                )
                conf = gr.Slider(
                    0.0,
                    1.0,
                    value=confidence,
                    step=0.01,
                    label="Classifier threshold",
                    info="below this gesture probability a hand is 'unknown'",
                )
                eigencam = gr.Checkbox(label="EigenCAM for the detector", value=False)
            with gr.Column(scale=2):
                status = gr.Markdown(HINT, elem_id="status")
                # no label badge: it would cover the gesture tag of a hand at the image's top-left corner
                annotated = gr.Image(
                    label="Hands found", show_label=False, elem_id="annotated", interactive=False, format="png"
                )
                table = gr.Dataframe(headers=HAND_COLUMNS, label="Hands", elem_id="hands-table", interactive=False)
                with gr.Tab("Grad-CAM"):
                    overlay = gr.Image(label="Grad-CAM (classifier), whole image", elem_id="gradcam", interactive=False)
                    gallery = gr.Gallery(
                        label="Grad-CAM per hand", elem_id="hand-gallery", columns=4, height=320, object_fit="contain"
                    )
                with gr.Tab("EigenCAM (detector)"):
                    eigen = gr.Image(
                        label="EigenCAM: what the detector looks at (tick the box to compute)",
                        elem_id="eigencam",
                        interactive=False,
                    )
                with gr.Tab("JSON"):
                    as_json = gr.JSON(label="Same as `hybrid predict --json`", elem_id="json")

        outputs = [annotated, status, table, overlay, gallery, eigen, as_json]
        settings = [det, conf, eigencam]
        # The model events share one group of MAX_CHECKING handlers (concurrency_id); the model itself takes
        # one request at a time (App.model_turn). preprocess=False everywhere, private events included (anyone
        # can call those over HTTP too): `checked_upload` accepts only uploads (see NOT_AN_UPLOAD) and refuses a
        # pixel bomb from its header, before anything decodes it.
        run.click(
            gpu(friendly(app.analyse)),
            [image, *settings],
            outputs,
            api_name="analyse",
            preprocess=False,
            concurrency_id="model",
            concurrency_limit=MAX_CHECKING,
        )
        gr.on(
            [image.change, det.release, conf.release, eigencam.input],
            gpu(friendly(app.changed)),
            [image, *settings],
            outputs,
            preprocess=False,
            api_visibility="private",
            concurrency_id="model",
            concurrency_limit=MAX_CHECKING,
        )
        track.click(
            gpu(friendly(app.track)),
            [clip, det, conf],
            [tracked, video_status, tracks],
            api_name="track",
            preprocess=False,
            concurrency_id="model",
            concurrency_limit=MAX_CHECKING,
        )
        camera.stream(
            gpu(friendly(app.live)),
            [camera, det, conf, tracker],
            [live, live_hands, tracker],
            stream_every=1 / LIVE_FPS,
            time_limit=LIVE_SECONDS,
            concurrency_id="model",
            concurrency_limit=MAX_CHECKING,
            api_visibility="private",
            preprocess=False,
        )
        if examples:

            def pick_example(selected: gr.SelectData) -> Image.Image:
                """The example photo the user clicked: one of ours, by its place in the gallery."""
                index = selected.index if isinstance(selected.index, int) else -1
                if not 0 <= index < len(examples):
                    raise gr.Error("Please pick one of the example photos.")
                return Image.open(examples[index])

            # PIL images, not paths: Gradio copies only files under the working or temp folder into its cache
            page.load(
                lambda: [Image.open(path) for path in examples],
                None,
                example_gallery,
                api_visibility="private",
                queue=False,
            )
            example_gallery.select(pick_example, None, image, api_visibility="private", concurrency_id="examples")
        api = gr.JSON(visible=False)
        gr.Button(visible=False).click(
            gpu(friendly(app.predict)),
            [image, det, conf],
            api,
            api_name="predict",
            preprocess=False,
            concurrency_id="model",
            concurrency_limit=MAX_CHECKING,
        )
    return page


class BodyLimit:
    """ASGI middleware: a request body over MAX_REQUEST_BODY_BYTES gets HTTP 413 before it is read (Gradio reads a
    JSON body whole before any handler sees it, so a 1 GB data: URL sent to /gradio_api/call/predict cost GBs of
    RAM first); an upload request over MAX_UPLOAD_REQUEST_BYTES too (one file: 30 x 50 MB in one request were
    stored), and one that would take the upload cache past MAX_UPLOAD_CACHE_BYTES gets HTTP 507."""

    def __init__(self, app, limit: int = MAX_REQUEST_BODY_BYTES, upload_limit: int = MAX_UPLOAD_REQUEST_BYTES):
        self.app, self.limit, self.upload_limit = app, limit, upload_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        upload = scope["path"].rstrip("/").endswith("/gradio_api/upload")
        limit = self.upload_limit if upload else self.limit
        declared = dict(scope["headers"]).get(b"content-length")
        if (
            upload
            and upload_cache_bytes() + int(declared if declared and declared.isdigit() else 0) > MAX_UPLOAD_CACHE_BYTES
        ):
            return await self.refuse(send, 507, "The server's upload space is full; please try again in a few minutes.")
        if declared is not None:  # the server reads no more than it declares
            if not declared.isdigit() or int(declared) > limit:
                return await self.refuse(send, 413, self.too_large(upload))
            return await self.app(scope, receive, send)
        chunks, size = [], 0  # a chunked body: read it here, up to the limit, then hand it on
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await self.refuse(send, 413, self.too_large(upload))
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    def too_large(self, upload: bool) -> str:
        if upload:
            return f"Upload too large: one file of at most {MAX_UPLOAD} per request."
        return f"Request too large: at most {self.limit // 2**20} MiB (send files through /gradio_api/upload)."

    async def refuse(self, send, status: int, message: str) -> None:
        text = message.encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": text})


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """What MALLOC_ARENA_MAX=2 does, from inside the process: glibc gives each thread that allocates its own
    malloc arena (up to 8 per core) and memory freed in one is not reused by the others, so the server's RSS
    under load grew ~140 MB more with the default (bench/load_test.py). False off glibc or when the variable
    is set (it wins)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-8, arenas))  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def main() -> None:
    limit_malloc_arenas()  # before the worker threads exist
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    try:
        pipeline, sources = load_pipeline()
    except (FileNotFoundError, ValueError) as error:  # no or bad models: one clear line, no traceback
        print(f"hybrid app: cannot start: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    page = build(App(pipeline, sources))
    print(f"hybrid app: http://{host}:{port}", flush=True)
    # No allowed_paths: gr.Examples copies the example photos into Gradio's cache, which is all the page serves.
    page.queue(default_concurrency_limit=1, max_size=MAX_QUEUE).launch(
        server_name=host,
        server_port=port,
        max_file_size=MAX_UPLOAD,
        show_error=False,
        state_session_capacity=MAX_SESSIONS,
        app_kwargs={"middleware": [Middleware(BodyLimit)]},
    )


if __name__ == "__main__":
    main()
