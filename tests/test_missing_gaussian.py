"""Exact EM with missing entries (NaN) for Gaussian mixtures, at the family level, against
:mod:`tests.reference_missing` (row by row from the formulas).

Small problems on purpose (compile time dominates): D = 5 exercises the
four-wide loops of the quadratic form and the outer products and their tails;
one test spans several blocks; two have D > 62 (hashed pattern keys); one mixes
the kernel's two tile layouts (frequent patterns alone, the rest row by row) in a block.
"""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pytest
import reference as ref
import reference_missing as rm
from reference import COV_TYPES

from fastem._kernels._config import BLOCK_ROWS
from fastem.families.gaussian import GaussianFamily, GaussianParams

RTOL = 1e-10


def make_data(n_samples, n_features=5, n_components=3, seed=0, offset=0.0):
    """(X, labels): correlated Gaussian clusters, well apart."""
    rng = np.random.RandomState(seed)
    centres = 4.0 * rng.standard_normal((n_components, n_features))
    shapes = rng.standard_normal((n_components, n_features, n_features)) * 0.4 + np.eye(n_features)
    labels = rng.randint(n_components, size=n_samples)
    noise = np.einsum("nij,nj->ni", shapes[labels], rng.standard_normal((n_samples, n_features)))
    return np.ascontiguousarray(offset + centres[labels] + noise), labels


def with_holes(X, rate, seed=1, single_observed=5):
    """MCAR holes at ``rate``; the first ``single_observed`` rows keep a single observed entry."""
    rng = np.random.RandomState(seed)
    Xm = rm.mcar(X, rate, rng)
    for i in range(min(single_observed, len(X))):
        keep = i % X.shape[1]
        Xm[i] = np.nan
        Xm[i, keep] = X[i, keep]
    return Xm


def start(X, kind, rows=(0, 7, 19)):
    """Initial parameters (reference format) from complete rows of X, and the same as GaussianParams."""
    init = ref.explicit_init(X, list(rows), kind)
    params = GaussianParams.from_covariances(kind, init["weights"], init["means"], init["covariances"])
    return init, params


def family_em(X, sample_weight, params, n_iter, kind, reg_covar=1e-6):
    """n_iter EM iterations through the family: (fitted parameters with covariances, lower bounds)."""
    family = GaussianFamily(kind, reg_covar, missing="marginalize")
    bounds = []
    for _ in range(n_iter):
        stats = family.zero_stats(params)
        family.accumulate(X, sample_weight, params, stats)
        bounds.append(stats.mean_log_likelihood)
        params, emptied = family.m_step(stats)
        assert emptied == []
    return params.filled(), np.array(bounds)


def assert_close(actual, expected, rtol=RTOL, what=""):
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = np.abs(expected).max()
    err = np.abs(actual - expected).max() / scale
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:g}"


@pytest.mark.parametrize("kind", COV_TYPES)
@pytest.mark.parametrize(("n_iter", "rate", "weighted"), [(1, 0.1, False), (10, 0.3, True), (50, 0.2, False),
                                                           (50, 0.5, True)])  # fmt: skip
def test_em_matches_reference(kind, n_iter, rate, weighted):
    X, _ = make_data(150, seed=3)
    Xm = with_holes(X, rate)
    init, params = start(X, kind)
    sw = np.random.RandomState(2).uniform(0.2, 3.0, len(X)) if weighted else None
    fitted, bounds = family_em(Xm, sw, params, n_iter, kind)
    (weights, means, cov), ref_bounds = rm.em_missing(
        Xm, init["weights"], init["means"], init["covariances"], kind, n_iter, 1e-6, sw
    )
    assert_close(fitted.weights, weights, what="weights")
    assert_close(fitted.means, means, what="means")
    assert_close(fitted.covariances, cov, what="covariances")
    assert_close(bounds, ref_bounds, what="lower bounds")
    # the free energy (observed-data log-likelihood) never decreases
    assert np.all(np.diff(bounds) >= -1e-12 * np.abs(bounds[1:])), np.diff(bounds).min()


