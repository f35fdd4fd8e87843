"""Lyapunov spectra of fitted forecasters: wall time of the closed loop's leading exponents.

A forecaster's closed loop is a map on [next input, model state]: 1003 dimensions for a
1000-unit ESN, 67 for a 64-unit CfC. Its three leading exponents (the default: as many as
the data has variables) need three tangent vectors pushed through every step. Fits an ESN
(1000 units), a CfC and an LEM forecaster on Lorenz-63 (dt 0.01) and times
``lyapunov_spectrum(model, dt=0.01)`` with 32 trajectories; prints the spectrum (per time
unit; Lorenz-63's is 0.906, 0, -14.57) and the best of two timings.

    python benchmarks/bench_lyapunov_forecasters.py                 # 1000 measured steps
    python benchmarks/bench_lyapunov_forecasters.py --n-steps 10000 # the default run length
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _common import machine, today

from tsrnn.analysis import lyapunov_spectrum
from tsrnn.forecasting import CfCForecaster, LEMForecaster
from tsrnn.reservoir import ESN
from tsrnn.systems import Lorenz63


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"# Lyapunov spectra of forecasters; {args.n_steps} steps x 32 trajectories; "
          f"{machine()}; {today()}")
    y = Lorenz63().simulate(20_000, dt=0.01, transient=1_000, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few epochs: the learned dynamics do not matter
        models = [("ESN, 1000 units", ESN(n_units=1000, random_state=0).fit(y)),
                  ("CfC, 3 epochs", CfCForecaster(max_epochs=3, random_state=0).fit(y[:4000])),
                  ("LEM, 3 epochs", LEMForecaster(max_epochs=3, random_state=0).fit(y[:4000]))]
    for name, model in models:
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            spectrum = lyapunov_spectrum(model, dt=0.01, n_steps=args.n_steps)
            seconds.append(time.perf_counter() - start)
        print(f"{name:18s} dim {model.as_discrete_map().dim:5d}  {min(seconds):7.2f} s  "
              f"spectrum {np.round(spectrum, 4)}")


if __name__ == "__main__":
    main()
