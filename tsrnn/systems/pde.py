"""The Kuramoto-Sivashinsky equation, integrated spectrally with ETDRK4.

    u_t + u u_x + u_xx + u_xxxx = 0,   x in [0, L) periodic,

on ``n_grid`` equispaced points x_j = j L / N. In Fourier space, with wavenumbers
k_m = 2 pi m / L and v = FFT(u), it splits into a stiff diagonal linear part and a mild
nonlinear part,

    v_t = Lin v + N(v),   Lin = k^2 - k^4,   N(v) = -(i k / 2) FFT(u^2),

which ETDRK4 (exponential time differencing with fourth-order Runge-Kutta stages; Cox &
Matthews 2002, "Exponential time differencing for stiff systems", J. Comput. Phys. 176)
integrates exactly in the linear part. With E = e^{h Lin} and E2 = e^{h Lin / 2}:

    a = E2 v + Q N(v)
    b = E2 v + Q N(a)
    c = E2 a + Q (2 N(b) - N(v))
    v' = E v + f1 N(v) + 2 f2 (N(a) + N(b)) + f3 N(c)

    Q  = h (e^{z/2} - 1) / z,                               z = h Lin
    f1 = h (-4 - z + e^z (4 - 3 z + z^2)) / z^3
    f2 = h ( 2 + z + e^z (-2 + z)) / z^3
    f3 = h (-4 - 3 z - z^2 + e^z (4 - z)) / z^3

The coefficients suffer catastrophic cancellation for small |z|; Kassam & Trefethen (2005,
"Fourth-order time-stepping for stiff PDEs", SIAM J. Sci. Comput. 26) evaluate them as the
mean of the same expressions over M points z + e^{i theta} on a circle around z, which is
exact to round-off for M = 16-32. Their ``kursiv.m`` fixes L = 32 pi; here L, N and M are
independent (reservoirpy 0.4.2 ties the domain to the contour count and cannot do L = 22).

Choices, each documented where it is made:

- Odd derivatives drop the Nyquist mode of an even grid (it has no sign; Trefethen,
  *Spectral Methods in MATLAB*, 2000, ch. 3); the linear part damps it with its true k.
- No dealiasing by default, as in Kassam & Trefethen. ``dealias=True`` applies the 2/3 rule
  to the nonlinear term (modes m >= N/3 of FFT(u^2) are zeroed).
- The mean of u is conserved (k = 0 has neither linear nor nonlinear term) and ETDRK4 keeps
  the zero mode exactly; initial states default to zero mean.
- Batches run in torch (``torch.fft``, CPU or GPU). One trajectory on the CPU in float64
  runs the same ETDRK4 map in numpy with each Fourier multiplier turned into a dense N x N
  grid operator (IFFT diag(d) FFT): nine matrix-vector products per step instead of eight
  FFT calls, 3-4x faster than a plain numpy ETDRK4 for N = 64 (same numbers to round-off).

Lyapunov spectrum for L = 22, N = 64 (SPEC section 1, not stored as a reference because
published values differ): lambda_1 about 0.043-0.049, converging slowly with the run
length; two zero exponents from time and space translation; D_KY between 4.2 and 5.2. On
the full grid state space the conserved mean adds a third zero exponent (Galilean
invariance: u(x - c t, t) + c solves the equation too); :meth:`KuramotoSivashinsky.
as_discrete_map` therefore restricts perturbations to zero mean by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._cuda import GraphedLoop, use_graphs
from .._protocol import DiscreteMap
from .._torch import resolve_device, resolve_dtype
from .._validation import check_bool, check_positive
from ..exceptions import DivergenceError
from . import integrators
from .base import Flow, _check_seed

# Up to this grid size, one trajectory on the CPU runs with dense N x N operators in numpy:
# nine small matrix-vector products per step cost less than eight FFT calls, whose fixed
# overhead (about 10 us each in numpy, more in torch) dominates at these sizes. Measured per
# step (2 cores): N = 64 25 us dense vs 250 us torch.fft; N = 256 190 vs 260; N = 512 1000
# vs 350.
_DENSE_FAST_PATH_MAX_GRID = 256

# Blow-up is tested every this many steps (a device synchronisation on GPUs); recorded
# states are then searched for the first bad one, so the error names its time exactly.
_CHECK_EVERY = 256
_GRAPH_STEPS = 64  # steps per captured CUDA graph


def etdrk4_coefficients(linear: np.ndarray, h: float, contour_points: int = 32
                        ) -> dict[str, np.ndarray]:
    """ETDRK4 coefficients of a real diagonal linear operator, by Kassam & Trefethen's
    contour integral.

    Parameters
    ----------
    linear : array (K,)
        Real eigenvalues Lin of the linear operator (the Fourier symbol).
    h : float
        Time step.
    contour_points : int
        M points on the upper half of the unit circle around each z = h Lin; by the
        symmetry of a real z the real part of their mean equals the mean over the 2M points
        of the full circle (``kursiv.m`` uses M = 16).

    Returns
    -------
    dict of arrays (K,): ``e`` = e^{h Lin}, ``e2`` = e^{h Lin / 2}, ``q``, ``f1``, ``f2``,
    ``f3`` as in the module docstring.
    """
    linear = np.asarray(linear, dtype=np.float64)
    z = h * linear
    roots = np.exp(1j * np.pi * (np.arange(1, contour_points + 1) - 0.5) / contour_points)
    lr = z[:, None] + roots[None, :]
    exp_lr = np.exp(lr)
    lr3 = lr**3

    def contour_mean(values: np.ndarray) -> np.ndarray:
        return h * np.real(values.mean(axis=1))

    return {
        "e": np.exp(z),
        "e2": np.exp(z / 2.0),
        "q": contour_mean((np.exp(lr / 2.0) - 1.0) / lr),
        "f1": contour_mean((-4.0 - lr + exp_lr * (4.0 - 3.0 * lr + lr**2)) / lr3),
        "f2": contour_mean((2.0 + lr + exp_lr * (-2.0 + lr)) / lr3),
        "f3": contour_mean((-4.0 - 3.0 * lr - lr**2 + exp_lr * (4.0 - lr)) / lr3),
    }


@dataclass(frozen=True)
class _Stepper:
    """ETDRK4 coefficients as tensors (K,) of one real dtype and device, plus the nonlinear
    symbol g = -i k / 2 (times the dealiasing mask)."""

    e: torch.Tensor
    e2: torch.Tensor
    q: torch.Tensor
    f1: torch.Tensor
    two_f2: torch.Tensor  # 2 f2, folded once instead of on every step
    f3: torch.Tensor
    g: torch.Tensor
    n_grid: int

    def nonlinear(self, v: torch.Tensor) -> torch.Tensor:
        """N(v) = g FFT(u^2) with u = IFFT(v); v (..., K) complex."""
        u = torch.fft.irfft(v, n=self.n_grid)
        return self.g * torch.fft.rfft(u * u)

    def step(self, v: torch.Tensor, nonlinear=None) -> torch.Tensor:
        """One ETDRK4 step of Fourier coefficients v (..., K) (Cox & Matthews 2002)."""
        nonlinear = self.nonlinear if nonlinear is None else nonlinear
        nv = nonlinear(v)
        a = self.e2 * v + self.q * nv
        na = nonlinear(a)
        b = self.e2 * v + self.q * na
        nb = nonlinear(b)
        c = self.e2 * a + self.q * (2.0 * nb - nv)
        nc = nonlinear(c)
        return self.e * v + self.f1 * nv + self.two_f2 * (na + nb) + self.f3 * nc


class KuramotoSivashinsky(Flow):
    """Kuramoto-Sivashinsky equation u_t + u u_x + u_xx + u_xxxx = 0 on [0, L) periodic,
    sampled on ``n_grid`` points (Kuramoto & Tsuzuki 1976; Sivashinsky 1977).

    Integrated with ETDRK4 in Fourier space (Kassam & Trefethen 2005, "Fourth-order
    time-stepping for stiff PDEs"); see the module docstring for the scheme. The state is the
    vector of grid values u(x_j), x_j = j L / N (:attr:`grid`).

    Parameters
    ----------
    L : float
        Domain length (> 0). L = 22 is the standard small chaotic domain (Cvitanovic,
        Davidchack & Siminos 2010); the number of unstable Fourier modes is about L / (2 pi).
    n_grid : int
        Number of grid points N (>= 4); any size works, powers of two are fastest.
    contour_points : int
        Points M on the half circle of the contour integral for the ETDRK4 coefficients
        (16-32 is exact to round-off).
    dealias : bool
        Apply the 2/3 rule to the nonlinear term. Off by default, as in Kassam & Trefethen:
        with N = 64 for L = 22 the mean Fourier amplitude falls from 0.2 (m = 1) to 2e-8 at
        m = 21 = N / 3 and 2e-12 at m = 30, so aliasing errors are about 1e-8.

    Notes
    -----
    Lyapunov spectrum for L = 22, N = 64 (SPEC section 1): lambda_1 about 0.043-0.049 per
    time unit (it converges slowly: T = 5e3 gives 0.044, T = 1e5 gives 0.049), two zero
    exponents (time and space translation), D_KY 4.2-5.2. ``lyapunov_reference`` is None
    because the published values disagree beyond the first digit.

    ``simulate`` accepts ``method=None`` or ``"etdrk4"`` and ``substeps`` (ETDRK4 steps per
    ``dt``). One trajectory on the CPU in float64 (N <= 256) runs in numpy with dense
    operators (the same ETDRK4 map, different round-off); batches run in torch with
    ``torch.fft`` on the CPU or a GPU.
    """

    default_dt = 0.25
    lyapunov_reference = None
    default_method = "etdrk4"
    default_substeps = 1

    def __init__(self, L: float = 22.0, n_grid: int = 64, *, contour_points: int = 32,
                 dealias: bool = False):
        check_positive(L, "L")
        n_grid = check_positive(n_grid, "n_grid", integer=True)
        if n_grid < 4:
            raise ValueError(f"n_grid must be at least 4, got {n_grid}")
        check_positive(contour_points, "contour_points", integer=True)
        dealias = check_bool(dealias, "dealias")
        self.L = L
        self.n_grid = n_grid
        self.contour_points = contour_points
        self.dealias = dealias
        # Coefficients and operators per (step, dtype, device), built on first use.
        self._cache: dict[tuple, Any] = {}

    # ------------------------------------------------------------------ geometry
    @property
    def dim(self) -> int:
        return self.n_grid

    @property
    def grid(self) -> np.ndarray:
        """The grid points x_j = j L / N, j = 0..N-1 (shape (N,))."""
        return self.L * np.arange(self.n_grid) / self.n_grid

    @property
    def wavenumbers(self) -> np.ndarray:
        """Wavenumbers k_m = 2 pi m / L of the real FFT, m = 0..N//2 (shape (N//2 + 1,))."""
        return 2.0 * np.pi / self.L * np.arange(self.n_grid // 2 + 1)

    def _symbols(self) -> tuple[np.ndarray, np.ndarray]:
        """Fourier symbols of the linear part, k^2 - k^4 (real), and of the nonlinear term,
        g = -i k / 2 (complex; Nyquist and, with ``dealias``, the top third zeroed)."""
        k = self.wavenumbers
        linear = k**2 - k**4
        k_odd = k.copy()
        if self.n_grid % 2 == 0:
            k_odd[-1] = 0.0  # odd derivatives of the Nyquist mode are not real: drop them
        g = -0.5j * k_odd
        if self.dealias:
            g[3 * np.arange(k.size) >= self.n_grid] = 0.0  # keep m < N/3 (2/3 rule)
        return linear, g

    # ------------------------------------------------------------------ initial states
    def default_initial_state(self) -> np.ndarray:
        """Kassam & Trefethen's u0 = cos(x/16)(1 + sin(x/16)) on [0, 32 pi), rescaled to
        [0, L): cos(2 pi x / L)(1 + sin(2 pi x / L)). Smooth, zero mean, amplitude about 1."""
        theta = 2.0 * np.pi * self.grid / self.L
        return np.cos(theta) * (1.0 + np.sin(theta))

    def sample_initial_states(self, n: int, seed: int | None = None) -> np.ndarray:
        """``n`` random smooth profiles with zero mean, shape (n, N): the Fourier modes
        m = 1..4 with Gaussian amplitudes of standard deviation 0.5 / m."""
        n = check_positive(n, "n", integer=True)
        rng = np.random.default_rng(_check_seed(seed))
        modes = np.arange(1, min(4, (self.n_grid - 1) // 2) + 1)
        theta = 2.0 * np.pi * modes[:, None] * self.grid[None, :] / self.L  # (modes, N)
        scale = 0.5 / modes[None, :]
        cosines = scale * rng.standard_normal((n, modes.size))
        sines = scale * rng.standard_normal((n, modes.size))
        return cosines @ np.cos(theta) + sines @ np.sin(theta)

    # ------------------------------------------------------------------ cached operators
    def _symbol_tensors(self, dtype: torch.dtype, device: torch.device):
        key = ("symbols", dtype, device)
        if key not in self._cache:
            linear, g = self._symbols()
            complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
            self._cache[key] = (torch.as_tensor(linear, dtype=dtype, device=device),
                                torch.as_tensor(g, dtype=complex_dtype, device=device))
        return self._cache[key]

    def _stepper(self, h: float, dtype: torch.dtype, device: torch.device) -> _Stepper:
        key = ("etdrk4", float(h), dtype, device)
        if key not in self._cache:
            linear, _ = self._symbols()
            coefficients = etdrk4_coefficients(linear, h, self.contour_points)

            def tensor(values: np.ndarray) -> torch.Tensor:
                return torch.as_tensor(values, dtype=dtype, device=device)

            self._cache[key] = _Stepper(
                e=tensor(coefficients["e"]), e2=tensor(coefficients["e2"]),
                q=tensor(coefficients["q"]), f1=tensor(coefficients["f1"]),
                two_f2=tensor(2.0 * coefficients["f2"]), f3=tensor(coefficients["f3"]),
                g=self._symbol_tensors(dtype, device)[1], n_grid=self.n_grid,
            )
        return self._cache[key]

    def _grid_operator(self, symbol: np.ndarray) -> np.ndarray:
        """The N x N matrix of u -> IFFT(symbol * FFT(u)) on grid values (float64)."""
        basis = np.eye(self.n_grid)
        images = np.fft.irfft(symbol * np.fft.rfft(basis, axis=-1), n=self.n_grid, axis=-1)
        return np.ascontiguousarray(images.T)  # row j of ``images`` is the image of e_j

    def _dense_stepper(self, h: float) -> dict[str, np.ndarray]:
        """ETDRK4 on grid values with dense operators: each diagonal Fourier multiplier d
        becomes the matrix IFFT d FFT, and each d N(v) the matrix IFFT d g FFT applied to u^2."""
        key = ("dense", float(h))
        if key not in self._cache:
            linear, g = self._symbols()
            c = etdrk4_coefficients(linear, h, self.contour_points)
            self._cache[key] = {
                "e": self._grid_operator(c["e"]),
                "e2": self._grid_operator(c["e2"]),
                "q": self._grid_operator(c["q"] * g),
                "f1": self._grid_operator(c["f1"] * g),
                "two_f2": self._grid_operator(2.0 * c["f2"] * g),
                "f3": self._grid_operator(c["f3"] * g),
            }
        return self._cache[key]

    def _derivative_matrices(self, dtype: torch.dtype, device: torch.device):
        """Dense (N, N) matrices of the linear part (-d_xx - d_xxxx) and of
        w -> IFFT(2 g FFT(w)), the derivative of the nonlinear term -(u^2)_x / 2 applied to
        products u w."""
        key = ("jacobian", dtype, device)
        if key not in self._cache:
            linear, g = self._symbols()
            self._cache[key] = (
                torch.as_tensor(self._grid_operator(linear), dtype=dtype, device=device),
                torch.as_tensor(self._grid_operator(2.0 * g), dtype=dtype, device=device),
            )
        return self._cache[key]

    # ------------------------------------------------------------------ vector field
    def _rhs(self, t: float, x: torch.Tensor) -> torch.Tensor:
        """u_t = -u u_x - u_xx - u_xxxx evaluated spectrally on grid values x (B, N)."""
        linear, g = self._symbol_tensors(x.dtype, x.device)
        v = torch.fft.rfft(x)
        return torch.fft.irfft(linear * v + g * torch.fft.rfft(x * x), n=self.n_grid)

    def _jacobian(self, x: torch.Tensor) -> torch.Tensor:
        """J(u) w = -(u w)_x - w_xx - w_xxxx as dense matrices (B, N, N):
        J = A + G diag(u), A the linear operator, G the spectral -d_x (times the mask)."""
        linear_op, product_op = self._derivative_matrices(x.dtype, x.device)
        return linear_op + product_op * x.unsqueeze(-2)

    # ------------------------------------------------------------------ simulation
    def _resolve_integration(self, method: str | None, substeps: int | None, dt: float):
        if method not in (None, "etdrk4"):
            raise ValueError(
                f"KuramotoSivashinsky integrates with ETDRK4 only (method=None or 'etdrk4'), "
                f"got method={method!r}; explicit Runge-Kutta methods are unstable on its "
                "stiff fourth-derivative term at useful steps"
            )
        substeps = self._default_substeps(dt) if substeps is None else substeps
        return "etdrk4", check_positive(substeps, "substeps", integer=True)

    def _simulate(self, x0: np.ndarray, n_steps: int, dt, transient: int, *, method, substeps,
                  rtol, atol, device, dtype) -> torch.Tensor:
        dt = self._check_dt(dt)
        _, substeps = self._resolve_integration(method, substeps, dt)
        h = dt / substeps
        if (x0.shape[0] == 1 and device.type == "cpu" and dtype == torch.float64
                and self.n_grid <= _DENSE_FAST_PATH_MAX_GRID):
            states = self._simulate_dense(x0[0], n_steps, dt, transient, substeps)
            return torch.from_numpy(states)[None]
        stepper = self._stepper(h, dtype, device)
        v = torch.fft.rfft(torch.as_tensor(x0, dtype=dtype, device=device))
        for i in range(transient):
            for _ in range(substeps):
                v = stepper.step(v)
            if (i + 1) % _CHECK_EVERY == 0 or i == transient - 1:
                _check_transient(v, i + 1, dt)
        spectra = v.new_empty((v.shape[0], n_steps, v.shape[1]))
        spectra[:, 0] = v
        checked = 0
        start = 1
        if use_graphs(v.device, n_steps - 1, _GRAPH_STEPS):
            # On a GPU the step is a few dozen small kernels: replay them as CUDA graphs.
            def interval(w: torch.Tensor) -> torch.Tensor:
                for _ in range(substeps):
                    w = stepper.step(w)
                return w

            loop = GraphedLoop(interval, v, _GRAPH_STEPS)
            while start + _GRAPH_STEPS <= n_steps:
                v, block = loop(v)
                v = v.clone()
                spectra[:, start:start + _GRAPH_STEPS] = block
                start += _GRAPH_STEPS
                _check_rows(spectra[:, checked:start].transpose(0, 1), checked, transient, dt)
                checked = start
        for i in range(start, n_steps):
            for _ in range(substeps):
                v = stepper.step(v)
            spectra[:, i] = v
            if i % _CHECK_EVERY == 0 or i == n_steps - 1:
                _check_rows(spectra[:, checked:i + 1].transpose(0, 1), checked, transient, dt)
                checked = i + 1
        return torch.fft.irfft(spectra, n=self.n_grid)

    def _simulate_dense(self, u: np.ndarray, n_steps: int, dt: float, transient: int,
                        substeps: int) -> np.ndarray:
        """One trajectory in numpy: ETDRK4 with the dense grid operators of
        :meth:`_dense_stepper` (the same map as the spectral step, written in grid space)."""
        ops = self._dense_stepper(dt / substeps)
        e, e2, q = ops["e"], ops["e2"], ops["q"]
        f1, two_f2, f3 = ops["f1"], ops["two_f2"], ops["f3"]
        dot = np.dot

        def step(u: np.ndarray) -> np.ndarray:
            # Same stages as _Stepper.step, with N(w) folded into the operators (u^2 -> q u^2).
            nu = u * u
            e2u = dot(e2, u)
            a = e2u + dot(q, nu)
            na = a * a
            b = e2u + dot(q, na)
            nb = b * b
            c = dot(e2, a) + dot(q, 2.0 * nb - nu)
            nc = c * c
            return dot(e, u) + dot(f1, nu) + dot(two_f2, na + nb) + dot(f3, nc)

        u = np.array(u, dtype=np.float64)
        states = np.empty((n_steps, self.n_grid))
        # A blow-up overflows before it is detected; the check below reports it instead.
        with np.errstate(over="ignore", invalid="ignore"):
            for i in range(transient):
                for _ in range(substeps):
                    u = step(u)
                if (i + 1) % _CHECK_EVERY == 0 or i == transient - 1:
                    _check_transient(u, i + 1, dt)
            states[0] = u
            checked = 0
            for i in range(1, n_steps):
                for _ in range(substeps):
                    u = step(u)
                states[i] = u
                if i % _CHECK_EVERY == 0 or i == n_steps - 1:
                    _check_rows(states[checked:i + 1], checked, transient, dt)
                    checked = i + 1
        return states

    # ------------------------------------------------------------------ analysis
    def as_discrete_map(self, dt: float | None = None, *, method: str | None = None,
                        substeps: int | None = None, zero_mean_perturbations: bool = True,
                        device: Any = "cpu", dtype: Any = torch.float64) -> DiscreteMap:
        """``substeps`` ETDRK4 steps covering ``dt`` as a map on grid values (B, N).

        ``step`` is plain differentiable torch (autodiff gives its exact tangent). The map
        also carries a fused ``tangent``: the derivative of the ETDRK4 step, which is ETDRK4
        applied to the variational equation w_t = Lin w + 2 g FFT(u IFFT(w)), computed for
        the state and the k tangent vectors in one batch of FFTs.

        Parameters
        ----------
        zero_mean_perturbations : bool
            Project tangent vectors onto zero mean (the mean is conserved, so they stay
            there). This gives the spectrum of the zero-mean dynamics that the literature
            reports, with its two zero exponents; on the full grid space the conserved mean
            adds a third. At most N - 1 exponents then exist; pass False for all N.
        """
        self._check_parameters()
        dt = self._check_dt(dt)
        _, substeps = self._resolve_integration(method, substeps, dt)
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, torch.float64)
        stepper = self._stepper(dt / substeps, dtype, device)
        n_grid = self.n_grid

        def step(x: torch.Tensor) -> torch.Tensor:
            v = torch.fft.rfft(x)
            for _ in range(substeps):
                v = stepper.step(v)
            return torch.fft.irfft(v, n=n_grid)

        def tangent(x: torch.Tensor, frame: torch.Tensor):
            k = frame.shape[-1]
            if zero_mean_perturbations and k >= n_grid:
                raise ValueError(
                    f"with zero_mean_perturbations=True at most n_grid - 1 = {n_grid - 1} "
                    f"exponents exist (the mean is conserved); asked for {k}. Pass "
                    "zero_mean_perturbations=False for the full grid space, whose extra "
                    "exponent is 0"
                )
            # Rows: the state, then the k tangent vectors; all FFTs run as one batch.
            stacked = torch.fft.rfft(torch.cat([x.unsqueeze(1), frame.transpose(1, 2)], 1))
            if zero_mean_perturbations:
                stacked[:, 1:, 0] = 0.0
            # d/dv [g FFT(u^2)] w = 2 g FFT(u w): row 0 gets g FFT(u u), rows 1.. 2 g FFT(u w).
            weights = torch.full((k + 1, 1), 2.0, dtype=dtype, device=x.device)
            weights[0] = 1.0
            g_rows = stepper.g * weights

            def nonlinear(v: torch.Tensor) -> torch.Tensor:
                u = torch.fft.irfft(v, n=n_grid)
                return g_rows * torch.fft.rfft(u[:, :1] * u)

            for _ in range(substeps):
                stacked = stepper.step(stacked, nonlinear)
            grid_values = torch.fft.irfft(stacked, n=n_grid)
            return grid_values[:, 0], grid_values[:, 1:].transpose(1, 2)

        # lambda_1 ~ 0.045 converges slowly (SPEC: 0.044 at T = 5e3, 0.049 at T = 1e5):
        # 2000 time units per trajectory, many trajectories in one batch.
        return DiscreteMap(step=step, dim=n_grid, time_step=dt, tangent=tangent,
                           initial_states=self._initial_states_fn(dtype, device),
                           dtype=dtype, device=device, name=type(self).__name__,
                           tangent_dim=n_grid - 1 if zero_mean_perturbations else n_grid,
                           default_steps=math.ceil(2000.0 / dt),
                           orthonormalize_every=max(1, round(0.1 / dt)))


def _check_transient(state, n_done: int, dt: float) -> None:
    """During a transient only the current state is kept: name the interval since the last
    check in which the blow-up happened."""
    magnitude = np.abs(state) if isinstance(state, np.ndarray) else state.abs()
    if not bool((magnitude < integrators.blowup_limit()).all()):
        start = max(0, n_done - _CHECK_EVERY)
        raise DivergenceError(
            f"simulation diverged (non-finite or exploding values) during the transient, "
            f"between t = {start * dt:.6g} and t = {n_done * dt:.6g}; try a smaller dt, more "
            "substeps or another initial state"
        )


def _check_rows(rows, first_row: int, transient: int, dt: float) -> None:
    """Raise :class:`DivergenceError` at the time of the first non-finite or exploding row.

    ``rows`` (n, ...) are recorded states n = first_row, first_row + 1, ... after
    ``transient`` unrecorded steps of length ``dt`` (numpy array or tensor, real or complex).
    """
    if isinstance(rows, np.ndarray):
        bad = ~(np.abs(rows) < integrators.blowup_limit())  # NaN compares False: counted as bad
        bad_rows = np.nonzero(bad.reshape(bad.shape[0], -1).any(1))[0]
        first_bad = int(bad_rows[0]) if bad_rows.size else None
    else:
        bad = ~(rows.abs() < integrators.blowup_limit())
        flags = bad.reshape(bad.shape[0], -1).any(1)
        first_bad = int(torch.nonzero(flags)[0, 0]) if bool(flags.any()) else None
    if first_bad is not None:
        time = (transient + first_row + first_bad) * dt
        integrators.check_state(torch.tensor([math.nan]), time, "simulation")


__all__ = ["KuramotoSivashinsky", "etdrk4_coefficients"]
