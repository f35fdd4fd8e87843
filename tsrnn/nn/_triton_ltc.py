"""Fused Triton kernels for the fused LTC solver on CUDA (imported only when triton is present).

The same computation as :class:`tsrnn.nn._ltc_kernels.FusedLTC` (whose module docstring
derives the backward pass) and as the compiled CPU kernel :mod:`tsrnn.nn._ltc_cpu`, in two
persistent kernels with one program per batch row. Each program keeps the synapse
parameters sigma, sigma mu, w and w E (H x H each, source-major; 64 KB in float32 for 64
units) in registers for the whole sequence, loops over the L steps and the K unfolds of each,
and evaluates every synapse activation

    S_ji = sigmoid(sigma_ji v_j - (sigma mu)_ji)

on chip, consuming it at once (the sums over j of S (wE) and S w give the update
v' = (c v + n + sum_j S wE) / (c + d + sum_j S w)). The forward kernel stores only the states
at the step boundaries (B, L, H). The backward kernel runs the steps in reverse: it recomputes
the K unfolds of the step from the stored starting state (keeping the K + 1 states and the
K denominators in a small per-row scratch buffer), then runs the adjoint of each unfold in
reverse, recomputing S from its state; the four parameter gradients (H x H each) are summed
in registers per program (per batch row) and added up over the programs after the kernel.

Sizes are padded to a power of two (at least 16) with zero synapses and c = d = 1, which keep
the padded potentials at zero. The kernels hold 4 (forward) and 8 (backward) H x H tiles in
registers, so they cover H <= 64; larger networks use the torch implementation.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_PADDED = 64


def _padded(size: int) -> int:
    return max(16, triton.next_power_of_2(size))


def supports(hidden: int, dtype: torch.dtype, batch: int = 0, steps: int = 0,
             unfolds: int = 6) -> bool:
    """Whether the kernels cover H neurons in this dtype, for ``batch`` sequences of
    ``steps`` steps. The kernels index with int32: the states (B, L, HP), and in the
    backward pass each sequence's parameter gradients (B, 4, HP, HP) and scratch (B, 2K + 1,
    HP) (from B = 131,072 at 64 neurons these offsets wrapped: an illegal memory access)."""
    padded = _padded(hidden)
    largest = max(batch * steps * padded, batch * 4 * padded * padded,
                  batch * (2 * unfolds + 1) * padded)
    return (dtype in (torch.float32, torch.float64) and padded <= MAX_PADDED
            and largest < 2**31)


@triton.jit
def _ltc_forward_kernel(v0, c, n, d, sig, smu, w, we, states, steps, unfolds,
                        HP: tl.constexpr):
    """v0 (B, HP); c, n, d, states (B, L, HP); sig, smu, w, we (HP, HP) [j, i]."""
    b = tl.program_id(0)
    j = tl.arange(0, HP)
    i = tl.arange(0, HP)
    off = j[:, None] * HP + i[None, :]
    SIG = tl.load(sig + off)
    SMU = tl.load(smu + off)
    W = tl.load(w + off)
    WE = tl.load(we + off)
    v = tl.load(v0 + b * HP + i)
    for t in range(steps):
        o = (b * steps + t) * HP + i
        ct = tl.load(c + o)
        base_num = tl.load(n + o)
        base_den = ct + tl.load(d + o)
        for _ in range(unfolds):
            S = 1.0 / (1.0 + tl.exp(SMU - SIG * v[:, None]))
            numerator = ct * v + base_num + tl.sum(S * WE, axis=0)
            v = numerator / (base_den + tl.sum(S * W, axis=0))
        tl.store(states + o, v)


@triton.jit
def _ltc_backward_kernel(v0, c, n, d, sig, smu, w, we, states, g_states, g_v0, g_c, g_n, g_d,
                         g_params, scratch, steps, unfolds, HP: tl.constexpr):
    """As the forward, plus g_states, g_c, g_n, g_d (B, L, HP); g_v0 (B, HP); g_params
    (B, 4, HP, HP): per row, the gradients of sigma, sigma mu, w, wE; scratch
    (B, 2 unfolds + 1, HP): the states v_0..v_K and denominators of one step."""
    b = tl.program_id(0)
    j = tl.arange(0, HP)
    i = tl.arange(0, HP)
    off = j[:, None] * HP + i[None, :]
    SIG = tl.load(sig + off)
    SMU = tl.load(smu + off)
    W = tl.load(w + off)
    WE = tl.load(we + off)
    acc_sig = tl.zeros((HP, HP), dtype=SIG.dtype)
    acc_smu = tl.zeros((HP, HP), dtype=SIG.dtype)
    acc_w = tl.zeros((HP, HP), dtype=SIG.dtype)
    acc_we = tl.zeros((HP, HP), dtype=SIG.dtype)
    g = tl.zeros((HP,), dtype=SIG.dtype)
    vs = scratch + b * (2 * unfolds + 1) * HP  # v_0 .. v_K
    dens = vs + (unfolds + 1) * HP  # D_0 .. D_{K-1}
    for step in range(steps):
        t = steps - 1 - step
        o = (b * steps + t) * HP + i
        g += tl.load(g_states + o)
        if t > 0:
            v = tl.load(states + o - HP)
        else:
            v = tl.load(v0 + b * HP + i)
        ct = tl.load(c + o)
        base_num = tl.load(n + o)
        base_den = ct + tl.load(d + o)
        # Recompute the unfolds of this step, keeping their states and denominators.
        tl.store(vs + i, v)
        for k in range(unfolds):
            S = 1.0 / (1.0 + tl.exp(SMU - SIG * v[:, None]))
            den = base_den + tl.sum(S * W, axis=0)
            v = (ct * v + base_num + tl.sum(S * WE, axis=0)) / den
            tl.store(vs + (k + 1) * HP + i, v)
            tl.store(dens + k * HP + i, den)
        tl.debug_barrier()  # the scratch rows are read below by other threads
        gc = tl.zeros((HP,), dtype=SIG.dtype)
        gn = tl.zeros((HP,), dtype=SIG.dtype)
        gd = tl.zeros((HP,), dtype=SIG.dtype)
        for kk in range(unfolds):
            k = unfolds - 1 - kk
            vk = tl.load(vs + k * HP + i)
            v_next = tl.load(vs + (k + 1) * HP + i)
            den = tl.load(dens + k * HP + i)
            g_num = g / den
            g_den = -g * v_next / den
            gc += g_num * vk + g_den
            gn += g_num
            gd += g_den
            S = 1.0 / (1.0 + tl.exp(SMU - SIG * vk[:, None]))
            acc_we += g_num[None, :] * S
            acc_w += g_den[None, :] * S
            P = (g_num[None, :] * WE + g_den[None, :] * W) * (S * (1.0 - S))
            acc_sig += P * vk[:, None]
            acc_smu -= P
            g = ct * g_num + tl.sum(P * SIG, axis=1)
        tl.debug_barrier()  # the next step overwrites the scratch rows
        tl.store(g_c + o, gc)
        tl.store(g_n + o, gn)
        tl.store(g_d + o, gd)
    tl.store(g_v0 + b * HP + i, g)
    out = g_params + b * 4 * HP * HP + off
    tl.store(out, acc_sig)
    tl.store(out + HP * HP, acc_smu)
    tl.store(out + 2 * HP * HP, acc_w)
    tl.store(out + 3 * HP * HP, acc_we)


def _pad(tensor: torch.Tensor, shape: tuple[int, ...], fill: float = 0.0) -> torch.Tensor:
    """``tensor`` in the leading corner of a fresh tensor of ``shape`` filled with ``fill``."""
    out = tensor.new_full(shape, fill)
    out[tuple(slice(0, s) for s in tensor.shape)] = tensor
    return out


_NO_DOUBLE_BACKWARD = (
    "the fused LTC solver has a hand-written backward pass and no second derivatives; "
    "use LTC(..., implementation='autograd') for create_graph=True")


class TritonLTC(torch.autograd.Function):
    """:class:`tsrnn.nn._ltc_kernels.FusedLTC` (same inputs, without the backend argument, and
    output) in Triton kernels: v0 (B, H); c, n, d (B, L, H); w, wE, sigma, sigma mu (H_j, H_i)
    (source, target); unfolds. All on one CUDA device (or the CPU under
    ``TRITON_INTERPRET=1``)."""

    @staticmethod
    def forward(ctx, v0, c, n, d, w, we, sigma, smu, unfolds):
        batch, steps, hidden = c.shape
        HP = _padded(hidden)
        v0_p = _pad(v0, (batch, HP))
        c_p = _pad(c, (batch, steps, HP), 1.0)
        n_p = _pad(n, (batch, steps, HP))
        d_p = _pad(d, (batch, steps, HP), 1.0)
        params = [_pad(x, (HP, HP)) for x in (sigma, smu, w, we)]
        states = c_p.new_empty(batch, steps, HP)
        _ltc_forward_kernel[(batch,)](v0_p, c_p, n_p, d_p, *params, states, steps, unfolds,
                                      HP=HP, num_warps=8)
        ctx.save_for_backward(v0_p, c_p, n_p, d_p, *params, states)
        ctx.unfolds, ctx.hidden = unfolds, hidden
        return states[..., :hidden].contiguous() if HP != hidden else states.clone()

    @staticmethod
    def backward(ctx, g_states):
        if torch.is_grad_enabled():
            raise RuntimeError(_NO_DOUBLE_BACKWARD)
        v0_p, c_p, n_p, d_p, sig, smu, w, we, states = ctx.saved_tensors
        unfolds, hidden = ctx.unfolds, ctx.hidden
        batch, steps, HP = c_p.shape
        g_states_p = _pad(g_states, (batch, steps, HP))
        g_v0 = v0_p.new_empty(batch, HP)
        g_c, g_n, g_d = (torch.empty_like(c_p) for _ in range(3))
        g_params = c_p.new_empty(batch, 4, HP, HP)
        scratch = c_p.new_empty(batch, 2 * unfolds + 1, HP)
        _ltc_backward_kernel[(batch,)](v0_p, c_p, n_p, d_p, sig, smu, w, we, states,
                                       g_states_p, g_v0, g_c, g_n, g_d, g_params, scratch,
                                       steps, unfolds, HP=HP, num_warps=16)
        g_sig, g_smu, g_w, g_we = g_params.sum(0)[:, :hidden, :hidden].unbind(0)
        h = slice(0, hidden)
        return (g_v0[:, h], g_c[..., h], g_n[..., h], g_d[..., h], g_w, g_we, g_sig, g_smu,
                None)
