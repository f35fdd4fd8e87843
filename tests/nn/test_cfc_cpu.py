"""Tests of tsrnn.nn._cfc_cpu, the compiled CPU kernel of the CfC fast path: outputs and all
gradients against autograd through the plain module (float64, every mode, with and without
backbone, batch sizes below, at and above one vector block), against the torch sequence
function in float32, independence of the thread count, and the torch fallback when no
compiler is available."""

from __future__ import annotations

import pytest
import torch

from tsrnn import _native
from tsrnn.nn import CfC, _cfc_cpu
from tsrnn.nn._cfc_kernels import CfCSequence

MODES = ["default", "no_gate", "pure"]
needs_native = pytest.mark.skipif(not _cfc_cpu.available(),
                                  reason="the CfC kernel could not be compiled here")


def make_cell(mode, layers, dtype, input_size=3, hidden=5, units=7, seed=0):
    torch.manual_seed(seed)
    cell = CfC(input_size, hidden, mode=mode, backbone_layers=layers, backbone_units=units)
    cell = cell.to(dtype)
    if mode == "pure":
        # Away from the initial values, so that w_tau and A enter with weight.
        with torch.no_grad():
            cell.heads.w_tau_raw.uniform_(-1.0, 1.0)
            cell.heads.A.normal_()
    return cell


def inputs(B, L, I, H, dtype, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, I, generator=generator, dtype=dtype)
    dt = 0.2 + 2 * torch.rand(B, L, generator=generator, dtype=dtype)
    h0 = torch.randn(B, H, generator=generator, dtype=dtype)
    weights = torch.randn(B, L, H, generator=generator, dtype=dtype)
    return x, dt, h0, weights


def outputs_and_gradients(cell, x, dt, h0, weights, *, native: bool, fast: bool = True):
    """Outputs and the gradients of a weighted loss with respect to x, h0, dt and every
    parameter, through the compiled kernel, the torch sequence function or plain autograd."""
    leaves = [x.detach().clone().requires_grad_(), h0.detach().clone().requires_grad_(),
              dt.detach().clone().requires_grad_()]
    cell._native = native
    cell.fast_path = fast
    try:
        out, final = cell(leaves[0], leaves[1], leaves[2])
    finally:
        cell._native, cell.fast_path = True, True
    loss = (out * weights).sum() + final.square().sum()
    return out.detach(), torch.autograd.grad(loss, [*leaves, *cell.parameters()])


@needs_native
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layers", [0, 1])
@pytest.mark.parametrize("batch", [1, 8, 11])  # float64 blocks hold 8 samples
def test_native_cfc_gradients_equal_autograd_of_the_plain_module(mode, layers, batch):
    cell = make_cell(mode, layers, torch.float64)
    x, dt, h0, weights = inputs(batch, 6, 3, 5, torch.float64)
    native_out, native = outputs_and_gradients(cell, x, dt, h0, weights, native=True)
    plain_out, plain = outputs_and_gradients(cell, x, dt, h0, weights, native=False,
                                             fast=False)
    # float64 round-off: libm's vectorised tanh/exp are within a few ulp of torch's.
    torch.testing.assert_close(native_out, plain_out, rtol=0, atol=1e-14)
    for got, expected in zip(native, plain):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-13)


@needs_native
def test_native_path_is_taken_on_the_cpu(monkeypatch):
    calls = []
    apply = _cfc_cpu.CfCNativeSequence.apply
    monkeypatch.setattr(_cfc_cpu.CfCNativeSequence, "apply",
                        lambda *args: calls.append(1) or apply(*args))
    cell = make_cell("default", 1, torch.float32)
    cell(torch.randn(2, 4, 3))
    assert calls == [1]
    cell._native = False
    cell(torch.randn(2, 4, 3))
    assert calls == [1]


