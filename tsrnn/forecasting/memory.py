"""Forecasters built on long-memory recurrent cores: LEM, the HiPPO-RNN and the LSSL.

Rusch et al. (2022), "Long expressive memory for sequence modeling" (:class:`tsrnn.nn.LEM`);
Gu et al. (2020), "HiPPO: Recurrent memory with optimal polynomial projections"
(:class:`tsrnn.nn.HiPPORNN`); Gu et al. (2021), "Combining recurrent, convolutional, and
continuous-time models with linear state-space layers" (:class:`tsrnn.nn.LSSL`).

Each wraps its core in a next-step predictor (the core reads [y_t, x_{t+1}], a linear readout
gives y_{t+1}) and trains by one-step teacher forcing with the loop of
:class:`tsrnn.forecasting.base.NeuralForecaster`, as the GRU/LSTM baselines.

Irregular timestamps, exactly as for CfC/LTC (:mod:`tsrnn.forecasting._times`):
``fit(y, X, times=...)`` and ``predict(n_steps, context, X, times=...)`` take the time of
every row (an array, a DatetimeIndex, one per trajectory; or the DatetimeIndex of ``y``).
The gaps in units of ``time_scale`` (None: the median training gap) become the core's
per-step ``dt``; the step that reads y_t advances over dt_t = (t_{t+1} - t_t) / time_scale_,
to the time of the value it predicts. Each core turns dt into its own step:

- LEM: the step Δt of the underlying ODE (``dt``) becomes Δt · dt_n in both gates;
- HiPPO-RNN: Δ = ``timescale`` · dt_n for LegT/LagT/S4D-Real; LegS advances its elapsed
  time by the same amount (Δ = dt / t);
- LSSL: Δ_h · dt_n, the system discretised anew at every sample and step. The convolution
  kernel assumes one Δ_h for every step, so a window with irregular gaps runs the
  recurrent mode (the LSSL's "auto" mode does so; with a dense A it costs one N x N solve
  per sample, feature and step, the diagonal ``measure="s4d_real"`` a linear scan).

A batch whose gaps are all exactly one unit (a regular series, or a regular stretch of an
irregular one) is given to the core without dt, which means the same steps: a regularly
sampled series with times gives the same model as without them (and the LSSL keeps its
convolutional training on it).

``predict`` starts from the last rows of its context as training windows start: the last
``sequence_length`` rows for the HiPPO-RNN and the LSSL, ``4 * sequence_length`` for LEM,
whether the context is the training data's end or a longer one given by the user.
"""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_positive
from ..nn.hippo import HiPPORNN
from ..nn.lem import LEM
from ..nn.lssl import LSSL
from ._times import TimedForecaster, TimedNextStepPredictor
from .base import store_hyperparameters


class _MemoryForecaster(TimedForecaster):
    """Shared by the three forecasters: the readout, the context, what the core gets as dt
    (timestamps, training and closed loop: :class:`tsrnn.forecasting._times.TimedForecaster`).
    """

    def _build_core(self, n_inputs: int) -> nn.Module:
        raise NotImplementedError

    def _build_module(self) -> TimedNextStepPredictor:
        hidden = check_positive(self.hidden_size, "hidden_size", integer=True)
        core = self._build_core(self.n_features_in_ + self.n_exog_)
        return TimedNextStepPredictor(core, self.n_features_in_, hidden, residual=self.residual)

    def _module_steps(self, gaps: torch.Tensor) -> torch.Tensor | None:
        # dt = None means one unit per step for all three cores: the same map, and it keeps the
        # LSSL's convolution (and the HiPPO-RNN's matrices shared across the batch) when the
        # sampling is regular.
        return None if bool((gaps == 1).all()) else gaps

    def _context_length(self) -> int:
        # Training windows start from a zero state and last sequence_length steps; the closed
        # loop starts from a context of the same length by default.
        return int(self.sequence_length)

    def _predict(self, n_steps, context_y, context_x, future_x):
        # A longer context is cut as predict() cuts the training data's: the HiPPO-RNN's
        # state counts the steps since its start and the LSSL's kernel spans one window, so
        # a context longer than training's windows would start them where they never were.
        extra = context_y.shape[0] - self._context_length()
        if extra > 0:
            context_y = context_y[extra:]
            context_x = None if context_x is None else context_x[extra:]
            self._pending_gaps = self._pending_gaps[extra:]
        return super()._predict(n_steps, context_y, context_x, future_x)


