"""SCYFI against the models' own maps, analytic fixed points and cycles, brute force over
subregion sequences, and the Newton finder.

Every model runs in float64: a true cycle then returns to itself to round-off (1e-8 leaves
room for condition numbers up to ~1e6 of I - J_k ... J_1 on O(1) states).
"""

import copy
import itertools

import numpy as np
import pytest
import torch

from tsrnn.analysis import (
    PiecewiseLinearCycle,
    PiecewiseLinearFixedPoint,
    find_cycles,
    fixed_points,
    scyfi,
)
from tsrnn.analysis.fixed_points import Cycle, FixedPoint
from tsrnn.analysis.scyfi import _AffinePieces, _necklaces
from tsrnn.nn import ALRNN, PLRNN, ShallowPLRNN
from tsrnn.systems import Henon

CLOSURE = 1e-8


def random_plrnn(seed: int, n_latent: int) -> PLRNN:
    """A PLRNN with fixed points and cycles of low order (strong random coupling, A of both
    signs)."""
    generator = torch.Generator().manual_seed(seed)
    model = PLRNN(n_latent, generator=generator).double()
    with torch.no_grad():
        model.A.uniform_(-0.9, 0.9, generator=generator)
        model.W.normal_(0.0, 3.0 / np.sqrt(n_latent), generator=generator)
        model.h.normal_(0.0, 1.0, generator=generator)
    return model


def random_alrnn(seed: int, n_latent: int = 4, n_pwl: int = 2) -> ALRNN:
    generator = torch.Generator().manual_seed(seed)
    model = ALRNN(n_latent, n_pwl, generator=generator).double()
    with torch.no_grad():
        model.A.uniform_(-0.9, 0.9, generator=generator)
        model.W.normal_(0.0, 3.0 / np.sqrt(n_latent), generator=generator)
        model.h.normal_(0.0, 1.0, generator=generator)
    return model


def random_shallow(seed: int, clipped: bool) -> ShallowPLRNN:
    generator = torch.Generator().manual_seed(seed)
    model = ShallowPLRNN(3, 6, clipped=clipped, generator=generator).double()
    with torch.no_grad():
        model.A.uniform_(-0.9, 0.9, generator=generator)
        model.W1.normal_(0.0, 2.0, generator=generator)
        model.h1.normal_(0.0, 1.0, generator=generator)
    return model


def set_parameters(model, **values):
    with torch.no_grad():
        for name, value in values.items():
            getattr(model, name).copy_(torch.as_tensor(value, dtype=torch.float64))
    return model


# Mutually inhibiting pairs x' = a x + w relu(y) + h, y' = a y + w relu(x) + h with h > 0 and
# w < -(1 - a): in each pair three fixed points, (s, s) with s = h / (1 - a - w) (a saddle,
# eigenvalues a + w and a - w > 1) and (p, q), (q, p) with p = h / (1 - a) > 0,
# q = h (1 + w / (1 - a)) / (1 - a) < 0 (stable, eigenvalues a, a); the fourth subregion
# (both off) would need x = p > 0: not self-consistent.
PAIRS = [(0.5, -1.0, 1.0), (0.3, -1.2, 0.5), (0.6, -0.8, 2.0)]


def pair_fixed_points(a, w, h):
    s, p = h / (1 - a - w), h / (1 - a)
    q = h * (1 + w / (1 - a)) / (1 - a)
    return [((s, s), (a + w, a - w)), ((p, q), (a, a)), ((q, p), (a, a))]


def inhibitory_pairs(model, pairs, offset=0):
    """Write the pairs into units offset.. of a PLRNN or ALRNN (block-diagonal W)."""
    n = model.n_latent
    a, w, h = np.zeros(n), np.zeros((n, n)), np.zeros(n)
    for i, (ai, wi, hi) in enumerate(pairs):
        x, y = offset + 2 * i, offset + 2 * i + 1
        a[[x, y]], h[[x, y]] = ai, hi
        w[x, y] = w[y, x] = wi
    return a, w, h


