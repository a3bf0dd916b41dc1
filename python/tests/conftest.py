"""Shared fixtures: the repository's fixture models and the CLI (an independent path through the
same engine: results of the Python package must equal the CLI's)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
MODELS = FIXTURES / "models"
CLI = Path(os.environ.get("LOFI_CLI", ROOT / "target" / "release" / "lofi"))


def model_path(name: str) -> str:
    return str(MODELS / name)


@pytest.fixture(scope="session")
def lofi_mod():
    import lofi

    return lofi


@pytest.fixture(scope="session")
def gray(lofi_mod):
    with lofi_mod.Model(model_path("tiny-gray.lofi")) as m:
        yield m


@pytest.fixture(scope="session")
def rgb(lofi_mod):
    with lofi_mod.Model(model_path("tiny-rgb.lofi")) as m:
        yield m


@pytest.fixture(scope="session")
def sigma_model(lofi_mod):
    with lofi_mod.Model(model_path("tiny-gray-sigma.lofi")) as m:
        yield m


@pytest.fixture(scope="session")
def plain_sigma_model(lofi_mod):
    # Noise-level aware and without the Fourier filter, so that it takes a self-ensemble.
    with lofi_mod.Model(model_path("tiny-gray-sigma-plain.lofi")) as m:
        yield m


@pytest.fixture(scope="session")
def complex_model(lofi_mod):
    with lofi_mod.Model(model_path("tiny-complex.lofi")) as m:
        yield m


def pixels(h: int, w: int, c: int | None = None, seed: int = 0) -> np.ndarray:
    """A smooth image with some texture in [0, 1], float32."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.3 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    shape = (h, w) if c is None else (h, w, c)
    noise = rng.normal(0, 0.05, size=shape).astype(np.float32)
    if c is not None:
        base = base[:, :, None]
    return (base + noise).astype(np.float32)


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    if not CLI.exists():
        pytest.fail(f"{CLI} is missing: run `make build` (the tests compare against the CLI)")
    proc = subprocess.run([str(CLI), *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"lofi {' '.join(args)} failed:\n{proc.stderr}")
    return proc
