"""A compiled CPU kernel for the leaky echo-state recurrence (float64).

The same computation as :meth:`tsrnn.reservoir.LeakyReservoir.forward` with a sparse (CSR)
recurrent matrix,

    x_t = (1 - a) x_{t-1} + a tanh(W_in u_t + W x_{t-1} + b),

written as one C loop over the time steps, so that a long run costs one call instead of one
sparse product, one tanh and several numpy dispatches per step.

Layout. The batch (independent sequences, or the time segments of one long sequence, see
:meth:`LeakyReservoir.run_segmented`) is cut into tiles of ``TW`` sequences; a tile keeps its
states as an (N, TW) array, so the innermost loop of the sparse product runs over the tile
with unit stride (one AVX-512 register for TW = 8; wider tiles measured slower, their states
no longer fit the first-level cache) and each nonzero of W is read once per step for the
whole tile. Four partial sums per row break the chain of dependent multiply-adds. A tile of
one sequence (TW = 1) instead splits each row's nonzeros over eight lanes (vector gathers).
Tiles are independent: OpenMP runs them in parallel, with no barrier per step.

tanh is computed in the kernel without a library call, so that it vectorises over the tile:
tanh|x| = -e / (2 + e) with e = expm1(-2|x|) = 2^n (expm1(r) + 1) - 1, r = -2|x| - n ln 2,
|r| <= ln(2) / 2, expm1(r) by its degree-13 Taylor polynomial (truncation < 2e-17 relative);
the result differs from the C library's tanh by a few units in the last place. The source
is compiled without -ffast-math: the summation order is fixed and IEEE arithmetic kept, so
results are reproducible run to run (they differ from scipy's sequential product by round-off
only, ~1e-16 per step).

Each state is written to a caller-given row of an output array (or nowhere), which lets a
segmented run write its states straight into place, without a copy.

The source is compiled on first use by :mod:`tsrnn._native` (once per machine and version).
Where no compiler works, or the environment variable
``TSRNN_NO_NATIVE`` is set, :func:`available` is False and the reservoir falls back to scipy
and torch.
"""

from __future__ import annotations

import ctypes

import numpy as np

