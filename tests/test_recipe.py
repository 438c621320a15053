"""The one recipe loader (hybrid.training.recipe) and the split file of a trained folder (hybrid.data.splits):
in-process and fast, on the shipped yamls and real records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hybrid.data import read_dataset
from hybrid.data.splits import held_out, load_split, record_id, save_split, split_records
from hybrid.files import umask
from hybrid.training.recipe import ClassifierRecipe, DetectorRecipe, Recipe, parse_recipe, save_recipe

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted(p for p in (REPO / "train" / "configs").glob("*.yaml") if not p.name.startswith("accelerate_"))


def _kind(path: Path) -> type[Recipe]:
    return ClassifierRecipe if path.name.startswith("classifier") else DetectorRecipe


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_recipe_yaml_loads(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths in the yamls (outputs/bench/sld) resolve here
    (tmp_path / "outputs" / "bench" / "sld").mkdir(parents=True)
    written = yaml.safe_load(config.read_text())
    recipe, given = parse_recipe(_kind(config), ["--config", str(config)])
    assert given == set(written)
    assert isinstance(recipe.data, list)
    assert all(isinstance(name, str) for name in recipe.data)
    for name in ("epochs", "image_size", "seed", "output"):
        if name in written:
            assert getattr(recipe, name) == written[name], name


def test_flags_override_yaml():
    config = str(REPO / "train" / "configs" / "detector.yaml")
    recipe, given = parse_recipe(
        DetectorRecipe,
        ["--config", config, "--epochs", "3", "--data", "a,b", "--no-plots", "--train-args", '{"mosaic": 0.5}'],
    )
    assert (recipe.epochs, recipe.data, recipe.plots, recipe.train_args) == (3, ["a", "b"], False, {"mosaic": 0.5})
    assert recipe.patience == 20  # from the yaml
    assert {"epochs", "data", "plots", "patience"} <= given
    assert "keep_work" not in given


def test_unknown_key_and_bad_values_refused_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 1\nbatch: 8\n")  # the detector's old name for batch_size
    for kind in (ClassifierRecipe, DetectorRecipe):
        with pytest.raises(ValueError, match=r"bad\.yaml: unknown field\(s\) batch; known: ") as refused:
            parse_recipe(kind, ["--config", str(bad)])
        assert "\n" not in str(refused.value)
    with pytest.raises(ValueError, match="--batch-size: expected an integer >= 1, got 0"):
        parse_recipe(DetectorRecipe, ["--batch-size", "0"])
    with pytest.raises(ValueError, match="unrecognized arguments: --batch"):
        parse_recipe(ClassifierRecipe, ["--batch", "8"])  # no abbreviations of --batch-size
    with pytest.raises(ValueError, match="--config .*missing.yaml: file not found"):
        parse_recipe(ClassifierRecipe, ["--config", str(tmp_path / "missing.yaml")])


def test_both_models_share_field_names_types_and_meaning():
    shared = Recipe.types()
    for kind in (ClassifierRecipe, DetectorRecipe):
        assert {name: kind.types()[name] for name in shared} == shared
    flags = [
        "--data",
        "hands,roboflow",
        "--batch-size",
        "4",
        "--num-workers",
        "1",
        "--split",
        "0.6,0.2,0.2",
        "--pretrained",
        "false",
        "--limit",
        "30",
        "--seed",
        "3",
        "--image-size",
        "64",
        "--epochs",
        "2",
    ]
    recipes = [parse_recipe(kind, flags)[0] for kind in (ClassifierRecipe, DetectorRecipe)]
    assert [{name: getattr(r, name) for name in shared if name not in ("model", "output")} for r in recipes] == [
        {
            "data": ["hands", "roboflow"],
            "format": None,
            "pretrained": "false",
            "epochs": 2,
            "batch_size": 4,
            "num_workers": 1,
            "image_size": 64,
            "split": [0.6, 0.2, 0.2],
            "limit": 30,
            "seed": 3,
            "resume": False,
        }
    ] * 2


def test_saved_recipe_loads_back_the_same(tmp_path):
    recipe, _ = parse_recipe(ClassifierRecipe, ["--epochs", "7", "--crop-scale", "0.5,1", "--data", "sign-digits"])
    saved = save_recipe(recipe, tmp_path)
    assert saved.name == "recipe.yaml"
    assert oct(saved.stat().st_mode & 0o777) == oct(0o666 & ~umask())  # the umask's mode, not mkstemp's 0600
    again, _ = parse_recipe(ClassifierRecipe, ["--config", str(saved)])
    assert again == recipe


# --- split.json --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits(data_root) -> list:
    return read_dataset("sign-digits")[:200]


def test_split_file_round_trip_and_held_out(digits, tmp_path):
    splits = split_records(digits, seed=5, fractions=(0.6, 0.2, 0.2))
    save_split(tmp_path, splits, seed=5, fractions=[0.6, 0.2, 0.2])
    content = json.loads((tmp_path / "split.json").read_text())
    assert (content["seed"], content["fractions"]) == (5, [0.6, 0.2, 0.2])
    assert record_id(digits[0]).startswith("sign-digits:")
    assert not record_id(digits[0]).split(":", 1)[1].startswith("/")
    loaded = load_split(tmp_path)
    assert {name: len(ids) for name, ids in loaded.items()} == {name: len(part) for name, part in splits.items()}
    assert load_split(tmp_path / "nothing") is None

    # the model's own test split, not the convention's (seed 0, 80/10/10)
    test = held_out(digits, [tmp_path, None], "test")
    assert [record_id(r) for r in test] == [record_id(r) for r in digits if record_id(r) in loaded["test"]]
    assert {record_id(r) for r in test} != {record_id(r) for r in split_records(digits, seed=0)["test"]}
    with pytest.raises(
        ValueError,
        match=rf"refusing to score {tmp_path} on {len(splits['train'])} records it was "
        "trained on",
    ):
        held_out(digits, [tmp_path], "train")
    with pytest.raises(ValueError, match="refusing to score"):
        held_out(digits, [tmp_path], "all")
    # records the model never saw are split by convention
    unseen = read_dataset("sign-digits")[200:300]
    by_convention = split_records(unseen, seed=0)["test"]
    assert sorted(map(record_id, held_out(unseen, [tmp_path], "test"))) == sorted(map(record_id, by_convention))


def test_held_out_refuses_a_split_file_that_is_not_one(digits, tmp_path):
    (tmp_path / "split.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="split.json: not a split file"):
        held_out(digits, [tmp_path], "test")


def test_keep_checkpoints_flag_and_help(capsys):
    """--keep-checkpoints N: parsed, checked (>= 0), allowed to change on --resume, explained in --help."""
    from hybrid.training.recipe import build_parser

    assert ClassifierRecipe().keep_checkpoints == 1  # the last epoch stays resumable by default
    assert parse_recipe(ClassifierRecipe, ["--keep-checkpoints", "0"])[0].keep_checkpoints == 0
    with pytest.raises(ValueError, match="^--keep-checkpoints: expected an integer >= 0, got -1$"):
        parse_recipe(ClassifierRecipe, ["--keep-checkpoints", "-1"])
    assert "keep_checkpoints" in ClassifierRecipe.RESUME_MAY_CHANGE
    full = yaml.safe_load((REPO / "train" / "configs" / "classifier.yaml").read_text())
    assert full["keep_checkpoints"] == 0  # the 50-epoch recipe leaves a tidy folder
    text = " ".join(build_parser(ClassifierRecipe).format_help().split())
    assert "--keep-checkpoints KEEP_CHECKPOINTS epoch checkpoints (accelerate state with the optimizer" in text
    assert "timm/resnet50.a1_in1k" in text  # --pretrained says where ImageNet weights come from
