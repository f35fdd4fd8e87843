"""Tests of tsrnn/datasets/splits.py: consecutive blocks, train-only statistics, inverses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from tsrnn.datasets import SeriesSplit, simulate_splits, train_test_split_series


class NoisySine:
    """A stand-in system with the tsrnn.systems API: two phase-shifted sines plus noise.

    Step k of the returned trajectory is at time (transient + k) * dt, so a test can
    recompute any block exactly; the noise comes from ``seed``.
    """

    dim = 2
    default_dt = 0.05

    def __init__(self):
        self.calls = []

    def simulate(self, n_steps, dt=None, x0=None, transient=0, seed=None, noise=0.0):
        self.calls.append(dict(n_steps=n_steps, dt=dt, transient=transient, seed=seed,
                               noise=noise))
        dt = self.default_dt if dt is None else dt
        time = (transient + np.arange(n_steps)) * dt
        clean = np.stack([3.0 + 2.0 * np.sin(time), -1.0 + 0.5 * np.cos(0.7 * time)], axis=1)
        rng = np.random.default_rng(seed)
        return clean + noise * rng.standard_normal((n_steps, self.dim))


def test_simulate_splits_makes_one_call_and_consecutive_blocks():
    system = NoisySine()
    split = simulate_splits(system, n_train=400, n_validation=100, n_test=150, transient=50,
                            noise=0.1, seed=3, standardize=False)
    assert system.calls == [dict(n_steps=650, dt=None, transient=50, seed=3, noise=0.1)]
    trajectory = NoisySine().simulate(650, transient=50, seed=3, noise=0.1)
    np.testing.assert_array_equal(split.train, trajectory[:400])
    np.testing.assert_array_equal(split.validation, trajectory[400:500])
    np.testing.assert_array_equal(split.test, trajectory[500:650])
    assert split.sizes == (400, 100, 150) and split.starts == (0, 400, 500)
    assert split.dt == NoisySine.default_dt
    assert not split.standardized and split.mean is None


def test_simulate_splits_gap_drops_steps_before_each_later_block():
    system = NoisySine()
    split = simulate_splits(system, 300, 50, 80, dt=0.1, transient=20, gap=25,
                            standardize=False)
    assert system.calls[0]["n_steps"] == 300 + 25 + 50 + 25 + 80
    assert split.starts == (0, 325, 400) and split.dt == 0.1
    trajectory = NoisySine().simulate(480, dt=0.1, transient=20)
    np.testing.assert_array_equal(split.validation, trajectory[325:375])
    np.testing.assert_array_equal(split.test, trajectory[400:480])
    # no gap before an empty validation block: the test block follows train after one gap
    only_test = simulate_splits(NoisySine(), 300, n_test=80, gap=25, standardize=False)
    assert only_test.starts == (0, 300, 325) and only_test.validation.shape == (0, 2)


def test_simulate_splits_standardises_with_train_statistics_only():
    split = simulate_splits(NoisySine(), 600, 200, 200, noise=0.05, seed=0)
    np.testing.assert_allclose(split.train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(split.train.std(axis=0), 1.0, rtol=1e-12)
    raw = NoisySine().simulate(1000, transient=1000, seed=0, noise=0.05)
    np.testing.assert_allclose(split.mean, raw[:600].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(split.std, raw[:600].std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(split.test, (raw[800:] - split.mean) / split.std, rtol=1e-12)
    # the test block is scaled with train statistics, so its own are not exactly 0 and 1
    assert np.abs(split.test.mean(axis=0)).max() > 1e-3
    assert np.abs(split.test.std(axis=0) - 1.0).max() > 1e-3


def test_inverse_transform_undoes_scaling_for_arrays_tensors_and_batches():
    split = simulate_splits(NoisySine(), 500, n_test=100, seed=1, noise=0.1)
    raw = NoisySine().simulate(600, transient=1000, seed=1, noise=0.1)
    np.testing.assert_allclose(split.inverse_transform(split.test), raw[500:], rtol=1e-12)
    np.testing.assert_allclose(split.transform(raw[500:]), split.test, rtol=1e-12)
    tensor = torch.tensor(split.test, dtype=torch.float32)
    restored = split.inverse_transform(tensor)
    assert isinstance(restored, torch.Tensor) and restored.dtype == torch.float32
    # float32 round-off on values of size ~5
    np.testing.assert_allclose(restored.numpy(), raw[500:], rtol=1e-5, atol=1e-5)
    batch = np.stack([split.test, split.test])  # (B, T, dim)
    np.testing.assert_allclose(split.inverse_transform(batch)[1], raw[500:], rtol=1e-12)
    one_column = split.inverse_transform(split.test[:, 1:], columns=[1])
    np.testing.assert_allclose(one_column[:, 0], raw[500:, 1], rtol=1e-12)


def test_inverse_transform_rejects_the_wrong_number_of_variates():
    split = simulate_splits(NoisySine(), 100, n_test=10)
    with pytest.raises(ValueError, match=r"3 variates on its last axis.*statistics have 2"):
        split.inverse_transform(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="unknown column 'OT'"):
        split.inverse_transform(np.zeros((5, 1)), columns=["OT"])


def test_series_split_is_frozen():
    split = simulate_splits(NoisySine(), 100, n_test=10)
    assert isinstance(split, SeriesSplit)
    with pytest.raises(dataclasses.FrozenInstanceError):
        split.mean = None


def test_simulate_splits_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_train must be > 0"):
        simulate_splits(NoisySine(), 0, n_test=10)
    with pytest.raises(ValueError, match="n_test must be >= 0"):
        simulate_splits(NoisySine(), 10, n_test=-1)
    with pytest.raises(TypeError, match="simulate"):
        simulate_splits(object(), 10)


def test_simulate_splits_reports_a_diverged_simulation():
    class Diverging(NoisySine):
        def simulate(self, n_steps, **options):
            trajectory = super().simulate(n_steps, **options)
            trajectory[5, 0] = np.inf
            return trajectory

    with pytest.raises(ValueError, match="simulated trajectory contains NaN or inf"):
        simulate_splits(Diverging(), 20, n_test=5)


def test_train_test_split_series_fractions_and_counts():
    series = np.arange(100.0).reshape(50, 2)
    split = train_test_split_series(series, test_size=0.2, validation_size=5)
    assert split.sizes == (35, 5, 10) and split.starts == (0, 35, 40)
    np.testing.assert_array_equal(split.train, series[:35])
    np.testing.assert_array_equal(split.validation, series[35:40])
    np.testing.assert_array_equal(split.test, series[40:])
    assert split.dt is None and not split.standardized
    # a fraction is rounded up, as scikit-learn does: 0.1 of 15 rows is 2 rows
    assert train_test_split_series(np.arange(15.0), test_size=0.1).sizes == (13, 0, 2)
    gapped = train_test_split_series(np.arange(20.0), test_size=4, validation_size=4, gap=2)
    assert gapped.sizes == (8, 4, 4) and gapped.starts == (0, 10, 16)


def test_train_test_split_series_keeps_pandas_index_and_standardises_with_train():
    index = pd.period_range("2000-01", periods=40, freq="M")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(5, 2, 40), "b": np.linspace(0, 1, 40)}, index=index)
    split = train_test_split_series(frame, test_size=10, standardize=True)
    assert isinstance(split.test, pd.DataFrame) and split.test.index.equals(index[30:])
    assert split.columns == ("a", "b")
    np.testing.assert_allclose(split.train.mean().to_numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(split.train.std(ddof=0).to_numpy(), 1.0, rtol=1e-12)
    # "b" rises steadily, so the test block lies above the training range
    assert split.test["b"].min() > split.train["b"].max()
    pd.testing.assert_frame_equal(split.inverse_transform(split.test), frame.iloc[30:])
    restored_b = split.inverse_transform(split.test[["b"]], columns=["b"])
    pd.testing.assert_frame_equal(restored_b, frame.iloc[30:][["b"]])


def test_train_test_split_series_of_a_1d_series_ignores_nan_in_statistics():
    values = np.array([1.0, np.nan, 3.0, 5.0, 7.0, 9.0])
    split = train_test_split_series(values, test_size=2, standardize=True)
    assert split.mean.shape == () and split.mean == pytest.approx(3.0)  # mean of 1, 3, 5
    np.testing.assert_allclose(split.test, (values[4:] - 3.0) / np.std([1.0, 3.0, 5.0]))


def test_train_test_split_series_errors_for_empty_parts_and_short_series():
    with pytest.raises(ValueError, match="series too short: 5 rows leave 0 for training"):
        train_test_split_series(np.arange(5.0), test_size=3, validation_size=2)
    with pytest.raises(ValueError, match="series too short: 10 rows leave -2"):
        train_test_split_series(np.arange(10.0), test_size=4, validation_size=4, gap=2)
    with pytest.raises(ValueError, match="test_size as a fraction must lie in"):
        train_test_split_series(np.arange(10.0), test_size=1.5)
    with pytest.raises(TypeError, match="test_size must be an int"):
        train_test_split_series(np.arange(10.0), test_size="20%")
    with pytest.raises(ValueError, match="must have 1 or 2 dimensions"):
        train_test_split_series(np.zeros((4, 3, 2)), test_size=1)


def test_constant_variate_keeps_unit_scale():
    series = np.column_stack([np.arange(10.0), np.full(10, 4.0)])
    split = train_test_split_series(series, test_size=2, standardize=True)
    assert split.std[1] == 1.0
    np.testing.assert_array_equal(split.train[:, 1], 0.0)


def test_simulate_splits_with_lorenz63():
    systems = pytest.importorskip("tsrnn.systems")
    if not hasattr(systems, "Lorenz63"):
        pytest.skip("tsrnn.systems.Lorenz63 is not written yet")
    system = systems.Lorenz63()
    split = simulate_splits(system, n_train=500, n_validation=100, n_test=100, transient=200,
                            seed=0)
    assert split.train.shape == (500, 3) and split.test.shape == (100, 3)
    assert split.dt == system.default_dt
    np.testing.assert_allclose(split.train.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(split.train.std(axis=0), 1.0, rtol=1e-10)
    # the standardised trajectory stays on the attractor: a few training std from the mean
    assert np.abs(split.test).max() < 6.0


def test_pandas_transforms_match_columns_by_name():
    # Applied by position, a DataFrame with its columns swapped was scaled with the other
    # column's statistics (means of -133 and 10 instead of ~0), and foreign names passed.
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(10, 1, 200), "b": rng.normal(-500, 50, 200)})
    split = train_test_split_series(frame, test_size=0.25, standardize=True)
    raw = frame.iloc[150:]
    swapped = split.transform(raw[["b", "a"]])
    pd.testing.assert_frame_equal(swapped, split.transform(raw)[["b", "a"]])
    only_b = split.inverse_transform(split.transform(raw[["b"]]))
    pd.testing.assert_frame_equal(only_b, raw[["b"]])
    series = split.transform(raw["b"])
    np.testing.assert_allclose(series.to_numpy(), split.transform(raw)["b"].to_numpy())
    with pytest.raises(ValueError, match=r"columns \['x'\] that the split does not know"):
        split.transform(raw.rename(columns={"a": "x"}))


def test_simulated_noise_is_scaled_by_the_training_block_alone():
    # The noise was relative to the std of the whole run: the training block changed with
    # the length of the test block (by 1.2 in Lorenz-63's units at 20,000 test steps).
    from tsrnn.systems import Lorenz63

    short = simulate_splits(Lorenz63(), 3_000, noise=0.05, seed=3, standardize=False)
    long = simulate_splits(Lorenz63(), 3_000, n_test=10_000, noise=0.05, seed=3,
                           standardize=False)
    np.testing.assert_array_equal(short.train, long.train)
    clean = simulate_splits(Lorenz63(), 3_000, n_test=10_000, seed=3, standardize=False)
    ratio = (long.train - clean.train).std(axis=0) / clean.train.std(axis=0, ddof=1)
    np.testing.assert_allclose(ratio, 0.05, rtol=0.05)
    assert not np.array_equal(long.test, clean.test)  # the other blocks are noisy too


def test_simulate_splits_observes_an_unbounded_angle_on_the_circle():
    from tsrnn.systems import Duffing

    system = Duffing()
    kept = simulate_splits(system, n_train=400, n_test=200, seed=0, standardize=False)
    circle = simulate_splits(system, n_train=400, n_test=200, seed=0, standardize=False,
                             angles="circle")
    assert kept.train.shape == (400, 3) and circle.train.shape == (400, 4)
    for kept_block, circle_block in ((kept.train, circle.train), (kept.test, circle.test)):
        np.testing.assert_array_equal(circle_block[:, :2], kept_block[:, :2])
        np.testing.assert_allclose(circle_block[:, 2:], np.c_[np.cos(kept_block[:, 2]),
                                                              np.sin(kept_block[:, 2])])
    # The phase grows without bound: the held-out block lies beyond the training range
    # as simulated, and within it on the circle.
    assert kept.test[:, 2].min() > kept.train[:, 2].max()
    assert np.abs(circle.test[:, 2:]).max() <= 1.0


def test_simulate_splits_angles_option_is_checked():
    from tsrnn.systems import Lorenz63

    with pytest.raises(ValueError, match="angles"):
        simulate_splits(Lorenz63(), n_train=100, angles="wrap")
    # A system without angles is the same either way.
    np.testing.assert_array_equal(
        simulate_splits(Lorenz63(), n_train=100, seed=0, angles="circle").train,
        simulate_splits(Lorenz63(), n_train=100, seed=0).train)
