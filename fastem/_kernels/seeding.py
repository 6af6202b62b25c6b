"""k-means++ seeding and Lloyd iterations used by initialisation (numba only).

Reductions follow the package rule: one partial per block of ``BLOCK_ROWS``
rows, added serially in block order, so the result does not depend on the
thread count. Each public function is a thin Python driver: a serial ``nogil``
kernel over a range of blocks runs on several threads (:mod:`._blocks`, which
says why this compiles faster than ``parallel=True``), then the partials are
merged.
"""

from __future__ import annotations

import numpy as np

from ._blocks import add_partials, n_blocks_of, run_blocks
from ._config import BLOCK_ROWS, jit
from ._linked import linked_jit
from ._simd import vbroadcast, vload, vsquare_add, vstore, vsub, vzero
from .tile_rows import transpose_rows

_NO_LABELS = np.empty(0, dtype=np.int32)

#: Rows per transposed tile of the distance kernels (a multiple of 8, the float64 lanes): 64 rows
#: of 16 features are 8 KiB, in L1 with their distances. 64 was 0.46-0.64x the old row-by-row
#: kernel's time at 1e4 and 1e6 rows (D=16, K=16 and D=64, K=32); 128 and 256 were no faster.
DISTANCE_TILE_ROWS = 64


@linked_jit()
def _tile_distances(xt, nt, centers, dist):
    """dist[k, r] = ||xt[:, r] - centers[k]||^2 for the tile's rows r < nt (rounded up to 8).

    Rows sit in the vector lanes and four centres share each row vector, so a
    feature costs one load, four subtractions and four fused multiply-adds for
    8 x 4 distances: no horizontal sums. Each distance adds its features in
    order, whatever the tile (lanes past ``nt`` hold the tile's stale rows and
    are ignored). Compiled on its own and inlined by LLVM (see :mod:`._linked`).
    """
    n_clusters, n_features = centers.shape
    k4 = n_clusters - n_clusters % 4
    for r in range(0, nt, 8):
        for k in range(0, k4, 4):
            a0 = vzero(xt)
            a1 = vzero(xt)
            a2 = vzero(xt)
            a3 = vzero(xt)
            for d in range(n_features):
                x = vload(xt, d, r)
                a0 = vsquare_add(vsub(x, vbroadcast(centers, k, d)), a0)
                a1 = vsquare_add(vsub(x, vbroadcast(centers, k + 1, d)), a1)
                a2 = vsquare_add(vsub(x, vbroadcast(centers, k + 2, d)), a2)
                a3 = vsquare_add(vsub(x, vbroadcast(centers, k + 3, d)), a3)
            vstore(dist, k, r, a0)
            vstore(dist, k + 1, r, a1)
            vstore(dist, k + 2, r, a2)
            vstore(dist, k + 3, r, a3)
        for k in range(k4, n_clusters):
            a0 = vzero(xt)
            for d in range(n_features):
                a0 = vsquare_add(vsub(vload(xt, d, r), vbroadcast(centers, k, d)), a0)
            vstore(dist, k, r, a0)


@jit()
def _update_closest_blocks(X, center, closest, reset, blk_start, blk_stop):
    n_samples, n_features = X.shape
    for i in range(blk_start * BLOCK_ROWS, min(blk_stop * BLOCK_ROWS, n_samples)):
        dist = 0.0
        for d in range(n_features):
            v = X[i, d] - center[d]
            dist += v * v
        if reset or dist < closest[i]:
            closest[i] = dist


def _update_closest(X, center, closest, reset):
    """closest[i] = min(closest[i], ||x_i - center||^2) (or = when ``reset``)."""
    run_blocks(_update_closest_blocks, n_blocks_of(X.shape[0]), X, center, closest, reset)


@jit()
def _candidate_potential_blocks(X, sample_weight, closest, candidates, partial, blk_start, blk_stop):
    n_samples, n_features = X.shape
    n_candidates = candidates.shape[0]
    has_weights = sample_weight.shape[0] > 0
    xt = np.zeros((n_features, DISTANCE_TILE_ROWS))
    dist = np.empty((n_candidates, DISTANCE_TILE_ROWS))
    for blk in range(blk_start, blk_stop):
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        for t in range(n_candidates):
            partial[blk, t] = 0.0
        for t0 in range(start, stop, DISTANCE_TILE_ROWS):
            nt = min(DISTANCE_TILE_ROWS, stop - t0)
            transpose_rows(X, t0, nt, xt)
            _tile_distances(xt, nt, candidates, dist)
            for t in range(n_candidates):
                total = 0.0
                for r in range(nt):
                    d2 = min(dist[t, r], closest[t0 + r])
                    total += d2 * sample_weight[t0 + r] if has_weights else d2
                partial[blk, t] += total


def _candidate_potentials(X, sample_weight, closest, candidates):
    """sum_i w_i min(closest_i, ||x_i - c_t||^2) for each candidate row c_t."""
    n_blocks = n_blocks_of(X.shape[0])
    partial = np.zeros((n_blocks, candidates.shape[0]))
    run_blocks(_candidate_potential_blocks, n_blocks, X, sample_weight, closest, candidates, partial)
    out = np.zeros(candidates.shape[0])
    add_partials(partial, out)
    return out


