"""Triton kernels of :mod:`tsrnn.ops.pwl_rollout`: whole PLRNN-family rollouts in one launch.

Imported only when Triton is installed (``pwl_rollout`` imports this module lazily). One
program per sequence of the batch holds the weights of the map (a few KiB) and the state in
registers and loops over the time steps, so a rollout of L steps is one kernel launch instead
of ~10 L small ones. The matrix-vector products are broadcast products reduced with
``tl.sum`` (the tiles are at most 16K elements; ``tl.dot`` would need 16-row tiles and has
no float64 path), which also makes the float64 kernels exact mirrors of the float32 ones.

Maps (``MODEL`` constexpr), with the packed parameters of :class:`tsrnn.ops.pwl_rollout.PackedMap`:

- 0, piecewise-linear (PLRNN, AL-RNN):  z' = A z + P1 phi(z) + b1,
  phi(z)_i = z_i on the linear units (``lin``), relu(z_i) elsewhere; J^T a = A a + d (P1^T a)
- 1, shallow: z' = A z + P1 [relu(P2 z + b2) - c relu(P2 z)] + b1 (c = 1 when clipped);
  J^T a = A a + P2^T (g' (P1^T a))

Register tiles: P1 of the PWL map as (BM, BM) [i, j] = P1[i, j]; of the shallow map as the
transpose (BH, BM) [k, i] = W1[i, k], beside P2 (BH, BM) [k, j] = W2[k, j], so that every
product reduces along a tile axis without reshaping.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _load_map(A_ptr, P1_ptr, P2_ptr, b1_ptr, b2_ptr, lin_ptr, M, H,
              MODEL: tl.constexpr, BM: tl.constexpr, BH: tl.constexpr):
    cols = tl.arange(0, BM)
    in_m = cols < M
    A = tl.load(A_ptr + cols, mask=in_m, other=0.0)
    b1 = tl.load(b1_ptr + cols, mask=in_m, other=0.0)
    if MODEL == 0:
        rows = tl.arange(0, BM)
        tile = rows[:, None] * M + cols[None, :]
        both = (rows[:, None] < M) & in_m[None, :]
        P1 = tl.load(P1_ptr + tile, mask=both, other=0.0)
        P2 = P1  # unused
        b2 = b1  # unused
        lin = tl.load(lin_ptr + cols, mask=in_m, other=0) != 0
    else:
        hidden = tl.arange(0, BH)
        both = (hidden[:, None] < H) & in_m[None, :]
        # P1 = W1 (M, H) read transposed: [k, i] = W1[i, k]
        P1 = tl.load(P1_ptr + cols[None, :] * H + hidden[:, None], mask=both, other=0.0)
        P2 = tl.load(P2_ptr + hidden[:, None] * M + cols[None, :], mask=both, other=0.0)
        b2 = tl.load(b2_ptr + hidden, mask=hidden < H, other=0.0)
        lin = in_m  # unused
    return A, P1, P2, b1, b2, lin


@triton.jit
def _map_step(z, A, P1, P2, b1, b2, lin, MODEL: tl.constexpr, CLIPPED: tl.constexpr):
    """F(z) for one state (BM,)."""
    if MODEL == 0:
        phi = tl.where(lin, z, tl.where(z > 0.0, z, 0.0))
        coupled = tl.sum(P1 * phi[None, :], axis=1)
    else:
        pre = tl.sum(P2 * z[None, :], axis=1)
        hidden = tl.where(pre + b2 > 0.0, pre + b2, 0.0)
        if CLIPPED:
            hidden = hidden - tl.where(pre > 0.0, pre, 0.0)
        coupled = tl.sum(P1 * hidden[:, None], axis=0)
    return A * z + coupled + b1


@triton.jit
def _map_vjp(a, z, A, P1, P2, b2, lin, MODEL: tl.constexpr, CLIPPED: tl.constexpr):
    """J(z)^T a for one state z and adjoint a (BM,)."""
    if MODEL == 0:
        d = tl.where(lin | (z > 0.0), 1.0, 0.0)
        back = tl.sum(P1 * a[:, None], axis=0)
        result = A * a + d * back
    else:
        pre = tl.sum(P2 * z[None, :], axis=1)
        slope = tl.where(pre + b2 > 0.0, 1.0, 0.0)
        if CLIPPED:
            slope = slope - tl.where(pre > 0.0, 1.0, 0.0)
        back = tl.sum(P1 * a[None, :], axis=1) * slope
        result = A * a + tl.sum(P2 * back[:, None], axis=0)
    return result


@triton.jit
def rollout_kernel(z1_ptr, signal_ptr, weight_ptr, mask_ptr, drive_ptr,
                   A_ptr, P1_ptr, P2_ptr, b1_ptr, b2_ptr, lin_ptr,
                   pred_ptr, fed_ptr, L, M, F, H,
                   MODEL: tl.constexpr, CLIPPED: tl.constexpr, FORCED: tl.constexpr,
                   HAS_MASK: tl.constexpr, HAS_DRIVE: tl.constexpr,
                   BM: tl.constexpr, BH: tl.constexpr):
    """Forced rollout (FORCED) or free run of one sequence (program id = batch row).

    pred[b, k] = F(fed[b, k]) (+ drive[b, k]); fed[b, 0] = z1[b];
    fed[b, k+1] = (1 - w_k m) pred[b, k] + w_k m signal[b, k] on the first F latents
    (torch.lerp's formula; w_k = 1 replaces exactly, w_k = 0 leaves the state untouched).
    """
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BM)
    in_m = cols < M
    A, P1, P2, b1, b2, lin = _load_map(A_ptr, P1_ptr, P2_ptr, b1_ptr, b2_ptr, lin_ptr,
                                       M, H, MODEL, BM, BH)
    z = tl.load(z1_ptr + row * M + cols, mask=in_m, other=0.0)
    state_base = row * L * M
    forced_cols = cols < F
    signal_base = row * L * F
    nonempty = cols * 0 < L  # vector masks: scalar ones are not accepted everywhere
    # Loads for step k are issued one iteration ahead: their latency overlaps the step before.
    if FORCED:
        signal = tl.load(signal_ptr + signal_base + cols, mask=forced_cols & nonempty,
                         other=0.0)
        weight = tl.load(weight_ptr + cols * 0, mask=nonempty, other=0.0)
        if HAS_MASK:
            observed = tl.load(mask_ptr + signal_base + cols, mask=forced_cols & nonempty,
                               other=0) != 0
    if HAS_DRIVE:
        drive = tl.load(drive_ptr + state_base + cols, mask=in_m & nonempty, other=0.0)
    for k in range(L):
        ahead = cols * 0 + (k + 1) < L
        if FORCED:
            tl.store(fed_ptr + state_base + k * M + cols, z, mask=in_m)
        z_new = _map_step(z, A, P1, P2, b1, b2, lin, MODEL, CLIPPED)
        if HAS_DRIVE:
            z_new = z_new + drive
            drive = tl.load(drive_ptr + state_base + (k + 1) * M + cols, mask=in_m & ahead,
                            other=0.0)
        tl.store(pred_ptr + state_base + k * M + cols, z_new, mask=in_m)
        if FORCED:
            difference = signal - z_new
            mixed = tl.where(weight < 0.5, z_new + weight * difference,
                             signal - difference * (1.0 - weight))
            mixed = tl.where(weight == 1.0, signal, mixed)
            apply = forced_cols & (weight != 0.0)
            if HAS_MASK:
                apply = apply & observed
                observed = tl.load(mask_ptr + signal_base + (k + 1) * F + cols,
                                   mask=forced_cols & ahead, other=0) != 0
            z_new = tl.where(apply, mixed, z_new)
            signal = tl.load(signal_ptr + signal_base + (k + 1) * F + cols,
                             mask=forced_cols & ahead, other=0.0)
            weight = tl.load(weight_ptr + (k + 1) + cols * 0, mask=ahead, other=0.0)
        z = z_new


@triton.jit
def adjoint_kernel(grad_ptr, fed_ptr, weight_ptr, mask_ptr,
                   A_ptr, P1_ptr, P2_ptr, b1_ptr, b2_ptr, lin_ptr,
                   adjoint_ptr, grad_z1_ptr, L, M, F, H,
                   MODEL: tl.constexpr, CLIPPED: tl.constexpr, HAS_MASK: tl.constexpr,
                   BM: tl.constexpr, BH: tl.constexpr):
    """The adjoint recursion of one sequence, backwards in time:

    a_k = grad[b, k] + keep_k c_{k+1},  c_k = J(fed[b, k])^T a_k,  grad_z1[b] = c_0,
    keep_k = 1 - w_k m on the first F latents (1 elsewhere); adjoint[b, k] = a_k.
    """
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BM)
    in_m = cols < M
    A, P1, P2, _b1, b2, lin = _load_map(A_ptr, P1_ptr, P2_ptr, b1_ptr, b2_ptr, lin_ptr,
                                        M, H, MODEL, BM, BH)
    state_base = row * L * M
    signal_base = row * L * F
    forced_cols = cols < F
    carry = tl.zeros([BM], dtype=A.dtype)
    last = L - 1
    has = cols * 0 < L
    grad = tl.load(grad_ptr + state_base + last * M + cols, mask=in_m & has, other=0.0)
    z = tl.load(fed_ptr + state_base + last * M + cols, mask=in_m & has, other=0.0)
    weight = tl.load(weight_ptr + last + cols * 0, mask=has, other=0.0)
    if HAS_MASK:
        observed = tl.load(mask_ptr + signal_base + last * F + cols, mask=forced_cols & has,
                           other=0) != 0
    for j in range(L):
        k = last - j
        behind = cols * 0 + k > 0
        keep_forced = forced_cols
        if HAS_MASK:
            keep_forced = keep_forced & observed
            observed = tl.load(mask_ptr + signal_base + (k - 1) * F + cols,
                               mask=forced_cols & behind, other=0) != 0
        keep = tl.where(keep_forced, 1.0 - weight, 1.0)
        a = grad + keep * carry
        tl.store(adjoint_ptr + state_base + k * M + cols, a, mask=in_m)
        carry = _map_vjp(a, z, A, P1, P2, b2, lin, MODEL, CLIPPED)
        grad = tl.load(grad_ptr + state_base + (k - 1) * M + cols, mask=in_m & behind,
                       other=0.0)
        z = tl.load(fed_ptr + state_base + (k - 1) * M + cols, mask=in_m & behind, other=0.0)
        weight = tl.load(weight_ptr + (k - 1) + cols * 0, mask=behind, other=0.0)
    tl.store(grad_z1_ptr + row * M + cols, carry, mask=in_m)


def launch_rollout(packed, z1, signals, weights, mask, drive, predictions, fed, forced):
    batch, length, dim = predictions.shape
    n_forced = signals.shape[-1] if forced else 0
    dummy = predictions
    rollout_kernel[(batch,)](
        z1, signals if forced else dummy, weights if forced else dummy,
        mask if mask is not None else dummy, drive if drive is not None else dummy,
        packed.A, packed.P1, packed.P2, packed.b1, packed.b2, packed.lin,
        predictions, fed if fed is not None else dummy, length, dim, n_forced, packed.n_hidden,
        MODEL=packed.model, CLIPPED=packed.clipped, FORCED=forced,
        HAS_MASK=mask is not None, HAS_DRIVE=drive is not None,
        BM=packed.block_latent, BH=packed.block_hidden, num_warps=packed.num_warps)


def launch_adjoint(packed, grad, fed, weights, mask, n_forced, adjoints, grad_z1):
    batch, length, dim = fed.shape
    adjoint_kernel[(batch,)](
        grad, fed, weights, mask if mask is not None else fed,
        packed.A, packed.P1, packed.P2, packed.b1, packed.b2, packed.lin,
        adjoints, grad_z1, length, dim, n_forced, packed.n_hidden,
        MODEL=packed.model, CLIPPED=packed.clipped, HAS_MASK=mask is not None,
        BM=packed.block_latent, BH=packed.block_hidden, num_warps=packed.num_warps)
