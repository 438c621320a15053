"""ONE recipe loader for both trainings: one vocabulary of field names, typed validation in one place.

A recipe is a dataclass: `Recipe` holds the fields both models share (same name, same type, same meaning),
`ClassifierRecipe` and `DetectorRecipe` add their own. Values come from the dataclass defaults, then a yaml
given with `--config` (`parser.set_defaults(**yaml)`, as timm's train.py does), then command-line flags
(every field is a flag: `image_size` -> `--image-size`). Unknown yaml keys, wrong types and values out of
range raise one ValueError line naming the file or flag, before any work. The resolved recipe is saved with
the run as `recipe.yaml`.

    >>> from hybrid.training.recipe import ClassifierRecipe, load_recipe
    >>> recipe = load_recipe(ClassifierRecipe, ["--config", "train/configs/classifier.yaml", "--epochs", "3"])

Shared fields:
- `data`: list of registered names, folders or Hub ids (a comma string on the command line);
- `split`: three fractions (train, val, test) for sets without upstream splits;
- `pretrained`: 'true' (the architecture's standard weights: timm ImageNet through the Hub, as timm resolves
  them, or Ultralytics COCO: its own yolov8n.pt where Ultralytics finds or downloads it, else the weights
  folder's yolov8n-coco.pt, $HYBRID_WEIGHTS or ../shared/weights; unavailable -> one error line before any
  work), 'auto' (the same when available, else from scratch with one log line; the detector's default),
  'false' (from scratch) or a local folder/file (a detector: an Ultralytics .pt such as yolov8n.pt);
- `limit`: use N records (a seeded shuffle of all records first), then split; smoke runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import tempfile
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence, TypeVar, Union

import yaml

from hybrid.files import write_text
from hybrid.yamlfile import load_yaml

RECIPE_NAME = "recipe.yaml"
PROBE_PREFIX = ".write-probe-"  # check_output's probe (like the atomic writer's temp files, never a user's file)
PRETRAINED = ("auto", "true", "false")
MODEL_SIZES = ("n", "s", "m", "l", "x")
# YOLO.train() arguments the detector recipe sets itself: train_args may not override them.
OWN_TRAIN_ARGS = {
    "data",
    "epochs",
    "imgsz",
    "batch",
    "workers",
    "device",
    "seed",
    "deterministic",
    "patience",
    "project",
    "name",
    "exist_ok",
    "plots",
    "pretrained",
    "resume",
    "model",
    "mode",
    "task",
}
# --help text of the flags that need more than their name.
HELP = {
    "pretrained": "auto | true (no value) | false | a local folder/file. true: the architecture's standard "
    "weights (classifier: timm's ImageNet weights from the Hub repo its pretrained_cfg names, e.g. "
    "timm/resnet50.a1_in1k; detector: Ultralytics' yolov8<size>.pt), one error line when unavailable; auto: the "
    "same, else from scratch with one log line; a detector also takes an Ultralytics .pt (e.g. yolov8n.pt)",
    "keep_checkpoints": "epoch checkpoints (accelerate state with the optimizer, for --resume) left in "
    "checkpoints/ when the run ends: the newest N; 0 = none (the folder then holds the best model, its logs and "
    "metrics only, and cannot be extended with --resume). While training, the newest max(N, 1) epochs are kept "
    "and the best epoch's model; the best model becomes model.safetensors at the end",
    "background_swap": "probability (0-1) that a training crop keeps only the hand's box and gets a hand-free "
    "square of another training photo around it, so the room is not a cue (bench/generalize.py measures it)",
    "mixup": "mixup alpha, 0 = off: training batches of blended crops with blended (smoothed) labels",
    "cutmix": "cutmix alpha, 0 = off: a patch of another crop pasted in, labels by area; with --mixup, each "
    "batch gets one of the two",
    "random_convolution": "probability (0-1) that a training crop is blended (a random share) with itself "
    "filtered by a random 1x1 to 7x7 convolution drawn anew for each batch (RandConv, Xu et al., ICLR 2021): "
    "colours and textures change, shapes stay (bench/generalize.py: it lowered every number of the demo recipe)",
    "mix_style": "probability (0-1) that a training batch's feature maps after the network's first two stages "
    "get each crop's channel means and deviations mixed with another crop's (MixStyle, Zhou et al., ICLR 2021): "
    "the style of a photo (camera, light, skin) varies, its content stays; the saved network is unchanged",
    "fingers": "weight of a loss on which of the five fingers are up (one sigmoid output each), learned where "
    "annotations/fingers.json.gz has them (MediaPipe landmark labels that agree with the human count); 0 = off",
    "handedness": "weight of a loss on which hand it is (left/right, as an unmirrored photo shows it; a flipped "
    "training crop swaps it), learned where annotations/fingers.json.gz has it; 0 = off",
    "ema": "decay of an exponential moving average of the weights (timm's ModelEmaV3, warmed up), 0 = off: the "
    "average is what is validated, kept as the best epoch and saved",
}
_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping"}

R = TypeVar("R", bound="Recipe")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class Recipe:
    """The fields both trainings share. Subclasses change defaults and add their own fields."""

    data: list[str] = field(default_factory=lambda: ["hands", "roboflow"])  # registered names, folders, Hub ids
    format: Optional[str] = None  # voc | yolo | imagefolder | hagrid | hf for every data entry (default: detected)
    model: str = ""
    pretrained: str = "auto"  # auto | true | false | a local folder/file (see the module docstring)
    epochs: int = 50
    batch_size: int = 32
    num_workers: int = 0
    image_size: int = 224
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train, val, test
    limit: Optional[int] = None  # use N records (seeded shuffle first): smoke runs
    seed: int = 0
    output: str = ""
    resume: bool = False

    # Fields a new run into a folder holding a run (hybrid.training.recipe.check_run_folder) may give with another
    # value: they change neither the model nor the data it sees. Every other field must match the folder's run.
    RUN_MAY_CHANGE: ClassVar[set[str]] = {"output", "resume", "num_workers"}

    # Smallest value of each integer field. 32 px: below that ResNet's five stride-2 stages leave nothing to pool.
    MINIMUMS: ClassVar[dict[str, int]] = {
        "epochs": 1,
        "batch_size": 1,
        "image_size": 32,
        "num_workers": 0,
        "seed": 0,
        "limit": 1,
    }

    @classmethod
    def types(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self: R) -> R:
        """Raise ValueError naming the flag for a value of the wrong type or out of range (no I/O)."""
        for name, kind in self.types().items():
            _check_type(name, getattr(self, name), kind)
        for name, low in self.MINIMUMS.items():
            value = getattr(self, name)
            if value is not None and value < low:
                raise ValueError(f"{flag(name)}: expected an integer >= {low}, got {value}")
        if (
            len(self.split) != 3
            or abs(sum(self.split) - 1.0) > 1e-6
            or min(self.split) < 0
            or not (self.split[0] > 0 and self.split[1] > 0)
        ):
            raise ValueError(
                f"--split: expected three fractions (train, val > 0; test >= 0) summing to 1, got {self.split}"
            )
        if not self.data or not all(name.strip() for name in self.data):
            raise ValueError(f"--data: give at least one dataset (registered name, folder or Hub id), got {self.data}")
        from hybrid.data import FORMATS

        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.pretrained not in PRETRAINED and not Path(self.pretrained).exists():
            raise ValueError(
                f"--pretrained: expected auto, true, false or an existing folder/file, got {self.pretrained!r}"
            )
        if not self.output.strip():
            raise ValueError("--output: expected a folder path, got an empty string")
        self.check_model()
        return self

    def check_model(self) -> None:
        """The checks of one model's own fields (subclasses)."""


