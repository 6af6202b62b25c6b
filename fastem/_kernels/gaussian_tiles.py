"""Register-blocked tile products of the full/tied Gaussian kernel (numba only).

The fused pass in :mod:`fastem._kernels.gaussian` holds a tile of rows
transposed, (D, T), so that rows sit in the SIMD lanes. These inlined helpers
do the two O(D^2) products per component and tile: the quadratic form of the
E-step, ||(x - m) U||^2 with U the upper Cholesky factor of the precision, and
the upper triangle of the weighted outer products of the M-step.
"""

from __future__ import annotations

import numpy as np

from ._config import jit
from ._linked import linked_jit
from ._vector_width import prefer_wide_vectors


@jit(inline="always")
def _rows_below(xc, nt, prec, kp, j, y, z, two_columns):
    """y[b] = sum_{d<j} xc[d, b] U[d, j] (and z[b] likewise for column j + 1), for even j >= 2.

    The first sweep assigns, later sweeps add four or two rows at a time, so
    each pass over y and z carries several FMAs per load of ``xc``.
    """
    if j >= 4:
        u0 = prec[kp, 0, j]
        u1 = prec[kp, 1, j]
        u2 = prec[kp, 2, j]
        u3 = prec[kp, 3, j]
        v0 = prec[kp, 0, j + 1] if two_columns else 0.0
        v1 = prec[kp, 1, j + 1] if two_columns else 0.0
        v2 = prec[kp, 2, j + 1] if two_columns else 0.0
        v3 = prec[kp, 3, j + 1] if two_columns else 0.0
        for b in range(nt):
            x0 = xc[0, b]
            x1 = xc[1, b]
            x2 = xc[2, b]
            x3 = xc[3, b]
            y[b] = (x0 * u0 + x1 * u1) + (x2 * u2 + x3 * u3)
            z[b] = (x0 * v0 + x1 * v1) + (x2 * v2 + x3 * v3)
        d = 4
    else:
        u0 = prec[kp, 0, j]
        u1 = prec[kp, 1, j]
        v0 = prec[kp, 0, j + 1] if two_columns else 0.0
        v1 = prec[kp, 1, j + 1] if two_columns else 0.0
        for b in range(nt):
            x0 = xc[0, b]
            x1 = xc[1, b]
            y[b] = x0 * u0 + x1 * u1
            z[b] = x0 * v0 + x1 * v1
        d = 2
    while d + 4 <= j:
        u0 = prec[kp, d, j]
        u1 = prec[kp, d + 1, j]
        u2 = prec[kp, d + 2, j]
        u3 = prec[kp, d + 3, j]
        v0 = prec[kp, d, j + 1] if two_columns else 0.0
        v1 = prec[kp, d + 1, j + 1] if two_columns else 0.0
        v2 = prec[kp, d + 2, j + 1] if two_columns else 0.0
        v3 = prec[kp, d + 3, j + 1] if two_columns else 0.0
        for b in range(nt):
            x0 = xc[d, b]
            x1 = xc[d + 1, b]
            x2 = xc[d + 2, b]
            x3 = xc[d + 3, b]
            y[b] += (x0 * u0 + x1 * u1) + (x2 * u2 + x3 * u3)
            z[b] += (x0 * v0 + x1 * v1) + (x2 * v2 + x3 * v3)
        d += 4
    if d < j:  # j - d is even: two rows left
        u0 = prec[kp, d, j]
        u1 = prec[kp, d + 1, j]
        v0 = prec[kp, d, j + 1] if two_columns else 0.0
        v1 = prec[kp, d + 1, j + 1] if two_columns else 0.0
        for b in range(nt):
            x0 = xc[d, b]
            x1 = xc[d + 1, b]
            y[b] += x0 * u0 + x1 * u1
            z[b] += x0 * v0 + x1 * v1


