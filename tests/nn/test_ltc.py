"""Tests of tsrnn.nn.LTC: ncps's outputs for the same parameters, the fused solver against
the adaptive reference, the hand-derived backward against autograd, irregular sampling,
memory, positivity and bad input. float64 where values are compared to ~1e-12."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsrnn.nn import LTC, _ltc_cpu
from tsrnn.nn._ltc_kernels import FusedLTC, ltc_sequence_autograd
from tsrnn.nn.wirings import AutoNCP, Wiring

IMPLEMENTATIONS = ["torch", "autograd"] + (["native"] if _ltc_cpu.available() else [])
# ncps's parameter names for ours (ncps 1.0.1 with implicit_param_constraints=True stores
# the raw values of the positive parameters and applies softplus, as tsrnn does).
NCPS_NAMES = {"gleak_raw": "gleak", "vleak": "vleak", "cm_raw": "cm", "sigma": "sigma",
              "mu": "mu", "w_raw": "w", "erev": "erev", "sensory_sigma": "sensory_sigma",
              "sensory_mu": "sensory_mu", "sensory_w_raw": "sensory_w",
              "sensory_erev": "sensory_erev", "input_w": "input_w", "input_b": "input_b",
              "output_w": "output_w", "output_b": "output_b"}


def ncps_pair(input_size, units, mixed_memory=False, seed=0):
    """An ncps LTC and a tsrnn LTC with the same wiring and parameters (float64)."""
    ncps = pytest.importorskip("ncps.torch")
    torch.manual_seed(seed)
    theirs = ncps.LTC(input_size, units, mixed_memory=mixed_memory).double()
    cell = theirs.rnn_cell
    wiring = Wiring.from_matrices(cell._wiring.adjacency_matrix,
                                  cell._wiring.sensory_adjacency_matrix,
                                  cell._wiring.output_dim)
    ours = LTC(input_size, wiring, mixed_memory=mixed_memory).double()
    parameters = dict(cell.named_parameters())
    with torch.no_grad():
        for name, theirs_name in NCPS_NAMES.items():
            getattr(ours, name).copy_(parameters[theirs_name])
        if mixed_memory:
            ours.memory.load_state_dict(theirs.lstm.state_dict())
    return theirs, ours


def inputs(batch, length, size, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, size, generator=generator, dtype=torch.float64)
    dt = 0.5 + torch.rand(batch, length, generator=generator, dtype=torch.float64)
    return x, dt


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_ltc_gives_the_outputs_of_ncps_with_the_same_parameters(implementation):
    theirs, ours = ncps_pair(3, 6)
    ours.implementation = implementation
    x, _ = inputs(4, 9, 3)
    h0 = 0.3 * torch.randn(4, 6, dtype=torch.float64)
    expected, expected_h = theirs(x, h0)
    got, got_h = ours(x, h0)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)
    torch.testing.assert_close(got_h, expected_h, rtol=0, atol=1e-13)


def test_ltc_with_an_ncp_wiring_and_mixed_memory_matches_ncps():
    ncps_wirings = pytest.importorskip("ncps.wirings")
    theirs, ours = ncps_pair(3, ncps_wirings.AutoNCP(10, 2, seed=4), mixed_memory=True)
    assert ours.output_size == 2
    x, _ = inputs(3, 6, 3)
    state = (0.1 * torch.randn(3, 10, dtype=torch.float64), torch.zeros(3, 10,
                                                                        dtype=torch.float64))
    expected, (h, c) = theirs(x, state)  # (ncps's default state is float32 whatever x is)
    got, (got_h, got_c) = ours(x, state)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)
    torch.testing.assert_close(got_h, h, rtol=0, atol=1e-13)
    torch.testing.assert_close(got_c, c, rtol=0, atol=1e-13)


def test_ltc_batch_equals_single_samples_with_irregular_dt():
    """B == H, the case where ncps's squeezed dt gives silently wrong dynamics."""
    torch.manual_seed(0)
    cell = LTC(2, 5).double()
    x, dt = inputs(5, 8, 2)
    batch, _ = cell(x, dt=dt[..., None])
    for b in range(5):
        single, _ = cell(x[b:b + 1], dt=dt[b:b + 1])
        torch.testing.assert_close(batch[b:b + 1], single, rtol=0, atol=1e-14)
    # ... and the elapsed time matters: a different dt for sample 0 changes only sample 0.
    dt2 = dt.clone()
    dt2[0] *= 3
    other, _ = cell(x, dt=dt2)
    assert (other[0] - batch[0]).abs().max() > 1e-3
    torch.testing.assert_close(other[1:], batch[1:], rtol=0, atol=0)


