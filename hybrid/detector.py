"""HandDetector: an Ultralytics YOLOv8 detection network with Hub-style loading that never unpickles.

A trained folder (or Hub repo) holds `config.json` (the Ultralytics model yaml as a dict, class names, image
size, thresholds) and `model.safetensors`. `from_pretrained` rebuilds the network from the yaml with
`ultralytics.nn.tasks.DetectionModel` and loads the tensors, so loading a downloaded repo cannot run code.
The folder also carries Ultralytics' `best.pt` for `YOLO("best.pt")` users; this class only unpickles a
`.pt` when the caller passes `allow_pickle=True`.

Example:
    >>> from hybrid import HandDetector
    >>> detector = HandDetector.from_pretrained("models/detector")  # or "org/hand-detector", revision="v1"
    >>> detector.predict("photo.jpg")
    [Detection(box=(412.0, 120.5, 530.2, 301.9), score=0.91, label='hand')]
"""
from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from hybrid.images import ImageInput, load_image

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CHECKPOINT_NAME = "best.pt"
DEFAULT_CONF = 0.25  # Ultralytics' predict defaults
DEFAULT_IOU = 0.7
DEFAULT_IMAGE_SIZE = 640
BATCH_SIZE = 16  # images per forward pass in predict()
PAD_VALUE = 114  # Ultralytics' letterbox grey


@dataclass
class Detection:
    """One detected object: `box` is (x0, y0, x1, y1) in pixels of the input image."""

    box: tuple[float, float, float, float]
    score: float
    label: str

    def to_dict(self) -> dict:
        return asdict(self)


