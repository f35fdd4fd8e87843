"""Echo state networks: reservoir recurrence, readout, estimator, and reservoirpy parity."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sparse
import torch
from sklearn.linear_model import Ridge

from tsrnn.analysis import lyapunov_spectrum
from tsrnn.metrics import valid_prediction_time
from tsrnn.reservoir import ESN, LeakyReservoir, LMSReadout, RidgeAccumulator, RLSReadout
from tsrnn.reservoir.matrices import recurrent_matrix, spectral_radius
from tsrnn.systems import Lorenz63


@pytest.fixture(scope="module")
def small_reservoir():
    rng = np.random.default_rng(0)
    W = recurrent_matrix(80, 0.9, 0.1, rng)
    W_in = rng.uniform(-0.5, 0.5, (80, 3))
    b = rng.uniform(-0.2, 0.2, 80)
    return W, W_in, b


@pytest.mark.parametrize("leak", [1.0, 0.3])
@pytest.mark.parametrize("dense", [False, True])
def test_reservoir_states_equal_the_sequential_float64_reference(small_reservoir, leak, dense,
                                                                 reference_states):
    W, W_in, b = small_reservoir
    W = W.toarray() if dense else W
    inputs = np.random.default_rng(1).normal(size=(120, 3))
    module = LeakyReservoir(W, W_in, b, leak)
    states, final = module(torch.from_numpy(inputs)[None])
    W_dense = W if dense else W.toarray()
    expected = reference_states(W_dense, W_in, b, leak, inputs)
    np.testing.assert_allclose(states[0].numpy(), expected, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(final[0].numpy(), states[0, -1].numpy())


def test_batched_reservoir_equals_each_sequence_alone(small_reservoir):
    W, W_in, b = small_reservoir
    module = LeakyReservoir(W, W_in, b, 0.5)
    inputs = torch.from_numpy(np.random.default_rng(2).normal(size=(5, 60, 3)))
    batched, _ = module(inputs)
    for i in range(5):
        alone, _ = module(inputs[i:i + 1])
        np.testing.assert_allclose(batched[i].numpy(), alone[0].numpy(), atol=1e-13)


def test_segmented_run_equals_the_sequential_run(small_reservoir):
    W, W_in, b = small_reservoir
    module = LeakyReservoir(W, W_in, b, 1.0)
    inputs = torch.from_numpy(np.random.default_rng(3).normal(size=(3000, 3)))
    sequential, _ = module(inputs[None])
    segmented = module.run_segmented(inputs, n_segments=8, washout=300)
    assert segmented is not None
    np.testing.assert_allclose(segmented.numpy(), sequential[0].numpy(), atol=1e-12)


def test_segmented_run_refuses_when_the_washout_is_too_short():
    # Spectral radius 1.2 and no input: the state does not forget where it started, so a
    # seam cannot match and the method must decline rather than return wrong states.
    rng = np.random.default_rng(4)
    module = LeakyReservoir(recurrent_matrix(50, 1.2, 0.2, rng), 0.01 * np.ones((50, 1)),
                            np.zeros(50), 1.0)
    inputs = torch.from_numpy(np.sin(np.arange(2000) * 0.1)[:, None])
    assert module.run_segmented(inputs, n_segments=8, washout=5) is None


def test_sparse_recurrent_matrix_has_exactly_the_requested_spectral_radius():
    W = recurrent_matrix(300, 0.85, 0.05, np.random.default_rng(5))
    assert sparse.issparse(W)
    assert np.abs(np.linalg.eigvals(W.toarray())).max() == pytest.approx(0.85, rel=1e-8)
    assert W.nnz == round(0.05 * 300 * 300)


@pytest.mark.parametrize("seed", [7, 19])
def test_spectral_radius_finds_the_largest_of_close_outer_eigenvalues(seed):
    # Random matrices whose outermost eigenvalues lie close together: ARPACK asked for one
    # eigenvalue with 20 vectors (the former setting, and reservoirpy's) converged to a
    # smaller one here, 0.4% and 0.6% below the radius.
    rng = np.random.default_rng(seed).spawn(3)[0]  # as ESN(random_state=seed) draws W
    W = recurrent_matrix(300, 0.9, 0.05, rng)
    assert np.abs(np.linalg.eigvals(W.toarray())).max() == pytest.approx(0.9, rel=1e-9)


def test_dense_circular_law_radius_is_close_for_large_matrices():
    W = recurrent_matrix(800, 0.9, 1.0, np.random.default_rng(6), exact=False)
    # Circular law: the radius is 0.9 up to fluctuations of order n^-1/2 (3.5% here).
    assert spectral_radius(W) == pytest.approx(0.9, rel=0.06)


def test_ridge_accumulator_equals_scikit_learn_ridge_with_intercept():
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(500, 12)), rng.normal(size=(500, 2))
    accumulator = RidgeAccumulator(12, 2)
    for chunk in np.array_split(np.arange(500), 7):  # streaming = one-shot
        accumulator.update(X[chunk], Y[chunk])
    reference = Ridge(alpha=0.3).fit(X, Y)
    for solver in ("cholesky", "svd", "lstsq"):
        weights, intercept = accumulator.solve(0.3, solver)
        np.testing.assert_allclose(weights, reference.coef_.T, atol=1e-10)
        np.testing.assert_allclose(intercept, reference.intercept_, atol=1e-10)


def test_ridge_accumulator_merges_and_round_trips_its_state():
    rng = np.random.default_rng(17)
    X, Y = rng.normal(size=(300, 9)), rng.normal(size=(300, 2))
    first, second, whole = (RidgeAccumulator(9, 2) for _ in range(3))
    first.update(X[:120], Y[:120])
    second.update(X[120:], Y[120:])
    whole.update(X, Y)
    first.merge(second)
    np.testing.assert_allclose(first.gram, X.T @ X, rtol=1e-13)
    np.testing.assert_array_equal(first.gram, first.gram.T)  # symmetric
    np.testing.assert_allclose(first.cross, whole.cross, rtol=1e-13)
    assert first.count == whole.count == 300
    copy = RidgeAccumulator.from_state(first.state())
    np.testing.assert_array_equal(copy.gram, first.gram)
    np.testing.assert_array_equal(copy.solve(0.1)[0], first.solve(0.1)[0])
    with pytest.raises(ValueError, match="merge"):
        first.merge(RidgeAccumulator(9, 3))


def test_rls_converges_to_least_squares_and_lms_reduces_the_error():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(400, 4))
    Y = X @ np.array([[1.0], [-2.0], [0.5], [0.0]]) + 0.3
    rls = RLSReadout(4, 1, forgetting=1.0, regularization=1e-6)
    rls.update(X, Y)
    weights, intercept = rls.coefficients()
    np.testing.assert_allclose(weights[:, 0], [1.0, -2.0, 0.5, 0.0], atol=1e-6)
    assert intercept[0] == pytest.approx(0.3, abs=1e-6)
    lms = LMSReadout(4, 1, learning_rate=0.5)  # normalised LMS: stable for 0 < eta < 2
    before = np.mean((Y - 0) ** 2)
    lms.update(X, Y)
    w, c = lms.coefficients()
    assert np.mean((X @ w + c - Y) ** 2) < 0.05 * before


@pytest.fixture(scope="module")
def lorenz():
    return Lorenz63().simulate(8_000, transient=1_000, seed=0)


@pytest.fixture(scope="module")
def fitted(lorenz):
    return ESN(n_units=400, connectivity=0.05, random_state=0).fit(lorenz[:6_000])


def test_esn_forecasts_lorenz63_for_several_lyapunov_times(fitted, lorenz):
    forecast = fitted.predict(1_000)
    vpt = valid_prediction_time(lorenz[6_000:7_000], forecast, dt=0.01,
                                lyapunov_exponent=0.9056)
    assert vpt > 3.0  # 400 units, 6000 steps; the 1000-unit benchmark reaches 8.4


def test_predict_from_a_context_continues_that_context(fitted, lorenz):
    forecast = fitted.predict(300, context=lorenz[5_000:6_000])
    np.testing.assert_allclose(forecast[:50], lorenz[6_000:6_050], atol=0.05 * lorenz.std())


def test_esn_is_reproducible_and_survives_save_and_load(fitted, lorenz, tmp_path):
    again = ESN(n_units=400, connectivity=0.05, random_state=0).fit(lorenz[:6_000])
    # Same weights bit for bit; the multithreaded BLAS Gram product may sum in another
    # order, which moves the readout by round-off (~1e-13 here).
    np.testing.assert_array_equal(again.reservoir_.input_weights, fitted.reservoir_.input_weights)
    np.testing.assert_allclose(again.predict(100), fitted.predict(100), rtol=0, atol=1e-9)
    path = fitted.save(tmp_path / "esn.pt")
    loaded = ESN.load(path)
    np.testing.assert_array_equal(loaded.predict(100), fitted.predict(100))
    np.testing.assert_array_equal(loaded.reservoir_.recurrent_matrix().toarray(),
                                  fitted.reservoir_.recurrent_matrix().toarray())


def test_several_trajectories_and_readout_options_fit(lorenz):
    model = ESN(n_units=200, connectivity=0.05, readout_input=True, squared_units=True,
                training_noise=1e-3, leak_rate=0.8, random_state=1)
    model.fit([lorenz[:3_000], lorenz[3_000:6_000]])
    assert model.n_training_samples_ == 2 * (3_000 - 1 - 100)
    assert np.isfinite(model.predict(200)).all()


def test_discrete_map_reproduces_the_closed_loop_and_its_tangent(fitted):
    dmap = fitted.as_discrete_map(dt=0.01)
    z = dmap.initial_states(1, 0)
    # The map's y-part iterates like predict's closed loop (in scaled units).
    trajectory = [z]
    for _ in range(20):
        trajectory.append(dmap.step(trajectory[-1]))
    outputs = torch.cat(trajectory)[:, 400:].numpy()
    np.testing.assert_allclose(fitted.y_scaler_.inverse_transform(outputs[1:]),
                               fitted.predict(21)[1:], atol=1e-4)
    # The analytic tangent equals central differences of the step.
    frame = torch.randn((1, dmap.dim, 2), dtype=torch.float64,
                        generator=torch.Generator().manual_seed(0))
    _, pushed = dmap.tangent(z, frame)
    eps = 1e-6
    for j in range(2):
        difference = (dmap.step(z + eps * frame[..., j]) - dmap.step(z - eps * frame[..., j]))
        np.testing.assert_allclose(pushed[..., j].numpy(), difference.numpy() / (2 * eps),
                                   atol=1e-6)


@pytest.mark.parametrize("options", [dict(), dict(readout_input=True, squared_units=True,
                                                    leak_rate=0.7)])
def test_the_tangent_of_a_batch_matches_central_differences(lorenz, options):
    # Several trajectories, several columns, and the frame in either memory layout: the
    # tangent's own layout (N, B, k) returned as a view, or a fresh contiguous (B, N, k).
    model = ESN(n_units=60, connectivity=0.1, random_state=3, **options).fit(lorenz[:1_500])
    dmap = model.as_discrete_map()
    z = dmap.initial_states(3, 0) + 0.1 * torch.randn(
        (3, dmap.dim), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    frame = torch.randn((3, dmap.dim, 4), dtype=torch.float64,
                        generator=torch.Generator().manual_seed(2))
    for _ in range(2):
        stepped, pushed = dmap.tangent(z, frame)
        eps = 1e-6
        expected = torch.stack([dmap.step(z + eps * frame[..., j])
                                - dmap.step(z - eps * frame[..., j]) for j in range(4)], -1)
        torch.testing.assert_close(stepped, dmap.step(z), rtol=0, atol=1e-15)
        torch.testing.assert_close(pushed, expected / (2 * eps), rtol=1e-6, atol=1e-7)
        z, frame = stepped, pushed


def test_lyapunov_exponent_of_a_good_esn_is_close_to_lorenz(fitted):
    spectrum = lyapunov_spectrum(fitted, n_exponents=3, dt=0.01, n_steps=3_000,
                                 transient=500, n_trajectories=4)
    assert 0.5 < spectrum[0] < 1.3 and abs(spectrum[1]) < 0.3


def test_fixed_points_of_a_sparse_esn_are_lorenz_wing_centres():
    # The closed loop of an ESN trained on Lorenz-63 has fixed points at C+- (+-8.485,
    # +-8.485, 27): found by Newton's method with the map's exact tangent, through the
    # sparse reservoir (whose scipy product autodiff cannot differentiate).
    from tsrnn.analysis import fixed_points

    y = Lorenz63().simulate(5_000, transient=200, seed=0)
    model = ESN(n_units=100, connectivity=0.1, random_state=0, ridge=1e-4).fit(y)
    assert model.reservoir_.is_sparse
    points = fixed_points(model, n_initial=64, max_iterations=1_000)
    step = model.as_discrete_map().step
    centres = []
    for point in points:
        location = torch.as_tensor(point.location)[None]
        np.testing.assert_allclose(step(location)[0].numpy(), point.location, atol=1e-8)
        centres.append(model.y_scaler_.inverse_transform(point.location[None, 100:])[0])
    for sign in (1.0, -1.0):
        target = np.array([sign * 8.485, sign * 8.485, 27.0])
        assert min(np.linalg.norm(c - target) for c in centres) < 0.3


@pytest.mark.parametrize(("params", "match"), [
    (dict(spectral_radius=0.0), "spectral_radius"),
    (dict(leak_rate=0.0), "leak_rate"),
    (dict(leak_rate=1.5), "leak_rate"),
    (dict(ridge=-1.0), "ridge"),
    (dict(solver="qr"), "solver"),
    (dict(connectivity=0.0), "connectivity"),
])
def test_bad_hyperparameters_are_refused(params, match, lorenz):
    with pytest.raises(ValueError, match=match):
        ESN(n_units=50, **params).fit(lorenz[:500])


def test_series_shorter_than_the_warmup_is_refused(lorenz):
    with pytest.raises(ValueError, match="at least"):
        ESN(n_units=50, warmup=100).fit(lorenz[:50])


def test_nan_in_the_data_is_refused(lorenz):
    data = lorenz[:500].copy()
    data[10, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ESN(n_units=50).fit(data)


def test_short_context_warns(fitted, lorenz):
    needed = fitted.settling_steps_
    assert 2 <= needed <= 200
    with pytest.warns(UserWarning, match=f"needs about {needed} to forget"):
        fitted.predict(10, context=lorenz[:needed - 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted.predict(10, context=lorenz[:needed])


def test_a_context_too_short_for_a_slow_reservoir_warns_and_is_what_settling_measures(lorenz):
    """A leak rate of 0.05 forgets its start slowly: a 60-step context (above the old floor
    of min(warmup, 50)) forecast its first step 9 data units off, with no warning."""
    model = ESN(n_units=200, leak_rate=0.05, connectivity=0.05, random_state=0).fit(
        lorenz[:2_500])
    needed = model.settling_steps_
    assert needed > 100
    with pytest.warns(UserWarning, match="depend on the initial state"):
        short = model.predict(5, context=lorenz[2_440:2_500])
    settled = model.predict(5, context=lorenz[:2_500])
    enough = model.predict(5, context=lorenz[2_500 - needed:2_500])
    # The settling length is what a context needs: its forecast is within the tolerance's
    # reach of the fully settled one, the 60-step one far from it.
    assert np.abs(enough[0] - settled[0]).max() < 1e-2
    assert np.abs(short[0] - settled[0]).max() > 0.5
    # Whatever warmup is (0 here): one row of context is too short.
    quick = ESN(n_units=100, connectivity=0.05, warmup=0, random_state=0).fit(lorenz[:1_000])
    with pytest.warns(UserWarning, match="to forget its zero initial state"):
        quick.predict(5, context=lorenz[999:1_000])


def test_large_spectral_radius_warns(lorenz):
    with pytest.warns(UserWarning, match="echo state property"):
        # connectivity 0.2: at the default 0.02 a 50-unit W has 50 nonzeros and is
        # often nilpotent (radius 0), which is refused.
        ESN(n_units=50, spectral_radius=2.0, connectivity=0.2, ridge=1e-2).fit(lorenz[:500])


def exact_ridge(features, targets, ridge):
    """Ridge with an unpenalised intercept from centred data in extended precision (numpy's
    longdouble), refined once: the reference both libraries' float64 sums approximate."""
    f, t = features.astype(np.longdouble), targets.astype(np.longdouble)
    mean_f, mean_t = f.mean(0), t.mean(0)
    centred_f, centred_t = f - mean_f, t - mean_t
    gram = centred_f.T @ centred_f
    gram[np.diag_indices_from(gram)] += ridge
    cross = centred_f.T @ centred_t
    weights = np.linalg.solve(gram.astype(np.float64), cross.astype(np.float64))
    residual = cross - gram @ weights.astype(np.longdouble)
    weights = weights + np.linalg.solve(gram.astype(np.float64), residual.astype(np.float64))
    intercept = mean_t - mean_f @ weights.astype(np.longdouble)
    return weights, intercept.astype(np.float64)


