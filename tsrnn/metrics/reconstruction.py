"""Measures of dynamical-systems reconstruction (DSR): does a generated series behave like the
true system, in the short term (prediction) and in the long term (geometry and time scales)?

- Valid prediction time (Vlachas et al., "Backpropagation algorithms and Reservoir Computing in
  Recurrent Neural Networks for the forecasting of complex spatiotemporal dynamics",
  Neural Networks 2020):

      e(t) = ‖ŷ_t − y_t‖ / sqrt(mean_t ‖y_t − ȳ‖²),    VPT = time before the first e(t) > threshold

- State-space divergence D_stsp = KL(p_true ‖ p_gen) between the occupation densities of state
  space, from smoothed histograms (fewer than 6 dimensions) or from Gaussian mixtures with one
  component per point (Koppe et al., "Identifying nonlinear dynamical systems via generative
  recurrent neural networks with applications to fMRI", PLoS Comput. Biol. 2019; Brenner et al.,
  "Tractable dendritic RNNs for reconstructing nonlinear dynamical systems", ICML 2022).
- Power-spectrum distance D_H, the Hellinger distance between smoothed power spectra, averaged
  over dimensions (Mikhaeil et al. 2022; Hess et al., "Generalized teacher forcing for learning
  chaotic dynamics", ICML 2023):

      D_H = mean_j sqrt(1 − Σ_ω sqrt(p_j(ω) q_j(ω)))

- n-step prediction error PE(n): mean squared error of n-step free predictions started from
  every point of a test series (Koppe et al. 2019; Brenner et al. 2022).

The definitions follow tsrnn's SPEC (section 3); where they differ from the authors' code, the
docstrings say so and an option reproduces the published variant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from tsrnn._validation import as_float_array, check_bool, check_option, check_positive, warn
from tsrnn.metrics.forecasting import _check_same_labels

__all__ = [
    "n_step_prediction_error",
    "power_spectrum_distance",
    "prediction_error",
    "state_space_divergence",
    "valid_prediction_time",
]

# Upper bound on the number of float64 entries of one (samples × centres) distance block in the
# Gaussian-mixture branch: 4M entries = 32 MB, whatever the number of samples or points.
_GMM_BLOCK_ENTRIES = 1 << 22


def _as_series(data: Any, name: str, *, min_length: int = 2,
               generated: bool = False) -> np.ndarray:
    """Read ``data`` of shape (T,) or (T, d) as a float64 array of shape (T, d)
    (``generated``: a model's run, whose NaN or inf mean that it diverged)."""
    array = as_float_array(data, name, ndim=(1, 2), allow_nan=generated)
    if generated and not np.isfinite(array).all():
        row = int(np.argwhere(~np.isfinite(array))[0][0])
        raise ValueError(f"{name} leaves the finite range at step {row}: the generated run "
                         "diverged, and its attractor measures are not defined (count the "
                         "model as failed)")
    if array.ndim == 1:
        array = array[:, None]
    if array.shape[0] < min_length:
        raise ValueError(
            f"{name} needs at least {min_length} time steps, got shape {array.shape}"
        )
    if array.shape[1] == 0:
        raise ValueError(f"{name} has no dimensions, got shape {array.shape}")
    return array


def _warn_if_transposed(x: np.ndarray, name: str) -> None:
    """Series are (T, d): fewer time steps than dimensions is almost always a transpose."""
    if x.shape[0] < x.shape[1]:
        warn(f"{name} has shape {x.shape}: {x.shape[0]} time steps of {x.shape[1]} "
             "dimensions; series are (T, d), so if it is (d, T), pass its transpose")


def _check_same_dim(x_true: np.ndarray, x_gen: np.ndarray, names: tuple[str, str]) -> None:
    if x_true.shape[1] != x_gen.shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of dimensions, got shapes "
            f"{x_true.shape} and {x_gen.shape}"
        )


# ------------------------------------------------------------------------ valid prediction time


