"""The usual point-forecast errors.

Every function takes ``y_true`` and ``y_pred`` of equal shape, (T,) or (T, d) (numpy arrays,
torch tensors or pandas objects), rejects NaN and inf, and returns one float. Entries are
compared by position; when both are pandas objects their labels must agree (the same index,
and for DataFrames the same columns in the same order), so that a forecast shifted by a step
or with its columns in another order is refused rather than scored against the wrong truth.
Errors that are scaled per dimension (NRMSE, MASE) are computed per dimension and then
averaged over dimensions; the others average over all entries.

References: Hyndman & Koehler, "Another look at measures of forecast accuracy", International
Journal of Forecasting 2006 (MASE, sMAPE).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tsrnn._validation import as_float_array, check_positive

__all__ = [
    "mae",
    "mase",
    "mean_absolute_error",
    "mean_absolute_scaled_error",
    "mean_squared_error",
    "mse",
    "normalized_root_mean_squared_error",
    "nrmse",
    "rmse",
    "root_mean_squared_error",
    "smape",
    "symmetric_mean_absolute_percentage_error",
]


def _check_same_labels(y_true: Any, y_pred: Any, names: tuple[str, str] = ("y_true", "y_pred")
                      ) -> None:
    """Refuse two pandas objects whose rows or columns are labelled differently.

    The errors compare entries by position, so a forecast indexed one step late or with its
    columns in another order would otherwise be scored against the wrong truth, silently.
    Arrays, tensors and a pandas object next to an array are not checked.
    """
    pandas_types = (pd.Series, pd.DataFrame)
    if not (isinstance(y_true, pandas_types) and isinstance(y_pred, pandas_types)):
        return
    if not y_true.index.equals(y_pred.index):
        if len(y_true.index) != len(y_pred.index):
            detail = f"{len(y_true.index)} and {len(y_pred.index)} rows"
        else:
            position = int(np.argmax(np.asarray(y_true.index != y_pred.index)))
            detail = (f"first difference at row {position}: {y_true.index[position]!r} and "
                      f"{y_pred.index[position]!r}")
        raise ValueError(
            f"{names[0]} and {names[1]} have different indexes ({detail}); align them "
            "(e.g. y_pred.reindex(y_true.index)) or pass .to_numpy() to compare by position"
        )
    if isinstance(y_true, pd.DataFrame) and isinstance(y_pred, pd.DataFrame) and not (
            y_true.columns.equals(y_pred.columns)):
        raise ValueError(
            f"{names[0]} and {names[1]} have different columns, {list(y_true.columns)} and "
            f"{list(y_pred.columns)}; select them in the same order (e.g. "
            f"y_pred[y_true.columns]) or pass .to_numpy() to compare by position"
        )


def _check_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Read both as finite float64 arrays of equal shape (T,) or (T, d), T >= 1."""
    _check_same_labels(y_true, y_pred)
    truth = as_float_array(y_true, "y_true", ndim=(1, 2))
    prediction = as_float_array(y_pred, "y_pred", ndim=(1, 2))
    if truth.shape != prediction.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape, got {truth.shape} and "
            f"{prediction.shape}"
        )
    if truth.size == 0:
        raise ValueError(f"y_true and y_pred are empty (shape {truth.shape})")
    return truth, prediction


def _as_columns(array: np.ndarray) -> np.ndarray:
    return array[:, None] if array.ndim == 1 else array


def mean_squared_error(y_true: Any, y_pred: Any) -> float:
    r"""Mean squared error, :math:`\mathrm{MSE} = \mathrm{mean}_{t,j} (\hat y_{tj} - y_{tj})^2`.

    Parameters
    ----------
    y_true, y_pred : arrays of shape (T,) or (T, d)

    Returns
    -------
    float
        The mean over all time steps and dimensions (equal to scikit-learn's
        ``mean_squared_error`` with uniform averaging of the outputs).
    """
    truth, prediction = _check_pair(y_true, y_pred)
    return float(np.mean((prediction - truth) ** 2))


def mean_absolute_error(y_true: Any, y_pred: Any) -> float:
    r"""Mean absolute error, :math:`\mathrm{MAE} = \mathrm{mean}_{t,j} |\hat y_{tj} - y_{tj}|`.

    Parameters
    ----------
    y_true, y_pred : arrays of shape (T,) or (T, d)

    Returns
    -------
    float
        The mean over all time steps and dimensions (equal to scikit-learn's
        ``mean_absolute_error`` with uniform averaging of the outputs).
    """
    truth, prediction = _check_pair(y_true, y_pred)
    return float(np.mean(np.abs(prediction - truth)))


def root_mean_squared_error(y_true: Any, y_pred: Any) -> float:
    r"""Root mean squared error, :math:`\mathrm{RMSE} = \sqrt{\mathrm{MSE}}`.

    The root of the MSE over all entries, so that ``rmse**2 == mse``. For ``d > 1`` this
    differs from scikit-learn's ``root_mean_squared_error``, which averages per-column RMSEs.

    Parameters
    ----------
    y_true, y_pred : arrays of shape (T,) or (T, d)

    Returns
    -------
    float
    """
    return float(np.sqrt(mean_squared_error(y_true, y_pred)))


