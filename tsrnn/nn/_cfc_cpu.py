"""A compiled CPU kernel for the CfC fast path (forward and hand-derived backward).

The same computation as :class:`tsrnn.nn._cfc_kernels.CfCSequence` (whose module docstring
gives the equations and the backward pass), written as one C loop nest per pass. At the
benchmark size (batch 64, 64 units, a backbone of 128) every step is a handful of small
matrix products and some 20 elementwise operations on a few thousand numbers; through torch
each of those is a separate call of a few microseconds, which costs more than the arithmetic.
Here one call runs all steps.

Layout: the batch is cut into blocks of ``VL`` samples (one vector register: 16 float32 or 8
float64 numbers with AVX-512, half that with AVX2), and a block runs all its steps with the
state in a local buffer, features by rows and samples by lanes, so that every elementwise
operation and every product is vectorised over the samples (64-byte vectors, two AVX2
registers each, ran the benchmark's step 3x slower on an AVX2 machine). Blocks are
independent and run in parallel (OpenMP; one thread per torch thread). The quantities the
weight gradients need (backbone activations T, previous states h, inputs u, head gradients
dL/dz, backbone gradients dL/dp) are written feature-major as (features, L * B_pad) arrays,
so that each weight gradient is one matrix product over all B * L rows, done afterwards by
torch (which uses an optimised BLAS); padded samples carry zero gradients. Per step a block
writes one cache line into each of those rows, far apart in memory, so the kernel prefetches
the next step's lines itself (measured: without it the backward pass took half as long
again). What only the backward pass reads (tanh(ff1), tanh(ff2), a, the gate or f for pure,
and 1 - T^2) is kept contiguous per block and step. The input projection W_u u + b is done
inside, so no (B, L, U) drive or its gradient is stored.

The source is compiled on first use by :mod:`tsrnn._native`; where no compiler works, or the
environment variable ``TSRNN_NO_NATIVE`` is set, :func:`available` is False and
:class:`tsrnn.nn.CfC` keeps the torch sequence function. Transcendentals are the C library's
(vectorised through glibc's libmvec where present, at most 4 ulp).
"""

from __future__ import annotations

import ctypes
import functools

import torch

from .. import _native

