"""Finger states and handedness: the committed MediaPipe labels (annotations/fingers.json.gz) against the real data,
and a classifier that learns them, saved so that timm still sees a plain count classifier."""

from __future__ import annotations

import json
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from hybrid.fingers import FINGERS, FINGERS_NAME, OUTPUTS, UNKNOWN, box_key, load_labels, mirrored, read_annotations
from tests.fixtures_models import _REPO, _failed, train_classifier

SETS = ("hands", "roboflow", "sign-digits-counts")


@pytest.fixture(scope="module")
def annotations():
    return read_annotations()


def test_every_annotated_box_is_a_box_of_the_data_and_states_agree_with_its_count(annotations, data_root):
    from hybrid.data import read_dataset

    boxes = annotations["boxes"]
    keys = set()
    for name in SETS:
        for record in read_dataset(name, merge_labels=True):
            for index, box in enumerate(record.boxes):
                key = box_key(record, index)
                keys.add(key)
                entry = boxes[key]
                assert entry["label"] == box.label, key
                assert entry["box"] == pytest.approx(box.xyxy, abs=0.06), key
    assert set(boxes) == keys  # every id exists, and every box of the three sets is annotated
    with_states = [e for e in boxes.values() if "fingers" in e]
    assert len(with_states) > 0.8 * len(boxes)
    for entry in with_states:
        assert list(entry["fingers"]) == list(FINGERS)
        assert sum(entry["fingers"].values()) == int(entry["label"])  # kept only where the count agrees
    assert all(
        e["handedness"] in ("left", "right") and e["handedness_score"] >= 0.8
        for e in boxes.values()
        if "handedness" in e
    )
    credits = " ".join((_REPO / "annotations" / "README.md").read_text().split())
    for name in SETS:  # each data set's attribution, as its licence asks
        assert " ".join(annotations["meta"]["data"][name].split()) in credits
    assert "Apache License 2.0" in annotations["meta"]["labeller"]


def test_the_file_is_what_the_tools_rule_gives_for_its_landmarks(annotations):
    """The finger states follow from the stored landmarks by tools/label_fingers.py's rule, and the agreement
    table is recounted from the boxes, so neither can be edited by hand."""
    sys.path.insert(0, str(_REPO / "tools"))
    import label_fingers

    for entry in annotations["boxes"].values():
        if entry["found"]:
            states = label_fingers.finger_states(entry["landmarks"])
            assert entry["landmark_count"] == sum(states)
            assert entry.get("fingers") == (dict(zip(FINGERS, states)) if sum(states) == int(entry["label"]) else None)
    assert annotations["agreement"] == label_fingers.agreement(annotations["boxes"])


def test_labels_load_as_six_targets_and_a_mirror_swaps_only_the_hand(annotations):
    labels = load_labels()
    assert set(labels) == set(annotations["boxes"])
    counts = Counter(len(t) for t in labels.values())
    assert counts == {len(OUTPUTS): len(labels)}
    key, entry = next((k, e) for k, e in annotations["boxes"].items() if "fingers" in e and "handedness" in e)
    target = labels[key]
    assert target[:5] == tuple(int(entry["fingers"][f]) for f in FINGERS)
    assert target[5] == (1 if entry["handedness"] == "right" else 0)
    assert mirrored(target) == (*target[:5], 1 - target[5])
    assert mirrored((1, 0, 0, 0, 0, UNKNOWN)) == (1, 0, 0, 0, 0, UNKNOWN)


@pytest.fixture(scope="module")
def finger_classifier(tmp_path_factory, data_root):
    """A tiny classifier trained with the finger and handedness outputs (1 epoch, 32 px)."""
    output = tmp_path_factory.mktemp("fingers") / "classifier"
    config = str(_REPO / "train" / "configs" / "classifier-tiny.yaml")
    done = train_classifier(output, "--config", config, "--fingers", "1", "--handedness", "1", data_root=data_root)
    if done.returncode != 0:
        raise _failed("train/classifier.py --fingers 1 --handedness 1", done)
    return output


