"""Parity: fastem vs the plain-NumPy reference EM and vs scikit-learn, from identical inits."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from conftest import INIT_ROWS, make_mixture
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import fastem
from fastem import GaussianMixture

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RTOL = 1e-7
ATOL = 1e-10  # for entries that are (nearly) zero, e.g. off-diagonal covariances
N_COMPONENTS = len(INIT_ROWS)


@pytest.fixture(scope="module")
def X_test():
    return make_mixture(n_samples=200, seed=99)[0]


def _fit_fastem(X, init, cov_type, n_iter, sample_weight=None, **kw):
    gm = GaussianMixture(
        N_COMPONENTS, covariance_type=cov_type, tol=0, max_iter=n_iter, **init["kwargs"], **kw
    )
    return gm.fit(X, sample_weight=sample_weight)


def _assert_params(gm, weights, means, covariances, rtol=RTOL, atol=ATOL):
    assert_allclose(gm.weights_, weights, rtol=rtol, atol=atol)
    assert_allclose(gm.means_, means, rtol=rtol, atol=atol)
    assert_allclose(gm.covariances_, covariances, rtol=rtol, atol=atol)


@pytest.mark.parametrize("n_iter", [1, 10, 50])
def test_parity_with_reference_and_sklearn(X, X_test, cov_type, n_iter):
    init = ref.explicit_init(X, INIT_ROWS, cov_type)
    gm = _fit_fastem(X, init, cov_type, n_iter)
    sk = SkGaussianMixture(
        N_COMPONENTS, covariance_type=cov_type, tol=0, max_iter=n_iter, **init["kwargs"]
    ).fit(X)
    (w, m, c), lower_bounds = ref.run_em(
        X, init["weights"], init["means"], init["covariances"], cov_type, n_iter, 1e-6
    )
    assert len(lower_bounds) == n_iter
    assert gm.n_iter_ == n_iter
    assert gm.converged_ is False  # tol=0 never converges

    for other in ((w, m, c), (sk.weights_, sk.means_, sk.covariances_)):
        _assert_params(gm, *other)
    assert gm.covariances_.shape == sk.covariances_.shape
    assert_allclose(gm.precisions_, ref.precisions_from_covariances(c, cov_type), rtol=RTOL, atol=ATOL)
    assert_allclose(gm.precisions_, sk.precisions_, rtol=RTOL, atol=ATOL)
    assert_allclose(gm.precisions_cholesky_, sk.precisions_cholesky_, rtol=RTOL, atol=ATOL)

    assert isinstance(gm.lower_bound_, float)
    assert_allclose(gm.lower_bound_, lower_bounds[-1], rtol=RTOL)
    assert_allclose(gm.lower_bound_, sk.lower_bound_, rtol=RTOL)
    assert len(gm.lower_bounds_) == n_iter
    assert_allclose(gm.lower_bounds_, lower_bounds, rtol=RTOL)
    assert_allclose(gm.lower_bounds_, sk.lower_bounds_, rtol=RTOL)

    for data in (X, X_test):
        log_prob, resp = ref.e_step(data, w, m, c, cov_type)
        assert_allclose(gm.score_samples(data), log_prob, rtol=RTOL)
        assert_allclose(gm.score_samples(data), sk.score_samples(data), rtol=RTOL)
        assert_allclose(gm.score(data), log_prob.mean(), rtol=RTOL)
        proba = gm.predict_proba(data)
        assert proba.shape == (len(data), N_COMPONENTS)
        assert_allclose(proba, resp, rtol=RTOL, atol=1e-12)
        assert_allclose(proba, sk.predict_proba(data), rtol=RTOL, atol=1e-12)
        assert_array_equal(gm.predict(data), resp.argmax(axis=1))
        assert_array_equal(gm.predict(data), sk.predict(data))


def test_parity_runs_are_not_trivial(X, cov_type):
    """Guard for the parity test: from INIT_ROWS the parameters move between 1, 10 and 50 iterations."""
    init = ref.explicit_init(X, INIT_ROWS, cov_type)
    runs = [
        ref.run_em(X, init["weights"], init["means"], init["covariances"], cov_type, n, 1e-6)[0][1]
        for n in (1, 10, 50)
    ]
    assert np.abs(runs[0] - init["means"]).max() > 0.5
    assert np.abs(runs[1] - runs[0]).max() > 1e-3
    assert np.abs(runs[2] - runs[1]).max() > 1e-5  # far above the 1e-7 tolerance


def test_max_iter_zero_returns_the_initial_parameters(X, cov_type):
    init = ref.explicit_init(X, INIT_ROWS, cov_type)
    gm = _fit_fastem(X, init, cov_type, 0)
    _assert_params(gm, init["weights"], init["means"], init["covariances"], rtol=1e-12, atol=1e-14)
    assert gm.n_iter_ == 0
    assert gm.lower_bounds_ == []


@pytest.mark.parametrize("n_iter", [1, 10, 50])
def test_sample_weight_parity_with_reference(X, X_test, cov_type, n_iter):
    rng = np.random.default_rng(5)
    sw = rng.uniform(0.05, 4.0, size=len(X))
    sw[rng.choice(len(X), size=60, replace=False)] = 0.0
    init = ref.explicit_init(X, INIT_ROWS, cov_type)
    gm = GaussianMixture(N_COMPONENTS, covariance_type=cov_type, tol=0, max_iter=n_iter, **init["kwargs"])
    gm.fit(X, sample_weight=sw)
    (w, m, c), lower_bounds = ref.run_em(
        X, init["weights"], init["means"], init["covariances"], cov_type, n_iter, 1e-6, sample_weight=sw
    )
    _assert_params(gm, w, m, c)
    assert_allclose(gm.lower_bounds_, lower_bounds, rtol=RTOL)
    assert_allclose(gm.lower_bound_, lower_bounds[-1], rtol=RTOL)
    # the weights matter: the unweighted run ends elsewhere
    (_, m_unweighted, _), _ = ref.run_em(
        X, init["weights"], init["means"], init["covariances"], cov_type, n_iter, 1e-6
    )
    assert not np.allclose(gm.means_, m_unweighted, rtol=1e-4)
    log_prob, resp = ref.e_step(X_test, w, m, c, cov_type)
    assert_allclose(gm.score_samples(X_test), log_prob, rtol=RTOL)
    assert_allclose(gm.predict_proba(X_test), resp, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
@pytest.mark.parametrize("weighted", [False, True])
def test_default_init_is_what_em_starts_from(X, init_params, weighted):
    """fit(max_iter=n) == reference EM started from fit(max_iter=0)'s parameters (same seed)."""
    sw = np.random.default_rng(3).uniform(0.5, 2.0, size=len(X)) if weighted else None
    common = dict(n_components=3, covariance_type="full", init_params=init_params, random_state=11)
    start = GaussianMixture(max_iter=0, **common).fit(X, sample_weight=sw)
    assert np.all(np.isfinite(start.covariances_))
    gm = GaussianMixture(max_iter=8, tol=0, **common).fit(X, sample_weight=sw)
    (w, m, c), lower_bounds = ref.run_em(
        X, start.weights_, start.means_, start.covariances_, "full", 8, 1e-6, sample_weight=sw
    )
    _assert_params(gm, w, m, c)
    assert_allclose(gm.lower_bounds_, lower_bounds, rtol=RTOL)


