.PHONY: setup up down test test-fast fuzz bench clean images
PY := .venv/bin/python

setup:
	@scripts/setup.sh

# One real node (its agent runs the pods with runc; the pods' network lives in the network
# namespace ketch-host, standing in for the machine's, so nothing of the host's network changes),
# plus NODES simulated ones (default none).
NODES ?= 0
up: setup images
	.venv/bin/ketch server --write-kubeconfig $(CURDIR)/.ketch/kubeconfig --data-dir $(CURDIR)/.ketch/data \
		--node-netns ketch-host --simulate-nodes $(NODES)

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
