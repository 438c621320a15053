"""The data layer on the real shared datasets: counts, splits, label maps, writers, registry, HF and HaGRID."""

from __future__ import annotations

import csv
import http.server
import io
import json
import logging
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from hybrid import constants
from hybrid.cli import main
from hybrid.crops import square_crop
from hybrid.data import (
    DataError,
    ImageRecord,
    build_crop_dataset,
    canonical_label,
    data_root,
    dataset_stats,
    read_dataset,
    registry,
    save_dataset,
    split_records,
    write_yolo_dataset,
)
from hybrid.data.records import HandBox
from hybrid.data.writers import _safe_name
from tests.test_images import bomb_png

HANDS = "subhih-handsdataset"
ROBOFLOW = "roboflow-hand-gesture-recognition-v6"
DIGITS = "sign-language-digits"


def stats_cli(capsys, *args) -> dict:
    assert main(["data", "stats", *map(str, args), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats.pop("bad_images") == []
    return stats


@pytest.fixture(scope="module")
def hands(data_root):
    return read_dataset(data_root / HANDS)


@pytest.fixture(scope="module")
def roboflow(data_root):
    return read_dataset(data_root / ROBOFLOW)


@pytest.fixture(scope="module")
def digits(data_root):
    return read_dataset(data_root / DIGITS)


# --- counts from SOURCES.md ---------------------------------------------------------------------


def test_stats_roboflow_matches_sources(capsys, data_root):
    stats = stats_cli(capsys, data_root / ROBOFLOW)
    assert stats == {
        "images": 839,
        "boxes": 840,
        "labels": {"five": 395, "four": 104, "one": 100, "three": 99, "two": 142},
    }


def test_stats_sign_digits_matches_sources(capsys, data_root):
    stats = stats_cli(capsys, data_root / DIGITS)
    assert stats["images"] == 2062
    assert stats["boxes"] == 2062
    assert sorted(stats["labels"]) == [f"asl-{d}" for d in range(10)]
    assert all(204 <= n <= 208 for n in stats["labels"].values())


def test_stats_hands_matches_manifest(capsys, data_root):
    with open(data_root / HANDS / "SUBSET_MANIFEST.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    boxes = Counter()
    for row in rows:
        boxes[row["class"]] += int(row["boxes"])
    stats = stats_cli(capsys, data_root / HANDS)
    assert stats == {"images": 954, "boxes": sum(boxes.values()), "labels": dict(sorted(boxes.items()))}
    assert len(rows) == 954


def test_stats_by_registered_name_and_format_flag(capsys, data_root, monkeypatch):
    monkeypatch.setenv("HYBRID_DATA", str(data_root))
    assert registry.data_root() == data_root
    by_name = stats_cli(capsys, "roboflow")
    assert by_name == stats_cli(capsys, data_root / ROBOFLOW, "--format", "yolo")
    assert stats_cli(capsys, data_root / DIGITS / "Dataset")["labels"] == stats_cli(capsys, "sign-digits")["labels"]


def test_stats_cli_split_and_merge(capsys, data_root):
    assert stats_cli(capsys, data_root / ROBOFLOW, "--split", "test") == {
        "images": 85,
        "boxes": 86,
        "labels": {"five": 46, "four": 11, "one": 7, "three": 8, "two": 14},
    }
    merged = stats_cli(capsys, data_root / HANDS, "--split", "test", "--merge-labels")
    assert merged["images"] == 286
    assert sorted(merged["labels"]) == ["0", "1", "2", "3", "4", "5"]


def test_stats_cli_bad_path_is_one_clear_line(capsys, tmp_path):
    assert main(["data", "stats", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err
    assert "Traceback" not in err


def test_stats_cli_reports_a_decompression_bomb_and_goes_on(capsys, tmp_path, data_root):
    """Hostile: a 400-megapixel PNG of a few KB among real photos. Pillow raises DecompressionBombError
    (neither OSError nor ValueError): `data stats` used to die with a traceback. Now it is listed as a
    bad image, the other images are counted, and the exit status is 1."""
    photos = sorted((data_root / HANDS / "images" / "test").glob("*.jpg"))[:2]
    (tmp_path / "five").mkdir()
    for photo in photos:
        (tmp_path / "five" / photo.name).write_bytes(photo.read_bytes())
    bomb_png(tmp_path / "five" / "bomb.png")
    assert main(["data", "stats", str(tmp_path), "--json"]) == 1
    captured = capsys.readouterr()
    stats = json.loads(captured.out)
    assert stats["images"] == 2
    assert stats["labels"] == {"five": 2}
    assert len(stats["bad_images"]) == 1
    assert "bomb.png: image is over" in stats["bad_images"][0]
    assert "Traceback" not in captured.err
    assert main(["data", "stats", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "images: 2" in out
    assert "bad images (skipped): 1" in out
    assert "bomb.png" in out


def test_upstream_splits_are_kept(hands, roboflow, data_root):
    assert Counter(r.split for r in roboflow) == {"train": 587, "val": 167, "test": 85}
    assert sum(len(r.boxes) for r in roboflow if r.split == "test") == 86
    with open(data_root / HANDS / "SUBSET_MANIFEST.tsv") as handle:
        manifest = {Path(row["image"]).name: row["split"] for row in csv.DictReader(handle, delimiter="\t")}
    assert {r.name: r.split for r in hands} == manifest


def test_boxes_are_pixel_xyxy(roboflow, hands, data_root):
    record = next(r for r in roboflow if r.name.startswith("IMG-20230312-WA0065_jpg"))
    line = (data_root / ROBOFLOW / "train" / "labels" / (Path(record.name).stem + ".txt")).read_text().split()
    cx, cy, w, h = (float(v) * 224 for v in line[1:])
    assert record.width == record.height == 224
    assert record.boxes[0].xyxy == pytest.approx((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    assert record.boxes[0].label == ["five", "four", "one", "three", "two"][int(line[0])]
    first = next(r for r in hands if r.name == "1528664299.56_pic00002.jpg")
    assert first.boxes == [HandBox(253.0, 161.0, 394.0, 496.0, "4-hand")]
    assert (first.width, first.height) == (800, 600)
    assert first.load().size == (800, 600)


def test_real_exif_rotated_digits_load_upright(digits):
    rotated = [r for r in digits if r.width == 3024]
    assert len(rotated) == 3
    for record in rotated:
        with Image.open(record.image) as raw:
            assert raw.getexif().get(0x0112) == 6
            stored = raw.reduce(12).convert("RGB")
        upright = record.load().reduce(12)
        assert np.array_equal(np.asarray(upright), np.asarray(stored.transpose(Image.Transpose.ROTATE_270)))
    crops = build_crop_dataset(rotated[:1], image_size=32)
    expected = rotated[0].load().resize((32, 32), Image.Resampling.BILINEAR)
    assert np.array_equal(np.asarray(crops[0]["image"]), np.asarray(expected))


# --- labels -------------------------------------------------------------------------------------


def test_canonical_label_merges_finger_counts_only():
    for name in ("5-hand", "five", "Five", "5"):
        assert canonical_label(name) == "5"
    assert canonical_label("0-hand") == canonical_label("fist") == "0"
    assert canonical_label("asl-5") == "asl-5"
    assert canonical_label("thumbs_up") == "thumbs_up"


def test_merged_label_space(data_root):
    hands = dataset_stats(read_dataset(data_root / HANDS, merge_labels=True))["labels"]
    robo = dataset_stats(read_dataset(data_root / ROBOFLOW, merge_labels=True))["labels"]
    assert sorted(hands) == ["0", "1", "2", "3", "4", "5"]
    assert sorted(robo) == ["1", "2", "3", "4", "5"]
    assert robo["5"] == 395
    digits = read_dataset(data_root / DIGITS, merge_labels=True)
    assert {r.boxes[0].label for r in digits} == {f"asl-{d}" for d in range(10)}  # ASL signs never merge
    assert {r.source for r in digits} == {"sign-digits"}


# --- splits -------------------------------------------------------------------------------------


def _names(records):
    return sorted(r.name for r in records)


def test_split_hands_keeps_test_and_carves_val(hands):
    splits = split_records(hands, seed=0)
    assert _names(splits["test"]) == _names(r for r in hands if r.split == "test")
    train_upstream = [r for r in hands if r.split == "train"]
    assert len(splits["train"]) + len(splits["val"]) == len(train_upstream) == 668
    assert abs(len(splits["val"]) - 668 / 9) <= 3
    assert not set(_names(splits["val"])) & set(_names(splits["train"]))
    # stratified: every class of upstream train appears in val, roughly in proportion
    per_class = Counter(r.boxes[0].label for r in train_upstream)
    in_val = Counter(r.boxes[0].label for r in splits["val"])
    for label, count in per_class.items():
        assert abs(in_val[label] - count / 9) <= 1.5, (label, in_val[label], count)
    again = split_records(list(reversed(hands)), seed=0)
    assert all(_names(again[k]) == _names(splits[k]) for k in splits)
    assert _names(split_records(hands, seed=1)["val"]) != _names(splits["val"])


def test_split_roboflow_as_is_and_digits_80_10_10(roboflow, digits):
    splits = split_records(roboflow, seed=3)
    assert {k: len(v) for k, v in splits.items()} == {"train": 587, "val": 167, "test": 85}
    splits = split_records(digits, seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 1650, "val": 206, "test": 206}
    for part in ("val", "test"):
        counts = Counter(r.boxes[0].label for r in splits[part])
        assert len(counts) == 10
        assert min(counts.values()) >= 19
    both = split_records(roboflow + digits, seed=0)
    assert len(both["test"]) == 85 + 206
    assert read_dataset(digits[0].image.parents[2], split="val")
    assert _names(read_dataset(digits[0].image.parents[2], split="val")) == _names(splits["val"])


def test_split_keeps_subjects_together():
    records = [
        ImageRecord(
            image=Path(f"/x/{u}-{i}.jpg"),
            boxes=[HandBox(0, 0, 1, 1, "like" if u % 2 else "call")],
            source="hagrid",
            name=f"{u}-{i}.jpg",
            extra={"user_id": f"user{u}"},
        )
        for u in range(60)
        for i in range(u % 4 + 1)
    ]
    splits = split_records(records, seed=0)
    where = {}
    for split, part in splits.items():
        for record in part:
            assert where.setdefault(record.extra["user_id"], split) == split
    assert sum(map(len, splits.values())) == len(records)
    subjects = Counter(where.values())
    assert subjects["train"] == 48
    assert subjects["val"] == subjects["test"] == 6


def test_split_rejects_bad_fractions(digits):
    with pytest.raises(ValueError, match="fractions"):
        split_records(digits, fractions=(0.5, 0.5))


# --- crop dataset -------------------------------------------------------------------------------


def test_crop_dataset_eval_train_and_whole_image(hands, digits):
    records = [r for r in hands if r.split == "test"][:6]
    ds = build_crop_dataset(records, image_size=64)
    assert len(ds) == sum(len(r.boxes) for r in records)
    assert ds.features["label"].names == sorted({b.label for r in records for b in r.boxes})
    expected = square_crop(records[0].load(), records[0].boxes[0].xyxy).resize((64, 64), Image.Resampling.BILINEAR)
    assert np.array_equal(np.asarray(ds[0]["image"]), np.asarray(expected))
    jittered = build_crop_dataset(records, image_size=64, train=True, seed=1)
    assert np.array_equal(
        np.asarray(jittered[0]["image"]),
        np.asarray(build_crop_dataset(records, image_size=64, train=True, seed=1)[0]["image"]),
    )
    differ = sum(not np.array_equal(np.asarray(a["image"]), np.asarray(b["image"])) for a, b in zip(ds, jittered))
    assert differ >= len(ds) - 1
    whole = build_crop_dataset(digits[:3], label_names=[f"asl-{d}" for d in range(10)])
    assert np.array_equal(np.asarray(whole[0]["image"]), np.asarray(digits[0].load()))
    assert whole.features["label"].names[whole[0]["label"]] == digits[0].boxes[0].label
    with pytest.raises(ValueError, match="not in label_names"):
        build_crop_dataset(records[:1], label_names=["zzz"])


def test_save_dataset_is_atomic_and_reloadable(hands, tmp_path):
    import datasets

    ds = build_crop_dataset([r for r in hands if r.split == "test"][:2], image_size=32)
    target = save_dataset(ds, tmp_path / "crops")
    save_dataset(ds, tmp_path / "crops")  # replacing an existing one works too
    assert datasets.load_from_disk(str(target))["label"] == ds["label"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crops"]


# --- YOLO writer --------------------------------------------------------------------------------


def test_write_yolo_round_trip(hands, roboflow, tmp_path):
    splits = {"train": [r for r in hands if r.split == "train"][:5], "val": roboflow[:3], "test": []}
    data_yaml = write_yolo_dataset(splits, tmp_path / "yolo")
    config = yaml.safe_load(data_yaml.read_text())
    assert config["names"] == {0: "hand"}
    assert Path(config["path"]).is_absolute()
    assert "test" not in config
    images = sorted((tmp_path / "yolo" / "images" / "train").iterdir())
    assert len(images) == 5
    assert all(p.is_symlink() for p in images)
    back = read_dataset(tmp_path / "yolo")
    assert len(back) == 8
    original = {_safe_name(f"{r.source}-{Path(r.name).stem}"): r for recs in splits.values() for r in recs}
    for record in back:
        twin = original[Path(record.name).stem]
        assert [b.label for b in record.boxes] == ["hand"] * len(twin.boxes)
        for got, want in zip(record.boxes, twin.boxes):
            assert got.xyxy == pytest.approx(want.xyxy, abs=0.01)
    again = write_yolo_dataset({"train": roboflow[:2]}, tmp_path / "yolo")  # an earlier output is replaced
    assert len(list((again.parent / "images" / "train").iterdir())) == 2
    assert "val" in yaml.safe_load(again.read_text())
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a folder this writer made"):
        write_yolo_dataset({"train": roboflow[:2]}, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "yolo"]  # no temporary folders left
    gestures = write_yolo_dataset({"train": roboflow[:4]}, tmp_path / "gestures", gestures=True)
    names = yaml.safe_load(gestures.read_text())["names"]
    assert list(names.values()) == sorted({b.label for r in roboflow[:4] for b in r.boxes})


def test_ultralytics_trains_on_written_dataset(roboflow, tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from ultralytics import YOLO

    splits = split_records(roboflow)
    data_yaml = write_yolo_dataset(
        {"train": splits["train"][:12], "val": splits["val"][:4]},
        tmp_path / "yolo",
        gestures=True,
        names=["five", "four", "one", "three", "two"],
    )
    model = YOLO("yolov8n.yaml")
    model.train(
        data=str(data_yaml),
        epochs=1,
        imgsz=64,
        batch=4,
        workers=0,
        device="cpu",
        amp=False,
        plots=False,
        project=str(tmp_path / "runs"),
        name="smoke",
        verbose=False,
        exist_ok=True,
    )
    assert (tmp_path / "runs" / "smoke" / "weights" / "last.pt").is_file()
    assert model.trainer.train_loader.dataset.labels
    assert len(model.trainer.train_loader.dataset.labels) == 12
    assert sum(len(item["cls"]) for item in model.trainer.train_loader.dataset.labels) == sum(
        len(r.boxes) for r in splits["train"][:12]
    )


# --- registry and fetch -------------------------------------------------------------------------


def test_registry_attribution_and_licence():
    assert registry.licence("roboflow") == "CC-BY-4.0"
    assert "lebanese-university-grkoz" in registry.attribution("roboflow")
    assert registry.licence("hands") == registry.licence("sign-digits") == "Apache-2.0"
    assert "arXiv:2011.08927" in registry.attribution("sign-digits")
    assert registry.get("hands").commit == "73228cb5ba6a8d454663aa9873157862b69a1c4c"
    assert registry.get("roboflow").url.endswith("/zip/fd632313b9d74d869f57b11a8b0bb249cbc537ae")
    with pytest.raises(KeyError, match="registered"):
        registry.licence("nope")


def test_data_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HYBRID_DATA", str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.delenv("HYBRID_DATA")
    assert data_root() == Path(__file__).resolve().parents[2] / "shared" / "data"  # next to the checkout


def test_no_data_root_says_to_set_hybrid_data(monkeypatch, tmp_path):
    """An installed package (no checkout around it) without $HYBRID_DATA gets one clear line, not a wrong path."""
    monkeypatch.delenv("HYBRID_DATA", raising=False)
    monkeypatch.setattr(constants, "_SOURCE_TREE", tmp_path / "site-packages")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="set HYBRID_DATA"):
        data_root()
    with pytest.raises(FileNotFoundError, match="set HYBRID_DATA"):
        read_dataset("hands")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_fetch_fails_fast_offline(tmp_path, capsys):
    url = f"http://127.0.0.1:{_closed_port()}/x.zip"
    start = time.monotonic()
    with pytest.raises(registry.FetchError, match="could not download hands"):
        registry.fetch("hands", root=tmp_path, url=url, timeout=5)
    assert time.monotonic() - start < 5
    assert list(tmp_path.iterdir()) == []
    # the real origin is unreachable here (and a CI with internet would get a refused port instead)
    assert main(["data", "fetch", "nope"]) == 2
    assert "unknown dataset" in capsys.readouterr().err


@pytest.fixture
def zip_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a GitHub-style archive (one top folder)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("Repo-abc/Dataset/1/a.txt", "hello")
    body = buffer.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/archive.zip", body
    server.shutdown()
    thread.join()


def test_fetch_checksum(zip_server, tmp_path, monkeypatch, caplog):
    import hashlib

    url, body = zip_server
    sha = hashlib.sha256(body).hexdigest()
    with caplog.at_level(logging.WARNING, logger="hybrid.data.registry"):
        target = registry.fetch("sign-digits", root=tmp_path / "a", url=url)
    assert (target / "Dataset" / "1" / "a.txt").read_text() == "hello"
    assert target.name == "sign-language-digits"
    assert any("no sha256 is recorded" in r.message and sha in r.message for r in caplog.records)
    assert registry.fetch("sign-digits", root=tmp_path / "a", url="http://127.0.0.1:1/unused") == target

    bad = registry.DatasetInfo(**{**registry.get("sign-digits").__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(registry.REGISTRY, "sign-digits", bad)
    with pytest.raises(registry.FetchError, match="checksum mismatch"):
        registry.fetch("sign-digits", root=tmp_path / "b", url=url)
    assert list((tmp_path / "b").iterdir()) == []
    good = registry.DatasetInfo(**{**bad.__dict__, "sha256": sha})
    monkeypatch.setitem(registry.REGISTRY, "sign-digits", good)
    assert registry.fetch("sign-digits", root=tmp_path / "b", url=url).is_dir()


# --- Hugging Face datasets ----------------------------------------------------------------------


def _jpeg(size=(64, 48), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_hf_detection_layout(tmp_path):
    import datasets

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "objects": {
                "bbox": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
                "category": datasets.List(datasets.ClassLabel(names=["fist", "palm"])),
            },
        }
    )
    rows = {
        "image": [{"bytes": _jpeg(), "path": None}, {"bytes": _jpeg((32, 32)), "path": None}],
        "objects": [
            {"bbox": [[10, 5, 20, 30], [50, 40, 30, 30]], "category": [1, 0]},
            {"bbox": [[0, 0, 0, 5]], "category": [0]},
        ],
    }
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(rows, features=features),
            "validation": datasets.Dataset.from_dict(rows, features=features),
        }
    )
    dd.save_to_disk(str(tmp_path / "det"))
    records = read_dataset(tmp_path / "det")
    assert [r.split for r in records] == ["train", "train", "val", "val"]
    assert records[0].boxes == [HandBox(10, 5, 30, 35, "palm"), HandBox(50, 40, 64, 48, "fist")]  # clipped
    assert records[1].boxes == []  # zero width: dropped
    assert records[0].load().size == (64, 48)
    assert dataset_stats(read_dataset(tmp_path / "det", format="hf", merge_labels=True))["labels"] == {
        "0": 2,
        "palm": 2,
    }


def test_hf_classification_layout_and_hub_offline(tmp_path, monkeypatch):
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": _jpeg(), "path": None}] * 3, "label": [0, 1, 1]}, features=features
    )
    ds.save_to_disk(str(tmp_path / "cls"))
    records = read_dataset(tmp_path / "cls")
    assert [r.boxes for r in records][1] == [HandBox(0, 0, 64, 48, "b")]
    assert records[0].split is None
    assert len(build_crop_dataset(records)) == 3

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(DataError, match="someone/not-here"):
        read_dataset("someone/not-here")


def test_hf_local_imagefolder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    for label in ("ok", "peace"):
        (tmp_path / "folder" / "train" / label).mkdir(parents=True)
        (tmp_path / "folder" / "train" / label / f"{label}.jpg").write_bytes(_jpeg())
    records = read_dataset(tmp_path / "folder", format="hf")
    assert sorted(r.boxes[0].label for r in records) == ["ok", "peace"]
    assert {r.split for r in records} == {"train"}
    same = read_dataset(tmp_path / "folder")  # detected as a plain image folder
    assert sorted(r.boxes[0].label for r in same) == ["ok", "peace"]
    assert {r.split for r in same} == {"train"}


# --- HaGRID -------------------------------------------------------------------------------------


def _write_jpeg(path: Path, size=(200, 100)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_jpeg(size))


def test_hagrid_v2_layout(tmp_path, caplog):
    root = tmp_path / "hagrid"
    _write_jpeg(root / "hagrid_dataset" / "thumb_index2" / "04c49801-1101-4b4e-82d0-d4607cd01df0.jpg")
    _write_jpeg(root / "hagrid_dataset" / "like" / "00000001.jpg")
    train = {
        "04c49801-1101-4b4e-82d0-d4607cd01df0": {
            "bboxes": [
                [0.0694444444, 0.3104166667, 0.2666666667, 0.2640625],
                [0.5993055556, 0.2875, 0.2569444444, 0.2760416667],
            ],
            "labels": ["thumb_index2", "thumb_index2"],
            "united_bbox": [[0.0694444444, 0.2875, 0.7868055556, 0.2869791667]],
            "united_label": ["thumb_index2"],
            "user_id": "2fe6a9156ff8ca27fbce8ada318c592b",
            "hand_landmarks": [[[0.37, 0.59], [0.39, 0.59]], [[0.37, 0.47], [0.39, 0.46]]],
            "meta": {"age": [24.41], "gender": ["female"], "race": ["White"]},
        }
    }
    test = {
        "00000001": {
            "bboxes": [[0.1, 0.2, 0.3, 0.4], [0.9, 0.9, 0.2, 0.2]],
            "labels": ["like", "no_gesture"],
            "united_bbox": None,
            "united_label": None,
            "user_id": "u2",
            "hand_landmarks": [],
            "meta": {},
        },
        "not-downloaded": {"bboxes": [], "labels": [], "united_bbox": None, "united_label": None, "user_id": "u3"},
    }
    (root / "annotations" / "train").mkdir(parents=True)
    (root / "annotations" / "test").mkdir(parents=True)
    (root / "annotations" / "train" / "thumb_index2.json").write_text(json.dumps(train, indent=4))
    (root / "annotations" / "test" / "like.json").write_text(json.dumps(test, indent=4))
    with caplog.at_level(logging.WARNING):
        records = read_dataset(root)
    assert any("1 annotated image(s)" in r.message for r in caplog.records)
    by_name = {r.name: r for r in records}
    two = by_name["04c49801-1101-4b4e-82d0-d4607cd01df0.jpg"]
    assert two.split == "train"
    assert two.source == "hagrid"
    assert two.extra["user_id"] == "2fe6a9156ff8ca27fbce8ada318c592b"
    assert two.boxes[0].xyxy == pytest.approx((13.88888888, 31.04166667, 67.22222222, 57.44791667))
    assert [b.label for b in two.boxes] == ["thumb_index2"] * 2
    assert two.extra["united_boxes"][0].xyxy == pytest.approx((13.88888888, 28.75, 171.25, 57.44791667))
    like = by_name["00000001.jpg"]
    assert like.split == "test"
    assert [b.label for b in like.boxes] == ["like", "no_gesture"]
    assert like.boxes[1].xyxy == pytest.approx((180, 90, 200, 100))  # clipped to the image
    assert "united_boxes" not in like.extra


def test_hagrid_v1_layout(tmp_path):
    root = tmp_path / "hagrid_v1"
    _write_jpeg(root / "train_val_call" / "0a1b.jpg", (100, 200))
    _write_jpeg(root / "test_call" / "ffee.jpg", (100, 200))
    (root / "ann_train_val").mkdir(parents=True)
    (root / "ann_test").mkdir(parents=True)
    (root / "ann_train_val" / "call.json").write_text(
        json.dumps(
            {
                "0a1b": {
                    "bboxes": [[0.25, 0.25, 0.5, 0.25]],
                    "labels": ["call"],
                    "leading_hand": "right",
                    "leading_conf": 1.0,
                    "user_id": "5a38",
                }
            }
        )
    )
    (root / "ann_test" / "call.json").write_text(
        json.dumps(
            {
                "ffee": {
                    "bboxes": [[0.1, 0.1, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2]],
                    "labels": ["no_gesture", "call"],
                    "leading_hand": "left",
                    "leading_conf": 0.9,
                    "user_id": "77",
                }
            }
        )
    )
    records = read_dataset(root, format="hagrid")
    assert [(r.name, r.split) for r in records] == [("ffee.jpg", "test"), ("0a1b.jpg", "train")]
    assert records[1].boxes == [HandBox(25.0, 50.0, 75.0, 100.0, "call")]
    assert records[1].extra["leading_hand"] == "right"
    assert dataset_stats(records)["labels"] == {"call": 2, "no_gesture": 1}
    assert len(split_records(records)["val"]) == 0  # one train image: nothing to carve
    # annotations kept apart from the images
    apart = read_dataset(root / "ann_test", format="hagrid", images=root)
    assert [(r.name, r.split) for r in apart] == [("ffee.jpg", "test")]
    with pytest.raises(DataError, match="image folder not found"):
        read_dataset(root / "ann_test", format="hagrid", images=root / "nope")


def test_hagrid_malformed(tmp_path):
    root = tmp_path / "h"
    _write_jpeg(root / "call" / "a.jpg")
    (root / "ann").mkdir()
    bad = root / "ann" / "call.json"
    bad.write_text(json.dumps({"a": {"bboxes": [[0.1, 0.1, 0.2]], "labels": ["call"]}}))
    with pytest.raises(DataError, match=r"call\.json: a: expected a box"):
        read_dataset(root, format="hagrid")
    bad.write_text(json.dumps({"a": {"bboxes": [[0.1, 0.1, 0.2, 0.2]], "labels": []}}))
    with pytest.raises(DataError, match="1 bboxes but 0 labels"):
        read_dataset(root, format="hagrid")
    bad.write_text('{"a": {"bboxes": [[0.1, 0.1, 0.2, 0.2]], "labels": ["call"]')
    with pytest.raises(DataError, match=r"call\.json: malformed JSON"):
        read_dataset(root, format="hagrid")


def test_unknown_format_and_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        read_dataset(tmp_path, format="coco")
    with pytest.raises(DataError, match="cannot tell the dataset format"):
        read_dataset(tmp_path)


def test_records_are_plain(hands):
    record = hands[0]
    assert isinstance(record, ImageRecord)
    assert isinstance(record.image, Path)
    assert record.source == "hands"
    assert os.path.isabs(record.image)


# --- hostile data files (issue 29, item 7: data) -------------------------------------------------------------
# Non-finite coordinates and class ids, YAML alias bombs and oversized or deeply nested YAML, truncated JPEGs:
# each is one DataError line naming the file (and line or object), on tiny datasets made of real photos.


def _real_photo(data_root) -> Path:
    return sorted((data_root / HANDS / "images" / "test").glob("*.jpg"))[0]


def _yolo_set(root: Path, data_root, labels: str, data_yaml: str = "names: [hand]\ntrain: train/images\n") -> Path:
    """A one-photo YOLO dataset: root/data.yaml, root/train/images/x.jpg (a real photo), root/train/labels/x.txt."""
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir(parents=True)
    shutil.copy(_real_photo(data_root), root / "train" / "images" / "x.jpg")
    (root / "train" / "labels" / "x.txt").write_text(labels)
    (root / "data.yaml").write_text(data_yaml)
    return root


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e400"])
def test_voc_non_finite_coordinate_is_one_line(tmp_path, data_root, value):
    xml = _real_photo(data_root).with_suffix(".xml")
    (tmp_path / "test").mkdir()
    shutil.copy(xml.with_suffix(".jpg"), tmp_path / "test")
    text = re.sub(r"<ymax>[^<]*</ymax>", f"<ymax>{value}</ymax>", xml.read_text(), count=1)
    (tmp_path / "test" / xml.name).write_text(text)
    with pytest.raises(DataError, match=rf"{re.escape(xml.name)}: <object> #1: <ymax> is '{value}', expected a finite"):
        read_dataset(tmp_path, format="voc")


@pytest.mark.parametrize(
    "line",
    ["0 nan 0.5 0.2 0.2", "0 0.5 -inf 0.2 0.2", "0 0.5 0.5 1e400 0.2", "0 0.1 0.1 nan 0.2 0.3 0.3"],  # last: polygon
)
def test_yolo_non_finite_coordinate_is_one_line(tmp_path, data_root, line):
    root = _yolo_set(tmp_path, data_root, f"0 0.5 0.5 0.2 0.2\n{line}\n")
    with pytest.raises(DataError, match=r"x\.txt:2: .*not a finite number"):
        read_dataset(root)


@pytest.mark.parametrize("class_id", ["inf", "-inf", "nan", "1e400", "-1", "1.5", "1e20"])
def test_yolo_bad_class_id_is_one_line(tmp_path, data_root, class_id):
    """inf and 1e400 used to raise OverflowError, nan a bare ValueError, from int(); both tracebacks."""
    root = _yolo_set(tmp_path, data_root, f"{class_id} 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=rf"x\.txt:1: class id {re.escape(class_id)} is not one of the dataset's"):
        read_dataset(root)


@pytest.mark.parametrize("box", ["[NaN, 0.1, 0.2, 0.2]", "[0.1, Infinity, 0.2, 0.2]", "[0.1, 0.1, 0.2, -1e400]"])
def test_hagrid_non_finite_box_is_one_line(tmp_path, data_root, box):
    root = tmp_path / "h"
    (root / "call").mkdir(parents=True)
    shutil.copy(_real_photo(data_root), root / "call" / "a.jpg")
    (root / "ann").mkdir()
    annotation = f'{{"a": {{"bboxes": [[0.1, 0.1, 0.2, 0.2], {box}], "labels": ["call", "call"]}}}}'
    (root / "ann" / "call.json").write_text(annotation)
    with pytest.raises(DataError, match=r"call\.json: a: box #2 .* is not 4 finite numbers"):
        read_dataset(root, format="hagrid")


@pytest.mark.parametrize("key", [".inf", "~", "1.5", "-1"])
def test_yolo_names_key_that_is_not_a_class_id_is_one_line(tmp_path, data_root, key):
    """.inf used to raise OverflowError, ~ TypeError, 1.5 KeyError: tracebacks or a bare "'1'"."""
    root = _yolo_set(tmp_path, data_root, "0 0.5 0.5 0.2 0.2\n", data_yaml=f"names: {{0: a, {key}: b}}\n")
    with pytest.raises(DataError, match=r"data\.yaml: 'names' keys must be class ids"):
        read_dataset(root)


def test_hagrid_deep_or_huge_json_is_one_line(tmp_path, data_root):
    root = tmp_path / "h"
    (root / "call").mkdir(parents=True)
    shutil.copy(_real_photo(data_root), root / "call" / "a.jpg")
    (root / "ann").mkdir()
    annotations = root / "ann" / "call.json"
    annotations.write_text('{"a": {"bboxes": [[0.1, 0.1, 0.2, 1' + "0" * 400 + ']], "labels": ["call"]}}')
    with pytest.raises(DataError, match=r"call\.json: a: box #1 .* is not 4 numbers"):  # was an OverflowError
        read_dataset(root, format="hagrid")
    annotations.write_text('{"bboxes": ' + "[" * 100_000 + "]" * 100_000 + "}")  # was a RecursionError
    with pytest.raises(DataError, match=r"call\.json: malformed JSON \(nested too deeply\)"):
        read_dataset(root, format="hagrid")


def test_eval_names_the_label_file_of_a_nan_box(tmp_path, data_root, capsys):
    """`hybrid eval` reads the dataset before it loads a model: the NaN is one line naming file and line."""
    root = _yolo_set(tmp_path / "set", data_root, "0 0.5 0.5 0.2 0.2\n0 0.5 nan 0.2 0.2\n")
    none = str(tmp_path / "no-model")
    assert main(["eval", str(root), "--split", "all", "--detector", none, "--classifier", none]) == 2
    err = capsys.readouterr().err
    assert "x.txt:2" in err
    assert "not a finite number" in err
    assert "Traceback" not in err


def test_evaluate_refuses_a_hand_made_record_with_a_nan_box(data_root):
    """Records made in Python skip the readers: `evaluate` checks the ground truth before it runs a model."""
    from hybrid.evaluate import evaluate

    record = ImageRecord(_real_photo(data_root), [HandBox(1.0, float("nan"), 5.0, 5.0, "5")], "mine", name="x.jpg")
    with pytest.raises(ValueError, match=r"x\.jpg: ground-truth box #1 .* is not 4 finite numbers"):
        evaluate(None, [record])  # the pipeline is never reached


def _alias_bomb(levels: int = 9) -> str:
    """Billion laughs: ~500 bytes whose `names` is 9**9 strings once the aliases are expanded."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nnames: *l{levels - 1}\ntrain: train/images\n"


def test_yaml_alias_bomb_is_refused_under_a_memory_limit(tmp_path, data_root):
    """Run in a child limited to 512 MB of address space: a regression fails the test, not the machine
    (the old reader expanded the names to ~2 GB)."""
    bomb = _alias_bomb()
    assert len(bomb) < 600
    root = _yolo_set(tmp_path / "set", data_root, "0 0.5 0.5 0.2 0.2\n", data_yaml=bomb)
    done = _stats_under_a_memory_limit(root)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "data.yaml" in line
    assert "alias" in line


def test_oversized_or_deeply_nested_yaml_is_refused(tmp_path, data_root):
    root = _yolo_set(tmp_path, data_root, "0 0.5 0.5 0.2 0.2\n")
    data_yaml = root / "data.yaml"
    data_yaml.write_text("names: [hand]\ntrain: train/images\n" + "# padding\n" * 30_000)  # 300 KB
    with pytest.raises(DataError, match=r"data\.yaml: over the limit of 256 KB for a YAML file"):
        read_dataset(root)
    data_yaml.write_text("names: " + "[" * 100 + "]" * 100 + "\n")
    with pytest.raises(DataError, match=r"data\.yaml: line 1: nested deeper than 32 levels"):
        read_dataset(root)
    data_yaml.write_text("names: " + "[" * 5000 + "]" * 5000 + "\n")  # was a RecursionError in PyYAML's composer
    with pytest.raises(DataError, match=r"data\.yaml: malformed YAML \(.*nesting depth"):
        read_dataset(root)


def test_load_yaml_refuses_aliases_and_reads_plain_yaml(tmp_path):
    from hybrid.yamlfile import load_yaml, parse_yaml

    path = tmp_path / "recipe.yaml"
    path.write_text("base: &base {lr: 0.1}\nrun:\n  <<: *base\n")
    with pytest.raises(ValueError, match=r"recipe\.yaml: line 3: YAML aliases \(\*name\) are not accepted"):
        load_yaml(path)
    with pytest.raises(DataError, match="recipe.yaml"):
        load_yaml(path, error=DataError)
    with pytest.raises(ValueError, match=r"README\.md front matter: line 2: YAML aliases"):
        parse_yaml("a: &x [1, 2]\nb: *x\n", "README.md front matter")
    path.write_text("epochs: 3\nnames: [a, b]\nlr: 1.0e-3\n")
    assert load_yaml(path) == {"epochs": 3, "names": ["a", "b"], "lr": 0.001}
    with pytest.raises(ValueError, match=r"nope\.yaml: file not found"):
        load_yaml(tmp_path / "nope.yaml")
    os.mkfifo(tmp_path / "fifo.yaml")  # would block a plain read forever
    with pytest.raises(ValueError, match=r"fifo\.yaml: not a regular file"):
        load_yaml(tmp_path / "fifo.yaml")
    path.write_text("epochs: " + "1" * 5000 + "\n")  # past Python's 4300-digit int limit
    with pytest.raises(ValueError, match=r"recipe\.yaml: a value YAML cannot read"):
        load_yaml(path)
    path.write_bytes(b"names: [\xff]\n")
    with pytest.raises(ValueError, match=r"recipe\.yaml: not UTF-8 text"):
        load_yaml(path)


def test_fifos_named_like_annotation_files_are_not_opened(tmp_path, data_root):
    """Opening a FIFO blocks until someone writes to it: one named x.yaml, x.xml or x.json in a dataset folder
    used to hang `data stats` (and every reader) for ever. Now only regular files are read."""
    photo = _real_photo(data_root)
    yolo = _yolo_set(tmp_path / "yolo", data_root, "0 0.5 0.5 0.2 0.2\n")
    (yolo / "data.yaml").rename(yolo / "hands.yaml")
    os.mkfifo(yolo / "a.yaml")  # sorted before hands.yaml: probed first for 'names'
    voc = tmp_path / "voc" / "test"
    voc.mkdir(parents=True)
    shutil.copy(photo, voc)
    shutil.copy(photo.with_suffix(".xml"), voc)
    os.mkfifo(voc / "zz.xml")
    hagrid = tmp_path / "hagrid"
    (hagrid / "call").mkdir(parents=True)
    shutil.copy(photo, hagrid / "call" / "a.jpg")
    (hagrid / "ann").mkdir()
    (hagrid / "ann" / "call.json").write_text('{"a": {"bboxes": [[0.1, 0.1, 0.2, 0.2]], "labels": ["call"]}}')
    os.mkfifo(hagrid / "ann" / "a.json")
    for root in (yolo, voc.parent, hagrid):
        done = subprocess.run(
            [sys.executable, "-m", "hybrid.cli", "data", "stats", str(root), "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout)["images"] == 1


def test_stats_decodes_images_fully_and_lists_a_truncated_jpeg(capsys, tmp_path, data_root):
    """A JPEG cut in half has a valid header: `data stats` used to count it as good."""
    photos = sorted((data_root / HANDS / "images" / "test").glob("*.jpg"))[:3]
    (tmp_path / "five").mkdir()
    for photo in photos[:2]:
        shutil.copy(photo, tmp_path / "five")
    data = photos[2].read_bytes()
    (tmp_path / "five" / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert main(["data", "stats", str(tmp_path), "--json"]) == 1
    stats = json.loads(capsys.readouterr().out)
    assert (stats["images"], stats["boxes"], stats["labels"]) == (2, 2, {"five": 2})
    (line,) = stats["bad_images"]
    assert "cut.jpg" in line
    assert "truncated" in line


# --- issue 29, second probe: writers that replace a user's dataset, names that forge lines, label files of any size


def _user_yolo_dataset(root: Path, data_root) -> Path:
    """A user's 3-photo YOLO dataset (images/train, labels/train, data.yaml) with their notes beside it."""
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for number, photo in enumerate(sorted((data_root / HANDS / "images" / "test").glob("*.jpg"))[:3]):
        shutil.copy(photo, root / "images" / "train" / f"{number}.jpg")
        (root / "labels" / "train" / f"{number}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nnames: [hand]\n")
    (root / "MY_NOTES.txt").write_text("keep me")
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_yolo_never_replaces_a_users_yolo_dataset(tmp_path, data_root):
    """Every YOLO dataset has a data.yaml, the writer's marker: writing one onto a user's dataset used to delete
    their photos and notes. Now only a folder holding the writer's own marker is replaced; theirs is refused."""
    root = _user_yolo_dataset(tmp_path / "mine", data_root)
    before = _tree(root)
    with pytest.raises(FileExistsError, match=r"mine exists and is not a folder this writer made"):
        write_yolo_dataset({"train": read_dataset(root)}, root)
    assert _tree(root) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary folder left
    ours = write_yolo_dataset({"train": read_dataset(root)}, tmp_path / "ours")
    again = write_yolo_dataset({"train": read_dataset(root)[:1]}, tmp_path / "ours")  # its own output: replaced
    assert again == ours
    assert len(list((tmp_path / "ours" / "images" / "train").iterdir())) == 1
    assert _tree(root) == before


def test_save_dataset_never_replaces_a_dataset_it_did_not_write(hands, tmp_path):
    """`save_dataset`'s markers were state.json / dataset_info.json, which every `save_to_disk` folder has: it
    replaced a user's own saved dataset (and their notes). Now it replaces only a folder it wrote."""
    ds = build_crop_dataset([r for r in hands if r.split == "test"][:2], image_size=32)
    theirs = tmp_path / "theirs"
    ds.save_to_disk(str(theirs))
    (theirs / "MY_NOTES.txt").write_text("keep me")
    before = _tree(theirs)
    with pytest.raises(FileExistsError, match=r"theirs exists and is not a folder this writer made"):
        save_dataset(ds, theirs)
    assert _tree(theirs) == before
    with pytest.raises(FileExistsError, match="not a folder this writer made"):  # nor a YOLO dataset of ours
        save_dataset(ds, Path(write_yolo_dataset({"train": hands[:1]}, tmp_path / "yolo")).parent)
    with pytest.raises(FileExistsError, match="not a folder this writer made"):  # and the other way round
        write_yolo_dataset({"train": hands[:1]}, save_dataset(ds, tmp_path / "crops"))


def test_stats_plain_output_escapes_control_characters(tmp_path, data_root):
    """A class folder named 'ok\\nimages: 9999' forged a line of `data stats`; an ANSI escape in a bad image's
    name reached the terminal (in the list and in the log line); a name that is not UTF-8 ended it in a
    UnicodeEncodeError. Now each is one line, control characters written as escapes. Run as a user would."""
    photos = sorted((data_root / HANDS / "images" / "test").glob("*.jpg"))[:2]
    forged, ansi = "ok\nimages: 9999", "\x1b[32mall fine\x1b[0m\udcff"
    (tmp_path / "set" / forged).mkdir(parents=True)
    shutil.copy(photos[0], tmp_path / "set" / forged / "a.jpg")
    (tmp_path / "set" / "fist").mkdir()
    (tmp_path / "set" / "fist" / f"{ansi}.jpg").write_bytes(photos[1].read_bytes()[:100])  # a cut header
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "hybrid.cli", "data", "stats", str(tmp_path / "set")], capture_output=True, env=env
    )
    assert done.returncode == 1, done.stderr[-2000:]
    out, err = done.stdout.decode("ascii"), done.stderr.decode("ascii")  # every byte printable: escapes are ASCII
    assert "\x1b" not in out + err
    lines = out.splitlines()
    escaped_class = "ok\\nimages: 9999"
    assert lines[:3] == ["images: 1", "boxes:  1", f"  {escaped_class:<20} 1"]
    assert lines[3] == "bad images (skipped): 1"
    assert lines[4].startswith(f"  {tmp_path}/set/fist/\\x1b[32mall fine\\x1b[0m\\udcff.jpg: ")
    assert len(lines) == 5
    assert all(line.startswith(("INFO ", "WARNING ")) for line in err.splitlines()), err
    assert "\\x1b[32mall fine" in err
    done = subprocess.run(
        [sys.executable, "-m", "hybrid.cli", "data", "stats", str(tmp_path / "set"), "--json"],
        capture_output=True,
        env=env,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    stats = json.loads(done.stdout)
    assert stats["labels"] == {forged: 1}
    assert "\x1b[32mall fine" in stats["bad_images"][0]


def _oversized(path: Path, size: int) -> Path:
    """`path` grown to `size` bytes with zeros after its text (a sparse file: no disk space used)."""
    os.truncate(path, size)
    return path


@pytest.mark.parametrize("kind", ["yolo label", "classes.txt", "voc xml"])
def test_annotation_file_over_its_limit_is_one_line(tmp_path, data_root, kind):
    """Label files were read whole, whatever their size: a 200 MB sparse label file took 450 MB of RAM. Now a
    file over its limit (1 MB for these) is one line naming it, from its size, before it is read."""
    limit = 1024 * 1024
    if kind == "yolo label":
        root = _yolo_set(tmp_path, data_root, "0 0.5 0.5 0.2 0.2\n")
        big = root / "train" / "labels" / "x.txt"
    elif kind == "classes.txt":
        root = _yolo_set(tmp_path, data_root, "0 0.5 0.5 0.2 0.2\n")
        (root / "data.yaml").unlink()
        (root / "classes.txt").write_text("hand\n")
        big = root / "classes.txt"
    else:
        xml = _real_photo(data_root).with_suffix(".xml")
        root = tmp_path / "voc"
        (root / "test").mkdir(parents=True)
        shutil.copy(xml.with_suffix(".jpg"), root / "test")
        big = Path(shutil.copy(xml, root / "test"))
    assert len(read_dataset(root)) == 1
    _oversized(big, limit + 1)
    with pytest.raises(DataError, match=rf"^{re.escape(str(big))}: {limit + 1:,} bytes, over the limit of 1 MB"):
        read_dataset(root)


def _stats_under_a_memory_limit(root: Path, limit: int = 512 * 1024 * 1024) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hybrid.cli", "data", "stats", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
    )


@pytest.mark.parametrize("kind", ["yolo label", "list file", "hagrid json"])
def test_huge_annotation_file_is_refused_under_a_memory_limit(tmp_path, data_root, kind):
    """`truncate -s 1G` on a label file, an Ultralytics list file or a HaGRID JSON: `data stats` used to read it
    whole (a MemoryError traceback under this 512 MB limit; a 20 GB one would exhaust the machine). Now one line
    naming the file, in a child under the limit so a regression fails the test, not the machine."""
    if kind == "yolo label":
        root = _yolo_set(tmp_path / "set", data_root, "0 0.5 0.5 0.2 0.2\n")
        big = root / "train" / "labels" / "x.txt"
    elif kind == "list file":
        root = _yolo_set(tmp_path / "set", data_root, "0 0.5 0.5 0.2 0.2\n", "names: [hand]\ntrain: train.txt\n")
        big = root / "train.txt"
        big.write_text("train/images/x.jpg\n")
    else:
        root = tmp_path / "h"
        (root / "call").mkdir(parents=True)
        shutil.copy(_real_photo(data_root), root / "call" / "a.jpg")
        (root / "ann").mkdir()
        big = root / "ann" / "call.json"
        big.write_text('{"a": {"bboxes": [[0.1, 0.1, 0.2, 0.2]], "labels": ["call"]}}')
    done = _stats_under_a_memory_limit(root)
    assert done.returncode == 0, done.stderr[-2000:]
    _oversized(big, 1024**3)
    done = _stats_under_a_memory_limit(root)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if not line.startswith(("INFO ", "WARNING "))]
    assert line.startswith(f"hybrid: error: {big}: 1,073,741,824 bytes, over the limit of ")
