"""Readers: every annotation format a user brings -> `ImageRecord`s with pixel xyxy boxes.

Box convention (all formats): coordinates refer to the UPRIGHT image, i.e. after its EXIF
orientation is applied, which is what `ImageRecord.load()` returns. This is the Ultralytics
convention (it sizes images with `exif_size` and decodes them upright) and what browser-based
annotators and Roboflow exports show. A Pascal VOC file whose `<size>` matches the stored
(un-rotated) pixels instead of the upright image is read the same way, with one warning, because
its annotator (e.g. labelImg) may have drawn on the raw pixels.

Every reader clips boxes to the image, drops boxes left with zero area (counted in ONE warning
per read), and raises `DataError` naming the file (and line, for YOLO txt) for malformed
annotations, non-finite coordinates or class ids, and labels the dataset does not define. YAML is read with
`hybrid.yamlfile.load_yaml` (no aliases, bounded size); every other annotation file (YOLO label, list and
classes.txt, VOC XML, HaGRID JSON) is refused from its size, before it is read, when over its `hybrid.limits` bound.
"""

from __future__ import annotations

import json
import logging
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from hybrid.data.records import HandBox, ImageRecord
from hybrid.images import ImageError, read_header
from hybrid.limits import MAX_HAGRID_JSON_BYTES, MAX_LABEL_FILE_BYTES, MAX_LIST_FILE_BYTES, MAX_VOC_XML_BYTES
from hybrid.yamlfile import load_yaml

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

# Folder names that carry an upstream split, mapped to ours.
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "train_val": "train",
    "ann_train_val": "train",
    "trainval": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
    "ann_test": "test",
}


class DataError(ValueError):
    """A malformed dataset; the message names the file (and line) and the problem."""


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def split_of(path: Path, root: Path) -> Optional[str]:
    """The upstream split named by the nearest folder from `path` up to `root` itself, if any."""
    try:
        parts = (root.name, *path.relative_to(root).parts[:-1])
    except ValueError:
        parts = path.parts[:-1]
    for part in reversed(parts):
        if part.lower() in SPLIT_NAMES:
            return SPLIT_NAMES[part.lower()]
    return None


def header_size(source: Union[Path, bytes], name: str = "") -> tuple[int, int, tuple[int, int]]:
    """(upright width, upright height, stored (width, height)) from the header, EXIF orientation applied;
    raises `DataError` for anything `hybrid.images.read_header` refuses (unreadable, too large)."""
    try:
        header = read_header(source, name)
    except ImageError as error:
        raise DataError(str(error)) from None
    return header.width, header.height, header.stored


@dataclass
class BoxCleaner:
    """Clips boxes to their image and drops zero-area ones; `report()` logs one warning for a read.
    When `bad_images` is a list, unreadable images are skipped and their error lines collected there
    (see `checked_size`); when None, they raise `DataError`."""

    dropped: int = 0
    clipped: int = 0
    examples: list[str] = field(default_factory=list)
    bad_images: Optional[list[str]] = None

    def __call__(
        self, x0: float, y0: float, x1: float, y1: float, label: str, width: int, height: int, where: str
    ) -> Optional[HandBox]:
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):  # NaN would pass the clipping below untouched
            raise DataError(f"{where}: box ({x0}, {y0}, {x1}, {y1}) is not 4 finite numbers")
        cx0, cy0 = min(max(x0, 0.0), width), min(max(y0, 0.0), height)
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        if cx1 - cx0 <= 0 or cy1 - cy0 <= 0:
            self.dropped += 1
            if len(self.examples) < 3:
                self.examples.append(where)
            return None
        if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
            self.clipped += 1
        return HandBox(float(cx0), float(cy0), float(cx1), float(cy1), label)

    def report(self, dataset: str) -> None:
        if self.clipped:
            log.info("%s: clipped %d box(es) that reached outside their image", dataset, self.clipped)
        if self.dropped:
            log.warning(
                "%s: dropped %d zero-area box(es) (after clipping to the image), e.g. %s",
                dataset,
                self.dropped,
                "; ".join(self.examples),
            )
        if self.bad_images:
            log.warning(
                "%s: skipped %d unreadable image(s), e.g. %s", dataset, len(self.bad_images), self.bad_images[0]
            )


