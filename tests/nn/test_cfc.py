"""Tests of tsrnn.nn.CfC: ncps's outputs for the same parameters (every mode, backbone depth,
mixed memory, NCP wiring), the hand-derived fast path against autograd, irregular sampling
with batch size equal to hidden size, continuation, and bad input. float64 throughout."""

from __future__ import annotations

import pytest
import torch

from tsrnn.nn import CfC
from tsrnn.nn.wirings import AutoNCP

MODES = ["default", "no_gate", "pure"]


def copy_heads(ours, cell):
    """ncps CfCCell heads (ff1, ff2, time_a, time_b; w_tau, A) into a tsrnn _Heads."""
    with torch.no_grad():
        if cell.mode == "pure":
            ours.linear.weight.copy_(cell.ff1.weight)
            ours.linear.bias.copy_(cell.ff1.bias)
            # ncps starts w_tau at 0, where |w_tau| has no gradient; give it a value to test.
            cell.w_tau.uniform_(0.1, 0.5)
            cell.A.normal_()
            ours.w_tau_raw.copy_(torch.log(torch.expm1(cell.w_tau.abs()[0])))
            ours.A.copy_(cell.A[0])
        else:
            heads = [cell.ff1, cell.ff2, cell.time_a, cell.time_b]
            ours.linear.weight.copy_(torch.cat([h.weight for h in heads]))
            ours.linear.bias.copy_(torch.cat([h.bias for h in heads]))


def ncps_pair(mode, layers, mixed, I=3, H=6):
    ncps = pytest.importorskip("ncps.torch")
    torch.manual_seed(0)
    theirs = ncps.CfC(I, H, mode=mode, backbone_layers=layers, backbone_units=16,
                      mixed_memory=mixed).double()
    ours = CfC(I, H, mode=mode, backbone_layers=layers, backbone_units=16,
               mixed_memory=mixed).double()
    cell = theirs.rnn_cell
    copy_heads(ours.heads, cell)
    if layers:
        linears = [m for m in cell.backbone if isinstance(m, torch.nn.Linear)]
        for a, b in zip(ours.backbone, linears):
            a.load_state_dict(b.state_dict())
    if mixed:
        ours.memory.load_state_dict(theirs.lstm.state_dict())
    return theirs, ours


def data(B, L, I, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, I, generator=generator, dtype=torch.float64)
    dt = 0.2 + 2 * torch.rand(B, L, generator=generator, dtype=torch.float64)
    return x, dt


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layers", [0, 1, 2])
@pytest.mark.parametrize("mixed", [False, True])
def test_cfc_gives_the_outputs_of_ncps_with_the_same_parameters(mode, layers, mixed):
    theirs, ours = ncps_pair(mode, layers, mixed)
    x, dt = data(4, 7, 3)
    h0 = torch.randn(4, 6, dtype=torch.float64)
    state = (h0, 0.5 * h0) if mixed else h0
    expected, expected_state = theirs(x, state)
    got, got_state = ours(x, state)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)
    for a, b in zip(got_state if mixed else [got_state],
                    expected_state if mixed else [expected_state]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)
    # With irregular dt, ncps is right only sample by sample (see the next tests).
    for b in range(4):
        sample = (h0[b:b + 1], 0.5 * h0[b:b + 1]) if mixed else h0[b:b + 1]
        expected, _ = theirs(x[b:b + 1], sample, dt[b:b + 1, :, None])
        got, _ = ours(x[b:b + 1], sample, dt[b:b + 1])
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)


def test_wired_cfc_gives_the_outputs_of_ncps_for_an_ncp():
    ncps = pytest.importorskip("ncps.torch")
    ncps_wirings = pytest.importorskip("ncps.wirings")
    torch.manual_seed(0)
    theirs = ncps.CfC(3, ncps_wirings.AutoNCP(12, 3, seed=7)).double()
    ours = CfC(3, AutoNCP(12, 3, seed=7), layer_recurrence="dense").double()
    for heads, cell in zip(ours.layers, theirs.rnn_cell._layers):
        copy_heads(heads, cell)
    x, _ = data(2, 5, 3)
    expected, expected_h = theirs(x)
    got, got_h = ours(x)
    assert got.shape == (2, 5, 3)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)
    torch.testing.assert_close(got_h, expected_h, rtol=0, atol=1e-13)


