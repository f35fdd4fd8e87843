"""Tests of tsrnn.nn.hippo: HiPPO matrices against their closed forms and the projections
they stand for, GBT/ZOH against scipy, LegS's per-step discretisation, and the HiPPO-RNN
against a plain loop of its equations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
import torch
from numpy.polynomial import legendre

from tsrnn.nn import HiPPORNN
from tsrnn.nn.hippo import (
    discretise,
    hippo_lagt,
    hippo_legs,
    hippo_legt,
    legs_discretise,
    transition,
)


# ====================================================================== closed forms
def test_legs_matrices_equal_the_closed_form():
    n = 6
    a, b = hippo_legs(n)
    for row in range(n):
        assert b[row] == pytest.approx(math.sqrt(2 * row + 1), rel=1e-15)
        for col in range(n):
            if row > col:
                expected = -math.sqrt(2 * row + 1) * math.sqrt(2 * col + 1)
            elif row == col:
                expected = -(row + 1)
            else:
                expected = 0.0
            assert a[row, col] == pytest.approx(expected, rel=1e-15, abs=0.0), (row, col)
    # A few entries written out: A_10 = -√3, A_21 = -√15, A_22 = -3.
    assert a[1, 0] == pytest.approx(-math.sqrt(3))
    assert a[2, 1] == pytest.approx(-math.sqrt(15))
    assert a[2, 2] == -3.0


@pytest.mark.parametrize("theta", [1.0, 2.5])
def test_legt_matrices_equal_the_closed_form(theta):
    n = 5
    a, b = hippo_legt(n, theta)
    for row in range(n):
        assert b[row] == pytest.approx(math.sqrt(2 * row + 1) / theta, rel=1e-15)
        for col in range(n):
            sign = 1.0 if row >= col else (-1.0) ** (row - col)
            expected = -math.sqrt((2 * row + 1) * (2 * col + 1)) * sign / theta
            assert a[row, col] == pytest.approx(expected, rel=1e-15), (row, col)
    assert a[0, 1] == pytest.approx(math.sqrt(3) / theta)  # (-1)^(0-1) flips the sign


def test_lagt_matrices_equal_the_closed_form():
    a, b = hippo_lagt(4)
    expected = np.array([[-0.5, 0, 0, 0], [-1, -0.5, 0, 0], [-1, -1, -0.5, 0],
                         [-1, -1, -1, -0.5]])
    np.testing.assert_array_equal(a, expected)
    np.testing.assert_array_equal(b, np.ones(4))


def test_s4d_real_is_the_diagonal_of_legs():
    a, b = transition("s4d_real", 5)
    np.testing.assert_array_equal(a, np.diag(np.diag(hippo_legs(5)[0])))
    np.testing.assert_array_equal(np.diag(a), -np.arange(1.0, 6.0))
    np.testing.assert_array_equal(b, np.ones(5))


def test_transition_dispatches_by_name_and_rejects_unknown_measures():
    np.testing.assert_array_equal(transition("legs", 3)[0], hippo_legs(3)[0])
    np.testing.assert_array_equal(transition("legt", 3, theta=2.0)[1], hippo_legt(3, 2.0)[1])
    with pytest.raises(ValueError, match=r"unknown measure 'legx'; expected one of 'legs', "
                                         r"'legt', 'lagt'"):
        transition("legx", 4)


# ====================================================================== the measures
def _legendre_basis(n, x):
    """√(2k+1) P_k(x), k < n, as rows (n, len(x))."""
    return np.stack([math.sqrt(2 * k + 1) * legendre.legval(x, np.eye(n)[k]) for k in range(n)])


def test_legs_projection_reconstructs_a_polynomial_of_degree_below_n_in_the_limit():
    # c(T) holds the coefficients of f on [0, T] in the orthonormal Legendre basis, so a
    # polynomial of degree < N is reconstructed exactly up to the discretisation error,
    # which falls with the number of steps (ZOH: second order).
    n, total = 8, 2.0

    def f(s):
        return 0.5 - s + s ** 3 - 0.3 * s ** 5 + 0.1 * s ** 7  # degree 7 < N

    a, b = (torch.as_tensor(m) for m in hippo_legs(n))
    grid = np.linspace(0.0, total, 101)
    errors = []
    for steps in (500, 2000):
        dt = total / steps
        t_prev = torch.arange(steps, dtype=torch.float64) * dt
        a_bar, b_bar = legs_discretise(a, b, t_prev, torch.full_like(t_prev, dt), "zoh")
        c = torch.zeros(n, dtype=torch.float64)
        for k in range(steps):
            sample = 0.0 if k == 0 else float(t_prev[k]) + dt / 2  # midpoint of the step
            c = a_bar[k] @ c + b_bar[k] * f(sample)
        reconstruction = c.numpy() @ _legendre_basis(n, 2 * grid / total - 1)
        errors.append(np.abs(reconstruction - f(grid)).max())
    assert errors[1] < 1e-4
    assert errors[1] < errors[0] / 10  # ~16x per 4x more steps


def test_legt_state_equals_the_coefficients_over_the_sliding_window():
    # LegT's measure: c_n(t) = (1/θ) ∫_{t-θ}^t f(s) √(2n+1) P_n(2(s - t)/θ + 1) ds. Started
    # from the exact coefficients, the state keeps them for a polynomial of degree < N (the
    # ODE reconstructs f(t - θ) exactly), up to the bilinear step's error.
    n, theta, dt = 6, 2.0, 1e-3
    a, b = hippo_legt(n, theta)

    def f(s):
        return 0.3 + s - 0.5 * s ** 2 + 0.1 * s ** 3

    nodes, weights = legendre.leggauss(20)

    def coefficients(t):
        s = t - theta + theta * (nodes + 1) / 2
        return (_legendre_basis(n, nodes) * f(s) * weights).sum(1) / 2

    a_bar, b_bar = discretise(a, b, dt, "bilinear")
    c, t = coefficients(1.0), 1.0
    for _ in range(3000):
        c = a_bar @ c + b_bar * f(t + dt / 2)
        t += dt
    np.testing.assert_allclose(c, coefficients(t), atol=1e-6)
    assert abs(coefficients(t)[0] - 1.0) > 0.1  # a non-trivial state


# ====================================================================== discretisation
SCIPY_METHODS = [("forward_euler", None, "euler", {}),
                 ("backward_euler", None, "backward_diff", {}),
                 ("bilinear", None, "bilinear", {}), ("gbt", 0.3, "gbt", {"alpha": 0.3}),
                 ("zoh", None, "zoh", {})]


@pytest.mark.parametrize("measure", ["legs", "legt", "lagt"])
@pytest.mark.parametrize(("method", "alpha", "scipy_method", "scipy_options"), SCIPY_METHODS)
def test_discretise_matches_scipy_cont2discrete(measure, method, alpha, scipy_method,
                                                scipy_options):
    a, b = transition(measure, 7)
    dt = 0.05
    a_bar, b_bar = discretise(a, b, dt, method, alpha)
    expected_a, expected_b, *_ = scipy.signal.cont2discrete(
        (a, b[:, None], np.ones((1, 7)), np.zeros((1, 1))), dt, method=scipy_method,
        **scipy_options)
    np.testing.assert_allclose(a_bar, expected_a, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(b_bar, expected_b[:, 0], rtol=1e-12, atol=1e-13)


def test_zoh_equals_the_inverse_formula_with_expm():
    a, b = hippo_legt(6)
    dt = 0.3
    a_bar, b_bar = discretise(a, b, dt, "zoh")
    expm = scipy.linalg.expm(dt * a)
    np.testing.assert_allclose(a_bar, expm, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b_bar, np.linalg.solve(a, (expm - np.eye(6)) @ b), rtol=1e-10)


def test_discretise_with_a_batch_of_steps_equals_one_step_at_a_time():
    a, b = (torch.as_tensor(m) for m in hippo_lagt(5))
    steps = torch.tensor([[0.01, 0.2], [0.5, 0.0]], dtype=torch.float64)
    for method in ("bilinear", "zoh"):
        a_bar, b_bar = discretise(a, b, steps, method)
        assert a_bar.shape == (2, 2, 5, 5) and b_bar.shape == (2, 2, 5)
        for i in range(2):
            for j in range(2):
                single = discretise(a, b, float(steps[i, j]), method)
                torch.testing.assert_close(a_bar[i, j], single[0], rtol=1e-13, atol=1e-14)
                torch.testing.assert_close(b_bar[i, j], single[1], rtol=1e-13, atol=1e-14)
    # dt = 0 leaves the state as it is
    torch.testing.assert_close(discretise(a, b, 0.0, "zoh")[0], torch.eye(5, dtype=a.dtype))


def test_legs_per_step_discretisation_is_the_reference_codes_stack_for_regular_steps():
    # state-spaces/s4 (LSICell): at step k >= 1 of a regular sequence, GBT of A/k with Δ = 1;
    # ZOH: expm(A (log(k + 1) - log k)). Written here with scipy, independently.
    n = 5
    a, b = hippo_legs(n)
    k = np.arange(1, 7)
    t_prev = torch.as_tensor(k * 0.1)  # the step 0.1 must not matter: LegS is scale free
    dt = torch.full((6,), 0.1, dtype=torch.float64)
    ta, tb = torch.as_tensor(a), torch.as_tensor(b)
    bilinear = legs_discretise(ta, tb, t_prev, dt, "bilinear")
    zoh = legs_discretise(ta, tb, t_prev, dt, "zoh")
    eye = np.eye(n)
    for i, step in enumerate(k):
        left = eye - a / step / 2
        expected_a = scipy.linalg.solve_triangular(left, eye + a / step / 2, lower=True)
        expected_b = scipy.linalg.solve_triangular(left, b / step, lower=True)
        np.testing.assert_allclose(bilinear[0][i].numpy(), expected_a, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(bilinear[1][i].numpy(), expected_b, rtol=1e-12, atol=1e-14)
        expm = scipy.linalg.expm(a * (math.log(step + 1) - math.log(step)))
        np.testing.assert_allclose(zoh[0][i].numpy(), expm, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(zoh[1][i].numpy(),
                                   scipy.linalg.solve_triangular(a, expm @ b - b, lower=True),
                                   rtol=1e-10, atol=1e-12)


def test_first_legs_step_sets_the_coefficients_of_a_constant():
    a, b = (torch.as_tensor(m) for m in hippo_legs(6))
    a_bar, b_bar = legs_discretise(a, b, torch.tensor(0.0, dtype=torch.float64),
                                   torch.tensor(0.7, dtype=torch.float64), "bilinear")
    torch.testing.assert_close(a_bar, torch.zeros(6, 6, dtype=torch.float64))
    torch.testing.assert_close(b_bar, torch.eye(6, dtype=torch.float64)[0], atol=1e-14,
                               rtol=0)


def test_discretise_rejects_bad_methods_and_steps():
    a, b = hippo_legs(3)
    with pytest.raises(ValueError, match=r"unknown method 'tustinn'; expected one of "
                                         r"'forward_euler', 'bilinear'"):
        discretise(a, b, 0.1, "tustinn")
    with pytest.raises(ValueError, match="method='gbt' needs alpha"):
        discretise(a, b, 0.1, "gbt")
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        discretise(a, b, 0.1, "gbt", alpha=1.5)
    with pytest.raises(ValueError, match="alpha is only used with method='gbt'"):
        discretise(a, b, 0.1, "zoh", alpha=0.5)
    with pytest.raises(ValueError, match="dt contains NaN"):
        discretise(a, b, float("nan"), "bilinear")
    with pytest.raises(ValueError, match="dt must be >= 0"):
        discretise(a, b, -0.1, "zoh")
    with pytest.raises(ValueError, match=r"B must have shape \(..., 3\)"):
        discretise(a, np.ones(4), 0.1)


# ====================================================================== HiPPO-RNN
def _reference_hippo_rnn(model, x, a_bars, b_bars):
    """The cell equations of the module docstring, one sample and one step at a time, with
    the step matrices given per step."""
    h_size = model.hidden_size
    wf, bf = model.memory_weight.detach(), model.memory_bias.detach()
    wh, bh = model.hidden_weight.detach(), model.hidden_bias.detach()
    h = torch.zeros(h_size, dtype=x.dtype)
    c = torch.zeros(model.memory_size, model.state_size, dtype=x.dtype)
    outputs = []
    for t in range(x.shape[0]):
        f = wf @ torch.cat([x[t], h]) + bf
        c = torch.stack([a_bars[t] @ c[m] + b_bars[t] * f[m] for m in range(c.shape[0])])
        z = torch.cat([x[t], c.reshape(-1)])
        candidate = torch.tanh(wh[:h_size] @ z + bh[:h_size])
        gate = torch.sigmoid(wh[h_size:] @ z + bh[h_size:])
        h = (1 - gate) * h + gate * candidate
        outputs.append(h)
    return torch.stack(outputs)


def test_hippo_rnn_legt_equals_a_plain_loop_of_its_equations():
    model = HiPPORNN(2, 5, state_size=4, measure="legt", method="zoh", timescale=0.1,
                     memory_size=2, theta=3.0,
                     generator=torch.Generator().manual_seed(0)).double()
    x = torch.randn(3, 12, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    outputs, (h, _, t) = model(x)
    a, b = hippo_legt(4, 3.0)
    a_bar, b_bar, *_ = scipy.signal.cont2discrete((a, b[:, None], np.eye(4), np.zeros((4, 1))),
                                                  0.1, method="zoh")
    a_bar, b_bar = torch.as_tensor(a_bar), torch.as_tensor(b_bar[:, 0])
    for i in range(3):
        expected = _reference_hippo_rnn(model, x[i], [a_bar] * 12, [b_bar] * 12)
        torch.testing.assert_close(outputs[i], expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, outputs[:, -1])
    torch.testing.assert_close(t, torch.full((3,), 1.2, dtype=torch.float64))


def test_hippo_rnn_legs_equals_a_plain_loop_with_the_reference_stack():
    model = HiPPORNN(1, 4, state_size=5, measure="legs", method="bilinear",
                     generator=torch.Generator().manual_seed(2)).double()
    x = torch.randn(2, 9, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    outputs, _ = model(x)
    a, b = hippo_legs(5)
    eye = np.eye(5)
    a_bars, b_bars = [torch.zeros(5, 5, dtype=torch.float64)], [torch.as_tensor(eye[0])]
    for k in range(1, 9):  # s4's LSICell stack: GBT of A/k with Δ = 1
        left = eye - a / k / 2
        a_bars.append(torch.as_tensor(np.linalg.solve(left, eye + a / k / 2)))
        b_bars.append(torch.as_tensor(np.linalg.solve(left, b / k)))
    for i in range(2):
        torch.testing.assert_close(outputs[i], _reference_hippo_rnn(model, x[i], a_bars, b_bars),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("measure", ["legs", "lagt"])
def test_hippo_rnn_batch_equals_single_samples_with_irregular_dt(measure):
    # B == H: a dt squeezed to (B,) and broadcast over the units would go unnoticed here.
    hidden = 6
    model = HiPPORNN(2, hidden, state_size=4, measure=measure, method="bilinear",
                     generator=torch.Generator().manual_seed(0)).double()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(hidden, 10, 2, dtype=torch.float64, generator=g)
    dt = torch.rand(hidden, 10, 1, dtype=torch.float64, generator=g) * 2 + 0.1
    outputs, (_, c, t) = model(x, dt=dt)
    for i in range(hidden):
        single, (_, ci, _) = model(x[i:i + 1], dt=dt[i:i + 1, :, 0])
        torch.testing.assert_close(outputs[i:i + 1], single, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(c[i:i + 1], ci, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(t, dt[:, :, 0].sum(1))
    # the elapsed times matter: the same inputs with other steps give other outputs
    assert (model(x, dt=dt.flip(1))[0] - outputs).abs().max() > 1e-3


@pytest.mark.parametrize("measure", ["legs", "legt"])
def test_hippo_rnn_continues_from_its_final_state(measure):
    model = HiPPORNN(1, 3, state_size=4, measure=measure,
                     generator=torch.Generator().manual_seed(0)).double()
    x = torch.randn(2, 20, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    whole, _ = model(x)
    first, state = model(x[:, :7])
    second, _ = model(x[:, 7:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=1e-12, atol=1e-13)


def test_hippo_rnn_unit_dt_equals_regular_sampling_and_gradients_flow():
    model = HiPPORNN(2, 4, state_size=3, generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 15, 2, generator=torch.Generator().manual_seed(6))
    regular, _ = model(x)
    irregular, _ = model(x, dt=torch.ones(3, 15))
    torch.testing.assert_close(regular, irregular, rtol=1e-5, atol=1e-6)  # float32 round-off
    regular.square().sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().max() > 0, name


def test_hippo_rnn_rejects_bad_inputs():
    model = HiPPORNN(2, 4, state_size=3)
    x = torch.randn(3, 5, 2)
    with pytest.raises(ValueError, match=r"dt must be a number or have shape \(B, L\) = \(3, 5\)"):
        model(x, dt=torch.ones(3))
    with pytest.raises(ValueError, match="dt contains NaN"):
        model(x, dt=torch.full((3, 5), float("nan")))
    with pytest.raises(ValueError, match="dt must be >= 0"):
        model(x, dt=-torch.ones(3, 5, 1))
    with pytest.raises(ValueError, match=r"x must have shape \(B, L, 2\)"):
        model(torch.randn(3, 5))
    with pytest.raises(ValueError, match="x contains NaN"):
        model(torch.full((3, 5, 2), float("nan")))
    with pytest.raises(ValueError, match="unknown measure 'fourier'"):
        HiPPORNN(2, 4, measure="fourier")
    with pytest.raises(ValueError, match="unknown method 'rk4'"):
        HiPPORNN(2, 4, method="rk4")
    with pytest.raises(ValueError, match=r"h0's c must have shape \(3, 1, 3\)"):
        model(x, (torch.zeros(3, 4), torch.zeros(3, 3)))


@pytest.mark.gpu
@pytest.mark.parametrize("measure", ["legs", "legt"])
def test_hippo_rnn_on_cuda_equals_the_cpu(measure):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model = HiPPORNN(2, 4, state_size=6, measure=measure,
                     generator=torch.Generator().manual_seed(0)).double()
    x = torch.randn(3, 20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    dt = torch.rand(3, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for steps in (None, dt):
        expected, _ = model(x, dt=steps)
        got, _ = model.to("cuda")(x.cuda(), dt=None if steps is None else steps.cuda())
        model.to("cpu")
        torch.testing.assert_close(got.cpu(), expected, rtol=1e-11, atol=1e-12)
