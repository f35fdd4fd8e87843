"""Nonlinear vector autoregression: next-generation reservoir computing (NG-RC).

Gauthier, Bollt, Griffith & Barbosa (2021), "Next generation reservoir computing", Nature
Communications 12, 5564.

    linear part   O_lin,t = [y_t, y_{t-s}, ..., y_{t-(k-1)s}]                 (k d values)
    nonlinear     O_nl,t  = unique monomials of order p of the entries of O_lin,t
    features      phi_t   = [1, O_lin,t, O_nl,t]
    model         y_{t+1} = y_t + W_out phi_t   (``increment=True``), else W_out phi_t

W_out is fitted by ridge regression. For Lorenz-63 at dt = 0.025 the paper uses k = 2, s = 1,
p = 2 (28 features), ridge 2.5e-6 and 400 training points. The feature matrix becomes
ill-conditioned for short lags and high orders (Zhang & Cornelius 2025, arXiv 2505.00846):
``condition_number_`` reports the conditioning of the fitted normal equations and a warning
is given when it threatens the solution.

Differences from the authors' code, which change nothing measurable: the constant is fitted
as an unpenalised intercept (their ridge also shrinks it by 2.5e-6), and the regression runs
on standardised data unless ``scale=False``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from .._protocol import DiscreteMap, jittered_copies
from .._validation import check_bool, check_option, check_positive, warn
from ..forecasting.base import BaseForecaster
from .readout import SOLVERS, RidgeAccumulator

# Most features NVAR builds: the Gram matrix of 20,000 features takes 3.2 GB; a KS-size
# input (64 columns, k = 2, p = 3) would ask for 358,000 and a numpy MemoryError of 955 GiB.
MAX_FEATURES = 20_000
# Feature rows built at a time during fit: at most this many, and this many bytes.
_BLOCK_ROWS = 20_000
_BLOCK_BYTES = 2**26


class NVAR(BaseForecaster):
    """Next-generation reservoir computer (nonlinear vector autoregression).

    Parameters
    ----------
    delays : int
        k, the number of delayed copies in the linear part (k = 1 uses y_t alone).
    stride : int
        s, the spacing of the delays in steps.
    order : int
        p, the order of the monomials of the nonlinear part; 0 or 1 for none (the monomials
        of order 1 are the linear part itself: reservoirpy's ``NVAR(order=1)`` repeats
        them, here they are left out, which changes no prediction beyond the ridge penalty).
        Their number, C(k d + p - 1, p), grows fast: more than :data:`MAX_FEATURES` features
        are refused before any memory is taken (their normal equations alone would take
        F^2 * 8 bytes: 3.2 GB at the limit).
    constant : bool
        Include the constant feature (fitted as an unpenalised intercept).
    increment : bool
        Predict the increment y_{t+1} - y_t (the paper's choice) instead of y_{t+1}.
    ridge : float
        Ridge penalty.
    solver : {"cholesky", "svd", "lstsq"}
    scale : bool
        Standardise each column with the training statistics.
    random_state, device, dtype, verbose
        As for every estimator (NVAR is deterministic; the rest is for the shared base).

    Attributes
    ----------
    n_output_features_ : int
        Length of phi (with the constant).
    readout_weights_ : array (n_output_features_ - constant, d)
    readout_intercept_ : array (d,)
    condition_number_ : float
        Of the regularised normal equations that are solved: centred when the constant is
        fitted (as an intercept), else as they are.
    """

    _default_dtype = torch.float64
    _map_y_last = True  # the closed loop's state is the delays, newest last
    _training_params = BaseForecaster._training_params | {"ridge", "solver"}

    def __init__(self, *, delays: int = 2, stride: int = 1, order: int = 2,
                 constant: bool = True, increment: bool = True, ridge: float = 2.5e-6,
                 solver: str = "cholesky", scale: bool = True,
                 random_state: int | None = None, device: str | None = "cpu",
                 dtype: str = "float64", verbose: bool = False):
        self.delays = delays
        self.stride = stride
        self.order = order
        self.constant = constant
        self.increment = increment
        self.ridge = ridge
        self.solver = solver
        self.scale = scale
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    # ------------------------------------------------------------------ features
    @property
    def _span(self) -> int:
        """Rows of history one feature vector reads: (k - 1) s + 1."""
        return (int(self.delays) - 1) * int(self.stride) + 1

    def _check_hyperparameters(self) -> None:
        check_positive(self.delays, "delays", integer=True)
        check_positive(self.stride, "stride", integer=True)
        check_positive(self.order, "order", integer=True, allow_zero=True)
        check_positive(self.ridge, "ridge", allow_zero=True)
        check_option(self.solver, "solver", SOLVERS)
        check_bool(self.constant, "constant")
        check_bool(self.increment, "increment")

    def _min_length(self) -> int:
        return self._span + 2

    def _min_length_reason(self) -> str:
        return (f" (the delays span {self._span} steps: delays={self.delays}, "
                f"stride={self.stride}; and two more to fit the readout)")

    def _context_length(self) -> int:
        return self._span

    def _monomials(self, n_linear: int) -> list[tuple[int, ...]]:
        if int(self.order) < 2:
            return []
        return list(itertools.combinations_with_replacement(range(n_linear),
                                                            int(self.order)))

    def features(self, window: torch.Tensor) -> torch.Tensor:
        """phi without the constant from windows of history (..., span, d), oldest first."""
        stride, delays = int(self.stride), int(self.delays)
        # Newest first: y_t, y_{t-s}, ...
        picks = [window[..., -1 - j * stride, :] for j in range(delays)]
        linear = torch.cat(picks, dim=-1)
        monomials = self._monomials(linear.shape[-1])
        if not monomials:
            return linear
        index = torch.as_tensor(monomials, device=linear.device)  # (M, p)
        nonlinear = linear[..., index].prod(-1)
        return torch.cat([linear, nonlinear], dim=-1) if int(self.order) >= 1 else nonlinear

    def _windows(self, y: np.ndarray) -> torch.Tensor:
        """All windows of ``span`` rows ending at t = span-1 .. T-2: (T - span, span, d)."""
        span = self._span
        tensor = self._tensor(y)
        return tensor[:-1].unfold(0, span, 1).permute(0, 2, 1)

    # ------------------------------------------------------------------ fit
    def _fit(self, y_list, x_list) -> None:
        self._check_hyperparameters()
        if x_list is not None:
            raise ValueError("NVAR takes no exogenous inputs X (its features are delays of y)")
        d = self.n_features_in_
        n_linear = int(self.delays) * d
        n_phi = n_linear + (math.comb(n_linear + int(self.order) - 1, int(self.order))
                            if int(self.order) >= 2 else 0)
        if n_phi > MAX_FEATURES:
            raise ValueError(
                f"NVAR with delays={self.delays} and order={self.order} on {d} columns has "
                f"{n_phi:,} features, more than {MAX_FEATURES:,}: its normal equations "
                f"alone would take {n_phi ** 2 * 8 / 2 ** 30:,.0f} GiB; lower the order or "
                "the delays, or reduce the dimension first")
        accumulator = RidgeAccumulator(n_phi, d)
        # Feature rows are built and summed block by block, so memory does not grow with the
        # series' length.
        block = max(1, min(_BLOCK_ROWS, _BLOCK_BYTES // (8 * n_phi)))
        for y in y_list:
            windows = self._windows(y)  # a view of the series, not a copy
            all_targets = self._tensor(y[self._span:])
            for start in range(0, windows.shape[0], block):
                window = windows[start:start + block]
                targets = all_targets[start:start + block]
                if self.increment:
                    targets = targets - window[:, -1]
                accumulator.update(self.features(window), targets)
        gram = accumulator.gram
        if self.constant:  # the intercept is fitted: the solve works on the centred system
            mean = accumulator.feature_sum / accumulator.count
            gram = gram - accumulator.count * np.outer(mean, mean)
        eigenvalues = np.linalg.eigvalsh(gram + self.ridge * np.eye(n_phi))
        smallest, largest = eigenvalues[0], eigenvalues[-1]
        # A singular (or numerically indefinite) system has an infinite condition number.
        self.condition_number_ = (float(largest / smallest)
                                  if smallest > largest * np.finfo(float).eps ** 2 else np.inf)
        if self.condition_number_ > 1e13:
            warn(f"the NVAR normal equations are ill-conditioned (condition number "
                 f"{self.condition_number_:.1e}); raise ridge, the stride or lower the order "
                 "(arXiv 2505.00846)")
        weights, intercept = accumulator.solve(self.ridge, self.solver,
                                               fit_intercept=bool(self.constant))
        self.n_output_features_ = n_phi + int(bool(self.constant))
        self.n_training_samples_ = accumulator.count
        self.readout_weights_ = weights
        self.readout_intercept_ = intercept

    # ------------------------------------------------------------------ predict
    def _step(self, window: torch.Tensor) -> torch.Tensor:
        """The next value after each window (B, span, d)."""
        weights = torch.as_tensor(self.readout_weights_, dtype=window.dtype,
                                  device=window.device)
        intercept = torch.as_tensor(self.readout_intercept_, dtype=window.dtype,
                                    device=window.device)
        update = self.features(window) @ weights + intercept
        return window[:, -1] + update if self.increment else update

    def _predict(self, n_steps, context_y, context_x, future_x):
        span = self._span
        if context_y.shape[0] < span:
            raise ValueError(
                f"NVAR with delays={self.delays}, stride={self.stride} needs a context of at "
                f"least {span} steps, got {context_y.shape[0]}"
            )
        window = self._tensor(context_y[-span:])[None]
        outputs = []
        for _ in range(n_steps):
            following = self._step(window)
            outputs.append(following[0])
            window = torch.cat([window[:, 1:], following[:, None]], dim=1)
        return torch.stack(outputs).cpu().numpy()

    def as_discrete_map(self, dt: float | None = None, **options) -> DiscreteMap:
        """The closed loop as a map on the flattened history window (span * d values,
        oldest first); ``dt`` is the sampling step (exponents per time unit). Its tangent
        map is analytic: the window shifts, and the new row's direction is
        W_out^T dphi (+ the newest row's direction with ``increment``), dphi by the product
        rule over each monomial's factors."""
        if options:
            raise ValueError(f"unknown options {sorted(options)}")
        self._check_fitted()
        span, d = self._span, self.n_features_in_

        def step(z: torch.Tensor) -> torch.Tensor:
            window = z.reshape(-1, span, d)
            following = self._step(window)
            return torch.cat([window[:, 1:], following[:, None]], dim=1).reshape(z.shape)

        stride, delays, order = int(self.stride), int(self.delays), int(self.order)
        rows = [span - 1 - j * stride for j in range(delays)]  # the delays, newest first
        weights = self._tensor(self.readout_weights_)
        monomials = self._monomials(delays * d)
        index = torch.as_tensor(monomials, device=weights.device).reshape(-1, order)

        def tangent(z: torch.Tensor, frame: torch.Tensor):
            # d phi: the linear part's directions, and for each monomial the product rule
            # (the other factors times each factor's direction).
            batch, k = z.shape[0], frame.shape[-1]
            window = z.reshape(batch, span, d)
            directions = frame.reshape(batch, span, d, k)
            linear = window[:, rows].reshape(batch, delays * d)
            dlinear = directions[:, rows].reshape(batch, delays * d, k)
            parts = [dlinear] if order >= 1 else []
            if monomials:
                factors = linear[:, index]  # (B, M, p)
                dfactors = dlinear[:, index]  # (B, M, p, k)
                dproduct = torch.zeros_like(dfactors[:, :, 0])
                for j in range(order):
                    others = torch.cat([factors[:, :, :j], factors[:, :, j + 1:]], -1)
                    dproduct = dproduct + others.prod(-1, keepdim=True) * dfactors[:, :, j]
                parts.append(dproduct)
            dfeatures = torch.cat(parts, 1)  # (B, F, k)
            dfollowing = torch.einsum("fo,bfk->bok", weights, dfeatures)
            if self.increment:
                dfollowing = dfollowing + directions[:, -1]
            pushed = torch.cat([directions[:, 1:], dfollowing[:, None]], 1)
            return step(z), pushed.reshape(batch, span * d, k)

        def initial_states(n: int, seed: int | None = None) -> torch.Tensor:
            return jittered_copies(self._tensor(self.context_y_[-span:]), n, seed, 1e-6)

        return DiscreteMap(step=step, dim=span * d, time_step=dt, tangent=tangent,
                           initial_states=initial_states,
                           dtype=self.dtype_, device=self.device_, name="NVAR",
                           default_steps=None if dt is None else math.ceil(50.0 / dt),
                           default_exponents=d)
