"""lofi.pnp / lofi.PnP: built-in operators against the CLI and NumPy; Python operators through
the C callback API, including callbacks that raise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import model_path, pixels, run_cli

import lofi

H, W = 12, 16


def box_forward(x):
    """2 x 2 block means (H/2 x W/2)."""
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def box_adjoint(y):
    return 0.25 * np.repeat(np.repeat(y.reshape(H // 2, W // 2), 2, axis=0), 2, axis=1)


def box_operator():
    return lofi.UserOperator((H, W), H * W // 4, box_forward, box_adjoint)


def test_box_operator_is_adjoint():
    rng = np.random.default_rng(0)
    x, y = rng.random((H, W)), rng.random(H * W // 4)
    assert math.isclose(np.dot(box_forward(x).ravel(), y), np.dot(x.ravel(), box_adjoint(y).ravel()), rel_tol=1e-12)


# ---- built-in operators --------------------------------------------------------------------

def test_inpaint_equals_the_cli(tmp_path, gray):
    rng = np.random.default_rng(1)
    truth = pixels(H, W, seed=1)
    mask = (rng.random((H, W)) < 0.6).astype(np.float32)
    y = truth * mask
    np.save(tmp_path / "mask.npy", mask)
    np.save(tmp_path / "y.npy", y)
    run_cli("pnp", "--model", model_path("tiny-gray.lofi"), "--operator", "inpaint", "--mask",
            str(tmp_path / "mask.npy"), "--input", str(tmp_path / "y.npy"), "--iterations", "3", "--alpha", "0.1",
            "--threads", "1", "--output", str(tmp_path / "out.npy"))
    theirs = np.load(tmp_path / "out.npy").reshape(H, W)
    ours = lofi.pnp(gray, y, lofi.Inpaint(mask=mask), iterations=3, alpha=0.1, threads=1)
    assert ours.shape == (H, W)
    np.testing.assert_array_equal(ours, theirs)
    # The paper's plain iteration (no transforms, the last output) is a different estimate, and
    # the same through both front ends.
    run_cli("pnp", "--model", model_path("tiny-gray.lofi"), "--operator", "inpaint", "--mask",
            str(tmp_path / "mask.npy"), "--input", str(tmp_path / "y.npy"), "--iterations", "3", "--alpha", "0.1",
            "--threads", "1", "--transforms", "none", "--average-last", "1", "--output", str(tmp_path / "plain.npy"))
    theirs_plain = np.load(tmp_path / "plain.npy").reshape(H, W)
    ours_plain = lofi.pnp(gray, y, lofi.Inpaint(mask=mask), iterations=3, alpha=0.1, threads=1,
                          transforms="none", average_last=1)
    np.testing.assert_array_equal(ours_plain, theirs_plain)
    assert np.abs(ours_plain - ours).max() > 1e-4


def test_inpainting_defaults_follow_the_cli(tmp_path, sigma_model):
    """With a noise-level-aware model, ``lofi.pnp`` inpaints with the CLI's inpainting defaults
    (40 iterations, alpha 0.01, sigma 0.6 x the top of the training range): the same as those
    values given explicitly, and as ``lofi pnp --operator inpaint`` without flags."""
    aware = sigma_model
    top = aware.info.noise_level_range[1]
    rng = np.random.default_rng(4)
    truth = pixels(H, W, seed=4)
    mask = (rng.random((H, W)) < 0.4).astype(np.float32)
    y = truth * mask
    op = lofi.Inpaint(mask=mask)
    assert lofi.inpainting_settings(aware) == pytest.approx({"alpha": 0.01, "sigma": 0.6 * top})
    default = lofi.pnp(aware, y, op, threads=1)
    explicit = lofi.pnp(aware, y, op, iterations=40, alpha=0.01, sigma=0.6 * top, threads=1)
    np.testing.assert_array_equal(default, explicit)
    generic = lofi.pnp(aware, y, op, iterations=90, alpha=0.05, threads=1)
    assert np.abs(generic - default).max() > 1e-4
    np.save(tmp_path / "mask.npy", mask)
    np.save(tmp_path / "y.npy", y)
    run_cli("pnp", "--model", model_path("tiny-gray-sigma.lofi"), "--operator", "inpaint", "--mask",
            str(tmp_path / "mask.npy"), "--input", str(tmp_path / "y.npy"), "--threads", "1",
            "--output", str(tmp_path / "out.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "out.npy").reshape(H, W), default, atol=1e-5)


def test_inpainting_settings_of_a_fixed_level_model(gray):
    # The generic defaults (lofi_default_pnp_params()'s alpha, no noise level).
    assert lofi.inpainting_settings(gray) == {"alpha": 0.05, "sigma": None}


def test_operator_forward_matches_numpy():
    rng = np.random.default_rng(2)
    x = rng.random((H, W)).astype(np.float32)
    mask = (rng.random((H, W)) < 0.5).astype(np.float32)
    # Inpainting: the image with the mask applied.
    y = lofi.Inpaint(mask=mask).forward(x)
    np.testing.assert_array_equal(y.reshape(H, W)[mask > 0], x[mask > 0])
    # Centred unitary 2-D DFT (origin at the centre in both domains), measured frequencies in
    # row-major order as (re, im) pairs.
    spectrum = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x), norm="ortho"))
    y = lofi.FourierMask(mask).forward(x).reshape(-1, 2)
    np.testing.assert_allclose(y[:, 0] + 1j * y[:, 1], spectrum[mask > 0], atol=1e-5)
    # Periodic convolution with a centred kernel.
    k = np.array([[0.0, 0.1, 0.0], [0.2, 0.4, 0.1], [0.0, 0.2, 0.0]], dtype=np.float32)
    padded = np.zeros((H, W), np.float32)
    padded[:3, :3] = k
    padded = np.roll(padded, (-1, -1), axis=(0, 1))  # kernel centre at (0, 0)
    conv = np.real(np.fft.ifft2(np.fft.fft2(x) * np.fft.fft2(padded)))
    np.testing.assert_allclose(lofi.Blur((H, W), k).forward(x).reshape(H, W), conv, atol=1e-5)
    # Sizes the header documents.
    assert lofi.Radon((H, W), np.arange(0, 180, 15)).measurement_len(1) == 12 * math.ceil(math.sqrt(2) * W)
    assert lofi.Lensing((H, W)).measurement_len(1) == H * W * 2
    assert lofi.Denoise((H, W)).measurement_len(3) == H * W * 3


def test_pnp_state_steps_and_reports(gray):
    truth = pixels(H, W, seed=3)
    op = lofi.Inpaint((H, W), observed_fraction=0.5, seed=7)
    y = op.forward(truth)
    with lofi.PnP(gray, op, y, alpha=0.1, threads=1) as state:
        state.set_ground_truth(truth)
        r1 = state.step()
        assert r1.iteration == 1 and np.isfinite([r1.primal, r1.dual, r1.data_misfit, r1.psnr]).all()
        r4 = state.solve(3)
        assert r4.iteration == 4 and len(state.history) == 2
        est = state.estimate()
        assert est.shape == (H, W) and np.isfinite(est).all()
        # PSNR as lofi defines it (data range of the truth).
        mse = np.mean((truth.astype(np.float64) - est) ** 2)
        psnr = 10 * np.log10((truth.max() - truth.min()) ** 2 / mse)
        assert abs(r4.psnr - psnr) < 1e-3
    assert state.closed
    with pytest.raises(lofi.ModelClosedError):
        state.step()


def test_pnp_state_outlives_its_model():
    model = lofi.Model(model_path("tiny-gray.lofi"))
    op = lofi.Denoise((H, W))
    state = lofi.PnP(model, op, pixels(H, W), threads=1)
    model.close()  # the state holds its own reference inside the library
    assert state.step().iteration == 1
    state.close()


def test_noise_level_aware_schedule(sigma_model):
    truth = pixels(H, W, seed=4)
    y = lofi.Denoise((H, W)).forward(truth)
    with lofi.PnP(sigma_model, lofi.Denoise((H, W)), y, anneal=(0.15, 0.05, 3), threads=1) as state:
        sigmas = [state.step().sigma for _ in range(4)]
    np.testing.assert_allclose(sigmas, [0.15, 0.15 * (1 / 3) ** 0.5, 0.05, 0.05], rtol=1e-6)
    with pytest.raises(lofi.InvalidArgumentError, match="not both"):
        lofi.PnP(sigma_model, lofi.Denoise((H, W)), y, anneal=(0.1, 0.05, 3), sigma=0.1)


def test_pnp_bad_arguments(gray, rgb):
    y = pixels(H, W)
    with pytest.raises(lofi.InvalidInputError, match="expected 192"):
        lofi.pnp(gray, y[:5], lofi.Denoise((H, W)))
    with pytest.raises(lofi.InvalidArgumentError, match="splitting"):
        lofi.pnp(gray, y, lofi.Denoise((H, W)), splitting="fast")
    with pytest.raises(lofi.InvalidArgumentError, match="transforms"):
        lofi.pnp(gray, y, lofi.Denoise((H, W)), transforms="rotate")
    with pytest.raises(lofi.InvalidArgumentError, match="average_last"):
        lofi.pnp(gray, y, lofi.Denoise((H, W)), average_last=0)
    with pytest.raises(lofi.InvalidArgumentError):
        lofi.pnp(gray, y, lofi.Denoise((H, W)), alpha=-1.0)  # the library's check
    with pytest.raises(lofi.InvalidArgumentError, match="iterations"):
        lofi.pnp(gray, y, lofi.Denoise((H, W)), iterations=0)
    with pytest.raises(lofi.InvalidArgumentError, match="operator"):
        lofi.pnp(gray, y, "inpaint")
    with pytest.raises(lofi.InvalidArgumentError, match="mask or an observed_fraction"):
        lofi.Inpaint((H, W))
    with pytest.raises(lofi.InvalidInputError, match="not finite"):
        lofi.pnp(gray, np.full((H, W), np.nan, np.float32), box_operator() if False else lofi.UserOperator(
            (H, W), H * W, lambda x: x, lambda y: y))
    with pytest.raises(lofi.InvalidArgumentError, match="size"):  # operator of 1 x 16
        lofi.Denoise((1, W)).measurement_len(1)


def test_pnp_progress_cancels(gray):
    seen = []

    def progress(done, total):
        seen.append((done, total))
        return done < 2

    with lofi.PnP(gray, lofi.Denoise((H, W)), pixels(H, W), threads=1, progress=progress) as state:
        with pytest.raises(lofi.CancelledError):
            state.solve(5)
        assert seen == [(1, 5), (2, 5)]
        assert state.step().iteration == 3  # the iterations done are kept


# ---- Python operators ------------------------------------------------------------------------

def test_user_operator_forward_runs_through_the_library():
    op = box_operator()
    x = pixels(H, W, seed=5)
    y = op.forward(x)  # lofi_operator_forward calling the Python callback
    np.testing.assert_allclose(y, box_forward(x).ravel(), rtol=1e-6)
    assert op.forward_calls == 1


def test_user_operator_solves(gray):
    op = box_operator()
    truth = pixels(H, W, seed=6)
    y = box_forward(truth).ravel()
    with lofi.PnP(gray, op, y, cg_iterations=25, threads=1) as state:
        assert op.adjoint_calls >= 1  # A^T y at create
        f0, a0 = op.forward_calls, op.adjoint_calls
        r = state.solve(3)
        assert r.iteration == 3 and 1 <= r.cg_iterations <= 25
        assert op.forward_calls > f0 and op.adjoint_calls > a0
        est = state.estimate()
    assert np.isfinite(est).all() and est.shape == (H, W)


def test_user_operator_equals_the_builtin(gray):
    # The same A = diag(mask) as a Python operator (solved by conjugate gradients) and built in
    # (closed form): from the same start, the same iterates.
    rng = np.random.default_rng(7)
    mask = (rng.random((H, W)) < 0.6).astype(np.float32)
    truth = pixels(H, W, seed=7)
    y = truth * mask
    start = pixels(H, W, seed=8)
    user = lofi.UserOperator((H, W), H * W, lambda x: x * mask, lambda v: v.reshape(H, W) * mask)
    results = []
    for op in (lofi.Inpaint(mask=mask), user):
        results.append(lofi.pnp(gray, y, op, iterations=3, alpha=0.1, warm_start=start, threads=1,
                                cg_tolerance=1e-10, cg_iterations=50))
    np.testing.assert_allclose(results[1], results[0], atol=1e-5)
    assert user.forward_calls > 0


def test_callables_as_the_operator(gray):
    # lofi.pnp(model, y, (forward, adjoint), shape=...): the same solve as the UserOperator.
    truth = pixels(H, W, seed=11)
    y = box_forward(truth).ravel()
    by_pair = lofi.pnp(gray, y, (box_forward, box_adjoint), shape=(H, W), iterations=2, threads=1)
    by_class = lofi.pnp(gray, y, box_operator(), iterations=2, threads=1)
    np.testing.assert_array_equal(by_pair, by_class)
    with pytest.raises(lofi.InvalidArgumentError, match="shape"):
        lofi.pnp(gray, y, (box_forward, box_adjoint))


def test_multichannel_user_operator(rgb):
    shapes = []

    def forward(x):
        shapes.append(x.shape)
        return x[::2, ::2, :]

    def adjoint(y):
        out = np.zeros((H, W, 3), np.float32)
        out[::2, ::2, :] = y.reshape(H // 2, W // 2, 3)
        return out

    op = lofi.UserOperator((H, W), H * W * 3 // 4, forward, adjoint)
    truth = pixels(H, W, 3, seed=9)
    est = lofi.pnp(rgb, forward(truth), op, iterations=2, threads=1)
    assert est.shape == (H, W, 3) and set(shapes) == {(H, W, 3)}


class OperatorFailure(Exception):
    pass


def test_exception_in_forward_propagates_and_the_state_survives(gray):
    fail = {"forward": False, "adjoint": False}
    err = OperatorFailure("the instrument model broke")

    def forward(x):
        if fail["forward"]:
            raise err
        return box_forward(x)

    def adjoint(y):
        if fail["adjoint"]:
            raise KeyError("adjoint")
        return box_adjoint(y)

    op = lofi.UserOperator((H, W), H * W // 4, forward, adjoint)
    truth = pixels(H, W, seed=10)
    with lofi.PnP(gray, op, box_forward(truth), cg_iterations=25, threads=1) as state:
        state.step()
        fail["forward"] = True
        with pytest.raises(OperatorFailure) as e:
            state.step()
        assert e.value is err  # the very exception, not a copy or a wrapper
        notes = getattr(e.value, "__notes__", None)
        if notes is not None:  # Python >= 3.11: the library's message rides along
            assert any("forward failed" in n and "LOFI_STATUS_INVALID_ARGUMENT" in n for n in notes)
        fail["forward"] = False
        fail["adjoint"] = True
        with pytest.raises(KeyError):
            state.solve(2)
        fail["adjoint"] = False
        # A failed step leaves the state as it was: the next one is iteration 2.
        assert state.step().iteration == 2


def test_exception_at_create_propagates(gray):
    def adjoint(y):
        raise ZeroDivisionError("no adjoint today")

    op = lofi.UserOperator((H, W), H * W // 4, box_forward, adjoint)
    with pytest.raises(ZeroDivisionError, match="no adjoint today"):
        lofi.PnP(gray, op, np.ones(H * W // 4, np.float32))


def test_keyboard_interrupt_in_a_callback_propagates(gray):
    def forward(x):
        raise KeyboardInterrupt

    op = lofi.UserOperator((H, W), H * W // 4, forward, box_adjoint)
    with lofi.PnP(gray, op, np.ones(H * W // 4, np.float32), threads=1) as state:
        with pytest.raises(KeyboardInterrupt):
            state.step()


@pytest.mark.parametrize(
    "forward, cls, text",
    [
        (lambda x: box_forward(x)[:2], lofi.InvalidInputError, "returned 16 values, expected 48"),
        (lambda x: None, lofi.InvalidInputError, "returned None"),
        (lambda x: np.array(["a"] * 48), lofi.InvalidInputError, "dtype"),
        (lambda x: np.full(48, np.nan), lofi.InvalidInputError, "non-finite"),
    ],
)
def test_bad_callback_results(gray, forward, cls, text):
    op = lofi.UserOperator((H, W), H * W // 4, forward, box_adjoint)
    with lofi.PnP(gray, op, np.ones(H * W // 4, np.float32), threads=1) as state:
        with pytest.raises(cls, match=text):
            state.step()


def test_user_operator_arguments():
    with pytest.raises(lofi.InvalidArgumentError, match="callable"):
        lofi.UserOperator((H, W), 10, "f", box_adjoint)
    with pytest.raises(lofi.InvalidArgumentError, match="measurement_len"):
        lofi.UserOperator((H, W), 0, box_forward, box_adjoint)
    with pytest.raises(lofi.InvalidArgumentError, match="shape"):
        lofi.UserOperator(H, 10, box_forward, box_adjoint)