from .. import _native

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* tanh without a library call (see the Python module docstring); vectorises in a simd loop. */
static inline double tanh_kernel(double x) {
    double a = fabs(x);
    a = a > 20.0 ? 20.0 : a;              /* tanh(20) rounds to 1; NaN stays NaN */
    double y = -2.0 * a;
    /* n = round(y / ln 2) by the 1.5 * 2^52 trick (exact for |n| < 2^51). */
    double n = (y * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0;
    n = n > -60.0 ? n : -60.0;             /* a NaN input: a valid integer below */
    double r = y - n * 0.6931471803691238;  /* ln 2 in two parts: exact n * hi */
    r = r - n * 1.9082149292705877e-10;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;  p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;      p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;        p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;         p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r * r + r;                     /* expm1(r) */
    union { double d; int64_t i; } scale;
    scale.i = ((int64_t)n + 1023) << 52;   /* 2^n, n in [-58, 0] */
    double s = scale.d;
    double e = s * p + (s - 1.0);          /* expm1(y), in (-1, 0] */
    double t = -e / (2.0 + e);
    return copysign(t, x);
}

/* tanh, leak, and the states written to their output rows. pre: (N * TW) pre-activations
   (overwritten by the new states); prev: the previous states. */
static void finish_step(long N, long TW, long nb, double* restrict pre,
                        const double* restrict prev, double leak, double* restrict out,
                        const int64_t* restrict rows, long ld, long b0, long L, long t) {
    long M = N * TW;
    #pragma omp simd
    for (long k = 0; k < M; ++k) pre[k] = tanh_kernel(pre[k]);
    if (leak != 1.0) {
        double keep = 1.0 - leak;
        #pragma omp simd
        for (long k = 0; k < M; ++k) pre[k] = keep * prev[k] + leak * pre[k];
    }
    /* Rows of the (N, TW) tile go to TW output rows: 64 units at a time, so that the tile
       is read from the first-level cache rather than once per lane from the second. */
    double* targets[8];  /* TW <= 8 */
    long lanes[8], m = 0;
    for (long l = 0; l < nb; ++l) {
        int64_t row = rows[(b0 + l) * L + t];
        if (row >= 0) { targets[m] = out + row * ld; lanes[m] = l; ++m; }
    }
    for (long i0 = 0; i0 < N; i0 += 64) {
        long i1 = i0 + 64 < N ? i0 + 64 : N;
        for (long k = 0; k < m; ++k) {
            double* restrict o = targets[k];
            long l = lanes[k];
            for (long i = i0; i < i1; ++i) o[i] = pre[i * TW + l];
        }
    }
}

/* One tile of TW sequences over all steps, the tile's states kept as N vectors of TW
   lanes (GCC vector extensions: one AVX-512 register for TW = 8).
   x, xn: (N * TW) scratch aligned to 64 bytes; u: (I * TW) scratch. */
#define DEFINE_TILE(TW)                                                                      \
typedef double vec##TW __attribute__((vector_size(TW * 8)));                                  \
static void esn_tile_##TW(long N, long L, long I, const int64_t* restrict indptr,            \
        const int32_t* restrict idx, const double* restrict val,                             \
        const double* restrict win, const double* restrict bias, double leak,                \
        const double* restrict inputs, long b0, long nb, const double* state0,               \
        double* restrict out, const int64_t* restrict rows, long ld, double* restrict final, \
        double* restrict x, double* restrict xn, double* restrict u) {                       \
    for (long i = 0; i < N; ++i)                                                             \
        for (long l = 0; l < TW; ++l)                                                        \
            x[i * TW + l] = (state0 && l < nb) ? state0[(b0 + l) * N + i] : 0.0;             \
    for (long t = 0; t < L; ++t) {                                                           \
        for (long j = 0; j < I; ++j)                                                         \
            for (long l = 0; l < TW; ++l)                                                    \
                u[j * TW + l] = l < nb ? inputs[((b0 + l) * L + t) * I + j] : 0.0;          \
        const vec##TW* restrict X = (const vec##TW*)x;                                       \
        const vec##TW* restrict U = (const vec##TW*)u;                                       \
        vec##TW* restrict XN = (vec##TW*)xn;                                                 \
        for (long i = 0; i < N; ++i) {                                                       \
            vec##TW s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};                                  \
            s0 += bias[i];                                                                   \
            const double* wi = win + i * I;                                                  \
            for (long j = 0; j < I; ++j) s1 += wi[j] * U[j];                                 \
            long p = indptr[i], end = indptr[i + 1];                                         \
            for (; p + 3 < end; p += 4) {                                                    \
                s0 += val[p] * X[idx[p]];         s1 += val[p + 1] * X[idx[p + 1]];         \
                s2 += val[p + 2] * X[idx[p + 2]]; s3 += val[p + 3] * X[idx[p + 3]];         \
            }                                                                                \
            for (; p < end; ++p) s0 += val[p] * X[idx[p]];                                   \
            XN[i] = (s0 + s1) + (s2 + s3);                                                   \
        }                                                                                    \
        finish_step(N, TW, nb, xn, x, leak, out, rows, ld, b0, L, t);                        \
        double* swap = x; x = xn; xn = swap;                                                 \
    }                                                                                        \
    for (long l = 0; l < nb; ++l)                                                            \
        for (long i = 0; i < N; ++i) final[(b0 + l) * N + i] = x[i * TW + l];               \
}

DEFINE_TILE(4)
DEFINE_TILE(8)

