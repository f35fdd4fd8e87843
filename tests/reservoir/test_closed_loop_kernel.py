"""The compiled closed-loop generation kernel (tsrnn.reservoir._esn_cpu.generate) against the
numpy closed loop of ESN, its sliced layout against the dense matrix it stores, and the
fallback to numpy where the kernel does not apply."""

import numpy as np
import pytest
import torch

from tsrnn import _native
from tsrnn.reservoir import ESN, _esn_cpu
from tsrnn.reservoir._blas import limit_blas
from tsrnn.reservoir.matrices import recurrent_matrix
from tsrnn.systems import Lorenz63

pytestmark = pytest.mark.skipif(not _esn_cpu.available(),
                                reason="no C compiler: the kernel cannot be built here")

# The closed loop is chaotic: kernel and numpy differ by round-off per step (another summation
# order, a tanh within a few ulp of the C library's), which the closed loop amplifies; over
# the first 100 steps it stays below 1e-13 relative for the 3-D models and 2e-11 for the
# (less well conditioned) 1-D ones here, and passes 1e-10 only after 180-1200 steps.
HORIZON, RTOL = 100, 1e-10


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    # The small eigenvalue problems and Gram products here take ~50x longer with two BLAS
    # threads on a loaded 2-core machine than with one.
    with limit_blas(1):
        yield


@pytest.fixture(scope="module")
def lorenz():
    y = Lorenz63().simulate(3_000, transient=1_000, seed=0)
    return (y - y.mean(0)) / y.std(0)


def csr_of(W) -> _esn_cpu.CSR:
    """The kernel's CSR of a scipy sparse matrix."""
    return _esn_cpu.CSR(W.indptr, W.indices, W.data, W.shape[0])


def start_of(model, context):
    """The first output and the reservoir state after the context, as ESN._predict gets them."""
    u = torch.from_numpy(model.y_scaler_.transform(context))[None]
    states, state = model.reservoir_(u)
    first = model._readout(model.features(states[:, -1], u[:, -1]))
    return first[0].numpy(), state[0].numpy()


@pytest.mark.parametrize("leak", [1.0, 0.6])
@pytest.mark.parametrize("squared_units", [False, True])
@pytest.mark.parametrize("readout_input", [False, True])
@pytest.mark.parametrize("dims", [1, 3])
def test_kernel_closed_loop_equals_the_numpy_closed_loop(lorenz, leak, squared_units,
                                                         readout_input, dims):
    series = lorenz[:, :dims]
    model = ESN(n_units=150, connectivity=0.06, leak_rate=leak, squared_units=squared_units,
                readout_input=readout_input, random_state=3).fit(series[:2_000])
    first, state = start_of(model, series[1_500:2_000])
    kernel = model._closed_loop_kernel(first, state, 3_000)
    numpy = model._closed_loop_numpy(first, state, 3_000, None)
    assert kernel is not None and kernel.shape == numpy.shape == (3_000, dims)
    np.testing.assert_array_equal(kernel[0], first)
    scale = np.abs(numpy[:HORIZON]).max()
    np.testing.assert_allclose(kernel[:HORIZON], numpy[:HORIZON], rtol=0, atol=RTOL * scale)
    # Over the long run both stay finite and bounded (within a few times the training data's
    # range: the 1-D models wander off it, up to 3x on an AVX-512 machine and 5.7x on an
    # AVX2 one, whose generic kernel rounds differently), and, once the round-off has grown,
    # still on the same attractor: equal standard deviations (they agree to ~1% here).
    bound = 10.0 * np.abs(series).max()
    for run in (kernel, numpy):
        assert np.isfinite(run).all() and np.abs(run).max() < bound
    np.testing.assert_allclose(kernel[1_000:].std(0), numpy[1_000:].std(0), rtol=0.1)


