"""Piecewise-linear recurrent networks for dynamical-systems reconstruction.

PLRNN (Koppe et al. 2019, "Identifying nonlinear dynamical systems via generative recurrent
neural networks with applications to fMRI", PLoS Comput. Biol.; Durstewitz 2017):

    z_t = A z_{t-1} + W relu(z_{t-1}) + h + C s_t,      A diagonal, W off-diagonal

shallow PLRNN (Hess et al. 2023, "Generalized teacher forcing for learning chaotic
dynamics", ICML), optionally clipped (bounded orbits when ||A|| < 1):

    z_t = A z_{t-1} + W1 relu(W2 z_{t-1} + h2) + h1 + C s_t
    z_t = A z_{t-1} + W1 [relu(W2 z_{t-1} + h2) - relu(W2 z_{t-1})] + h1 + C s_t

AL-RNN (Brenner et al. 2024, "Almost-linear RNNs yield highly interpretable symbolic codes
in dynamical systems reconstruction", NeurIPS, arXiv 2410.14240):

    z_t = A z_{t-1} + W phi*(z_{t-1}) + h + C s_t,
    phi*(z) = [z_1, ..., z_{M-P}, relu(z_{M-P+1}), ..., relu(z_M)]

Every model is a map z_{t-1} -> z_t with an exact, cheap Jacobian (``jacobian``) and, for the
piecewise-linear ones, a linear subregion per state (``region``): the sign pattern of the
ReLU arguments, which the AL-RNN turns into a symbolic code of at most 2^P symbols.

Shapes: states z (B, M); external inputs s (B, L, K) with K = ``n_inputs`` (K = 0 for an
autonomous model: pass ``x`` of shape (B, L, 0) to generate L steps).
"""

from __future__ import annotations

import torch
from torch import nn

from .._protocol import DiscreteMap
from .._validation import check_bool, check_positive
from ._sampling import check_sequence, check_state


def _relu_backward(grad: torch.Tensor, argument: torch.Tensor) -> torch.Tensor:
    """grad where argument > 0, else 0."""
    return torch.ops.aten.threshold_backward(grad, argument, 0)


def _normalized_positive_definite(n: int, generator: torch.Generator | None) -> torch.Tensor:
    """R^T R / n + I scaled by its largest eigenvalue (Talathi & Vartak 2016's
    initialisation, used by the Durstewitz lab): A from its diagonal, W from the rest, so the
    initial linear part A + W has spectral radius 1 (long memory, no blow-up)."""
    r = torch.randn(n, n, generator=generator)
    k = r.T @ r / n + torch.eye(n)
    return k / torch.linalg.eigvalsh(k).max()


