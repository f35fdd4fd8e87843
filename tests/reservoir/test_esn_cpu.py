"""The compiled ESN kernel (tsrnn.reservoir._esn_cpu) against the plain float64 recurrence,
and the scipy/torch fallback that runs where the kernel cannot be built."""

import math

import numpy as np
import pytest
import torch

from tsrnn import _native
from tsrnn.reservoir import LeakyReservoir, _esn_cpu
from tsrnn.reservoir.matrices import recurrent_matrix

pytestmark = pytest.mark.skipif(not _esn_cpu.available(),
                                reason="no C compiler: the kernel cannot be built here")



@pytest.fixture(scope="module")
def weights():
    rng = np.random.default_rng(0)
    W = recurrent_matrix(90, 0.95, 0.1, rng)
    return W, rng.uniform(-0.6, 0.6, (90, 4)), rng.uniform(-0.5, 0.5, 90)


def as_kernel_csr(W):
    return _esn_cpu.CSR(W.indptr, W.indices, W.data, W.shape[0])


# Tolerance: the kernel sums each row in another order than numpy and its tanh is within
# 3 ulp of the C library's; on a contracting reservoir the differences stay ~1e-15.
ATOL = 1e-13


@pytest.mark.parametrize("tile", [1, 4, 8])
@pytest.mark.parametrize("leak", [1.0, 0.3])
def test_kernel_states_equal_the_float64_reference(weights, tile, leak, reference_states):
    W, W_in, b = weights
    batch, length = 5, 150  # 5 sequences: tiles 4 and 8 run padded lanes
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(batch, length, 4))
    start = rng.uniform(-0.5, 0.5, (batch, 90))
    out = np.full((batch * length, 90), np.nan)
    rows = np.arange(batch * length, dtype=np.int64).reshape(batch, length)
    final = _esn_cpu.run(as_kernel_csr(W), W_in, b, leak, inputs, start, out, rows, tile=tile)
    for i in range(batch):
        expected = reference_states(W.toarray(), W_in, b, leak, inputs[i], start[i])
        np.testing.assert_allclose(out[i * length:(i + 1) * length], expected, rtol=0,
                                   atol=ATOL)
        np.testing.assert_allclose(final[i], expected[-1], rtol=0, atol=ATOL)


def test_kernel_writes_only_the_requested_rows_and_is_thread_independent(weights, reference_states):
    W, W_in, b = weights
    inputs = np.random.default_rng(2).normal(size=(16, 40, 4))
    rows = np.full((16, 40), -1, dtype=np.int64)
    rows[3, 10] = 0  # sequence 3 after step 10
    rows[12, 39] = 1  # sequence 12 after its last step
    results = []
    for threads in (1, 2):
        out = np.full((3, 90), 7.0)
        final = _esn_cpu.run(as_kernel_csr(W), W_in, b, 1.0, inputs, None, out, rows,
                             threads=threads)
        results.append((out, final))
    out, final = results[0]
    np.testing.assert_allclose(out[0], reference_states(W.toarray(), W_in, b, 1.0,
                                                        inputs[3, :11])[-1], atol=ATOL)
    np.testing.assert_array_equal(out[1], final[12])
    np.testing.assert_array_equal(out[2], 7.0)  # untouched
    # Tiles are independent and sum in a fixed order: the thread count changes nothing.
    np.testing.assert_array_equal(results[1][0], out)
    np.testing.assert_array_equal(results[1][1], final)


@pytest.mark.parametrize("n_units", [1, 9])
def test_kernel_tanh_is_within_three_ulp_of_the_c_library(n_units):
    # W = 0, b = 0, input weights powers of two (exact products): the state after each step
    # is tanh(w_i * input). One unit runs the scalar tanh; nine run the vector one (8 lanes
    # with AVX-512, two blocks of 4 with AVX2) and the scalar one for the last unit.
    x = np.concatenate([np.linspace(-30, 30, 200_001), np.geomspace(1e-300, 30, 10_001),
                        -np.geomspace(1e-300, 30, 10_001), [0.0, np.inf, -np.inf, np.nan]])
    scales = np.array([1.0, -1.0, 0.5, 2.0, -0.5, -2.0, 0.25, -4.0, 1.0])[:n_units]
    empty = _esn_cpu.CSR(np.zeros(n_units + 1, np.int64), np.zeros(0, np.int32),
                         np.zeros(0), n_units)
    out = np.empty((x.size, n_units))
    rows = np.arange(x.size, dtype=np.int64)[None]
    _esn_cpu.run(empty, scales[:, None].copy(), np.zeros(n_units), 1.0,
                 x[None, :, None].copy(), None, out, rows)
    for unit, scale in enumerate(scales):
        got = out[:, unit]
        expected = np.array([math.tanh(scale * v) if np.isfinite(v) else math.nan for v in x])
        finite = np.isfinite(x)
        ulp = np.spacing(np.abs(expected[finite])).clip(np.finfo(float).tiny)
        assert (np.abs(got[finite] - expected[finite]) / ulp).max() <= 3.0
        # inf, -inf, NaN
        assert got[-3] == np.sign(scale) and got[-2] == -np.sign(scale) and np.isnan(got[-1])


