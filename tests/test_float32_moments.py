"""The float32-sums M-step tile (``fastem._kernels.gaussian_moments32``) against NumPy formulas.

:func:`moments32` is called from a small jitted wrapper on random float32 rows with an offset (so
that centring matters), at 11 to 80 features (whole 16-lane groups, and padded ones whose feature
count is or is not a multiple of the 4 x 4 blocks), full and short tiles, with some zero weights;
then whole float32-sums passes at 13, 16, 40 and 64 features against the float64 formulas."""

from __future__ import annotations

import numpy as np
import pytest
import reference

from fastem._kernels._config import COV_CODES, jit
from fastem._kernels.gaussian_moments32 import (
    add_block_moments32,
    moment_buffers,
    moments32,
)
from fastem._kernels.gaussian_simd import load_tile_centred, shared_centre

#: the full/tied kernel's tile with float32 sums (gaussian.FLOAT32_SUMS_TILE_ROWS)
TILE32 = 256


@jit()
def _moments(X, t0, nt, means, wr, n_components, tied, n_tiles):
    # n_tiles tiles of the same rows and weights, as a block of several tiles would add them
    n_features = X.shape[1]
    xp, xw, mp = moment_buffers(TILE32, n_features, means, True)
    centre = shared_centre(means.astype(np.float64))
    # NaN past nt: must not be read; rows past the last feature zero, as the kernel pads them
    xe = np.full((xp.shape[1], TILE32 + 16), np.nan, dtype=np.float32)
    xe[n_features:] = 0.0
    load_tile_centred(X, t0, nt, centre, xe)
    acc1 = np.zeros((n_components, 1, xp.shape[1]))
    acc2 = np.zeros((1 if tied else n_components, xp.shape[1], xp.shape[1]))
    part_S1 = np.zeros((2, n_components, n_features))
    part_S2 = np.zeros((2, acc2.shape[0], n_features, n_features))
    for _ in range(n_tiles):
        for k in range(n_components):
            moments32(nt, mp, k, wr[k], xw, acc1[k], acc2[0 if tied else k], xe, centre)
    add_block_moments32(acc1, acc2, mp, centre, part_S1, part_S2, 1)
    return part_S1, part_S2


@pytest.mark.parametrize("n_features", [11, 16, 22, 32, 48, 60, 64, 80])
@pytest.mark.parametrize("tied", [False, True])
def test_moments32(n_features, tied):
    """S1, S2 around each float32 mean within 1e-5 of the sums of |terms| (for S2, of
    w (|x - c| + |m_k - c|) |x - m_k|: one factor is rounded as x - c; measured up to ~1e-6).

    Rows and means sit 3 away from 0 and the means 1 apart, so an uncentred or wrongly moved sum
    (S2 off by (m_k - c) S1) fails by far more than that.
    """
    rng = np.random.default_rng(300 + n_features)
    n_components, t0, n_tiles = 3, 5, 3
    X = (3.0 + rng.normal(size=(t0 + TILE32 + 2, n_features))).astype(np.float32)
    means = (3.0 + rng.normal(size=(n_components, n_features))).astype(np.float32)
    wr = rng.random((n_components, TILE32)).astype(np.float32)
    wr[1, ::3] = 0.0
    upper = np.triu(np.ones((n_features, n_features), dtype=bool))
    centre = means.astype(np.float64).mean(axis=0)
    for nt in (TILE32, 131, 1):
        part_S1, part_S2 = _moments(X, t0, nt, means, wr, n_components, tied, n_tiles)
        rows = X[t0 : t0 + nt].astype(np.float64)
        S2_expected = np.zeros((1 if tied else n_components, n_features, n_features))
        S2_scale = np.zeros_like(S2_expected)
        for k in range(n_components):
            centred = rows - means[k].astype(np.float64)
            w = wr[k, :nt].astype(np.float64)
            scale1 = n_tiles * (w @ np.abs(centred))
            err1 = np.abs(part_S1[1, k] - n_tiles * (w @ centred))
            assert np.all(err1 <= 1e-5 * scale1.max()), (err1 / scale1.max()).max()
            S2_expected[0 if tied else k] += n_tiles * (centred * w[:, None]).T @ centred
            # the broadcast factor carries a rounding of x - c (c the mean of the means), moved by m_k - c
            far = np.abs(rows - centre) + np.abs(means[k] - centre)
            S2_scale[0 if tied else k] += n_tiles * (far * w[:, None]).T @ np.abs(centred)
        got, want, scale = part_S2[1][:, upper], S2_expected[:, upper], S2_scale[:, upper]
        assert np.all(np.abs(got - want) <= 1e-5 * scale), (np.abs(got - want) / scale).max()
        assert np.all(np.isfinite(got))
        assert not part_S2[1][:, ~upper].any()  # only the upper triangle is written


