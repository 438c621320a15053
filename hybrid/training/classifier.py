"""Train the gesture classifier (timm) with Hugging Face accelerate; export it in timm's Hub format.

    accelerate launch train/classifier.py --config train/configs/classifier.yaml --data sign-digits
    accelerate launch --config_file train/configs/accelerate_cpu_ddp.yaml train/classifier.py --config ...
    python train/classifier.py --data hands,roboflow --epochs 2 --image-size 64 --limit 300

Every recipe field is a flag (`--image-size 128`, `--no-flip`, ...); a yaml given with `--config` sets
defaults that flags override (`hybrid.training.recipe`). The output folder gets, while training:
`recipe.yaml` (from the start: it marks the folder as a run of this recipe), `checkpoints/` (accelerate state
of the last epoch, for `--resume`) and `runs/` (TensorBoard); at the end, the best epoch by validation accuracy
as `model.safetensors` + `config.json` (loadable by timm, transformers and hybrid), `confusion_matrix.png`,
`split.json` (the records of each split), `README.md` (model card) and, written last, `metrics.json`.

The recipe is checked before anything is made (types, ranges, data found and non-empty, output writable, and
an output holding files is a run of the same recipe: a user's folder is never written into); a
`--resume` must repeat the checkpoint's recipe except epochs (may grow, not under the cosine schedule), workers,
precision, memory format and logging (see ClassifierRecipe.RESUME_MAY_CHANGE).
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from hybrid.files import atomic_file, replace_dir, write_text
from hybrid.training.recipe import ClassifierRecipe, check_run_folder, load_recipe, read_splits, save_recipe, show

logger = logging.getLogger(__name__)


# --- before any work -------------------------------------------------------------------------------


def last_checkpoint(folder: Path) -> Optional[Path]:
    done = [p for p in folder.glob("epoch_*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("_")[1])) if done else None


def check_resume(recipe: ClassifierRecipe, checkpoint: Optional[Path]) -> None:
    """Refuse to train into a folder holding an earlier run unless `--resume`, refuse a `--resume` whose
    recipe differs from the checkpoint's in anything that changes the model or the data, and refuse a folder
    holding files that are not a run of the same recipe (`check_run_folder`)."""
    if checkpoint is None:
        check_run_folder(recipe, Path(recipe.output))
        if (Path(recipe.output) / "metrics.json").is_file():
            raise ValueError(
                f"{recipe.output}: holds a finished run without checkpoints (--keep-checkpoints 0), which cannot "
                "be resumed or extended; choose another --output"
            )
        return
    if not recipe.resume:
        raise ValueError(
            f"{recipe.output}: holds checkpoints of an earlier run; pass --resume or choose another --output"
        )
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        saved = state["recipe"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(
            f"--resume: {checkpoint} has no readable recipe to check against; choose another --output for a new run"
        ) from None
    for name, value in recipe.as_dict().items():
        if name not in recipe.RESUME_MAY_CHANGE and name in saved and saved[name] != value:
            raise ValueError(
                f"--resume: {name} is {show(value)} but the checkpoint was trained with {show(saved[name])}"
            )
    if recipe.epochs < state.get("epoch", 0):
        raise ValueError(
            f"--resume: epochs is {recipe.epochs} but the checkpoint already finished epoch {state['epoch']}"
        )
    if recipe.scheduler == "cosine" and recipe.epochs != saved.get("epochs"):
        raise ValueError(
            f"--resume: epochs is {recipe.epochs} but the cosine schedule of the checkpoint was "
            f"planned for {saved.get('epochs')}"
        )


def load_splits(recipe: ClassifierRecipe) -> dict[str, list]:
    """The recipe's records, split (see `read_splits`); some must hold a labelled hand to crop."""
    splits = read_splits(recipe, merge_labels=recipe.merge_labels)
    if not any(record.boxes for records in splits.values() for record in records):
        raise ValueError(f"--data: {show(recipe.data)} has no labelled hands to crop")
    return splits


# --- starting weights and their data ---------------------------------------------------------------


@dataclass
class Start:
    """Where training starts: `weights` = a local weights file or folder (False: from scratch); `source` = the
    Hub repo of ImageNet weights (timm's pretrained_cfg: hf_hub_id, licence) when they came from the Hub."""

    weights: Union[bool, str] = False
    source: Optional[dict] = None


def imagenet_source(architecture: str) -> Optional[dict]:
    """Where timm keeps `architecture`'s ImageNet weights: its pretrained_cfg `hf_hub_id` (e.g.
    'timm/resnet50.a1_in1k'), the file in that repo and their licence; None when timm knows no Hub weights."""
    import timm.models

    cfg = timm.models.get_pretrained_cfg(architecture)
    if cfg is None or not cfg.hf_hub_id:
        return None
    filename = cfg.hf_hub_filename if (cfg.hf_hub_filename or "").endswith(".safetensors") else "model.safetensors"
    repo_id = cfg.hf_hub_id
    return {
        "id": repo_id,
        "filename": filename,
        "license": cfg.license or "unknown",
        "url": f"https://huggingface.co/{repo_id.split('@')[0]}",
    }


