"""Shared fixtures: small seeded mixture data sets and the covariance-type parametrization."""

from __future__ import annotations

import numpy as np
import pytest
from reference import COV_TYPES

CENTERS = np.array([[0.0, 0.0, 0.0], [4.0, 4.0, 0.0], [-4.0, 3.0, 3.0]])
#: per-cluster linear maps: correlated, anisotropic clusters
SHAPES = np.array(
    [
        [[1.0, 0.3, 0.0], [0.0, 1.0, 0.2], [0.0, 0.0, 0.8]],
        [[0.7, 0.0, 0.0], [0.4, 1.2, 0.0], [0.0, 0.3, 1.0]],
        [[1.1, 0.0, 0.5], [0.0, 0.6, 0.0], [0.0, 0.0, 1.0]],
    ]
)


def make_mixture(n_samples: int = 600, seed: int = 1234, offset: float = 0.0, spread: float = 1.0):
    """(X, labels): three correlated Gaussian clusters in 3-D, float64, C-contiguous."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CENTERS), n_samples)
    noise = np.einsum("nij,nj->ni", SHAPES[labels], rng.normal(size=(n_samples, 3)))
    X = offset + spread * CENTERS[labels] + noise
    return np.ascontiguousarray(X), labels


@pytest.fixture(scope="session")
def mixture():
    """600 x 3, three clusters about 4 standard deviations apart (some overlap)."""
    return make_mixture()


@pytest.fixture(scope="session")
def X(mixture):
    return mixture[0]


@pytest.fixture(scope="session")
def separated():
    """600 x 3, three well separated clusters (centers 3x further apart)."""
    return make_mixture(seed=7, spread=3.0)[0]


#: rows 0, 1, 2 of ``mixture`` all come from cluster 2: EM has to move the means a lot
INIT_ROWS = (0, 1, 2)


@pytest.fixture(params=COV_TYPES)
def cov_type(request):
    return request.param
