"""Base classes of the simulators: flows, maps, and what every system shares.

A system is a small object holding its parameters. It knows its dimension, a default
sampling step, a literature Lyapunov spectrum where one exists, and how to simulate itself.
Flows give their right-hand side and its analytic Jacobian; maps give one step and its
Jacobian. Everything is vectorised over a leading batch dimension and computed in torch,
so that a batch of trajectories runs on a GPU as readily as one trajectory on the CPU.

Low-dimensional flows write their vector field once, in *component form*:
``field(x, y, z) -> (dx, dy, dz)`` using only arithmetic and the functions of
:mod:`tsrnn.systems._math`. The same code then evaluates on torch tensors (batched), on
numpy arrays and on Python floats (the fast path for one trajectory on the CPU).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import math
import numbers
from typing import Any

import numpy as np
import torch

from .._protocol import DiscreteMap
from .._torch import resolve_device, resolve_dtype, torch_generator
from .._validation import (
    as_float_array,
    check_bool,
    check_finite,
    check_in_range,
    check_option,
    check_positive,
    warn,
)
from . import integrators

# Automatic fixed-step substeps per sample above which simulate warns (see _resolve_integration).
_MANY_SUBSTEPS = 10_000


def _to_tensor(x: Any, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(dtype=dtype or x.dtype, device=device or x.device)
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype or torch.float64,
                           device=device)


def _stack_rows(rows, like: torch.Tensor) -> torch.Tensor:
    """Stack a nested tuple of entries (tensors or floats) into a (..., d, d) tensor."""
    shape = like.shape
    entries = [
        torch.stack([
            v if isinstance(v, torch.Tensor) else torch.full(shape, float(v), dtype=like.dtype,
                                                             device=like.device)
            for v in row
        ], -1)
        for row in rows
    ]
    return torch.stack(entries, -2)


class _LiteratureSpectrum:
    """The published Lyapunov spectrum of a system class: read on the class, as published;
    read on a system, only when its parameters are the canonical ones the literature used
    (None otherwise: Lorenz63(rho=10) has a stable fixed point, not 0.9056)."""

    def __init__(self, value: tuple[float, ...] | None):
        self.value = value

    def __get__(self, system, owner=None):
        if system is None or self.value is None:
            return self.value
        return self.value if system._has_canonical_parameters() else None


class DynamicalSystem:
    """What every simulator shares: parameters, dimension, initial states, simulation.

    Subclasses set the class attributes below and take their parameters as keyword arguments
    with canonical defaults; each parameter is stored under its own name.

    Attributes
    ----------
    default_dt : float
        Sampling step used when ``simulate`` is given ``dt=None`` (1 for maps).
    lyapunov_reference : tuple of float or None
        Lyapunov spectrum from the literature (per time unit for flows, per step for maps),
        for the canonical parameters: None for a system built with other values.
    is_map : bool
        True for discrete-time systems.
    phase_coordinates : tuple of int
        Coordinates that are angles advancing without bound (the forcing phase of a forced
        oscillator made autonomous). Their values grow with time, so a trajectory never
        returns to them: data for reconstruction observe such an angle as its cosine and
        sine (``tsrnn.datasets.simulate_splits(..., angles="circle")``).
    """

    default_dt: float = 1.0
    lyapunov_reference = _LiteratureSpectrum(None)
    is_map: bool = False
    phase_coordinates: tuple[int, ...] = ()
    # Scale of the random perturbation added to the default initial state for a given seed.
    initial_perturbation: float = 0.1

    # ------------------------------------------------------------------ parameters
    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _checked_init(cls.__init__)
        reference = cls.__dict__.get("lyapunov_reference")
        if reference is None or isinstance(reference, tuple):
            if "lyapunov_reference" in cls.__dict__:
                cls.lyapunov_reference = _LiteratureSpectrum(reference)

    def _has_canonical_parameters(self) -> bool:
        """Whether every parameter has its default (canonical) value."""
        signature = inspect.signature(type(self).__init__)
        for name, value in self.get_params().items():
            default = signature.parameters[name].default
            if isinstance(default, numbers.Real) and not isinstance(default, bool):
                try:
                    if not math.isclose(float(value), float(default), rel_tol=1e-12,
                                        abs_tol=1e-15):
                        return False
                except (TypeError, ValueError):
                    return False
            elif not np.array_equal(np.asarray(value, dtype=object),
                                    np.asarray(default, dtype=object)):
                return False
        return True

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p.name for p in signature.parameters.values()
                if p.name != "self" and p.kind in kinds]

    def _check_parameters(self) -> None:
        """Numeric parameters must be finite numbers: NaN would only surface as a 'diverged'
        simulation, and a string as a TypeError deep inside the vector field."""
        signature = inspect.signature(type(self).__init__)
        for name in self._param_names():
            default = signature.parameters[name].default
            if isinstance(default, bool) or not isinstance(default, numbers.Real):
                continue  # arrays, options and the like are checked by their system
            value = getattr(self, name, None)
            if isinstance(value, np.ndarray | torch.Tensor) and value.ndim == 0:
                value = value.item()  # a 0-d array is one number
            if isinstance(value, np.ndarray | torch.Tensor | list | tuple):
                # Was numpy's "truth value of an array is ambiguous" from inside the field.
                raise ValueError(
                    f"{name} must be a finite number, got {len(value)} values (a "
                    f"{type(value).__name__}); a system has one value per parameter (for a "
                    f"parameter sweep build one {type(self).__name__} per value)"
                )
            check_in_range(value, name, -math.inf, math.inf)

    def get_params(self) -> dict[str, Any]:
        """The parameters this system was built with, by name."""
        return {name: getattr(self, name) for name in self._param_names()}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={_short(v)}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    @property
    def dim(self) -> int:
        """Dimension of the state."""
        raise NotImplementedError

    # ------------------------------------------------------------------ initial states
    def default_initial_state(self) -> np.ndarray:
        """A state on or near the attractor (shape (dim,))."""
        return np.ones(self.dim)

    def sample_initial_states(self, n: int, seed: int | None = None) -> np.ndarray:
        """``n`` initial states: the default state plus a seeded perturbation, shape (n, dim).

        Relative perturbation of size :attr:`initial_perturbation` (scaled by the magnitude of
        the default state), so that different seeds give different trajectories that still
        reach the attractor after a short transient.
        """
        n = check_positive(n, "n", integer=True)
        rng = np.random.default_rng(_check_seed(seed))
        base = self.default_initial_state()
        scale = self.initial_perturbation * np.maximum(np.abs(base), 1.0)
        return base + scale * rng.standard_normal((n, self.dim))

    # ------------------------------------------------------------------ simulation
    def _check_x0(self, x0, seed):
        if x0 is None:
            if seed is None:
                return self.default_initial_state()[None], False
            return self.sample_initial_states(1, seed), False
        x0 = as_float_array(x0, "x0", ndim=(1, 2))
        batched = x0.ndim == 2
        x0 = x0 if batched else x0[None]
        if x0.shape[-1] != self.dim:
            raise ValueError(
                f"x0 must have {self.dim} entries per state for {type(self).__name__}, "
                f"got shape {x0.shape if batched else x0.shape[1:]}"
            )
        if x0.shape[0] == 0:
            raise ValueError("x0 holds no initial state (batch of size 0)")
        return x0, batched

    def _check_dt(self, dt):
        if dt is None:
            return float(self.default_dt)
        return float(check_positive(dt, "dt"))

    def simulate(self, n_steps: int, dt: float | None = None, x0: Any = None,
                 transient: int = 0, seed: int | None = None, noise: float = 0.0, *,
                 method: str | None = None, substeps: int | None = None,
                 rtol: float = 1e-9, atol: float = 1e-12, max_steps: int | None = None,
                 device: Any = "cpu", dtype: Any = torch.float64,
                 return_tensor: bool = False):
        """Simulate a trajectory (or a batch of them).

        Parameters
        ----------
        n_steps : int
            Number of recorded states. Row 0 is the state after the transient.
        dt : float, optional
            Sampling step; ``None`` uses :attr:`default_dt`. Maps take no ``dt``. The
            fixed-step methods integrate with steps no longer than the default one (a
            ``dt`` above :attr:`default_dt` is split into substeps), so a coarse sampling
            keeps the default accuracy, as in dysts.
        x0 : array (dim,) or (B, dim), optional
            Initial state(s). ``None``: the default initial state, perturbed randomly when a
            ``seed`` is given. A 2-D ``x0`` simulates a batch and returns (B, n_steps, dim).
        transient : int
            Number of sampling steps simulated and discarded before recording.
        seed : int, optional
            Seeds the random initial state and the observation noise.
        noise : float
            Standard deviation of additive Gaussian observation noise, relative to the
            standard deviation of each recorded dimension over the ``n_steps`` recorded
            states of each trajectory (0.05 means 5% noise), so it needs ``n_steps >= 2``;
            a dimension that stays constant gets none. The dynamics themselves stay
            deterministic. The noise is drawn on ``device``: a seed gives the same initial
            states and clean trajectory on the CPU and a GPU, but other noise draws
            (:func:`tsrnn.datasets.simulate_splits` draws its noise on the CPU).
        method : str, optional
            Integrator for flows (see :mod:`tsrnn.systems.integrators`); default per system.
        substeps : int, optional
            Fixed-step methods take this many steps of ``dt / substeps`` per ``dt``.
            Default: the system's (1 for the ODEs, whose ``default_dt`` is an accurate
            step), or for a longer ``dt`` enough that no step is longer than ``default_dt /
            default_substeps`` (so 10 for Lorenz-63 at dt 0.1). Pass it to choose
            the integration step yourself (``substeps=1``: the step is ``dt``; with the
            default ``"rk8"``, Lorenz-63's relative error after one time unit is 3e-7 at
            0.05, 1e-4 at 0.1 and 6e-2 at 0.2).
        rtol, atol : float
            Tolerances of the adaptive methods ``"dopri5"`` and ``"dop853"``.
        max_steps : int, optional
            At most this many steps of an adaptive method for the transient and again for
            the recorded run. Default: 100 per :attr:`default_dt` of simulated time (at
            least 10 per ``dt``) plus 10,000; at rtol 1e-12 Lorenz-63 takes 7 per
            default_dt with ``"dopri5"``.
            A solution that grows without bound but stays finite makes the adaptive step
            ever shorter; this turns such a run into a :class:`DivergenceError` instead of
            a computation that never ends.
        device, dtype
            Where and in which precision to compute (float64 on the CPU by default).
        return_tensor : bool
            Return a torch tensor on ``device`` instead of a numpy array.

        Returns
        -------
        array (n_steps, dim), or (B, n_steps, dim) for a 2-D ``x0``.

        Raises
        ------
        ValueError
            For bad arguments. :class:`tsrnn.exceptions.DivergenceError` if the trajectory
            blows up; the message names the time.
        """
        n_steps = check_positive(n_steps, "n_steps", integer=True)
        transient = check_positive(transient, "transient", integer=True, allow_zero=True)
        noise = check_positive(noise, "noise", allow_zero=True)
        if noise > 0 and n_steps < 2:
            # The standard deviation of one recorded state is undefined: it was silent NaN.
            raise ValueError(
                f"noise is relative to the standard deviation of each dimension along the "
                f"trajectory, which needs n_steps >= 2; got n_steps={n_steps}"
            )
        seed = _check_seed(seed)
        check_positive(rtol, "rtol")
        check_positive(atol, "atol", allow_zero=True)
        if max_steps is not None:
            check_positive(max_steps, "max_steps", integer=True)
        self._check_parameters()
        x0, batched = self._check_x0(x0, seed)
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, torch.float64)
        if dtype not in (torch.float32, torch.float64):
            # Was: bfloat16 integrated the whole run, then failed in a raw TypeError; float16
            # ran with errors of 0.2 after 100 steps.
            raise ValueError(f"simulate integrates in float32 or float64, not {dtype}")
        tolerances = dict(rtol=rtol, atol=atol)
        if max_steps is not None:
            if "max_steps" not in inspect.signature(self._simulate).parameters:
                raise ValueError(f"max_steps limits adaptive integrators, and "
                                 f"{type(self).__name__} has none")
            tolerances["max_steps"] = max_steps
        with integrators.limited_to(_BLOWUP_FACTOR * (1.0 + float(np.abs(x0).max()))):
            states = self._simulate(x0, n_steps, dt, transient, method=method,
                                    substeps=substeps, device=device, dtype=dtype,
                                    **tolerances)
        if noise > 0:
            generator = torch_generator(None if seed is None else seed + 1, device)
            std = states.std(dim=1, keepdim=True)
            states = states + noise * std * torch.randn(
                states.shape, generator=generator, dtype=states.dtype, device=device
            )
        if not batched:
            states = states[0]
        return states if check_bool(return_tensor, "return_tensor") else states.cpu().numpy()

    def _simulate(self, x0: np.ndarray, n_steps, dt, transient, **options) -> torch.Tensor:
        raise NotImplementedError

    def as_discrete_map(self, dt: float | None = None, **options) -> DiscreteMap:
        """This system seen as one step of length ``dt`` (see :class:`tsrnn.analysis.DiscreteMap`);
        what :func:`tsrnn.analysis.lyapunov_spectrum` works on."""
        raise NotImplementedError

    def _initial_states_fn(self, dtype, device):
        def initial_states(n: int, seed: int | None = None) -> torch.Tensor:
            return torch.as_tensor(self.sample_initial_states(n, seed), dtype=dtype,
                                   device=device)
        return initial_states


# A state this many times larger than the initial state (plus one) is a blow-up: every system
# here has a bounded attractor, and a too-long step of a fixed-step method can grow Lorenz-63
# to 1e95 in ten steps while every number stays finite.
_BLOWUP_FACTOR = 1e10


def _checked_init(init):
    """Wrap a system's ``__init__`` so that an unknown or surplus argument is refused with
    the system's parameter names (Python's TypeError names only the bad keyword)."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        try:
            signature.bind(self, *args, **kwargs)
        except TypeError as error:
            known = [p.name for p in signature.parameters.values() if p.name != "self"]
            unknown = [name for name in kwargs if name not in known]
            hint = ""
            if unknown:
                close = difflib.get_close_matches(unknown[0], known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(
                f"{type(self).__name__}: {error}{hint}; its parameters are "
                f"{', '.join(known)}"
            ) from None
        init(self, *args, **kwargs)
        # At construction, not first at simulate: Lorenz63(rho=nan).rhs() returned NaN.
        # Once, by the most derived class (a subclass's __init__ may call its parent's
        # before it sets its own parameters).
        if type(self).__init__ is __init__:
            self._check_parameters()

    return __init__


def _check_seed(seed: Any) -> int | None:
    """A seed is None or an integer >= 0 (numpy's own errors for others do not name it)."""
    return None if seed is None else check_positive(seed, "seed", integer=True, allow_zero=True)


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array(shape={value.shape})"
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value)


