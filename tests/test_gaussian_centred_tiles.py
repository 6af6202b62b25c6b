"""Full/tied tiles centred once on a shared centre (``fastem._kernels.gaussian_simd``) against NumPy.

The float64 full/tied pass centres each tile once on c, the mean of the
component means, instead of once per component: the E-step starts its
accumulators at -(m_k - c) U_k, and the M-step takes the products of x - c with
the weighted rows and moves them to m_k per block. These tests hold the tile
functions and the whole pass to the formulas around m_k, also on data far from
the origin and with components far apart, where the rounding of the shared
centring (about eps |m_k - c| / sd) is largest.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastem._kernels._config import jit
from fastem._kernels.gaussian import _gaussian_pass
from fastem._kernels.gaussian_simd import (
    add_block_moments_centred,
    copy_rows_centred,
    load_tile_centred,
    padded_means,
    padded_precision,
    quadratic_form_rows_shifted,
    row_buffers,
    shared_centre,
    shifted_means,
    weighted_moments_centred,
)

TILE = 128


@jit()
def _shifted_forms(X, t0, nt, means, prec, k):
    centre = shared_centre(means)
    upad = padded_precision(prec, X.dtype, True)
    shift = shifted_means(means, centre, upad)
    xe = np.zeros((X.shape[1], TILE))
    load_tile_centred(X, t0, nt, centre, xe)
    q = np.full(TILE, np.nan)
    quadratic_form_rows_shifted(xe, nt, upad, 0 if prec.shape[0] == 1 else k, shift, k, q)
    return q, centre


@jit()
def _centred_moments(X, t0, nt, means, wr, tied):
    n_components, n_features = means.shape
    centre = shared_centre(means)
    xp, xw = row_buffers(TILE, n_features, True)
    n_padded = (n_features + 7) // 8 * 8  # xp, xw are whole rows, possibly wider
    mp = padded_means(means, n_padded)
    for k in range(n_components):
        for d in range(n_features):
            mp[k, d] -= centre[d]
    acc1 = np.zeros((n_components, 1, n_padded))
    acc2 = np.zeros((1 if tied else n_components, n_padded, n_padded))
    part_S1 = np.zeros((2, n_components, n_features))
    part_S2 = np.zeros((2, acc2.shape[0], n_features, n_features))
    for _ in range(2):  # two tiles of one block: the move to m_k applies to the block's sums
        copy_rows_centred(X, t0, nt, centre, xp)
        for k in range(n_components):
            weighted_moments_centred(xp, nt, mp, k, wr[k], xw, acc1[k], acc2[0 if tied else k])
    add_block_moments_centred(acc1, acc2, mp, part_S1, part_S2, 1)
    return part_S1, part_S2, acc1, acc2


def _upper_cholesky_of_precision(cov):
    return np.stack([np.linalg.inv(np.linalg.cholesky(c)).T for c in cov])


@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("n_features", [1, 5, 16, 21])
def test_shifted_quadratic_forms(n_features, offset):
    rng = np.random.default_rng(n_features)
    n_components, t0 = 3, 4
    X = offset + rng.normal(size=(t0 + TILE + 3, n_features))
    means = offset + rng.normal(scale=3.0, size=(n_components, n_features))
    A = rng.normal(size=(n_components, n_features, n_features))
    prec = _upper_cholesky_of_precision(A @ A.transpose(0, 2, 1) + n_features * np.eye(n_features))
    prec += np.tril(rng.normal(size=prec.shape), -1)  # below the diagonal: must be ignored
    for nt in (TILE, 45, 1):
        for k in range(n_components):
            q, centre = _shifted_forms(X, t0, nt, means, prec, k)
            expected = (((X[t0 : t0 + nt] - means[k]) @ np.triu(prec[k])) ** 2).sum(axis=1)
            # rounding of the shared centring: eps |m_k - c| |U| per term of y
            np.testing.assert_allclose(q[:nt], expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(centre, means.mean(axis=0), rtol=1e-15)


@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("n_features", [3, 8, 16, 24, 33])
@pytest.mark.parametrize("tied", [False, True])
def test_centred_moments(n_features, tied, offset):
    rng = np.random.default_rng(300 + n_features)
    n_components, t0 = 3, 5
    X = offset + 3.0 + rng.normal(size=(t0 + TILE + 2, n_features))
    means = offset + 3.0 + rng.normal(size=(n_components, n_features))
    wr = rng.random((n_components, TILE))
    wr[1, ::3] = 0.0
    for nt in (TILE, 37, 1):
        part_S1, part_S2, acc1, acc2 = _centred_moments(X, t0, nt, means, wr, tied)
        rows = X[t0 : t0 + nt]
        S2_expected = np.zeros((1 if tied else n_components, n_features, n_features))
        for k in range(n_components):
            centred = rows - means[k]
            w = 2.0 * wr[k, :nt]  # the same tile twice
            np.testing.assert_allclose(
                part_S1[1, k], w @ centred, rtol=1e-12, atol=1e-12 * (np.abs(w) @ np.abs(centred)).max()
            )
            S2_expected[0 if tied else k] += (centred * w[:, None]).T @ centred
        upper = np.triu(np.ones((n_features, n_features), dtype=bool))
        scale = np.abs(S2_expected).max()
        np.testing.assert_allclose(
            part_S2[1][:, upper], S2_expected[:, upper], rtol=1e-12, atol=1e-13 * scale
        )
        assert not part_S2[1][:, ~upper].any()  # only the upper triangle is written
        assert not part_S1[0].any() and not part_S2[0].any()  # other blocks untouched
        assert not acc1.any() and not acc2.any()  # zeroed for the next block


def _pass(X, means, U, log_norm, cov_code):
    n_components, n_features = means.shape
    R = np.zeros(n_components)
    S1 = np.zeros((n_components, n_features))
    S2 = np.zeros((U.shape[0], n_features, n_features))
    scalars = np.array([0.0, 0.0, np.inf, 0.0])
    none = np.zeros(0)
    _gaussian_pass(
        X, none, log_norm, means, U, cov_code, True, 0, R, S1, S2, scalars, np.zeros(1, dtype=np.int64),
        np.zeros(n_features), none, np.zeros(0, dtype=np.int64), np.zeros((0, n_components)),
    )  # fmt: skip
    return R, S1, S2, scalars[0]


def _reference_pass(X, means, U, log_norm):
    n_components = means.shape[0]
    logp = np.stack(
        [
            log_norm[k] - 0.5 * (((X - means[k]) @ U[min(k, U.shape[0] - 1)]) ** 2).sum(1)
            for k in range(n_components)
        ],
        axis=1,
    )
    mx = logp.max(axis=1, keepdims=True)
    p = np.exp(logp - mx)
    total = p.sum(axis=1, keepdims=True)
    resp = p / total
    R = resp.sum(0)
    S1 = np.stack([resp[:, k] @ (X - means[k]) for k in range(n_components)])
    S2 = np.stack([((X - means[k]) * resp[:, k : k + 1]).T @ (X - means[k]) for k in range(n_components)])
    if U.shape[0] == 1:
        S2 = S2.sum(axis=0, keepdims=True)
    return R, S1, S2, float((mx[:, 0] + np.log(total[:, 0])).sum())


@pytest.mark.parametrize("n_features", [16, 20])
@pytest.mark.parametrize("layout", ["overlapping", "offset", "far_apart"])
@pytest.mark.parametrize("tied", [False, True])
def test_full_pass_matches_formulas_around_each_mean(n_features, layout, tied):
    """R, S1, S2 around m_k and the log-likelihood of a whole pass (several blocks) within 1e-12 relative."""
    rng = np.random.default_rng(7)
    n_samples, n_components = 9000, 4
    centres = rng.normal(scale=2.0, size=(n_components, n_features))
    if layout == "offset":
        centres += 1e4
    elif layout == "far_apart":  # components hundreds of sd from the shared centre
        centres[0] += 300.0
        centres[1] -= 300.0
    X = centres[rng.integers(0, n_components, n_samples)] + rng.normal(size=(n_samples, n_features))
    means = centres + 0.3 * rng.normal(size=centres.shape)
    A = rng.normal(size=(n_components, n_features, n_features)) / np.sqrt(n_features)
    cov = A @ A.transpose(0, 2, 1) + np.eye(n_features)
    U = _upper_cholesky_of_precision(cov[:1] if tied else cov)
    log_norm = (
        np.log(np.full(n_components, 1.0 / n_components))
        + np.log(np.diagonal(U, axis1=1, axis2=2)).sum(1)
        - 0.5 * n_features * np.log(2 * np.pi)
    )
    got = _pass(X, means, U, log_norm, 1 if tied else 0)
    expected = _reference_pass(X, means, U, log_norm)
    upper = np.triu(np.ones((n_features, n_features), dtype=bool))
    for name, g, e in zip(("R", "S1", "S2"), got[:3], expected[:3], strict=True):
        if name == "S2":
            g, e = g[:, upper], e[:, upper]
        scale = np.abs(e).max(axis=-1, keepdims=True) if name != "R" else np.abs(e).max()
        assert np.all(np.abs(g - e) <= 1e-12 * scale), name
    assert abs(got[3] - expected[3]) <= 1e-12 * abs(expected[3])