def test_a_finger_classifier_loads_in_timm_as_a_count_classifier_and_in_hybrid_with_its_outputs(
    finger_classifier, data_root
):
    import timm

    from hybrid.classifier import GestureClassifier
    from hybrid.data import iter_crops, read_dataset

    assert (finger_classifier / FINGERS_NAME).is_file()
    card = (finger_classifier / "README.md").read_text()
    assert "### Fingers and hand" in card and "| thumb |" in card and "MediaPipe" in card
    metrics = json.loads((finger_classifier / "metrics.json").read_text())
    assert set(metrics["outputs"]["test"]) == set(OUTPUTS)
    assert all(0 <= v["accuracy"] <= 1 and v["crops"] > 0 for v in metrics["outputs"]["test"].values())
    crops = [crop for crop, _ in iter_crops(read_dataset("roboflow", merge_labels=True)[:4])]
    clf = GestureClassifier.from_pretrained(finger_classifier, precision="fp32")
    assert clf.outputs == OUTPUTS
    counts, extra = clf.scores(crops)
    assert counts.shape == (4, 6) and extra.shape == (4, 6)
    np.testing.assert_allclose(counts.sum(-1), 1, rtol=1e-5)
    assert ((extra > 0) & (extra < 1)).all()

    model = timm.create_model(f"local-dir:{finger_classifier}", pretrained=True).eval()  # ignores the extra file
    assert model.num_classes == 6
    config = timm.data.resolve_data_config(model=model)
    transform = timm.data.create_transform(**config)
    with torch.no_grad():
        theirs = model(torch.stack([transform(c) for c in crops])).softmax(-1)
    torch.testing.assert_close(torch.from_numpy(counts), theirs, atol=1e-4, rtol=1e-3)

    clf.save_pretrained(finger_classifier.parent / "copy")
    again = GestureClassifier.from_pretrained(finger_classifier.parent / "copy", precision="fp32")
    np.testing.assert_allclose(again.scores(crops[:2])[1], extra[:2], rtol=1e-5)


@pytest.mark.parametrize(
    "change, message",
    [
        ("shape", "must hold tensors"),
        ("nan", "non-finite"),
        ("name", "metadata 'outputs'"),
        ("text", "not a safetensors file"),
    ],
)
def test_a_hostile_fingers_file_is_one_line_naming_it(finger_classifier, tmp_path, change, message):
    import shutil

    from safetensors.torch import load_file, save_file

    from hybrid.classifier import GestureClassifier

    folder = tmp_path / "model"
    shutil.copytree(finger_classifier, folder)
    path = folder / FINGERS_NAME
    tensors = load_file(path)
    outputs = ",".join(OUTPUTS)
    if change == "shape":
        tensors["weight"] = torch.zeros(6, 4096)
    elif change == "nan":
        tensors["bias"][0] = float("nan")
    elif change == "name":
        outputs = "thumb,index,middle,ring,pinky,__import__"
    if change == "text":
        path.write_text("not weights")
    else:
        save_file(tensors, str(path), metadata={"outputs": outputs})
    with pytest.raises(ValueError, match=message) as error:
        GestureClassifier.from_pretrained(folder, precision="fp32")
    assert FINGERS_NAME in str(error.value) and "\n" not in str(error.value)


def test_finger_outputs_cannot_be_learned_from_mixup():
    from hybrid.training.recipe import ClassifierRecipe, load_recipe

    with pytest.raises(ValueError, match="--fingers: cannot be learned from mixup"):
        load_recipe(ClassifierRecipe, ["--fingers", "1", "--mixup", "0.2", "--data", "hands"])