def test_ncps_mixes_up_samples_when_batch_equals_units():
    """The bug tsrnn avoids (ncps issues #81-#83): ncps multiplies the squeezed (B,) dt with
    the (B, H) state along the unit axis, so sample b is not run with its own dt."""
    theirs, ours = ncps_pair(2, 4)
    x, dt = inputs(4, 5, 2)
    single = torch.cat([theirs(x[b:b + 1], None, dt[b:b + 1, :, None])[0] for b in range(4)])
    batched, _ = theirs(x, None, dt[..., None])
    assert (batched - single).abs().max() > 1e-3  # ncps: batch != samples run alone
    ours_batched, _ = ours(x, dt=dt)
    torch.testing.assert_close(ours_batched, single, rtol=0, atol=1e-13)


def test_fused_step_converges_to_the_adaptive_reference_as_unfolds_grow():
    torch.manual_seed(3)
    x, dt = inputs(3, 4, 2, seed=3)
    reference = LTC(2, 5, solver="adaptive", rtol=1e-10, atol=1e-12).double()
    with torch.no_grad():
        exact, _ = reference(x, dt=dt)
    errors = []
    for unfolds in (1, 2, 4, 8, 16, 32, 64):
        fused = LTC(2, 5, ode_unfolds=unfolds).double()
        fused.load_state_dict(reference.state_dict())
        with torch.no_grad():
            approx, _ = fused(x, dt=dt)
        errors.append(float((approx - exact).abs().max()))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    # Semi-implicit Euler is first order: once the step resolves the fastest time constant
    # (here ~0.1 against dt ~1), each doubling of the unfolds halves the error.
    assert np.all(ratios > 1.3), (errors, ratios)
    assert np.all(np.diff(ratios[-4:]) > 0) and np.all(np.abs(ratios[-2:] - 2.0) < 0.1), (
        errors, ratios)
    assert errors[-1] < 0.025


@pytest.mark.parametrize("backend", ["torch"] + (["native"] if _ltc_cpu.available() else []))
def test_fused_backward_equals_autograd_through_the_unfolds(backend):
    generator = torch.Generator().manual_seed(5)
    B, L, H = 3, 5, 4

    def rand(*shape):
        return torch.rand(*shape, generator=generator, dtype=torch.float64)

    w = rand(H, H)
    sigma = 3 + 5 * rand(H, H)
    tensors = [0.3 * torch.randn(B, H, generator=generator, dtype=torch.float64),
               3 + 6 * rand(B, L, H), rand(B, L, H) - 0.5, 0.5 + rand(B, L, H), w,
               w * torch.sign(rand(H, H) - 0.3), sigma, sigma * (0.3 + 0.5 * rand(H, H))]
    tensors = [t.requires_grad_() for t in tensors]
    weights = torch.randn(B, L, H, generator=generator, dtype=torch.float64)
    fused = FusedLTC.apply(*tensors, 6, backend)
    plain = ltc_sequence_autograd(*tensors, 6)
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-14)
    got = torch.autograd.grad((fused * weights).sum(), tensors)
    expected = torch.autograd.grad((plain * weights).sum(), tensors)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-11, atol=1e-13)


@pytest.mark.skipif(not _ltc_cpu.available(), reason="no C compiler here")
def test_native_float32_kernel_is_accurate_to_float32_round_off():
    torch.manual_seed(0)
    cell = LTC(3, 16, implementation="native")
    x = torch.randn(8, 40, 3)
    dt = 0.5 + torch.rand(8, 40)
    out, _ = cell(x, dt=dt)
    out.square().sum().backward()
    grads = [p.grad.clone() for p in cell.parameters()]
    reference = LTC(3, 16, implementation="autograd").double()
    reference.load_state_dict(cell.state_dict())
    expected, _ = reference(x.double(), dt=dt.double())
    expected.square().sum().backward()
    # float32 with a 240-update recurrence: a few hundred ulps at most.
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=2e-5)
    for got, parameter in zip(grads, reference.parameters()):
        scale = parameter.grad.abs().max()
        torch.testing.assert_close(got.double() / scale, parameter.grad / scale, rtol=0,
                                   atol=1e-4)


