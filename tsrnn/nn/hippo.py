"""HiPPO transition matrices, their discretisations, and the HiPPO-RNN.

Gu, Dao, Ermon, Rudra, Ré, "HiPPO: Recurrent memory with optimal polynomial projections",
NeurIPS 2020. A memory state c(t) ∈ R^N holds the coefficients of the projection of the
history of a signal f onto N orthogonal polynomials under a measure; it follows

    c'(t) = A c(t) + B f(t)                 (LegT, LagT: time-invariant measures)
    c'(t) = (1/t) (A c(t) + B f(t))         (LegS: the uniform measure on [0, t])

Closed forms (row n, column k, 0-based; R_n = √(2n+1)):

    LegS  A_nk = -R_n R_k if n > k,  -(n+1) if n = k,  0 if n < k;       B_n = R_n
    LegT  A_nk = -(1/θ) R_n R_k · (1 if n >= k else (-1)^(n-k));          B_n = R_n / θ
          (the window [t - θ, t]: c_n(t) = (1/θ) ∫ f(s) R_n P_n(2(s - t)/θ + 1) ds)
    LagT  A_nk = -1 if n > k,  -1/2 if n = k,  0 if n < k;                B_n = 1
    S4D-Real  A = -diag(1, ..., N) (the diagonal of LegS);                 B_n = 1

Discretisations of c' = A c + B f with step Δ (``discretise``):

    GBT(α)   Ā = (I - αΔA)⁻¹ (I + (1-α)ΔA),   B̄ = Δ (I - αΔA)⁻¹ B
             (α = 0 forward Euler, 1/2 bilinear, 1 backward Euler)
    ZOH      Ā = e^{ΔA},  B̄ = A⁻¹(e^{ΔA} - I) B   (computed as one exponential of the
             block matrix [[A, B], [0, 0]] Δ, which needs no inverse of A)

LegS is discretised step by step (``legs_discretise``). For the step from elapsed time t to
t + dt: GBT(α) of A with Δ = dt / t, the form of the HiPPO paper; ZOH with Δ = log((t + dt)
/ t), which is exact for c' = (1/t) A c (substitute s = log t). The first sample (t = 0)
sets c = -A⁻¹B f = f e_0, the exact coefficients of a constant. (The reference code,
state-spaces/s4's HiPPOScale, starts from c = 0 and steps sample k = 1, 2, ... with Δ = 1/k,
one step later than here: on a smooth signal over 200 samples its coefficients were 1.8x
further from the exact projection than these.)

HiPPO-RNN cell (the paper's gated architecture, one memory per ``memory_size`` channel):

    f_t = W_f [x_t, h_{t-1}] + b_f                 (scalar per memory channel)
    c_t = Ā_t c_{t-1} + B̄_t f_t
    g_t = σ(W_g [x_t, c_t] + b_g)
    h_t = (1 - g_t) ⊙ h_{t-1} + g_t ⊙ tanh(W_h [x_t, c_t] + b_h)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .._validation import check_option, check_positive
from ._sampling import check_sequence, check_state, check_time_steps


# ====================================================================== transition matrices
def hippo_legs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """HiPPO-LegS (scaled Legendre): A (N, N), B (N,) of c' = (1/t)(A c + B f), float64."""
    n = check_positive(n, "state_size", integer=True)
    r = np.sqrt(2.0 * np.arange(n) + 1.0)
    a = -np.tril(np.outer(r, r), -1) - np.diag(np.arange(n) + 1.0)
    return a, r.copy()


