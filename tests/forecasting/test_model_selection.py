"""Hyperparameter search through scikit-learn with the closed-loop scorer."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit, cross_val_score

from tsrnn.forecasting import closed_loop_scorer
from tsrnn.metrics import valid_prediction_time
from tsrnn.reservoir import ESN
from tsrnn.systems import Lorenz63


@pytest.fixture(scope="module")
def series():
    return Lorenz63().simulate(6_000, transient=1_000, seed=0)


def test_scorer_is_the_mean_vpt_over_its_starts(series):
    model = ESN(n_units=200, connectivity=0.05, random_state=0).fit(series[:3_000])
    scorer = closed_loop_scorer(context=200, horizon=300, n_starts=3, dt=0.01,
                                lyapunov_exponent=0.9056)
    block = series[3_000:4_000]
    expected = np.mean([
        valid_prediction_time(block[s:s + 300], model.predict(300, context=block[s - 200:s]),
                              dt=0.01, lyapunov_exponent=0.9056)
        for s in np.linspace(200, 700, 3).astype(int)])
    assert scorer(model, block) == pytest.approx(expected)


def test_grid_search_with_time_series_split_prefers_the_biased_reservoir(series):
    # SPEC section 4: without the bias the ESN loses most of its Lorenz-63 forecast horizon.
    search = GridSearchCV(
        ESN(n_units=200, connectivity=0.05, random_state=0),
        {"bias_scaling": [0.0, 0.5]}, cv=TimeSeriesSplit(2),
        scoring=closed_loop_scorer(context=200, horizon=600, n_starts=2, dt=0.01),
        n_jobs=2)
    search.fit(series)
    assert search.best_params_ == {"bias_scaling": 0.5}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_mse_metric_is_negative_and_cross_val_score_works(series):
    scores = cross_val_score(ESN(n_units=100, connectivity=0.1, random_state=0), series,
                             cv=TimeSeriesSplit(2),
                             scoring=closed_loop_scorer(context=100, horizon=50, metric="mse"))
    assert scores.shape == (2,) and (scores <= 0).all()


def test_too_short_test_block_is_a_clear_error(series):
    model = ESN(n_units=50, random_state=0).fit(series[:1_000])
    with pytest.raises(ValueError, match="too short"):
        closed_loop_scorer(context=200, horizon=500)(model, series[:600])
    with pytest.raises(ValueError, match="metric"):
        closed_loop_scorer(metric="r2")


def test_vpt_needs_a_horizon_of_two_steps_at_construction():
    # Checked before a search trains every candidate only to score each one NaN.
    with pytest.raises(ValueError, match="horizon >= 2"):
        closed_loop_scorer(horizon=1)
    closed_loop_scorer(horizon=1, metric="mse")  # one step is a forecast error


def test_a_forecaster_that_reads_dates_is_scored_at_the_blocks_own_dates():
    import pandas as pd

    from tsrnn.forecasting import HiPPOForecaster
    from tsrnn.metrics import mean_squared_error

    gaps = np.random.default_rng(0).choice([0.05, 0.3], size=599)
    t = np.r_[0.0, np.cumsum(gaps)]
    frame = pd.DataFrame({"a": np.sin(t), "b": np.cos(t)},
                         index=pd.Timestamp("2024-01-01") + pd.to_timedelta(t, unit="h"))
    model = HiPPOForecaster(hidden_size=8, state_size=8, sequence_length=16, max_epochs=2,
                            random_state=0).fit(frame.iloc[:400])
    block = frame.iloc[400:]
    scorer = closed_loop_scorer(context=30, horizon=10, n_starts=2, metric="mse")
    starts = np.unique(np.linspace(30, len(block) - 10, 2).astype(int))
    at_dates = [-mean_squared_error(block.iloc[s:s + 10].to_numpy(), model.predict(
        10, context=block.iloc[s - 30:s], times=block.index[s - 30:s + 10]).to_numpy())
        for s in starts]
    assert scorer(model, block) == pytest.approx(np.mean(at_dates), rel=1e-9)