def checked_size(
    image: Union[Path, bytes], cleaner: BoxCleaner, name: str = ""
) -> Optional[tuple[int, int, tuple[int, int]]]:
    """`header_size`, or None for an unreadable image when `cleaner` collects bad images (it is recorded there)."""
    try:
        return header_size(image, name)
    except DataError as error:
        if cleaner.bad_images is None:
            raise
        cleaner.bad_images.append(str(error))
        return None


def _number(text: Optional[str], where: str, what: str) -> float:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} is {text!r}, expected a number") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: {what} is {text!r}, expected a finite number")
    return value


def annotation_bytes(path: Path, limit: int, what: str) -> bytes:
    """The bytes of annotation file `path` (`what` names its kind in the error); `DataError` for one over `limit`
    bytes, decided from its size before it is read (a sparse 20 GB file would otherwise be read whole)."""
    too_large = f"over the limit of {limit / 2**20:g} MB for {what}"
    try:
        size = os.stat(path).st_size
        if size > limit:
            raise DataError(f"{path}: {size:,} bytes, {too_large}")
        with path.open("rb") as handle:
            data = handle.read(limit + 1)  # the file may have grown since
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from None
    if len(data) > limit:
        raise DataError(f"{path}: {too_large}")
    return data


def annotation_text(path: Path, limit: int, what: str) -> str:
    """`annotation_bytes` as UTF-8 text; `DataError` for a file that is not."""
    try:
        return annotation_bytes(path, limit, what).decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file (not UTF-8)") from None


def _images_by_stem(folder: Path, cache: dict[Path, dict[str, Path]]) -> dict[str, Path]:
    if folder not in cache:
        found: dict[str, Path] = {}
        if folder.is_dir():
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                if entry.is_file() and is_image(Path(entry.name)):
                    found.setdefault(Path(entry.name).stem, Path(entry.path))
        cache[folder] = found
    return cache[folder]


# --- Pascal VOC -------------------------------------------------------------------------------


def read_voc(
    root: Path, source: str, cleaner: BoxCleaner, label_prefix: str = "", subdirs: Sequence[str] = ()
) -> list[ImageRecord]:
    """Pascal VOC XML (labelImg style): one XML per image, next to it or in ../JPEGImages.
    The XML's <folder>/<path> are ignored; the split is the folder the XML sits in (below `root`)."""
    records, cache, raw_size_files = [], {}, []
    xml_paths = sorted(p for sub in (subdirs or [""]) for p in (root / sub).rglob("*.xml") if p.is_file())
    for xml_path in xml_paths:
        data = annotation_bytes(xml_path, MAX_VOC_XML_BYTES, "a Pascal VOC XML file")
        try:
            annotation = ET.fromstring(data)
        except ET.ParseError as error:
            raise DataError(f"{xml_path}: malformed XML ({error})") from None
        if annotation.tag != "annotation":
            raise DataError(f"{xml_path}: not a Pascal VOC annotation (root element <{annotation.tag}>)")
        image_path = _images_by_stem(xml_path.parent, cache).get(xml_path.stem)
        filename = (annotation.findtext("filename") or "").strip()
        if image_path is None and filename:
            for candidate in (xml_path.parent / filename, xml_path.parent.parent / "JPEGImages" / filename):
                if candidate.is_file():
                    image_path = candidate
                    break
        if image_path is None:
            raise DataError(
                f"{xml_path}: no image for this annotation (looked for {xml_path.stem}.* next to it"
                f"{' and ' + filename if filename else ''})"
            )
        size = checked_size(image_path, cleaner)
        if size is None:
            continue
        width, height, stored = size
        size = annotation.find("size")
        if size is not None and stored != (width, height):  # only informative: images are sized from their header
            declared = (size.findtext("width") or "").strip(), (size.findtext("height") or "").strip()
            if declared == (str(stored[0]), str(stored[1])):
                raw_size_files.append(xml_path.name)
        boxes = []
        for index, obj in enumerate(annotation.findall("object")):
            where = f"{xml_path}: <object> #{index + 1}"
            name = (obj.findtext("name") or "").strip()
            if not name:
                raise DataError(f"{where} has no <name>")
            bndbox = obj.find("bndbox")
            if bndbox is None:
                raise DataError(f"{where} ({name}) has no <bndbox>")
            x0, y0, x1, y1 = (
                _number(bndbox.findtext(tag), where, f"<{tag}>") for tag in ("xmin", "ymin", "xmax", "ymax")
            )
            box = cleaner(x0, y0, x1, y1, label_prefix + name, width, height, where)
            if box is not None:
                boxes.append(box)
        records.append(ImageRecord(image_path, boxes, source, split_of(xml_path, root), width, height, image_path.name))
    if raw_size_files:
        log.warning(
            "%s: %d VOC file(s) declare the stored (un-rotated) size of an EXIF-rotated image, e.g. %s; "
            "their boxes are read as upright-image coordinates",
            source,
            len(raw_size_files),
            raw_size_files[0],
        )
    return records


