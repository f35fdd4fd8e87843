"""Echo state network on Lorenz-63: tsrnn's ESN versus reservoirpy 0.4.2, side by side.

SPEC section 4 settings for both: 1000 units, leak 1.0, spectral radius 0.9, input scaling
0.1, random bias in [-0.5, 0.5], recurrent connectivity 0.02, ridge 1e-6, warm-up 100;
Lorenz-63 at dt = 0.01, standardised, 20,000 training steps. Measures the fit time (median
of ``--repeats`` fits, wall clock and the process's CPU time: on a shared machine the CPU time
is the steadier figure; the two libraries' fits alternate, and the median of the ratios of
each pair is printed too), the closed-loop generation time per step (1000 steps), and the
median valid prediction time (threshold 0.4, in Lyapunov times) over 30 test starts, each forecast
started from the 500 true steps before it.

``--threads`` sets torch's thread count and limits BLAS (threadpoolctl) to the same number,
for both libraries: the Gram matrix is a BLAS product in both, and tsrnn's fit uses as many
worker threads as the lower of the two allows (each running the compiled reservoir kernel on
its share of the time segments and its own Gram update). reservoirpy's recurrence is a
sequential Python loop; only its BLAS calls use a second thread.

``--phases`` adds, per tsrnn fit, where the time went: the spectral radius (ARPACK), the
states and the Gram update (streamed together; the CPU time of the kernel and of the
updates summed over the workers), the solve, and the rest.

    pip install reservoirpy==0.4.2
    python benchmarks/bench_esn_lorenz63.py [--threads 2] [--seeds 0 1 2] [--phases]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import threading
import time

import numpy as np
import torch
from _common import machine, today

from tsrnn.metrics import valid_prediction_time
from tsrnn.reservoir import ESN
from tsrnn.systems import Lorenz63

N_TRAIN, N_STARTS, HORIZON, CONTEXT, LYAPUNOV = 20_000, 30, 1_500, 500, 0.9056


def data() -> np.ndarray:
    y = Lorenz63().simulate(N_TRAIN + N_STARTS * 200 + HORIZON + 1, transient=2_000, seed=0)
    return (y - y[:N_TRAIN].mean(0)) / y[:N_TRAIN].std(0)


def starts() -> list[int]:
    return [N_TRAIN + 200 * k for k in range(N_STARTS)]


def vpt(truth: np.ndarray, forecast: np.ndarray) -> float:
    return valid_prediction_time(truth, forecast, dt=0.01, lyapunov_exponent=LYAPUNOV)


class PhaseTimer:
    """Wall time spent in some functions of tsrnn's fit (summed over threads)."""

    def __init__(self):
        import tsrnn.reservoir.esn as esn_module
        import tsrnn.reservoir.matrices as matrices
        import tsrnn.reservoir.readout as readout
        import tsrnn.reservoir.reservoir as reservoir

        self.totals: dict[str, float] = {}
        self.lock = threading.Lock()
        for owner, name, label in (
                (matrices, "spectral_radius", "radius"),
                (reservoir.LeakyReservoir, "_run_kernel", "kernel (sum)"),
                (readout.RidgeAccumulator, "update_augmented", "gram (sum)"),
                (esn_module.ESN, "_accumulate_streamed", "streamed"),
                (readout.RidgeAccumulator, "solve", "solve")):
            self._wrap(owner, name, label)

    def _wrap(self, owner, name, label):
        function = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                with self.lock:
                    self.totals[label] = (self.totals.get(label, 0.0)
                                          + time.perf_counter() - start)

        setattr(owner, name, timed)

    def report(self, total: float) -> str:
        known = sum(self.totals.get(k, 0.0) for k in ("radius", "streamed", "solve"))
        parts = [f"{k} {v:.3f}" for k, v in self.totals.items()]
        return f"total {total:.3f} s: " + ", ".join(parts) + f", rest {total - known:.3f}"


PHASES: PhaseTimer | None = None


def fit_tsrnn(y: np.ndarray, seed: int):
    """One fit: (the model, wall s, CPU s)."""
    if PHASES is not None:
        PHASES.totals.clear()
    start, start_cpu = time.perf_counter(), time.process_time()
    model = ESN(n_units=1000, spectral_radius=0.9, leak_rate=1.0, input_scaling=0.1,
                bias_scaling=0.5, connectivity=0.02, ridge=1e-6, warmup=100,
                scale=False, random_state=seed).fit(y[:N_TRAIN + 1])
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    if PHASES is not None:
        print(f"#   tsrnn seed {seed} fit phases, {PHASES.report(wall)}")
    return model, wall, cpu


def assess_tsrnn(model, y: np.ndarray) -> tuple[float, float]:
    """(seconds per closed-loop step, median VPT over the test starts)."""
    start = time.perf_counter()
    model.predict(1_000, context=y[N_TRAIN - CONTEXT:N_TRAIN])
    per_step = (time.perf_counter() - start) / 1_000
    scores = [vpt(y[s:s + HORIZON], model.predict(HORIZON, context=y[s - CONTEXT:s]))
              for s in starts()]
    return per_step, statistics.median(scores)


