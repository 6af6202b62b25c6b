"""The k-means initialisation: best of several seedings on a sample, empty clusters, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from fastem import GaussianMixture
from fastem._init import (
    LLOYD_MAX_ITER,
    LLOYD_TOL,
    N_SEEDINGS,
    SEEDING_LLOYD_MAX_ITER,
    SEEDING_SAMPLE_ROWS,
    _distinct_rows,
    _lloyd,
    _mean_variance,
    _seeding_sample,
    kmeans,
    kmeans_plusplus,
    lloyd,
    responsibility_chunks,
)

K = 5


def _simplex_blobs(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Five blobs whose centres are all 14 apart, sds 2.2 down to 0.6, weights 0.4 ... 0.08 (rotated)."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((K, d))
    centres[np.arange(K), np.arange(K)] = 14 / np.sqrt(2)
    counts = rng.multinomial(n, [0.4, 0.25, 0.15, 0.12, 0.08])
    parts = []
    for k, sd in enumerate(np.linspace(2.2, 0.6, K)):
        z = rng.normal(size=(counts[k], d)) * (sd * rng.uniform(0.8, 1.0, size=d))
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        parts.append(centres[k] + z @ q.T)
    return np.concatenate(parts)[rng.permutation(n)], centres


def _finds_all(centres: np.ndarray, fitted: np.ndarray) -> bool:
    """Every true centre has its own fitted centre within 1.5 (no merged and split blobs)."""
    d2 = ((centres[:, None] - fitted[None]) ** 2).sum(-1)
    nearest = d2.argmin(axis=1)
    return len(set(nearest.tolist())) == K and bool(np.all(d2.min(axis=1) < 1.5**2))


@pytest.fixture(scope="module")
def blobs():
    return _simplex_blobs(3000, 16, seed=3)


def test_one_seeding_merges_blobs_on_this_layout(blobs):
    # the old default (one k-means++ seeding + Lloyd) merged two blobs and split one for these seeds
    X, centres = blobs
    single = [
        _finds_all(centres, kmeans(X, None, K, np.random.RandomState(s), n_seedings=1)[0]) for s in range(10)
    ]
    assert sum(single) <= 6, single


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_default_fit_finds_all_five_blobs(blobs, covariance_type):
    X, centres = blobs
    for seed in range(10):
        gm = GaussianMixture(K, covariance_type=covariance_type, random_state=seed).fit(X)
        assert _finds_all(centres, gm.means_), (seed, gm.means_[:, :K].round(1))


def test_reproducible_from_random_state():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3 * SEEDING_SAMPLE_ROWS // 2, 3)) + 6 * rng.integers(
        0, 3, size=(3 * SEEDING_SAMPLE_ROWS // 2, 1)
    )
    runs = [kmeans(X, None, 4, np.random.RandomState(7)) for _ in range(2)]
    assert_array_equal(runs[0][0], runs[1][0])
    assert_array_equal(runs[0][1], runs[1][1])
    other = kmeans(X, None, 4, np.random.RandomState(8))[0]
    assert not np.array_equal(runs[0][0], other)
    chunks, _ = responsibility_chunks(X, None, 4, "kmeans", np.random.RandomState(7))
    assert_array_equal(chunks(0, 100).argmax(axis=1), runs[0][1][:100])
    a = GaussianMixture(4, random_state=3).fit(X[:5000])
    b = GaussianMixture(4, random_state=3).fit(X[:5000])
    assert_array_equal(a.means_, b.means_)


@pytest.mark.parametrize("threads", [1, 2])
def test_seedings_side_by_side_give_those_run_one_after_another(threads):
    # the seedings run on the threads; the random numbers are drawn up front in the same order, so
    # the result is that of the sequential loop (written out here), bit for bit
    import numba

    rng = np.random.default_rng(6)
    n = 2 * SEEDING_SAMPLE_ROWS
    X = rng.normal(size=(n, 5)) + 2.5 * rng.integers(0, 6, size=(n, 1))
    random_state = np.random.RandomState(11)
    Xs, _, _ = _seeding_sample(X, None, 6, random_state)
    tol_abs = LLOYD_TOL * _mean_variance(Xs, None)
    runs = []
    for _ in range(N_SEEDINGS):
        seeds = kmeans_plusplus(Xs, None, 6, random_state)
        runs.append(_lloyd(Xs, None, Xs[seeds], SEEDING_LLOYD_MAX_ITER, tol_abs))
    best = min(runs, key=lambda run: run[2])
    assert len({run[2] for run in runs}) > 1  # the seedings differ: picking the best matters
    centres, _, _ = _lloyd(Xs, None, best[0], LLOYD_MAX_ITER, tol_abs)
    expected_centres, expected_labels, _ = _lloyd(X, None, centres, 1, tol_abs)
    following = random_state.randint(1 << 30)

    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        random_state = np.random.RandomState(11)
        got_centres, got_labels = kmeans(X, None, 6, random_state)
    finally:
        numba.set_num_threads(previous)
    assert_array_equal(got_centres, expected_centres)
    assert_array_equal(got_labels, expected_labels)
    assert random_state.randint(1 << 30) == following  # the random stream is used as before


def test_distinct_rows_are_a_uniform_subset():
    random_state = np.random.RandomState(0)
    for n_samples, m in ((10**6, 10**4), (40, 10), (40, 11), (5, 5)):  # 4m <= n: top-ups; else a permutation
        rows = _distinct_rows(n_samples, m, random_state)
        assert rows.shape == (m,) and rows.dtype.kind == "i"
        assert np.all(np.diff(rows) > 0) and rows[0] >= 0 and rows[-1] < n_samples
    # every row equally likely: 4000 draws of 10 of 40 rows, each row's count ~ Binomial(4000, 1/4)
    counts = np.zeros(40)
    pairs = np.zeros((40, 40))
    for _ in range(4000):
        rows = _distinct_rows(40, 10, random_state)
        counts[rows] += 1
        pairs[rows[:, None], rows[None, :]] += 1
    sd = np.sqrt(4000 * 0.25 * 0.75)
    assert np.abs(counts - 1000).max() < 4.5 * sd
    # and pairs too (a subset, not only its marginals): P(i and j) = (10 * 9) / (40 * 39)
    off = pairs[~np.eye(40, dtype=bool)]
    p = 90 / 1560
    assert np.abs(off - 4000 * p).max() < 5 * np.sqrt(4000 * p * (1 - p))


def test_sample_is_bounded_and_weighted_sample_skips_zero_weights():
    rng = np.random.default_rng(1)
    n = 2 * SEEDING_SAMPLE_ROWS
    X = rng.normal(size=(n, 2))
    Xs, sws, is_all = _seeding_sample(X, None, 3, np.random.RandomState(0))
    assert not is_all and sws is None and Xs.shape == (SEEDING_SAMPLE_ROWS, 2)
    sw = np.ones(n)
    sw[::2] = 0.0
    X[::2] += 1e3  # zero-weight rows far away must not pull a centre
    Xs, sws, is_all = _seeding_sample(X, sw, 3, np.random.RandomState(0))
    assert np.all(np.abs(Xs) < 100) and sws.sum() == SEEDING_SAMPLE_ROWS
    centers, labels = kmeans(X, sw, 3, np.random.RandomState(0))
    assert np.all(np.abs(centers) < 10)
    assert set(np.unique(labels[1::2]).tolist()) == {0, 1, 2}
    # few rows: the seedings compete on all of them
    Xs, sws, is_all = _seeding_sample(X[:500], sw[:500], 3, np.random.RandomState(0))
    assert is_all and Xs is not None and Xs.shape[0] == 500


def test_empty_cluster_is_moved_to_the_farthest_row():
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) + [20.0, 0.0]])
    start = np.array([[0.0, 0.0], [20.0, 0.0], [1e4, 1e4]])  # the third center gets no row
    centers, labels = lloyd(X, None, start)
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2]
    assert np.all(np.abs(centers) < 30)
    # all rows identical: nowhere to move, and no endless loop
    same = np.ones((50, 2))
    centers, labels = lloyd(same, None, np.array([[1.0, 1.0], [5.0, 5.0]]))
    assert np.all(labels == 0)


@pytest.mark.filterwarnings("ignore:Best performing initialization")
@pytest.mark.parametrize("n", [200, 3 * SEEDING_SAMPLE_ROWS // 2])
def test_every_init_params_still_works(n):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(n, 3)) + 5 * rng.integers(0, 3, size=(n, 1))
    for init_params in ("kmeans", "k-means++", "random", "random_from_data"):
        gm = GaussianMixture(3, init_params=init_params, random_state=0, max_iter=5).fit(X)
        assert np.all(np.isfinite(gm.means_)) and gm.weights_.min() > 0


def test_large_data_rows_are_assigned_once_and_centres_are_their_means():
    # more rows than the seeding sample: one Lloyd pass over all rows assigns every row; the
    # centres returned are the means of the rows assigned to them, and no cluster is empty
    rng = np.random.default_rng(5)
    n = 3 * SEEDING_SAMPLE_ROWS // 2
    X = rng.normal(size=(n, 4)) + 3.0 * rng.integers(0, 4, size=(n, 1))
    centers, labels = kmeans(X, None, 6, np.random.RandomState(0))
    assert np.bincount(labels, minlength=6).min() > 0
    means = np.stack([X[labels == k].mean(axis=0) for k in range(6)])
    np.testing.assert_allclose(centers, means, rtol=0, atol=1e-10)


@pytest.mark.parametrize("cov_code, s2_shape", [(0, (K, 3, 3)), (1, (1, 3, 3)), (2, (K, 1, 3))])
@pytest.mark.parametrize("weighted", [False, True])
def test_hard_labels_give_the_one_hot_moments_bit_for_bit(cov_code, s2_shape, weighted):
    # the k-means initialisation passes its labels, not K numbers per row; the sums must not change
    from fastem._init import HardLabels, chunk_arguments
    from fastem._kernels.seeding import _responsibility_moments

    rng = np.random.default_rng(3)
    X = rng.normal(size=(9000, 3)) * [1.0, 10.0, 0.1] + 5.0
    labels = rng.integers(0, K, size=X.shape[0])
    sw = rng.uniform(0.5, 2.0, size=X.shape[0]) if weighted else np.empty(0)
    shift = rng.normal(size=(K, 3))
    chunks = HardLabels(labels, K)
    one_hot = chunks(0, X.shape[0])
    assert_array_equal(one_hot.argmax(axis=1), labels)
    assert_array_equal(one_hot.sum(axis=1), 1.0)
    results = []
    for resp, lab in ((one_hot, None), chunk_arguments(chunks, 0, X.shape[0])):
        R, S1, S2 = np.zeros(K), np.zeros((K, 3)), np.zeros(s2_shape)
        _responsibility_moments(X, sw, resp, shift, cov_code, R, S1, S2, lab)
        results.append((R, S1, S2))
    assert results[1][0].shape == (K,) and np.all(results[1][0] > 0)
    for a, b in zip(*results, strict=True):
        assert_array_equal(a, b)
    # and both are the moments of each label's rows
    w = sw if weighted else np.ones(X.shape[0])
    for k in range(K):
        rows = labels == k
        assert results[1][0][k] == pytest.approx(w[rows].sum(), rel=1e-12)
        expected = (w[rows, None] * (X[rows] - shift[k])).sum(0)
        np.testing.assert_allclose(results[1][1][k], expected, rtol=1e-11)
