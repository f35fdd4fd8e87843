"""Liquid time-constant (LTC) networks.

Hasani, Lechner, Amini, Rus, Grosu, "Liquid time-constant networks", AAAI 2021; the
conductance form and the fused solver of ncps 1.0.1 (Lechner et al., "Neural circuit
policies enabling auditable autonomy", Nature Machine Intelligence 2020).

Each neuron i is a leaky membrane with potential v_i, driven through chemical synapses by
the other neurons j and by the inputs k (the "sensory" neurons):

    c_m,i dv_i/dt = g_l,i (v_l,i - v_i) + sum_j w_ji s_ji(v_j) (E_ji - v_i)
                                         + sum_k w~_ki s~_ki(u_k) (E~_ki - v_i),
    s_ji(v) = sigmoid(sigma_ji (v - mu_ji)),

i.e. dv/dt = -[1/tau + f(v, u)] v + f(v, u) A in the paper's notation. The fused solver
(ncps) takes K = ``ode_unfolds`` semi-implicit Euler steps of size dt / K per input step:

    v <- (c_m/delta v + g_l v_l + sum_j w_ji s_ji(v_j) E_ji + sensory numerator)
         / (c_m/delta + g_l + sum_j w_ji s_ji(v_j) + sensory denominator + eps),

with the sensory synapses evaluated once per step (the input is held over the step).
``solver="adaptive"`` integrates the ODE itself with torchdiffeq (dopri5 by default): the
reference that the fused step approaches as ``ode_unfolds`` grows.

Positive quantities (c_m, g_l, w, w~) are the softplus of unconstrained parameters (the
``*_raw`` attributes; ncps's ``implicit_param_constraints=True``), initialised so that the
positive values are uniform on the ranges of ncps: g_l U(0.001, 1), c_m U(0.4, 0.6),
w U(0.001, 1); v_l U(-0.2, 0.2), sigma U(3, 8), mu U(0.3, 0.8), E from the wiring's
polarities (about 2/3 excitatory). The first ``output_size`` neurons of the wiring (the motor
neurons) are read out through an affine map, as in ncps.

Speed: the fused solver runs in a custom autograd function (:mod:`tsrnn.nn._ltc_kernels`)
that keeps only the states at the step boundaries and recomputes the synapse activations in
its hand-derived backward pass; on the CPU it uses a compiled C kernel
(:mod:`tsrnn.nn._ltc_cpu`) when a C compiler is present, on CUDA fused Triton kernels
(:mod:`tsrnn.nn._triton_ltc`, up to 64 neurons) when triton is installed.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .._torch import optional_triton_module
from .._validation import check_bool, check_option, check_positive
from ._ltc_kernels import FusedLTC, ltc_sequence_autograd
from ._sampling import check_sequence, check_state, check_time_steps
from .wirings import Wiring, resolve_wiring

SOLVERS = ("fused", "adaptive")
IMPLEMENTATIONS = ("auto", "native", "triton", "torch", "autograd")
MAPPINGS = ("affine", "linear", "none")


def _triton_kernels():
    """:mod:`tsrnn.nn._triton_ltc`, or None without Triton (see optional_triton_module)."""
    return optional_triton_module("tsrnn.nn._triton_ltc")


def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


def _uniform_positive(shape, low: float, high: float) -> torch.Tensor:
    """Raw values whose softplus is uniform on [low, high]."""
    return _inverse_softplus(torch.empty(shape).uniform_(low, high))


class MemoryCell(nn.Module):
    """The LSTM cell that ``mixed_memory`` puts in front of an LTC or CfC cell.

    Lechner & Hasani 2020, "Learning long-term dependencies in irregularly-sampled time
    series" (ODE-LSTM): c' = f c + i g, h' = o tanh(c'), with the forget gate biased by +1
    (as ncps's ``LSTMCell``).
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_map = nn.Linear(input_size, 4 * hidden_size)
        self.recurrent_map = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        nn.init.xavier_uniform_(self.input_map.weight)
        nn.init.uniform_(self.input_map.bias, -0.1, 0.1)
        nn.init.orthogonal_(self.recurrent_map.weight)

    def forward(self, u: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        gates = self.input_map(u) + self.recurrent_map(h)
        g, i, f, o = gates.chunk(4, dim=-1)
        c = c * torch.sigmoid(f + 1.0) + torch.tanh(g) * torch.sigmoid(i)
        return torch.tanh(c) * torch.sigmoid(o), c


# torchdiffeq's methods (its README), for the adaptive solver.
ODE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun", "euler", "midpoint",
               "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams",
               "scipy_solver")

class LTC(nn.Module):
    """LTC layer over a sequence (see the module docstring for the equations).

    Parameters
    ----------
    input_size : int
        Input channels I.
    units : int or Wiring
        H fully connected neurons, or a :mod:`tsrnn.nn.wirings` wiring (NCP, sparse,
        low-rank plus sparse), built here for ``input_size`` inputs.
    ode_unfolds : int
        K, semi-implicit steps per input step (fused solver).
    solver : {"fused", "adaptive"}
        ncps's fused semi-implicit solver, or torchdiffeq's adaptive ``method`` with
        tolerances ``rtol``, ``atol`` (the reference; slow).
    epsilon : float
        Added to the denominator of the fused step.
    input_mapping, output_mapping : {"affine", "linear", "none"}
        Elementwise maps of the inputs and of the motor outputs.
    mixed_memory : bool
        Put an LSTM memory cell in front (ncps's ``mixed_memory``); the state is then the
        pair (v, c).
    implementation : {"auto", "native", "triton", "torch", "autograd"}
        How the fused solver runs: the compiled CPU kernel, the fused Triton kernels (CUDA,
        H <= 64), the recomputing torch function, or plain autograd through every unfold
        (memory O(B L K H^2), allows double backward). "auto": native on a CPU when it is
        available, triton on CUDA when triton is installed and covers H, else torch.
    method, rtol, atol : torchdiffeq settings of the adaptive solver.

    Shapes
    ------
    x : (B, L, I); h0 : (B, H) (or a pair with ``mixed_memory``); dt : (B, L) or (B, L, 1),
    the time elapsed before each step (1 when None). Returns the motor outputs
    (B, L, output_size) and the final state (B, H).
    """

    def __init__(self, input_size: int, units: int | Wiring, *, ode_unfolds: int = 6,
                 solver: str = "fused", epsilon: float = 1e-8, input_mapping: str = "affine",
                 output_mapping: str = "affine", mixed_memory: bool = False,
                 implementation: str = "auto", method: str = "dopri5", rtol: float = 1e-7,
                 atol: float = 1e-9):
        super().__init__()
        self.input_size = check_positive(input_size, "input_size", integer=True)
        self.wiring = resolve_wiring(units, self.input_size)
        self.hidden_size = self.wiring.units
        self.output_size = self.wiring.output_size
        self.ode_unfolds = check_positive(ode_unfolds, "ode_unfolds", integer=True)
        self.solver = check_option(solver, "solver", SOLVERS)
        self.epsilon = check_positive(epsilon, "epsilon", allow_zero=True)
        self.input_mapping = check_option(input_mapping, "input_mapping", MAPPINGS)
        self.output_mapping = check_option(output_mapping, "output_mapping", MAPPINGS)
        self.implementation = check_option(implementation, "implementation", IMPLEMENTATIONS)
        # Checked here rather than by torchdiffeq at the first forward of the adaptive solver.
        self.method = check_option(method, "method", ODE_METHODS)
        self.rtol = check_positive(rtol, "rtol")
        self.atol = check_positive(atol, "atol")
        H, I = self.hidden_size, self.input_size
        self.gleak_raw = nn.Parameter(_uniform_positive(H, 0.001, 1.0))
        self.vleak = nn.Parameter(torch.empty(H).uniform_(-0.2, 0.2))
        self.cm_raw = nn.Parameter(_uniform_positive(H, 0.4, 0.6))
        self.sigma = nn.Parameter(torch.empty(H, H).uniform_(3.0, 8.0))
        self.mu = nn.Parameter(torch.empty(H, H).uniform_(0.3, 0.8))
        self.rank = self.wiring.rank
        if self.rank is None:
            self.w_raw = nn.Parameter(_uniform_positive((H, H), 0.001, 1.0))
        else:
            # softplus(U) softplus(V): positive and of rank <= r, with factors near a so
            # that the weights r a^2 start at 0.5, the middle of the dense U(0.001, 1).
            a = math.sqrt(0.5 / self.rank)
            self.w_left_raw = nn.Parameter(_uniform_positive((H, self.rank), 0.5 * a, 1.5 * a))
            self.w_right_raw = nn.Parameter(_uniform_positive((self.rank, H), 0.5 * a,
                                                              1.5 * a))
        # Built in torch's default dtype, like the other parameters (not a fixed float32).
        real = torch.get_default_dtype()
        self.erev = nn.Parameter(torch.as_tensor(self.wiring.adjacency, dtype=real).clone())
        self.sensory_sigma = nn.Parameter(torch.empty(I, H).uniform_(3.0, 8.0))
        self.sensory_mu = nn.Parameter(torch.empty(I, H).uniform_(0.3, 0.8))
        self.sensory_w_raw = nn.Parameter(_uniform_positive((I, H), 0.001, 1.0))
        self.sensory_erev = nn.Parameter(
            torch.as_tensor(self.wiring.sensory_adjacency, dtype=real).clone())
        self.register_buffer("mask", torch.as_tensor(self.wiring.adjacency != 0,
                                                     dtype=real))
        self.register_buffer("sensory_mask", torch.as_tensor(
            self.wiring.sensory_adjacency != 0, dtype=real))
        if input_mapping != "none":
            self.input_w = nn.Parameter(torch.ones(I))
            self.input_b = nn.Parameter(torch.zeros(I)) if input_mapping == "affine" else None
        if output_mapping != "none":
            self.output_w = nn.Parameter(torch.ones(self.output_size))
            self.output_b = (nn.Parameter(torch.zeros(self.output_size))
                             if output_mapping == "affine" else None)
        self.memory = MemoryCell(I, H) if check_bool(mixed_memory, "mixed_memory") else None

    # ------------------------------------------------------------------ parameters
    @property
    def gleak(self) -> torch.Tensor:
        """Leak conductances g_l (H,), positive."""
        return F.softplus(self.gleak_raw)

    @property
    def cm(self) -> torch.Tensor:
        """Membrane capacitances c_m (H,), positive."""
        return F.softplus(self.cm_raw)

    @property
    def w(self) -> torch.Tensor:
        """Synaptic weights w_ji (source j, target i), positive on the wiring's synapses."""
        if self.rank is None:
            w = F.softplus(self.w_raw)
        else:
            w = F.softplus(self.w_left_raw) @ F.softplus(self.w_right_raw)
        return w * self.mask

    @property
    def sensory_w(self) -> torch.Tensor:
        """Sensory synaptic weights (I, H), positive on the wiring's sensory synapses."""
        return F.softplus(self.sensory_w_raw) * self.sensory_mask

    # ------------------------------------------------------------------ pieces
    def _map_inputs(self, x):
        if self.input_mapping == "none":
            return x
        x = x * self.input_w
        return x if self.input_b is None else x + self.input_b

    def _map_outputs(self, states):
        out = states[..., : self.output_size]
        if self.output_mapping == "none":
            return out
        out = out * self.output_w
        return out if self.output_b is None else out + self.output_b

    def _sensory(self, u: torch.Tensor):
        """Sensory numerator and denominator for every step, (B, L, H) each."""
        activation = self.sensory_w * torch.sigmoid(
            self.sensory_sigma * (u[..., None] - self.sensory_mu))  # (B, L, I, H)
        return (activation * self.sensory_erev).sum(-2), activation.sum(-2)

    @staticmethod
    def _batch_and_steps(like: torch.Tensor) -> tuple[int, int]:
        return (like.shape[0], like.shape[1]) if like.dim() > 1 else (0, 0)

    def _backend(self, like: torch.Tensor) -> str:
        choice = self.implementation
        if choice == "auto":
            from . import _ltc_cpu

            if like.device.type == "cuda":
                kernels = _triton_kernels()
                covered = kernels is not None and kernels.supports(
                    self.hidden_size, like.dtype, *self._batch_and_steps(like),
                    self.ode_unfolds)
                return "triton" if covered else "torch"
            native = (like.device.type == "cpu" and like.dtype in (torch.float32, torch.float64)
                      and _ltc_cpu.available())
            return "native" if native else "torch"
        if choice == "triton":
            kernels = _triton_kernels()
            if kernels is None:
                raise RuntimeError("implementation='triton' needs the triton package; use "
                                   "'torch'")
            if not kernels.supports(self.hidden_size, like.dtype):
                raise ValueError(f"the Triton LTC kernels cover up to {kernels.MAX_PADDED} "
                                 f"neurons in float32 or float64, not {self.hidden_size} in "
                                 f"{like.dtype}; use implementation='torch'")
            if not kernels.supports(self.hidden_size, like.dtype, *self._batch_and_steps(like),
                                    self.ode_unfolds):
                raise ValueError(f"a batch of {like.shape[0]} sequences is too large for the "
                                 "Triton LTC kernels' 32-bit offsets; use "
                                 "implementation='torch' or smaller batches")
        if choice == "native":
            from . import _ltc_cpu

            if like.device.type != "cpu":
                raise ValueError("implementation='native' runs on the CPU only; use 'torch' "
                                 f"for tensors on {like.device}")
            if not _ltc_cpu.available():
                raise RuntimeError("the compiled LTC kernel is not available here (no working "
                                   "C compiler); use implementation='torch'")
        return choice

    def _check_state(self, h0, batch: int, like: torch.Tensor):
        H = self.hidden_size
        if self.memory is not None:
            if h0 is None:
                zero = like.new_zeros(batch, H)
                return zero, zero
            if not isinstance(h0, tuple | list) or len(h0) != 2:
                raise ValueError("with mixed_memory=True the state is a pair (v, c) of (B, H) "
                                 "tensors")
            for i, part in enumerate(h0):
                if not isinstance(part, torch.Tensor) or tuple(part.shape) != (batch, H):
                    shape = (tuple(part.shape) if isinstance(part, torch.Tensor)
                             else type(part).__name__)
                    raise ValueError(f"each part of h0 must have shape ({batch}, {H}), got "
                                     f"{shape}")
                check_state(part, like, f"h0[{i}]")
            return tuple(h0)
        if h0 is None:
            return like.new_zeros(batch, H)
        if not isinstance(h0, torch.Tensor) or tuple(h0.shape) != (batch, H):
            shape = tuple(h0.shape) if isinstance(h0, torch.Tensor) else type(h0).__name__
            raise ValueError(f"h0 must have shape (B, H) = ({batch}, {H}), got {shape}")
        return check_state(h0, like)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, h0=None, dt=None):
        """Run the cell over ``x``; returns (motor outputs (B, L, output_size), final state)."""
        states, final = self.trajectory(x, h0, dt, _return_final=True)
        return self._map_outputs(states), final

    def trajectory(self, x: torch.Tensor, h0=None, dt=None, *, _return_final: bool = False):
        """The potentials of all neurons after every step (B, L, H): the hidden states."""
        check_sequence(x, self.input_size, module=self)
        batch, length = x.shape[:2]
        dt = check_time_steps(dt, batch, length, x)
        if dt is not None and bool((dt <= 0).any()):
            index = tuple(int(i) for i in torch.nonzero(dt <= 0)[0])
            raise ValueError(f"dt must be > 0 for an LTC (its step divides by dt); got "
                             f"{float(dt[index]):.4g} at index {index}")
        if dt is None:
            dt = x.new_ones(batch, length)
        state = self._check_state(h0, batch, x)
        return self._run(x, state, dt, _return_final)

    def _run(self, x, state, dt, return_final: bool):
        """The computation after validation (no host synchronisation: CUDA-graph capturable
        for the fused solver); dt is a (B, L) tensor."""
        u = self._map_inputs(x)
        sensory_num, sensory_den = self._sensory(u)
        gleak = self.gleak
        n = gleak * self.vleak + sensory_num
        d = gleak + sensory_den
        if self.memory is not None:
            return self._run_mixed(u, x, state, dt, n, d, return_final)
        if self.solver == "adaptive":
            states = self._adaptive(state, dt, n, d)
        else:
            states = self._fused(state, dt, n, d)
        return (states, states[:, -1]) if return_final else states

    def _fused(self, v0, dt, n, d):
        c = self.cm * (self.ode_unfolds / dt[..., None])
        w = self.w
        args = (v0, c, n, d + self.epsilon, w, w * self.erev, self.sigma,
                self.sigma * self.mu, self.ode_unfolds)
        backend = self._backend(c)  # (B, L, H): the size decides too
        if backend == "autograd":
            return ltc_sequence_autograd(*args)
        if backend == "triton":
            return _triton_kernels().TritonLTC.apply(*args)
        return FusedLTC.apply(*args, backend)

    def _adaptive(self, v0, dt, n, d):
        from torchdiffeq import odeint

        w = self.w
        we, sigma, smu, cm = w * self.erev, self.sigma, self.sigma * self.mu, self.cm
        unit = torch.tensor([0.0, 1.0], dtype=v0.dtype, device=v0.device)
        v, outputs = v0, []
        for t in range(dt.shape[1]):
            nt, dtt, scale = n[:, t], d[:, t], dt[:, t, None] / cm

            # Time rescaled to s in [0, 1] per sample, so that a batch with different
            # elapsed times shares one solver grid: dv/ds = dt * dv/dt.
            def rhs(_, v, nt=nt, dtt=dtt, scale=scale):
                S = torch.sigmoid(sigma * v[:, :, None] - smu)
                inflow = nt + (S * we).sum(1)
                conductance = dtt + (S * w).sum(1)
                return scale * (inflow - conductance * v)

            v = odeint(rhs, v, unit, method=self.method, rtol=self.rtol, atol=self.atol)[-1]
            outputs.append(v)
        return torch.stack(outputs, dim=1)

    def _run_mixed(self, u, x, state, dt, n, d, return_final):
        v, memory = state
        outputs = []
        for t in range(x.shape[1]):
            v, memory = self.memory(x[:, t], v, memory)
            step = slice(t, t + 1)
            if self.solver == "adaptive":
                v = self._adaptive(v, dt[:, step], n[:, step], d[:, step])[:, 0]
            else:
                v = self._fused(v, dt[:, step], n[:, step], d[:, step])[:, 0]
            outputs.append(v)
        states = torch.stack(outputs, dim=1)
        return (states, (v, memory)) if return_final else states

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, wiring={self.wiring!r}, "
                f"ode_unfolds={self.ode_unfolds}, solver={self.solver!r}")
