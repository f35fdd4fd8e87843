"""Tests of tsrnn.nn.lssl: the convolutional and recurrent modes agree, the kernel is the
sequence C Ā^l B̄, irregular sampling is per sample and step, and bad input is refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from tsrnn.nn import LSSL
from tsrnn.nn.hippo import discretise, hippo_legs
from tsrnn.nn.lssl import causal_convolution, krylov, vandermonde


def make(dtype=torch.float64, seed=0, **options):
    settings = dict(input_size=3, hidden_size=6, state_size=8, channels=2)
    settings.update(options)
    return LSSL(**settings, generator=torch.Generator().manual_seed(seed)).to(dtype)


def randn(*shape, dtype=torch.float64, seed=1):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def run(model, mode, *args, **kwargs):
    model.mode = mode
    return model(*args, **kwargs)


# ====================================================================== the two modes
@pytest.mark.parametrize("trainable_A", ["fixed", "shared", "per_feature"])
@pytest.mark.parametrize("method", ["bilinear", "zoh", "backward_euler"])
def test_lssl_convolution_equals_recurrence_in_float64(trainable_A, method):
    model = make(trainable_A=trainable_A, method=method, measure="legt")
    x, h0 = randn(4, 150, 3), randn(4, 6, 8, seed=2)
    for initial in (None, h0):
        conv, conv_state = run(model, "convolution", x, initial)
        rec, rec_state = run(model, "recurrence", x, initial)
        torch.testing.assert_close(conv, rec, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(conv_state, rec_state, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("measure", ["legs", "lagt", "s4d_real"])
def test_lssl_convolution_equals_recurrence_in_float32(measure):
    # float32: FFT and repeated squaring round differently from the step-by-step sums;
    # 1e-5 on outputs of order one, relative 1e-5 on the states.
    model = make(torch.float32, measure=measure, trainable_A="per_feature", state_size=32)
    x, h0 = randn(4, 400, 3, dtype=torch.float32), randn(4, 6, 32, dtype=torch.float32, seed=2)
    conv, conv_state = run(model, "convolution", x, h0)
    rec, rec_state = run(model, "recurrence", x, h0)
    assert rec.abs().max() > 0.3
    torch.testing.assert_close(conv, rec, rtol=0, atol=1e-5)
    torch.testing.assert_close(conv_state, rec_state, rtol=1e-5,
                               atol=1e-5 * float(rec_state.detach().abs().max()))


def test_lssl_kernel_is_c_times_powers_of_a_bar_times_b_bar():
    model = make(state_size=5)
    a_bar, b_bar = model.discretised()
    kernel = model.kernel(12)
    for h in range(model.hidden_size):
        for lag in range(12):
            expected = model.C[h] @ torch.linalg.matrix_power(a_bar[h], lag) @ b_bar[h]
            torch.testing.assert_close(kernel[h, :, lag], expected, rtol=1e-12, atol=1e-14)


def test_lssl_recurrence_is_the_state_space_model_with_scipys_discretisation():
    model = make(hidden_size=1, input_size=1, state_size=4, channels=1, method="zoh",
                 measure="legs")
    x = randn(1, 20, 1)
    outputs, _ = run(model, "recurrence", x)
    a, b = hippo_legs(4)
    step = float(torch.exp(model.log_dt[0].detach()))
    c = model.C[0].detach().numpy()
    d = model.D[0].detach().numpy()
    a_bar, b_bar, c_d, d_d, _ = scipy.signal.cont2discrete((a, b[:, None], c, d[:, None]), step,
                                                           method="zoh")
    u = (x[0] @ model.encoder.weight.T + model.encoder.bias).detach().numpy()[:, 0]
    state, ys = np.zeros(4), []
    for u_t in u:
        state = a_bar @ state + b_bar[:, 0] * u_t
        ys.append(c_d @ state + d_d[:, 0] * u_t)
    y = torch.nn.functional.gelu(torch.as_tensor(np.array(ys)))
    expected = model.decoder(y)
    # float32 A (a buffer of closed-form values rounded once): 1e-6 relative
    torch.testing.assert_close(outputs[0], expected, rtol=1e-6, atol=1e-7)


# ====================================================================== diagonal A (S4D)
@pytest.mark.parametrize("method", ["bilinear", "zoh", "forward_euler"])
@pytest.mark.parametrize("trainable_A", ["fixed", "per_feature"])
def test_diagonal_lssl_equals_the_dense_system_of_its_diagonal(method, trainable_A):
    model = make(measure="s4d_real", method=method, trainable_A=trainable_A)
    a = -torch.exp(model.A_log)
    a_bar, b_bar = model.discretised()
    dense = discretise(torch.diag_embed(a.expand(6, 8)), model.B.expand(6, 8),
                       torch.exp(model.log_dt), method)
    torch.testing.assert_close(torch.diag_embed(a_bar), dense[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(b_bar, dense[1], rtol=1e-12, atol=1e-14)
    # the Vandermonde kernel equals the Krylov kernel of the dense diagonal matrix
    torch.testing.assert_close(model.kernel(50), model.C @ krylov(50, dense[0], dense[1]),
                               rtol=1e-11, atol=1e-13)
    x, h0 = randn(3, 70, 3), randn(3, 6, 8, seed=2)
    conv, conv_state = run(model, "convolution", x, h0)
    rec, rec_state = run(model, "recurrence", x, h0)
    torch.testing.assert_close(conv, rec, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(conv_state, rec_state, rtol=1e-11, atol=1e-12)


def test_diagonal_lssl_keeps_a_negative_and_handles_irregular_dt():
    model = make(measure="s4d_real", trainable_A="shared")
    assert dict(model.named_parameters())["A_log"].shape == (8,)
    torch.testing.assert_close(-torch.exp(model.A_log),
                               -torch.arange(1, 9, dtype=torch.float64), rtol=1e-7, atol=0)
    with torch.no_grad():
        model.A_log.add_(3.0)  # any value of the parameter is a stable A
    assert (-torch.exp(model.A_log) < 0).all()
    x = randn(6, 12, 3)
    dt = torch.rand(6, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) + 0.1
    outputs, _ = model(x, dt=dt)
    for i in range(6):
        torch.testing.assert_close(outputs[i:i + 1], model(x[i:i + 1], dt=dt[i:i + 1])[0],
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["zoh", "bilinear"])
def test_diagonal_recurrence_by_linear_scan_equals_a_step_by_step_loop(method):
    # The diagonal recurrence runs as one linear scan; check it against the equations
    # stepped by hand with the per-step discretisation of irregular time steps.
    model = make(measure="s4d_real", method=method)
    x, h0 = randn(5, 20, 3), randn(5, 6, 8, seed=2)
    dt = torch.rand(5, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) + 0.2
    for steps in (None, dt):
        outputs, final = run(model, "recurrence", x, h0, dt=steps)
        u = model.encoder(x)
        state, expected = h0, []
        for t in range(20):
            a_bar, b_bar = model.discretised(None if steps is None else steps[:, t])
            state = a_bar * state + b_bar * u[:, t, :, None]
            y = (model.C @ state[..., None])[..., 0] + model.D * u[:, t, :, None]
            expected.append(torch.nn.functional.gelu(y).reshape(5, -1))
        expected = model.decoder(torch.stack(expected, 1))
        torch.testing.assert_close(outputs, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(final, state, rtol=1e-12, atol=1e-12)


def test_vandermonde_equals_powers_of_the_diagonal():
    a, b = randn(2, 4) * 0.5, randn(2, 4, seed=3)
    columns = vandermonde(6, a, b)
    for lag in range(6):
        torch.testing.assert_close(columns[..., lag], b * a ** lag, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("length", [1, 2, 5, 16, 17, 100])
def test_krylov_by_repeated_squaring_equals_the_power_sequence(length):
    a = randn(3, 4, 4) * 0.4
    b = randn(3, 4, seed=3)
    columns = krylov(length, a, b)
    assert columns.shape == (3, 4, length)
    expected = b.clone()
    for lag in range(length):
        torch.testing.assert_close(columns[..., lag], expected, rtol=1e-12, atol=1e-14)
        expected = (a @ expected.unsqueeze(-1))[..., 0]


def test_causal_convolution_equals_the_direct_sum():
    u, kernel = randn(2, 3, 11), randn(3, 2, 11, seed=4)
    y = causal_convolution(u, kernel)
    for t in range(11):
        expected = sum(kernel[:, :, lag][None] * u[:, :, t - lag, None] for lag in range(t + 1))
        torch.testing.assert_close(y[..., t], expected, rtol=1e-12, atol=1e-12)


def test_lssl_continues_from_its_final_state_across_modes():
    model = make()
    x = randn(2, 60, 3)
    whole, _ = run(model, "convolution", x)
    first, state = run(model, "convolution", x[:, :25])
    second, _ = run(model, "recurrence", x[:, 25:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=1e-12, atol=1e-12)


# ====================================================================== irregular sampling
def test_lssl_batch_equals_single_samples_with_irregular_dt():
    # B == H == 6: a dt squeezed to (B,) and broadcast over the features would pass unnoticed
    # without the per-sample comparison.
    model = make()
    x = randn(6, 15, 3)
    dt = torch.rand(6, 15, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    dt = dt * 3 + 0.05
    outputs, state = model(x, dt=dt)
    for i in range(6):
        single, single_state = model(x[i:i + 1], dt=dt[i:i + 1, :, 0])
        torch.testing.assert_close(outputs[i:i + 1], single, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(state[i:i + 1], single_state, rtol=1e-12, atol=1e-12)
    assert (model(x, dt=dt.flip(1))[0] - outputs).abs().max() > 1e-4


@pytest.mark.parametrize("measure", ["legs", "legt", "lagt"])
@pytest.mark.parametrize("method", ["bilinear", "backward_euler", "forward_euler", "gbt"])
def test_dense_irregular_recurrence_equals_the_discretised_matrices(measure, method):
    # The dense irregular path solves one system per step instead of forming Ā; check it
    # against x_t = Ā(Δ_t) x_{t-1} + B̄(Δ_t) u_t with Ā, B̄ from `discretised`, for a
    # lower-triangular A (LegS, LagT: triangular solve), a full one (LegT: general solve),
    # and after training has filled LegS's upper triangle.
    alpha = 0.3 if method == "gbt" else None
    model = make(measure=measure, method=method, alpha=alpha, trainable_A="per_feature")
    if measure == "legs" and method == "bilinear":
        with torch.no_grad():
            model.A.add_(0.01 * randn(*model.A.shape, seed=7))
    x, h0 = randn(4, 12, 3), randn(4, 6, 8, seed=2)
    dt = torch.rand(4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    dt = 2 * dt + 0.1
    outputs, final = run(model, "recurrence", x, h0, dt=dt)
    u = model.encoder(x)
    state, expected = h0, []
    for t in range(12):
        a_bar, b_bar = model.discretised(dt[:, t])
        state = (a_bar @ state[..., None])[..., 0] + b_bar * u[:, t, :, None]
        y = (model.C @ state[..., None])[..., 0] + model.D * u[:, t, :, None]
        expected.append(torch.nn.functional.gelu(y).reshape(4, -1))
    expected = model.decoder(torch.stack(expected, 1))
    torch.testing.assert_close(outputs, expected, rtol=1e-10, atol=1e-11)
    torch.testing.assert_close(final, state, rtol=1e-10, atol=1e-11)
    (outputs.square().sum() + final.sum()).backward()
    assert model.A.grad is not None and bool(torch.isfinite(model.A.grad).all())


def test_lssl_unit_dt_equals_regular_sampling():
    model = make()
    x = randn(3, 40, 3)
    torch.testing.assert_close(model(x, dt=torch.ones(3, 40, dtype=torch.float64))[0],
                               run(model, "convolution", x)[0], rtol=1e-11, atol=1e-12)


# ====================================================================== parameters
def test_lssl_parameters_follow_trainable_a_and_the_dt_range():
    fixed = make(trainable_A="fixed", hidden_size=200, dtype=torch.float32)
    names = dict(fixed.named_parameters())
    assert "A" not in names and "B" not in names
    low, high = math.log(1e-3), math.log(1e-1)
    assert fixed.log_dt.min() >= low and fixed.log_dt.max() <= high
    assert fixed.log_dt.max() - fixed.log_dt.min() > 0.8 * (high - low)  # spread over the range
    assert make(trainable_A="shared").A.shape == (8, 8)
    per_feature = make(trainable_A="per_feature")
    assert per_feature.A.shape == (6, 8, 8)
    torch.testing.assert_close(per_feature.A[3], torch.as_tensor(hippo_legs(8)[0]),
                               rtol=1e-7, atol=1e-6)
    model = make(trainable_A="per_feature")
    output, _ = run(model, "convolution", randn(2, 30, 3))
    output.square().sum().backward()
    for name in ("A", "B", "C", "D", "log_dt"):
        grad = getattr(model, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().max() > 0, name
    assert "log_dt" not in dict(make(learn_dt=False).named_parameters())


def test_lssl_rejects_bad_inputs_and_options():
    model = make()
    x = randn(2, 10, 3)
    with pytest.raises(ValueError, match="dt contains NaN"):
        model(x, dt=torch.full((2, 10), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="dt must be >= 0"):
        model(x, dt=-torch.ones(2, 10, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"dt must be a number or have shape \(B, L\) = \(2, 10\)"):
        model(x, dt=torch.ones(2, 10, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="irregular sampling"):
        run(model, "convolution", x, dt=torch.ones(2, 10, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 6, 8\)"):
        model(x, torch.zeros(2, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown trainable_A 'all'"):
        make(trainable_A="all")
    with pytest.raises(ValueError, match="unknown measure 'legendre'"):
        make(measure="legendre")
    with pytest.raises(ValueError, match="unknown mode 'fft'"):
        make(mode="fft")
    with pytest.raises(ValueError, match="dt_max must lie in"):
        make(dt_min=0.1, dt_max=0.01)


@pytest.mark.gpu
@pytest.mark.parametrize("measure", ["legs", "s4d_real"])
def test_lssl_on_cuda_equals_the_cpu(measure):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model = make(measure=measure, trainable_A="per_feature")
    x = randn(3, 100, 3)
    expected, state = run(model, "convolution", x)
    model = model.to("cuda")
    for mode in ("convolution", "recurrence"):
        got, got_state = run(model, mode, x.cuda())
        torch.testing.assert_close(got.cpu(), expected, rtol=1e-10, atol=1e-11)
        torch.testing.assert_close(got_state.cpu(), state, rtol=1e-10, atol=1e-11)


def test_held_discretisation_steps_as_the_layer_does_and_is_released():
    # A closed-loop forecast holds (A_bar, B_bar) for its one-step calls; the steps must be
    # the layer's own, and the hold must end with the block, even when the block raises.
    layer = make(trainable_A="per_feature")
    x = randn(2, 12, 3)
    expected, expected_state = layer(x)  # the convolution
    with layer.held_discretisation():
        outputs, state = [], None
        for t in range(12):
            y, state = layer(x[:, t:t + 1], state)
            outputs.append(y)
    torch.testing.assert_close(torch.cat(outputs, 1), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state, expected_state, rtol=1e-11, atol=1e-12)
    with pytest.raises(RuntimeError, match="inside"), layer.held_discretisation():
        raise RuntimeError("inside")
    # Released: a parameter change reaches the next call, and autograd follows it again.
    with torch.no_grad():
        layer.log_dt.add_(0.5)
    changed, _ = layer(x)
    assert not torch.allclose(changed, expected)
    assert layer.discretised()[0].requires_grad