def test_kernel_state_and_outputs_equal_the_equations_written_out():
    """Against the update written in float64 numpy, for a reservoir whose size is not a
    multiple of the chunk height, a sparse input matrix and a bias with zeros."""
    rng = np.random.default_rng(0)
    n, n_inputs = 93, 2
    W = recurrent_matrix(n, 0.9, 0.08, rng)
    W_in = rng.uniform(-0.5, 0.5, (n, n_inputs)) * (rng.random((n, n_inputs)) < 0.5)
    b = rng.uniform(-0.3, 0.3, n) * (rng.random(n) < 0.7)
    W_out = rng.normal(scale=0.1, size=(n + n_inputs, n_inputs))
    c = rng.normal(scale=0.1, size=n_inputs)
    first, x0 = rng.normal(size=n_inputs), rng.uniform(-0.5, 0.5, n)
    layout = _esn_cpu.sliced_layout(csr_of(W), W_in, b)
    outputs, final = _esn_cpu.generate(layout, 0.7, W_out, c, first[None], x0[None], 60,
                                       squared_units=True, readout_input=True)
    x, y, expected = x0.copy(), first, [first]
    for _ in range(59):
        u = y
        x = 0.3 * x + 0.7 * np.tanh(W_in @ u + W.toarray() @ x + b)
        phi = np.concatenate([np.where(np.arange(n) % 2 == 0, x * x, x), u])
        y = phi @ W_out + c
        expected.append(y)
    np.testing.assert_allclose(outputs[0], np.array(expected), rtol=0, atol=1e-13)
    np.testing.assert_allclose(final[0], x, rtol=0, atol=1e-13)


def test_sliced_layout_stores_exactly_the_pre_activation_matrix():
    rng = np.random.default_rng(1)
    n, n_inputs = 61, 3
    W = recurrent_matrix(n, 0.9, 0.1, rng)
    W_in = rng.uniform(-1, 1, (n, n_inputs)) * (rng.random((n, n_inputs)) < 0.6)
    b = rng.uniform(-1, 1, n) * (rng.random(n) < 0.5)
    layout = _esn_cpu.SlicedLayout(csr_of(W), W_in, b)
    # Rebuild [W | W_in | b] from the chunks (rows and W's columns in layout order).
    rebuilt = np.zeros((layout.n_chunks * 8, n + n_inputs + 1))
    for chunk in range(layout.n_chunks):
        start, end = layout.chunk_ptr[chunk], layout.chunk_ptr[chunk + 1]
        for flat in range(start, end):
            row = chunk * 8 + (flat - start) % 8
            rebuilt[row, layout.indices[flat]] += layout.values[flat]
    order = layout.order
    expected = np.hstack([W.toarray()[np.ix_(order, order)], W_in[order], b[order, None]])
    np.testing.assert_array_equal(rebuilt[:n], expected)
    assert not rebuilt[n:].any()
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    # Rows sorted by length, each chunk as wide as its longest row.
    counts = np.count_nonzero(expected, axis=1)
    assert (np.diff(counts) <= 0).all()
    widths = np.append(counts, [0] * (8 * layout.n_chunks - n)).reshape(-1, 8).max(axis=1)
    np.testing.assert_array_equal(np.diff(layout.chunk_ptr), 8 * widths)


def test_sorting_keeps_the_padding_small_at_the_benchmark_size():
    rng = np.random.default_rng(5)
    n = 1000
    W = recurrent_matrix(n, 0.9, 0.02, rng)
    layout = _esn_cpu.SlicedLayout(csr_of(W),
                                   rng.uniform(-0.1, 0.1, (n, 3)), rng.uniform(-0.5, 0.5, n))
    stored = W.nnz + 4 * n
    assert stored <= layout.chunk_ptr[-1] < 1.05 * stored  # ~35% more unsorted


def test_layout_is_cached_and_rebuilt_when_the_weights_change():
    rng = np.random.default_rng(2)
    W = recurrent_matrix(40, 0.9, 0.1, rng)
    csr = csr_of(W)
    W_in, b = rng.uniform(-1, 1, (40, 2)), rng.uniform(-1, 1, 40)
    layout = _esn_cpu.sliced_layout(csr, W_in, b)
    assert _esn_cpu.sliced_layout(csr, W_in.copy(), b.copy()) is layout
    b[3] += 1.0
    rebuilt = _esn_cpu.sliced_layout(csr, W_in, b)
    assert rebuilt is not layout and rebuilt.matches(W_in, b)


def test_batch_of_closed_loops_equals_each_alone_on_any_thread_count():
    rng = np.random.default_rng(3)
    n = 120
    W = recurrent_matrix(n, 0.9, 0.05, rng)
    layout = _esn_cpu.sliced_layout(csr_of(W),
                                    rng.uniform(-0.5, 0.5, (n, 3)), rng.uniform(-0.5, 0.5, n))
    W_out, c = rng.normal(scale=0.1, size=(n, 3)), rng.normal(scale=0.1, size=3)
    first, states = rng.normal(size=(5, 3)), rng.uniform(-0.5, 0.5, (5, n))
    alone = [_esn_cpu.generate(layout, 1.0, W_out, c, first[i:i + 1], states[i:i + 1], 80)[0]
             for i in range(5)]
    for threads in (1, 2):
        batch, _ = _esn_cpu.generate(layout, 1.0, W_out, c, first, states, 80, threads=threads)
        np.testing.assert_array_equal(batch, np.concatenate(alone))
    # No state: zeros.
    zero, _ = _esn_cpu.generate(layout, 1.0, W_out, c, first[:1], None, 10)
    np.testing.assert_array_equal(
        zero, _esn_cpu.generate(layout, 1.0, W_out, c, first[:1], np.zeros((1, n)), 10)[0])


