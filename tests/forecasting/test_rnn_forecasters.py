"""Tests of tsrnn.forecasting.rnn (GRUForecaster, LSTMForecaster) and the training loop of
tsrnn.forecasting.base.NeuralForecaster.

scikit-learn's estimator checks, reproducibility, the progress bar, early stopping with the
best checkpoint, divergence handling, checkpoint files, learning from exogenous inputs, the
closed loop, and the fitted model seen as a discrete map. All models are tiny (hidden_size
8, windows of 16) and seeded, so that the whole file runs in a few seconds.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from sklearn.utils import estimator_checks

from tsrnn.analysis import lyapunov_spectrum
from tsrnn.exceptions import DivergenceError
from tsrnn.forecasting import GRUForecaster, LSTMForecaster
from tsrnn.systems import Lorenz63

TINY = dict(hidden_size=8, sequence_length=16, batch_size=16, max_epochs=2, random_state=0)
ESTIMATORS = [GRUForecaster, LSTMForecaster]


def sine(n_steps: int = 300) -> np.ndarray:
    t = np.arange(n_steps) * 0.1
    return np.c_[np.sin(t), np.cos(t)]


def lorenz(n_steps: int = 400) -> np.ndarray:
    return Lorenz63().simulate(n_steps, transient=100, seed=0)


def tiny(cls=GRUForecaster, **overrides):
    return cls(**{**TINY, **overrides})


# ====================================================================== scikit-learn checks
# Which of sklearn.utils.estimator_checks apply (scikit-learn 1.9, each run on its own).
#
# Our signatures are fit(y, X=None) and predict(n_steps, context=None, X=None) (sktime/darts
# style), not fit(X, y) / predict(X). Checks that only construct, clone or set parameters
# apply in full. Checks that call fit(X, y) with a feature matrix and a target still make
# sense for us: the matrix is read as a series y (n_samples, n_features) and the target as
# one exogenous column X aligned with it, so "fit returns self", "fit does not touch the
# parameters", "n_features_in_", read-only/memmap inputs and "NaN in the target raises" are
# all tested meaningfully (with sequence_length=4 so that their 10-21 rows are enough).
APPLICABLE_CHECKS = [
    # construction, parameters, cloning, tags
    "check_parameters_default_constructible",
    "check_no_attributes_set_in_init",
    "check_get_params_invariance",
    "check_set_params",
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_mixin_order",
    # fit(X, y) read as fit(y=series, X=exogenous column)
    "check_estimators_fit_returns_self",
    "check_dont_overwrite_parameters",
    "check_estimators_overwrite_params",
    "check_fit_check_is_fitted",
    "check_n_features_in",
    "check_readonly_memmap_input",
    "check_inplace_ensure_writeable",
    "check_fit2d_1feature",
    "check_supervised_y_no_nan",
    "check_requires_y_none",
]
# Skipped, with the reason:
# - every check that calls predict(X) / predict_proba(X) / score(X, y) with a feature matrix
#   (check_estimators_dtypes, _pickle, _nan_inf, check_fit_idempotent, check_dict_unchanged,
#   check_fit2d_predict1d, check_methods_*_invariance, check_n_features_in_after_fitting,
#   check_f_contiguous_array_estimator, check_supervised_y_2d, check_regressor_multioutput,
#   check_sparsify_coefficients): our predict takes a horizon n_steps, not rows of features;
#   pickling, NaN rejection and determinism are tested here with our own signature instead;
# - check_fit1d: a 1-D y is a valid univariate series for us, not an error;
# - check_fit_score_takes_y: the first argument of fit is y by design (sktime convention);
# - check_fit2d_1sample, check_estimators_empty_data_messages, check_complex_data,
#   check_dtype_object, check_estimator_sparse_*: they demand scikit-learn's wording or
#   ValueError where tsrnn's validation raises its own (tested in test_base.py: TypeError
#   for non-numbers, messages naming the argument); sparse matrices are not time series;
# - check_dataframe_column_names_consistency, check_get_feature_names_out_error: feature
#   names of transformers/predictors over feature matrices; our columns are output columns;
# - check_param_validation: needs scikit-learn's private _parameter_constraints;
# - classifier, regressor, clusterer, transformer, outlier, pairwise, sample_weight and
#   array-API checks: not that kind of estimator;
# - check_pipeline_consistency, check_decision_proba_consistency, check_fit_non_negative,
#   check_outlier_contamination, check_*_n_iter, check_estimators_partial_fit_n_features,
#   check_positive_only_tag_during_fit: they pass vacuously (no score, predict_proba,
#   partial_fit, max_iter or positivity tag to compare), so running them proves nothing.
# - check_estimators_unfitted applies: see the test below.


def _check_estimator(cls):
    return cls(hidden_size=4, sequence_length=4, batch_size=8, max_epochs=1,
               validation_fraction=0.0, random_state=0)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("check", APPLICABLE_CHECKS)
def test_scikit_learn_estimator_check_passes(check, cls):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no validation split on 10-row data
        getattr(estimator_checks, check)(cls.__name__, _check_estimator(cls))


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_scikit_learn_check_estimators_unfitted_passes(cls):
    # predict is called with a feature matrix as n_steps, but the fitted check comes first,
    # so the check applies to our signature too.
    estimator_checks.check_estimators_unfitted(cls.__name__, _check_estimator(cls))


# ====================================================================== reproducibility
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_same_random_state_gives_identical_predictions(cls):
    y = sine()
    first = tiny(cls).fit(y)
    second = tiny(cls).fit(y)
    np.testing.assert_array_equal(first.predict(10), second.predict(10))
    assert first.history_ == second.history_
    for (name, a), (_, b) in zip(first.module_.state_dict().items(),
                                 second.module_.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_different_random_state_gives_different_predictions(cls):
    y = sine()
    first = tiny(cls, random_state=0).fit(y).predict(10)
    second = tiny(cls, random_state=1).fit(y).predict(10)
    assert np.abs(first - second).max() > 1e-3


def test_random_state_is_independent_of_the_global_torch_generator():
    y = sine()
    torch.manual_seed(123)
    first = tiny().fit(y).predict(5)
    torch.manual_seed(456)
    torch.rand(10)
    second = tiny().fit(y).predict(5)
    np.testing.assert_array_equal(first, second)


def test_verbose_false_prints_nothing_and_writes_no_file(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tiny(max_epochs=3).fit(sine())
    model.predict(5)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""
    assert list(tmp_path.iterdir()) == []


def test_verbose_true_shows_one_tqdm_bar_on_stderr(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny(max_epochs=3, verbose=True).fit(sine())
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "GRUForecaster" in captured.err  # the bar's description
    assert "it/s]" in captured.err or "s/it]" in captured.err
    assert list(tmp_path.iterdir()) == []


# ====================================================================== training loop
def test_early_stopping_stops_when_the_validation_loss_stalls():
    # learning_rate 1e-12 leaves the float32 weights unchanged: the validation loss never
    # improves after the first epoch, so training stops after 1 + early_stopping epochs.
    model = tiny(max_epochs=50, learning_rate=1e-12, early_stopping=2).fit(sine())
    assert model.n_epochs_ == 3 < 50
    assert model.best_epoch_ == 0
    assert len(model.history_["train_loss"]) == model.n_epochs_
    losses = model.history_["validation_loss"]
    assert len(losses) == model.n_epochs_
    assert model.best_epoch_ == int(np.argmin(losses))
    assert model.n_epochs_ - 1 - model.best_epoch_ == 2


def test_training_runs_max_epochs_without_early_stopping():
    model = tiny(max_epochs=4, learning_rate=1e-12, early_stopping=None).fit(sine())
    assert model.n_epochs_ == 4
    assert len(model.history_["validation_loss"]) == 4


def _validation_mse(model, y):
    """The validation loss recomputed from scratch: one-step MSE over the non-overlapping
    windows of the last validation_fraction of the standardised series."""
    length = model.sequence_length + 1
    scaled = model.y_scaler_.transform(y)
    held_out = scaled[len(y) - round(model.validation_fraction * len(y)):]
    starts = range(0, len(held_out) - length + 1, length - 1)
    windows = torch.as_tensor(np.stack([held_out[s: s + length] for s in starts]),
                              dtype=torch.float32)
    with torch.no_grad():
        prediction, _ = model.module_(windows[:, :-1])
    return float(torch.nn.functional.mse_loss(prediction, windows[:, 1:]))


def test_weights_after_fit_are_the_best_validation_checkpoint():
    # A learning rate that grows from 1e-2 to 10 makes the later epochs worse, so the best
    # epoch is not the last one and the restored weights can be told apart.
    y = sine()
    model = tiny(max_epochs=5, learning_rate=1e-2, learning_rate_final=10.0,
                 early_stopping=None).fit(y)
    losses = model.history_["validation_loss"]
    assert model.n_epochs_ == 5
    assert model.best_epoch_ < model.n_epochs_ - 1
    assert losses[-1] > 10 * losses[model.best_epoch_]
    # float32 sums in a different batch order: equal to a few ulps.
    assert _validation_mse(model, y) == pytest.approx(losses[model.best_epoch_], rel=1e-5)


def test_huge_learning_rate_raises_divergence_error_naming_the_epoch():
    # Adam steps of ~1e20 overflow float32 activations within the first epoch.
    model = tiny(max_epochs=3, learning_rate=1e20, gradient_clip=None)
    with pytest.raises(DivergenceError, match=r"diverged at epoch 1 \(loss (inf|nan).*"
                                              r"lower learning_rate"):
        model.fit(sine())


def test_exploding_but_finite_loss_raises_divergence_error():
    model = tiny(max_epochs=3, learning_rate=1e6, gradient_clip=None)
    with pytest.raises(DivergenceError, match="epoch"):
        model.fit(sine())


def test_divergence_restore_warns_and_keeps_the_best_checkpoint():
    # The learning rate grows 1e-3 -> 3e8 -> 1e20 over three epochs: epoch 1 is sound, a
    # later one explodes (caught once the loss exceeds 1e6 times the first, or overflows).
    # The kept model is then the one after epoch 1, which a one-epoch fit (same seed, same
    # first-epoch batches and learning rate) reproduces exactly.
    y = sine()
    model = tiny(max_epochs=3, learning_rate=1e-3, learning_rate_final=1e20,
                 gradient_clip=None, divergence="restore")
    with pytest.warns(RuntimeWarning, match=r"diverged at epoch [23] .* best checkpoint so far "
                                            r"is kept"):
        model.fit(y)
    assert model.best_epoch_ == 0
    one_epoch = tiny(max_epochs=1, learning_rate=1e-3, gradient_clip=None).fit(y)
    np.testing.assert_array_equal(model.predict(10), one_epoch.predict(10))


def test_divergence_restore_without_any_checkpoint_still_raises():
    model = tiny(max_epochs=3, learning_rate=1e20, gradient_clip=None, divergence="restore")
    with pytest.raises(DivergenceError, match=r"diverged at epoch 1.*no checkpoint to restore"):
        model.fit(sine())


def test_checkpoint_path_writes_the_best_weights_when_given(tmp_path):
    path = tmp_path / "run" / "best.pt"
    model = tiny(max_epochs=5, learning_rate=1e-2, learning_rate_final=10.0,
                 early_stopping=None, checkpoint_path=str(path)).fit(sine())
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt"]  # no temporary left
    # A complete estimator file holding the best weights, which the fitted model ends with.
    checkpoint = type(model).load(path)
    state, best = model.module_.state_dict(), checkpoint.module_.state_dict()
    assert best.keys() == state.keys()
    for name, value in state.items():
        assert torch.equal(best[name], value), name
    np.testing.assert_array_equal(checkpoint.predict(20), model.predict(20))


def test_checkpoint_path_refuses_an_existing_file(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(b"an earlier run")
    with pytest.raises(FileExistsError, match=r"checkpoint_path .* exists"):
        tiny(checkpoint_path=str(path)).fit(sine())
    assert path.read_bytes() == b"an earlier run"


def test_validation_fraction_that_leaves_no_validation_window_warns():
    # 100 steps: 10% is 10 steps, fewer than one window of sequence_length + 1 = 17.
    with pytest.warns(UserWarning, match=r"validation_fraction=0.1 leaves no trajectory with "
                                         r"a training window of 17 steps"):
        model = tiny().fit(sine(100))
    assert model.history_["validation_loss"] == [None] * model.n_epochs_
    # 95% of 300 steps leaves 15 training steps, less than one window: no split either.
    with pytest.warns(UserWarning, match=r"validation_fraction=0.95"):
        tiny(validation_fraction=0.95).fit(sine())


def test_no_validation_warning_when_the_split_fits():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny().fit(sine(300))
        tiny(validation_fraction=0.0).fit(sine(100))


def test_training_warnings_point_at_the_callers_line():
    with pytest.warns(UserWarning, match="validation_fraction") as record:
        tiny().fit(sine(100))
    assert record[0].filename == __file__


# ====================================================================== exogenous inputs
def _exogenous_toy(n_steps=600, seed=0):
    """y_t = 0.5 y_{t-1} + x_t with white-noise x: y_{t+1} is known only with x_{t+1}."""
    x = np.random.default_rng(seed).standard_normal(n_steps)
    y = np.zeros(n_steps)
    for t in range(1, n_steps):
        y[t] = 0.5 * y[t - 1] + x[t]
    return y, x


def test_model_with_exogenous_inputs_uses_the_future_x_at_the_right_step():
    y, x = _exogenous_toy()
    n_fit, n = 500, 50
    model = GRUForecaster(hidden_size=8, sequence_length=16, batch_size=16, max_epochs=80,
                          learning_rate=1e-2, early_stopping=None,
                          random_state=0).fit(y[:n_fit], X=x[:n_fit])
    truth = y[n_fit: n_fit + n]

    def rmse(future_x, **kwargs):
        return float(np.sqrt(np.mean((model.predict(n, X=future_x, **kwargs) - truth) ** 2)))

    aligned = rmse(x[n_fit: n_fit + n])
    shuffled = rmse(np.random.default_rng(1).permutation(x[n_fit: n_fit + n]))
    one_late = rmse(x[n_fit - 1: n_fit + n - 1])  # x_t offered when x_{t+1} is due
    assert aligned < 0.3 * truth.std()
    assert aligned < 0.3 * shuffled
    assert aligned < 0.3 * one_late
    # The same forecast from an explicit context: X = its rows, then the horizon's.
    with_context = rmse(x[n_fit - 40: n_fit + n], context=y[n_fit - 40: n_fit])
    assert with_context < 0.3 * truth.std()


def test_as_discrete_map_refuses_a_model_with_exogenous_inputs():
    y, x = _exogenous_toy(200)
    model = tiny().fit(y, X=x)
    with pytest.raises(ValueError, match="not autonomous"):
        model.as_discrete_map()


# ====================================================================== closed loop
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_closed_loop_forecast_prefix_equals_the_shorter_forecast(cls):
    y = sine()
    model = tiny(cls).fit(y)
    long = model.predict(30)
    for k in (1, 7, 29):
        np.testing.assert_array_equal(model.predict(k), long[:k])
    context = y[50:120]
    long = model.predict(30, context=context)
    np.testing.assert_array_equal(model.predict(12, context=context), long[:12])


# ====================================================================== as a discrete map
@pytest.fixture(scope="module")
def lorenz_data():
    return lorenz()


def test_lyapunov_spectrum_of_a_fitted_gru_is_finite(lorenz_data):
    model = tiny(max_epochs=3).fit(lorenz_data)
    spectrum = lyapunov_spectrum(model, n_exponents=2, dt=0.01, n_steps=200, transient=50,
                                 n_trajectories=4)
    assert spectrum.shape == (2,)
    assert np.isfinite(spectrum).all()
    assert spectrum[0] >= spectrum[1]


def test_lyapunov_spectrum_of_a_fitted_lstm_is_finite(lorenz_data):
    model = tiny(LSTMForecaster, max_epochs=3).fit(lorenz_data)
    spectrum = lyapunov_spectrum(model, n_exponents=2, dt=0.01, n_steps=200, transient=50,
                                 n_trajectories=4)
    assert np.isfinite(spectrum).all()


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_discrete_map_step_reproduces_the_closed_loop_forecast(cls, lorenz_data):
    model = tiny(cls, num_layers=2, max_epochs=3).fit(lorenz_data)
    dmap = model.as_discrete_map(dt=0.01)
    d = model.n_features_in_
    assert dmap.dim == d + 2 * 8 * (2 if cls is LSTMForecaster else 1)
    assert dmap.time_step == 0.01
    # The state after the context: [first forecast (scaled), hidden state(s) per layer].
    with torch.no_grad():
        prediction, state = model.module_(model._tensor(model.context_y_)[None])
        parts = state if isinstance(state, tuple) else (state,)
        z = torch.cat([prediction[:, -1]] + [s.transpose(0, 1).reshape(1, -1) for s in parts],
                      dim=1)
        # initial_states starts there too, up to its 1e-3 perturbation.
        assert (dmap.initial_states(1, 0) - z).abs().max() < 1e-2
        outputs = [z[:, :d]]
        for _ in range(14):
            z = dmap.step(z)
            outputs.append(z[:, :d])
    trajectory = model.y_scaler_.inverse_transform(torch.cat(outputs).double().numpy())
    # float32: the map's step runs torch's native kernel, predict may run oneDNN's, which
    # sum in another order (differences of a few 1e-6 after 15 closed-loop steps).
    np.testing.assert_allclose(trajectory, model.predict(15), rtol=1e-5, atol=1e-5)


# ====================================================================== more training
def test_partial_fit_trains_further_from_the_fitted_weights():
    model = tiny(max_epochs=3, learning_rate=1e-2, early_stopping=None).fit(sine())
    scaler_mean, before = model.y_scaler_.mean.copy(), copy.deepcopy(model.module_)
    model.partial_fit(sine())
    np.testing.assert_array_equal(model.y_scaler_.mean, scaler_mean)  # the first fit's
    assert model.n_epochs_ == 3
    # The same call on a fresh copy of the fitted weights gives the same model: it started
    # from them (and not from a new initialisation, which fit would draw).
    again = tiny(max_epochs=3, learning_rate=1e-2, early_stopping=None).fit(sine())
    again.module_.load_state_dict(before.state_dict())
    again.partial_fit(sine())
    np.testing.assert_array_equal(again.predict(10), model.predict(10))
    refit = tiny(max_epochs=3, learning_rate=1e-2, early_stopping=None).fit(sine())
    assert np.abs(refit.predict(10) - model.predict(10)).max() > 1e-6


def test_partial_fit_of_an_unfitted_model_fits_it_and_errors_leave_the_model_as_it_was():
    fresh = tiny().partial_fit(sine())
    np.testing.assert_array_equal(fresh.predict(5), tiny().fit(sine()).predict(5))
    forecast = fresh.predict(5)
    with pytest.raises(ValueError, match="columns of the first fit"):
        fresh.partial_fit(sine()[:, :1])
    fresh.set_params(learning_rate=1e20, gradient_clip=None)
    with pytest.raises(DivergenceError):
        fresh.partial_fit(sine())
    np.testing.assert_array_equal(fresh.predict(5), forecast)
