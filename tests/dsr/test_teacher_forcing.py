"""Teacher forcing schemes (tsrnn/dsr/teacher_forcing.py) against hand-written loops.

Everything runs in float64 on tiny models, so the forced trajectories of the fast path (fused
kernels, adjoint backward) agree with the reference loops up to round-off: tolerances are
1e-12 unless stated.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tsrnn.dsr.teacher_forcing import (
    AdaptiveAlpha,
    AffineObservation,
    GeneralizedTeacherForcing,
    IdentityObservation,
    NoForcing,
    ReconstructionModel,
    SparseTeacherForcing,
    _kernels,
    forced_rollout,
    make_scheme,
    masked_mse,
    max_geometric_mean_norm,
    optimal_alpha,
    teacher_forced_run,
)
from tsrnn.nn import ALRNN, PLRNN, ShallowPLRNN

TIGHT = dict(rtol=1e-12, atol=1e-12)


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


LATENTS = {
    "plrnn": lambda k=0: PLRNN(5, n_inputs=k, generator=generator()),
    "shallow": lambda k=0: ShallowPLRNN(4, 12, n_inputs=k, generator=generator()),
    "clipped": lambda k=0: ShallowPLRNN(4, 12, n_inputs=k, clipped=True,
                                         generator=generator()),
    "alrnn": lambda k=0: ALRNN(6, 2, n_inputs=k, generator=generator()),
}


def model_and_data(kind="alrnn", n_observed=3, batch=4, length=24, n_inputs=0, seed=1):
    latent = LATENTS[kind](n_inputs).double()
    with torch.no_grad():  # non-zero biases and inputs so that every term is exercised
        for name, p in latent.named_parameters():
            if name in ("h", "h1", "C"):
                p.copy_(0.3 * torch.randn(p.shape, generator=generator(seed + 7),
                                          dtype=torch.float64))
    observation = IdentityObservation(n_observed, latent.n_latent, generator=generator(2))
    model = ReconstructionModel(latent, observation.double())
    y = torch.randn(batch, length + 1, n_observed, generator=generator(seed),
                    dtype=torch.float64)
    s = (torch.randn(batch, length + 1, n_inputs, generator=generator(seed + 1),
                     dtype=torch.float64) if n_inputs else None)
    return model, y, s


def hand_loop(model, y, alpha_of_step, s=None):
    """z_1 = [x_1; L x_1]; z_t = F(ztilde_{t-1}); ztilde_t = (1 - a) z_t + a x_t (observed
    latents only), written out with the module's own step."""
    n = y.shape[-1]
    z = torch.cat([y[:, 0], y[:, 0] @ model.observation.L.T], -1)
    predictions, inputs = [], []
    for k in range(y.shape[1] - 1):
        inputs.append(z)
        z = model.latent.step(z, None if s is None else s[:, k + 1])
        predictions.append(z)
        a = alpha_of_step(k)
        z = torch.cat([(1 - a) * z[:, :n] + a * y[:, k + 1], z[:, n:]], -1)
    return torch.stack(predictions, 1), torch.stack(inputs, 1)


# ---------------------------------------------------------------------- schemes vs loops
@pytest.mark.parametrize("adjoint", [True, False])
@pytest.mark.parametrize("kind", sorted(LATENTS))
def test_gtf_alpha_one_equals_identity_forcing(kind, adjoint):
    model, y, _ = model_and_data(kind)
    run = teacher_forced_run(model, y, GeneralizedTeacherForcing(1.0).weights(24),
                             adjoint=adjoint)
    expected, _ = hand_loop(model, y, lambda k: 1.0)
    torch.testing.assert_close(run.predictions, expected, **TIGHT)
    # Identity forcing puts the data itself into the observed latents of every input.
    torch.testing.assert_close(run.inputs[:, 1:, :3], y[:, 1:-1], rtol=0, atol=0)


@pytest.mark.parametrize("adjoint", [True, False])
@pytest.mark.parametrize("kind", sorted(LATENTS))
def test_gtf_alpha_zero_equals_free_running_bptt(kind, adjoint):
    model, y, _ = model_and_data(kind)
    run = teacher_forced_run(model, y, GeneralizedTeacherForcing(0.0).weights(24),
                             adjoint=adjoint)
    z1 = model.observation.initial_state(y[:, 0])
    free = model.free_run(z1, 24)
    torch.testing.assert_close(run.predictions, free, **TIGHT)
    bptt = teacher_forced_run(model, y, NoForcing().weights(24), adjoint=adjoint)
    torch.testing.assert_close(bptt.predictions, free, **TIGHT)


