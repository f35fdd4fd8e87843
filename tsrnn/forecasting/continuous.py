"""Continuous-time forecasters: CfC and LTC cores, irregular timestamps, exogenous inputs.

Hasani et al. 2022, "Closed-form continuous-time neural networks" (CfC); Hasani et al.
2021, "Liquid time-constant networks" (LTC). The modules are :class:`tsrnn.nn.CfC` and
:class:`tsrnn.nn.LTC`; training is one-step-ahead teacher forcing on windows
(:class:`~tsrnn.forecasting.base.NeuralForecaster`), the readout predicts increments.

Irregular sampling. The time of every row comes, in this order of precedence, from

1. ``fit(y, X, times=...)``: an array (T,) of increasing numbers, a pandas DatetimeIndex,
   or a list of those (one per trajectory);
2. the DatetimeIndex (or a numeric index) of ``y`` when it is a DataFrame or Series;
3. nothing: rows one time unit apart.

The gaps are divided by ``time_scale`` (None: the median gap of the training data, so a
regular series gets dt = 1 everywhere). The step that reads y_t advances the state over the
gap to the next row, t_{t+1} - t_t, and its output predicts y_{t+1}: the cell is asked for
the state exactly at the time of the value it predicts. ``predict(n_steps, context, X,
times=...)`` takes the times of the forecast horizon (preceded by those of ``context``
when one is given, as for ``X``); without them the horizon continues with the median
training gap (the context's own index is used when it is a DatetimeIndex).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._validation import as_float_array, check_in_range, check_option, check_positive
from ..nn.cfc import CfC
from ..nn.ltc import LTC
from ..nn.wirings import AutoNCP, FullyConnected, LowRankSparse, RandomSparse
from .base import NeuralForecaster

WIRINGS = ("full", "random", "ncp", "low_rank")


class ContinuousPredictor(nn.Module):
    """A continuous-time core with a linear readout predicting y_{t+1} from y_{<=t}.

    ``forward(y (B, L, d), x (B, L, p) or None, state, dt (B, L))`` returns the predictions
    (B, L, d) and the core's final state; step t reads [y_t, x_{t+1}] and advances over
    dt[:, t] = t_{t+1} - t_t.
    """

    def __init__(self, core: nn.Module, n_features: int, residual: bool = True):
        super().__init__()
        self.core = core
        self.readout = nn.Linear(core.output_size, n_features)
        self.residual = residual

    def forward(self, y, x=None, state=None, dt=None):
        inputs = y if x is None else torch.cat([y, x], dim=-1)
        outputs, state = self.core(inputs, state, dt)
        prediction = self.readout(outputs)
        return (y + prediction if self.residual else prediction), state

    @torch.no_grad()
    def rollout(self, context_y, context_x, future_x, n_steps: int, dt: torch.Tensor):
        """Closed-loop forecast; ``dt`` (B, T_c + n_steps - 1) holds the gaps between all
        consecutive times of context and horizon."""
        exogenous = (None if context_x is None
                     else torch.cat([context_x, future_x], dim=1)[:, 1:])
        steps = context_y.shape[1]
        prediction, state = self(context_y, None if exogenous is None else
                                 exogenous[:, :steps], None, dt[:, :steps])
        current = prediction[:, -1:]
        outputs = [current]
        for i in range(1, n_steps):
            x = None if exogenous is None else exogenous[:, steps + i - 1: steps + i]
            current, state = self(current, x, state, dt[:, steps + i - 1: steps + i])
            outputs.append(current)
        return torch.cat(outputs, dim=1)


def _as_times(times: Any, name: str) -> np.ndarray:
    """Numbers (seconds for datetimes) from an array, a DatetimeIndex or a Series."""
    if isinstance(times, pd.Series):
        times = pd.Index(times)
    if isinstance(times, pd.DatetimeIndex):
        return times.asi8.astype(np.float64) / 1e9
    if isinstance(times, pd.Index):
        times = times.to_numpy()
    array = np.asarray(times)
    if np.issubdtype(array.dtype, np.datetime64):
        return array.astype("datetime64[ns]").astype(np.int64).astype(np.float64) / 1e9
    array = as_float_array(array, name, ndim=1)
    return array


def _increasing(times: np.ndarray, name: str) -> np.ndarray:
    gaps = np.diff(times)
    if (gaps <= 0).any():
        first = int(np.argmax(gaps <= 0))
        raise ValueError(f"{name} must be strictly increasing; entry {first + 1} "
                         f"({times[first + 1]!r}) does not come after entry {first} "
                         f"({times[first]!r})")
    return gaps


class _ContinuousForecaster(NeuralForecaster):
    """Shared by the CfC and LTC forecasters: timestamps, the module, the rollout."""

    # ------------------------------------------------------------------ times
    def fit(self, y: Any, X: Any = None, times: Any = None):
        """Fit to one or several trajectories; ``times`` as in the module docstring.

        Parameters
        ----------
        y, X : see :meth:`tsrnn.forecasting.base.BaseForecaster.fit`.
        times : array (T,), DatetimeIndex, or a list of those (one per trajectory), optional
            The time of every row of ``y``.
        """
        self._pending_times = (y, times)
        try:
            return super().fit(y, X)
        finally:
            del self._pending_times

    def _training_times(self, y_list: list[np.ndarray]) -> list[np.ndarray] | None:
        y, times = self._pending_times
        if times is None:
            sources = y if isinstance(y, list | tuple) else [y]
            if not all(isinstance(s, pd.DataFrame | pd.Series) and (
                    isinstance(s.index, pd.DatetimeIndex)
                    or pd.api.types.is_numeric_dtype(s.index.dtype)) for s in sources):
                return None
            if not any(isinstance(s.index, pd.DatetimeIndex) for s in sources):
                return None  # a plain RangeIndex: rows are equally spaced anyway
            times = [s.index for s in sources]
        elif not isinstance(times, list | tuple):
            times = [times]
        if len(times) != len(y_list):
            raise ValueError(f"times has {len(times)} entries for {len(y_list)} trajectories")
        result = []
        for i, (t, series) in enumerate(zip(times, y_list)):
            name = "times" if len(times) == 1 else f"times[{i}]"
            t = _as_times(t, name)
            if t.shape[0] != series.shape[0]:
                raise ValueError(f"{name} has {t.shape[0]} entries for {series.shape[0]} rows "
                                 "of y; give one time per row")
            _increasing(t, name)
            result.append(t)
        return result

    def _fit(self, y_list, x_list) -> None:
        times = self._training_times(y_list)
        if times is None:
            self.time_scale_ = 1.0
            self.last_time_ = None
            gaps = [np.ones(len(y)) for y in y_list]
        else:
            raw = [np.diff(t) for t in times]
            if self.time_scale is None:
                self.time_scale_ = float(np.median(np.concatenate(raw)))
            else:
                self.time_scale_ = float(check_positive(self.time_scale, "time_scale"))
            # gaps[r] is the time from row r-1 to row r (1 for the first row: never used as
            # a target's gap, since row 0 is never predicted).
            gaps = [np.concatenate([[1.0], r / self.time_scale_]) for r in raw]
            self.last_time_ = float(times[-1][-1])
        self._train_gaps = gaps
        # The gaps travel through the windows as one more (unscaled) exogenous column.
        augmented = [np.column_stack([x if x_list is not None else np.empty((len(g), 0)), g])
                     for x, g in zip(x_list if x_list is not None else [None] * len(gaps),
                                     gaps)]
        try:
            super()._fit(y_list, augmented)
        finally:
            self.context_gaps_ = gaps[-1]
            del self._train_gaps

    def _store_context(self, y_scaled, x_scaled, previous: bool = False) -> None:
        super()._store_context(y_scaled, x_scaled, previous)
        self.context_gaps_ = self.context_gaps_[-len(self.context_y_):].copy()

    def _training_loss(self, module, y, x):
        exogenous = x[:, 1:, :-1] if x.shape[-1] > 1 else None
        prediction, _ = module(y[:, :-1], exogenous, None, x[:, 1:, -1])
        return torch.nn.functional.mse_loss(prediction, y[:, 1:])

    # ------------------------------------------------------------------ predict
    def predict(self, n_steps: int, context: Any = None, X: Any = None, times: Any = None):
        """Closed-loop forecast; see :meth:`BaseForecaster.predict` and, for ``times``, the
        module docstring: the ``n_steps`` times of the horizon, preceded by the times of
        ``context`` when one is given."""
        self._check_fitted()
        n_steps = check_positive(n_steps, "n_steps", integer=True)
        self._pending_gaps = self._predict_gaps(n_steps, context, times)
        try:
            forecast = super().predict(n_steps, context, X)
        finally:
            del self._pending_gaps
        if times is not None and isinstance(forecast, pd.DataFrame | pd.Series):
            index = times if isinstance(times, pd.Index) else pd.Index(np.asarray(times))
            forecast.index = index[-n_steps:]
        return forecast

    def _predict_gaps(self, n_steps: int, context: Any, times: Any) -> np.ndarray:
        """Gaps between consecutive times of context and horizon (T_c + n_steps - 1,)."""
        n_context = len(self.context_y_) if context is None else len(context)
        if times is not None:
            t = _as_times(times, "times")
            if context is None:
                if t.shape[0] != n_steps:
                    raise ValueError(f"times must hold the {n_steps} times of the horizon, "
                                     f"got {t.shape[0]}")
                if self.last_time_ is None:
                    raise ValueError("the model was fitted without times; predict cannot "
                                     "place a horizon given by times after the training data")
                t = np.concatenate([[self.last_time_], t])
                gaps = _increasing(t, "times (after the end of the training data)")
                return np.concatenate([self.context_gaps_[1:], gaps / self.time_scale_])
            if t.shape[0] != n_context + n_steps:
                raise ValueError(f"times must hold the {n_context} times of the context "
                                 f"followed by the {n_steps} of the horizon, got {t.shape[0]}")
            return _increasing(t, "times") / self.time_scale_
        if context is None:
            return np.concatenate([self.context_gaps_[1:], np.ones(n_steps)])
        if isinstance(context, pd.DataFrame | pd.Series) and isinstance(
                context.index, pd.DatetimeIndex) and self.last_time_ is not None:
            t = _as_times(context.index, "the index of context")
            own = _increasing(t, "the index of context") / self.time_scale_
            return np.concatenate([own, np.ones(n_steps)])
        return np.ones(n_context + n_steps - 1)

    def _predict(self, n_steps, context_y, context_x, future_x):
        module = self.module_.eval()
        gaps = self._tensor(self._pending_gaps)[None]
        y = self._tensor(context_y)[None]
        cx = None if context_x is None else self._tensor(context_x)[None]
        fx = None if future_x is None else self._tensor(future_x)[None]
        return module.rollout(y, cx, fx, n_steps, gaps)[0].double().cpu().numpy()

    def _context_length(self) -> int:
        return 4 * int(self.sequence_length)

    # ------------------------------------------------------------------ module
    def _wiring(self):
        kind = self.wiring
        if kind is None:
            return None
        check_option(kind, "wiring", WIRINGS)
        units = int(self.hidden_size)
        seed = 1111 if self.random_state is None else int(self.random_state)
        sparsity = check_in_range(self.sparsity, "sparsity", 0.0, 1.0, closed="left")
        if kind == "full":
            return FullyConnected(units, seed=seed)
        if kind == "random":
            return RandomSparse(units, sparsity=sparsity, seed=seed)
        if kind == "low_rank":
            rank = max(1, units // 8) if self.rank is None else self.rank
            return LowRankSparse(units, rank, sparsity=sparsity, seed=seed)
        motor = min(max(self.n_features_in_, 1), units - 3)
        if motor < 1:
            raise ValueError(f"wiring='ncp' needs hidden_size >= 4, got {units}")
        return AutoNCP(units, motor, sparsity=max(sparsity, 0.1), seed=seed)

    def _build_module(self) -> ContinuousPredictor:
        check_positive(self.hidden_size, "hidden_size", integer=True)
        n_inputs = self.n_features_in_ + self.n_exog_
        core = self._core(n_inputs, self._wiring())
        return ContinuousPredictor(core, self.n_features_in_, residual=self.residual)

    def _core(self, n_inputs: int, wiring):
        raise NotImplementedError

    def get_state_trajectory(self, y: Any, X: Any = None, times: Any = None) -> np.ndarray:
        """The hidden states of the fitted core along a series y (T, d): (T, H).

        Step t has read y_t and advanced to the time of row t + 1 (see the module
        docstring); the last step uses the median gap.
        """
        self._check_fitted()
        raw = as_float_array(y, "y", ndim=(1, 2))
        raw = raw[:, None] if raw.ndim == 1 else raw
        scaled = self.y_scaler_.transform(raw)
        if self.n_exog_:
            # Step t reads x_{t+1}; the last step, whose next row is unknown, repeats x_T.
            rows = self._check_future_x(X, len(raw), 0)
            inputs = np.column_stack([scaled, np.vstack([rows[1:], rows[-1:]])])
        else:
            inputs = scaled
        if times is not None:
            t = _as_times(times, "times")
            gaps = np.r_[_increasing(t, "times") / self.time_scale_, 1.0]
        else:
            gaps = np.ones(len(raw))
        with torch.no_grad():
            states = self.module_.core.trajectory(self._tensor(inputs)[None], None,
                                                  self._tensor(gaps)[None])
        states = states[0] if isinstance(states, torch.Tensor) else states[0][0]
        return states.double().cpu().numpy()


_TRAINING_DOC = """
    sequence_length, batch_size, max_epochs, learning_rate, learning_rate_final, optimizer,
    weight_decay, gradient_clip, validation_fraction, early_stopping, divergence,
    checkpoint_path
        Training, see :class:`tsrnn.forecasting.base.NeuralForecaster`.
    scale : bool
        Standardise each column with the training statistics.
    random_state, device, dtype, verbose
        Reproducibility, where to compute, precision, one progress bar."""


class CfCForecaster(_ContinuousForecaster):
    # (assigned, not a literal docstring, to share the training parameters' text)
    __doc__ = """Forecaster with a CfC core (:class:`tsrnn.nn.CfC`), irregular times and exogenous
    inputs (see the module docstring).

    Parameters
    ----------
    hidden_size : int
        Units of the CfC cell.
    mode : {"default", "no_gate", "pure"}
    backbone_units, backbone_layers, backbone_dropout
        The backbone MLP (unwired mode only).
    mixed_memory : bool
        An LSTM memory cell in front of the CfC.
    wiring : None or {"full", "random", "ncp", "low_rank"}
        None: a CfC with a backbone; otherwise the wired CfC of that wiring
        (:mod:`tsrnn.nn.wirings`; "ncp" is an AutoNCP with one motor neuron per feature).
    sparsity, rank : the sparsity of "random", "ncp" and "low_rank"; the rank of
        "low_rank" (None: hidden_size // 8).
    time_scale : float, optional
        The time unit of dt (None: the median gap of the training times).
    residual : bool
        Predict increments y_{t+1} - y_t.
""" + _TRAINING_DOC + """

    Examples
    --------
    >>> import numpy as np
    >>> from tsrnn.forecasting import CfCForecaster
    >>> t = np.sort(np.random.default_rng(0).uniform(0, 60, 400))
    >>> y = np.c_[np.sin(t), np.cos(t)]
    >>> model = CfCForecaster(hidden_size=16, sequence_length=16, max_epochs=2,
    ...                       random_state=0).fit(y, times=t)
    >>> model.predict(5, times=t[-1] + 0.15 * np.arange(1, 6)).shape
    (5, 2)
    """

    def __init__(self, hidden_size: int = 64, mode: str = "default", backbone_units: int = 64,
                 backbone_layers: int = 1, backbone_dropout: float = 0.0,
                 mixed_memory: bool = False, wiring: str | None = None, sparsity: float = 0.5,
                 rank: int | None = None, time_scale: float | None = None,
                 residual: bool = True, sequence_length: int = 64, batch_size: int = 32,
                 max_epochs: int = 50, learning_rate: float = 3e-3,
                 learning_rate_final: float | None = None, optimizer: str = "adam",
                 weight_decay: float = 0.0, gradient_clip: float | None = 1.0,
                 validation_fraction: float = 0.1, early_stopping: int | None = 10,
                 divergence: str = "raise", checkpoint_path: str | None = None,
                 scale: bool = True, random_state: int | None = None, device: str | None = None,
                 dtype: str = "float32", verbose: bool = False):
        self.hidden_size = hidden_size
        self.mode = mode
        self.backbone_units = backbone_units
        self.backbone_layers = backbone_layers
        self.backbone_dropout = backbone_dropout
        self.mixed_memory = mixed_memory
        self.wiring = wiring
        self.sparsity = sparsity
        self.rank = rank
        self.time_scale = time_scale
        self.residual = residual
        self.sequence_length = sequence_length
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.learning_rate_final = learning_rate_final
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.gradient_clip = gradient_clip
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.divergence = divergence
        self.checkpoint_path = checkpoint_path
        self.scale = scale
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    def _core(self, n_inputs, wiring):
        units = self.hidden_size if wiring is None else wiring
        options = {} if wiring is not None else dict(
            backbone_units=self.backbone_units, backbone_layers=self.backbone_layers,
            backbone_dropout=self.backbone_dropout)
        return CfC(n_inputs, units, mode=self.mode, mixed_memory=self.mixed_memory, **options)


class LTCForecaster(_ContinuousForecaster):
    __doc__ = """Forecaster with an LTC core (:class:`tsrnn.nn.LTC`), irregular times and exogenous
    inputs (see the module docstring).

    Parameters
    ----------
    hidden_size : int
        Neurons of the LTC cell (all of them read out unless the wiring has motor neurons).
    ode_unfolds : int
        Semi-implicit steps per input step.
    solver : {"fused", "adaptive"}
    mixed_memory : bool
    wiring : None or {"full", "random", "ncp", "low_rank"}
        None is fully connected.
    sparsity, rank, time_scale, residual : as :class:`CfCForecaster`.
""" + _TRAINING_DOC

    def __init__(self, hidden_size: int = 32, ode_unfolds: int = 6, solver: str = "fused",
                 mixed_memory: bool = False, wiring: str | None = None, sparsity: float = 0.5,
                 rank: int | None = None, time_scale: float | None = None,
                 residual: bool = True, sequence_length: int = 64, batch_size: int = 32,
                 max_epochs: int = 50, learning_rate: float = 1e-2,
                 learning_rate_final: float | None = None, optimizer: str = "adam",
                 weight_decay: float = 0.0, gradient_clip: float | None = 1.0,
                 validation_fraction: float = 0.1, early_stopping: int | None = 10,
                 divergence: str = "raise", checkpoint_path: str | None = None,
                 scale: bool = True, random_state: int | None = None, device: str | None = None,
                 dtype: str = "float32", verbose: bool = False):
        self.hidden_size = hidden_size
        self.ode_unfolds = ode_unfolds
        self.solver = solver
        self.mixed_memory = mixed_memory
        self.wiring = wiring
        self.sparsity = sparsity
        self.rank = rank
        self.time_scale = time_scale
        self.residual = residual
        self.sequence_length = sequence_length
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.learning_rate_final = learning_rate_final
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.gradient_clip = gradient_clip
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.divergence = divergence
        self.checkpoint_path = checkpoint_path
        self.scale = scale
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    def _core(self, n_inputs, wiring):
        units = self.hidden_size if wiring is None else wiring
        return LTC(n_inputs, units, ode_unfolds=self.ode_unfolds, solver=self.solver,
                   mixed_memory=self.mixed_memory)


__all__ = ["CfCForecaster", "ContinuousPredictor", "LTCForecaster"]
