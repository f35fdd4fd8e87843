"""WARPForecaster: the weight-space linear RNN as a forecasting estimator.

Nzoyem et al. 2025, "Weight-space linear recurrent neural networks" (arXiv 2506.01153). The
model, its equations and its choices are documented in :mod:`tsrnn.nn.warp`:

    θ_t = A θ_{t-1} + B (u_t - u_{t-1}),   u_t = [x_t, τ_t],   ŷ_{t+1} = root(τ_{t+1}; θ_t)

Training reads windows of ``sequence_length + 1`` rows: the first ``sequence_length`` are the
inputs, each output predicts the next row, τ = t / sequence_length (so τ runs over [0, 1]
within a window, the paper's t/(T-1)). ``training="scan"`` is the paper's non-autoregressive
training (all θ_t by a parallel scan, decoded at once); ``training="autoregressive"`` steps
through time and, with ``forcing_prob < 1``, feeds the model's own predictions back at random
steps. ``loss="nll"`` adds a softplus standard deviation and trains a Gaussian likelihood.
``predict`` reads the last ``sequence_length`` rows of a context, τ starting at 0 there as in
training.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._validation import check_bool, check_in_range, check_option, check_positive, warn
from ..nn.warp import INITS, TRANSITIONS, WARP, MassSpringDamperRoot
from .base import NeuralForecaster

ROOTS = ("mlp", "mass_spring_damper")
TRAININGS = ("scan", "autoregressive")
LOSSES = ("mse", "nll")
_MSD_OPTIONS = ("time_unit", "omega", "zeta", "velocity")  # MassSpringDamperRoot's keywords


class WARPForecaster(NeuralForecaster):
    """Forecaster with a WARP core (weights of a root network as the recurrent state).

    Parameters
    ----------
    root : "mlp", "mass_spring_damper" or a root object
        The root network: an MLP of τ (``root_width``, ``root_depth``, ``root_activation``),
        the exact mass–spring–damper solution (physics-informed WARP; the series must be
        (position, velocity), trained with ``scale=False``), or any object accepted by
        :class:`tsrnn.nn.WARP` (fit and predict work; ``save`` needs a named root).
    root_options : dict or None
        Keywords of the named root, e.g. ``{"time_unit": ..., "omega": ..., "zeta": ...}``
        for :class:`tsrnn.nn.warp.MassSpringDamperRoot`. Its ``time_unit`` (the physical time
        of one unit of τ, i.e. of ``sequence_length`` steps) defaults to ``sequence_length``
        times the sampling step: for (position, velocity) data the step is read off the
        data by Simpson's rule, x_{t+2} - x_t = dt (v_t + 4 v_{t+1} + v_{t+2}) / 3
        (``sampling_step_``; a velocity
        column in other units than position per time unit would otherwise be unfittable),
        and for a position alone it is 1 (time counted in steps).
    transition : {"dense", "diagonal", "lowrank"}, rank : int
        Form of the transition A (D_θ², D_θ or D_θ(2r+1) parameters).
    init : {"hypernetwork", "learned"}, init_window : int, hyper_width : int, init_normalize : bool
        θ_0 from a hypernetwork on the first ``init_window`` rows of a window, or learned;
        ``init_normalize`` feeds its MLP the window divided by its RMS (amplitude-blind, for
        reading frequencies and damping rates; a linear path keeps the amplitude).
    training : {"scan", "autoregressive"}
        Non-autoregressive (parallel) or step-by-step training.
    forcing_prob : float in (0, 1]
        With autoregressive training, the probability that a step reads the data rather than
        the model's previous prediction (1: pure teacher forcing, then both trainings agree).
    loss : {"mse", "nll"}
        Squared error of the mean, or Gaussian negative log-likelihood with a learned std.
    sequence_length, batch_size, max_epochs, learning_rate, learning_rate_final, optimizer,
    weight_decay, gradient_clip, validation_fraction, early_stopping, divergence,
    checkpoint_path
        Training, see :class:`tsrnn.forecasting.base.NeuralForecaster`.
    scale, random_state, device, dtype, verbose
        As for every estimator.

    Attributes
    ----------
    module_ : tsrnn.nn.WARP
    sampling_step_ : float or None
        The sampling step read off (position, velocity) data for the mass-spring-damper
        root's default ``time_unit`` (None where not read).

    Examples
    --------
    >>> import numpy as np
    >>> from tsrnn.forecasting import WARPForecaster
    >>> t = np.arange(400) * 0.1
    >>> y = np.c_[np.sin(t), np.cos(t)]
    >>> model = WARPForecaster(sequence_length=32, max_epochs=2, random_state=0).fit(y)
    >>> model.predict(10).shape
    (10, 2)
    """

    def __init__(self, *, root="mlp", root_options: dict | None = None, root_width: int = 16,
                 root_depth: int = 2, root_activation: str = "relu",
                 transition: str = "dense", rank: int = 4, init: str = "hypernetwork",
                 init_window: int = 1, hyper_width: int = 32, init_normalize: bool = False,
                 training: str = "scan",
                 forcing_prob: float = 1.0, loss: str = "mse", sequence_length: int = 64,
                 batch_size: int = 32, max_epochs: int = 50, learning_rate: float = 1e-3,
                 learning_rate_final: float | None = None, optimizer: str = "adam",
                 weight_decay: float = 0.0, gradient_clip: float | None = 1.0,
                 validation_fraction: float = 0.1, early_stopping: int | None = 10,
                 divergence: str = "raise", checkpoint_path: str | None = None,
                 scale: bool = True, random_state: int | None = None,
                 device: str | None = None, dtype: str = "float32", verbose: bool = False):
        self.root = root
        self.root_options = root_options
        self.root_width = root_width
        self.root_depth = root_depth
        self.root_activation = root_activation
        self.transition = transition
        self.rank = rank
        self.init = init
        self.init_window = init_window
        self.hyper_width = hyper_width
        self.init_normalize = init_normalize
        self.training = training
        self.forcing_prob = forcing_prob
        self.loss = loss
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

    # ------------------------------------------------------------------ model
    def _check_hyperparameters(self) -> None:
        super()._check_hyperparameters()
        check_option(self.transition, "transition", TRANSITIONS)
        check_option(self.init, "init", INITS)
        check_option(self.training, "training", TRAININGS)
        check_option(self.loss, "loss", LOSSES)
        check_in_range(self.forcing_prob, "forcing_prob", 0.0, 1.0, closed="right")
        check_bool(self.init_normalize, "init_normalize")
        window = check_positive(self.init_window, "init_window", integer=True)
        if window > int(self.sequence_length):
            raise ValueError(f"init_window={window} exceeds sequence_length="
                             f"{self.sequence_length}: the hypernetwork reads the first "
                             "init_window rows of each training window")
        if isinstance(self.root, str):
            check_option(self.root, "root", ROOTS)
            if self.root == "mass_spring_damper" and self.scale:
                raise ValueError(
                    "root='mass_spring_damper' models (position, velocity) in physical units;"
                    " standardising the columns separately breaks x' = v: set scale=False"
                )
        if self.root_options is not None and not isinstance(self.root_options, dict):
            raise TypeError(f"root_options must be a dict or None, got "
                            f"{type(self.root_options).__name__}")
        unknown = sorted(set(self.root_options or {}) - set(_MSD_OPTIONS))
        if self.root == "mass_spring_damper" and unknown:
            raise ValueError(f"bad root_options for root='mass_spring_damper': {unknown}; "
                             f"known: {', '.join(_MSD_OPTIONS)}")

    def _make_root(self):
        options = dict(self.root_options or {})
        if not isinstance(self.root, str):
            if options:
                raise ValueError("root_options apply to a named root; configure a root "
                                 "object directly")
            return self.root
        if self.root == "mlp":
            if options:
                raise ValueError(f"root='mlp' takes no root_options (got {sorted(options)}); "
                                 "use root_width, root_depth and root_activation")
            return "mlp"
        if self.n_features_in_ not in (1, 2):
            raise ValueError("root='mass_spring_damper' needs a series of 2 columns "
                             f"(position, velocity) or 1 (position), got {self.n_features_in_}")
        step = getattr(self, "sampling_step_", None)  # None: position only, or saved before
        options.setdefault("time_unit", float(self.sequence_length) * (step or 1.0))
        options.setdefault("velocity", self.n_features_in_ == 2)
        try:
            return MassSpringDamperRoot(**options)
        except TypeError as error:
            raise ValueError(f"bad root_options for root='mass_spring_damper': {error}; "
                             "known: time_unit, omega, zeta, velocity") from error

    def _build_module(self) -> WARP:
        self._check_hyperparameters()
        return WARP(
            input_size=self.n_features_in_ + self.n_exog_, output_size=self.n_features_in_,
            root=self._make_root(), root_width=self.root_width, root_depth=self.root_depth,
            root_activation=self.root_activation, transition=self.transition, rank=self.rank,
            init=self.init, init_window=self.init_window, hyper_width=self.hyper_width,
            init_normalize=bool(self.init_normalize),
            time_scale=float(self.sequence_length), predict_std=self.loss == "nll",
            mode="scan", random_state=0 if self.random_state is None else int(self.random_state),
        )

    # ------------------------------------------------------------------ training
    def _training_loss(self, module: WARP, y: torch.Tensor, x: torch.Tensor | None
                       ) -> torch.Tensor:
        inputs = y[:, :-1] if x is None else torch.cat([y[:, :-1], x[:, 1:]], dim=-1)
        target = y[:, 1:]
        if self.training == "scan":
            outputs, _ = module.scan(inputs)
        else:
            feedback = None
            if module.training and self.forcing_prob < 1.0:
                generator = getattr(self, "_feedback_generator", None)
                if generator is None:
                    generator = self._feedback_generator = self._generator(offset=2)
                draw = torch.rand(inputs.shape[:2], generator=generator)
                feedback = (draw >= self.forcing_prob).to(inputs.device)
            outputs, _ = module.sequential(inputs, feedback=feedback)
        d = self.n_features_in_
        mean = outputs[..., :d]
        if self.loss == "mse":
            return torch.nn.functional.mse_loss(mean, target)
        std = outputs[..., d:]
        return (torch.log(std) + 0.5 * ((target - mean) / std) ** 2).mean() \
            + 0.5 * math.log(2 * math.pi)

    def _sampling_step(self, y_list) -> float | None:
        """The sampling step of (position, velocity) series for the mass-spring-damper root,
        by least squares on x_{t+2} - x_t = dt (v_t + 4 v_{t+1} + v_{t+2}) / 3 over all the
        series; None where it is not needed (another root, a position alone, a given
        time_unit)."""
        if (not isinstance(self.root, str) or self.root != "mass_spring_damper"
                or self.n_features_in_ != 2 or "time_unit" in (self.root_options or {})):
            return None
        # Simpson's rule over two steps: its error, (omega dt)^4 / 180 relative, is 1e-5 at
        # 10 samples a period, where the trapezoid's (omega dt)^2 / 12 put the phase of a
        # 60-step forecast 4% of an amplitude off.
        rise = np.concatenate([y[2:, 0] - y[:-2, 0] for y in y_list])
        mean_velocity = np.concatenate([(y[:-2, 1] + 4.0 * y[1:-1, 1] + y[2:, 1]) / 3.0
                                        for y in y_list])
        power = float(mean_velocity @ mean_velocity)
        step = float(rise @ mean_velocity) / power if power > 0 else math.nan
        misfit = (float(np.linalg.norm(rise - step * mean_velocity))
                  / max(float(np.linalg.norm(rise)), np.finfo(float).tiny))
        if not step > 0 or misfit > 0.3:
            raise ValueError(
                "root='mass_spring_damper' reads the sampling step off the data, where the "
                "second column is the first's time derivative (x_{t+2} - x_t = dt (v_t + "
                f"4 v_{{t+1}} + v_{{t+2}}) / 3), but these columns do not fit that (step "
                f"{step:.3g}, relative misfit {misfit:.2f}); give the physical time of "
                "sequence_length "
                "steps: root_options={'time_unit': sequence_length * dt}")
        return step

    def _fit(self, y_list, x_list) -> None:
        if not getattr(self, "_continue_training", False):
            self._check_hyperparameters()  # before the data are read as (x, v)
            self.sampling_step_ = self._sampling_step(y_list)
        self._feedback_generator = None
        try:
            super()._fit(y_list, x_list)
        finally:
            del self._feedback_generator

    # ------------------------------------------------------------------ forecasting
    def _context_length(self) -> int:
        # The time coordinate τ = t / sequence_length: a context of one window keeps τ in the
        # range seen in training before the forecast starts.
        return int(self.sequence_length)

    def _predict(self, n_steps, context_y, context_x, future_x):
        if len(context_y) < int(self.init_window):  # the module's message would name "x"
            raise ValueError(f"context has {len(context_y)} rows; the hypernetwork reads the "
                             f"first init_window={self.init_window}: give at least that many")
        module = self.module_.eval()
        # The last window only: τ = t / sequence_length was trained over [0, 1], and a
        # longer context drove it beyond (3 windows: forecasts 10x the data's amplitude).
        window = slice(-int(self.sequence_length), None)
        context_y = context_y[window]
        context_x = None if context_x is None else context_x[window]
        y = self._tensor(context_y)[None]
        if context_x is None:
            return module.rollout(y, n_steps)[0].double().cpu().numpy()
        exogenous = self._tensor(np.concatenate([context_x, future_x]))[None, 1:]
        steps = y.shape[1]
        inputs = torch.cat([y, exogenous[:, :steps]], dim=-1)
        return module.rollout(inputs, n_steps, exogenous[:, steps:])[0].double().cpu().numpy()

    def as_discrete_map(self, dt: float | None = None, **options):
        """Not available: the closed loop is not an autonomous map. Each step reads the time
        coordinate τ = t / sequence_length as an input, so the same state maps to another
        next state at another step (and τ leaves the range [0, 1] the model was trained on).
        """
        raise TypeError(
            "WARPForecaster's closed loop is not an autonomous map (every step reads its time "
            "coordinate tau = t / sequence_length), so it has no Lyapunov spectrum or fixed "
            "points; analyse a state-space model (ESN, the tsrnn.dsr models, or the GRU, LSTM, "
            "CfC, LTC, LEM, HiPPO and LSSL forecasters)"
        )

    def predict_batch(self, n_steps: int, contexts) -> np.ndarray:
        """Closed-loop forecasts after several contexts at once (no exogenous inputs).

        ``contexts``: array (B, T_c, d) in the units of the training data ((B, T_c) for a
        model fitted on a 1-D series). Returns (B, n_steps, d) ((B, n_steps) for a 1-D
        series), the same as ``predict(n_steps, context=contexts[i])`` for each i.
        """
        from .._validation import as_float_array

        self._check_fitted()
        if self.n_exog_:
            raise ValueError("predict_batch does not take exogenous inputs; use predict")
        n_steps = check_positive(n_steps, "n_steps", integer=True)
        one_column = bool(self.output_1d_) and np.ndim(contexts) == 2
        raw = as_float_array(contexts, "contexts", ndim=2 if one_column else 3)
        raw = raw[..., None] if one_column else raw
        if raw.shape[2] != self.n_features_in_ or raw.shape[1] == 0:
            raise ValueError(f"contexts must have shape (B, T_c, {self.n_features_in_}), got "
                             f"{raw.shape}")
        if raw.shape[1] < int(self.init_window):
            raise ValueError(f"contexts have {raw.shape[1]} rows; the hypernetwork reads the "
                             f"first init_window={self.init_window}: give at least that many")
        raw = raw[:, -int(self.sequence_length):]  # the last window, as predict
        scaled = self.y_scaler_.transform(raw.reshape(-1, raw.shape[2])).reshape(raw.shape)
        with torch.no_grad():
            forecast = self.module_.eval().rollout(self._tensor(scaled), n_steps)
        forecast = forecast.double().cpu().numpy()
        if not np.isfinite(forecast).all():
            batch, first = (int(i) for i in np.argwhere(~np.isfinite(forecast))[0][:2])
            warn(f"the closed-loop forecast of {type(self).__name__} after context {batch} "
                 f"left the finite range at step {first}: the learned dynamics diverge from "
                 "this state", RuntimeWarning)
        flat = self.y_scaler_.inverse_transform(forecast.reshape(-1, raw.shape[2]))
        forecast = flat.reshape(forecast.shape)
        return forecast[..., 0] if bool(self.output_1d_) else forecast
