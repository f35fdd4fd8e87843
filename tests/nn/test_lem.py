"""Tests of tsrnn.nn.lem: LEM against a plain loop of the SPEC equations, the fused numpy
backward pass against autograd, irregular sampling, initialisation and input checks."""

from __future__ import annotations

import math

import pytest
import torch

from tsrnn.nn import LEM
from tsrnn.nn.lem import _FusedLEM

IMPLEMENTATIONS = ["loop", "fused"]


def make(input_size=3, hidden=5, dt=0.7, implementation="loop", seed=0, dtype=torch.float64):
    model = LEM(input_size, hidden, dt=dt, implementation=implementation,
                generator=torch.Generator().manual_seed(seed))
    return model.to(dtype)


def randn(*shape, seed=1, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def spec_loop(model, u, y, z, gaps=None):
    """SPEC section 8 for one sample, written from the equations: u (L, C), y, z (H,),
    gaps (L,) the time before each step in units of Δt (None: 1), a gap turning each gate g
    into 1 - (1 - g)^gap (the decay of that many steps of the same gate)."""
    h = model.hidden_size
    V, b_in = model.input_weight.detach(), model.input_bias.detach()
    W, b_rec = model.recurrent_weight.detach(), model.recurrent_bias.detach()
    V1, V2, Vz, Vy = V[:h], V[h:2 * h], V[2 * h:3 * h], V[3 * h:]
    W1, W2, Wz = W[:h], W[h:2 * h], W[2 * h:]
    Wy = model.state_weight.detach()
    b1 = b_in[:h] + b_rec[:h]
    b2 = b_in[h:2 * h] + b_rec[h:2 * h]
    bz = b_in[2 * h:3 * h] + b_rec[2 * h:]
    by = b_in[3 * h:] + model.state_bias.detach()
    ys = []
    for n in range(u.shape[0]):
        dt_bar = model.dt * torch.sigmoid(W1 @ y + V1 @ u[n] + b1)
        dt_n = model.dt * torch.sigmoid(W2 @ y + V2 @ u[n] + b2)
        if gaps is not None:
            dt_bar, dt_n = 1 - (1 - dt_bar) ** gaps[n], 1 - (1 - dt_n) ** gaps[n]
        z = (1 - dt_n) * z + dt_n * torch.tanh(Wz @ y + Vz @ u[n] + bz)
        y = (1 - dt_bar) * y + dt_bar * torch.tanh(Wy @ z + Vy @ u[n] + by)
        ys.append(y)
    return torch.stack(ys), z


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_lem_equals_a_plain_loop_of_the_spec_equations(implementation):
    model = make(implementation=implementation)
    x, y0, z0 = randn(2, 13, 3), randn(2, 5, seed=2), randn(2, 5, seed=3)
    outputs, (y, z) = model(x, (y0, z0))
    for i in range(2):
        expected, z_last = spec_loop(model, x[i], y0[i], z0[i])
        torch.testing.assert_close(outputs[i], expected, rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(z[i], z_last, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(y, outputs[:, -1])


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_lem_batch_equals_single_samples_with_irregular_dt(implementation):
    # B == H == 5: a dt squeezed to (B,) and broadcast over the units would pass unnoticed
    # without the per-sample reference.
    model = make(implementation=implementation)
    x = randn(5, 11, 3)
    dt = torch.rand(5, 11, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    dt = dt * 1.2
    outputs, (_, z) = model(x, dt=dt)
    for i in range(5):
        expected, z_last = spec_loop(model, x[i], torch.zeros(5, dtype=torch.float64),
                                     torch.zeros(5, dtype=torch.float64), dt[i, :, 0])
        torch.testing.assert_close(outputs[i], expected, rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(z[i], z_last, rtol=1e-13, atol=1e-14)
        single, _ = model(x[i:i + 1], dt=dt[i:i + 1, :, 0])
        torch.testing.assert_close(outputs[i:i + 1], single, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(model(x, dt=torch.ones(5, 11, dtype=torch.float64))[0],
                               model(x)[0], rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_lem_stays_a_convex_combination_for_any_gap(implementation):
    # With the gate multiplied by the gap, gaps of 5 steps gave outputs of 1e15 and gaps of
    # 10 NaN, silently. Composed over the gap, y stays a convex combination of tanh values.
    model = make(implementation=implementation, dt=1.0)
    x = randn(3, 50, 3)
    for gap in (1.0, 5.0, 10.0, 1e3):
        outputs, (y, z) = model(x, dt=torch.full((3, 50), gap, dtype=torch.float64))
        assert outputs.abs().max() <= 1.0 and z.abs().max() <= 1.0
    # A zero gap leaves the state where it was.
    y0, z0 = randn(3, 5, seed=6).clamp(-1, 1), randn(3, 5, seed=7).clamp(-1, 1)
    outputs, (y, z) = model(x[:, :1], (y0, z0), dt=torch.zeros(3, 1, dtype=torch.float64))
    torch.testing.assert_close(y, y0, rtol=0, atol=0)
    torch.testing.assert_close(z, z0, rtol=0, atol=0)


@pytest.mark.parametrize("with_dt", [False, True])
def test_fused_backward_equals_autograd_of_the_loop(with_dt):
    x = randn(4, 17, 3).requires_grad_()
    dt = (torch.rand(4, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
          + 0.2).requires_grad_()
    y0, z0 = randn(4, 5, seed=2).requires_grad_(), randn(4, 5, seed=3).requires_grad_()
    weights = randn(17, 5, seed=6)
    results = {}
    for implementation in IMPLEMENTATIONS:
        model = make(implementation=implementation)
        outputs, (y, z) = model(x, (y0, z0), dt if with_dt else None)
        # a loss that reaches every output, the final y and the final z
        loss = (outputs * weights).sum() + (z ** 2).sum() + 3 * y.sum()
        inputs = [x, y0, z0, *([dt] if with_dt else []), *model.parameters()]
        results[implementation] = torch.autograd.grad(loss, inputs)
    for loop, fused in zip(results["loop"], results["fused"]):
        assert loop.abs().max() > 0
        torch.testing.assert_close(fused, loop, rtol=1e-12, atol=1e-13)


def test_fused_backward_passes_gradcheck():
    # The fused function on its own, against finite differences in every input.
    g = torch.Generator().manual_seed(7)

    def draw(*shape, scale=0.5):
        return (torch.randn(*shape, dtype=torch.float64, generator=g) * scale).requires_grad_()

    projected, weight, state_weight = draw(2, 6, 12), draw(9, 3), draw(3, 3)
    y0, z0 = draw(2, 3), draw(2, 3)
    scale = (torch.rand(2, 6, dtype=torch.float64, generator=g) + 0.3).requires_grad_()
    assert torch.autograd.gradcheck(_FusedLEM.apply, (projected, weight, state_weight, y0, z0,
                                                      scale, 1.0))
    assert torch.autograd.gradcheck(_FusedLEM.apply, (projected, weight, state_weight, y0, z0,
                                                      None, 0.8))


def test_fused_equals_loop_in_float32():
    x = randn(8, 200, 3, dtype=torch.float32)
    loop, _ = make(implementation="loop", dtype=torch.float32)(x)
    fused, _ = make(implementation="fused", dtype=torch.float32)(x)
    torch.testing.assert_close(fused, loop, rtol=0, atol=1e-5)  # float32 round-off


def test_lem_continues_from_its_final_state_given_as_tuple_or_tensor():
    model = make(implementation="fused")
    x = randn(3, 20, 3)
    whole, _ = model(x)
    first, (y, z) = model(x[:, :8])
    second, _ = model(x[:, 8:], (y, z))
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=1e-13, atol=1e-14)
    flat, _ = model(x[:, 8:], torch.cat([y, z], 1))
    torch.testing.assert_close(flat, second)


def test_lem_initialisation_is_uniform_within_one_over_sqrt_h():
    model = LEM(2, 64, generator=torch.Generator().manual_seed(0))
    bound = 1 / math.sqrt(64)
    for name, parameter in model.named_parameters():
        assert parameter.abs().max() <= bound, name
        assert parameter.abs().max() > 0.9 * bound, name  # spread over the whole range
    first = LEM(2, 8, generator=torch.Generator().manual_seed(1)).state_dict()
    second = LEM(2, 8, generator=torch.Generator().manual_seed(1)).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_lem_rejects_bad_inputs_and_options():
    model = make()
    x = randn(2, 6, 3)
    with pytest.raises(ValueError, match="dt contains NaN or inf"):
        model(x, dt=torch.full((2, 6), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="dt must be >= 0"):
        model(x, dt=-torch.ones(2, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"dt must be a number or have shape \(B, L\) = \(2, 6\)"):
        model(x, dt=torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"x must have shape \(B, L, 3\)"):
        model(randn(2, 6, 4))
    with pytest.raises(ValueError, match="x contains NaN"):
        model(torch.full((2, 6, 3), float("inf"), dtype=torch.float64))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.ones(2, 6, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"y_0 must have shape \(2, 5\)"):
        model(x, (torch.zeros(3, 5), torch.zeros(2, 5)))
    with pytest.raises(ValueError, match="unknown implementation 'cuda'; expected one of"):
        LEM(3, 5, implementation="cuda")
    with pytest.raises(ValueError, match=r"dt must lie in \(0.0, 1.0\]"):
        LEM(3, 5, dt=0.0)
    with pytest.raises(ValueError, match=r"dt must lie in \(0.0, 1.0\]"):
        LEM(3, 5, dt=1.5)  # the update would leave the convex combination
    half = torch.randn(2, 4, 3, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="'fused' runs on the CPU in float32 or float64"):
        LEM(3, 5, implementation="fused").to(torch.bfloat16)(half)
    assert LEM(3, 5).to(torch.bfloat16)(half)[0].dtype == torch.bfloat16  # auto: the loop


@pytest.mark.gpu
def test_lem_on_cuda_equals_the_fused_cpu_pass():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model = make(implementation="auto")
    x = randn(4, 30, 3)
    dt = torch.rand(4, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    expected, (_, z) = model(x, dt=dt)
    got, (_, z_gpu) = model.to("cuda")(x.cuda(), dt=dt.cuda())  # auto: the loop on CUDA
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z_gpu.cpu(), z, rtol=1e-12, atol=1e-12)
