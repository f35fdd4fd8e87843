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
the result differs from the C library's tanh by at most 3 units in the last place. With
AVX-512 every kernel here takes tanh 8 lanes at a time (``tanh8``), with the division replaced
by a 14-bit reciprocal estimate, two Newton steps and one correction of the quotient by its
exact residual, which gives the correctly rounded quotient (bit for bit the division's on 1e6
test points) in ~8 operations instead of a vdivpd (~16 cycles per 8 lanes, about a sixth of a
tile's step): per step of a tile of 8 sequences (1000 units, 20,000 nonzeros, states not
kept) 36 us with the division and 29 us without (medians of 31 alternating runs on the
2-core Xeon of RESULTS.md; the machine's speed varies by +-20% over minutes). With AVX2
and no AVX-512 the kernels take it 4 lanes at a time (``tanh4``, with the division, two
vectors per iteration), 1.9-2.1 ns per value against 3.3-4.0 for GCC's vectorisation of the
scalar function: a tile of 4 sequences steps in 30-33 us instead of 34-48. The source
is compiled without -ffast-math: the summation order is fixed and IEEE arithmetic kept, so
results are reproducible run to run (they differ from scipy's sequential product by round-off
only, ~1e-16 per step).

Each state is written to a caller-given row of an output array (or nowhere), which lets a
segmented run write its states straight into place, without a copy.

Closed-loop generation (:func:`generate`) is a second kernel: per step the same recurrence,
the readout y_t = W_out^T [g(x_t), u_t] + c and the feedback u_{t+1} = y_t, all steps in one
call, optionally after a teacher-forced context. One sequence is latency bound, so its sparse
product takes the sliced layout of :class:`SlicedLayout` (8 rows per vector gather, no
horizontal sums) and runs on one thread. At 1000 units and 24,000 nonzeros on the 2-core
Xeon of RESULTS.md a step takes 9-11 us when the machine is quiet (7.4-8 us of it in the
gathers, 2.3 us in tanh), against 23-25 us for the numpy loop it replaces (scipy's CSR
product plus ten numpy calls).

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
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

/* tanh without a library call (see the Python module docstring); vectorises in a simd loop
   (used where neither tanh8 nor tanh4 below is built, and for the values after an AVX2
   loop's last block of 8). */
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
    /* 2^n, n in [-60, 0], by integer operations on the bits of n + 1.5 * 2^52 (whose low
       bits hold n) rather than a double-to-int64 conversion, which AVX2 lacks: with it
       the loops calling this function stayed scalar there (3x slower, same values). */
    double shifted = n + 6755399441055744.0;
    int64_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    bits = (bits + 1023) << 52;
    double s;
    memcpy(&s, &bits, sizeof s);
    double e = s * p + (s - 1.0);          /* expm1(y), in (-1, 0] */
    double t = -e / (2.0 + e);
    return copysign(t, x);
}

#if defined(__AVX512F__)
/* tanh_kernel on 8 lanes, with the division -e / (2 + e) replaced by a reciprocal: a 14-bit
   estimate (vrcp14pd), two Newton steps (~28, then ~53 bits), the quotient, and one
   correction of the quotient by its exact residual (Markstein), which leaves the correctly
   rounded quotient (one Newton step fewer left 0.15% of the values 1 ulp off the division's):
   a vdivpd costs ~16 cycles per 8 lanes, these 8 operations ~4. The other steps are
   tanh_kernel's, with the same roundings (its multiply-adds contracted as GCC does), so that
   both give the same values. */
static inline __m512d tanh8(__m512d x) {
    const __m512i sign_bit = _mm512_set1_epi64((long long)0x8000000000000000ULL);
    __m512d a = _mm512_min_pd(_mm512_set1_pd(20.0), _mm512_abs_pd(x));  /* NaN stays NaN */
    __m512d y = _mm512_mul_pd(a, _mm512_set1_pd(-2.0));
    const __m512d shifter = _mm512_set1_pd(6755399441055744.0);
    __m512d n = _mm512_sub_pd(_mm512_fmadd_pd(y, _mm512_set1_pd(1.4426950408889634), shifter),
                              shifter);
    n = _mm512_max_pd(n, _mm512_set1_pd(-60.0));  /* a NaN n becomes -60 */
    __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(0.6931471803691238), y);
    r = _mm512_fnmadd_pd(n, _mm512_set1_pd(1.9082149292705877e-10), r);
    __m512d p = _mm512_set1_pd(1.0 / 6227020800.0);
