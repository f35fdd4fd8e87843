"""PLRNN family modules: equations, exact Jacobians, subregions."""

import numpy as np
import pytest
import torch

from tsrnn.analysis import fixed_points, lyapunov_spectrum
from tsrnn.nn import ALRNN, PLRNN, ShallowPLRNN


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


MODELS = [
    lambda: PLRNN(6, generator=generator()),
    lambda: ShallowPLRNN(5, 20, generator=generator()),
    lambda: ShallowPLRNN(5, 20, clipped=True, generator=generator()),
    lambda: ALRNN(6, 2, generator=generator()),
]


@pytest.mark.parametrize("make", MODELS)
def test_exact_jacobian_equals_autograd(make):
    model = make().double()
    z = torch.randn(7, model.n_latent, dtype=torch.float64, generator=generator(1)) * 2
    expected = torch.stack([torch.autograd.functional.jacobian(model.step, zi[None])[0, :, 0]
                            for zi in z])
    torch.testing.assert_close(model.jacobian(z), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["plrnn", "shallow", "clipped", "alrnn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_inputs", [False, True])
def test_closed_form_parameter_gradients_are_autograds_bit_for_bit(kind, dtype, with_inputs):
    # The training step's batched parameter gradient uses these on the CPU instead of an
    # autograd pass; identical values keep CPU training runs what they were.
    n_inputs = 2 if with_inputs else 0
    model = {"plrnn": lambda: PLRNN(6, n_inputs, generator=generator()),
             "shallow": lambda: ShallowPLRNN(5, 20, n_inputs, generator=generator()),
             "clipped": lambda: ShallowPLRNN(5, 20, n_inputs, clipped=True,
                                             generator=generator()),
             "alrnn": lambda: ALRNN(6, 2, n_inputs, generator=generator())}[kind]().to(dtype)
    with torch.no_grad():
        for parameter in model.parameters():  # C, W off the diagonal, h: all nonzero
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator(2)).to(dtype))
    z = torch.randn(500, model.n_latent, generator=generator(3)).to(dtype)
    adjoint = torch.randn(500, model.n_latent, generator=generator(4)).to(dtype)
    s = torch.randn(500, 2, generator=generator(5)).to(dtype) if with_inputs else None
    expected = torch.autograd.grad(model.step(z, s), list(model.parameters()), adjoint,
                                   allow_unused=True)
    got = model.parameter_gradients(z, adjoint, s)
    names = [name for name, _ in model.named_parameters()]
    assert len(got) == len(expected) == len(names)
    for name, g, e in zip(names, got, expected):
        assert (g is None) == (e is None), name
        if e is not None:
            assert g.dtype == e.dtype and torch.equal(g, e), name
    if with_inputs:  # without inputs C is unused: None, as autograd says
        assert model.parameter_gradients(z, adjoint)[names.index("C")] is None


def test_plrnn_step_is_the_published_equation():
    model = PLRNN(4, n_inputs=2, generator=generator()).double()
    with torch.no_grad():
        model.C.copy_(torch.randn(4, 2, dtype=torch.float64, generator=generator(2)))
    z = torch.randn(3, 4, dtype=torch.float64, generator=generator(3))
    s = torch.randn(3, 2, dtype=torch.float64, generator=generator(4))
    W = model.W.detach() * (1 - torch.eye(4, dtype=torch.float64))  # off-diagonal
    expected = model.A * z + torch.relu(z) @ W.T + model.h + s @ model.C.T
    torch.testing.assert_close(model.step(z, s), expected)


def test_alrnn_with_all_units_piecewise_linear_is_the_plrnn():
    plrnn, alrnn = PLRNN(5, generator=generator()), ALRNN(5, 5, generator=generator())
    z = torch.randn(4, 5, generator=generator(1))
    torch.testing.assert_close(alrnn.step(z), plrnn.step(z))


def test_alrnn_without_piecewise_units_is_linear():
    model = ALRNN(4, 0, generator=generator()).double()
    z1, z2 = (torch.randn(1, 4, dtype=torch.float64, generator=generator(i)) for i in (1, 2))
    h = model.step(torch.zeros_like(z1))
    torch.testing.assert_close(model.step(z1 + z2) - h, (model.step(z1) - h) + (model.step(z2) - h))


def test_clipped_shallow_plrnn_orbits_stay_bounded():
    model = ShallowPLRNN(3, 50, clipped=True, generator=generator())
    with torch.no_grad():
        model.A.copy_(torch.tensor([0.9, 0.8, 0.95]))
        model.W1.mul_(20.0)  # strong nonlinearity: the unclipped model would escape
    states, _ = model(n_steps=5_000, h0=torch.full((1, 3), 100.0))
    assert torch.isfinite(states).all() and states.abs().max() < 1e4


def test_region_codes_count_alrnn_subregions():
    model = ALRNN(6, 2, generator=generator())
    z = torch.randn(2_000, 6, generator=generator(5))
    codes = model.region_codes(z)
    assert set(codes.tolist()) == {0, 1, 2, 3}  # at most 2^P = 4 subregions
    expected = (z[:, 4] > 0).long() * 2 + (z[:, 5] > 0).long()
    torch.testing.assert_close(codes, expected)


def test_forward_matches_repeated_steps_and_validates_inputs():
    model = PLRNN(3, n_inputs=1, generator=generator())
    x = torch.randn(2, 10, 1, generator=generator(6))
    states, final = model(x)
    z = torch.zeros(2, 3)
    for t in range(10):
        z = model.step(z, x[:, t])
    torch.testing.assert_close(states[:, -1], z)
    torch.testing.assert_close(final, z)
    with pytest.raises(ValueError, match="input channels"):
        model(torch.randn(2, 10, 3))
    with pytest.raises(ValueError, match="discrete-time"):
        model(x, dt=torch.ones(2, 10))
    with pytest.raises(ValueError, match="P must be <= M"):
        ALRNN(3, 4)


def test_analysis_reads_the_exact_jacobian_of_a_module():
    # A linear ALRNN (P = 0) with a contracting A: one fixed point, exponents log|eig|.
    model = ALRNN(3, 0, generator=generator()).double()
    with torch.no_grad():
        model.A.copy_(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))
        model.W.mul_(0.1)
        model.h.copy_(torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64))
    J = (torch.diag(model.A) + model.W * (1 - torch.eye(3))).detach().numpy()
    (point,) = fixed_points(model, x0=np.zeros((4, 3)))
    np.testing.assert_allclose(point.location, np.linalg.solve(np.eye(3) - J, model.h.detach()),
                               atol=1e-10)
    spectrum = lyapunov_spectrum(model, x0=np.zeros((2, 3)), n_steps=2_000, transient=100)
    np.testing.assert_allclose(spectrum, np.sort(np.log(np.abs(np.linalg.eigvals(J))))[::-1],
                               atol=1e-6)
