"""model.reconstruct against the CLI; zero-copy and strides; bad input as exceptions."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from conftest import model_path, pixels, run_cli

import lofi


def cli_reconstruct(tmp_path, model: str, image: np.ndarray, *extra: str) -> np.ndarray:
    src, dst = tmp_path / "in.npy", tmp_path / "out.npy"
    np.save(src, image)
    run_cli("reconstruct", "--model", model_path(model), "--input", str(src), "--output", str(dst),
            "--threads", "1", *extra)
    return np.load(dst)


# ---- the same numbers as the CLI -------------------------------------------------------------

def test_whole_image_equals_the_cli(tmp_path, gray):
    x = pixels(12, 16)
    ours = gray.reconstruct(x, threads=1)
    assert ours.shape == (12, 16) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, cli_reconstruct(tmp_path, "tiny-gray.lofi", x))


def test_region_and_shape_equal_the_cli(tmp_path, gray):
    x = pixels(12, 16, seed=1)
    ours = gray.reconstruct(x, region=(2.5, 1, 13, 9.25), shape=(17, 23), threads=1)
    assert ours.shape == (17, 23)
    theirs = cli_reconstruct(tmp_path, "tiny-gray.lofi", x, "--region", "2.5,1,13,9.25", "--width", "23",
                             "--height", "17")
    np.testing.assert_array_equal(ours, theirs)


def test_rgb_equals_the_cli(tmp_path, rgb):
    x = pixels(10, 14, 3, seed=2)
    ours = rgb.reconstruct(x, shape=(19, 27), threads=1)
    assert ours.shape == (19, 27, 3)
    np.testing.assert_array_equal(ours, cli_reconstruct(tmp_path, "tiny-rgb.lofi", x, "--width", "27",
                                                        "--height", "19"))


def test_sigma_equals_the_cli(tmp_path, sigma_model):
    x = pixels(12, 16, seed=3)
    ours = sigma_model.reconstruct(x, sigma=25 / 255, threads=1)
    np.testing.assert_array_equal(ours, cli_reconstruct(tmp_path, "tiny-gray-sigma.lofi", x, "--sigma", "25/255"))
    # The level matters (the test would pass for any sigma otherwise).
    assert not np.array_equal(ours, sigma_model.reconstruct(x, sigma=5 / 255, threads=1))


def test_self_ensemble_equals_the_cli(tmp_path, plain_sigma_model, sigma_model):
    x = pixels(12, 16, seed=6)
    model = plain_sigma_model
    ours = model.reconstruct(x, sigma=25 / 255, threads=1, self_ensemble=8)
    theirs = cli_reconstruct(tmp_path, "tiny-gray-sigma-plain.lofi", x, "--sigma", "25/255", "--self-ensemble", "8")
    np.testing.assert_array_equal(ours, theirs)
    assert not np.array_equal(ours, model.reconstruct(x, sigma=25 / 255, threads=1))
    pts = np.array([[0, 0], [3, 7], [15, 11]], dtype=np.float64)
    vals = model.reconstruct_points(x, pts, sigma=25 / 255, threads=1, self_ensemble=8)
    np.testing.assert_allclose(vals, ours[pts[:, 1].astype(int), pts[:, 0].astype(int)], atol=1e-6)
    with pytest.raises(lofi.InvalidArgumentError, match="1 \\(off\\), 2 \\(half turn\\)"):
        model.reconstruct(x, sigma=0.1, self_ensemble=3)
    with pytest.raises(lofi.InvalidArgumentError, match="Fourier filter"):
        sigma_model.reconstruct(x, sigma=0.1, self_ensemble=4)


def test_denoise_refined_equals_the_cli(tmp_path, sigma_model, gray):
    x = pixels(13, 18, seed=8)
    ours, rep = sigma_model.denoise_refined(x, 25 / 255, threads=1, report=True)
    assert ours.shape == (13, 18) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, cli_reconstruct(tmp_path, "tiny-gray-sigma.lofi", x, "--sigma", "25/255",
                                                        "--refine"))
    assert rep.pixels == 2 * 13 * 18 + 7 * 9 + 7 * 10  # two full passes and two grids at half resolution
    theirs = cli_reconstruct(tmp_path, "tiny-gray-sigma.lofi", x, "--sigma", "25/255", "--refine",
                             "--refine-blur", "1.5", "--refine-cleanup", "0.3")
    np.testing.assert_array_equal(sigma_model.denoise_refined(x, 25 / 255, threads=1, coarse_blur=1.5, cleanup=0.3),
                                  theirs)
    # Both steps off: the one-pass result.
    np.testing.assert_array_equal(sigma_model.denoise_refined(x, 25 / 255, threads=1, coarse_blur=0, cleanup=0),
                                  sigma_model.reconstruct(x, sigma=25 / 255, threads=1))
    with pytest.raises(lofi.InvalidArgumentError, match="clean-up level"):
        sigma_model.denoise_refined(x, 0.1, cleanup=3)
    with pytest.raises(lofi.InvalidArgumentError, match="noise-level-aware"):
        gray.denoise_refined(x, 0.1)


def test_denoise_refined_takes_rgb_through_a_gray_denoiser(tmp_path, sigma_model, gray):
    # The opponent colour path: the same numbers as the CLI, refined and in one pass, and the
    # result's channel mean is the luminance denoised at sigma / sqrt(3).
    x = pixels(13, 18, 3, seed=9)
    ours, rep = sigma_model.denoise_refined(x, 25 / 255, threads=1, report=True)
    assert ours.shape == (13, 18, 3) and ours.dtype == np.float32
    assert rep.pixels == 3 * (2 * 13 * 18 + 7 * 9 + 7 * 10)
    np.testing.assert_array_equal(ours, cli_reconstruct(tmp_path, "tiny-gray-sigma.lofi", x, "--sigma", "25/255",
                                                        "--refine"))
    one = sigma_model.denoise_refined(x, 25 / 255, threads=1, coarse_blur=0, cleanup=0)
    np.testing.assert_array_equal(one, cli_reconstruct(tmp_path, "tiny-gray-sigma.lofi", x, "--sigma", "25/255"))
    luma = sigma_model.reconstruct(x.mean(axis=2), sigma=25 / 255 / np.sqrt(3), threads=1)
    np.testing.assert_allclose(one.mean(axis=2), luma, atol=1e-5)
    with pytest.raises(lofi.InvalidArgumentError, match="noise-level-aware"):
        gray.denoise_refined(x, 0.1)


def test_complex_channel(tmp_path, complex_model):
    # Two input channels = one complex channel (real, imaginary interleaved): a complex (H, W)
    # array is read as that layout.
    rng = np.random.default_rng(4)
    z = (rng.normal(size=(12, 16)) + 1j * rng.normal(size=(12, 16))).astype(np.complex64)
    interleaved = np.stack([z.real, z.imag], axis=-1).astype(np.float32)
    ours = complex_model.reconstruct(z, threads=1)
    assert ours.shape == (12, 16)
    np.testing.assert_array_equal(ours, complex_model.reconstruct(interleaved, threads=1)[:, :, 0])
    np.testing.assert_array_equal(ours, cli_reconstruct(tmp_path, "tiny-complex.lofi", interleaved).reshape(12, 16))
    assert np.shares_memory(lofi.image_view(z, 2), z)  # complex64: read in place
    np.testing.assert_array_equal(complex_model.reconstruct(z.astype(np.complex128), threads=1), ours)


def test_points_equal_the_grid(gray):
    x = pixels(12, 16, seed=5)
    grid = gray.reconstruct(x, threads=1)
    pts = np.array([[0, 0], [3, 7], [15, 11], [8, 2]], dtype=np.float64)  # (x = column, y = row)
    vals = gray.reconstruct_points(x, pts, threads=1)
    assert vals.shape == (4,)
    np.testing.assert_allclose(vals, grid[pts[:, 1].astype(int), pts[:, 0].astype(int)], rtol=0, atol=1e-6)


# ---- zero-copy, strides, output buffers -----------------------------------------------------

def test_zero_copy_rules():
    base = pixels(20, 30)
    view = lofi.image_view(base)
    assert view.shape == (20, 30, 1) and np.shares_memory(view, base)  # C-contiguous: in place
    window = base[3:15, 4:20]  # rows 120 bytes apart, 64 bytes used: a row stride, no copy
    assert np.shares_memory(lofi.image_view(window), window)
    rgb = pixels(8, 9, 3)
    assert np.shares_memory(lofi.image_view(rgb[1:7, 2:8]), rgb)
    copied = {
        "column step": base[:, ::2],
        "transpose": base.T,
        "negative rows": base[::-1],
        "fortran": np.asfortranarray(base),
        "float64": base.astype(np.float64),
        "big-endian": base.astype(">f4"),
        "channel step": rgb[:, :, ::2],
    }
    for what, a in copied.items():
        v = lofi.image_view(a)
        assert not np.shares_memory(v, a), what
        assert v.dtype == np.float32 and v.flags.c_contiguous, what
        np.testing.assert_array_equal(v.reshape(a.shape), a.astype(np.float32), err_msg=what)


def test_strided_inputs_give_the_contiguous_result(gray):
    base = pixels(24, 40, seed=6)
    for a in (base[5:17, 7:23], base[::2, ::2][:12, :16], base.T[:16, :12].T, base[::-1][:12, :16]):
        assert a.shape == (12, 16)
        np.testing.assert_array_equal(gray.reconstruct(a, threads=1),
                                      gray.reconstruct(np.ascontiguousarray(a), threads=1))
    np.testing.assert_array_equal(gray.reconstruct(base[:12, :16].astype(np.float64), threads=1),
                                  gray.reconstruct(base[:12, :16], threads=1))


def test_input_is_only_read(gray):
    x = pixels(12, 16, seed=7)
    x.flags.writeable = False  # a read-only array is fine: lofi never writes its input
    before = x.copy()
    gray.reconstruct(x)
    np.testing.assert_array_equal(x, before)


def test_out_is_written_in_place_tile_by_tile(gray):
    x = pixels(12, 16, seed=8)
    whole = gray.reconstruct(x, shape=(20, 28), threads=1)
    mosaic = np.full((24, 40), -7.0, dtype=np.float32)
    target = mosaic[2:22, 5:33]  # a window of a larger array: written through its row stride
    for r0, c0, rows, cols in [(0, 0, 11, 13), (0, 13, 11, 15), (11, 0, 9, 28)]:
        res = gray.reconstruct(x, shape=(20, 28), window=(r0, c0, rows, cols), threads=1,
                               out=target[r0:r0 + rows, c0:c0 + cols])
        assert np.shares_memory(res, mosaic)
    np.testing.assert_array_equal(target, whole)  # tiles equal the whole grid, bit for bit
    assert (mosaic[:2] == -7).all() and (mosaic[:, :5] == -7).all() and (mosaic[:, 33:] == -7).all()


def test_out_errors(gray):
    x = pixels(12, 16)
    with pytest.raises(lofi.InvalidArgumentError, match="shape"):
        gray.reconstruct(x, out=np.empty((12, 15), np.float32))
    with pytest.raises(lofi.InvalidArgumentError, match="float32"):
        gray.reconstruct(x, out=np.empty((12, 16), np.float64))
    ro = np.empty((12, 16), np.float32)
    ro.flags.writeable = False
    with pytest.raises(lofi.InvalidArgumentError, match="read-only"):
        gray.reconstruct(x, out=ro)
    with pytest.raises(lofi.InvalidArgumentError, match="packed"):
        gray.reconstruct(x, out=np.empty((12, 32), np.float32)[:, ::2])


def test_output_shapes(gray, rgb):
    assert gray.reconstruct(pixels(12, 16)).shape == (12, 16)
    assert gray.reconstruct(pixels(12, 16, 1)).shape == (12, 16, 1)
    assert rgb.reconstruct(pixels(12, 16, 3)).shape == (12, 16, 3)
    y, report = gray.reconstruct(pixels(12, 16), shape=(5, 7), report=True)
    assert y.shape == (5, 7) and report.pixels == 35 and report.batches >= 1


def test_threads_share_a_model(gray):
    xs = [pixels(12, 16, seed=s) for s in range(4)]
    expected = [gray.reconstruct(x, threads=1) for x in xs]
    got = [None] * 4

    def work(i):
        got[i] = gray.reconstruct(xs[i], threads=1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


# ---- bad input: exceptions with status and message, never a crash ---------------------------

@pytest.mark.parametrize(
    "image, cls, text",
    [
        (np.zeros((12, 16), np.int32), lofi.InvalidInputError, "dtype int32"),
        (np.zeros((12, 16), bool), lofi.InvalidInputError, "dtype bool"),
        (np.array([["a"]]), lofi.InvalidInputError, "dtype <U1"),
        (np.zeros((2, 12, 16, 1), np.float32), lofi.InvalidInputError, "4 dimensions"),
        (np.zeros(16, np.float32), lofi.InvalidInputError, "1 dimensions"),
        (np.zeros((12, 16, 3), np.float32), lofi.InvalidInputError, "3 channel"),
        (np.zeros((0, 16), np.float32), lofi.InvalidInputError, "empty"),
        ([[0.5, "x"]], lofi.InvalidInputError, "dtype"),
        (None, lofi.InvalidInputError, "dtype object"),
    ],
)
def test_bad_images(gray, image, cls, text):
    with pytest.raises(cls, match=text) as e:
        gray.reconstruct(image)
    assert e.value.status == 2 and e.value.status_name == "LOFI_STATUS_INVALID_INPUT"


def test_nan_pixels_are_refused_by_the_library(gray):
    x = pixels(12, 16)
    x[3, 4] = np.nan
    with pytest.raises(lofi.InvalidInputError) as e:
        gray.reconstruct(x)
    assert e.value.message.startswith("lofi_reconstruct_region: ")  # the library's message
    assert "non-finite" in e.value.message or "NaN" in e.value.message


@pytest.mark.parametrize(
    "kwargs, cls, text",
    [
        (dict(sigma=float("nan")), lofi.InvalidArgumentError, "noise_level is NaN"),
        (dict(sigma=-0.1), lofi.InvalidArgumentError, "negative"),
        (dict(sigma="0.1"), lofi.InvalidArgumentError, "number"),
        (dict(threads=-1), lofi.InvalidArgumentError, "threads"),
        (dict(threads=2**40), lofi.InvalidArgumentError, "threads"),
        (dict(threads=1.5), lofi.InvalidArgumentError, "integer"),
        (dict(budget=10), lofi.BudgetTooSmallError, "too small"),
        (dict(budget=0), lofi.InvalidArgumentError, "budget"),
        (dict(budget=2**64), lofi.InvalidArgumentError, "budget"),
        (dict(budget="lots"), lofi.InvalidArgumentError, "not a size"),
        (dict(region=(0, 0, float("inf"), 5)), lofi.InvalidArgumentError, "finite"),
        (dict(region=(0, 0, 2e6, 5)), lofi.InvalidArgumentError, "within"),
        (dict(region=(0, 0, 5)), lofi.InvalidArgumentError, "region"),
        (dict(shape=(0, 5)), lofi.InvalidArgumentError, "shape rows"),
        (dict(shape=5), lofi.InvalidArgumentError, "shape"),
        (dict(shape=(2**62, 2**62)), lofi.InvalidArgumentError, "too large"),
        (dict(window=(0, 0, 20, 20)), lofi.InvalidArgumentError, "window"),
        (dict(progress=3), lofi.InvalidArgumentError, "callable"),
    ],
)
def test_bad_arguments(gray, kwargs, cls, text):
    with pytest.raises(cls, match=text) as e:
        gray.reconstruct(pixels(12, 16), **kwargs)
    assert e.value.status in (1, 2, 5, 10) and e.value.message


def test_sigma_rules_come_from_the_library(gray, sigma_model):
    x = pixels(12, 16)
    with pytest.raises(lofi.InvalidArgumentError) as e:
        gray.reconstruct(x, sigma=0.1)  # a fixed-level model takes no noise level
    assert e.value.message.startswith("lofi_reconstruct_region: ")
    with pytest.raises(lofi.InvalidArgumentError) as e:
        sigma_model.reconstruct(x)  # a noise-level-aware one needs it
    assert e.value.message.startswith("lofi_reconstruct_region: ")


def test_budget_strings(gray):
    x = pixels(12, 16)
    np.testing.assert_array_equal(gray.reconstruct(x, budget="64MiB", threads=1),
                                  gray.reconstruct(x, budget=64 * 2**20, threads=1))


# ---- progress callbacks ---------------------------------------------------------------------

def test_progress_reports_and_cancels(gray):
    calls = []
    gray.reconstruct(pixels(30, 30), budget="3MiB", progress=lambda d, t: calls.append((d, t)))
    assert len(calls) >= 2 and calls[-1] == (900, 900)
    assert all(a[0] < b[0] for a, b in zip(calls, calls[1:]))
    with pytest.raises(lofi.CancelledError) as e:
        gray.reconstruct(pixels(30, 30), budget="3MiB", progress=lambda d, t: False)
    assert e.value.status == 7 and "cancelled" in e.value.message


def test_progress_covers_a_filter_computed_in_bands(gray):
    # tiny-gray has the Fourier filter: under 3/4 of what its in-memory filter needs, it filters
    # in bands first, reporting each with done = 0, and can be cancelled there.
    x = pixels(280, 300)
    _, rep = gray.reconstruct(x, report=True)
    budget = (rep.estimated_peak_bytes - rep.batch_pixels * gray.info.bytes_per_pixel) * 3 // 4
    calls = []
    gray.reconstruct(x, budget=budget, progress=lambda d, t: calls.append((d, t)))
    bands = [c for c in calls if c[0] == 0]
    assert len(bands) >= 3 and calls[:len(bands)] == bands and calls[-1] == (84000, 84000)
    seen = []
    with pytest.raises(lofi.CancelledError):
        gray.reconstruct(x, budget=budget, progress=lambda d, t: seen.append(d) or d > 0)
    assert seen == [0]


def test_exception_in_progress_propagates(gray):
    class Stop(Exception):
        pass

    err = Stop("from the callback")

    def progress(done, total):
        raise err

    with pytest.raises(Stop) as e:
        gray.reconstruct(pixels(12, 16), progress=progress)
    assert e.value is err
    assert any("LOFI_STATUS_CANCELLED" in n for n in getattr(e.value, "__notes__", ["LOFI_STATUS_CANCELLED"]))
    # The model is fine afterwards.
    assert gray.reconstruct(pixels(12, 16)).shape == (12, 16)


def test_ctrl_c_stops_a_long_call(gray):
    # SIGINT during a call: the library stops at the next batch and the interrupt is delivered
    # when the call returns (here to a handler of the test's; Python's default raises
    # KeyboardInterrupt), rather than being lost inside a callback.
    import os
    import signal
    import time

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted()

    previous = signal.signal(signal.SIGINT, handler)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    started = time.monotonic()
    try:
        timer.start()
        with pytest.raises(Interrupted):
            # About a minute of work in batches of 64 pixels if nothing stopped it.
            gray.reconstruct(pixels(12, 16), shape=(1500, 1500), budget="2MiB", threads=1)
        assert time.monotonic() - started < 20
        assert signal.getsignal(signal.SIGINT) is handler  # restored after the call
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert gray.reconstruct(pixels(12, 16)).shape == (12, 16)  # and the model is fine


def test_ctrl_c_stops_a_python_operator(gray):
    import signal

    from test_pnp import box_adjoint, box_forward

    def forward(x):
        # As if the user pressed Ctrl-C during the solve. raise_signal delivers it to this (the
        # main) thread before it returns; os.kill lets the kernel pick any thread of the process
        # (libtorch's workers included), and under load the solve could finish first.
        signal.raise_signal(signal.SIGINT)
        return box_forward(x)

    # Python's own handler, whatever this process inherited: a test run started in the background
    # by a non-interactive shell inherits SIGINT ignored, and an ignored Ctrl-C stops nothing.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    op = lofi.UserOperator((12, 16), 48, forward, box_adjoint)
    try:
        with lofi.PnP(gray, op, np.ones(48, np.float32), threads=1) as state:
            with pytest.raises(KeyboardInterrupt):
                state.solve(50)
            assert op.forward_calls == 1  # stopped at the next callback
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


# ---- an input read in rectangles ---------------------------------------------------------------

def test_input_reader_equals_the_array_and_reads_only_what_it_needs(rgb, plain_sigma_model):
    x = pixels(10, 14, 3, seed=8)
    asked = []

    def read(row0, rows, col0, cols):
        asked.append((row0, rows, col0, cols))
        return x[row0:row0 + rows, col0:col0 + cols]

    reader = lofi.InputReader(x.shape, read)
    np.testing.assert_array_equal(rgb.reconstruct(reader, shape=(19, 27), threads=1),
                                  rgb.reconstruct(x, shape=(19, 27), threads=1))
    assert asked and all(0 <= r0 and r0 + n <= 10 and 0 <= c0 and c0 + m <= 14 for r0, n, c0, m in asked)

    # Without the Fourier filter, a band of a tall image reads only its rows plus the halo.
    tall = pixels(300, 20, seed=9)
    asked.clear()
    reader = lofi.InputReader(tall.shape, lambda r0, n, c0, m: asked.append((r0, n)) or tall[r0:r0 + n, c0:c0 + m])
    band = plain_sigma_model.reconstruct(reader, sigma=0.1, window=(200, 0, 10, 20), threads=1)
    whole = plain_sigma_model.reconstruct(tall, sigma=0.1, threads=1)
    np.testing.assert_array_equal(band, whole[200:210])
    first, end = min(r for r, _ in asked), max(r + n for r, n in asked)
    assert 150 < first <= 200 and 210 <= end < 260, (first, end)


def test_input_reader_errors(gray):
    x = pixels(12, 16, seed=10)

    class Broken(Exception):
        pass

    def broken(*_):
        raise Broken("disk gone")

    with pytest.raises(Broken, match="disk gone"):
        gray.reconstruct(lofi.InputReader(x.shape, broken), threads=1)
    with pytest.raises(ValueError, match="shape"):
        gray.reconstruct(lofi.InputReader(x.shape, lambda r0, n, c0, m: np.zeros((n + 1, m))), threads=1)
    bad = x.copy()
    bad[3, 4] = np.nan
    with pytest.raises(lofi.InvalidInputError, match="finite"):
        gray.reconstruct(lofi.InputReader(bad.shape, lambda r0, n, c0, m: bad[r0:r0 + n, c0:c0 + m]), threads=1)
    with pytest.raises(lofi.InvalidInputError, match="channel"):
        gray.reconstruct(lofi.InputReader((12, 16, 3), lambda *_: None), threads=1)
    with pytest.raises(lofi.InvalidArgumentError, match="callable"):
        gray.reconstruct(lofi.InputReader(x.shape, None))
    with pytest.raises(lofi.InvalidArgumentError, match="shape"):
        gray.reconstruct(lofi.InputReader(12, lambda *_: None))
    # The model is still usable.
    assert gray.reconstruct(x, threads=1).shape == (12, 16)
