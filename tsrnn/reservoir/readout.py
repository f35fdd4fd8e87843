"""Linear readouts of reservoir features: streaming ridge regression, RLS and LMS.

Ridge regression with a fitted, unpenalised intercept (as scikit-learn's ``Ridge`` and
reservoirpy's ``Ridge`` node):

    W_out = (Phi_c^T Phi_c + lambda I)^{-1} Phi_c^T Y_c,   b = mean(Y) - mean(Phi) W_out,

with Phi_c, Y_c the centred features and targets. Only the sums Phi^T Phi, Phi^T Y, sum Phi,
sum Y and the count are kept, accumulated in float64 batch by batch, so memory does not grow
with the length of the series (reservoirpy's memory blow-up, its issue #26, came from
concatenating all states) and several trajectories simply add up.

Solvers: ``"cholesky"`` (fast; the regularised Gram matrix is symmetric positive definite),
``"svd"`` (eigen-decomposition of the Gram matrix: robust for tiny ridge), ``"lstsq"``
(least squares on the Gram system, for singular cases).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.linalg as linalg
import scipy.linalg.blas as scipy_blas
import torch

from .._validation import check_in_range, check_option, check_positive
from ._blas import limit_blas, syrk_lower

SOLVERS = ("cholesky", "svd", "lstsq")


class RidgeAccumulator:
    """Sufficient statistics of a ridge regression, accumulated in float64.

    All of them are blocks of one symmetric matrix, the moments M = A^T A of the augmented
    rows A = [Phi, 1, Y] (n, F + 1 + d): Phi^T Phi, sum Phi (the row of the column of ones),
    the count, Phi^T Y and sum Y. Only its lower triangle is kept and updated, by BLAS's
    symmetric rank-k update in place, so a batch costs one pass of one BLAS call (no
    temporary, no symmetrising copy, no separate passes for the sums and the cross
    products). Rows already laid out as [Phi, 1, Y] go in without a copy
    (:meth:`update_augmented`).

    Parameters
    ----------
    n_features, n_targets : int
    """

    def __init__(self, n_features: int, n_targets: int):
        self.n_features, self.n_targets = int(n_features), int(n_targets)
        width = self.n_features + 1 + self.n_targets
        self._moments = np.zeros((width, width), order="F")  # lower triangle of M

    # The statistics, as blocks of the lower triangle of M (F the number of features).
    @property
    def gram(self) -> np.ndarray:
        """Phi^T Phi (F, F), a new symmetric array."""
        lower = np.tril(self._moments[:self.n_features, :self.n_features])
        return lower + np.tril(lower, -1).T

    @gram.setter
    def gram(self, value: np.ndarray) -> None:
        f = self.n_features
        self._moments[:f, :f] = np.tril(np.asarray(value, dtype=np.float64))

    @property
    def feature_sum(self) -> np.ndarray:
        """sum of Phi over the rows (F,)."""
        return self._moments[self.n_features, :self.n_features].copy()

    @feature_sum.setter
    def feature_sum(self, value: np.ndarray) -> None:
        self._moments[self.n_features, :self.n_features] = value

    @property
    def count(self) -> int:
        """The number of rows seen (summed ones: exact below 2^53)."""
        return round(float(self._moments[self.n_features, self.n_features]))

    @count.setter
    def count(self, value: int) -> None:
        self._moments[self.n_features, self.n_features] = value

    @property
    def cross(self) -> np.ndarray:
        """Phi^T Y (F, d), a new array."""
        return self._moments[self.n_features + 1:, :self.n_features].T.copy()

    @cross.setter
    def cross(self, value: np.ndarray) -> None:
        self._moments[self.n_features + 1:, :self.n_features] = np.asarray(value).T

    @property
    def target_sum(self) -> np.ndarray:
        """sum of Y over the rows (d,)."""
        return self._moments[self.n_features + 1:, self.n_features].copy()

    @target_sum.setter
    def target_sum(self, value: np.ndarray) -> None:
        self._moments[self.n_features + 1:, self.n_features] = value

    def state(self) -> dict:
        """The statistics as plain arrays (to save them with an estimator)."""
        return {"gram": self.gram, "cross": self.cross, "feature_sum": self.feature_sum,
                "target_sum": self.target_sum, "count": self.count}

    @classmethod
    def from_state(cls, state: dict) -> RidgeAccumulator:
        accumulator = cls(*np.shape(state["cross"]))
        for name, value in state.items():
            setattr(accumulator, name, value)
        return accumulator

    def update(self, features, targets) -> None:
        """Add a batch: ``features`` (n, F) and ``targets`` (n, d), arrays or tensors."""
        if isinstance(features, torch.Tensor):
            if features.device.type != "cpu":
                self._update_on_device(features, targets)
                return
            features, targets = features.numpy(), targets.numpy()
        f = np.asarray(features, dtype=np.float64)
        t = np.asarray(targets, dtype=np.float64).reshape(f.shape[0], -1)
        self._check_widths(f.shape[1], t.shape[1])
        rows = np.empty((f.shape[0], self._moments.shape[0]))
        rows[:, :self.n_features] = f
        rows[:, self.n_features] = 1.0
        rows[:, self.n_features + 1:] = t
        self.update_augmented(rows)

    def _check_widths(self, n_features: int, n_targets: int) -> None:
        if n_features != self.n_features or n_targets != self.n_targets:
            raise ValueError(f"a batch of {n_features} features and {n_targets} targets does "
                             f"not fit {self.n_features} and {self.n_targets}")

    def _update_on_device(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        """On a GPU the products run there, in float64, and only M comes back (its upper
        triangle is never read)."""
        f = features.double()
        t = targets.double().reshape(f.shape[0], -1)
        self._check_widths(f.shape[1], t.shape[1])  # before the product, as on the CPU
        rows = torch.cat([f, f.new_ones((f.shape[0], 1)), t], 1)
        self._moments += (rows.T @ rows).cpu().numpy()

    def update_augmented(self, rows: np.ndarray) -> None:
        """Add a batch laid out as ``rows = [Phi, 1, Y]`` (n, F + 1 + d), a C-contiguous
        float64 array (read, not modified). Releases the GIL while BLAS runs, so
        accumulators in different threads update side by side."""
        syrk_lower(rows, self._moments)

    def merge(self, other: RidgeAccumulator) -> None:
        """Add the statistics of another accumulator (of the same sizes)."""
        self.merge_many([other])

    def merge_many(self, others: list[RidgeAccumulator], threads: int = 1) -> None:
        """Add the statistics of several accumulators, in their order: the same sums, to the
        bit, as merging them one by one. With ``threads`` > 1 the column blocks of the
        moment matrix are added in parallel (each column still sees the accumulators in
        order): merging the 12 per-worker sums of an 8-thread fit one by one took 13 ms."""
        for other in others:
            if (other._moments.shape != self._moments.shape
                    or other.n_features != self.n_features):
                raise ValueError(f"cannot merge statistics of {other.cross.shape} into "
                                 f"{self.cross.shape}")
        moments = self._moments  # Fortran order: a block of columns is contiguous

        def add(first: int, stop: int) -> None:
            for other in others:
                moments[:, first:stop] += other._moments[:, first:stop]

        width = moments.shape[1]
        threads = max(1, min(int(threads), len(others), width))
        if threads == 1:
            add(0, width)
            return
        edges = np.linspace(0, width, threads + 1).round().astype(int)
        with ThreadPoolExecutor(threads) as pool:  # numpy releases the GIL for the sums
            list(pool.map(add, edges[:-1], edges[1:]))

    def solve(self, ridge: float, solver: str = "cholesky", fit_intercept: bool = True
              ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(weights (F, d), intercept (d,))``."""
        check_positive(ridge, "ridge", allow_zero=True)
        check_option(solver, "solver", SOLVERS)
        if self.count == 0:
            raise ValueError("the readout saw no training samples (is warmup longer than the "
                             "series?)")
        f = self.n_features
        # Only the lower triangle is formed (all a Cholesky factorisation reads): a copy of
        # that block, centred by a rank-one update in place (BLAS dsyr), no symmetrising.
        gram, cross = self._moments[:f, :f].copy(order="F"), self.cross  # new arrays
        if fit_intercept:
            mean_f = self.feature_sum / self.count
            mean_t = self.target_sum / self.count
            gram = scipy_blas.dsyr(-float(self.count), mean_f, lower=1, a=gram, overwrite_a=1)
            cross -= self.count * np.outer(mean_f, mean_t)
        gram[np.diag_indices(f)] += ridge
        weights = solve_symmetric(gram, cross, solver, lower_only=True)
        intercept = (mean_t - mean_f @ weights) if fit_intercept else np.zeros(cross.shape[1])
        return weights, intercept