def test_states_and_predictions_match_reservoirpy_with_identical_weights(lorenz):
    pytest.importorskip("reservoirpy")
    from reservoirpy.nodes import Reservoir
    from reservoirpy.nodes import Ridge as RpyRidge

    model = ESN(n_units=150, connectivity=0.05, ridge=1e-2, warmup=50, scale=False,
                random_state=3).fit(lorenz[:2_000])
    module = model.reservoir_
    reservoir = Reservoir(W=module.recurrent_matrix(), Win=module.input_weights.numpy(),
                          bias=module.bias.numpy(), lr=1.0)
    states = reservoir.run(lorenz[:1_999])
    ours, _ = module(torch.from_numpy(lorenz[:1_999])[None])
    np.testing.assert_allclose(ours[0].numpy(), states, rtol=0, atol=1e-13)

    # Ridge 1e-2: the same solution to round-off. The regularised Gram matrix still has a
    # condition number of ~2e6 here, so states that differ by round-off (~1e-16: the compiled
    # kernel sums in another order and its tanh is within 3 ulp of numpy's) move the weights
    # (|w| up to ~10) by ~1e-9: perturbing reservoirpy's own states by 1e-16 moves its own
    # weights by 9e-10.
    # Both are checked against the exact solution (centred sums in extended precision, one
    # step of iterative refinement): tsrnn's is within 5e-9 of it, reservoirpy's own
    # round-off is larger (1.4e-8 here: it centres the raw sums), so the two agree to the sum.
    readout = RpyRidge(ridge=1e-2).fit(states[50:], lorenz[51:2_000])
    exact_weights, exact_intercept = exact_ridge(states[50:], lorenz[51:2_000], 1e-2)
    np.testing.assert_allclose(model.readout_weights_, exact_weights, rtol=0, atol=5e-9)
    np.testing.assert_allclose(model.readout_intercept_, exact_intercept, rtol=0, atol=5e-9)
    np.testing.assert_allclose(readout.Wout, exact_weights, rtol=0, atol=3e-8)
    np.testing.assert_allclose(model.readout_weights_, readout.Wout, rtol=0, atol=3.5e-8)
    np.testing.assert_allclose(model.readout_intercept_, readout.bias, rtol=0, atol=1e-7)
    # At ridge 1e-6 the Gram matrix is so ill-conditioned that both solvers' weights differ
    # by ~1e-5 from round-off alone; the fitted values still agree closely.
    tight = ESN(n_units=150, connectivity=0.05, ridge=1e-6, warmup=50, scale=False,
                random_state=3).fit(lorenz[:2_000])
    tight_readout = RpyRidge(ridge=1e-6).fit(states[50:], lorenz[51:2_000])
    np.testing.assert_allclose(states[50:] @ tight.readout_weights_ + tight.readout_intercept_,
                               tight_readout.run(states[50:]), atol=1e-6)

    # Identical readout weights: the closed loop from the end of the training data agrees,
    # reservoirpy driven through its own API.
    model.readout_weights_ = np.array(readout.Wout)
    model.readout_intercept_ = np.array(readout.bias)
    u = readout.run(states[-1:])[0]
    generated = [u]
    for _ in range(49):
        u = readout.run(reservoir.run(u[None]))[0]
        generated.append(u)
    np.testing.assert_allclose(model.predict(50, context=lorenz[:1_999]), np.array(generated),
                               rtol=0, atol=1e-10)


