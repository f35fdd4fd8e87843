"""Chimera forecaster: a 2-D selective SSM over (time, variate) with a direct multi-horizon head.

Behrouz, Santacatterina, Zabih, "Chimera: Effectively Modeling Multivariate Time Series with
2-Dimensional State Space Models", NeurIPS 2024 (arXiv 2406.04320); the model is
:class:`tsrnn.nn.Chimera` (equations and the choices made where the paper is open are in
:mod:`tsrnn.nn.chimera`).

How it forecasts. Chimera is causal in time, so at every step t of a window it can emit a
forecast of the next ``horizon`` values, y_{t+1}, ..., y_{t+H} (per variate, a linear readout
of the cell; with ``residual`` as increments over y_t). Training windows hold a context of
``sequence_length`` steps and the H steps after it; the model reads the context, and every
forecast it makes there is scored on its whole horizon (mean squared error), so one pass
trains the H direct forecasters at every context length up to ``sequence_length``, the one
``predict`` uses included. (An earlier version scored forecasts on the targets inside a
window of ``sequence_length`` + 1 steps: the far horizons were then learnt only from short
contexts, and never from the full context they are used with.) With ``instance_norm`` only
the forecast from the last context step is scored (its statistics reach past earlier steps);
with a linear path of p lags, those from step p - 1 on (before it the path reads zeros).
``predict(n_steps)`` reads the last ``sequence_length`` rows of the context, takes the
forecast made at its last step, and, when ``n_steps`` > ``horizon``, appends those H values
to the context and forecasts again (recursive extension in blocks of H, the "closed loop" of
the estimator API at the block level).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._validation import check_bool, check_in_range, check_positive
from ..nn.chimera import Chimera
from .base import NeuralForecaster


class ChimeraHorizonModule(nn.Module):
    """:class:`~tsrnn.nn.Chimera` with an H-step readout per variate and time step.

    Optional parts (both off by default):

    - ``linear_lags`` = p > 0: a linear autoregressive path added to the forecasts,
      ŷ[t + 1 + k] += Σ_{j<p} W[k, j] y[t - j] + c[k], one (H, p) map shared by the variates
      (a causal convolution along time, zeros before the window): the model then starts
      from the per-variate linear forecaster (the RLinear / DLinear baseline of the
      long-horizon protocol) and the SSM learns the residual. Not part of the paper. On the
      synthetic set of ``benchmarks/bench_chimera.py`` (40 epochs, d_model 16) it helped
      without ``mix_variates`` (test MSE 0.526 with p = 48 against 0.613) but not with it
      (150 epochs: 0.295 against 0.286); both measured when the forecasts made before the
      window was full (zero padding) were still scored in training.
    - ``linear_across_variates`` (with ``linear_lags`` = p > 0): the linear path reads every
      variate, ŷ[t + 1 + k, v] += Σ_{j<p} Σ_u W[k, v, u, j] y[t - j, u] + c[k, v], one
      (H·d, d, p) map: the direct multi-output linear (VAR-type) forecaster from the last p
      cross-sections, the ridge baseline of ``benchmarks/bench_chimera.py`` fitted by
      gradient descent; the SSM then learns what that linear forecaster misses. Not part of
      the paper; a comparison with it must say that Chimera has this linear skip path. On
      the synthetic set of ``benchmarks/bench_chimera.py`` (p = 12, ``mix_variates=4``) it
      lowers the test MSE from 0.263 to 0.201-0.219 (seeds, sizes), but the path alone (SSM
      readout frozen) scores 0.195-0.211 (patience 60 / 20) and ridge with tuned lags 0.188,
      the Bayes forecast 0.170: that series is linear-Gaussian, and the SSM adds variance
      there rather than signal.
    - ``instance_norm``: reversible instance normalisation (RevIN, Kim et al., "Reversible
      Instance Normalization for Accurate Time-Series Forecasting against Distribution
      Shift", ICLR 2022): each window and variate is standardised by its own mean and
      standard deviation over the input steps, the model works in those units, and the
      forecasts are mapped back (x - μ) / σ -> ŷ σ + μ. The statistics use the whole input
      window, so only the forecast made at its last step is free of look-ahead; the
      forecaster then trains on that step alone.

    Shapes: y (B, L, d) -> forecasts (B, L, H, d), where [:, t, k] forecasts y_{t+1+k}, and
    the Chimera state list.
    """

    def __init__(self, n_features: int, horizon: int, residual: bool = True,
                 linear_lags: int = 0, instance_norm: bool = False,
                 linear_across_variates: bool = False, **chimera_options):
        super().__init__()
        self.horizon, self.residual = horizon, check_bool(residual, "residual")
        self.linear_lags = int(linear_lags)
        self.instance_norm = check_bool(instance_norm, "instance_norm")
        self.linear_across_variates = check_bool(linear_across_variates, "linear_across_variates")
        self.core = Chimera(n_features, output_size=horizon, **chimera_options)
        # A zero readout starts from the persistence forecast (with ``residual``) or from
        # the mean (without): a sensible first guess instead of O(1) random outputs.
        nn.init.zeros_(self.core.readout.weight)
        nn.init.zeros_(self.core.readout.bias)
        if self.linear_lags:
            # Per variate: one channel in, H out, shared by the variates; across variates:
            # d channels in, H * d out (output channel k * d + v forecasts variate v at k).
            channels = n_features if self.linear_across_variates else 1
            self.linear = nn.Conv1d(channels, horizon * channels, self.linear_lags)
            nn.init.zeros_(self.linear.weight)  # also starts from persistence / the mean
            nn.init.zeros_(self.linear.bias)

    def forward(self, y: torch.Tensor, h0=None):
        batch, length, d = y.shape
        if self.instance_norm:
            mean = y.mean(dim=1, keepdim=True)
            # The floor keeps a constant window finite (its forecast is then its mean).
            std = torch.sqrt(y.var(dim=1, keepdim=True, unbiased=False) + _REVIN_EPS)
            y = (y - mean) / std
        out, state = self.core(y, h0)
        forecast = out.reshape(batch, length, d, self.horizon).transpose(2, 3)
        if self.linear_lags:
            # Conv1d correlates: weight[..., -1] multiplies y[t], weight[..., 0] y[t-p+1].
            if self.linear_across_variates:
                series = nn.functional.pad(y.transpose(1, 2), (self.linear_lags - 1, 0))
                linear = self.linear(series).reshape(batch, self.horizon, d, length)
                forecast = forecast + linear.permute(0, 3, 1, 2)
            else:
                series = y.transpose(1, 2).reshape(batch * d, 1, length)
                series = nn.functional.pad(series, (self.linear_lags - 1, 0))
                linear = self.linear(series).reshape(batch, d, self.horizon, length)
                forecast = forecast + linear.permute(0, 3, 2, 1)
        if self.residual:
            forecast = forecast + y[:, :, None, :]
        if self.instance_norm:
            forecast = forecast * std[:, :, None] + mean[:, :, None]
        return forecast, state


_REVIN_EPS = 1e-5


def horizon_targets(y: torch.Tensor, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (B, L, H, d) and a validity mask (L, H) for forecasts made at every step of
    y[:, :-1]: target [:, t, k] = y[:, t + 1 + k], valid when t + 1 + k < y.shape[1]."""
    batch, window, d = y.shape
    length = window - 1
    padded = torch.cat([y[:, 1:], y.new_zeros((batch, horizon - 1, d))], dim=1)
    targets = padded.unfold(1, horizon, 1).permute(0, 1, 3, 2)  # (B, L, H, d)
    t = torch.arange(length, device=y.device)[:, None]
    k = torch.arange(horizon, device=y.device)[None, :]
    return targets, (t + 1 + k) < window


class ChimeraForecaster(NeuralForecaster):
    """Chimera (2-D SSM over time and variates) with a direct multi-horizon head.

    Parameters
    ----------
    horizon : int
        H, the steps forecast directly from one context (beyond it: recursive blocks).
    d_model, d_state, n_layers : int
        Channels per cell, states per channel, stacked layers (see :class:`tsrnn.nn.Chimera`).
    heads : tuple of {"trend", "seasonal"}
        The discretisations used (both by default, as in the paper).
    season : int, optional
        Lag of the seasonal head's time recurrence (e.g. 12 for monthly data); None: 1.
    bidirectional : bool
        Forward and backward scans along the variates.
    dropout : float
        Dropout on the residual branches.
    residual : bool
        Forecast increments over the last observed value.
    linear_lags : int
        p > 0 adds a linear autoregressive path over the last p values of each variate
        (shared by the variates) to the forecasts; 0: none. See :class:`ChimeraHorizonModule`.
    linear_across_variates : bool
        The linear path reads the last ``linear_lags`` values of every variate (one map per
        target variate and horizon step: a linear skip path that is not in the paper).
    instance_norm : bool
        Reversible instance normalisation (RevIN) of each context window and variate.
    mix_variates : int
        K > 0: embed the cross-sections of the last K steps, x[:, t-K+1..t], into every cell
        (t, v), besides its own value (see :class:`tsrnn.nn.Chimera`; not part of the
        paper). 0: off.
    scan_method : {"sweep", "wavefront", "sequential"}
        Evaluation of the 2-D scans (all exact; "sweep" is the fast one for few variates).
    sequence_length : int
        Context length: the rows ``predict`` reads (> ``horizon``); training windows hold
        ``sequence_length + horizon`` rows (a series needs at least that many).
    batch_size, max_epochs, learning_rate, learning_rate_final, optimizer, weight_decay,
    gradient_clip, validation_fraction, early_stopping, divergence, checkpoint_path
        Training, see :class:`tsrnn.forecasting.base.NeuralForecaster`.
    scale : bool
        Standardise each column with the training statistics.
    random_state, device, dtype, verbose
        Reproducibility, where to compute, precision, one progress bar.

    Exogenous inputs are not supported (a direct H-step head would need them over the whole
    horizon); ``fit`` with ``X`` raises.

    Examples
    --------
    >>> import numpy as np
    >>> from tsrnn.forecasting import ChimeraForecaster
    >>> t = np.arange(600)
    >>> y = np.stack([np.sin(2 * np.pi * t / 24), np.cos(2 * np.pi * t / 24)], axis=1)
    >>> model = ChimeraForecaster(horizon=12, sequence_length=48, max_epochs=2,
    ...                           random_state=0).fit(y)
    >>> model.predict(30).shape
    (30, 2)
    """

    def __init__(self, *, horizon: int = 24, d_model: int = 16, d_state: int = 8,
                 n_layers: int = 2, heads: tuple[str, ...] = ("trend", "seasonal"),
                 season: int | None = None, bidirectional: bool = True, dropout: float = 0.0,
                 residual: bool = True, linear_lags: int = 0, instance_norm: bool = False,
                 linear_across_variates: bool = False, mix_variates: int = 0,
                 scan_method: str = "sweep", sequence_length: int = 96,
                 batch_size: int = 32, max_epochs: int = 50, learning_rate: float = 2e-3,
                 learning_rate_final: float | None = None, optimizer: str = "adam",
                 weight_decay: float = 0.0, gradient_clip: float | None = 1.0,
                 validation_fraction: float = 0.1, early_stopping: int | None = 10,
                 divergence: str = "raise", checkpoint_path: str | None = None,
                 scale: bool = True, random_state: int | None = None, device: str | None = None,
                 dtype: str = "float32", verbose: bool = False):
        self.horizon = horizon
        self.d_model = d_model
        self.d_state = d_state
        self.n_layers = n_layers
        self.heads = heads
        self.season = season
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.residual = residual
        self.linear_lags = linear_lags
        self.instance_norm = instance_norm
        self.linear_across_variates = linear_across_variates
        self.mix_variates = mix_variates
        self.scan_method = scan_method
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

    def _check_hyperparameters(self) -> None:
        super()._check_hyperparameters()
        horizon = check_positive(self.horizon, "horizon", integer=True)
        if horizon >= int(self.sequence_length):
            raise ValueError(f"horizon ({horizon}) must be smaller than sequence_length "
                             f"({self.sequence_length}), the context predict reads")
        check_in_range(self.dropout, "dropout", 0.0, 1.0, closed="left")
        if int(self.linear_lags) != self.linear_lags or self.linear_lags < 0:
            raise ValueError(f"linear_lags must be a non-negative integer, got "
                             f"{self.linear_lags!r}")
        for name in ("residual", "instance_norm", "linear_across_variates", "bidirectional"):
            check_bool(getattr(self, name), name)
        if self.linear_across_variates and not self.linear_lags:
            raise ValueError("linear_across_variates needs linear_lags > 0 (the lags its linear "
                             "path reads)")

    def _build_module(self) -> ChimeraHorizonModule:
        return ChimeraHorizonModule(
            self.n_features_in_, check_positive(self.horizon, "horizon", integer=True),
            residual=bool(self.residual), linear_lags=int(self.linear_lags),
            instance_norm=bool(self.instance_norm),
            linear_across_variates=bool(self.linear_across_variates), d_model=self.d_model,
            d_state=self.d_state,
            n_layers=self.n_layers, heads=self.heads, season=self.season,
            bidirectional=bool(self.bidirectional), dropout=self.dropout,
            scan_method=self.scan_method, mix_variates=self.mix_variates,
            generator=self._generator())

    def _fit(self, y_list, x_list) -> None:
        if x_list is not None:
            raise ValueError("ChimeraForecaster does not take exogenous inputs X: its direct "
                             "multi-horizon head would need them over the whole horizon")
        super()._fit(y_list, x_list)

    def _window_length(self) -> int:
        # A context of sequence_length steps and the H steps after it, so that every
        # forecast made inside the context is scored on its whole horizon.
        return int(self.sequence_length) + int(self.horizon)

    def _training_loss(self, module, y, x):
        # y: (B, sequence_length + H, d). The model reads the context y[:, :L]; the forecast
        # made at step t is scored on y[:, t+1 : t+1+H], inside the window for every t < L.
        # All L steps teach (shorter contexts are more training signal), except with
        # instance_norm, whose statistics over the context reach past t < L - 1, and the
        # first p - 1 with a linear path of p lags.
        horizon = int(self.horizon)
        context = y.shape[1] - horizon
        forecast, _ = module(y[:, :context])
        targets = y[:, 1:].unfold(1, horizon, 1).permute(0, 1, 3, 2)  # (B, L, H, d)
        if self.instance_norm:
            first = context - 1
        else:
            # The linear path reads zeros before the window: those early forecasts would pull
            # its weights away from the full-window ones that predict uses.
            first = min(int(self.linear_lags), context) - 1 if self.linear_lags else 0
        return torch.mean((forecast[:, first:] - targets[:, first:]) ** 2)

    def _context_length(self) -> int:
        return int(self.sequence_length)

    def as_discrete_map(self, dt: float | None = None, **options):
        """Not available: Chimera forecasts the next ``horizon`` steps directly from a window
        of ``sequence_length`` rows and carries no state from step to step; the map it
        defines acts on whole windows, not on states of the system."""
        raise TypeError(
            "ChimeraForecaster forecasts from a window of sequence_length rows and carries no "
            "state between steps, so it has no state-space map to take a Lyapunov spectrum or "
            "fixed points of; analyse a state-space model (ESN, the tsrnn.dsr models, or the "
            "GRU, LSTM, CfC, LTC, LEM, HiPPO and LSSL forecasters)"
        )

    def _predict(self, n_steps, context_y, context_x, future_x):
        module = self.module_.eval()
        length, horizon = int(self.sequence_length), int(self.horizon)
        history = np.asarray(context_y, dtype=np.float64)[-length:]
        blocks, produced = [], 0
        while produced < n_steps:
            forecast, _ = module(self._tensor(history)[None])
            block = forecast[0, -1].double().cpu().numpy()  # (H, d)
            blocks.append(block)
            produced += horizon
            if not np.isfinite(block).all() and produced < n_steps:
                # The forecast left the finite range (predict warns at which step): nothing
                # after it is defined, and the model refuses non-finite inputs.
                blocks.append(np.full((n_steps - produced, block.shape[1]), np.nan))
                break
            history = np.concatenate([history, block])[-length:]
        return np.concatenate(blocks)[:n_steps]
