"""The estimator contract of API.md, checked on every public estimator at once.

For each of the 16 estimators (tiny, seeded settings: each fit takes a fraction of a second;
the ESN also with a dense reservoir, the AL-RNN also with ``n_init=2``):

- save/load in float32 and float64: parameters and buffers keep their dtype and values, the
  module its evaluation mode, every fitted attribute comes back equal, predictions are
  bit-identical with and without a context and with exogenous inputs where the estimator
  takes them; a file loads the same twice; ``partial_fit`` after a reload continues exactly
  as without the save; numpy and torch dtypes as hyperparameters save; loading leaves the
  global random generators alone;
- reproducibility: ``clone`` + fit with the same ``random_state`` gives the same model to
  the bit, a second fit of one object forgets the first, ``set_params`` then fit equals a
  fresh estimator built with those values; fit adds only trailing-underscore attributes,
  predict changes none of them; nothing is printed or warned by default;
- input forms: a list of one trajectory equals the array, several trajectories continue
  after the last, a DataFrame/Series gives a DataFrame/Series with the continued index and
  the same values as the array (a tensor too), a 1-D array a 1-D forecast.

Everything is compared with ``assert_array_equal``: the same arithmetic in the same order
must give the same bits, and any rounding (a float64 model rebuilt in float32, weights
restored in another memory order, a frame read column-major) shows up as a difference.
Properties that a model's own test file already checks are not repeated for it (e.g. clone
gives an unfitted copy; the scikit-learn checks of the estimators that run them).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

from tsrnn.dsr import ALRNN, PLRNN, ShallowPLRNN
from tsrnn.forecasting import (
    CfCForecaster,
    ChimeraForecaster,
    GRUForecaster,
    HiPPOForecaster,
    LEMForecaster,
    LSSLForecaster,
    LSTMForecaster,
    LTCForecaster,
    WARPForecaster,
)
from tsrnn.forecasting._data import IndexInfo, StandardScaler
from tsrnn.nn import _ltc_cpu
from tsrnn.reservoir import ESN, NVAR, DeepResESN, ResRMN


@dataclasses.dataclass(frozen=True)
class Spec:
    """How to build a tiny instance of one estimator and what it supports."""

    cls: type
    options: dict
    change: dict  # a hyperparameter change that alters the fitted model (set_params test)
    exogenous: bool = True
    partial_fit: bool = False


NEURAL = dict(sequence_length=12, batch_size=16, max_epochs=2, random_state=0)
DSR = dict(sequence_length=12, batch_size=8, batches_per_epoch=3, max_epochs=2,
           checkpoint_every=1, random_state=0, device="cpu")
RESERVOIR = dict(warmup=10, random_state=0)

SPECS = {
    "ESN": Spec(ESN, dict(n_units=30, connectivity=0.2, **RESERVOIR), dict(n_units=20),
                partial_fit=True),
    "ESN-dense": Spec(ESN, dict(n_units=30, connectivity=1.0, leak_rate=0.5, **RESERVOIR),
                      dict(leak_rate=0.7), partial_fit=True),
    "DeepResESN": Spec(DeepResESN, dict(n_layers=2, units_per_layer=12, **RESERVOIR),
                       dict(units_per_layer=10), partial_fit=True),
    "ResRMN": Spec(ResRMN, dict(n_units=12, n_memory_units=12, memory_radius=0.9,
                                **RESERVOIR), dict(n_memory_units=10), partial_fit=True),
    "NVAR": Spec(NVAR, dict(delays=2, order=2), dict(delays=3), exogenous=False),
    "PLRNN": Spec(PLRNN, dict(n_latent=4, **DSR), dict(n_latent=5)),
    "ShallowPLRNN": Spec(ShallowPLRNN, dict(n_hidden=8, **DSR), dict(n_hidden=6)),
    # forcing_interval below the short test windows (16, the default, would force nothing).
    "ALRNN": Spec(ALRNN, dict(n_latent=4, n_pwl=2, forcing_interval=4, **DSR), dict(n_pwl=1)),
    # n_init > 1 keeps the best of several trainings through _set_state, as load does.
    "ALRNN-n_init": Spec(ALRNN, dict(n_latent=4, n_pwl=2, n_init=2, forcing_interval=4, **DSR),
                         dict(n_init=3)),
    "CfC": Spec(CfCForecaster, dict(hidden_size=6, backbone_units=8, **NEURAL),
                dict(hidden_size=5)),
    "LTC": Spec(LTCForecaster, dict(hidden_size=6, ode_unfolds=2, **NEURAL),
                dict(hidden_size=5)),
    "LEM": Spec(LEMForecaster, dict(hidden_size=6, **NEURAL), dict(hidden_size=5)),
    "HiPPO": Spec(HiPPOForecaster, dict(hidden_size=6, state_size=4, **NEURAL),
                  dict(state_size=3)),
    "LSSL": Spec(LSSLForecaster, dict(hidden_size=4, state_size=4, **NEURAL),
                 dict(state_size=3)),
    # (a validation part of 40 rows holds one window of 16 + 4 rows)
    "Chimera": Spec(ChimeraForecaster, dict(horizon=4, d_model=4, d_state=2, n_layers=1,
                                            validation_fraction=0.25,
                                            **{**NEURAL, "sequence_length": 16}),
                    dict(d_model=3), exogenous=False),
    "WARP": Spec(WARPForecaster, dict(root_width=4, hyper_width=4, **NEURAL),
                 dict(root_width=3)),
    "GRU": Spec(GRUForecaster, dict(hidden_size=6, **NEURAL), dict(hidden_size=5)),
    "LSTM": Spec(LSTMForecaster, dict(hidden_size=6, **NEURAL), dict(hidden_size=5)),
}
NAMES = list(SPECS)
N_ROWS = 160


def build(name: str, **overrides) -> Any:
    spec = SPECS[name]
    return spec.cls(**{**spec.options, **overrides})


def series(n_rows: int = N_ROWS, seed: int = 0, phase: float = 0.0) -> np.ndarray:
    """Two noisy oscillations (n_rows, 2): smooth enough for every model, never periodic."""
    t = np.arange(n_rows) * 0.15 + phase
    noise = 0.02 * np.random.default_rng(seed).standard_normal((n_rows, 2))
    return np.c_[np.sin(t), np.cos(1.3 * t) + 0.3 * np.sin(0.4 * t)] + noise


def exogenous(n_rows: int = N_ROWS, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n_rows, 1))


# ---------------------------------------------------------------------- comparisons
def assert_same(a: Any, b: Any, where: str) -> None:
    """Exact equality of fitted state: values, dtypes and devices (NaN equals NaN)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.nn.Module):
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb), f"{where}: state dict keys differ"
        for key in sa:
            assert_same(sa[key], sb[key], f"{where}.{key}")
        for (key, pa), pb in zip(a.named_parameters(), b.parameters()):
            assert pa.requires_grad == pb.requires_grad, f"{where}.{key}: requires_grad"
        assert a.training == b.training, f"{where}: train/eval mode differs"
    elif isinstance(a, torch.Tensor):
        assert (a.dtype, a.device, a.shape) == (b.dtype, b.device, b.shape), \
            f"{where}: {a.dtype} {a.device} {tuple(a.shape)} != {b.dtype} {b.device} " \
            f"{tuple(b.shape)}"
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, f"{where}: {a.dtype} != {b.dtype}"
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, StandardScaler):
        assert_same(a.mean, b.mean, f"{where}.mean")
        assert_same(a.scale, b.scale, f"{where}.scale")
    elif isinstance(a, IndexInfo):
        assert a.to_state() == b.to_state(), where
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def fitted_attributes(model: Any) -> dict:
    """The public learned state: trailing-underscore attributes not starting with one."""
    return {k: v for k, v in vars(model).items()
            if k.endswith("_") and not k.startswith("_")}


