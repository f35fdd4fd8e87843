"""A compiled CPU kernel for the fused LTC solver (forward and recomputing backward).

The same computation as :mod:`tsrnn.nn._ltc_kernels` (whose module docstring derives the
backward pass), written as one C loop nest per pass so that each synapse activation is
computed in registers and consumed at once: nothing of size (B, H, H) is written to memory.
Batch elements are independent, so both passes run in parallel over the batch with OpenMP;
the parameter gradients are summed per fixed chunk of consecutive samples (set by the batch
size alone) and the chunks' sums added in order at the end, so that a training gives the same
bits on every run and for any thread count, while threads take chunks dynamically.

The backward pass, per sample and step (last to first), recomputes the ``unfolds`` updates
from the stored state at the start of the step, keeping their activations (unfolds x H x H,
~100 kB for 64 units: it stays in cache), then runs the adjoint updates in reverse.

The source is compiled on first use by :mod:`tsrnn._native` (once per machine and version).
Where no compiler works, or the environment variable
``TSRNN_NO_NATIVE`` is set, :func:`available` is False and the LTC module falls back to the
pure-torch implementation. float32 uses an inlined exp (relative error < 2e-7), float64 the C
library's.
"""

from __future__ import annotations

import ctypes

import torch

from .. import _native

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* exp for float32 without a library call, so that the loops below vectorise fully:
   2^n e^r with n = round(x / ln 2), |r| <= ln(2) / 2, e^r by its degree-6 Taylor
   polynomial (relative error < 2e-7, about one float32 ulp), 2^n by the exponent bits. */
static inline float fast_expf(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = __builtin_roundf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.3888889e-3f;
    p = p * r + 8.3333333e-3f; p = p * r + 4.1666667e-2f; p = p * r + 1.6666667e-1f;
    p = p * r + 0.5f; p = p * r + 1.0f; p = p * r + 1.0f;
    union { float f; int32_t i; } scale;
    scale.i = ((int32_t)n + 127) << 23;
    return p * scale.f;
}

/* All (H, H) matrices are source-major: entry [j * H + i] is the synapse j -> i, so the
   innermost loops run over the target i with unit stride. */
