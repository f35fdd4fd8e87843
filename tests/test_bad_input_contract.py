"""The bad-input contract across the public API.

"Bad input gets a clear error, never a silent NaN or a wrong shape." Every estimator of
API.md is run through the same table of bad series, contexts, horizons and exogenous inputs
(the shared base does the checking, but each estimator can override fit, predict or the
minimum length, so each is checked); then the entry points whose gaps this audit closed:
``partial_fit`` of the reservoirs, ``simulate``'s seed, tolerances and system parameters,
the options of the analyses, ``random_state``, a training that diverges inside a module,
and the command line. Each case asserts the exception type and a fragment of the message
that tells the user what is wrong. Models are tiny: the module runs in seconds.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from tsrnn import dsr, forecasting, reservoir
from tsrnn.analysis import find_cycles, fixed_points, lyapunov_spectrum
from tsrnn.cli import main
from tsrnn.exceptions import DivergenceError, NotFittedError
from tsrnn.systems import Henon, Lorenz63, Lorenz96

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
    "ALRNN": lambda **k: dsr.ALRNN(**{"n_latent": 4, "n_pwl": 2, **_DSR, **k}),
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
    "one-row": (Y[:1], ValueError, r"y has 1 time steps; .* needs at least \d+"),
    "empty": (Y[:0], ValueError, r"y has 0 time steps"),
    "3-d": (Y[None], ValueError, r"y must have 1 or 2 dimensions, got shape \(1, 80, 2\)"),
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


@pytest.mark.parametrize(("system", "match"), [
    (Lorenz63(sigma=float("nan")), r"sigma must be a finite number, got nan"),
    (Lorenz63(rho="28"), r"rho must be a finite number, got '28'"),
    (Lorenz96(n=8, forcing=float("inf")), r"forcing must be a finite number, got inf"),
    (Henon(a="1.4"), r"a must be a finite number, got '1.4'"),
])
def test_simulate_refuses_non_finite_or_text_system_parameters(system, match):
    # Were a DivergenceError advising a smaller dt, or a TypeError from inside the field.
    with pytest.raises(ValueError, match=match):
        system.simulate(5)


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

