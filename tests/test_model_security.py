"""Hostile model repos: loading a detector, a classifier or a Space pin must never run code from the repo.

Each crafted folder below is what an attacker would publish as `org/repo`; `from_pretrained` on a folder goes
through the same checks as a Hub snapshot. Where the attack would run a shell command, the test asserts both the
clear refusal and that the command's side effect (a marker file) did not happen.
"""

from __future__ import annotations

import copy
import glob
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from hybrid.classifier import GestureClassifier
from hybrid.detector import CONFIG_NAME, MODULES, WEIGHTS_NAME, HandDetector, check_model_yaml
from hybrid.hub import default_model


class _RunsShell:
    """Unpickling this runs `touch <marker>`: the payload of a malicious .pt/.bin."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _shell(marker: Path) -> str:
    return f"__import__('os').system('touch {marker}')"


# --- detector ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector_folder(tmp_path_factory) -> Path:
    """An untrained yolov8n hand detector saved by HandDetector.save_pretrained (config.json + safetensors)."""
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolov8n.yaml", nc=1, verbose=False)
    folder = tmp_path_factory.mktemp("detector") / "clean"
    HandDetector(model, ["hand"], image_size=64).save_pretrained(folder)
    return folder


def _crafted(source: Path, tmp_path: Path, edit) -> Path:
    """A copy of `source` whose config.json went through `edit(config)`."""
    folder = tmp_path / "crafted"
    shutil.copytree(source, folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    edit(config)
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    return folder


def test_clean_detector_folder_loads(detector_folder):
    detector = HandDetector.from_pretrained(detector_folder)
    assert detector.names == ["hand"]
    assert detector.image_size == 64


def test_activation_string_is_refused_and_never_evaluated(detector_folder, tmp_path):
    """Ultralytics' parse_model eval()s `activation`: the old loader ran this shell command."""
    marker = tmp_path / "pwned"
    folder = _crafted(
        detector_folder, tmp_path, lambda c: c["model_yaml"].update(activation=f"{_shell(marker)} or nn.SiLU()")
    )
    with pytest.raises(ValueError, match=r"config\.json: field 'model_yaml': field\(s\) 'activation' not allowed"):
        HandDetector.from_pretrained(folder)
    assert not marker.exists(), "loading the detector ran the repo's shell command"


def test_module_name_resolving_to_an_unpickler_is_refused(detector_folder, tmp_path):
    """A layer's module name is looked up in ultralytics.nn.tasks' globals() and called with the row's args:
    'torch_safe_load' with a path unpickles that file. The old loader ran the pickle's shell command."""
    marker = tmp_path / "pwned"
    payload = tmp_path / "payload.pt"
    payload.write_bytes(pickle.dumps(_RunsShell(marker)))

    def edit(config):
        config["model_yaml"]["backbone"].insert(1, [-1, 1, "torch_safe_load", [repr(str(payload))]])

    crafted = _crafted(detector_folder, tmp_path, edit)
    with pytest.raises(ValueError, match=r"backbone\[1\]: module 'torch_safe_load' is not an allowed"):
        HandDetector.from_pretrained(crafted)
    assert not marker.exists(), "loading the detector unpickled a file named by the repo"


