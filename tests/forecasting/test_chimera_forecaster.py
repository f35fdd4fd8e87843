"""Tests of tsrnn.forecasting.chimera.ChimeraForecaster: the estimator contract, the direct
multi-horizon training targets and the recursive extension beyond the horizon. Tiny seeded
models (d_model 4, windows of 24) so that the file runs in seconds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.utils import estimator_checks

from tsrnn.exceptions import NotFittedError
from tsrnn.forecasting import ChimeraForecaster
from tsrnn.forecasting.chimera import horizon_targets

TINY = dict(horizon=6, d_model=4, d_state=2, n_layers=1, sequence_length=24, batch_size=16,
            max_epochs=2, random_state=0)


def seasonal(n_steps: int = 300) -> np.ndarray:
    t = np.arange(n_steps)
    base = np.sin(2 * np.pi * t / 12)
    # Variate 1 is variate 0 delayed by 3 steps, plus a slow trend: cross-variate lags.
    return np.c_[base, np.roll(base, 3) + 0.01 * t, np.cos(2 * np.pi * t / 12)]


def tiny(**overrides) -> ChimeraForecaster:
    return ChimeraForecaster(**{**TINY, **overrides})


# Checks that only construct, clone and set parameters (the others fit with a target
# column, which this model reads as exogenous X, which it refuses by design).
CHECKS = ["check_parameters_default_constructible", "check_no_attributes_set_in_init",
          "check_get_params_invariance", "check_set_params", "check_estimator_cloneable",
          "check_estimator_repr", "check_do_not_raise_errors_in_init_or_set_params",
          "check_estimators_unfitted"]


@pytest.mark.parametrize("check", CHECKS)
def test_scikit_learn_parameter_checks_pass(check):
    getattr(estimator_checks, check)("ChimeraForecaster", tiny())


def test_fit_predict_shapes_and_history():
    model = tiny().fit(seasonal())
    assert model.predict(6).shape == (6, 3)
    assert model.predict(15).shape == (15, 3)  # beyond the horizon: recursive blocks
    assert model.predict(4, context=seasonal()[:40]).shape == (4, 3)
    assert len(model.history_["train_loss"]) == model.n_epochs_ == 2
    assert model.context_y_.shape == (24, 3)


def test_forecast_beyond_the_horizon_starts_with_the_direct_forecast():
    model = tiny().fit(seasonal())
    direct = model.predict(6)
    extended = model.predict(17)
    np.testing.assert_allclose(extended[:6], direct, rtol=0, atol=1e-12)
    # The second block is the forecast from the context extended by the first block.
    context = np.concatenate([seasonal()[-24:], direct])
    np.testing.assert_allclose(extended[6:12], model.predict(6, context=context),
                               rtol=1e-6, atol=1e-6)


def test_predict_reads_only_the_last_sequence_length_rows_of_the_context():
    model = tiny().fit(seasonal())
    long_context = seasonal(400)
    np.testing.assert_array_equal(model.predict(6, context=long_context),
                                  model.predict(6, context=long_context[-24:]))


def test_horizon_targets_index_the_future_values():
    y = torch.arange(2 * 7 * 1, dtype=torch.float64).reshape(2, 7, 1)
    targets, valid = horizon_targets(y, 3)
    assert targets.shape == (2, 6, 3, 1) and valid.shape == (6, 3)
    for t in range(6):
        for k in range(3):
            assert bool(valid[t, k]) == (t + 1 + k < 7)
            if valid[t, k]:
                assert targets[1, t, k, 0] == y[1, t + 1 + k, 0]


@pytest.mark.slow
def test_training_lowers_the_multi_horizon_loss():
    # The zero-initialised readout starts at the persistence forecast; 24 optimizer steps
    # must beat it clearly on a noise-free seasonal series.
    model = tiny(max_epochs=8, learning_rate=1e-2, batch_size=4, early_stopping=None).fit(
        seasonal())
    losses = model.history_["validation_loss"]
    assert losses[-1] < 0.75 * losses[0]


def test_same_random_state_gives_identical_models_and_another_differs():
    first = tiny().fit(seasonal())
    second = tiny().fit(seasonal())
    np.testing.assert_array_equal(first.predict(8), second.predict(8))
    for (name, a), (_, b) in zip(first.module_.state_dict().items(),
                                 second.module_.state_dict().items()):
        assert torch.equal(a, b), name
    other = tiny(random_state=1).fit(seasonal())
    assert np.abs(other.predict(8) - first.predict(8)).max() > 1e-4


def test_save_and_load_round_trip(tmp_path):
    model = tiny(season=4).fit(seasonal())
    path = model.save(tmp_path / "chimera.pt")
    loaded = ChimeraForecaster.load(path)
    np.testing.assert_array_equal(loaded.predict(9), model.predict(9))
    assert loaded.get_params() == model.get_params()


def test_clone_is_unfitted_with_the_same_parameters():
    model = tiny(season=4, heads=("trend",)).fit(seasonal())
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        copy.predict(3)


def test_dataframe_input_gives_a_dataframe_with_continued_index():
    index = pd.period_range("2000-01", periods=300, freq="M")
    frame = pd.DataFrame(seasonal(), index=index, columns=["a", "b", "c"])
    forecast = tiny().fit(frame).predict(5)
    assert list(forecast.columns) == ["a", "b", "c"]
    assert forecast.index[0] == pd.Period("2025-01", freq="M")


def test_univariate_series_works():
    forecast = tiny().fit(seasonal()[:, 0]).predict(7)
    assert forecast.shape == (7,)


def test_bad_settings_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"horizon \(24\) must be smaller than sequence_length"):
        tiny(horizon=24).fit(seasonal())
    with pytest.raises(ValueError, match="exogenous inputs"):
        tiny().fit(seasonal(), X=np.ones((300, 1)))
    with pytest.raises(ValueError, match="unknown head"):
        tiny(heads=("weekly",)).fit(seasonal())
    with pytest.raises(ValueError, match="needs at least 25"):
        tiny().fit(seasonal(20))
    bad = seasonal()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tiny().fit(bad)
    model = tiny().fit(seasonal())
    with pytest.raises(ValueError, match="3 columns"):
        model.predict(3, context=np.ones((30, 2)))
    assert not hasattr(tiny(), "module_")
