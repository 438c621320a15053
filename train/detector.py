"""Train the YOLOv8 hand detector (or, with --gestures, a one-stage gesture detector) with Ultralytics.

    python train/detector.py --config train/configs/detector.yaml [--key value ...]

Every field of the recipe yaml is also a flag (`image_size` -> `--image-size`); flags win. Steps:
1. read the datasets with `hybrid.data.read_dataset` (any reader: VOC, YOLO, HaGRID, image folder, HF), split
   them with `split_records` (upstream splits kept) and write a YOLO dataset (one class 'hand' unless
   --gestures, whose labels are merged across sets with `canonical_label`);
2. train `yolov8{n,s,m}` from `yolov8n.pt` (COCO) when it can be fetched, else from scratch (one log line);
   TensorBoard events are written next to the run without touching the user's Ultralytics settings;
3. evaluate best.pt on the held-out test split and write the output folder (atomically, via a temp dir):
   best.pt, model.safetensors + config.json (loadable without pickle by `hybrid.HandDetector`),
   metrics.json, README.md (model card), pr_curve.png, runs/ (TensorBoard events, results.csv, args.yaml).

The Ultralytics run lives in `<output>.work/` until the folder is written; `--resume` continues it from
`<output>.work/train/weights/last.pt`.

Multi-GPU: `--device 0,1` uses Ultralytics' own DDP (it launches one process per GPU itself; do not wrap
this script in torchrun or accelerate). `--batch` is then the total batch over all GPUs. TensorBoard
logging in the DDP worker processes goes through Ultralytics' TensorBoard callback, switched on in a
temporary copy of the settings (YOLO_CONFIG_DIR), so the user's own settings file is never changed.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python train/detector.py` from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

log = logging.getLogger("train.detector")

MODEL_SIZES = ("n", "s", "m", "l", "x")


@dataclass
class Recipe:
    """One training recipe: the fields of train/configs/detector*.yaml (each also a command-line flag)."""

    data: list[str] = field(default_factory=lambda: ["hands", "roboflow"])  # folders or registered names
    format: Optional[str] = None  # reader format for every --data entry (default: detected)
    gestures: bool = False  # one-stage gesture detector instead of hands-only
    limit: Optional[int] = None  # at most N images in all, spread over the splits (smoke runs)
    model: str = "n"  # YOLOv8 size: n | s | m | l | x
    pretrained: str = "auto"  # auto (yolov8<size>.pt when reachable) | none | path/to/weights.pt
    epochs: int = 50
    image_size: int = 320
    batch: int = 16
    workers: int = 2
    device: Optional[str] = None  # cpu | 0 | 0,1 (DDP) | mps; default: Ultralytics picks
    seed: int = 0
    patience: int = 50
    conf: float = 0.25  # default score threshold stored in config.json
    iou: float = 0.7  # default NMS IoU stored in config.json
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # for sets without splits
    plots: bool = True
    output: str = "models/detector"
    resume: bool = False
    keep_work: bool = False  # keep <output>.work/ (the Ultralytics run) after success
    train_args: dict = field(default_factory=dict)  # extra YOLO.train() arguments, e.g. {"mosaic": 0.5}

    def check(self) -> "Recipe":
        """Raise ValueError naming the field for values that cannot work (no I/O but the output probe)."""
        for name in ("epochs", "image_size", "batch", "workers", "seed", "patience", "limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name}: expected an integer, got {value!r}")
        for name in ("gestures", "plots", "resume", "keep_work"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected true or false, got {getattr(self, name)!r}")
        for name in ("model", "pretrained", "output", "format", "device"):
            if not isinstance(getattr(self, name), str) and not (name in ("format", "device")
                                                                 and getattr(self, name) is None):
                raise ValueError(f"{name}: expected a string, got {getattr(self, name)!r}")
        if not isinstance(self.data, list) or not all(isinstance(d, str) and d.strip() for d in self.data):
            raise ValueError(f"data: expected a list of dataset folders or registered names, got {self.data!r}")
        if not isinstance(self.split_fractions, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.split_fractions):
            raise ValueError(f"split_fractions: expected three numbers, got {self.split_fractions!r}")
        for name in ("conf", "iou"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), (int, float)):
                raise ValueError(f"{name}: expected a number, got {getattr(self, name)!r}")
        if not isinstance(self.train_args, dict):
            raise ValueError(f"train_args: expected a mapping of YOLO.train() arguments, got {self.train_args!r}")
        if self.model not in MODEL_SIZES:
            raise ValueError(f"model: unknown YOLOv8 size {self.model!r}; expected one of {', '.join(MODEL_SIZES)}")
        if not self.data:
            raise ValueError("data: give at least one dataset folder or registered name")
        for name in ("epochs", "image_size", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be a positive integer, got {getattr(self, name)}")
        if self.image_size % 32:
            raise ValueError(f"image_size: must be a multiple of 32 (the YOLOv8 stride), got {self.image_size}")
        if self.limit is not None and self.limit < 3:
            raise ValueError(f"limit: needs at least 3 images (train, val, test), got {self.limit}")
        if not 0 < self.conf < 1 or not 0 < self.iou < 1:
            raise ValueError(f"conf/iou: must be in (0, 1), got conf={self.conf} iou={self.iou}")
        if (len(self.split_fractions) != 3 or abs(sum(self.split_fractions) - 1) > 1e-6
                or min(self.split_fractions) < 0 or not (self.split_fractions[0] > 0 and self.split_fractions[1] > 0)):
            raise ValueError(f"split_fractions: three fractions (train, val > 0; test >= 0) summing to 1, "
                             f"got {self.split_fractions}")
        for name, low in (("workers", 0), ("seed", 0), ("patience", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {getattr(self, name)}")
        from hybrid.data import FORMATS

        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.pretrained not in ("auto", "none") and not Path(self.pretrained).is_file():
            raise ValueError(f"pretrained: expected auto, none or an existing .pt file, got {self.pretrained!r}")
        if self.train_args:
            check_train_args(self.train_args)
        check_output(Path(self.output))
        return self


# YOLO.train() arguments this script sets itself: train_args may not override them.
OWN_TRAIN_ARGS = {"data", "epochs", "imgsz", "batch", "workers", "device", "seed", "deterministic", "patience",
                  "project", "name", "exist_ok", "plots", "pretrained", "resume", "model", "mode", "task"}
# Fields a --resume may give with a new value: where the run goes, not what it trains.
RESUME_MAY_CHANGE = {"output", "resume", "keep_work"}


def check_train_args(train_args: dict) -> None:
    """Known Ultralytics training arguments only, not ones this script sets, with values of the right type."""
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

    for key in train_args:
        if key in OWN_TRAIN_ARGS:
            raise ValueError(f"train_args: {key!r} is set by the recipe itself; use the recipe field instead")
        if key not in DEFAULT_CFG_DICT:
            raise ValueError(f"train_args: unknown YOLO.train() argument {key!r}")
    try:
        check_cfg(dict(train_args), hard=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f"train_args: {' '.join(str(error).split())}") from None


def check_output(out: Path) -> None:
    """The output folder must be a folder that can be created or written (a real probe, removed again)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"output: {out} exists and is not a folder")
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    try:
        Path(tempfile.mkdtemp(prefix=".write-probe-", dir=existing)).rmdir()
    except OSError as error:
        raise ValueError(f"output: {out}: {existing} is not a writable folder ({error.strerror})") from None


