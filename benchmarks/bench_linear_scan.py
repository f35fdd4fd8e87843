"""tsrnn.ops.linear_scan against its anchors, on the CPU or on a CUDA GPU.

CPU (SPEC section 15): 16 x 4096 x 256 float32, against a sequential Python loop
(h = a_t * h + b_t; 125 ms measured on this kind of machine) and torch.compile's
associative_scan (66 ms; run with --compile, it takes a minute to compile). Error relative to
a float64 sequential loop.

GPU: 8 x 1536 x 65536 float32 (B x L x D) forward and forward+backward, against the
device-to-device copy bandwidth measured in the same run (a.clone()) and accelerated-scan
0.3.1's recorded H200 figures (2.37 ms forward, 11.0 ms forward+backward; or measured here
when the package imports). Error relative to a float64 scan of the same inputs.

    python benchmarks/bench_linear_scan.py                # CPU
    python benchmarks/bench_linear_scan.py --device cuda  # GPU
"""

from __future__ import annotations

import argparse
import os

import torch
from _common import machine, median_time, today

from tsrnn.ops import linear_scan
from tsrnn.ops._reference import linear_scan_reference

ANCHOR_CPU_LOOP_MS = 125.0
ANCHOR_CPU_COMPILE_MS = 66.0
ANCHOR_GPU_FORWARD_MS = 2.37
ANCHOR_GPU_FORWARD_BACKWARD_MS = 11.0


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f} on {os.cpu_count()} cores"


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approx.to(exact.dtype) - exact).norm() / exact.norm())


