"""SQUAREM (SqS3) accelerated EM: coordinate maps, monotonicity, accuracy and cost against plain EM."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import reference_families as rf
from conftest import make_mixture
from reference_families import make_bernoulli, make_multinomial, make_poisson, make_vmf

import fastem
from fastem._accelerate import (
    PassCounter,
    SquaremRun,
    _endgame,
    parameter_vector,
    params_from_vector,
    run_squarem,
)
from fastem._em import as_callbacks, run_em
from fastem._executor import ArrayExecutor
from fastem.families.bernoulli import BernoulliFamily
from fastem.families.gaussian import GaussianFamily
from fastem.families.multinomial import MultinomialFamily
from fastem.families.poisson import PoissonFamily
from fastem.families.student_t import StudentTFamily
from fastem.families.vmf import VonMisesFisherFamily
from fastem.sources import NpySource

COV_TYPES = ("full", "tied", "diag", "spherical")

#: (id, data maker, family maker, n_components): overlapping problems where plain EM is slow
LINEAR = {
    "poisson": (lambda: make_poisson(600, 0)[0], PoissonFamily, 4),
    "bernoulli": (lambda: make_bernoulli(600, 0)[0], BernoulliFamily, 3),
    "multinomial": (lambda: make_multinomial(600, 0)[0], MultinomialFamily, 4),
    "vmf": (lambda: make_vmf(600, 0)[0], VonMisesFisherFamily, 4),
}


def _problem(name: str):
    """(X, family, initial params) as the estimators build them."""
    if name.startswith(("gaussian", "student_t")):
        X = make_mixture(600, spread=0.5)[0]  # overlapping clusters
        kind = name.split("-")[1]
        family, K = (GaussianFamily(kind, 1e-6) if name.startswith("gaussian") else StudentTFamily(kind)), 3
    else:
        make, family_cls, K = LINEAR[name]
        X, family = make(), family_cls()
    params = family.initial_params(
        X, None, n_components=K, init_params="kmeans", random_state=np.random.RandomState(0)
    )
    return X, family, params


ALL = [f"gaussian-{c}" for c in COV_TYPES] + ["student_t-full", "student_t-diag"] + list(LINEAR)


def _arrays_close(a, b, family, atol=1e-12):
    A, B = family.param_arrays(a), family.param_arrays(b)
    for key in A:
        np.testing.assert_allclose(np.asarray(B[key]), np.asarray(A[key]), rtol=0, atol=atol, err_msg=key)


@pytest.mark.parametrize("name", ALL)
def test_vector_round_trip(name):
    X, family, params = _problem(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params, _ = family.m_step(ArrayExecutor(X, None, family).accumulate(params))  # an M-step output
    vector = parameter_vector(family, params)
    assert vector.ndim == 1 and np.all(np.isfinite(vector))
    back = params_from_vector(family, vector, params)
    _arrays_close(params, back, family)
    # the free-parameter count of BIC: one coordinate per free parameter (vMF keeps D per direction)
    extra = params.weights.size if name == "vmf" else 0
    if name.startswith("student_t"):
        np.testing.assert_allclose(vector[-params.dof.size :], np.log(params.dof), rtol=0, atol=1e-15)
        np.testing.assert_allclose(back.dof, params.dof, rtol=1e-13)
    assert vector.size == family.n_parameters(params) + extra


def test_vector_of_full_covariances_uses_log_cholesky_diagonal():
    X, family, params = _problem("gaussian-full")
    K, D = params.means.shape
    vector = parameter_vector(family, params)
    tri = vector[K - 1 + K * D :].reshape(K, -1)
    rows, cols = np.triu_indices(D)
    np.testing.assert_allclose(tri[:, rows == cols], np.log(np.diagonal(params.precisions_cholesky, 0, 1, 2)))
    # any vector gives valid parameters: negative log-diagonals, huge off-diagonals
    back = params_from_vector(family, np.random.default_rng(0).normal(0, 3, vector.size), params)
    assert np.all(np.linalg.eigvalsh(back.covariances) > 0)
    np.testing.assert_allclose(back.weights.sum(), 1.0)


def test_invalid_vectors_are_refused():
    X, family, params = _problem("vmf")
    vector = parameter_vector(family, params)
    K, D = params.arrays["mean_directions"].shape
    zero = vector.copy()
    zero[K - 1 : K - 1 + D] = 0.0  # the first mean direction
    with pytest.raises(ValueError, match="no direction"):
        params_from_vector(family, zero, params)
    with pytest.raises(ValueError, match="not finite"):
        params_from_vector(family, np.full_like(vector, np.nan), params)
    with pytest.raises(ValueError, match="coordinates"):
        params_from_vector(family, vector[:-1], params)
    with pytest.raises(ValueError, match="supports"):
        parameter_vector("gamma", params)


def _runs(name, tol=1e-10):
    X, family, params = _problem(name)
    executor = ArrayExecutor(X, None, family)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # floors reached on the way (Poisson, multinomial)
        plain = run_em(executor.accumulate, family.m_step, params, tol=tol, max_iter=100_000)
        tight = run_em(executor.accumulate, family.m_step, params, tol=1e-13, max_iter=100_000)
        fast = run_squarem(executor.accumulate, family.m_step, params, tol=tol, max_iter=100_000)
    return plain, tight, fast


@pytest.mark.parametrize("name", ["gaussian-full", "gaussian-diag", *LINEAR])
def test_squarem_is_monotone_accurate_and_cheaper(name):
    plain, tight, fast = _runs(name)
    assert isinstance(fast, SquaremRun) and fast.converged
    bounds = np.asarray(fast.lower_bounds)
    assert bounds.size == fast.n_iter and bounds[-1] == fast.lower_bound
    assert np.all(np.diff(bounds) >= -1e-12), np.diff(bounds).min()
    # convergence is run_em's test on a plain EM step: the last recorded change is below tol
    assert abs(bounds[-1] - bounds[-2]) < 1e-10
    # as close to the optimum as plain EM run to a much tighter tolerance
    assert abs(fast.lower_bound - tight.lower_bound) < 1e-6
    assert fast.lower_bound >= plain.lower_bound - 1e-9
    # plain EM: one pass per iteration; SQUAREM must need at most 0.7x the passes
    assert fast.n_passes <= 0.7 * plain.n_iter, (fast.n_passes, plain.n_iter)


def test_squarem_student_t():
    # gross outliers; the degrees of freedom drift slowly towards the Gaussian limit: plain ECM crawls
    X = make_mixture(600, spread=0.5)[0]
    rng = np.random.default_rng(0)
    rows = rng.choice(600, 30, replace=False)
    X[rows] = rng.uniform(-3, 3, size=(30, 3)) * np.ptp(X, axis=0) + X.mean(axis=0)
    family = StudentTFamily("full")
    params = family.initial_params(
        X, None, n_components=3, init_params="kmeans", random_state=np.random.RandomState(0)
    )
    executor = ArrayExecutor(X, None, family)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = run_em(executor.accumulate, family.m_step, params, tol=1e-8, max_iter=20_000)
        fast = run_squarem(executor.accumulate, family.m_step, params, tol=1e-8, max_iter=20_000)
    assert plain.converged and fast.converged
    bounds = np.asarray(fast.lower_bounds)
    assert np.all(np.diff(bounds) >= -1e-12) and abs(bounds[-1] - bounds[-2]) < 1e-8
    assert fast.lower_bound >= plain.lower_bound - 1e-9
    assert fast.n_passes <= 0.5 * plain.n_iter, (fast.n_passes, plain.n_iter)
    assert np.all(fast.params.dof >= 1e-3) and np.all(np.isfinite(fast.params.dof))


@pytest.mark.parametrize("name", ["separated", "vmf"])
def test_squarem_costs_no_more_passes_than_plain_em_on_fast_problems(name):
    # well separated clusters: plain EM meets tol in a few passes, where an extrapolation cannot pay
    if name == "separated":
        X, family = make_mixture(600, seed=7, spread=3.0)[0], GaussianFamily("full", 1e-6)
        K = 3
    else:
        X, family, K = make_vmf(600, 0)[0], VonMisesFisherFamily(), 3
    params = family.initial_params(
        X, None, n_components=K, init_params="kmeans", random_state=np.random.RandomState(0)
    )
    executor = ArrayExecutor(X, None, family)
    plain = run_em(executor.accumulate, family.m_step, params, tol=1e-8, max_iter=1000)
    fast = run_squarem(executor.accumulate, family.m_step, params, tol=1e-8, max_iter=1000)
    assert plain.converged and fast.converged
    assert fast.n_passes <= plain.n_iter, (fast.n_passes, plain.n_iter)
    assert fast.lower_bound >= plain.lower_bound - 1e-9


def test_endgame_prediction():
    # changes 1e-4 then 1e-6: rate 1e-2, next changes 1e-8, 1e-10: tol 1e-9 is met in 2 passes
    assert _endgame([1e-4, 1e-6], 1e-9)
    # rate 0.9: about 130 passes to go; an extrapolation pays
    assert not _endgame([1e-4, 0.9e-4], 1e-9)
    # not enough history, or changes that do not decay: no prediction
    assert not _endgame([1e-6], 1e-9)
    assert not _endgame([1e-6, 2e-6], 1e-9)
    assert not _endgame([1e-6, -1e-12], 1e-9)


def test_squarem_callbacks_and_pass_count():
    X, family, params = _problem("gaussian-full")
    executor = ArrayExecutor(X, None, family)
    counter = PassCounter(executor.accumulate)
    seen = []
    run = run_squarem(
        counter, family.m_step, params, tol=1e-8, max_iter=1000, init=2, callbacks=as_callbacks(seen.append)
    )
    assert run.n_passes == counter.count > run.n_iter
    assert [it.n_iter for it in seen] == list(range(1, run.n_iter + 1))
    assert [it.lower_bound for it in seen] == run.lower_bounds
    assert all(it.init == 2 for it in seen)
    assert seen[-1].params is run.params
    assert np.isinf(seen[0].change) and seen[-1].lower_bounds == run.lower_bounds


def test_squarem_max_iter_and_resume():
    X, family, params = _problem("gaussian-full")
    executor = ArrayExecutor(X, None, family)
    seen = []
    first = run_squarem(
        executor.accumulate, family.m_step, params, tol=0.0, max_iter=3, callbacks=as_callbacks(seen.append)
    )
    assert first.n_iter == 3 and not first.converged and len(first.lower_bounds) == 3
    # resume from the last callback's parameters, as a checkpoint does: history counts towards max_iter
    resumed = run_squarem(executor.accumulate, family.m_step, seen[-1].params, tol=1e-8, max_iter=1000,
                          history=seen[-1].lower_bounds)  # fmt: skip
    assert resumed.converged and resumed.lower_bounds[:3] == first.lower_bounds
    assert np.all(np.diff(resumed.lower_bounds) >= -1e-12)
    done = run_squarem(executor.accumulate, family.m_step, params, tol=1e-8, max_iter=3,
                       history=first.lower_bounds)  # fmt: skip
    assert done.n_iter == 3 and done.n_passes == 0


def test_squarem_needs_a_family_when_m_step_is_wrapped():
    X, family, params = _problem("poisson")
    executor = ArrayExecutor(X, None, family)
    with pytest.raises(ValueError, match="family="):
        run_squarem(executor.accumulate, lambda s: family.m_step(s), params, tol=1e-6, max_iter=10)
    run = run_squarem(executor.accumulate, lambda s: family.m_step(s), params, tol=1e-6, max_iter=100,
                      family=family)  # fmt: skip
    assert run.converged


def test_squarem_records_a_given_objective():
    X, family, params = _problem("gaussian-full")
    executor = ArrayExecutor(X, None, family)
    calls = []

    def objective(stats, at):  # e.g. a log posterior: here the log-likelihood minus a penalty on the means
        calls.append(at)
        return stats.mean_log_likelihood - 1e-3 * float(np.sum(at.means**2))

    run = run_squarem(
        executor.accumulate, family.m_step, params, tol=1e-8, max_iter=1000, objective=objective
    )
    assert len(calls) == run.n_passes
    assert run.lower_bounds[0] == objective(executor.accumulate(params), params)


# ---------------------------------------------------------------- the estimators' accelerate= option
@pytest.mark.parametrize(
    "make_estimator",
    [
        lambda: fastem.GaussianMixture(5, covariance_type="full", random_state=0, tol=1e-8, max_iter=2000),
        lambda: fastem.PoissonMixture(4, random_state=0, tol=1e-8, max_iter=2000),
    ],
)
def test_estimator_accelerate_option(make_estimator):
    if isinstance(make_estimator(), fastem.GaussianMixture):
        X = make_mixture(n_samples=3000, seed=11, spread=0.45)[0]
    else:
        X = rf.make_poisson(3000, 5)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = make_estimator().fit(X)
        fast = make_estimator().set_params(accelerate="squarem").fit(X)
    assert plain.n_passes_ == plain.n_iter_  # one E-step per plain iteration (n_init=1)
    assert fast.n_passes_ < plain.n_passes_
    assert np.all(np.diff(fast.lower_bounds_) >= -1e-12 * np.abs(fast.lower_bounds_[1:]))
    assert fast.score(X) >= plain.score(X) - 1e-6


def test_accelerate_is_validated_and_refused_online():
    X = make_mixture(n_samples=300, seed=1)[0]
    with pytest.raises(ValueError, match="'accelerate': 'fast'"):
        fastem.GaussianMixture(2, accelerate="fast").fit(X)
    with pytest.raises(ValueError, match="algorithm='online'"):
        fastem.GaussianMixture(2, accelerate="squarem").fit(X, algorithm="online")


def test_squarem_on_a_source_and_with_a_checkpoint_is_the_in_memory_fit(tmp_path):
    # chunks of BLOCK_ROWS rows: the streamed statistics are bitwise the in-memory ones, and so is the run
    X = make_mixture(n_samples=2 * fastem.BLOCK_ROWS + 100, seed=11, spread=0.45)[0]
    path = tmp_path / "x.npy"
    np.save(path, X)

    def make():
        return fastem.GaussianMixture(4, random_state=0, tol=1e-7, max_iter=5000, accelerate="squarem")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        memory = make().fit(X)
        streamed = make().fit(NpySource(path, chunk_rows=fastem.BLOCK_ROWS))
        checkpointed = make().fit(X, checkpoint=tmp_path / "fit.ckpt")
    assert memory.converged_ and memory.n_passes_ > memory.n_iter_, (memory.n_iter_, memory.n_passes_)
    for got in (streamed, checkpointed):
        assert got.n_passes_ == memory.n_passes_ and got.lower_bounds_ == memory.lower_bounds_
        np.testing.assert_array_equal(got.means_, memory.means_)
        np.testing.assert_array_equal(got.covariances_, memory.covariances_)
