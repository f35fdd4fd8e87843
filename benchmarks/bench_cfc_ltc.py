"""CfC and LTC, forward + backward: tsrnn against ncps 1.0.1 in one process, same inputs.

Batch 64, length 256, 64 units, 3 inputs (SPEC section 15), float32, loss = sum of the
outputs. Both libraries get the same parameters (copied from the ncps model), and the
largest difference of their outputs is printed next to the timings. Times are medians;
on the CPU the least process CPU time of the repeats is printed as well (on a shared
machine it is less disturbed by other processes than the wall time). Peak memory: on the
CPU the growth of the peak resident set (VmHWM, reset before the step) during one
forward + backward, measured in a fresh subprocess per model; on a GPU
torch.cuda.max_memory_allocated.

tsrnn's paths (the method column of each row):
- "torch": CfC runs the hand-derived sequence function (tsrnn.nn._cfc_kernels) as torch
  operations; LTC the fused solver with the recomputing backward (tsrnn.nn._ltc_kernels).
- "native" (CPU): the compiled C kernels, CfC tsrnn.nn._cfc_cpu (the CPU default, one call
  per pass, weight gradients as single BLAS products), LTC tsrnn.nn._ltc_cpu (OpenMP over
  the batch).
- "triton" (CUDA): the fused persistent Triton kernels, tsrnn.nn._triton_cfc and
  tsrnn.nn._triton_ltc (the default on CUDA where triton is installed).
"graphed" rows capture the whole forward and backward once as CUDA graphs
(torch.cuda.make_graphed_callables) and replay them.

    python benchmarks/bench_cfc_ltc.py                 # CPU
    python benchmarks/bench_cfc_ltc.py --device cuda   # GPU
    python benchmarks/bench_cfc_ltc.py --skip-ncps-ltc # ncps's LTC needs ~14 GB on the CPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
from _common import machine, median_time, today

from tsrnn.nn import LTC, CfC, _cfc_cpu, _ltc_cpu
from tsrnn.nn.wirings import Wiring

B, L, H, I = 64, 256, 64, 3
LTC_NAMES = {"gleak_raw": "gleak", "vleak": "vleak", "cm_raw": "cm", "sigma": "sigma",
             "mu": "mu", "w_raw": "w", "erev": "erev", "sensory_sigma": "sensory_sigma",
             "sensory_mu": "sensory_mu", "sensory_w_raw": "sensory_w",
             "sensory_erev": "sensory_erev", "input_w": "input_w", "input_b": "input_b",
             "output_w": "output_w", "output_b": "output_b"}


def build(model: str):
    """(ncps module, tsrnn module) with the same parameters, float32."""
    import ncps.torch as ncps

    torch.manual_seed(0)
    if model == "cfc":
        theirs = ncps.CfC(I, H)
        ours = CfC(I, H, backbone_units=128)
        cell = theirs.rnn_cell
        with torch.no_grad():
            ours.backbone[0].load_state_dict(cell.backbone[0].state_dict())
            heads = [cell.ff1, cell.ff2, cell.time_a, cell.time_b]
            ours.heads.linear.weight.copy_(torch.cat([h.weight for h in heads]))
            ours.heads.linear.bias.copy_(torch.cat([h.bias for h in heads]))
        return theirs, ours
    theirs = ncps.LTC(I, H)
    cell = theirs.rnn_cell
    wiring = Wiring.from_matrices(cell._wiring.adjacency_matrix,
                                  cell._wiring.sensory_adjacency_matrix)
    ours = LTC(I, wiring)
    parameters = dict(cell.named_parameters())
    with torch.no_grad():
        for name, theirs_name in LTC_NAMES.items():
            getattr(ours, name).copy_(parameters[theirs_name])
    return theirs, ours


def inputs(device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(B, L, I, generator=generator).to(device)


def step(module, x):
    module.zero_grad(set_to_none=True)
    out, _ = module(x)
    out.sum().backward()
    return out.detach()


class _Unchecked(torch.nn.Module):
    """The module's computation without input validation (which reads values on the host,
    which a CUDA graph cannot contain); x is validated once before capture."""

    def __init__(self, module, x):
        super().__init__()
        self.module = module
        module(x)  # validation
        self.register_buffer("h0", x.new_zeros(x.shape[0], module.hidden_size))
        self.register_buffer("dt", x.new_ones(x.shape[0], x.shape[1]))

    def forward(self, x):
        states = self.module._run(x, self.h0, self.dt, False)
        if isinstance(self.module, LTC):
            return self.module._map_outputs(states)
        return states


def use_method(module, method: str) -> None:
    """Select tsrnn's implementation: "triton" (the CUDA default), "torch" or "native"."""
    if isinstance(module, CfC):
        module._triton = method == "triton"
        module._native = method == "native"
    else:
        module.implementation = {"triton": "triton", "torch": "torch", "native": "native"}[
            method]


def eager(module, x, method: str):
    def run():
        use_method(module, method)
        return step(module, x)

    return run


