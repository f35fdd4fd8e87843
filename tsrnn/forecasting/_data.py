"""Validation of the series given to ``fit`` and ``predict``, and their time index.

Estimators accept an array (T, d), a list of such arrays (several trajectories), a pandas
DataFrame or Series, or torch tensors. This module turns all of them into a list of float
arrays with the checks that every estimator needs, and keeps what is required to return
forecasts in the caller's format (a DataFrame whose index continues the one given).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._validation import as_float_array


@dataclass
class IndexInfo:
    """What is needed to continue a pandas index after its last entry."""

    kind: str  # "none", "range", "datetime", "timedelta", "float" or "period"
    columns: list | None = None
    name: Any = None
    last: Any = None
    step: Any = None
    series: bool = False  # the caller gave a pandas Series (return one)

    def to_state(self) -> dict:
        """A form that ``torch.load(weights_only=True)`` accepts (strings and numbers)."""
        step = self.step
        if isinstance(step, pd.offsets.BaseOffset):
            step = step.freqstr
        if self.kind == "timedelta":
            last, step = int(self.last.value), int(self.step.value)  # nanoseconds
        elif self.kind == "float":
            last = self.last
        else:
            last = None if self.last is None else str(self.last)
            step = None if step is None else str(step)
        return {
            "kind": self.kind,
            "columns": None if self.columns is None else [_label(c) for c in self.columns],
            "name": _label(self.name),
            "last": last,
            "step": step,
            "series": self.series,
            # The zone by name: the text of a zoned timestamp keeps only its UTC offset, and
            # a fixed offset would continue the index wrongly across a daylight-saving change.
            "tz": None if getattr(self.last, "tzinfo", None) is None else str(self.last.tz),
        }

    @classmethod
    def from_state(cls, state: dict) -> IndexInfo:
        kind, last, step = state["kind"], state["last"], state["step"]
        if kind == "timedelta":
            last, step = pd.Timedelta(last, unit="ns"), pd.Timedelta(step, unit="ns")
        elif kind == "range":
            last, step = int(last), int(step)
        elif kind == "datetime":
            last = pd.Timestamp(last)
            if state.get("tz") is not None:  # (absent in files saved before it was kept)
                last = last.tz_convert(state["tz"])
            step = pd.tseries.frequencies.to_offset(step)
        elif kind == "period":
            last = pd.Period(last, freq=step)
        columns = state["columns"]
        return cls(kind=kind, columns=None if columns is None else [_unlabel(c) for c in columns],
                   name=_unlabel(state["name"]), last=last, step=step, series=state["series"])

    def continuation(self, n_steps: int):
        """The index of the ``n_steps`` entries that follow the last one."""
        if self.kind == "range":
            start = self.last + self.step
            return pd.RangeIndex(start, start + n_steps * self.step, self.step, name=self.name)
        if self.kind == "datetime":
            return pd.date_range(self.last + self.step, periods=n_steps, freq=self.step,
                                 name=self.name)
        if self.kind == "period":
            return pd.period_range(self.last + 1, periods=n_steps, name=self.name)
        if self.kind == "timedelta":
            return pd.timedelta_range(self.last + self.step, periods=n_steps, freq=self.step,
                                      name=self.name)
        if self.kind == "float":
            values = self.last + self.step * np.arange(1, n_steps + 1)
            if self.step != 0:
                # 19.99 + 0.03 is 20.020000000000003 in binary: round ten digits below the
                # step, far below any difference the index can mean.
                digits = int(np.clip(10 - np.floor(np.log10(abs(self.step))), 0, 15))
                values = np.round(values, digits)
            return pd.Index(values, name=self.name)
        return None


def _label(value: Any) -> Any:
    """Column labels and names as saved: numbers and strings kept, tuples (a MultiIndex's
    labels) as {"tuple": [...]}, anything else as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"tuple": [_label(v) for v in value]}
    return str(value)


def _unlabel(value: Any) -> Any:
    """The inverse of :func:`_label` (text stays text)."""
    if isinstance(value, dict) and set(value) == {"tuple"}:
        return tuple(_unlabel(v) for v in value["tuple"])
    return value


