"""Chaotic and oscillating flows (ordinary differential equations).

Each class documents its equations, canonical parameters and source. Jacobians are
analytic; ``tests/systems/test_flows.py`` checks every one against finite differences.
"""

from __future__ import annotations

import numpy as np
import torch

from .._validation import as_float_array, check_positive
from . import _math
from .base import ComponentFlow, Flow, _check_seed


class Lorenz63(ComponentFlow):
    """Lorenz (1963), "Deterministic nonperiodic flow", J. Atmos. Sci. 20.

        dx/dt = sigma (y - x),   dy/dt = x (rho - z) - y,   dz/dt = x y - beta z

    Lyapunov spectrum (Sprott, *Chaos and Time-Series Analysis*, 2003): 0.9056, 0, -14.5723;
    its sum is the constant divergence -(sigma + 1 + beta).
    """

    default_dt = 0.01
    lyapunov_reference = (0.9056, 0.0, -14.5723)

    def __init__(self, sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0):
        self.sigma, self.rho, self.beta = sigma, rho, beta

    dim = 3

    def default_initial_state(self) -> np.ndarray:
        return np.array([-8.0, 7.0, 27.0])

    def field(self, x, y, z):
        return (self.sigma * (y - x), x * (self.rho - z) - y, x * y - self.beta * z)

    def jacobian_rows(self, x, y, z):
        return ((-self.sigma, self.sigma, 0.0),
                (self.rho - z, -1.0, -x),
                (y, x, -self.beta))


class Rossler(ComponentFlow):
    """Rossler (1976), "An equation for continuous chaos", Phys. Lett. A 57.

        dx/dt = -y - z,   dy/dt = x + a y,   dz/dt = b + z (x - c)

    Lyapunov spectrum (Sprott 2003): 0.0714, 0, -5.3943.
    """

    default_dt = 0.05
    lyapunov_reference = (0.0714, 0.0, -5.3943)
    # 50 time units (8 turns) read lambda_1 0.066 +- 0.006 and lambda_2 0.017 +- 0.006 (seed 0,
    # 32 trajectories): biased by the short alignment; 200 read 0.070 +- 0.001 and -0.001.
    lyapunov_duration = 200.0
    dim = 3

    def __init__(self, a: float = 0.2, b: float = 0.2, c: float = 5.7):
        self.a, self.b, self.c = a, b, c

    def default_initial_state(self) -> np.ndarray:
        return np.array([1.0, -6.0, 0.1])

    def field(self, x, y, z):
        return (-y - z, x + self.a * y, self.b + z * (x - self.c))

    def jacobian_rows(self, x, y, z):
        return ((0.0, -1.0, -1.0), (1.0, self.a, 0.0), (z, 0.0, x - self.c))


class Chen(ComponentFlow):
    """Chen & Ueta (1999), "Yet another chaotic attractor", Int. J. Bifurcation Chaos 9.

        dx/dt = a (y - x),   dy/dt = (c - a) x - x z + c y,   dz/dt = x y - b z

    Lyapunov spectrum (Sprott 2003): 2.0272, 0, -12.0272 (sum -a - b + c = -10).
    """

    default_dt = 0.005
    lyapunov_reference = (2.0272, 0.0, -12.0272)
    dim = 3

    def __init__(self, a: float = 35.0, b: float = 3.0, c: float = 28.0):
        self.a, self.b, self.c = a, b, c

    def default_initial_state(self) -> np.ndarray:
        return np.array([-10.0, 0.0, 37.0])

    def field(self, x, y, z):
        return (self.a * (y - x), (self.c - self.a) * x - x * z + self.c * y,
                x * y - self.b * z)

    def jacobian_rows(self, x, y, z):
        return ((-self.a, self.a, 0.0),
                (self.c - self.a - z, self.c, -x),
                (y, x, -self.b))


