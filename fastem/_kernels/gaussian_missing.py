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
(m = number of missing coordinates), never a factorisation of Sigma_OO.

Layout (full/tied). Each block of ``BLOCK_ROWS`` rows numbers its missingness
patterns in order of first appearance (an open-addressing table of per-row keys)
and, per pattern, factors Lambda_MM = L L^T for all K components at once, with
the components in the SIMD lanes (Lambda is passed as (D, D, K); tied factors
once and copies): the packed lower triangle of L (reciprocal diagonal),
log det L and, for the M-step, Lambda_MM^-1. The block's rows then run in tiles
of ``TILE_ROWS`` rows, two kinds:

* a pattern with at least ``_LONG_RUN`` rows in the block (few patterns, as in
  survey data with skipped sections) gets tiles of its own, with the rows in the
  SIMD lanes: per component, g = Lambda_MO e_O and the two triangular solves
  are vector loops over the tile, as cheap per row as the quadratic form's;
* the other rows (complete, or of patterns too rare to fill a tile, as under
  MCAR) follow in row order, in tiles of mixed patterns: for each incomplete
  row, delta for every component at once is a small mat-vec and two triangular
  solves with the components in the lanes, so its cost does not depend on how
  many rows share the pattern.

Per component, the centred tile gets the conditional means written into its
missing entries, and the quadratic form and the moments run over the full tile
with the complete-data helpers: on AVX-512 hosts the quadratic form in the
register-blocked micro-kernel of :mod:`fastem._kernels.gaussian_simd` (as the
complete-data pass; the lanes of the tile past its rows are computed and ignored),
elsewhere, and for the moments, those of :mod:`fastem._kernels.gaussian_tiles`.
The work with the components in the lanes (per row Lambda_MO e_O and the triangular
solves; per pattern the factorisation, Lambda_MM^-1 and its gathering into the
statistics) runs in explicit vectors of 8 components and a scalar tail, since LLVM
leaves a loop over a run-time count of 16 lanes to its scalar remainder.

Expected statistics around the shift m_k (the current means, so e is x - m_k
with the conditional mean filled in):

    S1_k += w r_ik e,   S2_k += w r_ik (e e^T + Lambda_MM^-1 in the (M, M) block)