def download_imagenet(architecture: str) -> tuple[str, dict]:
    """timm's ImageNet weights of `architecture`, fetched the way `timm.create_model(..., pretrained=True)` does
    (huggingface_hub `hf_hub_download` of the pretrained_cfg's hf_hub_id; the cache is shared with timm; only
    safetensors). From the cache when the Hub is unreachable. Raises ValueError with one line when unavailable."""
    from huggingface_hub import hf_hub_download
    from timm.models._hub import hf_split

    from hybrid.classifier import hub_reachable

    source = imagenet_source(architecture)
    if source is None:
        raise ValueError(f"--pretrained: timm knows no Hub weights for {architecture}")
    repo_id, revision = hf_split(source["id"])
    online = hub_reachable()
    try:
        path = hf_hub_download(repo_id, source["filename"], revision=revision, local_files_only=not online)
    except Exception as error:  # offline and not cached, missing repo or file, network failure
        reason = "the Hub is unreachable (or HF_HUB_OFFLINE=1) and they are not cached" if not online else error
        raise ValueError(
            f"--pretrained: ImageNet weights {source['id']} for {architecture} unavailable: "
            + " ".join(str(reason).split())[:200]
        ) from None
    return path, source


def starting_weights(recipe: ClassifierRecipe) -> Start:
    """`--pretrained` resolved to a local file: 'false' = from scratch; 'true' = timm's ImageNet weights from the
    Hub (unavailable: ValueError); 'auto' = the same, else from scratch with one log line; a path = itself."""
    wanted = recipe.pretrained.lower()
    if wanted == "false":
        return Start()
    if wanted not in ("true", "auto"):
        return Start(recipe.pretrained)
    try:
        path, source = download_imagenet(recipe.model)
    except ValueError as error:
        if wanted == "true":
            raise
        logger.warning("%s; training from scratch", str(error).removeprefix("--pretrained: "))
        return Start()
    logger.info("starting from %s (%s licence): %s", source["id"], source["license"], path)
    return Start(path, source)


def starting_weights_data(recipe: ClassifierRecipe) -> list[str]:
    """The data behind local starting weights (`--pretrained DIR` made by this trainer, read from its
    metrics.json): their licences and attributions travel with the weights into the new card."""
    weights = recipe.pretrained
    if weights.lower() in ("true", "false", "auto"):
        return []
    source = Path(weights)
    metrics = (source if source.is_dir() else source.parent) / "metrics.json"
    try:
        data = json.loads(metrics.read_text())["recipe"]["data"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [s.strip() for s in data.split(",") if s.strip()] if isinstance(data, str) else list(data)


def data_attributions(recipe: ClassifierRecipe) -> list[dict]:
    """Licence + attribution of each data source (the training data, then the starting weights' data), from
    the data registry where it is registered."""
    from hybrid.data import registry

    return registry.citations(list(dict.fromkeys(recipe.data + starting_weights_data(recipe))))


def train_transform(recipe: ClassifierRecipe, mean, std):
    from torchvision import transforms as T

    steps = [
        T.RandomResizedCrop(
            recipe.image_size, scale=tuple(recipe.crop_scale), interpolation=T.InterpolationMode.BILINEAR
        )
    ]
    fill = [round(255 * m) for m in mean]  # rotated-in corners take the mean colour
    if recipe.rotation:
        steps.append(T.RandomRotation(recipe.rotation, interpolation=T.InterpolationMode.BILINEAR, fill=fill))
    if recipe.augment == "randaugment":
        steps.append(T.RandAugment(interpolation=T.InterpolationMode.BILINEAR, fill=fill))
    elif recipe.augment == "trivialaugment":
        steps.append(T.TrivialAugmentWide(interpolation=T.InterpolationMode.BILINEAR, fill=fill))
    if recipe.color_jitter:
        jitter = recipe.color_jitter
        steps.append(T.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=jitter / 4))
    if recipe.grayscale:
        steps.append(T.RandomGrayscale(recipe.grayscale))
    if recipe.blur:
        steps.append(T.RandomApply([T.GaussianBlur(5, sigma=(0.1, 2.0))], p=recipe.blur))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


def with_transform(dataset, transform, flip: bool = False):
    """`dataset` with crops through `transform`; `flip`: half of them mirrored first (torch's RNG), and their
    hand targets (hybrid.fingers) swapped with them."""
    import torch
    from PIL import ImageOps

    from hybrid.fingers import mirrored

    def apply(batch):
        images, targets = [image.convert("RGB") for image in batch["image"]], batch.get("fingers")
        for i in range(len(images)):
            if flip and float(torch.rand(1)) < 0.5:
                images[i] = ImageOps.mirror(images[i])
                if targets is not None:
                    targets[i] = list(mirrored(targets[i]))
        out = {"pixel_values": [transform(image) for image in images], "label": batch["label"]}
        if targets is not None:
            out["fingers"] = targets
        return out

    return dataset.with_transform(apply)


def collate(batch):
    """(crops, labels) or, with finger targets, (crops, labels, targets N x 6 with -1 where unknown)."""
    import torch

    crops = torch.stack([item["pixel_values"] for item in batch])
    labels = torch.tensor([item["label"] for item in batch], dtype=torch.long)
    if "fingers" not in batch[0]:
        return crops, labels
    return crops, labels, torch.tensor([item["fingers"] for item in batch], dtype=torch.float32)


