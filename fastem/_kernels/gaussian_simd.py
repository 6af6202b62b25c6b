"""Register-blocked full/tied tile products in explicit 512-bit vectors (numba only).

The fused pass in :mod:`fastem._kernels.gaussian` spends almost all of its time
on two O(D^2) products per row and component. The loop-vectorised versions in
:mod:`.gaussian_tiles` reach about 40% of the FMA peak: LLVM vectorises only
innermost loops, so their accumulators go back to memory every few FMAs or end
in horizontal reductions. The micro-kernels here hold a block of accumulators
in vector registers (:mod:`._simd`), like a BLAS kernel:

* E-step, :func:`quadratic_form_rows`: y = (x - m)^T U for 4 vectors of rows
  (rows in the lanes, as in the transposed tile) times 4 columns of U, 16
  accumulators, one load per row vector and one broadcast per column for
  16 FMAs, the 4 x 4 diagonal block as a triangle; then q += y^2. U is copied
  once per call, zero-padded to a multiple of 4 columns
  (:func:`padded_precision`). The tile's rows should be an odd number of cache
  lines apart (a tile of 128 rows padded by one line): with 1 KiB between rows
  the sweeps down the features keep hitting the same 16 L1 sets (measured 20%
  slower at D=64).
* M-step, :func:`weighted_moments_centred`: S2[d, e] += sum_b x_bd w_b x_be
  with the rows in a row-major (T, D) copy of the tile, 8 values of d
  (broadcast) times 3 vectors of e (24 accumulators), summed over all the
  tile's rows in registers: no horizontal reductions. The weighted centred rows
  w_b x_be, and S1, are formed by the blocks of the first 8 rows of S2 on the
  way (``form``; a separate sweep before them moved the 128-row tile through L2
  once more: with C-contiguous row buffers too, 0.93x the pass time at
  2e5 x 64, K=32, 0.935x at 4e5 x 32, K=32 and 0.97x at 1e6 x 16, K=16, old and
  new in one process, interleaved, load 2). Blocks of 8 rows of S2
  start on the block's own 8-column vector, so about 10% (D=64) to 29% (D=16)
  of the products fall below the diagonal. (float32 sums:
  :func:`.gaussian_moments32.moments32`, a transposed kernel instead, rows in the
  lanes and 4 x 4 blocks of features on and above the diagonal: in float32,
  the reductions cost less than the wasted products.)
* Shared centre (float64 tiles): the kernel centres each tile once on c, the
  mean of the component means, instead of once per component. The E-step
  (:func:`quadratic_form_rows_shifted`, float64 data) starts its accumulators at
  -(m_k - c) U_k (:func:`shifted_means`), so y = (x - c) U - (m_k - c) U costs no
  per-row work; the M-step (:func:`weighted_moments_centred`, float64 sums)
  broadcasts x - c against the stored weighted rows, so no subtraction is left
  in the products, and moves the block's sums to m_k once
  (:func:`add_block_moments_centred`). At 9-16 features the weighted rows are
  formed inside the products' sweep (:func:`_weighted_outer_16`). Measured
  side by side (whole pass, 2 threads, load 0.4-1): 0.85x the time at
  1e6 x 16, K=16 and 0.88x at 2e5 x 64, K=32. Rounding: the centred values carry
  about eps |m_k - c| more error, i.e. eps |m_k - c| / sd relative to the
  within-component spread; the statistics moved by at most 6e-16 relative on
  the benchmark data, on data offset by 1e4 and with components 300 sd apart
  (tests/test_gaussian_centred_tiles.py holds 1e-12 against NumPy).

Results equal those of :mod:`.gaussian_tiles` up to the order of the sums
(on the cases measured the E-step came out bit for bit equal, float64 and
float32, and S1, S2 within 5e-16 relative). float32 data run the E-step
on float32 vectors of 16 rows, with the squares summed in float64 as before.

Reference counts: the per-component drivers compile with ``_nrt=False``. They allocate nothing,
and numba otherwise counted references to every view they take (``upad[kp]``, rows of the
buffers) with atomic calls on each call; without them the pass took 0.97x the time at D=16 and
D=32 and 0.99x at D=64 (one process, interleaved, load 1), with the same statistics bit for bit.

Compile time: the per-component drivers (:func:`quadratic_form_rows_shifted`,
:func:`weighted_moments_centred` and their float32 counterparts) are separate
compiled functions, not inlined into the kernel: inlined, their unrolled blocks
made a first full-covariance fit compile about 5 s longer; called, about as
long as before (the calls cost nothing measurable: each does 128 rows of work).

Sizes: the row-major buffers are padded to a multiple of 8 columns (zero
columns add zeros), and their rows are an odd number of cache lines apart, so
that a sweep down a column does not keep hitting the same few L1 sets.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from ._config import jit
from ._simd import (
    vadd,
    vadd_to,
    vadd_widened,
    vbroadcast,
    vfma,
    vlanes,
    vload,
    vmul,
    vsplat,
    vsquare_add,
    vstore,
    vstore_flat,
    vsub,
    vzero,
    vzero_wide,
)
from ._vector_width import wide_vectors_enabled
from .tile_rows import transpose_rows

#: Whether the full/tied kernel uses these tiles: on hosts with 512-bit vectors only, since the
#: 24-accumulator blocks are sized for AVX-512's 32 vector registers (elsewhere they would spill).
SIMD_TILES = wide_vectors_enabled()

#: Fewest features for which the tiles pay. Measured side by side (N=1e6, K=8, full, 2 threads,
#: load 2.5-3): s/iteration with / without them 0.059 / 0.032 at D=2, 0.073 / 0.045 at D=4,
#: 0.084 / 0.077 at D=8, 0.132 / 0.123 at D=12, then 0.16 / 0.19 at D=16 and 0.31 / 0.38 at D=24.
#: Since the one-sweep M-step for 9-16 columns and 256-row tiles (whole pass, N=1e6, K=16, in one
#: process, interleaved, load 2.5-3.7): 1.03-1.06x the loop tiles' time at D=10, 0.93x at D=11,
#: 0.89-0.91x at D=12, 0.75x at D=14 (float32 data: 1.0x / 0.975x at D=11 / 12; float32 sums 0.84x /
#: 0.91x). The missing-data kernel shares the threshold (simd_tiles_for; not slower at D=12, 14).
SIMD_MIN_FEATURES = 11


@jit(inline="always")
def simd_tiles_for(n_features):
    """Whether the full/tied tiles of ``n_features`` columns run on these micro-kernels."""
    return SIMD_TILES and n_features >= SIMD_MIN_FEATURES


#: Columns of U per E-step block (``padded_precision`` pads to a multiple of it).
E_BLOCK_COLUMNS = 4


# ------------------------------------------------------------------ micro-kernels (unrolled by hand)
#: marks float64 squares for :func:`_quadratic_form_4x4` (a type, read at compile time)
_WIDE_SQUARES = np.zeros(0)


def _add_squares(q, y0, y1, y2, y3, squares):
    """q + y0^2 + y1^2 + y2^2 + y3^2, q float64 lanes: see :func:`_quadratic_form_4x4` (numba only)."""
    raise NotImplementedError  # numba only, see the overload below


@overload(_add_squares, inline="always")
def _add_squares_impl(q, y0, y1, y2, y3, squares):
    if squares.dtype == types.float32:  # float32 squares and sum, widened once into q
        return lambda q, y0, y1, y2, y3, squares: vadd_widened(
            q, vsquare_add(y3, vsquare_add(y2, vsquare_add(y1, vmul(y0, y0))))
        )
    # each square widened and added into q in float64
    return lambda q, y0, y1, y2, y3, squares: vsquare_add(
        y3, vsquare_add(y2, vsquare_add(y1, vsquare_add(y0, q)))
    )


@jit(inline="always")
def _quadratic_form_4x4(xe, b0, upad, kp, q, shift, k, shifted, squares):
    """q[b] = ||xe[:, b]^T U - s||^2 for the 4 row vectors from b0, U = upad[kp] (columns in blocks of 4).

    s = -shift[k] if ``shifted``, else 0 (``shift`` is then not read): the accumulators start at
    shift[k, j] instead of zero, which costs nothing per row. ``squares``, an empty array read
    only for its type: float64 squares and sums (:data:`_WIDE_SQUARES`), or with float32 ``xe``
    the squares of each block of 4 columns summed in float32 (``gaussian_simd32``).
    """
    n_features = xe.shape[0]
    n_cols = upad.shape[2]
    lanes = vlanes(xe)
    zero_q = vzero_wide(xe)
    q0 = zero_q
    q1 = zero_q
    q2 = zero_q
    q3 = zero_q
    zero = vzero(xe)
    for j0 in range(0, n_cols, 4):
        s0 = vbroadcast(shift, k, j0 + 0) if shifted else zero
        s1 = vbroadcast(shift, k, j0 + 1) if shifted else zero
        s2 = vbroadcast(shift, k, j0 + 2) if shifted else zero
        s3 = vbroadcast(shift, k, j0 + 3) if shifted else zero
        y00 = s0
        y01 = s1
        y02 = s2
        y03 = s3
        y10 = s0
        y11 = s1
        y12 = s2
        y13 = s3
        y20 = s0
        y21 = s1
        y22 = s2
        y23 = s3
        y30 = s0
        y31 = s1
        y32 = s2
        y33 = s3
        for d in range(j0):  # rows above the block's diagonal: all its columns
            x0 = vload(xe, d, b0 + 0 * lanes)
            x1 = vload(xe, d, b0 + 1 * lanes)
            x2 = vload(xe, d, b0 + 2 * lanes)
            x3 = vload(xe, d, b0 + 3 * lanes)
            u = vbroadcast(upad[kp], d, j0 + 0)
            y00 = vfma(x0, u, y00)
            y10 = vfma(x1, u, y10)
            y20 = vfma(x2, u, y20)
            y30 = vfma(x3, u, y30)
            u = vbroadcast(upad[kp], d, j0 + 1)
            y01 = vfma(x0, u, y01)
            y11 = vfma(x1, u, y11)
            y21 = vfma(x2, u, y21)
            y31 = vfma(x3, u, y31)
            u = vbroadcast(upad[kp], d, j0 + 2)
            y02 = vfma(x0, u, y02)
            y12 = vfma(x1, u, y12)
            y22 = vfma(x2, u, y22)
            y32 = vfma(x3, u, y32)
            u = vbroadcast(upad[kp], d, j0 + 3)
            y03 = vfma(x0, u, y03)
            y13 = vfma(x1, u, y13)
            y23 = vfma(x2, u, y23)
            y33 = vfma(x3, u, y33)
        x0 = vload(xe, j0 + 0, b0 + 0 * lanes)
        x1 = vload(xe, j0 + 0, b0 + 1 * lanes)
        x2 = vload(xe, j0 + 0, b0 + 2 * lanes)
        x3 = vload(xe, j0 + 0, b0 + 3 * lanes)
        u = vbroadcast(upad[kp], j0 + 0, j0 + 0)
        y00 = vfma(x0, u, y00)
        y10 = vfma(x1, u, y10)
        y20 = vfma(x2, u, y20)
        y30 = vfma(x3, u, y30)
        u = vbroadcast(upad[kp], j0 + 0, j0 + 1)
        y01 = vfma(x0, u, y01)
        y11 = vfma(x1, u, y11)
        y21 = vfma(x2, u, y21)
        y31 = vfma(x3, u, y31)
        u = vbroadcast(upad[kp], j0 + 0, j0 + 2)
        y02 = vfma(x0, u, y02)
        y12 = vfma(x1, u, y12)
        y22 = vfma(x2, u, y22)
        y32 = vfma(x3, u, y32)
        u = vbroadcast(upad[kp], j0 + 0, j0 + 3)
        y03 = vfma(x0, u, y03)
        y13 = vfma(x1, u, y13)
        y23 = vfma(x2, u, y23)
        y33 = vfma(x3, u, y33)
        if j0 + 1 < n_features:  # row j0 + 1 of the diagonal block: columns from j0 + 1 on
            x0 = vload(xe, j0 + 1, b0 + 0 * lanes)
            x1 = vload(xe, j0 + 1, b0 + 1 * lanes)
            x2 = vload(xe, j0 + 1, b0 + 2 * lanes)
            x3 = vload(xe, j0 + 1, b0 + 3 * lanes)
            u = vbroadcast(upad[kp], j0 + 1, j0 + 1)
            y01 = vfma(x0, u, y01)
            y11 = vfma(x1, u, y11)
            y21 = vfma(x2, u, y21)
            y31 = vfma(x3, u, y31)
            u = vbroadcast(upad[kp], j0 + 1, j0 + 2)
            y02 = vfma(x0, u, y02)
            y12 = vfma(x1, u, y12)
            y22 = vfma(x2, u, y22)
            y32 = vfma(x3, u, y32)
            u = vbroadcast(upad[kp], j0 + 1, j0 + 3)
            y03 = vfma(x0, u, y03)
            y13 = vfma(x1, u, y13)
            y23 = vfma(x2, u, y23)
            y33 = vfma(x3, u, y33)
        if j0 + 2 < n_features:  # row j0 + 2 of the diagonal block: columns from j0 + 2 on
            x0 = vload(xe, j0 + 2, b0 + 0 * lanes)
            x1 = vload(xe, j0 + 2, b0 + 1 * lanes)
            x2 = vload(xe, j0 + 2, b0 + 2 * lanes)
            x3 = vload(xe, j0 + 2, b0 + 3 * lanes)
            u = vbroadcast(upad[kp], j0 + 2, j0 + 2)
            y02 = vfma(x0, u, y02)
            y12 = vfma(x1, u, y12)
            y22 = vfma(x2, u, y22)
            y32 = vfma(x3, u, y32)
            u = vbroadcast(upad[kp], j0 + 2, j0 + 3)
            y03 = vfma(x0, u, y03)
            y13 = vfma(x1, u, y13)
            y23 = vfma(x2, u, y23)
            y33 = vfma(x3, u, y33)
        if j0 + 3 < n_features:  # row j0 + 3 of the diagonal block: columns from j0 + 3 on
            x0 = vload(xe, j0 + 3, b0 + 0 * lanes)
            x1 = vload(xe, j0 + 3, b0 + 1 * lanes)
            x2 = vload(xe, j0 + 3, b0 + 2 * lanes)
            x3 = vload(xe, j0 + 3, b0 + 3 * lanes)
            u = vbroadcast(upad[kp], j0 + 3, j0 + 3)
            y03 = vfma(x0, u, y03)
            y13 = vfma(x1, u, y13)
            y23 = vfma(x2, u, y23)
            y33 = vfma(x3, u, y33)
        q0 = _add_squares(q0, y00, y01, y02, y03, squares)
        q1 = _add_squares(q1, y10, y11, y12, y13, squares)
        q2 = _add_squares(q2, y20, y21, y22, y23, squares)
        q3 = _add_squares(q3, y30, y31, y32, y33, squares)
    vstore_flat(q, b0 + 0 * lanes, q0)
    vstore_flat(q, b0 + 1 * lanes, q1)
    vstore_flat(q, b0 + 2 * lanes, q2)
    vstore_flat(q, b0 + 3 * lanes, q3)


#: type markers for the M-step blocks' ``form`` argument (read at compile time): blocks of the first 8 rows
#: of S2 form the weighted rows on the way (:func:`_weighted_block`), the other blocks read them back
_FORM_WEIGHTED = np.zeros(0)
_READ_WEIGHTED = np.zeros(0, dtype=np.int8)


def _weighted_block(xp, xw, b, e, m, wb, form):
    """xw[b, e : e + 8], formed as wb (xp[b, e : e + 8] - m) and stored if ``form`` says so (numba only)."""
    raise NotImplementedError  # numba only, see the overload below


@overload(_weighted_block, inline="always")
def _weighted_block_impl(xp, xw, b, e, m, wb, form):
    if form.dtype == types.float64:  # _FORM_WEIGHTED

        def formed(xp, xw, b, e, m, wb, form):
            c = vmul(vsub(vload(xp, b, e), m), wb)
            vstore(xw, b, e, c)
            return c

        return formed
    return lambda xp, xw, b, e, m, wb, form: vload(xw, b, e)


def _formed_sum(t, c, form):
    """t + c if ``form`` forms the weighted rows, else t (numba only)."""
    raise NotImplementedError  # numba only, see the overload below


@overload(_formed_sum, inline="always")
def _formed_sum_impl(t, c, form):
    if form.dtype == types.float64:
        return lambda t, c, form: vadd(t, c)
    return lambda t, c, form: t


def _add_formed_sum(acc1, e, t, form):
    """acc1[0, e : e + 8] += t if ``form`` forms the weighted rows (numba only)."""
    raise NotImplementedError  # numba only, see the overload below


@overload(_add_formed_sum, inline="always")
def _add_formed_sum_impl(acc1, e, t, form):
    if form.dtype == types.float64:
        return lambda acc1, e, t, form: vadd_to(acc1, 0, e, t)
    return lambda acc1, e, t, form: None


@jit(inline="always")
def _outer_centred_8x3(xp, xw, nt, d0, e0, acc, mp, k, wr, acc1, form):
    """acc[d0 + i, e] += sum_b xp[b, d0 + i] xw[b, e] for i < 8, e0 <= e < e0 + 24.

    ``form`` (:data:`_FORM_WEIGHTED`): the block also forms its columns of the weighted rows,
    xw[b, e] = wr[b] (xp[b, e] - mp[k, e]), stores them and adds their sums to acc1[0, e];
    :data:`_READ_WEIGHTED`: it reads them from ``xw``.
    """
    m0 = vload(mp, k, e0 + 0)  # (read mode: unused, removed by LLVM)
    m1 = vload(mp, k, e0 + 8)  # (read mode: unused, removed by LLVM)
    m2 = vload(mp, k, e0 + 16)  # (read mode: unused, removed by LLVM)
    zero = vzero(acc)
    t0 = zero
    t1 = zero
    t2 = zero
    a00 = zero
    a01 = zero
    a02 = zero
    a10 = zero
    a11 = zero
    a12 = zero
    a20 = zero
    a21 = zero
    a22 = zero
    a30 = zero
    a31 = zero
    a32 = zero
    a40 = zero
    a41 = zero
    a42 = zero
    a50 = zero
    a51 = zero
    a52 = zero
    a60 = zero
    a61 = zero
    a62 = zero
    a70 = zero
    a71 = zero
    a72 = zero
    for b in range(nt):
        wb = vsplat(xw, wr[b])
        c0 = _weighted_block(xp, xw, b, e0 + 0, m0, wb, form)
        t0 = _formed_sum(t0, c0, form)
        c1 = _weighted_block(xp, xw, b, e0 + 8, m1, wb, form)
        t1 = _formed_sum(t1, c1, form)
        c2 = _weighted_block(xp, xw, b, e0 + 16, m2, wb, form)
        t2 = _formed_sum(t2, c2, form)
        w = vbroadcast(xp, b, d0 + 0)
        a00 = vfma(w, c0, a00)
        a01 = vfma(w, c1, a01)
        a02 = vfma(w, c2, a02)
        w = vbroadcast(xp, b, d0 + 1)
        a10 = vfma(w, c0, a10)
        a11 = vfma(w, c1, a11)
        a12 = vfma(w, c2, a12)
        w = vbroadcast(xp, b, d0 + 2)
        a20 = vfma(w, c0, a20)
        a21 = vfma(w, c1, a21)
        a22 = vfma(w, c2, a22)
        w = vbroadcast(xp, b, d0 + 3)
        a30 = vfma(w, c0, a30)
        a31 = vfma(w, c1, a31)
        a32 = vfma(w, c2, a32)
        w = vbroadcast(xp, b, d0 + 4)
        a40 = vfma(w, c0, a40)
        a41 = vfma(w, c1, a41)
        a42 = vfma(w, c2, a42)
        w = vbroadcast(xp, b, d0 + 5)
        a50 = vfma(w, c0, a50)
        a51 = vfma(w, c1, a51)
        a52 = vfma(w, c2, a52)
        w = vbroadcast(xp, b, d0 + 6)
        a60 = vfma(w, c0, a60)
        a61 = vfma(w, c1, a61)
        a62 = vfma(w, c2, a62)
        w = vbroadcast(xp, b, d0 + 7)
        a70 = vfma(w, c0, a70)
        a71 = vfma(w, c1, a71)
        a72 = vfma(w, c2, a72)
    _add_formed_sum(acc1, e0 + 0, t0, form)
    _add_formed_sum(acc1, e0 + 8, t1, form)
    _add_formed_sum(acc1, e0 + 16, t2, form)
    vadd_to(acc, d0 + 0, e0 + 0, a00)
    vadd_to(acc, d0 + 0, e0 + 8, a01)
    vadd_to(acc, d0 + 0, e0 + 16, a02)
    vadd_to(acc, d0 + 1, e0 + 0, a10)
    vadd_to(acc, d0 + 1, e0 + 8, a11)
    vadd_to(acc, d0 + 1, e0 + 16, a12)
    vadd_to(acc, d0 + 2, e0 + 0, a20)
    vadd_to(acc, d0 + 2, e0 + 8, a21)
    vadd_to(acc, d0 + 2, e0 + 16, a22)
    vadd_to(acc, d0 + 3, e0 + 0, a30)
    vadd_to(acc, d0 + 3, e0 + 8, a31)
    vadd_to(acc, d0 + 3, e0 + 16, a32)
    vadd_to(acc, d0 + 4, e0 + 0, a40)
    vadd_to(acc, d0 + 4, e0 + 8, a41)
    vadd_to(acc, d0 + 4, e0 + 16, a42)
    vadd_to(acc, d0 + 5, e0 + 0, a50)
    vadd_to(acc, d0 + 5, e0 + 8, a51)
    vadd_to(acc, d0 + 5, e0 + 16, a52)
    vadd_to(acc, d0 + 6, e0 + 0, a60)
    vadd_to(acc, d0 + 6, e0 + 8, a61)
    vadd_to(acc, d0 + 6, e0 + 16, a62)
    vadd_to(acc, d0 + 7, e0 + 0, a70)
    vadd_to(acc, d0 + 7, e0 + 8, a71)
    vadd_to(acc, d0 + 7, e0 + 16, a72)


@jit(inline="always")
def _outer_centred_8x2(xp, xw, nt, d0, e0, acc, mp, k, wr, acc1, form):
    """acc[d0 + i, e] += sum_b xp[b, d0 + i] xw[b, e] for i < 8, e0 <= e < e0 + 16.

    ``form`` (:data:`_FORM_WEIGHTED`): the block also forms its columns of the weighted rows,
    xw[b, e] = wr[b] (xp[b, e] - mp[k, e]), stores them and adds their sums to acc1[0, e];
    :data:`_READ_WEIGHTED`: it reads them from ``xw``.
    """
    m0 = vload(mp, k, e0 + 0)  # (read mode: unused, removed by LLVM)
    m1 = vload(mp, k, e0 + 8)  # (read mode: unused, removed by LLVM)
    zero = vzero(acc)
    t0 = zero
    t1 = zero
    a00 = zero
    a01 = zero
    a10 = zero
    a11 = zero
    a20 = zero
    a21 = zero
    a30 = zero
    a31 = zero
    a40 = zero
    a41 = zero
    a50 = zero
    a51 = zero
    a60 = zero
    a61 = zero
    a70 = zero
    a71 = zero
    for b in range(nt):
        wb = vsplat(xw, wr[b])
        c0 = _weighted_block(xp, xw, b, e0 + 0, m0, wb, form)
        t0 = _formed_sum(t0, c0, form)
        c1 = _weighted_block(xp, xw, b, e0 + 8, m1, wb, form)
        t1 = _formed_sum(t1, c1, form)
        w = vbroadcast(xp, b, d0 + 0)
        a00 = vfma(w, c0, a00)
        a01 = vfma(w, c1, a01)
        w = vbroadcast(xp, b, d0 + 1)
        a10 = vfma(w, c0, a10)
        a11 = vfma(w, c1, a11)
        w = vbroadcast(xp, b, d0 + 2)
        a20 = vfma(w, c0, a20)
        a21 = vfma(w, c1, a21)
        w = vbroadcast(xp, b, d0 + 3)
        a30 = vfma(w, c0, a30)
        a31 = vfma(w, c1, a31)
        w = vbroadcast(xp, b, d0 + 4)
        a40 = vfma(w, c0, a40)
        a41 = vfma(w, c1, a41)
        w = vbroadcast(xp, b, d0 + 5)
        a50 = vfma(w, c0, a50)
        a51 = vfma(w, c1, a51)
        w = vbroadcast(xp, b, d0 + 6)
        a60 = vfma(w, c0, a60)
        a61 = vfma(w, c1, a61)
        w = vbroadcast(xp, b, d0 + 7)
        a70 = vfma(w, c0, a70)
        a71 = vfma(w, c1, a71)
    _add_formed_sum(acc1, e0 + 0, t0, form)
    _add_formed_sum(acc1, e0 + 8, t1, form)
    vadd_to(acc, d0 + 0, e0 + 0, a00)
    vadd_to(acc, d0 + 0, e0 + 8, a01)
    vadd_to(acc, d0 + 1, e0 + 0, a10)
    vadd_to(acc, d0 + 1, e0 + 8, a11)
    vadd_to(acc, d0 + 2, e0 + 0, a20)
    vadd_to(acc, d0 + 2, e0 + 8, a21)
    vadd_to(acc, d0 + 3, e0 + 0, a30)
    vadd_to(acc, d0 + 3, e0 + 8, a31)
    vadd_to(acc, d0 + 4, e0 + 0, a40)
    vadd_to(acc, d0 + 4, e0 + 8, a41)
    vadd_to(acc, d0 + 5, e0 + 0, a50)
    vadd_to(acc, d0 + 5, e0 + 8, a51)
    vadd_to(acc, d0 + 6, e0 + 0, a60)
    vadd_to(acc, d0 + 6, e0 + 8, a61)
    vadd_to(acc, d0 + 7, e0 + 0, a70)
    vadd_to(acc, d0 + 7, e0 + 8, a71)


@jit(inline="always")
def _outer_centred_8x1(xp, xw, nt, d0, e0, acc, mp, k, wr, acc1, form):
    """acc[d0 + i, e] += sum_b xp[b, d0 + i] xw[b, e] for i < 8, e0 <= e < e0 + 8.

    ``form`` (:data:`_FORM_WEIGHTED`): the block also forms its columns of the weighted rows,
    xw[b, e] = wr[b] (xp[b, e] - mp[k, e]), stores them and adds their sums to acc1[0, e];
    :data:`_READ_WEIGHTED`: it reads them from ``xw``.
    """
    m0 = vload(mp, k, e0 + 0)  # (read mode: unused, removed by LLVM)
    zero = vzero(acc)
    t0 = zero
    a00 = zero
    a10 = zero
    a20 = zero
    a30 = zero
    a40 = zero
    a50 = zero
    a60 = zero
    a70 = zero
    for b in range(nt):
        wb = vsplat(xw, wr[b])
        c0 = _weighted_block(xp, xw, b, e0 + 0, m0, wb, form)
        t0 = _formed_sum(t0, c0, form)
        w = vbroadcast(xp, b, d0 + 0)
        a00 = vfma(w, c0, a00)
        w = vbroadcast(xp, b, d0 + 1)
        a10 = vfma(w, c0, a10)
        w = vbroadcast(xp, b, d0 + 2)
        a20 = vfma(w, c0, a20)
        w = vbroadcast(xp, b, d0 + 3)
        a30 = vfma(w, c0, a30)
        w = vbroadcast(xp, b, d0 + 4)
        a40 = vfma(w, c0, a40)
        w = vbroadcast(xp, b, d0 + 5)
        a50 = vfma(w, c0, a50)
        w = vbroadcast(xp, b, d0 + 6)
        a60 = vfma(w, c0, a60)
        w = vbroadcast(xp, b, d0 + 7)
        a70 = vfma(w, c0, a70)
    _add_formed_sum(acc1, e0 + 0, t0, form)
    vadd_to(acc, d0 + 0, e0 + 0, a00)
    vadd_to(acc, d0 + 1, e0 + 0, a10)
    vadd_to(acc, d0 + 2, e0 + 0, a20)
    vadd_to(acc, d0 + 3, e0 + 0, a30)
    vadd_to(acc, d0 + 4, e0 + 0, a40)
    vadd_to(acc, d0 + 5, e0 + 0, a50)
    vadd_to(acc, d0 + 6, e0 + 0, a60)
    vadd_to(acc, d0 + 7, e0 + 0, a70)


@jit(inline="always")
def _weighted_outer_16(xp, nt, mp, k, wr, xw, acc1, acc):
    """The weighted rows on columns 0 .. 15 and :func:`weighted_moments_centred`'s products, in one sweep.

    For 16 padded columns (9 to 16 features) the weighted rows are formed in registers, stored
    and summed into acc1 on the way, and the products of rows 0 .. 7 (both vectors) and 8 .. 15
    (second vector) use them at once: 24 accumulators, one pass over the tile's rows instead of
    three. Measured 0.95x the time per pass of the weighted sweep + 8x2 + 8x1 blocks (and those
    0.93x the separate weighted sweep before them) at 1e6 x 16, K=16.
    """
    m0 = vload(mp, k, 0)
    m1 = vload(mp, k, 8)
    zero = vzero(acc)
    t0 = zero
    t1 = zero
    a00 = zero
    a01 = zero
    a10 = zero
    a11 = zero
    a20 = zero
    a21 = zero
    a30 = zero
    a31 = zero
    a40 = zero
    a41 = zero
    a50 = zero
    a51 = zero
    a60 = zero
    a61 = zero
    a70 = zero
    a71 = zero
    g0 = zero
    g1 = zero
    g2 = zero
    g3 = zero
    g4 = zero
    g5 = zero
    g6 = zero
    g7 = zero
    for b in range(nt):
        w = vsplat(xw, wr[b])
        c0 = vmul(vsub(vload(xp, b, 0), m0), w)
        c1 = vmul(vsub(vload(xp, b, 8), m1), w)
        vstore(xw, b, 0, c0)
        vstore(xw, b, 8, c1)
        t0 = vadd(t0, c0)
        t1 = vadd(t1, c1)
        x = vbroadcast(xp, b, 0)
        a00 = vfma(x, c0, a00)
        a01 = vfma(x, c1, a01)
        x = vbroadcast(xp, b, 1)
        a10 = vfma(x, c0, a10)
        a11 = vfma(x, c1, a11)
        x = vbroadcast(xp, b, 2)
        a20 = vfma(x, c0, a20)
        a21 = vfma(x, c1, a21)
        x = vbroadcast(xp, b, 3)
        a30 = vfma(x, c0, a30)
        a31 = vfma(x, c1, a31)
        x = vbroadcast(xp, b, 4)
        a40 = vfma(x, c0, a40)
        a41 = vfma(x, c1, a41)
        x = vbroadcast(xp, b, 5)
        a50 = vfma(x, c0, a50)
        a51 = vfma(x, c1, a51)
        x = vbroadcast(xp, b, 6)
        a60 = vfma(x, c0, a60)
        a61 = vfma(x, c1, a61)
        x = vbroadcast(xp, b, 7)
        a70 = vfma(x, c0, a70)
        a71 = vfma(x, c1, a71)
        x = vbroadcast(xp, b, 8)
        g0 = vfma(x, c1, g0)
        x = vbroadcast(xp, b, 9)
        g1 = vfma(x, c1, g1)
        x = vbroadcast(xp, b, 10)
        g2 = vfma(x, c1, g2)
        x = vbroadcast(xp, b, 11)
        g3 = vfma(x, c1, g3)
        x = vbroadcast(xp, b, 12)
        g4 = vfma(x, c1, g4)
        x = vbroadcast(xp, b, 13)
        g5 = vfma(x, c1, g5)
        x = vbroadcast(xp, b, 14)
        g6 = vfma(x, c1, g6)
        x = vbroadcast(xp, b, 15)
        g7 = vfma(x, c1, g7)
    vadd_to(acc1, 0, 0, t0)
    vadd_to(acc1, 0, 8, t1)
    vadd_to(acc, 0, 0, a00)
    vadd_to(acc, 0, 8, a01)
    vadd_to(acc, 1, 0, a10)
    vadd_to(acc, 1, 8, a11)
    vadd_to(acc, 2, 0, a20)
    vadd_to(acc, 2, 8, a21)
    vadd_to(acc, 3, 0, a30)
    vadd_to(acc, 3, 8, a31)
    vadd_to(acc, 4, 0, a40)
    vadd_to(acc, 4, 8, a41)
    vadd_to(acc, 5, 0, a50)
    vadd_to(acc, 5, 8, a51)
    vadd_to(acc, 6, 0, a60)
    vadd_to(acc, 6, 8, a61)
    vadd_to(acc, 7, 0, a70)
    vadd_to(acc, 7, 8, a71)
    vadd_to(acc, 8, 8, g0)
    vadd_to(acc, 9, 8, g1)
    vadd_to(acc, 10, 8, g2)
    vadd_to(acc, 11, 8, g3)
    vadd_to(acc, 12, 8, g4)
    vadd_to(acc, 13, 8, g5)
    vadd_to(acc, 14, 8, g6)
    vadd_to(acc, 15, 8, g7)


# ------------------------------------------------------------------ tile drivers
@jit(inline="always")
def padded_precision(prec, dtype, enabled):
    """Upper triangles of ``prec`` (K, D, D) as (K, D, C) in ``dtype``, zero below the diagonal and in
    columns D .. C - 1 (C = D rounded up to ``E_BLOCK_COLUMNS``); a (K, D, 0) array if not ``enabled``."""
    n_kp, n_features = prec.shape[0], prec.shape[1]
    n_cols = (n_features + E_BLOCK_COLUMNS - 1) // E_BLOCK_COLUMNS * E_BLOCK_COLUMNS if enabled else 0
    out = np.zeros((n_kp, n_features, n_cols), dtype=dtype)
    if enabled:
        for k in range(n_kp):
            for d in range(n_features):
                for j in range(d, n_features):
                    out[k, d, j] = prec[k, d, j]
    return out


@jit(_nrt=False)  # no reference counts on the views it takes (see the module docstring)
def quadratic_form_rows(xe, nt, upad, kp, q):
    """q[b] = ||xe[:, b]^T U||^2 for b < nt (and a few lanes past it), U = ``upad[kp]``.

    ``xe`` is the centred tile (D, T) in the data's precision, ``q`` float64 (T,);
    T must be a multiple of 4 vectors (32 float64 or 64 float32 rows).
    """
    lanes = vlanes(xe)
    for b0 in range(0, nt, 4 * lanes):
        _quadratic_form_4x4(xe, b0, upad, kp, q, upad[kp], 0, False, _WIDE_SQUARES)


@jit(inline="always")
def _aligned_zeros(n_rows, n_cols):
    """A zeroed float64 (n_rows, n_cols) array whose data start on a 64-byte boundary."""
    raw = np.zeros(n_rows * n_cols + 8)
    offset = ((64 - raw.ctypes.data % 64) % 64) // 8
    return raw[offset : offset + n_rows * n_cols].reshape((n_rows, n_cols))


@jit(inline="always")
def row_buffers(tile_rows, n_features, enabled):
    """(xp, xw): zeroed float64 C-contiguous (tile_rows, stride) buffers for D8 = D rounded up to 8 columns.

    The kernels use the first D8 columns (the width of :func:`padded_means`); ``stride`` is D8, or D8 + 8
    so that rows start on 64-byte boundaries an odd number of cache lines apart. Whole rows, not a
    (tile_rows, D8) view: numba types a view as non-contiguous, and its column stride, unknown at compile
    time, cost the 8-row blocks 7 address additions per row (the M-step alone, one thread, took 0.95x
    the time at D=64 and 0.89x at D=32 with C-contiguous rows). Zero columns if not ``enabled``.
    """
    n_padded = (n_features + 7) // 8 * 8 if enabled else 0
    stride = n_padded + 8 if n_padded % 16 == 0 and enabled else n_padded
    both = _aligned_zeros(2 * tile_rows, stride)
    return both[:tile_rows], both[tile_rows:]


@jit(inline="always")
def padded_means(means, n_padded):
    """``means`` (K, D) as a float64 (K, n_padded) array, zero in the extra columns."""
    out = np.zeros((means.shape[0], n_padded))
    if n_padded > 0:
        for k in range(means.shape[0]):
            for d in range(means.shape[1]):
                out[k, d] = means[k, d]
    return out


@jit(_nrt=False)  # no reference counts on the views it takes (see the module docstring)
def quadratic_form_rows_shifted(xe, nt, upad, kp, shift, k, q):
    """q[b] = ||xe[:, b]^T U + shift[k]||^2 for b < nt (and a few lanes past it), U = ``upad[kp]``.

    With xe = x - c (c shared by all components) and shift[k] = -(m_k - c)^T U this is
    ||(x - m_k)^T U||^2, from one centred tile for every component (:func:`shifted_means`).
    """
    lanes = vlanes(xe)
    for b0 in range(0, nt, 4 * lanes):
        _quadratic_form_4x4(xe, b0, upad, kp, q, shift, k, True, _WIDE_SQUARES)


@jit(inline="always")
def shared_centre(means):
    """c = the mean of the component means (K, D), in float64: the per-pass centre of the tiles."""
    n_components, n_features = means.shape
    centre = np.zeros(n_features)
    for k in range(n_components):
        for d in range(n_features):
            centre[d] += means[k, d]
    for d in range(n_features):
        centre[d] /= n_components
    return centre


@jit(inline="always")
def shifted_means(means, centre, upad):
    """shift[k, j] = -sum_d (means[k, d] - centre[d]) U[d, j], U = upad[k] (or upad[0], tied), (K, C)."""
    n_components, n_features = means.shape
    n_cols = upad.shape[2]
    shift = np.zeros((n_components, n_cols), dtype=upad.dtype)
    row = np.zeros(n_cols)  # summed in float64, rounded once to float32 ``upad``
    for k in range(n_components):
        kp = 0 if upad.shape[0] == 1 else k
        row[:] = 0.0
        for d in range(n_features):
            md = means[k, d] - centre[d]
            for j in range(d, n_cols):
                row[j] -= md * upad[kp, d, j]
        for j in range(n_cols):
            shift[k, j] = row[j]
    return shift


@jit(inline="always")
def load_tile_centred(X, t0, nt, centre, xe):
    """xe[d, b] = X[t0 + b, d] - centre[d] for b < nt: the tile transposed, centred once for every k.

    Transposed first (8 x 8 register blocks, :func:`.tile_rows.transpose_rows`), then centred row by
    row in unit stride; the difference is taken in float64 and rounded once, as before (the same tile
    bit for bit). Against strided gathers down the columns, in one process, interleaved (load 1-1.3):
    0.92-0.93x the float32-sums pass time at 1e6 x 16, K=16; 0.96-1.02x elsewhere (D=16 to 64).
    """
    transpose_rows(X, t0, nt, xe)
    for d in range(X.shape[1]):
        c = centre[d]
        row = xe[d]
        for b in range(nt):
            row[b] = row[b] - c


@jit(inline="always")
def copy_rows_centred(X, t0, nt, centre, xp):
    """xp[b, :D] = X[t0 + b] - centre for b < nt, in float64."""
    for b in range(nt):
        for d in range(X.shape[1]):
            xp[b, d] = X[t0 + b, d] - centre[d]


@jit(_nrt=False)  # no reference counts on the views it takes (see the module docstring)
def weighted_moments_centred(xp, nt, mp, k, wr, xw, s1, s2):
    """S1, S2 of a tile and component on rows and means centred on a shared c (see the module docstring).

    xp[b] = x_b - c and mp[k] = m_k - c (the same c for every component);
    xw[b] = wr_b (xp[b] - mp[k]) and s1 += sum_b xw[b]; but s2[d, e] += sum_b xp[b, d] xw[b, e]:
    the broadcast factor is the shared row, the vector factor the stored weighted row, so no
    per-row subtraction is left in the products. The moments around m_k follow at the block's
    end, s2[d, e] - mp[k, d] s1[e] (:func:`add_block_moments_centred`).
    """
    n_padded = mp.shape[1]  # xp, xw may be wider (row_buffers)
    if n_padded == 16:  # 9 to 16 features: the weighted rows and every product in one sweep
        _weighted_outer_16(xp, nt, mp, k, wr, xw, s1, s2)
        return
    _outer_row_block(xp, xw, nt, 0, s2, mp, k, wr, s1, _FORM_WEIGHTED)
    for d0 in range(8, n_padded, 8):
        _outer_row_block(xp, xw, nt, d0, s2, mp, k, wr, s1, _READ_WEIGHTED)


@jit(inline="always")
def _outer_row_block(xp, xw, nt, d0, s2, mp, k, wr, s1, form):
    """Rows d0 .. d0 + 7 of s2 from column d0 on, in blocks of 24, 16 or 8 columns (see ``form``)."""
    n_padded = mp.shape[1]
    e0 = d0
    while e0 + 24 <= n_padded:
        _outer_centred_8x3(xp, xw, nt, d0, e0, s2, mp, k, wr, s1, form)
        e0 += 24
    if e0 + 16 <= n_padded:
        _outer_centred_8x2(xp, xw, nt, d0, e0, s2, mp, k, wr, s1, form)
    elif e0 + 8 <= n_padded:
        _outer_centred_8x1(xp, xw, nt, d0, e0, s2, mp, k, wr, s1, form)


@jit(inline="always")
def add_block_moments_centred(acc1, acc2, mp, part_S1, part_S2, blk):
    """:func:`add_block_moments` after :func:`weighted_moments_centred`: S2 = acc2 - mp[k] acc1[k]^T.

    sum_b (xp_bd - mp_kd) xw_be = acc2[d, e] - mp[k, d] acc1[k, e]; tied (one acc2): summed over k.
    """
    n_features = part_S1.shape[2]
    n_shared = acc2.shape[0]
    for k in range(part_S1.shape[1]):
        ks = 0 if n_shared == 1 else k
        for d in range(n_features):
            part_S1[blk, k, d] += acc1[k, 0, d]
            md = mp[k, d]
            for e in range(d, n_features):
                acc2[ks, d, e] -= md * acc1[k, 0, e]
    for ks in range(part_S2.shape[1]):
        for d in range(n_features):
            for e in range(d, n_features):
                part_S2[blk, ks, d, e] += acc2[ks, d, e]
    acc1[:] = 0.0
    acc2[:] = 0.0
