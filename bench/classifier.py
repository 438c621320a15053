"""Classifier benchmarks: full recipes and fp32-vs-bf16 seconds per epoch; prints tables.

    python bench/classifier.py sld          # Sign Language Digits, default recipe from scratch (50 epochs)
    python bench/classifier.py fingers      # Hands + Roboflow finger-count crops (labels 0..5)
    python bench/classifier.py fingers-sld  # the same, starting from the Sign Language Digits model (run sld first)
    python bench/classifier.py speed        # seconds per epoch, fp32 vs bf16, on this machine
    python bench/classifier.py report       # tables from finished (or running) outputs, trains nothing
    python bench/classifier.py score DIR    # re-score a trained folder on its recipe's splits from this machine's data

Each training run writes to outputs/bench/<name>/ (gitignored) and logs to outputs/bench/<name>.log;
extra arguments after `--` go to train/classifier.py (e.g. `-- --epochs 10`). Runs that hold a checkpoint
are resumed. The machine, threads and load average are printed with every table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from machine_info import machine

from hybrid.training.classifier import load_splits
from hybrid.training.recipe import ClassifierRecipe, from_dict

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "train" / "classifier.py"
CONFIGS = REPO / "train" / "configs"
OUT = REPO / "outputs" / "bench"

# name -> (recipe, reference train/val/test accuracy (None: not reported), target test accuracy)
RUNS = {
    "sld": (CONFIGS / "classifier-sign-digits.yaml", {"train": 0.983, "val": 0.956, "test": None}, 0.98),
    "fingers": (CONFIGS / "classifier.yaml", {"train": None, "val": None, "test": None}, 0.97),
    "fingers-sld": (CONFIGS / "classifier-fingers-sld.yaml", {"train": None, "val": None, "test": None}, 0.97),
}
SPEED_ARGS = [
    "--data",
    "sign-digits",
    "--limit",
    "480",
    "--image-size",
    "112",
    "--epochs",
    "2",
    "--split",
    "0.8,0.1,0.1",
]


def run(name: str, recipe: Path, extra: list[str], output: Path) -> int:
    output.parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, str(TRAIN), "--config", str(recipe), "--output", str(output), *extra]
    if (output / "checkpoints").is_dir() and not (output / "metrics.json").is_file():
        args.append("--resume")
    log = output.parent / f"{name}.log"
    print(f"$ {' '.join(args)}\n  log: {log}", flush=True)
    with log.open("a") as handle:
        return subprocess.run(args, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT).returncode


def fmt(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def accuracy_table(names: list[str]) -> None:
    print(machine())
    print(
        f"{'run':<12} {'status':<14} {'epochs':>7} {'train':>7} {'val':>7} {'test':>7}   "
        f"{'reference (train/val)':<22} {'target test':>11} {'s/epoch':>8}"
    )
    for name in names:
        recipe, reference, target = RUNS[name]
        output = OUT / name
        metrics_path = output / "metrics.json"
        if metrics_path.is_file():
            m = json.loads(metrics_path.read_text())
            status = "done" + (" (met)" if (m["test_accuracy"] or 0) >= target else " (missed)")
            row = (
                m["epochs_run"],
                m["train_accuracy"],
                m["val_accuracy"],
                m["test_accuracy"],
                m["timing"]["seconds_per_epoch_mean"],
            )
        else:
            states = sorted((output / "checkpoints").glob("epoch_*/trainer_state.json"))
            if not states:
                print(f"{name:<12} {'not started':<14}")
                continue
            state = json.loads(states[-1].read_text())
            last = state["history"][-1]
            status = "running/partial"
            row = (
                state["epoch"],
                last["train_acc"],
                last["val_acc"],
                None,
                sum(h["seconds"] for h in state["history"]) / len(state["history"]),
            )
        ref = f"{fmt(reference['train'])} / {fmt(reference['val'])}"
        print(
            f"{name:<12} {status:<14} {row[0]:>7} {fmt(row[1]):>7} {fmt(row[2]):>7} {fmt(row[3]):>7}   {ref:<22} "
            f"{fmt(target):>11} {row[4]:>8.1f}"
        )
    print(
        "(train = best epoch re-evaluated without augmentation when done; last epoch's running accuracy while partial)"
    )


def speed(extra: list[str]) -> None:
    """Same data and model, fp32 then bf16; seconds of the last epoch (the first warms up)."""
    results = {}
    for precision in ("no", "bf16"):
        output = OUT / f"speed-{precision}"
        if (output / "metrics.json").is_file() and not extra:
            pass  # reuse a finished measurement
        else:
            import shutil

            shutil.rmtree(output, ignore_errors=True)
            code = run(
                f"speed-{precision}",
                CONFIGS / "classifier-sign-digits.yaml",
                [*SPEED_ARGS, "--mixed-precision", precision, *extra],
                output,
            )
            if code:
                raise SystemExit(f"speed run {precision} failed; see {OUT}/speed-{precision}.log")
        m = json.loads((output / "metrics.json").read_text())
        last = m["history"][-1]
        results[precision] = (last["seconds"], last.get("cpu_seconds", float("nan")), m["split_sizes"]["train"])
    print(machine())
    print(
        f"resnet50, {results['no'][2]} Sign Language Digits images per epoch at 112 px, batch 32, 1 process; "
        "last of 2 epochs"
    )
    print("wall s/epoch depends on what else runs; CPU s/epoch (all threads of the process) much less so")
    print(f"{'precision':<10} {'wall s/epoch':>13} {'CPU s/epoch':>12} {'img/CPU-s':>10}")
    for precision, (seconds, cpu, images) in results.items():
        print(f"{'fp32' if precision == 'no' else precision:<10} {seconds:>13.1f} {cpu:>12.1f} {images / cpu:>10.2f}")
    print(
        f"bf16 speed-up: {results['no'][0] / results['bf16'][0]:.2f}x wall, "
        f"{results['no'][1] / results['bf16'][1]:.2f}x CPU time"
    )


def folder_splits(folder: Path, recipe: ClassifierRecipe) -> dict[str, list]:
    """The records of each split as the folder's split.json lists them (a folder trained before split.json
    existed: the recipe's split rebuilt)."""
    from hybrid.data import read_dataset
    from hybrid.data.splits import load_split, record_id

    splits = load_split(folder)
    if splits is None:
        return load_splits(recipe)
    records = [
        r
        for source in recipe.data
        for r in read_dataset(source, format=recipe.format, merge_labels=recipe.merge_labels)
    ]
    return {name: [r for r in records if record_id(r) in ids] for name, ids in splits.items()}


