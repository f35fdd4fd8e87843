"""Linear State-Space Layer (LSSL).

Gu, Johnson, Goel, Saab, Dao, Rudra, Ré, "Combining recurrent, convolutional, and
continuous-time models with linear state-space layers", NeurIPS 2021.
Each of H features u^(h) drives its own state-space model with N states and M output
channels:

    x'(t) = A x(t) + B u(t),    y(t) = C x(t) + D u(t)

discretised with a learned step Δ_h (GBT or ZOH, :func:`tsrnn.nn.hippo.discretise`):

    x_t = Ā x_{t-1} + B̄ u_t,    y_t = C x_t + D u_t                       (recurrent mode)
    y = K * u + D u,   K = (CB̄, CĀB̄, ..., CĀ^{L-1}B̄)                     (convolutional mode)

The kernel comes from the Krylov sequence B̄, ĀB̄, ..., Ā^{L-1}B̄, built in log2(L) rounds
by repeated squaring of Ā, or, for a diagonal A (measure "s4d_real", S4D), from the
Vandermonde matrix of the diagonal ā: K_l = Σ_n C_n B̄_n ā_n^l. The causal convolution runs
as an FFT of length ≥ 2L. The
layer's output is Linear(GELU(y)) from H·M channels back to H. A starts as a HiPPO matrix
(LegS by default) and is fixed, shared by all features and trained, or trained per feature;
log Δ_h starts uniform in [log Δ_min, log Δ_max] = [log 1e-3, log 1e-1].

Both modes compute the same map (tests/nn/test_lssl.py: 1e-5 in float32, 1e-12 in float64).
The recurrent mode also takes irregular sampling: a per-sample, per-step ``dt`` multiplies
Δ_h and the system is discretised anew at each step.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from .._validation import check_bool, check_in_range, check_option, check_positive
from ..exceptions import DivergenceError
from ..ops import linear_scan
from ._sampling import check_sequence, check_state, check_time_steps
from .hippo import DIAGONAL, MEASURES, _gbt_alpha, discretise, transition

TRAINABLE_A = ("fixed", "shared", "per_feature")
MODES = ("auto", "convolution", "recurrence")


def krylov(length: int, A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The Krylov sequence (b, A b, A² b, ..., A^{L-1} b) stacked on a last axis.

    A : (..., N, N); b : (..., N) (batch shapes broadcast). Returns (..., N, L). Built by
    repeated squaring: each round doubles the columns with one product by A^(2^k), so
    ⌈log2 L⌉ matrix products instead of L matrix-vector products.
    """
    columns = b.unsqueeze(-1)
    power = A
    while columns.shape[-1] < length:
        missing = length - columns.shape[-1]
        new = power @ columns[..., :missing]
        columns = torch.cat([columns, new], dim=-1)
        if columns.shape[-1] < length:
            power = power @ power
    return columns


