"""Irregular timestamps for the forecasters whose cores take a per-step elapsed time ``dt``.

Shared by the continuous-time forecasters (CfC, LTC: :mod:`tsrnn.forecasting.continuous`) and
the long-memory forecasters (LEM, HiPPO-RNN, LSSL: :mod:`tsrnn.forecasting.memory`); one
implementation, :class:`TimedForecaster`, so that all five read times the same way.

Where the times come from, in this order of precedence:

1. ``fit(y, X, times=...)``: an array (T,) of increasing numbers, a pandas DatetimeIndex (or
   datetime64 array, or Series of datetimes; read in seconds), or a list of those, one per
   trajectory;
2. the DatetimeIndex of ``y`` when it is a DataFrame or Series (of every trajectory's frame);
3. nothing: rows one time unit apart.

The time unit. Gaps are divided by the ``time_scale`` hyperparameter (None: the median gap of
the training data, so a regular series gets dt = 1 everywhere, and a model fitted on hourly
data predicts daily data with dt = 24). The fitted unit is ``time_scale_``.

Which gap a step sees. The step that reads y_t (with x_{t+1}) advances the core over the gap
to the next row, dt_t = (t_{t+1} - t_t) / time_scale_, and its output predicts y_{t+1}: the
core is asked for its state exactly at the time of the value it predicts, so the forecast
knows how far ahead it reaches. During training the gaps travel through the training
windows as one more (unscaled) exogenous column, stripped off before the core sees X.

``predict(n_steps, context, X, times=...)`` takes the ``n_steps`` times of the horizon
(preceded by the times of ``context`` when one is given, as for ``X``), and a context with
a DatetimeIndex uses its own index for its gaps. Without ``times`` the horizon continues
the dates of the data (or of the context): dates with a frequency (hourly, business days,
month ends) by that frequency, each step over the gap to its date (3 days over a weekend);
irregular dates, which no frequency continues, by one time unit per step (the median
training gap), dated the last one plus k ``time_scale_``, k = 1 .. n_steps. A
DataFrame/Series forecast carries those dates (or the given times) as its index. Dates with
and without a time zone are not mixed.

Warned rather than silently ignored: a ``time_scale`` given without any times, and a y whose
irregular numeric index (hours as floats, say) is not read as times (pass ``times=y.index``).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._validation import as_float_array, check_positive, warn
from ..nn.readout import NextStepPredictor
from ._data import index_info
from .base import NeuralForecaster


def as_times(times: Any, name: str) -> np.ndarray:
    """Float64 numbers (seconds for datetimes) from an array, a pandas Index or a Series.

    Raises a ValueError for NaN/inf or a shape other than (T,).
    """
    if isinstance(times, pd.Series):
        times = pd.Index(times)
    if isinstance(times, pd.DatetimeIndex):
        if times.hasnans:
            raise ValueError(f"{name} contains NaT (a missing time)")
        # In nanoseconds whatever the index's own unit (pandas 3 builds microsecond
        # indexes by default; asi8 counts in the index's unit).
        return times.as_unit("ns").asi8.astype(np.float64) / 1e9
    if isinstance(times, pd.Index):
        times = times.to_numpy()
    array = np.asarray(times)
    if np.issubdtype(array.dtype, np.datetime64):
        if np.isnat(array).any():
            raise ValueError(f"{name} contains NaT (a missing time)")
        return array.astype("datetime64[ns]").astype(np.int64).astype(np.float64) / 1e9
    return as_float_array(array, name, ndim=1)


def _date_zone(times: Any) -> tuple[bool, str | None]:
    """Whether ``times`` are dates, and their time zone's name (None when naive)."""
    if isinstance(times, pd.Series):
        times = pd.Index(times)
    if isinstance(times, pd.DatetimeIndex):
        return True, None if times.tz is None else str(times.tz)
    return bool(np.issubdtype(np.asarray(times).dtype, np.datetime64)), None


