"""Deep residual ESN and residual reservoir memory network: recurrences, weights, estimators."""

import numpy as np
import pytest
import torch

from tsrnn.analysis import lyapunov_spectrum
from tsrnn.metrics import valid_prediction_time
from tsrnn.reservoir import DeepResESN, DeepResidualReservoir, ResidualMemoryReservoir, ResRMN
from tsrnn.reservoir.deep import cycle_matrix, orthogonal_matrix, residual_recurrent_matrix
from tsrnn.systems import Lorenz63

KINDS = ("random", "cycle", "identity")


def deep_reference(module: DeepResidualReservoir, inputs: np.ndarray) -> np.ndarray:
    """The DeepResESN recurrence written out in float64 numpy, one layer and step at a time."""
    layers = [module.layer_matrices(l) for l in range(module.n_layers)]
    h = [np.zeros(module.units_per_layer) for _ in layers]
    out = []
    for u in inputs:
        x = u
        for l, w in enumerate(layers):
            h[l] = (module.alpha[l] * w["orthogonal"] @ h[l] + module.beta[l]
                    * np.tanh(w["recurrent"] @ h[l] + w["input"] @ x + w["bias"]))
            x = h[l]
        out.append(np.concatenate(h))
    return np.array(out)


def memory_reference(module: ResidualMemoryReservoir, inputs: np.ndarray) -> np.ndarray:
    """The ResRMN recurrence in float64 numpy, with C the explicit cyclic-shift matrix."""
    w = module.matrices()
    shift = module.memory_radius * cycle_matrix(module.n_memory_units)
    m, h, out = np.zeros(module.n_memory_units), np.zeros(module.n_nonlinear_units), []
    for u in inputs:
        m = shift @ m + w["memory_input"] @ u
        h = module.alpha * w["orthogonal"] @ h + module.beta * np.tanh(
            w["recurrent"] @ h + w["memory"] @ m + w["input"] @ u + w["bias"])
        out.append(np.concatenate([m, h]))
    return np.array(out)


def small_deep(orthogonal, seed=0) -> DeepResidualReservoir:
    return DeepResidualReservoir.random(
        2, 3, 30, rng=np.random.default_rng(seed), orthogonal=orthogonal,
        alpha=[0.3, 0.6, 0.9], beta=[0.7, 0.4, 0.1], spectral_radius=[0.9, 0.8, 1.0],
        input_scaling=0.5, inter_scaling=[1.0, 0.5], bias_scaling=0.2)


def small_memory(orthogonal="random", memory_radius=1.0, seed=0) -> ResidualMemoryReservoir:
    return ResidualMemoryReservoir.random(
        2, 12, 25, rng=np.random.default_rng(seed), orthogonal=orthogonal, alpha=0.6,
        beta=0.4, memory_scaling=0.3, input_scaling=0.5, memory_radius=memory_radius)


# ---------------------------------------------------------------------- recurrences


@pytest.mark.parametrize("orthogonal", [*KINDS, list(KINDS)])
def test_deep_reservoir_equals_the_float64_numpy_reference(orthogonal):
    module = small_deep(orthogonal)
    inputs = np.random.default_rng(1).normal(size=(80, 2))
    states, final = module(torch.from_numpy(inputs)[None])
    # Same operations in another order: round-off only.
    np.testing.assert_allclose(states[0].numpy(), deep_reference(module, inputs), atol=1e-13)
    np.testing.assert_array_equal(final[0].numpy(), states[0, -1].numpy())


@pytest.mark.parametrize("orthogonal", KINDS)
@pytest.mark.parametrize("memory_radius", [1.0, 0.8])
def test_memory_reservoir_equals_the_float64_numpy_reference(orthogonal, memory_radius):
    module = small_memory(orthogonal, memory_radius)
    inputs = np.random.default_rng(2).normal(size=(60, 2))  # 5 turns of the 12-unit ring
    states, _ = module(torch.from_numpy(inputs)[None])
    np.testing.assert_allclose(states[0].numpy(), memory_reference(module, inputs), atol=1e-12)


@pytest.mark.parametrize("module", [small_deep("random"), small_deep(list(KINDS)),
                                    small_memory("cycle")], ids=["deep", "mixed", "memory"])