def test_float32_input_is_used_without_copy(X, monkeypatch):
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    seen = []

    class RecordingExecutor(fastem._executor.ArrayExecutor):
        def __init__(self, X, sample_weight=None, family=None):
            seen.append(X)
            super().__init__(X, sample_weight, family)

    monkeypatch.setattr(fastem._mixture, "ArrayExecutor", RecordingExecutor)
    init = ref.explicit_init(X, INIT_ROWS, "full")
    gm = _fit_fastem(X32, init, "full", 2)
    assert seen, "fit did not go through ArrayExecutor"
    assert seen[0].dtype == np.float32
    assert np.shares_memory(seen[0], X32)
    assert gm.means_.dtype == np.float64


@pytest.mark.parametrize("n_iter", [1, 50])
def test_float32_input_agrees_with_float64(X, cov_type, n_iter):
    """float32 data gives the float64 result to float32 accuracy (1e-4 relative).

    (n_iter=1 and a converged run: mid-way, EM amplifies any perturbation; for 'tied'
    at 10 iterations the float32 rounding alone moves the covariance by ~1e-4.)
    """
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    init = ref.explicit_init(X, INIT_ROWS, cov_type)
    gm = _fit_fastem(X32, init, cov_type, n_iter)
    (w, m, c), lower_bounds = ref.run_em(
        X, init["weights"], init["means"], init["covariances"], cov_type, n_iter, 1e-6
    )
    _assert_params(gm, w, m, c, rtol=1e-4, atol=1e-6)
    assert_allclose(gm.lower_bounds_, lower_bounds, rtol=1e-4)
    log_prob, resp = ref.e_step(X, w, m, c, cov_type)
    assert_allclose(gm.score_samples(X32), log_prob, rtol=1e-4)
    assert_allclose(gm.predict_proba(X32), resp, rtol=1e-4, atol=1e-6)
    top2 = np.sort(resp, axis=1)[:, -2:]
    confident = top2[:, 1] - top2[:, 0] > 1e-3  # labels are well defined there
    assert confident.sum() > 300
    assert_array_equal(gm.predict(X32)[confident], resp.argmax(axis=1)[confident])