def _check_pass_against_reference(Xm, sw, init, params, kind):
    """One E-step + statistics pass over ``Xm`` against the row-by-row NumPy reference: per-row
    log-likelihoods, responsibilities and labels, then the M-step's parameters. Returns the pass's
    statistics and the reference log-likelihoods."""
    n, n_components = Xm.shape[0], init["weights"].shape[0]
    family = GaussianFamily(kind, 1e-6, missing="marginalize")
    stats = family.zero_stats(params)
    logprob, label, resp = np.empty(n), np.empty(n, dtype=np.int64), np.empty((n, n_components))
    family.accumulate(Xm, sw, params, stats, 0, logprob, label, resp)
    log_prob, ref_resp, xhat, cond_cov = rm.e_step_missing(
        Xm, init["weights"], init["means"], init["covariances"], kind
    )
    assert_close(logprob, log_prob, what="log-likelihoods")
    assert_close(resp, ref_resp, what="responsibilities")
    top = np.sort(ref_resp, axis=1)
    clear = top[:, -1] - top[:, -2] > 1e-9
    np.testing.assert_array_equal(label[clear], ref_resp.argmax(axis=1)[clear])
    weights, means, cov = rm.m_step_missing(ref_resp, xhat, cond_cov, 1e-6, kind, sw)
    fitted = family.m_step(stats)[0].filled()
    assert_close(fitted.weights, weights, what="weights")
    assert_close(fitted.means, means, what="means")
    assert_close(fitted.covariances, cov, what="covariances")
    return stats, log_prob


@pytest.mark.parametrize("kind", COV_TYPES)
def test_several_blocks_and_outputs(kind):
    """Rows over three blocks, per-row outputs and the sums of one E-step against the reference."""
    n = 2 * BLOCK_ROWS + 333
    X, _ = make_data(n, n_features=4, n_components=2, seed=5, offset=1e3)
    Xm = with_holes(X, 0.25)
    init, params = start(X, kind, rows=(0, 1))
    sw = np.random.RandomState(0).uniform(0.0, 2.0, n)
    stats, log_prob = _check_pass_against_reference(Xm, sw, init, params, kind)
    family = GaussianFamily(kind, 1e-6, missing="marginalize")
    # an emptied component would be re-seeded at the worst row: it is completed, never NaN
    assert np.all(np.isfinite(stats.worst_x))
    worst = int(stats.worst_index[0])
    assert worst == int(np.argmin(np.where(sw > 0, log_prob, np.inf)))
    assert_close(stats.worst_x, family.impute(Xm[worst : worst + 1], params)[0], what="worst_x")


def test_many_features_hashed_patterns():
    """D > 62: patterns are grouped by a hash and exact comparison."""
    X, _ = make_data(90, n_features=66, n_components=2, seed=7)
    Xm = X.copy()
    rng = np.random.RandomState(0)
    holes = [rng.choice(66, size=s, replace=False) for s in (1, 3, 40)]
    for i in range(len(X)):
        Xm[i, holes[i % 3]] = np.nan
    Xm[5, 63:] = np.nan  # beyond bit 62
    for kind in ("full", "diag"):
        init, params = start(X, kind, rows=(0, 1))
        fitted, bounds = family_em(Xm, None, params, 2, kind)
        (weights, means, cov), ref_bounds = rm.em_missing(
            Xm, init["weights"], init["means"], init["covariances"], kind, 2, 1e-6
        )
        assert_close(fitted.means, means, what=f"{kind} means")
        assert_close(fitted.covariances, cov, what=f"{kind} covariances")
        assert_close(bounds, ref_bounds, what=f"{kind} lower bounds")


