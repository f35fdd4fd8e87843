"""Tests of tsrnn.metrics.reconstruction: VPT, D_stsp, D_H and PE(n)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from tsrnn.metrics import (
    n_step_prediction_error,
    power_spectrum_distance,
    prediction_error,
    state_space_divergence,
    valid_prediction_time,
)
from tsrnn.metrics.reconstruction import _gmm_log_density

# ------------------------------------------------------------------------ valid prediction time


@pytest.fixture
def truth() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((50, 3))


@pytest.mark.parametrize("k", [0, 1, 7, 49])
def test_vpt_equals_number_of_exact_steps_times_dt(truth, k):
    prediction = truth.copy()
    prediction[k:] += 100.0  # far above any threshold from step k on
    assert valid_prediction_time(truth, prediction, dt=0.01) == pytest.approx(k * 0.01, abs=0)


def test_vpt_is_whole_window_when_never_exceeded(truth):
    assert valid_prediction_time(truth, truth + 1e-3, dt=0.5) == 50 * 0.5


def test_vpt_in_lyapunov_times_scales_by_exponent(truth):
    prediction = truth.copy()
    prediction[12:] -= 100.0
    vpt = valid_prediction_time(truth, prediction, dt=0.01, lyapunov_exponent=0.9056)
    assert vpt == pytest.approx(12 * 0.01 * 0.9056, rel=1e-15)


def test_vpt_threshold_is_strict_and_uses_truth_normaliser():
    # A ±1 square wave has mean 0 and normaliser sqrt(mean y²) = 1, so e(t) = |error(t)|.
    y = np.tile([1.0, -1.0], 5)
    errors = np.array([0.1, 0.25, 0.4, 0.5, 0.75, 0.1, 0.1, 0.1, 0.1, 0.1])
    prediction = y + errors
    assert valid_prediction_time(y, prediction, threshold=0.4) == 3  # e = 0.4 still valid
    assert valid_prediction_time(y, prediction, threshold=0.3) == 2
    assert valid_prediction_time(y, prediction, threshold=0.5) == 4
    assert valid_prediction_time(y, prediction, threshold=0.8) == 10
    # Scaling both series by 3 scales error and normaliser alike: same VPT.
    assert valid_prediction_time(3 * y, 3 * prediction, threshold=0.4) == 3


def test_vpt_normaliser_is_total_variance_of_multivariate_truth():
    y = np.stack([np.tile([1.0, -1.0], 4), np.tile([2.0, -2.0], 4)], axis=1)  # sqrt(1+4)
    prediction = y.copy()
    prediction[:, 0] += np.sqrt(5.0) * np.array([0.3, 0.3, 0.39, 0.41, 0, 0, 0, 0])
    assert valid_prediction_time(y, prediction) == 3


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_vpt_counts_non_finite_forecast_as_invalid(truth, bad):
    prediction = truth.copy()
    prediction[5:, 1] = bad
    assert valid_prediction_time(truth, prediction, dt=2.0) == 10.0


def test_vpt_accepts_torch_pandas_and_one_dimensional_input(truth):
    prediction = truth[:, 0].copy()
    prediction[9:] += 50.0
    expected = 9.0
    assert valid_prediction_time(truth[:, 0], prediction) == expected
    assert valid_prediction_time(torch.tensor(truth[:, 0]), torch.tensor(prediction)) == expected
    assert valid_prediction_time(pd.Series(truth[:, 0]), pd.Series(prediction)) == expected


def test_vpt_rejects_bad_input(truth):
    with pytest.raises(ValueError, match="y_true contains NaN"):
        bad = truth.copy()
        bad[3, 0] = np.nan
        valid_prediction_time(bad, truth)
    with pytest.raises(ValueError, match=r"same shape, got \(50, 3\) and \(50, 2\)"):
        valid_prediction_time(truth, truth[:, :2])
    with pytest.raises(ValueError, match="constant"):
        valid_prediction_time(np.ones((10, 2)), np.ones((10, 2)))
    with pytest.raises(ValueError, match="at least 2 time steps"):
        valid_prediction_time(truth[:1], truth[:1])
    with pytest.raises(ValueError, match="threshold must be > 0"):
        valid_prediction_time(truth, truth, threshold=0.0)
    with pytest.raises(ValueError, match="lyapunov_exponent must be > 0"):
        valid_prediction_time(truth, truth, lyapunov_exponent=-0.9)


# --------------------------------------------------------------------- state-space divergence


def _dense_binned_divergence(x_true, x_gen, n_bins, smoothing, eps=1e-5, margin=0.1):
    """Reference: dense histograms on all K bins (np.histogramdd), points clipped into range."""
    std = x_true.std(axis=0, ddof=1)
    low, high = x_true.min(axis=0) - margin * std, x_true.max(axis=0) + margin * std
    edges = [np.linspace(lo, hi, n_bins + 1) for lo, hi in zip(low, high)]
    # Clip generated points just inside the range: the edge bins absorb them.
    inner = (high - low) * 1e-9
    clipped = np.clip(x_gen, low + inner, high - inner)
    h, _ = np.histogramdd(x_true, bins=edges)
    g, _ = np.histogramdd(clipped, bins=edges)
    k = h.size
    if smoothing == "probabilities":
        p = (h / h.sum() + eps) / (1 + eps * k)
        q = (g / g.sum() + eps) / (1 + eps * k)
    else:
        p = (h + eps) / (h.sum() + eps * k)
        q = (g + eps) / (g.sum() + eps * k)
    return float(np.sum(p * np.log(p / q)))


def test_stsp_is_zero_for_identical_data():
    x = np.random.default_rng(1).standard_normal((2000, 3))
    # Both histograms are equal, so every log ratio is exactly log 1 = 0.
    assert state_space_divergence(x, x) == 0.0
    assert state_space_divergence(x, x, smoothing="counts") == 0.0


def test_stsp_matches_hand_computed_one_dimensional_example():
    x_true = np.array([0.0, 1.0, 2.0, 3.0])
    # sd (ddof=1) = 1.2910; range [-0.1291, 3.1291] in 2 bins split at 1.5:
    # true counts (2, 2); generated 0, 0.5, 1 in bin 0, and 3 and 10 (clipped) in bin 1.
    x_gen = np.array([0.0, 0.5, 1.0, 3.0, 10.0])
    eps, k = 1e-5, 2
    p = (np.array([2 / 4, 2 / 4]) + eps) / (1 + eps * k)
    q = (np.array([3 / 5, 2 / 5]) + eps) / (1 + eps * k)
    expected = np.sum(p * np.log(p / q))
    assert state_space_divergence(x_true, x_gen, n_bins=2) == pytest.approx(expected, rel=1e-12)

    # Counts smoothing on the same data: (h + ε)/(N + εK).
    p_counts = (np.array([2, 2]) + eps) / (4 + eps * k)
    q_counts = (np.array([3, 2]) + eps) / (5 + eps * k)
    expected_counts = np.sum(p_counts * np.log(p_counts / q_counts))
    assert state_space_divergence(x_true, x_gen, n_bins=2, smoothing="counts") == pytest.approx(
        expected_counts, rel=1e-12
    )


def test_stsp_three_bins_with_an_empty_bin_matches_direct_formula():
    x_true = np.array([0.0, 0.2, 1.5, 2.9, 3.0])  # 3 bins over ~[-0.13, 3.13]: counts (2, 1, 2)
    x_gen = np.array([0.1, 0.3, 0.2, 2.95])  # counts (3, 0, 1)
    eps, k = 1e-5, 3
    p = (np.array([2, 1, 2]) / 5 + eps) / (1 + eps * k)
    q = (np.array([3, 0, 1]) / 4 + eps) / (1 + eps * k)
    expected = np.sum(p * np.log(p / q))
    assert state_space_divergence(x_true, x_gen, n_bins=3) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("smoothing", ["probabilities", "counts"])
@pytest.mark.parametrize("n_dim, n_bins", [(1, 30), (2, 30), (3, 12)])
def test_stsp_sparse_histogram_matches_dense_reference(smoothing, n_dim, n_bins):
    rng = np.random.default_rng(n_dim)
    x_true = rng.standard_normal((3000, n_dim))
    # Unequal lengths and points outside the true range exercise the empty-bin term of the
    # count smoothing (N ≠ M) and the clipping into edge bins.
    x_gen = 1.3 * rng.standard_normal((1700, n_dim)) + 0.4
    expected = _dense_binned_divergence(x_true, x_gen, n_bins, smoothing)
    result = state_space_divergence(x_true, x_gen, n_bins=n_bins, smoothing=smoothing)
    assert result == pytest.approx(expected, rel=1e-10)


def test_stsp_counts_smoothing_differs_from_default_and_grows_with_length():
    # The generated density has a hole where the truth has half its mass (x < 0). With count
    # smoothing an empty generated bin gets q = ε/(M + εK) ≈ ε/M, so the value grows like
    # 0.5·log M with the series length; with probability smoothing q = ε/(1 + εK) does not
    # depend on M and the value stays put (SPEC section 3).
    rng = np.random.default_rng(2)
    x_true = rng.standard_normal((100_000, 1))
    x_gen = np.abs(rng.standard_normal((100_000, 1)))
    short = slice(0, 1000)
    default = state_space_divergence(x_true, x_gen)
    default_short = state_space_divergence(x_true[short], x_gen[short])
    counts = state_space_divergence(x_true, x_gen, smoothing="counts")
    counts_short = state_space_divergence(x_true[short], x_gen[short], smoothing="counts")
    assert counts > default + 3.0
    assert counts > counts_short + 1.0  # 0.5·log(100) = 2.3 in the limit
    assert abs(default - default_short) < 0.2


def test_stsp_is_invariant_to_time_order():
    rng = np.random.default_rng(3)
    x_true = rng.standard_normal((1500, 2))
    x_gen = rng.standard_normal((1200, 2)) * 0.8
    base = state_space_divergence(x_true, x_gen)
    shuffled = state_space_divergence(rng.permutation(x_true), rng.permutation(x_gen))
    assert shuffled == pytest.approx(base, rel=1e-12)


def test_stsp_grows_monotonically_with_shift():
    rng = np.random.default_rng(4)
    x_true = rng.standard_normal((5000, 2))
    noise = rng.standard_normal((5000, 2))
    values = [state_space_divergence(x_true, noise + shift) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in itertools.pairwise(values))


def test_stsp_out_of_range_clip_penalises_escaped_mass_and_drop_hides_it():
    rng = np.random.default_rng(5)
    x_true = rng.standard_normal((4000, 2))
    x_gen = rng.standard_normal((4000, 2))
    escaped = np.concatenate([x_gen, np.full((4000, 2), 1e3)])  # half the mass far away
    inside = state_space_divergence(x_true, x_gen)
    assert state_space_divergence(x_true, escaped) > inside + 0.1
    # Dropping renormalises over the points left in range: the escaped half leaves no trace.
    assert state_space_divergence(x_true, escaped, out_of_range="drop") == pytest.approx(
        state_space_divergence(x_true, x_gen, out_of_range="drop"), rel=1e-12
    )
    assert np.isnan(state_space_divergence(x_true, x_gen + 1e3, out_of_range="drop"))


def test_stsp_five_dimensions_with_thirty_bins_is_sparse():
    rng = np.random.default_rng(6)
    x_true = rng.standard_normal((20_000, 5))
    # 30**5 = 24.3 M bins: a dense float64 histogram pair would need about 390 MB.
    assert state_space_divergence(x_true, x_true) == 0.0
    near = state_space_divergence(x_true, rng.standard_normal((20_000, 5)))
    far = state_space_divergence(x_true, rng.standard_normal((20_000, 5)) + 1.0)
    assert 0.0 < near < far


def _gaussian_kl(mean_p, cov_p, mean_q, cov_q):
    inv_q = np.linalg.inv(cov_q)
    diff = mean_q - mean_p
    _, logdet_p = np.linalg.slogdet(cov_p)
    _, logdet_q = np.linalg.slogdet(cov_q)
    return 0.5 * (np.trace(inv_q @ cov_p) + diff @ inv_q @ diff - len(mean_p)
                  + logdet_q - logdet_p)


def test_stsp_gmm_matches_kl_of_kernel_smoothed_gaussians():
    # Point clouds from N(μ, Σ) with one N(x_t, σ²I) per point approximate N(μ, Σ + σ²I), whose
    # KL has a closed form (0.40 and 1.17 here). Tolerance 0.12, about 3 standard deviations
    # of the estimate over data and sampling seeds (measured: 0.022 and 0.042 with 4000
    # samples and 10 000 points); a wrong kernel width or a sample from the wrong mixture
    # misses by far more.
    rng = np.random.default_rng(7)
    d = 6
    scale = np.diag(np.linspace(0.5, 1.5, d))
    x_true = rng.standard_normal((10_000, d)) @ scale
    for shift, spread in ((1.0, 1.2), (2.0, 1.0)):
        mean_gen = np.full(d, shift / np.sqrt(d))
        x_gen = spread * rng.standard_normal((10_000, d)) + mean_gen
        expected = _gaussian_kl(np.zeros(d), scale @ scale + np.eye(d),
                                mean_gen, (spread**2 + 1) * np.eye(d))
        result = state_space_divergence(x_true, x_gen, n_samples=4000, random_state=1)
        assert result == pytest.approx(expected, abs=0.12)


def test_stsp_gmm_log_density_matches_direct_sum():
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(8)
    centres = rng.standard_normal((40, 6))
    points = 3 * rng.standard_normal((15, 6))
    variance = 0.7
    direct = np.log(np.mean([multivariate_normal(c, variance * np.eye(6)).pdf(points)
                             for c in centres], axis=0))
    np.testing.assert_allclose(_gmm_log_density(points, centres, variance), direct, rtol=1e-10)


def test_stsp_gmm_is_seeded_and_chosen_from_six_dimensions():
    rng = np.random.default_rng(9)
    x_true = rng.standard_normal((500, 6))
    x_gen = rng.standard_normal((500, 6)) + 0.5
    auto = state_space_divergence(x_true, x_gen, random_state=3)
    assert auto == state_space_divergence(x_true, x_gen, method="gmm", random_state=3)
    assert auto != state_space_divergence(x_true, x_gen, random_state=4)
    # Only the first max_points points enter: appending far-away points changes nothing.
    padded = np.concatenate([x_gen, np.full((100, 6), 50.0)])
    assert state_space_divergence(x_true, padded, max_points=500, random_state=3) == auto
    # gmm also works below 6 dimensions, and binning above 5 when asked.
    assert np.isfinite(state_space_divergence(x_true[:, :2], x_gen[:, :2], method="gmm"))
    assert state_space_divergence(x_true, x_true, method="binning", n_bins=5) == 0.0


def test_stsp_rejects_bad_input():
    x = np.random.default_rng(10).standard_normal((100, 2))
    with pytest.raises(ValueError, match="unknown method 'kde'"):
        state_space_divergence(x, x, method="kde")
    with pytest.raises(ValueError, match="unknown smoothing"):
        state_space_divergence(x, x, smoothing="laplace")
    with pytest.raises(ValueError, match=r"same number of dimensions, got shapes \(100, 2\) and"):
        state_space_divergence(x, x[:, :1])
    with pytest.raises(ValueError, match="n_bins must be > 0"):
        state_space_divergence(x, x, n_bins=0)
    with pytest.raises(TypeError, match="n_bins must be an integer"):
        state_space_divergence(x, x, n_bins=2.5)
    with pytest.raises(ValueError, match=r"x_gen leaves the finite range at step \d+: the "
                                         "generated run diverged"):
        state_space_divergence(x, np.where(x > 1.5, np.nan, x))
    with pytest.raises(ValueError, match="at least 2 time steps"):
        state_space_divergence(x[:1], x)
    with pytest.raises(ValueError, match="constant in dimension"):
        state_space_divergence(np.c_[x[:, 0], np.ones(100)], x)
    with pytest.raises(ValueError, match="too many to index"):
        state_space_divergence(np.random.default_rng(0).standard_normal((10, 8)),
                               np.zeros((10, 8)), n_bins=1000, method="binning")


# ----------------------------------------------------------------- power-spectrum distance


def _reference_power_spectrum_distance(x_true, x_gen, sigma):
    """Straightforward D_H: explicit Gaussian kernel, symmetric padding, loop over dimensions."""
    radius = int(4 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * offsets**2 / sigma**2)
    kernel /= kernel.sum()

    def spectrum(series):
        z = (series - series.mean()) / series.std()
        power = np.abs(np.fft.rfft(z)) ** 2
        padded = np.pad(power, radius, mode="symmetric")  # scipy's "reflect"
        smooth = np.array([padded[i:i + 2 * radius + 1] @ kernel[::-1]
                           for i in range(len(power))])
        return smooth / smooth.sum()

    distances = []
    for j in range(x_true.shape[1]):
        p, q = spectrum(x_true[:, j]), spectrum(x_gen[:, j])
        distances.append(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(p * q)))))
    return float(np.mean(distances))


def test_psd_is_zero_for_identical_series():
    x = np.random.default_rng(11).standard_normal((1000, 3))
    assert power_spectrum_distance(x, x) == pytest.approx(0.0, abs=1e-7)  # sqrt of round-off


def test_psd_is_zero_for_shifted_scaled_sine_with_whole_periods():
    t = np.arange(2048)
    sine = np.sin(2 * np.pi * 16 * t / 2048)
    # Same frequency, other phase, amplitude and offset: identical z-scored power spectrum.
    other = 5.0 * np.sin(2 * np.pi * 16 * t / 2048 + 1.0) + 3.0
    assert power_spectrum_distance(sine, other) == pytest.approx(0.0, abs=1e-7)


def test_psd_is_near_one_for_far_apart_frequencies():
    t = np.arange(4096)
    slow = np.sin(2 * np.pi * 20 * t / 4096)
    fast = np.sin(2 * np.pi * 800 * t / 4096)  # 780 bins = 39 σ apart: no overlap left
    assert power_spectrum_distance(slow, fast) > 0.999
    near = np.sin(2 * np.pi * 30 * t / 4096)  # 10 bins apart: overlapping smoothed peaks
    assert power_spectrum_distance(slow, near) < 0.2


@pytest.mark.parametrize("sigma", [20.0, 3.5])
def test_psd_matches_straightforward_reference(sigma):
    rng = np.random.default_rng(12)
    x_true = np.cumsum(rng.standard_normal((600, 3)), axis=0)  # red spectrum
    x_gen = rng.standard_normal((600, 3))  # white spectrum
    expected = _reference_power_spectrum_distance(x_true, x_gen, sigma)
    assert power_spectrum_distance(x_true, x_gen, sigma=sigma) == pytest.approx(expected,
                                                                               rel=1e-10)


def test_psd_constant_generated_dimension_has_distance_one():
    x_true = np.random.default_rng(13).standard_normal((500, 2))
    x_gen = x_true.copy()
    x_gen[:, 1] = 4.2  # a model stuck at a fixed point in dimension 1
    assert power_spectrum_distance(x_true, x_gen) == pytest.approx(0.5, abs=1e-7)


def test_psd_length_mismatch_raises_unless_truncated():
    rng = np.random.default_rng(14)
    x_true, x_gen = rng.standard_normal((500, 2)), rng.standard_normal((520, 2))
    with pytest.raises(ValueError, match=r"same length.*\(500, 2\) and \(520, 2\)"):
        power_spectrum_distance(x_true, x_gen)
    assert power_spectrum_distance(x_true, x_gen, truncate=True) == power_spectrum_distance(
        x_true, x_gen[:500]
    )


def test_psd_rejects_bad_input():
    x = np.random.default_rng(15).standard_normal((100, 2))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        power_spectrum_distance(x, x, sigma=0.0)
    with pytest.raises(ValueError, match="same number of dimensions"):
        power_spectrum_distance(x, x[:, :1])
    with pytest.raises(ValueError, match="x_true contains NaN"):
        power_spectrum_distance(np.where(x > 2, np.inf, x), x)
    with pytest.raises(ValueError, match="x_true is constant"):
        power_spectrum_distance(np.ones((100, 2)), x)


# ------------------------------------------------------------------- n-step prediction error


def _linear_system(n_steps=300, seed=16):
    angle, radius = 0.3, 0.99
    a = radius * np.array([[np.cos(angle), -np.sin(angle), 0.0],
                           [np.sin(angle), np.cos(angle), 0.0],
                           [0.0, 0.0, 0.95]])
    x = np.empty((n_steps, 3))
    x[0] = np.random.default_rng(seed).standard_normal(3)
    for t in range(1, n_steps):
        x[t] = x[t - 1] @ a.T
    return a, x


def _loop_prediction_error(a, x, n_steps):
    """Reference: one start at a time, per-step squared errors (starts × steps)."""
    errors = []
    for i in range(len(x) - n_steps):
        state, row = x[i], []
        for k in range(1, n_steps + 1):
            state = a @ state
            row.append(np.mean((state - x[i + k]) ** 2))
        errors.append(row)
    return np.mean(errors, axis=0)


def test_pe_is_zero_for_the_exact_map():
    a, x = _linear_system()
    # Round-off only: the data and the predictions apply the same map in float64.
    assert prediction_error(lambda s: s @ a.T, x, n_steps=20) == pytest.approx(0.0, abs=1e-25)


@pytest.mark.parametrize("batch_size", [None, 7])
def test_pe_of_perturbed_map_matches_explicit_loop(batch_size):
    a, x = _linear_system()
    perturbed = a + 0.01 * np.random.default_rng(17).standard_normal(a.shape)
    per_step = _loop_prediction_error(perturbed, x, 20)
    model = lambda s: s @ perturbed.T  # noqa: E731
    final = prediction_error(model, x, n_steps=20, batch_size=batch_size)
    mean = prediction_error(model, x, n_steps=20, reduction="mean", batch_size=batch_size)
    assert final == pytest.approx(per_step[-1], rel=1e-10)
    assert mean == pytest.approx(per_step.mean(), rel=1e-10)
    assert final > per_step[0] > 0  # errors grow along the free run
    assert n_step_prediction_error is prediction_error


def test_pe_accepts_torch_modules_in_their_dtype_and_restores_mode():
    a, x = _linear_system()
    perturbed = a + 0.01 * np.random.default_rng(18).standard_normal(a.shape)
    expected = _loop_prediction_error(perturbed, x, 5)[-1]
    module = torch.nn.Linear(3, 3, bias=False).double()
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(perturbed))
    module.train()
    assert prediction_error(module, torch.from_numpy(x), n_steps=5) == pytest.approx(expected,
                                                                                   rel=1e-10)
    assert module.training
    module_32 = module.float()
    # float32 module: round-off of order 1e-7 relative.
    assert prediction_error(module_32, x, n_steps=5) == pytest.approx(expected, rel=1e-4)


def test_pe_rejects_bad_input():
    _, x = _linear_system(n_steps=30)
    with pytest.raises(ValueError, match="more than n_steps = 30"):
        prediction_error(lambda s: s, x, n_steps=30)
    with pytest.raises(ValueError, match=r"model returned shape \(10, 2\)"):
        prediction_error(lambda s: s[:, :2], x, n_steps=20)
    with pytest.raises(ValueError, match="unknown reduction 'sum'"):
        prediction_error(lambda s: s, x, reduction="sum")
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module or a callable"):
        prediction_error("not a model", x)
    with pytest.raises(ValueError, match="x contains NaN"):
        prediction_error(lambda s: s, np.where(x > 0.5, np.nan, x))


@pytest.mark.parametrize("options", [{}, dict(smoothing="counts"), dict(out_of_range="drop")])
def test_stsp_counts_all_bins_or_sorts_indices_with_the_same_result(options, monkeypatch):
    from tsrnn.metrics import reconstruction

    rng = np.random.default_rng(4)
    x_true = rng.standard_normal((5000, 3))
    x_gen = 1.3 * rng.standard_normal((4000, 3)) + 0.2  # partly outside the true range
    direct = state_space_divergence(x_true, x_gen, n_bins=12, **options)
    monkeypatch.setattr(reconstruction, "_DIRECT_COUNT_BINS", 0)
    sorted_ = state_space_divergence(x_true, x_gen, n_bins=12, **options)
    assert direct == sorted_ and direct > 0.0


@pytest.mark.parametrize("options", [{}, dict(smoothing="counts"), dict(out_of_range="drop")])
def test_stsp_binned_reference_scores_many_sets_as_the_function_does(options):
    # What checkpoint selection uses: the data binned once, many generated sets scored.
    from tsrnn.metrics.reconstruction import BinnedReference

    rng = np.random.default_rng(5)
    x_true = rng.standard_normal((3000, 3))
    reference = BinnedReference(x_true, n_bins=10, margin=0.1)
    for k in range(3):
        x_gen = (1.0 + 0.3 * k) * rng.standard_normal((2000, 3))
        expected = state_space_divergence(x_true, x_gen, n_bins=10, **options)
        assert reference.divergence(x_gen, **options) == expected
