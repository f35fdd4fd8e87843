"""Fused Triton kernels for the CfC fast path on CUDA (imported only when triton is present).

The same computation as :class:`tsrnn.nn._cfc_kernels.CfCSequence` (whose module docstring
derives it), with the per-step work of the sequential loops moved into two persistent
kernels. Each program owns a block of ``BLOCK_B`` batch rows, keeps their hidden state on
chip and loops over the L steps; the weights are re-read from the L1/L2 caches at every step
(they do not fit in the registers of one program). The products read their left operand
(h, T, dz, dp, just written by the program) back from memory in chunks of 32 along the
reduced dimension, with a barrier between write and read: a float32 FMA ``tl.dot`` keeps
whole operand rows per thread, which for 128 backbone units spilled registers (ptxas, sm_90);
barriers between the heads likewise stop the weight loads of all heads from being issued at
once. Launches use ``num_stages=1``: software pipelining of the in-loop weight loads asked
for more shared memory than a Hopper SM has.

Forward, per step (backbone of one layer; alpha, beta folded into the weights by the caller):

    p_t = d_t + h_{t-1} W_h'^T,  T_t = tanh(p_t),  z_t = b_z + T_t W_z'^T,
    h_t = combine(z_t, dt_t)

(no backbone: z_t = d_t + h_{t-1} W_h^T). The input products d_t for all steps are one cuBLAS
matrix product before the kernel. The kernel stores h_t, z_t and T_t: what the backward
needs.

Backward, per step in reverse, with g the gradient at h_t:

    dz = combine'(z_t, dt_t)^T g,  dp = (1 - T_t^2) (dz W_z'),  g_{t-1} = dp W_h'

(no backbone: g_{t-1} = dz W_h). The kernel stores dz, dp and dL/ddt per step, and sums the
pure mode's dL/dw_tau, dL/dA per program; the weight gradients (sums over all B L rows)
are left to cuBLAS after the loop, as in :mod:`tsrnn.nn._cfc_kernels`.

The matrix products use ``tl.dot`` in full float32 (``input_precision="ieee"``, not tf32),
so the result equals the torch path to float32 round-off; float64 is supported as well.
Sizes are padded to powers of two (at least 16, the least ``tl.dot`` takes) with zeros,
which keep the padded state entries at zero.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MODE_CODES = {"default": 0, "no_gate": 1, "pure": 2}
BLOCK_B = 16
NUM_WARPS = 8
# The padded sizes above which the kernels are not used (the weights are re-read per step;
# beyond this the register tiles of one program spill).
MAX_PADDED = 256


def _padded(size: int) -> int:
    return max(16, triton.next_power_of_2(size))


def supports(hidden: int, features: int, dtype: torch.dtype, batch: int = 0,
             steps: int = 0) -> bool:
    """Whether the kernels cover H hidden units and ``features`` backbone units (or, without a
    backbone, H) in this dtype, for ``batch`` sequences of ``steps`` steps. The kernels
    index with int32 into buffers (L + 1, BP, ...) whose batch is padded to a multiple of
    BLOCK_B (one sequence takes the room of 16: bounding B L instead let a 2.2-million-step
    sequence through, into an illegal memory access)."""
    padded = max(4 * _padded(hidden), _padded(features))
    padded_batch = max(1, -(-batch // BLOCK_B)) * BLOCK_B
    return (dtype in (torch.float32, torch.float64) and _padded(hidden) <= 128
            and _padded(features) <= MAX_PADDED
            and (steps + 1) * padded_batch * padded < 2**31)


@triton.jit
def _tanh(x):
    # tanh from one exp, on |x| (no overflow): sign(x) (1 - e^{-2|x|}) / (1 + e^{-2|x|}).
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _dot_from_memory(acc, a, a_stride, rows, b, b_stride, K: tl.constexpr, N: tl.constexpr,
                     KC: tl.constexpr):
    """acc (BLOCK_B, N) + A[rows, :K] @ B[:K, :N], A and B read from memory in chunks of KC
    along K: an FMA dot holds whole K-long operand fragments per thread, which for K = 128
    spills registers; chunks of 32 keep them small."""
    kc = tl.arange(0, KC)
    n = tl.arange(0, N)
    for k0 in tl.static_range(0, K, KC):
        a_chunk = tl.load(a + rows[:, None] * a_stride + k0 + kc[None, :])
        b_chunk = tl.load(b + (k0 + kc)[:, None] * b_stride + n[None, :])
        acc += tl.dot(a_chunk, b_chunk, input_precision="ieee")
    return acc


@triton.jit
def _cfc_forward_kernel(drive, dt, wh_t, wz_t, bz, w_tau, amp, states, z_out, t_out,
                        steps, batch_stride,
                        BLOCK_B: tl.constexpr, HP: tl.constexpr, UP: tl.constexpr,
                        MODE: tl.constexpr, BACKBONE: tl.constexpr, KC: tl.constexpr):
    """drive (L, BP, UP) or (L, BP, NH, HP); wh_t (HP, UP) or (NH, HP, HP) [k, j, i];
    wz_t (NH, UP, HP) [k, u, i]; bz (NH, HP); states (L + 1, BP, HP) with h0 in states[0];
    z_out (L, BP, NH, HP); t_out (L, BP, UP).

    The state and T go through memory (L1) between the elementwise part and the products,
    which read them in chunks (see _dot_from_memory); a barrier orders each write before the
    reads of the other threads of the program."""
    NH: tl.constexpr = 1 if MODE == 2 else 4
    pid = tl.program_id(0)
    rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    hcol = tl.arange(0, HP)
    ucol = tl.arange(0, UP)
    zero_h = tl.zeros((BLOCK_B, HP), dtype=states.dtype.element_ty)
    if MODE == 2:
        tau = tl.load(w_tau + hcol)[None, :]
        A = tl.load(amp + hcol)[None, :]
    for t in range(steps):
        base = t * batch_stride + rows
        h_prev = states + t * batch_stride * HP
        dtt = tl.load(dt + base)[:, None]
        zo = (base[:, None] * NH) * HP + hcol[None, :]
        if BACKBONE:
            uo = base[:, None] * UP + ucol[None, :]
            p = _dot_from_memory(tl.load(drive + uo), h_prev, HP, rows, wh_t, UP, HP, UP, KC)
            tl.store(t_out + uo, _tanh(p))
            tl.debug_barrier()
            t_rows = t_out + t * batch_stride * UP
            z0 = _dot_from_memory(zero_h + tl.load(bz + hcol)[None, :], t_rows, UP, rows,
                                  wz_t, HP, UP, HP, KC)
            if MODE != 2:
                # Barriers between the heads keep the compiler from issuing all weight loads
                # up front (their registers would spill).
                tl.debug_barrier()
                z1 = _dot_from_memory(zero_h + tl.load(bz + HP + hcol)[None, :], t_rows, UP,
                                      rows, wz_t + UP * HP, HP, UP, HP, KC)
                tl.debug_barrier()
                z2 = _dot_from_memory(zero_h + tl.load(bz + 2 * HP + hcol)[None, :], t_rows,
                                      UP, rows, wz_t + 2 * UP * HP, HP, UP, HP, KC)
                tl.debug_barrier()
                z3 = _dot_from_memory(zero_h + tl.load(bz + 3 * HP + hcol)[None, :], t_rows,
                                      UP, rows, wz_t + 3 * UP * HP, HP, UP, HP, KC)
        else:
            z0 = _dot_from_memory(tl.load(drive + zo), h_prev, HP, rows, wh_t, HP, HP, HP, KC)
            if MODE != 2:
                z1 = _dot_from_memory(tl.load(drive + zo + HP), h_prev, HP, rows,
                                      wh_t + HP * HP, HP, HP, HP, KC)
                z2 = _dot_from_memory(tl.load(drive + zo + 2 * HP), h_prev, HP, rows,
                                      wh_t + 2 * HP * HP, HP, HP, HP, KC)
                z3 = _dot_from_memory(tl.load(drive + zo + 3 * HP), h_prev, HP, rows,
                                      wh_t + 3 * HP * HP, HP, HP, HP, KC)
        tl.store(z_out + zo, z0)
        if MODE == 2:
            h = A - A * tl.exp(-dtt * (tau + tl.abs(z0))) * z0
        else:
            tl.store(z_out + zo + HP, z1)
            tl.store(z_out + zo + 2 * HP, z2)
            tl.store(z_out + zo + 3 * HP, z3)
            ff1 = _tanh(z0)
            ff2 = _tanh(z1)
            gate = _sigmoid(z2 * dtt + z3)
            if MODE == 0:
                h = ff1 + gate * (ff2 - ff1)
            else:
                h = ff1 + gate * ff2
        tl.store(states + (base[:, None] + batch_stride) * HP + hcol[None, :], h)
        tl.debug_barrier()


@triton.jit
def _cfc_backward_kernel(g_states, z_all, t_all, dt, wh, wz, w_tau, amp, g_z_out, g_p_out,
                         g_dt_out, g_h0, g_tau_out, g_amp_out, steps, batch_stride,
                         BLOCK_B: tl.constexpr, HP: tl.constexpr, UP: tl.constexpr,
                         MODE: tl.constexpr, BACKBONE: tl.constexpr, KC: tl.constexpr):
    """wh (UP, HP) [u, j] or (NH, HP, HP) [k, i, j]; wz (NH, HP, UP) [k, i, u]; g_states,
    g_h0 (.., BP, HP); g_z_out like z_all; g_p_out like t_all; g_dt_out (L, BP);
    g_tau_out, g_amp_out (programs, HP). dz and dp go through memory to the products, as in
    the forward."""
    NH: tl.constexpr = 1 if MODE == 2 else 4
    pid = tl.program_id(0)
    rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    hcol = tl.arange(0, HP)
    ucol = tl.arange(0, UP)
    g = tl.zeros((BLOCK_B, HP), dtype=g_states.dtype.element_ty)
    zero_h = tl.zeros((BLOCK_B, HP), dtype=g_states.dtype.element_ty)
    zero_u = tl.zeros((BLOCK_B, UP), dtype=g_states.dtype.element_ty)
    if MODE == 2:
        tau = tl.load(w_tau + hcol)[None, :]
        A = tl.load(amp + hcol)[None, :]
        acc_tau = tl.zeros((BLOCK_B, HP), dtype=g_states.dtype.element_ty)
        acc_amp = tl.zeros((BLOCK_B, HP), dtype=g_states.dtype.element_ty)
    for step in range(steps):
        t = steps - 1 - step
        base = t * batch_stride + rows
        g += tl.load(g_states + base[:, None] * HP + hcol[None, :])
        dtt = tl.load(dt + base)[:, None]
        zo = (base[:, None] * NH) * HP + hcol[None, :]
        z0 = tl.load(z_all + zo)
        if MODE == 2:
            rate = tau + tl.abs(z0)
            decay = tl.exp(-dtt * rate)
            g_rate = g * A * z0 * dtt * decay
            g_z0 = -g * A * decay + tl.where(z0 > 0, g_rate, tl.where(z0 < 0, -g_rate, 0.0))
            g_dt = tl.sum(g * A * z0 * rate * decay, axis=1)
            acc_tau += g_rate
            acc_amp += g * (1.0 - decay * z0)
        else:
            z1 = tl.load(z_all + zo + HP)
            z2 = tl.load(z_all + zo + 2 * HP)
            z3 = tl.load(z_all + zo + 3 * HP)
            ff1 = _tanh(z0)
            ff2 = _tanh(z1)
            gate = _sigmoid(z2 * dtt + z3)
            if MODE == 0:
                g_ff1 = g * (1.0 - gate)
                g_gate = g * (ff2 - ff1)
            else:
                g_ff1 = g
                g_gate = g * ff2
            g_z3 = g_gate * gate * (1.0 - gate)
            g_dt = tl.sum(g_z3 * z2, axis=1)
            tl.store(g_z_out + zo + HP, g * gate * (1.0 - ff2 * ff2))
            tl.store(g_z_out + zo + 2 * HP, g_z3 * dtt)
            tl.store(g_z_out + zo + 3 * HP, g_z3)
            g_z0 = g_ff1 * (1.0 - ff1 * ff1)
        tl.store(g_z_out + zo, g_z0)
        tl.store(g_dt_out + base, g_dt)
        tl.debug_barrier()
        gz_rows = g_z_out + t * batch_stride * NH * HP
        if BACKBONE:
            g_T = _dot_from_memory(zero_u, gz_rows, NH * HP, rows, wz, UP, HP, UP, KC)
            if MODE != 2:
                g_T = _dot_from_memory(g_T, gz_rows + HP, NH * HP, rows, wz + HP * UP, UP,
                                       HP, UP, KC)
                g_T = _dot_from_memory(g_T, gz_rows + 2 * HP, NH * HP, rows,
                                       wz + 2 * HP * UP, UP, HP, UP, KC)
                g_T = _dot_from_memory(g_T, gz_rows + 3 * HP, NH * HP, rows,
                                       wz + 3 * HP * UP, UP, HP, UP, KC)
            uo = base[:, None] * UP + ucol[None, :]
            T = tl.load(t_all + uo)
            tl.store(g_p_out + uo, g_T * (1.0 - T * T))
            tl.debug_barrier()
            g = _dot_from_memory(zero_h, g_p_out + t * batch_stride * UP, UP, rows, wh, HP,
                                 UP, HP, KC)
        else:
            g = _dot_from_memory(zero_h, gz_rows, NH * HP, rows, wh, HP, HP, HP, KC)
            if MODE != 2:
                g = _dot_from_memory(g, gz_rows + HP, NH * HP, rows, wh + HP * HP, HP, HP,
                                     HP, KC)
                g = _dot_from_memory(g, gz_rows + 2 * HP, NH * HP, rows, wh + 2 * HP * HP,
                                     HP, HP, HP, KC)
                g = _dot_from_memory(g, gz_rows + 3 * HP, NH * HP, rows, wh + 3 * HP * HP,
                                     HP, HP, HP, KC)
        # The next step overwrites nothing these products read, but its stores of dz must
        # not overtake this step's reads by slower threads: a barrier keeps them in order.
        tl.debug_barrier()
    tl.store(g_h0 + rows[:, None] * HP + hcol[None, :], g)
    if MODE == 2:
        tl.store(g_tau_out + pid * HP + hcol, tl.sum(acc_tau, axis=0))
        tl.store(g_amp_out + pid * HP + hcol, tl.sum(acc_amp, axis=0))


def _pad(tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A fresh zero tensor of ``shape`` with ``tensor`` in its leading corner."""
    out = tensor.new_zeros(shape)
    out[tuple(slice(0, s) for s in tensor.shape)] = tensor
    return out


