"""Next-generation reservoir computing (NVAR)."""

import numpy as np
import pytest
import torch

from tsrnn.analysis import lyapunov_spectrum
from tsrnn.reservoir import NVAR
from tsrnn.systems import Henon, Lorenz63


def test_feature_vector_has_the_papers_28_entries_for_lorenz():
    model = NVAR(delays=2, stride=1, order=2).fit(Lorenz63().simulate(300, dt=0.025))
    # 1 constant + 6 linear (3 dims x 2 delays) + 21 unique quadratic monomials.
    assert model.n_output_features_ == 28
    assert model.readout_weights_.shape == (27, 3)


def test_features_are_the_delays_then_their_monomials():
    model = NVAR(delays=2, stride=2, order=2)
    window = torch.arange(10, dtype=torch.float64).reshape(1, 5, 2)  # rows t-4 .. t
    phi = model.features(window)[0]
    # y_t = (8, 9), y_{t-2} = (4, 5)
    linear = torch.tensor([8.0, 9.0, 4.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(phi[:4], linear)
    products = [linear[i] * linear[j] for i in range(4) for j in range(i, 4)]
    torch.testing.assert_close(phi[4:], torch.stack(products))


def test_nvar_recovers_the_henon_map_exactly():
    # x' = 1 - a x^2 + y, y' = b x is linear in [1, x, y, x^2, xy, y^2]: the regression must
    # find it to round-off, and the closed loop must then iterate the Henon map itself.
    data = Henon().simulate(400, transient=100)
    model = NVAR(delays=1, order=2, increment=False, ridge=0.0, scale=False).fit(data)
    a, b = 1.4, 0.3
    expected = np.zeros((5, 2))  # rows: x, y, x^2, xy, y^2
    expected[1, 0], expected[2, 0], expected[0, 1] = 1.0, -a, b
    np.testing.assert_allclose(model.readout_weights_, expected, atol=1e-9)
    np.testing.assert_allclose(model.readout_intercept_, [1.0, 0.0], atol=1e-9)
    forecast = model.predict(15, context=data[:200])
    np.testing.assert_allclose(forecast, data[200:215], atol=1e-6)


def test_gauthier_lorenz_setting_reaches_the_papers_accuracy():
    dt, warmup, train, lyapunov_points = 0.025, 200, 400, round(1.104 / 0.025)
    # The paper's initial condition, in full.
    y = Lorenz63().simulate(2_000, dt=dt,
                            x0=[17.67715816276679, 12.931379185960404, 43.91404334248268])
    model = NVAR(delays=2, stride=1, order=2, ridge=2.5e-6).fit(y[warmup - 1:warmup + train])
    start = warmup + train
    forecast = model.predict(lyapunov_points, context=y[start - 2:start])
    truth = y[start:start + lyapunov_points]
    nrmse = np.sqrt(np.mean((truth - forecast) ** 2) / y.var(0).sum())
    assert nrmse < 3e-3  # paper: ~2e-3 over one Lyapunov time


def test_context_shorter_than_the_delays_is_refused():
    model = NVAR(delays=3, stride=2).fit(Lorenz63().simulate(300, dt=0.025))
    with pytest.raises(ValueError, match="at least 5 steps"):
        model.predict(3, context=Lorenz63().simulate(4, dt=0.025))


def test_exogenous_inputs_are_refused():
    y = Lorenz63().simulate(300, dt=0.025)
    with pytest.raises(ValueError, match="exogenous"):
        NVAR().fit(y, X=np.ones((300, 1)))


def test_ill_conditioned_features_warn():
    y = Lorenz63().simulate(400, dt=0.025)
    with pytest.warns(UserWarning, match="ill-conditioned"):
        NVAR(delays=3, order=3, ridge=0.0, scale=False).fit(y)


def test_condition_number_is_that_of_the_regularised_centred_normal_equations():
    y = Lorenz63().simulate(400, dt=0.025)
    model = NVAR(delays=2, order=2, ridge=1e-3, scale=False).fit(y)
    span = model._span
    windows = np.stack([y[t - span:t] for t in range(span, len(y))])
    phi = model.features(torch.from_numpy(windows)).numpy()
    centred = phi - phi.mean(0)
    eigenvalues = np.linalg.eigvalsh(centred.T @ centred + 1e-3 * np.eye(phi.shape[1]))
    # ~2e11: the smallest eigenvalue carries round-off of eps * 2e11 relative, whatever the
    # order of the sums (streamed blocks there, one product here).
    assert model.condition_number_ == pytest.approx(eigenvalues[-1] / eigenvalues[0],
                                                    rel=1e-4)


def test_save_load_and_discrete_map(tmp_path):
    y = Lorenz63().simulate(1_000, dt=0.025, transient=200)
    model = NVAR().fit(y[:600])
    loaded = NVAR.load(model.save(tmp_path / "nvar.pt"))
    np.testing.assert_array_equal(loaded.predict(50), model.predict(50))
    spectrum = lyapunov_spectrum(model, n_exponents=1, dt=0.025, n_steps=2_000,
                                 transient=200, n_trajectories=4)
    assert 0.6 < spectrum[0] < 1.2  # the learned map is chaotic like Lorenz-63 (0.906)


@pytest.mark.parametrize("settings", [
    dict(), dict(delays=3, stride=2, order=3), dict(order=1, increment=False),
    dict(constant=False, delays=1),
])
def test_closed_loop_tangent_is_the_jacobian_of_the_step(settings):
    # The analytic tangent (product rule over each monomial) against forward-mode autodiff.
    model = NVAR(**settings).fit(Lorenz63().simulate(3_000, seed=0))
    dmap = model.as_discrete_map(dt=0.01)
    z = dmap.initial_states(3, seed=0)
    frame = torch.randn(3, dmap.dim, 4, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(0))
    stepped, pushed = dmap.tangent(z, frame)
    np.testing.assert_array_equal(stepped.numpy(), dmap.step(z).numpy())
    jacobian = torch.func.vmap(torch.func.jacfwd(lambda v: dmap.step(v[None])[0]))(z)
    np.testing.assert_allclose(pushed.numpy(), (jacobian @ frame).numpy(), rtol=1e-12,
                               atol=1e-12)
