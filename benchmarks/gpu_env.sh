# Sourced by the GPU scripts: $OUT and $LOG (the device tool's $OUT receives them), the package
# on PYTHONPATH, and the wheels carried in .whl/ (diffusers is not on the device image), then
# the card and torch version at the head of the log. Set LOG_NAME before sourcing.
OUT=${OUT:-benchmarks/results}
LOG=$OUT/$LOG_NAME.log
export PYTHONUNBUFFERED=1 PYTHONPATH=src
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=src:/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$LOG"
python3 -c "import torch; print('torch', torch.__version__)" 2>&1 | tee -a "$LOG"
