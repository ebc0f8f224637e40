#!/usr/bin/env bash
# A GPU trip for the figures RESULTS.md quotes from a GPU: the CamVid recipe's val mIoU
# per model, training throughput and the GPU runtime table, a 600 s device call each.
#
#   ../shared/gpu/pack.sh                                   # here, once: wheels + CamVid JPEGs
#   run(command="bash bench/gpu_session.sh $OUT", carry=[".gpu"], timeout_s=600)
#   run(command="STAGES=throughput bash bench/gpu_session.sh $OUT", carry=[".gpu"], ...)
#   run(command="STAGES=runtimes RT_MODELS='deeplabv3plus fcn' bash bench/gpu_session.sh $OUT", ...)
#
# Stages (STAGES, default "accuracy") run one after another, so no timing shares the GPU
# with another stage; the accuracy runs (MODELS) train in parallel and share it with each
# other: each gets the same wall-clock budget (ACC_MINUTES, Lightning max_time), and its
# images/s is per model while all train. Each stage has a time limit and a failed stage
# does not stop the next. The default call trains DeepLabV3+ and ERFNet through the
# recipe's 200 epochs (about 200 images/s each while sharing one H200: ~6 of the 7
# minutes) and fits 600 s: environment 40 s + ACC_MINUTES + ~45 s. Measured on one H200
# (2026-11-28, torch 2.11): throughput 80 s per variant (compiled: more), the runtimes
# stage's 170 s covered U-Net (two shapes: 60 training steps, eager, channels_last, CUDA
# graphs, 17 s of torch.compile per shape) and not the next model.
#
# Results land in <out>: session.log, results.tgz (bench/out/*.json + each run's
# metrics.json, config and log) and best.pt.tgz.part-* (the best weights without optimizer
# state, for the CPU INT8 benchmark: cat best.pt.tgz.part-* | tar xz).
#
# Knobs (environment): EPOCHS (200), MODELS ("deeplabv3plus erfnet"),
# ACC_MINUTES (7), RT_MODELS ("unet deeplabv3plus fcn pspnet"), the stage limits
# T_THROUGHPUT (110 s per variant), T_ACCURACY (ACC_MINUTES + 100 s), T_RUNTIMES (150 s),
# extra arguments per stage TP_ARGS (--gpu --steps 100 --warmup 20), ACC_ARGS (--full),
# RT_ARGS, and the throughput variants TP_VARIANTS ("name|arguments;..."; default: batch 16
# with trainer=gpu's 8 workers, batch 32 with 14 workers, and that with the training forward
# compiled), each its own process and bench/out/throughput_gpu_<name>.json.
# A CPU rehearsal of the whole trip (about 3 minutes on 2 cores):
#   SEGBENCH_CAMVID=../shared/datasets/camvid PY=.venv/bin/python \
#   TP_ARGS="--steps 2 --warmup 1" TP_VARIANTS="b2|--batch 2;b2compiled|--batch 2 \
#   callbacks.compile.enabled=true" \
#   ACC_ARGS="--crop 64 96 --batch 2 trainer.limit_train_batches=2" \
#   RT_ARGS="--device cpu --train-steps 2 --runs 2 --shapes 1x64x96 --val-batches 1" \
#   STAGES="throughput accuracy runtimes" EPOCHS=1 MODELS="erfnet unet" RT_MODELS=unet \
#   bash bench/gpu_session.sh /tmp/rehearsal
set -u
OUT_DIR=${1:?usage: bash bench/gpu_session.sh <out dir>}
mkdir -p "$OUT_DIR"
exec > >(tee "$OUT_DIR/session.log") 2>&1
EPOCHS=${EPOCHS:-200}
MODELS=${MODELS:-"deeplabv3plus erfnet"}
ACC_MINUTES=${ACC_MINUTES:-7}
RT_MODELS=${RT_MODELS:-"unet deeplabv3plus fcn pspnet"}
STAGES=${STAGES:-"accuracy"}
T_THROUGHPUT=${T_THROUGHPUT:-110}
TP_VARIANTS=${TP_VARIANTS:-"b16|;b32w14|--batch 32 --workers 14;b32w14compiled|--batch 32 --workers 14 callbacks.compile.enabled=true"}
# max_time stops a run; the last validation, checkpoint and metrics.json take ~40 s more.
T_ACCURACY=${T_ACCURACY:-$((ACC_MINUTES * 60 + 100))}
T_RUNTIMES=${T_RUNTIMES:-150}
TP_ARGS=${TP_ARGS:---gpu --steps 100 --warmup 20}
ACC_ARGS=${ACC_ARGS:---full}
RT_ARGS=${RT_ARGS:-}
PY=${PY:-python3}
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }

stamp "environment"
if [ -z "${SEGBENCH_CAMVID:-}" ] && [ -f .gpu/env.sh ]; then  # on the GPU machine
  # shellcheck disable=SC1091
  source .gpu/env.sh || { echo "installing .gpu/whl failed"; exit 1; }
fi
DATA=${SEGBENCH_CAMVID:?set SEGBENCH_CAMVID (source .gpu/env.sh)}
nproc
$PY -c "import segbench.models, hydra, segmentation_models_pytorch, albumentations" || exit 1

stage() { [[ " $STAGES " == *" $1 "* ]]; }

if stage throughput; then
IFS=';' read -ra variants <<< "$TP_VARIANTS"
for variant in "${variants[@]}"; do
  name=${variant%%|*}
  stamp "throughput $name (U-Net / MobileNetV2, 360x480, trainer=gpu): ${variant#*|}"
  # shellcheck disable=SC2086
  timeout "$T_THROUGHPUT" $PY -m bench.throughput $TP_ARGS ${variant#*|} --data-root "$DATA" \
    --out "bench/out/throughput_gpu_$name.json" || echo "throughput $name: exit $?"
done
fi

if stage accuracy; then
stamp "accuracy: $MODELS in parallel, $EPOCHS epochs, guard $ACC_MINUTES min"
n=$(echo "$MODELS" | wc -w)
workers=$(( ($(nproc) - n) / n )); [ "$workers" -lt 2 ] && workers=2
pids=()
for m in $MODELS; do
  # shellcheck disable=SC2086
  timeout "$T_ACCURACY" $PY -m bench.accuracy $ACC_ARGS --models "$m" --epochs "$EPOCHS" \
    --max-minutes "$ACC_MINUTES" --workers "$workers" --data-root "$DATA" \
    --out "accuracy_gpu_$m" > "bench/out/accuracy_gpu_$m.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"  # not a bare wait: that would also wait for the log's tee
pkill -f "train.py" && sleep 2  # a run its time limit cut: nothing else may share the timings
for m in $MODELS; do grep -E "^$m: |Error|error:" "bench/out/accuracy_gpu_$m.log" | tail -3; done
fi

if stage runtimes; then
stamp "GPU runtimes: $RT_MODELS"
# shellcheck disable=SC2086
timeout "$T_RUNTIMES" $PY -m bench.gpu_runtimes --models $RT_MODELS --train-steps 60 \
  --runs 20 --data-root "$DATA" --out "bench/out/gpu_runtimes_${RT_MODELS// /_}.json" $RT_ARGS || echo "gpu_runtimes: exit $?"
fi

stamp "packing results"
$PY - <<'PY'
# Best weights without optimizer state: what the CPU INT8 benchmark needs, at a third the size.
import glob, torch
for path in glob.glob("bench/out/accuracy_gpu_*/*/checkpoints/best.ckpt"):
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    keep = {k: ckpt[k] for k in ("state_dict", "hyper_parameters", "epoch", "global_step") if k in ckpt}
    torch.save(keep, path.replace("best.ckpt", "best.pt"))
PY
tar czf "$OUT_DIR/results.tgz" bench/out/*.json bench/out/*.md bench/out/accuracy_gpu_*.log \
  bench/out/accuracy_gpu_*/*/{metrics.json,config.yaml,train.log,status.json} 2>/dev/null
tar czf - bench/out/accuracy_gpu_*/*/checkpoints/best.pt 2>/dev/null \
  | split -b 15M - "$OUT_DIR/best.pt.tgz.part-"
ls -la "$OUT_DIR"
stamp "done"