# --- YOLO -------------------------------------------------------------------------------------

_SPLIT_ALIASES = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test",)}


def _find_yaml(root: Path) -> Optional[Path]:
    if root.is_file():
        return root
    if (root / "data.yaml").is_file():
        return root / "data.yaml"
    for candidate in sorted(root.glob("*.y*ml")):
        try:
            content = load_yaml(candidate, DataError)
        except DataError:  # not a YAML file we read: not the dataset's
            continue
        if isinstance(content, dict) and "names" in content:
            return candidate
    return None


def _class_key(key: object, yaml_path: Path) -> int:
    """A key of a 'names' mapping as a class id: an integer, or a string of ASCII digits (not 1.5, .inf, ~)."""
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return key
    if isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 9:
        return int(key)
    raise DataError(f"{yaml_path}: 'names' keys must be class ids 0, 1, ..., got {key!r}")


def _yolo_names(config: dict, yaml_path: Path) -> list[str]:
    names = config.get("names")
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict):
        by_id = {_class_key(key, yaml_path): str(name) for key, name in names.items()}
        ids = sorted(by_id)
        if ids != list(range(len(ids))):
            raise DataError(f"{yaml_path}: 'names' ids must be 0..{len(ids) - 1}, got {ids}")
        return [by_id[k] for k in ids]
    raise DataError(f"{yaml_path}: 'names' must be a list or an id -> name mapping, got {type(names).__name__}")


def _yolo_split_dirs(root: Path, config: dict, yaml_path: Optional[Path]) -> dict[str, Path]:
    """Image folder per split: the yaml's path if it exists, else <root>/<split>/images or <root>/images/<split>."""
    base = yaml_path.parent if yaml_path else root
    if config.get("path"):
        declared = Path(str(config["path"]))
        base = declared if declared.is_absolute() else base / declared
    found: dict[str, Path] = {}
    for split, aliases in _SPLIT_ALIASES.items():
        value = next((config[a] for a in aliases if isinstance(config.get(a), str)), None)
        candidates = []
        if value:
            declared = Path(value)
            candidates.append(declared if declared.is_absolute() else base / declared)
        candidates += [root / a / "images" for a in aliases] + [root / "images" / a for a in aliases]
        chosen = next((c for c in candidates if c.exists()), None)
        if chosen is None:
            if value:
                log.warning(
                    "%s: the %s images %r do not exist and no %s/images folder was found",
                    yaml_path or root,
                    split,
                    value,
                    split,
                )
            continue
        if value and chosen != candidates[0]:
            log.info("%s: %s path %r not found here; using %s", yaml_path, split, value, chosen)
        if chosen.resolve() in {p.resolve() for p in found.values()}:
            log.warning("%s: %s points at the same images as another split; skipped", yaml_path or root, split)
            continue
        found[split] = chosen
    return found


