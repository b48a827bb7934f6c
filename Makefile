# Two commands do all the set-up on a fresh machine (Python 3.10-3.13):
#   make demo   install the runtime alone and segment the bundled sample images
#   make test   install everything the tests need (CPU torch, pinned in constraints.txt) and run them
#
# `make test` runs these parts; budget on a 2-core CI machine (keep the sum under 20 min; a fresh clone took 13 min 48 s on 2026-12-02 with nothing else running, chromium, libvulkan1 and dicom3tools already installed; their apt install adds about 0.5 min):
#   test-full     .venv, Python 3.11: training, export, runtime, corpus     ~2 min install + ~3.6 min tests
#                 (of which several runs in one process, lvunet-train --seeds: ~25 s)
#                 (of which the corpus: the server's attacks ~25 s, names and places ~12 s, reruns ~10 s)
#   test-runtime  .venv-runtime, the runtime alone (no torch, no onnx)      ~0.5 min install + ~0.2 min tests
#   test-oldest   Python 3.10: runtime tests + demo, newest pins for 3.10    ~0.5 min install + ~0.3 min
#   test-newest   Python 3.13: runtime tests + demo                          ~0.5 min install + ~0.3 min
#   test-lowest   Python 3.10 with the runtime's declared minimum versions  ~0.5 min install + ~0.2 min
#   test-ray      the runtime + ray[data] (~300 MB): lvunet-infer --ray     ~1 min install + ~0.5 min
#   test-openvino the runtime on onnxruntime-openvino (replaces onnxruntime) ~0.7 min install + ~0.3 min
#   test-browser  lvunet-serve's page in Debian's chromium via Selenium (.venv) ~0.5 min apt + ~0.3 min,
#                 and the in-browser page (lvunet-serve --static, ONNX Runtime Web in chromium) ~0.8 min
#                 (its 33 MB onnxruntime-web package from the npm registry, once per machine: ~5 s)
#   test-webgpu   the [webgpu] extra in .venv-runtime, on SwiftShader (chromium's software Vulkan driver)
#                 with apt's libvulkan1: ~0.2 min install + ~2 min tests (2.8 s per image on 2 cores)
#   test-dicom    the [dicom,serve] extras + imagecodecs in .venv-dicom, dicom3tools' dciodvfy (apt)
#                 ~0.5 min install + ~0.1 min apt + ~0.1 min tests
# An interpreter that is missing is skipped with a message, except under CI=true, where it fails.
PYTHON ?= python3
VENV ?= .venv
DEMO_VENV ?= .venv-demo
RUNTIME_VENV ?= .venv-runtime
# The first of python3.X on PATH or pyenv's python that actually starts.
find_python = $(firstword $(foreach c,python$(1) $(wildcard $(HOME)/.pyenv/versions/$(1).*/bin/python$(1)),$(shell $(c) -c 'import sys' >/dev/null 2>&1 && echo $(c))))
PYTHON_OLDEST ?= $(call find_python,3.10)
PYTHON_NEWEST ?= $(call find_python,3.13)
# PyTorch's CPU-only wheels live on its own index: asked for when reachable (a normal machine with
# internet), so pip takes torch 2.13.0+cpu instead of PyPI's CUDA build with its ~15 nvidia packages.
# Where it is not reachable (these machines), pip finds the CPU wheel kept on disk.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_INDEX_OPTION = $(shell $(PYTHON) -c "import urllib.request as u; u.urlopen('$(TORCH_INDEX)/torch/', timeout=5)" >/dev/null 2>&1 && echo --extra-index-url $(TORCH_INDEX))
DEMO_ARGS = --overlay --json --no-progress

.PHONY: chromium-installed vulkan-installed dicom3tools-installed test-webgpu test-dicom test test-full test-runtime test-oldest test-newest test-lowest test-ray test-openvino test-browser demo lint clean

$(VENV)/.installed: pyproject.toml export/pyproject.toml runtime/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q $(TORCH_INDEX_OPTION) -c constraints.txt -e . -e ./runtime -e './runtime[serve,dicom]' -e ./export pytest selenium
	touch $@

