"""GestureClassifier: a timm image classifier + its label names + its preprocessing, in timm's Hub format.

A saved folder holds `model.safetensors` and a timm `config.json` (`architecture`, `num_classes`,
`label_names`, `pretrained_cfg`), so the same folder or Hub repo also loads with

    timm.create_model("local-dir:<dir>", pretrained=True)          # or "hf-hub:org/name"
    transformers.pipeline("image-classification", model="<dir or org/name>")

and all three use timm's own eval transform (`resolve_data_config` + `create_transform`).

Loading a folder or repo never runs code from it: only `*.json`, `*.safetensors` and `*.md` are fetched,
`config.json` is checked first (`check_config`: `architecture` a plain timm model name, `num_classes` an int,
`label_names` strings matching it, `pretrained_cfg` a mapping with well-typed preprocessing fields (a `std` in
[0.01, 10]: 0 would make every input inf), `model_args` limited to a few numeric/identifier arguments, no
`auto_map`/`trust_remote_code`-style keys, a network within the parameter and GFLOP budgets, counted on PyTorch's
'meta' device before it is built; one ValueError line naming the field otherwise), and the weights come from
`model.safetensors` only (`hybrid.hub.load_weights`: names and shapes from the header, every value finite);
nothing is unpickled. Neither file may be a symlink out of the folder (`hybrid.hub.model_file`).

Inference runs through `network` (hybrid.runtime): PyTorch by default, in `precision`; `compile()` gives a
copy of the classifier whose `predict` runs a compiled network (e.g. OpenVINO), with the same preprocessing.
Everything `predict` needs lives in `CompiledClassifier` (label names, timm's eval transform in Pillow and
numpy, the network), which imports no torch: hybrid.serving builds one from a compiled network alone.

Example:
    >>> clf = GestureClassifier.from_pretrained("models/classifier")
    >>> clf.predict("hand.jpg", top_k=3)
    [Prediction(label='5', score=0.97), Prediction(label='4', score=0.02), ...]
    >>> fast = clf.compile(backend="openvino", precision="auto")   # bf16 where the CPU computes it natively
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import numpy as np
from PIL import Image

from hybrid.calibration import calibration_for
from hybrid.files import atomic_file, write_text
from hybrid.fingers import FINGERS_NAME, count_probabilities
from hybrid.images import load_image
from hybrid.limits import MAX_CLASSIFIER_GFLOPS, MAX_CLASSIFIER_INPUT, MAX_MODEL_PARAMETERS, MAX_WEIGHT, MIN_CROP_PCT
from hybrid.runtime import Network, Precision, TorchNetwork, compile_network, parse_precision, resolve_precision

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# Fields timm copies from the ImageNet source weights that would mis-describe our weights.
_SOURCE_FIELDS = (
    "tag",
    "hf_hub_id",
    "url",
    "file",
    "source",
    "license",
    "origin_url",
    "paper_ids",
    "paper_name",
    "notes",
    "test_input_size",
    "test_crop_pct",
)

# model_args that timm passes to the model constructor: only these, with these value checks.
_MODEL_ARGS = {
    "in_chans": lambda v: v == 3 and _is_int(v),
    "global_pool": lambda v: isinstance(v, str) and re.fullmatch(r"[a-z_]{0,16}", v) is not None,
    "drop_rate": lambda v: _is_number(v) and 0 <= v < 1,
    "drop_path_rate": lambda v: _is_number(v) and 0 <= v < 1,
    "img_size": lambda v: _is_int(v) and 0 < v <= _MAX_IMAGE_SIZE,
}
_CODE_KEYS = ("auto_map", "trust_remote_code", "custom_pipelines", "code_revision", "custom_load")
_ARCHITECTURE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)?")  # timm names: 'resnet50', 'resnet50.a1_in1k'
_MAX_IMAGE_SIZE = MAX_CLASSIFIER_INPUT
_MAX_CLASSES = 100_000
_STD_RANGE = (0.01, 10)  # timm's models divide 0..1 pixels by 0.23..1; 0 makes every input inf or NaN

ImageInput = Union[str, Path, bytes, Image.Image, "numpy.ndarray"]  # noqa: F821


@dataclass
class Prediction:
    """One class of a classification: its name and its probability."""

    label: str
    score: float


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when offline mode is on or the Hub endpoint cannot be connected to within `timeout` seconds
    (the client would otherwise retry for minutes)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
    except OSError:
        return False
    return True


def default_device() -> "torch.device":
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def export_config(model: "nn.Module", label_names: Sequence[str], pretrained_cfg: dict) -> dict:
    """The config.json for `model`, written by timm's own `save_config_for_hf`, then made loadable by
    transformers 5.x too: TimmWrapper calls `create_model(..., num_classes=..., **model_args)`, so
    `model_args` must not repeat `num_classes`. Source-weight fields (ImageNet tag, licence, URLs) go."""
    from timm.models._hub import save_config_for_hf

    data_config = {
        k: pretrained_cfg[k]
        for k in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
        if k in pretrained_cfg
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CONFIG_NAME
        save_config_for_hf(model, str(path), model_config={"label_names": list(label_names)}, data_config=data_config)
        config = json.loads(path.read_text())
    model_args = {k: v for k, v in config.pop("model_args", {}).items() if k != "num_classes"}
    if model_args:
        config["model_args"] = model_args
    for key in _SOURCE_FIELDS:
        config["pretrained_cfg"].pop(key, None)
    config["pretrained_cfg"]["label_names"] = list(label_names)
    return config


def save_model(
    model: "nn.Module",
    label_names: Sequence[str],
    pretrained_cfg: dict,
    save_directory: Union[str, Path],
    outputs: Sequence[str] = (),
    count_from: str = "head",
) -> Path:
    """Write `model.safetensors` + `config.json` for `model` into `save_directory` (created; other files
    kept). Each file is written atomically (hybrid.files). A model with extra `outputs` (hybrid.fingers: the
    rows after the classes in its head) keeps them in `fingers.safetensors`, so the rest is a plain timm model,
    with `count_from` (hybrid.fingers.COUNT_FROM) in its metadata."""
    from safetensors.torch import save_file

    out = Path(save_directory)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    config = export_config(model, label_names, pretrained_cfg)
    if outputs:
        head = head_name(model)
        extra = {}
        for part in ("weight", "bias"):
            extra[part] = state[f"{head}.{part}"][len(label_names) :].contiguous()
            state[f"{head}.{part}"] = state[f"{head}.{part}"][: len(label_names)].contiguous()
        config["num_classes"] = len(label_names)
        with atomic_file(out / FINGERS_NAME) as tmp:
            save_file(extra, str(tmp), metadata={"outputs": ",".join(outputs), "count_from": count_from})
    with atomic_file(out / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    write_text(out / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    return out


def head_name(model: "nn.Module") -> str:
    """The name of the classification head's linear layer (`fc` for ResNets)."""
    head = model.get_classifier()
    return next(name for name, module in model.named_modules() if module is head)


