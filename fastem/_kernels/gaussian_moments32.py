"""The float32-sums M-step tiles of the full/tied kernel (``accumulation="float32"``; numba only).

:func:`moments32` adds S1, S2 of one tile and component, summed in float32 over at most one tile
(``SUM32_ROWS`` rows from 48 features), widened into the float64 block accumulators as before. Both
kernels multiply the E-step's tile xe = x - c (float32, centred once on the shared centre c, the
mean of the means) by the weighted rows v_b = wr_b (x_b - m_k):

    S2'[d, e] = sum_b xe[d, b] v[b, e],   S2[d, e] = S2'[d, e] - (m_k - c)[d] S1[e]

(exact, as sum_b v[b, e] = S1[e]), so the products need no subtraction per vector (the former
kernels recentred a factor on m_k at every load) and v is stored once.

* From 48 features: rows row-major (T, D16), 8 rows of S2 (broadcasts from xe) times up to 3
  vectors of v; the blocks of the first 8 rows form v (and S1) on the way and store it, the others
  read it back. The move to m_k is applied to each slice's float32 sums before they are widened
  (shift (m_k - c) rounded to float32).
* 16 features (:func:`_transposed16`): rows in the lanes of the transposed tile, every product
  taken once (4 x 4 blocks on and above the diagonal, 136 a row instead of 256 for the row-major
  blocks), and the 16 sums of a block reduced in one shuffle tree (:func:`_reduce16`); v is centred
  on c + float32(m_k - c), i.e. on m_k up to one float32 rounding of m_k - c, and the move is
  applied per block of rows in float64 (:func:`add_block_moments32`). It replaces the transposed
  loop tiles of :mod:`.gaussian`, which spent as long on their weighted-rows sweep (two stores a
  value) and per-sum horizontal reductions as on the products.

Accuracy: the broadcast factor carries one float32 rounding of x - c, i.e. relative to
|x - c| + |m_k - c| instead of |x - m_k|, as in the E-step (:mod:`.gaussian_simd32`); the move adds
one rounding of (m_k - c)[d] S1[e], small where it matters: S1 is near zero once the means settle.
Measured: final parameters of the float32-sums fits 1.2e-6 (2e5 x 64, K=32; 5.3e-7 with 128-row
sums and a separate sweep) and 8.4e-8 (1e6 x 16, K=16) relative to the float64 fits
(scripts/compare_peers.py, overlapping data, 2026-12-04); stated and tested
within 1e-5 (tests/test_float32_moments.py, tests/test_float32_accumulation.py).

Measured, old and new float32-sums passes side by side with the float64 pass in one process
(2 threads, load 2): 1e6 x 16, K=16: M-step 0.044 -> 0.032 s, pass 1.34x -> 1.56x the float64
pass's speed (the kernel alone, one thread: 5.3 -> 3.25 ns a row and component); 2e5 x 64, K=32:
M-step 0.196 -> 0.166 s, pass 1.45x -> 1.61x.

The module also holds the M-step's tile buffers and the compile-time choice of tiles for either
precision of the sums (:func:`moment_buffers`, :func:`tile_moments`, :func:`use_moments32`), which
the full/tied kernel calls, so that imports flow one way: :mod:`.gaussian` -> this module ->
:mod:`.gaussian_simd` (float64 tiles).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from ._config import jit
from ._simd import Vec, vadd, vadd_to_widened, vbroadcast, vfma, vload, vmul, vsplat, vstore, vsub, vzero
from .gaussian_simd import (
    _FORM_WEIGHTED,
    _READ_WEIGHTED,
    _formed_sum,
    _weighted_block,
    padded_means,
    row_buffers,
    weighted_moments_centred,
)

# ------------------------------------------------------------------ buffers and dispatch
#: rows per float32 sum (the whole 256-row tile): the float32 rounding is bounded by this many terms.
#: 128 rows were faster while a separate sweep wrote the weighted rows (256: 1.7x slower per row);
#: since the first row block forms them, 256 rows halve the widenings: passes in one process,
#: interleaved, 0.974x the time at 2e5 x 64, K=32, 0.963x at D=48, 0.985x at 1e5 x 128, K=16
#: (parameters move 5e-8 relative)
SUM32_ROWS = 256


@jit(inline="always")
def row_buffers32(tile_rows, n_features, enabled):
    """(xp, xw): zeroed float32 (tile_rows, D16) and (tile_rows + 2, D16) buffers, D16 = D rounded up
    to 16 (0 if not ``enabled``); xw's last two rows are :func:`moments32`'s scratch.

    Rows start on 64-byte boundaries, an odd number of cache lines apart.
    """
    n_padded = (n_features + 15) // 16 * 16 if enabled else 0
    stride = n_padded + 16 if n_padded % 32 == 0 and enabled else n_padded
    n_rows = 2 * tile_rows + 2
    raw = np.zeros(n_rows * stride + 16, dtype=np.float32)
    offset = ((64 - raw.ctypes.data % 64) % 64) // 4
    both = raw[offset : offset + n_rows * stride].reshape((n_rows, stride))
    return both[:tile_rows, :n_padded], both[tile_rows:, :n_padded]


@jit(inline="always")
def padded_means32(means, n_padded):
    """``means`` (K, D) as a float32 (K, n_padded) array, zero in the extra columns."""
    out = np.zeros((means.shape[0], n_padded), dtype=np.float32)
    if n_padded > 0:
        for k in range(means.shape[0]):
            for d in range(means.shape[1]):
                out[k, d] = means[k, d]
    return out


@jit(inline="always")
def use_moments32(n_features):
    """Whether :func:`moments32` beats the transposed float32 tiles of :mod:`.gaussian`.

    Its 16-column vectors start at each 8-row block's diagonal, so few features waste many lanes:
    measured side by side (2 threads, whole pass; the former kernel, 8-row blocks at every D)
    0.82x the transposed tiles at D=16, 0.75x at D=24, 1.0x at D=32, 0.94x at D=40, but 1.06x at
    D=48 and 1.09x at D=64. Used from 48 features, when the padding to 16 columns adds at most an
    eighth, and at exactly 16 features: the transposed kernel (:func:`_transposed16`,
    every product once), 1.37x the transposed loop tiles' M-step (whole pass, 2 threads).
    """
    n_padded = (n_features + 15) // 16 * 16
    return n_features == 16 or (n_features >= 48 and 8 * (n_padded - n_features) <= n_features)


def moment_buffers(tile_rows, n_features, means_acc, enabled):
    """(xp, xw, mp) for :func:`tile_moments` in ``means_acc``'s precision (numba only).

    float64: :func:`row_buffers` and :func:`padded_means` (D rounded up to 8 columns); float32:
    :func:`row_buffers32` and :func:`padded_means32` (16 columns). Zero columns if not ``enabled``.
    """
    raise NotImplementedError  # numba only, see the overload below


@overload(moment_buffers, inline="always")
def _moment_buffers_impl(tile_rows, n_features, means_acc, enabled):
    # chosen at compile time: each precision compiles only its own tile functions
    if means_acc.dtype == types.float32:

        def impl32(tile_rows, n_features, means_acc, enabled):
            xp, xw = row_buffers32(tile_rows, n_features, enabled)
            if xp.shape[1] == 16:  # the transposed 16-feature kernel's weighted rows instead
                xw = transposed_buffer32(tile_rows)
            return xp, xw, padded_means32(means_acc, xp.shape[1])

        return impl32

    def impl64(tile_rows, n_features, means_acc, enabled):
        xp, xw = row_buffers(tile_rows, n_features, enabled)
        return xp, xw, padded_means(means_acc, (n_features + 7) // 8 * 8 if enabled else 0)

    return impl64


def tile_moments(xp, nt, mp, k, wr, xw, s1, s2, xe, centre):
    """:func:`weighted_moments_centred` (float64 ``xp``) or :func:`moments32` (float32).

    ``xe`` (the tile centred on ``centre``, transposed) is read by the float32 kernel only. numba only.
    """
    raise NotImplementedError  # numba only, see the overload below


@overload(tile_moments, inline="always")
def _tile_moments_impl(xp, nt, mp, k, wr, xw, s1, s2, xe, centre):
    if xp.dtype == types.float32:
        return lambda xp, nt, mp, k, wr, xw, s1, s2, xe, centre: moments32(
            xp, nt, mp, k, wr, xw, s1, s2, xe, centre
        )
    return lambda xp, nt, mp, k, wr, xw, s1, s2, xe, centre: weighted_moments_centred(
        xp, nt, mp, k, wr, xw, s1, s2
    )


@jit(inline="always")
def transposed_buffer32(tile_rows):
    """:func:`_transposed16`'s scratch: a zeroed float32 (18, tile_rows) array (rows on 64-byte boundaries
    for tile_rows a multiple of 16): the weighted rows, transposed, then the shifts."""
    raw = np.zeros(18 * tile_rows + 16, dtype=np.float32)
    offset = ((64 - raw.ctypes.data % 64) % 64) // 4
    return raw[offset : offset + 18 * tile_rows].reshape((18, tile_rows))[:, :tile_rows]


@jit(inline="always")
def copy_tile_rows32(X, t0, nt, xp):
    """xp[b, :D] = X[t0 + b] for b < nt (nothing at 16 columns: :func:`_transposed16` reads only xe)."""
    if xp.shape[1] != 16:
        for b in range(nt):
            for d in range(X.shape[1]):
                xp[b, d] = X[t0 + b, d]


@jit(_nrt=False)  # no reference counts: they cost ~40 atomic calls a call (numba keeps them in loops)
def moments32(xp, nt, mp, k, wr, xw, s1, s2, xe, centre):
    """S1, S2 of the rows b < nt of a tile around m_k in float32 slice sums, added widened to ``s1``, ``s2``.

    ``xp`` (T, D16) the tile's rows (float32, zero past D), ``mp`` (K, D16) the float32 means,
    ``wr`` (T,) the weights, ``xe`` (D, T) the rows minus ``centre`` (float64, (D,)), transposed;
    ``xw`` (T + 2, D16) scratch: the weighted rows (at 16 columns: the centred rows, see
    :func:`copy_tile_rows32`), then one slice's float32 S1 and the shifts (m_k - c) in float32.
    ``s1`` (1, D16), ``s2`` (D16, D16) float64; S2 rows start on the 16-column vector holding their
    diagonal (entries below the diagonal are filled too, never read).
    """
    n_padded = xp.shape[1]
    if n_padded == 16:
        _transposed16(xe, nt, mp, k, wr, xw, s1, s2, centre)
        return
    tile_rows = xw.shape[0] - 2
    s1f = xw[tile_rows : tile_rows + 1]
    shifts = xw[tile_rows + 1]
    n_features = centre.shape[0]
    for d in range(n_padded):
        shifts[d] = np.float32(np.float64(mp[k, d]) - centre[d]) if d < n_features else np.float32(0.0)
    for r0 in range(0, nt, SUM32_ROWS):
        ns = min(SUM32_ROWS, nt - r0)
        # the first 8 rows of S2 form the weighted rows and their sums on the way; a sweep of
        # its own (load, centre, weight, store) ran from L2 (tile buffers above L1) and took a
        # fifth of the kernel: 5.8 of 31 ns a row and component at D=64
        _row_block32(xp, mp, k, wr, xw, xe, r0, ns, shifts, s1f, s1, 0, n_padded, s2, _FORM_WEIGHTED)
        for d0 in range(8, n_padded, 8):
            _row_block32(xp, mp, k, wr, xw, xe, r0, ns, shifts, s1f, s1, d0, n_padded, s2, _READ_WEIGHTED)


@jit(inline="always")
def _row_block32(xp, mp, k, wr, xw, xe, r0, ns, shifts, s1f, acc1, d0, n_padded, acc, form):
    """Rows d0 to d0 + 7 of S2 (the 8 x 3, 8 x 2 and 8 x 1 blocks from the diagonal's vector on)."""
    e0 = d0 // 16 * 16
    while e0 + 48 <= n_padded:
        _products32_8x3(xp, mp, k, wr, xw, xe, r0, ns, shifts, s1f, acc1, d0, e0, acc, form)
        e0 += 48
    if e0 + 32 <= n_padded:
        _products32_8x2(xp, mp, k, wr, xw, xe, r0, ns, shifts, s1f, acc1, d0, e0, acc, form)
    elif e0 + 16 <= n_padded:
        _products32_8x1(xp, mp, k, wr, xw, xe, r0, ns, shifts, s1f, acc1, d0, e0, acc, form)


def _store_formed_sum32(s1f, acc1, e, t, form):
    """s1f[0, e : e + 16] = t and acc1[0, e : e + 16] += t (widened) if ``form`` forms the weighted
    rows (numba only)."""
    raise NotImplementedError  # numba only, see the overload below


@overload(_store_formed_sum32, inline="always")
def _store_formed_sum32_impl(s1f, acc1, e, t, form):
    if form.dtype == types.float64:  # _FORM_WEIGHTED

        def store(s1f, acc1, e, t, form):
            vstore(s1f, 0, e, t)
            vadd_to_widened(acc1, 0, e, t)

        return store
    return lambda s1f, acc1, e, t, form: None


def _halfsum_masks(half):
    """Lane picks for :func:`_make_halfsum`: per chunk of 2 ``half`` lanes, the low halves of a and b
    (then) the high halves, so that their sum holds a's chunk folded to ``half`` lanes, then b's."""
    low, high = [], []
    for base in range(0, 16, 2 * half):
        low += [base + i for i in range(half)] + [16 + base + i for i in range(half)]
        high += [base + half + i for i in range(half)] + [16 + base + half + i for i in range(half)]
    return low, high


def _make_halfsum(half):
    low, high = _halfsum_masks(half)

    @intrinsic
    def halfsum(typingctx, a, b):
        """One level of :func:`_reduce16`: two 16-lane float32 vectors folded into one."""
        if not (isinstance(a, Vec) and a == b and a.lanes == 16):
            return None

        def codegen(context, builder, sig, args):
            picks = [ir.Constant(ir.VectorType(ir.IntType(32), 16), m) for m in (low, high)]
            return builder.fadd(*(builder.shuffle_vector(args[0], args[1], m) for m in picks))

        return a(a, b), codegen

    return halfsum


_halfsum8 = _make_halfsum(8)
_halfsum4 = _make_halfsum(4)
_halfsum2 = _make_halfsum(2)
_halfsum1 = _make_halfsum(1)


@jit(inline="always")
def _sweep16(xe, xw, wv, ng):
    """xw[d, b] = (xe[d, b] - xw[16, d]) wv[0, b] for d < 16, b < ng; returns sum_b xw[d, b] in lane d.

    Rows of 16 outermost, features inner: 16 sums in registers and the shifts read as broadcast
    operands (features outermost kept 16 shifts and weights live across the loops and spilled).
    """
    zero = vzero(xw)
    c0 = zero
    c1 = zero
    c2 = zero
    c3 = zero
    c4 = zero
    c5 = zero
    c6 = zero
    c7 = zero
    c8 = zero
    c9 = zero
    c10 = zero
    c11 = zero
    c12 = zero
    c13 = zero
    c14 = zero
    c15 = zero
    for g in range(0, ng, 16):
        w = vload(wv, 0, g)
        v = vmul(vsub(vload(xe, 0, g), vbroadcast(xw, 16, 0)), w)
        vstore(xw, 0, g, v)
        c0 = vadd(c0, v)
        v = vmul(vsub(vload(xe, 1, g), vbroadcast(xw, 16, 1)), w)
        vstore(xw, 1, g, v)
        c1 = vadd(c1, v)
        v = vmul(vsub(vload(xe, 2, g), vbroadcast(xw, 16, 2)), w)
        vstore(xw, 2, g, v)
        c2 = vadd(c2, v)
        v = vmul(vsub(vload(xe, 3, g), vbroadcast(xw, 16, 3)), w)
        vstore(xw, 3, g, v)
        c3 = vadd(c3, v)
        v = vmul(vsub(vload(xe, 4, g), vbroadcast(xw, 16, 4)), w)
        vstore(xw, 4, g, v)
        c4 = vadd(c4, v)
        v = vmul(vsub(vload(xe, 5, g), vbroadcast(xw, 16, 5)), w)
        vstore(xw, 5, g, v)
        c5 = vadd(c5, v)
        v = vmul(vsub(vload(xe, 6, g), vbroadcast(xw, 16, 6)), w)
        vstore(xw, 6, g, v)
        c6 = vadd(c6, v)
        v = vmul(vsub(vload(xe, 7, g), vbroadcast(xw, 16, 7)), w)
        vstore(xw, 7, g, v)
        c7 = vadd(c7, v)
        v = vmul(vsub(vload(xe, 8, g), vbroadcast(xw, 16, 8)), w)
        vstore(xw, 8, g, v)
        c8 = vadd(c8, v)
        v = vmul(vsub(vload(xe, 9, g), vbroadcast(xw, 16, 9)), w)
        vstore(xw, 9, g, v)
        c9 = vadd(c9, v)
        v = vmul(vsub(vload(xe, 10, g), vbroadcast(xw, 16, 10)), w)
        vstore(xw, 10, g, v)
        c10 = vadd(c10, v)
        v = vmul(vsub(vload(xe, 11, g), vbroadcast(xw, 16, 11)), w)
        vstore(xw, 11, g, v)
        c11 = vadd(c11, v)
        v = vmul(vsub(vload(xe, 12, g), vbroadcast(xw, 16, 12)), w)
        vstore(xw, 12, g, v)
        c12 = vadd(c12, v)
        v = vmul(vsub(vload(xe, 13, g), vbroadcast(xw, 16, 13)), w)
        vstore(xw, 13, g, v)
        c13 = vadd(c13, v)
        v = vmul(vsub(vload(xe, 14, g), vbroadcast(xw, 16, 14)), w)
        vstore(xw, 14, g, v)
        c14 = vadd(c14, v)
        v = vmul(vsub(vload(xe, 15, g), vbroadcast(xw, 16, 15)), w)
        vstore(xw, 15, g, v)
        c15 = vadd(c15, v)
    return _reduce16(c0, c8, c4, c12, c2, c10, c6, c14, c1, c9, c5, c13, c3, c11, c7, c15)


@jit(inline="always")
def _transposed16(xe, nt, mp, k, wr, xw, s1, s2, centre):
    """S1, S2 of a 16-feature tile on the transposed centred tile ``xe`` (16, T), rows in the lanes.

    v = wr (xe - shift), shift = float32(m_k - c): the weighted rows, centred on c + shift (m_k up to
    one float32 rounding of m_k - c), stored in ``xw`` (18, T): rows 0-15, shift in row 16. Then
    s1 += float64(sum_b v[:, b]) and, for the 10 blocks of 4 x 4 features on or above the diagonal,
    row p of ``s2`` += float64(sum_b xe[d, b] v[e, b]) (block p's entries 4 i + j): every product
    once (136 per row), no subtraction in the products, and 16 sums reduced per 45 vector
    operations. :func:`add_block_moments32` unpacks the blocks and moves them to m_k. Sums over one
    tile (16 rows a lane) in float32.
    """
    ng = (nt + 15) // 16 * 16
    for b in range(nt, ng):  # the last group's rows past nt: weight 0 and finite factors
        wr[b] = 0.0
        for d in range(16):
            xe[d, b] = 0.0
    shifts = xw[16]
    for d in range(16):
        shifts[d] = np.float32(np.float64(mp[k, d]) - centre[d])
    wv = wr.reshape((1, wr.shape[0]))
    vadd_to_widened(s1, 0, 0, _sweep16(xe, xw, wv, ng))
    _block32_triangle(xe, xw, ng, 0, 0, s2, 0)
    _block32_square(xe, xw, ng, 0, 4, s2, 1)
    _block32_square(xe, xw, ng, 0, 8, s2, 2)
    _block32_square(xe, xw, ng, 0, 12, s2, 3)
    _block32_triangle(xe, xw, ng, 4, 4, s2, 4)
    _block32_square(xe, xw, ng, 4, 8, s2, 5)
    _block32_square(xe, xw, ng, 4, 12, s2, 6)
    _block32_triangle(xe, xw, ng, 8, 8, s2, 7)
    _block32_square(xe, xw, ng, 8, 12, s2, 8)
    _block32_triangle(xe, xw, ng, 12, 12, s2, 9)


@jit(inline="always")
def add_block_moments32(acc1, acc2, mp, centre, part_S1, part_S2, blk):
    """part_S1[blk] += acc1 and the upper triangles of part_S2[blk] += acc2, then zero acc1, acc2.

    16 features (:func:`_transposed16`): acc2 holds 4 x 4 blocks of the products of x - c with rows
    centred on c + shift_k, moved here to the same centre: S2[d, e] -= shift_k[d] S1_k[e] (float64).
    """
    n_features = part_S1.shape[2]
    for k in range(part_S1.shape[1]):
        for d in range(n_features):
            part_S1[blk, k, d] += acc1[k, 0, d]
    if acc2.shape[1] == 16 and n_features == 16:
        for ks in range(part_S2.shape[1]):
            p = 0
            for d0 in range(0, 16, 4):
                for e0 in range(d0, 16, 4):
                    for i in range(4):
                        for j in range(4):
                            if e0 + j >= d0 + i:
                                part_S2[blk, ks, d0 + i, e0 + j] += acc2[ks, p, 4 * i + j]
                    p += 1
        for k in range(part_S1.shape[1]):
            ks = 0 if part_S2.shape[1] == 1 else k
            for d in range(16):
                shift = np.float64(np.float32(np.float64(mp[k, d]) - centre[d]))
                for e in range(d, 16):
                    part_S2[blk, ks, d, e] -= shift * acc1[k, 0, e]
    else:
        for ks in range(part_S2.shape[1]):
            for d in range(n_features):
                for e in range(d, n_features):
                    part_S2[blk, ks, d, e] += acc2[ks, d, e]
    acc1[:] = 0.0
    acc2[:] = 0.0


@jit(inline="always")
def _reduce16(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15):
    """The 16 horizontal sums of 16 float32 vectors in one vector (15 shuffle pairs and adds); the lane
    order is fixed by the tree: :func:`_transposed16` passes the accumulators permuted to match."""
    u0 = _halfsum8(a0, a1)
    u1 = _halfsum8(a2, a3)
    u2 = _halfsum8(a4, a5)
    u3 = _halfsum8(a6, a7)
    u4 = _halfsum8(a8, a9)
    u5 = _halfsum8(a10, a11)
    u6 = _halfsum8(a12, a13)
    u7 = _halfsum8(a14, a15)
    t0 = _halfsum4(u0, u1)
    t1 = _halfsum4(u2, u3)
    t2 = _halfsum4(u4, u5)
    t3 = _halfsum4(u6, u7)
    s0 = _halfsum2(t0, t1)
    s1 = _halfsum2(t2, t3)
    return _halfsum1(s0, s1)


@jit(inline="always")
def _block32_square(xe, xw, ng, d0, e0, s2, p):
    """s2[p, 4 i + j] += float64(sum_b xe[d0 + i, b] xw[e0 + j, b]), i, j < 4, b < ng (a multiple of 16)."""
    zero = vzero(xw)
    a00 = zero
    a01 = zero
    a02 = zero
    a03 = zero
    a10 = zero
    a11 = zero
    a12 = zero
    a13 = zero
    a20 = zero
    a21 = zero
    a22 = zero
    a23 = zero
    a30 = zero
    a31 = zero
    a32 = zero
    a33 = zero
    for g in range(0, ng, 16):
        x0 = vload(xe, d0 + 0, g)
        x1 = vload(xe, d0 + 1, g)
        x2 = vload(xe, d0 + 2, g)
        x3 = vload(xe, d0 + 3, g)
        w0 = vload(xw, e0 + 0, g)
        w1 = vload(xw, e0 + 1, g)
        w2 = vload(xw, e0 + 2, g)
        w3 = vload(xw, e0 + 3, g)
        a00 = vfma(x0, w0, a00)
        a01 = vfma(x0, w1, a01)
        a02 = vfma(x0, w2, a02)
        a03 = vfma(x0, w3, a03)
        a10 = vfma(x1, w0, a10)
        a11 = vfma(x1, w1, a11)
        a12 = vfma(x1, w2, a12)
        a13 = vfma(x1, w3, a13)
        a20 = vfma(x2, w0, a20)
        a21 = vfma(x2, w1, a21)
        a22 = vfma(x2, w2, a22)
        a23 = vfma(x2, w3, a23)
        a30 = vfma(x3, w0, a30)
        a31 = vfma(x3, w1, a31)
        a32 = vfma(x3, w2, a32)
        a33 = vfma(x3, w3, a33)
    vadd_to_widened(
        s2, p, 0, _reduce16(a00, a20, a10, a30, a02, a22, a12, a32, a01, a21, a11, a31, a03, a23, a13, a33)
    )


@jit(inline="always")
def _block32_triangle(xe, xw, ng, d0, e0, s2, p):
    """:func:`_block32_square` for e0 = d0: the 10 entries j >= i only (the others stay 0)."""
    zero = vzero(xw)
    a00 = zero
    a01 = zero
    a02 = zero
    a03 = zero
    a11 = zero
    a12 = zero
    a13 = zero
    a22 = zero
    a23 = zero
    a33 = zero
    for g in range(0, ng, 16):
        x0 = vload(xe, d0 + 0, g)
        x1 = vload(xe, d0 + 1, g)
        x2 = vload(xe, d0 + 2, g)
        x3 = vload(xe, d0 + 3, g)
        w0 = vload(xw, e0 + 0, g)
        w1 = vload(xw, e0 + 1, g)
        w2 = vload(xw, e0 + 2, g)
        w3 = vload(xw, e0 + 3, g)
        a00 = vfma(x0, w0, a00)
        a01 = vfma(x0, w1, a01)
        a02 = vfma(x0, w2, a02)
        a03 = vfma(x0, w3, a03)
        a11 = vfma(x1, w1, a11)
        a12 = vfma(x1, w2, a12)
        a13 = vfma(x1, w3, a13)
        a22 = vfma(x2, w2, a22)
        a23 = vfma(x2, w3, a23)
        a33 = vfma(x3, w3, a33)
    vadd_to_widened(
        s2,
        p,
        0,
        _reduce16(a00, zero, zero, zero, a02, a22, a12, zero, a01, zero, a11, zero, a03, a23, a13, a33),
    )


@jit(inline="always")
def _products32_8x3(xp, mp, k, wr, xw, xe, r0, ns, shifts, s1f, acc1, d0, e0, acc, form):
    """acc[d0 + i, e] += float64(sum_b xe[d0 + i, b] xw[b, e] - shifts[d0 + i] s1f[0, e]), i < 8,
    e0 <= e < e0 + 48, r0 <= b < r0 + ns; the sums in float32.

    ``form`` (:data:`_FORM_WEIGHTED`): the block forms its columns of the weighted rows,
    xw[b, e] = wr[b] (xp[b, e] - mp[k, e]), stores them and their sums (``s1f``, and widened into
    ``acc1``); :data:`_READ_WEIGHTED`: it reads them from ``xw``.
    """
    last = xe.shape[0] - 1  # rows past the last feature (padding) read a real row; never used
    f0 = min(d0 + 0, last)
    f1 = min(d0 + 1, last)
    f2 = min(d0 + 2, last)
    f3 = min(d0 + 3, last)
    f4 = min(d0 + 4, last)
    f5 = min(d0 + 5, last)
    f6 = min(d0 + 6, last)
    f7 = min(d0 + 7, last)
    m0 = vload(mp, k, e0 + 0)  # (read mode: unused, removed by LLVM)
    m1 = vload(mp, k, e0 + 16)
    m2 = vload(mp, k, e0 + 32)
    zero = vzero(xw)
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
    for b in range(r0, r0 + ns):
        wb = vsplat(xw, wr[b])
        c0 = _weighted_block(xp, xw, b, e0 + 0, m0, wb, form)
        t0 = _formed_sum(t0, c0, form)
        c1 = _weighted_block(xp, xw, b, e0 + 16, m1, wb, form)
        t1 = _formed_sum(t1, c1, form)
        c2 = _weighted_block(xp, xw, b, e0 + 32, m2, wb, form)
        t2 = _formed_sum(t2, c2, form)
        w = vbroadcast(xe, f0, b)
        a00 = vfma(w, c0, a00)
        a01 = vfma(w, c1, a01)
        a02 = vfma(w, c2, a02)
        w = vbroadcast(xe, f1, b)
        a10 = vfma(w, c0, a10)
        a11 = vfma(w, c1, a11)
        a12 = vfma(w, c2, a12)
        w = vbroadcast(xe, f2, b)
        a20 = vfma(w, c0, a20)
        a21 = vfma(w, c1, a21)
        a22 = vfma(w, c2, a22)
        w = vbroadcast(xe, f3, b)
        a30 = vfma(w, c0, a30)
        a31 = vfma(w, c1, a31)
        a32 = vfma(w, c2, a32)
        w = vbroadcast(xe, f4, b)
        a40 = vfma(w, c0, a40)
        a41 = vfma(w, c1, a41)
        a42 = vfma(w, c2, a42)
        w = vbroadcast(xe, f5, b)
        a50 = vfma(w, c0, a50)
        a51 = vfma(w, c1, a51)
        a52 = vfma(w, c2, a52)
        w = vbroadcast(xe, f6, b)
        a60 = vfma(w, c0, a60)
        a61 = vfma(w, c1, a61)
        a62 = vfma(w, c2, a62)
        w = vbroadcast(xe, f7, b)
        a70 = vfma(w, c0, a70)
        a71 = vfma(w, c1, a71)
        a72 = vfma(w, c2, a72)
    _store_formed_sum32(s1f, acc1, e0 + 0, t0, form)
    _store_formed_sum32(s1f, acc1, e0 + 16, t1, form)
    _store_formed_sum32(s1f, acc1, e0 + 32, t2, form)
    t0 = vload(s1f, 0, e0 + 0)
    t1 = vload(s1f, 0, e0 + 16)
    t2 = vload(s1f, 0, e0 + 32)
    n = vsplat(xw, -shifts[d0 + 0])
    vadd_to_widened(acc, d0 + 0, e0 + 0, vfma(n, t0, a00))
    vadd_to_widened(acc, d0 + 0, e0 + 16, vfma(n, t1, a01))
    vadd_to_widened(acc, d0 + 0, e0 + 32, vfma(n, t2, a02))
    n = vsplat(xw, -shifts[d0 + 1])
    vadd_to_widened(acc, d0 + 1, e0 + 0, vfma(n, t0, a10))
    vadd_to_widened(acc, d0 + 1, e0 + 16, vfma(n, t1, a11))
    vadd_to_widened(acc, d0 + 1, e0 + 32, vfma(n, t2, a12))
    n = vsplat(xw, -shifts[d0 + 2])
    vadd_to_widened(acc, d0 + 2, e0 + 0, vfma(n, t0, a20))
    vadd_to_widened(acc, d0 + 2, e0 + 16, vfma(n, t1, a21))
    vadd_to_widened(acc, d0 + 2, e0 + 32, vfma(n, t2, a22))
    n = vsplat(xw, -shifts[d0 + 3])
    vadd_to_widened(acc, d0 + 3, e0 + 0, vfma(n, t0, a30))
    vadd_to_widened(acc, d0 + 3, e0 + 16, vfma(n, t1, a31))
    vadd_to_widened(acc, d0 + 3, e0 + 32, vfma(n, t2, a32))
    n = vsplat(xw, -shifts[d0 + 4])
    vadd_to_widened(acc, d0 + 4, e0 + 0, vfma(n, t0, a40))
    vadd_to_widened(acc, d0 + 4, e0 + 16, vfma(n, t1, a41))
    vadd_to_widened(acc, d0 + 4, e0 + 32, vfma(n, t2, a42))
    n = vsplat(xw, -shifts[d0 + 5])
    vadd_to_widened(acc, d0 + 5, e0 + 0, vfma(n, t0, a50))
    vadd_to_widened(acc, d0 + 5, e0 + 16, vfma(n, t1, a51))
    vadd_to_widened(acc, d0 + 5, e0 + 32, vfma(n, t2, a52))
    n = vsplat(xw, -shifts[d0 + 6])
    vadd_to_widened(acc, d0 + 6, e0 + 0, vfma(n, t0, a60))
    vadd_to_widened(acc, d0 + 6, e0 + 16, vfma(n, t1, a61))
    vadd_to_widened(acc, d0 + 6, e0 + 32, vfma(n, t2, a62))
    n = vsplat(xw, -shifts[d0 + 7])
    vadd_to_widened(acc, d0 + 7, e0 + 0, vfma(n, t0, a70))
    vadd_to_widened(acc, d0 + 7, e0 + 16, vfma(n, t1, a71))
    vadd_to_widened(acc, d0 + 7, e0 + 32, vfma(n, t2, a72))


@jit(inline="always")
def _products32_8x2(xp, mp, k, wr, xw, xe, r0, ns, shifts, s1f, acc1, d0, e0, acc, form):
    """:func:`_products32_8x3` for e0 <= e < e0 + 32."""
    last = xe.shape[0] - 1  # rows past the last feature (padding) read a real row; never used
    f0 = min(d0 + 0, last)
    f1 = min(d0 + 1, last)
    f2 = min(d0 + 2, last)
    f3 = min(d0 + 3, last)
    f4 = min(d0 + 4, last)
    f5 = min(d0 + 5, last)
    f6 = min(d0 + 6, last)
    f7 = min(d0 + 7, last)
    m0 = vload(mp, k, e0 + 0)  # (read mode: unused, removed by LLVM)
    m1 = vload(mp, k, e0 + 16)
    zero = vzero(xw)
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
    for b in range(r0, r0 + ns):
        wb = vsplat(xw, wr[b])
        c0 = _weighted_block(xp, xw, b, e0 + 0, m0, wb, form)
        t0 = _formed_sum(t0, c0, form)
        c1 = _weighted_block(xp, xw, b, e0 + 16, m1, wb, form)
        t1 = _formed_sum(t1, c1, form)
        w = vbroadcast(xe, f0, b)
        a00 = vfma(w, c0, a00)
        a01 = vfma(w, c1, a01)
        w = vbroadcast(xe, f1, b)
        a10 = vfma(w, c0, a10)
        a11 = vfma(w, c1, a11)
        w = vbroadcast(xe, f2, b)
        a20 = vfma(w, c0, a20)
        a21 = vfma(w, c1, a21)
        w = vbroadcast(xe, f3, b)
        a30 = vfma(w, c0, a30)
        a31 = vfma(w, c1, a31)
        w = vbroadcast(xe, f4, b)
        a40 = vfma(w, c0, a40)
        a41 = vfma(w, c1, a41)
        w = vbroadcast(xe, f5, b)
        a50 = vfma(w, c0, a50)
        a51 = vfma(w, c1, a51)
        w = vbroadcast(xe, f6, b)
        a60 = vfma(w, c0, a60)
        a61 = vfma(w, c1, a61)
        w = vbroadcast(xe, f7, b)
        a70 = vfma(w, c0, a70)
        a71 = vfma(w, c1, a71)
    _store_formed_sum32(s1f, acc1, e0 + 0, t0, form)
    _store_formed_sum32(s1f, acc1, e0 + 16, t1, form)
    t0 = vload(s1f, 0, e0 + 0)
    t1 = vload(s1f, 0, e0 + 16)
    n = vsplat(xw, -shifts[d0 + 0])
    vadd_to_widened(acc, d0 + 0, e0 + 0, vfma(n, t0, a00))
    vadd_to_widened(acc, d0 + 0, e0 + 16, vfma(n, t1, a01))
    n = vsplat(xw, -shifts[d0 + 1])
    vadd_to_widened(acc, d0 + 1, e0 + 0, vfma(n, t0, a10))
    vadd_to_widened(acc, d0 + 1, e0 + 16, vfma(n, t1, a11))
    n = vsplat(xw, -shifts[d0 + 2])
    vadd_to_widened(acc, d0 + 2, e0 + 0, vfma(n, t0, a20))
    vadd_to_widened(acc, d0 + 2, e0 + 16, vfma(n, t1, a21))
    n = vsplat(xw, -shifts[d0 + 3])
    vadd_to_widened(acc, d0 + 3, e0 + 0, vfma(n, t0, a30))
    vadd_to_widened(acc, d0 + 3, e0 + 16, vfma(n, t1, a31))
    n = vsplat(xw, -shifts[d0 + 4])
    vadd_to_widened(acc, d0 + 4, e0 + 0, vfma(n, t0, a40))
    vadd_to_widened(acc, d0 + 4, e0 + 16, vfma(n, t1, a41))
    n = vsplat(xw, -shifts[d0 + 5])
    vadd_to_widened(acc, d0 + 5, e0 + 0, vfma(n, t0, a50))
    vadd_to_widened(acc, d0 + 5, e0 + 16, vfma(n, t1, a51))
    n = vsplat(xw, -shifts[d0 + 6])
    vadd_to_widened(acc, d0 + 6, e0 + 0, vfma(n, t0, a60))
    vadd_to_widened(acc, d0 + 6, e0 + 16, vfma(n, t1, a61))
    n = vsplat(xw, -shifts[d0 + 7])
    vadd_to_widened(acc, d0 + 7, e0 + 0, vfma(n, t0, a70))
    vadd_to_widened(acc, d0 + 7, e0 + 16, vfma(n, t1, a71))


@jit(inline="always")
def _products32_8x1(xp, mp, k, wr, xw, xe, r0, ns, shifts, s1f, acc1, d0, e0, acc, form):
    """:func:`_products32_8x3` for e0 <= e < e0 + 16 (two sums per entry by row parity)."""
    last = xe.shape[0] - 1  # rows past the last feature (padding) read a real row; never used
    f0 = min(d0 + 0, last)
    f1 = min(d0 + 1, last)
    f2 = min(d0 + 2, last)
    f3 = min(d0 + 3, last)
    f4 = min(d0 + 4, last)
    f5 = min(d0 + 5, last)
    f6 = min(d0 + 6, last)
    f7 = min(d0 + 7, last)
    m0 = vload(mp, k, e0 + 0)  # (read mode: unused, removed by LLVM)
    zero = vzero(xw)
    t0 = zero
    u0 = zero
    a00 = zero
    a10 = zero
    a20 = zero
    a30 = zero
    a40 = zero
    a50 = zero
    a60 = zero
    a70 = zero
    o0 = zero
    o1 = zero
    o2 = zero
    o3 = zero
    o4 = zero
    o5 = zero
    o6 = zero
    o7 = zero
    b = r0
    while b + 2 <= r0 + ns:  # two sums per entry by row parity: 16 independent chains
        c0 = _weighted_block(xp, xw, b, e0, m0, vsplat(xw, wr[b]), form)
        t0 = _formed_sum(t0, c0, form)
        c1 = _weighted_block(xp, xw, b + 1, e0, m0, vsplat(xw, wr[b + 1]), form)
        u0 = _formed_sum(u0, c1, form)
        a00 = vfma(vbroadcast(xe, f0, b), c0, a00)
        o0 = vfma(vbroadcast(xe, f0, b + 1), c1, o0)
        a10 = vfma(vbroadcast(xe, f1, b), c0, a10)
        o1 = vfma(vbroadcast(xe, f1, b + 1), c1, o1)
        a20 = vfma(vbroadcast(xe, f2, b), c0, a20)
        o2 = vfma(vbroadcast(xe, f2, b + 1), c1, o2)
        a30 = vfma(vbroadcast(xe, f3, b), c0, a30)
        o3 = vfma(vbroadcast(xe, f3, b + 1), c1, o3)
        a40 = vfma(vbroadcast(xe, f4, b), c0, a40)
        o4 = vfma(vbroadcast(xe, f4, b + 1), c1, o4)
        a50 = vfma(vbroadcast(xe, f5, b), c0, a50)
        o5 = vfma(vbroadcast(xe, f5, b + 1), c1, o5)
        a60 = vfma(vbroadcast(xe, f6, b), c0, a60)
        o6 = vfma(vbroadcast(xe, f6, b + 1), c1, o6)
        a70 = vfma(vbroadcast(xe, f7, b), c0, a70)
        o7 = vfma(vbroadcast(xe, f7, b + 1), c1, o7)
        b += 2
    if b < r0 + ns:
        c0 = _weighted_block(xp, xw, b, e0, m0, vsplat(xw, wr[b]), form)
        t0 = _formed_sum(t0, c0, form)
        a00 = vfma(vbroadcast(xe, f0, b), c0, a00)
        a10 = vfma(vbroadcast(xe, f1, b), c0, a10)
        a20 = vfma(vbroadcast(xe, f2, b), c0, a20)
        a30 = vfma(vbroadcast(xe, f3, b), c0, a30)
        a40 = vfma(vbroadcast(xe, f4, b), c0, a40)
        a50 = vfma(vbroadcast(xe, f5, b), c0, a50)
        a60 = vfma(vbroadcast(xe, f6, b), c0, a60)
        a70 = vfma(vbroadcast(xe, f7, b), c0, a70)
    a00 = vadd(a00, o0)
    a10 = vadd(a10, o1)
    a20 = vadd(a20, o2)
    a30 = vadd(a30, o3)
    a40 = vadd(a40, o4)
    a50 = vadd(a50, o5)
    a60 = vadd(a60, o6)
    a70 = vadd(a70, o7)
    _store_formed_sum32(s1f, acc1, e0 + 0, vadd(t0, u0), form)
    t0 = vload(s1f, 0, e0 + 0)
    n = vsplat(xw, -shifts[d0 + 0])
    vadd_to_widened(acc, d0 + 0, e0 + 0, vfma(n, t0, a00))
    n = vsplat(xw, -shifts[d0 + 1])
    vadd_to_widened(acc, d0 + 1, e0 + 0, vfma(n, t0, a10))
    n = vsplat(xw, -shifts[d0 + 2])
    vadd_to_widened(acc, d0 + 2, e0 + 0, vfma(n, t0, a20))
    n = vsplat(xw, -shifts[d0 + 3])
    vadd_to_widened(acc, d0 + 3, e0 + 0, vfma(n, t0, a30))
    n = vsplat(xw, -shifts[d0 + 4])
    vadd_to_widened(acc, d0 + 4, e0 + 0, vfma(n, t0, a40))
    n = vsplat(xw, -shifts[d0 + 5])
    vadd_to_widened(acc, d0 + 5, e0 + 0, vfma(n, t0, a50))
    n = vsplat(xw, -shifts[d0 + 6])
    vadd_to_widened(acc, d0 + 6, e0 + 0, vfma(n, t0, a60))
    n = vsplat(xw, -shifts[d0 + 7])
    vadd_to_widened(acc, d0 + 7, e0 + 0, vfma(n, t0, a70))
