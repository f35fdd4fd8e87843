"""Audit of tsrnn.metrics as a DSR / forecasting scientist uses them.

Part 1 pins D_stsp and D_H against line-by-line re-implementations of the Durstewitz lab's
definitions (GTF-shPLRNN ``src/measures/stsp_measure.jl`` and ``pse.jl``; the AL-RNN Python
``power_spectrum_error``) on Lorenz-63 data: where tsrnn is meant to agree it agrees to
round-off, and where it differs on purpose (SPEC section 3) the difference is pinned.
Part 2 holds the regressions found by the audit, each failing before its fix.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import gaussian_filter1d

from tsrnn.metrics import (
    mean_absolute_error,
    mean_absolute_scaled_error,
    mean_squared_error,
    normalized_root_mean_squared_error,
    power_spectrum_distance,
    root_mean_squared_error,
    state_space_divergence,
    symmetric_mean_absolute_percentage_error,
    valid_prediction_time,
)
from tsrnn.systems import Lorenz63

N_STEPS = 20_000


@pytest.fixture(scope="module")
def lorenz() -> dict[str, np.ndarray]:
    """Lorenz-63 (dt 0.01): truth, an independent clean run, a 5 %-noise copy, a copy shifted
    by half a standard deviation, and a periodic orbit (rho = 160) with a noisy copy."""
    clean = Lorenz63().simulate(2 * N_STEPS, transient=2000, seed=1)
    truth, independent = clean[:N_STEPS], clean[N_STEPS:]
    rng = np.random.default_rng(0)
    noisy = truth + 0.05 * truth.std(axis=0) * rng.standard_normal(truth.shape)
    periodic = Lorenz63(rho=160.0).simulate(N_STEPS, transient=5000, seed=3)
    periodic_noisy = periodic + 0.05 * periodic.std(axis=0) * rng.standard_normal(truth.shape)
    return {"truth": truth, "independent": independent, "noisy": noisy,
            "shifted": independent + 0.5 * truth.std(axis=0), "periodic": periodic,
            "periodic_noisy": periodic_noisy}


# ------------------------------------------------- the lab's definitions, line by line (numpy)

def lab_julia_state_space_divergence(x: np.ndarray, x_gen: np.ndarray, n_bins: int = 30,
                                     alpha: float = 1e-5) -> float:
    """GTF-shPLRNN ``state_space_divergence(X, X̃, n_bins)``, binning "default"."""
    std = x.std(axis=0, ddof=1)  # Julia's std is the corrected one
    low, high = x.min(axis=0) - 0.1 * std, x.max(axis=0) + 0.1 * std

    def histogram(points: np.ndarray) -> np.ndarray:
        # StatsBase fit(Histogram, ..., edges): bins closed on the left, points outside ignored
        cells = np.stack([np.searchsorted(np.linspace(low[j], high[j], n_bins + 1), points[:, j],
                                          side="right") - 1 for j in range(x.shape[1])], axis=1)
        inside = np.all((cells >= 0) & (cells < n_bins), axis=1)
        counts = np.zeros((n_bins,) * x.shape[1])
        np.add.at(counts, tuple(cells[inside].T), 1.0)
        return counts.ravel()

    h, g = histogram(x), histogram(x_gen)
    if g.sum() == 0:
        return float("nan")
    p = (h + alpha) / (h.sum() + alpha * h.size)  # laplace_smoothing of raw counts
    q = (g + alpha) / (g.sum() + alpha * g.size)
    return float(np.sum(p * np.log(p / q)))


def lab_julia_gmm_divergence(x: np.ndarray, x_gen: np.ndarray, variance: float = 1.0,
                             max_points: int = 10_000, n_samples: int = 1000, seed: int = 0
                             ) -> float:
    """GTF-shPLRNN ``state_space_divergence(X, X̃, σ²)`` (Gaussian mixtures, Monte Carlo)."""
    rng = np.random.default_rng(seed)
    n = min(len(x), max_points)
    centres, centres_gen = x[:n], x_gen[:n]
    picks = rng.integers(0, n, n_samples)
    samples = centres[picks] + np.sqrt(variance) * rng.standard_normal(centres[picks].shape)

    def likelihood(mu: np.ndarray) -> np.ndarray:
        squared = ((samples[:, None, :] - mu[None]) ** 2).sum(axis=-1) / variance
        return np.exp(-0.5 * squared).sum(axis=1) / np.sqrt(variance) ** x.shape[1] / len(mu)

    p, q = likelihood(centres), likelihood(centres_gen)
    kept = (p > 0) & (q > 0)  # filter_outliers
    return float(np.mean(np.log(p[kept]) - np.log(q[kept])))


def lab_julia_power_spectrum_error(x: np.ndarray, x_gen: np.ndarray, sigma: float = 20.0
                                   ) -> float:
    """GTF-shPLRNN ``power_spectrum_error``: ImageFiltering kernel of length 8σ (+1 if even),
    its "reflect" border (d c b a | a b c d), Hellinger via ‖√p − √q‖ / √2."""
    length = int(8 * sigma)
    radius = (length + 1 if length % 2 == 0 else length) // 2
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()

    def spectrum(y: np.ndarray) -> np.ndarray:
        power = np.abs(np.fft.rfft((y - y.mean(0)) / y.std(0, ddof=1), axis=0)) ** 2
        smoothed = np.stack([np.convolve(np.pad(power[:, j], radius, mode="symmetric"), kernel,
                                         mode="valid") for j in range(y.shape[1])], axis=1)
        smoothed[smoothed < 0] = 0
        return smoothed / smoothed.sum(axis=0)

    p, q = spectrum(x), spectrum(x_gen)
    return float(np.mean(np.sqrt(((np.sqrt(p) - np.sqrt(q)) ** 2).sum(axis=0)) / np.sqrt(2)))


def lab_python_power_spectrum_error(x: np.ndarray, x_gen: np.ndarray, smoothing: float = 20.0
                                    ) -> float:
    """AL-RNN Python ``power_spectrum_error`` (per dimension, then the mean)."""
    def spectrum(y: np.ndarray) -> np.ndarray:
        power = np.abs(np.fft.rfft((y - y.mean()) / y.std())) ** 2 * 2 / len(y)
        power = gaussian_filter1d(power, smoothing)
        return power / power.sum()

    return float(np.mean([np.sqrt(1 - np.sum(np.sqrt(spectrum(x[:, j]) * spectrum(x_gen[:, j]))))
                          for j in range(x.shape[1])]))


# ------------------------------------------------------------ part 1: agreement with the lab

CASES = ["independent", "noisy", "shifted"]


@pytest.mark.parametrize("case", CASES)
def test_stsp_lab_option_equals_the_julia_definition(lorenz, case):
    """smoothing="counts", out_of_range="drop" is the lab's Julia D_stsp to round-off."""
    tsrnn_value = state_space_divergence(lorenz["truth"], lorenz[case], smoothing="counts",
                                         out_of_range="drop")
    assert tsrnn_value == pytest.approx(
        lab_julia_state_space_divergence(lorenz["truth"], lorenz[case]), rel=1e-12, abs=1e-14)


