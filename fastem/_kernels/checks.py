"""Parallel scans that find the first value a family cannot take (numba only).

Each returns the flat index (row * D + column) of the first offending entry in
row-major order, or -1; the caller turns it into a message naming the place.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._config import BLOCK_ROWS, jit


@jit(parallel=True)
def _first_nonfinite(X):
    """Flat index (row * D + col) of the first NaN/inf in X, or -1."""
    n_samples, n_features = X.shape
    n_blocks = (n_samples + BLOCK_ROWS - 1) // BLOCK_ROWS
    first = np.full(n_blocks, -1, dtype=np.int64)
    for blk in prange(n_blocks):
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        found = False
        for i in range(start, stop):
            for d in range(n_features):
                if not np.isfinite(X[i, d]):
                    first[blk] = i * n_features + d
                    found = True
                    break
            if found:
                break
    for blk in range(n_blocks):
        if first[blk] >= 0:
            return first[blk]
    return -1


#: what ``_first_invalid`` checks, per family
RULE_FINITE = 0  #: finite values (Gaussian, Student-t)
RULE_COUNTS = 1  #: finite non-negative integers (Poisson)
RULE_BINARY = 2  #: exactly 0 or 1 (Bernoulli)
RULE_COUNT_ROWS = 3  #: counts, each row with a positive total (multinomial)
RULE_UNIT_ROWS = 4  #: finite rows of Euclidean norm 1 within ``tol`` (von Mises-Fisher)

#: problem codes returned by ``_first_invalid``
NONFINITE, NEGATIVE, NOT_INTEGER, NOT_BINARY, EMPTY_ROW, NOT_UNIT = 1, 2, 3, 4, 5, 6


@jit(inline="always")
def _entry_problem(v, rule):
    if not np.isfinite(v):
        return NONFINITE
    if rule == RULE_COUNTS or rule == RULE_COUNT_ROWS:
        if v < 0.0:
            return NEGATIVE
        if v != np.floor(v):
            return NOT_INTEGER
    elif rule == RULE_BINARY:
        if v != 0.0 and v != 1.0:
            return NOT_BINARY
    return 0


@jit(parallel=True)
def _first_invalid(X, rule, tol):
    """(row, column, problem code) of the first entry or row breaking ``rule``; (-1, -1, 0) if none.

    Row-level problems (an all-zero count row, a norm off 1 by more than ``tol``)
    report column -1. Rows are scanned in order, so the first problem in row
    order is reported whatever the thread count.
    """
    n_samples, n_features = X.shape
    n_blocks = (n_samples + BLOCK_ROWS - 1) // BLOCK_ROWS
    first_row = np.full(n_blocks, -1, dtype=np.int64)
    first_col = np.full(n_blocks, -1, dtype=np.int64)
    first_code = np.zeros(n_blocks, dtype=np.int64)
    for blk in prange(n_blocks):
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        for i in range(start, stop):
            total = 0.0
            for d in range(n_features):
                v = np.float64(X[i, d])
                code = _entry_problem(v, rule)
                if code != 0:
                    first_row[blk] = i
                    first_col[blk] = d
                    first_code[blk] = code
                    break
                total += v * v if rule == RULE_UNIT_ROWS else v
            if first_code[blk] != 0:
                break
            if rule == RULE_COUNT_ROWS and total == 0.0:
                first_row[blk] = i
                first_code[blk] = EMPTY_ROW
                break
            if rule == RULE_UNIT_ROWS and not abs(np.sqrt(total) - 1.0) <= tol:
                first_row[blk] = i
                first_code[blk] = NOT_UNIT
                break
    for blk in range(n_blocks):
        if first_code[blk] != 0:
            return first_row[blk], first_col[blk], first_code[blk]
    return np.int64(-1), np.int64(-1), np.int64(0)
