"""The streamed ESN fit: the augmented moment matrix of the ridge readout, the GIL-free
symmetric rank-k update, the segmented run shared between worker threads, and the thread
limits the fit obeys."""

import itertools
import threading
import time

import numpy as np
import pytest
import torch

from tsrnn.reservoir import ESN, LeakyReservoir, RidgeAccumulator, _blas, _esn_cpu
from tsrnn.reservoir import esn as esn_module
from tsrnn.reservoir import readout as readout_module
from tsrnn.reservoir.matrices import recurrent_matrix
from tsrnn.systems import Lorenz63

needs_kernel = pytest.mark.skipif(not _esn_cpu.available(),
                                  reason="no C compiler: the kernel cannot be built here")


@pytest.fixture
def two_threads():
    """torch and BLAS at two threads for the test (the suite runs at one)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    with _blas.limit_blas(2):
        yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def lorenz():
    return Lorenz63().simulate(7_000, transient=500, seed=4)


def reference_run(W, W_in, b, leak, inputs):
    x, out = np.zeros(W.shape[0]), []
    for u in inputs:
        x = (1 - leak) * x + leak * np.tanh(W_in @ u + W @ x + b)
        out.append(x)
    return np.array(out)


# ---------------------------------------------------------------- the moments and BLAS
@pytest.mark.parametrize("ctypes_path", [True, False])
def test_syrk_lower_adds_the_lower_triangle_of_the_gram_matrix(ctypes_path, monkeypatch):
    if not ctypes_path:  # scipy's Python wrapper, where the ctypes route is not available
        monkeypatch.setattr(_blas, "_SYRK", False)
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(70, 13))
    gram = np.asfortranarray(np.triu(rng.normal(size=(13, 13))))  # upper part: must stay
    upper = np.triu(gram, 1).copy()
    start = np.tril(gram).copy()
    _blas.syrk_lower(rows, gram)
    np.testing.assert_allclose(np.tril(gram), np.tril(start + rows.T @ rows), rtol=1e-14,
                               atol=1e-13)
    np.testing.assert_array_equal(np.triu(gram, 1), upper)
    with pytest.raises(ValueError, match="Fortran"):
        _blas.syrk_lower(rows, np.zeros((13, 13)))
    with pytest.raises(ValueError, match="do not fit"):
        _blas.syrk_lower(rows, np.zeros((12, 12), order="F"))


def test_syrk_lower_runs_side_by_side_in_threads():
    # Four threads, each adding its own rows to its own matrix: the results are those of
    # the sequential calls (nothing shared, nothing lost when the GIL is released).
    rng = np.random.default_rng(1)
    blocks = [rng.normal(size=(400, 60)) for _ in range(4)]
    grams = [np.zeros((60, 60), order="F") for _ in range(4)]

    def add(i):
        for _ in range(5):
            _blas.syrk_lower(blocks[i], grams[i])

    threads = [threading.Thread(target=add, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for block, gram in zip(blocks, grams):
        np.testing.assert_allclose(np.tril(gram), np.tril(5 * block.T @ block), rtol=0,
                                   atol=1e-11)


def test_augmented_update_gives_the_sums_of_features_and_targets():
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(250, 7)), rng.normal(size=(250, 2)) + 3.0
    plain, augmented = RidgeAccumulator(7, 2), RidgeAccumulator(7, 2)
    plain.update(X, Y)
    augmented.update_augmented(np.ascontiguousarray(np.hstack([X, np.ones((250, 1)), Y])))
    for accumulator in (plain, augmented):
        np.testing.assert_allclose(accumulator.gram, X.T @ X, rtol=1e-13)
        np.testing.assert_allclose(accumulator.cross, X.T @ Y, rtol=1e-13)
        np.testing.assert_allclose(accumulator.feature_sum, X.sum(0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(accumulator.target_sum, Y.sum(0), rtol=1e-13)
        assert accumulator.count == 250
    np.testing.assert_allclose(plain.solve(0.1)[0], augmented.solve(0.1)[0], rtol=1e-12)
    with pytest.raises(ValueError, match="does not fit"):
        plain.update(X[:, :6], Y)


def test_the_device_update_gives_the_same_statistics_as_the_cpu_update():
    # The GPU branch of RidgeAccumulator.update (products on the device, the moment matrix
    # brought back whole) run here on CPU tensors: the same sums as the SYRK path.
    rng = np.random.default_rng(3)
    features, targets = rng.standard_normal((300, 17)), rng.standard_normal(300)
    host, device = RidgeAccumulator(17, 1), RidgeAccumulator(17, 1)
    for rows in (slice(0, 120), slice(120, 300)):
        host.update(features[rows], targets[rows])
        device._update_on_device(torch.from_numpy(features[rows]).float(),
                                 torch.from_numpy(targets[rows]))
    np.testing.assert_allclose(device.gram, host.gram, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(device.cross, host.cross, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(device.feature_sum, host.feature_sum, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(device.target_sum, host.target_sum, rtol=1e-12)
    assert device.count == host.count == 300
    for (w_host, b_host), (w_device, b_device) in [(host.solve(1e-3), device.solve(1e-3))]:
        np.testing.assert_allclose(w_device, w_host, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(b_device, b_host, rtol=1e-4, atol=1e-6)


def test_solvers_agree_from_the_lower_triangle_and_fall_back_when_not_definite():
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(40, 60)), rng.normal(size=(40, 1))  # fewer rows than features
    accumulator = RidgeAccumulator(60, 1)
    accumulator.update(X, Y)
    centred = X - X.mean(0)
    exact = np.linalg.solve(centred.T @ centred + 0.5 * np.eye(60),
                            centred.T @ (Y - Y.mean(0)))
    for solver in ("cholesky", "svd", "lstsq"):
        np.testing.assert_allclose(accumulator.solve(0.5, solver)[0], exact, atol=1e-10)
    # ridge 0: the centred Gram matrix is singular; Cholesky falls back to the SVD solver.
    np.testing.assert_allclose(accumulator.solve(0.0, "cholesky")[0],
                               accumulator.solve(0.0, "svd")[0], atol=1e-8)


def test_thread_settings_are_read_and_limited():
    threads = _blas.blas_threads()
    if threads is None:
        pytest.skip("threadpoolctl is not installed")
    with _blas.limit_blas(1):
        assert _blas.blas_threads() == 1
    assert _blas.blas_threads() == threads


# ---------------------------------------------------------------- segments in workers
@needs_kernel
@pytest.mark.parametrize("tile", [1, 8])
def test_kernel_writes_states_into_wider_rows_and_leaves_the_rest(tile):
    rng = np.random.default_rng(11)
    W = recurrent_matrix(50, 0.9, 0.1, rng)
    W_in, b = rng.uniform(-0.5, 0.5, (50, 2)), rng.uniform(-0.5, 0.5, 50)
    inputs = rng.normal(size=(3, 40, 2))
    out = np.full((120, 53), 5.0)
    rows = np.arange(120, dtype=np.int64).reshape(3, 40)
    _esn_cpu.run(_esn_cpu.CSR(W.indptr, W.indices, W.data, 50), W_in, b, 0.6, inputs, None,
                 out, rows, tile=tile)
    for i in range(3):
        np.testing.assert_allclose(out[i * 40:(i + 1) * 40, :50],
                                   reference_run(W.toarray(), W_in, b, 0.6, inputs[i]),
                                   rtol=0, atol=1e-13)
    np.testing.assert_array_equal(out[:, 50:], 5.0)
    with pytest.raises(ValueError, match="M >= 50"):
        _esn_cpu.run(_esn_cpu.CSR(W.indptr, W.indices, W.data, 50), W_in, b, 0.6, inputs,
                     None, np.zeros((120, 49)), rows)


@needs_kernel
@pytest.mark.parametrize("n_workers, per_worker", [(2, 1), (3, 1), (2, 2), (1, 3)])
def test_segments_shared_between_workers_hand_over_every_state_once(n_workers, per_worker):
    rng = np.random.default_rng(4)
    W = recurrent_matrix(60, 0.9, 0.1, rng)
    W_in, b = rng.uniform(-0.6, 0.6, (60, 2)), rng.uniform(-0.5, 0.5, 60)
    module = LeakyReservoir(W, W_in, b, 0.8)
    inputs = rng.normal(size=(4_001, 2))
    n_consumers = n_workers * per_worker
    seen = [[] for _ in range(n_consumers)]
    active = [0] * n_consumers
    lock = threading.Lock()
    threads_seen = set()

    def consumer(c):
        def consume(times, rows):
            with lock:
                active[c] += 1
                assert active[c] == 1  # never called twice at once
                threads_seen.add(threading.get_ident())
            assert rows.shape == (times.size, 63) and rows.flags.c_contiguous
            rows[:, 60:] = -7.0  # the extra columns belong to the consumer
            seen[c].append((times.copy(), rows[:, :60].copy()))
            time.sleep(0.001)  # let the threads interleave
            with lock:
                active[c] -= 1
        return consume

    closed = module.stream_segmented(inputs, [consumer(c) for c in range(n_consumers)],
                                     n_segments=7, washout=150, first=90, chunk_rows=300,
                                     extra_columns=3, workers=n_workers)
    assert closed is True
    assert len(threads_seen) == n_workers
    # Each consumer sees its chunks in time order (a chunk spans the same steps of all its
    # worker's segments, so its latest time grows from one chunk to the next).
    for chunks in seen:
        assert len(chunks) >= 2
        latest = [t.max() for t, _ in chunks]
        assert all(b > a for a, b in itertools.pairwise(latest))
    times = np.concatenate([t for chunks in seen for t, _ in chunks])
    states = np.concatenate([x for chunks in seen for _, x in chunks])
    order = np.argsort(times)
    np.testing.assert_array_equal(times[order], np.arange(90, 4_001))
    expected = reference_run(W.toarray(), W_in, b, 0.8, inputs)
    np.testing.assert_allclose(states[order], expected[90:], rtol=0, atol=1e-12)


@needs_kernel
def test_an_idle_worker_takes_over_waiting_chunks_of_a_slow_one():
    rng = np.random.default_rng(5)
    module = LeakyReservoir(recurrent_matrix(40, 0.8, 0.2, rng), 0.1 * np.ones((40, 1)),
                            np.zeros(40), 1.0)
    callers = [set() for _ in range(4)]

    def consumer(c, delay):
        def consume(times, rows):
            callers[c].add(threading.get_ident())
            time.sleep(delay)
        return consume

    # Worker 1's consumers (2 and 3) are slow: worker 0 finishes its own chunks and then
    # adds some of worker 1's.
    consumers = [consumer(0, 0.0), consumer(1, 0.0), consumer(2, 0.01), consumer(3, 0.01)]
    assert module.stream_segmented(np.zeros((4_000, 1)), consumers, 16, 100, chunk_rows=80,
                                   workers=2) is True
    assert len(callers[2] | callers[3]) == 2


@needs_kernel
def test_workers_report_an_open_seam():
    rng = np.random.default_rng(8)
    module = LeakyReservoir(recurrent_matrix(50, 1.2, 0.2, rng), 0.01 * np.ones((50, 1)),
                            np.zeros(50), 1.0)
    inputs = np.sin(np.arange(2_000) * 0.1)[:, None]
    consumers = [lambda t, s: None, lambda t, s: None]
    assert module.stream_segmented(inputs, consumers, 8, 5) is False
    with pytest.raises(TypeError, match="callable"):
        module.stream_segmented(inputs, [], 8, 5)
    with pytest.raises(ValueError, match="evenly"):
        module.stream_segmented(inputs, consumers + consumers[:1], 8, 5, workers=2)


@needs_kernel
def test_an_error_in_a_worker_reaches_the_caller():
    rng = np.random.default_rng(9)
    module = LeakyReservoir(recurrent_matrix(40, 0.8, 0.2, rng), 0.1 * np.ones((40, 1)),
                            np.zeros(40), 1.0)

    def broken(times, rows):
        raise RuntimeError("consumer failed")

    with pytest.raises(RuntimeError, match="consumer failed"):
        module.stream_segmented(np.zeros((3_000, 1)), [lambda t, s: None, broken], 8, 100)


# ---------------------------------------------------------------- the fit
SETTINGS = [dict(), dict(readout_input=True, squared_units=True, leak_rate=0.8, warmup=700)]


@needs_kernel
@pytest.mark.parametrize("options", SETTINGS)
def test_fit_on_two_worker_threads_equals_the_fit_on_one(options, lorenz, two_threads,
                                                         monkeypatch):
    settings = dict(n_units=120, connectivity=0.05, ridge=1e-4, random_state=0, **options)
    blas_inside, workers_seen = [], set()
    original = RidgeAccumulator.update_augmented

    def spy(self, rows):
        blas_inside.append(_blas.blas_threads())
        workers_seen.add(threading.get_ident())
        original(self, rows)

    monkeypatch.setattr(readout_module.RidgeAccumulator, "update_augmented", spy)
    assert esn_module._stream_workers() == 2
    parallel = ESN(**settings).fit(lorenz)
    assert len(workers_seen) == 2  # two workers,
    again = ESN(**settings).fit(lorenz)  # the same sums in the same order: the same bits
    np.testing.assert_array_equal(again.readout_weights_, parallel.readout_weights_)
    assert set(blas_inside) <= {1, None}  # each on one BLAS thread
    assert _blas.blas_threads() in (2, None)  # and the caller's limit is back
    torch.set_num_threads(1)
    workers_seen.clear()
    sequential = ESN(**settings).fit(lorenz)
    assert len(workers_seen) == 1
    # The same sums added in another order.
    np.testing.assert_allclose(parallel.readout_weights_, sequential.readout_weights_,
                               rtol=0, atol=1e-7 * np.abs(sequential.readout_weights_).max())
    assert parallel.n_training_samples_ == sequential.n_training_samples_
    # Against the fit from all states at once (no streaming):
    monkeypatch.setattr(esn_module.ESN, "_accumulate_streamed", lambda self, *args: False)
    whole = ESN(**settings).fit(lorenz)
    np.testing.assert_allclose(parallel.readout_weights_, whole.readout_weights_, rtol=0,
                               atol=1e-6 * np.abs(whole.readout_weights_).max())
    np.testing.assert_allclose(parallel.predict(50), whole.predict(50), rtol=0, atol=1e-7)


@needs_kernel
def test_more_threads_than_tiles_of_eight_share_the_segments_in_tiles_of_four(lorenz,
                                                                             monkeypatch):
    # 7,000 steps give two workers a tile of 8 segments (each >= 2 x 200 steps) but four
    # workers a tile of 4: with four threads the segments are shared that way.
    settings = dict(n_units=120, connectivity=0.05, ridge=1e-4, random_state=0)
    layouts, workers_seen = [], set()
    stream, update = LeakyReservoir.stream_segmented, RidgeAccumulator.update_augmented

    def stream_spy(self, inputs, consume, n_segments, washout, **options):
        layouts.append((n_segments, options["workers"]))
        return stream(self, inputs, consume, n_segments, washout, **options)

    def update_spy(self, rows):
        workers_seen.add(threading.get_ident())
        update(self, rows)

    monkeypatch.setattr(LeakyReservoir, "stream_segmented", stream_spy)
    monkeypatch.setattr(readout_module.RidgeAccumulator, "update_augmented", update_spy)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        with _blas.limit_blas(4):
            if esn_module._stream_workers() != 4:
                pytest.skip("BLAS's thread count cannot be set to 4 here")
            parallel = ESN(**settings).fit(lorenz)
            again = ESN(**settings).fit(lorenz)
        torch.set_num_threads(1)
        sequential = ESN(**settings).fit(lorenz)
    finally:
        torch.set_num_threads(previous)
    assert layouts == [(16, 4), (16, 4), (16, 1)]
    assert len(workers_seen) >= 4
    np.testing.assert_array_equal(again.readout_weights_, parallel.readout_weights_)
    np.testing.assert_allclose(parallel.readout_weights_, sequential.readout_weights_,
                               rtol=0, atol=1e-7 * np.abs(sequential.readout_weights_).max())
    np.testing.assert_allclose(parallel.predict(50), sequential.predict(50), rtol=0,
                               atol=1e-8)


@pytest.mark.parametrize("threads", [1, 3])
def test_merging_many_sums_equals_merging_them_one_by_one_to_the_bit(threads):
    rng = np.random.default_rng(5)
    parts = []
    for _ in range(5):
        part = RidgeAccumulator(40, 3)
        part.update(rng.normal(size=(30, 40)) * 10.0 ** rng.integers(-3, 4),
                    rng.normal(size=(30, 3)))
        parts.append(part)
    one_by_one, at_once = RidgeAccumulator(40, 3), RidgeAccumulator(40, 3)
    for accumulator in (one_by_one, at_once):
        accumulator.update(np.ones((2, 40)), np.ones((2, 3)))
    for part in parts:
        one_by_one.merge(part)
    at_once.merge_many(parts, threads=threads)
    for name in ("gram", "cross", "feature_sum", "target_sum"):
        np.testing.assert_array_equal(getattr(at_once, name), getattr(one_by_one, name))
    assert at_once.count == one_by_one.count == 152
    np.testing.assert_allclose(at_once.gram, sum(p.gram for p in parts) + 2.0, rtol=1e-12)
    with pytest.raises(ValueError, match="merge"):
        at_once.merge_many([parts[0], RidgeAccumulator(39, 3)], threads=threads)


def test_a_limit_of_one_thread_gives_one_worker(two_threads, monkeypatch):
    assert esn_module._stream_workers() == 2 or _blas.blas_threads() is None
    with _blas.limit_blas(1):  # BLAS limited by the caller
        assert esn_module._stream_workers() == 1
    monkeypatch.setattr(esn_module, "blas_threads", lambda: None)  # cannot be read
    assert esn_module._stream_workers() == 1
    monkeypatch.undo()
    torch.set_num_threads(1)  # torch limited by the caller
    assert esn_module._stream_workers() == 1


def test_fit_without_the_kernel_matches_the_streamed_fit(lorenz, two_threads, monkeypatch,
                                                          streamed_calls):
    from tsrnn import _native

    settings = dict(n_units=100, connectivity=0.05, ridge=1e-4, random_state=1)
    kernel = _esn_cpu.available()
    streamed = ESN(**settings).fit(lorenz)
    monkeypatch.delitem(_native._LOADED, "esn", raising=False)  # restored afterwards
    monkeypatch.setenv("TSRNN_NO_NATIVE", "1")
    fallback = ESN(**settings).fit(lorenz)
    assert streamed_calls == [kernel, False]  # streamed where the kernel built, then declined
    np.testing.assert_allclose(fallback.readout_weights_, streamed.readout_weights_, rtol=0,
                               atol=1e-6 * np.abs(streamed.readout_weights_).max())


class HalfStateESN(ESN):
    """A subclass reading out its own features (half the units): streamed through
    ``features``, not the in-place layout."""

    def features(self, states, inputs, *, overwrite=False):
        return states[..., : states.shape[-1] // 2]


@needs_kernel
def test_a_subclass_with_its_own_features_is_streamed_through_them(lorenz, two_threads,
                                                                  monkeypatch, streamed_calls):
    settings = dict(n_units=80, connectivity=0.1, ridge=1e-4, random_state=2)
    calls = streamed_calls
    streamed = HalfStateESN(**settings).fit(lorenz)
    assert calls == [True] and streamed.readout_weights_.shape == (40, 3)
    monkeypatch.setattr(esn_module.ESN, "_accumulate_streamed", lambda self, *args: False)
    whole = HalfStateESN(**settings).fit(lorenz)
    np.testing.assert_allclose(streamed.readout_weights_, whole.readout_weights_, rtol=0,
                               atol=1e-6 * np.abs(whole.readout_weights_).max())
