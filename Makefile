# make demo: set everything up on a fresh machine and write the HTML report on the default model.
# make test: set everything up and run the default (fast) test suite.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.latentatlas-setup
FMNIST := /usr/share/datasets/fashion-mnist
MODEL  ?= fashion-stylegan2
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup data demo test test-slow bench clean

setup: $(STAMP)
$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch from the file on disk; pinned first so nothing pulls a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[plots,test,video,ray]'
	# Pretrained face DCGAN weights (MIT); its own dependencies are not needed.
	$(PY) -m pip install -q --no-deps gan-face-generate
	touch $@

data:
	@[ -f $(FMNIST)/t10k-images-idx3-ubyte.gz ] || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist; }

demo: setup data
	$(VENV)/bin/latentatlas report --model $(MODEL) --out out/report
	@echo "open out/report/index.html"

test: setup data
	$(PY) -m pytest -q

test-slow: setup data
	$(PY) -m pytest -q -m slow

bench: setup data
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf out .pytest_cache
