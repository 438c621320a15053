"""GestureClassifier and hybrid.training.classifier (train/classifier.py) on real data: short real runs (a few
hundred crops, tiny images)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hybrid.training import classifier as train
from hybrid.training.recipe import ClassifierRecipe, load_recipe
from tests.fixtures_models import _REPO, train_classifier

TRAIN = _REPO / "train" / "classifier.py"
# A few hundred Sign Language Digits images at 32 px: the cheapest real set that learns in a few epochs.
SMALL = ["--data", "sign-digits", "--limit", "300", "--image-size", "32", "--batch-size", "32"]
# From scratch, the default lr 1e-3 and heavy crops make the first epochs' loss jump about; a lower lr and
# mild augmentation make "the loss falls within 3 epochs" a fair check of the training loop.
STEADY = ["--lr", "1e-4", "--crop-scale", "0.8,1", "--rotation", "0"]


def _recipe(*argv: str) -> ClassifierRecipe:
    return load_recipe(ClassifierRecipe, list(argv))


@pytest.fixture(scope="module")
def hand_crops(data_root):
    """Real hand crops made with the pipeline's own crop (hybrid.crops via the data layer)."""
    from hybrid.data import read_dataset, split_records
    from hybrid.data.writers import iter_crops

    records = split_records(read_dataset("roboflow", merge_labels=True), seed=0)["test"][:4]
    records += split_records(read_dataset("hands", merge_labels=True), seed=0)["test"][:4]
    crops = [crop for crop, _ in iter_crops(records, None, False, 0)]
    assert len(crops) >= 8
    return crops


def _events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


# --- the exported folder --------------------------------------------------------------------------


def test_three_loaders_agree(trained_classifier, hand_crops):
    """The same folder loads in timm, transformers and hybrid, with the same probabilities and top-1."""
    import timm
    from transformers import pipeline

    from hybrid.classifier import GestureClassifier

    clf = GestureClassifier.from_pretrained(trained_classifier, precision="fp32")
    ours = torch.from_numpy(clf.probabilities(hand_crops))

    model = timm.create_model(f"local-dir:{trained_classifier}", pretrained=True).eval()
    config = timm.data.resolve_data_config(model=model)
    transform = timm.data.create_transform(**config)
    with torch.no_grad():
        theirs = model(torch.stack([transform(c) for c in hand_crops])).softmax(-1)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-3)
    assert ours.argmax(-1).tolist() == theirs.argmax(-1).tolist()

    classify = pipeline("image-classification", model=str(trained_classifier), device="cpu")
    answers = classify(hand_crops, top_k=len(clf.label_names))
    for row, answer in zip(ours, answers):
        assert answer[0]["label"] == clf.label_names[int(row.argmax())]
        by_label = {a["label"]: a["score"] for a in answer}
        assert by_label == pytest.approx({n: float(p) for n, p in zip(clf.label_names, row)}, abs=1e-4)

    # bf16 inference stays close to fp32 (where bf16 runs at all: autocast on any CPU works, emulated or not)
    fast = GestureClassifier.from_pretrained(trained_classifier, precision="bf16")
    assert fast.precision == "bf16"
    assert (torch.from_numpy(fast.probabilities(hand_crops)) - ours).abs().max() < 0.05


def test_predict_sorted_batched(trained_classifier, hand_crops):
    from hybrid.classifier import GestureClassifier, Prediction

    clf = GestureClassifier.from_pretrained(trained_classifier, precision="fp32")
    assert clf.label_names == ["0", "1", "2", "3", "4", "5"]
    single = clf.predict(hand_crops[0], top_k=3)
    assert len(single) == 3
    assert all(isinstance(p, Prediction) for p in single)
    assert [p.score for p in single] == sorted((p.score for p in single), reverse=True)
    batch = clf.predict(hand_crops, top_k=10)  # top_k is capped at the class count
    assert len(batch) == len(hand_crops)
    assert all(len(row) == 6 for row in batch)
    assert sum(p.score for p in batch[0]) == pytest.approx(1.0, abs=1e-4)
    assert batch[0][0].label == single[0].label
    assert batch[0][0].score == pytest.approx(single[0].score, abs=1e-5)
    assert clf.target_layer is clf.model.layer4[-1]
    assert clf.predict([], top_k=5) == []


