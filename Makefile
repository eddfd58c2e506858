.PHONY: setup up down test test-fast fuzz bench clean images
PY := .venv/bin/python

setup:
	@scripts/setup.sh

# NODES real nodes (default 1; their agents run the pods with runc), each in a network namespace
# standing in for a machine (ketch-host, ketch-host-2, ...) on one underlay, plus SIMULATED
# simulated ones (default none).
NODES ?= 1
SIMULATED ?= 0
up: setup images
	.venv/bin/ketch server --write-kubeconfig $(CURDIR)/.ketch/kubeconfig --data-dir $(CURDIR)/.ketch/data \
		--node-netns ketch-host --nodes $(NODES) --simulate-nodes $(SIMULATED)

# After `make up` stopped: remove its pods (containers outlive the agent, which adopts them on restart).
down: setup
	.venv/bin/ketch killall --data-dir $(CURDIR)/.ketch/data

# The bundled images (busybox and the book's stand-ins) in the image store `make up` uses.
images: setup
	scripts/build-images.sh --data-dir $(CURDIR)/.ketch/data

test: setup
	$(PY) -m pytest -q -p no:cacheprovider -m "not fuzz" tests

fuzz: setup
	$(PY) -m pytest -q -p no:cacheprovider -m fuzz tests

test-fast: setup
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" tests/unit

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	[ ! -x .venv/bin/ketch ] || .venv/bin/ketch killall --data-dir $(CURDIR)/.ketch/data
	rm -rf .venv .ketch
