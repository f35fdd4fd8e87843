"""Forecasters built on long-memory recurrent cores: LEM, the HiPPO-RNN and the LSSL.

Rusch et al. (2022), "Long expressive memory for sequence modeling" (:class:`tsrnn.nn.LEM`);
Gu et al. (2020), "HiPPO: Recurrent memory with optimal polynomial projections"
(:class:`tsrnn.nn.HiPPORNN`); Gu et al. (2021), "Combining recurrent, convolutional, and
continuous-time models with linear state-space layers" (:class:`tsrnn.nn.LSSL`).

Each wraps its core in :class:`tsrnn.nn.NextStepPredictor` (the core reads [y_t, x_{t+1}],
a linear readout gives y_{t+1}) and trains by one-step teacher forcing with the loop of
:class:`tsrnn.forecasting.base.NeuralForecaster`, exactly as the GRU/LSTM baselines.
"""

from __future__ import annotations

from torch import nn

from .._validation import check_positive
from ..nn.hippo import HiPPORNN
from ..nn.lem import LEM
from ..nn.lssl import LSSL
from ..nn.readout import NextStepPredictor
from .base import NeuralForecaster, store_hyperparameters


class _MemoryForecaster(NeuralForecaster):
    """Shared by the three forecasters: the readout, the closed loop, the context."""

    def _build_core(self, n_inputs: int) -> nn.Module:
        raise NotImplementedError

    def _build_module(self) -> NextStepPredictor:
        hidden = check_positive(self.hidden_size, "hidden_size", integer=True)
        core = self._build_core(self.n_features_in_ + self.n_exog_)
        return NextStepPredictor(core, self.n_features_in_, hidden, residual=self.residual)

    def _context_length(self) -> int:
        # Training windows start from a zero state and last sequence_length steps; the closed
        # loop starts from a context of the same length by default.
        return int(self.sequence_length)

    def _predict(self, n_steps, context_y, context_x, future_x):
        module = self.module_.eval()
        y = self._tensor(context_y)[None]
        cx = None if context_x is None else self._tensor(context_x)[None]
        fx = None if future_x is None else self._tensor(future_x)[None]
        return module.rollout(y, cx, fx, n_steps)[0].double().cpu().numpy()


class LEMForecaster(_MemoryForecaster):
    """Forecaster with a Long Expressive Memory core (:class:`tsrnn.nn.LEM`).

    Parameters
    ----------
    hidden_size : int
        H, the size of each of LEM's two states.
    dt : float
        Δt of the LEM discretisation (the paper's tasks use 1 or smaller).
    residual : bool
        Predict increments y_{t+1} - y_t (suits smooth dynamics).
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
    """

    def __init__(self, hidden_size: int = 64, dt: float = 1.0, residual: bool = True,
                 sequence_length: int = 64, batch_size: int = 32, max_epochs: int = 50,
                 learning_rate: float = 1e-3, learning_rate_final: float | None = None,
                 optimizer: str = "adam", weight_decay: float = 0.0,
                 gradient_clip: float | None = 1.0, validation_fraction: float = 0.1,
                 early_stopping: int | None = 10, divergence: str = "raise",
                 checkpoint_path: str | None = None, scale: bool = True,
                 random_state: int | None = None, device: str | None = None,
                 dtype: str = "float32", verbose: bool = False):
        store_hyperparameters(self, locals())

    def _build_core(self, n_inputs: int) -> LEM:
        return LEM(n_inputs, self.hidden_size, dt=self.dt, generator=self._generator())

    def _context_length(self) -> int:
        return 4 * int(self.sequence_length)  # LEM's state forgets, as the GRU's


