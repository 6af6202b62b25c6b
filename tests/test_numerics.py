"""Numerical behaviour: far-from-origin data, a published fit, monotonicity, determinism, degeneracy."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import reference as ref
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning

import fastem
from fastem import DegenerateComponentWarning, GaussianMixture
from fastem._init import kmeans_plusplus, lloyd
from fastem.datasets import load_old_faithful

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")
REPO = Path(__file__).resolve().parents[1]


def _all_finite(gm) -> bool:
    arrays = (gm.weights_, gm.means_, gm.covariances_, gm.precisions_, gm.precisions_cholesky_)
    return all(np.all(np.isfinite(a)) for a in arrays) and np.isfinite(gm.lower_bound_)


# ----------------------------------------------------------------------------- (a) large offset
OFFSET = 1e6


@pytest.fixture(scope="module")
def offset_data():
    """20000 x 3: two unit-variance clusters, 3 apart, both sitting at 1e6 on every feature."""
    rng = np.random.default_rng(2024)
    n = 20000
    shift = np.where(rng.random(n) < 0.4, 0.0, 3.0)[:, None] * np.array([1.0, 1.0, 0.5])
    noise = rng.normal(size=(n, 3)) @ np.array([[1.0, 0.3, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 1.2]])
    return OFFSET + shift + noise


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_large_offset_matches_two_pass_reference(offset_data, cov_type):
    X = offset_data
    rows = (0, int(np.argmax(np.abs(X[:, 0] - X[0, 0]) > 2.5)))  # start in different clusters
    init = ref.explicit_init(X, rows, cov_type)
    n_iter = 4
    gm = GaussianMixture(2, covariance_type=cov_type, tol=0, max_iter=n_iter, **init["kwargs"]).fit(X)
    (w, m, c), lower_bounds = ref.run_em(
        X, init["weights"], init["means"], init["covariances"], cov_type, n_iter, 1e-6
    )
    # the reference itself is accurate: same EM on the centred data gives the same covariances
    (_, m0, c0), _ = ref.run_em(
        X - OFFSET, init["weights"], init["means"] - OFFSET, init["covariances"], cov_type, n_iter, 1e-6
    )
    assert_allclose(c, c0, rtol=1e-9, atol=1e-12)

    assert_allclose(gm.covariances_, c, rtol=1e-8, atol=1e-10)
    assert_allclose(gm.means_ - OFFSET, m - OFFSET, rtol=1e-8, atol=1e-9)
    assert_allclose(gm.weights_, w, rtol=1e-8)
    assert_allclose(gm.lower_bounds_, lower_bounds, rtol=1e-9)
    # the variances are those of the unit-scale noise, not rounding noise of 1e6**2
    variances = np.diagonal(c, axis1=-2, axis2=-1) if cov_type in ("full", "tied") else c
    assert np.all((variances > 0.3) & (variances < 4.0))


# ----------------------------------------------------------------------------- (b) Old Faithful
def test_old_faithful_reference_fit():
    X = load_old_faithful()
    assert X.shape == (272, 2)
    gm = GaussianMixture(2, covariance_type="full", random_state=0, tol=1e-8, max_iter=1000).fit(X)
    assert gm.converged_
    assert gm.lower_bound_ * 272 == pytest.approx(-1130.2640, abs=1e-3)
    order = np.argsort(gm.weights_)
    assert_allclose(gm.weights_[order], [0.3559, 0.6441], atol=1e-3)
    assert_allclose(gm.means_[order], [[2.0364, 54.4785], [4.2897, 79.9681]], atol=1e-3)


# ----------------------------------------------------------------------------- (c) monotonicity
@pytest.mark.parametrize("init_params", INIT_METHODS)
def test_lower_bounds_never_decrease(X, cov_type, init_params):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateComponentWarning)  # a re-seed may lower the bound
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(
            4, covariance_type=cov_type, init_params=init_params, tol=1e-12, max_iter=200, random_state=3
        ).fit(X)
    lb = np.asarray(gm.lower_bounds_)
    assert len(lb) == gm.n_iter_ >= 5
    assert np.all(np.isfinite(lb))
    assert np.all(np.diff(lb) >= -1e-12 * np.abs(lb[1:])), np.diff(lb).min()
    assert lb[-1] > lb[0]
    assert gm.lower_bound_ == lb[-1]


# ----------------------------------------------------------------------------- (d) thread counts
_DETERMINISM_SCRIPT = textwrap.dedent(
    """
    import sys
    import numba
    import numpy as np
    from fastem import GaussianMixture

    rng = np.random.default_rng(0)
    n, d, k = 50_000, 4, 5
    centers = rng.normal(scale=3.0, size=(k, d))
    X = centers[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    gm = GaussianMixture(k, covariance_type="full", random_state=0, max_iter=15, tol=0).fit(X)
    # float32 data, sample weights, k-means++ seeding, tied covariance
    X32 = X.astype(np.float32)
    sw = rng.uniform(0.0, 2.0, n)
    gm32 = GaussianMixture(
        k, covariance_type="tied", init_params="k-means++", random_state=0, max_iter=10, tol=0
    ).fit(X32, sample_weight=sw)
    np.savez(
        sys.argv[1],
        means=gm.means_,
        covariances=gm.covariances_,
        weights=gm.weights_,
        lower_bounds=np.array(gm.lower_bounds_),
        proba=gm.predict_proba(X),
        logprob=gm.score_samples(X),
        labels=gm.predict(X),
        means32=gm32.means_,
        covariances32=gm32.covariances_,
        weights32=gm32.weights_,
        lower_bounds32=np.array(gm32.lower_bounds_),
        proba32=gm32.predict_proba(X32),
    )
    print(numba.config.NUMBA_NUM_THREADS, numba.get_num_threads())
    """
)


def test_results_bitwise_independent_of_thread_count(tmp_path):
    assert 50_000 > 10 * fastem.BLOCK_ROWS
    # One run first so that numba's on-disk cache is warm and all three runs
    # below execute the same cached machine code (a fresh in-process JIT
    # compilation may round differently in the last bit).
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    subprocess.run(
        [sys.executable, "-c", _DETERMINISM_SCRIPT, str(tmp_path / "warm.npz")],
        env=env,
        check=True,
        timeout=600,
    )
    procs = {}
    for threads in (1, 2, 3):
        env = dict(os.environ)
        env["NUMBA_NUM_THREADS"] = str(threads)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        env["PYTHONWARNINGS"] = "ignore"
        out = tmp_path / f"threads{threads}.npz"
        procs[threads] = (
            subprocess.Popen(
                [sys.executable, "-c", _DETERMINISM_SCRIPT, str(out)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
            out,
        )
    results = {}
    for threads, (proc, out) in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        assert stdout.split() == [str(threads), str(threads)]
        with np.load(out) as data:
            results[threads] = {name: data[name] for name in data.files}
    base = results[1]
    assert np.all(np.isfinite(base["covariances"]))
    for threads in (2, 3):
        for name, value in base.items():
            assert np.array_equal(results[threads][name], value), f"{name} differs with {threads} threads"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_n_jobs_does_not_change_results():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3 * fastem.BLOCK_ROWS + 123, 3)) + np.repeat([[0, 0, 0], [5, 0, 0]], [7000, 5411], 0)
    fits = [
        GaussianMixture(2, random_state=0, max_iter=10, tol=0, n_jobs=n_jobs).fit(X) for n_jobs in (1, 2, -1)
    ]
    for gm in fits[1:]:
        assert_array_equal(gm.means_, fits[0].means_)
        assert_array_equal(gm.covariances_, fits[0].covariances_)
        assert_array_equal(gm.lower_bounds_, fits[0].lower_bounds_)
        assert_array_equal(gm.predict_proba(X), fits[0].predict_proba(X))


def test_n_jobs_sets_the_kernel_thread_count(monkeypatch):
    import numba

    import fastem.families.gaussian as executor_module

    original = executor_module._gaussian_pass
    seen = []

    def recording(*args):
        seen.append(numba.get_num_threads())
        return original(*args)

    monkeypatch.setattr(executor_module, "_gaussian_pass", recording)
    X = np.random.default_rng(2).normal(size=(fastem.BLOCK_ROWS + 500, 2))  # more than one block
    available = numba.config.NUMBA_NUM_THREADS
    before = numba.get_num_threads()
    for n_jobs, expected in ((1, 1), (None, available), (-1, available), (1000, available)):
        seen.clear()
        gm = GaussianMixture(2, random_state=0, max_iter=3, tol=0, n_jobs=n_jobs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(X)
        gm.predict(X)
        assert seen and set(seen) == {expected}, (n_jobs, seen)
        assert numba.get_num_threads() == before  # restored afterwards


# ----------------------------------------------------------------------------- (e) degenerate data
def _fit_quietly(X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateComponentWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(**kw).fit(X)


def _assert_usable(gm, X):
    assert _all_finite(gm)
    assert_allclose(gm.weights_.sum(), 1.0, rtol=1e-12)
    assert np.all(gm.weights_ >= 0)
    assert np.all(np.isfinite(gm.score_samples(X)))
    proba = gm.predict_proba(X)
    assert np.all(np.isfinite(proba))
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(np.isfinite(gm.lower_bounds_))


@pytest.mark.parametrize("init_params", INIT_METHODS)
def test_duplicated_points_more_components_than_distinct_points(cov_type, init_params):
    points = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [5.0, -1.0, 2.0]])
    X = np.repeat(points, 50, axis=0)
    gm = _fit_quietly(X, n_components=5, covariance_type=cov_type, init_params=init_params, random_state=0)
    _assert_usable(gm, X)


def test_constant_feature(X, cov_type):
    Xc = X.copy()
    Xc[:, 1] = 5.0
    gm = _fit_quietly(Xc, n_components=3, covariance_type=cov_type, random_state=0)
    _assert_usable(gm, Xc)
    assert_allclose(gm.means_[:, 1], 5.0, rtol=1e-12)
    var = {
        "full": lambda c: c[:, 1, 1],
        "tied": lambda c: c[1, 1],
        "diag": lambda c: c[:, 1],
        "spherical": lambda c: np.zeros(1) + 1e-6,
    }[cov_type](gm.covariances_)
    assert_allclose(var, 1e-6, rtol=1e-6)  # only reg_covar is left


def test_n_components_equals_n_samples(cov_type):
    X = np.random.default_rng(0).normal(size=(6, 2))
    gm = _fit_quietly(X, n_components=6, covariance_type=cov_type, random_state=0)
    _assert_usable(gm, X)


def test_component_emptied_by_far_means_init(X, cov_type):
    means_init = np.array([[0.0, 0.0, 0.0], [4.0, 4.0, 0.0], [-4.0, 3.0, 3.0], [1e4, 1e4, 1e4]])
    gm = GaussianMixture(4, covariance_type=cov_type, means_init=means_init, random_state=0, max_iter=100)
    with pytest.warns(DegenerateComponentWarning, match="lost all responsibility mass"):
        gm.fit(X)
    _assert_usable(gm, X)
    assert np.all(np.abs(gm.means_) < 100)  # the far component was re-seeded on the data


def _far_component_setup(cov_type):
    """Multi-block data with an outlier in a late block, and a 4th component far from everything."""
    from conftest import make_mixture

    X = make_mixture(n_samples=2 * fastem.BLOCK_ROWS + 300, seed=5)[0]
    X[fastem.BLOCK_ROWS + 77] = [30.0, -30.0, 30.0]  # the worst-explained sample
    far = np.array([[0.0, 0.0, 0.0], [4.0, 4.0, 0.0], [-4.0, 3.0, 3.0], [1e4, 1e4, 1e4]])
    init = ref.explicit_init(X, (0, 1, 2, 3), cov_type)
    init["means"] = far
    init["kwargs"]["means_init"] = far
    return X, init


@pytest.mark.parametrize("weighted", [False, True])
def test_emptied_component_is_reseeded_at_worst_explained_sample(cov_type, weighted):
    X, init = _far_component_setup(cov_type)
    outlier = fastem.BLOCK_ROWS + 77
    sw = None
    if weighted:  # a zero-weight sample is never "worst explained"
        sw = np.ones(len(X))
        sw[outlier] = 0.0
    gm = GaussianMixture(4, covariance_type=cov_type, max_iter=1, tol=0, **init["kwargs"])
    with pytest.warns(DegenerateComponentWarning, match=r"Components \[3\]"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(X, sample_weight=sw)
    log_prob, resp = ref.e_step(X, init["weights"], init["means"], init["covariances"], cov_type)
    assert resp[:, 3].max() == 0.0  # really empty
    candidates = log_prob if sw is None else np.where(sw > 0, log_prob, np.inf)
    worst = int(np.argmin(candidates))
    assert (worst == outlier) is (not weighted)
    assert_array_equal(gm.means_[3], X[worst])
    # the other components got the ordinary M-step
    _, m, _ = ref.m_step(X, resp[:, :3], 1e-6, "diag", sample_weight=sw)
    assert_allclose(gm.means_[:3], m, rtol=1e-7)
    assert np.all(gm.weights_ > 0)
    assert_allclose(gm.weights_.sum(), 1.0, rtol=1e-12)


def test_reseeded_weight_does_not_depend_on_sample_weight_scale(cov_type):
    """Uniform sample weights of any scale must give the same fit, re-seeding included."""
    X, init = _far_component_setup(cov_type)
    for max_iter in (1, 3):  # right after the re-seed, and two iterations later
        fits = []
        for scale in (1.0, 1e-3, 10.0):
            gm = GaussianMixture(4, covariance_type=cov_type, max_iter=max_iter, tol=0, **init["kwargs"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fits.append(gm.fit(X, sample_weight=np.full(len(X), scale)))
        for gm in fits[1:]:
            assert_allclose(gm.weights_, fits[0].weights_, rtol=1e-9)
            assert_allclose(gm.means_, fits[0].means_, rtol=1e-9)
            assert_allclose(gm.lower_bounds_, fits[0].lower_bounds_, rtol=1e-12)


@pytest.mark.parametrize("reg_covar", [1e-6, 0.0])
def test_collapsed_data_single_point_components(cov_type, reg_covar):
    """Every distinct point twice; a component on one location has zero spread."""
    X = np.repeat(np.array([[0.0, 1.0], [3.0, 3.0], [-2.0, 5.0], [7.0, 0.0]]), 2, axis=0)
    gm = GaussianMixture(4, covariance_type=cov_type, reg_covar=reg_covar, random_state=0)
    if reg_covar == 0.0:
        # zero variance cannot be inverted: a clean ValueError, never NaN parameters
        with pytest.raises(ValueError, match="ill-defined empirical covariance"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gm.fit(X)
        assert not hasattr(gm, "means_")
    else:
        gm = _fit_quietly(X, n_components=4, covariance_type=cov_type, random_state=0)
        _assert_usable(gm, X)


# ----------------------------------------------------------------------------- (f) seeding kernels
def _numpy_kmeans_plusplus(X, n_clusters, random_state):
    """The same greedy k-means++ in plain NumPy, consuming the same random numbers."""
    n = X.shape[0]
    n_trials = 2 + int(np.log(n_clusters))
    indices = [random_state.randint(n)]
    closest = ((X - X[indices[0]]) ** 2).sum(axis=1)
    for _ in range(1, n_clusters):
        cumulative = np.cumsum(closest)
        draws = random_state.uniform(size=n_trials) * cumulative[-1]
        candidates = np.minimum(np.searchsorted(cumulative, draws), n - 1)
        dists = ((X[None, :, :] - X[candidates][:, None, :]) ** 2).sum(axis=2)
        potentials = np.minimum(closest[None, :], dists).sum(axis=1)
        best = int(np.argmin(potentials))
        indices.append(int(candidates[best]))
        closest = np.minimum(closest, dists[best])
    return np.array(indices)


def test_kmeans_plusplus_distinct_indices():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(500, 3))
    for n_clusters in (2, 10, 40):
        idx = kmeans_plusplus(X, None, n_clusters, np.random.RandomState(0))
        assert idx.shape == (n_clusters,)
        assert len(np.unique(idx)) == n_clusters
        assert np.all((idx >= 0) & (idx < len(X)))
        expected = _numpy_kmeans_plusplus(X, n_clusters, np.random.RandomState(0))
        assert_array_equal(idx, expected)
    # as many clusters as (distinct) points: every point is chosen once
    small = rng.normal(size=(12, 2))
    idx = kmeans_plusplus(small, None, 12, np.random.RandomState(1))
    assert sorted(idx.tolist()) == list(range(12))


def test_kmeans_plusplus_never_picks_zero_weight_rows():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(400, 2))
    sw = rng.uniform(0.5, 1.5, size=400)
    sw[::2] = 0.0
    for seed in range(5):
        idx = kmeans_plusplus(X, sw, 8, np.random.RandomState(seed))
        assert len(np.unique(idx)) == 8
        assert np.all(sw[idx] > 0)


def _numpy_lloyd(X, centers, sample_weight=None, max_iter=300):
    w = np.ones(len(X)) if sample_weight is None else sample_weight
    centers = centers.astype(np.float64).copy()
    labels = None
    for _ in range(max_iter):
        new_labels = ((X[:, None, :] - centers[None]) ** 2).sum(axis=2).argmin(axis=1)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        for k in range(len(centers)):
            mask = labels == k
            if w[mask].sum() > 0:
                centers[k] = np.average(X[mask], axis=0, weights=w[mask])
    return centers, labels


@pytest.mark.parametrize("weighted", [False, True])
def test_lloyd_matches_numpy_lloyd(weighted):
    rng = np.random.default_rng(10)
    true_centers = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0], [6.0, 6.0], [3.0, 12.0]])
    X = true_centers[rng.integers(0, 5, 2000)] + rng.normal(size=(2000, 2))
    sw = rng.uniform(0.2, 3.0, size=2000) if weighted else None
    start = X[:5].copy()  # poor start: Lloyd has to move the centers
    centers, labels = lloyd(X, sw, start, max_iter=300, tol=0.0)
    expected_centers, expected_labels = _numpy_lloyd(X, start, sw)
    assert np.abs(expected_centers - start).max() > 1.0
    assert_allclose(centers, expected_centers, rtol=1e-10, atol=1e-12)
    assert_array_equal(labels, expected_labels)
    assert_array_equal(start, X[:5])  # the start is not modified in place