@jit()
def _lloyd_blocks(
    X, sample_weight, centers, labels, dists, part_sums, part_counts, part_inertia, blk_start, blk_stop
):
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    has_weights = sample_weight.shape[0] > 0
    xt = np.zeros((n_features, DISTANCE_TILE_ROWS))
    dist = np.empty((n_clusters, DISTANCE_TILE_ROWS))
    best = np.empty(DISTANCE_TILE_ROWS)
    best_k = np.empty(DISTANCE_TILE_ROWS, dtype=np.int64)
    for blk in range(blk_start, blk_stop):
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        inertia = 0.0
        for t0 in range(start, stop, DISTANCE_TILE_ROWS):
            nt = min(DISTANCE_TILE_ROWS, stop - t0)
            transpose_rows(X, t0, nt, xt)
            _tile_distances(xt, nt, centers, dist)
            # the nearest centre, the first of equals (np.argmin's rule), with rows in the lanes
            for r in range(nt):
                best[r] = dist[0, r]
                best_k[r] = 0
            for k in range(1, n_clusters):
                for r in range(nt):
                    if dist[k, r] < best[r]:
                        best[r] = dist[k, r]
                        best_k[r] = k
            for r in range(nt):
                i = t0 + r
                k = best_k[r]
                labels[i] = k
                dists[i] = best[r]
                w = sample_weight[i] if has_weights else 1.0
                inertia += w * best[r]
                part_counts[blk, k] += w
                for d in range(n_features):
                    part_sums[blk, k, d] += w * (X[i, d] - centers[k, d])
        part_inertia[blk, 0] = inertia


def _lloyd_step(X, sample_weight, centers, labels, dists, acc_sums, acc_counts, acc_inertia):
    """Assign each row to its nearest center and accumulate per-cluster sums.

    ``dists[i]`` receives the squared distance of row i to its center (used to
    relocate an empty cluster to the farthest row).

    Sums are taken around the current centers (``acc_sums[k] += w (x - c_k)``)
    so that the update ``c_k + acc_sums[k] / acc_counts[k]`` stays accurate for
    data far from the origin.
    """
    n_blocks = n_blocks_of(X.shape[0])
    n_clusters, n_features = centers.shape
    part_sums = np.zeros((n_blocks, n_clusters, n_features))
    part_counts = np.zeros((n_blocks, n_clusters))
    part_inertia = np.zeros((n_blocks, 1))
    run_blocks(
        _lloyd_blocks, n_blocks, X, sample_weight, centers, labels, dists, part_sums, part_counts,
        part_inertia,
    )  # fmt: skip
    add_partials(part_inertia, acc_inertia)
    add_partials(part_counts, acc_counts)
    add_partials(part_sums, acc_sums)


@jit()
def _responsibility_moment_blocks(
    X, sample_weight, resp, labels, shift, cov_code, part_R, part_S1, part_S2, blk_start, blk_stop
):
    n_samples, n_features = X.shape
    n_components = shift.shape[0]
    has_weights = sample_weight.shape[0] > 0
    # hard labels: row i has responsibility 1 for component labels[i] only (``resp`` is then empty);
    # the same sums as its one-hot rows (w * 1.0 is w), without reading K numbers per row
    hard = labels.shape[0] > 0
    xc = np.empty(n_features)
    # full/tied: whole D x D products into a block-local square (unit stride, fixed length: the
    # inner loop vectorises), then its upper triangle is copied out. Each entry still sums the
    # same terms in row order, so the result is that of the triangular loop, bit for bit.
    square = np.zeros((part_S2.shape[1] if cov_code <= 1 else 0, n_features, n_features))
    for blk in range(blk_start, blk_stop):
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        square[:] = 0.0
        for i in range(start, stop):
            w = sample_weight[i] if has_weights else 1.0
            k_first = labels[i] if hard else 0
            for k in range(k_first, k_first + 1 if hard else n_components):
                wr = w if hard else w * resp[i, k]
                if wr == 0.0:
                    continue
                part_R[blk, k] += wr
                for d in range(n_features):
                    xc[d] = X[i, d] - shift[k, d]
                    part_S1[blk, k, d] += wr * xc[d]
                if cov_code <= 1:
                    ks = 0 if cov_code == 1 else k
                    for d in range(n_features):
                        v = wr * xc[d]
                        for e in range(n_features):
                            square[ks, d, e] += v * xc[e]
                else:
                    for d in range(n_features):
                        part_S2[blk, k, 0, d] += wr * xc[d] * xc[d]
        for ks in range(square.shape[0]):
            for d in range(n_features):
                for e in range(d, n_features):
                    part_S2[blk, ks, d, e] = square[ks, d, e]


def _responsibility_moments(X, sample_weight, resp, shift, cov_code, acc_R, acc_S1, acc_S2, labels=None):
    """Weighted moments around ``shift`` from given responsibilities (initialisation).

    ``resp`` (N, K), or hard ``labels`` (N,) with an empty ``resp``: r_ik = 1 if labels[i] == k, else 0
    (the same sums as the one-hot ``resp``, bit for bit, reading one number per row instead of K:
    at 1e6 x 16, K=16 the k-means initialisation's moments took 0.70x the time, 2 threads, load 1.9).
    acc_R[k] += sum_i w_i r_ik; acc_S1[k] += sum_i w_i r_ik (x_i - m_k);
    acc_S2 as in the fused kernel's packed layout (upper triangle for full/tied,
    diagonal for diag/spherical). Block partials merged in order: the result
    does not depend on the thread count or on where the arrays sit in memory
    (BLAS can round differently for different alignments).
    """
    n_blocks = n_blocks_of(X.shape[0])
    part_R = np.zeros((n_blocks, *acc_R.shape))
    part_S1 = np.zeros((n_blocks, *acc_S1.shape))
    part_S2 = np.zeros((n_blocks, *acc_S2.shape))
    labels = _NO_LABELS if labels is None else labels
    run_blocks(
        _responsibility_moment_blocks, n_blocks, X, sample_weight, resp, labels, shift, cov_code, part_R,
        part_S1, part_S2,
    )  # fmt: skip
    add_partials(part_R, acc_R)
    add_partials(part_S1, acc_S1)
    add_partials(part_S2, acc_S2)
