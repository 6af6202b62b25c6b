"""The ordered merge of per-block partial moments shared by the kernels."""

from __future__ import annotations

from ._config import jit


@jit(inline="always")
def add_block_moments(part_R, part_S1, part_S2, blk, acc_R, acc_S1, acc_S2):
    """acc += partials of block ``blk``; callers loop over blocks in row order.

    Called serially after the parallel loop, so the order of additions (and
    the result, bit for bit) does not depend on the thread count.
    """
    n_components, n_features = acc_S1.shape
    s2a, s2b, s2c = acc_S2.shape
    for k in range(n_components):
        acc_R[k] += part_R[blk, k]
        for d in range(n_features):
            acc_S1[k, d] += part_S1[blk, k, d]
    for i in range(s2a):
        for j in range(s2b):
            for d in range(s2c):
                acc_S2[i, j, d] += part_S2[blk, i, j, d]
