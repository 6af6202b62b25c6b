"""The four linear families against the NumPy oracle, their input rules and their estimator surface."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import reference_families as rf
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

import fastem
from fastem import (
    BernoulliMixture,
    DegenerateParameterWarning,
    MultinomialMixture,
    PoissonMixture,
    VonMisesFisherMixture,
)

ESTIMATORS = {
    "poisson": (PoissonMixture, ("rates",)),
    "bernoulli": (BernoulliMixture, ("probabilities",)),
    "multinomial": (MultinomialMixture, ("probabilities",)),
    "vmf": (VonMisesFisherMixture, ("mean_directions", "concentrations")),
}
FAMILIES = tuple(ESTIMATORS)
RTOL = 1e-10


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture(scope="module")
def data(family):
    X, labels, truth = rf.REGISTRY[family]["make"](600, 0)
    weights, params = rf.REGISTRY[family]["explicit_init"](X, [0, 1, 2])
    return X, labels, truth, weights, params


def _explicit(family, weights, params, **kw):
    cls, names = ESTIMATORS[family]
    init = {f"{name}_init": params[name] for name in names}
    return cls(3, weights_init=weights, **init, **kw)


def _fit_quietly(est, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, **kw)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_iter", [1, 10, 50])
def test_parity_with_the_numpy_oracle(family, data, n_iter, weighted):
    X, _, _, w0, p0 = data
    sw = np.random.default_rng(3).uniform(0.2, 2.0, len(X)) if weighted else None
    est = _fit_quietly(_explicit(family, w0, p0, tol=0, max_iter=n_iter), X, sample_weight=sw)
    (w, p), lower_bounds = rf.REGISTRY[family]["run_em"](X, w0, p0, n_iter, sample_weight=sw)
    assert est.n_iter_ == n_iter and est.converged_ is False
    assert_allclose(est.weights_, w, rtol=RTOL)
    for name in ESTIMATORS[family][1]:
        assert_allclose(getattr(est, f"{name}_"), p[name], rtol=RTOL, atol=1e-300)
    assert_allclose(est.lower_bounds_, lower_bounds, rtol=RTOL)
    log_prob, resp = rf.REGISTRY[family]["e_step"](X, w, p)
    assert_allclose(est.score_samples(X), log_prob, rtol=RTOL)
    assert_allclose(est.score(X), log_prob.mean(), rtol=RTOL)
    assert_allclose(est.predict_proba(X), resp, rtol=1e-9, atol=1e-13)
    assert_array_equal(est.predict(X), resp.argmax(axis=1))


def test_log_likelihood_never_decreases(family, data):
    X, _, _, w0, p0 = data
    est = _fit_quietly(_explicit(family, w0, p0, tol=0, max_iter=100), X)
    steps = np.diff(est.lower_bounds_)
    assert np.all(steps >= -1e-12 * np.abs(est.lower_bounds_[1:])), steps.min()
    assert est.lower_bounds_[-1] > est.lower_bounds_[0] + 0.01  # EM did move


def test_estimator_surface(family, data):
    X, _, _, _, _ = data
    cls, names = ESTIMATORS[family]
    est = _fit_quietly(cls(3, random_state=0, n_init=2), X)
    assert est.converged_
    n_params = {"poisson": 3 * 6 + 2, "bernoulli": 3 * 8 + 2, "multinomial": 3 * 9 + 2, "vmf": 3 * 4 + 3 + 2}
    assert est._n_parameters() == n_params[family]
    ll = est.score(X) * len(X)
    assert_allclose(est.bic(X), -2 * ll + n_params[family] * np.log(len(X)))
    assert_allclose(est.aic(X), -2 * ll + 2 * n_params[family])
    samples, labels = est.sample(500)
    assert samples.shape == (500, X.shape[1]) and labels.shape == (500,)
    assert est.predict(samples).shape == (500,)
    # warm start continues from the fitted parameters and never lowers the bound
    before = est.lower_bound_
    est.set_params(warm_start=True, max_iter=5)
    _fit_quietly(est, X)
    assert est.lower_bound_ >= before - 1e-9
    # clone/get_params as scikit-learn expects
    from sklearn.base import clone

    assert clone(est).get_params() == est.get_params()


@pytest.mark.parametrize("family_name", ["poisson", "bernoulli", "multinomial"])
def test_parameters_recovered_from_synthetic_data(family_name):
    X, labels, (w_true, p_true) = rf.REGISTRY[family_name]["make"](6000, 1)
    cls, names = ESTIMATORS[family_name]
    est = _fit_quietly(cls(3, random_state=0, n_init=3, tol=1e-6), X)
    name = names[0]
    fitted, truth = getattr(est, f"{name}_"), p_true[name]
    order = [int(np.argmin(((fitted - t) ** 2).sum(axis=1))) for t in truth]
    assert sorted(order) == [0, 1, 2]
    assert_allclose(fitted[order], truth, rtol=0.15, atol=0.03)
    assert_allclose(est.weights_[order], w_true, atol=0.03)


def test_vmf_recovers_directions_and_keeps_float32():
    X, labels, (w_true, p_true) = rf.make_vmf(6000, 2, D=8)
    est = _fit_quietly(VonMisesFisherMixture(3, random_state=0, n_init=2, tol=1e-8), X)
    mu = est.mean_directions_
    order = [int(np.argmax(mu @ t)) for t in p_true["mean_directions"]]
    assert sorted(order) == [0, 1, 2]
    assert np.all(np.einsum("kd,kd->k", mu[order], p_true["mean_directions"]) > 0.99)
    # float32 data: the same fit to float32 accuracy, without a float64 copy of X
    X32 = X.astype(np.float32)
    X32 /= np.linalg.norm(X32, axis=1, keepdims=True)
    init = {"weights_init": est.weights_, "mean_directions_init": est.mean_directions_,
            "concentrations_init": est.concentrations_}  # fmt: skip
    a = _fit_quietly(VonMisesFisherMixture(3, tol=0, max_iter=3, **init), X)
    b = _fit_quietly(VonMisesFisherMixture(3, tol=0, max_iter=3, **init), X32)
    assert_allclose(b.concentrations_, a.concentrations_, rtol=1e-4)
    assert_allclose(b.mean_directions_, a.mean_directions_, atol=1e-5)
    assert b.mean_directions_.dtype == np.float64


def test_vmf_normalize_option():
    X, _, _ = rf.make_vmf(400, 3, D=5)
    scaled = X * np.random.default_rng(0).uniform(0.5, 3.0, (len(X), 1))
    with pytest.raises(ValueError, match=r"norm .* at row 0.*normalize=True"):
        VonMisesFisherMixture(2).fit(scaled)
    init = {"weights_init": [0.5, 0.5], "mean_directions_init": X[:2], "concentrations_init": [1.0, 1.0]}
    a = _fit_quietly(VonMisesFisherMixture(2, tol=0, max_iter=5, **init), X)
    b = _fit_quietly(VonMisesFisherMixture(2, tol=0, max_iter=5, normalize=True, **init), scaled)
    assert_allclose(b.concentrations_, a.concentrations_, rtol=1e-12)
    assert_allclose(b.score_samples(scaled), a.score_samples(X), rtol=1e-12)
    scaled[7] = 0.0
    with pytest.raises(ValueError, match=r"norm 0 at row 7"):
        VonMisesFisherMixture(2, normalize=True).fit(scaled)


def test_multinomial_sparse_equals_dense():
    X, _, _ = rf.make_multinomial(5000, 4)  # more rows than one kernel block
    w0, p0 = rf.explicit_init_multinomial(X, [0, 1, 2])
    sw = np.random.default_rng(5).uniform(0.5, 1.5, len(X))
    kw = dict(tol=0, max_iter=20, weights_init=w0, probabilities_init=p0["probabilities"])
    dense = _fit_quietly(MultinomialMixture(3, **kw), X, sample_weight=sw)
    csr = sp.csr_matrix(X)
    sparse = _fit_quietly(MultinomialMixture(3, **kw), csr, sample_weight=sw)
    assert_allclose(sparse.probabilities_, dense.probabilities_, rtol=1e-12)
    assert_allclose(sparse.lower_bounds_, dense.lower_bounds_, rtol=1e-12)
    assert_allclose(sparse.score_samples(csr), dense.score_samples(X), rtol=1e-12)
    assert_array_equal(sparse.predict(csr), dense.predict(X))
    # default initialisation on sparse input (from a dense row sample)
    fitted = MultinomialMixture(3, random_state=0).fit(csr)
    assert fitted.converged_


@pytest.mark.parametrize(
    "cls, bad, pattern",
    [
        (PoissonMixture, (4, 2, -3.0), r"negative count -3 at row 4, column 2"),
        (PoissonMixture, (5, 0, 1.5), r"non-integer count 1.5 at row 5, column 0.*integer counts"),
        (PoissonMixture, (6, 1, np.nan), r"NaN at row 6, column 1"),
        (BernoulliMixture, (3, 1, 2.0), r"value 2 at row 3, column 1.*0 or 1.*Binarise"),
        (BernoulliMixture, (2, 0, np.inf), r"infinity at row 2, column 0"),
        (MultinomialMixture, (8, 3, -1.0), r"negative count -1 at row 8, column 3"),
        (VonMisesFisherMixture, (9, 0, np.nan), r"NaN at row 9, column 0"),
    ],
)
def test_bad_values_are_refused_with_their_place(cls, bad, pattern):
    family = {PoissonMixture: "poisson", BernoulliMixture: "bernoulli", MultinomialMixture: "multinomial",
              VonMisesFisherMixture: "vmf"}[cls]  # fmt: skip
    X = rf.REGISTRY[family]["make"](50, 0)[0].copy()
    row, col, value = bad
    X[row, col] = value
    est = cls(2)
    with pytest.raises(ValueError, match=pattern):
        est.fit(X)
    assert not hasattr(est, "weights_")  # nothing half-fitted


def test_empty_multinomial_rows_are_refused_dense_and_sparse():
    X = rf.make_multinomial(50, 0)[0].copy()
    X[11] = 0.0
    for data in (X, sp.csr_matrix(X)):
        with pytest.raises(ValueError, match=r"row of zero counts at row 11 .*Remove empty rows"):
            MultinomialMixture(2).fit(data)
    Xs = sp.csr_matrix(rf.make_poisson(30, 0)[0])
    Xs.data[5] = -2.0
    with pytest.raises(ValueError, match=r"negative count -2 at row"):
        MultinomialMixture(2).fit(Xs)


@pytest.mark.parametrize(
    "family, init, pattern",
    [
        ("poisson", {"rates_init": np.zeros((2, 6))}, r"rates_init.*> 0"),
        ("poisson", {"rates_init": np.ones((2, 5))}, r"rates_init.*shape \(2, 6\)"),
        ("bernoulli", {"probabilities_init": np.ones((2, 8))}, r"probabilities_init.*\(0, 1\)"),
        ("multinomial", {"probabilities_init": np.full((2, 10), 0.2)}, r"summing to 1"),
        ("vmf", {"mean_directions_init": np.ones((2, 5))}, r"unit vectors"),
        ("vmf", {"concentrations_init": [-1.0, 2.0]}, r"concentrations must be >= 0"),
    ],
)
def test_bad_initial_parameters_are_refused_before_work(family, init, pattern):
    X = rf.REGISTRY[family]["make"](60, 0)[0]
    with pytest.raises(ValueError, match=pattern):
        ESTIMATORS[family][0](2, **init).fit(X)


def test_degenerate_parameters_follow_the_floors_with_a_warning():
    rng = np.random.default_rng(0)
    X = np.zeros((200, 3))
    X[:100, 0] = rng.poisson(5.0, 100)  # feature 0 is always 0 in the second cluster
    X[100:, 1] = rng.poisson(5.0, 100)
    X[:, 2] = rng.poisson(1.0, 200)
    with pytest.warns(DegenerateParameterWarning, match="1e-10"):
        est = PoissonMixture(2, random_state=0).fit(X)
    assert np.all(np.isfinite(est.rates_)) and est.rates_.min() == pytest.approx(1e-10)
    assert np.isfinite(est.score(np.array([[3.0, 3.0, 1.0]])))
    B = (X > 0).astype(float)
    with pytest.warns(DegenerateParameterWarning):
        est = BernoulliMixture(2, random_state=0).fit(B)
    assert est.probabilities_.min() >= 1e-10 and est.probabilities_.max() <= 1 - 1e-10
    V = np.tile(np.array([[1.0, 0.0, 0.0]]), (50, 1))
    V = np.vstack([V, rf.make_vmf(50, 0, D=3)[0]])
    with pytest.warns(DegenerateParameterWarning, match="1e10"):
        est = VonMisesFisherMixture(2, random_state=0, max_iter=20).fit(V)
    assert np.all(np.isfinite(est.concentrations_)) and np.isfinite(est.score(V))


def test_callbacks_see_every_iteration(family, data):
    X, _, _, w0, p0 = data
    seen = []

    class Watcher(fastem.Callback):
        def on_run_start(self, init, params, lower_bounds):
            seen.append(("start", init))

        def on_run_end(self, init, run, best):
            seen.append(("end", run.n_iter))

    iterations = []
    _fit_quietly(_explicit(family, w0, p0, tol=0, max_iter=7), X, callbacks=[Watcher(), iterations.append])
    assert seen == [("start", 0), ("end", 7)]
    assert [it.n_iter for it in iterations] == list(range(1, 8))
    assert [it.lower_bound for it in iterations] == iterations[-1].lower_bounds


def test_multinomial_sparse_duplicates_are_summed():
    X = rf.make_multinomial(300, 6)[0]
    dense = sp.csr_matrix(X)
    # every stored count split in two entries of the same cell
    indptr, indices, data = dense.indptr, dense.indices, dense.data
    half = np.floor(data / 2)
    rows = np.repeat(np.arange(X.shape[0]), np.diff(indptr))
    order = np.argsort(np.concatenate([rows, rows]), kind="stable")
    split = sp.csr_matrix(
        (np.concatenate([half, data - half])[order], np.concatenate([indices, indices])[order], 2 * indptr),
        shape=X.shape,
    )
    assert split.nnz == 2 * dense.nnz  # duplicates really stored
    est = _fit_quietly(MultinomialMixture(3, random_state=0, max_iter=5, tol=0), dense)
    assert_allclose(est.score_samples(split), est.score_samples(dense), rtol=1e-12)
