"""HandDetector: an Ultralytics YOLOv8 detection network, loaded from a folder or Hub repo without running its code.

A trained folder (or Hub repo) holds `config.json` (the Ultralytics model yaml as a dict, class names, image
size, thresholds) and `model.safetensors`. `from_pretrained` checks `config.json` against an allowlist before
Ultralytics sees it (`check_model_yaml`: known module names, integer `from`/`repeats`, each module's arguments
by position, of their kind and bounded (channels, kernel, stride...: hybrid.limits), the tokens 'nc', 'None' and
'nearest' only where they belong, no `activation` and no unknown keys), so no string from the repo reaches
Ultralytics' `eval`/`globals()` lookups; then its size (`check_model_cost`: parameters, GFLOPs at its image size
and the largest layer output, counted on PyTorch's 'meta' device); it then builds the network with
`ultralytics.nn.tasks.DetectionModel` and loads the tensors with safetensors (`hybrid.hub.load_weights`: names,
shapes and kinds from the header, then every value finite). Loading a repo therefore never runs code from it,
never unpickles, and never builds a network over the budgets. Anything else is refused with one ValueError line
naming the file and field; so is a file that is not a regular file or a symlink out of the folder
(`hybrid.hub.model_file`). The folder also carries Ultralytics' `best.pt` for `YOLO("best.pt")` users; this
class only unpickles a `.pt` (which can run code) when the caller passes `allow_pickle=True`.

`predict` runs the network through `network` (hybrid.runtime): PyTorch fp32 by default; `compile()` gives a
copy of the detector whose network is compiled (e.g. OpenVINO), with the same letterbox, NMS and box scaling.
Everything `predict` needs lives in `CompiledDetector` (names, thresholds, stride, Ultralytics' letterbox and
box scaling in numpy and OpenCV, the network), which imports no torch: hybrid.serving builds one from a
compiled network alone.

Example:
    >>> from hybrid import HandDetector
    >>> detector = HandDetector.from_pretrained("models/detector")  # or "org/hand-detector", revision="v1"
    >>> detector.predict("photo.jpg")
    [Detection(box=(412.0, 120.5, 530.2, 301.9), score=0.91, label='hand')]
    >>> fast = detector.compile(backend="openvino")
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import numpy as np

from hybrid.calibration import calibration_for
from hybrid.data.splits import SPLIT_NAME
from hybrid.evaluate import iou_matrix
from hybrid.files import atomic_file, write_text
from hybrid.images import ImageInput, rgb_array
from hybrid.limits import (
    MAX_ACTIVATION,
    MAX_DETECTOR_GFLOPS,
    MAX_MODEL_PARAMETERS,
    MAX_YAML_CHANNELS,
    MAX_YAML_KERNEL,
    MAX_YAML_LAYERS,
    MAX_YAML_POOL,
    MAX_YAML_RATIO,
    MAX_YAML_REPEATS,
    MAX_YAML_STRIDE,
)
from hybrid.runtime import Network, Precision, TorchNetwork, can_int8, compile_network, parse_precision

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CHECKPOINT_NAME = "best.pt"
DEFAULT_CONF = 0.25  # Ultralytics' predict defaults
DEFAULT_IOU = 0.7
DEFAULT_IMAGE_SIZE = 640
BATCH_SIZE = 16  # images per forward pass in predict()
PAD_VALUE = 114  # Ultralytics' letterbox grey
MAX_WH = 7680  # Ultralytics' NMS: each class's boxes shifted this far apart
MAX_NMS = 30000  # and at most this many candidates (the best) enter it

# The model yaml allowlist. Ultralytics' parse_model eval()s `activation`, resolves each layer's module name with
# getattr(torch.nn / torchvision.ops) or globals() (any function in ultralytics.nn.tasks, called with the row's
# args) and turns string args into locals()[name] or ast.literal_eval: every string below is checked here. Every
# number is bounded too (hybrid.limits), by what it means to its module: a Conv kernel of 2048 held both cores for
# minutes while the network was built.
Check = Callable[[object], bool]
MAX_CLASSES, MAX_IMAGE_SIZE = 1000, 8192


def _int_in(low: int, high: int) -> Check:
    return lambda v: _is_int(v) and low <= v <= high


def _list_of(check: Check, lengths: Sequence[int]) -> Check:
    return lambda v: isinstance(v, list) and len(v) in lengths and all(check(item) for item in v)


def _is_none(value: object) -> bool:
    return value is None or value == "None"  # parse_model literal_evals the string


_CHANNELS = _int_in(1, MAX_YAML_CHANNELS)
_KERNEL, _POOL = _int_in(1, MAX_YAML_KERNEL), _int_in(1, MAX_YAML_POOL)
_STRIDE, _PAD = _int_in(1, MAX_YAML_STRIDE), _int_in(0, MAX_YAML_KERNEL // 2)
# Each kind of argument: its check and what it must be (for the error).
_ARG = {
    "channels": (lambda v: v == "nc" or _CHANNELS(v), f"an integer in 1..{MAX_YAML_CHANNELS} or 'nc'"),
    "channel list": (_list_of(_CHANNELS, range(1, 9)), f"a list of 1..8 integers in 1..{MAX_YAML_CHANNELS}"),
    "kernel": (_KERNEL, f"an integer in 1..{MAX_YAML_KERNEL}"),
    "kernels": (_list_of(_KERNEL, (2,)), f"a list of 2 integers in 1..{MAX_YAML_KERNEL}"),
    "pool": (_POOL, f"an integer in 1..{MAX_YAML_POOL}"),
    "pools": (_list_of(_POOL, range(1, 5)), f"a list of 1..4 integers in 1..{MAX_YAML_POOL}"),
    "stride": (_STRIDE, f"an integer in 1..{MAX_YAML_STRIDE}"),
    "stride or null": (lambda v: _is_none(v) or _STRIDE(v), f"null or an integer in 1..{MAX_YAML_STRIDE}"),
    "dilation": (_STRIDE, f"an integer in 1..{MAX_YAML_STRIDE}"),
    "padding": (lambda v: _is_none(v) or _PAD(v), f"null or an integer in 0..{MAX_YAML_KERNEL // 2}"),
    "paddings": (
        lambda v: _PAD(v) or _list_of(_PAD, (4,))(v),
        f"an integer or a list of 4 integers in 0..{MAX_YAML_KERNEL // 2}",
    ),
    "groups": (_CHANNELS, f"an integer in 1..{MAX_YAML_CHANNELS}"),
    "repeats": (_int_in(1, MAX_YAML_REPEATS), f"an integer in 1..{MAX_YAML_REPEATS}"),
    "expansion": (lambda v: _is_number(v) and 0 < v <= MAX_YAML_RATIO, f"a number in (0, {MAX_YAML_RATIO:g}]"),
    "area": (_int_in(-1, MAX_YAML_REPEATS), f"an integer in -1..{MAX_YAML_REPEATS}"),  # A2C2f: -1, 1 or 4
    "indices": (_list_of(_int_in(0, 7), range(1, 9)), "a list of 1..8 integers in 0..7"),
    "flag": (lambda v: isinstance(v, bool), "true or false"),
    "flag or null": (lambda v: _is_none(v) or isinstance(v, bool), "null, true or false"),
    "false": (lambda v: v is False, "false"),
    "nc": (lambda v: v == "nc" or _int_in(1, MAX_CLASSES)(v), f"'nc' or an integer in 1..{MAX_CLASSES}"),
    "dimension": (lambda v: v == 1 and _is_int(v), "1"),
    "size": (_is_none, "null (the map size follows the input; scale_factor sets it)"),
    "scale_factor": (lambda v: _is_number(v) and 0 < v <= MAX_YAML_STRIDE, f"a number in (0, {MAX_YAML_STRIDE}]"),
    "mode": (lambda v: v == "nearest", "'nearest'"),
}
_C2F = ("channels", "shortcut:flag", "groups", "expansion")
# Each allowed module (every one of Ultralytics' own detection yamls: v3, v5, v6, v8, v9, v10, 11, 12, 26) and its
# yaml arguments by position, as parse_model passes them on after the input channels (and, for C2f-like modules,
# the depth-scaled repeats): a row may give fewer (the module's defaults), never more. 'name:kind' names an
# argument of a kind in _ARG; a bare kind is its own name.
MODULE_ARGS: dict[str, tuple[str, ...]] = {
    "Conv": ("channels", "kernel", "stride", "padding", "groups", "dilation", "act:flag"),
    "GhostConv": ("channels", "kernel", "stride", "groups", "act:flag"),
    "Bottleneck": ("channels", "shortcut:flag", "groups", "kernels", "expansion"),
    "C2": _C2F,
    "C2f": _C2F,
    "C3": _C2F,
    "C3Ghost": _C2F,
    "C2fCIB": ("channels", "shortcut:flag", "large kernel:flag", "groups", "expansion"),
    "C3k2": ("channels", "c3k:flag", "expansion", "attn:flag", "groups", "shortcut:flag"),
    "C2PSA": ("channels", "expansion"),
    "PSA": ("channels", "expansion"),
    "A2C2f": (
        "channels",
        "a2:flag",
        "area",
        "residual:flag",
        "mlp ratio:expansion",
        "expansion",
        "groups",
        "shortcut:flag",
    ),
    "AConv": ("channels",),
    "ADown": ("channels",),
    "SCDown": ("channels", "kernel", "stride"),
    "SPPF": ("channels", "pool", "repeats", "shortcut:flag"),
    "SPP": ("channels", "pools"),
    "SPPELAN": ("channels", "hidden:channels", "pool"),
    "RepNCSPELAN4": ("channels", "hidden:channels", "half hidden:channels", "repeats"),
    "ELAN1": ("channels", "hidden:channels", "half hidden:channels"),
    "CBLinear": ("channel list", "kernel", "stride", "padding", "groups"),
    "CBFuse": ("indices",),
    "Concat": ("dimension",),
    "Detect": ("nc",),
    "v10Detect": ("nc",),
    "nn.Upsample": ("size", "scale_factor", "mode", "align_corners:flag or null", "recompute:flag or null"),
    "nn.MaxPool2d": ("pool", "stride or null", "padding", "dilation", "return_indices:false", "ceil_mode:flag"),
    "nn.ConvTranspose2d": (
        "channels",
        "kernel",
        "stride",
        "padding",
        "output_padding:padding",
        "groups",
        "bias:flag",
        "dilation",
    ),
    "nn.ZeroPad2d": ("paddings",),
    "nn.Identity": (),
}
MODULES = frozenset(MODULE_ARGS)
HEADS = frozenset({"Detect", "v10Detect"})
YAML_KEYS = frozenset(
    {
        "nc",
        "scales",
        "scale",
        "backbone",
        "head",
        "depth_multiple",
        "width_multiple",
        "end2end",
        "reg_max",
        "channels",
        "yaml_file",
        "inplace",
    }
)
SCALES = frozenset("nsmlxbtce")  # the scale letters Ultralytics' yamls use
BUILD_SIZE = 256  # Ultralytics' DetectionModel runs one forward pass at this size while it is built (its strides)


@dataclass
class Detection:
    """One detected object: `box` is (x0, y0, x1, y1) in pixels of the input image."""

    box: tuple[float, float, float, float]
    score: float
    label: str

    def to_dict(self) -> dict:
        return asdict(self)


class CompiledDetector:
    """What detecting needs and nothing more: a compiled `network` (hybrid.runtime) and its class `names`,
    trained `image_size`, thresholds (`conf`, `iou`) and `stride`. No PyTorch: hybrid.serving loads one in a
    process without torch; `HandDetector` is one that also holds its Ultralytics model."""

    def __init__(
        self,
        network: Network,
        names: Sequence[str],
        image_size: int = DEFAULT_IMAGE_SIZE,
        conf: float = DEFAULT_CONF,
        iou: float = DEFAULT_IOU,
        stride: int = 32,
    ) -> None:
        self.network = network
        self.names = list(names)
        self.image_size = int(image_size)
        self.conf = float(conf)
        self.iou = float(iou)
        self.stride = int(stride)

    def letterboxed(self, images: Sequence[np.ndarray], image_size: int, rect: bool = False) -> np.ndarray:
        """RGB uint8 HxWx3 arrays -> float32 batch (N, 3, H, W) in 0..1, letterboxed exactly as Ultralytics'
        predictor does (aspect kept, grey padding, centred): to S x S, or with `rect` and images of one shape
        to the smallest stride multiple around the scaled image (an 800x600 photo at 320: 320x256, 20 % less
        to compute at the same scale; Ultralytics' predictor with rect=True)."""
        rect = rect and len({image.shape for image in images}) == 1
        batch = np.stack([letterbox(image, image_size, self.stride if rect else None) for image in images])
        return np.divide(batch.transpose(0, 3, 1, 2), 255, dtype=np.float32)

    def predict(
        self,
        image_or_list: Union[ImageInput, Sequence[ImageInput]],
        conf: Optional[float] = None,
        iou: Optional[float] = None,
        image_size: Optional[int] = None,
        max_det: int = 300,
        rect: bool = False,
    ) -> Union[list[Detection], list[list[Detection]]]:
        """Detect objects in one image (-> list of Detection) or a list of images (-> one list per image).

        Images are anything `hybrid.images.load_image` takes: a path, bytes, an RGB PIL image, or an RGB
        numpy array (not OpenCV's BGR). Boxes are pixels of the (EXIF-upright) input image. The batch
        goes through `self.network`; pre- and post-processing are these on every backend. `rect`: the
        letterbox pads only to a stride multiple, not to a square (see `letterboxed`).
        """
        single = not isinstance(image_or_list, (list, tuple))
        sources = [image_or_list] if single else list(image_or_list)
        conf = self.conf if conf is None else float(conf)
        iou = self.iou if iou is None else float(iou)
        size = self._check_size(image_size or self.image_size)
        results: list[list[Detection]] = []
        for start in range(0, len(sources), BATCH_SIZE):
            arrays = [rgb_array(source) for source in sources[start : start + BATCH_SIZE]]
            batch = self.letterboxed(arrays, size, rect)
            outputs = non_max_suppression(self.raw_predictions(batch), conf, iou, max_det=max_det)
            for array, output in zip(arrays, outputs):
                boxes = scale_boxes(batch.shape[2:], output[:, :4].astype(np.float64), array.shape[:2]).tolist()
                results.append(
                    [
                        Detection(box=tuple(round(v, 2) for v in box), score=float(score), label=self.names[int(cls)])
                        for box, score, cls in zip(boxes, output[:, 4].tolist(), output[:, 5].tolist())
                    ]
                )
        return results[0] if single else results

    __call__ = predict

    def raw_predictions(self, batch: np.ndarray) -> np.ndarray:
        """The network's decoded boxes and class scores for a letterboxed batch, (N, 4 + classes, anchors)."""
        return self.network.run(batch)

    def _check_size(self, size: int) -> int:
        size = int(size)
        if size < self.stride:
            raise ValueError(f"image_size={size}: must be at least the model stride {self.stride}")
        if size % self.stride:
            rounded = (size + self.stride - 1) // self.stride * self.stride
            logger.warning("image_size=%d is not a multiple of %d; using %d", size, self.stride, rounded)
            size = rounded
        return size

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(names={self.names}, image_size={self.image_size}, conf={self.conf}, "
            f"iou={self.iou}, network={self.network!r})"
        )


class HandDetector(CompiledDetector):
    """A YOLOv8 detection network plus what is needed to use it: class names, image size, thresholds.

    `model` is the plain `DetectionModel` (an `nn.Module`, in eval mode) so that EigenCAM/Grad-CAM can hook
    its layers; `names` are the class names by id; `image_size` is the square input side in pixels;
    `network` runs the forward pass in `predict` (the model in PyTorch fp32 here; see `compile`).
    """

    def __init__(
        self,
        model: "nn.Module",
        names: Sequence[str],
        image_size: int = DEFAULT_IMAGE_SIZE,
        conf: float = DEFAULT_CONF,
        iou: float = DEFAULT_IOU,
        model_yaml: Optional[dict] = None,
    ) -> None:
        self.model = model.eval()
        self.model_yaml = copy.deepcopy(model_yaml if model_yaml is not None else getattr(model, "yaml", None))
        if not self.model_yaml:
            raise ValueError("HandDetector needs the Ultralytics model yaml (model.yaml or model_yaml=...)")
        stride = getattr(model, "stride", None)
        stride = int(max(stride.tolist())) if stride is not None else 32
        super().__init__(TorchNetwork(self.model, Precision.FP32), names, image_size, conf, iou, stride)
        self.folder: Optional[Path] = None  # where from_pretrained found it (its split.json calibrates int8)

    # --- loading and saving -------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        repo_or_dir: Union[str, Path],
        revision: Optional[str] = None,
        allow_pickle: bool = False,
        device: Optional[str] = None,
    ) -> "HandDetector":
        """Load from a folder, a Hub id (`org/name`, `org/name@rev` or `revision=`), or a `.pt` file.

        Folders and repos load `config.json` + `model.safetensors`. An Ultralytics `.pt` checkpoint (a path to
        one, or a folder with only `best.pt`) is a pickle that can run code when loaded, so it needs
        `allow_pickle=True`.
        """
        path = Path(repo_or_dir).expanduser()
        if path.suffix == ".pt" or path.is_file():
            return cls._from_checkpoint(path, allow_pickle, device)
        from hybrid.hub import snapshot

        folder = snapshot(repo_or_dir, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, SPLIT_NAME])
        if (folder / WEIGHTS_NAME).is_file():
            detector = cls._from_safetensors(folder, device)
            detector.folder = folder
            return detector
        if allow_pickle and not path.is_dir():  # a Hub repo without safetensors: fetch its checkpoint
            folder = snapshot(repo_or_dir, revision=revision, allow_patterns=[CONFIG_NAME, CHECKPOINT_NAME])
        if (folder / CHECKPOINT_NAME).is_file():
            return cls._from_checkpoint(folder / CHECKPOINT_NAME, allow_pickle, device)
        raise FileNotFoundError(f"{repo_or_dir}: no {WEIGHTS_NAME} (nor {CHECKPOINT_NAME}) found")

    @classmethod
    def _from_safetensors(cls, folder: Path, device: Optional[str]) -> "HandDetector":
        from ultralytics.nn.tasks import DetectionModel

        from hybrid.hub import load_weights, model_file

        weights = model_file(folder / WEIGHTS_NAME)  # a link out of the folder is refused before any work
        config = read_config(folder / CONFIG_NAME)  # allowlisted, and within the budgets
        names = config["names"]
        try:  # a layer whose args do not fit its module still fails here
            model = DetectionModel(copy.deepcopy(config["model_yaml"]), nc=len(names), verbose=False)
        except Exception as error:  # TypeError/IndexError/RuntimeError... from inside Ultralytics and torch
            raise _does_not_build(f"{folder / CONFIG_NAME}: field 'model_yaml'", error) from None
        if config.get("head_channels") not in (None, head_channels(model)):
            widen_head(model, config, f"{folder / CONFIG_NAME}: field 'head_channels'")
        if config.get("fused"):
            model.fuse(verbose=False)
        load_weights(weights, model, CONFIG_NAME)
        model.names = dict(enumerate(names))
        detector = cls(
            model,
            names,
            config.get("image_size", DEFAULT_IMAGE_SIZE),
            config.get("conf", DEFAULT_CONF),
            config.get("iou", DEFAULT_IOU),
            config["model_yaml"],
        )
        return detector.to(device)

    @classmethod
    def _from_checkpoint(cls, path: Path, allow_pickle: bool, device: Optional[str]) -> "HandDetector":
        if not allow_pickle:
            raise ValueError(
                f"{path}: an Ultralytics .pt checkpoint is a pickle and loading it can run arbitrary code; pass "
                f"allow_pickle=True if you trust its source, or load the folder's {WEIGHTS_NAME} instead"
            )
        if not path.is_file():
            raise FileNotFoundError(f"{path}: checkpoint not found")
        from ultralytics.nn.tasks import load_checkpoint

        model, checkpoint = load_checkpoint(str(path))
        names = model.names
        names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
        train_args = checkpoint.get("train_args") or {}
        # thresholds from a sibling config.json when there is one (a trained folder), else Ultralytics' defaults
        sibling = path.parent / CONFIG_NAME
        config = read_config(sibling) if sibling.is_file() else {}
        image_size = train_args.get("imgsz", config.get("image_size", DEFAULT_IMAGE_SIZE))
        image_size = image_size if isinstance(image_size, int) else max(image_size)
        detector = cls(model, names, image_size, config.get("conf", DEFAULT_CONF), config.get("iou", DEFAULT_IOU))
        return detector.to(device)

    @property
    def config(self) -> dict:
        """What `config.json` holds: enough to rebuild the network and use it."""
        import ultralytics

        return {
            "model_type": "ultralytics-yolo",
            "task": "detect",
            "architecture": Path(str(self.model_yaml.get("yaml_file", "yolov8.yaml"))).stem,
            "model_yaml": self.model_yaml,
            "names": self.names,
            "num_classes": len(self.names),
            "image_size": self.image_size,
            "conf": self.conf,
            "iou": self.iou,
            "fused": self.is_fused,
            "head_channels": head_channels(self.model),
            "ultralytics_version": ultralytics.__version__,
        }

    @property
    def is_fused(self) -> bool:
        fused = getattr(self.model, "is_fused", None)
        return bool(fused()) if callable(fused) else False

    def save_pretrained(self, save_directory: Union[str, Path]) -> Path:
        """Write `config.json` and `model.safetensors` into `save_directory` (created; files replaced
        atomically). Returns the folder."""
        from safetensors.torch import save_file

        folder = Path(save_directory)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.model.state_dict().items()}
        with atomic_file(folder / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        write_text(folder / CONFIG_NAME, json.dumps(self.config, indent=2))
        return folder

    def compile(
        self,
        backend: str = "auto",
        cache_dir: Union[str, Path, None] = None,
        threads: Optional[int] = None,
        precision: str = "fp32",
        image_size: Optional[int] = None,
    ) -> "HandDetector":
        """A copy of this detector (sharing `model`) whose network runs on `backend` ('auto' | 'torch' |
        'openvino', see hybrid.runtime) in `precision`: 'fp32', 'int8' (NNCF, calibrated on this model's
        training photos letterboxed to `image_size`, see hybrid.calibration; the box decoding stays fp32) or
        'auto' (int8 where it can, else fp32). Never bf16: its outputs are pixel coordinates."""
        precision = parse_precision(precision)
        if precision is Precision.BF16:
            raise ValueError("the detector runs in fp32 or int8 (its outputs are pixel coordinates), not bf16")
        calibration = None
        if precision is not Precision.FP32:
            size = int(image_size or self.image_size)
            calibration = calibration_for(
                self.folder,
                "detector",
                size,
                lambda images: self.letterboxed(images, size),
                ignored=(rf".*/model\.{len(self.model.model) - 1}/(?!cv).*",),  # box decoding: after the convs
            )
            if precision is Precision.AUTO and not can_int8(self.device, backend, calibration):
                precision = Precision.FP32
        compiled = copy.copy(self)
        compiled.network = compile_network(
            self.model,
            "detector",
            self.image_size,
            self.device,
            backend,
            precision,
            cache_dir,
            threads,
            calibration,
            cam_layers=[f"model.{i}" for i in self.neck_layers],
        )
        return compiled

    @property
    def neck_layers(self) -> list[int]:
        """The indices (in `model.model`) of the maps the Detect head reads: what EigenCAM explains."""
        head = self.model.model[-1]
        return list(head.f) if isinstance(head.f, (list, tuple)) else [len(self.model.model) - 2]

    def to(self, device: Optional[Union[str, "torch.device"]]) -> "HandDetector":
        if device is not None:
            self.model.to(device)
        return self

    @property
    def device(self) -> "torch.device":
        return next(self.model.parameters()).device

    def preprocess(self, images: Sequence[np.ndarray], image_size: int, rect: bool = False) -> "torch.Tensor":
        """`letterboxed`, as a tensor on the model's device (for PyTorch callers: EigenCAM, tests)."""
        import torch

        return torch.from_numpy(self.letterboxed(images, image_size, rect)).to(self.device)

    def __repr__(self) -> str:
        return (
            f"HandDetector({self.config['architecture']}, names={self.names}, image_size={self.image_size}, "
            f"conf={self.conf}, iou={self.iou})"
        )


def letterbox(image: np.ndarray, size: int, stride: Optional[int] = None) -> np.ndarray:
    """Ultralytics' LetterBox (scale to fit `size` x `size`, centre, pad with grey) of an HxWx3 uint8 array; with
    `stride`, padded only to the next multiple of it (LetterBox(auto=True)). Tests check it equals Ultralytics'."""
    import cv2

    height, width = image.shape[:2]
    ratio = min(size / height, size / width)
    new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    pad_w, pad_h = size - new_w, size - new_h
    if stride:
        pad_w, pad_h = pad_w % stride, pad_h % stride
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(pad_h / 2 - 0.1), round(pad_h / 2 + 0.1)
    left, right = round(pad_w / 2 - 0.1), round(pad_w / 2 + 0.1)
    return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)


