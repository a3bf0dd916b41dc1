"""Loading, describing and closing models; load failures as exceptions."""

from __future__ import annotations

import json
import re
import threading

import numpy as np
import pytest

from conftest import MODELS, model_path, pixels, run_cli

import lofi


def cli_info(name: str) -> dict:
    out = run_cli("info", model_path(name)).stdout
    fields = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


@pytest.mark.parametrize("name", ["tiny-gray.lofi", "tiny-rgb.lofi", "tiny-complex.lofi", "tiny-gray-sigma.lofi"])
def test_info_agrees_with_lofi_info(name):
    cli = cli_info(name)
    with lofi.Model(model_path(name)) as m:
        info = m.info
    assert str(info.parameter_count) == cli["parameters"]
    assert cli["training resolution"] == f"{info.image_size} x {info.image_size}"
    assert cli["channels"].startswith(f"{info.channels_in} in, {info.channels_out} out")
    assert json.loads(cli["configuration JSON"]) == info.config
    assert json.loads(cli["notes"]) == info.notes
    assert (info.config["c_in"], info.config["N"], info.config["M"]) == (info.channels_in, info.rings, info.angles)
    assert info.device == "cpu" and info.precision == "f32"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", info.digest) and info.format_version == "1"
    assert info.as_dict()["channels_out"] == info.channels_out


def test_noise_level_range(sigma_model, gray):
    assert sigma_model.info.noise_level_aware and sigma_model.info.noise_level_range == (0.0, 0.2)
    assert not gray.info.noise_level_aware and gray.info.noise_level_range is None


def test_a_file_without_digest_reports_an_empty_one():
    with lofi.Model(model_path("tiny-gray-nodigest.lofi")) as m:
        assert m.info.digest == "" and m.metadata("digest") == ""


def test_metadata_keys(gray):
    assert json.loads(gray.metadata("config")) == gray.info.config
    with pytest.raises(lofi.InvalidArgumentError, match="unknown metadata key 'nope'") as e:
        gray.metadata("nope")
    assert e.value.status == 1


def test_from_bytes_is_the_same_model(gray):
    data = (MODELS / "tiny-gray.lofi").read_bytes()
    x = pixels(12, 16)
    with lofi.Model.from_bytes(data) as m:
        assert m.info.digest == gray.info.digest
        np.testing.assert_array_equal(m.reconstruct(x, threads=1), gray.reconstruct(x, threads=1))
    with lofi.Model.from_bytes(bytearray(data)) as m:  # any bytes-like
        assert m.info.parameter_count == gray.info.parameter_count


def test_context_manager_and_close():
    x = pixels(12, 16)
    with lofi.Model(model_path("tiny-gray.lofi")) as m:
        assert not m.closed
        m.reconstruct(x)
    assert m.closed
    for call in (lambda: m.reconstruct(x), lambda: m.metadata("config"), lambda: m.memory_requirements(8, 8)):
        with pytest.raises(lofi.ModelClosedError, match="closed") as e:
            call()
        assert e.value.status == 1 and isinstance(e.value, ValueError)
    m.close()  # idempotent


def test_close_waits_for_a_running_call():
    # close() on one thread while another reconstructs: the free is deferred to the end of the
    # call (the handle is never freed under a running call), and later calls are refused.
    m = lofi.Model(model_path("tiny-gray.lofi"))
    started, release = threading.Event(), threading.Event()
    results = {}

    def progress(done, total):
        started.set()
        release.wait(10)

    def work():
        results["y"] = m.reconstruct(pixels(40, 40), budget="4MiB", threads=1, progress=progress)

    t = threading.Thread(target=work)
    t.start()
    assert started.wait(30)
    m.close()
    assert m.closed
    release.set()
    t.join(60)
    assert results["y"].shape == (40, 40) and np.isfinite(results["y"]).all()
    with pytest.raises(lofi.ModelClosedError):
        m.reconstruct(pixels(12, 16))


def test_memory_requirements(gray):
    lo, per = gray.memory_requirements(16, 12)
    assert per == gray.info.bytes_per_pixel and lo > per
    with pytest.raises(lofi.BudgetTooSmallError, match="needs at least"):
        gray.reconstruct(pixels(12, 16), budget=lo - 1)
    assert gray.reconstruct(pixels(12, 16), budget=lo).shape == (12, 16)
    with pytest.raises(lofi.InvalidArgumentError, match="out of range"):
        gray.memory_requirements(0, 12)


def test_load_failures(tmp_path):
    with pytest.raises(lofi.LofiIOError) as e:
        lofi.Model(tmp_path / "missing.lofi")
    assert e.value.status == 4 and "missing.lofi" in e.value.message and isinstance(e.value, OSError)

    truncated = tmp_path / "truncated.lofi"
    truncated.write_bytes((MODELS / "tiny-gray.lofi").read_bytes()[:500])
    with pytest.raises(lofi.InvalidModelError) as e:
        lofi.Model(truncated)
    assert e.value.status == 3 and e.value.message.startswith("lofi_load: ")

    with pytest.raises(lofi.InvalidModelError):
        lofi.Model.from_bytes(b"")
    with pytest.raises(lofi.InvalidArgumentError, match="NUL"):
        lofi.Model("a\0b.lofi")
    with pytest.raises(lofi.InvalidArgumentError, match="path must be"):
        lofi.Model(42)
    with pytest.raises(lofi.InvalidArgumentError, match="bytes-like"):
        lofi.Model.from_bytes(3.5)


def test_device_errors():
    for bad in ("gpu", "cuda:x", "cpu:1", 3):
        with pytest.raises(lofi.InvalidArgumentError, match="device"):
            lofi.Model(model_path("tiny-gray.lofi"), device=bad)
    with pytest.raises(lofi.DeviceUnavailableError) as e:  # no machine has 100 GPUs
        lofi.Model(model_path("tiny-gray.lofi"), device="cuda:99")
    assert e.value.status == 6 and e.value.status_name == "LOFI_STATUS_DEVICE_UNAVAILABLE"
    with pytest.raises(lofi.InvalidArgumentError, match="precision"):
        lofi.Model(model_path("tiny-gray.lofi"), precision="f8")


def test_cuda_matches_cpu(gray):
    try:
        model = lofi.Model(model_path("tiny-gray.lofi"), device="cuda")
    except lofi.DeviceUnavailableError:
        pytest.skip("no CUDA device on this machine")
    with model:
        assert model.info.device == "cuda:0"
        x = pixels(12, 16, seed=3)
        np.testing.assert_allclose(model.reconstruct(x), gray.reconstruct(x, threads=1), atol=1e-4)