class LEMForecaster(_MemoryForecaster):
    """Forecaster with a Long Expressive Memory core (:class:`tsrnn.nn.LEM`), exogenous inputs
    and irregular timestamps (module docstring).

    Parameters
    ----------
    hidden_size : int
        H, the size of each of LEM's two states.
    dt : float
        Δt of the LEM discretisation (the paper's tasks use 1 or smaller); a step whose gap
        is dt_n time units uses Δt · dt_n.
    residual : bool
        Predict increments y_{t+1} - y_t (suits smooth dynamics).
    time_scale : float, optional
        The time unit of the gaps between ``times`` (None: their median in the training
        data, so that a regular series has one unit per step).
    sequence_length, batch_size, max_epochs, learning_rate, learning_rate_final, optimizer,
    weight_decay, gradient_clip, validation_fraction, early_stopping, divergence,
    checkpoint_path
        Training, see :class:`tsrnn.forecasting.base.NeuralForecaster`.
    scale : bool
        Standardise each column with the training statistics.
    random_state, device, dtype, verbose
        Reproducibility, where to compute, precision, one progress bar.

    Examples
    --------
    >>> from tsrnn.systems import Lorenz63
    >>> from tsrnn.forecasting import LEMForecaster
    >>> y = Lorenz63().simulate(2000, transient=500)
    >>> model = LEMForecaster(max_epochs=2, random_state=0).fit(y)
    >>> model.predict(10).shape
    (10, 3)

    Irregular sampling: the time of every row, then the times of the horizon.

    >>> import numpy as np
    >>> t = np.sort(np.random.default_rng(0).uniform(0, 60, 400))
    >>> model = LEMForecaster(hidden_size=16, sequence_length=16, max_epochs=2,
    ...                       random_state=0).fit(np.c_[np.sin(t), np.cos(t)], times=t)
    >>> model.predict(5, times=t[-1] + 0.15 * np.arange(1, 6)).shape
    (5, 2)
    """

    def __init__(self, *, hidden_size: int = 64, dt: float = 1.0, residual: bool = True,
                 time_scale: float | None = None, sequence_length: int = 64,
                 batch_size: int = 32, max_epochs: int = 50, learning_rate: float = 1e-3,
                 learning_rate_final: float | None = None, optimizer: str = "adam",
                 weight_decay: float = 0.0, gradient_clip: float | None = 1.0,
                 validation_fraction: float = 0.1, early_stopping: int | None = 10,
                 divergence: str = "raise", checkpoint_path: str | None = None,
                 scale: bool = True, random_state: int | None = None,
                 device: str | None = None, dtype: str = "float32", verbose: bool = False):
        store_hyperparameters(self, locals())

    def _build_core(self, n_inputs: int) -> LEM:
        return LEM(n_inputs, self.hidden_size, dt=self.dt, generator=self._generator())

    def _context_length(self) -> int:
        return 4 * int(self.sequence_length)  # LEM's state forgets, as the GRU's


class HiPPOForecaster(_MemoryForecaster):
    """Forecaster with a HiPPO-RNN core (:class:`tsrnn.nn.HiPPORNN`), exogenous inputs and
    irregular timestamps (module docstring).

    Parameters
    ----------
    hidden_size : int
        H, the gated hidden state.
    state_size : int
        N, HiPPO coefficients per memory channel.
    measure : {"legs", "legt", "lagt", "s4d_real"}
        LegS remembers the whole window, LegT the last ``theta`` time units, LagT (and the
        diagonal S4D-Real) decay exponentially.
    method : {"forward_euler", "bilinear", "backward_euler", "gbt", "zoh"}
        Discretisation.
    alpha : float in [0, 1], optional
        The GBT parameter, for ``method="gbt"`` only.
    timescale : float
        HiPPO time units per time unit of the series (LegT/LagT; LegS is scale invariant):
        a step whose gap is dt_n time units uses Δ = ``timescale`` · dt_n.
    memory_size : int
        Scalar memory inputs, each with N coefficients.
    theta : float
        LegT's window in time units.
    residual : bool
        Predict increments y_{t+1} - y_t.
    time_scale : float, optional
        The time unit of the gaps between ``times`` (None: their median in the training
        data, so that a regular series has one unit per step).
    sequence_length, batch_size, max_epochs, learning_rate, learning_rate_final, optimizer,
    weight_decay, gradient_clip, validation_fraction, early_stopping, divergence,
    checkpoint_path
        Training, see :class:`tsrnn.forecasting.base.NeuralForecaster`.
    scale : bool
        Standardise each column with the training statistics.
    random_state, device, dtype, verbose
        Reproducibility, where to compute, precision, one progress bar.
    """

    def __init__(self, *, hidden_size: int = 64, state_size: int = 32, measure: str = "legs",
                 method: str = "bilinear", alpha: float | None = None, timescale: float = 1.0,
                 memory_size: int = 1, theta: float = 1.0, residual: bool = True,
                 time_scale: float | None = None, sequence_length: int = 64,
                 batch_size: int = 32, max_epochs: int = 50, learning_rate: float = 1e-3,
                 learning_rate_final: float | None = None, optimizer: str = "adam",
                 weight_decay: float = 0.0, gradient_clip: float | None = 1.0,
                 validation_fraction: float = 0.1, early_stopping: int | None = 10,
                 divergence: str = "raise", checkpoint_path: str | None = None,
                 scale: bool = True, random_state: int | None = None,
                 device: str | None = None, dtype: str = "float32", verbose: bool = False):
        store_hyperparameters(self, locals())

    def _build_core(self, n_inputs: int) -> HiPPORNN:
        return HiPPORNN(n_inputs, self.hidden_size, state_size=self.state_size,
                        measure=self.measure, method=self.method, alpha=self.alpha,
                        timescale=self.timescale, memory_size=self.memory_size,
                        theta=self.theta, generator=self._generator())


