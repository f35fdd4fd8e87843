"""DSR estimators (tsrnn/dsr/estimators.py): fit, predict, save/load, analyses, bad input.

Fits are tiny (a few batches of short windows of a 1500-step Lorenz-63 series) and seeded:
they check the plumbing, not the quality of a reconstruction (benchmarks/ does that).
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from tsrnn.analysis import lyapunov_spectrum
from tsrnn.dsr import ALRNN, PLRNN, RegionGraph, ShallowPLRNN
from tsrnn.exceptions import DivergenceError
from tsrnn.systems import Lorenz63

TINY = dict(sequence_length=20, batch_size=8, batches_per_epoch=3, max_epochs=2,
            checkpoint_every=1, dt=0.01, random_state=0, device="cpu")


def tiny(cls, **overrides):
    model = {ALRNN: dict(n_latent=6, n_pwl=2), PLRNN: dict(n_latent=5),
             ShallowPLRNN: dict(n_hidden=10)}[cls]
    return cls(**{**TINY, **model, **overrides})


def kept_epoch(model) -> int:
    """The epoch the selection rule keeps: the lowest D_stsp + D_H of the long runs
    (selection="dstsp+dh", ties to the earlier epoch), or the lowest short-run D_stsp."""
    if model.selection == "dstsp+dh":
        return min(model.selection_scores_, key=lambda row: (row[1] + row[2], row[0]))[0]
    return int(np.argmin([s for _, s in model.checkpoint_scores_]))


@pytest.fixture(scope="module")
def lorenz():
    return Lorenz63().simulate(1500, transient=500, seed=0)


# ---------------------------------------------------------------------- fit and predict
@pytest.mark.parametrize("scheme", [dict(teacher_forcing="gtf", alpha="adaptive"),
                                    dict(teacher_forcing="gtf", alpha=0.4),
                                    dict(teacher_forcing="sparse", forcing_interval=5),
                                    dict(teacher_forcing="bptt")])
@pytest.mark.parametrize("cls", [ALRNN, PLRNN, ShallowPLRNN])
def test_estimators_fit_a_short_lorenz_series_and_predict(cls, scheme, lorenz):
    model = tiny(cls, **scheme).fit(lorenz)
    forecast = model.predict(50)
    assert forecast.shape == (50, 3) and np.isfinite(forecast).all()
    assert model.n_epochs_ == 2 and len(model.history_["train_loss"]) == 2
    assert [e for e, _ in model.checkpoint_scores_] == [0, 1]
    assert model.best_epoch_ == kept_epoch(model)
    if scheme.get("alpha") == "adaptive":
        assert 0.0 <= model.alpha_ <= 1.0  # 6 batches: one update of the rule from 1
    elif scheme["teacher_forcing"] == "sparse":
        assert model.alpha_ is None


def test_save_load_round_trip_predicts_identically(lorenz, tmp_path):
    model = tiny(ALRNN).fit(lorenz)
    path = model.save(tmp_path / "alrnn.pt")
    loaded = ALRNN.load(path)
    np.testing.assert_array_equal(loaded.predict(30), model.predict(30))
    np.testing.assert_array_equal(loaded.predict(10, context=lorenz[:40]),
                                  model.predict(10, context=lorenz[:40]))
    assert loaded.get_params() == model.get_params()
    assert loaded.checkpoint_scores_ == model.checkpoint_scores_


def test_same_random_state_gives_identical_models(lorenz):
    first, second = tiny(ShallowPLRNN).fit(lorenz), tiny(ShallowPLRNN).fit(lorenz)
    np.testing.assert_array_equal(first.predict(20), second.predict(20))
    for (name, a), (_, b) in zip(first.module_.state_dict().items(),
                                 second.module_.state_dict().items()):
        assert torch.equal(a, b), name


def test_n_init_keeps_the_training_with_the_best_checkpoint(lorenz):
    # (Tiny shPLRNN fits with GTF: the only tiny setting whose seeds score differently.)
    options = dict(teacher_forcing="gtf", alpha=0.4)
    best = tiny(ShallowPLRNN, n_init=3, **options).fit(lorenz)
    singles = [tiny(ShallowPLRNN, random_state=seed, **options).fit(lorenz)
               for seed in (0, 1, 2)]
    scores = [m.selection_score_ for m in singles]
    # Training k is the plain fit with random_state + k, bit for bit.
    assert best.init_scores_ == scores
    assert best.best_init_ == int(np.argmin(scores))
    kept = singles[best.best_init_]
    np.testing.assert_array_equal(best.predict(25), kept.predict(25))
    assert best.checkpoint_scores_ == kept.checkpoint_scores_
    assert best.best_epoch_ == kept.best_epoch_ and best.alpha_ == kept.alpha_
    assert len(set(scores)) > 1  # the seeds differ, so the choice means something
    # What the fit used is recorded, not the kept training's settings (n_init=1, its seed).
    assert best.fit_params_ == best.get_params(deep=False)


def test_n_init_in_worker_processes_equals_the_sequential_run(lorenz):
    sequential = tiny(ShallowPLRNN, n_init=2).fit(lorenz)
    parallel = tiny(ShallowPLRNN, n_init=2, n_jobs=2).fit(lorenz)
    assert parallel.init_scores_ == sequential.init_scores_
    np.testing.assert_array_equal(parallel.predict(20), sequential.predict(20))
    assert torch.get_num_threads() == 1  # the workers' thread settings stay theirs


def test_n_init_threads_on_a_gpu_run_in_rounds_within_the_stream_pool(monkeypatch):
    # The CUDA path's scheduling, run on the CPU with a stand-in training: every training
    # runs once, results come back in order, at most n_jobs at a time, and no training of a
    # round starts before the previous round has ended (each draws three of torch's 32
    # pooled streams).
    import threading
    import time

    from tsrnn.dsr import estimators

    lock, running, log = threading.Lock(), set(), []

    def stand_in(cls, params, y, X):
        k = params["k"]
        with lock:
            running.add(k)
            log.append(set(running))
        time.sleep(0.02)
        with lock:
            running.discard(k)
        return k, None

    monkeypatch.setattr(estimators, "_fit_one_on_stream", stand_in)
    trainings = [{"k": k} for k in range(23)]
    results = list(estimators._threads_on_one_gpu(ALRNN, trainings, None, None, 4))
    assert [k for k, _ in results] == list(range(23))
    assert max(len(live) for live in log) == 4
    size = estimators._GPU_ROUND
    assert 3 * size <= 32
    assert all(len({k // size for k in live}) == 1 for live in log)


def test_n_init_keeps_a_float64_model_in_float64(lorenz):
    best = tiny(ALRNN, n_init=2, dtype="float64").fit(lorenz)
    kept = tiny(ALRNN, dtype="float64", random_state=best.best_init_).fit(lorenz)
    assert {p.dtype for p in best.module_.parameters()} == {torch.float64}
    np.testing.assert_array_equal(best.predict(25), kept.predict(25))


def test_n_init_gives_every_training_its_own_checkpoint_file(lorenz, tmp_path):
    path = tmp_path / "run.pt"
    tiny(ALRNN, n_init=2, checkpoint_path=str(path)).fit(lorenz)
    assert not path.exists()
    assert (tmp_path / "run-init0.pt").exists() and (tmp_path / "run-init1.pt").exists()
    with pytest.raises(FileExistsError, match=r"run-init0.pt', .*run-init1.pt'\] exist; choose "
                                              "a new checkpoint_path"):
        tiny(ALRNN, n_init=2, checkpoint_path=str(path)).fit(lorenz)


# The scikit-learn checks that apply to a forecaster whose predict takes a horizon (the same
# selection as tests/forecasting/test_rnn_forecasters.py, which gives the reasons for the rest).
SKLEARN_CHECKS = [
    "check_parameters_default_constructible", "check_no_attributes_set_in_init",
    "check_get_params_invariance", "check_set_params", "check_estimator_cloneable",
    "check_estimator_repr", "check_do_not_raise_errors_in_init_or_set_params",
    "check_estimator_tags_renamed", "check_valid_tag_types", "check_mixin_order",
    "check_estimators_fit_returns_self", "check_dont_overwrite_parameters",
    "check_estimators_overwrite_params", "check_fit_check_is_fitted", "check_n_features_in",
    "check_readonly_memmap_input", "check_inplace_ensure_writeable", "check_fit2d_1feature",
    "check_supervised_y_no_nan", "check_requires_y_none", "check_estimators_unfitted",
]


@pytest.mark.parametrize("cls", [ALRNN, PLRNN, ShallowPLRNN], ids=lambda c: c.__name__)
def test_scikit_learn_estimator_checks_pass(cls):
    from sklearn.utils import estimator_checks

    extra = {"n_pwl": 1} if cls is ALRNN else {}  # one-column checks: M = N = 1
    for check in SKLEARN_CHECKS:
        estimator = cls(n_latent=None, sequence_length=4, batch_size=8, max_epochs=1,
                        batches_per_epoch=2, random_state=0, **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            getattr(estimator_checks, check)(cls.__name__, estimator)


def test_clone_and_get_params_keep_every_hyperparameter():
    model = ALRNN(n_latent=7, n_pwl=3, teacher_forcing="gtf", alpha=0.2, noise=0.05)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert {"n_latent", "n_pwl", "teacher_forcing", "alpha", "forcing_interval", "noise",
            "batches_per_epoch", "checkpoint_every", "max_time", "missing", "dt",
            "learning_rate_final", "gradient_clip", "divergence"} <= set(model.get_params())


def test_predict_from_a_context_forces_the_observed_latents_then_runs_free(lorenz):
    model = tiny(ALRNN).fit(lorenz)
    context = lorenz[100:160]
    scaler = model.y_scaler_
    x = torch.as_tensor(scaler.transform(context), dtype=torch.float32)
    module = model.module_
    with torch.no_grad():  # by hand: z_1 = [x_1; L x_1], replace x along the context
        z = module.observation.initial_state(x[:1])
        for t in range(1, len(x)):
            z = module.latent.step(z)
            z = torch.cat([x[t:t + 1], z[:, 3:]], -1)
        expected = []
        for _ in range(15):
            z = module.latent.step(z)
            expected.append(z[0, :3].double().numpy())
    expected = scaler.inverse_transform(np.array(expected))
    np.testing.assert_allclose(model.predict(15, context=context), expected, rtol=1e-5,
                               atol=1e-5)
    latents = model.generate_latents(15, context=context)
    np.testing.assert_allclose(model.latent_to_data(latents), expected, rtol=1e-5, atol=1e-5)


def test_several_trajectories_and_exogenous_inputs(lorenz):
    y = [lorenz[:700], lorenz[700:]]
    x = [np.sin(np.arange(700))[:, None], np.cos(np.arange(800))[:, None]]
    model = tiny(PLRNN).fit(y, X=x)
    assert model.module_.latent.n_inputs == 1
    assert model.predict(5, X=np.zeros((5, 1))).shape == (5, 3)
    with pytest.raises(ValueError, match="autonomous"):
        model.as_discrete_map()


# ---------------------------------------------------------------------- model selection
def test_checkpoints_are_scored_every_checkpoint_every_epochs_and_the_best_kept(lorenz):
    model = tiny(ALRNN, max_epochs=7, checkpoint_every=3, selection="dstsp").fit(lorenz)
    epochs = [e for e, _ in model.checkpoint_scores_]
    assert epochs == [0, 2, 5, 6]  # the first, every third, the last
    scores = dict(model.checkpoint_scores_)
    assert model.best_epoch_ in scores
    assert scores[model.best_epoch_] == min(scores.values())
    # The weights kept are the best checkpoint's: scoring them again gives its D_stsp.
    pairs = [(model.y_scaler_.transform(lorenz), None)]
    again = model._reconstruction_score(model.module_, pairs)
    assert again == pytest.approx(scores[model.best_epoch_], rel=1e-6)


def test_max_time_stops_training_and_keeps_the_model_usable(lorenz):
    model = tiny(ALRNN, max_epochs=50, max_time=1e-9).fit(lorenz)
    # The first epoch always runs (a spent budget returned the untrained model).
    assert model.stopped_by_time_ and model.n_epochs_ == 1
    assert model.predict(5).shape == (5, 3)


def test_max_time_is_a_hard_budget_not_a_start_deadline(lorenz, monkeypatch):
    import time

    from tsrnn.forecasting.base import NeuralForecaster

    def slow_epoch(self, train, optimizer, generator, epoch, best_state):
        time.sleep(0.1)
        return 1.0

    monkeypatch.setattr(NeuralForecaster, "_train_epoch", slow_epoch)
    tiny(ALRNN, max_epochs=1).fit(lorenz)  # first-call costs outside the timed fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the stub makes no optimizer step
        model = tiny(ALRNN, max_epochs=50, max_time=0.45).fit(lorenz)
    # Epochs of at least 0.1 s (plus a checkpoint score of ~0.01-0.03 s): the one that would
    # end past 0.45 s is not started (starting every epoch that begins before the deadline
    # ran one over), so at most 4 run, and 3 when the scores are slow.
    assert model.stopped_by_time_ and 1 <= model.n_epochs_ <= 4
    assert model.training_time_ <= 0.45 + 0.03


def test_noise_is_added_to_training_batches_only(lorenz):
    clean = tiny(ALRNN).fit(lorenz)
    noisy = tiny(ALRNN, noise=0.05).fit(lorenz)
    assert clean.history_["train_loss"] != noisy.history_["train_loss"]


def test_observation_noise_level_reads_the_noise_of_a_finely_sampled_flow():
    from tsrnn.dsr import observation_noise_level

    clean = Lorenz63().simulate(20_000, dt=0.01, transient=500, seed=1)
    noisy = Lorenz63().simulate(20_000, dt=0.01, transient=500, seed=1, noise=0.05)
    level = observation_noise_level([noisy]) / clean.std(0)
    np.testing.assert_allclose(level, 0.05, rtol=0.05)
    assert (observation_noise_level([clean]) / clean.std(0) < 0.003).all()
    # Rows with NaN give no differences across them; two pieces give the same estimate.
    holed = noisy.copy()
    holed[10_000] = np.nan
    np.testing.assert_allclose(observation_noise_level([holed]),
                               observation_noise_level([noisy[:10_000], noisy[10_001:]]))


class _Replay(torch.nn.Module):
    """A stand-in model whose free run replays a given trajectory (observed = latent)."""

    def __init__(self, rows: np.ndarray):
        super().__init__()
        self.rows = torch.as_tensor(rows, dtype=torch.float32)
        self.observation = type("Identity", (), {"initial_state": staticmethod(lambda x: x)})

    def free_run(self, z, n_steps, inputs=None):
        return self.rows[None, :n_steps]

    def observe(self, states):
        return states


def test_selection_noise_lets_the_true_system_score_near_zero_against_noisy_data():
    # Selection compares free runs with the data. Against 5%-noisy Rossler data the
    # noise-free truth itself scores far from 0 (the noise thickens the thin attractor);
    # with the data's noise added to the run it scores near 0, as it should.
    from tsrnn.systems import Rossler

    clean = Rossler().simulate(20_000, dt=0.05, transient=500, seed=1)
    noisy = Rossler().simulate(20_000, dt=0.05, transient=500, seed=1, noise=0.05)
    mean, std = noisy.mean(0), noisy.std(0)
    truth_run = (Rossler().simulate(22_000, dt=0.05, transient=500, seed=2) - mean) / std
    references = [((noisy - mean) / std, None)]
    scores = {}
    for level in (0.0, 0.05, "auto"):
        model = tiny(ALRNN, selection_noise=level, max_epochs=1).fit(noisy)
        model._score_cache_ = None
        scores[level], _ = model._long_run_score(_Replay(truth_run), references)
        if level == "auto":
            np.testing.assert_allclose(model.selection_noise_, 0.05 * clean.std(0) / std,
                                       rtol=0.05)
    # 20,000 points: two noisy copies of the system read 0.11 against each other.
    assert scores[0.0] > 0.5
    assert scores[0.05] < 0.15 and scores["auto"] < 0.15


def test_selection_noise_auto_refuses_a_level_that_is_not_noise():
    # A map's fourth differences are its dynamics, not noise: "auto" warns and adds none.
    from tsrnn.systems import Henon

    y = Henon().simulate(1500, transient=100, seed=0)
    with pytest.warns(UserWarning, match="not noise on a finely sampled flow"):
        model = tiny(ALRNN, n_latent=4, selection_noise="auto", max_epochs=1).fit(y)
    assert not model.selection_noise_.any()


def test_selection_noise_is_reproducible_and_changes_only_the_scores(lorenz):
    plain = tiny(ALRNN).fit(lorenz)
    noisy = [tiny(ALRNN, selection_noise=0.05).fit(lorenz) for _ in range(2)]
    assert noisy[0].checkpoint_scores_ == noisy[1].checkpoint_scores_
    assert noisy[0].selection_scores_ == noisy[1].selection_scores_
    assert noisy[0].history_["train_loss"] == plain.history_["train_loss"]
    assert noisy[0].checkpoint_scores_ != plain.checkpoint_scores_
    np.testing.assert_array_equal(noisy[0].selection_noise_, [0.05] * 3)
    np.testing.assert_array_equal(plain.selection_noise_, [0.0] * 3)


# ---------------------------------------------------------------------- analysis
def test_discrete_map_uses_dt_and_gives_lyapunov_exponents_per_time_unit(lorenz):
    model = tiny(ALRNN).fit(lorenz)
    dmap = model.as_discrete_map()
    assert dmap.time_step == 0.01 and dmap.dim == 6 and dmap.dtype == torch.float64
    assert model.as_discrete_map(dt=0.5).time_step == 0.5
    per_time = lyapunov_spectrum(model, n_exponents=2, n_steps=300, n_trajectories=4)
    per_step = lyapunov_spectrum(model.set_params(dt=None), n_exponents=2, n_steps=300,
                                 n_trajectories=4)
    np.testing.assert_allclose(per_time * 0.01, per_step, rtol=1e-9)
    starts = dmap.initial_states(5, 0)
    assert starts.shape == (5, 6) and torch.isfinite(starts).all()


def test_fixed_points_of_the_fitted_model_are_true_fixed_points(lorenz):
    model = tiny(ALRNN).fit(lorenz)
    points = model.fixed_points()
    assert points, "an AL-RNN with invertible linear parts has a fixed point"
    dmap = model.as_discrete_map()
    for point in points:
        z = torch.as_tensor(point.location[None])
        with torch.no_grad():
            assert float((dmap.step(z) - z).norm()) < 1e-8
    assert model.latent_to_data(points[0].location).shape == (3,)


def test_symbolic_codes_and_region_transition_graph_of_an_alrnn(lorenz):
    model = tiny(ALRNN, n_pwl=2).fit(lorenz)
    codes = model.symbolic_codes(n_steps=500)
    assert codes.shape == (500,) and set(codes) <= {0, 1, 2, 3}
    latents = model.generate_latents(500)
    expected = (latents[:, -2] > 0) * 2 + (latents[:, -1] > 0)
    np.testing.assert_array_equal(codes, expected)
    graph = model.region_transition_graph(n_steps=500)
    assert isinstance(graph, RegionGraph)
    np.testing.assert_array_equal(graph.codes, np.unique(codes))
    assert graph.counts.sum() == 499 and graph.n_regions <= 4
    pairs = list(itertools.pairwise(codes))
    assert graph.as_dict() == {k: pairs.count(k) for k in set(pairs)}
    np.testing.assert_allclose(graph.transition_matrix().sum(1), 1.0)
    along_data = model.symbolic_codes(lorenz[:200])
    assert along_data.shape == (200,)


# ---------------------------------------------------------------------- bad input
def test_nan_is_refused_unless_masked_forcing_is_asked_for(lorenz):
    y = lorenz.copy()
    y[50, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN \(first at row 50, column 1\).*missing='mask'"):
        tiny(ALRNN).fit(y)
    model = tiny(ALRNN, missing="mask").fit(y)
    assert np.isfinite(model.history_["train_loss"]).all()
    assert np.isfinite(model.predict(5, context=y[40:60])).all()
    y[60, 0] = np.inf
    with pytest.raises(ValueError, match="inf"):
        tiny(ALRNN, missing="mask").fit(y)


def test_masked_forcing_needs_the_identity_observation(lorenz):
    with pytest.raises(ValueError, match="observation='identity'"):
        tiny(ALRNN, missing="mask", observation="affine").fit(lorenz)


def test_affine_observation_fits(lorenz):
    model = tiny(ShallowPLRNN, n_latent=4, observation="affine").fit(lorenz)
    assert model.predict(5).shape == (5, 3)


def test_fewer_latents_than_observed_columns_is_an_error(lorenz):
    with pytest.raises(ValueError, match="n_latent=2 is smaller than the 3 observed"):
        tiny(ALRNN, n_latent=2, n_pwl=1).fit(lorenz)


def test_more_piecewise_linear_units_than_latents_is_an_error(lorenz):
    with pytest.raises(ValueError, match="n_pwl=7 exceeds n_latent=6"):
        tiny(ALRNN, n_pwl=7).fit(lorenz)


@pytest.mark.parametrize("bad, message", [
    (dict(teacher_forcing="tbptt"), "unknown teacher_forcing 'tbptt'"),
    (dict(alpha=1.5), "alpha must lie in"),
    (dict(alpha="annealed"), "unknown alpha 'annealed'"),
    (dict(forcing_interval=0), "forcing_interval must be > 0"),
    (dict(observation="linear"), "unknown observation 'linear'"),
    (dict(missing="drop"), "unknown missing 'drop'"),
    (dict(noise=-0.1), "noise must be >= 0"),
    (dict(selection_noise=-0.1), "selection_noise must be >= 0"),
    (dict(selection_noise="estimate"), "unknown selection_noise 'estimate'"),
    (dict(n_init=0), "n_init must be > 0"),
    (dict(n_init=2, n_jobs=0), "n_jobs must be None, -1 or a positive integer"),
    (dict(n_init=2, n_jobs=1.5), "n_jobs must be None, -1 or a positive integer"),
])
def test_bad_hyperparameters_are_reported_by_name(bad, message, lorenz):
    with pytest.raises(ValueError, match=message):
        tiny(ALRNN, **bad).fit(lorenz)


def test_divergence_during_training_is_detected_with_the_epoch(lorenz):
    with pytest.raises(DivergenceError, match="diverged at epoch"):
        tiny(PLRNN, teacher_forcing="bptt", learning_rate=1e4, gradient_clip=None,
             max_epochs=3, sequence_length=40).fit(lorenz)


def test_too_short_series_is_an_error():
    with pytest.raises(ValueError, match="needs at least 21"):
        tiny(ALRNN).fit(np.random.default_rng(0).normal(size=(15, 3)))