def test_echo_state_diagnostics_match_dense_linear_algebra(fitted):
    diagnostics = fitted.echo_state_diagnostics()
    W = fitted.reservoir_.recurrent_matrix().toarray()
    assert diagnostics["spectral_radius"] == pytest.approx(0.9, rel=1e-8)
    assert diagnostics["effective_spectral_radius"] == pytest.approx(0.9, rel=1e-8)  # a = 1
    assert diagnostics["contraction_bound"] == pytest.approx(np.linalg.norm(W, 2), rel=1e-6)
    leaky = ESN(n_units=100, connectivity=0.1, leak_rate=0.3, random_state=0).fit(
        Lorenz63().simulate(500))
    W = leaky.reservoir_.recurrent_matrix().toarray()
    expected = np.abs(np.linalg.eigvals(0.7 * np.eye(100) + 0.3 * W)).max()
    assert leaky.echo_state_diagnostics()["effective_spectral_radius"] == pytest.approx(
        expected, rel=1e-8)


def test_partial_fit_on_chunks_equals_fit_on_the_whole_stream(lorenz):
    # Without standardisation (which partial_fit takes from the first chunk), the exact
    # ridge readout sees the same pairs, including those across chunk boundaries.
    options = dict(n_units=150, connectivity=0.05, random_state=0, scale=False, ridge=1e-3)
    whole = ESN(**options).fit(lorenz[:3_001])
    chunked = ESN(**options)
    for chunk in np.array_split(lorenz[:3_001], 5):
        chunked.partial_fit(chunk)
    assert chunked.n_training_samples_ == whole.n_training_samples_
    np.testing.assert_allclose(chunked.readout_weights_, whole.readout_weights_, atol=1e-5)
    np.testing.assert_allclose(chunked.predict(30), whole.predict(30), atol=1e-6)