test: test-full test-runtime test-oldest test-newest test-lowest test-ray test-openvino test-browser test-webgpu test-dicom

test-full: $(VENV)/.installed
	$(VENV)/bin/python -m pytest

# The runtime's tests in an environment holding the runtime alone (what a laptop installs):
# LVUNET_RUNTIME_ONLY=1 makes a test fail if torch or onnx could be imported there.
# The runtime is installed (not editable) in the envs below, so its files are their prerequisites too: a
# changed module or bundled model reinstalls it instead of testing a stale copy.
RUNTIME_FILES := $(shell find runtime/lvunet_runtime -type f -not -path '*/__pycache__/*')
$(RUNTIME_VENV)/.installed: runtime/pyproject.toml constraints.txt $(RUNTIME_FILES)
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install -q -c constraints.txt ./runtime pytest
	touch $@

test-runtime: $(RUNTIME_VENV)/.installed
	LVUNET_RUNTIME_ONLY=1 $(RUNTIME_VENV)/bin/python -m pytest tests/runtime -p no:cacheprovider

# One runtime-only environment per (interpreter, constraints): its tests, then the demo into a temp folder.
define runtime_env
	@if [ -z "$(1)" ]; then \
		if [ "$$CI" = "true" ]; then echo "$(3): no Python $(4) interpreter found (CI=true: failing)"; exit 1; fi; \
		echo "$(3): skipped: no Python $(4) interpreter found (set $(5)=...)"; exit 0; \
	fi; \
	set -e; rm -rf .venv-$(3); $(1) -m venv .venv-$(3); \
	.venv-$(3)/bin/python -m pip install -q -c $(2) ./runtime pytest; \
	LVUNET_RUNTIME_ONLY=1 .venv-$(3)/bin/python -m pytest tests/runtime -q -p no:cacheprovider; \
	out=$$(mktemp -d); \
	.venv-$(3)/bin/lvunet-infer 'runtime/lvunet_runtime/samples/kvasir-seg__*.jpg' --out $$out/polyp $(DEMO_ARGS); \
	.venv-$(3)/bin/lvunet-infer 'runtime/lvunet_runtime/samples/busi__*.jpg' --model breast-ultrasound --out $$out/bu $(DEMO_ARGS); \
	rm -rf $$out; echo "$(3): $$(.venv-$(3)/bin/python --version), runtime tests and demo passed"
endef

test-oldest:
	$(call runtime_env,$(PYTHON_OLDEST),constraints.txt,oldest,3.10,PYTHON_OLDEST)

test-newest:
	$(call runtime_env,$(PYTHON_NEWEST),constraints.txt,newest,3.13,PYTHON_NEWEST)

test-lowest:
	$(call runtime_env,$(PYTHON_OLDEST),constraints-lowest.txt,lowest,3.10,PYTHON_OLDEST)

# Ray's tests live in tests/ray/ (marker ray; the main suite, where Ray is absent, does not collect them).
.venv-ray/.installed: runtime/pyproject.toml constraints.txt $(RUNTIME_FILES)
	$(PYTHON) -m venv .venv-ray
	.venv-ray/bin/python -m pip install -q -c constraints.txt './runtime[ray]' pytest
	touch $@

test-ray: .venv-ray/.installed
	.venv-ray/bin/python -m pytest -m ray tests/ray -p no:cacheprovider -W ignore::UserWarning

# onnxruntime-openvino provides the same `onnxruntime` module as onnxruntime, so it cannot sit beside it:
# the runtime goes in without its dependencies, then its dependencies with onnxruntime-openvino.
.venv-openvino/.installed: runtime/pyproject.toml constraints.txt $(RUNTIME_FILES)
	$(PYTHON) -m venv .venv-openvino
	.venv-openvino/bin/python -m pip install -q --no-deps ./runtime
	.venv-openvino/bin/python -m pip install -q -c constraints.txt onnxruntime-openvino numpy opencv-python-headless pillow typer rich pytest
	touch $@

test-openvino: .venv-openvino/.installed
	.venv-openvino/bin/python -m pytest -m openvino tests/openvino -p no:cacheprovider