def valid_prediction_time(
    y_true: Any,
    y_pred: Any,
    dt: float = 1.0,
    lyapunov_exponent: float | None = None,
    threshold: float = 0.4,
) -> float:
    r"""Valid prediction time (VPT) of a forecast, in time units or in Lyapunov times.

    .. math::

        e(t) = \frac{\lVert \hat y_t - y_t \rVert}
                    {\sqrt{\operatorname{mean}_t \lVert y_t - \bar y \rVert^2}},
        \qquad
        \mathrm{VPT} = n \, \Delta t \;(\times \lambda_{\max}),

    where the normaliser is computed from ``y_true`` over the compared window and ``n`` is the
    number of leading steps with ``e(t) <= threshold``, i.e. the index of the first step whose
    error exceeds the threshold.

    Step convention: ``y_pred[0]`` is the first forecast step, one step ``dt`` after the end of
    the context, so ``y_pred[k]`` lies at time ``(k + 1) * dt``. If the first exceedance is at
    index ``n``, the forecast was valid at times ``dt, ..., n * dt`` and the VPT is ``n * dt``
    (Vlachas et al.: the largest time up to which every error stays below the threshold). A
    forecast that is wrong from the first step has VPT 0; one that never exceeds the threshold
    has VPT ``T * dt``, the whole compared window (a lower bound of the true VPT).

    Parameters
    ----------
    y_true : array of shape (T,) or (T, d)
        The true continuation, ``T >= 2``; must be finite and not constant.
    y_pred : array of the same shape
        The forecast. Non-finite values (a diverged closed-loop forecast) count as errors above
        the threshold from that step on, rather than raising. Rows are compared by position;
        when both are pandas objects their index (and columns) must be the same.
    dt : float, default 1.0
        Time between two steps.
    lyapunov_exponent : float, optional
        Largest Lyapunov exponent ``λ_max`` per time unit (> 0). When given, the VPT is
        returned in Lyapunov times ``n * dt * λ_max``.
    threshold : float, default 0.4
        Error level that ends the valid prediction. tsrnn uses 0.4; Vlachas et al. 2020 use 0.5.

    Returns
    -------
    float
        ``n * dt`` (time units) or ``n * dt * lyapunov_exponent`` (Lyapunov times).

    References
    ----------
    Vlachas et al., "Backpropagation algorithms and Reservoir Computing in Recurrent Neural
    Networks for the forecasting of complex spatiotemporal dynamics", Neural Networks 2020.
    """
    dt = check_positive(dt, "dt")
    threshold = check_positive(threshold, "threshold")
    if lyapunov_exponent is not None:
        lyapunov_exponent = check_positive(lyapunov_exponent, "lyapunov_exponent")
    _check_same_labels(y_true, y_pred)
    truth = as_float_array(y_true, "y_true", ndim=(1, 2))
    # Non-finite forecasts are allowed (see the docstring); they are handled below.
    prediction = as_float_array(y_pred, "y_pred", ndim=(1, 2), allow_nan=True)
    if prediction.shape != truth.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape, got {truth.shape} and "
            f"{prediction.shape}"
        )
    truth, prediction = _as_series(truth, "y_true"), prediction.reshape(truth.shape[0], -1)

    # Constancy is tested exactly (max == min): the round-off of a mean can leave a
    # constant series a tiny nonzero spread.
    if np.all(np.ptp(truth, axis=0) == 0.0):
        raise ValueError("y_true is constant over the compared window; the VPT is undefined")
    # e(t) is unchanged when both series are divided by one constant; dividing by max |y_true|
    # first keeps the squares of data beyond 1e154 (or below 1e-154) from overflowing to an
    # infinite (or underflowing to a zero) normaliser, which would read as VPT 0.
    magnitude = np.max(np.abs(truth))
    with np.errstate(over="ignore", invalid="ignore"):
        truth, prediction = truth / magnitude, prediction / magnitude
        scale = np.sqrt(np.mean(np.sum((truth - truth.mean(axis=0)) ** 2, axis=1)))
        error = np.linalg.norm(prediction - truth, axis=1) / scale
    invalid = ~(error <= threshold)  # NaN errors (from NaN or inf forecasts) count as invalid
    n_valid = int(np.argmax(invalid)) if invalid.any() else len(error)
    vpt = n_valid * dt
    return float(vpt * lyapunov_exponent) if lyapunov_exponent is not None else float(vpt)