@pytest.mark.parametrize("mode", MODES)
def test_cfc_batch_equals_single_samples_with_irregular_dt(mode):
    """B == H: ncps multiplies the squeezed (B,) dt along the unit axis here."""
    torch.manual_seed(0)
    cell = CfC(2, 5, mode=mode, backbone_units=8).double()
    x, dt = data(5, 6, 2)
    batch, _ = cell(x, dt=dt[..., None])
    for b in range(5):
        single, _ = cell(x[b:b + 1], dt=dt[b:b + 1])
        torch.testing.assert_close(batch[b:b + 1], single, rtol=0, atol=1e-14)
    changed = dt.clone()
    changed[2] += 1.0
    other, _ = cell(x, dt=changed)
    assert (other[2] - batch[2]).abs().max() > 1e-4
    torch.testing.assert_close(other[[0, 1, 3, 4]], batch[[0, 1, 3, 4]], rtol=0, atol=0)


def test_ncps_mixes_up_samples_when_batch_equals_units():
    theirs, ours = ncps_pair("default", 1, False, I=2, H=4)
    x, dt = data(4, 5, 2)
    single = torch.cat([theirs(x[b:b + 1], None, dt[b:b + 1, :, None])[0] for b in range(4)])
    batched, _ = theirs(x, torch.zeros(4, 4, dtype=torch.float64), dt[..., None])
    assert (batched - single).abs().max() > 1e-3
    torch.testing.assert_close(ours(x, dt=dt)[0], single, rtol=0, atol=1e-13)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layers,activation", [(1, "lecun_tanh"), (0, "lecun_tanh"),
                                               (1, "tanh")])
def test_cfc_fast_path_gradients_equal_autograd(mode, layers, activation):
    torch.manual_seed(0)
    cell = CfC(3, 5, mode=mode, backbone_layers=layers, backbone_units=7,
               activation=activation).double()
    assert cell._fast_path_applies()
    x, dt = data(4, 6, 3)
    h0 = torch.randn(4, 5, dtype=torch.float64)
    leaves = [x.requires_grad_(), h0.requires_grad_(), dt.requires_grad_(),
              *cell.parameters()]
    weights = torch.randn(4, 6, 5, dtype=torch.float64)

    def gradients():
        out, final = cell(x, h0, dt)
        loss = (out * weights).sum() + final.square().sum()
        return out, torch.autograd.grad(loss, leaves)

    fast_out, fast = gradients()
    cell._fast_path_applies = lambda: False
    plain_out, plain = gradients()
    torch.testing.assert_close(fast_out, plain_out, rtol=0, atol=1e-14)
    for got, expected in zip(fast, plain):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("layers", [0, 1])
def test_fast_path_leaves_inputs_and_parameters_untouched(layers):
    """Regression: the in-place products once wrote into the bias when B = L = 1."""
    torch.manual_seed(0)
    cell = CfC(2, 3, backbone_layers=layers)
    before = {k: v.clone() for k, v in cell.state_dict().items()}
    for shape in [(1, 1, 2), (1, 4, 2), (3, 1, 2)]:
        x = torch.randn(*shape)
        copy = x.clone()
        first, _ = cell(x)
        second, _ = cell(x)
        torch.testing.assert_close(first, second, rtol=0, atol=0)
        torch.testing.assert_close(x, copy, rtol=0, atol=0)
    for name, value in cell.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)


def test_double_backward_is_refused_on_the_fast_path():
    cell = CfC(2, 3)
    x = torch.randn(1, 3, 2, requires_grad=True)
    out, _ = cell(x)
    with pytest.raises(RuntimeError, match="fast_path=False"):
        torch.autograd.grad(out.sum(), x, create_graph=True)
    # The autograd path gives second derivatives.
    cell.fast_path = False
    out, _ = cell(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    grad.sum().backward()
    assert x.grad is not None


def test_other_configurations_train_through_autograd():
    torch.manual_seed(0)
    for cell in (CfC(2, 4, backbone_layers=2, backbone_dropout=0.1),
                 CfC(2, 4, activation="relu"), CfC(2, 4, mixed_memory=True),
                 CfC(2, AutoNCP(8, 2)), CfC(2, 4, proj_size=3)):
        assert not cell._fast_path_applies() or cell.projection is not None
        out, _ = cell(torch.randn(3, 5, 2), dt=torch.rand(3, 5) + 0.1)
        out.sum().backward()
        assert all(p.grad is not None for p in cell.parameters() if p.requires_grad)
    assert out.shape == (3, 5, 3)


@pytest.mark.parametrize("mixed", [False, True])
def test_stateful_continuation_equals_one_long_run(mixed):
    torch.manual_seed(0)
    cell = CfC(2, 4, mixed_memory=mixed).double()
    x, dt = data(3, 9, 2)
    whole, final = cell(x, dt=dt)
    first, state = cell(x[:, :5], dt=dt[:, :5])
    second, final2 = cell(x[:, 5:], state, dt[:, 5:])
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=0, atol=1e-14)
    for a, b in zip(final2 if mixed else [final2], final if mixed else [final]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)


