"""Every checkpoint of an AL-RNN training, measured: is a trade-off one of training or of selection?

The study behind "AL-RNN: every checkpoint of eight runs measured" in RESULTS.md (issue 4).
``train`` runs the Lorenz-63 benchmark's training (``bench_dsr_lorenz63.py``: same data,
model, forcing, schedule and selection; ``--system rossler`` the Rossler one) and keeps the
weights of every scored checkpoint (one per ``checkpoint_every`` = 5 epochs) with its
selection score. ``evaluate`` takes the checkpoints with the best selection scores of each
saved run and measures each one as the benchmark measures its selected model: D_stsp and
D_H of 100,000 generated steps against the held-out trajectory, the Lyapunov spectrum, the
fixed points against the system's equilibria (SCYFI) and the subregions visited; and what
the estimator's selection="dstsp+dh" reads from the training data alone (D_stsp and D_H of
one long free run from the data's first state), with the checkpoint that rule keeps among
each run's 10 best (the study behind that rule, stop 14).
``evaluate --selection-noise auto`` first scores every checkpoint again as a training with
that ``selection_noise`` would have, and then does the same with those scores (stop 17).
``evaluate --average K`` replaces each checkpoint by the mean weights of the K checkpoints
ending with it (stochastic weight averaging over K * 5 epochs), scores every one again and
measures those (stop 18). ``evaluate --forecast-skill`` adds each candidate's valid
prediction times on the training data (400 forecasts of 800 steps, each from a state
synchronised on the 100 steps before it; threshold 0.4), a data-based signal tried as a
proxy for lambda_1 (stop 19; its correlations are printed at the end).
``train --force-unobserved`` forces every latent at each forcing step, the unobserved ones to
L x (the state a window starts from), instead of the observed ones only, and
``--sequence-length`` with ``--batch-size`` change the training windows (stop 20).
``train --refine-from RUN`` trains a saved run's kept model on with other windows
(``partial_fit``), every checkpoint of that further training kept (stop 21).

    python benchmarks/bench_dsr_checkpoints.py train --seed 3 --learning-rate 2e-3 \\
        --forcing-interval 10 --max-epochs 1450 --device cuda --output runs/seed3
    python benchmarks/bench_dsr_checkpoints.py evaluate runs --top 20 --jobs 2

(stop 13: eight such trainings at once on one H200, 405-410 s each; the evaluation of 160
checkpoints on the two dev-machine cores took ~10 minutes).
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import time
import warnings
from multiprocessing import Pool

import numpy as np
import torch
from bench_dsr_lorenz63 import SYSTEMS, _level, build, data, evaluate

from tsrnn.dsr import ALRNN
from tsrnn.dsr.teacher_forcing import IdentityObservation
from tsrnn.exceptions import DivergenceError


def train(args: argparse.Namespace) -> None:
    """One training of the benchmark, every scored checkpoint's weights kept."""
    torch.set_num_threads(1)
    kept = []
    score_checkpoint = ALRNN._validation_loss

    def recording(self, module, references):
        n_scored = len(self.checkpoint_scores_)
        value = score_checkpoint(self, module, references)
        if len(self.checkpoint_scores_) > n_scored:  # scored at this epoch
            epoch, score = self.checkpoint_scores_[-1]
            kept.append((epoch, score, {name: tensor.detach().cpu().clone()
                                        for name, tensor in module.state_dict().items()}))
        return value

    # The estimator keeps only its best checkpoint; the study needs every one, so the
    # scoring method is wrapped for this process (a script, not the library).
    ALRNN._validation_loss = recording
    if args.force_unobserved:
        # The experiment of stop 20: zhat = [x; L x] for all M latents (no gradient, as
        # forcing signals are targets). Patched for this process only.
        def forcing_signal(self, x):
            with torch.no_grad():
                return torch.cat([x, x @ self.L.T], dim=-1)
        IdentityObservation.forcing_signal = forcing_signal
    train_data, _, _, _ = data(args.system)
    started = time.perf_counter()
    if args.refine_from is None:
        estimator = build("alrnn", 60.0 * args.minutes, args.max_epochs, args.seed, "sparse",
                          args.noise, system=args.system, learning_rate=args.learning_rate,
                          learning_rate_final=args.learning_rate_final,
                          forcing_interval=args.forcing_interval, device=args.device,
                          sequence_length=args.sequence_length, batch_size=args.batch_size)
        estimator.fit(train_data)
    else:
        # Stop 21: a model trained with one window length trained on with another
        # (partial_fit: a fresh optimizer and schedule, the best checkpoint of this call kept).
        estimator = _loaded(args.refine_from)
        estimator.set_params(
            sequence_length=args.sequence_length, batch_size=args.batch_size,
            learning_rate=args.learning_rate, max_epochs=args.max_epochs,
            learning_rate_final=args.learning_rate_final or args.learning_rate,
            forcing_interval=args.forcing_interval, max_time=60.0 * args.minutes,
            device=args.device, random_state=args.seed)
        estimator.partial_fit(train_data)
    wall = time.perf_counter() - started
    output = pathlib.Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"checkpoints": kept, "seed": args.seed, "learning_rate": args.learning_rate,
                "forcing_interval": args.forcing_interval, "noise": args.noise,
                "sequence_length": args.sequence_length, "batch_size": args.batch_size,
                "system": args.system,
                "epochs_run": estimator.n_epochs_, "best_epoch": estimator.best_epoch_,
                "wall_s": wall}, f"{output}.ckpts.pt")
    estimator.save(f"{output}.est.pt", overwrite=True)
    print(f"seed {args.seed}: {estimator.n_epochs_} epochs in {wall:.0f} s, best epoch "
          f"{estimator.best_epoch_}, {len(kept)} checkpoints kept")


