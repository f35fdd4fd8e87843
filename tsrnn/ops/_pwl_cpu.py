"""Compiled CPU kernels of :mod:`tsrnn.ops.pwl_rollout`: whole PLRNN-family rollouts in C.

The CPU counterpart of :mod:`tsrnn.ops._triton_pwl`, with the same three operations and the
same equations (forced rollout, its adjoint, free run; the module docstring of
:mod:`tsrnn.ops.pwl_rollout` gives them). Through torch, every step of an M = 20 AL-RNN is
about ten small tensor calls of a few microseconds each, far more than its ~800 multiply-adds;
training spent most of its time there. Here one call runs all steps of all sequences.

Layout (as in :mod:`tsrnn.nn._cfc_cpu`): the batch is cut into blocks of VL sequences, one
vector register (with AVX-512 64 bytes: 16 float32 or 8 float64 numbers; else 32 bytes, half
as many: on an AVX2 machine 64-byte vectors made an AL-RNN epoch 2x slower), and a block
runs all its steps with its states in local arrays of vectors, one vector per latent
(sequences in the lanes). Every product is then a sum of weight-times-vector terms, each
weight broadcast from memory, in a fixed order; lanes never mix, so a sequence's result does
not depend on its block, the batch or the thread count. Blocks are independent and split
between OpenMP threads (one per torch thread). GCC's vector types spell out the vectors:
written as loops over lanes, GCC vectorised the sums the wrong way round (in-order
reductions, 5x slower). No -ffast-math: IEEE arithmetic in the written order (multiply-adds
may be fused), and relu keeps NaN as torch.relu does, so that a diverging run is seen as
one.

The source is compiled on first use by :mod:`tsrnn._native`; where no compiler works, or the
environment variable ``TSRNN_NO_NATIVE`` is set, :func:`available` is False and the
rollouts keep their torch loops.
"""

from __future__ import annotations

import ctypes

import torch

from .. import _native

