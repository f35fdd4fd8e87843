"""Baseline recurrent forecasters: GRU and LSTM trained by one-step teacher forcing.

Cho et al. (2014), "Learning phrase representations using RNN encoder-decoder for
statistical machine translation"; Hochreiter & Schmidhuber (1997), "Long short-term memory".
These are the baselines that every other model of tsrnn is compared with.
"""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_in_range, check_positive, warn
from ..nn.readout import NextStepPredictor
from .base import NeuralForecaster

_CORES = {"gru": nn.GRU, "lstm": nn.LSTM}


class _RecurrentForecaster(NeuralForecaster):
    """Shared by the GRU and LSTM forecasters; ``_cell`` names the torch core."""

    _cell = "gru"

    def __init__(self, *, hidden_size: int = 64, num_layers: int = 1, dropout: float = 0.0,
                 residual: bool = True, sequence_length: int = 64, batch_size: int = 32,
                 max_epochs: int = 50, learning_rate: float = 1e-3,
                 learning_rate_final: float | None = None, optimizer: str = "adam",
                 weight_decay: float = 0.0, gradient_clip: float | None = 1.0,
                 validation_fraction: float = 0.1, early_stopping: int | None = 10,
                 divergence: str = "raise", checkpoint_path: str | None = None,
                 scale: bool = True, random_state: int | None = None, device: str | None = None,
                 dtype: str = "float32", verbose: bool = False):
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
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

    def _build_module(self) -> NextStepPredictor:
        hidden = check_positive(self.hidden_size, "hidden_size", integer=True)
        layers = check_positive(self.num_layers, "num_layers", integer=True)
        check_in_range(self.dropout, "dropout", 0.0, 1.0, closed="left")
        if self.dropout > 0 and layers == 1:
            # torch's dropout acts between stacked layers only; say so rather than train
            # without it unannounced.
            warn(f"dropout={self.dropout} has no effect with num_layers=1: it acts between "
                 "stacked recurrent layers; set num_layers >= 2 or dropout=0")
        core = _CORES[self._cell](self.n_features_in_ + self.n_exog_, hidden, layers,
                                  batch_first=True, dropout=self.dropout if layers > 1 else 0.0)
        return NextStepPredictor(core, self.n_features_in_, hidden, residual=self.residual)

    def _context_length(self) -> int:
        # The recurrent state forgets beyond a few windows; a bounded context keeps predict
        # cheap after training on very long series.
        return 4 * int(self.sequence_length)

    def _predict(self, n_steps, context_y, context_x, future_x):
        module = self.module_.eval()
        y = self._tensor(context_y)[None]
        cx = None if context_x is None else self._tensor(context_x)[None]
        fx = None if future_x is None else self._tensor(future_x)[None]
        return module.rollout(y, cx, fx, n_steps)[0].double().cpu().numpy()

    def as_discrete_map(self, dt: float | None = None, **options):
        """The fitted model in closed loop as a map on [y_t (scaled), hidden state(s)].

        For Lyapunov spectra of the learned dynamics; ``dt`` is the sampling step of the
        training data (exponents per time unit), None for per-step exponents.
        """
        from .._protocol import DiscreteMap, jittered_copies

        # A float64 copy: exponents come out more accurately, and torch's oneDNN float32 LSTM
        # kernel on the CPU has no forward-mode derivative for the tangents.
        module = self._closed_loop_module(options)
        d = self.n_features_in_
        layers, hidden = int(self.num_layers), int(self.hidden_size)
        lstm = self._cell == "lstm"

        def split(z):
            y = z[:, :d].unsqueeze(1)
            h = z[:, d: d + layers * hidden].reshape(-1, layers, hidden).transpose(0, 1)
            if not lstm:
                return y, h.contiguous()
            c = z[:, d + layers * hidden:].reshape(-1, layers, hidden).transpose(0, 1)
            return y, (h.contiguous(), c.contiguous())

        def step(z):
            y, state = split(z.to(torch.float64))
            prediction, state = module(y, None, state)
            parts = [prediction[:, 0]] + [s.transpose(0, 1).reshape(z.shape[0], -1)
                                          for s in (state if lstm else (state,))]
            return torch.cat(parts, dim=1)

        def initial_states(n, seed=None):
            y = torch.as_tensor(self.context_y_, dtype=torch.float64, device=self.device_)[None]
            with torch.no_grad():
                prediction, state = module(y, None, None)
            parts = [prediction[:, -1]] + [s.transpose(0, 1).reshape(1, -1)
                                           for s in (state if lstm else (state,))]
            # The state reached at the end of the training data, perturbed slightly so that
            # the trajectories separate on the learned attractor during the transient.
            return jittered_copies(torch.cat(parts, dim=1), n, seed, 1e-3)

        dim = d + layers * hidden * (2 if lstm else 1)
        return DiscreteMap(step=step, dim=dim, time_step=dt, initial_states=initial_states,
                           dtype=torch.float64, device=self.device_, name=type(self).__name__,
                           default_exponents=d)


class GRUForecaster(_RecurrentForecaster):
    """Forecaster with a GRU core and a linear readout, trained by one-step teacher forcing.

    Parameters
    ----------
    hidden_size, num_layers, dropout
        Size of the GRU (dropout between layers only, as in torch).
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
    >>> from tsrnn.forecasting import GRUForecaster
    >>> y = Lorenz63().simulate(2000, transient=500)
    >>> model = GRUForecaster(max_epochs=2, random_state=0).fit(y)
    >>> model.predict(10).shape
    (10, 3)
    """

    _cell = "gru"


class LSTMForecaster(_RecurrentForecaster):
    """Forecaster with an LSTM core; parameters as :class:`GRUForecaster`."""

    _cell = "lstm"