def expected_product_fixed_points(pairs, prefix=((), ())):
    """All combinations of the pairs' fixed points: locations and sorted eigenvalues."""
    points = []
    for choice in itertools.product(*(pair_fixed_points(*pair) for pair in pairs)):
        location = np.concatenate([prefix[0]] + [np.array(c[0]) for c in choice])
        eigenvalues = np.sort(np.concatenate([prefix[1]] + [np.array(c[1]) for c in choice]))
        points.append((location, eigenvalues))
    return sorted(points, key=lambda item: tuple(item[0]))


def orbit(model, point, steps):
    z = torch.as_tensor(point, dtype=torch.float64)[None]
    states = []
    with torch.no_grad():
        for _ in range(steps):
            z = model.step(z)
            states.append(z[0].numpy())
    return np.array(states)


def assert_true_cycle(model, cycle, order):
    """Iterating the model from the first point visits the listed points, returns after
    exactly ``order`` steps and not before; the listed regions are the model's."""
    points = cycle.points if isinstance(cycle, Cycle) else cycle.location[None]
    assert points.shape == (order, model.n_latent)
    visited = orbit(model, points[0], order)
    scale = max(1.0, float(np.abs(points).max()))
    np.testing.assert_allclose(visited[-1], points[0], atol=CLOSURE * scale)
    np.testing.assert_allclose(visited[:-1], points[1:], atol=CLOSURE * scale)
    for j in range(1, order):  # minimal period: no earlier return
        assert np.linalg.norm(visited[j - 1] - points[0]) > 1e-6
    regions = model.region(torch.as_tensor(points)).numpy()
    np.testing.assert_array_equal(
        regions, cycle.regions if isinstance(cycle, Cycle) else cycle.region[None])


def cycle_keys(cycles):
    return {c.codes for c in cycles}


# ------------------------------------------------------------------ the affine pieces
@pytest.mark.parametrize("kind", ["plrnn", "alrnn", "shallow", "clipped"])
def test_affine_pieces_reproduce_module_step_jacobian_and_region(kind):
    model = {"plrnn": lambda: random_plrnn(0, 6), "alrnn": lambda: random_alrnn(0, 6, 3),
             "shallow": lambda: random_shallow(0, False),
             "clipped": lambda: random_shallow(0, True)}[kind]()
    pieces = _AffinePieces(model)
    z = torch.randn(200, model.n_latent, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64) * 2
    patterns = pieces.patterns(z.numpy())
    np.testing.assert_array_equal(patterns, model.region(z).numpy())
    jacobian, offset = pieces.pieces(patterns)
    with torch.no_grad():
        np.testing.assert_allclose(jacobian, model.jacobian(z).numpy(), atol=1e-12)
        affine = np.einsum("nij,nj->ni", jacobian, z.numpy()) + offset
        np.testing.assert_allclose(affine, model.step(z).numpy(), atol=1e-12)
        np.testing.assert_allclose(pieces.step(z.numpy()), model.step(z).numpy(), atol=1e-12)


def test_necklaces_are_one_primitive_word_per_rotation_class():
    # Number of binary Lyndon words of length k: 2, 1, 2, 3, 6, 9 (OEIS A001037).
    counts = [sum(len(w) for w in _necklaces(2, k)) for k in range(1, 7)]
    assert counts == [2, 1, 2, 3, 6, 9]
    words = np.concatenate(list(_necklaces(3, 4)))
    assert len(words) == (3**4 - 3**2) // 4  # (ternary words of minimal period 4) / 4
    keys = {min(tuple(np.roll(w, s)) for s in range(4)) for w in words}
    assert len(keys) == len(words)