def test_stsp_lab_option_equals_julia_on_a_periodic_orbit(lorenz):
    truth, generated = lorenz["periodic"], lorenz["periodic_noisy"]
    assert state_space_divergence(truth, generated, smoothing="counts", out_of_range="drop"
                                  ) == pytest.approx(
        lab_julia_state_space_divergence(truth, generated), rel=1e-12)
    # Off the true attractor the Julia code has no generated point left and returns NaN; the
    # lab option does the same, tsrnn's default (edge bins absorb the mass) gives a number.
    assert np.isnan(lab_julia_state_space_divergence(lorenz["truth"], generated))
    assert np.isnan(state_space_divergence(lorenz["truth"], generated, smoothing="counts",
                                           out_of_range="drop"))
    assert state_space_divergence(lorenz["truth"], generated) > 3.0


def test_stsp_default_differs_from_the_lab_on_purpose(lorenz):
    """SPEC section 3: tsrnn smooths probabilities, not counts, so an empty generated bin
    weighs less and the finite-sample term is smaller. Pinned at 20k steps (seeded):
    tsrnn 0.086 / 0.107 / 2.63, the lab 0.212 / 0.198 / 9.86 for an independent clean run /
    a 5 %-noise copy of the truth / a shifted run. With counts smoothing the independent run
    of the true system (a perfect model) ranks behind the noisy copy of the very sample it is
    compared with; with tsrnn's it ranks first. At 1e5 steps both rank it first."""
    truth = lorenz["truth"]
    ours = {case: state_space_divergence(truth, lorenz[case]) for case in CASES}
    lab = {case: lab_julia_state_space_divergence(truth, lorenz[case]) for case in CASES}
    assert all(ours[case] < 0.7 * lab[case] for case in CASES)
    assert ours["independent"] < ours["noisy"] < ours["shifted"]
    assert lab["noisy"] < lab["independent"] < lab["shifted"]