def add_outputs(model: "nn.Module", fingers_path: Path, where: str) -> tuple[tuple[str, ...], str]:
    """Append the extra outputs in `fingers_path` (written by `save_model`) to `model`'s head; their names and
    where the count comes from (hybrid.fingers.COUNT_FROM; files without it: the count head).
    The file is checked like the weights: known names, one row each of the head's width, finite and bounded."""
    import torch
    from safetensors import SafetensorError, safe_open

    from hybrid.fingers import COUNT_FROM, OUTPUTS
    from hybrid.hub import check_safetensors_header, model_file

    check_safetensors_header(model_file(fingers_path))
    head = model.get_classifier()
    try:
        with safe_open(str(fingers_path), framework="pt") as file:
            metadata = file.metadata() or {}
            names = tuple(name for name in metadata.get("outputs", "").split(",") if name)
            if not names or len(set(names)) != len(names) or not set(names) <= set(OUTPUTS):
                raise ValueError(f"{where}: {fingers_path.name} metadata 'outputs' must name some of {OUTPUTS}")
            count_from = metadata.get("count_from", "head")
            if count_from not in COUNT_FROM:
                raise ValueError(f"{where}: {fingers_path.name} metadata 'count_from' must be one of {COUNT_FROM}")
            wanted = {"weight": (len(names), head.in_features), "bias": (len(names),)}
            shapes = {key: tuple(file.get_slice(key).get_shape()) for key in file.keys()}  # from the header
            if shapes != wanted:
                raise ValueError(f"{where}: {fingers_path.name} must hold tensors {wanted}, got {shapes}")
            tensors = {key: file.get_tensor(key) for key in wanted}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{where}: {fingers_path.name} is not a safetensors file ({_first_line(error)})") from None
    if not all(t.is_floating_point() and bool(torch.isfinite(t).all()) for t in tensors.values()) or any(
        float(t.abs().max()) > MAX_WEIGHT for t in tensors.values()
    ):
        raise ValueError(f"{where}: {fingers_path.name} holds non-float, non-finite or huge weights")
    classes = head.out_features
    model.reset_classifier(classes + len(names))
    with torch.no_grad():
        grown = model.get_classifier()
        grown.weight.copy_(torch.cat([head.weight, tensors["weight"].to(head.weight.dtype)]))
        grown.bias.copy_(torch.cat([head.bias, tensors["bias"].to(head.bias.dtype)]))
    return names, count_from