class Chua(ComponentFlow):
    """Chua's circuit in dimensionless form (Chua, Komuro & Matsumoto 1986, "The double
    scroll family", IEEE Trans. Circuits Syst. 33; Matsumoto 1984).

        dx/dt = alpha (y - x - f(x)),   dy/dt = x - y + z,   dz/dt = -beta y,
        f(x) = m1 x + (m0 - m1) (|x + 1| - |x - 1|) / 2

    The canonical double-scroll parameters are the defaults: alpha = 15.6, beta = 28,
    m0 = -8/7, m1 = -5/7 (dysts stores the same values rounded, -1.142857 and -0.71429). f
    is piecewise linear, so the Jacobian jumps at |x| = 1 (its value there is one-sided; a
    set of measure zero).
    """

    default_dt = 0.01
    dim = 3

    def __init__(self, alpha: float = 15.6, beta: float = 28.0, m0: float = -8.0 / 7.0,
                 m1: float = -5.0 / 7.0):
        self.alpha, self.beta, self.m0, self.m1 = alpha, beta, m0, m1

    def default_initial_state(self) -> np.ndarray:
        return np.array([0.7, 0.0, 0.0])

    def _f(self, x):
        return self.m1 * x + 0.5 * (self.m0 - self.m1) * (abs(x + 1.0) - abs(x - 1.0))

    def field(self, x, y, z):
        return (self.alpha * (y - x - self._f(x)), x - y + z, -self.beta * y)

    def jacobian_rows(self, x, y, z):
        inner = _math.step(1.0 - abs(x))  # 1 inside |x| < 1, where the slope is m0
        slope = self.m1 + (self.m0 - self.m1) * inner
        return ((-self.alpha * (1.0 + slope), self.alpha, 0.0),
                (1.0, -1.0, 1.0),
                (0.0, -self.beta, 0.0))


class DoubleScroll(ComponentFlow):
    """Elwakil & Kennedy's jerk form of the double scroll (Sprott, *Elegant Chaos*, 2010):

        dx/dt = y,   dy/dt = z,   dz/dt = -a (z + y + x - sign(x))
    """

    default_dt = 0.01
    dim = 3

    def __init__(self, a: float = 0.8):
        self.a = a

    def default_initial_state(self) -> np.ndarray:
        return np.array([0.01, 0.01, 0.0])

    def field(self, x, y, z):
        return (y, z, -self.a * (z + y + x - _math.sign(x)))

    def jacobian_rows(self, x, y, z):
        return ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (-self.a, -self.a, -self.a))


class Duffing(ComponentFlow):
    """The forced Duffing oscillator (Guckenheimer & Holmes 1983, section 2.2), made
    autonomous with the forcing phase as a third coordinate:

        dx/dt = v,   dv/dt = -delta v - alpha x - beta x^3 + gamma cos(phi),   dphi/dt = omega

    The defaults give the chaotic double-well regime. The phase adds one zero exponent.
    dysts's ``Duffing`` swaps the names: its ``alpha`` multiplies x^3 and its ``beta``
    multiplies x, so its (alpha=1, beta=-1) is this class's (alpha=-1, beta=1).
    """

    default_dt = 0.05
    dim = 3
    phase_coordinates = (2,)

    def __init__(self, delta: float = 0.3, alpha: float = -1.0, beta: float = 1.0,
                 gamma: float = 0.5, omega: float = 1.2):
        self.delta, self.alpha, self.beta = delta, alpha, beta
        self.gamma, self.omega = gamma, omega

    def default_initial_state(self) -> np.ndarray:
        return np.array([1.0, 0.0, 0.0])

    def sample_initial_states(self, n: int, seed: int | None = None) -> np.ndarray:
        states = super().sample_initial_states(n, seed)
        states[:, 2] = 0.0  # start every trajectory at forcing phase 0
        return states

    def field(self, x, v, phase):
        return (v,
                -self.delta * v - self.alpha * x - self.beta * x * x * x
                + self.gamma * _math.cos(phase),
                self.omega + 0.0 * phase)

    def jacobian_rows(self, x, v, phase):
        return ((0.0, 1.0, 0.0),
                (-self.alpha - 3.0 * self.beta * x * x, -self.delta,
                 -self.gamma * _math.sin(phase)),
                (0.0, 0.0, 0.0))