# ====================================================================== flows
class Flow(DynamicalSystem):
    """A continuous-time system dx/dt = f(x).

    Subclasses implement :meth:`_rhs` and :meth:`_jacobian` on (B, dim) tensors, or, for
    low-dimensional systems, :class:`ComponentFlow`'s ``field`` and ``jacobian_rows``.
    """

    default_method: str = "rk8"
    default_substeps: int = 1
    # Time units of the default measured run of a Lyapunov spectrum (as_discrete_map's
    # default_steps): enough for exponents of order 1 (Lorenz-63, Chen, Chua);
    # systems with small exponents, which align and converge slowly, set more.
    lyapunov_duration: float = 50.0

    def _rhs(self, t: float, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _jacobian(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def rhs(self, x: Any, t: float = 0.0):
        """The vector field at ``x`` (shape (..., dim)); returns the type it was given."""
        tensor = _to_tensor(x)
        self._check_state_shape(tensor, "x")
        flat = tensor.reshape(-1, self.dim)
        out = self._rhs(t, flat).reshape(tensor.shape)
        return out if isinstance(x, torch.Tensor) else out.cpu().numpy()

    def jacobian(self, x: Any):
        """The Jacobian df/dx at ``x`` (shape (..., dim)) → (..., dim, dim)."""
        tensor = _to_tensor(x)
        self._check_state_shape(tensor, "x")
        flat = tensor.reshape(-1, self.dim)
        out = self._jacobian(flat).reshape(*tensor.shape, self.dim)
        return out if isinstance(x, torch.Tensor) else out.cpu().numpy()

    def _check_state_shape(self, x: torch.Tensor, name: str) -> None:
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"{name} must have shape (..., {self.dim}) for {type(self).__name__}, "
                f"got {tuple(x.shape)}"
            )

    def _resolve_integration(self, method, substeps, dt: float):
        method = self.default_method if method is None else method
        check_option(method, "method", integrators.METHODS)
        if substeps is None:
            substeps = (self._default_substeps(dt) if method in integrators.FIXED_STEPPERS
                        else self.default_substeps)
            if substeps > _MANY_SUBSTEPS:
                # A dt in the wrong unit (1e6 for 0.01) would otherwise run for hours silently.
                warn(f"dt={dt:g} is {substeps} accurate integration steps of "
                     f"{type(self).__name__} per sample; pass substeps= to take fewer (less "
                     "accurate), or check dt's unit")
        substeps = check_positive(substeps, "substeps", integer=True)
        return method, substeps

    def _default_substeps(self, dt: float) -> int:
        """Fixed-step integration steps per sampling step ``dt`` when none are asked for:
        the system's default, and more for a ``dt`` longer than :attr:`default_dt`, so that
        the integration step never exceeds the accurate one, ``default_dt /
        default_substeps`` (a coarse ``dt`` used as the step itself gave Lorenz-63 a
        relative error of 6e-2 after one time unit at dt = 0.2; dysts too integrates finely
        and samples coarsely)."""
        accurate = self.default_dt / self.default_substeps
        return max(int(self.default_substeps), math.ceil(dt / accurate * (1.0 - 1e-12)))

    def _simulate(self, x0, n_steps, dt, transient, *, method, substeps, rtol, atol,
                  device, dtype, max_steps=None) -> torch.Tensor:
        dt = self._check_dt(dt)
        method, substeps = self._resolve_integration(method, substeps, dt)
        if max_steps is not None and method not in integrators.ADAPTIVE_METHODS:
            raise ValueError(f"max_steps limits the adaptive methods "
                             f"{integrators.ADAPTIVE_METHODS}; method {method!r} takes a fixed "
                             "number of steps")
        fast = self._fast_path(x0, method, device, dtype)
        if fast is not None:
            y = x0[0]
            if transient:
                y = fast(y, dt, transient, substeps=substeps, record=False)
            states = fast(y, dt, n_steps, substeps=substeps, record=True,
                          t0=transient * dt)
            return torch.from_numpy(states)[None]
        y = torch.as_tensor(x0, dtype=dtype, device=device)
        common = dict(method=method, substeps=substeps, rtol=rtol, atol=atol, autonomous=True)
        if transient:
            y = integrators.solve(self._rhs, y, dt, transient, record=False,
                                  max_steps=self._step_budget(max_steps, transient, dt),
                                  **common)
        return integrators.solve(self._rhs, y, dt, n_steps, t0=transient * dt,
                                 max_steps=self._step_budget(max_steps, n_steps - 1, dt),
                                 **common)

    def _step_budget(self, max_steps: int | None, intervals: int, dt: float) -> int:
        """The adaptive methods' step limit over ``intervals`` sampling steps (see
        ``simulate``): 100 per default_dt of time, and 10 per interval for a fine ``dt``
        (every interval takes at least one step to land on the grid)."""
        if max_steps is not None:
            return int(max_steps)
        per_time = 100 * math.ceil(intervals * dt / self.default_dt * (1.0 - 1e-12))
        return 10_000 + max(per_time, 10 * intervals)

    def _fast_path(self, x0, method, device, dtype):
        return None

    def as_discrete_map(self, dt: float | None = None, *, method: str = "rk4",
                        substeps: int | None = None, device: Any = "cpu",
                        dtype: Any = torch.float64) -> DiscreteMap:
        """The flow over one ``dt`` as a map. Its tangent integrates the variational
        equation dQ/dt = J(x) Q with the same fixed-step scheme and steps: ``substeps`` of
        ``dt / substeps`` (by default as in :meth:`simulate`: none longer than
        ``default_dt``).

        The default method is RK4 (``simulate`` defaults to the eighth-order ``"rk8"``):
        exponents need far less accuracy per step than trajectories, and RK4 costs a third.
        """
        self._check_parameters()
        dt = self._check_dt(dt)
        method, substeps = self._resolve_integration(method, substeps, dt)
        if method not in integrators.FIXED_STEPPERS:
            raise ValueError(
                f"as_discrete_map needs a fixed-step method {integrators.FIXED_STEP_METHODS}, "
                f"got {method!r}"
            )
        stepper = integrators.FIXED_STEPPERS[method]
        h = dt / substeps
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, torch.float64)
        dim = self.dim

        def step(x: torch.Tensor) -> torch.Tensor:
            for _ in range(substeps):
                x = stepper(self._rhs, 0.0, x, h)
            return x

        def tangent(x: torch.Tensor, frame: torch.Tensor):
            batch, _, k = frame.shape

            def augmented(t, y):
                state = y[:, :dim]
                vectors = y[:, dim:].reshape(batch, dim, k)
                return torch.cat(
                    [self._rhs(t, state), (self._jacobian(state) @ vectors).reshape(batch, -1)],
                    1,
                )

            y = torch.cat([x, frame.reshape(batch, -1)], 1)
            for _ in range(substeps):
                y = stepper(augmented, 0.0, y, h)
            return y[:, :dim], y[:, dim:].reshape(batch, dim, k)

        return DiscreteMap(step=step, dim=dim, time_step=dt, tangent=tangent,
                           initial_states=self._initial_states_fn(dtype, device),
                           dtype=dtype, device=device, name=type(self).__name__,
                           default_steps=math.ceil(self.lyapunov_duration / dt),
                           orthonormalize_every=max(1, round(0.1 / dt)))


