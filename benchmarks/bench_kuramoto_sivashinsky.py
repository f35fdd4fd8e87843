"""Kuramoto-Sivashinsky, L = 22, N = 64, dt = 0.25: tsrnn against a plain numpy ETDRK4.

The anchor is the classic structure of Kassam & Trefethen's ``kursiv.m`` ("Fourth-order
time-stepping for stiff PDEs", SIAM J. Sci. Comput. 2005) written with numpy's rfft: the
same initial condition, step and number of steps (10,000 by default), every state recorded.
SPEC section 15 quotes 0.525 s (52 us per step) for it; tsrnn must be no slower on the CPU.

    python benchmarks/bench_kuramoto_sivashinsky.py
    python benchmarks/bench_kuramoto_sivashinsky.py --device cuda --batch 1024

The second form measures the throughput of a batch of trajectories on a GPU (trajectories x
steps per second) against the single-trajectory CPU throughput of tsrnn and numpy.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from tsrnn.systems import KuramotoSivashinsky


def numpy_etdrk4(u0: np.ndarray, L: float, dt: float, n_steps: int,
                 contour_points: int = 16) -> np.ndarray:
    """ETDRK4 for u_t = -u u_x - u_xx - u_xxxx as in kursiv.m, with rfft; (n_steps, N)."""
    n = u0.size
    k = 2.0 * np.pi / L * np.arange(n // 2 + 1)
    linear = k**2 - k**4
    g = -0.5j * k
    g[-1] = 0.0  # kursiv.m sets the Nyquist wavenumber of the derivative to zero
    e, e2 = np.exp(dt * linear), np.exp(dt * linear / 2)
    roots = np.exp(1j * np.pi * (np.arange(1, contour_points + 1) - 0.5) / contour_points)
    lr = dt * linear[:, None] + roots[None, :]
    q = dt * np.real(np.mean((np.exp(lr / 2) - 1) / lr, axis=1))
    f1 = dt * np.real(np.mean((-4 - lr + np.exp(lr) * (4 - 3 * lr + lr**2)) / lr**3, axis=1))
    f2 = dt * np.real(np.mean((2 + lr + np.exp(lr) * (-2 + lr)) / lr**3, axis=1))
    f3 = dt * np.real(np.mean((-4 - 3 * lr - lr**2 + np.exp(lr) * (4 - lr)) / lr**3, axis=1))
    rfft, irfft = np.fft.rfft, np.fft.irfft

    v = rfft(u0)
    spectra = np.empty((n_steps, v.size), dtype=complex)
    spectra[0] = v
    for i in range(1, n_steps):
        nv = g * rfft(irfft(v, n) ** 2)
        a = e2 * v + q * nv
        na = g * rfft(irfft(a, n) ** 2)
        b = e2 * v + q * na
        nb = g * rfft(irfft(b, n) ** 2)
        c = e2 * a + q * (2 * nb - nv)
        nc = g * rfft(irfft(c, n) ** 2)
        v = e * v + nv * f1 + 2 * (na + nb) * f2 + nc * f3
        spectra[i] = v
    return irfft(spectra, n, axis=-1)


def best_time(function, repeats: int) -> tuple[float, object]:
    """Smallest wall time of ``repeats`` calls (the machine's noise only ever adds time)."""
    best, result = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--dt", type=float, default=0.25)
    parser.add_argument("--L", type=float, default=22.0)
    parser.add_argument("--n-grid", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--batch", type=int, default=1, help="trajectories per run on --device")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"--device {args.device}: torch {torch.__version__} sees no CUDA device; "
              "run on a machine with a GPU or use --device cpu", file=sys.stderr)
        return 2

    system = KuramotoSivashinsky(L=args.L, n_grid=args.n_grid)
    u0 = system.default_initial_state()
    steps, dt = args.steps, args.dt

    numpy_time, reference = best_time(
        lambda: numpy_etdrk4(u0, args.L, dt, steps), args.repeats)
    cpu_time, single = best_time(lambda: system.simulate(steps, dt=dt, x0=u0), args.repeats)
    difference = np.abs(single[:100] - reference[:100]).max()
    print(f"KS L={args.L:g} N={args.n_grid} dt={dt:g} {steps} steps, one trajectory, CPU: "
          f"numpy {numpy_time:.3f} s ({1e6 * numpy_time / steps:.1f} us/step), "
          f"tsrnn {cpu_time:.3f} s ({1e6 * cpu_time / steps:.1f} us/step), "
          f"numpy/tsrnn {numpy_time / cpu_time:.2f}x; "
          f"max |difference| over the first 100 steps {difference:.1e}")

    if device.type == "cpu" and args.batch == 1:
        return 0
    batch = np.tile(u0, (args.batch, 1))

    def run_batch():
        states = system.simulate(steps, dt=dt, x0=batch, device=device, return_tensor=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return states

    system.simulate(10, dt=dt, x0=batch, device=device)  # warm-up: CUDA context, FFT plans
    batch_time, states = best_time(run_batch, args.repeats)
    rows_agree = np.abs(states[0, :100].cpu().numpy() - single[:100]).max()
    throughput = args.batch * steps / batch_time
    cpu_throughput = steps / cpu_time
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"batch of {args.batch} on {name}: {batch_time:.3f} s, "
          f"{throughput:.3g} trajectory-steps/s = {throughput / cpu_throughput:.1f}x tsrnn's "
          f"single-trajectory CPU rate ({cpu_throughput:.3g}/s) and "
          f"{throughput * numpy_time / steps:.1f}x numpy's; row 0 vs CPU over 100 steps "
          f"{rows_agree:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