def index_info(data: Any) -> IndexInfo:
    """Describe the index of a pandas object (``kind="none"`` for anything else)."""
    if not isinstance(data, pd.DataFrame | pd.Series):
        return IndexInfo("none")
    columns = [data.name] if isinstance(data, pd.Series) else list(data.columns)
    series = isinstance(data, pd.Series)
    index = data.index
    if len(index) == 0:
        return IndexInfo("none", columns, series=series)
    if isinstance(index, pd.RangeIndex):
        return IndexInfo("range", columns, index.name, int(index[-1]), int(index.step),
                         series)
    if isinstance(index, pd.DatetimeIndex):
        freq = index.freq
        if freq is None and len(index) >= 3:
            with warnings.catch_warnings():  # pandas warns about its own future defaults
                warnings.simplefilter("ignore")
                freq = pd.infer_freq(index)
        if freq is not None:
            offset = pd.tseries.frequencies.to_offset(freq)
            return IndexInfo("datetime", columns, index.name, index[-1], offset, series)
    if isinstance(index, pd.PeriodIndex):
        return IndexInfo("period", columns, index.name, index[-1], index.freqstr, series)
    if isinstance(index, pd.TimedeltaIndex) and len(index) >= 2:
        steps = np.diff(index.as_unit("ns").asi8)  # pandas 3 builds microsecond indexes
        if np.all(steps == steps[0]) and steps[0] > 0:
            return IndexInfo("timedelta", columns, index.name, index[-1],
                             pd.Timedelta(int(steps[0]), unit="ns"), series)
    if pd.api.types.is_integer_dtype(index) and len(index) >= 2:
        steps = np.diff(np.asarray(index))
        if np.all(steps == steps[0]) and steps[0] > 0:
            return IndexInfo("range", columns, index.name, int(index[-1]), int(steps[0]),
                             series)
    if pd.api.types.is_float_dtype(index) and len(index) >= 2:
        # Times in float units (0.00, 0.01, ...): regular up to their round-off.
        values = np.asarray(index, dtype=float)
        steps = np.diff(values)
        step = float(np.median(steps))
        if step > 0 and np.all(np.abs(steps - step) <= 1e-9 * max(step, np.abs(values).max())):
            return IndexInfo("float", columns, index.name, float(values[-1]), step, series)
    # An irregular index: forecasts are returned with a plain range index (the name is kept
    # for the forecasters that label a horizon with times of their own).
    return IndexInfo("none", columns, index.name, series=series)


def check_time_order(data: Any, name: str) -> None:
    """Refuse a pandas object whose time index (dates, durations, periods) is not strictly
    increasing: rows in reverse order (a file stored newest first) would be learned and
    forecast backwards in time, and repeated times have no order at all."""
    index = getattr(data, "index", None)
    if not isinstance(data, pd.DataFrame | pd.Series) or not isinstance(
            index, pd.DatetimeIndex | pd.TimedeltaIndex | pd.PeriodIndex) or len(index) < 2:
        return
    if index.is_monotonic_increasing and index.is_unique:
        return
    problem = ("repeats a time" if index.is_monotonic_increasing else
               "runs backwards (newest first)" if index.is_monotonic_decreasing else
               "is not in time order")
    raise ValueError(f"the index of {name} {problem}: the rows must be in increasing time "
                     f"order, each time once (sort them with {name}.sort_index(), and drop or "
                     "merge repeated times)")


def _is_collection(data: Any) -> bool:
    """Several trajectories are a list or tuple of arrays, tensors or pandas objects.

    A list of plain numbers or nested lists is read as one series (its rows), as numpy would.
    """
    return isinstance(data, list | tuple) and len(data) > 0 and all(
        isinstance(item, np.ndarray | torch.Tensor | pd.DataFrame | pd.Series) for item in data
    )


def as_series_list(data: Any, name: str, *, allow_nan: bool = False, remedy: str | None = None
                   ) -> tuple[list[np.ndarray], bool]:
    """Convert one series or a collection of them to a list of (T_i, d) float arrays.

    Returns the list and whether the input was a collection. One-dimensional series become
    a single column.
    """
    if isinstance(data, list | tuple) and len(data) == 0:
        raise ValueError(f"{name} is an empty list: give one series, or a list of them")
    collection = _is_collection(data)
    if isinstance(data, list | tuple) and not collection and any(
            isinstance(item, np.ndarray | torch.Tensor | pd.DataFrame | pd.Series)
            or item is None for item in data):
        # A list that mixes arrays with other things: numpy's own error would be "setting
        # an array element with a sequence".
        kinds = sorted({type(item).__name__ for item in data})
        raise TypeError(f"{name} is a list of {', '.join(kinds)}: give one array (T, d), or "
                        "a list of arrays, tensors or pandas objects (one per trajectory)")
    if not collection:
        try:
            n_dim = np.ndim(data)
        except ValueError as error:  # ragged nested lists
            raise ValueError(f"{name} is a ragged nested list (rows of different lengths): "
                             f"{error}") from None
    if not collection and n_dim == 3:
        raise ValueError(
            f"{name} has shape {np.shape(data)}: a series is (T, d); give several series as a "
            f"list of (T, d) arrays (list({name}) for a batch (B, T, d))")
    items = list(data) if collection else [data]
    arrays = []
    for i, item in enumerate(items):
        label = f"{name}[{i}]" if collection else name
        check_time_order(item, label)
        array = as_float_array(item, label, ndim=(1, 2), allow_nan=allow_nan, remedy=remedy)
        if array.ndim == 1:
            array = array[:, None]
        arrays.append(array)
    widths = {a.shape[1] for a in arrays}
    if len(widths) > 1:
        raise ValueError(
            f"all trajectories in {name} must have the same number of columns, "
            f"got {sorted(widths)}"
        )
    if arrays[0].shape[1] == 0:
        raise ValueError(f"{name} has no columns")
    return arrays, collection


