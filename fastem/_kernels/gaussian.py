"""Fused E-step + sufficient-statistics kernel for Gaussian mixtures (numba only).

One call processes a chunk of rows. The chunk is cut into blocks of
``BLOCK_ROWS`` rows, one block per parallel task; inside a block, tiles of
``TILE_ROWS`` rows (``DIAG_TILE_ROWS`` for diag/spherical) are transposed into a
small (D, T) buffer so that rows sit in the SIMD lanes while the loops run
component by component. Per tile:

1. a_kb = log pi_k + log N(x_b; mu_k, Sigma_k), from the Cholesky factor of the
   precision (``log_norm`` already holds log pi_k + log det U_k - D/2 log 2pi),
   with the running maximum over k and its argmax. The triangular product
   (x - m_k)^T U_k runs two columns of U per sweep over the tile, so each load
   of the centred tile feeds two FMAs;
2. log-sum-exp over k (the per-point log-likelihood), with a vectorised exp
   (values below e^-708 = 3e-308 are flushed to 0);
3. the weighted moments around the shift ``means`` (the current means):
   R_k += sum w r, S1_k += sum w r (x - m_k), S2_k += sum w r (x - m_k)(x - m_k)^T
   (upper triangle for full/tied in 2 x 4 register blocks, diagonal for
   diag/spherical). The normalisation 1 / sum_k exp(.) is folded into the
   weights w, so responsibilities are never normalised in place.

On AVX-512 hosts the loop body is compiled with 512-bit vectors (see
``_vector_width``); tile buffers start on 64-byte boundaries, so that no vector
load straddles two cache lines (unaligned, 512-bit code was slower than 256-bit).

Precision: for float32 data the tile and the quadratic form of step 1 are
float32 (``prec`` must then be float32 too); everything from the log-densities
on, and every accumulator, is float64. float64 data is float64 throughout.

Each block writes its own partial statistics; the partials are added into the
caller's accumulators serially, in block order, so results are independent of
the number of threads. No N x K or N x D temporary is created; the optional
outputs (per-point log-likelihood, label, responsibilities) are written in place.

Packed parameter layout (``prec`` and ``S2`` are always 3-D):

======== ============== ==============
cov code prec           S2
======== ============== ==============
0 full   (K, D, D) U_k  (K, D, D)
1 tied   (1, D, D) U    (1, D, D)
2 diag   (K, 1, D)      (K, 1, D)
3 sph    (K, 1, 1)      (K, 1, D)
======== ============== ==============

``U`` is upper triangular with precision = U U^T (scikit-learn's convention).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._config import BLOCK_ROWS, DIAG_TILE_ROWS, TILE_ROWS, jit
from ._reduce import add_block_moments
from ._vector_width import prefer_wide_vectors
from .gaussian_tiles import _outer_upper_tile, _quadratic_form_tile

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
#: exp(x) for x below this is < 1e-307; such responsibilities are flushed to 0.
_EXP_FLUSH = -708.0


@jit(inline="always")
def _aligned(n_rows, n_cols, dtype):
    """An uninitialised C-contiguous (n_rows, n_cols) array whose data start on a 64-byte boundary."""
    size = n_rows * n_cols
    raw = np.empty(size + 64, dtype=dtype)
    offset = ((64 - raw.ctypes.data % 64) % 64) // raw.itemsize
    return raw[offset : offset + size].reshape((n_rows, n_cols))


@jit(inline="always")
def _exp_shifted_row(a, k, mx, nt, pbuf, ibuf, fbuf, total):
    """a[k, b] <- exp(a[k, b] - mx[b]) and total[b] += a[k, b] for b < nt, in loops LLVM vectorises.

    Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, a degree-13 Taylor
    polynomial for exp(r) (truncation error < 1e-17) and 2^n built from its
    exponent bits. Relative error about 1 ulp, like libm, at a fraction of the
    cost, since libm's exp is a scalar call that blocks vectorisation.
    """
    for b in range(nt):
        shifted = a[k, b] - mx[b]
        x = max(shifted, _EXP_FLUSH)
        n = np.floor(x * _LOG2E + 0.5)
        r = x - n * _LN2_HI
        r = r - n * _LN2_LO
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        pbuf[b] = p
        # 2^n, or +0.0 (all bits clear) to flush
        ibuf[b] = (np.int64(n) + 1023) << 52 if shifted > _EXP_FLUSH else 0
    for b in range(nt):
        e = pbuf[b] * fbuf[b]
        a[k, b] = e
        total[b] += e


@jit(parallel=True)
def _gaussian_pass(
    X,
    sample_weight,
    log_norm,
    means,
    prec,
    cov_code,
    accumulate,
    row_offset,
    acc_R,
    acc_S1,
    acc_S2,
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
    part_S1 = np.zeros((n_acc, n_components, n_features))
    part_S2 = np.zeros((n_acc, s2a, s2b, s2c))
    part_ll = np.zeros(n_blocks)
    part_w = np.zeros(n_blocks)
    part_worst = np.full(n_blocks, np.inf)
    part_worst_row = np.zeros(n_blocks, dtype=np.int64)

    for blk in prange(n_blocks):
        prefer_wide_vectors()  # 512-bit vectors in this loop body on AVX-512 hosts
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        # E-step buffers in the data's precision (float32 data: twice the SIMD lanes);
        # M-step buffers and all accumulators in float64
        # diag/spherical tiles are cheap per row: longer tiles amortise the per-tile sweeps
        tile_rows = DIAG_TILE_ROWS if cov_code >= 2 else TILE_ROWS
        xt = _aligned(n_features, tile_rows, X.dtype)
        xe = _aligned(n_features, tile_rows, X.dtype)
        y = _aligned(1, tile_rows, X.dtype)[0]
        z = _aligned(1, tile_rows, X.dtype)[0]
        xc = _aligned(n_features, tile_rows, np.float64)
        xw = _aligned(n_features, tile_rows, np.float64)
        a = _aligned(n_components, tile_rows, np.float64)
        q = _aligned(1, tile_rows, np.float64)[0]
        w = _aligned(1, tile_rows, np.float64)[0]
        wr = _aligned(1, tile_rows, np.float64)[0]
        ws = _aligned(1, tile_rows, np.float64)[0]
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
                    xt[d, b] = column[b]
            if has_weights:
                for b in range(nt):
                    w[b] = sample_weight[t0 + b]
            else:
                for b in range(nt):
                    w[b] = 1.0

            # E-step: weighted log densities, component by component, with the
            # running maximum and its argmax
            for b in range(nt):
                mx[b] = -np.inf
                lbl[b] = 0
            for k in range(n_components):
                kp = 0 if cov_code == 1 else k
                if cov_code >= 2:  # diag/spherical: centre, scale and square in one sweep
                    for b in range(nt):
                        q[b] = 0.0
                    d = 0
                    # four features per sweep: one load and store of q per four squares
                    while d + 4 <= n_features:
                        m0 = means[k, d]
                        m1 = means[k, d + 1]
                        m2 = means[k, d + 2]
                        m3 = means[k, d + 3]
                        p0 = np.float64(prec[kp, 0, d] if cov_code == 2 else prec[kp, 0, 0])
                        p1 = np.float64(prec[kp, 0, d + 1] if cov_code == 2 else prec[kp, 0, 0])
                        p2 = np.float64(prec[kp, 0, d + 2] if cov_code == 2 else prec[kp, 0, 0])
                        p3 = np.float64(prec[kp, 0, d + 3] if cov_code == 2 else prec[kp, 0, 0])
                        for b in range(nt):
                            v0 = (xt[d, b] - m0) * p0
                            v1 = (xt[d + 1, b] - m1) * p1
                            v2 = (xt[d + 2, b] - m2) * p2
                            v3 = (xt[d + 3, b] - m3) * p3
                            q[b] += (v0 * v0 + v1 * v1) + (v2 * v2 + v3 * v3)
                        d += 4
                    while d < n_features:
                        m = means[k, d]
                        p = np.float64(prec[kp, 0, d] if cov_code == 2 else prec[kp, 0, 0])
                        for b in range(nt):
                            v = (xt[d, b] - m) * p
                            q[b] += v * v
                        d += 1
                else:
                    for d in range(n_features):
                        m = means[k, d]
                        for b in range(nt):
                            xe[d, b] = xt[d, b] - m
                    _quadratic_form_tile(xe, nt, prec, kp, q, y, z)
                c = log_norm[k]
                for b in range(nt):
                    v = c - 0.5 * q[b]
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
                    # every log-density overflowed to -inf (a point ~1e150 away):
                    # log-likelihood -inf, hard assignment to the first argmax
                    for k in range(n_components):
                        a[k, b] = 0.0
                    a[lbl[b], b] = 1.0
                    s[b] = 1.0
                    mx[b] = -np.inf
            # separate sweeps over b so that each one vectorises
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
            # responsibilities times sample weights: r_kb w_b = a_kb (w_b / sum_k a_kb)
            for b in range(nt):
                ws[b] = w[b] * s[b]
            # M-step statistics around the shift means[k]
            for k in range(n_components):
                r_sum = 0.0
                for b in range(nt):
                    v = a[k, b] * ws[b]
                    wr[b] = v
                    r_sum += v
                if r_sum == 0.0:
                    continue  # every term is exactly zero
                part_R[blk, k] += r_sum
                if cov_code >= 2:  # diag/spherical: both moments in one sweep, nothing stored
                    for d in range(n_features):
                        m = means[k, d]
                        s1 = 0.0
                        s2 = 0.0
                        for b in range(nt):
                            v = xt[d, b] - m
                            wv = wr[b] * v
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
                        v = v * wr[b]
                        xw[d, b] = v
                        s1 += v
                    part_S1[blk, k, d] += s1
                ks = 0 if cov_code == 1 else k
                _outer_upper_tile(xw, xc, nt, part_S2, blk, ks)
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
            add_block_moments(part_R, part_S1, part_S2, blk, acc_R, acc_S1, acc_S2)
