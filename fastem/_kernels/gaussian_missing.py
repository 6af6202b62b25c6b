"""Exact E-step and expected sufficient statistics for Gaussian mixtures with missing entries (numba only).

NaN marks a missing entry. For a row with observed coordinates O and missing M
and a component with mean mu, precision Lambda = Sigma^-1 = U U^T:

* the conditional of x_M given x_O is N(mu_M + delta, Lambda_MM^-1) with
  delta = -Lambda_MM^-1 Lambda_MO (x_O - mu_O);
* log det Sigma_OO = log det Sigma + log det Lambda_MM, so with L L^T = Lambda_MM
  log N(x_O; mu_O, Sigma_OO) = log det U - log det L - |O|/2 log 2pi - q/2;
* the marginal quadratic form (x_O - mu_O)^T Sigma_OO^-1 (x_O - mu_O) equals the
  full one, q = ||e^T U||^2, at e = x - mu with e_M set to delta (a sum of
  squares: no cancellation).

So the per-row work beyond the complete-data pass is m D + m^2 per component
(m = number of missing coordinates), never a factorisation of Sigma_OO. Inside
each block of ``BLOCK_ROWS`` rows the rows are grouped (a stable counting sort)
by missingness pattern, numbered in order of first appearance; the Cholesky
factor L of Lambda_MM, its log-determinant and Lambda_MM^-1 (the conditional
covariance) are computed once per pattern and component, and delta is computed
for runs of rows of one pattern with the rows in the SIMD lanes (row by row for
runs shorter than ``_SHORT_RUN``, as under MCAR). The quadratic form and the
moments then run over full tiles of (grouped) rows as for complete data, on the
filled rows e. Rows without a missing entry need none of this.

Expected statistics around the shift m_k (the current means, so e is x - m_k
with the conditional mean filled in):

    S1_k += w r_ik e,   S2_k += w r_ik (e e^T + Lambda_MM^-1 in the (M, M) block)

The conditional-covariance term is summed per pattern (sum of w r_ik over the
pattern's rows times Lambda_MM^-1), once per block. diag/spherical: every
coordinate is independent, a missing coordinate drops out of the density, its
conditional mean is mu_kd (e_d = 0) and its conditional variance sigma^2_kd.

Determinism: each block writes its own partials (rows in pattern order within
the block, which depends only on the block's rows), added into the caller's
accumulators in block order afterwards: results do not depend on the thread
count. All arithmetic is float64 (float32 data are read into float64 tiles).
"""

from __future__ import annotations

import numpy as np

from ._blocks import add_partials, merge_block_scalars, n_blocks_of, run_blocks
from ._config import BLOCK_ROWS, DIAG_TILE_ROWS, TILE_ROWS, jit
from ._vector_width import prefer_wide_vectors
from .gaussian import _aligned, _exp_shifted_row
from .gaussian_tiles import _outer_upper_tile, _quadratic_form_tile

_HALF_LOG_2PI = 0.9189385332046727
#: runs of fewer rows of one pattern in a tile get their conditional means row by row
_SHORT_RUN = 8
#: rows are sorted by a pattern key: the exact bitmask of the missing coordinates up to this many
#: features, a hash beyond (groups are then formed by exact comparison, so a collision only splits a group)
_EXACT_KEY_FEATURES = 62