# --------------------------------------------------------------------- state-space divergence

_SSD_METHODS = ("auto", "binning", "gmm")
_SSD_SMOOTHINGS = ("probabilities", "counts")
_SSD_OUT_OF_RANGE = ("clip", "drop")


def state_space_divergence(
    x_true: Any,
    x_gen: Any,
    n_bins: int = 30,
    *,
    method: str = "auto",
    smoothing: str = "probabilities",
    epsilon: float = 1e-5,
    margin: float = 0.1,
    out_of_range: str = "clip",
    gmm_scaling: float = 1.0,
    n_samples: int = 1000,
    max_points: int = 10_000,
    random_state: int | np.random.Generator | None = 0,
) -> float:
    r"""State-space divergence D_stsp = KL(p_true ‖ p_gen) between occupation densities.

    **Binning** (``method="binning"``, the default below 6 dimensions). Each dimension ``j`` is
    cut into ``n_bins`` equal bins over ``[min_j − margin·σ_j, max_j + margin·σ_j]`` of the
    *true* data (``σ_j`` its standard deviation with ``ddof=1``, as in the authors' Julia code),
    ``K = n_bins**d`` bins in all. With ``h``, ``g`` the bin counts of the ``N`` true and ``M``
    generated points and ``ε = epsilon``:

    .. math::

        \tilde p = \frac{h/N + ε}{1 + εK}, \quad \tilde q = \frac{g/M + ε}{1 + εK}
        \quad(\text{smoothing="probabilities"}), \qquad
        D_{stsp} = \sum_{k=1}^{K} \tilde p_k \log \frac{\tilde p_k}{\tilde q_k}.

    ``smoothing="counts"`` smooths raw counts as the lab's Julia code does,
    ``p̃ = (h + ε)/(N + εK)`` and ``q̃ = (g + ε)/(M + εK)``; then an empty generated bin weighs
    far more and the value grows with the series length, so use it only to compare with
    published tables (with ``out_of_range="drop"``, which is what that code does).

    The histograms are sparse: only occupied bins are stored, so 5 dimensions of 30 bins
    (24.3 M bins) cost memory in the number of points, not of bins. The ``K − |U|`` bins empty
    in both series (``U`` the occupied ones) enter in closed form: there ``p̃ = ε/(1 + εK)``
    for both series with probability smoothing, so each contributes exactly 0; with count
    smoothing ``p̃ = ε/(N + εK)`` and ``q̃ = ε/(M + εK)`` differ when ``N ≠ M``, and their
    joint contribution ``(K − |U|) p̃ log(p̃/q̃)`` is added.

    **Gaussian mixtures** (``method="gmm"``, the default from 6 dimensions on, where histograms
    are hopelessly sparse). Each series defines a mixture with one isotropic component
    ``N(x_t, σ² I)`` per point (``σ² = gmm_scaling``) over its first ``max_points`` points; the
    KL divergence is estimated by Monte Carlo with ``n_samples`` draws ``s_i`` from the true
    mixture, ``D ≈ mean_i [log p(s_i) − log q(s_i)]`` (Hershey & Olsen 2007). Log-densities are
    computed with log-sum-exp in float64, in blocks of bounded size, so no sample is lost to
    underflow (the Julia code drops those). The estimate is unbiased but noisy, and may come out
    slightly negative for near-identical data; it depends on the scale of the data, so
    standardise first, as the authors do.

    Parameters
    ----------
    x_true : array of shape (T, d) or (T,)
        Reference trajectory, ``T >= 2``, finite, not constant in any dimension (binning).
    x_gen : array of shape (T', d) or (T',)
        Generated trajectory with the same ``d``; ``T'`` may differ from ``T``.
    n_bins : int, default 30
        Bins per dimension (binning only).
    method : {"auto", "binning", "gmm"}, default "auto"
        ``"auto"`` bins below 6 dimensions and uses Gaussian mixtures from 6 on.
    smoothing : {"probabilities", "counts"}, default "probabilities"
        Where ε is added (see above). "probabilities" is tsrnn's definition.
    epsilon : float, default 1e-5
        Smoothing constant ε (binning only).
    margin : float, default 0.1
        Margin around the true data's range, in standard deviations (binning only).
    out_of_range : {"clip", "drop"}, default "clip"
        What happens to generated points outside the binning range. "clip" counts them in the
        nearest edge bin: both histograms stay distributions on the same K bins, and mass a
        model sends away from the attractor still lowers q̃ where the true data lie. "drop"
        discards them and renormalises over the remaining points, as the authors' code does;
        that hides such mass (a model with half its points far away reads as well as one
        with none there), and gives NaN when no generated point is left.
    gmm_scaling : float, default 1.0
        Variance σ² of each mixture component (Gaussian mixtures only).
    n_samples : int, default 1000
        Monte Carlo samples (Gaussian mixtures only).
    max_points : int, default 10000
        Only the first ``max_points`` points of each series form its mixture.
    random_state : int, numpy Generator or None, default 0
        Seed of the Monte Carlo samples. A fixed default makes the measure deterministic, and
        comparing several generated series against one true series then uses the same samples
        for each (common random numbers), so their differences are not blurred by sampling noise.

    Returns
    -------
    float
        The divergence (nats); 0 for identical data under binning.

    References
    ----------
    Koppe et al., "Identifying nonlinear dynamical systems via generative recurrent neural
    networks with applications to fMRI", PLoS Computational Biology 2019.
    Brenner et al., "Tractable dendritic RNNs for reconstructing nonlinear dynamical systems",
    ICML 2022.
    Hess et al., "Generalized teacher forcing for learning chaotic dynamics", ICML 2023.
    Hershey & Olsen, "Approximating the Kullback Leibler divergence between Gaussian mixture
    models", ICASSP 2007.
    """
    check_option(method, "method", _SSD_METHODS)
    check_option(smoothing, "smoothing", _SSD_SMOOTHINGS)
    check_option(out_of_range, "out_of_range", _SSD_OUT_OF_RANGE)
    n_bins = check_positive(n_bins, "n_bins", integer=True)
    if n_bins < 2:  # one bin holds everything: D_stsp would be 0 for any pair of series
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    epsilon = check_positive(epsilon, "epsilon")
    margin = check_positive(margin, "margin", allow_zero=True)
    gmm_scaling = check_positive(gmm_scaling, "gmm_scaling")
    n_samples = check_positive(n_samples, "n_samples", integer=True)
    max_points = check_positive(max_points, "max_points", integer=True)
    truth = _as_series(x_true, "x_true")
    generated = _as_series(x_gen, "x_gen", generated=True)
    _check_same_dim(truth, generated, ("x_true", "x_gen"))
    _warn_if_transposed(truth, "x_true")

    if method == "auto":
        method = "binning" if truth.shape[1] < 6 else "gmm"
    if method == "binning":
        return BinnedReference(truth, n_bins, margin).divergence(generated, smoothing, epsilon,
                                                                 out_of_range)
    rng = np.random.default_rng(random_state)
    return _gmm_divergence(truth[:max_points], generated[:max_points], gmm_scaling, n_samples, rng)


