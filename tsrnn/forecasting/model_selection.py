"""Hyperparameter search with scikit-learn's model-selection tools.

tsrnn's estimators take the series as the first argument of ``fit``, which is where
scikit-learn puts ``X``; so ``GridSearchCV(model, grid, cv=TimeSeriesSplit(5),
scoring=closed_loop_scorer(...)).fit(series)`` fits each candidate on a contiguous block of
the series and scores it on the contiguous block that follows. ``n_jobs`` spreads the fits
over cores through joblib.

The scorer forecasts in closed loop from several starts inside the test block, each from
its own ``context`` of true values, and returns the mean valid prediction time (or minus a
forecast error: scikit-learn maximises scores).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .._validation import as_float_array, check_option, check_positive
from ..metrics import mean_squared_error, valid_prediction_time

METRICS = ("vpt", "mse")


def closed_loop_scorer(context: int = 200, horizon: int = 500, n_starts: int = 5,
                       metric: str = "vpt", dt: float = 1.0,
                       lyapunov_exponent: float | None = None, threshold: float = 0.4
                       ) -> Callable[[Any, Any, Any], float]:
    """A scikit-learn scorer of closed-loop forecasts.

    Parameters
    ----------
    context : int
        True steps that set the model's state before each forecast.
    horizon : int
        Length of each forecast.
    n_starts : int
        Forecasts per test block, their starts spread evenly over it (distinct starts only:
        fewer where a short block holds fewer).
    metric : {"vpt", "mse"}
        Valid prediction time (higher is better) or minus the mean squared error.
    dt, lyapunov_exponent, threshold
        Passed to :func:`tsrnn.metrics.valid_prediction_time`.

    Returns
    -------
    callable ``scorer(estimator, series, X=None) -> float`` (the mean over starts). Its
    third argument is where scikit-learn passes the second argument of ``fit``: for
    ``search.fit(series, exogenous)`` each candidate is fitted with ``fit(block,
    exogenous_block)`` and scored with the exogenous rows of the context and the horizon.

    Notes
    -----
    - A pandas series is passed to ``predict`` as pandas. A forecaster that reads dates
      (CfC, LTC, LEM, HiPPO, LSSL fitted on a DatetimeIndex) forecasts at the block's own
      dates (``times=``), irregular ones included.
    - Give the search ``cv=TimeSeriesSplit(...)``: scikit-learn's default folds (and any
      shuffled ones) cut the series into blocks that are joined again for training, so a
      model learns jumps that are not in the data and is scored on a block it has seen
      around; shuffled folds score near zero.
    - A valid prediction time cannot exceed the horizon: when several candidates stay valid
      for the whole ``horizon`` they tie at that cap (``horizon * dt``, in Lyapunov times
      with an exponent). Lengthen the horizon until the best ones are told apart.

    Examples
    --------
    Next-generation reservoir computing on Lorenz-63 (dt = 0.025, Gauthier et al.'s setting):
    linear features against linear plus quadratic ones, scored by the mean valid prediction
    time in Lyapunov times over three time-ordered folds.

    >>> from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
    >>> from tsrnn.forecasting import closed_loop_scorer
    >>> from tsrnn.reservoir import NVAR
    >>> from tsrnn.systems import Lorenz63
    >>> y = Lorenz63().simulate(3000, dt=0.025, transient=500, seed=0)
    >>> scorer = closed_loop_scorer(context=10, horizon=200, dt=0.025, lyapunov_exponent=0.9056)
    >>> search = GridSearchCV(NVAR(), {"order": [1, 2]}, cv=TimeSeriesSplit(3),
    ...                       scoring=scorer).fit(y)
    >>> search.best_params_, search.cv_results_["mean_test_score"].round(1)
    ({'order': 2}, array([0.1, 3.5]))
    """
    context = check_positive(context, "context", integer=True)
    horizon = check_positive(horizon, "horizon", integer=True)
    n_starts = check_positive(n_starts, "n_starts", integer=True)
    check_option(metric, "metric", METRICS)
    if metric == "vpt" and horizon < 2:
        raise ValueError("metric='vpt' needs horizon >= 2: a valid prediction time is measured "
                         "over at least two steps")
    # Checked here, not first in the scoring: a search would otherwise train every candidate
    # and then score them all NaN.
    check_positive(dt, "dt")
    check_positive(threshold, "threshold")
    if lyapunov_exponent is not None:
        check_positive(lyapunov_exponent, "lyapunov_exponent")

    def scorer(estimator: Any, series: Any, X: Any = None) -> float:
        # A pandas block is passed on as pandas: its column names are checked as in fit, and
        # a forecaster that reads dates forecasts at the block's own times.
        frame = series if isinstance(series, pd.DataFrame | pd.Series) else None
        # (date_times_: set by the forecasters that read times, true when fitted on dates)
        dated = (frame is not None and isinstance(frame.index, pd.DatetimeIndex)
                 and getattr(estimator, "date_times_", False))
        data = as_float_array(series, "series", ndim=(1, 2))
        data = data[:, None] if data.ndim == 1 else data
        exogenous = None
        if X is not None:
            exogenous = as_float_array(X, "X", ndim=(1, 2))
            if exogenous.shape[0] != data.shape[0]:
                raise ValueError(f"X must have one row per time step of the series: got "
                                 f"{exogenous.shape[0]} rows for {data.shape[0]}")
        last_start = data.shape[0] - horizon
        if last_start < context:
            raise ValueError(
                f"a test block of {data.shape[0]} steps is too short for context={context} "
                f"and horizon={horizon}; use fewer splits or shorter windows"
            )
        # Distinct starts only: a short block cannot hold n_starts of them, and repeating one
        # would weigh it twice in the mean.
        scores = []
        for start in np.unique(np.linspace(context, last_start, n_starts).astype(int)):
            rows = None if exogenous is None else exogenous[start - context:start + horizon]
            given = (data[start - context:start] if frame is None
                     else frame.iloc[start - context:start])
            times = ({"times": frame.index[start - context:start + horizon]} if dated
                     else {})
            forecast = np.asarray(estimator.predict(horizon, context=given, X=rows, **times))
            forecast = forecast.reshape(horizon, -1)
            truth = data[start:start + horizon]
            if metric == "vpt":
                scores.append(valid_prediction_time(truth, forecast, dt=dt,
                                                    lyapunov_exponent=lyapunov_exponent,
                                                    threshold=threshold))
            else:
                finite = np.isfinite(forecast).all()
                scores.append(-mean_squared_error(truth, forecast) if finite else -np.inf)
        return float(np.mean(scores))

    return scorer
