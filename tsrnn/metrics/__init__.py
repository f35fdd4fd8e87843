"""Measures that compare a generated or forecast series with a true one.

Dynamical-systems reconstruction (:mod:`tsrnn.metrics.reconstruction`):
``valid_prediction_time``, ``state_space_divergence`` (D_stsp), ``power_spectrum_distance``
(D_H) and ``prediction_error`` (PE(n), alias ``n_step_prediction_error``).

Point-forecast errors (:mod:`tsrnn.metrics.forecasting`): ``mean_squared_error``,
``mean_absolute_error``, ``root_mean_squared_error``, ``normalized_root_mean_squared_error``,
``symmetric_mean_absolute_percentage_error``, ``mean_absolute_scaled_error`` and their short
aliases ``mse``, ``mae``, ``rmse``, ``nrmse``, ``smape``, ``mase``.

A forecast that follows the truth for 5 time units and is then wrong (|sin t| exceeds the
threshold 0.4 times the series' standard deviation at once):

>>> import numpy as np
>>> from tsrnn.metrics import rmse, valid_prediction_time
>>> t = np.arange(200) * 0.1
>>> y = np.sin(t)
>>> forecast = np.where(t < 5, y, 0.0)
>>> valid_prediction_time(y, forecast, dt=0.1)
5.0
>>> valid_prediction_time(y, forecast, dt=0.1, lyapunov_exponent=0.5)  # in Lyapunov times
2.5
>>> round(rmse(y, y + 0.1), 6)
0.1
"""

from tsrnn.metrics.forecasting import (
    mae,
    mase,
    mean_absolute_error,
    mean_absolute_scaled_error,
    mean_squared_error,
    mse,
    normalized_root_mean_squared_error,
    nrmse,
    rmse,
    root_mean_squared_error,
    smape,
    symmetric_mean_absolute_percentage_error,
)
from tsrnn.metrics.reconstruction import (
    n_step_prediction_error,
    power_spectrum_distance,
    prediction_error,
    state_space_divergence,
    valid_prediction_time,
)

__all__ = [
    "mae",
    "mase",
    "mean_absolute_error",
    "mean_absolute_scaled_error",
    "mean_squared_error",
    "mse",
    "n_step_prediction_error",
    "normalized_root_mean_squared_error",
    "nrmse",
    "power_spectrum_distance",
    "prediction_error",
    "rmse",
    "root_mean_squared_error",
    "smape",
    "state_space_divergence",
    "symmetric_mean_absolute_percentage_error",
    "valid_prediction_time",
]
