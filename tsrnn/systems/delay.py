"""The Mackey-Glass delay differential equation.

Mackey & Glass (1977), "Oscillation and chaos in physiological control systems", Science 197:

    dx/dt = a x(t - tau) / (1 + x(t - tau)^n) - b x(t) = p(x(t - tau)) - b x(t)

Its state at time t is the whole history segment x on [t - tau, t], so a simulator keeps a
history buffer. Here the buffer holds x on a grid of spacing h/2 over [t - tau, t]
(2m + 1 values, h = tau / m the inner step), and each inner step is classical RK4 whose
delayed arguments x(t - tau), x(t - tau + h/2), x(t - tau + h) are read off that grid:

    k1 = p(x_tau(0)) - b x,           k2 = p(x_tau(h/2)) - b (x + h k1 / 2),
    k3 = p(x_tau(h/2)) - b (x + h k2 / 2),   k4 = p(x_tau(h)) - b (x + h k3),
    x(t + h) = x + h (k1 + 2 k2 + 2 k3 + k4) / 6.

The new half-step value comes from the cubic Hermite interpolant of the step,

    x(t + h/2) = (x(t) + x(t + h)) / 2 + h (f(t) - f(t + h)) / 8,

with f the right-hand side at both ends. Because tau is a whole number of inner steps, the
derivative jumps of the solution (at t = 0, tau, 2 tau, ...) fall on grid points and never
inside a step, so the scheme keeps RK4's fourth order (the Hermite value adds a local error
O(h^4) to a delayed argument, hence O(h^5) to a step): the error at a fixed time falls
16-fold per halving of h (``tests/systems/test_mackey_glass.py`` checks this).

Vectorised in time: given the delayed values, the equation is linear in x(t), so RK4 is the
linear recurrence x_{i+1} = A x_i + c_i with A = 1 + z + z^2/2 + z^3/6 + z^4/24 (z = -b h)
and c_i a fixed combination of the three feedback values of step i. Over up to m inner
steps all delayed values lie in the current buffer, so the whole block is a handful of
array operations (a triangular matrix of powers of A sums the recurrence) instead of some
thirty operations per inner step: the same RK4 numbers up to round-off, fast on one
trajectory in numpy and differentiable in torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .._protocol import DiscreteMap
from .._torch import resolve_device, resolve_dtype
from .._validation import as_float_array, check_positive
from . import integrators
from .base import DynamicalSystem, _to_tensor

# Default inner step: tau / round(tau / 0.1), i.e. 0.1 for the usual integer and tenth delays.
_DEFAULT_INNER_STEP = 0.1

# Time simulated from a constant history before a buffer is handed to the Lyapunov
# analysis: some 30 delays, enough to forget the artificial constant history.
_SETTLE_TIME = 500.0


def rk4_linear_weights(decay: float, h: float) -> tuple[float, float, float, float]:
    """RK4 for dx/dt = -decay x + p(t) as x' = A x + w0 p(0) + w_half p(h/2) + w1 p(h).

    The weights are the classical stage formulas evaluated on unit inputs (the step is
    linear in x and the three values of p), so they are exactly RK4's.
    Returns ``(A, w0, w_half, w1)``.
    """
    def rk4(x: float, p0: float, p_half: float, p1: float) -> float:
        k1 = p0 - decay * x
        k2 = p_half - decay * (x + 0.5 * h * k1)
        k3 = p_half - decay * (x + 0.5 * h * k2)
        k4 = p1 - decay * (x + h * k3)
        return x + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    return rk4(1, 0, 0, 0), rk4(0, 1, 0, 0), rk4(0, 0, 1, 0), rk4(0, 0, 0, 1)


class MackeyGlass(DynamicalSystem):
    """Mackey-Glass delay equation dx/dt = a x(t - tau) / (1 + x(t - tau)^n) - b x(t).

    Parameters
    ----------
    tau : float
        Delay (> 0). tau = 17 gives the standard mildly chaotic attractor (Farmer 1982,
        "Chaotic attractors of an infinite-dimensional dynamical system", Physica D 4).
    a, b : float
        Production and decay rates.
    n : float
        Hill exponent of the feedback.
    delay_steps : int, optional
        Inner RK4 steps per delay, m; the inner step is h = tau / m. Default: the m that
        makes h closest to 0.1 (m = 170 and h = 0.1 for tau = 17). Sampling steps ``dt`` must
        be whole multiples of h.

    Notes
    -----
    ``dim`` is 1: ``simulate`` records x(t). An initial state of shape (1,) or (B, 1) is a
    constant history on [-tau, 0] (default 1.2, the usual choice); an array of
    :attr:`history_length` = 2m + 1 values (or (B, 2m + 1)) is a full history at the times
    :attr:`history_times` (oldest first), such as a state of :meth:`as_discrete_map`.

    The delay equation has no finite-dimensional vector field, so ``rhs`` and ``jacobian``
    take the delayed value explicitly: ``rhs(x, x_delayed)`` and ``jacobian(x, x_delayed)``
    (the 1 x 2 matrix of partial derivatives). :meth:`as_discrete_map` works on the whole
    history buffer (dimension 2m + 1).

    Leading Lyapunov exponent for tau = 17 about 0.006-0.009 per time unit (SPEC section 1);
    ``lyapunov_reference`` is None because published values differ in the first digit.
    Integrated by RK4 (``method=None`` or ``"rk4"``) on the history grid, fourth order in h;
    ``substeps`` does not apply (refine the inner step with ``delay_steps``).
    """

    default_dt = 1.0
    lyapunov_reference = None
    is_map = False
    is_delay = True
    dim = 1

    def __init__(self, tau: float = 17.0, a: float = 0.2, b: float = 0.1, n: float = 10,
                 *, delay_steps: int | None = None):
        check_positive(tau, "tau")
        check_positive(n, "n")
        for name, value in (("a", a), ("b", b)):
            if not np.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
        if delay_steps is None:
            steps = _default_delay_steps(tau)
        else:
            steps = check_positive(delay_steps, "delay_steps", integer=True)
        self.tau, self.a, self.b, self.n = tau, a, b, n
        self.delay_steps = delay_steps
        self._steps_per_delay = int(steps)
        # Powers of A per (block length, dtype, device), built on first use.
        self._cache: dict[tuple, Any] = {}

    # ------------------------------------------------------------------ discretisation
    @property
    def steps_per_delay(self) -> int:
        """m, the number of inner steps per delay."""
        return self._steps_per_delay

    @property
    def inner_step(self) -> float:
        """h = tau / m."""
        return self.tau / self._steps_per_delay

    @property
    def history_length(self) -> int:
        """2m + 1: values of the history buffer, spaced h/2 over [t - tau, t]."""
        return 2 * self._steps_per_delay + 1

    @property
    def history_times(self) -> np.ndarray:
        """Times of the buffer entries relative to now: -tau, -tau + h/2, ..., 0."""
        return -self.tau + 0.5 * self.inner_step * np.arange(self.history_length)

    def _inner_steps_per(self, dt: float) -> int:
        """Number of inner steps in ``dt``; ``dt`` must be a whole multiple of h."""
        h = self.inner_step
        ratio = dt / h
        count = round(ratio)
        if count < 1 or abs(ratio - count) > 1e-9 * max(1.0, ratio):
            examples = ", ".join(f"{j * h:.6g}" for j in (1, 2, 5, 10))
            raise ValueError(
                f"dt={dt!r} is not a whole multiple of the inner step h = tau / m = "
                f"{self.tau!r} / {self._steps_per_delay} = {h:.10g}; allowed are dt = j * h "
                f"for integers j >= 1 (e.g. {examples}). Choose delay_steps so that "
                "tau / delay_steps divides the dt you need"
            )
        return count

    # ------------------------------------------------------------------ vector field
    def _feedback(self, x_delayed):
        """p(y) = a y / (1 + y^n) on floats, arrays or tensors alike."""
        return self.a * x_delayed / (1.0 + x_delayed**self.n)

    def _feedback_slope(self, x_delayed):
        """p'(y) = a (1 + (1 - n) y^n) / (1 + y^n)^2."""
        power = x_delayed**self.n
        return self.a * (1.0 + (1.0 - self.n) * power) / (1.0 + power) ** 2

    def rhs(self, x: Any, x_delayed: Any):
        """dx/dt given x(t) and x(t - tau) (broadcasting arrays or tensors of any shape).

        Returns the type it was given (a tensor for tensors, else a numpy array)."""
        if isinstance(x, torch.Tensor) or isinstance(x_delayed, torch.Tensor):
            x, x_delayed = torch.broadcast_tensors(_to_tensor(x), _to_tensor(x_delayed))
        else:
            x, x_delayed = np.broadcast_arrays(np.asarray(x, dtype=np.float64),
                                               np.asarray(x_delayed, dtype=np.float64))
        return self._feedback(x_delayed) - self.b * x

    def jacobian(self, x: Any, x_delayed: Any):
        """Partial derivatives of :meth:`rhs`: shape (*broadcast shape, 2) holding
        [d rhs / d x, d rhs / d x_delayed] (for x of shape (..., 1), the (..., 1, 2) Jacobian
        of the right-hand side with respect to (x(t), x(t - tau)))."""
        if isinstance(x, torch.Tensor) or isinstance(x_delayed, torch.Tensor):
            x, x_delayed = torch.broadcast_tensors(_to_tensor(x), _to_tensor(x_delayed))
            return torch.stack([torch.full_like(x, -float(self.b)),
                                self._feedback_slope(x_delayed)], -1)
        x, x_delayed = np.broadcast_arrays(np.asarray(x, dtype=np.float64),
                                           np.asarray(x_delayed, dtype=np.float64))
        return np.stack([np.full_like(x, -float(self.b)), self._feedback_slope(x_delayed)], -1)

    # ------------------------------------------------------------------ initial states
    def default_initial_state(self) -> np.ndarray:
        """The constant history x = 1.2 on [-tau, 0] (shape (1,))."""
        return np.array([1.2])

    def _check_x0(self, x0, seed):
        if x0 is None:
            return super()._check_x0(x0, seed)
        x0 = as_float_array(x0, "x0", ndim=(1, 2))
        batched = x0.ndim == 2
        x0 = x0 if batched else x0[None]
        if x0.shape[-1] not in (1, self.history_length):
            raise ValueError(
                f"x0 must hold 1 value (a constant history) or a history of "
                f"history_length = 2m + 1 = {self.history_length} values per trajectory for "
                f"{self!r}, got shape {x0.shape if batched else x0.shape[1:]}"
            )
        if x0.shape[0] == 0:
            raise ValueError("x0 holds no initial state (batch of size 0)")
        return x0, batched

    def _histories(self, x0: np.ndarray) -> np.ndarray:
        """(B, 1) constants or (B, 2m + 1) histories -> (B, 2m + 1) history buffers."""
        if x0.shape[-1] == 1:
            return np.repeat(x0, self.history_length, axis=-1)
        return np.array(x0, dtype=np.float64)

    def settled_histories(self, n: int, seed: int | None = None,
                          settle_time: float = _SETTLE_TIME) -> np.ndarray:
        """History buffers (n, 2m + 1) on the attractor: random constant histories
        (:meth:`sample_initial_states`) simulated for ``settle_time`` (rounded to inner
        steps)."""
        histories = self._histories(self.sample_initial_states(n, seed))
        n_inner = max(1, round(settle_time / self.inner_step))
        histories, _ = self._integrate(histories, n_inner, self._state_forcing)
        return histories

    # ------------------------------------------------------------------ the scheme
    def _powers(self, n_inner: int, like) -> tuple:
        """A^1..A^n (n,) and the upper-triangular T[j, l] = A^(l - j) (n, n), as ``like``'s
        array type, so that x_{1..n} = x_0 A^{1..n} + c @ T sums the RK4 recurrence."""
        is_numpy = isinstance(like, np.ndarray)
        key = (n_inner, None if is_numpy else like.dtype, None if is_numpy else like.device)
        if key not in self._cache:
            growth = rk4_linear_weights(self.b, self.inner_step)[0]
            exponents = np.arange(n_inner)
            lag = exponents[None, :] - exponents[:, None]
            triangle = np.where(lag >= 0, growth ** np.maximum(lag, 0), 0.0)
            powers = growth ** (exponents + 1.0)
            if not is_numpy:
                powers = torch.as_tensor(powers, dtype=like.dtype, device=like.device)
                triangle = torch.as_tensor(triangle, dtype=like.dtype, device=like.device)
            self._cache[key] = (powers, triangle)
        return self._cache[key]

    def _state_forcing(self, delayed):
        """Feedback p(x(t - tau)) on a block of delayed values (..., 2n + 1)."""
        return self._feedback(delayed)

    def _tangent_forcing(self, delayed):
        """Rows (B, 1 + k, 2n + 1): row 0 the state's feedback p(y), rows 1.. the tangent
        vectors' forcing p'(y) w(t - tau) of the variational equation
        dw/dt = -b w(t) + p'(x(t - tau)) w(t - tau)."""
        state = delayed[:, :1]
        tangent = self._feedback_slope(state) * delayed[:, 1:]
        joined = (self._feedback(state), tangent)
        if isinstance(delayed, np.ndarray):
            return np.concatenate(joined, 1)
        return torch.cat(joined, 1)

    def _block(self, histories, n_inner: int, forcing: Callable):
        """``n_inner`` <= m RK4 inner steps of buffers (..., 2m + 1) (time last).

        Returns the new buffers and the values at the n_inner full steps (..., n_inner).
        """
        is_numpy = isinstance(histories, np.ndarray)
        h, b = self.inner_step, self.b
        _, w0, w_half, w1 = rk4_linear_weights(b, h)
        # Every delayed argument of this block lies in the buffer: t - tau + j h/2, j <= 2n.
        p = forcing(histories[..., : 2 * n_inner + 1])
        p_start, p_half, p_end = p[..., 0:-1:2], p[..., 1::2], p[..., 2::2]
        increments = w0 * p_start + w_half * p_half + w1 * p_end
        powers, triangle = self._powers(n_inner, histories)
        x0 = histories[..., -1:]
        x_end = x0 * powers + increments @ triangle
        x_start = (np.concatenate if is_numpy else torch.cat)([x0, x_end[..., :-1]], -1)
        # Hermite midpoint: f(t) - f(t + h) = p_start - p_end - b (x_start - x_end).
        slope_change = p_start - p_end - b * (x_start - x_end)
        x_mid = 0.5 * (x_start + x_end) + (0.125 * h) * slope_change
        stack = np.stack if is_numpy else torch.stack
        new = stack([x_mid, x_end], -1).reshape(*x_end.shape[:-1], 2 * n_inner)
        joined = (histories[..., 2 * n_inner:], new)
        histories = np.concatenate(joined, -1) if is_numpy else torch.cat(joined, -1)
        return histories, x_end

    def _integrate(self, histories, n_inner: int, forcing: Callable,
                   record_every: int | None = None, t0: float = 0.0, check: bool = True):
        """Advance buffers (..., 2m + 1) by ``n_inner`` inner steps in blocks of at most m.

        With ``record_every``, also return x at every ``record_every``-th inner step
        (..., n_inner // record_every); otherwise None. ``check`` tests every block for a
        blow-up (off inside maps: data-dependent control flow breaks ``torch.func`` tangents,
        and the Lyapunov code checks the states itself).
        """
        m = self._steps_per_delay
        recorded = []
        done = 0
        while done < n_inner:
            block = min(m, n_inner - done)
            # A blow-up overflows before it is detected; the check below reports it instead.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                histories, x_end = self._block(histories, block, forcing)
            if check:
                _check_block(x_end, t0 + done * self.inner_step, self.inner_step)
            if record_every is not None:
                # Inner steps done + 1 .. done + block; keep those divisible by record_every.
                first = (record_every - done % record_every) - 1
                recorded.append(x_end[..., first::record_every])
            done += block
        if record_every is None:
            return histories, None
        is_numpy = isinstance(histories, np.ndarray)
        return histories, (np.concatenate(recorded, -1) if is_numpy else torch.cat(recorded, -1))

    # ------------------------------------------------------------------ simulation
    def _check_scheme(self, method, substeps) -> None:
        if method not in (None, "rk4"):
            raise ValueError(
                f"MackeyGlass integrates with RK4 on its history grid (method=None or 'rk4'), "
                f"got method={method!r}"
            )
        if substeps not in (None, 1):
            raise ValueError(
                "substeps does not apply to MackeyGlass: its inner step is tau / delay_steps "
                f"(now {self.inner_step:.6g}); pass delay_steps=... to refine it"
            )

    def _simulate(self, x0: np.ndarray, n_steps: int, dt, transient: int, *, method, substeps,
                  rtol, atol, device, dtype) -> torch.Tensor:
        self._check_scheme(method, substeps)
        dt = self._check_dt(dt)
        n_inner = self._inner_steps_per(dt)
        histories = self._histories(x0)
        if not (device.type == "cpu" and dtype == torch.float64):
            histories = torch.as_tensor(histories, dtype=dtype, device=device)
        # On the CPU in float64 everything stays in numpy (lower per-call overhead).
        if transient:
            histories, _ = self._integrate(histories, transient * n_inner, self._state_forcing)
        first = histories[..., -1:]
        if n_steps > 1:
            _, later = self._integrate(histories, (n_steps - 1) * n_inner, self._state_forcing,
                                       record_every=n_inner, t0=transient * dt)
            joined = (first, later)
            values = np.concatenate(joined, -1) if isinstance(first, np.ndarray) \
                else torch.cat(joined, -1)
        else:
            values = first
        values = values[..., None]
        return torch.from_numpy(values) if isinstance(values, np.ndarray) else values

    # ------------------------------------------------------------------ analysis
    def as_discrete_map(self, dt: float | None = None, *, method: str | None = None,
                        substeps: int | None = None, device: Any = "cpu",
                        dtype: Any = torch.float64) -> DiscreteMap:
        """The flow over ``dt`` as a map on history buffers (B, 2m + 1).

        ``step`` is differentiable torch (autodiff gives its exact tangent); the fused
        ``tangent`` runs the same scheme on the state and the tangent vectors together,
        with the variational equation dw/dt = -b w(t) + p'(x(t - tau)) w(t - tau), so it
        is the exact derivative of ``step``. Initial states are buffers of
        :meth:`settled_histories`.
        """
        self._check_parameters()
        self._check_scheme(method, substeps)
        dt = self._check_dt(dt)
        n_inner = self._inner_steps_per(dt)
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, torch.float64)
        use_numpy = device.type == "cpu"

        def step(histories: torch.Tensor) -> torch.Tensor:
            return self._integrate(histories, n_inner, self._state_forcing, check=False)[0]

        def tangent(histories: torch.Tensor, frame: torch.Tensor):
            # Rows: the state's buffer, then the k tangent vectors' buffers (time last).
            stacked = torch.cat([histories.unsqueeze(1), frame.transpose(1, 2)], 1)
            if use_numpy:
                stacked = stacked.numpy()
            stacked, _ = self._integrate(stacked, n_inner, self._tangent_forcing, check=False)
            if use_numpy:
                stacked = torch.from_numpy(stacked)
            return stacked[:, 0], stacked[:, 1:].transpose(1, 2)

        def initial_states(n: int, seed: int | None = None) -> torch.Tensor:
            return torch.as_tensor(self.settled_histories(n, seed), dtype=dtype, device=device)

        # The history buffer has 2m + 1 exponents, all but the leading few strongly negative
        # (tau = 17: one positive, one zero, D_KY about 2): by default the leading four,
        # not 341 that took minutes to compute and said nothing more.
        return DiscreteMap(step=step, dim=self.history_length, time_step=dt, tangent=tangent,
                           initial_states=initial_states, dtype=dtype, device=device,
                           name=type(self).__name__, default_exponents=_DEFAULT_EXPONENTS,
                           orthonormalize_every=max(1, round(0.1 / dt)))


