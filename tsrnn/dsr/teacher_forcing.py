"""Teacher forcing for dynamical-systems reconstruction: generalized, sparse, none (BPTT).

A latent map z_t = F(z_{t-1}, s_t) (a PLRNN, shallow PLRNN or AL-RNN of :mod:`tsrnn.nn`) is
run along a window x_1 .. x_{L+1} of observations. The latent state is pulled towards the
data-inferred latent zhat_t after every step with a weight w_t (Hess et al. 2023,
"Generalized teacher forcing for learning chaotic dynamics", ICML):

    z_1       = [x_1; L x_1]                       (identity observation, trained L)
    z_t       = F(ztilde_{t-1}, s_t)              t = 2 .. L+1   (the predictions)
    ztilde_t  = (1 - w_t m_t) z_t + w_t m_t zhat_t                   (the forced states)
    loss      = mean over observed entries of (G(z_t) - x_t)^2       (G the observation model)

with m_t = 1 on the forced latents whose observation is present (0 where x_t is NaN: masked
forcing) and 0 elsewhere. The forcing schedule w_t is what distinguishes the schemes:

- generalized teacher forcing (GTF): w_t = alpha for every t; alpha = 0 is plain BPTT,
  alpha = 1 identity forcing. Only the observed latents are forced (partial forcing) for the
  identity observation model; all latents, with zhat_t = B^+ (x_t - b), for the affine one.
- sparse teacher forcing (Mikhaeil, Monfared & Durstewitz 2022, "On the difficulty of
  learning chaotic dynamics with RNNs", NeurIPS): w_t = 1 every tau steps, else 0;
- none (BPTT): w_t = 0.

The gradient through a forced step is (1 - w_t m_t) J_t, so alpha bounds the growth of the
Jacobian products. Hess et al.'s adaptive rule picks the smallest alpha that keeps it
bounded: with G = max over the batch of the geometric mean of ||J_t||_2 along the forced
trajectory (J_t the exact Jacobian of F at ztilde_{t-1}),

    alpha* = max(0, 1 - 1/G),  and every 5 batches
    alpha <- alpha*                          if alpha* > alpha
    alpha <- gamma alpha + (1 - gamma) alpha*  otherwise          (gamma = 0.999, alpha_0 = 1)

(Hess et al.'s code evaluates the Jacobians at the data-inferred latents zhat_t; here they
are taken along the forced trajectory as SPEC.md section 5 states; the two coincide when
every latent is forced with alpha = 1. The update uses the batch just trained on and
applies from the next batch.)

The pieces compose: an observation model (:class:`IdentityObservation`,
:class:`AffineObservation`) turns data into forcing signals, a scheme
(:class:`GeneralizedTeacherForcing`, :class:`SparseTeacherForcing`, :class:`NoForcing`)
gives the weights w_t and adapts itself after a batch, and :func:`teacher_forced_run` runs
the forced trajectory of a :class:`ReconstructionModel` on a batch of windows.

Speed: :func:`forced_rollout` runs the recursion without autograd and back-propagates with the
model's exact Jacobians (a vector-Jacobian product per step, then one batched pass for the
parameter gradients); ``adjoint=False`` gives the plain autograd loop it is tested against.
For the PLRNN family the forward loop, the adjoint loop and free runs are each one kernel
(:mod:`tsrnn.ops.pwl_rollout`: Triton on CUDA, compiled C on the CPU) instead of ~10 torch
calls per step; the loops here remain the path for other maps and where no kernel builds,
and the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .._validation import check_in_range, check_positive
from ..ops import pwl_rollout

Tensor = torch.Tensor
StepFunction = Callable[[Tensor, Tensor | None], Tensor]


# ====================================================================== observation models
class IdentityObservation(nn.Module):
    """x_t = z_t[:N]: the first N latents are the observations.

    The unobserved latents of the first state of a window are filled by a trained matrix L:
    z_1 = [x_1; L x_1] (Brenner et al. 2022, "Tractable dendritic RNNs for reconstructing
    nonlinear dynamical systems", ICML). Forcing signals are the observations themselves,
    applied to the first N latents only (partial forcing).

    Parameters
    ----------
    n_observed, n_latent : int
        N and M (N <= M).
    generator : torch.Generator, optional
        Seeds the Glorot-uniform initialisation of L (M-N, N).
    """

    def __init__(self, n_observed: int, n_latent: int,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.n_observed = check_positive(n_observed, "n_observed", integer=True)
        self.n_latent = check_positive(n_latent, "n_latent", integer=True)
        if self.n_latent < self.n_observed:
            raise ValueError(
                f"n_latent={n_latent} is smaller than the data dimension {n_observed}: the "
                "identity observation model needs n_latent >= the number of observed columns"
            )
        rows = self.n_latent - self.n_observed
        bound = math.sqrt(6.0 / (rows + self.n_observed)) if rows else 0.0
        self.L = nn.Parameter(torch.empty(rows, self.n_observed).uniform_(
            -bound, bound, generator=generator))

    def forward(self, z: Tensor) -> Tensor:
        """Observations (..., N) of latent states (..., M)."""
        return z[..., : self.n_observed]

    def initial_state(self, x: Tensor) -> Tensor:
        """z_1 = [x_1; L x_1] from observations (B, N) without NaN."""
        return torch.cat([x, x @ self.L.T], dim=-1)

    def forcing_signal(self, x: Tensor) -> Tensor:
        """zhat for the forced latents (..., N): the observations."""
        return x

    @property
    def masks_missing(self) -> bool:
        return True


class AffineObservation(nn.Module):
    """x_t = B z_t + b, with forcing signals zhat_t = B^+ (x_t - b) for all M latents.

    The pseudo-inverse (least squares, minimum norm) is the simplest data-inferred latent;
    Hess et al. (2023) force all latents with it. It is computed without gradient, as in
    their code (the forcing signals are targets, not part of the model's output). Missing
    observations cannot be masked here (the inversion mixes all columns).

    Parameters
    ----------
    n_observed, n_latent : int
        N and M (N <= M).
    generator : torch.Generator, optional
    """

    def __init__(self, n_observed: int, n_latent: int,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.n_observed = check_positive(n_observed, "n_observed", integer=True)
        self.n_latent = check_positive(n_latent, "n_latent", integer=True)
        if self.n_latent < self.n_observed:
            raise ValueError(
                f"n_latent={n_latent} is smaller than the data dimension {n_observed}: the "
                "affine observation model needs n_latent >= the number of observed columns"
            )
        # B starts as the identity observation (well conditioned, same start as "identity")
        # plus a small random part so that the unobserved latents enter the loss.
        eye = torch.eye(self.n_observed, self.n_latent)
        noise = torch.randn(self.n_observed, self.n_latent, generator=generator)
        self.B = nn.Parameter(eye + 0.01 * noise)
        self.b = nn.Parameter(torch.zeros(self.n_observed))

    def forward(self, z: Tensor) -> Tensor:
        return z @ self.B.T + self.b

    def initial_state(self, x: Tensor) -> Tensor:
        return self.forcing_signal(x)

    def forcing_signal(self, x: Tensor) -> Tensor:
        """zhat = B^+ (x - b) for every latent (..., M), without gradient."""
        with torch.no_grad():
            return (x - self.b) @ torch.linalg.pinv(self.B).T

    @property
    def masks_missing(self) -> bool:
        return False


OBSERVATIONS = {"identity": IdentityObservation, "affine": AffineObservation}


class ReconstructionModel(nn.Module):
    """A latent map with its observation model: what a DSR estimator trains.

    Parameters
    ----------
    latent : torch module with ``step(z, s=None)``, ``jacobian(z)`` and ``n_latent``
        The latent map (a :mod:`tsrnn.nn` PLRNN, ShallowPLRNN or ALRNN).
    observation : IdentityObservation or AffineObservation
    """

    def __init__(self, latent: nn.Module, observation: nn.Module):
        super().__init__()
        self.latent = latent
        self.observation = observation

    @property
    def n_latent(self) -> int:
        return int(self.latent.n_latent)

    def step(self, z: Tensor, s: Tensor | None = None) -> Tensor:
        return self.latent.step(z, s)

    def observe(self, z: Tensor) -> Tensor:
        return self.observation(z)

    def as_discrete_map(self, dt: float | None = None):
        """The autonomous latent map z_{t-1} -> z_t with its exact Jacobian (that of
        ``latent``), so that :mod:`tsrnn.analysis` takes a fitted estimator's ``module_``
        as it takes the estimator; ``dt`` is the time one step stands for (None: per step).
        Locations are latent states."""
        return self.latent.as_discrete_map(dt)

    def free_run(self, z: Tensor, n_steps: int, inputs: Tensor | None = None) -> Tensor:
        """Latent states z_1 .. z_n (B, n, M) following z (B, M); ``inputs`` (B, n, K).

        Without gradients (generation, checkpoint scoring) the fused form of the map is
        used (see ``_kernels``), which dispatches fewer small operations per step; for the
        PLRNN family the whole run is one kernel call (:func:`tsrnn.ops.pwl_rollout.free_run`).
        """
        if not torch.is_grad_enabled():
            packed = _fast_map(self.latent, z)
            if packed is not None:  # one kernel call for the whole run
                return pwl_rollout.free_run(packed, z, n_steps, _drive(self.latent, inputs),
                                            backend="auto")
        step = self.latent.step if torch.is_grad_enabled() else _kernels(self.latent).step
        input_steps = [None] * n_steps if inputs is None else inputs.unbind(1)
        states = []
        for t in range(n_steps):
            z = step(z, input_steps[t])
            states.append(z)
        return torch.stack(states, 1) if states else z.new_zeros((z.shape[0], 0, z.shape[1]))


# ====================================================================== schemes
class GeneralizedTeacherForcing:
    """w_t = alpha at every step (Hess et al. 2023).

    Parameters
    ----------
    alpha : float in [0, 1] or AdaptiveAlpha
        A fixed forcing strength, or the adaptive rule (then ``alpha`` is its current value).
    """

    def __init__(self, alpha: float | AdaptiveAlpha = 1.0):
        if not isinstance(alpha, AdaptiveAlpha):
            check_in_range(alpha, "alpha", 0.0, 1.0)
        self.alpha = alpha

    @property
    def current_alpha(self) -> float:
        return float(self.alpha.alpha if isinstance(self.alpha, AdaptiveAlpha) else self.alpha)

    @property
    def adapts(self) -> bool:
        """Whether :meth:`after_batch` changes the weights (the adaptive rule)."""
        return isinstance(self.alpha, AdaptiveAlpha)

    def weights(self, length: int) -> list[float]:
        return [self.current_alpha] * int(length)

    def after_batch(self, latent: nn.Module, inputs: Tensor) -> None:
        """Let the adaptive rule see the forced trajectory (B, L, M) of the batch just trained
        on; ``latent`` provides ``jacobian`` (and ``region`` for piecewise-linear maps)."""
        if isinstance(self.alpha, AdaptiveAlpha):
            region = getattr(latent, "region", None)
            self.alpha.after_batch(
                lambda: max_geometric_mean_norm(latent.jacobian, inputs, region))


class SparseTeacherForcing:
    """w_t = 1 every ``interval`` steps (after the tau-th, 2 tau-th ... prediction), else 0.

    Mikhaeil, Monfared & Durstewitz (2022): tau near the predictability time of the system
    (Lorenz-63 at dt = 0.01: tau = 16 in the AL-RNN paper) keeps gradients bounded without
    hiding the chaotic divergence from the loss.
    """

    def __init__(self, interval: int = 16):
        self.interval = check_positive(interval, "forcing_interval", integer=True)

    @property
    def current_alpha(self) -> None:
        return None

    adapts = False

    def weights(self, length: int) -> list[float]:
        return [1.0 if (k + 1) % self.interval == 0 else 0.0 for k in range(int(length))]

    def after_batch(self, latent, inputs) -> None:
        """Nothing adapts."""


class NoForcing:
    """w_t = 0: the free-running trajectory, trained by back-propagation through time."""

    @property
    def current_alpha(self) -> float:
        return 0.0

    adapts = False

    def weights(self, length: int) -> list[float]:
        return [0.0] * int(length)

    def after_batch(self, latent, inputs) -> None:
        """Nothing adapts."""


# ====================================================================== adaptive alpha
def optimal_alpha(norm: float) -> float:
    """alpha* = max(0, 1 - 1/G): the least forcing that bounds (1 - alpha)^T prod ||J_t||."""
    if not norm > 0.0:  # zero (a collapsed map) or NaN: nothing to tame
        return 0.0
    return max(0.0, 1.0 - 1.0 / float(norm))


def max_geometric_mean_norm(jacobian: Callable[[Tensor], Tensor], states: Tensor,
                            region: Callable[[Tensor], Tensor] | None = None) -> float:
    """G = max over the batch of (prod_t ||J(states[b, t])||_2)^(1/L).

    Parameters
    ----------
    jacobian : callable (n, M) -> (n, M, M)
        The exact Jacobian of the latent map.
    states : (B, L, M)
        The states the map was applied to along each sequence (the forced states).
    region : callable (n, M) -> (n, R) bool, optional
        The linear subregion of each state, for piecewise-linear maps: the Jacobian is
        constant on a subregion, so one spectral norm per distinct subregion suffices (an
        AL-RNN has at most 2^P; 3200 singular-value decompositions of 20 x 20 matrices
        would cost more than the training step itself).
    """
    batch, length, dim = states.shape
    with torch.no_grad():
        flat = states.reshape(-1, dim).detach()
        matrices = jacobian(flat)
        if region is not None:
            patterns = region(flat).to(torch.uint8)
            if patterns.shape[-1] == 0:  # a linear map: one region
                patterns = patterns.new_zeros((flat.shape[0], 1))
            distinct, index = torch.unique(patterns, dim=0, return_inverse=True)
            positions = torch.arange(flat.shape[0], device=flat.device)
            first = torch.full((distinct.shape[0],), flat.shape[0], device=flat.device,
                               dtype=positions.dtype).scatter_reduce(0, index, positions,
                                                                     reduce="amin")
            norms = torch.linalg.matrix_norm(matrices[first].double(), ord=2)[index]
        else:
            norms = torch.linalg.matrix_norm(matrices.double(), ord=2)
        log_mean = torch.log(norms.reshape(batch, length).clamp_min(1e-300)).mean(dim=1)
        return float(torch.exp(log_mean.max()))


class AdaptiveAlpha:
    """Hess et al.'s annealed alpha: raised at once, lowered slowly.

    Every ``every``-th call of :meth:`after_batch` computes alpha* from G and sets
    alpha <- alpha* if alpha* > alpha, else gamma alpha + (1 - gamma) alpha*.

    Parameters
    ----------
    initial : float
        alpha_0 (1: identity forcing at the start).
    gamma : float in [0, 1)
        Decay towards a lower alpha*.
    every : int
        Batches between updates (5).
    """

    def __init__(self, initial: float = 1.0, gamma: float = 0.999, every: int = 5):
        self.alpha = float(check_in_range(initial, "initial alpha", 0.0, 1.0))
        self.gamma = float(check_in_range(gamma, "gamma", 0.0, 1.0, closed="left"))
        self.every = check_positive(every, "every", integer=True)
        self.n_batches = 0
        self.last_norm: float | None = None

    def update(self, alpha_star: float) -> float:
        """Apply the rule with a given alpha* and return the new alpha."""
        if alpha_star > self.alpha:
            self.alpha = float(alpha_star)
        else:
            self.alpha = self.gamma * self.alpha + (1.0 - self.gamma) * float(alpha_star)
        return self.alpha

    def after_batch(self, norm: Callable[[], float]) -> float:
        """Count a batch; on every ``every``-th, evaluate G = ``norm()`` and update alpha."""
        self.n_batches += 1
        if self.n_batches % self.every == 0:
            self.last_norm = float(norm())
            self.update(optimal_alpha(self.last_norm))
        return self.alpha


def make_scheme(teacher_forcing: str, alpha: float | str = "adaptive",
                forcing_interval: int = 16, *, initial_alpha: float = 1.0,
                gamma: float = 0.999, every: int = 5):
    """The scheme named by an estimator's hyperparameters.

    ``teacher_forcing`` in {"gtf", "sparse", "bptt"}; ``alpha`` a float in [0, 1] or
    "adaptive" (GTF only); ``forcing_interval`` tau (sparse only).
    """
    if teacher_forcing not in SCHEMES:
        known = ", ".join(repr(k) for k in SCHEMES)
        raise ValueError(f"unknown teacher_forcing {teacher_forcing!r}; expected one of {known}")
    return SCHEMES[teacher_forcing](alpha, forcing_interval, initial_alpha, gamma, every)


def _gtf(alpha, interval, initial, gamma, every):
    if isinstance(alpha, str):
        if alpha != "adaptive":
            raise ValueError(f"alpha must be a number in [0, 1] or 'adaptive', got {alpha!r}")
        return GeneralizedTeacherForcing(AdaptiveAlpha(initial, gamma, every))
    return GeneralizedTeacherForcing(alpha)


SCHEMES = {
    "gtf": _gtf,
    "sparse": lambda alpha, interval, *_: SparseTeacherForcing(interval),
    "bptt": lambda *_: NoForcing(),
}


# ====================================================================== the forced rollout
@dataclass
class Rollout:
    """A forced trajectory.

    Attributes
    ----------
    predictions : (B, L, M)
        The un-forced states z_2 .. z_{L+1} (differentiable), on which the loss is taken.
    inputs : (B, L, M)
        The states the map was applied to, ztilde_1 .. ztilde_L (no gradient): what the
        adaptive alpha rule evaluates the Jacobians at.
    """

    predictions: Tensor
    inputs: Tensor


def _force(z: Tensor, signal: Tensor, mask: Tensor | None, weight: float) -> Tensor:
    """ztilde = (1 - w m) z + w m zhat on the first F = signal.shape[-1] latents."""
    n_forced = signal.shape[-1]
    head = z if n_forced == z.shape[-1] else z[:, :n_forced]
    if weight == 1.0:
        forced = signal  # exact replacement, no round-off
    else:
        forced = torch.lerp(head, signal, weight)
    if mask is not None:
        forced = torch.where(mask, forced, head)
    if n_forced == z.shape[-1]:
        return forced
    return torch.cat([forced, z[:, n_forced:]], dim=-1)


def _autograd_rollout(step: StepFunction, z1: Tensor, signals: Tensor, mask: Tensor | None,
                      weights: Sequence[float], inputs: Tensor | None) -> Rollout:
    """The reference: the recursion written out, differentiated by autograd."""
    z, predictions, fed = z1, [], []
    for k, weight in enumerate(weights):
        fed.append(z.detach())
        z = step(z, None if inputs is None else inputs[:, k])
        predictions.append(z)
        if weight != 0.0:
            z = _force(z, signals[:, k], None if mask is None else mask[:, k], weight)
    return Rollout(torch.stack(predictions, 1), torch.stack(fed, 1))


# ---------------------------------------------------------------------- fused kernels
@dataclass
class _Kernels:
    """What the adjoint rollout needs of a latent map, with its weights fixed for one batch.

    step(z, s): z_t from z_{t-1} without autograd; slopes(Z): what the Jacobian depends on,
    for all states at once; vjp(a, slopes_t): the row vector a J(z) (= J^T a).
    """

    step: StepFunction
    slopes: Callable[[Tensor], Tensor]
    vjp: Callable[[Tensor, Tensor], Tensor]


def _with_inputs(step: Callable[[Tensor], Tensor], latent: nn.Module) -> StepFunction:
    if getattr(latent, "C", None) is None:
        return lambda z, s=None: step(z)
    input_weights = latent.C.detach().T

    def driven(z: Tensor, s: Tensor | None = None) -> Tensor:
        z_next = step(z)
        return z_next if s is None else torch.addmm(z_next, s, input_weights)

    return driven


def _plrnn_kernels(latent) -> _Kernels:
    # z' = A z + W relu(z) + h: J^T a = A a + 1[z > 0] (W^T a)
    A, h = latent.A.detach(), latent.h.detach()
    coupling = (latent.W * latent.off_diagonal).detach()
    coupling_t = coupling.T.contiguous()
    return _Kernels(
        _with_inputs(lambda z: torch.addcmul(torch.addmm(h, torch.relu(z), coupling_t), A, z),
                     latent),
        lambda states: (states > 0).to(states.dtype),
        lambda a, slopes: torch.addcmul(A * a, slopes, a @ coupling))


def _alrnn_kernels(latent) -> _Kernels:
    # z' = (diag(A) + W) z + h + W_P relu(-z_P) phi-corrected: since relu(z) - z = relu(-z)
    # and relu(-z) = -min(z, 0), the P piecewise-linear units add min(z_P, 0) (-W_P^T).
    A, h = latent.A.detach(), latent.h.detach()
    coupling = (latent.W * latent.off_diagonal).detach()
    n_linear = latent.n_latent - latent.n_pwl
    linear_t = (torch.diag(A) + coupling.T).contiguous()
    correction_t = (-coupling.T[n_linear:]).contiguous()

    def step(z: Tensor) -> Tensor:
        z_next = torch.addmm(h, z, linear_t)
        if n_linear < z.shape[-1]:
            z_next = torch.addmm(z_next, z[:, n_linear:].clamp(max=0.0), correction_t)
        return z_next

    def slopes(states: Tensor) -> Tensor:
        d = torch.ones_like(states)
        d[..., n_linear:] = (states[..., n_linear:] > 0).to(states.dtype)
        return d

    return _Kernels(_with_inputs(step, latent), slopes,
                    lambda a, d: torch.addcmul(A * a, d, a @ coupling))


def _shallow_kernels(latent) -> _Kernels:
    # z' = A z + W1 g(W2 z + h2) + h1: J^T a = A a + W2^T (g' * (W1^T a))
    A, h1, h2 = latent.A.detach(), latent.h1.detach(), latent.h2.detach()
    W1, W2 = latent.W1.detach(), latent.W2.detach()
    W1_t, W2_t = W1.T.contiguous(), W2.T.contiguous()
    clipped = latent.clipped

    def step(z: Tensor) -> Tensor:
        pre = z @ W2_t
        hidden = torch.relu(pre + h2)
        if clipped:
            hidden = hidden - torch.relu(pre)
        return torch.addcmul(torch.addmm(h1, hidden, W1_t), A, z)

    def slopes(states: Tensor) -> Tensor:
        pre = states @ W2_t
        d = (pre + h2 > 0).to(states.dtype)
        return d - (pre > 0).to(states.dtype) if clipped else d

    return _Kernels(_with_inputs(step, latent), slopes,
                    lambda a, d: torch.addmm(A * a, (a @ W1) * d, W2))


def _generic_kernels(latent) -> _Kernels:
    # Any map with an exact Jacobian: slopes are the Jacobians themselves.
    return _Kernels(latent.step, latent.jacobian,
                    lambda a, jac: (a.unsqueeze(1) @ jac).squeeze(1))


def _kernels(latent: nn.Module) -> _Kernels:
    from ..nn import plrnn

    # Exact type matches only: a subclass may change the equations.
    fused = {plrnn.PLRNN: _plrnn_kernels, plrnn.ALRNN: _alrnn_kernels,
             plrnn.ShallowPLRNN: _shallow_kernels}.get(type(latent), _generic_kernels)
    with torch.no_grad():
        return fused(latent)


def _fast_map(latent: nn.Module, z: Tensor) -> pwl_rollout.PackedMap | None:
    """The map packed for the whole-rollout kernels (Triton on CUDA, compiled C on the CPU)
    when the map is one of the PLRNN family in float32/float64 and a kernel runs for ``z``
    (else None: the loops here)."""
    if z.dtype not in (torch.float32, torch.float64):
        return None
    if pwl_rollout.resolve_backend("auto", z) == "torch":
        return None
    return pwl_rollout.pack(latent)


def _drive(latent: nn.Module, inputs: Tensor | None) -> Tensor | None:
    """The input term C s_t (B, L, M) of every step, or None."""
    weights = getattr(latent, "C", None)
    if inputs is None or weights is None:
        return None
    return inputs @ weights.detach().T


def _weight_tensor(weights: Sequence[float] | Tensor, like: Tensor) -> Tensor:
    if isinstance(weights, Tensor):
        return weights.to(like)
    return torch.tensor(list(weights), dtype=like.dtype).to(like.device, non_blocking=True)


class _AdjointRollout(torch.autograd.Function):
    """Forward without autograd; backward by the adjoint recursion with exact Jacobians.

    With a_k the adjoint of the prediction z_{k+2} and c_k that of the map's input
    ztilde_{k+1}:  c_k = J(ztilde_{k+1})^T a_k,
    a_k = dloss/dz_{k+2} + (1 - w m) c_{k+1} on the forced latents (+ c_{k+1} elsewhere).
    The parameter gradients then come from one batched evaluation of the module's own
    ``step`` on all inputs, back-propagated with the a_k: per time step the work is a few
    small matrix products (fused forms of the model equations, see ``_kernels``). For the
    PLRNN family both loops are single kernel calls (:mod:`tsrnn.ops.pwl_rollout`: Triton on
    CUDA, C on the CPU); ``weights`` may be a tensor (L,) (a CUDA graph's static buffer).
    """

    @staticmethod
    def forward(ctx, z1, signals, mask, inputs, weights, latent, *parameters):
        ctx.latent, ctx.n_forced = latent, signals.shape[-1]
        packed = _fast_map(latent, z1)
        ctx.packed = packed
        if packed is not None:
            weight_tensor = _weight_tensor(weights, z1)
            predictions, fed = pwl_rollout.forced_rollout(
                packed, z1, signals, weight_tensor, mask, _drive(latent, inputs),
                backend="auto")
            ctx.save_for_backward(fed, mask, inputs, weight_tensor)
            ctx.mark_non_differentiable(fed)
            return predictions, fed
        if isinstance(weights, Tensor):
            weights = weights.tolist()
        kernels = _kernels(latent)
        # Per-step views made once (unbind) rather than by indexing inside the loop: on the
        # CPU the loop's cost is the number of small tensor operations it dispatches.
        length = len(weights)
        signal_steps = signals.unbind(1)
        mask_steps = [None] * length if mask is None else mask.unbind(1)
        input_steps = [None] * length if inputs is None else inputs.unbind(1)
        z, predictions, fed = z1, [], []
        for k, weight in enumerate(weights):
            fed.append(z)
            z = kernels.step(z, input_steps[k])
            predictions.append(z)
            if weight != 0.0:
                z = _force(z, signal_steps[k], mask_steps[k], weight)
        predictions = torch.stack(predictions, 1)
        fed = torch.stack(fed, 1)
        ctx.save_for_backward(fed, mask, inputs, None)
        ctx.weights, ctx.kernels = list(weights), kernels
        ctx.mark_non_differentiable(fed)
        return predictions, fed

    @staticmethod
    def backward(ctx, grad_predictions, _grad_fed):
        fed, mask, inputs, weight_tensor = ctx.saved_tensors
        if grad_predictions is None:
            grad_predictions = torch.zeros_like(fed)
        if ctx.packed is not None:
            adjoints, carry = pwl_rollout.adjoint(ctx.packed, grad_predictions, fed,
                                                  weight_tensor, ctx.n_forced, mask,
                                                  backend="auto")
        else:
            adjoints, carry = _AdjointRollout._adjoint_loop(ctx, grad_predictions, fed, mask)
        return _AdjointRollout._parameter_grads(ctx, adjoints, carry, fed, inputs)

    @staticmethod
    def _adjoint_loop(ctx, grad_predictions, fed, mask):
        batch, length, dim = fed.shape
        weights, n_forced, kernels = ctx.weights, ctx.n_forced, ctx.kernels
        # How much of the next input's adjoint reaches each prediction: 1 - w m on the
        # forced latents, 1 elsewhere; built for all steps at once.
        w = torch.tensor(weights, dtype=fed.dtype, device=fed.device)[None, :, None]
        keep = torch.ones_like(fed)
        forced_keep = (1.0 - w).expand(batch, length, n_forced)
        keep[..., :n_forced] = forced_keep if mask is None else torch.where(
            mask, forced_keep, torch.ones_like(forced_keep))
        slopes = kernels.slopes(fed.reshape(batch * length, dim))
        slopes = slopes.reshape(batch, length, *slopes.shape[1:])
        grad_steps, keep_steps, slope_steps = (grad_predictions.unbind(1), keep.unbind(1),
                                               slopes.unbind(1))
        adjoints = [None] * length
        carry = None  # adjoint of the input to the next step
        for k in range(length - 1, -1, -1):
            a = grad_steps[k]
            if carry is not None:
                a = a + carry if weights[k] == 0.0 else torch.addcmul(a, carry, keep_steps[k])
            adjoints[k] = a
            carry = kernels.vjp(a, slope_steps[k])
        return torch.stack(adjoints, 1), carry

    @staticmethod
    def _parameter_grads(ctx, adjoints, carry, fed, inputs):
        batch, length, dim = fed.shape
        grad_z1 = carry if ctx.needs_input_grad[0] else None
        needs = ctx.needs_input_grad[6:]
        parameters = [p for p, need in zip(ctx.latent.parameters(), needs) if need]
        grads = iter(())
        if parameters:
            s = None if inputs is None else inputs.reshape(batch * length, -1)
            closed_form = getattr(ctx.latent, "parameter_gradients", None)
            if closed_form is not None and fed.device.type == "cpu":
                # The same values as the autograd pass below, bit for bit, in less time (a
                # third for the AL-RNN). On CUDA the autograd pass stays: it is part of the
                # captured training step, checked there against the CPU.
                grads = iter(g for g, need in zip(
                    closed_form(fed.reshape(-1, dim), adjoints.reshape(-1, dim), s), needs)
                    if need)
            else:
                with torch.enable_grad():
                    out = ctx.latent.step(fed.reshape(-1, dim), s)
                    grads = iter(torch.autograd.grad(out, parameters,
                                                     adjoints.reshape(-1, dim),
                                                     allow_unused=True))
        parameter_grads = [next(grads) if need else None for need in needs]
        return (grad_z1, None, None, None, None, None, *parameter_grads)


def forced_rollout(latent: nn.Module, z1: Tensor, signals: Tensor, weights: Sequence[float],
                   *, mask: Tensor | None = None, inputs: Tensor | None = None,
                   adjoint: bool = True) -> Rollout:
    """Run z_t = F(ztilde_{t-1}, s_t), ztilde_t = (1 - w_t m_t) z_t + w_t m_t zhat_t.

    Parameters
    ----------
    latent : torch module with ``step(z, s=None)`` and ``jacobian(z)``
        The latent map F (a :mod:`tsrnn.nn` PLRNN, ShallowPLRNN or ALRNN, or any module
        with an exact Jacobian).
    z1 : (B, M)
        The first state (may require grad, e.g. through the matrix L).
    signals : (B, L, F), F <= M
        zhat_2 .. zhat_{L+1} for the first F latents (NaN-free; masked entries are ignored).
    weights : sequence of L floats, or a tensor (L,)
        w_2 .. w_{L+1} (a scheme's ``weights(L)``; a tensor stays on the device, as a CUDA
        graph needs).
    mask : (B, L, F) bool, optional
        Which entries of ``signals`` are observed (force only those).
    inputs : (B, L, K), optional
        External inputs s_2 .. s_{L+1}.
    adjoint : bool
        Back-propagate by the adjoint recursion with the exact Jacobians (fast); False:
        the plain autograd loop over ``latent.step`` (the reference).

    Returns
    -------
    :class:`Rollout`
    """
    length = signals.shape[1]
    if len(weights) != length:
        raise ValueError(f"got {len(weights)} forcing weights for {length} steps")
    if signals.shape[-1] > z1.shape[-1]:
        raise ValueError(f"signals have {signals.shape[-1]} columns, more than the "
                         f"{z1.shape[-1]} latents")
    if adjoint and hasattr(latent, "jacobian") and torch.is_grad_enabled():
        parameters = list(latent.parameters())
        predictions, fed = _AdjointRollout.apply(
            z1, signals, mask, inputs, weights if isinstance(weights, Tensor) else list(weights),
            latent, *parameters)
        return Rollout(predictions, fed)
    if isinstance(weights, Tensor):
        weights = weights.tolist()
    return _autograd_rollout(latent.step, z1, signals, mask, weights, inputs)


# ====================================================================== a batch of windows
@dataclass
class ForcedRun:
    """The forced trajectory of a batch of windows and what the loss needs.

    Attributes
    ----------
    predictions : (B, L, M), un-forced latent states z_2 .. z_{L+1}
    inputs : (B, L, M), the forced states ztilde_1 .. ztilde_L the map was applied to
    observations : (B, L, N), G(z_2) .. G(z_{L+1})
    targets : (B, L, N), x_2 .. x_{L+1} (NaN where missing)
    mask : (B, L, N) bool or None, observed entries of ``targets`` (None: all)
    """

    predictions: Tensor
    inputs: Tensor
    observations: Tensor
    targets: Tensor
    mask: Tensor | None

    def loss(self) -> Tensor:
        """Mean squared error over the observed entries."""
        return masked_mse(self.observations, self.targets, self.mask)


def masked_mse(prediction: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
    """MSE over the entries where ``mask`` is True (all when None)."""
    if mask is None:
        return torch.nn.functional.mse_loss(prediction, target)
    difference = torch.where(mask, prediction - torch.nan_to_num(target), 0.0)
    return difference.square().sum() / mask.sum().clamp_min(1)


def teacher_forced_run(model: ReconstructionModel, y: Tensor,
                       weights: Sequence[float] | Tensor, *, inputs: Tensor | None = None,
                       adjoint: bool = True, has_missing: bool | None = None) -> ForcedRun:
    """Run ``model`` along windows ``y`` (B, L+1, N) with forcing weights (L of them).

    NaN entries of ``y`` are missing observations: they are neither forced nor in the loss,
    and count as 0 (the mean of standardised data) in the first state z_1. ``inputs``
    (B, L+1, K) are external inputs aligned with ``y`` (s_t drives the step into z_t).
    ``has_missing=False`` skips the search for NaN (a host synchronisation, which a CUDA
    graph cannot contain) when the caller knows there is none.
    """
    x = y
    if has_missing is None:
        missing = torch.isnan(x)
        has_missing = bool(missing.any())
    elif has_missing:
        missing = torch.isnan(x)
    if has_missing and not model.observation.masks_missing:
        raise ValueError(f"{type(model.observation).__name__} cannot mask missing "
                         "observations; use the identity observation model")
    x_filled = torch.nan_to_num(x) if has_missing else x
    observed = ~missing if has_missing else None
    z1 = model.observation.initial_state(x_filled[:, 0])
    signals = model.observation.forcing_signal(x_filled[:, 1:])
    mask = None
    if has_missing:
        mask = observed[:, 1:]
        if signals.shape[-1] != mask.shape[-1]:  # pragma: no cover (guarded above)
            raise ValueError("masked forcing needs one forcing signal per observation")
    rollout = forced_rollout(model.latent, z1, signals, weights, mask=mask,
                             inputs=None if inputs is None else inputs[:, 1:], adjoint=adjoint)
    return ForcedRun(rollout.predictions, rollout.inputs, model.observe(rollout.predictions),
                     x[:, 1:], None if mask is None else observed[:, 1:])
