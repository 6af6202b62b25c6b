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

The chunk is cut into blocks of ``BLOCK_ROWS`` rows; threads take contiguous
ranges of blocks (:func:`fastem._kernels._blocks.run_blocks`, serial ``nogil``
kernels, which compile several times faster than ``parallel=True``); each block
writes its own partials, which are added into the caller's accumulators
serially in block order, so results do not depend on the thread count, and any
chunking into multiples of ``BLOCK_ROWS`` gives the same bits.

Inside a block the Gaussian kernel's layout is reused: tiles of rows are
transposed into (D, T) float64 buffers so that rows sit in the SIMD lanes, the
full-covariance quadratic form and the weighted outer products are the Gaussian
kernel's register-blocked tile products (``gaussian_tiles``), and the
log-sum-exp is its tile finish (vectorised exp, outputs). The one log per row and component,
log1p(delta / nu), is kept for the M-step, where log u = log(nu + D) - log(nu)
- log1p(delta / nu). Everything runs in float64.

Packed layout: ``prec`` is (K, D, D) for full (code 0) and (K, 1, D) for diag
(code 2); ``S2`` has the same shapes.
"""

from __future__ import annotations

import numpy as np

from ._blocks import add_partials, merge_block_scalars, n_blocks_of, run_blocks
from ._config import BLOCK_ROWS, DIAG_TILE_ROWS, TILE_ROWS, jit
from ._vector_width import prefer_wide_vectors
from .gaussian import _aligned, _finish_tile_into
from .gaussian_tiles import _outer_upper_tile, _quadratic_form_tile
from .tile_rows import load_tile


@jit()
def _blocks_student_t(
    X, sample_weight, log_norm, means, prec, dof, diag, accumulate, part_R, part_U, part_T, part_S1,
    part_S2, part_sums, part_worst, part_worst_row, out_logprob, out_label, out_resp, blk_start, blk_stop,
):  # fmt: skip
    """Blocks ``blk_start`` to ``blk_stop`` (exclusive): full (``prec`` (K, D, D)) or diag ((K, 1, D))."""
    prefer_wide_vectors()  # 512-bit vectors in this function on AVX-512 hosts
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    tile_rows = DIAG_TILE_ROWS if diag else TILE_ROWS
    half_nd = np.empty(n_components)
    log_u_offset = np.empty(n_components)  # log(nu + D) - log(nu)
    for k in range(n_components):
        half_nd[k] = 0.5 * (dof[k] + n_features)
        log_u_offset[k] = np.log(dof[k] + n_features) - np.log(dof[k])
    # one aligned allocation per element type: every row starts on a 64-byte boundary
    wide = _aligned(3 * n_features + 3 * n_components + 12, tile_rows, np.float64)
    xt = wide[:n_features]
    xc = wide[n_features : 2 * n_features]
    xw = wide[2 * n_features : 3 * n_features]
    row = 3 * n_features
    a = wide[row : row + n_components]
    delta = wide[row + n_components : row + 2 * n_components]
    log1p_delta = wide[row + 2 * n_components : row + 3 * n_components]
    row += 3 * n_components
    q = wide[row]
    y = wide[row + 1]
    z = wide[row + 2]
    w = wide[row + 3]
    ws = wide[row + 4]
    wr = wide[row + 5]
    wru = wide[row + 6]
    mx = wide[row + 7]
    s = wide[row + 8]
    lse = wide[row + 9]
    pbuf = wide[row + 10]
    ints = _aligned(2, tile_rows, np.int64)
    lbl = ints[0]
    bits = ints[1].view(np.float64)  # the exponentials' 2^n, built from integer bits
    for blk in range(blk_start, blk_stop):
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        ll_sum = 0.0
        w_sum = 0.0
        worst = np.inf
        worst_row = 0
        for t0 in range(start, stop, tile_rows):
            nt = min(tile_rows, stop - t0)
            load_tile(X, sample_weight, t0, nt, xt, w)

            # E-step: delta, log1p(delta / nu) and the log-densities, with the running maximum
            for b in range(nt):
                mx[b] = -np.inf
                lbl[b] = 0
            for k in range(n_components):
                if diag:
                    for b in range(nt):
                        q[b] = 0.0
                    for d in range(n_features):
                        m = means[k, d]
                        p = prec[k, 0, d]
                        for b in range(nt):
                            v = (xt[d, b] - m) * p
                            q[b] += v * v
                else:
                    for d in range(n_features):
                        m = means[k, d]
                        for b in range(nt):
                            xc[d, b] = xt[d, b] - m
                    _quadratic_form_tile(xc, nt, prec, k, q, y, z)
                c = log_norm[k]
                h = half_nd[k]
                r = 1.0 / dof[k]
                for b in range(nt):
                    delta[k, b] = q[b]
                    log1p_delta[k, b] = np.log1p(q[b] * r)
                for b in range(nt):
                    v = c - h * log1p_delta[k, b]
                    a[k, b] = v
                    if v > mx[b]:
                        mx[b] = v
                        lbl[b] = k
            ll_sum, w_sum, worst, worst_row = _finish_tile_into(
                a, a, nt, t0, w, mx, lbl, s, lse, ws, pbuf, bits, out_logprob, out_label, out_resp,
                ll_sum, w_sum, worst, worst_row,
            )  # fmt: skip
            if not accumulate:
                continue
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
                if diag:  # both moments in one sweep
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
        part_sums[blk, 0] = ll_sum
        part_sums[blk, 1] = w_sum
        part_worst[blk] = worst
        part_worst_row[blk] = worst_row


def _student_t_pass(
    X, sample_weight, log_norm, means, prec, dof, cov_code, accumulate, row_offset, acc_R, acc_U, acc_S1,
    acc_S2, acc_T, acc_scalars, acc_worst_index, acc_worst_x, out_logprob, out_label, out_resp,
):  # fmt: skip
    """One fused E-step + ECM statistics pass over the rows of ``X`` (see the module docstring)."""
    n_samples, n_features = X.shape
    n_blocks = n_blocks_of(n_samples)
    n_acc = n_blocks if accumulate else 0
    part_R = np.zeros((n_acc, *acc_R.shape))
    part_U = np.zeros((n_acc, *acc_U.shape))
    part_T = np.zeros((n_acc, *acc_T.shape))
    part_S1 = np.zeros((n_acc, *acc_S1.shape))
    part_S2 = np.zeros((n_acc, *acc_S2.shape))
    part_sums = np.zeros((n_blocks, 2))  # per block: log-likelihood, weight
    part_worst = np.zeros(n_blocks)  # per block: the lowest log-likelihood and its row
    part_worst_row = np.zeros(n_blocks, dtype=np.int64)
    run_blocks(
        _blocks_student_t, n_blocks, X, sample_weight, log_norm, means, prec, dof, cov_code == 2, accumulate,
        part_R, part_U, part_T, part_S1, part_S2, part_sums, part_worst, part_worst_row, out_logprob,
        out_label, out_resp,
    )  # fmt: skip
    # serial merge in block order: independent of the thread count
    merge_block_scalars(part_sums, part_worst, part_worst_row, X, row_offset, acc_scalars, acc_worst_index,
                        acc_worst_x)  # fmt: skip
    if accumulate:
        add_partials(part_R, acc_R)
        add_partials(part_U, acc_U)
        add_partials(part_T, acc_T)
        add_partials(part_S1, acc_S1)
        if cov_code == 0:  # full: the upper triangle only (the tiles also touch a few lower entries)
            part_S2 *= np.triu(np.ones((n_features, n_features)))
        add_partials(part_S2, acc_S2)
