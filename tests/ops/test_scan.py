"""tsrnn.ops.linear_scan against the sequential float64 reference, gradcheck and closed forms."""

import pytest
import torch

from tsrnn.ops import linear_scan
from tsrnn.ops import scan as scan_module
from tsrnn.ops._reference import linear_scan_reference


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def inputs(batch=3, length=37, channels=5, dtype=torch.float64, seed=0, scale=0.9):
    """Random (a, b, h0) with |a| < scale, so states stay of order one."""
    g = generator(seed)
    real = torch.float64
    a = (torch.rand(batch, length, channels, generator=g, dtype=real) * 2 - 1) * scale
    b = torch.randn(batch, length, channels, generator=g, dtype=real)
    h0 = torch.randn(batch, channels, generator=g, dtype=real)
    if dtype.is_complex:
        phase = torch.rand(batch, length, channels, generator=g, dtype=real) * 6.283
        a = a.abs() * torch.exp(1j * phase)
        b = torch.complex(b, torch.randn(batch, length, channels, generator=g, dtype=real))
        h0 = torch.complex(h0, torch.randn(batch, channels, generator=g, dtype=real))
    return a.to(dtype), b.to(dtype), h0.to(dtype)


# ------------------------------------------------------------------------------------------
# values


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_linear_scan_equals_sequential_reference(reverse, with_h0, dtype):
    a, b, h0 = inputs(dtype=dtype)
    h0 = h0 if with_h0 else None
    # float64 on both sides: only summation-order round-off differs
    torch.testing.assert_close(linear_scan(a, b, h0, reverse),
                               linear_scan_reference(a, b, h0, reverse), rtol=1e-12, atol=1e-12)


def test_linear_scan_matches_geometric_series():
    # a constant, b = 1, h0 = c: h_t = c a^{t+1} + (1 - a^{t+1}) / (1 - a)
    a_value, c, length = 0.9, 2.0, 50
    a = torch.full((2, length, 3), a_value, dtype=torch.float64)
    b = torch.ones_like(a)
    h0 = torch.full((2, 3), c, dtype=torch.float64)
    power = a_value ** torch.arange(1, length + 1, dtype=torch.float64)
    expected = (c * power + (1 - power) / (1 - a_value))[None, :, None].expand_as(a)
    torch.testing.assert_close(linear_scan(a, b, h0), expected, rtol=1e-13, atol=0)
    # reverse: the same series read from the end
    torch.testing.assert_close(linear_scan(a, b, h0, reverse=True), expected.flip(1),
                               rtol=1e-13, atol=0)