# ------------------------------------------------------------------ random PLRNNs
@pytest.mark.parametrize(("n_latent", "seed"), [(6, 1), (6, 2), (6, 6), (8, 0), (8, 5)])
def test_every_cycle_on_random_plrnns_is_a_true_cycle_of_minimal_period(n_latent, seed):
    model = random_plrnn(seed, n_latent)
    found = 0
    for order in (1, 2, 3):
        cycles = scyfi(model, order, cycles=True, exhaustive=False)
        for cycle in cycles:
            assert isinstance(cycle, PiecewiseLinearCycle) and cycle.period == order
            assert_true_cycle(model, cycle, order)
            # The first point is the lexicographically smallest (as in the Newton finder).
            assert tuple(cycle.points[0]) == min(tuple(p) for p in cycle.points)
            assert cycle.residual < CLOSURE
        # One entry per orbit: no two share a point (cyclic shifts are merged).
        firsts = [c.points[0] for c in cycles]
        for i, j in itertools.combinations(range(len(cycles)), 2):
            assert np.min(np.linalg.norm(cycles[j].points - firsts[i], axis=1)) > 1e-6
        found += len(cycles)
    assert found >= 3  # the seeds were picked to have cycles: the checks above ran


@pytest.mark.parametrize(("n_latent", "seed", "order"),
                         [(6, 2, 1), (6, 2, 2), (6, 2, 3), (6, 1, 3), (8, 5, 2), (8, 0, 2)])
def test_heuristic_search_finds_what_exhaustive_enumeration_finds(n_latent, seed, order):
    model = random_plrnn(seed, n_latent)
    exact = scyfi(model, order, cycles=True, exhaustive=True)
    heuristic = scyfi(model, order, cycles=True, exhaustive=False)
    assert exact.exhaustive and not heuristic.exhaustive
    assert len(exact) > 0
    assert cycle_keys(heuristic) == cycle_keys(exact)
    for a, b in zip(exact, heuristic):
        np.testing.assert_allclose(a.points, b.points, atol=1e-10)


def test_eigenvalues_are_those_of_the_module_jacobian_product():
    model = random_plrnn(5, 8)
    for order in (1, 2):
        for cycle in find_cycles(model, order):
            product = np.eye(model.n_latent)
            with torch.no_grad():
                for point in cycle.points:
                    product = model.jacobian(torch.as_tensor(point)[None])[0].numpy() @ product
            expected = np.linalg.eigvals(product)
            np.testing.assert_allclose(np.sort_complex(cycle.eigenvalues),
                                       np.sort_complex(expected), atol=1e-10)
            assert cycle.stable == bool(np.all(np.abs(expected) < 1))


# ------------------------------------------------------------------ constructed examples
@pytest.mark.parametrize("exhaustive", [True, False])
def test_plrnn_of_inhibitory_pairs_has_exactly_the_27_analytic_fixed_points(exhaustive):
    model = PLRNN(6).double()
    a, w, h = inhibitory_pairs(model, PAIRS)
    set_parameters(model, A=a, W=w, h=h)
    points = scyfi(model, exhaustive=exhaustive)
    expected = expected_product_fixed_points(PAIRS)
    assert len(points) == 27
    for point, (location, eigenvalues) in zip(points, expected):
        assert isinstance(point, PiecewiseLinearFixedPoint)
        np.testing.assert_allclose(point.location, location, atol=1e-12)
        np.testing.assert_allclose(np.sort(point.eigenvalues.real), eigenvalues, atol=1e-12)
        assert_true_cycle(model, point, 1)
    # Stable exactly when every pair sits at an asymmetric point: 2^3 of them.
    assert sum(p.stable for p in points) == 8
    assert sorted({p.unstable_dimension for p in points}) == [0, 1, 2, 3]
    # ... and nothing else: no 2- or 3-cycles in these subregions either.
    assert len(scyfi(model, 2, exhaustive=True)) == 0