/* One sequence: each row's nonzeros are split over 8 lanes (gathers), summed at the end. */
static void esn_single(long N, long L, long I, const int64_t* restrict indptr,
        const int32_t* restrict idx, const double* restrict val,
        const double* restrict win, const double* restrict bias, double leak,
        const double* restrict inputs, long b, const double* state0,
        double* restrict out, const int64_t* restrict rows, long ld, double* restrict final,
        double* restrict x, double* restrict xn) {
    for (long i = 0; i < N; ++i) x[i] = state0 ? state0[b * N + i] : 0.0;
    for (long t = 0; t < L; ++t) {
        const double* u = inputs + (b * L + t) * I;
        for (long i = 0; i < N; ++i) {
            double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            long p = indptr[i], end = indptr[i + 1];
            for (; p + 7 < end; p += 8)
                for (int l = 0; l < 8; ++l) lanes[l] += val[p + l] * x[idx[p + l]];
            double tail = bias[i];
            const double* wi = win + i * I;
            for (long j = 0; j < I; ++j) tail += wi[j] * u[j];
            for (; p < end; ++p) tail += val[p] * x[idx[p]];
            xn[i] = (((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
                     + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))) + tail;
        }
        finish_step(N, 1, 1, xn, x, leak, out, rows + b * L, ld, 0, L, t);
        double* swap = x; x = xn; xn = swap;
    }
    for (long i = 0; i < N; ++i) final[b * N + i] = x[i];
}

/* States of B sequences of L steps: inputs (B, L, I); state0 (B, N) or NULL for zeros;
   the state of sequence b after step t goes to the first N values of row rows[b * L + t]
   of out (rows ld >= N values apart) unless that index is negative; final (B, N) receives
   the last states. */
int esn_run_f64(long N, long B, long L, long I, const int64_t* indptr, const int32_t* idx,
                const double* val, const double* win, const double* bias, double leak,
                const double* inputs, const double* state0, double* out,
                const int64_t* rows, long ld, double* final, long tile, int threads) {
    long n_tiles = (B + tile - 1) / tile;
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        /* 64-byte aligned, a multiple of 64 bytes long (aligned_alloc's contract). */
        size_t bytes = ((2 * N + I) * tile * sizeof(double) + 63) / 64 * 64;
        double* scratch = (double*)aligned_alloc(64, bytes);
        if (!scratch) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (long k = 0; k < n_tiles; ++k) {
            if (!scratch) continue;
            long b0 = k * tile, nb = B - b0 < tile ? B - b0 : tile;
            double* x = scratch; double* xn = x + N * tile; double* u = xn + N * tile;
            if (tile == 8)
                esn_tile_8(N, L, I, indptr, idx, val, win, bias, leak, inputs, b0, nb,
                           state0, out, rows, ld, final, x, xn, u);
            else if (tile == 4)
                esn_tile_4(N, L, I, indptr, idx, val, win, bias, leak, inputs, b0, nb,
                           state0, out, rows, ld, final, x, xn, u);
            else
                esn_single(N, L, I, indptr, idx, val, win, bias, leak, inputs, b0,
                           state0, out, rows, ld, final, x, xn);
        }
        free(scratch);
    }
    return failed;
}
"""

# No -ffast-math: the kernel relies on IEEE rounding (the round-to-integer trick in tanh) and
# a fixed summation order.
_FLAGS = (["-O3", "-march=native", "-fno-math-errno", "-fopenmp", "-fPIC"],
          ["-shared", "-fopenmp"])
# Measured per sequence-step on the 2-core Xeon (AVX-512) of RESULTS.md: 8 lanes 7.4 us,
# 4 lanes 9.4 us, 16 lanes 9.5-11 us (its states no longer fit the first-level cache), one
# sequence alone 27 us (1000 units, 20,000 nonzeros).
TILES = (8, 4, 1)


def _library() -> ctypes.CDLL | None:
    library = _native.load_library("esn", _SOURCE, [], (_FLAGS,))
    if library is not None:
        library.esn_run_f64.restype = ctypes.c_int
    return library


def available() -> bool:
    """True when the compiled kernel could be built and loaded here."""
    return _library() is not None


def _pointer(array: np.ndarray | None) -> ctypes.c_void_p:
    # __array_interface__ rather than array.ctypes: ~1 us instead of ~5 us per call.
    return ctypes.c_void_p(None if array is None else array.__array_interface__["data"][0])


def _checked(array: np.ndarray, dtype, name: str) -> np.ndarray:
    if array.dtype != dtype or not array.flags.c_contiguous:
        raise TypeError(f"{name} must be a C-contiguous {np.dtype(dtype)} array")
    return array


class CSR:
    """W in the kernel's layout: int64 row pointers, int32 column indices, float64 values."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, n: int):
        if n >= 2**31:
            raise ValueError("the compiled kernel takes at most 2^31 - 1 units")
        self.n = int(n)
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices, dtype=np.int32)
        self.values = np.ascontiguousarray(values, dtype=np.float64)
        if self.indptr.shape != (self.n + 1,) or self.indices.shape != self.values.shape or (
                self.indptr[-1] != self.values.size):
            raise ValueError("inconsistent CSR arrays")
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= self.n):
            raise ValueError(f"column indices outside 0..{self.n - 1}")