@pytest.mark.parametrize("kind", ["full", "tied"])
def test_frequent_and_rare_patterns_in_one_block(kind):
    """Both tile layouts of the kernel in one block, shuffled together, with the per-row outputs in row order.

    Patterns with at least ``_LONG_RUN`` rows in a block get tiles of their own (rows in the SIMD lanes:
    here 300 rows, three tiles, the last one partial, and exactly ``_LONG_RUN`` rows); the others
    (``_LONG_RUN - 1`` rows, MCAR rows of many patterns, complete rows) share tiles in row order
    (components in the lanes).
    """
    from fastem._kernels.gaussian_missing import _LONG_RUN

    n, d = BLOCK_ROWS + 700, 6
    X, _ = make_data(n, n_features=d, n_components=3, seed=31, offset=50.0)
    rng = np.random.RandomState(4)
    Xm = rm.mcar(X, 0.2, rng)
    sizes = {(0,): 300, (1, 4): _LONG_RUN, (2, 3, 5): _LONG_RUN - 1}
    rows = rng.permutation(BLOCK_ROWS)  # all in the first block
    at = 0
    for cols, size in sizes.items():
        chosen = rows[at : at + size]
        Xm[chosen] = X[chosen]
        Xm[np.ix_(chosen, cols)] = np.nan
        at += size
    Xm[rows[at : at + 400]] = X[rows[at : at + 400]]  # complete rows between them
    init, params = start(X, kind, rows=(3, 9, 27))
    sw = rng.uniform(0.5, 1.5, n)
    sw[rows[:5]] = 0.0  # weightless rows of the long pattern: never the worst row
    stats, log_prob = _check_pass_against_reference(Xm, sw, init, params, kind)
    worst = int(stats.worst_index[0])
    assert worst == int(np.argmin(np.where(sw > 0, log_prob, np.inf)))


@pytest.mark.parametrize("kind", ["full", "tied"])
def test_many_components_row_by_row(kind):
    """K = 9: the row-by-row conditional means, the per-pattern factorisation and Lambda_MM^-1 run with the
    components in the SIMD lanes (a full vector of eight and a remainder); below eight components they are
    summed per component (the other tests)."""
    X, _ = make_data(240, n_features=5, n_components=9, seed=17)
    Xm = with_holes(X, 0.3)
    init, params = start(X, kind, rows=tuple(range(0, 240, 27)))
    fitted, bounds = family_em(Xm, None, params, 3, kind)
    (weights, means, cov), ref_bounds = rm.em_missing(
        Xm, init["weights"], init["means"], init["covariances"], kind, 3, 1e-6
    )
    assert_close(fitted.weights, weights, what="weights")
    assert_close(fitted.means, means, what="means")
    assert_close(fitted.covariances, cov, what="covariances")
    assert_close(bounds, ref_bounds, what="lower bounds")


def test_many_features_frequent_pattern_hashed():
    """D = 70: one pattern of 40 missing coordinates (some beyond bit 62) on enough rows for tiles of its own,
    the other rows MCAR (hashed keys, mostly distinct patterns)."""
    n, d = 160, 70
    X, _ = make_data(n, n_features=d, n_components=2, seed=8)
    rng = np.random.RandomState(2)
    Xm = rm.mcar(X, 0.3, rng)
    frequent = np.sort(rng.choice(d, size=40, replace=False))
    frequent[-1] = d - 1
    rows = rng.choice(n, size=70, replace=False)
    Xm[rows] = X[rows]
    Xm[np.ix_(rows, frequent)] = np.nan
    init, params = start(X, "full", rows=(0, 1))
    fitted, bounds = family_em(Xm, None, params, 2, "full")
    (weights, means, cov), ref_bounds = rm.em_missing(
        Xm, init["weights"], init["means"], init["covariances"], "full", 2, 1e-6
    )
    assert_close(fitted.means, means, what="means")
    assert_close(fitted.covariances, cov, what="covariances")
    assert_close(bounds, ref_bounds, what="lower bounds")


@pytest.mark.parametrize("kind", COV_TYPES)
def test_without_nan_bitwise_identical_to_error(kind):
    X, _ = make_data(BLOCK_ROWS + 100, seed=4)
    _, params = start(X, kind)
    results = []
    for missing in ("error", "marginalize"):
        family = GaussianFamily(kind, 1e-6, missing=missing)
        stats = family.zero_stats(params)
        n = len(X)
        outs = (np.empty(n), np.empty(n, dtype=np.int64), np.empty((n, 3)))
        family.accumulate(X, None, params, stats, 0, *outs)
        results.append([stats.R, stats.S1, stats.S2, stats.scalars, stats.worst_x, *outs])
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def _with_threads(n_threads, fn):
    previous = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        return fn()
    finally:
        numba.set_num_threads(previous)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
@pytest.mark.parametrize("kind", ["full", "diag"])
def test_results_do_not_depend_on_thread_count(kind):
    X, _ = make_data(3 * BLOCK_ROWS + 17, seed=6)
    Xm = with_holes(X, 0.15)
    _, params = start(X, kind)
    family = GaussianFamily(kind, 1e-6, missing="marginalize")

    def run():
        stats = family.zero_stats(params)
        resp = np.empty((len(X), 3))
        family.accumulate(Xm, None, params, stats, 0, out_resp=resp)
        return stats.R, stats.S1, stats.S2, stats.scalars, resp

    for a, b in zip(_with_threads(1, run), _with_threads(2, run), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["full", "spherical"])