def normalized_root_mean_squared_error(y_true: Any, y_pred: Any) -> float:
    r"""RMSE per dimension divided by the standard deviation of the truth, mean over dimensions.

    .. math::

        \mathrm{NRMSE} = \frac{1}{d} \sum_{j=1}^{d}
        \frac{\sqrt{\operatorname{mean}_t (\hat y_{tj} - y_{tj})^2}}{\operatorname{std}_t y_{tj}},

    with the population standard deviation (``ddof=0``) of ``y_true`` over the compared window.
    1 is the error of predicting the mean of each dimension; a forecast that overflowed
    (a diverged closed loop) gives ``inf``.

    Parameters
    ----------
    y_true, y_pred : arrays of shape (T,) or (T, d), ``T >= 2``; ``y_true`` not constant in any
        dimension.

    Returns
    -------
    float
    """
    truth, prediction = (_as_columns(a) for a in _check_pair(y_true, y_pred))
    if len(truth) < 2:
        raise ValueError(f"NRMSE needs at least 2 time steps, got shape {truth.shape}")
    constant = np.ptp(truth, axis=0) == 0.0  # exact test: round-off can leave std ≈ 1e-16
    if constant.any():
        raise ValueError(
            f"y_true is constant in dimension(s) {np.flatnonzero(constant).tolist()}; "
            "the NRMSE is undefined"
        )
    # The ratio is unchanged when both series are divided by the same per-dimension constant;
    # dividing by max |y_true| first keeps the squares from overflowing (|y| > 1e154) or
    # underflowing (|y| < 1e-154) into an infinite or zero std, i.e. a NaN ratio.
    magnitude = np.max(np.abs(truth), axis=0)
    with np.errstate(over="ignore"):  # a diverged forecast has an infinite error: inf
        truth, prediction = truth / magnitude, prediction / magnitude
        std = truth.std(axis=0)
        rmse_per_dim = np.sqrt(np.mean((prediction - truth) ** 2, axis=0))
    return float(np.mean(rmse_per_dim / std))


def symmetric_mean_absolute_percentage_error(y_true: Any, y_pred: Any) -> float:
    r"""Symmetric mean absolute percentage error, in percent (0 to 200).

    .. math::

        \mathrm{sMAPE} = \frac{100}{n} \sum_{t,j}
        \frac{2\,|\hat y_{tj} - y_{tj}|}{|y_{tj}| + |\hat y_{tj}|},

    averaged over all ``n`` entries; an entry with ``y = ŷ = 0`` (0/0) counts as 0, a perfect
    forecast.

    Parameters
    ----------
    y_true, y_pred : arrays of shape (T,) or (T, d)

    Returns
    -------
    float

    References
    ----------
    Hyndman & Koehler, "Another look at measures of forecast accuracy", International Journal
    of Forecasting 2006.
    """
    truth, prediction = _check_pair(y_true, y_pred)
    denominator = np.abs(truth) + np.abs(prediction)
    numerator = 2.0 * np.abs(prediction - truth)
    # The denominator is 0 only where both are 0, and then so is the numerator.
    ratio = numerator / np.where(denominator > 0.0, denominator, 1.0)
    return float(100.0 * np.mean(ratio))


def mean_absolute_scaled_error(y_true: Any, y_pred: Any, y_train: Any,
                               seasonality: int = 1) -> float:
    r"""Mean absolute scaled error (Hyndman & Koehler 2006).

    The MAE of the forecast divided by the in-sample MAE of the seasonal naive forecast
    ``ŷ_t = y_{t−m}`` on the training series, per dimension, then averaged over dimensions:

    .. math::

        \mathrm{MASE}_j = \frac{\operatorname{mean}_t |\hat y_{tj} - y_{tj}|}
        {\frac{1}{T_{tr} - m} \sum_{t=m}^{T_{tr}-1} |y^{tr}_{tj} - y^{tr}_{t-m,j}|},
        \qquad \mathrm{MASE} = \frac{1}{d} \sum_j \mathrm{MASE}_j .

    Below 1 the forecast beats the in-sample naive forecast.

    Parameters
    ----------
    y_true, y_pred : arrays of shape (T,) or (T, d)
    y_train : array of shape (T_tr,) or (T_tr, d)
        The series the model was fitted on, ``T_tr > seasonality``, with the same ``d``.
    seasonality : int, default 1
        Season length ``m`` of the naive forecast (1: the random-walk forecast).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the naive in-sample error is 0 in some dimension (a constant or exactly
        ``m``-periodic training series), where the MASE is undefined.

    References
    ----------
    Hyndman & Koehler, "Another look at measures of forecast accuracy", International Journal
    of Forecasting 2006.
    """
    seasonality = check_positive(seasonality, "seasonality", integer=True)
    truth, prediction = (_as_columns(a) for a in _check_pair(y_true, y_pred))
    train = _as_columns(as_float_array(y_train, "y_train", ndim=(1, 2)))
    if train.shape[1] != truth.shape[1]:
        raise ValueError(
            f"y_train must have the same number of dimensions as y_true, got shapes "
            f"{train.shape} and {truth.shape}"
        )
    if len(train) <= seasonality:
        raise ValueError(
            f"y_train needs more than seasonality = {seasonality} time steps, got shape "
            f"{train.shape}"
        )
    naive_error = np.mean(np.abs(train[seasonality:] - train[:-seasonality]), axis=0)
    if np.any(naive_error == 0.0):
        raise ValueError(
            f"the in-sample naive error of y_train is 0 in dimension(s) "
            f"{np.flatnonzero(naive_error == 0.0).tolist()}; the MASE is undefined"
        )
    return float(np.mean(np.mean(np.abs(prediction - truth), axis=0) / naive_error))


mse = mean_squared_error
mae = mean_absolute_error
rmse = root_mean_squared_error
nrmse = normalized_root_mean_squared_error
smape = symmetric_mean_absolute_percentage_error
mase = mean_absolute_scaled_error
