"""Workflows of a user coming from sktime/darts/reservoirpy: pandas in and out, shipped real
series, several trajectories, scikit-learn model selection, streaming reservoirs, irregular
dates, save/load; and the problems such workflows found (each test below the "found" line
fails without its fix)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit

from tsrnn.datasets import load_co2, load_sunspots
from tsrnn.forecasting import (
    CfCForecaster,
    GRUForecaster,
    LSTMForecaster,
    LTCForecaster,
    closed_loop_scorer,
)
from tsrnn.metrics import rmse
from tsrnn.reservoir import ESN, NVAR, ResRMN

TINY_NEURAL = dict(hidden_size=8, sequence_length=12, max_epochs=1, random_state=0)


def irregular_frame(n=200, seed=0, tz=None) -> pd.DataFrame:
    """Two columns sampled at random times (hours), indexed by dates."""
    hours = np.sort(np.random.default_rng(seed).uniform(0, 60, n))
    index = pd.DatetimeIndex(pd.Timestamp("2024-01-01") + pd.to_timedelta(hours, unit="h"),
                             name="time")
    if tz is not None:
        index = index.tz_localize(tz)
    return pd.DataFrame(np.c_[np.sin(hours), np.cos(hours)], index=index, columns=["s", "c"])


# ====================================================================== checks that hold
def test_shipped_weekly_series_forecast_continues_its_dates_with_exogenous_inputs():
    """co2 (weekly, W-SAT): the forecast of a model fitted on the training part is indexed
    exactly like the test part, with the training columns, in float64, for forecasters and
    reservoirs alike, with and without a context and exogenous inputs."""
    frame = load_co2(fill="interpolate").iloc[-600:]
    week = pd.DataFrame({"week": frame.index.isocalendar().week.to_numpy(float)},
                        index=frame.index)
    train, test = frame.iloc[:-52], frame.iloc[-52:]
    for model in (ESN(n_units=50, warmup=20, random_state=0),
                  GRUForecaster(**TINY_NEURAL)):
        model.fit(train, week.iloc[:-52])
        after_training = model.predict(52, X=week.iloc[-52:])
        after_context = model.predict(52, context=train.iloc[-100:],
                                      X=week.iloc[-152:])
        for forecast in (after_training, after_context):
            assert forecast.index.equals(test.index) and forecast.index.freqstr == "W-SAT"
            assert list(forecast.columns) == ["co2"]
            assert (forecast.dtypes == np.float64).all()
            assert np.isfinite(rmse(test, forecast))


def test_shipped_yearly_series_period_index_survives_save_and_load(tmp_path):
    """A PeriodIndex (sunspots, yearly) is continued before and after save/load."""
    frame = load_sunspots()
    train, test = frame.iloc[:-20], frame.iloc[-20:]
    model = NVAR(delays=3, order=1).fit(train)
    model.save(tmp_path / "nvar.pt")
    loaded = NVAR.load(tmp_path / "nvar.pt")
    for forecast in (model.predict(20), loaded.predict(20)):
        assert isinstance(forecast.index, pd.PeriodIndex) and forecast.index.equals(test.index)
    pd.testing.assert_frame_equal(model.predict(20), loaded.predict(20))


def test_several_trajectories_of_different_lengths_each_forecast_from_its_context():
    """Frames of 300, 180 and 90 rows in one fit; a forecast from each one's last rows is
    indexed after that frame (not after the last one) and equals the array forecast."""
    t = [np.arange(n) for n in (300, 180, 90)]
    frames = [pd.DataFrame(np.c_[np.sin(s / 5 + k), np.cos(s / 5 + k)], columns=["a", "b"],
                           index=pd.date_range(f"202{k}-01-01", periods=len(s), freq="D"))
              for k, s in enumerate(t)]
    model = ESN(n_units=60, warmup=20, random_state=0).fit(frames)
    for frame in frames:
        forecast = model.predict(5, context=frame.iloc[-40:])
        assert forecast.index[0] == frame.index[-1] + pd.Timedelta(days=1)
        np.testing.assert_array_equal(
            forecast.to_numpy(), model.predict(5, context=frame.iloc[-40:].to_numpy()))
    assert model.predict(5).index[0] == frames[-1].index[-1] + pd.Timedelta(days=1)


def test_exogenous_input_of_the_predicted_step_is_the_one_the_forecast_sees():
    """y_{t+1} = tanh(2 x_{t+1}) with x white noise: only a model that reads x of the
    predicted step (the documented convention, in fit and in predict with or without a
    context) can forecast it; the ESN does to 1% of the variance."""
    x = np.random.default_rng(0).uniform(-1, 1, (700, 1))
    y = np.tanh(2 * x)
    model = ESN(n_units=100, warmup=10, random_state=0).fit(y[:600], x[:600])
    for forecast in (model.predict(100, X=x[600:]),
                     model.predict(100, context=y[500:600], X=x[500:])):
        assert np.mean((forecast - y[600:]) ** 2) < 0.01 * y.var()


def test_grid_search_over_an_esn_refits_the_chosen_model():
    """GridSearchCV with TimeSeriesSplit and the closed-loop scorer: the best estimator is
    the refit of the best parameters on the whole series, and forecasts like one."""
    from tsrnn.systems import Lorenz63

    y = Lorenz63().simulate(1500, dt=0.025, transient=300, seed=0)
    scorer = closed_loop_scorer(context=60, horizon=100, n_starts=3, dt=0.025,
                                lyapunov_exponent=0.9056)
    grid = {"spectral_radius": [0.3, 0.9], "ridge": [1e-6, 1e-1]}
    search = GridSearchCV(ESN(n_units=80, warmup=50, connectivity=0.1, random_state=0),
                          grid, cv=TimeSeriesSplit(3), scoring=scorer).fit(y)
    refit = ESN(n_units=80, warmup=50, connectivity=0.1, random_state=0,
                **search.best_params_).fit(y)
    np.testing.assert_array_equal(search.predict(50), refit.predict(50))
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and scores.max() > scores.min()


def test_streamed_ridge_readout_equals_fit_without_scaling(tmp_path):
    """partial_fit in chunks, saved and continued after loading, ends at the readout of one
    fit on the whole series (scale=False: a stream standardises with its first chunk)."""
    from tsrnn.systems import Lorenz63

    y = Lorenz63().simulate(1200, dt=0.025, transient=200, seed=1)
    # ridge 1e-2 keeps the normal equations well conditioned, so that summing them in
    # another order (chunks against one run) moves the solution by round-off only (up to
    # 1.5e-8 relative in the smallest weights here).
    options = dict(n_units=60, warmup=30, connectivity=0.1, random_state=0, scale=False,
                   ridge=1e-2)
    stream = ESN(**options)
    for start in range(0, 600, 200):
        stream.partial_fit(y[start:start + 200])
    stream.save(tmp_path / "stream.pt")
    resumed = ESN.load(tmp_path / "stream.pt")
    for start in range(600, 1200, 200):
        resumed.partial_fit(y[start:start + 200])
    whole = ESN(**options).fit(y)
    np.testing.assert_allclose(resumed.readout_weights_, whole.readout_weights_, rtol=1e-7,
                               atol=1e-10)


# ====================================================================== found and fixed
def test_zoned_datetime_index_keeps_its_time_zone_after_save_and_load(tmp_path):
    """Found: the time zone was saved as its UTC offset (Europe/Berlin became UTC+01:00),
    so a loaded model continued the index wrongly across a daylight-saving change."""
    index = pd.date_range("2021-03-26 00:00", periods=49, freq="h", tz="Europe/Berlin")
    frame = pd.DataFrame({"v": np.sin(np.arange(49) / 3)}, index=index)
    model = NVAR().fit(frame)
    model.save(tmp_path / "zoned.pt")
    loaded = NVAR.load(tmp_path / "zoned.pt")
    expected = pd.date_range(index[-1], periods=6, freq="h", tz="Europe/Berlin")[1:]
    for forecast in (model.predict(5), loaded.predict(5)):
        assert str(forecast.index.tz) == "Europe/Berlin"
        assert forecast.index.equals(expected)
    # Across the change: 2021-03-28 01:00 +01:00 is followed by 03:00 +02:00.
    assert loaded.predict(5).index[3].utcoffset() == pd.Timedelta(hours=2)


@pytest.mark.parametrize("cls", [CfCForecaster, LTCForecaster])
def test_forecast_after_irregular_dates_is_labelled_with_the_dates_it_predicts(cls):
    """Found: after irregular dates (no frequency), predict without times forecast one time
    unit (time_scale_) per step but returned the index 0, 1, 2, ...; now the dates
    last + k time_scale_ (after the training data or after a dated context), zone and
    index name kept. Given times still win."""
    frame = irregular_frame(tz="America/New_York")
    model = cls(**TINY_NEURAL).fit(frame.iloc[:150])
    step = pd.Timedelta(seconds=model.time_scale_)
    forecast = model.predict(4)
    expected = frame.index[149] + step * np.arange(1, 5)
    assert forecast.index.name == "time" and str(forecast.index.tz) == "America/New_York"
    assert (abs(forecast.index - pd.DatetimeIndex(expected)) < pd.Timedelta("1us")).all()
    after_context = model.predict(4, context=frame.iloc[100:170])
    expected = frame.index[169] + step * np.arange(1, 5)
    assert (abs(after_context.index - pd.DatetimeIndex(expected)) < pd.Timedelta("1us")).all()
    given = frame.index[150:154]
    assert model.predict(4, times=given).index.equals(given)
    # Plain numbers give arrays as before; a regular index is continued by its frequency.
    assert isinstance(model.predict(4, context=frame.iloc[100:170].to_numpy()), np.ndarray)


def test_forecast_after_irregular_dates_keeps_its_labels_after_save_and_load(tmp_path):
    frame = irregular_frame()
    model = CfCForecaster(**TINY_NEURAL).fit(frame)
    model.save(tmp_path / "cfc.pt")
    loaded = CfCForecaster.load(tmp_path / "cfc.pt")
    pd.testing.assert_frame_equal(model.predict(3), loaded.predict(3))
    assert isinstance(loaded.predict(3).index, pd.DatetimeIndex)


def test_time_scale_without_times_warns_that_it_has_no_effect():
    """Found: time_scale was silently ignored when no times (and no DatetimeIndex) were
    given: the rows are one time unit apart whatever it says."""
    y = irregular_frame().to_numpy()
    with pytest.warns(UserWarning, match="time_scale=2.0 has no effect without times"):
        CfCForecaster(time_scale=2.0, **TINY_NEURAL).fit(y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CfCForecaster(time_scale=2.0, **TINY_NEURAL).fit(y, times=np.arange(len(y)) * 0.5)


def test_irregular_numeric_index_warns_that_it_is_not_read_as_times():
    """Found: a frame indexed by irregular numbers (hours, say) was trained as if its rows
    were equally spaced, without a word; only a DatetimeIndex is read as times."""
    frame = irregular_frame()
    hours = (frame.index - frame.index[0]) / pd.Timedelta(hours=1)
    numeric = frame.set_axis(pd.Index(hours.to_numpy()), axis=0)
    with pytest.warns(UserWarning, match="irregular numeric index"):
        CfCForecaster(**TINY_NEURAL).fit(numeric)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CfCForecaster(**TINY_NEURAL).fit(numeric, times=numeric.index)
        CfCForecaster(**TINY_NEURAL).fit(frame.reset_index(drop=True))  # RangeIndex


def test_dated_and_undated_trajectories_together_are_refused():
    """Found: one DatetimeIndex among plain frames mixed seconds with row numbers."""
    dated = irregular_frame()
    with pytest.raises(ValueError, match="indexed by dates and others are not"):
        CfCForecaster(**TINY_NEURAL).fit([dated.reset_index(drop=True), dated])


@pytest.mark.parametrize("cls", [GRUForecaster, LSTMForecaster])
def test_dropout_with_one_layer_warns_that_it_has_no_effect(cls):
    """Found: dropout=0.5 with num_layers=1 trained exactly as dropout=0, unannounced."""
    y = irregular_frame().to_numpy()
    with pytest.warns(UserWarning, match="dropout=0.5 has no effect with num_layers=1"):
        with_dropout = cls(dropout=0.5, **TINY_NEURAL).fit(y)
    np.testing.assert_array_equal(with_dropout.predict(3), cls(**TINY_NEURAL).fit(y).predict(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls(dropout=0.5, num_layers=2, **TINY_NEURAL).fit(y)


def test_context_frame_with_other_columns_is_refused():
    """Found: a context frame with the training columns in another order was read by
    position and its forecast labelled with its own (now wrong) column names."""
    frame = irregular_frame().reset_index(drop=True)
    model = ESN(n_units=40, warmup=10, connectivity=0.2, random_state=0).fit(frame)
    reference = model.predict(3, context=frame.iloc[-50:])
    assert list(reference.columns) == ["s", "c"]
    with pytest.raises(ValueError, match=r"select context\[\['s', 'c'\]\]"):
        model.predict(3, context=frame.iloc[-50:][["c", "s"]])
    with pytest.raises(ValueError, match="fitted on \\['s', 'c'\\]"):
        model.predict(3, context=frame.iloc[-50:].set_axis(["u", "v"], axis=1))
    # An array has no names to check: read by position, as documented.
    np.testing.assert_array_equal(model.predict(3, context=frame.iloc[-50:].to_numpy()),
                                  reference.to_numpy())
    with pytest.raises(ValueError, match="trajectory 0 of y has columns"):
        ESN(n_units=40, warmup=10, random_state=0).fit([frame[["c", "s"]], frame])


def test_resrmn_stream_warns_once_when_it_outgrows_its_lossless_memory():
    """Found: fit warns that memory_radius=1 makes the memory a random walk beyond
    n_memory_units steps, but a stream fed through partial_fit grew past it silently."""
    y = irregular_frame(n=400).to_numpy()
    model = ResRMN(n_units=30, n_memory_units=100, warmup=10, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for start in range(0, 400, 60):
            model.partial_fit(y[start:start + 60])
    messages = [str(w.message) for w in caught if "delay line" in str(w.message)]
    assert len(messages) == 1 and "the stream has reached 120" in messages[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fading = ResRMN(n_units=30, n_memory_units=100, warmup=10, memory_radius=0.9,
                        random_state=0)
        for start in range(0, 400, 60):
            fading.partial_fit(y[start:start + 60])


def test_closed_loop_scorer_passes_the_exogenous_rows_of_each_forecast():
    """Found: GridSearchCV(...).fit(series, exogenous) fitted every candidate with its
    exogenous inputs but scored it without them: each score failed, and scikit-learn
    turned the errors into NaN with a warning. The scorer now takes them from its third
    argument (where scikit-learn passes them), the context's rows and the horizon's."""
    x = np.random.default_rng(0).uniform(-1, 1, (900, 1))
    y = np.tanh(2 * x)
    scorer = closed_loop_scorer(context=20, horizon=50, n_starts=2, metric="mse")
    model = ESN(n_units=50, warmup=10, random_state=0).fit(y[:600], x[:600])
    expected = np.mean([-np.mean((model.predict(50, context=y[600 + s - 20:600 + s],
                                                 X=x[600 + s - 20:600 + s + 50])
                                  - y[600 + s:600 + s + 50]) ** 2) for s in (20, 250)])
    assert scorer(model, y[600:], x[600:]) == pytest.approx(expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search = GridSearchCV(ESN(n_units=50, warmup=10, random_state=0),
                              {"ridge": [1e-6, 10.0]}, cv=TimeSeriesSplit(3),
                              scoring=scorer).fit(y, x)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_params_ == {"ridge": 1e-6}
    with pytest.raises(ValueError, match="one row per time step"):
        scorer(model, y[600:], x[600:700])


@pytest.mark.parametrize(("cls", "default"), [(ESN, "float64"), (NVAR, "float64"),
                                              (GRUForecaster, "float32")])
def test_half_precision_refusal_names_the_estimators_own_default(cls, default):
    """Found: the refusal of float16 on the CPU called float32 "the default" for every
    estimator, though the reservoirs default to float64."""
    with pytest.raises(ValueError, match=rf"'{default}' \(the default\)"):
        cls(dtype="float16", device="cpu").fit(np.zeros((300, 1)))


def test_irregular_dates_taken_as_equally_spaced_rows_are_announced():
    """Found: co2.dropna() (59 missing weeks dropped) was fitted by the reservoirs and the
    baselines as if its rows were consecutive weeks, and forecast with a range index,
    without a word. Now a warning says so and names the forecasters that read times;
    those (and regular indexes) stay quiet."""
    gappy = load_co2().dropna().iloc[:400]
    assert gappy.index.freq is None
    with pytest.warns(UserWarning, match="DatetimeIndex of y is irregular.*NVAR"):
        forecast = NVAR().fit(gappy).predict(2)
    assert isinstance(forecast.index, pd.RangeIndex)
    with pytest.warns(UserWarning, match="DatetimeIndex of y is irregular.*ESN"):
        ESN(n_units=30, warmup=10, random_state=0).fit([gappy.iloc[:200], gappy.iloc[200:]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NVAR().fit(load_co2(fill="interpolate").iloc[:400])
        CfCForecaster(**TINY_NEURAL).fit(gappy)


def test_small_reservoir_at_the_default_connectivity_is_told_what_connectivity_to_use():
    """Found: ESN(n_units=60) at the default connectivity 0.02 (1.2 weights per unit) drew
    a nilpotent W for random_state=1 and was only told to "raise connectivity"."""
    y = np.random.default_rng(0).normal(size=(200, 2))
    with pytest.raises(ValueError, match=r"1\.2 recurrent weights per unit.*e\.g\. to 0\.17"):
        ESN(n_units=60, random_state=1).fit(y)
    ESN(n_units=60, connectivity=0.17, random_state=1).fit(y)


def test_exogenous_frame_dated_otherwise_than_the_series_is_refused():
    """Found: X is matched to y by position, so an X frame sliced one week off (same
    length, other dates) trained on shifted pairs without a sign; the same for the context
    rows of X in predict. Frames with the same dates (or plain arrays) pass as before."""
    frame = load_co2(fill="interpolate").iloc[:400]
    week = pd.DataFrame({"w": np.arange(len(frame)) % 52.0}, index=frame.index)
    with pytest.raises(ValueError, match=r"row 0 of X is 1958-04-05.*of y 1958-03-29"):
        ESN(n_units=30, warmup=10, random_state=0).fit(frame.iloc[:300], week.iloc[1:301])
    model = ESN(n_units=30, warmup=10, random_state=0).fit(frame.iloc[:300], week.iloc[:300])
    with pytest.raises(ValueError, match="dated otherwise than context"):
        model.predict(5, context=frame.iloc[200:300], X=week.iloc[201:306])
    from_frames = model.predict(5, context=frame.iloc[200:300], X=week.iloc[200:305])
    from_arrays = model.predict(5, context=frame.iloc[200:300].to_numpy(),
                                X=week.iloc[200:305].to_numpy())
    np.testing.assert_array_equal(from_frames.to_numpy(), from_arrays)


def test_later_chunks_of_a_stream_are_checked_like_the_first():
    # partial_fit used to check column names and the dates of X only through fit's path.
    rng = np.random.default_rng(0)
    dates = pd.date_range("2021-01-01", periods=600, freq="h")
    frame = pd.DataFrame(rng.normal(size=(600, 2)).cumsum(0), index=dates, columns=["a", "b"])
    model = ESN(n_units=20, random_state=0).partial_fit(frame.iloc[:300])
    with pytest.raises(ValueError, match=r"this chunk of y has columns \['b', 'a'\]"):
        model.partial_fit(frame.iloc[300:][["b", "a"]])
    shifted = pd.DataFrame(np.ones((300, 1)), index=dates[1:301])
    with pytest.raises(ValueError, match="X is dated otherwise than y"):
        ESN(n_units=20, random_state=0).partial_fit(frame.iloc[:300], shifted)


@pytest.mark.parametrize("device", ["mps", "meta"])
def test_devices_other_than_cpu_and_cuda_are_refused_clearly(device):
    with pytest.raises(ValueError, match="runs on 'cpu' or 'cuda'"):
        ESN(n_units=20, device=device).fit(np.sin(np.arange(300) / 5.0))
