"""StudentTMixture: ECM against a plain-NumPy reference, streaming, model files and robustness."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import reference_student_t as ref
from numpy.testing import assert_allclose, assert_array_equal

import fastem
from fastem import BLOCK_ROWS, GaussianMixture, StudentTMixture
from fastem.families.student_t import DOF_MAX, StudentTFamily, _dof_constant, solve_dof
from fastem.sources import NpySource

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

K, D = 3, 3
CENTRES = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 1.0], [0.0, 7.0, -2.0]])


def t_data(n_per: int, seed: int, dof=(3.0, 6.0, 15.0)) -> np.ndarray:
    rng = np.random.RandomState(seed)
    A = [np.eye(D), np.array([[1.0, 0.5, 0.0], [0.0, 0.7, 0.2], [0.0, 0.0, 1.5]]), np.diag([0.5, 2.0, 1.0])]
    parts = []
    for k in range(K):
        z = rng.standard_normal((n_per, D)) @ A[k]
        tau = rng.gamma(dof[k] / 2, 2 / dof[k], size=n_per)
        parts.append(CENTRES[k] + z / np.sqrt(tau)[:, None])
    return np.vstack(parts)[rng.permutation(K * n_per)]


@pytest.fixture(scope="module")
def X():
    return t_data(400, 0)


def initial(X, kind):
    """Deliberately rough initial parameters: three data points, unit-ish scales, unequal nu."""
    means = X[[0, 1, 2]] * 0.5 + CENTRES * 0.5
    cov = np.array([np.eye(D) * s for s in (1.0, 2.0, 1.5)]) if kind == "full" else np.full((K, D), 1.5)
    prec = np.linalg.inv(cov) if kind == "full" else 1.0 / cov
    dof = np.array([2.0, 5.0, 30.0])
    return (np.array([0.3, 0.3, 0.4]), means, cov, dof), dict(
        weights_init=[0.3, 0.3, 0.4], means_init=means, precisions_init=prec, degrees_of_freedom_init=dof
    )


@pytest.mark.parametrize("n_iter", [1, 10, 50])
@pytest.mark.parametrize("kind", ["full", "diag"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fix", [False, True])
def test_matches_reference(X, n_iter, kind, weighted, fix):
    sw = np.random.RandomState(1).uniform(0.2, 3.0, X.shape[0]) if weighted else None
    ref_init, kwargs = initial(X, kind)
    tm = StudentTMixture(
        K, covariance_type=kind, tol=0, max_iter=n_iter, fix_degrees_of_freedom=fix, **kwargs
    )
    tm.fit(X, sample_weight=sw)
    (w, m, c, nu), lls = ref.ecm(X, sw, ref_init, n_iter, kind, 1e-6, fix)
    assert tm.n_iter_ == n_iter
    scale = np.abs(X).max()
    assert_allclose(tm.weights_, w, rtol=1e-10, atol=0)
    assert_allclose(tm.means_, m, rtol=1e-10, atol=1e-12 * scale)
    assert_allclose(tm.covariances_, c, rtol=1e-10, atol=1e-12 * scale**2)
    assert_allclose(tm.degrees_of_freedom_, nu, rtol=1e-10, atol=0)
    assert_allclose(tm.lower_bounds_, lls, rtol=1e-10, atol=0)
    if fix:
        assert_array_equal(tm.degrees_of_freedom_, kwargs["degrees_of_freedom_init"])
    # the reported log-likelihood is the reference's at the fitted parameters
    logp, _ = ref.log_t_densities(X, m, c, nu, kind)
    expected = np.log(np.exp(logp) @ w)
    assert_allclose(tm.score_samples(X), expected, rtol=1e-10, atol=1e-12)
    assert_allclose(tm.predict_proba(X).sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("kind", ["full", "diag"])
def test_log_likelihood_never_decreases(X, kind):
    tm = StudentTMixture(K, covariance_type=kind, tol=0, max_iter=150, random_state=0).fit(X)
    lb = np.asarray(tm.lower_bounds_)
    assert np.all(np.diff(lb) >= -1e-12 * np.abs(lb[1:]))
    assert lb[-1] - lb[0] > 0.01  # it did move
    # the fitted degrees of freedom are of the generating order (3, 6, 15), not the Gaussian limit
    assert np.all((tm.degrees_of_freedom_ > 1.0) & (tm.degrees_of_freedom_ < 100.0))


def test_dof_solver_and_cap_warning(X):
    # the root solves the equation to rounding
    for c in (-0.5, -0.05, -1e-3):
        nu, held = solve_dof(c)
        assert held == 0
        assert abs(np.log(nu / 2) - fastem_digamma(nu / 2) + c) < 1e-12
    assert solve_dof(-1e-15) == (DOF_MAX, 1)
    # an M-step whose root lies beyond the Gaussian limit holds nu at 1e6 and says so
    fam = StudentTFamily("diag")
    _, kwargs = initial(X, "diag")
    arrays = {k: np.asarray(v, dtype=float) for k, v in kwargs.items()}
    params = fam.initial_params(X, None, n_components=K, init_params="kmeans",
                                random_state=np.random.RandomState(0), **arrays)  # fmt: skip
    stats = fam.zero_stats(params)
    fam.accumulate(X, None, params, stats)
    stats.T[0] = stats.R[0] * (-1.0 - _dof_constant(stats.dof[:1], D)[0] - 1e-14)
    with pytest.warns(fastem.DegenerateParameterWarning, match="Gaussian limit"):
        new, _ = fam.m_step(stats)
    assert new.dof[0] == DOF_MAX


def fastem_digamma(x):
    from scipy.special import digamma

    return digamma(x)


@pytest.mark.parametrize("kind", ["full", "diag"])
def test_streaming_equals_in_memory(tmp_path, kind):
    X = t_data(BLOCK_ROWS + 700, 3)  # 3 * 4796 rows: several blocks, a ragged end
    sw = np.random.RandomState(2).uniform(0.5, 2.0, X.shape[0])
    path = tmp_path / "x.npy"
    np.save(path, X)
    _, kwargs = initial(X, kind)
    est = dict(covariance_type=kind, tol=0, max_iter=5, **kwargs)
    mem = StudentTMixture(K, **est).fit(X, sample_weight=sw)
    for chunk in (BLOCK_ROWS, 3 * BLOCK_ROWS):
        streamed = StudentTMixture(K, **est).fit(NpySource(path, chunk_rows=chunk), sample_weight=sw)
        for name in ("weights_", "means_", "covariances_", "degrees_of_freedom_", "lower_bounds_"):
            assert_array_equal(getattr(streamed, name), getattr(mem, name), err_msg=f"{name}, chunk {chunk}")
    odd = StudentTMixture(K, **est).fit(NpySource(path, chunk_rows=1000), sample_weight=sw)
    assert_allclose(odd.means_, mem.means_, rtol=1e-12, atol=1e-12)


def test_thread_count_does_not_change_the_result(X):
    _, kwargs = initial(X, "full")
    a = StudentTMixture(K, tol=0, max_iter=5, n_jobs=1, **kwargs).fit(np.tile(X, (8, 1)))
    b = StudentTMixture(K, tol=0, max_iter=5, n_jobs=2, **kwargs).fit(np.tile(X, (8, 1)))
    assert_array_equal(a.means_, b.means_)
    assert_array_equal(a.degrees_of_freedom_, b.degrees_of_freedom_)


@pytest.mark.parametrize("kind", ["full", "diag"])
def test_model_file_round_trip(tmp_path, X, kind):
    tm = StudentTMixture(
        K, covariance_type=kind, degrees_of_freedom_init=[4.0, 5.0, 6.0], random_state=0
    ).fit(X)
    path = tm.save(tmp_path / "t.npz")
    back = fastem.load(path)
    assert type(back) is StudentTMixture
    assert back.get_params()["covariance_type"] == kind
    for name in StudentTMixture._model_arrays + ("lower_bounds_",):
        assert_array_equal(getattr(back, name), getattr(tm, name))
    assert_array_equal(back.predict_proba(X), tm.predict_proba(X))
    assert back.bic(X) == tm.bic(X)


def test_invalid_parameters(X):
    with pytest.raises(ValueError, match="degrees of freedom must be > 0"):
        StudentTMixture(K, degrees_of_freedom_init=[1.0, 0.0, 2.0]).fit(X)
    with pytest.raises(ValueError, match="degrees_of_freedom"):
        StudentTMixture(K, degrees_of_freedom_init=[1.0, 2.0]).fit(X)
    with pytest.raises(ValueError, match="covariance_type"):
        StudentTMixture(K, covariance_type="tied").fit(X)
    with pytest.raises(ValueError, match="accelerate"):
        StudentTMixture(K, accelerate="fast").fit(X)


def test_sample_has_the_fitted_shape(X):
    tm = StudentTMixture(K, random_state=0).fit(X)
    Xs, ys = tm.sample(500)
    assert Xs.shape == (500, D) and ys.shape == (500,)
    assert np.all(np.isfinite(Xs))


def test_robust_to_gross_outliers():
    """5% uniform outliers over a box 30x wider than the clusters: Gaussian means move, Student-t's do not."""
    rng = np.random.RandomState(0)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    inliers = np.vstack([c + rng.standard_normal((1000, 2)) for c in centres])
    n_out = int(round(0.05 * len(inliers) / 0.95))  # 5% of all rows
    outliers = rng.uniform(-60.0, 60.0, size=(n_out, 2))
    X = np.vstack([inliers, outliers])[rng.permutation(len(inliers) + n_out)]

    def error(means):  # each true centre to its nearest fitted mean
        return np.linalg.norm(means[:, None, :] - centres[None], axis=2).min(axis=0).max()

    # the Gaussian mixture, even started at the truth: one component takes the outliers and
    # two clusters merge (measured error 4.0)
    common = dict(n_components=3, means_init=centres, weights_init=np.full(3, 1 / 3), max_iter=500, tol=1e-8)
    gm = GaussianMixture(**common).fit(X)
    assert error(gm.means_) > 3.0
    # the Student-t mixture from its defaults (trimmed k-means, nu = 10): measured 0.066
    tm = StudentTMixture(3, random_state=0, max_iter=500, tol=1e-8).fit(X)
    assert error(tm.means_) < 0.1
    # a heavy-tailed component absorbs the outliers; the others' nu head to the Gaussian limit
    assert tm.degrees_of_freedom_.min() < 2.0
    assert tm.degrees_of_freedom_.max() > 5.0
    # plain k-means starts a component among the outliers and the fit merges two clusters
    # (measured error 6.0): the trimmed start finds the better optimum
    plain = StudentTMixture(3, init_params="kmeans", random_state=0, max_iter=500, tol=1e-8).fit(X)
    assert error(plain.means_) > 3.0
    assert tm.score(X) > plain.score(X) + 0.3


def test_no_warning_on_regular_fit(X):
    with warnings.catch_warnings():
        warnings.simplefilter("error", fastem.DegenerateParameterWarning)
        StudentTMixture(K, random_state=0, max_iter=30).fit(X)


def test_scalar_degrees_of_freedom_init_survives_a_model_file(tmp_path):
    X = np.random.default_rng(0).normal(size=(500, 2))
    est = fastem.StudentTMixture(2, degrees_of_freedom_init=4.0, random_state=0).fit(X)
    loaded = fastem.load(est.save(tmp_path / "m.npz"))
    assert np.ndim(loaded.degrees_of_freedom_init) == 0 and loaded.degrees_of_freedom_init == 4.0
    np.testing.assert_array_equal(loaded.degrees_of_freedom_, est.degrees_of_freedom_)
