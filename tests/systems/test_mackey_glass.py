"""Tests of tsrnn.systems.delay: the Mackey-Glass delay equation."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch

from tsrnn.analysis import kaplan_yorke_dimension, lyapunov_spectrum
from tsrnn.exceptions import DivergenceError
from tsrnn.systems import SYSTEMS, MackeyGlass


def stage_by_stage_rk4(tau: float, m: int, t_end: float, x0: float = 1.2,
                       a: float = 0.2, b: float = 0.1, n: float = 10) -> np.ndarray:
    """Independent plain-Python version of the scheme: RK4 stage by stage on a half-step
    history list, Hermite midpoints; x at every whole time unit (h must divide 1)."""
    h = tau / m
    history = [x0] * (2 * m + 1)

    def f(x, delayed):
        return a * delayed / (1 + delayed**n) - b * x

    values = [x0]
    per_unit = round(1 / h)
    for i in range(round(t_end / h)):
        x, d0, d_half, d1 = history[-1], history[0], history[1], history[2]
        k1 = f(x, d0)
        k2 = f(x + h / 2 * k1, d_half)
        k3 = f(x + h / 2 * k2, d_half)
        k4 = f(x + h * k3, d1)
        x_new = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        midpoint = 0.5 * (x + x_new) + h / 8 * (k1 - f(x_new, d1))
        history = [*history[2:], midpoint, x_new]
        if (i + 1) % per_unit == 0:
            values.append(x_new)
    return np.array(values)


@pytest.fixture(scope="module")
def mg():
    return MackeyGlass()


# ---------------------------------------------------------------------- definition
def test_defaults_and_discretisation(mg):
    assert (mg.tau, mg.a, mg.b, mg.n, mg.dim, mg.default_dt) == (17.0, 0.2, 0.1, 10, 1, 1.0)
    assert mg.lyapunov_reference is None and not mg.is_map and mg.is_delay
    assert SYSTEMS["mackeyglass"] is MackeyGlass
    assert (mg.steps_per_delay, mg.history_length) == (170, 341)
    assert mg.inner_step == pytest.approx(0.1, rel=1e-15)
    np.testing.assert_allclose(mg.history_times[[0, 1, -1]], [-17.0, -16.95, 0.0], atol=1e-12)
    np.testing.assert_array_equal(mg.default_initial_state(), [1.2])


def test_rhs_and_jacobian(mg):
    x, delayed = np.array([0.5, 1.0, 1.3]), np.array([1.1, 0.7, 0.9])
    np.testing.assert_allclose(mg.rhs(x, delayed), 0.2 * delayed / (1 + delayed**10) - 0.1 * x)
    jac = mg.jacobian(x[:, None], delayed[:, None])
    assert jac.shape == (3, 1, 2)
    eps = 1e-6  # central differences: error eps^2 |f'''| ~ 1e-11
    d_x = (mg.rhs(x + eps, delayed) - mg.rhs(x - eps, delayed)) / (2 * eps)
    d_delayed = (mg.rhs(x, delayed + eps) - mg.rhs(x, delayed - eps)) / (2 * eps)
    np.testing.assert_allclose(jac[:, 0, 0], d_x, atol=1e-9)
    np.testing.assert_allclose(jac[:, 0, 1], d_delayed, atol=1e-9)
    tensor = mg.jacobian(torch.as_tensor(x), torch.as_tensor(delayed))
    assert isinstance(tensor, torch.Tensor)
    np.testing.assert_allclose(tensor.numpy(), jac[:, 0], atol=1e-15)


# ---------------------------------------------------------------------- simulation
def test_simulate_shapes_and_determinism(mg):
    single = mg.simulate(200, transient=50)
    assert single.shape == (200, 1)
    np.testing.assert_array_equal(single, mg.simulate(200, transient=50))
    batch = mg.simulate(100, x0=np.array([[1.2], [0.9]]), seed=0)
    assert batch.shape == (2, 100, 1)
    seeded = mg.simulate(100, seed=4)
    np.testing.assert_array_equal(seeded, mg.simulate(100, seed=4))
    assert not np.allclose(seeded, mg.simulate(100, seed=5))
    # Row 0 is the state after the transient; dt = 0.5 samples the same trajectory.
    np.testing.assert_allclose(mg.simulate(101, dt=0.5)[::2], mg.simulate(51), atol=1e-14)


def test_agrees_with_stage_by_stage_rk4(mg):
    expected = stage_by_stage_rk4(17.0, 170, 300.0)
    # The block-vectorised recurrence reorders the same arithmetic: round-off only, grown by
    # the chaos over 300 time units (1e-14 observed).
    np.testing.assert_allclose(mg.simulate(301)[:, 0], expected, atol=1e-11)


def test_fourth_order_convergence():
    """Error at t = 50 against h = 1/128: RK4 order 4 means 16x per halving of h."""
    reference = MackeyGlass(delay_steps=17 * 128).simulate(51)
    errors = np.array([np.abs(MackeyGlass(delay_steps=m).simulate(51) - reference).max()
                       for m in (17, 34, 68, 136)])
    ratios = errors[:-1] / errors[1:]
    orders = np.log2(ratios)
    assert np.all((orders > 3.8) & (orders < 4.2)), (errors, orders)
    assert errors[1] < 1e-6  # h = 0.5 is already accurate to 2e-7


def test_batch_equals_single_trajectories(mg):
    x0 = np.array([[1.2], [0.8], [1.05]])
    batch = mg.simulate(300, x0=x0, transient=100)
    singles = np.stack([mg.simulate(300, x0=x, transient=100) for x in x0])
    # Different matrix shapes sum in a different order: round-off grown over 400 time units.
    np.testing.assert_allclose(batch, singles, atol=1e-10)


def test_full_history_as_initial_state(mg):
    constant = mg.simulate(60, x0=[1.2])
    from_history = mg.simulate(60, x0=np.full(mg.history_length, 1.2))
    np.testing.assert_array_equal(constant, from_history)
    # A history buffer taken from the map continues the trajectory.
    dmap = mg.as_discrete_map()
    buffer = torch.full((1, mg.history_length), 1.2, dtype=torch.float64)
    for _ in range(30):
        buffer = dmap.step(buffer)
    np.testing.assert_allclose(buffer[0, -1].item(), constant[30, 0], atol=1e-13)
    continued = mg.simulate(30, x0=buffer[0].numpy())
    np.testing.assert_allclose(continued, constant[30:], atol=1e-12)


def test_torch_path_float32(mg):
    x0 = np.array([[1.2], [0.9]])
    expected = mg.simulate(100, x0=x0)
    result = mg.simulate(100, x0=x0, dtype=torch.float32, return_tensor=True)
    assert result.dtype == torch.float32
    np.testing.assert_allclose(result.numpy(), expected, atol=1e-4)  # float32 round-off


def peak_recurrence(x: np.ndarray, max_period: int = 30) -> float:
    """min over P <= max_period of max_i |peak_{i+P} - peak_i| for the local maxima of x:
    about 1e-4 (the sampling jitter at dt = 1) for a periodic orbit, order 0.1 for chaos."""
    peaks = x[1:-1][(x[1:-1] > x[:-2]) & (x[1:-1] > x[2:])]
    assert len(peaks) > max_period + 20
    return min(np.abs(peaks[p:] - peaks[:-p]).max() for p in range(1, max_period + 1))


def test_tau17_is_chaotic_and_bounded(mg):
    x = mg.simulate(3000, transient=500)[:, 0]
    assert 0.2 < x.min() and x.max() < 1.5  # the attractor lies in about (0.4, 1.35)
    # Not periodic with any period up to 30 oscillations (0.26 observed) ...
    assert peak_recurrence(x) > 0.05
    # ... while tau = 14 is (the measure tells the two apart; 1e-4 observed).
    assert peak_recurrence(MackeyGlass(tau=14.0).simulate(3000, transient=2000)[:, 0]) < 0.01
    # Sensitive dependence: histories 1e-6 apart separate to order 0.1 (growth exp(0.005 t)
    # on average, 3e6 over 3000 time units).
    pair = mg.simulate(3000, x0=np.array([[1.2], [1.2 + 1e-6]]))[:, :, 0]
    assert np.abs(pair[0, :100] - pair[1, :100]).max() < 1e-4
    assert np.abs(pair[0] - pair[1]).max() > 0.1


# ---------------------------------------------------------------------- errors
def test_dt_must_be_a_multiple_of_the_inner_step(mg):
    with pytest.raises(ValueError, match=r"whole multiple of the inner step h .* 0\.1"):
        mg.simulate(10, dt=0.25)
    with pytest.raises(ValueError, match="multiple"):
        mg.as_discrete_map(0.05)
    assert MackeyGlass(delay_steps=68).simulate(5, dt=0.25).shape == (5, 1)


def test_rejects_other_schemes_and_bad_histories(mg):
    with pytest.raises(ValueError, match="RK4"):
        mg.simulate(10, method="dopri5")
    with pytest.raises(ValueError, match="delay_steps"):
        mg.simulate(10, substeps=4)
    with pytest.raises(ValueError, match="341"):
        mg.simulate(10, x0=np.ones(5))
    with pytest.raises(ValueError, match="tau"):
        MackeyGlass(tau=0.0)


def test_blow_up_raises_divergence_error_naming_the_time():
    # With odd n a negative history makes 1 + x(t - tau)^n vanish at once.
    with pytest.raises(DivergenceError, match=r"at t = 0\.1\b"):
        MackeyGlass(n=3).simulate(20, x0=[-1.0])
    with pytest.raises(DivergenceError, match=r"at t = 0\.1\b"):
        MackeyGlass(n=3).simulate(20, x0=[[-1.0], [1.0]], dtype=torch.float32)


# ---------------------------------------------------------------------- analysis
def test_fused_tangent_equals_autodiff_of_the_step(mg):
    dmap = mg.as_discrete_map()
    assert (dmap.dim, dmap.time_step) == (341, 1.0)
    histories = dmap.initial_states(3, 0)
    assert histories.shape == (3, 341)
    frame = torch.randn((3, 341, 2), generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)
    state, pushed = dmap.advance(histories, frame)
    state_ad, pushed_ad = dataclasses.replace(dmap, tangent=None).advance(histories, frame)
    torch.testing.assert_close(state, state_ad, atol=1e-15, rtol=0)
    torch.testing.assert_close(pushed, pushed_ad, atol=1e-13, rtol=0)


def test_map_steps_longer_than_the_delay(mg):
    """dt = 20 > tau: the block loop reads its own new values as delayed arguments."""
    dmap = mg.as_discrete_map(20.0)
    histories = torch.full((1, mg.history_length), 1.2, dtype=torch.float64)
    after = dmap.step(dmap.step(histories))
    np.testing.assert_allclose(after[0, -1].item(), mg.simulate(41)[-1, 0], atol=1e-13)


def test_leading_lyapunov_exponent_is_positive_in_a_short_run(mg):
    # 8 trajectories x 2000 time units; the exponent is about 0.005, the spread ~3e-4.
    spectrum = lyapunov_spectrum(mg, n_exponents=1, n_steps=2000, transient=200,
                                 n_trajectories=8, seed=0)
    assert 0.002 < spectrum[0] < 0.012


@pytest.mark.slow
def test_lyapunov_spectrum_tau17():
    """lambda_1 in 0.003-0.012 (SPEC quotes 0.006-0.009; we measure 0.0051 +- 0.0001, close
    to the 0.0056 of an independent RK4 code with h = 0.17), lambda_2 = 0 (time translation),
    lambda_3 about -0.039 and D_KY about 2.1 (Farmer 1982)."""
    start = time.perf_counter()
    spectrum, stderr = lyapunov_spectrum(MackeyGlass(), n_exponents=3, n_steps=10_000,
                                         n_trajectories=32, seed=0, return_stderr=True)
    elapsed = time.perf_counter() - start
    print(f"Mackey-Glass tau=17 spectrum {spectrum} +- {stderr} in {elapsed:.1f} s")
    assert 0.003 <= spectrum[0] <= 0.012
    assert abs(spectrum[1]) < 0.001
    assert -0.045 < spectrum[2] < -0.033
    assert 2.05 < kaplan_yorke_dimension(spectrum) < 2.25


def test_default_inner_step_divides_the_default_sampling_step():
    # tau = 17.05 took m = 170 inner steps (h = 0.1003), which does not divide dt = 1: the
    # default simulate() failed. The usual delays keep their grid of h = 0.1.
    assert MackeyGlass(tau=17.0).steps_per_delay == 170
    assert MackeyGlass(tau=17.5).steps_per_delay == 175
    system = MackeyGlass(tau=17.05)
    assert system.steps_per_delay == 341 and abs(system.inner_step - 0.05) < 1e-15
    assert np.isfinite(system.simulate(20)).all()
