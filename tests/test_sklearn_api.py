"""scikit-learn compatibility: estimator checks, meta-estimators, sample/bic/aic, restarts, warm start."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from reference import COV_TYPES
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks

import fastem
from fastem import GaussianMixture


@parametrize_with_checks([GaussianMixture()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


#: check_estimator's one skip here depends on the environment, not on fastem: its array API
#: check needs SCIPY_ARRAY_API=1 set before SciPy is imported
ENVIRONMENT_SKIPS = {"check_array_api_input": "SCIPY_ARRAY_API is not set"}


# Only these two: check_estimator fits on random real-valued data (uniform floats and their
# integer casts, with no tag to ask for counts), which Poisson and multinomial mixtures refuse
# (non-integer counts) and a Bernoulli mixture too (values other than 0 and 1). They refuse it
# by design, with the row named, so their checks could only fail on the data.
@pytest.mark.parametrize(
    ("estimator", "expected_failed"),
    [
        pytest.param(GaussianMixture(), {}, id="GaussianMixture"),
        pytest.param(
            fastem.VonMisesFisherMixture(normalize=True),
            # the int64/int32 casts of check_estimators_dtypes' uniform [0, 3) data contain an
            # all-zero row, which has no direction: refused by design (asserted below)
            {"check_estimators_dtypes": "an all-zero row has no direction"},
            id="VonMisesFisherMixture",
        ),
    ],
)
def test_check_estimator_passes_without_warnings(estimator, expected_failed):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = check_estimator(estimator, expected_failed_checks=expected_failed, on_skip=None)
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    assert isinstance(estimator, BaseEstimator)
    by_status = {}
    for r in results:
        by_status.setdefault(r["status"], []).append(r)
    assert set(by_status) <= {"passed", "skipped", "xfail"}, [
        (r["check_name"], r["exception"]) for r in by_status.get("failed", [])
    ]
    for r in by_status.get("skipped", []):
        assert ENVIRONMENT_SKIPS.get(r["check_name"], "<not expected>") in str(r["exception"])
    assert {r["check_name"] for r in by_status.get("xfail", [])} == set(expected_failed)
    for r in by_status.get("xfail", []):  # failing for the stated reason, not another one
        assert "row of norm 0" in str(r["exception"])
    assert len(by_status["passed"]) >= 40


def test_sklearn_base_estimator_whatever_the_import_order():
    """fastem imports no scikit-learn; its estimators become BaseEstimator instances once it is loaded."""
    code = textwrap.dedent(
        """
        import sys, warnings
        import fastem
        assert not any(m == "sklearn" or m.startswith("sklearn.") for m in sys.modules), "sklearn imported"
        gm = fastem.GaussianMixture()  # created before scikit-learn is imported
        from sklearn.base import BaseEstimator, clone
        from sklearn.utils.estimator_checks import check_estimator
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_estimator(gm, on_skip=None)
        assert isinstance(gm, BaseEstimator) and isinstance(fastem.PoissonMixture(), BaseEstimator)
        assert isinstance(clone(gm), fastem.GaussianMixture) and repr(gm) == "GaussianMixture()"
        assert hasattr(fastem.VonMisesFisherMixture, "set_fit_request")  # what BaseEstimator subclasses get
        """
    )
    env = {**os.environ, "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS", "2")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


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


# ----------------------------------------------------------------------------- collapsed components
def _setting_best_params_case():
    """scikit-learn's test_gaussian_mixture_setting_best_params (#18216): two components on one point."""
    X = np.random.RandomState(0).uniform(size=(30, 3))
    means = np.array(  # scikit-learn's means and precisions; its weights are these fractions up to rounding
        [[0.670637869618158, 0.21038256107384043, 0.12892629765485303],
         [0.09394051075844147, 0.5759464955561779, 0.929296197576212],
         [0.5033230372781258, 0.9569852381759425, 0.08654043447295741],
         [0.18578301420435747, 0.5531158970919143, 0.19388943970532435],
         [0.4548589928173794, 0.35182513658825276, 0.568146063202464],
         [0.609279894978321, 0.7929063819678847, 0.9620097270828052]]
    )  # fmt: skip
    precisions = np.array([999999.999604483, 999999.9990869573, 553.7603944542167, 204.78596008931834,
                           15.867423501783637, 85.4595728389735])  # fmt: skip
    weights = np.array([1, 1, 2, 2, 21, 3]) / 30
    kw = dict(n_components=6, covariance_type="spherical", reg_covar=0, weights_init=weights,
              means_init=means, precisions_init=precisions)  # fmt: skip
    return X, kw


@pytest.mark.parametrize("n_init", [1, 3])
def test_partly_collapsed_m_step_keeps_the_last_scored_parameters(n_init):
    X, kw = _setting_best_params_case()
    with pytest.warns(Warning) as caught:
        gm = GaussianMixture(max_iter=50, n_init=n_init, **kw).fit(X)
    messages = [(w.category, str(w.message)) for w in caught]
    assert any(
        c is fastem.DegenerateComponentWarning and "EM stopped at iteration 1" in m and "[0, 1]" in m
        for c, m in messages
    )
    assert any(c is ConvergenceWarning and "components [0, 1] collapsed" in m for c, m in messages)
    # the run ends at the parameters its first E-step scored: the given ones, and their log-likelihood
    assert not gm.converged_ and gm.n_iter_ == 1
    assert_allclose(gm.means_, kw["means_init"], rtol=0)
    assert_allclose(gm.precisions_, kw["precisions_init"], rtol=1e-12)
    assert_allclose(gm.weights_, kw["weights_init"], rtol=0)
    sk = SkGaussianMixture(max_iter=1, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(X)
    assert_allclose(gm.lower_bounds_, sk.lower_bounds_, rtol=1e-12)  # scikit-learn scores the same E-step
    assert gm.lower_bound_ == gm.lower_bounds_[-1]
    assert_allclose(gm.score(X), gm.lower_bound_, rtol=1e-12)


class _Stats:
    def __init__(self, params):
        self.params = params
        self.mean_log_likelihood = float(params)


def _restarts(n_init, fail, max_iter=3):
    """fit_restarts on a fake family: run i's parameters are i; ``fail(i)`` is raised by its M-step."""
    from fastem._em import fit_restarts

    def m_step(stats):
        if fail(stats.params) is not None:
            raise fail(stats.params)
        return stats.params, []

    return fit_restarts(_Stats, m_step, lambda i: i, n_init=n_init, tol=0.5, max_iter=max_iter)


def test_failed_runs_are_skipped_when_another_run_gives_a_result():
    from fastem._em import CollapsedComponents

    def whole(i):  # run 2 (the best lower bound) collapses entirely
        return CollapsedComponents("all collapsed", [0, 1], 2) if i == 2 else None

    with pytest.warns(
        fastem.DegenerateComponentWarning, match=r"Initializations \[2\] failed.*all collapsed"
    ):
        best = _restarts(3, whole)
    assert best.params == 1 and best.converged and best.collapsed is None
    with pytest.raises(CollapsedComponents, match="all collapsed"):  # nothing else to keep: raise
        _restarts(1, lambda i: CollapsedComponents("all collapsed"))

    def partly(i):  # run 2 loses one of its two components at its first M-step
        return CollapsedComponents("one collapsed", [1], 2) if i == 2 else None

    with pytest.warns(fastem.DegenerateComponentWarning, match=r"iteration 1 of initialization 2.*\[1\]"):
        best = _restarts(3, partly)
    assert best.params == 2 and best.n_iter == 1 and not best.converged and best.collapsed == [1]
    assert best.lower_bounds == [2.0]
