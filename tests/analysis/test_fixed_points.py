"""Fixed points and cycles against analytic values of known systems."""

import numpy as np
import pytest
import torch

from tsrnn.analysis import find_cycles, fixed_points
from tsrnn.systems import Henon, Logistic, Lorenz63


def test_lorenz63_fixed_points_are_origin_and_the_two_analytic_foci():
    system = Lorenz63()
    points = fixed_points(system, n_initial=64)
    c = np.sqrt(system.beta * (system.rho - 1.0))
    expected = np.array([[-c, -c, system.rho - 1.0], [0.0, 0.0, 0.0], [c, c, system.rho - 1.0]])
    assert len(points) == 3
    np.testing.assert_allclose([p.location for p in points], expected, atol=1e-9)
    # For rho = 28 all three are unstable: a saddle at the origin (one unstable direction)
    # and two saddle-foci with a complex unstable pair (Sparrow 1982).
    assert [p.unstable_dimension for p in points] == [2, 1, 2]
    assert not any(p.stable for p in points)
    assert points[0].kind == "saddle-spiral" and points[1].kind == "saddle"


def test_lorenz63_origin_is_stable_below_rho_one():
    points = fixed_points(Lorenz63(rho=0.5), n_initial=16)
    assert len(points) == 1 and points[0].stable
    np.testing.assert_allclose(points[0].location, 0.0, atol=1e-10)


def test_henon_fixed_points_match_the_quadratic_formula():
    a, b = 1.4, 0.3
    x = (-(1 - b) + np.array([-1.0, 1.0]) * np.sqrt((1 - b) ** 2 + 4 * a)) / (2 * a)
    points = fixed_points(Henon(a=a, b=b), n_initial=64)
    np.testing.assert_allclose([p.location for p in points], np.stack([x, b * x], 1), atol=1e-10)
    # Eigenvalues of [[-2 a x, 1], [b, 0]]: product -b (determinant), sum -2 a x (trace).
    for point, xi in zip(points, x):
        assert np.prod(point.eigenvalues).real == pytest.approx(-b, abs=1e-10)
        assert np.sum(point.eigenvalues).real == pytest.approx(-2 * a * xi, abs=1e-10)


@pytest.mark.parametrize(("order", "count"), [(2, 1), (3, 2), (4, 3)])
def test_logistic_map_has_the_number_of_cycles_of_the_full_shift(order, count):
    # For r = 4 the logistic map is conjugate to the doubling map: the number of orbits of
    # minimal period k is (sum over d | k of mu(k/d) 2^d) / k: 1, 2, 3 for k = 2, 3, 4.
    cycles = find_cycles(Logistic(), order, n_initial=128)
    assert len(cycles) == count
    for cycle in cycles:
        assert cycle.period == order
        # Multiplier of a k-cycle of the doubling map conjugate: (+-2)^k, so |.| = 2^k.
        assert abs(cycle.eigenvalues[0]) == pytest.approx(2.0**order, rel=1e-8)
        assert not cycle.stable
        assert len(np.unique(np.round(cycle.points, 8))) == order


def test_logistic_two_cycle_matches_closed_form():
    (cycle,) = find_cycles(Logistic(), 2, n_initial=64)
    np.testing.assert_allclose(np.sort(cycle.points[:, 0]),
                               [(5 - np.sqrt(5)) / 8, (5 + np.sqrt(5)) / 8], atol=1e-12)
    assert cycle.location is cycle.points  # API.md: every result has a location


def test_stable_fixed_point_of_a_contracting_module_is_found_by_autodiff():
    class Contraction(torch.nn.Module):
        dim = 2

        def forward(self, x):
            return 0.5 * torch.tanh(x) + torch.tensor([0.3, -0.2], dtype=x.dtype)

    points = fixed_points(Contraction(), x0=np.random.default_rng(0).normal(size=(8, 2)))
    assert len(points) == 1 and points[0].stable
    x = points[0].location
    np.testing.assert_allclose(0.5 * np.tanh(x) + [0.3, -0.2], x, atol=1e-10)


