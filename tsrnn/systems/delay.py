"""The Mackey-Glass delay differential equation.

Mackey & Glass (1977), "Oscillation and chaos in physiological control systems", Science 197:

    dx/dt = a x(t - tau) / (1 + x(t - tau)^n) - b x(t)

Its state at time t is the whole history segment x on [t - tau, t], so a simulator keeps a
history buffer. Here the buffer holds x on a grid of spacing h/2 over [t - tau, t]
(2m + 1 values, h = tau / m the inner step), and each inner step is classical RK4 whose
delayed arguments x(t - tau), x(t - tau + h/2), x(t - tau + h) are all read off that grid.
The new half-step value comes from the cubic Hermite interpolant of the step,

    x(t + h/2) = (x(t) + x(t + h)) / 2 + h (f(t) - f(t + h)) / 8,

with f the right-hand side at both ends. Because tau is a whole number of inner steps, the
derivative jumps of the solution (at t = 0, tau, 2 tau, ...) fall on grid points and never
inside a step, so the scheme keeps RK4's fourth order (the Hermite value adds a local
error O(h^4) to a delayed argument, hence O(h^5) to a step): the error at a fixed time falls
16-fold per halving of h (``tests/systems/test_mackey_glass.py`` checks this).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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

# Time (in units of t) simulated from a constant history before a buffer is handed to the
# Lyapunov analysis: some 30 delays, enough to forget the artificial constant history.
_SETTLE_TIME = 500.0


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
    Integrated by RK4 (``method=None`` or ``"rk4"``); ``substeps`` does not apply (refine the
    inner step with ``delay_steps``).
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
            steps = max(1, round(tau / _DEFAULT_INNER_STEP))
        else:
            steps = check_positive(delay_steps, "delay_steps", integer=True)
        self.tau, self.a, self.b, self.n = tau, a, b, n
        self.delay_steps = delay_steps
        self._steps_per_delay = int(steps)

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
    def _field(self, x, x_delayed):
        """a x_tau / (1 + x_tau^n) - b x on floats, arrays or tensors alike."""
        return self.a * x_delayed / (1.0 + x_delayed**self.n) - self.b * x

    def _feedback_slope(self, x_delayed):
        """d/dy [a y / (1 + y^n)] = a (1 + (1 - n) y^n) / (1 + y^n)^2."""
        power = x_delayed**self.n
        return self.a * (1.0 + (1.0 - self.n) * power) / (1.0 + power) ** 2

    def rhs(self, x: Any, x_delayed: Any):
        """dx/dt given x(t) and x(t - tau) (broadcasting arrays or tensors of any shape).

        Returns the type it was given (a tensor for tensors, else a numpy array)."""
        if isinstance(x, torch.Tensor) or isinstance(x_delayed, torch.Tensor):
            x, x_delayed = torch.broadcast_tensors(_to_tensor(x), _to_tensor(x_delayed))
            return self._field(x, x_delayed)
        return self._field(np.asarray(x, dtype=np.float64),
                           np.asarray(x_delayed, dtype=np.float64))

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
        (:meth:`sample_initial_states`) simulated for about ``settle_time``."""
        histories = self._histories(self.sample_initial_states(n, seed))
        steps = self._steps_per_delay
        for _ in range(max(1, round(settle_time / self.tau))):
            histories = self._advance_array(histories, steps, self._field, np.concatenate,
                                            np.stack)
        integrators.check_state(torch.from_numpy(histories[:, -1]), settle_time)
        return histories

    # ------------------------------------------------------------------ the scheme
    def _inner_steps(self, history: Sequence, n_inner: int, field: Callable) -> list:
        """``n_inner`` RK4 steps from a buffer of 2m + 1 values spaced h/2 (oldest first).

        ``history[j]`` is x(t - tau + j h/2): a float, or an array / tensor for a batch.
        Returns the 2 ``n_inner`` new values x(t + h/2), x(t + h), x(t + 3h/2), ...
        """
        size = self.history_length
        h = self.inner_step
        new: list = []

        def value(j: int):
            return history[j] if j < size else new[j - size]

        x = history[size - 1]
        k1 = field(x, history[0])
        for i in range(n_inner):
            # Delayed arguments at t_i - tau, + h/2, + h: grid indices 2i, 2i + 1, 2i + 2.
            delayed_half, delayed_end = value(2 * i + 1), value(2 * i + 2)
            k2 = field(x + (0.5 * h) * k1, delayed_half)
            k3 = field(x + (0.5 * h) * k2, delayed_half)
            k4 = field(x + h * k3, delayed_end)
            x_end = x + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)
            f_end = field(x_end, delayed_end)
            # Cubic Hermite midpoint from the values and slopes at both ends.
            new.append(0.5 * (x + x_end) + (0.125 * h) * (k1 - f_end))
            new.append(x_end)
            x, k1 = x_end, f_end  # f at the end is the next step's first stage
        return new

    def _advance_array(self, histories, n_inner: int, field: Callable, concatenate, stack):
        """Advance buffers (B, 2m + 1, ...) by ``n_inner`` inner steps; numpy or torch."""
        columns = histories.swapaxes(0, 1) if isinstance(histories, np.ndarray) \
            else histories.transpose(0, 1)
        new = self._inner_steps(columns, n_inner, field)
        size = self.history_length
        if 2 * n_inner >= size:
            return stack(new[-size:], 1)
        return concatenate([histories[:, 2 * n_inner:], stack(new, 1)], 1)

    def _tangent_field(self, concatenate):
        """The right-hand side on stacked rows (B, 1 + k): row 0 the state, rows 1.. tangent
        vectors w with dw/dt = -b w + slope(x_tau) w_tau (the variational equation)."""
        def field(x, x_delayed):
            state, delayed = x[:, :1], x_delayed[:, :1]
            power = delayed**self.n
            value = self.a * delayed / (1.0 + power) - self.b * state
            slope = self.a * (1.0 + (1.0 - self.n) * power) / (1.0 + power) ** 2
            return concatenate([value, slope * x_delayed[:, 1:] - self.b * x[:, 1:]], 1)
        return field

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
        if histories.shape[0] == 1 and device.type == "cpu" and dtype == torch.float64:
            history = [float(v) for v in histories[0]]
            values = self._simulate_scalar(history, n_steps, dt, n_inner, transient)
            return torch.from_numpy(values)[None, :, None]
        if device.type == "cpu" and dtype == torch.float64:
            # numpy's per-call overhead is several times lower than torch's on small arrays.
            concatenate, stack, check = np.concatenate, np.stack, _check_numpy
        else:
            histories = torch.as_tensor(histories, dtype=dtype, device=device)
            concatenate, stack, check = torch.cat, torch.stack, integrators.check_state
        for i in range(transient):
            histories = self._advance_array(histories, n_inner, self._field, concatenate, stack)
            if (i + 1) % 256 == 0 or i == transient - 1:
                check(histories[:, -1], (i + 1) * dt)
        recorded = [histories[:, -1]]
        for i in range(1, n_steps):
            histories = self._advance_array(histories, n_inner, self._field, concatenate, stack)
            recorded.append(histories[:, -1])
            if i % 256 == 0 or i == n_steps - 1:
                check(histories[:, -1], (transient + i) * dt)
        values = stack(recorded, 1)[..., None]
        return torch.from_numpy(values) if isinstance(values, np.ndarray) else values

    def _simulate_scalar(self, history: list, n_steps: int, dt: float, n_inner: int,
                         transient: int) -> np.ndarray:
        """One trajectory on Python floats: the same scheme without any array overhead."""
        size = self.history_length
        field = self._field
        recorded = []
        for i in range(transient + n_steps):
            if i > 0:
                history = (history + self._inner_steps(history, n_inner, field))[-size:]
            if i >= transient:
                recorded.append(history[-1])
            if (i + 1) % 256 == 0 or i == transient + n_steps - 1:
                _check_numpy(np.asarray(history[-1]), i * dt)
        return np.array(recorded)

    # ------------------------------------------------------------------ analysis
    def as_discrete_map(self, dt: float | None = None, *, method: str | None = None,
                        substeps: int | None = None, device: Any = "cpu",
                        dtype: Any = torch.float64) -> DiscreteMap:
        """The flow over ``dt`` as a map on history buffers (B, 2m + 1).

        ``step`` is differentiable torch (autodiff gives its exact tangent); the fused
        ``tangent`` runs the same scheme on the state and the tangent vectors together,
        with the variational equation dw/dt = -b w(t) + slope(x(t - tau)) w(t - tau), so it
        is the exact derivative of ``step``. Initial states are buffers of
        :meth:`settled_histories`.
        """
        self._check_scheme(method, substeps)
        dt = self._check_dt(dt)
        n_inner = self._inner_steps_per(dt)
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, torch.float64)
        use_numpy = device.type == "cpu"
        concatenate = np.concatenate if use_numpy else torch.cat
        stack = np.stack if use_numpy else torch.stack
        tangent_field = self._tangent_field(concatenate)

        def step(histories: torch.Tensor) -> torch.Tensor:
            return self._advance_array(histories, n_inner, self._field, torch.cat, torch.stack)

        def tangent(histories: torch.Tensor, frame: torch.Tensor):
            stacked = torch.cat([histories.unsqueeze(-1), frame], -1)  # (B, 2m + 1, 1 + k)
            if use_numpy:
                stacked = stacked.numpy()
            stacked = self._advance_array(stacked, n_inner, tangent_field, concatenate, stack)
            if use_numpy:
                stacked = torch.from_numpy(np.ascontiguousarray(stacked))
            return stacked[..., 0], stacked[..., 1:]

        def initial_states(n: int, seed: int | None = None) -> torch.Tensor:
            return torch.as_tensor(self.settled_histories(n, seed), dtype=dtype, device=device)

        return DiscreteMap(step=step, dim=self.history_length, time_step=dt, tangent=tangent,
                           initial_states=initial_states, dtype=dtype, device=device,
                           name=type(self).__name__)


def _check_numpy(values: np.ndarray, t: float) -> None:
    if not np.all(np.abs(values) < 1e150):  # NaN fails this test too
        integrators.check_state(torch.as_tensor(values), t)


__all__ = ["MackeyGlass"]
