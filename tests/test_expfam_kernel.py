"""The linear exponential-family kernels against a plain-NumPy E-step written from the formulas.

Few compiled signatures on purpose (compile time dominates in CI): dense float64,
dense float32 and CSR float64 with int32 indices; weights and optional outputs
do not change the signature (absent ones are empty arrays).
"""

from __future__ import annotations

import itertools

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import gammaln

from fastem._kernels._config import BLOCK_ROWS
from fastem._kernels.expfam import _expfam_pass, _expfam_pass_csr, log_factorial_table

TABLE = log_factorial_table()
N_ROWS = 9001  # > 2 blocks, not a multiple of any tile size


def naive(X, w, theta, const, base_code):
    """R, S1, loglik sum, weight sum, per-row logprob (and the size of its terms), resp, label, worst."""
    X = np.asarray(X, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    w = np.ones(len(X)) if w is None else w
    a = X @ theta.T + const
    m = a.max(axis=1, keepdims=True)
    e = np.exp(a - m)
    lse = m[:, 0] + np.log(e.sum(axis=1))
    resp = e / e.sum(axis=1, keepdims=True)
    if base_code == 0:
        h = np.zeros(len(X))
    else:
        h = -gammaln(X + 1.0).sum(axis=1)
        if base_code == 2:
            h += gammaln(X.sum(axis=1) + 1.0)
    logprob = lse + h
    wr = w[:, None] * resp
    positive = w > 0
    return {
        "R": wr.sum(axis=0),
        "S1": wr.T @ X,
        "ll": np.sum(w[positive] * logprob[positive]),
        "w": w.sum(),
        "logprob": logprob,
        "scale": 1.0 + np.abs(lse) + np.abs(h),
        "resp": resp,
        "label": a.argmax(axis=1),
        "worst": int(np.argmin(np.where(positive, logprob, np.inf))),
    }


def buffers(n, d, k, outputs=True):
    """Accumulators and (optionally empty) outputs, in the kernels' argument order."""
    return {
        "R": np.zeros(k),
        "S1": np.zeros((k, d)),
        "scalars": np.array([0.0, 0.0, np.inf, 0.0]),
        "worst_index": np.zeros(1, dtype=np.int64),
        "worst_x": np.zeros(d),
        "logprob": np.empty(n if outputs else 0),
        "label": np.empty(n if outputs else 0, dtype=np.int64),
        "resp": np.empty((n, k) if outputs else (0, 0)),
    }


def run_dense(X, w, theta, const, code, accumulate=True, row_offset=0, out=None):
    n, d = X.shape
    out = buffers(n, d, theta.shape[0]) if out is None else out
    sw = np.empty(0) if w is None else w
    _expfam_pass(X, sw, theta, const, code, TABLE, accumulate, row_offset, *out.values())
    return out


def run_csr(A, w, theta, const, code, accumulate=True, row_offset=0):
    n, d = A.shape
    out = buffers(n, d, theta.shape[0])
    sw = np.empty(0) if w is None else w
    _expfam_pass_csr(
        A.data, A.indices, A.indptr, d, sw, theta, const, code, TABLE, accumulate, row_offset, *out.values()
    )
    return out


def make_case(n, d, k, code, weights, dtype=np.float64, seed=0):
    rng = np.random.default_rng([seed, n, d, k, code])
    if code == 0:  # real-valued rows (vMF/Bernoulli-like), overlapping components
        X = rng.normal(size=(n, d))
        theta = 2.0 * rng.normal(size=(k, d)) / np.sqrt(d)  # log-densities of order 1 to 10
    else:  # sparse-ish counts, a few beyond the log-factorial table
        X = rng.poisson(2.0, size=(n, d)) * (rng.uniform(size=(n, d)) < 0.6)
        X = X.astype(np.float64)
        X[rng.integers(0, n, 5), rng.integers(0, d, 5)] = 5000.0
        theta = 0.3 * rng.normal(size=(k, d))
    const = rng.normal(size=k)
    w = None
    if weights:
        w = rng.uniform(0.0, 3.0, size=n)
        w[rng.uniform(size=n) < 0.2] = 0.0
    return np.ascontiguousarray(X, dtype=dtype), w, theta.astype(dtype), const


def check_against_naive(got, ref, rtol):
    np.testing.assert_allclose(got["R"], ref["R"], rtol=rtol, atol=rtol * ref["R"].max())
    np.testing.assert_allclose(got["S1"], ref["S1"], rtol=rtol, atol=rtol * np.abs(ref["S1"]).max())
    np.testing.assert_allclose(got["scalars"][0], ref["ll"], rtol=rtol)
    np.testing.assert_allclose(got["scalars"][1], ref["w"], rtol=1e-15)
    assert got["scalars"][3] == len(ref["logprob"])
    # logprob = lse + h may cancel: errors relative to the size of the two parts
    assert np.all(np.abs(got["logprob"] - ref["logprob"]) <= rtol * ref["scale"])
    np.testing.assert_allclose(got["resp"], ref["resp"], rtol=rtol, atol=rtol)


@pytest.mark.parametrize(
    ("n_features", "n_components"), list(itertools.product([1, 3, 4, 5, 17, 50], [1, 2, 5, 20]))
)
@pytest.mark.parametrize("base_code", [0, 1, 2])
def test_dense_float64_matches_naive(n_features, n_components, base_code):
    weights = (n_features + n_components + base_code) % 2 == 0
    X, w, theta, const = make_case(N_ROWS, n_features, n_components, base_code, weights)
    got = run_dense(X, w, theta, const, base_code)
    ref = naive(X, w, theta, const, base_code)
    check_against_naive(got, ref, 1e-12)
    np.testing.assert_array_equal(got["label"], ref["label"])
    assert got["worst_index"][0] == ref["worst"]
    np.testing.assert_array_equal(got["worst_x"], X[ref["worst"]])
    np.testing.assert_allclose(got["scalars"][2], ref["logprob"][ref["worst"]], rtol=1e-12)


@pytest.mark.parametrize(
    ("n_features", "n_components", "base_code", "weights"),
    [(1, 2, 0, False), (5, 5, 1, True), (17, 20, 2, False), (50, 20, 0, True), (384, 50, 0, False)],
)
def test_dense_float32_matches_naive(n_features, n_components, base_code, weights):
    X, w, theta, const = make_case(N_ROWS, n_features, n_components, base_code, weights, dtype=np.float32)
    got = run_dense(X, w, theta, const, base_code)
    # the reference sees exactly the float32 values the kernel sees
    ref = naive(X, w, theta, const, base_code)
    check_against_naive(got, ref, 1e-5)


@pytest.mark.parametrize(
    ("n_features", "n_components", "base_code", "weights"),
    [(1, 1, 0, False), (3, 5, 1, True), (17, 2, 2, True), (50, 20, 1, False), (50, 20, 2, True)],
)
def test_csr_matches_dense(n_features, n_components, base_code, weights):
    X, w, theta, const = make_case(N_ROWS, n_features, n_components, base_code, weights)
    X[3] = 0.0  # an empty row
    X[:, n_features // 2] = 0.0  # a column that never occurs
    A = as_csr(X)
    dense = run_dense(X, w, theta, const, base_code, row_offset=7)
    sparse = run_csr(A, w, theta, const, base_code, row_offset=7)
    for name in ("R", "S1", "scalars", "logprob", "resp"):
        scale = np.abs(dense[name][np.isfinite(dense[name])]).max()
        np.testing.assert_allclose(sparse[name], dense[name], rtol=1e-12, atol=1e-12 * scale, err_msg=name)
    np.testing.assert_array_equal(sparse["label"], dense["label"])
    np.testing.assert_array_equal(sparse["worst_index"], dense["worst_index"])
    np.testing.assert_array_equal(sparse["worst_x"], dense["worst_x"])


def as_csr(X):
    """CSR with int32 indices (the one index type compiled by these tests)."""
    A = sp.csr_matrix(X)
    A.indices = A.indices.astype(np.int32)
    A.indptr = A.indptr.astype(np.int32)
    return A


def test_csr_many_waves_and_blocks():
    """More blocks than the CSR pass runs per wave: partials reused across waves, merged in order."""
    X, w, theta, const = make_case(17 * BLOCK_ROWS + 5, 3, 2, 2, True)
    dense = run_dense(X, w, theta, const, 2, row_offset=3)
    sparse = run_csr(as_csr(X), w, theta, const, 2, row_offset=3)
    for name in ("R", "S1", "scalars", "logprob"):
        np.testing.assert_allclose(sparse[name], dense[name], rtol=1e-12, err_msg=name)
    np.testing.assert_array_equal(sparse["worst_index"], dense["worst_index"])


def test_empty_input():
    X, w, theta, const = make_case(10, 4, 3, 1, False)
    out = run_dense(X[:0], None, theta, const, 1)
    assert out["scalars"].tolist() == [0.0, 0.0, np.inf, 0.0] and not out["S1"].any()
    out = run_csr(as_csr(X[:0]), None, theta, const, 1)
    assert out["scalars"].tolist() == [0.0, 0.0, np.inf, 0.0] and not out["S1"].any()


def _with_threads(n_threads, fn):
    previous = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        return fn()
    finally:
        numba.set_num_threads(previous)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
def test_results_do_not_depend_on_thread_count():
    X, w, theta, const = make_case(5 * BLOCK_ROWS + 17, 17, 5, 2, True)
    A = as_csr(X)
    for run in (
        lambda: run_dense(X, w, theta, const, 2),
        lambda: run_csr(A, w, theta, const, 2),
    ):
        one, two = _with_threads(1, run), _with_threads(2, run)
        for name in one:
            np.testing.assert_array_equal(one[name], two[name], err_msg=name)


def test_chunked_calls_reproduce_one_call():
    """Calls on pieces cut at block boundaries add up to the one-call result, bit for bit."""
    X, w, theta, const = make_case(3 * BLOCK_ROWS + 100, 5, 5, 1, True)
    whole = run_dense(X, w, theta, const, 1)
    pieces = buffers(len(X), 5, 5, outputs=False)
    for start in (0, 2 * BLOCK_ROWS):
        stop = start + 2 * BLOCK_ROWS
        run_dense(X[start:stop], w[start:stop], theta, const, 1, row_offset=start, out=pieces)
    for name in ("R", "S1", "scalars", "worst_index", "worst_x"):
        np.testing.assert_array_equal(pieces[name], whole[name], err_msg=name)


def test_no_accumulation_and_no_outputs():
    X, w, theta, const = make_case(1000, 5, 3, 0, False)
    out = buffers(len(X), 5, 3, outputs=False)
    run_dense(X, w, theta, const, 0, accumulate=False, out=out)
    ref = naive(X, w, theta, const, 0)
    assert not out["R"].any() and not out["S1"].any()
    np.testing.assert_allclose(out["scalars"][:2], [ref["ll"], ref["w"]], rtol=1e-12)


def test_impossible_components_and_rows():
    """A component at log-weight -inf gets exactly zero responsibility; a row with all -inf is -inf."""
    X, w, theta, const = make_case(500, 4, 3, 1, False)
    const = np.array([-np.inf, 0.0, 1.0])
    got = run_dense(X, w, theta, const, 1)
    ref = naive(X, w, theta, const, 1)
    assert np.all(got["resp"][:, 0] == 0.0) and got["R"][0] == 0.0 and not got["S1"][0].any()
    check_against_naive(got, ref, 1e-12)

    got = run_dense(X, w, theta, np.full(3, -np.inf), 1)
    assert np.all(got["logprob"] == -np.inf) and got["scalars"][0] == -np.inf
    np.testing.assert_array_equal(got["resp"], np.eye(3)[np.zeros(len(X), dtype=int)])
    np.testing.assert_array_equal(got["R"], [len(X), 0.0, 0.0])


def test_log_factorial_table():
    np.testing.assert_allclose(log_factorial_table(5000), gammaln(np.arange(5000) + 1.0), rtol=1e-15)
