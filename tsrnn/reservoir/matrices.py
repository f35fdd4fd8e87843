"""Random weight matrices of reservoirs.

The recurrent matrix sets the memory and stability of a reservoir through its spectral radius
rho(W), the largest modulus of its eigenvalues (Jaeger 2001, "The 'echo state' approach to
analysing and training recurrent neural networks", GMD Report 148; Lukosevicius 2012, "A
practical guide to applying echo state networks").

- Sparse matrices are scaled to the requested radius *exactly*: the largest eigenvalue
  modulus is computed by ARPACK (implicitly restarted Arnoldi) on the sparse matrix. The
  eigenvalues of a random matrix fill a disc, so the outermost ones lie close together
  (often a complex pair on top, the next within 1%): asked for one eigenvalue with 20
  Arnoldi vectors (scipy's defaults for k = 1, used by reservoirpy 0.4.2 too), ARPACK's
  restarts can discard the largest and converge to a smaller one; on 30 random 1000-unit
  matrices of connectivity 0.02 that gave a radius up to 2.2% too small for 12 of them.
  Asking for six eigenvalues with 40 vectors found the largest in every case (relative
  error < 5e-11 against LAPACK on the dense matrix, also on 35 matrices of 300, 500 and
  2000 units). Now ARPACK keeps 80 vectors and starts from a vector put through 400
  power steps (each normalised), which shrink the components along inner eigenvalues by
  (|lambda| / rho)^400 and leave the outer ones, the largest unshrunk: on 40 random
  1000-unit matrices (connectivity 0.02) 481 mat-vecs in the median (553 at most, the 400
  power steps included) instead of 770 (1479), 28 ms instead of 96 ms in the median
  (69 / 188 ms at most, one thread, shared machine), relative error <= 1e-13 against LAPACK
  (the former setting: 1e-11); on 47 more of 300 to 2000 units, connectivity 0.005 to 0.1,
  normal and uniform values: error <= 2.4e-12, 1.8-4.7x faster in the median. Those figures
  were taken with ones as the vector. A structured W can have its dominant eigenvector
  orthogonal to ones, and then the power steps and ARPACK never see it, so the vector is
  now a fixed random one. On the same 40 matrices: error <= 1.5e-12, 23 ms in the median
  against 17-22 ms from ones in the same runs, within this machine's noise.
- Dense matrices with i.i.d. entries of variance s^2 have their eigenvalues spread
  uniformly over the disc of radius s sqrt(n) (the circular law; Tao & Vu 2010), so scaling
  the entries to variance rho^2 / n sets the radius to rho up to O(n^-1/2) fluctuations
  without an eigen-solve (Gallicchio et al.'s choice for deep reservoirs). ``exact=True``
  computes it instead.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg

from .._validation import as_float_array, check_in_range, check_option, check_positive
from ._blas import limit_blas

DISTRIBUTIONS = ("normal", "uniform")


def _values(rng: np.random.Generator, size: int, distribution: str) -> np.ndarray:
    """Zero-mean values of unit variance."""
    if distribution == "normal":
        return rng.standard_normal(size)
    return rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), size)


# Sparse matrices up to this size go to LAPACK's dense solver (as fast, and exact).
_DENSE_EIGEN_MAX = 256
# ARPACK: eigenvalues asked for, Arnoldi vectors kept, and power steps that prepare its start
# vector (see the module docstring).
_ARPACK_EIGENVALUES = 6
_ARPACK_VECTORS = 80
_POWER_STEPS = 400


def _fast_matvec(matrix) -> tuple:
    """``(x -> matrix @ x, float64 CSR)`` through scipy's C kernel, without the Python
    dispatch of ``csr @ x`` (~10 us less per call, for ARPACK's hundreds of calls)."""
    csr = sparse.csr_array(matrix, dtype=np.float64)
    rows, columns = csr.shape
    try:
        from scipy.sparse._sparsetools import csr_matvec

        indptr, indices, data = csr.indptr, csr.indices, csr.data

        def matvec(x: np.ndarray) -> np.ndarray:
            out = np.zeros(rows)
            csr_matvec(rows, columns, indptr, indices, data,
                       np.ascontiguousarray(x, dtype=np.float64).ravel(), out)
            return out

        matvec(np.zeros(columns))  # a scipy without that private kernel fails here
    except (ImportError, TypeError, ValueError):
        def matvec(x: np.ndarray) -> np.ndarray:
            return csr @ np.asarray(x, dtype=np.float64).ravel()
    return matvec, csr


def spectral_radius(matrix) -> float:
    """Largest eigenvalue modulus of a dense array or a scipy sparse matrix (relative error
    ~1e-12 for sparse matrices, by ARPACK; see the module docstring)."""
    n = matrix.shape[0]
    if (sparse.issparse(matrix) and n > _DENSE_EIGEN_MAX
            and not np.iscomplexobj(matrix.data)):
        matvec, csr = _fast_matvec(matrix)
        # The start vector: a fixed random one after power steps, which shrink the
        # components along the inner eigenvalues (by (|lambda| / rho)^steps) and so leave
        # ARPACK the outer ones to resolve: 2-3x fewer restarts. The largest is the one
        # never shrunk. Random, not ones: see the module docstring.
        start = np.random.default_rng(0).standard_normal(n)
        for _ in range(_POWER_STEPS):
            start = matvec(start)
            norm = np.linalg.norm(start)
            if not 0.0 < norm < np.inf:
                # Annihilated: W is nilpotent on these vectors, where ARPACK's eigenvalues
                # are round-off (0.14 for a strictly triangular 300 x 300 W); LAPACK's
                # dense solver gives the zero radius that :func:`recurrent_matrix` refuses.
                start = None
                break
            start /= norm
        if start is not None:
            operator = sparse_linalg.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
            try:
                values = sparse_linalg.eigs(operator, k=_ARPACK_EIGENVALUES, which="LM",
                                            ncv=min(_ARPACK_VECTORS, n - 1),
                                            return_eigenvectors=False, tol=1e-10,
                                            maxiter=1000, v0=start)
                return float(np.abs(values).max())
            except sparse_linalg.ArpackNoConvergence:
                pass  # fall through to the dense solve
        matrix = csr
    dense = matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)
    if dense.shape[0] > 2048:
        return float(np.abs(np.linalg.eigvals(dense)).max())
    # One BLAS thread, as for the readout's solve: a 200 x 200 eigen-solve takes ~20 ms on
    # one core but took up to 1.1 s with OpenBLAS's threads on a busy two-core machine.
    with limit_blas(1):
        return float(np.abs(np.linalg.eigvals(dense)).max())


