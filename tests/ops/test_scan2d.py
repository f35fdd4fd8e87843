"""Tests of tsrnn.ops.scan2d: the fast forms against the sequential float64 reference."""

import pytest
import torch

from tsrnn.ops.scan2d import METHODS, _loop_scan, scan2d


def _coefficients(batch=2, n_var=4, length=9, features=(3, 2), seed=0, dtype=torch.float64,
                  requires_grad=False):
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, n_var, length, *features)
    # Decays in (0, 0.9) and couplings in (-0.5, 0.5): a stable 2-D system.
    a1 = 0.9 * torch.rand(shape, generator=generator, dtype=dtype)
    a4 = 0.9 * torch.rand(shape, generator=generator, dtype=dtype)
    a2 = torch.rand(shape, generator=generator, dtype=dtype) - 0.5
    a3 = torch.rand(shape, generator=generator, dtype=dtype) - 0.5
    b1 = torch.randn(shape, generator=generator, dtype=dtype)
    b2 = torch.randn(shape, generator=generator, dtype=dtype)
    h0 = (torch.randn((batch, n_var, *features), generator=generator, dtype=dtype),
          torch.randn((batch, n_var, *features), generator=generator, dtype=dtype))
    tensors = [a1, a2, a3, a4, b1, b2, *h0]
    if requires_grad:
        for tensor in tensors:
            tensor.requires_grad_(True)
    return tensors[:6], tuple(tensors[6:])


