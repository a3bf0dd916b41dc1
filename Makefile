# Entry point for people who are not Rust users. `make demo`, `make test`; see README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PREFIX ?= /usr/local
BUILD_DIR ?= build/c

# libtorch: an existing LIBTORCH is used as it is; otherwise the torch wheel in a virtual
# environment under ~/.cache/lofi (scripts/setup-torch.sh, one time, shared by every clone).
ifeq ($(strip $(LIBTORCH)),)
TORCH_VENV := $(shell scripts/setup-torch.sh --print-venv)
export VIRTUAL_ENV := $(TORCH_VENV)
export PATH := $(TORCH_VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
SETUP := $(TORCH_VENV)/.lofi-ready
else
SETUP :=
endif

CARGO ?= cargo
LOFI := target/release/lofi

.PHONY: help setup build test test-rust test-c demo bench install header fmt lint clean

help:
	@echo "make demo     reconstruct a bundled image with the default model (installs libtorch once)"
	@echo "make test     every test: clippy (make lint), cargo tests, then the C/C++ tests under ctest"
	@echo "make build    release CLI (target/release/lofi) and libraries (liblofi.so, liblofi.a)"
	@echo "make bench    throughput and memory figures (lofi bench)"
	@echo "make install  PREFIX=... libraries, headers, pkg-config and CMake package files"
	@echo "make header   regenerate include/lofi.h with cbindgen"

$(TORCH_VENV)/.lofi-ready:
	scripts/setup-torch.sh >/dev/null

setup: $(SETUP)

build: $(SETUP)
	$(CARGO) build --release --lib --bins

test: lint test-rust test-c

test-rust: $(SETUP)
	$(CARGO) test --release

test-c: build
	scripts/run-c-tests.sh "$(BUILD_DIR)"

demo: build
	$(LOFI) demo

bench: build
	$(LOFI) bench

install: build
	scripts/install.sh "$(PREFIX)"

header: $(SETUP)
	LOFI_UPDATE_HEADER=1 $(CARGO) test --release --test header

fmt:
	$(CARGO) fmt

lint: $(SETUP)
	$(CARGO) clippy --release --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf build

# MPI (issue 11): MPICH from the PyPI wheel into the torch venv, for the 2-rank test that
# `cargo test` runs (tests/scale_cli.rs) and the gigapixel demo (not part of `make test`).
.PHONY: mpi bench-gigapixel
mpi: $(SETUP)
	scripts/install-mpich.sh
test-rust: mpi
bench-gigapixel: build mpi
	scripts/bench-gigapixel.sh