# Systems up to this size are factorised on one BLAS thread (see solve_symmetric).
_SINGLE_THREAD_MAX = 2048


def solve_symmetric(matrix: np.ndarray, rhs: np.ndarray, solver: str, *,
                    lower_only: bool = False) -> np.ndarray:
    """Solve ``matrix @ x = rhs`` for a symmetric positive semi-definite ``matrix`` (of
    which only the lower triangle is read when ``lower_only``).

    Up to 2048 unknowns the factorisation runs on one BLAS thread: a 1000 x 1000 Cholesky
    takes ~20 ms on one core, while OpenBLAS's threaded one, which synchronises its threads
    at every block column, took 1.4 s when the two cores of the machine were also busy with
    other processes."""
    if matrix.shape[0] <= _SINGLE_THREAD_MAX:
        with limit_blas(1):  # a no-op without threadpoolctl: then BLAS's own threads
            return _solve_symmetric(matrix, rhs, solver, lower_only)
    return _solve_symmetric(matrix, rhs, solver, lower_only)


def _solve_symmetric(matrix: np.ndarray, rhs: np.ndarray, solver: str,
                     lower_only: bool) -> np.ndarray:
    if solver == "cholesky":
        try:
            factor = linalg.cho_factor(matrix, lower=True, check_finite=False)
            return linalg.cho_solve(factor, rhs, check_finite=False)
        except linalg.LinAlgError:
            solver = "svd"  # not positive definite at this ridge: fall back, robustly
    if lower_only:
        lower = np.tril(matrix)
        matrix = lower + np.tril(lower, -1).T
    if solver == "svd":
        values, vectors = np.linalg.eigh(matrix)
        cutoff = values.max() * matrix.shape[0] * np.finfo(np.float64).eps
        inverse = np.where(values > cutoff, 1.0 / np.where(values > cutoff, values, 1.0), 0.0)
        return vectors @ (inverse[:, None] * (vectors.T @ rhs))
    return np.linalg.lstsq(matrix, rhs, rcond=None)[0]


