"""SCYFI: exact fixed points and cycles of piecewise-linear recurrent networks.

Eisenmann, Monfared, Goering & Durstewitz (2023), "Bifurcations and loss jumps in RNN
training", NeurIPS; the fixed-point search it extends is Durstewitz (2017), "A state space
approach for piecewise-linear recurrent neural networks for identifying computational
dynamics from neural measurements", PLoS Comput. Biol.

A ReLU network is affine inside each linear subregion D (one ReLU sign pattern):

    z_t = J_D z_{t-1} + c_D

    PLRNN         J_D = A + W D,                 c_D = h                 D = diag(1[z > 0])
    AL-RNN        J_D = A + W diag(1, ..., 1, D), c_D = h                 D over the last P units
    shallow PLRNN J_D = A + W1 D W2,             c_D = h1 + W1 D h2      D = diag(1[W2 z + h2 > 0])
    clipped       J_D = A + W1 (D - D') W2,      c_D = h1 + W1 D h2      D' = diag(1[W2 z > 0])

(the clipped shallow PLRNN relu(W2 z + h2) - relu(W2 z) has two ReLU layers, so its
subregion is the pair (D, D')). A k-cycle that visits subregions D_1, ..., D_k in turn has its
first point at the solution of the linear system of the k-fold composition

    (I - J_k ... J_1) z_1 = sum_{j=1..k} J_k ... J_{j+1} c_j,

with z_{j+1} = J_j z_j + c_j. The candidate is a true cycle exactly when its own subregions
are D_1 .. D_k (self-consistency); otherwise SCYFI takes the candidate's actual subregions as
the next guess (the heuristic search), restarting from a fresh random guess after
``inner_loop_iterations`` guesses, and stops after ``outer_loop_iterations`` restarts in a
row that found nothing new (the counter resets on every new cycle, as in the authors' code).
Stability follows from the eigenvalues of J_k ... J_1, which is the Jacobian of the k-fold
map along the cycle.

When the subregion sequences are few (an AL-RNN has at most 2^P subregions), every sequence
is tried instead: the search is then exhaustive, and every isolated cycle of the given
period is found. Only primitive sequences, one per rotation class, are needed: a cycle's
sequence starting at another of its points is a rotation of it, and a sequence that repeats
a shorter block D^(k/d) cannot hold an isolated cycle of minimal period k (when I - J_k..J_1
is invertible, the solution is the d-cycle of the block).

A singular I - J_k ... J_1 (a multiplier of exactly 1, e.g. a line attractor) has no isolated
solution: no point or a continuum of them. Such sequences are collected in the result's
``degenerate`` attribute, and a warning names those for which a continuum of self-consistent
cycles exists (points on it are not returned: they are not isolated).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._validation import as_float_array, check_option, check_positive, warn
from .fixed_points import Cycle, FixedPoint

ON_DEGENERATE = ("warn", "raise", "ignore")
# Exhaustive enumeration handles at most this many subregion sequences before the rotation
# filter (when asked for explicitly); "auto" enumerates up to ``max_exhaustive``.
_EXHAUSTIVE_LIMIT = 1 << 22
_BATCH = 4096  # sequences solved per batched linear-algebra call


@dataclass
class PiecewiseLinearFixedPoint(FixedPoint):
    """A fixed point found by SCYFI: a :class:`FixedPoint` with its linear subregion.

    Attributes
    ----------
    region : bool array (R,)
        The ReLU sign pattern at the point (as the module's ``region``).
    code : int
        That pattern read as a binary number, first unit the most significant bit (as the
        module's ``region_codes`` and the estimators' ``symbolic_codes``).
    """

    region: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    code: int = 0


@dataclass
class PiecewiseLinearCycle(Cycle):
    """A k-cycle found by SCYFI: a :class:`Cycle` with the subregions it visits.

    Attributes
    ----------
    regions : bool array (k, R)
        The ReLU sign pattern of each point, in visiting order.
    codes : tuple of k ints
        Those patterns as binary numbers (see :class:`PiecewiseLinearFixedPoint`).
    """

    regions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))
    codes: tuple = ()


class SCYFIResult(list):
    """The list of fixed points or cycles SCYFI found, with a record of the search.

    Attributes
    ----------
    degenerate : list of tuples of int
        Subregion code sequences (one per rotation class) whose system I - J_k ... J_1 was
        singular: no isolated cycle there.
    continua : list of tuples of int
        The degenerate sequences with a self-consistent least-squares solution: a continuum
        of fixed points or cycles (e.g. a line attractor) exists in those subregions.
    exhaustive : bool
        Whether every subregion sequence was tried (then every isolated cycle was found).
    n_candidates : int
        Linear systems solved.
    """

    def __init__(self, items=(), *, degenerate=(), continua=(), exhaustive=False,
                 n_candidates=0):
        super().__init__(items)
        self.degenerate = list(degenerate)
        self.continua = list(continua)
        self.exhaustive = bool(exhaustive)
        self.n_candidates = int(n_candidates)


# ------------------------------------------------------------------ affine pieces per model
class _AffinePieces:
    """A piecewise-affine map z' = J(p) z + c(p) in float64 numpy, p the ReLU pattern (R,).

    ``patterns``, ``step`` and ``pieces`` mirror the module's ``region``, ``step`` and
    ``jacobian`` (tests check that they agree)."""

    def __init__(self, module: torch.nn.Module):
        from ..nn import plrnn

        def get(name: str) -> np.ndarray:
            return getattr(module, name).detach().double().cpu().numpy()

        self.name = type(module).__name__
        self.a = get("A")
        self.dim = self.a.size
        if isinstance(module, (plrnn.PLRNN, plrnn.ALRNN)):
            self.kind = "plrnn"
            self.w = get("W") * (1.0 - np.eye(self.dim))
            self.h = get("h")
            self.n_linear = self.dim - module.n_pwl if isinstance(module, plrnn.ALRNN) else 0
            self.n_bits = self.dim - self.n_linear
        elif isinstance(module, plrnn.ShallowPLRNN):
            self.kind = "clipped" if module.clipped else "shallow"
            self.w1, self.w2, self.h1, self.h2 = get("W1"), get("W2"), get("h1"), get("h2")
            self.n_bits = self.h2.size * (2 if module.clipped else 1)
        else:  # pragma: no cover - guarded by _piecewise_linear_module
            raise TypeError(f"not a piecewise-linear module: {self.name}")
        values = [v for v in vars(self).values() if isinstance(v, np.ndarray)]
        if not all(np.isfinite(v).all() for v in values):
            raise ValueError(f"the {self.name} parameters contain NaN or inf")

    def patterns(self, z: np.ndarray) -> np.ndarray:
        """ReLU sign patterns (..., R) of states (..., M)."""
        if self.kind == "plrnn":
            return z[..., self.n_linear:] > 0
        pre = z @ self.w2.T
        active = pre + self.h2 > 0
        return np.concatenate([active, pre > 0], -1) if self.kind == "clipped" else active

    def step(self, z: np.ndarray) -> np.ndarray:
        """The map itself on states (N, M)."""
        if self.kind == "plrnn":
            phi = z.copy()
            phi[..., self.n_linear:] = np.maximum(z[..., self.n_linear:], 0.0)
            return self.a * z + phi @ self.w.T + self.h
        pre = z @ self.w2.T
        hidden = np.maximum(pre + self.h2, 0.0)
        if self.kind == "clipped":
            hidden = hidden - np.maximum(pre, 0.0)
        return self.a * z + hidden @ self.w1.T + self.h1

    def pieces(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """J (N, M, M) and c (N, M) of the subregions with patterns p (N, R)."""
        p = p.astype(np.float64)
        n = p.shape[0]
        diagonal = np.broadcast_to(np.diag(self.a), (n, self.dim, self.dim))
        if self.kind == "plrnn":
            slopes = np.concatenate([np.ones((n, self.n_linear)), p], -1)
            return diagonal + self.w * slopes[:, None, :], np.broadcast_to(self.h, (n, self.dim))
        hidden = self.h2.size
        on = p[:, :hidden]
        slopes = on - p[:, hidden:] if self.kind == "clipped" else on
        jacobian = diagonal + (self.w1 * slopes[:, None, :]) @ self.w2
        return jacobian, self.h1 + (self.w1 * on[:, None, :]) @ self.h2


def _piecewise_linear_module(obj: Any) -> torch.nn.Module | None:
    """The tsrnn.nn piecewise-linear module behind ``obj`` (a module, a fitted DSR
    estimator or its ``module_``), or None when ``obj`` is none of them."""
    from ..nn import plrnn

    kinds = (plrnn.PLRNN, plrnn.ShallowPLRNN, plrnn.ALRNN)
    if isinstance(obj, kinds):
        return obj
    if isinstance(obj, torch.nn.Module) and isinstance(getattr(obj, "latent", None), kinds):
        return obj.latent  # a DSR estimator's module_ (ReconstructionModel): its latent map
    module = getattr(obj, "module_", None)
    latent = getattr(module, "latent", None)
    if isinstance(latent, kinds):
        if getattr(obj, "n_exog_", 0):
            raise ValueError(f"fixed points and cycles need an autonomous model; this "
                             f"{type(obj).__name__} was fitted with exogenous inputs")
        return latent
    return None


def is_piecewise_linear(obj: Any) -> bool:
    """Whether SCYFI applies to ``obj``: a tsrnn.nn PLRNN, ShallowPLRNN or ALRNN, or a
    fitted tsrnn.dsr estimator built on one (or that estimator's ``module_``)."""
    return _piecewise_linear_module(obj) is not None


# ------------------------------------------------------------------ sequences and codes
def _code(pattern: np.ndarray) -> int:
    """A pattern (R,) as a binary number, first entry the most significant bit."""
    return int("".join("1" if bit else "0" for bit in pattern) or "0", 2)


def _rotation_key(patterns: np.ndarray) -> tuple[int, tuple]:
    """(offset, key) of the lexicographically smallest rotation of a pattern sequence (k, R):
    the same key for every rotation of one cycle."""
    rows = [(*(int(b) for b in np.packbits(row)), row.size) for row in patterns]
    rotations = [tuple(rows[s:] + rows[:s]) for s in range(len(rows))]
    offset = min(range(len(rows)), key=rotations.__getitem__)
    return offset, rotations[offset]


def _is_primitive(patterns: np.ndarray) -> bool:
    """Whether a pattern sequence (k, R) is not a repetition of a shorter block."""
    k = patterns.shape[0]
    return not any(k % d == 0 and np.array_equal(patterns, np.roll(patterns, d, axis=0))
                   for d in range(1, k))


def _necklaces(n_symbols: int, order: int, chunk: int = 1 << 16):
    """All primitive sequences over ``n_symbols`` symbols, one per rotation class (the
    smallest rotation; the Lyndon words of length ``order``), in arrays (N, order) of at
    most ``chunk`` candidates each."""
    weights = n_symbols ** np.arange(order - 1, -1, -1, dtype=np.int64)
    total = n_symbols**order
    for start in range(0, total, chunk):
        value = np.arange(start, min(start + chunk, total), dtype=np.int64)
        words = (value[:, None] // weights) % n_symbols
        keep = np.ones(len(words), dtype=bool)
        for shift in range(1, order):
            # strictly smaller than every rotation: canonical and primitive
            keep &= value < np.roll(words, -shift, axis=1) @ weights
        if keep.any():
            yield words[keep]


def _bits(codes: np.ndarray, n_bits: int) -> np.ndarray:
    """Integer codes (...) to patterns (..., n_bits), most significant bit first."""
    shifts = np.arange(n_bits - 1, -1, -1, dtype=np.int64)
    return (codes[..., None] >> shifts) & 1 == 1


# ------------------------------------------------------------------ the linear systems
@dataclass
class _Candidates:
    points: np.ndarray      # (N, k, M) the orbit of the solution under the true map
    realised: np.ndarray    # (N, k, R) its subregions
    consistent: np.ndarray  # (N,) realised == assumed
    singular: np.ndarray    # (N,) I - prod J numerically singular
    closure: np.ndarray     # (N,) ||F^k(z_1) - z_1|| / max(1, ||z_1||)


def _orbit(model: _AffinePieces, first: np.ndarray, assumed: np.ndarray):
    """Points (N, k, M) of the true map's orbit from ``first`` (N, M), their subregions,
    whether those equal ``assumed`` and the relative closure error."""
    n, order, _ = assumed.shape
    points = np.empty((n, order, model.dim))
    z = first
    with np.errstate(invalid="ignore", over="ignore"):
        for j in range(order):
            points[:, j] = z
            z = model.step(z)
        closure = np.linalg.norm(z - first, axis=-1) / np.maximum(
            1.0, np.linalg.norm(first, axis=-1))
    realised = model.patterns(points)
    finite = np.isfinite(points).all(axis=(1, 2)) & np.isfinite(closure)
    consistent = finite & (realised == assumed).all(axis=(1, 2))
    return points, realised, consistent, np.where(finite, closure, np.inf)


def _solve_sequences(model: _AffinePieces, assumed: np.ndarray,
                     singular_tolerance: float) -> _Candidates:
    """Candidates for pattern sequences ``assumed`` (N, k, R)."""
    n, order, _ = assumed.shape
    jacobians, offsets = model.pieces(assumed.reshape(n * order, -1))
    jacobians = jacobians.reshape(n, order, model.dim, model.dim)
    offsets = offsets.reshape(n, order, model.dim)
    product = np.broadcast_to(np.eye(model.dim), (n, model.dim, model.dim))
    constant = np.zeros((n, model.dim))
    for j in range(order):
        product = jacobians[:, j] @ product
        constant = np.einsum("nij,nj->ni", jacobians[:, j], constant) + offsets[:, j]
    system = np.eye(model.dim) - product
    # solve_ex flags exactly singular matrices per batch entry instead of failing the batch.
    solution, info = torch.linalg.solve_ex(torch.from_numpy(system),
                                           torch.from_numpy(constant)[..., None])
    first = solution[..., 0].numpy()
    points, realised, consistent, closure = _orbit(model, first, assumed)
    # The condition (an SVD, the costly part) matters only where a solution is kept or the
    # solve failed: a near-singular system with an inconsistent candidate is passed over.
    check = consistent | (info.numpy() > 0) | ~np.isfinite(first).all(-1)
    singular = np.zeros(n, dtype=bool)
    if check.any():
        values = np.linalg.svd(system[check], compute_uv=False)
        singular[check] = values[:, -1] <= singular_tolerance * np.maximum(values[:, 0], 1.0)
    if singular.any():
        # The least-squares point is self-consistent (with closure ~ 0) only when a
        # continuum of cycles exists in these subregions.
        least_squares = np.einsum("nij,nj->ni", np.linalg.pinv(system[singular]),
                                  constant[singular])
        redo = _orbit(model, least_squares, assumed[singular])
        for array, value in zip((points, realised, consistent, closure), redo):
            array[singular] = value
    return _Candidates(points, realised, consistent, singular, closure)


# ------------------------------------------------------------------ search strategies
class _Collector:
    """Accepts self-consistent candidates, one per rotation class, and records the
    degenerate sequences."""

    def __init__(self, tolerance: float):
        self.tolerance = tolerance
        self.cycles: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self.degenerate: dict[tuple, tuple[int, ...]] = {}
        self.continua: dict[tuple, tuple[int, ...]] = {}
        self.n_candidates = 0

    def add(self, assumed: np.ndarray, found: _Candidates) -> np.ndarray:
        """Record a batch; returns which entries were new cycles."""
        self.n_candidates += len(assumed)
        new = np.zeros(len(assumed), dtype=bool)
        for i in np.flatnonzero(found.singular | found.consistent):
            patterns = assumed[i]
            offset, key = _rotation_key(patterns)
            if found.singular[i]:
                codes = tuple(_code(p) for p in np.roll(patterns, -offset, axis=0))
                self.degenerate.setdefault(key, codes)
                if found.consistent[i] and found.closure[i] <= self.tolerance:
                    self.continua.setdefault(key, codes)
                continue
            if key in self.cycles or found.closure[i] > self.tolerance:
                continue
            if not _is_primitive(patterns):
                continue  # a shorter cycle's sequence repeated (see the module docstring)
            self.cycles[key] = (found.points[i].copy(), patterns.copy())
            new[i] = True
        return new


def _exhaustive(model: _AffinePieces, order: int, collector: _Collector,
                singular_tolerance: float) -> None:
    for words in _necklaces(2 ** model.n_bits, order, chunk=_BATCH):
        assumed = _bits(words, model.n_bits)
        collector.add(assumed, _solve_sequences(model, assumed, singular_tolerance))


def _check_states(x0: Any, dim: int) -> np.ndarray:
    states = as_float_array(x0, "x0", ndim=(1, 2))
    states = states[None] if states.ndim == 1 else states
    if states.shape[1] != dim:
        raise ValueError(f"x0 must have {dim} columns (the latent dimension), "
                         f"got shape {states.shape}")
    return states


def _state_pool(obj: Any, model: _AffinePieces, x0: np.ndarray | None,
                rng: np.random.Generator) -> np.ndarray:
    """States whose subregions seed the search: ``x0`` when given, else points along short
    runs of the map from the object's own initial states (on the attractor for a fitted
    estimator), and random states around them."""
    if x0 is not None:
        return x0
    from .lyapunov import as_discrete_map

    dmap = as_discrete_map(obj)
    start = dmap.initial_states(64, int(rng.integers(2**31))).detach().double().cpu().numpy()
    runs = [start]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(100):
            runs.append(model.step(runs[-1]))
    states = np.concatenate(runs)
    states = states[np.isfinite(states).all(1) & (np.abs(states).max(1) < 1e6)]
    if len(states) == 0:
        states = start
    # Random states over the occupied range reach subregions the runs pass by.
    low, high = states.min(0), states.max(0)
    spread = np.maximum(high - low, 1.0)
    box = rng.uniform(low - spread, high + spread, size=(len(states), model.dim))
    return np.concatenate([states, box])


def _heuristic(obj: Any, model: _AffinePieces, order: int, collector: _Collector,
               singular_tolerance: float, outer: int, inner: int, n_chains: int,
               x0: Any, rng: np.random.Generator) -> None:
    pool = _state_pool(obj, model, x0, rng)
    pool_patterns = model.patterns(pool)

    def fresh(count: int) -> np.ndarray:
        """New guesses: the subregions along k steps from a pool state, the subregions of
        k independent pool states, or (for networks whose every pattern is a region, and
        unless the user gave x0) random sign patterns, at random."""
        guesses = np.empty((count, order, model.n_bits), dtype=bool)
        random_patterns = model.kind == "plrnn" and x0 is None
        kinds = rng.integers(0, 3 if random_patterns else 2, size=count)
        for i, kind in enumerate(kinds):
            if kind == 0:
                z = pool[rng.integers(len(pool))][None]
                for j in range(order):
                    guesses[i, j] = model.patterns(z)[0]
                    with np.errstate(over="ignore", invalid="ignore"):
                        z = model.step(z)
            elif kind == 1:
                guesses[i] = pool_patterns[rng.integers(len(pool), size=order)]
            else:
                guesses[i] = rng.random((order, model.n_bits)) < 0.5
        return guesses

    assumed = fresh(n_chains)
    tries = np.zeros(n_chains, dtype=np.int64)
    idle_restarts = 0  # restarts since the last new cycle
    while idle_restarts < outer:
        found = _solve_sequences(model, assumed, singular_tolerance)
        new = collector.add(assumed, found)
        if new.any():
            idle_restarts = 0
        tries += 1
        # A chain restarts after a solution (true or singular), when its guess reproduces
        # itself, or after ``inner`` guesses; otherwise it moves to the candidate's regions.
        settled = found.consistent | found.singular | ~np.isfinite(found.points).all((1, 2))
        restart = settled | (tries >= inner)
        moving = ~restart
        assumed[moving] = found.realised[moving]
        n_restart = int(restart.sum())
        if n_restart:
            idle_restarts += n_restart
            assumed[restart] = fresh(n_restart)
            tries[restart] = 0


# ------------------------------------------------------------------ results
def _verify(double: torch.nn.Module, points: np.ndarray) -> tuple[float, np.ndarray]:
    """Closure residual ||F^k(z_1) - z_1|| and the Jacobian product J(z_k) ... J(z_1),
    both from (a float64 copy of) the module itself: an independent check of the affine
    pieces."""
    # On the module's own device: a model trained on a GPU is verified there.
    device = next(iter(double.parameters()), torch.empty(0)).device
    with torch.no_grad():
        z = torch.as_tensor(points, dtype=torch.float64, device=device)
        product = torch.eye(points.shape[1], dtype=torch.float64, device=device)
        state = z[:1]
        for j in range(points.shape[0]):
            product = double.jacobian(z[j:j + 1])[0] @ product
            state = double.step(state)
        residual = float((state[0] - z[0]).norm())
    return residual, product.cpu().numpy()


def scyfi(obj: Any, order: int = 1, *, cycles: bool | None = None,
          exhaustive: bool | None = None, max_exhaustive: int = 1 << 14,
          outer_loop_iterations: int | None = None, inner_loop_iterations: int | None = None,
          n_chains: int = 128, x0: Any = None, seed: int = 0, tolerance: float = 1e-8,
          singular_tolerance: float = 1e-12, on_degenerate: str = "warn") -> SCYFIResult:
    """Fixed points (``order=1``) or cycles of minimal period ``order`` of a PLRNN,
    shallow PLRNN (plain or clipped) or AL-RNN, exactly, by SCYFI (see the module docstring).

    Parameters
    ----------
    obj
        A :class:`tsrnn.nn.PLRNN`, :class:`~tsrnn.nn.ShallowPLRNN` or :class:`~tsrnn.nn.ALRNN`
        module, or a fitted :mod:`tsrnn.dsr` estimator or its ``module_`` (the latent map,
        autonomous part: any input term C s_t is left out).
    order : int
        The period k (>= 1).
    cycles : bool, optional
        Return :class:`PiecewiseLinearCycle` objects (True) or :class:`PiecewiseLinearFixedPoint`
        objects (False, ``order=1`` only). Default: fixed points for ``order=1``.
    exhaustive : bool, optional
        Try every subregion sequence (exact: every isolated cycle is found) instead of the
        heuristic search. Default: when there are at most ``max_exhaustive`` sequences
        (2^(R k) for R ReLU units: an AL-RNN with small P, or a tiny network).
    max_exhaustive : int
        See ``exhaustive``.
    outer_loop_iterations : int, optional
        Heuristic search: restarts in a row without a new cycle before it stops (default
        1000; the authors' code uses 10 for its 2-D examples: unstable cycles of larger
        networks are reached by few guesses, so more restarts find more of them).
    inner_loop_iterations : int, optional
        Heuristic search: guesses per restart (default 20 + 10 k).
    n_chains : int
        Heuristic search: guesses advanced together (one batched solve per round).
    x0 : array (M,) or (N, M), optional
        Latent states whose subregions (and those along their orbits) seed the heuristic
        search (default: states along short runs of the model from its own initial
        states, random states around them, and random sign patterns).
    seed : int
        For the random restarts.
    tolerance : float
        A self-consistent candidate is accepted when ||F^k(z) - z|| <= tolerance * max(1, ||z||)
        (guards against ill-conditioned systems).
    singular_tolerance : float
        I - J_k ... J_1 counts as singular when its smallest singular value is at most
        this times max(1, its largest).
    on_degenerate : {"warn", "raise", "ignore"}
        What to do when a continuum of fixed points or cycles (singular system with
        self-consistent solutions) is met.

    Returns
    -------
    SCYFIResult
        A list of :class:`PiecewiseLinearFixedPoint` (sorted by location) or
        :class:`PiecewiseLinearCycle` (first point the lexicographically smallest, sorted by
        it), with ``degenerate``, ``continua``, ``exhaustive`` and ``n_candidates``. Locations
        are latent states; for an estimator, ``latent_to_data`` maps them to observations.
        Eigenvalues are those of the Jacobian (of the k-fold map along a cycle).
    """
    order = check_positive(order, "order", integer=True)
    check_option(on_degenerate, "on_degenerate", ON_DEGENERATE)
    check_positive(max_exhaustive, "max_exhaustive", integer=True)
    n_chains = check_positive(n_chains, "n_chains", integer=True)
    tolerance = check_positive(tolerance, "tolerance")
    singular_tolerance = check_positive(singular_tolerance, "singular_tolerance")
    outer = check_positive(1000 if outer_loop_iterations is None
                           else outer_loop_iterations, "outer_loop_iterations", integer=True)
    inner = check_positive(20 + 10 * order if inner_loop_iterations is None
                           else inner_loop_iterations, "inner_loop_iterations", integer=True)
    if cycles is None:
        cycles = order > 1
    elif not cycles and order > 1:
        raise ValueError(f"cycles=False (fixed points) needs order=1, got order={order}")
    module = _piecewise_linear_module(obj)
    if module is None:
        raise TypeError(
            f"SCYFI applies to piecewise-linear models: a tsrnn.nn PLRNN, ShallowPLRNN or "
            f"ALRNN, or a fitted tsrnn.dsr estimator; got {type(obj).__name__} (use "
            "method='newton' for other maps)")
    if hasattr(obj, "_check_fitted") and obj is not module:
        obj._check_fitted()
    model = _AffinePieces(module)
    if x0 is not None:
        x0 = _check_states(x0, model.dim)

    n_sequences = 2.0 ** (model.n_bits * order)
    if exhaustive is None:
        exhaustive = n_sequences <= max_exhaustive
    elif exhaustive and n_sequences > _EXHAUSTIVE_LIMIT:
        raise ValueError(
            f"exhaustive search over {n_sequences:.3g} subregion sequences ({model.n_bits} "
            f"ReLU units, order {order}) is out of reach (limit {_EXHAUSTIVE_LIMIT}); use "
            "exhaustive=False (the heuristic search)")
    collector = _Collector(tolerance)
    rng = np.random.default_rng(check_positive(seed, "seed", integer=True, allow_zero=True))
    if exhaustive:
        _exhaustive(model, order, collector, singular_tolerance)
    else:
        _heuristic(obj, model, order, collector, singular_tolerance, outer, inner, n_chains,
                   x0, rng)

    if collector.continua and on_degenerate != "ignore":
        listed = "; ".join(str(codes) for codes in list(collector.continua.values())[:5])
        what = "fixed points" if order == 1 else f"{order}-cycles"
        message = (
            f"I - J_k ... J_1 is singular in {len(collector.continua)} subregion sequence(s) "
            f"with self-consistent solutions ({listed}): the {model.name} has a continuum of "
            f"{what} there (e.g. a line attractor), which is not returned (not isolated)")
        if on_degenerate == "raise":
            raise np.linalg.LinAlgError(message)
        warn(message)

    results = []
    double = copy.deepcopy(module).double().eval()
    for points, patterns in collector.cycles.values():
        start = int(np.lexsort(points.T[::-1])[0])  # canonical first point (as Newton's)
        points, patterns = np.roll(points, -start, axis=0), np.roll(patterns, -start, axis=0)
        residual, product = _verify(double, points)
        eigenvalues = np.linalg.eigvals(product)
        stable = bool(np.all(np.abs(eigenvalues) < 1.0))
        if cycles:
            results.append(PiecewiseLinearCycle(
                points, eigenvalues, stable, residual, regions=patterns,
                codes=tuple(_code(p) for p in patterns)))
        else:
            results.append(PiecewiseLinearFixedPoint(
                points[0], eigenvalues, stable, residual, is_map=True, region=patterns[0],
                code=_code(patterns[0])))
    if cycles:
        results.sort(key=lambda cycle: tuple(cycle.points[0]))
    else:
        results.sort(key=lambda point: tuple(point.location))
    return SCYFIResult(results, degenerate=collector.degenerate.values(),
                       continua=collector.continua.values(), exhaustive=exhaustive,
                       n_candidates=collector.n_candidates)
