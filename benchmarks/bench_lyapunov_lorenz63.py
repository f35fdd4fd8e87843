"""Lorenz-63 Lyapunov spectrum: tsrnn versus lyapynov's LCE, time to a given accuracy.

Anchor (SPEC section 15): lyapynov 1.0.1 ``LCE`` gave (0.9052, -0.0008, -14.571) in 4.0 s.
Both tools integrate state and tangent with RK4 at dt = 0.01. For each run length the
script prints the wall time and the largest deviation of the three exponents from Sprott's
(0.9056, 0, -14.5723); the "time to accuracy" of a tool is that of its shortest run whose
error, and that of every longer run, stays within the target.

    pip install lyapynov
    python benchmarks/bench_lyapunov_lorenz63.py
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _common import machine, today

from tsrnn.analysis import lyapunov_spectrum
from tsrnn.systems import Lorenz63

REFERENCE = np.array([0.9056, 0.0, -14.5723])
DT = 0.01


def lyapynov_run(n_compute: int, seed: int) -> np.ndarray:
    import lyapynov

    def f(x, t):
        return np.array([10.0 * (x[1] - x[0]), x[0] * (28.0 - x[2]) - x[1],
                         x[0] * x[1] - 8.0 / 3.0 * x[2]])

    def jac(x, t):
        return np.array([[-10.0, 10.0, 0.0], [28.0 - x[2], -1.0, -x[0]], [x[1], x[0], -8 / 3]])

    x0 = np.array([-8.0, 7.0, 27.0]) + np.random.default_rng(seed).normal(size=3)
    system = lyapynov.ContinuousDS(x0, 0.0, f, jac, DT)
    return np.asarray(lyapynov.LCE(system, 3, 1000, n_compute, False))


def tsrnn_run(n_steps: int, n_trajectories: int, seed: int) -> np.ndarray:
    return lyapunov_spectrum(Lorenz63(), dt=DT, method="rk4", n_steps=n_steps,
                             transient=500, n_trajectories=n_trajectories, seed=seed)


def sweep(label, runs, seeds=(0, 1, 2)):
    print(f"\n{label}")
    print(f"{'setting':28s} {'seconds':>8s} {'max error (over seeds)':>24s}")
    results = []
    for setting, run in runs:
        errors, times = [], []
        for seed in seeds:
            start = time.perf_counter()
            spectrum = run(seed)
            times.append(time.perf_counter() - start)
            errors.append(float(np.abs(np.sort(spectrum)[::-1] - REFERENCE).max()))
        results.append((setting, float(np.median(times)), max(errors)))
        print(f"{setting:28s} {results[-1][1]:8.2f} {results[-1][2]:24.4f}")
    return results


def time_to(results, target):
    for i, (setting, seconds, _) in enumerate(results):
        if all(error <= target for _, _, error in results[i:]):
            return setting, seconds
    return None, float("nan")


def main() -> None:
    torch.set_num_threads(1)
    print(f"# Lorenz-63 Lyapunov spectrum, dt={DT}; {machine()}; {today()}")
    ours = sweep("tsrnn lyapunov_spectrum (RK4, batched trajectories)", [
        (f"B={b}, T={n * DT:g}", lambda seed, n=n, b=b: tsrnn_run(n, b, seed))
        for b, n in [(256, 1000), (1024, 1000), (1024, 2000), (2048, 2000), (2048, 4000)]
    ])
    theirs = sweep("lyapynov LCE (RK4, one trajectory)", [
        (f"T={n * DT:g}", lambda seed, n=n: lyapynov_run(n, seed))
        for n in (10_000, 30_000, 100_000, 200_000)
    ])
    for target in (0.01, 0.005):
        a, ta = time_to(ours, target)
        b, tb = time_to(theirs, target)
        print(f"\nerror <= {target}: tsrnn {ta:.2f} s ({a}), lyapynov {tb:.2f} s ({b}), "
              f"ratio {tb / ta:.1f}x")


if __name__ == "__main__":
    main()
