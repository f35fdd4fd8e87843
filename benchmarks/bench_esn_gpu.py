"""Reservoirs on a GPU: throughput of large batches, checked against the CPU.

1. One reservoir of 1000 units driven by a batch of 256 independent series.
2. 256 distinct reservoirs of 1000 units each (different random weights, e.g. a
   hyperparameter sweep or an ensemble), run as one block-diagonal reservoir of 256,000
   units on one input series.
Prints reservoir-steps per second (units updated per second / 1000) and the largest
difference from the same computation on the CPU over the first steps.

    python benchmarks/bench_esn_gpu.py --steps 2000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sparse
import torch
from _common import machine, today

from tsrnn.reservoir import LeakyReservoir
from tsrnn.reservoir.matrices import bias_vector, input_matrix, recurrent_matrix


def build(n_reservoirs: int, units: int, n_inputs: int, seed: int) -> LeakyReservoir:
    rng = np.random.default_rng(seed)
    blocks, inputs, biases = [], [], []
    for _ in range(n_reservoirs):
        blocks.append(recurrent_matrix(units, rng.uniform(0.5, 1.0), 0.02, rng))
        inputs.append(input_matrix(units, n_inputs, 0.1, 1.0, rng))
        biases.append(bias_vector(units, 0.5, rng))
    recurrent = blocks[0] if n_reservoirs == 1 else sparse.block_diag(blocks, format="csr")
    return LeakyReservoir(recurrent, np.concatenate(inputs), np.concatenate(biases), 1.0)


def timed(module, inputs):
    torch.cuda.synchronize()
    start = time.perf_counter()
    states, _ = module(inputs)
    torch.cuda.synchronize()
    return time.perf_counter() - start, states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA device")
    print(f"# reservoirs on a GPU, {args.steps} steps; {machine()}; {today()}")
    rng = np.random.default_rng(0)
    series = torch.from_numpy(rng.uniform(-1, 1, (args.batch, args.steps, 3)))
    for label, module, inputs in [
        (f"1 reservoir x {args.batch} series", build(1, 1000, 3, 0), series),
        (f"{args.batch} reservoirs (block-diagonal) x 1 series",
         build(args.batch, 1000, 3, 1), series[:1]),
    ]:
        gpu = module.to("cuda")
        timed(gpu, inputs[:, :50].cuda())  # warm-up
        seconds, states = timed(gpu, inputs.cuda())
        reservoir_steps = inputs.shape[0] * args.steps * module.n_units / 1000
        cpu_module = module.to("cpu")
        start = time.perf_counter()
        cpu_states, _ = cpu_module(inputs[:, :200])
        cpu_seconds = (time.perf_counter() - start) * args.steps / 200
        difference = float((states[:, :200].cpu() - cpu_states).abs().max())
        print(f"{label:42s} GPU {seconds:7.2f} s = {reservoir_steps / seconds:9.3g} "
              f"reservoir-steps/s; CPU (extrapolated) {cpu_seconds:7.1f} s; GPU/CPU "
              f"{cpu_seconds / seconds:6.1f}x; max |GPU - CPU| over 200 steps {difference:.1e}")


if __name__ == "__main__":
    main()
