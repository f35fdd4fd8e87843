"""HiPPO-LegS online reconstruction of a smooth random signal: error against state size N.

A band-limited random signal on [0, 1] (sines up to 6 cycles, random amplitudes and phases,
unit RMS) is fed sample by sample (L samples at t_k = k/L) to the discrete LegS recurrence
c_k = Ā_k c_{k-1} + B̄_k f(t_k) (bilinear, the per-step discretisation of
c' = (1/t)(A c + B f), :func:`tsrnn.nn.hippo.legs_discretise`). At the end, the memory alone
reconstructs the whole history, f̂(s) = Σ_n c_n √(2n+1) P_n(2s - 1), and the error is the
RMS of f̂ - f over [0, 1] relative to the RMS of f, averaged over signals.

Anchor: the best possible N-term reconstruction, the exact orthogonal projection of f onto
the first N Legendre polynomials (Gauss-Legendre quadrature with 400 nodes). The online
memory follows it down until the discretisation error of L steps takes over; that floor
falls as 1/L (the per-step discretisation of the reference code is first order), which the
two columns of L show.

    python benchmarks/bench_hippo_reconstruction.py [--steps 10000] [--signals 4]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
from _common import machine, today
from numpy.polynomial import legendre

from tsrnn.nn.hippo import hippo_legs, legs_discretise

STATE_SIZES = (8, 16, 32, 64, 128)


def random_signals(n_signals: int, rng: np.random.Generator, max_cycles: int = 6):
    """Callables f(s) on [0, 1], sums of sines up to ``max_cycles`` cycles, unit RMS."""
    frequencies = np.arange(1, max_cycles + 1)
    amplitudes = rng.standard_normal((n_signals, max_cycles)) / frequencies
    phases = rng.uniform(0, 2 * np.pi, (n_signals, max_cycles))
    offsets = rng.standard_normal((n_signals, 1)) * 0.5

    def evaluate(s: np.ndarray) -> np.ndarray:  # (S, len(s))
        waves = np.sin(2 * np.pi * frequencies[None, :, None] * s[None, None, :]
                       + phases[:, :, None])
        return offsets + (amplitudes[:, :, None] * waves).sum(1)

    grid = np.linspace(0, 1, 20001)
    rms = np.sqrt((evaluate(grid) ** 2).mean(1, keepdims=True))
    return lambda s: evaluate(s) / rms


def basis(n: int, s: np.ndarray) -> np.ndarray:
    """√(2k+1) P_k(2s - 1), k < n: rows (n, len(s))."""
    return np.stack([math.sqrt(2 * k + 1) * legendre.legval(2 * s - 1, np.eye(n)[k])
                     for k in range(n)])


def online_legs(signal, n: int, steps: int, chunk: int = 500) -> np.ndarray:
    """The LegS memory after ``steps`` samples of each signal: (S, N)."""
    a, b = (torch.as_tensor(m) for m in hippo_legs(n))
    times = np.arange(1, steps + 1) / steps
    samples = torch.as_tensor(signal(times))  # (S, L)
    dt = 1.0 / steps
    c = torch.zeros(samples.shape[0], n, dtype=torch.float64)
    for begin in range(0, steps, chunk):
        end = min(begin + chunk, steps)
        t_prev = torch.arange(begin, end, dtype=torch.float64) * dt
        a_bar, b_bar = legs_discretise(a, b, t_prev, torch.full_like(t_prev, dt), "bilinear")
        for k in range(end - begin):
            c = c @ a_bar[k].T + samples[:, begin + k, None] * b_bar[k]
    return c.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--signals", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    signal = random_signals(args.signals, np.random.default_rng(args.seed))
    grid = np.linspace(0, 1, 4001)
    truth = signal(grid)
    nodes, weights = legendre.leggauss(400)
    quadrature_points = (nodes + 1) / 2
    values = signal(quadrature_points)
    load = os.getloadavg()[0]
    print(f"# HiPPO-LegS online reconstruction; {machine()}; {today()}; load {load:.1f} "
          f"(1-min average, 2 cores)")
    print(f"# {args.signals} band-limited signals (<= 6 cycles on [0, 1]), L = {args.steps} "
          "samples, bilinear per-step discretisation; relative RMS error over [0, 1]")
    coarse = max(args.steps // 5, 1)
    print(f"| N | online LegS, L = {coarse} | online LegS, L = {args.steps} | optimal N-term "
          f"projection | seconds (L = {args.steps}) |")
    print("|---|---|---|---|---|")
    for n in STATE_SIZES:
        errors = []
        for steps in (coarse, args.steps):
            start = time.perf_counter()
            memory = online_legs(signal, n, steps)
            seconds = time.perf_counter() - start
            errors.append(np.sqrt(((memory @ basis(n, grid) - truth) ** 2).mean(1)).mean())
        # exact coefficients ∫_0^1 f(s) √(2k+1) P_k(2s - 1) ds
        best_coefficients = (values * weights) @ basis(n, quadrature_points).T / 2
        best = np.sqrt(((best_coefficients @ basis(n, grid) - truth) ** 2).mean(1)).mean()
        print(f"| {n} | {errors[0]:.2e} | {errors[1]:.2e} | {best:.2e} | {seconds:.2f} |")

if __name__ == "__main__":
    main()