def check_config(config: object, where: str) -> dict:
    """Check a classifier `config.json` before timm sees it; returns it, or raises one ValueError line naming
    `where` and the field. Fields timm does not act on are left alone; nothing here is ever executed."""
    import timm

    if not isinstance(config, dict):
        raise ValueError(f"{where}: expected a JSON object (a timm config)")
    pretrained_cfg = config.get("pretrained_cfg")
    if not isinstance(pretrained_cfg, dict):
        raise ValueError(f"{where}: field 'pretrained_cfg' missing or not a mapping (not a timm config)")
    for key in _CODE_KEYS:
        if key in config or pretrained_cfg.get(key, False) is not False:  # timm writes custom_load: false
            raise ValueError(f"{where}: field {key!r} not allowed (a model repo is data, never code)")
    architecture = config.get("architecture")
    if (
        not isinstance(architecture, str)
        or not _ARCHITECTURE.fullmatch(architecture)
        or not timm.is_model(architecture)
    ):
        raise ValueError(
            f"{where}: field 'architecture' must be the name of a timm model (e.g. 'resnet50'), got {architecture!r}"
        )
    _check_pretrained_cfg(pretrained_cfg, where)
    num_classes = config.get("num_classes", pretrained_cfg.get("num_classes"))
    if num_classes is not None and (not _is_int(num_classes) or not 0 < num_classes <= _MAX_CLASSES):
        raise ValueError(f"{where}: field 'num_classes' must be a positive integer, got {num_classes!r}")
    _check_label_names(config.get("label_names") or pretrained_cfg.get("label_names"), num_classes, where)
    model_args = config.get("model_args", {})
    if not isinstance(model_args, dict):
        raise ValueError(f"{where}: field 'model_args' must be a mapping")
    for key, value in model_args.items():
        if key not in _MODEL_ARGS or not _MODEL_ARGS[key](value):
            raise ValueError(
                f"{where}: field 'model_args.{key}' = {value!r} not allowed (allowed: "
                f"{', '.join(sorted(_MODEL_ARGS))} with plain values)"
            )
    _check_cost(config, where)
    return config


