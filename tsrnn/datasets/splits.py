"""Time-ordered train / validation / test splits, standardised with the training statistics.

A series is never shuffled: the parts are consecutive blocks, in the order train, validation,
test, optionally separated by ``gap`` dropped steps so that the end of one part does not
predict the start of the next too easily. Standardisation uses the mean and standard
deviation of the TRAINING block only (per variate, population std, ``ddof=0``), so that no
information from the validation or test blocks leaks into training; the statistics are
kept on the split so that forecasts can be brought back to the original units::

    split = simulate_splits(Lorenz63(), n_train=5000, n_test=1000, seed=0)
    model.fit(split.train)
    forecast = split.inverse_transform(model.predict(1000))   # original units
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from tsrnn._validation import as_float_array, check_bool, check_option, check_positive


@dataclass(frozen=True, eq=False)
class SeriesSplit:
    """Consecutive train / validation / test blocks of one series.

    Parameters
    ----------
    train, validation, test : array or pandas object
        The blocks, each (n_part, dim) (or (n_part,) for a one-dimensional series), in the
        type of the input: numpy arrays for arrays, tensors and simulations; DataFrames or
        Series (with their index) for pandas input. An absent part has zero rows.
        Standardised when ``mean`` and ``std`` are set.
    dt : float or None
        Time step between rows for simulated data; None where the index carries the time.
    mean, std : array of shape (dim,) (or () for a one-dimensional series), or None
        The training statistics used to standardise, ``z = (x - mean) / std``; None when
        the blocks are in original units.
    starts : tuple of three ints
        Row at which train, validation and test start in the source series (after the
        transient, for simulations); with a ``gap`` the blocks are not contiguous, and
        with a look-back (ETT convention) a block can start before the previous one ends.
    columns : tuple of str or None
        Column names of pandas input, used by ``columns=`` in the transforms.
    """

    train: Any
    validation: Any
    test: Any
    dt: float | None = None
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    starts: tuple[int, int, int] = (0, 0, 0)
    columns: tuple[str, ...] | None = None

    @property
    def standardized(self) -> bool:
        """Whether the blocks are standardised (``mean`` and ``std`` are set)."""
        return self.mean is not None and self.std is not None

    @property
    def sizes(self) -> tuple[int, int, int]:
        """Rows in train, validation and test."""
        return (len(self.train), len(self.validation), len(self.test))

    def transform(self, data: Any, columns: Sequence[int | str] | None = None) -> Any:
        """Standardise new data with the training statistics, ``(data - mean) / std``.

        Parameters and return value as for :meth:`inverse_transform`.
        """
        return self._apply(data, columns, inverse=False)

    def inverse_transform(self, data: Any, columns: Sequence[int | str] | None = None) -> Any:
        """Undo the standardisation: ``data * std + mean``.

        Parameters
        ----------
        data : array, tensor, DataFrame or Series
            Values in standardised units whose last axis holds the variates, e.g. a
            forecast (n_steps, dim) or a batch (B, n_steps, dim).
        columns : sequence of int or str, optional
            Which variates the last axis of ``data`` holds, when it is not all of them
            (e.g. ``columns=["OT"]`` or ``columns=[0]`` for a forecast of one column).
            Names need pandas input to the split.

        Returns
        -------
        Same type and shape as ``data`` (float64 for arrays; tensors keep their dtype and
        device; pandas objects keep their index and columns). Returned unchanged when the
        split is not standardised.
        """
        return self._apply(data, columns, inverse=True)

    def _named_columns(self, data: Any) -> list[str] | None:
        """The columns pandas ``data`` holds, by name, when the split has names: statistics
        applied by position to reordered or foreign columns were silently wrong (a
        DataFrame with its two columns swapped came out with means of -133 and 10)."""
        if isinstance(data, pd.DataFrame):
            names = [str(c) for c in data.columns]
            unknown = [n for n in names if n not in self.columns]
            if unknown:
                raise ValueError(
                    f"data has columns {unknown} that the split does not know (its columns: "
                    f"{', '.join(repr(c) for c in self.columns)}); rename them, or pass "
                    "columns= to say which variates they hold")
            return names
        if isinstance(data, pd.Series) and len(self.columns) > 1 and data.name in self.columns:
            return [str(data.name)]
        return None

    def _statistics(self, columns: Sequence[int | str] | None) -> tuple[np.ndarray, np.ndarray]:
        mean, std = np.asarray(self.mean), np.asarray(self.std)
        if columns is None:
            return mean, std
        if mean.ndim == 0:
            raise ValueError("columns= needs a split of a multivariate series")
        positions = []
        for column in columns:
            if isinstance(column, str):
                if self.columns is None or column not in self.columns:
                    known = ", ".join(repr(c) for c in self.columns or ())
                    raise ValueError(f"unknown column {column!r}; known columns: {known or 'none'}")
                positions.append(self.columns.index(column))
            elif (isinstance(column, numbers.Integral) and not isinstance(column, bool | np.bool_)
                  and -len(mean) <= column < len(mean)):  # True would read as column 1
                positions.append(int(column))
            else:
                raise ValueError(f"column {column!r} is not a name or an index below {len(mean)}")
        return mean[positions], std[positions]

    def _apply(self, data: Any, columns: Sequence[int | str] | None, *, inverse: bool) -> Any:
        if not self.standardized:
            return data
        if columns is None and self.columns is not None:
            columns = self._named_columns(data)
        mean, std = self._statistics(columns)
        if isinstance(data, pd.Series):  # one variate along the index
            if mean.size != 1:
                raise ValueError(f"a Series holds one variate but the split has {mean.size}; "
                                 "pick it with columns=[...]")
            mean, std = mean.reshape(()), std.reshape(())
        if not isinstance(data, (torch.Tensor, pd.DataFrame, pd.Series)):
            data = as_float_array(data, "data", allow_nan=True)  # lists and arrays
        width = data.shape[-1] if data.ndim >= 1 else None
        if mean.ndim and width != mean.size:
            raise ValueError(f"data has {width} variates on its last axis (shape "
                             f"{tuple(data.shape)}) but the statistics have {mean.size}; "
                             "pass columns= to say which variates it holds")
        if isinstance(data, torch.Tensor):
            mean_t = torch.as_tensor(mean, dtype=data.dtype, device=data.device)
            std_t = torch.as_tensor(std, dtype=data.dtype, device=data.device)
            return data * std_t + mean_t if inverse else (data - mean_t) / std_t
        values = as_float_array(data, "data", allow_nan=True)
        values = values * std + mean if inverse else (values - mean) / std
        if isinstance(data, pd.Series):
            return pd.Series(values, index=data.index, name=data.name)
        if isinstance(data, pd.DataFrame):
            return pd.DataFrame(values, index=data.index, columns=data.columns)
        return values


def _as_rows(data: Any, name: str) -> tuple[Any, np.ndarray]:
    """Return (the object to slice, its float values); pandas objects are kept for slicing."""
    values = as_float_array(data, name, ndim=(1, 2), allow_nan=True)
    if isinstance(data, (pd.DataFrame, pd.Series)):
        return data.astype(float), values
    return values, values


def _train_statistics(train_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-variate mean and population std of the training rows, ignoring NaN."""
    if len(train_values) == 0:
        raise ValueError("cannot standardise with an empty training block")
    observed = np.isfinite(train_values).sum(axis=0)
    if np.any(observed == 0):
        raise ValueError("a variate has no finite value in the training block; "
                         "cannot compute its mean and std")
    mean = np.nanmean(train_values, axis=0)
    std = np.nanstd(train_values, axis=0)
    # a constant variate keeps its scale (std 1) instead of dividing by zero, as scikit-learn
    std = np.where(std > 0, std, 1.0)
    return mean, std