# Up to this many bins the occupied ones are found by counting into all of them (int64
# counts, 32 MiB an array) rather than by sorting the points' bin indices.
_DIRECT_COUNT_BINS = 1 << 22


def _bin_indices(points: np.ndarray, low: np.ndarray, width: np.ndarray, n_bins: int,
                 need_inside: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Flat bin index of each point (edge bins absorb points outside) and, if asked, an
    inside mask (None otherwise: a costly reduction the default "clip" never reads)."""
    with np.errstate(over="ignore"):  # a diverged generated point may overflow to ±inf: clipped
        cell = np.floor((points - low) / width)
    inside = np.all((cell >= 0) & (cell < n_bins), axis=1) if need_inside else None
    cell = np.clip(cell, 0, n_bins - 1).astype(np.int64)
    # Row-major flat index Σ_j cell_j · n_bins^(d−1−j); fits int64 (checked by the caller).
    strides = n_bins ** np.arange(points.shape[1] - 1, -1, -1, dtype=np.int64)
    return cell @ strides, inside


class BinnedReference:
    """The true data's side of the binned D_stsp, computed once for many generated sets.

    ``state_space_divergence(truth, g, n_bins, method="binning", ...)`` equals
    ``BinnedReference(truth, n_bins, margin).divergence(g, ...)`` exactly; a caller that
    scores many generated sets against the same data (checkpoint selection) bins the data
    once. ``truth`` must be finite, (N, d) with d * log2(n_bins) < 62 and no constant column.
    """

    def __init__(self, truth: np.ndarray, n_bins: int = 30, margin: float = 0.1):
        n_dim = truth.shape[1]
        if n_dim * np.log2(n_bins) >= 62:
            raise ValueError(
                f"n_bins**d = {n_bins}**{n_dim} bins is too many to index; use fewer bins or "
                'method="gmm"'
            )
        constant = np.ptp(truth, axis=0) == 0.0
        if constant.any():
            raise ValueError(
                f"x_true is constant in dimension(s) {np.flatnonzero(constant).tolist()}; "
                "the binning range is empty"
            )
        self.n_bins = n_bins
        self.n_total_bins = n_bins**n_dim
        with np.errstate(over="ignore", invalid="ignore"):
            std = truth.std(axis=0, ddof=1)
        if not np.isfinite(std).all():  # values beyond ~1e154: the squares overflow
            peak = np.max(np.abs(truth), axis=0)
            std = (truth / peak).std(axis=0, ddof=1) * peak
        with np.errstate(over="ignore"):
            self.low = truth.min(axis=0) - margin * std
            high = truth.max(axis=0) + margin * std
        if not (np.isfinite(self.low).all() and np.isfinite(high).all()
                and np.isfinite((high - self.low) / n_bins).all()):
            raise ValueError("x_true spans a range too wide for float64 binning (values near "
                             "1e308); rescale the data")
        self.width = (high - self.low) / n_bins
        self.true_bins, _ = _bin_indices(truth, self.low, self.width, n_bins)
        # Counts on all bins where there are few enough (30^3 = 27,000 here) to count into
        # them directly; else the occupied bins are found by sorting indices (divergence).
        self.true_all = (np.bincount(self.true_bins, minlength=self.n_total_bins)
                         if self.n_total_bins <= _DIRECT_COUNT_BINS else None)

    def divergence(self, generated: np.ndarray, smoothing: str = "probabilities",
                   epsilon: float = 1e-5, out_of_range: str = "clip") -> float:
        """D_stsp of the finite points ``generated`` (M, d) against the data."""
        n_bins, n_total_bins = self.n_bins, self.n_total_bins
        true_bins = self.true_bins
        gen_bins, gen_inside = _bin_indices(generated, self.low, self.width, n_bins,
                                            need_inside=out_of_range == "drop")
        if out_of_range == "drop":
            gen_bins = gen_bins[gen_inside]
            if gen_bins.size == 0:
                return float("nan")  # no generated mass in range: KL undefined (Julia code)

        # Counts on the bins occupied by either set, in increasing bin order; both ways give
        # the same arrays, so the same sum.
        if self.true_all is not None:
            gen_all = np.bincount(gen_bins, minlength=n_total_bins)
            occupied = np.flatnonzero(self.true_all + gen_all)
            true_counts, gen_counts = self.true_all[occupied], gen_all[occupied]
        else:
            occupied, which = np.unique(np.concatenate([true_bins, gen_bins]),
                                        return_inverse=True)
            true_counts = np.bincount(which[: len(true_bins)], minlength=len(occupied))
            gen_counts = np.bincount(which[len(true_bins):], minlength=len(occupied))
        n_true, n_gen = len(true_bins), len(gen_bins)

        if smoothing == "probabilities":
            p = (true_counts / n_true + epsilon) / (1.0 + epsilon * n_total_bins)
            q = (gen_counts / n_gen + epsilon) / (1.0 + epsilon * n_total_bins)
            p_empty = q_empty = epsilon / (1.0 + epsilon * n_total_bins)
        else:
            p = (true_counts + epsilon) / (n_true + epsilon * n_total_bins)
            q = (gen_counts + epsilon) / (n_gen + epsilon * n_total_bins)
            p_empty = epsilon / (n_true + epsilon * n_total_bins)
            q_empty = epsilon / (n_gen + epsilon * n_total_bins)
        n_empty = n_total_bins - len(occupied)
        divergence = np.sum(p * np.log(p / q)) + n_empty * p_empty * np.log(p_empty / q_empty)
        return float(divergence)


def _gmm_log_density(points: np.ndarray, centres: np.ndarray, variance: float) -> np.ndarray:
    """log of (1/N) Σ_i N(x; c_i, variance·I) at each point, shape (n_points,).

    Log-sum-exp over the components, block by block, in place (this is the costly part of the
    mixture branch: 1000 samples × 10 000 components × 2 mixtures by default).
    """
    n_dim = points.shape[1]
    centre_norms = np.einsum("ij,ij->i", centres, centres)
    log_density = np.empty(len(points))
    rows = max(1, _GMM_BLOCK_ENTRIES // len(centres))
    for start in range(0, len(points), rows):
        block = points[start:start + rows]
        # Squared distances ‖x‖² + ‖c‖² − 2 x·c, then the log kernel −d²/(2 variance).
        log_kernel = block @ centres.T
        log_kernel *= -2.0
        log_kernel += np.einsum("ij,ij->i", block, block)[:, None]
        log_kernel += centre_norms
        np.maximum(log_kernel, 0.0, out=log_kernel)  # round-off can make tiny ones negative
        log_kernel *= -0.5 / variance
        # Shifting by the row maximum makes the largest term exp(0) = 1: no underflow to log 0.
        row_max = log_kernel.max(axis=1)
        log_kernel -= row_max[:, None]
        np.exp(log_kernel, out=log_kernel)
        log_density[start:start + rows] = np.log(log_kernel.sum(axis=1)) + row_max
    return log_density - np.log(len(centres)) - 0.5 * n_dim * np.log(2.0 * np.pi * variance)


def _gmm_divergence(truth: np.ndarray, generated: np.ndarray, variance: float, n_samples: int,
                    rng: np.random.Generator) -> float:
    # Shifting both series by the same vector leaves the KL unchanged and keeps the expanded
    # squared distances ‖s‖² + ‖c‖² − 2 s·c free of cancellation for data far from the origin.
    offset = truth.mean(axis=0)
    truth, generated = truth - offset, generated - offset
    component = rng.integers(0, len(truth), size=n_samples)
    samples = truth[component] + np.sqrt(variance) * rng.standard_normal((n_samples,
                                                                          truth.shape[1]))
    log_p = _gmm_log_density(samples, truth, variance)
    log_q = _gmm_log_density(samples, generated, variance)
    return float(np.mean(log_p - log_q))


# ----------------------------------------------------------------- power-spectrum distance


def _smoothed_spectra(x: np.ndarray, sigma: float, name: str, *, allow_constant: bool
                      ) -> np.ndarray:
    """Z-scored, Gaussian-smoothed power spectra normalised to sum 1, shape (T//2 + 1, d).

    A constant dimension has no power once its mean is removed; with ``allow_constant`` its
    spectrum is all zeros (it then shares no power with any spectrum: Hellinger distance 1).
    """
    constant = np.ptp(x, axis=0) == 0.0  # exact: a mean's round-off leaves a tiny spread
    if constant.any() and not allow_constant:
        raise ValueError(
            f"{name} is constant in dimension(s) {np.flatnonzero(constant).tolist()}; "
            "its power spectrum is undefined"
        )
    # z-scores do not change when a dimension is divided by a positive constant; dividing by
    # its largest magnitude first keeps the std of a series beyond 1e154 (a diverging model)
    # from overflowing to inf, which would zero its spectrum and read as distance 1.
    magnitude = np.max(np.abs(x), axis=0)
    x = x / np.where(constant, 1.0, magnitude)
    std = np.where(constant, 1.0, x.std(axis=0))
    z = np.where(constant, 0.0, (x - x.mean(axis=0)) / std)
    power = np.abs(np.fft.rfft(z, axis=0)) ** 2
    power = gaussian_filter1d(power, sigma, axis=0, mode="reflect", truncate=4.0)
    total = power.sum(axis=0)
    return power / np.where(total > 0.0, total, 1.0)


def power_spectrum_distance(
    x_true: Any,
    x_gen: Any,
    sigma: float = 20.0,
    *,
    truncate: bool = False,
) -> float:
    r"""Power-spectrum distance D_H: Hellinger distance of smoothed spectra, mean over dimensions.

    Per dimension ``j`` each series is z-scored, its power spectrum ``|rfft|²`` is smoothed with
    a Gaussian of ``sigma`` frequency bins (``scipy.ndimage.gaussian_filter1d``: radius
    ``4σ``, mode "reflect") and normalised to sum 1, giving ``p_j`` (true) and ``q_j``
    (generated); then

    .. math::

        D_H = \frac{1}{d} \sum_{j=1}^{d} \sqrt{1 - \sum_\omega \sqrt{p_j(\omega)\, q_j(\omega)}},

    with the inside clipped at 0 against round-off. D_H lies in [0, 1]. A generated dimension
    that is constant (e.g. a model stuck at a fixed point) has no power left after z-scoring
    and gets the maximal distance 1. D_H depends on the series length (the frequency grid and
    the smoothing width in bins), so both series must have equal length.

    Parameters
    ----------
    x_true : array of shape (T, d) or (T,)
        Reference series, ``T >= 2``, finite, not constant in any dimension.
    x_gen : array of the same shape
        Generated series.
    sigma : float, default 20.0
        Standard deviation of the smoothing kernel, in frequency bins (> 0).
    truncate : bool, default False
        When the lengths differ: ``False`` raises, ``True`` compares the first
        ``min(T, T')`` steps of both.

    Returns
    -------
    float
        D_H in [0, 1]; 0 for identical spectra.

    References
    ----------
    Mikhaeil, Monfared & Durstewitz, "On the difficulty of learning chaotic dynamics with
    RNNs", NeurIPS 2022.
    Hess et al., "Generalized teacher forcing for learning chaotic dynamics", ICML 2023.
    """
    sigma = check_positive(sigma, "sigma")
    truncate = check_bool(truncate, "truncate")
    truth = _as_series(x_true, "x_true")
    generated = _as_series(x_gen, "x_gen", generated=True)
    _check_same_dim(truth, generated, ("x_true", "x_gen"))
    if len(truth) != len(generated):
        if not truncate:
            raise ValueError(
                f"x_true and x_gen must have the same length (D_H depends on it), got shapes "
                f"{truth.shape} and {generated.shape}; pass truncate=True to compare the first "
                f"{min(len(truth), len(generated))} steps"
            )
        length = min(len(truth), len(generated))
        truth, generated = truth[:length], generated[:length]
    _warn_if_transposed(truth, "x_true")
    n_frequencies = len(truth) // 2 + 1
    if n_frequencies < 2 * sigma:
        # A kernel wider than the spectrum flattens every spectrum towards the same shape:
        # D_H would read near 0 for any pair of series.
        raise ValueError(f"the series have {len(truth)} steps, {n_frequencies} frequency "
                         f"bins, fewer than 2 * sigma = {2 * sigma:g}: the smoothing would "
                         "flatten every spectrum; use longer series or a smaller sigma")

    p = _smoothed_spectra(truth, sigma, "x_true", allow_constant=False)
    q = _smoothed_spectra(generated, sigma, "x_gen", allow_constant=True)
    overlap = np.sum(np.sqrt(p * q), axis=0)
    return float(np.mean(np.sqrt(np.clip(1.0 - overlap, 0.0, None))))


# ------------------------------------------------------------------- n-step prediction error

_PE_REDUCTIONS = ("final", "mean")


def _as_step_function(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a numpy callable or a torch module as ``f(states (B, d)) -> next states (B, d)``."""
    if isinstance(model, torch.nn.Module):
        reference = next(model.parameters(), None)
        if reference is None:
            reference = next(model.buffers(), None)
        dtype = reference.dtype if reference is not None else torch.get_default_dtype()
        device = reference.device if reference is not None else torch.device("cpu")

        def step(states: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                output = model(torch.as_tensor(states, dtype=dtype, device=device))
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    "model must map a (B, d) tensor to a (B, d) tensor, got "
                    f"{type(output).__name__}"
                )
            return output.detach().to("cpu", torch.float64).numpy()

        return step
    if callable(model):
        return lambda states: np.asarray(model(states), dtype=np.float64)
    raise TypeError(
        "model must be a torch.nn.Module or a callable mapping states (B, d) to next states, "
        f"got {type(model).__name__}"
    )


def prediction_error(
    model: Callable[[np.ndarray], np.ndarray] | torch.nn.Module,
    x: Any,
    n_steps: int = 20,
    *,
    reduction: str = "final",
    batch_size: int | None = None,
) -> float:
    r"""n-step prediction error PE(n) of a one-step model on a test series.

    From every start ``i = 0, …, T − n − 1`` the model runs freely (its output fed back as the
    next input) for ``n = n_steps`` steps, ``x̂_{i,0} = x_i``, ``x̂_{i,k} = f(x̂_{i,k−1})``, and
    is compared with the data ``x_{i+k}``:

    .. math::

        \mathrm{PE}(k) = \frac{1}{(T - n)\, d} \sum_{i=0}^{T-n-1} \lVert \hat x_{i,k} - x_{i+k}
        \rVert^2 .

    SPEC's "mean squared error of n-step free predictions" is read, as in the DSR literature,
    as the error of the n-th predicted step: ``reduction="final"`` returns ``PE(n)``;
    ``reduction="mean"`` returns ``(1/n) Σ_{k=1}^{n} PE(k)``, the error averaged over the whole
    predicted stretch. All starts run together as one batch (or in chunks of ``batch_size``).
    A model whose predictions diverge gives ``inf`` or ``nan``.

    Parameters
    ----------
    model : callable or torch.nn.Module
        One step ahead for a batch of states: a callable taking and returning numpy arrays of
        shape (B, d), or a module mapping (B, d) tensors to (B, d) tensors. A module runs under
        ``torch.no_grad()`` in eval mode (its previous mode is restored), with the dtype and
        device of its parameters.
    x : array of shape (T, d) or (T,)
        Test series, ``T > n_steps``; (T,) is read as (T, 1).
    n_steps : int, default 20
        Prediction horizon ``n``.
    reduction : {"final", "mean"}, default "final"
        Error of the n-th step, or mean over steps 1 to n.
    batch_size : int, optional
        Number of starts predicted together; ``None`` runs all at once.

    Returns
    -------
    float
        Mean squared error (per dimension, in the units of ``x`` squared).

    References
    ----------
    Koppe et al., "Identifying nonlinear dynamical systems via generative recurrent neural
    networks with applications to fMRI", PLoS Computational Biology 2019.
    Brenner et al., "Tractable dendritic RNNs for reconstructing nonlinear dynamical systems",
    ICML 2022.
    """
    check_option(reduction, "reduction", _PE_REDUCTIONS)
    n_steps = check_positive(n_steps, "n_steps", integer=True)
    series = _as_series(x, "x", min_length=2)
    if len(series) <= n_steps:
        raise ValueError(
            f"x needs more than n_steps = {n_steps} time steps, got shape {series.shape}"
        )
    n_starts = len(series) - n_steps
    batch_size = n_starts if batch_size is None else check_positive(batch_size, "batch_size",
                                                                     integer=True)
    step = _as_step_function(model)

    was_training = isinstance(model, torch.nn.Module) and model.training
    if was_training:
        model.eval()
    try:
        squared_error = np.zeros(n_steps)  # Σ over starts and dimensions, per step k = 1..n
        for first in range(0, n_starts, batch_size):
            starts = np.arange(first, min(first + batch_size, n_starts))
            states = series[starts]
            for k in range(1, n_steps + 1):
                states = step(states)
                if states.shape != (len(starts), series.shape[1]):
                    raise ValueError(
                        f"model returned shape {states.shape} for input of shape "
                        f"{(len(starts), series.shape[1])}; it must map (B, d) to (B, d)"
                    )
                with np.errstate(over="ignore", invalid="ignore"):
                    squared_error[k - 1] += np.sum((states - series[starts + k]) ** 2)
    finally:
        if was_training:
            model.train()

    per_step = squared_error / (n_starts * series.shape[1])
    return float(per_step[-1] if reduction == "final" else per_step.mean())


n_step_prediction_error = prediction_error
