"""The fitted forecasters as maps for tsrnn.analysis: the closed loop of the CfC, LTC, LEM,
HiPPO and LSSL forecasters on [y, state], against predict and finite differences."""

import warnings

import numpy as np
import pytest
import torch

from tsrnn import forecasting
from tsrnn.analysis import fixed_points, lyapunov_spectrum
from tsrnn.analysis.lyapunov import as_discrete_map
from tsrnn.systems import Lorenz63

SETTINGS = {
    "CfCForecaster": dict(hidden_size=6, backbone_units=8),
    "LTCForecaster": dict(hidden_size=5, ode_unfolds=2),
    "LEMForecaster": dict(hidden_size=5),
    "HiPPOForecaster": dict(hidden_size=5, state_size=4),
    "LSSLForecaster": dict(hidden_size=5, state_size=4),
}


@pytest.fixture(scope="module")
def series():
    return Lorenz63().simulate(400, seed=0)


@pytest.fixture(scope="module", params=list(SETTINGS))
def fitted(request, series):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too few rows for a validation split
        return getattr(forecasting, request.param)(
            max_epochs=2, sequence_length=16, random_state=0, **SETTINGS[request.param]
        ).fit(series)


def test_the_map_steps_as_predict_does(fitted):
    dmap = as_discrete_map(fitted)
    start = dmap.initial_states(1, seed=0)  # the context's end state, moved by 1e-3
    with torch.no_grad():
        z = start
        outputs = []
        for _ in range(3):
            z = dmap.step(z)
            outputs.append(z[0, : fitted.n_features_in_].numpy())
    forecast = fitted.y_scaler_.transform(fitted.predict(4))
    # predict's first value is the context run's own prediction (the map's y at the start);
    # the next ones are the map's steps, up to the 1e-3 jitter of the start.
    np.testing.assert_allclose(start[0, : fitted.n_features_in_].numpy(), forecast[0],
                               atol=1e-2)
    np.testing.assert_allclose(np.array(outputs), forecast[1:], atol=2e-2)