def _yolo_images(images: Path) -> list[Path]:
    if images.is_file() and images.suffix == ".txt":  # Ultralytics also accepts a list file
        text = annotation_text(images, MAX_LIST_FILE_BYTES, "an image list file")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return [Path(line) if Path(line).is_absolute() else images.parent / line for line in lines]
    return sorted(p for p in images.rglob("*") if p.is_file() and is_image(p))


def label_path_for(image: Path) -> Path:
    """Ultralytics' rule: .../images/x.jpg -> .../labels/x.txt (next to the image if there is no images/)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _parse_yolo_line(parts: list[str], where: str, names: list[str]) -> tuple[str, list[float]]:
    if len(parts) != 5 and (len(parts) < 7 or len(parts) % 2 == 0):
        raise DataError(f"{where}: expected 'class cx cy w h' (5 numbers) or a polygon, got {len(parts)} values")
    try:
        values = [float(v) for v in parts]
    except ValueError:
        raise DataError(f"{where}: not a number in {' '.join(parts)!r}") from None
    class_id = values[0]
    if not math.isfinite(class_id) or class_id != int(class_id) or not 0 <= class_id < len(names):
        raise DataError(f"{where}: class id {parts[0]} is not one of the dataset's classes 0..{len(names) - 1} {names}")
    if not all(math.isfinite(v) for v in values):  # min/max of a polygon would skip a NaN silently
        raise DataError(f"{where}: not a finite number in {' '.join(parts)!r}")
    if len(values) == 5:
        cx, cy, w, h = values[1:]
        return names[int(class_id)], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    xs, ys = values[1::2], values[2::2]  # segmentation polygon -> its bounding box, as Ultralytics does
    return names[int(class_id)], [min(xs), min(ys), max(xs), max(ys)]


def read_yolo(root: Path, source: str, cleaner: BoxCleaner, label_prefix: str = "") -> list[ImageRecord]:
    """YOLO txt labels + data.yaml (or classes.txt). The yaml's split paths are used when they exist,
    else resolved inside `root` (train|valid|val|test/images, images/<split>). An image without a
    label file has zero hands, as in Ultralytics."""
    yaml_path = _find_yaml(root)
    if yaml_path is not None:
        root = yaml_path.parent if root.is_file() else root
        config = load_yaml(yaml_path, DataError) or {}
        if not isinstance(config, dict):
            raise DataError(f"{yaml_path}: expected a mapping with 'names', got {type(config).__name__}")
        names = _yolo_names(config, yaml_path)
    elif (root / "classes.txt").is_file():
        text = annotation_text(root / "classes.txt", MAX_LABEL_FILE_BYTES, "a classes.txt")
        config, names = {}, [n.strip() for n in text.splitlines() if n.strip()]
    else:
        raise DataError(f"{root}: YOLO dataset without a data.yaml (with 'names') or classes.txt")
    split_dirs = _yolo_split_dirs(root, config, yaml_path)
    if not split_dirs:
        raise DataError(f"{yaml_path or root}: no image folders found for train/val/test")
    records = []
    for split, images in split_dirs.items():
        for image_path in _yolo_images(images):
            size = checked_size(image_path, cleaner)
            if size is None:
                continue
            width, height, _ = size
            label_file = label_path_for(image_path)
            boxes = []
            if label_file.is_file():
                lines = annotation_text(label_file, MAX_LABEL_FILE_BYTES, "a YOLO label file").splitlines()
                for number, line in enumerate(lines, 1):
                    parts = line.split()
                    if not parts:
                        continue
                    where = f"{label_file}:{number}"
                    label, (x0, y0, x1, y1) = _parse_yolo_line(parts, where, names)
                    box = cleaner(
                        x0 * width, y0 * height, x1 * width, y1 * height, label_prefix + label, width, height, where
                    )
                    if box is not None:
                        boxes.append(box)
            records.append(ImageRecord(image_path, boxes, source, split, width, height, image_path.name))
    return records


# --- image folders ----------------------------------------------------------------------------


def _has_images(folder: Path) -> bool:
    return any(p.is_file() and is_image(p) for p in folder.iterdir())


def _class_folders(root: Path) -> list[tuple[Optional[str], Path]]:
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs and all(p.name.lower() in SPLIT_NAMES for p in subdirs):
        return [(SPLIT_NAMES[s.name.lower()], c) for s in subdirs for c in sorted(s.iterdir()) if c.is_dir()]
    with_images = [p for p in subdirs if _has_images(p)]
    if not with_images and len(subdirs) == 1:  # a wrapper folder, e.g. sign-language-digits/Dataset
        return _class_folders(subdirs[0])
    return [(None, p) for p in with_images]


def read_imagefolder(
    root: Path, source: str, cleaner: BoxCleaner, label_prefix: str = "", subdirs: Sequence[str] = ()
) -> list[ImageRecord]:
    """Classification folders <root>/<class>/<image> (or <root>/<split>/<class>/<image>): each image is
    one hand whose box is the whole image (`extra['whole_image'] = True`)."""
    folders = [f for sub in (subdirs or [""]) for f in _class_folders(root / sub)]
    if not folders:
        raise DataError(f"{root}: no class folders with images found")
    records = []
    for split, folder in folders:
        for image_path in sorted(p for p in folder.iterdir() if p.is_file() and is_image(p)):
            size = checked_size(image_path, cleaner)
            if size is None:
                continue
            width, height, _ = size
            box = HandBox(0.0, 0.0, float(width), float(height), label_prefix + folder.name)
            records.append(
                ImageRecord(image_path, [box], source, split, width, height, image_path.name, {"whole_image": True})
            )
    return records


# --- HaGRID -----------------------------------------------------------------------------------


def _hagrid_files(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*.json")):
        if not path.is_file():  # a FIFO would block the read
            continue
        try:
            with path.open() as handle:
                head = handle.read(4096)
        except (OSError, UnicodeDecodeError):
            continue
        if head.lstrip().startswith("{") and '"bboxes"' in head:
            found.append(path)
    return found


def _hagrid_box(value, where: str, name: str) -> list[float]:
    """`value` as 4 floats; `name` says which box of the image ('box #2', 'united box #1')."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise DataError(f"{where}: expected a box [x, y, w, h], got {value!r}")
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of 400 digits
        raise DataError(f"{where}: {name} {value!r} is not 4 numbers") from None
    if not all(math.isfinite(v) for v in box):
        raise DataError(f"{where}: {name} {value!r} is not 4 finite numbers")
    return box


