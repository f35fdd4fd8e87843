"""Irregular timestamps for LEMForecaster, HiPPOForecaster and LSSLForecaster
(tsrnn/forecasting/_times.py, shared with CfC/LTC): regular times give the no-times model,
irregular times reach the core as its per-step dt (checked against the module run by hand
and with a spy on the core during training), a DatetimeIndex works, bad times are clear
errors. Tiny seeded models; the file runs in a few seconds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tsrnn.forecasting import HiPPOForecaster, LEMForecaster, LSSLForecaster
from tsrnn.nn import LEM, LSSL, HiPPORNN

ESTIMATORS = [LEMForecaster, HiPPOForecaster, LSSLForecaster]
CORES = {LEMForecaster: LEM, HiPPOForecaster: HiPPORNN, LSSLForecaster: LSSL}
TINY = dict(hidden_size=8, sequence_length=12, batch_size=16, max_epochs=2, random_state=0)
# LSSL: Δ_h in [0.05, 0.5] per time unit, so that the gaps (0.25 to 2.5 units) visibly
# change the discretisation (the default range starts at 1e-3, where dt barely matters).
SMALL_CORE = {HiPPOForecaster: dict(state_size=8, measure="legt", theta=4.0),
              LSSLForecaster: dict(state_size=8, dt_min=0.05, dt_max=0.5)}
IDS = [c.__name__ for c in ESTIMATORS]


def tiny(cls, **overrides):
    return cls(**{**TINY, **SMALL_CORE.get(cls, {}), **overrides})


def irregular(n=200, seed=0):
    """Times with gaps from 0.05 to 0.5 (median about 0.2) and a sine/cosine sampled there."""
    times = np.cumsum(np.random.default_rng(seed).uniform(0.05, 0.5, n))
    return times, np.c_[np.sin(times), np.cos(times)]


def manual_rollout(model, context, times, n_steps):
    """The forecast computed by hand from the fitted module: the core run on the scaled
    context with dt = gaps / time_scale_, then n_steps - 1 closed-loop steps, each with the
    gap to the time it predicts."""
    module = model.module_
    dt = torch.as_tensor(np.diff(times) / model.time_scale_, dtype=torch.float32)[None]
    y = torch.as_tensor(model.y_scaler_.transform(context), dtype=torch.float32)[None]
    steps = y.shape[1]
    with torch.no_grad():
        prediction, state = module(y, None, None, dt[:, :steps])
        current, outputs = prediction[:, -1:], [prediction[:, -1:]]
        for i in range(1, n_steps):
            current, state = module(current, None, state, dt[:, steps + i - 1: steps + i])
            outputs.append(current)
    return model.y_scaler_.inverse_transform(torch.cat(outputs, 1)[0].double().numpy())


# ------------------------------------------------------------------ (a) regular times
@pytest.mark.parametrize("cls", ESTIMATORS, ids=IDS)
def test_regular_times_give_the_same_model_as_no_times(cls):
    _, y = irregular()
    plain = tiny(cls).fit(y)
    timed = tiny(cls).fit(y, times=2.0 * np.arange(len(y)) + 7.0)
    assert timed.time_scale_ == 2.0
    np.testing.assert_array_equal(plain.predict(6), timed.predict(6))
    # A horizon that continues with the same gap is what predict assumes without times.
    horizon = 2.0 * np.arange(len(y), len(y) + 6) + 7.0
    np.testing.assert_array_equal(timed.predict(6), timed.predict(6, times=horizon))
    # A regular DatetimeIndex (daily rows) is the same as no times either.
    index = pd.date_range("2024-01-01", periods=len(y), freq="D")
    framed = tiny(cls).fit(pd.DataFrame(y, index=index))
    # (to 1e-12: a DataFrame's columns give the scaler's float64 sums another rounding)
    np.testing.assert_allclose(framed.predict(6).to_numpy(), plain.predict(6), rtol=1e-12)


# ------------------------------------------------------------------ (b) dt reaches the core
@pytest.mark.parametrize(("cls", "options"), [
    (LEMForecaster, {}), (HiPPOForecaster, {}), (HiPPOForecaster, dict(measure="legs")),
    (LSSLForecaster, {}), (LSSLForecaster, dict(measure="s4d_real"))],
    ids=["lem", "hippo-legt", "hippo-legs", "lssl-legs", "lssl-s4d_real"])
def test_forecast_equals_the_core_run_with_the_irregular_gaps(cls, options):
    times, y = irregular()
    model = tiny(cls, **options).fit(y[:150], times=times[:150])
    assert model.time_scale_ == pytest.approx(np.median(np.diff(times[:150])))
    # A context as long as predict reads (a longer one is cut to its last rows).
    keep = model._context_length()
    context, all_times = y[150 - keep:150], times[150 - keep:153]
    forecast = model.predict(3, context=context, times=all_times)
    expected = manual_rollout(model, context, all_times, 3)
    np.testing.assert_allclose(forecast, expected, rtol=1e-5, atol=1e-6)  # float32 round-off
    # The same context and values with one unit per step: a core that ignored dt would give
    # the forecast above here too.
    regular = manual_rollout(model, context,
                             all_times[0] + model.time_scale_ * np.arange(keep + 3), 3)
    assert np.abs(forecast - regular).max() > 1e-3
    # The horizon's own gaps matter: near and far horizons give different forecasts.
    near = model.predict(3, times=times[149] + 0.05 * np.arange(1, 4))
    far = model.predict(3, times=times[149] + 1.0 * np.arange(1, 4))
    assert np.abs(near - far).max() > 1e-3


@pytest.mark.parametrize("cls", ESTIMATORS, ids=IDS)
def test_training_windows_hand_the_core_their_gaps(cls, monkeypatch):
    times, y = irregular()
    seen = []
    core = CORES[cls]
    original = core.forward

    def spy(self, x, h0=None, dt=None):
        seen.append(None if dt is None else dt.detach().clone())
        return original(self, x, h0, dt)

    monkeypatch.setattr(core, "forward", spy)
    model = tiny(cls, max_epochs=1).fit(y, times=times)
    gaps = np.diff(times) / model.time_scale_
    given = [d for d in seen if d is not None]
    assert given, "the core never received dt"
    for dt in given:
        assert dt.shape[1] == 12  # (B, sequence_length): one gap per step of the window
        # every value is one of the series' gaps (to float32 round-off) ...
        distance = np.abs(dt.double().numpy().reshape(-1, 1) - gaps[None]).min(axis=1)
        assert distance.max() < 1e-6
        # ... and windows are not all one unit (the median gap)
        assert (dt - 1).abs().max() > 0.1
    # Regular times leave dt out: the same steps, and the LSSL keeps its convolution.
    seen.clear()
    tiny(cls, max_epochs=1).fit(y, times=np.arange(len(y)) * 0.3)
    assert seen and all(d is None for d in seen)


def test_lssl_uses_the_recurrence_for_irregular_windows_and_the_convolution_otherwise(
        monkeypatch):
    times, y = irregular()
    calls = []
    for name in ("_convolution", "_recurrence"):
        original = getattr(LSSL, name)

        def spy(self, *args, _name=name, _original=original):
            calls.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(LSSL, name, spy)
    tiny(LSSLForecaster, max_epochs=1, validation_fraction=0.0).fit(y, times=times)
    assert set(calls) == {"_recurrence"}
    calls.clear()
    tiny(LSSLForecaster, max_epochs=1, validation_fraction=0.0).fit(y)
    assert set(calls) == {"_convolution"}
    # The module itself refuses irregular dt in the convolutional mode, with a clear error.
    module = LSSL(2, 4, state_size=4, mode="convolution")
    with pytest.raises(ValueError, match=r"irregular sampling \(dt\) needs mode='recurrence'"):
        module(torch.randn(1, 5, 2), dt=torch.rand(1, 5))


@pytest.mark.parametrize("cls", ESTIMATORS, ids=IDS)
def test_stored_context_equals_the_explicit_context_with_its_times(cls):
    times, y = irregular()
    model = tiny(cls).fit(y, times=times)
    keep = model._context_length()
    horizon = times[-1] + np.array([0.1, 0.4, 0.5])
    np.testing.assert_allclose(
        model.predict(3, times=horizon),
        model.predict(3, context=y[-keep:], times=np.r_[times[-keep:], horizon]),
        rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ (c) DatetimeIndex
@pytest.mark.parametrize("cls", ESTIMATORS, ids=IDS)
def test_a_datetime_index_gives_the_same_model_as_explicit_times(cls):
    times, y = irregular()
    index = pd.Timestamp("2024-01-01") + pd.to_timedelta(times, unit="h")
    frame = pd.DataFrame(y, index=index, columns=["s", "c"])
    from_index = tiny(cls).fit(frame)
    from_times = tiny(cls).fit(y, times=times * 3600.0)
    assert from_index.time_scale_ == pytest.approx(from_times.time_scale_)
    np.testing.assert_allclose(from_index.predict(3).to_numpy(), from_times.predict(3),
                               rtol=1e-5, atol=1e-6)
    horizon = index[-1] + pd.to_timedelta([0.1, 0.3, 0.4], unit="h")
    forecast = from_index.predict(3, times=horizon)
    assert list(forecast.index) == list(horizon) and list(forecast.columns) == ["s", "c"]
    np.testing.assert_allclose(forecast.to_numpy(), from_times.predict(
        3, times=(times[-1] + np.array([0.1, 0.3, 0.4])) * 3600.0), rtol=1e-5, atol=1e-6)


def test_exogenous_inputs_several_trajectories_and_save_load_with_times(tmp_path):
    times, y = irregular()
    X = np.sin(3 * times)[:, None]
    model = tiny(HiPPOForecaster, validation_fraction=0.0).fit(
        [y[:100], y[100:]], X=[X[:100], X[100:]], times=[times[:100], times[100:]])
    horizon = times[-1] + 0.2 * np.arange(1, 5)
    forecast = model.predict(4, X=np.sin(3 * horizon)[:, None], times=horizon)
    assert forecast.shape == (4, 2) and np.isfinite(forecast).all()
    context_times = np.r_[times[-20:], horizon]
    with_context = model.predict(4, context=y[-20:], X=np.sin(3 * context_times)[:, None],
                                 times=context_times)
    assert with_context.shape == (4, 2)
    loaded = HiPPOForecaster.load(model.save(tmp_path / "model.pt"))
    np.testing.assert_array_equal(
        loaded.predict(4, X=np.sin(3 * horizon)[:, None], times=horizon), forecast)
    with pytest.raises(ValueError, match="20 times of the context"):
        model.predict(4, context=y[-20:], X=np.ones((24, 1)), times=horizon)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=IDS)
def test_a_model_saved_without_time_attributes_loads_as_regularly_sampled(cls):
    # Files written before these forecasters took times hold no time_scale_, last_time_ or
    # context_gaps_; they load as models of rows one unit apart.
    _, y = irregular()
    model = tiny(cls).fit(y)
    state = model._get_state()
    for name in ("time_scale_", "last_time_", "context_gaps_"):
        del state["attributes"][name]
    old = cls(**model.get_params())
    old._set_state(state)
    np.testing.assert_array_equal(old.predict(4), model.predict(4))
    with pytest.raises(ValueError, match="fitted without times"):
        old.predict(2, times=[1.0, 2.0])


# ------------------------------------------------------------------ (d) bad times
@pytest.mark.parametrize("cls", ESTIMATORS, ids=IDS)
def test_bad_times_raise_clear_errors(cls):
    times, y = irregular(80)
    model = tiny(cls, validation_fraction=0.0)
    swapped = times.copy()
    swapped[10], swapped[11] = swapped[11], swapped[10]
    with pytest.raises(ValueError, match="times must be strictly increasing; entry 11"):
        model.fit(y, times=swapped)
    with pytest.raises(ValueError, match="times has 79 entries for 80 rows of y; give one"):
        model.fit(y, times=times[:-1])
    with pytest.raises(ValueError, match="NaN"):
        model.fit(y, times=np.r_[times[:-1], np.nan])
    with pytest.raises(ValueError, match="NaT"):
        hours = pd.date_range("2024-01-01", periods=80, freq="h")
        model.fit(y, times=hours.where(np.arange(80) != 5))  # row 5 has no time
    with pytest.raises(ValueError, match="times has 1 entries for 2 trajectories"):
        model.fit([y[:40], y[40:]], times=[times[:40]])
    with pytest.raises(ValueError, match=r"times\[1\] must be strictly increasing"):
        model.fit([y[:40], y[40:]], times=[times[:40], times[40:][::-1]])
    assert not hasattr(model, "context_y_")  # a failed fit leaves nothing behind
    model.fit(y, times=times)
    with pytest.raises(ValueError, match=r"times \(after the end of the training data\) must"):
        model.predict(2, times=[times[-1] - 1.0, times[-1] + 1.0])
    with pytest.raises(ValueError, match="the 3 times of the horizon, got 2"):
        model.predict(3, times=times[-1] + np.arange(1, 3))
    with pytest.raises(ValueError, match="the 10 times of the context followed by the 3"):
        model.predict(3, context=y[-10:], times=times[-10:])
    with pytest.raises(ValueError, match="fitted without times"):
        tiny(cls, validation_fraction=0.0).fit(y).predict(2, times=[1.0, 2.0])


# ------------------------------------------------------------------ hidden states
@pytest.mark.parametrize("cls", ESTIMATORS, ids=IDS)
def test_state_trajectory_is_the_core_run_with_the_series_gaps(cls):
    times, y = irregular()
    model = tiny(cls).fit(y, times=times)
    states = model.get_state_trajectory(y[:30], times=times[:30])
    assert states.shape == (30, model.module_.core(torch.zeros(1, 1, 2), None)[0].shape[-1])
    gaps = np.r_[np.diff(times[:30]) / model.time_scale_, 1.0]
    scaled = torch.as_tensor(model.y_scaler_.transform(y[:30]), dtype=torch.float32)[None]
    with torch.no_grad():
        expected, _ = model.module_.core(scaled, None,
                                         torch.as_tensor(gaps, dtype=torch.float32)[None])
    np.testing.assert_allclose(states, expected[0].double().numpy(), rtol=1e-6, atol=1e-6)
    # Ignoring the gaps would give the one-unit states instead.
    assert np.abs(states - model.get_state_trajectory(y[:30])).max() > 1e-3
    with pytest.raises(ValueError, match="times has 29 entries"):
        model.get_state_trajectory(y[:30], times=times[:29])


# ------------------------------------------------------------------ (g) regular calendars
@pytest.mark.parametrize("cls", [HiPPOForecaster, LEMForecaster], ids=["HiPPO", "LEM"])
def test_a_business_day_index_keeps_its_calendar_in_the_forecast(cls):
    # The forecast after a Friday is dated Monday (the frequency continued, as for every
    # forecaster), and the step to Monday is 3 days long, as the model saw over weekends.
    index = pd.bdate_range("2021-03-01", periods=300)
    series = pd.Series(np.sin(np.arange(300) * 0.2), index=index, name="s")
    model = tiny(cls).fit(series)
    context = series.iloc[:30]
    assert context.index[-1].day_name() == "Friday"
    forecast = model.predict(3, context=context)
    expected = pd.bdate_range(context.index[-1], periods=4)[1:]
    assert list(forecast.index) == list(expected)
    np.testing.assert_allclose(
        forecast.to_numpy(),
        model.predict(3, context=context, times=context.index.append(expected)).to_numpy(),
        rtol=1e-6, atol=1e-7)
    # Without a context too: the training data end on a Friday as well.
    assert series.index[-1].day_name() == "Friday"
    after = pd.bdate_range(series.index[-1], periods=4)[1:]
    np.testing.assert_allclose(model.predict(3).to_numpy(),
                               model.predict(3, times=after).to_numpy(), rtol=1e-6, atol=1e-7)
    assert list(model.predict(3).index) == list(after)


def test_dates_with_and_without_a_time_zone_are_not_mixed():
    index = pd.date_range("2024-03-01", periods=150, freq="h")
    series = pd.Series(np.sin(np.arange(150) * 0.1), index=index, name="s")
    model = tiny(HiPPOForecaster).fit(series)
    zoned = pd.date_range(index[-1], periods=4, freq="h", tz="America/New_York")[1:]
    with pytest.raises(ValueError, match="time zone"):
        model.predict(3, times=zoned)
    context = series.iloc[-20:].tz_localize("UTC")
    with pytest.raises(ValueError, match="time zone"):
        model.predict(3, context=context)


@pytest.mark.parametrize("cls", [HiPPOForecaster, LSSLForecaster], ids=["HiPPO", "LSSL"])
def test_a_long_context_is_read_as_the_stored_one(cls):
    # predict() starts from the last sequence_length rows of the training data; a context
    # given by the user is cut the same way (the HiPPO-RNN's state counts its steps).
    _, y = irregular()
    model = tiny(cls).fit(y)
    np.testing.assert_array_equal(model.predict(5), model.predict(5, context=y))
