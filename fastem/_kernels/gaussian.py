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
The largest helpers (the quadratic form, the row-wise part of the log-sum-exp,
the tile transposition) are compiled on their own and inlined by LLVM, not by
numba (:mod:`._linked`): the loop-tile specialisation, that of every first fit
of data with few features, compiled in 6.5-6.8 s instead of 9.2-10 s (a first fit
of Old Faithful in a median 12.0 s instead of 14.1-15.7 s, runs interleaved at
load 1-2.8), and its passes took 0.94-0.96x the time at D=2 to 8 (0.99x at D=16,
one thread), with the same results bit for bit.

Precision: for float32 data the tile and the quadratic form of step 1 are
float32 (``prec`` must then be float32 too); everything from the log-densities
on, and every accumulator, is float64. float64 data is float64 throughout.

Float32 sums (``float32_sums``, float32 data only; ``GaussianMixture(...,
accumulation="float32")``): the kernels take ``means_acc``, the means rounded
to float32, and every buffer and per-tile sum that follows its dtype runs in
float32, in twice the SIMD lanes: the centring of step 1, the exponentials of
step 2 (a float32 polynomial, flushed below e^-87), and in step 3 the centred
and weighted rows, the responsibilities and the tile sums S1 and S2 (the
outer products' accumulators follow the buffers). R, the log-densities, the
log-likelihoods and every per-block partial stay float64: each tile's float32
sums are added into float64 block partials, so the error is bounded by the
tile's length in float32 roundings whatever the number of rows. Full/tied
tiles are 256 rows long then (fewer horizontal reductions per row). The
moments come out around the float32 means and are moved to ``means`` exactly,
in float64 (:func:`_shift_partials`). With float64 ``means_acc`` (the default)
the code is the float64-sums kernel, bit for bit: the choices are made at
compile time (overloads on the dtype), so each variant is its own numba
specialisation, compiled only when used.

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
from numba import types
from numba.extending import overload

from ._blocks import add_partials, block_partials, merge_block_scalars, n_blocks_of, run_blocks
from ._config import BLOCK_ROWS, DIAG_TILE_ROWS, TILE_ROWS, jit
from ._linked import linked_jit
from ._vector_width import prefer_wide_vectors
from .gaussian_moments32 import (
    add_block_moments32,
    moment_buffers,
    tile_moments,
)
from .gaussian_simd import (
    SIMD_MIN_FEATURES,
    SIMD_TILES,
    add_block_moments_centred,
    copy_rows_centred,
    load_tile_centred,
    padded_precision,
    shared_centre,
    shifted_means,
)
from .gaussian_simd32 import tile_quadratic_forms
from .gaussian_tiles import _outer_upper_tile, _quadratic_form_tile
from .tile_rows import load_tile, load_weights, log_rows, tile_row_sums

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
#: exp(x) for x below this is < 1e-307; such responsibilities are flushed to 0.
_EXP_FLUSH = -708.0
#: float32 exp: ln 2 split so that n * _LN2_HI32 is exact, and the flush point (e^-87 = 1.6e-38,
#: just above the smallest normal float32)
_LN2_HI32 = 0.693359375
_LN2_LO32 = -2.12194440e-4
_EXP_FLUSH32 = -87.0
#: tile rows of the full/tied kernel with float32 sums. Measured against 128 rows: 256 rows 1.11x
#: at D=16 and 1.16x at D=64 on one thread (384 rows slower at D=16; 512 rows faster at D=64 on
#: one thread but slower on two)
FLOAT32_SUMS_TILE_ROWS = 2 * TILE_ROWS

#: Tile rows of the explicit-vector full/tied tiles (float64 sums): twice the loop tiles' rows halve
#: the per-tile overheads of the 8-row blocks and 4 x 4 E-step blocks (calls, accumulator flushes).
#: Measured in one process, interleaved (whole pass, 2 threads, load 1.4-2.1) against 128 rows:
#: 0.95x the time at 1e6 x 16, K=16, 0.94x at 4e5 x 24, K=16 and 2e5 x 64, K=32. The loop tiles
#: keep 128 rows (256 were 1.19x slower at D=12), except at D <= 8, where 256 took 0.90x (D=2,
#: K=8) and 0.99x (D=8).
SIMD_TILE_ROWS = 2 * TILE_ROWS


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
def _exp_shifted_row32(a, ea, k, mx, nt, pbuf, ibuf, fbuf, total):
    """ea[k, b] <- exp(a[k, b] - mx[b]) in float32 and total[b] += ea[k, b], for b < nt.

    ``a``, ``mx`` and ``total`` are float64; the difference is taken in float64
    and rounded once. Then as :func:`_exp_shifted_row` in float32 lanes (twice
    as many): a degree-7 Taylor polynomial (truncation < 6e-9 relative), 2^n
    from float32 exponent bits, and values below e^-87 flushed to 0.
    """
    for b in range(nt):
        shifted = np.float32(a[k, b] - mx[b])
        x = max(shifted, np.float32(_EXP_FLUSH32))
        n = np.floor(x * np.float32(_LOG2E) + np.float32(0.5))
        r = x - n * np.float32(_LN2_HI32)
        r = r - n * np.float32(_LN2_LO32)
        p = np.float32(1.0 / 5040.0)
        p = p * r + np.float32(1.0 / 720.0)
        p = p * r + np.float32(1.0 / 120.0)
        p = p * r + np.float32(1.0 / 24.0)
        p = p * r + np.float32(1.0 / 6.0)
        p = p * r + np.float32(0.5)
        p = p * r + np.float32(1.0)
        p = p * r + np.float32(1.0)
        pbuf[b] = p
        # 2^n, or +0.0 (all bits clear) to flush
        ibuf[b] = (np.int32(n) + np.int32(127)) << np.int32(23) if shifted > np.float32(_EXP_FLUSH32) else 0
    for b in range(nt):
        e = pbuf[b] * fbuf[b]
        ea[k, b] = e
        total[b] += e


def _exp_target(a, narrow):
    """Where a tile's exponentials go: ``a`` itself (float64 sums) or the float32 buffer ``narrow``."""
    raise NotImplementedError  # numba only, see the overload below


@overload(_exp_target, inline="always")
def _exp_target_impl(a, narrow):
    if narrow.dtype == types.float64:
        return lambda a, narrow: a
    return lambda a, narrow: narrow


def _full_tile_rows(means_acc, simd, n_features):
    """Tile rows of the full/tied kernel, by the precision of the sums and the tiles used (numba only)."""
    raise NotImplementedError  # numba only, see the overload below


@overload(_full_tile_rows, inline="always")
def _full_tile_rows_impl(means_acc, simd, n_features):
    # chosen at compile time where it can be: a constant lets LLVM vectorise the loop tiles as before
    if means_acc.dtype == types.float32:
        return lambda means_acc, simd, n_features: FLOAT32_SUMS_TILE_ROWS
    if not isinstance(simd, types.NoneType):
        return lambda means_acc, simd, n_features: SIMD_TILE_ROWS
    return lambda means_acc, simd, n_features: 2 * TILE_ROWS if n_features <= 8 else TILE_ROWS


def _exp_row_into(a, ea, k, mx, nt, pbuf, bits, total):
    """Row k of :func:`_exp_shifted_row` (float64 ``ea``, which is ``a``) or :func:`_exp_shifted_row32`.

    ``pbuf`` and ``bits`` are scratch rows of ``ea``'s dtype (``bits`` is viewed
    as integers of the same width).
    """
    raise NotImplementedError  # numba only, see the overload below


@overload(_exp_row_into, inline="always")
def _exp_row_into_impl(a, ea, k, mx, nt, pbuf, bits, total):
    if ea.dtype == types.float64:
        return lambda a, ea, k, mx, nt, pbuf, bits, total: _exp_shifted_row(
            ea, k, mx, nt, pbuf, bits.view(np.int64), bits, total
        )
    return lambda a, ea, k, mx, nt, pbuf, bits, total: _exp_shifted_row32(
        a, ea, k, mx, nt, pbuf, bits.view(np.int32), bits, total
    )


@jit(inline="always")
def _finish_tile_into(
    a, ea, nt, t0, w, mx, lbl, s, lse, ws, pbuf, bits, out_logprob, out_label, out_resp, ll_sum, w_sum,
    worst, worst_row,
):  # fmt: skip
    """Log-sum-exp of the tile's log densities ``a`` (K, T), the optional outputs and the block sums.

    The exponentials exp(a[k, b] - mx[b]) are written to ``ea``: ``a`` itself
    (float64 sums) or a float32 buffer; on return ws[b] = w[b] / sum_k of them,
    so that ea[k, b] ws[b] is the weighted responsibility. Returns the block's
    running sums updated: log-likelihood, weight, worst log-likelihood and its row.

    ``pbuf`` and ``bits`` are scratch rows of ``ea``'s dtype; with float32 ``ea``
    the differences a - mx are taken in float64 and the exponentials in float32
    (:func:`_exp_shifted_row32`), while the sums over components, the
    log-likelihoods and ``ws`` stay float64.

    The row-wise work is :func:`_tile_rows_linked`, compiled on its own (see
    :mod:`._linked`); the sums over rows are vectorised here, in the kernel, as before.
    """
    _tile_rows_linked(a, ea, nt, t0, w, mx, lbl, s, lse, ws, pbuf, bits, out_logprob, out_label, out_resp)
    return tile_row_sums(w, lse, nt, t0, ll_sum, w_sum, worst, worst_row)


@linked_jit()
def _tile_rows_linked(a, ea, nt, t0, w, mx, lbl, s, lse, ws, pbuf, bits, out_logprob, out_label, out_resp):
    """The row-wise part of :func:`_finish_tile_into`: exponentials, lse[b] = log-likelihood, outputs, ws.

    On return s[b] holds 1 / sum_k ea[k, b] (see :func:`_finish_tile_into` for the arguments).
    """
    prefer_wide_vectors()
    n_components = a.shape[0]
    for b in range(nt):
        s[b] = 0.0
    for k in range(n_components):
        _exp_row_into(a, ea, k, mx, nt, pbuf, bits, s)
    for b in range(nt):
        if not s[b] > 0.0:
            # every log-density overflowed to -inf (a point ~1e150 away):
            # log-likelihood -inf, hard assignment to the first argmax
            for k in range(n_components):
                ea[k, b] = 0.0
            ea[lbl[b], b] = 1.0
            s[b] = 1.0
            mx[b] = -np.inf
    # separate sweeps over b so that each one vectorises
    # a vectorised log (libm's is a scalar call per row); ws is its scratch until set below
    log_rows(s, mx, lse, nt, ws)
    for b in range(nt):
        s[b] = 1.0 / s[b]
    if out_logprob.shape[0] > 0:
        for b in range(nt):
            out_logprob[t0 + b] = lse[b]
    if out_label.shape[0] > 0:
        for b in range(nt):
            out_label[t0 + b] = lbl[b]
    if out_resp.shape[0] > 0:
        for b in range(nt):
            for k in range(n_components):
                out_resp[t0 + b, k] = ea[k, b] * s[b]
    # responsibilities times sample weights: r_kb w_b = a_kb (w_b / sum_k a_kb)
    for b in range(nt):
        ws[b] = w[b] * s[b]


@jit()
def _blocks_full_tied(
    X, sample_weight, log_norm, means, means_acc, prec, tied, simd, accumulate, part_R, part_S1, part_S2,
    part_sums, part_worst, part_worst_row, out_logprob, out_label, out_resp, blk_start, blk_stop,
):  # fmt: skip
    """Blocks ``blk_start`` to ``blk_stop`` (exclusive) for full (``prec`` (K, D, D)) or tied covariances.

    Tied (``tied`` true): ``prec`` and the statistics' S2 are (1, D, D).

    ``simd`` is None for the loop tiles (:mod:`.gaussian_tiles`), else anything (True) for the
    explicit-vector tiles (:mod:`.gaussian_simd`; AVX-512 hosts, from ``SIMD_MIN_FEATURES``
    features). numba prunes the branches on ``simd is None`` before typing, so a first fit of
    narrow data compiles none of the vector code (it took a D=2 first fit from 14 to 18 s).
    """
    prefer_wide_vectors()  # 512-bit vectors in this function on AVX-512 hosts
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    # float32 sums: longer tiles, which halve the horizontal reductions per row (float32
    # vectors hold twice the rows) and the loop overheads per tile
    tile_rows = _full_tile_rows(means_acc, simd, n_features)
    # E-step buffers in the data's precision (float32 data: twice the SIMD lanes);
    # M-step tile buffers and per-tile sums in ``means_acc``'s (float64, or float32
    # with float32 accumulation); the rest, and every block partial, in float64.
    # One aligned allocation per element type: every tile_rows-long row starts on
    # a 64-byte boundary.
    # rows one cache line longer than the tile: an odd number of lines apart (see gaussian_simd)
    # float32 sums: xe padded with zero rows to whole 16-lane groups (the transposed M-step tiles)
    n_xe = (n_features + 15) // 16 * 16 if means_acc.itemsize == 4 else n_features
    narrow = _aligned(n_features + n_xe + 2, tile_rows + 64 // X.itemsize, X.dtype)
    xt = narrow[:n_features]
    xe = narrow[n_features : 2 * n_features]
    xe_padded = narrow[n_features : n_features + n_xe]
    narrow[2 * n_features : n_features + n_xe] = 0.0
    y = narrow[n_features + n_xe]
    z = narrow[n_features + n_xe + 1]
    # float32 sums: the exponentials (responsibilities before normalisation) in float32 too
    narrow_rows = n_components if means_acc.itemsize == 4 else 0
    row = 2 * n_features
    tile_acc = _aligned(row + 3 + narrow_rows, tile_rows, means_acc.dtype)
    xc = tile_acc[:n_features]
    xw = tile_acc[n_features:row]
    wr = tile_acc[row]
    pbuf = tile_acc[row + 1]  # the exponentials' scratch rows
    bits = tile_acc[row + 2]
    zero = means_acc.dtype.type(0)
    wide = _aligned(n_components + 6, tile_rows, np.float64)
    a = wide[:n_components]
    ea = _exp_target(a, tile_acc[2 * n_features + 3 : 2 * n_features + 3 + narrow_rows])
    row = n_components
    q = wide[row]
    w = wide[row + 1]
    ws = wide[row + 2]
    mx = wide[row + 3]
    s = wide[row + 4]
    lse = wide[row + 5]
    lbl = _aligned(1, tile_rows, np.int64)[0]
    # AVX-512 hosts: register-blocked tiles in explicit vectors (gaussian_simd) for the E-step,
    # and for the M-step (float32 sums: float32 vectors, summed over one tile, then added in
    # float64 to acc1, acc2); zero-size buffers where they are not used
    if simd is None:  # the loop tiles only (see above)
        simd_moments = False
        centred_tile = False
        centred_moments = False
    else:
        upad = padded_precision(prec, X.dtype, True)
        simd_moments = accumulate
        xp, xwr, mp = moment_buffers(tile_rows, n_features, means_acc, simd_moments)
        n_padded = mp.shape[1]  # the moments' columns (xp, xwr may be wider: row_buffers)
        acc1 = np.zeros((n_components if simd_moments else 0, 1, n_padded))
        acc2 = np.zeros((part_S2.shape[1] if simd_moments else 0, n_padded, n_padded))
        # Shared centre c (the mean of the means): tiles are centred once on c, not once per
        # component. E-step (float64 data, or float32 sums): y = (x - c) U - (m_k - c) U, the second
        # term the start of the accumulators; M-step (float64 sums): the moments of x - c against the
        # weighted rows, moved to m_k per block. Rounding grows from eps |x - m_k| to about
        # eps (|x - m_k| + |m_k - c|). float32 data with float64 sums keep the per-component centring.
        centre = shared_centre(means_acc)
        centred_tile = X.itemsize == 8 or means_acc.itemsize == 4
        shift = shifted_means(means_acc, centre, upad) if centred_tile else upad[0, :0, :]
        centred_moments = simd_moments and means_acc.itemsize == 8
        if centred_moments:
            for k in range(n_components):
                for d in range(n_features):
                    mp[k, d] -= centre[d]
    for blk in range(blk_start, blk_stop):
        if accumulate:  # the partials' buffer is not zeroed beforehand (block_partials)
            part_R[blk] = 0.0
            part_S1[blk] = 0.0
            part_S2[blk] = 0.0
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        ll_sum = 0.0
        w_sum = 0.0
        worst = np.inf
        worst_row = 0
        for t0 in range(start, stop, tile_rows):
            nt = min(tile_rows, stop - t0)
            if simd is not None:
                if centred_tile:
                    load_tile_centred(X, t0, nt, centre, xe)
            if centred_tile and simd_moments:  # xt is not used: the M-step reads xp (float64 sums) or xe
                load_weights(sample_weight, t0, nt, w)
            else:
                load_tile(X, sample_weight, t0, nt, xt, w)
            # E-step: weighted log densities, component by component, with the
            # running maximum and its argmax
            for b in range(nt):
                mx[b] = -np.inf
                lbl[b] = 0
            for k in range(n_components):
                kp = 0 if tied else k
                if not centred_tile:
                    for d in range(n_features):
                        m = means_acc[k, d]  # float32 sums: centred in float32 as well
                        for b in range(nt):
                            xe[d, b] = xt[d, b] - m
                if simd is None:
                    _quadratic_form_tile(xe, nt, prec, kp, q, y, z)
                else:
                    # float32 sums: float32 squares (gaussian_simd32); else gaussian_simd's tiles
                    tile_quadratic_forms(xe, nt, upad, kp, shift, k, q, means_acc)
                c = log_norm[k]
                for b in range(nt):
                    v = c - 0.5 * q[b]
                    a[k, b] = v
                    if v > mx[b]:
                        mx[b] = v
                        lbl[b] = k
            ll_sum, w_sum, worst, worst_row = _finish_tile_into(
                a, ea, nt, t0, w, mx, lbl, s, lse, ws, pbuf, bits, out_logprob, out_label, out_resp, ll_sum,
                w_sum, worst, worst_row,
            )  # fmt: skip
            if not accumulate:
                continue
            if simd is not None:
                if centred_moments:
                    copy_rows_centred(X, t0, nt, centre, xp)
            # M-step statistics around the shift means[k]
            for k in range(n_components):
                r_sum = 0.0
                for b in range(nt):
                    v = ea[k, b] * ws[b]
                    wr[b] = v
                    r_sum += v
                if r_sum == 0.0:
                    continue  # every term is exactly zero
                part_R[blk, k] += r_sum
                if simd is not None:
                    if simd_moments:  # S1, S2 summed over the block in acc1, acc2
                        ks = 0 if tied else k
                        tile_moments(xp, nt, mp, k, wr, xwr, acc1[k], acc2[ks], xe_padded, centre)
                        continue
                for d in range(n_features):
                    m = means_acc[k, d]
                    s1 = zero
                    for b in range(nt):
                        v = xt[d, b] - m
                        xc[d, b] = v
                        v = v * wr[b]
                        xw[d, b] = v
                        s1 += v
                    part_S1[blk, k, d] += s1
                _outer_upper_tile(xw, xc, nt, part_S2, blk, 0 if tied else k)
        if simd is not None:
            if centred_moments:
                add_block_moments_centred(acc1, acc2, mp, part_S1, part_S2, blk)
            elif simd_moments:
                add_block_moments32(acc1, acc2, mp, centre, part_S1, part_S2, blk)
        part_sums[blk, 0] = ll_sum
        part_sums[blk, 1] = w_sum
        part_worst[blk] = worst
        part_worst_row[blk] = worst_row


@jit()
def _blocks_diag_spherical(
    X, sample_weight, log_norm, means, means_acc, prec, spherical, accumulate, part_R, part_S1, part_S2,
    part_sums, part_worst, part_worst_row, out_logprob, out_label, out_resp, blk_start, blk_stop,
):  # fmt: skip
    """Blocks ``blk_start`` to ``blk_stop`` (exclusive) for diag (``prec`` (K, 1, D)) covariances.

    Spherical (``spherical`` true): ``prec`` is (K, 1, 1).
    """
    prefer_wide_vectors()  # 512-bit vectors in this function on AVX-512 hosts
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    # per-row work is small: longer tiles amortise the per-tile sweeps
    xt = _aligned(n_features, DIAG_TILE_ROWS, X.dtype)
    # the M-step's weights, per-tile sums and exponentials in ``means_acc``'s precision
    # (see _blocks_full_tied)
    narrow_rows = n_components if means_acc.itemsize == 4 else 0
    tile_acc = _aligned(3 + narrow_rows, DIAG_TILE_ROWS, means_acc.dtype)
    wr = tile_acc[0]
    pbuf = tile_acc[1]
    bits = tile_acc[2]
    zero = means_acc.dtype.type(0)
    wide = _aligned(n_components + 6, DIAG_TILE_ROWS, np.float64)
    a = wide[:n_components]
    ea = _exp_target(a, tile_acc[3 : 3 + narrow_rows])
    row = n_components
    q = wide[row]
    w = wide[row + 1]
    ws = wide[row + 2]
    mx = wide[row + 3]
    s = wide[row + 4]
    lse = wide[row + 5]
    lbl = _aligned(1, DIAG_TILE_ROWS, np.int64)[0]
    for blk in range(blk_start, blk_stop):
        if accumulate:  # the partials' buffer is not zeroed beforehand (block_partials)
            part_R[blk] = 0.0
            part_S1[blk] = 0.0
            part_S2[blk] = 0.0
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        ll_sum = 0.0
        w_sum = 0.0
        worst = np.inf
        worst_row = 0
        for t0 in range(start, stop, DIAG_TILE_ROWS):
            nt = min(DIAG_TILE_ROWS, stop - t0)
            load_tile(X, sample_weight, t0, nt, xt, w)
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
            ll_sum, w_sum, worst, worst_row = _finish_tile_into(
                a, ea, nt, t0, w, mx, lbl, s, lse, ws, pbuf, bits, out_logprob, out_label, out_resp, ll_sum,
                w_sum, worst, worst_row,
            )  # fmt: skip
            if not accumulate:
                continue
            # M-step statistics around the shift means[k]: both moments in one sweep, nothing stored
            for k in range(n_components):
                r_sum = 0.0
                for b in range(nt):
                    v = ea[k, b] * ws[b]
                    wr[b] = v
                    r_sum += v
                if r_sum == 0.0:
                    continue  # every term is exactly zero
                part_R[blk, k] += r_sum
                for d in range(n_features):
                    m = means_acc[k, d]
                    s1 = zero
                    s2 = zero
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
    acc_scalars, acc_worst_index, acc_worst_x, out_logprob, out_label, out_resp, float32_sums=False,
):  # fmt: skip
    """One fused E-step + statistics pass over the rows of ``X`` (see the module docstring).

    Full/tied and diag/spherical covariances run separately compiled kernels,
    so that a fit compiles only the one its covariance type needs; blocks run on
    ``numba.get_num_threads()`` threads (:func:`run_blocks`). ``float32_sums``
    (float32 ``X`` only): the M-step tile buffers and per-tile sums in float32
    (see the module docstring); the default keeps them in float64.
    """
    if float32_sums and X.dtype != np.float32:
        raise ValueError(f"float32 sums need float32 rows, got {X.dtype}.")
    # the M-step centres on the means in the sums' precision; _shift_partials moves
    # the partials back to ``means`` exactly (in float64)
    means_acc = means.astype(np.float32) if float32_sums else means
    n_samples = X.shape[0]
    n_blocks = n_blocks_of(n_samples)
    n_acc = n_blocks if accumulate else 0
    # each block's slots are zeroed by the kernel (the buffer is reused from pass to pass)
    part_R, part_S1, part_S2 = block_partials(
        (n_acc, *acc_R.shape), (n_acc, *acc_S1.shape), (n_acc, *acc_S2.shape)
    )
    part_sums = np.zeros((n_blocks, 2))  # per block: log-likelihood, weight
    part_worst = np.zeros(n_blocks)  # per block: the lowest log-likelihood and its row
    part_worst_row = np.zeros(n_blocks, dtype=np.int64)
    if cov_code <= 1:
        # None: the loop tiles, and a kernel specialisation without the vector code (see the kernel)
        simd = True if SIMD_TILES and X.shape[1] >= SIMD_MIN_FEATURES else None
        kernel, variant = _blocks_full_tied, (cov_code == 1, simd)
    else:
        kernel, variant = _blocks_diag_spherical, (cov_code == 3,)
    # the partials are merged in block order (independent of the thread count), the first
    # thread's blocks while the others finish theirs (4 ms a pass at 2e5 x 64, K=32, 51 MB)
    parts = (part_R, part_S1, part_S2)
    # float32 sums: the move to ``means`` is linear in the moments: applied once to the chunk's
    # totals, not to every block's partials (measured 0.46 s of a 1.2 s pass at 2e5 x 64, K=32)
    totals = [np.zeros((1, *acc.shape)) for acc in (acc_R, acc_S1, acc_S2)] if float32_sums else None
    targets = [total[0] for total in totals] if float32_sums else [acc_R, acc_S1, acc_S2]
    merged = 0  # blocks already added to the targets

    def merge_blocks(stop: int) -> None:
        nonlocal merged
        for part, target in zip(parts, targets, strict=True):
            add_partials(part[merged:stop], target)
        merged = stop

    run_blocks(
        kernel, n_blocks, X, sample_weight, log_norm, means, means_acc, prec, *variant, accumulate, part_R,
        part_S1, part_S2, part_sums, part_worst, part_worst_row, out_logprob, out_label, out_resp,
        on_first_range=merge_blocks if accumulate else None,
    )  # fmt: skip
    merge_block_scalars(part_sums, part_worst, part_worst_row, X, row_offset, acc_scalars, acc_worst_index,
                        acc_worst_x)  # fmt: skip
    if accumulate:
        merge_blocks(n_acc)
        if float32_sums:
            _shift_partials(*totals, means_acc - means, cov_code)
            add_partials(totals[0], acc_R)
            add_partials(totals[1], acc_S1)
            add_partials(totals[2], acc_S2)


@jit(fastmath=False)  # no contraction into fused multiply-adds: the bits NumPy's version gave
def _shift_full(part_R, part_S1, part_S2, delta):
    """:func:`_shift_partials` for full covariances in one pass, with the same operations in the
    same order (the same bits): NumPy's version made seven passes over (K, D, D) temporaries,
    1 ms an iteration at 2e5 x 64, K=32."""
    n_features = part_S1.shape[2]
    for p in range(part_S2.shape[0]):
        for k in range(part_S2.shape[1]):
            r = part_R[p, k]
            for d in range(n_features):
                s1d = part_S1[p, k, d]
                dd = delta[k, d]
                for e in range(n_features):
                    de = delta[k, e]
                    part_S2[p, k, d, e] += (s1d * de + part_S1[p, k, e] * dd) + r * (dd * de)
            for d in range(n_features):
                part_S1[p, k, d] += r * delta[k, d]


def _shift_partials(part_R, part_S1, part_S2, delta, cov_code) -> None:
    """Move per-block moments taken around ``means + delta`` to ``means``, in place, in float64.

    With x - m = (x - m') + delta: S1 += R delta and S2 += S1 delta^T + delta S1^T + R delta delta^T
    (S1 and R those around m'; diag/spherical keep the diagonal; tied sums over components).
    Full covariances: :func:`_shift_full`, compiled.
    """
    if not np.any(delta):
        return
    if cov_code == 0:
        _shift_full(part_R, part_S1, part_S2, delta)
        return
    R = part_R[:, :, None]
    if cov_code == 1:
        cross = part_S1[:, :, :, None] * delta[None, :, None, :]
        cross += cross.transpose(0, 1, 3, 2)
        cross += R[..., None] * (delta[:, :, None] * delta[:, None, :])[None]
        part_S2 += cross.sum(axis=1, keepdims=True)
    else:
        part_S2[:, :, 0, :] += 2.0 * part_S1 * delta[None] + R * (delta * delta)[None]
    part_S1 += R * delta[None]
