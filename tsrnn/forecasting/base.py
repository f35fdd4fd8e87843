"""The estimator base shared by every forecaster, reservoir and reconstruction model.

Two layers:

:class:`BaseForecaster`
    The scikit-learn contract (hyperparameters stored verbatim by ``__init__``, learned
    state in trailing-underscore attributes, ``get_params``/``set_params``/``clone``),
    validation of the series with clear errors, several trajectories, exogenous inputs,
    standardisation, device, dtype, seeding, closed-loop ``predict`` with a context,
    pandas index continuation, and ``save``/``load`` (a GPU-trained model loads on a CPU).
    A concrete estimator implements ``_fit`` and ``_predict`` on standardised arrays.

:class:`NeuralForecaster`
    Adds the gradient-training loop: windows of the series, mini-batches, Adam or RAdam with
    an exponentially decaying learning rate, gradient clipping, a validation split at the
    end of each trajectory, early stopping that keeps the best checkpoint, one optional tqdm
    bar, and detection of divergence. A concrete model implements ``_build_module`` and, if
    its training differs from one-step-ahead teacher forcing, ``_training_loss``.

Conventions for exogenous inputs X: to forecast y_{t+1} a model sees y up to t and X up to
t+1 (X is known for the step being predicted). In ``predict``, ``X`` holds the ``n_steps``
rows of the forecast horizon, preceded by the context's rows when a ``context`` is given.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import math
import os
import stat
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator

from .. import __version__
from .._progress import progress_bar
from .._torch import resolve_device, resolve_dtype, seeded_generators, torch_generator
from .._validation import (
    as_float_array,
    check_bool,
    check_in_range,
    check_no_inf,
    check_option,
    check_positive,
    warn,
)
from ..exceptions import DivergenceError, NotFittedError
from ._data import (
    IndexInfo,
    StandardScaler,
    as_series_list,
    check_aligned_dates,
    check_exogenous,
    check_horizon_dates,
    check_time_order,
    index_info,
)

_FORMAT = "tsrnn-estimator"
_FORMAT_VERSION = 1


def store_hyperparameters(estimator: Any, arguments: dict) -> None:
    """Store every ``__init__`` argument unchanged under its own name (scikit-learn's
    contract); for estimators with many hyperparameters: ``store_hyperparameters(self,
    locals())``."""
    for name, value in arguments.items():
        if name != "self" and not name.startswith("__"):
            setattr(estimator, name, value)


def _link_new(temporary: Path, path: Path) -> None:
    """Give ``temporary`` the name ``path`` only if no file has it, atomically: a file that
    appeared since save checked (another process's save) is never replaced."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it") from None
    except OSError:  # a file system without hard links: check once more, then rename
        if path.exists():
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it") \
                from None
        os.replace(temporary, path)


class BaseForecaster(BaseEstimator):
    """Base class of all tsrnn estimators (see the module docstring).

    Subclasses declare every hyperparameter as an ``__init__`` keyword stored unchanged
    under its own name, including ``random_state``, ``device``, ``dtype`` and ``verbose``
    (and ``scale`` when they standardise). They implement:

    - ``_fit(y_list, x_list)``: learn from standardised float64 arrays, a list of (T_i, d)
      and a list of (T_i, p) or None;
    - ``_predict(n_steps, context_y, context_x, future_x)``: the standardised forecast
      (n_steps, d) following ``context_y`` (T_c, d), with exogenous rows ``context_x``
      (T_c, p) and ``future_x`` (n_steps, p), or None.

    and may override ``_min_length`` (rows a training series needs) and ``_context_length``
    (how many trailing rows of the training data ``predict(context=None)`` starts from).
    """

    _allow_nan: bool = False
    # What the error about NaN in y or a context tells the user to do (None: remove or
    # impute); estimators that can train on missing values say how.
    _nan_remedy: str | None = None
    _default_dtype: torch.dtype = torch.float32
    # Hyperparameters that only steer training (or the runtime): set_params may change them
    # on a fitted model, for partial_fit or a later save. A change of any other one would
    # leave the fitted model out of step with its hyperparameters (a saved file that no
    # longer loads, a predict that mixes old weights with new settings), which predict,
    # save and partial_fit refuse (see _check_fitted). Subclasses add their own.
    _training_params: frozenset[str] = frozenset({
        "verbose", "random_state", "device", "n_jobs", "max_epochs", "max_time",
        "learning_rate", "learning_rate_final", "batch_size", "batches_per_epoch",
        "checkpoint_path", "checkpoint_every", "early_stopping", "validation_fraction",
        "divergence", "gradient_clip", "weight_decay", "optimizer", "n_init"})
    # Whether fit reads the times of irregular samples (the TimedForecaster family); the
    # others are told when an irregular DatetimeIndex is taken as equally spaced rows.
    _reads_times: bool = False

    # ------------------------------------------------------------------ hooks
    def _fit(self, y_list: list[np.ndarray], x_list: list[np.ndarray] | None) -> None:
        raise NotImplementedError

    def _predict(self, n_steps: int, context_y: np.ndarray, context_x: np.ndarray | None,
                 future_x: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def _min_length(self) -> int:
        return 2

    def _check_files(self) -> None:
        """Refuse, before a fit changes anything, files the fit would have to overwrite."""

    def _min_length_reason(self) -> str:
        """What sets :meth:`_min_length`, for the error about a series too short."""
        return ""

    def _context_length(self) -> int | None:
        """Trailing training rows kept for ``predict(context=None)``; None keeps them all."""
        return None

    # ------------------------------------------------------------------ runtime
    def _resolve_runtime(self) -> None:
        """Set ``device_`` and ``dtype_`` from the hyperparameters."""
        self.device_ = resolve_device(getattr(self, "device", None))
        self.dtype_ = resolve_dtype(getattr(self, "dtype", None), self._default_dtype)

    def _seeded(self, seed: int | None):
        """A context in which the global generators are seeded from ``seed`` (fit: the
        ``random_state``), the caller's generator states given back at its end."""
        return seeded_generators(seed, resolve_device(getattr(self, "device", None)))

    def _check_autonomous(self, options: dict) -> None:
        """What every ``as_discrete_map`` of a fitted model checks: no options it does not
        take, and no exogenous inputs (their closed loop is not an autonomous map)."""
        if options:
            raise ValueError(f"unknown options {sorted(options)}")
        if self.n_exog_:
            raise ValueError("the closed loop of a model with exogenous inputs is not "
                             "autonomous; no discrete map can be formed")

    def _generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator derived from ``random_state`` (fresh entropy when it is None)."""
        seed = getattr(self, "random_state", None)
        return torch_generator(None if seed is None else int(seed) + offset)

    def _tensor(self, array: np.ndarray, device: torch.device | str | None = None
                ) -> torch.Tensor:
        """``array`` as a tensor of the model's dtype on ``device`` (None: the model's)."""
        return torch.as_tensor(array, dtype=self.dtype_,
                               device=self.device_ if device is None else device)

    @property
    def _verbose(self) -> bool:
        return _check_verbose(getattr(self, "verbose", False))

    # ------------------------------------------------------------------ fit
    def fit(self, y: Any, X: Any = None):
        """Fit the model to one or several trajectories.

        Parameters
        ----------
        y : array (T, d) or (T,), DataFrame, Series, tensor, or a list of those
            The series; a list holds several trajectories of the same system.
        X : optional, same forms as ``y``
            Exogenous inputs, one row per row of ``y`` (a list when ``y`` is one).

        Returns
        -------
        self
        """
        y_list, x_list, collection = self._validated_lists(y, X)
        # Before anything is cleared: a refit refused for its files keeps the fitted model.
        self._check_files()
        # A refit starts from nothing, and a failed fit leaves nothing behind: no mix of an
        # old model with new data.
        self._clear_learned_state()
        try:
            with self._seeded(getattr(self, "random_state", None)):
                self._fit_validated(y, y_list, x_list, collection, X)
        except BaseException:
            self._clear_learned_state()
            raise
        return self

    def _validated_lists(self, y: Any, X: Any) -> tuple[list, list | None, bool]:
        """The trajectories of ``y`` and ``X`` as float arrays, checked as ``fit`` needs
        them: ``(y_list, x_list, collection)``."""
        y_list, collection = as_series_list(y, "y", allow_nan=self._allow_nan,
                                            remedy=self._nan_remedy)
        minimum = self._min_length()
        for i, series in enumerate(y_list):
            where = f"trajectory {i} of y" if collection else "y"
            # Rows are time steps; an array given as (variables, time) has more columns than
            # rows and would otherwise be learned as a short series of many variables.
            transposed = (f" (rows are time steps and columns variables: if {where} is "
                          f"(variables, time), pass its transpose)"
                          if series.shape[1] > series.shape[0] else "")
            if series.shape[0] < minimum:
                raise ValueError(
                    f"{where} has {series.shape[0]} time steps; {type(self).__name__} with "
                    f"these settings needs at least {minimum}{self._min_length_reason()}"
                    f"{transposed}")
            if transposed and i == 0:
                warn(f"{where} has {series.shape[1]} columns and only {series.shape[0]} "
                     f"rows{transposed}")
            if self._allow_nan:
                check_no_inf(series, where)
                empty = np.flatnonzero(np.isnan(series).all(axis=0))
                if empty.size:
                    raise ValueError(f"{where} has no observed value in column {empty[0]}")
        x_list = check_exogenous(X, y_list, collection)
        check_aligned_dates(y, X, collection)
        return y_list, x_list, collection

    def _clear_learned_state(self) -> None:
        for name in [n for n in vars(self) if n.endswith("_") and not n.startswith("__")]:
            delattr(self, name)

    def _fit_validated(self, y, y_list, x_list, collection, X=None) -> None:
        y_scaled, x_scaled = self._describe_data(y, y_list, x_list, collection, X)
        self._fit(y_scaled, x_scaled)
        self._store_context(y_scaled[-1], None if x_scaled is None else x_scaled[-1])

    def _describe_data(self, y, y_list, x_list, collection, X=None):
        """Runtime, shapes, index and scalers from the training data (``X``: the exogenous
        inputs as given, for their column names); the scaled lists."""
        self.fit_params_ = self.get_params(deep=False)
        self._resolve_runtime()
        _check_precision(self.dtype_, self.device_, type(self))
        # Here for every estimator, also those that never show a progress bar.
        _check_verbose(getattr(self, "verbose", False))
        self.n_features_in_ = y_list[0].shape[1]
        self.n_exog_ = 0 if x_list is None else x_list[0].shape[1]
        last = y[-1] if collection else y
        if isinstance(last, pd.DataFrame):
            self.feature_names_in_ = np.asarray([str(c) for c in last.columns], dtype=object)
            for i, frame in enumerate(y[:-1] if collection else []):
                self._check_column_names(frame, f"trajectory {i} of y",
                                         reference="the last trajectory has")
        frames = (list(X) if collection and isinstance(X, list | tuple) else [X])
        if isinstance(frames[0], pd.DataFrame):
            self.exog_names_in_ = np.asarray([str(c) for c in frames[0].columns], dtype=object)
            for i, frame in enumerate(frames[1:], start=1):
                self._check_column_names(frame, f"series {i} of X", "exog_names_in_",
                                         reference="series 0 of X has")
        self.index_info_ = index_info(last)
        if not self._reads_times:
            _warn_irregular_dates(y if collection else [y], type(self).__name__)
        self.output_1d_ = (not collection and np.ndim(y) == 1
                           and not isinstance(y, pd.Series))
        enabled = check_bool(getattr(self, "scale", True), "scale")
        self.y_scaler_ = StandardScaler.fit(y_list, enabled)
        y_scaled = [self.y_scaler_.transform(s) for s in y_list]
        if x_list is not None:
            self.x_scaler_ = StandardScaler.fit(x_list, enabled)
            x_scaled = [self.x_scaler_.transform(s) for s in x_list]
        else:
            self.x_scaler_ = None
            x_scaled = None
        return y_scaled, x_scaled

    def _store_context(self, y_scaled: np.ndarray, x_scaled: np.ndarray | None,
                       previous: bool = False) -> None:
        """Keep the trailing rows that ``predict(context=None)`` continues from (appended to
        the rows kept so far when ``previous``, as when data arrive in chunks)."""
        if previous:
            y_scaled = np.concatenate([self.context_y_, y_scaled])
            if x_scaled is not None:
                x_scaled = np.concatenate([self.context_x_, x_scaled])
        keep = self._context_length()
        window = slice(None) if keep is None else slice(-keep, None)
        self.context_x_ = None if x_scaled is None else x_scaled[window].copy()
        # Set last: its presence is what marks the estimator as fitted.
        self.context_y_ = y_scaled[window].copy()

    # ------------------------------------------------------------------ predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "context_y_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(y) before using it"
            )
        fitted = getattr(self, "fit_params_", None)
        if fitted is None:  # saved before fit_params_ existed
            return
        current = self.get_params(deep=False)
        changed = [name for name in current if name not in self._training_params
                   and name in fitted and not _same_value(current[name], fitted[name])]
        if changed:
            what = ", ".join(f"{name}={current[name]!r} (fitted with {fitted[name]!r})"
                             for name in changed)
            raise ValueError(
                f"{type(self).__name__}: {what} was set after fit, and the fitted model does "
                "not follow it; fit again, or set it back"
            )

    def predict(self, n_steps: int, context: Any = None, X: Any = None):
        """Forecast ``n_steps`` values in closed loop (each output fed back as the next input).

        Parameters
        ----------
        n_steps : int
            Length of the forecast.
        context : array (T_c, d), DataFrame or Series, optional
            Recent observations that set the model's state; the forecast continues right
            after them. ``None`` continues after the end of the training data.
        X : array, optional
            Exogenous inputs: the ``n_steps`` rows of the forecast horizon, preceded by the
            ``T_c`` rows aligned with ``context`` when one is given.

        Returns
        -------
        array (n_steps, d) (1-D when ``fit`` was given a 1-D array), or a DataFrame/Series
        whose index continues that of the training data (or of ``context``).
        """
        self._check_fitted()
        n_steps = check_positive(n_steps, "n_steps", integer=True)
        if context is None:
            context_y, context_x = self.context_y_, self.context_x_
            info = self.index_info_
            future_x = self._check_future_x(X, n_steps, 0)
            if future_x is not None:
                check_horizon_dates(X, 0, self._horizon_index(info, n_steps))
        else:
            check_time_order(context, "context")
            raw = as_float_array(context, "context", ndim=(1, 2), allow_nan=self._allow_nan,
                                 remedy=self._nan_remedy)
            raw = raw[:, None] if raw.ndim == 1 else raw
            if self._allow_nan:
                check_no_inf(raw, "context")
            if self._allow_nan and raw.size and np.isnan(raw).all(axis=0).any():
                raise ValueError("context has a column with no observed value: the state "
                                 "would start uninformed there")
            if raw.shape[1] != self.n_features_in_:
                one_row = (np.ndim(context) == 1 and raw.shape[0] == self.n_features_in_)
                raise ValueError(
                    f"context must have {self.n_features_in_} columns like the training data, "
                    f"got shape {raw.shape}" + ("; a 1-D context is read as one column: for "
                                                "one row, pass context[None]" if one_row else "")
                )
            if raw.shape[0] == 0:
                raise ValueError("context is empty; pass None to continue the training data")
            self._check_column_names(context, "context")
            context_y = self.y_scaler_.transform(raw)
            info = index_info(context) if isinstance(context, pd.DataFrame | pd.Series) \
                else IndexInfo("none")
            if isinstance(X, pd.DataFrame | pd.Series) and len(X) > raw.shape[0]:
                check_aligned_dates(context, X.iloc[: raw.shape[0]], False, "context")
            rows = self._check_future_x(X, n_steps, raw.shape[0])
            if rows is not None:
                check_horizon_dates(X, raw.shape[0], self._horizon_index(info, n_steps))
            if rows is None:
                context_x = future_x = None
            else:
                context_x, future_x = rows[: raw.shape[0]], rows[raw.shape[0]:]
        with torch.no_grad():
            forecast = self._predict(n_steps, context_y, context_x, future_x)
        forecast = np.asarray(forecast, dtype=np.float64)
        if not np.isfinite(forecast).all():
            first = int(np.argwhere(~np.isfinite(forecast))[0][0])
            warn(f"the closed-loop forecast of {type(self).__name__} left the finite range at "
                 f"step {first}: the learned dynamics diverge from this state", RuntimeWarning)
        forecast = self.y_scaler_.inverse_transform(forecast)
        return self._format_output(forecast, info, context is None)

    # Where the closed-loop map (as_discrete_map) keeps the next input y in its state:
    # its first columns ([y, hidden state]) or, for the reservoirs ([state, y]) and NVAR
    # (delays, newest last), its last ones.
    _map_y_last = False

    def latent_to_data(self, z: Any) -> np.ndarray:
        """Observations in data units of states of the closed-loop map (``as_discrete_map``),
        e.g. the ``location`` of a fixed point or cycle from :mod:`tsrnn.analysis`.

        Parameters
        ----------
        z : array (..., dim)
            States of the map: the next input y (standardised) and the model's own state.

        Returns
        -------
        array (..., d): the y part, in the units of the data ``fit`` saw.
        """
        self._check_fitted()
        if not callable(getattr(self, "as_discrete_map", None)):
            raise TypeError(f"{type(self).__name__} has no closed-loop state map")
        dim, d = self.as_discrete_map().dim, self.n_features_in_
        values = _states(z, dim, "map states", "the state size of this model's closed-loop map")
        observed = values[..., dim - d:] if self._map_y_last else values[..., :d]
        return self.y_scaler_.inverse_transform(observed)

    def _horizon_index(self, info: IndexInfo, n_steps: int) -> pd.Index | None:
        """The index the forecast will carry (None where the data had none to continue)."""
        return info.continuation(n_steps)

    def _check_like_first_fit(self, y: Any, y_list: list, x_list: list | None,
                              collection: bool, first: str = "the first fit",
                              name: str = "y", X: Any = None) -> None:
        """Refuse more data (``partial_fit``) whose columns, or whose presence of X, differ
        from what the model was first fitted on (``first`` names that in the errors)."""
        if any(series.shape[1] != self.n_features_in_ for series in y_list):
            raise ValueError(f"y must have the {self.n_features_in_} columns of {first}, got "
                             f"{[series.shape[1] for series in y_list]}")
        if (x_list is None) != (self.n_exog_ == 0) or (
                x_list is not None and any(x.shape[1] != self.n_exog_ for x in x_list)):
            raise ValueError(f"X must be given, with the columns of {first}, exactly when "
                             f"{first} had it")
        for i, series in enumerate(y if collection else [y]):
            self._check_column_names(series, f"trajectory {i} of y" if collection else name)
        if X is not None:
            for i, frame in enumerate(X if collection and isinstance(X, list | tuple) else [X]):
                self._check_column_names(frame, f"series {i} of X" if collection else "X",
                                         "exog_names_in_")

    def _check_column_names(self, frame: Any, name: str,
                            attribute: str = "feature_names_in_",
                            reference: str | None = None) -> None:
        """A DataFrame whose columns are not those of the training frame, in their order, is
        refused: its columns would be read by position, and the forecast labelled with names
        that do not match its values (``attribute``: where those names are kept,
        ``exog_names_in_`` for X; ``reference``: what holds them, for the message)."""
        expected = getattr(self, attribute, None)
        if expected is None or not isinstance(frame, pd.DataFrame):
            return
        given = [str(c) for c in frame.columns]
        if given != list(expected):
            hint = (f"select {name}[{list(expected)}]" if sorted(given) == sorted(expected)
                    else "rename its columns or pass an array")
            reference = reference or f"{type(self).__name__} was fitted on"
            raise ValueError(f"{name} has columns {given}, but {reference} "
                             f"{list(expected)} (in this order); {hint}")

    def _check_future_x(self, X: Any, n_steps: int, n_context: int) -> np.ndarray | None:
        if self.n_exog_ == 0:
            if X is not None:
                raise ValueError(
                    f"{type(self).__name__} was fitted without exogenous inputs; got X"
                )
            return None
        if X is None:
            raise ValueError(
                f"{type(self).__name__} was fitted with {self.n_exog_} exogenous inputs: "
                "predict needs X for the forecast horizon"
            )
        self._check_column_names(X, "X", "exog_names_in_")
        check_time_order(X, "X")
        rows = as_float_array(X, "X", ndim=(1, 2))
        rows = rows[:, None] if rows.ndim == 1 else rows
        expected = n_context + n_steps
        if rows.shape != (expected, self.n_exog_):
            what = ("the n_steps rows of the horizon" if n_context == 0 else
                    f"the {n_context} rows of the context followed by the {n_steps} rows of "
                    "the horizon")
            raise ValueError(
                f"X must have shape ({expected}, {self.n_exog_}): {what}; got {rows.shape}"
            )
        return self.x_scaler_.transform(rows)

    def _format_output(self, forecast: np.ndarray, info: IndexInfo, from_training: bool):
        if info.kind == "none" and info.columns is None:
            return forecast[:, 0] if (self.output_1d_ and from_training) or (
                forecast.shape[1] == 1 and self.output_1d_) else forecast
        index = info.continuation(forecast.shape[0])
        columns = info.columns if info.columns is not None else list(range(forecast.shape[1]))
        if info.series:
            return pd.Series(forecast[:, 0], index=index, name=columns[0])
        return pd.DataFrame(forecast, index=index, columns=columns)

    # ------------------------------------------------------------------ save / load
    def _get_state(self) -> dict:
        """Learned state: every public trailing-underscore attribute, modules as state dicts."""
        attributes, modules = {}, {}
        for name, value in vars(self).items():
            if not name.endswith("_") or name.startswith("_") or name in ("device_", "dtype_"):
                continue
            if isinstance(value, torch.nn.Module):
                modules[name] = {k: v.detach().cpu() for k, v in value.state_dict().items()}
            else:
                attributes[name] = value
        return {"attributes": attributes, "modules": modules}

    def _set_state(self, state: dict) -> None:
        # Loading trains nothing: the caller's global generators are left as they are.
        self._resolve_runtime()
        for name, value in state["attributes"].items():
            # A file holds its tensors on the CPU; learned tensors (a reservoir stream's
            # state, ...) belong on the device the estimator now runs on.
            setattr(self, name, _on_device(value, self.device_))
        for name, weights in state["modules"].items():
            if name == "module_":
                # The dtype that fit gave it (NeuralForecaster._fit), before loading, so float64
                # weights are not rounded through a float32 module. Its random initial
                # weights are overwritten: draw them without advancing the global generator.
                with torch.random.fork_rng(devices=[]):
                    module = self._build_module().to(dtype=self.dtype_)
            else:
                module = self._rebuild(name)
            module.load_state_dict(weights)
            # In evaluation mode, as fit leaves it: code that runs the module directly
            # (get_state_trajectory, analyses) must not see dropout in a loaded model.
            setattr(self, name, module.to(device=self.device_).eval())

    def _build_module(self) -> torch.nn.Module:
        raise NotImplementedError

    def _rebuild(self, name: str) -> torch.nn.Module:
        raise NotImplementedError(f"{type(self).__name__} cannot rebuild module {name!r}")

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Save the fitted estimator (hyperparameters and learned state) to ``path``.

        An existing file is never replaced unless ``overwrite=True``; the file is written
        to a temporary name first, so an interrupted save cannot corrupt an earlier one.
        """
        self._check_fitted()
        path = Path(path).expanduser()
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a directory; give a file name in it")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        if any(parent.exists() and not parent.is_dir() for parent in path.parents):
            raise NotADirectoryError(f"cannot save to {path}: a part of its folder is a file")
        payload = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "tsrnn_version": __version__,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "params": _encode(self.get_params(deep=False), "params"),
            "state": _encode(self._get_state(), "state"),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created as open() creates files (mode 0666 less the umask; mkstemp would give
        # 0600, which other accounts cannot read), under a name of this call alone.
        temporary = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}"
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(payload, file)
            if overwrite:
                if path.exists():  # a replaced file keeps its permissions
                    os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
                os.replace(temporary, path)
            else:
                _link_new(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: Any = None):
        """Load an estimator saved by :meth:`save`.

        Tensors are read onto the CPU first; a model trained on a GPU is moved to ``device``
        (default: its own, or the CPU when that GPU is absent, with a warning).
        """
        path = Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"no saved estimator at {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            # Not torch's own advice to rerun with weights_only=False: that would execute
            # whatever the file holds, and a tsrnn file never needs it.
            reason = "" if "weights_only" in str(error) else f": {str(error).splitlines()[0]}"
            raise ValueError(f"{path} is not a tsrnn estimator file: torch.load cannot read "
                             f"it as an archive of tensors ({type(error).__name__}{reason})"
                             ) from error
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a tsrnn estimator file")
        missing = [key for key in ("class", "params", "state") if key not in payload]
        if missing or not isinstance(payload["class"], str):
            raise ValueError(f"{path} is a damaged tsrnn estimator file (missing "
                             f"{missing or ['class']})")
        version = payload.get("format_version", 1)
        if not isinstance(version, int) or version > _FORMAT_VERSION:
            raise ValueError(f"{path} was written in file format {version!r} by tsrnn "
                             f"{payload.get('tsrnn_version', '?')}; this tsrnn ({__version__}) "
                             f"reads up to format {_FORMAT_VERSION}: upgrade tsrnn")
        klass = _saved_class(payload["class"], path)
        if not issubclass(klass, cls):
            raise TypeError(f"{path} holds {_article(klass.__name__)}, not "
                            f"{_article(cls.__name__)}")
        try:
            return cls._restore(klass, payload, device)
        except (KeyError, TypeError, AttributeError, IndexError) as error:
            raise ValueError(f"{path} is a damaged tsrnn estimator file ({type(error).__name__}"
                             f": {error})") from error

    @staticmethod
    def _restore(klass: type, payload: dict, device: Any):
        params = _decode(payload["params"])
        saved_device = params.get("device")
        if device is not None:
            params["device"] = device
        elif saved_device not in (None, "auto") and "cuda" in str(saved_device) \
                and not torch.cuda.is_available():
            warn(f"the model was trained on {saved_device}, which is not available here; it "
                 "is loaded on the CPU")
            params["device"] = "cpu"
        elif saved_device not in (None, "auto") and "cuda" in str(saved_device) \
                and _missing_cuda_index(saved_device):
            # Trained on the second GPU of a larger machine: this one's first GPU will do.
            warn(f"the model was trained on {saved_device}, which this machine does not "
                 "have; it is loaded on cuda:0")
            params["device"] = "cuda:0"
        estimator = klass(**params)
        estimator._set_state(_decode(payload["state"]))
        return estimator


def _saved_class(name: str, path: Path) -> type:
    """The estimator class a file names ("module:qualname").

    A file must not make load import arbitrary modules: only tsrnn's own are imported. A
    subclass defined elsewhere (a user's own estimator) is found when its module is
    already imported, as it is where the user calls ``MyESN.load``.
    """
    module_name, _, qualname = name.partition(":")
    own = module_name == "tsrnn" or module_name.startswith("tsrnn.")
    if not own and module_name not in sys.modules:
        raise ValueError(f"{path} names the class {name!r}, whose module is not imported; "
                         "load imports only tsrnn's own modules: import it first if you "
                         "trust the file")
    try:
        module = importlib.import_module(module_name) if own else sys.modules[module_name]
        klass = getattr(module, qualname)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"{path} names the class {name!r}, which does not exist here "
                         f"(tsrnn {__version__})") from error
    if not isinstance(klass, type) or not issubclass(klass, BaseForecaster):
        raise ValueError(f"{path} names {name!r}, which is not a tsrnn estimator")
    return klass