def test_batch_equals_single_sequences_and_step_equals_forward(module):
    # B > 1 runs in torch, B = 1 in numpy: this also checks the two back ends agree.
    rng = np.random.default_rng(3)
    inputs = torch.from_numpy(rng.normal(size=(4, 40, 2)))
    start = torch.from_numpy(rng.normal(scale=0.3, size=(4, module.n_units)))
    batched, _ = module(inputs, start)
    for i in range(4):
        alone, _ = module(inputs[i:i + 1], start[i:i + 1])
        np.testing.assert_allclose(batched[i].numpy(), alone[0].numpy(), atol=1e-13)
    state, stepped = start, []
    for t in range(40):
        state = module.step(inputs[:, t], state)
        stepped.append(state)
    np.testing.assert_allclose(torch.stack(stepped, 1).numpy(), batched.numpy(), atol=1e-13)


def test_forward_resumes_from_its_final_state():
    module = small_deep("cycle")
    inputs = torch.from_numpy(np.random.default_rng(4).normal(size=(1, 60, 2)))
    whole, _ = module(inputs)
    first, state = module(inputs[:, :25])
    second, _ = module(inputs[:, 25:], state)
    np.testing.assert_allclose(torch.cat([first, second], 1).numpy(), whole.numpy(), atol=1e-14)


def test_memory_reservoir_is_exactly_a_delay_line():
    # One input unit (V_m = e_0) and C the cyclic shift: m_t[k] = u_{t-k} for k < M, and once
    # the ring has turned, inputs M steps apart add up (C^M = I).
    n_memory, n_units = 10, 5
    rng = np.random.default_rng(5)
    first_unit = np.zeros((n_memory, 1))
    first_unit[0, 0] = 1.0
    module = ResidualMemoryReservoir(
        first_unit, residual_recurrent_matrix(n_units, 0.9, rng), rng.uniform(-1, 1, (5, 10)),
        rng.uniform(-1, 1, (n_units, 1)), np.zeros(n_units), np.eye(n_units), 0.5, 0.5)
    u = rng.uniform(-0.8, 0.8, 25)
    states, _ = module(torch.from_numpy(u)[None, :, None])
    memory = states[0, :, :n_memory].numpy()
    for t in range(n_memory):
        np.testing.assert_array_equal(memory[t, :t + 1], u[t::-1])  # exact: only copies
        np.testing.assert_array_equal(memory[t, t + 1:], 0.0)
    for t in range(n_memory, 25):
        expected = [u[t - k::-n_memory].sum() for k in range(n_memory)]
        np.testing.assert_allclose(memory[t], expected, rtol=0, atol=1e-15)


def test_memory_with_dense_input_weights_is_the_delayed_sum_of_shifted_codes():
    # m_t = sum_j C^j V u_{t-j}: each delay j has its own fixed code C^j V.
    module = small_memory(memory_radius=0.9)
    inputs = np.random.default_rng(6).normal(size=(12, 2))
    memory = module(torch.from_numpy(inputs)[None])[0][0, :, :12].numpy()
    v, shift = module.matrices()["memory_input"], 0.9 * cycle_matrix(12)
    expected = sum(np.linalg.matrix_power(shift, j) @ v @ inputs[11 - j] for j in range(12))
    np.testing.assert_allclose(memory[11], expected, atol=1e-14)


# ---------------------------------------------------------------------- weights


def test_cycle_matrix_is_the_orthogonal_cyclic_shift():
    n = 7
    c = cycle_matrix(n)
    h = np.arange(n, dtype=float)
    np.testing.assert_array_equal(c @ h, np.roll(h, 1))  # (C h)_i = h_{i-1}
    assert c[0, n - 1] == 1 and np.all(np.diag(c, -1) == 1) and c.sum() == n
    np.testing.assert_array_equal(c.T @ c, np.eye(n))
    np.testing.assert_array_equal(np.linalg.matrix_power(c, n), np.eye(n))
    # Eigenvalues: the n-th roots of unity, so the radius is exactly 1.
    np.testing.assert_allclose(np.abs(np.linalg.eigvals(c)), 1.0, atol=1e-12)