def choose_tile(batch: int, threads: int) -> int:
    """The tile width: the widest of :data:`TILES` that still gives every thread a tile."""
    per_thread = -(-batch // max(threads, 1))
    return next(t for t in TILES if t <= per_thread)


def run(csr: CSR, input_weights: np.ndarray, bias: np.ndarray, leak: float,
        inputs: np.ndarray, state: np.ndarray | None, out: np.ndarray, rows: np.ndarray,
        threads: int = 1, tile: int | None = None) -> np.ndarray:
    """Run the recurrence; returns the final states (B, N).

    Parameters
    ----------
    csr : CSR
        W (N, N).
    input_weights : array (N, I); bias : array (N,); leak : float in (0, 1]
    inputs : array (B, L, I)
    state : array (B, N) or None
        Start states (None: zeros).
    out : array (R, M), M >= N
        Receives the states: that of sequence b after step t goes to the first N columns
        of row ``rows[b, t]`` (the other M - N columns are not touched).
    rows : int64 array (B, L)
        Output row of every state, negative for states not kept; every row index must be
        below R (checked).
    threads : int
        OpenMP threads (tiles run in parallel).
    tile : int, optional
        Tile width, one of :data:`TILES` (default :func:`choose_tile`).
    """
    library = _library()
    if library is None:
        raise RuntimeError("the compiled ESN kernel is not available here")
    batch, length, n_inputs = inputs.shape
    n = csr.n
    _checked(inputs, np.float64, "inputs")
    _checked(input_weights, np.float64, "input_weights")
    _checked(bias, np.float64, "bias")
    _checked(out, np.float64, "out")
    _checked(rows, np.int64, "rows")
    if input_weights.shape != (n, n_inputs) or bias.shape != (n,):
        raise ValueError(f"weights of shapes {input_weights.shape}, {bias.shape} do not fit "
                         f"{n} units and {n_inputs} inputs")
    if out.ndim != 2 or out.shape[1] < n or rows.shape != (batch, length):
        raise ValueError(f"out {out.shape} must be (R, M >= {n}) and rows {rows.shape} must "
                         f"be ({batch}, {length})")
    if rows.size and rows.max() >= out.shape[0]:
        raise ValueError(f"row index {rows.max()} outside out ({out.shape[0]} rows)")
    if state is not None:
        _checked(state, np.float64, "state")
        if state.shape != (batch, n):
            raise ValueError(f"state must be ({batch}, {n}), got {state.shape}")
    tile = choose_tile(batch, threads) if tile is None else tile
    if tile not in TILES:
        raise ValueError(f"tile must be one of {TILES}, got {tile}")
    final = np.empty((batch, n))
    failed = library.esn_run_f64(
        ctypes.c_long(n), ctypes.c_long(batch), ctypes.c_long(length), ctypes.c_long(n_inputs),
        _pointer(csr.indptr), _pointer(csr.indices), _pointer(csr.values),
        _pointer(input_weights), _pointer(bias), ctypes.c_double(leak), _pointer(inputs),
        _pointer(state), _pointer(out), _pointer(rows), ctypes.c_long(out.shape[1]),
        _pointer(final), ctypes.c_long(tile),
        ctypes.c_int(max(int(threads), 1)))
    if failed:
        raise MemoryError("the ESN kernel could not allocate its scratch memory")
    return final