#define TANH8_STEP(c) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(c))
    TANH8_STEP(1.0 / 479001600.0); TANH8_STEP(1.0 / 39916800.0); TANH8_STEP(1.0 / 3628800.0);
    TANH8_STEP(1.0 / 362880.0); TANH8_STEP(1.0 / 40320.0); TANH8_STEP(1.0 / 5040.0);
    TANH8_STEP(1.0 / 720.0); TANH8_STEP(1.0 / 120.0); TANH8_STEP(1.0 / 24.0);
    TANH8_STEP(1.0 / 6.0); TANH8_STEP(0.5);
#undef TANH8_STEP
    __m512d em = _mm512_fmadd_pd(_mm512_mul_pd(p, r), r, r);        /* expm1(r) */
    __m512d s = _mm512_scalef_pd(_mm512_set1_pd(1.0), n);            /* 2^n, exact */
    __m512d e = _mm512_fmadd_pd(s, em, _mm512_sub_pd(s, _mm512_set1_pd(1.0)));
    __m512d d = _mm512_add_pd(_mm512_set1_pd(2.0), e);               /* in (1, 2] */
    __m512d num = _mm512_sub_pd(_mm512_setzero_pd(), e);             /* -e >= 0 */
    __m512d inv = _mm512_rcp14_pd(d);
    inv = _mm512_fmadd_pd(inv, _mm512_fnmadd_pd(d, inv, _mm512_set1_pd(1.0)), inv);
    inv = _mm512_fmadd_pd(inv, _mm512_fnmadd_pd(d, inv, _mm512_set1_pd(1.0)), inv);
    __m512d q = _mm512_mul_pd(num, inv);
    q = _mm512_fmadd_pd(_mm512_fnmadd_pd(q, d, num), inv, q);
    __m512i sign = _mm512_and_epi64(_mm512_castpd_si512(x), sign_bit);
    return _mm512_castsi512_pd(_mm512_or_epi64(_mm512_castpd_si512(q), sign));
}

/* (1 - a) prev + a tanh(pre) for 8 lanes. */
static inline __m512d leaky_tanh8(__m512d pre, __m512d prev, double leak) {
    __m512d t = tanh8(pre);
    if (leak == 1.0) return t;
    return _mm512_fmadd_pd(_mm512_set1_pd(1.0 - leak), prev,
                           _mm512_mul_pd(_mm512_set1_pd(leak), t));
}
#endif

#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
/* tanh_kernel on 4 lanes (AVX2), the same operations as tanh8 with a true division, so the
   same values as tanh_kernel (bit for bit on 1e6 test points, NaN and infinities included).
   GCC's own vectorisation of tanh_kernel's loop ran at 3.3-4.0 ns per value on an AVX2
   EPYC, this at 1.9-2.1 (two independent vectors per iteration). */
static inline __m256d tanh4(__m256d x) {
    const __m256d sign_bit = _mm256_set1_pd(-0.0);
    __m256d a = _mm256_min_pd(_mm256_set1_pd(20.0), _mm256_andnot_pd(sign_bit, x));
    __m256d y = _mm256_mul_pd(a, _mm256_set1_pd(-2.0));
    const __m256d shifter = _mm256_set1_pd(6755399441055744.0);
    __m256d n = _mm256_sub_pd(_mm256_fmadd_pd(y, _mm256_set1_pd(1.4426950408889634), shifter),
                              shifter);
    n = _mm256_max_pd(n, _mm256_set1_pd(-60.0));  /* a NaN n becomes -60 */
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(0.6931471803691238), y);
    r = _mm256_fnmadd_pd(n, _mm256_set1_pd(1.9082149292705877e-10), r);
    __m256d p = _mm256_set1_pd(1.0 / 6227020800.0);