def test_kernel_refuses_bad_arguments(weights):
    W, W_in, b = weights
    csr = as_kernel_csr(W)
    inputs = np.zeros((2, 5, 4))
    out = np.empty((10, 90))
    rows = np.arange(10, dtype=np.int64).reshape(2, 5)
    with pytest.raises(TypeError, match="float64"):
        _esn_cpu.run(csr, W_in, b, 1.0, inputs.astype(np.float32), None, out, rows)
    with pytest.raises(ValueError, match="do not fit"):
        _esn_cpu.run(csr, W_in[:, :3].copy(), b, 1.0, inputs, None, out, rows)
    with pytest.raises(ValueError, match="outside out"):
        _esn_cpu.run(csr, W_in, b, 1.0, inputs, None, out[:9], rows)
    with pytest.raises(ValueError, match="tile"):
        _esn_cpu.run(csr, W_in, b, 1.0, inputs, None, out, rows, tile=3)
    with pytest.raises(ValueError, match="state"):
        _esn_cpu.run(csr, W_in, b, 1.0, inputs, np.zeros((3, 90)), out, rows)


def test_kernel_csr_refuses_inconsistent_arrays(weights):
    W, _, _ = weights
    with pytest.raises(ValueError, match="inconsistent"):
        _esn_cpu.CSR(W.indptr[:-1], W.indices, W.data, 90)
    with pytest.raises(ValueError, match="column indices"):
        _esn_cpu.CSR(W.indptr, W.indices + 90, W.data, 90)


@pytest.fixture()
def no_kernel(monkeypatch):
    """The environment of a machine without a C compiler."""
    import tsrnn.reservoir.reservoir as reservoir_module

    monkeypatch.setattr(reservoir_module._esn_cpu, "available", lambda: False)


def module_states(module, inputs, state=None):
    states, final = module(torch.from_numpy(inputs), None if state is None
                           else torch.from_numpy(state))
    return states.numpy(), final.numpy()