def assert_same_fitted_state(loaded: Any, model: Any,
                             skip: tuple[str, ...] = ("training_time_",)) -> None:
    """Equal public learned state (the measured training time of a reload is the saved
    one; of two fits it differs, so comparisons of fits skip it)."""
    mine, theirs = fitted_attributes(loaded), fitted_attributes(model)
    assert set(mine) == set(theirs), sorted(set(mine) ^ set(theirs))
    for name in sorted(mine):
        if name not in skip:
            assert_same(mine[name], theirs[name], name)


def snapshot(model: Any) -> dict:
    """A copy of the public learned state (modules as copies of their state dicts)."""
    return {k: {n: t.clone() for n, t in v.state_dict().items()}
            if isinstance(v, torch.nn.Module) else copy.deepcopy(v)
            for k, v in fitted_attributes(model).items()}


def predictions(model: Any, x_future: np.ndarray | None = None,
                context: np.ndarray | None = None, x_context: np.ndarray | None = None
                ) -> list[np.ndarray]:
    """Forecasts after the training data and after a context (with X where given)."""
    horizon = 7
    first = model.predict(horizon, X=x_future)
    if context is None:
        return [first]
    x = None if x_context is None else np.concatenate([x_context, x_future])
    return [first, model.predict(horizon, context=context, X=x)]