def extra_outputs(recipe: ClassifierRecipe) -> tuple[str, ...]:
    """The extra outputs the recipe learns (hybrid.fingers.OUTPUTS): the five fingers, the hand."""
    from hybrid.fingers import FINGERS, RIGHT_HAND

    return (FINGERS if recipe.fingers else ()) + ((RIGHT_HAND,) if recipe.handedness else ())


def outputs_loss(logits, targets, outputs: Sequence[str], recipe: ClassifierRecipe):
    """The weighted mean binary cross-entropy of the extra outputs where their targets are known."""
    import torch.nn.functional as F

    from hybrid.fingers import OUTPUTS, RIGHT_HAND

    total = logits.new_zeros(())
    for column, name in enumerate(outputs):
        target = targets[:, OUTPUTS.index(name)]
        known = target >= 0
        if known.any():
            weight = recipe.handedness if name == RIGHT_HAND else recipe.fingers / 5
            loss = F.binary_cross_entropy_with_logits(logits[known, column].float(), target[known])
            total = total + weight * loss
    return total


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


# --- training --------------------------------------------------------------------------------------


def mixed_precision(recipe: ClassifierRecipe, use_cpu: bool) -> str:
    """The recipe's precision as accelerate names it; 'auto' is `hybrid.classifier.resolve_precision`'s choice."""
    import torch

    from hybrid.classifier import resolve_precision

    if recipe.mixed_precision != "auto":
        return recipe.mixed_precision
    device = torch.device("cuda" if torch.cuda.is_available() and not use_cpu else "cpu")
    return {"fp32": "no"}.get(resolve_precision("auto", device), "bf16")