@pytest.mark.parametrize("readout", ["rls", "lms"])
def test_online_readouts_learn_a_usable_model(readout, lorenz, tmp_path):
    model = ESN(n_units=60, connectivity=0.2, random_state=0, online_readout=readout)
    for chunk in np.array_split(lorenz[:1_500], 3):
        model.partial_fit(chunk)
    # One-step predictions from true contexts, against the series' own spread (what a model
    # that learned nothing would err by); RLS gets ~0.3% of it, normalised LMS ~37% (its
    # convergence is slow on the strongly correlated features of a reservoir).
    errors = [np.abs(model.predict(1, context=lorenz[s - 200:s])[0] - lorenz[s]).mean()
              for s in range(1_600, 2_000, 50)]
    spread = np.abs(lorenz[1_600:2_000] - lorenz[:1_500].mean(0)).mean()
    assert np.mean(errors) < (0.01 if readout == "rls" else 0.5) * spread
    loaded = ESN.load(model.save(tmp_path / "online.pt"))
    loaded.partial_fit(lorenz[1_500:1_600])  # learning resumes after a reload
    assert np.isfinite(loaded.predict(10)).all()


def test_rls_readout_starts_from_the_ridge_penalty(lorenz):
    # Without forgetting, RLS with P_0 = I / ridge solves the ridge problem of the samples
    # seen, the intercept penalised too: min ||[Phi, 1] w - Y||^2 + ridge ||w||^2.
    options = dict(n_units=40, connectivity=0.2, random_state=0, scale=False, warmup=20)
    weights = {}
    for ridge in (1e-1, 10.0):
        rls = ESN(online_readout="rls", ridge=ridge, **options)
        sums = ESN(online_readout="ridge", ridge=ridge, **options)
        for chunk in np.array_split(lorenz[:600], 3):
            rls.partial_fit(chunk)
            sums.partial_fit(chunk)
        moments = RidgeAccumulator.from_state(sums.online_state_)
        gram = np.block([[moments.gram, moments.feature_sum[:, None]],
                         [moments.feature_sum[None], np.array([[moments.count]])]])
        cross = np.vstack([moments.cross, moments.target_sum[None]])
        solution = np.linalg.solve(gram + ridge * np.eye(gram.shape[0]), cross)
        np.testing.assert_allclose(rls.readout_weights_, solution[:-1], rtol=1e-6,
                                   atol=1e-8 * np.abs(solution).max())
        np.testing.assert_allclose(rls.readout_intercept_, solution[-1], rtol=1e-6,
                                   atol=1e-8 * np.abs(solution).max())
        weights[ridge] = rls.readout_weights_
    assert np.abs(weights[1e-1] - weights[10.0]).max() > 1e-3  # the penalty is read
    with pytest.raises(ValueError, match="ridge > 0"):
        ESN(online_readout="rls", ridge=0.0, **options).partial_fit(lorenz[:100])