@functools.cache
def _held_out(system: str) -> tuple:
    """The benchmark's training and held-out trajectories and the training statistics
    (once per process)."""
    return data(system)


@functools.cache
def _loaded(prefix: str) -> ALRNN:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "trained on cuda, loaded on the CPU"
        return ALRNN.load(f"{prefix}.est.pt")


def _estimator(prefix: str, state: dict, selection_noise: float | str) -> ALRNN:
    """The run's estimator holding one checkpoint's weights, scoring with this
    ``selection_noise``."""
    estimator = _loaded(prefix)
    estimator.module_.load_state_dict(state)
    estimator.selection_noise = selection_noise
    estimator._score_cache_ = None  # the noise level is set with the references
    return estimator


def _rescore(job: tuple) -> float:
    """A checkpoint's short-run selection score again, with the selection noise."""
    prefix, state, system, selection_noise = job
    torch.set_num_threads(1)
    train = _held_out(system)[0]
    estimator = _estimator(prefix, state, selection_noise)
    references = [(estimator.y_scaler_.transform(train), None)]
    return estimator._reconstruction_score(estimator.module_, references)


def _measure(job: tuple) -> dict:
    prefix, epoch, score, state, system, selection_noise, skill = job
    torch.set_num_threads(1)
    train, test, mean, std = _held_out(system)
    estimator = _estimator(prefix, state, selection_noise)
    vpt = _forecast_skill(estimator, estimator.y_scaler_.transform(train)) if skill else None
    # What selection="dstsp+dh" reads from the training data alone: one long free run from
    # the data's first state, D_stsp and D_H against the training data.
    long_run = estimator._long_run_score(estimator.module_,
                                         [(estimator.y_scaler_.transform(train), None)])
    try:
        result = evaluate(estimator, test, mean, std, True, system)
    except DivergenceError:  # the Lyapunov run of a model that leaves the finite range
        result = {"d_stsp": None, "d_h": None, "lyapunov": [float("nan")] * 3,
                  "fixed_points": [], "regions_visited": None}
    return {"run": pathlib.Path(prefix).name, "system": system, "epoch": epoch,
            "selection_score": score,
            "long_run_d_stsp": long_run[0], "long_run_d_h": long_run[1],
            "d_stsp": result["d_stsp"], "d_h": result["d_h"],
            "d_stsp_clean_test": result.get("d_stsp_clean_test"),
            "lyapunov": result["lyapunov"],
            "fixed_points": [(row.get("distance_fraction"), row.get("model_unstable_dims"),
                              row.get("true_unstable_dims"))
                             for row in result["fixed_points"]],
            "regions_visited": result["regions_visited"],
            "forecast_vpt_median": None if vpt is None else vpt[0],
            "forecast_vpt_mean": None if vpt is None else vpt[1]}