@jit()
def _missing_block(
    X, sample_weight, log_norm, means, prec, lam, cov_code, accumulate, want_logprob, want_label, want_resp,
    drop, var, blk, part_R, part_S1, part_S2, part_ll, part_w, part_worst, part_worst_row,
    out_logprob, out_label, out_resp,
):  # fmt: skip
    """One block of :func:`_gaussian_missing_pass`: its partials go to index ``blk`` of the ``part_*`` arrays.

    Called by :func:`_missing_blocks` for each block of a thread's range (its
    scratch arrays are the block's own).
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    has_weights = sample_weight.shape[0] > 0
    dense = cov_code <= 1
    n_prec = 1 if cov_code == 1 else n_components  # distinct precision matrices
    prefer_wide_vectors()  # 512-bit vectors in this function on AVX-512 hosts
    # block-local copies of the small shared arrays the inlined helpers take (and block-local sums):
    # no reference-count atomics or writes on cache lines that the threads share
    prec = prec.copy()
    means = means.copy()
    s2a, s2b, s2c = part_S2.shape[1], part_S2.shape[2], part_S2.shape[3]
    loc_R = np.zeros(n_components)
    loc_S1 = np.zeros((n_components, n_features))
    loc_S2 = np.zeros((1, s2a, s2b, s2c))
    start = blk * BLOCK_ROWS
    stop = min(start + BLOCK_ROWS, n_samples)
    n_rows = stop - start
    tile_rows = TILE_ROWS if dense else DIAG_TILE_ROWS

    # ---- the block's rows in pattern order (full/tied), with per-pattern factors
    order = np.arange(n_rows)
    n_missing_row = np.zeros(n_rows, dtype=np.int64)
    keys = np.zeros(n_rows, dtype=np.int64)
    exact_keys = n_features <= _EXACT_KEY_FEATURES
    for i in range(n_rows):
        key = np.int64(0)
        n_missing = 0
        for d in range(n_features):
            if np.isnan(X[start + i, d]):
                n_missing += 1
                if exact_keys:
                    key |= np.int64(1) << np.int64(d)
                else:  # a hash: rows are grouped by exact comparison, a collision only splits a group
                    key = key * np.int64(1000003) + np.int64(d + 1)
        keys[i] = key
        n_missing_row[i] = n_missing
    pattern_of = np.zeros(n_rows, dtype=np.int64)  # the pattern id at each sorted position
    n_patterns = 1
    any_missing = False
    for i in range(n_rows):
        if n_missing_row[i] > 0:
            any_missing = True
            break
    if dense and any_missing:
        # pattern ids in order of first appearance (an open-addressing table of the keys, rows compared
        # exactly when keys are hashes), then a stable counting sort of the rows by id: O(rows)
        n_slots_table = 16
        while n_slots_table < 2 * n_rows:
            n_slots_table *= 2
        mask = np.int64(n_slots_table - 1)
        table = np.full(n_slots_table, -1, dtype=np.int64)
        pat_row = np.empty(n_rows, dtype=np.int64)  # the first row (in the block) of each pattern
        row_pat = np.empty(n_rows, dtype=np.int64)
        n_patterns = 0
        for i in range(n_rows):
            key = keys[i]
            h = ((key * np.int64(-7046029254386353131)) >> np.int64(40)) & mask
            while True:
                p = table[h]
                if p < 0:  # a new pattern
                    p = n_patterns
                    table[h] = p
                    pat_row[p] = i
                    n_patterns += 1
                    break
                r = pat_row[p]
                if keys[r] == key:
                    same = True
                    if not exact_keys:
                        for d in range(n_features):
                            if np.isnan(X[start + r, d]) != np.isnan(X[start + i, d]):
                                same = False
                                break
                    if same:
                        break
                h = (h + 1) & mask
            row_pat[i] = p
        position = np.zeros(n_patterns + 1, dtype=np.int64)
        for i in range(n_rows):
            position[row_pat[i] + 1] += 1
        for p in range(n_patterns):
            position[p + 1] += position[p]
        for i in range(n_rows):
            p = row_pat[i]
            order[position[p]] = i
            pattern_of[position[p]] = p
            position[p] += 1
    pat_first = np.zeros(n_patterns, dtype=np.int64)  # a sorted position of the pattern
    pat_m = np.zeros(n_patterns, dtype=np.int64)
    pat_miss_off = np.zeros(n_patterns + 1, dtype=np.int64)
    pat_fac_off = np.zeros(n_patterns + 1, dtype=np.int64)
    if dense:
        for s in range(n_rows - 1, -1, -1):
            pat_first[pattern_of[s]] = s
        for p in range(n_patterns):
            m = n_missing_row[order[pat_first[p]]]
            pat_m[p] = m
            pat_miss_off[p + 1] = pat_miss_off[p] + m
            pat_fac_off[p + 1] = pat_fac_off[p] + m * m * n_prec
    pat_miss = np.zeros(pat_miss_off[n_patterns], dtype=np.int64)
    fac_L = np.zeros(pat_fac_off[n_patterns])
    fac_C = np.zeros(pat_fac_off[n_patterns])
    log_det_L = np.zeros((n_patterns, n_prec))
    pat_mass = np.zeros((n_patterns, n_prec))
    if dense:
        work = np.zeros((n_features, n_features))
        rdiag = np.zeros(n_features)
        for p in range(n_patterns):
            m = pat_m[p]
            if m == 0:
                continue
            row = start + order[pat_first[p]]
            c = pat_miss_off[p]
            for d in range(n_features):
                if np.isnan(X[row, d]):
                    pat_miss[c] = d
                    c += 1
            mo = pat_miss_off[p]
            for kk in range(n_prec):
                # L L^T = Lambda_MM (row-major lower triangle at ``off``) and log det L
                off = pat_fac_off[p] + kk * m * m
                log_det = 0.0
                prod = 1.0  # of the squared pivots: one log per factor, not per pivot
                for j in range(m):
                    mj = pat_miss[mo + j]
                    t = lam[kk, mj, mj]
                    for l in range(j):
                        t -= fac_L[off + j * m + l] * fac_L[off + j * m + l]
                    floor = 2.2e-16 * abs(lam[kk, mj, mj]) + 1e-300
                    if not t > floor:  # rounding made Lambda_MM singular: hold the pivot (stays finite)
                        t = floor
                    prod *= t
                    if prod < 1e-150 or prod > 1e150:
                        log_det += np.log(prod)
                        prod = 1.0
                    dj = np.sqrt(t)
                    fac_L[off + j * m + j] = dj
                    rdiag[j] = 1.0 / dj
                    for i in range(j + 1, m):
                        t = lam[kk, pat_miss[mo + i], mj]
                        for l in range(j):
                            t -= fac_L[off + i * m + l] * fac_L[off + j * m + l]
                        fac_L[off + i * m + j] = t * rdiag[j]
                log_det_L[p, kk] = 0.5 * (log_det + np.log(prod))
                if not accumulate:
                    continue
                # Lambda_MM^-1 = L^-T L^-1 (upper triangle: what the M-step adds), from W = L^-1
                for c in range(m):
                    for i in range(c, m):
                        t = 1.0 if i == c else 0.0
                        for l in range(c, i):
                            t -= fac_L[off + i * m + l] * work[l, c]
                        work[i, c] = t * rdiag[i]
                for i in range(m):
                    for j in range(i, m):
                        t = 0.0
                        for l in range(j, m):
                            t += work[l, i] * work[l, j]
                        fac_C[off + i * m + j] = t

    # ---- tile buffers
    xt = _aligned(n_features, tile_rows, np.float64)  # the rows, NaN read as 0
    xe = _aligned(n_features, tile_rows, np.float64)  # centred and filled, per component
    xw = _aligned(n_features, tile_rows, np.float64)
    obs = _aligned(n_features, tile_rows, np.float64)  # diag/spherical: 1 observed, 0 missing
    g = _aligned(n_features, tile_rows, np.float64)
    a = _aligned(n_components, tile_rows, np.float64)
    q = _aligned(1, tile_rows, np.float64)[0]
    y = _aligned(1, tile_rows, np.float64)[0]
    z = _aligned(1, tile_rows, np.float64)[0]
    gv = np.zeros(n_features)
    w = _aligned(1, tile_rows, np.float64)[0]
    wr = _aligned(1, tile_rows, np.float64)[0]
    ws = _aligned(1, tile_rows, np.float64)[0]
    mx = _aligned(1, tile_rows, np.float64)[0]
    tot = _aligned(1, tile_rows, np.float64)[0]
    lse = _aligned(1, tile_rows, np.float64)[0]
    adj = _aligned(1, tile_rows, np.float64)[0]
    pbuf = _aligned(1, tile_rows, np.float64)[0]
    ibuf = _aligned(1, tile_rows, np.int64)[0]
    fbuf = ibuf.view(np.float64)
    lbl = np.zeros(tile_rows, dtype=np.int64)
    rows = np.zeros(tile_rows, dtype=np.int64)
    run_start = np.zeros(tile_rows + 1, dtype=np.int64)
    run_pat = np.zeros(tile_rows, dtype=np.int64)
    m_max = 0  # the most missing entries of a row in the block
    for p in range(n_patterns):
        m_max = max(m_max, pat_m[p])
    # conditional means per component: fill[k, i, b] for the i-th missing entry of row b of the tile
    fill = np.empty(n_components * m_max * tile_rows)
    ll_sum = 0.0
    w_sum = 0.0
    worst = np.inf
    worst_row = 0

    for t0 in range(0, n_rows, tile_rows):
        nt = min(tile_rows, n_rows - t0)
        for b in range(nt):
            rows[b] = start + order[t0 + b]
        for b in range(nt):
            row = rows[b]
            for d in range(n_features):
                v = np.float64(X[row, d])
                missing = np.isnan(v)
                xt[d, b] = 0.0 if missing else v
                if not dense:
                    obs[d, b] = 0.0 if missing else 1.0
            w[b] = sample_weight[row] if has_weights else 1.0
        # runs of rows of one pattern
        n_runs = 0
        if dense:
            for b in range(nt):
                p = pattern_of[t0 + b]
                if b == 0 or p != run_pat[n_runs - 1]:
                    run_start[n_runs] = b
                    run_pat[n_runs] = p
                    n_runs += 1
            run_start[n_runs] = nt

        # ---- E-step
        for b in range(nt):
            mx[b] = -np.inf
            lbl[b] = 0
        for k in range(n_components):
            kp = 0 if cov_code == 1 else k
            if dense:
                for d in range(n_features):
                    m_kd = means[k, d]
                    for b in range(nt):
                        xe[d, b] = xt[d, b] - m_kd
                for r in range(n_runs):  # e_M = 0 while Lambda_MO e_O is formed
                    m = pat_m[run_pat[r]]
                    mo = pat_miss_off[run_pat[r]]
                    for i in range(m):
                        mi = pat_miss[mo + i]
                        for b in range(run_start[r], run_start[r + 1]):
                            xe[mi, b] = 0.0
                for r in range(n_runs):
                    p = run_pat[r]
                    m = pat_m[p]
                    b0 = run_start[r]
                    b1 = run_start[r + 1]
                    # log N(x_O) - log N at full dimension: +m/2 log 2pi - log det L
                    v = _HALF_LOG_2PI * m - log_det_L[p, kp]
                    for b in range(b0, b1):
                        adj[b] = v
                    if m == 0:
                        continue
                    mo = pat_miss_off[p]
                    off = pat_fac_off[p] + kp * m * m
                    if (
                        b1 - b0 < _SHORT_RUN
                    ):  # row by row: vector loops over a few rows cost more than they save
                        for b in range(b0, b1):
                            for i in range(m):
                                mi = pat_miss[mo + i]
                                t = 0.0
                                for j in range(n_features):
                                    t += lam[kp, mi, j] * xe[j, b]
                                gv[i] = t
                            for i in range(m):
                                t = gv[i]
                                for l in range(i):
                                    t -= fac_L[off + i * m + l] * gv[l]
                                gv[i] = t / fac_L[off + i * m + i]
                            for i in range(m - 1, -1, -1):
                                t = gv[i]
                                for l in range(i + 1, m):
                                    t -= fac_L[off + l * m + i] * gv[l]
                                gv[i] = t / fac_L[off + i * m + i]
                            for i in range(m):
                                xe[pat_miss[mo + i], b] = -gv[i]
                                fill[(k * m_max + i) * tile_rows + b] = -gv[i]
                        continue
                    # g = Lambda_MO e_O (e_M is zero here), then delta = -L^-T L^-1 g
                    for i in range(m):
                        mi = pat_miss[mo + i]
                        for b in range(b0, b1):
                            g[i, b] = 0.0
                        j = 0
                        while j + 4 <= n_features:  # four columns per sweep over g
                            c0 = lam[kp, mi, j]
                            c1 = lam[kp, mi, j + 1]
                            c2 = lam[kp, mi, j + 2]
                            c3 = lam[kp, mi, j + 3]
                            for b in range(b0, b1):
                                g[i, b] += (c0 * xe[j, b] + c1 * xe[j + 1, b]) + (
                                    c2 * xe[j + 2, b] + c3 * xe[j + 3, b]
                                )
                            j += 4
                        while j < n_features:
                            c0 = lam[kp, mi, j]
                            for b in range(b0, b1):
                                g[i, b] += c0 * xe[j, b]
                            j += 1
                    for i in range(m):
                        for l in range(i):
                            c = fac_L[off + i * m + l]
                            for b in range(b0, b1):
                                g[i, b] -= c * g[l, b]
                        c = 1.0 / fac_L[off + i * m + i]
                        for b in range(b0, b1):
                            g[i, b] *= c
                    for i in range(m - 1, -1, -1):
                        for l in range(i + 1, m):
                            c = fac_L[off + l * m + i]
                            for b in range(b0, b1):
                                g[i, b] -= c * g[l, b]
                        c = 1.0 / fac_L[off + i * m + i]
                        for b in range(b0, b1):
                            g[i, b] *= c
                    for i in range(m):
                        mi = pat_miss[mo + i]
                        for b in range(b0, b1):
                            v = -g[i, b]
                            xe[mi, b] = v
                            fill[(k * m_max + i) * tile_rows + b] = v
                _quadratic_form_tile(xe, nt, prec, kp, q, y, z)
                c = log_norm[k]
                for b in range(nt):
                    a[k, b] = c + adj[b] - 0.5 * q[b]
            else:
                for b in range(nt):
                    q[b] = 0.0
                    y[b] = 0.0
                for d in range(n_features):
                    m_kd = means[k, d]
                    p_kd = prec[k, 0, d] if cov_code == 2 else prec[k, 0, 0]
                    dr = drop[k, d]
                    for b in range(nt):
                        v = (xt[d, b] - m_kd) * p_kd * obs[d, b]
                        q[b] += v * v
                        y[b] += (1.0 - obs[d, b]) * dr
                c = log_norm[k]
                for b in range(nt):
                    a[k, b] = c - y[b] - 0.5 * q[b]
            for b in range(nt):
                v = a[k, b]
                if v > mx[b]:
                    mx[b] = v
                    lbl[b] = k

        # ---- log-sum-exp with the running maximum
        for b in range(nt):
            tot[b] = 0.0
        for k in range(n_components):
            _exp_shifted_row(a, k, mx, nt, pbuf, ibuf, fbuf, tot)
        for b in range(nt):
            if not tot[b] > 0.0:  # every log-density is -inf: hard assignment to the first argmax
                for k in range(n_components):
                    a[k, b] = 0.0
                a[lbl[b], b] = 1.0
                tot[b] = 1.0
                mx[b] = -np.inf
        for b in range(nt):
            lse[b] = mx[b] + np.log(tot[b])
            tot[b] = 1.0 / tot[b]
        for b in range(nt):
            ll_sum += w[b] * lse[b] if w[b] > 0.0 else 0.0
            w_sum += w[b]
        for b in range(nt):
            # ties broken by the lower row index, as in row order
            if w[b] > 0.0 and (lse[b] < worst or (lse[b] == worst and rows[b] < worst_row)):
                worst = lse[b]
                worst_row = rows[b]
        if want_logprob:
            for b in range(nt):
                out_logprob[rows[b]] = lse[b]
        if want_label:
            for b in range(nt):
                out_label[rows[b]] = lbl[b]
        if want_resp:
            for b in range(nt):
                for k in range(n_components):
                    out_resp[rows[b], k] = a[k, b] * tot[b]
        if not accumulate:
            continue

        # ---- expected statistics around the shift means[k]
        for b in range(nt):
            ws[b] = w[b] * tot[b]
        for k in range(n_components):
            r_sum = 0.0
            for b in range(nt):
                v = a[k, b] * ws[b]
                wr[b] = v
                r_sum += v
            if r_sum == 0.0:
                continue
            loc_R[k] += r_sum
            if not dense:
                for d in range(n_features):
                    m_kd = means[k, d]
                    s1 = 0.0
                    s2 = 0.0
                    s3 = 0.0
                    for b in range(nt):
                        o = obs[d, b]
                        v = (xt[d, b] - m_kd) * o
                        wv = wr[b] * v
                        s1 += wv
                        s2 += wv * v
                        s3 += wr[b] * (1.0 - o)
                    loc_S1[k, d] += s1
                    loc_S2[0, k, 0, d] += s2 + s3 * var[k, d]
                continue
            kp = 0 if cov_code == 1 else k
            for d in range(n_features):  # missing entries are overwritten with their conditional means below
                m_kd = means[k, d]
                for b in range(nt):
                    xe[d, b] = xt[d, b] - m_kd
            for r in range(n_runs):
                p = run_pat[r]
                m = pat_m[p]
                if m == 0:
                    continue
                b0 = run_start[r]
                b1 = run_start[r + 1]
                mo = pat_miss_off[p]
                mass = 0.0
                for b in range(b0, b1):
                    mass += wr[b]
                pat_mass[p, kp] += mass
                for i in range(m):
                    mi = pat_miss[mo + i]
                    for b in range(b0, b1):
                        xe[mi, b] = fill[(k * m_max + i) * tile_rows + b]
            for d in range(n_features):
                s1 = 0.0
                for b in range(nt):
                    v = xe[d, b] * wr[b]
                    xw[d, b] = v
                    s1 += v
                loc_S1[k, d] += s1
            _outer_upper_tile(xw, xe, nt, loc_S2, 0, kp)
    if accumulate and dense:
        # the conditional covariances: per pattern, (sum of w r) Lambda_MM^-1 in the (M, M) block
        for p in range(n_patterns):
            m = pat_m[p]
            mo = pat_miss_off[p]
            for kk in range(n_prec):
                mass = pat_mass[p, kk]
                if m == 0 or mass == 0.0:
                    continue
                off = pat_fac_off[p] + kk * m * m
                for i in range(m):
                    for j in range(i, m):
                        loc_S2[0, kk, pat_miss[mo + i], pat_miss[mo + j]] += mass * fac_C[off + i * m + j]
    part_ll[blk] = ll_sum
    part_w[blk] = w_sum
    part_worst[blk] = worst
    part_worst_row[blk] = worst_row
    if accumulate:
        part_R[blk] = loc_R
        part_S1[blk] = loc_S1
        part_S2[blk] = loc_S2[0]


@jit()
def _missing_blocks(
    X, sample_weight, log_norm, means, prec, lam, cov_code, accumulate, want_logprob, want_label, want_resp,
    drop, var, part_R, part_S1, part_S2, part_ll, part_w, part_worst, part_worst_row,
    out_logprob, out_label, out_resp, blk_start, blk_stop,
):  # fmt: skip
    """Blocks ``blk_start`` to ``blk_stop`` (exclusive): one thread's share (see :func:`run_blocks`)."""
    for blk in range(blk_start, blk_stop):
        _missing_block(X, sample_weight, log_norm, means, prec, lam, cov_code, accumulate, want_logprob,
                       want_label, want_resp, drop, var, blk, part_R, part_S1, part_S2, part_ll, part_w,
                       part_worst, part_worst_row, out_logprob, out_label, out_resp)  # fmt: skip