@pytest.mark.parametrize("n_features", [13, 16, 40, 64])
@pytest.mark.parametrize("kind", ["full", "tied"])
def test_float32_sums_pass(kind, n_features):
    """Whole float32-sums passes through :func:`moments32` against the NumPy formulas in float64:
    R, S1 / R and S2 / R within 1e-5, over two blocks of rows, the last tile short, with an offset."""
    from fastem._kernels.gaussian import _gaussian_pass
    from fastem.families.gaussian import GaussianParams, GaussianStats

    K, D, N = 3, n_features, 4096 + 301
    rng = np.random.default_rng(11 + D)
    X = (5.0 + rng.normal(size=(N, D)) + 2.0 * rng.integers(0, K, size=(N, 1))).astype(np.float32)
    means = X[:K].astype(np.float64) + 0.1
    cov = np.tile(np.eye(D) + 0.3 * np.ones((D, D)), (1 if kind == "tied" else K, 1, 1))
    cov_arg = cov[0] if kind == "tied" else cov
    params = GaussianParams.from_covariances(kind, np.full(K, 1 / K), means, cov_arg)
    log_norm, m, prec = params.packed()
    stats = GaussianStats.zeros(kind, m)
    _gaussian_pass(X, np.zeros(0), log_norm, m, prec.astype(np.float32), COV_CODES[kind], True, 0, stats.R,
                   stats.S1, stats.S2, stats.scalars, stats.worst_index, stats.worst_x, np.zeros(0),
                   np.zeros(0, np.int64), np.zeros((0, K)), True)  # fmt: skip
    X64 = X.astype(np.float64)
    _, resp = reference.e_step(X64, np.full(K, 1 / K), means, cov_arg, kind)
    R = resp.sum(axis=0)
    centred = X64[:, None, :] - means[None]
    S1 = np.einsum("nk,nkd->kd", resp, centred)
    S2 = np.einsum("nk,nkd,nke->kde", resp, centred, centred)
    if kind == "tied":
        S2 = S2.sum(axis=0, keepdims=True)
    upper = np.triu_indices(D)
    np.testing.assert_allclose(stats.R, R, rtol=1e-5)
    np.testing.assert_allclose(stats.S1 / R[:, None], S1 / R[:, None], rtol=0, atol=1e-5)
    scale = R.sum() if kind == "tied" else R[:, None]
    got, want = stats.S2[:, upper[0], upper[1]] / scale, S2[:, upper[0], upper[1]] / scale
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_shift_of_full_moments_is_numpys_to_the_bit():
    """The compiled move of full-covariance moments to the float64 means gives the bits of the
    NumPy expression it replaced: S2 += (S1 delta^T + delta S1^T) + R delta delta^T, S1 += R delta."""
    from fastem._kernels.gaussian import _shift_partials

    rng = np.random.default_rng(7)
    K, D = 5, 48
    R = rng.uniform(1.0, 100.0, size=(1, K))
    S1 = rng.normal(size=(1, K, D))
    S2 = rng.normal(size=(1, K, D, D))
    delta = rng.normal(size=(K, D)) * 1e-7
    cross = S1[:, :, :, None] * delta[None, :, None, :]
    cross = cross + cross.transpose(0, 1, 3, 2)
    cross += R[:, :, None, None] * (delta[:, :, None] * delta[:, None, :])[None]
    expected_S2, expected_S1 = S2 + cross, S1 + R[:, :, None] * delta[None]
    _shift_partials(R, S1, S2, delta, 0)
    np.testing.assert_array_equal(S2, expected_S2)
    np.testing.assert_array_equal(S1, expected_S1)
