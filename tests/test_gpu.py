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


def test_ridge_sums_formed_on_cuda_equal_the_cpu_syrk():
    from tsrnn.reservoir.readout import RidgeAccumulator

    rng = np.random.default_rng(0)
    features, targets = rng.standard_normal((2_000, 301)), rng.standard_normal((2_000, 3))
    host, device = RidgeAccumulator(301, 3), RidgeAccumulator(301, 3)
    for rows in (slice(0, 700), slice(700, 2_000)):
        host.update(features[rows], targets[rows])
        device.update(torch.from_numpy(features[rows]).cuda(),
                      torch.from_numpy(targets[rows]).cuda())
    for name in ("gram", "cross", "feature_sum", "target_sum"):
        np.testing.assert_allclose(getattr(device, name), getattr(host, name), rtol=1e-12,
                                   atol=1e-11, err_msg=name)
    assert device.count == host.count == 2_000
    # The device path checks the widths as the host path does (it skipped the check).
    with pytest.raises(ValueError, match="300 features and 3 targets does not fit 301"):
        device.update(torch.zeros(5, 300).cuda(), torch.zeros(5, 3).cuda())


def test_esn_fitted_on_cuda_predicts_as_the_cpu_fit():
    # States agree to round-off (tanh on the GPU differs in the last bits); the ridge
    # solve at ridge 1e-6 amplifies that to ~1e-6 in single weights, so the comparison is
    # on what the readout does: its one-step and closed-loop predictions.
    from tsrnn.reservoir import ESN
    from tsrnn.systems import Lorenz63

    y = Lorenz63().simulate(3_000, transient=500)
    y = (y - y.mean(0)) / y.std(0)
    options = dict(n_units=300, spectral_radius=0.9, leak_rate=0.5, ridge=1e-6, warmup=100,
                   random_state=0)
    cpu = ESN(**options).fit(y)
    gpu = ESN(device="cuda", **options).fit(y)
    np.testing.assert_allclose(gpu.readout_intercept_, cpu.readout_intercept_, atol=1e-4)
    np.testing.assert_allclose(gpu.predict(30, context=y[-200:]),
                               cpu.predict(30, context=y[-200:]), atol=1e-4)


def test_dsr_restarts_train_on_cuda_in_worker_processes():
    from tsrnn.dsr import ALRNN

    y = np.cumsum(np.random.default_rng(0).standard_normal((600, 3)), axis=0) * 0.1
    options = dict(n_latent=8, n_pwl=2, sequence_length=30, batch_size=4,
                   batches_per_epoch=5, max_epochs=3, checkpoint_every=1, random_state=0,
                   device="cuda", dtype="float64")
    restarts = ALRNN(n_init=2, n_jobs=2, **options).fit(y)
    single = ALRNN(**{**options, "random_state": 0 + restarts.best_init_}).fit(y)
    assert len(restarts.init_scores_) == 2
    assert restarts.init_scores_[restarts.best_init_] == min(restarts.init_scores_)
    for p_restart, p_single in zip(restarts.module_.parameters(), single.module_.parameters()):
        torch.testing.assert_close(p_restart.cpu(), p_single.cpu(), rtol=1e-7, atol=1e-9)


def test_neural_partial_fit_on_cuda_trains_further_from_the_fitted_weights():
    import copy

    from tsrnn.forecasting import GRUForecaster

    t = np.arange(400) * 0.1
    y = np.c_[np.sin(t), np.cos(t)]
    options = dict(hidden_size=16, sequence_length=32, max_epochs=2, learning_rate=1e-2,
                   device="cuda", random_state=0)
    model = GRUForecaster(**options).fit(y)
    before = copy.deepcopy(model.module_)
    model.partial_fit(y)
    assert next(model.module_.parameters()).is_cuda
    again = GRUForecaster(**options).fit(y)
    again.module_.load_state_dict(before.state_dict())
    again.partial_fit(y)
    # float32 cuDNN: the same training from the same weights agrees to its round-off, a
    # fresh fit (what partial_fit must not do) does not.
    np.testing.assert_allclose(again.predict(10), model.predict(10), atol=1e-5)
    refit = GRUForecaster(**options).fit(y)
    assert np.abs(refit.predict(10) - model.predict(10)).max() > 1e-3


def test_dsr_checkpoint_written_on_cuda_resumes_there_and_loads_on_a_cpu(tmp_path):
    from tsrnn.dsr import ShallowPLRNN
    from tsrnn.systems import Henon

    data = Henon().simulate(1500, transient=300, seed=0)
    path = tmp_path / "run.pt"
    ShallowPLRNN(n_hidden=20, learning_rate=5e-3, max_epochs=4, checkpoint_every=1,
                 batches_per_epoch=4, sequence_length=30, random_state=0, device="cuda",
                 dtype="float64", checkpoint_path=str(path)).fit(data)
    resumed = ShallowPLRNN.load(path)
    assert next(resumed.module_.parameters()).is_cuda
    expected = resumed.predict(20)
    alpha = resumed.alpha_
    resumed.set_params(checkpoint_path=None)
    resumed.partial_fit(data)
    assert resumed.alpha_ < alpha and np.isfinite(resumed.predict(50)).all()
    script = (
        "import numpy as np, torch, warnings\n"
        "from tsrnn.dsr import ShallowPLRNN\n"
        "assert not torch.cuda.is_available()\n"
        "warnings.simplefilter('ignore')\n"
        f"np.save('out.npy', ShallowPLRNN.load({str(path)!r}).predict(20))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path,
                   env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin",
                        "PYTHONPATH": ":".join(sys.path)})
    # float64 on both; Henon's expansion (~e^0.42 per step) over 20 steps keeps round-off
    # differences far below 1e-8.
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-8)


@pytest.mark.parametrize("trained_on", ["cuda", "cpu"])
def test_reservoir_stream_saved_and_loaded_on_cuda_goes_on(tmp_path, trained_on):
    # load reads every tensor onto the CPU; the stream's state must follow the reservoir to
    # the device, or the next chunk fails with a device mismatch.
    from tsrnn.reservoir import ESN

    t = np.arange(600) * 0.1
    y = np.c_[np.sin(t), np.cos(1.3 * t)]
    settings = dict(n_units=50, connectivity=0.2, warmup=10, random_state=0, dtype="float64")
    model = ESN(device=trained_on, **settings).partial_fit(y[:300])
    model.save(tmp_path / "stream.pt")
    loaded = ESN.load(tmp_path / "stream.pt", device="cuda")
    assert loaded.stream_state_.is_cuda
    loaded.partial_fit(y[300:])
    model.partial_fit(y[300:])  # the stream continued where it was trained
    # The same device: the same sums to round-off. From the CPU's compiled kernel to
    # CUDA's torch ops the states differ in the last bits, which the ridge solve magnifies.
    tolerance = 1e-9 if trained_on == "cuda" else 1e-6
    np.testing.assert_allclose(loaded.predict(20), model.predict(20), rtol=tolerance,
                               atol=tolerance)


def test_a_cuda_index_beyond_the_machines_devices_is_refused():
    from tsrnn.forecasting import GRUForecaster

    index = torch.cuda.device_count()
    y = np.c_[np.sin(np.arange(100) * 0.1), np.cos(np.arange(100) * 0.1)]
    with pytest.raises(ValueError, match="CUDA device"):
        GRUForecaster(device=f"cuda:{index}", max_epochs=1).fit(y)
