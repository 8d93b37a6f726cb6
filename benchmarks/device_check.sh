#!/usr/bin/env bash
# Everything a lent GPU should show, in one call of at most 9 minutes on one H100/H200, with one
# summary at the end:
#   1. the CUDA tests (python -m pytest -m cuda): no host sync inside real training steps
#      (torch.cuda.set_sync_debug_mode("error")), augmentation on CUDA equal to the CPU's, kill-and-resume
#      on CUDA ending with the weights of an uninterrupted run;
#   2. benchmarks/gpu_epoch.py: seconds per epoch, images/s, TFLOP/s against the bf16 peak, compile off and on;
#   3. experiment=spectral_cifar10 for --epochs epochs on the real CIFAR-10: probe and kNN beside the paper's
#      figure at the nearest epoch count.
#
# Before the device call, here (the CIFAR-10 folder beside the checkout does not travel; 57 MB packed does):
#   python benchmarks/cifar_pack.py pack ../shared/data/cifar10-jpeg .device/cifar10-jpeg.npz
#   (and hydra-core, omegaconf, antlr4-python3-runtime as wheels in .whl/ if the machine lacks them)
# On the device, one call:   bash benchmarks/device_check.sh [--epochs N] [--pack .device/cifar10-jpeg.npz]
#   (carry .device, and .whl if used). Without --epochs, N is as many epochs as fit the time left after
#   steps 1-2, from step 2's seconds per epoch (spectral, compile off: how step 3 trains).
# The CPU smoke run (the tests run it):  bash benchmarks/device_check.sh --device cpu --smoke --data DIR
# What comes back, in $OUT (the device tool's folder: at most 8 files) or a fresh temporary folder: the three
# steps' logs, step 3's report.json, report.md, loss.png and spectrum.png, and summary.txt. The run itself
# (its checkpoints: about 110 MB each) stays in a temporary folder on the machine.
set -u
DEVICE=cuda SMOKE=0 EPOCHS="" PACK=.device/cifar10-jpeg.npz DATA="" BUDGET=540
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --pack) PACK=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    *) echo "usage: $0 [--device cuda|cpu] [--smoke] [--epochs N] [--pack FILE.npz | --data IMAGE_FOLDER] [--budget S]" >&2
       exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
OUTDIR=${OUT:-$(mktemp -d)}
mkdir -p "$OUTDIR"
START=$(date +%s)
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

# --- the code and its dependencies, without an install (nothing can be fetched on the device)
if ! $PY -c "import hydra, omegaconf" 2>/dev/null && [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/specrep-site .whl/*.whl
  export PYTHONPATH=/tmp/specrep-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
if ! $PY -c "import specrep_cli.conf" 2>/dev/null; then
  ln -sfn ../conf specrep_cli/conf   # the package's configs, as `pip install` maps them
fi

declare -A RC SECONDS_TAKEN
run_step() {   # run_step NAME LIMIT_S COMMAND...: its output in $OUTDIR/NAME.log
  local name=$1 limit=$2; shift 2
  local t0; t0=$(date +%s)
  echo "== $name (at most ${limit} s): $*"
  timeout "$limit" "$@" > "$OUTDIR/$name.log" 2>&1
  RC[$name]=$?
  SECONDS_TAKEN[$name]=$(( $(date +%s) - t0 ))
  tail -n 25 "$OUTDIR/$name.log"
}
left() { echo $(( BUDGET - ($(date +%s) - START) - 20 )); }   # 20 s kept for the summary

# --- 1. the CUDA tests
run_step cuda_tests 150 $PY -m pytest -q -m cuda -p no:cacheprovider tests/

# --- 2. one epoch on the GPU, compile off and on
if [ "$SMOKE" = 1 ]; then
  EPOCH_ARGS=(--device "$DEVICE" --max-steps 1 --batch-size 32 --compile off --data random)
else
  EPOCH_ARGS=(--device "$DEVICE")
fi
if [ -z "$DATA" ] && [ -f "$PACK" ]; then
  DATA=/tmp/specrep-cifar10-jpeg
  [ -d "$DATA/train" ] || $PY benchmarks/cifar_pack.py unpack "$PACK" "$DATA"
fi
[ -n "$DATA" ] && export SPECREP_CIFAR_JPEG=$DATA
run_step gpu_epoch 200 $PY benchmarks/gpu_epoch.py "${EPOCH_ARGS[@]}"

# --- 3. HaoChen et al.'s recipe on the real CIFAR-10
fit_epochs() {   # epochs that fit in $1 s at step 2's spectral, compile-off seconds per epoch; 20 if unmeasured
  local per; per=$(sed -n 's/^measured, spectral, compile off: \([0-9.]*\) s per epoch.*/\1/p' "$OUTDIR/gpu_epoch.log")
  # 90 s of start-up, decoding and features; the standard probe's 100 epochs of one augmented forward
  # pass cost about 17 training epochs (two views, forward and backward: 6 such passes); 20 % kept spare
  $PY -c "import sys; left, p = int(sys.argv[1]), float(sys.argv[2] or 0)
print(max(1, min(800, int(0.8 * (left - 90) / p) - 17)) if p else 20)" "$1" "$per"
}
LIMIT=$(left)
if [ -n "$DATA" ] && [ "$LIMIT" -lt 60 ]; then
  echo "== spectral_cifar10: skipped (${LIMIT} s left of --budget $BUDGET)"
  RC[spectral_cifar10]=skipped
