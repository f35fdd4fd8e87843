"""Figures for dynamical-systems reconstruction: attractors, power spectra, symbolic codes.

Each function builds a :class:`matplotlib.figure.Figure` directly (no pyplot: nothing is
shown, no global figure list grows, any backend including Agg works) and returns it; it is
written to disk only when ``path`` is given. matplotlib is imported when a function is
called, so ``import tsrnn`` does not pay for it.

- :func:`plot_attractor`: true and generated trajectories in 3-D (or 2-D) state space.
- :func:`plot_power_spectra`: per dimension, the smoothed power spectra behind the
  power-spectrum distance D_H (:func:`tsrnn.metrics.power_spectrum_distance`).
- :func:`plot_symbolic_sequence`: the linear subregion (symbolic code) over time and the
  region-transition matrix (Brenner et al. 2024, "Almost-linear RNNs yield highly
  interpretable symbolic codes in dynamical systems reconstruction", NeurIPS).
"""

from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np

from .._validation import as_float_array, check_bool, check_positive


def _new_figure(size: tuple[float, float]):
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def _finish(figure, path: str | os.PathLike | None, overwrite: bool):
    if path is not None:
        from matplotlib import rcParams

        # matplotlib adds its default format's suffix to a name without one ("fig" is
        # written to "fig.png"): the file that would be replaced is that one.
        target = os.fspath(path)
        suffix = os.path.splitext(target)[1]
        if not suffix:
            target = f"{target}.{rcParams['savefig.format']}"
        if os.path.exists(target) and not check_bool(overwrite, "overwrite"):
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
        figure.savefig(target)
    return figure


def _labels(labels) -> tuple[str, str]:
    """The two legend labels (true, generated), checked here rather than by an IndexError."""
    if isinstance(labels, str) or not isinstance(labels, tuple | list) or len(labels) != 2:
        raise ValueError(f"labels must hold 2 strings (true, generated), got {labels!r}")
    return tuple(str(label) for label in labels)


def _series(data: Any, name: str) -> np.ndarray:
    array = as_float_array(data, name, ndim=(1, 2))
    array = array[:, None] if array.ndim == 1 else array
    if array.shape[0] < 2:
        raise ValueError(f"{name} must have at least 2 time steps, got shape {array.shape}")
    return array


def _dims(dims: Any, n_columns: int, allowed: tuple[int, ...]) -> tuple[int, ...]:
    try:
        given = tuple(dims)
    except TypeError as error:
        raise TypeError(f"dims must be a sequence of column indices, got {dims!r}") from error
    # Whole numbers only: int(0.7) would quietly draw column 0, and True column 1.
    if not all(isinstance(d, numbers.Integral) and not isinstance(d, bool | np.bool_)
               for d in given):
        raise TypeError(f"dims must be a sequence of column indices (integers), got {dims!r}")
    dims = tuple(int(d) for d in given)
    if len(dims) not in allowed:
        want = " or ".join(str(n) for n in allowed)
        raise ValueError(f"dims must name {want} columns, got {dims}")
    bad = [d for d in dims if not -n_columns <= d < n_columns]
    if bad:
        raise ValueError(f"dims {bad} out of range for data with {n_columns} columns")
    return dims


def plot_attractor(true: Any, generated: Any = None, dims: Any = None, *,
                   overlay: bool = False, max_points: int | None = 20_000,
                   labels: tuple[str, str] = ("true", "generated"),
                   path: str | os.PathLike | None = None, overwrite: bool = False):
    """Trajectories in state space: the data's attractor beside (or under) the model's.

    Parameters
    ----------
    true : array (T, d)
        The reference trajectory.
    generated : array (T', d), optional
        The model's free run; must have the same number of columns as ``true``.
    dims : 2 or 3 column indices, optional
        Which coordinates to draw: 3 give 3-D axes, 2 plane axes. Default (0, 1, 2), or
        (0, 1) for 2-column data.
    overlay : bool
        One axes with both trajectories instead of one panel each.
    max_points : int or None
        Draw at most this many points of each trajectory (its first ones); None draws all.
    labels : (str, str)
    path : str or path-like, optional
        Write the figure there (format from the suffix).
    overwrite : bool
        Replace an existing file at ``path`` (otherwise a FileExistsError).

    Returns
    -------
    matplotlib.figure.Figure with one axes per panel (``figure.axes``).
    """
    truth = _series(true, "true")
    series = [truth]
    if generated is not None:
        model = _series(generated, "generated")
        if model.shape[1] != truth.shape[1]:
            raise ValueError(f"true and generated must have the same number of columns, got "
                             f"shapes {truth.shape} and {model.shape}")
        series.append(model)
    labels = _labels(labels)
    if dims is None:
        if truth.shape[1] < 2:
            raise ValueError("plot_attractor needs at least 2 columns, got shape "
                             f"{truth.shape}")
        dims = (0, 1, 2) if truth.shape[1] >= 3 else (0, 1)
    dims = _dims(dims, truth.shape[1], (2, 3))
    if max_points is not None:
        max_points = check_positive(max_points, "max_points", integer=True)
        series = [s[:max_points] for s in series]

    three_d = len(dims) == 3
    n_panels = 1 if overlay or len(series) == 1 else len(series)
    figure = _new_figure((4.5 * n_panels, 4.2))
    colours = ("tab:blue", "tab:orange")
    axes = [figure.add_subplot(1, n_panels, i + 1, projection="3d" if three_d else None)
            for i in range(n_panels)]
    for i, data in enumerate(series):
        ax = axes[0 if overlay else i]
        ax.plot(*(data[:, d] for d in dims), lw=0.5, color=colours[i], label=labels[i])
        ax.set_xlabel(f"x{dims[0] % truth.shape[1]}")
        ax.set_ylabel(f"x{dims[1] % truth.shape[1]}")
        if three_d:
            ax.set_zlabel(f"x{dims[2] % truth.shape[1]}")
            ax.set_box_aspect(None, zoom=0.85)  # keeps the z label inside the panel
        if not overlay:
            ax.set_title(labels[i])
    if overlay and len(series) > 1:
        axes[0].legend(loc="best")
    if not overlay and len(series) > 1:
        # One scale for both panels: a generated attractor of the wrong size or position
        # must look it, not be rescaled to match.
        limits = [(min(ax.get_xlim()[0] for ax in axes), max(ax.get_xlim()[1] for ax in axes)),
                  (min(ax.get_ylim()[0] for ax in axes), max(ax.get_ylim()[1] for ax in axes))]
        if three_d:
            limits.append((min(ax.get_zlim()[0] for ax in axes),
                           max(ax.get_zlim()[1] for ax in axes)))
        for ax in axes:
            ax.set_xlim(*limits[0])
            ax.set_ylim(*limits[1])
            if three_d:
                ax.set_zlim(*limits[2])
    return _finish(figure, path, overwrite)