def fit_reservoirpy(y: np.ndarray, seed: int):
    """One fit (the nodes built beforehand, outside the timing): ((reservoir, readout), wall
    s, CPU s)."""
    from reservoirpy.mat_gen import uniform
    from reservoirpy.nodes import Reservoir, Ridge

    reservoir = Reservoir(1000, lr=1.0, sr=0.9, input_scaling=0.1, rc_connectivity=0.02,
                          input_connectivity=1.0, Win=uniform(low=-1.0, high=1.0),
                          bias=uniform(low=-0.5, high=0.5), seed=seed)
    readout = Ridge(ridge=1e-6)
    model = reservoir >> readout
    start, start_cpu = time.perf_counter(), time.process_time()
    model.fit(y[:N_TRAIN], y[1:N_TRAIN + 1], warmup=100)
    return (reservoir, readout), time.perf_counter() - start, time.process_time() - start_cpu


def assess_reservoirpy(nodes, y: np.ndarray) -> tuple[float, float]:
    reservoir, readout = nodes

    def forecast(context: np.ndarray, n: int) -> np.ndarray:
        reservoir.reset()
        states = reservoir.run(context)
        u = readout.run(states[-1:])[0]
        out = [u]
        for _ in range(n - 1):
            u = readout.run(reservoir.run(u[None]))[0]
            out.append(u)
        return np.array(out)

    start = time.perf_counter()
    forecast(y[N_TRAIN - CONTEXT:N_TRAIN], 1_000)
    per_step = (time.perf_counter() - start) / 1_000
    scores = [vpt(y[s:s + HORIZON], forecast(y[s - CONTEXT:s], HORIZON)) for s in starts()]
    return per_step, statistics.median(scores)


def blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS threads unknown"
    return ", ".join(f"{i['internal_api']} {i['num_threads']} threads"
                     for i in threadpool_info() if i["user_api"] == "blas")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads and the BLAS limit, for both libraries")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=5,
                        help="fits per library and seed, alternating between the libraries")
    parser.add_argument("--phases", action="store_true", help="time the phases of tsrnn's fit")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global PHASES
    if args.phases:
        PHASES = PhaseTimer()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(args.threads, user_api="blas")
    with limits:
        compare(args)


def compare(args) -> None:
    y = data()
    print(f"# ESN on Lorenz-63, {N_TRAIN} training steps, 1000 units; {machine()}; "
          f"{blas_threads()}; load {os.getloadavg()[0]:.2f}; {today()}")
    print(f"{'library':14s} {'seed':>4s} {'fit s':>7s} {'fit cpu s':>9s} {'step us':>8s} "
          f"{'median VPT':>11s}")
    rows = {"tsrnn": [], "reservoirpy": []}
    ratios = []
    fitters = {"tsrnn": fit_tsrnn, "reservoirpy": fit_reservoirpy}
    assessors = {"tsrnn": assess_tsrnn, "reservoirpy": assess_reservoirpy}
    for seed in args.seeds:
        # The fits alternate (and which goes first alternates too), so that a change of the
        # machine's load hits both libraries alike; each pair gives one ratio.
        times = {name: ([], []) for name in fitters}
        models = {}
        for repeat in range(args.repeats):
            order = ("tsrnn", "reservoirpy") if repeat % 2 == 0 else ("reservoirpy", "tsrnn")
            for name in order:
                models[name], wall, cpu = fitters[name](y, seed)
                times[name][0].append(wall)
                times[name][1].append(cpu)
            ratios.append(times["reservoirpy"][0][-1] / times["tsrnn"][0][-1])
        for name in fitters:
            step, score = assessors[name](models[name], y)
            fit, cpu = (statistics.median(t) for t in times[name])
            rows[name].append((fit, cpu, step, score))
            print(f"{name:14s} {seed:4d} {fit:7.3f} {cpu:9.3f} {step * 1e6:8.1f} {score:11.2f}")
        print(f"#   seed {seed}, the {args.repeats} pairs (tsrnn s / reservoirpy s = ratio, "
              "tsrnn first in pairs 1, 3, ...): "
              + ", ".join(f"{a:.3f}/{b:.3f}={b / a:.1f}"
                          for a, b in zip(times["tsrnn"][0], times["reservoirpy"][0])))
    ours, theirs = (np.array(rows[k]) for k in ("tsrnn", "reservoirpy"))
    print(f"\nmedians over seeds: fit {np.median(theirs[:, 0]) / np.median(ours[:, 0]):.1f}x "
          f"faster (CPU time {np.median(theirs[:, 1]) / np.median(ours[:, 1]):.1f}x less; "
          f"median of the {len(ratios)} paired ratios {statistics.median(ratios):.1f}x), "
          f"generation {np.median(theirs[:, 2]) / np.median(ours[:, 2]):.1f}x faster per step, "
          f"VPT tsrnn {np.median(ours[:, 3]):.2f} vs reservoirpy {np.median(theirs[:, 3]):.2f} "
          f"Lyapunov times; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
