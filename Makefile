# Two entry points for a fresh machine (Python 3.11 with pip; no GPU, no model download):
#   make demo   - build the tiny random-weight checkpoints and run a real generation on them
#   make test   - run the test suite (what CI runs); make test-fast: only tests/unit and tests/integration
# Both create the virtual environment first when it is missing or out of date.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TINY ?= tiny-checkpoints
LOCK_TMP ?= .lock-inputs
GOLDEN ?= $(or $(ACESTEP_GOLDEN_DIR),tests/golden)

.PHONY: demo test test-fast parity bench lock clean

# torch comes from pip (the CPU build on this disk); everything else from uv, whose --override
# settles the one version conflict between runpod and gradio (see overrides.txt). The package's
# dependencies are declared in pyproject.toml, which reads them from the requirement files.
$(VENV)/.installed: requirements-torch.txt requirements.txt requirements-serve.txt requirements-dev.txt overrides.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) --override overrides.txt -e '.[dev]'
	touch $@

# requirements-lock.txt: what the Docker image installs, pinned to the versions this venv runs
# (and therefore was tested with), including torch's own pure-Python dependencies. torch itself and its
# CUDA wheels are left out (peft and accelerate name torch): the image installs torch from its own index.
lock: $(VENV)/.installed
	mkdir -p $(LOCK_TMP)
	$(VENV)/bin/uv pip freeze --python $(PY) --exclude-editable --exclude torch > $(LOCK_TMP)/tested-versions.txt
	$(PY) -c "import importlib.metadata as m; print(*(r for r in m.requires('torch') if ';' not in r), sep='\n')" \
		> $(LOCK_TMP)/torch-python-deps.txt
	$(VENV)/bin/uv pip compile --quiet requirements.txt requirements-serve.txt $(LOCK_TMP)/torch-python-deps.txt \
		--override overrides.txt -c $(LOCK_TMP)/tested-versions.txt --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --annotation-style line --custom-compile-command "make lock" \
		| sed -E 's#-c [^ ,]*tested-versions.txt, ##; s#, -c [^ ,]*tested-versions.txt##; s#-r [^ ,]*torch-python-deps.txt#torch#' \
		| grep -vE '^(torch|triton|nvidia-[a-z0-9-]+|cuda-[a-z-]+)==' \
		> requirements-lock.txt
	rm -r $(LOCK_TMP)

$(TINY)/random_weights.json: $(VENV)/.installed src/acestep_worker/dev/tiny.py src/acestep_worker/dev/tiny_loras.py
	$(PY) -m acestep_worker.dev.tiny $(TINY)

demo: $(TINY)/random_weights.json
	@echo "Running test_input.json through the Runpod handler on the TINY RANDOM-WEIGHT checkpoints"
	@echo "(no download, CPU only): the song it writes to outputs/ is noise, not music."
	ACESTEP_CONFIG_PATH=$(TINY)/acestep-v15-turbo ACESTEP_OUTPUT_DIR=outputs LOG_LEVEL=WARNING RUNPOD_LOG_LEVEL=INFO \
		$(PY) -u handler.py
	@ls -l outputs/local_test-1.mp3

test: $(VENV)/.installed
	$(PY) -m pytest -q

# No child process, HTTP server or browser: the tests marked e2e (tests/e2e) are left out.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not e2e"

parity: $(VENV)/.installed
	$(PY) scripts/check_parity.py $(patsubst %/manifest.json,%,$(wildcard $(GOLDEN)/*/manifest.json))

bench: $(VENV)/.installed
	$(PY) bench/synth.py --sizes tiny

clean:
	rm -rf $(TINY) demo*.mp3 .pytest_cache
