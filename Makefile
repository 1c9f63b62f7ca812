# The two set-up commands of the README:
#   make run    start the app on the bundled weights (http://127.0.0.1:7860)
#   make test   install everything the tests need, then run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: run test test-fast lint install install-dev browser wheel sync-remote-code mutation gpu-bundle train-gpu

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Both install the package from pyproject.toml in editable mode (console scripts included: .venv/bin/mprnet-restore),
# with torch held to the CPU wheel by requirements-cpu.txt.
$(VENV)/.cpu-installed: pyproject.toml requirements-cpu.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c requirements-cpu.txt -e ".[app,onnx]"
	touch $@

# spandrel goes in without its torchvision requirement: requirements-spandrel.txt says why.
$(VENV)/.dev-installed: pyproject.toml requirements-dev.txt requirements-spandrel.txt requirements-cpu.txt $(VENV)/.cpu-installed
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements-spandrel.txt
	touch $@

install: $(VENV)/.cpu-installed

install-dev: $(VENV)/.dev-installed browser

# Debian's Chromium drives the browser tests (Playwright's own browser download is not reachable here).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

run: install
	$(BIN)/python app.py

# Lint and formatting first (settings in pyproject.toml's [tool.ruff]): a finding fails `make test`, and so CI,
# before any test runs. `ruff format .` applies the formatting.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The whole suite, CI's command; the 25 slowest tests are listed at the end.
test: lint
	$(BIN)/python -m pytest --durations=25

# The edit-test loop: everything but the tests marked `slow` (real servers, the browser, subprocess builds, training
# runs, resolvers, ONNX exports; pytest.ini), with the app imported without its start-up cost measurement (the slow
# tests of the bound measure it; MPRNET_MAX_SECONDS=off is a documented setting of the app).
test-fast: lint
	MPRNET_MAX_SECONDS=off $(BIN)/python -m pytest -m "not slow"

# The wheel (dist/mprnet_hf-*.whl, bundled weights inside), built offline with the dev venv's hatchling.
wheel: install-dev
	$(BIN)/python -m pip wheel -q --no-deps --no-build-isolation -w dist .

# Refresh the code copies the bundled checkpoints carry for trust_remote_code (tests fail while they differ).
sync-remote-code: install
	$(BIN)/python -m mprnet_hf.hub.remote_code

# Mutation testing with mutmut (settings in setup.cfg): slow, so not part of `make test` or CI. One module at a time:
#   make mutation MUTANTS='mprnet_hf.models.mprnet.inference.*'
# Results are cached in mutants/ (delete it after changing the tests); docs/notes/2026-12-mutation-testing.md records
# the scores. Every mutant's run forks from a process that has imported the tests (and app.py, for
# tests/test_app_inputs.py): one torch thread, since a thread pool does not survive a fork.
MUTANTS ?=
mutation: install-dev
	OMP_NUM_THREADS=1 nice -n 19 $(BIN)/mutmut run --max-children 1 $(MUTANTS)
	$(BIN)/mutmut results

# Training on a lent GPU (docs/TRAINING.md, "Training on a lent GPU"). gpu-bundle packs the photos into the ignored
# folder runs/gpu-bundle that the device call carries (PHOTOS holds train/ and val/); train-gpu is the command the
# device runs (there with the machine's own python3: PYTHON=python3). Without a GPU, train-gpu runs a handful of steps.
PHOTOS ?= data/photos
ANY_PYTHON := $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-bundle:
	$(ANY_PYTHON) scripts/make_gpu_bundle.py --train $(PHOTOS)/train --val $(PHOTOS)/val --output runs/gpu-bundle

train-gpu:
	PYTHON=$(ANY_PYTHON) bash scripts/train_on_gpu.sh