def make_inputs(batch, length, channels, device, dtype, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    # |a| in [0.5, 0.999]: long memory, the hard case for float32 round-off
    a = 0.5 + 0.499 * torch.rand(batch, length, channels, generator=g, device=device)
    b = torch.randn(batch, length, channels, generator=g, device=device)
    return a.to(dtype), b.to(dtype)


def python_loop(a, b):
    h = torch.zeros_like(b[:, 0])
    states = []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        states.append(h)
    return torch.stack(states, dim=1)


def cpu(args) -> None:
    batch, length, channels = args.shape or (16, 4096, 256)
    a, b = make_inputs(batch, length, channels, "cpu", torch.float32)
    print(f"# linear_scan CPU {batch}x{length}x{channels} float32; {machine()}; {today()}; "
          f"{load()} before")
    exact = linear_scan_reference(a.double(), b.double())
    loop_s, _ = median_time(lambda: python_loop(a, b), repeats=args.repeats)
    scan_s, h = median_time(lambda: linear_scan(a, b), repeats=args.repeats)
    leaves = [a.clone().requires_grad_(), b.clone().requires_grad_()]
    weights = torch.randn_like(b)  # dL/dh

    def forward_backward():
        torch.autograd.grad(linear_scan(*leaves), leaves, weights)

    both_s, _ = median_time(forward_backward, repeats=args.repeats)
    print(f"python loop {loop_s * 1e3:.1f} ms (SPEC anchor {ANCHOR_CPU_LOOP_MS:.0f} ms)")
    print(f"linear_scan forward {scan_s * 1e3:.1f} ms, forward+backward {both_s * 1e3:.1f} ms")
    print(f"ratio python loop / linear_scan forward: {loop_s / scan_s:.2f}x (same process); "
          f"SPEC loop anchor / linear_scan: {ANCHOR_CPU_LOOP_MS / (scan_s * 1e3):.2f}x; "
          f"torch.compile anchor ({ANCHOR_CPU_COMPILE_MS:.0f} ms) / linear_scan: "
          f"{ANCHOR_CPU_COMPILE_MS / (scan_s * 1e3):.2f}x")
    print(f"relative error vs float64 loop: {relative_error(h, exact):.2e}")
    if args.compile:
        from torch._higher_order_ops.associative_scan import associative_scan

        def combine(left, right):
            return left[0] * right[0], right[0] * left[1] + right[1]

        compiled = torch.compile(lambda a, b: associative_scan(combine, (a, b), dim=1,
                                                               combine_mode="generic")[1])
        compile_s, hc = median_time(lambda: compiled(a, b), repeats=args.repeats)
        print(f"torch.compile associative_scan {compile_s * 1e3:.1f} ms, error "
              f"{relative_error(hc, exact):.2e}; ratio to linear_scan "
              f"{compile_s / scan_s:.2f}x")
    print(f"# {load()} after")


def gpu_time(function, repeats=20) -> float:
    import triton.testing

    return triton.testing.do_bench(function, warmup=25, rep=repeats * 10,
                                   return_mode="median") * 1e-3


SWEEP = {
    "real": [(8, 512, 4), (16, 512, 4), (8, 1024, 8), (16, 1024, 8), (16, 256, 2),
             (8, 256, 2), (4, 512, 4)],
    "half": [(16, 512, 4), (8, 1024, 4), (16, 256, 2), (32, 256, 2)],
    "wide": [(8, 256, 4), (4, 512, 4), (4, 256, 2), (8, 256, 2), (4, 1024, 8)],
}
SWEEP_DTYPES = {"real": torch.float32, "half": torch.bfloat16, "wide": torch.complex64}


def sweep(batch, length, channels, kinds) -> None:
    """Time each tile configuration of the two Triton kernels per kind of data."""
    from tsrnn.ops import _triton_scan

    saved = dict(_triton_scan.CONFIGS)
    for kind in kinds:
        dtype = SWEEP_DTYPES[kind]
        width = channels // 2 if dtype.is_complex else channels
        a, b = make_inputs(batch, length, width, "cuda", torch.float32, seed=2)
        if dtype.is_complex:
            a = torch.polar(a, torch.rand_like(a))
            b = torch.complex(b, torch.randn_like(b))
        a, b = a.to(dtype), b.to(dtype)
        h, grad = torch.empty_like(b), torch.randn_like(b)
        nbytes = b.numel() * b.element_size()
        for config in SWEEP[kind]:
            _triton_scan.CONFIGS["forward", kind] = config
            _triton_scan.CONFIGS["backward", kind] = config
            forward_s = gpu_time(lambda a=a, b=b: _triton_scan.scan_forward(a, b, None, False))
            h = _triton_scan.scan_forward(a, b, None, False)
            backward_s = gpu_time(
                lambda a=a, h=h, g=grad: _triton_scan.scan_backward(a, h, None, g, False, False))
            print(f"sweep {kind} {config}: forward {forward_s * 1e3:.3f} ms "
                  f"({3 * nbytes / forward_s / 1e12:.2f} TB/s), backward "
                  f"{backward_s * 1e3:.3f} ms ({5 * nbytes / backward_s / 1e12:.2f} TB/s)",
                  flush=True)
        del a, b, h, grad
        torch.cuda.empty_cache()
    _triton_scan.CONFIGS.update(saved)


def gpu(args) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("--device cuda needs a CUDA device")
    batch, length, channels = args.shape or (8, 1536, 65536)
    if args.sweep is not None:
        sweep(batch, length, channels, args.sweep or list(SWEEP))
    print(f"# linear_scan GPU {batch}x{length}x{channels}; {machine()}; {today()}")
    # correctness first, on a slice small enough for a float64 reference on the GPU
    for dtype in (torch.float32, torch.bfloat16, torch.complex64):
        a, b = make_inputs(2, length, 1024, "cuda", torch.float32, seed=1)
        if dtype.is_complex:
            a = torch.polar(a, torch.rand_like(a) * 6.28)
            b = torch.complex(b, torch.randn_like(b))
        a, b = a.to(dtype), b.to(dtype)
        wide = torch.complex128 if dtype.is_complex else torch.float64
        exact = linear_scan(a.to(wide), b.to(wide), backend="torch")
        for reverse in (False, True):
            exact = linear_scan(a.to(wide), b.to(wide), reverse=reverse, backend="torch")
            h = linear_scan(a, b, reverse=reverse, backend="triton")
            print(f"check {dtype!s:16s} reverse={reverse!s:5s} relative error "
                  f"{relative_error(h, exact):.2e}")

    a, b = make_inputs(batch, length, channels, "cuda", torch.float32)
    nbytes = a.numel() * a.element_size()
    copy_s = gpu_time(lambda: a.clone())
    copy_bw = 2 * nbytes / copy_s
    forward_s = gpu_time(lambda: linear_scan(a, b, check_finite=False))
    checked_s = gpu_time(lambda: linear_scan(a, b))
    leaves = [a.clone().requires_grad_(), b.clone().requires_grad_()]
    grad = torch.randn_like(b)

    def forward_backward():
        # autograd.grad: no accumulation into .grad, which would add two passes
        torch.autograd.grad(linear_scan(*leaves, check_finite=False), leaves, grad)

    both_s = gpu_time(forward_backward)
    floor_s = 8 * nbytes / copy_bw
    print(f"copy {copy_s * 1e3:.3f} ms = {copy_bw / 1e12:.2f} TB/s (read + write)")
    print(f"forward {forward_s * 1e3:.3f} ms = {3 * nbytes / forward_s / 1e12:.2f} TB/s "
          f"({3 * nbytes / forward_s / copy_bw:.1%} of copy); with check_finite "
          f"{checked_s * 1e3:.3f} ms; accelerated-scan anchor {ANCHOR_GPU_FORWARD_MS} ms: "
          f"ratio {ANCHOR_GPU_FORWARD_MS / (forward_s * 1e3):.2f}x")
    print(f"forward+backward {both_s * 1e3:.3f} ms (floor at copy speed {floor_s * 1e3:.2f} "
          f"ms; accelerated-scan anchor {ANCHOR_GPU_FORWARD_BACKWARD_MS} ms: ratio "
          f"{ANCHOR_GPU_FORWARD_BACKWARD_MS / (both_s * 1e3):.2f}x)")
    for dtype in (torch.bfloat16, torch.complex64):
        if dtype.is_complex:
            x, y = (torch.complex(v[:, :, : channels // 2], v[:, :, channels // 2:])
                    for v in (a, b))
        else:
            x, y = a.to(dtype), b.to(dtype)
        size = x.numel() * x.element_size()
        seconds = gpu_time(lambda x=x, y=y: linear_scan(x, y, check_finite=False))
        print(f"forward {dtype}: {seconds * 1e3:.3f} ms = {3 * size / seconds / 1e12:.2f} TB/s")
    # the same number of elements as a long sequence of few channels: one program per
    # (batch, 512 channels) leaves most of the GPU idle (B * D / 512 = 24 programs)
    long_a, long_b = a.view(batch, channels, length), b.view(batch, channels, length)
    long_s = gpu_time(lambda: linear_scan(long_a, long_b, check_finite=False), repeats=3)
    print(f"forward (B, L, D) = {tuple(long_a.shape)}: {long_s * 1e3:.3f} ms = "
          f"{3 * nbytes / long_s / 1e12:.2f} TB/s")
    try:
        from accelerated_scan.scalar import scan as accelerated
    except ImportError:
        print("accelerated-scan not importable: compare with SPEC's recorded anchors above")
        return
    # accelerated-scan takes (B, C, T) with T contiguous; SPEC's anchor ran it on
    # (8, 1536, 65536): the same number of elements, viewed in its layout
    gates, tokens = a.view(batch, length, channels), b.view(batch, length, channels)
    anchor_s = gpu_time(lambda: accelerated(gates, tokens))
    leaves[:] = [gates.clone().requires_grad_(), tokens.clone().requires_grad_()]

    def anchor_forward_backward():
        torch.autograd.grad(accelerated(*leaves), leaves, grad)

    anchor_both_s = gpu_time(anchor_forward_backward)
    print(f"accelerated-scan (B, C, T) = {tuple(gates.shape)}: forward {anchor_s * 1e3:.3f} ms "
          f"({3 * nbytes / anchor_s / 1e12:.2f} TB/s), forward+backward "
          f"{anchor_both_s * 1e3:.3f} ms; ratios to linear_scan: forward "
          f"{anchor_s / forward_s:.2f}x, forward+backward {anchor_both_s / both_s:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("B", "L", "D"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sweep", nargs="*", choices=list(SWEEP),
                        help="time the Triton kernels' tile configurations (GPU) for these "
                             "kinds of data (all when none is named)")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile's associative_scan (CPU)")
    args = parser.parse_args()
    (gpu if args.device == "cuda" else cpu)(args)


if __name__ == "__main__":
    main()
