"""Fixed points and cycles of systems, trained models and maps, by optimisation.

Golub & Sussillo (2018), "FixedPointFinder: A Tensorflow toolbox for identifying and
characterizing fixed points in recurrent neural networks", JOSS 3(31); Sussillo & Barak
(2013), "Opening the black box", Neural Computation 25.

From many states sampled on trajectories, minimise q(x) = 1/2 ||r(x)||^2 with

    r(x) = f(x)            for a flow dx/dt = f(x)         (equilibria)
    r(x) = F^k(x) - x      for a map x' = F(x)             (points of k-cycles)

first by Adam (robust far from a root), then by Newton steps x <- x - J_r(x)^{-1} r(x)
(quadratic convergence near a root, so the locations are accurate to round-off). Roots with
q below ``tolerance`` are kept, duplicates (and, for cycles, points of the same orbit or of a
shorter period) merged, and each is classified by its Jacobian eigenvalues: a fixed point of
a flow is stable when every eigenvalue has a negative real part, a fixed point or cycle of a
map when every eigenvalue of the Jacobian (of F^k along the cycle) lies inside the unit
circle. Piecewise-linear models (PLRNN, shallow PLRNN, AL-RNN and the fitted tsrnn.dsr
estimators) are handed to the exact SCYFI algorithm (:mod:`tsrnn.analysis.scyfi`) unless
``method="newton"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._protocol import DiscreteMap, load_forward_mode
from .._validation import as_float_array, check_option, check_positive
from .lyapunov import as_discrete_map

METHODS = ("auto", "scyfi", "newton")


@dataclass
class FixedPoint:
    """An equilibrium of a flow or a fixed point of a map.

    Attributes
    ----------
    location : array (dim,)
    eigenvalues : complex array (dim,), of the Jacobian at ``location``
    stable : bool
    residual : float, ||r(location)|| (0 up to round-off for a true root)
    is_map : bool, whether stability refers to the unit circle (map) or the half-plane (flow)
    """

    location: np.ndarray
    eigenvalues: np.ndarray
    stable: bool
    residual: float
    is_map: bool

    @property
    def unstable_dimension(self) -> int:
        """Number of unstable directions (eigenvalues outside the stability region)."""
        if self.is_map:
            return int(np.sum(np.abs(self.eigenvalues) > 1.0))
        return int(np.sum(self.eigenvalues.real > 0.0))

    @property
    def kind(self) -> str:
        """"stable", "unstable" (repeller) or "saddle"; a suffix "-spiral" for complex pairs."""
        n_unstable, n = self.unstable_dimension, self.eigenvalues.size
        base = "stable" if n_unstable == 0 else "unstable" if n_unstable == n else "saddle"
        spiral = np.any(np.abs(self.eigenvalues.imag) > 1e-12)
        return base + ("-spiral" if spiral else "")


@dataclass
class Cycle:
    """A k-cycle of a map: k distinct points visited in turn.

    Attributes
    ----------
    points : array (k, dim), in the order the map visits them (also as ``location``, the
        name a :class:`FixedPoint`'s place has)
    eigenvalues : complex array (dim,), of the Jacobian of F^k along the cycle (multipliers)
    stable : bool, all multipliers inside the unit circle
    residual : float, ||F^k(points[0]) - points[0]||
    """

    points: np.ndarray
    eigenvalues: np.ndarray
    stable: bool
    residual: float
    period: int = field(init=False)

    def __post_init__(self) -> None:
        self.period = int(self.points.shape[0])

    @property
    def location(self) -> np.ndarray:
        """The cycle's points (k, dim): where it lies, as ``FixedPoint.location``."""
        return self.points


# ---------------------------------------------------------------------- residual functions
def _flow_functions(system):
    """(residual, jacobian of residual) of a tsrnn Flow: its vector field."""
    return (lambda x: system._rhs(0.0, x)), system._jacobian


def _map_functions(dmap: DiscreteMap, order: int):
    def iterate(x):
        for _ in range(order):
            x = dmap.step(x)
        return x

    def residual(x):
        return iterate(x) - x

    def jacobian(x):
        if dmap.jacobian is not None:
            product = torch.eye(dmap.dim, dtype=x.dtype, device=x.device).expand(
                x.shape[0], -1, -1)
            y = x
            for _ in range(order):
                product = dmap.jacobian(y) @ product
                y = dmap.step(y)
        elif dmap.tangent is not None:
            # The map's own tangent (exact, and what a step that is not written for
            # forward-mode autodiff, like the ESN's scipy product, provides).
            product = torch.eye(dmap.dim, dtype=x.dtype, device=x.device).repeat(
                x.shape[0], 1, 1)
            y = x
            for _ in range(order):
                y, product = dmap.tangent(y, product)
        else:
            load_forward_mode()
            product = torch.func.vmap(torch.func.jacfwd(lambda v: iterate(v[None])[0]))(x)
        return product - torch.eye(dmap.dim, dtype=x.dtype, device=x.device)

    return residual, jacobian


def _sample_states(obj, dmap: DiscreteMap, n: int, x0, seed: int) -> torch.Tensor:
    """Starting states: given ones, or points along trajectories of the object itself."""
    if x0 is not None:
        points = as_float_array(x0, "x0", ndim=(1, 2))
        points = points[None] if points.ndim == 1 else points
        if points.shape[1] != dmap.dim:
            raise ValueError(f"x0 must have {dmap.dim} columns, got shape {points.shape}")
        if points.shape[0] > n:
            points = points[np.linspace(0, points.shape[0] - 1, n).astype(int)]
        return torch.as_tensor(points, dtype=dmap.dtype, device=dmap.device)
    if dmap.initial_states is None:
        raise ValueError(f"{dmap.name} has no default initial states; pass x0=...")
    generator = torch.Generator().manual_seed(seed)
    states = dmap.initial_states(n, seed).to(dtype=dmap.dtype, device=dmap.device)
    # Walk each start a random number of steps so that the starts spread over the attractor
    # and its surroundings, where fixed points of interest lie.
    walks = torch.randint(0, 200, (n,), generator=generator)
    with torch.no_grad():
        for i in range(int(walks.max()) + 1):
            moving = walks > i
            if not moving.any():
                break
            stepped = dmap.step(states)
            finite = torch.isfinite(stepped).all(-1).cpu()
            keep = (moving & finite).to(states.device)
            states = torch.where(keep[:, None], stepped, states)
    spread = states.std(0, keepdim=True).clamp_min(1e-3)
    jitter = torch.randn(states.shape, generator=generator, dtype=torch.float64)
    return states + 0.05 * spread * jitter.to(dtype=states.dtype, device=states.device)


def _check_search(n_initial, seed, learning_rate, max_iterations, newton_steps, tolerance,
                  dedupe_tolerance) -> int:
    """Validate the Newton search's settings (before any work); returns the seed."""
    check_positive(n_initial, "n_initial", integer=True)
    check_positive(learning_rate, "learning_rate")
    check_positive(max_iterations, "max_iterations", integer=True, allow_zero=True)
    check_positive(newton_steps, "newton_steps", integer=True, allow_zero=True)
    check_positive(tolerance, "tolerance")
    check_positive(dedupe_tolerance, "dedupe_tolerance")
    if max_iterations == 0 and newton_steps == 0:
        raise ValueError("max_iterations and newton_steps are both 0: nothing would refine "
                         "the starting states")
    return check_positive(seed, "seed", integer=True, allow_zero=True)


def _solve(residual, jacobian, states: torch.Tensor, *, learning_rate: float,
           max_iterations: int, newton_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on q, then Newton; returns the refined states and their residual norms."""
    x = states.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=learning_rate)
    for _ in range(max_iterations):
        optimizer.zero_grad()
        q = 0.5 * residual(x).square().sum(-1)
        if float(q.detach().max()) < 1e-10:
            break
        q.sum().backward()
        optimizer.step()
    x = x.detach()
    with torch.no_grad():
        for _ in range(newton_steps):
            r = residual(x)
            try:
                delta = torch.linalg.lstsq(jacobian(x), r.unsqueeze(-1)).solution.squeeze(-1)
            except RuntimeError:  # singular batch member: keep the Adam result
                break
            candidate = x - delta
            better = residual(candidate).norm(dim=-1) < r.norm(dim=-1)
            finite = torch.isfinite(candidate).all(-1)
            x = torch.where((better & finite)[:, None], candidate, x)
        norms = residual(x).norm(dim=-1)
    return x, norms


def _dedupe(points: np.ndarray, tolerance: float) -> list[int]:
    """Indices of the first of each group of points closer than ``tolerance``."""
    kept: list[int] = []
    for i, point in enumerate(points):
        if all(np.linalg.norm(point - points[j]) > tolerance for j in kept):
            kept.append(i)
    return kept


def _is_flow(obj) -> bool:
    from ..systems.base import Flow

    return isinstance(obj, Flow)


def _scyfi_applies(obj: Any, method: str) -> bool:
    """Whether ``method`` sends ``obj`` to SCYFI ("auto": for piecewise-linear models)."""
    check_option(method, "method", METHODS)
    if method == "newton":
        return False
    from .scyfi import is_piecewise_linear

    if is_piecewise_linear(obj):
        return True
    if method == "scyfi":
        raise TypeError(f"method='scyfi' needs a piecewise-linear model (tsrnn.nn PLRNN, "
                        f"ShallowPLRNN, ALRNN or a fitted tsrnn.dsr estimator), got "
                        f"{type(obj).__name__}")
    return False


# The Newton search's settings, at their defaults; SCYFI has no use for them.
_NEWTON_DEFAULTS = dict(n_initial=256, learning_rate=0.05, max_iterations=2000, newton_steps=25,
                        dedupe_tolerance=1e-3, dt=None)


def _scyfi_settings(options: dict, tolerance: float, **newton: Any) -> dict:
    """SCYFI's options from a fixed_points/find_cycles call: ``tolerance`` passed on when
    given, and a setting of the Adam + Newton search refused (it would be ignored without
    a word), naming the way to use it."""
    changed = sorted(name for name, value in newton.items() if value != _NEWTON_DEFAULTS[name])
    if changed:
        raise ValueError(f"{', '.join(changed)} set the Adam + Newton search, but this "
                         "piecewise-linear model is searched exactly by SCYFI (method='auto'); "
                         "pass method='newton' to use them, or SCYFI's own options (e.g. "
                         "n_chains, tolerance)")
    if tolerance != 1e-9:  # the Newton default; SCYFI's own residual bound otherwise
        options = {"tolerance": tolerance, **options}
    return _scyfi_options(options)


def _scyfi_options(options: dict) -> dict:
    """The options meant for SCYFI: those of the Newton path's map (dim, device, dtype)
    do not apply to it; others SCYFI does not take are refused, naming those it does."""
    import inspect

    from .scyfi import scyfi

    known = set(inspect.signature(scyfi).parameters) - {"obj", "order", "cycles", "x0",
                                                          "seed"}
    unknown = sorted(set(options) - known - {"dim", "device", "dtype"})
    if unknown:
        raise ValueError(f"unknown options {unknown} for SCYFI (the piecewise-linear models' "
                         f"search); it takes {sorted(known)}")
    return {k: v for k, v in options.items() if k not in ("dim", "device", "dtype")}


def _search_map(obj: Any, dt: float | None, x0: Any, options: dict) -> DiscreteMap:
    """The map the Newton search runs on: a module's state size read off x0, and a torch
    module searched in float64 unless ``dtype`` says otherwise (through a converted copy):
    float32 residuals stall near 1e-7, above the default tolerance, and roots would be
    dropped without a word."""
    options = dict(options)
    if not hasattr(obj, "as_discrete_map") and not isinstance(obj, DiscreteMap):
        if "dim" not in options and x0 is not None:
            options["dim"] = int(np.shape(x0)[-1])
        if "dtype" not in options and isinstance(obj, torch.nn.Module):
            options["dtype"] = torch.float64
    return as_discrete_map(obj, dt=dt, **options)


def fixed_points(obj: Any, *, method: str = "auto", n_initial: int = 256, x0: Any = None,
                 seed: int = 0,
                 learning_rate: float = 0.05, max_iterations: int = 2000,
                 newton_steps: int = 25, tolerance: float = 1e-9,
                 dedupe_tolerance: float = 1e-3, dt: float | None = None,
                 **options) -> list[FixedPoint]:
    """Fixed points of a flow (equilibria), a map, a fitted estimator or a torch module.

    Parameters
    ----------
    obj
        A tsrnn system, a fitted estimator, a torch module or callable mapping states to
        next states (see :func:`tsrnn.analysis.as_discrete_map`).
    method : {"auto", "scyfi", "newton"}
        "auto": SCYFI (exact, :func:`tsrnn.analysis.scyfi`) for piecewise-linear models,
        Adam + Newton otherwise. With SCYFI, ``x0`` and ``seed`` seed its search, a
        ``tolerance`` given bounds its residuals and ``options`` are SCYFI's own; the
        other Adam/Newton settings below do not apply, and giving one is an error.
    n_initial : int
        Starting states, sampled along the object's own trajectories (or taken from x0).
    x0 : array (dim,), (B, dim) or a trajectory (T, dim), optional
        Starting states.
    seed : int
    learning_rate, max_iterations
        Adam on q(x) = 1/2 ||r(x)||^2 (stops early once every q < 1e-10).
    newton_steps : int
        Newton refinements after Adam.
    tolerance : float
        A root is kept when ||r(x)|| < tolerance.
    dedupe_tolerance : float
        Roots closer than this are one.
    dt, options
        Passed to :func:`as_discrete_map` (for modules: ``dim``, ``device``, ``dtype``). A
        torch module is searched in float64, on a converted copy, unless ``dtype`` is
        given: in float32 the residuals stop near 1e-7, above ``tolerance``.

    Returns
    -------
    list of :class:`FixedPoint`, sorted by location. For a fitted estimator a location is a
    state of its map (latent, or [y, hidden state] of a forecaster's closed loop):
    ``estimator.latent_to_data(point.location)`` gives the point in data units.

    Notes
    -----
    The Adam + Newton search costs ``n_initial * (max_iterations + newton_steps)`` steps of
    the map and its Jacobian, and each Newton step solves a system of the state's size: a
    few seconds for a system or a small model, minutes for a reservoir's closed loop (on
    the 2-core dev machine under load, an ESN of 100 units took ~30 s, of 500 ~8 minutes).
    Fewer starts (``n_initial``) save time but can miss points.
    """
    if _scyfi_applies(obj, method):
        from .scyfi import scyfi

        options = _scyfi_settings(options, tolerance, n_initial=n_initial,
                                  learning_rate=learning_rate, max_iterations=max_iterations,
                                  newton_steps=newton_steps, dedupe_tolerance=dedupe_tolerance,
                                  dt=dt)
        return scyfi(obj, 1, x0=x0, seed=seed, **options)
    seed = _check_search(n_initial, seed, learning_rate, max_iterations, newton_steps,
                         tolerance, dedupe_tolerance)
    flow = _is_flow(obj)
    dmap = _search_map(obj, dt, x0, options)
    if flow:
        residual, jacobian = _flow_functions(obj)
    else:
        residual, jacobian = _map_functions(dmap, 1)
    states = _sample_states(obj, dmap, n_initial, x0, seed)
    roots, norms = _solve(residual, jacobian, states, learning_rate=learning_rate,
                          max_iterations=max_iterations, newton_steps=newton_steps)
    good = (norms < tolerance).cpu().numpy()
    locations = roots.cpu().numpy()[good]
    order = np.lexsort(locations.T[::-1]) if len(locations) else np.array([], dtype=int)
    locations = locations[order]
    results = []
    for i in _dedupe(locations, dedupe_tolerance):
        point = torch.as_tensor(locations[i][None], dtype=dmap.dtype, device=dmap.device)
        with torch.no_grad():
            matrix = jacobian(point)[0].double().cpu().numpy()
            norm = float(residual(point).norm())
        if not flow:
            matrix = matrix + np.eye(dmap.dim)  # jacobian() returned J_F - I
        eigenvalues = np.linalg.eigvals(matrix)
        stable = bool(np.all(np.abs(eigenvalues) < 1.0)) if not flow else bool(
            np.all(eigenvalues.real < 0.0))
        results.append(FixedPoint(locations[i], eigenvalues, stable, norm, is_map=not flow))
    return results


def find_cycles(obj: Any, order: int, *, method: str = "auto", n_initial: int = 256,
                x0: Any = None, seed: int = 0,
                learning_rate: float = 0.05, max_iterations: int = 2000,
                newton_steps: int = 25, tolerance: float = 1e-9,
                dedupe_tolerance: float = 1e-3, dt: float | None = None,
                **options) -> list[Cycle]:
    """Cycles of minimal period ``order`` of a map, a fitted estimator or a torch module.

    Roots of F^k(x) - x are found as in :func:`fixed_points`; a root whose period is a
    proper divisor of k is dropped, and the k points of one orbit count once. Flows have
    periodic orbits rather than k-cycles: use a map (e.g. a Poincare map) for them.
    ``method`` as in :func:`fixed_points` (SCYFI for piecewise-linear models by default).

    Returns
    -------
    list of :class:`Cycle`, each with its points in visiting order and its multipliers.
    """
    order = check_positive(order, "order", integer=True)
    if _scyfi_applies(obj, method):
        from .scyfi import scyfi

        options = _scyfi_settings(options, tolerance, n_initial=n_initial,
                                  learning_rate=learning_rate, max_iterations=max_iterations,
                                  newton_steps=newton_steps, dedupe_tolerance=dedupe_tolerance,
                                  dt=dt)
        return scyfi(obj, order, cycles=True, x0=x0, seed=seed, **options)
    seed = _check_search(n_initial, seed, learning_rate, max_iterations, newton_steps,
                         tolerance, dedupe_tolerance)
    if _is_flow(obj):
        raise ValueError(
            "find_cycles applies to maps and discrete-time models; a flow's periodic orbits "
            "are not k-cycles (use fixed_points for its equilibria)"
        )
    dmap = _search_map(obj, dt, x0, options)
    residual, jacobian = _map_functions(dmap, order)
    states = _sample_states(obj, dmap, n_initial, x0, seed)
    roots, norms = _solve(residual, jacobian, states, learning_rate=learning_rate,
                          max_iterations=max_iterations, newton_steps=newton_steps)
    candidates = roots[norms < tolerance]
    cycles: list[Cycle] = []
    seen: list[np.ndarray] = []
    with torch.no_grad():
        for point in candidates:
            orbit = [point[None]]
            for _ in range(order - 1):
                orbit.append(dmap.step(orbit[-1]))
            points = torch.cat(orbit).double().cpu().numpy()
            # Minimal period: no earlier return to the start.
            if any(np.linalg.norm(points[j] - points[0]) < dedupe_tolerance
                   for j in range(1, order)):
                continue
            if any(np.min(np.linalg.norm(other - points[0], axis=1)) < dedupe_tolerance
                   for other in seen):
                continue
            start = int(np.lexsort(points.T[::-1])[0])  # canonical first point
            points = np.roll(points, -start, axis=0)
            seen.append(points)
            first = torch.as_tensor(points[:1], dtype=dmap.dtype, device=dmap.device)
            multipliers = np.linalg.eigvals(
                jacobian(first)[0].double().cpu().numpy() + np.eye(dmap.dim))
            cycles.append(Cycle(points, multipliers, bool(np.all(np.abs(multipliers) < 1.0)),
                                float(residual(first).norm())))
    cycles.sort(key=lambda cycle: tuple(cycle.points[0]))
    return cycles