def test_integer_sample_weight_equals_duplicated_rows(X, cov_type):
    rng = np.random.default_rng(17)
    counts = np.ones(len(X), dtype=int)
    counts[rng.choice(len(X), size=150, replace=False)] = 2
    counts[rng.choice(np.flatnonzero(counts == 1), size=40, replace=False)] = 0
    X_rep = np.repeat(X, counts, axis=0)
    init = ref.explicit_init(X, INIT_ROWS, cov_type)
    weighted = _fit_fastem(X, init, cov_type, 20, sample_weight=counts.astype(float))
    repeated = _fit_fastem(X_rep, init, cov_type, 20)
    _assert_params(weighted, repeated.weights_, repeated.means_, repeated.covariances_, rtol=1e-9, atol=1e-12)
    assert_allclose(weighted.lower_bounds_, repeated.lower_bounds_, rtol=1e-10)
    assert_allclose(weighted.score_samples(X), repeated.score_samples(X), rtol=1e-9)
    # and an all-ones weight vector is the unweighted fit, bit for bit
    ones = _fit_fastem(X, init, cov_type, 20, sample_weight=np.ones(len(X)))
    plain = _fit_fastem(X, init, cov_type, 20)
    assert_array_equal(ones.means_, plain.means_)
    assert_array_equal(ones.covariances_, plain.covariances_)
    assert_array_equal(ones.lower_bounds_, plain.lower_bounds_)


def test_convergence_warning_only_when_not_converged(X):
    init = ref.explicit_init(X, INIT_ROWS, "full")
    with pytest.warns(ConvergenceWarning):
        _fit_fastem(X, init, "full", 3)
    gm = GaussianMixture(3, tol=1e-3, max_iter=500, **init["kwargs"]).fit(X)
    assert gm.converged_ is True
    assert gm.n_iter_ < 500
    assert abs(gm.lower_bounds_[-1] - gm.lower_bounds_[-2]) < 1e-3


def _random_mixture(n_samples, n_features, n_components=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(n_components, n_features))
    mixing = rng.normal(size=(n_features, n_features)) * 0.3 + np.eye(n_features)
    labels = rng.integers(0, n_components, n_samples)
    return centers[labels] + rng.normal(size=(n_samples, n_features)) @ mixing


