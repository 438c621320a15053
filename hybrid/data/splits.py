"""Seeded, stratified train/val/test splits that keep the splits a dataset ships with.

Per source (records of different datasets are split separately, then joined):
- all three upstream splits present (Roboflow: train/valid/test) -> kept as they are;
- some present (Hands: train/test) -> the missing ones are carved out of upstream train, seeded and
  stratified, in the proportions of `fractions`;
- none (Sign Language Digits) -> a seeded stratified split by `fractions` (default 80/10/10).
Strata are the first label of each image ('' for images without hands). Images of one subject
(`extra['user_id']`, e.g. HaGRID) go to the same split. Order within each stratum is by name before
shuffling, so the result depends only on the records and the seed.
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

from hybrid.data.records import ImageRecord

SPLITS = ("train", "val", "test")


def _units(records: list[ImageRecord]) -> list[list[ImageRecord]]:
    """Images of one subject (`extra['user_id']`, as HaGRID gives) stay together; others are alone."""
    groups: dict[str, list[ImageRecord]] = defaultdict(list)
    units = []
    for record in records:
        subject = record.extra.get("user_id")
        if subject:
            groups[str(subject)].append(record)
        else:
            units.append([record])
    return units + list(groups.values())


def _key(record: ImageRecord) -> tuple[str, str]:
    return record.name, "" if callable(record.image) or isinstance(record.image, bytes) else str(record.image)


def _stratified(
    records: list[ImageRecord], fractions: dict[str, float], seed: int, salt: str
) -> dict[str, list[ImageRecord]]:
    """Cut `records` into parts in proportion to `fractions`, per stratum (first label), keeping each
    subject's images in one part; rounding remainders carry across strata so totals stay close."""
    out: dict[str, list[ImageRecord]] = {name: [] for name in fractions}
    total = sum(fractions.values())
    strata: dict[str, list[list[ImageRecord]]] = defaultdict(list)
    for unit in _units(records):
        unit.sort(key=_key)
        strata[unit[0].boxes[0].label if unit[0].boxes else ""].append(unit)
    carry = {name: 0.0 for name in fractions}
    names = list(fractions)
    for label in sorted(strata):
        units = sorted(strata[label], key=lambda u: _key(u[0]))
        random.Random(f"{seed}-{salt}-{label}").shuffle(units)
        start = 0
        for i, name in enumerate(names):
            if i == len(names) - 1:
                count = len(units) - start
            else:
                exact = len(units) * fractions[name] / total + carry[name]
                count = max(0, min(int(round(exact)), len(units) - start))
                carry[name] = exact - count
            for unit in units[start : start + count]:
                out[name].extend(unit)
            start += count
    return out


def split_records(
    records: Sequence[ImageRecord], seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, list[ImageRecord]]:
    """{'train': [...], 'val': [...], 'test': [...]}; see the module docstring for the rules."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test), got {fractions}")
    wanted = dict(zip(SPLITS, fractions))
    result: dict[str, list[ImageRecord]] = {name: [] for name in SPLITS}
    by_source: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        by_source[record.source].append(record)
    for source in sorted(by_source):
        group = by_source[source]
        upstream: dict[str, list[ImageRecord]] = defaultdict(list)
        unsplit = []
        for record in group:
            if record.split in SPLITS:
                upstream[record.split].append(record)
            else:
                unsplit.append(record)
        missing = [name for name in SPLITS if not upstream.get(name)]
        if upstream and missing:
            # carve the missing splits out of upstream train (or whichever split is largest)
            donor = "train" if upstream.get("train") else max(upstream, key=lambda k: len(upstream[k]))
            parts = {donor: wanted[donor], **{name: wanted[name] for name in missing}}
            if sum(parts.values()) > 0:
                for name, part in _stratified(upstream.pop(donor), parts, seed, source).items():
                    upstream[name].extend(part)
        if unsplit:
            for name, part in _stratified(unsplit, wanted, seed, source).items():
                upstream[name].extend(part)
        for name in SPLITS:
            result[name].extend(upstream.get(name, []))
    return result


# --- the split recorded with a trained model -------------------------------------------------------------

SPLIT_NAME = "split.json"


def record_id(record: ImageRecord) -> str:
    """A record's id in split.json: its source and image path relative to the data root (any other path as
    it is; images without a path: the upstream split and name), so a copy of the data elsewhere matches."""
    from hybrid.constants import data_root

    if isinstance(record.image, (str, Path)):
        path = Path(os.path.abspath(record.image))
        try:
            root = Path(os.path.abspath(data_root()))
        except FileNotFoundError:  # no data root here: the path as it is
            root = None
        where = path.relative_to(root).as_posix() if root and path.is_relative_to(root) else path.as_posix()
    else:
        where = f"{record.split or ''}/{record.name}"
    return f"{record.source}:{where}"


def save_split(
    folder: Path | str, splits: Mapping[str, Sequence[ImageRecord]], seed: int, fractions: Sequence[float]
) -> Path:
    """Write `split.json` into a trained model's folder: the record ids of each split, the seed and fractions."""
    from hybrid.files import write_text

    content = {
        "seed": seed,
        "fractions": list(fractions),
        "splits": {name: sorted(record_id(r) for r in splits.get(name, ())) for name in SPLITS},
    }
    return write_text(Path(folder) / SPLIT_NAME, json.dumps(content, indent=1) + "\n")


def load_split(folder: Path | str) -> dict[str, set[str]] | None:
    """{'train': ids, 'val': ids, 'test': ids} from a model folder's split.json; None when it has none.
    Raises ValueError naming the file when it is not a split file."""
    path = Path(folder) / SPLIT_NAME
    if not path.is_file():
        return None
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))["splits"]
        return {name: {str(i) for i in splits.get(name, [])} for name in SPLITS}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path}: not a split file ({error})") from None


def held_out(
    records: Sequence[ImageRecord], model_folders: Sequence[Path | str | None], split: str = "test", seed: int = 0
) -> list[ImageRecord]:
    """The records of `split` ('train' | 'val' | 'test' | 'all') as the models were trained: a record listed in
    a model folder's split.json goes where the first folder listing it put it; records no folder lists (another
    dataset, models without split.json) are split by convention (`split_records(records, seed)`).

    Raises ValueError with one line when a chosen record is in the train split of one of the models."""
    known = []  # (folder, its splits) of the folders holding a split.json
    for folder in model_folders:
        splits = load_split(folder) if folder is not None else None
        if splits is not None:
            known.append((Path(folder), splits))
    ids = [record_id(r) for r in records]
    where: dict[str, str] = {}
    for _, splits in reversed(known):  # the first folder listing a record wins
        where.update({i: name for name, members in splits.items() for i in members})
    if split == "all":
        chosen = list(records)
    else:
        unknown = [r for r, i in zip(records, ids) if i not in where]
        by_convention = {id(r) for r in split_records(unknown, seed=seed)[split]}
        chosen = [r for r, i in zip(records, ids) if where.get(i) == split or id(r) in by_convention]
    chosen_ids = {record_id(r) for r in chosen}
    for folder, splits in known:
        trained = len(chosen_ids & splits["train"])
        if trained:
            raise ValueError(
                f"refusing to score {folder} on {trained} records it was trained on "
                f"(listed in the train split of its {SPLIT_NAME})"
            )
    return chosen
