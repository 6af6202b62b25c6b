"""The float32 E-step tile of the full/tied kernel with float32 sums (numba only).

With ``accumulation="float32"`` (float32 data), :func:`quadratic_form_rows32`
replaces :func:`.gaussian_simd.quadratic_form_rows`: the same register-blocked
triangular product y = (x - m)^T U on 16-row float32 vectors (the same
:func:`.gaussian_simd._quadratic_form_4x4`, told so by a type marker), but the squares of
each block of 4 columns of U are also taken and summed in float32 (4 FMAs in
float32 lanes instead of 8 widenings and 8 float64 FMAs per row vector), and only
the block's sum is widened and added into q, which stays float64 across blocks.
:func:`tile_quadratic_forms` picks it at compile time from the precision of the
sums, so the float64-sums kernels compile to the code they had.

Accuracy: y is float32 already (its products and sums rounded in float32); the
block sum adds at most 4 float32 roundings to that block's part of q (relative
2.4e-7 of it), about what the float32 y carry already; q's sum over the D / 4
blocks is float64. Parameters of fits stay within 1e-5 relative of the float64
fit (tests/test_gaussian_simd32.py; measured about 1e-7).

The tile is centred once on the shared centre c, like the float64 tiles
(:mod:`.gaussian_simd`): x - c taken in float64 and rounded once, the
accumulators started at -(m_k - c) U_k (rounded once from float64). The y then
carry float32 rounding relative to |x - c| + |m_k - c| rather than |x - m_k|:
measured 1.8e-7 -> 3.2e-7 between the float32-sums and float64 fits at
2e5 x 64, K=32 (components 3.5-4.5 sd apart); the float32-sums fit went from
1.36x to 1.48x the float64 fit's speed (two compare_peers runs minutes apart,
load 1-2; per-component centring had moved a 64 KB tile through L2 once per
component). The M-step keeps rows centred on each m_k.

Range: a block's float32 sum overflows once it exceeds 3.4e38, i.e. for a
standardized value |y_j| above 9.2e18 (4 squares per block; rows of ordinary
data are nowhere near: a density exp(-q / 2) is 0 in float64 from q = 1500 on).
Such rows (q = inf) are recomputed in float64 (:func:`_quadratic_form_rows_wide`),
so q stays finite wherever the float64 sums' kernel has it finite (up to |y_j| of
about 1e154), and such a row keeps its nearest component rather than an infinite
log-likelihood. The check costs one comparison per row and component.

Measured (256-row tile, K=32, one thread, AVX-512): 24.1 ns per row and
component at D=64 against 27.0 for the float64-squares kernel on the same
float32 tile (47.1 for float64 data on 128 rows). Whole float32-sums passes side
by side with the float64 pass, 2 threads, load 2.5-3: 1.59x -> 1.66x at
2e5 x 64, K=32; 1.39-1.45x -> 1.47-1.49x at 1e6 x 16, K=16. Compiled without reference counting
(``_nrt=False``): numba otherwise counted references to the views of ``upad`` in the loops; 2.64 ->
2.40 ns per row and component at D=16 (one thread, 256-row tile).
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from ._config import jit
from ._simd import vlanes
from .gaussian_simd import _quadratic_form_4x4, quadratic_form_rows, quadratic_form_rows_shifted

#: marks float32 squares for :func:`.gaussian_simd._quadratic_form_4x4` (a type, read at compile time)
_NARROW_SQUARES = np.zeros(0, dtype=np.float32)


@jit(_nrt=False)  # no reference counts on the views it takes of upad (calls per block otherwise)
def quadratic_form_rows32(xe, nt, upad, kp, shift, k, q):
    """q[b] = ||xe[:, b]^T U + shift[k]||^2 for b < nt (and lanes up to the next 64 rows), U = ``upad[kp]``.

    ``shift`` (K, C) as in :func:`.gaussian_simd.quadratic_form_rows_shifted` (``xe`` centred
    on a shared centre), or empty (K = 0): then ``xe`` is centred on m_k and no shift is added.

    ``xe`` (D, T) and ``upad`` float32, ``q`` float64 (T,); T a multiple of 64. The squares are
    summed in float32 per block of 4 columns of U (see the module docstring).
    """
    lanes = vlanes(xe)
    for b0 in range(0, nt, 4 * lanes):
        _quadratic_form_4x4(xe, b0, upad, kp, q, shift, k, shift.shape[0] > 0, _NARROW_SQUARES)
    overflow = False
    for b in range(nt):
        overflow |= q[b] == np.inf
    if overflow:  # a float32 block sum overflowed (|y_j| > 9.2e18): those rows again, in float64
        _quadratic_form_rows_wide(xe, nt, upad, kp, shift, k, q)


@jit()
def _quadratic_form_rows_wide(xe, nt, upad, kp, shift, k, q):
    """q[b] = ||xe[:, b]^T U||^2 in float64 (products and sums) for the rows b < nt where q[b] = inf."""
    n_features = xe.shape[0]
    for b in range(nt):
        if q[b] != np.inf:
            continue
        total = 0.0
        for j in range(n_features):
            y = np.float64(shift[k, j]) if shift.shape[0] > 0 else 0.0
            for d in range(j + 1):
                y += np.float64(xe[d, b]) * np.float64(upad[kp, d, j])
            total += y * y
        q[b] = total


def tile_quadratic_forms(xe, nt, upad, kp, shift, k, q, means_acc):
    """The full/tied kernel's E-step tile, chosen at compile time (numba only).

    float32 sums (float32 ``means_acc`` and ``xe``): :func:`quadratic_form_rows32`, float32
    squares; float64 ``xe``: :func:`.gaussian_simd.quadratic_form_rows_shifted`; both on a tile
    centred once on the shared centre. float32 data with float64 sums keep the per-component
    centring, their rounding relative to x - m_k: :func:`.gaussian_simd.quadratic_form_rows`
    (``shift`` unused).
    """
    raise NotImplementedError  # numba only, see the overload below


@overload(tile_quadratic_forms, inline="always")
def _tile_quadratic_forms_impl(xe, nt, upad, kp, shift, k, q, means_acc):
    if means_acc.dtype == types.float32 and xe.dtype == types.float32:
        return lambda xe, nt, upad, kp, shift, k, q, means_acc: quadratic_form_rows32(
            xe, nt, upad, kp, shift, k, q
        )
    if xe.dtype == types.float64:
        return lambda xe, nt, upad, kp, shift, k, q, means_acc: quadratic_form_rows_shifted(
            xe, nt, upad, kp, shift, k, q
        )
    return lambda xe, nt, upad, kp, shift, k, q, means_acc: quadratic_form_rows(xe, nt, upad, kp, q)