#define TANH4_STEP(c) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(c))
    TANH4_STEP(1.0 / 479001600.0); TANH4_STEP(1.0 / 39916800.0); TANH4_STEP(1.0 / 3628800.0);
    TANH4_STEP(1.0 / 362880.0); TANH4_STEP(1.0 / 40320.0); TANH4_STEP(1.0 / 5040.0);
    TANH4_STEP(1.0 / 720.0); TANH4_STEP(1.0 / 120.0); TANH4_STEP(1.0 / 24.0);
    TANH4_STEP(1.0 / 6.0); TANH4_STEP(0.5);
#undef TANH4_STEP
    __m256d em = _mm256_fmadd_pd(_mm256_mul_pd(p, r), r, r);        /* expm1(r) */
    /* 2^n from the low bits of n + 1.5 * 2^52, as in tanh_kernel */
    __m256i bits = _mm256_castpd_si256(_mm256_add_pd(n, shifter));
    bits = _mm256_slli_epi64(_mm256_add_epi64(bits, _mm256_set1_epi64x(1023)), 52);
    __m256d s = _mm256_castsi256_pd(bits);
    __m256d e = _mm256_fmadd_pd(s, em, _mm256_sub_pd(s, _mm256_set1_pd(1.0)));
    __m256d t = _mm256_div_pd(_mm256_sub_pd(_mm256_setzero_pd(), e),
                              _mm256_add_pd(_mm256_set1_pd(2.0), e));
    return _mm256_or_pd(t, _mm256_and_pd(sign_bit, x));
}

/* (1 - a) prev + a tanh(pre) for 4 lanes. */
static inline __m256d leaky_tanh4(__m256d pre, __m256d prev, double leak) {
    __m256d t = tanh4(pre);
    if (leak == 1.0) return t;
    return _mm256_fmadd_pd(_mm256_set1_pd(1.0 - leak), prev,
                           _mm256_mul_pd(_mm256_set1_pd(leak), t));
}
#endif

/* dst[k] = (1 - a) prev[k] + a tanh(pre[k]), k < M (dst may be pre or prev). With AVX-512, by
   tanh8 in blocks of 8 lanes (a masked last block), with AVX2 by tanh4, so that every kernel
   here computes the same values. */
static inline void leaky_tanh_array(long M, const double* pre, const double* prev,
                                    double leak, double* dst) {
#if defined(__AVX512F__)
    for (long k = 0; k < M; k += 8) {
        __mmask8 mask = M - k >= 8 ? 0xFF : (__mmask8)((1u << (M - k)) - 1);
        __m512d v = leaky_tanh8(_mm512_maskz_loadu_pd(mask, pre + k),
                                _mm512_maskz_loadu_pd(mask, prev + k), leak);
        _mm512_mask_storeu_pd(dst + k, mask, v);
    }
#else
    long k0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
    for (; k0 + 8 <= M; k0 += 8) {  /* two independent vectors in flight */
        __m256d v0 = leaky_tanh4(_mm256_loadu_pd(pre + k0), _mm256_loadu_pd(prev + k0), leak);
        __m256d v1 = leaky_tanh4(_mm256_loadu_pd(pre + k0 + 4), _mm256_loadu_pd(prev + k0 + 4),
                                 leak);
        _mm256_storeu_pd(dst + k0, v0);
        _mm256_storeu_pd(dst + k0 + 4, v1);
    }
#endif
    if (leak == 1.0) {
        #pragma omp simd
        for (long k = k0; k < M; ++k) dst[k] = tanh_kernel(pre[k]);
    } else {
        double keep = 1.0 - leak;
        #pragma omp simd
        for (long k = k0; k < M; ++k)
#if defined(__FMA__)
            dst[k] = fma(keep, prev[k], leak * tanh_kernel(pre[k]));  /* leaky_tanh8's rounding */
#else
            dst[k] = keep * prev[k] + leak * tanh_kernel(pre[k]);
#endif
    }
#endif
}

/* tanh, leak, and the states written to their output rows. pre: (N * TW) pre-activations
   (overwritten by the new states); prev: the previous states. */