def test_stsp_gmm_equals_the_julia_definition_with_the_same_samples(lorenz):
    """On standardised data (as the lab's data files are) and with the same random draws."""
    mean, std = lorenz["truth"].mean(axis=0), lorenz["truth"].std(axis=0)
    truth, noisy = (lorenz["truth"] - mean) / std, (lorenz["noisy"] - mean) / std
    ours = state_space_divergence(truth, noisy, method="gmm", random_state=0)
    assert ours == pytest.approx(lab_julia_gmm_divergence(truth, noisy, seed=0), rel=1e-10)


@pytest.mark.parametrize("case", [*CASES, "periodic"])
def test_power_spectrum_distance_equals_julia_and_python_definitions(lorenz, case):
    ours = power_spectrum_distance(lorenz["truth"], lorenz[case])
    assert ours == pytest.approx(lab_julia_power_spectrum_error(lorenz["truth"], lorenz[case]),
                                 rel=1e-9, abs=1e-12)
    assert ours == pytest.approx(lab_python_power_spectrum_error(lorenz["truth"], lorenz[case]),
                                 rel=1e-9, abs=1e-12)


def test_binned_stsp_is_invariant_to_a_common_affine_map_and_gmm_is_not(lorenz):
    truth, noisy = lorenz["truth"][:5000], lorenz["noisy"][:5000]
    scale, offset = np.array([2.0, -1.0, 0.5]), np.array([1.0, 100.0, -3.0])
    reference = state_space_divergence(truth, noisy)
    assert state_space_divergence(truth * scale + offset, noisy * scale + offset) == (
        pytest.approx(reference, rel=1e-12))
    # The mixture's kernel width σ² = 1 is in data units: standardise first (docstring).
    gmm = state_space_divergence(truth, noisy, method="gmm")
    assert state_space_divergence(10 * truth, 10 * noisy, method="gmm") > 5 * gmm


# --------------------------------------------------------------- part 2: audit regressions

def test_power_spectrum_distance_is_scale_invariant_for_huge_values(lorenz):
    """A diverging model reaches |x| > 1e154: its std overflowed to inf, the z-scored
    spectrum became 0 and D_H read exactly 1 (with a RuntimeWarning) whatever its shape."""
    truth, other = lorenz["truth"][:4000], lorenz["independent"][:4000]
    reference = power_spectrum_distance(truth, other)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for factor in (1e160, 1e-160):
            assert power_spectrum_distance(truth, other * factor) == pytest.approx(reference,
                                                                                  rel=1e-9)
            assert power_spectrum_distance(truth * factor, other) == pytest.approx(reference,
                                                                                  rel=1e-9)
        # A trajectory that explodes geometrically to ~1e250: the distance of its (rescaled)
        # spectrum, not 1.
        growth = np.exp(np.linspace(0.0, 575.0, 2000))[:, None]
        diverging = other.copy()
        diverging[2000:] *= growth
        rescaled = diverging / np.abs(diverging).max(axis=0)
        value = power_spectrum_distance(truth, diverging)
    assert value == pytest.approx(lab_python_power_spectrum_error(truth, rescaled), rel=1e-9)
    assert value < 0.9


