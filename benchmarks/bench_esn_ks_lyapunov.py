"""Lyapunov spectrum of an ESN trained on Kuramoto-Sivashinsky against the system's own.

Pathak, Lu, Hunt, Girvan & Ott (2017), "Using machine learning to replicate chaotic
attractors and calculate Lyapunov exponents from data", Chaos 27, 121102, showed that the
closed loop of an ESN trained on KS data reproduces the positive and near-zero Lyapunov
exponents of the true system. This script checks that claim with tsrnn alone: the ESN of
issue 3's KS benchmark (L = 22, 64 points, dt = 0.25, 70,000 training steps, 4000 units,
``bench_esn_kuramoto_sivashinsky.BEST``) is fitted, and ``lyapunov_spectrum`` is computed for
its closed loop (a map on 4064 dimensions, its tangents pushed through the reservoir's
Jacobian and the readout's feedback) and for the KS equation itself (the variational
equation integrated alongside, ETDRK4). Both in exponents per time unit; also the
Kaplan-Yorke dimension of each. No anchor library computes an ESN's spectrum (reservoirpy has
no Lyapunov analysis); Pathak et al.'s figures are for L = 60 and cannot be compared number
for number.

    python benchmarks/bench_esn_ks_lyapunov.py                  # seeds 0 1 2
    python benchmarks/bench_esn_ks_lyapunov.py --seeds 0 --n-steps 2000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import machine, today
from bench_esn_kuramoto_sivashinsky import BEST, N_TRAIN, data, make_esn

from tsrnn.analysis import kaplan_yorke_dimension, lyapunov_spectrum
from tsrnn.systems import KuramotoSivashinsky

DT = 0.25


def show(name: str, spectrum: np.ndarray, stderr: np.ndarray, seconds: float) -> None:
    values = " ".join(f"{v:+.4f}" for v in spectrum)
    print(f"{name}: [{values}] (stderr of the first {stderr[0]:.4f}), "
          f"D_KY {kaplan_yorke_dimension(spectrum):.2f}, {seconds:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="reservoir seeds (the data stay the same)")
    parser.add_argument("--n-exponents", type=int, default=10)
    parser.add_argument("--n-steps", type=int, default=8000,
                        help="measured steps of each trajectory of the ESN (dt 0.25)")
    parser.add_argument("--n-trajectories", type=int, default=8)
    args = parser.parse_args()
    print(f"# Lyapunov spectra, KS L=22 and ESNs trained on it; {machine()}; {today()}")
    print(f"# ESN: {args.n_trajectories} trajectories x {args.n_steps} steps "
          f"({args.n_steps * DT:.0f} time units) after a transient; KS: the defaults")
    start = time.perf_counter()
    spectrum, stderr = lyapunov_spectrum(KuramotoSivashinsky(L=22.0, n_grid=64),
                                         n_exponents=args.n_exponents, return_stderr=True)
    show("KS equation", spectrum, stderr, time.perf_counter() - start)
    y = data()
    for seed in args.seeds:
        start = time.perf_counter()
        model = make_esn(BEST, seed).fit(y[:N_TRAIN])
        fit = time.perf_counter() - start
        start = time.perf_counter()
        spectrum, stderr = lyapunov_spectrum(model, n_exponents=args.n_exponents, dt=DT,
                                             n_steps=args.n_steps,
                                             n_trajectories=args.n_trajectories,
                                             return_stderr=True)
        show(f"ESN seed {seed} (fit {fit:.0f} s)", spectrum, stderr,
             time.perf_counter() - start)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
