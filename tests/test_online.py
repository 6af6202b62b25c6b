"""Online (stepwise) EM: the re-shift identity, partial_fit, fit(algorithm='online')."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone

from fastem import GaussianMixture
from fastem.families.gaussian import GaussianStats as SufficientStats
from fastem.families.gaussian import reshift
from fastem.online import step_size

TRUE_MEANS = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
TRUE_WEIGHTS = np.array([0.5, 0.3, 0.2])
TRUE_COVS = np.array([[[1.0, 0.5], [0.5, 1.0]], [[2.0, 0.0], [0.0, 0.5]], [[0.5, -0.2], [-0.2, 1.0]]])


def _sample(n, seed):
    rng = np.random.default_rng(seed)
    z = rng.choice(3, size=n, p=TRUE_WEIGHTS)
    chol = np.linalg.cholesky(TRUE_COVS)
    return TRUE_MEANS[z] + np.einsum("nij,nj->ni", chol[z], rng.normal(size=(n, 2)))


def _direct_stats(kind, X, r, shift):
    """Shifted moments straight from the definition (NumPy)."""
    st = SufficientStats.zeros(kind, shift)
    for k in range(len(shift)):
        xc = X - shift[k]
        st.R[k] = r[:, k].sum()
        st.S1[k] = r[:, k] @ xc
        outer = (xc * r[:, k, None]).T @ xc
        if kind == "full":
            st.S2[k] = outer
        elif kind == "tied":
            st.S2[0] += outer
        else:
            st.S2[k, 0] = np.diag(outer)
    return st


@pytest.mark.parametrize("kind", ["full", "tied", "diag", "spherical"])
def test_reshift_equals_statistics_taken_around_the_new_shift(kind):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3)) + 1e3
    r = rng.dirichlet(np.ones(4), size=50)
    m_old, m_new = rng.normal(size=(4, 3)) + 1e3, rng.normal(size=(4, 3)) + 1e3
    moved = reshift(_direct_stats(kind, X, r, m_old), m_new)
    direct = _direct_stats(kind, X, r, m_new)
    assert_allclose(moved.S1, direct.S1, rtol=1e-9, atol=1e-9)
    assert_allclose(moved.S2, direct.S2, rtol=1e-9, atol=1e-7)
    assert_allclose(moved.shift, m_new)


def test_step_size_schedule():
    assert step_size(1, 2.0, 0.6) == pytest.approx(3.0**-0.6)
    assert step_size(0, 0.0, 1.0) == 1.0 and step_size(0, 0.5, 0.6) == 1.0  # clipped
    assert step_size(100, 2.0, 1.0) < step_size(100, 2.0, 0.6)


def _sorted(gm):
    order = np.argsort(gm.means_[:, 0] * 100 + gm.means_[:, 1])
    return gm.weights_[order], gm.means_[order], gm.covariances_[order]


def test_partial_fit_recovers_a_known_mixture():
    X = _sample(60_000, 1)
    gm = GaussianMixture(3, random_state=0)
    for batch in np.array_split(X, 60):
        gm.partial_fit(batch)
    assert gm.n_steps_ == 60 and len(gm.lower_bounds_) == 60
    weights, means, covs = _sorted(gm)
    order = np.argsort(TRUE_MEANS[:, 0] * 100 + TRUE_MEANS[:, 1])
    assert_allclose(weights, TRUE_WEIGHTS[order], atol=0.02)
    assert_allclose(means, TRUE_MEANS[order], atol=0.08)
    assert_allclose(covs, TRUE_COVS[order], atol=0.12)
    # close to the batch optimum on held-out data
    test = _sample(20_000, 2)
    batch = GaussianMixture(3, random_state=0).fit(X)
    assert gm.score(test) == pytest.approx(batch.score(test), rel=2e-3)


def test_fit_online_over_a_source_matches_batch_em(tmp_path):
    X = _sample(100_000, 3)
    np.save(tmp_path / "x.npy", X)
    online = GaussianMixture(3, random_state=0, batch_size=4096).fit(tmp_path / "x.npy", algorithm="online")
    batch = GaussianMixture(3, random_state=0).fit(X)
    assert online.n_iter_ == 1 and online.n_steps_ == 24
    assert online.score(X) == pytest.approx(batch.score(X), rel=1e-3)
    # in-memory online fit gives the same as the streamed one when the init sample is all rows
    online_mem = GaussianMixture(3, random_state=0, batch_size=4096).fit(X, algorithm="online")
    assert_allclose(online_mem.means_, online.means_, rtol=1e-12)


def test_partial_fit_after_fit_continues_and_validates():
    X = _sample(5000, 4)
    gm = GaussianMixture(3, random_state=0).fit(X)
    ll = gm.score(X)
    gm.partial_fit(X[:2000])
    assert gm.score(X) == pytest.approx(ll, rel=5e-3)
    with pytest.raises(ValueError, match="X has 3 features, but GaussianMixture is expecting 2"):
        gm.partial_fit(np.ones((10, 3)))
    with pytest.raises(ValueError, match="learning_decay"):
        GaussianMixture(3, learning_decay=0.5).partial_fit(X)
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GaussianMixture(3).partial_fit(X[:2])
    twin = clone(GaussianMixture(3, batch_size=10, learning_decay=0.9, learning_offset=5.0))
    assert twin.get_params()["learning_offset"] == 5.0 and twin.batch_size == 10


def test_online_step_keeps_parameters_finite_with_an_emptied_component():
    X = _sample(3000, 5)
    gm = GaussianMixture(4, random_state=0, means_init=np.vstack([TRUE_MEANS, [[1e3, 1e3]]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for batch in np.array_split(X, 10):
            gm.partial_fit(batch)
    assert np.all(np.isfinite(gm.means_)) and np.all(np.isfinite(gm.covariances_))