def scale_boxes(batch_shape: Sequence[int], boxes: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Ultralytics' `scale_boxes`: x0, y0, x1, y1 boxes of a letterboxed (height, width) `batch_shape` back to
    pixels of an image of (height, width) `image_shape`, clipped to it. Changes `boxes` in place."""
    gain = min(batch_shape[0] / image_shape[0], batch_shape[1] / image_shape[1])
    new_h, new_w = (max(round(side * gain), 1) for side in image_shape[:2])  # what the letterbox rounded to
    pad_x, pad_y = round((batch_shape[1] - new_w) / 2 - 0.1), round((batch_shape[0] - new_h) / 2 - 0.1)
    boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - pad_x) / (new_w / image_shape[1])).clip(0, image_shape[1])
    boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - pad_y) / (new_h / image_shape[0])).clip(0, image_shape[0])
    return boxes


def non_max_suppression(
    prediction: np.ndarray, conf: float, iou: float, max_det: int = 300, max_nms: int = MAX_NMS
) -> list[np.ndarray]:
    """Ultralytics' `non_max_suppression` (each box's best class, per-class NMS) in numpy: (B, 4 + classes, N)
    xywh + class scores -> per image an (n, 6) array of x0, y0, x1, y1, score, class, best first. Half the time
    of Ultralytics' torch version per photo here (0.65 -> 0.32 ms, bench/latency.py), and it keeps torch ops
    out of the shipped path; tests check that the detections equal Ultralytics'."""
    results = []
    for image in prediction:
        classes = image[4:].argmax(axis=0)
        scores = image[4:].max(axis=0)
        keep = np.flatnonzero(scores > conf)
        keep = keep[np.argsort(-scores[keep], kind="stable")][:max_nms]
        cx, cy, w, h = image[:4, keep]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        shifted = boxes + classes[keep, None] * MAX_WH  # boxes of different classes never overlap
        order, chosen = np.arange(len(keep)), []
        while order.size and len(chosen) < max_det:
            best, rest = order[0], order[1:]
            chosen.append(best)
            order = rest[iou_matrix(shifted[best : best + 1], shifted[rest])[0] <= iou]
        results.append(
            np.column_stack([boxes[chosen], scores[keep][chosen], classes[keep][chosen]]).astype(np.float32)
            if chosen
            else np.zeros((0, 6), np.float32)
        )
    return results


