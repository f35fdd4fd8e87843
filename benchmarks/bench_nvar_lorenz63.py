"""NG-RC (NVAR) at Gauthier et al.'s Lorenz-63 setting: NRMSE over one Lyapunov time.

Setting of the paper (Nature Communications 12, 5564, 2021): dt = 0.025, k = 2, s = 1,
p = 2 (28 features), ridge 2.5e-6, 400 training points after a 200-point warm-up, initial
condition (17.677..., 12.931..., 43.914...); NRMSE = sqrt(mean squared error over one
Lyapunov time (1.104 time units) / total variance), the authors' definition. Besides the
paper's window, the same fit and test slide along the trajectory to show the spread.

    python benchmarks/bench_nvar_lorenz63.py
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from _common import machine, today

from tsrnn.reservoir import NVAR
from tsrnn.systems import Lorenz63

DT, TRAIN, LYAPUNOV_POINTS = 0.025, 400, round(1.104 / 0.025)
X0 = [17.67715816276679, 12.931379185960404, 43.91404334248268]


def nrmse_for_window(y: np.ndarray, warmup: int, total_variance: float) -> tuple[float, float]:
    start = time.perf_counter()
    model = NVAR(delays=2, stride=1, order=2, ridge=2.5e-6).fit(y[warmup - 1:warmup + TRAIN])
    seconds = time.perf_counter() - start
    test = warmup + TRAIN
    forecast = model.predict(LYAPUNOV_POINTS, context=y[test - 2:test])
    error = np.sqrt(np.mean((y[test:test + LYAPUNOV_POINTS] - forecast) ** 2) / total_variance)
    return float(error), seconds


def main() -> None:
    warnings.simplefilter("ignore")  # the ill-conditioning warning is expected at this ridge
    y = Lorenz63().simulate(12_000, dt=DT, x0=X0)
    total_variance = float(y.var(0).sum())
    paper, seconds = nrmse_for_window(y, 200, total_variance)
    sliding = np.array([nrmse_for_window(y, w, total_variance)[0]
                        for w in range(200, 10_000, 450)])
    print(f"# NVAR, Lorenz-63, Gauthier et al.'s setting; {machine()}; {today()}")
    print(f"paper's window: NRMSE {paper:.2e} (fit {seconds * 1e3:.1f} ms)")
    print(f"{sliding.size} windows: median {np.median(sliding):.2e}, mean {sliding.mean():.2e}, "
          f"fraction <= 3e-3: {(sliding <= 3e-3).mean():.2f}, range {sliding.min():.1e} to "
          f"{sliding.max():.1e}")


if __name__ == "__main__":
    main()