def test_random_orthogonal_matrix_is_orthogonal_with_sign_fixed_qr():
    rng = np.random.default_rng(7)
    q = orthogonal_matrix("random", 60, rng)
    np.testing.assert_allclose(q.T @ q, np.eye(60), atol=1e-13)
    # Q is the QR factor of the uniform draw with diag(R) > 0, hence unique and seeded.
    draw = np.random.default_rng(7).uniform(-1.0, 1.0, (60, 60))
    r = q.T @ draw
    np.testing.assert_allclose(np.tril(r, -1), 0.0, atol=1e-12)
    assert np.all(np.diag(r) > 0)
    np.testing.assert_array_equal(orthogonal_matrix("random", 60, np.random.default_rng(7)), q)
    np.testing.assert_array_equal(orthogonal_matrix("identity", 4, rng), np.eye(4))


def test_recurrent_matrix_radius_follows_the_circular_law():
    # U(-1, 1) * rho sqrt(3) / sqrt(M) has entries of variance rho^2 / M: its eigenvalues
    # fill the disc of radius rho. At M = 500 the largest modulus overshoots the edge by
    # about sqrt(log(M) / 4M) ~ 3% (Rider 2003, for Gaussian entries), so 6% is the
    # tolerance; the bulk (the mean squared modulus, rho^2 / 2 for the uniform disc) is tight.
    for seed in range(2):
        w = residual_recurrent_matrix(500, 0.9, np.random.default_rng(seed))
        assert np.abs(w).max() <= 0.9 * np.sqrt(3.0 / 500) + 1e-15
        moduli = np.abs(np.linalg.eigvals(w))
        assert moduli.max() == pytest.approx(0.9, rel=0.06)
        assert np.mean(moduli ** 2) == pytest.approx(0.9 ** 2 / 2, rel=0.03)


# ---------------------------------------------------------------------- estimators


@pytest.fixture(scope="module")
def lorenz():
    return Lorenz63().simulate(8_000, transient=1_000, seed=0)


@pytest.fixture(scope="module")
def deep_fitted(lorenz):
    return DeepResESN(n_layers=2, units_per_layer=150, random_state=0).fit(lorenz[:6_000])


@pytest.fixture(scope="module")
def memory_fitted(lorenz):
    # A fading memory (gamma 0.9): with gamma = 1 a 6000-step series wraps the ring 30 times.
    return ResRMN(n_units=150, n_memory_units=150, memory_radius=0.9, memory_scaling=0.02,
                  alpha=0.1, beta=0.9, random_state=0).fit(lorenz[:6_000])


@pytest.mark.parametrize("name", ["deep_fitted", "memory_fitted"])
def test_estimators_forecast_lorenz63(name, lorenz, request):
    model = request.getfixturevalue(name)
    forecast = model.predict(1_000)
    assert np.isfinite(forecast).all()
    vpt = valid_prediction_time(lorenz[6_000:7_000], forecast, dt=0.01,
                                lyapunov_exponent=0.9056)
    # 300 units, 6000 steps: 8.7 (DeepResESN) and 6.5 (ResRMN) Lyapunov times here; the
    # margin absorbs round-off of other BLAS libraries, amplified by the chaos.
    assert vpt > 4.0


@pytest.mark.parametrize("name", ["deep_fitted", "memory_fitted"])
def test_estimators_are_reproducible_and_survive_save_and_load(name, lorenz, request,
                                                               tmp_path):
    model = request.getfixturevalue(name)
    again = type(model)(**model.get_params()).fit(lorenz[:6_000])
    for key, value in model.reservoir_.state_dict().items():
        np.testing.assert_array_equal(again.reservoir_.state_dict()[key], value)
    path = model.save(tmp_path / "model.pt")
    loaded = type(model).load(path)
    np.testing.assert_array_equal(loaded.predict(100), model.predict(100))
    for key, value in model.reservoir_.state_dict().items():
        np.testing.assert_array_equal(loaded.reservoir_.state_dict()[key], value)