elif [ -n "$DATA" ]; then
  [ -n "$EPOCHS" ] || { EPOCHS=$(fit_epochs "$LIMIT"); echo "== spectral_cifar10: $EPOCHS epochs fit in $LIMIT s"; }
  RUN=$(mktemp -d)/spectral_cifar10
  TRAIN=(experiment=spectral_cifar10 dataset=imagefolder "dataset.root=$DATA" "trainer.epochs=$EPOCHS"
         "trainer.device=$DEVICE" "hydra.run.dir=$RUN")
  if [ "$SMOKE" = 1 ]; then
    TRAIN+=(dataset.subset=64 trainer.batch_size=16 encoder.width=4 encoder.projector_hidden_dim=16
            encoder.projector_out_dim=8 eval.probe.standard.epochs=1 eval.probe.standard.batch_size=16 eval.batch_size=64
            eval.ritz_pairs=64)
  fi
  run_step spectral_cifar10 "$LIMIT" $PY -m specrep_cli train "${TRAIN[@]}"
  for f in report.json report.md plots/loss.png plots/spectrum.png; do   # flat, beside the logs
    [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUTDIR/spectral_cifar10_$(basename "$f")"
  done
else
  echo "== spectral_cifar10: skipped (no --data folder and no $PACK: see the header)"
  RC[spectral_cifar10]=skipped
fi

# --- the summary
echo
echo "==================== device check summary ===================="
{
$PY - "$OUTDIR" "${EPOCHS:-0}" <<'EOF'
import json, re, sys, torch
from pathlib import Path
out, epochs = Path(sys.argv[1]), int(sys.argv[2])
print(f"device: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}, torch {torch.__version__}")
def tail(name, pattern):
    log = out / f"{name}.log"
    lines = log.read_text().splitlines() if log.is_file() else []
    return [l for l in lines if re.search(pattern, l)]
print("cuda tests:", (tail("cuda_tests", r"passed|failed|skipped|error") or ["no result"])[-1])
for line in tail("gpu_epoch", r"^measured|^verdict|^bf16 dense peak|^data:"):
    print("gpu_epoch:", line)
report = out / "spectral_cifar10_report.json"
if report.is_file():
    r = json.loads(report.read_text())
    paper = {200: 88.66, 400: 90.17, 800: 92.07}   # HaoChen et al. 2021, Table 1 (CIFAR-10, ResNet-18)
    near = min(paper, key=lambda e: abs(e - epochs))
    t = r.get("timing", {})
    print(f"spectral_cifar10, {epochs} epochs: probe top-1 {r['linear_probe']['top1']:.2f} % "
          f"({r['linear_probe']['protocol']}), kNN top-1 {r['knn']['top1']:.2f} %; the paper at {near} epochs: "
          f"{paper[near]} %; train {t.get('train_seconds', 0):.0f} s "
          f"({t.get('train_seconds', 0) / max(epochs, 1):.2f} s/epoch), eval {t.get('eval_seconds', 0):.0f} s")
else:
    print("spectral_cifar10: no report")
EOF
for name in cuda_tests gpu_epoch spectral_cifar10; do
  echo "step $name: exit ${RC[$name]:-not run}, ${SECONDS_TAKEN[$name]:-0} s"
done
echo "total: $(( $(date +%s) - START )) s; logs in $OUTDIR"
} | tee "$OUTDIR/summary.txt"
for name in cuda_tests gpu_epoch spectral_cifar10; do
  case "${RC[$name]:-1}" in 0|skipped) ;; *) exit 1 ;; esac
done
