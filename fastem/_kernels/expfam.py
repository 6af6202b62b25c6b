"""Fused E-step + sufficient-statistics kernels for linear exponential families (numba only).

For Poisson, Bernoulli, multinomial and von Mises-Fisher components the
per-component log-density is linear in x::

    log pi_k + log p_k(x) = const_k + theta_k . x + h(x)

so one pass needs the product X theta^T (the E-step) and R^T X (the first
moments), both of size N x K x D. The dense pass follows the structure of
``_gaussian_pass``: blocks of ``BLOCK_ROWS`` rows, each thread running a
contiguous range of them (``_blocks.run_blocks``, serial ``nogil`` kernels
rather than ``parallel=True``, which compile in about half the time); tiles
of ``TILE_ROWS`` rows transposed into aligned (D, T) buffers so that rows sit in
the SIMD lanes. Per tile:

1. a_kb = const_k + theta_k . x_b, four components x four features per sweep
   over the tile (one load of four feature rows feeds sixteen FMAs); K and D
   are padded to multiples of four with zeros, so there is one sweep kernel
   and no remainder loops;
2. h(x_b) from a table of log(j!) (``lgamma`` only beyond the table);
3. log-sum-exp over k with the running maximum and the vectorised exp of
   ``gaussian.py``; logprob_b = lse_b + h(x_b);
4. R_k += sum_b w_b r_kb and S1_kd += sum_b w_b r_kb x_bd, in 4 x 4 register
   blocks over (component, feature), skipping components whose responsibility
   sum over the tile is exactly 0.

Precision: for float32 data the tile and the product theta_k . x_b are float32
(``theta`` must have the data's dtype; the sum over d is accumulated in
float32 within the tile, then converted to float64 before const_k is added in
float64). Everything after that (log-sum-exp, h(x), responsibilities) and
every accumulator is float64; S1 takes float64 products of the float32 x
(converted once per tile) with float64 responsibilities. float64 data is
float64 throughout.

Each block writes its own partial statistics; the partials are added into the
caller's accumulators serially, in block order, so results are independent of
the number of threads, and calls on pieces cut at multiples of ``BLOCK_ROWS``
add up to the one-call result bit for bit. No N x K or N x D temporary is
created; the optional outputs (per-point log-likelihood, label,
responsibilities) are written in place. The Python drivers (``_expfam_pass``
and its CSR and missing-value siblings) pad the parameters, run the block
kernels on the threads and merge the partials.

``_expfam_pass_csr`` is the same pass for a CSR matrix: rows are read one by
one (a_k = const_k + sum over the row's nonzeros of theta_kj x_j, in float64,
with theta transposed once so the sum over k is contiguous), then a tile of
rows shares the dense pass's log-sum-exp. A block's S1 partial only holds the
columns that occur in the block, so its cost scales with the nonzeros, not
with D; blocks run in waves whose partials are merged (in block order) and
reused, so memory stays bounded for any D.

Base-measure codes: 0 -> h(x) = 0; 1 -> h(x) = -sum_d log(x_d!) (Poisson);
2 -> h(x) = log(n!) - sum_d log(x_d!), n = sum_d x_d (multinomial). For codes 1
and 2 the x must be non-negative integers (checked by the caller), and a CSR
matrix must not hold duplicate entries (``sum_duplicates()``), since log(x!)
is not additive over the pieces of a count.

theta must be finite (floor probabilities and rates before taking logs):
-inf * 0 is NaN. A component can be switched off with const_k = -inf.

``_expfam_pass_missing`` is the dense pass for rows with missing entries (NaN)
of the families with independent features (Poisson, Bernoulli): the tile
reads NaN as 0, each row's a_k is corrected by -sum over its missing d of
c_kd, and the missing mass M_kd = sum_b w_b r_kb [x_bd missing] is
accumulated beside R and S1 (see the section at the end of this module).
Callers run it only on chunks that hold a NaN (``_has_nan``), so complete
data keep ``_expfam_pass`` and its results bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

from ._blocks import add_partials, n_blocks_of, run_blocks
from ._config import BLOCK_ROWS, jit
from ._vector_width import prefer_wide_vectors
from .gaussian import _aligned, _exp_shifted_row
from .tile_rows import tile_row_sums

#: Base-measure codes, as the kernels see them.
BASE_CODES = {"none": 0, "poisson": 1, "multinomial": 2}

#: Rows per tile. Longer than the Gaussian kernel's tiles: the first moments
#: are dot products over the tile's rows, and each one ends in a horizontal sum.
TILE_ROWS = 256

#: Blocks per wave of the CSR pass (at most), and the memory its per-block S1 partials may take.
_CSR_MAX_SLOTS = 16
_CSR_SLOTS_BUDGET_BYTES = 256 * 2**20

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
    """xt[d, b] = X[t0 + b, d], and hx[b] = h(x_b) (0 for base code 0).

    The transposition runs column by column in groups of 32 rows: a constant
    trip count that LLVM vectorises, and 32 rows stay in L1 even when the row
    stride maps them to few cache sets (whole-tile columns were 2-5x slower at
    D = 32, 64, 384; eight features per sweep over the rows 1.5x slower).

    h(x) is summed row by row from ``X`` (contiguous), with table lookups, a
    scalar gather (LLVM emits no vector gathers for this target); the index is
    clamped to the table, and rows whose total count exceeds the table are
    redone with lgamma. ``total`` receives the row sums n_b (codes 1 and 2).
    """
    n_features = X.shape[1]  # xt may have padding rows
    b0 = 0
    while b0 + 32 <= nt:
        rows = X[t0 + b0 : t0 + b0 + 32]
        for d in range(n_features):
            column = rows[:, d]
            for b in range(32):
                xt[d, b0 + b] = column[b]
        b0 += 32
    if b0 < nt:
        rows = X[t0 + b0 : t0 + nt]
        for d in range(n_features):
            column = rows[:, d]
            for b in range(nt - b0):
                xt[d, b0 + b] = column[b]
    if base_code == 0:
        for b in range(nt):
            hx[b] = 0.0
        return
    last = table.shape[0] - 1
    for b in range(nt):
        row = X[t0 + b]
        h = 0.0
        n = 0.0
        for d in range(n_features):
            v = row[d]
            h -= table[np.int64(min(max(v, 0.0), last))]  # clamped in float: no out-of-range index
            n += np.float64(v)  # float64: float32 sums of large counts would round
        hx[b] = h
        total[b] = n
    for b in range(nt):
        if total[b] > last:  # some count may lie beyond the table: redo the row exactly
            h = 0.0
            for d in range(n_features):
                h -= _log_factorial(np.float64(X[t0 + b, d]), table)
            hx[b] = h
    if base_code == 2:
        for b in range(nt):
            hx[b] += _log_factorial(total[b], table)


def _float64_tile(xt, nt, buf):
    """The tile ``xt`` as float64: ``xt`` itself if it is float64, else converted into ``buf``."""
    raise NotImplementedError  # numba only, see the overload below


@overload(_float64_tile, inline="always")
def _float64_tile_impl(xt, nt, buf):
    if xt.dtype == types.float64:
        return lambda xt, nt, buf: xt

    def convert(xt, nt, buf):
        for d in range(xt.shape[0]):
            for b in range(nt):
                buf[d, b] = np.float64(xt[d, b])
        return buf

    return convert


@jit(inline="always")
def _product_tile(theta, xt, nt, ae):
    """ae[k, b] = sum_d theta[k, d] xt[d, b], four components x four features per sweep.

    Both dimensions are padded to multiples of four (zero rows in ``theta`` and
    ``xt``), so one register-blocked sweep does everything: features outermost,
    the four rows of ``xt`` stay in L1 while every component's row of ``ae`` is
    updated, and each load of four x feeds sixteen FMAs.
    """
    n_components, n_features = theta.shape
    for k in range(n_components):
        for b in range(nt):
            ae[k, b] = 0.0
    for d in range(0, n_features, 4):
        for k in range(0, n_components, 4):
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
            for b in range(nt):
                x0 = xt[d, b]
                x1 = xt[d + 1, b]
                x2 = xt[d + 2, b]
                x3 = xt[d + 3, b]
                ae[k, b] += (x0 * t00 + x1 * t01) + (x2 * t02 + x3 * t03)
                ae[k + 1, b] += (x0 * t10 + x1 * t11) + (x2 * t12 + x3 * t13)
                ae[k + 2, b] += (x0 * t20 + x1 * t21) + (x2 * t22 + x3 * t23)
                ae[k + 3, b] += (x0 * t30 + x1 * t31) + (x2 * t32 + x3 * t33)


@jit(inline="always")
def _moments_tile(wr, active, n_active, xc, nt, part_S1, blk):
    """part_S1[blk, active[j], d] += sum_b wr[j, b] xc[d, b], in 4 x 4 register blocks over (j, d).

    ``n_active`` and the rows of the float64 tile ``xc`` are multiples of four
    (padding rows are zero, and padded components point at a scratch row of
    ``part_S1``). Features outermost: the four rows of ``xc`` stay in L1 while
    the rows of ``wr`` stream past them. Products and sums are float64.
    """
    n_features = xc.shape[0]
    for d in range(0, n_features, 4):
        for j in range(0, n_active, 4):
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
                x0 = xc[d, b]
                x1 = xc[d + 1, b]
                x2 = xc[d + 2, b]
                x3 = xc[d + 3, b]
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
    ll_sum, w_sum, worst, worst_row = tile_row_sums(w, lp, nt, t0, ll_sum, w_sum, worst, worst_row)
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


@jit(inline="always")
def _pack_responsibilities(a, nt, n_components, w, s, ws, active, part_R, blk):
    """Weighted responsibilities r_kb w_b = a_kb (w_b / sum_k a_kb), packed into the first rows of ``a``.

    Only components with a nonzero sum over the tile are kept (their indices in
    ``active``, their sums added to ``part_R[blk]``); the count is padded to a
    multiple of 4 with zero rows that point at the scratch row ``n_components``.
    Returns the packed count.
    """
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
    while n_active % 4 != 0:  # zero rows, summed into the scratch row
        for b in range(nt):
            a[n_active, b] = 0.0
        active[n_active] = n_components
        n_active += 1
    return n_active


@jit()
def _dense_block(
    X,
    sample_weight,
    theta4,
    const,
    base_code,
    log_factorial,
    accumulate,
    blk,
    part_R,
    part_S1,
    part_stats,
    part_worst_row,
    out_logprob,
    out_label,
    out_resp,
):
    """One block of ``_expfam_pass``: its partial statistics into row ``blk`` of the part_* arrays."""
    prefer_wide_vectors()  # 512-bit vectors in this function on AVX-512 hosts
    n_samples, n_features = X.shape
    n_components = const.shape[0]
    k4, d4 = theta4.shape
    has_weights = sample_weight.shape[0] > 0
    tile_rows = TILE_ROWS
    start = blk * BLOCK_ROWS
    stop = min(start + BLOCK_ROWS, n_samples)
    # the product in the data's precision (float32: twice the SIMD lanes), the rest float64
    xt = _aligned(d4, tile_rows, X.dtype)
    for d in range(n_features, d4):  # padding features, never overwritten
        for b in range(tile_rows):
            xt[d, b] = 0.0
    # float64 copy of a float32 tile for the moments (one conversion per tile, not per component)
    xc_buf = _aligned(d4 if X.itemsize < 8 else 0, tile_rows, np.float64)
    ae = _aligned(k4, tile_rows, X.dtype)
    a = _aligned(k4, tile_rows, np.float64)
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
    active = np.empty(k4, dtype=np.int64)
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

        _product_tile(theta4, xt, nt, ae)
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
        stats = _tile_outputs(a, nt, t0, n_components, w, s, lp, lbl, stats, out_logprob, out_label, out_resp)

        if not accumulate:
            continue
        n_active = _pack_responsibilities(a, nt, n_components, w, s, ws, active, part_R, blk)
        xc = _float64_tile(xt, nt, xc_buf)
        _moments_tile(a, active, n_active, xc, nt, part_S1, blk)
    part_stats[blk, 0] = stats[0]
    part_stats[blk, 1] = stats[1]
    part_stats[blk, 2] = stats[2]
    part_worst_row[blk] = stats[3]


def _padded_theta(theta):
    """theta with components and features padded with zeros to multiples of 4 (the register blocks)."""
    n_components, n_features = theta.shape
    theta4 = np.zeros(((n_components + 3) // 4 * 4, (n_features + 3) // 4 * 4), dtype=theta.dtype)
    theta4[:n_components, :n_features] = theta
    return theta4


def _add_in_order(parts, acc):
    """acc += parts[0]; acc += parts[1]; ... (``add_partials``, for any layout of ``parts`` and ``acc``)."""
    if acc.flags.c_contiguous:
        add_partials(np.ascontiguousarray(parts), acc)
    else:  # the same sums in a contiguous copy
        total = np.ascontiguousarray(acc)
        add_partials(np.ascontiguousarray(parts), total)
        acc[...] = total


def _merge_dense(X, part_stats, part_worst_row, row_offset, acc_scalars, acc_worst_index, acc_worst_x):
    """The blocks' log-likelihood and weight sums (in block order), row count and worst row, into acc_*."""
    n_blocks = part_stats.shape[0]
    if n_blocks == 0:
        return
    _add_in_order(part_stats[:, :2], acc_scalars[:2])
    acc_scalars[3] += X.shape[0]  # a whole number: exact in any order
    blk = int(np.argmin(part_stats[:, 2]))  # the first block with the lowest value, as a sequential scan
    if part_stats[blk, 2] < acc_scalars[2]:
        acc_scalars[2] = part_stats[blk, 2]
        acc_worst_index[0] = row_offset + part_worst_row[blk]
        acc_worst_x[:] = X[part_worst_row[blk]]


