# Two commands do all the set-up on a fresh machine (Python 3.10+):
#   make demo   install the runtime alone and segment the bundled sample images
#   make test   install everything the tests need (CPU torch, pinned in constraints.txt) and run them
#
# Budget of `make test` on a 2-core CI machine (keep the sum under 20 min):
#   full suite (.venv: training, export, runtime)          ~1 min install + ~1.6 min tests
#   runtime alone (.venv-runtime: no torch, no onnx)       ~0.3 min install + ~0.2 min tests
PYTHON ?= python3
VENV ?= .venv
DEMO_VENV ?= .venv-demo
RUNTIME_VENV ?= .venv-runtime

.PHONY: test test-full test-runtime demo lint clean

$(VENV)/.installed: pyproject.toml export/pyproject.toml runtime/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e . -e ./runtime -e ./export pytest
	touch $@

test: test-full test-runtime

test-full: $(VENV)/.installed
	$(VENV)/bin/python -m pytest

# The runtime's tests in an environment holding the runtime alone (what a laptop installs):
# LVUNET_RUNTIME_ONLY=1 makes a test fail if torch or onnx could be imported there.
$(RUNTIME_VENV)/.installed: runtime/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install -q -c constraints.txt ./runtime pytest
	touch $@

test-runtime: $(RUNTIME_VENV)/.installed
	LVUNET_RUNTIME_ONLY=1 $(RUNTIME_VENV)/bin/python -m pytest tests/runtime -p no:cacheprovider

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
	rm -rf $(VENV) $(DEMO_VENV) $(RUNTIME_VENV) lvunet-output