def _check_cost(config: dict, where: str) -> None:
    """Refuse a network over MAX_MODEL_PARAMETERS parameters, or over MAX_CLASSIFIER_GFLOPS for one crop at its
    input size, before it is built: timm builds it on PyTorch's 'meta' device (shapes, no memory, no arithmetic;
    ~0.1 s for a ResNet-50) and one crop goes through it there."""
    import timm
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    num_classes = config.get("num_classes", config["pretrained_cfg"].get("num_classes"))
    arguments = {**config.get("model_args", {}), **({"num_classes": num_classes} if num_classes else {})}
    _, height, width = config["pretrained_cfg"].get("input_size", [3, 224, 224])
    try:
        with torch.device("meta"):
            model = timm.create_model(config["architecture"], pretrained=False, **arguments)
        parameters = sum(parameter.numel() for parameter in model.parameters())
        if parameters <= MAX_MODEL_PARAMETERS:
            with FlopCounterMode(display=False) as counter:
                model.eval()(torch.zeros(1, 3, height, width, device="meta"))
    except Exception as error:  # TypeError, RuntimeError... from inside timm and torch
        raise ValueError(f"{where}: does not build a timm model ({_first_line(error)})") from None
    if parameters > MAX_MODEL_PARAMETERS:
        raise ValueError(
            f"{where}: the network has {parameters / 1e6:.0f} M parameters; at most "
            f"{MAX_MODEL_PARAMETERS / 1e6:.0f} M are allowed"
        )
    gflops = counter.get_total_flops() / 1e9
    if gflops > MAX_CLASSIFIER_GFLOPS:
        raise ValueError(
            f"{where}: one crop at {height}x{width} px takes {gflops:.0f} GFLOPs; at most {MAX_CLASSIFIER_GFLOPS} "
            "are allowed"
        )


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _check_pretrained_cfg(cfg: dict, where: str) -> None:
    """The preprocessing fields timm's transforms read must have the types timm expects."""
    size = cfg.get("input_size", [3, 224, 224])
    if (
        not isinstance(size, list)
        or len(size) != 3
        or size[0] != 3
        or not all(_is_int(v) and 0 < v <= _MAX_IMAGE_SIZE for v in size)
    ):
        raise ValueError(f"{where}: field 'pretrained_cfg.input_size' must be [3, height, width], got {size!r}")
    for key, (low, high) in (("mean", (0, 1)), ("std", _STD_RANGE)):
        value = cfg.get(key, [0.5, 0.5, 0.5])
        if not isinstance(value, list) or len(value) != 3 or not all(_is_number(v) and low <= v <= high for v in value):
            raise ValueError(
                f"{where}: field 'pretrained_cfg.{key}' must be 3 numbers in [{low}, {high}], got {value!r}"
            )
    crop_pct = cfg.get("crop_pct", 1.0)
    if crop_pct is not None and (not _is_number(crop_pct) or not MIN_CROP_PCT <= crop_pct <= 2):
        raise ValueError(
            f"{where}: field 'pretrained_cfg.crop_pct' must be a number in [{MIN_CROP_PCT}, 2], got {crop_pct!r}"
        )
    for key, allowed in (
        ("interpolation", ("bilinear", "bicubic", "nearest", "random", "lanczos", "box", "hamming")),
        ("crop_mode", ("center", "squash", "border")),
    ):
        if key in cfg and cfg[key] not in allowed:
            raise ValueError(
                f"{where}: field 'pretrained_cfg.{key}' must be one of {', '.join(allowed)}, got {cfg[key]!r}"
            )


