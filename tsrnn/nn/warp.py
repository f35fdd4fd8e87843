"""WARP: weight-space linear recurrent networks.

Nzoyem et al. 2025, "Weight-space linear recurrent neural networks" (arXiv 2506.01153;
reference code ddrous/warp, JAX). The hidden state is the flattened weight vector θ of a small
*root* network, driven linearly by the input differences and decoded nonlinearly:

    θ_0 = θ_base + H(x_0, ..., x_{K-1})                 (hypernetwork; or θ_0 = θ_base)
    θ_t = A θ_{t-1} + B (u_t - u_{t-1}),    u_t = [x_t, τ_t],    A ← I, B ← 0 at init
    ŷ_t = root(τ_t + Δτ_t ; θ_t)                         (the prediction of x_{t+1})

with the time coordinate τ_t = t / time_scale (the paper's τ = t/(T-1) when time_scale = T-1)
or, for irregular sampling, τ_t = Σ_{0<s<=t} dt_s / time_scale. Δτ_t is the step to the next
sample, so that the root is evaluated at τ_{t+1}, the time of the x_{t+1} it predicts: 1 /
time_scale for regular sampling, as in the reference code (``root_in = t_curr + delta_t``),
and dt_{t+1} / time_scale for irregular sampling (at the last step, whose next gap is not
given, the last gap again).

Choices made here (the paper and the reference code leave room):

- Root: an MLP τ -> output evaluated with the weights θ_t (a hand-written batched MLP, so that
  all B·L weight vectors decode in one pass), or any parametric model ``root(τ, θ)`` declaring
  ``n_params`` and ``output_size``, e.g. :class:`MassSpringDamperRoot` (physics-informed WARP).
- θ_0: a learned base vector plus a hypernetwork on the window w = (x_0, ..., x_{K-1}) of the
  first K = ``init_window`` inputs (K = 1 reads x_0 alone, as in the paper):
  H(w) = W w + MLP(w), or with ``init_normalize`` H(w) = W w + MLP(w / rms(w)), which makes
  the nonlinear part blind to the amplitude (useful when it must read frequencies or damping
  rates, as for the mass–spring–damper, while W w carries the amplitude). W and the MLP's last
  layer start at zero, so training starts from the root's own initialisation (torch's
  default for the MLP, the root's ``initial_parameters`` for a physical model).
  ``init="learned"`` keeps θ_0 = θ_base.
- Time as a channel: u_t includes τ_t (the reference code's default), so B also sees the
  step τ_t − τ_{t−1}.
- Transition A: ``"dense"`` (D_θ² parameters, the paper's), ``"diagonal"`` (a ⊙ θ, D_θ
  parameters) or ``"lowrank"`` (diag(a) + U V^T with rank r: D_θ (2r + 1) parameters).
- Two equivalent evaluations: ``mode="sequential"`` steps through time (the autoregressive
  form, needed when predictions are fed back) and ``mode="scan"`` solves the linear
  recurrence for all t at once, then decodes every θ_t in parallel. The scan is a doubling
  (Hillis–Steele) scan for a constant transition: after level k, each θ_t holds the sum over
  the last 2^(k+1) inputs, using the powers A^(2^k) (log2 L matrix products; the low-rank A
  is formed densely for this) or a chunked scan (chunks of √L scanned in parallel, then
  their ends chained). On the CPU, where the extra work of these scans outweighs the steps
  they save, the default solves the (output-independent) recurrence by a plain loop and
  keeps the decoding parallel. The diagonal transition uses :func:`tsrnn.ops.linear_scan`.
  The scan wins when the decoding dominates (all B·L roots in one batched call instead of L
  small ones); for a dense A with a large D_θ the squarings cost O(D_θ³ log L).
- Uncertainty: with ``predict_std`` the root has 2·d outputs, the mean and a standard
  deviation softplus(raw) + ``std_min`` for a Gaussian negative log-likelihood.

Shapes: x (B, L, input_size); dt (B, L) or (B, L, 1); h0 (B, D_θ). Outputs (B, L, out) with
out = output_size (2·output_size with ``predict_std``), and the final θ (B, D_θ), which as
``h0`` starts a new sequence from that θ rather than continuing the old one (see
:meth:`WARP.forward`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .._validation import check_bool, check_option, check_positive
from ..ops import linear_scan
from ._sampling import check_matches_module, check_state

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "softplus": F.softplus,
    "swish": F.silu,
    "gelu": F.gelu,
    "sin": torch.sin,
    "identity": lambda z: z,
}
TRANSITIONS = ("dense", "diagonal", "lowrank")
INITS = ("hypernetwork", "learned")
MODES = ("scan", "sequential")
DENSE_SCANS = ("auto", "loop", "chunked", "doubling")


# ====================================================================== roots
class MLPRoot(nn.Module):
    """The root MLP τ -> y whose weights are supplied per sample (the WARP hidden state).

    Parameters
    ----------
    output_size : int
    width, depth : int
        Hidden width and number of hidden layers (depth 0: an affine map of τ).
    activation : str
        Hidden activation, one of ``ACTIVATIONS``.
    final_activation : str or None
        Applied to the output (the reference code uses tanh on data scaled to [-1, 1]; None
        suits standardised data).
    input_size : int
        Width of the root's input, 1 for τ alone.

    ``n_params`` is D_θ: for each layer the weight (out, in) row-major, then the bias (out).
    Calling ``root(tau, theta)`` with tau (..., input_size), theta (..., D_θ) gives
    (..., output_size).
    """

    def __init__(self, output_size: int, width: int = 16, depth: int = 2,
                 activation: str = "relu", final_activation: str | None = None,
                 input_size: int = 1):
        super().__init__()
        self.output_size = check_positive(output_size, "output_size", integer=True)
        width = check_positive(width, "width", integer=True)
        depth = check_positive(depth, "depth", integer=True, allow_zero=True)
        check_option(activation, "activation", tuple(ACTIVATIONS))
        if final_activation is not None:
            check_option(final_activation, "final_activation", tuple(ACTIVATIONS))
        self.input_size = check_positive(input_size, "input_size", integer=True)
        sizes = [self.input_size] + [width] * depth + [self.output_size]
        self.layer_sizes = list(itertools.pairwise(sizes))
        self.activation = activation
        self.final_activation = final_activation
        self.n_params = sum(o * i + o for i, o in self.layer_sizes)

    def initial_parameters(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """θ of a freshly initialised MLP: torch's default U(-1/√fan_in, 1/√fan_in)."""
        parts = []
        for fan_in, fan_out in self.layer_sizes:
            bound = 1.0 / math.sqrt(fan_in)
            parts.append((torch.rand(fan_out * fan_in + fan_out, generator=generator,
                                     dtype=torch.float64) * 2 - 1) * bound)
        return torch.cat(parts)

    def forward(self, tau: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        act = ACTIVATIONS[self.activation]
        sizes = [n for fan_in, fan_out in self.layer_sizes for n in (fan_out * fan_in, fan_out)]
        # One split (whose backward is one concatenation) rather than a slice per tensor
        # (each slice's backward would fill a zero (..., D_θ) gradient).
        parts = theta.split(sizes, dim=-1)
        h = tau
        for index, (fan_in, fan_out) in enumerate(self.layer_sizes):
            weight = parts[2 * index].unflatten(-1, (fan_out, fan_in))
            # Broadcast multiply-and-sum: faster than batched matmul for these tiny layers.
            h = (weight * h.unsqueeze(-2)).sum(-1) + parts[2 * index + 1]
            if index < len(self.layer_sizes) - 1:
                h = act(h)
        if self.final_activation is not None:
            h = ACTIVATIONS[self.final_activation](h)
        return h


class MassSpringDamperRoot(nn.Module):
    """A physical root: the exact solution of the damped oscillator (physics-informed WARP).

        x'' + 2 ζ ω x' + ω² x = 0,   x(0) = x_0,  x'(0) = v_0
        (m x'' + c x' + k x = 0 with ω² = k/m, 2ζω = c/m)

        x(t) = e^{λt} [x_0 C(t) + (v_0 - λ x_0) S(t)]
        v(t) = e^{λt} [v_0 C(t) + (λ v_0 - ω² x_0) S(t)]

    with λ = -ζω, s = ω²(1 - ζ²), C = cos(√s t), S = sin(√s t)/√s when s > 0 (under-damped) and
    cosh, sinh when s < 0 (over-damped); both regimes are covered. Physical time is
    t = τ · ``time_unit``. θ = (x_0, v_0, ρ_ω, ρ_ζ) with ω = softplus(ρ_ω), ζ = softplus(ρ_ζ),
    positive by construction. Output: (x(t), v(t)), or x(t) alone with ``velocity=False``.

    Parameters
    ----------
    time_unit : float
        Physical time that τ = 1 stands for (e.g. ``time_scale · dt`` of the data).
    omega, zeta : float
        The initial natural frequency and damping ratio (where θ starts, before learning).
    velocity : bool
        Also return the velocity (the observation is (position, velocity)).
    """

    def __init__(self, time_unit: float = 1.0, omega: float = 1.0, zeta: float = 0.1,
                 velocity: bool = True):
        super().__init__()
        self.time_unit = float(check_positive(time_unit, "time_unit"))
        self.omega = float(check_positive(omega, "omega"))
        self.zeta = float(check_positive(zeta, "zeta"))
        self.velocity = check_bool(velocity, "velocity")
        self.n_params = 4
        self.output_size = 2 if self.velocity else 1

    @staticmethod
    def _inverse_softplus(value: float) -> float:
        return value + math.log(-math.expm1(-value))

    def initial_parameters(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.tensor([0.0, 0.0, self._inverse_softplus(self.omega),
                             self._inverse_softplus(self.zeta)], dtype=torch.float64)

    def physical_parameters(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """x0, v0, omega, zeta read from θ (..., 4)."""
        return {"x0": theta[..., 0], "v0": theta[..., 1], "omega": F.softplus(theta[..., 2]),
                "zeta": F.softplus(theta[..., 3])}

    def forward(self, tau: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        p = self.physical_parameters(theta)
        x0, v0, omega, zeta = p["x0"], p["v0"], p["omega"], p["zeta"]
        t = tau[..., 0] * self.time_unit
        lam = -zeta * omega
        s = omega ** 2 * (1 - zeta ** 2)
        # Both branches are evaluated; clamping keeps the unused one finite (and its gradient
        # zero rather than NaN) while √1e-24 is far below any frequency that matters.
        r_osc = torch.sqrt(torch.clamp(s, min=1e-24))
        r_hyp = torch.sqrt(torch.clamp(-s, min=1e-24))
        under = s > 0
        cos_term = torch.where(under, torch.cos(r_osc * t), torch.cosh(r_hyp * t))
        sin_term = torch.where(under, torch.sin(r_osc * t) / r_osc, torch.sinh(r_hyp * t) / r_hyp)
        decay = torch.exp(lam * t)
        position = decay * (x0 * cos_term + (v0 - lam * x0) * sin_term)
        if not self.velocity:
            return position[..., None]
        speed = decay * (v0 * cos_term + (lam * v0 - omega ** 2 * x0) * sin_term)
        return torch.stack([position, speed], dim=-1)


def _check_root(root) -> None:
    for name in ("n_params", "output_size"):
        value = getattr(root, name, None)
        if not isinstance(value, int) or value <= 0:
            raise ValueError(
                f"a WARP root must declare a positive integer attribute {name!r} (got "
                f"{value!r}); see MLPRoot and MassSpringDamperRoot"
            )
    if not callable(root):
        raise TypeError("a WARP root must be callable as root(tau, theta)")


# ====================================================================== scans
def dense_scan(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = A h_{t-1} + b_t for t = 0..L-1 with h_{-1} = 0, all at once.

    Doubling (Hillis–Steele) scan for a constant transition: after the level with stride
    2^k, h_t = Σ_{s = t-2^(k+1)+1}^{t} A^{t-s} b_s, obtained from the previous level as
    h_t + A^{2^k} h_{t-2^k}. Costs log2(L) products with (B, L, D) plus the squarings of A.

    A : (D, D); b : (B, L, D). Returns (B, L, D).
    """
    h = b
    power = A
    stride = 1
    length = b.shape[1]
    while stride < length:
        shifted = h[:, :-stride] @ power.T
        h = torch.cat([h[:, :stride], h[:, stride:] + shifted], dim=1)
        stride *= 2
        if stride < length:
            power = power @ power
    return h


def chunked_scan(A: torch.Tensor, b: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """h_t = A h_{t-1} + b_t with h_{-1} = 0, by a work-efficient chunked scan.

    The sequence is cut into chunks of C steps (default ⌈√L⌉). (1) Every chunk is scanned
    from zero, all chunks at once (C steps); (2) the states at the chunk ends are chained,
    H_c = end_c + A^C H_{c-1} (L/C steps); (3) each chunk adds A^{i+1} H_{c-1} at its offset
    i. About 2·L·D² work per sample like the loop, but in C + L/C ≈ 2√L batched steps instead
    of L; the doubling scan :func:`dense_scan` does log2(L) times the work in log2(L) steps
    (better on a GPU, worse on a CPU).

    A : (D, D); b : (B, L, D). Returns (B, L, D).
    """
    batch, length, width = b.shape
    size = chunk if chunk is not None else max(1, math.ceil(math.sqrt(length)))
    n_chunks = math.ceil(length / size)
    padded = F.pad(b, (0, 0, 0, n_chunks * size - length)).reshape(batch, n_chunks, size,
                                                                      width)
    state = b.new_zeros(batch, n_chunks, width)
    local = []
    # unbind, not indexing in the loop: its backward is one stack, where each index's
    # backward would fill a zero gradient the size of b.
    for b_i in padded.unbind(2):
        state = state @ A.T + b_i
        local.append(state)
    local = torch.stack(local, dim=2)  # (B, n_chunks, C, D), each chunk started from zero
    powers = [A]
    for _ in range(size - 1):
        powers.append(powers[-1] @ A)
    powers = torch.stack(powers)  # A^1 .. A^C
    carry = b.new_zeros(batch, width)
    carries = []
    for end in local[:, :, -1].unbind(1):
        carries.append(carry)
        carry = end + carry @ powers[-1].T
    carries = torch.stack(carries, dim=1)  # the exact state before each chunk
    fix = torch.einsum("bcd,ied->bcie", carries, powers)
    return (local + fix).reshape(batch, n_chunks * size, width)[:, :length]


def dense_scan_sequential(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The reference loop for :func:`dense_scan` (same arguments and result)."""
    h = torch.zeros_like(b[:, 0])
    out = []
    for b_t in b.unbind(1):
        h = h @ A.T + b_t
        out.append(h)
    return torch.stack(out, 1)


# ====================================================================== the module
class WARP(nn.Module):
    """Weight-space linear RNN (see the module docstring for equations and choices).

    Parameters
    ----------
    input_size : int
        Channels C of x.
    output_size : int, optional
        Channels d predicted by the root (default ``input_size``; with exogenous inputs
        appended to x, the first d channels are the fed-back series).
    root : "mlp" or a root object
        A callable ``root(tau (..., 1), theta (..., D_θ)) -> (..., output_size)`` with
        integer attributes ``n_params`` and ``output_size`` (optionally
        ``initial_parameters(generator)``), e.g. :class:`MassSpringDamperRoot`.
    root_width, root_depth, root_activation, root_final_activation
        The MLP root (when ``root="mlp"``), see :class:`MLPRoot`.
    transition : {"dense", "diagonal", "lowrank"}
        Form of A; ``rank`` is r of the low-rank part.
    init : {"hypernetwork", "learned"}
        θ_0 = θ_base + H(first ``init_window`` inputs), or θ_0 = θ_base.
    init_window : int
        K, how many leading inputs the hypernetwork reads (x_0 alone by default, as the paper).
    hyper_width : int
        Hidden width of the two-layer hypernetwork.
    init_normalize : bool
        Feed the hypernetwork's MLP the window divided by its root mean square.
    time_as_channel : bool
        Append τ to the driving input u_t.
    time_scale : float or None
        τ_t = t / time_scale; None uses L - 1 of each call (the paper's t/(T-1)).
    predict_std : bool
        Also output a standard deviation, softplus(raw) + ``std_min``.
    mode : {"scan", "sequential"}
        How ``forward`` evaluates the recurrence (identical results, see the module docstring).
    dense_scan : {"auto", "loop", "chunked", "doubling"}
        How ``scan`` solves the recurrence for the dense and low-rank transitions: a time loop
        of A θ products (least work; the decoding stays parallel), chunks of √L (about twice
        the work, 2√L steps) or log-depth doubling (log2 L times the work, log2 L steps).
        ``"auto"``: doubling on CUDA, the loop on the CPU, where the parallel scans do not
        pay for their extra work.
    random_state : int or None
        Seeds the root's initial θ_base and the low-rank V (None: seed 0).
    """

    def __init__(self, input_size: int, output_size: int | None = None, root="mlp",
                 root_width: int = 16, root_depth: int = 2, root_activation: str = "relu",
                 root_final_activation: str | None = None, transition: str = "dense",
                 rank: int = 4, init: str = "hypernetwork", init_window: int = 1,
                 hyper_width: int = 32, init_normalize: bool = False, time_as_channel: bool = True,
                 time_scale: float | None = None, predict_std: bool = False,
                 std_min: float = 1e-3, mode: str = "scan", dense_scan: str = "auto",
                 random_state: int | None = 0):
        super().__init__()
        self.input_size = check_positive(input_size, "input_size", integer=True)
        output_size = self.input_size if output_size is None else output_size
        self.output_size = check_positive(output_size, "output_size", integer=True)
        self.transition = check_option(transition, "transition", TRANSITIONS)
        self.init = check_option(init, "init", INITS)
        self.mode = check_option(mode, "mode", MODES)
        self.dense_scan = check_option(dense_scan, "dense_scan", DENSE_SCANS)
        self.init_window = check_positive(init_window, "init_window", integer=True)
        self.time_as_channel = check_bool(time_as_channel, "time_as_channel")
        self.time_scale = None if time_scale is None else float(
            check_positive(time_scale, "time_scale"))
        self.predict_std = check_bool(predict_std, "predict_std")
        self.std_min = float(check_positive(std_min, "std_min", allow_zero=True))
        root_outputs = self.output_size * (2 if self.predict_std else 1)
        if isinstance(root, str):
            check_option(root, "root", ("mlp",))
            root = MLPRoot(root_outputs, root_width, root_depth, root_activation,
                           root_final_activation)
        _check_root(root)
        if root.output_size != root_outputs:
            raise ValueError(
                f"the root returns {root.output_size} channels but this WARP needs "
                f"{root_outputs} (output_size={self.output_size}"
                f"{', doubled by predict_std' if self.predict_std else ''})"
            )
        self.root = root
        self.n_params = D = root.n_params
        generator = torch.Generator().manual_seed(0 if random_state is None else random_state)
        if hasattr(root, "initial_parameters"):
            base = torch.as_tensor(root.initial_parameters(generator),
                                   dtype=torch.get_default_dtype())
            if base.shape != (D,):
                raise ValueError(f"root.initial_parameters() must have shape ({D},), "
                                 f"got {tuple(base.shape)}")
        else:
            base = torch.zeros(D)
        self.theta_base = nn.Parameter(base)
        drive = self.input_size + (1 if self.time_as_channel else 0)
        self.B = nn.Parameter(torch.zeros(D, drive))
        if self.transition == "dense":
            self.A = nn.Parameter(torch.eye(D))
        else:
            self.a = nn.Parameter(torch.ones(D))
        if self.transition == "lowrank":
            self.rank = check_positive(rank, "rank", integer=True)
            # U starts at zero so that A = I; V random so that U receives gradients.
            self.U = nn.Parameter(torch.zeros(D, self.rank))
            self.V = nn.Parameter(torch.randn(D, self.rank, generator=generator) / math.sqrt(D))
        if self.init == "hypernetwork":
            width = check_positive(hyper_width, "hyper_width", integer=True)
            last = nn.Linear(width, D)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            n_in = self.init_window * self.input_size
            self.hypernetwork = nn.Sequential(nn.Linear(n_in, width), nn.ReLU(),
                                              nn.Linear(width, width), nn.ReLU(), last)
            self.hyper_linear = nn.Linear(n_in, D, bias=False)
            nn.init.zeros_(self.hyper_linear.weight)
        else:
            self.hypernetwork = self.hyper_linear = None
        self.init_normalize = check_bool(init_normalize, "init_normalize")

    # ------------------------------------------------------------------ pieces
    def transition_matrix(self) -> torch.Tensor:
        """A as a dense (D, D) matrix (for inspection and the dense/low-rank scans)."""
        if self.transition == "dense":
            return self.A
        matrix = torch.diag(self.a)
        if self.transition == "lowrank":
            matrix = matrix + self.U @ self.V.T
        return matrix

    def apply_transition(self, theta: torch.Tensor) -> torch.Tensor:
        """A θ for θ (..., D), without forming A for the diagonal and low-rank forms."""
        if self.transition == "dense":
            return theta @ self.A.T
        out = theta * self.a
        if self.transition == "lowrank":
            out = out + (theta @ self.V) @ self.U.T
        return out

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        """θ_0 (B, D) from the first ``init_window`` steps of x (B, L, C)."""
        theta = self.theta_base.expand(x.shape[0], -1)
        if self.hypernetwork is None:
            return theta
        window = x[:, : self.init_window].reshape(x.shape[0], -1)
        features = window
        if self.init_normalize:
            rms = window.pow(2).mean(dim=1, keepdim=True).sqrt()
            features = window / (rms + 1e-8)
        return theta + self.hyper_linear(window) + self.hypernetwork(features)

    def decode(self, tau: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Root outputs at τ (..., 1) with weights θ (..., D): mean (and std) (..., out)."""
        out = self.root(tau, theta)
        if not self.predict_std:
            return out
        mean, raw = out.split(self.output_size, dim=-1)
        return torch.cat([mean, F.softplus(raw) + self.std_min], dim=-1)

    def time_coordinates(self, x: torch.Tensor, dt: torch.Tensor | None,
                         offset: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """τ_t (B, L, 1) and the step Δτ_t (B, L, 1) to the next sample, τ_{t+1} - τ_t (the
        last gap again at the last step), for x (B, L, C); ``dt`` (B, L, 1) the time before
        each step."""
        batch, length = x.shape[:2]
        scale = self.time_scale if self.time_scale is not None else max(length - 1, 1)
        if dt is None:
            steps = torch.arange(length, dtype=x.dtype, device=x.device)
            tau = ((steps + offset) / scale).expand(batch, length)[..., None]
            delta = torch.full_like(tau, 1.0 / scale)
            return tau, delta
        delta = dt / scale
        tau = offset / scale + torch.cumsum(delta, dim=1) - delta[:, :1]
        # Output t predicts x_{t+1}: decoded at tau_{t+1}, not tau_t plus the gap before t.
        ahead = torch.cat([delta[:, 1:], delta[:, -1:]], dim=1)
        return tau, ahead

    def _check(self, x: torch.Tensor, h0, dt):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch tensor, got {type(x).__name__}")
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must have shape (B, L, {self.input_size}), got "
                             f"{tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
        if x.shape[1] < self.init_window:
            raise ValueError(f"x has {x.shape[1]} steps; the hypernetwork reads the first "
                             f"init_window={self.init_window}")
        if x.shape[0] == 0:  # torch's own error was a reshape's
            raise ValueError("x is empty along the batch (B = 0)")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x contains NaN or inf")
        check_matches_module(x, self)
        if h0 is not None:
            if not isinstance(h0, torch.Tensor) or tuple(h0.shape) != (x.shape[0],
                                                                       self.n_params):
                shape = tuple(h0.shape) if isinstance(h0, torch.Tensor) else type(h0).__name__
                raise ValueError(f"h0 must have shape ({x.shape[0]}, {self.n_params}) "
                                 f"(B, D_θ), got {shape}")
            check_state(h0, x)
        if dt is not None:
            if not isinstance(dt, torch.Tensor):  # a float or a (nested) list
                dt = torch.as_tensor(dt, dtype=x.dtype, device=x.device)
            if dt.ndim == 0:  # one step for every sample and step
                dt = dt.expand(*x.shape[:2])
            if dt.ndim == 3 and dt.shape[-1] == 1:
                dt = dt[..., 0]
            if tuple(dt.shape) != tuple(x.shape[:2]):
                raise ValueError(f"dt must be a number or have shape (B, L) or (B, L, 1) = "
                                 f"{tuple(x.shape[:2])}"
                                 f", got {tuple(dt.shape)}")
            if not bool(torch.isfinite(dt).all()) or bool((dt < 0).any()):
                raise ValueError("dt must be finite and non-negative")
            dt = dt[..., None].to(x.dtype)
        return dt

    def _drive(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, tau], dim=-1) if self.time_as_channel else x

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None,
                dt: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs ŷ_t = root(τ_t + Δτ_t; θ_t) (B, L, out) and the final θ (B, D_θ).

        ``h0`` replaces θ_0 (the hypernetwork is then not used); ``dt`` (B, L) or (B, L, 1)
        is the time elapsed before each step.

        Unlike the other :mod:`tsrnn.nn` modules, passing the returned final θ back as ``h0``
        does not continue a sequence: the call starts afresh from that θ (τ restarts at 0,
        or is rescaled by the new L when ``time_scale`` is None, and the first step applies
        no increment u_0 - u_{-1}). To forecast after a context use :meth:`rollout`.
        """
        dt = self._check(x, h0, dt)
        if self.mode == "sequential":
            return self.sequential(x, h0, dt, checked=True)
        return self.scan(x, h0, dt, checked=True)

    def scan(self, x: torch.Tensor, h0: torch.Tensor | None = None,
             dt: torch.Tensor | None = None, *, checked: bool = False):
        """Non-autoregressive evaluation: all θ_t by a scan, then one batched decoding."""
        if not checked:
            dt = self._check(x, h0, dt)
        tau, delta = self.time_coordinates(x, dt)
        u = self._drive(x, tau)
        theta0 = self.initial_state(x) if h0 is None else h0
        increments = torch.zeros_like(u)
        increments[:, 1:] = u[:, 1:] - u[:, :-1]
        b = increments @ self.B.T
        # θ_0 enters as the first input of a recurrence started from zero.
        b = torch.cat([theta0[:, None].to(b.dtype), b[:, 1:]], dim=1)
        if self.transition == "diagonal":
            thetas = linear_scan(self.a.to(b.dtype)[None, None], b)
        else:
            kind = self.dense_scan
            if kind == "auto":
                kind = "doubling" if b.is_cuda else "loop"
            if kind == "loop":
                thetas = self._theta_loop(b)
            else:
                scan = dense_scan if kind == "doubling" else chunked_scan
                thetas = scan(self.transition_matrix().to(b.dtype), b)
        return self.decode(tau + delta, thetas), thetas[:, -1]

    def _theta_loop(self, b: torch.Tensor) -> torch.Tensor:
        """θ_t = A θ_{t-1} + b_t (θ_{-1} = 0) by a time loop of A θ products: no D_θ² work
        for the low-rank A, and no more work than the recurrence itself for the dense one."""
        theta = torch.zeros_like(b[:, 0])
        thetas = []
        for b_t in b.unbind(1):
            theta = self.apply_transition(theta) + b_t
            thetas.append(theta)
        return torch.stack(thetas, dim=1)

    def sequential(self, x: torch.Tensor, h0: torch.Tensor | None = None,
                   dt: torch.Tensor | None = None, feedback: torch.Tensor | None = None, *,
                   checked: bool = False):
        """Autoregressive evaluation, one step at a time.

        ``feedback`` (B, L) boolean: where True, the first ``output_size`` channels of x_t are
        replaced by the previous step's predicted mean (scheduled sampling / teacher forcing
        with probability < 1; the first step always reads the data).
        """
        if not checked:
            dt = self._check(x, h0, dt)
        if feedback is not None and tuple(feedback.shape) != tuple(x.shape[:2]):
            raise ValueError(f"feedback must have shape {tuple(x.shape[:2])}, got "
                             f"{tuple(feedback.shape)}")
        tau, delta = self.time_coordinates(x, dt)
        theta = self.initial_state(x) if h0 is None else h0
        d = self.output_size
        u_prev = self._drive(x[:, 0], tau[:, 0])
        outputs = []
        for t in range(x.shape[1]):
            x_t = x[:, t]
            if t > 0:
                if feedback is not None:
                    guess = torch.cat([outputs[-1][:, :d], x_t[:, d:]], dim=-1)
                    x_t = torch.where(feedback[:, t, None], guess, x_t)
                u_t = self._drive(x_t, tau[:, t])
                theta = self.apply_transition(theta) + (u_t - u_prev) @ self.B.T
                u_prev = u_t
            outputs.append(self.decode(tau[:, t] + delta[:, t], theta))
        return torch.stack(outputs, dim=1), theta

    @torch.no_grad()
    def rollout(self, context: torch.Tensor, n_steps: int,
                future_x: torch.Tensor | None = None) -> torch.Tensor:
        """Closed-loop forecast of ``n_steps`` predicted means (B, n_steps, output_size).

        The context (B, T_c, input_size) is read with teacher forcing (θ_0 from its first
        ``init_window`` steps); then each predicted mean is fed back as the next input.
        With exogenous channels (input_size > output_size), ``future_x`` (B, n_steps - 1, p)
        holds the channels that accompany the fed-back predictions. Regular sampling only.
        """
        n_steps = check_positive(n_steps, "n_steps", integer=True)
        d = self.output_size
        extra = self.input_size - d
        if extra and (future_x is None or future_x.shape[1] < n_steps - 1):
            raise ValueError(f"future_x must hold at least n_steps - 1 = {n_steps - 1} rows "
                             f"of the {extra} exogenous channels")
        outputs, theta = self.scan(context)
        length = context.shape[1]
        scale = self.time_scale if self.time_scale is not None else max(length - 1, 1)
        u_prev = self._drive(context[:, -1], torch.full_like(context[:, -1, :1],
                                                             (length - 1) / scale))
        mean = outputs[:, -1, :d]
        forecast = [mean]
        for i in range(1, n_steps):
            x_t = mean if not extra else torch.cat([mean, future_x[:, i - 1]], dim=-1)
            tau = torch.full_like(x_t[:, :1], (length - 1 + i) / scale)
            u_t = self._drive(x_t, tau)
            theta = self.apply_transition(theta) + (u_t - u_prev) @ self.B.T
            u_prev = u_t
            mean = self.decode(tau + 1.0 / scale, theta)[:, :d]
            forecast.append(mean)
        return torch.stack(forecast, dim=1)
