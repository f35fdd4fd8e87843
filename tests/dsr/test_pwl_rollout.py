"""Fused PLRNN-family rollouts (tsrnn/ops/pwl_rollout.py) and the DSR GPU training path.

CPU tests check the torch reference of the kernels against the model equations, exact
Jacobians and autograd in float64 (tolerance 1e-12: only round-off differs), and the compiled
CPU kernels (tsrnn/ops/_pwl_cpu.py) against that reference. Tests marked
``gpu`` compare the Triton kernels with that reference, and a CUDA training batch or run with
the CPU one; they also run without a GPU under Triton's interpreter (``TRITON_INTERPRET=1``
with triton installed), on CPU tensors. float32 tolerances allow for round-off growing along
a 40-step chaotic rollout.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from tsrnn.dsr import ALRNN as ALRNNEstimator
from tsrnn.dsr import ShallowPLRNN as ShallowPLRNNEstimator
from tsrnn.dsr.teacher_forcing import (
    IdentityObservation,
    ReconstructionModel,
    teacher_forced_run,
)
from tsrnn.nn import ALRNN, PLRNN, ShallowPLRNN
from tsrnn.ops import _pwl_cpu, pwl_rollout

TIGHT = dict(rtol=1e-12, atol=1e-12)
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1" and pwl_rollout.triton_available()
KERNEL_DEVICE = ("cuda" if torch.cuda.is_available() and pwl_rollout.triton_available()
                 else "cpu" if INTERPRETED else None)
needs_kernels = pytest.mark.skipif(KERNEL_DEVICE is None,
                                   reason="needs CUDA and triton (or TRITON_INTERPRET=1)")
needs_native = pytest.mark.skipif(not _pwl_cpu.available(), reason="no C compiler here")
FLOAT32 = dict(rtol=1e-4, atol=1e-4)


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


LATENTS = {
    "plrnn": lambda: PLRNN(5, generator=generator()),
    "alrnn": lambda: ALRNN(20, 2, generator=generator()),
    "shallow": lambda: ShallowPLRNN(3, 100, generator=generator()),
    "clipped": lambda: ShallowPLRNN(4, 12, clipped=True, generator=generator()),
}


def latent_of(kind, dtype=torch.float64, device="cpu"):
    latent = LATENTS[kind]().to(dtype)
    with torch.no_grad():  # non-zero biases so that every term is exercised
        for name, p in latent.named_parameters():
            if name in ("h", "h1"):
                p.copy_(0.3 * torch.randn(p.shape, generator=generator(7), dtype=dtype))
    return latent.to(device)


def forcing_inputs(latent, batch=3, length=40, n_forced=3, seed=1):
    dtype, device = latent.A.dtype, latent.A.device
    g = generator(seed)
    z1 = torch.randn(batch, latent.n_latent, generator=g, dtype=dtype)
    signals = torch.randn(batch, length, n_forced, generator=g, dtype=dtype)
    # every kind of step: none, identity forcing, lerp below and above one half
    pattern = [0.0, 1.0, 0.3, 0.0, 0.7, 0.0, 0.0, 1.0]
    weights = torch.tensor([pattern[k % len(pattern)] for k in range(length)], dtype=dtype)
    mask = torch.rand(batch, length, n_forced, generator=g) > 0.3
    drive = 0.1 * torch.randn(batch, length, latent.n_latent, generator=g, dtype=dtype)
    return [t.to(device) for t in (z1, signals, weights, mask, drive)]


# ---------------------------------------------------------------------- CPU: the reference
@pytest.mark.parametrize("kind", list(LATENTS))
def test_packed_step_and_vjp_equal_module_step_and_exact_jacobian(kind):
    latent = latent_of(kind)
    packed = pwl_rollout.pack(latent)
    z = torch.randn(6, latent.n_latent, generator=generator(3), dtype=torch.float64)
    a = torch.randn(6, latent.n_latent, generator=generator(4), dtype=torch.float64)
    torch.testing.assert_close(packed.step(z), latent.step(z), **TIGHT)
    jacobian = latent.jacobian(z)
    torch.testing.assert_close(packed.vjp(a, z), (a.unsqueeze(1) @ jacobian).squeeze(1),
                               **TIGHT)


@pytest.mark.parametrize("kind", ["alrnn", "clipped"])
def test_reference_rollout_and_adjoint_equal_autograd_of_the_recursion(kind):
    latent = latent_of(kind)
    packed = pwl_rollout.pack(latent)
    z1, signals, weights, mask, drive = forcing_inputs(latent)
    predictions, fed = pwl_rollout.forced_rollout(packed, z1, signals, weights, mask, drive,
                                                  backend="torch")
    # the recursion written out with autograd
    z = z1.clone().requires_grad_(True)
    state, outputs = z, []
    for k in range(signals.shape[1]):
        state = latent.step(state) + drive[:, k]
        state.retain_grad()
        outputs.append(state)
        w, n = float(weights[k]), signals.shape[-1]
        if w != 0.0:
            forced = signals[:, k] if w == 1.0 else torch.lerp(state[:, :n], signals[:, k], w)
            state = torch.cat([torch.where(mask[:, k], forced, state[:, :n]), state[:, n:]], 1)
    torch.testing.assert_close(predictions, torch.stack(outputs, 1).detach(), **TIGHT)
    grad = torch.randn(predictions.shape, generator=generator(5), dtype=torch.float64)
    (torch.stack(outputs, 1) * grad).sum().backward()
    adjoints, grad_z1 = pwl_rollout.adjoint(packed, grad, fed, weights, signals.shape[-1],
                                            mask, backend="torch")
    torch.testing.assert_close(adjoints, torch.stack([o.grad for o in outputs], 1), **TIGHT)
    torch.testing.assert_close(grad_z1, z.grad, **TIGHT)


def test_reference_free_run_iterates_the_map():
    latent = latent_of("plrnn")
    z = torch.randn(2, 5, generator=generator(2), dtype=torch.float64)
    states = pwl_rollout.free_run(pwl_rollout.pack(latent), z, 7, backend="torch")
    expected, _ = latent(h0=z, n_steps=7)
    torch.testing.assert_close(states, expected, **TIGHT)


def test_pack_refuses_other_maps_and_oversized_tiles():
    assert pwl_rollout.pack(torch.nn.Linear(3, 3)) is None
    assert pwl_rollout.pack(PLRNN(300)) is None  # 512 x 512 tile: beyond the register budget
    assert pwl_rollout.pack(ALRNN(20, 2)).num_warps == 1


def test_backend_errors_name_the_options_and_the_device():
    packed = pwl_rollout.pack(latent_of("plrnn"))
    z = torch.zeros(2, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="auto"):
        pwl_rollout.free_run(packed, z, 3, backend="cuda")
    with pytest.raises(ValueError, match=r"shape \(B, 5\)"):
        pwl_rollout.free_run(packed, torch.zeros(2, 4, dtype=torch.float64), 3)
    if not INTERPRETED:
        with pytest.raises(ValueError, match="CUDA"):
            pwl_rollout.free_run(packed, z, 3, backend="triton")


def test_teacher_forced_run_accepts_tensor_weights_and_a_known_absence_of_nan():
    latent = latent_of("alrnn")
    model = ReconstructionModel(latent, IdentityObservation(3, 20, generator(1)).double())
    y = torch.randn(4, 17, 3, generator=generator(9), dtype=torch.float64)
    weights = [1.0 if (k + 1) % 4 == 0 else 0.0 for k in range(16)]
    reference = teacher_forced_run(model, y, weights)
    fast = teacher_forced_run(model, y, torch.tensor(weights, dtype=torch.float64),
                              has_missing=False)
    torch.testing.assert_close(fast.predictions, reference.predictions, **TIGHT)
    torch.testing.assert_close(fast.loss(), reference.loss(), **TIGHT)


def test_estimator_on_cpu_trains_eagerly():
    y = np.random.default_rng(0).standard_normal((300, 3))
    estimator = ALRNNEstimator(n_latent=6, n_pwl=2, sequence_length=20, batch_size=4,
                               batches_per_epoch=2, max_epochs=2, random_state=0,
                               device="cpu").fit(y)
    assert not estimator._graphed(estimator.module_)
    assert len(estimator.history_["train_loss"]) == 2


# ---------------------------------------------------------------------- CPU: compiled kernels
# tsrnn/ops/_pwl_cpu.py against the torch reference. A batch of 19 makes full and partial
# blocks of sequences for both precisions (16 and 8 lanes).
def assert_kernels_match_torch_reference(kind, dtype, device, backend, batch):
    """Forced rollout (with and without mask and drive), adjoint and free run of
    ``backend`` against the torch reference."""
    latent = latent_of(kind, dtype, device)
    packed = pwl_rollout.pack(latent)
    z1, signals, weights, mask, drive = forcing_inputs(latent, batch=batch)
    tolerance = TIGHT if dtype == torch.float64 else FLOAT32
    for m, d in ((None, None), (mask, drive)):
        expected = pwl_rollout.forced_rollout(packed, z1, signals, weights, m, d,
                                              backend="torch")
        actual = pwl_rollout.forced_rollout(packed, z1, signals, weights, m, d,
                                            backend=backend)
        for a, e in zip(actual, expected):
            torch.testing.assert_close(a, e, **tolerance)
        grad = torch.randn(expected[0].shape, generator=generator(5), dtype=dtype)
        grad, fed = grad.to(device), expected[1]
        expected = pwl_rollout.adjoint(packed, grad, fed, weights, signals.shape[-1], m,
                                       backend="torch")
        actual = pwl_rollout.adjoint(packed, grad, fed, weights, signals.shape[-1], m,
                                     backend=backend)
        for a, e in zip(actual, expected):
            torch.testing.assert_close(a, e, **tolerance)
    for d in (None, drive):
        free = pwl_rollout.free_run(packed, z1, 40, d, backend=backend)
        torch.testing.assert_close(free, pwl_rollout.free_run(packed, z1, 40, d,
                                                              backend="torch"), **tolerance)


@needs_native
@pytest.mark.parametrize("kind", list(LATENTS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_native_kernels_match_torch_reference(kind, dtype):
    assert_kernels_match_torch_reference(kind, dtype, "cpu", "native", batch=19)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_each_sequence_is_computed_alone_whatever_the_batch_and_threads(dtype):
    latent = latent_of("alrnn", dtype)
    packed = pwl_rollout.pack(latent)
    z1, signals, weights, mask, drive = forcing_inputs(latent, batch=37)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = pwl_rollout.forced_rollout(packed, z1, signals, weights, mask, drive,
                                         backend="native")
        torch.set_num_threads(2)
        two = pwl_rollout.forced_rollout(packed, z1, signals, weights, mask, drive,
                                         backend="native")
    finally:
        torch.set_num_threads(threads)
    alone = pwl_rollout.forced_rollout(packed, z1[20:21], signals[20:21], weights,
                                       mask[20:21], drive[20:21], backend="native")
    for a, b, c in zip(one, two, alone):
        assert torch.equal(a, b)
        assert torch.equal(a[20:21], c)


@needs_native
def test_auto_takes_native_on_the_cpu_and_native_refuses_what_it_cannot_run():
    z = torch.zeros(2, 5, dtype=torch.float64)
    assert pwl_rollout.resolve_backend("auto", z) == ("triton" if INTERPRETED else "native")
    with pytest.raises(ValueError, match="float32 or float64 CPU tensors"):
        pwl_rollout.resolve_backend("native", z.to(torch.bfloat16))
    packed = pwl_rollout.pack(latent_of("plrnn"))  # float64 weights, float32 states
    with pytest.raises(ValueError, match=r"weights are torch\.float64, the states torch\.float32"):
        pwl_rollout.free_run(packed, z.float(), 3, backend="native")


@needs_native
@pytest.mark.parametrize("kind", ["alrnn", "clipped"])
def test_training_batch_on_native_kernels_matches_the_torch_loops(kind, monkeypatch):
    losses, grads = [], []
    for native in (True, False):
        if not native:
            monkeypatch.setattr(_pwl_cpu, "available", lambda: False)
        latent = latent_of(kind)
        observation = IdentityObservation(3, latent.n_latent, generator(1)).double()
        model = ReconstructionModel(latent, observation)
        y = torch.randn(20, 41, 3, generator=generator(9), dtype=torch.float64)
        weights = [1.0 if (k + 1) % 8 == 0 else 0.3 * (k % 3 == 0) for k in range(40)]
        loss = teacher_forced_run(model, y, weights).loss()
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad for p in model.parameters()])
    torch.testing.assert_close(losses[0], losses[1], **TIGHT)
    for g_native, g_loops in zip(*grads):
        torch.testing.assert_close(g_native, g_loops, **TIGHT)


@needs_native
@pytest.mark.parametrize("estimator", [ALRNNEstimator, ShallowPLRNNEstimator])
def test_estimator_fit_is_the_same_with_and_without_the_native_kernels(estimator,
                                                                       monkeypatch):
    y = np.cumsum(np.random.default_rng(0).standard_normal((600, 3)), axis=0) * 0.1
    options = dict(n_latent=6, sequence_length=30, batch_size=4, batches_per_epoch=5,
                   max_epochs=3, checkpoint_every=1, random_state=0, dtype="float64")
    if estimator is ALRNNEstimator:
        options["n_pwl"] = 2
    else:
        # These barely trained shallow models settle on a fixed point in the long runs of
        # selection="dstsp+dh", whose D_H then compares the spectra of round-off-sized
        # wiggles: the kept epoch would hinge on round-off.
        options.update(n_hidden=12, selection="dstsp")
    native = estimator(**options).fit(y)
    monkeypatch.setattr(_pwl_cpu, "available", lambda: False)
    loops = estimator(**options).fit(y)
    np.testing.assert_allclose(native.history_["train_loss"], loops.history_["train_loss"],
                               rtol=1e-10)
    np.testing.assert_allclose([s for _, s in native.checkpoint_scores_],
                               [s for _, s in loops.checkpoint_scores_], rtol=1e-8)
    if estimator is ALRNNEstimator:
        np.testing.assert_allclose(np.array(native.selection_scores_),
                                   np.array(loops.selection_scores_), rtol=1e-8)
    assert native.best_epoch_ == loops.best_epoch_
    np.testing.assert_allclose(native.predict(200), loops.predict(200), rtol=1e-8, atol=1e-10)


# ---------------------------------------------------------------------- kernels
@pytest.mark.gpu
@needs_kernels
@pytest.mark.parametrize("kind", list(LATENTS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_triton_kernels_match_torch_reference(kind, dtype):
    assert_kernels_match_torch_reference(kind, dtype, KERNEL_DEVICE, "triton", batch=3)


@pytest.mark.gpu
@needs_kernels
@pytest.mark.parametrize("kind", ["alrnn", "clipped"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_training_batch_on_kernels_matches_cpu_loss_and_gradients(kind, dtype):
    losses, grads = [], []
    for device in ("cpu", KERNEL_DEVICE):
        latent = latent_of(kind, dtype)
        observation = IdentityObservation(3, latent.n_latent, generator(1)).to(dtype)
        model = ReconstructionModel(latent, observation).to(device)
        y = torch.randn(4, 41, 3, generator=generator(9), dtype=dtype).to(device)
        weights = [1.0 if (k + 1) % 8 == 0 else 0.3 * (k % 3 == 0) for k in range(40)]
        if device == "cpu" and INTERPRETED:  # the CPU run must take the loops, not Triton
            os.environ["TRITON_INTERPRET"] = "0"
        try:
            loss = teacher_forced_run(model, y, weights).loss()
        finally:
            if INTERPRETED:
                os.environ["TRITON_INTERPRET"] = "1"
        loss.backward()
        losses.append(loss.detach().cpu())
        grads.append([p.grad.cpu() for p in model.parameters()])
    tolerance = TIGHT if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-5)
    torch.testing.assert_close(losses[1], losses[0], **tolerance)
    for g_fast, g_cpu in zip(grads[1], grads[0]):
        torch.testing.assert_close(g_fast, g_cpu, **tolerance)


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and pwl_rollout.triton_available()),
                    reason="needs CUDA and triton")
@pytest.mark.parametrize("graphed", [False, True])
def test_cuda_training_follows_the_cpu_training_in_float64(graphed):
    y = np.cumsum(np.random.default_rng(0).standard_normal((600, 3)), axis=0) * 0.1
    fits = []
    for device in ("cpu", "cuda"):
        estimator = ALRNNEstimator(n_latent=8, n_pwl=2, sequence_length=30, batch_size=4,
                                   batches_per_epoch=5, max_epochs=3, checkpoint_every=1,
                                   random_state=0, device=device, dtype="float64")
        estimator._graph_training = graphed
        fits.append(estimator.fit(y))
    cpu, gpu = fits
    assert gpu._graphed(gpu.module_) == graphed
    np.testing.assert_allclose(gpu.history_["train_loss"], cpu.history_["train_loss"],
                               rtol=1e-9)
    np.testing.assert_allclose([s for _, s in gpu.checkpoint_scores_],
                               [s for _, s in cpu.checkpoint_scores_], rtol=1e-2)
    # The long runs of selection="dstsp+dh" (1,600 steps here) agree, and so does the choice.
    np.testing.assert_allclose(np.array(gpu.selection_scores_),
                               np.array(cpu.selection_scores_), rtol=1e-6)
    assert gpu.best_epoch_ == cpu.best_epoch_
    for (name, p_gpu), p_cpu in zip(gpu.module_.named_parameters(), cpu.module_.parameters()):
        torch.testing.assert_close(p_gpu.cpu(), p_cpu, rtol=1e-8, atol=1e-10, msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and pwl_rollout.triton_available()),
                    reason="needs CUDA and triton")
def test_failed_graph_capture_warns_and_continues_with_the_same_eager_steps(monkeypatch):
    y = np.cumsum(np.random.default_rng(1).standard_normal((400, 3)), axis=0) * 0.1
    settings = dict(n_latent=6, n_pwl=2, sequence_length=20, batch_size=4, batches_per_epoch=4,
                    max_epochs=2, random_state=0, device="cuda", dtype="float64")
    eager = ALRNNEstimator(**settings)
    eager._graph_training = False
    eager.fit(y)

    class FailingCapture:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            raise RuntimeError("capture refused (test)")

        def __exit__(self, *args):
            return False

    monkeypatch.setattr(torch.cuda, "graph", FailingCapture)
    with pytest.warns(RuntimeWarning, match="eager steps"):
        fallback = ALRNNEstimator(**settings).fit(y)
    np.testing.assert_allclose(fallback.history_["train_loss"], eager.history_["train_loss"],
                               rtol=1e-9)


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and pwl_rollout.triton_available()),
                    reason="needs CUDA and triton")
@pytest.mark.parametrize("forcing", [dict(teacher_forcing="sparse"),
                                     dict(teacher_forcing="gtf", alpha="adaptive")])
def test_graphed_training_reports_a_divergence_as_the_eager_loop_does(forcing):
    # The graphed loop reads the losses once an epoch (sparse forcing) or every batch
    # (adaptive GTF); either way the first bad batch of the epoch is the one reported.
    from tsrnn.exceptions import DivergenceError

    y = np.cumsum(np.random.default_rng(2).standard_normal((600, 3)), axis=0) * 0.1
    messages = []
    for graphed in (False, True):
        estimator = ALRNNEstimator(n_latent=8, n_pwl=2, sequence_length=30, batch_size=4,
                                   batches_per_epoch=6, max_epochs=4, random_state=0,
                                   learning_rate=1e4, gradient_clip=None, device="cuda",
                                   dtype="float64", **forcing)
        estimator._graph_training = graphed
        with pytest.raises(DivergenceError, match="diverged at epoch") as error:
            estimator.fit(y)
        messages.append(str(error.value))
    assert messages[0] == messages[1]


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and pwl_rollout.triton_available()),
                    reason="needs CUDA and triton")
def test_n_init_threads_sharing_a_gpu_train_as_each_training_alone():
    # On CUDA, n_jobs > 1 runs the trainings as threads, each capturing and replaying its
    # own graph on its own stream; shared buffers or streams between them would show here.
    y = np.cumsum(np.random.default_rng(3).standard_normal((600, 3)), axis=0) * 0.1
    settings = dict(n_latent=8, n_pwl=2, sequence_length=30, batch_size=4, batches_per_epoch=8,
                    max_epochs=4, checkpoint_every=1, device="cuda", dtype="float64")
    together = ALRNNEstimator(n_init=3, n_jobs=3, random_state=0, **settings).fit(y)
    alone = [ALRNNEstimator(random_state=seed, **settings).fit(y) for seed in range(3)]
    assert all(a._graphed(a.module_) for a in alone)
    np.testing.assert_allclose(together.init_scores_, [a.selection_score_ for a in alone],
                               rtol=1e-6)
    kept = alone[together.best_init_]
    assert together.best_init_ == int(np.argmin([a.selection_score_ for a in alone]))
    np.testing.assert_allclose(together.history_["train_loss"], kept.history_["train_loss"],
                               rtol=1e-9)
    for (name, p_together), p_alone in zip(together.module_.named_parameters(),
                                           kept.module_.parameters()):
        torch.testing.assert_close(p_together, p_alone, rtol=1e-8, atol=1e-10, msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and pwl_rollout.triton_available()),
                    reason="needs CUDA and triton")
def test_n_init_threads_beyond_one_round_train_as_each_training_alone():
    # More trainings than one round may hold (each draws three of torch's 32 pooled streams
    # per device): the second round reuses the first round's streams, which must be idle.
    from tsrnn.dsr import estimators

    n_init = estimators._GPU_ROUND + 3
    y = np.cumsum(np.random.default_rng(4).standard_normal((400, 3)), axis=0) * 0.1
    settings = dict(n_latent=6, n_pwl=2, sequence_length=20, batch_size=4, batches_per_epoch=4,
                    max_epochs=3, checkpoint_every=1, device="cuda", dtype="float64")
    together = ALRNNEstimator(n_init=n_init, n_jobs=n_init, random_state=0, **settings).fit(y)
    alone = [ALRNNEstimator(random_state=seed, **settings).fit(y) for seed in range(n_init)]
    np.testing.assert_allclose(together.init_scores_, [a.selection_score_ for a in alone],
                               rtol=1e-6)
    assert together.best_init_ == int(np.argmin([a.selection_score_ for a in alone]))
