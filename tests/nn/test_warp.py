"""Tests of tsrnn.nn.warp: the WARP module, its roots and its scans.

The reference for every fast path is the step-by-step recurrence θ_t = A θ_{t-1} + B Δu_t
evaluated in float64; the mass–spring–damper root is checked against scipy's ODE solver.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from tsrnn.datasets.oscillator import mass_spring_damper_solution
from tsrnn.nn import WARP
from tsrnn.nn.warp import (
    MassSpringDamperRoot,
    MLPRoot,
    chunked_scan,
    dense_scan,
    dense_scan_sequential,
)

TRANSITIONS = ["dense", "diagonal", "lowrank"]


def perturbed(model: WARP, seed: int = 0) -> WARP:
    """A float64 copy with every parameter moved off its initialisation (A stays near I,
    scaled so that θ neither explodes nor vanishes over the test lengths)."""
    model = model.double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.2 / p.shape[0] ** 0.5 if name in ("A", "U", "V") else 0.05
            p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return model


def series(batch=3, length=29, channels=2, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, channels, generator=generator, dtype=torch.float64)


# ====================================================================== scans
@pytest.mark.parametrize("length", [1, 2, 7, 16, 33, 100])
def test_dense_doubling_and_chunked_scans_equal_sequential_loop(length):
    generator = torch.Generator().manual_seed(length)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=generator, dtype=torch.float64))
    A = 0.97 * q + 0.05 * torch.randn(6, 6, generator=generator, dtype=torch.float64)
    b = torch.randn(2, length, 6, generator=generator, dtype=torch.float64)
    reference = dense_scan_sequential(A, b)
    # float64 round-off, amplified by at most log2(L) (doubling) or √L (chunks) products
    torch.testing.assert_close(dense_scan(A, b), reference, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(chunked_scan(A, b), reference, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(chunked_scan(A, b, chunk=3), reference, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("transition,dense_scan_kind", [
    ("dense", "loop"), ("dense", "chunked"), ("dense", "doubling"), ("diagonal", "auto"),
    ("lowrank", "loop"), ("lowrank", "chunked"), ("lowrank", "doubling")])
@pytest.mark.parametrize("irregular", [False, True])
def test_warp_scan_equals_sequential_in_float64(transition, dense_scan_kind, irregular):
    model = perturbed(WARP(2, transition=transition, init_window=3, rank=3,
                           dense_scan=dense_scan_kind))
    x = series()
    dt = None
    if irregular:
        generator = torch.Generator().manual_seed(1)
        dt = 0.5 + torch.rand(x.shape[:2], generator=generator, dtype=torch.float64)
    out_scan, theta_scan = model.scan(x, dt=dt)
    out_loop, theta_loop = model.sequential(x, dt=dt)
    assert out_scan.shape == (3, 29, 2) and theta_scan.shape == (3, model.n_params)
    # float64 round-off (the doubling scan sums in a different order than the loop)
    torch.testing.assert_close(out_scan, out_loop, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(theta_scan, theta_loop, rtol=1e-10, atol=1e-10)


class _TimeRoot(torch.nn.Module):
    """A root that returns the time it is evaluated at."""

    n_params, output_size = 1, 1

    def forward(self, tau, theta):
        return tau


@pytest.mark.parametrize("mode", ["scan", "sequential"])
def test_warp_decodes_each_output_at_the_time_of_the_sample_it_predicts(mode):
    # Output t predicts x_{t+1}: with irregular gaps it must be decoded at tau_{t+1}, not
    # at tau_t plus the gap before step t (outputs 1 and 2 below were decoded at 2 and 11).
    model = WARP(1, root=_TimeRoot(), time_scale=1.0, init="learned", mode=mode)
    x = torch.zeros(1, 5, 1)
    dt = torch.tensor([[1.0, 1.0, 5.0, 1.0, 2.0]])
    with torch.no_grad():
        out, _ = model(x, dt=dt)
    # tau = [0, 1, 6, 7, 9]; the last output repeats the last gap (2): 11.
    assert out[0, :, 0].tolist() == [1.0, 6.0, 7.0, 9.0, 11.0]
    with torch.no_grad():
        regular, _ = model(x)
    assert regular[0, :, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


@pytest.mark.parametrize("transition", TRANSITIONS)
@pytest.mark.parametrize("dense_scan_kind", ["loop", "chunked", "doubling"])
def test_warp_scan_and_sequential_gradients_agree(transition, dense_scan_kind):
    model = perturbed(WARP(2, transition=transition, rank=2, dense_scan=dense_scan_kind))
    x = series(length=12)
    grads = []
    for method in (model.scan, model.sequential):
        model.zero_grad()
        out, theta = method(x)
        (out.pow(2).mean() + theta.pow(2).mean()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-8, atol=1e-10,
                                   msg=f"gradient of {name}")


def test_lowrank_transition_matrix_is_diag_plus_uv():
    model = perturbed(WARP(1, transition="lowrank", rank=2))
    expected = torch.diag(model.a) + model.U @ model.V.T
    torch.testing.assert_close(model.transition_matrix(), expected)
    theta = torch.randn(4, model.n_params, dtype=torch.float64)
    torch.testing.assert_close(model.apply_transition(theta), theta @ expected.T)


# ====================================================================== behaviour
@pytest.mark.parametrize("transition", TRANSITIONS)
def test_identity_transition_and_zero_b_keep_theta_constant(transition):
    model = WARP(2, transition=transition).double()  # A = I, B = 0 at initialisation
    x = series()
    out, theta_final = model(x)
    theta0 = model.initial_state(x)
    torch.testing.assert_close(theta_final, theta0, rtol=0, atol=1e-14)
    # every output is the root with θ_0, evaluated one step ahead: τ = (t + 1) / (L - 1)
    tau = (torch.arange(1, 30, dtype=torch.float64) / 28).expand(3, 29)[..., None]
    expected = model.root(tau, theta0[:, None].expand(-1, 29, -1))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-14)


def test_mlp_root_equals_torch_mlp_with_the_same_weights():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(1, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4),
                              torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()
    root = MLPRoot(3, width=5, depth=2, activation="tanh")
    root.layer_sizes = [(1, 5), (5, 4), (4, 3)]  # widths differ per layer in this check
    root.n_params = sum(o * i + o for i, o in root.layer_sizes)
    theta = torch.cat([torch.cat([layer.weight.reshape(-1), layer.bias])
                       for layer in net if isinstance(layer, torch.nn.Linear)])
    tau = torch.linspace(0, 1, 11, dtype=torch.float64)[:, None]
    torch.testing.assert_close(root(tau, theta.expand(11, -1)), net(tau))


def test_mlp_root_initial_parameters_follow_torch_default_bounds():
    root = MLPRoot(2, width=8, depth=1)
    theta = root.initial_parameters(torch.Generator().manual_seed(0))
    assert theta.shape == (root.n_params,)
    first = theta[: 8 + 8]  # fan_in 1: bound 1
    second = theta[16:]     # fan_in 8: bound 1/sqrt(8)
    assert first.abs().max() <= 1 and second.abs().max() <= 8 ** -0.5
    assert first.abs().max() > 0.5  # not collapsed to zero


@pytest.mark.parametrize("omega,zeta", [(2.0, 0.1), (1.3, 0.7), (1.0, 1.8)])
def test_mass_spring_damper_root_matches_ode_solver(omega, zeta):
    root = MassSpringDamperRoot(time_unit=4.0).double()
    raw = lambda v: float(np.log(np.expm1(v)))  # noqa: E731  inverse softplus
    theta = torch.tensor([0.7, -0.4, raw(omega), raw(zeta)], dtype=torch.float64)
    tau = torch.linspace(0, 1, 41, dtype=torch.float64)[:, None]
    ours = root(tau, theta.expand(41, -1)).numpy()
    solution = solve_ivp(lambda t, s: [s[1], -2 * zeta * omega * s[1] - omega ** 2 * s[0]],
                         (0, 4.0), [0.7, -0.4], t_eval=tau[:, 0].numpy() * 4.0, rtol=1e-11,
                         atol=1e-12)
    np.testing.assert_allclose(ours, solution.y.T, atol=1e-8)  # solver tolerance
    np.testing.assert_allclose(
        ours, mass_spring_damper_solution(tau[:, 0].numpy() * 4.0, 0.7, -0.4, omega, zeta),
        atol=1e-12)


def test_mass_spring_damper_root_gradients_are_finite_in_both_regimes():
    root = MassSpringDamperRoot(time_unit=3.0).double()
    theta = torch.tensor([[0.5, 0.1, 1.0, -2.0], [0.5, 0.1, 1.0, 2.0]], dtype=torch.float64,
                         requires_grad=True)  # ζ < 1 and ζ > 1
    tau = torch.full((2, 1), 0.6, dtype=torch.float64)
    root(tau, theta).sum().backward()
    assert torch.isfinite(theta.grad).all() and (theta.grad[:, 2:] != 0).all()


def test_physics_warp_with_true_parameters_predicts_the_next_state_exactly():
    dt, length, omega, zeta = 0.1, 40, 2.2, 0.15
    y = mass_spring_damper_solution(np.arange(length + 1) * dt, 0.8, 0.3, omega, zeta)
    root = MassSpringDamperRoot(time_unit=length * dt)
    model = WARP(2, root=root, time_scale=length).double()
    raw = lambda v: float(np.log(np.expm1(v)))  # noqa: E731
    h0 = torch.tensor([[0.8, 0.3, raw(omega), raw(zeta)]], dtype=torch.float64)
    x = torch.as_tensor(y[None, :-1])
    out, _ = model(x, h0=h0)
    np.testing.assert_allclose(out[0].detach().numpy(), y[1:], atol=1e-12)


def test_gradients_reach_every_trained_parameter():
    model = WARP(2, transition="lowrank", init_window=2)
    out, _ = model(series().float())
    out.pow(2).mean().backward()
    for name in ("a", "U", "B", "theta_base", "hyper_linear.weight", "hypernetwork.4.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_sequential_with_full_feedback_equals_rollout():
    model = perturbed(WARP(2, time_scale=20.0, transition="diagonal"))
    x = series(length=15)
    feedback = torch.ones(x.shape[:2], dtype=torch.bool)
    out, _ = model.sequential(x, feedback=feedback)
    rolled = model.rollout(x[:, :1], 15)
    torch.testing.assert_close(out, rolled, rtol=1e-12, atol=1e-12)


def test_rollout_after_context_continues_the_teacher_forced_outputs():
    model = perturbed(WARP(2, time_scale=30.0, transition="dense"))
    x = series(length=25)
    out, _ = model(x)
    rolled = model.rollout(x[:, :10], 5)
    torch.testing.assert_close(rolled[:, 0], out[:, 9])
    assert torch.isfinite(rolled).all()


def test_predicted_std_is_positive_and_learned_init_ignores_the_data():
    model = WARP(2, predict_std=True, std_min=1e-3, init="learned").double()
    x = series()
    out, _ = model(x)
    assert out.shape == (3, 29, 4) and (out[..., 2:] >= 1e-3).all()
    torch.testing.assert_close(model.initial_state(x), model.theta_base.expand(3, -1))


def test_h0_replaces_the_hypernetwork():
    model = perturbed(WARP(2))
    x = series()
    h0 = torch.zeros(3, model.n_params, dtype=torch.float64)
    out, _ = model(x, h0=h0)
    out_default, _ = model(x)
    assert not torch.allclose(out, out_default)
    assert (model.sequential(x, h0=h0)[0] - out).abs().max() < 1e-10


# ====================================================================== bad input
def test_bad_input_gets_clear_errors():
    model = WARP(2, init_window=4)
    x = torch.randn(2, 10, 2)
    with pytest.raises(ValueError, match=r"shape \(B, L, 2\)"):
        model(torch.randn(2, 10, 3))
    with pytest.raises(ValueError, match="NaN or inf"):
        model(torch.where(torch.arange(10)[None, :, None] == 3, torch.nan, x))
    with pytest.raises(ValueError, match="init_window=4"):
        model(x[:, :3])
    with pytest.raises(ValueError, match="dt must be a number or have shape"):
        model(x, dt=torch.ones(2, 9))
    with pytest.raises(ValueError, match="non-negative"):
        model(x, dt=-torch.ones(2, 10))
    with pytest.raises(ValueError, match="h0 must have shape"):
        model(x, h0=torch.zeros(2, 3))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.ones(2, 10, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="'dense', 'diagonal', 'lowrank'"):
        WARP(2, transition="full")
    with pytest.raises(ValueError, match="expected one of 'mlp'"):
        WARP(2, root="siren")
    with pytest.raises(ValueError, match="returns 2 channels"):
        WARP(3, root=MassSpringDamperRoot())
    with pytest.raises(ValueError, match="n_params"):
        WARP(1, root=lambda tau, theta: tau)


def test_custom_callable_root_with_declared_size():
    class Line:
        n_params, output_size = 2, 1

        def __call__(self, tau, theta):
            return theta[..., :1] + theta[..., 1:] * tau

    model = WARP(1, root=Line(), init="learned").double()
    with torch.no_grad():
        model.theta_base.copy_(torch.tensor([1.0, 2.0]))
    out, _ = model(torch.zeros(1, 5, 1, dtype=torch.float64))
    torch.testing.assert_close(out[0, :, 0], 1 + 2 * torch.arange(1, 6, dtype=torch.float64) / 4)
