"""`pip install .` (not editable) into a fresh venv, then `hybrid push` against the test Hub renders both model
cards: the templates ship inside the wheel (hybrid.model_cards) instead of being found through the checkout.

The fresh venv borrows the project venv's third-party packages (torch, huggingface_hub, ...) through a .pth
line, which does not run the project venv's own .pth files, so its editable `hybrid` cannot shadow the one
installed here (checked: `hybrid.__file__` lies in the fresh venv).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from PIL import Image

from tests.hubserver import HubServer

REPO = Path(__file__).resolve().parent.parent
ORG = "hybrid-org"
SOURCES = ("hybrid", "model_cards", "pyproject.toml", "README.md", "LICENSE")

# Run by the fresh venv's python: render a card with the installed package and write it into the folder.
RENDER = r"""
import json, sys
from huggingface_hub import EvalResult
import hybrid.publish
kind, folder, context = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
card_data = context.pop("card_data")
card_data["eval_results"] = [EvalResult(**result) for result in card_data["eval_results"]]
card = hybrid.publish.render_card(kind, card_data, **context)
open(folder + "/README.md", "w", encoding="utf-8").write(str(card))
print(hybrid.__file__)
"""

DATASETS = [
    {
        "name": "hands",
        "licence": "Apache-2.0",
        "attribution": "Hands Dataset by Soubhi Hadri",
        "origin": "https://github.com/SubhiH/HandsDataset",
    }
]


def _card_data(kind: str, task: str, metric: str, value: float) -> dict:
    return {
        "license": "agpl-3.0",
        "library_name": {"classifier": "timm", "detector": "ultralytics"}[kind],
        "pipeline_tag": task,
        "tags": ["hybrid", "hand-gesture"],
        "datasets": ["hands"],
        "model_name": f"packaged {kind}",
        "eval_results": [
            {
                "task_type": task,
                "dataset_type": "hands",
                "dataset_name": "hands",
                "dataset_split": "test",
                "metric_type": metric,
                "metric_value": value,
            }
        ],
    }


CONTEXTS = {
    "classifier": {
        "card_data": _card_data("classifier", "image-classification", "accuracy", 0.875),
        "model_name": "packaged classifier",
        "label_names": ["0", "5"],
        "data": DATASETS,
        "recipe": {
            "model": "resnet50",
            "image_size": 32,
            "split": [0.8, 0.1, 0.1],
            "seed": 0,
            "crop_scale": [0.08, 1.0],
            "flip": True,
            "rotation": 15.0,
            "epochs": 1,
        },
        "metrics": {
            "best_epoch": 1,
            "epochs": 1,
            "split_sizes": {"train": 8, "val": 1, "test": 1},
            "train_accuracy": 0.5,
            "val_accuracy": 0.75,
            "test_accuracy": 0.875,
            "per_class_split": "test",
            "per_class": {"5": {"precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2}},
            "timing": {"seconds_per_epoch_mean": 1.5, "device": "cpu", "mixed_precision": "no", "processes": 1},
        },
    },
    "detector": {
        "card_data": _card_data("detector", "object-detection", "mAP@0.5", 0.625),
        "model_name": "packaged detector",
        "names": ["hand"],
        "datasets": DATASETS,
        "has_curve": False,
        "gestures": False,
        "stats": {split: {"images": 4} for split in ("train", "val", "test")},
        "recipe": {
            "model": "n",
            "epochs": 1,
            "train_args": {},
            "image_size": 64,
            "batch_size": 16,
            "seed": 0,
            "conf": 0.25,
            "iou": 0.7,
            "data": ["hands"],
        },
        "metrics": {
            "epochs_trained": 1,
            "boxes": 6,
            "image_size": 64,
            "images": 4,
            "initialisation": "scratch",
            "mAP50": 0.625,
            "mAP50-95": 0.25,
            "precision": 0.5,
            "recall": 0.5,
            "split": "test",
            "speed_ms_per_image": {"inference": 3.0},
        },
    },
}
FILES = {
    "classifier": ("model.safetensors", "config.json"),
    "detector": ("model.safetensors", "config.json", "best.pt"),
}


def fresh_venv(root: Path) -> Path:
    """A venv without pip whose python also sees the project venv's site-packages (after its own)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = next((root / "lib").glob("python3.*/site-packages"))
    (site / "project-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root / "bin" / "python"


def model_folder(folder: Path, kind: str) -> Path:
    """A folder `push` accepts: the files the kind needs (their content is not read by a push) and metrics."""
    folder.mkdir(parents=True)
    for name in FILES[kind]:
        (folder / name).write_bytes(b"{}" if name.endswith(".json") else b"\0" * 16)
    (folder / "metrics.json").write_text(json.dumps(CONTEXTS[kind]["metrics"]))
    if kind == "classifier":
        Image.new("RGB", (8, 8)).save(folder / "confusion_matrix.png")  # the card shows it
    return folder


@pytest.mark.slow
def test_installed_package_renders_and_pushes_both_cards(tmp_path):
    source = tmp_path / "src"
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(
            REPO / name,
            source / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if (REPO / name).is_dir() else {}),
        )
    python = fresh_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--ignore-installed",
            str(source),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    installed = Path(
        subprocess.run(
            [str(python), "-c", "import hybrid; print(hybrid.__file__)"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    ).parent
    assert installed.is_relative_to(tmp_path / "venv")
    modules = {p.relative_to(REPO / "hybrid") for p in (REPO / "hybrid").rglob("*.py") if "__pycache__" not in p.parts}
    assert {p.relative_to(installed) for p in installed.rglob("*.py")} >= modules  # no subpackage left out
    cards = sorted(p.name for p in (installed / "model_cards").glob("*.md"))
    assert cards == ["classifier-usage.md", "classifier.md", "detector-usage.md", "detector.md", "generalization.md"]

    with HubServer(tmp_path / "hub") as hub:
        hub_env = {k: v for k, v in hub.client_env(tmp_path / "hf-home").items() if k not in ("PYTHONPATH",)}
        for kind in ("classifier", "detector"):
            folder = model_folder(tmp_path / "models" / kind, kind)
            render = subprocess.run(
                [str(python), "-c", RENDER, kind, str(folder), json.dumps(CONTEXTS[kind])],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
            )
            assert render.returncode == 0, render.stderr[-3000:]
            assert Path(render.stdout.strip()).is_relative_to(tmp_path / "venv")
            push = subprocess.run(
                [str(python.parent / "hybrid"), "push", kind, str(folder), f"{ORG}/{kind}"],
                cwd=tmp_path,
                env=hub_env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert push.returncode == 0, push.stderr[-3000:]
            assert push.stdout.strip().startswith(f"{ORG}/{kind}@")
            card = hub.store.git(hub.store.path("model", f"{ORG}/{kind}"), "show", "main:README.md").stdout.decode()
            local = (folder / "README.md").read_text(encoding="utf-8")
            assert card.split("\n---\n")[0] == local.split("\n---\n")[0]  # the metadata as rendered
            assert "path/to/this/folder" in local  # no recipe output given: the local card says so
            assert "path/to/this/folder" not in card
            assert f'"{ORG}/{kind}' in card  # the usage snippets, rendered by the installed package at push time
            assert f"# packaged {kind}" in card
            assert "Hands Dataset by Soubhi Hadri" in card
            assert "## Across people and cameras" in card and "| baseline |" in card  # the cross-domain table
            assert "{{" not in card
            assert "{%" not in card
        assert (
            "0.8750"
            in hub.store.git(hub.store.path("model", f"{ORG}/classifier"), "show", "main:README.md").stdout.decode()
        )  # test accuracy, as the template formats it
