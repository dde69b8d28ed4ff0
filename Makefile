# The README starts with `make demo` and `make test`; CI runs `make test`.
.DEFAULT_GOAL := help
SHELL := /usr/bin/env bash

PLUGIN_VERSION ?= v0.1.0

.PHONY: help demo test unit e2e fuzz bench build vault fmt clean cluster

help:
	@echo "make demo   - run Vault with the plugin against a local stand-in API and read a token"
	@echo "make test   - run every test: vet, unit tests with -race, short fuzzing, end-to-end tests"
	@echo "make bench  - measure token reads against a real Vault (see BENCHMARKS.md)"
	@echo "make build  - build the plugin into build/plugins/"
	@echo "make vault  - build the pinned Vault into the cache and print its path"
	@echo "make cluster - start a local three-node Vault cluster (scripts/cluster.sh stop ends it)"

demo:
	@scripts/demo.sh

test:
	@scripts/test.sh

unit:
	go test -race -count=1 ./...

e2e:
	VAULT_BIN=$$(scripts/vault.sh) go test -tags e2e -count=1 -timeout 40m ./e2e/

fuzz:
	@scripts/test.sh fuzz

bench:
	@scripts/bench.sh

build:
	@PLUGIN_VERSION=$(PLUGIN_VERSION) scripts/build.sh

vault:
	@scripts/vault.sh

cluster:
	@PLUGIN_VERSION=$(PLUGIN_VERSION) scripts/cluster.sh start

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf build
