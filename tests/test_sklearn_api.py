"""scikit-learn compatibility: estimator checks, meta-estimators, sample/bic/aic, restarts, warm start."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from reference import COV_TYPES
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastem import GaussianMixture


@parametrize_with_checks([GaussianMixture()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _sklearn_twin(gm, **kw):
    """An sklearn GaussianMixture carrying exactly the fitted parameters of ``gm``."""
    sk = SkGaussianMixture(gm.n_components, covariance_type=gm.covariance_type, **kw)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        setattr(sk, name, getattr(gm, name).copy())
    sk.converged_ = gm.converged_
    sk.n_features_in_ = gm.n_features_in_
    return sk


def test_clone(X):
    gm = GaussianMixture(3, covariance_type="diag", tol=1e-4, n_jobs=1, random_state=4).fit(X)
    twin = clone(gm)
    assert twin is not gm
    assert twin.get_params() == gm.get_params()
    assert not hasattr(twin, "means_")
    assert_array_equal(twin.fit(X).means_, gm.means_)


def test_pipeline(X):
    pipe = Pipeline([("scale", StandardScaler()), ("gm", GaussianMixture(2, random_state=0))]).fit(X)
    Xs = StandardScaler().fit_transform(X)
    direct = GaussianMixture(2, random_state=0).fit(Xs)
    assert_array_equal(pipe.named_steps["gm"].means_, direct.means_)
    assert_array_equal(pipe.predict(X), direct.predict(Xs))
    assert_allclose(pipe.score(X), direct.score(Xs), rtol=1e-12)
    assert_allclose(pipe.score_samples(X), direct.score_samples(Xs), rtol=1e-12)


def test_grid_search_uses_score(separated):
    search = GridSearchCV(GaussianMixture(random_state=0), {"n_components": [1, 2, 3]}, cv=3)
    search.fit(separated)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores))
    assert scores[0] < scores[1] < scores[2]
    assert search.best_params_ == {"n_components": 3}
    assert search.best_estimator_.means_.shape == (3, 3)


@pytest.mark.parametrize("random_state", [0, 123])
def test_sample_matches_sklearn(X, cov_type, random_state):
    gm = GaussianMixture(3, covariance_type=cov_type, random_state=random_state).fit(X)
    sk = _sklearn_twin(gm, random_state=random_state)
    Xs, ys = gm.sample(500)
    Xk, yk = sk.sample(500)
    assert Xs.shape == (500, 3)
    assert_array_equal(Xs, Xk)
    assert_array_equal(ys, yk)
    assert ys.dtype == yk.dtype
    # the same random_state gives the same draws on every call
    assert_array_equal(gm.sample(500)[0], Xs)
    # and the draws follow the fitted components
    for k in range(3):
        if np.sum(ys == k) > 50:
            assert_allclose(Xs[ys == k].mean(axis=0), gm.means_[k], atol=0.5)


def test_bic_aic_match_sklearn(X, cov_type):
    gm = GaussianMixture(3, covariance_type=cov_type, random_state=0).fit(X)
    sk = _sklearn_twin(gm)
    assert_allclose(gm.score_samples(X), sk.score_samples(X), rtol=1e-10)
    assert_allclose(gm.bic(X), sk.bic(X), rtol=1e-10)
    assert_allclose(gm.aic(X), sk.aic(X), rtol=1e-10)
    n, d, k = X.shape[0], X.shape[1], 3
    cov_params = {"full": k * d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": k * d, "spherical": k}
    n_params = cov_params[cov_type] + k * d + k - 1
    total = gm.score_samples(X).sum()
    assert_allclose(gm.bic(X), -2 * total + n_params * np.log(n), rtol=1e-12)
    assert_allclose(gm.aic(X), -2 * total + 2 * n_params, rtol=1e-12)


def test_fit_predict_equals_fit_then_predict(X, cov_type):
    sw = np.random.default_rng(0).uniform(0.5, 1.5, size=len(X))
    for weights in (None, sw):
        gm = GaussianMixture(3, covariance_type=cov_type, random_state=7, max_iter=5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = gm.fit_predict(X, sample_weight=weights)
            assert_array_equal(labels, clone(gm).fit(X, sample_weight=weights).predict(X))
        assert_array_equal(labels, gm.predict(X))
        assert_array_equal(labels, gm.predict_proba(X).argmax(axis=1))
        assert len(np.unique(labels)) == 3


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_warm_start_continues_from_previous_solution(X, cov_type):
    common = dict(n_components=3, covariance_type=cov_type, tol=0, random_state=2, init_params="random")
    one_go = GaussianMixture(max_iter=12, **common).fit(X)
    warm = GaussianMixture(max_iter=5, warm_start=True, **common).fit(X)
    first_bounds = list(warm.lower_bounds_)
    warm.set_params(max_iter=7)
    warm.fit(X)
    assert_array_equal(warm.means_, one_go.means_)
    assert_array_equal(warm.covariances_, one_go.covariances_)
    assert_array_equal(warm.weights_, one_go.weights_)
    assert warm.lower_bounds_ == one_go.lower_bounds_[5:]
    assert first_bounds == one_go.lower_bounds_[:5]
    # a cold second fit starts over instead
    cold = GaussianMixture(max_iter=5, **common).fit(X).set_params(max_iter=7).fit(X)
    assert not np.array_equal(cold.means_, one_go.means_)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_n_init_keeps_the_best_lower_bound(X):
    common = dict(n_components=6, init_params="random", max_iter=4, tol=0)
    best = GaussianMixture(n_init=5, random_state=np.random.RandomState(21), **common).fit(X)
    # the restarts draw from one RandomState in turn: replay them as separate fits
    rs = np.random.RandomState(21)
    singles = [GaussianMixture(n_init=1, random_state=rs, **common).fit(X) for _ in range(5)]
    bounds = [g.lower_bound_ for g in singles]
    assert len(set(bounds)) == 5  # the restarts really differ
    winner = singles[int(np.argmax(bounds))]
    assert best.lower_bound_ == max(bounds)
    assert best.lower_bound_ > min(bounds)
    assert_array_equal(best.means_, winner.means_)
    assert best.lower_bounds_ == winner.lower_bounds_
    assert best.n_iter_ == winner.n_iter_


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_reproducible_from_random_state(X, init_params):
    def fit(seed):
        return GaussianMixture(4, init_params=init_params, random_state=seed, max_iter=20).fit(X)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a, b, c = fit(0), fit(0), fit(1)
    assert_array_equal(a.means_, b.means_)
    assert_array_equal(a.covariances_, b.covariances_)
    assert a.lower_bounds_ == b.lower_bounds_
    assert not np.array_equal(a.means_, c.means_)


def test_fitted_attributes_follow_sklearn_conventions(X):
    for cov_type in COV_TYPES:
        gm = GaussianMixture(3, covariance_type=cov_type, random_state=0).fit(X)
        sk = SkGaussianMixture(3, covariance_type=cov_type, random_state=0).fit(X)
        for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
            assert getattr(gm, name).shape == getattr(sk, name).shape, (cov_type, name)
        assert gm.n_features_in_ == 3
        assert isinstance(gm.converged_, bool) and isinstance(gm.n_iter_, int)
        assert gm.lower_bound_ == gm.lower_bounds_[-1]
        # precisions_ is the inverse of covariances_, precisions_cholesky_ its factor
        if cov_type in ("full", "tied"):
            eye = np.broadcast_to(np.eye(3), gm.covariances_.shape)
            assert_allclose(gm.precisions_ @ gm.covariances_, eye, atol=1e-10)
            pc = gm.precisions_cholesky_
            assert_allclose(pc @ np.swapaxes(pc, -1, -2), gm.precisions_, rtol=1e-12)
            assert_array_equal(np.tril(pc, -1), 0.0)  # upper triangular, as in sklearn
        else:
            assert_allclose(gm.precisions_ * gm.covariances_, 1.0, rtol=1e-12)
            assert_allclose(gm.precisions_cholesky_**2, gm.precisions_, rtol=1e-12)
        assert_allclose(gm.score(X), sk.score(X), rtol=1e-3)


def test_verbose_output(X, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        GaussianMixture(2, verbose=2, verbose_interval=2, max_iter=4, tol=0, random_state=0).fit(X)
    out = capsys.readouterr().out
    assert "Initialization 0" in out
    assert "Iteration 2" in out and "Iteration 4" in out and "ll change" in out
    assert "Iteration 3" not in out
    GaussianMixture(2, random_state=0).fit(X)
    assert capsys.readouterr().out == ""
