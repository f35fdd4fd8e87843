"""DSR training of Lorenz-63 on the GPU against the CPU (issue 4: "at least 5 times faster").

The same training as benchmarks/bench_dsr_lorenz63.py (AL-RNN M=20, P=2, sparse forcing
tau=16; clipped shPLRNN M=3, H=100, adaptive GTF; 50 batches of 16 windows x 200 steps per
epoch, RAdam, checkpoint scoring by D_stsp every 5 epochs), run for a fixed number of epochs
with identical settings and seed on

- the CPU with 1 torch thread and with all threads (same process, same machine),
- CUDA with the eager step (fused Triton rollouts, ~100 small PyTorch launches a batch),
- CUDA with each step replayed as one CUDA graph (the default on CUDA).

Each line gives wall seconds per epoch of the whole fit (including one-time costs: Triton
compilation is paid by a warm-up fit first, graph capture is not), the steady-state seconds
per epoch (50 batches plus a fifth of a checkpoint evaluation, from the measured time of one
evaluation), the ratio to the 1-thread CPU, and the final training loss; the checkpoint
selection's long runs, which come once after the last epoch, are left out of these fits
(``selection="dstsp"``) and one of them is timed on its own. A float64 check compares the
first epoch's losses on CPU and GPU.

Usage::

    python benchmarks/bench_dsr_gpu.py                   # both models, every device present
    python benchmarks/bench_dsr_gpu.py --devices cpu1 --epochs 5
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time

import numpy as np
import torch

from tsrnn.dsr._graphed import GraphedStep, capturable_optimizer
from tsrnn.dsr.teacher_forcing import max_geometric_mean_norm

try:  # run as a script from the repository root or from benchmarks/
    from _common import machine, today
    from bench_dsr_lorenz63 import build, data
except ImportError:  # pragma: no cover
    from benchmarks._common import machine, today
    from benchmarks.bench_dsr_lorenz63 import build, data

CONFIGS = {
    "cpu1": dict(device="cpu", threads=1, graphed=False),
    "cpu_all": dict(device="cpu", threads=None, graphed=False),
    "cuda_eager": dict(device="cuda", threads=1, graphed=False),
    "cuda_graph": dict(device="cuda", threads=1, graphed=True),
}


def estimator(model: str, config: dict, epochs: int, seed: int, **overrides):
    teacher_forcing = "sparse" if model == "alrnn" else "gtf"
    est = build(model, None, epochs, seed, teacher_forcing)
    # The long runs of selection="dstsp+dh" come once, after the last epoch: timed on their
    # own (run), so that the per-epoch figures of these short fits are the epochs'.
    est.set_params(device=config["device"], selection="dstsp", **overrides)
    est._graph_training = config["graphed"]
    return est


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run(model: str, name: str, train: np.ndarray, epochs: int, seed: int) -> dict:
    config = CONFIGS[name]
    torch.set_num_threads(config["threads"] or os.cpu_count())
    # Warm-up: imports, Triton compilation, cuBLAS handles.
    estimator(model, config, 1, seed, batches_per_epoch=3).fit(train)
    est = estimator(model, config, epochs, seed)
    synchronize()
    started = time.perf_counter()
    est.fit(train)
    synchronize()
    wall = time.perf_counter() - started
    # One checkpoint evaluation (the free runs and D_stsp) timed on its own.
    references = [(train, None)]
    with torch.no_grad():
        synchronize()
        t0 = time.perf_counter()
        est._reconstruction_score(est.module_, references)
        synchronize()
        evaluation = time.perf_counter() - t0
        # One long run of the selection (a training makes ten, once, after its last epoch).
        synchronize()
        t0 = time.perf_counter()
        est._long_run_score(est.module_, references)
        synchronize()
        long_run = time.perf_counter() - t0
    n_evaluations = len(est.checkpoint_scores_)
    per_batch = max(wall - n_evaluations * evaluation, 0.0) / (epochs * 50)
    return {"config": name, "threads": torch.get_num_threads(), "epochs": est.n_epochs_,
            "graphed": bool(config["graphed"] and est.device_.type == "cuda"),
            "wall_s": wall, "s_per_epoch": wall / epochs, "evaluation_s": evaluation,
            "long_run_s": long_run,
            "n_evaluations": n_evaluations, "ms_per_batch": 1e3 * per_batch,
            "steady_s_per_epoch": 50 * per_batch + evaluation / 5,
            "final_loss": est.history_["train_loss"][-1],
            "losses": [round(v, 6) for v in est.history_["train_loss"]]}


def kernel_times(model: str, train: np.ndarray, seed: int) -> dict:
    """Milliseconds of the fused kernels on one training batch (16 x 200 steps) and of the
    free run of a checkpoint evaluation (8 x 12,500 steps), by CUDA events (median of 20)."""
    from tsrnn.ops import pwl_rollout

    est = estimator(model, CONFIGS["cuda_eager"], 1, seed, batches_per_epoch=1).fit(train)
    latent = est.module_.latent
    packed = pwl_rollout.pack(latent)
    y = est._tensor(train[: 16 * 201].reshape(16, 201, -1))
    with torch.no_grad():  # no autograd graph may outlive this line (it would hold
        z1 = est.module_.observation.initial_state(y[:, 0])  # nodes that break capture)
    signals = y[:, 1:]
    weights = torch.tensor(est._forcing_.weights(200), dtype=y.dtype, device=y.device)
    grad = torch.randn((16, 200, latent.n_latent), dtype=y.dtype, device=y.device)

    def timed(function) -> float:
        function()
        times = []
        for _ in range(20):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(True)
            start.record()
            function()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        return float(np.median(times))

    _, fed = pwl_rollout.forced_rollout(packed, z1, signals, weights, backend="triton")
    times = {
        "forced_rollout_ms": timed(lambda: pwl_rollout.forced_rollout(
            packed, z1, signals, weights, backend="triton")),
        "adjoint_ms": timed(lambda: pwl_rollout.adjoint(
            packed, grad, fed, weights, signals.shape[-1], backend="triton")),
        "free_run_8x12500_ms": timed(lambda: pwl_rollout.free_run(
            packed, z1[:8], 12_500, backend="triton")),
    }
    region = getattr(latent, "region", None)
    times["alpha_norm_gpu_ms"] = timed(
        lambda: max_geometric_mean_norm(latent.jacobian, fed, region))
    cpu_latent = copy.deepcopy(latent).cpu()
    times["alpha_norm_cpu_ms"] = timed(lambda: max_geometric_mean_norm(
        cpu_latent.jacobian, fed.cpu(), getattr(cpu_latent, "region", None)))
    step = GraphedStep(est.module_, capturable_optimizer(torch.optim.RAdam, est.module_, 1e-3,
                                                         0.0), lambda m: None, 10.0, y)
    listed = weights.tolist()
    times["graphed_step_ms"] = timed(lambda: step(y, listed))
    return times


def float64_agreement(model: str, train: np.ndarray, seed: int, graphed: bool) -> dict:
    """First-epoch losses in float64 on CPU and CUDA (same seed): round-off apart."""
    losses = {}
    for device in ("cpu", "cuda"):
        config = dict(CONFIGS["cpu1"], device=device, graphed=graphed)
        est = estimator(model, config, 2, seed, dtype="float64", batches_per_epoch=10)
        losses[device] = est.fit(train).history_["train_loss"]
    difference = max(abs(a - b) / abs(b) for a, b in zip(losses["cuda"], losses["cpu"]))
    return {"cpu": losses["cpu"], "cuda": losses["cuda"], "max_relative_difference": difference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=["alrnn", "shplrnn"],
                        default=["alrnn", "shplrnn"])
    parser.add_argument("--devices", nargs="+", choices=list(CONFIGS), default=None,
                        help="configurations (default: all that this machine has)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    names = args.devices or [n for n in CONFIGS
                             if CONFIGS[n]["device"] == "cpu" or torch.cuda.is_available()]
    train, _, _, _ = data()
    load = os.getloadavg()
    report = {"machine": machine(), "cpu_count": os.cpu_count(), "date": today(),
              "load_before": load, "epochs": args.epochs, "results": {}}
    for model in args.models:
        rows = []
        for name in names:
            try:
                rows.append(run(model, name, train, args.epochs, args.seed))
            except Exception as error:  # report the failure, measure the other configurations
                print(f"{model:8s} {name:10s} failed: {type(error).__name__}: {error}")
        baseline = next((r for r in rows if r["config"] == "cpu1"), None)
        for row in rows:
            if baseline is not None:
                row["speedup_vs_cpu1"] = baseline["s_per_epoch"] / row["s_per_epoch"]
                row["steady_speedup_vs_cpu1"] = (baseline["steady_s_per_epoch"]
                                                 / row["steady_s_per_epoch"])
            print(f"{model:8s} {row['config']:10s} {row['s_per_epoch']:.4f} s/epoch "
                  f"(steady {row['steady_s_per_epoch']:.4f}: {row['ms_per_batch']:.2f} ms/batch"
                  f" + eval {row['evaluation_s']:.3f} s / 5; one long run "
                  f"{row['long_run_s']:.2f} s)"
                  + (f" x{row['speedup_vs_cpu1']:.1f} (steady x"
                     f"{row['steady_speedup_vs_cpu1']:.1f}) vs cpu1" if baseline else "")
                  + f", final loss {row['final_loss']:.5f}", flush=True)
        report["results"][model] = rows
        if torch.cuda.is_available():
            times = kernel_times(model, train, args.seed)
            report["results"][model + "_kernels"] = times
            print(f"{model:8s} kernels: " + ", ".join(f"{k} {v:.3f}" for k, v in times.items()),
                  flush=True)
        for graphed in (False, True) if torch.cuda.is_available() else ():
            check = float64_agreement(model, train, args.seed, graphed=graphed)
            report["results"][f"{model}_float64_check_graphed_{graphed}"] = check
            print(f"{model:8s} float64 CPU vs CUDA ({'graphed' if graphed else 'eager'}) "
                  f"epoch losses: max relative difference "
                  f"{check['max_relative_difference']:.2e}", flush=True)
    report["load_after"] = os.getloadavg()
    print(f"machine: {report['machine']}, {report['cpu_count']} cores, load {load[0]:.2f} "
          f"before / {report['load_after'][0]:.2f} after, {report['date']}")
    if args.output:
        with open(args.output, "w") as file:
            json.dump(report, file, indent=1)


if __name__ == "__main__":
    main()
