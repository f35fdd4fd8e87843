"""A dysts user's workflow on tsrnn.systems and the system side of lyapunov_spectrum.

Each check here came out of an audit against dysts 0.96 and SPEC sections 1-2: the anchor
numbers are dysts's own vector fields (printed from a throwaway install), a float64
ETDRK4 reference written independently of tsrnn's contour integral, and the refusals a
user needs when a parameter name, a parameter value or a noise level is wrong.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tsrnn.analysis import lyapunov_spectrum
from tsrnn.systems import (
    SYSTEMS,
    Chen,
    Chua,
    Duffing,
    Henon,
    Ikeda,
    KuramotoSivashinsky,
    Logistic,
    Lorenz63,
    Lorenz96,
    MackeyGlass,
    Rossler,
    get_system,
)

# --------------------------------------------------------------------------- dysts anchors
# dysts 0.96, ``dysts.flows.<Name>().rhs(np.array([1.3, -0.7, 2.1]), 0)`` with its stored
# default parameters (chaotic_attractors.json), printed on 2026-11-29. dysts rounds
# Lorenz's beta to 2.667 and Chua's m0, m1 to -1.142857, -0.71429: passing those values
# here must give dysts's numbers to round-off.
POINT = np.array([1.3, -0.7, 2.1])
DYSTS_FIELDS = [
    (Lorenz63(beta=2.667), (-20.0, 34.37, -6.5107)),
    (Rossler(), (-1.4, 1.16, -9.04)),
    (Chen(), (-70.0, -31.43, -7.21)),
    (Chua(m0=-1.142857, m1=-0.71429), (-10.0285536, 4.1, 19.6)),
]


@pytest.mark.parametrize(("system", "expected"), DYSTS_FIELDS,
                         ids=[type(s).__name__ for s, _ in DYSTS_FIELDS])
def test_vector_field_equals_dysts_at_a_point(system, expected):
    np.testing.assert_allclose(system.rhs(POINT), expected, rtol=1e-13, atol=1e-12)


def test_henon_step_equals_dysts():
    # dysts.maps.Henon().rhs(np.array([0.3, 0.2])) -> (1.074, 0.09)
    np.testing.assert_allclose(Henon().step(np.array([0.3, 0.2])), (1.074, 0.09), rtol=1e-14)


def test_default_parameters_are_spec_and_exact_fractions():
    """SPEC section 1, and Chua's canonical m0 = -8/7, m1 = -5/7 exactly (the defaults were
    rounded to -1.143 and -0.714, 3e-4 relative off the double-scroll values)."""
    assert Lorenz63().get_params() == {"sigma": 10.0, "rho": 28.0, "beta": 8.0 / 3.0}
    assert Rossler().get_params() == {"a": 0.2, "b": 0.2, "c": 5.7}
    assert Lorenz96().get_params() == {"n": 40, "forcing": 8.0}
    assert Henon().get_params() == {"a": 1.4, "b": 0.3} and Logistic().r == 4.0
    chua = Chua()
    assert chua.m0 == -8.0 / 7.0 and chua.m1 == -5.0 / 7.0
    # dysts's rounded values give the same field to its 6 digits
    np.testing.assert_allclose(chua.rhs(POINT), DYSTS_FIELDS[3][1], rtol=2e-6)


def test_duffing_parameter_names_are_dysts_swapped():
    """dysts's Duffing: dy/dt = -delta y - beta x - alpha x^3 + gamma cos z, defaults
    alpha=1, beta=-1, delta=0.1, gamma=0.35, omega=1.4. The same system here has alpha and
    beta exchanged (the class docstring says so)."""
    x, y, z = POINT
    dysts_field = (y, -0.1 * y - (-1.0) * x - 1.0 * x**3 + 0.35 * math.cos(z), 1.4)
    ours = Duffing(alpha=-1.0, beta=1.0, delta=0.1, gamma=0.35, omega=1.4)
    np.testing.assert_allclose(ours.rhs(POINT), dysts_field, rtol=1e-14)


# --------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_unknown_parameter_is_refused_listing_the_known_ones(name):
    # Was Python's "__init__() got an unexpected keyword argument", without the choices.
    known = SYSTEMS[name]._param_names()
    with pytest.raises(TypeError, match=f"its parameters are {', '.join(known)}"):
        SYSTEMS[name](not_a_parameter=1.0)


def test_misspelt_parameter_suggests_the_closest_name():
    with pytest.raises(TypeError, match=r"'sigmaa' \(did you mean 'sigma'\?\); its param"):
        Lorenz63(sigmaa=10.0)
    with pytest.raises(TypeError, match=r"did you mean 'forcing'"):
        get_system("lorenz96", forcng=8.0)  # dysts users may also try f=...


def test_surplus_positional_parameters_are_refused_listing_the_known_ones():
    with pytest.raises(TypeError, match="too many positional arguments; its parameters are "
                                        "sigma, rho, beta"):
        Lorenz63(10.0, 28.0, 8.0 / 3.0, 1.0)


def test_known_parameters_still_bind_by_position_and_keyword():
    assert Lorenz63(16.0, rho=45.92).get_params() == {"sigma": 16.0, "rho": 45.92,
                                                       "beta": 8.0 / 3.0}
    assert MackeyGlass(delay_steps=85).delay_steps == 85


@pytest.mark.parametrize("value", [np.array([28.0, 30.0]), [28.0, 30.0],
                                   torch.tensor([28.0, 30.0])], ids=["array", "list", "tensor"])
def test_parameter_sweep_given_as_an_array_is_refused_by_name(value):
    # Was numpy's "truth value of an array with more than one element is ambiguous".
    with pytest.raises(ValueError, match=r"rho must be a finite number, got 2 values .*"
                                         r"one Lorenz63 per value"):
        Lorenz63(rho=value).simulate(5)


def test_zero_dimensional_array_parameter_is_one_number():
    expected = Lorenz63(rho=30.0).simulate(20)
    np.testing.assert_array_equal(Lorenz63(rho=np.array(30.0)).simulate(20), expected)


@pytest.mark.parametrize(("system", "name", "value", "match"), [
    (Lorenz63, "sigma", float("nan"), "sigma must be a finite number, got nan"),
    (lambda: Lorenz96(n=8), "forcing", float("inf"), "forcing must be a finite number, got inf"),
    (Henon, "a", float("nan"), "a must be a finite number, got nan"),
    (Logistic, "r", float("nan"), "r must be a finite number, got nan"),
], ids=["Lorenz63", "Lorenz96", "Henon", "Logistic"])
def test_lyapunov_spectrum_refuses_non_finite_parameters_by_name(system, name, value, match):
    # simulate() named the parameter; lyapunov_spectrum() ran and reported a divergence
    # advising a shorter step. A bad value is refused at construction, and one set on the
    # attribute afterwards by the analysis.
    with pytest.raises(ValueError, match=match):
        type(system())(**{**system().get_params(), name: value})
    changed = system()
    setattr(changed, name, value)
    with pytest.raises(ValueError, match=match):
        lyapunov_spectrum(changed, n_steps=10, n_trajectories=2)


# --------------------------------------------------------------------------- noise
@pytest.mark.parametrize("system", [Lorenz63(), Henon(), KuramotoSivashinsky()],
                         ids=["flow", "map", "pde"])
@pytest.mark.parametrize("batched", [False, True])
def test_noise_on_a_single_recorded_state_is_refused(system, batched):
    # Noise is relative to each dimension's standard deviation along the trajectory; with
    # one recorded state that std was NaN and so was every returned value.
    x0 = system.sample_initial_states(2 if batched else 1, seed=0)
    x0 = x0 if batched else x0[0]
    with pytest.raises(ValueError, match="needs n_steps >= 2; got n_steps=1"):
        system.simulate(1, x0=x0, noise=0.05, seed=0)
    assert np.isfinite(system.simulate(1, x0=x0, seed=0)).all()
    assert np.isfinite(system.simulate(2, x0=x0, noise=0.05, seed=0)).all()


# --------------------------------------------------------------------------- KS reference
def _phi(z: np.ndarray) -> list[np.ndarray]:
    """phi_1..3(z) = (e^z - sum_{j<k} z^j / j!) / z^k, by the Taylor series for |z| < 1 and
    the closed form elsewhere (no cancellation there for real z <= 1), in float64."""
    z = np.asarray(z, dtype=np.float64)
    small = np.abs(z) < 1.0
    out = []
    for k in (1, 2, 3):
        series = sum(z**n / math.factorial(n + k) for n in range(30))
        zs = np.where(small, 1.0, z)
        closed = (np.exp(zs) - sum(zs**j / math.factorial(j) for j in range(k))) / zs**k
        out.append(np.where(small, series, closed))
    return out


def _reference_etdrk4_step(u: np.ndarray, h: float, L: float) -> np.ndarray:
    """One ETDRK4 step (Cox & Matthews 2002) of u_t = -u u_x - u_xx - u_xxxx with the
    coefficients written through phi functions: Q = h/2 phi1(z/2), f1 = h (phi1 - 3 phi2 +
    4 phi3), f2 = h (phi2 - 2 phi3), f3 = h (4 phi3 - phi2), z = h (k^2 - k^4)."""
    n = u.size
    k = 2.0 * np.pi / L * np.arange(n // 2 + 1)
    z = h * (k**2 - k**4)
    phi1, phi2, phi3 = _phi(z)
    q = 0.5 * h * _phi(z / 2.0)[0]
    f1, f2, f3 = h * (phi1 - 3 * phi2 + 4 * phi3), h * (phi2 - 2 * phi3), h * (4 * phi3 - phi2)
    e, e2 = np.exp(z), np.exp(z / 2.0)
    k_odd = k.copy()
    k_odd[-1] = 0.0  # the Nyquist mode has no first derivative on an even grid

    def nonlinear(v):
        return -0.5j * k_odd * np.fft.rfft(np.fft.irfft(v, n=n) ** 2)

    v = np.fft.rfft(u)
    nv = nonlinear(v)
    a = e2 * v + q * nv
    na = nonlinear(a)
    b = e2 * v + q * na
    nb = nonlinear(b)
    c = e2 * a + q * (2.0 * nb - nv)
    nc = nonlinear(c)
    return np.fft.irfft(e * v + f1 * nv + 2.0 * f2 * (na + nb) + f3 * nc, n=n)


@pytest.fixture(scope="module")
def ks_state():
    ks = KuramotoSivashinsky()
    return ks, ks.simulate(1, transient=400, seed=0)[0]


def test_ks_step_equals_a_phi_function_etdrk4_reference(ks_state):
    """The contour-integral coefficients (Kassam & Trefethen) against the series/closed
    form ones: the same step to round-off (measured 7e-16 on values of size 2), on the
    numpy single-trajectory path and the batched torch path."""
    ks, u = ks_state
    expected = _reference_etdrk4_step(u, 0.25, 22.0)
    single = ks.simulate(2, x0=u)[1]
    batch = ks.simulate(2, x0=np.stack([u, u]))[:, 1]
    np.testing.assert_allclose(single, expected, rtol=0, atol=1e-13)
    np.testing.assert_allclose(batch, np.stack([expected, expected]), rtol=0, atol=1e-13)
    # float32 keeps the step to float32 round-off (measured 3e-7)
    single32 = ks.simulate(2, x0=u[None], dtype=torch.float32)[0, 1]
    np.testing.assert_allclose(single32, expected, rtol=0, atol=5e-6)


def test_ks_energy_is_bounded_and_the_spectrum_decays(ks_state):
    """On the L = 22 attractor: energy <u^2>/2 stays of order one (measured 0.40-1.56,
    mean 0.69 over 5000 time units), the mean stays zero, and the Fourier amplitudes fall
    by about e^-1 per mode beyond the unstable band (measured 0.53 at m = 2, 2e-8 at
    m = 21, 2e-12 at m = 30), so 64 points resolve the solution."""
    ks, u = ks_state
    trajectory = ks.simulate(4000, x0=u)
    energy = 0.5 * (trajectory**2).mean(1)
    assert 0.2 < energy.min() and energy.max() < 3.0
    assert np.abs(trajectory.mean(1)).max() < 1e-12
    amplitude = np.abs(np.fft.rfft(trajectory, axis=1)).mean(0) / ks.n_grid
    assert amplitude[1:5].max() > 0.2
    assert amplitude[21] < 1e-6 and amplitude[30] < 1e-10
    assert np.all(np.diff(np.log(amplitude[6:31])) < 0)  # monotone decay past the band


# --------------------------------------------------------------------------- dt vs step
def test_coarse_sampling_keeps_the_default_accuracy_unless_substeps_say_otherwise():
    """A ``dt`` above ``default_dt`` is split into steps no longer than it (as dysts
    integrates finely and samples coarsely): Lorenz-63 sampled at dt 0.1 is every 10th
    state of the dt 0.01 run to round-off. ``dt`` was the rk8 step itself, off by about 1e-4
    relative after one time unit (measured 1.1e-4 against DOP853 at rtol 1e-12), which
    ``substeps=1`` still asks for; the same rule holds for the Lyapunov map."""
    lorenz = Lorenz63()
    fine = lorenz.simulate(101, dt=0.01)
    np.testing.assert_allclose(lorenz.simulate(11, dt=0.1), fine[::10], rtol=0, atol=1e-11)
    np.testing.assert_allclose(lorenz.simulate(11, dt=0.1, substeps=10), fine[::10], rtol=0,
                               atol=1e-11)
    coarse = lorenz.simulate(11, dt=0.1, substeps=1)
    relative = np.abs(coarse[-1] - fine[-1]).max() / np.abs(fine[-1]).max()
    assert 1e-6 < relative < 1e-3
    # A dt between two multiples of the accurate step takes the next whole number of steps.
    np.testing.assert_array_equal(lorenz.simulate(5, dt=0.025),
                                  lorenz.simulate(5, dt=0.025, substeps=3))
    assert lorenz.as_discrete_map(0.05).time_step == 0.05
    x = torch.tensor([[1.0, 2.0, 20.0]], dtype=torch.float64)
    torch.testing.assert_close(lorenz.as_discrete_map(0.05).step(x),
                               lorenz.as_discrete_map(0.05, substeps=5).step(x), rtol=0,
                               atol=0)


# --------------------------------------------------------------------------- spectra
def test_ikeda_spectrum_matches_sprott_and_sums_to_two_log_u():
    """Ikeda u = 0.9: Sprott's 0.50752, -0.71824 (now its lyapunov_reference; it was None).
    Measured 0.5076 +- 0.0012 with the defaults (32 trajectories of 10,000 steps); this
    shorter run (8 x 4000, seed 0) reads 0.5096 +- 0.0024, hence 4 standard errors. The
    sum is exact: det J = u^2."""
    ikeda = Ikeda()
    assert ikeda.lyapunov_reference == (0.50752, -0.71824)
    spectrum, stderr = lyapunov_spectrum(ikeda, n_steps=4000, n_trajectories=8, seed=0,
                                         return_stderr=True)
    np.testing.assert_allclose(spectrum, ikeda.lyapunov_reference,
                               atol=max(4 * stderr.max(), 0.004))
    assert spectrum.sum() == pytest.approx(2 * math.log(0.9), abs=1e-10)


def test_lorenz63_wolf_parameters_spectrum():
    """Wolf, Swift, Swinney & Vastano (1985), "Determining Lyapunov exponents from a time
    series": sigma 16, rho 45.92, beta 4 give 1.50, 0, -22.46 (sum -(sigma + 1 + beta) = -21).
    Measured with 32 trajectories: 1.4916 +- 0.0053, 0.0016, -22.492; this run (8
    trajectories, seed 0) reads 1.5000 +- 0.0073, 0.0003, -22.499 +- 0.008, so 0.06 is
    about 5 standard errors of lambda_3, whose published value has 4 digits."""
    spectrum = lyapunov_spectrum(Lorenz63(sigma=16.0, rho=45.92, beta=4.0), n_trajectories=8,
                                 seed=0)
    np.testing.assert_allclose(spectrum, (1.50, 0.0, -22.46), atol=0.06)
    assert spectrum.sum() == pytest.approx(-21.0, abs=5e-3)
