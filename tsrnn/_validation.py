"""Input checks shared by every part of tsrnn.

Each check raises a ``ValueError`` (or ``TypeError``) that names the argument, says what was
wrong and what is expected, so that bad input never turns into a silent NaN or a wrong shape.
"""

from __future__ import annotations

import numbers
import os
import sys
import warnings
from typing import Any

import numpy as np
import torch


def check_positive(value: Any, name: str, *, integer: bool = False, allow_zero: bool = False):
    """Return ``value`` if it is a finite positive number (an ``int`` when ``integer``)."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__}")
    if integer and not isinstance(value, numbers.Integral):
        if float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an integer, got {value!r}")
    # Python integers are finite at any size (np.isfinite cannot take those beyond int64).
    if not isinstance(value, numbers.Integral) and not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return int(value) if integer else value


def check_in_range(value: Any, name: str, low: float, high: float, *, closed: str = "both"):
    """Return ``value`` if ``low <= value <= high`` (ends open where ``closed`` says)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    lo_ok = value >= low if closed in ("both", "left") else value > low
    hi_ok = value <= high if closed in ("both", "right") else value < high
    if not (lo_ok and hi_ok):
        left = "[" if closed in ("both", "left") else "("
        right = "]" if closed in ("both", "right") else ")"
        raise ValueError(f"{name} must lie in {left}{low}, {high}{right}, got {value!r}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """Return ``value`` as a ``bool`` if it is one (Python's or numpy's); anything else, such
    as ``"no"``, ``0`` or ``0.5``, is refused rather than read by its truthiness."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_option(value: Any, name: str, options) -> Any:
    """Return ``value`` if it is one of ``options``; otherwise list the known ones."""
    if value not in options:
        known = ", ".join(repr(o) for o in options)
        raise ValueError(f"unknown {name} {value!r}; expected one of {known}")
    return value


_REMEDY = "remove or impute missing values first"


def check_finite(array: np.ndarray | torch.Tensor, name: str, remedy: str = _REMEDY) -> None:
    """Raise if ``array`` holds NaN or inf, with the position of the first bad entry and
    what to do about it."""
    if isinstance(array, torch.Tensor):
        bad = ~torch.isfinite(array)
        if bool(bad.any()):
            index = tuple(int(i) for i in torch.nonzero(bad)[0])
            raise ValueError(f"{name} contains NaN or inf (first at index {index}); {remedy}")
        return
    bad = ~np.isfinite(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} contains NaN or inf (first at index {index}); {remedy}")


def check_no_inf(array: np.ndarray, name: str) -> None:
    """Raise if ``array`` holds +-inf, where NaN marks a missing observation and passes (the
    masked-forcing path: inf is no missing value, and forced into a state it overflows)."""
    bad = np.isinf(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} contains inf (first at index {index}); mark missing "
                         "observations with NaN")


def _numeric_pandas(data: Any) -> bool:
    """Whether ``data`` is a pandas Series/DataFrame of numbers or booleans only (nullable
    extension dtypes included)."""
    if not type(data).__module__.startswith("pandas"):
        return False
    import pandas as pd  # loaded already: data is a pandas object

    dtypes = data.dtypes if isinstance(data, pd.DataFrame) else [getattr(data, "dtype", None)]
    return all(dtype is not None and (pd.api.types.is_numeric_dtype(dtype)
                                      or pd.api.types.is_bool_dtype(dtype)) for dtype in dtypes)


def as_float_array(data: Any, name: str, *, ndim: int | tuple[int, ...] | None = None,
                   allow_nan: bool = False, dtype=np.float64,
                   remedy: str | None = None) -> np.ndarray:
    """Convert ``data`` (array, tensor, DataFrame, list) to a float numpy array and check it
    (``remedy``: what the error about NaN or inf tells the user to do; None: remove or
    impute)."""
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    elif isinstance(data, np.ma.MaskedArray):
        # Masked entries are missing values: NaN, which the checks below then see (np.asarray
        # would drop the mask and keep whatever lies under it).
        data = np.ma.filled(data.astype(np.float64), np.nan) if np.ma.is_masked(data) \
            else data.data
    elif hasattr(data, "to_numpy"):
        if _numeric_pandas(data):
            # pandas' nullable dtypes (Float64, Int64) hold pd.NA, which a plain to_numpy()
            # leaves as objects; as NaN the missing values get the NaN checks below.
            data = data.to_numpy(dtype=np.float64, na_value=np.nan)
        else:  # text and dates are refused below, as objects or datetime64
            data = data.to_numpy()
    try:
        array = np.asarray(data)
    except Exception as error:  # ragged lists and the like
        raise ValueError(f"{name} could not be read as an array: {error}") from error
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise TypeError(f"{name} must be real-valued, got dtype {array.dtype}")
    # Row-major always: a DataFrame's values come column-major, and reductions and products
    # over another memory order round differently, so a frame would fit (and predict) other
    # last bits than the same numbers as an array.
    array = array.astype(dtype, order="C", copy=False)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if array.ndim not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name} must have {want} dimensions, got shape {array.shape}")
    if not allow_nan:
        check_finite(array, name, _REMEDY if remedy is None else remedy)
    return array


_PACKAGE_DIRECTORY = os.path.dirname(os.path.abspath(__file__))


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn with the location of the first caller outside tsrnn, so that the warning points
    at the user's line (and filters on module ``tsrnn.*`` do not catch user-facing ones)."""
    frame = sys._getframe(1)  # the caller of warn(), which is warnings' stacklevel 2
    level = 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            _PACKAGE_DIRECTORY):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
