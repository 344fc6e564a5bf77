# Two entry points: `make demo` and `make test`. Both set everything up on a fresh machine. CI runs `make lint`
# then `make test` (.ci/run).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The device side as a device has it: only the agent with ONNX Runtime and LiteRT, no PyTorch, no netcut (tests
# run the agent from it).
AGENT_VENV := .venv-agent
AGENT_STAMP := $(AGENT_VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

# Exact versions for everything installed (pyproject.toml declares ranges)
CONSTRAINTS := constraints.txt

.PHONY: demo test test-fast lint docs venv agent-venv dataset browser dist arm64-check clean bench

demo: venv dataset
	$(VENV)/bin/netcut demo

test: venv agent-venv dataset browser
	$(PY) -m pytest -q --durations=30

# Everything but the tests marked slow: the loop while working (CI runs `make test`, everything)
test-fast: venv agent-venv dataset browser
	$(PY) -m pytest -q -m "not slow"

# ruff (style, imports, bugs, annotations) on everything; mypy (untyped definitions refused) on the package;
# import-linter: the layers and no import cycles (contracts in pyproject.toml)
lint: venv
	$(VENV)/bin/ruff check src tests benchmarks agent/src tools
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The documentation site from docs/ into site/, offline; --strict: a broken link or anchor fails the build
docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

venv: $(STAMP)

# netcut ships the agent's timing core (agent/src) inside it: one install.
$(STAMP): pyproject.toml agent/pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	# Ray in a resolve of its own: resolved together with the rest, pip backtracked to a grpcio with no wheel
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[ray]'
	touch $(STAMP)

agent-venv: $(AGENT_STAMP)

$(AGENT_STAMP): agent/pyproject.toml $(CONSTRAINTS)
	test -x $(AGENT_VENV)/bin/python || $(PYTHON) -m venv $(AGENT_VENV)
	$(AGENT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AGENT_VENV)/bin/python -m pip install --quiet -c $(CONSTRAINTS) -e './agent[onnxruntime,litert]'
	touch $(AGENT_STAMP)

# The real Fashion-MNIST ships as a Debian package; install it when we can (root), else say how.
dataset:
	@if [ -f $(FMNIST) ]; then exit 0; fi; \
	if [ "$$(id -u)" = "0" ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
		|| echo "warning: could not install dataset-fashion-mnist; fashion-mnist runs will fail"; \
	else \
		echo "Fashion-MNIST is missing; install it with: sudo apt-get install -y dataset-fashion-mnist"; \
	fi

# The interactive report's tests drive Debian's chromium through its chromedriver; install them when we can (root),
# else say how.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = "0" ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
		>/dev/null || echo "warning: could not install chromium; the report's browser tests will fail"; \
	else \
		echo "chromium is missing; install it with: sudo apt-get install -y chromium chromium-driver"; \
	fi

bench: venv dataset
	$(PY) benchmarks/latency_estimators.py
	$(PY) benchmarks/retraining.py
	$(PY) benchmarks/netcut_vs_exhaustive.py

# Both wheels into dist/: netcut (with the agent's timing core inside) and the agent alone, pure Python, to copy to a
# board with no package index (agent/README.md says how to install it there).
dist: venv
	rm -rf dist
	$(PY) -m pip wheel --quiet --no-deps -w dist . ./agent
	@ls -1 dist

# The agent on 64-bit ARM Debian (bookworm) under qemu user-mode emulation: installs its wheel with each runtime in a
# clean venv and runs measure and serve (root; about 15 minutes; writes docs/benchmarks/arm64.md). Not part of CI.
arm64-check: dist
	bash tools/arm64_check.sh

clean:
	rm -rf $(VENV) $(AGENT_VENV) build dist site *.egg-info src/*.egg-info .pytest_cache