def _gaussian_missing_pass(
    X, sample_weight, log_norm, means, prec, lam, cov_code, accumulate, row_offset, acc_R, acc_S1, acc_S2,
    acc_scalars, acc_worst_index, acc_worst_x, out_logprob, out_label, out_resp,
):  # fmt: skip
    """The fused E-step + expected statistics over a chunk whose rows may hold NaN (missing entries).

    Arguments as :func:`fastem._kernels.gaussian._gaussian_pass` (``prec``
    float64), plus ``lam``: the precision matrices U U^T, (K, D, D) for full,
    (1, D, D) for tied, unused (any shape) for diag/spherical. ``acc_worst_x``
    receives the worst row as stored (with its NaN): the caller fills it.
    Blocks run on ``numba.get_num_threads()`` threads (:func:`run_blocks`); their
    partials are added in block order, so results do not depend on the thread count.
    """
    n_samples = X.shape[0]
    n_blocks = n_blocks_of(n_samples)
    n_acc = n_blocks if accumulate else 0
    part_R = np.zeros((n_acc, *acc_R.shape))
    part_S1 = np.zeros((n_acc, *acc_S1.shape))
    part_S2 = np.zeros((n_acc, *acc_S2.shape))
    part_ll = np.zeros(n_blocks)  # per block: sum of w log p(x_O), sum of w
    part_w = np.zeros(n_blocks)
    part_worst = np.full(n_blocks, np.inf)
    part_worst_row = np.zeros(n_blocks, dtype=np.int64)
    # diag/spherical: log p_kd - 1/2 log 2pi (what a missing coordinate removes from log_norm) and sigma^2_kd
    if cov_code >= 2:
        p = (
            np.broadcast_to(prec[:, 0, :], acc_S1.shape)
            if cov_code == 2
            else np.broadcast_to(prec[:, 0, :1], acc_S1.shape)
        )
        drop = np.ascontiguousarray(np.log(p) - _HALF_LOG_2PI)
        var = np.ascontiguousarray(1.0 / (p * p))
    else:
        drop = var = np.zeros((1, 1))
    run_blocks(
        _missing_blocks, n_blocks, X, sample_weight, log_norm, means, prec, lam, cov_code, accumulate,
        out_logprob.shape[0] > 0, out_label.shape[0] > 0, out_resp.shape[0] > 0, drop, var, part_R, part_S1,
        part_S2, part_ll, part_w, part_worst, part_worst_row, out_logprob, out_label, out_resp,
    )  # fmt: skip
    merge_block_scalars(np.stack([part_ll, part_w], axis=1), part_worst, part_worst_row, X, row_offset,
                        acc_scalars, acc_worst_index, acc_worst_x)  # fmt: skip
    if accumulate:
        add_partials(part_R, acc_R)
        add_partials(part_S1, acc_S1)
        add_partials(part_S2, acc_S2)


