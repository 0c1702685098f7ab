#!/usr/bin/env bash
# Every GPU measurement the open issues ask for, in one device call (the device tool's $OUT
# receives the JSON files and the log). Each check has its own time limit and a failure does
# not stop the others. diffusers is not on the device image: carry it as wheels in .whl/.
#
#   bash benchmarks/gpu_checks.sh      (on the GPU machine, from the repository root)
set -u
LOG_NAME=gpu_checks
source benchmarks/gpu_env.sh
run() {  # run <seconds> <script>: one benchmark, its output appended to the log
  echo "=== $2 ($(date +%T))" | tee -a "$LOG"
  timeout "$1" python3 "$2" 2>&1 | tail -n 60 | tee -a "$LOG"
}
run 150 benchmarks/vae.py
run 150 benchmarks/sem_extract.py
cp benchmarks/results/sem_extract_cuda.json "$OUT/" 2>/dev/null
run 330 benchmarks/dit.py
run 150 benchmarks/metrics.py
run 240 benchmarks/sedd_gpu.py    # SEDD-medium: 1,024 sampling steps of a batch of 256
# The imagenet preset's DAG at micro size on the card (CUDA paths: bf16 autocast, fused AdamW,
# torch.compile); needs snakemake, dvc and submitit, carried as wheels in .whl/ like diffusers.
echo "=== micro imagenet DAG ($(date +%T))" | tee -a "$LOG"
timeout 300 python3 -m pytest -q -x tests/test_imagenet_micro.py -k end_to_end \
  --basetemp=/tmp/imagenet-micro 2>&1 | tail -n 40 | tee -a "$LOG"
echo "=== done ($(date +%T))" | tee -a "$LOG"
