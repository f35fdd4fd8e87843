"""Memory of residual reservoirs against the leaky ESN at equal total units.

Do the deep residual ESN (Pinna, Ceni & Gallicchio 2025, arXiv:2508.21172) and the residual
reservoir memory network (same authors, arXiv:2508.09925) remember more than a leaky ESN of
as many units, as the papers claim? Two tasks on one input stream u_t ~ U(-0.8, 0.8) i.i.d.:

- Memory capacity (Jaeger 2002, "Short term memory in echo state networks", GMD Report 152):
  MC = sum_{k=1}^{K} r^2(y_k, u_{t-k}), r the correlation on test data between the ridge
  readout's reconstruction y_k of the input k steps back and that input; K = N (a linear
  readout of N features has MC <= N, Jaeger's bound).
- ctXOR_d, the papers' own delayed nonlinear recall (Ceni & Gallicchio 2024, ResESN):
  y_t = sign(r_t) r_t^2 with r_t = u_{t-d} u_{t-d-1}, d = 5 and 10; NRMSE = RMSE / RMS(y).

Protocol: one stream per seed of washout max(200, K) + 4000 training + 1000 validation
+ 1000 test steps, fed once; states standardised with the training statistics; ridge
readout (intercept, penalty lambda in {1e-8, 1e-6, 1e-4, 1e-2} per sample). Each model has
a grid of 8 settings (3 factors of 2 values, listed in GRIDS); for each model, readout and
task the setting and lambda with the best validation score averaged over the seeds are
picked, and their test scores reported as mean +- std over the seeds. Every seed changes the
weights and the input stream; all models see the same streams. Fixed for all: bias
b ~ U(-0.2, 0.2) (without one, tanh reservoirs are odd in the inputs and ctXOR's even
target is out of reach), dense W ~ U(-1, 1) scaled to radius rho by the circular law;
rho = 0.9 for the residual models, inter-layer scaling 1 (DeepResESN, layers of 250),
memory input scaling 0.1 and O random (ResRMN g<1); ResRMN's "in" scales both W_x and W_m.

Run: ``python benchmarks/bench_reservoir_memory.py`` (sizes 500 and 1000, 3 seeds;
``--sizes 500 --seeds 2`` for a quick look).
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings

import numpy as np
import torch
from _common import machine, today

from tsrnn.reservoir import DeepResidualReservoir, LeakyReservoir, ResidualMemoryReservoir
from tsrnn.reservoir.matrices import bias_vector, input_matrix, recurrent_matrix

TRAIN, VALIDATION, TEST = 4000, 1000, 1000
RIDGES = (1e-8, 1e-6, 1e-4, 1e-2)
XOR_DELAYS = (5, 10)
LAYER_WIDTH = 250  # DeepResESN: 2 x 250 for 500 units, 4 x 250 for 1000
# b ~ U(-s, s) for every model: without a bias a tanh reservoir is an odd function of the
# inputs and cannot produce ctXOR's even target (its correlation with any readout is 0).
BIAS_SCALING = 0.2

# Three factors of two values each, for every model: the settings that govern its memory
# and its nonlinearity. ResRMN twice: the paper's lossless memory (gamma = 1) and the fading
# one of tsrnn's extension (gamma < 1), which a stream much longer than the ring needs.
RESIDUAL_RATES = ((0.5, 0.5), (0.99, 0.01))
GRIDS = {
    "ESN (leaky)": dict(spectral_radius=(0.9, 0.99), leak_rate=(1.0, 0.5),
                        input_scaling=(0.1, 1.0)),
    "DeepResESN": dict(orthogonal=("random", "cycle"), alpha_beta=RESIDUAL_RATES,
                       input_scaling=(0.1, 1.0)),
    "ResRMN g=1": dict(orthogonal=("random", "identity"), alpha_beta=RESIDUAL_RATES,
                       drive_scaling=(0.1, 1.0)),
    "ResRMN g<1": dict(memory_radius=(0.9, 0.99), alpha_beta=RESIDUAL_RATES,
                       drive_scaling=(0.1, 1.0)),
}
# Readouts: every model on all its units (equal readout size); also the papers' variants.
READOUTS = {"ESN (leaky)": ("all",), "DeepResESN": ("all", "last layer"),
            "ResRMN g=1": ("all", "h only (paper)"), "ResRMN g<1": ("all", "h only (paper)")}


def settings(model: str) -> list[dict]:
    grid = GRIDS[model]
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def build(model: str, units: int, setting: dict, seed: int) -> torch.nn.Module:
    rng = np.random.default_rng(seed)
    if model == "ESN (leaky)":
        recurrent_rng, input_rng, bias_rng = rng.spawn(3)
        recurrent = recurrent_matrix(units, setting["spectral_radius"], 1.0, recurrent_rng,
                                     distribution="uniform", dense=True, exact=False)
        return LeakyReservoir(recurrent, input_matrix(units, 1, setting["input_scaling"], 1.0,
                                                      input_rng),
                              bias_vector(units, BIAS_SCALING, bias_rng),
                              setting["leak_rate"])
    alpha, beta = setting["alpha_beta"]
    if model == "DeepResESN":
        return DeepResidualReservoir.random(
            1, units // LAYER_WIDTH, LAYER_WIDTH, rng=rng, alpha=alpha, beta=beta,
            spectral_radius=0.9, orthogonal=setting["orthogonal"],
            input_scaling=setting["input_scaling"], inter_scaling=1.0,
            bias_scaling=BIAS_SCALING)
    return ResidualMemoryReservoir.random(
        1, units // 2, units // 2, rng=rng, alpha=alpha, beta=beta, spectral_radius=0.9,
        orthogonal=setting.get("orthogonal", "random"), input_scaling=setting["drive_scaling"],
        memory_input_scaling=0.1, memory_scaling=setting["drive_scaling"],
        bias_scaling=BIAS_SCALING,
        memory_radius=setting.get("memory_radius", 1.0))


def readout_columns(model: str, readout: str, units: int) -> slice:
    if readout == "last layer":
        return slice(units - LAYER_WIDTH, None)
    if readout == "h only (paper)":
        return slice(units // 2, None)
    return slice(None)


def targets(stream: np.ndarray, washout: int, max_delay: int) -> np.ndarray:
    """Columns u_{t-1} .. u_{t-K}, then ctXOR_d for each d, for t >= washout."""
    times = np.arange(washout, stream.shape[0])
    delayed = np.stack([stream[times - k] for k in range(1, max_delay + 1)], 1)
    xor = []
    for d in XOR_DELAYS:
        product = stream[times - d] * stream[times - d - 1]
        xor.append(np.sign(product) * product ** 2)
    return np.concatenate([delayed, np.stack(xor, 1)], 1)


def squared_correlation(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p, y = prediction - prediction.mean(0), target - target.mean(0)
    return (p * y).sum(0) ** 2 / ((p * p).sum(0) * (y * y).sum(0))


def readout_scores(states: torch.Tensor, target: torch.Tensor, max_delay: int) -> dict:
    """{task: array (len(RIDGES), 2)} of (validation, test) scores: MC (higher is better)
    and ctXOR NRMSE (lower is better), for each ridge penalty."""
    train = slice(0, TRAIN)
    splits = (slice(TRAIN, TRAIN + VALIDATION), slice(TRAIN + VALIDATION, None))
    mean, std = states[train].mean(0), states[train].std(0) + 1e-12
    z = (states - mean) / std
    target_mean = target[train].mean(0)
    # One eigen-decomposition of the Gram matrix serves every penalty:
    # W(lambda) = Q (Lambda + lambda)^-1 Q^T Z^T (Y - mean Y) / T.
    values, vectors = torch.linalg.eigh(z[train].T @ z[train] / TRAIN)
    projected = vectors.T @ (z[train].T @ (target[train] - target_mean)) / TRAIN
    rotated = [z[split] @ vectors for split in splits]
    scores = {"MC": np.empty((len(RIDGES), 2))}
    scores |= {f"ctXOR{d}": np.empty((len(RIDGES), 2)) for d in XOR_DELAYS}
    for i, ridge in enumerate(RIDGES):
        for j, (split, basis) in enumerate(zip(splits, rotated)):
            prediction = (basis / (values + ridge)) @ projected + target_mean
            observed = target[split]
            scores["MC"][i, j] = float(squared_correlation(prediction[:, :max_delay],
                                                           observed[:, :max_delay]).sum())
            for n, d in enumerate(XOR_DELAYS):
                column = max_delay + n
                error = (prediction[:, column] - observed[:, column]).square().mean().sqrt()
                scores[f"ctXOR{d}"][i, j] = float(error / observed[:, column].square()
                                                  .mean().sqrt())
    return scores


def evaluate(model: str, units: int, seeds: list[int]) -> dict:
    """Scores of every (setting, seed, readout): results[readout][task] (S, seeds, R, 2)."""
    max_delay = units
    washout = max(200, max_delay)
    grid = settings(model)
    results = {r: {} for r in READOUTS[model]}
    seconds = np.zeros((len(grid), len(seeds)))
    for s, seed in enumerate(seeds):
        stream = np.random.default_rng(10_000 + seed).uniform(
            -0.8, 0.8, washout + TRAIN + VALIDATION + TEST)
        target = torch.from_numpy(targets(stream, washout, max_delay))
        inputs = torch.from_numpy(stream)[None, :, None]
        for g, setting in enumerate(grid):
            start = time.perf_counter()
            module = build(model, units, setting, seed)
            states = module(inputs)[0][0, washout:]
            for readout in READOUTS[model]:
                columns = readout_columns(model, readout, units)
                scores = readout_scores(states[:, columns], target, max_delay)
                for task, value in scores.items():
                    results[readout].setdefault(
                        task, np.empty((len(grid), len(seeds), *value.shape)))[g, s] = value
            seconds[g, s] = time.perf_counter() - start
    return {"results": results, "seconds": seconds, "grid": grid}


def select(scores: np.ndarray, higher_is_better: bool) -> tuple[int, int]:
    """(setting, ridge) with the best validation score averaged over seeds."""
    validation = scores[..., 0].mean(1)  # (S, R)
    flat = np.argmax(validation) if higher_is_better else np.argmin(validation)
    return np.unravel_index(flat, validation.shape)


def describe(setting: dict) -> str:
    parts = []
    for key, value in setting.items():
        if key == "alpha_beta":
            parts.append(f"a={value[0]},b={value[1]}")
        else:
            short = {"spectral_radius": "rho", "leak_rate": "leak", "input_scaling": "in",
                     "orthogonal": "O", "memory_radius": "gamma", "drive_scaling": "in"}[key]
            parts.append(f"{short}={value}")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # deliberately marginal settings (alpha = 0.99)
    seeds = list(range(args.seeds))
    begin = time.perf_counter()
    print(f"# reservoir memory benchmark, {today()}, {machine()}")
    print(f"# train {TRAIN}, validation {VALIDATION}, test {TEST} steps; K = N delays; "
          f"{args.seeds} seeds; 8 settings per model; ridge in {RIDGES}")
    header = (f"{'model':11s} {'units':>5s} {'readout':16s} {'MC (test)':>15s} "
              f"{'ctXOR5 NRMSE':>15s} {'ctXOR10 NRMSE':>15s} {'time (s)':>8s}  "
              "setting picked for MC")
    print(header)
    print("-" * len(header))
    baseline, xor_picks = {}, []
    for units in args.sizes:
        for model in GRIDS:
            run = evaluate(model, units, seeds)
            for readout, tasks in run["results"].items():
                cells = []
                for task, scores in tasks.items():
                    setting, ridge = select(scores, higher_is_better=task == "MC")
                    test = scores[setting, :, ridge, 1]
                    digits = 1 if task == "MC" else 3
                    cells.append(f"{test.mean():.{digits}f} ± {test.std():.{digits}f}")
                    if task != "MC":
                        xor_picks.append(f"{model} {units} {readout}, {task}: "
                                         f"{describe(run['grid'][setting])}, "
                                         f"lambda={RIDGES[ridge]:g}")
                    if task == "MC":
                        picked, mc_time = setting, run["seconds"][setting].mean()
                        if model == "ESN (leaky)":
                            baseline[units] = test.mean()
                        ratio = test.mean() / baseline[units]
                print(f"{model:11s} {units:5d} {readout:16s} {cells[0]:>15s} {cells[1]:>15s} "
                      f"{cells[2]:>15s} {mc_time:8.2f}  {describe(run['grid'][picked])} "
                      f"[MC x{ratio:.1f} of ESN]", flush=True)
    print("# settings picked for ctXOR (by validation NRMSE):")
    for line in xor_picks:
        print(f"#   {line}")
    print(f"# total {time.perf_counter() - begin:.0f} s")


if __name__ == "__main__":
    main()
