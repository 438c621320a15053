"""Hugging Face `datasets` -> ImageRecords: a Hub id ("org/name" or "org/name@revision") or a local
dataset (`save_to_disk` folder, or any folder `load_dataset` reads, e.g. an imagefolder).

Two layouts: object detection (`image`, `objects: {bbox: COCO [x, y, w, h] pixels, category}`) and
classification (`image`, `label`). Category/label ids are named through their `ClassLabel`.
`datasets` is imported here only: the Space does not install it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from hybrid.data.readers import SPLIT_NAMES, BoxCleaner, DataError, checked_size
from hybrid.data.records import HandBox, ImageRecord

log = logging.getLogger(__name__)


def _load(path_or_id: str):
    import datasets

    path = Path(path_or_id)
    if path.exists():
        if any((path / m).is_file() for m in ("dataset_dict.json", "state.json", "dataset_info.json")):
            return datasets.load_from_disk(str(path))
        return datasets.load_dataset(str(path))
    from hybrid.hub import split_revision

    repo, revision = split_revision(path_or_id)
    try:
        return datasets.load_dataset(repo, revision=revision)
    except Exception as error:  # the Hub raises many types; the user needs one clear line
        raise DataError(f"{path_or_id}: not a local folder, and loading it from the Hub failed ({error})") from None


def _names(feature) -> Optional[list[str]]:
    """ClassLabel names inside a (possibly nested list) feature, else None."""
    import datasets

    while not isinstance(feature, datasets.ClassLabel):
        inner = getattr(feature, "feature", None)
        if inner is None:
            return None
        feature = inner
    return list(feature.names)


def _label_name(value, names: Optional[list[str]], where: str) -> str:
    if isinstance(value, str):
        return value
    if names is None:
        return str(value)
    if not isinstance(value, int) or not 0 <= value < len(names):
        raise DataError(f"{where}: label id {value!r} is not one of the {len(names)} classes {names}")
    return names[value]


def _objects(value, where: str) -> list[tuple[list[float], object]]:
    """[(bbox, category)] from either `{bbox: [...], category: [...]}` or `[{bbox, category}, ...]`."""
    if isinstance(value, dict):
        bboxes, categories = value.get("bbox"), value.get("category")
        if bboxes is None or categories is None or len(bboxes) != len(categories):
            raise DataError(f"{where}: 'objects' needs 'bbox' and 'category' of equal length")
        return list(zip(bboxes, categories))
    if isinstance(value, list):
        try:
            return [(obj["bbox"], obj["category"]) for obj in value]
        except (KeyError, TypeError):
            raise DataError(f"{where}: each object needs 'bbox' and 'category'") from None
    raise DataError(f"{where}: 'objects' must be a dict of lists or a list of dicts, got {type(value).__name__}")


def _image_column(dataset) -> str:
    import datasets

    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image):
            return name
    raise DataError(f"dataset has no Image column (columns: {list(dataset.features)})")


def read_hf(path_or_id: str, source: str, cleaner: BoxCleaner, label_prefix: str = "") -> list[ImageRecord]:
    import datasets

    loaded = _load(path_or_id)
    parts = {None: loaded} if isinstance(loaded, datasets.Dataset) else dict(loaded.items())
    records = []
    for part_name, dataset in parts.items():
        split = SPLIT_NAMES.get(str(part_name).lower()) if part_name else None
        column = _image_column(dataset)
        features = dataset.features
        detection = "objects" in features
        label_column = next((c for c in ("label", "labels") if c in features), None)
        if not detection and label_column is None:
            raise DataError(
                f"{path_or_id}: expected 'objects' (detection) or 'label' (classification) columns, "
                f"got {list(features)}"
            )
        if detection:
            objects = features["objects"]
            category = (
                objects["category"] if isinstance(objects, dict) else getattr(objects, "feature", {}).get("category")
            )
            names = _names(category) if category is not None else None
        else:
            names = _names(features[label_column])
        undecoded = dataset.cast_column(column, datasets.Image(decode=False))
        for index, row in enumerate(undecoded):
            where = f"{path_or_id}[{part_name or 'dataset'}][{index}]"
            value = row[column]
            image = value.get("bytes") or (Path(value["path"]) if value.get("path") else None)
            if image is None:
                raise DataError(f"{where}: image has neither bytes nor a path")
            size = checked_size(image, cleaner, where)
            if size is None:
                continue
            width, height, _ = size
            if detection:
                boxes = []
                for bbox, cat in _objects(row["objects"], where):
                    if bbox is None or len(bbox) != 4:
                        raise DataError(f"{where}: bbox {bbox!r} is not [x, y, w, h]")
                    x, y, w, h = (float(v) for v in bbox)
                    box = cleaner(
                        x, y, x + w, y + h, label_prefix + _label_name(cat, names, where), width, height, where
                    )
                    if box is not None:
                        boxes.append(box)
                extra = {}
            else:
                label = label_prefix + _label_name(row[label_column], names, where)
                boxes, extra = [HandBox(0.0, 0.0, float(width), float(height), label)], {"whole_image": True}
            name = Path(value["path"]).name if value.get("path") else f"{part_name or 'dataset'}-{index:06d}"
            records.append(ImageRecord(image, boxes, source, split, width, height, name, extra))
    return records