# Per precision: `real`, `vec` (VL reals in one vector register: one sequence per lane), `ivec`
# (integers of the same width, for comparison masks), FN(name) the function name. Block
# arrays hold one vec per row: x[i] is row i for the block's VL sequences. lin[j] != 0 marks
# the linear units of an AL-RNN (PWL maps only). Matrices row-major: P1 (M, M) for the PWL
# maps or W1 (M, H) for the shallow one; P2 = W2 (H, M) (shallow only).
_BODY = r"""
/* x where mask, else 0 (exact: a bitwise select) */
static inline vec FN(select)(vec x, ivec mask) { return (vec)((ivec)x & mask); }

/* max(x, 0), NaN kept as torch.relu keeps it (a diverging run stays NaN, as in torch) */
static inline vec FN(relu)(vec x) {
    const vec zero = {0};
    return FN(select)(x, (x > zero) | (x != x));
}

/* out = F(z) for a block (module docstring of pwl_rollout); work: max(M, H) vecs. */
static void FN(map_step)(long M, long H, int model, int clipped, const real* restrict A,
                         const real* restrict P1, const real* restrict P2,
                         const real* restrict b1, const real* restrict b2,
                         const signed char* restrict lin, const vec* restrict z,
                         vec* restrict out, vec* restrict work) {
    const vec zero = {0};
    long K = H;
    if (model == 0) {  /* work = phi(z) */
        K = M;
        for (long j = 0; j < M; ++j)
            work[j] = lin[j] ? z[j] : FN(relu)(z[j]);
    } else {  /* work = relu(W2 z + h2) - c relu(W2 z) */
        for (long k = 0; k < H; ++k) {
            vec pre = zero;
            const real* restrict row = P2 + k * M;
            for (long j = 0; j < M; ++j) pre += row[j] * z[j];
            const vec shifted = pre + b2[k];
            vec hidden = FN(relu)(shifted);
            if (clipped) hidden -= FN(relu)(pre);
            work[k] = hidden;
        }
    }
    for (long i = 0; i < M; ++i) {  /* out_i = A_i z_i + h_i + sum_k P1[i, k] work_k */
        vec acc = A[i] * z[i] + b1[i];
        const real* restrict row = P1 + i * K;
        for (long k = 0; k < K; ++k) acc += row[k] * work[k];
        out[i] = acc;
    }
}

/* out = J(z)^T a for a block; work: H vecs (shallow only). */
static void FN(map_vjp)(long M, long H, int model, int clipped, const real* restrict A,
                        const real* restrict P1, const real* restrict P2,
                        const real* restrict b2, const signed char* restrict lin,
                        const vec* restrict a, const vec* restrict z, vec* restrict out,
                        vec* restrict work) {
    const vec zero = {0}, one = zero + 1;
    if (model == 0) {  /* out_j = A_j a_j + d_j sum_i P1[i, j] a_i, d_j = 1 on linear or
                          positive units */
        for (long j = 0; j < M; ++j) {
            vec acc = zero;
            for (long i = 0; i < M; ++i) acc += P1[i * M + j] * a[i];
            out[j] = A[j] * a[j] + (lin[j] ? acc : FN(select)(acc, z[j] > zero));
        }
        return;
    }
    for (long k = 0; k < H; ++k) {  /* work_k = g'_k (W1^T a)_k */
        vec pre = zero, back = zero;
        const real* restrict row = P2 + k * M;
        for (long j = 0; j < M; ++j) pre += row[j] * z[j];
        for (long i = 0; i < M; ++i) back += P1[i * H + k] * a[i];
        vec slope = FN(select)(one, pre + b2[k] > zero);
        if (clipped) slope -= FN(select)(one, pre > zero);
        work[k] = back * slope;
    }
    for (long j = 0; j < M; ++j) {  /* out_j = A_j a_j + sum_k W2[k, j] work_k */
        vec acc = A[j] * a[j];
        for (long k = 0; k < H; ++k) acc += P2[k * M + j] * work[k];
        out[j] = acc;
    }
}

/* Forced rollout (forced != 0) or free run of B sequences of L steps:
   pred[b, k] = F(fed[b, k]) (+ drive[b, k]), fed[b, 0] = z1[b], and on the first F latents
   fed[b, k+1] = (1 - w_k m) pred[b, k] + w_k m signal[b, k] (torch.lerp's formula; w = 1
   replaces exactly, w = 0 leaves the state). Free run: signal, weight, mask and fed unused.
   Blocks of VL sequences run side by side; a last, partial block computes on zero lanes
   that are never stored. */
void FN(pwl_rollout)(long B, long L, long M, long F, long H, int model, int clipped,
                     int forced, int threads, const real* z1, const real* signal,
                     const real* weight, const signed char* mask, const real* drive,
                     const real* A, const real* P1, const real* P2, const real* b1,
                     const real* b2, const signed char* lin, real* pred, real* fed) {
    const long blocks = (B + VL - 1) / VL;
    const long width = M > H ? M : H;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long block = 0; block < blocks; ++block) {
        const long first = block * VL;
        const int n = B - first < VL ? (int)(B - first) : VL;
        vec z[M], next[M], work[width];
        for (long i = 0; i < M; ++i) z[i] = (vec){0};
        for (int l = 0; l < n; ++l)
            for (long i = 0; i < M; ++i) z[i][l] = z1[(first + l) * M + i];
        for (long k = 0; k < L; ++k) {
            if (forced)
                for (int l = 0; l < n; ++l)
                    for (long i = 0; i < M; ++i) fed[((first + l) * L + k) * M + i] = z[i][l];
            FN(map_step)(M, H, model, clipped, A, P1, P2, b1, b2, lin, z, next, work);
            for (int l = 0; l < n; ++l) {
                const long at = ((first + l) * L + k) * M;
                if (drive)
                    for (long i = 0; i < M; ++i) next[i][l] += drive[at + i];
                for (long i = 0; i < M; ++i) pred[at + i] = next[i][l];
            }
            const real w = forced ? weight[k] : (real)0;
            if (w != 0)
                for (int l = 0; l < n; ++l) {
                    const long from = ((first + l) * L + k) * F;
                    for (long f = 0; f < F; ++f) {
                        if (mask && !mask[from + f]) continue;
                        const real s = signal[from + f], value = next[f][l];
                        const real difference = s - value;
                        next[f][l] = w == 1 ? s : w < (real)0.5 ? value + w * difference
                                                                : s - difference * (1 - w);
                    }
                }
            for (long i = 0; i < M; ++i) z[i] = next[i];
        }
    }
}

/* The adjoint recursion, backwards in time, per sequence (blocks as above):
   a_k = grad[b, k] + keep_k c_{k+1},  c_k = J(fed[b, k])^T a_k,  grad_z1[b] = c_0,
   keep_k = 1 - w_k m on the first F latents (1 elsewhere);  adjoint[b, k] = a_k. */
void FN(pwl_adjoint)(long B, long L, long M, long F, long H, int model, int clipped,
                     int threads, const real* grad, const real* fed, const real* weight,
                     const signed char* mask, const real* A, const real* P1,
                     const real* P2, const real* b2, const signed char* lin, real* adjoint,
                     real* grad_z1) {
    const long blocks = (B + VL - 1) / VL;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long block = 0; block < blocks; ++block) {
        const long first = block * VL;
        const int n = B - first < VL ? (int)(B - first) : VL;
        vec carry[M], a[M], z[M], work[H];
        for (long i = 0; i < M; ++i) { carry[i] = (vec){0}; a[i] = carry[i]; z[i] = carry[i]; }
        for (long k = L - 1; k >= 0; --k) {
            const real w = weight[k];
            for (int l = 0; l < n; ++l) {
                const long at = ((first + l) * L + k) * M;
                const long from = ((first + l) * L + k) * F;
                for (long i = 0; i < M; ++i) {
                    const int on = i < F && (!mask || mask[from + i]);
                    const real value = grad[at + i] + (on ? 1 - w : (real)1) * carry[i][l];
                    a[i][l] = value;
                    adjoint[at + i] = value;
                    z[i][l] = fed[at + i];
                }
            }
            FN(map_vjp)(M, H, model, clipped, A, P1, P2, b2, lin, a, z, carry, work);
        }
        for (int l = 0; l < n; ++l)
            for (long i = 0; i < M; ++i) grad_z1[(first + l) * M + i] = carry[i][l];
    }
}
"""