# --- configuration ----------------------------------------------------------------------------------------

def _flag_type(spec):
    def convert(text: str):
        if spec.type in ("bool", bool):
            lowered = text.lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no"):
                raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")
            return lowered in ("1", "true", "yes")
        if spec.name == "train_args":
            try:
                return json.loads(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}") from None
        if spec.name in ("epochs", "image_size", "batch", "workers", "seed", "patience", "limit"):
            return int(text)
        if spec.name in ("conf", "iou"):
            return float(text)
        return text
    return convert


def parse_recipe(argv: Optional[list[str]] = None) -> Recipe:
    """--config yaml, then flags on top. Unknown yaml fields are an error naming the file and field."""
    recipe, _ = parse_recipe_and_given(argv)
    return recipe


def parse_recipe_and_given(argv: Optional[list[str]] = None) -> tuple[Recipe, set[str]]:
    """The recipe and the names of the fields the yaml or the flags gave (the rest are defaults)."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(argv)
    values: dict = {}
    if known.config:
        try:
            values = yaml.safe_load(known.config.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise FileNotFoundError(f"--config {known.config}: file not found") from None
        except yaml.YAMLError as error:
            raise ValueError(f"{known.config}: not valid YAML ({error})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{known.config}: expected a mapping of recipe fields")
        unknown = sorted(set(values) - {f.name for f in fields(Recipe)})
        if unknown:
            raise ValueError(f"{known.config}: unknown field(s) {', '.join(unknown)}; known: "
                             f"{', '.join(f.name for f in fields(Recipe))}")

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[pre], allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for spec in fields(Recipe):
        flag = "--" + spec.name.replace("_", "-")
        if spec.name in ("data", "split_fractions"):
            kind = float if spec.name == "split_fractions" else str
            parser.add_argument(flag, nargs="+", type=kind, default=argparse.SUPPRESS)
        elif spec.type in ("bool", bool) and spec.name in ("gestures", "resume", "keep_work", "plots"):
            # --gestures / --no-gestures
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS)
        else:
            parser.add_argument(flag, type=_flag_type(spec), default=argparse.SUPPRESS)
    args = vars(parser.parse_args(argv))
    args.pop("config", None)
    values.update(args)
    if isinstance(values.get("data"), str):
        values["data"] = [values["data"]]
    if values.get("device") is not None:
        values["device"] = str(values["device"])
    if values.get("pretrained") in (True, False):
        values["pretrained"] = "auto" if values["pretrained"] else "none"
    if values.get("limit") == 0:
        values["limit"] = None
    try:
        recipe = Recipe(**values)
    except TypeError as error:
        raise ValueError(f"recipe: {error}") from None
    return recipe.check(), set(values)


# --- data -------------------------------------------------------------------------------------------------

def read_splits(recipe: Recipe) -> dict[str, list]:
    """Read every --data entry, split, cap with --limit. Raises ValueError/FileNotFoundError naming the source
    when it is missing, unreadable or empty, or when the train or val split comes out empty."""
    from hybrid.data import read_dataset, split_records

    splits: dict[str, list] = {"train": [], "val": [], "test": []}
    for name in recipe.data:
        try:
            records = read_dataset(name, format=recipe.format, merge_labels=True)
        except (OSError, ValueError) as error:
            raise ValueError(f"data: {error}") from None
        if not records:
            raise ValueError(f"data: {name} has no images")
        for split, items in split_records(records, seed=recipe.seed, fractions=tuple(recipe.split_fractions)).items():
            splits[split].extend(items)
    if recipe.limit:
        total = sum(len(items) for items in splits.values())
        splits = {split: items[:max(1, math.floor(recipe.limit * len(items) / total))] if items else items
                  for split, items in splits.items()}
    for split in ("train", "val"):
        if not splits[split]:
            raise ValueError(f"data: no images in the {split} split of {', '.join(recipe.data)}")
    return splits


def build_yolo_dataset(recipe: Recipe, out_dir: Path, splits: Optional[dict[str, list]] = None) -> tuple[Path, dict]:
    """Write the YOLO dataset of `splits` (default: read_splits(recipe)). Returns (data.yaml, stats)."""
    from hybrid.data import write_yolo_dataset

    splits = read_splits(recipe) if splits is None else splits
    if not splits["test"]:
        log.warning("data: no test split; metrics.json will report the val split")
    stats = {split: {"images": len(items), "boxes": sum(len(r.boxes) for r in items)} for split, items in splits.items()}
    log.info("dataset: %s", ", ".join(f"{s} {v['images']} images / {v['boxes']} boxes" for s, v in stats.items()))
    return Path(write_yolo_dataset(splits, out_dir, gestures=recipe.gestures)), stats


# --- model ------------------------------------------------------------------------------------------------

def _online() -> bool:
    if os.environ.get("YOLO_OFFLINE", "").lower() in ("1", "true") or os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    from ultralytics.utils import ONLINE

    return ONLINE


def build_model(recipe: Recipe):
    """YOLO from pretrained COCO weights when asked and reachable, else from the yaml (random init).
    `model.initialisation` says which (it goes into metrics.json and the card)."""
    from ultralytics import YOLO

    architecture = f"yolov8{recipe.model}"
    wanted = recipe.pretrained
    if wanted != "none":
        weights = f"{architecture}.pt" if wanted == "auto" else wanted
        if Path(weights).is_file() or (wanted == "auto" and _online()):
            try:
                model = YOLO(weights)
                model.initialisation = f"pretrained: {Path(weights).name}"
                return model
            except Exception as error:  # download failures come as ConnectionError, FileNotFoundError, ...
                log.warning("pretrained weights %s unavailable (%s): training %s from scratch",
                            weights, str(error).strip().splitlines()[0], architecture)
        elif wanted == "auto":
            log.warning("offline: %s.pt (COCO) cannot be downloaded, training %s from scratch", architecture, architecture)
        else:
            raise FileNotFoundError(f"pretrained: {wanted} not found")
    model = YOLO(f"{architecture}.yaml")
    model.initialisation = f"random (from {architecture}.yaml)"
    return model


class TensorBoardLogger:
    """Ultralytics callbacks writing TensorBoard scalars into the run folder. Registered on the model for
    this run only, so the user's Ultralytics settings (`tensorboard: false` by default) stay as they are."""

    def __init__(self) -> None:
        self.writer = None

    def register(self, model) -> None:
        model.add_callback("on_pretrain_routine_start", self.start)
        model.add_callback("on_train_epoch_end", self.train_epoch_end)
        model.add_callback("on_fit_epoch_end", self.fit_epoch_end)
        model.add_callback("on_train_end", self.close)
        model.add_callback("teardown", self.close)

    def start(self, trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(trainer.save_dir))

    def _scalars(self, values: dict, step: int) -> None:
        if self.writer:
            for key, value in values.items():
                self.writer.add_scalar(key, float(value), step)

    def train_epoch_end(self, trainer) -> None:
        self._scalars(trainer.label_loss_items(trainer.tloss, prefix="train"), trainer.epoch + 1)
        self._scalars(trainer.lr, trainer.epoch + 1)

    def fit_epoch_end(self, trainer) -> None:
        self._scalars(trainer.metrics, trainer.epoch + 1)
        if self.writer:
            self.writer.flush()

    def close(self, trainer=None) -> None:
        if self.writer:
            self.writer.close()
            self.writer = None