@pytest.mark.parametrize(
    "where, expected",
    [
        ("module", r"backbone\[0\]: module \"__import__"),
        ("args", r"backbone\[0\]: args must be a list of numbers"),
        ("nested_args", r"head\[0\]: args must be a list of numbers"),
    ],
)
def test_code_strings_elsewhere_in_the_yaml_are_refused(detector_folder, tmp_path, where, expected):
    marker = tmp_path / "pwned"

    def edit(config):
        rows = config["model_yaml"]
        if where == "module":
            rows["backbone"][0][2] = _shell(marker)
        elif where == "args":
            rows["backbone"][0][3] = [_shell(marker), 3, 2]
        else:
            rows["head"][0][3] = [None, 2, [_shell(marker)]]

    crafted = _crafted(detector_folder, tmp_path, edit)
    with pytest.raises(ValueError, match=expected):
        HandDetector.from_pretrained(crafted)
    assert not marker.exists()


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c["model_yaml"].update(kpt_shape=[17, 3]), r"field\(s\) 'kpt_shape' not allowed"),
        (lambda c: c["model_yaml"].update(nc="1"), r"field 'nc' must be an integer"),
        (lambda c: c["model_yaml"].update(scale="__class__"), r"field 'scale' must be one of"),
        (lambda c: c["model_yaml"]["scales"].update(q=[1, 1, 512]), r"field 'scales': unknown scale 'q'"),
        (lambda c: c["model_yaml"]["scales"].update(n=[0.33, 0.25, 10**9]), r"field 'scales.n' must be"),
        (lambda c: c["model_yaml"]["backbone"][1].__setitem__(0, 5), r"backbone\[1\]: 'from' must be"),
        (lambda c: c["model_yaml"]["backbone"][2].__setitem__(1, 10**6), r"backbone\[2\]: 'repeats' must be"),
        (lambda c: c["model_yaml"]["backbone"][0][3].__setitem__(0, 10**9), r"backbone\[0\]: args must be"),
        (lambda c: c["model_yaml"]["head"].pop(), r"the last layer, and only it, must be a Detect head"),
        (lambda c: c["model_yaml"].update(yaml_file="../../x.yaml"), r"field 'yaml_file' must be a plain file name"),
        (lambda c: c.update(names="hand"), r"field 'names' missing or not a list"),
        (lambda c: c.update(names=[1]), r"field 'names' must be a list of 1..1000 non-empty strings"),
        (lambda c: c.update(image_size=0), r"field 'image_size' must be an integer"),
        (lambda c: c.update(conf=1.5), r"field 'conf' must be a number in \[0, 1\]"),
        (lambda c: c.update(iou="0.7"), r"field 'iou' must be a number in \[0, 1\]"),
    ],
)
def test_detector_config_outside_the_allowlist_is_refused_with_one_line(detector_folder, tmp_path, edit, expected):
    crafted = _crafted(detector_folder, tmp_path, edit)
    with pytest.raises(ValueError, match=expected) as error:
        HandDetector.from_pretrained(crafted)
    assert "\n" not in str(error.value)
    assert str(tmp_path / "crafted" / CONFIG_NAME) in str(error.value)


def test_a_yaml_that_passes_the_allowlist_but_does_not_build_is_one_line(detector_folder, tmp_path):
    folder = _crafted(
        detector_folder, tmp_path, lambda c: c["model_yaml"]["backbone"].__setitem__(0, [-1, 1, "Conv", []])
    )
    with pytest.raises(ValueError, match=r"field 'model_yaml' does not build a YOLO network") as error:
        HandDetector.from_pretrained(folder)
    assert "\n" not in str(error.value)


def test_allowlist_covers_ultralytics_detection_yamls_and_names_only_layers():
    """Every allowed module name resolves (as parse_model resolves it) to an nn.Module class, never a function;
    every detection yaml Ultralytics ships passes, except yolov6 (it sets `activation`)."""
    import ultralytics
    import ultralytics.nn.tasks as tasks
    import yaml

    for name in MODULES:
        layer = getattr(torch.nn, name[3:]) if name.startswith("nn.") else vars(tasks)[name]
        assert isinstance(layer, type), name
        assert issubclass(layer, torch.nn.Module), name
    refused = []
    for path in sorted(glob.glob(str(Path(ultralytics.__file__).parent / "cfg" / "models" / "*" / "*.yaml"))):
        model_yaml = yaml.safe_load(Path(path).read_text())
        layers = model_yaml.get("backbone", []) + model_yaml.get("head", [])
        if layers and layers[-1][2] in ("Detect", "v10Detect"):
            try:
                check_model_yaml(copy.deepcopy(model_yaml), path)
            except ValueError:
                refused.append(Path(path).name)
    assert refused == ["yolov6.yaml"]


def test_trained_detector_folder_passes_the_allowlist(trained_detector):
    config = json.loads((trained_detector / CONFIG_NAME).read_text())
    check_model_yaml(config["model_yaml"])
    assert HandDetector.from_pretrained(trained_detector).names == ["hand"]