def read_config(path: Path) -> dict:
    """Read and check a detector `config.json` (see `hybrid.hub.read_model_json`, then `check_config`); errors
    name the file and the field."""
    from hybrid.hub import read_model_json

    try:
        config = read_model_json(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: not found (a detector folder needs {CONFIG_NAME} and {WEIGHTS_NAME})"
        ) from None
    return check_config(config, str(path))


def head_channels(model) -> Optional[int]:
    """The hidden width of the Detect head's class branch (None for another head). Ultralytics derives it from the
    class count (`max(ch[0], min(nc, 100))`) but keeps a pretrained head's width when it fine-tunes for fewer
    classes: YOLOv8n from COCO (80 classes) keeps 80 where a 1-class yaml gives 64."""
    head = model.model[-1] if hasattr(model, "model") else None
    branches = getattr(head, "cv3", None)
    try:
        return int(branches[0][-1].in_channels)
    except (TypeError, IndexError, AttributeError):
        return None


def widen_head(model, config: dict, where: str) -> None:
    """Rebuild `model`'s class branch at `config['head_channels']`, as Ultralytics' own transfer does
    (`DetectionModel.load` from a model built for that many classes: the same modules, only the last convolution
    sized for this model's classes). A width no class count gives -> ValueError naming the field."""
    from ultralytics.nn.tasks import DetectionModel

    width = config["head_channels"]
    source = DetectionModel({**copy.deepcopy(config["model_yaml"]), "nc": width}, nc=width, verbose=False)
    model.load(source, verbose=False)
    if head_channels(model) != width:
        raise ValueError(f"{where}: this architecture's head cannot be {width} channels wide")