# The browser test drives Debian's own chromium through Debian's chromedriver (same version, from apt);
# browser downloads by test libraries (Selenium Manager, playwright install) cannot work on these machines.
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)
APT_GET = $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0
chromium-installed:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		echo "installing Debian's chromium and chromium-driver (apt)"; \
		$(APT_GET) install chromium chromium-driver >/dev/null || \
		{ $(APT_GET) update >/dev/null && $(APT_GET) install chromium chromium-driver >/dev/null; }; \
	fi

test-browser: $(VENV)/.installed chromium-installed
	$(VENV)/bin/python -m pytest -m browser tests/browser -p no:cacheprovider

# WebGPU on a machine without a GPU: the plugin (the runtime's [webgpu] extra, added to .venv-runtime: it
# loads only with --provider webgpu), the Vulkan loader from apt, and SwiftShader's Vulkan driver, which
# Debian's chromium package ships (in chromium-common: dpkg -S vk_swiftshader_icd.json).
vulkan-installed:
	@if ! ldconfig -p | grep -q 'libvulkan.so.1 '; then \
		echo "installing Debian's libvulkan1 (apt)"; \
		$(APT_GET) install --no-install-recommends libvulkan1 >/dev/null || \
		{ $(APT_GET) update >/dev/null && $(APT_GET) install --no-install-recommends libvulkan1 >/dev/null; }; \
	fi

$(RUNTIME_VENV)/.webgpu: $(RUNTIME_VENV)/.installed
	$(RUNTIME_VENV)/bin/python -m pip install -q -c constraints.txt './runtime[webgpu]'
	touch $@

test-webgpu: $(RUNTIME_VENV)/.webgpu chromium-installed vulkan-installed
	icd=$$(dpkg -S vk_swiftshader_icd.json | sed 's/^[^:]*: //'); \
	test -n "$$icd" || { echo "test-webgpu: chromium ships no vk_swiftshader_icd.json"; exit 1; }; \
	XDG_RUNTIME_DIR=$${XDG_RUNTIME_DIR:-$$(mktemp -d)} VK_ICD_FILENAMES=$$icd \
		$(RUNTIME_VENV)/bin/python -m pytest -m webgpu tests/webgpu -p no:cacheprovider

$(DEMO_VENV)/.installed: runtime/pyproject.toml $(RUNTIME_FILES)
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install -q ./runtime
	touch $@

demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/lvunet-infer 'runtime/lvunet_runtime/samples/kvasir-seg__*.jpg' --out lvunet-output/polyp --overlay --json
	$(DEMO_VENV)/bin/lvunet-infer 'runtime/lvunet_runtime/samples/busi__*.jpg' --model breast-ultrasound --out lvunet-output/breast-ultrasound --overlay --json

lint: $(VENV)/.installed
	$(VENV)/bin/python -m pip install -q ruff && $(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) $(DEMO_VENV) $(RUNTIME_VENV) .venv-oldest .venv-newest .venv-lowest .venv-ray .venv-openvino .venv-dicom lvunet-output

# DICOM: the runtime with its [dicom] extra in a venv of its own (the runtime-only envs stay without it),
# imagecodecs to make JPEG Lossless test files, and Debian's dicom3tools for dciodvfy on every SEG written.
dicom3tools-installed:
	@if ! command -v dciodvfy >/dev/null; then \
		echo "installing Debian's dicom3tools (apt)"; \
		$(APT_GET) install --no-install-recommends dicom3tools >/dev/null || \
		{ $(APT_GET) update >/dev/null && $(APT_GET) install --no-install-recommends dicom3tools >/dev/null; }; \
	fi

.venv-dicom/.installed: runtime/pyproject.toml constraints.txt $(RUNTIME_FILES)
	$(PYTHON) -m venv .venv-dicom
	.venv-dicom/bin/python -m pip install -q -c constraints.txt './runtime[dicom,serve]' imagecodecs pytest
	touch $@

test-dicom: .venv-dicom/.installed dicom3tools-installed
	.venv-dicom/bin/python -m pytest -m dicom tests/dicom -p no:cacheprovider