@pytest.mark.parametrize("method", ["sweep", "wavefront"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("sizes", [(4, 9), (1, 5), (5, 1), (3, 17)])
def test_scan2d_fast_forms_equal_sequential_reference_in_float64(method, reverse, sizes):
    n_var, length = sizes
    coefficients, h0 = _coefficients(n_var=n_var, length=length)
    expected = scan2d(*coefficients, h0=h0, method="sequential", reverse_variates=reverse)
    result = scan2d(*coefficients, h0=h0, method=method, reverse_variates=reverse)
    # Same additions in another order: float64 round-off on O(1) values.
    for got, want in zip(result, expected):
        assert got.shape == want.shape == coefficients[0].shape
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_scan2d_sequential_reference_matches_hand_written_cells():
    # Scalar 2x2 grid worked out by hand: h1[v,t] = a1 h1[v,t-1] + a2 h2[v,t-1] + b1 and
    # h2[v,t] = a3 h1[v-1,t] + a4 h2[v-1,t] + b2 with constants and zero initial state.
    a1, a2, a3, a4, b1, b2 = 0.5, 0.25, 2.0, 0.1, 1.0, 3.0
    full = lambda value: torch.full((1, 2, 2), value, dtype=torch.float64)  # noqa: E731
    h1, h2 = scan2d(*(full(x) for x in (a1, a2, a3, a4, b1, b2)), method="sequential")
    h1_00, h2_00 = b1, b2
    h1_10, h2_10 = b1, a3 * h1_00 + a4 * h2_00 + b2
    h1_01 = a1 * h1_00 + a2 * h2_00 + b1
    h2_01 = b2
    h1_11 = a1 * h1_10 + a2 * h2_10 + b1
    h2_11 = a3 * h1_01 + a4 * h2_01 + b2
    torch.testing.assert_close(h1[0], torch.tensor([[h1_00, h1_01], [h1_10, h1_11]],
                                                   dtype=torch.float64))
    torch.testing.assert_close(h2[0], torch.tensor([[h2_00, h2_01], [h2_10, h2_11]],
                                                   dtype=torch.float64))


def test_scan2d_without_coupling_is_two_one_dimensional_geometric_sums():
    # a2 = a3 = 0 decouples the axes: h1 is a time recurrence, h2 a variate recurrence, and
    # with constant coefficients each is a geometric sum b (1 - a^(k+1)) / (1 - a).
    n_var, length = 5, 12
    shape = (1, n_var, length)
    a_time, a_var = 0.7, 0.4
    h1, h2 = scan2d(torch.full(shape, a_time, dtype=torch.float64), torch.zeros(shape,
                    dtype=torch.float64), torch.zeros(shape, dtype=torch.float64),
                    torch.full(shape, a_var, dtype=torch.float64),
                    torch.ones(shape, dtype=torch.float64), torch.ones(shape, dtype=torch.float64))
    t = torch.arange(length, dtype=torch.float64)
    v = torch.arange(n_var, dtype=torch.float64)
    torch.testing.assert_close(h1[0], ((1 - a_time ** (t + 1)) / (1 - a_time)).expand(n_var, -1))
    torch.testing.assert_close(h2[0], ((1 - a_var ** (v + 1)) / (1 - a_var))[:, None]
                               .expand(-1, length))


def test_scan2d_reverse_equals_scan_of_flipped_variates():
    coefficients, h0 = _coefficients()
    backward = scan2d(*coefficients, h0=h0, reverse_variates=True)
    flipped = scan2d(*(c.flip(1) for c in coefficients), h0=tuple(h.flip(1) for h in h0))
    for got, want in zip(backward, flipped):
        torch.testing.assert_close(got, want.flip(1), rtol=0, atol=1e-12)


def test_scan2d_chunks_in_time_continue_from_the_last_column():
    # The column (h1, h2) at the last time step is the whole state: scanning two halves,
    # the second started from it, equals one scan of the whole.
    coefficients, h0 = _coefficients(length=10)
    whole = scan2d(*coefficients, h0=h0)
    first = scan2d(*(c[:, :, :6] for c in coefficients), h0=h0)
    second = scan2d(*(c[:, :, 6:] for c in coefficients),
                    h0=(first[0][:, :, -1], first[1][:, :, -1]))
    for part_a, part_b, full in zip(first, second, whole):
        torch.testing.assert_close(torch.cat([part_a, part_b], dim=2), full, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["sweep", "wavefront"])
def test_scan2d_gradients_equal_those_of_the_reference(method):
    coefficients, h0 = _coefficients(n_var=3, length=6, features=(2,), requires_grad=True)
    inputs = [*coefficients, *h0]
    weights = torch.randn((2, 3, 6, 2), generator=torch.Generator().manual_seed(5),
                          dtype=torch.float64)

    def gradients(name):
        h1, h2 = scan2d(*coefficients, h0=h0, method=name)
        loss = (weights * h1).sum() + (weights * h2 ** 2).sum()
        return torch.autograd.grad(loss, inputs)

    for got, want in zip(gradients(method), gradients("sequential")):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-11)


def test_scan2d_sweep_passes_gradcheck():
    coefficients, h0 = _coefficients(batch=1, n_var=3, length=4, features=(1,),
                                     requires_grad=True)

    def function(*tensors):
        return scan2d(*tensors[:6], h0=tuple(tensors[6:]), reverse_variates=True)

    assert torch.autograd.gradcheck(function, (*coefficients, *h0))


def test_fallback_time_scan_equals_explicit_loop():
    generator = torch.Generator().manual_seed(1)
    a = torch.rand((3, 37, 4), generator=generator, dtype=torch.float64)
    b = torch.randn((3, 37, 4), generator=generator, dtype=torch.float64)
    h0 = torch.randn((3, 4), generator=generator, dtype=torch.float64)
    h, expected = h0, []
    for t in range(37):
        h = a[:, t] * h + b[:, t]
        expected.append(h)
    torch.testing.assert_close(_loop_scan(a, b, h0), torch.stack(expected, 1),
                               rtol=0, atol=1e-12)


def test_scan2d_float32_sweep_close_to_float64_reference():
    coefficients, h0 = _coefficients(n_var=6, length=64, features=(4,))
    expected = scan2d(*coefficients, h0=h0, method="sequential")
    result = scan2d(*(c.float() for c in coefficients), h0=tuple(h.float() for h in h0))
    for got, want in zip(result, expected):
        # float32 round-off accumulated over a few dozen contracting steps.
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_scan2d_rejects_bad_input():
    coefficients, h0 = _coefficients()
    with pytest.raises(ValueError, match=r"unknown method 'fast'.*'sweep'"):
        scan2d(*coefficients, method="fast")
    with pytest.raises(ValueError, match="b2 has"):
        scan2d(*coefficients[:5], coefficients[5][:, :, :-1])
    with pytest.raises(ValueError, match="h1_init must have shape"):
        scan2d(*coefficients, h0=(h0[0][:, :-1], h0[1]))
    with pytest.raises(ValueError, match="pair"):
        scan2d(*coefficients, h0=h0[0])
    with pytest.raises(TypeError, match="floating-point"):
        scan2d(*coefficients[:5], torch.ones(coefficients[0].shape, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\(B, V, T, \*F\)"):
        scan2d(*(c[0, 0, 0] for c in coefficients))
    with pytest.raises(TypeError, match="share one dtype"):
        scan2d(*coefficients[:5], coefficients[5].to(torch.float32 if coefficients[5].dtype
                                                     == torch.float64 else torch.float64))
    assert set(METHODS) == {"sequential", "sweep", "wavefront"}