@pytest.mark.parametrize("exhaustive", [True, False])
def test_alrnn_with_linear_units_and_two_pairs_has_the_9_analytic_fixed_points(exhaustive):
    model = ALRNN(6, 4).double()
    a, w, h = inhibitory_pairs(model, PAIRS[:2], offset=2)
    a[:2], h[:2] = (0.5, 0.8), (1.0, -1.0)  # decoupled linear units: z = h / (1 - a)
    set_parameters(model, A=a, W=w, h=h)
    points = scyfi(model, exhaustive=exhaustive)
    expected = expected_product_fixed_points(PAIRS[:2], prefix=((2.0, -5.0), (0.5, 0.8)))
    assert len(points) == 9
    for point, (location, eigenvalues) in zip(points, expected):
        np.testing.assert_allclose(point.location, location, atol=1e-12)
        np.testing.assert_allclose(np.sort(point.eigenvalues.real), eigenvalues, atol=1e-12)
        assert point.region.shape == (4,)  # the ALRNN's symbolic code: its last P units
    assert sum(p.stable for p in points) == 4


def tent_map_plrnn() -> PLRNN:
    """The tent map x' = 2x - 4 relu(x - 1/2) on [0, 1], embedded in a 4-unit PLRNN as
    (x, x - 1/2, x, x - 1/2) (two copies, because a unit's own ReLU is not in W)."""
    w = np.zeros((4, 4))
    for row, (same, shifted) in {0: (2, 1), 2: (0, 1), 1: (0, 3), 3: (0, 1)}.items():
        w[row, same], w[row, shifted] = 2.0, -4.0
    return set_parameters(PLRNN(4).double(), A=np.zeros(4), W=w,
                          h=np.array([0.0, -0.5, 0.0, -0.5]))


@pytest.mark.parametrize(("order", "orbits"), [
    (1, [[0.0], [2 / 3]]),
    (2, [[2 / 5, 4 / 5]]),
    (3, [[2 / 9, 4 / 9, 8 / 9], [2 / 7, 4 / 7, 6 / 7]]),
])
def test_tent_map_plrnn_contains_the_analytic_tent_map_cycles(order, orbits):
    model = tent_map_plrnn()
    cycles = scyfi(model, order, cycles=True)
    for cycle in cycles:
        assert_true_cycle(model, cycle, order)
    for xs in orbits:
        expected = np.array([[x, x - 0.5, x, x - 0.5] for x in xs])
        matches = [c for c in cycles if np.allclose(c.points, expected, atol=1e-12)]
        assert len(matches) == 1
        # Along the invariant line the multiplier of a k-cycle of the tent map is +-2^k
        # (x = 0 has slope 2 but sits on the kink: its subregion is the all-off one).
        if xs[0] != 0.0:
            assert np.any(np.isclose(np.abs(matches[0].eigenvalues), 2.0**order))


# ------------------------------------------------------------------ brute force (ALRNN)
def brute_force_cycles(model: ALRNN, order: int) -> list[np.ndarray]:
    """Every isolated cycle of minimal period ``order``, by solving the linear system of
    every sequence of subregions (all of them, rotations included) with matrices built
    from the parameters and checking the orbit with the module itself."""
    m, p = model.n_latent, model.n_pwl
    a = model.A.detach().numpy()
    w = (model.W * model.off_diagonal).detach().numpy()
    h = model.h.detach().numpy()
    cycles: list[np.ndarray] = []
    for sequence in itertools.product(range(2**p), repeat=order):
        product, constant = np.eye(m), np.zeros(m)
        for code in sequence:
            d = np.concatenate([np.ones(m - p), [(code >> (p - 1 - i)) & 1 for i in range(p)]])
            jacobian = np.diag(a) + w @ np.diag(d)
            product, constant = jacobian @ product, jacobian @ constant + h
        system = np.eye(m) - product
        if np.linalg.svd(system, compute_uv=False)[-1] < 1e-10:
            continue
        start = np.linalg.solve(system, constant)
        points = np.vstack([start, orbit(model, start, order)])
        with torch.no_grad():
            codes = model.region_codes(torch.as_tensor(points[:-1])).tolist()
        if codes != list(sequence) or np.linalg.norm(points[-1] - start) > 1e-9:
            continue
        if any(np.linalg.norm(points[j] - start) < 1e-9 for j in range(1, order)):
            continue  # a shorter cycle
        first = int(np.lexsort(points[:-1].T[::-1])[0])
        canonical = np.roll(points[:-1], -first, axis=0)
        if not any(np.allclose(canonical, c, atol=1e-9) for c in cycles):
            cycles.append(canonical)
    return sorted(cycles, key=lambda c: tuple(c[0]))