def make_accelerator(recipe: ClassifierRecipe):
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed

    env = os.environ
    if (
        env.get("ACCELERATE_USE_CPU", "").lower() == "true"
        and "MASTER_ADDR" in env
        and not any(k in env for k in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"))
    ):
        # `accelerate launch --cpu --num_processes N` without mpirun starts ONE process (accelerate 1.15).
        logger.warning(
            "accelerate started a single CPU process: for N CPU processes use `accelerate launch "
            "--multi_gpu --num_processes N` or --config_file train/configs/accelerate_cpu_ddp.yaml "
            "(torchrun, gloo)"
        )
    use_cpu = not torch.cuda.is_available() or env.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    accelerator = Accelerator(
        cpu=use_cpu,
        mixed_precision=mixed_precision(recipe, use_cpu),
        gradient_accumulation_steps=recipe.grad_accum,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(recipe.seed)
    return accelerator


@dataclass
class Run:
    """Everything one training run holds: built by `prepare`, advanced by `train_epoch`."""

    recipe: ClassifierRecipe
    accelerator: Any
    classifier: Any  # GestureClassifier (its network is `model`, prepared by accelerate)
    model: Any
    names: list[str]
    datasets: dict[str, Any]  # crop datasets: train, val, test
    loaders: dict[str, Any]
    optimizer: Any
    scheduler: Any
    data_seconds: float
    start: Start = field(default_factory=Start)
    state: dict = field(default_factory=lambda: {"epoch": 0, "best_val_acc": -1.0, "best_epoch": 0, "history": []})
    writer: Any = None
    ema: Any = None  # timm's ModelEmaV3 of the model when the recipe asks for one

    @property
    def kept_model(self):
        """The weights validated, kept and saved: the moving average's when there is one, else the model's."""
        return self.ema.module if self.ema is not None else self.accelerator.unwrap_model(self.model)

    @property
    def out(self) -> Path:
        return Path(self.recipe.output)

    @property
    def best_dir(self) -> Path:
        return self.out / "checkpoints" / "best"

    @property
    def best_model(self) -> Path:
        """The best epoch's model: checkpoints/best, or (a finished run extended with --resume whose new epochs
        did not beat it) the folder's own model.safetensors, which is where a finished run moved it."""
        return self.best_dir if self.best_dir.is_dir() else self.out


def crop_datasets(recipe: ClassifierRecipe, splits: dict[str, list]) -> tuple[list[str], dict[str, Any]]:
    """Label names and the crop datasets of each non-empty split."""
    from hybrid.data import build_crop_dataset

    names = sorted({box.label for records in splits.values() for record in records for box in record.boxes})
    finger_labels = None
    if extra_outputs(recipe):
        from hybrid.fingers import load_labels

        finger_labels = load_labels()
    datasets = {
        name: build_crop_dataset(
            splits[name],
            image_size=recipe.image_size,
            train=name == "train",
            seed=recipe.seed,
            label_names=names,
            background_swap=recipe.background_swap if name == "train" else 0.0,
            finger_labels=finger_labels,
        )
        for name in ("train", "val", "test")
        if splits.get(name)
    }
    return names, datasets


def prepare(
    recipe: ClassifierRecipe, splits: dict[str, list], accelerator, read_seconds: float, start: Optional[Start] = None
) -> Run:
    """Crop datasets, the model (from `start`), loaders, optimizer and schedule, prepared by accelerate."""
    import torch

    from hybrid.classifier import GestureClassifier

    started = time.perf_counter() - read_seconds
    names, datasets = crop_datasets(recipe, splits)
    data_seconds = time.perf_counter() - started
    logger.info(
        "data: %s (%d classes) train %d, val %d, test %d crops in %.1fs",
        show(recipe.data),
        len(names),
        len(datasets["train"]),
        len(datasets.get("val", [])),
        len(datasets.get("test", [])),
        data_seconds,
    )
    clf = GestureClassifier.create(
        recipe.model,
        names,
        image_size=recipe.image_size,
        device="cpu",
        precision="fp32",
        pretrained=start.weights,
        outputs=extra_outputs(recipe),
    )
    model = clf.model.to(memory_format=torch.channels_last) if recipe.channels_last else clf.model
    if recipe.mix_style:
        add_mix_style(model, recipe.mix_style)
    cfg = clf.data_config
    generator = torch.Generator().manual_seed(recipe.seed)
    loaders = {
        "train": torch.utils.data.DataLoader(
            with_transform(datasets["train"], train_transform(recipe, cfg["mean"], cfg["std"]), flip=recipe.flip),
            batch_size=recipe.batch_size,
            shuffle=None if recipe.balanced else True,
            sampler=balanced_sampler(datasets["train"]["label"], generator) if recipe.balanced else None,
            drop_last=len(datasets["train"]) > recipe.batch_size,
            collate_fn=collate,
            num_workers=recipe.num_workers,
            generator=generator,
        )
    }
    for name in ("val", "test"):
        if name in datasets:
            loaders[name] = eval_loader(recipe, datasets[name], clf.transform)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    # accelerate's prepared scheduler steps num_processes times per optimizer step: count unsharded batches
    steps_per_epoch = math.ceil(len(loaders["train"]) / recipe.grad_accum)
    if recipe.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=recipe.epochs * steps_per_epoch)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model, optimizer, scheduler, *prepared = accelerator.prepare(model, optimizer, scheduler, *loaders.values())
    ema = None
    if recipe.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(accelerator.unwrap_model(model), decay=recipe.ema, use_warmup=True)
        accelerator.register_for_checkpointing(ema)  # --resume restores the average too
    return Run(
        recipe,
        accelerator,
        clf,
        model,
        names,
        datasets,
        dict(zip(loaders, prepared)),
        optimizer,
        scheduler,
        data_seconds,
        start or Start(),
        ema=ema,
    )


def balanced_sampler(labels: Sequence[int], generator):
    """An epoch of len(labels) crops drawn with replacement, each class equally likely (class-balanced sampling)."""
    import torch

    counts = Counter(labels)
    weights = torch.tensor([1.0 / counts[label] for label in labels], dtype=torch.double)
    return torch.utils.data.WeightedRandomSampler(weights, num_samples=len(labels), generator=generator)


def eval_loader(recipe: ClassifierRecipe, dataset, transform):
    import torch

    return torch.utils.data.DataLoader(
        with_transform(dataset, transform),
        batch_size=recipe.batch_size,
        collate_fn=collate,
        num_workers=recipe.num_workers,
    )


def resume(run: Run) -> None:
    """Load the last checkpoint's accelerate state and trainer state when `--resume` finds one."""
    ckpt_dir = run.out / "checkpoints"
    start = last_checkpoint(ckpt_dir) if run.recipe.resume else None
    if start:
        run.accelerator.load_state(str(start))
        run.state = json.loads((start / "trainer_state.json").read_text())
        logger.info("resumed from %s (epoch %d done)", start, run.state["epoch"])
    elif run.recipe.resume:
        logger.info("--resume: no checkpoint in %s, starting fresh", ckpt_dir)
    run.state["recipe"] = run.recipe.as_dict()  # what a later --resume is checked against


def open_writer(run: Run) -> None:
    if run.accelerator.is_main_process:
        from torch.utils.tensorboard import SummaryWriter

        run.writer = SummaryWriter(log_dir=str(run.out / "runs"))
        if run.state["epoch"] == 0:
            run.writer.add_text("recipe", "```\n" + json.dumps(run.recipe.as_dict(), indent=2) + "\n```", 0)


def train_epoch(run: Run, epoch: int) -> tuple[float, float]:
    """One pass over the train loader; (loss, accuracy) over all processes."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    recipe, model, accelerator = run.recipe, run.model, run.accelerator
    model.train()
    total, correct, loss_sum = 0, 0, 0.0
    bar = tqdm(
        run.loaders["train"],
        desc=f"epoch {epoch}/{recipe.epochs}",
        leave=False,
        dynamic_ncols=True,
        disable=not accelerator.is_local_main_process,
    )
    mix = mixer(recipe, len(run.names))
    classes, outputs = len(run.names), run.classifier.outputs
    for x, y, *targets in bar:
        if recipe.random_convolution:
            x = random_convolution(x, recipe.random_convolution)
        if recipe.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with accelerator.accumulate(model):
            soft = None
            if mix is not None and len(y) % 2 == 0:  # timm's Mixup pairs each crop with the batch's mirror
                x, soft = mix(x, y)  # soft labels, label smoothing included
            logits = model(x)
            extra, logits = logits[:, classes:], logits[:, :classes]
            if soft is None:
                loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
            else:
                loss = torch.sum(-soft * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
            if outputs:
                loss = loss + outputs_loss(extra, targets[0], outputs, recipe)
            accelerator.backward(loss)
            run.optimizer.step()
            run.scheduler.step()
            run.optimizer.zero_grad()
            if run.ema is not None and accelerator.sync_gradients:
                run.ema.update(accelerator.unwrap_model(model), step=run.state.get("step", 0))
        loss_sum += float(loss.detach()) * len(y)
        correct += int((logits.argmax(-1) == y).sum())
        total += len(y)
        bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}")
        run.state["step"] = run.state.get("step", 0) + 1
        if run.writer is not None:
            run.writer.add_scalar("train/loss_step", float(loss.detach()), run.state["step"])
    stats = accelerator.reduce(torch.tensor([loss_sum, correct, total], dtype=torch.float64), reduction="sum")
    return float(stats[0] / stats[2]), float(stats[1] / stats[2])


def random_convolution(batch, probability: float):
    """RandConv (Xu et al., "Robust and Generalizable Visual Representation Learning via Random Convolutions",
    ICLR 2021): each crop, with `probability`, becomes a random blend of itself and itself filtered by one random
    k x k convolution (k in 1, 3, 5, 7, He-scaled Gaussian weights, new for each batch). It changes colour and
    texture, not shape: a single-domain regularizer from the domain generalization literature for models trained
    from scratch."""
    import torch
    import torch.nn.functional as F

    size = int(torch.randint(0, 4, ()).item()) * 2 + 1
    channels = batch.shape[1]
    weight = torch.randn(channels, channels, size, size, device=batch.device) / (channels * size * size) ** 0.5
    with torch.no_grad():
        filtered = F.conv2d(batch, weight, padding=size // 2)
        share = torch.rand(len(batch), 1, 1, 1, device=batch.device)
        chosen = torch.rand(len(batch), 1, 1, 1, device=batch.device) < probability
        return torch.where(chosen, share * batch + (1 - share) * filtered, batch)


def add_mix_style(model, probability: float, alpha: float = 0.1) -> list:
    """MixStyle (Zhou et al., "Domain Generalization with MixStyle", ICLR 2021) on the outputs of `model`'s first
    two stages after its stem (timm's feature_info: a ResNet's layer1 and layer2), while it trains: with
    `probability` per batch, each crop's feature maps are normalized per channel and given a Beta(alpha, alpha)
    mix of its own mean and deviation and those of another crop of the batch. Early-layer statistics carry a
    photo's style (camera, light, skin), so the network learns the hand's shape across mixed styles. Forward
    hooks, not modules: the saved network and its state dict stay the architecture's own. Returns the handles."""
    import torch

    beta = torch.distributions.Beta(alpha, alpha)

    def mix(module, inputs, output):
        if not module.training or len(output) < 2 or torch.rand(()) >= probability:
            return output
        features = output.float()
        mean = features.mean(dim=(2, 3), keepdim=True).detach()
        deviation = (features.var(dim=(2, 3), keepdim=True) + 1e-6).sqrt().detach()
        share = beta.sample((len(output), 1, 1, 1)).to(output.device)
        other = torch.randperm(len(output), device=output.device)
        mixed_mean = share * mean + (1 - share) * mean[other]
        mixed_deviation = share * deviation + (1 - share) * deviation[other]
        return ((features - mean) / deviation * mixed_deviation + mixed_mean).to(output.dtype)

    stages = [info["module"] for info in getattr(model, "feature_info", [])[1:3]]
    if len(stages) < 2:
        raise ValueError(f"--mix-style: {type(model).__name__} does not list its stages (timm's feature_info)")
    return [model.get_submodule(name).register_forward_hook(mix) for name in stages]


def mixer(recipe: ClassifierRecipe, num_classes: int):
    """timm's Mixup for the recipe's mixup / cutmix alphas (both: each batch one or the other), or None."""
    if not (recipe.mixup or recipe.cutmix):
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=recipe.mixup,
        cutmix_alpha=recipe.cutmix,
        label_smoothing=recipe.label_smoothing,
        num_classes=num_classes,
    )


