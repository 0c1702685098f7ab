#!/usr/bin/env bash
# Issue 3 on a GPU, in one device call: how far the tiny preset's recipe (object paste, NT-Xent,
# KoLeo; DINO off) takes shape with DINO-scale training (batch 1024, ~100 epochs of the 17k
# training images), and does plain self-distillation (DINO and iBOT with local crops, no paste or
# NT-Xent, as in the earlier preset) learn shape at all at that scale? On 2 CPU cores the recipe
# gives 0.95 in ten minutes and the earlier preset ~0.25 (docs/sem_tiny_study.md). Rows go to
# $OUT/sem_probe_sweep_gpu.json. About 8 minutes on one H200 (data loading bound: 14 workers).
#
#   bash research/sem/gpu_shape_sweep.sh      (on the GPU machine, from the repository root)
set -u
LOG_NAME=gpu_shape_sweep
source benchmarks/gpu_env.sh
dlc() { python3 -c "import sys; from dlc.cli import main; sys.exit(main())" "$@"; }
dlc data --preset tiny --out /tmp/shapes/images.parquet --report /tmp/shapes/report.json \
  --preview /tmp/shapes/preview.png 2>&1 | tail -n 2 | tee -a "$LOG"
SCALE="sem.train.batch_size=1024 sem.train.steps=2000
  sem.train.warmup_steps=100 sem.train.workers=14 sem.train.precision=bf16
  sem.train.checkpoint_every=500 sem.head.teacher_temp_warmup_steps=300"
EARLIER="sem.loss.nce_weight=0 sem.crops.object_paste=0 sem.loss.dino_weight=1.0
  sem.loss.ibot_weight=1.0
  sem.crops.local_crops=2 sem.crops.global_scale=[0.5,1.0]"
for run in "recipe" "dino_ibot $EARLIER"; do
  # shellcheck disable=SC2086  # the overrides are meant to split into arguments
  timeout 290 python3 research/sem/sem_probe_sweep.py --images /tmp/shapes/images.parquet \
    --work /tmp/sweep --out "$OUT/sem_probe_sweep_gpu.json" --run $run $SCALE 2>&1 \
    | tail -n 3 | tee -a "$LOG"
done
echo "=== done ($(date +%T))" | tee -a "$LOG"