def test_partial_fit_adds_the_training_noise_that_fit_adds(lorenz, tmp_path):
    # The noise comes from fit's generator, its state carried across chunks (and saves): a
    # stream in chunks learns what fit learns from the series in one piece.
    options = dict(n_units=60, connectivity=0.1, random_state=3, scale=False, ridge=1e-4,
                   training_noise=0.2)
    whole = ESN(**options).fit(lorenz[:1_201])
    chunked = ESN(**options)
    chunks = np.array_split(lorenz[:1_201], 4)
    for chunk in chunks[:2]:
        chunked.partial_fit(chunk)
    chunked = ESN.load(chunked.save(tmp_path / "stream.pt"))
    for chunk in chunks[2:]:
        chunked.partial_fit(chunk)
    np.testing.assert_allclose(chunked.readout_weights_, whole.readout_weights_, rtol=1e-7,
                               atol=1e-9 * np.abs(whole.readout_weights_).max())
    quiet = ESN(**{**options, "training_noise": 0.0})
    for chunk in chunks:
        quiet.partial_fit(chunk)
    assert np.abs(quiet.readout_weights_ - whole.readout_weights_).max() > 1e-3


def test_partial_fit_refuses_changed_columns_and_lists(lorenz):
    model = ESN(n_units=30, random_state=0).partial_fit(lorenz[:300])
    with pytest.raises(ValueError, match="columns"):
        model.partial_fit(lorenz[300:400, :2])
    with pytest.raises(ValueError, match="one chunk of one stream"):
        ESN(n_units=30).partial_fit([lorenz[:100], lorenz[100:200]])
    with pytest.raises(ValueError, match="online_readout"):
        ESN(n_units=30, online_readout="sgd").partial_fit(lorenz[:100])


