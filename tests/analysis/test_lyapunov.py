"""Tests of tsrnn.analysis: Lyapunov spectra (against literature values and exact
identities), tangent maps of flows, torch modules, the Kaplan-Yorke dimension, standard
errors and input checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from tsrnn.analysis import (
    DiscreteMap,
    as_discrete_map,
    kaplan_yorke_dimension,
    lyapunov_spectrum,
)
from tsrnn.exceptions import DivergenceError
from tsrnn.systems import (
    SYSTEMS,
    Chen,
    ComponentFlow,
    Duffing,
    Flow,
    Henon,
    Logistic,
    Lorenz63,
    Lorenz96,
    Rossler,
    Thomas,
    integrators,
)
from tsrnn.systems.base import Flow as BaseFlow

FLOWS = [cls for cls in SYSTEMS.values() if issubclass(cls, Flow)]
COMPONENT_FLOWS = [cls for cls in FLOWS if issubclass(cls, ComponentFlow)]
# Flows integrated by the shared Runge-Kutta code (the PDE has its own ETDRK4 and tests).
RK_FLOWS = [cls for cls in FLOWS if cls.default_method in integrators.FIXED_STEP_METHODS]
LORENZ_SUM = -(10.0 + 1.0 + 8.0 / 3.0)  # the constant divergence -(sigma + 1 + beta)


@pytest.fixture(scope="module")
def lorenz_short():
    """Lorenz-63, 64 trajectories of 20 time units (rk4, dt 0.01), with standard errors."""
    return lyapunov_spectrum(Lorenz63(), n_steps=2000, n_trajectories=64, return_stderr=True)


# ------------------------------------------------------------------------ literature values


def test_henon_spectrum_matches_reference():
    spectrum = lyapunov_spectrum(Henon(), n_steps=5000, n_trajectories=64)
    # Measured 0.4187, -1.6227 (stderr 0.0006); a long run (4096 x 1e5 steps) gives
    # 0.41928, -1.62325 +- 4e-5.
    np.testing.assert_allclose(spectrum, [0.41922, -1.62319], rtol=0, atol=0.005)


def test_logistic_r4_exponent_is_log_2():
    spectrum = lyapunov_spectrum(Logistic(), n_steps=5000, n_trajectories=16)
    assert spectrum.shape == (1,)
    # Measured 0.69308 (stderr 5e-5).
    assert spectrum[0] == pytest.approx(np.log(2.0), abs=0.005)


def test_lorenz63_spectrum_matches_sprott_in_a_short_run(lorenz_short):
    spectrum, stderr = lorenz_short
    # 20 time units x 64 trajectories: measured (0.9034, -0.0039, -14.5660), standard
    # errors <= 0.01, so 0.03 per exponent is three of them. (2048 trajectories of 200
    # time units give 0.90588, -0.00001, -14.57244 +- 0.0003.)
    np.testing.assert_allclose(spectrum, [0.9056, 0.0, -14.5723], rtol=0, atol=0.03)
    assert stderr.shape == (3,) and np.all(stderr > 0) and np.all(stderr < 0.015)


def test_lorenz63_spectrum_sums_to_minus_sigma_plus_one_plus_beta(lorenz_short):
    spectrum, _ = lorenz_short
    # An exact identity (the trace of J is constant): it checks the variational equation and
    # the normalisation by time. rk4 at dt 0.01 misses det(exp(h J)) by O(h^5 |J|^5):
    # measured -13.66656, 1e-4 from the identity; 1e-3 is ten times that.
    assert spectrum.sum() == pytest.approx(LORENZ_SUM, abs=1e-3)


def test_lorenz63_kaplan_yorke_dimension_from_measured_spectrum(lorenz_short):
    spectrum, _ = lorenz_short
    # 2 + 0.9056 / 14.5723 = 2.0621; errors of 0.03 in the exponents move it by 0.002.
    assert kaplan_yorke_dimension(spectrum) == pytest.approx(2.0621, abs=0.005)


@pytest.mark.slow
def test_lorenz63_spectrum_matches_sprott_to_0_01():
    # 100 time units x 64 trajectories: standard errors ~0.004.
    spectrum, stderr = lyapunov_spectrum(Lorenz63(), n_steps=10_000, n_trajectories=64,
                                         return_stderr=True)
    np.testing.assert_allclose(spectrum, [0.9056, 0.0, -14.5723], rtol=0, atol=0.01)
    assert np.all(stderr < 0.005)
    assert spectrum.sum() == pytest.approx(LORENZ_SUM, abs=1e-3)


@pytest.mark.parametrize("system, kwargs, divergence", [
    (Lorenz63(), dict(dt=0.02, method="rk8", n_steps=500), LORENZ_SUM),
    (Lorenz63(rho=35.0), dict(n_steps=1000), LORENZ_SUM),
    (Chen(), dict(n_steps=1000), -35.0 - 3.0 + 28.0),
    (Lorenz96(n=10), dict(n_steps=1000), -10.0),
    (Thomas(), dict(n_steps=300), -3 * 0.208186),
    (Duffing(), dict(n_steps=300), -0.3),  # the phase coordinate adds no volume change
], ids=["Lorenz63_rk8_dt0.02", "Lorenz63_rho35", "Chen", "Lorenz96_n10", "Thomas", "Duffing"])
def test_flow_spectrum_sums_to_its_constant_divergence(system, kwargs, divergence):
    spectrum = lyapunov_spectrum(system, n_trajectories=8, **kwargs)
    assert spectrum.shape == (system.dim,)
    # Exact identity up to the integrator's determinant error (rk4 at the default step:
    # <= 2e-5 relative measured; rk8 1e-11). The brief allows 1%; 1e-4 relative is tight.
    assert spectrum.sum() == pytest.approx(divergence, rel=1e-4)


def test_lorenz96_n10_spectrum_sums_to_minus_n_and_is_chaotic():
    spectrum = lyapunov_spectrum(Lorenz96(n=10), n_steps=1000, n_trajectories=8)
    assert spectrum.sum() == pytest.approx(-10.0, rel=0.01)
    assert np.all(np.diff(spectrum) <= 0)
    # n = 10, F = 8 is chaotic with a leading exponent near 1 (measured 1.11 +- 0.14).
    assert 0.6 < spectrum[0] < 1.6


def test_henon_spectrum_sums_to_log_b_exactly():
    # |det J| = b at every point: the sum of log|R_ii| is n ln b up to round-off.
    spectrum = lyapunov_spectrum(Henon(a=1.4, b=0.3), n_steps=500, n_trajectories=4)
    assert spectrum.sum() == pytest.approx(np.log(0.3), abs=1e-12)


def test_rossler_leading_exponent_matches_sprott():
    spectrum, stderr = lyapunov_spectrum(Rossler(), n_steps=4000, n_trajectories=32,
                                         return_stderr=True)
    # 200 time units x 32 trajectories: measured 0.06972 +- 0.0014.
    assert stderr[0] < 0.003
    assert spectrum[0] == pytest.approx(0.0714, abs=0.005)
    assert spectrum[1] == pytest.approx(0.0, abs=0.005)
    assert spectrum[2] == pytest.approx(-5.3943, abs=0.05)


@pytest.mark.slow
def test_rossler_leading_exponent_matches_sprott_long_run():
    # 1000 time units x 32 trajectories (2048 of them give 0.0713 +- 0.0001, -0.0004,
    # -5.3943).
    spectrum, stderr = lyapunov_spectrum(Rossler(), n_steps=20_000, n_trajectories=32,
                                         return_stderr=True)
    assert spectrum[0] == pytest.approx(0.0714, abs=0.005)
    assert spectrum[1] == pytest.approx(0.0, abs=0.002)
    assert stderr[0] < 0.002
    assert spectrum[2] == pytest.approx(-5.3943, abs=0.02)


@pytest.mark.slow
def test_lorenz96_n40_f8_spectrum():
    # 100 time units x 16 trajectories: lambda_1 to ~0.015. Reference run here (128
    # trajectories of 200 time units): lambda_1 = 1.6947 +- 0.0036, 13 positive exponents
    # (lambda_13 = 0.039), lambda_14 = -0.002 (the zero exponent), D_KY = 27.10.
    spectrum = lyapunov_spectrum(Lorenz96(n=40, forcing=8.0), n_steps=10_000,
                                 n_trajectories=16)
    assert spectrum.sum() == pytest.approx(-40.0, rel=0.01)
    assert 1.55 <= spectrum[0] <= 1.75
    assert spectrum[12] > 0.01 and abs(spectrum[13]) < 0.02
    assert kaplan_yorke_dimension(spectrum) == pytest.approx(27.1, abs=0.5)


@pytest.mark.slow
def test_henon_and_logistic_long_runs_match_to_0_001():
    # 32 trajectories of 5e4 steps: standard errors ~2e-4.
    henon = lyapunov_spectrum(Henon(), n_steps=50_000, n_trajectories=32)
    np.testing.assert_allclose(henon, [0.41922, -1.62319], rtol=0, atol=0.001)
    logistic = lyapunov_spectrum(Logistic(), n_steps=50_000, n_trajectories=32)
    assert logistic[0] == pytest.approx(np.log(2.0), abs=0.001)


@pytest.mark.slow
def test_chen_spectrum_matches_reference():
    # Sprott's (2.0272, 0, -12.0272), checked here with 2048 trajectories of 200 time
    # units: 2.02734, -0.00014, -12.02722 +- 0.0011 (rk4, dt 0.005), 2.02656 +- 0.0014 (rk8).
    # 32 trajectories of 200 time units: standard error ~0.009.
    spectrum = lyapunov_spectrum(Chen(), n_steps=40_000, n_trajectories=32)
    np.testing.assert_allclose(spectrum, Chen.lyapunov_reference, rtol=0, atol=0.03)
    assert spectrum.sum() == pytest.approx(-10.0, abs=1e-3)


# ------------------------------------------------------------------------ tangent maps


@pytest.mark.parametrize("method, substeps", [("rk4", 1), ("rk8", 2), ("euler", 3)])
@pytest.mark.parametrize("cls", COMPONENT_FLOWS, ids=[c.__name__ for c in COMPONENT_FLOWS])
def test_fused_component_tangent_equals_generic_flow_tangent(cls, method, substeps):
    system = cls()
    dt = system.default_dt
    fused = system.as_discrete_map(dt, method=method, substeps=substeps)
    generic = BaseFlow.as_discrete_map(system, dt, method=method, substeps=substeps)
    assert fused.tangent is not generic.tangent
    generator = torch.Generator().manual_seed(0)
    x = torch.as_tensor(system.sample_initial_states(5, seed=1))
    frame = torch.randn((5, system.dim, 2), generator=generator, dtype=torch.float64)
    x_fused, x_generic = x, x
    q_fused, q_generic = frame, frame
    for _ in range(10):
        x_fused, q_fused = fused.tangent(x_fused, q_fused)
        x_generic, q_generic = generic.tangent(x_generic, q_generic)
    # The same scheme in another operation order: measured <= 2e-16 relative after one step.
    # 10 steps of the frame's growth keep it well under 1e-12 relative to its size.
    torch.testing.assert_close(x_fused, x_generic, rtol=1e-12, atol=1e-12)
    scale = q_generic.abs().max()
    torch.testing.assert_close(q_fused / scale, q_generic / scale, rtol=0, atol=1e-12)
    # ... and the state part is the map's own step.
    torch.testing.assert_close(x_fused, _iterate(fused.step, x, 10), rtol=1e-12, atol=1e-12)


def _iterate(step, x, n):
    for _ in range(n):
        x = step(x)
    return x


@pytest.mark.parametrize("method", ["rk4", "rk8", "euler"])
@pytest.mark.parametrize("cls", RK_FLOWS, ids=[c.__name__ for c in RK_FLOWS])
def test_flow_tangent_is_the_jacobian_of_its_integrator_step(cls, method):
    # Runge-Kutta methods commute with linearisation: the variational equation integrated
    # with the same scheme is exactly the derivative of the discrete step. Autodiff of the
    # step (through the rhs) is an independent derivation of it.
    system = cls()
    dmap = system.as_discrete_map(system.default_dt, method=method, substeps=2)
    x = torch.as_tensor(system.sample_initial_states(3, seed=2))
    identity = torch.eye(system.dim, dtype=torch.float64).expand(3, -1, -1).contiguous()
    _, tangent = dmap.advance(x, identity)
    autodiff = torch.func.vmap(torch.func.jacrev(lambda v: dmap.step(v[None])[0]))(x)
    # Round-off of two evaluation orders: measured <= 1e-15 relative to the largest entry.
    scale = autodiff.abs().max()
    torch.testing.assert_close(tangent / scale, autodiff / scale, rtol=0, atol=1e-13)


def test_flow_discrete_map_carries_time_step_and_refuses_adaptive_methods():
    dmap = Lorenz63().as_discrete_map(0.02, method="rk8", substeps=2)
    assert dmap.time_step == 0.02 and dmap.dim == 3
    assert as_discrete_map(Lorenz63()).time_step == 0.01  # default_dt
    with pytest.raises(ValueError, match="fixed-step method"):
        Lorenz63().as_discrete_map(0.01, method="dopri5")
    with pytest.raises(ValueError, match="fixed-step method"):
        lyapunov_spectrum(Lorenz63(), method="dop853")


# ------------------------------------------------------------------------ torch modules


def _diagonalisable(eigenvalues, seed=0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((len(eigenvalues), len(eigenvalues)))
    return v @ np.diag(eigenvalues) @ np.linalg.inv(v)


def _linear_module(matrix: np.ndarray, dtype=torch.float64) -> torch.nn.Linear:
    n = matrix.shape[0]
    module = torch.nn.Linear(n, n, bias=False).to(dtype)
    with torch.no_grad():
        module.weight.copy_(torch.as_tensor(matrix))
    return module


EIGENVALUES = np.array([1.5, 0.8, -0.3])  # |lambda| > 1, < 1 and negative


def test_linear_module_spectrum_is_log_abs_eigenvalues_by_autodiff():
    # A non-normal matrix: the frame must really align with the Oseledets directions.
    module = _linear_module(_diagonalisable(EIGENVALUES))
    spectrum = lyapunov_spectrum(module, x0=np.ones(3), n_steps=200, transient=50,
                                 n_trajectories=2)
    # Exact after alignment (transient of 50 steps: (0.8/1.5)^50 ~ 1e-14).
    np.testing.assert_allclose(spectrum, np.log(np.abs(EIGENVALUES)), rtol=0, atol=1e-10)


def test_module_with_time_step_gives_exponents_per_time_unit():
    module = _linear_module(_diagonalisable(EIGENVALUES))
    per_step = lyapunov_spectrum(module, x0=np.ones(3), n_steps=200, transient=50)
    per_time = lyapunov_spectrum(module, dt=0.1, x0=np.ones(3), n_steps=200, transient=50)
    np.testing.assert_allclose(per_time, np.log(np.abs(EIGENVALUES)) / 0.1, rtol=0,
                               atol=1e-9)
    np.testing.assert_allclose(per_time, per_step / 0.1, rtol=1e-12, atol=0)


def test_module_jacobian_method_and_plain_callable_give_the_same_spectrum():
    matrix = _diagonalisable(EIGENVALUES, seed=1)
    weight = torch.as_tensor(matrix)

    class WithJacobian(torch.nn.Module):
        dim = 3

        def forward(self, x):
            return x @ weight.T

        def jacobian(self, x):
            return weight.expand(x.shape[0], 3, 3)

    expected = np.log(np.abs(EIGENVALUES))
    options = dict(x0=np.ones(3), n_steps=200, transient=50)
    np.testing.assert_allclose(lyapunov_spectrum(WithJacobian(), **options), expected,
                               atol=1e-10)
    np.testing.assert_allclose(lyapunov_spectrum(lambda x: x @ weight.T, dim=3, **options),
                               expected, atol=1e-10)
    # The leading k exponents alone.
    np.testing.assert_allclose(lyapunov_spectrum(WithJacobian(), n_exponents=2, **options),
                               expected[:2], atol=1e-10)


def test_float32_module_gives_float32_accurate_spectrum():
    module = _linear_module(_diagonalisable(EIGENVALUES), dtype=torch.float32)
    # 160 steps in all: 1.5^160 ~ 1e28 stays below float32's 3e38.
    spectrum = lyapunov_spectrum(module, x0=np.ones(3), n_steps=100, transient=30)
    # float32 QR and products: ~1e-7 per step; alignment (0.8/1.5)^30 ~ 6e-9.
    np.testing.assert_allclose(spectrum, np.log(np.abs(EIGENVALUES)), rtol=0, atol=1e-4)


def test_nonlinear_module_by_autodiff_equals_analytic_map():
    # The Henon map written as a module without a Jacobian: autodiff tangent path.
    class HenonModule(torch.nn.Module):
        dim = 2

        def forward(self, x):
            return torch.stack([1.0 - 1.4 * x[:, 0] * x[:, 0] + x[:, 1], 0.3 * x[:, 0]], -1)

    x0 = Henon().sample_initial_states(4, seed=0)
    options = dict(x0=x0, n_steps=300, n_trajectories=4)
    np.testing.assert_allclose(lyapunov_spectrum(HenonModule(), **options),
                               lyapunov_spectrum(Henon(), **options), rtol=0, atol=1e-10)


# ------------------------------------------------------------------------ the algorithm


def test_orthonormalisation_interval_does_not_change_the_result():
    # The R factors of a product multiply, so log|R_ii| summed over QR steps is the same
    # whether QR runs every step or every 50 (exact arithmetic; round-off here).
    results = [lyapunov_spectrum(Lorenz63(), n_steps=1000, transient=200, n_trajectories=4,
                                 orthonormalize_every=every) for every in (1, 10, 50)]
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=0, atol=1e-9)


@pytest.mark.parametrize("n_steps, transient", [(2000, 205), (1234, None)])
def test_spectrum_sum_is_exact_for_any_transient(n_steps, transient):
    spectrum = lyapunov_spectrum(Lorenz63(), n_steps=n_steps, transient=transient,
                                 n_trajectories=4)
    assert spectrum.sum() == pytest.approx(LORENZ_SUM, abs=1e-3)


def test_leading_exponents_alone_agree_with_the_full_spectrum():
    # The same trajectories (same seed); only the frame has fewer columns. The growth rate
    # of 2-volumes is frame-independent once the frame has aligned with the plane of the
    # two leading directions (lambda_2 - lambda_3 = 14.6: instantly), so the sum agrees to
    # round-off; the split between lambda_1 and lambda_2 aligns at rate lambda_1 - lambda_2
    # and carries ~0.01 of its start over 10 time units (measured 0.0047).
    options = dict(n_steps=1000, n_trajectories=4)
    full = lyapunov_spectrum(Lorenz63(), **options)
    leading = lyapunov_spectrum(Lorenz63(), n_exponents=2, **options)
    assert leading.shape == (2,)
    assert leading.sum() == pytest.approx(full[:2].sum(), abs=1e-8)
    np.testing.assert_allclose(leading, full[:2], rtol=0, atol=0.02)


def test_rossler_short_run_is_within_four_standard_errors_of_the_long_run():
    spectrum, stderr = lyapunov_spectrum(Rossler(), n_steps=4000, n_trajectories=128,
                                         return_stderr=True)
    # Long run here: 2048 trajectories x 1000 time units: 0.0713, -0.0004, -5.39425 with
    # standard errors <= 0.00015, negligible beside those of the short run.
    long_run = np.array([0.0713, -0.0004, -5.39425])
    assert np.all(np.abs(spectrum - long_run) <= 4 * stderr)


def test_seed_reproduces_and_different_seeds_differ():
    first = lyapunov_spectrum(Henon(), n_steps=300, n_trajectories=4, seed=1)
    np.testing.assert_array_equal(first, lyapunov_spectrum(Henon(), n_steps=300,
                                                           n_trajectories=4, seed=1))
    assert not np.array_equal(first, lyapunov_spectrum(Henon(), n_steps=300,
                                                       n_trajectories=4, seed=2))


def test_x0_as_a_trajectory_starts_from_points_along_it():
    trajectory = Lorenz63().simulate(500, transient=500)
    spectrum = lyapunov_spectrum(Lorenz63(), x0=trajectory, n_steps=1000, n_trajectories=4)
    assert spectrum.sum() == pytest.approx(LORENZ_SUM, abs=1e-3)
    with pytest.raises(ValueError, match="x0 must have 3 columns"):
        lyapunov_spectrum(Lorenz63(), x0=np.ones((5, 2)), n_steps=10)


def test_stderr_has_one_entry_per_exponent_and_shrinks_with_more_trajectories():
    _, few = lyapunov_spectrum(Henon(), n_steps=500, n_trajectories=8, return_stderr=True)
    spectrum, many = lyapunov_spectrum(Henon(), n_steps=500, n_trajectories=64,
                                       return_stderr=True)
    assert spectrum.shape == few.shape == many.shape == (2,)
    # 8 times the trajectories: sqrt(8) = 2.8 times smaller in expectation (measured 2.2).
    assert np.all(many < few / 1.5)
    _, single = lyapunov_spectrum(Henon(), n_steps=100, n_trajectories=1, return_stderr=True)
    assert single.shape == (2,) and np.all(np.isnan(single))
    _, leading = lyapunov_spectrum(Lorenz63(), n_exponents=1, n_steps=200, n_trajectories=4,
                                   return_stderr=True)
    assert leading.shape == (1,)


def test_spectrum_is_descending():
    spectrum = lyapunov_spectrum(Lorenz96(n=8), n_steps=300, n_trajectories=4)
    assert np.all(np.diff(spectrum) <= 0)


# ------------------------------------------------------------------------ Kaplan-Yorke


@pytest.mark.parametrize("spectrum, expected", [
    ([0.9056, 0.0, -14.5723], 2.0 + 0.9056 / 14.5723),   # Lorenz-63: 2.0621
    ([0.0714, 0.0, -5.3943], 2.0 + 0.0714 / 5.3943),     # Rossler: 2.0132
    ([0.41922, -1.62319], 1.0 + 0.41922 / 1.62319),      # Henon: 1.2583
    ([1.0, 0.0, -0.5, -2.0], 3.0 + 0.5 / 2.0),           # partial sums 1, 1, 0.5, -1.5
    ([-14.5723, 0.9056, 0.0], 2.0 + 0.9056 / 14.5723),   # unsorted input is sorted
    ([-0.1, -0.5, -2.0], 0.0),                           # a stable fixed point
    ([0.0, -1.0], 1.0),                                  # a limit cycle
    ([2.0, -1.0, -3.0], 2.0 + 1.0 / 3.0),
])
def test_kaplan_yorke_dimension_by_hand(spectrum, expected):
    assert kaplan_yorke_dimension(spectrum) == pytest.approx(expected, abs=1e-12)
    assert kaplan_yorke_dimension(np.asarray(spectrum)) == pytest.approx(expected, abs=1e-12)


def test_kaplan_yorke_dimension_of_a_spectrum_that_never_sums_below_zero_warns():
    # All partial sums >= 0: the number of exponents given, which for a truncated spectrum
    # (a forecaster's default three) is only a lower bound; a whole one would be right.
    with pytest.warns(UserWarning, match="a lower bound if the spectrum was truncated"):
        assert kaplan_yorke_dimension([0.3, 0.2, 0.1]) == 3.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kaplan_yorke_dimension([0.3]) == 1.0  # one exponent: nothing to say
        assert kaplan_yorke_dimension([0.3, -0.1, -1.0]) == pytest.approx(3.0 - 0.8)


def test_kaplan_yorke_reference_values_of_spec():
    assert kaplan_yorke_dimension(Lorenz63.lyapunov_reference) == pytest.approx(2.062, abs=5e-4)
    assert kaplan_yorke_dimension(Rossler.lyapunov_reference) == pytest.approx(2.013, abs=5e-4)


def test_kaplan_yorke_rejects_empty_and_nan():
    with pytest.raises(ValueError, match="empty"):
        kaplan_yorke_dimension([])
    with pytest.raises(ValueError, match="NaN"):
        kaplan_yorke_dimension([0.5, np.nan])


# ------------------------------------------------------------------------ bad input


def test_more_exponents_than_dimensions_is_refused():
    with pytest.raises(ValueError, match=r"n_exponents=4 exceeds the .*dimension 3"):
        lyapunov_spectrum(Lorenz63(), n_exponents=4)
    with pytest.raises(ValueError, match="n_exponents must be > 0"):
        lyapunov_spectrum(Lorenz63(), n_exponents=0)


def test_objects_that_are_not_maps_are_refused():
    with pytest.raises(TypeError, match="cannot analyse an object of type int"):
        lyapunov_spectrum(42)
    with pytest.raises(TypeError, match="cannot analyse an object of type str"):
        lyapunov_spectrum("lorenz63")
    with pytest.raises(ValueError, match="cannot infer the state dimension"):
        lyapunov_spectrum(torch.nn.Tanh())
    with pytest.raises(ValueError, match="unknown options"):
        lyapunov_spectrum(torch.nn.Linear(2, 2), method="rk4")
    with pytest.raises(ValueError, match="no default initial states; pass x0"):
        lyapunov_spectrum(torch.nn.Linear(2, 2), n_steps=10)


def test_module_dimension_is_inferred_from_x0_as_the_message_promises():
    spectrum = lyapunov_spectrum(torch.nn.Tanh(), x0=np.full((1, 3), 0.5), n_steps=100)
    assert spectrum.shape == (3,)


def test_bad_numbers_of_steps_and_trajectories_are_refused():
    with pytest.raises(ValueError, match="n_steps must be > 0"):
        lyapunov_spectrum(Henon(), n_steps=0)
    with pytest.raises(ValueError, match="n_trajectories must be > 0"):
        lyapunov_spectrum(Henon(), n_trajectories=0)
    with pytest.raises(ValueError, match="transient must be >= 0"):
        lyapunov_spectrum(Henon(), transient=-1)
    with pytest.raises(ValueError, match="orthonormalize_every must be > 0"):
        lyapunov_spectrum(Henon(), orthonormalize_every=0)


def test_maps_refuse_a_time_step():
    with pytest.raises(ValueError, match="Henon is a map: it takes no dt"):
        lyapunov_spectrum(Henon(), dt=0.5)


def test_escaping_trajectory_raises_divergence_error():
    with pytest.raises(DivergenceError, match="became non-finite at step"):
        lyapunov_spectrum(Logistic(r=4.5), n_steps=100)


def test_discrete_map_passes_through_unchanged():
    dmap = Henon().as_discrete_map()
    assert isinstance(dmap, DiscreteMap) and as_discrete_map(dmap) is dmap


# ------------------------------------------------------------------------ CUDA


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_spectrum_and_fused_tangent_equal_cpu():
    # On CUDA the fused component tangent runs its torch branch (numpy on the CPU).
    system = Lorenz63()
    cpu_map = system.as_discrete_map(0.01)
    gpu_map = system.as_discrete_map(0.01, device="cuda")
    x = torch.as_tensor(system.sample_initial_states(64, seed=0))
    frame = torch.linalg.qr(torch.randn(64, 3, 3, dtype=torch.float64))[0]
    x_cpu, q_cpu = cpu_map.tangent(x, frame)
    x_gpu, q_gpu = gpu_map.tangent(x.cuda(), frame.cuda())
    torch.testing.assert_close(x_gpu.cpu(), x_cpu, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(q_gpu.cpu(), q_cpu, rtol=1e-13, atol=1e-13)
    spectrum = lyapunov_spectrum(system, device="cuda", n_steps=2000, n_trajectories=256)
    np.testing.assert_allclose(spectrum, [0.9056, 0.0, -14.5723], rtol=0, atol=0.03)
    assert spectrum.sum() == pytest.approx(LORENZ_SUM, abs=1e-3)
    linear = _linear_module(_diagonalisable(EIGENVALUES)).cuda()
    np.testing.assert_allclose(
        lyapunov_spectrum(linear, x0=np.ones(3), n_steps=200, transient=50),
        np.log(np.abs(EIGENVALUES)), rtol=0, atol=1e-10)


def test_forward_mode_tangents_raise_no_deprecation_warning_of_torch():
    # torch builds its forward-mode decompositions with torch.jit.script on first use, whose
    # DeprecationWarning reached users of the analyses; a fresh process is needed to see it.
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from tsrnn._protocol import DiscreteMap\n"
        "from tsrnn.analysis import lyapunov_spectrum\n"
        "def step(x):\n"
        "    return torch.stack([1 - 1.4 * x[:, 0] ** 2 + x[:, 1], 0.3 * x[:, 0]], 1)\n"
        "def starts(n, seed):\n"
        "    return torch.zeros(n, 2, dtype=torch.float64)\n"
        "dmap = DiscreteMap(step=step, dim=2, initial_states=starts)\n"
        "print(lyapunov_spectrum(dmap, n_steps=150, transient=20, n_trajectories=8)[0])\n"
    )
    result = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 0.3 < float(result.stdout.split()[-1]) < 0.55  # Henon: lambda_1 = 0.419


def test_a_finely_sampled_contracting_map_keeps_its_lower_exponents():
    # Learned maps re-orthonormalise every step by default, whatever their dt: with the
    # flows' 0.1 time units (100 steps at dt = 0.001) the frame of this map collapsed onto
    # its leading direction and the lower exponents read -637, -789, -916.
    rotation = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64,
                                           generator=torch.Generator().manual_seed(0)))[0]
    factors = np.array([0.9, 0.5, 0.1, 0.01])
    matrix = rotation @ torch.diag(torch.from_numpy(factors)) @ rotation.T

    class Linear(torch.nn.Module):
        def forward(self, z):
            return z @ matrix.T

    dt = 0.001
    spectrum = lyapunov_spectrum(Linear(), dt=dt, dim=4, n_steps=300, transient=10,
                                 n_trajectories=2, x0=np.ones((2, 4)))
    # (rtol: the first measured steps still turn the frame onto the eigenvectors)
    np.testing.assert_allclose(spectrum, np.log(factors) / dt, rtol=1e-5)


def test_small_maps_run_on_one_thread_and_give_the_threads_back(monkeypatch):
    # Thousands of tiny steps: torch's threads only wait for each other (60x slower on a
    # busy two-core machine). The caller's setting is restored afterwards.
    from tsrnn.systems import Henon

    counts = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (counts.append(n), real(n)))
    before = torch.get_num_threads()
    real(2)
    try:
        lyapunov_spectrum(Henon(), n_steps=50, n_trajectories=2, seed=0)
        assert counts == [1, 2] and torch.get_num_threads() == 2
    finally:
        real(before)