def test_context_prefix_equals_the_reservoir_run_and_readout_then_the_closed_loop(fitted,
                                                                                lorenz):
    """generate(context=...) runs the teacher-forced context in the same call: its state
    after the context, its y_0 and the closed loop from there equal ESN._predict's."""
    context = fitted.y_scaler_.transform(lorenz[1_500:2_000])
    reservoir = fitted.reservoir_
    layout = _esn_cpu.sliced_layout(reservoir._kernel(), reservoir.input_weights.numpy(),
                                    reservoir.bias.numpy())
    arguments = (layout, reservoir.leak_rate, fitted.readout_weights_,
                 fitted.readout_intercept_)
    first, state = start_of(fitted, lorenz[1_500:2_000])
    one, after_context = _esn_cpu.generate(*arguments, None, None, 1, context=context[None],
                                           squared_units=True)
    # The reservoir contracts: the context states differ from the CSR kernel's by round-off.
    np.testing.assert_allclose(after_context[0], state, rtol=0, atol=1e-13)
    np.testing.assert_allclose(one[0, 0], first, rtol=0, atol=1e-12)
    with_context, _ = _esn_cpu.generate(*arguments, None, None, 300, context=context[None],
                                        squared_units=True)
    from_first, _ = _esn_cpu.generate(*arguments, first[None], state[None], 300,
                                      squared_units=True)
    np.testing.assert_allclose(with_context[0, :HORIZON], from_first[0, :HORIZON], rtol=0,
                               atol=RTOL * np.abs(from_first).max())
    # From given start states (a short context: the start still matters), batched.
    start = np.random.default_rng(6).uniform(-0.5, 0.5, (2, reservoir.n_units))
    short = np.stack([context[:3]] * 2)
    batch, _ = _esn_cpu.generate(*arguments, None, start, 20, context=short,
                                 squared_units=True)
    states, state = reservoir(torch.from_numpy(short[1:]), torch.from_numpy(start[1:]))
    expected = fitted._readout(fitted.features(states[:, -1], torch.from_numpy(short[1:, -1])))
    np.testing.assert_allclose(batch[1, 0], expected[0].numpy(), rtol=0, atol=1e-12)
    alone, _ = _esn_cpu.generate(*arguments, None, start[1:], 20, context=short[1:],
                                 squared_units=True)
    np.testing.assert_array_equal(batch[1], alone[0])
    assert np.abs(batch[0, 0] - batch[1, 0]).max() > 1e-3  # the start state mattered


def test_generate_refuses_inconsistent_arguments():
    rng = np.random.default_rng(4)
    W = recurrent_matrix(30, 0.9, 0.1, rng)
    layout = _esn_cpu.sliced_layout(csr_of(W),
                                    rng.uniform(-1, 1, (30, 2)), np.zeros(30))
    W_out, c, first = np.zeros((30, 2)), np.zeros(2), np.zeros((1, 2))
    with pytest.raises(ValueError, match=r"readout_weights must be \(32, 2\)"):
        _esn_cpu.generate(layout, 1.0, W_out, c, first, None, 5, readout_input=True)
    with pytest.raises(ValueError, match="leak"):
        _esn_cpu.generate(layout, 0.0, W_out, c, first, None, 5)
    with pytest.raises(ValueError, match="first must be"):
        _esn_cpu.generate(layout, 1.0, W_out, c, np.zeros((1, 3)), None, 5)
    with pytest.raises(ValueError, match="state must be"):
        _esn_cpu.generate(layout, 1.0, W_out, c, first, np.zeros((1, 29)), 5)
    with pytest.raises(ValueError, match="intercept"):
        _esn_cpu.generate(layout, 1.0, W_out, np.zeros(3), first, None, 5)
    with pytest.raises(ValueError, match="n_steps"):
        _esn_cpu.generate(layout, 1.0, W_out, c, first, None, 0)
    with pytest.raises(ValueError, match="exactly one of first and context"):
        _esn_cpu.generate(layout, 1.0, W_out, c, first, None, 5, context=np.zeros((1, 4, 2)))
    with pytest.raises(ValueError, match="exactly one of first and context"):
        _esn_cpu.generate(layout, 1.0, W_out, c, None, None, 5)
    with pytest.raises(ValueError, match="context must be"):
        _esn_cpu.generate(layout, 1.0, W_out, c, None, None, 5, context=np.zeros((1, 0, 2)))
    with pytest.raises(ValueError, match="NaN"):
        _esn_cpu.generate(layout, 1.0, W_out, c, None, None, 5,
                          context=np.full((1, 4, 2), np.nan))