class RLSReadout:
    """Recursive least squares with a forgetting factor (Haykin, *Adaptive Filter Theory*,
    ch. 10): per sample phi (F,), target y (d,),

        k = P phi / (forgetting + phi^T P phi),  W <- W + k (y - W^T phi)^T,
        P <- (P - k phi^T P) / forgetting.

    ``P`` starts at ``I / regularization``. The features carry a constant 1 for the bias.
    """

    def __init__(self, n_features: int, n_targets: int, forgetting: float = 1.0,
                 regularization: float = 1e-2):
        check_in_range(forgetting, "forgetting", 0.0, 1.0, closed="right")
        check_positive(regularization, "regularization")
        self.forgetting = forgetting
        self.weights = np.zeros((n_features + 1, n_targets))
        self.precision = np.eye(n_features + 1) / regularization

    def state(self) -> dict:
        return {"weights": self.weights, "precision": self.precision}

    @classmethod
    def from_state(cls, state: dict, forgetting: float) -> RLSReadout:
        readout = cls(state["weights"].shape[0] - 1, state["weights"].shape[1], forgetting)
        readout.weights, readout.precision = state["weights"], state["precision"]
        return readout

    def update(self, features: np.ndarray, targets: np.ndarray) -> None:
        for phi, y in zip(np.atleast_2d(features), np.atleast_2d(targets)):
            phi = np.append(phi, 1.0)
            p_phi = self.precision @ phi
            gain = p_phi / (self.forgetting + phi @ p_phi)
            self.weights += np.outer(gain, y - phi @ self.weights)
            self.precision = (self.precision - np.outer(gain, p_phi)) / self.forgetting

    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        return self.weights[:-1], self.weights[-1]


class LMSReadout:
    """Normalised least mean squares (Widrow & Hoff 1960; Nagumo & Noda 1967):

        W <- W + eta phi (y - W^T phi)^T / (eps + ||phi||^2),

    stable for 0 < eta < 2 whatever the scale of the features (plain LMS needs eta below
    2 / lambda_max(E[phi phi^T]), which a reservoir's features make hard to know)."""

    def __init__(self, n_features: int, n_targets: int, learning_rate: float = 0.1):
        check_in_range(learning_rate, "online_learning_rate", 0.0, 2.0, closed="neither")
        self.learning_rate = learning_rate
        self.weights = np.zeros((n_features + 1, n_targets))

    def update(self, features: np.ndarray, targets: np.ndarray) -> None:
        for phi, y in zip(np.atleast_2d(features), np.atleast_2d(targets)):
            phi = np.append(phi, 1.0)
            step = self.learning_rate / (1e-12 + phi @ phi)
            self.weights += step * np.outer(phi, y - phi @ self.weights)

    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        return self.weights[:-1], self.weights[-1]

    def state(self) -> dict:
        return {"weights": self.weights}

    @classmethod
    def from_state(cls, state: dict, learning_rate: float) -> LMSReadout:
        readout = cls(state["weights"].shape[0] - 1, state["weights"].shape[1], learning_rate)
        readout.weights = state["weights"]
        return readout

