"""Starting from pretrained weights, the paths users with the Hub take: the classifier's `--pretrained true|auto`
resolves timm's ImageNet weights through the Hub (the test Hub on 127.0.0.1 serving a repo laid out like timm's),
the detector's `--pretrained FILE.pt` starts from an Ultralytics checkpoint; offline, `true` fails fast in one
line and `auto` falls back with one log line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.fixtures_models import _REPO
from tests.hubserver import HubServer, free_port

ARCH = "resnet18"  # timm's pretrained_cfg: hf_hub_id timm/resnet18.a1_in1k, licence apache-2.0
TIMM_REPO = "timm/resnet18.a1_in1k"
SMALL = ["--data", "sign-digits", "--limit", "40", "--image-size", "32", "--batch-size", "8", "--epochs", "1"]

# A repo laid out like timm's (config.json + model.safetensors, written by timm's own save_for_hf), pushed.
PUSH_TIMM = r"""
import sys, torch, timm
from huggingface_hub import HfApi
from timm.models._hub import save_for_hf
torch.manual_seed(1234)
model = timm.create_model(sys.argv[1], pretrained=False)  # 1000 ImageNet classes, like the real repo
with torch.no_grad():
    for name, buffer in model.named_buffers():  # non-default statistics: a load that skipped them shows
        if buffer.is_floating_point():
            buffer.uniform_(0.5, 1.5)
save_for_hf(model, sys.argv[3], safe_serialization=True)
api = HfApi()
api.create_repo(sys.argv[2], exist_ok=True)
api.upload_folder(repo_id=sys.argv[2], folder_path=sys.argv[3])
"""

# Train, keeping the network's state before the first step: fit() is where the steps start.
TRAIN_SNAPSHOT = r"""
import sys
from safetensors.torch import save_file
import hybrid.training.classifier as trainer
fit = trainer.fit
def snapshot_then_fit(run):
    state = run.accelerator.unwrap_model(run.model).state_dict()
    save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, sys.argv[1])
    fit(run)
