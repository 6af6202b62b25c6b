"""Initial responsibilities: k-means (best of several seedings + Lloyd), k-means++, random, from data.

Every method yields responsibilities (hard or soft); each family turns their
weighted statistics into initial parameters (its M-step), as in scikit-learn,
and the user's ``*_init`` arrays then override the corresponding parts. All randomness comes from one
``numpy.random.RandomState``, so a fit is reproducible from ``random_state``.
Memory: O(n_samples) for the k-means distances and labels, a seeding sample of
at most 32 MiB, plus chunks of ``_CHUNK`` rows; never an N x K array.
"""

from __future__ import annotations

import math

import numpy as np

from ._kernels._blocks import map_on_threads
from ._kernels._config import BLOCK_ROWS
from ._kernels.seeding import _candidate_potentials, _lloyd_step, _update_closest
from ._threads import thread_limit

_CHUNK = 16 * BLOCK_ROWS
_NO_F64 = np.empty(0)

#: Lloyd iteration cap and tolerance (relative to the mean feature variance).
LLOYD_MAX_ITER = 100
LLOYD_TOL = 1e-4
#: k-means++ seedings tried on the sample (each refined by Lloyd there); the lowest inertia wins.
N_SEEDINGS = 8
#: rows of the seeding sample: at most this many (and at most 32 MiB of float64) ...
SEEDING_SAMPLE_ROWS = 10_000
#: ... but at least this many per cluster
SEEDING_SAMPLE_PER_COMPONENT = 50
#: Lloyd iterations per competing seeding on the sample (the winner then runs to convergence there)
SEEDING_LLOYD_MAX_ITER = 20
#: Lloyd iterations on all rows from the sample's converged centers (each is a pass over the data).
#: One: the assignment that the initial moments need. More passes polish centres that EM moves
#: anyway; on 1e6 x 16, K=16 each cost about a third of the initialisation besides the moments, and
#: scripts/compare_init.py finds the same optima with 1 as with 3 (51 of 60 default fits each).
FULL_LLOYD_MAX_ITER = 1


def kmeans_plusplus(
    X: np.ndarray, sample_weight: np.ndarray | None, n_clusters: int, random_state: np.random.RandomState
) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007), weighted.

    Each new center is the best of ``2 + log(k)`` candidates drawn with
    probability proportional to w_i * D(x_i)^2. Returns the chosen row indices.
    """
    draws = _kmeans_plusplus_draws(X.shape[0], sample_weight, n_clusters, random_state)
    return _kmeans_plusplus_from(X, sample_weight, n_clusters, draws)


def _kmeans_plusplus_draws(
    n_samples: int, sample_weight: np.ndarray | None, n_clusters: int, random_state: np.random.RandomState
) -> tuple[int, list[np.ndarray]]:
    """The random numbers one k-means++ seeding uses: (first row, uniforms for each later centre).

    They do not depend on the distances (a draw is scaled by the potential afterwards), so the
    seedings' numbers can be taken in order up front and the seedings then run on several threads,
    with the random stream used exactly as when they ran one after the other.
    """
    if sample_weight is None:
        first = random_state.randint(n_samples)
    else:
        first = random_state.choice(n_samples, p=sample_weight / sample_weight.sum())
    n_trials = 2 + int(math.log(n_clusters))
    return int(first), [random_state.uniform(size=n_trials) for _ in range(1, n_clusters)]


def _kmeans_plusplus_from(
    X: np.ndarray, sample_weight: np.ndarray | None, n_clusters: int, draws: tuple[int, list[np.ndarray]]
) -> np.ndarray:
    """:func:`kmeans_plusplus` from its random numbers (:func:`_kmeans_plusplus_draws`)."""
    n_samples = X.shape[0]
    sw = _NO_F64 if sample_weight is None else sample_weight
    first, uniforms = draws
    indices = np.empty(n_clusters, dtype=np.int64)
    indices[0] = first
    closest = np.empty(n_samples)
    _update_closest(X, np.asarray(X[first], dtype=np.float64), closest, True)
    for c in range(1, n_clusters):
        weighted = closest if sample_weight is None else closest * sample_weight
        cumulative = np.cumsum(weighted)
        potential = cumulative[-1]
        targets = uniforms[c - 1] * potential  # points on the cumulative potential
        candidates = np.minimum(np.searchsorted(cumulative, targets), n_samples - 1)
        del weighted, cumulative
        cand_rows = np.ascontiguousarray(X[candidates], dtype=np.float64)
        potentials = _candidate_potentials(X, sw, closest, cand_rows)
        best = int(np.argmin(potentials))
        indices[c] = candidates[best]
        _update_closest(X, cand_rows[best], closest, False)
    return indices


def _mean_variance(X: np.ndarray, sample_weight: np.ndarray | None) -> float:
    """Mean over features of the (weighted) variance, in chunks around row 0.

    Row-wise sums rather than BLAS products: the result must not depend on
    where the rows sit in memory.
    """
    shift = X[0].astype(np.float64)
    total_w = 0.0
    s1 = np.zeros(X.shape[1])
    s2 = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], _CHUNK):
        xc = X[start : start + _CHUNK] - shift
        if sample_weight is None:
            total_w += len(xc)
            s1 += xc.sum(axis=0)
            s2 += (xc * xc).sum(axis=0)
        else:
            w = sample_weight[start : start + _CHUNK, None]
            total_w += w.sum()
            s1 += (w * xc).sum(axis=0)
            s2 += (w * xc * xc).sum(axis=0)
    mean = s1 / total_w
    return float(np.mean(s2 / total_w - mean**2))


def lloyd(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    centers: np.ndarray,
    max_iter: int = LLOYD_MAX_ITER,
    tol: float = LLOYD_TOL,
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd iterations from ``centers``; returns (centers, labels).

    Stops when the squared center movement falls below ``tol`` times the mean
    feature variance (scikit-learn's rule). An empty cluster is moved to the
    row farthest from its center, as in scikit-learn: a center left where no
    row is nearest would give an empty mixture component.
    """
    centers, labels, _ = _lloyd(X, sample_weight, centers, max_iter, tol * _mean_variance(X, sample_weight))
    return centers, labels