def test_double_backward_is_refused_on_the_fused_paths():
    cell = LTC(2, 3, implementation="torch")
    x = torch.randn(1, 3, 2, requires_grad=True)
    out, _ = cell(x)
    with pytest.raises(RuntimeError, match="implementation='autograd'"):
        torch.autograd.grad(out.sum(), x, create_graph=True)
    cell.implementation = "autograd"
    out, _ = cell(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    grad.sum().backward()
    assert x.grad is not None


def test_ltc_gradients_reach_every_parameter_and_dt():
    torch.manual_seed(0)
    cell = LTC(2, AutoNCP(8, 2, seed=0)).double()
    x, dt = inputs(2, 4, 2)
    dt.requires_grad_()
    out, _ = cell(x, dt=dt)
    out.square().sum().backward()
    for name, parameter in cell.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert dt.grad.abs().sum() > 0


def test_fused_ltc_keeps_no_tensor_of_size_h_squared_per_step():
    """The recomputing backward saves O(B L H) numbers, not O(B L K H^2) as autograd does."""
    torch.manual_seed(0)
    B, L, H = 4, 32, 16
    x = torch.randn(B, L, 3)
    saved = {}
    for implementation in ("torch", "autograd"):
        cell = LTC(3, H, implementation=implementation)
        total = []

        def pack(tensor, total=total):
            total.append(tensor.numel())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            cell(x)
        saved[implementation] = sum(total)
    assert saved["torch"] < 40 * B * L * H  # the sensory synapses (B, L, I, H) dominate
    assert saved["autograd"] > 6 * B * L * H * H


def test_stateful_continuation_equals_one_long_run():
    torch.manual_seed(0)
    cell = LTC(2, 6).double()
    x, dt = inputs(2, 10, 2)
    whole, final = cell(x, dt=dt)
    first, state = cell(x[:, :4], dt=dt[:, :4])
    second, final2 = cell(x[:, 4:], state, dt[:, 4:])
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=0, atol=1e-14)
    torch.testing.assert_close(final2, final, rtol=0, atol=1e-14)
    torch.testing.assert_close(cell.trajectory(x, dt=dt)[:, -1], final, rtol=0, atol=0)


def test_positive_parameters_stay_positive_whatever_the_raw_values():
    cell = LTC(2, 4)
    with torch.no_grad():
        for parameter in (cell.gleak_raw, cell.cm_raw, cell.w_raw, cell.sensory_w_raw):
            parameter.fill_(-30.0)
    assert (cell.gleak > 0).all() and (cell.cm > 0).all()
    assert (cell.w[cell.mask > 0] > 0).all() and (cell.sensory_w > 0).all()
    out, _ = cell(torch.randn(1, 3, 2))
    assert torch.isfinite(out).all()


def test_initial_values_lie_on_the_ranges_of_ncps():
    torch.manual_seed(0)
    cell = LTC(3, 32).requires_grad_(False)
    assert 0.4 <= float(cell.cm.min()) and float(cell.cm.max()) <= 0.6
    assert 0.001 <= float(cell.gleak.min()) and float(cell.gleak.max()) <= 1.0
    w = cell.w[cell.mask > 0]
    assert 0.001 <= float(w.min()) and float(w.max()) <= 1.0 + 1e-6
    assert abs(float((cell.erev > 0).float().mean()) - 2 / 3) < 0.05