def _ddp(device: Optional[str]) -> bool:
    return device is not None and len([d for d in str(device).split(",") if d.strip()]) > 1


def _enable_ultralytics_tensorboard_for_ddp() -> None:
    """DDP workers are fresh processes that only see Ultralytics' own callbacks: switch its TensorBoard
    callback on in a temporary copy of the settings (YOLO_CONFIG_DIR is inherited by the workers)."""
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    config_dir = Path(tempfile.mkdtemp(prefix="yolo-config-"))
    for item in USER_CONFIG_DIR.glob("*.ttf"):  # fonts already downloaded: no new downloads
        shutil.copy2(item, config_dir / item.name)
    settings = dict(SETTINGS)
    settings["tensorboard"] = True
    (config_dir / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)


# --- output -----------------------------------------------------------------------------------------------

def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def evaluate(best: Path, data_yaml: Path, recipe: Recipe, work: Path, split: str) -> tuple[dict, Optional[Path]]:
    """Ultralytics val of best.pt on `split`: precision, recall, mAP50, mAP50-95, ms per image."""
    from ultralytics import YOLO

    device = recipe.device.split(",")[0] if recipe.device else None  # validation runs on one device
    results = YOLO(str(best)).val(
        data=str(data_yaml), split=split, imgsz=recipe.image_size, batch=recipe.batch, device=device,
        plots=recipe.plots, project=str(work), name=f"eval-{split}", exist_ok=True, verbose=False,
        workers=0 if _ddp(recipe.device) else recipe.workers,
    )
    box = results.box
    metrics = {
        "split": split,
        "precision": round(float(box.mp), 4),
        "recall": round(float(box.mr), 4),
        "mAP50": round(float(box.map50), 4),
        "mAP50-95": round(float(box.map), 4),
        "image_size": recipe.image_size,
        "speed_ms_per_image": {k: round(float(v), 2) for k, v in results.speed.items()},
        "per_class_mAP50-95": {results.names[int(c)]: round(float(m), 4)
                               for c, m in zip(box.ap_class_index, box.maps[box.ap_class_index])},
    }
    curve = next(iter(sorted(Path(results.save_dir).glob("*PR_curve.png"))), None)
    return metrics, curve