def check_config(config: object, where: str) -> dict:
    """Check a detector config dict: `model_yaml` (allowlisted, see `check_model_yaml`, and within the budgets at
    `image_size`, see `check_model_cost`), `names` (a non-empty list of strings), `image_size` (a positive int),
    `conf`/`iou` (numbers in [0, 1]), `fused` (bool). Other fields are informational and never reach a library.
    Returns `config`; a bad field -> ValueError."""
    if not isinstance(config, dict):
        raise ValueError(f"{where}: expected a JSON object")
    for key, kind in (("model_yaml", dict), ("names", list)):
        if not isinstance(config.get(key), kind):
            raise ValueError(f"{where}: field '{key}' missing or not a {kind.__name__}")
    names = config["names"]
    if not names or len(names) > MAX_CLASSES or not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"{where}: field 'names' must be a list of 1..{MAX_CLASSES} non-empty strings")
    size = config.get("image_size", DEFAULT_IMAGE_SIZE)
    if not _is_int(size) or not 0 < size <= MAX_IMAGE_SIZE:
        raise ValueError(f"{where}: field 'image_size' must be an integer in 1..{MAX_IMAGE_SIZE}, got {size!r}")
    for key in ("conf", "iou"):
        value = config.get(key, 0.5)
        if not _is_number(value) or not 0 <= value <= 1:
            raise ValueError(f"{where}: field '{key}' must be a number in [0, 1], got {value!r}")
    if not isinstance(config.get("fused", False), bool):
        raise ValueError(f"{where}: field 'fused' must be true or false")
    width = config.get("head_channels")
    if width is not None and not (_is_int(width) and 1 <= width <= MAX_YAML_CHANNELS):
        raise ValueError(f"{where}: field 'head_channels' must be an integer in 1..{MAX_YAML_CHANNELS}, got {width!r}")
    check_model_yaml(config["model_yaml"], f"{where}: field 'model_yaml'")
    check_model_cost(config["model_yaml"], len(names), size, f"{where}: field 'model_yaml'")
    return config