@pytest.mark.parametrize("factor", [1e170, 1e-170])
def test_vpt_and_nrmse_do_not_depend_on_units(lorenz, factor):
    """The normaliser sqrt(mean ‖y − ȳ‖²) overflowed (underflowed) for |y| beyond 1e154
    (below 1e-154): VPT read 0 and NRMSE NaN for a forecast 10 % off."""
    truth = lorenz["truth"][:500]
    forecast = truth + 0.1 * truth.std(axis=0) * np.random.default_rng(1).standard_normal(
        truth.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert valid_prediction_time(truth * factor, forecast * factor, dt=0.01) == (
            valid_prediction_time(truth, forecast, dt=0.01)) == 5.0
        assert normalized_root_mean_squared_error(truth * factor, forecast * factor) == (
            pytest.approx(normalized_root_mean_squared_error(truth, forecast), rel=1e-12))


def test_nrmse_of_a_diverged_forecast_is_infinite_and_quiet(lorenz):
    truth = lorenz["truth"][:100]
    forecast = truth.copy()
    forecast[50:] = 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert normalized_root_mean_squared_error(truth, forecast) == np.inf


@pytest.mark.parametrize("metric", [mean_squared_error, mean_absolute_error,
                                    root_mean_squared_error, normalized_root_mean_squared_error,
                                    symmetric_mean_absolute_percentage_error,
                                    valid_prediction_time])
def test_errors_refuse_pandas_objects_with_different_labels(metric):
    """Positions were compared whatever the labels: a forecast one step late, or with its
    columns in another order, was scored against the wrong truth without a word."""
    index = pd.date_range("2024-01-01", periods=30, freq="h")
    values = np.random.default_rng(2).standard_normal((30, 2)) + 3.0
    truth = pd.DataFrame(values, index=index, columns=["HUFL", "OT"])
    forecast = truth + 0.01
    assert np.isfinite(metric(truth, forecast))  # same labels: fine
    assert np.isfinite(metric(truth, forecast.to_numpy()))  # an array: compared by position
    with pytest.raises(ValueError, match=r"different indexes \(first difference at row 0"):
        metric(truth, forecast.shift(1, freq="h"))
    with pytest.raises(ValueError, match=r"different columns, \['HUFL', 'OT'\] and \['OT', "):
        metric(truth, forecast[["OT", "HUFL"]])
    with pytest.raises(ValueError, match="different indexes"):
        metric(truth["OT"], forecast["OT"].shift(1, freq="h"))


def test_mase_matches_the_sktime_definition_per_column():
    """sktime: MAE per column over the in-sample seasonal-naive MAE, uniform average."""
    rng = np.random.default_rng(3)
    train, truth = rng.standard_normal((60, 2)).cumsum(0), rng.standard_normal((12, 2))
    forecast = truth + rng.standard_normal((12, 2))
    for m in (1, 4, 12):
        naive = np.abs(train[m:] - train[:-m]).mean(axis=0)
        expected = np.mean(np.abs(forecast - truth).mean(axis=0) / naive)
        assert mean_absolute_scaled_error(truth, forecast, train, seasonality=m) == (
            pytest.approx(expected, rel=1e-14))


def test_nullable_pandas_dtypes_are_read_with_their_missing_values_as_nan():
    # pd.NA in a Float64/Int64 frame used to read as objects: "must hold numbers".
    from tsrnn._validation import as_float_array

    frame = pd.DataFrame({"a": [1.0, None, 3.0], "b": [1, 2, None]}).astype(
        {"a": "Float64", "b": "Int64"})
    with pytest.raises(ValueError, match="NaN"):
        as_float_array(frame, "y")
    values = as_float_array(frame, "y", allow_nan=True)
    assert values.dtype == np.float64 and np.isnan(values[1, 0]) and np.isnan(values[2, 1])
    with pytest.raises(TypeError, match="must hold numbers"):
        as_float_array(pd.DataFrame({"a": ["x", "y"]}), "y")
    with pytest.raises(TypeError, match="must hold numbers"):  # dates are not numbers
        as_float_array(pd.Series(pd.date_range("2020-01-01", periods=3)), "y")
