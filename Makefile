# Two commands do all the set-up on a fresh machine (Python 3.10+):
#   make demo   install the runtime alone and segment the bundled sample images
#   make test   install everything the tests need (CPU torch, pinned in constraints.txt) and run them
PYTHON ?= python3
VENV ?= .venv
DEMO_VENV ?= .venv-demo

.PHONY: test demo lint clean

$(VENV)/.installed: pyproject.toml export/pyproject.toml runtime/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e . -e ./runtime -e ./export pytest
	touch $@

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest

$(DEMO_VENV)/.installed: runtime/pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install -q ./runtime
	touch $@

demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/lvunet-infer 'runtime/lvunet_runtime/samples/kvasir-seg__*.jpg' --out lvunet-output/polyp --overlay --json
	$(DEMO_VENV)/bin/lvunet-infer 'runtime/lvunet_runtime/samples/busi__*.jpg' --model breast-ultrasound --out lvunet-output/breast-ultrasound --overlay --json

lint: $(VENV)/.installed
	$(VENV)/bin/python -m pip install -q ruff && $(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) $(DEMO_VENV) lvunet-output