# ---------------------------------------------------------------------- save / load
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_save_load_keeps_dtype_state_and_predictions_to_the_bit(name, dtype, tmp_path):
    spec = SPECS[name]
    y = series()
    x = exogenous() if spec.exogenous else None
    model = build(name, dtype=dtype).fit(y, X=x)
    path = model.save(tmp_path / "model.pt")
    first, second = spec.cls.load(path), spec.cls.load(path)
    torch_dtype = getattr(torch, dtype)
    for loaded in (first, second):
        assert type(loaded) is spec.cls
        assert loaded.get_params() == model.get_params()
        assert loaded.dtype_ == model.dtype_ == torch_dtype
        assert loaded.device_ == model.device_
        assert_same_fitted_state(loaded, model, skip=())
        for module in [v for v in fitted_attributes(loaded).values()
                       if isinstance(v, torch.nn.Module)]:
            floats = {t.dtype for t in [*module.parameters(), *module.buffers()]
                      if t.is_floating_point()}
            assert torch_dtype in floats, f"{name}: no {dtype} tensor in {floats}"
    x_future = None if x is None else exogenous(7, seed=2)
    x_context = None if x is None else exogenous(60, seed=3)
    context = series(60, seed=4, phase=2.0)
    expected = predictions(model, x_future, context, x_context)
    for loaded in (first, second):
        for got, want in zip(predictions(loaded, x_future, context, x_context), expected):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("online", ["ridge", "rls", "lms"])
@pytest.mark.parametrize("name", [n for n in NAMES if SPECS[n].partial_fit])
def test_partial_fit_after_a_reload_continues_as_without_the_save(name, online, dtype,
                                                                  tmp_path):
    y, x = series(240), exogenous(240)
    chunks = [slice(0, 80), slice(80, 160), slice(160, 240)]
    kept = build(name, online_readout=online, dtype=dtype)
    saved = build(name, online_readout=online, dtype=dtype)
    for part in chunks[:2]:
        kept.partial_fit(y[part], X=x[part])
        saved.partial_fit(y[part], X=x[part])
    for _ in range(2):  # a reloaded model saved again and reloaded still continues exactly
        saved = type(saved).load(saved.save(tmp_path / f"{name}.pt", overwrite=True))
    kept.partial_fit(y[chunks[2]], X=x[chunks[2]])
    saved.partial_fit(y[chunks[2]], X=x[chunks[2]])
    assert_same_fitted_state(saved, kept, skip=())
    future = exogenous(7, seed=2)
    np.testing.assert_array_equal(saved.predict(7, X=future), kept.predict(7, X=future))


# ---------------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("name", NAMES)
def test_clone_refit_and_a_second_fit_reproduce_the_model_to_the_bit(name):
    spec = SPECS[name]
    y, other = series(), series(seed=5, phase=1.0)
    x = exogenous() if spec.exogenous else None
    x_future = None if x is None else exogenous(7, seed=2)
    model = build(name).fit(y, X=x)
    expected = model.predict(7, X=x_future)
    twin = clone(model).fit(y, X=x)
    assert_same_fitted_state(twin, model)
    np.testing.assert_array_equal(twin.predict(7, X=x_future), expected)
    # The same object fitted on other data, then on the first again: nothing of the
    # earlier fits (generators, optimiser state, caches) may leak into the last one.
    model.fit(other, X=None if x is None else exogenous(seed=6))
    model.fit(y, X=x)
    assert_same_fitted_state(model, twin)
    np.testing.assert_array_equal(model.predict(7, X=x_future), expected)