def test_config_is_timm_format_transformers_safe(trained_classifier):
    config = json.loads((trained_classifier / "config.json").read_text())
    assert config["architecture"] == "resnet50"
    assert config["num_classes"] == 6
    assert config["label_names"] == ["0", "1", "2", "3", "4", "5"]
    cfg = config["pretrained_cfg"]
    assert cfg["input_size"] == [3, 32, 32]
    assert cfg["crop_pct"] == 1.0
    assert len(cfg["mean"]) == 3
    assert "num_classes" not in config.get("model_args", {})  # transformers 5.x passes num_classes itself
    assert not {"tag", "hf_hub_id", "license", "url"} & set(cfg)  # no claims about ImageNet source weights


def test_save_round_trip_and_bad_folder(trained_classifier, tmp_path, hand_crops):
    from hybrid.classifier import GestureClassifier

    clf = GestureClassifier.from_pretrained(trained_classifier, precision="fp32")
    clf.save_pretrained(tmp_path / "copy")
    assert not list((tmp_path / "copy").glob(".*tmp"))
    again = GestureClassifier.from_pretrained(tmp_path / "copy", precision="fp32")
    np.testing.assert_allclose(again.probabilities(hand_crops[:2]), clf.probabilities(hand_crops[:2]))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="config.json"):
        GestureClassifier.from_pretrained(tmp_path / "broken")
    (tmp_path / "broken" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        GestureClassifier.from_pretrained(tmp_path / "broken")


def test_training_outputs(trained_classifier):
    """metrics.json, the model card and TensorBoard scalars/figures of the fixture run."""
    from huggingface_hub import ModelCard

    metrics = json.loads((trained_classifier / "metrics.json").read_text())
    for key in ("train_accuracy", "val_accuracy", "test_accuracy", "best_epoch", "per_class", "timing", "history"):
        assert key in metrics, key
    assert set(metrics["per_class"]) == {"0", "1", "2", "3", "4", "5"}
    assert {"precision", "recall", "f1", "support"} <= set(metrics["per_class"]["5"])
    assert metrics["timing"]["seconds_per_epoch_mean"] > 0
    assert (trained_classifier / "confusion_matrix.png").stat().st_size > 1000

    card = ModelCard.load(trained_classifier / "README.md")
    assert card.data.library_name == "timm"
    assert card.data.pipeline_tag == "image-classification"
    assert card.data.license == "agpl-3.0"
    assert card.data.eval_results[-1].metric_value == pytest.approx(metrics["test_accuracy"])
    assert "CC BY 4.0" in card.text
    assert "Soubhi Hadri" in card.text  # dataset attributions

    events = _events(trained_classifier / "runs")
    scalars = events.Tags()["scalars"]
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "lr"):
        assert tag in scalars, tag
    assert [e.value for e in events.Scalars("val/acc")] == pytest.approx([h["val_acc"] for h in metrics["history"]])
    assert {"val/confusion_matrix", "val/misclassified", "test/confusion_matrix"} <= set(events.Tags()["images"])
    assert list((trained_classifier / "runs" / "hparams").glob("*tfevents*"))


def test_folder_holds_its_split_and_recipe(trained_classifier):
    """split.json: the 160 records of the tiny run in the proportions of the recipe; recipe.yaml loads again."""
    from hybrid.data.splits import load_split
    from hybrid.training.recipe import parse_recipe

    split = load_split(trained_classifier)
    assert sum(len(ids) for ids in split.values()) == 160
    assert not (split["train"] & split["test"])
    assert not (split["train"] & split["val"])
    metrics = json.loads((trained_classifier / "metrics.json").read_text())
    assert sorted(metrics["per_class"]) == metrics["label_names"]
    recipe, _ = parse_recipe(ClassifierRecipe, ["--config", str(trained_classifier / "recipe.yaml")])
    assert recipe.as_dict() == metrics["recipe"]


# --- training runs -------------------------------------------------------------------------------


