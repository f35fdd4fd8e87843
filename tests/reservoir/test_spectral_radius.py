"""The exact spectral radius of sparse reservoir matrices (ARPACK from a power-iterated start
vector) against LAPACK's dense eigenvalues."""

import numpy as np
import pytest
import scipy.sparse as sparse

from tsrnn.reservoir import matrices
from tsrnn.reservoir.matrices import spectral_radius


def random_sparse(seed, n, connectivity, distribution):
    rng = np.random.default_rng(seed)
    nonzeros = round(connectivity * n * n)
    rows, columns = np.divmod(rng.choice(n * n, size=nonzeros, replace=False), n)
    values = (rng.standard_normal(nonzeros) if distribution == "normal"
              else rng.uniform(-1.0, 1.0, nonzeros))
    return sparse.csr_array((values, (rows, columns)), shape=(n, n))


# 18 matrices whose outermost eigenvalues crowd together (a disc of eigenvalues), from 5 to
# 40 nonzeros per row: the largest modulus to 1e-10 relative every time.
CASES = [(seed, n, c, d) for seed in range(3)
         for n, c, d in [(300, 0.05, "normal"), (400, 0.0125, "normal"),
                         (500, 0.02, "uniform"), (600, 0.02, "normal"),
                         (350, 0.1, "uniform"), (450, 0.03, "normal")]]


@pytest.mark.parametrize("seed, n, connectivity, distribution", CASES)
def test_sparse_spectral_radius_equals_the_dense_one(seed, n, connectivity, distribution):
    matrix = random_sparse(seed, n, connectivity, distribution)
    exact = np.abs(np.linalg.eigvals(matrix.toarray())).max()
    assert spectral_radius(matrix) == pytest.approx(exact, rel=1e-10)


def test_the_start_vector_matters_only_for_speed(monkeypatch):
    # Without the power steps (ARPACK from the random start itself) the radius is the same.
    matrix = random_sparse(5, 500, 0.02, "normal")
    prepared = spectral_radius(matrix)
    monkeypatch.setattr(matrices, "_POWER_STEPS", 0)
    assert spectral_radius(matrix) == pytest.approx(prepared, rel=1e-10)


def test_a_dominant_eigenvector_orthogonal_to_ones_is_found():
    # [[1, -1], [-1, 1]] has eigenvalue 2 on (1, -1), which a start from ones never sees:
    # the radius read 0.61 (the rest's) before the start vector became a random one.
    block = sparse.csr_array(np.array([[1.0, -1.0], [-1.0, 1.0]]))
    rest = random_sparse(2, 398, 0.01, "normal") * 0.05
    matrix = sparse.block_diag([block, rest], format="csr")
    assert spectral_radius(matrix) == pytest.approx(2.0, rel=1e-10)


def test_nilpotent_matrix_has_radius_zero():
    # Strictly lower triangular: the power steps annihilate the start vector (after 27
    # steps here). ARPACK alone returned 0.14 for it (the eigenvalues of a long Jordan chain
    # perturbed by round-off); the dense solve gives 0.
    rng = np.random.default_rng(6)
    matrix = sparse.csr_array(np.tril(rng.normal(size=(300, 300)) * (rng.random((300, 300))
                                                                     < 0.05), -1))
    assert spectral_radius(matrix) == 0.0
    with pytest.raises(ValueError, match="nilpotent"):
        matrices.recurrent_matrix(300, 0.9, 1e-5, rng)