def check_exogenous(X: Any, y_list: list[np.ndarray], collection: bool, name: str = "X"
                    ) -> list[np.ndarray] | None:
    """Validate exogenous inputs aligned row by row with the trajectories in ``y_list``."""
    if X is None:
        return None
    x_list, x_collection = as_series_list(X, name)
    if collection and not x_collection and len(y_list) > 1:
        raise ValueError(f"y holds {len(y_list)} trajectories: give {name} as a list of as many")
    if len(x_list) != len(y_list):
        raise ValueError(
            f"{name} holds {len(x_list)} series but y holds {len(y_list)} trajectories"
        )
    for i, (x, y) in enumerate(zip(x_list, y_list)):
        if x.shape[0] != y.shape[0]:
            where = f" (trajectory {i})" if len(y_list) > 1 else ""
            raise ValueError(
                f"{name} must have one row per time step of y{where}: "
                f"got {x.shape[0]} rows of {name} for {y.shape[0]} rows of y"
            )
    return x_list


def _dated(item: Any) -> bool:
    return isinstance(item, pd.DataFrame | pd.Series) and isinstance(
        item.index, pd.DatetimeIndex | pd.PeriodIndex)


def check_aligned_dates(y: Any, X: Any, collection: bool, what: str = "y") -> None:
    """Refuse exogenous rows dated otherwise than the series they go with.

    Rows are matched by position (one row of X per row of y); when both carry dates
    (a DatetimeIndex or PeriodIndex) that disagree, the inputs are shifted against the series
    and the model would learn from misaligned pairs without a sign.
    """
    pairs = zip(y, X) if collection and isinstance(X, list | tuple) else [(y, X)]
    for i, (series, exogenous) in enumerate(pairs):
        if not (_dated(series) and _dated(exogenous)):
            continue
        if len(series.index) == len(exogenous.index) and not series.index.equals(
                exogenous.index):
            where = f" (trajectory {i})" if collection else ""
            mismatch = int(np.argmax(np.asarray(series.index != exogenous.index)))
            raise ValueError(
                f"X is dated otherwise than {what}{where}: row {mismatch} of X is "
                f"{exogenous.index[mismatch]} but of {what} {series.index[mismatch]}; rows are "
                "matched by position, so select the rows of X with the same dates"
            )


def check_horizon_dates(X: Any, n_context: int, expected: pd.Index | None) -> None:
    """Refuse exogenous rows for the forecast horizon dated otherwise than the forecast.

    The rows of ``X`` after its first ``n_context`` go with the forecast steps, by position;
    when ``X`` carries dates and the forecast's index (``expected``) is dates too, a
    disagreement means inputs from another period.
    """
    if not _dated(X) or not isinstance(expected, pd.DatetimeIndex | pd.PeriodIndex):
        return
    horizon = X.index[n_context:]
    if len(horizon) == len(expected) and not horizon.equals(expected):
        mismatch = int(np.argmax(np.asarray(horizon != expected)))
        raise ValueError(
            f"the rows of X for the forecast horizon are dated otherwise than the forecast: "
            f"its row {n_context + mismatch} is {horizon[mismatch]} but forecast step "
            f"{mismatch} is {expected[mismatch]}; rows are matched by position, so select "
            "the rows of X with the forecast's dates")


class StandardScaler:
    """Per-column standardisation with statistics from the training data.

    Kept minimal (and separate from scikit-learn's) so that it serialises with the model as
    two arrays, ignores NaN (masked observations), and maps constant columns to zero.
    """

    def __init__(self, mean: np.ndarray, scale: np.ndarray):
        self.mean = mean
        self.scale = scale

    @classmethod
    def fit(cls, arrays: list[np.ndarray], enabled: bool = True) -> StandardScaler:
        width = arrays[0].shape[1]
        if not enabled:
            return cls(np.zeros(width), np.ones(width))
        stacked = np.concatenate(arrays, axis=0)
        with np.errstate(over="ignore", invalid="ignore"):
            mean = np.nanmean(stacked, axis=0)
            scale = np.nanstd(stacked, axis=0)
        if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
            # Values beyond ~1e154: their squares (or sums) overflow. The statistics of the
            # columns divided by their largest magnitude, scaled back, are finite.
            peak = np.nanmax(np.abs(stacked), axis=0)
            peak = np.where(peak > 0, peak, 1.0)
            unit = stacked / peak
            mean = np.nanmean(unit, axis=0) * peak
            scale = np.nanstd(unit, axis=0) * peak
        scale = np.where(scale > 0, scale, 1.0)
        return cls(mean, scale)

    def transform(self, array: np.ndarray) -> np.ndarray:
        return (array - self.mean) / self.scale

    def inverse_transform(self, array: np.ndarray) -> np.ndarray:
        return array * self.scale + self.mean
