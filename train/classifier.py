"""Train the gesture classifier (timm) with Hugging Face accelerate; export it in timm's Hub format.

    accelerate launch train/classifier.py --config train/configs/classifier.yaml --data sign-digits
    accelerate launch --config_file train/configs/accelerate_cpu_ddp.yaml train/classifier.py --config ...  (2 CPU processes, DDP over gloo)
    python train/classifier.py --data hands,roboflow --epochs 2 --image-size 64 --limit 300

Every recipe field is a flag (`--image-size 128`, `--no-flip`, ...); a yaml given with `--config` sets
defaults that flags override. The output folder gets, while training: `checkpoints/` (accelerate state of
the last epoch, for `--resume`) and `runs/` (TensorBoard); at the end, the best epoch by validation
accuracy as `model.safetensors` + `config.json` (loadable by timm, transformers and hybrid),
`confusion_matrix.png`, `README.md` (model card) and, written last, `metrics.json`.

The recipe is checked before anything is made (types, ranges, data found and non-empty, output writable); a
`--resume` must repeat the checkpoint's recipe except epochs (may grow, not under the cosine schedule), workers,
precision, memory format and logging (see RESUME_MAY_CHANGE).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python train/classifier.py` from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

logger = logging.getLogger("train.classifier")


@dataclass
class Recipe:
    """One training run. Defaults = the original project's recipe (timm resnet50, Adam 1e-3, batch 32,
    50 epochs, random resized crop + horizontal flip + rotation +-15 degrees)."""

    data: str = "hands,roboflow"  # comma-separated: registered names ('hands', 'roboflow', 'sign-digits'), folders, or a `datasets` id
    format: Optional[str] = None  # voc | yolo | imagefolder | hagrid | hf (default: detected)
    merge_labels: bool = True  # canonical finger-count labels across sets ('5-hand', 'five' -> '5')
    output: str = "models/classifier"
    model: str = "resnet50"
    pretrained: str = "false"  # 'true' = timm ImageNet weights when reachable; or a local folder/file
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "none"  # none (the original: constant lr) | cosine
    label_smoothing: float = 0.0
    image_size: int = 224
    crop_scale: list = field(default_factory=lambda: [0.08, 1.0])  # RandomResizedCrop area range
    flip: bool = True
    rotation: float = 15.0  # degrees, 0 = off
    augment: str = "none"  # none | randaugment | trivialaugment (torchvision's policies, after flip and rotation)
    split: list = field(default_factory=lambda: [0.8, 0.1, 0.1])
    limit: Optional[int] = None  # use N records (seeded shuffle first): smoke runs
    seed: int = 0
    grad_accum: int = 1
    mixed_precision: str = "auto"  # bf16 | no | auto (bf16 where the device runs it natively)
    channels_last: bool = True
    num_workers: int = 0
    resume: bool = False
    max_misclassified: int = 32  # crops in the TensorBoard misclassified grid

    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}

    def check(self) -> "Recipe":
        """Raise ValueError naming the flag for a value of the wrong type or out of range (no I/O)."""
        for name, spec in self.fields().items():
            value, kind = getattr(self, name), str(spec.type)
            if value is None and kind.startswith("Optional"):
                continue
            expected = {"bool": bool, "int": int, "float": (int, float), "list": list}.get(
                kind.replace("Optional[", "").rstrip("]"), str)
            if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
                raise ValueError(f"{_flag(name)}: expected {getattr(expected, '__name__', 'a number')}, got {value!r}")
            if kind == "list" and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise ValueError(f"{_flag(name)}: expected numbers, got {value!r}")
        for name, low in MINIMUMS.items():
            if getattr(self, name) is not None and getattr(self, name) < low:
                raise ValueError(f"{_flag(name)}: expected an integer >= {low}, got {getattr(self, name)}")
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
        if (len(self.split) != 3 or abs(sum(self.split) - 1.0) > 1e-6 or min(self.split) < 0
                or not (self.split[0] > 0 and self.split[1] > 0)):
            raise ValueError(f"--split: expected three fractions (train, val > 0; test >= 0) summing to 1, "
                             f"got {self.split}")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"--crop-scale: expected 'min,max' in (0, 1], got {self.crop_scale}")
        if not dataset_names(self):
            raise ValueError("--data: give at least one dataset (registered name, folder or Hub id)")
        import timm

        from hybrid.data import FORMATS

        if not timm.is_model(self.model):
            raise ValueError(f"--model: {self.model!r} is not a timm architecture (e.g. resnet50)")

        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {self.format!r}")
        weights = starting_weights(self)
        if isinstance(weights, str) and not Path(weights).exists():
            raise ValueError(f"--pretrained: expected true, false or an existing folder/file, got {weights!r}")
        if not self.output.strip():
            raise ValueError("--output: expected a folder path, got an empty string")
        return self


# Smallest value of each integer field. 32 px: below that ResNet's five stride-2 stages leave nothing to pool.
MINIMUMS = {"epochs": 1, "batch_size": 1, "image_size": 32, "grad_accum": 1, "num_workers": 0, "seed": 0,
            "max_misclassified": 0, "limit": 1}

# Fields a `--resume` may change: they change neither the model nor the data it sees. `epochs` may grow to
# extend a run (not with the cosine schedule, planned for the original count). Every other field must match.
RESUME_MAY_CHANGE = {"epochs", "resume", "output", "num_workers", "mixed_precision", "channels_last",
                     "max_misclassified"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# --- configuration ---------------------------------------------------------------------------------

def _str2list(text: str) -> list:
    return [float(v) for v in text.replace(",", " ").split()]


def build_parser(defaults: Recipe) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--config", default=None, help="yaml recipe (its fields become defaults)")
    for name, f in Recipe.fields().items():
        flag = "--" + name.replace("_", "-")
        value = getattr(defaults, name)
        if f.type in ("bool", bool):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=value)
        elif f.type in ("list", list):
            parser.add_argument(flag, dest=name, type=_str2list, default=value, help="e.g. '0.8,0.1,0.1'")
        elif name == "pretrained":
            parser.add_argument(flag, dest=name, nargs="?", const="true", default=value,
                                help="ImageNet weights (no value) or a local folder/file; 'false' = from scratch")
        else:
            kind = {"int": int, "float": float}.get(str(f.type).replace("Optional[", "").rstrip("]"), str)
            parser.add_argument(flag, dest=name, type=kind, default=value)
    return parser


def load_recipe(argv: Optional[list[str]] = None) -> Recipe:
    """Defaults < yaml (`--config`) < command-line flags. Unknown yaml keys are errors."""
    import yaml

    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    recipe = Recipe()
    if known.config:
        path = Path(known.config)
        if not path.is_file():
            raise SystemExit(f"--config {path}: file not found")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SystemExit(f"{path}: not valid YAML ({exc})")
        if not isinstance(values, dict):
            raise SystemExit(f"{path}: expected a mapping of recipe fields, got {type(values).__name__}")
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in Recipe.fields():
                raise SystemExit(f"{path}: unknown field {key!r}; known: {', '.join(Recipe.fields())}")
            setattr(recipe, name, value)
    args = build_parser(recipe).parse_args(argv)
    recipe = Recipe(**{name: getattr(args, name) for name in Recipe.fields()})
    recipe.pretrained = str(recipe.pretrained)
    try:
        recipe.check()
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    check_output(Path(recipe.output))
    return recipe


def check_output(out: Path) -> None:
    """The output folder must be a folder we can create or write into (checked before anything is made)."""
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--output {out}: exists and is not a folder")
    import tempfile

    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    try:  # a real probe: os.access says yes to root even where the file system refuses
        Path(tempfile.mkdtemp(prefix=".write-probe-", dir=existing)).rmdir()
    except OSError as exc:
        raise SystemExit(f"--output {out}: {existing} is not a writable folder ({exc.strerror})") from None


def check_resume(recipe: Recipe, checkpoint: Optional[Path]) -> None:
    """Refuse to train into a folder holding an earlier run unless `--resume`, and refuse a `--resume` whose
    recipe differs from the checkpoint's in anything that changes the model or the data."""
    if checkpoint is None:
        return
    if not recipe.resume:
        raise SystemExit(f"{recipe.output}: holds checkpoints of an earlier run; pass --resume or choose another "
                         "--output")
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        saved = state["recipe"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SystemExit(f"--resume: {checkpoint} has no readable recipe to check against; "
                         "choose another --output for a new run") from None
    for name, value in dataclasses.asdict(recipe).items():
        if name not in RESUME_MAY_CHANGE and name in saved and saved[name] != value:
            raise SystemExit(f"--resume: {name} is {_show(value)} but the checkpoint was trained with "
                             f"{_show(saved[name])}")
    if recipe.epochs < state.get("epoch", 0):
        raise SystemExit(f"--resume: epochs is {recipe.epochs} but the checkpoint already finished "
                         f"epoch {state['epoch']}")
    if recipe.scheduler == "cosine" and recipe.epochs != saved.get("epochs"):
        raise SystemExit(f"--resume: epochs is {recipe.epochs} but the cosine schedule of the checkpoint was planned "
                         f"for {saved.get('epochs')}")


def _show(value) -> str:
    return json.dumps(value) if isinstance(value, (list, bool)) or value is None else str(value)


# --- data --------------------------------------------------------------------------------------------

def load_splits(recipe: Recipe) -> dict[str, list]:
    """Records from every source in `recipe.data`, shuffled (seeded), limited, split train/val/test."""
    from hybrid.data import read_dataset, split_records

    records = []
    for source in [s.strip() for s in str(recipe.data).split(",") if s.strip()]:
        try:
            records += read_dataset(source, format=recipe.format, merge_labels=recipe.merge_labels)
        except (OSError, ValueError) as exc:  # missing folder, malformed annotation (DataError), bad format
            raise SystemExit(f"--data {source}: {exc}") from exc
    if not records:
        raise SystemExit(f"--data {recipe.data}: no images found")
    if not any(record.boxes for record in records):
        raise SystemExit(f"--data {recipe.data}: no labelled hands to crop")
    if recipe.limit:
        records = list(records)
        random.Random(recipe.seed).shuffle(records)
        records = records[: recipe.limit]
    splits = split_records(records, seed=recipe.seed, fractions=tuple(recipe.split))
    for name in ("train", "val"):
        if not splits.get(name):
            raise SystemExit(f"--data {recipe.data}: the {name} split is empty ({len(records)} records)")
    return splits


def dataset_names(recipe: Recipe) -> list[str]:
    return [s.strip() for s in str(recipe.data).split(",") if s.strip()]


def starting_weights(recipe: Recipe):
    """`--pretrained` as GestureClassifier.create takes it: False, True (ImageNet) or a local path."""
    value = recipe.pretrained.lower()
    return False if value in ("false", "no", "0", "") else True if value in ("true", "yes", "1") else recipe.pretrained


def starting_weights_data(recipe: Recipe) -> list[str]:
    """The data behind local starting weights (`--pretrained DIR` made by this script, read from its
    metrics.json): their licences and attributions travel with the weights into the new card."""
    weights = starting_weights(recipe)
    if isinstance(weights, bool):
        return []
    source = Path(weights)
    metrics = (source if source.is_dir() else source.parent) / "metrics.json"
    try:
        return dataset_names(Recipe(data=json.loads(metrics.read_text())["recipe"]["data"]))
    except (OSError, ValueError, KeyError, TypeError):
        return []


def data_attributions(recipe: Recipe) -> list[dict]:
    """Licence + attribution of each data source (the training data, then the starting weights' data), from
    the data registry where it is registered."""
    from hybrid.data import registry

    return registry.citations(list(dict.fromkeys(dataset_names(recipe) + starting_weights_data(recipe))))


def train_transform(recipe: Recipe, mean, std):
    from torchvision import transforms as T

    steps = [T.RandomResizedCrop(recipe.image_size, scale=tuple(recipe.crop_scale),
                                 interpolation=T.InterpolationMode.BILINEAR)]
    if recipe.flip:
        steps.append(T.RandomHorizontalFlip())
    fill = [round(255 * m) for m in mean]  # rotated-in corners take the mean colour
    if recipe.rotation:
        steps.append(T.RandomRotation(recipe.rotation, interpolation=T.InterpolationMode.BILINEAR, fill=fill))
    if recipe.augment == "randaugment":
        steps.append(T.RandAugment(interpolation=T.InterpolationMode.BILINEAR, fill=fill))
    elif recipe.augment == "trivialaugment":
        steps.append(T.TrivialAugmentWide(interpolation=T.InterpolationMode.BILINEAR, fill=fill))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


def with_transform(dataset, transform):
    def apply(batch):
        return {"pixel_values": [transform(image.convert("RGB")) for image in batch["image"]],
                "label": batch["label"]}

    return dataset.with_transform(apply)


def collate(batch):
    import torch

    return (torch.stack([item["pixel_values"] for item in batch]),
            torch.tensor([item["label"] for item in batch], dtype=torch.long))


# --- TensorBoard figures ------------------------------------------------------------------------------

def confusion_figure(matrix, names: list[str], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.5 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=names).plot(ax=ax, colorbar=False, xticks_rotation=45)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def misclassified_grid(images, labels, preds, names, mean, std):
    """Denormalised misclassified crops as one CHW grid; the caption lists 'true->pred' per cell."""
    import torch
    from torchvision.utils import make_grid

    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    pixels = (images.float() * std_t + mean_t).clamp(0, 1)
    caption = ", ".join(f"{names[t]}->{names[p]}" for t, p in zip(labels.tolist(), preds.tolist()))
    return make_grid(pixels, nrow=8, padding=2), caption


# --- training ----------------------------------------------------------------------------------------

def resolve_mixed_precision(value: str, use_cpu: bool) -> str:
    import torch

    from hybrid.classifier import cpu_has_native_bf16

    if value != "auto":
        return value
    if torch.cuda.is_available() and not use_cpu:
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if cpu_has_native_bf16() else "no"


def evaluate(model, loader, accelerator, channels_last: bool, keep: int = 0):
    """Loss, predictions and labels over `loader` (gathered across processes); `keep` misclassified
    inputs are returned for the TensorBoard grid."""
    import torch
    import torch.nn.functional as F

    model.eval()
    total_loss, preds, labels, wrong = 0.0, [], [], []
    with torch.no_grad():
        for x, y in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with accelerator.autocast():
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, reduction="none")  # per sample: gather drops padding
            p = logits.argmax(dim=-1)
            loss, p, y_all, x_all = accelerator.gather_for_metrics((loss, p, y, x))
            total_loss += float(loss.sum())
            preds.append(p.cpu())
            labels.append(y_all.cpu())
            if keep and sum(len(w[0]) for w in wrong) < keep:
                bad = p != y_all
                wrong.append((x_all[bad][:keep].cpu(), y_all[bad][:keep].cpu(), p[bad][:keep].cpu()))
    preds_t, labels_t = torch.cat(preds), torch.cat(labels)
    n = max(len(labels_t), 1)
    result = {"loss": total_loss / n, "acc": float((preds_t == labels_t).float().mean()) if len(labels_t) else 0.0,
              "preds": preds_t, "labels": labels_t}
    if keep and wrong:
        result["wrong"] = tuple(torch.cat([w[i] for w in wrong])[:keep] for i in range(3))
    return result


