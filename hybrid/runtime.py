"""Fast CPU inference for the detector: its network exported to ONNX and run by ONNX Runtime.

The export is cached on disk under a name that contains a fingerprint of the weights, so a changed
model gets a new export (a stale file is never used) and the same model is exported once. Results
equal the PyTorch detector's to ~1e-5 (same letterbox, same NMS, same box scaling).
"""
from __future__ import annotations

import copy
import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)

OPSET = 17
_EXPORT_LOCK = threading.Lock()


def onnxruntime_available() -> bool:
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the weights and buffers (changes whenever the model does)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def default_cache_dir() -> Path:
    return Path(os.environ.get("HYBRID_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hybrid"))


def export_detector_onnx(model: torch.nn.Module, path: Path, image_size: int = 640) -> Path:
    """Export an Ultralytics DetectionModel to ONNX (dynamic batch/height/width), atomically."""
    model = copy.deepcopy(model).cpu().float().eval()  # YOLOv8n is ~3M parameters; the original stays untouched
    if hasattr(model, "fuse") and not (callable(getattr(model, "is_fused", None)) and model.is_fused()):
        model.fuse(verbose=False)
    head = model.model[-1]
    head.export, head.format, head.dynamic = True, "onnx", True  # return the decoded boxes tensor only
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with torch.no_grad():
            torch.onnx.export(
                model, torch.zeros(1, 3, image_size, image_size), tmp, dynamo=False, opset_version=OPSET,
                input_names=["images"], output_names=["output0"],
                dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 2: "anchors"}},
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class OnnxDetector:
    """Runs a `HandDetector`'s network in ONNX Runtime with the detector's own pre/post-processing
    rules; `predict(arrays, conf, iou, image_size)` -> list of lists of `Detection`.

    Input is letterboxed to the smallest stride multiple that holds the image at `image_size`
    (Ultralytics' rectangular inference), which saves a quarter of the work on 4:3 photos."""

    def __init__(self, detector, cache_dir: Optional[Path] = None, threads: Optional[int] = None) -> None:
        import onnxruntime as ort

        self.detector = detector
        cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "onnx"
        self.path = cache_dir / f"detector-{fingerprint(detector.model)}.onnx"
        with _EXPORT_LOCK:
            if not self.path.is_file():
                logger.info("exporting the detector to ONNX: %s", self.path)
                export_detector_onnx(detector.model, self.path, detector.image_size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # ORT's idle threads spin by default and steal the cores the classifier (torch) runs on next
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def predict(self, arrays: Sequence[np.ndarray], conf: float, iou: float, image_size: int, max_det: int = 300):
        from ultralytics.data.augment import LetterBox
        from ultralytics.utils.nms import non_max_suppression
        from ultralytics.utils.ops import scale_boxes

        from hybrid.detector import PAD_VALUE, Detection

        letterbox = LetterBox((image_size, image_size), auto=True, stride=self.detector.stride, padding_value=PAD_VALUE)
        results = []
        for array in arrays:  # one at a time: shapes differ, and a batch of one is the latency case
            padded = letterbox(image=array)
            batch = np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
            output = self.session.run(None, {"images": batch})[0]
            kept = non_max_suppression(torch.from_numpy(output), conf, iou, max_det=max_det)[0]
            boxes = scale_boxes(padded.shape[:2], kept[:, :4].clone(), array.shape[:2]).tolist()
            results.append([
                Detection(box=tuple(round(v, 2) for v in box), score=float(score), label=self.detector.names[int(cls)])
                for box, score, cls in zip(boxes, kept[:, 4].tolist(), kept[:, 5].tolist())
            ])
        return results
