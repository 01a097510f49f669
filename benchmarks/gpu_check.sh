#!/usr/bin/env bash
# Every GPU measurement the project still lacks, in at most about 8 minutes on one GPU:
#   harness vs plain PyTorch step (and with deterministic kernels), probe cost (chunked and fused, cuDNN, TF32 off), TF32 on/off against
#   float64, trials/hour with 4 workers on one GPU vs 1, one row of the paper reproduction.
# Results land in benchmarks/out/gpu/ (Markdown tables, ready for benchmarks/RESULTS.md).
#   bash benchmarks/gpu_check.sh            # needs the package installed with a CUDA torch (make setup TORCH=...)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${OUT:-benchmarks/out/gpu}
mkdir -p "$OUT"
run() {  # name, time limit (s), command...: one measurement; a failure or a timeout is recorded, the rest still run
  local name=$1 limit=$2; shift 2
  echo "[$(date +%H:%M:%S)] $name (at most ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.md" 2> "$OUT/$name.err" || echo "$name: exit $? (see $OUT/$name.err)" | tee -a "$OUT/failures.txt"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.csv" 2>&1
"$PY" -c "import torch; print(torch.__version__, torch.version.cuda, torch.backends.cudnn.version())" > "$OUT/versions.txt" 2>&1
run bench_train 90 "$PY" benchmarks/bench_train.py --quick
run bench_train_deterministic 60 "$PY" benchmarks/bench_train.py --quick --deterministic --cells lstm gru
run bench_probe 150 "$PY" benchmarks/bench_probe.py --T 100 500 1000 --repeats 3
run tf32_check 60 "$PY" benchmarks/tf32_check.py --T 500
run bench_sweep 120 "$PY" benchmarks/bench_sweep.py --workers 4 --gpus 0
run reproduction 60 "$PY" benchmarks/gpu_reproduction.py --rows lstm128-adding-T200 --seeds 0 --steps 1000 --out "$OUT/runs"
echo "done: $(ls "$OUT")"
