"""Dynamical-systems reconstruction estimators: PLRNN, shallow PLRNN and AL-RNN.

Each estimator fits a latent map z_t = F(z_{t-1}) (a :mod:`tsrnn.nn` module) with an
observation model to a measured series by teacher forcing (:mod:`tsrnn.dsr.teacher_forcing`),
keeps the checkpoint whose free-running trajectory best matches the data (in state space,
D_stsp, :func:`tsrnn.metrics.state_space_divergence`, and by default also in its power
spectra, D_H, :func:`tsrnn.metrics.power_spectrum_distance`), and then serves as a generative
model (``predict``) and as an object of analysis (Lyapunov spectrum, fixed points, symbolic
codes, region-transition graph).

Training follows the authors' recipe (Hess et al. 2023, "Generalized teacher forcing for
learning chaotic dynamics", ICML; Brenner et al. 2024, "Almost-linear RNNs yield highly
interpretable symbolic codes in dynamical systems reconstruction", NeurIPS): each epoch
``batches_per_epoch`` batches of ``batch_size`` windows of ``sequence_length`` + 1 steps,
optional Gaussian noise of ``noise`` standard deviations added to every batch, RAdam with
the learning rate decaying exponentially from ``learning_rate`` to ``learning_rate_final``.

Models (M latents, N observed columns):

- :class:`PLRNN`:        z_t = A z_{t-1} + W relu(z_{t-1}) + h
- :class:`ShallowPLRNN`: z_t = A z_{t-1} + W1 relu(W2 z_{t-1} + h2) + h1  (clipped:
  W1 [relu(W2 z + h2) - relu(W2 z)])
- :class:`ALRNN`:        z_t = A z_{t-1} + W phi*(z_{t-1}) + h, relu on the last P units only

In practice: the selection sees the geometry and the power spectra, not the rate of
divergence. On Lorenz-63 (5% noise) AL-RNN checkpoints with the best D_stsp and D_H often
have a largest Lyapunov exponent 20-30% too high, and no score computed from the data alone
told them apart (benchmarks/RESULTS.md, stops 13-16). Train several models (different
``random_state``; ``n_init`` keeps only the one the selection scores best) and look at what
each learned: ``lyapunov_spectrum`` (a 3-variable dissipative system cannot have three
exponents summing to more than 0) and ``fixed_points``.

Noisy data: the free runs hold no noise and the data do, so by default selection scores
even the true system at a floor (Rössler with 5% noise: D_stsp 0.57) and can prefer a model
blurred by too much chaos. ``selection_noise="auto"`` adds the data's own noise level to the
runs first. On Rössler (8 trainings) it lowered the median lambda_1 error of the kept models
from 32% to 15%, at the same D_H; on Lorenz-63, whose attractor is thick against the noise,
it changed little (2 of 8 choices, neither better). The default is 0.

The whole workflow, from noisy data to fixed points and symbolic codes, is in
``notebooks/02_reconstruction.ipynb``.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._progress import progress_bar
from .._torch import resolve_device, resolve_dtype
from .._validation import (
    as_float_array,
    check_bool,
    check_in_range,
    check_no_inf,
    check_option,
    check_positive,
    warn,
)
from ..exceptions import DivergenceError
from ..forecasting._data import as_series_list
from ..forecasting.base import (
    OPTIMIZERS,
    NeuralForecaster,
    _states,
    store_hyperparameters,
)
from ..nn import plrnn as _modules
from ._graphed import GraphedStep, capturable_optimizer, graph_supported
from .teacher_forcing import (
    OBSERVATIONS,
    SCHEMES,
    ReconstructionModel,
    _force,
    make_scheme,
    teacher_forced_run,
)

MISSING = ("raise", "mask")
SELECTIONS = ("dstsp", "dstsp+dh")

# Generated points per checkpoint evaluation (at most; fewer for a shorter reference), run as
# this many parallel trajectories from states along the reference data: the coverage of long
# runs for a fraction of the sequential steps. As many points as the authors' 100,000-step
# test runs: with 20,000 (8 x 2,500) the score of a chaotic model was too noisy to select
# by (measured on Lorenz-63, AL-RNN: the 12 best checkpoints by that score read 0.29-2.1 on
# 100,000 steps, and the one selected 1.37 while five others read 0.29-0.37).
_SELECTION_POINTS = 100_000
_SELECTION_TRAJECTORIES = 16
# Steps each of those runs makes before it is recorded (at most; no more than the reference
# has points): a model can follow the data's attractor for a while and then settle on another
# one (a long chaotic transient into a cycle), which short runs from data states would miss
# (measured on Lorenz-63: a checkpoint that scored 0.59 on 2,500-step runs read 2.25 on
# 100,000 steps).
_SELECTION_TRANSIENT = 10_000
# A free run that leaves the finite range is scored as if it sat far outside the data.
_FAR_AWAY = 1e6
# selection="dstsp+dh": the checkpoints with the best short-run D_stsp measured again on one
# long free run (as long as the longest reference, at most _SELECTION_POINTS steps, after
# _LONG_RUN_TRANSIENT steps from its first row), by D_stsp + D_H. The short runs cannot
# give D_H (spectra of 6,250-step pieces are too coarse: on Lorenz-63 their D_H correlated
# with the held-out one at r = 0.35 over 160 AL-RNN checkpoints); this long run's D_H reads
# the held-out D_H of the benchmark's generated run at r = 0.91 (80 checkpoints of eight
# runs; its D_stsp at r = 0.86, the short runs' at 0.88). It changed the choice in four of
# the eight runs, lowering the held-out D_stsp + D_H in three, and in the one run holding
# checkpoints that met D_stsp, D_H and lambda_1 together it picked one (RESULTS.md).
_LONG_RUN_CANDIDATES = 10
_LONG_RUN_TRANSIENT = 1_000
# selection_noise="auto" reads the noise off the data's fourth differences; a level above this
# fraction of a column's standard deviation is not noise on a resolved flow (a map, or a flow
# sampled too coarsely) and is not used.
_AUTO_NOISE_LIMIT = 0.25
# A last-epoch training loss (mean squared error on standardised data) at or above this
# explains less than a fifth of the data's variance: training did not get anywhere.
_UNLEARNED_LOSS = 0.8


def observation_noise_level(series: list[np.ndarray]) -> np.ndarray:
    """Standard deviation of white observation noise in each column, estimated from fourth
    differences: for y_t = x_t + e_t with a smooth x sampled finely enough that its fourth
    differences vanish, var(Delta^4 y) = 70 var(e) (the squared binomial coefficients of
    order 4 sum to 70). Rows with NaN are skipped (no difference across them).

    Parameters
    ----------
    series : list of arrays (T_i, N)

    Returns
    -------
    array (N,), in the units of the series.
    """
    differences = [np.diff(y, n=4, axis=0) for y in series if len(y) > 4]
    differences = np.concatenate(differences) if differences else np.empty((0, 0))
    differences = differences[np.isfinite(differences).all(axis=1)]
    if len(differences) < 2:
        raise ValueError("selection_noise='auto' needs at least 6 consecutive complete rows "
                         "to estimate the noise level from")
    return np.sqrt(np.mean(differences ** 2, axis=0) / 70.0)


@dataclasses.dataclass
class RegionGraph:
    """Transitions between linear subregions along a trajectory.

    Attributes
    ----------
    codes : int array (K,)
        The visited subregions, sorted: the ReLU sign bits read as a binary number, as
        :meth:`symbolic_codes` gives them (Python integers in an object array for models
        with more than 62 ReLU units).
    counts : int array (K, K)
        ``counts[i, j]`` = number of steps from subregion ``codes[i]`` to ``codes[j]``
        (self-transitions on the diagonal).
    """

    codes: np.ndarray
    counts: np.ndarray

    @property
    def n_regions(self) -> int:
        """Number of subregions visited."""
        return int(self.codes.size)

    def transition_matrix(self) -> np.ndarray:
        """Row-normalised counts: the empirical transition probabilities."""
        totals = self.counts.sum(axis=1, keepdims=True)
        return self.counts / np.where(totals > 0, totals, 1)

    def as_dict(self) -> dict[tuple[int, int], int]:
        """{(from code, to code): count} for the transitions that occur."""
        rows, cols = np.nonzero(self.counts)
        return {(int(self.codes[i]), int(self.codes[j])): int(self.counts[i, j])
                for i, j in zip(rows, cols)}


class DSREstimator(NeuralForecaster):
    """Base of the PLRNN-family estimators (see the module docstring).

    A concrete estimator names its latent module (``_latent_module``) and the weights that
    ``regularization`` penalises (``_coupling_names``); everything else is shared: the
    observation model, the forcing scheme, checkpoint selection (D_stsp, then D_stsp + D_H of
    long runs), prediction from a context, the discrete map for :mod:`tsrnn.analysis`,
    symbolic codes and region graphs.

    How the forcing composes with the training loop of
    :class:`~tsrnn.forecasting.base.NeuralForecaster`: ``fit`` builds a scheme object from
    ``teacher_forcing``/``alpha``/``forcing_interval``; every batch, ``_training_loss`` asks
    it for the forcing weights w_t, runs :func:`~tsrnn.dsr.teacher_forcing.teacher_forced_run`
    on the windows and hands the forced trajectory back to the scheme (the adaptive alpha
    rule reads the Jacobians there). ``_validation_loss`` is the D_stsp of short free runs,
    computed every ``checkpoint_every`` epochs; the base keeps the best checkpoint, and with
    selection="dstsp+dh" ``_train`` then measures the 10 best on one long free run each
    (``_select_by_long_run``) and keeps the lowest D_stsp + D_H.

    On a CUDA device the rollouts are fused Triton kernels and, with ``batches_per_epoch``
    set (fixed batch shapes), no exogenous inputs and no missing values, each training step
    (rollout, loss, backward, clipping, optimizer step) is captured once as a CUDA graph and
    replayed per batch (:mod:`tsrnn.dsr._graphed`): the same updates up to round-off, about
    15 times faster than one CPU thread on Lorenz-63 (benchmarks/bench_dsr_gpu.py).
    """

    _coupling_names: tuple[str, ...] = ("W",)
    # How the model is trained and its checkpoint chosen (may change before a partial_fit,
    # e.g. shorter windows to refine a model), and dt, the time one step stands for in
    # analyses (set it to None for per-step exponents). Predict free-runs from a context,
    # so the window length is not part of the fitted model.
    _training_params = NeuralForecaster._training_params | {
        "teacher_forcing", "alpha", "forcing_interval", "noise", "regularization",
        "selection", "selection_noise", "dt", "sequence_length"}
    # The forced loss changes with the forcing (adaptive alpha falls from 1): epochs' losses
    # are not comparable with the first batch's, and checkpoints are chosen by D_stsp.
    _fixed_objective = False
    # On CUDA, with a map the Triton rollout kernels run, replay each training step as one
    # CUDA graph (tsrnn/dsr/_graphed.py); False keeps the eager step (benchmarks compare).
    _graph_training: bool = True

    # ------------------------------------------------------------------ hooks
    def _latent_module(self, n_latent: int, generator: torch.Generator) -> nn.Module:
        raise NotImplementedError

    @property
    def _allow_nan(self) -> bool:  # NaN passes the base's checks only with masked forcing
        return getattr(self, "missing", "raise") == "mask"

    # As fit says it (DSREstimator.fit): partial_fit and predict said "remove or impute".
    _nan_remedy = ("the model takes missing observations (NaN) only with NaN-masked teacher "
                   "forcing: fit it with missing='mask'")

    # ------------------------------------------------------------------ checks
    def _check_hyperparameters(self) -> None:
        super()._check_hyperparameters()
        check_option(self.teacher_forcing, "teacher_forcing", tuple(SCHEMES))
        check_option(self.observation, "observation", tuple(OBSERVATIONS))
        check_option(self.missing, "missing", MISSING)
        check_option(self.selection, "selection", SELECTIONS)
        if isinstance(self.alpha, str):
            check_option(self.alpha, "alpha", ("adaptive",))
        else:
            check_in_range(self.alpha, "alpha", 0.0, 1.0)
        check_positive(self.forcing_interval, "forcing_interval", integer=True)
        # A setting the chosen scheme does not read is announced (the defaults are not).
        defaults = inspect.signature(type(self)).parameters
        if self.teacher_forcing != "gtf" and self.alpha != defaults["alpha"].default:
            warn(f"alpha={self.alpha!r} has no effect with teacher_forcing="
                 f"{self.teacher_forcing!r}: it is the forcing strength of 'gtf'")
        if (self.teacher_forcing != "sparse"
                and self.forcing_interval != defaults["forcing_interval"].default):
            warn(f"forcing_interval={self.forcing_interval} has no effect with teacher_forcing="
                 f"{self.teacher_forcing!r}: it is the interval tau of 'sparse'")
        if (self.teacher_forcing == "sparse"
                and self.forcing_interval >= self.sequence_length):
            warn(f"forcing_interval={self.forcing_interval} is not shorter than "
                 f"sequence_length={self.sequence_length}: no step of a window is forced "
                 "after its first, so the training is plain BPTT")
        check_positive(self.noise, "noise", allow_zero=True)
        if isinstance(self.selection_noise, str):
            check_option(self.selection_noise, "selection_noise", ("auto",))
        else:
            check_positive(self.selection_noise, "selection_noise", allow_zero=True)
        check_positive(self.regularization, "regularization", allow_zero=True)
        if self.batches_per_epoch is not None:
            check_positive(self.batches_per_epoch, "batches_per_epoch", integer=True)
        check_positive(self.checkpoint_every, "checkpoint_every", integer=True)
        if self.early_stopping is not None and self.early_stopping < self.checkpoint_every:
            # Between checkpoints the last D_stsp stands in, so every unscored epoch counts
            # as one without improvement: a shorter patience stopped training before the
            # next checkpoint was ever scored.
            raise ValueError(
                f"early_stopping={self.early_stopping} is shorter than checkpoint_every="
                f"{self.checkpoint_every}: D_stsp is scored every checkpoint_every epochs, "
                "so training would stop before the next score; use early_stopping >= "
                "checkpoint_every (k * checkpoint_every: k checkpoints without improvement)")
        check_positive(self.n_init, "n_init", integer=True)
        if self.n_jobs is not None and (isinstance(self.n_jobs, bool)
                                        or not isinstance(self.n_jobs, int | np.integer)
                                        or self.n_jobs == 0 or self.n_jobs < -1):
            raise ValueError(f"n_jobs must be None, -1 or a positive integer, got "
                             f"{self.n_jobs!r}")
        if self.max_time is not None:
            check_positive(self.max_time, "max_time")
        if self.dt is not None:
            check_positive(self.dt, "dt")
        if self.missing == "mask" and self.observation != "identity":
            raise ValueError("missing='mask' (NaN-masked forcing) needs observation='identity'")

    def fit(self, y: Any, X: Any = None):
        """Fit the model to one or several trajectories (see the base class).

        NaN marks a missing observation; it is accepted only with ``missing="mask"``, where
        missing entries are neither forced nor part of the loss.
        """
        check_option(self.missing, "missing", MISSING)
        arrays, collection = as_series_list(y, "y", allow_nan=True)
        for i, array in enumerate(arrays):
            bad = np.isinf(array) if self.missing == "mask" else ~np.isfinite(array)
            if bad.any():
                row, column = (int(v) for v in np.argwhere(bad)[0])
                where = f"trajectory {i} of y" if collection else "y"
                kind = "inf" if np.isinf(array[row, column]) else "NaN"
                hint = ("mark missing observations with NaN" if kind == "inf" else
                        f"{type(self).__name__} trains on missing observations only with "
                        "NaN-masked teacher forcing: pass missing='mask'")
                raise ValueError(f"{where} contains {kind} (first at row {row}, column "
                                 f"{column}); {hint}")
        if self.n_init == 1:
            return super().fit(y, X)
        self._check_hyperparameters()
        return self._fit_restarts(y, X)

    def _fit_restarts(self, y: Any, X: Any):
        """``n_init`` trainings with seeds random_state + k; keep the best by the selection
        score (D_stsp, or D_stsp + D_H of the long run with selection="dstsp+dh")."""
        self._check_files()
        self._clear_learned_state()
        # The trainings seed the global generators; the caller's states come back at the end.
        with self._seeded(None):
            return self._run_restarts(y, X)

    def _run_restarts(self, y: Any, X: Any):
        if self.random_state is None:
            seeds = [int(s) for s in np.random.SeedSequence().generate_state(self.n_init)]
        else:
            seeds = [int(self.random_state) + k for k in range(self.n_init)]
        jobs = 1 if self.n_jobs is None else int(self.n_jobs)
        available = (os.cpu_count() or 1) if jobs == -1 else jobs
        workers = min(self.n_init, available)
        threads = max(1, torch.get_num_threads() // workers)
        trainings = [self._restart_parameters(k, seed) for k, seed in enumerate(seeds)]
        # One progress bar over the trainings (each training's own bar stays off).
        bar = progress_bar(total=self.n_init, verbose=self._verbose,
                           desc=f"{type(self).__name__} trainings")
        if workers == 1:
            finished = (_fit_one(type(self), params, y, X, None) for params in trainings)
        elif resolve_device(self.device).type == "cuda":
            # On a GPU the trainings are threads of this process, each on its own CUDA
            # stream: one training step is a few hundred microseconds of small kernels, so
            # kernels of several trainings run side by side. Separate processes would
            # time-slice the GPU instead (without MPS their kernels never overlap).
            finished = _threads_on_one_gpu(type(self), trainings, y, X, workers)
        else:
            from joblib import Parallel, delayed

            finished = Parallel(n_jobs=workers, backend="loky", return_as="generator")(
                delayed(_fit_one)(type(self), params, y, X, threads) for params in trainings)
        results = []
        with bar:
            for result in finished:
                results.append(result)
                bar.update(1)
        scores = [score for score, _, _ in results]
        failures = [f"training {k} (random_state={seeds[k]}): {failure}"
                    for k, (_, _, failure) in enumerate(results) if failure is not None]
        best = int(np.argmin(scores))
        if not np.isfinite(scores[best]):
            if failures:
                raise DivergenceError(f"every one of the {self.n_init} trainings of "
                                      f"{type(self).__name__} diverged or kept no finite "
                                      "checkpoint; " + "; ".join(failures))
            raise RuntimeError(f"none of the {self.n_init} trainings of {type(self).__name__} "
                               "produced a checkpoint with a finite selection score")
        for failure in failures:
            warn(f"{failure}; left out, the best of the other trainings is kept")
        self._set_state(results[best][1])
        self.fit_params_ = self.get_params(deep=False)  # this fit's, not the kept training's
        self.init_scores_ = scores
        self.best_init_ = best
        return self

    def _check_files(self) -> None:
        if self.n_init == 1:
            return super()._check_files()
        super()._check_files()  # the type of checkpoint_path
        # Every training's file checked before any trains (one found later would leave the
        # earlier trainings' files behind, and their time spent, for nothing).
        taken = [p["checkpoint_path"] for p in (self._restart_parameters(k, 0)
                                                for k in range(int(self.n_init)))
                 if p["checkpoint_path"] is not None and Path(p["checkpoint_path"]).exists()]
        if taken:
            raise FileExistsError(f"checkpoint files {taken} exist; choose a new "
                                  "checkpoint_path so that no saved model is overwritten")

    def _restart_parameters(self, k: int, seed: int) -> dict:
        params = self.get_params()
        params.update(n_init=1, n_jobs=None, random_state=seed, verbose=False)
        if self.checkpoint_path is not None:
            path = Path(self.checkpoint_path)
            params["checkpoint_path"] = str(path.with_name(f"{path.stem}-init{k}{path.suffix}"))
        return params

    # ------------------------------------------------------------------ module
    def _n_latent(self) -> int:
        n_observed = self.n_features_in_
        if self.n_latent is None:
            return n_observed
        n_latent = check_positive(self.n_latent, "n_latent", integer=True)
        if n_latent < n_observed:
            reason = ("with the identity observation the first N latents are the observations"
                      if self.observation == "identity" else
                      "the affine observation forces the latents with the pseudo-inverse of "
                      "B (N x M), which inverts x = B z + b only when M >= N")
            raise ValueError(
                f"n_latent={n_latent} is smaller than the {n_observed} observed columns of y: "
                f"{type(self).__name__} needs at least as many latent states as observations "
                f"({reason})"
            )
        return n_latent

    def _build_module(self) -> ReconstructionModel:
        n_latent = self._n_latent()
        generator = self._generator(offset=0)
        latent = self._latent_module(n_latent, generator)
        observation = OBSERVATIONS[self.observation](self.n_features_in_, n_latent,
                                                     generator=generator)
        return ReconstructionModel(latent, observation)

    def _context_length(self) -> int:
        # Enough rows to synchronise the unobserved latents and to seed analyses with states
        # spread over the attractor, without storing (and saving) all the training data.
        return max(1000, 4 * int(self.sequence_length))

    # ------------------------------------------------------------------ training
    def _fit(self, y_list, x_list) -> None:
        stacked = np.concatenate(y_list)
        with np.errstate(invalid="ignore"):
            constant = np.flatnonzero(~(np.nanmax(stacked, 0) > np.nanmin(stacked, 0)))
        if constant.size:
            # Checkpoints are scored by the state-space divergence, whose bins span each
            # column's range: found here, not after the first epochs of training.
            raise ValueError(f"column(s) {constant.tolist()} of y are constant; a "
                             "reconstruction needs every observed variable to vary (drop "
                             "them, or pass them as X)")
        # More training (partial_fit) carries the adaptive alpha on from where it ended.
        carried = getattr(self, "alpha_", None) if getattr(self, "_continue_training",
                                                            False) else None
        options = {"initial_alpha": float(carried)} if isinstance(carried, float) else {}
        self._forcing_ = make_scheme(self.teacher_forcing, self.alpha, self.forcing_interval,
                                     **options)
        self._deadline_ = None if self.max_time is None else time.perf_counter() + self.max_time
        self._epoch_started_ = None
        self._epoch_seconds_ = []
        self._n_scored_ = 0
        self._last_score_ = math.inf
        self.checkpoint_scores_ = []
        self.selection_scores_ = []
        self.selection_score_ = None
        self.stopped_by_time_ = False
        self._graph_step_ = None
        self._candidates_ = []  # (short-run D_stsp, epoch, weights) of the best checkpoints
        self._selection_references_ = None
        self._score_cache_ = None  # (references, their finite rows, their D_stsp binning)
        self._score_seconds_ = []  # how long each short-run scoring took
        # Epochs whose scoring free run left the finite range (_generated), and whether the
        # run being scored has: the loss is teacher-forced and can stay finite meanwhile.
        self._diverged_runs_ = set()
        self._run_left_finite_range_ = False
        started = time.perf_counter()
        try:
            super()._fit(y_list, x_list)
        finally:
            self._graph_step_ = None  # frees the graph and its memory pool
            self._candidates_, self._selection_references_ = [], None
            self._score_cache_ = None
        self.training_time_ = time.perf_counter() - started
        self.n_epochs_ = len(self.history_["train_loss"])
        self.alpha_ = self._forcing_.current_alpha
        self._warn_if_unlearned()

    def _warn_if_unlearned(self) -> None:
        """Warn when the last epoch's loss is still at the data's variance: the model then
        predicts the data no better than their mean (on standardised data, a loss of 1).
        Seen with the authors' schedule (1e-3 decaying to 1e-6 over max_epochs) cut to a
        few dozen epochs: most of them ran at rates too small to move the weights."""
        losses = self.history_["train_loss"]
        if not losses or not self.scale or losses[-1] < _UNLEARNED_LOSS:
            return
        warn(f"{type(self).__name__}: after {len(losses)} epochs the training loss is "
             f"{losses[-1]:.3g}, about the variance of the standardised data: the model "
             "predicts them no better than their mean. Train longer (max_epochs) or faster "
             f"(learning_rate={self.learning_rate:g}"
             + ("" if self.learning_rate_final is None else
                f", decaying to learning_rate_final={self.learning_rate_final:g} over the "
                f"max_epochs={self.max_epochs} epochs") + ")", RuntimeWarning)

    def _train_epoch(self, train, optimizer, generator, epoch, best_state):
        now = time.perf_counter()
        first = self._epoch_started_ is None
        if not first:
            self._epoch_seconds_.append(now - self._epoch_started_)
        self._epoch_started_ = now
        # The first epoch always runs: a budget spent on setting up (the first optimizer
        # of a process takes seconds) returned the untrained initial model, silently.
        if self._deadline_ is not None and not first:
            # An epoch starts only if it would end within the budget, judged by the longest
            # of the last checkpoint_every epochs (one of them with a checkpoint scored).
            recent = self._epoch_seconds_[-int(self.checkpoint_every):]
            if now + (max(recent) if recent else 0.0) > self._deadline_ - self._reserved():
                # The base stops on None and restores the best checkpoint, as after a
                # divergence with divergence="restore".
                self.stopped_by_time_ = True
                return None
        if not self._graphed(self.module_):
            return super()._train_epoch(train, optimizer, generator, epoch, best_state)
        # The base loop with each step replayed from a CUDA graph: the same updates, the
        # same divergence checks (made after the replayed step; training stops either way).
        self.module_.train()
        # Reading a loss waits for its step, and the next batch's launch would wait with it
        # (measured: 1.6 ms a batch, of which the step is 0.4 ms). Unless the forcing adapts
        # (its rule reads the forced states every few batches anyway), the losses stay on
        # the device and are checked in order when the epoch ends. Batches are made on the
        # host in page-locked memory and copied asynchronously, so that the host prepares
        # batch k + 1 while the device trains on batch k.
        deferred = not self._forcing_.adapts
        pending = torch.empty(int(self.batches_per_epoch), dtype=self.dtype_,
                              device=self.device_) if deferred else None
        values = []
        for k, (y, _) in enumerate(self._epoch_batches(train, generator, device="cpu")):
            y = y.pin_memory()
            if self._graph_step_ is None:
                self._graph_step_ = GraphedStep(self.module_, optimizer, self._penalty,
                                                self.gradient_clip, y.to(self.device_))
            loss = self._graph_step_(y, self._forcing_.weights(y.shape[1] - 1))
            if deferred:
                pending[k] = loss
            else:
                values.append(float(loss))
                if self._diverged(epoch, values[-1:], best_state):
                    return None
            self._forcing_.after_batch(self.module_.latent, self._graph_step_.fed)
        if deferred:
            values = pending.tolist()
            if self._diverged(epoch, values, best_state):
                return None
        return float(np.mean(values))

    def _graphed(self, module: ReconstructionModel) -> bool:
        """Whether training steps are replayed as CUDA graphs: on CUDA with a Triton-run map,
        fixed batch shapes (``batches_per_epoch``), no exogenous inputs, no NaN."""
        return bool(self._graph_training and self.batches_per_epoch is not None
                    and not self.n_exog_ and self.missing == "raise"
                    and graph_supported(module, self.device_))

    def _make_optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        if self._graphed(module):
            return capturable_optimizer(OPTIMIZERS[self.optimizer], module, self.learning_rate,
                                        self.weight_decay)
        return super()._make_optimizer(module)

    def _penalty(self, module: ReconstructionModel) -> torch.Tensor | None:
        """lambda * the sum of squared coupling weights (None without regularisation)."""
        if not self.regularization:
            return None
        penalty = sum(getattr(module.latent, name).square().sum()
                      for name in self._coupling_names)
        return self.regularization * penalty

    def _epoch_batches(self, pairs, generator, device: torch.device | str | None = None):
        """``batches_per_epoch`` batches of random windows (None: cover the data once), each
        with fresh Gaussian noise of ``noise`` standard deviations (the data are
        standardised, so ``noise`` is a fraction of each column's std; data units with
        ``scale=False``); on ``device`` (None: the model's)."""
        if self.batches_per_epoch is None:
            batches = super()._epoch_batches(pairs, generator, device)
        else:
            batches = self._random_batches(pairs, generator, device)
        for y, x in batches:
            if self.noise:
                noise = torch.randn(y.shape, generator=generator, dtype=torch.float64)
                y = y + self.noise * noise.to(y)
            yield y, x

    def _random_batches(self, pairs, generator, device: torch.device | str | None = None):
        length = self._window_length()
        counts = np.array([y.shape[0] - length + 1 for y, _ in pairs])
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        for _ in range(int(self.batches_per_epoch)):
            picks = torch.randint(int(counts.sum()), (int(self.batch_size),),
                                  generator=generator).numpy()
            series = np.searchsorted(np.cumsum(counts), picks, side="right")
            starts = [picks[series == i] - offsets[i] for i in range(len(pairs))]
            yield self._windows(pairs, starts, device)

    def _training_loss(self, module: ReconstructionModel, y: torch.Tensor,
                       x: torch.Tensor | None) -> torch.Tensor:
        """Teacher-forced MSE of the observations (+ regularisation), see the module doc."""
        weights = self._forcing_.weights(y.shape[1] - 1)
        run = teacher_forced_run(module, y, weights, inputs=x)
        loss = run.loss()
        penalty = self._penalty(module)
        if penalty is not None:
            loss = loss + penalty
        if module.training:
            self._forcing_.after_batch(module.latent, run.inputs)
        return loss

    def _checkpoint_snapshot(self):
        # During training its checkpoint_scores_ are those up to best_epoch_ (the checkpoint
        # just scored); after the long-run selection, the model fit keeps.
        snapshot = super()._checkpoint_snapshot()
        if self.selection_score_ is None:
            snapshot.best_epoch_ = (self.checkpoint_scores_[-1][0] if self.checkpoint_scores_
                                    else 0)
        snapshot.alpha_ = self._forcing_.current_alpha  # where a resumed training goes on
        return snapshot

    # ------------------------------------------------------------------ model selection
    _without_validation = ("checkpoints are selected by free runs compared with the "
                           "training data")

    def _split_validation(self, y_list, x_list):
        train, validation = super()._split_validation(y_list, x_list)
        # Without a validation split the free runs are compared with the training data, as
        # the authors do: D_stsp measures the attractor's geometry, not a fit to points.
        return train, (validation or train)

    def _fixed_windows(self, pairs) -> list:
        """The reference trajectories of checkpoint selection (not windows: D_stsp compares
        whole occupation densities)."""
        return list(pairs)

    def _validation_loss(self, module: ReconstructionModel, references: list) -> float:
        """D_stsp of a free run every ``checkpoint_every`` epochs (and after the first and
        the last); in between the last value, so that no unscored epoch becomes the best."""
        epoch = self._n_scored_
        self._n_scored_ += 1
        due = (epoch == 0 or (epoch + 1) % int(self.checkpoint_every) == 0
               or epoch + 1 == int(self.max_epochs))
        if due:
            self._selection_references_ = references
            started = time.perf_counter()
            self._run_left_finite_range_ = False
            self._last_score_ = self._reconstruction_score(module, references)
            if self._run_left_finite_range_:
                self._diverged_runs_.add(epoch)
            self._score_seconds_.append(time.perf_counter() - started)
            self.checkpoint_scores_.append((epoch, self._last_score_))
            if self.selection == "dstsp+dh" and math.isfinite(self._last_score_):
                self._keep_candidate(module, epoch, self._last_score_)
        return self._last_score_

    def _keep_candidate(self, module: ReconstructionModel, epoch: int, score: float) -> None:
        """Keep the weights of the _LONG_RUN_CANDIDATES best checkpoints by short-run D_stsp
        (on the training device; the models are small)."""
        candidates = self._candidates_
        if len(candidates) == _LONG_RUN_CANDIDATES and score >= candidates[-1][0]:
            return
        weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
        candidates.append((score, epoch, weights))
        candidates.sort(key=lambda candidate: (candidate[0], candidate[1]))
        del candidates[_LONG_RUN_CANDIDATES:]

    def _reserved(self) -> float:
        """Seconds kept free at the end of a ``max_time`` budget for the long runs of
        selection="dstsp+dh": per candidate the median short-run scoring so far (the first
        may carry one-time costs) times the ratio of sequential steps (a long run is one
        trajectory; the short ones run side by side)."""
        if self.selection != "dstsp+dh" or not self._score_seconds_:
            return 0.0
        references = self._selection_references_
        if self.n_exog_:
            ratio = 1.0  # driven models: the same runs along each reference
        else:
            n_truth = sum(len(y) for y, _ in references)
            short = (min(_SELECTION_TRANSIENT, n_truth)
                     + math.ceil(min(n_truth, _SELECTION_POINTS) / _SELECTION_TRAJECTORIES))
            longest = max(len(y) for y, _ in references)
            ratio = (_LONG_RUN_TRANSIENT + min(longest, _SELECTION_POINTS)) / short
        return _LONG_RUN_CANDIDATES * float(np.median(self._score_seconds_)) * ratio

    def _train(self, y_list, x_list) -> None:
        super()._train(y_list, x_list)
        if self.selection == "dstsp+dh" and self._candidates_:
            self._select_by_long_run()
        kept = getattr(self, "best_epoch_", None)
        if kept in self._diverged_runs_:
            # Teacher forcing keeps the loss finite while the free-running model blows up:
            # the checkpoint kept is then only the least bad of diverging ones.
            warn(f"the kept model (epoch {kept}) leaves the finite range when run freely, as "
                 f"did the free runs of {len(self._diverged_runs_)} of the "
                 f"{len(self.checkpoint_scores_)} scored checkpoints (the first at epoch "
                 f"{min(self._diverged_runs_)}): the learned dynamics diverge although the "
                 "teacher-forced loss did not; lower learning_rate, force more (alpha, "
                 "forcing_interval) or train longer")

    @torch.no_grad()
    def _select_by_long_run(self) -> None:
        """Measure the candidate checkpoints on one long free run each and keep the one with
        the lowest D_stsp + D_H (selection="dstsp+dh")."""
        references = self._selection_references_
        module = self.module_.eval()
        results = []
        for _, epoch, weights in sorted(self._candidates_, key=lambda candidate: candidate[1]):
            module.load_state_dict(weights)
            self._run_left_finite_range_ = False
            d_stsp, d_h = self._long_run_score(module, references)
            if self._run_left_finite_range_:
                self._diverged_runs_.add(epoch)
            results.append((d_stsp + d_h, epoch, d_stsp, d_h, weights))
        total, epoch, _, _, weights = min(results, key=lambda result: (result[0], result[1]))
        module.load_state_dict(weights)
        self.selection_scores_ = [(e, d_stsp, d_h) for _, e, d_stsp, d_h, _ in results]
        self.selection_score_ = float(total)
        self.best_epoch_ = int(epoch)
        if self.checkpoint_path is not None:  # the file holds the model fit returns
            self._write_checkpoint()

    @torch.no_grad()
    def _long_run_score(self, module: ReconstructionModel, references: list
                        ) -> tuple[float, float]:
        """(D_stsp, D_H) of one long free run against the references (see
        _LONG_RUN_CANDIDATES); a driven model runs along each reference's inputs from its
        start, and D_H is their mean, each over its longest stretch without NaN (left out,
        0, where that is shorter than 78 steps)."""
        from ..metrics import power_spectrum_distance

        _, divergence = self._score_truth(references)
        if self.n_exog_:
            pairs = self._driven_runs(module, references)
        else:
            y = max((y for y, _ in references), key=len)
            n_steps = min(len(y), _SELECTION_POINTS)
            z = self._initial_latent(module, y[:1])
            states = module.free_run(z, _LONG_RUN_TRANSIENT + n_steps)[:, _LONG_RUN_TRANSIENT:]
            pairs = [(y[:n_steps], self._generated(module, states))]
        d_stsp = divergence(np.concatenate([g for _, g in pairs]))
        # D_H needs 78 steps (40 frequency bins for its default smoothing) without gaps: a
        # reference with missing values counts by its longest complete stretch (one NaN
        # left D_H out of the selection altogether), shorter ones are left out.
        spectra = []
        for y, g in pairs:
            start, stop = _longest_complete_stretch(y)
            y = y[start:stop]
            if len(y) >= 78 and (np.ptp(y, axis=0) > 0).all():
                spectra.append(power_spectrum_distance(y, g[:len(y)]))
        return d_stsp, float(np.mean(spectra)) if spectra else 0.0

    def _driven_runs(self, module: ReconstructionModel, references: list) -> list:
        """(observed rows, generated rows) of one free run per reference from its first
        row along its inputs (at most _SELECTION_POINTS steps): a driven model's runs."""
        pairs = []
        for y, x in references:
            z = self._initial_latent(module, y[:1])
            steps = min(len(y) - 1, _SELECTION_POINTS)
            states = module.free_run(z, steps, self._tensor(x[1:steps + 1])[None])
            pairs.append((y[1:steps + 1], self._generated(module, states)))
        return pairs

    def _generated(self, module: ReconstructionModel, states: torch.Tensor) -> np.ndarray:
        """Observations (T, N) of free-run states as selection compares them with the data:
        a run that left the finite range placed far outside the data (so that it scores
        badly instead of failing), and the ``selection_noise`` added (the same draws for
        every checkpoint, so that the noise does not reorder them)."""
        generated = module.observe(states).reshape(-1, self.n_features_in_)
        generated = generated.double().cpu().numpy()
        if not np.isfinite(generated).all():
            self._run_left_finite_range_ = True
        generated = np.clip(np.nan_to_num(generated, nan=_FAR_AWAY, posinf=_FAR_AWAY,
                                          neginf=-_FAR_AWAY), -_FAR_AWAY, _FAR_AWAY)
        level = getattr(self, "selection_noise_", None)
        if level is not None and level.any():
            draws = np.random.default_rng(0).standard_normal(generated.shape)
            generated = generated + level * draws
        return generated

    def _selection_noise_level(self, references: list) -> np.ndarray:
        """Per column, the standard deviation of the noise ``_generated`` adds (in the units
        of the references: standardised unless ``scale=False``)."""
        n_features = references[0][0].shape[1]
        if self.selection_noise != "auto":
            return np.full(n_features, float(self.selection_noise))
        series = [y for y, _ in references]
        level = observation_noise_level(series)
        rows = np.concatenate(series)
        spread = rows[np.isfinite(rows).all(axis=1)].std(axis=0)
        ratio = level / np.where(spread > 0, spread, 1.0)
        if (ratio > _AUTO_NOISE_LIMIT).any():
            warn("selection_noise='auto': the data's fourth differences put the noise at "
                 f"{np.round(ratio, 3).tolist()} of the columns' standard deviations, more "
                 f"than {_AUTO_NOISE_LIMIT}: not noise on a finely sampled flow (a map, or "
                 "too coarse a sampling?); selecting without added noise (pass a number "
                 "to set the level)")
            return np.zeros(n_features)
        return level

    def _score_truth(self, references: list):
        """The references' finite rows and D_stsp against them (a function of generated
        rows), made once for a list of references: every checkpoint is scored against the
        same data, whose binning need not be redone (the same values as
        ``state_space_divergence(truth, generated)``); and ``selection_noise_`` for them."""
        from ..metrics import state_space_divergence
        from ..metrics.reconstruction import BinnedReference

        cached = getattr(self, "_score_cache_", None)
        if cached is None or cached[0] is not references:
            truth = np.concatenate([y for y, _ in references])
            truth = truth[np.isfinite(truth).all(axis=1)]
            if truth.shape[1] < 6:  # state_space_divergence's "auto": binning below 6
                divergence = BinnedReference(truth).divergence
            else:
                def divergence(generated: np.ndarray) -> float:
                    return float(state_space_divergence(truth, generated))
            cached = self._score_cache_ = (references, truth, divergence)
            self.selection_noise_ = self._selection_noise_level(references)
        return cached[1], cached[2]

    @torch.no_grad()
    def _reconstruction_score(self, module: ReconstructionModel, references: list) -> float:
        truth, divergence = self._score_truth(references)
        n_points = min(len(truth), _SELECTION_POINTS)
        if self.n_exog_:
            # Driven models: one run per reference from its start, along its own inputs.
            generated = np.concatenate([g for _, g in self._driven_runs(module, references)])
        else:
            series = [y for y, _ in references]
            starts = []
            for i in range(_SELECTION_TRAJECTORIES):
                y = series[i % len(series)]
                starts.append(y[int(i * (len(y) - 1) / _SELECTION_TRAJECTORIES)])
            z = self._initial_latent(module, np.stack(starts))
            transient = min(_SELECTION_TRANSIENT, len(truth))
            steps = math.ceil(n_points / _SELECTION_TRAJECTORIES)
            states = module.free_run(z, transient + steps)[:, transient:]
            generated = self._generated(module, states)
        return float(divergence(generated))

    def _initial_latent(self, module: ReconstructionModel, rows: np.ndarray) -> torch.Tensor:
        """z_1 from observation rows (B, N); missing entries count as 0 (the data mean)."""
        x = torch.nan_to_num(self._tensor(rows))
        return module.observation.initial_state(x)

    # ------------------------------------------------------------------ latent trajectories
    def _infer(self, y: np.ndarray, x: np.ndarray | None) -> torch.Tensor:
        """Forced latent states ztilde_1 .. ztilde_T (T, M) along standardised rows ``y``:
        z_1 = [x_1; L x_1], then each step's observed latents replaced by the data."""
        module = self.module_
        data = self._tensor(y)[None]
        observed = ~torch.isnan(data)
        signals = module.observation.forcing_signal(torch.nan_to_num(data))
        inputs = None if x is None else self._tensor(x)[None]
        z = self._initial_latent(module, y[:1])
        states = [z]
        # Which rows are complete, read once: a per-step check (a device sync each) cost
        # more than the step itself.
        complete = observed[0].all(-1).tolist()
        signals, observed = signals[0].unbind(0), observed[0].unbind(0)
        drive = [None] * len(signals) if inputs is None else inputs[0].unbind(0)
        with torch.no_grad():
            for t in range(1, len(signals)):
                z = module.step(z, None if drive[t] is None else drive[t][None])
                z = _force(z, signals[t][None], None if complete[t] else observed[t][None],
                           1.0)
                states.append(z)
        return torch.cat(states)

    def _predict(self, n_steps, context_y, context_x, future_x):
        module = self.module_.eval()
        z = self._infer(context_y, context_x)[-1:]
        inputs = None if future_x is None else self._tensor(future_x)[None]
        states = module.free_run(z, n_steps, inputs)
        return module.observe(states)[0].double().cpu().numpy()

    def _scaled(self, data: Any, name: str) -> np.ndarray:
        # A DataFrame with the training columns in another order would be read by position
        # (as predict's context, the base refuses it).
        check_columns = getattr(self, "_check_column_names", None)
        if check_columns is not None:
            check_columns(data, name)
        raw = as_float_array(data, name, ndim=(1, 2), allow_nan=self._allow_nan,
                             remedy=self._nan_remedy)
        raw = raw[:, None] if raw.ndim == 1 else raw
        if self._allow_nan:
            check_no_inf(raw, name)
        if raw.shape[1] != self.n_features_in_ or raw.shape[0] == 0:
            raise ValueError(f"{name} must have shape (T, {self.n_features_in_}) with T >= 1, "
                             f"got {raw.shape}")
        return self.y_scaler_.transform(raw)

    def infer_latents(self, y: Any) -> np.ndarray:
        """Latent states (T, M) along observations ``y`` (T, N) in data units, by identity
        forcing of the observed latents (the state the model is in at each step)."""
        self._check_fitted()
        self._refuse_inputs("infer_latents")
        with torch.no_grad():
            return self._infer(self._scaled(y, "y"), None).double().cpu().numpy()

    def generate_latents(self, n_steps: int, context: Any = None) -> np.ndarray:
        """The latent trajectory (n_steps, M) of the free run after ``context`` (the end of
        the training data when None); ``predict`` returns its observations."""
        self._check_fitted()
        self._refuse_inputs("generate_latents")
        n_steps = check_positive(n_steps, "n_steps", integer=True)
        rows = self.context_y_ if context is None else self._scaled(context, "context")
        with torch.no_grad():
            z = self._infer(rows, None)[-1:]
            return self._checked_run(self.module_.free_run(z, n_steps)[0]).double().cpu(
                ).numpy()

    def _checked_run(self, states: torch.Tensor) -> torch.Tensor:
        """A free run's latent states (T, M), with predict's warning where they leave the
        finite range (codes and latents of such a run would be garbage, silently)."""
        finite = torch.isfinite(states).all(-1)
        if not bool(finite.all()):
            first = int(torch.nonzero(~finite)[0])
            warn(f"the free run of {type(self).__name__} left the finite range at step "
                 f"{first}: the learned dynamics diverge from this state", RuntimeWarning)
        return states

    def latent_to_data(self, z: Any) -> np.ndarray:
        """Observations in data units of latent states ``z`` (..., M), e.g. of fixed points."""
        self._check_fitted()
        values = _states(z, self.module_.n_latent, "latent states",
                         "the latent size of this model")
        latent = torch.as_tensor(values, dtype=self.dtype_, device=self.device_)
        with torch.no_grad():
            observed = self.module_.observe(latent).double().cpu().numpy()
        return self.y_scaler_.inverse_transform(observed)

    def _refuse_inputs(self, what: str) -> None:
        if self.n_exog_:
            raise ValueError(f"{what} needs an autonomous model; this one was fitted with "
                             "exogenous inputs")

    # ------------------------------------------------------------------ analysis
    def as_discrete_map(self, dt: float | None = None, *, device: Any = None,
                        dtype: Any = None):
        """The fitted latent map z -> F(z) with its exact Jacobian, for tsrnn.analysis.

        Parameters
        ----------
        dt : float, optional
            Time one step stands for; None uses the estimator's ``dt``, else the step of
            the regular float index (times) of a DataFrame or Series it was fitted on
            (exponents per time unit in either case, per step otherwise).
        device, dtype
            Of the copy analysed (default: the training device, float64).

        Starting states are latent states along the end of the training data (on the
        attractor), slightly jittered.
        """
        self._check_fitted()
        self._refuse_inputs("as_discrete_map")
        time_step = self.dt if dt is None else check_positive(dt, "dt")
        info = getattr(self, "index_info_", None)
        if time_step is None and info is not None and info.kind == "float":
            # The data's own times: a model fitted on a frame indexed 0, 0.01, 0.02, ...
            # gave exponents per step, 100x too small, with no word.
            time_step = float(info.step)
        device = self.device_ if device is None else resolve_device(device)
        dtype = resolve_dtype(dtype, torch.float64)
        latent = copy.deepcopy(self.module_.latent).to(device=device, dtype=dtype).eval()
        with torch.no_grad():
            anchors = self._infer(self.context_y_, None).to(device=device, dtype=dtype)

        def initial_states(n: int, seed: int | None = None) -> torch.Tensor:
            generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
            index = torch.linspace(0, anchors.shape[0] - 1, n).round().long()
            jitter = torch.randn((n, anchors.shape[1]), generator=generator,
                                 dtype=torch.float64)
            return anchors[index.to(device)] + 1e-3 * jitter.to(anchors)

        base = latent.as_discrete_map(time_step)
        return dataclasses.replace(base, initial_states=initial_states,
                                   name=type(self).__name__)

    def fixed_points(self, **options) -> list:
        """Fixed points of the latent map (:func:`tsrnn.analysis.fixed_points`); locations
        are latent states, :meth:`latent_to_data` gives their observations."""
        from ..analysis import fixed_points

        self._check_fitted()
        return fixed_points(self, **options)

    def _region_labels(self, states: torch.Tensor) -> np.ndarray:
        patterns = self.module_.latent.region(states).cpu().numpy().astype(np.int64)
        if patterns.shape[1] <= 62:
            weights = 2 ** np.arange(patterns.shape[1] - 1, -1, -1, dtype=np.int64)
            return patterns @ weights
        # Too many ReLUs for an int64: the same binary number as a Python integer (an object
        # array), so that a region has one code in every call (numbering the patterns
        # visited, as before, gave it a different code in each).
        pad = (-patterns.shape[1]) % 8
        packed = np.packbits(patterns.astype(np.uint8), axis=1)
        return np.array([int.from_bytes(row.tobytes(), "big") >> pad for row in packed],
                        dtype=object)

    def _trajectory(self, y: Any, n_steps: int | None) -> torch.Tensor:
        self._check_fitted()
        self._refuse_inputs("symbolic codes")
        with torch.no_grad():
            if y is not None:
                return self._infer(self._scaled(y, "y"), None)
            n_steps = check_positive(10_000 if n_steps is None else n_steps, "n_steps",
                                     integer=True)
            z = self._infer(self.context_y_, None)[-1:]
            return self._checked_run(self.module_.free_run(z, n_steps)[0])

    def symbolic_codes(self, y: Any = None, n_steps: int | None = None) -> np.ndarray:
        """The linear subregion of each time step as an integer code (T,).

        The code reads the ReLU sign pattern of the state as a binary number: for the AL-RNN
        the signs of its last P units, at most 2^P symbols (Brenner et al. 2024); int64, or
        Python integers (an object array) for models with more than 62 ReLUs. Of the
        latent states along observations ``y`` (data units) when given, else of a free run
        of ``n_steps`` (default 10,000) after the training data.
        """
        return self._region_labels(self._trajectory(y, n_steps))

    def region_transition_graph(self, y: Any = None, n_steps: int | None = None
                                ) -> RegionGraph:
        """Counts of transitions between the subregions visited along a trajectory (the
        same trajectory as :meth:`symbolic_codes`)."""
        labels = self._region_labels(self._trajectory(y, n_steps))
        codes, index = np.unique(labels, return_inverse=True)
        counts = np.zeros((codes.size, codes.size), dtype=np.int64)
        np.add.at(counts, (index[:-1], index[1:]), 1)
        return RegionGraph(codes, counts)


def _longest_complete_stretch(y: np.ndarray) -> tuple[int, int]:
    """(start, stop) of the longest run of consecutive rows of ``y`` without NaN."""
    complete = np.concatenate([[False], np.isfinite(y).all(axis=1), [False]])
    edges = np.flatnonzero(np.diff(complete.astype(np.int8)))
    if edges.size == 0:
        return 0, 0
    starts, stops = edges[::2], edges[1::2]
    longest = int(np.argmax(stops - starts))
    return int(starts[longest]), int(stops[longest])


def _fit_one(cls: type, params: dict, y: Any, X: Any, threads: int | None):
    """One training of ``n_init``: (the score its kept checkpoint was selected by, its
    learned state, None), or (inf, None, the message) when it diverged. A module-level
    function so that joblib's worker processes can import it."""
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        estimator = cls(**params).fit(y, X)
    except DivergenceError as error:
        # One training's divergence (its seed's bad luck) leaves the others to choose from.
        return math.inf, None, str(error)
    if estimator.selection_score_ is not None:  # selection="dstsp+dh"
        best = estimator.selection_score_
    else:
        scores = [score for _, score in estimator.checkpoint_scores_]
        best = min(scores) if scores else math.inf
    return (best if math.isfinite(best) else math.inf), estimator._get_state(), None


# A training thread on CUDA draws three streams from torch's pool (one to train on, a side
# stream to warm its graph up on and one to capture it on). torch.cuda.Stream() hands out the
# pool's 32 streams per device in turn, so more than 32 draws while earlier ones are in use
# could give two trainings one stream (seen with 16 threads: a replay on a stream another
# thread was capturing on, refused by torch). Hence rounds of at most 10 trainings.
_GPU_ROUND = 10


def _threads_on_one_gpu(cls: type, trainings: list[dict], y: Any, X: Any, workers: int):
    """The results of :func:`_fit_one_on_stream` for each parameter set, in order: at most
    ``workers`` threads at a time, in rounds of at most _GPU_ROUND trainings."""
    from joblib import Parallel, delayed

    for start in range(0, len(trainings), _GPU_ROUND):
        chunk = trainings[start:start + _GPU_ROUND]
        yield from Parallel(n_jobs=min(workers, len(chunk)), backend="threading",
                            return_as="generator")(
            delayed(_fit_one_on_stream)(cls, params, y, X) for params in chunk)


def _fit_one_on_stream(cls: type, params: dict, y: Any, X: Any):
    """:func:`_fit_one` in a thread, with all of its GPU work on a CUDA stream of its own."""
    device = resolve_device(params["device"])
    with torch.cuda.device(device), torch.cuda.stream(torch.cuda.Stream(device)):
        return _fit_one(cls, params, y, X, None)


_SHARED_DOC = """
    observation : {"identity", "affine"}
        "identity": the first N latents are the observations, z_1 = [x_1; L x_1] with a
        trained L, partial forcing. "affine": x = B z + b, forcing of all latents with
        B^+ (x - b).
    teacher_forcing : {"gtf", "sparse", "bptt"}
        Generalized teacher forcing (Hess et al. 2023), sparse teacher forcing every
        ``forcing_interval`` steps (Mikhaeil et al. 2022) or none (back-propagation through
        time of the free run).
    alpha : float in [0, 1] or "adaptive"
        GTF strength; "adaptive": alpha* = max(0, 1 - 1/G) every 5 batches with gamma 0.999,
        starting at 1 (see :mod:`tsrnn.dsr.teacher_forcing`).
    forcing_interval : int
        tau of sparse teacher forcing.
    noise : float
        Gaussian noise added to every training batch, in standard deviations of the data
        (in data units with ``scale=False``).
    regularization : float
        L2 penalty lambda * sum of squared coupling weights ({coupling}).
    sequence_length, batch_size, max_epochs : int
        Windows of ``sequence_length`` + 1 steps, ``batch_size`` per batch.
    batches_per_epoch : int or None
        Batches per epoch (the authors: 50); None covers the data about once.
    learning_rate, learning_rate_final : float
        Exponential decay between the two over ``max_epochs`` (RAdam, 1e-3 to 1e-6).
    checkpoint_path : str or None
        Where the best model so far is written whenever a checkpoint improves (None:
        nothing written; an existing file is refused): a complete estimator file that
        ``load`` reads, so a stopped run keeps its best reconstruction.
    optimizer, weight_decay, gradient_clip, early_stopping, divergence
        See :class:`tsrnn.forecasting.base.NeuralForecaster` (early stopping counts epochs
        without a better D_stsp, and must be at least ``checkpoint_every``: D_stsp is
        scored only every ``checkpoint_every`` epochs).
    validation_fraction : float
        Held-out end of each trajectory for checkpoint selection; 0 selects on the training
        data.
    checkpoint_every : int
        Epochs between checkpoint evaluations: the D_stsp of free runs against the
        validation (or training) data (16 runs from states along the data, 100,000 points
        in all after a transient of up to 10,000 steps).
    selection : {"dstsp+dh", "dstsp"}
        Which checkpoint is kept. "dstsp": the lowest D_stsp of those runs. "dstsp+dh":
        the 10 best by it are run again, each as one long free run (as long as the longest
        validation or training trajectory, at most 100,000 steps, after 1,000 steps from
        its first state), and the lowest D_stsp + D_H (power spectra, sigma 20) against the
        data is kept: D_stsp alone misses the temporal structure, and short runs cannot
        measure it (with missing values, D_H over the data's longest stretch without them).
        Costs 10 long free runs at the end (kept within ``max_time``).
    selection_noise : float or "auto"
        Gaussian noise added to the free runs that selection compares with the data, in
        standard deviations of each column (data units with ``scale=False``). Measured data
        carry observation noise and a model's free run does not, so against noisy data even
        the true system scores a floor (Rössler at 5% noise: D_stsp 0.57), and a model
        whose attractor is blurred by dynamics that are too chaotic can score below it.
        With the data's noise added to the runs, selection compares like with like.
        "auto": the level estimated from the data's fourth differences
        (:func:`observation_noise_level`; it assumes the sampling resolves the dynamics,
        and is not used, with a warning, when it reads more than a quarter of a column's
        standard deviation). 0: the runs as generated.
    max_time : float or None
        Training time budget in seconds; after the first epoch, which always runs, an epoch
        starts only if it would end within it (judged by the longest of the last
        ``checkpoint_every`` epochs), and the best checkpoint is kept.
    missing : {"raise", "mask"}
        NaN in y: an error, or missing observations (not forced, not in the loss).
    dt : float or None
        Sampling step of the data: Lyapunov exponents per time unit in tsrnn.analysis.
        None: the step of a regular float index of a DataFrame or Series fitted on, if any.
    scale : bool
        Standardise each column with the training statistics.
    n_init : int
        Independent trainings from different initialisations (seeds ``random_state``,
        ``random_state + 1``, ...); the one whose kept checkpoint scores best (by
        ``selection``) is kept, as reconstructions are chosen in practice. ``max_time`` is
        per training; with ``checkpoint_path`` training k writes
        ``<stem>-init<k><suffix>``. A training that diverges (``divergence``) is left out
        with a warning naming it and its seed; the fit raises only when all of them do.
    n_jobs : int or None
        Trainings run at once (-1: one per core; None: one after the other). On the CPU
        they are separate processes (joblib) and share out the torch threads; on CUDA they
        are threads of this process, each with its own CUDA stream, so that the small
        kernels of their training steps run side by side on the one GPU (at most 10 at
        a time).
    random_state, device, dtype, verbose
        Reproducibility, where to compute, precision, one progress bar.

    Attributes
    ----------
    module_ : ReconstructionModel (``.latent`` the tsrnn.nn map, ``.observation``)
    history_ : dict, per-epoch "train_loss" and "validation_loss" (the last D_stsp)
    checkpoint_scores_ : list of (epoch, D_stsp)
    selection_noise_ : array (N,)
        The noise level selection added (``selection_noise``), per column.
    selection_scores_ : list of (epoch, D_stsp, D_H)
        The long runs of selection="dstsp+dh" (empty for "dstsp"); ``selection_score_``
        the kept checkpoint's D_stsp + D_H (None for "dstsp").
    best_epoch_, n_epochs_, alpha_ (final GTF alpha, None for sparse forcing),
    stopped_by_time_, training_time_ (of the kept training)
    init_scores_ : list of float
        The selection score of each of the ``n_init`` trainings' kept checkpoint;
        ``best_init_`` the one kept.
"""


class PLRNN(DSREstimator):
    __doc__ = """PLRNN z_t = A z_{t-1} + W relu(z_{t-1}) + h, trained by teacher forcing.

    Koppe et al. (2019), "Identifying nonlinear dynamical systems via generative recurrent
    neural networks with applications to fMRI", PLoS Comput. Biol.

    Parameters
    ----------
    n_latent : int or None
        M (>= the number of observed columns N; None: M = N).
    """ + _SHARED_DOC.replace("{coupling}", "W")

    _coupling_names = ("W",)

    def __init__(self, *, n_latent: int | None = 20, observation: str = "identity",
                 teacher_forcing: str = "gtf", alpha: float | str = "adaptive",
                 forcing_interval: int = 16, noise: float = 0.0, regularization: float = 0.0,
                 sequence_length: int = 200, batch_size: int = 16, max_epochs: int = 100,
                 batches_per_epoch: int | None = 50, learning_rate: float = 1e-3,
                 learning_rate_final: float | None = 1e-6, optimizer: str = "radam",
                 weight_decay: float = 0.0, gradient_clip: float | None = 10.0,
                 validation_fraction: float = 0.0, early_stopping: int | None = None,
                 divergence: str = "raise", checkpoint_path: str | None = None,
                 checkpoint_every: int = 5, selection: str = "dstsp+dh",
                 selection_noise: float | str = 0.0, max_time: float | None = None,
                 missing: str = "raise", dt: float | None = None, scale: bool = True,
                 n_init: int = 1, n_jobs: int | None = None,
                 random_state: int | None = None, device: str | None = None,
                 dtype: str = "float32", verbose: bool = False):
        store_hyperparameters(self, locals())

    def _latent_module(self, n_latent, generator):
        return _modules.PLRNN(n_latent, n_inputs=self.n_exog_, generator=generator)


class ShallowPLRNN(DSREstimator):
    __doc__ = """Shallow PLRNN z_t = A z_{t-1} + W1 relu(W2 z_{t-1} + h2) + h1, trained by
    teacher forcing; ``clipped``: W1 [relu(W2 z + h2) - relu(W2 z)] (bounded orbits when
    ||A|| < 1).

    Hess et al. (2023), "Generalized teacher forcing for learning chaotic dynamics", ICML:
    the clipped shPLRNN with M = 3, H = 100 and adaptive GTF on Lorenz-63.

    Parameters
    ----------
    n_latent : int or None
        M (None: as many as observed columns).
    n_hidden : int
        H, the hidden ReLU units.
    clipped : bool
    """ + _SHARED_DOC.replace("{coupling}", "W1, W2")

    _coupling_names = ("W1", "W2")

    def __init__(self, *, n_latent: int | None = None, n_hidden: int = 50,
                 clipped: bool = True, observation: str = "identity", teacher_forcing: str = "gtf",
                 alpha: float | str = "adaptive", forcing_interval: int = 16,
                 noise: float = 0.0, regularization: float = 0.0, sequence_length: int = 200,
                 batch_size: int = 16, max_epochs: int = 100,
                 batches_per_epoch: int | None = 50, learning_rate: float = 1e-3,
                 learning_rate_final: float | None = 1e-6, optimizer: str = "radam",
                 weight_decay: float = 0.0, gradient_clip: float | None = 10.0,
                 validation_fraction: float = 0.0, early_stopping: int | None = None,
                 divergence: str = "raise", checkpoint_path: str | None = None,
                 checkpoint_every: int = 5, selection: str = "dstsp+dh",
                 selection_noise: float | str = 0.0, max_time: float | None = None,
                 missing: str = "raise", dt: float | None = None, scale: bool = True,
                 n_init: int = 1, n_jobs: int | None = None,
                 random_state: int | None = None, device: str | None = None,
                 dtype: str = "float32", verbose: bool = False):
        store_hyperparameters(self, locals())

    def _latent_module(self, n_latent, generator):
        n_hidden = check_positive(self.n_hidden, "n_hidden", integer=True)
        return _modules.ShallowPLRNN(n_latent, n_hidden, n_inputs=self.n_exog_,
                                     clipped=check_bool(self.clipped, "clipped"),
                                     generator=generator)


class ALRNN(DSREstimator):
    __doc__ = """Almost-linear RNN z_t = A z_{t-1} + W phi*(z_{t-1}) + h, relu on the last P
    of M units, trained by teacher forcing (by default sparse forcing with tau = 16, the
    authors' Lorenz-63 setting).

    Brenner et al. (2024), "Almost-linear RNNs yield highly interpretable symbolic codes in
    dynamical systems reconstruction", NeurIPS, arXiv 2410.14240. At most 2^P linear
    subregions: :meth:`symbolic_codes` and :meth:`region_transition_graph` give the symbolic
    dynamics.

    Parameters
    ----------
    n_latent : int or None
        M.
    n_pwl : int
        P <= M, the piecewise-linear units.
    """ + _SHARED_DOC.replace("{coupling}", "W")

    _coupling_names = ("W",)

    def __init__(self, *, n_latent: int | None = 20, n_pwl: int = 2,
                 observation: str = "identity", teacher_forcing: str = "sparse",
                 alpha: float | str = "adaptive", forcing_interval: int = 16,
                 noise: float = 0.0, regularization: float = 0.0, sequence_length: int = 200,
                 batch_size: int = 16, max_epochs: int = 100,
                 batches_per_epoch: int | None = 50, learning_rate: float = 1e-3,
                 learning_rate_final: float | None = 1e-6, optimizer: str = "radam",
                 weight_decay: float = 0.0, gradient_clip: float | None = 10.0,
                 validation_fraction: float = 0.0, early_stopping: int | None = None,
                 divergence: str = "raise", checkpoint_path: str | None = None,
                 checkpoint_every: int = 5, selection: str = "dstsp+dh",
                 selection_noise: float | str = 0.0, max_time: float | None = None,
                 missing: str = "raise", dt: float | None = None, scale: bool = True,
                 n_init: int = 1, n_jobs: int | None = None,
                 random_state: int | None = None, device: str | None = None,
                 dtype: str = "float32", verbose: bool = False):
        store_hyperparameters(self, locals())

    def _latent_module(self, n_latent, generator):
        n_pwl = check_positive(self.n_pwl, "n_pwl", integer=True, allow_zero=True)
        if n_pwl > n_latent:  # named here: n_latent=None means the number of columns
            given = (f"n_latent={self.n_latent}" if self.n_latent is not None else
                     f"n_latent=None (the {n_latent} columns of y)")
            raise ValueError(f"n_pwl={n_pwl} exceeds {given}: P must be <= M")
        latent = _modules.ALRNN(n_latent, n_pwl, n_inputs=self.n_exog_, generator=generator)
        # The authors' initialisation (ALRNN-DSR, Python and Julia): A from the normalised
        # positive-definite matrix, but a weak coupling W ~ N(0, 0.01^2). The module's
        # default W (the rest of that matrix, spectral radius of A + W exactly 1) makes
        # sparsely forced training settle on a stable spiral instead of the chaotic
        # attractor of Lorenz-63 (measured here: D_stsp ~3 after 560 epochs).
        with torch.no_grad():
            latent.W.copy_(0.01 * torch.randn(latent.W.shape, generator=generator))
        return latent
