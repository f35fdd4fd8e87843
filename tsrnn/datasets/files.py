"""Series from files the user supplies: CSV files with a time column (ETT and the like).

The Electricity Transformer Temperature files (ETTh1, ETTh2: hourly; ETTm1, ETTm2: every 15
minutes) from the Informer repository (https://github.com/zhouhaoyi/ETDataset) look like::

    date,HUFL,HULL,MUFL,MULL,LUFL,LULL,OT
    2016-07-01 00:00:00,5.827,2.009,1.599,0.462,4.203,1.340,30.531
    ...

No wheel ships them and tsrnn downloads nothing, so they are read from a path::

    df = load_csv("ETTh1.csv", freq="h")
    split = ett_splits(df, kind="hour", standardize=True)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import pandas as pd

from tsrnn._validation import check_option, check_positive
from tsrnn.datasets.splits import SeriesSplit, _split_by_bounds


def _first_non_numeric(column: pd.Series) -> tuple[int, Any]:
    """File line (the header is line 1) and value of the first entry that is not a number."""
    parsed = pd.to_numeric(column, errors="coerce")
    bad = parsed.isna() & column.notna()
    position = int(bad.to_numpy().argmax())
    return position + 2, column.iloc[position]


def _inferred_offset(index: pd.DatetimeIndex):
    """The regular frequency of ``index`` as a pandas offset, or None when it has none."""
    with warnings.catch_warnings():
        # pandas 3.1 warns that infer_freq will return an offset instead of a string;
        # to_offset accepts both, so the answer is the same either way
        warnings.simplefilter("ignore", DeprecationWarning)
        inferred = pd.infer_freq(index)
    return None if inferred is None else pd.tseries.frequencies.to_offset(inferred)


def _check_regular(index: pd.DatetimeIndex, freq: str) -> pd.DatetimeIndex:
    """Return ``index`` carrying ``freq`` (inferred when "infer"), or say where it breaks."""
    if len(index) < 3 and freq == "infer":
        raise ValueError(f"cannot infer a frequency from {len(index)} timestamps")
    if freq == "infer":
        inferred = _inferred_offset(index)
        if inferred is None:
            steps = index.to_series().diff().iloc[1:]
            usual = steps.mode().iloc[0]
            position = int((steps != usual).to_numpy().argmax()) + 1
            raise ValueError(
                f"the time column is not regular: the usual step is {usual}, but "
                f"{index[position - 1]} is followed by {index[position]} (position {position} "
                "in time order)"
            )
        freq = inferred
    try:
        expected = pd.date_range(start=index[0], periods=len(index), freq=freq)
    except ValueError as error:
        raise ValueError(f"invalid freq {freq!r}: {error}") from error
    mismatch = (index != expected).nonzero()[0]
    if len(mismatch):
        position = int(mismatch[0])
        raise ValueError(
            f"the time column does not follow freq {freq!r}: position {position} (in time "
            f"order) is {index[position]}, expected {expected[position]}"
        )
    return pd.DatetimeIndex(index, freq=expected.freq, name=index.name)


def load_csv(path: str | os.PathLike, time_column: str | None = "date",
             columns: Sequence[str] | None = None, freq: str | None = None,
             parse_dates: bool = True) -> pd.DataFrame:
    """Read a CSV file with one time column and numeric columns into a time-indexed DataFrame.

    Parameters
    ----------
    path : str or path-like
        The CSV file (comma-separated, a header row), e.g. ``ETTh1.csv``.
    time_column : str or None, default "date"
        Column holding the time stamps; it becomes the index. None keeps the row order as
        the time order with a RangeIndex (then ``freq`` must be None).
    columns : sequence of str, optional
        Value columns to keep, in this order; None keeps every column but the time column.
    freq : str, optional
        None: no check (the index gets a frequency only where pandas can infer one).
        ``"infer"``: require regular spacing and set the inferred frequency. A pandas
        frequency (``"h"``, ``"15min"``, ``"D"``, ...): require exactly that spacing. Either
        check names the first time stamp that breaks it. Needs ``parse_dates=True``.
    parse_dates : bool, default True
        Parse the time column as dates (a ``DatetimeIndex``); False keeps its values as
        they are. A column of numbers (time steps or seconds) is kept as numbers either
        way: pandas would read 0, 1, 2 as nanoseconds after 1970.

    Returns
    -------
    pandas.DataFrame
        Shape (T, n_columns), float64 values, indexed by the time column (named after it),
        sorted in time. Empty cells become NaN.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the time column or a requested column is missing (the message lists those
        present), a value column is not numeric (named, with the first bad value), a time
        stamp cannot be parsed, time stamps repeat (the first repeats are listed), or the
        spacing does not match ``freq``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {os.fspath(path)!r}")
    if isinstance(columns, str):  # a string is a sequence of its letters
        raise TypeError(f"columns must be a list of column names, got the string {columns!r} "
                        f"(for one column: columns=[{columns!r}])")
    if freq is not None and (time_column is None or not parse_dates):
        raise ValueError("freq needs a time column parsed as dates "
                         "(time_column set and parse_dates=True)")
    table = pd.read_csv(path)
    present = [str(name) for name in table.columns]
    if time_column is not None and time_column not in table.columns:
        raise ValueError(f"time column {time_column!r} not found in {os.fspath(path)!r}; "
                         f"columns present: {', '.join(present)}")
    if columns is None:
        value_columns = [name for name in table.columns if name != time_column]
    else:
        value_columns = list(columns)
        missing = [name for name in value_columns if name not in table.columns]
        if missing:
            raise ValueError(f"columns {missing} not found in {os.fspath(path)!r}; "
                             f"columns present: {', '.join(present)}")
    if not value_columns:
        raise ValueError(f"{os.fspath(path)!r} has no value columns besides {time_column!r}")

    non_numeric = {}
    for name in value_columns:
        if not (pd.api.types.is_numeric_dtype(table[name])
                and not pd.api.types.is_bool_dtype(table[name])):
            non_numeric[name] = _first_non_numeric(table[name])
    if non_numeric:
        details = "; ".join(f"{name!r} (line {line}: {value!r})"
                            for name, (line, value) in non_numeric.items())
        raise ValueError(f"non-numeric columns in {os.fspath(path)!r}: {details}")
    frame = table[value_columns].astype(float)

    if time_column is None:
        return frame
    stamps = table[time_column]
    numeric_time = (pd.api.types.is_numeric_dtype(stamps)
                    and not pd.api.types.is_bool_dtype(stamps))
    if numeric_time and freq is not None:
        raise ValueError(f"freq needs dates, but the time column {time_column!r} holds numbers "
                         "(kept as time steps or seconds)")
    if parse_dates and not numeric_time:
        try:
            stamps = pd.to_datetime(stamps)
        except (ValueError, TypeError) as error:
            raise ValueError(f"time column {time_column!r} could not be parsed as dates: "
                             f"{error}") from error
    frame.index = pd.Index(stamps, name=time_column)
    # a stable sort keeps the file order of equal stamps, which the duplicate check reports
    frame = frame.sort_index(kind="stable")
    duplicated = frame.index[frame.index.duplicated()].unique()
    if len(duplicated):
        shown = ", ".join(str(stamp) for stamp in duplicated[:5])
        raise ValueError(f"{len(duplicated)} duplicate time stamps in column {time_column!r} "
                         f"of {os.fspath(path)!r}, first: {shown}")
    if parse_dates and isinstance(frame.index, pd.DatetimeIndex):
        if freq is not None:
            frame.index = _check_regular(frame.index, freq)
        elif len(frame.index) >= 3:
            inferred = _inferred_offset(frame.index)
            if inferred is not None:
                frame.index = pd.DatetimeIndex(frame.index, freq=inferred, name=time_column)
    return frame