def hippo_legt(n: int, theta: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """HiPPO-LegT (translated Legendre, window of length ``theta``): A (N, N), B (N,)."""
    n = check_positive(n, "state_size", integer=True)
    theta = check_positive(theta, "theta")
    r = np.sqrt(2.0 * np.arange(n) + 1.0)
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    sign = np.where(rows >= cols, 1.0, (-1.0) ** ((rows - cols) % 2))
    return -np.outer(r, r) * sign / theta, r / theta


def hippo_lagt(n: int) -> tuple[np.ndarray, np.ndarray]:
    """HiPPO-LagT (translated Laguerre): A (N, N), B (N,)."""
    n = check_positive(n, "state_size", integer=True)
    return -np.tril(np.ones((n, n)), -1) - 0.5 * np.eye(n), np.ones(n)


def s4d_real(n: int) -> tuple[np.ndarray, np.ndarray]:
    """S4D-Real (Gu, Gupta, Goel, Ré, "On the parameterization and initialization of diagonal
    state space models", NeurIPS 2022): A = -diag(1, 2, ..., N), the diagonal of LegS;
    B_n = 1. Returned as the dense (N, N) matrix like the others."""
    n = check_positive(n, "state_size", integer=True)
    return -np.diag(np.arange(n) + 1.0), np.ones(n)


MEASURES: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "legs": hippo_legs,
    "legt": hippo_legt,
    "lagt": hippo_lagt,
    "s4d_real": s4d_real,
}
# Measures with a diagonal A (the LSSL then uses the Vandermonde form of its kernel).
DIAGONAL = ("s4d_real",)
# Measures whose ODE carries the factor 1/t (discretised step by step in elapsed time).
TIME_VARYING = ("legs",)


