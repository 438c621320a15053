"""Seeded, stratified train/val/test splits that keep the splits a dataset ships with.

Per source (records of different datasets are split separately, then joined):
- all three upstream splits present (Roboflow: train/valid/test) -> kept as they are;
- some present (Hands: train/test) -> the missing ones are carved out of upstream train, seeded and
  stratified, in the proportions of `fractions`;
- none (Sign Language Digits) -> a seeded stratified split by `fractions` (default 80/10/10).
Strata are the first label of each image ('' for images without hands). Order within each stratum
is by name before shuffling, so the result depends only on the records and the seed.
"""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence

from hybrid.data.records import ImageRecord

SPLITS = ("train", "val", "test")


def _stratified(records: list[ImageRecord], fractions: dict[str, float], seed: int, salt: str) -> dict[str, list[ImageRecord]]:
    """Cut `records` into len(fractions) parts, per stratum, with remainders assigned so totals stay close."""
    out: dict[str, list[ImageRecord]] = {name: [] for name in fractions}
    total = sum(fractions.values())
    strata: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        strata[record.boxes[0].label if record.boxes else ""].append(record)
    carry = {name: 0.0 for name in fractions}  # fractional parts carried across strata
    for label in sorted(strata):
        items = sorted(strata[label], key=lambda r: (r.name, str(r.image) if not callable(r.image) else ""))
        random.Random(f"{seed}-{salt}-{label}").shuffle(items)
        start = 0
        names = list(fractions)
        for i, name in enumerate(names):
            if i == len(names) - 1:
                count = len(items) - start
            else:
                exact = len(items) * fractions[name] / total + carry[name]
                count = max(0, min(int(round(exact)), len(items) - start))
                carry[name] = exact - count
            out[name].extend(items[start:start + count])
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
