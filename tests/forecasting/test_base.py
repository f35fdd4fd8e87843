"""Tests of tsrnn.forecasting.base: the estimator contract shared by every model.

Validation of y / X / context, pandas index continuation, exogenous-input alignment,
scaling, save/load and the scikit-learn parameter conventions. The base cannot be fitted on
its own, so most tests use a tiny GRUForecaster (seeded, two epochs, a fraction of a second);
where an exact answer is needed a deterministic toy subclass of BaseForecaster stands in.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

from tsrnn.exceptions import NotFittedError
from tsrnn.forecasting import BaseForecaster, GRUForecaster, LSTMForecaster

TINY = dict(hidden_size=8, sequence_length=16, batch_size=16, max_epochs=2, random_state=0)
ESTIMATORS = [GRUForecaster, LSTMForecaster]


def sine(n_steps: int = 300) -> np.ndarray:
    """A (n_steps, 2) sine/cosine pair sampled every 0.1 time units."""
    t = np.arange(n_steps) * 0.1
    return np.c_[np.sin(t), np.cos(t)]


def tiny(cls=GRUForecaster, **overrides):
    return cls(**{**TINY, **overrides})


class Persistence(BaseForecaster):
    """Toy estimator with an exact answer: repeats the context's last value.

    With exogenous inputs (as many columns as y) it returns the horizon's X rows instead,
    which exposes how the base splits X between the context and the horizon.
    """

    def __init__(self, scale=True, random_state=None, device="cpu", dtype="float64",
                 verbose=False):
        self.scale = scale
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    def _fit(self, y_list, x_list):
        self.n_series_ = len(y_list)

    def _predict(self, n_steps, context_y, context_x, future_x):
        self._last_call = (context_y, context_x, future_x)
        if future_x is not None:
            return future_x.copy()
        return np.repeat(context_y[-1:], n_steps, axis=0)


# ====================================================================== scikit-learn contract
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_predict_and_save_before_fit_raise_not_fitted_error(cls, tmp_path):
    model = cls()
    with pytest.raises(NotFittedError, match="not fitted yet"):
        model.predict(3)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        model.save(tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()
    # Code written for scikit-learn catches it as a ValueError or an AttributeError.
    assert issubclass(NotFittedError, ValueError)
    assert issubclass(NotFittedError, AttributeError)
    assert not hasattr(model, "module_")  # hasattr-based fitted checks see it as unfitted


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_init_stores_exactly_the_hyperparameters_unchanged(cls):
    params = dict(TINY, learning_rate=3e-3, optimizer="radam", checkpoint_path=None)
    model = cls(**params)
    assert set(vars(model)) == set(model.get_params(deep=False))
    for name, value in params.items():
        assert getattr(model, name) is value


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_fit_adds_only_trailing_underscore_attributes_and_keeps_params(cls):
    model = tiny(cls)
    before = model.get_params(deep=False)
    model.fit(sine())
    assert model.get_params(deep=False) == before
    learned = set(vars(model)) - set(before)
    assert learned, "fit learned nothing"
    assert all(name.endswith("_") for name in learned), sorted(learned)
    assert {"module_", "history_", "n_epochs_", "best_epoch_", "n_features_in_",
            "y_scaler_"} <= learned
    assert model.n_features_in_ == 2


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_clone_gives_an_unfitted_copy_with_equal_params(cls):
    model = tiny(cls, learning_rate=5e-3).fit(sine())
    copy = clone(model)
    assert type(copy) is cls
    assert copy.get_params() == model.get_params()
    assert not any(name.endswith("_") for name in vars(copy))
    with pytest.raises(NotFittedError):
        copy.predict(2)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_get_params_set_params_round_trip(cls):
    params = tiny(cls, dropout=0.25, num_layers=2, early_stopping=None).get_params()
    other = cls()
    assert other.set_params(**params) is other
    assert other.get_params() == params
    with pytest.raises(ValueError, match="Invalid parameter 'no_such_param'"):
        other.set_params(no_such_param=1)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_pickle_round_trip_gives_identical_predictions(cls):
    model = tiny(cls).fit(sine())
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(7), model.predict(7))


# ====================================================================== input forms
def test_numpy_2d_input_gives_an_array_of_n_steps_by_d():
    forecast = tiny().fit(sine()).predict(5)
    assert isinstance(forecast, np.ndarray)
    assert forecast.shape == (5, 2)
    assert np.isfinite(forecast).all()


def test_1d_input_gives_a_1d_forecast():
    y = sine()[:, 0]
    model = tiny().fit(y)
    assert model.n_features_in_ == 1
    assert model.predict(5).shape == (5,)
    assert model.predict(5, context=y[:40]).shape == (5,)


def test_dataframe_with_datetime_freq_continues_the_index_and_keeps_columns():
    index = pd.date_range("2021-03-01", periods=300, freq="h", name="when")
    frame = pd.DataFrame(sine(), index=index, columns=["u", "v"])
    forecast = tiny().fit(frame).predict(4)
    assert isinstance(forecast, pd.DataFrame)
    assert list(forecast.columns) == ["u", "v"]
    assert forecast.index[0] == index[-1] + pd.Timedelta(hours=1)
    pd.testing.assert_index_equal(
        forecast.index, pd.date_range(index[-1] + index.freq, periods=4, freq="h", name="when"))


def test_datetime_index_without_freq_attribute_is_inferred():
    index = pd.DatetimeIndex(pd.date_range("2021-03-01", periods=300, freq="D").to_numpy())
    assert index.freq is None
    forecast = tiny().fit(pd.DataFrame(sine(), index=index)).predict(2)
    assert list(forecast.index) == [index[-1] + pd.Timedelta(days=1),
                                    index[-1] + pd.Timedelta(days=2)]


def test_series_input_gives_a_series_with_continued_index_and_name():
    series = pd.Series(sine()[:, 0], index=pd.RangeIndex(10, 610, 2), name="level")
    forecast = tiny().fit(series).predict(3)
    assert isinstance(forecast, pd.Series)
    assert forecast.name == "level"
    assert list(forecast.index) == [610, 612, 614]


def test_range_index_continues_with_its_step():
    frame = pd.DataFrame(sine(), index=pd.RangeIndex(0, 900, 3))
    forecast = tiny().fit(frame).predict(3)
    assert list(forecast.index) == [900, 903, 906]


def test_period_index_continues_with_the_next_periods():
    index = pd.period_range("1990-01", periods=300, freq="M")
    forecast = tiny().fit(pd.DataFrame(sine(), index=index, columns=["a", "b"])).predict(3)
    assert isinstance(forecast.index, pd.PeriodIndex)
    assert list(forecast.index) == list(pd.period_range(index[-1] + 1, periods=3, freq="M"))


def test_context_dataframe_sets_the_index_of_the_forecast():
    frame = pd.DataFrame(sine(), columns=["a", "b"],
                         index=pd.date_range("2020-01-01", periods=300, freq="D"))
    model = tiny().fit(frame)
    forecast = model.predict(2, context=frame.iloc[:50])
    assert list(forecast.index) == list(pd.date_range("2020-02-20", periods=2, freq="D"))
    np.testing.assert_array_equal(forecast.to_numpy(),
                                  model.predict(2, context=frame.iloc[:50].to_numpy()))


def test_torch_tensor_input_gives_the_same_model_as_numpy():
    y = sine()
    from_numpy = tiny().fit(y).predict(5)
    from_tensor = tiny().fit(torch.from_numpy(y)).predict(5)
    assert isinstance(from_tensor, np.ndarray)
    np.testing.assert_array_equal(from_tensor, from_numpy)


def test_list_of_trajectories_fits_and_predict_continues_after_the_last():
    y = sine(500)
    trajectories = [y[:200], y[250:]]
    model = tiny().fit(trajectories)
    np.testing.assert_allclose(model.y_scaler_.mean, np.concatenate(trajectories).mean(0),
                               rtol=1e-12, atol=1e-14)
    window = model.y_scaler_.inverse_transform(model.context_y_)
    np.testing.assert_allclose(window, trajectories[-1][-len(window):], atol=1e-12)
    after_last = model.predict(5, context=trajectories[-1][-len(window):])
    after_first = model.predict(5, context=trajectories[0][-len(window):])
    # Re-standardising the window costs float64 round-off, then float32 in the model.
    np.testing.assert_allclose(model.predict(5), after_last, rtol=1e-5, atol=1e-5)
    assert np.abs(model.predict(5) - after_first).max() > 1e-2


# ====================================================================== input errors
def _with_value(value, row=5):
    y = sine()
    y[row, 1] = value
    return y


@pytest.mark.parametrize(("y", "error", "match"), [
    (_with_value(np.nan), ValueError, r"y contains NaN or inf \(first at index \(5, 1\)\)"),
    (_with_value(np.inf), ValueError, r"y contains NaN or inf"),
    (sine(16), ValueError, r"y has 16 time steps; GRUForecaster .* needs at least 17"),
    ([sine(100), sine(100)[:10]], ValueError, r"trajectory 1 of y has 10 time steps"),
    ([sine(100), sine(100)[:, :1]], ValueError, r"same number of columns, got \[1, 2\]"),
    (np.array([["a", "b"]] * 40), TypeError, r"y must hold numbers"),
    (pd.DataFrame({"a": ["x"] * 40, "b": [1.0] * 40}), TypeError, r"y must hold numbers"),
    (np.zeros((40, 2, 2)), ValueError, r"y has shape \(40, 2, 2\): a series is \(T, d\)"),
], ids=["nan", "inf", "too-short", "short-trajectory", "column-counts", "strings",
        "string-column", "3d"])
def test_fit_rejects_bad_y_with_a_clear_error(y, error, match):
    with pytest.raises(error, match=match):
        tiny().fit(y)


def test_predict_rejects_bad_context():
    model = tiny().fit(sine())
    with pytest.raises(ValueError, match=r"context must have 2 columns .* got shape \(10, 3\)"):
        model.predict(3, context=np.zeros((10, 3)))
    with pytest.raises(ValueError, match="context is empty"):
        model.predict(3, context=np.zeros((0, 2)))
    with pytest.raises(ValueError, match="context contains NaN or inf"):
        model.predict(3, context=_with_value(np.nan)[:20])


@pytest.mark.parametrize(("n_steps", "error", "match"), [
    (0, ValueError, "n_steps must be > 0"),
    (-4, ValueError, "n_steps must be > 0"),
    (2.5, TypeError, "n_steps must be an integer"),
    ("3", TypeError, "n_steps must be an integer"),
])
def test_predict_rejects_non_positive_or_non_integer_n_steps(n_steps, error, match):
    model = tiny().fit(sine())
    with pytest.raises(error, match=match):
        model.predict(n_steps)


@pytest.mark.parametrize(("params", "match"), [
    ({"optimizer": "sgd"}, r"unknown optimizer 'sgd'; expected one of 'adam', 'radam'"),
    ({"divergence": "ignore"}, r"unknown divergence 'ignore'; expected one of 'raise'"),
    ({"learning_rate": -1e-3}, r"learning_rate must be > 0"),
    ({"learning_rate": 0.0}, r"learning_rate must be > 0"),
    ({"dropout": 1.0}, r"dropout must lie in \[0.0, 1.0\)"),
    ({"dropout": -0.1}, r"dropout must lie in \[0.0, 1.0\)"),
    ({"validation_fraction": 1.0}, r"validation_fraction must lie in \[0.0, 1.0\)"),
    ({"hidden_size": 0}, r"hidden_size must be > 0"),
])
def test_fit_rejects_bad_hyperparameters(params, match):
    with pytest.raises(ValueError, match=match):
        tiny(**params).fit(sine())


# ====================================================================== exogenous inputs
def test_fit_rejects_x_with_a_different_row_count_naming_both():
    y = sine()
    with pytest.raises(ValueError, match=r"got 299 rows of X for 300 rows of y"):
        tiny().fit(y, X=np.ones((299, 1)))
    with pytest.raises(ValueError, match=r"\(trajectory 1\): got 99 rows of X for 100 rows"):
        tiny().fit([y[:100], y[100:200]], X=[np.ones((100, 1)), np.ones((99, 1))])
    with pytest.raises(ValueError, match=r"X contains NaN or inf"):
        tiny().fit(y, X=np.full((300, 1), np.nan))


def test_predict_checks_x_against_how_the_model_was_fitted():
    y, x = sine(), np.random.default_rng(0).standard_normal((300, 1))
    plain = tiny().fit(y)
    with pytest.raises(ValueError, match="fitted without exogenous inputs; got X"):
        plain.predict(5, X=np.ones((5, 1)))
    with_x = tiny().fit(y, X=x)
    assert with_x.n_exog_ == 1
    with pytest.raises(ValueError, match="fitted with 1 exogenous inputs: predict needs X"):
        with_x.predict(5)
    with pytest.raises(ValueError, match=r"X must have shape \(5, 1\): the n_steps rows of the "
                                         r"horizon; got \(4, 1\)"):
        with_x.predict(5, X=np.ones((4, 1)))
    with pytest.raises(ValueError, match=r"X must have shape \(45, 1\): the 40 rows of the "
                                         r"context followed by the 5 rows of the horizon"):
        with_x.predict(5, context=y[:40], X=np.ones((5, 1)))
    assert with_x.predict(5, X=np.ones(5)).shape == (5, 2)  # a 1-D X is one column
    assert with_x.predict(5, context=y[:40], X=np.ones((45, 1))).shape == (5, 2)


def test_x_at_predict_is_the_horizon_preceded_by_the_context_rows():
    # Documented in base.py: X holds the n_steps rows of the horizon, preceded by the
    # context's rows when a context is given. The toy returns the horizon rows it receives.
    rng = np.random.default_rng(1)
    y, x = rng.standard_normal((50, 2)), rng.standard_normal((50, 2))
    model = Persistence(scale=False).fit(y, X=x)
    horizon = rng.standard_normal((4, 2))
    np.testing.assert_array_equal(model.predict(4, X=horizon), horizon)
    context_y, context_x, _ = model._last_call
    np.testing.assert_array_equal(context_y, y)  # no context: the training data continues
    np.testing.assert_array_equal(context_x, x)

    context, rows = rng.standard_normal((7, 2)), rng.standard_normal((7, 2))
    np.testing.assert_array_equal(model.predict(4, context=context, X=np.r_[rows, horizon]),
                                  horizon)
    context_y, context_x, _ = model._last_call
    np.testing.assert_array_equal(context_y, context)
    np.testing.assert_array_equal(context_x, rows)


# ====================================================================== predict semantics
def test_predict_with_a_context_depends_only_on_the_context():
    y = sine()
    first, second = tiny().fit(y), tiny().fit(y)
    context, other = y[100:160], y[20:80]
    reference = first.predict(10, context=context)
    np.testing.assert_array_equal(second.predict(10, context=context), reference)
    # No state survives between calls, and the stored training window plays no part.
    first.predict(10)
    first.predict(10, context=other)
    np.testing.assert_array_equal(first.predict(10, context=context), reference)
    first.context_y_ = np.zeros_like(first.context_y_)
    np.testing.assert_array_equal(first.predict(10, context=context), reference)
    assert np.abs(first.predict(10, context=other) - reference).max() > 1e-2


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_predict_without_context_equals_predict_from_the_stored_training_window(cls):
    model = tiny(cls).fit(sine())
    window = model.y_scaler_.inverse_transform(model.context_y_)
    assert len(window) == 4 * TINY["sequence_length"]  # the documented bounded context
    np.testing.assert_allclose(window, sine()[-len(window):], atol=1e-12)
    # Scaling back and forth costs float64 round-off, then the model computes in float32.
    np.testing.assert_allclose(model.predict(20), model.predict(20, context=window),
                               rtol=1e-5, atol=1e-5)


def test_persistence_toy_continues_exactly_from_the_last_training_value():
    y = sine() * 3.0 + 7.0
    model = Persistence().fit(y)
    np.testing.assert_allclose(model.predict(3), np.repeat(y[-1:], 3, axis=0), rtol=1e-13)
    np.testing.assert_allclose(model.predict(2, context=y[:10]),
                               np.repeat(y[9:10], 2, axis=0), rtol=1e-13)


# ====================================================================== scaling
def test_scale_true_stores_the_training_mean_and_std():
    y = sine() * np.array([2.0, 50.0]) + np.array([-3.0, 400.0])
    model = tiny().fit(y)
    np.testing.assert_allclose(model.y_scaler_.mean, y.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(model.y_scaler_.scale, y.std(axis=0), rtol=1e-12)
    # The model sees the standardised series: its stored window is (y - mean) / std.
    np.testing.assert_allclose(model.context_y_, (y[-64:] - y.mean(0)) / y.std(0),
                               rtol=1e-12, atol=1e-12)
    unscaled = tiny(scale=False).fit(y)
    np.testing.assert_array_equal(unscaled.y_scaler_.mean, [0.0, 0.0])
    np.testing.assert_array_equal(unscaled.y_scaler_.scale, [1.0, 1.0])


def test_forecasts_are_returned_in_original_units():
    y = sine()
    plain = tiny().fit(y).predict(10)
    shifted = tiny().fit(y + 1000.0).predict(10)
    assert np.abs(shifted - 1000.0).max() < 5.0
    # Standardisation removes the shift, so the model is the same up to float32 round-off.
    np.testing.assert_allclose(shifted, plain + 1000.0, atol=1e-3)


# ====================================================================== failed fits
def test_predict_after_a_failed_first_fit_raises_not_fitted_error():
    model = tiny(learning_rate=-1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        model.fit(sine())
    with pytest.raises(NotFittedError):
        model.predict(3)


def test_failed_refit_does_not_mix_the_old_model_with_new_scaling():
    model = tiny().fit(sine())
    before = model.predict(5)
    model.set_params(dropout=1.0)
    with pytest.raises(ValueError, match="dropout"):
        model.fit(sine() + 1000.0)
    try:
        after = model.predict(5)
    except NotFittedError:
        return  # acceptable: the failed fit left the estimator unfitted
    np.testing.assert_allclose(after, before)  # or: the earlier model is kept intact


# ====================================================================== save / load
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_save_load_round_trip_gives_identical_predictions(cls, tmp_path):
    model = tiny(cls, num_layers=2).fit(sine())
    path = model.save(tmp_path / "model.pt")
    assert path == tmp_path / "model.pt"
    loaded = cls.load(path)
    assert type(loaded) is cls
    assert loaded.get_params() == model.get_params()
    assert loaded.history_ == model.history_
    assert (loaded.n_epochs_, loaded.best_epoch_) == (model.n_epochs_, model.best_epoch_)
    np.testing.assert_array_equal(loaded.predict(15), model.predict(15))
    context = sine()[30:90]
    np.testing.assert_array_equal(loaded.predict(5, context=context),
                                  model.predict(5, context=context))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary left


def test_a_float64_model_loads_as_float64_with_identical_predictions(tmp_path):
    # Loading builds the module in the fitted dtype before the weights go in: a float32
    # module would round them and the predictions would differ in the 8th digit.
    model = tiny(dtype="float64").fit(sine())
    loaded = GRUForecaster.load(model.save(tmp_path / "model.pt"))
    assert {p.dtype for p in loaded.module_.parameters()} == {torch.float64}
    np.testing.assert_array_equal(loaded.predict(15), model.predict(15))


def test_save_load_round_trip_keeps_exogenous_inputs_and_a_range_indexed_frame(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(sine(), columns=["a", "b"], index=pd.RangeIndex(5, 305))
    x = rng.standard_normal((300, 1))
    model = tiny().fit(frame, X=x)
    loaded = GRUForecaster.load(model.save(tmp_path / "m.pt"))
    horizon = rng.standard_normal((6, 1))
    pd.testing.assert_frame_equal(loaded.predict(6, X=horizon), model.predict(6, X=horizon))


def test_base_class_load_returns_the_saved_subclass(tmp_path):
    path = tiny(LSTMForecaster).fit(sine()).save(tmp_path / "lstm.pt")
    loaded = BaseForecaster.load(path)
    assert type(loaded) is LSTMForecaster
    assert loaded.predict(3).shape == (3, 2)


def test_loading_an_lstm_file_as_a_gru_raises_type_error(tmp_path):
    path = tiny(LSTMForecaster).fit(sine()).save(tmp_path / "lstm.pt")
    with pytest.raises(TypeError, match="holds an LSTMForecaster, not a GRUForecaster"):
        GRUForecaster.load(path)


def test_save_refuses_an_existing_file_unless_overwrite(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"an earlier file")
    model = tiny().fit(sine())
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(path)
    assert path.read_bytes() == b"an earlier file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    model.save(path, overwrite=True)
    np.testing.assert_array_equal(GRUForecaster.load(path).predict(4), model.predict(4))


def test_loading_a_file_that_is_not_a_tsrnn_estimator_raises_value_error(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a torch file")
    with pytest.raises(ValueError, match="is not a tsrnn estimator file"):
        BaseForecaster.load(text)
    other = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="is not a tsrnn estimator file"):
        GRUForecaster.load(other)
    with pytest.raises(FileNotFoundError, match="no saved estimator"):
        GRUForecaster.load(tmp_path / "missing.pt")


def test_a_model_saved_with_device_cuda_loads_on_the_cpu_with_a_warning(tmp_path, monkeypatch):
    # No GPU is needed: every tensor in the file is stored on the CPU already (state dicts
    # are moved there by save), so what marks a GPU-trained model is only its device
    # hyperparameter. We write that into the payload of a CPU model, and hide CUDA in case
    # the test machine has it.
    model = tiny().fit(sine())
    payload = torch.load(model.save(tmp_path / "cpu.pt"), weights_only=True)
    payload["params"]["device"] = "cuda"
    torch.save(payload, tmp_path / "cuda.pt")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="trained on cuda, which is not available here; it "
                                         "is loaded on the CPU"):
        loaded = GRUForecaster.load(tmp_path / "cuda.pt")
    assert loaded.device == "cpu"
    assert loaded.device_.type == "cpu"
    assert all(p.device.type == "cpu" for p in loaded.module_.parameters())
    np.testing.assert_array_equal(loaded.predict(5), model.predict(5))


def test_the_saved_file_loads_with_weights_only(tmp_path):
    model = tiny().fit(pd.DataFrame(sine(), columns=["a", "b"]), X=np.ones((300, 1)))
    path = model.save(tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)  # no pickled code in the file
    assert payload["format"] == "tsrnn-estimator"
    assert payload["class"] == "tsrnn.forecasting.rnn:GRUForecaster"
    assert payload["params"]["hidden_size"] == TINY["hidden_size"]


def test_save_load_round_trip_of_a_datetime_indexed_frame(tmp_path):
    index = pd.date_range("2021-03-01", periods=300, freq="h")
    model = tiny().fit(pd.DataFrame(sine(), index=index, columns=["u", "v"]))
    loaded = GRUForecaster.load(model.save(tmp_path / "m.pt"))
    pd.testing.assert_frame_equal(loaded.predict(4), model.predict(4))


def test_save_load_keeps_column_labels_and_the_series_name(tmp_path):
    frame_model = tiny().fit(pd.DataFrame(sine()))  # integer column labels 0, 1
    loaded = GRUForecaster.load(frame_model.save(tmp_path / "frame.pt"))
    assert list(loaded.predict(2).columns) == [0, 1]
    series_model = tiny().fit(pd.Series(sine()[:, 0]))  # name None
    loaded = GRUForecaster.load(series_model.save(tmp_path / "series.pt"))
    assert loaded.predict(2).name is None


def test_checkpoint_path_may_be_a_pathlib_path(tmp_path):
    # The natural spelling (tmp_path / "best.pt") used to fail at the first checkpoint: the
    # checkpoint is a saved estimator, and save could not write a Path parameter.
    path = tmp_path / "best.pt"
    model = tiny(checkpoint_path=path).fit(sine())
    loaded = GRUForecaster.load(path)
    np.testing.assert_array_equal(loaded.predict(10), model.predict(10))
    assert loaded.get_params()["checkpoint_path"] == path
    model.save(tmp_path / "model.pt")
    assert GRUForecaster.load(tmp_path / "model.pt").checkpoint_path == path


def test_a_parameter_that_cannot_be_saved_is_refused_before_training_with_checkpoints(
        tmp_path, monkeypatch):
    # A root object is a valid WARP root, but save (and so a checkpoint) needs a named one:
    # the fit must say so before it trains, not at its first checkpoint.
    from tsrnn.forecasting import WARPForecaster
    from tsrnn.nn.warp import MLPRoot

    def trained(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(WARPForecaster, "_fit", trained)
    model = WARPForecaster(root=MLPRoot(2, width=4, depth=1), sequence_length=16,
                           max_epochs=1, checkpoint_path=tmp_path / "best.pt")
    with pytest.raises(TypeError, match=r"cannot save params\.root"):
        model.fit(sine())
    assert not (tmp_path / "best.pt").exists()


def test_unseeded_fits_start_from_different_weights():
    # random_state=None: each fit draws fresh weights. Before, the fit's fork of torch's
    # global generator was left unseeded, so every unseeded fit began from the same state.
    weights = []
    for _ in range(2):
        model = tiny(random_state=None, max_epochs=1, learning_rate=1e-30).fit(sine())
        weights.append(torch.cat([p.detach().flatten() for p in model.module_.parameters()]))
    assert not torch.equal(*weights)


def test_unseeded_fits_leave_the_callers_generators_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny(random_state=None, max_epochs=1).fit(sine())
    assert torch.equal(torch.rand(3), expected)


def test_a_cuda_index_the_machine_lacks_is_refused_clearly(monkeypatch):
    from tsrnn._torch import resolve_device
    from tsrnn.forecasting.base import _missing_cuda_index

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="has 1 CUDA device"):
        resolve_device("cuda:1")
    assert _missing_cuda_index("cuda:1") and not _missing_cuda_index("cuda:0")
    assert not _missing_cuda_index("cuda")


def test_loaded_tensors_go_to_the_estimators_device():
    from tsrnn.forecasting.base import _on_device

    value = {"a": torch.ones(2, dtype=torch.float64), "b": [torch.zeros(1), (torch.ones(1), 3)],
             "c": np.ones(2)}
    moved = _on_device(value, torch.device("meta"))
    assert moved["a"].device.type == "meta" and moved["a"].dtype == torch.float64
    assert moved["b"][0].device.type == "meta" and moved["b"][1][0].device.type == "meta"
    assert isinstance(moved["b"][1], tuple) and moved["b"][1][1] == 3
    assert moved["c"] is value["c"]


@pytest.mark.parametrize("order", ["backwards", "repeats", "shuffled"])
def test_a_time_index_out_of_order_is_refused(order):
    index = pd.date_range("2021-01-01", periods=200, freq="h")
    series = pd.Series(np.sin(np.arange(200) * 0.3), index=index, name="s")
    broken = {"backwards": series.iloc[::-1],
              "repeats": series.set_axis(index.delete(5).insert(5, index[4])),
              "shuffled": series.iloc[np.r_[0:30, 31, 30, 32:200]]}[order]
    with pytest.raises(ValueError, match="sort_index"):
        tiny().fit(broken)
    model = tiny().fit(series)
    with pytest.raises(ValueError, match="index of context"):
        model.predict(3, context=broken)


def test_loading_another_class_names_both_with_their_articles(tmp_path):
    from tsrnn.reservoir import ESN

    tiny().fit(sine()).save(tmp_path / "gru.pt")
    with pytest.raises(TypeError, match="holds a GRUForecaster, not an ESN"):
        ESN.load(tmp_path / "gru.pt")


def test_the_package_lists_its_subpackages_only():
    import tsrnn

    assert dir(tsrnn) == sorted(tsrnn.__all__)
    assert "systems" in dir(tsrnn) and "importlib" not in dir(tsrnn)
