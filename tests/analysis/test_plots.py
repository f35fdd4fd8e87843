"""DSR figures: the axes they build, the data they draw, and their input checks."""

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")  # before pyplot: the suite must run without a display

from matplotlib.figure import Figure

from tsrnn.analysis import (
    plot_attractor,
    plot_power_spectra,
    plot_symbolic_sequence,
)
from tsrnn.metrics import power_spectrum_distance
from tsrnn.metrics.reconstruction import _smoothed_spectra


@pytest.fixture(scope="module")
def trajectories():
    rng = np.random.default_rng(0)
    t = np.arange(1024) * 0.05
    true = np.stack([np.sin(t), np.cos(1.3 * t), np.sin(0.7 * t) ** 2], 1)
    generated = true + 0.1 * rng.standard_normal(true.shape)
    return true, generated


def test_plot_attractor_draws_true_and_generated_in_3d_panels(trajectories):
    import matplotlib.pyplot as plt

    true, generated = trajectories
    figure = plot_attractor(true, generated)
    assert isinstance(figure, Figure)
    assert [ax.name for ax in figure.axes] == ["3d", "3d"]
    for ax, data in zip(figure.axes, (true, generated)):
        xs, ys, zs = ax.lines[0].get_data_3d()
        np.testing.assert_array_equal(np.stack([xs, ys, zs], 1), data)
    assert [ax.get_title() for ax in figure.axes] == ["true", "generated"]
    assert plt.get_fignums() == []  # not registered with pyplot: never shown, no leak


def test_plot_attractor_in_2d_overlaid_and_truncated(trajectories):
    true, generated = trajectories
    figure = plot_attractor(true, generated, dims=(2, 0), overlay=True, max_points=100)
    (ax,) = figure.axes
    assert ax.name == "rectilinear" and len(ax.lines) == 2
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), generated[:100, 2])
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), generated[:100, 0])
    assert ax.get_legend() is not None
    assert len(plot_attractor(true[:, :2]).axes) == 1  # 2-column data: plane, one panel
    assert plot_attractor(true[:, :2]).axes[0].name == "rectilinear"


def test_plot_attractor_rejects_mismatched_or_bad_input(trajectories):
    true, generated = trajectories
    with pytest.raises(ValueError, match="same number of columns"):
        plot_attractor(true, generated[:, :2])
    with pytest.raises(ValueError, match=r"dims \[3\] out of range for data with 3 columns"):
        plot_attractor(true, dims=(0, 3))
    with pytest.raises(ValueError, match="dims must name 2 or 3 columns"):
        plot_attractor(true, dims=(0,))
    with pytest.raises(ValueError, match="at least 2 columns"):
        plot_attractor(true[:, 0])
    bad = true.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="contains NaN"):
        plot_attractor(bad)


def test_plot_attractor_writes_only_when_given_a_path(trajectories, tmp_path):
    true, generated = trajectories
    plot_attractor(true, generated)
    assert list(tmp_path.iterdir()) == []
    target = tmp_path / "attractor.png"
    plot_attractor(true, generated, path=target)
    assert target.stat().st_size > 1000


def test_plot_power_spectra_draws_the_d_h_spectra_per_dimension(trajectories):
    true, generated = trajectories
    figure = plot_power_spectra(true, generated, sigma=5.0)
    assert len(figure.axes) == 3
    p = _smoothed_spectra(true, 5.0, "true", allow_constant=False)
    q = _smoothed_spectra(generated, 5.0, "generated", allow_constant=True)
    distances = []
    for i, ax in enumerate(figure.axes):
        np.testing.assert_allclose(ax.lines[0].get_ydata(), p[1:, i])
        np.testing.assert_allclose(ax.lines[1].get_ydata(), q[1:, i])
        np.testing.assert_allclose(ax.lines[0].get_xdata(), np.fft.rfftfreq(len(true))[1:])
        distances.append(float(ax.get_title().split("D_H = ")[1]))
    # The titles are the per-dimension terms of D_H (rounded to 3 digits).
    assert np.mean(distances) == pytest.approx(
        power_spectrum_distance(true, generated, sigma=5.0), abs=2e-3)


def test_plot_power_spectra_dims_dt_and_errors(trajectories):
    true, generated = trajectories
    figure = plot_power_spectra(true, generated, dims=[1], dt=0.05)
    assert len(figure.axes) == 1 and figure.axes[0].get_title().startswith("x1")
    np.testing.assert_allclose(figure.axes[0].lines[0].get_xdata(),
                               np.fft.rfftfreq(len(true), d=0.05)[1:])
    with pytest.raises(ValueError, match="same length"):
        plot_power_spectra(true, generated[:500])
    assert len(plot_power_spectra(true, generated[:500], truncate=True).axes) == 3
    with pytest.raises(ValueError, match="same number of columns"):
        plot_power_spectra(true, generated[:, :2])
    with pytest.raises(ValueError, match="constant in dimension"):
        plot_power_spectra(np.ones_like(true), generated)