def test_equal_length_trajectories_run_as_one_batch_with_the_same_result(lorenz, monkeypatch):
    import tsrnn.reservoir.esn as esn_module

    options = dict(n_units=100, connectivity=0.1, random_state=0, ridge=1e-3)
    pieces = [lorenz[:1_000], lorenz[1_000:2_000], lorenz[2_000:3_000]]
    batched = ESN(**options).fit(pieces)
    monkeypatch.setattr(esn_module, "_BATCH", 1)  # one trajectory at a time
    alone = ESN(**options).fit(pieces)
    np.testing.assert_allclose(batched.readout_weights_, alone.readout_weights_, atol=1e-8)
    assert batched.n_training_samples_ == 3 * (1_000 - 1 - 100)


def test_reservoir_states_are_the_teacher_forced_states(fitted, lorenz):
    states = fitted.reservoir_states(lorenz[:500])
    u = torch.from_numpy(fitted.y_scaler_.transform(lorenz[:499]))[None]
    expected, _ = fitted.reservoir_(u)
    assert states.shape == (499, 400)
    np.testing.assert_allclose(states, expected[0].numpy(), atol=1e-14)
    with pytest.raises(ValueError, match="columns"):
        fitted.reservoir_states(lorenz[:500, :2])


def test_a_whole_float_random_state_seeds_as_the_int():
    y = np.c_[np.sin(np.arange(400) * 0.1), np.cos(np.arange(400) * 0.13)]
    settings = dict(n_units=60, connectivity=0.2, warmup=10)
    np.testing.assert_array_equal(ESN(random_state=3.0, **settings).fit(y).predict(20),
                                  ESN(random_state=3, **settings).fit(y).predict(20))