_DEFAULT_EXPONENTS = 4  # exponents of the history map computed unless asked for more


def _default_delay_steps(tau: float) -> int:
    """Inner steps per delay, m: about tau / 0.1, and where possible the least m >= that
    whose step h = tau / m divides the default sampling step 1 (tau = 17.05: m = 341, h =
    0.05, where m = 170 left the default dt = 1 unusable); else round(tau / 0.1)."""
    for per_unit in range(round(1 / _DEFAULT_INNER_STEP), 101):
        steps = per_unit * tau
        if steps >= 1 and abs(steps - round(steps)) <= 1e-9 * steps:
            return round(steps)
    return max(1, round(tau / _DEFAULT_INNER_STEP))


def _check_block(x_end, t_start: float, h: float) -> None:
    """Raise :class:`DivergenceError` naming the first inner step of a block (values
    (..., n) at t_start + h, t_start + 2h, ...) where x is non-finite or explodes."""
    if isinstance(x_end, np.ndarray):
        bad = ~(np.abs(x_end) < integrators.blowup_limit())  # NaN compares False: counted as bad
        flags = bad.reshape(-1, bad.shape[-1]).any(0)
        first_bad = int(np.argmax(flags)) if flags.any() else None
    else:
        bad = ~(x_end.abs() < integrators.blowup_limit())
        flags = bad.reshape(-1, bad.shape[-1]).any(0)
        first_bad = int(torch.nonzero(flags)[0, 0]) if bool(flags.any()) else None
    if first_bad is not None:
        integrators.check_state(torch.tensor([math.nan]), t_start + (first_bad + 1) * h)


__all__ = ["MackeyGlass", "rk4_linear_weights"]