def recurrent_matrix(n_units: int, spectral_radius_target: float, connectivity: float,
                     rng: np.random.Generator, *, distribution: str = "normal",
                     dense: bool | None = None, exact: bool | None = None):
    """A random recurrent matrix with the requested spectral radius.

    Parameters
    ----------
    n_units : int
    spectral_radius_target : float
        rho(W) after scaling (> 0).
    connectivity : float in (0, 1]
        Fraction of nonzero entries; rows get their nonzeros at random columns.
    rng : numpy Generator
    distribution : {"normal", "uniform"}
        Distribution of the nonzero values before scaling.
    dense : bool, optional
        Return a dense array (default: when connectivity > 0.25).
    exact : bool, optional
        Compute the spectral radius by an eigen-solve (default: for sparse matrices, and
        dense matrices up to 1000 units); otherwise rely on the circular law.

    Returns
    -------
    scipy.sparse.csr_array or numpy array (n_units, n_units), float64.
    """
    n_units = check_positive(n_units, "n_units", integer=True)
    check_positive(spectral_radius_target, "spectral_radius")
    check_in_range(connectivity, "connectivity", 0.0, 1.0, closed="right")
    check_option(distribution, "distribution", DISTRIBUTIONS)
    dense = connectivity > 0.25 if dense is None else dense
    exact = (not dense or n_units <= 1000) if exact is None else exact
    nonzeros = max(1, round(connectivity * n_units * n_units))
    if connectivity >= 1.0:
        matrix = _values(rng, n_units * n_units, distribution).reshape(n_units, n_units)
    else:
        flat = rng.choice(n_units * n_units, size=nonzeros, replace=False)
        rows, columns = np.divmod(flat, n_units)
        matrix = sparse.csr_array(
            (_values(rng, nonzeros, distribution), (rows, columns)), shape=(n_units, n_units))
        matrix.sort_indices()
        if dense:
            matrix = matrix.toarray()
    if exact:
        radius = spectral_radius(matrix)
        if radius == 0.0:
            # Seen with a small reservoir at a large one's default connectivity: 60 units
            # at 0.02 have 1.2 weights per unit, and a few seeds in ten give W^k = 0.
            suggestion = min(1.0, 10.0 / n_units)
            raise ValueError(
                f"the random recurrent matrix is nilpotent (connectivity {connectivity} is "
                f"too low for {n_units} units: {connectivity * n_units:.2g} recurrent weights "
                f"per unit); raise connectivity, e.g. to {suggestion:.2g} (10 per unit)"
            )
        scale = spectral_radius_target / radius
    else:
        # Circular law: entries of variance c (unit variance times connectivity) give a
        # radius of sqrt(n c).
        scale = spectral_radius_target / np.sqrt(n_units * connectivity)
    return matrix * scale


def input_matrix(n_units: int, n_inputs: int, scaling, connectivity: float,
                 rng: np.random.Generator, *, distribution: str = "uniform") -> np.ndarray:
    """Input weights W_in (n_units, n_inputs), values in [-scaling, scaling] (uniform) or of
    standard deviation ``scaling`` (normal); ``scaling`` may be one number per input."""
    check_in_range(connectivity, "input_connectivity", 0.0, 1.0, closed="right")
    check_option(distribution, "input_distribution", DISTRIBUTIONS)
    # as_float_array refuses strings and other non-numbers, which np.asarray would parse.
    scaling = as_float_array(scaling, "input_scaling", ndim=(0, 1), allow_nan=True)
    if scaling.ndim == 1 and scaling.shape[0] not in (1, n_inputs):
        raise ValueError(f"input_scaling must be one number or one per input ({n_inputs}), "
                         f"got {scaling.shape[0]} values")
    scaling = np.broadcast_to(scaling, (n_inputs,))
    if np.any(scaling < 0) or not np.all(np.isfinite(scaling)):
        raise ValueError(f"input_scaling must be finite and >= 0, got {scaling}")
    if distribution == "uniform":
        weights = rng.uniform(-1.0, 1.0, (n_units, n_inputs))
    else:
        weights = rng.standard_normal((n_units, n_inputs))
    if connectivity < 1.0:
        weights = weights * (rng.random((n_units, n_inputs)) < connectivity)
        unreached = np.flatnonzero(~weights.any(axis=0) & (scaling > 0))
        if unreached.size:
            raise ValueError(f"input(s) {unreached.tolist()} reach no unit: "
                             f"input_connectivity {connectivity} is too small for {n_units} "
                             "units (the reservoir would ignore them); raise it")
    return weights * scaling


def bias_vector(n_units: int, scaling: float, rng: np.random.Generator) -> np.ndarray:
    """Bias b ~ U(-scaling, scaling)^n_units (zero when scaling is 0)."""
    check_positive(scaling, "bias_scaling", allow_zero=True)
    return rng.uniform(-scaling, scaling, n_units) if scaling > 0 else np.zeros(n_units)
