# rnnstudy: `make demo` and `make test` do all set-up on a fresh machine.
PY          ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
# CPU install: the pinned CPU build. GPU box: e.g. make setup TORCH=torch TORCH_INDEX=https://download.pytorch.org/whl/cu128,
# or keep the box's own CUDA torch (its module system's or image's): make setup SYSTEM_TORCH=1 (the venv sees the
# system site-packages and installs no torch; pyproject's torch>=2.4 accepts it).
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
SYSTEM_TORCH ?=
EXP         ?= experiments/memory_length.yaml
WORKERS     ?= 2
# The GPUs of an allocation that already set CUDA_VISIBLE_DEVICES (SLURM without cgroups), else every GPU nvidia-smi lists.
GPUS        ?= $(or $(CUDA_VISIBLE_DEVICES),$(shell nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | paste -sd, -))
RESULTS     ?= runs
NAME         = $(basename $(notdir $(EXP)))

.PHONY: setup test test-slow demo train sweep status report bench sync lint clean reproduction phase-cpu frontier-cpu prediction \
	reach-cpu budget-cpu lr-cpu growth-cpu modern-cpu coverage results-index

$(BIN)/rnnstudy: pyproject.toml
	@echo "setting up $(VENV) (first time: about a minute)"
	$(PY) -m venv $(if $(SYSTEM_TORCH),--system-site-packages) $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(if $(SYSTEM_TORCH),$(BIN)/python -c "import torch; print('using the system torch', torch.__version__, 'CUDA', torch.version.cuda)",\
	  $(BIN)/pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)))
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

# A shared storage (PostgreSQL) comes from the environment, never the command line: export RNNSTUDY_STORAGE=...
sweep: setup
	$(BIN)/rnnstudy sweep $(EXP) --workers $(WORKERS) $(if $(GPUS),--gpus $(GPUS))

status: setup
	$(BIN)/rnnstudy status $(EXP)

report: setup
	$(BIN)/rnnstudy report $(RESULTS)/$(NAME)

bench: setup
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_overhead.py
	$(BIN)/python benchmarks/bench_probe.py --recorded benchmarks/RESULTS.md
	$(BIN)/python benchmarks/bench_probe.py --task adding --recorded benchmarks/RESULTS.md
	$(BIN)/python benchmarks/bench_packing.py --K 1 4 16
	$(BIN)/python benchmarks/bench_pack.py --pairs 1
	$(BIN)/python benchmarks/bench_scan.py
	$(BIN)/python benchmarks/bench_sensitivity.py
	$(BIN)/python benchmarks/probe_precision.py
	$(BIN)/python benchmarks/bench_sweep.py --workers $(WORKERS)

sync: setup
	$(BIN)/rnnstudy sync $(RESULTS)

lint: setup
	$(BIN)/ruff check rnnstudy tests benchmarks

# Generated outputs only: the results store and the reports folder (no source lives in either).
clean:
	rm -rf $(RESULTS) reports .pytest_cache

# Reproduce the literature on this CPU (about an hour on 2 cores): reports/reproduction/ (commit it with its runs.csv).
reproduction: setup
	$(BIN)/rnnstudy sweep experiments/gradient_flow.yaml --workers 2
	$(BIN)/rnnstudy sweep experiments/reproduction_cpu.yaml --workers 2
	$(BIN)/rnnstudy report $(RESULTS)/reproduction_cpu $(RESULTS)/gradient_flow --out reports/reproduction
	$(BIN)/rnnstudy report $(RESULTS)/gradient_flow --out reports/gradient_flow

# The committed CPU studies, each `make <name>-cpu` = sweep experiments/<name>_cpu.yaml with 2 workers on 2 cores,
# then its report into docs/results/<name>_cpu/ (the measured time is in each report):
#   phase:    the trainability phase diagram on adding (4 cells x 4 values of one init parameter)
#   reach:    where the GRU stops on adding, T from 256 to 2048
#   budget:   the vanilla RNNs at a 24,000-step budget, T50 against budget
#   lr:       the tanh RNN's T50 against the learning rate
#   frontier: copy at recall accuracy 0.99, T50 per cell x family
#   growth:   the GRU's steps-to-solve against T, validated early on a ladder (its growth exponent)
#   modern:   the GRU, minGRU and LRU under one protocol (2 layers with the GLU block), T50 per line
CPU_STUDIES := phase reach budget lr frontier growth modern
$(addsuffix -cpu,$(CPU_STUDIES)): %-cpu: setup
	$(BIN)/rnnstudy sweep experiments/$*_cpu.yaml --workers 2
	$(BIN)/rnnstudy report $(RESULTS)/$*_cpu --out docs/results/$*_cpu
	$(BIN)/python -m rnnstudy.report.index

# T50's and the growth exponent's coverage simulated through the harness's own T search (about 30 + 15 minutes on one
# core): docs/results/coverage.* and docs/results/growth_coverage.*
coverage: setup
	$(BIN)/python -m rnnstudy.analysis.coverage --out docs/results
	$(BIN)/python -m rnnstudy.analysis.growth_coverage --out docs/results
	$(BIN)/python -m rnnstudy.report.index

# The README's generated results and docs/results/README.md, from the committed summaries and per-run tables.
results-index: setup
	$(BIN)/python -m rnnstudy.report.index

# The init-time predictor and the pre-screen scored per run on the committed phase study's runs (no sweep of its own):
# docs/results/prediction/. Needs the runs of `make phase-cpu` under $(RESULTS). The committed table's init-time features
# are reused by run id (only new runs' are computed); delete it to compute them all again.
FEATURES := docs/results/prediction/run_features.csv
prediction: setup
	$(BIN)/rnnstudy predict $(RESULTS)/phase_cpu --out docs/results/prediction $(if $(wildcard $(FEATURES)),--features-from $(FEATURES))
	$(BIN)/python -m rnnstudy.report.index
