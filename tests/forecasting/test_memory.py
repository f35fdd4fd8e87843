"""Tests of tsrnn.forecasting.memory: LEMForecaster, HiPPOForecaster, LSSLForecaster.

The training loop itself is tested with the GRU in test_rnn_forecasters.py; here: the
scikit-learn contract, that each estimator builds its core from its hyperparameters,
reproducibility, learning, exogenous inputs, the closed loop from a context, and save/load.
All models are tiny and seeded.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.utils import estimator_checks

from tsrnn.forecasting import HiPPOForecaster, LEMForecaster, LSSLForecaster
from tsrnn.nn import LEM, LSSL, HiPPORNN

ESTIMATORS = [LEMForecaster, HiPPOForecaster, LSSLForecaster]
TINY = dict(hidden_size=8, sequence_length=16, batch_size=16, max_epochs=2, random_state=0)
SMALL_CORE = {HiPPOForecaster: dict(state_size=8), LSSLForecaster: dict(state_size=8)}


def tiny(cls, **overrides):
    return cls(**{**TINY, **SMALL_CORE.get(cls, {}), **overrides})


def sine(n_steps: int = 300) -> np.ndarray:
    t = np.arange(n_steps) * 0.1
    return np.c_[np.sin(t), np.cos(t)]


CHECKS = [
    "check_parameters_default_constructible",
    "check_no_attributes_set_in_init",
    "check_get_params_invariance",
    "check_set_params",
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_estimators_fit_returns_self",
    "check_dont_overwrite_parameters",
    "check_fit_check_is_fitted",
    "check_n_features_in",
    "check_estimators_unfitted",
]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("check", CHECKS)
def test_scikit_learn_estimator_check_passes(check, cls):
    # fit(X, y) of scikit-learn read as fit(y=series, X=exogenous column), as for the GRU.
    estimator = cls(hidden_size=4, sequence_length=4, batch_size=8, max_epochs=1,
                    validation_fraction=0.0, random_state=0, **SMALL_CORE.get(cls, {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        getattr(estimator_checks, check)(cls.__name__, estimator)


@pytest.mark.parametrize(("cls", "options", "core", "attributes"), [
    (LEMForecaster, dict(dt=0.5), LEM, dict(dt=0.5, hidden_size=8)),
    (HiPPOForecaster, dict(measure="legt", method="zoh", theta=4.0), HiPPORNN,
     dict(measure="legt", method="zoh", state_size=8)),
    (LSSLForecaster, dict(trainable_A="shared", channels=2), LSSL,
     dict(trainable_A="shared", channels=2, state_size=8)),
], ids=["lem", "hippo", "lssl"])
def test_estimator_builds_its_core_from_its_hyperparameters(cls, options, core, attributes):
    model = tiny(cls, **options).fit(sine())
    assert isinstance(model.module_.core, core)
    for name, value in attributes.items():
        assert getattr(model.module_.core, name) == value, name
    assert model.module_.core.input_size == 2


def test_unknown_core_options_are_clear_errors_at_fit():
    with pytest.raises(ValueError, match="unknown measure 'legx'"):
        tiny(HiPPOForecaster, measure="legx").fit(sine())
    with pytest.raises(ValueError, match="unknown trainable_A 'yes'"):
        tiny(LSSLForecaster, trainable_A="yes").fit(sine())
    with pytest.raises(ValueError, match=r"dt must lie in \(0.0, 1.0\]"):
        tiny(LEMForecaster, dt=-1.0).fit(sine())


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_same_random_state_gives_identical_predictions(cls):
    y = sine()
    first, second = tiny(cls).fit(y), tiny(cls).fit(y)
    np.testing.assert_array_equal(first.predict(10), second.predict(10))
    third = tiny(cls, random_state=1).fit(y)
    assert np.abs(third.predict(10) - first.predict(10)).max() > 1e-4


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_training_lowers_the_validation_loss(cls):
    model = tiny(cls, max_epochs=15, learning_rate=1e-2, early_stopping=None).fit(sine(400))
    losses = model.history_["validation_loss"]
    assert min(losses) < 0.3 * losses[0]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_closed_loop_from_the_stored_context_equals_an_explicit_context(cls):
    y = sine()
    model = tiny(cls).fit(y)
    keep = model._context_length()
    np.testing.assert_allclose(model.predict(12), model.predict(12, context=y[-keep:]),
                               rtol=1e-6, atol=1e-6)
    long = model.predict(20)
    np.testing.assert_array_equal(model.predict(5), long[:5])


def test_lssl_forecaster_predicts_by_recurrence_what_convolution_computes():
    # The closed loop steps the recurrent mode after a convolutional pass over the context;
    # teacher-forced, the recurrent mode must reproduce the convolution's predictions.
    model = tiny(LSSLForecaster).fit(sine())
    module = model.module_
    y = torch.as_tensor(model.context_y_, dtype=torch.float32)[None]
    module.core.mode = "convolution"
    conv, _ = module(y)
    module.core.mode = "recurrence"
    rec, _ = module(y)
    module.core.mode = "auto"
    torch.testing.assert_close(conv, rec, rtol=0, atol=1e-5)


def _exogenous_toy(n_steps=500, seed=0):
    """y_t = 0.5 y_{t-1} + x_t with white-noise x: y_{t+1} is known only with x_{t+1}."""
    x = np.random.default_rng(seed).standard_normal(n_steps)
    y = np.zeros(n_steps)
    for t in range(1, n_steps):
        y[t] = 0.5 * y[t - 1] + x[t]
    return y, x


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_exogenous_inputs_are_used_at_the_right_step(cls):
    y, x = _exogenous_toy()
    n_fit, n = 420, 40
    model = tiny(cls, max_epochs=40, learning_rate=1e-2, early_stopping=None,
                 residual=False).fit(y[:n_fit], X=x[:n_fit])
    truth = y[n_fit:n_fit + n]

    def rmse(future_x):
        return float(np.sqrt(np.mean((model.predict(n, X=future_x) - truth) ** 2)))

    aligned = rmse(x[n_fit:n_fit + n])
    one_late = rmse(x[n_fit - 1:n_fit + n - 1])  # x_t offered when x_{t+1} is due
    assert aligned < 0.5 * truth.std()
    assert aligned < 0.5 * one_late


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_save_and_load_reproduce_the_forecast(cls, tmp_path):
    y = sine()
    model = tiny(cls).fit(y)
    path = model.save(tmp_path / "model.pt")
    loaded = cls.load(path)
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.predict(15), model.predict(15))
    np.testing.assert_array_equal(loaded.predict(7, context=y[:40]),
                                  model.predict(7, context=y[:40]))
