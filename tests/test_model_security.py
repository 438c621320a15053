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
import time
from pathlib import Path

import pytest
import torch

from hybrid.classifier import GestureClassifier, check_config
from hybrid.detector import CONFIG_NAME, MODULES, WEIGHTS_NAME, HandDetector, check_model_cost, check_model_yaml
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
        ("args", r"backbone\[0\]: Conv argument 1 \(channels\) must be an integer in 1\.\.2048 or 'nc', got \"__imp"),
        ("nested_args", r"head\[0\]: nn\.Upsample argument 3 \(mode\) must be 'nearest', got \["),
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
        (lambda c: c["model_yaml"]["backbone"][0][3].__setitem__(0, 10**9), r"backbone\[0\]: Conv argument 1 "),
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
        (lambda c: c["pretrained_cfg"].update(std=[0, 0, 0]), r"field 'pretrained_cfg.std' must be 3 numbers in"),
        (lambda c: c["pretrained_cfg"].update(std=[0.2, -0.2, 0.2]), r"field 'pretrained_cfg.std' must be 3 numb"),
        (lambda c: c["pretrained_cfg"].update(std=[0.2, 0.2]), r"field 'pretrained_cfg.std' must be 3 numbers"),
        (lambda c: c["pretrained_cfg"].update(mean=[-1e9, 0.5, 0.5]), r"field 'pretrained_cfg.mean' must be 3 num"),
        (lambda c: c["pretrained_cfg"].update(mean=[float("inf")] * 3), r"field 'pretrained_cfg.mean' must be 3"),
        # crops are cut at input side / crop_pct: 0.002 made each of up to 32 crops 16000 px (768 MB)
        (lambda c: c["pretrained_cfg"].update(crop_pct=0.002), r"field 'pretrained_cfg.crop_pct' must be a number in"),
        (lambda c: c["pretrained_cfg"].update(input_size=[3, 4096, 4096]), r"field 'pretrained_cfg.input_size'"),
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


# --- loading checks files, sizes and values ---------------------------------------------------------------------


def _model_yaml(folder: Path) -> dict:
    return json.loads((folder / CONFIG_NAME).read_text())["model_yaml"]


def _yolov8(scale: str) -> dict:
    """Ultralytics' own yolov8{scale}.yaml as the dict its loader makes (scale letter and file name set)."""
    from ultralytics.nn.tasks import yaml_model_load

    return yaml_model_load(f"yolov8{scale}.yaml")


@pytest.mark.parametrize(
    "scale, parameters, gflops",
    [("n", 3.16, 8.7), ("s", 11.2, 28.6), ("m", 25.9, 78.9), ("l", 43.7, 165), ("x", 68.2, 258)],
)
def test_every_yolov8_scale_passes_the_bounds_and_the_budget(scale, parameters, gflops):
    """The bounds are not tighter than Ultralytics' own models, and the estimate is Ultralytics' (its model table:
    YOLOv8n 3.2 M parameters, 8.7 GFLOPs at 640 ... YOLOv8x 68.2 M, 257.8 GFLOPs)."""
    model_yaml = _yolov8(scale)
    check_model_yaml(copy.deepcopy(model_yaml))
    counted, flops = check_model_cost(model_yaml, nc=80, image_size=640)
    assert counted / 1e6 == pytest.approx(parameters, rel=0.01)
    assert flops == pytest.approx(gflops, rel=0.01)


def test_a_huge_kernel_is_refused_within_a_second_before_any_network_is_built(detector_folder, tmp_path):
    """A Conv kernel of 2048 passed the old allowlist and held both cores for minutes building the network."""
    folder = _crafted(detector_folder, tmp_path, lambda c: c["model_yaml"]["backbone"][0].__setitem__(3, [64, 2048, 2]))
    expected = r"backbone\[0\]: Conv argument 2 \(kernel\) must be an integer in 1\.\.7, got 2048"
    with pytest.raises(ValueError, match=expected):
        check_model_yaml(_model_yaml(folder))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=expected) as error:
        HandDetector.from_pretrained(folder)
    assert time.perf_counter() - start < 1
    assert "\n" not in str(error.value)
    assert str(folder / CONFIG_NAME) in str(error.value)


