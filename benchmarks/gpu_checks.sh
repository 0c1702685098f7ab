#!/usr/bin/env bash
# Every GPU measurement the open issues ask for, in one device call (the device tool's $OUT
# receives the JSON files and the log). Each check has its own time limit and a failure does
# not stop the others. diffusers is not on the device image: carry it as wheels in .whl/.
#
#   bash benchmarks/gpu_checks.sh      (on the GPU machine, from the repository root)
set -u
OUT=${OUT:-benchmarks/results}
LOG=$OUT/gpu_checks.log
export PYTHONUNBUFFERED=1 PYTHONPATH=src
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=src:/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$LOG"
python3 -c "import torch; print('torch', torch.__version__)" 2>&1 | tee -a "$LOG"
run() {  # run <seconds> <script>: one benchmark, its output appended to the log
  echo "=== $2 ($(date +%T))" | tee -a "$LOG"
  timeout "$1" python3 "$2" 2>&1 | tail -n 60 | tee -a "$LOG"
}
run 150 benchmarks/vae.py
run 150 benchmarks/sem_extract.py
cp benchmarks/results/sem_extract_cuda.json "$OUT/" 2>/dev/null
run 330 benchmarks/dit.py
run 150 benchmarks/metrics.py
echo "=== done ($(date +%T))" | tee -a "$LOG"
