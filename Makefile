# Two commands for users: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
GPU    ?=
MPI    ?=
STAMP  := $(VENV)/.installed

.PHONY: setup test demo bench clean

setup: $(STAMP) $(if $(GPU),$(VENV)/.cupy-$(GPU)) $(if $(MPI),$(VENV)/.mpi)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "setuptools>=65,<70" wheel
	$(PY) -m pip install -q --no-build-isolation -r requirements.txt
	touch $(STAMP)

# Optional GPU support: make setup GPU=cuda12x (or cuda11x, cuda13x).
$(VENV)/.cupy-%: $(STAMP)
	$(PY) -m pip install -q "cupy-$*==13.6.0"
	touch $@

# Optional data-parallel training (--communicator): make setup MPI=1 adds
# mpi4py; it needs an MPI (Debian: apt-get install openmpi-bin libopenmpi-dev).
$(VENV)/.mpi: requirements-mpi.txt $(STAMP)
	$(PY) -m pip install -q -r requirements-mpi.txt
	touch $@

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(PY) demo.py $(DEMO_ARGS)

bench: setup
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV)