def test_the_map_jacobian_matches_finite_differences(fitted):
    dmap = as_discrete_map(fitted)
    z = dmap.initial_states(2, seed=1)
    jacobian = dmap.jacobian(z)
    eps = 1e-6
    with torch.no_grad():
        for i in range(0, dmap.dim, max(1, dmap.dim // 6)):
            dz = torch.zeros_like(z)
            dz[:, i] = eps
            column = (dmap.step(z + dz) - dmap.step(z - dz)) / (2 * eps)
            torch.testing.assert_close(jacobian[:, :, i], column, rtol=1e-5, atol=1e-7)


def test_a_few_tangents_by_forward_mode_match_the_jacobian(fitted):
    # Lyapunov spectra push k << dim tangents through the step by forward mode, via a plain
    # torch copy of the cells (the compiled kernels have no forward-mode rule).
    dmap = as_discrete_map(fitted)
    z = dmap.initial_states(3, seed=2)
    frame = torch.linalg.qr(torch.randn(3, dmap.dim, 2, dtype=torch.float64,
                                        generator=torch.Generator().manual_seed(0)))[0]
    stepped, pushed = dmap.advance(z, frame)
    torch.testing.assert_close(stepped, dmap.step(z), rtol=0, atol=0)
    torch.testing.assert_close(pushed, dmap.jacobian(z) @ frame, rtol=1e-10, atol=1e-12)
    # The estimator's own module keeps its fast paths.
    for part in fitted.module_.modules():
        assert getattr(part, "fast_path", True) is True
        assert getattr(part, "implementation", "auto") in ("auto", "native", "fused")


def test_an_adaptive_ltc_takes_its_tangents_from_the_jacobian(series):
    # vmapped forward mode cannot pass torchdiffeq's autograd Functions; the LTC's map takes
    # its tangents from the reverse-mode Jacobian.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = forecasting.LTCForecaster(
            hidden_size=4, solver="adaptive", max_epochs=1, sequence_length=8, random_state=0
        ).fit(series[:120])
    dmap = as_discrete_map(fitted)
    z = dmap.initial_states(2, seed=0)
    frame = torch.eye(dmap.dim, dtype=torch.float64)[None, :, :1].expand(2, -1, -1)
    _, pushed = dmap.advance(z, frame)
    torch.testing.assert_close(pushed, dmap.jacobian(z) @ frame)


def test_spectra_and_fixed_points_of_fitted_forecasters(fitted):
    spectrum = lyapunov_spectrum(fitted, n_exponents=2, n_steps=60, transient=20,
                                 n_trajectories=2)
    assert spectrum.shape == (2,) and np.all(np.isfinite(spectrum))
    assert spectrum[0] >= spectrum[1]
    if isinstance(fitted, forecasting.HiPPOForecaster):
        return  # its state holds the elapsed time, which grows: no fixed points
    for point in fixed_points(fitted, n_initial=4, max_iterations=50, tolerance=1e-6):
        assert point.residual < 1e-6


@pytest.mark.parametrize("name, settings, match", [
    ("ChimeraForecaster", dict(horizon=2, d_model=4, d_state=4, n_layers=1),
     "carries no state between steps"),
    ("WARPForecaster", dict(root_width=4, hyper_width=4), "not an autonomous map"),
])
def test_window_and_time_coordinate_models_say_why_they_have_no_map(series, name, settings,
                                                                    match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(forecasting, name)(max_epochs=1, sequence_length=16, random_state=0,
                                           **settings).fit(series)
    with pytest.raises(TypeError, match=match):
        lyapunov_spectrum(model)


@pytest.mark.parametrize("name", ["ESN", "DeepResESN", "NVAR", "GRUForecaster",
                                  "CfCForecaster"])
def test_latent_to_data_reads_the_forecast_off_a_map_state(name, series):
    # A fixed point's location is a state of the closed-loop map ([y, hidden state], or
    # [reservoir state, y], or NVAR's delays): latent_to_data gives its y in data units, as
    # the DSR models' does.
    from tsrnn import reservoir

    options = dict(random_state=0)
    if name in ("GRUForecaster", "CfCForecaster"):
        options.update(max_epochs=2, sequence_length=16, hidden_size=5)
    module = getattr(reservoir, name, None) or getattr(forecasting, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too few rows for a validation split
        model = (module(**options) if name != "NVAR" else module()).fit(series)
    dmap = model.as_discrete_map()
    # The map starts from the end of the training data, where y is predict's first value
    # (jittered by at most 1e-3).
    start = dmap.initial_states(1, 0).numpy()
    np.testing.assert_allclose(model.latent_to_data(start)[0], model.predict(1).reshape(-1),
                               atol=0.05 * series.std())
    assert model.latent_to_data(np.repeat(start, 4, 0)[None]).shape == (1, 4, 3)
    with pytest.raises(ValueError, match="closed-loop map"):
        model.latent_to_data(np.zeros(dmap.dim + 1))


def test_the_lssl_map_forms_its_discretisation_once(series, monkeypatch):
    # Every step of the map is a regular step with the same parameters: Ā (H solves of
    # N x N systems) is formed when the map is made, not at each of its steps.
    import tsrnn.nn.lssl as lssl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too few rows for a validation split
        model = forecasting.LSSLForecaster(max_epochs=1, sequence_length=16, random_state=0,
                                           **SETTINGS["LSSLForecaster"]).fit(series)
    calls = []
    real = lssl.discretise
    monkeypatch.setattr(lssl, "discretise", lambda *a, **k: calls.append(1) or real(*a, **k))
    dmap = as_discrete_map(model)
    made = len(calls)
    assert made == 2  # once for the stepping copy, once for the tangents' copy
    z = dmap.initial_states(2, seed=0)
    frame = torch.linalg.qr(torch.randn(2, dmap.dim, 2, dtype=torch.float64))[0]
    with torch.no_grad():
        for _ in range(5):
            z = dmap.step(z)
    dmap.advance(z, frame)
    dmap.jacobian(z)
    assert len(calls) == made  # nor for the context run of initial_states
    # The estimator's own module is not left holding anything.
    assert all(getattr(part, "_held_discretisation", None) is None
               for part in model.module_.modules())