# Informer's Dataset_ETT_hour / Dataset_ETT_minute (data/data_loader.py, followed by
# Autoformer and the Time-Series-Library): 12 "months" of 30 days train, 4 validate, 4 test.
_HOURS_PER_MONTH = 30 * 24
_ETT_ROWS_PER_HOUR = {"hour": 1, "minute": 4}
_ETT_STEP = {"hour": pd.Timedelta(hours=1), "minute": pd.Timedelta(minutes=15)}


def ett_borders(kind: str = "hour") -> dict[str, tuple[int, int]]:
    """The standard ETT [start, stop) row ranges without look-back.

    Parameters
    ----------
    kind : {"hour", "minute"}
        ``"hour"`` for ETTh1/ETTh2, ``"minute"`` for the 15-minute ETTm1/ETTm2.

    Returns
    -------
    dict
        ``{"train": (0, 8640), "validation": (8640, 11520), "test": (11520, 14400)}`` for
        ``"hour"``; four times these rows for ``"minute"`` (34560, 46080, 57600).
    """
    check_option(kind, "kind", tuple(_ETT_ROWS_PER_HOUR))
    month = _HOURS_PER_MONTH * _ETT_ROWS_PER_HOUR[kind]
    return {"train": (0, 12 * month), "validation": (12 * month, 16 * month),
            "test": (16 * month, 20 * month)}