class ComponentFlow(Flow):
    """A low-dimensional flow written once in component form.

    Subclasses define ``field(self, *x)`` returning the tuple of derivatives and
    ``jacobian_rows(self, *x)`` returning the Jacobian as a tuple of rows; entries may be
    numbers. Only arithmetic and :mod:`tsrnn.systems._math` functions may be used, so the
    same code runs on tensors, arrays and floats.
    """

    def field(self, *x):
        raise NotImplementedError

    def jacobian_rows(self, *x):
        raise NotImplementedError

    def _rhs(self, t: float, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.field(*x.unbind(-1)), -1)

    def _jacobian(self, x: torch.Tensor) -> torch.Tensor:
        components = x.unbind(-1)
        return _stack_rows(self.jacobian_rows(*components), components[0])

    def as_discrete_map(self, dt: float | None = None, *, method: str = "rk4",
                        substeps: int | None = None, device: Any = "cpu",
                        dtype: Any = torch.float64) -> DiscreteMap:
        """As :meth:`Flow.as_discrete_map`, with a fused tangent step written in component
        form: (J Q)_i = sum_j J_ij Q_j skips the structural zeros of J and never builds it.
        On the CPU it runs on zero-copy numpy views of the tensors, whose per-call overhead
        is several times lower than torch's for the small arrays of a 3-dimensional flow."""
        dmap = super().as_discrete_map(dt, method=method, substeps=substeps, device=device,
                                       dtype=dtype)
        method, substeps = self._resolve_integration(method, substeps, dmap.time_step)
        h = dmap.time_step / substeps
        a, b, c = integrators.butcher_tableau(method)
        use_numpy = dmap.device.type == "cpu"
        field, jacobian_rows = self.field, self.jacobian_rows

        # Components-first layout inside the step: x is (dim, B) and the frame (dim, k, B),
        # so that every component is a contiguous row and J_ij (B,) broadcasts over k.
        def derivative(x, frame, stack):
            rows = jacobian_rows(*x)
            tangent_rows = []
            for row in rows:
                terms = [entry * frame[j] for j, entry in enumerate(row)
                         if not (isinstance(entry, float | int) and entry == 0)]
                tangent_rows.append(sum(terms) if terms else 0.0 * frame[0])
            return stack(field(*x)), stack(tangent_rows)

        stages = len(c)
        coefficients = [[(j, float(a[s, j])) for j in range(s) if a[s, j] != 0]
                        for s in range(stages)]
        weights = [(j, float(b[j])) for j in range(stages) if b[j] != 0]

        def tangent(x: torch.Tensor, frame: torch.Tensor):
            if use_numpy:
                x = np.ascontiguousarray(x.numpy().T)
                frame = np.ascontiguousarray(frame.numpy().transpose(1, 2, 0))
                stack = np.stack
            else:
                x, frame = x.T.contiguous(), frame.permute(1, 2, 0).contiguous()
                stack = torch.stack
            for _ in range(substeps):
                kx, kq = [], []
                for s in range(stages):
                    if s == 0:
                        fx, fq = derivative(x, frame, stack)
                    else:
                        ix = sum(w * kx[j] for j, w in coefficients[s])
                        iq = sum(w * kq[j] for j, w in coefficients[s])
                        fx, fq = derivative(x + h * ix, frame + h * iq, stack)
                    kx.append(fx)
                    kq.append(fq)
                x = x + h * sum(w * kx[j] for j, w in weights)
                frame = frame + h * sum(w * kq[j] for j, w in weights)
            if use_numpy:
                return (torch.from_numpy(np.ascontiguousarray(x.T)),
                        torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1))))
            return x.T.contiguous(), frame.permute(2, 0, 1).contiguous()

        return dataclasses.replace(dmap, tangent=tangent)

    def _fast_path(self, x0, method, device, dtype):
        if (x0.shape[0] == 1 and method in integrators.FIXED_STEP_METHODS
                and device.type == "cpu" and dtype == torch.float64):
            def run(y, dt, n, **options):
                return integrators.solve_scalar(self.field, y, dt, n, method=method, **options)
            return run
        return None


