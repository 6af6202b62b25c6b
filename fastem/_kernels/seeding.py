"""k-means++ seeding and Lloyd iterations used by initialisation (numba only).

Reductions follow the package rule: one partial per block of ``BLOCK_ROWS``
rows, added serially in block order, so the result does not depend on the
thread count.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._config import BLOCK_ROWS, jit
from ._reduce import add_block_moments


@jit(parallel=True)
def _update_closest(X, center, closest, reset):
    """closest[i] = min(closest[i], ||x_i - center||^2) (or = when ``reset``)."""
    n_samples, n_features = X.shape
    for i in prange(n_samples):
        dist = 0.0
        for d in range(n_features):
            v = X[i, d] - center[d]
            dist += v * v
        if reset or dist < closest[i]:
            closest[i] = dist


@jit(parallel=True)
def _candidate_potentials(X, sample_weight, closest, candidates):
    """sum_i w_i min(closest_i, ||x_i - c_t||^2) for each candidate row c_t."""
    n_samples, n_features = X.shape
    n_candidates = candidates.shape[0]
    has_weights = sample_weight.shape[0] > 0
    n_blocks = (n_samples + BLOCK_ROWS - 1) // BLOCK_ROWS
    partial = np.zeros((n_blocks, n_candidates))
    for blk in prange(n_blocks):
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        for t in range(n_candidates):
            total = 0.0
            for i in range(start, stop):
                dist = 0.0
                for d in range(n_features):
                    v = X[i, d] - candidates[t, d]
                    dist += v * v
                dist = min(dist, closest[i])
                total += dist * sample_weight[i] if has_weights else dist
            partial[blk, t] = total
    out = np.zeros(n_candidates)
    for blk in range(n_blocks):
        for t in range(n_candidates):
            out[t] += partial[blk, t]
    return out


@jit(parallel=True)
def _lloyd_step(X, sample_weight, centers, labels, dists, acc_sums, acc_counts, acc_inertia):
    """Assign each row to its nearest center and accumulate per-cluster sums.

    ``dists[i]`` receives the squared distance of row i to its center (used to
    relocate an empty cluster to the farthest row).

    Sums are taken around the current centers (``acc_sums[k] += w (x - c_k)``)
    so that the update ``c_k + acc_sums[k] / acc_counts[k]`` stays accurate for
    data far from the origin.
    """
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    has_weights = sample_weight.shape[0] > 0
    n_blocks = (n_samples + BLOCK_ROWS - 1) // BLOCK_ROWS
    part_sums = np.zeros((n_blocks, n_clusters, n_features))
    part_counts = np.zeros((n_blocks, n_clusters))
    part_inertia = np.zeros(n_blocks)
    for blk in prange(n_blocks):
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        inertia = 0.0
        for i in range(start, stop):
            best = np.inf
            best_k = 0
            for k in range(n_clusters):
                dist = 0.0
                for d in range(n_features):
                    v = X[i, d] - centers[k, d]
                    dist += v * v
                if dist < best:
                    best = dist
                    best_k = k
            labels[i] = best_k
            dists[i] = best
            w = sample_weight[i] if has_weights else 1.0
            inertia += w * best
            part_counts[blk, best_k] += w
            for d in range(n_features):
                part_sums[blk, best_k, d] += w * (X[i, d] - centers[best_k, d])
        part_inertia[blk] = inertia
    for blk in range(n_blocks):
        acc_inertia[0] += part_inertia[blk]
        for k in range(n_clusters):
            acc_counts[k] += part_counts[blk, k]
            for d in range(n_features):
                acc_sums[k, d] += part_sums[blk, k, d]


@jit(parallel=True)
def _responsibility_moments(X, sample_weight, resp, shift, cov_code, acc_R, acc_S1, acc_S2):
    """Weighted moments around ``shift`` from given responsibilities (initialisation).

    acc_R[k] += sum_i w_i r_ik; acc_S1[k] += sum_i w_i r_ik (x_i - m_k);
    acc_S2 as in the fused kernel's packed layout (upper triangle for full/tied,
    diagonal for diag/spherical). Block partials merged in order: the result
    does not depend on the thread count or on where the arrays sit in memory
    (BLAS can round differently for different alignments).
    """
    n_samples, n_features = X.shape
    n_components = shift.shape[0]
    has_weights = sample_weight.shape[0] > 0
    n_blocks = (n_samples + BLOCK_ROWS - 1) // BLOCK_ROWS
    s2a, s2b, s2c = acc_S2.shape
    part_R = np.zeros((n_blocks, n_components))
    part_S1 = np.zeros((n_blocks, n_components, n_features))
    part_S2 = np.zeros((n_blocks, s2a, s2b, s2c))
    for blk in prange(n_blocks):
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        xc = np.empty(n_features)
        for i in range(start, stop):
            w = sample_weight[i] if has_weights else 1.0
            for k in range(n_components):
                wr = w * resp[i, k]
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
                        for e in range(d, n_features):
                            part_S2[blk, ks, d, e] += v * xc[e]
                else:
                    for d in range(n_features):
                        part_S2[blk, k, 0, d] += wr * xc[d] * xc[d]
    for blk in range(n_blocks):
        add_block_moments(part_R, part_S1, part_S2, blk, acc_R, acc_S1, acc_S2)
