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