def test_plot_symbolic_sequence_step_plot_and_transition_matrix():
    codes = np.array([0, 0, 3, 1, 3, 0, 3, 3])
    figure = plot_symbolic_sequence(codes, normalize=False)
    time_axes, graph_axes, _colour_bar = figure.axes
    # Regions 0, 1, 3 drawn by rank 0, 1, 2; transitions counted from -> to.
    np.testing.assert_array_equal(time_axes.lines[0].get_ydata(), [0, 0, 2, 1, 2, 0, 2, 2])
    # 0->0, 0->3, 3->1, 1->3, 3->0, 0->3, 3->3
    expected = np.array([[1, 0, 2], [0, 0, 1], [1, 1, 1]])
    np.testing.assert_array_equal(graph_axes.images[0].get_array(), expected)
    assert [t.get_text() for t in graph_axes.get_xticklabels()] == ["0", "1", "3"]
    normalized = plot_symbolic_sequence(codes).axes[1].images[0].get_array()
    np.testing.assert_allclose(normalized, expected / expected.sum(1, keepdims=True))


def test_plot_symbolic_sequence_of_sign_patterns_is_an_image():
    rng = np.random.default_rng(1)
    patterns = rng.random((50, 4)) < 0.5
    figure = plot_symbolic_sequence(patterns, max_steps=30)
    time_axes, graph_axes, _ = figure.axes
    np.testing.assert_array_equal(time_axes.images[0].get_array(), patterns[:30].T)
    codes = patterns.astype(int) @ np.array([8, 4, 2, 1])
    assert graph_axes.images[0].get_array().shape == (np.unique(codes).size,) * 2


def test_plot_symbolic_sequence_rejects_bad_codes():
    with pytest.raises(ValueError, match="integer codes"):
        plot_symbolic_sequence(np.array([0.5, 1.0, 2.0]))
    with pytest.raises(ValueError, match="integer codes"):
        plot_symbolic_sequence(np.zeros((4, 2, 2), dtype=bool))
    with pytest.raises(ValueError, match="at least 2 time steps"):
        plot_symbolic_sequence(np.array([3]))


def test_a_path_without_suffix_is_not_replaced_silently(trajectories, tmp_path):
    # matplotlib writes "fig" to "fig.png": that is the file overwrite=False must protect.
    true, generated = trajectories
    plot_attractor(true, generated, path=tmp_path / "fig")
    written = tmp_path / "fig.png"
    assert written.exists() and not (tmp_path / "fig").exists()
    before = written.stat().st_mtime_ns, written.read_bytes()
    with pytest.raises(FileExistsError, match=r"fig\.png exists"):
        plot_attractor(true, 3 * generated, path=tmp_path / "fig")
    assert (written.stat().st_mtime_ns, written.read_bytes()) == before
    plot_attractor(true, 3 * generated, path=tmp_path / "fig", overwrite=True)
    assert written.read_bytes() != before[1]


def test_side_by_side_attractors_share_one_scale(trajectories):
    # A generated attractor three times too large and shifted must look it.
    true, generated = trajectories
    figure = plot_attractor(true, 3 * generated + 50)
    first, second = figure.axes
    for limits in ("get_xlim", "get_ylim", "get_zlim"):
        assert getattr(first, limits)() == getattr(second, limits)()
    assert first.get_xlim()[1] >= (3 * generated[:, 0] + 50).max()
    assert first.get_xlim()[0] <= true[:, 0].min()


def test_a_constant_generated_dimension_keeps_the_power_axis_readable(trajectories):
    true, generated = trajectories
    constant = generated.copy()
    constant[:, 2] = 0.5
    figure = plot_power_spectra(true, constant)
    low, high = figure.axes[2].get_ylim()
    assert np.log10(high / low) < 30  # was ~337 decades with zero power drawn at tiny
    assert "no power" in figure.axes[2].get_legend().get_texts()[1].get_text()


@pytest.mark.parametrize("dims", [(0.7, 1.9), (True, False)])
def test_dims_must_be_integers(trajectories, dims):
    with pytest.raises(TypeError, match="integers"):
        plot_attractor(trajectories[0], dims=dims)


def test_sign_patterns_without_relu_columns_are_refused():
    with pytest.raises(ValueError, match="no ReLU columns"):
        plot_symbolic_sequence(np.zeros((10, 0), dtype=bool))