@jit()
def _dense_blocks(
    X, sample_weight, theta4, const, base_code, log_factorial, accumulate, part_R, part_S1, part_stats,
    part_worst_row, out_logprob, out_label, out_resp, blk_start, blk_stop,
):  # fmt: skip
    """Blocks ``blk_start`` to ``blk_stop`` (exclusive) of ``_expfam_pass``, a ``_dense_block`` each."""
    for blk in range(blk_start, blk_stop):
        _dense_block(
            X, sample_weight, theta4, const, base_code, log_factorial, accumulate, blk, part_R, part_S1,
            part_stats, part_worst_row, out_logprob, out_label, out_resp,
        )  # fmt: skip


@jit(inline="always")
def _merge_scalars(
    part_stats, part_worst_row, slot, blk, n_samples, row_offset, acc_scalars, acc_worst_index
):
    """acc_scalars, acc_worst_index += block ``blk``'s (in ``slot`` of the partials); True if new worst."""
    acc_scalars[0] += part_stats[slot, 0]
    acc_scalars[1] += part_stats[slot, 1]
    acc_scalars[3] += min(BLOCK_ROWS, n_samples - blk * BLOCK_ROWS)
    if part_stats[slot, 2] < acc_scalars[2]:
        acc_scalars[2] = part_stats[slot, 2]
        acc_worst_index[0] = row_offset + part_worst_row[slot]
        return True
    return False


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
    """E-step over the rows of ``X``, with the sufficient statistics added into the accumulators.

    Parameters
    ----------
    X : ndarray of shape (N, D), float32 or float64, C-contiguous
        Rows; for base codes 1 and 2 non-negative integer counts.
    sample_weight : ndarray of shape (N,) or (0,), float64
        Row weights; empty means all 1. Rows of weight 0 add nothing.
    theta : ndarray of shape (K, D), X's dtype
        Natural parameters (finite).
    const : ndarray of shape (K,), float64
        log pi_k + c_k (-inf switches a component off).
    base_code : int
        h(x): 0 none, 1 Poisson, 2 multinomial (``BASE_CODES``).
    log_factorial : ndarray of shape (L,), float64
        log(j!) for j < L (``log_factorial_table``); lgamma beyond it.
    accumulate : bool
        Add R and S1 (otherwise only the scalars and the outputs).
    row_offset : int
        Index of X's first row in the whole data set (for ``acc_worst_index``).
    acc_R, acc_S1 : ndarray of shape (K,) and (K, D), float64
        R_k += sum_b w_b r_kb and S1_kd += sum_b w_b r_kb x_bd.
    acc_scalars : ndarray of shape (4,), float64
        [sum of w logprob over w > 0, sum of w, min logprob over w > 0, rows].
    acc_worst_index, acc_worst_x : ndarray of shape (1,) int64 and (D,) float64
        Index and values of the row of that minimum, when this call lowers it.
    out_logprob, out_label, out_resp : ndarray of shape (N,), (N,) int64, (N, K); or empty
        Per-row log p(x_b), argmax_k a_kb and responsibilities, if not empty.
    """
    n_samples, n_features = X.shape
    n_components = theta.shape[0]
    n_blocks = n_blocks_of(n_samples)
    n_acc = n_blocks if accumulate else 0
    theta4 = _padded_theta(theta)
    part_R = np.zeros((n_acc, n_components))
    # one scratch row (index n_components) for the padding components
    part_S1 = np.zeros((n_acc, n_components + 1, theta4.shape[1]))
    part_stats = np.empty((n_blocks, 3))
    part_worst_row = np.empty(n_blocks, dtype=np.int64)
    run_blocks(
        _dense_blocks, n_blocks, X, sample_weight, theta4, const, base_code, log_factorial, accumulate,
        part_R, part_S1, part_stats, part_worst_row, out_logprob, out_label, out_resp,
    )  # fmt: skip
    # serial, ordered merge: independent of the thread count
    _merge_dense(X, part_stats, part_worst_row, row_offset, acc_scalars, acc_worst_index, acc_worst_x)
    if accumulate:
        _add_in_order(part_R, acc_R)
        _add_in_order(part_S1[:, :n_components, :n_features], acc_S1)


