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

# MKL (inside libtorch) picks its kernels by CPU vendor. On an AMD EPYC its default path rounds a
# row of a matrix product differently depending on how many rows the product has, so tiles and
# streamed batches stop being bit-identical to the whole image (tests/stream.rs, threads = 1);
# its AVX-512 path, the one it takes on Xeons, keeps them identical. Hosts that need bit-identical
# tiles on such CPUs can set the same variable.
ifeq ($(origin MKL_CBWR),undefined)
ifneq ($(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null && echo yes),)
export MKL_CBWR := AVX512
endif
endif
LOFI := target/release/lofi

.PHONY: help setup build test test-rust test-c demo bench bench-targets install header fmt lint clean

help:
	@echo "make demo     reconstruct a bundled image with the default model (installs libtorch once)"
	@echo "make test     every test: rustfmt, clippy and rustdoc (make lint), cargo tests, then the C/C++ tests under ctest"
	@echo "make build    release CLI (target/release/lofi) and libraries (liblofi.so, liblofi.a)"
	@echo "make bench    throughput and memory figures (lofi bench)"
	@echo "make bench-targets  speed targets (f32/bf16 inference, training, denoiser) vs the reference loop"
	@echo "make install  PREFIX=... libraries, headers, pkg-config and CMake package files"
	@echo "make header   regenerate include/lofi.h with cbindgen"
	@echo "make test-python  install ./python (pip) into the torch venv and run its pytest suite"

$(TORCH_VENV)/.lofi-ready:
	scripts/setup-torch.sh >/dev/null

setup: $(SETUP)

build: $(SETUP)
	$(CARGO) build --release --lib --bins

test: lint test-rust test-c test-python

test-rust: $(SETUP)
	$(CARGO) test --release

# A Python with astropy for tests/formats_fits_astropy.rs (lofi's FITS outputs read back by an
# independent implementation): a virtual environment under ~/.cache/lofi, installed once.
export LOFI_ASTROPY_PYTHON ?= $(shell scripts/setup-astropy.sh --print-python)
.PHONY: setup-astropy
test-rust: setup-astropy
setup-astropy:
	scripts/setup-astropy.sh >/dev/null

test-c: build
	scripts/run-c-tests.sh "$(BUILD_DIR)"

.PHONY: test-python
test-python: build
	python/run-tests.sh

demo: build
	$(LOFI) demo

bench: build
	$(LOFI) bench

# The speed targets of issue 9 on 2 threads, beside the reference-loop stand-in (needs python with torch).
bench-targets: build
	$(LOFI) bench --targets --threads 2 --reference-python "$${VIRTUAL_ENV:-/usr}/bin/python"

install: build
	scripts/install.sh "$(PREFIX)"

header: $(SETUP)
	LOFI_UPDATE_HEADER=1 $(CARGO) test --release --test header

fmt:
	$(CARGO) fmt

lint: $(SETUP)
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --release --no-deps --lib

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
