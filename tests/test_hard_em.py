"""Hard (classification) EM, ``fit(..., algorithm="hard")``, and its k-means limit."""

from __future__ import annotations

import json
import warnings
import zipfile

import numpy as np
import pytest

import fastem
from fastem._em import fit_restarts
from fastem._executor import ArrayExecutor
from fastem._init import lloyd
from fastem.families.base import ClassificationEM
from fastem.families.gaussian import GaussianFamily, kmeans_limit_m_step, kmeans_limit_params
from fastem.families.student_t import StudentTFamily, StudentTParams
from fastem.mixture import (
    BernoulliMixture,
    GaussianMixture,
    MultinomialMixture,
    PoissonMixture,
    StudentTMixture,
    VonMisesFisherMixture,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def blobs():
    """Four overlapping clusters: Lloyd needs several iterations."""
    rng = np.random.RandomState(0)
    centres = np.array([[0.0, 0.0], [2.5, 0.0], [0.0, 2.5], [2.5, 2.5]])
    return np.vstack([rng.randn(500, 2) + c for c in centres])


def _labels(family, X, params):
    out = np.empty(X.shape[0], dtype=np.int64)
    family.accumulate(X, None, params, None, 0, out_label=out)
    return out


# ---------------------------------------------------------------- the k-means limit
@pytest.mark.parametrize("variance", [1.0, 1e-3, 50.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_hard_em_with_equal_fixed_spherical_covariances_is_lloyd(blobs, variance, weighted):
    X = blobs
    sw = np.random.RandomState(1).uniform(0.5, 2.0, X.shape[0]) if weighted else None
    start = X[[0, 1, 2, 3]].copy()  # four rows of the first cluster: a poor start, many iterations
    hard = ClassificationEM(GaussianFamily("spherical"))
    m_step = kmeans_limit_m_step(hard, variance)
    params = kmeans_limit_params(start, variance)
    iterations, previous = 0, None
    for t in range(1, 60):
        stats = hard.zero_stats(params)
        labels = np.empty(X.shape[0], dtype=np.int64)
        hard.accumulate(X, sw, params, stats, 0, out_label=labels)
        new, emptied = m_step(stats)
        assert emptied == []
        centres, lloyd_labels = lloyd(X, sw, start, max_iter=t, tol=0.0)
        np.testing.assert_array_equal(labels, lloyd_labels)  # the same assignments...
        np.testing.assert_allclose(new.means, centres, rtol=1e-12, atol=1e-12)  # ...and centres
        params = new
        if np.array_equal(labels, previous):  # a fixed partition: both have converged
            iterations = t
            break
        previous = labels
    assert iterations > 3  # the comparison covered several Lloyd steps, up to the fixed point

    # the driver (convergence test, lower bounds) ends at the same k-means fixed point
    executor = ArrayExecutor(X, sw, hard)
    run = fit_restarts(
        executor.accumulate,
        m_step,
        lambda _: kmeans_limit_params(start, variance),
        n_init=1,
        tol=1e-13,
        max_iter=100,
    )
    centres, lloyd_labels = lloyd(X, sw, start, max_iter=100, tol=0.0)
    np.testing.assert_allclose(run.params.means, centres, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(_labels(hard, X, run.params), lloyd_labels)
    assert np.all(np.diff(run.lower_bounds) >= 0)


def test_soft_em_approaches_kmeans_as_the_shared_variance_shrinks(blobs):
    X = blobs
    centres, _ = lloyd(X, None, X[[0, 1, 2, 3]], max_iter=300, tol=0.0)
    soft = GaussianFamily("spherical")
    gaps = []
    # soft EM's fixed point near the k-means one; rows near a boundary stay split until the
    # variance is far below their margin |d_1^2 - d_2^2|, then soft EM is k-means exactly
    for variance in (4.0, 1.0, 0.1, 0.01, 1e-3, 1e-5):
        run = fit_restarts(ArrayExecutor(X, None, soft).accumulate, kmeans_limit_m_step(soft, variance),
                           lambda _, v=variance: kmeans_limit_params(centres, v), n_init=1, tol=1e-12,
                           max_iter=2000)  # fmt: skip
        gaps.append(np.abs(run.params.means - centres).max())
    assert gaps[0] > 1.0 and gaps[1] > 0.1 and max(gaps[3:5]) < 0.05 and gaps[-1] < 1e-12


# ---------------------------------------------------------------- hard statistics vs NumPy
@pytest.mark.parametrize("kind", ["full", "tied", "diag", "spherical"])
def test_gaussian_hard_step_matches_numpy(blobs, kind):
    X = blobs
    rng = np.random.RandomState(2)
    sw = rng.uniform(0.5, 2.0, X.shape[0])
    means = X[[0, 600, 1100, 1700]]
    gm = GaussianMixture(4, covariance_type=kind, means_init=means, max_iter=1, random_state=0)
    gm.fit(X, sample_weight=sw, algorithm="hard")
    # the first E-step: the default initial covariances from the means_init partition
    start = GaussianMixture(4, covariance_type=kind, means_init=means, max_iter=0, random_state=0)
    start.fit(X, sample_weight=sw)
    z = start.predict(X)
    W = np.array([sw[z == k].sum() for k in range(4)])
    mu = np.array([np.average(X[z == k], axis=0, weights=sw[z == k]) for k in range(4)])
    np.testing.assert_allclose(gm.weights_, W / W.sum(), rtol=1e-12)
    np.testing.assert_allclose(gm.means_, mu, rtol=1e-10, atol=1e-12)
    scatter = [np.einsum("i,ij,ik->jk", sw[z == k], X[z == k] - mu[k], X[z == k] - mu[k]) for k in range(4)]
    eye = np.eye(2)
    if kind == "full":
        cov = np.array([s / w + 1e-6 * eye for s, w in zip(scatter, W, strict=True)])
    elif kind == "tied":
        cov = sum(scatter) / W.sum() + 1e-6 * eye
    elif kind == "diag":
        cov = np.array([np.diag(s) / w + 1e-6 for s, w in zip(scatter, W, strict=True)])
    else:
        cov = np.array([np.trace(s) / w / 2 + 1e-6 for s, w in zip(scatter, W, strict=True)])
    np.testing.assert_allclose(gm.covariances_, cov, rtol=1e-10, atol=1e-14)
    # the objective at the start: sum_i w_i log(pi_z p(x_i | z)) / sum_i w_i
    log_joint = start.score_samples(X) + np.log(start.predict_proba(X).max(axis=1))
    assert gm.lower_bounds_[0] == pytest.approx(np.average(log_joint, weights=sw), rel=1e-12)


def test_student_t_hard_step_matches_numpy(blobs):
    X = blobs
    family = StudentTFamily("diag")
    rng = np.random.RandomState(3)
    params = StudentTParams("diag", np.full(4, 0.25), X[[0, 600, 1100, 1700]].copy(),
                            rng.uniform(0.5, 1.5, (4, 2)), np.array([3.0, 5.0, 10.0, 30.0]))  # fmt: skip
    hard = ClassificationEM(family)
    stats = hard.zero_stats(params)
    hard.accumulate(X, None, params, stats, 0)
    new, _ = hard.m_step(stats)
    z = _labels(family, X, params)
    for k in range(4):
        x = X[z == k]
        delta = (((x - params.means[k]) * params.precisions_cholesky[k]) ** 2).sum(axis=1)
        u = (params.dof[k] + 2) / (params.dof[k] + delta)
        np.testing.assert_allclose(new.means[k], (u[:, None] * x).sum(axis=0) / u.sum(), rtol=1e-10)
        assert new.weights[k] == pytest.approx(np.mean(z == k), rel=1e-12)


# ---------------------------------------------------------------- every family
def _family_data():
    rng = np.random.RandomState(4)
    counts = rng.poisson(
        np.repeat([[1.0, 6.0, 2.0, 0.5], [7.0, 1.0, 1.0, 3.0], [2.0, 2.0, 8.0, 1.0]], 200, 0)
    )
    directions = rng.randn(600, 3) + np.repeat([[4, 0, 0], [0, 4, 0], [0, 0, 4]], 200, 0)
    gauss = np.vstack([rng.randn(200, 2) + c for c in ([0, 0], [4, 0], [0, 4])])
    return {
        "gaussian": (GaussianMixture(3, random_state=0), gauss),
        "student_t": (StudentTMixture(3, random_state=0), gauss),
        "poisson": (PoissonMixture(3, random_state=0), counts.astype(float)),
        "bernoulli": (BernoulliMixture(3, random_state=0), (counts > 2).astype(float)),
        "multinomial": (MultinomialMixture(3, random_state=0), counts.astype(float)),
        "vmf": (VonMisesFisherMixture(3, random_state=0, normalize=True), directions),
    }


@pytest.mark.parametrize("name", list(_family_data()))
def test_every_family_fits_hard_monotone_and_as_a_fixed_point(name, tmp_path):
    est, X = _family_data()[name]
    est.set_params(tol=0.0, max_iter=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, algorithm="hard")
    assert est.algorithm_ == "hard"
    lb = np.asarray(est.lower_bounds_)
    assert np.all(np.diff(lb) >= -1e-12 * np.abs(lb[1:]))  # the classification log-likelihood never decreases
    # the objective is the classification log-likelihood at the E-step's parameters
    hard, params = est._family(), est._params()
    assert isinstance(hard, ClassificationEM)
    stats = hard.zero_stats(params)
    hard.accumulate(X, None, params, stats, 0)
    log_joint = est.score_samples(X) + np.log(est.predict_proba(X).max(axis=1))
    assert stats.mean_log_likelihood == pytest.approx(log_joint.mean(), rel=1e-10)
    assert stats.mean_log_likelihood <= est.score(X) + 1e-12  # below the mixture log-likelihood
    # a hard M-step with integer sample weights is one on repeated rows
    w = np.random.RandomState(5).randint(0, 3, X.shape[0])
    steps = []
    for rows, weights in ((X, w.astype(float)), (np.repeat(X, w, axis=0), None)):
        st = hard.zero_stats(params)
        hard.accumulate(rows, weights, params, st, 0)
        steps.append((st.mean_log_likelihood, hard.m_step(st)[0]))
    assert steps[0][0] == pytest.approx(steps[1][0], rel=1e-12)
    for name_, a in hard.param_arrays(steps[0][1]).items():
        np.testing.assert_allclose(a, hard.param_arrays(steps[1][1])[name_], rtol=1e-9, atol=1e-12)
    # model files record the algorithm
    path = est.save(tmp_path / "m.npz")
    header = json.loads(zipfile.ZipFile(path).read("header.json"))
    assert header["algorithm"] == "hard"
    loaded = fastem.load(path)
    assert loaded.algorithm_ == "hard"
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    # a soft refit is soft again, and so is its model file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.set_params(max_iter=2).fit(X)
    assert est.algorithm_ == "batch" and "algorithm" not in est._family().config
    assert fastem.load(est.save(tmp_path / "s.npz")).algorithm_ == "batch"


def test_hard_differs_from_soft_and_sharpens_overlapping_clusters(blobs):
    soft = GaussianMixture(4, covariance_type="spherical", random_state=0, tol=1e-8).fit(blobs)
    hard = GaussianMixture(4, covariance_type="spherical", random_state=0, tol=1e-8).fit(
        blobs, algorithm="hard"
    )
    assert soft.algorithm_ == "batch" and hard.algorithm_ == "hard"
    assert hard.converged_ and hard.n_iter_ < soft.n_iter_  # CEM stops when the partition stops changing
    assert hard.score(blobs) <= soft.score(blobs)  # soft EM maximises the mixture likelihood
    # hard EM's classification objective is above soft EM's at soft EM's optimum
    soft_cl = (soft.score_samples(blobs) + np.log(soft.predict_proba(blobs).max(axis=1))).mean()
    assert hard.lower_bound_ >= soft_cl - 1e-9


def test_streaming_and_chunked_hard_fits_agree_with_in_memory(blobs, tmp_path):
    from fastem.sources import NpySource

    X = np.vstack([blobs] * 40)  # 80 000 rows: several sub-chunks of ClassificationEM
    path = tmp_path / "x.npy"
    np.save(path, X)
    kw = dict(covariance_type="full", means_init=X[[0, 600, 1100, 1700]], tol=0.0, max_iter=5, random_state=0)
    a = GaussianMixture(4, **kw).fit(X, algorithm="hard")
    b = GaussianMixture(4, **kw).fit(NpySource(path, chunk_rows=3 * 4096 + 17), algorithm="hard")
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-10)
    np.testing.assert_allclose(b.lower_bounds_, a.lower_bounds_, rtol=1e-10)


def test_dask_hard_fit_agrees_with_in_memory(blobs):
    da = pytest.importorskip("dask.array")
    pytest.importorskip("distributed")
    kw = dict(
        covariance_type="diag", means_init=blobs[[0, 600, 1100, 1700]], tol=0.0, max_iter=4, random_state=0
    )
    a = GaussianMixture(4, **kw).fit(blobs, algorithm="hard")
    b = GaussianMixture(4, **kw).fit(da.from_array(blobs, chunks=(512, 2)), algorithm="hard")
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-10)
    np.testing.assert_allclose(b.lower_bounds_, a.lower_bounds_, rtol=1e-10)


def test_hard_checkpoint_resumes_and_is_not_mistaken_for_soft(blobs, tmp_path):
    ck = tmp_path / "ck.npz"
    kw = dict(
        covariance_type="full", means_init=blobs[[0, 600, 1100, 1700]], tol=0.0, max_iter=6, random_state=0
    )
    full = GaussianMixture(4, **kw).fit(blobs, algorithm="hard")

    def interrupt(it):
        if it.n_iter == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        GaussianMixture(4, **kw).fit(blobs, algorithm="hard", checkpoint=ck, callbacks=interrupt)
    resumed = GaussianMixture(4, **kw).fit(blobs, algorithm="hard", checkpoint=ck)
    np.testing.assert_array_equal(resumed.means_, full.means_)
    assert resumed.lower_bounds_ == full.lower_bounds_
    with pytest.raises(ValueError):
        GaussianMixture(4, **kw).fit(blobs, checkpoint=ck)


def test_refusals_and_online_after_hard(blobs):
    with pytest.raises(ValueError, match="algorithm"):
        GaussianMixture(2).fit(blobs, algorithm="classification")
    with pytest.raises(ValueError, match="algorithm='hard'"):
        GaussianMixture(2, accelerate="squarem").fit(blobs, algorithm="hard")
    gm = GaussianMixture(2, random_state=0).fit(blobs, algorithm="hard")
    gm.partial_fit(blobs[:200])  # stepwise EM is soft
    assert gm.algorithm_ == "online" and "algorithm" not in gm._family().config


def test_map_prior_with_hard_em_is_monotone(blobs):
    gm = GaussianMixture(4, prior="mclust", random_state=0, tol=0.0, max_iter=50).fit(blobs, algorithm="hard")
    assert np.all(np.diff(gm.lower_bounds_) >= -1e-12)