@pytest.mark.parametrize("name", NAMES)
def test_set_params_then_fit_equals_a_fresh_estimator_with_those_values(name):
    spec = SPECS[name]
    y = series()
    model = build(name).fit(y)
    before = model.predict(7)
    # The other precision than the estimator's default, besides the model's own change.
    dtype = "float32" if model.dtype_ == torch.float64 else "float64"
    model.set_params(**spec.change, random_state=3, dtype=dtype).fit(y)
    fresh = build(name, **spec.change, random_state=3, dtype=dtype).fit(y)
    assert model.dtype_ == getattr(torch, dtype)
    assert_same_fitted_state(model, fresh)
    np.testing.assert_array_equal(model.predict(7), fresh.predict(7))
    assert not np.array_equal(model.predict(7), before)


# ---------------------------------------------------------------------- input forms
@pytest.mark.parametrize("name", NAMES)
def test_a_list_of_one_trajectory_equals_the_array_and_several_continue_the_last(name):
    y = series()
    alone = build(name).fit(y)
    listed = build(name).fit([y])
    np.testing.assert_array_equal(listed.predict(7), alone.predict(7))
    last = series(120, seed=7, phase=3.0)
    several = build(name).fit([series(140, seed=8, phase=1.0), last])
    forecast = several.predict(7)
    assert forecast.shape == (7, 2) and np.isfinite(forecast).all()
    # predict() continues the last trajectory: the same as its kept tail given as context.
    kept = len(several.context_y_)
    np.testing.assert_array_equal(forecast, several.predict(7, context=last[-kept:]))


@pytest.mark.parametrize("name", NAMES)
def test_pandas_in_gives_pandas_out_with_the_continued_index_and_the_array_values(name):
    y = series()
    plain = build(name).fit(y).predict(7)
    index = pd.date_range("2024-01-01", periods=len(y), freq="h", name="when")
    frame = pd.DataFrame(y, index=index, columns=["a", "b"])
    forecast = build(name).fit(frame).predict(7)
    assert isinstance(forecast, pd.DataFrame)
    assert list(forecast.columns) == ["a", "b"]
    pd.testing.assert_index_equal(
        forecast.index, pd.date_range("2024-01-07 16:00", periods=7, freq="h", name="when"))
    np.testing.assert_array_equal(forecast.to_numpy(), plain)
    # A context frame sets the index of the forecast; a tensor reads as its array.
    context = pd.DataFrame(y[-60:], index=pd.RangeIndex(1000, 1060), columns=["a", "b"])
    after = build(name).fit(frame).predict(7, context=context)
    pd.testing.assert_index_equal(after.index, pd.RangeIndex(1060, 1067))
    from_tensor = build(name).fit(torch.from_numpy(y))
    np.testing.assert_array_equal(from_tensor.predict(7), plain)
    np.testing.assert_array_equal(from_tensor.predict(7, context=torch.from_numpy(y[-60:])),
                                  after.to_numpy())
    column = pd.Series(y[:, 0], index=pd.RangeIndex(10, 10 + 2 * len(y), 2), name="a")
    one = build(name).fit(column).predict(5)
    assert isinstance(one, pd.Series) and one.name == "a"
    pd.testing.assert_index_equal(one.index, pd.RangeIndex(10 + 2 * len(y),
                                                           20 + 2 * len(y), 2))
    np.testing.assert_array_equal(one.to_numpy(), build(name).fit(y[:, 0]).predict(5))


@pytest.mark.parametrize("name", NAMES)
def test_a_one_dimensional_array_gives_a_one_dimensional_forecast(name):
    y = series()[:, 0]
    model = build(name).fit(y)
    assert model.predict(5).shape == (5,)
    assert model.predict(5, context=y[-60:]).shape == (5,)
    assert model.predict(5, context=y[-60:, None]).shape == (5,)


