"""GPU paths checked against the CPU (selected with ``-m gpu``; skipped without CUDA)."""

import subprocess
import sys

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_batched_lorenz63_on_cuda_equals_cpu():
    from tsrnn.systems import Lorenz63

    system = Lorenz63()
    x0 = system.sample_initial_states(64, seed=0)
    cpu = system.simulate(300, x0=x0)
    gpu = system.simulate(300, x0=x0, device="cuda")
    # float64 on both; different fused-multiply-add contraction on the GPU gives round-off
    # differences that chaos amplifies by ~e^(0.9 t) over t = 3.
    np.testing.assert_allclose(gpu, cpu, atol=1e-9)


def test_lyapunov_spectrum_on_cuda_matches_cpu():
    from tsrnn.analysis import lyapunov_spectrum
    from tsrnn.systems import Lorenz96

    options = dict(n_steps=300, transient=100, n_trajectories=8, seed=0)
    cpu = lyapunov_spectrum(Lorenz96(n=10), **options)
    gpu = lyapunov_spectrum(Lorenz96(n=10), device="cuda", **options)
    np.testing.assert_allclose(gpu, cpu, atol=1e-6)


def test_kuramoto_sivashinsky_on_cuda_equals_cpu():
    from tsrnn.systems import KuramotoSivashinsky

    system = KuramotoSivashinsky()
    x0 = system.sample_initial_states(4, seed=0)
    cpu = system.simulate(100, x0=x0)
    gpu = system.simulate(100, x0=x0, device="cuda")
    np.testing.assert_allclose(gpu, cpu, atol=1e-8)


def test_gru_trained_on_cuda_loads_and_predicts_on_a_cpu_only_process(tmp_path):
    from tsrnn.forecasting import GRUForecaster
    from tsrnn.systems import Lorenz63

    y = Lorenz63().simulate(1_000, transient=200)
    model = GRUForecaster(hidden_size=16, sequence_length=32, max_epochs=2, device="cuda",
                          random_state=0).fit(y)
    path = model.save(tmp_path / "gru.pt")
    expected = model.predict(5)
    script = (
        "import numpy as np, torch, warnings\n"
        "from tsrnn.forecasting import GRUForecaster\n"
        "assert not torch.cuda.is_available()\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    model = GRUForecaster.load({str(path)!r})\n"
        "assert any('not available' in str(w.message) for w in caught)\n"
        "np.save('out.npy', model.predict(5))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path,
                   env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin",
                        "PYTHONPATH": ":".join(sys.path)})
    # cuDNN's float32 GRU and the CPU kernel sum in different orders (~1e-6 per step); the
    # closed loop carries that forward, so compare the first five steps at 1e-4.
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-4, atol=1e-4)
