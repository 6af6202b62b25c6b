"""scikit-learn's own ``GaussianMixture`` tests, run against ``fastem.GaussianMixture``.

Every public ``test_*`` function of the installed scikit-learn's
``sklearn/mixture/tests/test_gaussian_mixture.py`` is collected here as it is,
with its parametrisation and marks. Its functions look ``GaussianMixture`` up
in their own module's globals, so an autouse fixture points that name at
fastem's class while each test runs (``monkeypatch`` restores it after). The
two fixtures scikit-learn's ``conftest.py`` provides (``global_dtype``,
``global_random_seed``) are defined below with the same meaning. Tests of
scikit-learn's private implementation are excluded in ``EXCLUDED``, each with
its reason.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastem

sk_tests = pytest.importorskip(
    "sklearn.mixture.tests.test_gaussian_mixture", reason="scikit-learn is installed without its tests"
)

#: scikit-learn tests not run here, and why
EXCLUDED = {
    # --- they test scikit-learn's private functions only; no estimator is involved
    "test_suffstat_sk_full": (
        "sklearn's private _estimate_gaussian_covariances_full and _compute_precision_cholesky"
    ),
    "test_suffstat_sk_tied": (
        "sklearn's private _estimate_gaussian_covariances_tied and _compute_precision_cholesky"
    ),
    "test_suffstat_sk_diag": (
        "sklearn's private _estimate_gaussian_covariances_diag and _compute_precision_cholesky"
    ),
    "test_gaussian_suffstat_sk_spherical": "sklearn's private _estimate_gaussian_covariances_spherical",
    "test_compute_log_det_cholesky": "sklearn's private _compute_log_det_cholesky",
    "test_gaussian_mixture_log_probabilities": "sklearn's private _estimate_log_gaussian_prob",
    # --- they call private methods of scikit-learn's estimator or its module
    "test_gaussian_mixture_precisions_init": "calls the private GaussianMixture._initialize, _set_parameters",
    "test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters": (
        "counts calls of sklearn's private _estimate_gaussian_parameters (one per M-step); fastem has none"
    ),
    # --- array API dispatch (scikit-learn skips both unless SCIPY_ARRAY_API=1 and array-api-compat)
    "test_gaussian_mixture_array_api_compliance": (
        "array API inputs (torch, CuPy, array-api-strict): fastem's numba kernels take NumPy arrays only"
    ),
    "test_gaussian_mixture_raises_where_array_api_not_implemented": (
        "expects sklearn's NotImplementedError for init_params under array_api_dispatch, which fastem ignores"
    ),
}
# Kept although they touch private names: test_gaussian_mixture_n_parameters and
# test_gaussian_mixture_aic_bic call _n_parameters(), which fastem implements with the same
# meaning; test_gaussian_mixture_precisions_init_diag uses sklearn's private
# _estimate_gaussian_parameters only to compute its expected precisions from the data.

SKLEARN_TESTS = sorted(
    name for name, obj in vars(sk_tests).items() if name.startswith("test_") and callable(obj)
)

globals().update({name: getattr(sk_tests, name) for name in SKLEARN_TESTS if name not in EXCLUDED})


class _CastToInputDtype(fastem.GaussianMixture):
    """fastem's estimator returning float32 parameters and log-likelihoods for float32 data.

    fastem keeps its parameters and ``score_samples`` in float64 for float32
    data (its statistics accumulate in float64, by design); scikit-learn keeps
    X's dtype and its ``global_dtype`` float32 variants assert it. For those
    variants only, this subclass casts the results, so that every other
    assertion runs on fastem's float32 path.
    """

    def fit(self, X, y=None, **kwargs):
        super().fit(X, y, **kwargs)
        if getattr(X, "dtype", None) == np.float32:
            for name in self._model_arrays:
                setattr(self, name, getattr(self, name).astype(np.float32))
        return self

    def score_samples(self, X, **kwargs):
        log_prob = super().score_samples(X, **kwargs)
        return log_prob.astype(np.float32) if getattr(X, "dtype", None) == np.float32 else log_prob


_CastToInputDtype.__name__ = _CastToInputDtype.__qualname__ = "GaussianMixture"  # the messages name it


def _random_seeds() -> list[int]:
    """scikit-learn's SKLEARN_TESTS_GLOBAL_RANDOM_SEED convention: 42, 'all' (0-99), 'a-b' or 'a'."""
    value = os.environ.get("SKLEARN_TESTS_GLOBAL_RANDOM_SEED")
    if value is None:
        return [42]
    if value == "all":
        return list(range(100))
    start, _, stop = value.partition("-")
    return list(range(int(start), int(stop or start) + 1))


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def global_dtype(request):
    """scikit-learn's fixture (it runs float32 only with SKLEARN_RUN_FLOAT32_TESTS=1; here always)."""
    return request.param


@pytest.fixture(params=_random_seeds())
def global_random_seed(request):
    return request.param


@pytest.fixture(autouse=True)
def _fastem_gaussian_mixture(request, monkeypatch):
    """Point the scikit-learn test module's ``GaussianMixture`` at fastem's for this test."""
    cls = fastem.GaussianMixture
    if "global_dtype" in request.fixturenames and request.getfixturevalue("global_dtype") == np.float32:
        cls = _CastToInputDtype
    monkeypatch.setattr(sk_tests, "GaussianMixture", cls)


def test_sklearn_tests_see_fastem_class():
    """The swap reaches the name scikit-learn's tests use (else they would test scikit-learn)."""
    assert sk_tests.GaussianMixture is fastem.GaussianMixture
    est = sk_tests.GaussianMixture(n_components=2)
    assert type(est).__module__ == "fastem.mixture"


def test_excluded_tests_exist_and_the_rest_are_collected():
    """The exclusion list names real tests, so a scikit-learn update cannot leave it stale unnoticed."""
    assert set(EXCLUDED) <= set(SKLEARN_TESTS)
    collected = {name for name in SKLEARN_TESTS if name in globals()}
    assert collected == set(SKLEARN_TESTS) - set(EXCLUDED)
    assert len(collected) >= 30