class _PiecewiseLinearRNN(nn.Module):
    """Shared by the three models: the input matrix, ``forward``, and the region codes."""

    def __init__(self, n_latent: int, n_inputs: int):
        super().__init__()
        self.n_latent = check_positive(n_latent, "n_latent", integer=True)
        self.n_inputs = check_positive(n_inputs, "n_inputs", integer=True, allow_zero=True)
        self.dim = self.n_latent  # what tsrnn.analysis looks for
        self.C = nn.Parameter(torch.zeros(self.n_latent, self.n_inputs)) if n_inputs else None

    # subclasses implement these two
    def _latent_step(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _latent_parameter_gradients(self, z: torch.Tensor, adjoint: torch.Tensor
                                    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def step(self, z: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        """z_t from z_{t-1} (B, M) and the external input s_t (B, K)."""
        z_next = self._latent_step(z)
        if s is not None and self.C is not None:
            z_next = z_next + s @ self.C.T
        return z_next

    def parameter_gradients(self, z: torch.Tensor, adjoint: torch.Tensor,
                            s: torch.Tensor | None = None) -> list[torch.Tensor | None]:
        """Gradients of sum(adjoint * step(z, s)) with respect to ``parameters()``, in their
        order (None for C when ``s`` is None, as autograd gives), in closed form.

        z, adjoint : (N, M); s : (N, K). The same operations autograd's backward pass runs,
        so the same values bit for bit on the CPU (tested), without building its graph:
        for the training step's batched pass over B * L states this takes less time (AL-RNN,
        3,200 states: 0.43 -> 0.15 ms; clipped shallow PLRNN, H = 100: 2.4 -> 1.6 ms).
        """
        with torch.no_grad():
            grads = self._latent_parameter_gradients(z, adjoint)
            if self.C is not None:
                grads["C"] = None if s is None else adjoint.T @ s
        return [grads[name] for name, _ in self.named_parameters()]

    def forward(self, x: torch.Tensor | None = None, h0: torch.Tensor | None = None,
                dt: torch.Tensor | None = None, *, n_steps: int | None = None):
        """Iterate the map.

        Parameters
        ----------
        x : (B, L, K) external inputs s_1..s_L (K = 0: an autonomous run of L steps), or
            None with ``n_steps`` (autonomous; one sample unless ``h0`` gives B).
        h0 : (B, M) the state z_0 (zeros when None), of x's dtype.
        dt : not used (a discrete-time model); accepted for the common tsrnn.nn signature.

        Returns
        -------
        states (B, L, M): z_1..z_L, and the final state (B, M).
        """
        if dt is not None:
            raise ValueError(f"{type(self).__name__} is a discrete-time model: it takes no dt")
        if x is None and n_steps is None:
            raise ValueError("give the inputs x (B, L, K) or n_steps for a free run")
        if x is not None:
            if isinstance(x, torch.Tensor) and x.ndim == 3 and x.shape[-1] != self.n_inputs:
                raise ValueError(f"x must have {self.n_inputs} input channels, got "
                                 f"{x.shape[-1]}")
            check_sequence(x, self.n_inputs, module=self)
            if n_steps is not None and int(n_steps) != x.shape[1]:
                raise ValueError(f"n_steps={n_steps} disagrees with the {x.shape[1]} steps of "
                                 "x; give one of them")
            length, batch, like, like_name = x.shape[1], x.shape[0], x, "the input x"
        else:
            length = check_positive(n_steps, "n_steps", integer=True)
            batch = h0.shape[0] if isinstance(h0, torch.Tensor) and h0.ndim == 2 else 1
            like, like_name = self.A, f"the parameters of {type(self).__name__}"
        if h0 is not None:
            if not isinstance(h0, torch.Tensor) or h0.ndim != 2 or (
                    x is not None and h0.shape[0] != batch) or h0.shape[1] != self.n_latent:
                shape = tuple(h0.shape) if isinstance(h0, torch.Tensor) else type(h0).__name__
                rows = batch if x is not None else "B"
                raise ValueError(f"h0 must have shape (B, M) = ({rows}, {self.n_latent}), got "
                                 f"{shape}")
            check_state(h0, like, like_name=like_name)
        z = h0 if h0 is not None else like.new_zeros((batch, self.n_latent))
        states = []
        for t in range(length):
            z = self.step(z, None if x is None else x[:, t])
            states.append(z)
        return torch.stack(states, 1), z

    def region(self, z: torch.Tensor) -> torch.Tensor:
        """The linear subregion of each state as a boolean pattern (B, R) of ReLU signs."""
        raise NotImplementedError

    def as_discrete_map(self, dt: float | None = None) -> DiscreteMap:
        """The autonomous map z_{t-1} -> z_t with its exact Jacobian, for tsrnn.analysis;
        ``dt`` is the time one step stands for (None: exponents per step)."""
        reference = self.A

        def initial_states(n: int, seed: int | None = None) -> torch.Tensor:
            generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
            return torch.randn((n, self.n_latent), generator=generator,
                               dtype=torch.float64).to(reference)

        return DiscreteMap(step=self.step, dim=self.n_latent, time_step=dt,
                           jacobian=self.jacobian, initial_states=initial_states,
                           dtype=reference.dtype, device=reference.device,
                           name=type(self).__name__)

    def region_codes(self, z: torch.Tensor) -> torch.Tensor:
        """Subregions as integers (B,): the sign bits read as a binary number."""
        pattern = self.region(z).long()
        weights = 2 ** torch.arange(pattern.shape[-1] - 1, -1, -1, device=z.device)
        return (pattern * weights).sum(-1)


class PLRNN(_PiecewiseLinearRNN):
    """Piecewise-linear RNN z_t = A z_{t-1} + W relu(z_{t-1}) + h (+ C s_t).

    Parameters
    ----------
    n_latent : int
        M, the number of latent states.
    n_inputs : int
        K, external inputs (0 for an autonomous model).
    generator : torch.Generator, optional
        For a reproducible initialisation.
    """

    def __init__(self, n_latent: int, n_inputs: int = 0,
                 generator: torch.Generator | None = None):
        super().__init__(n_latent, n_inputs)
        k = _normalized_positive_definite(self.n_latent, generator)
        self.A = nn.Parameter(torch.diagonal(k).clone())
        self.W = nn.Parameter(k - torch.diag(torch.diagonal(k)))
        self.h = nn.Parameter(torch.zeros(self.n_latent))
        self.register_buffer("off_diagonal", 1.0 - torch.eye(self.n_latent))

    def _latent_step(self, z):
        return self.A * z + torch.relu(z) @ (self.W * self.off_diagonal).T + self.h

    def _latent_parameter_gradients(self, z, adjoint):
        return {"A": (adjoint * z).sum(0), "W": (adjoint.T @ torch.relu(z)) * self.off_diagonal,
                "h": adjoint.sum(0)}

    def jacobian(self, z):
        """A + W diag(1[z > 0]) for each state (B, M, M)."""
        slopes = (z > 0).to(z.dtype)
        return torch.diag_embed(self.A.expand_as(z)) + (
            self.W * self.off_diagonal) * slopes.unsqueeze(-2)

    def region(self, z):
        return z > 0


class ShallowPLRNN(_PiecewiseLinearRNN):
    """Shallow PLRNN z_t = A z_{t-1} + W1 relu(W2 z_{t-1} + h2) + h1 (+ C s_t).

    Parameters
    ----------
    n_latent, n_hidden : int
        M and H.
    n_inputs : int
    clipped : bool
        Use W1 [relu(W2 z + h2) - relu(W2 z)], which keeps orbits bounded when ||A|| < 1.
    generator : torch.Generator, optional
    """

    def __init__(self, n_latent: int, n_hidden: int, n_inputs: int = 0,
                 clipped: bool = False, generator: torch.Generator | None = None):
        super().__init__(n_latent, n_inputs)
        self.n_hidden = check_positive(n_hidden, "n_hidden", integer=True)
        self.clipped = check_bool(clipped, "clipped")
        k = _normalized_positive_definite(self.n_latent, generator)
        self.A = nn.Parameter(torch.diagonal(k).clone())
        bound_1 = 1.0 / self.n_hidden ** 0.5
        bound_2 = 1.0 / self.n_latent ** 0.5
        self.W1 = nn.Parameter(torch.empty(self.n_latent, self.n_hidden).uniform_(
            -bound_1, bound_1, generator=generator))
        self.W2 = nn.Parameter(torch.empty(self.n_hidden, self.n_latent).uniform_(
            -bound_2, bound_2, generator=generator))
        self.h1 = nn.Parameter(torch.zeros(self.n_latent))
        self.h2 = nn.Parameter(torch.empty(self.n_hidden).uniform_(-bound_2, bound_2,
                                                                   generator=generator))

    def _hidden(self, z):
        pre = z @ self.W2.T
        if self.clipped:
            return torch.relu(pre + self.h2) - torch.relu(pre)
        return torch.relu(pre + self.h2)

    def _latent_step(self, z):
        return self.A * z + self._hidden(z) @ self.W1.T + self.h1

    def _latent_parameter_gradients(self, z, adjoint):
        pre = z @ self.W2.T
        shifted = pre + self.h2
        hidden = torch.relu(shifted)
        if self.clipped:
            hidden = hidden - torch.relu(pre)
        grad_hidden = adjoint @ self.W1
        # relu's backward as autograd runs it (one fused pass; torch.where with a mask is
        # several times slower on the CPU)
        grad_shifted = _relu_backward(grad_hidden, shifted)
        grad_pre = grad_shifted - _relu_backward(grad_hidden, pre) if self.clipped \
            else grad_shifted
        return {"A": (adjoint * z).sum(0), "W1": adjoint.T @ hidden, "W2": grad_pre.T @ z,
                "h1": adjoint.sum(0), "h2": grad_shifted.sum(0)}

    def jacobian(self, z):
        """A + W1 D(z) W2, D = diag(1[W2 z + h2 > 0] (- 1[W2 z > 0] when clipped))."""
        pre = z @ self.W2.T
        slopes = (pre + self.h2 > 0).to(z.dtype)
        if self.clipped:
            slopes = slopes - (pre > 0).to(z.dtype)
        return torch.diag_embed(self.A.expand_as(z)) + (self.W1 * slopes.unsqueeze(-2)) @ self.W2

    def region(self, z):
        pre = z @ self.W2.T
        pattern = pre + self.h2 > 0
        return torch.cat([pattern, pre > 0], -1) if self.clipped else pattern


class ALRNN(_PiecewiseLinearRNN):
    """Almost-linear RNN: ReLU on the last P of M units only.

    Parameters
    ----------
    n_latent : int
        M.
    n_pwl : int
        P, the piecewise-linear units (0 <= P <= M); at most 2^P linear subregions.
    n_inputs : int
    generator : torch.Generator, optional
    """

    def __init__(self, n_latent: int, n_pwl: int, n_inputs: int = 0,
                 generator: torch.Generator | None = None):
        super().__init__(n_latent, n_inputs)
        self.n_pwl = check_positive(n_pwl, "n_pwl", integer=True, allow_zero=True)
        if self.n_pwl > self.n_latent:
            raise ValueError(f"n_pwl={n_pwl} exceeds n_latent={n_latent}: P must be <= M")
        k = _normalized_positive_definite(self.n_latent, generator)
        self.A = nn.Parameter(torch.diagonal(k).clone())
        self.W = nn.Parameter(k - torch.diag(torch.diagonal(k)))
        self.h = nn.Parameter(torch.zeros(self.n_latent))
        self.register_buffer("off_diagonal", 1.0 - torch.eye(self.n_latent))
        linear = torch.zeros(self.n_latent, dtype=torch.bool)
        linear[: self.n_latent - self.n_pwl] = True
        self.register_buffer("linear_units", linear)

    def _phi(self, z):
        return torch.where(self.linear_units, z, torch.relu(z))

    def _latent_step(self, z):
        return self.A * z + self._phi(z) @ (self.W * self.off_diagonal).T + self.h

    def _latent_parameter_gradients(self, z, adjoint):
        return {"A": (adjoint * z).sum(0), "W": (adjoint.T @ self._phi(z)) * self.off_diagonal,
                "h": adjoint.sum(0)}

    def jacobian(self, z):
        """A + W diag(d), d = 1 on the linear units and 1[z > 0] on the last P."""
        slopes = torch.where(self.linear_units, torch.ones_like(z), (z > 0).to(z.dtype))
        return torch.diag_embed(self.A.expand_as(z)) + (
            self.W * self.off_diagonal) * slopes.unsqueeze(-2)

    def region(self, z):
        """The symbolic code: signs of the last P units (B, P)."""
        return z[..., self.n_latent - self.n_pwl:] > 0