def test_pure_mode_time_constant_is_positive_and_trains():
    torch.manual_seed(0)
    cell = CfC(2, 3, mode="pure")
    with torch.no_grad():
        cell.heads.w_tau_raw.fill_(-50.0)
    out, _ = cell(torch.randn(2, 4, 2))
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert cell.heads.w_tau_raw.grad.abs().sum() > 0


def test_bad_input_raises_clear_errors():
    cell = CfC(2, 3)
    x = torch.randn(2, 4, 2)
    with pytest.raises(ValueError, match="'default', 'no_gate', 'pure'"):
        CfC(2, 3, mode="closed")
    with pytest.raises(ValueError, match="activation"):
        CfC(2, 3, activation="sine")
    with pytest.raises(ValueError, match="'wiring', 'dense'"):
        CfC(2, AutoNCP(8, 2), layer_recurrence="full")
    with pytest.raises(ValueError, match="NaN"):
        cell(x, dt=torch.tensor([[1.0, float("nan"), 1.0, 1.0]] * 2))
    with pytest.raises(ValueError, match=">= 0"):
        cell(x, dt=-torch.ones(2, 4, 1))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        cell(x, dt=torch.ones(2, 4, 2))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        cell(x, dt=torch.ones(3, 4))
    with pytest.raises(ValueError, match="shape"):
        cell(torch.randn(2, 4))
    with pytest.raises(ValueError, match="h0"):
        cell(x, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="pair"):
        CfC(2, 3, mixed_memory=True)(x, torch.zeros(2, 3))


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
def test_cfc_on_cuda_equals_the_cpu(mode):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch.manual_seed(0)
    cell = CfC(3, 6, mode=mode).double()
    x, dt = data(4, 7, 3)
    expected, _ = cell(x, dt=dt)
    got, _ = cell.to("cuda")(x.cuda(), dt=dt.cuda())
    torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- Triton kernels (CUDA)
def triton_kernels_under_the_interpreter():
    """tsrnn.nn._triton_cfc on the CPU, where triton is installed and TRITON_INTERPRET=1."""
    import os

    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("runs the Triton kernels on the CPU only under TRITON_INTERPRET=1")
    pytest.importorskip("triton")
    from tsrnn.nn import _triton_cfc

    return _triton_cfc


def sequence_gradients(function, mode, backbone, dtype, device="cpu", B=5, L=7, H=6, U=9):
    """Outputs and gradients (drive, h0, dt and the weights) of a CfC sequence function."""
    heads = 1 if mode == "pure" else 4
    generator = torch.Generator().manual_seed(3)

    def randn(*shape, scale=1.0):
        value = scale * torch.randn(*shape, generator=generator, dtype=dtype)
        return value.to(device).requires_grad_()

    drive = randn(B, L, U if backbone else heads * H)
    h0 = randn(B, H)
    dt = (0.2 + torch.rand(B, L, 1, generator=generator, dtype=dtype)).to(device)
    dt.requires_grad_()
    if backbone:
        w_h, w_z, b_z = randn(U, H, scale=0.4), randn(heads * H, U, scale=0.3), randn(heads * H)
    else:
        w_h, w_z, b_z = randn(heads * H, H, scale=0.4), None, None
    if mode == "pure":
        w_tau = (0.1 + torch.rand(H, generator=generator, dtype=dtype)).to(device)
        w_tau.requires_grad_()
        A = randn(H)
    else:
        w_tau = A = None
    out = function.apply(drive, h0, dt, w_h, w_z, b_z, w_tau, A, mode, 1.7159, 0.666)
    weights = torch.randn(out.shape, generator=generator, dtype=dtype).to(device)
    leaves = [t for t in (drive, h0, dt, w_h, w_z, b_z, w_tau, A) if t is not None]
    return out, torch.autograd.grad((out * weights).sum(), leaves)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backbone", [True, False])
