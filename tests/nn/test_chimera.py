"""Tests of tsrnn.nn.chimera: the equations, causality in time, variate directions, state."""

import math

import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from tsrnn.nn import Chimera
from tsrnn.nn.chimera import SelectiveSSM2D


def _model(n_var=4, **options):
    options = {"d_model": 6, "d_state": 3, "n_layers": 2, **options}
    return Chimera(n_var, generator=torch.Generator().manual_seed(0), **options).double()


def _x(batch=2, length=11, n_var=4, seed=1):
    return torch.randn((batch, length, n_var), generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def test_chimera_shapes_and_state_layout():
    model = _model(n_var=4, output_size=3, season=5)
    out, state = model(_x())
    assert out.shape == (2, 11, 12)
    # 2 layers x 2 heads x 2 directions; the seasonal head keeps `season` columns.
    assert len(state) == 8
    lags = [s.shape[2] for s in state]
    assert lags == [1, 1, 5, 5, 1, 1, 5, 5]
    assert all(s.shape[:2] == (2, 4) and s.shape[3:] == (2, 6, 3) for s in state)


def _reference_head(head: SelectiveSSM2D, u: torch.Tensor) -> torch.Tensor:
    """Cell-by-cell evaluation of one head straight from the equations (float64)."""
    batch, n_var, length, _ = u.shape
    steps = F.softplus(head.dt_proj(u))
    dt1, dt2 = steps[..., : head.d_model], steps[..., head.d_model:]
    b1, b2, c1, c2 = head.bc_proj(u).split(head.d_state, dim=-1)
    a1, a4 = -torch.exp(head.log_a1), -torch.exp(head.log_a4)
    # Continuous couplings chosen so that |A2| <= |A1|: A2 = -A1 tanh(w2).
    a2, a3 = -a1 * torch.tanh(head.w2), -a4 * torch.tanh(head.w3)
    lag = head.lag
    h1 = {}
    h2 = {}
    zero = torch.zeros((batch, head.d_model, head.d_state), dtype=u.dtype)
    order = range(n_var - 1, -1, -1) if head.reverse else range(n_var)
    previous_v = {v: (v + 1 if head.reverse else v - 1) for v in range(n_var)}
    y = torch.zeros_like(u)
    for t in range(length):
        for v in order:
            e1 = torch.exp(dt1[:, v, t, :, None] * a1)
            e4 = torch.exp(dt2[:, v, t, :, None] * a4)
            x = u[:, v, t, :, None]
            # ZOH with the cross state and the input held over the step: (e^{ΔA} - 1) A^-1.
            zoh1, zoh4 = (e1 - 1) / a1, (e4 - 1) / a4
            h1_back = h1.get((v, t - lag), zero)
            h2_back = h2.get((v, t - lag), zero)
            h1[v, t] = e1 * h1_back + zoh1 * a2 * h2_back + zoh1 * b1[:, v, t, None, :] * x
            up = previous_v[v]
            h1_up = h1.get((up, t), zero)
            h2_up = h2.get((up, t), zero)
            h2[v, t] = zoh4 * a3 * h1_up + e4 * h2_up + zoh4 * b2[:, v, t, None, :] * x
            y[:, v, t] = ((h1[v, t] * c1[:, v, t, None, :]).sum(-1)
                          + (h2[v, t] * c2[:, v, t, None, :]).sum(-1) + head.skip * u[:, v, t])
    return y


@pytest.mark.parametrize("lag", [1, 3])
@pytest.mark.parametrize("reverse", [False, True])
def test_selective_ssm2d_matches_cellwise_equations(lag, reverse):
    generator = torch.Generator().manual_seed(3)
    head = SelectiveSSM2D(4, 3, (1e-1, 1.0), lag=lag, reverse=reverse,
                          generator=generator).double()
    with torch.no_grad():  # couplings large enough to matter
        head.w2.normal_(0, 1, generator=generator)
        head.w3.normal_(0, 1, generator=generator)
    u = torch.randn((2, 3, 7, 4), generator=generator, dtype=torch.float64)
    y, _ = head(u)
    torch.testing.assert_close(y, _reference_head(head, u), rtol=0, atol=1e-12)


def test_discretisation_is_the_exact_zoh_with_held_cross_state_and_input():
    # For dh1/dt = A1 h1 + A2 h2 + B1 x with h2 and x constant over a step Δ, the exact step
    # is the exponential of the augmented matrix [[A1, A2, B1], [0, 0, 0], [0, 0, 0]].
    a1, w2, b1, delta = -2.5, 0.7, 1.3, 0.37
    a2 = -a1 * math.tanh(w2)
    exact = scipy.linalg.expm(delta * torch.tensor([[a1, a2, b1], [0, 0, 0], [0, 0, 0]],
                                                   dtype=torch.float64).numpy())[0]
    abar1 = math.exp(delta * a1)
    # The module's closed forms: Ā1, Ā2 = (1 - Ā1) tanh(w2), B̄1 = (1 - Ā1) / |A1| B1.
    assert abs(exact[0] - abar1) < 1e-14
    assert abs(exact[1] - (1 - abar1) * math.tanh(w2)) < 1e-14
    assert abs(exact[2] - (1 - abar1) / abs(a1) * b1) < 1e-14


def test_chimera_is_causal_in_time():
    model = _model(season=3)
    x = _x(length=12)
    out, _ = model(x)
    changed = x.clone()
    changed[:, 7:] += torch.randn_like(changed[:, 7:])
    out_changed, _ = model(changed)
    # Equal up to float64 round-off (a batched matmul may pick another kernel for other
    # data); a dependence on later inputs would show at order 1e-3.
    torch.testing.assert_close(out[:, :7], out_changed[:, :7], rtol=0, atol=1e-12)
    assert (out[:, 7:] - out_changed[:, 7:]).abs().amax() > 1e-3
    # And by gradients: d out[:, 4] / d x[:, 5:] is exactly zero.
    x = x.clone().requires_grad_(True)
    model(x)[0][:, 4].sum().backward()
    assert torch.count_nonzero(x.grad[:, 5:]) == 0
    assert torch.count_nonzero(x.grad[:, :5]) > 0


def test_forward_only_variate_scan_reads_only_earlier_variates_and_bidirectional_all():
    x = _x(n_var=5)
    changed = x.clone()
    changed[:, :, 3] += 1.0
    one_way = _model(n_var=5, bidirectional=False)
    out, _ = one_way(x)
    out_changed, _ = one_way(changed)
    # Variates 0..2 come before the changed variate 3 in the forward scan.
    torch.testing.assert_close(out[:, :, :3], out_changed[:, :, :3], rtol=0, atol=1e-12)
    assert (out[:, :, 4] - out_changed[:, :, 4]).abs().amax() > 1e-4
    two_way = _model(n_var=5, bidirectional=True)
    out, _ = two_way(x)
    out_changed, _ = two_way(changed)
    # The backward scan carries variate 3 to variate 0.
    assert (out[:, :, 0] - out_changed[:, :, 0]).abs().amax() > 1e-4


@pytest.mark.parametrize("cut", [1, 2, 7])
@pytest.mark.parametrize("mix_variates", [0, 3])
def test_chimera_state_continues_a_sequence_exactly(cut, mix_variates):
    # cut=2 is shorter than the seasonal lag (4): the state mixes h0 and new columns; with
    # mix_variates=3 a one-step piece is shorter than the embedded 3 steps.
    model = _model(season=4, mix_variates=mix_variates)
    x = _x(length=10)
    whole, final = model(x)
    first, state = model(x[:, :cut])
    middle, state = model(x[:, cut:cut + 1], h0=state)
    rest, state = model(x[:, cut + 1:], h0=state)
    torch.testing.assert_close(torch.cat([first, middle, rest], 1), whole, rtol=0, atol=1e-12)
    assert len(state) == len(final) == 8 + (mix_variates > 1)
    for got, want in zip(state, final):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["wavefront", "sequential"])
