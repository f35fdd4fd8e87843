"""Tests of tsrnn.systems.integrators: accuracy against scipy, observed convergence orders,
error control of the adaptive pairs, time bookkeeping, the generated float fast path, float32
and CUDA."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from tsrnn.exceptions import DivergenceError
from tsrnn.systems import (
    SYSTEMS,
    ComponentFlow,
    Henon,
    Lorenz63,
    Rossler,
    Thomas,
    VanDerPol,
    integrators,
)

COMPONENT_FLOWS = [cls for cls in SYSTEMS.values() if issubclass(cls, ComponentFlow)]
COMPONENT_IDS = [cls.__name__ for cls in COMPONENT_FLOWS]

# A non-normal, oscillating, damped linear system with a known solution y(t) = expm(t A) y0.
A_LINEAR = np.array([[-0.5, 2.0, 0.0], [-2.0, -0.5, 1.0], [0.0, 0.0, -1.0]])
Y0_LINEAR = np.array([1.0, 0.0, 0.5])


def linear_field(t, y):
    return y @ torch.as_tensor(A_LINEAR, dtype=y.dtype, device=y.device).T


@pytest.fixture(scope="module")
def lorenz_scipy_reference():
    """Lorenz-63 from its default state on t = 0, 0.01, ..., 2 by scipy's DOP853 at
    rtol = atol = 1e-12 (itself within ~5e-10 of a rtol 1e-13 run)."""
    system = Lorenz63()
    x0 = system.default_initial_state()
    times = np.arange(201) * 0.01
    solution = solve_ivp(lambda t, y: np.array(system.field(*y)), (0.0, 2.0), x0,
                         method="DOP853", rtol=1e-12, atol=1e-12, t_eval=times)
    return x0, solution.y.T


# ------------------------------------------------------------------------ accuracy vs scipy


@pytest.mark.parametrize("options", [
    dict(method="dop853", rtol=1e-12, atol=1e-12),
    dict(method="rk8"),
], ids=["dop853", "rk8"])
def test_high_order_methods_agree_with_scipy_dop853(lorenz_scipy_reference, options):
    x0, reference = lorenz_scipy_reference
    ours = Lorenz63().simulate(201, dt=0.01, x0=x0, **options)
    # Measured: 4e-10 (dop853) and 5e-10 (rk8 at dt 0.01), the size of the reference's own
    # error; chaos amplifies errors only ~e^2 over two time units. |x| reaches ~45.
    np.testing.assert_allclose(ours, reference, rtol=0, atol=5e-9)


def test_rk4_with_substeps_agrees_with_scipy_and_converges_at_fourth_order(
        lorenz_scipy_reference):
    x0, reference = lorenz_scipy_reference
    system = Lorenz63()
    errors = [np.abs(system.simulate(201, x0=x0, method="rk4", substeps=s) - reference).max()
              for s in (5, 10)]
    # rk4 at h = 1e-3: measured error 1.1e-7 over two time units.
    assert errors[1] < 1e-6
    # Halving h divides a fourth-order error by 16 (12 to 20 allows for the chaos).
    assert 12 < errors[0] / errors[1] < 20


def test_batched_torch_dop853_agrees_with_scipy(lorenz_scipy_reference):
    # The same adaptive method on a batch (the torch path; the step is shared by the batch).
    x0, reference = lorenz_scipy_reference
    batch = Lorenz63().simulate(201, x0=np.stack([x0, x0 + 1.0]), method="dop853",
                                rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(batch[0], reference, rtol=0, atol=5e-9)


# ------------------------------------------------------------------------ convergence order


def _harmonic_exact(x0, t):
    # VanDerPol with mu = 0 is x'' = -x, with the phase coordinate growing as omega t.
    return np.array([x0[0] * np.cos(t) + x0[1] * np.sin(t),
                     -x0[0] * np.sin(t) + x0[1] * np.cos(t), x0[2] + t])


ORDERS = [
    ("euler", 1, [0.01, 0.005, 0.0025]),
    ("rk4", 4, [0.2, 0.1, 0.05]),
    # Coarse steps for rk8: at dt 0.125 its error over 4 time units is already ~1e-14, the
    # round-off floor, below which the observed order means nothing.
    ("rk8", 8, [0.8, 0.4, 0.2]),
]


@pytest.mark.parametrize("batched", [False, True], ids=["fast_path", "torch_path"])
@pytest.mark.parametrize("method, order, dts", ORDERS, ids=[o[0] for o in ORDERS])
def test_observed_convergence_order_on_harmonic_oscillator(method, order, dts, batched):
    system = VanDerPol(mu=0.0)
    x0 = np.array([1.0, 0.5, 0.0])
    horizon = 4.0
    errors = []
    for dt in dts:
        n_steps = round(horizon / dt) + 1
        start = np.stack([x0, x0]) if batched else x0
        # substeps=1: the integration step is dt (by default a dt above default_dt is split).
        trajectory = system.simulate(n_steps, dt=dt, x0=start, method=method, substeps=1)
        final = trajectory[0, -1] if batched else trajectory[-1]
        errors.append(np.abs(final - _harmonic_exact(x0, horizon)).max())
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    # Measured 1.009/1.005, 4.03/4.02, 8.07/8.04: the asymptotic order up to higher terms.
    np.testing.assert_allclose(observed, order, atol=0.15)


@pytest.mark.parametrize("method, order, dts", [
    ("euler", 1, [0.01, 0.005, 0.0025]),
    ("rk4", 4, [0.1, 0.05, 0.025]),
    ("rk8", 8, [0.4, 0.2, 0.1]),
], ids=["euler", "rk4", "rk8"])
def test_observed_convergence_order_on_linear_system_with_matrix_exponential(method, order,
                                                                              dts):
    y0 = torch.as_tensor(Y0_LINEAR[None])
    exact = expm(2.0 * A_LINEAR) @ Y0_LINEAR
    errors = []
    for dt in dts:
        y = integrators.solve(linear_field, y0, dt, round(2.0 / dt) + 1, method=method)
        errors.append(np.abs(y[0, -1].numpy() - exact).max())
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    np.testing.assert_allclose(observed, order, atol=0.15)


def test_substeps_equal_a_smaller_step():
    # substeps=k at dt is the same scheme as dt/k, recorded every k steps.
    system = Lorenz63()
    coarse = system.simulate(21, dt=0.05, method="rk4", substeps=5)
    fine = system.simulate(101, dt=0.01, method="rk4")[::5]
    np.testing.assert_allclose(coarse, fine, rtol=0, atol=1e-11)


# ------------------------------------------------------------------------ adaptive methods


@pytest.mark.parametrize("method", ["dopri5", "dop853"])
def test_adaptive_error_shrinks_with_tolerance(method):
    # A coarse output grid (dt = 0.5), so that the step is set by the tolerance and not by
    # the grid; reference: rk8 at h = 1e-3, accurate to ~1e-11.
    system = Lorenz63()
    x0 = system.default_initial_state()
    reference = system.simulate(2001, dt=0.001, x0=x0, method="rk8")[::500]
    errors = [np.abs(system.simulate(5, dt=0.5, x0=x0, method=method, rtol=tol, atol=tol)
                     - reference).max()
              for tol in (1e-3, 1e-5, 1e-7, 1e-9, 1e-11)]
    # Measured (dopri5) 0.44, 1.2e-2, 1.0e-4, 2.3e-6, 2.8e-8 and (dop853) 0.87, 3.7e-2,
    # 1.1e-4, 8.4e-7, 7.0e-9: each hundredfold tightening gains more than a factor of 10.
    assert all(later < earlier / 10 for earlier, later in itertools.pairwise(errors))
    assert errors[-1] < 1e-6


@pytest.mark.parametrize("method", ["dopri5", "dop853"])
def test_adaptive_methods_land_on_every_output_time(method):
    # An output spacing that no step size divides: values on the grid must be the solution
    # at exactly those times (no interpolation, no drift of the grid).
    dt = 0.37
    y = integrators.solve(linear_field, torch.as_tensor(Y0_LINEAR[None]), dt, 12,
                          method=method, rtol=1e-11, atol=1e-13)
    exact = np.stack([expm(k * dt * A_LINEAR) @ Y0_LINEAR for k in range(12)])
    np.testing.assert_allclose(y[0].numpy(), exact, rtol=0, atol=1e-9)


def test_adaptive_batch_members_each_meet_the_tolerance():
    # The step is shared by the batch and set by its worst member; every member must still be
    # accurate (here two very different amplitudes of the same linear system).
    y0 = torch.as_tensor(np.stack([Y0_LINEAR, 100.0 * Y0_LINEAR]))
    y = integrators.solve(linear_field, y0, 0.5, 5, method="dopri5", rtol=1e-10, atol=1e-12)
    for row, scale in zip(y, (1.0, 100.0)):
        exact = np.stack([expm(k * 0.5 * A_LINEAR) @ (scale * Y0_LINEAR) for k in range(5)])
        np.testing.assert_allclose(row.numpy(), exact, rtol=1e-8, atol=1e-10 * scale)


# ------------------------------------------------------------------------ time bookkeeping


@pytest.mark.parametrize("method, substeps, tol", [
    ("euler", 1000, 1e-3),  # first order: error ~ h = 1e-4 times the horizon
    ("rk4", 2, 1e-7),
    ("rk8", 1, 1e-12),
    ("dopri5", 1, 1e-8),
    ("dop853", 1, 1e-10),
])
def test_non_autonomous_field_sees_the_right_time(method, substeps, tol):
    # dy/dt = cos(t) from t0 = 1: y(t) = y0 + sin(t) - sin(1). A stage evaluated at a wrong
    # time (t0 ignored, nodes c_s dropped) is off by O(h) or O(1).
    y0 = torch.tensor([[0.25]], dtype=torch.float64)

    def field(t, y):
        return torch.full_like(y, np.cos(t))

    y = integrators.solve(field, y0, 0.1, 21, t0=1.0, method=method, substeps=substeps,
                          rtol=1e-11, atol=1e-13)
    times = 1.0 + 0.1 * np.arange(21)
    np.testing.assert_allclose(y[0, :, 0].numpy(), 0.25 + np.sin(times) - np.sin(1.0),
                               rtol=0, atol=tol)


def test_solve_records_initial_state_and_final_state_without_recording():
    y0 = torch.as_tensor(np.stack([Y0_LINEAR, -Y0_LINEAR]))
    for method in integrators.METHODS:
        recorded = integrators.solve(linear_field, y0, 0.1, 11, method=method)
        assert recorded.shape == (2, 11, 3)
        assert torch.equal(recorded[:, 0], y0)
        final = integrators.solve(linear_field, y0, 0.1, 10, method=method, record=False)
        assert final.shape == (2, 3)
        # record=False integrates n_steps intervals: the state after the last recorded one.
        torch.testing.assert_close(final, recorded[:, -1], rtol=1e-9, atol=1e-12)


def test_unknown_method_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown method 'rk45'"):
        integrators.solve(linear_field, torch.ones(1, 3, dtype=torch.float64), 0.1, 3,
                          method="rk45")
    with pytest.raises(ValueError, match="unknown method 'midpoint'"):
        integrators.butcher_tableau("midpoint")


# ------------------------------------------------------------------------ tableaux


@pytest.mark.parametrize("method, order", [("euler", 1), ("rk4", 4), ("rk8", 8),
                                           ("dopri5", 5), ("dop853", 8)])
def test_butcher_tableau_satisfies_consistency_and_quadrature_conditions(method, order):
    a, b, c = integrators.butcher_tableau(method)
    stages = len(c)
    assert a.shape == (stages, stages) and b.shape == (stages,)
    assert np.allclose(np.triu(a), 0.0), "explicit methods have a strictly lower a"
    np.testing.assert_allclose(a.sum(1), c, atol=1e-14)
    # sum_i b_i c_i^k = 1 / (k + 1) for k < order: exact integration of t^k.
    for k in range(order):
        assert b @ c**k == pytest.approx(1.0 / (k + 1), abs=1e-13)
    # ... and the second-order stage condition sum b_i a_ij c_j = 1/6 for order >= 3.
    if order >= 3:
        assert b @ a @ c == pytest.approx(1.0 / 6.0, abs=1e-13)


@pytest.mark.parametrize("method", integrators.FIXED_STEP_METHODS)
def test_generated_scalar_step_equals_torch_step(method):
    system = Lorenz63()
    x = system.sample_initial_states(1, seed=0)[0]
    scalar = integrators.scalar_stepper(method, 3)(tuple(x), 0.01, system.field)
    tensor = integrators.FIXED_STEPPERS[method](system._rhs, 0.0, torch.as_tensor(x[None]), 0.01)
    np.testing.assert_allclose(np.array(scalar), tensor[0].numpy(), rtol=1e-15, atol=1e-13)


# ------------------------------------------------------------------------ fast path


@pytest.mark.parametrize("method, substeps", [("rk8", 1), ("rk4", 2), ("euler", 4)])
@pytest.mark.parametrize("cls", COMPONENT_FLOWS, ids=COMPONENT_IDS)
def test_float_fast_path_equals_batched_torch_path(cls, method, substeps):
    # B = 1 on the CPU in float64 runs the generated Python-float code; B = 2 the torch code.
    system = cls()
    x0 = system.sample_initial_states(2, seed=0)
    single = system.simulate(50, x0=x0[0], method=method, substeps=substeps)
    batch = system.simulate(50, x0=x0, method=method, substeps=substeps)
    # Measured: identical for rk8 and euler, <= 4e-16 relative for rk4 (whose torch step is
    # written in another operation order); 1e-12 allows round-off amplified by 50 steps.
    scale = max(1.0, np.abs(single).max())
    np.testing.assert_allclose(batch[0], single, rtol=0, atol=1e-12 * scale)


def test_solve_scalar_equals_solve_and_reports_divergence_time():
    system = Lorenz63()
    x0 = system.default_initial_state()
    scalar = integrators.solve_scalar(system.field, x0, 0.01, 30, method="rk8")
    tensor = integrators.solve(system._rhs, torch.as_tensor(x0[None]), 0.01, 30, method="rk8")
    np.testing.assert_allclose(scalar, tensor[0].numpy(), rtol=0, atol=1e-12)
    final = integrators.solve_scalar(system.field, x0, 0.01, 29, method="rk8", record=False)
    np.testing.assert_array_equal(final, scalar[-1])
    with pytest.raises(DivergenceError, match="t = "):
        integrators.solve_scalar(system.field, x0, 0.5, 100, method="rk8")


# ------------------------------------------------------------------------ divergence


@pytest.mark.parametrize("method", integrators.METHODS)
def test_finite_time_blow_up_raises_divergence_error_naming_the_time(method):
    # dy/dt = y^2 from y = 1 blows up at t = 1.
    def field(t, y):
        return y * y

    with pytest.raises(DivergenceError, match=r"t = \d"):
        # A loose tolerance keeps the adaptive methods from creeping up on t = 1 for seconds.
        integrators.solve(field, torch.ones(1, 1, dtype=torch.float64), 0.01, 300,
                          method=method, rtol=1e-4, atol=1e-4)


def test_check_state_flags_non_finite_and_exploding_values():
    integrators.check_state(torch.tensor([1e100, -1e100], dtype=torch.float64), 0.0)
    for bad in (float("nan"), float("inf"), 1e200):
        with pytest.raises(DivergenceError, match=r"at t = 2\.5;"):
            integrators.check_state(torch.tensor([0.0, bad], dtype=torch.float64), 2.5)


@pytest.mark.parametrize("method", ["dopri5", "dop853"])
def test_adaptive_method_with_infinite_initial_derivative_raises_divergence_error(method):
    with pytest.raises(DivergenceError, match="t = "):
        Lorenz63().simulate(10, x0=[1e200, 1e200, 1e200], method=method)


def test_fast_path_blow_up_through_math_functions_raises_divergence_error():
    # Thomas' field uses sin; rk8 at dt = 50 is far outside its stability region.
    with pytest.raises(DivergenceError, match="t = "):
        Thomas().simulate(1000, dt=50.0, substeps=1)


def test_torch_path_blow_up_through_math_functions_raises_divergence_error():
    # The same blow-up on the torch path (B = 2) is reported properly.
    with pytest.raises(DivergenceError, match="t = "):
        Thomas().simulate(1000, dt=50.0, x0=np.ones((2, 3)), substeps=1)


# ------------------------------------------------------------------------ float32 and CUDA


@pytest.mark.parametrize("options", [
    dict(method="euler", substeps=20), dict(method="rk4"), dict(method="rk8"),
    dict(method="dopri5", rtol=1e-6, atol=1e-6), dict(method="dop853", rtol=1e-6, atol=1e-6),
], ids=["euler", "rk4", "rk8", "dopri5", "dop853"])
def test_float32_runs_and_stays_close_to_float64_over_a_short_horizon(options):
    system = Lorenz63()
    x0 = system.default_initial_state()
    f64 = system.simulate(101, x0=x0, **options)
    f32 = system.simulate(101, x0=x0, dtype=torch.float32, **options)
    assert f32.dtype == np.float32
    tensor = system.simulate(101, x0=x0, dtype="float32", return_tensor=True, **options)
    assert tensor.dtype == torch.float32
    # The same method in both precisions: float32 round-off (~1e-7 relative on |x| ~ 40)
    # amplified by one time unit of chaos; measured 3.5e-5 (rk8) to 1.1e-4 (rk4).
    np.testing.assert_allclose(f32, f64, rtol=0, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("options", [
    dict(method="rk8"), dict(method="rk4", substeps=2),
    dict(method="dopri5", rtol=1e-10, atol=1e-12), dict(method="dop853", rtol=1e-10, atol=1e-12),
], ids=["rk8", "rk4", "dopri5", "dop853"])
def test_cuda_simulation_equals_cpu_simulation(options):
    system = Lorenz63()
    x0 = system.sample_initial_states(64, seed=0)
    cpu = system.simulate(101, x0=x0, **options)
    gpu = system.simulate(101, x0=x0, device="cuda", return_tensor=True, **options)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float64
    # Same arithmetic on another device: round-off (1e-16) amplified by one time unit.
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu, rtol=0, atol=1e-9)
    f32 = system.simulate(101, x0=x0, device="cuda", dtype=torch.float32, method="rk8")
    np.testing.assert_allclose(f32, cpu, rtol=0, atol=1e-3)


@pytest.mark.parametrize("method", ["dopri5", "dop853"])
def test_adaptive_method_stops_at_max_steps_on_an_unbounded_finite_solution(method):
    # y = sin(exp(t)) stays bounded, but its frequency grows without bound: the adaptive
    # step shrinks forever and, unlimited, the run would never end.
    def field(t, y):
        return torch.cos(torch.exp(torch.as_tensor(t))) * torch.exp(torch.as_tensor(t)) \
            * torch.ones_like(y)

    y0 = torch.zeros(1, 1, dtype=torch.float64)
    with pytest.raises(DivergenceError, match=r"more than 2,000 steps to reach t = \d"):
        integrators.solve(field, y0, 0.1, 200, method=method, rtol=1e-6, atol=1e-9,
                          max_steps=2000)
    # The same limit lets an ordinary run through, with the same result as no limit.
    limited = integrators.solve(field, y0, 0.1, 20, method=method, max_steps=2000)
    free = integrators.solve(field, y0, 0.1, 20, method=method)
    torch.testing.assert_close(limited, free, rtol=0, atol=0)
    np.testing.assert_allclose(free[0, :, 0].numpy(),
                               np.sin(np.exp(0.1 * np.arange(20))) - np.sin(1.0), atol=1e-7)


def test_simulate_turns_an_unbounded_rossler_into_a_divergence_error():
    # c < 0: the solution grows for ever but stays finite for a long time; the default
    # step budget (100 per default_dt) made it an error instead of an endless run.
    system = Rossler(c=-5.7)
    with pytest.raises(DivergenceError, match="more than 3,000 steps"):
        system.simulate(400, method="dopri5", max_steps=3000)
    assert system._step_budget(None, 399, 0.05) == 10_000 + 100 * 399
    assert system._step_budget(None, 399, 0.0005) == 10_000 + 10 * 399  # fine dt: per interval
    # A fine sampling step needs at least one step per interval: it is not refused.
    fine = Rossler().simulate(3000, dt=0.0005, method="dopri5", max_steps=3000)
    assert np.isfinite(fine).all()
    ordinary = Rossler().simulate(300, method="dopri5")
    np.testing.assert_array_equal(Rossler().simulate(300, method="dopri5", max_steps=3000),
                                  ordinary)


def test_max_steps_is_refused_where_no_adaptive_method_runs():
    with pytest.raises(ValueError, match="adaptive methods"):
        Lorenz63().simulate(10, method="rk8", max_steps=100)
    with pytest.raises(ValueError, match="Henon has none"):
        Henon().simulate(10, max_steps=100)
    with pytest.raises(ValueError, match="max_steps"):
        Lorenz63().simulate(10, method="dopri5", max_steps=0)
