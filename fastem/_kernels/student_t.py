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

Inside a block the Gaussian kernel's layout is reused: tiles of rows are
transposed into (D, T) float64 buffers so that rows sit in the SIMD lanes, the
full-covariance quadratic form and the weighted outer products are the Gaussian
kernel's register-blocked tile products (``gaussian_tiles``), and the
log-sum-exp uses its vectorised exp. The one log per row and component,
log1p(delta / nu), is kept for the M-step, where log u = log(nu + D) - log(nu)
- log1p(delta / nu). Everything runs in float64.

Packed layout: ``prec`` is (K, D, D) for full (code 0) and (K, 1, D) for diag
(code 2); ``S2`` has the same shapes.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._config import BLOCK_ROWS, DIAG_TILE_ROWS, TILE_ROWS, jit
from ._vector_width import prefer_wide_vectors
from .gaussian import _aligned, _exp_shifted_row
from .gaussian_tiles import _outer_upper_tile, _quadratic_form_tile


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
    inv_dof = np.empty(n_components)
    log_u_offset = np.empty(n_components)  # log(nu + D) - log(nu)
    for k in range(n_components):
        half_nd[k] = 0.5 * (dof[k] + n_features)
        inv_dof[k] = 1.0 / dof[k]
        log_u_offset[k] = np.log(dof[k] + n_features) - np.log(dof[k])

    for blk in prange(n_blocks):
        prefer_wide_vectors()  # 512-bit vectors in this loop body on AVX-512 hosts
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        tile_rows = DIAG_TILE_ROWS if cov_code == 2 else TILE_ROWS
        xt = _aligned(n_features, tile_rows, np.float64)
        xc = _aligned(n_features, tile_rows, np.float64)
        xw = _aligned(n_features, tile_rows, np.float64)
        a = _aligned(n_components, tile_rows, np.float64)
        delta = _aligned(n_components, tile_rows, np.float64)
        log1p_delta = _aligned(n_components, tile_rows, np.float64)
        q = _aligned(1, tile_rows, np.float64)[0]
        y = _aligned(1, tile_rows, np.float64)[0]
        z = _aligned(1, tile_rows, np.float64)[0]
        w = _aligned(1, tile_rows, np.float64)[0]
        ws = _aligned(1, tile_rows, np.float64)[0]
        wr = _aligned(1, tile_rows, np.float64)[0]
        wru = _aligned(1, tile_rows, np.float64)[0]
        mx = _aligned(1, tile_rows, np.float64)[0]
        s = _aligned(1, tile_rows, np.float64)[0]
        lse = _aligned(1, tile_rows, np.float64)[0]
        pbuf = _aligned(1, tile_rows, np.float64)[0]
        lbl = _aligned(1, tile_rows, np.int64)[0]
        ibuf = _aligned(1, tile_rows, np.int64)[0]
        fbuf = ibuf.view(np.float64)
        ll_sum = 0.0
        w_sum = 0.0
        worst = np.inf
        worst_row = 0
        for t0 in range(start, stop, tile_rows):
            nt = min(tile_rows, stop - t0)
            rows = X[t0 : t0 + nt]
            for d in range(n_features):
                column = rows[:, d]
                for b in range(nt):
                    xt[d, b] = np.float64(column[b])
            if has_weights:
                for b in range(nt):
                    w[b] = sample_weight[t0 + b]
            else:
                for b in range(nt):
                    w[b] = 1.0

            # E-step: delta, log1p(delta / nu) and the log-densities, with the running maximum
            for b in range(nt):
                mx[b] = -np.inf
                lbl[b] = 0
            for k in range(n_components):
                if cov_code == 0:
                    for d in range(n_features):
                        m = means[k, d]
                        for b in range(nt):
                            xc[d, b] = xt[d, b] - m
                    _quadratic_form_tile(xc, nt, prec, k, q, y, z)
                else:
                    for b in range(nt):
                        q[b] = 0.0
                    for d in range(n_features):
                        m = means[k, d]
                        p = prec[k, 0, d]
                        for b in range(nt):
                            v = (xt[d, b] - m) * p
                            q[b] += v * v
                c = log_norm[k]
                h = half_nd[k]
                r = inv_dof[k]
                for b in range(nt):
                    delta[k, b] = q[b]
                    log1p_delta[k, b] = np.log1p(q[b] * r)
                for b in range(nt):
                    v = c - h * log1p_delta[k, b]
                    a[k, b] = v
                    if v > mx[b]:
                        mx[b] = v
                        lbl[b] = k

            # log-sum-exp with the running maximum
            for b in range(nt):
                s[b] = 0.0
            for k in range(n_components):
                _exp_shifted_row(a, k, mx, nt, pbuf, ibuf, fbuf, s)
            for b in range(nt):
                if not s[b] > 0.0:
                    # every log-density is -inf: hard assignment to the first argmax
                    for k in range(n_components):
                        a[k, b] = 0.0
                    a[lbl[b], b] = 1.0
                    s[b] = 1.0
                    mx[b] = -np.inf
            for b in range(nt):
                lse[b] = mx[b] + np.log(s[b])
                s[b] = 1.0 / s[b]
            for b in range(nt):
                ll_sum += w[b] * lse[b] if w[b] > 0.0 else 0.0
                w_sum += w[b]
            for b in range(nt):
                if lse[b] < worst and w[b] > 0.0:
                    worst = lse[b]
                    worst_row = t0 + b
            if want_logprob:
                for b in range(nt):
                    out_logprob[t0 + b] = lse[b]
            if want_label:
                for b in range(nt):
                    out_label[t0 + b] = lbl[b]
            if want_resp:
                for b in range(nt):
                    for k in range(n_components):
                        out_resp[t0 + b, k] = a[k, b] * s[b]

            if not accumulate:
                continue
            for b in range(nt):
                ws[b] = w[b] * s[b]
            # M-step statistics around the shift means[k], weighted by r u
            for k in range(n_components):
                r_sum = 0.0
                for b in range(nt):
                    v = a[k, b] * ws[b]
                    wr[b] = v
                    r_sum += v
                if r_sum == 0.0:
                    continue  # every term is exactly zero
                nd = 2.0 * half_nd[k]
                nu = dof[k]
                offset = log_u_offset[k]
                u_sum = 0.0
                t_sum = 0.0
                for b in range(nt):
                    u = nd / (nu + delta[k, b])
                    v = wr[b] * u
                    wru[b] = v
                    u_sum += v
                    t_sum += wr[b] * ((offset - log1p_delta[k, b]) - u)
                part_R[blk, k] += r_sum
                part_U[blk, k] += u_sum
                part_T[blk, k] += t_sum
                if cov_code == 2:  # diag: both moments in one sweep
                    for d in range(n_features):
                        m = means[k, d]
                        s1 = 0.0
                        s2 = 0.0
                        for b in range(nt):
                            v = xt[d, b] - m
                            wv = wru[b] * v
                            s1 += wv
                            s2 += wv * v
                        part_S1[blk, k, d] += s1
                        part_S2[blk, k, 0, d] += s2
                    continue
                for d in range(n_features):
                    m = means[k, d]
                    s1 = 0.0
                    for b in range(nt):
                        v = xt[d, b] - m
                        xc[d, b] = v
                        v = v * wru[b]
                        xw[d, b] = v
                        s1 += v
                    part_S1[blk, k, d] += s1
                _outer_upper_tile(xw, xc, nt, part_S2, blk, k)
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
            if cov_code == 0:  # full: the upper triangle only (the tiles also touch a few lower entries)
                for k in range(s2a):
                    for d in range(n_features):
                        for e in range(d, n_features):
                            acc_S2[k, d, e] += part_S2[blk, k, d, e]
            else:
                for k in range(s2a):
                    for d in range(s2c):
                        acc_S2[k, 0, d] += part_S2[blk, k, 0, d]