def test_float32_rows(kind):
    """float32 rows with NaN: read into float64 tiles, so the fit matches the float64 reference at 1e-10."""
    X, _ = make_data(200, seed=8)
    Xm = with_holes(X, 0.2).astype(np.float32)
    init, params = start(X, kind)
    fitted, bounds = family_em(Xm, None, params, 5, kind)
    (weights, means, cov), ref_bounds = rm.em_missing(
        Xm.astype(np.float64), init["weights"], init["means"], init["covariances"], kind, 5, 1e-6
    )
    assert_close(fitted.means, means, what="means")
    assert_close(fitted.covariances, cov, what="covariances")
    assert_close(bounds, ref_bounds, what="lower bounds")


@pytest.mark.parametrize("kind", COV_TYPES)
def test_impute_matches_reference(kind):
    X, _ = make_data(120, seed=9)
    Xm = with_holes(X, 0.3)
    init, params = start(X, kind)
    family = GaussianFamily(kind, 1e-6, missing="marginalize")
    filled = family.impute(Xm, params)
    expected = rm.impute_reference(Xm, init["weights"], init["means"], init["covariances"], kind)
    assert_close(filled, expected, what="imputed rows")
    observed = ~np.isnan(Xm)
    np.testing.assert_array_equal(filled[observed], Xm[observed])
    assert not np.isnan(filled).any()
    assert np.isnan(Xm).any()  # the input is not modified
    filled32 = family.impute(Xm.astype(np.float32), params)
    assert filled32.dtype == np.float32
    assert_close(filled32, expected, rtol=1e-6, what="float32 imputed rows")


def test_ill_conditioned_covariance_stays_exact():
    """Nearly collinear features (correlation 1 - 1e-8): conditional means via the precision stay accurate."""
    rng = np.random.RandomState(11)
    z = rng.standard_normal((300, 1))
    X = np.hstack([z, z + 1e-4 * rng.standard_normal((300, 1)), rng.standard_normal((300, 3))])
    Xm = X.copy()
    Xm[::3, 1] = np.nan
    Xm[1::3, 0] = np.nan
    init, params = start(X, "full", rows=(0, 1))
    family = GaussianFamily("full", 0.0, missing="marginalize")
    stats = family.zero_stats(params)
    logprob = np.empty(len(X))
    family.accumulate(Xm, None, params, stats, 0, logprob)
    log_prob, *_ = rm.e_step_missing(Xm, init["weights"], init["means"], init["covariances"], "full")
    assert_close(logprob, log_prob, rtol=1e-8, what="log-likelihoods")
    filled = family.impute(Xm, params)
    expected = rm.impute_reference(Xm, init["weights"], init["means"], init["covariances"], "full")
    assert_close(filled, expected, rtol=1e-8, what="imputed rows")


def test_first_invalid_lets_nan_through():
    family = GaussianFamily("full", missing="marginalize")
    X = np.ones((10, 3))
    X[2, 1] = np.nan
    assert family.first_invalid(X) is None
    X[7, 2] = np.inf
    bad = family.first_invalid(X)
    assert (bad.row, bad.column, bad.what) == (7, 2, "infinity")
    X[4] = np.nan
    bad = family.first_invalid(X)
    assert bad.row == 4 and bad.column == -1 and "every entry is NaN" in bad.what
    assert "Drop the rows" in bad.fix
    strict = GaussianFamily("full")
    assert strict.first_invalid(X).what == "NaN"


def test_config_and_for_fit_keep_the_setting():
    assert GaussianFamily("diag").config == {"covariance_type": "diag"}
    family = GaussianFamily("diag", missing="marginalize")
    assert family.config == {"covariance_type": "diag", "missing": "marginalize"}
    assert family.for_fit(3, 2).missing == "marginalize"
    with pytest.raises(ValueError, match="missing must be one of"):
        GaussianFamily("full", missing="drop")