def read_hagrid(
    root: Path, source: str, cleaner: BoxCleaner, label_prefix: str = "", images: Optional[os.PathLike] = None
) -> list[ImageRecord]:
    """HaGRID v1/v2 annotations: one JSON per gesture, {image_id: {bboxes: [[x, y, w, h] normalised,
    top-left], labels: [...], united_bbox, united_label, leading_hand, user_id, ...}}.

    Layouts (both upstream ones work): v2 `hagrid_dataset/<gesture>/<id>.jpg` + `annotations/{train,val,test}/
    <gesture>.json`; v1 `train_val_<gesture>/<id>.jpg` + `ann_train_val|ann_test/<gesture>.json`. Images are
    found by id anywhere under `images` (default `root`); annotated images that are not there are skipped
    with one warning (people often download a subset). Hands are the per-hand `bboxes`/`labels`
    ('no_gesture' kept); v2's two-hand `united_bbox`/`united_label` go to `extra['united_boxes']`.
    """
    files = _hagrid_files(root)
    if not files:
        raise DataError(f"{root}: no HaGRID annotation JSON files found")
    images = Path(images) if images is not None else root
    if not images.is_dir():
        raise DataError(f"{images}: HaGRID image folder not found")
    index: dict[str, Path] = {}
    for path in sorted(images.rglob("*")):
        if path.is_file() and is_image(path):
            index.setdefault(path.stem, path)
    records, missing = [], 0
    for json_path in files:
        try:
            annotations = json.loads(annotation_bytes(json_path, MAX_HAGRID_JSON_BYTES, "a HaGRID annotation file"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"{json_path}: malformed JSON ({error})") from None
        except RecursionError:
            raise DataError(f"{json_path}: malformed JSON (nested too deeply)") from None
        if not isinstance(annotations, dict):
            raise DataError(
                f"{json_path}: expected an object {{image_id: annotation}}, got {type(annotations).__name__}"
            )
        split = split_of(json_path, root)
        for image_id, ann in annotations.items():
            where = f"{json_path}: {image_id}"
            if (
                not isinstance(ann, dict)
                or not isinstance(ann.get("bboxes"), list)
                or not isinstance(ann.get("labels"), list)
            ):
                raise DataError(f"{where}: expected 'bboxes' and 'labels' lists")
            if len(ann["bboxes"]) != len(ann["labels"]):
                raise DataError(f"{where}: {len(ann['bboxes'])} bboxes but {len(ann['labels'])} labels")
            image_path = index.get(image_id)
            if image_path is None:
                missing += 1
                continue
            size = checked_size(image_path, cleaner)
            if size is None:
                continue
            width, height, _ = size

            def to_box(value, label, name, where=where):
                x, y, w, h = _hagrid_box(value, where, name)
                return cleaner(
                    x * width,
                    y * height,
                    (x + w) * width,
                    (y + h) * height,
                    label_prefix + str(label),
                    width,
                    height,
                    f"{where}: {name}",
                )

            pairs = enumerate(zip(ann["bboxes"], ann["labels"]), 1)
            boxes = [b for b in (to_box(v, label, f"box #{n}") for n, (v, label) in pairs) if b is not None]
            united = []
            united_pairs = zip(ann.get("united_bbox") or [], ann.get("united_label") or [])
            for number, (value, label) in enumerate(united_pairs, 1):
                if value is not None and label is not None:
                    box = to_box(value, label, f"united box #{number}")
                    if box is not None:
                        united.append(box)
            extra = {"gesture": json_path.stem, "user_id": ann.get("user_id"), "leading_hand": ann.get("leading_hand")}
            if united:
                extra["united_boxes"] = united
            records.append(ImageRecord(image_path, boxes, source, split, width, height, image_path.name, extra))
    if missing:
        log.warning("%s: %d annotated image(s) are not under %s and were skipped", source, missing, images)
    return records


def detect_format(path: Path) -> str:
    """voc | yolo | imagefolder | hagrid | hf, from what the folder holds."""
    if not path.exists():
        return "hf"  # a Hub id
    if path.is_file():
        if path.suffix in (".yaml", ".yml"):
            return "yolo"
        raise DataError(f"{path}: expected a dataset folder (or a YOLO data.yaml)")
    if any((path / marker).is_file() for marker in ("dataset_dict.json", "dataset_info.json", "state.json")):
        return "hf"
    if _find_yaml(path) is not None or (path / "classes.txt").is_file():
        return "yolo"
    if next(path.rglob("*.xml"), None) is not None:
        return "voc"
    if _hagrid_files(path):
        return "hagrid"
    if _class_folders(path):
        return "imagefolder"
    raise DataError(
        f"{path}: cannot tell the dataset format (no data.yaml, VOC XML, HaGRID JSON or class folders); pass format="
    )


READERS = {"voc": read_voc, "yolo": read_yolo, "imagefolder": read_imagefolder, "hagrid": read_hagrid}
