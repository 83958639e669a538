# The README's two commands: `make demo` and `make test`. Both install what is missing first and
# are safe to repeat (the install step reruns only when pyproject.toml changes).
VENV  ?= .venv
PY    := $(VENV)/bin/python
# torch goes in first, pinned, unless the venv already has one (GPU users keep their own build):
# a bare `torch` requirement in a fresh venv would resolve to a multi-GB CUDA build.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.lead-ray-installed

.PHONY: setup demo test lint bench docs browser
setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH)"
	$(PY) -m pip install -e ".[test]"
	touch $(STAMP)

demo: setup
	WANDB_MODE=offline $(VENV)/bin/lead-ray demo

test: setup lint
	WANDB_MODE=offline $(PY) -m pytest -q

# A real browser for the report's rendering test (`make browser`; .ci/run does it before `make test`):
# Debian's chromium, installed when root and apt-get are there. `make test` never installs system
# packages: without a browser that one test is skipped and says why.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } ; } || \
	echo "no chromium (not root, or no apt-get): the browser test of the report will be skipped"

lint: setup   # ruff: the rules and the 120-column format in pyproject.toml
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) bench/micro/ingest.py

docs: setup   # regenerate docs/CONFIG.md from lead_ray/config/
	{ printf '# Configuration reference\n\nGenerated from `lead_ray/config/` by `make docs` (a test checks it is current).\nEvery key can be set in a YAML file (`--config FILE`) and overridden with `--set key=value`.\n\n'; \
	  $(VENV)/bin/lead-ray config --reference; } > docs/CONFIG.md
