"""Tests of tsrnn.forecasting.continuous (CfCForecaster, LTCForecaster): the scikit-learn
contract, irregular timestamps (arrays and DatetimeIndex), exogenous inputs, save/load and
bad input. Tiny models (8 units, windows of 12) so that the file runs in seconds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

from tsrnn.forecasting import CfCForecaster, LTCForecaster

TINY = dict(hidden_size=8, sequence_length=12, batch_size=16, max_epochs=2, random_state=0)
ESTIMATORS = [CfCForecaster, LTCForecaster]


def irregular(n=240, seed=0):
    times = np.cumsum(np.random.default_rng(seed).uniform(0.05, 0.25, n))
    return times, np.c_[np.sin(times), np.cos(times)]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_fit_predict_and_the_sklearn_contract(cls):
    times, y = irregular()
    model = cls(**TINY)
    assert clone(model).get_params() == model.get_params()
    model.fit(y, times=times)
    assert model.time_scale_ == pytest.approx(np.median(np.diff(times)))
    forecast = model.predict(6, times=times[-1] + 0.1 * np.arange(1, 7))
    assert forecast.shape == (6, 2) and np.isfinite(forecast).all()
    again = cls(**TINY).fit(y, times=times).predict(6, times=times[-1] + 0.1 * np.arange(1, 7))
    np.testing.assert_array_equal(forecast, again)  # random_state makes it reproducible


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_the_forecast_depends_on_the_times_of_the_horizon(cls):
    times, y = irregular()
    model = cls(**TINY).fit(y, times=times)
    near = model.predict(4, times=times[-1] + 0.05 * np.arange(1, 5))
    far = model.predict(4, times=times[-1] + 0.5 * np.arange(1, 5))
    assert np.abs(near - far).max() > 1e-3
    # Without times the horizon continues with the median gap: the same as giving it.
    median = model.time_scale_
    np.testing.assert_allclose(model.predict(4),
                               model.predict(4, times=times[-1] + median * np.arange(1, 5)),
                               rtol=1e-5, atol=1e-6)


def test_a_datetime_index_gives_the_same_model_as_explicit_times():
    times, y = irregular()
    index = pd.Timestamp("2024-01-01") + pd.to_timedelta(times, unit="h")
    frame = pd.DataFrame(y, index=index, columns=["s", "c"])
    from_index = CfCForecaster(**TINY).fit(frame)
    from_times = CfCForecaster(**TINY).fit(y, times=times * 3600.0)
    assert from_index.time_scale_ == pytest.approx(from_times.time_scale_)
    np.testing.assert_allclose(from_index.predict(3).to_numpy(), from_times.predict(3),
                               rtol=1e-5, atol=1e-6)
    horizon = index[-1] + pd.to_timedelta([0.1, 0.3, 0.4], unit="h")
    forecast = from_index.predict(3, times=horizon)
    assert list(forecast.index) == list(horizon) and list(forecast.columns) == ["s", "c"]


def test_regular_series_without_times_equal_unit_spaced_times():
    _, y = irregular()
    plain = CfCForecaster(**TINY).fit(y)
    timed = CfCForecaster(**TINY).fit(y, times=2.0 * np.arange(len(y)))
    np.testing.assert_allclose(plain.predict(5), timed.predict(5), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_exogenous_inputs_and_context(cls):
    times, y = irregular()
    X = np.sin(3 * times)[:, None]
    model = cls(**TINY).fit(y, X=X, times=times)
    horizon = times[-1] + 0.1 * np.arange(1, 5)
    forecast = model.predict(4, X=np.sin(3 * horizon)[:, None], times=horizon)
    assert forecast.shape == (4, 2)
    context_times = np.r_[times[-20:], horizon]
    with_context = model.predict(4, context=y[-20:], X=np.sin(3 * context_times)[:, None],
                                 times=context_times)
    assert with_context.shape == (4, 2)
    with pytest.raises(ValueError, match="X must have shape"):
        model.predict(4, X=np.ones((3, 1)), times=horizon)
    with pytest.raises(ValueError, match="20 times of the context"):
        model.predict(4, context=y[-20:], X=np.ones((24, 1)), times=horizon)


@pytest.mark.parametrize("options", [dict(wiring="ncp"), dict(wiring="low_rank", rank=2),
                                     dict(wiring="random", mixed_memory=True),
                                     dict(mode="pure")])
def test_wired_and_other_cfc_variants_fit(options):
    times, y = irregular(160)
    model = CfCForecaster(**{**TINY, "hidden_size": 10}, **options).fit(y, times=times)
    assert np.isfinite(model.predict(3)).all()


def test_ltc_variants_fit():
    times, y = irregular(160)
    for options in (dict(wiring="ncp"), dict(mixed_memory=True), dict(ode_unfolds=2)):
        model = LTCForecaster(**{**TINY, "hidden_size": 10}, **options).fit(y, times=times)
        assert np.isfinite(model.predict(3)).all()


def test_the_wiring_follows_random_state():
    # Without a wiring the LTC's polarities came from ncps's fixed seed whatever the
    # random_state; the NCP wiring refused random_state >= 2**32 with numpy's message.
    times, y = irregular(160)

    def polarities(**options):
        model = LTCForecaster(**{**TINY, "max_epochs": 1, **options}).fit(y, times=times)
        return model.module_.core.erev.detach().sign()

    assert not torch.equal(polarities(random_state=1), polarities(random_state=2))
    assert torch.equal(polarities(random_state=1), polarities(random_state=1, wiring="full"))
    for cls in ESTIMATORS:
        model = cls(**{**TINY, "hidden_size": 10, "random_state": 2**32 + 5,
                       "wiring": "ncp"}).fit(y, times=times)
        assert np.isfinite(model.predict(3)).all()


def test_settings_without_effect_are_announced():
    times, y = irregular(160)
    cases = [(LTCForecaster, dict(rank=3), "rank=3 has no effect"),
             (LTCForecaster, dict(wiring="full", sparsity=0.2), "sparsity=0.2 has no effect"),
             (CfCForecaster, dict(wiring="ncp", sparsity=0.05), "raised to 0.1"),
             (CfCForecaster, dict(wiring="random", backbone_units=32), "backbone_units=32 has")]
    for cls, options, message in cases:
        with pytest.warns(UserWarning, match=message):
            cls(**{**TINY, "hidden_size": 10, "max_epochs": 1, **options}).fit(y, times=times)


def test_cfc_learns_a_sine_sampled_irregularly():
    times, y = irregular(600, seed=1)
    model = CfCForecaster(hidden_size=16, sequence_length=16, max_epochs=25,
                          random_state=0).fit(y[:500], times=times[:500])
    losses = model.history_["train_loss"]
    assert losses[-1] < 0.2 * losses[0]
    forecast = model.predict(20, times=times[500:520])
    naive = np.repeat(y[499:500], 20, axis=0)
    assert np.abs(forecast - y[500:520]).mean() < 0.5 * np.abs(naive - y[500:520]).mean()


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_save_and_load_give_the_same_forecast(cls, tmp_path):
    times, y = irregular()
    model = cls(**TINY, wiring="ncp").fit(y, times=times)
    path = model.save(tmp_path / "model.pt")
    loaded = cls.load(path)
    horizon = times[-1] + 0.1 * np.arange(1, 4)
    np.testing.assert_array_equal(loaded.predict(3, times=horizon),
                                  model.predict(3, times=horizon))


def test_hidden_states_are_inspectable():
    times, y = irregular()
    model = LTCForecaster(**TINY).fit(y, times=times)
    states = model.get_state_trajectory(y[:50], times=times[:50])
    assert states.shape == (50, 8) and np.isfinite(states).all()


def test_bad_times_raise_clear_errors():
    times, y = irregular()
    model = CfCForecaster(**TINY)
    shuffled = times.copy()
    shuffled[10], shuffled[11] = shuffled[11], shuffled[10]
    with pytest.raises(ValueError, match="strictly increasing"):
        model.fit(y, times=shuffled)
    with pytest.raises(ValueError, match="one time per row"):
        model.fit(y, times=times[:-1])
    with pytest.raises(ValueError, match="NaN"):
        model.fit(y, times=np.r_[times[:-1], np.nan])
    with pytest.raises(ValueError, match="unknown wiring"):
        CfCForecaster(**TINY, wiring="star").fit(y)
    model.fit(y, times=times)
    with pytest.raises(ValueError, match="strictly increasing"):
        model.predict(2, times=[times[-1] - 1.0, times[-1] + 1.0])
    with pytest.raises(ValueError, match="the 3 times of the horizon"):
        model.predict(3, times=times[-1] + np.arange(1, 3))
    fitted_plain = CfCForecaster(**TINY).fit(y)
    with pytest.raises(ValueError, match="fitted without times"):
        fitted_plain.predict(2, times=[1.0, 2.0])


def test_several_trajectories_with_their_own_times():
    times, y = irregular()
    model = CfCForecaster(**TINY, validation_fraction=0.0).fit(
        [y[:120], y[120:]], times=[times[:120], times[120:]])
    assert model.predict(2).shape == (2, 2)
    with pytest.raises(ValueError, match="2 trajectories"):
        CfCForecaster(**TINY).fit([y[:120], y[120:]], times=[times[:120]])


def test_float64_training_uses_the_same_code():
    times, y = irregular(120)
    model = LTCForecaster(**{**TINY, "dtype": "float64"}, validation_fraction=0.0).fit(
        y, times=times)
    assert model.module_.core.w.dtype == torch.float64
