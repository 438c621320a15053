#!/usr/bin/env bash
# Finger-count classifier recipes on one lent GPU, side by side (batch-32 ResNet-50 leaves an H100/H200
# mostly idle), inside a time budget; then a table, and the best run by validation accuracy packed to bring home.
#
#   HYBRID_DATA=<copy made by bench/shrink_data.py> bench/gpu_fingers.sh WORK_DIR PACK_DIR [EPOCHS] [BUDGET_S]
#
# WORK_DIR/<run>/ are the usual training output folders, WORK_DIR/<run>.log their logs. PACK_DIR gets
# results.tar.gz (every run's metrics, card, confusion matrix, hyper-parameter events, log) and the best run's weights in fp16,
# cut in four parts (model.fp16.safetensors.part0..3: `cat` them back together). $GPU_EXTRA is appended to
# every training command (a smoke run on a CPU: GPU_EXTRA="--limit 40 --image-size 48 --num-workers 0").
set -u
work=${1:?usage: gpu_fingers.sh WORK_DIR PACK_DIR [EPOCHS] [BUDGET_S]}
pack=${2:?usage: gpu_fingers.sh WORK_DIR PACK_DIR [EPOCHS] [BUDGET_S]}
epochs=${3:-70}
deadline=${4:-450}
mkdir -p "$work" "$pack"

train() {  # train NAME ARGS...: one run, killed at the deadline (its checkpoints/best stays)
  local name=$1; shift
  local left=$((deadline - SECONDS))
  if ((left < 20)); then echo "$name: skipped, no time left"; return 1; fi
  timeout "$left" python3 train/classifier.py --num-workers 4 --output "$work/$name" "$@" ${GPU_EXTRA:-} \
    >"$work/$name.log" 2>&1
  local code=$?
  echo "$name: exit $code at ${SECONDS}s"
  return $code
}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"
# 1. seconds per epoch, fp32 vs bf16, alone on the GPU: 600 records of the finger-count crops at 224 px
for precision in no bf16; do
  train "speed-$precision" --config train/configs/classifier.yaml --limit 600 --epochs 3 --mixed-precision "$precision"
done
# 2. from our digits model (trained first, at 160 px), with and without RandAugment; from scratch with it
fingers=(--config train/configs/classifier-fingers-sld.yaml --image-size 224 --epochs "$epochs")
{ train sld --config train/configs/classifier-sign-digits.yaml --image-size 160 --epochs 30 --scheduler cosine &&
  { train fingers-sld "${fingers[@]}" --pretrained "$work/sld" &
    train fingers-sld-ra "${fingers[@]}" --pretrained "$work/sld" --augment randaugment &
    wait; }; } &
train fingers-ra --config train/configs/classifier.yaml --epochs "$epochs" --scheduler cosine --crop-scale 0.5,1 \
  --augment randaugment &
wait

python3 - "$work" "$pack" <<'EOF'
import json, sys, tarfile
from pathlib import Path

from safetensors.torch import load_file, save

work, pack = Path(sys.argv[1]), Path(sys.argv[2])


def summary(run: Path):
    """(val, train, test, epochs run, s/epoch, finished) from metrics.json, else from the last checkpoint."""
    if (run / "metrics.json").is_file():
        m = json.loads((run / "metrics.json").read_text())
        return (m["val_accuracy"], m["train_accuracy"], m["test_accuracy"], m["epochs_run"],
                m["timing"]["seconds_per_epoch_mean"], True)
    states = sorted((run / "checkpoints").glob("epoch_*/trainer_state.json"))
    if not states:
        return None
    s = json.loads(states[-1].read_text())
    return (s["best_val_acc"], s["history"][-1]["train_acc"], None, s["epoch"],
            sum(h["seconds"] for h in s["history"]) / len(s["history"]), False)


rows = {run.name: summary(run) for run in sorted(work.iterdir()) if run.is_dir()}
pct = lambda v: "-" if v is None else f"{100 * v:.1f}"
print(f"{'run':<16} {'val':>6} {'train':>6} {'test':>6} {'epochs':>6} {'s/epoch':>8}  finished")
for name, row in rows.items():
    if row:
        print(f"{name:<16} {pct(row[0]):>6} {pct(row[1]):>6} {pct(row[2]):>6} {row[3]:>6} {row[4]:>8.2f}  {row[5]}")
for name in ("speed-no", "speed-bf16"):
    if (work / name / "metrics.json").is_file():
        m = json.loads((work / name / "metrics.json").read_text())
        last = m["history"][-1]["seconds"]
        print(f"{name}: {last:.2f} s for the last epoch of {m['split_sizes']['train']} crops "
              f"({m['split_sizes']['train'] / last:.0f} crops/s), {m['timing']['device']}")

candidates = {n: r for n, r in rows.items() if r and n.startswith("fingers")}
if candidates:
    best = max(candidates, key=lambda n: candidates[n][0])
    folder = work / best if candidates[best][5] else work / best / "checkpoints" / "best"
    print(f"packed: {best} ({folder})")
    state = {k: v.half() if v.is_floating_point() else v for k, v in load_file(folder / "model.safetensors").items()}
    blob = save(state)
    part = -(-len(blob) // 4)
    for i in range(4):
        (pack / f"model.fp16.safetensors.part{i}").write_bytes(blob[i * part:(i + 1) * part])
    (pack / "packed.txt").write_text(f"{best}\n{folder}\n")
KEEP = {"metrics.json", "README.md", "config.json", "confusion_matrix.png"}  # TensorBoard's image grids: too big
with tarfile.open(pack / "results.tar.gz", "w:gz") as tar:
    for path in sorted(work.rglob("*")):
        if path.is_file() and "checkpoints" not in path.parts and (
                path.name in KEEP or path.suffix == ".log" or path.parent.name == "hparams"):
            tar.add(path, arcname=str(path.relative_to(work)))
EOF