def _forecast_skill(estimator: ALRNN, train: np.ndarray, n_starts: int = 400,
                    context: int = 100, horizon: int = 800) -> tuple[float, float]:
    """(median, mean) valid prediction time in time units of forecasts of the standardised
    training data from states synchronised on the ``context`` steps before each start (the
    observed latents replaced by the data, as ``predict`` does), all starts as one batch."""
    from tsrnn.dsr.teacher_forcing import _force

    rng = np.random.default_rng(0)
    starts = np.sort(rng.choice(np.arange(context, len(train) - horizon), n_starts,
                                replace=False))
    module = estimator.module_.eval()
    with torch.no_grad():
        rows = torch.as_tensor(np.stack([train[s - context:s] for s in starts]),
                               dtype=estimator.dtype_, device=estimator.device_)
        signals = module.observation.forcing_signal(rows)
        z = module.observation.initial_state(rows[:, 0])
        for t in range(1, context):
            z = _force(module.step(z, None), signals[:, t], None, 1.0)
        generated = module.observe(module.free_run(z, horizon)).double().cpu().numpy()
    truth = np.stack([train[s:s + horizon] for s in starts])
    error = np.sqrt(((generated - truth) ** 2).sum(-1) / (truth ** 2).sum(-1).mean())
    over = error > 0.4
    steps = np.where(over.any(1), over.argmax(1), horizon)
    dt = SYSTEMS["lorenz63"]["dt"] if estimator.dt is None else estimator.dt
    return float(np.median(steps) * dt), float(steps.mean() * dt)


def _averaged(checkpoints: list, window: int) -> list:
    """Each checkpoint from the window-th on replaced by the mean of the weights of the
    ``window`` checkpoints that end with it (stochastic weight averaging over the last
    window * checkpoint_every epochs); scores are left to be measured again."""
    averaged = []
    for k in range(window - 1, len(checkpoints)):
        states = [state for _, _, state in checkpoints[k - window + 1:k + 1]]
        mean = {name: torch.stack([state[name].double() for state in states]).mean(0)
                .to(states[-1][name].dtype) for name in states[-1]}
        averaged.append((checkpoints[k][0], None, mean))
    return averaged


def evaluate_runs(args: argparse.Namespace) -> None:
    """The best-scored checkpoints of every saved run, measured."""
    jobs = []
    for path in sorted(pathlib.Path(args.directory).glob("*.ckpts.pt")):
        saved = torch.load(path)
        prefix = str(path)[:-len(".ckpts.pt")]
        system = saved.get("system", "lorenz63")
        checkpoints = saved["checkpoints"]
        if args.average > 1:
            checkpoints = _averaged(checkpoints, args.average)
        if args.selection_noise != 0.0 or args.average > 1:
            # Every checkpoint scored again as a training with this selection_noise would
            # have scored it (the training's own scores had none), or, averaged, as a
            # training would score the averaged weights.
            with Pool(args.jobs) as pool:
                scores = pool.map(_rescore, [(prefix, state, system, args.selection_noise)
                                             for _, _, state in checkpoints], chunksize=8)
            checkpoints = [(epoch, score, state)
                           for (epoch, _, state), score in zip(checkpoints, scores)]
        candidates = sorted((c for c in checkpoints if c[0] >= args.min_epoch),
                            key=lambda checkpoint: (checkpoint[1], checkpoint[0]))[:args.top]
        jobs += [(prefix, epoch, score, state, system, args.selection_noise,
                  args.forecast_skill) for epoch, score, state in candidates]
    with Pool(args.jobs) as pool:
        rows = pool.map(_measure, jobs, chunksize=1)
    for row in rows:
        reference = SYSTEMS[row["system"]]["lyapunov"]
        lambda1_error = abs(row["lyapunov"][0] - reference) / reference
        finite = row["d_stsp"] is not None  # None: the free run left the finite numbers
        row["meets_distances_and_lambda1"] = bool(
            finite and row["d_stsp"] <= 0.5 and row["d_h"] <= 0.2 and lambda1_error <= 0.15)
        print(f"{row['run']} epoch {row['epoch']:5d} score {row['selection_score']:.3f}: "
              f"{_summary(row)} lambda {np.round(row['lyapunov'], 3).tolist()} fixed points "
              f"{row['fixed_points']} long run on the training data "
              f"{row['long_run_d_stsp']:.3f} + {row['long_run_d_h']:.3f}"
              f"{'  <- all three' if row['meets_distances_and_lambda1'] else ''}")
    for run in sorted({row["run"] for row in rows}):
        candidates = [row for row in rows if row["run"] == run][:10]
        chosen = min(candidates, key=lambda row: (row["long_run_d_stsp"] + row["long_run_d_h"],
                                                  row["epoch"]))
        lambda1 = chosen["lyapunov"][0]
        print(f"{run}: selection='dstsp+dh' among its 10 best keeps epoch {chosen['epoch']}"
              f" ({_summary(chosen)}, lambda1 {lambda1:.3f}); of the {len(candidates)}: "
              f"{sum(row['meets_distances_and_lambda1'] for row in candidates)} meet all three")
    if args.forecast_skill:
        _report_forecast_skill(rows)
    if args.output:
        with open(args.output, "w") as file:
            json.dump(rows, file, indent=1)


