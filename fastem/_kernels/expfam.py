"""Fused E-step + sufficient-statistics kernels for linear exponential families (numba only).

For Poisson, Bernoulli, multinomial and von Mises-Fisher components the
per-component log-density is linear in x::

    log pi_k + log p_k(x) = const_k + theta_k . x + h(x)

so one pass needs the product X theta^T (the E-step) and R^T X (the first
moments), both of size N x K x D. The dense pass follows the structure of
``_gaussian_pass``: blocks of ``BLOCK_ROWS`` rows, one per parallel task; tiles
of rows transposed into aligned (D, T) buffers so that rows sit in the SIMD
lanes. Per tile:

1. a_kb = const_k + theta_k . x_b, four components x four features per sweep
   over the tile (one load of four feature rows feeds sixteen FMAs);
2. h(x_b) from a table of log(j!) (``lgamma`` only beyond the table);
3. log-sum-exp over k with the running maximum and the vectorised exp of
   ``gaussian.py``; logprob_b = lse_b + h(x_b);
4. R_k += sum_b w_b r_kb and S1_kd += sum_b w_b r_kb x_bd, in 4 x 4 register
   blocks over (component, feature), skipping components whose responsibility
   sum over the tile is exactly 0.

Precision: for float32 data the tile and the product theta_k . x_b are float32
(``theta`` must have the data's dtype; the sum over d is accumulated in
float32 within the tile, then converted to float64 before const_k is added).
Everything after that (log-sum-exp, h(x), responsibilities) and every
accumulator is float64; S1 takes float64 products of float32 x with float64
responsibilities. float64 data is float64 throughout.

Each block writes its own partial statistics; the partials are added into the
caller's accumulators serially, in block order, so results are independent of
the number of threads. No N x K or N x D temporary is created; the optional
outputs (per-point log-likelihood, label, responsibilities) are written in
place.

``_expfam_pass_csr`` is the same pass for a CSR matrix: rows are read one by
one (a_k = const_k + sum over the row's nonzeros of theta_kj x_j, with theta
transposed once so the sum over k is contiguous), then a tile of rows shares
the dense pass's log-sum-exp. Its per-block S1 partial only holds the columns
that occur in the block, so its cost scales with the nonzeros, not with D.

Base-measure codes: 0 -> h(x) = 0; 1 -> h(x) = -sum_d log(x_d!) (Poisson);
2 -> h(x) = log(n!) - sum_d log(x_d!), n = sum_d x_d (multinomial). For codes 1
and 2 the x must be non-negative integers (checked by the caller).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._config import BLOCK_ROWS, TILE_ROWS, jit
from ._vector_width import prefer_wide_vectors
from .gaussian import _aligned, _exp_shifted_row

#: Base-measure codes, as the kernels see them.
BASE_CODES = {"none": 0, "poisson": 1, "multinomial": 2}

#: Entries of the default log-factorial table: counts below this use a lookup.
LOG_FACTORIAL_SIZE = 4096


def log_factorial_table(size: int = LOG_FACTORIAL_SIZE) -> np.ndarray:
    """log(j!) for j = 0 .. size - 1, as float64.

    Parameters
    ----------
    size : int
        Number of entries.

    Returns
    -------
    table : ndarray of shape (size,)
        ``table[j] = lgamma(j + 1)``.
    """
    return np.array([math.lgamma(j + 1.0) for j in range(size)], dtype=np.float64)


@jit(inline="always")
def _log_factorial(x, table):
    """log(x!) for a non-negative integer-valued float x."""
    if x < table.shape[0]:
        return table[np.int64(x)]
    return math.lgamma(x + 1.0)


@jit(inline="always")
def _load_tile(X, t0, nt, xt, base_code, table, hx, total):
    """xt[d, b] = X[t0 + b, d], and hx[b] = h(x_b) for base codes 1 and 2.

    Eight features per sweep over the rows: each row gives eight contiguous
    loads, and the eight rows of ``xt`` written stay in L1. The log-factorial
    lookups ride along (a scalar gather either way: LLVM emits no vector
    gathers for this target); the index is clamped to the table, and rows whose
    total count exceeds the table are redone with lgamma after the sweep.
    ``total`` receives the row sums n_b (scratch for base code 0).
    """
    n_features = xt.shape[0]
    if base_code == 0:
        d0 = 0
        while d0 + 8 <= n_features:
            for b in range(nt):
                row = X[t0 + b]
                xt[d0, b] = row[d0]
                xt[d0 + 1, b] = row[d0 + 1]
                xt[d0 + 2, b] = row[d0 + 2]
                xt[d0 + 3, b] = row[d0 + 3]
                xt[d0 + 4, b] = row[d0 + 4]
                xt[d0 + 5, b] = row[d0 + 5]
                xt[d0 + 6, b] = row[d0 + 6]
                xt[d0 + 7, b] = row[d0 + 7]
            d0 += 8
        for d in range(d0, n_features):
            for b in range(nt):
                xt[d, b] = X[t0 + b, d]
        for b in range(nt):
            hx[b] = 0.0
        return
    last = table.shape[0] - 1
    for b in range(nt):
        hx[b] = 0.0
        total[b] = 0.0
    d0 = 0
    while d0 + 8 <= n_features:
        for b in range(nt):
            row = X[t0 + b]
            v0 = row[d0]
            v1 = row[d0 + 1]
            v2 = row[d0 + 2]
            v3 = row[d0 + 3]
            v4 = row[d0 + 4]
            v5 = row[d0 + 5]
            v6 = row[d0 + 6]
            v7 = row[d0 + 7]
            xt[d0, b] = v0
            xt[d0 + 1, b] = v1
            xt[d0 + 2, b] = v2
            xt[d0 + 3, b] = v3
            xt[d0 + 4, b] = v4
            xt[d0 + 5, b] = v5
            xt[d0 + 6, b] = v6
            xt[d0 + 7, b] = v7
            f0 = table[np.uint64(min(np.int64(v0), last))]
            f1 = table[np.uint64(min(np.int64(v1), last))]
            f2 = table[np.uint64(min(np.int64(v2), last))]
            f3 = table[np.uint64(min(np.int64(v3), last))]
            f4 = table[np.uint64(min(np.int64(v4), last))]
            f5 = table[np.uint64(min(np.int64(v5), last))]
            f6 = table[np.uint64(min(np.int64(v6), last))]
            f7 = table[np.uint64(min(np.int64(v7), last))]
            hx[b] -= ((f0 + f1) + (f2 + f3)) + ((f4 + f5) + (f6 + f7))
            # float64 sums: float32 sums of large counts would round
            total[b] += ((np.float64(v0) + np.float64(v1)) + (np.float64(v2) + np.float64(v3))) + (
                (np.float64(v4) + np.float64(v5)) + (np.float64(v6) + np.float64(v7))
            )
        d0 += 8
    for d in range(d0, n_features):
        for b in range(nt):
            v = X[t0 + b, d]
            xt[d, b] = v
            hx[b] -= table[np.uint64(min(np.int64(v), last))]
            total[b] += np.float64(v)
    for b in range(nt):
        if total[b] > last:  # some count may lie beyond the table: redo the row exactly
            h = 0.0
            for d in range(n_features):
                h -= _log_factorial(np.float64(X[t0 + b, d]), table)
            hx[b] = h
    if base_code == 2:
        for b in range(nt):
            hx[b] += _log_factorial(total[b], table)


@jit(inline="always")
def _product_tile(theta, xt, nt, ae):
    """ae[k, b] = sum_d theta[k, d] xt[d, b], four components x four features per sweep.

    Features outermost: the four rows of ``xt`` stay in L1 while every
    component's row of ``ae`` is updated; each load of four x feeds sixteen FMAs.
    """
    n_components, n_features = theta.shape
    if n_features < 4:
        for k in range(n_components):
            for b in range(nt):
                ae[k, b] = 0.0
    d = 0
    while d + 4 <= n_features:
        k = 0
        while k + 4 <= n_components:
            t00 = theta[k, d]
            t01 = theta[k, d + 1]
            t02 = theta[k, d + 2]
            t03 = theta[k, d + 3]
            t10 = theta[k + 1, d]
            t11 = theta[k + 1, d + 1]
            t12 = theta[k + 1, d + 2]
            t13 = theta[k + 1, d + 3]
            t20 = theta[k + 2, d]
            t21 = theta[k + 2, d + 1]
            t22 = theta[k + 2, d + 2]
            t23 = theta[k + 2, d + 3]
            t30 = theta[k + 3, d]
            t31 = theta[k + 3, d + 1]
            t32 = theta[k + 3, d + 2]
            t33 = theta[k + 3, d + 3]
            if d == 0:
                for b in range(nt):
                    x0 = xt[0, b]
                    x1 = xt[1, b]
                    x2 = xt[2, b]
                    x3 = xt[3, b]
                    ae[k, b] = (x0 * t00 + x1 * t01) + (x2 * t02 + x3 * t03)
                    ae[k + 1, b] = (x0 * t10 + x1 * t11) + (x2 * t12 + x3 * t13)
                    ae[k + 2, b] = (x0 * t20 + x1 * t21) + (x2 * t22 + x3 * t23)
                    ae[k + 3, b] = (x0 * t30 + x1 * t31) + (x2 * t32 + x3 * t33)
            else:
                for b in range(nt):
                    x0 = xt[d, b]
                    x1 = xt[d + 1, b]
                    x2 = xt[d + 2, b]
                    x3 = xt[d + 3, b]
                    ae[k, b] += (x0 * t00 + x1 * t01) + (x2 * t02 + x3 * t03)
                    ae[k + 1, b] += (x0 * t10 + x1 * t11) + (x2 * t12 + x3 * t13)
                    ae[k + 2, b] += (x0 * t20 + x1 * t21) + (x2 * t22 + x3 * t23)
                    ae[k + 3, b] += (x0 * t30 + x1 * t31) + (x2 * t32 + x3 * t33)
            k += 4
        while k < n_components:
            t0 = theta[k, d]
            t1 = theta[k, d + 1]
            t2 = theta[k, d + 2]
            t3 = theta[k, d + 3]
            if d == 0:
                for b in range(nt):
                    ae[k, b] = (xt[0, b] * t0 + xt[1, b] * t1) + (xt[2, b] * t2 + xt[3, b] * t3)
            else:
                for b in range(nt):
                    ae[k, b] += (xt[d, b] * t0 + xt[d + 1, b] * t1) + (xt[d + 2, b] * t2 + xt[d + 3, b] * t3)
            k += 1
        d += 4
    while d < n_features:  # the last n_features % 4 features, one per sweep
        k = 0
        while k + 4 <= n_components:
            t0 = theta[k, d]
            t1 = theta[k + 1, d]
            t2 = theta[k + 2, d]
            t3 = theta[k + 3, d]
            for b in range(nt):
                x0 = xt[d, b]
                ae[k, b] += x0 * t0
                ae[k + 1, b] += x0 * t1
                ae[k + 2, b] += x0 * t2
                ae[k + 3, b] += x0 * t3
            k += 4
        while k < n_components:
            t0 = theta[k, d]
            for b in range(nt):
                ae[k, b] += xt[d, b] * t0
            k += 1
        d += 1


@jit(inline="always")
def _moments_tile(wr, active, n_active, xt, nt, part_S1, blk):
    """part_S1[blk, active[j], d] += sum_b wr[j, b] xt[d, b], in 4 x 4 register blocks over (j, d).

    Features outermost: the four rows of ``xt`` stay in L1 while the rows of
    ``wr`` stream past them. Products and sums are float64.
    """
    n_features = xt.shape[0]
    d = 0
    while d + 4 <= n_features:
        j = 0
        while j + 4 <= n_active:
            s00 = 0.0
            s01 = 0.0
            s02 = 0.0
            s03 = 0.0
            s10 = 0.0
            s11 = 0.0
            s12 = 0.0
            s13 = 0.0
            s20 = 0.0
            s21 = 0.0
            s22 = 0.0
            s23 = 0.0
            s30 = 0.0
            s31 = 0.0
            s32 = 0.0
            s33 = 0.0
            for b in range(nt):
                x0 = np.float64(xt[d, b])
                x1 = np.float64(xt[d + 1, b])
                x2 = np.float64(xt[d + 2, b])
                x3 = np.float64(xt[d + 3, b])
                r0 = wr[j, b]
                r1 = wr[j + 1, b]
                r2 = wr[j + 2, b]
                r3 = wr[j + 3, b]
                s00 += r0 * x0
                s01 += r0 * x1
                s02 += r0 * x2
                s03 += r0 * x3
                s10 += r1 * x0
                s11 += r1 * x1
                s12 += r1 * x2
                s13 += r1 * x3
                s20 += r2 * x0
                s21 += r2 * x1
                s22 += r2 * x2
                s23 += r2 * x3
                s30 += r3 * x0
                s31 += r3 * x1
                s32 += r3 * x2
                s33 += r3 * x3
            k0 = active[j]
            k1 = active[j + 1]
            k2 = active[j + 2]
            k3 = active[j + 3]
            part_S1[blk, k0, d] += s00
            part_S1[blk, k0, d + 1] += s01
            part_S1[blk, k0, d + 2] += s02
            part_S1[blk, k0, d + 3] += s03
            part_S1[blk, k1, d] += s10
            part_S1[blk, k1, d + 1] += s11
            part_S1[blk, k1, d + 2] += s12
            part_S1[blk, k1, d + 3] += s13
            part_S1[blk, k2, d] += s20
            part_S1[blk, k2, d + 1] += s21
            part_S1[blk, k2, d + 2] += s22
            part_S1[blk, k2, d + 3] += s23
            part_S1[blk, k3, d] += s30
            part_S1[blk, k3, d + 1] += s31
            part_S1[blk, k3, d + 2] += s32
            part_S1[blk, k3, d + 3] += s33
            j += 4
        while j < n_active:
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            for b in range(nt):
                r = wr[j, b]
                s0 += r * np.float64(xt[d, b])
                s1 += r * np.float64(xt[d + 1, b])
                s2 += r * np.float64(xt[d + 2, b])
                s3 += r * np.float64(xt[d + 3, b])
            k0 = active[j]
            part_S1[blk, k0, d] += s0
            part_S1[blk, k0, d + 1] += s1
            part_S1[blk, k0, d + 2] += s2
            part_S1[blk, k0, d + 3] += s3
            j += 1
        d += 4
    while d < n_features:  # the last n_features % 4 features
        j = 0
        while j + 4 <= n_active:
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            for b in range(nt):
                x = np.float64(xt[d, b])
                s0 += wr[j, b] * x
                s1 += wr[j + 1, b] * x
                s2 += wr[j + 2, b] * x
                s3 += wr[j + 3, b] * x
            part_S1[blk, active[j], d] += s0
            part_S1[blk, active[j + 1], d] += s1
            part_S1[blk, active[j + 2], d] += s2
            part_S1[blk, active[j + 3], d] += s3
            j += 4
        while j < n_active:
            s0 = 0.0
            for b in range(nt):
                s0 += wr[j, b] * np.float64(xt[d, b])
            part_S1[blk, active[j], d] += s0
            j += 1
        d += 1


@jit(inline="always")
def _softmax_tile(a, nt, n_components, mx, lbl, s, hx, lp, pbuf, ibuf, fbuf):
    """a[k, b] <- exp(a[k, b] - mx[b]), s[b] <- 1 / sum_k of those, lp[b] <- logsumexp_k + hx[b].

    ``mx`` and ``lbl`` hold the running maximum over k and its argmax.
    """
    for b in range(nt):
        s[b] = 0.0
    for k in range(n_components):
        _exp_shifted_row(a, k, mx, nt, pbuf, ibuf, fbuf, s)
    for b in range(nt):
        if not s[b] > 0.0:
            # every log-density is -inf (or NaN): log-likelihood -inf, hard
            # assignment to the first argmax
            for k in range(n_components):
                a[k, b] = 0.0
            a[lbl[b], b] = 1.0
            s[b] = 1.0
            mx[b] = -np.inf
    # separate sweeps over b so that each one vectorises
    for b in range(nt):
        lp[b] = (mx[b] + np.log(s[b])) + hx[b]
        s[b] = 1.0 / s[b]


@jit(inline="always")
def _tile_outputs(a, nt, t0, n_components, w, s, lp, lbl, stats, out_logprob, out_label, out_resp):
    """Log-likelihood sums, the worst row and the optional per-row outputs of one tile.

    ``stats`` = (ll_sum, w_sum, worst, worst_row) of the block so far; returns the update.
    """
    ll_sum, w_sum, worst, worst_row = stats
    for b in range(nt):
        ll_sum += w[b] * lp[b] if w[b] > 0.0 else 0.0
        w_sum += w[b]
    for b in range(nt):
        if lp[b] < worst and w[b] > 0.0:
            worst = lp[b]
            worst_row = t0 + b
    if out_logprob.shape[0] > 0:
        for b in range(nt):
            out_logprob[t0 + b] = lp[b]
    if out_label.shape[0] > 0:
        for b in range(nt):
            out_label[t0 + b] = lbl[b]
    if out_resp.shape[0] > 0:
        for b in range(nt):
            for k in range(n_components):
                out_resp[t0 + b, k] = a[k, b] * s[b]
    return ll_sum, w_sum, worst, worst_row


@jit(parallel=True)
def _expfam_pass(
    X,
    sample_weight,
    theta,
    const,
    base_code,
    log_factorial,
    accumulate,
    row_offset,
    acc_R,
    acc_S1,
    acc_scalars,
    acc_worst_index,
    acc_worst_x,
    out_logprob,
    out_label,
    out_resp,
):
    n_samples, n_features = X.shape
    n_components = theta.shape[0]
    n_blocks = (n_samples + BLOCK_ROWS - 1) // BLOCK_ROWS
    has_weights = sample_weight.shape[0] > 0
    n_acc = n_blocks if accumulate else 0
    tile_rows = TILE_ROWS

    part_R = np.zeros((n_acc, n_components))
    part_S1 = np.zeros((n_acc, n_components, n_features))
    part_ll = np.zeros(n_blocks)
    part_w = np.zeros(n_blocks)
    part_worst = np.full(n_blocks, np.inf)
    part_worst_row = np.zeros(n_blocks, dtype=np.int64)

    for blk in prange(n_blocks):
        prefer_wide_vectors()  # 512-bit vectors in this loop body on AVX-512 hosts
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        # the product in the data's precision (float32: twice the SIMD lanes), the rest float64
        xt = _aligned(n_features, tile_rows, X.dtype)
        ae = _aligned(n_components, tile_rows, X.dtype)
        a = _aligned(n_components, tile_rows, np.float64)
        w = _aligned(1, tile_rows, np.float64)[0]
        ws = _aligned(1, tile_rows, np.float64)[0]
        mx = _aligned(1, tile_rows, np.float64)[0]
        s = _aligned(1, tile_rows, np.float64)[0]
        hx = _aligned(1, tile_rows, np.float64)[0]
        lp = _aligned(1, tile_rows, np.float64)[0]
        pbuf = _aligned(1, tile_rows, np.float64)[0]
        lbl = _aligned(1, tile_rows, np.int64)[0]
        ibuf = _aligned(1, tile_rows, np.int64)[0]
        fbuf = ibuf.view(np.float64)
        active = np.empty(n_components, dtype=np.int64)
        stats = (0.0, 0.0, np.inf, 0)
        for t0 in range(start, stop, tile_rows):
            nt = min(tile_rows, stop - t0)
            _load_tile(X, t0, nt, xt, base_code, log_factorial, hx, s)
            if has_weights:
                for b in range(nt):
                    w[b] = sample_weight[t0 + b]
            else:
                for b in range(nt):
                    w[b] = 1.0

            _product_tile(theta, xt, nt, ae)
            # float64 from here on, with the running maximum and its argmax
            for b in range(nt):
                mx[b] = -np.inf
                lbl[b] = 0
            for k in range(n_components):
                c = const[k]
                for b in range(nt):
                    v = c + np.float64(ae[k, b])
                    a[k, b] = v
                    if v > mx[b]:
                        mx[b] = v
                        lbl[b] = k
            _softmax_tile(a, nt, n_components, mx, lbl, s, hx, lp, pbuf, ibuf, fbuf)
            stats = _tile_outputs(
                a, nt, t0, n_components, w, s, lp, lbl, stats, out_logprob, out_label, out_resp
            )

            if not accumulate:
                continue
            # responsibilities times sample weights, r_kb w_b = a_kb (w_b / sum_k a_kb), packed
            # into the first rows of ``a`` for the components with a nonzero sum over the tile
            for b in range(nt):
                ws[b] = w[b] * s[b]
            n_active = 0
            for k in range(n_components):
                r_sum = 0.0
                for b in range(nt):
                    v = a[k, b] * ws[b]
                    a[n_active, b] = v
                    r_sum += v
                if r_sum != 0.0:
                    part_R[blk, k] += r_sum
                    active[n_active] = k
                    n_active += 1
            _moments_tile(a, active, n_active, xt, nt, part_S1, blk)
        part_ll[blk] = stats[0]
        part_w[blk] = stats[1]
        part_worst[blk] = stats[2]
        part_worst_row[blk] = stats[3]

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
                for d in range(n_features):
                    acc_S1[k, d] += part_S1[blk, k, d]


@jit(parallel=True)
def _expfam_pass_csr(
    data,
    indices,
    indptr,
    n_features,
    sample_weight,
    theta,
    const,
    base_code,
    log_factorial,
    accumulate,
    row_offset,
    acc_R,
    acc_S1,
    acc_scalars,
    acc_worst_index,
    acc_worst_x,
    out_logprob,
    out_label,
    out_resp,
):
    n_samples = indptr.shape[0] - 1
    n_components = theta.shape[0]
    n_blocks = (n_samples + BLOCK_ROWS - 1) // BLOCK_ROWS
    has_weights = sample_weight.shape[0] > 0
    n_acc = n_blocks if accumulate else 0
    tile_rows = TILE_ROWS
    # theta transposed (and float64) once, so that the sum over k for one nonzero is contiguous
    theta_t = np.empty((n_features, n_components))
    for k in range(n_components):
        for j in range(n_features):
            theta_t[j, k] = theta[k, j]

    # Per-block S1 partials hold only the columns that occur in the block:
    # first count them, then give each block its slice of one flat array.
    first_col = np.zeros(n_acc + 1, dtype=np.int64)
    for blk in prange(n_acc):
        seen = np.zeros(n_features, dtype=np.bool_)
        n_cols = 0
        for p in range(indptr[blk * BLOCK_ROWS], indptr[min((blk + 1) * BLOCK_ROWS, n_samples)]):
            j = indices[p]
            if not seen[j]:
                seen[j] = True
                n_cols += 1
        first_col[blk + 1] = n_cols
    for blk in range(n_acc):
        first_col[blk + 1] += first_col[blk]
    part_cols = np.empty(first_col[n_acc], dtype=np.int64)
    part_S1 = np.zeros((first_col[n_acc], n_components))
    part_R = np.zeros((n_acc, n_components))
    part_ll = np.zeros(n_blocks)
    part_w = np.zeros(n_blocks)
    part_worst = np.full(n_blocks, np.inf)
    part_worst_row = np.zeros(n_blocks, dtype=np.int64)

    for blk in prange(n_blocks):
        prefer_wide_vectors()  # 512-bit vectors in this loop body on AVX-512 hosts
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        at = _aligned(tile_rows, n_components, np.float64)
        a = _aligned(n_components, tile_rows, np.float64)
        w = _aligned(1, tile_rows, np.float64)[0]
        ws = _aligned(1, tile_rows, np.float64)[0]
        mx = _aligned(1, tile_rows, np.float64)[0]
        s = _aligned(1, tile_rows, np.float64)[0]
        hx = _aligned(1, tile_rows, np.float64)[0]
        lp = _aligned(1, tile_rows, np.float64)[0]
        pbuf = _aligned(1, tile_rows, np.float64)[0]
        lbl = _aligned(1, tile_rows, np.int64)[0]
        ibuf = _aligned(1, tile_rows, np.int64)[0]
        fbuf = ibuf.view(np.float64)
        # block-local column numbers, in order of first appearance
        local = np.empty(n_features if accumulate else 0, dtype=np.int64)
        if accumulate:
            local[:] = -1
            base = first_col[blk]
            n_cols = 0
            for p in range(indptr[start], indptr[stop]):
                j = indices[p]
                if local[j] < 0:
                    local[j] = n_cols
                    part_cols[base + n_cols] = j
                    n_cols += 1
        stats = (0.0, 0.0, np.inf, 0)
        for t0 in range(start, stop, tile_rows):
            nt = min(tile_rows, stop - t0)
            if has_weights:
                for b in range(nt):
                    w[b] = sample_weight[t0 + b]
            else:
                for b in range(nt):
                    w[b] = 1.0
            # E-step row by row: at[b, k] = sum over nonzeros theta_kj x_j; h(x_b) from the nonzeros
            for b in range(nt):
                for k in range(n_components):
                    at[b, k] = 0.0
                h = 0.0
                total = 0.0
                for p in range(indptr[t0 + b], indptr[t0 + b + 1]):
                    j = indices[p]
                    v = np.float64(data[p])
                    for k in range(n_components):
                        at[b, k] += v * theta_t[j, k]
                    if base_code != 0:
                        h -= _log_factorial(v, log_factorial)
                        total += v
                if base_code == 2:
                    h += _log_factorial(total, log_factorial)
                hx[b] = h
            for b in range(nt):
                mx[b] = -np.inf
                lbl[b] = 0
            for k in range(n_components):
                c = const[k]
                for b in range(nt):
                    v = c + at[b, k]
                    a[k, b] = v
                    if v > mx[b]:
                        mx[b] = v
                        lbl[b] = k
            _softmax_tile(a, nt, n_components, mx, lbl, s, hx, lp, pbuf, ibuf, fbuf)
            stats = _tile_outputs(
                a, nt, t0, n_components, w, s, lp, lbl, stats, out_logprob, out_label, out_resp
            )

            if not accumulate:
                continue
            for b in range(nt):
                ws[b] = w[b] * s[b]
            for k in range(n_components):
                r_sum = 0.0
                for b in range(nt):
                    v = a[k, b] * ws[b]
                    at[b, k] = v
                    r_sum += v
                part_R[blk, k] += r_sum
            # S1 touches only the row's nonzero columns (rows of weight 0 add nothing)
            for b in range(nt):
                if ws[b] == 0.0:
                    continue
                for p in range(indptr[t0 + b], indptr[t0 + b + 1]):
                    c = first_col[blk] + local[indices[p]]
                    v = np.float64(data[p])
                    for k in range(n_components):
                        part_S1[c, k] += v * at[b, k]
        part_ll[blk] = stats[0]
        part_w[blk] = stats[1]
        part_worst[blk] = stats[2]
        part_worst_row[blk] = stats[3]

    # serial, ordered merge: independent of the thread count
    for blk in range(n_blocks):
        acc_scalars[0] += part_ll[blk]
        acc_scalars[1] += part_w[blk]
        acc_scalars[3] += min(BLOCK_ROWS, n_samples - blk * BLOCK_ROWS)
        if part_worst[blk] < acc_scalars[2]:
            acc_scalars[2] = part_worst[blk]
            row = part_worst_row[blk]
            acc_worst_index[0] = row_offset + row
            acc_worst_x[:] = 0.0
            for p in range(indptr[row], indptr[row + 1]):
                acc_worst_x[indices[p]] += data[p]
        if accumulate:
            for k in range(n_components):
                acc_R[k] += part_R[blk, k]
            for c in range(first_col[blk], first_col[blk + 1]):
                j = part_cols[c]
                for k in range(n_components):
                    acc_S1[k, j] += part_S1[c, k]
