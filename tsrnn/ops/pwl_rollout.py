"""Whole rollouts of PLRNN-family maps in one kernel: forced (teacher forcing), adjoint, free.

The maps of :mod:`tsrnn.nn.plrnn` are tiny (M = 3..32 latents) and are iterated for hundreds
to tens of thousands of sequential steps. On a GPU each step as PyTorch operations is ~10
launches of a few microseconds each, so a naive rollout is slower than on a CPU; on a CPU
each step is ~10 torch calls of a few microseconds, far more than its arithmetic. Here a
whole rollout is one Triton kernel on CUDA (:mod:`tsrnn.ops._triton_pwl`: one program per
sequence keeps the weights and the state in registers and loops over the steps) or one C call
on the CPU (:mod:`tsrnn.ops._pwl_cpu`). Three operations:

forced rollout (Hess et al. 2023, "Generalized teacher forcing for learning chaotic
dynamics", ICML; Mikhaeil et al. 2022, "On the difficulty of learning chaotic dynamics with
RNNs", NeurIPS), with fed_1 = z_1:

    pred_k   = F(fed_k) + d_k                                         k = 1 .. L
    fed_k+1  = (1 - w_k m_k) pred_k + w_k m_k zhat_k   (first F latents; m_k the mask)

adjoint (the reverse recursion of :class:`tsrnn.dsr.teacher_forcing._AdjointRollout`), from
the loss gradients g_k of the predictions:

    a_k = g_k + (1 - w_k m_k) c_k+1,   c_k = J(fed_k)^T a_k,   dloss/dz_1 = c_1

free run: the forced rollout with w = 0 (only the states are written).

Maps (:class:`PackedMap`), A diagonal, d_k an optional additive drive (C s_k):

- PLRNN  z' = A z + W relu(z) + h;  AL-RNN: relu on the last P units only
  (Brenner et al. 2024, "Almost-linear RNNs yield highly interpretable symbolic codes in
  dynamical systems reconstruction", NeurIPS);
- shallow PLRNN z' = A z + W1 [relu(W2 z + h2) - c relu(W2 z)] + h1, c = 1 when clipped.

Backends: ``"triton"`` (CUDA tensors with Triton installed; or CPU tensors under
``TRITON_INTERPRET=1``, Triton's interpreter, for checking the kernels without a GPU),
``"native"`` (CPU tensors in float32 or float64: the same loops compiled in C,
:mod:`tsrnn.ops._pwl_cpu`, where a C compiler works), ``"torch"`` (the step-by-step
reference below, any device and dtype), ``"auto"`` (Triton on CUDA when it imports, and
under ``TRITON_INTERPRET=1``; native on the CPU where it builds; else torch). The kernels
are used only for maps whose register tiles fit (:func:`pack` returns None otherwise; on the
CPU the larger maps are not call-bound either).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .._validation import check_option

Tensor = torch.Tensor
BACKENDS = ("auto", "torch", "triton", "native")

# Register budget of one program: tile elements per thread (float32; float64 counts double)
# and the largest tile set that still fits with 8 warps. Larger maps are not launch-bound
# anyway, so they keep the PyTorch path.
_ELEMENTS_PER_THREAD = 32
_MAX_WARPS = 8


@dataclass
class PackedMap:
    """A PLRNN-family map's weights, detached and laid out for the kernels.

    Attributes
    ----------
    model : 0 (piecewise linear: PLRNN, AL-RNN) or 1 (shallow PLRNN)
    clipped : bool (shallow only)
    A : (M,) diagonal;  b1 : (M,) h or h1;  b2 : (H,) h2 (shallow; else unused)
    P1 : (M, M) off-diagonal coupling W, or W1 (M, H);  P2 : (H, M) W2 (shallow; else unused)
    lin : (M,) int8, 1 on the linear units of an AL-RNN (PWL only)
    n_hidden : H (1 for the PWL maps); block_latent, block_hidden, num_warps : launch shape
    """

    model: int
    clipped: bool
    A: Tensor
    P1: Tensor
    P2: Tensor
    b1: Tensor
    b2: Tensor
    lin: Tensor
    n_hidden: int
    block_latent: int
    block_hidden: int
    num_warps: int

    @property
    def n_latent(self) -> int:
        return int(self.A.shape[0])

    def step(self, z: Tensor) -> Tensor:
        """F(z) for states (B, M) (the torch reference)."""
        if self.model == 0:
            phi = torch.where(self.lin.bool(), z, torch.relu(z))
            return self.A * z + phi @ self.P1.T + self.b1
        pre = z @ self.P2.T
        hidden = torch.relu(pre + self.b2)
        if self.clipped:
            hidden = hidden - torch.relu(pre)
        return self.A * z + hidden @ self.P1.T + self.b1

    def vjp(self, a: Tensor, z: Tensor) -> Tensor:
        """J(z)^T a for states and adjoints (B, M) (the torch reference)."""
        if self.model == 0:
            d = torch.where(self.lin.bool(), torch.ones_like(z), (z > 0).to(z.dtype))
            return self.A * a + d * (a @ self.P1)
        pre = z @ self.P2.T
        slope = (pre + self.b2 > 0).to(z.dtype)
        if self.clipped:
            slope = slope - (pre > 0).to(z.dtype)
        return self.A * a + ((a @ self.P1) * slope) @ self.P2


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def pack(latent: torch.nn.Module) -> PackedMap | None:
    """The kernels' view of a :mod:`tsrnn.nn` PLRNN, ALRNN or ShallowPLRNN (exact types: a
    subclass may change the equations), or None for any other map or one too large for the
    register tiles."""
    from ..nn import plrnn

    kind = type(latent)
    with torch.no_grad():
        A = latent.A.detach().contiguous() if hasattr(latent, "A") else None
        if kind in (plrnn.PLRNN, plrnn.ALRNN):
            dim = latent.n_latent
            lin = torch.zeros(dim, dtype=torch.int8, device=A.device)
            if kind is plrnn.ALRNN:
                lin[: dim - latent.n_pwl] = 1
            coupling = (latent.W * latent.off_diagonal).detach().contiguous()
            model, clipped, n_hidden = 0, False, 1
            P1, P2, b1, b2 = coupling, coupling, latent.h.detach().contiguous(), A
        elif kind is plrnn.ShallowPLRNN:
            dim, n_hidden = latent.n_latent, latent.n_hidden
            lin = torch.zeros(dim, dtype=torch.int8, device=A.device)
            model, clipped = 1, bool(latent.clipped)
            P1, P2 = latent.W1.detach().contiguous(), latent.W2.detach().contiguous()
            b1, b2 = latent.h1.detach().contiguous(), latent.h2.detach().contiguous()
        else:
            return None
    block_latent = max(2, _next_power_of_two(dim))
    block_hidden = max(2, _next_power_of_two(n_hidden)) if model == 1 else 2
    elements = block_latent ** 2 if model == 0 else 2 * block_hidden * block_latent
    elements *= 2 if A.dtype == torch.float64 else 1
    warps = _next_power_of_two(-(-elements // (32 * _ELEMENTS_PER_THREAD)))
    if warps > _MAX_WARPS:
        return None
    return PackedMap(model, clipped, A, P1, P2, b1, b2, lin, n_hidden, block_latent,
                     block_hidden, warps)


# ---------------------------------------------------------------------- backends
def _triton():
    from . import _triton_pwl  # imports triton: only reached when it is wanted

    return _triton_pwl


def triton_available() -> bool:
    """Whether Triton imports (the package itself is optional)."""
    try:
        _triton()
    except ImportError:
        return False
    return True


def _native():
    from . import _pwl_cpu

    return _pwl_cpu


def resolve_backend(backend: str, tensor: Tensor) -> str:
    """``"torch"``, ``"triton"`` or ``"native"`` for tensors like ``tensor`` (see the module
    docstring)."""
    check_option(backend, "backend", BACKENDS)
    if backend == "native":
        if not _native().supports(tensor):
            raise ValueError(f"backend='native' needs float32 or float64 CPU tensors and a "
                             f"working C compiler, got {tensor.dtype} tensors on "
                             f"{tensor.device}; use backend='torch' or 'auto'")
        return "native"
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    if backend == "triton":
        if not (tensor.is_cuda or interpreted):
            raise ValueError(f"backend='triton' needs CUDA tensors, got tensors on "
                             f"{tensor.device}; use backend='torch' or 'auto'")
        if not triton_available():
            raise ValueError("backend='triton' needs the triton package; use backend='torch' "
                             "or 'auto'")
        return "triton"
    if backend == "auto" and (tensor.is_cuda or interpreted) and triton_available():
        return "triton"
    if backend == "auto" and _native().supports(tensor):
        return "native"
    return "torch"


def _check_batch(z1: Tensor, dim: int) -> None:
    if z1.ndim != 2 or z1.shape[1] != dim:
        raise ValueError(f"states must have shape (B, {dim}), got {tuple(z1.shape)}")


# ---------------------------------------------------------------------- operations
def forced_rollout(packed: PackedMap, z1: Tensor, signals: Tensor, weights: Tensor,
                   mask: Tensor | None = None, drive: Tensor | None = None,
                   backend: str = "auto") -> tuple[Tensor, Tensor]:
    """The forced trajectory (module docstring), without autograd.

    Parameters
    ----------
    packed : PackedMap
    z1 : (B, M) first states
    signals : (B, L, F) forcing signals zhat for the first F <= M latents (NaN-free)
    weights : (L,) forcing weights w_k, same dtype and device as ``z1``
    mask : (B, L, F) bool, optional: which signal entries force (None: all)
    drive : (B, L, M), optional: added to every step (the input term C s_k)
    backend : {"auto", "torch", "triton", "native"}

    Returns
    -------
    predictions (B, L, M) = pred_1 .. pred_L and fed (B, L, M) = fed_1 .. fed_L.
    """
    batch, length, n_forced = signals.shape
    _check_batch(z1, packed.n_latent)
    if weights.shape != (length,):
        raise ValueError(f"weights must have shape ({length},), got {tuple(weights.shape)}")
    predictions = z1.new_empty((batch, length, packed.n_latent))
    fed = torch.empty_like(predictions)
    resolved = resolve_backend(backend, z1)
    if resolved != "torch":
        kernels = _triton() if resolved == "triton" else _native()
        kernels.launch_rollout(
            packed, z1.contiguous(), signals.contiguous(), weights.contiguous(),
            None if mask is None else mask.to(torch.int8).contiguous(),
            None if drive is None else drive.contiguous(), predictions, fed, forced=True)
        return predictions, fed
    z = z1
    for k in range(length):
        fed[:, k] = z
        z = packed.step(z) if drive is None else packed.step(z) + drive[:, k]
        predictions[:, k] = z
        w = weights[k]
        head = z[:, :n_forced]
        mixed = torch.where(w == 1.0, signals[:, k], torch.lerp(head, signals[:, k], w))
        apply = (w != 0.0) if mask is None else mask[:, k] & (w != 0.0)
        z = torch.cat([torch.where(apply, mixed, head), z[:, n_forced:]], dim=1)
    return predictions, fed


def adjoint(packed: PackedMap, grad: Tensor, fed: Tensor, weights: Tensor, n_forced: int,
            mask: Tensor | None = None, backend: str = "auto") -> tuple[Tensor, Tensor]:
    """The adjoints a_1 .. a_L (B, L, M) and dloss/dz_1 (B, M) (module docstring).

    ``grad`` (B, L, M) holds dloss/dpred_k, ``fed`` the states of :func:`forced_rollout`,
    ``weights``, ``n_forced`` (F) and ``mask`` the forcing it was run with.
    """
    batch, length, dim = fed.shape
    adjoints = torch.empty_like(fed)
    grad_z1 = fed.new_empty((batch, dim))
    resolved = resolve_backend(backend, fed)
    if resolved != "torch":
        kernels = _triton() if resolved == "triton" else _native()
        kernels.launch_adjoint(
            packed, grad.contiguous(), fed.contiguous(), weights.contiguous(),
            None if mask is None else mask.to(torch.int8).contiguous(), int(n_forced),
            adjoints, grad_z1)
        return adjoints, grad_z1
    carry = torch.zeros_like(grad_z1)
    forced = torch.arange(dim, device=fed.device) < n_forced
    for k in range(length - 1, -1, -1):
        on = forced if mask is None else forced & torch.nn.functional.pad(
            mask[:, k], (0, dim - n_forced))
        keep = torch.where(on, 1.0 - weights[k], torch.ones_like(carry))
        a = grad[:, k] + keep * carry
        adjoints[:, k] = a
        carry = packed.vjp(a, fed[:, k])
    grad_z1.copy_(carry)
    return adjoints, grad_z1


def free_run(packed: PackedMap, z: Tensor, n_steps: int, drive: Tensor | None = None,
             backend: str = "auto") -> Tensor:
    """States z_1 .. z_n (B, n, M) of the map iterated from z (B, M) (+ ``drive`` (B, n, M))."""
    _check_batch(z, packed.n_latent)
    n_steps = int(n_steps)
    states = z.new_empty((z.shape[0], n_steps, packed.n_latent))
    resolved = resolve_backend(backend, z)
    if resolved != "torch":
        kernels = _triton() if resolved == "triton" else _native()
        kernels.launch_rollout(
            packed, z.contiguous(), states, None, None,
            None if drive is None else drive.contiguous(), states, None, forced=False)
        return states
    for k in range(n_steps):
        z = packed.step(z) if drive is None else packed.step(z) + drive[:, k]
        states[:, k] = z
    return states