@pytest.mark.parametrize(
    "part, index, args, expected",
    [
        ("backbone", 0, [4096, 3, 2], r"Conv argument 1 \(channels\) must be an integer in 1\.\.2048"),
        ("backbone", 1, [128, 3, 64], r"Conv argument 3 \(stride\) must be an integer in 1\.\.4"),
        ("backbone", 1, [128, 3, 2, 1000], r"Conv argument 4 \(padding\) must be"),
        ("backbone", 1, [128, 3, 2, None, 1, 512], r"Conv argument 6 \(dilation\) must be an integer in 1\.\.4"),
        ("backbone", 1, [128, 3, 2, None, 1, 1, True, 7], r"Conv takes at most 7 arguments"),
        ("backbone", 2, [128, True, 1, 1000], r"C2f argument 4 \(expansion\) must be a number in \(0, 4"),
        ("backbone", 9, [1024, 2047], r"SPPF argument 2 \(pool\) must be an integer in 1\.\.13"),
        ("backbone", 9, [1024, 5, 10000], r"SPPF argument 3 \(repeats\) must be an integer in 1\.\.32"),
        ("head", 0, [None, 1024, "nearest"], r"nn\.Upsample argument 2 \(scale_factor\) must be a number in"),
        ("head", 0, [100000, None, "nearest"], r"nn\.Upsample argument 1 \(size\) must be null"),
        ("head", 12, ["nc", 16], r"Detect takes at most 1 argument"),
    ],
)
def test_each_layer_argument_is_bounded_for_its_module(detector_folder, part, index, args, expected):
    model_yaml = _model_yaml(detector_folder)
    model_yaml[part][index][3] = args
    with pytest.raises(ValueError, match=rf"{part}\[{index}\]: {expected}"):
        check_model_yaml(model_yaml)


def _insert_layers(model_yaml: dict, rows: list) -> None:
    """`rows` put at the start of the head; the absolute 'from' indices of the later layers moved past them."""
    start = len(model_yaml["backbone"])

    def shift(source: int) -> int:
        return source + len(rows) if source >= start else source

    for row in model_yaml["head"]:
        row[0] = [shift(s) for s in row[0]] if isinstance(row[0], list) else shift(row[0])
    model_yaml["head"][:0] = rows


def _wide(config: dict) -> None:  # every argument in bounds: YOLOv8 at depth 1, width 2 has 307 M parameters
    config["model_yaml"]["scales"]["n"] = [1.0, 2.0, 2048]


def _strided(config: dict) -> None:  # 3 M parameters; the first three convs at stride 1: 64x the work, ~1.4 TFLOPs
    config["image_size"] = 1024
    for index in (0, 1, 3):
        config["model_yaml"]["backbone"][index][3][2] = 1


def _blown_up(config: dict) -> None:  # no more work to count, but one map of 17 G elements (68 GB)
    upsample, pool = [-1, 1, "nn.Upsample", [None, 4, "nearest"]], [-1, 1, "nn.MaxPool2d", [4, 4, 0]]
    _insert_layers(config["model_yaml"], [upsample] * 5 + [pool] * 5)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (_wide, r"the network has \d+ M parameters; at most 200 M are allowed"),
        (_strided, r"one forward pass at 1024 px takes \d+ GFLOPs; at most 1200 are allowed"),
        (_blown_up, r"one forward pass at 256 px makes a tensor of \d+ M elements; at most 268 M are allowed"),
    ],
)
def test_a_network_over_the_budget_is_refused_before_it_is_built(detector_folder, tmp_path, edit, expected):
    """Each of these passes the argument bounds; the old loader built them (minutes, or tens of GB)."""
    folder = _crafted(detector_folder, tmp_path, edit)
    config = json.loads((folder / CONFIG_NAME).read_text())
    with pytest.raises(ValueError, match=expected):
        check_model_cost(config["model_yaml"], nc=1, image_size=config["image_size"])
    start = time.perf_counter()
    with pytest.raises(ValueError, match=rf"config\.json: field 'model_yaml': {expected}") as error:
        HandDetector.from_pretrained(folder)
    assert time.perf_counter() - start < 20  # counted on the 'meta' device: shapes, no memory, no arithmetic
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c.update(architecture="vit_giant_patch14_224"), r"the network has 1011 M parameters; at most 200"),
        (
            lambda c: c.update(architecture="resnet50") or c["pretrained_cfg"].update(input_size=[3, 640, 640]),
            r"one crop at 640x640 px takes \d+ GFLOPs; at most 25",
        ),
    ],
)
def test_a_classifier_over_the_budget_is_refused_before_it_is_built(classifier_folder, tmp_path, edit, expected):
    folder = _crafted(classifier_folder, tmp_path, edit)
    with pytest.raises(ValueError, match=expected):
        check_config(json.loads((folder / CONFIG_NAME).read_text()), "config.json")
    with pytest.raises(ValueError, match=rf"config\.json: {expected}") as error:
        GestureClassifier.from_pretrained(folder, device="cpu")
    assert "\n" not in str(error.value)


