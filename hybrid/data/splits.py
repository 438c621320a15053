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

import random
from collections import defaultdict
from typing import Sequence

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


def _stratified(records: list[ImageRecord], fractions: dict[str, float], seed: int, salt: str) -> dict[str, list[ImageRecord]]:
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
            for unit in units[start:start + count]:
                out[name].extend(unit)
            start += count
    return out


def split_records(records: Sequence[ImageRecord], seed: int = 0,
                  fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> dict[str, list[ImageRecord]]:
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