def test_reverse_scan_equals_forward_scan_of_flipped_sequences():
    a, b, h0 = inputs(seed=3)
    torch.testing.assert_close(linear_scan(a, b, h0, reverse=True),
                               linear_scan(a.flip(1), b.flip(1), h0).flip(1), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("length", [1, 2, 5, 64, 257, 1000])
def test_linear_scan_all_lengths_equal_reference(length):
    # odd lengths exercise the remainder handling of the chunked path
    a, b, h0 = inputs(batch=2, length=length, channels=4, seed=length)
    for reverse in (False, True):
        torch.testing.assert_close(linear_scan(a, b, h0, reverse),
                                   linear_scan_reference(a, b, h0, reverse), rtol=1e-11,
                                   atol=1e-11)


@pytest.fixture
def always_chunked(monkeypatch):
    """Force the CPU chunked scan at every length and width (it is chosen by size)."""
    monkeypatch.setattr(scan_module, "_CHUNK_MIN_LENGTH", 1)
    monkeypatch.setattr(scan_module, "_CHUNK_MAX_SLICE", 1 << 40)


@pytest.mark.parametrize("length", [1, 2, 3, 17, 64, 101])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_chunked_cpu_scan_equals_reference(always_chunked, length, dtype):
    a, b, h0 = inputs(batch=2, length=length, channels=3, dtype=dtype, seed=length)
    for reverse in (False, True):
        for start in (h0, None):
            torch.testing.assert_close(linear_scan(a, b, start, reverse),
                                       linear_scan_reference(a, b, start, reverse),
                                       rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunked", [False, True])
def test_the_first_coefficient_is_not_read_from_a_zero_start(chunked, monkeypatch):
    # h_0 = a_0 * 0 + b_0: the loop never reads a_0, but the chunked scan multiplied the
    # first chunk's product (NaN, or inf = 4^64 in float32) into the zero start, NaN, and
    # raised where the loop returned the right answer.
    if chunked:
        monkeypatch.setattr(scan_module, "_CHUNK_MIN_LENGTH", 1)
        monkeypatch.setattr(scan_module, "_CHUNK_MAX_SLICE", 1 << 40)
    else:
        monkeypatch.setattr(scan_module, "_CHUNK_MIN_LENGTH", 1 << 40)
    a = torch.full((1, 4096, 1), 0.5)
    b = torch.zeros(1, 4096, 1)
    b[0, -1] = 1.0
    a[0, :64] = 4.0  # the first chunk's product, 4^64, overflows float32
    h = linear_scan(a, b)
    assert h[0, -1, 0].item() == 1.0 and torch.isfinite(h).all()
    a[0, 0] = float("nan")
    h = linear_scan(a, b)
    assert h[0, -1, 0].item() == 1.0 and torch.isfinite(h).all()


@pytest.mark.parametrize("reverse", [False, True])
def test_chunked_cpu_scan_gradcheck(always_chunked, reverse):
    a, b, h0 = inputs(batch=2, length=23, channels=2, dtype=torch.complex128, seed=30)
    args = tuple(x.requires_grad_() for x in (a, b, h0))
    assert torch.autograd.gradcheck(lambda a, b, h0: linear_scan(a, b, h0, reverse), args)


def test_empty_sequence_gives_empty_output_and_zero_gradient():
    a, b = torch.zeros(2, 0, 3), torch.zeros(2, 0, 3, requires_grad=True)
    h0 = torch.ones(2, 3, requires_grad=True)
    h = linear_scan(a, b, h0)
    assert h.shape == (2, 0, 3)
    h.sum().backward()
    assert torch.equal(h0.grad, torch.zeros(2, 3)) and b.grad.shape == (2, 0, 3)


def test_float32_relative_error_on_long_sequence_within_1e5():
    # 16 x 4096 x 64, |a| in [0.5, 0.999]: long memory, states up to ~30
    g = generator(5)
    a = 0.5 + 0.499 * torch.rand(16, 4096, 64, generator=g, dtype=torch.float64)
    b = torch.randn(16, 4096, 64, generator=g, dtype=torch.float64)
    exact = linear_scan(a, b)  # float64 result, itself checked against the loop above
    approx = linear_scan(a.float(), b.float()).double()
    relative = (approx - exact).norm() / exact.norm()
    assert relative < 1e-5, float(relative)


def test_bfloat16_accumulates_in_float32_and_returns_bfloat16():
    a, b, h0 = inputs(batch=2, length=300, channels=8, seed=4, scale=0.99)
    a, b, h0 = a.bfloat16(), b.bfloat16(), h0.bfloat16()
    h = linear_scan(a, b, h0)
    assert h.dtype == torch.bfloat16
    # exactly the float32 scan rounded once; a bfloat16 accumulator would differ
    expected = linear_scan(a.float(), b.float(), h0.float()).bfloat16()
    assert torch.equal(h, expected)
    naive = linear_scan_reference(a, b, h0)  # bf16 arithmetic at every step
    assert not torch.equal(naive, expected)


def test_complex64_matches_complex128():
    a, b, h0 = inputs(dtype=torch.complex128, length=500, scale=0.99, seed=6)
    h = linear_scan(a.to(torch.complex64), b.to(torch.complex64), h0.to(torch.complex64))
    assert h.dtype == torch.complex64
    exact = linear_scan(a, b, h0)
    assert float((h.to(torch.complex128) - exact).norm() / exact.norm()) < 1e-5


def test_broadcast_a_equals_expanded_a_and_gradient_is_summed():
    _, b, h0 = inputs(seed=7)
    g = generator(8)
    for shape in [(1, b.shape[1], b.shape[2]), (b.shape[0], b.shape[1], 1), (1, 1, b.shape[2])]:
        a = (torch.rand(shape, generator=g, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
        a_full = a.detach().expand_as(b).clone().requires_grad_()
        h = linear_scan(a, b, h0)
        h_full = linear_scan(a_full, b, h0)
        torch.testing.assert_close(h, h_full, rtol=0, atol=0)
        weights = torch.randn(h.shape, generator=g, dtype=torch.float64)
        (h * weights).sum().backward()
        (h_full * weights).sum().backward()
        assert a.grad.shape == a.shape
        expected = a_full.grad.sum(dim=[i for i, n in enumerate(shape) if n == 1], keepdim=True)
        torch.testing.assert_close(a.grad, expected, rtol=1e-12, atol=1e-12)


def test_non_contiguous_inputs_give_the_same_result():
    a, b, h0 = inputs(batch=3, length=20, channels=6, seed=9)
    a_t = a.transpose(0, 2).contiguous().transpose(0, 2)  # same values, other strides
    b_t = b[:, :, ::1].transpose(1, 2).contiguous().transpose(1, 2)
    assert not a_t.is_contiguous() and not b_t.is_contiguous()
    torch.testing.assert_close(linear_scan(a_t, b_t, h0), linear_scan(a, b, h0), rtol=0,
                               atol=0)


# ------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_gradcheck_in_a_b_and_h0(reverse, dtype):
    a, b, h0 = inputs(batch=2, length=9, channels=3, dtype=dtype, seed=10)
    args = tuple(x.requires_grad_() for x in (a, b, h0))
    assert torch.autograd.gradcheck(lambda a, b, h0: linear_scan(a, b, h0, reverse), args)


@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck_without_h0(reverse):
    a, b, _ = inputs(batch=2, length=9, channels=3, seed=11)
    args = (a.requires_grad_(), b.requires_grad_())
    assert torch.autograd.gradcheck(lambda a, b: linear_scan(a, b, None, reverse), args)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_fused_backward_equals_autograd_through_the_loop(reverse, dtype):
    a, b, h0 = inputs(batch=2, length=300, channels=4, dtype=dtype, seed=12, scale=0.99)
    weights = inputs(batch=2, length=300, channels=4, dtype=dtype, seed=13)[1]
    grads = []
    for function in (linear_scan, linear_scan_reference):
        leaves = [x.clone().requires_grad_() for x in (a, b, h0)]
        h = function(*leaves, reverse=reverse)
        (h * weights.conj()).real.sum().backward()
        grads.append([x.grad for x in leaves])
    for fused, looped in zip(*grads):
        torch.testing.assert_close(fused, looped, rtol=1e-10, atol=1e-10)


def test_bfloat16_gradients_have_input_dtype_and_match_float32():
    a, b, h0 = inputs(batch=2, length=100, channels=4, seed=14)
    leaves16 = [x.bfloat16().requires_grad_() for x in (a, b, h0)]
    leaves32 = [x.bfloat16().float().requires_grad_() for x in (a, b, h0)]
    linear_scan(*leaves16).float().sum().backward()
    linear_scan(*leaves32).sum().backward()
    for x16, x32 in zip(leaves16, leaves32):
        assert x16.grad.dtype == torch.bfloat16
        # bf16 keeps 8 bits: relative 2^-8 per rounding, a few roundings deep
        torch.testing.assert_close(x16.grad.float(), x32.grad, rtol=3e-2, atol=3e-2)


def test_gradient_only_for_inputs_that_require_it():
    a, b, h0 = inputs(seed=15)
    b.requires_grad_()
    linear_scan(a, b, h0).sum().backward()
    assert a.grad is None and h0.grad is None and b.grad is not None


# ------------------------------------------------------------------------------------------
# bad input


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="does not broadcast"):
        linear_scan(torch.zeros(2, 5, 3), torch.zeros(2, 6, 3))
    with pytest.raises(ValueError, match=r"\(B, L, D\)"):
        linear_scan(torch.zeros(5, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="h0 must have shape"):
        linear_scan(torch.zeros(2, 5, 3), torch.zeros(2, 5, 3), torch.zeros(2, 4))


def test_dtype_mismatch_and_unsupported_dtype_are_errors():
    with pytest.raises(TypeError, match="same dtype"):
        linear_scan(torch.zeros(2, 5, 3), torch.zeros(2, 5, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="h0 must have the dtype"):
        linear_scan(torch.zeros(2, 5, 3), torch.zeros(2, 5, 3), torch.zeros(2, 3).double())
    with pytest.raises(TypeError, match="supports dtypes"):
        linear_scan(torch.zeros(2, 5, 3, dtype=torch.int64), torch.zeros(2, 5, 3).long())


def test_device_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same device"):
        linear_scan(torch.zeros(2, 5, 3, device="meta"), torch.zeros(2, 5, 3))


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(ValueError, match="'auto', 'torch', 'triton'"):
        linear_scan(torch.zeros(1, 2, 1), torch.zeros(1, 2, 1), backend="cuda")


def test_triton_backend_on_cpu_tensors_is_an_error():
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        linear_scan(torch.zeros(1, 2, 1), torch.zeros(1, 2, 1), backend="triton")


def test_nan_input_is_reported_with_its_position():
    a, b, h0 = inputs(seed=16)
    b[1, 4, 2] = float("nan")
    with pytest.raises(ValueError, match=r"b contains NaN or inf \(first at index \(1, 4, 2\)"):
        linear_scan(a, b, h0)
    a[0, 30, 1] = float("inf")
    with pytest.raises(ValueError, match="a contains NaN or inf"):
        linear_scan(a, b.nan_to_num(), h0, reverse=True)
    assert torch.isnan(linear_scan(a, b, h0, check_finite=False)).any()


def test_overflow_is_reported():
    a = torch.full((1, 200, 2), 2.0)
    with pytest.raises(ValueError, match="overflowed"):
        linear_scan(a, torch.ones_like(a))


# ------------------------------------------------------------------------------------------
# CUDA


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.complex64])
def test_cuda_matches_cpu_float64(backend, reverse, dtype):
    complex_ = dtype.is_complex
    a, b, h0 = inputs(batch=3, length=1000, channels=70, seed=20, scale=0.99,
                      dtype=torch.complex128 if complex_ else torch.float64)
    # round the inputs to the tested dtype first, so only the scan's own error is measured
    a, b, h0 = (x.to(dtype) for x in (a, b, h0))
    exact = linear_scan(*(x.to(torch.complex128 if complex_ else torch.float64)
                          for x in (a, b, h0)), reverse=reverse)
    h = linear_scan(*(x.cuda() for x in (a, b, h0)), reverse=reverse, backend=backend)
    assert h.dtype == dtype and h.is_cuda
    tolerance = 1e-2 if dtype == torch.bfloat16 else 1e-5  # bf16: one rounding of the output
    error = (h.cpu().to(exact.dtype) - exact).norm() / exact.norm()
    assert error < tolerance, float(error)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_cuda_gradients_match_cpu_float64(reverse, dtype):
    wide = torch.complex128 if dtype.is_complex else torch.float64
    a, b, h0 = inputs(batch=2, length=777, channels=33, seed=21, scale=0.99, dtype=wide)
    weights = inputs(batch=2, length=777, channels=33, seed=22, dtype=wide)[1]
    grads = []
    for device, kind in (("cpu", wide), ("cuda", dtype)):
        leaves = [x.to(dtype).to(device=device, dtype=kind).requires_grad_() for x in (a, b, h0)]
        h = linear_scan(*leaves, reverse=reverse)
        (h * weights.to(device=device, dtype=kind).conj()).real.sum().backward()
        grads.append([x.grad.cpu().to(wide) for x in leaves])
    for gpu, cpu in zip(grads[1], grads[0]):
        assert float((gpu - cpu).norm() / cpu.norm()) < 1e-5


@pytest.mark.gpu
@cuda
def test_cuda_gradcheck_float64():
    a, b, h0 = inputs(batch=2, length=9, channels=3, seed=23)
    args = tuple(x.cuda().requires_grad_() for x in (a, b, h0))
    assert torch.autograd.gradcheck(lambda a, b, h0: linear_scan(a, b, h0), args)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("reverse", [False, True])
def test_cuda_first_coefficient_is_not_read_from_a_zero_start(reverse):
    # The Triton kernel multiplied a non-finite first a by the zero start: every output NaN
    # on CUDA where the CPU (and the sequence's own recurrence) gives finite values.
    a, b, _ = inputs(batch=2, length=40, channels=3, dtype=torch.float32, seed=31)
    first = -1 if reverse else 0
    for bad in (float("nan"), float("inf")):
        a[:, first] = bad
        expected = linear_scan(a, b, reverse=reverse)
        got = linear_scan(a.cuda(), b.cuda(), reverse=reverse, backend="triton")
        assert torch.isfinite(expected).all()
        torch.testing.assert_close(got.cpu(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@cuda
def test_cuda_scan_of_more_sequences_than_a_grid_axis_holds():
    # 70,000 sequences: the batch sat on grid axis 1 (at most 65,535) and the launch failed.
    a, b, h0 = inputs(batch=70_000, length=4, channels=2, dtype=torch.float32, seed=32)
    expected = linear_scan(a, b, h0)
    got = linear_scan(a.cuda(), b.cuda(), h0.cuda(), backend="triton")
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-5, atol=1e-5)
    grads = torch.ones_like(b).cuda()
    a_cuda = a.cuda().requires_grad_()
    linear_scan(a_cuda, b.cuda(), h0.cuda(), backend="triton").backward(grads)
    a_cpu = a.clone().requires_grad_()
    linear_scan(a_cpu, b, h0).backward(grads.cpu())
    torch.testing.assert_close(a_cuda.grad.cpu(), a_cpu.grad, rtol=1e-4, atol=1e-4)
