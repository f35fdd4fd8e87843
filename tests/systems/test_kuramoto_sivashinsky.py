"""Tests of tsrnn.systems.pde: the Kuramoto-Sivashinsky equation integrated with ETDRK4."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch

from tsrnn.analysis import lyapunov_spectrum
from tsrnn.exceptions import DivergenceError
from tsrnn.systems import SYSTEMS, KuramotoSivashinsky
from tsrnn.systems.pde import etdrk4_coefficients


def kassam_trefethen_etdrk4(u0: np.ndarray, L: float, dt: float, n_steps: int,
                            contour_points: int = 32) -> np.ndarray:
    """Independent ETDRK4 after Kassam & Trefethen's kursiv.m: complex FFT over all N modes
    and the contour mean over the FULL circle of 2M points (tsrnn uses rfft and the upper
    half circle). As tsrnn, the linear part uses the true Nyquist wavenumber and the first
    derivative drops it. Returns (n_steps, N), row 0 = u0."""
    n = u0.size
    k = 2.0 * np.pi / L * np.fft.fftfreq(n, d=1.0 / n)
    k_derivative = k.copy()
    k_derivative[n // 2] = 0.0
    linear = k**2 - k**4
    g = -0.5j * k_derivative
    e, e2 = np.exp(dt * linear), np.exp(dt * linear / 2)
    roots = np.exp(2j * np.pi * (np.arange(2 * contour_points) + 0.5) / (2 * contour_points))
    lr = dt * linear[:, None] + roots[None, :]
    q = dt * np.real(np.mean((np.exp(lr / 2) - 1) / lr, axis=1))
    f1 = dt * np.real(np.mean((-4 - lr + np.exp(lr) * (4 - 3 * lr + lr**2)) / lr**3, axis=1))
    f2 = dt * np.real(np.mean((2 + lr + np.exp(lr) * (-2 + lr)) / lr**3, axis=1))
    f3 = dt * np.real(np.mean((-4 - 3 * lr - lr**2 + np.exp(lr) * (4 - lr)) / lr**3, axis=1))

    def nonlinear(v):
        return g * np.fft.fft(np.real(np.fft.ifft(v)) ** 2)

    v = np.fft.fft(u0)
    out = [u0]
    for _ in range(n_steps - 1):
        nv = nonlinear(v)
        a = e2 * v + q * nv
        na = nonlinear(a)
        b = e2 * v + q * na
        nb = nonlinear(b)
        c = e2 * a + q * (2 * nb - nv)
        nc = nonlinear(c)
        v = e * v + nv * f1 + 2 * (na + nb) * f2 + nc * f3
        out.append(np.real(np.fft.ifft(v)))
    return np.array(out)


@pytest.fixture(scope="module")
def ks():
    return KuramotoSivashinsky()


@pytest.fixture(scope="module")
def attractor_states(ks):
    """Four states on the L = 22 attractor (seeded, 500 time units of transient)."""
    return ks.simulate(1, x0=ks.sample_initial_states(4, seed=0), transient=2000)[:, 0]


# ---------------------------------------------------------------------- definition
def test_defaults_and_registry(ks):
    assert (ks.L, ks.n_grid, ks.dim, ks.default_dt) == (22.0, 64, 64, 0.25)
    assert ks.lyapunov_reference is None and not ks.is_map
    assert SYSTEMS["kuramotosivashinsky"] is KuramotoSivashinsky
    assert ks.get_params() == {"L": 22.0, "n_grid": 64, "contour_points": 32,
                               "dealias": False}
    np.testing.assert_allclose(ks.grid, np.arange(64) * 22.0 / 64)


def test_initial_states_are_smooth_zero_mean_and_seeded(ks):
    u0 = ks.default_initial_state()
    theta = 2 * np.pi * ks.grid / 22.0
    np.testing.assert_allclose(u0, np.cos(theta) * (1 + np.sin(theta)), atol=1e-15)
    states = ks.sample_initial_states(5, seed=3)
    assert states.shape == (5, 64)
    np.testing.assert_allclose(states.mean(1), 0.0, atol=1e-15)
    np.testing.assert_array_equal(states, ks.sample_initial_states(5, seed=3))
    assert not np.allclose(states, ks.sample_initial_states(5, seed=4))
    # Low modes only: nothing above m = 4 in the spectrum (round-off aside).
    assert np.abs(np.fft.rfft(states, axis=-1)[:, 5:]).max() < 1e-12


def test_contour_coefficients_match_closed_forms():
    h = 0.25
    # Away from z = 0 the direct formulas are accurate; the contour mean must agree.
    linear = -np.array([1.0, 10.0, 100.0, 1000.0]) / h
    z = h * linear
    c = etdrk4_coefficients(linear, h, contour_points=32)
    np.testing.assert_allclose(c["q"], h * (np.exp(z / 2) - 1) / z, rtol=1e-13)
    np.testing.assert_allclose(
        c["f1"], h * (-4 - z + np.exp(z) * (4 - 3 * z + z**2)) / z**3, rtol=1e-13)
    np.testing.assert_allclose(c["f2"], h * (2 + z + np.exp(z) * (-2 + z)) / z**3, rtol=1e-13)
    np.testing.assert_allclose(
        c["f3"], h * (-4 - 3 * z - z**2 + np.exp(z) * (4 - z)) / z**3, rtol=1e-13)
    # At z = 0 (the mean mode) the limits are Q = h/2 and f1 = f2 = f3 = h/6.
    zero = etdrk4_coefficients(np.zeros(1), h, contour_points=16)
    np.testing.assert_allclose([zero["q"][0], zero["f1"][0], zero["f2"][0], zero["f3"][0]],
                               [h / 2, h / 6, h / 6, h / 6], rtol=1e-14)


# ---------------------------------------------------------------------- accuracy
def test_etdrk4_error_matches_spec_and_converges_at_fourth_order(ks):
    """SPEC section 1: the error at T = 10 is 1.0e-4, 1.1e-5, 1.1e-6 at dt = 0.25, 0.125,
    0.0625 (Kassam & Trefethen's initial condition on L = 22). Error against dt = 1/512."""
    u0 = ks.default_initial_state()

    def state_at_10(dt: float) -> np.ndarray:
        return ks.simulate(2, dt=10.0, substeps=round(10.0 / dt), x0=u0)[-1]

    reference = state_at_10(1 / 512)
    steps = [0.25, 0.125, 0.0625, 1 / 32, 1 / 64]
    errors = np.array([np.abs(state_at_10(dt) - reference).max() for dt in steps])
    # The SPEC figures to within 25% (they are rounded to two digits; same initial state).
    np.testing.assert_allclose(errors[:3], [1.0e-4, 1.1e-5, 1.1e-6], rtol=0.25)
    ratios = errors[:-1] / errors[1:]
    assert np.all(ratios[:2] > 8.0), ratios  # "about 10x per halving" at the SPEC steps
    # Asymptotically fourth order: ratio 16 (reference error is below 1e-11 here).
    order = np.log2(ratios[-1])
    assert 3.5 <= order <= 4.5, (errors, ratios)


def test_agrees_with_independent_numpy_etdrk4_to_round_off(ks):
    u0 = ks.sample_initial_states(1, seed=7)[0]
    expected = kassam_trefethen_etdrk4(u0, 22.0, 0.25, 100)
    dense = ks.simulate(100, x0=u0)  # one trajectory: the dense numpy fast path
    batched = ks.simulate(100, x0=np.stack([u0, u0]))  # torch.fft path
    # Round-off differences (1e-15) grow with the largest exponent over 25 time units
    # (and transiently faster): 1e-11 leaves a margin of 100 over what we observe.
    np.testing.assert_allclose(dense, expected, atol=1e-11, rtol=0)
    np.testing.assert_allclose(batched[0], expected, atol=1e-11, rtol=0)
    np.testing.assert_allclose(batched[1], expected, atol=1e-11, rtol=0)


def test_batch_equals_single_trajectories(ks):
    x0 = ks.sample_initial_states(3, seed=11)
    batch = ks.simulate(80, x0=x0, transient=40)
    singles = np.stack([ks.simulate(80, x0=x, transient=40) for x in x0])
    assert batch.shape == (3, 80, 64)
    np.testing.assert_allclose(batch, singles, atol=1e-10, rtol=0)  # round-off, 30 time units


def test_mean_is_conserved(ks):
    x0 = ks.sample_initial_states(2, seed=5)
    x0[1] += 0.3  # a nonzero mean is conserved as well (and advects the pattern)
    for trajectories in (ks.simulate(2000, x0=x0), ks.simulate(2000, x0=x0[1])[None]):
        means = trajectories.mean(-1)
        np.testing.assert_allclose(means, means[:, :1] * np.ones_like(means), atol=1e-12)
    zero_mean = ks.simulate(2000, x0=x0[0])
    assert np.abs(zero_mean.mean(-1)).max() < 1e-12


@pytest.mark.parametrize("L", [22.0, 35.0])
@pytest.mark.parametrize("n_grid", [32, 63, 64, 128])
def test_runs_for_any_domain_and_grid(L, n_grid):
    system = KuramotoSivashinsky(L=L, n_grid=n_grid)
    x0 = system.sample_initial_states(2, seed=1)
    u = system.simulate(400, x0=x0, transient=200)
    assert u.shape == (2, 400, n_grid)
    assert np.all(np.isfinite(u))
    # On the attractor: order-one amplitude, and moving (not a decayed flat state).
    assert 0.5 < np.abs(u).max() < 5.0
    assert u.std(axis=1).mean() > 0.2


def test_matches_fine_grid_when_resolved():
    """Spectral accuracy: N = 64 and N = 128 on L = 22 agree to 1e-9 over 5 time units (the
    spectrum at m = 32 has decayed to round-off)."""
    coarse, fine = KuramotoSivashinsky(n_grid=64), KuramotoSivashinsky(n_grid=128)
    u0 = coarse.sample_initial_states(1, seed=2)[0]
    u0_fine = np.fft.irfft(np.fft.rfft(u0), n=128) * 2.0  # same function on the finer grid
    a = coarse.simulate(21, x0=u0)
    b = fine.simulate(21, x0=u0_fine)[:, ::2]
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_dealiasing_changes_only_the_aliasing_level():
    plain, dealiased = KuramotoSivashinsky(), KuramotoSivashinsky(dealias=True)
    u0 = plain.default_initial_state()
    difference = np.abs(plain.simulate(41, x0=u0) - dealiased.simulate(41, x0=u0)).max()
    assert 1e-12 < difference < 1e-6  # active, but modes m >= N/3 hold only ~2e-8


def test_float32_and_torch_output(ks):
    x0 = ks.sample_initial_states(2, seed=0)
    u64 = ks.simulate(41, x0=x0)
    u32 = ks.simulate(41, x0=x0, dtype=torch.float32, return_tensor=True)
    assert u32.dtype == torch.float32 and tuple(u32.shape) == (2, 41, 64)
    np.testing.assert_allclose(u32.numpy(), u64, atol=1e-4)  # float32 round-off, 10 time units


# ---------------------------------------------------------------------- vector field
def test_rhs_of_a_single_mode_is_exact(ks):
    q = 2 * np.pi * 2 / 22.0
    x = ks.grid
    u = np.sin(q * x)
    # u_t = -u u_x - u_xx - u_xxxx
    expected = -np.sin(q * x) * q * np.cos(q * x) + q**2 * np.sin(q * x) - q**4 * np.sin(q * x)
    # Round-off of the FFT (1e-16) times k_max^4 (about 7e3) for the fourth derivative.
    np.testing.assert_allclose(ks.rhs(u), expected, atol=1e-11)
    assert isinstance(ks.rhs(torch.as_tensor(u)), torch.Tensor)


def test_rhs_matches_time_derivative_of_the_simulation(ks, attractor_states):
    h = 1e-4
    trajectory = ks.simulate(3, dt=h, x0=attractor_states[0])
    centred = (trajectory[2] - trajectory[0]) / (2 * h)
    rhs = ks.rhs(trajectory[1])
    # Central difference error h^2/6 |u_ttt| (u_ttt is large in the stiff high modes: about
    # 2e-4 |u_t| at h = 1e-3, so 2e-6 here) plus round-off 1e-16 / h.
    np.testing.assert_allclose(centred, rhs, atol=1e-6 * np.abs(rhs).max())


@pytest.mark.parametrize("dealias", [False, True])
def test_jacobian_matches_finite_differences(attractor_states, dealias):
    system = KuramotoSivashinsky(dealias=dealias)
    rng = np.random.default_rng(0)
    directions = rng.standard_normal(attractor_states.shape)
    jac = system.jacobian(attractor_states)
    assert jac.shape == (4, 64, 64)
    eps = 1e-3
    # The right-hand side is quadratic, so the central difference is exact up to round-off
    # (|rhs| ~ k_max^4 ~ 7e3 times 1e-16, divided by eps).
    differences = (system.rhs(attractor_states + eps * directions)
                   - system.rhs(attractor_states - eps * directions)) / (2 * eps)
    np.testing.assert_allclose(np.einsum("bij,bj->bi", jac, directions), differences,
                               atol=1e-8)
    # Batched shapes (..., N) -> (..., N, N).
    assert system.jacobian(attractor_states.reshape(2, 2, 64)).shape == (2, 2, 64, 64)


# ---------------------------------------------------------------------- errors
def test_rejects_other_methods_and_bad_parameters(ks):
    with pytest.raises(ValueError, match="ETDRK4"):
        ks.simulate(10, method="rk4")
    with pytest.raises(ValueError, match="n_grid"):
        KuramotoSivashinsky(n_grid=2)
    with pytest.raises(ValueError, match="L"):
        KuramotoSivashinsky(L=-1.0)
    with pytest.raises(ValueError, match="64 entries"):
        ks.simulate(10, x0=np.zeros(32))


@pytest.mark.parametrize("batch", [1, 2])
def test_blow_up_raises_divergence_error_naming_the_time(ks, batch):
    x0 = np.tile(1e3 * ks.default_initial_state(), (batch, 1))
    # Past 1e10 times the initial state at t = 1 (non-finite only at t = 2).
    with pytest.raises(DivergenceError, match=r"at t = 1\b"):
        ks.simulate(50, dt=1.0, x0=x0, substeps=1)
    with pytest.raises(DivergenceError, match="transient, between t = 0 and t = 256"):
        ks.simulate(50, dt=1.0, x0=x0, transient=300, substeps=1)


# ---------------------------------------------------------------------- analysis
def test_discrete_map_step_equals_simulation(ks, attractor_states):
    dmap = ks.as_discrete_map(0.5, substeps=2)
    assert (dmap.dim, dmap.time_step) == (64, 0.5)
    x = torch.as_tensor(attractor_states)
    for _ in range(4):
        x = dmap.step(x)
    expected = ks.simulate(5, dt=0.5, substeps=2, x0=attractor_states)[:, -1]
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("zero_mean", [False, True])
def test_fused_tangent_equals_autodiff_of_the_step(ks, attractor_states, zero_mean):
    dmap = ks.as_discrete_map(zero_mean_perturbations=zero_mean)
    autodiff = dataclasses.replace(dmap, tangent=None)  # torch.func.jvp through ``step``
    generator = torch.Generator().manual_seed(0)
    frame = torch.randn((4, 64, 3), generator=generator, dtype=torch.float64)
    if zero_mean:
        frame = frame - frame.mean(1, keepdim=True)  # the subspace it projects onto
    x = torch.as_tensor(attractor_states)
    state, pushed = dmap.advance(x, frame)
    state_ad, pushed_ad = autodiff.advance(x, frame)
    torch.testing.assert_close(state, state_ad, atol=1e-14, rtol=0)
    torch.testing.assert_close(pushed, pushed_ad, atol=1e-12, rtol=0)


def test_zero_mean_tangent_projects_and_limits_the_count(ks, attractor_states):
    dmap = ks.as_discrete_map()
    x = torch.as_tensor(attractor_states[:1])
    constant = torch.ones((1, 64, 1), dtype=torch.float64)
    assert dmap.advance(x, constant)[1].abs().max() < 1e-14  # the mean direction is removed
    with pytest.raises(ValueError, match="at most n_grid - 1 = 63"):
        dmap.advance(x, torch.eye(64, dtype=torch.float64)[None])


def test_leading_lyapunov_exponent_is_positive_in_a_short_run(ks):
    # 8 trajectories x 200 time units: a rough but clearly positive estimate.
    spectrum = lyapunov_spectrum(ks, n_exponents=1, n_steps=800, transient=400,
                                 n_trajectories=8, seed=0)
    assert 0.02 < spectrum[0] < 0.08


@pytest.mark.slow
def test_lyapunov_spectrum_l22_matches_the_literature(ks):
    """lambda_1 0.043-0.049 (SPEC), widened to 0.040-0.052 for the statistical error of
    32 trajectories x 2000 time units (standard error about 5e-4); the next two are the
    zero exponents of time and space translation (their estimates decay like 1/T)."""
    start = time.perf_counter()
    spectrum, stderr = lyapunov_spectrum(ks, n_exponents=3, n_steps=8000, transient=800,
                                         n_trajectories=32, seed=0, return_stderr=True)
    elapsed = time.perf_counter() - start
    print(f"KS L=22 spectrum {spectrum} +- {stderr} in {elapsed:.1f} s")
    assert 0.040 <= spectrum[0] <= 0.052
    assert np.all(np.abs(spectrum[1:]) < 0.005)