def test_push_sends_the_finger_outputs_and_a_pull_loads_them(finger_classifier, tmp_path):
    """`hybrid push classifier` sends fingers.safetensors (the allowlist has it) and `from_pretrained(repo id)`
    gets the outputs back, in a fresh process talking to a real Hub server on 127.0.0.1."""
    import subprocess

    from tests.hubserver import HubServer

    with HubServer(tmp_path / "hub") as hub:
        env = hub.client_env(tmp_path / "home")
        push = [sys.executable, "-m", "hybrid.cli", "push", "classifier", str(finger_classifier), "hybrid-org/fingers"]
        done = subprocess.run(push, env=env, cwd=_REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        pull = (
            "from hybrid.classifier import GestureClassifier; "
            "print(GestureClassifier.from_pretrained('hybrid-org/fingers', precision='fp32').outputs)"
        )
        done = subprocess.run([sys.executable, "-c", pull], env=env, cwd=_REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == str(OUTPUTS)


SERVED = """
import json, sys
from hybrid import serving
pipe = serving.load(sys.argv[1], sys.argv[2])
print(json.dumps({"torch": "torch" in sys.modules, "hands": [h.to_dict() for h in pipe(sys.argv[3])[0]]}))
"""


def test_every_output_carries_the_fingers_and_the_hand(finger_classifier, trained_detector, data_root, tmp_path):
    """The pipeline's Hands and JSON, the served (torch-free) pipeline and the video rows all carry them."""
    import subprocess

    from hybrid.pipeline import HybridPipeline, image_result
    from hybrid.video import HandTracker
    from tests.hostile import PHOTO

    photo = str(data_root / PHOTO)
    pipe = HybridPipeline.from_pretrained(trained_detector, finger_classifier)
    hands = pipe(photo)[0]
    assert hands  # the tiny detector stores conf 0.01: a few boxes per photo
    for hand in hands:
        assert set(hand.fingers) == set(FINGERS) and hand.handedness in ("left", "right")
        assert hand.fingers_up == [f for f, p in hand.fingers.items() if p >= 0.5]
    from PIL import Image

    result = image_result(photo, Image.open(photo), hands)
    assert {"fingers", "fingers_up", "handedness", "handedness_probability"} <= set(result["hands"][0])
    assert result["total_count"] == sum(int(h.label) for h in hands if h.label.isdigit())

    command = [sys.executable, "-c", SERVED, str(trained_detector), str(finger_classifier), photo]
    done = subprocess.run(command, cwd=_REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert served["torch"] is False
    expected = [hand.to_dict() for hand in hands]
    assert [h["handedness"] for h in served["hands"]] == [h["handedness"] for h in expected]
    for got, want in zip(served["hands"], expected):
        assert got["fingers"] == pytest.approx(want["fingers"], abs=2e-2)

    row = HandTracker(pipe)(Image.open(photo).convert("RGB")).to_dict()["hands"][0]
    assert set(row["fingers"]) == set(FINGERS) and row["handedness"] in ("left", "right")


def test_a_count_classifier_has_no_finger_outputs(trained_classifier, trained_detector, data_root):
    from hybrid.pipeline import HybridPipeline
    from tests.hostile import PHOTO

    hand = HybridPipeline.from_pretrained(trained_detector, trained_classifier)(str(data_root / PHOTO))[0][0]
    assert hand.fingers is None and hand.handedness is None and hand.fingers_up is None
    assert "fingers" not in hand.to_dict() and "handedness" not in hand.to_dict()


def test_the_count_of_the_fingers_seen_up_is_their_poisson_binomial_distribution():
    from hybrid.fingers import count_distribution

    certain = count_distribution(np.array([[1.0, 1.0, 0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(certain, [[0, 0, 1, 0, 0, 0]])
    halves = count_distribution(np.full((1, 5), 0.5))
    np.testing.assert_allclose(halves, [[1, 5, 10, 10, 5, 1]] / np.float64(32))


def test_training_chooses_where_the_count_comes_from_on_val(finger_classifier):
    from hybrid.classifier import GestureClassifier
    from hybrid.fingers import COUNT_FROM

    metrics = json.loads((finger_classifier / "metrics.json").read_text())
    chosen, accuracy = metrics["count_from"]["chosen"], metrics["count_from"]["accuracy"]
    assert set(accuracy) == set(COUNT_FROM) and chosen in COUNT_FROM
    assert accuracy[chosen]["val"] == max(a["val"] for a in accuracy.values())
    assert GestureClassifier.from_pretrained(finger_classifier, precision="fp32").count_from == chosen


def test_a_flipped_training_crop_gets_the_other_hand():
    """The train loader mirrors half of the crops itself (not torchvision's flip), so the hand label follows."""
    import datasets
    from PIL import Image
    from torchvision import transforms as T

    from hybrid.training.classifier import with_transform

    image = Image.new("RGB", (8, 8))
    image.paste((255, 255, 255), (0, 0, 4, 8))  # white on the left half only
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.Value("int64"),
            "fingers": datasets.Sequence(datasets.Value("int8"), length=6),
        }
    )
    rows = {"image": [image] * 32, "label": [0] * 32, "fingers": [[0, 1, 1, 0, 0, 1]] * 32}
    dataset = with_transform(datasets.Dataset.from_dict(rows, features=features), T.ToTensor(), flip=True)
    torch.manual_seed(0)
    seen = set()
    for item in dataset:
        mirrored_crop = bool(item["pixel_values"][0, 0, 0] == 0)  # the white half moved to the right
        assert item["fingers"] == [0, 1, 1, 0, 0, 0 if mirrored_crop else 1]
        seen.add(mirrored_crop)
    assert seen == {True, False}
