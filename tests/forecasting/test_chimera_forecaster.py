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
    with pytest.raises(ValueError, match="linear_across_variates needs linear_lags"):
        tiny(linear_across_variates=True).fit(seasonal())
    with pytest.raises(ValueError, match="unknown head"):
        tiny(heads=("weekly",)).fit(seasonal())
    with pytest.raises(ValueError, match="needs at least 30"):
        tiny().fit(seasonal(20))
    bad = seasonal()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tiny().fit(bad)
    model = tiny().fit(seasonal())
    with pytest.raises(ValueError, match="3 columns"):
        model.predict(3, context=np.ones((30, 2)))
    assert not hasattr(tiny(), "module_")


# ---------------------------------------------------------------- linear path and RevIN
def _module(**options):
    from tsrnn.forecasting.chimera import ChimeraHorizonModule
    torch.manual_seed(0)
    return ChimeraHorizonModule(3, 4, d_model=4, d_state=2, n_layers=1, season=3,
                                generator=torch.Generator().manual_seed(0), **options).double()


def test_linear_path_is_the_causal_autoregression_it_documents():
    module = _module(linear_lags=5, residual=False)
    with torch.no_grad():
        module.linear.weight.normal_(generator=torch.Generator().manual_seed(1))
        module.linear.bias.normal_(generator=torch.Generator().manual_seed(2))
    y = torch.randn(2, 9, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    forecast, _ = module(y)
    core, _ = module.core(y)  # the zero-initialised readout: the core adds its bias only
    core = core.reshape(2, 9, 3, 4).transpose(2, 3)
    weight, bias = module.linear.weight[:, 0], module.linear.bias  # (H, p): [k, p-1] * y[t]
    expected = torch.zeros(2, 9, 4, 3, dtype=torch.float64)
    for t in range(9):
        for k in range(4):
            expected[:, t, k] = bias[k] + core[:, t, k]
            for j in range(5):  # lag j: y[t - j], zero before the window
                if t - j >= 0:
                    expected[:, t, k] += weight[k, 4 - j] * y[:, t - j]
    torch.testing.assert_close(forecast, expected, rtol=1e-12, atol=1e-12)
    # Causal: changing y after step 4 leaves the forecasts made at steps <= 4 unchanged.
    later = y.clone()
    later[:, 5:] += 1.0
    torch.testing.assert_close(module(later)[0][:, :5], forecast[:, :5], rtol=0, atol=0)


def test_linear_path_across_variates_is_the_multi_output_autoregression_it_documents():
    module = _module(linear_lags=4, linear_across_variates=True, residual=False)
    assert tuple(module.linear.weight.shape) == (4 * 3, 3, 4)  # (H * d, d, p)
    with torch.no_grad():
        module.linear.weight.normal_(generator=torch.Generator().manual_seed(1))
        module.linear.bias.normal_(generator=torch.Generator().manual_seed(2))
    y = torch.randn(2, 9, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    forecast, _ = module(y)
    core, _ = module.core(y)
    core = core.reshape(2, 9, 3, 4).transpose(2, 3)
    weight, bias = module.linear.weight, module.linear.bias  # row k * d + v: horizon k, var v
    expected = core.clone()
    for t in range(9):
        for k in range(4):
            for v in range(3):
                expected[:, t, k, v] += bias[k * 3 + v]
                for u in range(3):
                    for j in range(4):  # lag j: y[t - j, u], zero before the window
                        if t - j >= 0:
                            expected[:, t, k, v] += weight[k * 3 + v, u, 3 - j] * y[:, t - j, u]
    torch.testing.assert_close(forecast, expected, rtol=1e-12, atol=1e-12)
    # Causal in time: changing y after step 4 leaves the forecasts made at steps <= 4.
    later = y.clone()
    later[:, 5:] += 1.0
    torch.testing.assert_close(module(later)[0][:, :5], forecast[:, :5], rtol=0, atol=0)


def test_only_the_linear_path_across_variates_lets_one_variate_move_anothers_forecast():
    # With the core's readout at zero only the linear path acts: per variate, a change of
    # variate 0 leaves the forecasts of variates 1 and 2 alone; across variates it moves them.
    y = torch.randn(1, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    moved = y.clone()
    moved[:, :, 0] += 1.0
    for across in (False, True):
        module = _module(linear_lags=3, linear_across_variates=across, residual=False)
        with torch.no_grad():
            module.linear.weight.normal_(generator=torch.Generator().manual_seed(6))
        change = (module(moved)[0] - module(y)[0])[..., 1:].abs().max()
        assert (change > 1e-3) if across else (change < 1e-12)


def test_instance_norm_makes_the_forecast_equivariant_to_affine_changes_of_each_variate(
        monkeypatch):
    # Without the variance floor (it only keeps constant windows finite) the equivariance
    # is exact: the model sees (y - mean) / std either way and maps back with the statistics.
    monkeypatch.setattr("tsrnn.forecasting.chimera._REVIN_EPS", 0.0)
    module = _module(instance_norm=True, linear_lags=3)
    with torch.no_grad():  # non-trivial readouts, so that the test sees the whole model
        module.core.readout.weight.normal_(generator=torch.Generator().manual_seed(1))
        module.linear.weight.normal_(generator=torch.Generator().manual_seed(2))
    y = torch.randn(2, 10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    scale = torch.tensor([0.01, 3.0, 250.0], dtype=torch.float64)
    shift = torch.tensor([-5.0, 0.0, 1e3], dtype=torch.float64)
    forecast, _ = module(y)
    moved, _ = module(y * scale + shift)
    torch.testing.assert_close(moved, forecast * scale + shift, rtol=1e-10, atol=1e-9)
    assert not torch.allclose(forecast, module(y.flip(1))[0])  # it does depend on the data


def test_instance_norm_round_trip_gives_persistence_at_the_zero_initialisation():
    # Zero readouts and residual: the forecast is y_t in normalised units, and the inverse
    # transform must return exactly the observed value, for any level and scale.
    module = _module(instance_norm=True)
    y = 1e3 + 50 * torch.randn(2, 8, 3, dtype=torch.float64,
                               generator=torch.Generator().manual_seed(4))
    forecast, _ = module(y)
    torch.testing.assert_close(forecast, y[:, :, None, :].expand(-1, -1, 4, -1),
                               rtol=1e-12, atol=1e-9)
    constant = torch.full((1, 6, 3), 7.0, dtype=torch.float64)
    assert torch.isfinite(module(constant)[0]).all()


@pytest.mark.parametrize("instance_norm, linear_lags, first", [
    (False, 0, 0), (True, 0, 4), (False, 3, 2), (True, 3, 4)])
def test_training_loss_scores_every_context_forecast_on_its_whole_horizon(
        instance_norm, linear_lags, first):
    # Scored: every forecast made in the context, except those whose statistics (RevIN) or
    # linear path (zeros before the window) reach outside it: from step `first` on.
    model = tiny(horizon=3, sequence_length=5, instance_norm=instance_norm,
                 linear_lags=linear_lags, linear_across_variates=bool(linear_lags))
    model.n_features_in_ = 2
    module = model._build_module().double()
    with torch.no_grad():
        module.core.readout.weight.normal_(generator=torch.Generator().manual_seed(0))
        if linear_lags:
            module.linear.weight.normal_(generator=torch.Generator().manual_seed(2))
    y = torch.randn(2, 8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    forecast, _ = module(y[:, :5])  # the model reads the context only
    errors = [(forecast[:, t, k] - y[:, t + 1 + k]) ** 2
              for t in range(first, 5) for k in range(3)]
    expected = torch.stack(errors).mean()
    torch.testing.assert_close(model._training_loss(module, y, None), expected,
                               rtol=1e-12, atol=0)


def test_fit_needs_sequence_length_plus_horizon_rows_and_keeps_sequence_length():
    model = tiny(validation_fraction=0.0)
    with pytest.raises(ValueError, match="needs at least 30"):
        model.fit(seasonal(29))
    model.fit(seasonal(30))
    assert model.sequence_length == 24 and model.get_params()["sequence_length"] == 24
