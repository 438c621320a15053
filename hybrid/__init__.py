"""hybrid: a YOLOv8 hand detector + a ResNet-50 gesture classifier, explained and on the Hub."""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "GestureClassifier": "hybrid.classifier",
    "Prediction": "hybrid.classifier",
    "HandDetector": "hybrid.detector",
    "Detection": "hybrid.detector",
    "HybridPipeline": "hybrid.pipeline",
    "Hand": "hybrid.pipeline",
    "HandTracker": "hybrid.video",
    "TrackedHand": "hybrid.video",
    "FrameResult": "hybrid.video",
    "VideoError": "hybrid.video",
    "track_video": "hybrid.video",
}


def __getattr__(name: str):
    # Heavy imports (torch, ultralytics) only when a model class is actually used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hybrid' has no attribute {name!r}")


__all__ = list(_LAZY)
