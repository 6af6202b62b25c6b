"""The float32-sums M-step tiles of the full/tied kernel (``accumulation="float32"``; numba only).

:func:`moments32` adds S1, S2 of one tile and component, summed in float32 over the tile (16 rows a
lane), widened into the float64 block accumulators. It works on the E-step's transposed tile
xe = x - c (float32, centred once on the shared centre c, the mean of the means; rows in the
lanes) and the weighted rows v = wr (xe - shift), shift = float32(m_k - c), which the first row
of blocks forms, stores transposed and sums on the way:

    S2'[d, e] = sum_b xe[d, b] v[e, b],   S2[d, e] = S2'[d, e] - shift[d] S1[e]

(exact, as sum_b v[e, b] = S1[e]; v is centred on c + shift, i.e. on m_k up to one float32 rounding
of m_k - c), so the products need no subtraction and every product of the upper triangle is taken
once: 4 x 4 blocks of features on and above the diagonal, 16 accumulators of 16 rows each, their
sums reduced in one shuffle tree per block (:func:`_reduce16`); :func:`add_block_moments32` unpacks
the blocks and applies the move in float64 per block of rows. Features are padded with zero rows
to whole 16-lane groups (the sums of v) and to multiples of 4 for the blocks: D (D + 4) / 2 products a row
at D a multiple of 4 (2176 at D=64), against 2560 for the former row-major kernel's 8-row blocks of
16-lane rows (whose vectors started at each block's diagonal).

Measured, the former kernels (row-major from 48 features, the transposed loop tiles of
:mod:`.gaussian` at 17-47) against this one, in one process, interleaved, one thread: the kernel
alone (256-row tiles) 49.6 -> 44.0 ns a row and component at D=64, 15.9 -> 13.2 at D=32 and 4.17
-> 3.79 at D=16 (same algorithm, with the sweep now folded into the first block row); whole
float32-sums passes: 2e5 x 64, K=32, M-step 0.372 -> 0.313 s, 1.72x -> 1.84x the float64 pass's
speed; 4e5 x 32, K=32, M-step 0.222 -> 0.157 s, 1.60x -> 1.92x (2026-12-04, AMD EPYC, AVX-512).

Accuracy: the factor xe carries one float32 rounding of x - c, i.e. relative to |x - c| +
|m_k - c| instead of |x - m_k|, as in the E-step (:mod:`.gaussian_simd32`); the move adds one
rounding of shift[d] S1[e], small where it matters: S1 is near zero once the means settle.
Measured: final parameters of the float32-sums fits 1.8e-7 (2e5 x 64, K=32; 1.2e-6 with the former
row-major kernel) and 8.4e-8 (1e6 x 16, K=16) relative to the float64 fits (scripts/compare_peers.py,
overlapping data, 2026-12-04); stated and tested
within 1e-5 (tests/test_float32_moments.py, tests/test_float32_accumulation.py).

The module also holds the M-step's tile buffers and the compile-time choice of tiles for either
precision of the sums (:func:`moment_buffers`, :func:`tile_moments`), which the full/tied kernel
calls, so that imports flow one way: :mod:`.gaussian` -> this module -> :mod:`.gaussian_simd`
(float64 tiles).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from ._config import jit
from ._simd import Vec, vadd, vadd_to_widened, vbroadcast, vfma, vload, vmul, vstore, vsub, vzero
from .gaussian_simd import _FORM_WEIGHTED, _READ_WEIGHTED, padded_means, row_buffers, weighted_moments_centred


# ------------------------------------------------------------------ buffers and dispatch
@jit(inline="always")
def padded_means32(means, n_padded):
    """``means`` (K, D) as a float32 (K, n_padded) array, zero in the extra columns."""
    out = np.zeros((means.shape[0], n_padded), dtype=np.float32)
    if n_padded > 0:
        for k in range(means.shape[0]):
            for d in range(means.shape[1]):
                out[k, d] = means[k, d]
    return out


def moment_buffers(tile_rows, n_features, means_acc, enabled):
    """(xp, xw, mp) for :func:`tile_moments` in ``means_acc``'s precision (numba only).

    float64: :func:`row_buffers` and :func:`padded_means` (D rounded up to 8 columns); float32:
    ``xp`` empty (0, D16) (:func:`moments32` reads the transposed tile only), ``xw``
    :func:`transposed_buffer32` and :func:`padded_means32`, D16 = D rounded up to 16. Zero columns
    if not ``enabled``.
    """
    raise NotImplementedError  # numba only, see the overload below


@overload(moment_buffers, inline="always")
def _moment_buffers_impl(tile_rows, n_features, means_acc, enabled):
    # chosen at compile time: each precision compiles only its own tile functions
    if means_acc.dtype == types.float32:

        def impl32(tile_rows, n_features, means_acc, enabled):
            n_padded = (n_features + 15) // 16 * 16 if enabled else 0
            xp = np.zeros((0, n_padded), dtype=np.float32)
            return xp, transposed_buffer32(tile_rows, n_padded), padded_means32(means_acc, n_padded)

        return impl32

    def impl64(tile_rows, n_features, means_acc, enabled):
        xp, xw = row_buffers(tile_rows, n_features, enabled)
        return xp, xw, padded_means(means_acc, (n_features + 7) // 8 * 8 if enabled else 0)

    return impl64


def tile_moments(xp, nt, mp, k, wr, xw, s1, s2, xe, centre):
    """:func:`weighted_moments_centred` (float64 ``xp``) or :func:`moments32` (float32).

    ``xe`` (the tile centred on ``centre``, transposed) is read by the float32 kernel only, ``xp``
    (the rows centred on ``centre``) by the float64 kernel only. numba only.
    """
    raise NotImplementedError  # numba only, see the overload below


@overload(tile_moments, inline="always")
def _tile_moments_impl(xp, nt, mp, k, wr, xw, s1, s2, xe, centre):
    if xp.dtype == types.float32:
        return lambda xp, nt, mp, k, wr, xw, s1, s2, xe, centre: moments32(
            nt, mp, k, wr, xw, s1, s2, xe, centre
        )
    return lambda xp, nt, mp, k, wr, xw, s1, s2, xe, centre: weighted_moments_centred(
        xp, nt, mp, k, wr, xw, s1, s2
    )


@jit(inline="always")
def transposed_buffer32(tile_rows, n_padded):
    """:func:`moments32`'s scratch: a zeroed float32 (n_padded + 1, tile_rows + 16) array, the weighted
    rows transposed (rows 0 to n_padded - 1), then the shifts; rows start on 64-byte boundaries an odd
    number of cache lines apart (tile_rows a multiple of 32)."""
    stride = tile_rows + 16
    raw = np.zeros((n_padded + 1) * stride + 16, dtype=np.float32)
    offset = ((64 - raw.ctypes.data % 64) % 64) // 4
    return raw[offset : offset + (n_padded + 1) * stride].reshape((n_padded + 1, stride))


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


@jit(_nrt=False)  # no reference counts: they cost ~40 atomic calls a call (numba keeps them in loops)
def moments32(nt, mp, k, wr, xw, s1, s2, xe, centre):
    """S1, S2 of the rows b < nt of a tile around m_k, summed in float32 over the tile and added widened
    to ``s1`` (1, D16) and ``s2`` (D16, D16) (float64; see the module docstring).

    ``xe`` (D16, T') the tile's rows minus ``centre`` (float64, (D,)), transposed, float32, its rows
    past the last feature zero; ``mp`` (K, D16) the float32 means; ``wr`` (T,) the weights; ``xw``
    (D16 + 1, T') scratch (:func:`transposed_buffer32`): the weighted rows v = wr (xe - shift),
    shift = float32(m_k - c), then the shifts. ``s2`` viewed as (D16^2 / 16, 16): row p += the
    float32 sums of block p (4 x 4 features on or above the diagonal, in row order (0, 0), (0, 4),
    ..., (4, 4), ...; entries 4 i + j), every product once, no subtraction in the products;
    :func:`add_block_moments32` unpacks them and moves them to m_k. The rows from nt to the next
    multiple of 16 get weight 0 and xe 0.
    """
    n_padded = xw.shape[0] - 1
    n_features = centre.shape[0]
    ng = (nt + 15) // 16 * 16
    for b in range(nt, ng):  # the last group's rows past nt: weight 0 and finite factors
        wr[b] = 0.0
        for d in range(n_padded):
            xe[d, b] = 0.0
    shifts = xw[n_padded]
    for d in range(n_features):
        shifts[d] = np.float32(np.float64(mp[k, d]) - centre[d])
    wv = wr.reshape((1, wr.shape[0]))
    blocks = s2.reshape((n_padded * n_padded // 16, 16))
    n_quads = (n_features + 3) // 4 * 4  # blocks of 4 features: fewer wasted products than 16
    # the first block row forms the weighted rows and their sums on the way: a sweep of its own (load,
    # centre, weight, store, sum) took 16% of the kernel at D=64, 26% at D=32 (one thread)
    for f0 in range(0, n_quads, 16):
        vadd_to_widened(s1, 0, f0, _formed_group(xe, xw, ng, f0, n_quads, blocks, wv))
    p = n_quads // 4
    for d0 in range(4, n_quads, 4):
        _block32_triangle(xe, xw, ng, d0, blocks, p, wv, _READ_WEIGHTED)
        p += 1
        for e0 in range(d0 + 4, n_quads, 4):
            _block32_square(xe, xw, ng, d0, e0, blocks, p, wv, _READ_WEIGHTED)
            p += 1


@jit(inline="always")
def add_block_moments32(acc1, acc2, mp, centre, part_S1, part_S2, blk):
    """part_S1[blk] += acc1 and the upper triangles of part_S2[blk] += acc2, then zero acc1, acc2.

    acc2 holds :func:`moments32`'s 4 x 4 blocks of the products of x - c with rows centred on
    c + shift_k, moved here to the same centre: S2[d, e] -= shift_k[d] S1_k[e] (float64).
    """
    n_features = part_S1.shape[2]
    n_padded = acc2.shape[1]
    for k in range(part_S1.shape[1]):
        for d in range(n_features):
            part_S1[blk, k, d] += acc1[k, 0, d]
    for ks in range(part_S2.shape[1]):
        blocks = acc2[ks].reshape((n_padded * n_padded // 16, 16))
        n_quads = (n_features + 3) // 4 * 4
        p = 0
        for d0 in range(0, n_quads, 4):
            for e0 in range(d0, n_quads, 4):
                for i in range(4):
                    for j in range(4):
                        d = d0 + i
                        e = e0 + j
                        if d <= e < n_features:
                            part_S2[blk, ks, d, e] += blocks[p, 4 * i + j]
                p += 1
    for k in range(part_S1.shape[1]):
        ks = 0 if part_S2.shape[1] == 1 else k
        for d in range(n_features):
            shift = np.float64(np.float32(np.float64(mp[k, d]) - centre[d]))
            for e in range(d, n_features):
                part_S2[blk, ks, d, e] -= shift * acc1[k, 0, e]
    acc1[:] = 0.0
    acc2[:] = 0.0


@jit(inline="always")
def _reduce16(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15):
    """The 16 horizontal sums of 16 float32 vectors in one vector (15 shuffle pairs and adds); the lane
    order is fixed by the tree: :func:`moments32` passes the accumulators permuted to match."""
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


def _weighted_quad(xe, xw, wv, e0, g, form):
    """Weighted rows e0 to e0 + 3 at rows g to g + 15: formed, xw[e0 + j, g:] = (xe[e0 + j, g:] -
    shift[e0 + j]) wv[0, g:] (shifts in xw's last row) and stored, if ``form`` is
    :data:`.gaussian_simd._FORM_WEIGHTED`; read from ``xw`` if :data:`.gaussian_simd._READ_WEIGHTED`
    (numba only)."""
    raise NotImplementedError  # numba only, see the overload below


@overload(_weighted_quad, inline="always")
def _weighted_quad_impl(xe, xw, wv, e0, g, form):
    if form.dtype == types.float64:  # _FORM_WEIGHTED

        def formed(xe, xw, wv, e0, g, form):
            last = xw.shape[0] - 1
            wr = vload(wv, 0, g)
            w0 = vmul(vsub(vload(xe, e0 + 0, g), vbroadcast(xw, last, e0 + 0)), wr)
            w1 = vmul(vsub(vload(xe, e0 + 1, g), vbroadcast(xw, last, e0 + 1)), wr)
            w2 = vmul(vsub(vload(xe, e0 + 2, g), vbroadcast(xw, last, e0 + 2)), wr)
            w3 = vmul(vsub(vload(xe, e0 + 3, g), vbroadcast(xw, last, e0 + 3)), wr)
            vstore(xw, e0 + 0, g, w0)
            vstore(xw, e0 + 1, g, w1)
            vstore(xw, e0 + 2, g, w2)
            vstore(xw, e0 + 3, g, w3)
            return w0, w1, w2, w3

        return formed
    return lambda xe, xw, wv, e0, g, form: (
        vload(xw, e0 + 0, g),
        vload(xw, e0 + 1, g),
        vload(xw, e0 + 2, g),
        vload(xw, e0 + 3, g),
    )


@jit(inline="always")
def _formed_group(xe, xw, ng, f0, n_quads, s2, wv):
    """Blocks (0, f0) to (0, f0 + 12) of the first block row, forming weighted rows f0 to f0 + 15 (those
    below ``n_quads``); returns the sums of those rows in lanes 0 to 15 (zero past ``n_quads``)."""
    zero = vzero(xw)
    c4 = c5 = c6 = c7 = c8 = c9 = c10 = c11 = c12 = c13 = c14 = c15 = zero
    if f0 == 0:
        c0, c1, c2, c3 = _block32_triangle(xe, xw, ng, 0, s2, 0, wv, _FORM_WEIGHTED)
    else:
        c0, c1, c2, c3 = _block32_square(xe, xw, ng, 0, f0, s2, f0 // 4, wv, _FORM_WEIGHTED)
    if f0 + 4 < n_quads:
        c4, c5, c6, c7 = _block32_square(xe, xw, ng, 0, f0 + 4, s2, f0 // 4 + 1, wv, _FORM_WEIGHTED)
    if f0 + 8 < n_quads:
        c8, c9, c10, c11 = _block32_square(xe, xw, ng, 0, f0 + 8, s2, f0 // 4 + 2, wv, _FORM_WEIGHTED)
    if f0 + 12 < n_quads:
        c12, c13, c14, c15 = _block32_square(xe, xw, ng, 0, f0 + 12, s2, f0 // 4 + 3, wv, _FORM_WEIGHTED)
    return _reduce16(c0, c8, c4, c12, c2, c10, c6, c14, c1, c9, c5, c13, c3, c11, c7, c15)


@jit(inline="always")
def _block32_square(xe, xw, ng, d0, e0, s2, p, wv, form):
    """s2[p, 4 i + j] += float64(sum_b xe[d0 + i, b] xw[e0 + j, b]), i, j < 4, b < ng (a multiple of 16);
    the weighted rows xw[e0 + j] formed on the way or read (``form``, :func:`_weighted_quad`). Returns
    their 4 vectors of sums over b (16 rows a lane; used when they are formed)."""
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
    c0 = zero
    c1 = zero
    c2 = zero
    c3 = zero
    for g in range(0, ng, 16):
        w0, w1, w2, w3 = _weighted_quad(xe, xw, wv, e0, g, form)
        c0 = vadd(c0, w0)
        c1 = vadd(c1, w1)
        c2 = vadd(c2, w2)
        c3 = vadd(c3, w3)
        x0 = vload(xe, d0 + 0, g)
        x1 = vload(xe, d0 + 1, g)
        x2 = vload(xe, d0 + 2, g)
        x3 = vload(xe, d0 + 3, g)
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
    return c0, c1, c2, c3


@jit(inline="always")
def _block32_triangle(xe, xw, ng, d0, s2, p, wv, form):
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
    c0 = zero
    c1 = zero
    c2 = zero
    c3 = zero
    for g in range(0, ng, 16):
        w0, w1, w2, w3 = _weighted_quad(xe, xw, wv, d0, g, form)
        c0 = vadd(c0, w0)
        c1 = vadd(c1, w1)
        c2 = vadd(c2, w2)
        c3 = vadd(c3, w3)
        x0 = vload(xe, d0 + 0, g)
        x1 = vload(xe, d0 + 1, g)
        x2 = vload(xe, d0 + 2, g)
        x3 = vload(xe, d0 + 3, g)
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
    return c0, c1, c2, c3
