#!/usr/bin/env bash
# Every GPU measurement the project still lacks, in at most 9 minutes on one GPU by its steps' own limits, on a box with
# no package registry: harness vs plain PyTorch step (and with deterministic kernels), probe cost (chunked and fused,
# cuDNN, TF32 off), TF32 on/off against float64, packing K runs into one computation, the scanned cells against a loop,
# trials/hour with 4 workers on one GPU vs 1, one reproduction row. glibc and the driver are checked first.
# The box's own torch and Lightning are used; what it lacks comes from a wheel folder made beforehand where pip reaches the
# registry (bash benchmarks/gpu_wheels.sh), installed with --no-index into the output folder. Nothing is fetched.
#   bash benchmarks/gpu_check.sh [--wheels benchmarks/wheels] [--out benchmarks/out/gpu]
#   bash benchmarks/gpu_check.sh --dry-run    # every step on this CPU, small sizes, in a fresh virtual environment holding only
#                                             # what the GPU box ships plus the wheel folder (11-14 minutes on 2 busy CPU cores; needs the registry)
# Every result lands under the output folder as its step runs (unbuffered, so a timeout keeps what ran): one Markdown
# table per measurement (ready for benchmarks/RESULTS.md), its stderr, and steps.log (each step, its time and exit status).
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=benchmarks/wheels
OUT=benchmarks/out/gpu
DRY=0
while [ $# -gt 0 ]; do
  case $1 in
    --wheels) WHEELS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --dry-run) DRY=1; [ "$OUT" = benchmarks/out/gpu ] && OUT=benchmarks/out/gpu-dry-run; shift ;;
    *) echo "gpu_check.sh: unknown argument '$1'; allowed: --wheels DIR, --out DIR, --dry-run" >&2; exit 2 ;;
  esac
done
rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/steps.log
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
step() {  # name, time limit (s), command...: one step, logged; a failure or a timeout is recorded and the rest still run
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  echo "[$(date +%H:%M:%S)] $name (at most ${limit}s)" | tee -a "$LOG"
  timeout "$limit" "$@" > "$OUT/$name.md" 2> "$OUT/$name.err"
  local code=$?
  echo "[$(date +%H:%M:%S)] $name: exit $code after $((SECONDS - start)) s" >> "$LOG"
  [ $code -eq 0 ] || echo "$name: exit $code (see $OUT/$name.err)" | tee -a "$OUT/failures.txt"
  return $code
}

if [ $DRY -eq 1 ]; then
  # The GPU box's image, emulated: a fresh environment with only the packages it ships (CPU torch here), then the wheels.
  BOX=$OUT/box-venv
  PINNED=$(grep -oE '"(lightning|pandas|pyarrow|seaborn|matplotlib|scikit-learn|pyyaml)==[^"]+"' pyproject.toml | tr -d '"' | tr '\n' ' ')
  step box_image 600 bash -c "python3 -m venv '$BOX' && '$BOX/bin/pip' install -q torch==2.13.0 $PINNED numpy scipy tqdm" || exit 1
  PY=$BOX/bin/python
  WHEELS=$OUT/wheels
  step wheels 300 bash benchmarks/gpu_wheels.sh --python "$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')" \
    --out "$WHEELS" || exit 1
fi

# wandb 0.31 ships only manylinux_2_28 wheels: a box with an older glibc cannot run the sweep's W&B side at all.
# awk reads ldd's whole answer: `head -1` would end ldd by SIGPIPE, which pipefail turns into a failure.
GLIBC=$(ldd --version 2>/dev/null | awk 'NR == 1 {print $NF}')
GLIBC=${GLIBC:-0.0}
if [ "$(printf '%s\n2.28\n' "$GLIBC" | sort -V | head -1)" != 2.28 ]; then
  echo "gpu_check.sh: glibc $GLIBC; allowed: 2.28 or newer (wandb's wheels are manylinux_2_28)" >&2
  exit 2
fi
if [ $DRY -eq 0 ] && ! nvidia-smi --query-gpu=name,driver_version,compute_mode --format=csv,noheader > "$OUT/driver.txt" 2>&1; then
  echo "gpu_check.sh: nvidia-smi does not answer ($(head -1 "$OUT/driver.txt")): no usable NVIDIA driver on this box" >&2
  exit 2
