.PHONY: setup up test test-fast fuzz bench clean
PY := .venv/bin/python

setup:
	@scripts/setup.sh

up: setup
	.venv/bin/ketch server --write-kubeconfig $(CURDIR)/.ketch/kubeconfig --data-dir $(CURDIR)/.ketch/data

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