@jit()
def _nan_blocks(X, found, blk_start, blk_stop):
    """found[blk] = whether block ``blk`` holds a NaN (each block stops at its first)."""
    n_samples, n_features = X.shape
    for blk in range(blk_start, blk_stop):
        for i in range(blk * BLOCK_ROWS, min((blk + 1) * BLOCK_ROWS, n_samples)):
            hit = False
            for d in range(n_features):
                if np.isnan(X[i, d]):
                    hit = True
            if hit:
                found[blk] = True
                break


def _any_nan(X) -> bool:
    """Whether X holds a NaN (one scan over blocks on ``numba.get_num_threads()`` threads)."""
    n_blocks = n_blocks_of(X.shape[0])
    found = np.zeros(n_blocks, dtype=np.bool_)
    run_blocks(_nan_blocks, n_blocks, X, found)
    return bool(found.any())


@jit(inline="always")
def _cholesky_in_place(a, m):
    """Lower Cholesky factor of the leading m x m block of ``a`` in place; returns log det of the factor.

    A pivot that rounding made non-positive (Lambda_MM numerically singular) is
    held at eps times the diagonal entry, so the pass stays finite.
    """
    log_det = 0.0
    for j in range(m):
        s = a[j, j]
        for l in range(j):
            s -= a[j, l] * a[j, l]
        floor = 2.2e-16 * abs(a[j, j]) + 1e-300
        if not s > floor:
            s = floor
        d = np.sqrt(s)
        a[j, j] = d
        log_det += np.log(d)
        inv = 1.0 / d
        for i in range(j + 1, m):
            t = a[i, j]
            for l in range(j):
                t -= a[i, l] * a[j, l]
            a[i, j] = t * inv
    return log_det


