"""Train the YOLOv8 hand detector (or, with --gestures, a one-stage gesture detector) with Ultralytics.

    python train/detector.py --config train/configs/detector.yaml [--key value ...]

Every field of the recipe yaml is also a flag (`image_size` -> `--image-size`); flags win (one loader for
both models: `hybrid.training.recipe`). Steps:
1. read the datasets with `hybrid.data.read_dataset` (any reader: VOC, YOLO, HaGRID, image folder, HF), split
   them with `split_records` (upstream splits kept; `recipe.read_splits`) and write a YOLO dataset (one class
   'hand' unless --gestures, whose labels are merged across sets with `canonical_label`);
2. train `yolov8{n,s,m}` from `yolov8n.pt` (COCO) when it can be fetched, else from scratch (one log line);
   TensorBoard events are written next to the run without touching the user's Ultralytics settings;
3. evaluate best.pt on the held-out test split and write the output folder (atomically, via a temp dir):
   best.pt, model.safetensors + config.json (loadable without pickle by `hybrid.HandDetector`),
   metrics.json, recipe.yaml, split.json (the records of each split), README.md (model card), pr_curve.png,
   runs/ (TensorBoard events, results.csv, args.yaml).

The Ultralytics run lives in `<output>.work/` until the folder is written; `--resume` continues it from
`<output>.work/train/weights/last.pt`. An output folder that holds files is replaced only when it is a run of the
same recipe (its recipe.yaml says so), and a `<output>.work/` only when it is such a run: checked before any work.

Multi-GPU: `--device 0,1` uses Ultralytics' own DDP (it launches one process per GPU itself; do not wrap
this script in torchrun or accelerate). `--batch-size` is then the total batch over all GPUs. TensorBoard
logging in the DDP worker processes goes through Ultralytics' TensorBoard callback, switched on in a
temporary copy of the settings (YOLO_CONFIG_DIR), so the user's own settings file is never changed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from hybrid.data.splits import SPLIT_NAME, save_split
from hybrid.files import atomic_dir, write_text
from hybrid.training.recipe import (
    RECIPE_NAME,
    DetectorRecipe,
    check_run_folder,
    from_dict,
    parse_recipe,
    read_splits,
    save_recipe,
    show,
)

log = logging.getLogger(__name__)


def build_yolo_dataset(recipe: DetectorRecipe, out_dir: Path, splits: dict[str, list]) -> tuple[Path, dict]:
    """Write the YOLO dataset of `splits`. Returns (data.yaml, stats)."""
    from hybrid.data import write_yolo_dataset

    if not splits["test"]:
        log.warning("data: no test split; metrics.json will report the val split")
    stats = {
        split: {"images": len(items), "boxes": sum(len(r.boxes) for r in items)} for split, items in splits.items()
    }
    log.info("dataset: %s", ", ".join(f"{s} {v['images']} images / {v['boxes']} boxes" for s, v in stats.items()))
    return Path(write_yolo_dataset(splits, out_dir, gestures=recipe.gestures)), stats


# --- model ------------------------------------------------------------------------------------------------


def _online() -> bool:
    if os.environ.get("YOLO_OFFLINE", "").lower() in ("1", "true") or os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    from ultralytics.utils import ONLINE

    return ONLINE


COCO_ATTRIBUTION = 'Ultralytics YOLOv8 trained on COCO (AGPL-3.0; Ultralytics, "YOLOv8", 2023)'
COCO_BASE_MODEL = "Ultralytics/YOLOv8"  # the Hub repo of Ultralytics' YOLOv8 checkpoints


def coco_checkpoint(recipe: DetectorRecipe) -> Optional[Path | str]:
    """Where `--pretrained auto|true` starts from: Ultralytics' own `yolov8<size>.pt` where Ultralytics finds it (the
    working folder, its weights_dir) or can download it ("yolov8n.pt": Ultralytics fetches it); else the local copy
    `yolov8<size>-coco.pt` in the weights folder (hybrid.constants.weights_root, ../shared/weights here); else None."""
    from ultralytics.utils import SETTINGS

    from hybrid.constants import weights_root

    name = f"yolov8{recipe.model}.pt"
    for found in (Path(name), Path(SETTINGS.get("weights_dir", "")) / name):
        if found.is_file():
            return found
    if _online():
        return name
    local = weights_root() / f"yolov8{recipe.model}-coco.pt" if weights_root() else None
    return local if local and local.is_file() else None


def check_pretrained(recipe: DetectorRecipe) -> None:
    """`--pretrained true` needs COCO weights (`coco_checkpoint`): none here -> one ValueError line, before any
    work."""
    if recipe.pretrained == "true" and coco_checkpoint(recipe) is None:
        raise ValueError(
            f"--pretrained true: yolov8{recipe.model}.pt (COCO) is not here and cannot be downloaded offline, and the "
            f"weights folder has no yolov8{recipe.model}-coco.pt (set HYBRID_WEIGHTS); give a local .pt "
            "(--pretrained FILE.pt), or --pretrained auto to train from scratch when it is unavailable"
        )


def file_start(path: Path | str) -> dict:
    """What a run records of the checkpoint it started from: its file name and sha256 (where it is a file here)."""
    import hashlib

    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return {"file": path.name, "sha256": digest}


def build_model(recipe: DetectorRecipe):
    """YOLO from pretrained weights when asked: an Ultralytics .pt given as `--pretrained FILE.pt` (unpickled:
    the user brings it), or the COCO checkpoint (`coco_checkpoint`) for auto/true; else from the yaml (random
    init). Ultralytics' trainer copies every layer whose shape matches into the new model (a different class
    count re-initialises the head's last layers, at the pretrained width). `model.initialisation` says which
    and `model.start` records the checkpoint (`file_start`; None from scratch): both go into metrics.json and
    the card."""
    from ultralytics import YOLO

    architecture = f"yolov8{recipe.model}"
    wanted = recipe.pretrained
    if wanted != "false":
        standard = wanted in ("auto", "true")
        weights = coco_checkpoint(recipe) if standard else wanted
        if weights is not None and (Path(weights).is_file() or standard):
            try:
                model = YOLO(str(weights))
                model.initialisation = f"pretrained: {Path(weights).name}"
                model.start = file_start(Path(model.ckpt_path or weights))
                log.info("starting from %s (sha256 %s)", Path(weights).name, model.start["sha256"])
                return model
            except Exception as error:  # download failures come as ConnectionError, FileNotFoundError, ...
                reason = " ".join(str(error).split())[:200]
                if wanted != "auto":
                    raise ValueError(f"--pretrained {wanted}: {weights} unavailable ({reason})") from None
                log.warning(
                    "pretrained weights %s unavailable (%s): training %s from scratch", weights, reason, architecture
                )
        elif standard:
            check_pretrained(recipe)  # true: one error line
            log.warning(
                "no %s.pt (COCO) here, offline, and no %s-coco.pt in the weights folder: training %s from scratch",
                architecture,
                architecture,
                architecture,
            )
        else:
            raise FileNotFoundError(f"--pretrained: {wanted} not found")
    model = YOLO(f"{architecture}.yaml")
    model.initialisation = f"random (from {architecture}.yaml)"
    model.start = None
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
    write_text(config_dir / "settings.json", json.dumps(settings))
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


def evaluate(
    best: Path, data_yaml: Path, recipe: DetectorRecipe, work: Path, split: str
) -> tuple[dict, Optional[Path]]:
    """Ultralytics val of best.pt on `split`: precision, recall, mAP50, mAP50-95, ms per image."""
    from ultralytics import YOLO

    device = recipe.device.split(",")[0] if recipe.device else None  # validation runs on one device
    results = YOLO(str(best)).val(
        data=str(data_yaml),
        split=split,
        imgsz=recipe.image_size,
        batch=recipe.batch_size,
        device=device,
        plots=recipe.plots,
        project=str(work),
        name=f"eval-{split}",
        exist_ok=True,
        verbose=False,
        workers=0 if _ddp(recipe.device) else recipe.num_workers,
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
        "per_class_mAP50-95": {
            results.names[int(c)]: round(float(m), 4) for c, m in zip(box.ap_class_index, box.maps[box.ap_class_index])
        },
    }
    curve = next(iter(sorted(Path(results.save_dir).glob("*PR_curve.png"))), None)
    return metrics, curve


def write_card(
    folder: Path, recipe: DetectorRecipe, metrics: dict, names: list[str], stats: dict, has_curve: bool
) -> None:
    from huggingface_hub import EvalResult

    from hybrid.data.registry import citations as dataset_citations
    from hybrid.publish import render_card

    citations = dataset_citations(recipe.data)
    kind = "gesture detector (one stage)" if recipe.gestures else "hand detector"
    model_name = f"YOLOv8{recipe.model} {kind}"
    dataset_name = " + ".join(recipe.data)
    eval_results = [
        EvalResult(
            task_type="object-detection",
            dataset_type="hybrid-hands",
            dataset_name=dataset_name,
            dataset_split=metrics["split"],
            metric_type=metric_type,
            metric_name=label,
            metric_value=metrics[key],
        )
        for key, metric_type, label in (
            ("mAP50", "mAP@0.5", "mAP50"),
            ("mAP50-95", "mAP@0.5:0.95", "mAP50-95"),
            ("precision", "precision", "precision"),
            ("recall", "recall", "recall"),
        )
    ]
    card_data = {
        "license": "agpl-3.0",
        "library_name": "ultralytics",
        "pipeline_tag": "object-detection",
        "tags": ["yolov8", "ultralytics", "object-detection", "hand-detection", "hand-gesture", "safetensors"],
        "model_name": model_name,
        "eval_results": eval_results,
        "datasets": [c["name"] for c in citations],
        **({"base_model": metrics["base_model"]} if metrics.get("base_model") else {}),
    }
    card = render_card(
        "detector",
        card_data,
        model_name=model_name,
        recipe=recipe.as_dict(),
        metrics=metrics,
        names=names,
        stats=stats,
        datasets=citations,
        has_curve=has_curve,
        gestures=recipe.gestures,
    )
    write_text(folder / "README.md", str(card))


def export_folder(
    recipe: DetectorRecipe,
    run_dir: Path,
    data_yaml: Path,
    stats: dict,
    work: Path,
    initialisation: str,
    start: Optional[dict] = None,
    started: Optional[float] = None,
    val_records: Sequence = (),
) -> Path:
    """Build the output folder in a temp dir next to it, then move it into place. `started`: the run's
    time.time() at its start (metrics.json's `train_seconds`: data, training and evaluation). `val_records`: the
    val split, where the shipped score threshold is chosen when the recipe sets no `conf`."""
    from hybrid.detector import CHECKPOINT_NAME, HandDetector

    output = Path(recipe.output).resolve()
    best = run_dir / "weights" / "best.pt"
    if not best.is_file():
        best = run_dir / "weights" / "last.pt"
    split = "test" if stats["test"]["images"] else "val"
    metrics, curve = evaluate(best, data_yaml, recipe, work, split)
    metrics.update(
        {
            "images": stats[split]["images"],
            "boxes": stats[split]["boxes"],
            "dataset_sizes": stats,
            "datasets": recipe.data,
            "model": f"yolov8{recipe.model}",
            "gestures": recipe.gestures,
            "initialisation": initialisation,
            "epochs_trained": _epochs_trained(run_dir),
            **({"train_seconds": round(time.time() - started)} if started else {}),
        }
    )
    if start and is_coco(start, recipe):
        metrics.update(pretrained_from={**start, "attribution": COCO_ATTRIBUTION}, base_model=COCO_BASE_MODEL)
    elif start:
        metrics["pretrained_from"] = start

    with atomic_dir(output, markers=(RECIPE_NAME,)) as build:  # checked by check_run_folder before the work
        shutil.copy2(best, build / CHECKPOINT_NAME)
        detector = HandDetector.from_pretrained(build / CHECKPOINT_NAME, allow_pickle=True)
        detector.image_size, detector.iou = recipe.image_size, recipe.iou
        if recipe.conf is None:
            metrics["threshold"] = val_threshold(detector, val_records)
            detector.conf = metrics["threshold"]["threshold"]
            log.info("score threshold %.3f: the best F1 on the val split (%s)", detector.conf, metrics["threshold"])
        else:
            detector.conf = recipe.conf
        detector.save_pretrained(build)
        metrics["classes"] = detector.names
        write_text(build / "metrics.json", json.dumps(_jsonable(metrics), indent=2))
        if curve:
            shutil.copy2(curve, build / "pr_curve.png")
        runs = build / "runs"
        runs.mkdir()
        for item in run_dir.iterdir():  # TensorBoard events, results.csv, args.yaml, training plots
            if item.is_file() and (
                item.name.startswith("events.out.tfevents") or item.suffix in (".csv", ".yaml", ".png")
            ):
                shutil.copy2(item, runs / item.name)
        save_recipe(recipe, build)
        shutil.copy2(work / SPLIT_NAME, build / SPLIT_NAME)  # saved by start_work: a --resume keeps it
        write_card(build, recipe, metrics, detector.names, stats, curve is not None)
    return output


VAL_SEARCH_CONF = 0.01  # boxes from this score up are searched for the val split's best threshold (the app's lowest)


def val_threshold(detector, records: Sequence) -> dict:
    """The score threshold with the best F1 on the val split (boxes at IoU 0.5, every label 'hand'), kept within the
    app's slider (THRESHOLD_RANGE): what the folder ships with when the recipe sets no `conf`. A fixed low default
    gave 360 boxes for 257 unseen hands (precision 0.575, issue 30); the test split is never looked at."""
    from hybrid.evaluate import Guess, Truth, best_f1_threshold
    from hybrid.limits import THRESHOLD_RANGE

    truths, guesses = [], []
    for start in range(0, len(records), 32):
        batch = records[start : start + 32]
        found = detector.predict([r.load() for r in batch], conf=VAL_SEARCH_CONF)
        truths += [[Truth(tuple(map(float, box.xyxy)), "hand") for box in r.boxes] for r in batch]
        guesses += [[Guess(tuple(d.box), d.score, "hand") for d in image] for image in found]
    best = best_f1_threshold(truths, guesses)
    low, high = THRESHOLD_RANGE
    threshold = low if best["threshold"] is None else min(max(best["threshold"], low), high)
    return {**best, "threshold": round(threshold, 4), "split": "val", "images": len(records)}


def is_coco(start: dict, recipe: DetectorRecipe) -> bool:
    """Whether a run started from Ultralytics' COCO checkpoint (theirs, or the weights folder's copy)."""
    return start["file"] in (f"yolov8{recipe.model}.pt", f"yolov8{recipe.model}-coco.pt")


def _epochs_trained(run_dir: Path) -> int:
    """Epochs in results.csv (a time budget, early stopping or a resume make it differ from --epochs)."""
    import csv

    try:
        with open(run_dir / "results.csv", newline="") as handle:
            return len({row["epoch"].strip() for row in csv.DictReader(handle)})
    except (OSError, KeyError):
        return 0


# --- main -------------------------------------------------------------------------------------------------


def check_resume(recipe: DetectorRecipe, work: Path, given: Optional[set[str]] = None) -> dict:
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
    mine = recipe.as_dict()
    for name in sorted((set(mine) if given is None else given) - recipe.RESUME_MAY_CHANGE):
        if name in saved and saved[name] != mine[name]:
            raise ValueError(
                f"--resume: {name} is {show(mine[name])} but the checkpoint was trained with {show(saved[name])}"
            )
    return saved


WORK_MARKERS = (SPLIT_NAME, "recipe.json")  # start_work writes split.json first, recipe.json last


def check_work_folder(work: Path) -> None:
    """`<output>.work` is removed when a new run starts: refuse one holding files that are not such a run."""
    if work.exists() and not work.is_dir():
        raise ValueError(f"{work}: exists and is not a folder; move it away or choose another --output")
    if work.is_dir() and any(work.iterdir()) and not any((work / name).is_file() for name in WORK_MARKERS):
        raise ValueError(
            f"{work}: holds files but no {' or '.join(WORK_MARKERS)}, so it is not a run of this trainer (a new "
            "run would remove it); move it away or choose another --output"
        )


def start_work(recipe: DetectorRecipe, work: Path, splits: dict[str, list]):
    """A fresh work folder: the YOLO dataset, its stats, the split, the recipe; returns (model, data.yaml, stats)."""
    if work.exists():
        log.info("removing the previous unfinished run %s (use --resume to continue it)", work)
        shutil.rmtree(work)
    work.mkdir(parents=True)
    save_split(work, splits, seed=recipe.seed, fractions=recipe.split)
    if recipe.zoom_copies:
        from hybrid.data.zoom import zoom_copies

        extra = zoom_copies(
            splits["train"],
            work / "zoom",
            recipe.zoom_copies,
            recipe.zoom_span,
            recipe.seed,
            recipe.zoom_turn,
            recipe.zoom_photometric,
        )
        log.info("zoom copies: %d more training images (hands spanning %s of the width)", len(extra), recipe.zoom_span)
        splits = {**splits, "train": splits["train"] + extra}
    data_yaml, stats = build_yolo_dataset(recipe, work / "yolo", splits)
    write_text(work / "dataset_stats.json", json.dumps(stats))
    model = build_model(recipe)
    started_from = {"initialisation": model.initialisation, "start": model.start}
    write_text(work / "recipe.json", json.dumps({**recipe.as_dict(), **started_from}))
    return model, data_yaml, stats


def train(recipe: DetectorRecipe, given: Optional[set[str]] = None) -> Path:
    """Train per `recipe` and write the output folder; returns its path. `given`: see check_resume."""
    output = Path(recipe.output).resolve()
    work = output.with_name(output.name + ".work")
    last = work / "train" / "weights" / "last.pt"
    saved = check_resume(recipe, work, given) if recipe.resume else None
    # the output folder is replaced at the end: only a run of the recipe that is trained (a resumed run's own)
    check_run_folder(from_dict(DetectorRecipe, saved) if saved else recipe, output)
    if not recipe.resume:
        check_work_folder(work)
        check_pretrained(recipe)
    splits = None if recipe.resume else read_splits(recipe)  # before the previous work folder is touched
    log.info("recipe: %s", json.dumps(recipe.as_dict()))
    if _ddp(recipe.device):
        _enable_ultralytics_tensorboard_for_ddp()
    started = time.time()
    if recipe.resume:
        from ultralytics import YOLO

        log.info("resuming %s", last)
        model = YOLO(str(last))
        data_yaml = work / "yolo" / "data.yaml"
        stats = json.loads((work / "dataset_stats.json").read_text(encoding="utf-8"))
        initialisation, start = saved.pop("initialisation", "unknown"), saved.pop("start", None)
        recipe = from_dict(
            DetectorRecipe, {**saved, "resume": True, "output": recipe.output, "keep_work": recipe.keep_work}
        )
    else:
        model, data_yaml, stats = start_work(recipe, work, splits)
        initialisation, start = model.initialisation, model.start
    from ultralytics.utils import SETTINGS, TESTS_RUNNING

    if not (SETTINGS.get("tensorboard") and not TESTS_RUNNING):  # else Ultralytics' own callback writes them
        TensorBoardLogger().register(model)

    if recipe.resume:
        model.train(resume=True)
    else:
        model.train(
            data=str(data_yaml),
            epochs=recipe.epochs,
            imgsz=recipe.image_size,
            batch=recipe.batch_size,
            workers=recipe.num_workers,
            device=recipe.device,
            seed=recipe.seed,
            deterministic=True,
            patience=recipe.patience,
            project=str(work),
            name="train",
            exist_ok=True,
            plots=recipe.plots,
            pretrained=recipe.pretrained != "false",
            **recipe.train_args,
        )
    if recipe.conf is not None:
        val_records = []
    elif splits is not None:
        val_records = splits["val"]
    else:  # a resumed run: its val split as split.json recorded it
        from hybrid.data.splits import held_out

        val_records = held_out([r for split in read_splits(recipe).values() for r in split], [work], "val")
    output = export_folder(recipe, work / "train", data_yaml, stats, work, initialisation, start, started, val_records)
    if not recipe.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    log.info("wrote %s in %.0f s", output, time.time() - started)
    return output


def parse(argv: Optional[Sequence[str]] = None) -> tuple[DetectorRecipe, set[str]]:
    """The recipe of a command line (see `hybrid.training.recipe.parse_recipe`) and the fields it gave."""
    return parse_recipe(DetectorRecipe, argv, description=__doc__)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`train/detector.py`: train, or exit 2 with one error line for a bad recipe or bad data."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        recipe, given = parse(argv)
        train(recipe, given)
    except (ValueError, FileNotFoundError, KeyError) as error:
        log.error("%s", error)
        return 2
    return 0
