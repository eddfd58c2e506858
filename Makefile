.PHONY: setup up test test-fast fuzz bench clean images
PY := .venv/bin/python

setup:
	@scripts/setup.sh

# Until the node agent runs real containers, `make up` brings simulated nodes (NODES=0 for none).
NODES ?= 3
up: setup
	.venv/bin/ketch server --write-kubeconfig $(CURDIR)/.ketch/kubeconfig --data-dir $(CURDIR)/.ketch/data \
		--simulate-nodes $(NODES)

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
	rm -rf .venv .ketch
