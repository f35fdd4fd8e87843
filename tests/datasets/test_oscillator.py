"""Tests of tsrnn.datasets.oscillator: the exact damped-oscillator trajectories."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from tsrnn.datasets import mass_spring_damper
from tsrnn.datasets.oscillator import mass_spring_damper_solution


def test_trajectories_solve_the_ode_with_their_parameters():
    y, p = mass_spring_damper(3, 50, dt=0.1, seed=0)
    assert y.shape == (3, 50, 2)
    for i in range(3):
        w, z = p["omega"][i], p["zeta"][i]
        ref = solve_ivp(lambda t, s, w=w, z=z: [s[1], -2 * z * w * s[1] - w ** 2 * s[0]],
                        (0, 4.9),
                        [p["x0"][i], p["v0"][i]], t_eval=np.arange(50) * 0.1, rtol=1e-11,
                        atol=1e-12)
        np.testing.assert_allclose(y[i], ref.y.T, atol=1e-8)  # solver tolerance


def test_parameters_lie_in_their_ranges_and_seed_reproduces():
    y, p = mass_spring_damper(200, 5, omega=(1.0, 2.0), zeta=(0.1, 0.2), seed=1)
    assert (p["omega"] >= 1).all() and (p["omega"] <= 2).all()
    assert (p["zeta"] >= 0.1).all() and (p["zeta"] <= 0.2).all()
    np.testing.assert_array_equal(y, mass_spring_damper(200, 5, omega=(1.0, 2.0),
                                                        zeta=(0.1, 0.2), seed=1)[0])


def test_critical_damping_is_the_limit_of_both_regimes():
    t = np.linspace(0, 3, 31)
    critical = mass_spring_damper_solution(t, 0.5, -0.2, 2.0, 1.0)
    for zeta in (1 - 1e-7, 1 + 1e-7):
        np.testing.assert_allclose(mass_spring_damper_solution(t, 0.5, -0.2, 2.0, zeta),
                                   critical, atol=1e-6)


def test_bad_ranges_are_rejected():
    with pytest.raises(ValueError, match="omega must satisfy"):
        mass_spring_damper(2, 5, omega=(3.0, 1.0))
    with pytest.raises(ValueError, match=r"zeta must be a \(low, high\) pair"):
        mass_spring_damper(2, 5, zeta=0.1)
