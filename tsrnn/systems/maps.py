"""Chaotic maps (discrete-time systems)."""

from __future__ import annotations

import numpy as np
import torch

from .._validation import check_positive
from .base import Map, _check_seed


class Henon(Map):
    """Henon (1976), "A two-dimensional mapping with a strange attractor":

        x' = 1 - a x^2 + y,   y' = b x

    Lyapunov exponents per step: 0.41922, -1.62319 (sum ln b).
    """

    lyapunov_reference = (0.41922, -1.62319)
    dim = 2

    def __init__(self, a: float = 1.4, b: float = 0.3):
        self.a, self.b = a, b

    def default_initial_state(self) -> np.ndarray:
        return np.array([0.1, 0.1])

    def sample_initial_states(self, n: int, seed: int | None = None) -> np.ndarray:
        n = check_positive(n, "n", integer=True)
        rng = np.random.default_rng(_check_seed(seed))
        return np.array([0.1, 0.1]) + 0.05 * rng.standard_normal((n, 2))

    _numpy_step = True

    def _step(self, x):
        u, v = x[..., 0], x[..., 1]
        stack = torch.stack if isinstance(x, torch.Tensor) else np.stack
        return stack([1.0 - self.a * u * u + v, self.b * u], -1)

    def _jacobian(self, x):
        u = x[..., 0]
        jac = x.new_zeros((*x.shape, 2))
        jac[..., 0, 0] = -2.0 * self.a * u
        jac[..., 0, 1] = 1.0
        jac[..., 1, 0] = self.b
        return jac


class Logistic(Map):
    """The logistic map (May 1976, "Simple mathematical models with very complicated
    dynamics"): x' = r x (1 - x). For r = 4 the Lyapunov exponent is ln 2 per step."""

    lyapunov_reference = (float(np.log(2.0)),)
    dim = 1

    def __init__(self, r: float = 4.0):
        self.r = r

    def default_initial_state(self) -> np.ndarray:
        return np.array([0.2])

    def sample_initial_states(self, n: int, seed: int | None = None) -> np.ndarray:
        n = check_positive(n, "n", integer=True)
        rng = np.random.default_rng(_check_seed(seed))
        return rng.uniform(0.05, 0.95, (n, 1))

    _numpy_step = True

    def _step(self, x):
        return self.r * x * (1.0 - x)

    def _jacobian(self, x):
        return (self.r * (1.0 - 2.0 * x)).unsqueeze(-1)


class Ikeda(Map):
    """Ikeda map (Ikeda 1979; Hammel, Jones & Moloney 1985) of a laser in a ring cavity:

        t = 0.4 - 6 / (1 + x^2 + y^2)
        x' = 1 + u (x cos t - y sin t),   y' = u (x sin t + y cos t)

    Lyapunov exponents per step for u = 0.9 (Sprott, *Chaos and Time-Series Analysis*,
    2003): 0.50752, -0.71824; their sum is exactly 2 ln u, since det J = u^2.
    """

    lyapunov_reference = (0.50752, -0.71824)
    dim = 2

    def __init__(self, u: float = 0.9):
        self.u = u

    def default_initial_state(self) -> np.ndarray:
        return np.array([0.1, 0.1])

    def _step(self, state):
        x, y = state.unbind(-1)
        t = 0.4 - 6.0 / (1.0 + x * x + y * y)
        c, s = torch.cos(t), torch.sin(t)
        return torch.stack([1.0 + self.u * (x * c - y * s), self.u * (x * s + y * c)], -1)

    def _jacobian(self, state):
        x, y = state.unbind(-1)
        r2 = 1.0 + x * x + y * y
        t = 0.4 - 6.0 / r2
        c, s = torch.cos(t), torch.sin(t)
        dt_dx, dt_dy = 12.0 * x / r2**2, 12.0 * y / r2**2
        # d/dx of (x c - y s) = c + (-x s - y c) dt/dx, and so on.
        a = -x * s - y * c
        b = x * c - y * s
        jac = state.new_empty((*state.shape, 2))
        jac[..., 0, 0] = self.u * (c + a * dt_dx)
        jac[..., 0, 1] = self.u * (-s + a * dt_dy)
        jac[..., 1, 0] = self.u * (s + b * dt_dx)
        jac[..., 1, 1] = self.u * (c + b * dt_dy)
        return jac
