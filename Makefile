# l0rl: one-command setup, demo and tests. Everything the project needs is installed here.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.l0rl-setup
DEMO_DIR ?= runs/demo

.PHONY: setup demo test test-fast lint format bench bench-quick bench-frontier clean

setup: $(STAMP)

# Order matters (see README "Installation"): torch first, pinned, so nothing resolves a CUDA build;
# then the project under the tested constraints; then the Mario emulator, whose 9.x releases declare
# Python >= 3.13 but run correctly on 3.11, so it goes in alone with --ignore-requires-python.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -c constraints.txt -e ".[dev,onnx,plot,report,video,cluster]"
	$(PIP) install -q --ignore-requires-python --no-deps "nes-py==9.0.1" "gym-super-mario-bros==9.1.0"
	$(PY) -c "import torch, gymnasium, wandb, tyro, tensorboard, cv2, moviepy, rliable, wandb_workspaces, ray, nes_py, gym_super_mario_bros; print('l0rl setup ok: torch', torch.__version__)"
	touch $(STAMP)

demo: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} WANDB_MODE=$${WANDB_MODE:-offline} $(PY) -m benchmark.demo --out-dir $(DEMO_DIR)

test: setup
	OMP_NUM_THREADS=1 WANDB_MODE=disabled $(PY) -m pytest -n 2 -q tests

test-fast: setup
	OMP_NUM_THREADS=1 WANDB_MODE=disabled $(PY) -m pytest -n 2 -q -m "not slow and not mario" tests

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	$(PY) -m benchmark.measure.l0_overhead

# the committed comparison reports (benchmark/results/<suite>/REPORT.md); quick takes about 40 min on 2 cores
bench-quick: setup
	$(PY) -m benchmark.run_suite quick --workers 2 && $(PY) -m benchmark.report quick

bench-frontier: setup
	$(PY) -m benchmark.run_suite frontier --workers 2 && $(PY) -m benchmark.report frontier

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