def per_class(labels, preds, names: list[str]) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    idx = list(range(len(names)))
    p, r, f, s = precision_recall_fscore_support(labels, preds, labels=idx, zero_division=0)
    return {
        "per_class": {names[i]: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                                 "f1": round(float(f[i]), 4), "support": int(s[i])} for i in idx},
        "confusion_matrix": confusion_matrix(labels, preds, labels=idx).tolist(),
    }


def last_checkpoint(folder: Path) -> Optional[Path]:
    done = [p for p in folder.glob("epoch_*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("_")[1])) if done else None


def write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def main(argv: Optional[list[str]] = None) -> int:
    recipe = load_recipe(argv)  # types, ranges, output folder writable
    check_resume(recipe, last_checkpoint(Path(recipe.output) / "checkpoints"))
    logging.basicConfig(level=logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    splits = load_splits(recipe)  # data found and non-empty: all before the output folder is made
    read_seconds = time.perf_counter() - t0
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed
    from tqdm.auto import tqdm

    from hybrid.classifier import GestureClassifier, save_model
    from hybrid.data import build_crop_dataset

    env = os.environ
    if env.get("ACCELERATE_USE_CPU", "").lower() == "true" and "MASTER_ADDR" in env and not any(
            k in env for k in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")):
        # `accelerate launch --cpu --num_processes N` without mpirun starts ONE process (accelerate 1.15).
        print("WARNING: accelerate started a single CPU process: for N CPU processes use `accelerate launch "
              "--multi_gpu --num_processes N` or --config_file train/configs/accelerate_cpu_ddp.yaml (torchrun, gloo)",
              file=sys.stderr)
    use_cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    precision = resolve_mixed_precision(recipe.mixed_precision, use_cpu)
    accelerator = Accelerator(cpu=use_cpu, mixed_precision=precision, gradient_accumulation_steps=recipe.grad_accum,
                              dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    set_seed(recipe.seed)
    out = Path(recipe.output)
    ckpt_dir = out / "checkpoints"
    main_proc = accelerator.is_main_process
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)

    # data
    t0 = time.perf_counter() - read_seconds
    names = sorted({box.label for records in splits.values() for record in records for box in record.boxes})
    train_ds = build_crop_dataset(splits["train"], image_size=recipe.image_size, train=True, seed=recipe.seed,
                                  label_names=names)
    eval_sets = {name: build_crop_dataset(splits[name], image_size=recipe.image_size, train=False,
                                          seed=recipe.seed, label_names=names)
                 for name in ("val", "test") if splits.get(name)}
    data_seconds = time.perf_counter() - t0
    logger.info("data: %s (%d classes) train %d, val %d, test %d crops in %.1fs", recipe.data, len(names),
                len(train_ds), len(eval_sets.get("val", [])), len(eval_sets.get("test", [])), data_seconds)

    # model
    clf = GestureClassifier.create(
        recipe.model, names, image_size=recipe.image_size, device="cpu", precision="fp32",
        pretrained=starting_weights(recipe))
    model = clf.model
    cfg = clf.data_config
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loaders = {}
    generator = torch.Generator().manual_seed(recipe.seed)
    loaders["train"] = torch.utils.data.DataLoader(
        with_transform(train_ds, train_transform(recipe, cfg["mean"], cfg["std"])), batch_size=recipe.batch_size,
        shuffle=True, drop_last=len(train_ds) > recipe.batch_size, collate_fn=collate,
        num_workers=recipe.num_workers, generator=generator)
    for name, ds in eval_sets.items():
        loaders[name] = torch.utils.data.DataLoader(with_transform(ds, clf.transform), batch_size=recipe.batch_size,
                                                    collate_fn=collate, num_workers=recipe.num_workers)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    # accelerate's prepared scheduler steps num_processes times per optimizer step: count unsharded batches
    steps_per_epoch = math.ceil(len(loaders["train"]) / recipe.grad_accum)
    if recipe.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=recipe.epochs * steps_per_epoch)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model, optimizer, scheduler, *prepared = accelerator.prepare(model, optimizer, scheduler, *loaders.values())
    loaders = dict(zip(loaders, prepared))

    # resume
    state = {"epoch": 0, "best_val_acc": -1.0, "best_epoch": 0, "history": []}
    start = last_checkpoint(ckpt_dir) if recipe.resume else None
    if start:
        accelerator.load_state(str(start))
        state = json.loads((start / "trainer_state.json").read_text())
        logger.info("resumed from %s (epoch %d done)", start, state["epoch"])
    elif recipe.resume:
        logger.info("--resume: no checkpoint in %s, starting fresh", ckpt_dir)
    state["recipe"] = dataclasses.asdict(recipe)  # what a later --resume is checked against

    writer = None
    if main_proc:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(out / "runs"))
        if state["epoch"] == 0:
            writer.add_text("recipe", "```\n" + json.dumps(dataclasses.asdict(recipe), indent=2) + "\n```", 0)

    best_dir = ckpt_dir / "best"
    for epoch in range(state["epoch"] + 1, recipe.epochs + 1):
        model.train()
        t_epoch, cpu_epoch = time.perf_counter(), time.process_time()
        total, correct, loss_sum = 0, 0, 0.0
        bar = tqdm(loaders["train"], desc=f"epoch {epoch}/{recipe.epochs}", disable=not accelerator.is_local_main_process,
                   leave=False, dynamic_ncols=True)
        for x, y in bar:
            if recipe.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with accelerator.accumulate(model):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(-1) == y).sum())
            total += len(y)
            bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}")
            state["step"] = state.get("step", 0) + 1
            if writer is not None:
                writer.add_scalar("train/loss_step", float(loss.detach()), state["step"])
        stats = accelerator.reduce(torch.tensor([loss_sum, correct, total], dtype=torch.float64), reduction="sum")
        train_loss, train_acc = float(stats[0] / stats[2]), float(stats[1] / stats[2])
        seconds = time.perf_counter() - t_epoch
        cpu_seconds = time.process_time() - cpu_epoch  # all threads of this process: robust to other load
        val = evaluate(model, loaders["val"], accelerator, recipe.channels_last, keep=recipe.max_misclassified)
        lr = optimizer.param_groups[0]["lr"]
        row = {"epoch": epoch, "train_loss": round(train_loss, 5), "train_acc": round(train_acc, 5),
               "val_loss": round(val["loss"], 5), "val_acc": round(val["acc"], 5), "lr": lr,
               "seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2)}
        state["history"].append(row)
        improved = val["acc"] > state["best_val_acc"]
        if improved:
            state.update(best_val_acc=val["acc"], best_epoch=epoch)
        if main_proc:
            for key in ("loss", "acc"):
                writer.add_scalar(f"train/{key}", row[f"train_{key}"], epoch)
                writer.add_scalar(f"val/{key}", row[f"val_{key}"], epoch)
            writer.add_scalar("lr", lr, epoch)
            writer.add_scalar("time/epoch_seconds", seconds, epoch)
            from sklearn.metrics import confusion_matrix

            matrix = confusion_matrix(val["labels"], val["preds"], labels=list(range(len(names))))
            writer.add_figure("val/confusion_matrix", confusion_figure(matrix, names, f"val, epoch {epoch}"), epoch)
            if "wrong" in val:
                grid, caption = misclassified_grid(*val["wrong"], names, cfg["mean"], cfg["std"])
                writer.add_image("val/misclassified", grid, epoch)
                writer.add_text("val/misclassified", caption, epoch)
            writer.flush()
            if improved:
                save_model(accelerator.unwrap_model(model), names, clf.pretrained_cfg, best_dir)
            logger.info("epoch %d/%d  train loss %.4f acc %.4f | val loss %.4f acc %.4f | %.1fs%s", epoch,
                        recipe.epochs, train_loss, train_acc, val["loss"], val["acc"], seconds,
                        "  *best*" if improved else "")
        # checkpoint: every process saves its part into a temp folder; the main process renames it
        state["epoch"] = epoch
        tmp = ckpt_dir / f".epoch_{epoch}.tmp"
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if main_proc:
            write_json(tmp / "trainer_state.json", state)
            final = ckpt_dir / f"epoch_{epoch}"
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in ckpt_dir.glob("epoch_*"):
                if old != final:
                    shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    # final evaluation of the best epoch on every split (clean eval transform)
    best = GestureClassifier.from_pretrained(best_dir, device="cpu", precision="fp32")
    accelerator.unwrap_model(model).load_state_dict(best.model.state_dict())
    loaders["train_eval"] = accelerator.prepare(torch.utils.data.DataLoader(
        with_transform(train_ds, clf.transform), batch_size=recipe.batch_size, collate_fn=collate,
        num_workers=recipe.num_workers))
    results = {split: evaluate(model, loaders[key], accelerator, recipe.channels_last)
               for split, key in (("train", "train_eval"), ("val", "val"), ("test", "test")) if key in loaders}
    if main_proc:
        export(out, recipe, state, results, names, best_dir, precision, accelerator.num_processes, data_seconds,
               {k: len(v) for k, v in [("train", train_ds), *eval_sets.items()]}, writer)
        writer.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def export(out: Path, recipe: Recipe, state: dict, results: dict, names: list[str], best_dir: Path,
           precision: str, processes: int, data_seconds: float, sizes: dict, writer) -> None:
    """Copy the best model next to its metrics, confusion matrix and card; metrics.json goes last."""
    import platform

    import torch

    final_split = "test" if "test" in results else "val"
    detail = per_class(results[final_split]["labels"], results[final_split]["preds"], names)
    seconds = [row["seconds"] for row in state["history"]]
    metrics = {
        "train_accuracy": round(results["train"]["acc"], 5),
        "val_accuracy": round(results["val"]["acc"], 5),
        "test_accuracy": round(results["test"]["acc"], 5) if "test" in results else None,
        "best_epoch": state["best_epoch"],
        "epochs": recipe.epochs,
        "epochs_run": len(state["history"]),
        "per_class_split": final_split,
        **detail,
        "label_names": names,
        "split_sizes": sizes,
        "timing": {"seconds_per_epoch_mean": round(sum(seconds) / max(len(seconds), 1), 2),
                   "train_seconds_total": round(sum(seconds), 1), "data_seconds": round(data_seconds, 1),
                   "mixed_precision": precision, "processes": processes,
                   "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
                   "torch_threads": torch.get_num_threads()},
        "history": state["history"],
        "recipe": dataclasses.asdict(recipe),
    }
    fig = confusion_figure(detail["confusion_matrix"], names, f"{final_split} split, best epoch {state['best_epoch']}")
    writer.add_figure(f"{final_split}/confusion_matrix", fig, state["best_epoch"])
    fig.savefig(out / ".confusion_matrix.png.tmp.png", dpi=100)
    os.replace(out / ".confusion_matrix.png.tmp.png", out / "confusion_matrix.png")
    hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in dataclasses.asdict(recipe).items()
               if v is not None}
    writer.add_hparams(hparams, {"hparam/val_accuracy": metrics["val_accuracy"],
                                 "hparam/test_accuracy": metrics["test_accuracy"] or 0.0}, run_name="hparams")
    for name in ("model.safetensors", "config.json"):
        tmp = out / f".{name}.tmp"
        shutil.copyfile(best_dir / name, tmp)
        os.replace(tmp, out / name)
    card = render_model_card(recipe, metrics, names)
    (out / ".README.md.tmp").write_text(str(card))
    os.replace(out / ".README.md.tmp", out / "README.md")
    write_json(out / "metrics.json", metrics)
    print_summary(out, metrics)


