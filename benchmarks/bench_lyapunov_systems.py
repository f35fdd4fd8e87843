"""Lyapunov spectra of the reference systems against the literature (SPEC section 1).

Targets of the foundation issue: Rossler lambda_1 within 0.005 of 0.0714; Henon both
exponents within 0.005; Lorenz-96 (N = 40, F = 8) summing to -40 within 1%;
Kuramoto-Sivashinsky (L = 22) lambda_1 between 0.040 and 0.052. Prints each spectrum with
its standard error, the check and the wall time.

    python benchmarks/bench_lyapunov_systems.py                 # CPU
    python benchmarks/bench_lyapunov_systems.py --device cuda   # the same on a GPU
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import machine, today

from tsrnn.analysis import kaplan_yorke_dimension, lyapunov_spectrum
from tsrnn.systems import Henon, KuramotoSivashinsky, Lorenz96, Rossler


def cases():
    yield ("Rossler", Rossler(), dict(method="rk4", n_steps=40_000, n_trajectories=64),
           lambda s: abs(s[0] - 0.0714) <= 0.005, "|l1 - 0.0714| <= 0.005")
    yield ("Henon", Henon(), dict(n_steps=20_000, n_trajectories=64),
           lambda s: np.abs(s - [0.41922, -1.62319]).max() <= 0.005, "both within 0.005")
    yield ("Lorenz96 N=40 F=8", Lorenz96(), dict(method="rk4", n_steps=2_000,
                                                 n_trajectories=16),
           lambda s: abs(s.sum() + 40) <= 0.4, "sum within 1% of -40")
    yield ("Kuramoto-Sivashinsky L=22", KuramotoSivashinsky(),
           dict(n_exponents=10, n_steps=8_000, n_trajectories=32),
           lambda s: 0.040 <= s[0] <= 0.052, "0.040 <= l1 <= 0.052")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="*", default=None,
                        help="run the cases whose name starts with one of these words")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# Lyapunov spectra; device {args.device}; {machine()}; {today()}")
    for name, system, options, check, target in cases():
        if args.only and not any(name.lower().startswith(w.lower()) for w in args.only):
            continue
        start = time.perf_counter()
        spectrum, stderr = lyapunov_spectrum(system, device=args.device, seed=0,
                                             return_stderr=True, **options)
        seconds = time.perf_counter() - start
        shown = ", ".join(f"{v:+.4f}" for v in spectrum[:4])
        more = f", ... ({len(spectrum)} in all, sum {spectrum.sum():+.3f})" \
            if len(spectrum) > 4 else ""
        print(f"{name:28s} {seconds:7.1f} s  [{shown}{more}] +- {stderr[0]:.4f}  "
              f"D_KY {kaplan_yorke_dimension(spectrum):.3f}  {target}: "
              f"{'PASS' if check(spectrum) else 'FAIL'}  options {options}")


if __name__ == "__main__":
    main()
