"""Calibration samples for INT8: photos and hand crops from a trained model's own training split.

NNCF's post-training quantization sets each layer's int8 range from real inputs. They come from the records
the model folder's split.json lists as `train`, read from the data root ($HYBRID_DATA): real photos for the
detector (letterboxed at the size it will run at), THE crops of their hands for the classifier, so the
quantized model is calibrated on nothing it is scored on. A model without split.json, or whose training
data is not on this machine, has no calibration: precision 'auto' then keeps bf16/fp32, 'int8' says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from hybrid.constants import data_root
from hybrid.data.registry import REGISTRY
from hybrid.data.splits import load_split, record_id
from hybrid.runtime import Calibration

logger = logging.getLogger(__name__)

SAMPLES = 300  # NNCF's default subset size


def training_ids(folder: Optional[Path]) -> list[str]:
    """The train-split record ids of `folder`'s split.json whose registered dataset is on this machine."""
    splits = load_split(folder) if folder is not None else None
    if not splits:
        return []
    try:
        root = data_root()
    except FileNotFoundError:
        return []
    present = {name for name, info in REGISTRY.items() if (root / info.folder).is_dir()}
    return sorted(i for i in splits["train"] if i.partition(":")[0] in present)


def _records(ids: Sequence[str]) -> list:
    from hybrid.data import read_dataset

    wanted = set(ids)
    records = []
    for source in sorted({i.partition(":")[0] for i in ids}):
        records += [r for r in read_dataset(source, merge_labels=True) if record_id(r) in wanted]
    return records


def calibration_for(
    folder: Optional[Path],
    kind: str,
    image_size: int,
    to_batch: Callable[[list], np.ndarray],
    ignored: tuple[str, ...] = (),
    samples: int = SAMPLES,
) -> Optional[Calibration]:
    """The `Calibration` of the `kind` ('detector': whole photos, 'classifier': hand crops) trained in
    `folder`, or None when it has none here. `to_batch(images)` is the network's own preprocessing."""
    ids = training_ids(folder)
    if not ids:
        return None
    chosen = sorted(random.Random(0).sample(ids, min(samples, len(ids))))
    key = hashlib.sha256(json.dumps([kind, image_size, chosen]).encode()).hexdigest()[:12]

    def make() -> list[np.ndarray]:
        from hybrid.data import iter_crops

        data_logger = logging.getLogger("hybrid.data")
        level = data_logger.level
        data_logger.setLevel(logging.WARNING)  # an internal read: no "hands (voc): 954 images" lines
        try:
            records = _records(chosen)
        finally:
            data_logger.setLevel(level)
        if kind == "detector":
            return [to_batch([np.asarray(record.load())]) for record in records]
        return [to_batch([crop]) for crop, _ in iter_crops(records)][:samples]

    return Calibration(key, make, ignored)