def _check_label_names(label_names: object, num_classes: Optional[int], where: str) -> None:
    if label_names is None:
        return
    names = list(label_names.values()) if isinstance(label_names, dict) else label_names
    if (
        not isinstance(names, list)
        or not all(isinstance(name, str) for name in names)
        or (isinstance(label_names, dict) and not all(str(k).isdigit() for k in label_names))
    ):
        raise ValueError(f"{where}: field 'label_names' must be a list of strings")
    if num_classes is not None and names and len(names) != num_classes:
        raise ValueError(f"{where}: field 'label_names' has {len(names)} names but num_classes is {num_classes}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def last_stage_name(model: "nn.Module") -> str:
    """The name of the module Grad-CAM should hook: ResNets' layer4[-1], else the last feature stage timm reports."""
    from torch import nn

    layer4 = getattr(model, "layer4", None)
    if isinstance(layer4, nn.Sequential) and len(layer4):
        return f"layer4.{len(layer4) - 1}"
    feature_info = getattr(model, "feature_info", None)
    if feature_info:
        return feature_info[-1]["module"]
    raise AttributeError(f"no last stage known for {type(model).__name__}; pass target_layer explicitly")


# timm's interpolation names -> Pillow's filters (torchvision resizes a PIL image with these)
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


def square_resize(data_config: dict) -> Optional[tuple[int, Image.Resampling]]:
    """(side, resampling) that timm's eval transform resizes a square image to before its centre crop; the
    pipeline cuts its crops at that size, so the transform's resize is a no-op. None where `numpy_transform` is
    (and for a config without an input size)."""
    if len(data_config.get("input_size") or ()) != 3:
        return None
    _, height, width = data_config["input_size"]
    crop_mode = data_config.get("crop_mode") or "center"
    crop_pct = data_config.get("crop_pct") or 0.875  # timm's DEFAULT_CROP_PCT
    resample = _RESAMPLE.get(data_config.get("interpolation") or "bilinear")
    if height != width or crop_mode not in ("center", "squash") or not 0 < crop_pct <= 1 or resample is None:
        return None
    return math.floor(height / crop_pct), resample


def numpy_transform(data_config: dict) -> Optional[Callable[[Image.Image], np.ndarray]]:
    """timm's eval transform for `data_config` (`create_transform(**data_config, is_training=False)`: resize,
    centre crop, to 0..1, normalise) in Pillow and numpy, RGB image -> H x W x C float32; tests check it equals
    timm's. None where timm would do what this does not (crop_mode 'border', a non-square size, crop_pct > 1)."""
    resize = square_resize(data_config)
    if resize is None:
        return None
    _, height, width = data_config["input_size"]
    crop_mode = data_config.get("crop_mode") or "center"
    scale, resample = resize
    mean, std = np.asarray(data_config["mean"], np.float32), np.asarray(data_config["std"], np.float32)

    def transform(image: Image.Image) -> np.ndarray:
        w, h = image.size
        if crop_mode == "squash":
            size = (scale, scale)
        else:  # torchvision's Resize(int): the shorter side to `scale`, the longer one truncated
            size = (scale, int(scale * h / w)) if w <= h else (int(scale * w / h), scale)
        if size != image.size:
            image = image.resize(size, resample)
        left, top = int(round((size[0] - width) / 2.0)), int(round((size[1] - height) / 2.0))  # CenterCrop
        if size != (width, height):
            image = image.crop((left, top, left + width, top + height))
        return (np.asarray(image, dtype=np.float32) / 255 - mean) / std  # ToTensor and Normalize, in float32

    return transform


class CompiledClassifier:
    """What classifying needs and nothing more: a compiled `network` (hybrid.runtime), its `label_names` and
    `data_config` (timm's preprocessing fields). No PyTorch: hybrid.serving loads one in a process without
    torch; `GestureClassifier` is one that also holds its timm model. `predict` is batched and returns
    probability-sorted `Prediction`s. `cam_weights` (classes x channels), when known: the linear map from the
    mean of the network's 'cam0' output to the logits, which makes Grad-CAM a product (hybrid.explain)."""

    def __init__(
        self,
        network: Network,
        label_names: Sequence[str],
        data_config: dict,
        cam_weights: Optional[np.ndarray] = None,
        to_array: Optional[Callable[[Image.Image], np.ndarray]] = None,
        outputs: Sequence[str] = (),
        count_from: str = "head",
    ) -> None:
        from hybrid.fingers import check_count_from

        self.network = network
        self.label_names = [str(name) for name in label_names]
        self.outputs = tuple(outputs)  # extra sigmoid outputs after the classes (hybrid.fingers.OUTPUTS)
        self.count_from = check_count_from(count_from, self.label_names, self.outputs)
        self.data_config = dict(data_config)
        self.cam_weights = cam_weights
        self.to_array = to_array or numpy_transform(self.data_config)
        if self.to_array is None:
            raise ValueError(f"this preprocessing needs timm's own transform: {self.data_config}")

    @property
    def image_size(self) -> int:
        return int(self.data_config["input_size"][-1])

    @property
    def precision(self) -> str:
        """What the network computes in: 'fp32' | 'bf16' | 'int8'."""
        return self.network.precision

    def pixel_values(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Images (paths, bytes, PIL, arrays) -> the network's input (N, 3, H, W) float32, a channels-last view."""
        return np.stack([self.to_array(load_image(image)) for image in images]).transpose(0, 3, 1, 2)

    def probabilities(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Class probabilities (N, num_classes), float32, from one batched forward pass."""
        return self.scores(images)[0]

    def scores(self, images: Sequence[ImageInput]) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities (N, num_classes) and the probabilities of the extra `outputs` (N, len(outputs):
        each finger up, the right hand), float32, from one batched forward pass."""
        classes = len(self.label_names)
        if not images:
            return np.zeros((0, classes), np.float32), np.zeros((0, len(self.outputs)), np.float32)
        logits = self.network.run(self.pixel_values(images)).astype(np.float32)
        counts = logits[:, :classes]
        exp = np.exp(counts - counts.max(axis=-1, keepdims=True))
        extra = 1.0 / (1.0 + np.exp(-logits[:, classes:]))
        return count_probabilities(exp / exp.sum(axis=-1, keepdims=True), extra, self), extra

    def predict(self, images: Union[ImageInput, Sequence[ImageInput]], top_k: int = 5):
        """Top-k predictions, most probable first: a list for one image, a list of lists for a list."""
        single = not isinstance(images, (list, tuple))
        batch = [images] if single else list(images)
        results = self.ranked(self.probabilities(batch), top_k)
        return results[0] if single else results

    def ranked(self, probabilities: np.ndarray, top_k: int = 5) -> list[list[Prediction]]:
        """The top-k `Prediction`s of each row of class probabilities, most probable first."""
        k = max(1, min(int(top_k), len(self.label_names)))
        best = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
        return [
            [Prediction(self.label_names[i], float(row[i])) for i in order] for row, order in zip(probabilities, best)
        ]

    def __repr__(self) -> str:
        return (
            f"CompiledClassifier({len(self.label_names)} classes, image_size={self.image_size}, "
            f"network={self.network!r})"
        )


class GestureClassifier(CompiledClassifier):
    """A timm classifier with its label names and preprocessing. `predict` is batched and returns
    probability-sorted `Prediction`s; `target_layer` is the last stage for Grad-CAM. `network` runs the
    forward pass (PyTorch in `precision` here; see `compile`), `model` stays the PyTorch module."""

    def __init__(
        self,
        model: "nn.Module",
        label_names: Sequence[str],
        pretrained_cfg: dict,
        device: Union[str, "torch.device", None] = None,
        precision: str = "auto",
        outputs: Sequence[str] = (),
        count_from: str = "head",
    ) -> None:
        import timm.data
        import torch

        num_classes = getattr(model, "num_classes", None)
        if num_classes is not None and num_classes != len(label_names) + len(outputs):
            raise ValueError(
                f"model has {num_classes} outputs but {len(label_names)} label_names and {len(outputs)} extra "
                "outputs were given"
            )
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        if self.device.type != "mps":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.pretrained_cfg = dict(pretrained_cfg)
        self.folder: Optional[Path] = None  # where from_pretrained found it (its split.json calibrates int8)
        # Exactly what transformers' TimmWrapperImageProcessor does, so all loaders agree.
        data_config = timm.data.resolve_data_config(self.pretrained_cfg, model=None, verbose=False)
        self.transform = timm.data.create_transform(**data_config, is_training=False)
        network = TorchNetwork(self.model, resolve_precision(precision, self.device))
        super().__init__(
            network,
            label_names,
            data_config,
            to_array=numpy_transform(data_config) or self._timm_array,
            outputs=outputs,
            count_from=count_from,
        )

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        architecture: str,
        label_names: Sequence[str],
        image_size: int = 224,
        pretrained: Union[bool, str, Path] = False,
        crop_pct: float = 1.0,
        interpolation: str = "bilinear",
        device: Union[str, "torch.device", None] = None,
        precision: str = "auto",
        outputs: Sequence[str] = (),
        **model_kwargs,
    ) -> "GestureClassifier":
        """A new classifier for `label_names`. `pretrained`: True = timm's ImageNet weights (when the Hub
        is unreachable: one log line, random init); a path = weights from a local folder or file (the
        classification head is re-initialised when the class count differs). `outputs`: extra sigmoid outputs
        (hybrid.fingers.OUTPUTS) after the classes."""
        import timm

        num_classes = len(label_names) + len(outputs)
        model = None
        if pretrained and not isinstance(pretrained, bool):
            source = Path(pretrained)
            weights = source / WEIGHTS_NAME if source.is_dir() else source
            if not weights.is_file():
                raise FileNotFoundError(f"pretrained weights not found: {weights}")
            model = timm.create_model(
                architecture,
                pretrained=True,
                num_classes=num_classes,
                pretrained_cfg_overlay={"file": str(weights)},
                **model_kwargs,
            )
        elif pretrained and not hub_reachable():
            logger.warning(
                "ImageNet weights for %s: the Hub is unreachable (or HF_HUB_OFFLINE=1); training from scratch",
                architecture,
            )
        elif pretrained:
            try:
                model = timm.create_model(architecture, pretrained=True, num_classes=num_classes, **model_kwargs)
            except Exception as exc:  # offline / Hub unreachable: any download error
                logger.warning(
                    "ImageNet weights for %s unavailable (%s: %s); training from scratch",
                    architecture,
                    type(exc).__name__,
                    str(exc).splitlines()[0][:120] if str(exc) else "",
                )
        if model is None:
            model = timm.create_model(architecture, pretrained=False, num_classes=num_classes, **model_kwargs)
        cfg = {k: v for k, v in model.pretrained_cfg.items() if k not in _SOURCE_FIELDS}
        cfg.update(
            input_size=(3, image_size, image_size),
            crop_pct=crop_pct,
            crop_mode="center",
            interpolation=interpolation,
            num_classes=len(label_names),
            pool_size=None,
        )
        return cls(model, label_names, cfg, device=device, precision=precision, outputs=outputs)

    @classmethod
    def from_pretrained(
        cls,
        repo_or_dir: Union[str, Path],
        revision: Optional[str] = None,
        device: Union[str, "torch.device", None] = None,
        precision: str = "auto",
    ) -> "GestureClassifier":
        """Load a folder, or a Hub repo id (`org/name` or `org/name@rev`, optional `revision`), written by
        `save_pretrained` or by timm's `push_to_hf_hub`. Only safetensors weights are read."""
        import timm

        from hybrid.hub import load_weights, model_file, read_model_json, snapshot

        folder = snapshot(repo_or_dir, revision=revision, allow_patterns=["*.json", "*.safetensors", "*.md"])
        config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.exists():
                raise FileNotFoundError(f"{repo_or_dir}: {path.name} missing in {folder}")
            model_file(path)  # a regular file, not a link out of the folder
        config = check_config(read_model_json(config_path), str(config_path))  # and within the budgets
        try:
            model = timm.create_model(f"local-dir:{folder}", pretrained=False)
        except Exception as error:  # TypeError, RuntimeError... from inside timm
            raise ValueError(f"{config_path}: does not build a timm model ({_first_line(error)})") from None
        load_weights(weights_path, model, CONFIG_NAME)  # names, shapes and finite values checked
        fingers_path = folder / FINGERS_NAME
        outputs, count_from = ((), "head")
        if os.path.lexists(fingers_path):
            outputs, count_from = add_outputs(model, fingers_path, str(repo_or_dir))
        label_names = config.get("label_names") or config["pretrained_cfg"].get("label_names")
        if not label_names:
            label_names = [str(i) for i in range(model.num_classes)]
            logger.warning("%s: no label_names in config; using class indices", config_path)
        if isinstance(label_names, dict):  # timm allows {index: name} when ids have gaps
            label_names = [label_names[k] for k in sorted(label_names, key=int)]
        pretrained_cfg = dict(config["pretrained_cfg"])
        pretrained_cfg.setdefault("num_classes", config.get("num_classes", model.num_classes - len(outputs)))
        classifier = cls(
            model,
            label_names,
            pretrained_cfg,
            device=device,
            precision=precision,
            outputs=outputs,
            count_from=count_from,
        )
        classifier.folder = folder
        return classifier

    def save_pretrained(self, save_directory: Union[str, Path]) -> Path:
        """Write `model.safetensors` + `config.json` into `save_directory` (created; other files kept).
        Each file is written to a temporary name first and then renamed into place."""
        return save_model(
            self.model, self.label_names, self.pretrained_cfg, save_directory, self.outputs, self.count_from
        )

    # --- inference ------------------------------------------------------------------------------

    @property
    def target_layer(self) -> "nn.Module":
        """The last convolutional stage (`model.layer4[-1]` for ResNets), the usual Grad-CAM target."""
        return self.model.get_submodule(last_stage_name(self.model))

    def compile(
        self,
        backend: str = "auto",
        precision: Optional[str] = None,
        cache_dir: Union[str, Path, None] = None,
        threads: Optional[int] = None,
    ) -> "GestureClassifier":
        """A copy of this classifier (sharing `model`) whose network runs on `backend` ('auto' | 'torch' |
        'openvino', see hybrid.runtime) in `precision` ('auto' | 'fp32' | 'bf16' | 'int8'; default: this one's).
        int8 is calibrated on the hand crops of this model's training split (hybrid.calibration)."""
        precision = parse_precision(precision or self.precision)
        calibration = None
        if precision in (Precision.AUTO, Precision.INT8):
            calibration = calibration_for(self.folder, "classifier", self.image_size, self.pixel_values)
        compiled = copy.copy(self)
        compiled.network = compile_network(
            self.model,
            "classifier",
            self.image_size,
            self.device,
            backend,
            precision,
            cache_dir,
            threads,
            calibration,
            cam_layers=[last_stage_name(self.model)],
        )
        return compiled

    def preprocess(self, images: Sequence[ImageInput]) -> "torch.Tensor":
        """Images (paths, bytes, PIL, arrays) -> a normalised batch (N, 3, H, W), channels-last, on `self.device`.

        The transform runs in Pillow and numpy (`numpy_transform`, equal to timm's): torch ops here would wake
        torch's thread pool, whose waiting threads then take the cores from OpenVINO (the shipped path ran its
        networks ~1.7x slower)."""
        import torch

        return torch.from_numpy(self.pixel_values(images)).to(self.device)  # an NCHW view, channels-last

    def _timm_array(self, image: Image.Image) -> np.ndarray:
        """timm's transform as it is (where `numpy_transform` does not cover the config), H x W x C."""
        return self.transform(image).permute(1, 2, 0).numpy()

    def __repr__(self) -> str:
        arch = self.pretrained_cfg.get("architecture") or type(self.model).__name__
        return (
            f"GestureClassifier({arch}, {len(self.label_names)} classes, image_size={self.image_size}, "
            f"device={self.device}, precision={self.precision})"
        )
