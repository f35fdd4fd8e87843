"""Echo state network forecaster (leaky reservoir + ridge readout).

Jaeger & Haas (2004), "Harnessing nonlinearity", Science 304; Pathak et al. (2018),
"Model-free prediction of large spatiotemporally chaotic systems from data: a reservoir
computing approach", Phys. Rev. Lett. 120.

    x_t = (1 - a) x_{t-1} + a tanh(W_in u_t + W x_{t-1} + b),   u_t = [y_t, X_{t+1}]
    y_{t+1} = W_out^T phi_t + c,   phi_t = [g(x_t), u_t (optional)]

g squares every other unit when ``squared_units`` (Pathak et al.'s fix of the tanh symmetry,
which matters for Lorenz and Kuramoto-Sivashinsky). The readout is fitted by ridge
regression on the teacher-forced states after a warm-up; forecasts run in closed loop, each
output fed back as the next input.

On the CPU (sparse W) a long series is fitted without ever holding all its states:
the compiled reservoir kernel runs it as parallel time segments, each started
``_SEGMENT_WASHOUT`` steps early, and hands over the states in chunks that go straight into
the float64 sums of the ridge regression; the seams between segments are verified to 1e-12
(see :meth:`LeakyReservoir.stream_segmented`), and the fit falls back to the sequential run
when one does not close. With two or more threads (torch's thread count, capped by BLAS's),
the segments are shared between worker threads, each running the kernel and the update of its
own sums on one core, side by side.
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
import torch

from .._progress import progress_bar
from .._protocol import DiscreteMap, jittered_copies
from .._validation import (
    as_float_array,
    check_bool,
    check_in_range,
    check_option,
    check_positive,
    warn,
)
from ..exceptions import DivergenceError, NotFittedError
from ..forecasting._data import (
    as_series_list,
    check_aligned_dates,
    check_exogenous,
    index_info,
)
from ..forecasting.base import BaseForecaster
from . import _esn_cpu
from ._blas import blas_threads, limit_blas
from .matrices import DISTRIBUTIONS, bias_vector, input_matrix, recurrent_matrix
from .readout import SOLVERS, LMSReadout, RidgeAccumulator, RLSReadout
from .reservoir import LeakyReservoir, _float64

# How partial_fit can learn the readout.
ONLINE_READOUTS = ("ridge", "rls", "lms")
# Long teacher-forced runs are computed as this many parallel time segments, each started
# this many steps early from the zero state (the seams are checked to round-off).
_SEGMENTS = 16
_SEGMENT_WASHOUT = 200
# Teacher-forced states are produced and consumed in blocks of this many steps, for at most
# this many trajectories at a time.
_BLOCK = 16_384
_BATCH = 64
# Segments per worker of a streamed fit (the compiled kernel's widest tile), and rows per
# chunk of states (~33 MB for 1000 units).
_TILE = 8
_CHUNK_ROWS = 4096
# Steps per call of the reservoir when measuring how fast it forgets its start, and when
# running a context up to its last state.
_FORGETTING_BLOCK = 1024
# Runs from different starts this close (in units of the state) count as settled: the
# least context predict() accepts without a warning.
_SETTLED = 1e-4
_CONTEXT_BLOCK = 4096
# Most rows of a stream that partial_fit keeps for predict(), for a reservoir that does
# not forget its start within them.
_MAX_STREAM_CONTEXT = 100_000
# Accumulators (and chunk buffers) per worker of a streamed fit with several workers.
_BUFFERS_PER_WORKER = 2


def _seed(random_state: int | None) -> int | None:
    """numpy's seed for ``random_state`` (validated by the fit's seeding: a whole float such
    as 3.0 is accepted there, and numpy takes only ints)."""
    return None if random_state is None else int(random_state)


def _stream_workers() -> int:
    """Worker threads for a streamed fit: torch's thread count, capped by BLAS's (a caller
    who limits either to 1 gets one thread). One where BLAS's threads cannot be read and
    limited (no threadpoolctl): workers whose BLAS calls each used every core would
    oversubscribe them."""
    blas = blas_threads()
    return 1 if blas is None else max(1, min(torch.get_num_threads(), blas))


class ESN(BaseForecaster):
    """Echo state network with a leaky tanh reservoir and a ridge readout.

    Parameters
    ----------
    n_units : int
        Reservoir size N.
    spectral_radius : float
        rho(W), set exactly for sparse W (ARPACK) and for dense W up to 1000 units (an
        eigen-solve); larger dense W by the circular law (a few percent off). Above
        1.5 a warning says that the echo state property is likely lost; between 1 and 1.5
        none, since driven reservoirs slightly above 1 (1.25 is common) usually keep it
        through the saturation of their units (:meth:`echo_state_diagnostics` gives the
        linear criteria).
    leak_rate : float in (0, 1]
        a.
    input_scaling : float or array (I,)
        Input weights are U(-s, s) (per input when an array is given). With many inputs and
        a dense input matrix keep s small: the units saturate otherwise (on 64-dimensional
        Kuramoto-Sivashinsky data, s = 0.5 with dense inputs forecasts for 0.1 Lyapunov
        times, against 3.5 with ``input_connectivity = 1/64``).
    bias_scaling : float
        b ~ U(-s, s); 0 for no bias (SPEC: Lorenz-63 reaches 2.7 Lyapunov times without
        bias against 8-9 with 0.5).
    connectivity : float in (0, 1]
        Fraction of nonzero recurrent weights (W is sparse below 0.25).
    input_connectivity : float in (0, 1]
        Fraction of nonzero input weights.
    ridge : float
        Ridge penalty lambda of the readout (the intercept is not penalised).
    warmup : int
        Teacher-forced steps discarded per trajectory before the readout sees states.
    solver : {"cholesky", "svd", "lstsq"}
    readout_input : bool
        Give the readout the input u_t too (an input-to-readout connection).
    squared_units : bool
        Square every other reservoir unit in the readout features (Pathak et al. 2018).
    training_noise : float
        Standard deviation of Gaussian noise added to the (standardised) teacher-forced
        inputs while collecting states (in fit and partial_fit alike); regularises the
        closed loop.
    distribution : {"normal", "uniform"}
        Distribution of the recurrent weights.
    online_readout : {"ridge", "rls", "lms"}
        How :meth:`partial_fit` learns: exact ridge from accumulated sums (re-solved after
        each chunk), recursive least squares with ``forgetting`` (its inverse correlation
        matrix starting at I / ``ridge``, so that without forgetting it gives the ridge
        solution, the intercept penalised too), or least mean squares with
        ``online_learning_rate``.
    forgetting : float in (0, 1]
        RLS forgetting factor (1: no forgetting).
    online_learning_rate : float in (0, 2)
        Step size of the normalised LMS readout.
    scale : bool
        Standardise each column with the training statistics.
    random_state, device, dtype, verbose
        Reproducibility, where the reservoir runs, its precision (float64 by default),
        progress bar over the batches of trajectories (one batch for one series). A
        float32 reservoir with sparse W on the CPU runs in the compiled kernel's float64
        arithmetic on its float32 weights (no slower than float64 there, and closer to
        the exact recurrence); float32 arithmetic is what it buys on a GPU.

    Attributes
    ----------
    reservoir_ : LeakyReservoir
    readout_weights_ : array (F, d)
    readout_intercept_ : array (d,)
    forgetting_steps_ : int or None
        Steps of the end of the (last) training series that ``predict()`` reruns to rebuild
        the reservoir's final state, measured at fit: runs of them from different initial
        states agree to 1e-10 (200 or more; None: the reservoir did not forget its start
        within the series, which is then kept whole).
    settling_steps_ : int or None
        Steps of context after which runs from different initial states stay within 1e-4
        of each other (measured at fit on the end of the training data): ``predict`` warns
        when given a shorter context. None: they never did within the training data.

    Notes
    -----
    From reservoirpy (0.4): ``Reservoir(units, lr, sr, input_scaling, rc_connectivity,
    input_connectivity, bias, seed)`` and ``Ridge(ridge)`` fitted with ``warmup`` are
    ``ESN(n_units, leak_rate, spectral_radius, input_scaling, connectivity,
    input_connectivity, bias_scaling, random_state, ridge=..., warmup=...)``; with the same
    weights the states agree to round-off and ``warmup`` drops the same states. Named or
    drawn otherwise:

    - defaults: reservoirpy's are sr 1, input scaling 1, connectivities 0.1 and no bias;
      here 0.9, 0.1, 0.02 (input: 1.0) and b ~ U(-0.5, 0.5);
    - W_in: reservoirpy draws +-input_scaling (Bernoulli), here U(-s, s); its bias is 0
      by default (Bernoulli when drawn), here ``bias_scaling`` gives U(-s, s);
    - ``lr`` per unit and ``activation`` other than tanh have no counterpart (one leak rate,
      tanh units);
    - ``ESN(feedback=True)`` (the readout's last output fed to the reservoir): a forecaster
      here always feeds its output back, u_t = [y_t, X_{t+1}]; reservoirpy's input series
      becomes the exogenous ``X``, its target the series ``y``;
    - ``input_to_readout=True`` is ``readout_input=True``; the ``RLS`` and ``LMS`` nodes are
      ``online_readout`` with :meth:`partial_fit`; the input noise of older versions
      (``noise_in``) is ``training_noise`` (on standardised inputs: set ``scale=False`` to
      work on the raw series as reservoirpy does);
    - ``ES2N(proximity=b)`` is :class:`~tsrnn.reservoir.DeepResESN` with one layer,
      ``alpha=1 - b``, ``beta=b`` (the same states with the same weights).
    """

    _default_dtype = torch.float64
    _map_y_last = True  # the closed loop's state is [reservoir state, y]
    # The readout is solved at fit: these may change before a partial_fit or save.
    _training_params = BaseForecaster._training_params | {
        "ridge", "solver", "training_noise", "online_learning_rate", "forgetting"}

    def __init__(self, *, n_units: int = 1000, spectral_radius: float = 0.9,
                 leak_rate: float = 1.0, input_scaling: float = 0.1,
                 bias_scaling: float = 0.5, connectivity: float = 0.02,
                 input_connectivity: float = 1.0, ridge: float = 1e-6, warmup: int = 100,
                 solver: str = "cholesky", readout_input: bool = False,
                 squared_units: bool = False, training_noise: float = 0.0,
                 distribution: str = "normal", online_readout: str = "ridge",
                 forgetting: float = 1.0, online_learning_rate: float = 0.1,
                 scale: bool = True, random_state: int | None = None,
                 device: str | None = "cpu", dtype: str = "float64", verbose: bool = False):
        self.n_units = n_units
        self.spectral_radius = spectral_radius
        self.leak_rate = leak_rate
        self.input_scaling = input_scaling
        self.bias_scaling = bias_scaling
        self.connectivity = connectivity
        self.input_connectivity = input_connectivity
        self.ridge = ridge
        self.warmup = warmup
        self.solver = solver
        self.readout_input = readout_input
        self.squared_units = squared_units
        self.training_noise = training_noise
        self.distribution = distribution
        self.online_readout = online_readout
        self.forgetting = forgetting
        self.online_learning_rate = online_learning_rate
        self.scale = scale
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _check_hyperparameters(self) -> None:
        check_positive(self.n_units, "n_units", integer=True)
        check_positive(self.spectral_radius, "spectral_radius")
        if self.spectral_radius > 1.5:
            warn(f"spectral_radius={self.spectral_radius} is far above 1: the reservoir is "
                 "likely to lose the echo state property (its state then depends on its "
                 "initial condition and may be chaotic)")
        check_in_range(self.leak_rate, "leak_rate", 0.0, 1.0, closed="right")
        check_positive(self.bias_scaling, "bias_scaling", allow_zero=True)
        check_in_range(self.connectivity, "connectivity", 0.0, 1.0, closed="right")
        check_in_range(self.input_connectivity, "input_connectivity", 0.0, 1.0,
                       closed="right")
        check_positive(self.ridge, "ridge", allow_zero=True)
        check_positive(self.warmup, "warmup", integer=True, allow_zero=True)
        check_option(self.solver, "solver", SOLVERS)
        check_option(self.distribution, "distribution", DISTRIBUTIONS)
        check_positive(self.training_noise, "training_noise", allow_zero=True)
        check_bool(self.readout_input, "readout_input")
        check_bool(self.squared_units, "squared_units")
        self._check_online_settings()

    def _check_online_settings(self) -> None:
        """The online-readout settings, checked at ``fit`` too: a typo there (or in a
        search grid) would otherwise surface only at the first ``partial_fit``."""
        check_option(self.online_readout, "online_readout", ONLINE_READOUTS)
        check_in_range(self.forgetting, "forgetting", 0.0, 1.0, closed="right")
        check_in_range(self.online_learning_rate, "online_learning_rate", 0.0, 2.0,
                       closed="neither")

    def _min_length(self) -> int:
        return int(self.warmup) + 3

    def _min_length_reason(self) -> str:
        return (f" (warmup={self.warmup} steps whose states the readout drops, and three "
                "more for the two samples that are the fewest a readout with an intercept "
                "can be fitted on)")

    def echo_state_diagnostics(self) -> dict[str, float]:
        """Stability of the fitted reservoir at the origin (Jaeger 2001; Yildiz et al. 2012).

        Returns the spectral radius rho(W), the effective radius of the leaky update
        rho((1 - a) I + a W) (>= 1 means the echo state property is likely lost), and the
        sufficient contraction bound (1 - a) + a ||W||_2 (< 1 guarantees it for any input).
        """
        self._check_fitted()
        from scipy.sparse.linalg import svds

        from .matrices import spectral_radius as radius_of

        recurrent = self.reservoir_.recurrent_matrix()
        leak = self.reservoir_.leak_rate
        identity = np.eye(recurrent.shape[0])
        dense = recurrent.toarray() if hasattr(recurrent, "toarray") else recurrent
        if hasattr(recurrent, "toarray") and recurrent.shape[0] > 64:
            norm = float(svds(recurrent, k=1, return_singular_vectors=False, v0=np.ones(
                recurrent.shape[0]))[0])
        else:
            norm = float(np.linalg.norm(dense, 2))
        return {
            "spectral_radius": radius_of(recurrent),
            "effective_spectral_radius": radius_of((1.0 - leak) * identity + leak * dense),
            "contraction_bound": (1.0 - leak) + leak * norm,
        }

    def _context_length(self) -> int | None:
        # The echo state property: the state forgets where it started, so rerunning the
        # reservoir over the last stretch of the training data reproduces its final state.
        # How long a stretch that takes is measured at fit (a slow reservoir, small leak
        # rate or alpha near 1, needs thousands of steps); None keeps the whole series.
        if hasattr(self, "forgetting_steps_"):
            return self.forgetting_steps_
        return self._shortest_context()

    def _shortest_context(self) -> int:
        return max(2 * int(self.warmup), 200)

    def _measure_forgetting(self, y: np.ndarray, x: np.ndarray | None
                            ) -> tuple[int | None, int | None]:
        """How long the reservoir driven by the end of a (scaled) training series takes to
        forget its initial state, from runs started at the zero state and at two random ones
        (+-U(-1, 1)), tried over :meth:`_shortest_context` steps, doubling, up to the whole
        series. Returns

        - the forgetting length: the first tried length after which the runs agree to 1e-10
          (float64; 100 ulp in lower precision), the end of the series that ``predict()``
          reruns; None when even the whole series is not enough (it is then kept whole);
        - the settling length: the steps after which the runs of the last try stay within
          1e-4 of each other, what a context must have for the first forecasts not to
          depend on the zero start (``predict`` warns below it); None when they never do.

        Without the first, ``predict()`` after ``fit`` continued from a state rerun over the
        last 200 steps only: 0.06 (28% of the data's standard deviation) away from the true
        continuation for a leak rate of 0.05 on Mackey-Glass, 0.17 for a DeepResESN with
        alpha = 0.99. Without the second, a context of 60 steps for a reservoir with a leak
        rate of 0.05 gave a first forecast 9 data units off, with no warning."""
        inputs = self._tensor(self._inputs(y, x))
        total = inputs.shape[0]
        if total == 0:
            return None, None
        n_units = self.reservoir_.n_units
        random = torch.as_tensor(np.random.default_rng(0).uniform(-1.0, 1.0, n_units),
                                 dtype=inputs.dtype, device=inputs.device)
        starts = torch.stack([torch.zeros_like(random), random, -random])
        tolerance = max(1e-10, 100 * torch.finfo(inputs.dtype).eps)
        length = min(self._shortest_context(), total)
        while True:
            final, unsettled = starts, -1  # the last step of this try still apart by 1e-4
            # In blocks: all the states of three runs over a long stretch of a large
            # reservoir would take gigabytes.
            first = total - length
            for start in range(first, total, _FORGETTING_BLOCK):
                block = inputs[start:min(start + _FORGETTING_BLOCK, total)]
                states, final = self.reservoir_(block[None].expand(3, -1, -1).contiguous(),
                                                final)
                apart = torch.nonzero((states[1:] - states[:1]).abs().amax(dim=(0, 2))
                                      > _SETTLED)
                if apart.numel():
                    unsettled = start - first + int(apart[-1])
            # The state after k inputs is states[k - 1]: settled from unsettled + 2 inputs.
            settling = unsettled + 2 if unsettled + 1 < length else None
            if float((final[1:] - final[0]).abs().max()) <= tolerance:
                return length, settling
            if length >= total:
                return None, settling
            length = min(2 * length, total)

    # ------------------------------------------------------------------ model
    def _build_module(self) -> LeakyReservoir:
        rng = np.random.default_rng(_seed(self.random_state))
        recurrent_rng, input_rng, bias_rng = rng.spawn(3)
        n_inputs = self.n_features_in_ + self.n_exog_
        recurrent = recurrent_matrix(int(self.n_units), self.spectral_radius,
                                     self.connectivity, recurrent_rng,
                                     distribution=self.distribution)
        weights_in = input_matrix(int(self.n_units), n_inputs, self.input_scaling,
                                  self.input_connectivity, input_rng)
        if not weights_in.any():
            raise ValueError("input_scaling is 0 for every input: the reservoir would never "
                             "see the data (and forecast a constant)")
        bias = bias_vector(int(self.n_units), self.bias_scaling, bias_rng)
        return LeakyReservoir(recurrent, weights_in, bias, self.leak_rate, dtype=self.dtype_)

    def _set_state(self, state: dict) -> None:
        state = dict(state)
        modules = state.pop("modules")
        super()._set_state({"attributes": state["attributes"], "modules": {}})
        self.reservoir_ = self._module_from_state(modules["reservoir_"]).to(self.device_)

    def _module_from_state(self, buffers: dict) -> torch.nn.Module:
        """The reservoir module holding the saved ``buffers``. The plain reservoir is built
        from them directly: rebuilding it from the hyperparameters would draw a new random
        W (with random_state=None, one that can fail the nilpotency check) and pay the
        eigen-solve of its radius, only to overwrite both."""
        return LeakyReservoir.from_state_dict(buffers, self.leak_rate, dtype=self.dtype_)

    def _inputs(self, y: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        """u_t = [y_t, X_{t+1}] for t = 0 .. T-2 (the input that predicts y_{t+1})."""
        return y[:-1] if x is None else np.concatenate([y[:-1], x[1:]], axis=1)

    def features(self, states: torch.Tensor, inputs: torch.Tensor, *,
                 overwrite: bool = False) -> torch.Tensor:
        """Readout features phi (..., F) from states (..., N) and inputs (..., I).

        ``overwrite`` lets the squared units be written into ``states`` itself (for blocks
        of states that nothing else reads: saves a copy of the largest array of a fit)."""
        if self.squared_units:
            if not overwrite:
                states = states.clone()
            states[..., ::2] = states[..., ::2].square()
        return torch.cat([states, inputs], dim=-1) if self.readout_input else states

    # ------------------------------------------------------------------ fit
    def _fit(self, y_list, x_list) -> None:
        self._check_hyperparameters()
        self.reservoir_ = self._build_module().to(self.device_)
        self._check_reservoir()
        # The readout's width is what ``features`` makes of a state (subclasses may read
        # out part of a stacked state, or add the input).
        probe_state = torch.zeros((1, self.reservoir_.n_units), dtype=self.dtype_)
        probe_input = torch.zeros((1, self.n_features_in_ + self.n_exog_), dtype=self.dtype_)
        n_features = self.features(probe_state, probe_input).shape[-1]
        accumulator = RidgeAccumulator(n_features, self.n_features_in_)
        generator = np.random.default_rng(None if self.random_state is None
                                          else int(self.random_state) + 7)
        warmup = int(self.warmup)
        # Trajectories of equal length run as one batch (up to _BATCH of them at a time).
        by_length: dict[int, list[int]] = {}
        for i, y in enumerate(y_list):
            by_length.setdefault(y.shape[0], []).append(i)
        batches = [members[k:k + _BATCH] for members in by_length.values()
                   for k in range(0, len(members), _BATCH)]
        for members in progress_bar(batches, verbose=self._verbose,
                                    desc=type(self).__name__, leave=False):
            inputs = np.stack([self._inputs(y_list[i], None if x_list is None else x_list[i])
                               for i in members])
            if self.training_noise > 0:
                inputs = inputs + self.training_noise * generator.standard_normal(inputs.shape)
            target_rows = np.stack([y_list[i][1:] for i in members])
            if len(members) == 1 and self._accumulate_streamed(inputs[0], target_rows[0],
                                                                accumulator):
                continue
            u = self._tensor(inputs)
            targets = self._tensor(target_rows)
            for start, states in self._teacher_forced_states(u):
                keep = max(warmup - start, 0)  # the warm-up may span several blocks
                if keep >= states.shape[1]:
                    continue
                stop = start + states.shape[1]
                phi = self.features(states[:, keep:], u[:, start + keep:stop], overwrite=True)
                accumulator.update(phi.reshape(-1, phi.shape[-1]),
                                   targets[:, start + keep:stop].reshape(-1, targets.shape[-1]))
        self.n_training_samples_ = accumulator.count
        if accumulator.count < int(self.warmup):
            warn(f"the readout is fitted on {accumulator.count} samples, fewer than the "
                 f"warmup={self.warmup} steps run before them: so few rarely determine its "
                 f"{accumulator.n_features} weights per output; give a longer series")
        weights, intercept = accumulator.solve(self.ridge, self.solver)
        if not (np.isfinite(weights).all() and np.isfinite(intercept).all()):
            raise ValueError("the readout solve gave non-finite weights; raise ridge or use "
                             "solver='svd'")
        self.readout_weights_ = weights
        self.readout_intercept_ = intercept
        # How much of the last series predict() must rerun to rebuild its final state.
        self.forgetting_steps_, self.settling_steps_ = self._measure_forgetting(
            y_list[-1], None if x_list is None else x_list[-1])

    # ------------------------------------------------------------------ online learning
    def partial_fit(self, y, X=None):
        """Learn from the next chunk of one stream (e.g. data arriving over time).

        The first call sets up the model (standardisation from that chunk, the reservoir,
        the readout); later calls carry the reservoir state and the last row across the
        chunk boundary, so a stream cut into chunks trains as it would in one piece. How
        the readout learns is ``online_readout`` ("ridge" exact, "rls", "lms").

        Parameters
        ----------
        y : array (T, d) or (T,), DataFrame or Series
            The next rows of the stream.
        X : optional, exogenous inputs aligned with ``y``.
        """
        # All or nothing: a chunk that fails (bad data, a diverged readout) leaves the model
        # as it was, so that the stream can go on from the last good chunk. The learned
        # attributes are replaced, not changed in place (_online_update works on a copy).
        before = {name: value for name, value in vars(self).items()
                  if name.endswith("_") and not name.startswith("__")}
        try:
            return self._partial_fit(y, X)
        except BaseException:
            self._clear_learned_state()
            for name, value in before.items():
                setattr(self, name, value)
            raise

    def _partial_fit(self, y, X):
        check_option(self.online_readout, "online_readout", ONLINE_READOUTS)
        y_list, collection = as_series_list(y, "y")
        if collection:
            raise ValueError("partial_fit takes one chunk of one stream, not a list of series")
        x_list = check_exogenous(X, y_list, collection)
        check_aligned_dates(y, X, collection)
        if not hasattr(self, "stream_state_"):
            if hasattr(self, "readout_weights_"):
                # fit() keeps no running sums, so a stream cannot continue from it.
                warn(f"partial_fit on a {type(self).__name__} fitted with fit() starts a new "
                     "stream: the model learned by fit() is discarded")
            self._clear_learned_state()
            self._check_hyperparameters()
            y_scaled, x_scaled = self._describe_data(y, y_list, x_list, collection, X)
            self.reservoir_ = self._build_module().to(self.device_)
            self._check_reservoir()
            self.stream_state_ = torch.zeros(self.reservoir_.n_units, dtype=self.dtype_,
                                             device=self.device_)
            self.stream_steps_ = 0
            self.stream_last_ = None
        else:
            self._check_fitted()
            self._check_like_first_fit(y, y_list, x_list, collection, "the first chunk",
                                       "this chunk of y", X=X)
            y_scaled = [self.y_scaler_.transform(y_list[0])]
            x_scaled = None if x_list is None else [self.x_scaler_.transform(x_list[0])]
            # predict() continues after this chunk: its index (dates) dates the forecast.
            self.index_info_ = index_info(y)
        rows_y = y_scaled[0]
        rows_x = None if x_scaled is None else x_scaled[0]
        if self.stream_last_ is not None:  # the pair that crosses the chunk boundary
            rows_y = np.concatenate([self.stream_last_[0][None], rows_y])
            if rows_x is not None:
                rows_x = np.concatenate([self.stream_last_[1][None], rows_x])
        if rows_y.shape[0] >= 2:
            inputs = self._inputs(rows_y, rows_x)
            if self.training_noise > 0:
                inputs = inputs + self.training_noise * self._stream_noise(inputs.shape)
            u = self._tensor(inputs)
            states, final = self.reservoir_(u[None], self.stream_state_[None])
            skip = min(max(int(self.warmup) - self.stream_steps_, 0), u.shape[0])
            phi = self.features(states[0, skip:], u[skip:])
            self._online_update(phi, self._tensor(rows_y[1 + skip:]))
            self.stream_state_ = final[0]
            self.stream_steps_ += u.shape[0]
        self.stream_last_ = (rows_y[-1], None if rows_x is None else rows_x[-1])
        if getattr(self, "forgetting_steps_", None) is None:
            # How much of the stream predict() must rerun to rebuild the reservoir's state,
            # measured on the rows kept so far (all of them until it is known) and this chunk.
            kept_y, kept_x = y_scaled[0], None if x_scaled is None else x_scaled[0]
            if hasattr(self, "context_y_"):
                kept_y = np.concatenate([self.context_y_, kept_y])
                if kept_x is not None:
                    kept_x = np.concatenate([self.context_x_, kept_x])
            self.forgetting_steps_, self.settling_steps_ = self._measure_forgetting(kept_y,
                                                                                    kept_x)
            if self.forgetting_steps_ is None and kept_y.shape[0] > _MAX_STREAM_CONTEXT:
                # A stream is unbounded: keeping (and rerunning) all of it would grow without
                # end for a reservoir that does not forget.
                self.forgetting_steps_ = _MAX_STREAM_CONTEXT
                warn(f"the reservoir has not forgotten its initial state within "
                     f"{kept_y.shape[0]:,} steps of the stream; predict() without a context "
                     f"starts from a state rebuilt from the last {_MAX_STREAM_CONTEXT:,} "
                     "(a larger leak rate or a smaller spectral radius forgets faster)")
        if not hasattr(self, "context_y_"):
            self._store_context(y_scaled[0], None if x_scaled is None else x_scaled[0])
        else:
            self._store_context(y_scaled[0], None if x_scaled is None else x_scaled[0],
                                previous=True)
        return self

    def _stream_noise(self, shape: tuple[int, ...]) -> np.ndarray:
        """Training noise for the next inputs of a stream, from the generator that ``fit``
        draws it from, its state carried from chunk to chunk (as text, so that it is saved
        with the estimator): a stream cut into chunks gets the noise it would get in one
        piece, and the noise ``fit`` gives the same series."""
        generator = np.random.default_rng(None if self.random_state is None
                                          else int(self.random_state) + 7)
        if hasattr(self, "stream_noise_state_"):
            generator.bit_generator.state = json.loads(self.stream_noise_state_)
        noise = generator.standard_normal(shape)
        self.stream_noise_state_ = json.dumps(generator.bit_generator.state)
        return noise

    def _check_readout(self) -> None:
        """Refuse to use a readout that partial_fit has not trained yet: it keeps the
        context from its first rows, but the readout exists only once the stream reaches
        past the warm-up. (A stream that short can still be saved and continued.)"""
        self._check_fitted()
        if not hasattr(self, "readout_weights_"):
            steps = getattr(self, "stream_steps_", 0)
            raise NotFittedError(
                f"this {type(self).__name__} has seen {steps} steps through partial_fit, "
                f"none past warmup={int(self.warmup)}: its readout is not "
                "trained yet; call partial_fit with more rows before using it"
            )

    def _online_update(self, phi: torch.Tensor, targets: torch.Tensor) -> None:
        if phi.shape[0] == 0:
            return
        width = phi.shape[1]
        kind = self.online_readout
        if hasattr(self, "online_state_"):
            # The readouts update their arrays in place: a copy keeps the saved state intact
            # until the whole chunk has succeeded (partial_fit restores it on failure).
            self.online_state_ = {name: (value.clone() if isinstance(value, torch.Tensor)
                                         else np.array(value, copy=True)
                                         if isinstance(value, np.ndarray) else value)
                                  for name, value in self.online_state_.items()}
        if kind == "rls" and not self.ridge > 0:
            raise ValueError("online_readout='rls' needs ridge > 0: its inverse correlation "
                             "matrix starts at I / ridge")
        if kind == "ridge":
            readout = (RidgeAccumulator.from_state(self.online_state_)
                       if hasattr(self, "online_state_")
                       else RidgeAccumulator(width, targets.shape[1]))
            readout.update(phi, targets)
            weights, intercept = readout.solve(self.ridge, self.solver)
        else:
            if kind == "rls":
                # P starts at I / ridge: the RLS weights are then the ridge solution of the
                # samples seen (with forgetting, of the discounted ones).
                readout = (RLSReadout.from_state(self.online_state_, self.forgetting)
                           if hasattr(self, "online_state_")
                           else RLSReadout(width, targets.shape[1], self.forgetting,
                                           regularization=self.ridge))
            else:
                readout = (LMSReadout.from_state(self.online_state_, self.online_learning_rate)
                           if hasattr(self, "online_state_")
                           else LMSReadout(width, targets.shape[1], self.online_learning_rate))
            readout.update(phi.double().cpu().numpy(), targets.double().cpu().numpy())
            weights, intercept = readout.coefficients()
            if not (np.isfinite(weights).all() and np.isfinite(intercept).all()):
                raise DivergenceError(
                    f"the {kind.upper()} readout diverged after {self.stream_steps_} steps; "
                    "lower online_learning_rate or raise forgetting")
        self.online_state_ = readout.state()
        self.n_training_samples_ = getattr(self, "n_training_samples_", 0) + phi.shape[0]
        self.readout_weights_ = np.array(weights)
        self.readout_intercept_ = np.array(intercept)

    def _check_reservoir(self) -> None:
        """Hook after the reservoir is built (subclasses check its stability here)."""

    def _accumulate_streamed(self, inputs: np.ndarray, targets: np.ndarray,
                             accumulator: RidgeAccumulator) -> bool:
        """Add the readout statistics of one long sequence, its states computed by the
        compiled kernel as parallel time segments and consumed chunk by chunk (see
        :meth:`LeakyReservoir.stream_segmented`: memory of one chunk, no array of all the
        states). Returns False, having added nothing, where that does not apply or a seam
        did not close (the caller then runs the general path).

        Each chunk's rows are laid out in place as [phi, 1, y] (the kernel leaves room after
        each state), so one symmetric rank-k update gives all the sums at once. With two
        or more threads allowed (torch's thread count and BLAS's, whichever is lower), the
        segments are shared between that many workers, each running the kernel and the
        updates of its own accumulators on one thread, side by side (the kernel of one
        never waits for the other's BLAS, as it did when both used every thread chunk by
        chunk), an idle worker taking over the updates of another's waiting chunks. The
        sums are reproducible to the bit for a given thread count."""
        reservoir = self.reservoir_
        if (not isinstance(reservoir, LeakyReservoir)
                or inputs.shape[0] < 2 * _SEGMENTS * _SEGMENT_WASHOUT):
            return False
        # Each worker runs one tile of segments, each at least twice as long as its washout:
        # 8 segments (one AVX-512 register; 4 on a machine with AVX2 registers) while the
        # series gives every thread a tile of 8, else 4, for up to twice as many workers
        # (20,000 steps: 6 workers of 8 segments, or 12 of 4, whose SYRKs then share the rows).
        threads, length = _stream_workers(), inputs.shape[0]
        widest = min(_TILE, _esn_cpu.widest_tile())
        narrower = next((t for t in _esn_cpu.TILES if 1 < t < widest), widest)
        tile = widest if threads <= length // (2 * _SEGMENT_WASHOUT * widest) else narrower
        n_workers = max(1, min(threads, length // (2 * _SEGMENT_WASHOUT * tile)))
        # At least _SEGMENTS in all, whole tiles per worker.
        n_segments = n_workers * tile * -(-_SEGMENTS // (n_workers * tile))
        u = np.ascontiguousarray(inputs, dtype=np.float64)
        targets = np.ascontiguousarray(targets, dtype=np.float64)
        n_units, width = reservoir.n_units, accumulator.n_features
        # Separate accumulators: the chunks only count once all seams are known to close.
        # With workers, two per worker (each chunk of a worker goes to the next of its two
        # in turn), so that an idle worker can add a chunk of another's while that one adds
        # its previous chunk: each sum still sees its chunks in a fixed order.
        per_worker = 1 if n_workers == 1 else _BUFFERS_PER_WORKER
        trials = [RidgeAccumulator(width, accumulator.n_targets)
                  for _ in range(n_workers * per_worker)]
        if type(self).features is ESN.features:  # phi = [g(x), u (readout_input)]
            extra_columns = width - n_units + 1 + targets.shape[1]

            def consumer(trial: RidgeAccumulator):
                def consume(times: np.ndarray, rows: np.ndarray) -> None:
                    if self.squared_units:
                        even = rows[:, :n_units:2]
                        np.square(even, out=even)
                    if self.readout_input:
                        rows[:, n_units:width] = u[times]
                    rows[:, width] = 1.0
                    rows[:, width + 1:] = targets[times]
                    trial.update_augmented(rows)
                return consume
        else:  # a subclass's own features
            extra_columns = 0
            u_tensor = torch.from_numpy(u)

            def consumer(trial: RidgeAccumulator):
                def consume(times: np.ndarray, rows: np.ndarray) -> None:
                    phi = self.features(torch.from_numpy(rows), u_tensor[times],
                                        overwrite=True)
                    trial.update(phi.numpy(), targets[times])
                return consume

        consumers = [consumer(trial) for trial in trials]
        # Workers run BLAS on one thread each (the limit is lifted when they are done); their
        # chunks are half as long, for the memory of one chunk per thread.
        with limit_blas(1) if n_workers > 1 else contextlib.nullcontext():
            closed = reservoir.stream_segmented(
                u, consumers, n_segments, _SEGMENT_WASHOUT, first=int(self.warmup),
                chunk_rows=_CHUNK_ROWS // per_worker, extra_columns=extra_columns,
                workers=n_workers)
        if not closed:
            return False
        accumulator.merge_many(trials, threads=n_workers)
        return True

    def _teacher_forced_states(self, inputs: torch.Tensor):
        """Yield ``(start, states)`` blocks of the states (B, L, N) driven from zero states
        by inputs (B, L, I).

        Blocks of at most :data:`_BLOCK` steps keep memory independent of the series length.
        For one long sequence the states of a block come from parallel time segments
        (verified at every seam, see :meth:`LeakyReservoir.run_segmented`).
        """
        reservoir = self.reservoir_
        state = None
        # Blocks of equal length (not _BLOCK and a short rest): every block is then long
        # enough to be run as parallel segments.
        n_blocks = -(-inputs.shape[1] // _BLOCK)
        block_length = -(-inputs.shape[1] // n_blocks)
        for start in range(0, inputs.shape[1], block_length):
            block = inputs[:, start:start + block_length]
            states = None
            plan = self._segments(block.shape[1]) if block.shape[0] == 1 else None
            if plan is not None:
                n_segments, washout = plan
                segmented = reservoir.run_segmented(block[0], n_segments, washout,
                                                    state=None if state is None else state[0])
                states = None if segmented is None else segmented[None]
            if states is None:
                states, _ = reservoir(block, state)
            state = states[:, -1]
            yield start, states

    def _segments(self, length: int) -> tuple[int, int] | None:
        """(number of parallel time segments, washout steps of each) for the teacher-forced
        run of one sequence of ``length`` steps, or None to run it sequentially."""
        if length < 2 * _SEGMENTS * _SEGMENT_WASHOUT:
            return None
        return _SEGMENTS, _SEGMENT_WASHOUT

    def reservoir_states(self, y, X=None) -> np.ndarray:
        """The teacher-forced reservoir states of a series, as the readout sees them.

        Parameters
        ----------
        y : array (T, d); X : optional exogenous inputs (T, p).

        Returns
        -------
        array (T - 1, n_units): the state after reading u_t = [y_t, X_{t+1}], from the zero
        state, for t = 0 .. T-2 (standardised with the training statistics).
        """
        self._check_fitted()
        y_array = as_float_array(y, "y", ndim=(1, 2))
        y_array = y_array[:, None] if y_array.ndim == 1 else y_array
        if y_array.shape[1] != self.n_features_in_:
            raise ValueError(f"y must have {self.n_features_in_} columns, got {y_array.shape}")
        if y_array.shape[0] < 2:
            raise ValueError(f"y has {y_array.shape[0]} row{'s' if y_array.shape[0] != 1 else ''}"
                             "; the states need at least 2 (the state after row t is the one "
                             "that predicts row t + 1)")
        x_list = check_exogenous(X, [y_array], False)
        if (x_list is None) != (self.n_exog_ == 0):
            raise ValueError("give X exactly when the model was fitted with X")
        x_scaled = None if x_list is None else self.x_scaler_.transform(x_list[0])
        u = self._tensor(self._inputs(self.y_scaler_.transform(y_array), x_scaled))[None]
        return torch.cat([states for _, states in self._teacher_forced_states(u)], 1)[
            0].double().cpu().numpy()

    # ------------------------------------------------------------------ predict
    def _predict(self, n_steps, context_y, context_x, future_x):
        self._check_readout()
        self._check_context_settles(context_y.shape[0])
        if context_x is None:
            # The context and the closed loop in one call of the compiled kernel.
            kernel = self._kernel_layout(context_y.shape[1])
            if kernel is not None:
                layout, weights = kernel
                outputs, _ = _esn_cpu.generate(
                    layout, self.reservoir_.leak_rate, weights, self.readout_intercept_,
                    None, None, n_steps, context=np.asarray(context_y, np.float64)[None],
                    squared_units=bool(self.squared_units),
                    readout_input=bool(self.readout_input))
                return outputs[0]
        exogenous = None
        if context_x is not None:
            exogenous = np.concatenate([context_x, future_x], axis=0)[1:]
        inputs = context_y if exogenous is None else np.concatenate(
            [context_y, exogenous[: context_y.shape[0]]], axis=1)
        u = self._tensor(inputs)[None]
        state = self._final_state(u)
        first = self._readout(self.features(state, u[:, -1]))
        future = None if exogenous is None else exogenous[context_y.shape[0]:]
        return self._closed_loop(first[0], state[0], n_steps, future)

    def _check_context_settles(self, n: int) -> None:
        """Warn when a context of ``n`` steps is too short for the reservoir to forget its
        zero initial state (``settling_steps_``, measured at fit)."""
        steps = f"{n} step{'s' if n != 1 else ''}"
        if not hasattr(self, "settling_steps_"):  # saved by an earlier version
            if n < min(int(self.warmup), 50):
                warn(f"the context has {steps}, fewer than warmup={self.warmup}: the "
                     "reservoir state may not have settled, and the first forecast steps "
                     "depend on the zero initial state")
            return
        needed = self.settling_steps_
        if needed is None:
            if n < self.context_y_.shape[0]:
                warn(f"the context has {steps}, and this reservoir did not forget its initial "
                     "state within the training data (runs from different starts stayed "
                     f"more than {_SETTLED:g} apart): the forecast depends on where the "
                     "context starts")
        elif n < needed:
            warn(f"the context has {steps}, and this reservoir needs about {needed} to forget "
                 f"its zero initial state (runs from different starts come within {_SETTLED:g} "
                 "of each other after that many steps of the training data): the first "
                 "forecast steps depend on the initial state; give a longer context")

    def _final_state(self, u: torch.Tensor) -> torch.Tensor:
        """The reservoir state (B, n_units) after the inputs u (B, T, n_inputs) from zero,
        run block by block (a long single context as parallel segments): the states on the
        way are not kept, so a long context costs no memory beyond one block."""
        state = None
        if u.shape[0] == 1 and self._segments(u.shape[1]) is not None:
            # A long context (a reservoir slow to forget keeps all of the training series
            # for predict()): in parallel time segments, as the fit's states.
            for _, states in self._teacher_forced_states(u):
                state = states[:, -1].clone()
            return state
        for start in range(0, u.shape[1], _CONTEXT_BLOCK):
            _, state = self.reservoir_(u[:, start:start + _CONTEXT_BLOCK], state)
            state = state.clone()  # not a view that keeps the block's states alive
        return state

    def _readout(self, phi: torch.Tensor) -> torch.Tensor:
        weights = torch.as_tensor(self.readout_weights_, dtype=phi.dtype, device=phi.device)
        intercept = torch.as_tensor(self.readout_intercept_, dtype=phi.dtype,
                                    device=phi.device)
        return phi @ weights + intercept

    def _closed_loop(self, first: torch.Tensor, state: torch.Tensor, n_steps: int,
                     future_x: np.ndarray | None) -> np.ndarray:
        """Generate ``n_steps`` outputs, the first given, each fed back as the next input."""
        reservoir = self.reservoir_
        if (state.device.type == "cpu" and isinstance(reservoir, LeakyReservoir)
                and reservoir.is_sparse):
            if future_x is None:
                outputs = self._closed_loop_kernel(first.numpy(), state.numpy(), n_steps)
                if outputs is not None:
                    return outputs
            return self._closed_loop_numpy(first.numpy(), state.numpy(), n_steps, future_x)
        outputs = [first]
        y, x = first[None], state[None]
        for i in range(1, n_steps):
            u = y if future_x is None else torch.cat(
                [y, self._tensor(future_x[i - 1])[None]], dim=1)
            x = reservoir.step(u, x)
            y = self._readout(self.features(x, u))
            outputs.append(y[0])
        return torch.stack(outputs).double().cpu().numpy()

    def _closed_loop_kernel(self, first: np.ndarray, state: np.ndarray,
                            n_steps: int) -> np.ndarray | None:
        """The closed loop without exogenous inputs as one call of the compiled generation
        kernel (:func:`tsrnn.reservoir._esn_cpu.generate`: 2-3x fewer microseconds per step
        than the numpy loop, which adds its calls' dispatch to the same sparse product), or
        None where it does not apply: no compiled kernel (no compiler, ``TSRNN_NO_NATIVE``),
        W not a float64 or float32 CPU CSR matrix, features other than this class's
        (subclasses reading out part of a stacked state), or outputs that are not the
        inputs."""
        kernel = self._kernel_layout(first.shape[0])
        if kernel is None:
            return None
        layout, weights = kernel
        outputs, _ = _esn_cpu.generate(
            layout, self.reservoir_.leak_rate, weights, self.readout_intercept_,
            np.asarray(first, np.float64)[None], np.asarray(state, np.float64)[None], n_steps,
            squared_units=bool(self.squared_units), readout_input=bool(self.readout_input))
        return outputs[0]

    def _kernel_layout(self, n_outputs: int):
        """(the kernel's layout of W, W_in and b, W_out as float64) when the compiled
        generation kernel applies to this model, else None (see :meth:`_closed_loop_kernel`)."""
        reservoir = self.reservoir_
        if type(self).features is not ESN.features or type(reservoir) is not LeakyReservoir:
            return None
        csr = reservoir._kernel()
        weights = np.asarray(self.readout_weights_, dtype=np.float64)
        if (csr is None or reservoir.n_inputs != n_outputs
                or weights.shape[0] != reservoir.n_units + (
                    reservoir.n_inputs if self.readout_input else 0)):
            return None
        return _esn_cpu.sliced_layout(csr, _float64(reservoir.input_weights),
                                      _float64(reservoir.bias)), weights

    def _closed_loop_numpy(self, first, state, n_steps, future_x) -> np.ndarray:
        reservoir = self.reservoir_
        reservoir._refresh()
        weights_in = reservoir.input_operator()
        bias = reservoir.bias.numpy()
        leak = reservoir.leak_rate
        weights, intercept = self.readout_weights_, self.readout_intercept_
        n_units = reservoir.n_units
        state_weights = weights[:n_units]
        input_weights = weights[n_units:] if self.readout_input else None
        outputs = np.empty((n_steps, first.shape[0]))
        outputs[0] = y = first
        x = state.copy()
        multiply_add = reservoir._matvec_into()
        for i in range(1, n_steps):
            u = y if future_x is None else np.concatenate([y, future_x[i - 1]])
            activation = weights_in @ u
            activation += bias
            multiply_add(x, activation)
            np.tanh(activation, out=activation)
            x = activation if leak == 1.0 else (1.0 - leak) * x + leak * activation
            features = x
            if self.squared_units:
                features = x.copy()
                features[::2] **= 2
            y = features @ state_weights + intercept
            if input_weights is not None:
                y += u @ input_weights
            outputs[i] = y
        return outputs

    # ------------------------------------------------------------------ analysis
    def as_discrete_map(self, dt: float | None = None, **options) -> DiscreteMap:
        """The closed loop as a map on z = [x (reservoir state), y (next input, scaled)].

        ``dt`` is the sampling step of the training data (exponents per time unit). The
        tangent map is analytic: with h = tanh(...) and D = diag(1 - h^2),
        dx' = (1 - a) dx + a D (W dx + W_in dy),  dy' = W_out^T dphi(x', u).
        """
        self._check_readout()
        self._check_autonomous(options)
        reservoir = self.reservoir_
        if not isinstance(reservoir, LeakyReservoir):
            return self._generic_discrete_map(dt)
        n_units, d = reservoir.n_units, self.n_features_in_
        dtype, device = reservoir.input_weights.dtype, reservoir.input_weights.device
        weights = torch.as_tensor(self.readout_weights_, dtype=dtype, device=device)
        intercept = torch.as_tensor(self.readout_intercept_, dtype=dtype, device=device)
        leak = reservoir.leak_rate
        reservoir._refresh()

        def recurrent_times(matrix: torch.Tensor) -> torch.Tensor:
            """W @ matrix for matrix (N, m)."""
            if reservoir.is_sparse:
                # torch's CSR product: twice as fast as scipy's from 8 columns on the CPU,
                # and autograd follows it (fixed_points and find_cycles differentiate the
                # step).
                return torch.sparse.mm(reservoir._torch_sparse, matrix)
            return reservoir.recurrent_dense @ matrix

        def features_and_slope(x, u):
            """phi and d phi / d x (elementwise factor for the state part)."""
            if self.squared_units:
                slope = torch.ones_like(x)
                slope[..., ::2] = 2.0 * x[..., ::2]
                x_features = x.clone()
                x_features[..., ::2] = x[..., ::2].square()
            else:
                slope, x_features = None, x
            phi = torch.cat([x_features, u], -1) if self.readout_input else x_features
            return phi, slope

        def step_with_activation(z, recurrent=None):
            """The next z, tanh(...) and the features' slope; ``recurrent`` = (W x)^T when
            it is already known."""
            x, y = z[:, :n_units], z[:, n_units:]
            recurrent = recurrent_times(x.T).T if recurrent is None else recurrent
            pre = recurrent + y @ reservoir.input_weights.T + reservoir.bias
            h = torch.tanh(pre)
            x_next = (1.0 - leak) * x + leak * h
            phi, slope = features_and_slope(x_next, y)
            return torch.cat([x_next, phi @ weights + intercept], 1), h, slope

        def step(z):
            return step_with_activation(z)[0]

        def tangent(z, frame):
            batch, _, k = frame.shape
            # The frame in the layout (N, B, k) (a view when it comes from this function),
            # and one product with W for the states and all the frame's columns.
            dx = frame[:, :n_units].permute(1, 0, 2).reshape(n_units, batch * k)
            dy = frame[:, n_units:].permute(1, 0, 2).reshape(d, batch * k)
            products = recurrent_times(torch.cat([z[:, :n_units].T, dx], 1))
            z_next, h, slope = step_with_activation(z, products[:, :batch].T)
            inner = products[:, batch:] + reservoir.input_weights @ dy
            gain = (leak * (1.0 - h.square())).T.unsqueeze(-1)  # (N, B, 1)
            dx_next = ((1.0 - leak) * dx + gain.mul(inner.reshape(n_units, batch, k))
                       .reshape(n_units, batch * k))
            dphi_state = dx_next if slope is None else (
                slope.T.unsqueeze(-1) * dx_next.reshape(n_units, batch, k)).reshape(n_units, -1)
            dy_next = weights[:n_units].T @ dphi_state
            if self.readout_input:
                dy_next = dy_next + weights[n_units:].T @ dy
            pushed = torch.cat([dx_next, dy_next], 0).reshape(n_units + d, batch, k)
            return z_next, pushed.permute(1, 0, 2)

        return DiscreteMap(step=step, dim=n_units + d, time_step=dt, tangent=tangent,
                           initial_states=self._closed_loop_starts, dtype=dtype,
                           device=device, name=type(self).__name__, default_exponents=d)

    def _closed_loop_starts(self, n: int, seed: int | None = None) -> torch.Tensor:
        """[state, first forecast] after the end of the training data, jittered by 1e-6."""
        u = self._tensor(self.context_y_)[None]
        state = self._final_state(u)
        y = self._readout(self.features(state, u[:, -1]))
        return jittered_copies(torch.cat([state, y], 1), n, seed, 1e-6)

    def _generic_discrete_map(self, dt: float | None) -> DiscreteMap:
        """Closed loop of any reservoir module with ``step(u, state)``; tangents by autodiff.

        The state is z = [reservoir state (n_units), y (next input, scaled)]."""
        reservoir = self.reservoir_
        n_units, d = reservoir.n_units, self.n_features_in_

        def step(z: torch.Tensor) -> torch.Tensor:
            x, y = z[:, :n_units], z[:, n_units:]
            x_next = reservoir.step(y, x)
            return torch.cat([x_next, self._readout(self.features(x_next, y))], 1)

        return DiscreteMap(step=step, dim=n_units + d, time_step=dt,
                           initial_states=self._closed_loop_starts, dtype=self.dtype_,
                           device=self.device_, name=type(self).__name__, default_exponents=d)