def _dates(seconds: np.ndarray, zone: str | None) -> pd.DatetimeIndex:
    """Dates from the seconds of :func:`as_times` (UTC for zoned dates, wall time for naive
    ones), to the microsecond: float64 seconds of today's dates resolve ~0.2 us."""
    nanoseconds = np.round(np.asarray(seconds) * 1e6).astype(np.int64) * 1000
    if zone is None:
        return pd.DatetimeIndex(pd.to_datetime(nanoseconds, unit="ns"))
    return pd.DatetimeIndex(pd.to_datetime(nanoseconds, unit="ns", utc=True)).tz_convert(zone)


def _warn_numeric_index(sources: list) -> None:
    """Warn when a pandas y carries an irregular numeric index, which is not read as times
    (only a DatetimeIndex is): its gaps would otherwise be dropped without a word."""
    for item in sources:
        index = getattr(item, "index", None)
        if (isinstance(item, pd.DataFrame | pd.Series) and len(index) >= 3
                and pd.api.types.is_numeric_dtype(index.dtype)):
            gaps = np.diff(np.asarray(index, dtype=np.float64))
            if not np.allclose(gaps, gaps[0]):
                warn("y has an irregular numeric index, which is not read as times (rows are "
                     "taken one time unit apart); pass times=y.index to use it")
                return


def check_increasing(times: np.ndarray, name: str) -> np.ndarray:
    """The gaps ``np.diff(times)``; a ValueError naming the first pair out of order."""
    gaps = np.diff(times)
    if (gaps <= 0).any():
        first = int(np.argmax(gaps <= 0))
        raise ValueError(f"{name} must be strictly increasing; entry {first + 1} "
                         f"({times[first + 1]!r}) does not come after entry {first} "
                         f"({times[first]!r})")
    return gaps


class TimedNextStepPredictor(NextStepPredictor):
    """:class:`tsrnn.nn.NextStepPredictor` whose core also takes per-step elapsed times.

    ``forward(y (B, L, d), x (B, L, p) or None, state, dt (B, L) or None)`` returns the
    predictions (B, L, d) and the core's final state; step t reads [y_t, x_{t+1}] and the
    core advances over dt[:, t] = t_{t+1} - t_t (``core(inputs, state, dt)``; None: one
    unit per step).
    """

    def forward(self, y: torch.Tensor, x: torch.Tensor | None = None, state=None,
                dt: torch.Tensor | None = None):
        inputs = y if x is None else torch.cat([y, x], dim=-1)
        outputs, state = self.core(inputs, state, dt)
        prediction = self.readout(outputs)
        return (y + prediction if self.residual else prediction), state

    @torch.no_grad()
    def rollout(self, context_y: torch.Tensor, context_x: torch.Tensor | None,
                future_x: torch.Tensor | None, n_steps: int,
                dt: torch.Tensor | None = None) -> torch.Tensor:
        """Closed-loop forecast of ``n_steps`` after a context (B, T_c, d).

        ``dt`` (B, T_c + n_steps - 1) holds the gaps between all consecutive times of
        context and horizon (None: one unit each); exogenous rows as in
        :meth:`tsrnn.nn.NextStepPredictor.rollout`.
        """
        # A core whose one-step form needs per-call preparation (the LSSL's Ā) holds it
        # for the whole rollout.
        hold = getattr(self.core, "held_discretisation", contextlib.nullcontext)
        with hold():
            return self._rollout(context_y, context_x, future_x, n_steps, dt)

    def _rollout(self, context_y, context_x, future_x, n_steps, dt):
        exogenous = (None if context_x is None
                     else torch.cat([context_x, future_x], dim=1)[:, 1:])
        steps = context_y.shape[1]
        prediction, state = self(context_y, None if exogenous is None else
                                 exogenous[:, :steps], None,
                                 None if dt is None else dt[:, :steps])
        current = prediction[:, -1:]
        outputs = [current]
        for i in range(1, n_steps):
            if not bool(torch.isfinite(current).all()):
                # The forecast left the finite range (predict warns at which step): nothing
                # after it is defined, and the cells refuse non-finite inputs.
                outputs.append(torch.full_like(current, float("nan")).expand(-1, n_steps - i, -1))
                break
            x = None if exogenous is None else exogenous[:, steps + i - 1: steps + i]
            step_dt = None if dt is None else dt[:, steps + i - 1: steps + i]
            current, state = self(current, x, state, step_dt)
            outputs.append(current)
        return torch.cat(outputs, dim=1)


