# Two commands: `make demo` and `make test`. Each creates .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,ecg,explain,log
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medcl-installed

.PHONY: venv demo test lint bench clean browser

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

# Debian's chromium for the report tests (skipped with a reason when it cannot be installed).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "make: chromium could not be installed; browser tests will skip"; }

lint: venv
	$(VENV)/bin/ruff check .

test: venv browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q

demo: venv
	$(VENV)/bin/medcl demo --out demo_out

bench: venv
	$(VENV)/bin/medcl bench all --out bench_out

clean:
	rm -rf $(VENV) build dist *.egg-info demo_out bench_out