@pytest.mark.parametrize("first", [True, False])
def test_a_failed_partial_fit_leaves_the_model_as_it_was(monkeypatch, first):
    # The failure comes after the readout has learned the chunk (its arrays updated in
    # place): the stream must still be where it was, or the chunk would count twice.
    y = np.c_[np.sin(np.arange(600) * 0.1), np.cos(np.arange(600) * 0.13)]
    model = ESN(n_units=60, connectivity=0.2, warmup=10, random_state=0,
                online_readout="rls")
    if not first:
        model.partial_fit(y[:300])
    before = {name: value for name, value in vars(model).items() if name.endswith("_")}
    saved = {name: np.array(value, copy=True)
             for name, value in before.get("online_state_", {}).items()}

    def failing(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ESN, "_store_context", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        model.partial_fit(y[300:])
    after = {name: value for name, value in vars(model).items() if name.endswith("_")}
    assert after.keys() == before.keys()
    assert all(after[name] is before[name] for name in before)
    for name, value in saved.items():
        np.testing.assert_array_equal(model.online_state_[name], value)
    monkeypatch.undo()
    if not first:
        reference = ESN(n_units=60, connectivity=0.2, warmup=10, random_state=0,
                        online_readout="rls").partial_fit(y[:300]).partial_fit(y[300:])
        np.testing.assert_array_equal(model.partial_fit(y[300:]).readout_weights_,
                                      reference.readout_weights_)