# The kernel body, compiled once per precision: `real` and `vec` (VL lanes of real),
# TANH / EXP the C library's functions, FN(name) the precision's function name.
_BODY = r"""
/* The samples per block (vector lanes) of this build, for the caller's layout. */
int FN(cfc_lanes)(void) { return VL; }

/* Y[m] += sum_k W[k * M + m] X[k] for m < M (vectors of VL samples): rows in register
   blocks of RB, each weight broadcast from memory into a fused multiply-add. */
static void FN(gemm_acc)(long M, long K, const real* restrict W, const vec* restrict X,
                         vec* restrict Y) {
    long m = 0;
    for (; m + RB <= M; m += RB) {
        vec acc[RB];
        for (int i = 0; i < RB; ++i) acc[i] = Y[m + i];
        for (long k = 0; k < K; ++k) {
            const vec x = X[k];
            const real* restrict w = W + k * M + m;
            for (int i = 0; i < RB; ++i) acc[i] += w[i] * x;
        }
        for (int i = 0; i < RB; ++i) Y[m + i] = acc[i];
    }
    for (; m < M; ++m) {
        vec acc = Y[m];
        for (long k = 0; k < K; ++k) acc += W[k * M + m] * X[k];
        Y[m] = acc;
    }
}

static inline real FN(sigmoid)(real q) {
    /* clamped so that EXP never overflows (the result is 0 or 1 to working precision) */
    q = q < -CLAMP ? -CLAMP : (q > CLAMP ? CLAMP : q);
    return (real)1 / ((real)1 + EXP(-q));
}

/* Feature-major (feature, L * Bp + pad) arrays, row stride S: one block of VL lanes of row r
   at step t. The pad keeps S off multiples of 4 KiB: rows a power of two apart would share
   cache sets, and every step reads one line from each of hundreds of rows. */
#define AT(array, r, t) ((array) + (r) * S + (t) * Bp + b0)
/* What the backward pass alone reads, kept block by block and step by step, contiguous:
   NZ rows of head values, then (backbone) U rows of the activation's derivative 1 - T^2. */
#define KEPT(r, t) (kept + ((block * L + (t)) * (NZ + (backbone ? U : 0)) + (r)) * VL)

void FN(cfc_forward)(long B, long L, long I, long H, long U, long NZ, long Bp, long S,
                     int mode, int backbone, const real* x, const real* wuT, const real* bu,
                     const real* h0, const real* dt, const real* whT, const real* wzT,
                     const real* bz, const real* w_tau, const real* A, real* states,
                     real* Xst, real* Tst, real* kept, real* Hprev, int threads) {
    const long M1 = backbone ? U : NZ;  /* rows of the first product */
    const long blocks = Bp / VL;
    _Pragma("omp parallel num_threads(threads)")
    {
        vec* h = aligned_alloc(64, (H + M1 + NZ + I) * sizeof(vec));
        vec* P = h + H;
        vec* Z = P + M1;
        vec* u_t = Z + NZ;
        _Pragma("omp for schedule(static)")
        for (long block = 0; block < blocks; ++block) {
            const long b0 = block * VL;
            const long nb = B - b0 < VL ? B - b0 : VL;
            for (long i = 0; i < H; ++i)
                for (int l = 0; l < VL; ++l) h[i][l] = l < nb ? h0[(b0 + l) * H + i] : 0;
            for (long t = 0; t < L; ++t) {
                real dtv[VL];
                if (t + 1 < L) {
                    /* the next step's lines of the stored arrays, one per row in rows far
                       apart: too many streams for the hardware prefetchers */
                    for (long i = 0; i < H; ++i) __builtin_prefetch(AT(Hprev, i, t + 1), 1);
                    if (backbone)
                        for (long u = 0; u < U; ++u) __builtin_prefetch(AT(Tst, u, t + 1), 1);
                }
                for (int l = 0; l < VL; ++l) dtv[l] = l < nb ? dt[(b0 + l) * L + t] : 1;
                for (long i = 0; i < H; ++i) memcpy(AT(Hprev, i, t), &h[i], sizeof(vec));
                for (int l = 0; l < VL; ++l) {
                    const real* xs = x + ((b0 + l) * L + t) * I;
                    for (long i = 0; i < I; ++i) u_t[i][l] = l < nb ? xs[i] : 0;
                }
                for (long i = 0; i < I; ++i) memcpy(AT(Xst, i, t), &u_t[i], sizeof(vec));
                /* P = b + W_u u_t + W_h h (the first layer's weights come scaled by beta) */
                for (long m = 0; m < M1; ++m)
                    for (int l = 0; l < VL; ++l) P[m][l] = bu[m];
                FN(gemm_acc)(M1, I, wuT, u_t, P);
                FN(gemm_acc)(M1, H, whT, h, P);
                if (backbone) {
                    /* one loop over the whole block: GCC vectorises a loop of unknown
                       length through libmvec, a 16-step loop it unrolls into scalar calls */
                    real* p = (real*)P;
                    for (long e = 0; e < U * VL; ++e) p[e] = TANH(p[e]);
                    for (long u = 0; u < U; ++u) {
                        memcpy(AT(Tst, u, t), &P[u], sizeof(vec));
                        real* d = KEPT(NZ + u, t);
                        for (int l = 0; l < VL; ++l) d[l] = (real)1 - P[u][l] * P[u][l];
                    }
                    for (long r = 0; r < NZ; ++r)
                        for (int l = 0; l < VL; ++l) Z[r][l] = bz[r];
                    FN(gemm_acc)(NZ, U, wzT, P, Z);
                } else {
                    memcpy(Z, P, NZ * sizeof(vec));
                }
                for (long i = 0; i < H; ++i) {
                    real out[VL];
                    if (mode == 2) {  /* pure: h' = A - A exp(-dt (w_tau + |f|)) f */
                        for (int l = 0; l < VL; ++l) {
                            real f = Z[i][l];
                            real decay = EXP(-dtv[l] * (w_tau[i] + FABS(f)));
                            out[l] = A[i] - A[i] * decay * f;
                        }
                        memcpy(KEPT(i, t), &Z[i], sizeof(vec));
                    } else {
                        real f1[VL], f2[VL], gate[VL];
                        for (int l = 0; l < VL; ++l) {
                            f1[l] = TANH(Z[i][l]);
                            f2[l] = TANH(Z[H + i][l]);
                            gate[l] = FN(sigmoid)(Z[2 * H + i][l] * dtv[l] + Z[3 * H + i][l]);
                            out[l] = mode == 0 ? f1[l] + gate[l] * (f2[l] - f1[l])
                                               : f1[l] + gate[l] * f2[l];
                        }
                        /* kept for the backward pass: tanh(ff1), tanh(ff2), a, gate */
                        memcpy(KEPT(i, t), f1, sizeof(vec));
                        memcpy(KEPT(H + i, t), f2, sizeof(vec));
                        memcpy(KEPT(2 * H + i, t), &Z[2 * H + i], sizeof(vec));
                        memcpy(KEPT(3 * H + i, t), gate, sizeof(vec));
                    }
                    for (int l = 0; l < VL; ++l) h[i][l] = out[l];
                }
                for (int l = 0; l < nb; ++l) {
                    real* s = states + ((b0 + l) * L + t) * H;
                    for (long i = 0; i < H; ++i) s[i] = h[i][l];
                }
            }
        }
        free(h);
    }
}

void FN(cfc_backward)(long B, long L, long I, long H, long U, long NZ, long Bp, long S,
                      int mode, int backbone, const real* dt, const real* wu, const real* wh,
                      const real* wz, const real* w_tau, const real* A, const real* kept,
                      const real* g_states, real* g_x, real* g_h0, real* g_dt, real* gZ,
                      real* gP, real* g_sums, real* g_tau_blocks, real* g_A_blocks,
                      int threads) {
    const long M1 = backbone ? U : NZ;
    const long blocks = Bp / VL;
    _Pragma("omp parallel num_threads(threads)")
    {
        vec* g = aligned_alloc(64, (2 * H + M1 + 2 * NZ + U + I) * sizeof(vec));
        vec* g_new = g + H;
        vec* gp = g_new + H;
        vec* gz = gp + M1;
        vec* sums = gz + NZ;  /* sums over the steps of dL/dz (NZ) and dL/dp (U) */
        vec* g_u = sums + NZ + U;
        _Pragma("omp for schedule(static)")
        for (long block = 0; block < blocks; ++block) {
            const long b0 = block * VL;
            const long nb = B - b0 < VL ? B - b0 : VL;
            real* g_tau = g_tau_blocks ? g_tau_blocks + block * H : NULL;
            real* g_A = g_A_blocks ? g_A_blocks + block * H : NULL;
            memset(g, 0, H * sizeof(vec));
            memset(sums, 0, (NZ + U) * sizeof(vec));
            for (long t = L - 1; t >= 0; --t) {
                real dtv[VL], g_dt_t[VL];
                if (t > 0) {  /* as in the forward pass */
                    for (long r = 0; r < NZ; ++r) __builtin_prefetch(AT(gZ, r, t - 1), 1);
                    if (backbone)
                        for (long u = 0; u < U; ++u) __builtin_prefetch(AT(gP, u, t - 1), 1);
                }
                for (int l = 0; l < VL; ++l) {
                    dtv[l] = l < nb ? dt[(b0 + l) * L + t] : 1;
                    g_dt_t[l] = 0;
                }
                for (int l = 0; l < nb; ++l) {
                    const real* gs = g_states + ((b0 + l) * L + t) * H;
                    for (long i = 0; i < H; ++i) g[i][l] += gs[i];
                    if (t > 0)
                        for (long i = 0; i < H; i += 64 / sizeof(real))
                            __builtin_prefetch(gs - H + i);
                }
                for (long i = 0; i < H; ++i) {
                    if (mode == 2) {
                        const real* f = KEPT(i, t);
                        real sum_tau = 0, sum_A = 0;
                        for (int l = 0; l < VL; ++l) {
                            real rate = w_tau[i] + FABS(f[l]);
                            real decay = EXP(-dtv[l] * rate);
                            real gl = g[i][l];
                            /* dh/df = -A decay (1 - dt |f|) */
                            gz[i][l] = -gl * A[i] * decay * ((real)1 - dtv[l] * FABS(f[l]));
                            sum_tau += gl * A[i] * decay * f[l] * dtv[l];
                            sum_A += gl * ((real)1 - decay * f[l]);
                            g_dt_t[l] += gl * A[i] * decay * f[l] * rate;
                        }
                        g_tau[i] += sum_tau;
                        g_A[i] += sum_A;
                    } else {
                        const real* f1 = KEPT(i, t);
                        const real* f2 = KEPT(H + i, t);
                        const real* a = KEPT(2 * H + i, t);
                        const real* gate = KEPT(3 * H + i, t);
                        for (int l = 0; l < VL; ++l) {
                            real gl = g[i][l];
                            real spread = mode == 0 ? f2[l] - f1[l] : f2[l];
                            real g_q = gl * spread * gate[l] * ((real)1 - gate[l]);
                            real g_f1 = mode == 0 ? gl * ((real)1 - gate[l]) : gl;
                            gz[i][l] = g_f1 * ((real)1 - f1[l] * f1[l]);
                            gz[H + i][l] = gl * gate[l] * ((real)1 - f2[l] * f2[l]);
                            gz[2 * H + i][l] = g_q * dtv[l];
                            gz[3 * H + i][l] = g_q;
                            g_dt_t[l] += g_q * a[l];
                        }
                    }
                }
                for (long r = 0; r < NZ; ++r) {
                    memcpy(AT(gZ, r, t), &gz[r], sizeof(vec));
                    sums[r] += gz[r];
                }
                if (backbone) {
                    memset(gp, 0, U * sizeof(vec));
                    FN(gemm_acc)(U, NZ, wz, gz, gp);
                    for (long u = 0; u < U; ++u) {
                        const real* d = KEPT(NZ + u, t);
                        for (int l = 0; l < VL; ++l) gp[u][l] *= d[l];
                        memcpy(AT(gP, u, t), &gp[u], sizeof(vec));
                        sums[NZ + u] += gp[u];
                    }
                } else {
                    memcpy(gp, gz, NZ * sizeof(vec));
                }
                memset(g_u, 0, I * sizeof(vec));
                FN(gemm_acc)(I, M1, wu, gp, g_u);
                for (int l = 0; l < nb; ++l) {
                    real* gx = g_x + ((b0 + l) * L + t) * I;
                    for (long i = 0; i < I; ++i) gx[i] = g_u[i][l];
                }
                if (g_dt)
                    for (int l = 0; l < nb; ++l) g_dt[(b0 + l) * L + t] = g_dt_t[l];
                memset(g_new, 0, H * sizeof(vec));
                FN(gemm_acc)(H, M1, wh, gp, g_new);
                memcpy(g, g_new, H * sizeof(vec));
            }
            for (long i = 0; i < H; ++i)
                for (int l = 0; l < nb; ++l) g_h0[(b0 + l) * H + i] = g[i][l];
            /* the per-block sums, over the lanes (padded lanes hold zeros) */
            for (long r = 0; r < NZ + (backbone ? U : 0); ++r) {
                real total = 0;
                for (int l = 0; l < VL; ++l) total += sums[r][l];
                g_sums[block * (NZ + U) + r] = total;
            }
        }
        free(g);
    }
}
#undef AT
#undef KEPT
"""

