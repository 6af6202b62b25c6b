"""The diag/spherical pass and its tile helpers (``fastem._kernels.tile_rows``) against NumPy.

The helpers replace two per-row costs of the diag/spherical kernel: the scalar
libm ``log`` of the log-sum-exp (:func:`log_rows`, a vectorisable log) and the
strided gathers of the tile transposition (:func:`load_tile`, 8 x 8
register blocks for float64 rows). The whole pass is held to the plain-NumPy
reference EM (tests/reference.py) at 1e-12 relative, for diag and spherical,
float64 and float32 rows, with and without sample weights, and for feature and
row counts that leave partial 8 x 8 blocks and a short last tile.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference

from fastem._kernels._config import COV_CODES, jit
from fastem._kernels.gaussian import _gaussian_pass
from fastem._kernels.tile_rows import load_tile, log_rows
from fastem.families.gaussian import GaussianParams, GaussianStats

TILE = 256


@jit()
def _log_rows(s, mx):
    lse = np.empty_like(s)
    mant = np.empty_like(s)
    log_rows(s, mx, lse, s.shape[0], mant)
    return lse


@jit()
def _transposed(X, sample_weight, t0, nt):
    xt = np.full((X.shape[1], TILE), np.nan, dtype=X.dtype)
    w = np.full(TILE, np.nan)
    load_tile(X, sample_weight, t0, nt, xt, w)
    return xt, w


@jit()
def _transposed_wide(X, sample_weight, t0, nt):
    # float64 tile of any rows, as the Student-t kernel loads float32 rows
    xt = np.full((X.shape[1], TILE), np.nan)
    w = np.full(TILE, np.nan)
    load_tile(X, sample_weight, t0, nt, xt, w)
    return xt, w


def test_log_rows_matches_libm():
    rng = np.random.default_rng(0)
    # the sums of exponentials the kernel takes logs of lie in [1, K]; also far outside
    s = np.concatenate([
        1.0 + rng.random(500) * 63.0,
        np.exp(rng.uniform(-700.0, 700.0, 500)),
        [1.0, 2.0, 0.5, np.sqrt(2.0), np.nextafter(np.sqrt(2.0), 0.0), np.nextafter(np.sqrt(2.0), 3.0),
         np.nextafter(1.0, 2.0), np.nextafter(1.0, 0.0), 2.2250738585072014e-308, 1.7e308],
    ])  # fmt: skip
    got = _log_rows(s, np.zeros_like(s))
    np.testing.assert_allclose(got, np.log(s), rtol=3e-16, atol=0)
    mx = rng.normal(scale=50.0, size=s.shape)
    # mx + log s may cancel: one rounding of the sum, relative to its terms
    assert (np.abs(_log_rows(s, mx) - (mx + np.log(s))) <= 4e-16 * (np.abs(mx) + np.abs(np.log(s)))).all()
    assert _log_rows(np.ones(3), np.full(3, -np.inf))[0] == -np.inf  # every density -inf


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_features", [3, 8, 13, 16])
def test_tile_transposition(n_features, dtype):
    rng = np.random.default_rng(n_features)
    X = rng.normal(size=(TILE + 40, n_features)).astype(dtype)
    sw = rng.random(X.shape[0])
    for t0, nt in [(0, TILE), (5, TILE), (TILE, 37), (3, 8), (1, 5)]:
        xt, w = _transposed(X, sw, t0, nt)
        np.testing.assert_array_equal(xt[:, :nt], X[t0 : t0 + nt].T)
        assert np.isnan(xt[:, nt:]).all()  # nothing written past the tile's rows
        np.testing.assert_array_equal(w[:nt], sw[t0 : t0 + nt])
    _, w = _transposed(X, np.zeros(0), 0, 7)
    np.testing.assert_array_equal(w[:7], 1.0)
    for t0, nt in [(0, TILE), (5, 37)]:
        xt, _ = _transposed_wide(X, sw, t0, nt)
        np.testing.assert_array_equal(xt[:, :nt], X[t0 : t0 + nt].T.astype(np.float64))


def test_tile_transposition_strided_rows():
    X = np.random.default_rng(1).normal(size=(60, 24))[:, ::2]  # unit stride lost: element by element
    xt, _ = _transposed(X, np.zeros(0), 3, 41)
    np.testing.assert_array_equal(xt[:, :41], X[3:44].T)


def _kernel_pass(X, sw, params, outputs):
    log_norm, means, prec = params.packed()
    kind = params.covariance_type
    K, D = means.shape
    stats = GaussianStats.zeros(kind, means)
    n = X.shape[0]
    out = (np.empty(n), np.empty(n, np.int64), np.empty((n, K))) if outputs else (
        np.zeros(0), np.zeros(0, np.int64), np.zeros((0, K)))  # fmt: skip
    sw = np.zeros(0) if sw is None else sw
    _gaussian_pass(X, sw, log_norm, means, prec.astype(X.dtype), COV_CODES[kind], True, 0, stats.R, stats.S1,
                   stats.S2, stats.scalars, stats.worst_index, stats.worst_x, *out)  # fmt: skip
    return stats, out


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("kind", "n_features"), [("diag", 3), ("diag", 8), ("diag", 11), ("spherical", 8)])
def test_pass_matches_reference(kind, n_features, dtype, weighted):
    """R, S1, S2, the log-likelihoods, labels and responsibilities of one pass, from the formulas."""
    rng = np.random.default_rng(n_features + 10 * weighted)
    K, N = 4, 4096 + 1000 + 5  # two blocks; a short last tile whose length is not a multiple of 8
    centres = 3.0 * rng.normal(size=(K, n_features))
    X = (centres[rng.integers(0, K, size=N)] + rng.normal(size=(N, n_features))).astype(dtype)
    sw = rng.uniform(0.5, 2.0, N) if weighted else None
    means = X[rng.choice(N, K, replace=False)].astype(np.float64) + 0.1
    var = rng.uniform(0.5, 2.0, size=(K, n_features) if kind == "diag" else K)
    if dtype == np.float32:
        # the kernel reads the precisions' Cholesky factors in the data's precision: the reference
        # takes the variances those float32 factors stand for, so both compute the same densities
        var = 1.0 / np.float32(1.0 / np.sqrt(var)).astype(np.float64) ** 2
    weights = rng.dirichlet(np.ones(K))
    params = GaussianParams.from_covariances(kind, weights, means, var)
    _, _, prec = params.packed()
    if dtype == np.float32:  # as above: exactly the factors the reference's variances stand for
        np.testing.assert_allclose(prec.astype(np.float32), prec, rtol=1e-15)
    stats, (logprob, label, resp) = _kernel_pass(X, sw, params, outputs=True)

    X64 = X.astype(np.float64)
    want_logprob, want_resp = reference.e_step(X64, weights, means, var, kind)
    wr = want_resp * (np.ones(N) if sw is None else sw)[:, None]
    centred = X64[:, None, :] - means[None]  # (N, K, D): moments around the means the pass was given
    R = wr.sum(axis=0)
    S1 = np.einsum("nk,nkd->kd", wr, centred)
    S2 = np.einsum("nk,nkd->kd", wr, centred**2)
    rtol = 1e-12
    np.testing.assert_allclose(logprob, want_logprob, rtol=rtol)
    np.testing.assert_allclose(resp, want_resp, rtol=rtol, atol=1e-15)
    np.testing.assert_array_equal(label, np.argmax(want_logprob[:, None] * 0 + reference.log_gaussian(
        X64, means, var, kind) + np.log(weights), axis=1))  # fmt: skip
    np.testing.assert_allclose(stats.R, R, rtol=rtol)
    # S1 sums terms of both signs: relative to the sum of their magnitudes
    scale = np.einsum("nk,nkd->kd", wr, np.abs(centred))
    np.testing.assert_allclose(stats.S1, S1, rtol=0, atol=rtol * scale.max())
    np.testing.assert_allclose(stats.S2[:, 0, :], S2, rtol=rtol)
    total_weight = N if sw is None else sw.sum()
    ll = reference.mean_log_likelihood(want_logprob, sw)
    assert stats.scalars[0] / stats.scalars[1] == pytest.approx(ll, rel=rtol)
    assert stats.scalars[1] == pytest.approx(total_weight, rel=1e-14)
    worst = int(np.argmin(want_logprob))
    assert stats.worst_index[0] == worst and stats.scalars[2] == pytest.approx(want_logprob[worst], rel=rtol)


def test_pass_point_beyond_every_density():
    """A row so far away that every log-density is -inf: log-likelihood -inf, hard assignment, no NaN."""
    rng = np.random.default_rng(2)
    K, D, N = 3, 8, 300
    X = rng.normal(size=(N, D))
    X[17] = 1e200
    params = GaussianParams.from_covariances(
        "diag", np.full(K, 1 / K), rng.normal(size=(K, D)), np.ones((K, D))
    )
    stats, (logprob, label, resp) = _kernel_pass(X, None, params, outputs=True)
    assert logprob[17] == -np.inf and label[17] == 0
    np.testing.assert_array_equal(resp[17], [1.0, 0.0, 0.0])
    assert np.isfinite(np.delete(logprob, 17)).all() and not np.isnan(resp).any()
    assert stats.worst_index[0] == 17 and stats.scalars[2] == -np.inf
    assert not np.isnan(stats.R).any() and not np.isnan(stats.S1).any()