@pytest.mark.parametrize("name", NAMES)
def test_fit_predict_save_and_load_are_quiet_by_default(name, tmp_path, capfd):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build(name).fit(series())
        model.predict(5)
        type(model).load(model.save(tmp_path / "model.pt")).predict(5)
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("name", NAMES)
def test_fit_adds_only_learned_attributes_and_predict_changes_nothing(name):
    spec = SPECS[name]
    model = build(name)
    params = model.get_params(deep=False)
    y = series()
    x = exogenous() if spec.exogenous else None
    x_future = None if x is None else exogenous(7, seed=2)
    model.fit(y, X=x)
    assert model.get_params(deep=False) == params
    added = set(vars(model)) - set(params)
    assert all(n.endswith("_") for n in added), sorted(n for n in added if not n.endswith("_"))
    first = model.predict(7, X=x_future)
    before = snapshot(model)
    x_context = None if x is None else np.concatenate([exogenous(60, seed=3), x_future])
    model.predict(7, context=series(60, seed=4, phase=2.0), X=x_context)
    assert_same(snapshot(model), before, "fitted state")
    np.testing.assert_array_equal(model.predict(7, X=x_future), first)


# ---------------------------------------------------------------------- timed forecasters
TIMED = ["CfC", "LTC", "LEM", "HiPPO", "LSSL"]


@pytest.mark.parametrize("name", TIMED)
def test_irregular_times_survive_save_and_load_in_float64_to_the_bit(name, tmp_path):
    # (float32 with times is covered by tests/forecasting/test_continuous.py and
    # test_memory_times.py.) CfC runs with backbone dropout: a reloaded module left in
    # training mode would give other hidden states at every call.
    times = np.cumsum(np.random.default_rng(9).uniform(0.5, 1.5, N_ROWS))
    extra = dict(backbone_dropout=0.3) if name == "CfC" else {}
    model = build(name, dtype="float64", **extra).fit(series(), X=exogenous(), times=times)
    loaded = type(model).load(model.save(tmp_path / "model.pt"))
    assert_same_fitted_state(loaded, model, skip=())
    horizon = times[-1] + np.array([0.3, 1.0, 1.2, 2.5])
    x_future = exogenous(4, seed=2)
    np.testing.assert_array_equal(loaded.predict(4, X=x_future, times=horizon),
                                  model.predict(4, X=x_future, times=horizon))
    np.testing.assert_array_equal(
        loaded.get_state_trajectory(series(30), X=exogenous(30), times=times[:30]),
        model.get_state_trajectory(series(30), X=exogenous(30), times=times[:30]))


# ---------------------------------------------------------------------- hyperparameter forms
@pytest.mark.parametrize("name", ["ESN", "NVAR", "ALRNN", "GRU"])
@pytest.mark.parametrize("dtype", [np.float64, np.dtype("float32"), torch.float64])
def test_numpy_and_torch_dtypes_as_hyperparameters_save_and_load(name, dtype, tmp_path):
    # resolve_dtype takes names, numpy and torch dtypes; a model fitted with any of them
    # must also save (the file holds no pickled objects).
    model = build(name, dtype=dtype).fit(series())
    loaded = type(model).load(model.save(tmp_path / "model.pt"))
    assert loaded.dtype == dtype and loaded.dtype_ == model.dtype_
    np.testing.assert_array_equal(loaded.predict(5), model.predict(5))


@pytest.mark.parametrize("name", ["ESN", "ALRNN", "GRU"])
def test_loading_leaves_the_global_generators_alone(name, tmp_path):
    # fit seeds the global generators from random_state (documented); load trains nothing
    # and must not reset a caller's random streams.
    path = build(name, random_state=11).fit(series()).save(tmp_path / "model.pt")
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002 (the legacy global generator is what is checked)
    expected = torch.rand(3), np.random.rand(3)  # noqa: NPY002
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002
    type(build(name)).load(path)
    torch.testing.assert_close(torch.rand(3), expected[0], rtol=0, atol=0)
    np.testing.assert_array_equal(np.random.rand(3), expected[1])  # noqa: NPY002