The conditional-covariance term is summed per pattern (sum of w r_ik over the
pattern's rows times Lambda_MM^-1), once per block. diag/spherical: every
coordinate is independent, a missing coordinate drops out of the density, its
conditional mean is mu_kd (e_d = 0) and its conditional variance sigma^2_kd.

Determinism: each block writes its own partials (rows in tile order, which
depends only on the block's rows; so does the arithmetic of each row),
added into the caller's accumulators in block order afterwards: results do not
depend on the thread count. All arithmetic is float64 (float32 data are read
into float64 tiles).

Memory: per block (and thread), the pattern factors take m (m + 1) / 2 K
float64 per distinct pattern of the block for L, as many for Lambda_MM^-1: about
1.5 MB at D = 16, K = 16 under 10% MCAR; at worst (every row of the block its
own pattern with many missing entries) BLOCK_ROWS D^2 K / 2 of each, so large D
and K with many patterns of many holes need a lot of memory (as the per-pattern
grouping needed before, then at twice this).
"""

from __future__ import annotations

import numpy as np

from ._blocks import add_partials, merge_block_scalars, n_blocks_of, run_blocks
from ._config import BLOCK_ROWS, DIAG_TILE_ROWS, TILE_ROWS, jit
from ._simd import vfma, vload, vmul, vsplat, vstore, vsub, vzero
from ._vector_width import prefer_wide_vectors
from .gaussian import _aligned, _exp_shifted_row
from .gaussian_simd import padded_precision, quadratic_form_rows, simd_tiles_for
from .gaussian_tiles import _outer_upper_tile, _quadratic_form_tile

_HALF_LOG_2PI = 0.9189385332046727
#: rows are keyed by the exact bitmask of their missing coordinates up to this many features, by a hash
#: beyond (patterns are then told apart by exact comparison, so a collision costs a probe, not a result)
_EXACT_KEY_FEATURES = 62
#: a pattern with at least this many rows in a block gets tiles of its own, with the rows in the SIMD lanes
_LONG_RUN = 32


@jit(inline="always")
def _lanes_sub_product(g, i, f, r, l, n_lanes):
    """g[i, :n] -= f[r, :n] g[l, :n] (n = ``n_lanes``), in explicit vectors of 8 and a scalar tail.

    Written out because LLVM vectorises a loop over a run-time number of lanes by 32 at a time, leaving
    16 components to its scalar remainder.
    """
    k0 = 0
    while k0 + 8 <= n_lanes:
        vstore(g, i, k0, vsub(vload(g, i, k0), vmul(vload(f, r, k0), vload(g, l, k0))))
        k0 += 8
    for k in range(k0, n_lanes):
        g[i, k] -= f[r, k] * g[l, k]


@jit(inline="always")
def _lanes_scale(g, i, f, r, n_lanes):
    """g[i, :n] *= f[r, :n] (n = ``n_lanes``), as :func:`_lanes_sub_product`."""
    k0 = 0
    while k0 + 8 <= n_lanes:
        vstore(g, i, k0, vmul(vload(g, i, k0), vload(f, r, k0)))
        k0 += 8
    for k in range(k0, n_lanes):
        g[i, k] *= f[r, k]


@jit(inline="always")
def _fill_tile_rows(xe, nt, p, k, pat_m, pat_miss_off, pat_miss, pat_obs, pat_fac_off, fac_L, lam_k, g, fill):
    """xe[M, :nt] <- delta for component k in a tile of rows of pattern ``p`` alone (rows in the lanes).

    ``xe`` holds the rows centred at component k's mean; delta = -L^-T L^-1 Lambda_MO e_O, also kept in
    fill[(k m + i) T + b] for the M-step.
    """
    n_features = xe.shape[0]
    tile_rows = g.shape[1]  # the stride of fill (xe's rows may be longer)
    n_lanes = lam_k.shape[2]
    m = pat_m[p]
    mo = pat_miss_off[p]
    oo = p * n_features - mo
    fo = pat_fac_off[p] * n_lanes
    n_obs = n_features - m
    for i in range(m):
        mi = pat_miss[mo + i]
        j0 = pat_obs[oo]
        c0 = lam_k[mi, j0, k]
        for b in range(nt):
            g[i, b] = c0 * xe[j0, b]
        jo = 1
        while jo + 2 <= n_obs:  # two observed coordinates per sweep over g
            j0 = pat_obs[oo + jo]
            j1 = pat_obs[oo + jo + 1]
            c0 = lam_k[mi, j0, k]
            c1 = lam_k[mi, j1, k]
            for b in range(nt):
                g[i, b] += c0 * xe[j0, b] + c1 * xe[j1, b]
            jo += 2
        if jo < n_obs:
            j0 = pat_obs[oo + jo]
            c0 = lam_k[mi, j0, k]
            for b in range(nt):
                g[i, b] += c0 * xe[j0, b]
    for i in range(m):
        ti = fo + ((i * (i + 1)) // 2) * n_lanes
        for l in range(i):
            c = fac_L[ti + l * n_lanes + k]
            for b in range(nt):
                g[i, b] -= c * g[l, b]
        c = fac_L[ti + i * n_lanes + k]
        for b in range(nt):
            g[i, b] *= c
    for i in range(m - 1, -1, -1):
        for l in range(i + 1, m):
            c = fac_L[fo + ((l * (l + 1)) // 2 + i) * n_lanes + k]
            for b in range(nt):
                g[i, b] -= c * g[l, b]
        c = -fac_L[fo + ((i * (i + 1)) // 2 + i) * n_lanes + k]
        mi = pat_miss[mo + i]
        for b in range(nt):
            v = g[i, b] * c
            g[i, b] = -v
            xe[mi, b] = v
            fill[(k * m + i) * tile_rows + b] = v


@jit()
def _missing_block(
    X, sample_weight, log_norm, means, means_t, prec, lam_k, cov_code, accumulate, want_logprob, want_label,
    want_resp, drop, var, blk, part_R, part_S1, part_S2, part_ll, part_w, part_worst, part_worst_row,
    out_logprob, out_label, out_resp,
):  # fmt: skip
    """One block of :func:`_gaussian_missing_pass`: its partials go to index ``blk`` of the ``part_*`` arrays.

    Called by :func:`_missing_blocks` for each block of a thread's range (its
    scratch arrays are the block's own). ``lam_k`` is (D, D, K): component k's
    precision matrix (the tied one for every k) at [:, :, k]; ``means_t`` is
    ``means`` transposed, (D, K).
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    has_weights = sample_weight.shape[0] > 0
    dense = cov_code <= 1
    tied = cov_code == 1
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
    n_lanes = n_components if dense else 1  # the components, side by side in the per-row work

    # ---- the block's missingness patterns (full/tied): ids in order of first appearance
    row_pat = np.full(n_rows, -1, dtype=np.int64)  # -1: a complete row
    n_patterns = 0
    pat_row = np.empty(n_rows if dense else 0, dtype=np.int64)  # the first row (in the block) of each pattern
    n_missing_row = np.zeros(n_rows, dtype=np.int64)
    if dense:
        keys = np.zeros(n_rows, dtype=np.int64)
        exact_keys = n_features <= _EXACT_KEY_FEATURES
        if exact_keys:  # column by column, branch-free over the rows: loops that vectorise
            for d in range(n_features):
                bit = np.int64(1) << np.int64(d)
                for i in range(n_rows):
                    hole = np.isnan(X[start + i, d])
                    keys[i] |= bit if hole else np.int64(0)
                    n_missing_row[i] += 1 if hole else 0
        else:
            for i in range(n_rows):
                key = np.int64(0)
                n_missing = 0
                for d in range(n_features):
                    if np.isnan(X[start + i, d]):
                        n_missing += 1
                        key = key * np.int64(1000003) + np.int64(d + 1)
                keys[i] = key
                n_missing_row[i] = n_missing
        n_slots_table = 16
        while n_slots_table < 2 * n_rows:
            n_slots_table *= 2
        mask = np.int64(n_slots_table - 1)
        table = np.full(n_slots_table, -1, dtype=np.int64)
        for i in range(n_rows):
            if n_missing_row[i] == 0:
                continue
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
    pat_m = np.zeros(n_patterns, dtype=np.int64)
    pat_miss_off = np.zeros(n_patterns + 1, dtype=np.int64)
    pat_fac_off = np.zeros(n_patterns + 1, dtype=np.int64)  # in packed triangles, times n_lanes below
    m_max = 0
    for p in range(n_patterns):
        m = n_missing_row[pat_row[p]]
        pat_m[p] = m
        m_max = max(m_max, m)
        pat_miss_off[p + 1] = pat_miss_off[p] + m
        pat_fac_off[p + 1] = pat_fac_off[p] + (m * (m + 1)) // 2
    pat_miss = np.empty(pat_miss_off[n_patterns], dtype=np.int64)  # the missing coordinates, increasing
    pat_obs = np.empty(n_patterns * n_features - pat_miss_off[n_patterns], dtype=np.int64)  # the observed
    for p in range(n_patterns):
        c = pat_miss_off[p]
        o = p * n_features - pat_miss_off[p]
        row = start + pat_row[p]
        for d in range(n_features):
            if np.isnan(X[row, d]):
                pat_miss[c] = d
                c += 1
            else:
                pat_obs[o] = d
                o += 1

    # ---- per pattern, for all components at once (lanes): L L^T = Lambda_MM (packed lower triangle,
    # row i at i (i + 1) / 2, lanes innermost, 1 / L_ii on the diagonal), log det L, Lambda_MM^-1.
    # The lane loops run in explicit vectors of 8 components and a scalar tail (as the per-row work below)
    fac_L = np.empty(pat_fac_off[n_patterns] * n_lanes)
    fac_Lr = fac_L.reshape((pat_fac_off[n_patterns], n_lanes))  # [packed entry, lane]
    fac_C = np.empty((pat_fac_off[n_patterns] if accumulate else 0, n_lanes))  # Lambda_MM^-1, packed as L
    log_det_L = np.empty(n_patterns * n_lanes)
    pat_mass = np.zeros(n_patterns * n_lanes)  # sum of w r over the pattern's rows, per component
    n_fac = 1 if tied else n_lanes  # tied: one factorisation per pattern, copied into every lane after
    lam_fac = lam_k.reshape((lam_k.shape[0] * lam_k.shape[1], lam_k.shape[2]))  # [mi * D + j, k]
    lane = np.empty((1, n_lanes))
    prod = np.empty(n_lanes)
    log_sum = np.empty(n_lanes)
    inv_L = np.empty((m_max * m_max if accumulate else 0, n_lanes))  # L^-1, row-major [i * m + c, lane]
    for p in range(n_patterns):
        m = pat_m[p]
        mo = pat_miss_off[p]
        pf = pat_fac_off[p]
        for k in range(n_fac):
            prod[k] = 1.0  # of the squared pivots: one log per factor, not per pivot
            log_sum[k] = 0.0
        for j in range(m):
            mj = pat_miss[mo + j]
            tj = pf + (j * (j + 1)) // 2
            k0 = 0
            while k0 + 8 <= n_fac:
                acc = vload(lam_fac, mj * n_features + mj, k0)
                for l in range(j):
                    v = vload(fac_Lr, tj + l, k0)
                    acc = vsub(acc, vmul(v, v))
                vstore(lane, 0, k0, acc)
                k0 += 8
            for k in range(k0, n_fac):
                t = lam_k[mj, mj, k]
                for l in range(j):
                    v = fac_Lr[tj + l, k]
                    t -= v * v
                lane[0, k] = t
            jj = tj + j
            out_of_range = False
            for k in range(n_fac):
                floor = 2.2e-16 * abs(lam_k[mj, mj, k]) + 1e-300
                t = lane[0, k] if lane[0, k] > floor else floor  # rounding made Lambda_MM singular: hold it
                prod[k] *= t
                fac_Lr[jj, k] = 1.0 / np.sqrt(t)
                out_of_range |= prod[k] < 1e-150 or prod[k] > 1e150
            if out_of_range:
                for k in range(n_fac):
                    if prod[k] < 1e-150 or prod[k] > 1e150:
                        log_sum[k] += np.log(prod[k])
                        prod[k] = 1.0
            for i in range(j + 1, m):
                ti = pf + (i * (i + 1)) // 2
                mi = pat_miss[mo + i]
                k0 = 0
                while k0 + 8 <= n_fac:
                    acc = vload(lam_fac, mi * n_features + mj, k0)
                    for l in range(j):
                        acc = vsub(acc, vmul(vload(fac_Lr, ti + l, k0), vload(fac_Lr, tj + l, k0)))
                    vstore(fac_Lr, ti + j, k0, vmul(acc, vload(fac_Lr, jj, k0)))
                    k0 += 8
                for k in range(k0, n_fac):
                    t = lam_k[mi, mj, k]
                    for l in range(j):
                        t -= fac_Lr[ti + l, k] * fac_Lr[tj + l, k]
                    fac_Lr[ti + j, k] = t * fac_Lr[jj, k]
        for k in range(n_fac):
            log_det_L[p * n_lanes + k] = 0.5 * (log_sum[k] + np.log(prod[k]))
        if not accumulate:
            continue
        # W = L^-1 (lower), column by column; then Lambda_MM^-1 = W^T W (lower triangle, packed like L)
        for c in range(m):
            for i in range(c, m):
                ti = pf + (i * (i + 1)) // 2
                one = 1.0 if i == c else 0.0
                k0 = 0
                while k0 + 8 <= n_fac:
                    acc = vsplat(inv_L, one)
                    for l in range(c, i):
                        acc = vsub(acc, vmul(vload(fac_Lr, ti + l, k0), vload(inv_L, l * m + c, k0)))
                    vstore(inv_L, i * m + c, k0, vmul(acc, vload(fac_Lr, ti + i, k0)))
                    k0 += 8
                for k in range(k0, n_fac):
                    t = one
                    for l in range(c, i):
                        t -= fac_Lr[ti + l, k] * inv_L[l * m + c, k]
                    inv_L[i * m + c, k] = t * fac_Lr[ti + i, k]
        for i in range(m):
            ti = pf + (i * (i + 1)) // 2
            for j in range(i + 1):
                k0 = 0
                while k0 + 8 <= n_fac:
                    acc = vzero(inv_L)
                    for l in range(i, m):
                        acc = vfma(vload(inv_L, l * m + i, k0), vload(inv_L, l * m + j, k0), acc)
                    vstore(fac_C, ti + j, k0, acc)
                    k0 += 8
                for k in range(k0, n_fac):
                    t = 0.0
                    for l in range(i, m):
                        t += inv_L[l * m + i, k] * inv_L[l * m + j, k]
                    fac_C[ti + j, k] = t

    if tied:
        for p in range(n_patterns):
            for k in range(1, n_lanes):
                log_det_L[p * n_lanes + k] = log_det_L[p * n_lanes]
        for t in range(pat_fac_off[n_patterns]):
            for k in range(1, n_lanes):
                fac_Lr[t, k] = fac_Lr[t, 0]
                if accumulate:
                    fac_C[t, k] = fac_C[t, 0]

    # ---- the tile plan: rows of a pattern that fills at least _LONG_RUN rows of the block first, in tiles of
    # that pattern alone (rows in the SIMD lanes); the other rows (complete, or of rarer patterns) after them,
    # in row order, in tiles of mixed patterns (components in the lanes, row by row)
    pat_count = np.zeros(n_patterns, dtype=np.int64)
    for i in range(n_rows):
        if row_pat[i] >= 0:
            pat_count[row_pat[i]] += 1
    max_tiles = n_rows // _LONG_RUN + n_rows // tile_rows + 2
    tile_first = np.empty(max_tiles, dtype=np.int64)
    tile_len = np.empty(max_tiles, dtype=np.int64)
    tile_pat = np.empty(max_tiles, dtype=np.int64)  # -1: mixed
    position = np.zeros(n_patterns, dtype=np.int64)
    n_tiles = 0
    n_long_rows = 0
    for p in range(n_patterns):
        if pat_count[p] >= _LONG_RUN:
            position[p] = n_long_rows
            for s in range(n_long_rows, n_long_rows + pat_count[p], tile_rows):
                tile_first[n_tiles] = s
                tile_len[n_tiles] = min(tile_rows, n_long_rows + pat_count[p] - s)
                tile_pat[n_tiles] = p
                n_tiles += 1
            n_long_rows += pat_count[p]
    order = np.empty(n_rows, dtype=np.int64)  # rows (in the block) in tile order
    rest = n_long_rows
    for i in range(n_rows):
        p = row_pat[i]
        if p >= 0 and pat_count[p] >= _LONG_RUN:
            order[position[p]] = i
            position[p] += 1
        else:
            order[rest] = i
            rest += 1
    for s in range(n_long_rows, n_rows, tile_rows):
        tile_first[n_tiles] = s
        tile_len[n_tiles] = min(tile_rows, n_rows - s)
        tile_pat[n_tiles] = -1
        n_tiles += 1

    # ---- tile buffers
    xt = _aligned(n_features, tile_rows, np.float64)  # the rows, NaN read as 0
    # centred and filled, per component; SIMD tiles: rows an odd number of cache lines apart (gaussian_simd)
    simd_tiles = dense and simd_tiles_for(n_features)
    xe_stride = tile_rows + 8 if simd_tiles else tile_rows
    xe = _aligned(n_features, xe_stride, np.float64)
    xw = _aligned(n_features, tile_rows, np.float64)
    obs = _aligned(n_features if not dense else 1, tile_rows, np.float64)  # diag/spherical: 1 observed
    a = _aligned(n_components, tile_rows, np.float64)
    # log N(x_O) - log N(x) at e_M = delta, per component and row
    adj = _aligned(n_components if dense else 1, tile_rows, np.float64)
    q = _aligned(1, tile_rows, np.float64)[0]
    y = _aligned(1, tile_rows, np.float64)[0]
    z = _aligned(1, tile_rows, np.float64)[0]
    w = _aligned(1, tile_rows, np.float64)[0]
    wr = _aligned(1, tile_rows, np.float64)[0]
    ws = _aligned(1, tile_rows, np.float64)[0]
    mx = _aligned(1, tile_rows, np.float64)[0]
    tot = _aligned(1, tile_rows, np.float64)[0]
    lse = _aligned(1, tile_rows, np.float64)[0]
    pbuf = _aligned(1, tile_rows, np.float64)[0]
    ibuf = _aligned(1, tile_rows, np.int64)[0]
    fbuf = ibuf.view(np.float64)
    lbl = np.zeros(tile_rows, dtype=np.int64)
    # per incomplete row, components in the lanes: Lambda_MO e_O, then delta; per tile of one pattern, rows in
    # the lanes: the same, per component
    g_lanes = np.empty((max(m_max, 1), n_lanes))
    lam_rows = lam_k.reshape((lam_k.shape[0] * lam_k.shape[1], lam_k.shape[2]))  # [mi * D + j, k]
    fac_rows = fac_L.reshape((pat_fac_off[n_patterns], n_lanes))  # the factors' entries, lanes innermost
    g_rows = _aligned(max(m_max, 1), tile_rows, np.float64)
    rows = np.empty(tile_rows, dtype=np.int64)
    # the tile's missing entries (their flat index in a (D, tile_rows) buffer) and their conditional means,
    # fill[k * (entries of the tile) + entry], compact so that the row-by-row writes stay in L1 (in a tile of
    # one pattern: fill[(k * m + i) * tile_rows + b] for its i-th missing coordinate)
    ent_cap = tile_rows * m_max
    ent_at = np.empty(ent_cap, dtype=np.int64)
    xe_flat = xe.reshape(n_features * xe_stride)
    fill = np.empty(n_components * ent_cap if dense else 0)
    inc_b = np.empty(tile_rows, dtype=np.int64)  # the tile's incomplete rows and their patterns
    inc_p = np.empty(tile_rows, dtype=np.int64)
    # AVX-512 hosts (full/tied): the E-step's quadratic forms in the register-blocked tiles of gaussian_simd
    # (its M-step kernel, on a row-major copy of the tile with m_k + delta_k written in per component,
    # measured no faster here than the moments below); a zero-size U where unused
    upad = padded_precision(prec, np.float64, simd_tiles)
    ll_sum = 0.0
    w_sum = 0.0
    worst = np.inf
    worst_row = 0

    for tile in range(n_tiles):
        nt = tile_len[tile]
        t0 = tile_first[tile]
        tile_p = tile_pat[tile]
        for b in range(nt):
            rows[b] = start + order[t0 + b]
        for d in range(n_features):
            for b in range(nt):
                v = np.float64(X[rows[b], d])
                xt[d, b] = 0.0 if np.isnan(v) else v
        if not dense:
            for d in range(n_features):
                for b in range(nt):
                    obs[d, b] = 0.0 if np.isnan(X[rows[b], d]) else 1.0
        for b in range(nt):
            w[b] = sample_weight[rows[b]] if has_weights else 1.0
        n_ent = 0
        n_tile_ent = 0  # the stride of fill in a tile of mixed patterns
        n_inc = 0
        if tile_p >= 0:
            m = pat_m[tile_p]
            for k in range(n_components):
                v = _HALF_LOG_2PI * m - log_det_L[tile_p * n_lanes + k]
                for b in range(nt):
                    adj[k, b] = v
        elif dense:
            for b in range(nt):
                p = row_pat[order[t0 + b]]
                if p >= 0:
                    n_tile_ent += pat_m[p]
            for k in range(n_components):
                for b in range(nt):
                    adj[k, b] = 0.0
            # ---- conditional means of the missing entries, row by row, components in the lanes
            for b in range(nt):
                p = row_pat[order[t0 + b]]
                if p < 0:
                    continue
                inc_b[n_inc] = b
                inc_p[n_inc] = p
                n_inc += 1
                m = pat_m[p]
                mo = pat_miss_off[p]
                fo = pat_fac_off[p] * n_lanes
                lo = p * n_lanes
                # log N(x_O) - log N at full dimension: +m/2 log 2pi - log det L
                for k in range(n_components):
                    adj[k, b] = _HALF_LOG_2PI * m - log_det_L[lo + k]
                # g = Lambda_MO e_O (the row read from X: contiguous), then delta = -L^-T L^-1 g
                oo = p * n_features - mo
                row = rows[b]
                for i in range(m):
                    mi = pat_miss[mo + i]
                    if n_lanes < 8:  # fewer components than a vector holds: a sum per component, no lanes
                        for k in range(n_lanes):
                            t = 0.0
                            for jo in range(n_features - m):
                                j = pat_obs[oo + jo]
                                t += lam_k[mi, j, k] * (np.float64(X[row, j]) - means_t[j, k])
                            g_lanes[i, k] = t
                        continue
                    # components in explicit vectors of 8, summed in registers (a loop over the lanes
                    # alone would leave K = 16 to LLVM's scalar remainder)
                    k0 = 0
                    while k0 + 8 <= n_lanes:
                        t8 = vzero(g_lanes)
                        for jo in range(n_features - m):
                            j = pat_obs[oo + jo]
                            centred = vsub(vsplat(g_lanes, X[row, j]), vload(means_t, j, k0))
                            t8 = vfma(vload(lam_rows, mi * n_features + j, k0), centred, t8)
                        vstore(g_lanes, i, k0, t8)
                        k0 += 8
                    for k in range(k0, n_lanes):
                        t = 0.0
                        for jo in range(n_features - m):
                            j = pat_obs[oo + jo]
                            t += lam_k[mi, j, k] * (np.float64(X[row, j]) - means_t[j, k])
                        g_lanes[i, k] = t
                if m == 1:  # delta = -g / Lambda_MM
                    for k in range(n_lanes):
                        r = fac_L[fo + k]
                        fill[k * n_tile_ent + n_ent] = -(g_lanes[0, k] * r) * r
                    ent_at[n_ent] = pat_miss[mo] * xe_stride + b
                    n_ent += 1
                    continue
                pf = pat_fac_off[p]  # row of fac_rows: pf + i (i + 1) / 2 + l for L[i, l]
                for i in range(m):
                    ti = pf + (i * (i + 1)) // 2
                    for l in range(i):
                        _lanes_sub_product(g_lanes, i, fac_rows, ti + l, l, n_lanes)
                    _lanes_scale(g_lanes, i, fac_rows, ti + i, n_lanes)
                for i in range(m - 1, -1, -1):
                    for l in range(i + 1, m):
                        _lanes_sub_product(g_lanes, i, fac_rows, pf + (l * (l + 1)) // 2 + i, l, n_lanes)
                    _lanes_scale(g_lanes, i, fac_rows, pf + (i * (i + 1)) // 2 + i, n_lanes)
                for i in range(m):
                    ent_at[n_ent + i] = pat_miss[mo + i] * xe_stride + b
                    for k in range(n_components):
                        fill[k * n_tile_ent + n_ent + i] = -g_lanes[i, k]
                n_ent += m

        # ---- E-step
        for b in range(nt):
            mx[b] = -np.inf
            lbl[b] = 0
        for k in range(n_components):
            kp = 0 if tied else k
            if dense:
                for d in range(n_features):
                    m_kd = means[k, d]
                    for b in range(nt):
                        xe[d, b] = xt[d, b] - m_kd
                if tile_p >= 0:
                    _fill_tile_rows(xe, nt, tile_p, k, pat_m, pat_miss_off, pat_miss, pat_obs, pat_fac_off,
                                    fac_L, lam_k, g_rows, fill)  # fmt: skip
                else:
                    for e in range(n_ent):
                        xe_flat[ent_at[e]] = fill[k * n_tile_ent + e]
                if simd_tiles:
                    quadratic_form_rows(xe, nt, upad, kp, q)
                else:
                    _quadratic_form_tile(xe, nt, prec, kp, q, y, z)
                c = log_norm[k]
                for b in range(nt):
                    a[k, b] = c + adj[k, b] - 0.5 * q[b]
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
            for d in range(n_features):
                m_kd = means[k, d]
                for b in range(nt):
                    xe[d, b] = xt[d, b] - m_kd
            if tile_p >= 0:
                m = pat_m[tile_p]
                mo = pat_miss_off[tile_p]
                for i in range(m):
                    mi = pat_miss[mo + i]
                    for b in range(nt):
                        xe[mi, b] = fill[(k * m + i) * tile_rows + b]
                pat_mass[tile_p * n_lanes + k] += r_sum
            else:
                for e in range(n_ent):
                    xe_flat[ent_at[e]] = fill[k * n_tile_ent + e]
            for d in range(n_features):
                s1 = 0.0
                for b in range(nt):
                    v = xe[d, b] * wr[b]
                    xw[d, b] = v
                    s1 += v
                loc_S1[k, d] += s1
            _outer_upper_tile(xw, xe, nt, loc_S2, 0, 0 if tied else k)
        # per pattern and component, sum of w r (the same products as wr above), components in the lanes
        for j in range(n_inc):
            b = inc_b[j]
            lo = inc_p[j] * n_lanes
            for k in range(n_components):
                pat_mass[lo + k] += a[k, b] * ws[b]
    if accumulate and dense:
        # the conditional covariances: per pattern and component, (sum of w r) Lambda_MM^-1 in the (M, M)
        # block, gathered with the components in the lanes (upper triangle: pat_miss is increasing)
        cond = np.zeros((n_features * n_features, n_lanes))  # [mj * D + mi, lane]
        mass = pat_mass.reshape((n_patterns, n_lanes))
        for p in range(n_patterns):
            m = pat_m[p]
            mo = pat_miss_off[p]
            pf = pat_fac_off[p]
            for i in range(m):
                mi = pat_miss[mo + i]
                ti = pf + (i * (i + 1)) // 2
                for j in range(i + 1):
                    cj = pat_miss[mo + j] * n_features + mi
                    k0 = 0
                    while k0 + 8 <= n_lanes:
                        vstore(
                            cond,
                            cj,
                            k0,
                            vfma(vload(mass, p, k0), vload(fac_C, ti + j, k0), vload(cond, cj, k0)),
                        )
                        k0 += 8
                    for k in range(k0, n_lanes):
                        cond[cj, k] += mass[p, k] * fac_C[ti + j, k]
        for k in range(n_components):
            kp = 0 if tied else k
            for d in range(n_features):
                for e in range(d, n_features):
                    loc_S2[0, kp, d, e] += cond[d * n_features + e, k]
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
    X, sample_weight, log_norm, means, means_t, prec, lam_k, cov_code, accumulate, want_logprob, want_label,
    want_resp, drop, var, part_R, part_S1, part_S2, part_ll, part_w, part_worst, part_worst_row,
    out_logprob, out_label, out_resp, blk_start, blk_stop,
):  # fmt: skip
    """Blocks ``blk_start`` to ``blk_stop`` (exclusive): one thread's share (see :func:`run_blocks`)."""
    for blk in range(blk_start, blk_stop):
        _missing_block(X, sample_weight, log_norm, means, means_t, prec, lam_k, cov_code, accumulate,
                       want_logprob, want_label, want_resp, drop, var, blk, part_R, part_S1, part_S2, part_ll,
                       part_w, part_worst, part_worst_row, out_logprob, out_label, out_resp)  # fmt: skip


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
    n_components, n_features = acc_S1.shape
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
        lam_k = np.zeros((1, 1, 1))
        means_t = np.zeros((1, 1))
    else:
        drop = var = np.zeros((1, 1))
        # the components in the last axis: the per-row work runs with them in the SIMD lanes
        lam_k = np.ascontiguousarray(
            np.broadcast_to(np.asarray(lam, dtype=np.float64), (n_components, n_features, n_features))
            .transpose(1, 2, 0)
        )  # fmt: skip
        means_t = np.ascontiguousarray(np.asarray(means, dtype=np.float64).T)
    run_blocks(
        _missing_blocks, n_blocks, X, sample_weight, log_norm, means, means_t, prec, lam_k, cov_code,
        accumulate, out_logprob.shape[0] > 0, out_label.shape[0] > 0, out_resp.shape[0] > 0, drop, var,
        part_R, part_S1, part_S2, part_ll, part_w, part_worst, part_worst_row, out_logprob, out_label,
        out_resp,
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