# Each loader, the clean folder it loads, and a 4-d tensor of its weights.
LOADERS = {
    "detector": ("detector_folder", HandDetector.from_pretrained, "model.0.conv.weight"),
    "classifier": (
        "classifier_folder",
        lambda folder: GestureClassifier.from_pretrained(folder, device="cpu"),
        "conv1.weight",
    ),
}


def _with_weights(folder: Path, edit) -> None:
    """Rewrite `folder`'s model.safetensors with `edit(state)` applied to its tensors."""
    from safetensors.torch import load_file, save_file

    state = load_file(folder / WEIGHTS_NAME)
    edit(state)
    save_file(state, folder / WEIGHTS_NAME)


def _symlink_to_text(folder: Path, name: str) -> None:
    (folder / "notes.txt").write_text("not a model\n")
    (folder / name).unlink()
    (folder / name).symlink_to("notes.txt")


def _folder_instead(folder: Path, name: str) -> None:
    (folder / name).unlink()
    (folder / name).mkdir()


def _nested(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


def _link_outside(folder: Path, name: str) -> None:
    """`name` moved out of the folder (to a clean copy next to it) and linked back."""
    outside = folder.parent / "elsewhere"
    outside.mkdir()
    (folder / name).rename(outside / name)
    (folder / name).symlink_to(outside / name)


def _huge_header(folder: Path) -> None:
    """model.safetensors with 150,000 metadata keys: a 5 MB header (3 M keys, 50 MB, are under the library's own
    100 MB cap and took 16 s and 1.5 GB to open)."""
    from safetensors.torch import load_file, save_file

    state = load_file(folder / WEIGHTS_NAME)
    save_file(state, folder / WEIGHTS_NAME, metadata={f"key{i:07d}": "v" * 16 for i in range(150_000)})


HOSTILE_FILES = {
    "huge_header": (
        lambda folder, tensor: _huge_header(folder),
        r"model\.safetensors: a safetensors header of [\d,]+ bytes \(at most 4,000,000\)",
    ),
    "shape": (
        lambda folder, tensor: _with_weights(folder, lambda s: s.__setitem__(tensor, torch.zeros(8, 3, 3, 3))),
        r"model\.safetensors: weights do not match the network config\.json describes: tensor '{tensor}' has shape "
        r"\[8, 3, 3, 3\], not \[",
    ),
    "missing": (
        lambda folder, tensor: _with_weights(folder, lambda s: s.pop(tensor)),
        r"model\.safetensors: weights do not match .*: tensor '{tensor}' missing \(1 name\(s\) differ\)",
    ),
    "extra": (
        lambda folder, tensor: _with_weights(folder, lambda s: s.__setitem__("payload", torch.zeros(3))),
        r"model\.safetensors: weights do not match .*: tensor 'payload' is not part of it",
    ),
    "nan": (
        lambda folder, tensor: _with_weights(folder, lambda s: s[tensor].view(-1).__setitem__(0, float("nan"))),
        r"model\.safetensors: tensor '{tensor}' holds NaN or infinite values",
    ),
    "inf": (
        lambda folder, tensor: _with_weights(folder, lambda s: s[tensor].view(-1).__setitem__(-1, float("-inf"))),
        r"model\.safetensors: tensor '{tensor}' holds NaN or infinite values",
    ),
    "huge": (  # finite, but overflows to inf and then NaN in the first layer
        lambda folder, tensor: _with_weights(folder, lambda s: s[tensor].view(-1).__setitem__(0, 3e38)),
        r"model\.safetensors: tensor '{tensor}' holds values over 10000",
    ),
    "negative_variance": (  # a BatchNorm divides by sqrt(running_var): NaN for every input
        lambda folder, tensor: _with_weights(
            folder, lambda s: next(v for k, v in s.items() if k.endswith("running_var")).fill_(-1.0)
        ),
        r"model\.safetensors: tensor '[\w.]+running_var' \(a variance\) holds negative values",
    ),
    "weights_link_to_text": (
        lambda folder, tensor: _symlink_to_text(folder, WEIGHTS_NAME),
        r"model\.safetensors: not a safetensors file",
    ),
    "weights_link_outside": (
        lambda folder, tensor: _link_outside(folder, WEIGHTS_NAME),
        r"model\.safetensors: a symlink to a file outside its model folder",
    ),
    "config_link_outside": (
        lambda folder, tensor: _link_outside(folder, CONFIG_NAME),
        r"config\.json: a symlink to a file outside its model folder",
    ),
    "config_folder": (lambda folder, tensor: _folder_instead(folder, CONFIG_NAME), r"config\.json: not a regular file"),
    "config_nested": (
        lambda folder, tensor: (folder / CONFIG_NAME).write_text("[" * 100_000 + "]" * 100_000),
        r"config\.json: not valid JSON \(nested too deeply\)",
    ),
    "config_deep": (
        lambda folder, tensor: (folder / CONFIG_NAME).write_text(
            json.dumps({**json.loads((folder / CONFIG_NAME).read_text()), "notes": _nested(40)})
        ),
        r"config\.json: nested deeper than 32 levels",
    ),
    "config_not_an_object": (
        lambda folder, tensor: (folder / CONFIG_NAME).write_text("[1, 2]"),
        r"config\.json: expected a JSON object",
    ),
}


@pytest.mark.parametrize("kind", LOADERS)
@pytest.mark.parametrize("case", HOSTILE_FILES)
def test_a_hostile_model_file_is_one_line_naming_it(request, tmp_path, kind, case):
    fixture, load, tensor = LOADERS[kind]
    folder = tmp_path / "crafted"
    shutil.copytree(request.getfixturevalue(fixture), folder)
    make, expected = HOSTILE_FILES[case]
    make(folder, tensor)
    with pytest.raises(ValueError, match=expected.format(tensor=tensor.replace(".", r"\."))) as error:
        load(folder)
    assert "\n" not in str(error.value)
    assert str(folder) in str(error.value)


@pytest.mark.parametrize("kind", LOADERS)
def test_symlinks_inside_the_folder_or_into_a_hub_cache_snapshot_load(request, tmp_path, kind):
    """What is refused above is only a link out of the folder: a link to a file beside it, and a Hub cache
    snapshot's links into its repo's blobs/, load as before."""
    fixture, load, _ = LOADERS[kind]
    clean = request.getfixturevalue(fixture)
    repo = tmp_path / "models--org--name"
    snapshot = repo / "snapshots" / ("a" * 40)
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    shutil.copy(clean / WEIGHTS_NAME, repo / "blobs" / "0123")
    (snapshot / WEIGHTS_NAME).symlink_to(Path("..", "..", "blobs", "0123"))
    shutil.copy(clean / CONFIG_NAME, snapshot / "config.copy")
    (snapshot / CONFIG_NAME).symlink_to("config.copy")
    loaded = load(snapshot)
    assert loaded.names == ["hand"] if kind == "detector" else loaded.label_names == ["fist", "palm"]