@jit()
def _csr_block(
    data,
    indices,
    indptr,
    sample_weight,
    theta_t,
    const,
    base_code,
    log_factorial,
    accumulate,
    blk,
    slot,
    local,
    part_cols,
    part_n_cols,
    part_R,
    part_S1,
    part_stats,
    part_worst_row,
    out_logprob,
    out_label,
    out_resp,
):
    """One block of ``_expfam_pass_csr``: its partial statistics into slot ``slot`` of the part_* arrays.

    The block's S1 partial ``part_S1[slot, c]`` has one row per distinct column
    ``part_cols[slot, c]`` of the block (``part_n_cols[slot]`` of them), in order
    of first appearance; ``local[slot]`` maps columns to those rows (-1: not
    seen) and is restored to all -1 on return.
    """
    prefer_wide_vectors()  # 512-bit vectors in this function on AVX-512 hosts
    n_samples = indptr.shape[0] - 1
    n_components = theta_t.shape[1]
    has_weights = sample_weight.shape[0] > 0
    tile_rows = TILE_ROWS
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
    if accumulate:
        for k in range(n_components):
            part_R[slot, k] = 0.0
    n_cols = 0
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
        stats = _tile_outputs(a, nt, t0, n_components, w, s, lp, lbl, stats, out_logprob, out_label, out_resp)

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
            part_R[slot, k] += r_sum
        # S1 touches only the row's nonzero columns (rows of weight 0 add nothing)
        for b in range(nt):
            if ws[b] == 0.0:
                continue
            for p in range(indptr[t0 + b], indptr[t0 + b + 1]):
                j = indices[p]
                c = local[slot, j]
                if c < 0:  # first time this column occurs in the block
                    c = n_cols
                    n_cols += 1
                    local[slot, j] = c
                    part_cols[slot, c] = j
                    for k in range(n_components):
                        part_S1[slot, c, k] = 0.0
                v = np.float64(data[p])
                for k in range(n_components):
                    part_S1[slot, c, k] += v * at[b, k]
    for c in range(n_cols):
        local[slot, part_cols[slot, c]] = -1
    if accumulate:
        part_n_cols[slot] = n_cols
    part_stats[slot, 0] = stats[0]
    part_stats[slot, 1] = stats[1]
    part_stats[slot, 2] = stats[2]
    part_worst_row[slot] = stats[3]


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
    """``_expfam_pass`` for a CSR matrix given by ``data``, ``indices``, ``indptr`` and ``n_features``.

    ``data`` float32 or float64, ``indices`` and ``indptr`` int32 or int64;
    ``indptr`` may be a slice of a larger matrix's (offsets into ``data`` are
    used as they are). Columns must be in [0, n_features); for base codes 1 and
    2 no column may repeat within a row. ``theta`` may be float32 or float64
    (the sums are float64); the other arguments are as for ``_expfam_pass``,
    and ``acc_worst_x`` receives the worst row densified.
    """
    n_samples = indptr.shape[0] - 1
    n_components = theta.shape[0]
    n_blocks = n_blocks_of(n_samples)
    # theta transposed (and float64) once, so that the sum over k for one nonzero is contiguous
    theta_t = np.ascontiguousarray(theta.T, dtype=np.float64)
    # Blocks run in waves; each wave's partials are merged in block order before
    # the next wave reuses their slots. A block's S1 partial has up to
    # min(D, its nonzeros) rows, and the slots share a memory budget, so memory
    # stays bounded for any D; the result does not depend on the wave size.
    cap = 0
    if accumulate and n_blocks:
        bounds = np.minimum(np.arange(n_blocks + 1) * BLOCK_ROWS, n_samples)
        nnz = np.diff(np.asarray(indptr)[bounds].astype(np.int64))
        cap = int(min(n_features, nnz.max()))
    slot_bytes = 8 * (cap * (n_components + 1) + n_features)
    n_slots = max(2, min(_CSR_MAX_SLOTS, _CSR_SLOTS_BUDGET_BYTES // max(slot_bytes, 1)))
    n_slots = max(1, min(n_slots, n_blocks))
    n_acc_slots = n_slots if accumulate else 0
    part_S1 = np.empty((n_acc_slots, cap, n_components))
    part_cols = np.empty((n_acc_slots, cap), dtype=np.int64)
    part_n_cols = np.zeros(n_acc_slots, dtype=np.int64)
    local = np.full((n_acc_slots, n_features), -1, dtype=np.int64)
    part_R = np.zeros((n_acc_slots, n_components))
    part_stats = np.empty((n_slots, 3))
    part_worst_row = np.empty(n_slots, dtype=np.int64)
    # S1 merged column-major: each block adds contiguous rows (acc_S1 is restored at the end)
    s1_t = np.ascontiguousarray(acc_S1.T) if accumulate else np.empty((0, n_components))
    for first in range(0, n_blocks, n_slots):
        n_wave = min(n_slots, n_blocks - first)
        run_blocks(
            _csr_blocks, n_wave, data, indices, indptr, sample_weight, theta_t, const, base_code,
            log_factorial, accumulate, first, local, part_cols, part_n_cols, part_R, part_S1, part_stats,
            part_worst_row, out_logprob, out_label, out_resp,
        )  # fmt: skip
        # serial, ordered merge: independent of the thread count
        _merge_csr_wave(
            data, indices, indptr, accumulate, first, n_wave, row_offset, part_cols, part_n_cols, part_R,
            part_S1, part_stats, part_worst_row, acc_R, s1_t, acc_scalars, acc_worst_index, acc_worst_x,
        )  # fmt: skip
    if accumulate:
        acc_S1[...] = s1_t.T


@jit()
def _csr_blocks(
    data, indices, indptr, sample_weight, theta_t, const, base_code, log_factorial, accumulate, first, local,
    part_cols, part_n_cols, part_R, part_S1, part_stats, part_worst_row, out_logprob, out_label, out_resp,
    slot_start, slot_stop,
):  # fmt: skip
    """Slots ``slot_start`` to ``slot_stop`` (exclusive) of a wave of ``_expfam_pass_csr``."""
    for slot in range(slot_start, slot_stop):
        _csr_block(
            data, indices, indptr, sample_weight, theta_t, const, base_code, log_factorial, accumulate,
            first + slot, slot, local, part_cols, part_n_cols, part_R, part_S1, part_stats, part_worst_row,
            out_logprob, out_label, out_resp,
        )  # fmt: skip


@jit()
def _merge_csr_wave(
    data, indices, indptr, accumulate, first, n_wave, row_offset, part_cols, part_n_cols, part_R, part_S1,
    part_stats, part_worst_row, acc_R, s1_t, acc_scalars, acc_worst_index, acc_worst_x,
):  # fmt: skip
    """A wave's partials (slot j holds block first + j) added in block order; S1 into s1_t (D, K)."""
    n_samples = indptr.shape[0] - 1
    n_components = acc_R.shape[0]
    for slot in range(n_wave):
        blk = first + slot
        if _merge_scalars(
            part_stats, part_worst_row, slot, blk, n_samples, row_offset, acc_scalars, acc_worst_index
        ):
            row = part_worst_row[slot]
            acc_worst_x[:] = 0.0
            for p in range(indptr[row], indptr[row + 1]):
                acc_worst_x[indices[p]] += data[p]
        if accumulate:
            for k in range(n_components):
                acc_R[k] += part_R[slot, k]
            for c in range(part_n_cols[slot]):
                j = part_cols[slot, c]
                for k in range(n_components):
                    s1_t[j, k] += part_S1[slot, c, k]


# ---------------------------------------------------------------- missing values (NaN = missing)
#
# For families with independent features (Poisson, Bernoulli) a missing entry
# drops out of its feature's term: log p_k(x) = sum over observed d of
# [theta_kd x_d + c_kd] + h(x_O). The pass below reads NaN as 0 in the tile,
# so theta_k . x and S1 come out right unchanged, and corrects each row with
# missing entries by -sum_{d missing} c_kd (c_k = sum_d c_kd is in ``const``).
# It also adds the missing mass M_kd = sum_b w_b r_kb [x_bd missing], from
# which the M-step takes the per-feature denominators R_k - M_kd. Chunks
# without NaN never come here: the caller runs ``_expfam_pass`` on them.


@jit()
def _has_nan_blocks(X, found, blk_start, blk_stop):
    """found[blk] = whether block blk holds a NaN/inf, stopping at the range's first such block."""
    n_samples, n_features = X.shape
    for blk in range(blk_start, blk_stop):
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        for g in range(start, stop, 32):
            probe = 0.0
            for i in range(g, min(g + 32, stop)):
                for d in range(n_features):
                    probe += np.float64(X[i, d]) * 0.0
            if probe != probe:
                found[blk] = True
                return  # one is enough


def _has_nan(X) -> bool:
    """Whether X holds a NaN (or an inf: x * 0 is NaN for both), in one vectorised scan on several threads.

    Each thread stops at its first group of 32 rows with a NaN, so data with
    many missing entries are scanned only in part.
    """
    n_blocks = n_blocks_of(X.shape[0])
    found = np.zeros(n_blocks, dtype=np.bool_)
    run_blocks(_has_nan_blocks, n_blocks, X, found)
    return bool(found.any())


@jit(inline="always")
def _bit_index(low, fbit, ibit):
    """log2 of the power of two ``low`` (a uint64 with one bit set), from the exponent of its float64.

    ``fbit`` (float64) and ``ibit`` (its int64 view) are one-element scratch arrays.
    """
    fbit[0] = np.float64(low)  # exact: a power of two
    return (ibit[0] >> 52) - 1023


@jit(inline="always")
def _load_tile_missing(X, t0, nt, xt, base_code, table, hx, total, masks):
    """``_load_tile`` with NaN read as 0, and row b's missing columns as bit masks.

    Bit d - 64 w of ``masks[b, w]`` is set when x_bd is NaN. The masks are
    built without branches (a branch per entry mispredicts at random
    missingness; a list of missing columns was 20% slower at D = 50) and read
    back one set bit at a time (``_bit_index``). h(x_b) sums over the
    observed entries only (a NaN counts as 0, and log 0! = 0). Returns whether
    the tile has a missing entry.
    """
    n_features = X.shape[1]
    b0 = 0  # transposed in groups of 32 rows as in ``_load_tile`` (NaN -> 0 is a select)
    while b0 + 32 <= nt:
        rows = X[t0 + b0 : t0 + b0 + 32]
        for d in range(n_features):
            column = rows[:, d]
            for b in range(32):
                v = column[b]
                xt[d, b0 + b] = 0.0 if np.isnan(v) else v
        b0 += 32
    if b0 < nt:
        rows = X[t0 + b0 : t0 + nt]
        for d in range(n_features):
            column = rows[:, d]
            for b in range(nt - b0):
                v = column[b]
                xt[d, b0 + b] = 0.0 if np.isnan(v) else v
    n_words = masks.shape[1]
    m = np.uint64(0)
    for b in range(nt):
        row = X[t0 + b]
        for word in range(n_words):
            lo = 64 * word
            hi = min(lo + 64, n_features)
            mask = np.uint64(0)
            for d in range(lo, hi):
                mask |= np.uint64(1 if np.isnan(row[d]) else 0) << np.uint64(d - lo)
            masks[b, word] = mask
            m |= mask
    if base_code == 0:
        for b in range(nt):
            hx[b] = 0.0
        return m != 0
    last = table.shape[0] - 1
    for b in range(nt):
        row = X[t0 + b]
        h = 0.0
        n = 0.0
        for d in range(n_features):
            v = np.float64(row[d])
            v = 0.0 if np.isnan(v) else v
            h -= table[np.int64(min(v, last))]
            n += v
        hx[b] = h
        total[b] = n
    for b in range(nt):
        if total[b] > last:  # some count may lie beyond the table: redo the row exactly
            h = 0.0
            for d in range(n_features):
                v = np.float64(X[t0 + b, d])
                if not np.isnan(v):
                    h -= _log_factorial(v, table)
            hx[b] = h
    return m != 0


@jit()
def _dense_block_missing(
    X,
    sample_weight,
    theta4,
    const,
    terms_t,
    base_code,
    log_factorial,
    accumulate,
    blk,
    part_R,
    part_S1,
    part_M,
    part_stats,
    part_worst_row,
    out_logprob,
    out_label,
    out_resp,
):
    """One block of ``_expfam_pass_missing`` (``_dense_block`` plus the missing-entry corrections)."""
    prefer_wide_vectors()
    n_samples, n_features = X.shape
    n_components = const.shape[0]
    k4, d4 = theta4.shape
    has_weights = sample_weight.shape[0] > 0
    tile_rows = TILE_ROWS
    start = blk * BLOCK_ROWS
    stop = min(start + BLOCK_ROWS, n_samples)
    xt = _aligned(d4, tile_rows, X.dtype)
    for d in range(n_features, d4):
        for b in range(tile_rows):
            xt[d, b] = 0.0
    xc_buf = _aligned(d4 if X.itemsize < 8 else 0, tile_rows, np.float64)
    ae = _aligned(k4, tile_rows, X.dtype)
    a = _aligned(k4, tile_rows, np.float64)
    # row-major scratch (rows x components): sums over a row's missing features run along k
    corr_t = _aligned(tile_rows, k4, np.float64)
    corr = _aligned(k4, tile_rows, np.float64)
    wr_t = _aligned(tile_rows, k4, np.float64)
    mass = _aligned(n_features, k4, np.float64)  # the tile's missing mass, by packed component
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
    masks = np.empty((tile_rows, (n_features + 63) // 64), dtype=np.uint64)
    n_words = masks.shape[1]
    fbit = np.empty(1)
    ibit = fbit.view(np.int64)
    active = np.empty(k4, dtype=np.int64)
    stats = (0.0, 0.0, np.inf, 0)
    for t0 in range(start, stop, tile_rows):
        nt = min(tile_rows, stop - t0)
        has_missing = _load_tile_missing(X, t0, nt, xt, base_code, log_factorial, hx, s, masks)
        if has_weights:
            for b in range(nt):
                w[b] = sample_weight[t0 + b]
        else:
            for b in range(nt):
                w[b] = 1.0

        _product_tile(theta4, xt, nt, ae)
        # corr[k, b] = sum over row b's missing d of c_kd: summed along k (terms_t[d] is c_.d), transposed
        for b in range(nt):
            for k in range(n_components):
                corr_t[b, k] = 0.0
            for word in range(n_words):
                mask = masks[b, word]
                while mask != 0:
                    low = mask & (~mask + np.uint64(1))
                    mask ^= low
                    d = 64 * word + _bit_index(low, fbit, ibit)
                    for k in range(n_components):
                        corr_t[b, k] += terms_t[d, k]
        for k in range(n_components):
            for b in range(nt):
                corr[k, b] = corr_t[b, k]
        for b in range(nt):
            mx[b] = -np.inf
            lbl[b] = 0
        for k in range(n_components):
            c = const[k]
            for b in range(nt):
                v = (c - corr[k, b]) + np.float64(ae[k, b])
                a[k, b] = v
                if v > mx[b]:
                    mx[b] = v
                    lbl[b] = k
        _softmax_tile(a, nt, n_components, mx, lbl, s, hx, lp, pbuf, ibuf, fbuf)
        stats = _tile_outputs(a, nt, t0, n_components, w, s, lp, lbl, stats, out_logprob, out_label, out_resp)

        if not accumulate:
            continue
        n_active = _pack_responsibilities(a, nt, n_components, w, s, ws, active, part_R, blk)
        xc = _float64_tile(xt, nt, xc_buf)
        _moments_tile(a, active, n_active, xc, nt, part_S1, blk)
        if not has_missing:
            continue
        # missing mass: w_b r_kb added to row d for each missing (b, d), along the packed components
        for j in range(n_active):
            for b in range(nt):
                wr_t[b, j] = a[j, b]
        for d in range(n_features):
            for j in range(n_active):
                mass[d, j] = 0.0
        for b in range(nt):
            for word in range(n_words):
                mask = masks[b, word]
                while mask != 0:
                    low = mask & (~mask + np.uint64(1))
                    mask ^= low
                    d = 64 * word + _bit_index(low, fbit, ibit)
                    for j in range(n_active):
                        mass[d, j] += wr_t[b, j]
        for j in range(n_active):
            k = active[j]
            for d in range(n_features):
                part_M[blk, k, d] += mass[d, j]
    part_stats[blk, 0] = stats[0]
    part_stats[blk, 1] = stats[1]
    part_stats[blk, 2] = stats[2]
    part_worst_row[blk] = stats[3]


def _expfam_pass_missing(
    X,
    sample_weight,
    theta,
    const,
    terms,
    base_code,
    log_factorial,
    accumulate,
    row_offset,
    acc_R,
    acc_S1,
    acc_M,
    acc_scalars,
    acc_worst_index,
    acc_worst_x,
    out_logprob,
    out_label,
    out_resp,
):
    """``_expfam_pass`` for rows that may hold NaN (missing entries), for families with independent features.

    Row b's log-density is const_k + sum over observed d of theta_kd x_bd
    - sum over missing d of terms_kd + h(x_b over its observed entries), so
    ``terms`` (K, D) float64 are the per-feature parts c_kd of c_k = sum_d c_kd
    (already inside ``const``). base_code 0 or 1 only (the multinomial's h
    depends on the row total, which a missing count changes). Besides R and S1
    (NaN counted as 0), ``acc_M`` (K, D) receives M_kd += sum_b w_b r_kb
    [x_bd is NaN]. ``acc_worst_x`` receives the worst row as it is (NaN
    included). Other arguments as for ``_expfam_pass``; partials are merged in
    block order, so results do not depend on the thread count.
    """
    n_samples, n_features = X.shape
    n_components = theta.shape[0]
    n_blocks = n_blocks_of(n_samples)
    n_acc = n_blocks if accumulate else 0
    theta4 = _padded_theta(theta)
    terms_t = np.ascontiguousarray(terms.T, dtype=np.float64)
    part_R = np.zeros((n_acc, n_components))
    part_S1 = np.zeros((n_acc, n_components + 1, theta4.shape[1]))
    part_M = np.zeros((n_acc, n_components + 1, n_features))
    part_stats = np.empty((n_blocks, 3))
    part_worst_row = np.empty(n_blocks, dtype=np.int64)
    run_blocks(
        _dense_blocks_missing, n_blocks, X, sample_weight, theta4, const, terms_t, base_code, log_factorial,
        accumulate, part_R, part_S1, part_M, part_stats, part_worst_row, out_logprob, out_label, out_resp,
    )  # fmt: skip
    _merge_dense(X, part_stats, part_worst_row, row_offset, acc_scalars, acc_worst_index, acc_worst_x)
    if accumulate:
        _add_in_order(part_R, acc_R)
        _add_in_order(part_S1[:, :n_components, :n_features], acc_S1)
        _add_in_order(part_M[:, :n_components], acc_M)


@jit()
def _dense_blocks_missing(
    X, sample_weight, theta4, const, terms_t, base_code, log_factorial, accumulate, part_R, part_S1, part_M,
    part_stats, part_worst_row, out_logprob, out_label, out_resp, blk_start, blk_stop,
):  # fmt: skip
    """Blocks ``blk_start`` to ``blk_stop`` (exclusive) of ``_expfam_pass_missing``."""
    for blk in range(blk_start, blk_stop):
        _dense_block_missing(
            X, sample_weight, theta4, const, terms_t, base_code, log_factorial, accumulate, blk, part_R,
            part_S1, part_M, part_stats, part_worst_row, out_logprob, out_label, out_resp,
        )  # fmt: skip