_PRECISIONS = {"f32": ("float", "int", 16), "f64": ("double", "long long", 8)}


def _source() -> str:
    # One vector is one register: 64 bytes with AVX-512, else 32 (a 64-byte vector split
    # over two AVX2 registers ran the ESN kernel's equivalent loops 3.5x slower). Lanes
    # never mix, so the width changes no result.
    parts = ["#include <stddef.h>\n#define CAT(a, b) a##_##b\n#define XCAT(a, b) CAT(a, b)\n"
             "#define FN(name) XCAT(name, SFX)\n"
             "#if defined(__AVX512F__)\n#define VBYTES 64\n#else\n#define VBYTES 32\n#endif\n"]
    for suffix, (real, integer, lanes) in _PRECISIONS.items():
        parts.append(
            f"#define SFX {suffix}\n#define real {real}\n"
            f"#define VL ({lanes} * VBYTES / 64)\n"
            f"typedef {real} vec_{suffix} __attribute__((vector_size(VBYTES)));\n"
            f"typedef {integer} ivec_{suffix} __attribute__((vector_size(VBYTES)));\n"
            f"#define vec vec_{suffix}\n#define ivec ivec_{suffix}\n{_BODY}"
            "#undef SFX\n#undef real\n#undef VL\n#undef vec\n#undef ivec\n")
    return "".join(parts)


_SOURCE = _source()
# No -ffast-math: IEEE arithmetic and the sums in the written order (module docstring).
_FLAG_SETS = ((["-O3", "-march=native", "-fopenmp", "-fPIC"], ["-shared", "-fopenmp"]),
              (["-O3", "-fPIC"], ["-shared"]))


def _library() -> ctypes.CDLL | None:
    return _native.load_library(
        "pwl", _SOURCE, [f"pwl_{operation}_{suffix}" for suffix in _PRECISIONS
                         for operation in ("rollout", "adjoint")], _FLAG_SETS)


def available() -> bool:
    """True when the compiled kernels could be built and loaded here."""
    return _library() is not None


def supports(tensor: torch.Tensor) -> bool:
    """True when the kernels run for tensors like ``tensor`` (CPU, float32 or float64)."""
    return (tensor.device.type == "cpu" and tensor.dtype in (torch.float32, torch.float64)
            and available())


def _pointer(tensor: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(None if tensor is None else tensor.data_ptr())


def _function(operation: str, dtype: torch.dtype, packed):
    if packed.A.dtype != dtype:  # the C code reads every buffer as one precision
        raise ValueError(f"the map's weights are {packed.A.dtype}, the states {dtype}")
    suffix = {torch.float32: "f32", torch.float64: "f64"}[dtype]
    return getattr(_library(), f"pwl_{operation}_{suffix}")


def _sizes(*sizes: int) -> list[ctypes.c_long]:
    return [ctypes.c_long(int(n)) for n in sizes]


def launch_rollout(packed, z1, signals, weights, mask, drive, predictions, fed, forced):
    """Arguments as :func:`tsrnn.ops._triton_pwl.launch_rollout` (contiguous CPU tensors of
    one dtype; ``mask`` int8)."""
    batch, length, dim = predictions.shape
    n_forced = signals.shape[-1] if forced else 0
    _function("rollout", z1.dtype, packed)(
        *_sizes(batch, length, dim, n_forced, packed.n_hidden), ctypes.c_int(packed.model),
        ctypes.c_int(int(packed.clipped)), ctypes.c_int(int(forced)),
        ctypes.c_int(torch.get_num_threads()),
        *(_pointer(t) for t in (z1, signals if forced else None, weights if forced else None,
                                mask, drive, packed.A, packed.P1, packed.P2, packed.b1, packed.b2,
                                packed.lin, predictions, fed if forced else None)))


def launch_adjoint(packed, grad, fed, weights, mask, n_forced, adjoints, grad_z1):
    """Arguments as :func:`tsrnn.ops._triton_pwl.launch_adjoint`."""
    batch, length, dim = fed.shape
    _function("adjoint", fed.dtype, packed)(
        *_sizes(batch, length, dim, n_forced, packed.n_hidden), ctypes.c_int(packed.model),
        ctypes.c_int(int(packed.clipped)), ctypes.c_int(torch.get_num_threads()),
        *(_pointer(t) for t in (grad, fed, weights, mask, packed.A, packed.P1, packed.P2,
                                packed.b2, packed.lin, adjoints, grad_z1)))