# --- classifier -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("classifier") / "clean"
    GestureClassifier.create("resnet18", ["fist", "palm"], image_size=32, device="cpu").save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda c: c.update(architecture="hf-hub:evil/model"),
            r"field 'architecture' must be the name of a timm model",
        ),
        (lambda c: c.update(architecture="no_such_net"), r"field 'architecture' must be the name of a timm model"),
        (lambda c: c.update(auto_map={"AutoModel": "evil.Model"}), r"field 'auto_map' not allowed"),
        (lambda c: c.update(trust_remote_code=True), r"field 'trust_remote_code' not allowed"),
        (lambda c: c["pretrained_cfg"].update(custom_load=True), r"field 'custom_load' not allowed"),
        (lambda c: c.update(model_args={"checkpoint_path": "/tmp/evil.pth"}), r"field 'model_args.checkpoint_path'"),
        (lambda c: c.update(model_args={"in_chans": "3"}), r"field 'model_args.in_chans'"),
        (lambda c: c.update(num_classes="2"), r"field 'num_classes' must be a positive integer"),
        (lambda c: c.update(label_names=[0, 1]), r"field 'label_names' must be a list of strings"),
        (lambda c: c.update(label_names=["a", "b", "c"]), r"field 'label_names' has 3 names but num_classes is 2"),
        (lambda c: c.update(pretrained_cfg=[]), r"field 'pretrained_cfg' missing or not a mapping"),
        (lambda c: c["pretrained_cfg"].update(input_size="big"), r"field 'pretrained_cfg.input_size'"),
        (lambda c: c["pretrained_cfg"].update(interpolation="exec"), r"field 'pretrained_cfg.interpolation'"),
    ],
)
def test_classifier_config_outside_the_schema_is_refused_with_one_line(classifier_folder, tmp_path, edit, expected):
    crafted = _crafted(classifier_folder, tmp_path, edit)
    with pytest.raises(ValueError, match=expected) as error:
        GestureClassifier.from_pretrained(crafted, device="cpu")
    assert "\n" not in str(error.value)
    assert str(tmp_path / "crafted" / "config.json") in str(error.value)


def test_classifier_never_unpickles_what_the_repo_points_at(classifier_folder, tmp_path, monkeypatch):
    """A pickle next to the safetensors, named by every pretrained_cfg source field, is never opened; a folder
    with only the pickle is refused."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_RunsShell(marker))

    def edit(config):
        config["pretrained_cfg"].update(
            file=str(tmp_path / "crafted" / "pytorch_model.bin"),
            source="",
            url="file://" + str(tmp_path / "crafted" / "pytorch_model.bin"),
        )

    folder = _crafted(classifier_folder, tmp_path, edit)
    (folder / "pytorch_model.bin").write_bytes(payload)

    def refuse(*args, **kwargs):
        raise AssertionError("from_pretrained unpickled something")

    with monkeypatch.context() as patch:
        for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads")):
            patch.setattr(module, name, refuse)
        clf = GestureClassifier.from_pretrained(folder, device="cpu")
        assert clf.label_names == ["fist", "palm"]
        (folder / WEIGHTS_NAME).unlink()
        with pytest.raises(FileNotFoundError, match="model.safetensors missing"):
            GestureClassifier.from_pretrained(folder, device="cpu")
    assert not marker.exists()


# --- Space pins -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pins, expected",
    [
        (
            {"classifier": "../../home/user/models/evil", "detector": "org/d"},
            r"field 'classifier' must be a Hub repo id",
        ),
        ({"classifier": "/etc", "detector": "org/d"}, r"field 'classifier' must be a Hub repo id"),
        ({"classifier": "org/c@../../x", "detector": "org/d"}, r"field 'classifier' must be a Hub repo id"),
        ({"classifier": "org/c", "detector": ["org/d"]}, r"field 'detector' must be a Hub repo id"),
        ({"classifier": "org/c", "detector": "org/d", "trust_remote_code": True}, r"expected only the fields"),
        (["org/c", "org/d"], r"expected only the fields"),
    ],
)
def test_space_pins_must_be_hub_ids(tmp_path, monkeypatch, pins, expected):
    monkeypatch.delenv("HYBRID_CLASSIFIER", raising=False)
    (tmp_path / "hybrid_space.json").write_text(json.dumps(pins))
    with pytest.raises(ValueError, match=expected) as error:
        default_model("classifier", root=tmp_path)
    assert "\n" not in str(error.value)
    assert "hybrid_space.json" in str(error.value)


def test_good_space_pins_resolve(tmp_path, monkeypatch):
    monkeypatch.delenv("HYBRID_DETECTOR", raising=False)
    pins = {"classifier": "org/c@" + "a" * 40, "detector": "org/hand-detector.v1@refs/pr/1"}
    (tmp_path / "hybrid_space.json").write_text(json.dumps(pins))
    assert default_model("detector", root=tmp_path) == pins["detector"]
