# Set-up is automatic: each target creates .venv and installs the project when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_WEIGHTS := $(wildcard ../shared/weights)

.PHONY: demo test

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# KerasHub for the encoder tests, without tensorflow-text (it pulls the full tensorflow beside tensorflow-cpu)
	$(BIN)/python -m pip install --quiet --no-deps 'keras-hub>=0.32' regex tokenizers
	touch $@

demo: $(BIN)/.installed
	TRANSFER_WEIGHTS_DIR=$${TRANSFER_WEIGHTS_DIR:-$(SHARED_WEIGHTS)} $(BIN)/transfer demo

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder  # two workers, a file each, in conftest.py's order