def _split_by_bounds(data: Any, bounds: Sequence[tuple[int, int]], *, name: str,
                     standardize: bool, dt: float | None = None) -> SeriesSplit:
    """Cut ``data`` into the three [start, stop) row blocks of ``bounds`` (train first)."""
    rows, values = _as_rows(data, name)
    train_start, train_stop = bounds[0]
    mean = std = None
    if check_bool(standardize, "standardize"):
        mean, std = _train_statistics(values[train_start:train_stop])
        # broadcasts over the last axis for arrays and DataFrames alike, keeping pandas indexes
        rows = (rows - mean) / std

    def take(start: int, stop: int):
        if isinstance(rows, (pd.DataFrame, pd.Series)):
            return rows.iloc[start:stop]
        return rows[start:stop]

    columns = tuple(str(c) for c in data.columns) if isinstance(data, pd.DataFrame) else None
    return SeriesSplit(
        train=take(*bounds[0]), validation=take(*bounds[1]), test=take(*bounds[2]), dt=dt,
        mean=mean, std=std, starts=tuple(int(start) for start, _ in bounds), columns=columns,
    )


def _consecutive_bounds(n_train: int, n_validation: int, n_test: int,
                        gap: int) -> list[tuple[int, int]]:
    """[start, stop) of train, validation, test; a gap precedes each non-empty later block."""
    bounds = [(0, n_train)]
    position = n_train
    for size in (n_validation, n_test):
        start = position + gap if size else position
        bounds.append((start, start + size))
        position = start + size
    return bounds


