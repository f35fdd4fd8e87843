"""Continuous-time forecasters: CfC and LTC cores, irregular timestamps, exogenous inputs.

Hasani et al. 2022, "Closed-form continuous-time neural networks" (CfC); Hasani et al.
2021, "Liquid time-constant networks" (LTC). The modules are :class:`tsrnn.nn.CfC` and
:class:`tsrnn.nn.LTC`; training is one-step-ahead teacher forcing on windows
(:class:`~tsrnn.forecasting.base.NeuralForecaster`), the readout predicts increments.

Irregular sampling: ``fit(y, X, times=...)`` and ``predict(n_steps, context, X, times=...)``
take the time of every row (arrays, a DatetimeIndex, one per trajectory; or the DatetimeIndex
of ``y``). The gaps, in units of ``time_scale`` (None: the median training gap), become the
cells' dt: the step that reads y_t advances over t_{t+1} - t_t, to the time of the value it
predicts. The rules are shared with the long-memory forecasters and described in
:mod:`tsrnn.forecasting._times`.
"""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_in_range, check_option, check_positive, warn
from ..nn.cfc import CfC
from ..nn.ltc import LTC
from ..nn.wirings import AutoNCP, FullyConnected, LowRankSparse, RandomSparse
from ._times import TimedForecaster, TimedNextStepPredictor

WIRINGS = ("full", "random", "ncp", "low_rank")
# CfCForecaster's backbone defaults, which a wired CfC does not use
_DEFAULT_BACKBONE = dict(backbone_units=64, backbone_layers=1, backbone_dropout=0.0)


class ContinuousPredictor(TimedNextStepPredictor):
    """A continuous-time core with a linear readout predicting y_{t+1} from y_{<=t}.

    ``forward(y (B, L, d), x (B, L, p) or None, state, dt (B, L))`` returns the predictions
    (B, L, d) and the core's final state; step t reads [y_t, x_{t+1}] and advances over
    dt[:, t] = t_{t+1} - t_t. ``rollout`` as in
    :class:`tsrnn.forecasting._times.TimedNextStepPredictor`.
    """

    def __init__(self, core: nn.Module, n_features: int, residual: bool = True):
        super().__init__(core, n_features, core.output_size, residual=residual)


class _ContinuousForecaster(TimedForecaster):
    """Shared by the CfC and LTC forecasters: the module, its wiring, the hidden states
    (timestamps: :class:`tsrnn.forecasting._times.TimedForecaster`)."""

    def _context_length(self) -> int:
        return 4 * int(self.sequence_length)

    # ------------------------------------------------------------------ module
    def _wiring(self):
        kind = self.wiring
        if kind is not None:
            check_option(kind, "wiring", WIRINGS)
        sparsity = check_in_range(self.sparsity, "sparsity", 0.0, 1.0, closed="left")
        # Say so where a setting cannot act, rather than train without it unannounced.
        if kind in (None, "full") and sparsity != 0.5:
            warn(f"sparsity={sparsity} has no effect with wiring={kind!r}: it applies to the "
                 "'random', 'low_rank' and 'ncp' wirings")
        if self.rank is not None and kind != "low_rank":
            warn(f"rank={self.rank} has no effect with wiring={kind!r}: it applies to "
                 "wiring='low_rank'")
        if kind == "ncp" and sparsity < 0.1:
            warn(f"sparsity={sparsity} is raised to 0.1 for wiring='ncp' (AutoNCP needs some "
                 "synapses between its layers)")
        if kind is None:
            return None
        units = int(self.hidden_size)
        seed = self._wiring_seed()
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

    def _wiring_seed(self) -> int:
        """The seed of the wiring's synapses and polarities: ncps's 1111 without a
        random_state, else the random_state (numpy takes seeds below 2**32)."""
        return 1111 if self.random_state is None else int(self.random_state) % 2**32

    def _build_module(self) -> ContinuousPredictor:
        check_positive(self.hidden_size, "hidden_size", integer=True)
        n_inputs = self.n_features_in_ + self.n_exog_
        core = self._core(n_inputs, self._wiring())
        return ContinuousPredictor(core, self.n_features_in_, residual=self.residual)

    def _core(self, n_inputs: int, wiring):
        raise NotImplementedError

    def _core_states(self, inputs: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        states = self.module_.core.trajectory(inputs, None, gaps)
        return states if isinstance(states, torch.Tensor) else states[0]


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

    def __init__(self, *, hidden_size: int = 64, mode: str = "default", backbone_units: int = 64,
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
        backbone = dict(backbone_units=self.backbone_units,
                        backbone_layers=self.backbone_layers,
                        backbone_dropout=self.backbone_dropout)
        if wiring is not None:
            changed = {k: v for k, v in backbone.items() if v != _DEFAULT_BACKBONE[k]}
            if changed:
                warn(f"{', '.join(f'{k}={v}' for k, v in changed.items())} "
                     f"{'has' if len(changed) == 1 else 'have'} no effect with a wiring: a "
                     "wired CfC is a stack of layers without backbone")
        options = {} if wiring is not None else backbone
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

    Notes
    -----
    ncps's initial ranges give the neurons time constants c_m / (g_l + Σ w σ) of about 0.06
    time units for 32 units (0.2 for 8), against a time unit of one median gap: an untrained
    LTC forgets its state within 2-3 steps and hardly reacts to the gaps, and training has to
    slow it down (measured: the state's dependence on its start falls from 0.09 to 5e-4
    within 3 steps at unit gaps; at gaps of 0.1, i.e. ``time_scale`` = 10 median gaps, it is
    still 0.23 after 4 steps, and doubling the gaps moves the state by 0.25 instead of 0.06).
    For irregularly sampled data a ``time_scale`` of several median gaps starts the cell
    with memory and with a use for the times.
""" + _TRAINING_DOC

    def __init__(self, *, hidden_size: int = 32, ode_unfolds: int = 6, solver: str = "fused",
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
        # No wiring is the full one, its polarities drawn from random_state as for "full"
        # (a unit count alone would draw them with ncps's fixed seed whatever random_state).
        units = (FullyConnected(int(self.hidden_size), seed=self._wiring_seed())
                 if wiring is None else wiring)
        return LTC(n_inputs, units, ode_unfolds=self.ode_unfolds, solver=self.solver,
                   mixed_memory=self.mixed_memory)


__all__ = ["CfCForecaster", "ContinuousPredictor", "LTCForecaster"]
