"""LEM on its FitzHugh–Nagumo regression task, with the authors' script settings.

Rusch et al., "Long expressive memory for sequence modeling" (ICLR 2022), task and settings
of their repository (tk-rusch/LEM, FitzHughNagumo/): v' = v - v³/3 - w + I,
w' = ε(v + a - b w) with I = 0.5, a = 0.7, b = 0.8, ε = 1/50; v₀ ~ U(-1, 1), w₀ = 0;
1001 samples on t ∈ [0, 400] from scipy's ``solve_ivp`` with its defaults (RK45); input
v_0..v_999, target v_1..v_1000; 128 training, 128 validation and 1024 test sequences;
H = 16, a linear readout (Kaiming-normal weight), Adam lr 0.00904, batch 32, Δt = 1, up to
400 epochs, the model of the best validation epoch kept. Error: sqrt(MSE) over the whole test
set (the paper reports 0.0024; the authors' script measures it on the last 128 test
sequences, also printed here).

Training runs on the CPU with one torch thread and one BLAS thread, and stops at
``--time-limit`` seconds (wall clock) if the 400 epochs take longer; the lines printed say
how many epochs ran, the wall and CPU time of training, and the machine's load (on a shared
machine the wall time exceeds the CPU time by the share other processes take).

    python benchmarks/bench_lem_fitzhugh_nagumo.py [--epochs 400] [--time-limit 600]
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import numpy as np
import torch
from _common import machine, today
from scipy.integrate import solve_ivp
from threadpoolctl import threadpool_limits
from torch import nn

from tsrnn.nn import LEM
from tsrnn.systems import FitzHughNagumo

SPEC_PARAMETERS = {"I": 0.5, "a": 0.7, "b": 0.8, "epsilon": 1.0 / 50.0}


def fitzhugh_nagumo_sequences(n: int, rng: np.random.Generator, system: FitzHughNagumo
                              ) -> tuple[np.ndarray, np.ndarray]:
    """n sequences (inputs v_0..v_999, targets v_1..v_1000), each (n, 1000, 1)."""
    t_eval = np.linspace(0.0, 400.0, 1001)

    def rhs(_t, state):
        return system.field(state[0], state[1])

    paths = []
    for _ in range(n):
        x0 = np.array([rng.uniform() * 2.0 - 1.0, 0.0])
        paths.append(solve_ivp(rhs, (0.0, 400.0), x0, t_eval=t_eval).y[0])
    v = np.asarray(paths)[:, :, None]
    return v[:, :-1], v[:, 1:]


class Regressor(nn.Module):
    """LEM followed by a linear readout, as the authors' network.py."""

    def __init__(self, hidden: int):
        super().__init__()
        self.lem = LEM(1, hidden, dt=1.0)
        self.readout = nn.Linear(hidden, 1)
        nn.init.kaiming_normal_(self.readout.weight)

    def forward(self, x):
        return self.readout(self.lem(x)[0])


def rmse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(torch.sqrt(nn.functional.mse_loss(model(x), y)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--time-limit", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--hidden", type=int, default=16)
    args = parser.parse_args()
    # One thread for torch and for numpy's BLAS (LEM's fused CPU pass runs in numpy): the
    # matrices are tiny, and threads only add synchronisation on a shared machine.
    torch.set_num_threads(1)
    threadpool_limits(1, user_api="blas")

    system = FitzHughNagumo()
    parameters = {name: getattr(system, name) for name in SPEC_PARAMETERS}
    if parameters != SPEC_PARAMETERS:
        raise SystemExit(f"FitzHughNagumo defaults {parameters} differ from SPEC section 1")
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    data = {name: fitzhugh_nagumo_sequences(n, rng, system)
            for name, n in (("train", 128), ("valid", 128), ("test", 1024))}
    data = {k: tuple(torch.as_tensor(a, dtype=torch.float32) for a in v) for k, v in data.items()}
    data_seconds = time.perf_counter() - start

    torch.manual_seed(args.seed)
    model = Regressor(args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.00904)
    train_x, train_y = data["train"]
    generator = torch.Generator().manual_seed(args.seed)
    load_before = os.getloadavg()[0]
    best = (float("inf"), None, -1)
    start, cpu_start = time.perf_counter(), time.process_time()
    epochs = 0
    for epoch in range(args.epochs):
        epoch_start = time.perf_counter()
        model.train()
        order = torch.randperm(train_x.shape[0], generator=generator)
        for batch in order.split(32):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(train_x[batch]), train_y[batch])
            loss.backward()
            optimizer.step()
        model.eval()
        valid = rmse(model, *data["valid"])
        if valid < best[0]:
            best = (valid, copy.deepcopy(model.state_dict()), epoch)
        epochs = epoch + 1
        now = time.perf_counter()
        if now - start + (now - epoch_start) > args.time_limit:
            break  # the next epoch would end past the limit
    train_seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    load_after = os.getloadavg()[0]
    model.load_state_dict(best[1])
    test_x, test_y = data["test"]
    test = rmse(model, test_x, test_y)
    last_128 = rmse(model, test_x[-128:], test_y[-128:])
    verdict = "pass" if test <= 0.005 and train_seconds <= 600 else "FAIL"
    if epochs < args.epochs:
        verdict += f" (stopped by the {args.time_limit:.0f} s limit after {epochs} epochs)"
    print(f"# LEM FitzHugh-Nagumo; {machine()}; {today()}; load {load_before:.1f} -> "
          f"{load_after:.1f} (1-min average, 2 cores)")
    print(f"data {data_seconds:.1f} s; {epochs} epochs in {train_seconds:.1f} s wall, "
          f"{cpu_seconds:.1f} s CPU ({train_seconds / epochs:.2f} s/epoch wall); best "
          f"validation epoch {best[2] + 1}, validation {best[0]:.5f}")
    print(f"test L2 error {test:.5f} over 1024 sequences (last 128, the authors' measure: "
          f"{last_128:.5f}); paper 0.0024, target <= 0.005: {verdict}")


if __name__ == "__main__":
    main()
