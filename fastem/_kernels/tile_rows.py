"""Row-wise tile helpers of the Gaussian kernels (numba only): a vector log and transposed loads.

The fused passes hold a tile of rows transposed, (D, T), rows in the SIMD lanes.
Per-row costs that the full kernel's O(D^2) work per component hides weigh in
the diag/spherical pass (O(D) per component). Measured on 4e6 x 8, K=8
(overlapping data, one thread, 0.14 s a pass):

* the scalar libm ``log`` of each row's log-sum-exp took 0.019 s: numba has no
  vector ``log`` without SVML, so LLVM calls libm once per row.
  :func:`log_rows` is a vectorisable log (within 1 ulp of libm's on the
  sums of exponentials the kernels take logs of), used by
  :func:`fastem._kernels.gaussian._tile_rows_linked` for every Gaussian kernel;
* transposing the tile (rows into the SIMD lanes) took about 0.02 s, in strided
  gathers. :func:`load_tile` moves float64 rows in 8 x 8 blocks:
  eight row loads, 24 shuffles (which do not compete with the arithmetic) and
  eight stores (:func:`transpose_8x8`).

Together about 15% off the pass at D=8 (11-14% at D=3 and D=16, 16% for float32 rows
at D=8); the statistics R, S1, S2 are bit for bit those of
the earlier kernel, and the log-likelihoods within 5e-16 relative.

Tried and dropped (no gain measured): prefetching the next tile, rows padded
by a cache line, eight features per E-step sweep, tiles of 128 or 512 rows,
and folding the centring into one FMA (x p - m p): LLVM's reassociation turns
x p - m p back into (x - m) p, and with m p hidden from it the gain was about
1% of the pass, not worth the extra rounding.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._config import jit
from ._linked import linked_jit
from ._simd import Vec, _element_pointer
from ._vector_width import prefer_wide_vectors

_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
_SQRT2 = 1.4142135623730951
_MANTISSA_BITS = (1 << 52) - 1
_ONE_BITS = 1023 << 52


@jit(inline="always")
def log_rows(s, mx, lse, nt, mant):
    """lse[b] = mx[b] + log(s[b]) for b < nt, in loops LLVM vectorises; s[b] must be normal and positive.

    s = 2^e m with m in [1/sqrt2, sqrt2), log m = 2 atanh(f) = 2 f sum_n f^2n / (2n + 1) with
    f = (m - 1) / (m + 1), |f| <= 0.172: 11 terms leave a truncation error below 1e-18 relative;
    m - 1 is exact, so the result is within about 1 ulp of libm's. ``mant`` is a float64 scratch
    row (at least ``nt`` long) for the mantissas.
    """
    s_bits = s.view(np.int64)
    m_bits = mant.view(np.int64)
    for b in range(nt):
        m_bits[b] = (s_bits[b] & _MANTISSA_BITS) | _ONE_BITS
        lse[b] = np.float64((s_bits[b] >> 52) - 1023)  # the exponent, for now
    for b in range(nt):
        m = mant[b]
        e = lse[b]
        high = m > _SQRT2
        m = 0.5 * m if high else m
        e = e + 1.0 if high else e
        f = (m - 1.0) / (m + 1.0)
        z = f * f
        p = 1.0 / 23.0
        p = p * z + 1.0 / 21.0
        p = p * z + 1.0 / 19.0
        p = p * z + 1.0 / 17.0
        p = p * z + 1.0 / 15.0
        p = p * z + 1.0 / 13.0
        p = p * z + 1.0 / 11.0
        p = p * z + 1.0 / 9.0
        p = p * z + 1.0 / 7.0
        p = p * z + 1.0 / 5.0
        p = p * z + 1.0 / 3.0
        two_f = f + f
        lse[b] = mx[b] + (e * _LN2_HI + (two_f + (two_f * z * p + e * _LN2_LO)))


def _shuffle_pairs(builder, a, b, mask):
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), len(mask)), mask))


@intrinsic
def transpose_8x8(typingctx, X, r0, c0, xt, b0):
    """xt[c0 + j, b0 + i] = X[r0 + i, c0 + j] for i, j < 8 (rows of X and xt with unit stride, one dtype).

    Eight row loads, 24 shuffles (which run beside the floating-point units) and eight stores,
    instead of the eight strided gathers LLVM makes of the plain loop. No bounds checks.
    """
    vt = Vec(X.dtype, 8)  # float64: 512-bit vectors; float32: 256-bit

    def codegen(context, builder, sig, args):
        xa, r0v, c0v, xta, b0v = args
        vp = context.get_value_type(vt).as_pointer()
        intp = context.get_value_type(types.intp)
        rows = []
        for i in range(8):
            r = builder.add(context.cast(builder, r0v, sig.args[1], types.intp), ir.Constant(intp, i))
            ptr = _element_pointer(context, builder, sig.args[0], xa, [types.intp, sig.args[2]], [r, c0v])
            rows.append(builder.load(builder.bitcast(ptr, vp), align=8))
        lo, hi = [0, 8, 2, 10, 4, 12, 6, 14], [1, 9, 3, 11, 5, 13, 7, 15]
        t = []
        for i in range(0, 8, 2):
            t += [
                _shuffle_pairs(builder, rows[i], rows[i + 1], lo),
                _shuffle_pairs(builder, rows[i], rows[i + 1], hi),
            ]
        even, odd = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
        # u[0..3]: rows 0-3 of columns (0, 4), (2, 6), (1, 5), (3, 7); u[4..7] the same for rows 4-7
        u = []
        for base in (0, 4):
            ta, tb, tc, td = t[base : base + 4]
            u += [_shuffle_pairs(builder, ta, tc, even), _shuffle_pairs(builder, ta, tc, odd),
                  _shuffle_pairs(builder, tb, td, even), _shuffle_pairs(builder, tb, td, odd)]  # fmt: skip
        low, high = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
        columns = [None] * 8
        for j, (c_low, c_high) in enumerate(((0, 4), (2, 6), (1, 5), (3, 7))):
            columns[c_low] = _shuffle_pairs(builder, u[j], u[j + 4], low)
            columns[c_high] = _shuffle_pairs(builder, u[j], u[j + 4], high)
        for j in range(8):
            c = builder.add(context.cast(builder, c0v, sig.args[2], types.intp), ir.Constant(intp, j))
            ptr = _element_pointer(context, builder, sig.args[3], xta, [types.intp, sig.args[4]], [c, b0v])
            builder.store(columns[j], builder.bitcast(ptr, vp), align=8)
        return context.get_dummy_value()

    return types.void(X, r0, c0, xt, b0), codegen


@jit(inline="always")
def tile_row_sums(w, lp, nt, t0, ll_sum, w_sum, worst, worst_row):
    """A tile's rows added to a block's running sums: the weighted log-likelihood sum_b w[b] lp[b]
    (rows of weight 0 add nothing, even at lp = -inf), the weight, and the worst log-likelihood
    among rows of positive weight with its row (t0 + b). Returns the four sums updated.

    Inlined by numba on purpose: the sums stay in the calling kernel, where they vectorise as they
    always have (the bits of the log-likelihood depend on it).
    """
    for b in range(nt):
        ll_sum += w[b] * lp[b] if w[b] > 0.0 else 0.0
        w_sum += w[b]
    for b in range(nt):
        if lp[b] < worst and w[b] > 0.0:
            worst = lp[b]
            worst_row = t0 + b
    return ll_sum, w_sum, worst, worst_row


@jit(inline="always")
def load_tile(X, sample_weight, t0, nt, xt, w):
    """xt[:, :nt] <- rows t0 .. t0 + nt of X, transposed; w[:nt] <- their sample weights (1 if none).

    The tile loader of every Gaussian kernel (:func:`transpose_rows`, :func:`load_weights`).
    """
    transpose_rows(X, t0, nt, xt)
    load_weights(sample_weight, t0, nt, w)


@linked_jit()
def transpose_rows(X, t0, nt, xt):
    """xt[:, :nt] <- rows t0 .. t0 + nt of X, transposed.

    Rows of at least 8 features with unit stride: blocks of 8 rows x 8 features by
    :func:`transpose_8x8` (when ``xt`` has the dtype of ``X``), the rest element by element; other
    rows element by element. Compiled on its own and inlined by LLVM (see :mod:`._linked`).
    """
    # as in the Gaussian kernels; the seeding kernels' copies too (copies: the same bits)
    prefer_wide_vectors()
    n_features = X.shape[1]
    rows = X[t0 : t0 + nt]
    # the 8 x 8 blocks move X's element type: a float64 tile of float32 rows (Student-t) goes element-wise
    if X.strides[1] == X.itemsize and n_features >= 8 and xt.itemsize == X.itemsize:
        full_rows = nt - nt % 8
        full_cols = n_features - n_features % 8
        for i in range(0, full_rows, 8):
            for c in range(0, full_cols, 8):
                transpose_8x8(X, t0 + i, c, xt, i)
        for d in range(full_cols):  # the last nt % 8 rows
            for b in range(full_rows, nt):
                xt[d, b] = rows[b, d]
        for d in range(full_cols, n_features):  # the last n_features % 8 features
            column = rows[:, d]
            for b in range(nt):
                xt[d, b] = column[b]
    else:
        for d in range(n_features):
            column = rows[:, d]
            for b in range(nt):
                xt[d, b] = column[b]


@jit(inline="always")
def load_weights(sample_weight, t0, nt, w):
    """w[:nt] <- the sample weights of rows t0 .. t0 + nt (1 if none)."""
    if sample_weight.shape[0] > 0:
        for b in range(nt):
            w[b] = sample_weight[t0 + b]
    else:
        for b in range(nt):
            w[b] = 1.0