def write_card(folder: Path, recipe: Recipe, metrics: dict, names: list[str], stats: dict, has_curve: bool) -> None:
    from huggingface_hub import EvalResult

    from hybrid.hub import render_card

    from hybrid.data.registry import citations as dataset_citations

    citations = dataset_citations(recipe.data)
    kind = "gesture detector (one stage)" if recipe.gestures else "hand detector"
    model_name = f"YOLOv8{recipe.model} {kind}"
    dataset_name = " + ".join(recipe.data)
    eval_results = [
        EvalResult(task_type="object-detection", dataset_type="hybrid-hands", dataset_name=dataset_name,
                   dataset_split=metrics["split"], metric_type=metric_type, metric_name=label,
                   metric_value=metrics[key])
        for key, metric_type, label in (("mAP50", "mAP@0.5", "mAP50"), ("mAP50-95", "mAP@0.5:0.95", "mAP50-95"),
                                        ("precision", "precision", "precision"), ("recall", "recall", "recall"))
    ]
    card_data = {
        "license": "agpl-3.0",
        "library_name": "ultralytics",
        "pipeline_tag": "object-detection",
        "tags": ["yolov8", "ultralytics", "object-detection", "hand-detection", "hand-gesture", "safetensors"],
        "model_name": model_name,
        "eval_results": eval_results,
        "datasets": [c["name"] for c in citations],
    }
    card = render_card("detector", card_data, model_name=model_name, recipe=asdict(recipe), metrics=metrics,
                       names=names, stats=stats, datasets=citations, has_curve=has_curve, gestures=recipe.gestures)
    (folder / "README.md").write_text(str(card), encoding="utf-8")