fi
if ! ls "$WHEELS"/*.whl > /dev/null 2>&1; then
  echo "gpu_check.sh: no wheels in $WHEELS; make them where pip reaches the registry: bash benchmarks/gpu_wheels.sh" >&2
  exit 2
fi
SITE=$OUT/site
# typing_extensions stays the box's own unless it lacks what the pinned pydantic imports (Sentinel, 4.14 and later).
if "$PY" -c "from typing_extensions import Sentinel" 2> /dev/null; then
  OWN=$(ls "$WHEELS"/*.whl | grep -v '/typing_extensions-')
else
  echo "typing_extensions: the box's $("$PY" -c 'from importlib.metadata import version; print(version("typing_extensions"))' 2>&1) lacks Sentinel, which pydantic imports: the wheel folder's is installed" | tee -a "$LOG"
  OWN=$(ls "$WHEELS"/*.whl)
fi
# shellcheck disable=SC2086
step install 60 "$PY" -m pip install -q --no-index --no-deps --target "$SITE" $OWN || exit 1
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
# The project's modules must all import with the box's own torch and Lightning before anything is measured (from the
# output folder, so the installed wheel is what is imported, not the source tree).
step imports 50 bash -c 'cd "$0" && "$1" -c "$2"' "$OUT" "$PY" "
import importlib, pkgutil, rnnstudy, rnnstudy.cli, torch, lightning
assert rnnstudy.__file__.startswith('$SITE'), f'rnnstudy imported from {rnnstudy.__file__}, not the wheel'
names = [m.name for m in pkgutil.walk_packages(rnnstudy.__path__, 'rnnstudy.')]
for name in names:
    importlib.import_module(name)
print(f'{len(names)} rnnstudy modules import; torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}), lightning {lightning.__version__}')
" || exit 1

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.csv" 2>&1 || echo "no nvidia-smi (CPU)" > "$OUT/gpu.csv"
export WANDB_MODE=offline
if [ $DRY -eq 1 ]; then  # the same steps, sizes a CPU finishes in seconds
  step bench_train 120 "$PY" benchmarks/bench_train.py --T 10 --cells lstm --steps 20
  step bench_train_deterministic 120 "$PY" benchmarks/bench_train.py --T 10 --cells lstm --steps 20 --deterministic
  step bench_probe 120 "$PY" benchmarks/bench_probe.py --T 20 --cells lstm rnn_tanh --repeats 1 --batch 16 --hidden 16
  step tf32_check 120 "$PY" benchmarks/tf32_check.py --T 20 --hidden 16
  step bench_packing 120 "$PY" benchmarks/bench_packing.py --K 1 4 --T 10 --hidden 16 --batch 16 --repeats 1
  step bench_scan 60 "$PY" benchmarks/bench_scan.py --T 16 --hidden 16 --repeats 1
  step bench_sweep 240 "$PY" benchmarks/bench_sweep.py --workers 2 --trials 2 --steps 20
  step reproduction 120 "$PY" benchmarks/gpu_reproduction.py --rows lstm128-adding-T200 --seeds 0 --steps 20 --out "$OUT/runs"
else
  step bench_train 60 "$PY" benchmarks/bench_train.py --quick
  step bench_train_deterministic 45 "$PY" benchmarks/bench_train.py --quick --deterministic --cells lstm gru
  step bench_probe 90 "$PY" benchmarks/bench_probe.py --T 100 500 1000 --repeats 3
  step tf32_check 30 "$PY" benchmarks/tf32_check.py --T 500
  step bench_packing 60 "$PY" benchmarks/bench_packing.py --repeats 3
  step bench_scan 20 "$PY" benchmarks/bench_scan.py --repeats 3
  step bench_sweep 80 "$PY" benchmarks/bench_sweep.py --workers 4 --gpus 0
  step reproduction 45 "$PY" benchmarks/gpu_reproduction.py --rows lstm128-adding-T200 --seeds 0 --steps 1000 --out "$OUT/runs"
fi
echo "done in $SECONDS s; results in $OUT" | tee -a "$LOG"
[ ! -s "$OUT/failures.txt" ]
