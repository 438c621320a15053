"""Session fixtures: tiny models trained once on real data, shared by pipeline, hub and app tests.

`trained_classifier` is filled in by the classifier work, `trained_detector` by the detector work.
"""
from __future__ import annotations