@pytest.mark.parametrize("kind", sorted(LATENTS))
def test_gtf_intermediate_alpha_interpolates_prediction_and_data(kind):
    model, y, _ = model_and_data(kind)
    run = teacher_forced_run(model, y, [0.3] * 24)
    expected_predictions, expected_inputs = hand_loop(model, y, lambda k: 0.3)
    torch.testing.assert_close(run.predictions, expected_predictions, **TIGHT)
    torch.testing.assert_close(run.inputs, expected_inputs, **TIGHT)


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_partial_forcing_leaves_unobserved_latents_untouched(alpha):
    model, y, _ = model_and_data("alrnn")
    run = teacher_forced_run(model, y, [alpha] * 24)
    # The input of step k+1 is the forced prediction k: unobserved latents (3..5) unchanged.
    torch.testing.assert_close(run.inputs[:, 1:, 3:], run.predictions[:, :-1, 3:],
                               rtol=0, atol=0)
    assert not torch.equal(run.inputs[:, 1:, :3], run.predictions[:, :-1, :3])


@pytest.mark.parametrize("tau", [1, 4, 7])
def test_sparse_forcing_resets_exactly_every_tau_steps(tau):
    model, y, _ = model_and_data("alrnn", length=30)
    weights = SparseTeacherForcing(tau).weights(30)
    assert weights == [1.0 if (k + 1) % tau == 0 else 0.0 for k in range(30)]
    run = teacher_forced_run(model, y, weights)
    for k in range(29):  # input k+1 follows prediction k
        if (k + 1) % tau == 0:
            assert torch.equal(run.inputs[:, k + 1, :3], y[:, k + 1])
        else:
            assert torch.equal(run.inputs[:, k + 1], run.predictions[:, k])
        assert torch.equal(run.inputs[:, k + 1, 3:], run.predictions[:, k, 3:])
    expected, _ = hand_loop(model, y, lambda k: weights[k])
    torch.testing.assert_close(run.predictions, expected, **TIGHT)


def test_first_state_is_data_and_trained_fill():
    model, y, _ = model_and_data("alrnn")
    run = teacher_forced_run(model, y, [0.0] * 24)
    z1 = run.inputs[:, 0]
    assert torch.equal(z1[:, :3], y[:, 0])
    torch.testing.assert_close(z1[:, 3:], y[:, 0] @ model.observation.L.T, **TIGHT)


# ---------------------------------------------------------------------- gradients
@pytest.mark.parametrize("kind", sorted(LATENTS))
@pytest.mark.parametrize("weights", ["gtf", "sparse", "bptt", "identity"])
def test_adjoint_gradients_equal_autograd(kind, weights):
    model, y, s = model_and_data(kind, n_inputs=2)
    y[0, 3, 1] = float("nan")  # masked forcing and a masked loss entry on the way
    y[2, 10, 0] = float("nan")
    w = {"gtf": [0.35] * 24, "sparse": SparseTeacherForcing(5).weights(24),
         "bptt": [0.0] * 24, "identity": [1.0] * 24}[weights]
    gradients = []
    for adjoint in (True, False):
        model.zero_grad()
        run = teacher_forced_run(model, y, w, inputs=s, adjoint=adjoint)
        run.loss().backward()
        gradients.append({n: p.grad.clone() for n, p in model.named_parameters()
                          if p.grad is not None})
    fast, reference = gradients
    assert fast.keys() == reference.keys()
    assert "observation.L" in fast  # the fill matrix L learns through z_1
    for name in fast:
        torch.testing.assert_close(fast[name], reference[name], rtol=1e-10, atol=1e-12,
                                   msg=name)


@pytest.mark.parametrize("kind", sorted(LATENTS))
def test_fused_kernels_equal_module_step_and_jacobian(kind):
    latent = LATENTS[kind](2).double()
    z = 2 * torch.randn(9, latent.n_latent, generator=generator(3), dtype=torch.float64)
    s = torch.randn(9, 2, generator=generator(4), dtype=torch.float64)
    with torch.no_grad():
        latent.C.copy_(torch.randn(latent.C.shape, generator=generator(5),
                                   dtype=torch.float64))
    kernels = _kernels(latent)
    torch.testing.assert_close(kernels.step(z, s), latent.step(z, s), **TIGHT)
    a = torch.randn(9, latent.n_latent, generator=generator(6), dtype=torch.float64)
    expected = (a.unsqueeze(1) @ latent.jacobian(z)).squeeze(1)
    torch.testing.assert_close(kernels.vjp(a, kernels.slopes(z)), expected, **TIGHT)


