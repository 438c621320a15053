"""Compiled networks: the one module that knows inference backends and precision.

A `Network` is what a `GestureClassifier` or `HandDetector` runs its preprocessed batch through:
`network.run(array) -> array` (numpy in and out; `network(tensor) -> tensor` for PyTorch callers), with the
`backend` it runs on and the `precision` it really computes in.
`compile_network` picks the backend, resolves the precision and builds one; the models' own `compile()`
methods call it, and their pre- and post-processing stay theirs, so every backend gives the same answers.
Adding a backend: a `Network` subclass and a `Backend` member, both here.

Backends: 'torch' (eager PyTorch, bf16 through autocast), 'openvino' (the network exported to ONNX, then
compiled by OpenVINO for the CPU) and 'auto' (OpenVINO for a model on the CPU when onnx and openvino are
installed and the export works, else PyTorch with one log line). Each export is cached on disk under a
name that contains a fingerprint of the weights, so a changed model gets a new export (a stale file is
never used) and the same model is exported once. The cache is bounded: the newest few exports of each kind
(by last use) are kept, $HYBRID_ONNX_KEEP (default 3) or `cached_onnx(keep=...)`; older ones are deleted.
A compiled network is a snapshot of the weights. An exported network has extra outputs after its first: the
activations of the layers its model explains itself with (`cam_layers`: a classifier's last stage, a detector's
neck), so hybrid.serving can show Grad-CAM and EigenCAM without PyTorch (`run_all`).

This module imports torch only where a function needs it: a process that loads compiled networks
(hybrid.serving) never imports it.

Precision: 'auto' is bf16 where the device computes it natively (CUDA with bf16, a CPU with AVX512-BF16 or
AMX), fp32 elsewhere, so machines without it fall back by themselves. The detector always runs in fp32 (its
outputs are pixel coordinates; bf16 moved boxes by ~2 px at 256). On this project's 2-core CPU, ResNet-50
on one 112 px crop takes 7.8 ms in OpenVINO bf16, 13.7 ms in OpenVINO fp32 and 14.7 ms in ONNX Runtime
fp32; bf16 logits differ from fp32 by ~0.03, and bench/evaluate.py --paths shipped naive checks that
accuracy does not move.

OpenVINO infer requests are not thread-safe, and the app serves several users from a pool of up to 40 worker
threads: a call takes an idle request (or makes one) and gives it back, so a network holds as many requests
(each with its own activation buffers) as calls ever ran at once on it, not one per thread that called. Besides
the model compiled for any input shape, each network compiles a copy for each of the first few input shapes it
sees (STATIC_SHAPES; ~0.1-0.4 s once per shape): a fixed shape runs ~10-15 % faster on this CPU.

Example:
    >>> network = compile_network(model, "classifier", 224, torch.device("cpu"), backend="auto", precision="auto")
    >>> network.backend, network.precision
    (<Backend.OPENVINO: 'openvino'>, <Precision.BF16: 'bf16'>)
    >>> logits = network(batch)
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import io
import logging
import sys
import threading
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Optional, Sequence, Union

import numpy as np

from hybrid import constants
from hybrid.files import atomic_file

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

OPSET = 17
STATIC_SHAPES = 2  # input shapes per OpenVINO network that get their own compiled copy (the rest: the dynamic one)
INT8_RECIPE = "convert_model+bias_correction"  # part of each int8 file's name: a changed quantization is a new file
_EXPORT_LOCK = threading.Lock()


class Backend(StrEnum):
    AUTO = "auto"  # OpenVINO for a model on the CPU when it can, else PyTorch
    TORCH = "torch"
    OPENVINO = "openvino"


class Precision(StrEnum):
    AUTO = "auto"  # int8 where it can (see resolve_precision), else bf16 where native, else fp32
    FP32 = "fp32"
    BF16 = "bf16"
    INT8 = "int8"  # NNCF post-training quantization, OpenVINO only, needs calibration samples


@dataclass(frozen=True)
class Calibration:
    """What INT8 quantization of one network needs: `samples()` gives preprocessed input batches (called only
    when the quantized model is not cached yet), `key` names them in the cache (a digest of what they are),
    `ignored` are regular expressions of node names kept in floating point (e.g. a detector's box decoding)."""

    key: str
    samples: Callable[[], Sequence[np.ndarray]]
    ignored: tuple[str, ...] = ()


def parse_backend(value: Union[str, Backend]) -> Backend:
    """'auto' | 'torch' | 'openvino' -> Backend; anything else -> one ValueError line."""
    return _parse(Backend, value, "backend")


def parse_precision(value: Union[str, Precision]) -> Precision:
    """'auto' | 'fp32' | 'bf16' | 'int8' -> Precision; anything else -> one ValueError line."""
    return _parse(Precision, value, "precision")


def _parse(kind, value, name: str):
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{name} must be one of {', '.join(repr(str(m)) for m in kind)}, got {value!r}") from None


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(word for line in text.splitlines() if line.startswith("flags") for word in line.split())


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 natively (AMX or AVX512-BF16); emulated bf16 is slower than fp32."""
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def cpu_has_fast_int8() -> bool:
    """True where the CPU has int8 dot-product units (AVX512-VNNI, AVX-VNNI or AMX-INT8)."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())


def int8_available() -> bool:
    """NNCF and OpenVINO are installed (found, not imported: importing NNCF costs a second and a torch warning)."""
    return all(importlib.util.find_spec(name) is not None for name in ("nncf", "openvino"))


def can_int8(
    device: Union[str, "torch.device"], backend: Union[str, Backend], calibration: Optional[Calibration]
) -> bool:
    """Whether precision 'auto' becomes int8 for a network on `device` and `backend` with `calibration`."""
    possible = calibration is not None and parse_backend(backend) is not Backend.TORCH and int8_available()
    return resolve_precision(Precision.AUTO, device, int8=possible) is Precision.INT8


def resolve_precision(
    precision: Union[str, Precision], device: Union[str, "torch.device"], int8: bool = False
) -> Precision:
    """'auto' -> int8 when `int8` (the caller can quantize: OpenVINO, NNCF and calibration samples) and the
    CPU has fast int8; else bf16 where `device` runs bf16 natively (CUDA with bf16, AMX/AVX512-BF16 CPU);
    else fp32."""
    precision = parse_precision(precision)
    if precision is not Precision.AUTO:
        return precision
    kind = device_type(device)
    if kind == "cuda":
        import torch

        return Precision.BF16 if torch.cuda.is_bf16_supported() else Precision.FP32
    if kind == "cpu" and int8 and cpu_has_fast_int8():
        return Precision.INT8
    return Precision.BF16 if kind == "cpu" and cpu_has_native_bf16() else Precision.FP32


def device_type(device: Union[str, "torch.device"]) -> str:
    """'cpu', 'cuda', ... of a torch.device or a device string ('cuda:1' -> 'cuda'), without importing torch."""
    return getattr(device, "type", None) or str(device).partition(":")[0]


def default_threads() -> Optional[int]:
    """PyTorch's thread count where torch is imported (so torch.set_num_threads sets OpenVINO's too), else
    None: OpenVINO's own choice (one per physical core, as PyTorch's default)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


# --- networks -----------------------------------------------------------------------------------------


class Network:
    """A model's forward pass on one backend: `network.run(array) -> array` (its first output), `network(tensor)
    -> tensor` for PyTorch callers. `precision` is what it computes in."""

    backend: ClassVar[Backend]
    precision: Precision

    def run(self, array: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, batch: "torch.Tensor") -> "torch.Tensor":
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(precision={self.precision})"


class TorchNetwork(Network):
    """The PyTorch module itself; bf16 runs it under autocast (weights stay fp32)."""

    backend = Backend.TORCH

    def __init__(self, model: "nn.Module", precision: Precision = Precision.FP32) -> None:
        if Precision(precision) is Precision.INT8:
            raise ValueError("precision 'int8' runs on the openvino backend only")
        self.model = model
        self.precision = Precision(precision)

    def run(self, array: np.ndarray) -> np.ndarray:
        import torch

        device = next(self.model.parameters()).device
        output = self(torch.from_numpy(array).to(device))
        output = output[0] if isinstance(output, (tuple, list)) else output  # a YOLO in PyTorch: (boxes, maps)
        return output.float().cpu().numpy()

    def __call__(self, batch: "torch.Tensor") -> "torch.Tensor":
        import torch

        with torch.inference_mode():
            if self.precision is Precision.BF16:
                with torch.autocast(batch.device.type, dtype=torch.bfloat16):
                    return self.model(batch)
            return self.model(batch)


class OpenVinoNetwork(Network):
    """An ONNX file (or OpenVINO IR) compiled by OpenVINO for the CPU; fp32 arrays in and out."""

    backend = Backend.OPENVINO

    def __init__(self, path: Path, precision: Precision, threads: Optional[int] = None) -> None:
        import openvino as ov

        config = {
            "PERFORMANCE_HINT": "LATENCY",
            # an int8 model keeps its unquantized parts (e.g. box decoding) in f32
            "INFERENCE_PRECISION_HINT": "bf16" if precision is Precision.BF16 else "f32",
        }
        threads = threads or default_threads()
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.path = Path(path)
        self.config = config
        self.core = ov.Core()
        self.model = self.core.compile_model(str(path), "CPU", config)
        computed = self.model.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # 'bf16' | 'f32' | ...
        self.precision = Precision.INT8 if precision is Precision.INT8 else Precision(computed.replace("f32", "fp32"))
        self._static: dict[tuple[int, ...], object] = {}  # input shape -> the model compiled for that shape only
        self._idle: dict[int, list] = {}  # id(compiled model) -> its infer requests not in use
        self._lock = threading.Lock()  # compiling a fixed-shape copy
        self._pool_lock = threading.Lock()  # taking and giving back requests (never waits on a compile)

    @staticmethod
    def available() -> bool:
        try:
            import onnx  # noqa: F401  (torch's exporter needs it)
            import openvino  # noqa: F401
        except ImportError:
            return False
        return True

    @classmethod
    def build(
        cls,
        model: "nn.Module",
        kind: str,
        image_size: int,
        precision: Precision,
        cache_dir: Optional[Path] = None,
        threads: Optional[int] = None,
        calibration: Optional[Calibration] = None,
        cam_layers: Sequence[str] = (),
    ) -> "OpenVinoNetwork":
        path = cached_onnx(model, kind, image_size, cache_dir, cam_layers=cam_layers)
        if precision is Precision.INT8:
            path = cached_int8(path, kind, calibration, cache_dir)
        return cls(path, precision, threads)

    def run(self, array: np.ndarray) -> np.ndarray:
        return self._infer(array, all_outputs=False)[0]

    def run_all(self, array: np.ndarray) -> list[np.ndarray]:
        """Every output: the network's own first, then the activations of its `cam_layers` (see the module doc)."""
        return self._infer(array, all_outputs=True)

    def _infer(self, array: np.ndarray, all_outputs: bool) -> list[np.ndarray]:
        compiled = self._compiled_for(array.shape)
        with self._pool_lock:
            idle = self._idle.setdefault(id(compiled), [])
            request = idle.pop() if idle else None
        if request is None:
            request = compiled.create_infer_request()
        try:
            outputs = request.infer({0: array}, share_outputs=True)  # views of the request's own buffers
            count = len(compiled.outputs) if all_outputs else 1
            return [np.array(outputs[i]) for i in range(count)]  # copies: the request reuses its buffers
        finally:
            with self._pool_lock:
                idle.append(request)

    @property
    def infer_requests(self) -> int:
        """How many infer requests this network holds (all idle between calls)."""
        with self._pool_lock:
            return sum(map(len, self._idle.values()))

    def _compiled_for(self, shape: tuple[int, ...]):
        """The model compiled for `shape` alone (the first STATIC_SHAPES shapes seen), else the dynamic one."""
        compiled = self._static.get(shape)
        if compiled is None and len(self._static) < STATIC_SHAPES:
            with self._lock:
                compiled = self._static.get(shape)
                if compiled is None and len(self._static) < STATIC_SHAPES:
                    model = self.core.read_model(str(self.path))
                    model.reshape(list(shape))
                    compiled = self._static[shape] = self.core.compile_model(model, "CPU", self.config)
        return compiled or self.model

    def __call__(self, batch: "torch.Tensor") -> "torch.Tensor":
        import torch

        return torch.from_numpy(self.run(np.ascontiguousarray(batch.detach().cpu().float().numpy())))

    def __deepcopy__(self, memo: dict) -> "OpenVinoNetwork":
        return self  # compiled and read-only; a deep copy of its model (e.g. a copied detector) shares it

    def __repr__(self) -> str:
        return f"OpenVinoNetwork({self.path.name}, precision={self.precision})"


_COMPILED = {Backend.OPENVINO: OpenVinoNetwork}  # the backends that run an exported copy of the network
_AUTO = Backend.OPENVINO  # what 'auto' tries for a model on the CPU


def compile_network(
    model: "nn.Module",
    kind: str,
    image_size: int,
    device: Union[str, "torch.device"],
    backend: Union[str, Backend] = Backend.AUTO,
    precision: Union[str, Precision] = Precision.AUTO,
    cache_dir: Optional[Union[str, Path]] = None,
    threads: Optional[int] = None,
    calibration: Optional[Calibration] = None,
    cam_layers: Sequence[str] = (),
) -> Network:
    """A `Network` running `model` (`kind`: 'classifier' | 'detector', which sets how it is exported) on
    `backend` in `precision` (resolved for `device`). A backend asked for by name must work (a missing package or a
    failed export is raised); 'auto' falls back to PyTorch with one log line. 'int8' needs `calibration`, the
    OpenVINO backend and NNCF; 'auto' picks it only where all are there and the CPU has fast int8. An exported
    network also outputs the activations of the submodules named in `cam_layers` (see the module doc)."""
    backend = parse_backend(backend)
    can_int8 = calibration is not None and backend is not Backend.TORCH and int8_available()
    precision = resolve_precision(precision, device, int8=can_int8)
    if precision is Precision.INT8 and not can_int8:
        if calibration is None:
            raise ValueError(f"precision 'int8' needs calibration samples for the {kind} (see hybrid.calibration)")
        raise RuntimeError("precision 'int8' needs the openvino backend and the nncf package")
    if kind not in _EXPORTS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, _EXPORTS))}, got {kind!r}")
    if backend is Backend.TORCH or (backend is Backend.AUTO and device_type(device) != "cpu"):
        return TorchNetwork(model, precision)  # on a GPU, PyTorch is the fast path
    runner = _COMPILED[_AUTO if backend is Backend.AUTO else backend]
    if not runner.available():
        if backend is not Backend.AUTO:
            raise RuntimeError(f"backend={str(backend)!r} needs the onnx and openvino packages")
        logger.info("onnx/openvino not installed: the %s runs in PyTorch", kind)
        return TorchNetwork(model, precision)
    try:
        cache = None if cache_dir is None else Path(cache_dir)
        return runner.build(model, kind, image_size, precision, cache, threads, calibration, cam_layers)
    except Exception as error:  # an export failure must not stop inference under 'auto': PyTorch still works
        if backend is not Backend.AUTO:
            raise
        logger.warning(
            "%s could not take the %s (%s: %s); it runs in PyTorch", runner.backend, kind, type(error).__name__, error
        )
        return TorchNetwork(model, precision)


# --- ONNX export --------------------------------------------------------------------------------------


def weights_digest(model: "nn.Module") -> str:
    """A short hash of the weights and buffers (changes whenever the model does)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _export(
    model: "nn.Module",
    image_size: int,
    path: Path,
    input_name: str,
    output_name: str,
    dynamic_axes: dict,
    cam_layers: Sequence[str] = (),
) -> Path:
    """`model` (a copy the caller made) to ONNX at `path`; outputs: its own, then 'cam0', 'cam1', ...: the
    activations of the submodules named in `cam_layers` (batch and spatial axes dynamic)."""
    import torch

    class WithActivations(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, batch):
            result, activations = layer_outputs(self.model, [model.get_submodule(n) for n in cam_layers], batch)
            return (result, *activations)

    cams = [f"cam{k}" for k in range(len(cam_layers))]
    axes = dict(dynamic_axes, **{name: {0: "batch", 2: f"{name}_height", 3: f"{name}_width"} for name in cams})
    with atomic_file(path) as tmp, torch.no_grad():
        torch.onnx.export(
            WithActivations() if cam_layers else model,
            torch.zeros(1, 3, image_size, image_size),
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=[input_name],
            output_names=[output_name, *cams],
            dynamic_axes=axes,
        )
    return path


def layer_outputs(model: "nn.Module", layers: Sequence["nn.Module"], batch: "torch.Tensor"):
    """(model(batch), [each layer's output in that forward pass]), recording only this thread's pass (the hooks
    live for this call only): what the exports' extra outputs and hybrid.explain's CAMs are made of."""
    thread, outputs = threading.get_ident(), {}

    def recorder(index: int):
        def record(module, inputs, output):
            if threading.get_ident() == thread:
                outputs[index] = output

        return record

    handles = [layer.register_forward_hook(recorder(i)) for i, layer in enumerate(layers)]
    try:
        result = model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return result, [outputs[i] for i in range(len(layers))]


def export_detector_onnx(model: "nn.Module", path: Path, image_size: int = 640, cam_layers: Sequence[str] = ()) -> Path:
    """Export an Ultralytics DetectionModel to ONNX (dynamic batch/height/width), atomically."""
    model = copy.deepcopy(model).cpu().float().eval()  # YOLOv8n is ~3M parameters; the original stays untouched
    if hasattr(model, "fuse") and not (callable(getattr(model, "is_fused", None)) and model.is_fused()):
        model.fuse(verbose=False)
    head = model.model[-1]
    head.export, head.format, head.dynamic = True, "onnx", True  # return the decoded boxes tensor only
    return _export(
        model,
        image_size,
        path,
        "images",
        "output0",
        {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 2: "anchors"}},
        cam_layers,
    )


def export_classifier_onnx(model: "nn.Module", path: Path, image_size: int, cam_layers: Sequence[str] = ()) -> Path:
    """Export a timm classifier to ONNX (dynamic batch; logits out), atomically."""
    import torch

    model = copy.deepcopy(model).cpu().float().eval().to(memory_format=torch.contiguous_format)
    axes = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}
    return _export(model, image_size, path, "pixel_values", "logits", axes, cam_layers)


_EXPORTS = {"classifier": export_classifier_onnx, "detector": export_detector_onnx}


def cached_onnx(
    model: "nn.Module",
    kind: str,
    image_size: int,
    cache_dir: Optional[Path] = None,
    keep: Optional[int] = None,
    cam_layers: Sequence[str] = (),
) -> Path:
    """`model` exported to ONNX once per set of weights: `cache_dir/KIND-FINGERPRINT.onnx` (`-cam.onnx` with the
    `cam_layers` outputs). The newest `keep` exports of `kind` stay (by last use; default $HYBRID_ONNX_KEEP,
    else 3), older ones are deleted."""
    cache_dir = Path(cache_dir) if cache_dir is not None else constants.cache_dir() / "onnx"
    keep = constants.onnx_keep() if keep is None else keep
    if keep < 1:
        raise ValueError(f"keep: expected an integer >= 1, got {keep}")
    path = cache_dir / f"{kind}-{weights_digest(model)}{'-cam' if cam_layers else ''}.onnx"
    with _EXPORT_LOCK:
        if path.is_file():
            path.touch()  # last use: what the pruning below orders by
        else:
            logger.debug("exporting the %s to ONNX: %s", kind, path)
            _EXPORTS[kind](model, path, image_size, cam_layers)
        prune_exports(cache_dir, kind, keep, path)
    return path


def cached_int8(
    onnx_path: Path, kind: str, calibration: Calibration, cache_dir: Optional[Path] = None, keep: Optional[int] = None
) -> Path:
    """The ONNX model at `onnx_path` quantized to INT8 by NNCF on `calibration`'s samples, saved once as
    OpenVINO IR: `<onnx stem>-int8-<calibration key>.xml` (+ .bin) next to it; bounded like `cached_onnx`."""
    keep = constants.onnx_keep() if keep is None else keep
    recipe = hashlib.sha256(f"{INT8_RECIPE}:{calibration.key}".encode()).hexdigest()[:12]
    xml = onnx_path.with_name(f"{onnx_path.stem}-int8-{recipe}.xml")
    with _EXPORT_LOCK:
        if xml.is_file() and xml.with_suffix(".bin").is_file():
            xml.touch()
        else:
            _quantize(onnx_path, xml, calibration)
        prune_exports(onnx_path.parent, kind, keep, xml, suffix=".xml")
    return xml


def _quantize(onnx_path: Path, xml: Path, calibration: Calibration) -> None:
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # NNCF imports it: "No CUDA runtime"
    import nncf
    import openvino as ov

    samples = list(calibration.samples())
    if not samples:
        raise ValueError(f"no calibration samples for {xml.name}")
    logger.debug("quantizing %s to int8 on %d calibration samples (once per model)", onnx_path.name, len(samples))
    ignored = nncf.IgnoredScope(patterns=list(calibration.ignored)) if calibration.ignored else None
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)
    try:  # NNCF draws progress bars on stdout, which is for results (hybrid predict --json)
        with contextlib.redirect_stdout(io.StringIO()):
            quantized = nncf.quantize(
                # convert_model, not read_model: it fuses Sigmoid * x into Swish first, so YOLO's activations are
                # not split by quantizers (2x fewer reorders). Full bias correction: on the demo detector it kept
                # hybrid accuracy at the fp32 level (the fast one lost 1.3 points on the Hands test split).
                ov.convert_model(str(onnx_path)),
                nncf.Dataset(samples),
                subset_size=len(samples),
                fast_bias_correction=False,
                ignored_scope=ignored,
            )
    finally:
        nncf_logger.setLevel(level)
    # the .bin goes into place first (inner context): a reader that finds the .xml finds its weights
    with atomic_file(xml) as tmp_xml, atomic_file(xml.with_suffix(".bin")) as tmp_bin:
        try:
            ov.save_model(quantized, str(tmp_xml), compress_to_fp16=False)  # writes tmp_xml and its .bin
            tmp_xml.with_suffix(".bin").replace(tmp_bin)
        finally:
            tmp_xml.with_suffix(".bin").unlink(missing_ok=True)


def prune_exports(cache_dir: Path, kind: str, keep: int, current: Path, suffix: str = ".onnx") -> list[Path]:
    """Delete all but the newest `keep` exports of `kind` ending in `suffix` (never `current`; an IR's .bin goes
    with its .xml); returns the deleted files. A file another process deletes first is skipped; an open one
    stays readable by whoever compiled it."""

    def last_use(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    exports = (p for p in cache_dir.glob(f"{kind}-*{suffix}") if p != current)  # int8 IRs are .xml, never .onnx
    others = sorted(exports, key=last_use, reverse=True)
    removed = others[keep - 1 :]
    for old in removed:
        old.unlink(missing_ok=True)
        if suffix == ".xml":
            old.with_suffix(".bin").unlink(missing_ok=True)
    if removed:
        logger.debug("ONNX cache: removed %d older %s export(s) (keeping %d)", len(removed), kind, keep)
    return removed