@pytest.mark.parametrize("n_features", [1, 2, 5, 8])
def test_parity_in_other_dimensions(cov_type, n_features):
    """Odd/even and >4 feature counts take other paths through the unrolled kernel loops."""
    X = _random_mixture(400, n_features, seed=n_features)
    init = ref.explicit_init(X, INIT_ROWS, cov_type)
    gm = _fit_fastem(X, init, cov_type, 6)
    sk = SkGaussianMixture(N_COMPONENTS, covariance_type=cov_type, tol=0, max_iter=6, **init["kwargs"]).fit(X)
    (w, m, c), lower_bounds = ref.run_em(
        X, init["weights"], init["means"], init["covariances"], cov_type, 6, 1e-6
    )
    _assert_params(gm, w, m, c)
    _assert_params(gm, sk.weights_, sk.means_, sk.covariances_)
    assert_allclose(gm.lower_bounds_, lower_bounds, rtol=RTOL)
    log_prob, resp = ref.e_step(X, w, m, c, cov_type)
    assert_allclose(gm.score_samples(X), log_prob, rtol=RTOL)
    assert_allclose(gm.predict_proba(X), resp, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_parity_over_several_row_blocks(cov_type, weighted):
    """More rows than fastem.BLOCK_ROWS, and not a multiple of the block or tile size."""
    n = 2 * fastem.BLOCK_ROWS + 1001
    X = _random_mixture(n, 3, seed=42)
    sw = np.random.default_rng(1).uniform(0.0, 2.0, size=n) if weighted else None
    init = ref.explicit_init(X, INIT_ROWS, cov_type)
    gm = _fit_fastem(X, init, cov_type, 5, sample_weight=sw)
    (w, m, c), lower_bounds = ref.run_em(
        X, init["weights"], init["means"], init["covariances"], cov_type, 5, 1e-6, sample_weight=sw
    )
    _assert_params(gm, w, m, c)
    assert_allclose(gm.lower_bounds_, lower_bounds, rtol=RTOL)
    log_prob, resp = ref.e_step(X, w, m, c, cov_type)
    assert_allclose(gm.score_samples(X), log_prob, rtol=RTOL)
    assert_allclose(gm.predict_proba(X), resp, rtol=RTOL, atol=1e-12)
    assert_array_equal(gm.predict(X), resp.argmax(axis=1))


@pytest.mark.parametrize("float32", [False, True])
def test_reused_block_partials_are_zeroed_by_the_kernels(cov_type, float32):
    """Inside a fit, passes reuse one buffer for their per-block partials without zeroing it:
    the kernels zero each block's slots. A buffer left full of NaN by an earlier pass (an
    enclosing scope, which the fit shares) must not change the fit by a bit."""
    from fastem._kernels import _blocks

    X = _random_mixture(2 * fastem.BLOCK_ROWS + 1001, 3, seed=42)
    if float32:
        X = X.astype(np.float32)
    init = ref.explicit_init(X, INIT_ROWS, cov_type)
    kw = {"accumulation": "float32"} if float32 else {}
    fresh = _fit_fastem(X, init, cov_type, 3, **kw)
    assert _blocks._partials.buffer is None  # released when the fit ends
    with _blocks.reused_block_partials():
        _blocks.block_partials((100_000,))[0][:] = np.nan
        poisoned = _blocks._partials.buffer
        reused = _fit_fastem(X, init, cov_type, 3, **kw)
        assert _blocks._partials.buffer is poisoned  # large enough: the fit's passes used it
    for name in ("weights_", "means_", "covariances_", "lower_bounds_"):
        assert_array_equal(getattr(reused, name), getattr(fresh, name))


@pytest.mark.parametrize("scale", [1e-20, 1e-3, 1e3])
def test_uniform_sample_weight_scale_does_not_matter(X, cov_type, scale):
    """EM with weights c * w is EM with w: every statistic is a ratio of weighted sums."""
    init = ref.explicit_init(X, INIT_ROWS, cov_type)
    unit = _fit_fastem(X, init, cov_type, 20, sample_weight=np.ones(len(X)))
    scaled = _fit_fastem(X, init, cov_type, 20, sample_weight=np.full(len(X), scale))
    _assert_params(scaled, unit.weights_, unit.means_, unit.covariances_, rtol=1e-10, atol=1e-13)
    assert_allclose(scaled.lower_bounds_, unit.lower_bounds_, rtol=1e-12)


def test_float32_far_point_scores_like_float64(X):
    """A float32 query far from every component: finite, and equal to the float64 answer."""
    gm = GaussianMixture(3, random_state=0).fit(X)
    far = np.array([[1e20, 0.0, 0.0], [0.0, 0.0, 0.0]])  # both exactly representable in float32
    log_prob64 = gm.score_samples(far)
    assert np.all(np.isfinite(log_prob64))
    log_prob32 = gm.score_samples(far.astype(np.float32))
    assert_allclose(log_prob32, log_prob64, rtol=1e-4)
    proba32 = gm.predict_proba(far.astype(np.float32))
    assert np.all(np.isfinite(proba32))
    assert_allclose(proba32, gm.predict_proba(far), rtol=1e-4, atol=1e-6)
    assert_array_equal(gm.predict(far.astype(np.float32)), gm.predict(far))