def test_forced_rollout_refuses_mismatched_weights():
    model, y, _ = model_and_data()
    with pytest.raises(ValueError, match="forcing weights"):
        forced_rollout(model.latent, model.observation.initial_state(y[:, 0]), y[:, 1:],
                       [1.0] * 5)


# ---------------------------------------------------------------------- adaptive alpha
def linear_alrnn(matrix: torch.Tensor) -> ALRNN:
    """An AL-RNN with P = 0: the linear map z -> matrix z (+ h)."""
    m = matrix.shape[0]
    latent = ALRNN(m, 0).double()
    with torch.no_grad():
        latent.A.copy_(torch.diagonal(matrix))
        latent.W.copy_(matrix - torch.diag(torch.diagonal(matrix)))
    return latent


def test_adaptive_alpha_of_a_linear_model_with_known_jacobian_norm():
    # J = Q diag(2.5, 0.7, 0.2) R^T has spectral norm 2.5 everywhere: G = 2.5, alpha* = 0.6.
    q = torch.linalg.qr(torch.randn(3, 3, generator=generator(1), dtype=torch.float64))[0]
    r = torch.linalg.qr(torch.randn(3, 3, generator=generator(2), dtype=torch.float64))[0]
    latent = linear_alrnn(q @ torch.diag(torch.tensor([2.5, 0.7, 0.2],
                                                      dtype=torch.float64)) @ r.T)
    states = torch.randn(4, 10, 3, generator=generator(3), dtype=torch.float64)
    norm = max_geometric_mean_norm(latent.jacobian, states)
    assert norm == pytest.approx(2.5, rel=1e-12)
    assert optimal_alpha(norm) == pytest.approx(0.6, rel=1e-12)
    assert optimal_alpha(0.8) == 0.0  # a contracting map needs no forcing


def test_geometric_mean_of_norms_is_taken_along_each_sequence_and_maxed_over_the_batch():
    # PLRNN with two regions per unit: J = diag(A) + W diag(1[z > 0]).
    latent = PLRNN(2).double()
    with torch.no_grad():
        latent.A.copy_(torch.tensor([0.5, 0.5], dtype=torch.float64))
        latent.W.copy_(torch.tensor([[0.0, 3.0], [0.0, 0.0]], dtype=torch.float64))
    states = torch.tensor([[[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]],
                           [[1.0, -1.0], [1.0, -1.0], [1.0, -1.0]]], dtype=torch.float64)
    jacobians = latent.jacobian(states.reshape(-1, 2)).detach().numpy()
    norms = np.linalg.norm(jacobians, ord=2, axis=(1, 2))
    expected = np.exp(np.log(norms.reshape(2, 3)).mean(1)).max()
    assert max_geometric_mean_norm(latent.jacobian, states) == pytest.approx(expected,
                                                                             rel=1e-12)


@pytest.mark.parametrize("kind", sorted(LATENTS))
def test_norms_computed_once_per_subregion_equal_the_norms_of_every_state(kind):
    latent = LATENTS[kind]().double()
    states = 2 * torch.randn(3, 40, latent.n_latent, generator=generator(8),
                             dtype=torch.float64)
    every = max_geometric_mean_norm(latent.jacobian, states)
    per_region = max_geometric_mean_norm(latent.jacobian, states, latent.region)
    assert per_region == pytest.approx(every, rel=1e-12)


def test_adaptive_alpha_updates_every_fifth_batch_with_gamma():
    controller = AdaptiveAlpha(initial=1.0, gamma=0.999, every=5)
    calls = []

    def norm(value):
        def evaluate():
            calls.append(value)
            return value
        return evaluate

    for _ in range(4):  # no update before the fifth batch
        assert controller.after_batch(norm(2.0)) == 1.0
    assert calls == []
    # Fifth batch: G = 2 gives alpha* = 0.5 < alpha, so alpha decays by gamma towards it.
    assert controller.after_batch(norm(2.0)) == pytest.approx(0.999 * 1.0 + 0.001 * 0.5)
    assert calls == [2.0]
    alpha = controller.alpha
    for _ in range(5):
        controller.after_batch(norm(2.0))
    assert controller.alpha == pytest.approx(0.999 * alpha + 0.001 * 0.5)
    # A larger alpha* (G = 10: alpha* = 0.9) is adopted at once.
    controller.alpha = 0.2
    for _ in range(5):
        controller.after_batch(norm(10.0))
    assert controller.alpha == pytest.approx(0.9)
    assert len(calls) == 3


