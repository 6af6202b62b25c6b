"""The explicit-vector full/tied tiles (``fastem._kernels.gaussian_simd``) against NumPy formulas.

Each tile function is called from a small jitted wrapper on random data, for
numbers of features that are and are not multiples of the vector blocks
(4 columns of U, 8 features), for full and partial tiles, float64 and float32.
The tiles are plain LLVM vector IR, so they run (if slowly) on hosts without
AVX-512 as well.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastem._kernels._config import jit
from fastem._kernels.gaussian_simd import (
    SIMD_MIN_FEATURES,
    SIMD_TILES,
    padded_precision,
    quadratic_form_rows,
)

TILE = 128
#: the full/tied kernel's tile with float32 sums (gaussian.FLOAT32_SUMS_TILE_ROWS)
TILE32 = 256


@jit()
def _quadratic_forms(xe, nt, prec, kp):
    upad = padded_precision(prec, xe.dtype, True)
    q = np.full(TILE, np.nan)
    quadratic_form_rows(xe, nt, upad, kp, q)
    return q, upad


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_features", [1, 2, 3, 4, 5, 8, 13, 16, 21])
def test_quadratic_form_rows(n_features, dtype):
    rng = np.random.default_rng(n_features)
    n_kp, kp = 3, 1
    prec = rng.normal(size=(n_kp, n_features, n_features))  # the part below the diagonal must be ignored
    xe = rng.normal(size=(n_features, TILE))
    U = np.triu(prec[kp])
    for nt in (TILE, 77, 1):
        q, upad = _quadratic_forms(xe.astype(dtype), nt, prec.astype(dtype), kp)
        X, P = xe.astype(dtype).astype(np.float64), np.triu(prec[kp].astype(dtype).astype(np.float64))
        expected = ((X[:, :nt].T @ P) ** 2).sum(axis=1)
        tol = 1e-13 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(q[:nt], expected, rtol=tol, atol=0)
        assert np.all(np.isfinite(q[:nt]))
    # U is copied upper-triangular, zero-padded to a multiple of 4 columns
    assert upad.shape == (n_kp, n_features, -(-n_features // 4) * 4)
    np.testing.assert_array_equal(upad[kp, :, :n_features], U.astype(dtype))
    assert not upad[:, :, n_features:].any()


_FIT_WITHOUT_AVX512 = """
import sys
import numpy as np
from fastem import GaussianMixture
from fastem._kernels.gaussian_simd import SIMD_TILES

assert not SIMD_TILES, "the child process was meant to compile without AVX-512"
X, means, precisions = (np.load(sys.argv[1])[key] for key in ("X", "means", "precisions"))
out = {}
for kind in ("full", "tied"):
    prec = precisions if kind == "full" else precisions[0]
    gm = GaussianMixture(3, covariance_type=kind, max_iter=5, tol=0, weights_init=np.full(3, 1 / 3),
                         means_init=means, precisions_init=prec, random_state=0)
    gm.fit(X)
    out[kind + "_means"], out[kind + "_cov"] = gm.means_, gm.covariances_
np.savez(sys.argv[2], **out)
"""


def test_full_and_tied_fits_on_a_host_without_avx512(tmp_path):
    """The loop-vectorised tiles (no AVX-512: SIMD_TILES false) give the fit the SIMD tiles give (1e-9)."""
    import os
    import subprocess
    import sys

    from fastem import GaussianMixture

    if not SIMD_TILES:
        pytest.skip("no AVX-512 here: this process would run the same loop-vectorised tiles as the child")
    rng = np.random.default_rng(7)
    d = SIMD_MIN_FEATURES + 1  # the parent process runs the SIMD tiles
    X = np.concatenate([rng.normal(c, 1.0, (700, d)) for c in (-3.0, 0.0, 3.0)]) @ rng.normal(size=(d, d))
    means = X[[0, 900, 1800]].copy()
    precision = np.linalg.inv(np.cov(X.T))
    precisions = np.repeat((precision + precision.T)[None] / 2, 3, axis=0)
    np.savez(tmp_path / "in.npz", X=X, means=means, precisions=precisions)
    env = dict(
        os.environ,
        NUMBA_CACHE_DIR=str(tmp_path / "cache"),  # kernels compiled for this CPU model only
        NUMBA_CPU_NAME="haswell",
        NUMBA_CPU_FEATURES="+64bit,+avx,+avx2,+fma,+sse4.2,+popcnt,+f16c,+bmi,+bmi2,+lzcnt,+movbe,-avx512f",
        FASTEM_COMPILE_NOTICE="0",
    )
    script = tmp_path / "fit.py"
    script.write_text(_FIT_WITHOUT_AVX512)
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
        env=env, check=True, timeout=600,
    )  # fmt: skip
    child = np.load(tmp_path / "out.npz")
    for kind in ("full", "tied"):
        prec = precisions if kind == "full" else precisions[0]
        gm = GaussianMixture(3, covariance_type=kind, max_iter=5, tol=0, weights_init=np.full(3, 1 / 3),
                             means_init=means, precisions_init=prec, random_state=0).fit(X)  # fmt: skip
        # the two tiles sum in different orders (1e-16); five EM iterations amplify that to ~1e-11
        np.testing.assert_allclose(child[kind + "_means"], gm.means_, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(child[kind + "_cov"], gm.covariances_, rtol=1e-9, atol=1e-12)
