# make demo: set everything up on a fresh machine and write the HTML report on the default model.
# make test: set everything up and run the default (fast) test suite.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.latentatlas-setup
TSTAMP := $(VENV)/.latentatlas-setup-test
# --no-compile: modules are byte-compiled when first imported instead of all at install time
# (measured on a fresh venv without a pip cache: torch 51 -> 19 s; the demo's setup 88 -> ~42 s)
PIP    := $(PY) -m pip install -q --no-compile
FMNIST := /usr/share/datasets/fashion-mnist
MODEL  ?= fashion-stylegan2
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup setup-test data demo test test-slow bench clean

# setup: what the library, the CLI and the report need; setup-test adds pytest, Ray and the ONNX
# exporter/runtime (the demo needs none of them: Ray only serves --ray, ONNX only convert ... .onnx)
setup: $(STAMP)
$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch from the file on disk; pinned first so nothing pulls a CUDA build.
	$(PIP) torch==2.13.0
	$(PIP) -e '.[plots,video]'
	# Pretrained face DCGAN weights (MIT); its own dependencies are not needed.
	$(PIP) --no-deps gan-face-generate
	touch $@

setup-test: $(TSTAMP)
$(TSTAMP): $(STAMP)
	$(PIP) -e '.[plots,test,video,ray,onnx]'
	touch $@

data:
	@[ -f $(FMNIST)/t10k-images-idx3-ubyte.gz ] || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist; }

demo: setup data
	$(VENV)/bin/latentatlas report --model $(MODEL) --out out/report
	@echo "open out/report/index.html"

# test: the import-linter contracts (the layers, pyproject.toml), then the default suite
test: setup-test data
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

# test-slow adds what its browser test drives: Playwright (no browser download) and Debian's chromium
test-slow: setup-test data
	$(PIP) -e '.[browser]'
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }
	$(PY) -m pytest -q -m slow

bench: setup-test data
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf out .pytest_cache