#define DEFINE_LTC(real, EXP, SUFFIX)                                                       \
static void ltc_unfolds_##SUFFIX(long H, long K, const real* restrict cb,                   \
                                 const real* restrict nb, const real* restrict db,          \
                                 const real* restrict sig, const real* restrict smu,        \
                                 const real* restrict w, const real* restrict we,           \
                                 real* restrict vs, real* restrict S, real* restrict den,   \
                                 real* restrict num) {                                      \
    /* vs holds K + 1 states; S (K x H x H) and den (K x H) are kept when S != NULL. */     \
    for (long k = 0; k < K; ++k) {                                                          \
        const real* v = vs + k * H;                                                         \
        real* dk = den + (S ? k * H : 0);                                                   \
        for (long i = 0; i < H; ++i) { num[i] = 0; dk[i] = 0; }                             \
        for (long j = 0; j < H; ++j) {                                                      \
            const real vj = v[j];                                                           \
            const real* sj = sig + j * H; const real* mj = smu + j * H;                     \
            const real* wj = w + j * H; const real* ej = we + j * H;                        \
            if (S) {                                                                        \
                real* Sj = S + (k * H + j) * H;                                             \
                for (long i = 0; i < H; ++i) {                                              \
                    real s = (real)1 / ((real)1 + EXP(mj[i] - sj[i] * vj));                 \
                    Sj[i] = s; num[i] += s * ej[i]; dk[i] += s * wj[i];                     \
                }                                                                           \
            } else {                                                                        \
                for (long i = 0; i < H; ++i) {                                              \
                    real s = (real)1 / ((real)1 + EXP(mj[i] - sj[i] * vj));                 \
                    num[i] += s * ej[i]; dk[i] += s * wj[i];                                \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
        real* vn = vs + (k + 1) * H;                                                        \
        for (long i = 0; i < H; ++i) {                                                      \
            dk[i] += cb[i] + db[i];                                                         \
            vn[i] = (cb[i] * v[i] + nb[i] + num[i]) / dk[i];                                \
        }                                                                                   \
    }                                                                                       \
}                                                                                           \
                                                                                            \
void ltc_forward_##SUFFIX(long B, long L, long H, long K, const real* v0, const real* c,     \
                          const real* n, const real* d, const real* sig, const real* smu,   \
                          const real* w, const real* we, real* states, int threads) {       \
    _Pragma("omp parallel num_threads(threads)")                                            \
    {                                                                                       \
        real* vs = (real*)malloc((K + 3) * H * sizeof(real));                               \
        real* den = vs + (K + 1) * H; real* num = den + H;                                  \
        _Pragma("omp for schedule(dynamic)")                                                \
        for (long b = 0; b < B; ++b) {                                                      \
            memcpy(vs, v0 + b * H, H * sizeof(real));                                       \
            for (long t = 0; t < L; ++t) {                                                  \
                long o = (b * L + t) * H;                                                   \
                ltc_unfolds_##SUFFIX(H, K, c + o, n + o, d + o, sig, smu, w, we, vs, 0,     \
                                     den, num);                                             \
                memcpy(states + o, vs + K * H, H * sizeof(real));                           \
                memcpy(vs, vs + K * H, H * sizeof(real));                                   \
            }                                                                               \
        }                                                                                   \
        free(vs);                                                                           \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* The adjoint chain of one unfold: dL/dv from gnum, gden (the parameter gradients are     \
   summed later, once per step, in ltc_accumulate). */                                      \
static void ltc_chain_##SUFFIX(long H, const real* restrict v, const real* restrict S,      \
                               const real* restrict sig, const real* restrict w,            \
                               const real* restrict we, const real* restrict gnum,          \
                               const real* restrict gden, const real* restrict cb,          \
                               real* restrict g) {                                          \
    for (long j = 0; j < H; ++j) {                                                          \
        const real* sj = sig + j * H; const real* wj = w + j * H;                           \
        const real* ej = we + j * H; const real* Sj = S + j * H;                            \
        real back = 0;                                                                      \
        for (long i = 0; i < H; ++i) {                                                      \
            real s = Sj[i];                                                                 \
            back += (gnum[i] * ej[i] + gden[i] * wj[i]) * s * ((real)1 - s) * sj[i];        \
        }                                                                                   \
        g[j] = back + cb[j] * gnum[j];                                                      \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* Parameter gradients of the K unfolds of one step (rows of the sums stay in L1). */           \
static void ltc_accumulate_##SUFFIX(long H, long K, const real* restrict vs,                \
                                    const real* restrict S, const real* restrict w,         \
                                    const real* restrict we, const real* restrict gnum,     \
                                    const real* restrict gden, real* restrict asig,         \
                                    real* restrict asmu, real* restrict aw,                 \
                                    real* restrict awe) {                                   \
    long HH = H * H;                                                                        \
    for (long j = 0; j < H; ++j) {                                                          \
        const real* wj = w + j * H; const real* ej = we + j * H;                            \
        real* restrict as = asig + j * H; real* restrict am = asmu + j * H;                 \
        real* restrict aww = aw + j * H; real* restrict ae = awe + j * H;                   \
        for (long k = 0; k < K; ++k) {                                                      \
            const real* restrict Sk = S + k * HH + j * H;                                   \
            const real* restrict gnk = gnum + k * H; const real* restrict gdk = gden + k * H; \
            const real vj = vs[k * H + j];                                                  \
            for (long i = 0; i < H; ++i) {                                                  \
                real s = Sk[i];                                                             \
                real p = (gnk[i] * ej[i] + gdk[i] * wj[i]) * s * ((real)1 - s);             \
                ae[i] += gnk[i] * s; aww[i] += gdk[i] * s;                                  \
                as[i] += p * vj; am[i] -= p;                                                \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
}                                                                                           \
                                                                                            \
void ltc_backward_##SUFFIX(long B, long L, long H, long K, const real* v0, const real* c,    \
                           const real* n, const real* d, const real* sig, const real* smu,  \
                           const real* w, const real* we, const real* states,               \
                           const real* gstates, real* gv0, real* gc, real* gn, real* gd,    \
                           real* gsig, real* gsmu, real* gw, real* gwe, int threads) {      \
    long HH = H * H;                                                                        \
    memset(gsig, 0, HH * sizeof(real)); memset(gsmu, 0, HH * sizeof(real));                 \
    memset(gw, 0, HH * sizeof(real)); memset(gwe, 0, HH * sizeof(real));                    \
    /* The batch is cut into fixed chunks of consecutive samples (set by B alone), each     \
       with its own sums of the weight gradients, added up in chunk order after the loop:   \
       the same bits on every run and for any thread count, while threads still take        \
       chunks dynamically. (Per-thread sums, added in the order the threads finished,       \
       rounded differently on every run: trainings were not reproducible.) */               \
    /* 16 chunks: work for 16 threads; the sums hold 16 x 4 x H^2 values at most. */        \
    long chunks = B < 16 ? B : 16;                                                          \
    const long per = (B + chunks - 1) / chunks;                                             \
    chunks = (B + per - 1) / per;                                                           \
    real* sums = (real*)calloc((size_t)chunks * 4 * HH, sizeof(real));                      \
    _Pragma("omp parallel num_threads(threads)")                                            \
    {                                                                                       \
        real* S = (real*)malloc(K * HH * sizeof(real));                                     \
        real* vs = (real*)malloc((4 * K + 4) * H * sizeof(real));                           \
        real* den = vs + (K + 1) * H; real* num = den + K * H;                              \
        real* gnum = num + H; real* gden = gnum + K * H; real* g = gden + K * H;            \
        _Pragma("omp for schedule(dynamic)")                                                \
        for (long chunk = 0; chunk < chunks; ++chunk) {                                     \
          real* acc = sums + chunk * 4 * HH;                                                \
          for (long b = chunk * per; b < B && b < (chunk + 1) * per; ++b) {                 \
            memset(g, 0, H * sizeof(real));                                                 \
            for (long t = L - 1; t >= 0; --t) {                                             \
              long o = (b * L + t) * H;                                                     \
              const real* cb = c + o;                                                       \
              for (long i = 0; i < H; ++i) g[i] += gstates[o + i];                          \
              memcpy(vs, t == 0 ? v0 + b * H : states + o - H, H * sizeof(real));           \
              ltc_unfolds_##SUFFIX(H, K, cb, n + o, d + o, sig, smu, w, we, vs, S, den,     \
                                   num);                                                    \
              for (long k = K - 1; k >= 0; --k) {                                           \
                const real* v = vs + k * H; const real* vn = vs + (k + 1) * H;              \
                real* gnk = gnum + k * H; real* gdk = gden + k * H;                         \
                for (long i = 0; i < H; ++i) {                                              \
                  gnk[i] = g[i] / den[k * H + i];                                           \
                  gdk[i] = -g[i] * vn[i] / den[k * H + i];                                  \
                  gc[o + i] += gnk[i] * v[i] + gdk[i];                                      \
                  gn[o + i] += gnk[i]; gd[o + i] += gdk[i];                                 \
                }                                                                           \
                ltc_chain_##SUFFIX(H, v, S + k * HH, sig, w, we, gnk, gdk, cb, g);          \
              }                                                                             \
              ltc_accumulate_##SUFFIX(H, K, vs, S, w, we, gnum, gden, acc, acc + HH,        \
                                      acc + 2 * HH, acc + 3 * HH);                          \
            }                                                                               \
            memcpy(gv0 + b * H, g, H * sizeof(real));                                       \
          }                                                                                 \
        }                                                                                   \
        free(S); free(vs);                                                                  \
    }                                                                                       \
    for (long chunk = 0; chunk < chunks; ++chunk) {                                         \
        const real* acc = sums + chunk * 4 * HH;                                            \
        for (long e = 0; e < HH; ++e) {                                                     \
            gsig[e] += acc[e]; gsmu[e] += acc[HH + e]; gw[e] += acc[2 * HH + e];            \
            gwe[e] += acc[3 * HH + e];                                                      \
        }                                                                                   \
    }                                                                                       \
    free(sums);                                                                             \
}

DEFINE_LTC(float, fast_expf, f32)
DEFINE_LTC(double, exp, f64)
"""

def _library() -> ctypes.CDLL | None:
    return _native.load_library("ltc", _SOURCE, [f"ltc_{direction}_{suffix}"
                                                 for suffix in ("f32", "f64")
                                                 for direction in ("forward", "backward")],
                                (_native.FAST_FLAGS, _native.PLAIN_FLAGS))


def available() -> bool:
    """True when the compiled kernel could be built and loaded here."""
    return _library() is not None


def _suffix(dtype: torch.dtype) -> str:
    if dtype == torch.float32:
        return "f32"
    if dtype == torch.float64:
        return "f64"
    raise TypeError(f"the compiled LTC kernel supports float32 and float64, not {dtype}")


def _pointer(tensor: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(tensor.data_ptr())


def forward(v0, c, n, d, sigma, smu, w, we, unfolds: int) -> torch.Tensor:
    """States after every step (B, L, H).

    v0 (B, H); c, n, d (B, L, H); sigma, smu, w, we (H, H) source-major; all contiguous,
    on the CPU, of one dtype.
    """
    batch, steps, hidden = c.shape
    states = torch.empty_like(c)
    function = getattr(_library(), f"ltc_forward_{_suffix(c.dtype)}")
    function(ctypes.c_long(batch), ctypes.c_long(steps), ctypes.c_long(hidden),
             ctypes.c_long(unfolds), *(_pointer(x) for x in (
                 v0, c, n, d, sigma, smu, w, we, states)),
             ctypes.c_int(torch.get_num_threads()))
    return states


def backward(v0, c, n, d, sigma, smu, w, we, states, g_states, unfolds: int):
    """Gradients (v0, c, n, d, sigma, smu, w, we) from dL/dstates (B, L, H)."""
    batch, steps, hidden = c.shape
    g_v0 = torch.empty_like(v0)
    g_c, g_n, g_d = torch.zeros_like(c), torch.zeros_like(n), torch.zeros_like(d)
    g_sig, g_smu, g_w, g_we = (torch.empty_like(sigma) for _ in range(4))
    function = getattr(_library(), f"ltc_backward_{_suffix(c.dtype)}")
    function(ctypes.c_long(batch), ctypes.c_long(steps), ctypes.c_long(hidden),
             ctypes.c_long(unfolds), *(_pointer(x) for x in (
                 v0, c, n, d, sigma, smu, w, we, states, g_states, g_v0, g_c, g_n,
                 g_d, g_sig, g_smu, g_w, g_we)),
             ctypes.c_int(torch.get_num_threads()))
    return g_v0, g_c, g_n, g_d, g_sig, g_smu, g_w, g_we
