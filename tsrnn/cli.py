"""The ``tsrnn`` command.

    tsrnn reconstruct            simulate a system, fit a model, analyse it, report
    tsrnn simulate lorenz63      simulate a system and write a csv or npz file
    tsrnn lyapunov lorenz63      Lyapunov spectrum with standard errors
    tsrnn systems                list the systems and their parameters

Run ``tsrnn <verb> --help`` for the options of each verb.

The console script is :func:`console_main`: an error the user causes (a bad option value, an
output file that exists or a directory that does not, a simulation that diverges) is one
``tsrnn: error: ...`` line on standard error and exit status 2, as argparse reports bad
arguments. :func:`main`, for callers from Python, raises those errors instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__

DESCRIPTION = """\
tsrnn: recurrent models, reservoirs and dynamical-systems reconstruction.

Verbs:
  reconstruct   the main job: simulate a chaotic system, fit a model to part of the
                trajectory, let the model run freely, and report how well it reproduces
                the attractor (state-space divergence, power-spectrum distance, valid
                prediction time) and its Lyapunov spectrum. With no options it fits an
                echo state network to Lorenz-63, in about 10 s on one CPU core.
  simulate      write a trajectory of a system (e.g. lorenz63, kuramotosivashinsky)
                to a .csv or .npz file
  lyapunov      estimate the Lyapunov spectrum of a system, with standard errors
  systems       list the available systems, their dimension and default parameters

Examples:
  tsrnn reconstruct
  tsrnn simulate lorenz63 --n-steps 10000 --transient 1000 -o lorenz.csv
  tsrnn simulate lorenz96 --param n=20 --param forcing=10 -o l96.npz
  tsrnn lyapunov henon
"""


def _parse_params(pairs: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SystemExit(f"error: --param expects name=value, got {pair!r}")
        name, text = pair.split("=", 1)
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError:
            value = text
        params[name.strip()] = value
    return params


def _system(name: str, pairs: list[str] | None):
    from .systems import get_system

    params = _parse_params(pairs)
    try:
        system = get_system(name)
        known = system._param_names()
        unknown = sorted(set(params) - set(known))
        if unknown:
            names = ", ".join(repr(n) for n in unknown)
            raise SystemExit(f"error: unknown parameter(s) {names} of {name}; "
                             f"known: {', '.join(known)}")
        return get_system(name, **params)
    except (TypeError, ValueError) as error:
        raise SystemExit(f"error: {error}") from error


def _check_output(output: str | None, overwrite: bool) -> Path | None:
    """The output path, checked before any work: its directory exists, and it does not
    unless ``overwrite`` (a long run must not end in a file that cannot be written)."""
    if output is None:
        return None
    path = Path(output)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the directory {path.parent} of {path} does not exist")
    if path.exists() and not overwrite:
        raise SystemExit(f"error: {path} exists; pass --overwrite to replace it")
    # Whether files can be made there at all (a read-only mount, /proc): a probe file,
    # removed at once, rather than os.access, which answers for the user, not the mount.
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        raise SystemExit(f"error: cannot write to {path.parent} ({error.strerror or error}); "
                         "choose another output path") from None
    return path


def _json_text(value: Any) -> str:
    """Strict JSON: NaN and infinities (a diverged run, a -inf exponent) become null, which
    every parser reads, where Python's default writes tokens that JSON does not have."""
    def finite(item):
        if isinstance(item, dict):
            return {key: finite(v) for key, v in item.items()}
        if isinstance(item, list | tuple):
            return [finite(v) for v in item]
        if isinstance(item, float | np.floating) and not np.isfinite(item):
            return None
        if isinstance(item, np.generic):
            return item.item()
        return item

    return json.dumps(finite(value), indent=2, allow_nan=False)


def _check_format(path: Path | None, batched: bool) -> None:
    """Refuse an output format ``simulate`` cannot write before the simulation runs."""
    if path is None:
        if batched:
            raise SystemExit("error: a batch of trajectories needs -o FILE.npz")
        return
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npz"):
        raise SystemExit(f"error: unknown output format {suffix!r}; use .csv or .npz")
    if batched and suffix == ".csv":
        raise SystemExit("error: a batch of trajectories needs an .npz file, not .csv")


def _open_output(path: Path, overwrite: bool, binary: bool = False):
    # Exclusive creation without --overwrite: a file that appeared since _check_output is
    # refused (FileExistsError), never replaced.
    mode = ("w" if overwrite else "x") + ("b" if binary else "")
    return open(path, mode) if binary else open(path, mode, newline="")


