"""Fused E-step + sufficient-statistics kernel for Student-t mixtures (numba only).

One pass over a chunk of rows computes, per row and component,

    delta_ik = ||U_k^T (x_i - mu_k)||^2          (U_k: precision Cholesky; diag: 1/sigma)
    a_ik = log_norm_k - (nu_k + D)/2 log(1 + delta_ik / nu_k)
    r_ik = softmax_k(a_ik),   u_ik = (nu_k + D) / (nu_k + delta_ik)

(``log_norm_k = log pi_k + log det U_k + lgamma((nu_k+D)/2) - lgamma(nu_k/2) - D/2 log(nu_k pi)``,
precomputed by the caller) and the ECM statistics around the shift m_k = mu_k:

    R_k = sum w r,  U_k = sum w r u,  S1_k = sum w r u (x - m_k),
    S2_k = sum w r u (x - m_k)(x - m_k)^T (full: upper triangle; diag: diagonal),
    T_k = sum w r (log u - u).

The chunk is cut into blocks of ``BLOCK_ROWS`` rows, one block per parallel
task; each block writes its own partials, which are added into the caller's
accumulators serially in block order, so results do not depend on the thread
count, and any chunking into multiples of ``BLOCK_ROWS`` gives the same bits.
Everything runs in float64, row by row (a first, simple version: no tiling).

Packed layout: ``prec`` is (K, D, D) for full (code 0) and (K, 1, D) for diag
(code 2); ``S2`` has the same shapes.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._config import BLOCK_ROWS, jit


@jit(parallel=True)
def _student_t_pass(
    X,
    sample_weight,
    log_norm,
    means,
    prec,
    dof,
    cov_code,
    accumulate,
    row_offset,
    acc_R,
    acc_U,
    acc_S1,
    acc_S2,
    acc_T,
    acc_scalars,
    acc_worst_index,
    acc_worst_x,
    out_logprob,
    out_label,
    out_resp,
):
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    n_blocks = (n_samples + BLOCK_ROWS - 1) // BLOCK_ROWS
    has_weights = sample_weight.shape[0] > 0
    want_logprob = out_logprob.shape[0] > 0
    want_label = out_label.shape[0] > 0
    want_resp = out_resp.shape[0] > 0
    n_acc = n_blocks if accumulate else 0
    s2a, s2b, s2c = acc_S2.shape

    part_R = np.zeros((n_acc, n_components))
    part_U = np.zeros((n_acc, n_components))
    part_T = np.zeros((n_acc, n_components))
    part_S1 = np.zeros((n_acc, n_components, n_features))
    part_S2 = np.zeros((n_acc, s2a, s2b, s2c))
    part_ll = np.zeros(n_blocks)
    part_w = np.zeros(n_blocks)
    part_worst = np.full(n_blocks, np.inf)
    part_worst_row = np.zeros(n_blocks, dtype=np.int64)
    half_nd = np.empty(n_components)
    for k in range(n_components):
        half_nd[k] = 0.5 * (dof[k] + n_features)

    for blk in prange(n_blocks):
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        x = np.empty(n_features)
        diff = np.empty(n_features)
        a = np.empty(n_components)
        delta = np.empty(n_components)
        ll_sum = 0.0
        w_sum = 0.0
        worst = np.inf
        worst_row = 0
        for i in range(start, stop):
            w = sample_weight[i] if has_weights else 1.0
            for d in range(n_features):
                x[d] = np.float64(X[i, d])
            mx = -np.inf
            lbl = 0
            for k in range(n_components):
                q = 0.0
                if cov_code == 0:
                    for d in range(n_features):
                        diff[d] = x[d] - means[k, d]
                    for j in range(n_features):
                        y = 0.0
                        for d in range(j + 1):
                            y += diff[d] * prec[k, d, j]
                        q += y * y
                else:
                    for d in range(n_features):
                        v = (x[d] - means[k, d]) * prec[k, 0, d]
                        q += v * v
                delta[k] = q
                v = log_norm[k] - half_nd[k] * np.log1p(q / dof[k])
                a[k] = v
                if v > mx:
                    mx = v
                    lbl = k
            s = 0.0
            if mx > -np.inf:
                for k in range(n_components):
                    e = np.exp(a[k] - mx)
                    a[k] = e
                    s += e
                lse = mx + np.log(s)
                inv = 1.0 / s
                for k in range(n_components):
                    a[k] *= inv
            else:  # every log-density is -inf: hard assignment to the first argmax
                for k in range(n_components):
                    a[k] = 0.0
                a[lbl] = 1.0
                lse = -np.inf
            if w > 0.0:
                ll_sum += w * lse
                if lse < worst:
                    worst = lse
                    worst_row = i
            w_sum += w
            if want_logprob:
                out_logprob[i] = lse
            if want_label:
                out_label[i] = lbl
            if want_resp:
                for k in range(n_components):
                    out_resp[i, k] = a[k]
            if not accumulate:
                continue
            for k in range(n_components):
                wr = w * a[k]
                if wr == 0.0:
                    continue
                u = (2.0 * half_nd[k]) / (dof[k] + delta[k])
                wru = wr * u
                part_R[blk, k] += wr
                part_U[blk, k] += wru
                part_T[blk, k] += wr * (np.log(u) - u)
                for d in range(n_features):
                    diff[d] = x[d] - means[k, d]
                    part_S1[blk, k, d] += wru * diff[d]
                if cov_code == 0:
                    for d in range(n_features):
                        c = wru * diff[d]
                        for e in range(d, n_features):
                            part_S2[blk, k, d, e] += c * diff[e]
                else:
                    for d in range(n_features):
                        part_S2[blk, k, 0, d] += wru * diff[d] * diff[d]
        part_ll[blk] = ll_sum
        part_w[blk] = w_sum
        part_worst[blk] = worst
        part_worst_row[blk] = worst_row

    # serial, ordered merge: independent of the thread count
    for blk in range(n_blocks):
        acc_scalars[0] += part_ll[blk]
        acc_scalars[1] += part_w[blk]
        acc_scalars[3] += min(BLOCK_ROWS, n_samples - blk * BLOCK_ROWS)
        if part_worst[blk] < acc_scalars[2]:
            acc_scalars[2] = part_worst[blk]
            acc_worst_index[0] = row_offset + part_worst_row[blk]
            for d in range(n_features):
                acc_worst_x[d] = X[part_worst_row[blk], d]
        if accumulate:
            for k in range(n_components):
                acc_R[k] += part_R[blk, k]
                acc_U[k] += part_U[blk, k]
                acc_T[k] += part_T[blk, k]
                for d in range(n_features):
                    acc_S1[k, d] += part_S1[blk, k, d]
            for i in range(s2a):
                for j in range(s2b):
                    for d in range(s2c):
                        acc_S2[i, j, d] += part_S2[blk, i, j, d]
