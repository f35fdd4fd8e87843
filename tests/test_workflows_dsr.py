"""Workflow tests: reconstruction, analysis and the command line used the way a scientist
coming from the Durstewitz lab's code or from dysts would, in several steps.

Each test here pins a problem found by using the library that way (or a multi-step
property the unit tests do not cover): the test fails without its fix.
"""

import math
import warnings

import numpy as np
import pytest
import torch

from tsrnn.analysis import (
    DiscreteMap,
    find_cycles,
    fixed_points,
    kaplan_yorke_dimension,
    lyapunov_spectrum,
    plot_attractor,
    plot_power_spectra,
    plot_symbolic_sequence,
)
from tsrnn.dsr import ALRNN, ShallowPLRNN
from tsrnn.metrics import power_spectrum_distance, state_space_divergence
from tsrnn.systems import Henon, Lorenz63, Rossler, Thomas


@pytest.fixture(scope="module")
def lorenz_alrnn():
    """A briefly trained AL-RNN on noisy, user-standardised Lorenz-63 (dt 0.01); the
    workflow, not the accuracy, is under test."""
    system = Lorenz63()
    data = system.simulate(1500, transient=300, seed=0, noise=0.05)
    data = (data - data.mean(0)) / data.std(0)
    model = ALRNN(n_latent=6, n_pwl=2, sequence_length=40, batch_size=8, batches_per_epoch=4,
                  max_epochs=2, dt=system.default_dt, random_state=0).fit(data)
    return model, data


# ---------------------------------------------------------------------- systems (dysts users)
def test_rossler_default_lyapunov_spectrum_matches_sprott():
    # With the former default of 50 time units (8 turns of the attractor) the frame had not
    # aligned: lambda_2 read 0.0165 +- 0.006 and lambda_1 0.066 (Sprott: 0.0714, 0).
    spectrum, stderr = lyapunov_spectrum(Rossler(), return_stderr=True)
    reference = Rossler().lyapunov_reference
    assert abs(spectrum[0] - reference[0]) < 0.006
    assert abs(spectrum[1]) < 0.004
    assert abs(spectrum[2] - reference[2]) < 0.05
    assert np.all(stderr < 0.01)


def test_slow_flows_get_longer_default_lyapunov_runs():
    # Thomas' exponents are of order 0.01: 50 time units read lambda_1 0.086 +- 0.012
    # against 0.007 converged; the default run now covers 500 time units.
    assert Thomas().as_discrete_map().default_steps * Thomas().default_dt == pytest.approx(500)
    assert Rossler().as_discrete_map().default_steps * Rossler().default_dt == pytest.approx(200)
    assert Lorenz63().as_discrete_map().default_steps * Lorenz63().default_dt == pytest.approx(50)