def export_folder(recipe: Recipe, run_dir: Path, data_yaml: Path, stats: dict, work: Path,
                  initialisation: str) -> Path:
    """Build the output folder in a temp dir next to it, then move it into place."""
    from hybrid.detector import CHECKPOINT_NAME, HandDetector

    output = Path(recipe.output).resolve()
    best = run_dir / "weights" / "best.pt"
    if not best.is_file():
        best = run_dir / "weights" / "last.pt"
    split = "test" if stats["test"]["images"] else "val"
    metrics, curve = evaluate(best, data_yaml, recipe, work, split)
    metrics.update({"images": stats[split]["images"], "boxes": stats[split]["boxes"], "dataset_sizes": stats,
                    "datasets": recipe.data, "model": f"yolov8{recipe.model}", "gestures": recipe.gestures,
                    "initialisation": initialisation, "epochs_trained": _epochs_trained(run_dir)})

    output.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    build.chmod(0o755)  # mkdtemp makes 0700
    try:
        shutil.copy2(best, build / CHECKPOINT_NAME)
        detector = HandDetector.from_pretrained(build / CHECKPOINT_NAME, allow_pickle=True)
        detector.image_size, detector.conf, detector.iou = recipe.image_size, recipe.conf, recipe.iou
        detector.save_pretrained(build)
        metrics["classes"] = detector.names
        (build / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2), encoding="utf-8")
        if curve:
            shutil.copy2(curve, build / "pr_curve.png")
        runs = build / "runs"
        runs.mkdir()
        for item in run_dir.iterdir():  # TensorBoard events, results.csv, args.yaml, training plots
            if item.is_file() and (item.name.startswith("events.out.tfevents") or item.suffix in (".csv", ".yaml", ".png")):
                shutil.copy2(item, runs / item.name)
        write_card(build, recipe, metrics, detector.names, stats, curve is not None)
        _replace_dir(build, output)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return output


def _epochs_trained(run_dir: Path) -> int:
    """Epochs in results.csv (a time budget, early stopping or a resume make it differ from --epochs)."""
    import csv

    try:
        with open(run_dir / "results.csv", newline="") as handle:
            return len({row["epoch"].strip() for row in csv.DictReader(handle)})
    except (OSError, KeyError):
        return 0