def _lloyd(
    X: np.ndarray, sample_weight: np.ndarray | None, centers: np.ndarray, max_iter: int, tol_abs: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`lloyd` with an absolute tolerance, also returning the inertia of the last assignment."""
    n_samples = X.shape[0]
    n_clusters, n_features = centers.shape
    sw = _NO_F64 if sample_weight is None else sample_weight
    labels = np.empty(n_samples, dtype=np.int32)
    dists = np.empty(n_samples)
    centers = np.array(centers, dtype=np.float64)
    step = BLOCK_ROWS * max(4, min(1024, (8 * 2**20) // (8 * n_clusters * (n_features + 1))))
    inertia = np.zeros(1)
    for _ in range(max_iter):
        sums = np.zeros((n_clusters, n_features))
        counts = np.zeros(n_clusters)
        inertia = np.zeros(1)
        for start in range(0, n_samples, step):
            stop = min(n_samples, start + step)
            _lloyd_step(
                X[start:stop], sw[start:stop] if sw.size else _NO_F64, centers,
                labels[start:stop], dists[start:stop], sums, counts, inertia,
            )  # fmt: skip
        moved = np.zeros_like(centers)
        filled = counts > 0
        moved[filled] = sums[filled] / counts[filled, None]
        centers += moved
        if not filled.all() and _relocate_empty(X, sample_weight, centers, ~filled, dists):
            continue  # never stop right after a relocation
        if np.sum(moved**2) <= tol_abs:
            break
    return centers, labels, float(inertia[0])


def _relocate_empty(
    X: np.ndarray, sample_weight: np.ndarray | None, centers: np.ndarray, empty: np.ndarray, dists: np.ndarray
) -> bool:
    """Move each empty cluster's center to one of the rows farthest from their centers (in place).

    Rows of weight 0 are never chosen; returns False when no row is left to
    move to (all rows sit on their centers).
    """
    far = dists if sample_weight is None else np.where(sample_weight > 0, dists, -1.0)
    n_empty = int(empty.sum())
    n_take = min(n_empty, far.shape[0])
    rows = np.argpartition(far, far.shape[0] - n_take)[far.shape[0] - n_take :]
    rows = rows[np.argsort(-far[rows], kind="stable")]
    rows = rows[far[rows] > 0.0]
    if rows.size == 0:
        return False
    for k, row in zip(np.flatnonzero(empty), rows, strict=False):
        centers[k] = X[row]
        dists[row] = 0.0
    return True


def _distinct_rows(n_samples: int, m: int, random_state: np.random.RandomState) -> np.ndarray:
    """m distinct row indices drawn uniformly (every m-subset equally likely), sorted.

    Draws with replacement and tops up the duplicates: rejecting repeats, as a sequential draw
    without replacement does. ``RandomState.choice(replace=False)`` permutes all rows instead
    (12 ms at 1e6 rows, for 10,000), which was 8% of a default fit's initialisation.
    """
    if 4 * m > n_samples:  # many repeats: the permutation is cheaper
        return np.sort(random_state.choice(n_samples, size=m, replace=False))
    rows = np.unique(random_state.randint(n_samples, size=m))
    while rows.size < m:
        rows = np.union1d(rows, random_state.randint(n_samples, size=m - rows.size))
    return rows


def _seeding_sample(
    X: np.ndarray, sample_weight: np.ndarray | None, n_clusters: int, random_state: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Rows on which the seedings compete: ``(rows, weights, is_all)``.

    A uniform sample without replacement; with sample weights, a draw with
    probability proportional to the weight whose distinct rows carry their
    multiplicity as weight (so the sample estimates the weighted inertia).
    The size is bounded in bytes as well as in rows.
    """
    n_samples, n_features = X.shape
    m = max(SEEDING_SAMPLE_PER_COMPONENT * n_clusters, min(SEEDING_SAMPLE_ROWS, 2**25 // (8 * n_features)))
    if m >= n_samples:
        return X, sample_weight, True
    if sample_weight is None:
        return np.ascontiguousarray(X[_distinct_rows(n_samples, m, random_state)]), None, False
    drawn = random_state.choice(n_samples, size=m, replace=True, p=sample_weight / sample_weight.sum())
    rows, counts = np.unique(drawn, return_counts=True)
    return np.ascontiguousarray(X[rows]), counts.astype(np.float64), False


def kmeans(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    n_clusters: int,
    random_state: np.random.RandomState,
    n_seedings: int = N_SEEDINGS,
) -> tuple[np.ndarray, np.ndarray]:
    """k-means for initialisation: the best of several seedings on a sample, then Lloyd on all rows.

    Each of ``n_seedings`` greedy k-means++ seedings is refined by Lloyd on a
    sample of the rows (:func:`_seeding_sample`); the centers with the lowest
    sample inertia run to convergence there, then ``FULL_LLOYD_MAX_ITER``
    Lloyd iteration(s) on all rows assign every row (EM does the rest). One seeding (scikit-learn's
    default) falls into a merged-and-split local optimum whenever two seeds land
    in one cluster; the best of several rarely does, and the sample keeps the
    extra seedings cheap. Returns (centers, labels).
    """
    Xs, sws, is_all = _seeding_sample(X, sample_weight, n_clusters, random_state)
    # the stopping tolerance from the sample's variance: a pass over all rows costs as much as a
    # Lloyd iteration there, and the estimate is within a few percent
    tol_abs = LLOYD_TOL * _mean_variance(Xs, sws)
    draws = [_kmeans_plusplus_draws(Xs.shape[0], sws, n_clusters, random_state) for _ in range(n_seedings)]

    def seed_and_refine(seeding_draws):
        seeds = _kmeans_plusplus_from(Xs, sws, n_clusters, seeding_draws)
        return _lloyd(Xs, sws, np.asarray(Xs[seeds], dtype=np.float64), SEEDING_LLOYD_MAX_ITER, tol_abs)

    # the sample is small: each seeding runs on one thread, the seedings side by side, rather than
    # hundreds of short launches splitting each step's rows (those cost more than the work on a
    # busy machine). The result is that of the seedings one after the other, whatever the threads.
    refined = map_on_threads(seed_and_refine, draws)
    best = min(range(n_seedings), key=lambda i: refined[i][2])  # the first of equal inertias
    with thread_limit(1):
        centers, labels, _ = _lloyd(Xs, sws, refined[best][0], LLOYD_MAX_ITER, tol_abs)
    if is_all:
        return centers, labels
    centers, labels, _ = _lloyd(X, sample_weight, centers, FULL_LLOYD_MAX_ITER, tol_abs)
    return centers, labels


class HardLabels:
    """One-hot responsibilities of hard ``labels`` as a chunk function (see :func:`responsibility_chunks`).

    Kernels that can take the labels themselves read them from :func:`chunk_arguments` instead of
    K numbers per row.
    """

    def __init__(self, labels: np.ndarray, n_components: int) -> None:
        self.labels = np.ascontiguousarray(labels, dtype=np.int32)  # as k-means gives them: no copy
        self.n_components = n_components

    def __call__(self, start: int, stop: int) -> np.ndarray:
        resp = np.zeros((stop - start, self.n_components))
        resp[np.arange(stop - start), self.labels[start:stop]] = 1.0
        return resp


def chunk_arguments(resp_chunks, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(resp, labels) of rows start .. stop for ``_responsibility_moments``: hard labels when known."""
    if isinstance(resp_chunks, HardLabels):
        return np.empty((0, resp_chunks.n_components)), resp_chunks.labels[start:stop]
    return resp_chunks(start, stop), None


def _from_indices(indices: np.ndarray, n_components: int):
    def chunk(start: int, stop: int) -> np.ndarray:
        resp = np.zeros((stop - start, n_components))
        for col, row in enumerate(indices):
            if start <= row < stop:
                resp[row - start, col] = 1.0
        return resp

    return chunk


def _uniform_random(random_state: np.random.RandomState, n_components: int, n_samples: int):
    # RandomState draws sequentially, so per-chunk draws in row order equal one
    # (n_samples, K) draw; cache the chunks so that both passes see the same numbers.
    cache: dict[int, np.ndarray] = {}

    def chunk(start: int, stop: int) -> np.ndarray:
        if start not in cache:
            resp = random_state.uniform(size=(stop - start, n_components))
            cache[start] = resp / resp.sum(axis=1, keepdims=True)
        return cache[start]

    return chunk


def responsibility_chunks(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    n_components: int,
    init_params: str,
    random_state: np.random.RandomState,
    restart: int = 0,
):
    """Initial responsibilities as a chunk function, and the centres they came from.

    Returns ``(resp_chunks, centers)``: ``resp_chunks(start, stop)`` gives the
    (stop - start, K) responsibilities of those rows (hard for the k-means and
    seed methods, soft for "random"); ``centers`` is (K, D) float64, or None
    for "random". Families turn these into their initial statistics.
    ``restart``: the index of the initialisation (``n_init``). For "kmeans" the
    first one lets ``N_SEEDINGS`` k-means++ seedings compete (see :func:`kmeans`);
    later ones use a single seeding, because competing seedings mostly agree and
    restarts are there to explore other optima. The first initialisation
    of ``n_init=5`` is then that of ``n_init=1``, so more restarts never do worse.
    """
    n_samples = X.shape[0]
    if init_params == "kmeans":
        n_seedings = N_SEEDINGS if restart == 0 else 1
        centers, labels = kmeans(X, sample_weight, n_components, random_state, n_seedings)
        return HardLabels(labels, n_components), centers
    if init_params == "k-means++":
        seeds = kmeans_plusplus(X, sample_weight, n_components, random_state)
        return _from_indices(seeds, n_components), np.asarray(X[seeds], dtype=np.float64)
    if init_params == "random_from_data":
        p = None if sample_weight is None else sample_weight / sample_weight.sum()
        seeds = random_state.choice(n_samples, size=n_components, replace=False, p=p)
        return _from_indices(seeds, n_components), np.asarray(X[seeds], dtype=np.float64)
    return _uniform_random(random_state, n_components, n_samples), None  # "random"


def responsibility_sums(
    X: np.ndarray, sample_weight: np.ndarray | None, resp_chunks, n_components: int
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """(R, S1, weight sum, rows): R_k = sum w r_ik and raw S1_k = sum w r_ik x_i from given responsibilities.

    The first-moment statistics of the linear exponential families, summed in a
    numba kernel with ordered block partials (reproducible wherever the rows sit).
    """
    from ._kernels.seeding import _responsibility_moments

    n_samples, n_features = X.shape
    sw = _NO_F64 if sample_weight is None else sample_weight
    origin = np.zeros((n_components, n_features))
    R = np.zeros(n_components)
    S1 = np.zeros((n_components, n_features))
    S2 = np.zeros((n_components, 1, n_features))
    for start in range(0, n_samples, _CHUNK):
        stop = min(n_samples, start + _CHUNK)
        resp, labels = chunk_arguments(resp_chunks, start, stop)
        _responsibility_moments(
            X[start:stop], sw[start:stop] if sw.size else _NO_F64, resp, origin, 2, R, S1, S2, labels
        )
    weight_sum = float(n_samples if sample_weight is None else sample_weight.sum())
    return R, S1, weight_sum, n_samples
