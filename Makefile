# Causeway: `make help` lists the targets. A fresh Debian machine needs only `make demo` and `make test`;
# each installs what is missing first (make setup).
SHELL := /bin/bash
.DEFAULT_GOAL := help

STACK    := testcontainers/native/stack.sh
SERVICES := testcontainers/native/services.sh
CARGO    ?= cargo
# Build and test with the same target set, so that dependencies are not rebuilt between the two.
BUILD    := $(CARGO) build --workspace --all-targets --locked
TOPOLOGY := domains/orders/topology.toml

.PHONY: help setup up down status build lint test demo bench check-docker clean wipe

help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## Install what is missing: build packages, Kafka/Redis/ClickHouse, Rust dependencies.
	@bash testcontainers/native/setup.sh
	@bash $(STACK) install
	@$(CARGO) fetch --locked

up: build ## Start the local stack (Kafka, Redis, ClickHouse, schema registry) on 127.0.0.1; a no-op when it runs.
	@bash $(STACK) up

down: ## Stop the demo's services and the local stack.
	@bash $(SERVICES) stop
	@bash $(STACK) down

status: ## Show what runs: the stack, then the services.
	@bash $(STACK) status || true
	@bash $(SERVICES) status || true

build: ## Build every crate, binary and test (debug).
	@$(BUILD)

lint: build ## rustfmt, clippy (warnings are errors), and the Avro contracts against their published versions.
	@$(CARGO) fmt --all -- --check
	@$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	@target/debug/causeway schema check

test: setup build lint ## Run every test against the real stack (started if needed, stopped after if it was not running).
	@bash testcontainers/native/test.sh

demo: setup up ## Start the stack and every service, provision topics, and show the result.
	@bash testcontainers/native/demo.sh

bench: setup up ## Benchmarks (release builds): figures beside a baseline measured in the same run.
	@$(CARGO) build --release --locked -p schema-registry -p aggregate-processor -p command-gateway -p projector-redis -p projector-clickhouse -p dlq-reprocessor -p saga-orchestrator -p causeway-bench
	@target/release/causeway-bench registry
	@target/release/causeway-bench baseline-check
	@target/release/causeway-bench processor
	@target/release/causeway-bench projectors
	@target/release/causeway-bench dlq
	@target/release/causeway-bench sagas

check-docker: ## Compile the Docker backend of the test stack (for machines with a Docker engine).
	@$(CARGO) check -p causeway-testcontainers --features docker --locked

clean: down ## Stop everything and remove build output.
	@$(CARGO) clean

wipe: down ## Stop everything and delete the stack's data, logs and jars (.stack/).
	@bash $(STACK) wipe