def fit(run: Run) -> None:
    """Train the remaining epochs: validate, log and checkpoint after each; keep the best epoch's model."""
    from hybrid.classifier import save_model

    recipe = run.recipe
    for epoch in range(run.state["epoch"] + 1, recipe.epochs + 1):
        t_epoch, cpu_epoch = time.perf_counter(), time.process_time()
        train_loss, train_acc = train_epoch(run, epoch)
        seconds = time.perf_counter() - t_epoch
        cpu_seconds = time.process_time() - cpu_epoch  # all threads of this process: robust to other load
        validated = run.model if run.ema is None else run.ema.module
        val = evaluate(
            validated,
            run.loaders["val"],
            run.accelerator,
            recipe.channels_last,
            len(run.names),
            run.classifier.outputs,
            keep=recipe.max_misclassified,
        )
        row = {
            "epoch": epoch,
            "train_loss": round(train_loss, 5),
            "train_acc": round(train_acc, 5),
            "val_loss": round(val["loss"], 5),
            "val_acc": round(val["acc"], 5),
            "lr": run.optimizer.param_groups[0]["lr"],
            "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu_seconds, 2),
        }
        run.state["history"].append(row)
        improved = val["acc"] > run.state["best_val_acc"]
        if improved:
            run.state.update(best_val_acc=val["acc"], best_epoch=epoch)
        if run.accelerator.is_main_process:
            log_epoch(run, epoch, row, val)
            if improved:
                save_model(
                    run.kept_model, run.names, run.classifier.pretrained_cfg, run.best_dir, run.classifier.outputs
                )
            logger.info(
                "epoch %d/%d  train loss %.4f acc %.4f | val loss %.4f acc %.4f | %.1fs%s",
                epoch,
                recipe.epochs,
                train_loss,
                train_acc,
                val["loss"],
                val["acc"],
                seconds,
                "  *best*" if improved else "",
            )
        run.state["epoch"] = epoch
        save_checkpoint(run, epoch)