_HALF_TYPES = (torch.float16, torch.bfloat16)


def _same_value(a: Any, b: Any) -> bool:
    """Whether two hyperparameter values are the same (arrays and objects without a
    boolean ``==`` compared by value, then by their repr)."""
    if a is b:
        return True
    try:
        equal = a == b
        if isinstance(equal, bool | np.bool_):
            return bool(equal)
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except Exception:  # objects whose == raises
        return repr(a) == repr(b)


def _check_verbose(value: Any) -> bool:
    """``verbose`` is a bool or, as in scikit-learn, a level >= 0 (any level above 0 shows the
    progress bar); "no", 0.5 or -1 are refused rather than read by their truthiness."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer) and value >= 0:
        return bool(value > 0)
    raise TypeError(f"verbose must be True, False or a level >= 0, got {value!r}")


def _warn_irregular_dates(items: list, estimator: str) -> None:
    """Warn (once) when a trajectory has a DatetimeIndex without a regular frequency, which
    an estimator that does not read times takes as equally spaced rows."""
    for item in items:
        if (isinstance(item, pd.DataFrame | pd.Series)
                and isinstance(item.index, pd.DatetimeIndex) and len(item.index) >= 3
                and index_info(item).kind == "none"):
            warn(f"the DatetimeIndex of y is irregular (no frequency): {estimator} takes its "
                 "rows as equally spaced and forecasts with a plain range index; resample "
                 "it to a regular grid, or use a forecaster that reads the times "
                 "(CfCForecaster, LTCForecaster, LEMForecaster, HiPPOForecaster, "
                 "LSSLForecaster)")
            return


def _check_precision(dtype: torch.dtype, device: torch.device, estimator: type) -> None:
    """Refuse fitting in half precision on the CPU, before any work is done.

    The CPU has no fast half-precision kernels (a GRU step of tsrnn's default size runs
    ~1.6x slower in bfloat16 or float16 than in float32), some of the linear algebra
    (LSSL's discretisation, the reservoirs' features) does not run in them at all, and a
    float16 training diverges within an epoch (Adam's epsilon 1e-8 rounds to 0). Half
    precision is for CUDA devices; on the CPU it would only fail later, less clearly.
    """
    if dtype in _HALF_TYPES and device.type == "cpu":
        name = str(dtype).removeprefix("torch.")
        # The estimator's own default (float64 for the reservoirs, float32 for most others).
        default = inspect.signature(estimator).parameters.get("dtype")
        default = getattr(default, "default", None)
        choices = ("'float32' or 'float64'" if default not in ("float32", "float64") else
                   "'float32' or 'float64' (the default)" if default == "float64" else
                   "'float32' (the default) or 'float64'")
        raise ValueError(
            f"dtype={name!r} is not supported for fitting {estimator.__name__} on the CPU: "
            "the CPU has no fast half-precision kernels, some models cannot run in it and "
            f"training diverges; use dtype={choices}, or a CUDA device for half precision")


def _article(name: str) -> str:
    """The name with its article, "an ESN", "a GRUForecaster": by the sound of the first
    letter (F, H, L, M, N, R, S and X are said with a vowel when they begin an acronym)."""
    spoken = name[0] in "AEIOU" or (len(name) > 1 and name[1].isupper()
                                      and name[0] in "FHLMNRSX")
    return f"{'an' if spoken else 'a'} {name}"


def _missing_cuda_index(device: Any) -> bool:
    """Whether ``device`` names a CUDA index beyond this machine's devices."""
    try:
        index = torch.device(device).index
    except (RuntimeError, TypeError):
        return False  # not a device at all: the estimator's own check says so
    return index is not None and index >= torch.cuda.device_count()


def _on_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it (also inside dicts, lists and tuples) on ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _on_device(item, device) for key, item in value.items()}
    if isinstance(value, list) or type(value) is tuple:
        return type(value)(_on_device(item, device) for item in value)
    return value