def test_gtf_scheme_with_adaptive_alpha_reads_the_forced_trajectory():
    q = torch.linalg.qr(torch.randn(3, 3, generator=generator(4), dtype=torch.float64))[0]
    latent = linear_alrnn(4.0 * q)  # every Jacobian norm 4: alpha* = 0.75
    model = ReconstructionModel(latent, IdentityObservation(3, 3).double())
    scheme = make_scheme("gtf", "adaptive")
    assert scheme.current_alpha == 1.0
    y = torch.randn(2, 11, 3, generator=generator(5), dtype=torch.float64) * 0.1
    for _ in range(5):
        run = teacher_forced_run(model, y, scheme.weights(10))
        scheme.after_batch(latent, run.inputs)
    assert scheme.current_alpha == pytest.approx(0.999 + 0.001 * 0.75)


def test_make_scheme_registry_and_errors():
    assert isinstance(make_scheme("sparse", forcing_interval=8), SparseTeacherForcing)
    assert isinstance(make_scheme("bptt"), NoForcing)
    assert make_scheme("gtf", 0.25).weights(3) == [0.25] * 3
    with pytest.raises(ValueError, match="'gtf', 'sparse', 'bptt'"):
        make_scheme("tbptt")
    with pytest.raises(ValueError, match="alpha"):
        make_scheme("gtf", 1.5)
    with pytest.raises(ValueError, match="adaptive"):
        make_scheme("gtf", "annealed")


# ---------------------------------------------------------------------- missing data
def test_masked_forcing_skips_missing_observations_and_the_loss_ignores_them():
    model, y, _ = model_and_data("alrnn")
    y[1, 5, 2] = float("nan")  # observation x_6, column 2 of sequence 1 is missing
    run = teacher_forced_run(model, y, [1.0] * 24)
    # Prediction 3 is z_5; the input of step 4 is ztilde_5, forced with x_5 = y[:, 4] ...
    assert torch.equal(run.inputs[1, 4, :2], y[1, 4, :2])
    # ... and ztilde_6 keeps the model's own value where x_6 is missing, the data elsewhere.
    assert run.inputs[1, 5, 2] == run.predictions[1, 4, 2]
    assert torch.equal(run.inputs[1, 5, :2], y[1, 5, :2])
    observed = ~torch.isnan(y[:, 1:])
    difference = (run.observations - y[:, 1:])[observed]
    torch.testing.assert_close(run.loss(), difference.square().mean(), **TIGHT)
    run.loss().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_masked_mse_counts_only_observed_entries():
    prediction = torch.tensor([1.0, 2.0, 3.0])
    target = torch.tensor([1.0, float("nan"), 5.0])
    mask = ~torch.isnan(target)
    assert float(masked_mse(prediction, target, mask)) == pytest.approx(2.0)
    assert math.isnan(float(masked_mse(prediction, target, None)))


def test_affine_observation_forces_every_latent_with_the_pseudo_inverse():
    latent = ALRNN(5, 2, generator=generator()).double()
    observation = AffineObservation(3, 5, generator=generator(1)).double()
    model = ReconstructionModel(latent, observation)
    y = torch.randn(2, 9, 3, generator=generator(2), dtype=torch.float64)
    run = teacher_forced_run(model, y, [1.0] * 8)
    pinv = torch.linalg.pinv(observation.B.detach())
    torch.testing.assert_close(run.inputs[:, 1:], (y[:, 1:-1] - observation.b) @ pinv.T,
                               **TIGHT)
    torch.testing.assert_close(run.observations,
                               run.predictions @ observation.B.T + observation.b, **TIGHT)
    y[0, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="identity observation"):
        teacher_forced_run(model, y, [1.0] * 8)


def test_observation_models_refuse_fewer_latents_than_observations():
    for cls in (IdentityObservation, AffineObservation):
        with pytest.raises(ValueError, match="n_latent=2 is smaller"):
            cls(3, 2)