def render_model_card(recipe: Recipe, metrics: dict, names: list[str]):
    from huggingface_hub import EvalResult

    from hybrid.hub import render_card

    data = data_attributions(recipe)
    dataset_name = " + ".join(d["name"] for d in data)
    model_name = f"hybrid gesture classifier ({recipe.model}, {dataset_name})"
    results = []
    for split in ("val", "test"):
        if metrics.get(f"{split}_accuracy") is not None:
            results.append(EvalResult(task_type="image-classification", dataset_type=dataset_name.replace(" + ", "+"),
                                      dataset_name=dataset_name, dataset_split=split, metric_type="accuracy",
                                      metric_value=metrics[f"{split}_accuracy"], metric_name=f"{split} accuracy"))
    card_data = {
        "library_name": "timm", "pipeline_tag": "image-classification", "license": "agpl-3.0",
        "tags": ["image-classification", "timm", "hand-gesture", "hybrid", recipe.model],
        "model_name": model_name, "eval_results": results,
        # Hub dataset ids link on the Hub; registered sets are named as in hybrid.data.registry
        "datasets": [d["name"] for d in data],
    }
    return render_card("classifier", card_data, recipe=dataclasses.asdict(recipe), metrics=metrics,
                       label_names=names, data=data, model_name=model_name)


def print_summary(out: Path, metrics: dict) -> None:
    rows = [("train accuracy", metrics["train_accuracy"]), ("val accuracy", metrics["val_accuracy"]),
            ("test accuracy", metrics["test_accuracy"]), ("best epoch", f"{metrics['best_epoch']}/{metrics['epochs']}"),
            ("s / epoch", metrics["timing"]["seconds_per_epoch_mean"]),
            ("precision", metrics["timing"]["mixed_precision"]), ("processes", metrics["timing"]["processes"])]
    print(f"\n{'':-<40}\n{'classifier: ' + str(out):<40}\n{'':-<40}")
    for key, value in rows:
        value = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:<20}{value:>20}")
    print(f"{'':-<40}")


if __name__ == "__main__":
    sys.exit(main())