def test_chimera_scan_methods_agree(method):
    x = _x(length=6)
    fast = _model(season=2)
    other = _model(season=2, scan_method=method)
    other.load_state_dict(fast.state_dict())
    torch.testing.assert_close(other(x)[0], fast(x)[0], rtol=0, atol=1e-12)


def test_chimera_dt_shapes_agree_and_batch_rows_are_independent():
    model = _model()
    x = _x(batch=3)
    dt = torch.rand((3, 11), generator=torch.Generator().manual_seed(4),
                    dtype=torch.float64) + 0.5
    out, _ = model(x, dt=dt)
    torch.testing.assert_close(model(x, dt=dt[..., None])[0], out, rtol=0, atol=0)
    for i in range(3):
        torch.testing.assert_close(model(x[i:i + 1], dt=dt[i:i + 1])[0], out[i:i + 1],
                                   rtol=0, atol=1e-12)
    # dt = 1 everywhere is the default sampling step.
    torch.testing.assert_close(model(x, dt=torch.ones_like(dt))[0], model(x)[0],
                               rtol=0, atol=1e-12)
    assert (model(x, dt=2 * torch.ones_like(dt))[0] - model(x)[0]).abs().amax() > 1e-6


def test_chimera_stays_bounded_with_strong_couplings():
    model = _model(n_var=3, n_layers=1, d_model=4, d_state=2, season=2)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("w2", "w3")):
                parameter.fill_(5.0)  # |tanh| -> 1: the infinity-norm bound is tight
    x = torch.randn((1, 400, 3), generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    _, state = model(x)
    assert all(torch.isfinite(s).all() and s.abs().amax() < 1e3 for s in state)


def test_chimera_float32_gradients_are_finite():
    model = Chimera(3, d_model=8, d_state=4, generator=torch.Generator().manual_seed(0))
    x = torch.randn((4, 32, 3), generator=torch.Generator().manual_seed(1))
    out, _ = model(x)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_chimera_rejects_bad_input():
    model = _model()
    with pytest.raises(ValueError, match=r"shape \(B, L, 4\)"):
        model(_x(n_var=3))
    with pytest.raises(ValueError, match=r"shape \(B, L, 4\)"):
        model(_x()[0])
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.ones((1, 3, 4), dtype=torch.int64))
    bad = _x()
    bad[0, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(bad)
    with pytest.raises(ValueError, match="dt must be positive"):
        model(_x(), dt=-torch.ones((2, 11), dtype=torch.float64))
    with pytest.raises(ValueError, match="dt must be a number or have shape"):
        model(_x(), dt=torch.ones((2, 11, 2), dtype=torch.float64))
    with pytest.raises(ValueError, match="h0 must be the list of 8"):
        model(_x(), h0=[torch.zeros(1)])
    _, state = model(_x())
    with pytest.raises(ValueError, match=r"h0\[0\] must have shape"):
        model(_x(batch=3), h0=state)
    with pytest.raises(ValueError, match=r"unknown head 'weekly'.*'trend'"):
        Chimera(3, heads=("weekly",))
    with pytest.raises(ValueError, match="unknown scan_method"):
        Chimera(3, scan_method="fft")
    with pytest.raises(ValueError, match="season must be > 0"):
        Chimera(3, season=0)


def test_generator_alone_fixes_the_initialisation():
    torch.manual_seed(1)
    first = Chimera(3, season=2, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(2)  # another global state must not matter
    second = Chimera(3, season=2, generator=torch.Generator().manual_seed(0))
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("steps", [1, 3])
def test_mix_variates_embeds_the_cross_sections_of_the_last_steps_only(steps):
    x = _x(n_var=5, length=9)
    model = _model(n_var=5, bidirectional=False, mix_variates=steps, season=3)
    # The embedding of cell (v, t) is lift(x[v, t]) + E[v] + sum_j M_j[v] x[:, t-j], by its
    # equation (zeros before the first step).
    lifted = model.lift(x.transpose(1, 2)[..., None]) + model.variate_embedding[:, None]
    weight = model.variate_mix.weight.reshape(5, model.d_model, 5, steps)  # [..., K-1]: t
    expected = lifted.clone()
    for j in range(steps):
        shifted = torch.zeros_like(x)
        shifted[:, j:] = x[:, :x.shape[1] - j]  # x[:, t - j]
        expected += torch.einsum("vdu,btu->bvtd", weight[..., steps - 1 - j], shifted)
    captured = {}
    hook = model.layers[0].register_forward_pre_hook(
        lambda module, args: captured.setdefault("u", args[0]))
    out, _ = model(x)
    hook.remove()
    torch.testing.assert_close(captured["u"], expected, rtol=1e-12, atol=1e-12)
    # A later variate at step 6 now reaches variate 0 at step 6 (not without mixing: the
    # forward variate scan reads only earlier variates), and nothing before step 6.
    changed = x.clone()
    changed[:, 6, 3] += 1.0
    out_changed, _ = model(changed)
    torch.testing.assert_close(out[:, :6], out_changed[:, :6], rtol=0, atol=1e-12)
    assert (out[:, 6, 0] - out_changed[:, 6, 0]).abs().amax() > 1e-4
    with pytest.raises(ValueError, match="mix_variates must be a non-negative integer"):
        _model(mix_variates=-1)