def simulate_splits(system: Any, n_train: int, n_validation: int = 0, n_test: int = 0,
                    dt: float | None = None, transient: int = 1000, noise: float = 0.0,
                    standardize: bool = True, seed: int | None = None,
                    gap: int = 0, angles: str = "keep") -> SeriesSplit:
    """Simulate one trajectory and cut it into consecutive train / validation / test blocks.

    One call ``system.simulate(n_steps, dt=dt, transient=transient, seed=seed, noise=noise)``
    with ``n_steps = n_train + [gap + n_validation] + [gap + n_test]`` (a bracket counts
    only when its block is non-empty) gives a single trajectory on the attractor; the
    blocks follow each other in time, so the test block is the continuation of the
    validation block, which continues the training block.

    Parameters
    ----------
    system : object or str
        Anything with ``simulate(n_steps, dt=None, x0=None, transient=0, seed=None,
        noise=0.0)`` returning an array (n_steps, dim), e.g. ``tsrnn.systems.Lorenz63()``,
        or the name of a tsrnn system (``"lorenz63"``, as the command line takes it).
    n_train : int
        Rows in the training block (> 0).
    n_validation, n_test : int, default 0
        Rows in the validation and test blocks (>= 0; 0 leaves the block empty).
    dt : float, optional
        Time step; None uses ``system.default_dt``.
    transient : int, default 1000
        Steps simulated and discarded first so that the trajectory starts on the attractor.
    noise : float, default 0.0
        For a ``tsrnn.systems`` system: Gaussian observation noise, relative to each
        variate's standard deviation over the training block (a share of the whole run, as
        ``simulate`` scales it, would make the training data depend on the length of the
        test block); the training block is the same whatever the other blocks' lengths.
        For another object:
        passed to its ``simulate`` (its meaning is the object's).
    standardize : bool, default True
        Standardise all blocks with the training block's per-variate mean and std.
    seed : int, optional
        Seed of the simulation (initial condition and noise).
    gap : int, default 0
        Steps dropped before the validation and before the test block, to decorrelate them
        from the block before.
    angles : {"keep", "circle"}, default "keep"
        What to do with the system's ``phase_coordinates`` (angles that advance without
        bound, such as a forced oscillator's forcing phase): "keep" them as simulated, or
        observe each as its cosine and sine ("circle"; two columns in its place), so that
        the data are bounded and recur, as a reconstruction needs.

    Returns
    -------
    SeriesSplit
        ``train`` (n_train, dim), ``validation`` (n_validation, dim), ``test`` (n_test,
        dim) numpy arrays (dim counts two columns per angle observed on the circle); ``dt``
        the step used; ``mean``/``std`` (dim,) when standardised;
        ``starts`` the first row of each block in the simulated trajectory.

    Raises
    ------
    ValueError
        For non-positive ``n_train``, negative sizes, or a simulation that returns the wrong
        number of rows or non-finite values (a diverged integration).
    """
    n_train = check_positive(n_train, "n_train", integer=True)
    n_validation = check_positive(n_validation, "n_validation", integer=True, allow_zero=True)
    n_test = check_positive(n_test, "n_test", integer=True, allow_zero=True)
    transient = check_positive(transient, "transient", integer=True, allow_zero=True)
    gap = check_positive(gap, "gap", integer=True, allow_zero=True)
    check_positive(noise, "noise", allow_zero=True)
    check_option(angles, "angles", ("keep", "circle"))
    if dt is not None:
        dt = check_positive(dt, "dt")
    if isinstance(system, str):
        from ..systems import get_system

        system = get_system(system)
    if isinstance(system, type):  # simulate would be unbound: "missing n_steps"
        raise TypeError(f"system must be an instance, e.g. {system.__name__}(), not the "
                        "class")
    if not callable(getattr(system, "simulate", None)):
        raise TypeError(f"system must have a simulate(n_steps, ...) method, "
                        f"got {type(system).__name__}")

    bounds = _consecutive_bounds(n_train, n_validation, n_test, gap)
    n_steps = bounds[-1][1]
    from ..systems import DynamicalSystem

    own_noise = noise > 0 and isinstance(system, DynamicalSystem)
    trajectory = system.simulate(n_steps, dt=dt, transient=transient, seed=seed,
                                 noise=0.0 if own_noise else noise)
    trajectory = as_float_array(trajectory, "simulated trajectory", ndim=(1, 2))
    if trajectory.ndim == 1:  # a scalar system may return (n_steps,)
        trajectory = trajectory[:, None]
    if trajectory.shape[0] != n_steps:
        raise ValueError(f"system.simulate({n_steps}, ...) returned {trajectory.shape[0]} rows")
    if angles == "circle":
        trajectory = angles_on_circle(trajectory, getattr(system, "phase_coordinates", ()))
    if own_noise:
        # Row by row from one numpy stream, so that a block's draws do not depend on how
        # many rows follow it (torch's randn orders its draws by the tensor's size), scaled
        # by the training block (ddof 1, as simulate's).
        draws = np.random.default_rng(None if seed is None else seed + 1).standard_normal(
            trajectory.shape)
        scale = trajectory[:n_train].std(axis=0, ddof=1) if n_train > 1 else np.ones(
            trajectory.shape[1])
        trajectory = trajectory + noise * scale * draws
    step = dt if dt is not None else getattr(system, "default_dt", None)
    return _split_by_bounds(trajectory, bounds, name="simulated trajectory",
                            standardize=standardize, dt=step)


