"""Small dense linear algebra for the M-step (numba only).

K Cholesky factorisations of D x D matrices per iteration cost nothing next to
the pass over the data, but LAPACK/BLAS may round differently depending on the
library build, the thread count or where the arrays sit in memory. Plain loops
in a fixed order give the same bits in every process, which the bitwise
resume and thread-count guarantees rely on.
"""

from __future__ import annotations

import numpy as np

from ._config import jit


@jit()
def _precision_cholesky(covariances, out):
    """out[k] = upper-triangular U with U U^T = inv(covariances[k]).

    Cholesky L L^T = Sigma (lower), then U = inv(L)^T by forward substitution.
    Returns the index of the first matrix that is not numerically positive
    definite (a pivot <= 0 or not finite), or -1.
    """
    n_matrices, n_features, _ = covariances.shape
    lower = np.empty((n_features, n_features))
    inv = np.empty((n_features, n_features))
    for k in range(n_matrices):
        lower[:, :] = 0.0
        for j in range(n_features):
            s = covariances[k, j, j]
            for p in range(j):
                s -= lower[j, p] * lower[j, p]
            if not (s > 0.0) or not np.isfinite(s):
                return k
            ljj = np.sqrt(s)
            lower[j, j] = ljj
            for i in range(j + 1, n_features):
                t = covariances[k, i, j]
                for p in range(j):
                    t -= lower[i, p] * lower[j, p]
                lower[i, j] = t / ljj
        # inv(L) column by column: L x = e_c
        inv[:, :] = 0.0
        for c in range(n_features):
            inv[c, c] = 1.0 / lower[c, c]
            for i in range(c + 1, n_features):
                t = 0.0
                for p in range(c, i):
                    t -= lower[i, p] * inv[p, c]
                inv[i, c] = t / lower[i, i]
        for i in range(n_features):
            for j in range(n_features):
                out[k, i, j] = inv[j, i]
    return -1


@jit()
def _cholesky_lower(matrices, out):
    """out[k] = lower-triangular L with L L^T = matrices[k]; index of a failure or -1."""
    n_matrices, n_features, _ = matrices.shape
    for k in range(n_matrices):
        for i in range(n_features):
            for j in range(n_features):
                out[k, i, j] = 0.0
        for j in range(n_features):
            s = matrices[k, j, j]
            for p in range(j):
                s -= out[k, j, p] * out[k, j, p]
            if not (s > 0.0) or not np.isfinite(s):
                return k
            ljj = np.sqrt(s)
            out[k, j, j] = ljj
            for i in range(j + 1, n_features):
                t = matrices[k, i, j]
                for p in range(j):
                    t -= out[k, i, p] * out[k, j, p]
                out[k, i, j] = t / ljj
    return -1