def vandermonde(length: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The Krylov sequence of a diagonal matrix diag(a): b ⊙ a^l, l < L, as (..., N, L)."""
    exponents = torch.arange(length, dtype=a.dtype, device=a.device)
    return b.unsqueeze(-1) * a.unsqueeze(-1) ** exponents


def causal_convolution(u: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """y_t = Σ_{l<=t} K_l u_{t-l} by FFT. u (B, H, L), kernel (H, M, L) -> (B, H, M, L)."""
    length = u.shape[-1]
    n = 1 << (2 * length - 1).bit_length()  # a power of two >= 2L - 1: no wrap-around
    spectrum = torch.fft.rfft(u, n=n).unsqueeze(2) * torch.fft.rfft(kernel, n=n)
    return torch.fft.irfft(spectrum, n=n)[..., :length]


class LSSL(nn.Module):
    """LSSL layer (equations in the module docstring).

    Parameters
    ----------
    input_size : int
        Channels of x; a linear encoder maps them to the H features.
    hidden_size : int
        H, the number of features (one state-space model each).
    state_size : int
        N, states per feature.
    channels : int
        M, output channels per feature.
    measure : {"legs", "legt", "lagt", "s4d_real"}
        HiPPO matrix that initialises A (used as a time-invariant system); "s4d_real" is
        diagonal, kept diagonal in training (A = -exp(A_log), stable by construction) and
        gives the Vandermonde kernel.
    trainable_A : {"fixed", "shared", "per_feature"}
        A (and B) fixed, one trained A shared by all features, or one per feature.
    method : {"forward_euler", "bilinear", "backward_euler", "gbt", "zoh"}
        Discretisation (``alpha`` for "gbt").
    dt_min, dt_max : float
        Range of the initial steps Δ_h (log-uniform).
    learn_dt : bool
        Train log Δ_h.
    mode : {"auto", "convolution", "recurrence"}
        "auto": convolution, except with ``dt`` (irregular sampling) or sequences of at
        most 8 steps (as in a closed-loop forecast), where the recurrence is cheaper.
    generator : torch.Generator, optional

    Shapes
    ------
    x : (B, L, input_size); dt : (B, L) or (B, L, 1), elapsed time before each step in units
    of Δ_h (None: 1); h0 : (B, H, N), the state-space states x_0 (zeros when None).
    Returns outputs (B, L, H) and the final states x_L (B, H, N).
    """

    def __init__(self, input_size: int, hidden_size: int, state_size: int = 64,
                 channels: int = 1, measure: str = "legs", trainable_A: str = "fixed",
                 method: str = "bilinear", alpha: float | None = None, dt_min: float = 1e-3,
                 dt_max: float = 1e-1, learn_dt: bool = True, mode: str = "auto",
                 generator: torch.Generator | None = None):
        super().__init__()
        self.input_size = check_positive(input_size, "input_size", integer=True)
        self.hidden_size = check_positive(hidden_size, "hidden_size", integer=True)
        self.state_size = check_positive(state_size, "state_size", integer=True)
        self.channels = check_positive(channels, "channels", integer=True)
        self.measure = check_option(measure, "measure", tuple(MEASURES))
        self.trainable_A = check_option(trainable_A, "trainable_A", TRAINABLE_A)
        _gbt_alpha(method, alpha)
        self.method, self.alpha = method, alpha
        self.mode = check_option(mode, "mode", MODES)
        check_positive(dt_min, "dt_min")
        check_in_range(dt_max, "dt_max", dt_min, math.inf)
        h, n, m = self.hidden_size, self.state_size, self.channels
        a, b = transition(measure, n)
        self.diagonal = measure in DIAGONAL
        # torch's default dtype, like the other parameters: under
        # torch.set_default_dtype(torch.float64) A keeps every digit of the closed form (a module
        # built in float32 and converted by .double() has A rounded to float32, ~5e-8).
        a = torch.as_tensor(a, dtype=torch.get_default_dtype())
        b = torch.as_tensor(b, dtype=torch.get_default_dtype())
        if self.diagonal:  # A = -exp(A_log): the diagonal stays negative while trained
            a = torch.log(-torch.diagonal(a))
        name = "A_log" if self.diagonal else "A"
        if trainable_A == "fixed":
            self.register_buffer(name, a)
            self.register_buffer("B", b)
        elif trainable_A == "shared":
            setattr(self, name, nn.Parameter(a))
            self.B = nn.Parameter(b)
        else:
            setattr(self, name, nn.Parameter(a.expand(h, *a.shape).clone()))
            self.B = nn.Parameter(b.expand(h, n).clone())
        self.C = nn.Parameter(torch.randn(h, m, n, generator=generator) / math.sqrt(n))
        self.D = nn.Parameter(torch.randn(h, m, generator=generator))
        log_dt = torch.rand(h, generator=generator) * (math.log(dt_max) - math.log(dt_min)) \
            + math.log(dt_min)
        if check_bool(learn_dt, "learn_dt"):
            self.log_dt = nn.Parameter(log_dt)
        else:
            self.register_buffer("log_dt", log_dt)
        self.encoder = nn.Linear(self.input_size, h)
        self.decoder = nn.Linear(h * m, h)
        for layer in (self.encoder, self.decoder):
            bound = 1.0 / math.sqrt(layer.in_features)
            with torch.no_grad():
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)

    def discretised(self, dt: torch.Tensor | None = None):
        """(Ā, B̄) per feature, (H, N, N) and (H, N); with ``dt`` of batch shape S, the steps
        Δ_h·dt: (S..., H, N, N) and (S..., H, N). For a diagonal A, Ā is its diagonal ā
        (..., H, N)."""
        held = getattr(self, "_held_discretisation", None)
        if dt is None and held is not None:
            return held
        step = torch.exp(self.log_dt)
        if not self.diagonal and not bool(torch.isfinite(step).all()):
            # Only training moves log_dt this far; discretise would blame a user's dt.
            raise DivergenceError("the learned step size exp(log_dt) of LSSL is no longer "
                                  "finite: training diverged; lower the learning rate")
        if dt is not None:
            step = dt.unsqueeze(-1) * step
        if not self.diagonal:
            return discretise(self.A, self.B, step, self.method, self.alpha)
        a = -torch.exp(self.A_log)
        scaled = step.unsqueeze(-1) * a
        if self.method == "zoh":
            return torch.exp(scaled), torch.expm1(scaled) / a * self.B
        alpha = _gbt_alpha(self.method, self.alpha)
        return (1 + (1 - alpha) * scaled) / (1 - alpha * scaled), \
            step.unsqueeze(-1) * self.B / (1 - alpha * scaled)

    @contextlib.contextmanager
    def held_discretisation(self):
        """Within the block, (Ā, B̄) of regular steps are computed once, without autograd.

        A closed-loop forecast calls the layer one step at a time with unchanged parameters;
        forming Ā anew at every step (H solves of N × N systems) would cost most of its time.
        """
        with torch.no_grad():
            held = self.discretised()
        self._held_discretisation = held
        try:
            yield
        finally:
            self._held_discretisation = None

    def _powers(self, length: int, a_bar: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        """Ā^l v for l < L, (..., N, L): Vandermonde for a diagonal A, else Krylov."""
        if self.diagonal:
            return vandermonde(length, a_bar, vector)
        return krylov(length, a_bar, vector)

    def _advance(self, a_bar: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Ā x for a batch of states (..., N)."""
        if self.diagonal:
            return a_bar * state
        # As one product per feature h over all batch rows, not B·H matrix-vector products
        # of Ā broadcast to the batch: 0.8 instead of 46 ms for B = 32, H = N = 64 (and 6.5
        # instead of 211 ms under vmap, as the Lyapunov tangents run it).
        return torch.einsum("...hnm,...hm->...hn", a_bar, state)

    def _readout(self, state: torch.Tensor) -> torch.Tensor:
        """C x for a batch of states (..., H, N) -> (..., H, M), as :meth:`_advance`."""
        return torch.einsum("hmn,...hn->...hm", self.C, state)

    def kernel(self, length: int) -> torch.Tensor:
        """The convolution kernel K (H, M, L)."""
        a_bar, b_bar = self.discretised()
        return self.C @ self._powers(length, a_bar, b_bar)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None,
                dt: torch.Tensor | None = None):
        check_sequence(x, self.input_size, module=self)
        batch, length, _ = x.shape
        h, n = self.hidden_size, self.state_size
        if h0 is not None:
            if not isinstance(h0, torch.Tensor) or tuple(h0.shape) != (batch, h, n):
                shape = tuple(h0.shape) if isinstance(h0, torch.Tensor) else type(h0).__name__
                raise ValueError(f"h0 must have shape ({batch}, {h}, {n}), got {shape}")
            check_state(h0, x)
        dt = check_time_steps(dt, batch, length, x)
        mode = self.mode
        if mode == "auto":
            mode = "recurrence" if dt is not None or length <= 8 else "convolution"
        if mode == "convolution" and dt is not None:
            raise ValueError("irregular sampling (dt) needs mode='recurrence' or 'auto': the "
                             "convolution kernel assumes one step Δ for all samples")
        u = self.encoder(x)  # (B, L, H)
        if mode == "convolution":
            y, final = self._convolution(u, h0)
        else:
            y, final = self._recurrence(u, h0, dt)
        y = nn.functional.gelu(y).reshape(batch, length, h * self.channels)
        return self.decoder(y), final

    def _convolution(self, u: torch.Tensor, h0: torch.Tensor | None):
        length = u.shape[1]
        a_bar, b_bar = self.discretised()
        columns = self._powers(length, a_bar, b_bar)  # (H, N, L): Ā^l B̄
        signal = u.transpose(1, 2)  # (B, H, L)
        y = causal_convolution(signal, self.C @ columns)  # (B, H, M, L)
        y = y + self.D[..., None] * signal.unsqueeze(2)
        # x_L = Σ_l Ā^{L-1-l} B̄ u_l
        final = torch.einsum("hnl,bhl->bhn", columns, signal.flip(-1))
        if h0 is not None:
            # The initial state adds C Ā^{t+1} x_0 to y_t and Ā^L x_0 to x_L.
            powers = self._powers(length + 1, a_bar, h0)  # (B, H, N, L + 1): Ā^l x_0
            y = y + self.C @ powers[..., 1:]
            final = final + powers[..., -1]
        return y.permute(0, 3, 1, 2), final  # (B, L, H, M)

    def _recurrence(self, u: torch.Tensor, h0: torch.Tensor | None, dt: torch.Tensor | None):
        if self.diagonal:
            return self._diagonal_recurrence(u, h0, dt)
        batch, _, h = u.shape
        state = u.new_zeros(batch, h, self.state_size) if h0 is None else h0.to(u)
        if dt is None:
            a_bar, b_bar = self.discretised()
        elif self.method != "zoh":
            return self._irregular_gbt_recurrence(u, state, dt)
        outputs = []
        for t, u_t in enumerate(u.unbind(1)):
            if dt is not None:
                a_bar, b_bar = self.discretised(dt[:, t])  # (B, H, N, N), (B, H, N)
            state = self._advance(a_bar, state) + b_bar * u_t.unsqueeze(-1)
            outputs.append(self._readout(state) + self.D * u_t.unsqueeze(-1))
        return torch.stack(outputs, 1), state

    def _irregular_gbt_recurrence(self, u: torch.Tensor, state: torch.Tensor,
                                  dt: torch.Tensor):
        """The GBT recurrence of a dense A with a per-sample step Δ = Δ_h·dt, without forming
        Ā: each step solves (I − αΔA) x_t = x_{t−1} + (1 − α)Δ A x_{t−1} + Δ B u_t for one
        right-hand side. Forming Ā = (I − αΔA)⁻¹(I + (1 − α)ΔA) per sample and step costs N
        solves; for a lower-triangular A (LegS, LagT, as long as training keeps the upper
        triangle zero) the one solve is a triangular one, O(N²)."""
        alpha = _gbt_alpha(self.method, self.alpha)
        n = self.state_size
        A, B = self.A, self.B  # (H, N, N), (H, N)
        lower = bool((A.detach().triu(1) == 0).all())
        eye = torch.eye(n, dtype=A.dtype, device=A.device)
        steps = dt.unsqueeze(-1) * torch.exp(self.log_dt)  # (B, L, H)
        outputs = []
        for t, u_t in enumerate(u.unbind(1)):
            step = steps[:, t, :, None]  # (B, H, 1)
            drift = (A @ state.unsqueeze(-1))[..., 0]
            rhs = state + (1 - alpha) * step * drift + step * B * u_t.unsqueeze(-1)
            if alpha == 0:
                state = rhs
            else:
                system = eye - alpha * step.unsqueeze(-1) * A  # (B, H, N, N)
                if lower:
                    state = torch.linalg.solve_triangular(
                        system, rhs.unsqueeze(-1), upper=False)[..., 0]
                else:
                    state = torch.linalg.solve(system, rhs)
            outputs.append(self._readout(state) + self.D * u_t.unsqueeze(-1))
        return torch.stack(outputs, 1), state

    def _diagonal_recurrence(self, u: torch.Tensor, h0: torch.Tensor | None,
                             dt: torch.Tensor | None):
        """x_t = ā_t ⊙ x_{t-1} + b̄_t u_t for a diagonal A: one linear scan over all H·N
        state entries (:func:`tsrnn.ops.linear_scan`) instead of a Python loop."""
        batch, length, h = u.shape
        n = self.state_size
        # Regular sampling: ā, b̄ (H, N) shared by every step; irregular: (B, L, H, N).
        a_bar, b_bar = self.discretised(dt)
        a = a_bar.expand(batch, length, h, n) if dt is None else a_bar
        drive = b_bar * u.unsqueeze(-1)  # (B, L, H, N)
        initial = None if h0 is None else h0.to(u).reshape(batch, h * n)
        states = linear_scan(a.reshape(batch, length, h * n), drive.reshape(batch, length, h * n),
                             initial).reshape(batch, length, h, n)
        y = torch.einsum("hmn,blhn->blhm", self.C, states) + self.D * u.unsqueeze(-1)
        return y, states[:, -1]
