# Set-up is automatic: each target creates .venv and installs the project when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_WEIGHTS := $(wildcard ../shared/weights)
# Python writes the bytecode of what it imports, once, even where the environment says not to: compiling every
# installed file up front costs more than the install itself, and never writing it, TensorFlow in every process
export PYTHONDONTWRITEBYTECODE :=

.PHONY: demo test

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# uv installs what pip would, in parallel and from its cache (here 5 to 11 s; pip 35 s, 79 s compiling every file)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/python -m uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	# KerasHub for the encoder tests, without tensorflow-text (it pulls the full tensorflow beside tensorflow-cpu)
	$(BIN)/python -m uv pip install --quiet --python $(BIN)/python --no-deps 'keras-hub>=0.32' regex tokenizers
	touch $@

demo: $(BIN)/.installed
	TRANSFER_WEIGHTS_DIR=$${TRANSFER_WEIGHTS_DIR:-$(SHARED_WEIGHTS)} $(BIN)/transfer demo

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder  # two workers, a file each, in conftest.py's order