def transition(measure: str, n: int, **options) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of the HiPPO ``measure`` with ``n`` coefficients, as float64 numpy arrays.

    ``options`` go to the measure's function (``theta`` for LegT).
    """
    check_option(measure, "measure", tuple(MEASURES))
    return MEASURES[measure](n, **options)


# ====================================================================== discretisation
METHODS = {"forward_euler": 0.0, "bilinear": 0.5, "backward_euler": 1.0, "gbt": None,
           "zoh": None}


def _gbt_alpha(method: str, alpha: float | None) -> float | None:
    """α of a GBT method (None for ZOH); checks the method name and α."""
    check_option(method, "method", tuple(METHODS))
    if method == "gbt":
        if alpha is None:
            raise ValueError("method='gbt' needs alpha (0 forward Euler, 0.5 bilinear, "
                             "1 backward Euler)")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
        return float(alpha)
    if alpha is not None:
        raise ValueError(f"alpha is only used with method='gbt', not {method!r}")
    return METHODS[method]


def discretise(A, B, dt, method: str = "bilinear", alpha: float | None = None):
    """Discretise c' = A c + B f with step ``dt`` (see the module docstring).

    Parameters
    ----------
    A : (..., N, N) array or tensor
    B : (..., N), the input vector of a single-input system
    dt : float, or array/tensor of batch shape S (broadcast with A's leading dimensions)
    method : {"forward_euler", "bilinear", "backward_euler", "gbt", "zoh"}
    alpha : float in [0, 1], for ``method="gbt"`` only.

    Returns
    -------
    (Ā, B̄) of shapes (S..., N, N) and (S..., N), S the broadcast batch shape; numpy arrays
    when A was one, tensors otherwise.
    """
    alpha = _gbt_alpha(method, alpha)
    as_numpy = not isinstance(A, torch.Tensor)
    a = torch.as_tensor(np.asarray(A, dtype=np.float64)) if as_numpy else A
    b = torch.as_tensor(B, dtype=a.dtype, device=a.device)
    step = torch.as_tensor(dt, dtype=a.dtype, device=a.device)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"A must be square (..., N, N), got shape {tuple(a.shape)}")
    n = a.shape[-1]
    if b.ndim < 1 or b.shape[-1] != n:
        raise ValueError(f"B must have shape (..., {n}), got {tuple(b.shape)}")
    b_mat = b.unsqueeze(-1)
    if not bool(torch.isfinite(step).all()):
        raise ValueError("dt contains NaN or inf")
    if bool((step < 0).any()):
        raise ValueError("dt must be >= 0")
    scaled = step[..., None, None]
    if method == "zoh":
        batch = torch.broadcast_shapes(a.shape[:-2], b_mat.shape[:-2], step.shape)
        block = a.new_zeros(*batch, n + 1, n + 1)
        block[..., :n, :n] = a
        block[..., :n, n:] = b_mat
        exponential = torch.linalg.matrix_exp(block * scaled)
        a_bar, b_bar = exponential[..., :n, :n], exponential[..., :n, n:]
    else:
        eye = torch.eye(n, dtype=a.dtype, device=a.device)
        left = eye - alpha * scaled * a
        right = eye + (1.0 - alpha) * scaled * a
        batch = torch.broadcast_shapes(left.shape[:-2], b_mat.shape[:-2])
        solved = torch.linalg.solve(left.expand(*batch, n, n), torch.cat(
            [right.expand(*batch, n, n), (scaled * b_mat).expand(*batch, n, 1)],
            dim=-1))
        a_bar, b_bar = solved[..., :n], solved[..., n:]
    b_bar = b_bar[..., 0]
    if as_numpy:
        return a_bar.numpy(), b_bar.numpy()
    return a_bar, b_bar


def legs_discretise(A, B, t_prev, dt, method: str = "bilinear", alpha: float | None = None):
    """One step of LegS's c' = (1/t)(A c + B f) from elapsed time ``t_prev`` to t_prev + dt.

    GBT(α) with Δ = dt / t_prev; ZOH with Δ = log1p(dt / t_prev) (exact for the 1/t
    factor); at t_prev = 0, Ā = 0 and B̄ = -A⁻¹B (the coefficients of a constant). ``t_prev``
    and ``dt`` are tensors of one batch shape S; returns (S..., N, N) and (S..., N).
    """
    _gbt_alpha(method, alpha)
    t_prev = torch.as_tensor(t_prev, dtype=A.dtype, device=A.device)
    dt = torch.as_tensor(dt, dtype=A.dtype, device=A.device)
    start = t_prev <= 0
    safe = torch.where(start, torch.ones_like(t_prev), t_prev)
    ratio = dt / safe
    delta = torch.log1p(ratio) if method == "zoh" else ratio
    a_bar, b_bar = discretise(A, B, delta, method, alpha)
    first = -torch.linalg.solve(A, B.unsqueeze(-1))[..., 0]
    a_bar = torch.where(start[..., None, None], torch.zeros_like(a_bar), a_bar)
    b_bar = torch.where(start[..., None], first.expand_as(b_bar), b_bar)
    return a_bar, b_bar


# ====================================================================== HiPPO-RNN
def _uniform(shape, fan_in: int, generator: torch.Generator | None) -> nn.Parameter:
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound, generator=generator))


class HiPPORNN(nn.Module):
    """Gated RNN with a HiPPO memory (equations in the module docstring).

    Parameters
    ----------
    input_size, hidden_size : int
        C (channels of x_t) and H (size of h_t).
    state_size : int
        N, the number of HiPPO coefficients per memory channel.
    measure : {"legs", "legt", "lagt", "s4d_real"}
        The HiPPO measure. LegS is scale invariant (it remembers the whole history since
        the start of the sequence, step by step in elapsed time); LegT and LagT forget on
        the time scale 1 (LegT: ``theta``) in units of ``timescale``.
    method : {"forward_euler", "bilinear", "backward_euler", "gbt", "zoh"}
        Discretisation (``alpha`` for "gbt").
    timescale : float
        Elapsed time of one step of a regularly sampled sequence (LegT/LagT: Δ of each
        step; LegS is invariant to it).
    memory_size : int
        M, the number of scalar memory inputs f_t, each with its own N coefficients.
    theta : float
        LegT's window length; not read by the other measures (so that a search over
        ``measure`` can keep one theta).
    generator : torch.Generator, optional
        For a reproducible initialisation (U(-1/√fan_in, 1/√fan_in), as torch's Linear).

    Shapes
    ------
    x : (B, L, C); dt : (B, L) or (B, L, 1), elapsed time before each step in units of
    ``timescale`` (None: 1 per step); h0 : tuple (h (B, H), c (B, M, N), t (B,)) with t
    the elapsed time so far, or (h, c) (t = 0: LegS then starts afresh).
    Returns the outputs h_1..h_L (B, L, H) and the final state (h_L, c_L, t_L).
    """

    def __init__(self, input_size: int, hidden_size: int, state_size: int = 32,
                 measure: str = "legs", method: str = "bilinear", alpha: float | None = None,
                 timescale: float = 1.0, memory_size: int = 1, theta: float = 1.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.input_size = check_positive(input_size, "input_size", integer=True)
        self.hidden_size = check_positive(hidden_size, "hidden_size", integer=True)
        self.state_size = check_positive(state_size, "state_size", integer=True)
        self.memory_size = check_positive(memory_size, "memory_size", integer=True)
        self.measure = check_option(measure, "measure", tuple(MEASURES))
        _gbt_alpha(method, alpha)
        self.method, self.alpha = method, alpha
        self.timescale = float(check_positive(timescale, "timescale"))
        options = {"theta": theta} if measure == "legt" else {}
        # Kept in float64 and cast on use: a float32 buffer would lose digits of the closed
        # forms when the module is later converted to float64.
        self._transition = transition(measure, self.state_size, **options)
        c, h, m, n = self.input_size, self.hidden_size, self.memory_size, self.state_size
        self.memory_weight = _uniform((m, c + h), c + h, generator)
        self.memory_bias = _uniform((m,), c + h, generator)
        self.hidden_weight = _uniform((2 * h, c + m * n), c + m * n, generator)  # [W_h; W_g]
        self.hidden_bias = _uniform((2 * h,), c + m * n, generator)

    def _initial_state(self, h0, batch: int, like: torch.Tensor):
        shapes = ((batch, self.hidden_size), (batch, self.memory_size, self.state_size),
                  (batch,))
        if h0 is None:
            return tuple(like.new_zeros(s) for s in shapes)
        if not isinstance(h0, tuple | list) or len(h0) not in (2, 3):
            raise ValueError("h0 must be a tuple (h, c) or (h, c, t)")
        parts = list(h0) if len(h0) == 3 else [*h0, like.new_zeros(batch)]
        for name, value, shape in zip(("h", "c", "t"), parts, shapes):
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
                given = (tuple(value.shape) if isinstance(value, torch.Tensor)
                         else type(value).__name__)
                raise ValueError(f"h0's {name} must have shape {shape}, got {given}")
            check_state(value, like, f"h0's {name}")
        if bool((parts[2] < 0).any()):
            raise ValueError("h0's t (the elapsed time so far) must be >= 0")
        return tuple(parts)

    def _step_matrices(self, t_prev: torch.Tensor, step: torch.Tensor):
        """(Ā, B̄) for a batch of steps: shapes S + (N, N) and S + (N,)."""
        a, b = (torch.as_tensor(m, dtype=step.dtype, device=step.device)
                for m in self._transition)
        if self.measure in TIME_VARYING:
            return legs_discretise(a, b, t_prev, step, self.method, self.alpha)
        return discretise(a, b, step, self.method, self.alpha)

    def forward(self, x: torch.Tensor, h0=None, dt: torch.Tensor | None = None):
        check_sequence(x, self.input_size, module=self)
        batch, length, c = x.shape
        if batch == 0:  # torch's own error was an IndexError in the shared-times test
            raise ValueError("x is empty along the batch (B = 0)")
        h, state, elapsed = self._initial_state(h0, batch, x)
        dt = check_time_steps(dt, batch, length, x)
        steps = (x.new_full((batch, length), self.timescale) if dt is None
                 else self.timescale * dt)
        times = elapsed[:, None] + torch.cat([steps.new_zeros(batch, 1), steps.cumsum(1)], 1)
        # One set of matrices per step when every sample shares its times (regular sampling),
        # else one per sample and step, computed inside the loop.
        shared = bool((times == times[:1]).all())
        w_mem_x, w_mem_h = self.memory_weight[:, :c], self.memory_weight[:, c:]
        w_hid_x, w_hid_c = self.hidden_weight[:, :c], self.hidden_weight[:, c:]
        mem_x = nn.functional.linear(x, w_mem_x, self.memory_bias).unbind(1)
        hid_x = nn.functional.linear(x, w_hid_x, self.hidden_bias).unbind(1)
        hs = self.hidden_size
        chunk, table = 256, None
        outputs = []
        for t in range(length):
            if shared:
                if t % chunk == 0:
                    end = min(t + chunk, length)
                    table = self._step_matrices(times[0, t:end], steps[0, t:end])
                a_bar, b_bar = table[0][t % chunk], table[1][t % chunk]
            else:
                a_bar, b_bar = self._step_matrices(times[:, t], steps[:, t])
                a_bar, b_bar = a_bar[:, None], b_bar[:, None]  # over the memory channels
            f = mem_x[t] + h @ w_mem_h.T  # (B, M)
            state = (a_bar @ state.unsqueeze(-1))[..., 0] + f.unsqueeze(-1) * b_bar
            pre = hid_x[t] + state.reshape(batch, -1) @ w_hid_c.T
            gate = torch.sigmoid(pre[:, hs:])
            h = torch.lerp(h, torch.tanh(pre[:, :hs]), gate)
            outputs.append(h)
        return torch.stack(outputs, 1), (h, state, times[:, -1])
