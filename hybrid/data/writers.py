"""Writers: a YOLO detection dataset Ultralytics trains on directly, and the classifier's crop dataset.

Both write atomically: everything goes to a temporary sibling folder that replaces the target only
when complete, so an interrupted run never leaves a half-written dataset behind. Each marks its output with its
own marker file (`YOLO_MARKER`, `CROPS_MARKER`) and replaces only a folder holding it: data.yaml or state.json,
which every YOLO or `save_to_disk` dataset has, would let it delete a user's dataset.
"""

from __future__ import annotations

import io
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

import yaml
from PIL import Image

from hybrid.crops import CONTEXT, crop_square_box, cut_square, on_background, square_crop
from hybrid.data.readers import DataError, header_size
from hybrid.data.records import HandBox, ImageRecord
from hybrid.files import atomic_dir
from hybrid.images import ImageError, read_header

log = logging.getLogger(__name__)

HAND = "hand"
TRAIN_SCALE_JITTER = 0.15  # the square's side varies by +-15 % in training crops
TRAIN_SHIFT_JITTER = 0.08  # and its centre by +-8 % of the side
YOLO_MARKER = ".hybrid-yolo-dataset"  # in every folder write_yolo_dataset writes, and only there
CROPS_MARKER = ".hybrid-crop-dataset"  # the same for save_dataset


def _mark(folder: Path, marker: str, writer: str) -> None:
    (folder / marker).write_text(f"written by hybrid.data.{writer}, which may replace this folder\n")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


def _needs_copy(record: ImageRecord) -> bool:
    """Symlink only plain files Ultralytics decodes as we do; write everything else out upright."""
    if not isinstance(record.image, Path) or record.image.suffix.lower() not in {".jpg", ".jpeg", ".png", ".bmp"}:
        return True
    try:
        header = read_header(record.image)
    except ImageError as error:
        raise DataError(str(error)) from None
    return header.orientation != 1 or header.mode not in ("RGB", "L")