@pytest.mark.parametrize("seed", [2, 7, 9])
def test_alrnn_exhaustive_scyfi_equals_brute_force_over_all_region_sequences(seed):
    model = random_alrnn(seed)
    total = 0
    for order in (1, 2, 3, 4):
        expected = brute_force_cycles(model, order)
        found = scyfi(model, order, cycles=True)
        assert found.exhaustive  # 4^k sequences: enumerated by default
        assert len(found) == len(expected)
        for cycle, points in zip(found, expected):
            np.testing.assert_allclose(cycle.points, points, atol=1e-10)
        total += len(found)
    assert total >= 2


# ------------------------------------------------------------------ shallow PLRNNs
@pytest.mark.parametrize(("clipped", "seed", "orders"),
                         [(False, 5, (1, 2)), (True, 3, (1,)), (True, 0, (1,))])
def test_shallow_plrnn_cycles_are_true_cycles_and_heuristic_agrees(clipped, seed, orders):
    model = random_shallow(seed, clipped)
    for order in orders:
        exact = scyfi(model, order, cycles=True, exhaustive=True)
        assert len(exact) > 0
        for cycle in exact:
            assert_true_cycle(model, cycle, order)
            assert cycle.regions.shape == (order, 12 if clipped else 6)
        heuristic = scyfi(model, order, cycles=True, exhaustive=False)
        assert cycle_keys(heuristic) <= cycle_keys(exact)
        assert len(heuristic) >= len(exact) - 1


# ------------------------------------------------------------------ Newton agreement
@pytest.mark.parametrize("seed", [1, 6])
def test_scyfi_agrees_with_newton_where_both_work(seed):
    model = random_plrnn(seed, 6)
    exact = fixed_points(model)
    newton = fixed_points(model, method="newton", n_initial=64, max_iterations=300)
    assert len(newton) >= 1
    assert all(type(p) is FixedPoint for p in newton)
    for point in newton:  # every Newton root is one of SCYFI's, with the same stability
        distances = [np.linalg.norm(point.location - e.location) for e in exact]
        match = exact[int(np.argmin(distances))]
        assert min(distances) < 1e-8
        assert match.stable == point.stable
        np.testing.assert_allclose(np.sort_complex(match.eigenvalues),
                                   np.sort_complex(point.eigenvalues), atol=1e-8)


def test_scyfi_two_cycles_agree_with_newton():
    model = random_plrnn(2, 6)
    exact = find_cycles(model, 2)
    newton = find_cycles(model, 2, method="newton", n_initial=128, max_iterations=300)
    assert len(exact) == 2 and len(newton) >= 1
    for cycle in newton:
        assert any(np.allclose(cycle.points, e.points, atol=1e-8) for e in exact)


# ------------------------------------------------------------------ dispatch and errors
def test_fixed_points_and_find_cycles_dispatch_to_scyfi_for_piecewise_linear_modules():
    model = random_plrnn(6, 6)
    points = fixed_points(model)
    assert points and all(isinstance(p, PiecewiseLinearFixedPoint) for p in points)
    assert [p.code for p in points] == [p.code for p in scyfi(model)]
    cycles = find_cycles(model, 2)
    assert cycles and all(isinstance(c, PiecewiseLinearCycle) for c in cycles)
    fixed_as_cycles = find_cycles(model, 1)
    assert all(isinstance(c, Cycle) and c.period == 1 for c in fixed_as_cycles)
    assert len(fixed_as_cycles) == len(points)
    # Options reach SCYFI; Newton's own options and the map's dtype/device are not needed.
    assert fixed_points(model, exhaustive=True, dtype="float64").exhaustive
    with pytest.raises(TypeError, match="method='scyfi' needs a piecewise-linear model"):
        fixed_points(Henon(), method="scyfi")
    with pytest.raises(ValueError, match=r"unknown method 'exact'.*'auto', 'scyfi', 'newton'"):
        fixed_points(model, method="exact")