def check_model_yaml(model_yaml: dict, where: str = "model_yaml") -> dict:
    """Refuse an Ultralytics model yaml (as a dict) that is not plain data from the allowlist: only the keys in
    YAML_KEYS (no `activation`: Ultralytics eval()s it), layers [from, repeats, module, args] with int `from`
    (or a list of ints) pointing at earlier layers, int `repeats`, a module from MODULE_ARGS with at most its
    arguments, each of its kind and within its bound (channels, kernel, stride...; hybrid.limits); the last layer,
    and only it, a Detect head. Plain data only: no network is built (see `check_model_cost` for its size).
    Returns `model_yaml`; the first problem -> ValueError naming `where` and the field."""
    if not isinstance(model_yaml, dict):
        raise ValueError(f"{where}: expected a mapping")
    unknown = sorted(str(key) for key in model_yaml if key not in YAML_KEYS)
    if unknown:
        raise ValueError(
            f"{where}: field(s) {', '.join(map(repr, unknown))} not allowed (allowed: "
            f"{', '.join(sorted(YAML_KEYS))}; an 'activation' would be eval()ed by Ultralytics)"
        )
    nc = model_yaml.get("nc")
    if not _is_int(nc) or not 0 < nc <= MAX_CLASSES:
        raise ValueError(f"{where}: field 'nc' must be an integer in 1..{MAX_CLASSES}, got {nc!r}")
    _check_scales(model_yaml, where)
    for key in ("depth_multiple", "width_multiple"):
        value = model_yaml.get(key, 1.0)
        if not _is_number(value) or not 0 < value <= 2:
            raise ValueError(f"{where}: field '{key}' must be a number in (0, 2], got {value!r}")
    for key, check, expected in (
        ("end2end", lambda v: isinstance(v, bool), "true or false"),
        ("inplace", lambda v: isinstance(v, bool), "true or false"),
        ("reg_max", lambda v: _is_int(v) and 0 < v <= 64, "an integer in 1..64"),
        ("channels", lambda v: v == 3 and _is_int(v), "3"),
        (
            "yaml_file",
            lambda v: isinstance(v, str) and re.fullmatch(r"[\w.-]{1,64}\.ya?ml", v),
            "a plain file name like 'yolov8n.yaml'",
        ),
    ):
        if key in model_yaml and not check(model_yaml[key]):
            raise ValueError(f"{where}: field '{key}' must be {expected}, got {model_yaml[key]!r}")
    layers = []
    for part in ("backbone", "head"):
        rows = model_yaml.get(part)
        if not isinstance(rows, list) or not rows:
            raise ValueError(f"{where}: field '{part}' must be a non-empty list of [from, repeats, module, args] rows")
        layers += [(f"{part}[{i}]", row) for i, row in enumerate(rows)]
    if len(layers) > MAX_YAML_LAYERS:
        raise ValueError(f"{where}: {len(layers)} layers; at most {MAX_YAML_LAYERS} allowed")
    for index, (name, row) in enumerate(layers):
        _check_layer(row, index, index == len(layers) - 1, f"{where}: {name}")
    return model_yaml