def _heads(weight: torch.Tensor, heads: int, hidden: int) -> torch.Tensor:
    """(heads * H, X) -> (heads, H, X)."""
    return weight.reshape(heads, hidden, weight.shape[-1])


_NO_DOUBLE_BACKWARD = (
    "the CfC fast path has a hand-written backward pass and no second derivatives; "
    "use CfC(..., fast_path=False) for create_graph=True")


class TritonCfCSequence(torch.autograd.Function):
    """:class:`tsrnn.nn._cfc_kernels.CfCSequence` (same inputs and output) in Triton
    kernels; all tensors on one CUDA device (or the CPU under ``TRITON_INTERPRET=1``)."""

    @staticmethod
    def forward(ctx, drive, h0, dt, w_h, w_z, b_z, w_tau, A, mode, alpha, beta):
        hidden = h0.shape[-1]
        backbone = w_z is not None
        heads = 1 if mode == "pure" else 4
        batch, steps = drive.shape[:2]
        HP = _padded(hidden)
        UP = _padded(w_h.shape[0]) if backbone else HP
        BP = triton.cdiv(batch, BLOCK_B) * BLOCK_B
        # Time-major, padded copies (fresh memory: the kernels never touch the caller's).
        if backbone:
            drive_p = _pad(beta * drive.transpose(0, 1), (steps, BP, UP))
            wh_s, wz_s = beta * w_h, alpha * w_z  # (U, H), (heads * H, U)
            wh_t = _pad(wh_s.T, (HP, UP))
            wz_t = _pad(_heads(wz_s, heads, hidden).transpose(1, 2), (heads, UP, HP))
            bz = _pad(b_z.reshape(heads, hidden), (heads, HP))
        else:
            drive_p = _pad(drive.transpose(0, 1).reshape(steps, batch, heads, hidden),
                           (steps, BP, heads, HP))
            wh_s = w_h  # (heads * H, H)
            wh_t = _pad(_heads(w_h, heads, hidden).transpose(1, 2), (heads, HP, HP))
            wz_s = wz_t = bz = drive_p.new_zeros(1)
        dt_p = _pad(dt[..., 0].T, (steps, BP))
        dt_p[:, batch:] = 1.0
        tau_p = _pad(w_tau, (HP,)) if mode == "pure" else drive_p.new_zeros(1)
        amp_p = _pad(A, (HP,)) if mode == "pure" else drive_p.new_zeros(1)
        states = drive_p.new_zeros(steps + 1, BP, HP)  # h0, then h_1 .. h_L
        states[0, :batch, :hidden] = h0
        z_all = drive_p.new_empty(steps, BP, heads, HP)
        t_all = drive_p.new_empty(steps, BP, UP) if backbone else drive_p.new_zeros(1)
        grid = (BP // BLOCK_B,)
        _cfc_forward_kernel[grid](drive_p, dt_p, wh_t, wz_t, bz, tau_p, amp_p, states, z_all,
                                  t_all, steps, BP, BLOCK_B=BLOCK_B, HP=HP, UP=UP,
                                  MODE=MODE_CODES[mode], BACKBONE=backbone, KC=min(32, HP, UP),
                                  num_warps=NUM_WARPS, num_stages=1)
        ctx.save_for_backward(dt_p, wh_s, wz_s, tau_p, amp_p, states, z_all, t_all)
        ctx.mode, ctx.alpha, ctx.beta = mode, alpha, beta
        ctx.sizes = (batch, hidden, HP, UP, backbone, w_h.shape[0] if backbone else hidden)
        return states[1:, :batch, :hidden].transpose(0, 1).contiguous()

    @staticmethod
    def backward(ctx, g_states):
        if torch.is_grad_enabled():
            raise RuntimeError(_NO_DOUBLE_BACKWARD)
        dt_p, wh_s, wz_s, tau_p, amp_p, states, z_all, t_all = ctx.saved_tensors
        mode, alpha, beta = ctx.mode, ctx.alpha, ctx.beta
        batch, hidden, HP, UP, backbone, units = ctx.sizes
        heads = 1 if mode == "pure" else 4
        steps, BP = z_all.shape[:2]
        g_states_p = _pad(g_states.transpose(0, 1), (steps, BP, HP))
        if backbone:
            wh_b = _pad(wh_s, (UP, HP))
            wz_b = _pad(_heads(wz_s, heads, hidden), (heads, HP, UP))
        else:
            wh_b = _pad(_heads(wh_s, heads, hidden), (heads, HP, HP))
            wz_b = wh_b.new_zeros(1)
        programs = BP // BLOCK_B
        g_z_all = torch.empty_like(z_all)
        g_p_all = torch.empty_like(t_all) if backbone else t_all.new_zeros(1)
        g_dt = dt_p.new_empty(steps, BP)
        g_h0 = states.new_empty(BP, HP)
        g_tau = states.new_empty(programs, HP)
        g_amp = states.new_empty(programs, HP)
        _cfc_backward_kernel[(programs,)](
            g_states_p, z_all, t_all, dt_p, wh_b, wz_b, tau_p, amp_p, g_z_all, g_p_all, g_dt,
            g_h0, g_tau, g_amp, steps, BP, BLOCK_B=BLOCK_B, HP=HP, UP=UP,
            MODE=MODE_CODES[mode], BACKBONE=backbone, KC=min(32, HP, UP), num_warps=NUM_WARPS,
            num_stages=1)
        # The parameter gradients: sums over all B * L rows, as matrix products (cuBLAS).
        g_z = g_z_all[:, :batch, :, :hidden].reshape(steps * batch, heads * hidden)
        previous = states[:-1, :batch, :hidden].reshape(steps * batch, hidden)
        if backbone:
            g_p = g_p_all[:, :batch, :units]
            rows_t = t_all[:, :batch, :units].reshape(steps * batch, units)
            g_w_z = alpha * (g_z.T @ rows_t)
            g_b_z = g_z.sum(0)
            g_w_h = beta * (g_p.reshape(steps * batch, units).T @ previous)
            g_drive = (beta * g_p).transpose(0, 1)
        else:
            g_w_z = g_b_z = None
            g_w_h = g_z.T @ previous
            g_drive = g_z.reshape(steps, batch, heads * hidden).transpose(0, 1)
        if mode == "pure":
            g_w_tau = g_tau.sum(0)[:hidden]
            g_A = g_amp.sum(0)[:hidden]
        else:
            g_w_tau = g_A = None
        g_dt_out = g_dt[:, :batch].T[..., None] if ctx.needs_input_grad[2] else None
        return (g_drive, g_h0[:batch, :hidden], g_dt_out, g_w_h, g_w_z, g_b_z, g_w_tau, g_A,
                None, None, None)
