"""Fused E-step + sufficient-statistics kernel for Gaussian mixtures (numba only).

One call of :func:`_gaussian_pass` processes a chunk of rows. The chunk is cut
into blocks of ``BLOCK_ROWS`` rows, and each thread runs a contiguous range of
blocks (:func:`._blocks.run_blocks`); inside a block, tiles of ``TILE_ROWS``
rows (``DIAG_TILE_ROWS`` for diag/spherical) are transposed into a small
(D, T) buffer so that rows sit in the SIMD lanes while the loops run component
by component. Per tile:

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

On AVX-512 hosts the kernels are compiled with 512-bit vectors (see
``_vector_width``); tile buffers start on 64-byte boundaries, so that no vector
load straddles two cache lines (unaligned, 512-bit code was slower than 256-bit).

Compile time: full/tied and diag/spherical are two kernels, each compiled only
when a fit first needs it (per dtype), and neither uses ``parallel=True``
(see ``_blocks``): the full/tied kernel compiles in about a quarter of the
time the single four-in-one parallel kernel took (6 s against 26 s here).

Precision: for float32 data the tile and the quadratic form of step 1 are
float32 (``prec`` must then be float32 too); everything from the log-densities
on, and every accumulator, is float64. float64 data is float64 throughout.

Each block writes its own partial statistics; the partials are added into the
caller's accumulators serially, in block order, so results are independent of
the number of threads (R, S1 and S2 equal bit for bit to those of the earlier
single parallel kernel on the cases measured; the log-likelihood sum within
1e-15 relative). No N x K or N x D temporary is created; the optional outputs
(per-point log-likelihood, label, responsibilities) are written in place.

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

from ._blocks import add_partials, merge_block_scalars, n_blocks_of, run_blocks
from ._config import BLOCK_ROWS, DIAG_TILE_ROWS, TILE_ROWS, jit
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


@jit(inline="always")
def _load_tile(X, sample_weight, t0, nt, xt, w):
    """xt[:, :nt] <- rows t0 .. t0 + nt of X, transposed; w[:nt] <- their sample weights (1 if none)."""
    rows = X[t0 : t0 + nt]
    for d in range(X.shape[1]):
        column = rows[:, d]
        for b in range(nt):
            xt[d, b] = column[b]
    if sample_weight.shape[0] > 0:
        for b in range(nt):
            w[b] = sample_weight[t0 + b]
    else:
        for b in range(nt):
            w[b] = 1.0


@jit(inline="always")
def _finish_tile(
    a, nt, t0, w, mx, lbl, s, lse, ws, pbuf, ibuf, fbuf, out_logprob, out_label, out_resp, ll_sum, w_sum,
    worst, worst_row,
):  # fmt: skip
    """Log-sum-exp of the tile's log densities ``a`` (K, T), the optional outputs and the block sums.

    On return a[k, b] holds exp(a[k, b] - mx[b]) and ws[b] = w[b] / sum_k of them,
    so that a[k, b] ws[b] is the weighted responsibility. Returns the block's
    running sums updated: log-likelihood, weight, worst log-likelihood and its row.
    """
    n_components = a.shape[0]
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
    if out_logprob.shape[0] > 0:
        for b in range(nt):
            out_logprob[t0 + b] = lse[b]
    if out_label.shape[0] > 0:
        for b in range(nt):
            out_label[t0 + b] = lbl[b]
    if out_resp.shape[0] > 0:
        for b in range(nt):
            for k in range(n_components):
                out_resp[t0 + b, k] = a[k, b] * s[b]
    # responsibilities times sample weights: r_kb w_b = a_kb (w_b / sum_k a_kb)
    for b in range(nt):
        ws[b] = w[b] * s[b]
    return ll_sum, w_sum, worst, worst_row


@jit()
def _blocks_full_tied(
    X, sample_weight, log_norm, means, prec, tied, accumulate, part_R, part_S1, part_S2, part_sums,
    part_worst, part_worst_row, out_logprob, out_label, out_resp, blk_start, blk_stop,
):  # fmt: skip
    """Blocks ``blk_start`` to ``blk_stop`` (exclusive) for full (``prec`` (K, D, D)) or tied covariances.

    Tied (``tied`` true): ``prec`` and the statistics' S2 are (1, D, D).
    """
    prefer_wide_vectors()  # 512-bit vectors in this function on AVX-512 hosts
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    # E-step buffers in the data's precision (float32 data: twice the SIMD lanes);
    # M-step buffers and all accumulators in float64. One aligned allocation per
    # element type: every TILE_ROWS-long row starts on a 64-byte boundary.
    narrow = _aligned(2 * n_features + 2, TILE_ROWS, X.dtype)
    xt = narrow[:n_features]
    xe = narrow[n_features : 2 * n_features]
    y = narrow[2 * n_features]
    z = narrow[2 * n_features + 1]
    wide = _aligned(2 * n_features + n_components + 8, TILE_ROWS, np.float64)
    xc = wide[:n_features]
    xw = wide[n_features : 2 * n_features]
    a = wide[2 * n_features : 2 * n_features + n_components]
    row = 2 * n_features + n_components
    q = wide[row]
    w = wide[row + 1]
    wr = wide[row + 2]
    ws = wide[row + 3]
    mx = wide[row + 4]
    s = wide[row + 5]
    lse = wide[row + 6]
    pbuf = wide[row + 7]
    ints = _aligned(2, TILE_ROWS, np.int64)
    lbl = ints[0]
    ibuf = ints[1]
    fbuf = ibuf.view(np.float64)
    for blk in range(blk_start, blk_stop):
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        ll_sum = 0.0
        w_sum = 0.0
        worst = np.inf
        worst_row = 0
        for t0 in range(start, stop, TILE_ROWS):
            nt = min(TILE_ROWS, stop - t0)
            _load_tile(X, sample_weight, t0, nt, xt, w)
            # E-step: weighted log densities, component by component, with the
            # running maximum and its argmax
            for b in range(nt):
                mx[b] = -np.inf
                lbl[b] = 0
            for k in range(n_components):
                kp = 0 if tied else k
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
            ll_sum, w_sum, worst, worst_row = _finish_tile(
                a, nt, t0, w, mx, lbl, s, lse, ws, pbuf, ibuf, fbuf, out_logprob, out_label, out_resp,
                ll_sum, w_sum, worst, worst_row,
            )  # fmt: skip
            if not accumulate:
                continue
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
                _outer_upper_tile(xw, xc, nt, part_S2, blk, 0 if tied else k)
        part_sums[blk, 0] = ll_sum
        part_sums[blk, 1] = w_sum
        part_worst[blk] = worst
        part_worst_row[blk] = worst_row


@jit()
def _blocks_diag_spherical(
    X, sample_weight, log_norm, means, prec, spherical, accumulate, part_R, part_S1, part_S2, part_sums,
    part_worst, part_worst_row, out_logprob, out_label, out_resp, blk_start, blk_stop,
):  # fmt: skip
    """Blocks ``blk_start`` to ``blk_stop`` (exclusive) for diag (``prec`` (K, 1, D)) covariances.

    Spherical (``spherical`` true): ``prec`` is (K, 1, 1).
    """
    prefer_wide_vectors()  # 512-bit vectors in this function on AVX-512 hosts
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    # per-row work is small: longer tiles amortise the per-tile sweeps
    xt = _aligned(n_features, DIAG_TILE_ROWS, X.dtype)
    wide = _aligned(n_components + 8, DIAG_TILE_ROWS, np.float64)
    a = wide[:n_components]
    row = n_components
    q = wide[row]
    w = wide[row + 1]
    wr = wide[row + 2]
    ws = wide[row + 3]
    mx = wide[row + 4]
    s = wide[row + 5]
    lse = wide[row + 6]
    pbuf = wide[row + 7]
    ints = _aligned(2, DIAG_TILE_ROWS, np.int64)
    lbl = ints[0]
    ibuf = ints[1]
    fbuf = ibuf.view(np.float64)
    for blk in range(blk_start, blk_stop):
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        ll_sum = 0.0
        w_sum = 0.0
        worst = np.inf
        worst_row = 0
        for t0 in range(start, stop, DIAG_TILE_ROWS):
            nt = min(DIAG_TILE_ROWS, stop - t0)
            _load_tile(X, sample_weight, t0, nt, xt, w)
            for b in range(nt):
                mx[b] = -np.inf
                lbl[b] = 0
            for k in range(n_components):
                # centre, scale and square in one sweep
                for b in range(nt):
                    q[b] = 0.0
                d = 0
                # four features per sweep: one load and store of q per four squares
                while d + 4 <= n_features:
                    m0 = means[k, d]
                    m1 = means[k, d + 1]
                    m2 = means[k, d + 2]
                    m3 = means[k, d + 3]
                    p0 = np.float64(prec[k, 0, 0] if spherical else prec[k, 0, d])
                    p1 = np.float64(prec[k, 0, 0] if spherical else prec[k, 0, d + 1])
                    p2 = np.float64(prec[k, 0, 0] if spherical else prec[k, 0, d + 2])
                    p3 = np.float64(prec[k, 0, 0] if spherical else prec[k, 0, d + 3])
                    for b in range(nt):
                        v0 = (xt[d, b] - m0) * p0
                        v1 = (xt[d + 1, b] - m1) * p1
                        v2 = (xt[d + 2, b] - m2) * p2
                        v3 = (xt[d + 3, b] - m3) * p3
                        q[b] += (v0 * v0 + v1 * v1) + (v2 * v2 + v3 * v3)
                    d += 4
                while d < n_features:
                    m = means[k, d]
                    p = np.float64(prec[k, 0, 0] if spherical else prec[k, 0, d])
                    for b in range(nt):
                        v = (xt[d, b] - m) * p
                        q[b] += v * v
                    d += 1
                c = log_norm[k]
                for b in range(nt):
                    v = c - 0.5 * q[b]
                    a[k, b] = v
                    if v > mx[b]:
                        mx[b] = v
                        lbl[b] = k
            ll_sum, w_sum, worst, worst_row = _finish_tile(
                a, nt, t0, w, mx, lbl, s, lse, ws, pbuf, ibuf, fbuf, out_logprob, out_label, out_resp,
                ll_sum, w_sum, worst, worst_row,
            )  # fmt: skip
            if not accumulate:
                continue
            # M-step statistics around the shift means[k]: both moments in one sweep, nothing stored
            for k in range(n_components):
                r_sum = 0.0
                for b in range(nt):
                    v = a[k, b] * ws[b]
                    wr[b] = v
                    r_sum += v
                if r_sum == 0.0:
                    continue  # every term is exactly zero
                part_R[blk, k] += r_sum
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
        part_sums[blk, 0] = ll_sum
        part_sums[blk, 1] = w_sum
        part_worst[blk] = worst
        part_worst_row[blk] = worst_row


def _gaussian_pass(
    X, sample_weight, log_norm, means, prec, cov_code, accumulate, row_offset, acc_R, acc_S1, acc_S2,
    acc_scalars, acc_worst_index, acc_worst_x, out_logprob, out_label, out_resp,
):  # fmt: skip
    """One fused E-step + statistics pass over the rows of ``X`` (see the module docstring).

    Full/tied and diag/spherical covariances run separately compiled kernels,
    so that a fit compiles only the one its covariance type needs; blocks run on
    ``numba.get_num_threads()`` threads (:func:`run_blocks`).
    """
    n_samples = X.shape[0]
    n_blocks = n_blocks_of(n_samples)
    n_acc = n_blocks if accumulate else 0
    part_R = np.zeros((n_acc, *acc_R.shape))
    part_S1 = np.zeros((n_acc, *acc_S1.shape))
    part_S2 = np.zeros((n_acc, *acc_S2.shape))
    part_sums = np.zeros((n_blocks, 2))  # per block: log-likelihood, weight
    part_worst = np.zeros(n_blocks)  # per block: the lowest log-likelihood and its row
    part_worst_row = np.zeros(n_blocks, dtype=np.int64)
    if cov_code <= 1:
        kernel, variant = _blocks_full_tied, cov_code == 1
    else:
        kernel, variant = _blocks_diag_spherical, cov_code == 3
    run_blocks(
        kernel, n_blocks, X, sample_weight, log_norm, means, prec, variant, accumulate, part_R, part_S1,
        part_S2, part_sums, part_worst, part_worst_row, out_logprob, out_label, out_resp,
    )  # fmt: skip
    # serial merge in block order: independent of the thread count
    merge_block_scalars(part_sums, part_worst, part_worst_row, X, row_offset, acc_scalars, acc_worst_index,
                        acc_worst_x)  # fmt: skip
    if accumulate:
        add_partials(part_R, acc_R)
        add_partials(part_S1, acc_S1)
        add_partials(part_S2, acc_S2)
