#!/usr/bin/env bash
# The wheels a GPU box without a package registry lacks, downloaded here (where pip reaches the registry) into one folder:
# wandb, optuna, pydantic, SQLAlchemy/alembic, submitit, psycopg2 and everything they pull in, for manylinux x86_64
# and the box's Python, one version each, and the project's own wheel. Never torch or what the box's image ships
# (numpy, PyYAML, tqdm, packaging, MarkupSafe and the scientific stack): those stay the box's own. typing_extensions
# travels, and gpu_check.sh installs it only where the box's lacks what the pinned pydantic imports.
#   bash benchmarks/gpu_wheels.sh                     # Python 3.12 (the GPU box's), into benchmarks/wheels
#   bash benchmarks/gpu_wheels.sh --python 3.11 --out DIR
# Then carry the folder to the box and run `bash benchmarks/gpu_check.sh --wheels benchmarks/wheels` there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=3.12
OUT=benchmarks/wheels
while [ $# -gt 0 ]; do
  case $1 in
    --python) PYV=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "gpu_wheels.sh: unknown argument '$1'; allowed: --python X.Y, --out DIR" >&2; exit 2 ;;
  esac
done
case $PYV in 3.1[0-9]) ;; *) echo "gpu_wheels.sh: --python = '$PYV'; allowed: 3.10 ... 3.19" >&2; exit 2 ;; esac
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
# The versions pyproject.toml pins (one fact, one place): the packages the box lacks, read from the project's own file.
mapfile -t NEED < <("$PY" - <<'EOF'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
lacks = {"wandb", "optuna", "pydantic", "submitit", "psycopg2-binary"}
for spec in project["dependencies"] + project["optional-dependencies"]["postgres"]:
    if re.split(r"[=<>!~ \[]", spec, maxsplit=1)[0].lower() in lacks:
        print(spec)
EOF
)
rm -rf "$OUT"
mkdir -p "$OUT"
echo "downloading for CPython $PYV, manylinux x86_64: ${NEED[*]}"
"$PY" -m pip download -q --only-binary=:all: --implementation cp --python-version "$PYV" \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$OUT" "${NEED[@]}" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
# What the box's image already has: removed, so the box's own builds are used (never shadowed by these).
for shipped in torch lightning numpy pandas pyarrow seaborn matplotlib scipy scikit_learn pyyaml tqdm packaging \
  markupsafe jinja2 pillow; do
  rm -f "$OUT"/"$shipped"-*.whl
done
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$OUT" . 2>/dev/null || "$PY" -m pip wheel -q --no-deps -w "$OUT" .
rm -rf build
total=$(du -sm "$OUT" | cut -f1)
echo "$(ls "$OUT" | wc -l) wheels, ${total} MiB in $OUT"
if [ "$total" -gt 60 ]; then echo "gpu_wheels.sh: $total MiB is over the 60 MiB a device call carries with the tree" >&2; exit 1; fi
