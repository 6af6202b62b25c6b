"""Initial responsibilities: k-means (k-means++ seeding + Lloyd), k-means++, random, from data.

Every method yields responsibilities (hard or soft); each family turns their
weighted statistics into initial parameters (its M-step), as in scikit-learn,
and the user's ``*_init`` arrays then override the corresponding parts. All randomness comes from one
``numpy.random.RandomState``, so a fit is reproducible from ``random_state``.
Memory: O(n_samples) for the k-means distances and labels, plus chunks of
``_CHUNK`` rows; never an N x K array.
"""

from __future__ import annotations

import math

import numpy as np

from ._kernels._config import BLOCK_ROWS
from ._kernels.seeding import _candidate_potentials, _lloyd_step, _update_closest

_CHUNK = 16 * BLOCK_ROWS
_NO_F64 = np.empty(0)

#: Lloyd iteration cap and tolerance (relative to the mean feature variance).
LLOYD_MAX_ITER = 100
LLOYD_TOL = 1e-4


def kmeans_plusplus(
    X: np.ndarray, sample_weight: np.ndarray | None, n_clusters: int, random_state: np.random.RandomState
) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007), weighted.

    Each new center is the best of ``2 + log(k)`` candidates drawn with
    probability proportional to w_i * D(x_i)^2. Returns the chosen row indices.
    """
    n_samples = X.shape[0]
    sw = _NO_F64 if sample_weight is None else sample_weight
    n_trials = 2 + int(math.log(n_clusters))
    if sample_weight is None:
        first = random_state.randint(n_samples)
    else:
        first = random_state.choice(n_samples, p=sample_weight / sample_weight.sum())
    indices = np.empty(n_clusters, dtype=np.int64)
    indices[0] = first
    closest = np.empty(n_samples)
    _update_closest(X, np.asarray(X[first], dtype=np.float64), closest, True)
    for c in range(1, n_clusters):
        weighted = closest if sample_weight is None else closest * sample_weight
        cumulative = np.cumsum(weighted)
        potential = cumulative[-1]
        draws = random_state.uniform(size=n_trials) * potential
        candidates = np.minimum(np.searchsorted(cumulative, draws), n_samples - 1)
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
    feature variance. An empty cluster keeps its previous center.
    """
    n_samples = X.shape[0]
    n_clusters, n_features = centers.shape
    sw = _NO_F64 if sample_weight is None else sample_weight
    tol_abs = tol * _mean_variance(X, sample_weight)
    labels = np.empty(n_samples, dtype=np.int32)
    centers = np.array(centers, dtype=np.float64)
    step = BLOCK_ROWS * max(4, min(1024, (8 * 2**20) // (8 * n_clusters * (n_features + 1))))
    for _ in range(max_iter):
        sums = np.zeros((n_clusters, n_features))
        counts = np.zeros(n_clusters)
        inertia = np.zeros(1)
        for start in range(0, n_samples, step):
            stop = min(n_samples, start + step)
            _lloyd_step(
                X[start:stop], sw[start:stop] if sw.size else _NO_F64, centers,
                labels[start:stop], sums, counts, inertia,
            )  # fmt: skip
        moved = np.zeros_like(centers)
        filled = counts > 0
        moved[filled] = sums[filled] / counts[filled, None]
        centers += moved
        if np.sum(moved**2) <= tol_abs:
            break
    return centers, labels


def _one_hot(labels: np.ndarray, n_components: int):
    def chunk(start: int, stop: int) -> np.ndarray:
        resp = np.zeros((stop - start, n_components))
        resp[np.arange(stop - start), labels[start:stop]] = 1.0
        return resp

    return chunk


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
):
    """Initial responsibilities as a chunk function, and the centres they came from.

    Returns ``(resp_chunks, centers)``: ``resp_chunks(start, stop)`` gives the
    (stop - start, K) responsibilities of those rows (hard for the k-means and
    seed methods, soft for "random"); ``centers`` is (K, D) float64, or None
    for "random". Families turn these into their initial statistics.
    """
    n_samples = X.shape[0]
    if init_params == "kmeans":
        seeds = kmeans_plusplus(X, sample_weight, n_components, random_state)
        centers, labels = lloyd(X, sample_weight, np.asarray(X[seeds], dtype=np.float64))
        return _one_hot(labels, n_components), centers
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
        _responsibility_moments(
            X[start:stop], sw[start:stop] if sw.size else _NO_F64, resp_chunks(start, stop),
            origin, 2, R, S1, S2,
        )  # fmt: skip
    weight_sum = float(n_samples if sample_weight is None else sample_weight.sum())
    return R, S1, weight_sum, n_samples
