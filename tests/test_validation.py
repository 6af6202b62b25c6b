"""Bad input: every case raises a ValueError (or NotFittedError) that names the problem."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from fastem import GaussianMixture

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return np.ascontiguousarray(np.vstack([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 5.0]))


@pytest.fixture
def fitted(data):
    return GaussianMixture(2, random_state=0).fit(data)


# ----------------------------------------------------------------------------- X itself
def test_nan_message_names_row_and_column(data):
    X = data.copy()
    X[7, 1] = np.nan
    X[9, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*row 7, column 1"):
        GaussianMixture(2).fit(X)


def test_nan_position_in_later_block():
    """The first non-finite value is reported even when it lies beyond the first row block."""
    X = np.random.default_rng(1).normal(size=(10_000, 3))
    X[9_000, 0] = np.nan
    X[5_000, 2] = np.inf
    with pytest.raises(ValueError, match=r"infinity.*row 5000, column 2"):
        GaussianMixture(2).fit(X)
    X32 = X.astype(np.float32)
    X32[5_000, 2] = 1.0
    with pytest.raises(ValueError, match=r"NaN.*row 9000, column 0"):
        GaussianMixture(2).fit(X32)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_inf_is_rejected(data, value):
    X = data.copy()
    X[3, 0] = value
    with pytest.raises(ValueError, match=r"infinity.*row 3, column 0"):
        GaussianMixture(2).fit(X)


def test_nan_at_predict_time(fitted, data):
    X = data[:10].copy()
    X[4, 1] = np.nan
    for method in ("predict", "predict_proba", "score_samples", "score"):
        with pytest.raises(ValueError, match=r"NaN.*row 4, column 1"):
            getattr(fitted, method)(X)


def test_1d_X(data):
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        GaussianMixture(2).fit(data[:, 0])


def test_3d_X(data):
    with pytest.raises(ValueError, match="dim 3"):
        GaussianMixture(2).fit(data.reshape(20, 4, 2))


def test_non_numeric_X():
    X = np.array([["a", "b"], ["c", "d"], ["e", "f"]], dtype=object)
    with pytest.raises(ValueError, match="could not convert string to float"):
        GaussianMixture(1).fit(X)
    with pytest.raises(ValueError, match="could not convert string to float"):
        GaussianMixture(1).fit(X.astype(str))


def test_complex_X(data):
    with pytest.raises(ValueError, match="[Cc]omplex"):
        GaussianMixture(2).fit(data + 1j)


def test_fewer_samples_than_components(data):
    with pytest.raises(ValueError, match=r"n_samples >= n_components.*n_components = 5, n_samples = 3"):
        GaussianMixture(5).fit(data[:3])


def test_single_sample():
    with pytest.raises(ValueError, match=r"1 sample\(s\).*minimum of 2"):
        GaussianMixture(1).fit(np.zeros((1, 2)))


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score"])
def test_wrong_feature_count_at_predict(fitted, method):
    X = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"X has 3 features.*expecting 2 features"):
        getattr(fitted, method)(X)


def test_warm_start_with_other_feature_count(data):
    gm = GaussianMixture(2, warm_start=True, random_state=0).fit(data)
    with pytest.raises(ValueError, match=r"3 features.*fitted with 2"):
        gm.fit(np.hstack([data, data[:, :1]]))


# ----------------------------------------------------------------------------- hyper-parameters
@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        ({"n_components": 0}, r"'n_components': 0\b.*>= 1"),
        ({"n_components": 1.5}, r"'n_components': 1\.5.*integer"),
        ({"covariance_type": "bogus"}, r"'covariance_type': 'bogus'.*'full', 'tied', 'diag', 'spherical'"),
        ({"tol": -1}, r"'tol': -1\b.*>= 0"),
        ({"tol": "small"}, r"'tol': 'small'"),
        ({"reg_covar": -1}, r"'reg_covar': -1\b.*>= 0"),
        ({"max_iter": -1}, r"'max_iter': -1\b.*>= 0"),
        ({"n_init": 0}, r"'n_init': 0\b.*>= 1"),
        (
            {"init_params": "bogus"},
            r"'init_params': 'bogus'.*'kmeans', 'k-means\+\+', 'random', 'random_from_data'",
        ),
        ({"n_jobs": 0}, r"'n_jobs': 0\b"),
        ({"n_jobs": 1.5}, r"'n_jobs': 1\.5"),
        ({"verbose": -1}, r"'verbose': -1\b"),
        ({"verbose_interval": 0}, r"'verbose_interval': 0\b"),
        ({"warm_start": "yes"}, r"'warm_start': 'yes'"),
    ],
)
def test_invalid_hyper_parameters(data, params, pattern):
    with pytest.raises(ValueError, match=pattern):
        GaussianMixture(**{"n_components": 2, **params}).fit(data)


def test_boundary_hyper_parameters_are_accepted(data):
    gm = GaussianMixture(1, tol=0.0, reg_covar=0.0, max_iter=0, n_init=1, n_jobs=-1).fit(data)
    assert gm.n_iter_ == 0


# ----------------------------------------------------------------------------- *_init arrays
GOOD_PREC = {
    "full": np.tile(np.eye(2), (2, 1, 1)),
    "tied": np.eye(2),
    "diag": np.ones((2, 2)),
    "spherical": np.ones(2),
}


@pytest.mark.parametrize(
    ("weights", "pattern"),
    [
        # scikit-learn's wording, then fastem's detail (which argument, what shape or fix)
        ([1.0], r"The parameter 'weights' should have the shape of \(2,\), but got \(1,\).*weights_init"),
        ([[0.5, 0.5]], r"The parameter 'weights' should have the shape of \(2,\), but got \(1, 2\)"),
        ([0.3, 0.3], r"The parameter 'weights' should be normalized, but got sum\(weights\) = 0\.60000"),
        (
            [1.5, -0.5],
            r"The parameter 'weights' should be in the range \[0, 1\].*smallest value .* is -0\.5",
        ),
        ([np.nan, 0.5], r"'weights_init'.*NaN"),
    ],
)
def test_bad_weights_init(data, weights, pattern):
    with pytest.raises(ValueError, match=pattern):
        GaussianMixture(2, weights_init=weights).fit(data)


@pytest.mark.parametrize(
    ("means", "pattern"),
    [
        (
            np.zeros((3, 2)),
            r"The parameter 'means' should have the shape of \(2, 2\), but got \(3, 2\).*means_init",
        ),
        (np.zeros((2, 3)), r"The parameter 'means' should have the shape of \(2, 2\), but got \(2, 3\)"),
        (np.zeros(2), r"The parameter 'means' should have the shape of \(2, 2\), but got \(2,\)"),
        ([[0.0, np.inf], [1.0, 1.0]], r"'means_init'.*infinity"),
    ],
)
def test_bad_means_init(data, means, pattern):
    with pytest.raises(ValueError, match=pattern):
        GaussianMixture(2, means_init=means).fit(data)


@pytest.mark.parametrize("cov_type", ["full", "tied", "diag", "spherical"])
def test_precisions_init_wrong_shape(data, cov_type):
    bad = np.ones(GOOD_PREC[cov_type].shape + (1,))
    expected = re.escape(str(GOOD_PREC[cov_type].shape))
    with pytest.raises(
        ValueError, match=rf"The parameter '{cov_type} precision' should have the shape of {expected}"
    ):
        GaussianMixture(2, covariance_type=cov_type, precisions_init=bad).fit(data)
    # the right shape is accepted
    GaussianMixture(2, covariance_type=cov_type, precisions_init=GOOD_PREC[cov_type], max_iter=2).fit(data)


@pytest.mark.parametrize("cov_type", ["full", "tied"])
def test_precisions_init_not_symmetric(data, cov_type):
    prec = GOOD_PREC[cov_type].copy()
    prec[..., 0, 1] = 0.5
    with pytest.raises(
        ValueError,
        match=rf"'{cov_type} precision' should be symmetric, positive-definite: .* is not symmetric",
    ):
        GaussianMixture(2, covariance_type=cov_type, precisions_init=prec).fit(data)


@pytest.mark.parametrize("cov_type", ["full", "tied"])
def test_precisions_init_not_positive_definite(data, cov_type):
    prec = GOOD_PREC[cov_type].copy()
    prec[..., 0, 1] = prec[..., 1, 0] = 2.0  # eigenvalues 3 and -1
    with pytest.raises(
        ValueError,
        match=rf"'{cov_type} precision' should be symmetric, positive-definite: .* not positive definite",
    ):
        GaussianMixture(2, covariance_type=cov_type, precisions_init=prec).fit(data)


@pytest.mark.parametrize("cov_type", ["diag", "spherical"])
def test_precisions_init_not_positive(data, cov_type):
    prec = GOOD_PREC[cov_type].copy()
    prec.flat[0] = 0.0
    with pytest.raises(ValueError, match=rf"'{cov_type} precision' should be positive: precisions_init"):
        GaussianMixture(2, covariance_type=cov_type, precisions_init=prec).fit(data)


# ----------------------------------------------------------------------------- sample_weight
@pytest.mark.parametrize(
    ("make_weight", "pattern"),
    [
        (lambda n: np.ones(n - 1), r"sample_weight.*\(79,\).*80 samples"),
        (lambda n: np.ones((n, 1)), r"sample_weight.*\(80, 1\)"),
        (lambda n: np.r_[-1.0, np.ones(n - 1)], r"sample_weight.*negative"),
        (lambda n: np.r_[np.nan, np.ones(n - 1)], r"sample_weight.*NaN"),
        (lambda n: np.r_[np.inf, np.ones(n - 1)], r"sample_weight.*infinity"),
        (lambda n: np.zeros(n), r"sample_weight.*sums to zero"),
    ],
)
def test_bad_sample_weight(data, make_weight, pattern):
    with pytest.raises(ValueError, match=pattern):
        GaussianMixture(2).fit(data, sample_weight=make_weight(len(data)))


# ----------------------------------------------------------------------------- not fitted
@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score", "bic", "aic"])
def test_not_fitted(data, method):
    with pytest.raises(NotFittedError):
        getattr(GaussianMixture(2), method)(data)


def test_sample_not_fitted_and_bad_n_samples(fitted):
    with pytest.raises(NotFittedError):
        GaussianMixture(2).sample(3)
    with pytest.raises(ValueError, match="'n_samples': 0"):
        fitted.sample(0)


# ----------------------------------------------------------------------------- failed fit is atomic
FITTED_ATTRIBUTES = (
    "weights_",
    "means_",
    "covariances_",
    "precisions_",
    "precisions_cholesky_",
    "converged_",
    "n_iter_",
    "lower_bound_",
    "lower_bounds_",
    "n_features_in_",
)


def _snapshot(gm):
    return {name: np.array(getattr(gm, name), copy=True) for name in FITTED_ATTRIBUTES}


def _assert_unchanged(gm, snapshot):
    assert set(FITTED_ATTRIBUTES) <= set(vars(gm))
    for name, value in snapshot.items():
        assert np.array_equal(np.asarray(getattr(gm, name)), value), name


FAR_POINTS = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]])


def _collapse_during_em(gm, X):
    """Init succeeds; the first M-step gives exactly zero covariances (reg_covar=0)."""
    gm.set_params(
        n_components=4,
        reg_covar=0.0,
        weights_init=np.full(4, 0.25),
        means_init=FAR_POINTS,
        precisions_init=np.tile(np.eye(2), (4, 1, 1)),
    )
    return gm.fit(np.repeat(FAR_POINTS, 3, axis=0))


def _with_nan(X):
    X = X.copy()
    X[5, 1] = np.nan
    return X


@pytest.mark.parametrize(
    "bad_fit",
    [
        pytest.param(lambda gm, X: gm.fit(_with_nan(X)), id="nan"),
        pytest.param(lambda gm, X: gm.fit(X[:, 0]), id="1d"),
        pytest.param(lambda gm, X: gm.set_params(n_components=0).fit(X), id="n_components"),
        pytest.param(lambda gm, X: gm.set_params(covariance_type="bogus").fit(X), id="cov_type"),
        pytest.param(lambda gm, X: gm.set_params(means_init=np.zeros((3, 3))).fit(X), id="means_init"),
        pytest.param(lambda gm, X: gm.set_params(n_components=200).fit(X), id="too-few-samples"),
        pytest.param(lambda gm, X: gm.fit(X, sample_weight=-np.ones(len(X))), id="sample_weight"),
        pytest.param(
            lambda gm, X: gm.set_params(n_components=4, reg_covar=0.0).fit(np.repeat(X[:4], 3, axis=0)),
            id="ill-defined-covariance-at-init",
        ),
        pytest.param(_collapse_during_em, id="ill-defined-covariance-during-em"),
    ],
)
def test_failed_fit_leaves_fitted_estimator_unchanged(data, bad_fit):
    gm = GaussianMixture(2, random_state=0).fit(data)
    snapshot = _snapshot(gm)
    params = gm.get_params()
    with pytest.raises(ValueError):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bad_fit(gm, data)
    _assert_unchanged(gm, snapshot)
    # still usable, and predicting exactly as a fresh fit with the same parameters
    gm.set_params(**params)
    assert np.array_equal(gm.predict_proba(data), GaussianMixture(**params).fit(data).predict_proba(data))


def test_failed_predict_leaves_estimator_unchanged(fitted, data):
    snapshot = _snapshot(fitted)
    with pytest.raises(ValueError):
        fitted.predict(np.zeros((3, 5)))
    _assert_unchanged(fitted, snapshot)


def test_fit_does_not_modify_inputs(data):
    X = data.copy()
    sw = np.linspace(0.5, 2.0, len(X))
    sw_copy = sw.copy()
    GaussianMixture(2, random_state=0).fit(X, sample_weight=sw)
    assert np.array_equal(X, data)
    assert np.array_equal(sw, sw_copy)