class VanDerPol(ComponentFlow):
    """Van der Pol (1926) relaxation oscillator, with optional periodic forcing (Van der Pol
    & Van der Mark 1927) carried by a phase coordinate:

        dx/dt = y,   dy/dt = mu (1 - x^2) y - x + amplitude cos(phi),   dphi/dt = omega

    Unforced (the default, amplitude 0) it has one stable limit cycle.
    """

    default_dt = 0.05
    dim = 3
    phase_coordinates = (2,)

    def __init__(self, mu: float = 1.0, amplitude: float = 0.0, omega: float = 1.0):
        self.mu, self.amplitude, self.omega = mu, amplitude, omega

    def default_initial_state(self) -> np.ndarray:
        return np.array([2.0, 0.0, 0.0])

    def field(self, x, y, phase):
        return (y, self.mu * (1.0 - x * x) * y - x + self.amplitude * _math.cos(phase),
                self.omega + 0.0 * phase)

    def jacobian_rows(self, x, y, phase):
        return ((0.0, 1.0, 0.0),
                (-2.0 * self.mu * x * y - 1.0, self.mu * (1.0 - x * x),
                 -self.amplitude * _math.sin(phase)),
                (0.0, 0.0, 0.0))


class FitzHughNagumo(ComponentFlow):
    """FitzHugh (1961) / Nagumo (1962) neuron model, in the form used by LEM's regression
    task (Rusch et al., ICLR 2022):

        dv/dt = v - v^3 / 3 - w + I,   dw/dt = epsilon (v + a - b w)

    Not chaotic: a stable limit cycle for the defaults.
    """

    default_dt = 0.4
    dim = 2

    def __init__(self, I: float = 0.5, a: float = 0.7, b: float = 0.8,
                 epsilon: float = 1.0 / 50.0):
        self.I, self.a, self.b, self.epsilon = I, a, b, epsilon

    def default_initial_state(self) -> np.ndarray:
        return np.array([0.5, 0.0])

    def field(self, v, w):
        return (v - v * v * v / 3.0 - w + self.I, self.epsilon * (v + self.a - self.b * w))

    def jacobian_rows(self, v, w):
        return ((1.0 - v * v, -1.0), (self.epsilon, -self.epsilon * self.b))


class Thomas(ComponentFlow):
    """Thomas (1999), "Deterministic chaos seen in terms of feedback circuits", cyclically
    symmetric attractor:

        dx/dt = sin(y) - b x,   dy/dt = sin(z) - b y,   dz/dt = sin(x) - b z

    b = 0.208186 is Thomas's value at the edge of chaos. dysts's ``Thomas`` is a rescaled
    form, dx/dt = -a x + b sin(y) and so on, with a = 1.85 and b = 10 (another attractor).
    """

    default_dt = 0.1
    # Exponents of order 0.01: 50 time units read lambda_1 0.086 +- 0.012, 500 read
    # 0.007 +- 0.001 (sum -3b = -0.6246 either way; 16 trajectories).
    lyapunov_duration = 500.0
    dim = 3

    def __init__(self, b: float = 0.208186):
        self.b = b

    def default_initial_state(self) -> np.ndarray:
        return np.array([0.1, 0.0, 0.0])

    def field(self, x, y, z):
        return (_math.sin(y) - self.b * x, _math.sin(z) - self.b * y, _math.sin(x) - self.b * z)

    def jacobian_rows(self, x, y, z):
        return ((-self.b, _math.cos(y), 0.0),
                (0.0, -self.b, _math.cos(z)),
                (_math.cos(x), 0.0, -self.b))