class LSSLForecaster(_MemoryForecaster):
    """Forecaster with a linear state-space layer core (:class:`tsrnn.nn.LSSL`), exogenous
    inputs and irregular timestamps (module docstring).

    Regularly sampled windows train in the convolutional mode (FFT over each window);
    windows with irregular gaps, and the closed-loop forecast, run the recurrent mode from
    the state that the previous steps leave; both modes compute the same map. Irregular
    gaps cannot use the convolution (its kernel assumes one Δ_h for all steps): each step
    is discretised with Δ_h · dt_n, at the price of one N x N solve per sample, feature and
    step for a dense A (triangular, O(N²), for LegS and LagT), tens of times the cost of the
    convolution at the default H = N = 64 on a CPU. For irregular series prefer
    ``measure="s4d_real"`` (A stays diagonal: the recurrence is one linear scan) or a small
    ``state_size``.

    Parameters
    ----------
    hidden_size : int
        H, features (one state-space model each).
    state_size : int
        N, states per feature.
    channels : int
        M, output channels per feature.
    measure : {"legs", "legt", "lagt", "s4d_real"}
        HiPPO matrix that initialises A ("s4d_real": diagonal, Vandermonde kernel).
    trainable_A : {"fixed", "shared", "per_feature"}
    method : {"forward_euler", "bilinear", "backward_euler", "gbt", "zoh"}
    alpha : float in [0, 1], optional
        The GBT parameter, for ``method="gbt"`` only.
    dt_min, dt_max : float
        Range of the initial steps Δ_h per unit of time (log-uniform); ``learn_dt`` trains
        them.
    residual : bool
        Predict increments y_{t+1} - y_t.
    time_scale : float, optional
        The time unit of the gaps between ``times`` (None: their median in the training
        data, so that a regular series has one unit per step).
    sequence_length, batch_size, max_epochs, learning_rate, learning_rate_final, optimizer,
    weight_decay, gradient_clip, validation_fraction, early_stopping, divergence,
    checkpoint_path
        Training, see :class:`tsrnn.forecasting.base.NeuralForecaster`.
    scale : bool
        Standardise each column with the training statistics.
    random_state, device, dtype, verbose
        Reproducibility, where to compute, precision, one progress bar.
    """

    def __init__(self, *, hidden_size: int = 64, state_size: int = 64, channels: int = 1,
                 measure: str = "legs", trainable_A: str = "fixed", method: str = "bilinear",
                 alpha: float | None = None, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 learn_dt: bool = True, residual: bool = True, time_scale: float | None = None,
                 sequence_length: int = 64, batch_size: int = 32, max_epochs: int = 50,
                 learning_rate: float = 1e-3, learning_rate_final: float | None = None,
                 optimizer: str = "adam", weight_decay: float = 0.0,
                 gradient_clip: float | None = 1.0, validation_fraction: float = 0.1,
                 early_stopping: int | None = 10, divergence: str = "raise",
                 checkpoint_path: str | None = None, scale: bool = True,
                 random_state: int | None = None, device: str | None = None,
                 dtype: str = "float32", verbose: bool = False):
        store_hyperparameters(self, locals())

    def _build_core(self, n_inputs: int) -> LSSL:
        return LSSL(n_inputs, self.hidden_size, state_size=self.state_size,
                    channels=self.channels, measure=self.measure,
                    trainable_A=self.trainable_A, method=self.method, alpha=self.alpha,
                    dt_min=self.dt_min, dt_max=self.dt_max, learn_dt=self.learn_dt,
                    generator=self._generator())
