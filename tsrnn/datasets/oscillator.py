"""Mass–spring–damper trajectories with varied physical parameters.

The task of the physics-informed WARP experiment (Nzoyem et al. 2025, "Weight-space linear
recurrent neural networks", arXiv 2506.01153): many trajectories of the damped oscillator

    m x'' + c x' + k x = 0   <=>   x'' + 2 ζ ω x' + ω² x = 0,   ω = √(k/m),  ζ = c / (2√(km))

each with its own (ω, ζ) and initial state, observed as (position, velocity). A model sees a
context window of a trajectory and forecasts the rest. The trajectories are the exact
solution (no integrator error), sampled every ``dt``.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_positive


def _check_range(value, name: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}") from error
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
        raise ValueError(f"{name} must satisfy 0 < low <= high, got {value!r}")
    return low, high


def mass_spring_damper_solution(t: np.ndarray, x0, v0, omega, zeta) -> np.ndarray:
    """Exact (position, velocity) of x'' + 2ζωx' + ω²x = 0 at times ``t``.

    ``t`` (T,); the other arguments scalars or arrays (n,) broadcast against each other.
    Returns (n, T, 2) (or (T, 2) for scalar parameters). Under-, critically and over-damped.
    """
    t = np.asarray(t, dtype=np.float64)
    x0, v0, omega, zeta = (np.asarray(v, dtype=np.float64)[..., None] for v in
                           (x0, v0, omega, zeta))
    lam = -zeta * omega
    s = omega ** 2 * (1 - zeta ** 2)
    r = np.sqrt(np.abs(s))
    rt = r * t
    with np.errstate(divide="ignore", invalid="ignore"):
        cos_term = np.where(s > 0, np.cos(rt), np.cosh(rt))
        sin_term = np.where(s > 0, np.sin(rt), np.sinh(rt)) / np.where(r > 0, r, 1.0)
    sin_term = np.where(r > 0, sin_term, t)  # critical damping: S(t) = t
    decay = np.exp(lam * t)
    position = decay * (x0 * cos_term + (v0 - lam * x0) * sin_term)
    velocity = decay * (v0 * cos_term + (lam * v0 - omega ** 2 * x0) * sin_term)
    return np.stack([position, velocity], axis=-1)


def mass_spring_damper(n_trajectories: int = 256, n_steps: int = 200, dt: float = 0.05,
                       omega: tuple[float, float] = (1.5, 3.0),
                       zeta: tuple[float, float] = (0.05, 0.3), amplitude: float = 1.0,
                       seed: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Trajectories of damped oscillators with random parameters and initial states.

    Parameters
    ----------
    n_trajectories, n_steps : int
    dt : float
        Sampling step (time units).
    omega, zeta : (low, high)
        Uniform ranges of the natural frequency ω and the damping ratio ζ.
    amplitude : float
        x_0 ~ U(-amplitude, amplitude) and v_0 ~ ω · U(-amplitude, amplitude), so that
        position and velocity have comparable scales relative to each trajectory's ω.
    seed : int or None

    Returns
    -------
    y : array (n_trajectories, n_steps, 2), (position, velocity) at t = 0, dt, 2dt, ...
    parameters : dict of arrays (n_trajectories,): "omega", "zeta", "x0", "v0"

    Examples
    --------
    >>> y, p = mass_spring_damper(8, 100, seed=0)
    >>> y.shape
    (8, 100, 2)
    """
    n_trajectories = check_positive(n_trajectories, "n_trajectories", integer=True)
    n_steps = check_positive(n_steps, "n_steps", integer=True)
    dt = check_positive(dt, "dt")
    amplitude = check_positive(amplitude, "amplitude")
    omega_range, zeta_range = _check_range(omega, "omega"), _check_range(zeta, "zeta")
    if seed is not None:
        seed = check_positive(seed, "seed", integer=True, allow_zero=True)
    rng = np.random.default_rng(seed)
    w = rng.uniform(*omega_range, n_trajectories)
    z = rng.uniform(*zeta_range, n_trajectories)
    x0 = rng.uniform(-amplitude, amplitude, n_trajectories)
    v0 = w * rng.uniform(-amplitude, amplitude, n_trajectories)
    y = mass_spring_damper_solution(np.arange(n_steps) * dt, x0, v0, w, z)
    return y, {"omega": w, "zeta": z, "x0": x0, "v0": v0}
