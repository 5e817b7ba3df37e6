# tether — the two commands a newcomer needs are `make demo` and `make test`.
# Everything they need is installed by the targets themselves (a venv in .venv; promtool, the
# Kubernetes binaries and the node images under ~/.cache/tether).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: venv demo test test-local lint unit bench clean
.DEFAULT_GOAL := test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

## The main job: the example AgentTask end to end on this machine, through the sidecar.
demo: venv
	$(PY) -m tether_examples.demo

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The tools the tests run, installed on first use (cached in ~/.cache/tether/tools) and passed
# by path, so a fresh machine runs every test instead of skipping; a failed install stops here.
TOOLS := PROMTOOL="$$(hack/promtool.sh)" && HELM="$$(hack/helm.sh)" \
	&& ACTIONLINT="$$(hack/actionlint.sh)" && SHELLCHECK="$$(hack/actionlint.sh --shellcheck)" \
	&& PROMETHEUS="$$(hack/observability.sh prometheus)" \
	&& ALERTMANAGER="$$(hack/observability.sh alertmanager)" && JAEGER="$$(hack/jaeger.sh)" \
	&& PROMETHEUS_KUBERNETES="$$(hack/prometheus-kubernetes.sh)" \
	&& PROMETHEUS_OPERATOR_CRDS="$$(hack/prometheus-operator-crds.sh)" \
	&& export PROMTOOL HELM ACTIONLINT SHELLCHECK PROMETHEUS ALERTMANAGER JAEGER \
	PROMETHEUS_KUBERNETES PROMETHEUS_OPERATOR_CRDS &&

unit: venv
	$(TOOLS) $(PY) -m pytest tests/unit -q

## The whole suite: lint, types, every tier, on the local cluster (started here; needs root).
test: lint
	@if [ -z "$$KUBECONFIG" ]; then $(MAKE) --no-print-directory cluster-up; fi
	$(TOOLS) $(PY) -m pytest -q

## Everything that needs no cluster (no root): unit, sidecar, crash, examples.
test-local: lint
	$(TOOLS) $(PY) -m pytest -q -m "not cluster and not node"

## Benchmarks (figures in docs/benchmarks.md); LiteLLM goes into its own venv, not this one.
bench: venv
	$(PY) -m tests.bench.sidecar_latency
	$(PY) -m tests.bench.durability

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

-include hack/cluster.mk
