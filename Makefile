# Two commands for users: `make demo` and `make test`. Both set up .venv first.
# PYTHON: the interpreter of a new .venv (default: the first of python3,
# python3.12, python3.11 and pyenv's 3.12 and 3.11 that is a supported one).
PYTHON ?=
VENV   ?= .venv
PY     := $(VENV)/bin/python
GPU    ?=
DEVICE ?=
MPI    ?=
STAMP  := $(VENV)/.installed

.PHONY: setup test demo experiment weak tune bench tensorboard-screenshot clean

setup: $(STAMP) $(if $(GPU),$(VENV)/.cupy-$(GPU)) $(if $(MPI),$(VENV)/.mpi)

# The interpreter of a new venv: the first of $(CANDIDATES) whose version is
# supported (chainer 7.8.1 needs numpy<2, which has no wheels for 3.13).
SUPPORTED  := 3.11 3.12
CANDIDATES  = $(or $(PYTHON),python3 python3.12 python3.11 $(wildcard \
    $(shell pyenv root 2>/dev/null)/versions/3.1[21].*/bin/python3))
version = $(shell $(1) -c 'import platform; print(platform.python_version())' \
    2>/dev/null)
ifeq ($(wildcard $(PY)),)
ifneq ($(filter-out clean,$(or $(MAKECMDGOALS),setup)),)
NEW_PYTHON := $(firstword $(foreach p,$(CANDIDATES),$(if $(filter \
    $(SUPPORTED),$(basename $(call version,$(p)))),$(p))))
ifeq ($(NEW_PYTHON),)
$(error $(or $(PYTHON),python3) is $(or $(addprefix Python ,$(call \
    version,$(or $(PYTHON),python3))),not a working interpreter); this \
    project runs on Python 3.11 or 3.12 only (chainer 7.8.1 needs numpy<2, \
    which has no wheels for 3.13 or newer): install one (pyenv install 3.12, \
    or your system's python3.12 and python3.12-venv packages) and run \
    make setup PYTHON=python3.12)
endif
endif
endif

$(STAMP): requirements.txt chainer_compat.py
	test -x $(PY) || $(NEW_PYTHON) -m venv $(VENV)
	$(PY) chainer_compat.py    # start-up hook: chainer on Python 3.12
	$(PY) -m pip install -q "setuptools>=65,<70" wheel Cython==0.29.36
	$(PY) -m pip install -q --no-build-isolation -r requirements.txt
	touch $(STAMP)

# Optional GPU support: make setup GPU=cuda12x (or cuda11x, cuda13x). With
# cuda12x also cuDNN 8.9 (CuPy 13's cuDNN bindings are for cuDNN 8; there is
# none for CUDA 13), loaded by chainer_compat's start-up hook.
CUDNN_cuda12x := nvidia-cudnn-cu12==8.9.7.29
$(VENV)/.cupy-%: $(STAMP)
	$(PY) -m pip install -q "cupy-$*==13.6.0" $(CUDNN_$*)
	touch $@

# Optional data-parallel training (--communicator): make setup MPI=1 adds
# mpi4py; it needs an MPI (Debian: apt-get install openmpi-bin libopenmpi-dev).
$(VENV)/.mpi: requirements-mpi.txt $(STAMP)
	$(PY) -m pip install -q -r requirements-mpi.txt
	touch $@

# One pytest worker per core; a test file's tests stay on one worker (they
# share its fixtures). TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= auto
test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

# make demo DEVICE=0: the larger GPU preset on GPU 0 (see demo.py --help).
demo: setup
	$(PY) demo.py $(if $(DEVICE),--device $(DEVICE)) $(DEMO_ARGS)

# make experiment: every row over 5 seeds, differences with their intervals
# (media/EXPERIMENT.md; about 40 minutes on 2 CPU cores).
experiment: setup
	$(PY) experiment.py $(if $(DEVICE),--device $(DEVICE)) $(EXPERIMENT_ARGS)

# make weak: the weakly supervised track (media/WEAK.md).
weak: setup
	$(PY) weak.py $(if $(DEVICE),--device $(DEVICE)) $(WEAK_ARGS)

# make tune: the sweep on the tune split that chose the CPU preset.
tune: setup
	$(PY) tune.py $(TUNE_ARGS)

# make bench: every step timed side by side (docs/BENCHMARKS.md); results in
# runs/bench (BENCH_ARGS="--out DIR" for another directory).
bench: setup
	$(PY) bench/run.py $(BENCH_ARGS)

# media/tensorboard.png: TensorBoard over a short classifier and GAIN run
# (under runs/tensorboard_demo), taken with headless Chromium (Debian:
# apt-get install chromium).
tensorboard-screenshot: setup
	$(PY) bench/tensorboard_screenshot.py $(SCREENSHOT_ARGS)

clean:
	rm -rf $(VENV)
