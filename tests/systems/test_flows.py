"""Tests of the flows in tsrnn.systems: equations, analytic Jacobians, types and shapes,
parameters and the per-system contract (dim, default_dt, lyapunov_reference)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from tsrnn.systems import (
    SYSTEMS,
    Chen,
    ComponentFlow,
    FitzHughNagumo,
    Flow,
    KuramotoOscillators,
    Lorenz63,
    Lorenz96,
    Rossler,
)

# Every flow registered in SYSTEMS, so that a flow added later is tested without edits here.
FLOWS = [cls for cls in SYSTEMS.values() if issubclass(cls, Flow)]
FLOW_IDS = [cls.__name__ for cls in FLOWS]


def perturbed_params(cls) -> dict:
    """Non-default parameters: every float moved off its default (a zero default becomes
    0.07), so that a parameter the Jacobian or the field ignores cannot hide behind a
    default that happens to be 0 or 1. Integers (sizes) and None stay."""
    params = {}
    for name, value in cls().get_params().items():
        is_float = isinstance(value, float) and not isinstance(value, bool)
        params[name] = 1.13 * value + 0.07 if is_float else value
    return params


def generic_states(system, n: int, seed: int = 0) -> np.ndarray:
    """States near the system's own initial states, moved by O(0.5) so that no coordinate
    sits at a special value (a forcing phase of exactly 0, say)."""
    rng = np.random.default_rng(seed)
    base = system.sample_initial_states(n, seed=seed)
    return base + 0.5 * rng.standard_normal(base.shape)


def central_difference_jacobian(f, x: np.ndarray) -> np.ndarray:
    dim = x.shape[0]
    jac = np.empty((dim, dim))
    for j in range(dim):
        h = 1e-6 * max(1.0, abs(x[j]))
        e = np.zeros(dim)
        e[j] = h
        jac[:, j] = (f(x + e) - f(x - e)) / (2.0 * h)
    return jac


# ------------------------------------------------------------------------ Jacobians


@pytest.mark.parametrize("perturb", [False, True], ids=["defaults", "perturbed"])
@pytest.mark.parametrize("cls", FLOWS, ids=FLOW_IDS)
def test_flow_jacobian_equals_central_differences(cls, perturb):
    system = cls(**perturbed_params(cls)) if perturb else cls()
    for x in generic_states(system, 4, seed=1):
        analytic = system.jacobian(x)
        numeric = central_difference_jacobian(system.rhs, x)
        # Central differences with h = 1e-6 |x|: truncation O(h^2) ~ 1e-12 and cancellation
        # ~ eps |f| / h ~ 1e-10 |f|, so 1e-6 (relative to the largest entry) is ample and a
        # wrong entry (a sign, a missing factor) is off by O(1).
        scale = max(1.0, np.abs(analytic).max())
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.parametrize("cls", FLOWS, ids=FLOW_IDS)
def test_flow_jacobian_equals_autodiff_of_rhs(cls):
    # Autodiff of the torch right-hand side: exact to round-off, an independent derivation.
    system = cls(**perturbed_params(cls))
    x = torch.as_tensor(generic_states(system, 3, seed=2))
    autodiff = torch.func.vmap(torch.func.jacrev(lambda v: system.rhs(v)))(x)
    torch.testing.assert_close(system.jacobian(x), autodiff, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------ equations


def _lorenz96_loops(p, x):
    n = len(x)
    return np.array([(x[(i + 1) % n] - x[i - 2]) * x[i - 1] - x[i] + p["forcing"]
                     for i in range(n)])


def _kuramoto_loops(system, p, x):
    omega = system._omega
    n = len(x)
    return np.array([omega[i] + p["coupling"] / n * sum(np.sin(x[j] - x[i]) for j in range(n))
                     for i in range(n)])


def _chua_f(p, x):
    return p["m1"] * x + 0.5 * (p["m0"] - p["m1"]) * (abs(x + 1) - abs(x - 1))


# The equations as printed in each class docstring (and SPEC.md section 1), written
# independently of the implementation: a plain function of the parameters and the state.
EQUATIONS = {
    "Lorenz63": lambda p, s, x: [p["sigma"] * (x[1] - x[0]), x[0] * (p["rho"] - x[2]) - x[1],
                                 x[0] * x[1] - p["beta"] * x[2]],
    "Rossler": lambda p, s, x: [-x[1] - x[2], x[0] + p["a"] * x[1],
                                p["b"] + x[2] * (x[0] - p["c"])],
    "Chen": lambda p, s, x: [p["a"] * (x[1] - x[0]),
                             (p["c"] - p["a"]) * x[0] - x[0] * x[2] + p["c"] * x[1],
                             x[0] * x[1] - p["b"] * x[2]],
    "Chua": lambda p, s, x: [p["alpha"] * (x[1] - x[0] - _chua_f(p, x[0])),
                             x[0] - x[1] + x[2], -p["beta"] * x[1]],
    "DoubleScroll": lambda p, s, x: [x[1], x[2],
                                     -p["a"] * (x[2] + x[1] + x[0] - np.sign(x[0]))],
    "Duffing": lambda p, s, x: [x[1], -p["delta"] * x[1] - p["alpha"] * x[0]
                                - p["beta"] * x[0] ** 3 + p["gamma"] * np.cos(x[2]),
                                p["omega"]],
    "VanDerPol": lambda p, s, x: [x[1], p["mu"] * (1 - x[0] ** 2) * x[1] - x[0]
                                  + p["amplitude"] * np.cos(x[2]), p["omega"]],
    "FitzHughNagumo": lambda p, s, x: [x[0] - x[0] ** 3 / 3 - x[1] + p["I"],
                                       p["epsilon"] * (x[0] + p["a"] - p["b"] * x[1])],
    "Thomas": lambda p, s, x: [np.sin(x[1]) - p["b"] * x[0], np.sin(x[2]) - p["b"] * x[1],
                               np.sin(x[0]) - p["b"] * x[2]],
    "Lorenz96": lambda p, s, x: _lorenz96_loops(p, x),
    "KuramotoOscillators": lambda p, s, x: _kuramoto_loops(s, p, x),
}


@pytest.mark.parametrize("name", sorted(EQUATIONS))
def test_flow_rhs_equals_documented_equations(name):
    cls = SYSTEMS[name.lower()]
    for params in (cls().get_params(), perturbed_params(cls)):
        system = cls(**params)
        for x in generic_states(system, 3, seed=3):
            expected = np.asarray(EQUATIONS[name](params, system, x), dtype=float)
            np.testing.assert_allclose(system.rhs(x), expected, rtol=1e-13, atol=1e-13)


def test_every_flow_has_documented_equations_here():
    # A new flow must come with its equations in EQUATIONS (or be tested in its own file).
    own_files = {"KuramotoSivashinsky", "MackeyGlass"}
    missing = {cls.__name__ for cls in FLOWS} - set(EQUATIONS) - own_files
    assert not missing


def test_lorenz96_rhs_is_cyclic_and_shift_equivariant():
    # Rolling the sites rolls the field: the equations are the same at every site.
    system = Lorenz96(n=12, forcing=5.0)
    x = np.random.default_rng(4).standard_normal(12)
    np.testing.assert_allclose(system.rhs(np.roll(x, 3)), np.roll(system.rhs(x), 3),
                               rtol=1e-14, atol=1e-14)
    # x_i = F is an equilibrium.
    np.testing.assert_allclose(system.rhs(np.full(12, 5.0)), 0.0, atol=1e-14)


def test_kuramoto_with_given_frequencies_and_zero_coupling_rotates_freely():
    omega = np.linspace(-1.0, 1.0, 5)
    system = KuramotoOscillators(n=5, coupling=0.0, frequencies=omega)
    x = np.random.default_rng(5).uniform(0, 2 * np.pi, 5)
    np.testing.assert_allclose(system.rhs(x), omega, rtol=0, atol=1e-15)
    # Same seed, same natural frequencies: the system is fixed by its parameters.
    a, b = KuramotoOscillators(n=7, frequency_seed=3), KuramotoOscillators(n=7, frequency_seed=3)
    np.testing.assert_array_equal(a.rhs(np.zeros(7)), b.rhs(np.zeros(7)))
    with pytest.raises(ValueError, match="frequencies must have n=5"):
        KuramotoOscillators(n=5, frequencies=np.ones(4))


def test_kuramoto_order_parameter_is_one_for_equal_phases_and_zero_for_splay():
    system = KuramotoOscillators(n=8)
    assert system.order_parameter(np.full(8, 0.3)) == pytest.approx(1.0, abs=1e-15)
    splay = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    assert system.order_parameter(splay) == pytest.approx(0.0, abs=1e-15)


# ------------------------------------------------------------------------ types and shapes


@pytest.mark.parametrize("cls", FLOWS, ids=FLOW_IDS)
def test_flow_rhs_and_jacobian_return_the_type_and_shape_they_are_given(cls):
    system = cls()
    dim = system.dim
    states = generic_states(system, 3, seed=6)
    for x in (states[0], states):
        for convert in (np.asarray, torch.as_tensor):
            given = convert(x)
            f, jac = system.rhs(given), system.jacobian(given)
            assert type(f) is type(given) and type(jac) is type(given)
            assert tuple(f.shape) == x.shape
            assert tuple(jac.shape) == (*x.shape, dim)
            assert f.dtype == given.dtype and jac.dtype == given.dtype
    # Extra leading dimensions (..., dim) are kept.
    stacked = np.stack([states, states])
    assert system.rhs(stacked).shape == (2, 3, dim)
    assert system.jacobian(stacked).shape == (2, 3, dim, dim)


@pytest.mark.parametrize("cls", FLOWS, ids=FLOW_IDS)
def test_flow_float32_tensor_stays_float32_and_close_to_float64(cls):
    system = cls()
    x = generic_states(system, 3, seed=7)
    f32 = system.rhs(torch.as_tensor(x, dtype=torch.float32))
    j32 = system.jacobian(torch.as_tensor(x, dtype=torch.float32))
    assert f32.dtype == torch.float32 and j32.dtype == torch.float32
    # float32 round-off of inputs and arithmetic: ~1e-7 relative, 1e-5 leaves headroom for
    # the cancellation in differences such as y - x.
    scale = max(1.0, np.abs(system.rhs(x)).max())
    np.testing.assert_allclose(f32.double().numpy(), system.rhs(x), rtol=1e-5, atol=1e-5 * scale)
    jscale = max(1.0, np.abs(system.jacobian(x)).max())
    np.testing.assert_allclose(j32.double().numpy(), system.jacobian(x), rtol=1e-5,
                               atol=1e-5 * jscale)


@pytest.mark.parametrize("cls", FLOWS, ids=FLOW_IDS)
def test_flow_batch_equals_single_samples(cls):
    system = cls()
    states = generic_states(system, 4, seed=8)
    batch_f, batch_j = system.rhs(states), system.jacobian(states)
    for i, x in enumerate(states):
        # The same arithmetic per row; 1e-13 only allows for a vectorised reduction order.
        np.testing.assert_allclose(batch_f[i], system.rhs(x), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(batch_j[i], system.jacobian(x), rtol=1e-13, atol=1e-13)
    # numpy and torch give the same numbers.
    np.testing.assert_allclose(system.rhs(torch.as_tensor(states)).numpy(), batch_f,
                               rtol=1e-15, atol=0)


@pytest.mark.parametrize("cls", FLOWS, ids=FLOW_IDS)
def test_flow_rejects_state_of_wrong_size(cls):
    system = cls()
    with pytest.raises(ValueError, match="must have shape"):
        system.rhs(np.ones(system.dim + 1))
    with pytest.raises(ValueError, match="must have shape"):
        system.jacobian(np.ones((2, system.dim + 1)))


@pytest.mark.parametrize("cls", [c for c in FLOWS if issubclass(c, ComponentFlow)],
                         ids=[c.__name__ for c in FLOWS if issubclass(c, ComponentFlow)])
def test_component_field_gives_same_numbers_on_floats_arrays_and_tensors(cls):
    # The fast path evaluates `field` on Python floats: it must be the rhs.
    system = cls(**perturbed_params(cls))
    x = generic_states(system, 1, seed=9)[0]
    on_floats = np.array(system.field(*(float(v) for v in x)), dtype=float)
    np.testing.assert_allclose(on_floats, system.rhs(x), rtol=1e-14, atol=1e-14)


# ------------------------------------------------------------------------ contract


@pytest.mark.parametrize("cls", FLOWS, ids=FLOW_IDS)
def test_flow_has_dim_default_dt_and_lyapunov_reference(cls):
    system = cls()
    assert isinstance(system.dim, int) and system.dim > 0
    assert isinstance(system.default_dt, float) and system.default_dt > 0
    assert not system.is_map
    reference = system.lyapunov_reference
    if reference is not None:
        reference = np.asarray(reference, dtype=float)
        assert reference.shape == (system.dim,)
        assert np.all(np.diff(reference) <= 0), "reference spectrum must be descending"
        # An autonomous flow off equilibria has a zero exponent (along the flow), and the
        # chaotic flows here are dissipative.
        assert np.min(np.abs(reference)) < 1e-12
        assert reference.sum() < 0
    assert system.default_initial_state().shape == (system.dim,)
    first = system.sample_initial_states(5, seed=11)
    assert first.shape == (5, system.dim)
    np.testing.assert_array_equal(first, system.sample_initial_states(5, seed=11))
    assert not np.array_equal(first, system.sample_initial_states(5, seed=12))


@pytest.mark.parametrize("cls", FLOWS, ids=FLOW_IDS)
def test_flow_parameters_are_keywords_stored_and_reported(cls):
    system = cls()
    params = system.get_params()
    signature = inspect.signature(cls.__init__)
    names = [p for p in signature.parameters if p != "self"]
    assert list(params) == names
    for name in names:
        assert signature.parameters[name].default is not inspect.Parameter.empty
    # Rebuilding from get_params gives the same system, and non-default values are kept.
    assert cls(**params).get_params() == params
    changed = perturbed_params(cls)
    assert cls(**changed).get_params() == changed
    text = repr(system)
    assert text.startswith(f"{cls.__name__}(")
    for name in names:
        assert f"{name}=" in text


def test_flow_defaults_are_the_canonical_parameters_of_spec():
    assert Lorenz63().get_params() == {"sigma": 10.0, "rho": 28.0, "beta": 8.0 / 3.0}
    assert Rossler().get_params() == {"a": 0.2, "b": 0.2, "c": 5.7}
    assert Lorenz96().get_params() == {"n": 40, "forcing": 8.0}
    assert Lorenz96().dim == 40
    assert FitzHughNagumo().get_params() == {"I": 0.5, "a": 0.7, "b": 0.8, "epsilon": 1 / 50}
    assert Chen().get_params() == {"a": 35.0, "b": 3.0, "c": 28.0}
    assert Lorenz63().default_dt == 0.01
    assert 0.05 <= Rossler().default_dt <= 0.1
    assert 0.01 <= Lorenz96().default_dt <= 0.05
    assert FitzHughNagumo().default_dt == 0.4
    assert repr(Lorenz63()) == "Lorenz63(sigma=10, rho=28, beta=2.66667)"
    assert repr(Lorenz96(n=20, forcing=8.0)) == "Lorenz96(n=20, forcing=8)"


def test_flow_parameters_change_the_field():
    # rho enters only dy/dt = x (rho - z) - y: changing it moves that component by x * drho.
    x = np.array([1.5, -2.0, 20.0])
    difference = Lorenz63(rho=20.0).rhs(x) - Lorenz63().rhs(x)
    np.testing.assert_allclose(difference, [0.0, 1.5 * (20.0 - 28.0), 0.0], atol=1e-13)
    assert Lorenz96(n=10).dim == 10
    np.testing.assert_allclose(Lorenz96(n=10, forcing=3.0).rhs(np.full(10, 3.0)), 0.0,
                               atol=1e-14)


def test_lorenz96_rejects_too_few_sites():
    with pytest.raises(ValueError, match="n >= 4"):
        Lorenz96(n=3)
    with pytest.raises(TypeError, match="n must be an integer"):
        Lorenz96(n=4.5)


@pytest.mark.parametrize("cls", FLOWS, ids=FLOW_IDS)
def test_flow_simulates_finite_trajectories_of_the_documented_shapes(cls):
    system = cls()
    single = system.simulate(20)
    assert single.shape == (20, system.dim) and np.isfinite(single).all()
    np.testing.assert_allclose(single[0], system.default_initial_state(), rtol=0, atol=0)
    batch = system.simulate(20, x0=system.sample_initial_states(2, seed=0))
    assert batch.shape == (2, 20, system.dim) and np.isfinite(batch).all()


@pytest.mark.parametrize("name, divergence", [
    ("lorenz63", -(10.0 + 1.0 + 8.0 / 3.0)),
    ("chen", -35.0 - 3.0 + 28.0),
])
def test_flow_reference_spectrum_sums_to_the_constant_divergence(name, divergence):
    # Trace of the Jacobian is constant for these flows, so the exponents sum to it exactly.
    cls = SYSTEMS[name]
    state = generic_states(cls(), 1)[0]
    assert np.trace(cls().jacobian(state)) == pytest.approx(divergence, abs=1e-12)
    assert sum(cls.lyapunov_reference) == pytest.approx(divergence, abs=1e-4)


def test_the_literature_spectrum_belongs_to_the_canonical_parameters_only():
    assert Lorenz63().lyapunov_reference == (0.9056, 0.0, -14.5723)
    assert Lorenz63.lyapunov_reference == (0.9056, 0.0, -14.5723)  # on the class: as published
    assert Lorenz63(rho=10.0).lyapunov_reference is None  # a stable fixed point there
    assert Lorenz63(rho=28.0).lyapunov_reference is not None


@pytest.mark.parametrize("cls", FLOWS, ids=FLOW_IDS)
def test_phase_coordinates_are_exactly_the_angles_that_advance_without_bound(cls):
    # An angle coordinate enters the field only through its sine and cosine (a shift by
    # 2 pi changes nothing) and advances: over a long run it leaves every bounded range.
    # No other coordinate does.
    system = cls()
    angles = set(system.phase_coordinates)
    assert angles <= set(range(system.dim))
    trajectory = system.simulate(4_000, transient=200, seed=0)
    for k in range(system.dim):
        shifted = generic_states(system, 3, seed=4)
        moved = shifted.copy()
        moved[:, k] += 2 * np.pi
        periodic = np.allclose(system.rhs(moved), system.rhs(shifted), rtol=1e-12,
                               atol=1e-12)
        span = trajectory[:, k].max() - trajectory[:, k].min()
        if k in angles:
            assert periodic and span > 4 * np.pi
        else:
            assert not (periodic and span > 4 * np.pi)
