"""Tests of the public `simulate` contract (API.md, tsrnn.systems): shapes, default step,
transient, seeds, observation noise, return types, input validation, divergence, and
`get_system`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsrnn.exceptions import DivergenceError
from tsrnn.systems import (
    SYSTEMS,
    Flow,
    Henon,
    Logistic,
    Lorenz63,
    Lorenz96,
    Map,
    Rossler,
    get_system,
)

SIMULATED = [cls for cls in SYSTEMS.values() if issubclass(cls, Flow | Map)]
SIMULATED_IDS = [cls.__name__ for cls in SIMULATED]


# ------------------------------------------------------------------------ shapes and dt


@pytest.mark.parametrize("cls", SIMULATED, ids=SIMULATED_IDS)
def test_simulate_shapes_single_and_batch(cls):
    system = cls()
    assert system.simulate(7).shape == (7, system.dim)
    assert system.simulate(1).shape == (1, system.dim)
    x0 = system.sample_initial_states(3, seed=0)
    assert system.simulate(7, x0=x0).shape == (3, 7, system.dim)
    # A batch of one stays a batch.
    assert system.simulate(7, x0=x0[:1]).shape == (1, 7, system.dim)


def test_simulate_dt_none_uses_default_dt():
    for system in (Lorenz63(), Rossler(), Lorenz96(n=8)):
        np.testing.assert_array_equal(system.simulate(50),
                                      system.simulate(50, dt=system.default_dt))
    # ... and a different dt gives a different trajectory.
    assert not np.allclose(Lorenz63().simulate(50, dt=0.02), Lorenz63().simulate(50))


def test_simulate_samples_every_dt():
    # Row k is the state at time k dt: 2 steps of dt equal 1 step of 2 dt (to the rk8 error,
    # ~1e-10 at these steps over half a time unit).
    system = Lorenz63()
    fine = system.simulate(51, dt=0.01)
    coarse = system.simulate(26, dt=0.02)
    np.testing.assert_allclose(coarse, fine[::2], rtol=0, atol=1e-8)


def test_simulate_accepts_lists_tuples_and_tensors_as_x0_and_leaves_them_unchanged():
    system = Lorenz63()
    x0 = np.array([1.0, 2.0, 20.0])
    copy = x0.copy()
    reference = system.simulate(20, x0=x0)
    np.testing.assert_array_equal(x0, copy)
    for given in (list(x0), tuple(x0), torch.as_tensor(x0), torch.as_tensor(x0).float()):
        # float32 input is converted to float64: equal to the float32-rounded start.
        expected = system.simulate(20, x0=np.asarray(given, dtype=float))
        np.testing.assert_array_equal(system.simulate(20, x0=given), expected)
    np.testing.assert_array_equal(system.simulate(20, x0=list(x0)), reference)


def test_simulate_batch_rows_equal_single_runs():
    # Rows of a batch (torch path) against one trajectory each (fast path for flows).
    for system in (Lorenz63(), Rossler(), Henon(), Logistic()):
        x0 = system.sample_initial_states(3, seed=1)
        batch = system.simulate(40, x0=x0, transient=10)
        for i in range(3):
            single = system.simulate(40, x0=x0[i], transient=10)
            scale = max(1.0, np.abs(single).max())
            np.testing.assert_allclose(batch[i], single, rtol=0, atol=1e-12 * scale)


def test_return_tensor_gives_a_tensor_of_the_requested_dtype():
    out = Lorenz63().simulate(10, return_tensor=True)
    assert isinstance(out, torch.Tensor) and out.shape == (10, 3)
    assert out.dtype == torch.float64 and out.device.type == "cpu"
    batch = Henon().simulate(10, x0=np.zeros((2, 2)), return_tensor=True, dtype=torch.float32)
    assert isinstance(batch, torch.Tensor) and batch.dtype == torch.float32
    assert batch.shape == (2, 10, 2)
    array = Lorenz63().simulate(10)
    assert isinstance(array, np.ndarray) and array.dtype == np.float64
    np.testing.assert_array_equal(out.numpy(), array)


# ------------------------------------------------------------------------ transient


@pytest.mark.parametrize("options", [
    dict(), dict(method="rk4", substeps=3), dict(method="euler"),
], ids=["rk8", "rk4", "euler"])
@pytest.mark.parametrize("batched", [False, True], ids=["fast_path", "torch_path"])
def test_transient_discards_exactly_that_many_steps(options, batched):
    system = Lorenz63()
    x0 = system.sample_initial_states(2, seed=2)
    x0 = x0 if batched else x0[0]
    long = system.simulate(60 + 25, x0=x0, **options)
    short = system.simulate(60, x0=x0, transient=25, **options)
    tail = long[..., 25:, :]
    assert short.shape == tail.shape
    # The same steps in the same order; round-off only (identical on these paths today).
    np.testing.assert_allclose(short, tail, rtol=0, atol=1e-12 * np.abs(tail).max())


@pytest.mark.parametrize("method", ["dopri5", "dop853"])
def test_transient_with_adaptive_methods_matches_to_the_tolerance(method):
    # An adaptive run restarts its step size after the transient, so the two runs take
    # different steps: they agree to the tolerance (amplified by the chaos), not bitwise.
    system = Lorenz63()
    long = system.simulate(60 + 25, method=method, rtol=1e-10, atol=1e-12)
    short = system.simulate(60, transient=25, method=method, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(short, long[25:], rtol=0, atol=1e-6)


def test_fast_path_and_torch_path_agree_across_a_transient():
    system = Lorenz63()
    x0 = system.default_initial_state()
    single = system.simulate(100, x0=x0, transient=300)
    batch = system.simulate(100, x0=np.stack([x0, x0]), transient=300)
    # 400 steps (4 time units) of chaos amplify round-off by up to ~1e4: 1e-9 on |x| ~ 40.
    np.testing.assert_allclose(batch[1], single, rtol=0, atol=1e-9)


# ------------------------------------------------------------------------ seeds


@pytest.mark.parametrize("cls", [Lorenz63, Lorenz96, Henon, Logistic],
                         ids=["Lorenz63", "Lorenz96", "Henon", "Logistic"])
def test_seed_reproduces_and_different_seeds_differ(cls):
    system = cls()
    first = system.simulate(30, seed=3)
    np.testing.assert_array_equal(first, system.simulate(30, seed=3))
    assert not np.allclose(first[0], system.simulate(30, seed=4)[0])
    # No seed and no x0: the default initial state, deterministically.
    np.testing.assert_array_equal(system.simulate(5)[0], system.default_initial_state())
    np.testing.assert_array_equal(system.simulate(30), system.simulate(30))


def test_seed_does_not_change_a_given_x0():
    system = Lorenz63()
    x0 = np.array([1.0, 1.0, 25.0])
    np.testing.assert_array_equal(system.simulate(20, x0=x0, seed=5),
                                  system.simulate(20, x0=x0))


# ------------------------------------------------------------------------ noise


@pytest.mark.parametrize("level", [0.01, 0.05, 0.2])
def test_noise_std_is_relative_to_each_dimension(level):
    system = Lorenz63()
    clean = system.simulate(5000, seed=6)
    noisy = system.simulate(5000, seed=6, noise=level)
    noise = noisy - clean
    relative = noise.std(0) / clean.std(0)
    # The std of 5000 Gaussian draws is within ~1.5% (1/sqrt(2n)) of the truth; 6% allows
    # four standard errors.
    np.testing.assert_allclose(relative, level, rtol=0.06)
    # Zero mean: |mean| < 4 standard errors of level * std / sqrt(n).
    assert np.all(np.abs(noise.mean(0)) < 4 * level * clean.std(0) / np.sqrt(5000))
    # Independent across dimensions and time (correlations ~ 1/sqrt(n) = 0.014).
    correlations = np.corrcoef(noise.T)[np.triu_indices(3, 1)]
    assert np.all(np.abs(correlations) < 0.06)
    assert abs(np.corrcoef(noise[1:, 0], noise[:-1, 0])[0, 1]) < 0.06


def test_noise_is_per_trajectory_in_a_batch():
    # Two trajectories of very different size (the second scaled down by 10 in x and y):
    # each gets noise relative to its own standard deviation.
    system = Lorenz63()
    x0 = system.simulate(1, transient=500)[0]
    start = np.stack([x0, x0 * np.array([0.1, 0.1, 1.0])])
    clean = system.simulate(2000, x0=start, method="rk4")
    noisy = system.simulate(2000, x0=start, method="rk4", noise=0.1, seed=7)
    relative = (noisy - clean).std(1) / clean.std(1)
    # Standard error of a std from 2000 draws: 1.6%; 8% is five of them.
    np.testing.assert_allclose(relative, 0.1, rtol=0.08)


def test_noise_zero_gives_the_clean_trajectory_and_seeded_noise_reproduces():
    system = Lorenz63()
    clean = system.simulate(200, seed=8)
    np.testing.assert_array_equal(system.simulate(200, seed=8, noise=0.0), clean)
    first = system.simulate(200, seed=8, noise=0.05)
    np.testing.assert_array_equal(first, system.simulate(200, seed=8, noise=0.05))
    assert not np.array_equal(first, clean)
    # Without a seed the noise is fresh on every call, while the dynamics stay the same.
    a, b = system.simulate(200, noise=0.05), system.simulate(200, noise=0.05)
    assert not np.allclose(a, b)
    np.testing.assert_allclose(a, system.simulate(200), rtol=0, atol=0.05 * 4 * 20)


def test_noise_on_maps_and_tensors():
    noisy = Henon().simulate(1000, seed=9, noise=0.1, return_tensor=True)
    clean = Henon().simulate(1000, seed=9, return_tensor=True)
    relative = (noisy - clean).std(0) / clean.std(0)
    torch.testing.assert_close(relative, torch.full((2,), 0.1, dtype=torch.float64), rtol=0.12,
                               atol=0)


# ------------------------------------------------------------------------ input validation


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(x0=[np.nan, 1.0, 1.0]), ValueError, "x0 contains NaN or inf"),
    (dict(x0=[1.0, np.inf, 1.0]), ValueError, "x0 contains NaN or inf"),
    (dict(x0=[[1.0, 1.0, 1.0], [1.0, -np.inf, 1.0]]), ValueError, "x0 contains NaN or inf"),
    (dict(x0=[1.0, 2.0]), ValueError, "x0 must have 3 entries"),
    (dict(x0=np.ones((2, 4))), ValueError, "x0 must have 3 entries"),
    (dict(x0=np.ones((2, 2, 3))), ValueError, "x0 must have 1 or 2 dimensions"),
    (dict(x0=np.ones((0, 3))), ValueError, "batch of size 0"),
    (dict(x0="abc"), TypeError, "x0 must hold numbers"),
    (dict(dt=0.0), ValueError, "dt must be > 0"),
    (dict(dt=-0.01), ValueError, "dt must be > 0"),
    (dict(dt=float("nan")), ValueError, "dt must be finite"),
    (dict(dt="0.01"), TypeError, "dt must be a number"),
    (dict(transient=-1), ValueError, "transient must be >= 0"),
    (dict(transient=2.5), TypeError, "transient must be an integer"),
    (dict(noise=-0.1), ValueError, "noise must be >= 0"),
    (dict(noise=float("inf")), ValueError, "noise must be finite"),
    (dict(method="rk45"), ValueError, "unknown method 'rk45'"),
    (dict(substeps=0), ValueError, "substeps must be > 0"),
    (dict(dtype=torch.int64), ValueError, "floating-point"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_simulate_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Lorenz63().simulate(10, **kwargs)


@pytest.mark.parametrize("n_steps, error, match", [
    (0, ValueError, "n_steps must be > 0"),
    (-5, ValueError, "n_steps must be > 0"),
    (2.5, TypeError, "n_steps must be an integer"),
    (None, TypeError, "n_steps must be an integer"),
])
def test_simulate_rejects_bad_n_steps(n_steps, error, match):
    for system in (Lorenz63(), Henon()):
        with pytest.raises(error, match=match):
            system.simulate(n_steps)


def test_maps_given_a_dt_or_integrator_options_are_refused():
    with pytest.raises(ValueError, match="Henon is a map: it takes no dt"):
        Henon().simulate(10, dt=0.1)
    with pytest.raises(ValueError, match="Logistic is a map: it takes no dt"):
        Logistic().simulate(10, dt=0.5)
    with pytest.raises(ValueError, match="method and substeps do not apply"):
        Henon().simulate(10, method="rk8")


def test_bad_arguments_are_refused_before_any_work():
    # A wrong x0 must be reported as such even with a huge n_steps (no silent long run).
    with pytest.raises(ValueError, match="x0 must have 3 entries"):
        Lorenz63().simulate(10**9, x0=[1.0, 2.0])


# ------------------------------------------------------------------------ divergence


# substeps=1: an integration step of 0.5 (by default a dt above default_dt is split into
# accurate steps, which do not blow up).
@pytest.mark.parametrize("kwargs", [
    dict(dt=0.5, substeps=1),
    dict(dt=0.5, x0=np.ones((2, 3)), substeps=1),
    dict(x0=[1e100, 1e100, 1e100]),
    dict(x0=[1e100, 1e100, 1e100], method="dopri5"),
    dict(dt=0.5, method="rk4", transient=50, substeps=1),
], ids=["absurd_dt", "absurd_dt_batch", "huge_x0", "huge_x0_adaptive", "in_transient"])
def test_blow_up_raises_divergence_error_naming_the_time(kwargs):
    with pytest.raises(DivergenceError, match=r"t = \d") as info:
        Lorenz63().simulate(100, **kwargs)
    # The named time lies within the simulated span.
    time = float(str(info.value).split("t = ")[1].split(" ")[0].rstrip(";"))
    assert 0.0 <= time <= (100 + kwargs.get("transient", 0)) * kwargs.get("dt", 0.01)


def test_divergence_error_is_an_arithmetic_error():
    assert issubclass(DivergenceError, ArithmeticError)
    with pytest.raises(ArithmeticError):
        Logistic(r=4.5).simulate(50)


def _first_divergent_length(system, **kwargs) -> int:
    for n_steps in range(2, 200):
        try:
            system.simulate(n_steps, **kwargs)
        except DivergenceError:
            return n_steps
    raise AssertionError("no divergence")


@pytest.mark.parametrize("system, kwargs", [
    (Lorenz63(), dict(dt=0.5, substeps=1)),
    (Logistic(r=4.5), dict()),
], ids=["Lorenz63", "Logistic"])
def test_divergence_error_names_the_time_the_state_blew_up(system, kwargs):
    # The shortest run that fails ends at the first non-finite (or > 1e150) state.
    first_bad_row = _first_divergent_length(system, **kwargs) - 1
    blow_up_time = first_bad_row * kwargs.get("dt", 1.0)
    with pytest.raises(DivergenceError, match=f"t = {blow_up_time:.6g}[;, ]"):
        system.simulate(100, **kwargs)


# ------------------------------------------------------------------------ get_system


def test_get_system_builds_by_case_insensitive_name_with_parameters():
    assert isinstance(get_system("lorenz63"), Lorenz63)
    assert isinstance(get_system("Lorenz63"), Lorenz63)
    assert isinstance(get_system("LORENZ-63"), Lorenz63)
    assert isinstance(get_system("lorenz_96"), Lorenz96)
    system = get_system("lorenz96", n=20, forcing=5.0)
    assert system.dim == 20 and system.forcing == 5.0
    assert get_system("henon", b=0.2).get_params() == {"a": 1.4, "b": 0.2}
    for name, cls in SYSTEMS.items():
        assert type(get_system(name)) is cls


def test_get_system_refuses_unknown_names_and_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown system 'lorenz64'.*lorenz63"):
        get_system("lorenz64")
    with pytest.raises(TypeError):
        get_system("lorenz63", rho_typo=28.0)


def test_api_names_exist():
    import tsrnn.systems as systems

    for name in ("Lorenz63", "Rossler", "Lorenz96", "FitzHughNagumo", "Henon", "Logistic"):
        assert name.lower() in SYSTEMS and hasattr(systems, name)
