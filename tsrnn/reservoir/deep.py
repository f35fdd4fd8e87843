"""Residual reservoirs: the deep residual ESN and the residual reservoir memory network.

Pinna, Ceni & Gallicchio (2025), "Deep Residual Echo State Networks: exploring residual
orthogonal connections in untrained Recurrent Neural Networks", arXiv:2508.21172 (DeepResESN);
Pinna, Ceni & Gallicchio (2025), "Residual Reservoir Memory Networks", IJCNN 2025,
arXiv:2508.09925 (ResRMN); both build on Ceni & Gallicchio (2024), "Residual Echo State
Networks: residual recurrent neural networks with stable dynamics and fast learning",
Neurocomputing 597 (ResESN).

DeepResESN, layers l = 1 .. L of M units each (column vectors)::

    h^l_t = alpha_l O_l h^l_{t-1} + beta_l tanh(W_l h^l_{t-1} + V_l x^l_t + b_l),
    x^1_t = u_t,   x^l_t = h^{l-1}_t  (the state of the layer below at the same step)

ResRMN, a linear memory reservoir of M_m units feeding one residual layer of M units::

    m_t = gamma C m_{t-1} + V_m u_t
    h_t = alpha O h_{t-1} + beta tanh(W h_{t-1} + W_m m_t + W_x u_t + b)

O is orthogonal: ``"random"`` (the Q of a QR factorisation of a U(-1, 1) matrix, its
columns' signs fixed by diag(R) > 0 so that Q is Haar-distributed), ``"cycle"`` (ones on
the sub-diagonal and O[0, M-1] = 1, so (O h)_i = h_{i-1}: a cyclic shift) or
``"identity"``. C is the cyclic shift (spectral radius 1, gamma = 1 in the paper).
W ~ U(-1, 1) scaled by rho sqrt(3) / sqrt(M), which puts its spectral radius at rho by the
circular law without an eigen-solve (the papers' "fast spectral rescaling"); V, W_m, W_x
and b are U(-s, s) with their own scalings s.

Stability at the origin: each layer's Jacobian there is alpha O + beta W (the stacked
system's is block triangular, so its spectrum is the union of the layers'); the echo state
property needs rho(alpha O + beta W) < 1 and alpha + beta ||W||_2 < 1 is sufficient. The
ResRMN memory reservoir has radius gamma = 1 by design (it never forgets), so only its
nonlinear layer is checked.

Choices the papers leave open, settled here:

- alpha in [0, 1] and beta in (0, 1] are enforced: the range of the ResESN formulation,
  and every configuration the authors publish with their code lies in it. alpha = 1 - a,
  beta = a, O = I gives the leaky ESN of leak rate a.
- Per-layer settings: alpha, beta, rho, bias scaling and O may differ per layer (the
  authors' code has one configuration for the first layer and one for the others); the
  inter-layer scaling s_V of V_l, l >= 2, is separate from the input scaling of V_1.
- Readout: the concatenation of all layers (DeepESN practice; the authors' code offers it
  as ``concat``) or the last layer only. For ResRMN the paper reads out h only; [m, h] is
  offered as an option.
- The ResRMN memory reservoir has no bias (the authors' code has one, zero by default);
  gamma < 1 (``memory_radius``) is an extension that makes the memory fade, for long
  streams: with gamma = 1 its state sums every M-th input since the start (C^M = I), so it
  grows like a random walk over a stream much longer than M_m.
- The memory state takes the spec's column convention m_t = C m_{t-1}; the authors' code
  multiplies row vectors, m C, which shifts the other way (the same delay line, relabelled).

Layout of the state (what ``forward`` returns and ``step`` takes): DeepResESN
[h^1, ..., h^L] (n_units = L M); ResRMN [m, h] (n_units = M_m + M).

Measured (benchmarks/bench_reservoir_memory.py, equal total units, 8 settings per model):
Jaeger's memory capacity at 500 units is 467 for DeepResESN (alpha 0.99, beta 0.01, O a
cycle), 404 for ResRMN with gamma 0.99 and 47 for the leaky ESN (68 at best off its grid);
ResRMN with gamma = 1 loses on a stream (21) and on the ctXOR recall task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .._validation import check_bool, check_in_range, check_option, check_positive, warn
from .esn import _SEGMENT_WASHOUT, _SEGMENTS, ESN, _seed
from .matrices import bias_vector, input_matrix, recurrent_matrix
from .readout import SOLVERS
from .reservoir import segment_plan, segmented_run

# ---------------------------------------------------------------------- weights


def _random_orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """Q of the QR factorisation of a U(-1, 1) matrix, with diag(R) > 0 (Haar for Gaussian
    entries; for uniform ones a random orthogonal matrix as in the papers' code)."""
    q, r = np.linalg.qr(rng.uniform(-1.0, 1.0, (n, n)))
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs


def cycle_matrix(n: int) -> np.ndarray:
    """The cyclic shift: ones on the sub-diagonal and C[0, n-1] = 1, so (C h)_i = h_{i-1}."""
    matrix = np.zeros((n, n))
    matrix[np.arange(1, n), np.arange(n - 1)] = 1.0
    matrix[0, n - 1] = 1.0
    return matrix


ORTHOGONAL_KINDS = {
    "random": _random_orthogonal,
    "cycle": lambda n, rng: cycle_matrix(n),
    "identity": lambda n, rng: np.eye(n),
}


def orthogonal_matrix(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """The orthogonal matrix O (n, n) of the residual branch: one of :data:`ORTHOGONAL_KINDS`."""
    check_option(kind, "orthogonal", tuple(ORTHOGONAL_KINDS))
    return ORTHOGONAL_KINDS[kind](n, rng)


def residual_recurrent_matrix(n: int, spectral_radius: float, rng: np.random.Generator
                              ) -> np.ndarray:
    """Dense W ~ U(-1, 1) * rho sqrt(3) / sqrt(n): radius rho by the circular law."""
    return recurrent_matrix(n, spectral_radius, 1.0, rng, distribution="uniform", dense=True,
                            exact=False)


def _orthogonal_kind(matrix: np.ndarray) -> str:
    """Which fast path applies to O: the shift and the identity need no product."""
    n = matrix.shape[0]
    if np.array_equal(matrix, np.eye(n)):
        return "identity"
    if np.array_equal(matrix, cycle_matrix(n)):
        return "cycle"
    return "random"


# ---------------------------------------------------------------------- settings

PerLayer = float | Sequence[float]  # one value for every layer, or one per layer


def per_layer(value, name: str, n_layers: int) -> list:
    """One value per layer from a scalar (repeated) or a sequence of exactly ``n_layers``."""
    if isinstance(value, str) or np.ndim(value) == 0:
        return [value] * n_layers
    values = list(np.ravel(np.asarray(value, dtype=object)))
    if len(values) != n_layers:
        raise ValueError(f"{name} has {len(values)} entries; give one value for all layers "
                         f"or one per layer ({n_layers})")
    return values


def _check_residual_rates(alphas: Sequence[float], betas: Sequence[float]) -> None:
    for l, (alpha, beta) in enumerate(zip(alphas, betas)):
        suffix = f" (layer {l + 1})" if len(alphas) > 1 else ""
        check_in_range(alpha, "alpha" + suffix, 0.0, 1.0)
        check_in_range(beta, "beta" + suffix, 0.0, 1.0, closed="right")


def _layer_stability(alpha: float, beta: float, orthogonal: np.ndarray, recurrent: np.ndarray,
                     effective_only: bool = False) -> tuple[float, float, float]:
    """rho(W), rho(alpha O + beta W) and alpha + beta ||W||_2 of one residual layer (NaN for
    the first and last when ``effective_only``: the check at fit needs only the middle one)."""
    effective = float(np.abs(np.linalg.eigvals(alpha * orthogonal + beta * recurrent)).max())
    if effective_only:
        return math.nan, effective, math.nan
    radius = float(np.abs(np.linalg.eigvals(recurrent)).max())
    return radius, effective, alpha + beta * float(np.linalg.norm(recurrent, 2))


class _ArrayOps:
    """The few operations of the recurrence that differ between numpy (CPU) and torch."""

    def __init__(self, backend: str):
        self.numpy = backend == "numpy"

    def tanh_(self, array):
        return np.tanh(array, out=array) if self.numpy else array.tanh_()

    def roll(self, array):  # (C h)_i = h_{i-1} along the unit axis 0
        return np.roll(array, 1, axis=0) if self.numpy else torch.roll(array, 1, 0)

    def copy(self, array):
        return np.array(array) if self.numpy else array.clone()

    def columns(self, inputs):  # (B, L, I) -> (L, I, B), contiguous per step
        if self.numpy:
            return np.ascontiguousarray(inputs.transpose(1, 2, 0))
        return inputs.permute(1, 2, 0).contiguous()


_NUMPY, _TORCH = _ArrayOps("numpy"), _ArrayOps("torch")


class _ResidualRecurrence(nn.Module):
    """Shared driver: ``forward`` runs ``_advance`` step by step, on the CPU on numpy views
    of the buffers (a fraction of torch's dispatch cost per small operation), else in
    torch; states are columns (N,) for one sequence or (N, B) for a batch. The input
    projections are formed step by step: materialising them for a long series would
    move more memory than the products do."""

    n_units: int
    n_inputs: int

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor, state: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        reference = self._reference_buffer()
        inputs = inputs.to(dtype=reference.dtype)
        batch, _, n_inputs = inputs.shape
        if n_inputs != self.n_inputs:
            raise ValueError(f"inputs have {n_inputs} features; this reservoir takes "
                             f"{self.n_inputs}")
        if state is None:
            state = inputs.new_zeros((batch, self.n_units))
        state = state.to(dtype=reference.dtype)
        if inputs.device.type == "cpu":
            # numpy's BLAS call per product costs less than torch's dispatch: 61 against
            # 87 us per step and sequence for a batch of 16 of ResRMN's defaults.
            states = torch.from_numpy(self._run(inputs.numpy(), state.numpy(), _NUMPY))
        else:
            states = self._run(inputs, state, _TORCH)
        return states, states[:, -1]

    def _run(self, inputs, state, ops: _ArrayOps):
        batch, length, _ = inputs.shape
        weights = self._weights(ops, single=batch == 1)
        if ops.numpy:
            states = np.empty((batch, length, self.n_units), dtype=state.dtype)
        else:
            states = state.new_empty((batch, length, self.n_units))
        if batch == 1:
            z, steps = ops.copy(state[0]), inputs[0]
            for t in range(length):
                self._advance(z, steps[t], weights, ops)
                states[0, t] = z
        else:
            z, steps = ops.copy(state.T), ops.columns(inputs)
            for t in range(length):
                self._advance(z, steps[t], weights, ops)
                states[:, t] = z.T
        return states

    @torch.no_grad()
    def run_segmented(self, inputs: torch.Tensor, n_segments: int, washout: int,
                      tolerance: float | None = None, state: torch.Tensor | None = None
                      ) -> torch.Tensor | None:
        """States (L, N) of one sequence (L, I) computed as parallel time segments, each
        started from zeros ``washout`` steps early and verified at its seam, as
        :meth:`tsrnn.reservoir.LeakyReservoir.run_segmented` (None when a seam does not
        close: run sequentially). The dense products of a step then have a column per
        segment: ~95 instead of ~265 us per step and sequence for 4 layers of 250 units."""
        plan = segment_plan(inputs.shape[0], n_segments, washout)
        if plan is None:
            return None
        return segmented_run(self, inputs, plan[0], plan[1], washout, tolerance, state)

    def _reference_buffer(self) -> torch.Tensor:
        raise NotImplementedError

    def _weights(self, ops: _ArrayOps, single: bool) -> list:
        raise NotImplementedError

    def _advance(self, z, u, weights, ops: _ArrayOps) -> None:
        raise NotImplementedError

    @staticmethod
    def _as(tensor: torch.Tensor, ops: _ArrayOps):
        return tensor.numpy() if ops.numpy else tensor

    @staticmethod
    def _residual_update(z, lo: int, hi: int, drive, kind: str, orthogonal, alpha: float,
                         beta: float, ops: _ArrayOps) -> None:
        """z[lo:hi] <- alpha O z[lo:hi] + beta drive, with drive already through tanh."""
        h = z[lo:hi]
        if kind == "identity":
            h *= alpha
            drive *= beta
            h += drive
        elif kind == "cycle":
            shifted = ops.roll(h)
            shifted *= alpha
            drive *= beta
            shifted += drive
            z[lo:hi] = shifted
        else:
            rotated = orthogonal @ h
            rotated *= alpha
            drive *= beta
            rotated += drive
            z[lo:hi] = rotated

    @staticmethod
    def _residual_branch(h: torch.Tensor, kind: str, orthogonal: torch.Tensor) -> torch.Tensor:
        """O h for row states h (B, M), differentiably."""
        if kind == "identity":
            return h
        if kind == "cycle":
            return torch.roll(h, 1, 1)
        return h @ orthogonal.T

    @staticmethod
    def _times(matrix: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """matrix (P, Q) times each trajectory's columns (B, Q, c) -> (B, P, c), as one
        product over all B·c columns."""
        return torch.einsum("pq,bqc->bpc", matrix, columns)

    def _residual_columns(self, columns: torch.Tensor, kind: str,
                          orthogonal: torch.Tensor) -> torch.Tensor:
        """O applied to state and tangent columns (B, M, c)."""
        if kind == "identity":
            return columns
        if kind == "cycle":
            return torch.roll(columns, 1, 1)
        return self._times(orthogonal, columns)


# ---------------------------------------------------------------------- DeepResESN module


class DeepResidualReservoir(_ResidualRecurrence):
    """The stacked residual reservoir of DeepResESN (see the module docstring).

    Parameters
    ----------
    recurrent : sequence of L arrays (M, M)
        W_l.
    inputs : sequence of L arrays
        V_1 (M, I) and V_l (M, M) for l >= 2.
    biases : sequence of L arrays (M,)
        b_l.
    orthogonal : sequence of L arrays (M, M)
        O_l; the identity and the cyclic shift are recognised and applied without a product.
    alpha, beta : sequences of L floats
        alpha_l in [0, 1] (residual branch) and beta_l in (0, 1] (nonlinear branch).
    dtype : torch dtype of the buffers (float64 by default).

    Shapes
    ------
    inputs : (B, T, I); state : (B, L M) or None (zeros), the layers' states concatenated.
    Returns the states (B, T, L M) and the final state (B, L M).
    """

    def __init__(self, recurrent: Sequence[np.ndarray], inputs: Sequence[np.ndarray],
                 biases: Sequence[np.ndarray], orthogonal: Sequence[np.ndarray],
                 alpha: Sequence[float], beta: Sequence[float],
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        n_layers = len(recurrent)
        if not (len(inputs) == len(biases) == len(orthogonal) == n_layers
                and len(alpha) == len(beta) == n_layers):
            raise ValueError("recurrent, inputs, biases, orthogonal, alpha and beta must have "
                             "one entry per layer")
        _check_residual_rates(alpha, beta)
        self.n_layers = n_layers
        self.units_per_layer = int(np.shape(recurrent[0])[0])
        self.n_units = n_layers * self.units_per_layer
        self.n_inputs = int(np.shape(inputs[0])[1])
        self.alpha = [float(a) for a in alpha]
        self.beta = [float(b) for b in beta]
        self.orthogonal_kinds = []
        m = self.units_per_layer
        for l in range(n_layers):
            expected_in = self.n_inputs if l == 0 else m
            if (np.shape(recurrent[l]) != (m, m) or np.shape(orthogonal[l]) != (m, m)
                    or np.shape(inputs[l]) != (m, expected_in) or np.shape(biases[l]) != (m,)):
                raise ValueError(f"layer {l + 1}: expected W and O of shape ({m}, {m}), V of "
                                 f"shape ({m}, {expected_in}) and b of shape ({m},)")
            # [V_l | W_l]: for l >= 2 it multiplies the contiguous slice [h^{l-1}_t, h^l_{t-1}]
            # of the state in one product.
            stacked = np.concatenate([np.asarray(inputs[l]), np.asarray(recurrent[l])], axis=1)
            self.register_buffer(f"weights_{l}", torch.as_tensor(stacked, dtype=dtype))
            self.register_buffer(f"bias_{l}", torch.as_tensor(biases[l], dtype=dtype))
            self.register_buffer(f"orthogonal_{l}", torch.as_tensor(orthogonal[l], dtype=dtype))
            self.orthogonal_kinds.append(_orthogonal_kind(np.asarray(orthogonal[l])))

    @classmethod
    def random(cls, n_inputs: int, n_layers: int, units_per_layer: int, *,
               rng: np.random.Generator, alpha: PerLayer = 0.3, beta: PerLayer = 0.7,
               spectral_radius: PerLayer = 0.9, orthogonal: str | Sequence[str] = "random",
               input_scaling: float = 0.1, inter_scaling: PerLayer = 1.0,
               bias_scaling: PerLayer = 0.5, dtype: torch.dtype = torch.float64
               ) -> DeepResidualReservoir:
        """Random weights as in the paper; each setting a scalar or one value per layer
        (``inter_scaling``: one per connection between layers, L - 1)."""
        n_layers = check_positive(n_layers, "n_layers", integer=True)
        m = check_positive(units_per_layer, "units_per_layer", integer=True)
        settings = deep_layer_settings(n_layers, alpha, beta, spectral_radius, orthogonal,
                                       input_scaling, inter_scaling, bias_scaling)
        recurrent, inputs, biases, orthogonals = [], [], [], []
        for l, layer_rng in enumerate(rng.spawn(n_layers)):
            recurrent_rng, input_rng, bias_rng, orthogonal_rng = layer_rng.spawn(4)
            recurrent.append(residual_recurrent_matrix(m, settings["spectral_radius"][l],
                                                       recurrent_rng))
            scaling = input_scaling if l == 0 else settings["inter_scaling"][l - 1]
            inputs.append(input_matrix(m, n_inputs if l == 0 else m, scaling, 1.0, input_rng))
            if not inputs[-1].any():
                what = "input_scaling" if l == 0 else f"inter_scaling[{l - 1}]"
                raise ValueError(f"{what} is 0: layer {l} would never see its input (and "
                                 "the model forecast a constant)")
            biases.append(bias_vector(m, settings["bias_scaling"][l], bias_rng))
            orthogonals.append(orthogonal_matrix(settings["orthogonal"][l], m, orthogonal_rng))
        return cls(recurrent, inputs, biases, orthogonals, settings["alpha"], settings["beta"],
                   dtype=dtype)

    def _reference_buffer(self) -> torch.Tensor:
        return self.weights_0

    def layer_matrices(self, layer: int) -> dict[str, np.ndarray]:
        """W, V, b and O of ``layer`` (0-based) as float64 numpy arrays on the CPU."""
        stacked = getattr(self, f"weights_{layer}").detach().cpu().double().numpy()
        n_in = self.n_inputs if layer == 0 else self.units_per_layer
        return {"recurrent": stacked[:, n_in:], "input": stacked[:, :n_in],
                "bias": getattr(self, f"bias_{layer}").detach().cpu().double().numpy(),
                "orthogonal": getattr(self, f"orthogonal_{layer}").detach().cpu()
                .double().numpy()}

    def _weights(self, ops: _ArrayOps, single: bool) -> list:
        layers = []
        for l in range(self.n_layers):
            stacked = self._as(getattr(self, f"weights_{l}"), ops)
            bias = self._as(getattr(self, f"bias_{l}"), ops)
            if l == 0:  # the input is not next to h^1 in the state: two products
                stacked = (stacked[:, self.n_inputs:], stacked[:, :self.n_inputs])
            layers.append((stacked, bias if single else bias[:, None],
                           self._as(getattr(self, f"orthogonal_{l}"), ops),
                           self.orthogonal_kinds[l], self.alpha[l], self.beta[l]))
        return layers

    def _advance(self, z, u, weights, ops: _ArrayOps) -> None:
        m = self.units_per_layer
        for l, (stacked, bias, orthogonal, kind, alpha, beta) in enumerate(weights):
            lo, hi = l * m, (l + 1) * m
            if l == 0:
                drive = stacked[0] @ z[lo:hi]
                drive += stacked[1] @ u
            else:  # [V_l | W_l] [h^{l-1}_t ; h^l_{t-1}]: the layer below is already at t
                drive = stacked @ z[lo - m:hi]
            drive += bias
            ops.tanh_(drive)
            self._residual_update(z, lo, hi, drive, kind, orthogonal, alpha, beta, ops)

    def step(self, u: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """One differentiable step (B, I), (B, L M) -> (B, L M), for analysis (Jacobians)."""
        m, below, layers = self.units_per_layer, u, []
        for l in range(self.n_layers):
            stacked = getattr(self, f"weights_{l}")
            h = state[:, l * m:(l + 1) * m]
            n_in = self.n_inputs if l == 0 else m
            drive = h @ stacked[:, n_in:].T + below @ stacked[:, :n_in].T + getattr(
                self, f"bias_{l}")
            residual = self._residual_branch(h, self.orthogonal_kinds[l],
                                             getattr(self, f"orthogonal_{l}"))
            below = self.alpha[l] * residual + self.beta[l] * torch.tanh(drive)
            layers.append(below)
        return torch.cat(layers, 1)

    def step_with_tangent(self, u: torch.Tensor, state: torch.Tensor, du: torch.Tensor,
                          dstate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step and its tangent map applied to k directions: (B, I), (B, L M), (B, I, k),
        (B, L M, k) -> the next state and the pushed directions (B, L M, k). Per layer, with
        h' = alpha O h + beta tanh(a), a = W h + V x':
        dh' = alpha O dh + beta (1 - tanh(a)^2) (W dh + V dx'). The state and its
        directions go through each product as columns of one matrix."""
        m = self.units_per_layer
        below = torch.cat([u.unsqueeze(-1), du], -1)  # (B, I, 1 + k): value, then tangents
        layers = []
        for l in range(self.n_layers):
            stacked = getattr(self, f"weights_{l}")
            n_in = self.n_inputs if l == 0 else m
            own = torch.cat([state[:, l * m:(l + 1) * m].unsqueeze(-1),
                             dstate[:, l * m:(l + 1) * m]], -1)
            products = (self._times(stacked[:, n_in:], own)
                        + self._times(stacked[:, :n_in], below))
            activation = torch.tanh(products[..., 0] + getattr(self, f"bias_{l}"))
            residual = self._residual_columns(own, self.orthogonal_kinds[l],
                                              getattr(self, f"orthogonal_{l}"))
            below = self.alpha[l] * residual
            below[..., 0] += self.beta[l] * activation
            below[..., 1:] += (self.beta[l] * (1.0 - activation.square())).unsqueeze(-1) \
                * products[..., 1:]
            layers.append(below)
        columns = torch.cat(layers, 1)
        return columns[..., 0], columns[..., 1:]

    def echo_state_diagnostics(self, effective_only: bool = False) -> dict[str, np.ndarray]:
        """Per layer: rho(W_l), the effective radius rho(alpha_l O_l + beta_l W_l) (the
        Jacobian at the origin; >= 1 means the echo state property is likely lost) and the
        sufficient contraction bound alpha_l + beta_l ||W_l||_2 (< 1 guarantees it)."""
        rows = []
        for l in range(self.n_layers):
            matrices = self.layer_matrices(l)
            rows.append(_layer_stability(self.alpha[l], self.beta[l], matrices["orthogonal"],
                                         matrices["recurrent"], effective_only))
        radius, effective, bound = (np.array(column) for column in zip(*rows))
        return {"spectral_radius": radius, "effective_spectral_radius": effective,
                "contraction_bound": bound}

    def extra_repr(self) -> str:
        return (f"n_inputs={self.n_inputs}, n_layers={self.n_layers}, "
                f"units_per_layer={self.units_per_layer}, orthogonal={self.orthogonal_kinds}")


def deep_layer_settings(n_layers: int, alpha, beta, spectral_radius, orthogonal,
                        input_scaling, inter_scaling, bias_scaling) -> dict[str, list]:
    """Validated per-layer settings of a DeepResESN (ValueError naming the bad one)."""
    settings = {
        "alpha": per_layer(alpha, "alpha", n_layers),
        "beta": per_layer(beta, "beta", n_layers),
        "spectral_radius": per_layer(spectral_radius, "spectral_radius", n_layers),
        "orthogonal": per_layer(orthogonal, "orthogonal", n_layers),
        "bias_scaling": per_layer(bias_scaling, "bias_scaling", n_layers),
        "inter_scaling": per_layer(inter_scaling, "inter_scaling (one per connection "
                                   "between layers)", n_layers - 1),
    }
    _check_residual_rates(settings["alpha"], settings["beta"])
    for name in ("spectral_radius",):
        for value in settings[name]:
            check_positive(value, name)
    for name in ("bias_scaling", "inter_scaling"):
        for value in settings[name]:
            check_positive(value, name, allow_zero=True)
    for kind in settings["orthogonal"]:
        check_option(kind, "orthogonal", tuple(ORTHOGONAL_KINDS))
    if np.ndim(input_scaling) != 0:
        raise ValueError("input_scaling must be one number (it scales V_1, the weights of "
                         "the external input); inter_scaling scales the deeper layers")
    check_positive(input_scaling, "input_scaling", allow_zero=True)
    return settings


# ---------------------------------------------------------------------- ResRMN module


class ResidualMemoryReservoir(_ResidualRecurrence):
    """The reservoir of ResRMN: a linear cyclic memory feeding a residual layer.

    Parameters
    ----------
    memory_inputs : array (M_m, I)
        V_m.
    recurrent : array (M, M)
        W.
    memory_weights : array (M, M_m)
        W_m.
    inputs : array (M, I)
        W_x.
    bias : array (M,)
        b.
    orthogonal : array (M, M)
        O (the identity and the cyclic shift are applied without a product).
    alpha : float in [0, 1]; beta : float in (0, 1]
    memory_radius : float in (0, 1]
        gamma, the memory's spectral radius (1 in the paper: a lossless delay line).
    dtype : torch dtype of the buffers.

    Shapes
    ------
    inputs : (B, T, I); state : (B, M_m + M) or None (zeros), the state [m, h].
    Returns the states (B, T, M_m + M) and the final state (B, M_m + M).
    """

    def __init__(self, memory_inputs: np.ndarray, recurrent: np.ndarray,
                 memory_weights: np.ndarray, inputs: np.ndarray, bias: np.ndarray,
                 orthogonal: np.ndarray, alpha: float, beta: float, memory_radius: float = 1.0,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        _check_residual_rates([alpha], [beta])
        check_in_range(memory_radius, "memory_radius", 0.0, 1.0, closed="right")
        self.n_memory_units, self.n_inputs = (int(s) for s in np.shape(memory_inputs))
        self.n_nonlinear_units = int(np.shape(recurrent)[0])
        self.n_units = self.n_memory_units + self.n_nonlinear_units
        m, mm, i = self.n_nonlinear_units, self.n_memory_units, self.n_inputs
        if (np.shape(recurrent) != (m, m) or np.shape(orthogonal) != (m, m)
                or np.shape(memory_weights) != (m, mm) or np.shape(inputs) != (m, i)
                or np.shape(bias) != (m,)):
            raise ValueError(f"expected W and O of shape ({m}, {m}), W_m ({m}, {mm}), "
                             f"W_x ({m}, {i}) and b ({m},)")
        self.alpha, self.beta = float(alpha), float(beta)
        self.memory_radius = float(memory_radius)
        self.register_buffer("memory_input_weights", torch.as_tensor(memory_inputs, dtype=dtype))
        # [W_m | W] multiplies the whole state [m_t, h_{t-1}] in one product.
        stacked = np.concatenate([np.asarray(memory_weights), np.asarray(recurrent)], axis=1)
        self.register_buffer("weights", torch.as_tensor(stacked, dtype=dtype))
        self.register_buffer("input_weights", torch.as_tensor(inputs, dtype=dtype))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=dtype))
        self.register_buffer("orthogonal", torch.as_tensor(orthogonal, dtype=dtype))
        self.orthogonal_kind = _orthogonal_kind(np.asarray(orthogonal))

    @classmethod
    def random(cls, n_inputs: int, n_memory_units: int, n_units: int, *,
               rng: np.random.Generator, alpha: float = 0.3, beta: float = 0.7,
               spectral_radius: float = 0.9, orthogonal: str = "random",
               input_scaling: float = 0.1, memory_input_scaling: float = 0.1,
               memory_scaling: float = 0.05, bias_scaling: float = 0.5,
               memory_radius: float = 1.0, dtype: torch.dtype = torch.float64
               ) -> ResidualMemoryReservoir:
        """Random weights as in the paper (all input-side matrices dense U(-s, s))."""
        n_memory_units = check_positive(n_memory_units, "n_memory_units", integer=True)
        n_units = check_positive(n_units, "n_units", integer=True)
        check_positive(spectral_radius, "spectral_radius")
        for value, name in ((input_scaling, "input_scaling"),
                            (memory_input_scaling, "memory_input_scaling"),
                            (memory_scaling, "memory_scaling")):
            check_positive(value, name, allow_zero=True)
        check_option(orthogonal, "orthogonal", tuple(ORTHOGONAL_KINDS))
        if not (memory_input_scaling > 0 and memory_scaling > 0) and not input_scaling > 0:
            raise ValueError("input_scaling is 0 and the memory's path is cut "
                             "(memory_input_scaling or memory_scaling 0): the reservoir would "
                             "never see the data")
        memory_rng, recurrent_rng, coupling_rng, input_rng, bias_rng, orthogonal_rng = (
            rng.spawn(6))
        return cls(
            input_matrix(n_memory_units, n_inputs, memory_input_scaling, 1.0, memory_rng),
            residual_recurrent_matrix(n_units, spectral_radius, recurrent_rng),
            input_matrix(n_units, n_memory_units, memory_scaling, 1.0, coupling_rng),
            input_matrix(n_units, n_inputs, input_scaling, 1.0, input_rng),
            bias_vector(n_units, bias_scaling, bias_rng),
            orthogonal_matrix(orthogonal, n_units, orthogonal_rng),
            alpha, beta, memory_radius, dtype=dtype)

    def _reference_buffer(self) -> torch.Tensor:
        return self.weights

    @torch.no_grad()
    def run_segmented(self, inputs: torch.Tensor, n_segments: int, washout: int,
                      tolerance: float | None = None, state: torch.Tensor | None = None
                      ) -> torch.Tensor | None:
        """States (L, M_m + M) of one sequence (L, I) with the nonlinear layer run as
        parallel time segments (see :meth:`_ResidualRecurrence.run_segmented`).

        The memory is linear and takes no input from the nonlinear layer, so its states
        are computed first, exactly and in order (a shift and an add per step, whatever
        gamma: even a memory that never forgets), and with them the nonlinear layer's
        drive W_m m_t + W_x u_t + b for every step in one product. Only the nonlinear
        layer, which forgets at its effective radius, runs in segments; the seams are
        checked on its part of the state."""
        plan = segment_plan(inputs.shape[0], n_segments, washout)
        if plan is None:
            return None
        mm = self.n_memory_units
        cpu = inputs.device.type == "cpu"
        ops = _NUMPY if cpu else _TORCH
        u = inputs.to(self.weights.dtype)
        u = u.numpy() if cpu else u
        memory_inputs = self._as(self.memory_input_weights, ops)
        memory = u @ memory_inputs.T  # V_m u_t, then the recurrence in place
        previous = (self._as(state[:mm].to(self.weights.dtype), ops) if state is not None
                    else None)
        for t in range(memory.shape[0]):
            if previous is not None:
                shifted = ops.roll(previous)
                if self.memory_radius != 1.0:
                    shifted *= self.memory_radius
                memory[t] += shifted
            previous = memory[t]
        stacked = self._as(self.weights, ops)
        drive = memory @ stacked[:, :mm].T
        drive += u @ self._as(self.input_weights, ops).T
        drive += self._as(self.bias, ops)
        drive = torch.from_numpy(drive) if cpu else drive
        nonlinear = segmented_run(_DrivenLayer(self), drive, plan[0], plan[1], washout,
                                  tolerance, None if state is None else state[mm:])
        if nonlinear is None:
            return None
        memory = torch.from_numpy(memory) if cpu else memory
        return torch.cat([memory, nonlinear.to(memory)], 1)

    def matrices(self) -> dict[str, np.ndarray]:
        """V_m, W, W_m, W_x, b and O as float64 numpy arrays on the CPU."""
        def get(tensor):
            return tensor.detach().cpu().double().numpy()

        stacked = get(self.weights)
        return {"memory_input": get(self.memory_input_weights),
                "recurrent": stacked[:, self.n_memory_units:],
                "memory": stacked[:, :self.n_memory_units], "input": get(self.input_weights),
                "bias": get(self.bias), "orthogonal": get(self.orthogonal)}

    def _weights(self, ops: _ArrayOps, single: bool) -> list:
        bias = self._as(self.bias, ops)
        return [self._as(self.memory_input_weights, ops), self._as(self.weights, ops),
                self._as(self.input_weights, ops), bias if single else bias[:, None],
                self._as(self.orthogonal, ops)]

    def _advance(self, z, u, weights, ops: _ArrayOps) -> None:
        memory_inputs, stacked, inputs, bias, orthogonal = weights
        mm = self.n_memory_units
        shifted = ops.roll(z[:mm])  # C m_{t-1}
        if self.memory_radius != 1.0:
            shifted *= self.memory_radius
        shifted += memory_inputs @ u
        z[:mm] = shifted
        drive = stacked @ z  # W_m m_t + W h_{t-1}
        drive += inputs @ u
        drive += bias
        ops.tanh_(drive)
        self._residual_update(z, mm, self.n_units, drive, self.orthogonal_kind, orthogonal,
                              self.alpha, self.beta, ops)

    def step(self, u: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """One differentiable step (B, I), (B, M_m + M) -> (B, M_m + M)."""
        mm = self.n_memory_units
        memory = (self.memory_radius * torch.roll(state[:, :mm], 1, 1)
                  + u @ self.memory_input_weights.T)
        h = state[:, mm:]
        drive = (torch.cat([memory, h], 1) @ self.weights.T + u @ self.input_weights.T
                 + self.bias)
        residual = self._residual_branch(h, self.orthogonal_kind, self.orthogonal)
        return torch.cat([memory, self.alpha * residual + self.beta * torch.tanh(drive)], 1)

    def step_with_tangent(self, u: torch.Tensor, state: torch.Tensor, du: torch.Tensor,
                          dstate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step and its tangent map applied to k directions (shapes as
        :meth:`DeepResidualReservoir.step_with_tangent`): dm' = gamma C dm + V_m du,
        dh' = alpha O dh + beta (1 - tanh(a)^2) (W_m dm' + W dh + W_x du)."""
        mm = self.n_memory_units
        inputs = torch.cat([u.unsqueeze(-1), du], -1)  # (B, I, 1 + k)
        own = torch.cat([state.unsqueeze(-1), dstate], -1)  # (B, M_m + M, 1 + k)
        memory = (self.memory_radius * torch.roll(own[:, :mm], 1, 1)
                  + self._times(self.memory_input_weights, inputs))
        h = own[:, mm:]
        products = (self._times(self.weights, torch.cat([memory, h], 1))
                    + self._times(self.input_weights, inputs))
        activation = torch.tanh(products[..., 0] + self.bias)
        nonlinear = self.alpha * self._residual_columns(h, self.orthogonal_kind,
                                                        self.orthogonal)
        nonlinear[..., 0] += self.beta * activation
        nonlinear[..., 1:] += (self.beta * (1.0 - activation.square())).unsqueeze(-1) \
            * products[..., 1:]
        columns = torch.cat([memory, nonlinear], 1)
        return columns[..., 0], columns[..., 1:]

    def echo_state_diagnostics(self, effective_only: bool = False) -> dict[str, np.ndarray]:
        """The nonlinear layer's rho(W), rho(alpha O + beta W) and alpha + beta ||W||_2
        (arrays of one entry, like DeepResESN's per-layer ones), and the memory's radius
        gamma (its eigenvalues are gamma times the n-th roots of unity)."""
        matrices = self.matrices()
        radius, effective, bound = _layer_stability(self.alpha, self.beta,
                                                    matrices["orthogonal"],
                                                    matrices["recurrent"], effective_only)
        return {"spectral_radius": np.array([radius]),
                "effective_spectral_radius": np.array([effective]),
                "contraction_bound": np.array([bound]),
                "memory_spectral_radius": self.memory_radius}

    def extra_repr(self) -> str:
        return (f"n_inputs={self.n_inputs}, n_memory_units={self.n_memory_units}, "
                f"n_nonlinear_units={self.n_nonlinear_units}, "
                f"orthogonal={self.orthogonal_kind!r}, memory_radius={self.memory_radius}")


class _DrivenLayer:
    """The nonlinear layer of a :class:`ResidualMemoryReservoir` driven by a given drive
    d_t = W_m m_t + W_x u_t + b: h_t = alpha O h_{t-1} + beta tanh(W h_{t-1} + d_t). Called
    like a reservoir, (drive (B, L, M), state (B, M) or None) -> (states, final state), for
    :func:`~tsrnn.reservoir.reservoir.segmented_run`."""

    def __init__(self, reservoir: ResidualMemoryReservoir):
        self.reservoir = reservoir
        self.n_units = reservoir.n_nonlinear_units

    def __call__(self, drive: torch.Tensor, state: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        reservoir = self.reservoir
        cpu = drive.device.type == "cpu"
        ops = _NUMPY if cpu else _TORCH
        batch, length, n = drive.shape
        recurrent = reservoir.weights[:, reservoir.n_memory_units:].contiguous()
        recurrent, orthogonal = (reservoir._as(recurrent, ops),
                                 reservoir._as(reservoir.orthogonal, ops))
        columns = ops.columns(drive.numpy() if cpu else drive)  # (L, M, B)
        h = (drive.new_zeros((n, batch)) if state is None else state.T.contiguous())
        h = h.numpy() if cpu else h
        states = (np.empty((batch, length, n), dtype=h.dtype) if cpu
                  else h.new_empty((batch, length, n)))
        for t in range(length):
            pre = recurrent @ h
            pre += columns[t]
            ops.tanh_(pre)
            _ResidualRecurrence._residual_update(h, 0, n, pre, reservoir.orthogonal_kind,
                                                 orthogonal, reservoir.alpha, reservoir.beta,
                                                 ops)
            states[:, t] = h.T
        states = torch.from_numpy(states) if cpu else states
        return states, states[:, -1]


# ---------------------------------------------------------------------- estimators


class _ResidualESN(ESN):
    """What DeepResESN and ResRMN share on top of ESN: a readout on a slice of the state,
    the echo-state check at fit, and the diagnostics."""

    def _readout_units(self) -> slice:
        raise NotImplementedError

    def features(self, states: torch.Tensor, inputs: torch.Tensor, *,
                 overwrite: bool = False) -> torch.Tensor:
        """Readout features phi (..., F) from states (..., n_units) and inputs (..., I)."""
        return super().features(states[..., self._readout_units()], inputs,
                                overwrite=overwrite)

    def _closed_loop(self, first: torch.Tensor, state: torch.Tensor, n_steps: int,
                     future_x: np.ndarray | None) -> np.ndarray:
        """On the CPU the loop runs on numpy views of the weights through the reservoir's own
        step (``_advance``): the differentiable torch step costs ~4x more per step in
        dispatch and allocation for the same products."""
        if state.device.type != "cpu":
            return super()._closed_loop(first, state, n_steps, future_x)
        reservoir = self.reservoir_
        dtype = state.numpy().dtype
        weights = reservoir._weights(_NUMPY, single=True)
        readout = np.asarray(self.readout_weights_, dtype=dtype)
        intercept = np.asarray(self.readout_intercept_, dtype=dtype)
        units = self._readout_units()
        n_state_features = readout.shape[0] - (reservoir.n_inputs if self.readout_input else 0)
        state_weights, input_weights = readout[:n_state_features], readout[n_state_features:]
        outputs = np.empty((n_steps, first.shape[0]))
        outputs[0] = y = first.numpy()
        z = state.numpy().copy()
        for i in range(1, n_steps):
            u = y if future_x is None else np.concatenate([y, future_x[i - 1].astype(dtype)])
            reservoir._advance(z, u, weights, _NUMPY)
            features = z[units]
            if self.squared_units:
                features = features.copy()
                features[::2] **= 2
            y = features @ state_weights + intercept
            if self.readout_input:
                y += u @ input_weights
            outputs[i] = y
        return outputs

    def as_discrete_map(self, dt: float | None = None, **options):
        """The closed loop as a map on z = [x (reservoir state), y (next input, scaled)],
        with an analytic tangent map: the reservoir's ``step_with_tangent`` and the
        readout's derivative dy' = W_out^T dphi(x', y) (3x fewer seconds per step than
        forward-mode autodiff through the step for a 4 x 250 DeepResESN). ``dt``: the
        sampling step of the training data (exponents per time unit)."""
        from .._protocol import DiscreteMap

        self._check_readout()
        self._check_autonomous(options)
        reservoir = self.reservoir_
        n_units, d = reservoir.n_units, self.n_features_in_
        weights = torch.as_tensor(self.readout_weights_, dtype=self.dtype_, device=self.device_)
        units = self._readout_units()
        n_state = weights.shape[0] - (d if self.readout_input else 0)

        def step(z: torch.Tensor) -> torch.Tensor:
            x, y = z[:, :n_units], z[:, n_units:]
            x_next = reservoir.step(y, x)
            return torch.cat([x_next, self._readout(self.features(x_next, y))], 1)

        def tangent(z: torch.Tensor, frame: torch.Tensor):
            x, y = z[:, :n_units], z[:, n_units:]
            x_next, dx = reservoir.step_with_tangent(y, x, frame[:, n_units:],
                                                     frame[:, :n_units])
            read, dread = x_next[:, units], dx[:, units]
            if self.squared_units:
                slope = torch.ones_like(read)
                slope[:, ::2] = 2.0 * read[:, ::2]
                dread = slope.unsqueeze(-1) * dread
            dy = torch.einsum("fo,bfk->bok", weights[:n_state], dread)
            if self.readout_input:
                dy = dy + torch.einsum("fo,bfk->bok", weights[n_state:], frame[:, n_units:])
            y_next = self._readout(self.features(x_next, y))
            return torch.cat([x_next, y_next], 1), torch.cat([dx, dy], 1)

        return DiscreteMap(step=step, dim=n_units + d, time_step=dt, tangent=tangent,
                           initial_states=self._closed_loop_starts, dtype=self.dtype_,
                           device=self.device_, name=type(self).__name__,
                           default_exponents=d)

    def _forgetting(self) -> tuple[float, int]:
        """(rate, depth): the slowest linear rate at which the reservoir forgets its start,
        the largest effective radius rho(alpha O + beta W) over its layers (1 when it never
        forgets), and how many stages an error passes down."""
        raise NotImplementedError

    def _effective_radii(self) -> np.ndarray:
        # Eigenvalues of dense layers (0.2 s for 500 units): once per reservoir, the fit's
        # stability check having computed them already.
        cached = getattr(self, "_effective_radii_", None)
        if cached is None or cached[0] is not self.reservoir_:
            radii = self.reservoir_.echo_state_diagnostics(effective_only=True)[
                "effective_spectral_radius"]
            cached = self._effective_radii_ = (self.reservoir_, np.asarray(radii))
        return cached[1]

    def _segments(self, length: int) -> tuple[int, int] | None:
        # The washout from the reservoir's own forgetting: n^(depth - 1) rate^n <= 1e-16
        # (an error decays at the rate, times a polynomial factor from each stage it passes
        # down); segments at least twice their washout, else the washouts cost more than
        # the batch saves, and at least 4 of them.
        rate, depth = self._forgetting()
        if not 0.0 <= rate < 1.0:
            return None
        washout = _SEGMENT_WASHOUT
        if rate > 0.0:
            while ((depth - 1) * math.log(washout) + washout * math.log(rate)
                   > math.log(1e-16)):
                washout += 10
                if washout > length:
                    return None
        n_segments = min(_SEGMENTS, length // (2 * washout))
        return (n_segments, washout) if n_segments >= 4 else None

    def _check_common_hyperparameters(self) -> None:
        check_positive(self.ridge, "ridge", allow_zero=True)
        check_positive(self.warmup, "warmup", integer=True, allow_zero=True)
        check_option(self.solver, "solver", SOLVERS)
        check_positive(self.training_noise, "training_noise", allow_zero=True)
        check_bool(self.readout_input, "readout_input")
        check_bool(self.squared_units, "squared_units")
        self._check_online_settings()

    def echo_state_diagnostics(self) -> dict[str, np.ndarray]:
        """Stability at the origin of the fitted reservoir, per residual layer.

        Returns arrays (one entry per layer) ``spectral_radius`` rho(W_l),
        ``effective_spectral_radius`` rho(alpha_l O_l + beta_l W_l) (the layer's Jacobian
        at the origin; >= 1 means the echo state property is likely lost) and
        ``contraction_bound`` alpha_l + beta_l ||W_l||_2 (< 1 guarantees it for any input).
        """
        self._check_fitted()
        return self.reservoir_.echo_state_diagnostics()

    def _module_from_state(self, buffers: dict) -> torch.nn.Module:
        # Built from the hyperparameters (dense weights, shapes fixed by them) and then given
        # the saved weights.
        module = self._build_module()
        module.load_state_dict(buffers)
        return module

    def _check_reservoir(self) -> None:
        effective = self._effective_radii()
        unstable = np.flatnonzero(effective >= 1.0)
        if unstable.size:
            layers = ", ".join(f"layer {l + 1}: {effective[l]:.3f}" for l in unstable)
            warn(f"the effective spectral radius rho(alpha O + beta W) is >= 1 ({layers}): "
                 "the echo state property is likely lost (the state may depend on its "
                 "initial condition); lower alpha, beta or spectral_radius")


class DeepResESN(_ResidualESN):
    """Deep residual echo state network (Pinna, Ceni & Gallicchio 2025, arXiv:2508.21172).

    Stacked residual reservoir layers (see :mod:`tsrnn.reservoir.deep`) with a ridge
    readout, forecasting in closed loop like :class:`~tsrnn.reservoir.ESN`.

    Parameters
    ----------
    n_layers : int
        L.
    units_per_layer : int
        M; the state has L M units.
    alpha : float in [0, 1] or sequence of L
        Scale of the orthogonal (linear, residual) branch.
    beta : float in (0, 1] or sequence of L
        Scale of the nonlinear branch.
    spectral_radius : float or sequence of L
        rho(W_l), set by the circular law.
    orthogonal : {"random", "cycle", "identity"} or sequence of L
        O_l.
    input_scaling : float
        V_1 ~ U(-s, s) (the external input).
    inter_scaling : float or sequence of L - 1
        V_l ~ U(-s, s) for l >= 2 (the layer below).
    bias_scaling : float or sequence of L
        b_l ~ U(-s, s).
    readout_states : {"all", "last"}
        The readout sees all layers or the last one.
    ridge, warmup, solver, readout_input, squared_units, training_noise, scale
        As for :class:`~tsrnn.reservoir.ESN`.
    random_state, device, dtype, verbose
        Reproducibility (all weights derive from ``random_state``), where the reservoir
        runs, its precision (float64 by default), progress over trajectories.

    Attributes
    ----------
    reservoir_ : DeepResidualReservoir
    readout_weights_ : array (F, d)
    readout_intercept_ : array (d,)

    Notes
    -----
    One layer with ``alpha = 1 - b``, ``beta = b`` is reservoirpy's ``ES2N(proximity=b)``
    (Ceni & Gallicchio, "Edge of stability echo state network"); with ``alpha = 0``,
    ``beta = 1`` (any O) or ``alpha = 1 - a``, ``beta = a``, ``orthogonal="identity"`` it
    is the leaky ESN of leak rate a (states equal to round-off for equal weights; the
    weights are drawn differently: W dense U(-1, 1) by the circular law, V dense).
    """

    def __init__(self, *, n_layers: int = 4, units_per_layer: int = 250, alpha=0.3, beta=0.7,
                 spectral_radius=0.9, orthogonal="random", input_scaling: float = 0.1,
                 inter_scaling=1.0, bias_scaling=0.5, readout_states: str = "all",
                 ridge: float = 1e-6, warmup: int = 100, solver: str = "cholesky",
                 readout_input: bool = False, squared_units: bool = False,
                 training_noise: float = 0.0, scale: bool = True,
                 random_state: int | None = None, device: str | None = "cpu",
                 dtype: str = "float64", verbose: bool = False,
                 online_readout: str = "ridge", forgetting: float = 1.0,
                 online_learning_rate: float = 0.1):
        self.n_layers = n_layers
        self.units_per_layer = units_per_layer
        self.alpha = alpha
        self.beta = beta
        self.spectral_radius = spectral_radius
        self.orthogonal = orthogonal
        self.input_scaling = input_scaling
        self.inter_scaling = inter_scaling
        self.bias_scaling = bias_scaling
        self.readout_states = readout_states
        self.ridge = ridge
        self.warmup = warmup
        self.solver = solver
        self.readout_input = readout_input
        self.squared_units = squared_units
        self.training_noise = training_noise
        self.scale = scale
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose
        self.online_readout = online_readout
        self.forgetting = forgetting
        self.online_learning_rate = online_learning_rate

    def _check_hyperparameters(self) -> None:
        check_positive(self.n_layers, "n_layers", integer=True)
        check_positive(self.units_per_layer, "units_per_layer", integer=True)
        deep_layer_settings(int(self.n_layers), self.alpha, self.beta, self.spectral_radius,
                            self.orthogonal, self.input_scaling, self.inter_scaling,
                            self.bias_scaling)
        check_option(self.readout_states, "readout_states", ("all", "last"))
        self._check_common_hyperparameters()

    def _forgetting(self) -> tuple[float, int]:
        return float(self._effective_radii().max()), self.reservoir_.n_layers

    def _readout_units(self) -> slice:
        if self.readout_states == "last":
            return slice((int(self.n_layers) - 1) * int(self.units_per_layer), None)
        return slice(None)

    def _build_module(self) -> DeepResidualReservoir:
        return DeepResidualReservoir.random(
            self.n_features_in_ + self.n_exog_, int(self.n_layers), int(self.units_per_layer),
            rng=np.random.default_rng(_seed(self.random_state)), alpha=self.alpha,
            beta=self.beta, spectral_radius=self.spectral_radius, orthogonal=self.orthogonal,
            input_scaling=self.input_scaling, inter_scaling=self.inter_scaling,
            bias_scaling=self.bias_scaling, dtype=self.dtype_)


class ResRMN(_ResidualESN):
    """Residual reservoir memory network (Pinna, Ceni & Gallicchio 2025, arXiv:2508.09925).

    A linear cyclic memory reservoir m feeding a residual nonlinear reservoir h (see
    :mod:`tsrnn.reservoir.deep`), with a ridge readout and closed-loop forecasting like
    :class:`~tsrnn.reservoir.ESN`.

    Parameters
    ----------
    n_units : int
        M, units of the nonlinear reservoir.
    n_memory_units : int
        M_m, units of the memory reservoir (its delay line holds the last M_m inputs).
    alpha : float in [0, 1]; beta : float in (0, 1]
        Scales of the orthogonal and the nonlinear branch.
    spectral_radius : float
        rho(W), set by the circular law.
    orthogonal : {"random", "cycle", "identity"}
        O.
    input_scaling, memory_input_scaling, memory_scaling, bias_scaling : float
        W_x, V_m, W_m and b ~ U(-s, s) with these s.
    memory_radius : float in (0, 1]
        gamma in m_t = gamma C m_{t-1} + V_m u_t. 1 (the paper, made for sequences no
        longer than n_memory_units) never forgets: on a longer series the memory state
        grows like a random walk (warned at fit), and ``predict`` without a context reruns
        the whole last training series to rebuild it. Forecasting long series needs
        gamma < 1 (Lorenz-63, 150 + 150 units: gamma 0.9, memory_scaling 0.02, alpha 0.1,
        beta 0.9 reach 6.5 Lyapunov times; with gamma = 1, 0).
    readout_states : {"nonlinear", "all"}
        The readout sees h (the paper) or [m, h].
    ridge, warmup, solver, readout_input, squared_units, training_noise, scale
        As for :class:`~tsrnn.reservoir.ESN`.
    random_state, device, dtype, verbose
        Reproducibility (all weights derive from ``random_state``), where the reservoir
        runs, its precision (float64 by default), progress over trajectories.

    Attributes
    ----------
    reservoir_ : ResidualMemoryReservoir
    readout_weights_ : array (F, d)
    readout_intercept_ : array (d,)
    """

    def __init__(self, *, n_units: int = 500, n_memory_units: int = 500, alpha: float = 0.3,
                 beta: float = 0.7, spectral_radius: float = 0.9, orthogonal: str = "random",
                 input_scaling: float = 0.1, memory_input_scaling: float = 0.1,
                 memory_scaling: float = 0.05, bias_scaling: float = 0.5,
                 memory_radius: float = 1.0, readout_states: str = "nonlinear",
                 ridge: float = 1e-6, warmup: int = 100, solver: str = "cholesky",
                 readout_input: bool = False, squared_units: bool = False,
                 training_noise: float = 0.0, scale: bool = True,
                 random_state: int | None = None, device: str | None = "cpu",
                 dtype: str = "float64", verbose: bool = False,
                 online_readout: str = "ridge", forgetting: float = 1.0,
                 online_learning_rate: float = 0.1):
        self.n_units = n_units
        self.n_memory_units = n_memory_units
        self.alpha = alpha
        self.beta = beta
        self.spectral_radius = spectral_radius
        self.orthogonal = orthogonal
        self.input_scaling = input_scaling
        self.memory_input_scaling = memory_input_scaling
        self.memory_scaling = memory_scaling
        self.bias_scaling = bias_scaling
        self.memory_radius = memory_radius
        self.readout_states = readout_states
        self.ridge = ridge
        self.warmup = warmup
        self.solver = solver
        self.readout_input = readout_input
        self.squared_units = squared_units
        self.training_noise = training_noise
        self.scale = scale
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose
        self.online_readout = online_readout
        self.forgetting = forgetting
        self.online_learning_rate = online_learning_rate

    def _check_hyperparameters(self) -> None:
        check_positive(self.n_units, "n_units", integer=True)
        check_positive(self.n_memory_units, "n_memory_units", integer=True)
        for name in ("alpha", "beta", "spectral_radius", "input_scaling",
                     "memory_input_scaling", "memory_scaling", "bias_scaling",
                     "memory_radius"):
            if np.ndim(getattr(self, name)) != 0:
                raise ValueError(f"{name} must be one number (ResRMN has one residual layer)")
        _check_residual_rates([self.alpha], [self.beta])
        check_positive(self.spectral_radius, "spectral_radius")
        for name in ("input_scaling", "memory_input_scaling", "memory_scaling",
                     "bias_scaling"):
            check_positive(getattr(self, name), name, allow_zero=True)
        check_in_range(self.memory_radius, "memory_radius", 0.0, 1.0, closed="right")
        check_option(self.orthogonal, "orthogonal", tuple(ORTHOGONAL_KINDS))
        check_option(self.readout_states, "readout_states", ("nonlinear", "all"))
        self._check_common_hyperparameters()

    def _fit(self, y_list, x_list) -> None:
        self._check_hyperparameters()
        longest = max(y.shape[0] for y in y_list)
        if self.memory_radius >= 1.0 and longest > int(self.n_memory_units):
            self._warn_lossless_memory(f"the series has {longest}")
        super()._fit(y_list, x_list)

    def partial_fit(self, y, X=None):
        """Learn from the next chunk of one stream; see :meth:`tsrnn.reservoir.ESN.partial_fit`.

        With ``memory_radius=1`` a warning is given once, when the stream grows past
        ``n_memory_units`` steps (as ``fit`` warns for a series that long).
        """
        # stream_steps_ counts the transitions read, one less than the rows of the stream.
        before = self.stream_steps_ + 1 if hasattr(self, "stream_steps_") else 0
        super().partial_fit(y, X)
        rows = self.stream_steps_ + 1
        if self.memory_radius >= 1.0 and before <= int(self.n_memory_units) < rows:
            self._warn_lossless_memory(f"the stream has reached {rows}")
        return self

    def _warn_lossless_memory(self, length: str) -> None:
        warn(f"the memory reservoir (memory_radius=1) is a delay line of "
             f"{self.n_memory_units} steps and {length}: older inputs add "
             "onto newer ones (C^M = I), so the memory state grows like a random walk "
             "and saturates the nonlinear reservoir; set memory_radius < 1 (e.g. 0.9) "
             "for series longer than n_memory_units")

    def _memory_forgetting(self) -> int | None:
        """Steps after which the memory has forgotten its start to 1e-8: gamma^t <= 1e-8
        (None for gamma = 1, a memory that never forgets)."""
        if self.memory_radius >= 1.0:
            return None
        return math.ceil(math.log(1e-8) / math.log(self.memory_radius))

    def _shortest_context(self) -> int:
        # Where the measurement of forgetting starts: at gamma^n <= 1e-12, not 1e-8, since
        # it asks for runs agreeing to 1e-10 (from 1e-8 it had to double, a third more work).
        if self.memory_radius >= 1.0:
            return super()._shortest_context()
        memory = math.ceil(math.log(1e-12) / math.log(self.memory_radius))
        return max(super()._shortest_context(), memory)

    def _measure_forgetting(self, y: np.ndarray, x: np.ndarray | None
                            ) -> tuple[int | None, int | None]:
        # With gamma = 1 the runs from three starts never agree, nor come close (C^M = I
        # keeps their difference forever): measuring it over ever longer stretches only
        # confirms it, at the cost of six passes over the series (17 of the 22 s of a
        # default fit on 20,000 steps).
        if self.memory_radius >= 1.0:
            return None, None
        return super()._measure_forgetting(y, x)

    def _context_length(self) -> int | None:
        # The memory forgets its start only as gamma^t: keep enough of the training data
        # to rebuild the state to 1e-8 (all of it when gamma = 1).
        if self.memory_radius >= 1.0:
            return None
        measured = super()._context_length()
        return None if measured is None else max(measured, self._memory_forgetting())

    def _forgetting(self) -> tuple[float, int]:
        # The segments' memory states are exact (see ResidualMemoryReservoir.run_segmented):
        # only the nonlinear layer has to forget its start.
        return float(self._effective_radii().max()), 1

    def _readout_units(self) -> slice:
        if self.readout_states == "nonlinear":
            return slice(int(self.n_memory_units), None)
        return slice(None)

    def _build_module(self) -> ResidualMemoryReservoir:
        return ResidualMemoryReservoir.random(
            self.n_features_in_ + self.n_exog_, int(self.n_memory_units), int(self.n_units),
            rng=np.random.default_rng(_seed(self.random_state)), alpha=self.alpha,
            beta=self.beta, spectral_radius=self.spectral_radius, orthogonal=self.orthogonal,
            input_scaling=self.input_scaling,
            memory_input_scaling=self.memory_input_scaling,
            memory_scaling=self.memory_scaling, bias_scaling=self.bias_scaling,
            memory_radius=self.memory_radius, dtype=self.dtype_)
