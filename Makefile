# Two entry points for a fresh machine (Python 3.11 with pip; no GPU, no model download):
#   make demo   - build the tiny random-weight checkpoints and run a real generation on them
#   make test   - run the test suite
# Both create the virtual environment first when it is missing or out of date.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TINY ?= tiny-checkpoints
GOLDEN ?= $(or $(ACESTEP_GOLDEN_DIR),tests/golden)

.PHONY: demo test parity bench clean

# torch comes from pip (the CPU build on this disk); everything else from uv, whose --override
# settles the one version conflict between runpod and gradio (see overrides.txt).
$(VENV)/.installed: requirements.txt requirements-serve.txt requirements-dev.txt overrides.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) --override overrides.txt \
		-r requirements.txt -r requirements-serve.txt -r requirements-dev.txt
	$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	touch $@

$(TINY)/random_weights.json: $(VENV)/.installed
	$(PY) -m acestep_worker.tiny $(TINY)

demo: $(TINY)/random_weights.json
	@echo "Running test_input.json through the Runpod handler on the TINY RANDOM-WEIGHT checkpoints"
	@echo "(no download, CPU only): the song it writes to outputs/ is noise, not music."
	ACESTEP_CONFIG_PATH=$(TINY)/acestep-v15-turbo ACESTEP_OUTPUT_DIR=outputs LOG_LEVEL=WARNING RUNPOD_LOG_LEVEL=INFO \
		$(PY) -u handler.py
	@ls -l outputs/local_test-1.mp3

test: $(VENV)/.installed
	$(PY) -m pytest -q

parity: $(VENV)/.installed
	$(PY) scripts/check_parity.py $(patsubst %/manifest.json,%,$(wildcard $(GOLDEN)/*/manifest.json))

bench: $(VENV)/.installed
	$(PY) bench/synth.py --sizes tiny

clean:
	rm -rf $(TINY) demo*.mp3 .pytest_cache