# lanes: per 64-byte vector (AVX-512); builds without AVX-512 take half (see _source).
_PRECISIONS = {
    "f32": dict(real="float", lanes=16, tanh="tanhf", exp="expf", fabs="fabsf", clamp="80.0f"),
    "f64": dict(real="double", lanes=8, tanh="tanh", exp="exp", fabs="fabs", clamp="700.0"),
}


def _source() -> str:
    # One vector is one register: 64 bytes with AVX-512, else 32 (module docstring). The
    # Python side reads the lanes from the build.
    parts = ["#include <math.h>\n#include <stdlib.h>\n#include <string.h>\n",
             "#define CAT(a, b) a##_##b\n#define XCAT(a, b) CAT(a, b)\n#define FN(name) "
             "XCAT(name, SFX)\n#define RB 8\n"
             "#if defined(__AVX512F__)\n#define VBYTES 64\n#else\n#define VBYTES 32\n#endif\n"]
    for suffix, p in _PRECISIONS.items():
        parts.append(
            f"#define SFX {suffix}\n#define real {p['real']}\n"
            f"#define VL ({p['lanes']} * VBYTES / 64)\n"
            f"#define TANH {p['tanh']}\n#define EXP {p['exp']}\n#define FABS {p['fabs']}\n"
            f"#define CLAMP {p['clamp']}\n"
            f"typedef {p['real']} vec_{suffix} __attribute__((vector_size(VBYTES)));\n"
            f"#define vec vec_{suffix}\n")
        parts.append(_BODY)
        parts.append("#undef SFX\n#undef real\n#undef VL\n#undef TANH\n#undef EXP\n"
                     "#undef FABS\n#undef CLAMP\n#undef vec\n")
    return "".join(parts)


