"""Residual reservoirs on the CPU: fit and closed-loop forecast times of DeepResESN and ResRMN.

Lorenz-63 (dt 0.01, 20,000 training steps, standardised), each model at its defaults with
1000 units in all (DeepResESN: 4 layers of 250; ResRMN: 500 memory and 500 nonlinear units,
the memory lossless as in the paper and fading with gamma = 0.99). Times ``fit`` and
``predict(1000)`` (the closed loop continuing the training series, so predict first reruns
the end of it that the reservoir has not forgotten) with a plain leaky ESN of 1000 units for
scale, and prints the valid prediction time of the forecast (Lyapunov times, threshold 0.4)
as a check that the models still forecast. No anchor library has these models; the figures
are compared with the same script at an earlier commit (benchmarks/RESULTS.md).

    python benchmarks/bench_residual_reservoirs.py
"""

from __future__ import annotations

import argparse
import time
import warnings

from _common import machine, today

from tsrnn.metrics import valid_prediction_time
from tsrnn.reservoir import ESN, DeepResESN, ResRMN
from tsrnn.systems import Lorenz63

MODELS = {
    "ESN, 1000 units": lambda: ESN(n_units=1000, random_state=0),
    "DeepResESN, 4 x 250": lambda: DeepResESN(random_state=0),
    "ResRMN, 500 + 500, gamma 1": lambda: ResRMN(random_state=0),
    "ResRMN, 500 + 500, gamma 0.99": lambda: ResRMN(memory_radius=0.99, random_state=0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()
    print(f"# residual reservoirs, Lorenz-63 20,000 steps; {machine()}; {today()}")
    series = Lorenz63().simulate(21_000, dt=0.01, transient=1_000, seed=0)
    train, test = series[:20_000], series[20_000:]
    for name, make in MODELS.items():
        fits, predicts = [], []
        for _ in range(args.repeats):
            model = make()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # gamma = 1 on a series longer than the ring
                start = time.perf_counter()
                model.fit(train)
                fits.append(time.perf_counter() - start)
                start = time.perf_counter()
                forecast = model.predict(1_000)
                predicts.append(time.perf_counter() - start)
        vpt = valid_prediction_time(test, forecast, dt=0.01, lyapunov_exponent=0.9056)
        print(f"{name}: fit {min(fits):.2f} s, predict(1000) {min(predicts):.2f} s, "
              f"VPT {vpt:.2f}", flush=True)


if __name__ == "__main__":
    main()