def _write(path: Path, array: np.ndarray, dt: float, columns: list[str], overwrite: bool,
           metadata: dict) -> None:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with _open_output(path, overwrite, binary=True) as file:
            np.savez_compressed(file, states=array, dt=dt, metadata=_json_text(metadata))
    elif suffix == ".csv":
        if array.ndim == 3:
            raise SystemExit("error: a batch of trajectories needs an .npz file, not .csv")
        with _open_output(path, overwrite) as file:
            _csv_frame(array, dt, columns).to_csv(file, index=False, float_format="%.10g")
    else:
        raise SystemExit(f"error: unknown output format {suffix!r}; use .csv or .npz")


def _csv_frame(array: np.ndarray, dt: float, columns: list[str]):
    """One trajectory as a table: a time column (from 0 at the first recorded state),
    then the states."""
    import pandas as pd

    frame = pd.DataFrame(array, columns=columns)
    frame.insert(0, "time", np.arange(array.shape[0]) * dt)
    return frame


def cmd_systems(args: argparse.Namespace) -> int:
    from .systems import SYSTEMS

    for name, cls in sorted(SYSTEMS.items()):
        system = cls()
        kind = "map" if system.is_map else "flow"
        print(f"{name:22s} {kind:4s} dim={system.dim:<4d} dt={system.default_dt:<6g} {system!r}")
    return 0


def _set_threads(threads: int) -> None:
    """torch's CPU threads for this command: small operations run many times slower with
    two threads than with one on a busy machine (a map's Lyapunov spectrum: 1 s against
    60 s on two shared cores)."""
    import torch

    if threads < 1:
        raise SystemExit("error: --threads must be >= 1")
    torch.set_num_threads(threads)


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise SystemExit("error: --batch must be >= 1")
    _set_threads(args.threads)
    path = _check_output(args.output, args.overwrite)
    _check_format(path, args.batch > 1)  # before the simulation, which may take long
    system = _system(args.system, args.param)
    x0 = None
    if args.batch > 1:
        x0 = system.sample_initial_states(args.batch, args.seed)
    states = system.simulate(args.n_steps, dt=args.dt, x0=x0, transient=args.transient,
                             seed=args.seed, noise=args.noise, method=args.method,
                             substeps=args.substeps, max_steps=args.max_steps)
    dt = system.default_dt if args.dt is None else args.dt
    columns = [f"x{i}" for i in range(system.dim)]
    # The parameters by name and value (the system's repr rounds them to 6 digits).
    metadata = {"system": repr(system), "system_class": type(system).__name__,
                "parameters": system.get_params(), "dt": dt, "transient": args.transient,
                "seed": args.seed, "noise": args.noise, "tsrnn_version": __version__}
    if path is None:
        if states.ndim == 3:
            raise SystemExit("error: a batch of trajectories needs -o FILE.npz")
        # The same table as a .csv file (it had no time column here).
        _csv_frame(states, dt, columns).to_csv(sys.stdout, index=False, float_format="%.10g")
        return 0
    _write(path, states, dt, columns, args.overwrite, metadata)
    print(f"wrote {states.shape} states of {system!r} (dt={dt:g}) to {args.output}")
    return 0


def cmd_lyapunov(args: argparse.Namespace) -> int:
    from .analysis import kaplan_yorke_dimension, lyapunov_spectrum

    _set_threads(args.threads)
    system = _system(args.system, args.param)
    if system.is_map and (args.method is not None or args.substeps is not None):
        # (the analysis would name the map's own options, device and dtype, which this
        # command does not have)
        raise SystemExit(f"error: --method and --substeps integrate flows; {args.system} is a "
                         "map, stepped exactly")
    options = {}
    if args.method is not None:
        options["method"] = args.method
    if args.substeps is not None:
        options["substeps"] = args.substeps
    start = time.perf_counter()
    spectrum, stderr = lyapunov_spectrum(
        system, args.n_exponents, dt=args.dt, n_steps=args.n_steps,
        n_trajectories=args.n_trajectories, seed=args.seed, return_stderr=True, **options)
    elapsed = time.perf_counter() - start
    reference = system.lyapunov_reference
    unit = "per step" if system.is_map else "per time unit"
    # From part of the spectrum the dimension is known only once the partial sums turn
    # negative; before, it is at least the number computed (printing that number as the
    # dimension read 3.0 for three of Lorenz-96's forty exponents, whose D_KY is ~27).
    complete = len(spectrum) >= _tangent_space(system)
    dimension = None if not complete and np.sum(spectrum) >= 0 \
        else kaplan_yorke_dimension(spectrum)
    result = {
        "system": repr(system), "unit": unit, "exponents": spectrum.tolist(),
        # null where there is none (one trajectory gives no spread; NaN is not JSON)
        "stderr": [float(e) if np.isfinite(e) else None for e in stderr],
        "kaplan_yorke_dimension": dimension,
        "reference": None if reference is None else list(reference), "seconds": elapsed,
    }
    if args.json:
        print(_json_text(result))
        return 0
    print(f"Lyapunov spectrum of {system!r} ({unit}), {elapsed:.2f} s")
    for i, (value, error) in enumerate(zip(spectrum, stderr), 1):
        known = reference is not None and i <= len(reference)
        ref = f"   reference {reference[i - 1]:+.4f}" if known else ""
        spread = f"+- {error:.5f}" if np.isfinite(error) else "(no standard error)"
        print(f"  lambda_{i:<3d} {value:+.5f} {spread}{ref}")
    if dimension is None:
        print(f"  Kaplan-Yorke dimension > {len(spectrum)} (the {len(spectrum)} exponents "
              "computed sum to >= 0: ask for more with --n-exponents)")
    else:
        print(f"  Kaplan-Yorke dimension {dimension:.4f}")
    return 0


