"""The bad-input contract across the public API.

"Bad input gets a clear error, never a silent NaN or a wrong shape." Every estimator of
API.md is run through the same table of bad series, contexts, horizons and exogenous inputs
(the shared base does the checking, but each estimator can override fit, predict or the
minimum length, so each is checked); then the entry points whose gaps this audit closed:
``partial_fit`` of the reservoirs, ``simulate``'s seed, tolerances and system parameters,
the options of the analyses, ``random_state``, a training that diverges inside a module,
and the command line. Each case asserts the exception type and a fragment of the message
that tells the user what is wrong. Models are tiny: the module runs in seconds.

Round 2: the console script reports a user's errors in one line (status 2) and never
overwrites a file; yes/no hyperparameters of every estimator and module take only booleans;
a module's own DivergenceError goes through ``divergence=``; half precision is refused on
the CPU; every system's ``sample_initial_states`` checks its seed.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import tsrnn
import tsrnn.cli
from tsrnn import dsr, forecasting, reservoir
from tsrnn import nn as tnn
from tsrnn.analysis import find_cycles, fixed_points, lyapunov_spectrum
from tsrnn.cli import console_main, main
from tsrnn.exceptions import DivergenceError, NotFittedError
from tsrnn.forecasting._times import TimedNextStepPredictor
from tsrnn.forecasting.chimera import ChimeraHorizonModule
from tsrnn.forecasting.continuous import ContinuousPredictor
from tsrnn.nn.chimera import SelectiveSSM2D
from tsrnn.nn.warp import MassSpringDamperRoot
from tsrnn.nn.wirings import FullyConnected
from tsrnn.systems import Henon, KuramotoSivashinsky, Logistic, Lorenz63, Lorenz96
from tsrnn.systems.base import DynamicalSystem

_NEURAL = dict(sequence_length=8, batch_size=8, max_epochs=1, validation_fraction=0.0,
               random_state=0)
_DSR = dict(sequence_length=10, batch_size=4, max_epochs=1, batches_per_epoch=2,
            random_state=0)

# The smallest settings of every estimator named in API.md.
ESTIMATORS = {
    "ESN": lambda **k: reservoir.ESN(**{"n_units": 20, "warmup": 5, "random_state": 0, **k}),
    "DeepResESN": lambda **k: reservoir.DeepResESN(
        **{"n_layers": 2, "units_per_layer": 10, "warmup": 5, "random_state": 0, **k}),
    "ResRMN": lambda **k: reservoir.ResRMN(
        **{"n_units": 10, "n_memory_units": 10, "memory_radius": 0.9, "warmup": 5,
           "random_state": 0, **k}),
    "NVAR": lambda **k: reservoir.NVAR(**{"delays": 2, **k}),
    "PLRNN": lambda **k: dsr.PLRNN(**{"n_latent": 4, **_DSR, **k}),
    "ShallowPLRNN": lambda **k: dsr.ShallowPLRNN(**{"n_hidden": 8, **_DSR, **k}),
    "ALRNN": lambda **k: dsr.ALRNN(**{"n_latent": 4, "n_pwl": 2, "forcing_interval": 4, **_DSR,
                                      **k}),
    "CfCForecaster": lambda **k: forecasting.CfCForecaster(
        **{"hidden_size": 4, "backbone_units": 4, **_NEURAL, **k}),
    "LTCForecaster": lambda **k: forecasting.LTCForecaster(
        **{"hidden_size": 4, "ode_unfolds": 2, **_NEURAL, **k}),
    "LEMForecaster": lambda **k: forecasting.LEMForecaster(**{"hidden_size": 4, **_NEURAL, **k}),
    "HiPPOForecaster": lambda **k: forecasting.HiPPOForecaster(
        **{"hidden_size": 4, "state_size": 4, **_NEURAL, **k}),
    "LSSLForecaster": lambda **k: forecasting.LSSLForecaster(
        **{"hidden_size": 4, "state_size": 4, **_NEURAL, **k}),
    "ChimeraForecaster": lambda **k: forecasting.ChimeraForecaster(
        **{"horizon": 2, "d_model": 4, "d_state": 4, "n_layers": 1, **_NEURAL, **k}),
    "WARPForecaster": lambda **k: forecasting.WARPForecaster(
        **{"root_width": 4, "hyper_width": 4, **_NEURAL, **k}),
    "GRUForecaster": lambda **k: forecasting.GRUForecaster(**{"hidden_size": 4, **_NEURAL, **k}),
    "LSTMForecaster": lambda **k: forecasting.LSTMForecaster(
        **{"hidden_size": 4, **_NEURAL, **k}),
}
# Estimators that take exogenous inputs (NVAR's features are delays of y; Chimera's direct
# multi-step head would need X over the whole horizon).
WITHOUT_EXOGENOUS = {"NVAR": "NVAR takes no exogenous inputs X",
                     "ChimeraForecaster": "does not take exogenous inputs X"}
RESERVOIRS = ["ESN", "DeepResESN", "ResRMN"]

_T = np.arange(80) * 0.2
Y = np.stack([np.sin(_T), np.cos(_T)], axis=1)
X = (np.arange(80) / 80.0)[:, None]


def _with(value: float) -> np.ndarray:
    y = Y.copy()
    y[5, 1] = value
    return y


@pytest.fixture(scope="module", params=list(ESTIMATORS))
def fitted(request):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return request.param, ESTIMATORS[request.param]().fit(Y)


# ====================================================================== fit
BAD_Y = {
    "nan": (_with(np.nan), ValueError, r"y contains NaN"),
    "inf": (_with(np.inf), ValueError, r"y contains (NaN or )?inf"),
    # The message says what sets the minimum (warm-up, window, delays).
    "one-row": (Y[:1], ValueError, r"y has 1 time steps; .* needs at least \d+ \(.+\)"),
    "empty": (Y[:0], ValueError, r"y has 0 time steps"),
    "3-d": (Y[None], ValueError,
            r"y has shape \(1, 80, 2\): a series is \(T, d\); give several series as a list"),
    "widths": ([Y, Y[:, :1]], ValueError, r"same number of columns, got \[1, 2\]"),
    "complex": (Y.astype(complex), TypeError, r"y must be real-valued"),
    "object": (Y.astype(object), TypeError, r"y must hold numbers, got dtype object"),
    "text-column": (pd.DataFrame({"a": ["x"] * 80, "b": Y[:, 0]}), TypeError,
                    r"y must hold numbers"),
}


@pytest.mark.parametrize("case", list(BAD_Y))
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_fit_refuses_bad_series(name, case):
    y, error, match = BAD_Y[case]
    with pytest.raises(error, match=match):
        ESTIMATORS[name]().fit(y)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_fit_refuses_x_misaligned_with_y_or_x_where_none_is_taken(name):
    if name in WITHOUT_EXOGENOUS:
        with pytest.raises(ValueError, match=WITHOUT_EXOGENOUS[name]):
            ESTIMATORS[name]().fit(Y, X=X)
        return
    with pytest.raises(ValueError, match=r"got 79 rows of X for 80 rows of y"):
        ESTIMATORS[name]().fit(Y, X=X[:79])
    with pytest.raises(ValueError, match=r"y holds 2 trajectories: give X as a list"):
        ESTIMATORS[name]().fit([Y, Y], X=X)


# ====================================================================== predict
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_predict_before_fit_says_so(name):
    with pytest.raises(NotFittedError, match="is not fitted yet; call fit"):
        ESTIMATORS[name]().predict(3)


BAD_PREDICT = {
    "zero-steps": (dict(n_steps=0), ValueError, r"n_steps must be > 0"),
    "negative-steps": (dict(n_steps=-2), ValueError, r"n_steps must be > 0"),
    "float-steps": (dict(n_steps=2.5), TypeError, r"n_steps must be an integer"),
    "bool-steps": (dict(n_steps=True), TypeError, r"n_steps must be an integer, got bool"),
    "nan-context": (dict(n_steps=3, context=_with(np.nan)[:20]), ValueError,
                    r"context contains NaN"),
    "wide-context": (dict(n_steps=3, context=np.zeros((20, 3))), ValueError,
                     r"context must have 2 columns like the training data"),
    "empty-context": (dict(n_steps=3, context=Y[:0]), ValueError, r"context is empty"),
    "3-d-context": (dict(n_steps=3, context=Y[None, :20]), ValueError,
                    r"context must have 1 or 2 dimensions"),
    "text-context": (dict(n_steps=3, context=Y[:20].astype(str)), TypeError,
                     r"context must hold numbers"),
    "unexpected-X": (dict(n_steps=3, X=np.ones((3, 1))), ValueError,
                     r"fitted without exogenous inputs; got X"),
}


@pytest.mark.parametrize("case", list(BAD_PREDICT))
def test_predict_refuses_bad_horizons_contexts_and_inputs(fitted, case):
    _, model = fitted
    arguments, error, match = BAD_PREDICT[case]
    with pytest.raises(error, match=match):
        model.predict(**arguments)


@pytest.mark.parametrize("name", [n for n in ESTIMATORS if n not in WITHOUT_EXOGENOUS])
def test_predict_of_a_model_fitted_with_x_needs_x_of_the_right_rows(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ESTIMATORS[name]().fit(Y, X=X)
    with pytest.raises(ValueError, match=r"fitted with 1 exogenous inputs: predict needs X"):
        model.predict(3)
    with pytest.raises(ValueError, match=r"X must have shape \(3, 1\): the n_steps rows"):
        model.predict(3, X=np.ones((2, 1)))
    with pytest.raises(ValueError, match=r"X must have shape \(23, 1\): the 20 rows of the "
                                         r"context followed by the 3 rows"):
        model.predict(3, context=Y[:20], X=np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"X contains NaN"):
        model.predict(3, X=np.full((3, 1), np.nan))


# ====================================================================== hyperparameters
BAD_HYPERPARAMETERS = [
    ("ESN", dict(n_units=0), ValueError, r"n_units must be > 0"),
    ("ESN", dict(n_units=20.5), TypeError, r"n_units must be an integer"),
    ("ESN", dict(distribution="cauchy"), ValueError,
     r"unknown distribution 'cauchy'; expected one of 'normal', 'uniform'"),
    ("ResRMN", dict(n_memory_units=0), ValueError, r"n_memory_units must be > 0"),
    ("DeepResESN", dict(solver="qr"), ValueError, r"unknown solver 'qr'; expected one of"),
    ("NVAR", dict(delays=0), ValueError, r"delays must be > 0"),
    ("NVAR", dict(solver="qr"), ValueError, r"unknown solver 'qr'; expected one of"),
    ("ShallowPLRNN", dict(n_hidden=0), ValueError, r"n_hidden must be > 0"),
    ("ALRNN", dict(teacher_forcing="tbptt"), ValueError,
     r"unknown teacher_forcing 'tbptt'; expected one of 'gtf', 'sparse', 'bptt'"),
    ("PLRNN", dict(observation="linear"), ValueError,
     r"unknown observation 'linear'; expected one of 'identity', 'affine'"),
    ("CfCForecaster", dict(mode="fast"), ValueError,
     r"unknown mode 'fast'; expected one of 'default', 'no_gate', 'pure'"),
    ("LTCForecaster", dict(solver="rk45"), ValueError, r"unknown solver 'rk45'"),
    ("LEMForecaster", dict(hidden_size=2.5), TypeError, r"hidden_size must be an integer"),
    ("HiPPOForecaster", dict(method="rk4"), ValueError, r"unknown method 'rk4'; expected one of"),
    ("LSSLForecaster", dict(trainable_A="all"), ValueError, r"unknown trainable_A 'all'"),
    ("ChimeraForecaster", dict(d_model=0), ValueError, r"d_model must be > 0"),
    ("WARPForecaster", dict(root_width=0), ValueError, r"width must be > 0"),
]


@pytest.mark.parametrize(("name", "params", "error", "match"), BAD_HYPERPARAMETERS,
                         ids=[f"{n}-{next(iter(p))}" for n, p, _, _ in BAD_HYPERPARAMETERS])
def test_bad_hyperparameters_are_refused_naming_them(name, params, error, match):
    with pytest.raises(error, match=match):
        ESTIMATORS[name](**params).fit(Y)


@pytest.mark.parametrize(("random_state", "error", "match"), [
    (-5, ValueError, r"random_state must be >= 0, got -5"),
    (1.5, TypeError, r"random_state must be an integer, got 1.5"),
    ("seven", TypeError, r"random_state must be an integer, got str"),
])
@pytest.mark.parametrize("name", ["ESN", "NVAR", "ALRNN", "GRUForecaster"])
def test_bad_random_state_is_refused_naming_it(name, random_state, error, match):
    # Was numpy's "Cannot cast scalar from dtype('float64')..." or "not all arguments
    # converted during string formatting", which do not say which argument is wrong.
    with pytest.raises(error, match=match):
        ESTIMATORS[name](random_state=random_state).fit(Y)


# ====================================================================== reservoirs online
@pytest.mark.parametrize("name", RESERVOIRS)
def test_partial_fit_shorter_than_the_warmup_is_not_a_fitted_model(name):
    # Was an AttributeError ('readout_weights_') from predict.
    model = ESTIMATORS[name]().partial_fit(Y[:3])
    with pytest.raises(NotFittedError, match=r"none past warmup=5: its readout is not trained"):
        model.predict(2)
    model.partial_fit(Y[3:40])  # the stream continues: enough rows now
    assert model.predict(2).shape == (2, 2)


def test_a_stream_shorter_than_the_warmup_can_still_be_saved_and_continued(tmp_path):
    model = ESTIMATORS["ESN"]().partial_fit(Y[:3])
    loaded = type(model).load(model.save(tmp_path / "stream.pt"))
    loaded.partial_fit(Y[3:40])
    model.partial_fit(Y[3:40])
    np.testing.assert_array_equal(loaded.predict(2), model.predict(2))


@pytest.mark.parametrize("name", RESERVOIRS)
def test_partial_fit_after_fit_warns_that_the_fitted_model_is_discarded(name):
    model = ESTIMATORS[name]().fit(Y)
    with pytest.warns(UserWarning, match=r"fitted with fit\(\) starts a new stream"):
        model.partial_fit(Y[:40])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stream started by partial_fit continues quietly
        model.partial_fit(Y[40:])


@pytest.mark.parametrize(("scaling", "error", "match"), [
    ([0.1, 0.2, 0.3], ValueError, r"input_scaling must be one number or one per input \(2\), "
                                  r"got 3 values"),
    ("0.1", TypeError, r"input_scaling must hold numbers"),
    ([0.1, np.nan], ValueError, r"input_scaling must be finite and >= 0"),
])
def test_esn_input_scaling_of_the_wrong_length_or_type_is_refused(scaling, error, match):
    # Was numpy's "operands could not be broadcast together with remapped shapes", and a
    # string was parsed as a number.
    with pytest.raises(error, match=match):
        ESTIMATORS["ESN"](input_scaling=scaling).fit(Y)


def test_esn_input_scaling_per_input_is_still_accepted():
    model = ESTIMATORS["ESN"](input_scaling=[0.1, 0.2]).fit(Y)
    assert np.isfinite(model.predict(3)).all()


# ====================================================================== training
def test_a_training_that_drives_the_lssl_step_to_infinity_reports_a_divergence():
    # Was "ValueError: dt contains NaN or inf", blaming an input the user never gave.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DivergenceError, match=r"exp\(log_dt\) of LSSL is no longer finite"):
            ESTIMATORS["LSSLForecaster"](learning_rate=1e9).fit(Y)


# ====================================================================== systems
@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(seed=-1), ValueError, r"seed must be >= 0, got -1"),
    (dict(seed=1.5), TypeError, r"seed must be an integer, got 1.5"),
    (dict(seed="a"), TypeError, r"seed must be an integer, got str"),
    (dict(method="dopri5", rtol=-1e-6), ValueError, r"rtol must be > 0"),
    (dict(method="dopri5", atol=-1e-9), ValueError, r"atol must be >= 0"),
])
def test_simulate_refuses_bad_seeds_and_tolerances(kwargs, error, match):
    # Seeds were numpy's "expected non-negative integer" / "SeedSequence expects int";
    # negative tolerances were accepted silently.
    with pytest.raises(error, match=match):
        Lorenz63().simulate(5, **kwargs)


@pytest.mark.parametrize(("system", "name", "value", "match"), [
    (Lorenz63, "sigma", float("nan"), r"sigma must be a finite number, got nan"),
    (Lorenz63, "rho", "28", r"rho must be a finite number, got '28'"),
    (lambda: Lorenz96(n=8), "forcing", float("inf"), r"forcing must be a finite number, got inf"),
    (Henon, "a", "1.4", r"a must be a finite number, got '1.4'"),
])
def test_simulate_refuses_non_finite_or_text_system_parameters(system, name, value, match):
    # Were a DivergenceError advising a smaller dt, or a TypeError from inside the field.
    # Refused at construction, and by simulate for a value set on the attribute afterwards.
    with pytest.raises(ValueError, match=match):
        type(system())(**{**system().get_params(), name: value})
    changed = system()
    setattr(changed, name, value)
    with pytest.raises(ValueError, match=match):
        changed.simulate(5)


# ====================================================================== analysis
@pytest.mark.parametrize(("analysis", "match"), [
    (lambda **o: lyapunov_spectrum(Lorenz63(), n_steps=10, **o),
     r"unknown Lorenz63 option 'integrator'; expected one of 'method', 'substeps', 'device', "
     r"'dtype'"),
    (lambda **o: fixed_points(Lorenz63(), **o), r"unknown Lorenz63 option 'integrator'"),
    (lambda **o: find_cycles(Henon(), 2, **o),
     r"unknown Henon option 'integrator'; expected one of 'device', 'dtype'"),
], ids=["lyapunov_spectrum", "fixed_points", "find_cycles"])
def test_analyses_refuse_unknown_options_listing_the_known_ones(analysis, match):
    # Was Python's "as_discrete_map() got an unexpected keyword argument", without choices.
    with pytest.raises(ValueError, match=match):
        analysis(integrator="rk4")


# ====================================================================== command line
@pytest.mark.parametrize(("argv", "match"), [
    (["simulate", "lorenz63", "--n-steps", "5", "--batch", "0"], r"--batch must be >= 1"),
    (["reconstruct", "--max-epochs", "0", "-q"], r"--max-epochs must be >= 1"),
])
def test_cli_refuses_counts_below_one(argv, match, tmp_path):
    # Were silently a single trajectory, and the model's default epochs.
    with pytest.raises(SystemExit, match=match):
        main([*argv, "-o", str(tmp_path / ("out.npz" if argv[0] == "simulate" else "r.json"))])
    assert not any(tmp_path.iterdir())



# ====================================================================== round 2: console
def _console(argv: list[str], capsys) -> tuple[int, str, str]:
    code = console_main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


CONSOLE_ERRORS = {
    "zero-steps": (["simulate", "lorenz63", "--n-steps", "0"], r"n_steps must be > 0, got 0"),
    "negative-dt": (["simulate", "lorenz63", "--n-steps", "5", "--dt", "-0.1"],
                    r"dt must be > 0, got -0\.1"),
    "missing-directory": (["simulate", "lorenz63", "--n-steps", "5", "-o", "{tmp}/no/x.csv"],
                          r"the directory .*no of .*x\.csv does not exist"),
    "directory-as-file": (["simulate", "lorenz63", "--n-steps", "5", "-o", "{tmp}"],
                          r"is a directory; give a file name"),
    "negative-seed": (["simulate", "henon", "--batch", "2", "--seed", "-1", "-o",
                       "{tmp}/h.npz"], r"seed must be >= 0, got -1"),
    "diverging-dt": (["simulate", "lorenz63", "--n-steps", "5", "--dt", "10", "--substeps",
                      "1"],
                     r"simulation diverged .* try a smaller dt"),
    "batch-zero": (["simulate", "lorenz63", "--n-steps", "5", "--batch", "0"],
                   r"--batch must be >= 1"),
    "report-directory": (["reconstruct", "-q", "-o", "{tmp}/no/r.json"],
                         r"the directory .*no of .*r\.json does not exist"),
}


@pytest.mark.parametrize("case", list(CONSOLE_ERRORS))
def test_console_reports_a_users_error_in_one_line_with_status_2(case, tmp_path, capsys):
    # Were Python tracebacks (status 1), or "error: ..." with status 1.
    argv, match = CONSOLE_ERRORS[case]
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = _console(argv, capsys)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tsrnn: error: "), err
    assert re.search(match, lines[0]), lines[0]
    assert list(tmp_path.iterdir()) == []


def test_main_called_from_python_still_raises_the_errors(tmp_path):
    with pytest.raises(ValueError, match=r"n_steps must be > 0"):
        main(["simulate", "lorenz63", "--n-steps", "0"])
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        main(["simulate", "lorenz63", "--n-steps", "5", "-o", str(tmp_path / "no" / "x.csv")])
    with pytest.raises(ValueError, match=r"seed must be >= 0, got -1"):
        main(["simulate", "henon", "--batch", "2", "--seed", "-1", "-o",
              str(tmp_path / "h.npz")])


def test_console_leaves_help_and_success_as_they_are(tmp_path, capsys):
    assert _console(["simulate", "lorenz63", "--n-steps", "5", "-o",
                     str(tmp_path / "a.csv")], capsys)[0] == 0
    with pytest.raises(SystemExit) as exit_info:  # argparse's own exit for --help: status 0
        console_main(["simulate", "--help"])
    assert exit_info.value.code == 0


def test_the_installed_console_script_is_console_main(tmp_path):
    pyproject = Path(tsrnn.__file__).parents[1] / "pyproject.toml"
    assert 'tsrnn = "tsrnn.cli:console_main"' in pyproject.read_text().splitlines()
    script = Path(sys.executable).with_name("tsrnn")
    command = str(script) if script.exists() else shutil.which("tsrnn")
    assert command is not None, "the tsrnn console script is not installed"
    result = subprocess.run([command, "simulate", "lorenz63", "--n-steps", "0"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            check=False)
    # A stale install (pip install -e . before the entry point changed) shows a traceback.
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "tsrnn: error: n_steps must be > 0, got 0\n"


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_simulate_never_replaces_a_file_that_appears_after_the_check(suffix, tmp_path,
                                                                     monkeypatch):
    # The check before simulating is not enough: the file is created exclusively.
    path = tmp_path / f"out{suffix}"
    check = tsrnn.cli._check_output

    def check_then_someone_writes(output, overwrite):
        checked = check(output, overwrite)
        path.write_text("keep me\n")
        return checked

    monkeypatch.setattr(tsrnn.cli, "_check_output", check_then_someone_writes)
    with pytest.raises(FileExistsError):
        main(["simulate", "lorenz63", "--n-steps", "5", "-o", str(path)])
    assert path.read_text() == "keep me\n"
    assert main(["simulate", "lorenz63", "--n-steps", "5", "-o", str(path),
                 "--overwrite"]) == 0
    assert path.read_bytes() != b"keep me\n"


def test_reconstruct_refuses_a_missing_directory_before_running(tmp_path, monkeypatch):
    import tsrnn.reconstruct

    def fail(config):
        raise AssertionError("the reconstruction ran although its report cannot be written")

    monkeypatch.setattr(tsrnn.reconstruct, "run_reconstruction", fail)
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        main(["reconstruct", "-q", "-o", str(tmp_path / "no" / "r.json")])


# ====================================================================== round 2: booleans
def _bool_hyperparameters() -> list[tuple[str, str]]:
    pairs = []
    for name, make in ESTIMATORS.items():
        params = make().get_params(deep=False)
        pairs += [(name, p) for p, value in params.items() if isinstance(value, bool)]
    return pairs


BOOL_HYPERPARAMETERS = _bool_hyperparameters()


def test_the_table_of_yes_no_hyperparameters_is_complete():
    found = {p for _, p in BOOL_HYPERPARAMETERS}
    assert {"scale", "verbose", "residual", "clipped", "mixed_memory", "bidirectional",
            "learn_dt", "constant", "increment", "readout_input", "squared_units",
            "instance_norm", "linear_across_variates", "init_normalize"} <= found


@pytest.mark.parametrize(("name", "param"), BOOL_HYPERPARAMETERS,
                         ids=[f"{n}-{p}" for n, p in BOOL_HYPERPARAMETERS])
def test_yes_no_hyperparameters_refuse_anything_but_a_bool(name, param):
    # Were read by truthiness: scale="no" scaled, residual=0.5 was residual.
    expected = "True, False or a level >= 0" if param == "verbose" else "True or False"
    with pytest.raises(TypeError, match=rf"^{param} must be {expected}, got 'no'$"):
        ESTIMATORS[name](**{param: "no"}).fit(Y)


@pytest.mark.parametrize("level", [0, 1, 2, np.int64(1)])
def test_verbose_takes_a_scikit_learn_level(level):
    model = ESTIMATORS["GRUForecaster"](verbose=level)
    assert model._verbose is (int(level) > 0)
    with pytest.raises(TypeError, match="level >= 0"):
        ESTIMATORS["GRUForecaster"](verbose=-1).fit(Y)


@pytest.mark.parametrize("value", [0.5, "False", 1, None, np.float64(0.0)])
def test_truthy_and_falsy_non_bools_are_refused(value):
    with pytest.raises(TypeError, match=r"scale must be True or False, got "):
        ESTIMATORS["ESN"](scale=value).fit(Y)
    with pytest.raises(TypeError, match=r"residual must be True or False, got "):
        ESTIMATORS["GRUForecaster"](residual=value).fit(Y)


def test_numpy_bools_are_accepted_as_their_python_values():
    with_numpy = ESTIMATORS["NVAR"](constant=np.bool_(False), scale=np.False_).fit(Y)
    with_python = ESTIMATORS["NVAR"](constant=False, scale=False).fit(Y)
    np.testing.assert_array_equal(with_numpy.predict(5), with_python.predict(5))


def _gru(**k):
    return tnn.NextStepPredictor(torch.nn.GRU(2, 4, batch_first=True), 2, 4, **k)


# Every module (and system) with a yes/no argument, built from its smallest settings.
BOOL_MODULE_ARGUMENTS = {
    "CfC": (lambda **k: tnn.CfC(2, 4, backbone_units=4, **k), ["mixed_memory", "fast_path"]),
    "LTC": (lambda **k: tnn.LTC(2, 4, **k), ["mixed_memory"]),
    "Chimera": (lambda **k: tnn.Chimera(2, d_model=4, d_state=4, n_layers=1, **k),
                ["bidirectional"]),
    "SelectiveSSM2D": (lambda **k: SelectiveSSM2D(4, 4, **k), ["reverse"]),
    "LSSL": (lambda **k: tnn.LSSL(2, 4, state_size=4, **k), ["learn_dt"]),
    "ShallowPLRNN": (lambda **k: tnn.ShallowPLRNN(3, 4, **k), ["clipped"]),
    "NextStepPredictor": (_gru, ["residual"]),
    "TimedNextStepPredictor": (
        lambda **k: TimedNextStepPredictor(torch.nn.GRU(2, 4, batch_first=True), 2, 4, **k),
        ["residual"]),
    "ContinuousPredictor": (lambda **k: ContinuousPredictor(tnn.CfC(2, 4, backbone_units=4),
                                                            2, **k), ["residual"]),
    "ChimeraHorizonModule": (
        lambda **k: ChimeraHorizonModule(2, 2, d_model=4, d_state=4, n_layers=1, **k),
        ["residual", "instance_norm", "linear_across_variates"]),
    "MassSpringDamperRoot": (lambda **k: MassSpringDamperRoot(**k), ["velocity"]),
    "WARP": (lambda **k: tnn.WARP(2, root_width=4, hyper_width=4, **k),
             ["init_normalize", "time_as_channel", "predict_std"]),
    "FullyConnected": (lambda **k: FullyConnected(4, **k), ["self_connections"]),
    "KuramotoSivashinsky": (lambda **k: KuramotoSivashinsky(**k), ["dealias"]),
}
_MODULE_CASES = [(m, p) for m, (_, params) in BOOL_MODULE_ARGUMENTS.items() for p in params]


def test_every_module_with_a_yes_no_argument_is_in_the_table():
    # torch modules, wirings and systems of tsrnn whose __init__ has a bool default
    found = set()
    for info in pkgutil.walk_packages(tsrnn.__path__, "tsrnn."):
        if "triton" in info.name:
            continue
        for cls in vars(importlib.import_module(info.name)).values():
            if (inspect.isclass(cls) and cls.__module__ == info.name
                    and issubclass(cls, torch.nn.Module | FullyConnected | DynamicalSystem)):
                found |= {(cls.__name__, p.name)
                          for p in inspect.signature(cls.__init__).parameters.values()
                          if isinstance(p.default, bool)}
    assert found <= set(_MODULE_CASES), sorted(found - set(_MODULE_CASES))


@pytest.mark.parametrize(("module", "param"), _MODULE_CASES,
                         ids=[f"{m}-{p}" for m, p in _MODULE_CASES])
def test_modules_refuse_yes_no_arguments_that_are_not_bools(module, param):
    make, _ = BOOL_MODULE_ARGUMENTS[module]
    for value in (True, False, np.True_):
        make(**{param: value})
    with pytest.raises(TypeError, match=rf"^{param} must be True or False, got 0\.5$"):
        make(**{param: 0.5})


# ====================================================================== round 2: training
_RISING = dict(learning_rate=1e-3, learning_rate_final=1e12, max_epochs=4)  # x1e5 an epoch


def test_a_module_that_diverges_is_reported_with_its_epoch_under_divergence_raise():
    # Was the module's own DivergenceError, passed through without the epoch.
    with pytest.raises(DivergenceError, match=r"training of LSSLForecaster diverged at epoch 2 "
                                              r"\(the learned step size exp\(log_dt\)"):
        ESTIMATORS["LSSLForecaster"](**_RISING).fit(Y)


def test_a_module_that_diverges_restores_the_best_checkpoint_under_divergence_restore():
    # Was the module's DivergenceError although divergence="restore".
    with pytest.warns(RuntimeWarning, match=r"diverged at epoch 2 .*the best checkpoint so far "
                                            r"is kept"):
        model = ESTIMATORS["LSSLForecaster"](**_RISING, divergence="restore").fit(Y)
    first_epoch_only = ESTIMATORS["LSSLForecaster"](learning_rate=1e-3, max_epochs=1).fit(Y)
    assert (model.n_epochs_, model.best_epoch_) == (2, 0)
    for name, weights in first_epoch_only.module_.state_dict().items():
        torch.testing.assert_close(model.module_.state_dict()[name], weights, rtol=0, atol=0)
    np.testing.assert_array_equal(model.predict(3), first_epoch_only.predict(3))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["GRUForecaster", "LSSLForecaster", "ESN", "NVAR", "PLRNN"])
def test_half_precision_is_refused_on_the_cpu_before_any_work(name, dtype):
    # Were a divergence advising a lower learning rate (float16), '"lu_cpu" not implemented
    # for Half' (LSSL) or 'Got unsupported ScalarType BFloat16' (ESN).
    with pytest.raises(ValueError, match=rf"dtype='{dtype}' is not supported for fitting "
                                         rf"{name} on the CPU.*use dtype='float32'"):
        ESTIMATORS[name](dtype=dtype, device="cpu").fit(Y)


def test_a_half_precision_divergence_names_the_dtype():
    # On CUDA, where half precision is allowed, a float16 training that diverges is most
    # likely its precision (Adam's epsilon 1e-8 rounds to 0), not the learning rate.
    model = ESTIMATORS["GRUForecaster"]()
    model.dtype_, model._reference_loss_ = torch.float16, 0.1
    with pytest.raises(DivergenceError, match=r"\(loss nan, first loss 0\.1\); train in float32 "
                                              r"rather than float16, or lower learning_rate"):
        model._on_divergence(0, float("nan"), None)


# ====================================================================== round 2: seeds
@pytest.mark.parametrize("system", [Henon(), Logistic(), Lorenz96(n=8),
                                    KuramotoSivashinsky(n_grid=16)],
                         ids=lambda s: type(s).__name__)
def test_every_sample_initial_states_checks_its_seed(system):
    # Were numpy's "expected non-negative integer" and "SeedSequence expects int".
    with pytest.raises(ValueError, match=r"seed must be >= 0, got -1"):
        system.sample_initial_states(2, seed=-1)
    with pytest.raises(TypeError, match=r"seed must be an integer, got 1.5"):
        system.sample_initial_states(2, seed=1.5)
    with pytest.raises(ValueError, match=r"n must be > 0"):
        system.sample_initial_states(0, seed=0)
    np.testing.assert_array_equal(system.sample_initial_states(2, seed=3),
                                  system.sample_initial_states(2, seed=3))


# ====================================================================== round 3 (stop 19)
# An audit of stop 19 found inputs that gave a silent wrong result, NaN or an internal error;
# each test below failed before its fix.
def test_a_hyperparameter_changed_after_fit_is_refused_by_predict_save_and_partial_fit(
        tmp_path):
    # Were: a saved file that no longer loads ("size mismatch for recurrent_dense"), or a
    # predict mixing the fitted weights with the new setting.
    model = ESTIMATORS["ESN"]().fit(Y)
    model.set_params(n_units=30)
    for call in (lambda: model.predict(3), lambda: model.save(tmp_path / "m.pt")):
        with pytest.raises(ValueError, match=r"ESN: n_units=30 \(fitted with 20\) was set after "
                                             r"fit.*fit again, or set it back"):
            call()
    assert not (tmp_path / "m.pt").exists()
    model.set_params(n_units=20, ridge=1e-3)  # back, and a readout setting: both fine
    saved = model.save(tmp_path / "m.pt")
    np.testing.assert_array_equal(type(model).load(saved).predict(3), model.predict(3))
    neural = ESTIMATORS["ALRNN"]().fit(Y)
    # Training settings; a DSR model's windows too (its predict runs free from a context).
    neural.set_params(max_epochs=2, learning_rate=1e-4, sequence_length=9).partial_fit(Y)
    neural.set_params(n_latent=6)
    with pytest.raises(ValueError, match=r"n_latent=6 \(fitted with 4\)"):
        neural.partial_fit(Y)


@pytest.mark.parametrize("name", ["ESN", "GRUForecaster"])
def test_exogenous_dataframe_columns_are_checked_like_those_of_y(name):
    # Were read by position: swapped columns gave another forecast without a word.
    frame = pd.DataFrame({"u": X[:, 0], "v": X[:, 0] ** 2})
    model = ESTIMATORS[name]().fit(Y, X=frame)
    future = frame.iloc[:3]
    model.predict(3, X=future)
    with pytest.raises(ValueError, match=r"X has columns \['v', 'u'\], but .* fitted on "
                                         r"\['u', 'v'\].*select X\[\['u', 'v'\]\]"):
        model.predict(3, X=future[["v", "u"]])
    with pytest.raises(ValueError, match=r"series 1 of X has columns \['v', 'u'\]"):
        ESTIMATORS[name]().fit([Y, Y], X=[frame, frame[["v", "u"]]])


def test_series_beyond_1e154_are_standardised_without_overflow():
    # Were all-NaN forecasts: the variance overflowed to inf.
    plain = ESTIMATORS["ESN"]().fit(Y).predict(3)
    for scale in (1e155, 1e300):
        huge = ESTIMATORS["ESN"]().fit(Y * scale).predict(3) / scale
        np.testing.assert_allclose(huge, plain, rtol=0, atol=1e-10)  # round-off of the scaling


def test_dates_are_read_in_seconds_whatever_the_unit_of_the_index():
    # pandas 3 builds microsecond indexes; they were read as nanoseconds (1000x too short).
    index = pd.date_range("2020", periods=80, freq="h")
    model = ESTIMATORS["CfCForecaster"](time_scale=3600.0).fit(pd.DataFrame(Y, index=index))
    np.testing.assert_array_equal(model.context_gaps_[1:], 1.0)
    horizon = pd.date_range(index[-1] + pd.Timedelta("1h"), periods=3, freq="h")
    np.testing.assert_array_equal(model.predict(3, times=horizon.as_unit("us")).to_numpy(),
                                  model.predict(3, times=horizon.as_unit("ns")).to_numpy())
    assert model.predict(2).index[0] == index[-1] + pd.Timedelta("1h")


@pytest.mark.parametrize("name", ["CfCForecaster", "LTCForecaster", "LEMForecaster",
                                  "HiPPOForecaster", "LSSLForecaster"])
def test_timed_forecasters_train_further_with_partial_fit_in_the_first_fits_time_unit(name):
    # Was "AttributeError: ... no attribute '_pending_times'" after any fit.
    model = ESTIMATORS[name]().fit(Y, times=np.arange(80) * 0.5)
    model.partial_fit(Y, times=100.0 + np.arange(80) * 0.25)
    assert model.time_scale_ == 0.5 and model.last_time_ == 100.0 + 79 * 0.25
    with pytest.raises(ValueError, match=r"times must be numbers, as in the first fit"):
        model.partial_fit(Y, times=pd.date_range("2020", periods=80, freq="h"))
    with pytest.raises(ValueError, match=r"times are dates, but the model was fitted on "
                                         r"numbers"):
        model.predict(2, times=pd.date_range("2030", periods=2, freq="h"))


def test_a_training_that_diverges_below_the_explosion_factor_warns():
    # Was silent: every epoch thousands of times the first batch's loss, under the 1e6
    # that stops a training, and the least bad kept as if it were a model.
    with pytest.warns(RuntimeWarning, match=r"training diverged: the best epoch's loss .* "
                                            r"times the first batch's loss .* worse than an "
                                            r"untrained one"):
        ESTIMATORS["GRUForecaster"](learning_rate=30.0, max_epochs=3).fit(Y)


def test_lyapunov_spectrum_checks_dt_for_every_kind_of_object():
    # A negative dt flipped the exponents' signs (a stable ESN read as chaotic).
    esn = ESTIMATORS["ESN"]().fit(Y)
    module = torch.nn.Linear(2, 2, dtype=torch.float64)
    for obj in (esn, module, lambda x: 0.5 * x):
        for dt, match in ((-0.1, r"dt must be > 0"), (0.0, r"dt must be > 0"),
                          (float("nan"), r"dt must be finite")):
            with pytest.raises(ValueError, match=match):
                lyapunov_spectrum(obj, 1, dt=dt, dim=2, n_steps=10)


def test_latent_to_data_checks_the_latent_width_and_values():
    # A (3, 1) input was broadcast, a (3, 7) one silently cut to its first columns.
    model = ESTIMATORS["ALRNN"]().fit(Y)
    assert model.latent_to_data(np.zeros((3, 4))).shape == (3, 2)
    for bad in (np.zeros((3, 1)), np.zeros((3, 7)), 1.0):
        with pytest.raises(ValueError, match=r"z must have shape \(\.\.\., 4\)"):
            model.latent_to_data(bad)
    with pytest.raises(ValueError, match=r"z contains NaN or inf"):
        model.latent_to_data(np.full((1, 4), np.nan))


def test_dsr_refuses_a_constant_column_before_training():
    # Was "x_true is constant in dimension(s) [1]" from checkpoint scoring, mid-training.
    with pytest.raises(ValueError, match=r"column\(s\) \[1\] of y are constant"):
        ESTIMATORS["PLRNN"]().fit(np.c_[Y[:, 0], np.ones(80)])


@pytest.mark.parametrize("name, setting, match", [
    ("ESN", {"input_scaling": 0.0}, r"input_scaling is 0 for every input"),
    ("ESN", {"input_connectivity": 1e-4}, r"input\(s\) \[0, 1\] reach no unit"),
    ("DeepResESN", {"input_scaling": 0.0}, r"input_scaling is 0: layer 0 would never see"),
    ("ResRMN", {"input_scaling": 0.0, "memory_input_scaling": 0.0},
     r"input_scaling is 0 and the memory's path is cut"),
])
def test_reservoirs_that_would_never_see_the_data_are_refused(name, setting, match):
    # Were fits whose forecast is one repeated row.
    with pytest.raises(ValueError, match=match):
        ESTIMATORS[name](**setting).fit(Y)


def test_attractor_measures_refuse_or_warn_where_they_cannot_measure():
    from tsrnn.metrics import power_spectrum_distance, state_space_divergence

    rng = np.random.default_rng(0)
    truth, noise = rng.standard_normal((500, 2)), rng.standard_normal((500, 2))
    # A kernel wider than the spectrum read a sine against noise as 6e-6.
    with pytest.raises(ValueError, match=r"10 steps, 6 frequency bins, fewer than 2 \* sigma"):
        power_spectrum_distance(np.sin(np.arange(10.0)), noise[:10, 0])
    # The std of values beyond 1e154 overflowed ("negative elements" from bincount).
    assert state_space_divergence(truth * 1e200, noise * 1e200) == pytest.approx(
        state_space_divergence(truth, noise), rel=1e-12)
    with pytest.warns(UserWarning, match=r"x_true has shape \(2, 500\).*pass its transpose"):
        state_space_divergence(truth.T, noise.T, method="gmm", n_samples=10)
    with pytest.raises(TypeError, match=r"truncate must be True or False"):
        power_spectrum_distance(truth, noise, truncate="yes")


@pytest.mark.parametrize("options, error, match", [
    ({"tolerance": -1.0}, ValueError, r"tolerance must be > 0"),
    ({"dedupe_tolerance": -1.0}, ValueError, r"dedupe_tolerance must be > 0"),
    ({"max_iterations": 0, "newton_steps": 0}, ValueError, r"both 0: nothing would refine"),
    ({"max_iterations": 2.5}, TypeError, r"max_iterations must be an integer"),
    ({"learning_rate": 0.0}, ValueError, r"learning_rate must be > 0"),
    ({"seed": 1.5}, TypeError, r"seed must be an integer"),
])
def test_the_newton_search_checks_its_settings(options, error, match):
    # Were an empty list (tolerance -1), 16 copies of one point (dedupe -1), torch's errors.
    for search in (lambda: fixed_points(Henon(), **options),
                   lambda: find_cycles(Henon(), 2, **options)):
        with pytest.raises(error, match=match):
            search()


def test_region_codes_beyond_62_relus_are_the_same_in_every_call():
    # Were the indices of the patterns visited in that call: one region, several codes.
    model = ESTIMATORS["ShallowPLRNN"](n_hidden=70).fit(Y)
    whole, part = model.symbolic_codes(Y[:60])[30:], model.symbolic_codes(Y[30:60])
    assert whole.dtype == object and list(whole) == list(part)
    assert max(whole) >= 2**62  # the codes are the patterns read as binary numbers
    from tsrnn.analysis import plot_symbolic_sequence

    assert len(plot_symbolic_sequence(whole).axes) == 3  # the plot takes them as codes


def test_plots_refuse_to_overwrite_a_file(tmp_path):
    from tsrnn.analysis import plot_symbolic_sequence

    path = tmp_path / "codes.png"
    path.write_bytes(b"saved by the user")
    with pytest.raises(FileExistsError, match=r"codes.png exists; pass overwrite=True"):
        plot_symbolic_sequence([0, 1, 1, 0, 2], path=path)
    assert path.read_bytes() == b"saved by the user"
    plot_symbolic_sequence([0, 1, 1, 0, 2], path=path, overwrite=True)
    assert path.read_bytes() != b"saved by the user"


def test_closed_loop_scorer_checks_its_settings_when_made():
    # Were checked only when scoring: a grid search trained every candidate, then NaN.
    from tsrnn.forecasting import closed_loop_scorer

    for setting, match in (({"dt": -1.0}, r"dt must be > 0"),
                           ({"threshold": 0.0}, r"threshold must be > 0"),
                           ({"lyapunov_exponent": -0.9}, r"lyapunov_exponent must be > 0")):
        with pytest.raises(ValueError, match=match):
            closed_loop_scorer(context=5, horizon=5, **setting)


def test_linear_scan_refuses_a_second_derivative_clearly():
    from tsrnn.ops import linear_scan

    a = torch.rand(2, 5, 3, dtype=torch.float64, requires_grad=True)
    b = torch.rand(2, 5, 3, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(linear_scan(a, b).square().sum(), a, create_graph=True)
    with pytest.raises(RuntimeError, match=r"differentiate twice"):
        grad.sum().backward()
    with pytest.raises(TypeError, match=r"check_finite must be a bool"):
        linear_scan(a, b, check_finite="no")


def test_yes_no_arguments_of_the_data_helpers_take_only_bools():
    from tsrnn.datasets import simulate_splits

    with pytest.raises(TypeError, match=r"standardize must be True or False"):
        simulate_splits(Lorenz63(), 10, n_validation=10, n_test=10, standardize="no")
    with pytest.raises(TypeError, match=r"return_tensor must be True or False"):
        Lorenz63().simulate(3, return_tensor="no")
    with pytest.raises(TypeError, match=r"return_stderr must be True or False"):
        lyapunov_spectrum(Henon(), return_stderr="yes", n_steps=10)


@pytest.mark.parametrize("y, error, match", [
    ([Y, None], TypeError, r"y is a list of NoneType, ndarray: give one array"),
    ([[1.0, 2.0], [3.0]], ValueError, r"y is a ragged nested list"),
])
def test_mixed_or_ragged_lists_get_a_clear_error(y, error, match):
    # Was numpy's "setting an array element with a sequence".
    with pytest.raises(error, match=match):
        ESTIMATORS["ESN"]().fit(y)


def test_load_refuses_damaged_files_and_newer_formats(tmp_path):
    from tsrnn.forecasting import base

    path = tmp_path / "m.pt"
    torch.save({"format": base._FORMAT}, path)
    with pytest.raises(ValueError, match=r"damaged tsrnn estimator file \(missing \['class', "):
        reservoir.ESN.load(path)
    saved = ESTIMATORS["ESN"]().fit(Y).save(tmp_path / "n.pt")
    payload = torch.load(saved, weights_only=True)
    payload["format_version"] = base._FORMAT_VERSION + 1
    torch.save(payload, saved)
    with pytest.raises(ValueError, match=r"reads up to format .*: upgrade tsrnn"):
        reservoir.ESN.load(saved)


def test_huge_random_states_get_a_clear_error():
    # Was "ufunc 'isfinite' not supported for the input types".
    with pytest.raises(ValueError, match=r"random_state must be below 2\*\*63"):
        ESTIMATORS["GRUForecaster"](random_state=2**70).fit(Y)


def test_cli_writes_null_for_a_standard_error_it_cannot_have(capsys):
    # Were "+- nan" and a NaN that strict JSON parsers reject.
    import json

    assert main(["lyapunov", "henon", "--n-trajectories", "1", "--n-steps", "200",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stderr"] == [None, None]


def test_reconstruct_checks_the_held_out_length_before_the_fit():
    from tsrnn.reconstruct import ReconstructionConfig, run_reconstruction

    with pytest.raises(ValueError, match=r"n_test must be an integer >= 100"):
        run_reconstruction(ReconstructionConfig(n_test=0))


def test_analyses_of_piecewise_linear_models_refuse_unknown_options_and_bad_seeds():
    # Were "scyfi() got an unexpected keyword argument" and numpy's seed errors.
    model = ESTIMATORS["ALRNN"]().fit(Y)
    with pytest.raises(ValueError, match=r"unknown options \['foo'\] for SCYFI .* it takes"):
        fixed_points(model, foo=1)
    with pytest.raises(ValueError, match=r"seed must be >= 0, got -1"):
        fixed_points(model, seed=-1)


def test_n_pwl_above_the_latent_size_names_where_that_size_came_from():
    with pytest.raises(ValueError, match=r"n_pwl=3 exceeds n_latent=None \(the 2 columns of "
                                         r"y\)"):
        ESTIMATORS["ALRNN"](n_latent=None, n_pwl=3).fit(Y)


def test_save_refuses_a_directory_and_a_path_through_a_file(tmp_path):
    # Were "IsADirectoryError" naming the temporary file, and "[Errno 17] File exists".
    model = ESTIMATORS["ESN"]().fit(Y)
    with pytest.raises(IsADirectoryError, match=r"is a directory; give a file name in it"):
        model.save(tmp_path, overwrite=True)
    (tmp_path / "a.pt").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=r"a part of its folder is a file"):
        model.save(tmp_path / "a.pt" / "m.pt")


def test_masked_entries_are_missing_values():
    # The mask was dropped, and the values under it used as data.
    masked = np.ma.masked_array(Y, mask=np.zeros_like(Y, dtype=bool))
    masked.mask[5, 1] = True
    with pytest.raises(ValueError, match=r"y contains NaN"):
        ESTIMATORS["ESN"]().fit(masked)
    unmasked = np.ma.masked_array(Y)  # no entry masked: the values themselves
    np.testing.assert_array_equal(ESTIMATORS["ESN"]().fit(unmasked).predict(2),
                                  ESTIMATORS["ESN"]().fit(Y).predict(2))


def test_more_settings_that_could_not_measure_or_learn_are_refused():
    from tsrnn.datasets import mass_spring_damper
    from tsrnn.metrics import state_space_divergence
    from tsrnn.systems import KuramotoOscillators

    with pytest.raises(ValueError, match=r"n_bins must be >= 2, got 1"):
        state_space_divergence(Y, Y, n_bins=1)  # was 0 for any pair
    with pytest.raises(ValueError, match=r"frequency_seed must be >= 0"):
        KuramotoOscillators(frequency_seed=-1)
    with pytest.raises(TypeError, match=r"seed must be an integer"):
        mass_spring_damper(4, 10, seed=1.5)
    with pytest.raises(ValueError, match=r"y is an empty list"):
        ESTIMATORS["ESN"]().fit([])
    masked = ESTIMATORS["PLRNN"](missing="mask").fit(Y)
    with pytest.raises(ValueError, match=r"context has a column with no observed value"):
        masked.predict(3, context=np.full((20, 2), np.nan))
    with pytest.warns(UserWarning, match=r"forcing_interval=16 is not shorter than "
                                         r"sequence_length=10.*plain BPTT"):
        ESTIMATORS["PLRNN"](teacher_forcing="sparse", forcing_interval=16).fit(Y)


def test_a_loss_that_is_not_finite_from_the_start_points_at_the_data():
    # Was "lower learning_rate or set gradient_clip" for data beyond float32's range.
    with pytest.raises(DivergenceError, match=r"untrained model's loss is not finite: check "
                                              r"the data's scale"):
        ESTIMATORS["GRUForecaster"](scale=False).fit(Y * 1e20)


def test_timed_forecasters_read_a_plain_list_as_one_series_of_times():
    # Was "times has 80 entries for 1 trajectories".
    model = ESTIMATORS["CfCForecaster"]().fit(Y, times=list(np.arange(80) * 0.5))
    assert model.time_scale_ == 0.5


def test_n_init_checks_every_trainings_checkpoint_file_before_any_trains(tmp_path):
    # Training 0 used to run to the end and write its file before training 1's was refused.
    (tmp_path / "k-init1.pt").write_bytes(b"saved by the user")
    with pytest.raises(FileExistsError, match=r"k-init1.pt'\] exist; choose a new"):
        ESTIMATORS["PLRNN"](n_init=2, checkpoint_path=str(tmp_path / "k.pt")).fit(Y)
    assert not (tmp_path / "k-init0.pt").exists()
    with pytest.raises(TypeError, match=r"checkpoint_path must be a path .* got int"):
        ESTIMATORS["GRUForecaster"](checkpoint_path=123).fit(Y)


def test_timed_forecasters_check_their_other_inputs():
    model = ESTIMATORS["CfCForecaster"]().fit(Y)
    with pytest.raises(ValueError, match=r"context must have 1 or 2 dimensions .* a scalar"):
        model.predict(3, context=1.0)  # was "object of type 'float' has no len()"
    with pytest.raises(ValueError, match=r"y must have shape \(T, 2\)"):
        model.get_state_trajectory(np.ones((5, 3)))  # was numpy's broadcast error
    with pytest.raises(ValueError, match=r"fitted without exogenous inputs; got X"):
        model.get_state_trajectory(Y, X=X)  # was ignored
    with pytest.raises(ValueError, match=r"a 1-D context is read as one column: for one row, "
                                         r"pass context\[None\]"):
        model.predict(3, context=Y[0])


@pytest.mark.parametrize("module", [
    lambda: tnn.Chimera(2, d_model=4, d_state=2, n_layers=1),
    lambda: tnn.WARP(2, root_width=4, hyper_width=4)], ids=["Chimera", "WARP"])
def test_modules_take_dt_as_a_number_or_a_list(module):
    # Was "AttributeError: 'float' object has no attribute 'ndim'".
    layer = module()
    x = torch.randn(2, 5, 2)
    as_tensor, _ = layer(x, dt=torch.full((2, 5), 0.5))
    as_list, _ = layer(x, dt=[[0.5] * 5] * 2)
    torch.testing.assert_close(as_list, as_tensor, rtol=0, atol=0)
    as_number, _ = layer(x, dt=0.5)
    torch.testing.assert_close(as_number, as_tensor, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"dt must be a number or have shape \(B, L\)"):
        layer(x, dt=[0.5, 0.5])


def test_a_generated_run_that_diverged_is_named_as_such():
    from tsrnn.metrics import power_spectrum_distance, state_space_divergence

    generated = np.tile(Y, (4, 1))
    generated[7, 1] = np.inf
    for measure in (state_space_divergence, power_spectrum_distance):
        # Was "remove or impute missing values first", advice for data, not for a model.
        with pytest.raises(ValueError, match=r"x_gen leaves the finite range at step 7: the "
                                             r"generated run diverged"):
            measure(np.tile(Y, (4, 1)), generated)


def test_lyapunov_spectrum_names_a_module_or_callable_of_another_shape():
    # Were torch's "mat1 and mat2 shapes cannot be multiplied", its forward-gradient error
    # and a TypeError from torch.where.
    module = torch.nn.Linear(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"Linear could not map states of dimension 3"):
        lyapunov_spectrum(module, x0=np.zeros(3), n_steps=10)
    for step, got in ((lambda x: x[:, :1], r"\(32, 1\)"), (lambda x: x.detach().numpy(),
                                                         r"ndarray")):
        with pytest.raises(ValueError, match=r"must map states \(B, 2\) to next states of the "
                                             rf"same shape as a torch tensor, got {got}"):
            lyapunov_spectrum(step, x0=np.ones(2), n_steps=10)


@pytest.mark.parametrize("module", [
    lambda: tnn.HiPPORNN(2, hidden_size=4, state_size=4),
    lambda: tnn.Chimera(2, d_model=4, d_state=2, n_layers=1),
    lambda: tnn.WARP(2, root_width=4, hyper_width=4)], ids=["HiPPORNN", "Chimera", "WARP"])
def test_an_empty_batch_is_named(module):
    # Were an IndexError and reshape errors from inside the modules.
    with pytest.raises(ValueError, match=r"x is empty along the batch \(B = 0\)"):
        module()(torch.zeros(0, 5, 2))


def test_time_scale_is_checked_even_where_it_has_no_effect():
    with pytest.raises(ValueError, match=r"time_scale must be > 0"):
        ESTIMATORS["CfCForecaster"](time_scale=-1.0).fit(Y)  # only warned "has no effect"


def test_closed_loop_scorer_scores_each_start_once(monkeypatch):
    from tsrnn.forecasting import closed_loop_scorer

    model = ESTIMATORS["ESN"]().fit(Y)
    starts = []
    original = type(model).predict

    def spy(self, n_steps, context=None, X=None):
        starts.append(len(context))
        return original(self, n_steps, context=context, X=X)

    monkeypatch.setattr(type(model), "predict", spy)
    # A block of 12 steps holds 3 distinct starts for context 5 and horizon 5, not 500.
    closed_loop_scorer(context=5, horizon=5, n_starts=500)(model, Y[:12])
    assert len(starts) == 3


def test_simulate_warns_when_dt_means_a_huge_number_of_substeps():
    # dt=1e6 for Lorenz-63 ran 1e8 substeps per sample without a word.
    with pytest.warns(UserWarning, match=r"dt=1000 is 100000 accurate integration steps of "
                                         r"Lorenz63 per sample.*check dt's unit"):
        Lorenz63().simulate(1, dt=1e3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Lorenz63().simulate(2, dt=0.25)  # 25 substeps: nothing to say
        Lorenz63().simulate(1, dt=1e3, substeps=10)  # chosen by the user


def test_data_helpers_read_their_arguments_as_documented(tmp_path):
    from tsrnn.datasets import load_csv, simulate_splits, train_test_split_series

    split = simulate_splits(Lorenz63(), 50, n_validation=10, n_test=10, seed=0)
    with pytest.raises(ValueError, match=r"column True is not a name or an index"):
        split.inverse_transform(np.zeros((2, 1)), columns=[True])  # was read as column 1
    path = tmp_path / "s.csv"
    path.write_text("time,x,y\n0,1,2\n1,3,4\n2,5,6\n")
    with pytest.raises(TypeError, match=r"columns must be a list of column names, got the "
                                        r"string 'xy' \(for one column: columns=\['xy'\]\)"):
        load_csv(path, columns="xy")  # was split into ['x', 'y']
    with pytest.raises(ValueError, match=r"data must be a series"):
        train_test_split_series(3.0)  # was "object of type 'float' has no len()"


def test_trajectories_with_columns_in_another_order_name_the_reference_at_fit():
    # Said "but ESN was fitted on", during the fit, naming the last trajectory's order.
    frame = pd.DataFrame(Y, columns=["a", "b"])
    with pytest.raises(ValueError, match=r"trajectory 0 of y has columns \['b', 'a'\], but the "
                                         r"last trajectory has \['a', 'b'\]"):
        ESTIMATORS["ESN"]().fit([frame[["b", "a"]], frame])


def test_warp_names_a_context_shorter_than_its_hypernetwork_reads():
    # Said "x has 2 steps", naming the module's argument rather than the user's context.
    model = ESTIMATORS["WARPForecaster"](init_window=4).fit(Y)
    with pytest.raises(ValueError, match=r"context has 2 rows; the hypernetwork reads the "
                                         r"first init_window=4"):
        model.predict(3, context=Y[:2])


# ====================================================================== round 4 (stop 20)
# An audit of reproducibility, quietness and persistence; each test failed before its fix.
@pytest.mark.parametrize("name", ["CfCForecaster", "LSSLForecaster"])
def test_time_aware_forecasters_write_checkpoints(tmp_path, name):
    # Was: AttributeError 'context_gaps_' at the first checkpoint, for every time-aware one.
    path = tmp_path / "best.pt"
    model = ESTIMATORS[name](checkpoint_path=str(path), max_epochs=2).fit(Y)
    np.testing.assert_array_equal(type(model).load(path).predict(3), model.predict(3))


def test_fit_leaves_the_callers_random_generators_as_they_were():
    # Was: every fit reseeded random, numpy and torch from random_state.
    import random

    for make in (ESTIMATORS["ESN"], ESTIMATORS["GRUForecaster"],
                 lambda: ESTIMATORS["ALRNN"](n_init=2)):
        random.seed(1)
        np.random.seed(1)  # noqa: NPY002 (the legacy global state is what is checked)
        torch.manual_seed(1)
        expected = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
        random.seed(1)
        np.random.seed(1)  # noqa: NPY002
        torch.manual_seed(1)
        make().fit(Y)
        assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected  # noqa: NPY002


def test_partial_fits_do_not_depend_on_what_the_caller_draws_in_between():
    # Was: partial_fit drew its dropout masks from the unseeded global generator.
    def trained(draw: bool):
        model = ESTIMATORS["GRUForecaster"](num_layers=2, dropout=0.5).fit(Y)
        if draw:
            torch.rand(3)
        return model.partial_fit(Y).partial_fit(Y).predict(4)

    np.testing.assert_array_equal(trained(False), trained(True))


def test_a_loaded_esn_is_its_saved_weights_without_drawing_a_reservoir(tmp_path, monkeypatch):
    # Was: load drew a new random reservoir (random_state=None: at times a nilpotent one,
    # refused) and solved for its radius, only to overwrite it with the saved weights.
    import copy

    from tsrnn.reservoir import esn as esn_module

    model = ESTIMATORS["ESN"](random_state=None, connectivity=0.5).fit(Y)  # never nilpotent
    path = model.save(tmp_path / "m.pt")
    monkeypatch.setattr(esn_module, "recurrent_matrix", None)  # any draw would fail
    loaded = type(model).load(path)
    np.testing.assert_array_equal(loaded.predict(5), model.predict(5))
    np.testing.assert_array_equal(copy.deepcopy(loaded).predict(5), model.predict(5))


def test_save_writes_readable_files_and_never_overwrites_by_a_race(tmp_path, monkeypatch):
    import os
    import stat

    model = ESTIMATORS["NVAR"]().fit(Y)
    previous = os.umask(0o022)
    try:
        path = model.save(tmp_path / "m.pt")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # was 0600 whatever the umask
    path.chmod(0o664)
    model.save(path, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o664  # a replaced file keeps its mode
    # A file that appears while save writes (another process's save) is not replaced.
    target = tmp_path / "race.pt"
    save = torch.save

    def racing(payload, file):
        target.write_bytes(b"the other save")
        save(payload, file)

    monkeypatch.setattr(torch, "save", racing)
    with pytest.raises(FileExistsError, match=r"race\.pt exists"):
        model.save(target)
    assert target.read_bytes() == b"the other save"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "race.pt"]


def test_a_refit_refused_for_its_checkpoint_file_keeps_the_fitted_model(tmp_path):
    # Was: the fitted model was cleared first, then the refit refused.
    model = ESTIMATORS["GRUForecaster"](checkpoint_path=str(tmp_path / "best.pt")).fit(Y)
    forecast = model.predict(3)
    with pytest.raises(FileExistsError, match=r"best\.pt exists"):
        model.fit(Y)
    np.testing.assert_array_equal(model.predict(3), forecast)


@pytest.mark.parametrize("name", RESERVOIRS)
def test_verbose_reservoirs_show_their_bar_for_one_series(name, capsys):
    # Was: no bar unless the trajectories came in two batches or more.
    ESTIMATORS[name](verbose=True).fit(Y)
    assert name in capsys.readouterr().err
    ESTIMATORS[name]().fit(Y)
    assert capsys.readouterr().err == ""


def test_tuple_labels_and_time_indexes_survive_save_and_load(tmp_path):
    # Were: tuple labels (a MultiIndex) came back as text, and a TimedeltaIndex or a float
    # time index was not continued (0, 1, 2, ...).
    columns = pd.MultiIndex.from_tuples([("pos", "x"), ("pos", "y")])
    for index, expected in [
        (pd.timedelta_range("0s", periods=80, freq="1s", name=("site", 1)),
         pd.timedelta_range("80s", periods=3, freq="1s", name=("site", 1))),
        (pd.Index(np.arange(80) * 0.01, name="t"), pd.Index([0.80, 0.81, 0.82], name="t")),
    ]:
        model = ESTIMATORS["NVAR"]().fit(pd.DataFrame(Y, index=index, columns=columns))
        for forecaster in (model, type(model).load(model.save(tmp_path / f"{id(index)}.pt"))):
            forecast = forecaster.predict(3)
            assert list(forecast.columns) == [("pos", "x"), ("pos", "y")]
            pd.testing.assert_index_equal(forecast.index, expected, exact=False,
                                          check_exact=False, rtol=1e-12)


# --------------------------------------------------------------------------- round 5 (stop 21)
def test_dtype_float_is_refused_as_ambiguous():
    # Was: "float" meant torch.float (float32), where numpy's "float" is float64.
    with pytest.raises(ValueError, match="ambiguous"):
        ESTIMATORS["ESN"](dtype="float").fit(Y)
    fitted = ESTIMATORS["ESN"](dtype="f8").fit(Y)
    assert {b.dtype for b in fitted.reservoir_.buffers() if b.is_floating_point()} == {
        torch.float64}


def test_a_simulation_that_grows_without_bound_but_stays_finite_is_a_divergence():
    # Was: Lorenz-63 by Euler at dt 0.5 returned states of 1e95 as data.
    with pytest.raises(DivergenceError, match=r"exploding values\) at t = "):
        Lorenz63().simulate(10, dt=0.5, method="euler", substeps=1)
    assert np.isfinite(Lorenz63().simulate(10, dt=0.01)).all()


def test_a_transposed_series_is_named_in_a_warning_or_in_the_error():
    # Was: a (variables, time) array was learned as a short series of many variables.
    wide = np.random.default_rng(0).standard_normal((60, 120))
    with pytest.warns(UserWarning, match="pass its transpose"):
        ESTIMATORS["NVAR"](order=1).fit(wide)
    with pytest.raises(ValueError, match="pass its transpose"):
        ESTIMATORS["ESN"]().fit(wide[:5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ESTIMATORS["NVAR"](order=1).fit(wide.T)


def test_cells_take_one_number_as_the_time_step_of_every_sample_and_step():
    x = torch.randn(4, 7, 3)
    for cell in (tnn.CfC(3, 5), tnn.LTC(3, 5)):
        expected, _ = cell(x, dt=torch.full((4, 7), 0.5))
        scalar, _ = cell(x, dt=0.5)
        torch.testing.assert_close(scalar, expected)
        with pytest.raises(ValueError, match="a number or have shape"):
            cell(x, dt=torch.full((4,), 0.5))


def test_exogenous_rows_for_the_horizon_must_carry_the_forecast_dates():
    # Was: predict took X of any dates by position (fit refused misdated X, predict did not).
    index = pd.date_range("2024-01-01", periods=130, freq="h")
    rng = np.random.default_rng(0)
    y = pd.DataFrame(rng.standard_normal((130, 2)), index=index, columns=["a", "b"])
    X = pd.DataFrame(rng.standard_normal((130, 1)), index=index, columns=["u"])
    model = ESTIMATORS["ESN"]().fit(y.iloc[:100], X.iloc[:100])
    right = model.predict(10, X=X.iloc[100:110])
    pd.testing.assert_index_equal(right.index, X.index[100:110], check_names=False)
    with pytest.raises(ValueError, match="dated otherwise than the forecast"):
        model.predict(10, X=X.iloc[112:122])
    model.predict(5, context=y.iloc[80:100], X=X.iloc[80:105])
    with pytest.raises(ValueError, match="its row 20 is"):
        model.predict(5, context=y.iloc[80:100], X=pd.concat([X.iloc[80:100], X.iloc[110:115]]))
    model.predict(10, X=X.iloc[112:122].to_numpy())  # undated rows: the caller's choice


def test_a_float_index_continues_without_binary_fractions():
    # Was: 20.020000000000003 after an index of 0.00, 0.01, ..., 19.99.
    model = ESTIMATORS["NVAR"]().fit(pd.DataFrame(
        np.random.default_rng(0).standard_normal((2000, 2)), index=np.arange(2000) * 0.01))
    assert model.predict(3).index.tolist() == [20.0, 20.01, 20.02]


def test_a_forecaster_closed_loop_gives_as_many_exponents_as_the_data_has_variables():
    # Was: all 1 + n_units + d exponents of an ESN's closed loop by default (70 s for 1000
    # units), where users want the leading ones.
    model = ESTIMATORS["ESN"]().fit(Y)
    spectrum = lyapunov_spectrum(model, n_steps=50, n_trajectories=2)
    assert spectrum.shape == (Y.shape[1],)
    more = lyapunov_spectrum(model, n_exponents=4, n_steps=50, n_trajectories=2)
    np.testing.assert_allclose(more[:Y.shape[1]], spectrum, rtol=1e-9)


def test_nvar_sums_its_features_block_by_block_as_in_one_piece(monkeypatch):
    # Was: one feature matrix per whole series (11 GB for 1M steps at delays=4, order=3).
    series = np.random.default_rng(0).standard_normal((3000, 3))
    whole = ESTIMATORS["NVAR"](order=2).fit(series)
    rows, original = [], reservoir.NVAR.features

    def counting(self, window):
        rows.append(window.shape[0])
        return original(self, window)

    monkeypatch.setattr(reservoir.NVAR, "features", counting)
    monkeypatch.setattr("tsrnn.reservoir.nvar._BLOCK_ROWS", 700)
    blocked = ESTIMATORS["NVAR"](order=2).fit(series)
    assert rows == [700, 700, 700, 700, 198]  # the 2998 windows of the series
    np.testing.assert_allclose(blocked.readout_weights_, whole.readout_weights_, rtol=1e-9,
                               atol=1e-12)


def test_a_long_context_runs_in_blocks_to_the_same_last_state(monkeypatch):
    # Was: predict(context=...) kept every state of the context run off the compiled kernel
    # (+770 MB for 200,000 steps of a DeepResESN).
    for name in ("ESN", "DeepResESN"):
        model = ESTIMATORS[name](dtype="float32").fit(Y)
        expected = model.predict(5, context=Y[:150])
        monkeypatch.setattr("tsrnn.reservoir.esn._CONTEXT_BLOCK", 32)
        np.testing.assert_allclose(model.predict(5, context=Y[:150]), expected, rtol=1e-6,
                                   atol=1e-6)
        monkeypatch.undo()


def test_quiet_fits_start_no_progress_thread():
    # Was: a disabled tqdm bar still started tqdm's monitor thread in the caller's process
    # (a fresh process: a verbose test here may have started it already).
    code = ("import threading, numpy as np\n"
            "from tsrnn.reservoir import ESN\n"
            "from tsrnn.forecasting import GRUForecaster\n"
            "y = np.random.default_rng(0).standard_normal((300, 2))\n"
            "ESN(n_units=50, connectivity=0.2, random_state=0).fit(y)\n"
            "GRUForecaster(hidden_size=4, max_epochs=1, sequence_length=8).fit(y)\n"
            "print(sorted(t.name for t in threading.enumerate()))\n")
    # Without the compiled kernels: no compiler run, nothing but the thread question.
    environment = {**os.environ, "TSRNN_NO_NATIVE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=environment)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['MainThread']"
    from tsrnn._progress import progress_bar

    bar = progress_bar(range(3), verbose=False)
    assert list(bar) == [0, 1, 2] and bar.update(1) is None and bar.close() is None


def test_dataset_and_system_names_are_taken_as_the_command_line_takes_them():
    # Were: load_dataset("Sunspots") refused (system names ignore case), and
    # simulate_splits("lorenz63") refused the name the command line accepts.
    from tsrnn.datasets import dataset_provenance, load_dataset, simulate_splits

    assert load_dataset("Sunspots").equals(load_dataset("sunspots"))
    assert dataset_provenance("NILE")["rows"] == 100
    with pytest.raises(ValueError, match="dataset name"):
        load_dataset("sunspot")
    split = simulate_splits("Lorenz63", n_train=50, n_test=20, seed=0)
    np.testing.assert_array_equal(
        split.train, simulate_splits(Lorenz63(), n_train=50, n_test=20, seed=0).train)


@pytest.mark.parametrize("system", [Henon(), Logistic(r=3.9)], ids=["Henon", "Logistic"])
def test_maps_iterated_in_numpy_give_torch_numbers_to_the_bit(system, monkeypatch):
    # Was 52 µs a Henon step (torch's per-call cost on tiny tensors); numpy's loop must
    # give the very same trajectory, and report a blow-up as torch's loop did.
    starts = system.sample_initial_states(3, 0)
    fast = system.simulate(700, x0=starts, transient=300)
    monkeypatch.setattr(type(system), "_numpy_step", False)
    np.testing.assert_array_equal(system.simulate(700, x0=starts, transient=300), fast)
    with pytest.raises(DivergenceError) as slow_error:
        Logistic(r=4.5).simulate(100)
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warning on the way
        with pytest.raises(DivergenceError) as fast_error:
            Logistic(r=4.5).simulate(100)
    assert str(fast_error.value) == str(slow_error.value)


# --------------------------------------------------------------------------- round 6 (stop 22)
@pytest.mark.parametrize("name, settings", [
    ("CfCForecaster", dict(hidden_size=4)), ("LSSLForecaster", dict(hidden_size=4)),
    ("GRUForecaster", dict(hidden_size=4)),
    ("ChimeraForecaster", dict(horizon=2, d_model=4, d_state=4, n_layers=1)),
])
def test_a_closed_loop_that_overflows_warns_and_pads_with_nan(name, settings):
    # An unstable learned map overflows in closed loop. predict warns at the first
    # non-finite step and fills the rest with NaN. Before, the cells' own input check
    # stopped the rollout with "x contains NaN or inf", a message about the user's data.
    series = Lorenz63().simulate(300, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(forecasting, name)(max_epochs=1, sequence_length=16, random_state=0,
                                          **settings).fit(series)
    last = list(model.module_.modules())[-1]  # the readout: outputs that overflow float32
    with torch.no_grad():
        last.bias.fill_(3e38)
        last.weight.fill_(3e38)
    with pytest.warns(RuntimeWarning, match=r"left the finite range at step \d+"):
        forecast = model.predict(20)
    assert forecast.shape == (20, 3)
    finite = np.isfinite(forecast).all(1)
    first = int(np.argmin(finite))
    assert not finite[first:].any()


def test_load_imports_only_tsrnn_classes_and_names_a_damaged_file(tmp_path, capsys):
    model = reservoir.ESN(n_units=20, random_state=0).fit(Lorenz63().simulate(300, seed=0))
    saved = model.save(tmp_path / "esn.pt")
    payload = torch.load(saved, weights_only=True)

    def crafted(name, **changes):
        path = tmp_path / f"{name}.pt"
        torch.save({**payload, **changes}, path)
        return path

    # "this" prints the Zen of Python when imported: a file must not make load import it.
    for name, klass, match in [("outside", "this:Nope", "whose module is not imported"),
                               ("function", "os:getcwd", "not a tsrnn estimator"),
                               ("missing", "tsrnn.reservoir:Nope", "does not exist here")]:
        with pytest.raises(ValueError, match=match):
            reservoir.ESN.load(crafted(name, **{"class": klass}))
    assert "Beautiful is better" not in capsys.readouterr().out
    # A user's own subclass, from a module already imported, loads.
    mine = type("MyESN", (reservoir.ESN,), {"__module__": __name__})
    sys.modules[__name__].MyESN = mine
    try:
        loaded = mine.load(crafted("mine", **{"class": f"{__name__}:MyESN"}))
    finally:
        delattr(sys.modules[__name__], "MyESN")
    assert type(loaded) is mine
    with pytest.raises(ValueError, match=r"damaged tsrnn estimator file \(KeyError"):
        reservoir.ESN.load(crafted("empty", state={}))
    garbage = tmp_path / "notes.pt"
    garbage.write_bytes(b"garbage, not a model")
    with pytest.raises(ValueError, match="cannot read it as an archive") as error:
        reservoir.ESN.load(garbage)
    assert "weights_only" not in str(error.value)  # torch's advice to turn the check off
    np.testing.assert_array_equal(reservoir.ESN.load(saved).predict(5), model.predict(5))


def test_analysis_of_a_forecaster_takes_its_own_device_and_dtype_and_names_others():
    # device= and dtype= are keywords of the analysis functions; a forecaster's map runs
    # where its model is, so the same placement is accepted and another one is named.
    series = Lorenz63().simulate(300, seed=0)
    model = reservoir.ESN(n_units=20, random_state=0).fit(series)
    options = dict(n_steps=20, transient=5, n_trajectories=2)
    np.testing.assert_array_equal(
        lyapunov_spectrum(model, device="cpu", dtype="float64", **options),
        lyapunov_spectrum(model, **options))
    with pytest.raises(ValueError, match=r"runs in float64, which the estimator sets"):
        lyapunov_spectrum(model, dtype="float32", **options)


def test_plot_labels_and_a_forecasters_x0_are_named_in_their_errors():
    from tsrnn.analysis import plot_attractor, plot_power_spectra

    points = np.random.default_rng(0).normal(size=(100, 3))
    for plot in (plot_attractor, plot_power_spectra):
        with pytest.raises(ValueError, match=r"labels must hold 2 strings"):
            plot(points, points + 1, labels=("a",))
    model = reservoir.ESN(n_units=20, random_state=0).fit(Lorenz63().simulate(300, seed=0))
    with pytest.raises(ValueError, match=r"x0 must have 23 columns.*closed-loop state"):
        lyapunov_spectrum(model, x0=points[:5], n_steps=10)


# --------------------------------------------------------------------------- round 7 (stop 23)
def test_a_readout_on_too_few_samples_is_refused_or_warned():
    # warmup + 2 rows gave one sample after the warm-up: the readout's weights all came out
    # 0 and the forecast a constant, without a word.
    series = Lorenz63().simulate(400, seed=0)
    with pytest.raises(ValueError, match=r"needs at least 103 .*two samples"):
        reservoir.ESN(n_units=30, random_state=0).fit(series[:102])
    with pytest.warns(UserWarning, match=r"fitted on 50 samples, fewer than the warmup=100"):
        model = reservoir.ESN(n_units=30, random_state=0).fit(series[:151])
    assert model.n_training_samples_ == 50  # 150 inputs, the first 100 dropped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reservoir.ESN(n_units=30, random_state=0).fit(series)


def test_reservoir_states_of_a_series_too_short_is_a_clear_error():
    model = reservoir.DeepResESN(n_layers=2, units_per_layer=10, random_state=0).fit(
        Lorenz63().simulate(300, seed=0))
    for rows in (0, 1):
        with pytest.raises(ValueError, match=f"y has {rows} rows?; the states need at least 2"):
            model.reservoir_states(np.zeros((rows, 3)))


def test_a_streamed_frame_dates_the_forecast_after_its_last_chunk():
    index = pd.date_range("2020-01-01", periods=1_500, freq="h")
    frame = pd.DataFrame(Lorenz63().simulate(1_500, seed=0), index=index)
    model = reservoir.ESN(n_units=30, random_state=0)
    for chunk in np.array_split(np.arange(1_500), 3):
        model.partial_fit(frame.iloc[chunk])
    forecast = model.predict(3)
    assert forecast.index[0] == index[-1] + pd.Timedelta(hours=1)


def test_nvar_without_a_constant_reports_the_conditioning_of_what_it_solves():
    # With constant=False the solve uses the uncentred normal equations; the centred ones
    # (what condition_number_ reported) hid an offset's ill-conditioning.
    series = Lorenz63().simulate(2_000, seed=0)
    series[:, 2] += 1e5
    with pytest.warns(UserWarning, match="ill-conditioned"):
        model = reservoir.NVAR(order=1, constant=False, ridge=1e-9, scale=False).fit(series)
    assert model.condition_number_ > 1e14
    centred = reservoir.NVAR(order=1, constant=True, ridge=1e-9, scale=False).fit(series)
    assert centred.condition_number_ < 1e10


def test_inf_is_refused_by_every_entry_point_of_a_masked_dsr_model():
    # NaN marks a missing observation with missing="mask"; inf passed everywhere but fit,
    # became float32's largest value in the forced state, and forecast ~1e25 silently.
    series = Lorenz63().simulate(600, seed=0)
    holey = series.copy()
    holey[100:110, 1] = np.nan
    model = dsr.ALRNN(n_latent=6, missing="mask", sequence_length=20, batch_size=8,
                      max_epochs=1, batches_per_epoch=2, random_state=0).fit(holey)
    bad = series[:200].copy()
    bad[150, 1] = np.inf
    calls = {
        "predict": lambda: model.predict(3, context=bad),
        "infer_latents": lambda: model.infer_latents(bad),
        "symbolic_codes": lambda: model.symbolic_codes(bad),
        "partial_fit": lambda: model.partial_fit(np.concatenate([bad, series[200:]])),
    }
    for call in calls.values():
        with pytest.raises(ValueError, match=r"contains inf \(first at index \(150, 1\)\); "
                                             "mark missing observations with NaN"):
            call()
    # Column-wise emptiness is named with the trajectory and the column.
    empty = series.copy()
    empty[:, 2] = np.nan
    with pytest.raises(ValueError, match=r"trajectory 1 of y has no observed value in column 2"):
        dsr.ALRNN(n_latent=6, missing="mask", max_epochs=1).fit([series, empty])


def test_one_diverging_training_of_n_init_is_left_out_with_its_seed_named():
    # It aborted the whole fit with a single-model message, discarding the good training.
    from tsrnn.exceptions import DivergenceError

    series = Lorenz63().simulate(2_000, transient=500, seed=0)
    settings = dict(n_latent=5, teacher_forcing="bptt", learning_rate=0.3,
                    gradient_clip=None, sequence_length=20, batch_size=8, max_epochs=3,
                    batches_per_epoch=5, checkpoint_every=1)
    alone = dsr.PLRNN(random_state=0, **settings).fit(series)
    with pytest.raises(DivergenceError):
        dsr.PLRNN(random_state=1, **settings).fit(series)
    with pytest.warns(UserWarning, match=r"training 1 \(random_state=1\): .*diverged at epoch "
                                         r"1.*left out"):
        model = dsr.PLRNN(random_state=0, n_init=2, **settings).fit(series)
    assert model.best_init_ == 0 and not np.isfinite(model.init_scores_[1])
    np.testing.assert_array_equal(model.predict(20), alone.predict(20))
    with pytest.raises(DivergenceError, match=r"every one of the 2 trainings of PLRNN "
                                              r"diverged.*training 0 \(random_state=1\)"):
        dsr.PLRNN(random_state=1, n_init=2, **{**settings, "learning_rate": 3.0}).fit(series)


def test_a_kept_model_whose_free_run_diverges_is_reported():
    # The teacher-forced loss stayed finite (0.02) while every checkpoint's free run
    # overflowed; fit returned the least bad of them without a word.
    series = Lorenz63().simulate(2_000, transient=500, seed=0)
    settings = dict(n_latent=6, teacher_forcing="gtf", sequence_length=20, batch_size=8,
                    max_epochs=15, batches_per_epoch=5, checkpoint_every=1, random_state=0)
    with pytest.warns(UserWarning, match=r"the kept model \(epoch \d+\) leaves the finite "
                                         r"range when run freely.*the first at epoch \d+"):
        model = dsr.ALRNN(learning_rate=0.3, **settings).fit(series)
    assert np.isfinite(model.history_["train_loss"]).all()
    # Its latents and codes say so too, as predict did.
    for call in (lambda: model.generate_latents(3_000),
                 lambda: model.symbolic_codes(n_steps=3_000)):
        with pytest.warns(RuntimeWarning, match=r"free run of ALRNN left the finite range"):
            call()
    with warnings.catch_warnings():  # a model that stays finite gets no such warning
        warnings.filterwarnings("error", message="the kept model")
        dsr.ALRNN(learning_rate=1e-3, **settings).fit(series)


def test_a_time_budget_trains_at_least_one_epoch_and_messages_fit_the_dsr_model():
    series = Lorenz63().simulate(600, seed=0)
    # A budget spent on setting up returned the untrained initial model, silently.
    model = dsr.ALRNN(n_latent=6, sequence_length=20, batches_per_epoch=2, max_time=1e-9,
                      random_state=0).fit(series)
    assert model.n_epochs_ == 1 and model.stopped_by_time_ and model.checkpoint_scores_
    # Without a validation part a DSR model still selects by free runs, not training loss.
    with pytest.warns(UserWarning, match="checkpoints are selected by free runs"):
        dsr.ALRNN(n_latent=6, sequence_length=200, batches_per_epoch=2, max_epochs=1,
                  validation_fraction=0.1, random_state=0).fit(series)
    with pytest.raises(ValueError, match="affine observation forces the latents"):
        dsr.PLRNN(n_latent=2, observation="affine", max_epochs=1).fit(series)


def test_a_dsr_model_fitted_on_a_time_indexed_frame_gives_exponents_per_time_unit(tmp_path):
    # The forecast's index continued with the data's step, but the exponents were per step.
    series = Lorenz63().simulate(1_000, seed=0)
    frame = pd.DataFrame(series, index=np.round(np.arange(1_000) * 0.01, 2))
    settings = dict(n_latent=4, sequence_length=20, batches_per_epoch=2, max_epochs=1,
                    random_state=0)
    model = dsr.PLRNN(**settings).fit(frame)
    options = dict(n_steps=50, transient=10, n_trajectories=2)
    np.testing.assert_allclose(lyapunov_spectrum(model, **options),
                               lyapunov_spectrum(model, dt=0.01, **options))
    loaded = dsr.PLRNN.load(model.save(tmp_path / "model.pt"))
    np.testing.assert_allclose(lyapunov_spectrum(loaded, **options),
                               lyapunov_spectrum(model, dt=0.01, **options))
    per_step = dsr.PLRNN(**settings).fit(series)
    np.testing.assert_allclose(lyapunov_spectrum(per_step, **options),
                               lyapunov_spectrum(model, dt=0.01, **options) * 0.01)


def test_selection_keeps_d_h_when_the_data_miss_a_value():
    # One NaN in the data made D_H 0 for every candidate: selection by D_stsp alone.
    from tsrnn.dsr.estimators import _longest_complete_stretch

    rows = np.ones((10, 2))
    rows[[2, 7], [0, 1]] = np.nan
    assert _longest_complete_stretch(rows) == (3, 7)
    assert _longest_complete_stretch(np.full((3, 2), np.nan)) == (0, 0)
    series = Lorenz63().simulate(1_500, seed=0)
    holey = series.copy()
    holey[700, 1] = np.nan
    settings = dict(n_latent=5, missing="mask", sequence_length=20, batches_per_epoch=2,
                    max_epochs=2, checkpoint_every=1, random_state=0)
    model = dsr.ALRNN(**settings).fit(holey)
    assert all(d_h > 0 for _, _, d_h in model.selection_scores_)


def test_nan_without_masking_points_every_dsr_entry_point_to_missing_mask():
    # fit said "pass missing='mask'", partial_fit and predict "remove or impute".
    series = Lorenz63().simulate(600, seed=0)
    model = dsr.ALRNN(n_latent=6, sequence_length=20, batches_per_epoch=2, max_epochs=1,
                      random_state=0).fit(series)
    holey = series.copy()
    holey[100, 1] = np.nan
    for call in (lambda: model.partial_fit(holey), lambda: model.predict(3, context=holey),
                 lambda: model.infer_latents(holey)):
        with pytest.raises(ValueError, match=r"contains NaN or inf \(first at index \(100, 1\)"
                                             r"\); .*fit it with missing='mask'"):
            call()
    # Estimators without masked training keep the plain advice.
    with pytest.raises(ValueError, match="remove or impute missing values first"):
        reservoir.ESN(n_units=20, random_state=0).fit(holey)
