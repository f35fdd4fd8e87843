"""Triton kernels for :func:`tsrnn.ops.linear_scan` on CUDA (imported only when used).

Layout (B, L, D), channels contiguous. One program owns one batch element and a block of
``BLOCK_D`` channels and walks the sequence in tiles of ``BLOCK_T`` steps: it loads a
(BLOCK_T, BLOCK_D) tile of a and b (coalesced along D), combines it with an associative scan
over the tile's time axis,

    (a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2),     h = A * h_carry + B,

stores h and carries the tile's last state into the next tile. Every element is read and
written once, so the kernel runs at memory bandwidth; arithmetic is in float32 (float64
inputs: float64), whatever the storage dtype.

The backward kernel runs the same scan the other way over dL/dh with the coefficient of the
neighbouring step, g_t = dL/dh_t + conj(a_{t+1}) g_{t+1}, and writes dL/db_t = g_t and
dL/da_t = g_t conj(h_{t-1}) in the same pass (reads a, h, dL/dh; writes da, db).

Complex tensors travel as interleaved (real, imaginary) float pairs (``torch.view_as_real``)
and are split into two real tiles in registers.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Tiles (BLOCK_T steps x BLOCK_D channels, warps) per kernel and kind of data. Each thread
# holds a few neighbouring channels (up to one 16-byte load per row) for all BLOCK_T steps,
# so the scan over time stays in registers. The sizes compile without register spills for
# sm_90 (ptxas -v) and are the fastest of benchmarks/bench_linear_scan.py --sweep on an H200
# (8 x 1536 x 65536, 2026-11-29: float32 forward 2.33 ms = 4.14 TB/s, backward 3.93 ms;
# bfloat16 1.16 / 1.94 ms; complex64 (D/2 channels) 3.20 / 4.63 ms). "half" is bfloat16 and
# float16 (8 channels, one 16-byte load, per thread); "wide" is float64 and complex data,
# twice the registers per element.
CONFIGS = {
    ("forward", "real"): (16, 512, 4),
    ("backward", "real"): (16, 512, 4),
    ("forward", "half"): (8, 1024, 4),
    ("backward", "half"): (8, 1024, 4),
    ("forward", "wide"): (4, 1024, 8),
    ("backward", "wide"): (4, 256, 2),
}
_INT32_MAX = 2**31 - 1


@triton.jit
def _combine_real(a1, b1, a2, b2):
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _combine_complex(ar1, ai1, br1, bi1, ar2, ai2, br2, bi2):
    # (a1 a2, a2 b1 + b2) in complex arithmetic
    return (ar1 * ar2 - ai1 * ai2, ar1 * ai2 + ai1 * ar2,
            ar2 * br1 - ai2 * bi1 + br2, ar2 * bi1 + ai2 * br1 + bi2)


@triton.jit
def _last_row(x, rows, BLOCK_T: tl.constexpr):
    return tl.sum(tl.where(rows[:, None] == BLOCK_T - 1, x, 0.0), axis=0)


@triton.jit
def _load_pair(pointer, offsets, mask, other_real, IS_COMPLEX: tl.constexpr,
               ACC: tl.constexpr):
    """Load real (and imaginary) parts of a tile as the accumulation dtype."""
    if IS_COMPLEX:
        parts = tl.arange(0, 2)
        pair = tl.load(pointer + offsets[:, :, None] * 2 + parts[None, None, :],
                       mask=mask[:, :, None],
                       other=tl.where(parts[None, None, :] == 0, other_real, 0.0))
        real, imag = tl.split(pair.to(ACC))
    else:
        real = tl.load(pointer + offsets, mask=mask, other=other_real).to(ACC)
        imag = real  # unused
    return real, imag


@triton.jit
def _store_pair(pointer, offsets, mask, real, imag, IS_COMPLEX: tl.constexpr):
    if IS_COMPLEX:
        parts = tl.arange(0, 2)
        tl.store(pointer + offsets[:, :, None] * 2 + parts[None, None, :],
                 tl.join(real, imag).to(pointer.dtype.element_ty), mask=mask[:, :, None])
    else:
        tl.store(pointer + offsets, real.to(pointer.dtype.element_ty), mask=mask)


@triton.jit
def _scan_forward_kernel(a_ptr, b_ptr, h0_ptr, out_ptr, L, D,
                         HAS_H0: tl.constexpr, REVERSE: tl.constexpr,
                         IS_COMPLEX: tl.constexpr, ACC: tl.constexpr,
                         BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    # The batch on grid axis 0 (up to 2^31 - 1 programs; axis 1 stops at 65,535 sequences)
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    width = 2 if IS_COMPLEX else 1
    a_ptr += pid_b * L * D * width
    b_ptr += pid_b * L * D * width
    out_ptr += pid_b * L * D * width
    channels = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    channel_mask = channels < D
    rows = tl.arange(0, BLOCK_T)

    if HAS_H0:
        h_real, h_imag = _load_pair(h0_ptr + pid_b * D * width, channels[None, :],
                                    channel_mask[None, :], 0.0, IS_COMPLEX, ACC)
        h_real = tl.sum(h_real, axis=0)
        h_imag = tl.sum(h_imag, axis=0)
    else:
        h_real = tl.zeros((BLOCK_D,), ACC)
        h_imag = tl.zeros((BLOCK_D,), ACC)

    for start in range(0, L, BLOCK_T):
        step = start + rows  # position in processing order
        times = (L - 1 - step) if REVERSE else step
        mask = (step < L)[:, None] & channel_mask[None, :]
        offsets = times[:, None] * D + channels[None, :]
        # padding rows are the identity (a = 1, b = 0): the last row carries the state
        a_real, a_imag = _load_pair(a_ptr, offsets, mask, 1.0, IS_COMPLEX, ACC)
        b_real, b_imag = _load_pair(b_ptr, offsets, mask, 0.0, IS_COMPLEX, ACC)
        if not HAS_H0:
            # From a zero start the first step is h = b: its a multiplies nothing and is not
            # read (as on the CPU), so a NaN or inf there cannot spread through the scan.
            a_real = tl.where(step[:, None] == 0, 0.0, a_real)
            if IS_COMPLEX:
                a_imag = tl.where(step[:, None] == 0, 0.0, a_imag)
        if IS_COMPLEX:
            A_real, A_imag, B_real, B_imag = tl.associative_scan(
                (a_real, a_imag, b_real, b_imag), 0, _combine_complex)
            out_real = A_real * h_real[None, :] - A_imag * h_imag[None, :] + B_real
            out_imag = A_real * h_imag[None, :] + A_imag * h_real[None, :] + B_imag
            h_imag = _last_row(out_imag, rows, BLOCK_T)
        else:
            A_real, B_real = tl.associative_scan((a_real, b_real), 0, _combine_real)
            out_real = A_real * h_real[None, :] + B_real
            out_imag = out_real
        h_real = _last_row(out_real, rows, BLOCK_T)
        _store_pair(out_ptr, offsets, mask, out_real, out_imag, IS_COMPLEX)


@triton.jit
def _scan_backward_kernel(a_ptr, h_ptr, h0_ptr, grad_ptr, da_ptr, db_ptr, dh0_ptr, L, D,
                          HAS_H0: tl.constexpr, NEED_DH0: tl.constexpr,
                          REVERSE: tl.constexpr, IS_COMPLEX: tl.constexpr, ACC: tl.constexpr,
                          BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    width = 2 if IS_COMPLEX else 1
    shift = pid_b * L * D * width
    a_ptr += shift
    h_ptr += shift
    grad_ptr += shift
    da_ptr += shift
    db_ptr += shift
    channels = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    channel_mask = channels < D
    rows = tl.arange(0, BLOCK_T)
    g_real = tl.zeros((BLOCK_D,), ACC)
    g_imag = tl.zeros((BLOCK_D,), ACC)
    if HAS_H0:
        h0_real, h0_imag = _load_pair(h0_ptr + pid_b * D * width, channels[None, :],
                                      channel_mask[None, :], 0.0, IS_COMPLEX, ACC)

    # The forward scan ran forward (REVERSE False): the backward runs from t = L-1 down,
    # the coefficient of g_t is a_{t+1} and the previous state of step t is h_{t-1}.
    for start in range(0, L, BLOCK_T):
        step = start + rows
        times = step if REVERSE else (L - 1 - step)
        following = (times - 1) if REVERSE else (times + 1)
        preceding = (times + 1) if REVERSE else (times - 1)
        valid = step < L
        mask = valid[:, None] & channel_mask[None, :]
        has_following = valid & (following >= 0) & (following < L)
        has_preceding = valid & (preceding >= 0) & (preceding < L)
        offsets = times[:, None] * D + channels[None, :]
        c_real, c_imag = _load_pair(a_ptr, following[:, None] * D + channels[None, :],
                                    has_following[:, None] & channel_mask[None, :], 0.0,
                                    IS_COMPLEX, ACC)
        d_real, d_imag = _load_pair(grad_ptr, offsets, mask, 0.0, IS_COMPLEX, ACC)
        p_real, p_imag = _load_pair(h_ptr, preceding[:, None] * D + channels[None, :],
                                    has_preceding[:, None] & channel_mask[None, :], 0.0,
                                    IS_COMPLEX, ACC)
        if HAS_H0:
            first = (~has_preceding & valid)[:, None]
            p_real = tl.where(first, h0_real, p_real)
            if IS_COMPLEX:
                p_imag = tl.where(first, h0_imag, p_imag)
        if IS_COMPLEX:
            c_imag = -c_imag  # conj(a)
            A_real, A_imag, B_real, B_imag = tl.associative_scan(
                (c_real, c_imag, d_real, d_imag), 0, _combine_complex)
            out_real = A_real * g_real[None, :] - A_imag * g_imag[None, :] + B_real
            out_imag = A_real * g_imag[None, :] + A_imag * g_real[None, :] + B_imag
            g_imag = _last_row(out_imag, rows, BLOCK_T)
            # dL/da = g * conj(h_previous)
            da_real = out_real * p_real + out_imag * p_imag
            da_imag = out_imag * p_real - out_real * p_imag
        else:
            A_real, B_real = tl.associative_scan((c_real, d_real), 0, _combine_real)
            out_real = A_real * g_real[None, :] + B_real
            out_imag = out_real
            da_real = out_real * p_real
            da_imag = da_real
        # padded rows have coefficient 0 and gradient 0, so the last row holds the gradient
        # of the last valid step only if we carry the last *valid* row
        last = tl.minimum(L - 1 - start, BLOCK_T - 1)
        g_real = tl.sum(tl.where(rows[:, None] == last, out_real, 0.0), axis=0)
        if IS_COMPLEX:
            g_imag = tl.sum(tl.where(rows[:, None] == last, out_imag, 0.0), axis=0)
        _store_pair(db_ptr, offsets, mask, out_real, out_imag, IS_COMPLEX)
        _store_pair(da_ptr, offsets, mask, da_real, da_imag, IS_COMPLEX)

    if NEED_DH0:
        # dL/dh0 = conj(a_first) g_first; g now holds g at the first step of the forward scan
        first_time = L - 1 if REVERSE else 0
        a_real, a_imag = _load_pair(a_ptr, first_time * D + channels[None, :],
                                    channel_mask[None, :], 0.0, IS_COMPLEX, ACC)
        a_real = tl.sum(a_real, axis=0)
        if IS_COMPLEX:
            a_imag = tl.sum(a_imag, axis=0)
            dh_real = a_real * g_real + a_imag * g_imag
            dh_imag = a_real * g_imag - a_imag * g_real
        else:
            dh_real = a_real * g_real
            dh_imag = dh_real
        _store_pair(dh0_ptr + pid_b * D * width, channels[None, :], channel_mask[None, :],
                    dh_real[None, :], dh_imag[None, :], IS_COMPLEX)


# --------------------------------------------------------------------------------------------
# wrappers


def _as_real(x: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(x.resolve_conj()) if x.is_complex() else x


def _config(kernel: str, dtype: torch.dtype, channels: int) -> tuple[int, int, int]:
    kind = ("wide" if dtype in (torch.float64, torch.complex64, torch.complex128) else
            "half" if dtype in (torch.float16, torch.bfloat16) else "real")
    block_t, block_d, warps = CONFIGS[kernel, kind]
    block_d = min(block_d, triton.next_power_of_2(channels))
    return block_t, block_d, max(1, min(warps, block_d // 128))


def _accumulator(dtype: torch.dtype):
    return tl.float64 if dtype in (torch.float64, torch.complex128) else tl.float32


# Channel blocks go on grid axis 1, at most 65,535 of them; blocks hold >= 256 channels.
_MAX_CHANNELS = 65_535 * 256


def fits(b: torch.Tensor) -> bool:
    """Whether one sequence of ``b`` (B, L, D) can be indexed with 32-bit offsets and its
    channel blocks fit the launch grid (the batch, on grid axis 0, has no practical limit)."""
    _, length, channels = b.shape
    return (length * channels * (2 if b.is_complex() else 1) <= _INT32_MAX
            and channels <= _MAX_CHANNELS)


def check_size(b: torch.Tensor) -> None:
    if not fits(b):
        _, length, channels = b.shape
        raise ValueError(f"backend='triton' indexes one sequence with 32-bit offsets and "
                         f"launches at most {_MAX_CHANNELS} channels; L*D = "
                         f"{length * channels} with D = {channels} is too large, use "
                         "backend='torch'")


def scan_forward(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None,
                 reverse: bool) -> torch.Tensor:
    """h (B, L, D) in b's dtype; a, b contiguous (B, L, D) CUDA tensors, h0 (B, D) or None."""
    check_size(b)
    batch, length, channels = b.shape
    out = torch.empty_like(b)
    if out.numel() == 0:
        return out
    block_t, block_d, warps = _config("forward", b.dtype, channels)
    grid = (batch, triton.cdiv(channels, block_d))
    _scan_forward_kernel[grid](
        _as_real(a), _as_real(b), _as_real(h0) if h0 is not None else _as_real(b),
        _as_real(out), length, channels,
        HAS_H0=h0 is not None, REVERSE=reverse, IS_COMPLEX=b.is_complex(),
        ACC=_accumulator(b.dtype), BLOCK_T=block_t, BLOCK_D=block_d, num_warps=warps)
    return out