def _tangent_space(system) -> int:
    """How many Lyapunov exponents the system has (its map's tangent space: Mackey-Glass's is
    its history buffer, Kuramoto-Sivashinsky's leaves out the mean)."""
    from .analysis.lyapunov import as_discrete_map

    dmap = as_discrete_map(system)
    return dmap.tangent_dim or dmap.dim


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from .reconstruct import DEFAULT_MODEL, ReconstructionConfig, run_reconstruction

    if args.n_init < 1:
        raise SystemExit("error: --n-init must be >= 1")
    if args.max_epochs is not None and args.max_epochs < 1:
        # 0 would otherwise fall back silently to the model's default number of epochs.
        raise SystemExit("error: --max-epochs must be >= 1")
    if args.n_exponents is not None and args.n_exponents < 1:
        raise SystemExit("error: --n-exponents must be >= 1")
    path = _check_output(args.output, args.overwrite)
    model_path = _check_output(args.save_model, args.overwrite)
    if path is not None and model_path is not None and path.resolve() == model_path.resolve():
        raise SystemExit("error: --output and --save-model name the same file")
    _set_threads(args.threads)

    config = ReconstructionConfig(
        system=args.system, system_params=_parse_params(args.param), model=args.model,
        n_train=args.n_train, n_test=args.n_test, noise=args.noise, seed=args.seed,
        max_epochs=args.max_epochs, n_init=args.n_init, device=args.device,
        verbose=not args.quiet, n_exponents=args.n_exponents,
        save_model=None if model_path is None else str(model_path), overwrite=args.overwrite,
        tune=not args.no_tune,
    )
    report = run_reconstruction(config)
    print(report.text())
    if path is not None:
        # What ran, so that the files of a sweep can be told apart and rerun.
        settings = {**dataclasses.asdict(config), "tsrnn_version": __version__}
        settings["model"] = config.model or DEFAULT_MODEL  # the default by its name
        with _open_output(path, args.overwrite) as file:
            file.write(_json_text({**report.as_dict(), "settings": settings}))
        print(f"report written to {path}")
    if model_path is not None:
        print(f"model saved to {model_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsrnn", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tsrnn {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="verb")

    def add_system_arguments(sub, method_help):
        sub.add_argument("system", help="system name, e.g. lorenz63 (see `tsrnn systems`)")
        sub.add_argument("--param", action="append", metavar="NAME=VALUE",
                         help="set a parameter of the system (repeatable), e.g. rho=35")
        sub.add_argument("--dt", type=float, default=None,
                         help="time step (default: the system's default_dt)")
        sub.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        sub.add_argument("--method", default=None, help=method_help)
        sub.add_argument("--substeps", type=int, default=None,
                         help="fixed-step integration steps per dt (default: enough that no "
                              "step exceeds the system's default_dt)")
        sub.add_argument("--threads", type=int, default=1,
                         help="CPU threads for torch (default 1: a system's steps are small "
                              "operations, which extra threads only slow down)")

    sub = verbs.add_parser(
        "reconstruct", help="simulate, fit, analyse and report (the main job)",
        description="Simulate a system, fit a model to a training part, generate freely from "
                    "the model and compare with held-out data; report attractor measures and "
                    "the learned Lyapunov spectrum.")
    sub.add_argument("--system", default="lorenz63",
                     help="system to reconstruct (default lorenz63; see `tsrnn systems`)")
    sub.add_argument("--param", action="append", metavar="NAME=VALUE",
                     help="set a parameter of the system (repeatable)")
    from .reconstruct import DEFAULT_MODEL, MODELS

    sub.add_argument("--model", default=None, choices=sorted(MODELS),
                     help=f"model to fit (default: {DEFAULT_MODEL})")
    sub.add_argument("--n-train", type=int, default=20_000,
                     help="training steps (default 20000)")
    sub.add_argument("--n-test", type=int, default=20_000, help="held-out steps (default 20000)")
    sub.add_argument("--noise", type=float, default=0.0,
                     help="relative observation noise (0.05 = 5%%; default 0)")
    sub.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sub.add_argument("--max-epochs", type=int, default=None,
                     help="training epochs (default 40 for gru and lstm, 100 for the DSR "
                          "models; the reservoirs esn, deepresesn and nvar, fitted in one "
                          "pass, ignore it)")
    sub.add_argument("--n-init", type=int, default=1,
                     help="DSR models: independent trainings at once (one process per core), "
                          "the best by the models' selection score kept (state-space "
                          "divergence and power-spectrum distance of a free run; default 1)")
    sub.add_argument("--n-exponents", type=int, default=None,
                     help="leading Lyapunov exponents to compute and report (default: the "
                          "system's dimension, at most 8; more cost time on large systems "
                          "such as kuramotosivashinsky)")
    sub.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    sub.add_argument("-o", "--output", default=None, help="write the report as JSON here")
    sub.add_argument("--no-tune", action="store_true",
                     help="fit the model's default settings as they are (by default the ESN "
                          "first tries a few spectral radii on the training block's end and "
                          "fits the one that forecasts it longest)")
    sub.add_argument("--save-model", default=None, metavar="FILE",
                     help="save the fitted model here (reload it with its class's .load, "
                          "e.g. tsrnn.reservoir.ESN.load(FILE))")
    sub.add_argument("--overwrite", action="store_true",
                     help="replace an existing report or saved model")
    sub.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sub.add_argument("--threads", type=int, default=1,
                     help="CPU threads for torch (default 1: the default models are small, "
                          "and extra threads only add synchronisation)")
    sub.set_defaults(func=cmd_reconstruct)

    sub = verbs.add_parser("simulate", help="simulate a system to .csv or .npz",
                           description="Simulate a system and write the trajectory.")
    add_system_arguments(sub, "integrator for flows: euler, rk4, rk8 (default), dopri5, "
                              "dop853")
    sub.add_argument("--n-steps", type=int, default=10_000,
                     help="recorded steps (default 10000)")
    sub.add_argument("--transient", type=int, default=0,
                     help="steps discarded first (default 0)")
    sub.add_argument("--noise", type=float, default=0.0,
                     help="relative observation noise (0.05 = 5%% of each std; default 0)")
    sub.add_argument("--batch", type=int, default=1,
                     help="number of trajectories from random initial states (npz only; "
                          "default 1)")
    sub.add_argument("--max-steps", type=int, default=None,
                     help="step limit of the adaptive methods (default: 100 per default_dt "
                          "of simulated time, at least 10 per dt, plus 10000)")
    sub.add_argument("-o", "--output", default=None,
                     help=".csv or .npz file (default: csv on standard output)")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing file")
    sub.set_defaults(func=cmd_simulate)

    sub = verbs.add_parser("lyapunov", help="Lyapunov spectrum of a system",
                           description="Estimate a Lyapunov spectrum by the QR method, with "
                                       "standard errors over independent trajectories.")
    # The variational equation needs a fixed-step scheme; RK4 is the default there
    # (Flow.as_discrete_map), not simulate's rk8.
    add_system_arguments(sub, "fixed-step integrator for flows: euler, rk4 (default), rk8")
    sub.add_argument("--n-exponents", type=int, default=None,
                     help="how many (default all; the leading 4 of mackeyglass's history "
                          "buffer)")
    sub.add_argument("--n-steps", type=int, default=None,
                     help="measured steps per trajectory (default: the system's own: 50 "
                          "time units for most flows, 200 for Rossler, 500 for Thomas; "
                          "10000 steps for maps)")
    sub.add_argument("--n-trajectories", type=int, default=32,
                     help="independent trajectories (default 32)")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.set_defaults(func=cmd_lyapunov)

    sub = verbs.add_parser("systems", help="list the systems")
    sub.set_defaults(func=cmd_systems)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


def console_main(argv: list[str] | None = None) -> int:
    """The ``tsrnn`` console script (pyproject.toml): :func:`main`, with the errors a user
    causes reported as one ``tsrnn: error: ...`` line on standard error and exit status 2
    instead of a traceback. Errors of other kinds (bugs) keep their traceback."""
    from .exceptions import DivergenceError

    # ValueError/TypeError: the checks of option values; OSError: FileExistsError,
    # FileNotFoundError and the like of the output file; DivergenceError: a simulation or
    # training that the chosen settings (dt, learning rate) make diverge.
    user_errors = (ValueError, TypeError, OSError, DivergenceError)
    try:
        return main(argv)
    except BrokenPipeError:
        # The reader stopped early (`tsrnn simulate ... | head`): nothing to report. Later
        # writes to the closed pipe (at exit) go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SystemExit as refusal:
        if not isinstance(refusal.code, str):  # argparse's exits and --help: as they are
            raise
        message = refusal.code.removeprefix("error: ")
    except user_errors as error:
        message = str(error)
    print(f"tsrnn: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(console_main())