class TimedForecaster(NeuralForecaster):
    """A :class:`NeuralForecaster` whose ``fit`` and ``predict`` take ``times`` (module
    docstring).

    Subclasses store a ``time_scale`` hyperparameter (float or None) and build a
    :class:`TimedNextStepPredictor` (or a module with its ``forward``/``rollout``). They may
    override :meth:`_module_steps` to choose what the core receives as ``dt``.

    Learned attributes, besides those of :class:`NeuralForecaster`: ``time_scale_`` (the
    time unit), ``last_time_`` (the time of the last training row, None without times) and
    ``context_gaps_`` (the normalised gaps of the rows kept for ``predict``),
    ``date_times_`` (whether the times were dates) and ``time_zone_`` (their zone's name, or
    None).
    """

    _reads_times = True

    # ------------------------------------------------------------------ hooks
    def _module_steps(self, gaps: torch.Tensor) -> torch.Tensor | None:
        """What the core receives as ``dt`` for these normalised gaps (B, L)."""
        return gaps

    # ------------------------------------------------------------------ fit
    def fit(self, y: Any, X: Any = None, times: Any = None):
        """Fit to one or several trajectories sampled at the given times.

        Parameters
        ----------
        y, X : see :meth:`tsrnn.forecasting.base.BaseForecaster.fit`.
        times : array (T,), DatetimeIndex, or a list of those (one per trajectory), optional
            The time of every row of ``y``, strictly increasing (see
            :mod:`tsrnn.forecasting._times`). None: the DatetimeIndex of ``y`` if it has
            one, else rows one time unit apart.

        Returns
        -------
        self
        """
        self._pending_times = (y, times)
        try:
            return super().fit(y, X)
        finally:
            del self._pending_times

    def partial_fit(self, y: Any, X: Any = None, times: Any = None):
        """Train the fitted model further on ``y`` sampled at ``times`` (as in :meth:`fit`;
        see :meth:`tsrnn.forecasting.base.NeuralForecaster.partial_fit`). The time unit of
        the first fit is kept, and its times must be of the same kind (dates or numbers)."""
        if not hasattr(self, "module_"):
            return self.fit(y, X, times=times)
        self._pending_times = (y, times)
        try:
            return super().partial_fit(y, X)
        finally:
            del self._pending_times

    def _training_times(self, y_list: list[np.ndarray]) -> list[np.ndarray] | None:
        """The times of every training row (one array per trajectory), None when regular."""
        y, times = self._pending_times
        if times is None:
            sources = y if isinstance(y, list | tuple) else [y]
            dated = [isinstance(s, pd.DataFrame | pd.Series)
                     and isinstance(s.index, pd.DatetimeIndex) for s in sources]
            if not any(dated):
                _warn_numeric_index(sources)
                return None
            if not all(dated):
                # Seconds for some trajectories and row numbers for others would give one
                # meaningless time unit.
                raise ValueError("some trajectories of y are indexed by dates and others are "
                                 "not: give them all a DatetimeIndex, or pass times=")
            times = [s.index for s in sources]
        elif not isinstance(times, list | tuple) or not any(np.ndim(t) for t in times):
            times = [times]  # one array, or one plain list of times (not one per trajectory)
        if len(times) != len(y_list):
            raise ValueError(f"times has {len(times)} entries for {len(y_list)} trajectories")
        self._pending_dates = _date_zone(times[-1])
        result = []
        for i, (t, series) in enumerate(zip(times, y_list)):
            name = "times" if len(times) == 1 else f"times[{i}]"
            t = as_times(t, name)
            if t.shape[0] != series.shape[0]:
                raise ValueError(f"{name} has {t.shape[0]} entries for {series.shape[0]} rows "
                                 "of y; give one time per row")
            check_increasing(t, name)
            result.append(t)
        return result

    def _fit(self, y_list, x_list) -> None:
        continuing = getattr(self, "_continue_training", False)  # partial_fit
        self._pending_dates = (False, None)
        try:
            times = self._training_times(y_list)
            dates = self._pending_dates
        finally:
            del self._pending_dates
        if continuing and times is not None and dates[0] != self.date_times_:
            first = "dates" if self.date_times_ else "numbers"
            raise ValueError(f"times must be {first}, as in the first fit: seconds and plain "
                             "numbers are not one time unit")
        # Whether the times are dates (and their zone): predict then labels a horizon that
        # continues without given times with dates.
        if not continuing or times is not None:
            self.date_times_, self.time_zone_ = dates
        if self.time_scale is not None:  # a bad value is refused even where it has no effect
            check_positive(self.time_scale, "time_scale")
        if times is None:
            if self.time_scale is not None and not continuing:
                warn(f"time_scale={self.time_scale} has no effect without times: the rows of "
                     "y are one time unit apart (pass times=, or y with a DatetimeIndex)")
            if not continuing:
                self.time_scale_ = 1.0
            self.last_time_ = None
            gaps = [np.ones(len(y)) for y in y_list]
        else:
            raw = [np.diff(t) for t in times]
            if continuing:
                pass  # the first fit's unit: the module learned its gaps in it
            elif self.time_scale is None:
                self.time_scale_ = float(np.median(np.concatenate(raw)))
            else:
                self.time_scale_ = float(check_positive(self.time_scale, "time_scale"))
            # gaps[r] is the time from row r-1 to row r (1 for the first row: never used as
            # a target's gap, since row 0 is never predicted).
            gaps = [np.concatenate([[1.0], r / self.time_scale_]) for r in raw]
            self.last_time_ = float(times[-1][-1])
        # The gaps travel through the windows as one more (unscaled) exogenous column.
        augmented = [np.column_stack([x if x_list is not None else np.empty((len(g), 0)), g])
                     for x, g in zip(x_list if x_list is not None else [None] * len(gaps),
                                     gaps)]
        # Set before training too: a checkpoint written during it stores the context's gaps.
        self.context_gaps_ = gaps[-1]
        try:
            super()._fit(y_list, augmented)
        finally:
            self.context_gaps_ = gaps[-1]

    def _checkpoint_snapshot(self):
        # The context a checkpoint keeps is the training data's, whose x carries the gaps
        # as its last column (see _fit): the gaps are context_gaps_, the rest is X.
        y, x = self._checkpoint_context_
        exogenous = None if x is None or x.shape[1] == 1 else x[:, :-1]
        self._checkpoint_context_ = (y, exogenous)
        try:
            return super()._checkpoint_snapshot()
        finally:
            self._checkpoint_context_ = (y, x)

    def _set_state(self, state: dict) -> None:
        super()._set_state(state)
        if not hasattr(self, "context_gaps_"):
            # Saved by a version whose LEM/HiPPO/LSSL forecasters took no times (they stored
            # none): the rows were one unit apart.
            self.time_scale_, self.last_time_ = 1.0, None
            self.context_gaps_ = np.ones(len(self.context_y_))
        if not hasattr(self, "date_times_"):  # saved before dates were recorded
            self.date_times_, self.time_zone_ = False, None

    def _store_context(self, y_scaled, x_scaled, previous: bool = False) -> None:
        super()._store_context(y_scaled, x_scaled, previous)
        self.context_gaps_ = self.context_gaps_[-len(self.context_y_):].copy()

    def _training_loss(self, module, y, x):
        # x[..., -1] is the gap column: x[:, 1:, -1] are the gaps from each input row to the
        # row its step predicts.
        exogenous = x[:, 1:, :-1] if x.shape[-1] > 1 else None
        prediction, _ = module(y[:, :-1], exogenous, None, self._module_steps(x[:, 1:, -1]))
        return torch.nn.functional.mse_loss(prediction, y[:, 1:])

    # ------------------------------------------------------------------ hidden states
    def _core_states(self, inputs: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        """The core's hidden states (1, T, H) along ``inputs`` (1, T, n) with gaps (1, T)."""
        states, _ = self.module_.core(inputs, None, self._module_steps(gaps))
        return states

    def get_state_trajectory(self, y: Any, X: Any = None, times: Any = None) -> np.ndarray:
        """The hidden states of the fitted core along a series y (T, d): (T, H).

        Step t has read y_t (and x_{t+1}) and advanced to the time of row t + 1; the last
        step, whose next row is unknown, uses one time unit and repeats x_T.
        """
        self._check_fitted()
        raw = as_float_array(y, "y", ndim=(1, 2))
        raw = raw[:, None] if raw.ndim == 1 else raw
        if raw.shape[1] != self.n_features_in_ or raw.shape[0] == 0:
            raise ValueError(f"y must have shape (T, {self.n_features_in_}) with T >= 1 like "
                             f"the training data, got {raw.shape}")
        scaled = self.y_scaler_.transform(raw)
        if self.n_exog_ == 0 and X is not None:
            raise ValueError(f"{type(self).__name__} was fitted without exogenous inputs; "
                             "got X")
        if self.n_exog_:
            rows = self._check_future_x(X, len(raw), 0)
            inputs = np.column_stack([scaled, np.vstack([rows[1:], rows[-1:]])])
        else:
            inputs = scaled
        if times is not None:
            t = as_times(times, "times")
            if len(t) != len(raw):
                raise ValueError(f"times has {len(t)} entries for {len(raw)} rows of y")
            gaps = np.r_[check_increasing(t, "times") / self.time_scale_, 1.0]
        else:
            gaps = np.ones(len(raw))
        with torch.no_grad():
            states = self._core_states(self._tensor(inputs)[None], self._tensor(gaps)[None])
        return states[0].double().cpu().numpy()

    # ------------------------------------------------------------------ predict
    def predict(self, n_steps: int, context: Any = None, X: Any = None, times: Any = None):
        """Forecast ``n_steps`` values in closed loop at the given times.

        Parameters
        ----------
        n_steps, context, X : see :meth:`tsrnn.forecasting.base.BaseForecaster.predict`.
        times : array or DatetimeIndex, optional
            The ``n_steps`` times of the horizon, preceded by the times of ``context`` when
            one is given (as for ``X``); same unit as the training times. None: the horizon
            continues one time unit (``time_scale_``) per step.

        Returns
        -------
        array (n_steps, d), or a DataFrame/Series indexed by the horizon's times (when
        given) or by the continued index of the training data.
        """
        self._check_fitted()
        n_steps = check_positive(n_steps, "n_steps", integer=True)
        self._pending_gaps = self._predict_gaps(n_steps, context, times)
        self._pending_times = times
        try:
            forecast = super().predict(n_steps, context, X)
        finally:
            del self._pending_gaps, self._pending_times
        if isinstance(forecast, pd.DataFrame | pd.Series):
            if times is not None:
                index = times if isinstance(times, pd.Index) else pd.Index(np.asarray(times))
                forecast.index = index[-n_steps:]
            else:
                index = self._default_horizon_dates(n_steps, context)
                if index is not None:
                    forecast.index = index
        return forecast

    def _horizon_index(self, info, n_steps: int) -> pd.Index | None:
        # The horizon's own times when given, as the forecast will be indexed by them.
        times = getattr(self, "_pending_times", None)
        if times is not None:
            return (times if isinstance(times, pd.Index) else pd.Index(np.asarray(times))
                    )[-n_steps:]
        return super()._horizon_index(info, n_steps)

    def _default_horizon_dates(self, n_steps: int, context: Any) -> pd.DatetimeIndex | None:
        """The dates of a horizon that continues one time unit (``time_scale_``) per step
        after irregular dates, which no frequency continues; None where the base's index
        (a regular index continued) or no date applies."""
        if not getattr(self, "date_times_", False):
            return None
        if context is None:
            if self.index_info_.kind != "none" or self.last_time_ is None:
                return None
            last, zone, name = self.last_time_, self.time_zone_, self.index_info_.name
        else:
            index = getattr(context, "index", None)
            if not isinstance(index, pd.DatetimeIndex) or index_info(context).kind != "none":
                # Dates with a frequency (business days, month ends, ...): the base continues
                # them, and the horizon's gaps follow those dates (_horizon_gaps).
                return None
            last = as_times(index[-1:], "the index of context")[0]
            zone, name = (None if index.tz is None else str(index.tz)), index.name
        return _dates(last + self.time_scale_ * np.arange(1, n_steps + 1), zone).rename(name)

    def _horizon_gaps(self, n_steps: int, context: Any) -> np.ndarray:
        """Gaps (in ``time_scale_`` units) of a horizon given without times: those between
        the dates the forecast will carry where the data's dates have a frequency (a
        business-day index steps 3 days over a weekend), else one unit per step."""
        if getattr(self, "date_times_", False):
            info = (self.index_info_ if context is None else index_info(context)
                    if isinstance(getattr(context, "index", None), pd.DatetimeIndex)
                    else None)
            if info is not None and info.kind == "datetime":
                dates = info.continuation(n_steps)
                t = as_times(dates.insert(0, info.last), "the continued dates")
                return np.diff(t) / self.time_scale_
        return np.ones(n_steps)

    def _check_zone(self, times: Any, name: str) -> None:
        """Refuse dates with a time zone against training dates without one, or the reverse:
        their seconds would be counted from different origins (pandas refuses to compare
        them too)."""
        dated, zone = _date_zone(times)
        if dated and getattr(self, "date_times_", False) and (zone is None) != (
                self.time_zone_ is None):
            have = "have no time zone" if zone is None else f"are in the zone {zone}"
            fitted = ("without a time zone" if self.time_zone_ is None
                      else f"in the zone {self.time_zone_}")
            raise ValueError(f"{name} {have}, but the model was fitted on dates {fitted}: "
                             "give both with a zone (tz_localize) or both without")

    def _predict_gaps(self, n_steps: int, context: Any, times: Any) -> np.ndarray:
        """Gaps between consecutive times of context and horizon (T_c + n_steps - 1,)."""
        if context is not None and np.ndim(context) == 0:
            raise ValueError("context must have 1 or 2 dimensions (rows of observations), got "
                             f"a scalar {context!r}")
        n_context = len(self.context_y_) if context is None else len(context)
        if times is not None:
            dated = _date_zone(times)[0]
            if dated != self.date_times_:
                fitted = ("dates" if self.date_times_ else
                          "numbers" if self.last_time_ is not None else "rows one unit apart")
                given = "dates" if dated else "numbers"
                raise ValueError(f"times are {given}, but the model was fitted on {fitted}: "
                                 "give the horizon's times in the unit of the training times")
            self._check_zone(times, "times")
            t = as_times(times, "times")
            if context is None:
                if t.shape[0] != n_steps:
                    raise ValueError(f"times must hold the {n_steps} times of the horizon, "
                                     f"got {t.shape[0]}")
                if self.last_time_ is None:
                    raise ValueError("the model was fitted without times; predict cannot "
                                     "place a horizon given by times after the training data")
                t = np.concatenate([[self.last_time_], t])
                gaps = check_increasing(t, "times (after the end of the training data)")
                return np.concatenate([self.context_gaps_[1:], gaps / self.time_scale_])
            if t.shape[0] != n_context + n_steps:
                raise ValueError(f"times must hold the {n_context} times of the context "
                                 f"followed by the {n_steps} of the horizon, got {t.shape[0]}")
            return check_increasing(t, "times") / self.time_scale_
        if context is None:
            return np.concatenate([self.context_gaps_[1:], self._horizon_gaps(n_steps, None)])
        if isinstance(context, pd.DataFrame | pd.Series) and isinstance(
                context.index, pd.DatetimeIndex) and self.last_time_ is not None \
                and getattr(self, "date_times_", False):
            self._check_zone(context.index, "the index of context")
            t = as_times(context.index, "the index of context")
            own = check_increasing(t, "the index of context") / self.time_scale_
            return np.concatenate([own, self._horizon_gaps(n_steps, context)])
        return np.ones(n_context + n_steps - 1)

    # ------------------------------------------------------------------ analysis
    def as_discrete_map(self, dt: float | None = None, **options):
        """The fitted model in closed loop, one sample per step, as a map on
        [y_t (scaled), the core's state(s) flattened].

        For Lyapunov spectra and fixed points of the learned dynamics (``tsrnn.analysis``);
        ``dt`` is the time one step stands for (exponents per time unit), None for per-step
        exponents. The map runs a float64 copy of the module. The HiPPO-RNN's state holds
        the elapsed time, which grows by one unit per step: its map has a zero exponent along
        it and no fixed points or cycles.
        """
        from .._protocol import DiscreteMap, jittered_copies, load_forward_mode

        module = self._closed_loop_module(options)
        # The step runs the fitted cells' own (compiled) paths; tangents go through a copy
        # in plain torch, where forward-mode autodiff applies.
        plain = _forward_mode_copy(module)
        for copy_ in (module, plain):
            _hold_discretisation(copy_)
        d = self.n_features_in_
        device = self.device_

        def unit_steps(batch: int, length: int):
            ones = torch.ones((batch, length), dtype=torch.float64, device=device)
            return self._module_steps(ones)

        def context_run(y: torch.Tensor):
            with torch.no_grad():
                return module(y, None, None, unit_steps(y.shape[0], y.shape[1]))

        # The state's structure (a tensor or nested tuples of them) and each leaf's batch
        # dimension: the one whose size follows the batch (2 rows against 3), from one step
        # of zeros rather than the whole context.
        probe = torch.zeros((3, 1, d), dtype=torch.float64, device=device)
        _, template = context_run(probe[:2])
        leaves2, leaves3 = _leaves(template), _leaves(context_run(probe)[1])
        batch_dims = []
        for a, b in zip(leaves2, leaves3):
            dims = [k for k in range(a.dim()) if a.shape[k] == 2 and b.shape[k] == 3]
            if len(dims) != 1:  # pragma: no cover (every core here is batch-major)
                raise ValueError(f"cannot find the batch dimension of {type(self).__name__}'s "
                                 "state")
            batch_dims.append(dims[0])
        shapes = [tuple(leaf.movedim(k, 0).shape[1:]) for leaf, k in zip(leaves2, batch_dims)]
        sizes = [int(np.prod(shape)) for shape in shapes]

        def flatten(prediction, state):
            leaves = _leaves(state)
            parts = [prediction] + [leaf.movedim(k, 0).reshape(prediction.shape[0], -1)
                                    for leaf, k in zip(leaves, batch_dims)]
            return torch.cat(parts, dim=1)

        def run(core, z):
            z = z.to(torch.float64)
            pieces = torch.split(z[:, d:], sizes, dim=1)
            leaves = [piece.reshape(z.shape[0], *shape).movedim(0, k).contiguous()
                      for piece, shape, k in zip(pieces, shapes, batch_dims)]
            prediction, state = core(z[:, None, :d], None, _rebuild(template, iter(leaves)),
                                     unit_steps(z.shape[0], 1))
            return flatten(prediction[:, 0], state)

        def step(z):
            return run(module, z)

        def jacobian(z):
            # By reverse mode, one backward pass per output.
            z = z.detach().to(torch.float64).requires_grad_(True)
            with torch.enable_grad():
                out = step(z)
                rows = [torch.autograd.grad(out[:, i].sum(), z, retain_graph=True)[0]
                        for i in range(out.shape[1])]
            return torch.stack(rows, dim=1)

        def tangent(z, frame):
            # k tangent vectors by forward mode cost about k steps, the whole Jacobian by
            # reverse mode one backward pass per state entry: a few Lyapunov exponents of a
            # 64-unit CfC take forward mode, a fixed point's full Jacobian reverse mode.
            if plain is None or 2 * frame.shape[-1] >= z.shape[1]:
                return step(z), jacobian(z) @ frame
            load_forward_mode()

            def push_forward(vector):
                return torch.func.jvp(lambda x: run(plain, x), (z,), (vector,))[1]

            return step(z), torch.func.vmap(push_forward, in_dims=-1, out_dims=-1)(frame)

        def initial_states(n, seed=None):
            y = torch.as_tensor(self.context_y_, dtype=torch.float64, device=device)
            prediction, state = context_run(y[None])
            # The state reached at the end of the training data, perturbed slightly so that
            # the trajectories separate on the learned attractor during the transient.
            return jittered_copies(flatten(prediction[:, -1], state), n, seed, 1e-3)

        return DiscreteMap(step=step, dim=d + sum(sizes), time_step=dt, tangent=tangent,
                           jacobian=jacobian, initial_states=initial_states,
                           dtype=torch.float64, device=device, name=type(self).__name__,
                           default_exponents=d)

    def _predict(self, n_steps, context_y, context_x, future_x):
        module = self.module_.eval()
        gaps = self._module_steps(self._tensor(self._pending_gaps)[None])
        y = self._tensor(context_y)[None]
        cx = None if context_x is None else self._tensor(context_x)[None]
        fx = None if future_x is None else self._tensor(future_x)[None]
        return module.rollout(y, cx, fx, n_steps, gaps)[0].double().cpu().numpy()


def _forward_mode_copy(module: torch.nn.Module) -> torch.nn.Module | None:
    """A copy of a closed-loop module with its cells in their plain torch forms, through
    which forward-mode autodiff can push tangents; None where tangents should come from the
    Jacobian instead.

    The compiled sequence kernels of CfC and LEM are autograd Functions with a backward pass
    but no forward-mode rule; the copy carries only the tangents, the step keeps the
    kernels. LTC takes its tangents from the Jacobian: forward mode through its unfolded
    solver measured slower than the reverse-mode Jacobian of its few dozen rows even for 3
    tangents (1.4-4x), and its adaptive solver runs torchdiffeq, whose autograd Functions
    vmapped forward mode cannot follow.
    """
    from ..nn import LEM, LTC, CfC

    if any(isinstance(part, LTC) for part in module.modules()):
        return None
    plain = copy.deepcopy(module)
    for part in plain.modules():
        if isinstance(part, CfC):
            part.fast_path = False
        elif isinstance(part, LEM):
            part.implementation = "loop"
    return plain


def _hold_discretisation(module: torch.nn.Module | None) -> None:
    """Enter, for the lifetime of ``module``, the held discretisation of its cores that have
    one (the LSSL's Ā, B̄ of regular steps): every step of a closed-loop map is a regular
    step with the same parameters, and forming Ā anew took 0.1 s of the 0.25 s of each step
    of a 64 x 64 LSSL's map. Only for the private float64 copies a map owns: the context is
    never left. Tangents and Jacobians are taken with respect to the state, for which the
    held matrices, computed without autograd, are constants."""
    if module is None:
        return
    contexts = contextlib.ExitStack()
    for part in module.modules():
        hold = getattr(part, "held_discretisation", None)
        if hold is not None:
            contexts.enter_context(hold())
    # Kept with the copy: a context manager dropped after entering it is closed when
    # collected, which would release the hold at once.
    module._held_contexts = contexts


def _leaves(state) -> list[torch.Tensor]:
    """The tensors of a recurrent state (a tensor, or nested tuples or lists of them)."""
    if isinstance(state, torch.Tensor):
        return [state]
    return [leaf for part in state for leaf in _leaves(part)]


def _rebuild(template, leaves):
    """A state shaped as ``template`` from an iterator over its tensors (see _leaves)."""
    if isinstance(template, torch.Tensor):
        return next(leaves)
    return type(template)(_rebuild(part, leaves) for part in template)


__all__ = ["TimedForecaster", "TimedNextStepPredictor", "as_times", "check_increasing"]