def plot_power_spectra(true: Any, generated: Any, sigma: float = 20.0, *, dims: Any = None,
                       dt: float | None = None, truncate: bool = False,
                       labels: tuple[str, str] = ("true", "generated"),
                       path: str | os.PathLike | None = None, overwrite: bool = False):
    """Per dimension, the smoothed power spectra that the power-spectrum distance D_H
    compares (z-scored series, |rfft|^2, Gaussian smoothing of ``sigma`` bins, normalised to
    sum 1; SPEC section 3), with each dimension's Hellinger distance in its title.

    Parameters
    ----------
    true, generated : arrays (T, d)
        Same number of columns and (as for D_H) the same length.
    sigma : float
        Smoothing width in frequency bins (as :func:`tsrnn.metrics.power_spectrum_distance`).
    dims : sequence of int, optional
        Which columns (default all).
    dt : float, optional
        Sampling step: frequencies in cycles per time unit; default cycles per step.
    truncate : bool
        Compare the first min(T, T') steps when the lengths differ (otherwise an error).
    labels : (str, str)
    path : str or path-like, optional
        Write the figure there (format from the suffix).
    overwrite : bool
        Replace an existing file at ``path`` (otherwise a FileExistsError).

    Returns
    -------
    matplotlib.figure.Figure with one axes per dimension (log power against frequency).
    """
    from ..metrics.reconstruction import _smoothed_spectra

    sigma = check_positive(sigma, "sigma")
    labels = _labels(labels)
    truth = _series(true, "true")
    model = _series(generated, "generated")
    if model.shape[1] != truth.shape[1]:
        raise ValueError(f"true and generated must have the same number of columns, got "
                         f"shapes {truth.shape} and {model.shape}")
    if len(truth) != len(model):
        if not truncate:
            raise ValueError(f"true and generated must have the same length (the spectra "
                             f"depend on it), got shapes {truth.shape} and {model.shape}; "
                             "pass truncate=True to compare the first "
                             f"{min(len(truth), len(model))} steps")
        length = min(len(truth), len(model))
        truth, model = truth[:length], model[:length]
    dims = tuple(range(truth.shape[1])) if dims is None else _dims(
        dims, truth.shape[1], tuple(range(1, truth.shape[1] + 1)))
    step = 1.0 if dt is None else check_positive(dt, "dt")
    p = _smoothed_spectra(truth[:, dims], sigma, "true", allow_constant=False)
    q = _smoothed_spectra(model[:, dims], sigma, "generated", allow_constant=True)
    frequency = np.fft.rfftfreq(len(truth), d=step)
    distance = np.sqrt(np.clip(1.0 - np.sum(np.sqrt(p * q), axis=0), 0.0, None))

    n = len(dims)
    columns = min(n, 3)
    rows = -(-n // columns)
    figure = _new_figure((4.0 * columns, 3.0 * rows))
    for i, d in enumerate(dims):
        ax = figure.add_subplot(rows, columns, i + 1)
        ax.semilogy(frequency[1:], p[1:, i], label=labels[0], lw=1.0)
        # A constant generated dimension (a model at rest) has no power to draw: a line at
        # the smallest float would stretch the axis over 300 decades and flatten the true
        # spectrum. The legend says so instead.
        constant = not np.any(q[1:, i] > 0)
        ax.semilogy(frequency[1:], np.where(q[1:, i] > 0, q[1:, i], np.nan), lw=1.0,
                    label=f"{labels[1]} (constant: no power)" if constant else labels[1])
        ax.set_title(f"x{d % truth.shape[1]}: D_H = {distance[i]:.3f}")
        ax.set_xlabel("frequency (1/step)" if dt is None else "frequency (1/time)")
        ax.set_ylabel("power (normalised)")
        if i == 0 or constant:
            ax.legend(loc="best")
    return _finish(figure, path, overwrite)


def plot_symbolic_sequence(codes: Any, *, max_steps: int | None = 500, dt: float | None = None,
                           normalize: bool = True, path: str | os.PathLike | None = None,
                           overwrite: bool = False):
    """A symbolic code over time and its region-transition matrix.

    Parameters
    ----------
    codes : int array (T,) or boolean array (T, R)
        The linear subregion of each step: integer codes (e.g. an estimator's
        ``symbolic_codes()``) drawn as a step plot of the region's rank among those visited,
        or ReLU sign patterns (a module's ``region(z)``) drawn as an image (units x time).
    max_steps : int or None
        Steps drawn in the time panel (the first ones); the transition matrix uses all.
    dt : float, optional
        Time per step for the time axis (default: steps).
    normalize : bool
        Row-normalised transition probabilities instead of counts.
    path : str or path-like, optional
        Write the figure there (format from the suffix).
    overwrite : bool
        Replace an existing file at ``path`` (otherwise a FileExistsError).

    Returns
    -------
    matplotlib.figure.Figure with two axes (and a colour bar): the code over time and the
    transition matrix between the visited subregions (rows: from, columns: to).
    """
    raw = np.asarray(codes.detach().cpu().numpy() if hasattr(codes, "detach") else codes)
    if raw.ndim == 2 and raw.dtype == bool:
        patterns = raw
        weights = 2 ** np.arange(raw.shape[1] - 1, -1, -1, dtype=np.int64)
        labels = raw.astype(np.int64) @ weights if raw.shape[1] <= 62 else \
            np.unique(raw, axis=0, return_inverse=True)[1].reshape(-1)
    elif raw.ndim == 1 and raw.dtype != object and np.issubdtype(raw.dtype, np.integer):
        patterns, labels = None, raw.astype(np.int64)
    elif raw.ndim == 1 and raw.dtype == object and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in raw):
        patterns, labels = None, raw  # the Python-integer codes of models beyond 62 ReLUs
    else:
        raise ValueError(f"codes must be integer codes (T,) or boolean sign patterns (T, R), "
                         f"got dtype {raw.dtype} and shape {raw.shape}")
    if patterns is not None and patterns.shape[1] == 0:
        raise ValueError("codes have no ReLU columns (shape (T, 0)): a model without "
                         "piecewise-linear units has one linear region and no symbolic code")
    if labels.size < 2:
        raise ValueError(f"codes must cover at least 2 time steps, got {labels.size}")
    step = 1.0 if dt is None else check_positive(dt, "dt")
    shown = labels.size if max_steps is None else min(
        labels.size, check_positive(max_steps, "max_steps", integer=True))

    symbols, index = np.unique(labels, return_inverse=True)
    index = index.reshape(-1)
    counts = np.zeros((symbols.size, symbols.size), dtype=np.int64)
    np.add.at(counts, (index[:-1], index[1:]), 1)
    matrix = counts.astype(float)
    if check_bool(normalize, "normalize"):
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = matrix / np.where(totals > 0, totals, 1.0)

    figure = _new_figure((10.0, 4.0))
    grid = figure.add_gridspec(1, 2, width_ratios=(2.0, 1.0))
    time_axes = figure.add_subplot(grid[0, 0])
    time = np.arange(shown) * step
    if patterns is not None:
        time_axes.imshow(patterns[:shown].T, aspect="auto", interpolation="nearest",
                         cmap="Greys", extent=(time[0], time[-1] + step, patterns.shape[1] - 0.5,
                                               -0.5))
        time_axes.set_ylabel("ReLU unit (black: active)")
    else:
        time_axes.step(time, index[:shown], where="post", lw=1.0)
        time_axes.set_ylabel("subregion")
        if symbols.size <= 20:
            time_axes.set_yticks(range(symbols.size), [str(s) for s in symbols])
    time_axes.set_xlabel("step" if dt is None else "time")
    time_axes.set_title("symbolic code")

    graph_axes = figure.add_subplot(grid[0, 1])
    image = graph_axes.imshow(matrix, cmap="viridis", interpolation="nearest")
    if symbols.size <= 20:
        graph_axes.set_xticks(range(symbols.size), [str(s) for s in symbols], rotation=90)
        graph_axes.set_yticks(range(symbols.size), [str(s) for s in symbols])
    graph_axes.set_xlabel("to subregion")
    graph_axes.set_ylabel("from subregion")
    graph_axes.set_title("transition probabilities" if normalize else "transition counts")
    figure.colorbar(image, ax=graph_axes)
    return _finish(figure, path, overwrite)
