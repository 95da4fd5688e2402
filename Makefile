# Two commands for users: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
GPU    ?=
STAMP  := $(VENV)/.installed

.PHONY: setup test demo bench clean

setup: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "setuptools>=65,<70" wheel
	$(PY) -m pip install -q --no-build-isolation -r requirements.txt
ifneq ($(GPU),)
	$(PY) -m pip install -q "cupy-$(GPU)==13.6.0"
endif
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(PY) scripts/demo.py

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV)
