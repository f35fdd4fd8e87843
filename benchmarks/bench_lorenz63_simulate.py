"""Lorenz-63, 100,000 steps at dt = 0.01: tsrnn versus scipy's DOP853, at stated accuracy.

Anchor (SPEC section 15): scipy ``solve_ivp(method="DOP853", rtol=1e-10)`` took 4.98 s here.
Accuracy is the largest deviation from a tight reference (DOP853, rtol = atol = 1e-13)
over the first 1 and 5 time units; chaos amplifies any error after that, so longer
horizons measure the system, not the integrator.

    python benchmarks/bench_lorenz63_simulate.py
"""

from __future__ import annotations

import numpy as np
import torch
from _common import machine, median_time, today
from scipy.integrate import solve_ivp

from tsrnn.systems import Lorenz63

N_STEPS, DT = 100_000, 0.01


def scipy_lorenz(t, state, sigma=10.0, rho=28.0, beta=8.0 / 3.0):
    x, y, z = state
    return np.array([sigma * (y - x), x * (rho - z) - y, x * y - beta * z])


def scipy_run(rtol: float, n_steps: int = N_STEPS) -> np.ndarray:
    t_eval = np.arange(n_steps) * DT
    solution = solve_ivp(scipy_lorenz, (0.0, t_eval[-1]), X0, method="DOP853", rtol=rtol,
                         atol=1e-12, t_eval=t_eval)
    return solution.y.T


def deviation(trajectory: np.ndarray, reference: np.ndarray, horizon: float) -> float:
    n = round(horizon / DT) + 1
    return float(np.abs(trajectory[:n] - reference[:n]).max())


X0 = np.array([-8.0, 7.0, 27.0])


def main() -> None:
    torch.set_num_threads(1)
    reference = scipy_run(1e-13, n_steps=501)
    system = Lorenz63()
    rows = []
    for label, run in [
        ("scipy DOP853 rtol 1e-10 (anchor)", lambda: scipy_run(1e-10)),
        ("scipy DOP853 rtol 1e-6", lambda: scipy_run(1e-6)),
        ("tsrnn rk8 (default)", lambda: system.simulate(N_STEPS, x0=X0)),
        ("tsrnn rk4", lambda: system.simulate(N_STEPS, x0=X0, method="rk4")),
        ("tsrnn rk4, 2 substeps", lambda: system.simulate(N_STEPS, x0=X0, method="rk4",
                                                          substeps=2)),
    ]:
        seconds, trajectory = median_time(run, repeats=3, warmup=1)
        rows.append((label, seconds, deviation(trajectory, reference, 1.0),
                     deviation(trajectory, reference, 5.0)))
    anchor = rows[0][1]
    print(f"# Lorenz-63, {N_STEPS} steps at dt={DT}; {machine()}; {today()}")
    print(f"{'method':36s} {'seconds':>8s} {'speed-up':>9s} {'err t<=1':>10s} {'err t<=5':>10s}")
    for label, seconds, err1, err5 in rows:
        print(f"{label:36s} {seconds:8.3f} {anchor / seconds:8.1f}x {err1:10.1e} {err5:10.1e}")


if __name__ == "__main__":
    main()