def test_bad_input_raises_clear_errors():
    cell = LTC(2, 3)
    x = torch.randn(2, 4, 2)
    with pytest.raises(ValueError, match="NaN"):
        cell(x, dt=torch.full((2, 4), float("nan")))
    with pytest.raises(ValueError, match=">= 0"):
        cell(x, dt=-torch.ones(2, 4))
    with pytest.raises(ValueError, match="> 0"):
        cell(x, dt=torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        cell(x, dt=torch.ones(2))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        cell(x, dt=torch.ones(4, 2))
    with pytest.raises(ValueError, match="shape"):
        cell(torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match="NaN"):
        cell(torch.full((1, 2, 2), float("inf")))
    with pytest.raises(ValueError, match="h0"):
        cell(x, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="'fused', 'adaptive'"):
        LTC(2, 3, solver="rk4")
    with pytest.raises(ValueError, match="'auto'"):
        LTC(2, 3, implementation="cuda")
    with pytest.raises(ValueError, match="ode_unfolds"):
        LTC(2, 3, ode_unfolds=0)


@pytest.mark.gpu
def test_ltc_on_cuda_equals_the_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch.manual_seed(0)
    cell = LTC(3, AutoNCP(12, 3, seed=0)).double()
    x, dt = inputs(4, 7, 3)
    expected, _ = cell(x, dt=dt)
    gpu = cell.to("cuda")
    got, _ = gpu(x.cuda(), dt=dt.cuda())
    torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- Triton kernels (CUDA)
def fused_inputs(B, L, H, dtype, device="cpu", density=0.6, seed=5):
    """Random inputs of the fused solver (v0, c, n, d, w, wE, sigma, sigma mu), a sparse
    wiring mask on w, all requiring gradients."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=generator, dtype=dtype)

    w = rand(H, H) * (rand(H, H) < density)
    sigma = 3 + 5 * rand(H, H)
    tensors = [0.3 * torch.randn(B, H, generator=generator, dtype=dtype),
               3 + 6 * rand(B, L, H), rand(B, L, H) - 0.5, 0.5 + rand(B, L, H), w,
               w * torch.sign(rand(H, H) - 0.3), sigma, sigma * (0.3 + 0.5 * rand(H, H))]
    weights = torch.randn(B, L, H, generator=generator, dtype=dtype).to(device)
    return [t.to(device).requires_grad_() for t in tensors], weights


@pytest.mark.parametrize("H", [4, 16])
def test_triton_ltc_kernels_equal_the_torch_function_under_the_interpreter(H):
    """The kernels' arithmetic on the CPU (Triton's interpreter, TRITON_INTERPRET=1),
    float64, against the recomputing torch function; H=4 is padded to 16."""
    import os

    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("runs the Triton kernels on the CPU only under TRITON_INTERPRET=1")
    pytest.importorskip("triton")
    from tsrnn.nn._triton_ltc import TritonLTC

    tensors, weights = fused_inputs(3, 5, H, torch.float64)
    expected = FusedLTC.apply(*tensors, 6, "torch")
    got = TritonLTC.apply(*tensors, 6)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-14)
    for g, e in zip(torch.autograd.grad((got * weights).sum(), tensors),
                    torch.autograd.grad((expected * weights).sum(), tensors)):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-13)


def test_cpu_backends_are_unchanged_by_the_triton_option():
    cell = LTC(3, 8)
    expected = "native" if _ltc_cpu.available() else "torch"
    assert cell._backend(torch.zeros(1)) == expected
    cell.implementation = "torch"
    assert cell._backend(torch.zeros(1)) == "torch"


def ltc_triton_or_skip():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from tsrnn.nn import ltc

    if ltc._triton_kernels() is None:
        pytest.skip("needs triton")
    return ltc._triton_kernels()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("H", [5, 64])
def test_triton_ltc_function_equals_the_torch_function_on_cuda(dtype, H):
    """The sequence function with a sparse mask: states and all eight gradients against the
    recomputing torch function on the same device. Tolerances relative to the largest
    entry: float32 2e-5, float64 1e-12."""
    kernels = ltc_triton_or_skip()
    tensors, weights = fused_inputs(33, 30, H, dtype, "cuda")
    got = kernels.TritonLTC.apply(*tensors, 6)
    expected = FusedLTC.apply(*tensors, 6, "torch")
    tolerance = 2e-5 if dtype == torch.float32 else 1e-12
    pairs = zip((got, *torch.autograd.grad((got * weights).sum(), tensors)),
                (expected, *torch.autograd.grad((expected * weights).sum(), tensors)))
    for g, e in pairs:
        g, e = g.detach(), e.detach()
        scale = max(float(e.abs().max()), 1.0)
        assert float((g - e).abs().max()) <= tolerance * scale, (g - e).abs().max()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_ltc_module_gradients_equal_the_torch_path_on_cuda(dtype):
    """An NCP wiring (sparse, 12 neurons), irregular dt: the module's outputs and every
    parameter's gradient with implementation 'auto' (Triton on CUDA) against 'torch'."""
    ltc_triton_or_skip()
    torch.manual_seed(0)
    cell = LTC(3, AutoNCP(12, 3, seed=0)).to("cuda", dtype)
    assert cell._backend(torch.zeros(1, device="cuda", dtype=dtype)) == "triton"
    x, dt = inputs(9, 20, 3)
    x, dt = x.to("cuda", dtype).requires_grad_(), dt.to("cuda", dtype).requires_grad_()
    leaves = [x, dt, *cell.parameters()]

    def run():
        out, final = cell(x, dt=dt)
        return out, torch.autograd.grad(out.sum() + final.square().sum(), leaves)

    got_out, got = run()
    cell.implementation = "torch"
    expected_out, expected = run()
    tolerance = 2e-5 if dtype == torch.float32 else 1e-12
    for g, e in zip((got_out.detach(), *got), (expected_out.detach(), *expected)):
        scale = max(float(e.abs().max()), 1.0)
        assert float((g - e).abs().max()) <= tolerance * scale, (g - e).abs().max()


@pytest.mark.gpu
def test_triton_ltc_refuses_sizes_beyond_its_32_bit_offsets():
    # From 131,072 sequences of 64 neurons the backward pass's per-sequence parameter
    # gradients wrapped their int32 offsets (an illegal memory access): the size check
    # bounded B L HP only.
    kernels = ltc_triton_or_skip()
    assert kernels.supports(64, torch.float32, 1_000, 50, 6)
    assert not kernels.supports(64, torch.float32, 131_100, 1, 6)
    cell = LTC(2, 64, implementation="triton").cuda()
    with pytest.raises(ValueError, match="too large for the Triton LTC kernels"):
        cell(torch.zeros(131_100, 1, 2, device="cuda"))
    assert LTC(2, 64).cuda()._backend(torch.zeros(131_100, 1, 64, device="cuda")) == "torch"
