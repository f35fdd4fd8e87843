"""Tests of the maps in tsrnn.systems: equations, analytic Jacobians, types and shapes,
parameters, iteration by `simulate`, and maps refusing a time step."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from tsrnn.exceptions import DivergenceError
from tsrnn.systems import SYSTEMS, Henon, Ikeda, Logistic, Map

MAPS = [cls for cls in SYSTEMS.values() if issubclass(cls, Map)]
MAP_IDS = [cls.__name__ for cls in MAPS]


def perturbed_params(cls) -> dict:
    """Every float parameter moved off its default (see tests/systems/test_flows.py)."""
    return {name: 1.13 * value + 0.07 if isinstance(value, float) else value
            for name, value in cls().get_params().items()}


def generic_states(system, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = system.sample_initial_states(n, seed=seed)
    return base + 0.2 * rng.standard_normal(base.shape)


def central_difference_jacobian(f, x: np.ndarray) -> np.ndarray:
    dim = x.shape[0]
    jac = np.empty((dim, dim))
    for j in range(dim):
        h = 1e-6 * max(1.0, abs(x[j]))
        e = np.zeros(dim)
        e[j] = h
        jac[:, j] = (f(x + e) - f(x - e)) / (2.0 * h)
    return jac


def _ikeda(p, x):
    t = 0.4 - 6.0 / (1.0 + x[0] ** 2 + x[1] ** 2)
    return [1.0 + p["u"] * (x[0] * np.cos(t) - x[1] * np.sin(t)),
            p["u"] * (x[0] * np.sin(t) + x[1] * np.cos(t))]


# The equations of the class docstrings, written independently of the implementation.
EQUATIONS = {
    "Henon": lambda p, x: [1.0 - p["a"] * x[0] ** 2 + x[1], p["b"] * x[0]],
    "Logistic": lambda p, x: [p["r"] * x[0] * (1.0 - x[0])],
    "Ikeda": _ikeda,
}


# ------------------------------------------------------------------------ Jacobians


@pytest.mark.parametrize("perturb", [False, True], ids=["defaults", "perturbed"])
@pytest.mark.parametrize("cls", MAPS, ids=MAP_IDS)
def test_map_jacobian_equals_central_differences(cls, perturb):
    system = cls(**perturbed_params(cls)) if perturb else cls()
    for x in generic_states(system, 5, seed=1):
        analytic = system.jacobian(x)
        numeric = central_difference_jacobian(system.step, x)
        # Central differences: truncation O(h^2) ~ 1e-12, cancellation ~ 1e-10; a wrong entry
        # is off by O(1).
        scale = max(1.0, np.abs(analytic).max())
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.parametrize("cls", MAPS, ids=MAP_IDS)
def test_map_jacobian_equals_autodiff_of_step(cls):
    system = cls(**perturbed_params(cls))
    x = torch.as_tensor(generic_states(system, 3, seed=2))
    autodiff = torch.func.vmap(torch.func.jacrev(lambda v: system.step(v)))(x)
    torch.testing.assert_close(system.jacobian(x), autodiff, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(EQUATIONS))
def test_map_step_equals_documented_equations(name):
    cls = SYSTEMS[name.lower()]
    for params in (cls().get_params(), perturbed_params(cls)):
        system = cls(**params)
        for x in generic_states(system, 3, seed=3):
            np.testing.assert_allclose(system.step(x), EQUATIONS[name](params, x),
                                       rtol=1e-14, atol=1e-14)


def test_every_map_has_documented_equations_here():
    assert {cls.__name__ for cls in MAPS} <= set(EQUATIONS)


def test_henon_jacobian_determinant_is_minus_b_everywhere():
    system = Henon(a=1.3, b=0.25)
    states = generic_states(system, 6, seed=4)
    np.testing.assert_allclose(np.linalg.det(system.jacobian(states)), -0.25, rtol=1e-14)


def test_logistic_r4_follows_its_closed_form_solution():
    # x_n = sin^2(2^n theta) with x_0 = sin^2(theta) (conjugacy to the doubling map).
    # Round-off doubles with every step: after 12 steps ~ 1e-16 * 4^12 ~ 2e-9 at worst.
    theta = 0.3
    trajectory = Logistic().simulate(13, x0=[np.sin(theta) ** 2])[:, 0]
    exact = np.sin(2.0 ** np.arange(13) * theta) ** 2
    np.testing.assert_allclose(trajectory, exact, rtol=0, atol=1e-8)


# ------------------------------------------------------------------------ types and shapes


@pytest.mark.parametrize("cls", MAPS, ids=MAP_IDS)
def test_map_step_and_jacobian_return_the_type_and_shape_they_are_given(cls):
    system = cls()
    dim = system.dim
    states = generic_states(system, 3, seed=5)
    for x in (states[0], states):
        for convert in (np.asarray, torch.as_tensor):
            given = convert(x)
            y, jac = system.step(given), system.jacobian(given)
            assert type(y) is type(given) and type(jac) is type(given)
            assert tuple(y.shape) == x.shape
            assert tuple(jac.shape) == (*x.shape, dim)
            assert y.dtype == given.dtype and jac.dtype == given.dtype
    f32 = system.step(torch.as_tensor(states, dtype=torch.float32))
    assert f32.dtype == torch.float32
    # float32 round-off, ~1e-7 relative; 1e-5 allows for the amplification by |J| ~ 10.
    np.testing.assert_allclose(f32.double().numpy(), system.step(states), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", MAPS, ids=MAP_IDS)
def test_map_batch_equals_single_samples(cls):
    system = cls()
    states = generic_states(system, 4, seed=6)
    batch_y, batch_j = system.step(states), system.jacobian(states)
    for i, x in enumerate(states):
        np.testing.assert_allclose(batch_y[i], system.step(x), rtol=1e-15, atol=0)
        np.testing.assert_allclose(batch_j[i], system.jacobian(x), rtol=1e-15, atol=0)


@pytest.mark.parametrize("cls", MAPS, ids=MAP_IDS)
def test_map_rejects_state_of_wrong_size(cls):
    system = cls()
    with pytest.raises(ValueError, match="must have shape"):
        system.step(np.ones(system.dim + 1))
    with pytest.raises(ValueError, match="must have shape"):
        system.jacobian(np.ones((3, system.dim + 1)))


# ------------------------------------------------------------------------ contract


@pytest.mark.parametrize("cls", MAPS, ids=MAP_IDS)
def test_map_has_dim_default_dt_and_lyapunov_reference(cls):
    system = cls()
    assert system.is_map
    assert isinstance(system.dim, int) and system.dim > 0
    assert system.default_dt == 1.0
    reference = system.lyapunov_reference
    if reference is not None:
        assert len(reference) == system.dim
        assert list(reference) == sorted(reference, reverse=True)
    first = system.sample_initial_states(4, seed=7)
    assert first.shape == (4, system.dim)
    np.testing.assert_array_equal(first, system.sample_initial_states(4, seed=7))


@pytest.mark.parametrize("cls", MAPS, ids=MAP_IDS)
def test_map_parameters_are_keywords_stored_and_reported(cls):
    system = cls()
    params = system.get_params()
    signature = inspect.signature(cls.__init__)
    assert list(params) == [p for p in signature.parameters if p != "self"]
    assert cls(**params).get_params() == params
    assert cls(**perturbed_params(cls)).get_params() == perturbed_params(cls)
    assert repr(system).startswith(f"{cls.__name__}(")


def test_map_defaults_are_the_canonical_parameters_of_spec():
    assert Henon().get_params() == {"a": 1.4, "b": 0.3}
    assert Logistic().get_params() == {"r": 4.0}
    assert Ikeda().get_params() == {"u": 0.9}
    assert repr(Henon()) == "Henon(a=1.4, b=0.3)"
    assert Henon().lyapunov_reference == pytest.approx((0.41922, -1.62319), abs=1e-5)
    assert Logistic().lyapunov_reference == pytest.approx((np.log(2.0),), abs=1e-15)


def test_henon_reference_spectrum_sums_to_log_b():
    # |det J| = b at every point, so the exponents sum to ln b per step.
    assert sum(Henon.lyapunov_reference) == pytest.approx(np.log(0.3), abs=1e-5)


# ------------------------------------------------------------------------ simulate


@pytest.mark.parametrize("cls", MAPS, ids=MAP_IDS)
def test_map_simulate_iterates_the_step(cls):
    system = cls()
    x0 = system.sample_initial_states(1, seed=8)[0]
    trajectory = system.simulate(30, x0=x0)
    assert trajectory.shape == (30, system.dim)
    expected = [x0]
    for _ in range(29):
        expected.append(system.step(expected[-1]))
    # The same torch arithmetic on the same numbers: identical.
    np.testing.assert_array_equal(trajectory, np.array(expected))


@pytest.mark.parametrize("cls", MAPS, ids=MAP_IDS)
def test_map_simulate_transient_drops_exactly_that_many_iterations(cls):
    system = cls()
    long = system.simulate(40 + 17, seed=9)
    np.testing.assert_array_equal(system.simulate(40, transient=17, seed=9), long[17:])
    batch = system.simulate(40, x0=system.sample_initial_states(3, seed=10), transient=5)
    assert batch.shape == (3, 40, system.dim)


@pytest.mark.parametrize("dt", [0.5, 2.0, 0.01])
def test_map_refuses_a_time_step(dt):
    with pytest.raises(ValueError, match="is a map: it takes no dt"):
        Henon().simulate(10, dt=dt)
    with pytest.raises(ValueError, match="is a map: it takes no dt"):
        Logistic().as_discrete_map(dt)


def test_map_refuses_integrator_options():
    with pytest.raises(ValueError, match="method and substeps do not apply"):
        Henon().simulate(10, method="rk4")
    with pytest.raises(ValueError, match="method and substeps do not apply"):
        Logistic().simulate(10, substeps=2)


def test_map_dt_none_and_one_mean_one_step():
    np.testing.assert_array_equal(Henon().simulate(20, dt=1.0), Henon().simulate(20))


def test_logistic_r4_stays_in_unit_interval_and_henon_stays_bounded():
    x = Logistic().simulate(2000, seed=11)
    assert x.min() >= 0.0 and x.max() <= 1.0
    y = Henon().simulate(2000, transient=100)
    # The Henon attractor lies in |x| < 1.3, |y| < 0.4.
    assert np.abs(y[:, 0]).max() < 1.3 and np.abs(y[:, 1]).max() < 0.4


def test_logistic_beyond_r4_escapes_with_divergence_error_naming_the_time():
    with pytest.raises(DivergenceError, match=r"t = \d+"):
        Logistic(r=4.5).simulate(100)
    with pytest.raises(DivergenceError, match=r"t = \d+"):
        Logistic(r=4.5).simulate(10, transient=1000)
    with pytest.raises(DivergenceError, match=r"t = \d+"):
        Logistic(r=4.5).simulate(1000, x0=np.full((2, 1), 0.5))


def test_map_as_discrete_map_is_the_map_with_unit_time_step():
    system = Henon()
    dmap = system.as_discrete_map()
    x = torch.as_tensor(generic_states(system, 4, seed=12))
    assert dmap.time_step == 1.0 and dmap.dim == 2
    torch.testing.assert_close(dmap.step(x), system.step(x), rtol=0, atol=0)
    frame = torch.eye(2, dtype=torch.float64).expand(4, 2, 2)
    stepped, tangent = dmap.advance(x, frame)
    torch.testing.assert_close(stepped, dmap.step(x), rtol=0, atol=0)
    torch.testing.assert_close(tangent, system.jacobian(x), rtol=0, atol=0)
    assert dmap.initial_states(5, 0).shape == (5, 2)