@pytest.mark.slow  # trains a model (~30 s or more)
def test_two_process_cpu_run_loss_falls(tmp_path, data_root):
    """2 CPU processes (DDP over gloo) through accelerate's launcher with the shipped config; loss falls."""
    output = tmp_path / "ddp"
    done = train_classifier(
        output,
        *SMALL,
        *STEADY,
        "--epochs",
        "3",
        data_root=data_root,
        launcher=[
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(_REPO / "train" / "configs" / "accelerate_cpu_ddp.yaml"),
        ],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["timing"]["processes"] == 2
    losses = [row["train_loss"] for row in metrics["history"]]
    assert len(losses) == 3, losses
    assert losses[-1] < losses[0], losses
    steps = [e.value for e in _events(output / "runs").Scalars("train/loss_step")]
    assert len(steps) >= 3 * 3  # 7 batches of 32 per epoch, shared by 2 processes
    assert metrics["split_sizes"]["train"] == 240


@pytest.mark.slow  # trains a model (~30 s or more)
def test_resume_after_kill(tmp_path, data_root):
    output = tmp_path / "resume"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HYBRID_DATA": str(data_root)}
    command = [sys.executable, str(TRAIN), *SMALL, "--limit", "120", "--epochs", "2", "--output", str(output)]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (output / "checkpoints" / "epoch_1").is_dir():
            assert process.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert not (output / "metrics.json").exists()
    assert not (output / "model.safetensors").exists()

    refused = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "--resume" in refused.stderr

    done = subprocess.run([*command, "--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in done.stderr
    metrics = json.loads((output / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["history"]] == [1, 2]  # epoch 1 from the killed run, 2 resumed
    assert metrics["epochs_run"] == 2
    assert [p.name for p in (output / "checkpoints").glob("epoch_*")] == ["epoch_2"]


# --- recipe parsing (in-process, fast) ------------------------------------------------------------


def test_recipe_yaml_and_flags(tmp_path):
    config = str(_REPO / "train" / "configs" / "classifier.yaml")
    recipe = _recipe("--config", config)
    assert (recipe.model, recipe.lr, recipe.batch_size, recipe.epochs) == ("resnet50", 0.001, 32, 50)
    assert recipe.flip
    assert recipe.rotation == 15
    recipe = _recipe(
        "--config",
        config,
        "--no-flip",
        "--rotation",
        "0",
        "--image-size",
        "128",
        "--split",
        "0.7,0.2,0.1",
        "--pretrained",
    )
    assert (recipe.flip, recipe.rotation, recipe.image_size, recipe.pretrained) == (False, 0.0, 128, "true")
    assert recipe.split == [0.7, 0.2, 0.1]
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    with pytest.raises(ValueError, match="epochz"):
        _recipe("--config", str(bad))
    with pytest.raises(ValueError, match="split"):
        _recipe("--split", "0.5,0.1,0.1")
    with pytest.raises(ValueError, match="augment"):
        _recipe("--augment", "autoaugment")


@pytest.mark.parametrize("policy", ["randaugment", "trivialaugment"])
def test_augment_policies_change_the_crop_not_its_shape(policy, hand_crops):
    plain_args = ["--image-size", "96", "--no-flip", "--rotation", "0", "--crop-scale", "1,1"]
    plain = train.train_transform(_recipe(*plain_args), (0.5,) * 3, (0.25,) * 3)
    augmented = train.train_transform(_recipe("--augment", policy, *plain_args), (0.5,) * 3, (0.25,) * 3)
    image = hand_crops[0]
    torch.manual_seed(0)
    outs = [augmented(image) for _ in range(8)]
    assert all(o.shape == (3, 96, 96) for o in outs)
    assert any(not torch.allclose(o, plain(image), atol=1e-3) for o in outs)


def test_per_class_metrics_cover_every_name():
    """Per-class numbers come from hybrid.evaluate.hand_metrics; names never predicted nor seen count zero."""
    detail = train.per_class([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b", "c"])
    assert detail["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert detail["per_class"]["b"] == {"precision": 0.6667, "recall": 1.0, "f1": 0.8, "support": 2}
    assert detail["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert detail["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]


def test_fine_tune_from_a_local_model(trained_classifier, tmp_path, data_root):
    """`--pretrained DIR`: start from one of our models (6 finger classes) on another set (10 digits): the
    backbone comes from DIR, the head is new, and the card carries the licences of both models' data."""
    out = tmp_path / "digits"
    done = train_classifier(
        out, *SMALL, "--limit", "100", "--epochs", "1", "--pretrained", str(trained_classifier), data_root=data_root
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Loading pretrained weights from file" in done.stderr + done.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["num_classes"] == 10
    card = (out / "README.md").read_text()
    front = card.split("---")[1]
    for name in ("sign-digits", "hands", "roboflow"):
        assert f"- {name}" in front, name
    assert "Soubhi Hadri" in card
    assert "CC BY 4.0" in card  # the starting weights' data, credited


# --- disk: checkpoints --------------------------------------------------------------------------------


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


@pytest.mark.slow  # trains a model (~20 s)
def test_finished_recipe_folder_is_at_most_twice_its_weights_and_logs(tmp_path, data_root):
    """The full recipe (train/configs/classifier.yaml, keep_checkpoints: 0) on a tiny run of several epochs:
    no checkpoints/ left, the folder <= 2x (model.safetensors + runs/)."""
    output = tmp_path / "full"
    args = ["--config", str(_REPO / "train" / "configs" / "classifier.yaml"), "--model", "resnet18", *SMALL]
    done = train_classifier(output, *args, "--limit", "60", "--epochs", "3", data_root=data_root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((output / "metrics.json").read_text())["epochs_run"] == 3
    assert not (output / "checkpoints").exists()
    weights_and_logs = _size(output / "model.safetensors") + _size(output / "runs")
    assert _size(output) <= 2 * weights_and_logs, sorted(p.name for p in output.iterdir())
    again = train_classifier(output, *args, "--limit", "60", "--epochs", "4", "--resume", data_root=data_root)
    assert again.returncode == 2
    assert "holds a finished run without checkpoints (--keep-checkpoints 0)" in again.stderr


@pytest.mark.slow  # trains a model (~20 s)
def test_keep_checkpoints_keeps_the_newest_epochs(tmp_path, data_root):
    """--keep-checkpoints 2 over 3 epochs: the last two epoch states remain; the best model is the folder's."""
    output = tmp_path / "kept"
    done = train_classifier(
        output,
        *SMALL,
        "--model",
        "resnet18",
        "--limit",
        "60",
        "--epochs",
        "3",
        "--keep-checkpoints",
        "2",
        data_root=data_root,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["epoch_2", "epoch_3"]


@pytest.mark.slow  # trains a model (~30 s)
def test_ema_weights_are_what_is_kept_and_resumed(tmp_path, data_root):
    """--ema: the moving average is validated and saved (not the raw weights, which the epoch checkpoint holds),
    and --resume restores it with the rest of the state."""
    from safetensors.numpy import load_file

    output = tmp_path / "ema"
    args = ["--model", "resnet18", *SMALL, "--limit", "60", "--ema", "0.9", "--keep-checkpoints", "1"]
    done = train_classifier(output, *args, "--epochs", "2", data_root=data_root)
    assert done.returncode == 0, done.stderr[-3000:]
    (checkpoint,) = (output / "checkpoints").glob("epoch_*")
    assert list(checkpoint.glob("custom_checkpoint_0.*")), "the average is not in the resumable state"
    kept, raw = load_file(output / "model.safetensors"), load_file(checkpoint / "model.safetensors")
    assert not all(np.array_equal(kept[name], raw[name]) for name in kept if name in raw)
    again = train_classifier(output, *args, "--epochs", "3", "--resume", data_root=data_root)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stderr
    assert json.loads((output / "metrics.json").read_text())["recipe"]["ema"] == 0.9
    refused = train_classifier(tmp_path / "bad", *args[:-4], "--ema", "1", data_root=data_root)
    assert refused.returncode == 2 and "--ema: expected a decay in [0, 1)" in refused.stderr


@pytest.mark.slow  # trains a model (~15 s)
def test_random_convolution_and_mix_style_train_and_save_the_plain_architecture(tmp_path, data_root):
    from hybrid.classifier import GestureClassifier

    output = tmp_path / "regularized"
    args = ["--model", "resnet18", *SMALL, "--limit", "40", "--random-convolution", "1", "--mix-style", "1"]
    done = train_classifier(output, *args, "--epochs", "1", data_root=data_root)
    assert done.returncode == 0, done.stderr[-3000:]
    recipe = json.loads((output / "metrics.json").read_text())["recipe"]
    assert (recipe["random_convolution"], recipe["mix_style"]) == (1.0, 1.0)
    loaded = GestureClassifier.from_pretrained(str(output))
    assert not loaded.model.layer1._forward_hooks  # MixStyle's hooks were the training's, not the model's