# ====================================================================== maps
class Map(DynamicalSystem):
    """A discrete-time system x_{n+1} = F(x_n). Subclasses implement ``_step`` and
    ``_jacobian`` on (B, dim) tensors."""

    is_map = True
    default_dt = 1.0
    # Whether ``_step`` also takes numpy arrays, giving the same numbers to the last bit
    # (arithmetic only, no library functions whose rounding may differ): simulations on
    # the CPU then iterate in numpy.
    _numpy_step = False

    def _step(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _jacobian(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def step(self, x: Any):
        """One iteration of the map at ``x`` (shape (..., dim)); returns the type given."""
        tensor = _to_tensor(x)
        Flow._check_state_shape(self, tensor, "x")
        out = self._step(tensor.reshape(-1, self.dim)).reshape(tensor.shape)
        return out if isinstance(x, torch.Tensor) else out.cpu().numpy()

    def jacobian(self, x: Any):
        """The Jacobian dF/dx at ``x`` (shape (..., dim)) → (..., dim, dim)."""
        tensor = _to_tensor(x)
        Flow._check_state_shape(self, tensor, "x")
        out = self._jacobian(tensor.reshape(-1, self.dim)).reshape(*tensor.shape, self.dim)
        return out if isinstance(x, torch.Tensor) else out.cpu().numpy()

    def as_discrete_map(self, dt: float | None = None, *, device: Any = "cpu",
                        dtype: Any = torch.float64) -> DiscreteMap:
        """The map itself, with its analytic Jacobian; one step is one time unit."""
        self._check_parameters()
        self._check_dt(dt)
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, torch.float64)
        return DiscreteMap(step=self._step, dim=self.dim, time_step=1.0,
                           jacobian=self._jacobian,
                           initial_states=self._initial_states_fn(dtype, device),
                           dtype=dtype, device=device, name=type(self).__name__)

    def _check_dt(self, dt):
        if dt is not None and dt != 1:
            raise ValueError(f"{type(self).__name__} is a map: it takes no dt (got dt={dt})")
        return 1.0

    def _simulate(self, x0, n_steps, dt, transient, *, method, substeps, rtol, atol,
                  device, dtype) -> torch.Tensor:
        self._check_dt(dt)
        if method is not None or substeps is not None:
            raise ValueError(f"{type(self).__name__} is a map: method and substeps do not apply")
        advice = "try another initial state or other parameters"
        y = torch.as_tensor(x0, dtype=dtype, device=device)
        if self._numpy_step and y.device.type == "cpu":
            # The same loop on numpy arrays: a step is a few small operations, and numpy
            # pays ~1 µs a call where torch pays ~5 (Henon: 52 -> ~10 µs a step).
            with np.errstate(all="ignore"):  # a blow-up is reported as torch's would be
                return torch.from_numpy(self._iterate(y.numpy().copy(), n_steps, transient,
                                                      advice))
        for i in range(transient):
            y = self._step(y)
            if (i + 1) % 256 == 0 or i == transient - 1:
                integrators.check_state(y, i + 1, "iteration", since=max(0, i - 255),
                                        advice=advice)
        out = y.new_empty((y.shape[0], n_steps, self.dim))
        out[:, 0] = y
        checked = 0
        for i in range(1, n_steps):
            y = self._step(y)
            out[:, i] = y
            if i % 256 == 0 or i == n_steps - 1:
                integrators.check_recorded(out, checked, i + 1, transient, 1.0, "iteration",
                                           advice)
                checked = i + 1
        if n_steps == 1:
            integrators.check_recorded(out, 0, 1, transient, 1.0, "iteration", advice)
        return out

    def _iterate(self, y: np.ndarray, n_steps: int, transient: int, advice: str) -> np.ndarray:
        """``_simulate``'s loop on numpy arrays (for maps whose ``_step`` takes them)."""
        for i in range(transient):
            y = self._step(y)
            if (i + 1) % 256 == 0 or i == transient - 1:
                integrators.check_state(torch.from_numpy(y), i + 1, "iteration",
                                        since=max(0, i - 255), advice=advice)
        out = np.empty((y.shape[0], n_steps, self.dim), dtype=y.dtype)
        out[:, 0] = y
        recorded = torch.from_numpy(out)  # the same memory, for the checks
        checked = 0
        for i in range(1, n_steps):
            y = self._step(y)
            out[:, i] = y
            if i % 256 == 0 or i == n_steps - 1:
                integrators.check_recorded(recorded, checked, i + 1, transient, 1.0,
                                           "iteration", advice)
                checked = i + 1
        if n_steps == 1:
            integrators.check_recorded(recorded, 0, 1, transient, 1.0, "iteration", advice)
        return out


__all__ = ["ComponentFlow", "DynamicalSystem", "Flow", "Map", "check_finite"]