# ---------------------------------------------------------------------- scikit-learn checks
SKLEARN_CHECKS = [
    "check_parameters_default_constructible", "check_no_attributes_set_in_init",
    "check_get_params_invariance", "check_set_params", "check_estimator_cloneable",
    "check_estimator_repr", "check_do_not_raise_errors_in_init_or_set_params",
    "check_estimators_fit_returns_self", "check_dont_overwrite_parameters",
    "check_fit_check_is_fitted", "check_n_features_in", "check_estimators_unfitted",
]
# Checks that fit take scikit-learn's (X, y) as fit(y=X, X=y): NVAR takes no exogenous
# inputs, so only the checks of the parameters apply to it.
FITTING_CHECKS = SKLEARN_CHECKS[7:]


@pytest.mark.parametrize("name", ["ESN", "DeepResESN", "ResRMN", "NVAR", "CfC", "LTC",
                                  "WARP"])
def test_scikit_learn_estimator_checks_pass(name):
    # (The other estimators run these checks in their own test files.)
    from sklearn.utils import estimator_checks

    short = {} if SPECS[name].cls in (ESN, DeepResESN, ResRMN, NVAR) else dict(
        sequence_length=4, batch_size=8, validation_fraction=0.0)
    for check in SKLEARN_CHECKS:
        if name == "NVAR" and check in FITTING_CHECKS:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            getattr(estimator_checks, check)(name, build(name, **short))


# ---------------------------------------------------------------------- several threads
@pytest.fixture
def two_threads():
    """Torch (and the compiled kernels, which take torch's count) on two threads, as a
    default session on a multi-core machine runs; the test suite otherwise uses one."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", NAMES)
def test_fits_with_two_threads_are_reproducible_to_the_bit(name, two_threads):
    spec = SPECS[name]
    x = exogenous() if spec.exogenous else None
    first = build(name).fit(series(), X=x)
    for _ in range(2):
        again = clone(first).fit(series(), X=x)
        assert_same_fitted_state(again, first)


@pytest.mark.skipif(not _ltc_cpu.available(), reason="no C compiler here")
def test_ltc_kernel_weight_gradients_are_the_same_bits_on_every_run(two_threads):
    # The backward kernel summed the weight gradients per thread, over a dynamic share of
    # the batch, and added those sums in the order the threads finished: two identical
    # trainings of an LTCForecaster drifted apart in the last bits. Now the sums are per
    # fixed chunk of the batch, added in order, whatever the threads.
    from tsrnn.nn._ltc_kernels import FusedLTC

    generator = torch.Generator().manual_seed(0)
    B, L, H = 48, 6, 12

    def rand(*shape):
        return torch.rand(*shape, generator=generator, dtype=torch.float64)

    w, sigma = rand(H, H), 3 + 5 * rand(H, H)
    tensors = [0.3 * torch.randn(B, H, generator=generator, dtype=torch.float64),
               3 + 6 * rand(B, L, H), rand(B, L, H) - 0.5, 0.5 + rand(B, L, H), w,
               w * torch.sign(rand(H, H) - 0.3), sigma, sigma * (0.3 + 0.5 * rand(H, H))]
    tensors = [t.requires_grad_() for t in tensors]
    weights = torch.randn(B, L, H, generator=generator, dtype=torch.float64)

    def gradients():
        out = FusedLTC.apply(*tensors, 4, "native")
        return torch.autograd.grad((out * weights).sum(), tensors)

    first = gradients()
    for _ in range(10):
        for got, expected in zip(gradients(), first):
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
    torch.set_num_threads(1)  # the same bits with any number of threads
    for got, expected in zip(gradients(), first):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_hyperparameters_are_keyword_only(name):
    # API.md: "hyperparameters as __init__ keywords only" (as scikit-learn's own since 1.0).
    import inspect

    parameters = list(inspect.signature(SPECS[name].cls.__init__).parameters.values())[1:]
    assert parameters and all(p.kind is p.KEYWORD_ONLY for p in parameters)
    with pytest.raises(TypeError):
        SPECS[name].cls(1)
