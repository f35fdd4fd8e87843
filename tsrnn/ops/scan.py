"""Diagonal linear scans: h_t = a_t * h_{t-1} + b_t, differentiable, on CPU and CUDA.

The recurrence behind diagonal state-space models (S4D, S5, Mamba), linear RNNs (LRU, minGRU)
and each Newton step of DEER-style parallel nonlinear recurrences. Elementwise over channels:

    forward  (reverse=False):  h_t = a_t * h_{t-1} + b_t,   t = 0, ..., L-1,   h_{-1} = h0
    reverse  (reverse=True):   h_t = a_t * h_{t+1} + b_t,   t = L-1, ..., 0,   h_L    = h0

Backward (Martin & Cundy, "Parallelizing linear recurrent neural nets over sequence length",
ICLR 2018), for the forward direction, in torch's convention for complex gradients (the
gradient of a real loss L is dL/d(conj z); for real tensors drop the conjugates):

    g_t      = dL/dh_t + conj(a_{t+1}) * g_{t+1}     (a reverse scan, g_{L} = 0)
    dL/db_t  = g_t
    dL/da_t  = g_t * conj(h_{t-1})
    dL/dh0   = conj(a_0) * g_0

so the backward pass is the same kernel run in the other direction, followed by one
elementwise product. The reverse direction mirrors every index.

Backends (``backend=``):

- ``"torch"``: any device; a time loop of in-place fused multiply-adds on (B, D) slices, or
  on the CPU, when the slices are small (B * D <= 2048) and the sequence long, a two-pass
  chunked scan (chunk ends first, then every chunk from its exact initial state) that needs
  ~3 sqrt(L) operations instead of L; both in the accumulation dtype.
- ``"triton"``: CUDA tensors with Triton installed; one fused kernel forward and one
  backward (``tsrnn.ops._triton_scan``), at memory bandwidth when B * D / 512 fills the GPU
  (H200, 8 x 1536 x 65536 float32: forward 2.33 ms = 97% of copy bandwidth, forward+backward
  6.3 ms). Parallel over batch and channels only: a long sequence of few channels leaves
  most of the GPU idle (8 x 65536 x 1536: 7.1 ms). One sequence must have L * D < 2^31
  elements (32-bit offsets).
- ``"auto"`` (default): ``"triton"`` when the tensors are on CUDA, Triton imports and the
  size fits, else ``"torch"``.

Large CPU outputs are allocated on transparent huge pages where Linux allows it (see
``_empty_output``): first-touch page faults were 40% of the forward time otherwise.

The sequential references the tests compare with are in ``tsrnn.ops._reference``.
"""

from __future__ import annotations

import ctypes
import math
import sys

import torch

from .._validation import check_option

BACKENDS = ("auto", "torch", "triton")

# Half-precision inputs are accumulated in float32 and rounded once at the output.
_ACCUMULATE = {torch.bfloat16: torch.float32, torch.float16: torch.float32}
_SUPPORTED = (torch.float16, torch.bfloat16, torch.float32, torch.float64,
              torch.complex64, torch.complex128)


# --------------------------------------------------------------------------------------------
# torch kernel

_HUGE_PAGE = 1 << 21
_MADV_HUGEPAGE = 14
_madvise = None


