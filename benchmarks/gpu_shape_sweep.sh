#!/usr/bin/env bash
# Issue 3 on a GPU, in one device call: does self-distillation learn the shapes' shape once it
# gets DINO-scale training (batch 1024, ~100 epochs of the 18k training images)? On 2 CPU
# cores, 3,000 steps of batch 64 did not move shape top-1 off ~0.25 (README, "Discrete Latent
# Codes"). Two runs, DINO centring and DINOv2's Sinkhorn-Knopp; rows go to
# $OUT/sem_probe_sweep_gpu.json. About 8 minutes on one H200 (data loading bound: 14 workers).
#
#   bash benchmarks/gpu_shape_sweep.sh      (on the GPU machine, from the repository root)
set -u
LOG_NAME=gpu_shape_sweep
source benchmarks/gpu_env.sh
dlc() { python3 -c "import sys; from dlc.cli import main; sys.exit(main())" "$@"; }
dlc data --preset tiny --out /tmp/shapes/images.parquet --report /tmp/shapes/report.json \
  --preview /tmp/shapes/preview.png 2>&1 | tail -n 2 | tee -a "$LOG"
SCALE="sem.backbone.conv_stem=32 sem.train.batch_size=1024 sem.train.steps=2000
  sem.train.warmup_steps=100 sem.train.workers=14 sem.train.precision=bf16
  sem.train.checkpoint_every=500 sem.head.teacher_temp_warmup_steps=300"
for run in "centre" "sinkhorn sem.head.centering=sinkhorn"; do
  # shellcheck disable=SC2086  # the overrides are meant to split into arguments
  timeout 290 python3 benchmarks/sem_probe_sweep.py --images /tmp/shapes/images.parquet \
    --work /tmp/sweep --out "$OUT/sem_probe_sweep_gpu.json" --run $run $SCALE 2>&1 \
    | tail -n 3 | tee -a "$LOG"
done
echo "=== done ($(date +%T))" | tee -a "$LOG"
