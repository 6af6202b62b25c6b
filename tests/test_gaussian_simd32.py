"""The float32 E-step tile (``fastem._kernels.gaussian_simd32``) against NumPy formulas, and float32-sums
fits with many features against the float64 reference EM (tests/reference.py).

The tile is plain LLVM vector IR, so it runs (if slowly) on hosts without AVX-512 as well.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import reference

from fastem import GaussianMixture
from fastem._kernels._config import jit
from fastem._kernels.gaussian_simd import (
    load_tile_centred,
    padded_precision,
    quadratic_form_rows,
    shared_centre,
    shifted_means,
)
from fastem._kernels.gaussian_simd32 import quadratic_form_rows32, tile_quadratic_forms

#: the full/tied kernel's tile with float32 sums (gaussian.FLOAT32_SUMS_TILE_ROWS)
TILE32 = 256


@jit()
def _forms(xe, nt, prec, kp, means_acc):
    """(q from quadratic_form_rows32, q from tile_quadratic_forms for ``means_acc``'s dtype, q from
    the float64-squares kernel), NaN where not written."""
    upad = padded_precision(prec, xe.dtype, True)
    q32 = np.full(TILE32, np.nan)
    quadratic_form_rows32(xe, nt, upad, kp, upad[0, :0, :], 0, q32)
    q_dispatched = np.full(TILE32, np.nan)
    tile_quadratic_forms(xe, nt, upad, kp, upad[0, :0, :], 0, q_dispatched, means_acc)
    q_wide = np.full(TILE32, np.nan)
    quadratic_form_rows(xe, nt, upad, kp, q_wide)
    return q32, q_dispatched, q_wide


def _expected(xe, prec, kp, nt):
    """sum_j ((x - m)^T U)_j^2 in float64 from the float32 inputs, and the same with |x|, |U| (a scale
    for the float32 roundings)."""
    X, U = xe[:, :nt].astype(np.float64), np.triu(prec[kp].astype(np.float64))
    return ((X.T @ U) ** 2).sum(axis=1), ((np.abs(X).T @ np.abs(U)) ** 2).sum(axis=1)


@pytest.mark.parametrize("n_features", [3, 16, 19, 64])
def test_quadratic_form_rows32(n_features):
    rng = np.random.default_rng(n_features)
    n_kp, kp = 3, 2
    # the part below the diagonal must be ignored
    prec = rng.normal(size=(n_kp, n_features, n_features)).astype(np.float32)
    xe = np.zeros((n_features, TILE32 + 16), dtype=np.float32)  # a tile row is 16 lanes longer
    xe[:, :TILE32] = 3.0 * rng.normal(size=(n_features, TILE32))
    for nt in (TILE32, 100, 1):
        q32, q_narrow, q_wide = _forms(xe, nt, prec, kp, np.zeros((1, 1), dtype=np.float32))
        expected, scale = _expected(xe, prec, kp, nt)
        assert np.all(np.isfinite(q32[:nt]))
        assert np.all(np.abs(q32[:nt] - expected) <= 1e-5 * scale)
        np.testing.assert_allclose(q32[:nt], expected, rtol=1e-4)
        # float32 sums: the float32-squares tile, bit for bit
        np.testing.assert_array_equal(q_narrow[:nt], q32[:nt])
        # as close to the float64-squares kernel as either is to the exact values
        assert np.all(np.abs(q32[:nt] - q_wide[:nt]) <= 1e-5 * scale)
        # float64 sums of float32 data: the float64-squares kernel as before, bit for bit
        _, q_default, _ = _forms(xe, nt, prec, kp, np.zeros((1, 1)))
        np.testing.assert_array_equal(q_default[:nt], q_wide[:nt])


@jit()
def _shifted_forms32(X, nt, means32, prec, k):
    """q from quadratic_form_rows32 on a float32 tile centred once on the shared centre (as the
    kernel does with float32 sums), with the component's shift."""
    centre = shared_centre(means32)
    upad = padded_precision(prec, X.dtype, True)
    shift = shifted_means(means32, centre, upad)
    xe = np.zeros((X.shape[1], TILE32 + 16), dtype=X.dtype)
    load_tile_centred(X, 0, nt, centre, xe)
    q = np.full(TILE32, np.nan)
    quadratic_form_rows32(xe, nt, upad, 0 if prec.shape[0] == 1 else k, shift, k, q)
    return q