def log_epoch(run: Run, epoch: int, row: dict, val: dict) -> None:
    """TensorBoard: losses, accuracies, lr, time, the val confusion matrix and misclassified crops."""
    writer, cfg = run.writer, run.classifier.data_config
    for key in ("loss", "acc"):
        writer.add_scalar(f"train/{key}", row[f"train_{key}"], epoch)
        writer.add_scalar(f"val/{key}", row[f"val_{key}"], epoch)
    writer.add_scalar("lr", row["lr"], epoch)
    writer.add_scalar("time/epoch_seconds", row["seconds"], epoch)
    matrix = per_class(val["labels"], val["preds"], run.names)["confusion_matrix"]
    writer.add_figure("val/confusion_matrix", confusion_figure(matrix, run.names, f"val, epoch {epoch}"), epoch)
    if "wrong" in val:
        grid, caption = misclassified_grid(*val["wrong"], run.names, cfg["mean"], cfg["std"])
        writer.add_image("val/misclassified", grid, epoch)
        writer.add_text("val/misclassified", caption, epoch)
    writer.flush()


def save_checkpoint(run: Run, epoch: int) -> None:
    """Every process saves its part into a temp folder; the main process puts it in place of the last one."""
    ckpt_dir = run.out / "checkpoints"
    tmp = ckpt_dir / f".epoch_{epoch}.tmp"
    run.accelerator.save_state(str(tmp))
    run.accelerator.wait_for_everyone()
    if run.accelerator.is_main_process:
        write_json(tmp / "trainer_state.json", run.state)
        replace_dir(tmp, ckpt_dir / f"epoch_{epoch}")
        prune_checkpoints(ckpt_dir, max(run.recipe.keep_checkpoints, 1))  # the last one stays for --resume
    run.accelerator.wait_for_everyone()


def prune_checkpoints(ckpt_dir: Path, keep: int) -> None:
    """Keep the newest `keep` epoch checkpoints in `ckpt_dir`; `keep` 0: the whole folder goes."""
    if keep == 0:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        return
    epochs = sorted(ckpt_dir.glob("epoch_*"), key=lambda p: int(p.name.split("_")[1]), reverse=True)
    for old in epochs[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def choose_count(run: Run) -> Optional[dict]:
    """With finger outputs: where the best model takes its count from (hybrid.fingers.COUNT_FROM: the count head,
    the fingers it sees up, or both), whichever is most accurate on the val split (the head on a tie), written
    into its fingers.safetensors. Returns each source's val and test accuracy and the choice."""
    import numpy as np

    from hybrid.classifier import GestureClassifier
    from hybrid.fingers import COUNT_FROM, FINGERS

    if not set(FINGERS) <= set(run.classifier.outputs) or not set(run.names) <= {str(n) for n in range(6)}:
        return None
    clf = GestureClassifier.from_pretrained(run.best_model, device="cpu", precision="fp32")
    accuracy: dict[str, dict] = {}
    for split in ("val", "test"):
        if split not in run.datasets:
            continue
        crops, labels = run.datasets[split]["image"], np.asarray(run.datasets[split]["label"])
        for way in COUNT_FROM:
            clf.count_from = way
            guesses = np.concatenate(
                [clf.probabilities(crops[i : i + 256]).argmax(1) for i in range(0, len(crops), 256)]
            )
            accuracy.setdefault(way, {})[split] = round(float(np.mean(guesses == labels)), 5)
    chosen = max(COUNT_FROM, key=lambda way: accuracy[way]["val"])  # the first best: the head on a tie
    clf.count_from = chosen
    clf.save_pretrained(run.best_model)
    logger.info("count from %s (val accuracy %s)", chosen, {way: a["val"] for way, a in accuracy.items()})
    return {"chosen": chosen, "accuracy": accuracy}


def final_results(run: Run) -> dict[str, dict]:
    """The best epoch's model on every split, with the clean eval transform."""
    from hybrid.classifier import GestureClassifier

    best = GestureClassifier.from_pretrained(run.best_model, device="cpu", precision="fp32")
    run.accelerator.unwrap_model(run.model).load_state_dict(best.model.state_dict())
    run.loaders["train_eval"] = run.accelerator.prepare(
        eval_loader(run.recipe, run.datasets["train"], run.classifier.transform)
    )
    return {
        split: evaluate(
            run.model,
            run.loaders[key],
            run.accelerator,
            run.recipe.channels_last,
            len(run.names),
            run.classifier.outputs,
        )
        for split, key in (("train", "train_eval"), ("val", "val"), ("test", "test"))
        if key in run.loaders
    }


def train(recipe: ClassifierRecipe) -> Path:
    """Train per `recipe` (checked) and write its output folder; returns the folder."""
    check_resume(recipe, last_checkpoint(Path(recipe.output) / "checkpoints"))
    started = time.perf_counter()
    start = starting_weights(recipe)  # weights and data found: all before the output folder is made
    splits = load_splits(recipe)
    accelerator = make_accelerator(recipe)
    if accelerator.is_main_process:
        Path(recipe.output).mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, Path(recipe.output))  # marks the folder as a run of this recipe (check_run_folder)
    run = prepare(recipe, splits, accelerator, time.perf_counter() - started, start)
    resume(run)
    open_writer(run)
    fit(run)
    run.state["count_from"] = choose_count(run) if accelerator.is_main_process else None
    accelerator.wait_for_everyone()
    results = final_results(run)
    if accelerator.is_main_process:
        export(run, results, splits)
        run.writer.close()
        shutil.rmtree(run.best_dir, ignore_errors=True)  # it is the folder's model.safetensors now
        prune_checkpoints(run.out / "checkpoints", recipe.keep_checkpoints)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return Path(recipe.output)