def check_model_cost(model_yaml: dict, nc: int, image_size: int, where: str = "model_yaml") -> tuple[int, float]:
    """Refuse the network `model_yaml` (which passed `check_model_yaml`) describes, with `nc` classes, before it
    is built: over MAX_MODEL_PARAMETERS parameters, over MAX_DETECTOR_GFLOPS for one forward pass at `image_size`
    (at least BUILD_SIZE, the pass Ultralytics makes while building it), or a layer output over MAX_ACTIVATION
    elements in that pass. Measured with Ultralytics' own parse_model on PyTorch's 'meta' device, where tensors
    have shapes but no memory and no operation computes anything (~0.5 s for YOLOv8x). Returns (parameters,
    GFLOPs); over a budget -> one ValueError line naming `where` and the numbers."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from ultralytics.nn.tasks import parse_model

    size = -(-max(image_size, BUILD_SIZE) // 64) * 64  # a multiple of every stride (64: P6 models)
    try:
        with torch.device("meta"):
            layers, saved = parse_model({**copy.deepcopy(model_yaml), "nc": nc}, ch=3, verbose=False)
    except Exception as error:  # TypeError/IndexError/RuntimeError... from inside Ultralytics and torch
        raise _does_not_build(where, error) from None
    parameters = sum(parameter.numel() for parameter in layers.parameters())
    if parameters > MAX_MODEL_PARAMETERS:
        raise ValueError(
            f"{where}: the network has {parameters / 1e6:.0f} M parameters; at most "
            f"{MAX_MODEL_PARAMETERS / 1e6:.0f} M are allowed"
        )
    largest = 0

    def record(module: "nn.Module", inputs: object, output: object) -> None:
        nonlocal largest
        outputs = (
            output.values() if isinstance(output, dict) else output if isinstance(output, (list, tuple)) else [output]
        )
        largest = max([largest] + [tensor.numel() for tensor in outputs if isinstance(tensor, torch.Tensor)])

    # Some modules are shared by every network (Ultralytics' Conv.default_act is one SiLU instance), so the hooks
    # must go again, or they would stay on the real models too.
    handles = [module.register_forward_hook(record) for module in layers.modules()]
    layers.eval()
    layers[-1].training = True  # as DetectionModel's pass: the head returns its raw maps
    try:
        with FlopCounterMode(display=False) as counter:
            _run_layers(layers, saved, torch.zeros(1, 3, size, size, device="meta"))
    except Exception as error:
        raise _does_not_build(where, error) from None
    finally:
        for handle in handles:
            handle.remove()
    gflops = counter.get_total_flops() / 1e9
    if gflops > MAX_DETECTOR_GFLOPS:
        raise ValueError(
            f"{where}: one forward pass at {size} px takes {gflops:.0f} GFLOPs; at most {MAX_DETECTOR_GFLOPS} are "
            "allowed"
        )
    if largest > MAX_ACTIVATION:
        raise ValueError(
            f"{where}: one forward pass at {size} px makes a tensor of {largest / 1e6:.0f} M elements; at most "
            f"{MAX_ACTIVATION / 1e6:.0f} M are allowed"
        )
    return parameters, gflops


def _run_layers(layers: "nn.Sequential", saved: Sequence[int], x: "torch.Tensor") -> None:
    """Ultralytics' BaseModel._predict_once: each layer reads the output of the layer(s) its `f` names."""
    outputs: list = []
    for layer in layers:
        if layer.f != -1:
            x = outputs[layer.f] if isinstance(layer.f, int) else [x if j == -1 else outputs[j] for j in layer.f]
        x = layer(x)
        outputs.append(x if layer.i in saved else None)