@pytest.mark.parametrize("make", [
    lambda: DeepResESN(n_layers=3, units_per_layer=30, orthogonal=["random", "cycle",
                       "identity"], squared_units=True, readout_input=True, random_state=0),
    lambda: DeepResESN(n_layers=2, units_per_layer=30, readout_states="last", random_state=1),
    lambda: ResRMN(n_units=30, n_memory_units=20, memory_radius=0.9, readout_states="all",
                   readout_input=True, squared_units=True, random_state=0),
    lambda: ResRMN(n_units=30, n_memory_units=20, orthogonal="cycle", random_state=2),
    lambda: DeepResESN(n_layers=2, units_per_layer=30, dtype="float32", random_state=0),
])
@pytest.mark.parametrize("exogenous", [False, True])
def test_numpy_closed_loop_equals_the_differentiable_step_loop(make, exogenous, lorenz):
    """The CPU closed loop (numpy views, the reservoir's own _advance) against the generic
    loop through ``reservoir.step`` and the torch readout that any device runs."""
    from tsrnn.reservoir.esn import ESN

    y, x = lorenz[:1_200, :2], lorenz[:1_300, 2:]
    model = make().fit(y, X=x[:1_200]) if exogenous else make().fit(lorenz[:1_200])
    context = y[-300:] if exogenous else lorenz[900:1_200]
    future = x[900:1_300] if exogenous else None
    first, state = (torch.as_tensor(v, dtype=model.dtype_) for v in
                    (np.asarray(context[-1], dtype=float), model.reservoir_.n_units * [0.1]))
    future_x = None if future is None else np.asarray(future[-99:], dtype=float)
    fast = model._closed_loop(first, state, 100, future_x)
    generic = ESN._closed_loop(model, first, state, 100, future_x)
    assert fast.shape == generic.shape == (100, first.shape[0])
    # Chaotic loop over 100 steps: equal to round-off amplified by the dynamics.
    tolerance = 1e-4 if model.dtype_ == torch.float32 else 1e-9
    np.testing.assert_allclose(fast, generic, rtol=tolerance, atol=tolerance)
    assert np.abs(fast[1:] - fast[:-1]).max() > 1e-3  # a real trajectory, not a constant