@pytest.mark.slow
def test_fitted_dsr_estimator_dispatches_to_scyfi_on_its_latent_map():
    from tsrnn.dsr import ALRNN as ALRNNEstimator
    from tsrnn.systems import Lorenz63

    data = Lorenz63().simulate(400, seed=0)
    estimator = ALRNNEstimator(n_latent=5, n_pwl=2, max_epochs=1, batches_per_epoch=2,
                               sequence_length=20, batch_size=4, random_state=0).fit(data)
    points = estimator.fixed_points()
    assert points.exhaustive and all(isinstance(p, PiecewiseLinearFixedPoint) for p in points)
    latent = copy.deepcopy(estimator.module_.latent).double()
    for point in points:
        with torch.no_grad():
            z = torch.as_tensor(point.location, dtype=torch.float64)[None]
            image = latent.step(z)[0].numpy()
        np.testing.assert_allclose(image, point.location, atol=1e-8)
        assert estimator.latent_to_data(point.location).shape == (3,)


def test_line_attractor_is_reported_as_degenerate_not_returned():
    # z1' = z1 (a line of fixed points), z2' = 0.5 z2: I - J is singular in every subregion.
    model = set_parameters(PLRNN(2).double(), A=[1.0, 0.5], W=np.zeros((2, 2)), h=[0.0, 0.0])
    with pytest.warns(UserWarning, match="continuum of fixed points"):
        points = scyfi(model)
    assert len(points) == 0
    assert len(points.degenerate) == 4 and len(points.continua) >= 1
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        scyfi(model, on_degenerate="raise")
    assert len(scyfi(model, on_degenerate="ignore").continua) >= 1


def test_bad_input_gets_clear_errors():
    model = random_plrnn(0, 5)
    with pytest.raises(ValueError, match="order must be > 0"):
        scyfi(model, 0)
    with pytest.raises(ValueError, match="unknown on_degenerate 'loud'"):
        scyfi(model, on_degenerate="loud")
    with pytest.raises(ValueError, match=r"cycles=False .* needs order=1"):
        scyfi(model, 2, cycles=False)
    with pytest.raises(TypeError, match="SCYFI applies to piecewise-linear models"):
        scyfi(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="out of reach"):
        scyfi(random_plrnn(0, 10), 3, exhaustive=True)
    with pytest.raises(ValueError, match="x0 must have 5 columns"):
        scyfi(model, exhaustive=False, x0=np.zeros((4, 3)))
    broken = set_parameters(random_plrnn(0, 5), h=[np.nan, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="contain NaN or inf"):
        scyfi(broken)


def test_search_is_reproducible_and_x0_seeds_it():
    model = random_plrnn(5, 8)
    first = scyfi(model, 2, exhaustive=False, seed=3)
    second = scyfi(model, 2, exhaustive=False, seed=3)
    assert cycle_keys(first) == cycle_keys(second) and first.n_candidates == second.n_candidates
    target = scyfi(model, exhaustive=True)[0]
    seeded = scyfi(model, exhaustive=False, x0=target.location, outer_loop_iterations=1,
                   n_chains=1)
    assert target.code in [p.code for p in seeded]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_scyfi_of_a_module_on_the_gpu_equals_its_cpu_copy():
    model = random_alrnn(2)  # one fixed point and one 2-cycle (checked on the CPU)
    on_gpu = copy.deepcopy(model).cuda()
    for order in (1, 2):
        expected = scyfi(model, order, cycles=True)
        found = scyfi(on_gpu, order, cycles=True)
        assert len(found) == len(expected) == 1
        for cycle, reference in zip(found, expected):
            np.testing.assert_allclose(cycle.points, reference.points, atol=1e-10)
            assert cycle.residual < 1e-8
