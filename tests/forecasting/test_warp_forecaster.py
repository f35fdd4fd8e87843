"""Tests of tsrnn.forecasting.warp.WARPForecaster: the estimator contract (shapes, save/load,
reproducibility, cloning, errors) and its two trainings. Tiny models, a few epochs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone

from tsrnn.datasets import mass_spring_damper
from tsrnn.forecasting import WARPForecaster

TINY = dict(sequence_length=16, batch_size=16, max_epochs=2, root_width=8, hyper_width=8,
            random_state=0)


def sine(n_steps: int = 200) -> np.ndarray:
    t = np.arange(n_steps) * 0.1
    return np.c_[np.sin(t), np.cos(1.3 * t)]


def tiny(**overrides) -> WARPForecaster:
    return WARPForecaster(**{**TINY, **overrides})


@pytest.mark.parametrize("transition", ["dense", "diagonal", "lowrank"])
@pytest.mark.parametrize("training", ["scan", "autoregressive"])
def test_fit_predict_shapes(transition, training):
    model = tiny(transition=transition, training=training, forcing_prob=0.7).fit(sine())
    forecast = model.predict(12)
    assert forecast.shape == (12, 2) and np.isfinite(forecast).all()
    assert model.predict(5, context=sine()[:20]).shape == (5, 2)
    assert len(model.history_["train_loss"]) == model.n_epochs_


def test_one_dimensional_series_gives_one_dimensional_forecast():
    model = tiny(validation_fraction=0.0).fit(np.sin(np.arange(150) * 0.2))
    assert model.predict(7).shape == (7,)


def test_scan_and_autoregressive_training_losses_agree_under_teacher_forcing():
    y = torch.as_tensor(sine()[None, :17], dtype=torch.float32).repeat(3, 1, 1)
    scan = tiny(training="scan").fit(sine())
    loop = clone(scan).set_params(training="autoregressive", forcing_prob=1.0)
    loop.n_features_in_, loop.n_exog_ = 2, 0
    module = scan.module_.train()
    torch.testing.assert_close(scan._training_loss(module, y, None),
                               loop._training_loss(module, y, None), rtol=1e-5, atol=1e-6)


def test_same_random_state_gives_same_forecast_and_another_differs():
    first = tiny().fit(sine()).predict(10)
    again = tiny().fit(sine()).predict(10)
    other = tiny(random_state=1).fit(sine()).predict(10)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_save_and_load_give_identical_forecasts(tmp_path):
    model = tiny(transition="lowrank", loss="nll").fit(sine())
    path = model.save(tmp_path / "warp.pt")
    loaded = WARPForecaster.load(path)
    np.testing.assert_array_equal(model.predict(9), loaded.predict(9))
    assert loaded.get_params() == model.get_params()


def test_clone_copies_hyperparameters_not_learned_state():
    model = tiny(transition="diagonal", init_window=3).fit(sine())
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "module_")


def test_predict_batch_equals_predict_per_context():
    model = tiny().fit(sine())
    contexts = np.stack([sine()[i: i + 20] for i in (0, 30, 60)])
    batch = model.predict_batch(6, contexts)
    for i, context in enumerate(contexts):
        np.testing.assert_allclose(batch[i], model.predict(6, context=context), atol=1e-5)


def test_exogenous_inputs_are_used_and_required():
    y, x = sine(), np.cos(np.arange(200) * 0.05)[:, None]
    model = tiny().fit(y, X=x)
    assert model.predict(4, X=np.zeros((4, 1))).shape == (4, 2)
    with_context = model.predict(4, context=y[:20], X=np.zeros((24, 1)))
    other = model.predict(4, context=y[:20], X=np.ones((24, 1)))
    assert with_context.shape == (4, 2) and not np.allclose(with_context, other)
    with pytest.raises(ValueError, match="predict needs X"):
        model.predict(4)


def test_physics_informed_forecaster_on_mass_spring_damper(tmp_path):
    y, _ = mass_spring_damper(8, 60, dt=0.1, seed=0)
    model = WARPForecaster(root="mass_spring_damper",
                           root_options={"time_unit": 2.0, "omega": 2.0}, init_window=5,
                           init_normalize=True, sequence_length=20, max_epochs=2, scale=False,
                           random_state=0, validation_fraction=0.0, early_stopping=None)
    model.fit(list(y))
    assert model.module_.n_params == 4
    forecast = model.predict(10, context=y[0, :20])
    assert forecast.shape == (10, 2) and np.isfinite(forecast).all()
    loaded = WARPForecaster.load(model.save(tmp_path / "msd.pt"))
    np.testing.assert_array_equal(loaded.predict(10, context=y[0, :20]), forecast)


def test_physics_root_with_true_state_forecasts_the_exact_solution():
    # With A = I, B = 0 and θ_0 set to the true (x0, v0, ω, ζ), the forecaster's closed loop
    # is the exact solution: the physical root extrapolates in τ without error.
    y, p = mass_spring_damper(1, 80, dt=0.1, seed=3)
    model = WARPForecaster(root="mass_spring_damper", root_options={"time_unit": 2.0},
                           init="learned", sequence_length=20, max_epochs=1, scale=False,
                           dtype="float64", validation_fraction=0.0, learning_rate=1e-12,
                           random_state=0).fit(y[0])
    raw = lambda v: float(np.log(np.expm1(v)))  # noqa: E731  inverse softplus
    with torch.no_grad():
        model.module_.theta_base.copy_(torch.tensor(
            [p["x0"][0], p["v0"][0], raw(p["omega"][0]), raw(p["zeta"][0])]))
        model.module_.B.zero_()
        model.module_.A.copy_(torch.eye(4))  # the default dense transition
    np.testing.assert_allclose(model.predict(60, context=y[0, :20]), y[0, 20:], atol=1e-10)


def test_a_long_context_is_read_from_its_last_window():
    # tau = t / sequence_length was trained over [0, 1]: a context of several windows drove
    # it beyond, and the forecasts grew to 10x the data's amplitude, then to inf.
    y = sine(400)
    model = tiny().fit(y)
    long, window = y[:200], y[200 - TINY["sequence_length"]:200]
    np.testing.assert_array_equal(model.predict(20, context=long),
                                  model.predict(20, context=window))
    np.testing.assert_array_equal(model.predict_batch(20, long[None]),
                                  model.predict_batch(20, window[None]))


def test_physics_root_reads_the_sampling_step_off_position_and_velocity():
    # The root's velocity is dx/d(root time): with time counted in steps (the former
    # default) a velocity column in position per time unit could not be fitted unless
    # dt = 1. The step is read off the data instead; with it and the true state, the closed
    # loop is the exact solution.
    dt = 0.1
    y, p = mass_spring_damper(1, 80, dt=dt, seed=3)
    model = WARPForecaster(root="mass_spring_damper", init="learned", sequence_length=20,
                           max_epochs=1, scale=False, dtype="float64", learning_rate=1e-12,
                           validation_fraction=0.0, random_state=0).fit(y[0])
    assert model.sampling_step_ == pytest.approx(dt, rel=1e-4)
    assert model.module_.root.time_unit == pytest.approx(20 * dt, rel=1e-4)
    raw = lambda v: float(np.log(np.expm1(v)))  # noqa: E731  inverse softplus
    with torch.no_grad():
        model.module_.theta_base.copy_(torch.tensor(
            [p["x0"][0], p["v0"][0], raw(p["omega"][0]), raw(p["zeta"][0])]))
        model.module_.B.zero_()
        model.module_.A.copy_(torch.eye(4))
    scale = np.abs(y[0]).max()
    np.testing.assert_allclose(model.predict(60, context=y[0, :20]), y[0, 20:],
                               atol=1e-3 * scale)
    # Not (position, velocity): refused with the way out.
    noise = np.random.default_rng(0).normal(size=(80, 2))
    with pytest.raises(ValueError, match="time_unit"):
        WARPForecaster(root="mass_spring_damper", sequence_length=20, max_epochs=1,
                       scale=False).fit(noise)
    # A given time_unit is used as given, and the step is not read.
    given = WARPForecaster(root="mass_spring_damper", root_options={"time_unit": 3.0},
                           sequence_length=20, max_epochs=1, scale=False).fit(noise)
    assert given.sampling_step_ is None and given.module_.root.time_unit == 3.0


def test_bad_hyperparameters_get_clear_errors():
    with pytest.raises(ValueError, match="set scale=False"):
        tiny(root="mass_spring_damper").fit(sine())
    with pytest.raises(ValueError, match="expected one of 'mlp', 'mass_spring_damper'"):
        tiny(root="siren").fit(sine())
    with pytest.raises(ValueError, match="'scan', 'autoregressive'"):
        tiny(training="parallel").fit(sine())
    with pytest.raises(ValueError, match="init_window=20 exceeds"):
        tiny(init_window=20).fit(sine())
    with pytest.raises(ValueError, match="forcing_prob"):
        tiny(forcing_prob=0.0).fit(sine())
    with pytest.raises(ValueError, match="known: time_unit"):
        tiny(root="mass_spring_damper", scale=False, root_options={"mass": 1.0}).fit(sine())
    with pytest.raises(ValueError, match="NaN or inf"):
        tiny().fit(np.where(np.arange(200)[:, None] == 5, np.nan, sine()))


def test_predict_batch_takes_and_gives_a_1d_series_as_predict_does():
    series = sine()[:, 0]
    model = tiny().fit(series)
    contexts = np.stack([series[i: i + 20] for i in (0, 30)])
    batch = model.predict_batch(6, contexts)
    assert batch.shape == (2, 6)
    np.testing.assert_allclose(batch[1], model.predict(6, context=contexts[1]), atol=1e-5)


def test_predict_batch_refuses_contexts_shorter_than_the_init_window():
    model = tiny(init_window=4).fit(sine())
    with pytest.raises(ValueError, match="init_window=4"):
        model.predict_batch(3, sine()[None, :2])