def _report_forecast_skill(rows: list) -> None:
    """Spearman correlations of the mean forecast VPT with lambda_1, its error and the
    distances, over the candidates whose free run stayed near the attractor, and what
    keeping each run's longest-forecasting candidate would keep."""
    from scipy.stats import spearmanr

    kept = [row for row in rows if row["d_stsp"] is not None and row["d_stsp"] < 1.5]
    reference = SYSTEMS[kept[0]["system"]]["lyapunov"]
    vpt = [row["forecast_vpt_mean"] for row in kept]
    for name, values in (("lambda1", [row["lyapunov"][0] for row in kept]),
                         ("|lambda1 error|", [abs(row["lyapunov"][0] - reference)
                                              for row in kept]),
                         ("D_stsp", [row["d_stsp"] for row in kept]),
                         ("D_H", [row["d_h"] for row in kept])):
        result = spearmanr(vpt, values)
        print(f"forecast VPT vs {name}: Spearman {result.statistic:+.2f} "
              f"(p = {result.pvalue:.2g}, {len(kept)} candidates)")
    for run in sorted({row["run"] for row in rows}):
        best = max((row for row in rows if row["run"] == run and row["d_stsp"] is not None),
                   key=lambda row: row["forecast_vpt_mean"])
        print(f"{run}: the longest forecasts keep epoch {best['epoch']} ({_summary(best)}, "
              f"lambda1 {best['lyapunov'][0]:.3f})")


def _summary(row: dict) -> str:
    if row["d_stsp"] is None:
        return "diverged"
    return f"D_stsp {row['d_stsp']:.3f} D_H {row['d_h']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    sub = verbs.add_parser("train", help="one training, every checkpoint kept")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--learning-rate", type=float, default=2e-3)
    sub.add_argument("--learning-rate-final", type=float, default=None)
    sub.add_argument("--forcing-interval", type=int, default=10,
                     help="10 (the Lorenz-63 recipe of stops 13-16); Rossler's is 8")
    sub.add_argument("--system", choices=sorted(SYSTEMS), default="lorenz63")
    sub.add_argument("--noise", type=float, default=0.0)
    sub.add_argument("--max-epochs", type=int, default=1450)
    sub.add_argument("--sequence-length", type=int, default=200)
    sub.add_argument("--batch-size", type=int, default=16)
    sub.add_argument("--force-unobserved", action="store_true",
                     help="force all latents, the unobserved ones to L x (stop 20)")
    sub.add_argument("--minutes", type=float, default=15.0)
    sub.add_argument("--device", default="cpu")
    sub.add_argument("--refine-from", default=None,
                     help="path prefix of a saved run: train its model on (partial_fit) with "
                          "these windows and learning rate, constant unless --learning-rate-"
                          "final is given (stop 21)")
    sub.add_argument("--output", required=True,
                     help="path prefix of the .ckpts.pt and .est.pt files")
    sub.set_defaults(func=train)
    sub = verbs.add_parser("evaluate", help="measure the best-scored checkpoints of runs")
    sub.add_argument("directory", help="folder of the runs' .ckpts.pt and .est.pt files")
    sub.add_argument("--top", type=int, default=20, help="checkpoints per run")
    sub.add_argument("--min-epoch", type=int, default=50)
    sub.add_argument("--jobs", type=int, default=2, help="processes")
    sub.add_argument("--selection-noise", type=_level, default=0.0,
                     help="score with this selection_noise (a std fraction or 'auto'): "
                          "every checkpoint is scored again first")
    sub.add_argument("--average", type=int, default=1,
                     help="score and measure each checkpoint as the mean weights of this many "
                          "consecutive ones (weight averaging; every checkpoint scored again)")
    sub.add_argument("--forecast-skill", action="store_true",
                     help="also measure each candidate's forecasts of the training data")
    sub.add_argument("--output", default=None, help="write the rows as JSON here")
    sub.set_defaults(func=evaluate_runs)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