def write_yolo_dataset(
    records_by_split: Mapping[str, Sequence[ImageRecord]],
    out_dir: os.PathLike,
    gestures: bool = False,
    names: Optional[Sequence[str]] = None,
    copy: bool = False,
) -> Path:
    """Write <out_dir>/images/<split>/, labels/<split>/*.txt (class cx cy w h, normalised) and data.yaml
    (absolute `path`, split folders, `names`); return the data.yaml path.

    Hands-only (default): one class 'hand'. `gestures=True`: one class per label, `names` (default: the
    sorted labels found). Images are symlinked (`copy=True` copies); images that are not plain 8-bit
    JPEG/PNG files, or carry an EXIF rotation, are written out upright as PNG so the labels match.
    Images without hands get an empty label file (background images). An existing non-empty `out_dir` is
    replaced only when an earlier `write_yolo_dataset` wrote it (it holds YOLO_MARKER), else FileExistsError.
    """
    out_dir = Path(out_dir).absolute()
    if gestures:
        names = (
            list(names)
            if names
            else sorted({box.label for recs in records_by_split.values() for r in recs for box in r.boxes})
        )
    else:
        names = [HAND]
    class_id = {name: i for i, name in enumerate(names)}
    splits = {("val" if s in ("valid", "validation") else s): recs for s, recs in records_by_split.items() if recs}
    if "train" not in splits:
        raise ValueError(f"write_yolo_dataset needs a non-empty 'train' split, got {sorted(records_by_split)}")
    with atomic_dir(out_dir, markers=(YOLO_MARKER,)) as tmp:
        _mark(tmp, YOLO_MARKER, "write_yolo_dataset")
        for split, records in splits.items():
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            used: set[str] = set()
            for record in records:
                stem = _safe_name(f"{record.source}-{Path(record.name or 'image').stem}")
                while stem in used:
                    stem += "_"
                used.add(stem)
                if isinstance(record.image, Path) and not _needs_copy(record):
                    width, height = record.width, record.height
                    if width is None or height is None:
                        width, height, _ = header_size(record.image)
                    image_path = tmp / "images" / split / f"{stem}{record.image.suffix.lower()}"
                    if copy:
                        shutil.copyfile(record.image, image_path)
                    else:
                        os.symlink(record.image.absolute(), image_path)
                else:
                    image = record.load()
                    width, height = image.size
                    image.save(tmp / "images" / split / f"{stem}.png")
                lines = []
                for box in record.boxes:
                    if gestures and box.label not in class_id:
                        raise ValueError(f"{record.name}: label {box.label!r} is not in names {names}")
                    cid = class_id[box.label] if gestures else 0
                    # clip: Ultralytics discards a whole image whose label leaves the unit square
                    x0, x1 = (min(max(v, 0.0), width) for v in (box.x0, box.x1))
                    y0, y1 = (min(max(v, 0.0), height) for v in (box.y0, box.y1))
                    if x1 <= x0 or y1 <= y0:
                        log.warning("%s: skipped a box outside the image: %s", record.name, box)
                        continue
                    cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
                    w, h = (x1 - x0) / width, (y1 - y0) / height
                    lines.append(f"{cid} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
                (tmp / "labels" / split / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
        config = {
            "path": str(out_dir),
            **{split: f"images/{split}" for split in splits},
            "names": {i: name for i, name in enumerate(names)},
        }
        if "val" not in config:
            config["val"] = "images/train"  # Ultralytics requires a val entry
            log.warning("%s: no val split; validating on train", out_dir)
        (tmp / "data.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    log.info(
        "wrote YOLO dataset %s: %s, classes %s", out_dir, ", ".join(f"{s} {len(r)}" for s, r in splits.items()), names
    )
    return out_dir / "data.yaml"


def _is_whole_image(record: ImageRecord, box: HandBox) -> bool:
    if record.extra.get("whole_image"):
        return True
    return (
        len(record.boxes) == 1
        and record.width is not None
        and record.height is not None
        and box.xyxy == (0.0, 0.0, float(record.width), float(record.height))
    )


def iter_crops(
    records: Sequence[ImageRecord],
    image_size: Optional[int] = None,
    train: bool = False,
    seed: int = 0,
    context: float = CONTEXT,
    background_swap: float = 0.0,
) -> Iterator[tuple[Image.Image, str]]:
    """(crop, label) per hand, in record order: `square_crop` around each box (seeded jitter when
    `train`), or the whole image (padded square, never jittered) for image-folder records. `background_swap`
    (training only): the probability that a crop's context, the square outside the hand's box, is replaced by
    a hand-free square of another training photo (`random_background`)."""
    rng = random.Random(seed)
    for record in records:
        if not record.boxes:
            continue
        image = record.load()
        for box in record.boxes:
            if _is_whole_image(record, box):
                crop = square_crop(image, (0, 0, image.width, image.height), context=0.0)
            elif train:
                square = crop_square_box(box.xyxy, context, TRAIN_SCALE_JITTER, TRAIN_SHIFT_JITTER, rng)
                crop = cut_square(image, square)
                if background_swap and rng.random() < background_swap:
                    background = random_background(records, record, rng)
                    if background is not None:
                        crop = on_background(crop, square, box.xyxy, background)
            else:
                crop = square_crop(image, box.xyxy, context)
            if image_size:
                crop = crop.resize((image_size, image_size), Image.Resampling.BILINEAR)
            yield crop, box.label


def random_background(
    records: Sequence[ImageRecord], current: ImageRecord, rng: random.Random, tries: int = 20
) -> Optional[Image.Image]:
    """A random square, 30-100 % of the shorter side, of another photo in `records` that overlaps none of its
    hands (image-folder records, whose hand is the whole image, never qualify); None when `tries` draws find none."""
    for _ in range(tries):
        record = records[rng.randrange(len(records))]
        if (
            record is current
            or any(_is_whole_image(record, box) for box in record.boxes)
            or not (record.width and record.height)
        ):
            continue
        side = rng.uniform(0.3, 1.0) * min(record.width, record.height)
        x0, y0 = rng.uniform(0, record.width - side), rng.uniform(0, record.height - side)
        square = (x0, y0, x0 + side, y0 + side)
        if not any(_overlap(square, box.xyxy) for box in record.boxes):
            return cut_square(record.load(), square)
    return None


def _overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def build_crop_dataset(
    records: Sequence[ImageRecord],
    image_size: Optional[int] = None,
    train: bool = False,
    seed: int = 0,
    label_names: Optional[Sequence[str]] = None,
    context: float = CONTEXT,
    background_swap: float = 0.0,
    finger_labels: Optional[Mapping[str, Sequence[int]]] = None,
):
    """A `datasets.Dataset` with `image` (datasets.Image) and `label` (ClassLabel, sorted names, or
    `label_names` to share one label set across splits): one crop per hand (see `iter_crops`). With
    `finger_labels` (hybrid.fingers.load_labels) also `fingers`: each box's six finger and hand targets.

    Training crops are jittered once, with `seed` (build again with another seed for fresh jitter), a
    `background_swap` share of them on another photo's background (`iter_crops`).
    Crops are PNG-encoded in memory; `save_dataset` writes one to disk atomically.
    """
    import datasets

    crops, labels = [], []
    for crop, label in iter_crops(records, image_size, train, seed, context, background_swap):
        buffer = io.BytesIO()
        crop.save(buffer, format="PNG")
        crops.append({"bytes": buffer.getvalue(), "path": None})
        labels.append(label)
    names = list(label_names) if label_names is not None else sorted(set(labels))
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise ValueError(f"labels {unknown} are not in label_names {names}")
    index = {name: i for i, name in enumerate(names)}
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    columns = {"image": crops, "label": [index[label] for label in labels]}
    if finger_labels is not None:
        from hybrid.fingers import OUTPUTS, UNKNOWN, box_key

        unknown = (UNKNOWN,) * len(OUTPUTS)  # iter_crops' order: every box of every record with boxes
        keys = [box_key(record, number) for record in records for number in range(len(record.boxes))]
        columns["fingers"] = [list(finger_labels.get(key, unknown)) for key in keys]
        features["fingers"] = datasets.Sequence(datasets.Value("int8"), length=len(OUTPUTS))
    log.info("crop dataset: %d crops, %d classes%s", len(crops), len(names), " (jittered)" if train else "")
    return datasets.Dataset.from_dict(columns, features=features)


def save_dataset(dataset, path: os.PathLike) -> Path:
    """`dataset.save_to_disk(path)`, atomically (a temporary sibling folder renamed into place); an existing
    non-empty `path` is replaced only when an earlier `save_dataset` wrote it (else FileExistsError)."""
    path = Path(path)
    with atomic_dir(path, markers=(CROPS_MARKER,)) as tmp:
        dataset.save_to_disk(str(tmp))
        _mark(tmp, CROPS_MARKER, "save_dataset")
    return path
