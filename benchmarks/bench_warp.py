"""WARP on the mass–spring–damper task: physics-informed root vs MLP root vs a GRU; and the
time per epoch of non-autoregressive (scan) vs autoregressive training.

Task (designed after Nzoyem et al. 2025, "Weight-space linear recurrent neural networks",
arXiv 2506.01153, whose physics-informed WARP reports >10x lower error than the next-best
model): trajectories of x'' + 2ζωx' + ω²x = 0 observed as (position, velocity), dt = 0.05,
200 steps, each with its own ω ~ U(1.5, 3), ζ ~ U(0.05, 0.3), x0 ~ U(-1, 1), v0 ~ ω U(-1, 1)
(``tsrnn.datasets.mass_spring_damper``). 2048 training trajectories, 128 test trajectories
with unseen parameters. Each model reads the first 50 steps of a test trajectory and forecasts
the remaining 150 in closed loop; the figure is the MSE over those 150 steps (raw units).

Models (all through the estimator API, all trained by one-step teacher forcing):
- WARP-phys: WARPForecaster(root="mass_spring_damper"): θ = (x0, v0, ρ_ω, ρ_ζ) of the exact
  solution; θ_0 from a hypernetwork on the 50-step context (amplitude-normalised).
- WARP-MLP: the same WARP with the paper's MLP root (τ -> (x, v)).
- GRU: tsrnn.forecasting.GRUForecaster (residual linear readout), windows of 100 steps.
WARP-MLP uses windows of the whole trajectory (τ = t/199, the paper's t/(T-1), so that the
forecast stays in the τ range it was trained on); WARP-phys and the GRU use windows of 100
steps (cheaper; the physical root extrapolates in τ exactly). Training budgets (epochs) are
small to keep the script near 10 minutes on 2 CPU cores.

    python benchmarks/bench_warp.py [--timing-only]
"""

from __future__ import annotations

import os
import sys
import time
import warnings

import numpy as np
import torch
from _common import machine, median_time, today

from tsrnn.datasets import mass_spring_damper
from tsrnn.forecasting import GRUForecaster, WARPForecaster

DT, STEPS, CONTEXT, N_TRAIN, N_TEST = 0.05, 200, 50, 2048, 128
LENGTH = STEPS - 1  # one training window per trajectory for WARP
COMMON = dict(batch_size=32, learning_rate=3e-3, learning_rate_final=1e-4,
              validation_fraction=0.0, early_stopping=None, random_state=0)


def warp(root: str, epochs: int, length: int = LENGTH, **overrides) -> WARPForecaster:
    physics = root == "mass_spring_damper"
    options = {"time_unit": length * DT, "omega": 2.25, "zeta": 0.15} if physics else None
    settings = dict(root=root, root_options=options, transition="diagonal",
                    init_window=CONTEXT, init_normalize=True, hyper_width=64,
                    sequence_length=length, max_epochs=epochs, scale=not physics, **COMMON)
    return WARPForecaster(**{**settings, **overrides})


def test_errors(model, y_test: np.ndarray) -> tuple[float, float, int]:
    """Mean MSE over all test forecasts (inf when one diverges), the median of the
    per-trajectory MSEs, and how many forecasts left the finite range."""
    contexts, truth = y_test[:, :CONTEXT], y_test[:, CONTEXT:]
    if isinstance(model, WARPForecaster):
        forecast = model.predict_batch(STEPS - CONTEXT, contexts)
    else:
        forecast = np.stack([model.predict(STEPS - CONTEXT, context=c) for c in contexts])
    per_trajectory = np.mean((forecast - truth) ** 2, axis=(1, 2))
    per_trajectory = np.where(np.isfinite(per_trajectory), per_trajectory, np.inf)
    return (float(per_trajectory.mean()), float(np.median(per_trajectory)),
            int(np.isinf(per_trajectory).sum()))


def main(timing_only: bool = False) -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)  # the convention of benchmarks/RESULTS.md on the CPU
    y_train, _ = mass_spring_damper(N_TRAIN, STEPS, DT, seed=0)
    y_test, _ = mass_spring_damper(N_TEST, STEPS, DT, seed=1)
    train = list(y_train)
    load = os.getloadavg()[0]
    print(f"# WARP, mass-spring-damper; {machine()}; {today()}; load average {load:.1f}",
          flush=True)

    rows = []
    candidates = [] if timing_only else [
        ("WARP-phys (MSD root), windows of 100", warp("mass_spring_damper", epochs=15,
                                                       length=100)),
        ("WARP-MLP (paper's root), windows of 199", warp("mlp", epochs=10)),
        ("GRU (hidden 64), windows of 100", GRUForecaster(hidden_size=64, sequence_length=100,
                                                          max_epochs=6, **COMMON)),
    ]
    print("| model | test MSE (150-step closed loop) | vs WARP-phys | median per-trajectory "
          "MSE | diverged | fit seconds | epochs |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for name, model in candidates:
        start = time.perf_counter()
        model.fit(train)
        seconds = time.perf_counter() - start
        mean, median, diverged = test_errors(model, y_test)
        rows.append((mean, median))
        print(f"| {name} | {mean:.2e} | {mean / rows[0][0]:.1f}x | {median:.2e} | "
              f"{diverged}/{N_TEST} | {seconds:.0f} | {model.n_epochs_} |", flush=True)
    if rows:
        best_mean = min(r[0] for r in rows[1:])
        best_median = min(r[1] for r in rows[1:])
        print(f"WARP-phys error vs the best other model: {best_mean / rows[0][0]:.1f}x lower "
              f"in mean, {best_median / rows[0][1]:.1f}x in median (target >= 10x)")

    # Time per epoch, scan (non-autoregressive) vs autoregressive: one optimizer step's
    # forward + backward on a batch of 32 whole trajectories, times the batches of an epoch
    # over the 2048 training trajectories (fit() overheads excluded; the same module and
    # data for both trainings, which compute the same loss under teacher forcing).
    batch = torch.as_tensor(y_train[:32], dtype=torch.float32)
    n_batches = -(-N_TRAIN // 32)
    print("\n| transition | D_θ | scan s/epoch | autoregressive s/epoch | speed-up |")
    print("|---|---|---|---|---|", flush=True)
    for transition in ("diagonal", "lowrank", "dense"):
        model = warp("mlp", epochs=1, transition=transition, learning_rate=1e-3)
        model.fit(train[:64])
        module = model.module_.train()
        times = {}
        for training in ("scan", "autoregressive"):
            model.training = training

            def step(m=model, module=module):
                module.zero_grad()
                m._training_loss(module, batch, None).backward()

            times[training], _ = median_time(step, repeats=3)
        print(f"| {transition} | {module.n_params} | {times['scan'] * n_batches:.1f} | "
              f"{times['autoregressive'] * n_batches:.1f} | "
              f"{times['autoregressive'] / times['scan']:.1f}x |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f} (shared machine: timings under "
          "load are pessimistic)")


if __name__ == "__main__":
    main(timing_only="--timing-only" in sys.argv)