class HiPPOForecaster(_MemoryForecaster):
    """Forecaster with a HiPPO-RNN core (:class:`tsrnn.nn.HiPPORNN`).

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
        Discretisation (``alpha`` for "gbt").
    timescale : float
        Time units per sample (LegT/LagT; LegS is scale invariant).
    memory_size : int
        Scalar memory inputs, each with N coefficients.
    theta : float
        LegT's window in time units.
    residual : bool
        Predict increments y_{t+1} - y_t.
    sequence_length, batch_size, max_epochs, learning_rate, learning_rate_final, optimizer,
    weight_decay, gradient_clip, validation_fraction, early_stopping, divergence,
    checkpoint_path
        Training, see :class:`tsrnn.forecasting.base.NeuralForecaster`.
    scale : bool
        Standardise each column with the training statistics.
    random_state, device, dtype, verbose
        Reproducibility, where to compute, precision, one progress bar.
    """

    def __init__(self, hidden_size: int = 64, state_size: int = 32, measure: str = "legs",
                 method: str = "bilinear", alpha: float | None = None, timescale: float = 1.0,
                 memory_size: int = 1, theta: float = 1.0, residual: bool = True,
                 sequence_length: int = 64, batch_size: int = 32, max_epochs: int = 50,
                 learning_rate: float = 1e-3, learning_rate_final: float | None = None,
                 optimizer: str = "adam", weight_decay: float = 0.0,
                 gradient_clip: float | None = 1.0, validation_fraction: float = 0.1,
                 early_stopping: int | None = 10, divergence: str = "raise",
                 checkpoint_path: str | None = None, scale: bool = True,
                 random_state: int | None = None, device: str | None = None,
                 dtype: str = "float32", verbose: bool = False):
        store_hyperparameters(self, locals())

    def _build_core(self, n_inputs: int) -> HiPPORNN:
        return HiPPORNN(n_inputs, self.hidden_size, state_size=self.state_size,
                        measure=self.measure, method=self.method, alpha=self.alpha,
                        timescale=self.timescale, memory_size=self.memory_size,
                        theta=self.theta, generator=self._generator())


class LSSLForecaster(_MemoryForecaster):
    """Forecaster with a linear state-space layer core (:class:`tsrnn.nn.LSSL`).

    Trained in the convolutional mode (FFT over each window), forecasting in the recurrent
    mode from the state that the convolution leaves; both compute the same map.

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
    dt_min, dt_max : float
        Range of the initial steps Δ (log-uniform); ``learn_dt`` trains them.
    residual : bool
        Predict increments y_{t+1} - y_t.
    sequence_length, batch_size, max_epochs, learning_rate, learning_rate_final, optimizer,
    weight_decay, gradient_clip, validation_fraction, early_stopping, divergence,
    checkpoint_path
        Training, see :class:`tsrnn.forecasting.base.NeuralForecaster`.
    scale : bool
        Standardise each column with the training statistics.
    random_state, device, dtype, verbose
        Reproducibility, where to compute, precision, one progress bar.
    """

    def __init__(self, hidden_size: int = 64, state_size: int = 64, channels: int = 1,
                 measure: str = "legs", trainable_A: str = "fixed", method: str = "bilinear",
                 alpha: float | None = None, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 learn_dt: bool = True, residual: bool = True, sequence_length: int = 64,
                 batch_size: int = 32, max_epochs: int = 50, learning_rate: float = 1e-3,
                 learning_rate_final: float | None = None, optimizer: str = "adam",
                 weight_decay: float = 0.0, gradient_clip: float | None = 1.0,
                 validation_fraction: float = 0.1, early_stopping: int | None = 10,
                 divergence: str = "raise", checkpoint_path: str | None = None,
                 scale: bool = True, random_state: int | None = None,
                 device: str | None = None, dtype: str = "float32", verbose: bool = False):
        store_hyperparameters(self, locals())

    def _build_core(self, n_inputs: int) -> LSSL:
        return LSSL(n_inputs, self.hidden_size, state_size=self.state_size,
                    channels=self.channels, measure=self.measure,
                    trainable_A=self.trainable_A, method=self.method, alpha=self.alpha,
                    dt_min=self.dt_min, dt_max=self.dt_max, learn_dt=self.learn_dt,
                    generator=self._generator())