@dataclass
class ClassifierRecipe(Recipe):
    """One classifier run. Defaults = the original project's recipe (timm resnet50 from scratch, Adam 1e-3,
    batch 32, 50 epochs, random resized crop + horizontal flip + rotation +-15 degrees)."""

    model: str = "resnet50"  # a timm architecture
    pretrained: str = "false"
    output: str = "models/classifier"
    merge_labels: bool = True  # canonical finger-count labels across sets ('5-hand', 'five' -> '5')
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "none"  # none (the original: constant lr) | cosine
    label_smoothing: float = 0.0
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # RandomResizedCrop area range
    flip: bool = True
    rotation: float = 15.0  # degrees, 0 = off
    augment: str = "none"  # none | randaugment | trivialaugment (torchvision's policies, after flip and rotation)
    color_jitter: float = 0.0  # brightness, contrast, saturation +-x and hue +-x/4 (0 = off): skin and light
    grayscale: float = 0.0  # probability of a grey crop
    blur: float = 0.0  # probability of a Gaussian blur (sigma 0.1-2 px)
    balanced: bool = False  # draw training crops with equal odds per class (Roboflow is 47 % 'five')
    background_swap: float = 0.0  # probability that a training crop's context comes from another photo
    mixup: float = 0.0  # mixup alpha (0 = off): train on blends of two crops and of their labels
    cutmix: float = 0.0  # cutmix alpha (0 = off): a patch of another crop pasted in; with mixup, half the batches
    ema: float = 0.0  # decay of a moving average of the weights (0 = off): what is validated and saved
    random_convolution: float = 0.0  # probability that a training crop is blended with a random filter of itself
    mix_style: float = 0.0  # probability that a batch's early features swap style statistics (MixStyle)
    fingers: float = 0.0  # weight of the five finger-state losses (0 = off; labels: annotations/fingers.json.gz)
    handedness: float = 0.0  # weight of the left/right-hand loss (0 = off; same labels)
    grad_accum: int = 1
    mixed_precision: str = "auto"  # bf16 | no | auto (bf16 where the device runs it natively)
    channels_last: bool = True
    max_misclassified: int = 32  # crops in the TensorBoard misclassified grid
    keep_checkpoints: int = 1  # epoch checkpoints left in checkpoints/ when the run ends (0: none; see HELP)

    MINIMUMS: ClassVar[dict[str, int]] = {
        **Recipe.MINIMUMS,
        "grad_accum": 1,
        "max_misclassified": 0,
        "keep_checkpoints": 0,
    }
    # Fields a `--resume` may change: they change neither the model nor the data it sees. `epochs` may grow to
    # extend a run (not with the cosine schedule, planned for the original count). Every other field must match.
    RESUME_MAY_CHANGE: ClassVar[set[str]] = {
        "epochs",
        "resume",
        "output",
        "num_workers",
        "mixed_precision",
        "channels_last",
        "max_misclassified",
        "keep_checkpoints",
    }
    RUN_MAY_CHANGE: ClassVar[set[str]] = RESUME_MAY_CHANGE

    def check_model(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"--lr: expected a number > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"--weight-decay: expected a number >= 0, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"--label-smoothing: expected a number in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.rotation <= 180:
            raise ValueError(f"--rotation: expected degrees in [0, 180], got {self.rotation}")
        if self.mixed_precision not in ("bf16", "no", "auto", "fp16"):
            raise ValueError(f"--mixed-precision: expected bf16|no|auto, got {self.mixed_precision!r}")
        if self.scheduler not in ("none", "cosine"):
            raise ValueError(f"--scheduler: expected none|cosine, got {self.scheduler!r}")
        if self.augment not in ("none", "randaugment", "trivialaugment"):
            raise ValueError(f"--augment: expected none|randaugment|trivialaugment, got {self.augment!r}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"--ema: expected a decay in [0, 1) (0 = off), got {self.ema}")
        for name in ("mixup", "cutmix"):
            if getattr(self, name) < 0:
                raise ValueError(f"{flag(name)}: expected an alpha >= 0 (0 = off), got {getattr(self, name)}")
        for name in ("fingers", "handedness"):
            if not 0 <= getattr(self, name) <= 10:
                raise ValueError(
                    f"{flag(name)}: expected a loss weight in [0, 10] (0 = off), got {getattr(self, name)}"
                )
            if getattr(self, name) and (self.mixup or self.cutmix):
                raise ValueError(f"{flag(name)}: cannot be learned from mixup/cutmix blends; turn those off")
        if not 0 <= self.color_jitter <= 1:
            raise ValueError(f"--color-jitter: expected a number in [0, 1], got {self.color_jitter}")
        for name in ("grayscale", "blur", "background_swap", "random_convolution", "mix_style"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{flag(name)}: expected a probability in [0, 1], got {getattr(self, name)}")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"--crop-scale: expected 'min,max' in (0, 1], got {self.crop_scale}")
        import timm

        if not timm.is_model(self.model):
            raise ValueError(f"--model: {self.model!r} is not a timm architecture (e.g. resnet50)")


@dataclass
class DetectorRecipe(Recipe):
    """One detector run (YOLOv8 through Ultralytics)."""

    model: str = "n"  # YOLOv8 size: n | s | m | l | x
    image_size: int = 320
    batch_size: int = 16  # with --device 0,1: the total over all GPUs
    num_workers: int = 2
    output: str = "models/detector"
    gestures: bool = False  # one-stage gesture detector instead of hands-only
    device: Optional[str] = None  # cpu | 0 | 0,1 (DDP) | mps; default: Ultralytics picks
    patience: int = 50
    conf: Optional[float] = None  # score threshold stored in config.json; None: the val split's best F1
    iou: float = 0.7  # default NMS IoU stored in config.json
    plots: bool = True
    keep_work: bool = False  # keep <output>.work/ (the Ultralytics run) after success
    train_args: dict = field(default_factory=dict)  # extra YOLO.train() arguments, e.g. {"mosaic": 0.5}
    zoom_copies: int = 0  # extra training copies per image at other hand sizes (hybrid/data/zoom.py)
    zoom_span: list[float] = field(default_factory=lambda: [0.08, 0.8])  # hand width / copy width, min,max
    zoom_turn: float = 0.0  # share of the zoom copies turned a quarter (hands pointing sideways)
    zoom_photometric: float = 0.0  # share of the zoom copies made grey or blurred (half each)

    MINIMUMS: ClassVar[dict[str, int]] = {**Recipe.MINIMUMS, "patience": 1, "zoom_copies": 0}
    # Fields a --resume may give with a new value: where the run goes, not what it trains.
    RESUME_MAY_CHANGE: ClassVar[set[str]] = {"output", "resume", "keep_work"}
    RUN_MAY_CHANGE: ClassVar[set[str]] = {"output", "resume", "keep_work", "num_workers", "device", "plots"}

    def check_model(self) -> None:
        if self.model not in MODEL_SIZES:
            raise ValueError(f"--model: unknown YOLOv8 size {self.model!r}; expected one of {', '.join(MODEL_SIZES)}")
        if self.image_size % 32:
            raise ValueError(f"--image-size: must be a multiple of 32 (the YOLOv8 stride), got {self.image_size}")
        if (self.conf is not None and not 0 < self.conf < 1) or not 0 < self.iou < 1:
            raise ValueError(f"--conf/--iou: must be in (0, 1), got conf={self.conf} iou={self.iou}")
        if self.pretrained not in PRETRAINED and not Path(self.pretrained).is_file():
            raise ValueError(
                f"--pretrained: expected auto, true, false or an existing .pt file, got {self.pretrained!r}"
            )
        if len(self.zoom_span) != 2 or not 0 < self.zoom_span[0] <= self.zoom_span[1] <= 1:
            raise ValueError(f"--zoom-span: expected 'min,max' in (0, 1], got {self.zoom_span}")
        if not 0 <= self.zoom_turn <= 1:
            raise ValueError(f"--zoom-turn: expected a share in [0, 1], got {self.zoom_turn}")
        if self.zoom_turn and not self.zoom_copies:  # else the turn would be silently ignored
            raise ValueError("--zoom-turn: turns a share of the zoom copies; set --zoom-copies 1 or more too")
        if not 0 <= self.zoom_photometric <= 1:
            raise ValueError(f"--zoom-photometric: expected a share in [0, 1], got {self.zoom_photometric}")
        if self.zoom_photometric and not self.zoom_copies:
            raise ValueError(
                "--zoom-photometric: makes a share of the zoom copies grey or blurred; set --zoom-copies 1 or more too"
            )
        if self.train_args:
            check_train_args(self.train_args)


def check_train_args(train_args: dict) -> None:
    """Known Ultralytics training arguments only, not ones the recipe sets, with values of the right type."""
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

    for key in train_args:
        if key in OWN_TRAIN_ARGS:
            raise ValueError(f"--train-args: {key!r} is set by the recipe itself; use the recipe field instead")
        if key not in DEFAULT_CFG_DICT:
            raise ValueError(f"--train-args: unknown YOLO.train() argument {key!r}")
    try:
        check_cfg(dict(train_args), hard=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f"--train-args: {' '.join(str(error).split())}") from None


# --- types ---------------------------------------------------------------------------------------------


def _unwrap(kind: Any) -> tuple[Any, bool]:
    """(the type without Optional, whether None is allowed)."""
    if typing.get_origin(kind) is Union:
        rest = [k for k in typing.get_args(kind) if k is not type(None)]
        return rest[0], True
    return kind, False


def _is(value: Any, kind: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if kind is float else kind)


def _check_type(name: str, value: Any, kind: Any) -> None:
    kind, optional = _unwrap(kind)
    if value is None and optional:
        return
    if typing.get_origin(kind) is list:
        item = typing.get_args(kind)[0]
        if not isinstance(value, list) or not all(_is(v, item) for v in value):
            raise ValueError(
                f"{flag(name)}: expected a list of {'numbers' if item is float else 'strings'}, got {value!r}"
            )
    elif not _is(value, kind):
        raise ValueError(f"{flag(name)}: expected {_WORDS[kind]}, got {value!r}")


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _numbers(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like '0.8,0.1,0.1', got {text!r}") from None


def _mapping(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def normalise(cls: type[Recipe], values: dict) -> dict:
    """Yaml spellings into the recipe's types: 'a,b' -> ['a', 'b'] for lists, booleans and numbers given to a
    string field (`pretrained: true`, `device: 0`) -> their text. Anything else is left for `check`."""
    types = cls.types()
    out = dict(values)
    for name, value in values.items():
        kind, _ = _unwrap(types.get(name, Any))
        if typing.get_origin(kind) is list and isinstance(value, str):
            out[name] = _names(value) if typing.get_args(kind)[0] is str else _numbers(value)
        elif kind is str and isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif kind is str and isinstance(value, (int, float)):
            out[name] = str(value)
    return out


# --- loading ---------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one ValueError line (the entry point prints it and exits 2)."""

    def error(self, message: str) -> typing.NoReturn:
        raise ValueError(message)


def build_parser(cls: type[Recipe], description: str = "") -> argparse.ArgumentParser:
    parser = _Parser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", help="yaml recipe (its fields become the defaults that flags override)")
    for name, kind in cls.types().items():
        kind, _ = _unwrap(kind)
        if kind is bool:
            parser.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction)
        elif name == "pretrained":
            parser.add_argument(flag(name), dest=name, nargs="?", const="true", help=HELP["pretrained"])
        elif typing.get_origin(kind) is list:
            item = typing.get_args(kind)[0]
            example = "'hands,roboflow'" if item is str else "'0.8,0.1,0.1'"
            parser.add_argument(
                flag(name), dest=name, type=_names if item is str else _numbers, help=f"comma-separated, e.g. {example}"
            )
        else:
            parser.add_argument(flag(name), dest=name, type=_mapping if kind is dict else kind, help=HELP.get(name))
    return parser


def read_yaml(cls: type[Recipe], path: Path) -> dict:
    """The fields of a recipe yaml; unknown keys are an error naming the file."""
    values = load_yaml(path, where=f"--config {path}") or {}  # no aliases, bounded size and depth
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of recipe fields, got {type(values).__name__}")
    known = cls.types()
    unknown = sorted(str(key) for key in values if key not in known)
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return normalise(cls, values)


def parse_recipe(cls: type[R], argv: Optional[Sequence[str]] = None, description: str = "") -> tuple[R, set[str]]:
    """Defaults < yaml (`--config`) < flags, checked. Returns the recipe and the names of the fields the yaml or
    the flags gave (the others are the dataclass defaults). Raises ValueError with one line."""
    pre = _Parser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    parser = build_parser(cls, description)
    if known.config:
        parser.set_defaults(**read_yaml(cls, Path(known.config)))
    values = vars(parser.parse_args(argv))
    values.pop("config", None)
    recipe = cls(**normalise(cls, values))
    return recipe.check(), set(values)


def load_recipe(cls: type[R], argv: Optional[Sequence[str]] = None, description: str = "") -> R:
    """`parse_recipe`, then the output folder is checked to be creatable or writable."""
    recipe, _ = parse_recipe(cls, argv, description)
    check_output(Path(recipe.output))
    return recipe


def from_dict(cls: type[R], values: dict) -> R:
    """A recipe saved with a run (metrics.json, recipe.yaml); fields this version does not know are skipped."""
    known = cls.types()
    return cls(**normalise(cls, {k: v for k, v in values.items() if k in known}))


def check_output(out: Path) -> None:
    """The output folder must be a folder we can create or write into (checked before anything is made)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output: {out} exists and is not a folder")
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    try:  # a real probe: os.access says yes to root even where the file system refuses
        Path(tempfile.mkdtemp(prefix=PROBE_PREFIX, dir=existing)).rmdir()
    except OSError as error:
        raise ValueError(f"--output: {out}: {existing} is not a writable folder ({error.strerror})") from None


# --- a folder holding a run ------------------------------------------------------------------------------

HOW_TO_GO_ON = "choose a new or empty --output (--resume continues a stopped run of the same recipe)"


def saved_recipe(folder: Path) -> Optional[dict]:
    """The fields of the `recipe.yaml` a run saved in `folder`; None when there is none, or it is not a regular
    file of plain, bounded YAML (hybrid.yamlfile: no aliases, a FIFO never opened) holding a mapping."""
    path = Path(folder) / RECIPE_NAME
    if not os.path.lexists(path):
        return None
    try:
        values = load_yaml(path)
    except ValueError:
        return None
    return values if isinstance(values, dict) else None


def recipe_change(recipe: Recipe, saved: dict) -> Optional[str]:
    """How `saved` (a run's recipe.yaml) differs from `recipe` in a field that changes the model or its data, as
    'image_size was 32, now 48'; None when it is a run of the same recipe."""
    cls = type(recipe)
    unknown = sorted(str(key) for key in saved if key not in cls.types())
    if unknown:
        return f"its {RECIPE_NAME} has fields this trainer does not know: {', '.join(unknown[:3])}"
    try:
        theirs = from_dict(cls, saved).as_dict()  # fields an older run did not save: their defaults
    except (TypeError, ValueError):
        return f"its {RECIPE_NAME} is not a recipe of this trainer"
    for name, value in recipe.as_dict().items():
        if name not in cls.RUN_MAY_CHANGE and theirs[name] != value:
            return f"{name} was {show(theirs[name])}, now {show(value)}"
    return None


def check_run_folder(recipe: Recipe, folder: Path) -> None:
    """Refuse, before any work, to train into `folder` when it holds files and is not a run of the same recipe
    (its recipe.yaml, saved when a run starts, says which): a mistyped --output never replaces a user's files.
    Raises ValueError with one line saying how to go on."""
    folder = Path(folder)
    ours_for_now = (PROBE_PREFIX, f".{RECIPE_NAME}.")  # a concurrent process's probe, save_recipe's temp file
    if not folder.is_dir() or all(p.name.startswith(ours_for_now) for p in folder.iterdir()):
        return
    saved = saved_recipe(folder)
    shared = {f.name for f in dataclasses.fields(Recipe)} - Recipe.RUN_MAY_CHANGE  # every run's recipe.yaml has them
    if saved is None or not shared <= set(saved):
        raise ValueError(
            f"--output {folder}: holds files but no {RECIPE_NAME} of a training run, so it is not a run of this "
            f"recipe; {HOW_TO_GO_ON}"
        )
    change = recipe_change(recipe, saved)
    if change:
        raise ValueError(f"--output {folder}: holds a run of another recipe ({change}); {HOW_TO_GO_ON}")


def save_recipe(recipe: Recipe, folder: Path) -> Path:
    """The resolved recipe as `recipe.yaml` in `folder` (loadable again with `--config`)."""
    return write_text(Path(folder) / RECIPE_NAME, yaml.safe_dump(recipe.as_dict(), sort_keys=False))


def show(value: Any) -> str:
    """A recipe value as a person writes it on the command line (for error messages)."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    return json.dumps(value) if isinstance(value, (list, bool, dict)) or value is None else str(value)


# --- data ------------------------------------------------------------------------------------------------


def read_splits(recipe: Recipe, merge_labels: bool = True) -> dict[str, list]:
    """Records of every `data` entry, limited (seeded shuffle, first `limit`), split train/val/test. Raises
    ValueError naming the source when it is missing, unreadable or empty, or when train or val is empty."""
    from hybrid.data import read_dataset, split_records

    records = []
    for source in recipe.data:
        try:
            found = read_dataset(source, format=recipe.format, merge_labels=merge_labels)
        except (OSError, ValueError) as error:  # missing folder, malformed annotation (DataError), bad format
            raise ValueError(f"--data: {' '.join(str(error).split())}") from None
        if not found:
            raise ValueError(f"--data: {source} has no images")
        records += found
    if recipe.limit:
        random.Random(recipe.seed).shuffle(records)
        records = records[: recipe.limit]
    splits = split_records(records, seed=recipe.seed, fractions=tuple(recipe.split))
    for name in ("train", "val"):
        if not splits.get(name):
            raise ValueError(f"--data: the {name} split of {show(recipe.data)} is empty ({len(records)} records)")
    return splits