@linked_jit()
def _quadratic_form_tile(xc, nt, prec, kp, q, y, z):
    """q[b] = ||(x_b - m) U||^2 for the tile's centred rows ``xc`` (D, T); full/tied U.

    Columns j, j + 1 of y = xc^T U (U upper triangular) are built together:
    rows d < j in :func:`_rows_below`, then rows j and j + 1 in the sweep that
    also squares them into q. Squares are taken in float64 (no float32 overflow).

    Compiled on its own and inlined by LLVM (see :mod:`._linked`).
    """
    prefer_wide_vectors()
    n_features = xc.shape[0]
    if n_features >= 2:  # columns 0 and 1: one sweep, which also initialises q
        u00 = prec[kp, 0, 0]
        u01 = prec[kp, 0, 1]
        u11 = prec[kp, 1, 1]
        for b in range(nt):
            x0 = xc[0, b]
            yb = np.float64(x0 * u00)
            zb = np.float64(x0 * u01 + xc[1, b] * u11)
            q[b] = yb * yb + zb * zb
    j = 2 if n_features >= 2 else 0
    while j + 1 < n_features:
        _rows_below(xc, nt, prec, kp, j, y, z, True)
        ujj = prec[kp, j, j]
        ujk = prec[kp, j, j + 1]
        ukk = prec[kp, j + 1, j + 1]
        for b in range(nt):
            xj = xc[j, b]
            yb = np.float64(y[b] + xj * ujj)
            zb = np.float64(z[b] + xj * ujk + xc[j + 1, b] * ukk)
            q[b] += yb * yb + zb * zb
        j += 2
    if j == n_features - 1:  # odd D: the last column alone
        ujj = prec[kp, j, j]
        if j == 0:
            for b in range(nt):
                yb = np.float64(xc[0, b] * ujj)
                q[b] = yb * yb
        else:
            _rows_below(xc, nt, prec, kp, j, y, z, False)
            for b in range(nt):
                yb = np.float64(y[b] + xc[j, b] * ujj)
                q[b] += yb * yb


@jit(inline="always")
def _outer_upper_tile(xw, xc, nt, out, blk, ks):
    """out[blk, ks, d, e] += sum_b xw[d, b] xc[e, b] for e >= d, in 2 x 4 register blocks.

    Columns outermost: the four rows of ``xc`` of a block stay in L1 while the
    rows of ``xw`` stream past them. Diagonal blocks also fill a few entries
    below the diagonal, which are never read.
    """
    n_features = xw.shape[0]
    zero = xw.dtype.type(0)  # the sums follow the buffers' precision (float32 accumulation)
    e = 0
    while e + 4 <= n_features:
        for d in range(0, e + 4, 2):
            s00 = zero
            s01 = zero
            s02 = zero
            s03 = zero
            s10 = zero
            s11 = zero
            s12 = zero
            s13 = zero
            for b in range(nt):
                w0 = xw[d, b]
                w1 = xw[d + 1, b]
                c0 = xc[e, b]
                c1 = xc[e + 1, b]
                c2 = xc[e + 2, b]
                c3 = xc[e + 3, b]
                s00 += w0 * c0
                s01 += w0 * c1
                s02 += w0 * c2
                s03 += w0 * c3
                s10 += w1 * c0
                s11 += w1 * c1
                s12 += w1 * c2
                s13 += w1 * c3
            out[blk, ks, d, e] += s00
            out[blk, ks, d, e + 1] += s01
            out[blk, ks, d, e + 2] += s02
            out[blk, ks, d, e + 3] += s03
            out[blk, ks, d + 1, e] += s10
            out[blk, ks, d + 1, e + 1] += s11
            out[blk, ks, d + 1, e + 2] += s12
            out[blk, ks, d + 1, e + 3] += s13
        e += 4
    while e < n_features:  # the last n_features % 4 columns
        d = 0
        while d + 1 <= e:
            s0 = zero
            s1 = zero
            for b in range(nt):
                c = xc[e, b]
                s0 += xw[d, b] * c
                s1 += xw[d + 1, b] * c
            out[blk, ks, d, e] += s0
            out[blk, ks, d + 1, e] += s1
            d += 2
        if d == e:
            s0 = zero
            for b in range(nt):
                s0 += xw[d, b] * xc[d, b]
            out[blk, ks, d, d] += s0
        e += 1