def _replace_dir(new: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(new, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


# --- main -------------------------------------------------------------------------------------------------

def check_resume(recipe: Recipe, work: Path, given: Optional[set[str]] = None) -> dict:
    """The interrupted run's recipe, after checking that `recipe` asks for nothing different: Ultralytics resumes
    with the checkpoint's own arguments, so a changed field would be silently ignored. Only the fields in
    `given` (the ones the yaml or flags set; default: all) are compared."""
    last = work / "train" / "weights" / "last.pt"
    if not last.is_file():
        raise FileNotFoundError(f"--resume: no interrupted run at {last}")
    try:
        saved = json.loads((work / "recipe.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ValueError(f"--resume: {work / 'recipe.json'} is missing or unreadable; start a new run") from None
    mine = asdict(recipe)
    for name in sorted(set(mine) - RESUME_MAY_CHANGE if given is None else given - RESUME_MAY_CHANGE):
        if name in saved and saved[name] != mine[name]:
            raise ValueError(f"--resume: {name} is {json.dumps(mine[name])} but the checkpoint was trained with "
                             f"{json.dumps(saved[name])}")
    return saved


def train(recipe: Recipe, given: Optional[set[str]] = None) -> Path:
    """Train per `recipe` and write the output folder; returns its path. `given`: see check_resume."""
    output = Path(recipe.output).resolve()
    work = output.with_name(output.name + ".work")
    last = work / "train" / "weights" / "last.pt"
    saved = check_resume(recipe, work, given) if recipe.resume else None
    splits = None if recipe.resume else read_splits(recipe)  # before the previous work folder is touched
    log.info("recipe: %s", json.dumps(asdict(recipe)))
    if _ddp(recipe.device):
        _enable_ultralytics_tensorboard_for_ddp()
    started = time.time()
    if recipe.resume:
        from ultralytics import YOLO

        log.info("resuming %s", last)
        model = YOLO(str(last))
        data_yaml = work / "yolo" / "data.yaml"
        stats = json.loads((work / "dataset_stats.json").read_text(encoding="utf-8"))
        initialisation = saved.pop("initialisation", "unknown")
        recipe = Recipe(**{**saved, "resume": True, "output": recipe.output, "keep_work": recipe.keep_work})
    else:
        if work.exists():
            log.info("removing the previous unfinished run %s (use --resume to continue it)", work)
            shutil.rmtree(work)
        work.mkdir(parents=True)
        data_yaml, stats = build_yolo_dataset(recipe, work / "yolo", splits)
        (work / "dataset_stats.json").write_text(json.dumps(stats), encoding="utf-8")
        model = build_model(recipe)
        (work / "recipe.json").write_text(json.dumps({**asdict(recipe), "initialisation": model.initialisation}),
                                          encoding="utf-8")
    from ultralytics.utils import SETTINGS, TESTS_RUNNING

    if not (SETTINGS.get("tensorboard") and not TESTS_RUNNING):  # else Ultralytics' own callback writes them
        TensorBoardLogger().register(model)

    if recipe.resume:
        model.train(resume=True)
    else:
        model.train(
            data=str(data_yaml), epochs=recipe.epochs, imgsz=recipe.image_size, batch=recipe.batch,
            workers=recipe.workers, device=recipe.device, seed=recipe.seed, deterministic=True,
            patience=recipe.patience, project=str(work), name="train", exist_ok=True, plots=recipe.plots,
            pretrained=recipe.pretrained != "none", **recipe.train_args,
        )
    initialisation = initialisation if recipe.resume else model.initialisation
    output = export_folder(recipe, work / "train", data_yaml, stats, work, initialisation)
    if not recipe.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    log.info("wrote %s in %.0f s", output, time.time() - started)
    return output


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        recipe, given = parse_recipe_and_given(argv)
    except (ValueError, FileNotFoundError) as error:
        print(f"train/detector.py: error: {error}", file=sys.stderr)
        return 2
    try:
        output = train(recipe, given)
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"train/detector.py: error: {error}", file=sys.stderr)
        return 2
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
