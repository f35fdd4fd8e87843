"""A reservoirpy user's workflows on tsrnn.reservoir: weights copied into reservoirpy's nodes,
several series and exogenous inputs, pandas in and out, save/load, model selection, the
deep and memory reservoirs and NVAR, and bad input."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from tsrnn.reservoir import (
    ESN,
    NVAR,
    DeepResESN,
    LeakyReservoir,
    ResidualMemoryReservoir,
    ResRMN,
)
from tsrnn.systems import Lorenz63


@pytest.fixture(scope="module")
def lorenz() -> np.ndarray:
    return Lorenz63().simulate(1_200, transient=200, seed=0)


def small_deep(**settings) -> DeepResESN:
    return DeepResESN(**{"n_layers": 2, "units_per_layer": 30, "warmup": 20,
                         "random_state": 0, **settings})


def small_memory(**settings) -> ResRMN:
    return ResRMN(**{"n_units": 30, "n_memory_units": 20, "memory_radius": 0.9, "warmup": 20,
                     "random_state": 0, **settings})


def small_esn(**settings) -> ESN:
    return ESN(**{"n_units": 50, "connectivity": 0.2, "warmup": 20, "random_state": 0,
                  **settings})


# ---------------------------------------------------------------- reservoirpy, same weights


def test_esn_with_sparse_inputs_bias_and_leak_matches_reservoirpy(lorenz):
    pytest.importorskip("reservoirpy")
    from reservoirpy.nodes import Reservoir

    model = small_esn(n_units=80, connectivity=0.1, input_connectivity=0.3, bias_scaling=0.4,
                      leak_rate=0.3, scale=False, random_state=1).fit(lorenz[:1_000])
    module = model.reservoir_
    weights_in = module.input_weights.numpy()
    assert 0.5 < np.mean(weights_in == 0) < 0.9  # input_connectivity 0.3 took effect
    reference = Reservoir(W=module.recurrent_matrix(), Win=weights_in,
                          bias=module.bias.numpy(), lr=0.3)
    np.testing.assert_allclose(model.reservoir_states(lorenz[:1_000]),
                               reference.run(lorenz[:999]), rtol=0, atol=1e-13)


def test_dense_esn_matches_reservoirpy(lorenz):
    pytest.importorskip("reservoirpy")
    from reservoirpy.nodes import Reservoir

    model = small_esn(n_units=60, connectivity=0.5, distribution="uniform",
                      scale=False).fit(lorenz[:600])
    module = model.reservoir_
    assert not module.is_sparse
    reference = Reservoir(W=module.recurrent_matrix(), Win=module.input_weights.numpy(),
                          bias=module.bias.numpy(), lr=1.0)
    np.testing.assert_allclose(model.reservoir_states(lorenz[:600]), reference.run(lorenz[:599]),
                               rtol=0, atol=1e-13)


@pytest.mark.parametrize("orthogonal", ["random", "cycle"])
def test_one_layer_deep_res_esn_is_reservoirpys_es2n(lorenz, orthogonal):
    pytest.importorskip("reservoirpy")
    from reservoirpy.nodes import ES2N

    model = small_deep(n_layers=1, units_per_layer=60, alpha=0.6, beta=0.4,
                       orthogonal=orthogonal, scale=False).fit(lorenz[:600])
    layer = model.reservoir_.layer_matrices(0)
    reference = ES2N(W=layer["recurrent"], Win=layer["input"], bias=layer["bias"],
                     O=layer["orthogonal"], proximity=0.4)
    np.testing.assert_allclose(model.reservoir_states(lorenz[:600]), reference.run(lorenz[:599]),
                               rtol=0, atol=1e-13)


@pytest.mark.parametrize("alpha, beta, orthogonal, leak", [
    (0.0, 1.0, "random", 1.0),     # no residual branch: the plain ESN, any O
    (0.7, 0.3, "identity", 0.3),   # alpha = 1 - a, beta = a, O = I: the leaky ESN
])
def test_one_layer_deep_res_esn_coincides_with_the_leaky_esn(lorenz, alpha, beta, orthogonal,
                                                              leak):
    deep = small_deep(n_layers=1, units_per_layer=40, alpha=alpha, beta=beta,
                      orthogonal=orthogonal, scale=False).fit(lorenz[:600])
    layer = deep.reservoir_.layer_matrices(0)
    esn = small_esn(n_units=40, connectivity=1.0, leak_rate=leak, scale=False).fit(lorenz[:600])
    esn.reservoir_ = LeakyReservoir(layer["recurrent"], layer["input"], layer["bias"], leak)
    np.testing.assert_allclose(esn.reservoir_states(lorenz[:600]),
                               deep.reservoir_states(lorenz[:600]), rtol=0, atol=1e-13)
    # Same states, same readout: the closed loops from a context agree as well, to the
    # round-off that 50 chaotic steps amplify (the ESN's compiled loop and the deep
    # reservoir's torch loop sum in different orders: up to 1e-11 relative here).
    esn.readout_weights_ = deep.readout_weights_
    esn.readout_intercept_ = deep.readout_intercept_
    reference = deep.predict(50, context=lorenz[600:800])
    np.testing.assert_allclose(esn.predict(50, context=lorenz[600:800]), reference, rtol=0,
                               atol=1e-10 * np.abs(reference).max())


def test_nvar_features_readout_and_forecast_match_reservoirpy():
    pytest.importorskip("reservoirpy")
    from reservoirpy.nodes import NVAR as ReservoirpyNVAR
    from reservoirpy.nodes import Ridge

    y = Lorenz63().simulate(700, dt=0.025, transient=500, seed=0)
    delays, stride, order, span = 3, 2, 2, 5
    # Ridge 1 keeps the raw monomials' normal equations at a condition number of ~6e8, where
    # both solvers agree to 4e-10 (at 1e-2, ~6e10, their round-off differs by 8e-8).
    model = NVAR(delays=delays, stride=stride, order=order, ridge=1.0, scale=False).fit(y[:600])
    node = ReservoirpyNVAR(delay=delays, order=order, strides=stride)
    features = node.run(y[:599])[span - 1:]  # reservoirpy's first rows see its zero store
    windows = torch.from_numpy(y[:599]).unfold(0, span, 1).permute(0, 2, 1)
    np.testing.assert_array_equal(model.features(windows).numpy(), features)
    readout = Ridge(ridge=1.0).fit(features, y[span:600] - y[span - 1:599])
    np.testing.assert_allclose(model.readout_weights_, readout.Wout, rtol=0, atol=1e-8)
    np.testing.assert_allclose(model.readout_intercept_, readout.bias.ravel(), rtol=0,
                               atol=1e-8)
    # The closed loop, reservoirpy's node fed its own increments.
    u, state, forecast = y[599], node.run(y[599:600]), []
    for _ in range(20):
        u = u + readout.run(state)[0]
        forecast.append(u)
        state = node.run(u[None])
    np.testing.assert_allclose(model.predict(20, context=y[600 - span:600]),
                               np.array(forecast), rtol=0, atol=1e-8)


def test_nvar_feature_vector_written_out_by_hand():
    # d = 2, k = 2, s = 2, p = 2: the linear part [y_t, y_{t-2}] and its 10 monomials.
    series = np.array([[1.0, 2.0], [3.0, 5.0], [7.0, 11.0], [13.0, 17.0]])
    model = NVAR(delays=2, stride=2, order=2, scale=False).fit(
        np.random.default_rng(0).standard_normal((30, 2)))
    a, b, c, e = 7.0, 11.0, 1.0, 2.0  # y_t = (7, 11) at t = 2, y_{t-2} = (1, 2)
    linear = [a, b, c, e]
    expected = [*linear, a * a, a * b, a * c, a * e, b * b, b * c, b * e, c * c, c * e, e * e]
    phi = model.features(torch.from_numpy(series[None, :3]))
    np.testing.assert_array_equal(phi.numpy()[0], expected)
    assert model.n_output_features_ == 1 + len(expected)


def test_nvar_order_one_adds_nothing_to_the_linear_part(lorenz):
    linear = NVAR(order=0).fit(lorenz[:300])
    first = NVAR(order=1).fit(lorenz[:300])
    assert first.n_output_features_ == linear.n_output_features_ == 1 + 2 * 3
    np.testing.assert_array_equal(first.predict(20), linear.predict(20))


# ---------------------------------------------------------------- workflows


@pytest.mark.parametrize("make", [small_esn, small_deep, small_memory],
                         ids=["ESN", "DeepResESN", "ResRMN"])
def test_dataframes_with_exogenous_inputs_and_save_load(make, lorenz, tmp_path):
    index = pd.date_range("2020-01-01", periods=1_000, freq="h")
    frame = pd.DataFrame(lorenz[:1_000], index=index, columns=["x", "y", "z"])
    drive = pd.DataFrame({"f": np.sin(np.arange(1_000) / 10.0)}, index=index)
    model = make().fit(frame[:800], drive[:800])
    forecast = model.predict(5, X=drive[800:805])
    assert isinstance(forecast, pd.DataFrame) and list(forecast.columns) == ["x", "y", "z"]
    assert forecast.index.equals(index[800:805])
    from_context = model.predict(5, context=frame[600:800], X=drive[600:805])
    assert from_context.index.equals(index[800:805])
    loaded = type(model).load(model.save(tmp_path / "model"))
    pd.testing.assert_frame_equal(loaded.predict(5, X=drive[800:805]), forecast)
    pd.testing.assert_frame_equal(
        loaded.predict(5, context=frame[600:800], X=drive[600:805]), from_context)


@pytest.mark.parametrize("make", [
    lambda: small_esn(n_units=60, leak_rate=0.05),
    lambda: small_deep(alpha=0.99, beta=0.01, orthogonal="cycle"),
    lambda: small_memory(memory_radius=0.99),
], ids=["ESN leak 0.05", "DeepResESN alpha 0.99", "ResRMN gamma 0.99"])
def test_predict_without_context_continues_the_training_series_of_a_slow_reservoir(make,
                                                                                    lorenz):
    # These reservoirs forget their initial state over thousands of steps: rerunning only
    # the last 200 training steps from zero (as predict() did) started the forecast from
    # another state (0.06 of the data's scale off for a leak rate of 0.05 on Mackey-Glass).
    model = make().fit(lorenz[:1_000])
    assert model.forgetting_steps_ is None or model.forgetting_steps_ > 200
    np.testing.assert_allclose(model.predict(30), model.predict(30, context=lorenz[:1_000]),
                               rtol=0, atol=1e-8)


def test_a_fast_reservoir_keeps_a_short_context(lorenz, tmp_path):
    model = small_esn().fit(lorenz[:1_000])
    assert model.forgetting_steps_ == 200 and model.context_y_.shape[0] == 200
    np.testing.assert_allclose(model.predict(30), model.predict(30, context=lorenz[:1_000]),
                               rtol=0, atol=1e-8)
    loaded = ESN.load(model.save(tmp_path / "esn"))
    assert loaded.forgetting_steps_ == 200
    np.testing.assert_array_equal(loaded.predict(30), model.predict(30))


@pytest.mark.parametrize("make", [small_deep, small_memory], ids=["DeepResESN", "ResRMN"])
def test_equal_length_series_fit_as_one_batch_like_one_by_one(make):
    series = [Lorenz63().simulate(300, transient=200, seed=s) for s in range(3)]
    batched = make(scale=False).fit(series)
    # The same sums from each series alone (a length one longer keeps it out of the batch
    # and does not change its samples).
    module = batched.reservoir_
    states = [module(torch.from_numpy(s[None, :-1]))[0][0, 20:] for s in series]
    features = np.concatenate([batched.features(x, x).numpy() for x in states])
    targets = np.concatenate([s[21:] for s in series])
    centred = features - features.mean(0)
    weights = np.linalg.solve(centred.T @ centred + 1e-6 * np.eye(features.shape[1]),
                              centred.T @ (targets - targets.mean(0)))
    fitted = features @ batched.readout_weights_ + batched.readout_intercept_
    reference = (features - features.mean(0)) @ weights + targets.mean(0)
    np.testing.assert_allclose(fitted, reference, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_grid_search_over_radius_and_leak_with_time_splits(lorenz):
    from sklearn.model_selection import GridSearchCV, TimeSeriesSplit

    from tsrnn.forecasting.model_selection import closed_loop_scorer

    scorer = closed_loop_scorer(context=100, horizon=150, n_starts=2, dt=0.01,
                                lyapunov_exponent=0.9056)
    grid = {"spectral_radius": [0.5, 0.9], "leak_rate": [0.3, 1.0]}
    search = GridSearchCV(small_esn(n_units=60), grid, cv=TimeSeriesSplit(2), scoring=scorer,
                          n_jobs=2).fit(lorenz)
    assert len(search.cv_results_["mean_test_score"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    best = small_esn(n_units=60, **search.best_params_)
    assert search.best_estimator_.get_params() == best.get_params()


# ---------------------------------------------------------------- deep and memory reservoirs


def test_per_layer_settings_reach_each_layer_and_its_diagnostics(lorenz):
    model = small_deep(n_layers=3, units_per_layer=20, alpha=[0.1, 0.2, 0.9],
                       beta=[0.9, 0.8, 0.5], orthogonal=["random", "cycle", "identity"],
                       spectral_radius=[0.5, 0.6, 0.9])
    with pytest.warns(UserWarning, match=r"layer 3: ") as record:
        model.fit(lorenz[:400])
    assert "layer 1" not in str(record[0].message) and "layer 2" not in str(record[0].message)
    module = model.reservoir_
    assert module.alpha == [0.1, 0.2, 0.9] and module.beta == [0.9, 0.8, 0.5]
    assert module.orthogonal_kinds == ["random", "cycle", "identity"]
    diagnostics = model.echo_state_diagnostics()
    for l in range(3):
        layer = module.layer_matrices(l)
        jacobian = module.alpha[l] * layer["orthogonal"] + module.beta[l] * layer["recurrent"]
        np.testing.assert_allclose(diagnostics["effective_spectral_radius"][l],
                                   np.abs(np.linalg.eigvals(jacobian)).max(), rtol=1e-12)
    assert diagnostics["effective_spectral_radius"][2] >= 1 > diagnostics[
        "effective_spectral_radius"][:2].max()


def test_readout_on_the_last_layer_sees_its_units_only(lorenz):
    last = small_deep(readout_states="last").fit(lorenz[:400])
    every = small_deep(readout_states="all").fit(lorenz[:400])
    assert last.readout_weights_.shape == (30, 3) and every.readout_weights_.shape == (60, 3)
    states = torch.from_numpy(every.reservoir_states(lorenz[:400]))
    np.testing.assert_array_equal(last.features(states, states[:, :3]).numpy(),
                                  states[:, 30:].numpy())


def test_memory_reservoir_recalls_its_last_inputs_as_documented():
    # gamma = 1, sequences no longer than the ring (the paper's setting): the memory state
    # is an invertible code of the last M_m inputs, and the nonlinear reservoir it feeds
    # still holds them almost linearly.
    module = ResidualMemoryReservoir.random(1, 40, 80, rng=np.random.default_rng(1))
    inputs = np.random.default_rng(3).uniform(-1.0, 1.0, (800, 40, 1))
    states = module(torch.from_numpy(inputs))[0][:, -1].numpy()

    def recall(features, delay):
        design = np.c_[features, np.ones(len(features))]
        weights = np.linalg.lstsq(design[:400], inputs[:400, -1 - delay, 0], rcond=None)[0]
        error = design[400:] @ weights - inputs[400:, -1 - delay, 0]
        return 1.0 - error.var() / inputs[400:, -1 - delay, 0].var()

    for delay in (0, 10, 39):
        assert recall(states[:, :40], delay) > 1 - 1e-9
        assert recall(states[:, 40:], delay) > 0.95


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("make", [small_esn, small_deep, small_memory],
                         ids=["ESN", "DeepResESN", "ResRMN"])
@pytest.mark.parametrize("settings, match", [
    ({"online_readout": "kalman"}, "unknown online_readout 'kalman'"),
    ({"forgetting": 1.5}, "forgetting must lie in"),
    ({"online_learning_rate": 0.0}, "online_learning_rate must lie in"),
])
def test_fit_refuses_bad_online_readout_settings(make, settings, match, lorenz):
    # Checked at fit, not only at the first partial_fit: a typo in a grid fails at once.
    with pytest.raises(ValueError, match=match):
        make(**settings).fit(lorenz[:200])


@pytest.mark.parametrize("make, settings, match", [
    (small_esn, {"spectral_radius": 0.0}, "spectral_radius must be > 0"),
    (small_esn, {"leak_rate": 1.5}, "leak_rate must lie in"),
    (small_esn, {"ridge": -1.0}, "ridge must be >= 0"),
    (small_deep, {"spectral_radius": [0.9, -0.5]}, "spectral_radius must be > 0"),
    (small_deep, {"alpha": [0.1, 0.2, 0.3]}, "alpha has 3 entries"),
    (small_deep, {"orthogonal": "hadamard"}, "unknown orthogonal 'hadamard'"),
    (small_memory, {"memory_radius": 0.0}, "memory_radius must lie in"),
    (small_memory, {"alpha": [0.1]}, "alpha must be one number"),
    (NVAR, {"stride": 0}, "stride must be > 0"),
    (NVAR, {"ridge": float("nan")}, "ridge must be finite"),
])
def test_bad_hyperparameters_give_clear_errors(make, settings, match, lorenz):
    with pytest.raises(ValueError, match=match):
        make(**settings).fit(lorenz[:200])


@pytest.mark.parametrize("make", [small_esn, small_deep, small_memory, NVAR],
                         ids=["ESN", "DeepResESN", "ResRMN", "NVAR"])
def test_bad_data_gives_clear_errors(make, lorenz):
    with pytest.raises(ValueError, match="needs at least"):
        (NVAR(delays=200) if make is NVAR else make(warmup=200)).fit(lorenz[:200])
    broken = lorenz[:200].copy()
    broken[7, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        make().fit(broken)
    model = make().fit(lorenz[:200])
    with pytest.raises(ValueError, match="3 columns"):
        model.predict(3, context=lorenz[:50, :2])


def test_nvar_context_shorter_than_its_span_is_an_error(lorenz):
    model = NVAR(delays=3, stride=4).fit(lorenz[:300])  # span (k - 1) s + 1 = 9
    with pytest.raises(ValueError, match="at least 9 steps, got 8"):
        model.predict(3, context=lorenz[:8])
    assert model.predict(3, context=lorenz[:9]).shape == (3, 3)


def test_nvar_refuses_more_features_than_memory_allows_before_allocating():
    # 64 columns (Kuramoto-Sivashinsky size), k = 2, p = 3: 357,888 features, whose Gram
    # matrix alone would be 954 GiB (numpy's MemoryError before the check).
    series = np.random.default_rng(0).standard_normal((80, 64))
    with pytest.raises(ValueError, match=r"357,888 features.*lower the order"):
        NVAR(order=3).fit(series)
    # Below the limit the count is the one NVAR builds (3 columns: 1 + 6 linear + 56 cubic).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 80 noise rows, cubic features: ill-conditioned
        assert NVAR(order=3).fit(series[:, :3]).n_output_features_ == 63


@pytest.mark.parametrize("chunks", [1, 4])
def test_predict_after_a_stream_continues_it_for_a_slow_reservoir(chunks, lorenz):
    # partial_fit kept the last 200 rows of the stream whatever the reservoir: for a leak
    # rate of 0.05 predict() then started 0.34 away from the stream's continuation.
    model = small_esn(n_units=60, leak_rate=0.05)
    for part in np.array_split(lorenz[:1_000], chunks):
        model.partial_fit(part)
    assert model.forgetting_steps_ is None or model.forgetting_steps_ > 200
    np.testing.assert_allclose(model.predict(30), model.predict(30, context=lorenz[:1_000]),
                               rtol=0, atol=1e-8)
    fast = small_esn()
    for part in np.array_split(lorenz[:1_000], chunks):
        fast.partial_fit(part)
    assert fast.forgetting_steps_ == 200 and fast.context_y_.shape[0] == 200


def test_forgetting_is_measured_in_blocks_with_the_same_result(lorenz, monkeypatch):
    # The three runs go through the reservoir block by block (memory of one block); the
    # blocks must carry the state exactly.
    import tsrnn.reservoir.esn as esn_module

    whole = small_esn(n_units=60, leak_rate=0.2).fit(lorenz[:2_000])
    monkeypatch.setattr(esn_module, "_FORGETTING_BLOCK", 7)
    blocked = small_esn(n_units=60, leak_rate=0.2).fit(lorenz[:2_000])
    assert blocked.forgetting_steps_ == whole.forgetting_steps_ > 200
    np.testing.assert_array_equal(blocked.predict(20), whole.predict(20))


def test_a_stream_keeps_a_bounded_context_for_a_reservoir_that_does_not_forget(
        lorenz, monkeypatch):
    # Measured on everything kept so far until the reservoir has forgotten its start: for
    # one that never does within the stream, that would grow (and be rerun) without end.
    import tsrnn.reservoir.esn as esn_module

    monkeypatch.setattr(esn_module, "_MAX_STREAM_CONTEXT", 500)
    model = small_esn(n_units=60, leak_rate=0.001)
    model.partial_fit(lorenz[:300])
    assert model.forgetting_steps_ is None and model.context_y_.shape[0] == 300
    with pytest.warns(UserWarning, match="has not forgotten its initial state within 600"):
        model.partial_fit(lorenz[300:600])
    assert model.forgetting_steps_ == 500 and model.context_y_.shape[0] == 500
    model.partial_fit(lorenz[600:900])
    assert model.context_y_.shape[0] == 500
