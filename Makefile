# rnnstudy: `make demo` and `make test` do all set-up on a fresh machine.
PY          ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
# CPU install: the pinned CPU build. GPU box: e.g. make setup TORCH=torch TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
EXP         ?= experiments/memory_length.yaml
WORKERS     ?= 2
GPUS        ?= $(shell nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | paste -sd, -)
STORAGE     ?=
RESULTS     ?= runs
NAME         = $(basename $(notdir $(EXP)))

.PHONY: setup test test-slow demo train sweep status report bench sync lint clean reproduction

$(BIN)/rnnstudy: pyproject.toml
	@echo "setting up $(VENV) (first time: about a minute)"
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e '.[dev,postgres]'
	@touch $@

setup: $(BIN)/rnnstudy

test: setup
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow -v

demo: setup
	$(BIN)/rnnstudy sweep experiments/demo.yaml --workers 2
	$(BIN)/rnnstudy report $(RESULTS)/demo

train: setup
	$(BIN)/rnnstudy train $(EXP) $(ARGS)

sweep: setup
	$(BIN)/rnnstudy sweep $(EXP) --workers $(WORKERS) $(if $(GPUS),--gpus $(GPUS)) $(if $(STORAGE),--storage $(STORAGE))

status: setup
	$(BIN)/rnnstudy status $(EXP) $(if $(STORAGE),--storage $(STORAGE))

report: setup
	$(BIN)/rnnstudy report $(RESULTS)/$(NAME) $(if $(STORAGE),--storage $(STORAGE))

bench: setup
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_probe.py
	$(BIN)/python benchmarks/bench_sweep.py --workers $(WORKERS)

sync: setup
	$(BIN)/wandb sync --include-offline $(RESULTS)/*/*/wandb/offline-run-*

lint: setup
	$(BIN)/ruff check rnnstudy reports tests benchmarks

clean:
	rm -rf $(RESULTS) reports/*/ .pytest_cache

# Reproduce the literature on this CPU (about an hour on 2 cores) and record reports/reproduction.md.
reproduction: setup
	$(BIN)/rnnstudy sweep experiments/gradient_flow.yaml --workers 2
	$(BIN)/rnnstudy sweep experiments/reproduction_cpu.yaml --workers 2
	$(BIN)/rnnstudy report $(RESULTS)/reproduction_cpu $(RESULTS)/gradient_flow --out reports/reproduction
	sed 's/(gradient_lag.png)/(reproduction_gradient_lag.png)/' reports/reproduction/reproduction.md > reports/reproduction.md
	$(BIN)/rnnstudy report $(RESULTS)/gradient_flow --out reports/gradient_flow
	cp reports/gradient_flow/gradient_lag.png reports/reproduction_gradient_lag.png