def test_triton_cfc_kernels_equal_the_torch_sequence_under_the_interpreter(mode, backbone):
    """The kernels' arithmetic on the CPU (Triton's interpreter), float64, against the torch
    sequence function; sizes that need padding (B=5 of 16 rows, H=6 of 16, U=9 of 16)."""
    kernels = triton_kernels_under_the_interpreter()
    from tsrnn.nn._cfc_kernels import CfCSequence

    expected_out, expected = sequence_gradients(CfCSequence, mode, backbone, torch.float64)
    got_out, got = sequence_gradients(kernels.TritonCfCSequence, mode, backbone,
                                      torch.float64)
    torch.testing.assert_close(got_out, expected_out, rtol=0, atol=1e-13)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-13)


def test_the_cpu_fast_path_stays_the_torch_sequence_function():
    from tsrnn.nn._cfc_kernels import CfCSequence

    cell = CfC(3, 5)
    assert cell._sequence_function(torch.zeros(2, 3, 3), 128) is CfCSequence


def cuda_triton_or_skip():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from tsrnn.nn import cfc

    if cfc._triton_kernels() is None:
        pytest.skip("needs triton")
    return cfc._triton_kernels()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layers", [0, 1])
def test_triton_cfc_gradients_equal_the_torch_path_on_cuda(dtype, mode, layers):
    """Module level: outputs and gradients of every input and parameter from the Triton
    kernels against the torch sequence function on the same device (which the CPU tests
    check against autograd). Tolerances relative to the largest entry: float32 2e-5
    (round-off through 40 steps), float64 1e-12."""
    kernels = cuda_triton_or_skip()
    torch.manual_seed(0)
    cell = CfC(3, 20, mode=mode, backbone_layers=layers, backbone_units=40).to("cuda", dtype)
    assert cell._sequence_function(torch.zeros(1, device="cuda", dtype=dtype), 40) is \
        kernels.TritonCfCSequence
    generator = torch.Generator().manual_seed(2)
    B, L = 37, 40
    x = torch.randn(B, L, 3, generator=generator, dtype=dtype).cuda().requires_grad_()
    dt = (0.2 + 2 * torch.rand(B, L, generator=generator, dtype=dtype)).cuda()
    dt.requires_grad_()
    h0 = torch.randn(B, 20, generator=generator, dtype=dtype).cuda().requires_grad_()
    weights = torch.randn(B, L, 20, generator=generator, dtype=dtype).cuda()
    leaves = [x, dt, h0, *cell.parameters()]

    def run():
        out, final = cell(x, h0, dt)
        loss = (out * weights).sum() + final.square().sum()
        return out, torch.autograd.grad(loss, leaves)

    got_out, got = run()
    cell._triton = False
    expected_out, expected = run()
    tolerance = 2e-5 if dtype == torch.float32 else 1e-12
    for g, e in zip((got_out.detach(), *got), (expected_out.detach(), *expected)):
        scale = float(e.abs().max())
        assert float((g - e).abs().max()) <= tolerance * max(scale, 1.0), (g - e).abs().max()


@pytest.mark.gpu
def test_triton_cfc_at_the_benchmark_size_matches_the_torch_path():
    """B=64, L=256, H=64, 128 backbone units, float32: no padding, the benchmark's shape."""
    cuda_triton_or_skip()
    torch.manual_seed(0)
    cell = CfC(3, 64, backbone_units=128).cuda()
    x = torch.randn(64, 256, 3, device="cuda", requires_grad=True)

    def run():
        out, _ = cell(x)
        return out, torch.autograd.grad(out.sum(), [x, *cell.parameters()])

    got_out, got = run()
    cell._triton = False
    expected_out, expected = run()
    for g, e in zip((got_out.detach(), *got), (expected_out.detach(), *expected)):
        assert float((g - e).abs().max()) <= 1e-4 * max(float(e.abs().max()), 1.0)


@pytest.mark.gpu
def test_triton_cfc_size_check_counts_the_padded_batch():
    # The kernels' buffers pad the batch to 16 rows: one sequence of 2.2 million steps
    # passed a check on B L and ran into an illegal memory access.
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("triton")
    from tsrnn.nn import _triton_cfc

    assert _triton_cfc.supports(16, 16, torch.float32, batch=64, steps=10_000)
    assert not _triton_cfc.supports(16, 16, torch.float32, batch=1, steps=2_200_000)
    assert not _triton_cfc.supports(16, 16, torch.float32, batch=17, steps=1_100_000)