def graphed(module, x, method: str):
    use_method(module, method)
    core = _Unchecked(module, x)
    callable_ = torch.cuda.make_graphed_callables(core, (x.detach().clone(),),
                                                  num_warmup_iters=3)

    def run():
        module.zero_grad(set_to_none=False)
        out = callable_(x)
        out.sum().backward()
        return out.detach()

    return run


def cpu_time(function, repeats: int) -> tuple[float, float]:
    """The median and the least process CPU time over ``repeats`` runs (the least is the
    least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return statistics.median(times), min(times)


def peak_memory_child(model: str, library: str) -> None:
    """Print the growth of the peak resident set (bytes) during one fwd+bwd."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    theirs, ours = build(model)
    module = theirs if library == "ncps" else ours
    x = inputs("cpu")
    with open("/proc/self/statm") as handle:
        resident = int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    try:
        # Reset the peak resident set (VmHWM): ru_maxrss would also count the pages of the
        # parent at the fork that started this process.
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        reset = True
    except OSError:
        reset = False
    step(module, x)
    if reset:
        with open("/proc/self/status") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
        peak = int(fields["VmHWM"].split()[0]) * 1024
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"bytes": peak - resident}))


def peak_memory(model: str, library: str, threads: int) -> float:
    result = subprocess.run(
        [sys.executable, __file__, "--child-memory", model, library],
        capture_output=True, text=True, env={**os.environ, "BENCH_THREADS": str(threads)},
        check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-ncps-ltc", action="store_true")
    parser.add_argument("--child-memory", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory:
        peak_memory_child(*args.child_memory)
        return
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    load = os.getloadavg()[0]
    print(f"# CfC / LTC fwd+bwd, B={B} L={L} H={H} I={I} float32; {machine()}; {today()}; "
          f"{args.threads} threads; load average {load:.1f} on {os.cpu_count()} cores")
    x = inputs(device)
    memory = {}
    if not cuda:
        # Measured first, in fresh processes forked while this one is still small.
        for model in ("cfc", "ltc"):
            for library in ("ncps", "tsrnn"):
                if not (model == "ltc" and library == "ncps" and args.skip_ncps_ltc):
                    memory[model, library] = peak_memory(model, library, args.threads)
    rows = []
    for model in ("cfc", "ltc"):
        theirs, ours = build(model)
        theirs, ours = theirs.to(device), ours.to(device)
        if cuda:
            candidates = [("tsrnn torch", eager(ours, x, "torch")),
                          ("tsrnn torch graphed", graphed(ours, x, "torch")),
                          ("tsrnn triton", eager(ours, x, "triton")),
                          ("tsrnn triton graphed", graphed(ours, x, "triton"))]
        else:
            native = (_ltc_cpu if model == "ltc" else _cfc_cpu).available()
            candidates = [("tsrnn native", eager(ours, x, "native"))] if native else []
            if model == "cfc" or not native:
                candidates.append(("tsrnn torch", eager(ours, x, "torch")))
        if not (model == "ltc" and args.skip_ncps_ltc):
            candidates.insert(0, ("ncps", lambda theirs=theirs: step(theirs, x)))
        results = {}
        for name, function in candidates:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            # The fast rows take more repeats (their medians are noisier in relative terms).
            repeats = args.repeats * (5 if "triton" in name or "graphed" in name else 1)
            wall, out = median_time(function, repeats=repeats)
            entry = {"wall": wall, "out": out}
            if cuda:
                entry["memory"] = torch.cuda.max_memory_allocated()
            else:
                entry["cpu"] = cpu_time(function, args.repeats)
                entry["memory"] = memory[model, "ncps" if name == "ncps" else "tsrnn"]
            results[name] = entry
        reference = results.get("ncps")
        for name, entry in results.items():
            gap = (None if reference is None or name == "ncps" else
                   float((entry["out"] - reference["out"]).abs().max()))
            difference = "" if gap is None else f", max |out - ncps| {gap:.1e}"
            ratio = ("" if reference is None or name == "ncps" else
                     f", {entry['wall'] / reference['wall']:.2f}x ncps")
            if "cpu" in entry and reference is not None and name != "ncps":
                ratio += (f" (cpu {entry['cpu'][0] / reference['cpu'][0]:.2f}x median, "
                          f"{entry['cpu'][1] / reference['cpu'][1]:.2f}x least)")
            cpu = (f" (cpu median {entry['cpu'][0] * 1e3:.0f} ms, least "
                   f"{entry['cpu'][1] * 1e3:.0f} ms)" if "cpu" in entry else "")
            line = (f"{model.upper():3s} {name:20s} {entry['wall'] * 1e3:9.2f} ms{cpu}, peak "
                    f"memory {entry['memory'] / 2**20:8.1f} MiB{ratio}{difference}")
            rows.append(line)
            print(line, flush=True)
    if cuda:
        gru = torch.nn.GRU(I, H, batch_first=True).to(device)
        wall, _ = median_time(lambda: gru(x)[0].sum().backward(), repeats=args.repeats)
        print(f"GRU (cuDNN)          {wall * 1e3:9.2f} ms")


if __name__ == "__main__":
    main()