@pytest.mark.parametrize("batch", [1, 6])
def test_module_gives_the_same_states_with_and_without_the_kernel(weights, batch,
                                                                  monkeypatch, reference_states):
    W, W_in, b = weights
    inputs = np.random.default_rng(4).normal(size=(batch, 200, 4))
    start = np.random.default_rng(5).uniform(-1, 1, (batch, 90))
    module = LeakyReservoir(W, W_in, b, 0.6)
    assert module._kernel() is not None
    with_kernel = module_states(module, inputs, start)
    import tsrnn.reservoir.reservoir as reservoir_module

    monkeypatch.setattr(reservoir_module._esn_cpu, "available", lambda: False)
    fallback = LeakyReservoir(W, W_in, b, 0.6)
    assert fallback._kernel() is None
    without = module_states(fallback, inputs, start)
    np.testing.assert_allclose(with_kernel[0], without[0], rtol=0, atol=ATOL)
    np.testing.assert_allclose(with_kernel[1], without[1], rtol=0, atol=ATOL)
    expected = reference_states(W.toarray(), W_in, b, 0.6, inputs[-1], start[-1])
    np.testing.assert_allclose(without[0][-1], expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("kernel", [True, False])
def test_segmented_run_equals_the_sequential_reference(weights, kernel, monkeypatch,
                                                        reference_states):
    W, W_in, b = weights
    if not kernel:
        import tsrnn.reservoir.reservoir as reservoir_module

        monkeypatch.setattr(reservoir_module._esn_cpu, "available", lambda: False)
    module = LeakyReservoir(W, W_in, b, 1.0)
    assert (module._kernel() is not None) == kernel
    inputs = np.random.default_rng(6).normal(size=(2_003, 4))  # segments of unequal length
    start = np.random.default_rng(7).uniform(-1, 1, 90)
    segmented = module.run_segmented(torch.from_numpy(inputs), n_segments=7, washout=250,
                                     state=torch.from_numpy(start))
    assert segmented is not None and segmented.shape == (2_003, 90)
    expected = reference_states(W.toarray(), W_in, b, 1.0, inputs, start)
    np.testing.assert_allclose(segmented.numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel", [True, False])
def test_segmented_run_declines_when_a_seam_does_not_close(kernel, monkeypatch):
    # Radius 1.2 without input: the state does not forget its start, the seams cannot match.
    if not kernel:
        import tsrnn.reservoir.reservoir as reservoir_module

        monkeypatch.setattr(reservoir_module._esn_cpu, "available", lambda: False)
    rng = np.random.default_rng(8)
    module = LeakyReservoir(recurrent_matrix(50, 1.2, 0.2, rng), 0.01 * np.ones((50, 1)),
                            np.zeros(50), 1.0)
    inputs = torch.from_numpy(np.sin(np.arange(2_000) * 0.1)[:, None])
    assert module.run_segmented(inputs, n_segments=8, washout=5) is None
    with pytest.raises(ValueError, match="washout"):
        module.run_segmented(inputs, n_segments=8, washout=0)


def test_float32_reservoirs_run_in_the_kernel_in_float64(weights, reference_states):
    # A float32 reservoir on the CPU: the kernel's float64 arithmetic on its float32
    # weights, the states rounded to float32 (not float32 arithmetic, which was 3x slower).
    W, W_in, b = weights
    module = LeakyReservoir(W, W_in, b, 1.0, dtype=torch.float32)
    assert module._kernel() is not None
    inputs = np.random.default_rng(9).normal(size=(1, 50, 4)).astype(np.float32)
    states, final = module(torch.from_numpy(inputs))
    assert states.dtype == final.dtype == torch.float32
    widened = [np.asarray(a, np.float32).astype(np.float64) for a in (W.toarray(), W_in, b)]
    expected = reference_states(*widened, 1.0, inputs[0].astype(np.float64))
    # Equal to the float64 states rounded once (within the kernel's 1e-13 of the reference).
    np.testing.assert_allclose(states[0].numpy(), expected.astype(np.float32), rtol=0,
                               atol=float(np.spacing(np.float32(1.0))))
    np.testing.assert_allclose(states[0].double().numpy(), expected, rtol=0, atol=1e-7)
    segmented = module.run_segmented(torch.from_numpy(
        np.random.default_rng(10).normal(size=(2_000, 4)).astype(np.float32)), 8, 250)
    assert segmented is not None and segmented.dtype == torch.float32


def test_float32_segments_close_their_seams_without_the_kernel(weights, monkeypatch,
                                                               reference_states):
    # In float32 arithmetic two runs that forgot their starts still differ by round-off:
    # seams held to 1e-12 never closed, and every float32 run was paid twice.
    import tsrnn.reservoir.reservoir as reservoir_module

    monkeypatch.setattr(reservoir_module._esn_cpu, "available", lambda: False)
    W, W_in, b = weights
    module = LeakyReservoir(W, W_in, b, 1.0, dtype=torch.float32)
    assert module._kernel() is None
    inputs = np.random.default_rng(11).normal(size=(2_000, 4))
    segmented = module.run_segmented(torch.from_numpy(inputs).float(), 8, 250)
    assert segmented is not None and segmented.dtype == torch.float32
    expected = reference_states(W.toarray(), W_in, b, 1.0, inputs)
    np.testing.assert_allclose(segmented.numpy(), expected, rtol=0, atol=1e-5)
    assert reservoir_module.seam_tolerance(torch.float64) == 1e-12
    assert reservoir_module.seam_tolerance(torch.float32) == pytest.approx(1.19e-5, rel=1e-2)


def test_no_native_environment_variable_disables_the_kernel(monkeypatch):
    monkeypatch.delitem(_native._LOADED, "esn", raising=False)
    monkeypatch.setenv("TSRNN_NO_NATIVE", "1")
    assert not _esn_cpu.available()
    monkeypatch.delitem(_native._LOADED, "esn", raising=False)  # built again on next use


def test_streamed_segments_hand_over_every_state_once(weights, reference_states):
    W, W_in, b = weights
    module = LeakyReservoir(W, W_in, b, 0.7)
    inputs = np.random.default_rng(10).normal(size=(3_001, 4))
    seen_times, seen_states = [], []

    def consume(times, states):
        assert states.shape[0] <= 1_000
        seen_times.append(times.copy())
        seen_states.append(states.copy())

    closed = module.stream_segmented(inputs, consume, n_segments=6, washout=250, first=120,
                                     chunk_rows=1_000)
    assert closed is True
    times = np.concatenate(seen_times)
    order = np.argsort(times)
    np.testing.assert_array_equal(times[order], np.arange(120, 3_001))
    expected = reference_states(W.toarray(), W_in, b, 0.7, inputs)
    np.testing.assert_allclose(np.concatenate(seen_states)[order], expected[120:], rtol=0,
                               atol=1e-12)


def test_streamed_segments_report_an_open_seam_and_decline_without_the_kernel(monkeypatch):
    rng = np.random.default_rng(8)
    module = LeakyReservoir(recurrent_matrix(50, 1.2, 0.2, rng), 0.01 * np.ones((50, 1)),
                            np.zeros(50), 1.0)
    inputs = np.sin(np.arange(2_000) * 0.1)[:, None]
    assert module.stream_segmented(inputs, lambda t, s: None, 8, 5) is False
    import tsrnn.reservoir.reservoir as reservoir_module

    monkeypatch.setattr(reservoir_module._esn_cpu, "available", lambda: False)
    calls = []
    fallback = LeakyReservoir(recurrent_matrix(50, 0.9, 0.2, rng), 0.01 * np.ones((50, 1)),
                              np.zeros(50), 1.0)
    assert fallback.stream_segmented(inputs, lambda t, s: calls.append(t), 8, 50) is None
    assert not calls


@pytest.mark.parametrize("options", [
    dict(),
    dict(readout_input=True, squared_units=True, leak_rate=0.8, warmup=700),
])
def test_streamed_fit_equals_the_fit_from_all_states(options, monkeypatch, streamed_calls):
    import tsrnn.reservoir.esn as esn_module
    from tsrnn.reservoir import ESN
    from tsrnn.systems import Lorenz63

    y = Lorenz63().simulate(7_000, transient=500, seed=1)  # long enough to be streamed
    settings = dict(n_units=120, connectivity=0.05, ridge=1e-4, random_state=0, **options)
    calls = streamed_calls
    streamed = ESN(**settings).fit(y)
    assert calls == [True]
    monkeypatch.setattr(esn_module.ESN, "_accumulate_streamed", lambda self, *args: False)
    whole = ESN(**settings).fit(y)
    assert streamed.n_training_samples_ == whole.n_training_samples_ == 7_000 - 1 - (
        options.get("warmup", 100))
    # The same sums in another order: the weights agree to round-off amplified by the
    # conditioning of the ridge system (ridge 1e-4).
    np.testing.assert_allclose(streamed.readout_weights_, whole.readout_weights_, rtol=0,
                               atol=1e-6 * np.abs(whole.readout_weights_).max())
    np.testing.assert_allclose(streamed.predict(50), whole.predict(50), rtol=0, atol=1e-7)


def test_fit_falls_back_when_a_seam_does_not_close(monkeypatch):
    import tsrnn.reservoir.esn as esn_module
    from tsrnn.reservoir import ESN
    from tsrnn.systems import Lorenz63

    y = Lorenz63().simulate(7_000, transient=500, seed=2)
    settings = dict(n_units=80, connectivity=0.1, ridge=1e-3, random_state=0)
    reference = ESN(**settings).fit(y)
    # A 1-step washout cannot close the seams: the streamed statistics must be dropped
    # and the fit must still be the true one.
    monkeypatch.setattr(esn_module, "_SEGMENT_WASHOUT", 1)
    monkeypatch.setattr(esn_module, "_SEGMENTS", 3_000)
    fallback = ESN(**settings).fit(y)
    assert fallback.n_training_samples_ == reference.n_training_samples_
    np.testing.assert_allclose(fallback.readout_weights_, reference.readout_weights_,
                               rtol=0, atol=1e-6 * np.abs(reference.readout_weights_).max())


def test_the_default_tile_is_the_widest_that_fits_the_vector_registers():
    # Tiles of 8 lanes wider than the registers (two AVX2 registers) ran 3.5x slower than
    # tiles of 4; the default never exceeds what the build's registers hold.
    widest = _esn_cpu.widest_tile()
    assert widest in _esn_cpu.TILES and widest in (4, 8)
    assert _esn_cpu.choose_tile(64, 1) == widest
    assert _esn_cpu.choose_tile(16, 4) == 4
    assert _esn_cpu.choose_tile(3, 1) == 1