@jit()
def _fill_blocks(X, resp, means, lam, dense, out, blk_start, blk_stop):
    """out[i] = X[i] with each NaN replaced by sum_k resp[i, k] E[x_M | x_O, k].

    full/tied (``dense``): E[x_M | x_O, k] = mu_kM - Lambda_MM^-1 Lambda_MO (x_O - mu_kO), one small
    Cholesky factorisation per row and precision matrix (``lam``: (K or 1, D, D)); diag/spherical:
    mu_kM. Rows without NaN are copied.
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    n_prec = lam.shape[0]
    for i in range(blk_start * BLOCK_ROWS, min(blk_stop * BLOCK_ROWS, n_samples)):
        m = 0
        miss = np.empty(n_features, dtype=np.int64)
        for d in range(n_features):
            v = np.float64(X[i, d])
            out[i, d] = v
            if np.isnan(v):
                miss[m] = d
                m += 1
        if m == 0:
            continue
        for t in range(m):
            out[i, miss[t]] = 0.0
        if not dense:
            for k in range(n_components):
                r = resp[i, k]
                for t in range(m):
                    out[i, miss[t]] += r * means[k, miss[t]]
            continue
        work = np.empty((m, m))
        g = np.empty(m)
        e = np.empty(n_features)
        for k in range(n_components):
            r = resp[i, k]
            if r == 0.0:
                continue
            kp = 0 if n_prec == 1 else k
            for d in range(n_features):
                v = np.float64(X[i, d])
                e[d] = 0.0 if np.isnan(v) else v - means[k, d]
            for s in range(m):
                for t in range(s + 1):
                    work[s, t] = lam[kp, miss[s], miss[t]]
                acc = 0.0
                for d in range(n_features):
                    acc += lam[kp, miss[s], d] * e[d]
                g[s] = acc
            _cholesky_in_place(work, m)
            for s in range(m):
                for t in range(s):
                    g[s] -= work[s, t] * g[t]
                g[s] /= work[s, s]
            for s in range(m - 1, -1, -1):
                for t in range(s + 1, m):
                    g[s] -= work[t, s] * g[t]
                g[s] /= work[s, s]
            for s in range(m):
                out[i, miss[s]] += r * (means[k, miss[s]] - g[s])


def _conditional_fill(X, resp, means, lam, dense, out) -> None:
    """out = X with each NaN replaced by sum_k resp[i, k] E[x_M | x_O, k] (see :func:`_fill_blocks`)."""
    run_blocks(_fill_blocks, n_blocks_of(X.shape[0]), X, resp, means, lam, dense, out)
