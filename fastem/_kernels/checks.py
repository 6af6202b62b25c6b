"""Scans that find the first value a family cannot take (numba only).

Each returns the flat index (row * D + column) of the first offending entry in
row-major order, or -1; the caller turns it into a message naming the place.
Rows are scanned in blocks of ``BLOCK_ROWS`` by serial ``nogil`` kernels, each
thread over a contiguous range of blocks (:mod:`._blocks`, which compiles in a
fraction of the time of ``parallel=True``). A thread stops at the first block
of its range with a problem: the ranges are in row order, so the first problem
of the first range that has one is the first in the data, whatever the thread
count.
"""

from __future__ import annotations

import numpy as np

from ._blocks import n_blocks_of, run_blocks
from ._config import BLOCK_ROWS, jit


@jit()
def _nonfinite_blocks(X, first, blk_start, blk_stop):
    """first[blk] = flat index of the first NaN/inf of block blk; stops at the range's first such block."""
    n_samples, n_features = X.shape
    for blk in range(blk_start, blk_stop):
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        for i in range(start, stop):
            for d in range(n_features):
                if not np.isfinite(X[i, d]):
                    first[blk] = i * n_features + d
                    return


def _first_nonfinite(X) -> int:
    """Flat index (row * D + col) of the first NaN/inf in X, or -1."""
    n_blocks = n_blocks_of(X.shape[0])
    first = np.full(n_blocks, -1, dtype=np.int64)
    run_blocks(_nonfinite_blocks, n_blocks, X, first)
    found = np.flatnonzero(first >= 0)
    return int(first[found[0]]) if found.size else -1


#: what ``_first_invalid`` checks, per family
RULE_FINITE = 0  #: finite values (Gaussian, Student-t)
RULE_COUNTS = 1  #: finite non-negative integers (Poisson)
RULE_BINARY = 2  #: exactly 0 or 1 (Bernoulli)
RULE_COUNT_ROWS = 3  #: counts, each row with a positive total (multinomial)
RULE_UNIT_ROWS = 4  #: finite rows of Euclidean norm 1 within ``tol`` (von Mises-Fisher)

#: problem codes returned by ``_first_invalid``
NONFINITE, NEGATIVE, NOT_INTEGER, NOT_BINARY, EMPTY_ROW, NOT_UNIT = 1, 2, 3, 4, 5, 6

#: problem code of ``_first_invalid_missing``: a row whose every entry is NaN
ALL_MISSING = 7


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


@jit(inline="always")
def _scan_invalid(X, rule, tol, skip_nan, first_row, first_col, first_code, blk_start, blk_stop):
    """The first problem of each block into first_*[blk]; stops at the range's first block with one.

    With ``skip_nan`` a NaN is a missing entry: skipped, and a row without an
    observed entry is ``ALL_MISSING``; row rules apply to the observed entries.
    """
    n_samples, n_features = X.shape
    for blk in range(blk_start, blk_stop):
        start = blk * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_samples)
        for i in range(start, stop):
            total = 0.0
            n_observed = 0
            for d in range(n_features):
                v = np.float64(X[i, d])
                if skip_nan and np.isnan(v):
                    continue
                n_observed += 1
                code = _entry_problem(v, rule)
                if code != 0:
                    first_row[blk] = i
                    first_col[blk] = d
                    first_code[blk] = code
                    break
                total += v * v if rule == RULE_UNIT_ROWS else v
            if first_code[blk] != 0:
                break
            if skip_nan and n_observed == 0:
                first_row[blk] = i
                first_code[blk] = ALL_MISSING
                break
            if rule == RULE_COUNT_ROWS and total == 0.0:
                first_row[blk] = i
                first_code[blk] = EMPTY_ROW
                break
            if rule == RULE_UNIT_ROWS and not abs(np.sqrt(total) - 1.0) <= tol:
                first_row[blk] = i
                first_code[blk] = NOT_UNIT
                break
        if first_code[blk] != 0:
            break  # later blocks of the range lie after this problem


@jit()
def _invalid_blocks(X, rule, tol, first_row, first_col, first_code, blk_start, blk_stop):
    _scan_invalid(X, rule, tol, False, first_row, first_col, first_code, blk_start, blk_stop)


# a kernel of its own, with the constant folded in: a run-time flag made the scan 10% slower
@jit()
def _invalid_blocks_missing(X, rule, tol, first_row, first_col, first_code, blk_start, blk_stop):
    _scan_invalid(X, rule, tol, True, first_row, first_col, first_code, blk_start, blk_stop)


def _first_problem(X, rule, tol, skip_nan):
    n_blocks = n_blocks_of(X.shape[0])
    first_row = np.full(n_blocks, -1, dtype=np.int64)
    first_col = np.full(n_blocks, -1, dtype=np.int64)
    first_code = np.zeros(n_blocks, dtype=np.int64)
    kernel = _invalid_blocks_missing if skip_nan else _invalid_blocks
    run_blocks(kernel, n_blocks, X, rule, tol, first_row, first_col, first_code)
    found = np.flatnonzero(first_code)
    if found.size == 0:
        return -1, -1, 0
    blk = found[0]
    return int(first_row[blk]), int(first_col[blk]), int(first_code[blk])


def _first_invalid(X, rule: int, tol: float) -> tuple[int, int, int]:
    """(row, column, problem code) of the first entry or row breaking ``rule``; (-1, -1, 0) if none.

    Row-level problems (an all-zero count row, a norm off 1 by more than ``tol``)
    report column -1. Rows are scanned in order, so the first problem in row
    order is reported whatever the thread count.
    """
    return _first_problem(X, rule, tol, False)


def _first_invalid_missing(X, rule: int, tol: float) -> tuple[int, int, int]:
    """``_first_invalid`` for ``missing="marginalize"``: NaN marks a missing entry and is skipped.

    Infinity is still refused (``NONFINITE``), the observed entries follow
    ``rule``, and a row with no observed entry is refused as ``ALL_MISSING``
    (column -1): it carries no information and has no likelihood. Row rules
    (``RULE_COUNT_ROWS``, ``RULE_UNIT_ROWS``) apply to the observed entries.
    """
    return _first_problem(X, rule, tol, True)