@pytest.fixture(scope="module")
def fitted(lorenz):
    return ESN(n_units=200, connectivity=0.05, squared_units=True,
               random_state=0).fit(lorenz[:2_000])


def spy_on_generate(monkeypatch):
    calls = []
    generate = _esn_cpu.generate
    monkeypatch.setattr(_esn_cpu, "generate",
                        lambda *args, **kwargs: calls.append(1) or generate(*args, **kwargs))
    return calls


def test_predict_uses_the_kernel(fitted, lorenz, monkeypatch):
    calls = spy_on_generate(monkeypatch)
    numpy_calls = []
    numpy_loop = ESN._closed_loop_numpy
    monkeypatch.setattr(ESN, "_closed_loop_numpy",
                        lambda *args: numpy_calls.append(1) or numpy_loop(*args))
    forecast = fitted.predict(300, context=lorenz[1_500:2_000])
    assert calls == [1] and numpy_calls == []
    assert forecast.shape == (300, 3) and np.isfinite(forecast).all()


def test_without_the_compiled_library_predict_falls_back_to_numpy(fitted, lorenz,
                                                                  monkeypatch):
    with_kernel = fitted.predict(300, context=lorenz[1_500:2_000])
    # A fresh reservoir cache, as in a process where the library never loaded.
    monkeypatch.setitem(_native._LOADED, "esn", None)
    monkeypatch.setattr(fitted.reservoir_, "_cache_key", None)
    calls = spy_on_generate(monkeypatch)
    without = fitted.predict(300, context=lorenz[1_500:2_000])
    assert calls == []
    np.testing.assert_allclose(without[:HORIZON], with_kernel[:HORIZON], rtol=0,
                               atol=RTOL * np.abs(with_kernel).max())
    assert np.isfinite(without).all()


def test_no_native_environment_variable_disables_the_kernel(monkeypatch):
    monkeypatch.setenv("TSRNN_NO_NATIVE", "1")
    monkeypatch.delitem(_native._LOADED, "esn", raising=False)
    assert not _esn_cpu.available()


def test_models_with_exogenous_inputs_keep_the_numpy_loop(lorenz, monkeypatch):
    drive = np.sin(np.arange(2_300) * 0.05)[:, None]
    model = ESN(n_units=100, connectivity=0.08, random_state=0).fit(lorenz[:2_000],
                                                                    X=drive[:2_000])
    calls = spy_on_generate(monkeypatch)
    forecast = model.predict(200, context=lorenz[1_800:2_000], X=drive[1_800:2_200])
    assert calls == [] and forecast.shape == (200, 3) and np.isfinite(forecast).all()
    # Without X the same model's closed loop would feed back fewer inputs than the reservoir
    # reads: the kernel declines it.
    first, state = np.zeros(3), np.zeros(100)
    assert model._closed_loop_kernel(first, state, 10) is None


def test_predict_runs_the_context_inside_the_kernel_in_float64_and_float32(lorenz,
                                                                           monkeypatch):
    contexts = []
    generate = _esn_cpu.generate
    monkeypatch.setattr(_esn_cpu, "generate", lambda *args, **kwargs: contexts.append(
        kwargs.get("context") is not None) or generate(*args, **kwargs))
    double = ESN(n_units=100, connectivity=0.08, random_state=0).fit(lorenz[:2_000])
    single = ESN(n_units=100, connectivity=0.08, random_state=0,
                 dtype="float32").fit(lorenz[:2_000])
    double.predict(50, context=lorenz[1_800:2_000])
    double.predict(50)  # continuing the training data: the stored context, same path
    assert contexts == [True, True]
    forecast = single.predict(50, context=lorenz[1_800:2_000])
    # float32 models too: the kernel's float64 arithmetic on their float32 weights.
    assert contexts == [True, True, True] and np.isfinite(forecast).all()
    np.testing.assert_allclose(forecast[:10], double.predict(50, context=lorenz[
        1_800:2_000])[:10], rtol=0, atol=1e-4)
