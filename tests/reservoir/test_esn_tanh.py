"""The compiled ESN kernel's tanh (tsrnn.reservoir._esn_cpu: tanh8 with AVX-512, tanh_kernel
without) against the C library's tanh, in every kernel that applies it: the tiles of 8 and 4
sequences, the single sequence, and closed-loop generation."""

import math

import numpy as np
import pytest

from tsrnn.reservoir import _esn_cpu

pytestmark = pytest.mark.skipif(not _esn_cpu.available(),
                                reason="no C compiler: the kernel cannot be built here")

TINY = np.finfo(float).tiny  # smallest normal; below it the denormals


@pytest.fixture(scope="module")
def points():
    """1e6 arguments: the working range, both signs, tiny, denormal, huge and special values."""
    rng = np.random.default_rng(0)
    magnitudes = np.concatenate([
        rng.uniform(0, 25, 400_000),                  # tanh's whole transition and saturation
        np.abs(rng.normal(0, 1, 300_000)),            # where reservoir pre-activations live
        np.geomspace(1e-300, 1e300, 200_000),         # tiny to huge
        np.geomspace(5e-324, TINY, 99_986),           # denormals
        [0.0, 5e-324, TINY, 1e-17, 2.0**-27, 0.5 * math.log(3), 19.06, 20.0, 22.0, 1e308]])
    signs = rng.choice([-1.0, 1.0], magnitudes.size)
    specials = np.array([np.inf, -np.inf, np.nan, -0.0])
    return np.concatenate([signs * magnitudes, specials])


def reference(x):
    return np.array([math.tanh(v) for v in x.tolist()])


@pytest.fixture(scope="module")
def expected(points):
    return reference(points)


def ulp_errors(got, expected):
    """|got - expected| in units of the last place of expected (finite values)."""
    return np.abs(got - expected) / np.spacing(np.abs(expected))


def kernel_tanh(x, tile):
    """tanh through the state kernel: W = 0, W_in = 1, b = 0, leak 1, one unit, the values
    spread over the lanes of a tile of `tile` sequences (one state per step and lane)."""
    batch = 8 if tile == 8 else (5 if tile == 4 else 1)  # tile 4: a full and a padded tile
    length = -(-x.size // batch)
    padded = np.zeros(batch * length)
    padded[: x.size] = x
    empty = _esn_cpu.CSR(np.zeros(2, np.int64), np.zeros(0, np.int32), np.zeros(0), 1)
    out = np.empty((batch * length, 1))
    rows = np.arange(batch * length, dtype=np.int64).reshape(batch, length)
    _esn_cpu.run(empty, np.ones((1, 1)), np.zeros(1), 1.0,
                 padded.reshape(batch, length, 1), None, out, rows, tile=tile)
    return out[: x.size, 0]


@pytest.mark.parametrize("tile", [8, 4, 1])
def test_tanh_is_within_four_ulp_of_the_c_library(points, expected, tile):
    got = kernel_tanh(points, tile)
    finite = np.isfinite(points)
    assert points.size == 1_000_000
    assert ulp_errors(got[finite], expected[finite]).max() <= 4.0
    # Odd (signs kept, denormal arguments included) and saturated exactly at +-1.
    nonzero = finite & (points != 0.0)
    assert np.array_equal(np.signbit(got[nonzero]), np.signbit(points[nonzero]))
    denormal = finite & (points != 0.0) & (np.abs(points) < TINY)
    assert denormal.sum() > 90_000 and (np.abs(got[denormal]) > 0).all()
    saturated = finite & (np.abs(points) >= 20.0)
    np.testing.assert_array_equal(got[saturated], np.sign(points[saturated]))
    # The last four arguments: inf, -inf, NaN, -0.0 (the kernel adds the bias 0 to W_in u,
    # so the pre-activation of -0.0 is +0.0).
    assert got[-4] == 1.0 and got[-3] == -1.0 and np.isnan(got[-2]) and got[-1] == 0.0


def test_every_kernel_computes_the_same_leaky_tanh(points, expected):
    # x_1 = 0.4 x_0 + 0.6 tanh(u) for one unit (W = 0, W_in = 1, b = 0): the tiles of 8, 4
    # and 1 and closed-loop generation (its state after a one-step context, read out by
    # W_out = 1, c = 0, which is exact) must agree bit for bit, so that a model's fit and its
    # generation see the same tanh.
    keep = np.zeros(points.size, dtype=bool)
    keep[::10] = True
    keep &= np.isfinite(points)
    x, tanh_x = points[keep], expected[keep]
    start = np.random.default_rng(1).uniform(-1, 1, x.size)
    empty = _esn_cpu.CSR(np.zeros(2, np.int64), np.zeros(0, np.int32), np.zeros(0), 1)
    results = []
    for tile in (8, 4, 1):
        out = np.empty((x.size, 1))
        rows = np.arange(x.size, dtype=np.int64)[:, None]
        final = _esn_cpu.run(empty, np.ones((1, 1)), np.zeros(1), 0.6, x[:, None, None].copy(),
                             start[:, None].copy(), out, rows, tile=tile)
        np.testing.assert_array_equal(final[:, 0], out[:, 0])
        results.append(out[:, 0])
    layout = _esn_cpu.sliced_layout(empty, np.ones((1, 1)), np.zeros(1))
    outputs, final = _esn_cpu.generate(layout, 0.6, np.ones((1, 1)), np.zeros(1), None,
                                       start[:, None], 1, context=x[:, None, None])
    results.append(outputs[:, 0, 0])
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    # And the value itself: within a few ulp of the float64 formula with the C library's tanh
    # (the blend adds at most about an ulp of the result on top of tanh's own error).
    blend = 0.4 * start + 0.6 * tanh_x
    scale = np.maximum(np.abs(blend), np.abs(start)) + TINY
    assert (np.abs(results[0] - blend) / np.spacing(scale)).max() <= 8.0
