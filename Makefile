# Two commands do all set-up:  `make bench` (the default suite) and `make test`.
# Both create .venv if absent. Where no NVIDIA GPU is present, torch is the CPU wheel
# $(TORCH_SPEC); with a GPU, install your CUDA torch into .venv first (see README).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
SUITE ?= configs/suites/default.yaml
# the experiment $(SUITE) tracks into: `make bench` builds its report and attaches it to the suite's MLflow run
EXPERIMENT ?= default-suite

.PHONY: bench test setup gpu-check mlflow-ui clean-stores

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if ! $(PY) -c "import torch" 2>/dev/null; then \
		if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install torch; \
		else $(PY) -m pip install "$(TORCH_SPEC)"; fi; \
	fi
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

# the report is built even when some runs failed (suite exit 1: it lists them); bad input (2) or an interrupt (130) stops here
bench: $(STAMP)
	$(VENV)/bin/rnnbench suite $(SUITE); status=$$?; \
	if [ $$status -le 1 ]; then $(VENV)/bin/rnnbench report --experiment $(EXPERIMENT) || exit $$?; fi; \
	exit $$status

test: $(STAMP)
	$(PY) -m pytest -q -n auto

# The GPU path in one command, under 8 minutes on one H100 (README: Checking a GPU machine). The device
# is checked first, so a machine without one stops at once, before any install; then set-up (which
# keeps an existing CUDA torch) and the check: python -m benchmark.gpu_check exits 0 all parts
# passed, 1 some failed (make reports either failure as its own Error 2).
gpu-check:
	@if ! (command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU) \
		&& ! (test -x $(PY) && $(PY) -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null); then \
		echo "rnnbench: error: no CUDA device found (nvidia-smi lists no GPU, and torch in $(VENV) sees none); make gpu-check needs an NVIDIA GPU (README: Checking a GPU machine)" >&2; \
		exit 2; \
	fi
	@$(MAKE) --no-print-directory setup
	$(PY) -m benchmark.gpu_check

mlflow-ui: $(STAMP)
	@echo "open http://127.0.0.1:5000, click 'Model training' (top left), pick the experiment; + beside 'suite <name>' unfolds its runs"
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db

clean-stores:
	rm -rf mlflow.db mlruns mlartifacts optuna