class Lorenz96(Flow):
    """Lorenz (1996), "Predictability: a problem partly solved" (ECMWF seminar):

        dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F,   i = 1..n, indices cyclic

    The divergence is -n, so the Lyapunov spectrum sums to -n. For n = 40, F = 8 the
    leading exponent is about 1.6-1.7 with 13 positive exponents; no literature spectrum is
    stored because published values differ in the third digit. (dysts's ``Lorenz96`` calls
    the forcing ``f`` and defaults to n = 4 and f = 20, not the standard n = 40, F = 8.)
    """

    default_dt = 0.01

    def __init__(self, n: int = 40, forcing: float = 8.0):
        check_positive(n, "n", integer=True)
        if n < 4:
            raise ValueError(f"Lorenz96 needs n >= 4 sites, got n={n}")
        self.n, self.forcing = int(n), forcing

    @property
    def dim(self) -> int:
        return self.n

    def default_initial_state(self) -> np.ndarray:
        state = np.full(self.n, float(self.forcing))
        state[0] += 0.01  # the standard perturbation of the unstable equilibrium x_i = F
        return state

    def sample_initial_states(self, n: int, seed: int | None = None) -> np.ndarray:
        n = check_positive(n, "n", integer=True)
        rng = np.random.default_rng(_check_seed(seed))
        return self.forcing + rng.standard_normal((n, self.n))

    def _rhs(self, t, x):
        return ((torch.roll(x, -1, -1) - torch.roll(x, 2, -1)) * torch.roll(x, 1, -1)
                - x + self.forcing)

    def _jacobian(self, x):
        n = self.n
        batch = x.shape[0]
        rows = torch.arange(n, device=x.device)
        jac = x.new_zeros((batch, n, n))
        jac[:, rows, rows] = -1.0
        jac[:, rows, (rows + 1) % n] = torch.roll(x, 1, -1)
        jac[:, rows, (rows - 2) % n] = -torch.roll(x, 1, -1)
        jac[:, rows, (rows - 1) % n] = torch.roll(x, -1, -1) - torch.roll(x, 2, -1)
        return jac


class KuramotoOscillators(Flow):
    """Kuramoto (1975) network of phase oscillators with all-to-all coupling:

        dtheta_i/dt = omega_i + (K / n) sum_j sin(theta_j - theta_i)

    Natural frequencies ``omega`` are given, or drawn once from N(0, 1) with
    ``frequency_seed`` (so the system is fully determined by its parameters). Phases are not
    wrapped, so that trajectories stay continuous; wrap with ``np.mod(x, 2 * np.pi)``.
    Synchronisation sets in near K_c = 2 / (pi g(0)) = 1.6 for standard normal frequencies.
    """

    default_dt = 0.05

    def __init__(self, n: int = 10, coupling: float = 1.0, frequencies=None,
                 frequency_seed: int = 0):
        self.n = check_positive(n, "n", integer=True)
        self.coupling = coupling
        self.frequencies = frequencies
        self.frequency_seed = frequency_seed
        if frequencies is None:
            seed = check_positive(frequency_seed, "frequency_seed", integer=True, allow_zero=True)
            omega = np.random.default_rng(seed).standard_normal(self.n)
        else:
            omega = as_float_array(frequencies, "frequencies", ndim=1)
            if omega.shape[0] != self.n:
                raise ValueError(f"frequencies must have n={self.n} entries, got {omega.shape}")
        self._omega = omega

    @property
    def dim(self) -> int:
        return self.n

    @property
    def phase_coordinates(self) -> tuple[int, ...]:
        return tuple(range(self.n))  # every coordinate is an unwrapped phase

    def default_initial_state(self) -> np.ndarray:
        return np.linspace(0.0, 2.0 * np.pi, self.n, endpoint=False)

    def order_parameter(self, phases) -> np.ndarray:
        """Kuramoto's order parameter r = |mean_j exp(i theta_j)| along a trajectory."""
        phases = np.asarray(phases)
        return np.abs(np.exp(1j * phases).mean(-1))

    def _rhs(self, t, x):
        omega = torch.as_tensor(self._omega, dtype=x.dtype, device=x.device)
        difference = x.unsqueeze(-2) - x.unsqueeze(-1)  # [i, j] = theta_j - theta_i
        return omega + self.coupling / self.n * torch.sin(difference).sum(-1)

    def _jacobian(self, x):
        difference = x.unsqueeze(-2) - x.unsqueeze(-1)
        coupling = self.coupling / self.n * torch.cos(difference)
        diagonal = coupling.sum(-1) - torch.diagonal(coupling, dim1=-2, dim2=-1)
        jac = coupling - torch.diag_embed(torch.diagonal(coupling, dim1=-2, dim2=-1))
        return jac - torch.diag_embed(diagonal)