@pytest.mark.parametrize("offset", [0.0, 1e3])
@pytest.mark.parametrize("n_features", [3, 16, 64])
def test_shifted_quadratic_form_rows32(n_features, offset):
    """||(x - m_k)^T U_k||^2 from the shared-centre tile: float32 accuracy relative to the spread
    of x - m_k and m_k - c (the values the tile holds), for components 4 sd apart."""
    rng = np.random.default_rng(50 + n_features)
    n_components = 4
    means32 = (offset + 4.0 * rng.normal(size=(n_components, n_features))).astype(np.float32)
    X = (means32[1] + rng.normal(size=(TILE32, n_features))).astype(np.float32)
    chol = np.tril(rng.uniform(-0.2, 0.2, size=(n_components, n_features, n_features)))
    chol[:, np.arange(n_features), np.arange(n_features)] = rng.uniform(0.8, 1.2, (n_components, n_features))
    prec = np.ascontiguousarray(np.transpose(chol, (0, 2, 1))).astype(np.float32)  # upper U_k
    for k in range(n_components):
        for nt in (TILE32, 37):
            q = _shifted_forms32(X, nt, means32, prec, k)
            U = np.triu(prec[k].astype(np.float64))
            y = (X[:nt].astype(np.float64) - means32[k].astype(np.float64)) @ U
            centre = means32.astype(np.float64).mean(axis=0)
            held = np.abs(X[:nt].astype(np.float64) - centre) @ np.abs(U)  # |x - c| |U|, per column
            scale = ((np.abs(y) + held) ** 2).sum(axis=1)
            assert np.all(np.isfinite(q[:nt]))
            assert np.all(np.abs(q[:nt] - (y**2).sum(axis=1)) <= 2e-6 * scale)


def test_overflowing_block_sums_are_recomputed_in_float64():
    """Standardized values above 9.2e18 overflow a float32 block sum of squares: those rows get q in
    float64."""
    n_features, kp = 16, 0
    rng = np.random.default_rng(3)
    prec = np.triu(rng.uniform(0.5, 1.0, size=(1, n_features, n_features))).astype(np.float32)
    xe = np.zeros((n_features, TILE32 + 16), dtype=np.float32)
    xe[:, :TILE32] = rng.normal(size=(n_features, TILE32))
    far = [0, 5, 77, 130]
    xe[:, far] = 3e19  # y_j = 3e19 * (a sum of entries of U): y_j^2 > 3.4e38
    nt = 140
    q32, _, q_wide = _forms(xe, nt, prec, kp, np.zeros((1, 1), dtype=np.float32))
    expected, scale = _expected(xe, prec, kp, nt)
    assert np.all(np.isfinite(q32[:nt])) and np.all(q32[far] > 1e39)
    assert np.all(np.abs(q32[:nt] - expected) <= 1e-5 * scale)
    np.testing.assert_allclose(q32[:nt], q_wide[:nt], rtol=1e-5)


def _well_separated(n_rows, n_features, n_components, seed):
    rng = np.random.default_rng(seed)
    centres = 6.0 * rng.normal(size=(n_components, n_features))
    labels = rng.integers(0, n_components, n_rows)
    mixing = np.eye(n_features) + 0.3 * rng.normal(size=(n_features, n_features)) / np.sqrt(n_features)
    X = 5.0 + centres[labels] + rng.normal(size=(n_rows, n_features)) @ mixing
    return X.astype(np.float32), [int(np.argmax(labels == k)) for k in range(n_components)]


@pytest.mark.parametrize("kind", ["full", "tied"])
@pytest.mark.parametrize("n_features", [16, 48])
def test_float32_sums_fit_with_many_features_near_the_float64_reference(kind, n_features):
    """From 16 features the E-step runs on the explicit-vector tiles (on AVX-512 hosts; 48 features also
    the float32 M-step vectors): the fitted parameters stay within 1e-5 relative of the float64 EM of the
    same float32 rows from the same start (tests/test_float32_accumulation.py's tolerance)."""
    n_components = 3
    X32, one_row_each = _well_separated(3000, n_features, n_components, seed=n_features)
    X64 = X32.astype(np.float64)
    start = reference.explicit_init(X64, one_row_each, kind)  # a row of each cluster
    for n_iter in (1, 3):
        (w, m, c), _ = reference.run_em(X64, start["weights"], start["means"], start["covariances"], kind,
                                        n_iter, 1e-6)  # fmt: skip
        gm = GaussianMixture(n_components, covariance_type=kind, tol=0.0, max_iter=n_iter, reg_covar=1e-6,
                             accumulation="float32", **start["kwargs"])  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # not converged: expected
            gm.fit(X32)
        got = (gm.weights_, gm.means_, gm.covariances_)
        assert all(np.all(np.isfinite(a)) for a in got)
        worst = max(
            float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in zip(got, (w, m, c), strict=True)
        )
        assert worst < 1e-5, (kind, n_features, n_iter, worst)
