"""Where a two-region piecewise-affine model of Rössler data puts its equilibria.

Issue 4 asks an AL-RNN with one ReLU (P = 1, two linear subregions) to place Rössler's two
equilibria within 10% of the attractor's size. The inner one sits in the middle of the data;
the outer one, at (c + sqrt(c^2 - 4ab)) / 2 * (1, -1/a, 1/a), lies far outside the attractor.
This script asks what data on the attractor say about it: the data (the benchmark's setting,
dt = 0.05, 100,000 noise-free steps, standardised) are split by a threshold on x or z, an
affine one-step map z_{t+1} = A z_t + h is fitted to each side by least squares, and each
map's equilibrium (I - A)^{-1} h is compared with Rössler's, in % of the bounding-box
diagonal. With A close to the identity that solve is ill-conditioned, and the equilibrium of
the spike side's map moves by orders of magnitude as the threshold moves by half a standard
deviation (RESULTS.md, stop 18).

    python benchmarks/bench_rossler_affine_equilibria.py
"""

from __future__ import annotations

import numpy as np

from tsrnn.systems import Rossler

THRESHOLDS = (-0.5, 0.0, 0.5, 1.0, 1.5, 2.0)


def equilibria(system: Rossler) -> tuple[np.ndarray, np.ndarray]:
    """Rössler's (inner, outer) equilibria."""
    a, b, c = system.a, system.b, system.c
    root = np.sqrt(c * c - 4 * a * b)
    inner, outer = ((c + sign * root) / 2 * np.array([1.0, -1.0 / a, 1.0 / a])
                    for sign in (-1, 1))
    return inner, outer


def affine_equilibrium(states: np.ndarray, following: np.ndarray) -> np.ndarray:
    """The equilibrium of the least-squares affine map from states to following."""
    design = np.c_[states, np.ones(len(states))]
    weights, *_ = np.linalg.lstsq(design, following, rcond=None)
    A, h = weights[:-1].T, weights[-1]
    return np.linalg.solve(np.eye(len(h)) - A, h)


def main() -> None:
    system = Rossler()
    y = system.simulate(100_000, dt=0.05, transient=2_000, seed=0)
    mean, std = y.mean(0), y.std(0)
    z = (y - mean) / std
    inner, outer = ((point - mean) / std for point in equilibria(system))
    diagonal = np.linalg.norm(z.max(0) - z.min(0))
    print(f"standardised: inner {np.round(inner, 2)}, outer {np.round(outer, 2)}, "
          f"bounding-box diagonal {diagonal:.2f}")
    states, following = z[:-1], z[1:]
    for column, name in ((0, "x"), (2, "z")):
        for threshold in THRESHOLDS:
            above = states[:, column] > threshold
            if min(above.sum(), (~above).sum()) < 100:
                continue
            below_fp, above_fp = (affine_equilibrium(states[side], following[side])
                                  for side in (~above, above))
            to_inner = 100 * np.linalg.norm(below_fp - inner) / diagonal
            to_outer = 100 * np.linalg.norm(above_fp - outer) / diagonal
            print(f"{name} > {threshold:4.1f} ({above.mean():5.1%} of the data above): "
                  f"below's equilibrium {to_inner:7.1f}% from the inner one; above's "
                  f"{to_outer:8.1f}% from the outer one")


if __name__ == "__main__":
    main()
