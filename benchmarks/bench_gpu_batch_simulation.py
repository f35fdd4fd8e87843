"""Batched simulation on a GPU: CUDA-graph replay versus eager launches, and the CPU.

Lorenz-63 (rk4 and rk8, dt = 0.01) and Kuramoto-Sivashinsky (L = 22, N = 64, dt = 0.25),
10,000 steps for a batch of trajectories; prints trajectory-steps per second for the graph
path, the eager path (graphs switched off) and one trajectory on the CPU, and checks that
the graph path gives the eager path's numbers.

    python benchmarks/bench_gpu_batch_simulation.py --batch 1024
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np
import torch
from _common import machine, today

import tsrnn.systems.integrators as integrators
import tsrnn.systems.pde as pde
from tsrnn.systems import KuramotoSivashinsky, Lorenz63


def timed(function):
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    start = time.perf_counter()
    result = function()
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# batch {args.batch}, {args.steps} steps; {machine()}; {today()}")
    cases = [("Lorenz63 rk4", Lorenz63(), dict(method="rk4")),
             ("Lorenz63 rk8", Lorenz63(), dict(method="rk8")),
             ("KS L=22 N=64", KuramotoSivashinsky(), {})]
    for name, system, options in cases:
        x0 = system.sample_initial_states(args.batch, seed=0)
        run = functools.partial(system.simulate, args.steps, x0=x0, device="cuda",
                                return_tensor=True, **options)
        run()  # warm-up (kernels, coefficients, cuFFT plans)
        graph_seconds, graphed = timed(run)
        original = (integrators.use_graphs, pde.use_graphs)
        integrators.use_graphs = pde.use_graphs = lambda *a: False
        try:
            eager_seconds, eager = timed(run)
        finally:
            integrators.use_graphs, pde.use_graphs = original
        cpu_seconds, _ = timed(functools.partial(system.simulate, args.steps, x0=x0[0],
                                                 **options))
        difference = float((graphed - eager).abs().max())
        rate = args.batch * args.steps
        print(f"{name:14s} graphs {rate / graph_seconds:9.3g}/s ({graph_seconds:6.2f} s)  "
              f"eager {rate / eager_seconds:9.3g}/s ({eager_seconds:6.2f} s)  "
              f"CPU 1 trajectory {args.steps / cpu_seconds:9.3g}/s  "
              f"graphs/CPU {rate / graph_seconds / (args.steps / cpu_seconds):7.1f}x  "
              f"max |graphs - eager| {difference:.1e}")
        assert np.isfinite(difference)


if __name__ == "__main__":
    main()
