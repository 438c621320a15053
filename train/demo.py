"""`make demo`, step 1: make sure the app has models to run.

When $HYBRID_DETECTOR / $HYBRID_CLASSIFIER name models, nothing is done. Otherwise a quick demo
profile of each model (train/configs/<kind>-demo.yaml: every Hands + Roboflow record, small images and
a small classifier, about 27 minutes for both on 2 CPU cores) is trained into models/<kind>, once; later
runs reuse it (a changed demo recipe retrains). The quick models find most hands and name most gestures
(numbers: README), far from the full recipes: for real accuracy train those (train/configs/) or point
the env vars at the published Hub models.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hybrid.hub import default_model

REPO = Path(__file__).resolve().parent.parent

MODELS = REPO / "models"  # where app.py looks when nothing else is configured
KINDS = ("classifier", "detector")
DONE = "config.json"  # both trained folders have one; written last-ish by save_pretrained


RECIPE_MARK = ".demo-recipe"  # in a demo model folder: the recipe it was trained with


def recipe(kind: str) -> Path:
    return REPO / "train" / "configs" / f"{kind}-demo.yaml"


def is_trained(folder: Path) -> bool:
    return (folder / DONE).is_file() and (folder / "model.safetensors").is_file()


def is_current(folder: Path, kind: str) -> bool:
    """A trained folder that is not a demo model of an older recipe (models you put there yourself,
    without the mark, are always kept)."""
    mark = folder / RECIPE_MARK
    return is_trained(folder) and (not mark.is_file() or mark.read_text() == recipe(kind).read_text())


def train(kind: str, models_dir: Path, env: dict[str, str]) -> None:
    """Train `kind` into a temporary folder, then move it into place, so an interrupted run leaves
    no half-written model behind."""
    output = models_dir / kind
    partial = models_dir / f".{kind}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        sys.executable,
        str(REPO / "train" / f"{kind}.py"),
        "--config",
        str(recipe(kind)),
        "--output",
        str(partial),
    ]
    print(f"demo: training the quick {kind} ({' '.join(command[1:])})", flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, env=env)
    if not is_trained(partial):
        raise SystemExit(f"demo: {kind} training finished but {partial} has no {DONE} / model.safetensors")
    (partial / RECIPE_MARK).write_text(recipe(kind).read_text())
    shutil.rmtree(output, ignore_errors=True)
    os.replace(partial, output)
    print(f"demo: {kind} trained in {time.perf_counter() - started:.0f} s -> {output}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--force", action="store_true", help="retrain even when models are cached")
    parser.add_argument("--data", default=None, help="data root (default: $HYBRID_DATA, then ../shared/data)")
    args = parser.parse_args(argv)

    models_dir = MODELS
    models_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **({"HYBRID_DATA": str(Path(args.data).resolve())} if args.data else {})}
    started = time.perf_counter()
    for kind in KINDS:
        configured = default_model(kind)  # $HYBRID_<KIND>, the Space's pin, else models/<kind>
        if configured != str(MODELS / kind):
            print(f"demo: {kind} configured: {configured}", flush=True)
        elif is_current(models_dir / kind, kind) and not args.force:
            print(f"demo: {kind} cached in {models_dir / kind} (--force to retrain)", flush=True)
        else:
            try:
                train(kind, models_dir, env)
            except subprocess.CalledProcessError as error:
                print(f"demo: {kind} training failed (exit {error.returncode}); see the output above", file=sys.stderr)
                return 1
    print(f"demo: models ready in {time.perf_counter() - started:.0f} s.", flush=True)
    if any((MODELS / kind / RECIPE_MARK).is_file() and default_model(kind) == str(MODELS / kind) for kind in KINDS):
        print(
            "demo: these are quick local demo models (minutes of CPU training), so expect mistakes; for the real "
            "ones train the full recipes in train/configs/ or set HYBRID_DETECTOR / HYBRID_CLASSIFIER to the Hub "
            "models (see README).",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