def evaluate(model, loader, accelerator, channels_last: bool, classes: int, outputs: Sequence[str] = (), keep: int = 0):
    """Loss, predictions and labels over `loader` (gathered across processes), and with extra `outputs` their
    accuracy where the targets are known; `keep` misclassified inputs are returned for the TensorBoard grid."""
    import torch
    import torch.nn.functional as F

    from hybrid.fingers import OUTPUTS

    model.eval()
    total_loss, preds, labels, wrong = 0.0, [], [], []
    right, known = torch.zeros(len(outputs)), torch.zeros(len(outputs))
    with torch.no_grad():
        for x, y, *targets in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with accelerator.autocast():
                logits = model(x)
            extra, logits = logits[:, classes:], logits[:, :classes]
            loss = F.cross_entropy(logits.float(), y, reduction="none")  # per sample: gather drops padding
            p = logits.argmax(dim=-1)
            if outputs:
                wanted = targets[0][:, [OUTPUTS.index(name) for name in outputs]]
                guess, wanted = accelerator.gather_for_metrics(((extra > 0).float(), wanted))
                right += ((guess == wanted) & (wanted >= 0)).sum(0).cpu()
                known += (wanted >= 0).sum(0).cpu()
            loss, p, y_all, x_all = accelerator.gather_for_metrics((loss, p, y, x))
            total_loss += float(loss.sum())
            preds.append(p.cpu())
            labels.append(y_all.cpu())
            if keep and sum(len(w[0]) for w in wrong) < keep:
                bad = p != y_all
                wrong.append((x_all[bad][:keep].cpu(), y_all[bad][:keep].cpu(), p[bad][:keep].cpu()))
    preds_t, labels_t = torch.cat(preds), torch.cat(labels)
    n = max(len(labels_t), 1)
    result = {
        "loss": total_loss / n,
        "acc": float((preds_t == labels_t).float().mean()) if len(labels_t) else 0.0,
        "preds": preds_t,
        "labels": labels_t,
        "outputs": {
            name: {"accuracy": round(float(r / k), 4) if k else None, "crops": int(k)}
            for name, r, k in zip(outputs, right, known)
        },
    }
    if keep and wrong:
        result["wrong"] = tuple(torch.cat([w[i] for w in wrong])[:keep] for i in range(3))
    return result


def per_class(labels: Sequence[int], preds: Sequence[int], names: list[str]) -> dict:
    """Per-class precision, recall, F1 and support (`hybrid.evaluate.hand_metrics`: each crop is one hand,
    matched to its one prediction) and the confusion matrix over every name (rows truth, columns predicted)."""
    from hybrid.evaluate import Guess, Truth, hand_metrics

    box = (0.0, 0.0, 1.0, 1.0)
    found = hand_metrics(
        [[Truth(box, names[int(t)])] for t in labels], [[Guess(box, 1.0, names[int(p)])] for p in preds]
    )
    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    index = {label: i for i, label in enumerate(found["confusion"]["labels"])}
    matrix = found["confusion"]["matrix"]
    return {
        "per_class": {
            name: {
                key: round(value, 4) if isinstance(value, float) else value
                for key, value in found["per_class"].get(name, zero).items()
            }
            for name in names
        },
        "confusion_matrix": [
            [matrix[index[t]][index[p]] if t in index and p in index else 0 for p in names] for t in names
        ],
    }


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# --- the output folder -----------------------------------------------------------------------------


def export(run: Run, results: dict, splits: dict[str, list]) -> None:
    """Copy the best model next to its metrics, confusion matrix, recipe, split and card; metrics.json last."""
    from hybrid.data.splits import save_split

    out, recipe, state = run.out, run.recipe, run.state
    metrics = final_metrics(run, results)
    split = metrics["per_class_split"]
    fig = confusion_figure(metrics["confusion_matrix"], run.names, f"{split} split, best epoch {state['best_epoch']}")
    run.writer.add_figure(f"{split}/confusion_matrix", fig, state["best_epoch"])
    with atomic_file(out / "confusion_matrix.png") as tmp:
        fig.savefig(tmp, dpi=100)
    hparams = {
        k: (v if isinstance(v, (int, float, str, bool)) else str(v))
        for k, v in recipe.as_dict().items()
        if v is not None
    }
    run.writer.add_hparams(
        hparams,
        {"hparam/val_accuracy": metrics["val_accuracy"], "hparam/test_accuracy": metrics["test_accuracy"] or 0.0},
        run_name="hparams",
    )
    from hybrid.fingers import FINGERS_NAME

    for name in ("model.safetensors", "config.json") + ((FINGERS_NAME,) if run.classifier.outputs else ()):
        if run.best_model != out:
            with atomic_file(out / name) as tmp:
                shutil.copyfile(run.best_model / name, tmp)
    save_recipe(recipe, out)
    save_split(out, splits, seed=recipe.seed, fractions=recipe.split)
    write_text(out / "README.md", str(render_model_card(recipe, metrics, run.names, run.start.source)))
    write_json(out / "metrics.json", metrics)
    logger.info("%s", summary(out, metrics))


