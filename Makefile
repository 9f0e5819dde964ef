# Two commands: `make demo` and `make test`. Everything installs into .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= runs/demo

.PHONY: install demo test clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel of torch first, pinned, so nothing later pulls a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all]'
	# recbole only for the MovieLens-100K files its wheel ships; never imported.
	$(BIN)/pip install -q --no-deps recbole==1.2.1
	touch $(STAMP)

demo: install
	$(BIN)/bcemb benchmark --dataset ml-100k --profile quick --out $(OUT)
	$(BIN)/bcemb report $(OUT)

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs
