"""Lyapunov spectra by the Benettin-Shimada-Nagashima QR method, and the Kaplan-Yorke
dimension.

Benettin et al. (1980), "Lyapunov characteristic exponents for smooth dynamical systems and
for Hamiltonian systems", Meccanica 15; Shimada & Nagashima (1979), Prog. Theor. Phys. 61.

A frame Q of k orthonormal tangent vectors is carried along a trajectory, Q <- J(x_n) Q for
maps (and every trained discrete-time model), and through the variational equation
dQ/dt = J(x) Q integrated with the same scheme and step as the state for flows. Every few
steps Q, R = qr(Q) and log|R_ii| is accumulated; lambda_i = sum log|R_ii| / elapsed time.

Here many trajectories run at once as one batch (on the CPU or a GPU): each starts from its
own point, settles onto the attractor, aligns its frame, and is then measured. The spread
of the per-trajectory estimates gives the standard error, and the batch makes the estimate
cheap: the per-step cost of B trajectories is close to that of one.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from .._protocol import DiscreteMap
from .._torch import at_most_threads, resolve_device, resolve_dtype
from .._validation import as_float_array, check_bool, check_option, check_positive, warn
from ..exceptions import DivergenceError

# States times trajectories times exponents up to which the run keeps to one CPU thread.
_SMALL_WORK = 1 << 16


def as_discrete_map(obj: Any, *, dt: float | None = None, dim: int | None = None,
                    device: Any = None, dtype: Any = None, **options) -> DiscreteMap:
    """View a system, a fitted estimator or a torch module as a :class:`DiscreteMap`.

    Parameters
    ----------
    obj : DynamicalSystem, fitted tsrnn estimator, torch.nn.Module, callable or DiscreteMap
        A torch module or callable must map a (B, dim) tensor of states to the next states.
        It may have a ``jacobian(x) -> (B, dim, dim)`` method; otherwise its tangent map is
        taken by forward-mode autodiff.
    dt : float, optional
        For systems, the step of the map (the system's ``default_dt`` when None). For modules
        and callables, the time one step stands for (exponents are then per time unit).
    dim : int, optional
        State dimension of a module or callable when it cannot be inferred.
    options
        Passed to the system's or estimator's ``as_discrete_map``.
    """
    if isinstance(obj, DiscreteMap):
        return obj
    if dt is not None:  # one check for every kind of object (a negative dt flips signs)
        dt = check_positive(dt, "dt")
    if isinstance(obj, type):  # Lorenz63 for Lorenz63(): Python's error names no cause
        raise TypeError(f"got the class {obj.__name__}, not an instance; pass "
                        f"{obj.__name__}(...) (a system, or a fitted estimator)")
    if hasattr(obj, "as_discrete_map"):
        _check_options(obj, options)
        kwargs, fixed = dict(options), {}
        for key, value in (("device", device), ("dtype", dtype)):
            if value is not None:
                (kwargs if _takes(obj, key) else fixed)[key] = value
        dmap = obj.as_discrete_map(dt, **kwargs) if dt is not None or _takes(obj, "dt") \
            else obj.as_discrete_map(**kwargs)
        _check_fixed_placement(dmap, fixed)
        return dmap
    if isinstance(obj, torch.nn.Module) or callable(obj):
        if options:
            raise ValueError(f"unknown options for a module or callable: {sorted(options)}")
        return _module_map(obj, dt=dt, dim=dim, device=device, dtype=dtype)
    raise TypeError(
        f"cannot analyse an object of type {type(obj).__name__}: expected a tsrnn system, "
        "a fitted tsrnn estimator, a torch module or a callable mapping states to next states"
    )


def _check_options(obj, options: dict) -> None:
    """Refuse options that ``obj.as_discrete_map`` does not take, listing those it does
    (rather than Python's TypeError, which names the method but not the choices)."""
    import inspect

    try:
        parameters = inspect.signature(obj.as_discrete_map).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # forwards its options: checked where they are used
    known = tuple(name for name in parameters if name not in ("self", "dt"))
    for name in options:
        check_option(name, f"{type(obj).__name__} option", known)


def _takes(obj, name: str) -> bool:
    """Whether ``obj.as_discrete_map`` names the parameter ``name``."""
    import inspect

    try:
        parameters = inspect.signature(obj.as_discrete_map).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters


def _check_fixed_placement(dmap: DiscreteMap, requested: dict) -> None:
    """A fitted forecaster's map runs on its model's device, in the precision the estimator
    sets (float64 for the recurrent ones, the reservoir's own): accept a ``device`` or
    ``dtype`` that says the same, refuse one that does not."""
    if "dtype" in requested and resolve_dtype(requested["dtype"]) != dmap.dtype:
        raise ValueError(f"the closed-loop map of {dmap.name} runs in "
                         f"{str(dmap.dtype).removeprefix('torch.')}, which the estimator "
                         f"sets; dtype={requested['dtype']!r} cannot be honoured")
    if "device" in requested:
        wanted, have = resolve_device(requested["device"]), torch.device(dmap.device)
        if wanted.type != have.type or (None not in (wanted.index, have.index)
                                        and wanted.index != have.index):
            raise ValueError(f"the closed-loop map of {dmap.name} runs on the fitted model's "
                             f"device, {have}; device={requested['device']!r} cannot be "
                             "honoured (refit with device=... to analyse it there)")


def _module_map(module, *, dt, dim, device, dtype) -> DiscreteMap:
    parameters = list(module.parameters()) if isinstance(module, torch.nn.Module) else []
    if parameters:
        device = parameters[0].device if device is None else resolve_device(device)
        dtype = parameters[0].dtype if dtype is None else resolve_dtype(dtype)
        if (parameters[0].device, parameters[0].dtype) != (device, dtype):
            # A converted copy runs the states' dtype and device; the caller's module is
            # left as it is (module.to() would convert it in place).
            module = copy.deepcopy(module).to(device=device, dtype=dtype)
    else:
        device = resolve_device("cpu" if device is None else device)
        dtype = resolve_dtype(dtype, torch.float64)
    if dim is None:
        for name in ("dim", "state_dim", "n_latent", "hidden_size", "in_features"):
            value = getattr(module, name, None)
            if isinstance(value, int):
                dim = value
                break
    if dim is None:
        raise ValueError(
            "cannot infer the state dimension of this module; pass dim=... or x0=..."
        )
    jacobian = getattr(module, "jacobian", None)
    name = type(module).__name__

    def step(x: torch.Tensor) -> torch.Tensor:
        # A module or callable of another state size, or one that returns something other
        # than a tensor of the states' shape, is named here rather than deep in autodiff.
        try:
            y = module(x)
        except RuntimeError as error:
            if "shape" in str(error) or "size" in str(error):
                raise ValueError(f"{name} could not map states of dimension {x.shape[-1]} "
                                 f"(from dim or x0): {error}") from error
            raise
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"{name} must map states (B, {x.shape[-1]}) to next states of "
                             f"the same shape as a torch tensor, got {got}")
        return y

    return DiscreteMap(step=step, dim=int(dim), time_step=dt,
                       jacobian=jacobian if callable(jacobian) else None,
                       dtype=dtype, device=device, name=type(module).__name__)


def _initial_points(dmap: DiscreteMap, n: int, x0, seed) -> torch.Tensor:
    if x0 is not None:
        points = as_float_array(x0, "x0", ndim=(1, 2))
        points = points[None] if points.ndim == 1 else points
        if points.shape[-1] != dmap.dim:
            raise ValueError(f"x0 must have {dmap.dim} columns, got shape {points.shape}: "
                             f"x0 holds states of {dmap.name}'s map (for a forecaster, its "
                             "closed-loop state: the model's state and the scaled next "
                             "input, as as_discrete_map documents)")
        if points.shape[0] > n:
            # A long trajectory: take n starting points spread along it.
            points = points[np.linspace(0, points.shape[0] - 1, n).astype(int)]
        elif points.shape[0] < n:
            points = points[np.arange(n) % points.shape[0]]
        return torch.as_tensor(points, dtype=dmap.dtype, device=dmap.device)
    if dmap.initial_states is None:
        raise ValueError(f"{dmap.name} has no default initial states; pass x0=...")
    return dmap.initial_states(n, seed).to(dtype=dmap.dtype, device=dmap.device)


def _check_finite_state(x: torch.Tensor, step: int, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise DivergenceError(
            f"the trajectory of {name} became non-finite at step {step} while estimating its "
            "Lyapunov spectrum; start closer to the attractor or shorten the step"
        )


def lyapunov_spectrum(obj: Any, n_exponents: int | None = None, *, dt: float | None = None,
                      n_steps: int | None = None, transient: int | None = None,
                      n_trajectories: int = 32, orthonormalize_every: int | None = None,
                      x0: Any = None, seed: int | None = 0, return_stderr: bool = False,
                      device: Any = None, dtype: Any = None, dim: int | None = None,
                      **options):
    """Lyapunov spectrum of a system, a fitted estimator or a map given as a torch module.

    Parameters
    ----------
    obj : system, fitted estimator, torch module, callable or DiscreteMap
        See :func:`as_discrete_map`.
    n_exponents : int, optional
        How many of the largest exponents to compute. Default: as many as the tangent space
        has dimensions, except for the closed loop of a fitted forecaster (ESN, NVAR, GRU,
        CfC, ...): as many as the data has variables, since its reservoir or hidden state
        adds hundreds of strongly contracting directions that cost a QR factorisation of
        that size at every step. The DSR estimators give their whole latent spectrum.
    dt : float, optional
        Step of the map: for flows the integration step of state and variational equation
        (default: the system's ``default_dt``); for modules and fitted estimators the time
        one step stands for (the data's sampling step). Without it a forecaster's exponents
        are per step: an ESN fitted on Lorenz-63 sampled at 0.01 reads 0.009 per step, 0.9
        per time unit with ``dt=0.01``. The DSR estimators know their ``dt``.
    n_steps : int, optional
        Measured steps per trajectory. Default: what the object recommends (flows: their
        ``lyapunov_duration``, 50 time units, 200 for Rossler and 500 for Thomas, whose
        small exponents converge slowly; Kuramoto-Sivashinsky: 2000 steps), else 10,000.
    transient : int, optional
        Steps to settle onto the attractor (each trajectory takes a random extra number of
        up to as many, so that starts from nearby points decorrelate even in weakly mixing
        systems such as Rossler), followed by as many steps to align the frame; none of
        them measured. Default ``n_steps // 5``.
    n_trajectories : int
        Independent trajectories run as one batch; their spread gives the standard error.
    orthonormalize_every : int, optional
        Steps between QR re-orthonormalisations. Default: every step for maps, modules and
        fitted estimators, every 0.1 time units for flows (the frame's columns then separate
        by at most exp(0.1 (lambda_1 - lambda_k)), far from losing precision for the systems
        here); see :attr:`tsrnn.analysis.DiscreteMap.orthonormalize_every`.
    x0 : array (dim,), (B, dim) or a trajectory (T, dim), optional
        Starting points; by default the object's own initial states for ``seed``.
    seed : int, optional
        Seeds the starting points and the initial frame.
    return_stderr : bool
        Also return the standard error of each exponent.
    device, dtype
        Where to compute (systems default to float64 on the CPU).
    options
        Passed to the object's ``as_discrete_map`` (e.g. ``method``, ``substeps``).

    Returns
    -------
    spectrum : array (n_exponents,), descending; per time unit when the time of one step is
        known (flows, maps, estimators trained on sampled data), else per step. A direction
        that the map annihilates (a stretching factor of exactly 0, from a singular
        Jacobian, e.g. of saturated units) has the exponent -inf.
    stderr : array (n_exponents,), only with ``return_stderr`` (NaN for -inf exponents).
    """
    if dim is None and x0 is not None and not hasattr(obj, "as_discrete_map"):
        dim = int(np.shape(x0)[-1])
    return_stderr = check_bool(return_stderr, "return_stderr")
    dmap = as_discrete_map(obj, dt=dt, dim=dim, device=device, dtype=dtype, **options)
    space = dmap.tangent_dim or dmap.dim
    k = (min(dmap.default_exponents or space, space) if n_exponents is None
         else check_positive(n_exponents, "n_exponents", integer=True))
    if k > space:
        raise ValueError(f"n_exponents={k} exceeds the dimension {space} of the tangent space "
                         f"of {dmap.name}")
    if n_steps is None:
        n_steps = dmap.default_steps or 10_000
    n_steps = check_positive(n_steps, "n_steps", integer=True)
    transient = n_steps // 5 if transient is None else check_positive(
        transient, "transient", integer=True, allow_zero=True)
    batch = check_positive(n_trajectories, "n_trajectories", integer=True)
    if orthonormalize_every is None:
        orthonormalize_every = dmap.orthonormalize_every or 1
    every = check_positive(orthonormalize_every, "orthonormalize_every", integer=True)

    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    # One CPU thread for small states: thousands of small steps, which threads only slow
    # down (at_most_threads); large ones (a 4000-unit reservoir) keep them.
    small = torch.device(dmap.device).type == "cpu" and dmap.dim * batch * k <= _SMALL_WORK
    with torch.no_grad(), at_most_threads(1 if small else torch.get_num_threads()):
        # (forward-mode tangents, torch.func.jvp, work without autograd)
        x = _initial_points(dmap, batch, x0, seed)
        extra = torch.randint(0, max(transient, 1), (batch,), generator=generator)
        extra = extra.to(dmap.device)[:, None]
        for i in range(2 * transient):
            stepped = dmap.step(x)
            x = stepped if i < transient else torch.where(extra > i - transient, stepped, x)
            if (i + 1) % 500 == 0:
                _check_finite_state(x, i + 1, dmap.name)
        _check_finite_state(x, transient, dmap.name)
        # One column after another from one generator: runs that differ only in n_exponents
        # then follow the same leading directions, without drawing the whole (B, dim, dim)
        # frame (4 GB for 32 trajectories of a 4000-unit reservoir) to keep k columns.
        frame = torch.stack([torch.randn((batch, dmap.dim), generator=generator,
                                         dtype=torch.float64) for _ in range(k)], -1)
        frame = torch.linalg.qr(frame.to(dtype=dmap.dtype, device=dmap.device))[0]
        for i in range(transient):
            x, frame = dmap.advance(x, frame)
            if (i + 1) % every == 0:
                frame = torch.linalg.qr(frame)[0]
        # Growth left in the frame by alignment steps after the last QR is not measured.
        frame = torch.linalg.qr(frame)[0]
        log_growth = torch.zeros((batch, k), dtype=torch.float64, device=dmap.device)
        for i in range(n_steps):
            x, frame = dmap.advance(x, frame)
            if (i + 1) % every == 0 or i == n_steps - 1:
                frame, r = torch.linalg.qr(frame)
                log_growth += torch.log(torch.diagonal(r, dim1=-2, dim2=-1).abs()).double()
            if (i + 1) % 500 == 0:
                _check_finite_state(x, transient * 2 + i + 1, dmap.name)
    # A stretching factor of exactly 0 is a direction the map annihilates (a singular
    # Jacobian: saturated tanh/sigmoid units, a rank-deficient readout): its exponent is
    # -inf, a true value. NaN or +inf means the frame itself broke down.
    if bool(torch.isnan(log_growth).any() or torch.isposinf(log_growth).any()):
        raise DivergenceError(
            f"the tangent frame of {dmap.name} degenerated (a non-finite stretching factor); "
            "lower orthonormalize_every or check the Jacobian"
        )
    elapsed = n_steps * (dmap.time_step if dmap.time_step else 1.0)
    per_trajectory = (log_growth / elapsed).cpu().numpy()
    spectrum = per_trajectory.mean(0)
    stderr = np.full(k, np.nan)
    finite = np.isfinite(per_trajectory).all(0)
    if batch > 1:
        stderr[finite] = per_trajectory[:, finite].std(0, ddof=1) / np.sqrt(batch)
    order = np.argsort(-spectrum, kind="stable")
    spectrum, stderr = spectrum[order], stderr[order]
    return (spectrum, stderr) if return_stderr else spectrum


def kaplan_yorke_dimension(spectrum: Any) -> float:
    """Kaplan-Yorke (Lyapunov) dimension of a spectrum.

    D_KY = j + sum_{i<=j} lambda_i / |lambda_{j+1}|, with j the largest index for which the
    partial sum is non-negative (Kaplan & Yorke 1979, "Chaotic behavior of multidimensional
    difference equations", Lecture Notes in Mathematics 730). The spectrum is sorted first.
    Returns 0 when lambda_1 < 0 and the full dimension when every partial sum is >= 0.
    Exponents of -inf (directions a map annihilates, as :func:`lyapunov_spectrum` reports
    them) are accepted; NaN and +inf are not.
    """
    exponents = as_float_array(spectrum, "spectrum", ndim=1, allow_nan=True)
    bad = np.isnan(exponents) | np.isposinf(exponents)
    if bad.any():
        raise ValueError(f"spectrum contains NaN or +inf (first at index "
                         f"{int(np.argmax(bad))}); only -inf is a valid exponent")
    exponents = np.sort(exponents)[::-1]
    if exponents.size == 0:
        raise ValueError("spectrum is empty")
    partial = np.cumsum(exponents)
    if partial[0] < 0:
        return 0.0
    j = int(np.nonzero(partial >= 0)[0][-1]) + 1  # number of exponents in the partial sum
    if j == exponents.size:
        if exponents.size > 1:
            # Right for a whole spectrum that expands volumes, but most often a truncated
            # one: a forecaster's default spectrum holds only as many exponents as the
            # data has variables.
            warn(f"the sum of all {j} exponents given is >= 0, so D_KY = {j}: a lower bound "
                 "if the spectrum was truncated; compute more exponents (n_exponents=...) "
                 "until their sum turns negative")
        return float(j)
    return float(j + partial[j - 1] / abs(exponents[j]))