def test_find_cycles_rejects_flows():
    with pytest.raises(ValueError, match="periodic orbits"):
        find_cycles(Lorenz63(), 2)


class _HenonModule(torch.nn.Module):
    """The Henon map as a module with trainable parameters, in float32 (torch's default)."""

    dim = 2

    def __init__(self, a: float = 1.4, b: float = 0.3):
        super().__init__()
        self.ab = torch.nn.Parameter(torch.tensor([a, b]))

    def forward(self, x):
        a, b = self.ab
        return torch.stack([1 - a * x[:, 0] ** 2 + x[:, 1], b * x[:, 0]], -1)


def test_a_float32_module_loses_no_roots():
    # float32 residuals stall near 1e-7, above the default tolerance 1e-9: the search runs
    # on a float64 copy, so both fixed points and the 2-cycle are found, to float64 accuracy.
    module = _HenonModule()
    x0 = np.random.default_rng(0).uniform(-1, 1, (128, 2)) * [1.2, 0.35]
    a, b = 1.4, 0.3
    x = (-(1 - b) + np.array([-1.0, 1.0]) * np.sqrt((1 - b) ** 2 + 4 * a)) / (2 * a)
    points = fixed_points(module, x0=x0)
    # The parameters were rounded to float32, so the roots are those of the rounded map.
    np.testing.assert_allclose([p.location for p in points], np.stack([x, b * x], 1),
                               atol=1e-6)
    assert all(p.residual < 1e-12 for p in points)
    (cycle,) = find_cycles(module, 2, x0=x0)
    np.testing.assert_allclose(np.sort(cycle.points[:, 0]),
                               ((1 - b) + np.array([-1, 1]) * np.sqrt(4 * a - 3 * (1 - b) ** 2))
                               / (2 * a), atol=1e-6)
    assert module.ab.dtype == torch.float32  # the caller's module is not converted


def test_a_module_runs_in_the_dtype_asked_for():
    module = _HenonModule()
    points = fixed_points(module, x0=np.zeros((4, 2)), dtype=torch.float32, tolerance=1e-5)
    assert points and all(p.residual > 0 for p in points)
    linear = torch.nn.Linear(3, 3)
    from tsrnn.analysis import lyapunov_spectrum

    with torch.no_grad():
        linear.weight.copy_(torch.diag(torch.tensor([0.5, 0.25, 0.125])))
    options = dict(x0=np.ones((4, 3)), n_steps=50, transient=10)
    spectrum = lyapunov_spectrum(linear, dtype=torch.float64, **options)
    assert linear.weight.dtype == torch.float32  # converted as a copy
    np.testing.assert_array_equal(spectrum, lyapunov_spectrum(linear.double(), **options))
    np.testing.assert_allclose(spectrum, np.log([0.5, 0.25, 0.125]), rtol=1e-4)


def test_newton_settings_for_a_scyfi_model_are_refused_not_ignored():
    # An AL-RNN is searched exactly by SCYFI: Adam/Newton settings would have been dropped
    # without a word (even invalid ones), while tolerance is SCYFI's own residual bound.
    from tsrnn.nn import ALRNN

    module = ALRNN(6, 2, generator=torch.Generator().manual_seed(0))
    for setting in (dict(n_initial=32), dict(max_iterations=-5), dict(learning_rate=1.0)):
        with pytest.raises(ValueError, match="method='newton'"):
            fixed_points(module, **setting)
        with pytest.raises(ValueError, match="method='newton'"):
            find_cycles(module, 2, **setting)
    with pytest.raises(ValueError, match="tolerance"):  # reaches SCYFI, which checks it
        fixed_points(module, tolerance=-1.0)
    loose = fixed_points(module, tolerance=1e-3)
    assert [p.location.tolist() for p in loose] == [p.location.tolist()
                                                    for p in fixed_points(module)]
