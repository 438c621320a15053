"""Launcher: `python train/detector.py --config train/configs/detector.yaml [--flags]`.

The trainer is `hybrid.training.detector` (see its docstring, or `--help`)."""

from hybrid.training.detector import main

if __name__ == "__main__":
    raise SystemExit(main())