@pytest.mark.parametrize("memory_radius", [1.0, 0.95])
def test_resrmn_predict_continues_the_training_series(memory_radius, lorenz, monkeypatch):
    """predict() reruns the kept end of the training data: all of it for a lossless memory
    (whose forgetting is not measured: it never comes), and for gamma < 1 at least the
    steps the memory needs to forget its start to 1e-8 (ceil(log 1e-8 / log 0.95) = 360)."""
    import warnings

    from tsrnn.reservoir.esn import ESN

    calls = []
    measure = ESN._measure_forgetting
    monkeypatch.setattr(ESN, "_measure_forgetting",
                        lambda self, y, x: calls.append(len(y)) or measure(self, y, x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gamma = 1 on a series longer than the ring
        model = ResRMN(n_units=60, n_memory_units=40, memory_radius=memory_radius,
                       random_state=0).fit(lorenz[:1_500])
    if memory_radius == 1.0:
        assert calls == [] and model.forgetting_steps_ is None
        assert model.context_y_.shape[0] == 1_500
    else:
        assert calls == [1_500] and model.forgetting_steps_ >= 360
        assert model.context_y_.shape[0] == model.forgetting_steps_
    np.testing.assert_allclose(model.predict(30), model.predict(30, context=lorenz[:1_500]),
                               rtol=0, atol=1e-8)


@pytest.mark.parametrize("make", [
    lambda: DeepResESN(n_layers=3, units_per_layer=40, random_state=0),
    lambda: DeepResESN(n_layers=2, units_per_layer=40, alpha=0.8, beta=0.2, random_state=1),
    lambda: ResRMN(n_units=40, n_memory_units=30, memory_radius=0.9, random_state=0),
    lambda: ResRMN(n_units=40, n_memory_units=30, orthogonal="cycle", random_state=1),
])
def test_long_series_run_as_parallel_segments_equal_the_sequential_run(make, lorenz,
                                                                       monkeypatch):
    """Teacher-forced states of a long series come from parallel time segments, their
    washout set by the reservoir's slowest effective radius (ResRMN: its nonlinear layer's,
    the memory being computed exactly first, even when it never forgets); they equal the
    sequential run."""
    import warnings

    from tsrnn.reservoir.deep import DeepResidualReservoir, ResidualMemoryReservoir

    calls = []
    for cls in (DeepResidualReservoir, ResidualMemoryReservoir):
        monkeypatch.setattr(cls, "run_segmented", lambda self, *a, _run=cls.run_segmented,
                            **k: calls.append(a[1:]) or _run(self, *a, **k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gamma = 1 on a series longer than the ring
        model = make().fit(lorenz[:1_000])
    states = model.reservoir_states(lorenz)
    assert calls, "the 8000-step series was run sequentially"
    n_segments, washout = calls[0]
    rate, depth = model._forgetting()
    assert n_segments >= 4 and washout >= 200
    assert (depth - 1) * np.log(washout) + washout * np.log(rate) <= np.log(1e-16)
    u = torch.as_tensor(model.y_scaler_.transform(lorenz)[:-1])[None]
    sequential, _ = model.reservoir_(u)
    np.testing.assert_allclose(states, sequential[0].numpy(), rtol=0, atol=1e-11)
    # From a given state (a block after the first): the first segment starts there.
    start = torch.as_tensor(np.random.default_rng(3).uniform(-0.5, 0.5,
                                                              model.reservoir_.n_units))
    resumed = model.reservoir_.run_segmented(u[0, :4_000], 8, washout, state=start)
    expected, _ = model.reservoir_(u[:, :4_000], start[None])
    np.testing.assert_allclose(resumed.numpy(), expected[0].numpy(), rtol=0, atol=1e-11)


@pytest.mark.parametrize("make", [
    lambda: DeepResESN(n_layers=3, units_per_layer=40, random_state=0, dtype="float32"),
    lambda: ResRMN(n_units=40, n_memory_units=30, memory_radius=0.9, random_state=0,
                   dtype="float32"),
])
def test_float32_segments_close_their_seams(make, lorenz):
    """In float32 the seams close to 100 ulp, not 1e-12 (which float32 round-off never
    met: every float32 run went sequential after its segments were paid for)."""
    model = make().fit(lorenz[:1_000])
    u = torch.as_tensor(model.y_scaler_.transform(lorenz)[:-1], dtype=torch.float32)
    washout = model._segments(u.shape[0])[1]
    segmented = model.reservoir_.run_segmented(u, 8, washout)
    assert segmented is not None and segmented.dtype == torch.float32
    sequential, _ = model.reservoir_(u[None])
    np.testing.assert_allclose(segmented.numpy(), sequential[0].numpy(), rtol=0, atol=1e-5)


def test_predict_after_a_long_lossless_memory_equals_the_sequential_rerun(lorenz,
                                                                          monkeypatch):
    """predict() reruns all of the training series for gamma = 1; a long one runs as
    parallel segments, with the same forecast as the sequential rerun."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gamma = 1 on a series longer than the ring
        model = ResRMN(n_units=40, n_memory_units=30, random_state=0).fit(lorenz)
    assert model.context_y_.shape[0] == lorenz.shape[0]
    assert model._segments(lorenz.shape[0]) is not None
    segmented = model.predict(40)
    monkeypatch.setattr(ResRMN, "_segments", lambda self, length: None)
    np.testing.assert_allclose(segmented, model.predict(40), rtol=0, atol=1e-9)


def test_segments_are_refused_where_the_reservoir_forgets_slowly(lorenz):
    slow = DeepResESN(n_layers=2, units_per_layer=30, alpha=0.995, beta=0.005,
                      random_state=0).fit(lorenz[:500])
    assert slow._segments(8_000) is None  # its washout would be ~10,000 steps
    # A washout too short for the reservoir: a seam does not close, and the caller is told.
    module = DeepResESN(n_layers=2, units_per_layer=30, alpha=0.9, beta=0.1,
                        random_state=0).fit(lorenz[:500]).reservoir_
    u = torch.as_tensor(lorenz[:4_000])
    assert module.run_segmented(u, 8, 5) is None


@pytest.mark.parametrize("make", [
    lambda: DeepResESN(n_layers=3, units_per_layer=20, orthogonal=["random", "cycle",
                       "identity"], squared_units=True, readout_input=True, random_state=0),
    lambda: DeepResESN(n_layers=2, units_per_layer=20, readout_states="last", random_state=1),
    lambda: ResRMN(n_units=20, n_memory_units=15, memory_radius=0.9, readout_states="all",
                   squared_units=True, readout_input=True, random_state=0),
    lambda: ResRMN(n_units=20, n_memory_units=15, memory_radius=0.9, orthogonal="cycle",
                   random_state=2),
])
def test_closed_loop_tangent_is_the_jacobian_of_the_step(make, lorenz):
    """The analytic tangent map (reservoir's step_with_tangent, readout derivative) against
    the Jacobian of the differentiable step by forward-mode autodiff."""
    model = make().fit(lorenz[:2_000])
    dmap = model.as_discrete_map(dt=0.01)
    z = dmap.initial_states(3, seed=0)
    frame = torch.randn(3, dmap.dim, 4, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(0))
    stepped, pushed = dmap.tangent(z, frame)
    np.testing.assert_allclose(stepped.numpy(), dmap.step(z).numpy(), rtol=0, atol=1e-13)
    jacobian = torch.func.vmap(torch.func.jacfwd(lambda v: dmap.step(v[None])[0]))(z)
    np.testing.assert_allclose(pushed.numpy(), (jacobian @ frame).numpy(), rtol=0, atol=1e-12)


def test_lyapunov_spectrum_of_a_fitted_deep_esn_is_finite(deep_fitted):
    # Through the analytic tangent map (checked against the Jacobian above).
    spectrum = lyapunov_spectrum(deep_fitted, n_exponents=2, dt=0.01, n_steps=600,
                                 transient=200, n_trajectories=2)
    # Lorenz-63: 0.906 and 0; this short run gives ~1.05 and -0.08 (2000 steps: 0.82, 0.01).
    assert np.isfinite(spectrum).all()
    assert 0.4 < spectrum[0] < 1.6 and abs(spectrum[1]) < 0.4


def test_lyapunov_spectrum_of_a_fitted_resrmn_is_finite(memory_fitted):
    spectrum = lyapunov_spectrum(memory_fitted, n_exponents=2, dt=0.01, n_steps=200,
                                 transient=50, n_trajectories=2)
    assert np.isfinite(spectrum).all()


def test_readout_sees_only_the_chosen_states(lorenz):
    last = DeepResESN(n_layers=3, units_per_layer=20, readout_states="last",
                      random_state=0).fit(lorenz[:800])
    assert last.readout_weights_.shape == (20, 3)
    nonlinear = ResRMN(n_units=20, n_memory_units=30, memory_radius=0.9,
                       random_state=0).fit(lorenz[:800])
    assert nonlinear.readout_weights_.shape == (20, 3)
    both = ResRMN(n_units=20, n_memory_units=30, memory_radius=0.9, readout_states="all",
                  readout_input=True, squared_units=True, random_state=0).fit(lorenz[:800])
    assert both.readout_weights_.shape == (53, 3)
    assert np.isfinite(both.predict(50)).all()


# ---------------------------------------------------------------------- diagnostics


def test_echo_state_diagnostics_match_the_layer_matrices(lorenz):
    model = DeepResESN(n_layers=3, units_per_layer=40, alpha=[0.2, 0.5, 0.0],
                       beta=[0.8, 0.5, 1.0], orthogonal=["identity", "random", "cycle"],
                       random_state=1).fit(lorenz[:600])
    diagnostics = model.echo_state_diagnostics()
    module = model.reservoir_
    for l in range(3):
        w = module.layer_matrices(l)["recurrent"]
        alpha, beta = module.alpha[l], module.beta[l]
        eigenvalues = np.linalg.eigvals(w)
        assert diagnostics["spectral_radius"][l] == pytest.approx(np.abs(eigenvalues).max())
        assert diagnostics["contraction_bound"][l] == pytest.approx(
            alpha + beta * np.linalg.svd(w, compute_uv=False)[0])
        if l != 1:  # alpha O + beta W with O = I or alpha = 0: eigenvalues alpha + beta lambda
            assert diagnostics["effective_spectral_radius"][l] == pytest.approx(
                np.abs(alpha + beta * eigenvalues).max())
    assert np.all(diagnostics["effective_spectral_radius"] <= diagnostics["contraction_bound"]
                  + 1e-12)
    rmn = ResRMN(n_units=30, n_memory_units=10, memory_radius=0.9, random_state=0
                 ).fit(lorenz[:300]).echo_state_diagnostics()
    assert rmn["memory_spectral_radius"] == 0.9 and rmn["effective_spectral_radius"].shape == (1,)


def test_lost_echo_state_property_warns(lorenz):
    # alpha = beta = 1 with O = I: eigenvalues 1 + lambda(W), radius > 1.
    with pytest.warns(UserWarning, match="echo state property is likely lost"):
        DeepResESN(n_layers=2, units_per_layer=30, alpha=1.0, beta=1.0, orthogonal="identity",
                   ridge=1e-2, random_state=0).fit(lorenz[:400])


def test_resrmn_with_a_lossless_memory_warns_on_a_series_longer_than_the_ring(lorenz):
    with pytest.warns(UserWarning, match="memory_radius < 1"):
        ResRMN(n_units=20, n_memory_units=50, random_state=0).fit(lorenz[:400])


@pytest.mark.parametrize(("params", "match"), [
    (dict(alpha=1.5), "alpha"),
    (dict(alpha=-0.1), "alpha"),
    (dict(beta=0.0), "beta"),
    (dict(beta=1.2), "beta"),
    (dict(alpha=[0.1, 0.2]), "alpha has 2 entries.*one per layer"),
    (dict(spectral_radius=[0.9, 0.9, 0.9, 0.9]), "spectral_radius has 4 entries"),
    (dict(inter_scaling=[1.0, 1.0, 1.0]), "inter_scaling .* has 3 entries"),
    (dict(orthogonal="skew"), "unknown orthogonal 'skew'; expected one of 'random'"),
    (dict(orthogonal=["random", "cycle", "householder"]), "unknown orthogonal"),
    (dict(readout_states="first"), "readout_states"),
    (dict(spectral_radius=0.0), "spectral_radius"),
    (dict(n_layers=0), "n_layers"),
])
def test_bad_deep_hyperparameters_are_refused(params, match, lorenz):
    settings = dict(n_layers=3, units_per_layer=10) | params
    with pytest.raises(ValueError, match=match):
        DeepResESN(**settings).fit(lorenz[:300])


@pytest.mark.parametrize(("params", "match"), [
    (dict(alpha=2.0), "alpha"),
    (dict(beta=0.0), "beta"),
    (dict(memory_radius=1.5), "memory_radius"),
    (dict(memory_radius=0.0), "memory_radius"),
    (dict(alpha=[0.1, 0.2]), "one number"),
    (dict(orthogonal="skew"), "unknown orthogonal"),
    (dict(readout_states="memory"), "readout_states"),
    (dict(memory_scaling=-1.0), "memory_scaling"),
])
def test_bad_resrmn_hyperparameters_are_refused(params, match, lorenz):
    settings = dict(n_units=10, n_memory_units=10, memory_radius=0.9) | params
    with pytest.raises(ValueError, match=match):
        ResRMN(**settings).fit(lorenz[:300])


def test_module_refuses_mismatched_layers():
    rng = np.random.default_rng(0)
    w = residual_recurrent_matrix(5, 0.9, rng)
    with pytest.raises(ValueError, match="one entry per layer"):
        DeepResidualReservoir([w, w], [np.ones((5, 1))], [np.zeros(5)] * 2, [np.eye(5)] * 2,
                              [0.5, 0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="layer 2"):
        DeepResidualReservoir([w, w], [np.ones((5, 1)), np.ones((5, 4))], [np.zeros(5)] * 2,
                              [np.eye(5)] * 2, [0.5, 0.5], [0.5, 0.5])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("module", [small_deep(list(KINDS)), small_memory("cycle")],
                         ids=["deep", "memory"])
def test_cuda_states_equal_cpu_states(module):
    inputs = torch.from_numpy(np.random.default_rng(8).normal(size=(3, 50, 2)))
    cpu, _ = module(inputs)
    gpu, _ = module.to("cuda")(inputs.cuda())
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), atol=1e-12)
    state = torch.zeros((3, module.n_units), dtype=torch.float64, device="cuda")
    stepped = module.step(inputs[:, 0].cuda(), state)
    np.testing.assert_allclose(stepped.cpu().numpy(), cpu[:, 0].numpy(), atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("make", [
    lambda device: DeepResESN(n_layers=3, units_per_layer=60, device=device, random_state=0),
    lambda device: ResRMN(n_units=60, n_memory_units=40, memory_radius=0.9, device=device,
                          random_state=0),
])
def test_cuda_fit_with_parallel_segments_equals_the_cpu_fit(make, lorenz):
    # 8000 steps: run as parallel segments on either device (the CUDA path in torch). The
    # states agree to round-off (CUDA's tanh differs in the last bits), which the ridge
    # solve amplifies in single weights: compared through what the readout does.
    cpu, gpu = make("cpu").fit(lorenz), make("cuda").fit(lorenz)
    assert cpu._segments(lorenz.shape[0] - 1) is not None
    context = lorenz[-300:]
    np.testing.assert_allclose(gpu.reservoir_states(context), cpu.reservoir_states(context),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(gpu.predict(30, context=context),
                               cpu.predict(30, context=context), atol=1e-4)