def _does_not_build(where: str, error: Exception) -> ValueError:
    why = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return ValueError(f"{where} does not build a YOLO network ({type(error).__name__}: {why})")


def _check_scales(model_yaml: dict, where: str) -> None:
    scales, scale = model_yaml.get("scales"), model_yaml.get("scale")
    if scales is None:
        if scale is not None:
            raise ValueError(f"{where}: field 'scale' given without 'scales'")
        return
    if not isinstance(scales, dict) or not scales:
        raise ValueError(f"{where}: field 'scales' must be a mapping of scale letter -> [depth, width, max_channels]")
    for letter, values in scales.items():
        if letter not in SCALES:
            raise ValueError(f"{where}: field 'scales': unknown scale {letter!r} (known: {', '.join(sorted(SCALES))})")
        if (
            not isinstance(values, list)
            or len(values) != 3
            or not all(_is_number(v) and 0 < v <= 2 for v in values[:2])
            or not _is_int(values[2])
            or not 0 < values[2] <= MAX_YAML_CHANNELS
        ):
            raise ValueError(
                f"{where}: field 'scales.{letter}' must be [depth, width, max_channels] with depth and "
                f"width in (0, 2] and max_channels an integer in 1..{MAX_YAML_CHANNELS}, got {values!r}"
            )
    if scale is not None and scale not in scales:
        raise ValueError(f"{where}: field 'scale' must be one of {', '.join(scales)}, got {scale!r}")


