"""Tests of tsrnn.metrics.forecasting: point-forecast errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sklearn.metrics
import torch

from tsrnn import metrics
from tsrnn.metrics import (
    mean_absolute_error,
    mean_absolute_scaled_error,
    mean_squared_error,
    normalized_root_mean_squared_error,
    root_mean_squared_error,
    symmetric_mean_absolute_percentage_error,
)

Y_TRUE = np.array([1.0, 2.0, 3.0, 4.0])
Y_PRED = np.array([2.0, 2.0, 1.0, 4.0])  # errors 1, 0, -2, 0


def test_errors_match_hand_computed_values():
    assert mean_squared_error(Y_TRUE, Y_PRED) == 1.25  # (1 + 0 + 4 + 0) / 4
    assert mean_absolute_error(Y_TRUE, Y_PRED) == 0.75  # (1 + 0 + 2 + 0) / 4
    assert root_mean_squared_error(Y_TRUE, Y_PRED) == pytest.approx(np.sqrt(1.25), rel=1e-15)
    # std(y_true) = sqrt(1.25), so the NRMSE is exactly 1.
    assert normalized_root_mean_squared_error(Y_TRUE, Y_PRED) == pytest.approx(1.0, rel=1e-15)


def test_errors_match_scikit_learn_on_multivariate_data():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.standard_normal((200, 3)), rng.standard_normal((200, 3))
    assert mean_squared_error(y_true, y_pred) == pytest.approx(
        sklearn.metrics.mean_squared_error(y_true, y_pred), rel=1e-12)
    assert mean_absolute_error(y_true, y_pred) == pytest.approx(
        sklearn.metrics.mean_absolute_error(y_true, y_pred), rel=1e-12)
    # For one dimension RMSE agrees with scikit-learn (which averages per-column RMSEs).
    assert root_mean_squared_error(y_true[:, 0], y_pred[:, 0]) == pytest.approx(
        sklearn.metrics.root_mean_squared_error(y_true[:, 0], y_pred[:, 0]), rel=1e-12)
    assert root_mean_squared_error(y_true, y_pred) ** 2 == pytest.approx(
        mean_squared_error(y_true, y_pred), rel=1e-12)


def test_nrmse_is_one_for_the_mean_forecast_and_averages_dimensions():
    rng = np.random.default_rng(1)
    y_true = rng.standard_normal((100, 2)) * np.array([1.0, 10.0])
    mean_forecast = np.broadcast_to(y_true.mean(axis=0), y_true.shape)
    assert normalized_root_mean_squared_error(y_true, mean_forecast) == pytest.approx(1.0)
    # An error of one standard deviation in dimension 1 only: (0 + 1) / 2.
    shifted = y_true + np.array([0.0, y_true[:, 1].std()])
    assert normalized_root_mean_squared_error(y_true, shifted) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"constant in dimension\(s\) \[1\]"):
        normalized_root_mean_squared_error(np.c_[y_true[:, 0], np.ones(100)], y_true)


def test_smape_hand_values_bounds_and_zero_over_zero():
    # Entries: 2·2/(1+3) = 1, 0/0 → 0, 0 → mean 1/3 → 33.3 %.
    assert symmetric_mean_absolute_percentage_error([1.0, 0.0, 2.0], [3.0, 0.0, 2.0]) == (
        pytest.approx(100 / 3, rel=1e-14))
    assert symmetric_mean_absolute_percentage_error([1.0, 0.0], [-1.0, 5.0]) == 200.0
    assert symmetric_mean_absolute_percentage_error(np.zeros(4), np.zeros(4)) == 0.0


def test_mase_hand_values_with_seasonality_and_per_dimension_scaling():
    y_train = np.array([1.0, 2.0, 4.0, 7.0])  # naive errors 1, 2, 3 (mean 2); lag 2: 3, 5 (4)
    y_true, y_pred = np.array([8.0, 9.0]), np.array([9.0, 11.0])  # MAE 1.5
    assert mean_absolute_scaled_error(y_true, y_pred, y_train) == 0.75
    assert mean_absolute_scaled_error(y_true, y_pred, y_train, seasonality=2) == 0.375
    # Two dimensions, each scaled by its own naive error: (0.75 + 1.5 / 20) / 2.
    two_dim = mean_absolute_scaled_error(np.c_[y_true, y_true], np.c_[y_pred, y_pred],
                                         np.c_[y_train, 10 * y_train])
    assert two_dim == pytest.approx((0.75 + 0.075) / 2, rel=1e-14)


def test_mase_rejects_zero_naive_error_and_short_training_series():
    with pytest.raises(ValueError, match="naive error of y_train is 0"):
        mean_absolute_scaled_error(Y_TRUE, Y_PRED, np.full(10, 3.0))
    with pytest.raises(ValueError, match="naive error of y_train is 0"):
        mean_absolute_scaled_error(Y_TRUE, Y_PRED, np.tile([1.0, 2.0], 5), seasonality=2)
    with pytest.raises(ValueError, match="more than seasonality = 4"):
        mean_absolute_scaled_error(Y_TRUE, Y_PRED, Y_TRUE, seasonality=4)
    with pytest.raises(ValueError, match="same number of dimensions"):
        mean_absolute_scaled_error(Y_TRUE, Y_PRED, np.ones((10, 2)))


@pytest.mark.parametrize("function", [mean_squared_error, mean_absolute_error,
                                      root_mean_squared_error, normalized_root_mean_squared_error,
                                      symmetric_mean_absolute_percentage_error])
def test_errors_reject_mismatched_shapes_and_non_finite_values(function):
    with pytest.raises(ValueError, match=r"same shape, got \(4,\) and \(3,\)"):
        function(Y_TRUE, Y_PRED[:3])
    with pytest.raises(ValueError, match="y_true contains NaN or inf"):
        function(np.array([1.0, np.nan, 3.0, 4.0]), Y_PRED)
    with pytest.raises(ValueError, match="y_pred contains NaN or inf"):
        function(Y_TRUE, np.array([1.0, 2.0, np.inf, 4.0]))
    with pytest.raises(ValueError, match="must have 1 or 2 dimensions"):
        function(np.ones((2, 2, 2)), np.ones((2, 2, 2)))


def test_errors_accept_torch_and_pandas():
    expected = mean_squared_error(Y_TRUE, Y_PRED)
    assert mean_squared_error(torch.tensor(Y_TRUE), torch.tensor(Y_PRED)) == expected
    assert mean_squared_error(pd.Series(Y_TRUE), pd.Series(Y_PRED)) == expected
    frame = pd.DataFrame({"a": Y_TRUE, "b": Y_TRUE})
    assert mean_squared_error(frame, frame) == 0.0


def test_short_aliases_are_the_same_functions():
    assert metrics.mse is mean_squared_error
    assert metrics.mae is mean_absolute_error
    assert metrics.rmse is root_mean_squared_error
    assert metrics.nrmse is normalized_root_mean_squared_error
    assert metrics.smape is symmetric_mean_absolute_percentage_error
    assert metrics.mase is mean_absolute_scaled_error
    assert set(metrics.__all__) >= {"mse", "mae", "rmse", "nrmse", "smape", "mase",
                                    "valid_prediction_time", "state_space_divergence",
                                    "power_spectrum_distance", "prediction_error",
                                    "n_step_prediction_error"}