static void finish_step(long N, long TW, long nb, double* restrict pre,
                        const double* restrict prev, double leak, double* restrict out,
                        const int64_t* restrict rows, long ld, long b0, long L, long t) {
    leaky_tanh_array(N * TW, pre, prev, leak, pre);
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

/* The widest tile that fills, not exceeds, the machine's float64 vector registers: the tile
   of 8 lanes is one AVX-512 register, and split over two AVX2 registers it ran 3.5x slower
   than two tiles of 4 (measured on an AVX2 EPYC: 222 against 64 us per step of 8 sequences
   of 1000 units). */
int esn_widest_tile(void) {
#if defined(__AVX512F__)
    return 8;
#else
    return 4;
#endif
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

/* ---------------------------------------------------------------- closed-loop generation */

/* out[8 c + l] = sum over the slots s of chunk c of val * xu[idx] (sliced ELLPACK, chunks of
   8 rows stored slot by slot: one vector gather per slot). Two partial sums (even and odd
   slots) halve the chain of dependent multiply-adds; a fixed order, so reproducible. */
static void sliced_product(long n_chunks, const int64_t* restrict chunk_ptr,
                           const int32_t* restrict idx, const double* restrict val,
                           const double* restrict xu, double* restrict out) {
    for (long c = 0; c < n_chunks; ++c) {
        long p = chunk_ptr[c], end = chunk_ptr[c + 1];
#if defined(__AVX512F__)
        __m512d even = _mm512_setzero_pd(), odd = _mm512_setzero_pd();
        for (; p + 15 < end; p += 16) {
            __m256i i0 = _mm256_loadu_si256((const __m256i*)(idx + p));
            __m256i i1 = _mm256_loadu_si256((const __m256i*)(idx + p + 8));
            even = _mm512_fmadd_pd(_mm512_loadu_pd(val + p), _mm512_i32gather_pd(i0, xu, 8),
                                   even);
            odd = _mm512_fmadd_pd(_mm512_loadu_pd(val + p + 8),
                                  _mm512_i32gather_pd(i1, xu, 8), odd);
        }
        if (p < end) {
            __m256i i0 = _mm256_loadu_si256((const __m256i*)(idx + p));
            even = _mm512_fmadd_pd(_mm512_loadu_pd(val + p), _mm512_i32gather_pd(i0, xu, 8),
                                   even);
        }
        _mm512_storeu_pd(out + 8 * c, _mm512_add_pd(even, odd));
#else
        double even[8] = {0, 0, 0, 0, 0, 0, 0, 0}, odd[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (; p + 15 < end; p += 16)
            for (int l = 0; l < 8; ++l) {
                even[l] += val[p + l] * xu[idx[p + l]];
                odd[l] += val[p + 8 + l] * xu[idx[p + 8 + l]];
            }
        if (p < end)
            for (int l = 0; l < 8; ++l) even[l] += val[p + l] * xu[idx[p + l]];
        for (int l = 0; l < 8; ++l) out[8 * c + l] = even[l] + odd[l];
#endif
    }
}

/* One step of the recurrence: xu[0:N] <- (1 - a) x + a tanh([W | W_in | b] xu). */
static inline void recurrence_step(long N, long n_chunks, const int64_t* restrict chunk_ptr,
        const int32_t* restrict idx, const double* restrict val, double leak,
        double* restrict xu, double* restrict pre) {
    sliced_product(n_chunks, chunk_ptr, idx, val, xu, pre);
    leaky_tanh_array(N, pre, xu, leak, xu);
}

/* y = W_out^T [g(x), u] + c from xu = [x, u, 1]; phi: N scratch values. */
static inline void readout(long N, long I, const double* restrict xu,
        const double* restrict readout_t, const double* restrict readout_input_t,
        const double* restrict intercept, const double* restrict square_mask,
        double* restrict phi, double* restrict y) {
    const double* x = xu;
    const double* u = xu + N;
    const double* features = x;
    if (square_mask) {
        /* x^2 where the mask is 1, x where it is 0 (both products exact). */
        #pragma omp simd
        for (long k = 0; k < N; ++k)
            phi[k] = x[k] * (x[k] * square_mask[k] + (1.0 - square_mask[k]));
        features = phi;
    }
    for (long o = 0; o < I; ++o) {
        const double* restrict w = readout_t + o * N;
        double s = 0.0;
        #pragma omp simd reduction(+:s)
        for (long k = 0; k < N; ++k) s += w[k] * features[k];
        s += intercept[o];
        if (readout_input_t)
            for (long j = 0; j < I; ++j) s += readout_input_t[o * I + j] * u[j];
        y[o] = s;
    }
}

/* One closed loop. Units are kept in the layout's order (position k holds unit order[k]);
   xu = [x (N), u (I), 1]: the sliced matrix [W | W_in | b] times xu is the pre-activation.
   With n_context > 0 the loop starts with n_context teacher-forced steps on the inputs
   context (n_context, I) and y_0 is the readout after the last of them; else y_0 = first.
   scratch: 8 n_chunks + (N + I + 1) + N + I doubles. */
static void generate_one(long N, long I, long n_steps, long n_chunks,
        const int64_t* restrict chunk_ptr, const int32_t* restrict idx,
        const double* restrict val, const int64_t* restrict order, double leak,
        const double* restrict readout_t, const double* restrict readout_input_t,
        const double* restrict intercept, const double* restrict square_mask,
        const double* restrict first, const double* restrict context, long n_context,
        const double* restrict state0, double* restrict out, double* restrict final,
        double* restrict scratch) {
    double* restrict pre = scratch;
    double* restrict xu = pre + 8 * n_chunks;
    double* restrict phi = xu + N + I + 1;
    double* restrict y = phi + N;
    double* restrict u = xu + N;
    for (long k = 0; k < N; ++k) xu[k] = state0 ? state0[order[k]] : 0.0;
    xu[N + I] = 1.0;
    if (n_context > 0) {
        for (long t = 0; t < n_context; ++t) {
            for (long j = 0; j < I; ++j) u[j] = context[t * I + j];
            recurrence_step(N, n_chunks, chunk_ptr, idx, val, leak, xu, pre);
        }
        readout(N, I, xu, readout_t, readout_input_t, intercept, square_mask, phi, y);
        for (long j = 0; j < I; ++j) out[j] = u[j] = y[j];
    } else {
        for (long j = 0; j < I; ++j) out[j] = u[j] = first[j];
    }
    for (long t = 1; t < n_steps; ++t) {
        recurrence_step(N, n_chunks, chunk_ptr, idx, val, leak, xu, pre);
        readout(N, I, xu, readout_t, readout_input_t, intercept, square_mask, phi, y);
        for (long o = 0; o < I; ++o) out[t * I + o] = u[o] = y[o];
    }
    if (final)
        for (long k = 0; k < N; ++k) final[order[k]] = xu[k];
}

/* B closed loops of n_steps outputs: out (B, n_steps, I); first (B, I), or context
   (B, n_context, I) with n_context > 0 (first then unused); state0 (B, N) or NULL for zeros;
   final (B, N) or NULL. Sequences run in parallel when threads > 1 (one alone never starts
   a thread team). */
int esn_generate_f64(long N, long I, long B, long n_steps, long n_chunks,
        const int64_t* chunk_ptr, const int32_t* idx, const double* val, const int64_t* order,
        double leak, const double* readout_t, const double* readout_input_t,
        const double* intercept, const double* square_mask, const double* first,
        const double* context, long n_context, const double* state0, double* out,
        double* final, int threads) {
    int failed = 0;
    size_t bytes = ((8 * n_chunks + 2 * N + 2 * I + 1) * sizeof(double) + 63) / 64 * 64;
    #define GENERATE_ONE(b)                                                                  \
        generate_one(N, I, n_steps, n_chunks, chunk_ptr, idx, val, order, leak, readout_t,   \
                     readout_input_t, intercept, square_mask, first ? first + (b) * I : NULL, \
                     context ? context + (b) * n_context * I : NULL, n_context,               \
                     state0 ? state0 + (b) * N : NULL, out + (b) * n_steps * I,               \
                     final ? final + (b) * N : NULL, scratch)
    if (threads <= 1 || B <= 1) {
        double* scratch = (double*)aligned_alloc(64, bytes);
        if (!scratch) return 1;
        for (long b = 0; b < B; ++b) GENERATE_ONE(b);
        free(scratch);
        return 0;
    }
    #pragma omp parallel num_threads(threads)
    {
        double* scratch = (double*)aligned_alloc(64, bytes);
        if (!scratch) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (long b = 0; b < B; ++b) {
            if (!scratch) continue;
            GENERATE_ONE(b);
        }
        free(scratch);
    }
    #undef GENERATE_ONE
    return failed;
}
"""

# No -ffast-math: the kernel relies on IEEE rounding (the round-to-integer trick in tanh) and
# a fixed summation order. -fno-trapping-math changes no value; it lets GCC turn the clamps
# in tanh_kernel into selects, without which its loops do not vectorise on AVX2.
_FLAGS = (["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp",
           "-fPIC"], ["-shared", "-fopenmp"])
# Where the compiler has no OpenMP (Apple's clang): one thread, generic instructions; the
# pragmas are then ignored and the loops run in the same order.
_PLAIN_FLAGS = (["-O3", "-fno-math-errno", "-fno-trapping-math", "-fPIC"], ["-shared"])
# Measured per sequence-step on the 2-core Xeon (AVX-512) of RESULTS.md: 8 lanes 7.4 us,
# 4 lanes 9.4 us, 16 lanes 9.5-11 us (its states no longer fit the first-level cache), one
# sequence alone 27 us (1000 units, 20,000 nonzeros). On the AVX2 EPYC of stop 17: 8 lanes
# 27.7 us, 4 lanes 8.0 us, one sequence 21.9 us (hence widest_tile).
TILES = (8, 4, 1)


def _library() -> ctypes.CDLL | None:
    library = _native.load_library("esn", _SOURCE, [], (_FLAGS, _PLAIN_FLAGS))
    if library is not None:
        library.esn_run_f64.restype = ctypes.c_int
        library.esn_generate_f64.restype = ctypes.c_int
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
        self._sliced_layout = None  # the closed-loop layout, built on first use
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices, dtype=np.int32)
        self.values = np.ascontiguousarray(values, dtype=np.float64)
        if self.indptr.shape != (self.n + 1,) or self.indices.shape != self.values.shape or (
                self.indptr[-1] != self.values.size):
            raise ValueError("inconsistent CSR arrays")
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= self.n):
            raise ValueError(f"column indices outside 0..{self.n - 1}")



def widest_tile() -> int:
    """The widest tile that fits the machine's vector registers (8 with AVX-512, else 4)."""
    library = _library()
    return 4 if library is None else int(library.esn_widest_tile())


def choose_tile(batch: int, threads: int) -> int:
    """The tile width: the widest of :data:`TILES` up to :func:`widest_tile` that still
    gives every thread a tile."""
    per_thread = min(-(-batch // max(threads, 1)), widest_tile())
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


# ---------------------------------------------------------------------- closed-loop generation
# Rows per chunk of the sliced layout: one AVX-512 register of float64.
_CHUNK = 8


class SlicedLayout:
    """The pre-activation map ``[W | W_in | b]`` in sliced ELLPACK for closed-loop generation.

    Row i of ``[W | W_in | b]`` holds the nonzeros of W's row i (columns 0..N-1), of W_in's
    row i (columns N..N+I-1) and b_i (column N+I, multiplied by a constant 1), so that one
    product with ``[x, u, 1]`` gives ``W x + W_in u + b``. Units are sorted by their number
    of nonzeros (position k holds unit ``order[k]``; W's columns renumbered to match) and cut
    into chunks of 8 rows, each padded to its longest row with zeros on the constant column
    and stored slot by slot: one vector gather reads slot s of all 8 rows, and the sorting
    keeps the padding small (~3% at 1000 units and connectivity 0.02, against ~35% unsorted).
    (Kreutzer et al. 2014, "A unified sparse matrix data format for efficient general sparse
    matrix-vector multiplication on modern processors with wide SIMD units", SIAM J. Sci.
    Comput. 36: SELL-C-sigma with C = 8, sigma = N.)
    """

    def __init__(self, csr: CSR, input_weights: np.ndarray, bias: np.ndarray):
        n = csr.n
        input_weights = np.ascontiguousarray(input_weights, dtype=np.float64)
        bias = np.ascontiguousarray(bias, dtype=np.float64)
        if input_weights.ndim != 2 or input_weights.shape[0] != n or bias.shape != (n,):
            raise ValueError(f"weights of shapes {input_weights.shape}, {bias.shape} do not fit "
                             f"{n} units")
        n_inputs = input_weights.shape[1]
        self.n, self.n_inputs = n, n_inputs
        # Copies: the cache in :func:`sliced_layout` compares them with the current weights.
        self.input_weights, self.bias = input_weights.copy(), bias.copy()
        in_rows, in_cols = np.nonzero(input_weights)
        (bias_rows,) = np.nonzero(bias)
        recurrent_rows = np.repeat(np.arange(n), np.diff(csr.indptr))
        rows = np.concatenate([recurrent_rows, in_rows, bias_rows])
        counts = np.bincount(rows, minlength=n)
        self.order = np.argsort(-counts, kind="stable").astype(np.int64)
        position = np.empty(n, dtype=np.int64)
        position[self.order] = np.arange(n)
        columns = np.concatenate([position[csr.indices], n + in_cols,
                                  np.full(bias_rows.size, n + n_inputs)])
        values = np.concatenate([csr.values, input_weights[in_rows, in_cols], bias[bias_rows]])
        # Entries row by row (stable: each row keeps W's, then W_in's, then b's order).
        by_row = np.argsort(rows, kind="stable")
        rows, columns, values = rows[by_row], columns[by_row], values[by_row]
        starts = np.concatenate([[0], np.cumsum(counts)])
        slot = np.arange(rows.size) - starts[rows]
        n_chunks = -(-n // _CHUNK)
        sorted_counts = np.zeros(n_chunks * _CHUNK, dtype=np.int64)
        sorted_counts[:n] = counts[self.order]
        widths = sorted_counts.reshape(n_chunks, _CHUNK).max(axis=1)
        self.chunk_ptr = np.concatenate([[0], np.cumsum(widths * _CHUNK)]).astype(np.int64)
        # Padding: value 0 on the constant column (always finite).
        self.indices = np.full(self.chunk_ptr[-1], n + n_inputs, dtype=np.int32)
        self.values = np.zeros(self.chunk_ptr[-1])
        k = position[rows]
        flat = self.chunk_ptr[k // _CHUNK] + slot * _CHUNK + k % _CHUNK
        self.indices[flat] = columns
        self.values[flat] = values
        self.n_chunks = n_chunks

    def matches(self, input_weights: np.ndarray, bias: np.ndarray) -> bool:
        """Whether this layout was built from these input weights and bias."""
        return (input_weights.shape == self.input_weights.shape
                and np.array_equal(input_weights, self.input_weights)
                and np.array_equal(bias, self.bias))


def sliced_layout(csr: CSR, input_weights: np.ndarray, bias: np.ndarray) -> SlicedLayout:
    """The :class:`SlicedLayout` of ``[W | W_in | b]``, kept on ``csr`` for later calls (and
    rebuilt when the input weights or the bias differ from those it was built with)."""
    layout = getattr(csr, "_sliced_layout", None)
    if layout is None or not layout.matches(input_weights, bias):
        layout = SlicedLayout(csr, input_weights, bias)
        csr._sliced_layout = layout
    return layout


def generate(layout: SlicedLayout, leak: float, readout_weights: np.ndarray,
             intercept: np.ndarray, first: np.ndarray | None, state: np.ndarray | None,
             n_steps: int, *, context: np.ndarray | None = None,
             squared_units: bool = False, readout_input: bool = False,
             threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Closed-loop generation, each output fed back as the next input, in one call.

    Per step, from the first output y_0 and state x_0,

        x_t = (1 - a) x_{t-1} + a tanh(W_in y_{t-1} + W x_{t-1} + b),
        y_t = W_out^T phi_t + c,   phi_t = [g(x_t), y_{t-1} (when readout_input)],

    g squaring units 0, 2, 4, ... when ``squared_units``. With ``context``, x_0 is instead the
    state after teacher-forced steps on the context inputs u_1 .. u_T (from ``state``) and
    y_0 = W_out^T [g(x_0), u_T] + c, as :meth:`ESN.predict` starts its closed loop.

    Parameters
    ----------
    layout : SlicedLayout
        W, W_in (N, I) and b (:func:`sliced_layout`).
    leak : float in (0, 1]
    readout_weights : array (F, I)
        W_out: F = N, or N + I with ``readout_input`` (the input's rows last).
    intercept : array (I,)
    first : array (B, I) or None
        y_0 of each of B sequences (None with ``context``).
    state : array (B, N) or None
        x_0, or the state before the context (None: zeros).
    n_steps : int
        Outputs per sequence, y_0 included.
    context : array (B, T, I), T >= 1, optional
        Teacher-forced inputs run before the closed loop (``first`` must then be None).
    threads : int
        Sequences run in parallel on this many threads (one sequence always runs on one).

    Returns
    -------
    outputs (B, n_steps, I) and the final states (B, N).
    """
    library = _library()
    if library is None:
        raise RuntimeError("the compiled ESN kernel is not available here")
    if not 0.0 < leak <= 1.0:
        raise ValueError(f"leak must be in (0, 1], got {leak}")
    n, n_inputs = layout.n, layout.n_inputs
    readout_weights = np.asarray(readout_weights, dtype=np.float64)
    expected = (n + n_inputs if readout_input else n, n_inputs)
    if readout_weights.shape != expected:
        raise ValueError(f"readout_weights must be {expected} (outputs fed back as inputs), "
                         f"got {readout_weights.shape}")
    intercept = np.ascontiguousarray(intercept, dtype=np.float64)
    if intercept.shape != (n_inputs,):
        raise ValueError(f"intercept must be ({n_inputs},), got {intercept.shape}")
    if (first is None) == (context is None):
        raise ValueError("give exactly one of first and context")
    if context is not None:
        context = np.ascontiguousarray(context, dtype=np.float64)
        if context.ndim != 3 or context.shape[1] < 1 or context.shape[2] != n_inputs:
            raise ValueError(f"context must be (B, T >= 1, {n_inputs}), got {context.shape}")
        if not np.isfinite(context).all():
            raise ValueError("context contains NaN or inf")
        batch, n_context = context.shape[0], context.shape[1]
    else:
        first = np.ascontiguousarray(first, dtype=np.float64)
        if first.ndim != 2 or first.shape[1] != n_inputs:
            raise ValueError(f"first must be (B, {n_inputs}), got {first.shape}")
        batch, n_context = first.shape[0], 0
    if state is not None:
        state = np.ascontiguousarray(state, dtype=np.float64)
        if state.shape != (batch, n):
            raise ValueError(f"state must be ({batch}, {n}), got {state.shape}")
    n_steps = int(n_steps)
    if n_steps < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}")
    # W_out^T in the layout's unit order: one contiguous row per output.
    readout_t = np.ascontiguousarray(readout_weights[:n][layout.order].T)
    readout_input_t = (np.ascontiguousarray(readout_weights[n:].T) if readout_input
                       else None)
    square_mask = ((layout.order % 2 == 0).astype(np.float64) if squared_units else None)
    outputs = np.empty((batch, n_steps, n_inputs))
    final = np.empty((batch, n))
    failed = library.esn_generate_f64(
        ctypes.c_long(n), ctypes.c_long(n_inputs), ctypes.c_long(batch),
        ctypes.c_long(n_steps), ctypes.c_long(layout.n_chunks), _pointer(layout.chunk_ptr),
        _pointer(layout.indices), _pointer(layout.values), _pointer(layout.order),
        ctypes.c_double(leak), _pointer(readout_t), _pointer(readout_input_t),
        _pointer(intercept), _pointer(square_mask), _pointer(first), _pointer(context),
        ctypes.c_long(n_context), _pointer(state), _pointer(outputs), _pointer(final),
        ctypes.c_int(max(int(threads), 1)))
    if failed:
        raise MemoryError("the ESN kernel could not allocate its scratch memory")
    return outputs, final
