"""The one small protocol through which :mod:`tsrnn.analysis` sees any dynamical system.

Simulators, trained torch modules and fitted estimators all present themselves as a
:class:`DiscreteMap`: a step function on batched states, optionally with its tangent map
(how a frame of perturbation vectors is carried along) or its Jacobian, and the time one step
stands for. A flow is seen through one step of its integrator, whose tangent is the
variational equation integrated with the same scheme.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class DiscreteMap:
    """A map x_{n+1} = F(x_n) on batched states.

    Attributes
    ----------
    step : callable (B, dim) -> (B, dim)
        One step of the map; differentiable in torch when ``tangent`` and ``jacobian`` are
        absent (the tangent is then taken by forward-mode autodiff).
    dim : int
        State dimension.
    time_step : float or None
        Time that one step stands for (the sampling step of a flow or of the data a model
        was trained on); None when unknown, in which case exponents are per step.
    tangent : callable (x (B, dim), Q (B, dim, k)) -> (F(x), J(x) Q), optional
        Advances a state and a frame of tangent vectors together.
    jacobian : callable (B, dim) -> (B, dim, dim), optional
        The Jacobian dF/dx.
    initial_states : callable (n, seed) -> tensor (n, dim), optional
        Where to start trajectories (on or near the attractor, before a transient).
    dtype, device
        Of the states the map expects.
    name : str
        For messages.
    tangent_dim : int, optional
        Dimension of the tangent space the analysis works in when smaller than ``dim`` (a
        conserved quantity removes directions: Kuramoto-Sivashinsky perturbations keep zero
        mean); the default number of Lyapunov exponents.
    default_steps : int, optional
        A run length (steps per trajectory) that gives converged exponents for this map.
    default_exponents : int, optional
        How many exponents :func:`tsrnn.analysis.lyapunov_spectrum` computes unless told
        (None: the whole tangent space). A forecaster's closed loop sets the number of
        observed variables: its state holds a reservoir or hidden state of hundreds of
        strongly contracting directions, whose exponents cost a QR factorisation of that
        size at every step.
    orthonormalize_every : int, optional
        Steps between the QR re-orthonormalisations of a Lyapunov frame unless the caller
        chooses (None: every step). The integrated flows set 0.1 time units, over which
        their frames' columns separate by at most exp(0.1 (lambda_1 - lambda_k)); a learned
        map keeps every step, since its contraction per step is not known beforehand (an
        AL-RNN fitted at dt = 0.001, re-orthonormalised every 100 steps, lost its lower
        exponents).

    ``step`` must be plain differentiable tensor code without data-dependent Python control
    flow (no ``bool(tensor)``), so that forward-mode autodiff can push tangents through it.
    """

    step: Callable[[Tensor], Tensor]
    dim: int
    time_step: float | None = None
    tangent: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None
    jacobian: Callable[[Tensor], Tensor] | None = None
    initial_states: Callable[[int, int | None], Tensor] | None = None
    dtype: torch.dtype = torch.float64
    device: torch.device = torch.device("cpu")  # noqa: RUF009 (immutable value)
    name: str = "map"
    tangent_dim: int | None = None
    default_steps: int | None = None
    default_exponents: int | None = None
    orthonormalize_every: int | None = None

    def advance(self, x: Tensor, frame: Tensor) -> tuple[Tensor, Tensor]:
        """Advance ``x`` (B, dim) and the tangent frame (B, dim, k) by one step."""
        if self.tangent is not None:
            return self.tangent(x, frame)
        if self.jacobian is not None:
            return self.step(x), self.jacobian(x) @ frame
        # Forward-mode autodiff, vectorised over the frame's columns.
        load_forward_mode()

        def push_forward(vector: Tensor) -> Tensor:
            return torch.func.jvp(self.step, (x,), (vector,))[1]

        return self.step(x), torch.func.vmap(push_forward, in_dims=-1, out_dims=-1)(frame)


@functools.cache
def load_forward_mode() -> None:
    """Load torch's forward-mode decompositions once, quietly: on first use torch builds them
    with ``torch.jit.script``, whose DeprecationWarning is torch's own, not the caller's."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import torch._decomp.decompositions_for_jvp  # noqa: F401
    except ImportError:  # another torch layout: then torch loads them itself, as before
        pass


def jittered_copies(start: Tensor, n: int, seed: int | None, scale: float) -> Tensor:
    """``n`` copies of ``start`` (flattened to (1, dim)), each moved by seeded Gaussian noise
    of size ``scale``: starting states for trajectories of a learned map that should separate
    on its attractor during a transient (the model itself defines no other initial states)."""
    start = start.reshape(1, -1)
    generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    noise = torch.randn((n, start.shape[1]), generator=generator, dtype=torch.float64)
    return start.repeat(n, 1) + scale * noise.to(start)