def _empty_output(like: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(like)``; on Linux CPUs, large buffers on transparent huge pages.

    A fresh 64 MB buffer costs 16384 page faults on first touch (38 ms of a 88 ms forward
    pass at 16 x 4096 x 256 float32, measured); asking the kernel for 2 MB pages on this
    buffer alone (madvise MADV_HUGEPAGE, what torch's THP_MEM_ALLOC_ENABLE does for every
    allocation) cuts that to ~16 ms and the scan's TLB misses with it (47 ms in all). Best
    effort: where the call is unavailable or refused nothing changes.
    """
    global _madvise
    out = torch.empty_like(like)
    size = out.numel() * out.element_size()
    if out.device.type != "cpu" or size < 4 * _HUGE_PAGE or not sys.platform.startswith("linux"):
        return out
    if _madvise is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            _madvise = libc.madvise
        except (OSError, AttributeError):
            _madvise = False
    if _madvise:
        start = (out.data_ptr() + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
        end = (out.data_ptr() + size) & ~(_HUGE_PAGE - 1)
        _madvise(start, end - start, _MADV_HUGEPAGE)  # only whole pages inside our buffer
    return out



def _sequential_scan_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                          h0: torch.Tensor | None, reverse: bool) -> None:
    """One fused multiply-add per step, written in place into ``out``'s (B, D) slices.

    The per-step views are made in one ``unbind`` call each: creating them one by one costs
    more than the arithmetic when B * D is small.
    """
    length = b.shape[1]
    if length == 0:
        return
    a_steps, b_steps, out_steps = a.unbind(1), b.unbind(1), out.unbind(1)
    order = range(length - 1, -1, -1) if reverse else range(length)
    previous = h0
    for t in order:
        if previous is None:
            out_steps[t].copy_(b_steps[t])
        else:
            torch.addcmul(b_steps[t], a_steps[t], previous, out=out_steps[t])
        previous = out_steps[t]


def _chunked_scan_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                       h0: torch.Tensor | None, reverse: bool, chunk: int) -> None:
    """Two-pass chunked scan: about 2 * chunk + L / chunk large operations instead of L small.

    Split the sequence into n = L // chunk chunks of ``chunk`` steps (the remainder runs
    sequentially). Pass 1, vectorised over all chunks: each chunk's end state from a zero
    start, s_k, and its product of coefficients, p_k = prod a (one reduction). Carries:
    c_{k+1} = s_k + p_k c_k, c_0 = h0 (n small steps). Pass 2: every chunk scanned again from
    its exact initial state c_k, writing the output. No division or logarithm, so float32
    keeps the sequential loop's accuracy.
    """
    length = b.shape[1]
    n_chunks = length // chunk
    if n_chunks == 0:
        _sequential_scan_into(out, a, b, h0, reverse)
        return
    main = n_chunks * chunk
    if reverse and main < length:  # the tail is scanned first when running backwards
        _sequential_scan_into(out[:, main:], a[:, main:], b[:, main:], h0, True)
        h0 = out[:, main]
    shape = (n_chunks, chunk)
    a_steps = a[:, :main].unflatten(1, shape).unbind(2)
    b_steps = b[:, :main].unflatten(1, shape).unbind(2)
    out_steps = out[:, :main].unflatten(1, shape).unbind(2)
    within = list(range(chunk - 1, -1, -1) if reverse else range(chunk))

    products = a[:, :main].unflatten(1, shape).prod(dim=2)  # (B, n, D)
    ends = b_steps[within[0]].clone()
    for j in within[1:]:
        torch.addcmul(b_steps[j], a_steps[j], ends, out=ends)

    carries = torch.empty_like(ends)
    carry_steps, end_steps, product_steps = carries.unbind(1), ends.unbind(1), products.unbind(1)
    previous = h0
    for k in (range(n_chunks - 1, -1, -1) if reverse else range(n_chunks)):
        if previous is None:  # a zero start: the chunk's product is not read (as in the loop,
            carry_steps[k].zero_()  # where the first a multiplies nothing), so a product
            previous = end_steps[k]  # that overflowed or holds a NaN cannot leak in
        else:
            carry_steps[k].copy_(previous)
            previous = torch.addcmul(end_steps[k], product_steps[k], carry_steps[k])

    state = carries
    for j in within:
        torch.addcmul(b_steps[j], a_steps[j], state, out=out_steps[j])
        if h0 is None and j == within[0]:  # the very first step reads no state, as in the loop
            first = n_chunks - 1 if reverse else 0
            out_steps[j][:, first] = b_steps[j][:, first]
        state = out_steps[j]
    if not reverse and main < length:
        _sequential_scan_into(out[:, main:], a[:, main:], b[:, main:], out[:, main - 1], False)


def _chunk_length(batch: int, length: int, channels: int) -> int:
    """Chunk length for the CPU scan, or 0 for the plain sequential loop.

    The loop costs L launches of ~3 us each plus one pass over memory; the chunked scan
    ~3 sqrt(L) launches but three passes. Measured (CPU time, 1 thread, 2-core machine under
    load, 2026-11-29), L = 4096: B x D = 64 (1 x 64): loop 21 ms, chunked 2 ms; 4 x 256:
    21 / 16 ms; 16 x 256: loop better; 8 x 1024: loop 135 ms, chunked 160 ms.
    """
    if length < _CHUNK_MIN_LENGTH or batch * channels > _CHUNK_MAX_SLICE:
        return 0
    return max(2, round(math.sqrt(length)))


_CHUNK_MIN_LENGTH = 64
_CHUNK_MAX_SLICE = 2048


def _torch_scan_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                     h0: torch.Tensor | None, reverse: bool) -> None:
    """Write the scan of (a, b) from ``h0`` into ``out``; all (B, L, D) with unit stride in D.

    The tensors may be views with any batch and time strides (the backward pass scans
    shifted views), all in one dtype. ``h0`` (B, D) or None (zeros).
    """
    chunk = _chunk_length(*b.shape) if b.device.type == "cpu" else 0
    if chunk:
        _chunked_scan_into(out, a, b, h0, reverse, chunk)
    else:
        _sequential_scan_into(out, a, b, h0, reverse)


# --------------------------------------------------------------------------------------------
# autograd


def _shifted_scan(out: torch.Tensor, coefficients: torch.Tensor, values: torch.Tensor,
                  reverse: bool, kernel) -> None:
    """out_t = coefficients_{t-1} * out_{t-1} + values_t (forward; mirrored when ``reverse``).

    The coefficient multiplying a state is the one stored at that state's position, as in
    the backward recurrence g_t = dL/dh_t + conj(a_{t+1}) g_{t+1}; the first state is the
    value itself. Expressed as an ordinary scan over shifted views (no copies).
    """
    if reverse:
        out[:, -1].copy_(values[:, -1])
        kernel(out[:, :-1], coefficients[:, 1:], values[:, :-1], out[:, -1], True)
    else:
        out[:, 0].copy_(values[:, 0])
        kernel(out[:, 1:], coefficients[:, :-1], values[:, 1:], out[:, 0], False)


def _torch_forward(a, b, h0, reverse):
    out = _empty_output(b)
    _torch_scan_into(out, a, b, h0, reverse)
    return out


def _torch_backward(a, h, h0, grad_h, reverse, need_h0):
    """(da, db, dh0) from the forward inputs, its output ``h`` and dL/dh; all one dtype."""
    if grad_h.shape[1] == 0:  # an empty sequence: h0 does not reach the (empty) output
        return (torch.empty_like(a), torch.empty_like(grad_h),
                torch.zeros_like(h0) if need_h0 else None)
    a_conj = a.conj() if a.is_complex() else a
    g = _empty_output(grad_h)
    _shifted_scan(g, a_conj, grad_h, not reverse, _torch_scan_into)
    h_conj = h.conj() if h.is_complex() else h
    da = _empty_output(g)
    # dL/da_t = g_t * conj(h_previous), h_previous = h0 (or 0) at the first step.
    first, rest, previous = (-1, slice(None, -1), slice(1, None)) if reverse else (
        0, slice(1, None), slice(None, -1))
    torch.mul(g[:, rest], h_conj[:, previous], out=da[:, rest])
    if h0 is None:
        da[:, first].zero_()
    else:
        torch.mul(g[:, first], h0.conj() if h0.is_complex() else h0, out=da[:, first])
    dh0 = a_conj[:, first] * g[:, first] if need_h0 else None
    return da, g, dh0


def _triton_module():
    try:
        from . import _triton_scan
    except ImportError as error:  # triton missing: say so, with the way out
        raise RuntimeError(
            "backend='triton' needs the triton package (pip install triton) and a CUDA "
            f"device; import failed: {error}. Use backend='torch' or 'auto'."
        ) from error
    return _triton_scan


def _forward(a, b, h0, reverse, backend):
    if backend == "triton":
        return _triton_module().scan_forward(a, b, h0, reverse)
    return _torch_forward(a, b, h0, reverse)


def _backward(a, h, h0, grad_h, reverse, backend, need_h0):
    if backend == "triton":
        return _triton_module().scan_backward(a, h, h0, grad_h, reverse, need_h0)
    return _torch_backward(a, h, h0, grad_h, reverse, need_h0)


class _LinearScan(torch.autograd.Function):
    """Forward and fused backward; inputs already checked, contiguous and of one dtype."""

    @staticmethod
    def forward(ctx, a, b, h0, reverse, backend):
        dtype = b.dtype
        accumulate = _ACCUMULATE.get(dtype)
        if accumulate is not None and backend != "triton":  # triton upcasts in registers
            h = _forward(a.to(accumulate), b.to(accumulate),
                         None if h0 is None else h0.to(accumulate), reverse, backend).to(dtype)
        else:
            h = _forward(a, b, h0, reverse, backend)
        ctx.save_for_backward(a, h, h0)
        ctx.reverse, ctx.backend = reverse, backend
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable  # a clear error for a second derivative
    def backward(ctx, grad_h):
        a, h, h0 = ctx.saved_tensors
        need_h0 = h0 is not None and ctx.needs_input_grad[2]
        dtype = a.dtype
        accumulate = _ACCUMULATE.get(dtype)
        if accumulate is not None and ctx.backend != "triton":
            da, db, dh0 = _backward(
                a.to(accumulate), h.to(accumulate), None if h0 is None else h0.to(accumulate),
                grad_h.to(accumulate).contiguous(), ctx.reverse, ctx.backend, need_h0)
            da, db = da.to(dtype), db.to(dtype)
            dh0 = None if dh0 is None else dh0.to(dtype)
        else:
            da, db, dh0 = _backward(a, h, h0, grad_h.to(dtype).contiguous(), ctx.reverse,
                                    ctx.backend, need_h0)
        return (da if ctx.needs_input_grad[0] else None,
                db if ctx.needs_input_grad[1] else None, dh0, None, None)


# --------------------------------------------------------------------------------------------
# public entry point


def _check_inputs(a, b, h0):
    for name, value in (("a", a), ("b", b), ("h0", h0)):
        if value is not None and not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if b.ndim != 3:
        raise ValueError(f"b must have shape (B, L, D), got {tuple(b.shape)}")
    if a.ndim != 3:
        raise ValueError(f"a must have shape (B, L, D) or broadcast to b's {tuple(b.shape)}, "
                         f"got {tuple(a.shape)}")
    try:
        shape = torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        shape = None
    if shape != b.shape:
        raise ValueError(f"a of shape {tuple(a.shape)} does not broadcast to b's shape "
                         f"{tuple(b.shape)} (a and b are (B, L, D); a may have size 1 in "
                         "any dimension)")
    if b.dtype not in _SUPPORTED:
        known = ", ".join(str(d).removeprefix("torch.") for d in _SUPPORTED)
        raise TypeError(f"linear_scan supports dtypes {known}; got b of dtype {b.dtype}")
    if a.dtype != b.dtype:
        raise TypeError(f"a and b must have the same dtype, got a {a.dtype} and b {b.dtype}; "
                        "cast one of them first (e.g. a.to(b.dtype))")
    if a.device != b.device:
        raise ValueError(f"a and b must be on the same device, got a on {a.device} and b on "
                         f"{b.device}")
    if h0 is not None:
        batch, _, channels = b.shape
        try:
            h0_shape = torch.broadcast_shapes(h0.shape, (batch, channels))
        except RuntimeError:
            h0_shape = None
        if h0.ndim > 2 or h0_shape != (batch, channels):
            raise ValueError(f"h0 must have shape (B, D) = {(batch, channels)} (or broadcast "
                             f"to it), got {tuple(h0.shape)}")
        if h0.dtype != b.dtype:
            raise TypeError(f"h0 must have the dtype of a and b ({b.dtype}), got {h0.dtype}")
        if h0.device != b.device:
            raise ValueError(f"h0 must be on the device of a and b ({b.device}), got "
                             f"{h0.device}")


def _resolve_backend(backend: str, b: torch.Tensor) -> str:
    check_option(backend, "backend", BACKENDS)
    if backend == "triton":
        if b.device.type != "cuda":
            raise ValueError(f"backend='triton' needs CUDA tensors, got tensors on {b.device}; "
                             "use backend='torch' or 'auto'")
        _triton_module().check_size(b)
        return "triton"
    if backend == "auto" and b.device.type == "cuda":
        try:
            triton_scan = _triton_module()
        except RuntimeError:  # no triton: the torch loop runs on CUDA too
            return "torch"
        return "triton" if triton_scan.fits(b) else "torch"
    return "torch"


def _report_non_finite(a, b, h0, h, reverse):
    from .._validation import check_finite

    check_finite(a, "a")
    check_finite(b, "b")
    if h0 is not None:
        check_finite(h0, "h0")
    end = 0 if reverse else -1
    bad = torch.nonzero(~torch.isfinite(h[:, end]))[0].tolist()
    raise ValueError(
        f"linear_scan overflowed: the state is not finite at the end of the sequence (batch "
        f"{bad[0]}, channel {bad[1]}) although a, b and h0 are; |a| > 1 over a long sequence "
        "grows without bound. Keep |a| <= 1 or use a wider dtype.")


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None,
                reverse: bool = False, *, backend: str = "auto",
                check_finite: bool = True) -> torch.Tensor:
    """Solve h_t = a_t * h_{t-1} + b_t over dim 1 of batch-first tensors.

    Elementwise (diagonal) linear recurrence, differentiable in ``a``, ``b`` and ``h0``
    through a fused backward pass (a reverse scan, see the module docstring; first
    derivatives only: differentiating that backward pass again raises an error). With
    ``reverse=True`` it runs from the end: h_t = a_t * h_{t+1} + b_t, h_L = h0.

    Parameters
    ----------
    a : tensor (B, L, D)
        Decay/transition coefficients. May broadcast against ``b`` (size 1 in any
        dimension, e.g. (1, L, D) or (B, L, 1) or (1, 1, D) for a time-invariant decay);
        it is then expanded to (B, L, D) in memory.
    b : tensor (B, L, D)
        Inputs. float16/bfloat16 (accumulated in float32, returned in the input dtype),
        float32, float64, complex64 or complex128; ``a`` and ``h0`` must share the dtype.
    h0 : tensor (B, D), optional
        Initial state h_{-1} (h_L when ``reverse``); zeros when None. May broadcast.
    reverse : bool
        Scan from the last step to the first.
    backend : {"auto", "torch", "triton"}
        Implementation (module docstring). ``"triton"`` raises on CPU tensors or without
        Triton; ``"auto"`` uses it on CUDA when available and falls back to ``"torch"``.
    check_finite : bool
        Raise ``ValueError`` when the result is not finite, naming the input that holds NaN
        or inf or reporting an overflow. A non-finite value anywhere in ``a``, ``b`` or
        ``h0`` that the recurrence reads reaches the last state of its channel (the first
        ``a`` multiplies nothing when ``h0`` is None), so only the (B, D) last states are
        tested: cheap, but on CUDA it synchronises with the host once per call (pass False
        inside CUDA graphs, under ``torch.compile``, or to keep the GPU queue running).

    Returns
    -------
    h : tensor (B, L, D), the dtype of ``b``, on its device.

    Non-contiguous inputs are copied to contiguous memory (results are identical). The same
    inputs give the same results on CPU and CUDA up to float rounding.

    Examples
    --------
    h_t = 0.5 h_{t-1} + 1 from h_{-1} = 0 approaches 2:

    >>> import torch
    >>> from tsrnn.ops import linear_scan
    >>> a = torch.full((1, 4, 1), 0.5); b = torch.ones(1, 4, 1)
    >>> linear_scan(a, b).flatten().tolist()
    [1.0, 1.5, 1.75, 1.875]
    """
    _check_inputs(a, b, h0)
    backend = _resolve_backend(backend, b)
    if not isinstance(reverse, bool):
        raise TypeError(f"reverse must be a bool, got {type(reverse).__name__}")
    if not isinstance(check_finite, bool):
        raise TypeError(f"check_finite must be a bool, got {type(check_finite).__name__}")
    if a.shape != b.shape:
        a = a.expand(b.shape)
    if h0 is not None and h0.shape != (b.shape[0], b.shape[2]):
        h0 = h0.expand(b.shape[0], b.shape[2])
    a, b = a.contiguous(), b.contiguous()
    h0 = None if h0 is None else h0.contiguous()
    h = _LinearScan.apply(a, b, h0, reverse, backend)
    if check_finite and b.shape[1] > 0 and h.numel() > 0:
        end = 0 if reverse else -1
        if not bool(torch.isfinite(h[:, end]).all()):
            _report_non_finite(a, b, h0, h, reverse)
    return h