def _encode(value: Any, where: str) -> Any:
    """Turn learned state into what ``torch.load(weights_only=True)`` accepts."""
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype == object:
        return {"__strings__": [str(v) for v in value]}
    if isinstance(value, np.ndarray):
        if value.ndim > 1 and value.flags.f_contiguous and not value.flags.c_contiguous:
            # Keep the memory order (a solver's weights are often column-major): a product
            # with a reordered copy runs another BLAS kernel, whose sums round differently,
            # and the loaded model would predict differently in the last bits.
            return {"__ndarray__": torch.from_numpy(value.T), "__order__": "F"}
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, StandardScaler):
        return {"__scaler__": [_encode(value.mean, where), _encode(value.scale, where)]}
    if isinstance(value, IndexInfo):
        return {"__index__": value.to_state()}
    if isinstance(value, torch.device | torch.dtype):
        return {"__torch__": str(value)}
    if isinstance(value, os.PathLike):  # checkpoint_path=tmp_path / "model.pt"
        return {"__path__": os.fspath(value)}
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        # dtype=np.float64 or np.dtype("float32") is a valid hyperparameter (resolve_dtype)
        return {"__numpy_dtype__": np.dtype(value).name}
    if isinstance(value, dict):
        return {str(k): _encode(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        encoded = [_encode(v, where) for v in value]
        return {"__tuple__": encoded} if isinstance(value, tuple) else encoded
    raise TypeError(f"cannot save {where} of type {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__ndarray__" in value:
        array = value["__ndarray__"].numpy()
        return array.T if value.get("__order__") == "F" else array
    if "__strings__" in value:
        return np.asarray(value["__strings__"], dtype=object)
    if "__scaler__" in value:
        mean, scale = (_decode(v) for v in value["__scaler__"])
        return StandardScaler(mean, scale)
    if "__index__" in value:
        return IndexInfo.from_state(value["__index__"])
    if "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    if "__numpy_dtype__" in value:
        return np.dtype(value["__numpy_dtype__"])
    if "__path__" in value:
        return Path(value["__path__"])
    if "__torch__" in value:
        text = value["__torch__"]
        return getattr(torch, text.split(".")[-1]) if text.startswith("torch.") \
            else torch.device(text)
    return {k: _decode(v) for k, v in value.items()}


# ====================================================================== gradient training
OPTIMIZERS = {"adam": torch.optim.Adam, "radam": torch.optim.RAdam, "adamw": torch.optim.AdamW}

# A batch loss this many times the first batch's loss counts as divergence even while finite
# (on standardised data the first loss is of order one, so 1e6 is far beyond any honest
# fluctuation and far below float overflow).
_EXPLOSION_FACTOR = 1e6
# A kept model whose score (validation loss, or training loss without a validation split) is
# this many times the first batch's loss is worse than the untrained model: it diverged.
_FAILED_FACTOR = 10.0


class NeuralForecaster(BaseForecaster):
    """Base of the estimators trained by gradient descent on windows of the series.

    Subclasses store these hyperparameters (as ``__init__`` keywords):
    ``sequence_length``, ``batch_size``, ``max_epochs``, ``learning_rate``,
    ``learning_rate_final`` (None: constant), ``optimizer`` ("adam", "radam", "adamw"),
    ``weight_decay``, ``gradient_clip`` (None: off), ``validation_fraction``,
    ``early_stopping`` (patience in epochs; None: off), ``divergence`` ("raise" or
    "restore"), ``checkpoint_path`` (None: nothing written), plus those of
    :class:`BaseForecaster`.

    Learned attributes: ``module_``, ``history_`` (per-epoch losses), ``n_epochs_`` (epochs
    run), ``best_epoch_`` (the kept checkpoint's epoch, counted from 0 as the entries of
    ``history_``).
    """

    # Whether every epoch minimises the same loss, so that an epoch far above the first
    # batch's loss means divergence (False for curricula that change the loss as they go).
    _fixed_objective: bool = True

    # ------------------------------------------------------------------ more training
    def partial_fit(self, y: Any, X: Any = None):
        """Train the fitted model further: ``max_epochs`` more epochs on ``y`` (and ``X``),
        starting from its current weights; an unfitted estimator is fitted.

        What the first fit learned about the data is kept: the scalers, the shapes, the
        architecture. The optimizer and its learning-rate schedule start afresh (a model
        loaded from a file or a checkpoint has no optimizer state), ``history_`` and
        ``best_epoch_`` describe this call, and the best checkpoint of this call is kept.
        On an error (divergence included) the model is left as it was. With
        ``checkpoint_path`` set, give a new path first (an existing file is never
        overwritten).

        Parameters
        ----------
        y, X
            As in :meth:`fit`, with the columns of the first fit.

        Returns
        -------
        self
        """
        if not hasattr(self, "module_"):
            return self.fit(y, X)
        self._check_fitted()
        y_list, x_list, collection = self._validated_lists(y, X)
        self._check_like_first_fit(y, y_list, x_list, collection, X=X)
        y_scaled = [self.y_scaler_.transform(series) for series in y_list]
        x_scaled = (None if x_list is None
                    else [self.x_scaler_.transform(x) for x in x_list])
        before = {name: copy.deepcopy(value) for name, value in vars(self).items()
                  if name.endswith("_") and not name.startswith("__")}
        self._continue_training = True
        # Each call draws (dropout masks, batch order) from its own seed, derived from
        # random_state and the number of calls so far: a sequence of partial fits is
        # reproducible, whatever the caller's code draws in between.
        calls = getattr(self, "n_partial_fits_", 0)
        seed = getattr(self, "random_state", None)
        try:
            with self._seeded(None if seed is None else (int(seed) + 7919 * (calls + 1))
                              % 2**63):
                self._fit(y_scaled, x_scaled)
            self._store_context(y_scaled[-1], None if x_scaled is None else x_scaled[-1])
            self.index_info_ = index_info(y[-1] if collection else y)
            self.n_partial_fits_ = calls + 1
        except BaseException:
            self._clear_learned_state()
            for name, value in before.items():
                setattr(self, name, value)
            raise
        finally:
            del self._continue_training
        return self

    # ------------------------------------------------------------------ hooks
    def _training_loss(self, module: torch.nn.Module, y: torch.Tensor,
                       x: torch.Tensor | None) -> torch.Tensor:
        """Loss on a batch of windows ``y`` (B, L + 1, d), ``x`` (B, L + 1, p) or None.

        Default: one-step-ahead teacher forcing, MSE of the module's predictions of
        y[:, 1:] from y[:, :-1] (and x[:, 1:]).
        """
        prediction, _ = module(y[:, :-1], None if x is None else x[:, 1:])
        return torch.nn.functional.mse_loss(prediction, y[:, 1:])

    def _validation_loss(self, module: torch.nn.Module, windows: list) -> float:
        """Mean training loss over fixed validation windows (no gradients)."""
        total, count = 0.0, 0
        for y, x in windows:
            total += float(self._training_loss(module, y, x)) * y.shape[0]
            count += y.shape[0]
        return total / max(count, 1)

    def _window_length(self) -> int:
        """Rows of one training window: ``sequence_length`` inputs and the step after the
        last (one-step-ahead targets). A model scored on longer horizons overrides it."""
        return int(self.sequence_length) + 1

    def _min_length(self) -> int:
        return self._window_length()

    def _min_length_reason(self) -> str:
        return " (one training window; lower sequence_length for shorter series)"

    def _check_hyperparameters(self) -> None:
        check_positive(self.sequence_length, "sequence_length", integer=True)
        check_positive(self.batch_size, "batch_size", integer=True)
        check_positive(self.max_epochs, "max_epochs", integer=True)
        check_positive(self.learning_rate, "learning_rate")
        if self.learning_rate_final is not None:
            check_positive(self.learning_rate_final, "learning_rate_final")
        check_option(self.optimizer, "optimizer", tuple(OPTIMIZERS))
        check_positive(self.weight_decay, "weight_decay", allow_zero=True)
        if self.gradient_clip is not None:
            check_positive(self.gradient_clip, "gradient_clip")
        check_in_range(self.validation_fraction, "validation_fraction", 0.0, 1.0,
                       closed="left")
        if self.early_stopping is not None:
            check_positive(self.early_stopping, "early_stopping", integer=True)
        check_option(self.divergence, "divergence", ("raise", "restore"))

    # ------------------------------------------------------------------ data
    def _split_validation(self, y_list, x_list):
        """Hold out the last ``validation_fraction`` of every trajectory long enough."""
        length = self._window_length()
        train, validation = [], []
        for i, y in enumerate(y_list):
            x = None if x_list is None else x_list[i]
            n_validation = round(self.validation_fraction * y.shape[0])
            if n_validation >= length and y.shape[0] - n_validation >= length:
                cut = y.shape[0] - n_validation
                train.append((y[:cut], None if x is None else x[:cut]))
                validation.append((y[cut:], None if x is None else x[cut:]))
            else:
                train.append((y, x))
        if self.validation_fraction > 0 and not validation:
            warn(f"validation_fraction={self.validation_fraction} leaves no trajectory with "
                 f"a training window of {length} steps in both its training and its "
                 f"validation part: training without a validation split "
                 f"({self._without_validation})")
        return train, validation

    # What training without a validation part watches instead, for the warning above.
    _without_validation = "early stopping watches the training loss"

    def _windows(self, pairs, starts_per_series, device: torch.device | str | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        length = self._window_length()
        ys, xs = [], []
        for (y, x), starts in zip(pairs, starts_per_series):
            if len(starts) == 0:
                continue
            index = np.asarray(starts)[:, None] + np.arange(length)
            ys.append(y[index])
            if x is not None:
                xs.append(x[index])
        y_batch = self._tensor(np.concatenate(ys), device)
        x_batch = self._tensor(np.concatenate(xs), device) if xs else None
        return y_batch, x_batch

    def _epoch_batches(self, pairs, generator: torch.Generator,
                       device: torch.device | str | None = None):
        """Random windows covering the training data about once per epoch, on ``device``
        (None: the model's)."""
        length = self._window_length()
        counts = np.array([y.shape[0] - length + 1 for y, _ in pairs])
        total = int(counts.sum())
        n_windows = max(1, math.ceil(sum(y.shape[0] for y, _ in pairs) / (length - 1)))
        picks = torch.randint(total, (n_windows,), generator=generator).numpy()
        series = np.searchsorted(np.cumsum(counts), picks, side="right")
        offsets = picks - np.concatenate([[0], np.cumsum(counts)[:-1]])[series]
        for begin in range(0, n_windows, int(self.batch_size)):
            chosen = slice(begin, begin + int(self.batch_size))
            starts = [offsets[chosen][series[chosen] == i] for i in range(len(pairs))]
            yield self._windows(pairs, starts, device)

    def _fixed_windows(self, pairs) -> list:
        """Consecutive non-overlapping windows (validation), in batches."""
        length = self._window_length()
        starts = [np.arange(0, y.shape[0] - length + 1, length - 1) for y, _ in pairs]
        flat = [(i, s) for i, ss in enumerate(starts) for s in ss]
        batches = []
        for begin in range(0, len(flat), int(self.batch_size)):
            chunk = flat[begin: begin + int(self.batch_size)]
            per_series = [[s for i, s in chunk if i == k] for k in range(len(pairs))]
            batches.append(self._windows(pairs, per_series))
        return batches

    # ------------------------------------------------------------------ analysis
    def _closed_loop_module(self, options: dict) -> torch.nn.Module:
        """A float64 copy of the fitted module for a closed-loop map (``as_discrete_map``
        of the recurrent forecasters), after the checks every such map needs."""
        self._check_fitted()
        self._check_autonomous(options)
        return copy.deepcopy(self.module_).double().eval()

    # ------------------------------------------------------------------ training loop
    def _make_optimizer(self, module: torch.nn.Module) -> torch.optim.Optimizer:
        return OPTIMIZERS[self.optimizer](module.parameters(), lr=self.learning_rate,
                                          weight_decay=self.weight_decay)

    def _check_files(self) -> None:
        if self.checkpoint_path is not None and not isinstance(self.checkpoint_path,
                                                               str | os.PathLike):
            raise TypeError(f"checkpoint_path must be a path (str or path-like) or None, got "
                            f"{type(self.checkpoint_path).__name__}")
        if self.checkpoint_path is not None and Path(self.checkpoint_path).exists():
            raise FileExistsError(
                f"checkpoint_path {self.checkpoint_path} exists; choose a new path so that "
                "no saved model is overwritten"
            )
        if self.checkpoint_path is not None:
            # A checkpoint is a saved estimator: a parameter save cannot write would fail at
            # the first checkpoint, after training has begun.
            _encode(self.get_params(deep=False), "params")

    def _fit(self, y_list, x_list) -> None:
        self._check_hyperparameters()
        self._check_files()  # again for partial_fit, which reaches here directly
        if not getattr(self, "_continue_training", False):
            self.module_ = self._build_module().to(device=self.device_, dtype=self.dtype_)
        # What a checkpoint file needs to be a complete estimator (_write_checkpoint).
        self._checkpoint_context_ = (y_list[-1], None if x_list is None else x_list[-1])
        try:
            self._train(y_list, x_list)
        finally:
            del self._checkpoint_context_

    def _train(self, y_list, x_list) -> None:
        """The training loop of :meth:`_fit` (the module built)."""
        train, validation = self._split_validation(y_list, x_list)
        validation_windows = self._fixed_windows(validation) if validation else []
        optimizer = self._make_optimizer(self.module_)
        scheduler = None
        if self.learning_rate_final is not None and self.max_epochs > 1:
            gamma = (self.learning_rate_final / self.learning_rate) ** (1 / (self.max_epochs - 1))
            scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
        generator = self._generator(offset=1)
        self._reference_loss_ = None
        best_score, best_state, best_epoch, stale = math.inf, None, 0, 0
        history = {"train_loss": [], "validation_loss": []}
        bar = progress_bar(range(int(self.max_epochs)), verbose=self._verbose,
                           desc=type(self).__name__, leave=False)
        epoch = -1
        for epoch in bar:
            train_loss = self._train_epoch(train, optimizer, generator, epoch, best_state)
            if train_loss is None:  # diverged, and divergence="restore"
                break
            self.module_.eval()
            try:
                with torch.no_grad():
                    score = (self._validation_loss(self.module_, validation_windows)
                             if validation_windows else train_loss)
            except DivergenceError as error:  # raised by the module itself (e.g. LSSL's step)
                self._on_divergence(epoch, math.nan, best_state, cause=error)
                break
            if not math.isfinite(score):
                self._on_divergence(epoch, score, best_state)
                break
            history["train_loss"].append(train_loss)
            history["validation_loss"].append(score if validation_windows else None)
            if score < best_score:
                best_score, best_epoch, stale = score, epoch, 0
                best_state = copy.deepcopy(self.module_.state_dict())
                if self.checkpoint_path is not None:
                    self._write_checkpoint()
            else:
                stale += 1
            if scheduler is not None:
                scheduler.step()
            bar.set_postfix(loss=f"{train_loss:.3g}", val=f"{score:.3g}")
            if self.early_stopping is not None and stale >= self.early_stopping:
                break
        bar.close()
        if best_state is not None:
            self.module_.load_state_dict(best_state)
        self.module_.eval()
        reference = self._reference_loss_
        del self._reference_loss_
        if (self._fixed_objective and reference is not None and math.isfinite(best_score)
                and best_score > _FAILED_FACTOR * reference):
            # The explosion test above lets a loss grow a millionfold before it stops the
            # training; a kept model far worse than the untrained one diverged all the same.
            kind = "validation loss" if validation_windows else "loss"
            warn(f"{type(self).__name__}: training diverged: the best epoch's {kind} "
                 f"{best_score:.3g} (epoch {best_epoch}) is {best_score / reference:.0f} "
                 f"times the first batch's loss ({reference:.3g}), so the model kept is "
                 "worse than an untrained one; lower learning_rate", RuntimeWarning)
        self.history_ = history
        self.n_epochs_ = epoch + 1
        self.best_epoch_ = best_epoch

    def _train_epoch(self, train, optimizer, generator, epoch: int, best_state
                     ) -> float | None:
        """One pass of optimizer steps; the mean loss, or None after a restored divergence."""
        self.module_.train()
        losses = []
        for y, x in self._epoch_batches(train, generator):
            try:
                loss = self._training_loss(self.module_, y, x)
            except DivergenceError as error:
                # A module that detects its own divergence (LSSL's learned step size) is the
                # same event as a non-finite loss: handled as divergence= says.
                self._on_divergence(epoch, math.nan, best_state, cause=error)
                return None
            value = float(loss.detach())
            if self._diverged(epoch, [value], best_state):
                return None
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.gradient_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.module_.parameters(), self.gradient_clip)
            optimizer.step()
            self._after_optimizer_step()
            losses.append(value)
        return float(np.mean(losses))

    def _diverged(self, epoch: int, values: list[float], best_state) -> bool:
        """Whether one of the batch losses ``values`` (in order) is non-finite or exploded
        (then reported as ``divergence`` says; the first loss is the reference)."""
        for value in values:
            if self._reference_loss_ is None:
                self._reference_loss_ = max(value, 1e-6)
            if not math.isfinite(value) or value > _EXPLOSION_FACTOR * self._reference_loss_:
                self._on_divergence(epoch, value, best_state)
                return True
        return False

    def _after_optimizer_step(self) -> None:
        """Hook for constraints applied after each step (e.g. clipping a spectrum)."""

    def _on_divergence(self, epoch: int, value: float, best_state,
                       cause: DivergenceError | None = None) -> None:
        """Raise, or with ``divergence="restore"`` warn (the caller stops and restores).

        ``cause``: the DivergenceError a module raised itself, whose message says what
        diverged (in place of the loss)."""
        if cause is not None:
            what = str(cause)
        elif self._reference_loss_ is None:
            what = f"loss {value:.3g}"
        else:
            what = f"loss {value:.3g}, first loss {self._reference_loss_:.3g}"
        advice = ("lower learning_rate" if getattr(self, "gradient_clip", None) is not None
                  else "lower learning_rate or set gradient_clip")
        first = self._reference_loss_
        if cause is None and first is not None and not math.isfinite(first):
            # Non-finite before any step was taken: no learning rate is to blame.
            advice = ("the untrained model's loss is not finite: check the data's scale "
                      "(scale=True standardises it), the dtype, and settings such as dt")
        elif self.dtype_ in _HALF_TYPES:
            # (CUDA only: fit refuses half precision on the CPU.) Pure half-precision training
            # is fragile whatever the step: float16 rounds Adam's epsilon 1e-8 to 0.
            name = str(self.dtype_).removeprefix("torch.")
            advice = f"train in float32 rather than {name}, or {advice}"
        message = (f"training of {type(self).__name__} diverged at epoch {epoch + 1} "
                   f"({what}); {advice}")
        if self.divergence == "raise":
            raise DivergenceError(message) from cause
        if best_state is None:
            raise DivergenceError(message + "; divergence='restore' found no checkpoint to "
                                  "restore (none was kept before it)") from cause
        warn(message + "; the best checkpoint so far is kept", RuntimeWarning)

    def _write_checkpoint(self) -> None:
        """Write the best model so far to ``checkpoint_path`` as a complete estimator file
        (atomically): ``load`` reads it, and it predicts and is analysed like the fitted
        estimator, so a run that is stopped or crashes keeps its best model. What only the
        end of ``fit`` sets (``history_``, ``n_epochs_``) is absent, and the optimizer state
        is not kept: a training cannot be resumed from it."""
        path = Path(self.checkpoint_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._checkpoint_snapshot().save(path, overwrite=True)

    def _checkpoint_snapshot(self) -> BaseForecaster:
        """A new estimator holding the current module and every learned attribute so far."""
        snapshot = type(self)(**self.get_params(deep=False))
        for name, value in vars(self).items():
            if name.endswith("_") and not name.startswith("_") and name != "module_":
                setattr(snapshot, name, copy.copy(value))
        snapshot.module_ = copy.deepcopy(self.module_).eval()
        snapshot._store_context(*self._checkpoint_context_)
        return snapshot


def _states(z: Any, size: int, kind: str, meaning: str) -> np.ndarray:
    """``z`` as a float64 array (..., size) of finite numbers, or a clear error."""
    try:
        values = np.asarray(z, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"z must be an array of {kind} (..., {size}) of numbers: "
                        f"{error}") from None
    if values.ndim == 0 or values.shape[-1] != size:
        raise ValueError(f"z must have shape (..., {size}), {meaning}; got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("z contains NaN or inf")
    return values