trainer.fit = snapshot_then_fit
sys.exit(trainer.main(sys.argv[2:]))
"""


def _run(env: dict, cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _errors(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if " ERROR " in line or line.startswith("ERROR")]


@pytest.fixture
def hub(tmp_path):
    with HubServer(tmp_path / "hub", orgs=("hybrid-org", "timm")) as server:
        yield server


@pytest.mark.slow  # trains a model (~30 s)
def test_classifier_starts_from_timm_weights_on_the_hub(hub, tmp_path, data_root):
    """`--pretrained true` fetches what `timm.create_model('resnet18', pretrained=True)` fetches (pretrained_cfg
    hf_hub_id through huggingface_hub): before the first step every weight and statistic equals the served one
    except the new head; metrics.json and the card's metadata credit the source and its licence."""
    env = hub.client_env(tmp_path / "home", HYBRID_DATA=str(data_root), OMP_NUM_THREADS="1")
    pushed = _run(env, tmp_path, "-c", PUSH_TIMM, ARCH, TIMM_REPO, str(tmp_path / "timm-repo"))
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    served = load_file(tmp_path / "timm-repo" / "model.safetensors")

    output, snapshot = tmp_path / "clf", tmp_path / "before.safetensors"
    trained = _run(
        env,
        tmp_path,
        "-c",
        TRAIN_SNAPSHOT,
        str(snapshot),
        *SMALL,
        "--model",
        ARCH,
        "--pretrained",
        "true",
        "--output",
        str(output),
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    before = load_file(snapshot)
    head = {"fc.weight", "fc.bias"}
    assert set(before) - head == set(served) - head
    for name in sorted(set(served) - head):
        assert torch.equal(before[name], served[name]), name
    assert before["fc.weight"].shape[0] == 10 != served["fc.weight"].shape[0]  # ten digits, a new head

    metrics = json.loads((output / "metrics.json").read_text())
    assert (metrics["base_model"], metrics["base_model_license"]) == (TIMM_REPO, "apache-2.0")
    card = (output / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["base_model"] == TIMM_REPO
    assert f"Starting weights: fine-tuned from [{TIMM_REPO}]" in card
    assert "licence apache-2.0" in card
    assert f"{TIMM_REPO} (apache-2.0 licence)" in trained.stderr  # the log names source and licence


@pytest.mark.parametrize(
    "offline", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:{port}"}], ids=["offline", "unreachable"]
)
def test_classifier_pretrained_true_offline_fails_fast(tmp_path, data_root, offline):
    """No Hub and nothing cached: `--pretrained true` is one error line, exit 2, within seconds, nothing made."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({k: v.format(port=free_port()) for k, v in offline.items()})
    env.update(HF_HOME=str(tmp_path / "home"), HYBRID_DATA=str(data_root), OMP_NUM_THREADS="1")
    output = tmp_path / "clf"
    command = [str(_REPO / "train" / "classifier.py"), *SMALL, "--model", ARCH, "--pretrained", "--output", str(output)]
    done = _run(env, tmp_path, *command, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(_errors(done)) == 1, done.stderr[-3000:]
    assert f"--pretrained: ImageNet weights {TIMM_REPO} for {ARCH} unavailable" in _errors(done)[0]
    assert "Traceback" not in done.stderr
    assert not output.exists()


def test_classifier_pretrained_auto_offline_falls_back_with_one_line(tmp_path, data_root):
    """`auto` offline: one warning line naming the weights, then from scratch (the start is no file)."""
    script = (
        "import logging, sys; logging.basicConfig(level=logging.INFO)\n"
        "from hybrid.training.classifier import starting_weights\n"
        "from hybrid.training.recipe import ClassifierRecipe\n"
        f"start = starting_weights(ClassifierRecipe(model={ARCH!r}, pretrained='auto'))\n"
        "print('START', start.weights, start.source)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "home"))
    done = _run(env, tmp_path, "-c", script, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "START False None" in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith(("WARNING", "INFO:hybrid"))]
    assert lines == [
        f"WARNING:hybrid.training.classifier:ImageNet weights {TIMM_REPO} for {ARCH} unavailable: the Hub is "
        "unreachable (or HF_HUB_OFFLINE=1) and they are not cached; training from scratch"
    ]


# --- the detector ----------------------------------------------------------------------------------------

# Train the detector, keeping the trainer's network at the start of training (after Ultralytics loaded the
# starting weights, before the first step).
DETECTOR_SNAPSHOT = r"""
import sys, torch
import hybrid.training.detector as trainer
build = trainer.build_model
def build_and_watch(recipe):
    model = build(recipe)
    def keep(t):
        torch.save({k: v.detach().clone() for k, v in t.model.state_dict().items()}, sys.argv[1])
    model.add_callback("on_train_start", keep)
    return model
trainer.build_model = build_and_watch
sys.exit(trainer.main(sys.argv[2:]))
"""


@pytest.mark.slow  # trains a detector (~30 s)
def test_detector_starts_from_an_ultralytics_checkpoint(trained_detector, tmp_path, data_root):
    """`--pretrained best.pt` (our own tiny run's checkpoint, as a user brings yolov8n.pt) for a gesture detector:
    every layer whose shape matches starts equal to the checkpoint's; only the class outputs are new."""
    from ultralytics import YOLO

    checkpoint = trained_detector / "best.pt"
    env = {**os.environ, "HYBRID_DATA": str(data_root), "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1"}
    snapshot, output = tmp_path / "before.pt", tmp_path / "det"
    args = ["--config", str(_REPO / "train" / "configs" / "detector-tiny.yaml"), "--gestures", "--no-plots"]
    done = _run(
        env,
        tmp_path,
        "-c",
        DETECTOR_SNAPSHOT,
        str(snapshot),
        *args,
        "--pretrained",
        str(checkpoint),
        "--output",
        str(output),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    source = YOLO(str(checkpoint)).model.float().state_dict()
    before = torch.load(snapshot, weights_only=True)
    same = [k for k in source if k in before and before[k].shape == source[k].shape]
    different = sorted(set(source) - set(same))
    assert len(same) > 0.95 * len(source), different
    assert different and all(k.startswith("model.22.cv3.") for k in different), different  # the class outputs
    for name in same:
        assert torch.equal(before[name], source[name]), name
    assert json.loads((output / "metrics.json").read_text())["initialisation"] == "pretrained: best.pt"


def test_detector_pretrained_true_offline_fails_fast(tmp_path, data_root):
    """`--pretrained true` offline, no yolov8n.pt here and a weights folder without the COCO copy: one error line,
    before any dataset is written."""
    weights = tmp_path.parent / f"{tmp_path.name}-empty-weights"
    weights.mkdir()
    env = {
        **os.environ,
        "HYBRID_DATA": str(data_root),
        "HF_HUB_OFFLINE": "1",
        "YOLO_OFFLINE": "1",
        "HYBRID_WEIGHTS": str(weights),
    }
    config = str(_REPO / "train" / "configs" / "detector-tiny.yaml")
    output = tmp_path / "det"
    done = _run(
        env,
        tmp_path,
        str(_REPO / "train" / "detector.py"),
        "--config",
        config,
        "--pretrained",
        "true",
        "--output",
        str(output),
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert _errors(done) == [
        "ERROR hybrid.training.detector: --pretrained true: yolov8n.pt (COCO) is not here and cannot be downloaded "
        "offline, and the weights folder has no yolov8n-coco.pt (set HYBRID_WEIGHTS); give a local .pt "
        "(--pretrained FILE.pt), or --pretrained auto to train from scratch when it is unavailable"
    ]
    assert list(tmp_path.iterdir()) == []


# --- the detector from COCO, offline: the local copy in the weights folder (../shared/weights here) ------------

SHARED_WEIGHTS = _REPO.parent / "shared" / "weights"
COCO_COPY = SHARED_WEIGHTS / "yolov8n-coco.pt"


def _offline_env(data_root: Path, weights: Path | None = None) -> dict:
    """Offline, with the default weights folder (../shared/weights) or `weights` as HYBRID_WEIGHTS."""
    env = {**os.environ, "HYBRID_DATA": str(data_root), "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1"}
    env.pop("HYBRID_WEIGHTS", None)
    return {**env, "HYBRID_WEIGHTS": str(weights)} if weights else env


@pytest.mark.slow  # trains a detector (~30 s)
def test_detector_auto_starts_from_the_local_coco_copy_and_its_folder_loads_everywhere(tmp_path, data_root):
    """Offline `--pretrained auto` picks ../shared/weights/yolov8n-coco.pt: before the first step the network's
        weights equal the no-pickle copy of the same weights (yolov8n-coco.safetensors) wherever the shapes match, the
        head keeps COCO's 80-channel class branch, and the trained folder loads (it once failed: 'weights do not
        match') from safetensors, compiled, without PyTorch (hybrid.serving), with the same boxes as best.pt; the card
        names the base model and carries the attribution SOURCES.md asks for. With no `conf` in the recipe, the shipped
    score threshold is the val split's best F1."""
    import hashlib

    from hybrid import serving
    from hybrid.detector import HandDetector
    from hybrid.pipeline import HybridPipeline

    assert COCO_COPY.is_file(), f"the COCO copy is missing: {COCO_COPY}"
    snapshot, output = tmp_path / "before.pt", tmp_path / "det"
    recipe = tmp_path / "no-conf.yaml"  # the tiny recipe without `conf`: the threshold is chosen on val
    tiny = (_REPO / "train" / "configs" / "detector-tiny.yaml").read_text()
    recipe.write_text("\n".join(line for line in tiny.splitlines() if not line.startswith("conf:")))
    args = ["--config", str(recipe), "--pretrained", "auto"]
    done = _run(
        _offline_env(data_root), tmp_path, "-c", DETECTOR_SNAPSHOT, str(snapshot), *args, "--output", str(output)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "starting from yolov8n-coco.pt" in done.stderr
    coco = load_file(SHARED_WEIGHTS / "yolov8n-coco.safetensors")
    before = torch.load(snapshot, weights_only=True)
    same = [k for k in coco if k in before and before[k].shape == coco[k].shape and before[k].is_floating_point()]
    assert len(same) > 0.95 * sum(tensor.is_floating_point() for tensor in coco.values())
    for name in [k for k in same if k.endswith(".conv.weight")][:: len(same) // 20]:  # ~a dozen convolutions
        assert torch.allclose(before[name].float(), coco[name], atol=1e-3), name  # the .pt holds them in fp16

    config = json.loads((output / "config.json").read_text())
    metrics = json.loads((output / "metrics.json").read_text())
    assert config["head_channels"] == 80
    assert metrics["pretrained_from"]["sha256"] == hashlib.sha256(COCO_COPY.read_bytes()).hexdigest()
    assert metrics["base_model"] == "Ultralytics/YOLOv8"
    assert metrics["threshold"]["split"] == "val" and metrics["threshold"]["images"] > 0
    assert config["conf"] == metrics["threshold"]["threshold"] and 0.01 <= config["conf"] <= 0.95
    card = (output / "README.md").read_text()
    assert "base_model: Ultralytics/YOLOv8" in card and 'Ultralytics, "YOLOv8", 2023' in card
    assert f"conf {config['conf']}: the best F1 on the val split" in card

    photo = next((data_root / "subhih-handsdataset" / "images" / "test").glob("*.jpg"))
    reference = HandDetector.from_pretrained(output / "best.pt", allow_pickle=True).predict(photo, conf=0.001)
    loaded = HandDetector.from_pretrained(output)
    assert loaded.predict(photo, conf=0.001) == reference
    assert reference, "no boxes to compare"
    pipe = HybridPipeline(loaded, _tiny_classifier(), precision="fp32", onnx_cache_dir=tmp_path / "cache")
    compiled = pipe.detector.predict(photo, conf=0.001, image_size=loaded.image_size)
    assert list(compiled[0].box) == pytest.approx(list(reference[0].box), abs=1.0)  # OpenVINO's fp32 network
    served = serving.read(serving.write(pipe, tmp_path / "served"))  # what the app runs, without PyTorch
    assert served.detector.predict(photo, conf=0.001, image_size=loaded.image_size)[:3] == compiled[:3]


def _tiny_classifier():
    from hybrid.classifier import GestureClassifier

    return GestureClassifier.create("resnet18", ["0", "1"], image_size=32, pretrained=False)


def test_detector_auto_without_the_weights_folder_falls_back_with_one_line(tmp_path, data_root):
    """No yolov8n.pt, offline, and HYBRID_WEIGHTS naming a folder that does not exist: one warning, from scratch."""
    code = (
        "import logging; logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')\n"
        "from hybrid.training.detector import build_model\n"
        "from hybrid.training.recipe import DetectorRecipe\n"
        "model = build_model(DetectorRecipe(pretrained='auto'))\n"
        "print(model.initialisation, model.start)\n"
    )
    env = _offline_env(data_root, tmp_path / "no-such-folder")
    done = _run(env, tmp_path, "-c", code, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "random (from yolov8n.yaml) None"
    assert [line for line in done.stderr.splitlines() if line.startswith("WARNING")] == [
        "WARNING hybrid.training.detector: no yolov8n.pt (COCO) here, offline, and no yolov8n-coco.pt in the weights "
        "folder: training yolov8n from scratch"
    ]