# ---------------------------------------------------------------------- analysis
def test_lyapunov_spectrum_of_a_map_with_singular_jacobian_is_minus_inf():
    # (x, y) -> (4x(1 - x), 0): the logistic map beside a direction the map annihilates.
    # Its spectrum is (ln 2, -inf); a stretching factor of exactly 0 used to raise a
    # DivergenceError advising to "lower orthonormalize_every", which cannot help (the
    # same happens for fitted recurrent models with saturated units).
    def step(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([4.0 * x[:, 0] * (1.0 - x[:, 0]), 0.0 * x[:, 1]], -1)

    def jacobian(x: torch.Tensor) -> torch.Tensor:
        matrix = torch.zeros((x.shape[0], 2, 2), dtype=x.dtype)
        matrix[:, 0, 0] = 4.0 - 8.0 * x[:, 0]
        return matrix

    starts = np.random.default_rng(0).uniform(0.1, 0.9, size=(8, 2))
    dmap = DiscreteMap(step=step, dim=2, jacobian=jacobian, name="logistic x zero")
    spectrum, stderr = lyapunov_spectrum(dmap, x0=starts, n_steps=2000, transient=100,
                                         n_trajectories=8, return_stderr=True)
    assert spectrum[0] == pytest.approx(math.log(2.0), abs=0.02)  # finite: ln 2
    assert spectrum[1] == -np.inf
    assert np.isfinite(stderr[0]) and np.isnan(stderr[1])
    # ... and the Kaplan-Yorke dimension of such a spectrum is defined: j = 1, 1 + ln2/inf.
    assert kaplan_yorke_dimension(spectrum) == 1.0
    assert kaplan_yorke_dimension([-np.inf, -np.inf]) == 0.0
    with pytest.raises(ValueError, match=r"NaN or \+inf"):
        kaplan_yorke_dimension([np.inf, -1.0])


def test_analysis_takes_an_estimators_module_as_it_takes_the_estimator(lorenz_alrnn):
    # `lyapunov_spectrum(model.module_)` and `fixed_points(model.module_)` used to fail with
    # "ReconstructionModel has no default initial states"; the module_ now presents its
    # latent map (exponents per step: a module does not know the sampling step).
    model, data = lorenz_alrnn
    states = model.infer_latents(data[:200])
    from_module = lyapunov_spectrum(model.module_, n_steps=300, transient=20, x0=states)
    from_latent = lyapunov_spectrum(model.module_.latent, n_steps=300, transient=20, x0=states)
    np.testing.assert_allclose(from_module, from_latent, rtol=1e-12)
    # The estimator knows dt: its exponents are per time unit, those of the module per step.
    from_estimator = lyapunov_spectrum(model, n_steps=300, transient=20, x0=states)
    np.testing.assert_allclose(from_estimator * model.dt, from_module, rtol=1e-6, atol=1e-9)

    by_module = fixed_points(model.module_)
    by_estimator = fixed_points(model)
    assert len(by_module) == len(by_estimator) >= 1
    for a, b in zip(by_module, by_estimator):
        np.testing.assert_allclose(a.location, b.location, atol=1e-10)
        assert a.code == b.code  # SCYFI, not the Newton path
    cycles = find_cycles(model.module_, 2)
    assert [c.codes for c in cycles] == [c.codes for c in find_cycles(model, 2)]


def test_reconstruction_workflow_end_to_end(lorenz_alrnn, tmp_path, monkeypatch):
    # simulate -> noise -> standardise -> fit -> free run -> D_stsp, D_H -> exponents ->
    # fixed points -> symbolic codes -> figures, with nothing written outside tmp_path.
    monkeypatch.chdir(tmp_path)
    model, data = lorenz_alrnn
    generated = model.predict(1000)
    assert generated.shape == (1000, 3) and np.isfinite(generated).all()
    assert state_space_divergence(data, generated) >= 0.0
    assert 0.0 <= power_spectrum_distance(data[:1000], generated) <= 1.0

    for point in fixed_points(model):
        z = torch.as_tensor(point.location[None], dtype=torch.float64)
        latent = model.module_.latent.double()
        np.testing.assert_allclose(latent.step(z)[0].detach().numpy(), point.location,
                                   atol=1e-9)  # a true fixed point of the latent map
        model.module_.latent.to(model.dtype_)
        observed = model.latent_to_data(point.location)
        assert observed.shape == (3,)

    codes = model.symbolic_codes(n_steps=400)
    assert codes.shape == (400,) and set(np.unique(codes)) <= {0, 1, 2, 3}  # 2^P, P = 2
    graph = model.region_transition_graph(n_steps=400)
    assert graph.counts.sum() == 399

    plot_attractor(data, generated, path=tmp_path / "attractor.png")
    plot_power_spectra(data[:1000], generated, dt=model.dt, path=tmp_path / "spectra.png")
    plot_symbolic_sequence(codes, dt=model.dt, path=tmp_path / "codes.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attractor.png", "codes.png",
                                                          "spectra.png"]


# ---------------------------------------------------------------------- training
def test_early_stopping_shorter_than_checkpoint_every_is_refused():
    # Between checkpoints the last D_stsp stands in, so each unscored epoch counted as one
    # without improvement: early_stopping=2 with checkpoint_every=5 stopped after 3 epochs
    # with a single checkpoint ever scored.
    data = Lorenz63().simulate(600, transient=300, seed=0)
    settings = dict(n_latent=5, sequence_length=30, batch_size=4, batches_per_epoch=2,
                    max_epochs=30, random_state=0)
    with pytest.raises(ValueError, match="shorter than checkpoint_every=5"):
        ALRNN(early_stopping=2, checkpoint_every=5, **settings).fit(data)
    model = ALRNN(early_stopping=2, checkpoint_every=2, **settings).fit(data)
    assert len(model.checkpoint_scores_) >= 2  # the patience spans a scored checkpoint


def test_checkpoint_file_is_a_loadable_estimator_holding_the_best_model(tmp_path):
    # The checkpoint used to hold only module weights and hyperparameters ("not a tsrnn
    # estimator file" to load); a stopped run lost its best reconstruction.
    data = Henon().simulate(1500, transient=300, seed=0)
    path = tmp_path / "run.pt"
    model = ShallowPLRNN(n_hidden=20, learning_rate=5e-3, max_epochs=8, checkpoint_every=1,
                         batches_per_epoch=4, sequence_length=30, random_state=0,
                         checkpoint_path=str(path), selection="dstsp").fit(data)
    # (selection="dstsp": the file as training leaves it; after the long-run selection of
    # "dstsp+dh" it is rewritten, tests/dsr/test_selection.py)
    assert model.best_epoch_ == 1  # an improvement after the first checkpoint, then none
    restored = ShallowPLRNN.load(path)
    assert restored.best_epoch_ == 1
    assert restored.checkpoint_scores_ == model.checkpoint_scores_[:2]
    np.testing.assert_array_equal(restored.predict(50), model.predict(50))
    np.testing.assert_allclose(lyapunov_spectrum(restored, n_steps=200, transient=20),
                               lyapunov_spectrum(model, n_steps=200, transient=20))
    assert [p.code for p in fixed_points(restored)] == [p.code for p in fixed_points(model)]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


# ---------------------------------------------------------------------- command line
def test_simulate_refuses_an_unknown_output_format_before_simulating(tmp_path, monkeypatch,
                                                                      capsys):
    # The format (and a batch asked into a .csv) used to be checked only after the whole
    # simulation had run, which for a long run wastes it.
    from tsrnn import cli
    from tsrnn.systems.base import DynamicalSystem

    def no_simulation(*args, **kwargs):
        raise AssertionError("simulate ran before the output was refused")

    monkeypatch.setattr(DynamicalSystem, "simulate", no_simulation)
    assert cli.console_main(["simulate", "lorenz63", "-o", str(tmp_path / "x.txt")]) == 2
    assert "unknown output format '.txt'" in capsys.readouterr().err
    assert cli.console_main(["simulate", "lorenz63", "--batch", "2",
                             "-o", str(tmp_path / "x.csv")]) == 2
    assert "needs an .npz file" in capsys.readouterr().err
    assert cli.console_main(["simulate", "lorenz63", "--batch", "2"]) == 2
    assert "needs -o FILE.npz" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_lyapunov_help_names_its_own_default_integrator(capsys):
    # `tsrnn lyapunov --help` said "rk8 (default)", simulate's default; the spectrum is
    # integrated with RK4 (and only fixed-step methods work there).
    from tsrnn import cli

    with pytest.raises(SystemExit):
        cli.main(["lyapunov", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "rk4 (default)" in text and "rk8 (default)" not in text
    with pytest.raises(SystemExit):
        cli.main(["simulate", "--help"])
    assert "rk8 (default)" in " ".join(capsys.readouterr().out.split())


def test_reconstruct_gives_dsr_models_enough_latents_for_the_system():
    # `tsrnn reconstruct --system lorenz96 --model alrnn` simulated, then failed in fit
    # ("n_latent=20 is smaller than the 40 observed columns"), with no option to change it.
    from tsrnn.reconstruct import MODELS, ReconstructionConfig

    for name in ("alrnn", "plrnn"):
        wide = MODELS[name](ReconstructionConfig(system="lorenz96"), 0.01)
        assert wide.n_latent == 40
        small = MODELS[name](ReconstructionConfig(system="lorenz96",
                                                  system_params={"n": 6}), 0.01)
        assert small.n_latent == 20  # the authors' M = 20 where it suffices
    assert MODELS["shplrnn"](ReconstructionConfig(system="lorenz96"), 0.01).n_latent is None


def test_latent_analyses_refuse_a_dataframe_with_reordered_columns():
    # predict(context=...) refused a DataFrame whose columns were reordered, but
    # infer_latents, symbolic_codes and region_transition_graph read it by position.
    import pandas as pd

    frame = pd.DataFrame(Lorenz63().simulate(600, transient=300, seed=0), columns=list("xyz"))
    model = ALRNN(n_latent=5, max_epochs=1, batches_per_epoch=2, sequence_length=30,
                  random_state=0).fit(frame)
    shuffled = frame[["z", "y", "x"]]
    for analysis in (model.infer_latents, model.symbolic_codes, model.region_transition_graph):
        with pytest.raises(ValueError, match=r"select y\[\['x', 'y', 'z'\]\]"):
            analysis(shuffled)
    np.testing.assert_allclose(model.infer_latents(frame), model.infer_latents(frame.values))


def test_analysis_of_a_class_instead_of_an_instance_says_so():
    # lyapunov_spectrum(Lorenz63) (no parentheses) failed with "'super' object has no
    # attribute 'as_discrete_map'".
    for analysis in (lyapunov_spectrum, fixed_points, lambda obj: find_cycles(obj, 2)):
        for cls in (Lorenz63, Henon, ALRNN):
            with pytest.raises(TypeError, match=rf"class {cls.__name__}, not an instance"):
                analysis(cls)


def test_a_setting_the_forcing_scheme_does_not_read_is_announced():
    data = Henon().simulate(300, transient=100, seed=0)
    short = dict(max_epochs=1, batches_per_epoch=2, sequence_length=20, random_state=0)
    with pytest.warns(UserWarning, match="alpha=0.3 has no effect with teacher_forcing='sparse'"):
        ALRNN(n_latent=4, n_pwl=1, alpha=0.3, **short).fit(data)
    with pytest.warns(UserWarning, match="forcing_interval=8 has no effect"):
        ShallowPLRNN(n_hidden=5, forcing_interval=8, **short).fit(data)
    with warnings.catch_warnings():
        # The defaults of each scheme: no setting to announce (one epoch does not train the
        # model, which is a RuntimeWarning of its own).
        warnings.simplefilter("error", UserWarning)
        ALRNN(n_latent=4, n_pwl=1, **short).fit(data)
        ShallowPLRNN(n_hidden=5, **short).fit(data)


def test_training_resumes_from_a_checkpoint_file(tmp_path, monkeypatch):
    # A stopped run's checkpoint loads as an estimator, and partial_fit trains it further
    # from its weights (adaptive GTF carrying its alpha on).
    data = Henon().simulate(1500, transient=300, seed=0)
    path = tmp_path / "run.pt"
    settings = dict(n_hidden=20, learning_rate=5e-3, max_epochs=4, checkpoint_every=1,
                    batches_per_epoch=4, sequence_length=30, random_state=0)
    model = ShallowPLRNN(checkpoint_path=str(path), **settings).fit(data)
    resumed = ShallowPLRNN.load(path)
    assert resumed.alpha_ is not None and resumed.alpha_ < 1.0  # the checkpoint's alpha
    checkpoint_alpha = resumed.alpha_
    with pytest.raises(FileExistsError):  # the checkpoint file is never overwritten
        resumed.partial_fit(data)
    resumed.set_params(checkpoint_path=None)
    start = resumed.module_.latent.A.detach().clone()
    from tsrnn.dsr import estimators

    schemes, make_scheme = [], estimators.make_scheme
    monkeypatch.setattr(estimators, "make_scheme",
                        lambda *args, **options: schemes.append(options) or make_scheme(
                            *args, **options))
    resumed.partial_fit(data)
    assert schemes == [{"initial_alpha": checkpoint_alpha}]
    assert resumed.n_epochs_ == 4
    assert not torch.equal(resumed.module_.latent.A, start)
    assert resumed.alpha_ < checkpoint_alpha  # and went on decaying
    assert model.n_epochs_ == 4
    assert np.isfinite(resumed.predict(50)).all()


def test_a_training_that_leaves_the_loss_at_the_datas_variance_says_so():
    # The authors' schedule (1e-3 decaying to 1e-6) cut to a few epochs leaves a model that
    # predicts the Henon map no better than its mean; a faster schedule learns it.
    data = Henon().simulate(2000, transient=100, seed=0)
    short = dict(n_hidden=20, max_epochs=20, batches_per_epoch=20, sequence_length=10,
                 random_state=0)
    with pytest.warns(RuntimeWarning, match="no better than their mean"):
        ShallowPLRNN(**short).fit(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model = ShallowPLRNN(learning_rate=1e-2, learning_rate_final=1e-3, **short).fit(data)
    assert model.history_["train_loss"][-1] < 0.8