@needs_native
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layers", [0, 1])
def test_native_float32_equals_the_torch_sequence_function(mode, layers):
    """A wider cell (rows beyond one register block of 8, two float32 blocks of 16)."""
    cell = make_cell(mode, layers, torch.float32, input_size=4, hidden=19, units=37)
    x, dt, h0, weights = inputs(21, 12, 4, 19, torch.float32)
    native_out, native = outputs_and_gradients(cell, x, dt, h0, weights, native=True)
    torch_out, reference = outputs_and_gradients(cell, x, dt, h0, weights, native=False)
    # float32 round-off over 12 steps (the products sum in different orders).
    torch.testing.assert_close(native_out, torch_out, rtol=0, atol=2e-6)
    for got, expected in zip(native, reference):
        scale = expected.abs().max().item()
        torch.testing.assert_close(got, expected, rtol=0, atol=2e-5 * max(scale, 1.0))


@needs_native
def test_native_result_does_not_depend_on_the_thread_count():
    cell = make_cell("default", 1, torch.float64)
    x, dt, h0, weights = inputs(40, 5, 3, 5, torch.float64)  # 5 blocks of 8
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one_out, one = outputs_and_gradients(cell, x, dt, h0, weights, native=True)
        torch.set_num_threads(2)
        two_out, two = outputs_and_gradients(cell, x, dt, h0, weights, native=True)
    finally:
        torch.set_num_threads(threads)
    # Each block runs on one thread from start to end and the block sums are added in a
    # fixed order: the results are the same to the bit.
    torch.testing.assert_close(one_out, two_out, rtol=0, atol=0)
    for a, b in zip(one, two):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@needs_native
def test_native_refuses_double_backward():
    cell = make_cell("default", 1, torch.float64)
    x = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    out, _ = cell(x)
    with pytest.raises(RuntimeError, match="fast_path=False"):
        torch.autograd.grad(out.sum(), x, create_graph=True)


@needs_native
def test_native_leaves_inputs_untouched_and_repeats_exactly():
    cell = make_cell("no_gate", 1, torch.float32)
    before = {k: v.clone() for k, v in cell.state_dict().items()}
    x = torch.randn(3, 7, 3)
    copy = x.clone()
    first, _ = cell(x)
    second, _ = cell(x)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(x, copy, rtol=0, atol=0)
    for name, value in cell.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)


def test_without_a_compiler_the_cpu_fast_path_falls_back_to_torch(monkeypatch):
    """No compiled library (no compiler, or TSRNN_NO_NATIVE): the torch sequence function
    runs, with the same results as plain autograd."""
    monkeypatch.setitem(_native._LOADED, "cfc", None)
    assert not _cfc_cpu.available()
    cell = make_cell("default", 1, torch.float64)
    x, dt, h0, weights = inputs(3, 5, 3, 5, torch.float64)
    assert not _cfc_cpu.supports(x)
    calls = []
    apply = CfCSequence.apply
    monkeypatch.setattr(CfCSequence, "apply", lambda *args: calls.append(1) or apply(*args))
    fast_out, fast = outputs_and_gradients(cell, x, dt, h0, weights, native=True)
    assert calls == [1]
    plain_out, plain = outputs_and_gradients(cell, x, dt, h0, weights, native=False,
                                             fast=False)
    torch.testing.assert_close(fast_out, plain_out, rtol=0, atol=1e-14)
    for got, expected in zip(fast, plain):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-13)


def test_no_native_environment_variable_disables_the_kernel(monkeypatch):
    monkeypatch.setenv("TSRNN_NO_NATIVE", "1")
    monkeypatch.delitem(_native._LOADED, "cfc", raising=False)
    assert not _cfc_cpu.available()
    monkeypatch.delitem(_native._LOADED, "cfc", raising=False)  # built again on next use


def test_a_failing_compiler_leaves_the_kernel_unavailable(tmp_path):
    """A fresh cache folder and no `cc` on the PATH: the build fails quietly, the module
    reports the kernel unavailable and CfC still trains through the torch path."""
    import subprocess
    import sys

    script = ("import torch\nfrom tsrnn.nn import CfC, _cfc_cpu\n"
              "assert not _cfc_cpu.available()\n"
              "out, _ = CfC(2, 3)(torch.randn(2, 4, 2))\nout.sum().backward()\nprint('ok')\n")
    env = {"PATH": str(tmp_path), "TSRNN_KERNEL_CACHE": str(tmp_path / "kernels"),
           "TMPDIR": str(tmp_path), "PYTHONPATH": ":".join(sys.path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert not list(tmp_path.glob("**/*.so"))
