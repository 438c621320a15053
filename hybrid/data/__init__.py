"""The data layer: every dataset format -> `ImageRecord`s -> splits -> YOLO dataset | crop dataset.

    >>> from hybrid.data import read_dataset, split_records, build_crop_dataset, write_yolo_dataset
    >>> records = read_dataset("hands", merge_labels=True)         # registered name, or any folder
    >>> splits = split_records(records, seed=0)                      # keeps upstream splits
    >>> yaml_path = write_yolo_dataset(splits, "runs/data/hands")    # hands-only YOLO dataset
    >>> train = build_crop_dataset(splits["train"], image_size=224, train=True)

Formats: `voc`, `yolo`, `imagefolder`, `hagrid`, `hf` (see `readers.py`, `hf.py`); box convention:
pixel (x0, y0, x1, y1) in the upright (EXIF-applied) image. Labels: see `labels.py`.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence, Union

from hybrid.constants import data_root
from hybrid.data.labels import canonical_label
from hybrid.data.readers import READERS, BoxCleaner, DataError, detect_format
from hybrid.data.records import HandBox, ImageRecord
from hybrid.data.registry import REGISTRY, attribution, licence, match
from hybrid.data.splits import SPLITS, split_records
from hybrid.data.writers import build_crop_dataset, iter_crops, save_dataset, write_yolo_dataset
from hybrid.images import ImageError

log = logging.getLogger(__name__)

FORMATS = ("voc", "yolo", "imagefolder", "hagrid", "hf")


def _resolve(
    path_or_name: Union[str, os.PathLike],
) -> tuple[Union[Path, str], str, str, tuple[str, ...], Optional[str]]:
    """(path or Hub id, source name, label prefix, sub-folders, registered format)."""
    text = os.fspath(path_or_name)
    if text in REGISTRY and not Path(text).exists():
        info = REGISTRY[text]
        folder = data_root() / info.folder
        if not folder.is_dir():
            raise FileNotFoundError(
                f"dataset {text!r} is not at {folder}; run `hybrid data fetch {text}` or set HYBRID_DATA"
            )
        return folder, info.name, info.label_prefix, info.subdirs, info.format
    path = Path(text).expanduser()
    if path.exists():
        found = match(path)
        if found:
            info, folder, subdirs = found
            return folder, info.name, info.label_prefix, subdirs, info.format
        return path, path.stem if path.is_file() else path.name, "", (), None
    if text.count("/") == 1 and not text.startswith((".", "/")):
        return text, text.partition("@")[0], "", (), "hf"  # a Hub id
    raise FileNotFoundError(f"{text}: no such folder, registered dataset ({', '.join(sorted(REGISTRY))}) or Hub id")


def read_dataset(
    path_or_name: Union[str, os.PathLike],
    format: Optional[str] = None,
    split: Optional[str] = None,
    merge_labels: bool = False,
    seed: int = 0,
    bad_images: Optional[list[str]] = None,
    **reader_options,
) -> list[ImageRecord]:
    """Read a dataset folder, registered name ('hands', 'roboflow', 'sign-digits') or Hub id into records.

    `format` is detected when None. Records carry the upstream split ('train'|'val'|'test'|None).
    `split` returns only that split of `split_records(records, seed)` (upstream splits kept, missing ones
    carved out seeded). `merge_labels` maps labels through `canonical_label` ('5-hand', 'five' -> '5').
    `reader_options` go to the format's reader, e.g. `images=` for HaGRID annotations kept apart from
    their images. Raises `DataError` (a ValueError) naming the file for malformed annotations and for
    unreadable images (corrupt, or over `hybrid.images.MAX_PIXELS`), unless `bad_images` is a list: then
    those images are skipped and one error line per image is appended to it.
    """
    location, source, prefix, subdirs, registered_format = _resolve(path_or_name)
    keep = REGISTRY[source].keep_labels if source in REGISTRY and source == os.fspath(path_or_name) else ()
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    if format is None:
        format = registered_format or detect_format(Path(location))
    cleaner = BoxCleaner(bad_images=bad_images)
    if format == "hf":
        from hybrid.data.hf import read_hf

        records = read_hf(str(location), source, cleaner, prefix, **reader_options)
    else:
        path = Path(location)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such folder")
        kwargs = {"subdirs": subdirs} if subdirs and format in ("voc", "imagefolder") else {}
        records = READERS[format](path, source, cleaner, prefix, **kwargs, **reader_options)
    cleaner.report(source)
    if keep:
        records = [r for r in records if r.boxes and all(b.label in keep for b in r.boxes)]
    if merge_labels:
        for record in records:
            record.boxes = [HandBox(b.x0, b.y0, b.x1, b.y1, canonical_label(b.label)) for b in record.boxes]
            if "united_boxes" in record.extra:
                record.extra["united_boxes"] = [
                    HandBox(b.x0, b.y0, b.x1, b.y1, canonical_label(b.label)) for b in record.extra["united_boxes"]
                ]
    log.info("%s (%s): %d images, %d boxes", source, format, len(records), sum(len(r.boxes) for r in records))
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        records = split_records(records, seed=seed)[split]
    return records


def decodable(records: Sequence[ImageRecord], bad_images: list[str]) -> list[ImageRecord]:
    """The records whose image decodes fully (`ImageRecord.load`); one error line per other image is appended to
    `bad_images`. The readers look at headers only, and a truncated download has a whole header."""
    kept = []
    for record in records:
        try:
            record.load()
        except ImageError as error:
            bad_images.append(str(error))
        else:
            kept.append(record)
    return kept


def dataset_stats(records: Sequence[ImageRecord]) -> dict:
    """{"images": N, "boxes": M, "labels": {name: boxes}} (labels sorted by name)."""
    labels = Counter(box.label for record in records for box in record.boxes)
    return {"images": len(records), "boxes": sum(labels.values()), "labels": dict(sorted(labels.items()))}


__all__ = [
    "DataError",
    "HandBox",
    "ImageRecord",
    "attribution",
    "build_crop_dataset",
    "canonical_label",
    "data_root",
    "dataset_stats",
    "decodable",
    "detect_format",
    "iter_crops",
    "licence",
    "read_dataset",
    "save_dataset",
    "split_records",
    "write_yolo_dataset",
]
