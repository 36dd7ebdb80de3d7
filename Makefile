# `make demo` and `make test` each create .venv when it is missing, installing exactly the tested
# versions from requirements/lock.txt. `make lock` regenerates the lock; `make test-latest` runs the
# same suite in .venv-latest against the newest releases (no lock).
PYTHON ?= python3
VENV ?= .venv
LATEST_VENV ?= .venv-latest
LOCK ?= requirements/lock.txt
TORCH_SPEC ?= torch==2.13.0
# Optional package index for torch only, e.g. https://download.pytorch.org/whl/cpu (CPU wheels) or
# https://download.pytorch.org/whl/cu128 (CUDA 12.8). Empty: the default index (pip's configuration).
TORCH_INDEX ?=
EXTRAS ?= dev,ecg,explain,log,export,dicom-seg
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medcl-installed
TORCH_INDEX_ARG := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
# Browser tests fail instead of skipping under CI (CI=true) or MEDCL_REQUIRE_BROWSER=1.
REQUIRE_BROWSER := $(or $(MEDCL_REQUIRE_BROWSER),$(if $(filter true 1,$(CI)),1,0))

.PHONY: venv demo test test-latest lock lint bench clean browser

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --constraint $(LOCK) --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet $(TORCH_INDEX_ARG) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet --constraint $(LOCK) -e ".[$(EXTRAS)]"
	$(PY) tools/lock.py check $(LOCK)
	touch $(STAMP)

# Regenerate the lock: a throw-away venv gets the newest releases that pyproject.toml allows, the
# suite's extras and torch as above; its exact versions (torch excluded) become requirements/lock.txt.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	.venv-lock/bin/python -m pip install --quiet $(TORCH_INDEX_ARG) "$(TORCH_SPEC)"
	.venv-lock/bin/python -m pip install --quiet -e ".[$(EXTRAS)]"
	.venv-lock/bin/python tools/lock.py write $(LOCK) --extras "$(EXTRAS)" --torch "$(TORCH_SPEC)"
	rm -rf .venv-lock

# Debian's chromium for the report tests. A failed install is printed, never hidden.
browser:
	@if command -v chromium >/dev/null 2>&1; then echo "browser: $$(chromium --version 2>/dev/null)"; \
	else (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/tmp/medcl-apt.log 2>&1) \
	  && echo "browser: installed $$(chromium --version 2>/dev/null)" \
	  || { echo "browser: WARNING: chromium could not be installed; the browser tests will SKIP (fail under CI)."; \
	       tail -n 5 /tmp/medcl-apt.log 2>/dev/null; }; fi

lint: venv
	$(VENV)/bin/ruff check .

test: venv browser
	$(VENV)/bin/ruff check .
	MEDCL_REQUIRE_BROWSER=$(REQUIRE_BROWSER) $(VENV)/bin/python -m pytest -q

# The same suite against the newest releases (no lock), in its own venv; prints what differs.
test-latest: browser
	test -x $(LATEST_VENV)/bin/python || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	$(LATEST_VENV)/bin/python -m pip install --quiet $(TORCH_INDEX_ARG) "$(TORCH_SPEC)"
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[$(EXTRAS)]"
	$(LATEST_VENV)/bin/python tools/lock.py diff $(LOCK)
	$(LATEST_VENV)/bin/ruff check .
	MEDCL_REQUIRE_BROWSER=$(REQUIRE_BROWSER) $(LATEST_VENV)/bin/python -m pytest -q

demo: venv
	$(VENV)/bin/medcl demo --out demo_out

bench: venv
	$(VENV)/bin/medcl bench all --out bench_out

clean:
	rm -rf $(VENV) $(LATEST_VENV) .venv-lock build dist *.egg-info demo_out bench_out