def scan_backward(a: torch.Tensor, h: torch.Tensor, h0: torch.Tensor | None,
                  grad_h: torch.Tensor, reverse: bool, need_h0: bool):
    """(da, db, dh0) of the scan that produced ``h``; all contiguous, one dtype."""
    check_size(h)
    batch, length, channels = h.shape
    grad_h = grad_h.resolve_conj().contiguous()
    da, db = torch.empty_like(a), torch.empty_like(a)
    dh0 = torch.empty_like(h0) if need_h0 else None
    if da.numel() == 0:
        if dh0 is not None:
            dh0.zero_()
        return da, db, dh0
    block_t, block_d, warps = _config("backward", h.dtype, channels)
    grid = (batch, triton.cdiv(channels, block_d))
    real_h = _as_real(h)
    _scan_backward_kernel[grid](
        _as_real(a), real_h, _as_real(h0) if h0 is not None else real_h, _as_real(grad_h),
        _as_real(da), _as_real(db), _as_real(dh0) if dh0 is not None else real_h,
        length, channels,
        HAS_H0=h0 is not None, NEED_DH0=need_h0, REVERSE=reverse,
        IS_COMPLEX=h.is_complex(), ACC=_accumulator(h.dtype), BLOCK_T=block_t,
        BLOCK_D=block_d, num_warps=warps)
    return da, db, dh0