_SOURCE = _source()
# Tried in turn: with OpenMP and the machine's vector width, then plain optimisation (where a
# compiler lacks those); see tsrnn._native for why -ffast-math is a compile flag only.
_FLAG_SETS = (_native.FAST_FLAGS, _native.PLAIN_FLAGS)
_MODE_CODES = {"default": 0, "no_gate": 1, "pure": 2}


def _library() -> ctypes.CDLL | None:
    return _native.load_library(
        "cfc", _SOURCE, [f"cfc_{function}_{suffix}" for suffix in _PRECISIONS
                         for function in ("forward", "backward", "lanes")], _FLAG_SETS)


def available() -> bool:
    """True when the compiled kernel could be built and loaded here."""
    return _library() is not None


def supports(x: torch.Tensor) -> bool:
    """True when the kernel runs for the input ``x`` (CPU, float32 or float64, built)."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and available())


def _suffix(dtype: torch.dtype) -> str:
    return {torch.float32: "f32", torch.float64: "f64"}[dtype]


@functools.cache
def _lanes(dtype: torch.dtype) -> int:
    """Samples per block: one register of the build's widest vectors (64 bytes with
    AVX-512, else 32)."""
    function = getattr(_library(), f"cfc_lanes_{_suffix(dtype)}")
    function.restype = ctypes.c_int  # load_library sets None, for the kernels
    return int(function())


def _pointer(tensor: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(None if tensor is None else tensor.data_ptr())


def _real(dtype: torch.dtype):
    return ctypes.c_float if dtype == torch.float32 else ctypes.c_double


def _row_stride(steps: int, padded: int, dtype: torch.dtype) -> int:
    """Row stride of the feature-major arrays: steps * padded numbers, plus one cache line
    where that is a multiple of 4 KiB (see the kernel's AT)."""
    flat = steps * padded
    size = torch.finfo(dtype).bits // 8
    return flat + 64 // size if (flat * size) % 4096 == 0 else flat


def _rows(like: torch.Tensor, rows: int, stride: int) -> torch.Tensor:
    """An uninitialised (rows, stride) array (the kernel writes the first flat columns)."""
    return like.new_empty(rows, stride)


_NO_DOUBLE_BACKWARD = (
    "the CfC fast path has a hand-written backward pass and no second derivatives; "
    "use CfC(..., fast_path=False) for create_graph=True")


class CfCNativeSequence(torch.autograd.Function):
    """All steps of an unwired CfC with a backbone of 0 or 1 layer, as the compiled kernel.

    The computation of :class:`tsrnn.nn._cfc_kernels.CfCSequence` (equations there), with the
    input projection inside: where CfCSequence takes drive = W_u u + b, this takes u and
    (W_u, b), so that no (B, L, U) drive or its gradient is ever stored.

    Inputs: x (B, L, I); W_u (U, I) and b (U,) (without backbone (heads * H, I) and the head
    bias); h0 (B, H); dt (B, L, 1); W_h (U, H) (or (heads * H, H)); W_z (heads * H, U) and
    b_z, or None without backbone; w_tau (H,) and A (H,) for the pure mode, else None; mode;
    alpha, beta. Output: the states (B, L, H). CPU tensors of one dtype, float32 or float64.
    """

    @staticmethod
    def forward(ctx, x, w_u, b_u, h0, dt, w_h, w_z, b_z, w_tau, A, mode, alpha, beta):
        backbone = w_z is not None
        batch, steps, inputs = x.shape
        hidden = h0.shape[-1]
        dtype = x.dtype
        lanes = _lanes(dtype)
        padded = -(-batch // lanes) * lanes
        units = w_h.shape[0] if backbone else 0
        heads = w_z.shape[0] if backbone else w_h.shape[0]
        scale = beta if backbone else 1.0
        # Scaled weights (the backbone's activation alpha tanh(beta p) folded in), laid out
        # for the kernel's products: (K, M) for a product with M rows over K inputs.
        w_u_scaled, b_u_scaled, w_h_scaled = scale * w_u, scale * b_u, scale * w_h
        w_z_scaled = alpha * w_z if backbone else None
        w_u_rows = w_u_scaled.T.contiguous()
        w_h_rows = w_h_scaled.T.contiguous()
        w_z_rows = w_z_scaled.T.contiguous() if backbone else None
        bias_u = b_u_scaled.contiguous()
        x = x.contiguous()
        h0 = h0.contiguous()
        dt_flat = dt.reshape(batch, steps).contiguous()
        bias_z = b_z.contiguous() if backbone else None
        w_tau = w_tau.contiguous() if w_tau is not None else None
        A = A.contiguous() if A is not None else None
        stride = _row_stride(steps, padded, dtype)
        states = x.new_empty(batch, steps, hidden)
        x_store = _rows(x, inputs, stride)
        t_store = _rows(x, units, stride) if backbone else None
        kept = x.new_empty(padded // lanes, steps, heads + units, lanes)
        h_previous = _rows(x, hidden, stride)
        function = getattr(_library(), f"cfc_forward_{_suffix(dtype)}")
        function(*(ctypes.c_long(n) for n in (batch, steps, inputs, hidden, units, heads,
                                              padded, stride)),
                 ctypes.c_int(_MODE_CODES[mode]), ctypes.c_int(int(backbone)),
                 *(_pointer(t) for t in (x, w_u_rows, bias_u, h0, dt_flat, w_h_rows,
                                         w_z_rows, bias_z, w_tau, A, states, x_store,
                                         t_store, kept, h_previous)),
                 ctypes.c_int(torch.get_num_threads()))
        ctx.save_for_backward(dt_flat, w_u_scaled, w_h_scaled, w_z_scaled, w_tau, A,
                              x_store, t_store, kept, h_previous)
        ctx.mode, ctx.alpha, ctx.beta, ctx.batch = mode, alpha, beta, batch
        ctx.steps, ctx.padded = steps, padded
        return states

    @staticmethod
    def backward(ctx, g_states):
        # Grad mode is on in a backward pass only under create_graph=True.
        if torch.is_grad_enabled():
            raise RuntimeError(_NO_DOUBLE_BACKWARD)
        (dt, w_u_scaled, w_h_scaled, w_z_scaled, w_tau, A, x_store, t_store, kept,
         h_previous) = ctx.saved_tensors
        mode, alpha, beta, batch = ctx.mode, ctx.alpha, ctx.beta, ctx.batch
        steps, padded = ctx.steps, ctx.padded
        backbone = w_z_scaled is not None
        scale = beta if backbone else 1.0
        inputs = x_store.shape[0]
        hidden, stride = h_previous.shape
        units = t_store.shape[0] if backbone else 0
        heads = kept.shape[2] - units
        dtype = g_states.dtype
        blocks = padded // _lanes(dtype)
        g_states = g_states.contiguous()
        g_x = g_states.new_empty(batch, steps, inputs)
        g_h0 = g_states.new_empty(batch, hidden)
        want_dt = ctx.needs_input_grad[4]
        g_dt = g_states.new_empty(batch, steps) if want_dt else None
        g_z = _rows(g_states, heads, stride)
        g_p = _rows(g_states, units, stride) if backbone else None
        g_sums = g_states.new_empty(blocks, heads + units)
        pure = mode == "pure"
        g_tau = g_states.new_zeros(blocks, hidden) if pure else None
        g_A = g_states.new_zeros(blocks, hidden) if pure else None
        # Named, so that the copies live until the kernel has run.
        w_u_rows = w_u_scaled.contiguous()
        w_h_rows = w_h_scaled.contiguous()
        w_z_rows = None if w_z_scaled is None else w_z_scaled.contiguous()
        function = getattr(_library(), f"cfc_backward_{_suffix(dtype)}")
        function(*(ctypes.c_long(n) for n in (batch, steps, inputs, hidden, units, heads,
                                              padded, stride)),
                 ctypes.c_int(_MODE_CODES[mode]), ctypes.c_int(int(backbone)),
                 *(_pointer(t) for t in (dt, w_u_rows, w_h_rows, w_z_rows, w_tau, A, kept,
                                         g_states, g_x, g_h0, g_dt, g_z, g_p, g_sums, g_tau,
                                         g_A)),
                 ctypes.c_int(torch.get_num_threads()))
        # Weight gradients: one product over all B * L rows (padded samples are zero).
        flat = steps * padded
        sums = g_sums.sum(0)
        g_z_rows = g_z[:, :flat]
        # dL/d(first layer's pre-activation before the beta scale): rows of g_p or g_z.
        first = g_p[:, :flat] if backbone else g_z_rows
        g_w_u = scale * (first @ x_store[:, :flat].T)
        g_w_h = scale * (first @ h_previous[:, :flat].T)
        if backbone:
            g_b_u = scale * sums[heads:]
            g_w_z = alpha * (g_z_rows @ t_store[:, :flat].T)
            g_b_z = sums[:heads]
        else:
            g_b_u = sums[:heads]
            g_w_z = g_b_z = None
        g_w_tau = g_tau.sum(0) if pure else None
        g_A_total = g_A.sum(0) if pure else None
        g_dt = g_dt[..., None] if want_dt else None
        return (g_x, g_w_u, g_b_u, g_h0, g_dt, g_w_h, g_w_z, g_b_z, g_w_tau, g_A_total,
                None, None, None)