def _check_layer(row: object, index: int, last: bool, where: str) -> None:
    if not isinstance(row, list) or len(row) != 4:
        raise ValueError(f"{where}: expected a row [from, repeats, module, args], got {row!r}")
    source, repeats, module, args = row
    sources = source if isinstance(source, list) else [source]
    if not sources or not all(_is_int(s) and (s == -1 if index == 0 else -index <= s < index) for s in sources):
        raise ValueError(
            f"{where}: 'from' must be an integer (or list of integers) naming an earlier layer, got {source!r}"
        )
    if not _is_int(repeats) or not 0 < repeats <= MAX_YAML_REPEATS:
        raise ValueError(f"{where}: 'repeats' must be an integer in 1..{MAX_YAML_REPEATS}, got {repeats!r}")
    if not isinstance(module, str) or module not in MODULES:
        raise ValueError(
            f"{where}: module {module!r} is not an allowed Ultralytics layer ({', '.join(sorted(MODULES))})"
        )
    if (module in HEADS) != last:
        raise ValueError(f"{where}: module {module!r}: the last layer, and only it, must be a Detect head")
    _check_args(module, args, where)


def _check_args(module: str, args: object, where: str) -> None:
    """`args` fit MODULE_ARGS[module]: no more than it lists, each of its kind (see _ARG)."""
    kinds = MODULE_ARGS[module]
    if not isinstance(args, list):
        raise ValueError(f"{where}: args must be a list, got {_short(args)}")
    if len(args) > len(kinds):
        raise ValueError(
            f"{where}: {module} takes at most {len(kinds)} argument{'s' * (len(kinds) != 1)} "
            f"[{', '.join(kind.split(':')[0] for kind in kinds)}], got {len(args)}"
        )
    for number, (value, kind) in enumerate(zip(args, kinds), 1):
        name, _, kind = kind.rpartition(":")
        check, expected = _ARG[kind]
        if not check(value):
            raise ValueError(
                f"{where}: {module} argument {number} ({name or kind}) must be {expected}, got {_short(value)}"
            )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