def test_initial_params_with_holes():
    X, _ = make_data(400, seed=12)
    Xm = with_holes(X, 0.2)
    family = GaussianFamily("full", 1e-6, missing="marginalize")
    params = family.initial_params(
        Xm, None, n_components=3, init_params="kmeans", random_state=np.random.RandomState(0)
    )
    assert np.all(np.isfinite(params.means)) and np.all(np.isfinite(params.precisions_cholesky))


@pytest.mark.parametrize("kind", COV_TYPES)
def test_few_patterns_match_reference(kind):
    """Three patterns (one with a single observed entry): long runs of one pattern, rows in the SIMD lanes."""
    X, _ = make_data(150, seed=13)
    Xm = X.copy()
    patterns = ([1], [0, 2], [0, 1, 2, 3])
    for i in range(len(X)):
        Xm[i, patterns[i % 3]] = np.nan
    Xm[-10:] = X[-10:]  # and a few complete rows
    init, params = start(X, kind, rows=(1, 2, 149))
    sw = np.random.RandomState(3).uniform(0.5, 1.5, len(X))
    fitted, bounds = family_em(Xm, sw, params, 10, kind)
    (weights, means, cov), ref_bounds = rm.em_missing(
        Xm, init["weights"], init["means"], init["covariances"], kind, 10, 1e-6, sw
    )
    assert_close(fitted.weights, weights, what="weights")
    assert_close(fitted.means, means, what="means")
    assert_close(fitted.covariances, cov, what="covariances")
    assert_close(bounds, ref_bounds, what="lower bounds")


# ---------------------------------------------------------------- through the estimator
@pytest.mark.parametrize("kind", COV_TYPES)
def test_estimator_matches_reference(kind):
    from fastem import GaussianMixture

    X, _ = make_data(150, seed=3)
    Xm = with_holes(X, 0.2)
    init, _ = start(X, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged after 10 iterations: expected
        gm = GaussianMixture(3, covariance_type=kind, missing="marginalize", tol=0.0, max_iter=10,
                             **init["kwargs"]).fit(Xm)  # fmt: skip
    (weights, means, cov), bounds = rm.em_missing(
        Xm, init["weights"], init["means"], init["covariances"], kind, 10, 1e-6
    )
    assert_close(gm.weights_, weights, what="weights")
    assert_close(gm.means_, means, what="means")
    assert_close(gm.covariances_, cov, what="covariances")
    expected = rm.impute_reference(Xm, gm.weights_, gm.means_, gm.covariances_, kind)
    assert_close(gm.impute(Xm), expected, what="imputed rows")
    scores = rm.score_samples_missing(Xm, gm.weights_, gm.means_, gm.covariances_, kind)
    assert_close(gm.score_samples(Xm), scores, what="score_samples")


def test_marginalising_beats_dropping_rows_and_column_means():
    """20% MCAR on a well-separated mixture: the means come out closer to the truth than from the complete
    rows alone, and the imputed entries closer to the hidden values than column means."""
    from fastem import GaussianMixture

    X, labels = make_data(3000, n_features=5, n_components=3, seed=21)
    truth = np.stack([X[labels == k].mean(axis=0) for k in range(3)])
    Xm = rm.mcar(X, 0.2, np.random.RandomState(4))
    complete = ~np.isnan(Xm).any(axis=1)
    assert 0.25 < complete.mean() < 0.45  # most rows have a hole

    def mean_error(model):
        order = [int(np.argmin(((model.means_ - t) ** 2).sum(axis=1))) for t in truth]
        assert sorted(order) == [0, 1, 2]
        return float(np.abs(model.means_[order] - truth).max())

    kw = dict(covariance_type="full", random_state=0, n_init=2)
    marginal = GaussianMixture(3, missing="marginalize", **kw).fit(Xm)
    dropped = GaussianMixture(3, **kw).fit(Xm[complete])
    assert mean_error(marginal) < 0.7 * mean_error(dropped), (mean_error(marginal), mean_error(dropped))
    holes = np.isnan(Xm)
    rmse = np.sqrt(np.mean((marginal.impute(Xm)[holes] - X[holes]) ** 2))
    column_means = np.where(holes, np.nanmean(Xm, axis=0), Xm)
    rmse_columns = np.sqrt(np.mean((column_means[holes] - X[holes]) ** 2))
    assert rmse < 0.5 * rmse_columns, (rmse, rmse_columns)