def score(folder: Path, precision: str) -> None:
    """Accuracy of a trained folder on its own recipe's splits, per split and per source, with the crops cut
    from this machine's data root: e.g. a model trained on a GPU from a bench/shrink_data.py copy."""
    from hybrid import GestureClassifier
    from hybrid.data.writers import iter_crops

    recipe = from_dict(ClassifierRecipe, json.loads((folder / "metrics.json").read_text())["recipe"])
    clf = GestureClassifier.from_pretrained(folder, device="cpu", precision=precision)
    print(machine())
    print(
        f"{folder}: {recipe.model} {recipe.image_size} px, {clf.precision}; data {recipe.data} (seed {recipe.seed}, "
        f"split {recipe.split}; "
        f"{'split.json' if (folder / 'split.json').is_file() else 'split rebuilt from the recipe'})"
    )
    print(f"{'split':<6} {'source':<12} {'crops':>6} {'accuracy':>9}")
    for split, records in folder_splits(folder, recipe).items():
        hits = total = 0
        for source in sorted({r.source for r in records}):
            crops = list(iter_crops([r for r in records if r.source == source], None, False))
            right = 0
            for start in range(0, len(crops), 64):
                chunk = crops[start : start + 64]
                preds = clf.predict([crop for crop, _ in chunk], top_k=1)
                right += sum(p[0].label == label for p, (_, label) in zip(preds, chunk))
            print(f"{split:<6} {source:<12} {len(crops):>6} {right / len(crops):>9.3f}")
            hits, total = hits + right, total + len(crops)
        print(f"{split:<6} {'all':<12} {total:>6} {hits / total:>9.3f}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("what", choices=[*RUNS, "speed", "report", "all", "score"])
    parser.add_argument("folder", nargs="?", type=Path, help="score: a trained classifier folder")
    parser.add_argument("--precision", default="fp32", help="score: fp32 | bf16 | auto")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.what == "score":
        if args.folder is None or not (args.folder / "metrics.json").is_file():
            raise SystemExit("score: give a trained classifier folder (one with metrics.json)")
        score(args.folder, args.precision)
        return 0
    if args.what in (*RUNS, "all"):
        for name in list(RUNS) if args.what == "all" else [args.what]:  # sld first: fingers-sld starts from it
            if run(name, RUNS[name][0], extra, OUT / name):
                print(f"{name}: training failed, see {OUT / (name + '.log')}")
    if args.what in ("speed", "all"):
        speed(extra)
    if args.what != "speed":
        accuracy_table(list(RUNS) if args.what in ("report", "all") else [args.what])
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
