"""Fast CPU inference: the detector's and the classifier's networks exported to ONNX, run by OpenVINO.

Each export is cached on disk under a name that contains a fingerprint of the weights, so a changed
model gets a new export (a stale file is never used) and the same model is exported once.

Precision: the detector always runs in fp32 (its outputs are pixel coordinates; bf16 moved boxes by
~2 px at 256). The classifier runs in OpenVINO's best precision for the CPU unless told otherwise:
bf16 where the CPU computes it natively (AVX512-BF16 or AMX), fp32 elsewhere, so machines without
them fall back by themselves. On this project's 2-core CPU, ResNet-50 on one 112 px crop takes 7.8 ms
in OpenVINO bf16, 13.7 ms in OpenVINO fp32 and 14.7 ms in ONNX Runtime fp32; bf16 logits differ from
fp32 by ~0.03, and bench/evaluate.py --paths shipped naive checks that accuracy does not move.

OpenVINO infer requests are not thread-safe: each thread gets its own (the app serves several users).
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


def openvino_available() -> bool:
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import openvino  # noqa: F401
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


def _export_atomic(model: torch.nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str,
                   dynamic_axes: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with torch.no_grad():
            torch.onnx.export(model, example, tmp, dynamo=False, opset_version=OPSET, input_names=[input_name],
                              output_names=[output_name], dynamic_axes=dynamic_axes)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def export_detector_onnx(model: torch.nn.Module, path: Path, image_size: int = 640) -> Path:
    """Export an Ultralytics DetectionModel to ONNX (dynamic batch/height/width), atomically."""
    model = copy.deepcopy(model).cpu().float().eval()  # YOLOv8n is ~3M parameters; the original stays untouched
    if hasattr(model, "fuse") and not (callable(getattr(model, "is_fused", None)) and model.is_fused()):
        model.fuse(verbose=False)
    head = model.model[-1]
    head.export, head.format, head.dynamic = True, "onnx", True  # return the decoded boxes tensor only
    return _export_atomic(model, torch.zeros(1, 3, image_size, image_size), path, "images", "output0",
                          {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 2: "anchors"}})


def export_classifier_onnx(model: torch.nn.Module, path: Path, image_size: int) -> Path:
    """Export a timm classifier to ONNX (dynamic batch; logits out), atomically."""
    model = copy.deepcopy(model).cpu().float().eval().to(memory_format=torch.contiguous_format)
    return _export_atomic(model, torch.zeros(1, 3, image_size, image_size), path, "pixel_values", "logits",
                          {"pixel_values": {0: "batch"}, "logits": {0: "batch"}})


def _cached_export(kind: str, model: torch.nn.Module, cache_dir: Optional[Path], export) -> Path:
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "onnx"
    path = cache_dir / f"{kind}-{fingerprint(model)}.onnx"
    with _EXPORT_LOCK:
        if not path.is_file():
            logger.info("exporting the %s to ONNX: %s", kind, path)
            export(path)
    return path


PRECISION_HINTS = {"auto": None, "fp32": "f32", "bf16": "bf16"}


class _Compiled:
    """An ONNX file compiled by OpenVINO for the CPU; `run(array)` -> first output, one request per thread."""

    def __init__(self, path: Path, threads: Optional[int], precision: str = "auto") -> None:
        import openvino as ov

        if precision not in PRECISION_HINTS:
            raise ValueError(f"precision must be one of {sorted(PRECISION_HINTS)}, got {precision!r}")
        config = {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY"}
        if PRECISION_HINTS[precision]:
            config["INFERENCE_PRECISION_HINT"] = PRECISION_HINTS[precision]
        self.model = ov.Core().compile_model(str(path), "CPU", config)
        computed = self.model.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # 'bf16' | 'f32' | ...
        self.precision = "fp32" if computed == "f32" else computed
        self._local = threading.local()

    def run(self, array: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.model.create_infer_request()
        return np.array(request.infer({0: array})[0])  # a copy: the request reuses its output buffer


class OpenVinoDetector:
    """Runs a `HandDetector`'s network in OpenVINO (fp32) inside the detector's own `predict` (same
    letterbox, NMS and box scaling, so the boxes match PyTorch's); `predict(arrays, conf, iou, image_size)`
    -> list of lists of `Detection`."""

    def __init__(self, detector, cache_dir: Optional[Path] = None, threads: Optional[int] = None) -> None:
        self.detector = detector
        self.path = _cached_export("detector", detector.model, cache_dir,
                                   lambda path: export_detector_onnx(detector.model, path, detector.image_size))
        self.compiled = _Compiled(self.path, threads, "fp32")

    def network(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.compiled.run(np.ascontiguousarray(batch.detach().cpu().numpy())))

    def predict(self, arrays: Sequence[np.ndarray], conf: float, iou: float, image_size: int, max_det: int = 300):
        return self.detector.predict(list(arrays), conf=conf, iou=iou, image_size=image_size, max_det=max_det,
                                     network=self.network)


class OpenVinoClassifier:
    """Runs a `GestureClassifier`'s network in OpenVINO: `logits(batch)` takes the batch that
    `GestureClassifier.preprocess` makes and returns the PyTorch model's logits (to ~1e-5 in fp32,
    ~0.03 in bf16). `precision`: 'auto' (bf16 where native, else fp32) | 'fp32' | 'bf16'."""

    def __init__(self, classifier, cache_dir: Optional[Path] = None, threads: Optional[int] = None,
                 precision: str = "auto") -> None:
        self.classifier = classifier
        self.path = _cached_export("classifier", classifier.model, cache_dir,
                                   lambda path: export_classifier_onnx(classifier.model, path, classifier.image_size))
        self.compiled = _Compiled(self.path, threads, precision)
        self.precision = self.compiled.precision

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        pixels = np.ascontiguousarray(batch.detach().cpu().float().numpy())
        return torch.from_numpy(self.compiled.run(pixels)).float()