def final_metrics(run: Run, results: dict) -> dict:
    import torch

    recipe, state = run.recipe, run.state
    final_split = "test" if "test" in results else "val"
    seconds = [row["seconds"] for row in state["history"]]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    return {
        "train_accuracy": round(results["train"]["acc"], 5),
        "val_accuracy": round(results["val"]["acc"], 5),
        "test_accuracy": round(results["test"]["acc"], 5) if "test" in results else None,
        "best_epoch": state["best_epoch"],
        "epochs": recipe.epochs,
        "epochs_run": len(state["history"]),
        "per_class_split": final_split,
        **per_class(results[final_split]["labels"], results[final_split]["preds"], run.names),
        "label_names": run.names,
        **(
            {"outputs": {split: result["outputs"] for split, result in results.items()}}
            if run.classifier.outputs
            else {}
        ),
        **({"count_from": state["count_from"]} if state.get("count_from") else {}),
        "split_sizes": {name: len(dataset) for name, dataset in run.datasets.items()},
        "timing": {
            "seconds_per_epoch_mean": round(sum(seconds) / max(len(seconds), 1), 2),
            "train_seconds_total": round(sum(seconds), 1),
            "data_seconds": round(run.data_seconds, 1),
            "mixed_precision": run.accelerator.mixed_precision,
            "processes": run.accelerator.num_processes,
            "device": device,
            "torch_threads": torch.get_num_threads(),
        },
        "history": state["history"],
        "recipe": recipe.as_dict(),
        **base_model(run.start.source),
    }


def base_model(source: Optional[dict]) -> dict:
    """The Hub weights training started from, as metrics.json records them (`hybrid.publish.fine_tuned_from`
    reads `base_model`; the card's metadata must then declare it)."""
    if not source:
        return {}
    return {"base_model": source["id"], "base_model_license": source["license"]}


def render_model_card(recipe: ClassifierRecipe, metrics: dict, names: list[str], base: Optional[dict] = None):
    """The card; `base` = the Hub weights training started from (`Start.source`): metadata `base_model`, and
    `base_weights` (id, license, url) for the template to credit."""
    from huggingface_hub import EvalResult

    from hybrid.publish import render_card

    data = data_attributions(recipe)
    dataset_name = " + ".join(d["name"] for d in data)
    model_name = f"hybrid gesture classifier ({recipe.model}, {dataset_name})"
    results = []
    for split in ("val", "test"):
        if metrics.get(f"{split}_accuracy") is not None:
            results.append(
                EvalResult(
                    task_type="image-classification",
                    dataset_type=dataset_name.replace(" + ", "+"),
                    dataset_name=dataset_name,
                    dataset_split=split,
                    metric_type="accuracy",
                    metric_value=metrics[f"{split}_accuracy"],
                    metric_name=f"{split} accuracy",
                )
            )
    card_data = {
        "library_name": "timm",
        "pipeline_tag": "image-classification",
        "license": "agpl-3.0",
        "tags": ["image-classification", "timm", "hand-gesture", "hybrid", recipe.model],
        "model_name": model_name,
        "eval_results": results,
        # Hub dataset ids link on the Hub; registered sets are named as in hybrid.data.registry
        "datasets": [d["name"] for d in data],
        **({"base_model": base["id"]} if base else {}),
    }
    context = dict(recipe=recipe.as_dict(), metrics=metrics, label_names=names, data=data, model_name=model_name)
    return render_card("classifier", card_data, base_weights=base, **context)


def summary(out: Path, metrics: dict) -> str:
    rows = [
        ("train accuracy", metrics["train_accuracy"]),
        ("val accuracy", metrics["val_accuracy"]),
        ("test accuracy", metrics["test_accuracy"]),
        ("best epoch", f"{metrics['best_epoch']}/{metrics['epochs']}"),
        ("s / epoch", metrics["timing"]["seconds_per_epoch_mean"]),
        ("precision", metrics["timing"]["mixed_precision"]),
        ("processes", metrics["timing"]["processes"]),
    ]
    lines = [f"{'':-<40}", f"{'classifier: ' + str(out):<40}", f"{'':-<40}"]
    lines += [f"{key:<20}{f'{value:.4f}' if isinstance(value, float) else str(value):>20}" for key, value in rows]
    return "\n".join(["", *lines, f"{'':-<40}"])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`train/classifier.py`: train, or exit 2 with one error line for a bad recipe or bad data."""
    logging.basicConfig(
        level=logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        train(load_recipe(ClassifierRecipe, argv, description=__doc__))
    except (ValueError, FileNotFoundError) as error:
        logger.error("%s", error)
        return 2
    return 0