def angles_on_circle(trajectory: np.ndarray, coordinates: Sequence[int]) -> np.ndarray:
    """``trajectory`` (T, d) with each angle column in ``coordinates`` replaced by its
    cosine and sine (two columns in its place): (T, d + len(coordinates))."""
    coordinates = set(coordinates)
    columns = []
    for k in range(trajectory.shape[1]):
        if k in coordinates:
            columns += [np.cos(trajectory[:, k]), np.sin(trajectory[:, k])]
        else:
            columns.append(trajectory[:, k])
    return np.stack(columns, axis=1)


def _part_size(size: int | float, n_rows: int, name: str) -> int:
    """Rows for a part given as a count (int >= 0) or a fraction of the series (0 <= f < 1)."""
    if isinstance(size, bool) or not isinstance(size, numbers.Real):
        raise TypeError(f"{name} must be an int (rows) or a float (fraction), got {size!r}")
    if isinstance(size, numbers.Integral):
        return check_positive(size, name, integer=True, allow_zero=True)
    if not (0.0 <= size < 1.0):
        raise ValueError(f"{name} as a fraction must lie in [0, 1), got {size!r}")
    # as scikit-learn: a fractional held-out part is rounded up (the 1e-9 absorbs round-off,
    # so that 0.2 of 100 rows is 20, not 21)
    rows = math.ceil(size * n_rows - 1e-9)
    if size > 0 and rows == 0:
        raise ValueError(f"{name}={size!r} of {n_rows} rows is an empty part")
    return rows


def train_test_split_series(data: Any, test_size: int | float = 0.2,
                            validation_size: int | float = 0, *, gap: int = 0,
                            standardize: bool = False) -> SeriesSplit:
    """Split a series in time order into train, validation and test blocks (no shuffling).

    Parameters
    ----------
    data : array (T,) or (T, dim), tensor, DataFrame or Series
        The series, rows in time order. NaN is allowed (and ignored by the statistics).
    test_size, validation_size : int or float
        Rows of the last block (test) and of the block before it (validation): an int is a
        count (>= 0), a float a fraction of ``T`` in [0, 1), rounded up. 0 leaves the block
        empty.
    gap : int, default 0
        Rows dropped before the validation and before the test block.
    standardize : bool, default False
        Standardise all blocks with the training block's per-variate mean and std.

    Returns
    -------
    SeriesSplit
        Blocks in the type of ``data`` (pandas input keeps its index; tensors become numpy
        arrays); ``dt`` is None; ``starts`` are row positions in ``data``.

    Raises
    ------
    ValueError
        When a positive fraction rounds to an empty part, or the training block would be
        empty (the series is too short for the requested parts and gaps).
    """
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    if np.ndim(data) == 0:  # len() of a number was Python's TypeError
        raise ValueError(f"data must be a series (T,) or (T, dim), got {data!r}")
    n_rows = len(data)
    n_test = _part_size(test_size, n_rows, "test_size")
    n_validation = _part_size(validation_size, n_rows, "validation_size")
    gap = check_positive(gap, "gap", integer=True, allow_zero=True)
    n_gaps = gap * ((n_validation > 0) + (n_test > 0))
    n_train = n_rows - n_validation - n_test - n_gaps
    if n_train <= 0:
        raise ValueError(
            f"series too short: {n_rows} rows leave {n_train} for training after "
            f"{n_validation} validation, {n_test} test and {n_gaps} gap rows"
        )
    bounds = _consecutive_bounds(n_train, n_validation, n_test, gap)
    return _split_by_bounds(data, bounds, name="data", standardize=standardize)