class HandDetector:
    """A YOLOv8 detection network plus what is needed to use it: class names, image size, thresholds.

    `model` is the plain `DetectionModel` (an `nn.Module`, in eval mode) so that EigenCAM/Grad-CAM can hook
    its layers; `names` are the class names by id; `image_size` is the square input side in pixels.
    """

    def __init__(
        self,
        model: nn.Module,
        names: Sequence[str],
        image_size: int = DEFAULT_IMAGE_SIZE,
        conf: float = DEFAULT_CONF,
        iou: float = DEFAULT_IOU,
        model_yaml: Optional[dict] = None,
    ) -> None:
        self.model = model.eval()
        self.names = list(names)
        self.image_size = int(image_size)
        self.conf = float(conf)
        self.iou = float(iou)
        self.model_yaml = copy.deepcopy(model_yaml if model_yaml is not None else getattr(model, "yaml", None))
        if not self.model_yaml:
            raise ValueError("HandDetector needs the Ultralytics model yaml (model.yaml or model_yaml=...)")
        self.stride = int(max(getattr(model, "stride", torch.tensor([32.0])).tolist()))

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

        folder = snapshot(repo_or_dir, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME])
        if (folder / WEIGHTS_NAME).is_file():
            return cls._from_safetensors(folder, device)
        if allow_pickle and not path.is_dir():  # a Hub repo without safetensors: fetch its checkpoint
            folder = snapshot(repo_or_dir, revision=revision, allow_patterns=[CONFIG_NAME, CHECKPOINT_NAME])
        if (folder / CHECKPOINT_NAME).is_file():
            return cls._from_checkpoint(folder / CHECKPOINT_NAME, allow_pickle, device)
        raise FileNotFoundError(f"{repo_or_dir}: no {WEIGHTS_NAME} (nor {CHECKPOINT_NAME}) found")

    @classmethod
    def _from_safetensors(cls, folder: Path, device: Optional[str]) -> "HandDetector":
        from safetensors.torch import load_file
        from ultralytics.nn.tasks import DetectionModel

        config = read_config(folder / CONFIG_NAME)
        names = config["names"]
        model = DetectionModel(copy.deepcopy(config["model_yaml"]), nc=len(names), verbose=False)
        if config.get("fused"):
            model.fuse(verbose=False)
        try:
            state = load_file(str(folder / WEIGHTS_NAME))
            model.load_state_dict(state, strict=True)
        except (RuntimeError, OSError) as error:  # safetensors header/shape errors are RuntimeError/OSError
            raise ValueError(f"{folder / WEIGHTS_NAME}: weights do not match the model in {CONFIG_NAME}: {error}") from None
        model.names = dict(enumerate(names))
        detector = cls(model, names, config.get("image_size", DEFAULT_IMAGE_SIZE),
                       config.get("conf", DEFAULT_CONF), config.get("iou", DEFAULT_IOU), config["model_yaml"])
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
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.model.state_dict().items()}
        _atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
        text = json.dumps(self.config, indent=2)
        _atomic_write(folder / CONFIG_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return folder

    def to(self, device: Optional[Union[str, torch.device]]) -> "HandDetector":
        if device is not None:
            self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # --- inference -----------------------------------------------------------------------------------

    def preprocess(self, images: Sequence[np.ndarray], image_size: int) -> torch.Tensor:
        """RGB uint8 HxWx3 arrays -> float tensor (N, 3, S, S) in 0..1, letterboxed exactly as Ultralytics'
        predictor does (aspect kept, grey padding, centred)."""
        from ultralytics.data.augment import LetterBox

        letterbox = LetterBox((image_size, image_size), auto=False, stride=self.stride, padding_value=PAD_VALUE)
        batch = np.stack([letterbox(image=image) for image in images])
        tensor = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).contiguous()
        return tensor.float().div_(255)

    @torch.inference_mode()
    def predict(
        self,
        image_or_list: Union[ImageInput, Sequence[ImageInput]],
        conf: Optional[float] = None,
        iou: Optional[float] = None,
        image_size: Optional[int] = None,
        max_det: int = 300,
        network: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ) -> Union[list[Detection], list[list[Detection]]]:
        """Detect objects in one image (-> list of Detection) or a list of images (-> one list per image).

        Images are anything `hybrid.images.load_image` takes: a path, bytes, an RGB PIL image, or an RGB
        numpy array (not OpenCV's BGR). Boxes are pixels of the (EXIF-upright) input image. `network`
        replaces `self.model` (the same network compiled elsewhere, e.g. OpenVINO): pre- and
        post-processing stay these, so both give the same boxes.
        """
        from ultralytics.utils.nms import non_max_suppression
        from ultralytics.utils.ops import scale_boxes

        single = not isinstance(image_or_list, (list, tuple))
        sources = [image_or_list] if single else list(image_or_list)
        conf = self.conf if conf is None else float(conf)
        iou = self.iou if iou is None else float(iou)
        size = self._check_size(image_size or self.image_size)
        results: list[list[Detection]] = []
        for start in range(0, len(sources), BATCH_SIZE):
            arrays = [np.asarray(load_image(source)) for source in sources[start:start + BATCH_SIZE]]
            batch = self.preprocess(arrays, size)
            outputs = non_max_suppression((network or self.model)(batch), conf, iou, max_det=max_det)
            for array, output in zip(arrays, outputs):
                boxes = scale_boxes((size, size), output[:, :4].clone(), array.shape[:2]).cpu().tolist()
                results.append([
                    Detection(box=tuple(round(v, 2) for v in box), score=float(score), label=self.names[int(cls)])
                    for box, score, cls in zip(boxes, output[:, 4].tolist(), output[:, 5].tolist())
                ])
        return results[0] if single else results

    __call__ = predict

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
        return (f"HandDetector({self.config['architecture']}, names={self.names}, image_size={self.image_size}, "
                f"conf={self.conf}, iou={self.iou})")


def read_config(path: Path) -> dict:
    """Read and check a detector `config.json`; errors name the file and the missing field."""
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found (a detector folder needs {CONFIG_NAME} and {WEIGHTS_NAME})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    for key, kind in (("model_yaml", dict), ("names", list)):
        if not isinstance(config.get(key), kind):
            raise ValueError(f"{path}: field '{key}' missing or not a {kind.__name__}")
    return config


def _atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) on a temp file next to `path`, then rename it over `path`."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