def ett_splits(df: pd.DataFrame, kind: str = "hour", lookback: int = 0,
               standardize: bool = False) -> SeriesSplit:
    """Cut an ETT table into the standard train / validation / test blocks.

    The convention of Informer (Zhou et al., AAAI 2021; ``Dataset_ETT_hour`` and
    ``Dataset_ETT_minute``), kept by Autoformer and the Time-Series-Library: with "months" of
    30 days, the first 12 months train, the next 4 validate, the next 4 test; the rows after
    month 20 are not used (ETTh1 has 17420 rows, ETTm1 69680).

    ========  ============  ===============  ===============
    kind      train         validation       test
    ========  ============  ===============  ===============
    hour      [0, 8640)     [8640, 11520)    [11520, 14400)
    minute    [0, 34560)    [34560, 46080)   [46080, 57600)
    ========  ============  ===============  ===============

    Parameters
    ----------
    df : pandas.DataFrame
        The table from :func:`load_csv` (rows in time order, numeric columns), at least 14400
        rows (``"hour"``) or 57600 (``"minute"``).
    kind : {"hour", "minute"}
        Hourly files (ETTh1, ETTh2) or 15-minute files (ETTm1, ETTm2). When ``df`` has a
        DatetimeIndex, its first step must be 1 hour or 15 minutes accordingly.
    lookback : int, default 0
        Start validation and test this many rows early, as Informer does with ``seq_len``
        (its ``border1s``), so that the first target of each block has a full input window.
        The extra rows belong to the previous block.
    standardize : bool, default False
        Standardise with the training block's per-column mean and std (Informer's
        ``scale=True``, a StandardScaler fitted on the training rows).

    Returns
    -------
    SeriesSplit
        DataFrame blocks with their time index; ``starts`` ``(0, 8640 - lookback,
        11520 - lookback)`` for ``"hour"``; ``dt`` None.

    Raises
    ------
    ValueError
        If ``df`` is too short, its time step does not match ``kind``, or ``lookback`` does
        not fit in the training block.
    """
    borders = ett_borders(kind)
    lookback = check_positive(lookback, "lookback", integer=True, allow_zero=True)
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    needed = borders["test"][1]
    if len(df) < needed:
        raise ValueError(f"ETT {kind} splits need at least {needed} rows, df has {len(df)}")
    if lookback >= borders["train"][1]:
        raise ValueError(f"lookback={lookback} must be below the {borders['train'][1]} "
                         "training rows")
    if isinstance(df.index, pd.DatetimeIndex) and len(df) > 1:
        step = df.index[1] - df.index[0]
        if step != _ETT_STEP[kind]:
            hint = "".join(f"; kind={other!r} fits this step" for other, other_step
                           in _ETT_STEP.items() if other_step == step)
            raise ValueError(f"kind={kind!r} expects a time step of {_ETT_STEP[kind]}, but "
                             f"the index steps by {step}{hint}")
    bounds = [borders["train"],
              (borders["validation"][0] - lookback, borders["validation"][1]),
              (borders["test"][0] - lookback, borders["test"][1])]
    return _split_by_bounds(df, bounds, name="df", standardize=standardize)
