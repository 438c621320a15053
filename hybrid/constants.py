"""Every `HYBRID_*` environment variable, and where the project's folders are: one place.

    HYBRID_DATA        the data root (registered datasets live in <root>/<folder>)
    HYBRID_CLASSIFIER  the classifier to load by default (Hub id[@revision] or folder)
    HYBRID_DETECTOR    the detector to load by default
    HYBRID_CACHE       compiled networks (default: $XDG_CACHE_HOME/hybrid, else ~/.cache/hybrid)
    HYBRID_ONNX_KEEP   ONNX exports kept in that cache per kind (classifier, detector), newest first (default 3)
    HYBRID_WEIGHTS     pretrained weights to start training from where the Hub is out of reach (default
                       ../shared/weights next to the project root, when it exists): yolov8n-coco.pt

Variables are read when asked for (not at import), so a test or a launcher may set them late.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

ENV_DATA = "HYBRID_DATA"
ENV_CACHE = "HYBRID_CACHE"
ENV_ONNX_KEEP = "HYBRID_ONNX_KEEP"
ENV_WEIGHTS = "HYBRID_WEIGHTS"
ONNX_KEEP_DEFAULT = 3
KINDS = ("classifier", "detector")

# The only place that knows where the package sits: a source tree (a checkout, or a Space, which holds app.py
# next to hybrid/) is the project root; an installed package has none, so the working directory stands in.
_SOURCE_TREE = Path(__file__).resolve().parents[1]


def project_root() -> Path:
    """The checkout (or Space) holding this package; for an installed package, the working directory.
    `hybrid_space.json`, `models/<kind>` and the Space's files are looked up here."""
    if any((_SOURCE_TREE / name).is_file() for name in ("pyproject.toml", "app.py")):
        return _SOURCE_TREE
    return Path.cwd()


def data_root() -> Path:
    """$HYBRID_DATA, else ../shared/data next to the project root when that folder exists.
    Neither -> FileNotFoundError saying to set HYBRID_DATA."""
    if os.environ.get(ENV_DATA):
        return Path(os.environ[ENV_DATA]).expanduser()
    shared = project_root().parent / "shared" / "data"
    if shared.is_dir():
        return shared
    raise FileNotFoundError(
        f"no data root: {ENV_DATA} is not set and {shared} does not exist; "
        f"set {ENV_DATA} to the folder that holds the datasets"
    )


def weights_root() -> Optional[Path]:
    """$HYBRID_WEIGHTS, else ../shared/weights next to the project root when that folder exists, else None (then
    the detector's `pretrained: auto` trains from scratch where Ultralytics cannot fetch its own weights)."""
    if os.environ.get(ENV_WEIGHTS):
        return Path(os.environ[ENV_WEIGHTS]).expanduser()
    shared = project_root().parent / "shared" / "weights"
    return shared if shared.is_dir() else None


def model_env(kind: str) -> Optional[str]:
    """$HYBRID_CLASSIFIER / $HYBRID_DETECTOR when set (and not empty), else None."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return os.environ.get(f"HYBRID_{kind.upper()}") or None


def cache_dir() -> Path:
    """Where compiled networks are cached: $HYBRID_CACHE, else $XDG_CACHE_HOME/hybrid, else ~/.cache/hybrid."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hybrid"


def onnx_keep() -> int:
    """How many ONNX exports of each kind the cache keeps: $HYBRID_ONNX_KEEP (an integer >= 1), else 3.
    Anything else -> ValueError naming the variable."""
    value = os.environ.get(ENV_ONNX_KEEP, "").strip()
    if not value:
        return ONNX_KEEP_DEFAULT
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{ENV_ONNX_KEEP}: expected an integer >= 1, got {value!r}")
    return int(value)
