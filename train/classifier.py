"""Launcher: `accelerate launch train/classifier.py --config train/configs/classifier.yaml [--flags]`.

The trainer is `hybrid.training.classifier` (see its docstring, or `--help`)."""

from hybrid.training.classifier import main

if __name__ == "__main__":
    raise SystemExit(main())
