"""MAP-EM: priors on every estimator (fastem.priors), against R mclust and plain-NumPy references."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import reference as ref
from conftest import make_mixture
from numpy.testing import assert_allclose
from scipy import stats

import fastem
import fastem._stream
import fastem.datasets
import fastem.sources
from fastem import (
    BernoulliMixture,
    GaussianMixture,
    MultinomialMixture,
    PoissonMixture,
    VonMisesFisherMixture,
)
from fastem.priors import BetaPrior, DirichletPrior, GammaPrior, GaussianPrior, as_prior

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

KINDS = ("full", "tied", "diag", "spherical")


@pytest.fixture(scope="module")
def faithful():
    return np.asarray(fastem.datasets.load_old_faithful(), dtype=np.float64)


# ---------------------------------------------------------------- R mclust
def test_old_faithful_matches_mclust(faithful):
    """mclust: Mclust(faithful, G=2, modelNames="VVV", prior=priorControl(), control=emControl(tol=1e-13))."""
    X = faithful
    gm = GaussianMixture(2, covariance_type="full", prior="mclust", tol=1e-13, max_iter=10_000,
                         random_state=0).fit(X)  # fmt: skip
    assert gm.converged_
    order = np.argsort(gm.means_[:, 0])
    n = X.shape[0]
    assert round(gm.score(X) * n, 4) == -1130.5093
    assert_allclose(gm.weights_[order], [0.35608, 0.64392], atol=5e-6)
    assert_allclose(gm.means_[order], [[2.03703, 54.48527], [4.29005, 79.97283]], atol=5e-6)
    assert round(gm.bic(X), 3) == 2322.682
    # the lower bound is the log posterior per sample: the log-likelihood plus the log prior
    prior = ref.mclust_default_prior(X, "full", 2)
    log_prior = ref.map_log_prior(gm.weights_, gm.means_, gm.covariances_, "full", prior)
    assert_allclose(gm.lower_bound_, (gm.score(X) * n + log_prior) / n, rtol=0, atol=1e-9)


# R 4.2 mclust 6.0.0 (Debian r-cran-mclust), 2026-12-03:
#   Mclust(faithful, G=2, modelNames=m, prior=priorControl(), control=emControl(tol=c(1e-13, 1e-13)))
# printed with sprintf("%.8f"); components ordered by decreasing weight, covariances as mclust's
# sigma (tied: the shared matrix; diag: the diagonals; spherical: the variances).
MCLUST_OTHER_MODELS = {
    "tied": dict(  # mclust "EEE"
        loglik=-1140.260935, bic=2325.3683, weights=[0.64075727, 0.35924273],
        means=[[4.29598482, 80.03555270], [2.04631244, 54.59807046]],
        covariances=[[0.13091705, 0.75334713], [0.75334713, 34.38661383]],
    ),
    "diag": dict(  # mclust "VVI"
        loglik=-1229.215690, bic=2508.8836, weights=[0.63491972, 0.36508028],
        means=[[4.30077342, 80.18707988], [2.07395298, 54.74125596]],
        covariances=[[0.41725076, 32.15890033], [0.54989828, 33.62515684]],
    ),
    "spherical": dict(  # mclust "VII"
        loglik=-1709.580830, bic=3458.4023, weights=[0.63311375, 0.36688625],
        means=[[4.29362869, 80.26144206], [2.09724192, 54.73818140]],
        covariances=[15.78278596, 16.88374565],
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(MCLUST_OTHER_MODELS))
def test_other_covariance_types_match_mclust(faithful, kind):
    """The MAP M-steps for tied, diag and spherical reach mclust's fixed points (EEE, VVI, VII)."""
    expected = MCLUST_OTHER_MODELS[kind]
    X = faithful
    gm = GaussianMixture(2, covariance_type=kind, prior="mclust", tol=1e-13, max_iter=10_000,
                         random_state=0).fit(X)  # fmt: skip
    assert gm.converged_
    order = np.argsort(-gm.weights_)
    # mclust stops at its own tolerance: parameters agree to about 1e-7 relative
    assert_allclose(gm.score(X) * X.shape[0], expected["loglik"], rtol=0, atol=5e-6)
    assert_allclose(gm.bic(X), expected["bic"], rtol=0, atol=5e-4)
    assert_allclose(gm.weights_[order], expected["weights"], rtol=1e-6)
    assert_allclose(gm.means_[order], expected["means"], rtol=1e-6)
    covariances = gm.covariances_ if kind == "tied" else gm.covariances_[order]
    assert_allclose(covariances, expected["covariances"], rtol=1e-6)


def test_mclust_string_is_default_prior():
    assert as_prior("mclust", (GaussianPrior,), "GaussianMixture") == GaussianPrior()
    assert GaussianPrior() == GaussianPrior(shrinkage=0.01, mean=None, dof=None, scale=None)


# ---------------------------------------------------------------- NumPy reference, every covariance type
def _explicit(X, kind, rows=(0, 1, 2)):
    return ref.explicit_init(X, list(rows), kind, scale=0.5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_iter", [1, 10, 50])
def test_map_em_matches_numpy_reference(kind, n_iter):
    X, labels = make_mixture(500, seed=3)
    rows = [int(np.flatnonzero(labels == k)[0]) for k in range(3)]
    init = _explicit(X, kind, rows)
    prior = ref.mclust_default_prior(X, kind, 3)
    (w, m, c), bounds = ref.run_map_em(X, init["weights"], init["means"], init["covariances"], kind, n_iter,
                                       prior)  # fmt: skip
    gm = GaussianMixture(3, covariance_type=kind, prior="mclust", tol=0.0, max_iter=n_iter,
                         **init["kwargs"]).fit(X)  # fmt: skip
    assert gm.n_iter_ == n_iter
    assert_allclose(gm.weights_, w, rtol=1e-10)
    assert_allclose(gm.means_, m, rtol=1e-10)
    assert_allclose(gm.covariances_, c, rtol=1e-10)
    assert_allclose(gm.lower_bounds_, bounds, rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_user_hyperparameters_match_reference(kind):
    X, labels = make_mixture(400, seed=8)
    d = X.shape[1]
    scale = {"full": np.diag([2.0, 1.0, 0.5]) + 0.1, "tied": 0.7, "diag": [0.5, 1.0, 2.0], "spherical": 1.5}[
        kind
    ]
    p = GaussianPrior(shrinkage=3.0, mean=[0.5, -1.0, 2.0], dof=d + 4.5, scale=scale, weight_pseudocount=2.0)
    prior = {"shrinkage": 3.0, "mean": np.array([0.5, -1.0, 2.0]), "dof": d + 4.5,
             "scale": np.eye(d) * 0.7 if kind == "tied" else np.asarray(scale, float),
             "weight_pseudocount": 2.0}  # fmt: skip
    rows = [int(np.flatnonzero(labels == k)[0]) for k in range(3)]
    init = _explicit(X, kind, rows)
    (w, m, c), bounds = ref.run_map_em(
        X, init["weights"], init["means"], init["covariances"], kind, 10, prior
    )
    gm = GaussianMixture(3, covariance_type=kind, prior=p, tol=0.0, max_iter=10,
                         **init["kwargs"]).fit(X)  # fmt: skip
    assert_allclose(gm.weights_, w, rtol=1e-10)
    assert_allclose(gm.means_, m, rtol=1e-10)
    assert_allclose(gm.covariances_, c, rtol=1e-10)
    assert_allclose(gm.lower_bounds_, bounds, rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_shrinkage_matches_reference(kind):
    """shrinkage=0: a flat prior on the means (mclust drops its determinant term)."""
    X, labels = make_mixture(300, seed=14)
    rows = [int(np.flatnonzero(labels == k)[0]) for k in range(3)]
    init = _explicit(X, kind, rows)
    prior = {**ref.mclust_default_prior(X, kind, 3), "shrinkage": 0.0}
    (w, m, c), bounds = ref.run_map_em(
        X, init["weights"], init["means"], init["covariances"], kind, 10, prior
    )
    gm = GaussianMixture(3, covariance_type=kind, prior=GaussianPrior(shrinkage=0.0), tol=0.0, max_iter=10,
                         **init["kwargs"]).fit(X)  # fmt: skip
    assert_allclose(gm.means_, m, rtol=1e-10)
    assert_allclose(gm.covariances_, c, rtol=1e-10)
    assert_allclose(gm.lower_bounds_, bounds, rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_map_em_with_sample_weight_matches_reference(kind):
    X, labels = make_mixture(300, seed=4)
    sw = np.random.default_rng(0).uniform(0.2, 2.0, X.shape[0])
    rows = [int(np.flatnonzero(labels == k)[0]) for k in range(3)]
    init = _explicit(X, kind, rows)
    p = GaussianPrior(mean=np.zeros(3), scale={"full": np.eye(3), "tied": np.eye(3)}.get(kind, 1.0))
    prior = {"shrinkage": 0.01, "mean": np.zeros(3), "dof": 5.0,
             "scale": np.eye(3) if kind in ("full", "tied") else 1.0}  # fmt: skip
    (w, m, c), bounds = ref.run_map_em(X, init["weights"], init["means"], init["covariances"], kind, 5, prior,
                                       sample_weight=sw)  # fmt: skip
    gm = GaussianMixture(3, covariance_type=kind, prior=p, tol=0.0, max_iter=5, **init["kwargs"])
    gm.fit(X, sample_weight=sw)
    assert_allclose(gm.means_, m, rtol=1e-10)
    assert_allclose(gm.covariances_, c, rtol=1e-10)
    assert_allclose(gm.lower_bounds_, bounds, rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_log_posterior_never_decreases(kind):
    X, _ = make_mixture(600, seed=2)
    gm = GaussianMixture(5, covariance_type=kind, prior="mclust", tol=0.0, max_iter=200, init_params="random",
                         random_state=1).fit(X)  # fmt: skip
    lb = np.asarray(gm.lower_bounds_)
    assert np.all(np.diff(lb) >= -1e-12 * np.abs(lb[1:]))
    # score stays the mean log-likelihood; the lower bound adds the log prior
    assert gm.score(X) != pytest.approx(gm.lower_bound_, rel=1e-12)


def test_prior_keeps_duplicated_points_finite():
    """Without a prior, a component on duplicated points collapses; the prior keeps it well defined."""
    X = np.vstack([np.tile([[1.0, 2.0]], (20, 1)), np.random.default_rng(0).normal(size=(40, 2)) + 5])
    gm = GaussianMixture(2, prior="mclust", reg_covar=0.0, random_state=0, max_iter=200).fit(X)
    assert np.all(np.linalg.eigvalsh(gm.covariances_) > 0)
    assert np.all(np.isfinite(gm.lower_bounds_))


def test_prior_none_is_unchanged():
    X, _ = make_mixture(300, seed=6)
    a = GaussianMixture(3, random_state=0, max_iter=20).fit(X)
    b = GaussianMixture(3, random_state=0, max_iter=20, prior=None).fit(X)
    assert np.array_equal(a.means_, b.means_) and a.lower_bounds_ == b.lower_bounds_


# ---------------------------------------------------------------- executors
@pytest.mark.parametrize("kind", KINDS)
def test_streaming_equals_in_memory(tmp_path, kind):
    X, _ = make_mixture(3000, seed=9)
    path = tmp_path / "x.npy"
    np.save(path, X)
    kw = dict(covariance_type=kind, prior="mclust", random_state=0, max_iter=30, tol=0.0)
    mem = GaussianMixture(3, **kw).fit(X)
    src = GaussianMixture(3, **kw).fit(fastem.sources.NpySource(path, chunk_rows=512))
    for name in ("weights_", "means_", "covariances_"):
        assert_allclose(getattr(src, name), getattr(mem, name), rtol=1e-9, atol=1e-12)
    assert_allclose(src.lower_bounds_, mem.lower_bounds_, rtol=1e-10)


def test_dask_equals_in_memory():
    da = pytest.importorskip("dask.array")
    pytest.importorskip("distributed")
    import dask

    X, _ = make_mixture(2000, seed=10)
    kw = dict(covariance_type="full", prior="mclust", random_state=0, max_iter=20, tol=0.0)
    mem = GaussianMixture(3, **kw).fit(X)
    with dask.config.set(scheduler="synchronous"):
        try:
            dsk = GaussianMixture(3, **kw).fit(da.from_array(X, chunks=(700, 3)))
        except (RuntimeError, ValueError) as exc:  # no client: fastem.dask may require one
            pytest.skip(f"dask without a client: {exc}")
    assert_allclose(dsk.means_, mem.means_, rtol=1e-9)
    assert_allclose(dsk.lower_bounds_, mem.lower_bounds_, rtol=1e-10)


def test_checkpoint_with_prior(tmp_path):
    X, _ = make_mixture(500, seed=12)
    kw = dict(prior=GaussianPrior(shrinkage=0.5), random_state=0, max_iter=15, tol=0.0)
    plain = GaussianMixture(3, **kw).fit(X)
    ck = GaussianMixture(3, **kw).fit(X, checkpoint=tmp_path / "ck.npz")
    assert np.array_equal(plain.means_, ck.means_)
    again = GaussianMixture(3, **kw).fit(X, checkpoint=tmp_path / "ck.npz")  # resumes the finished fit
    assert np.array_equal(again.means_, ck.means_)
    with pytest.raises(ValueError):
        GaussianMixture(3, **{**kw, "prior": "mclust"}).fit(X, checkpoint=tmp_path / "ck.npz")


def test_online_refuses_prior():
    X, _ = make_mixture(200)
    with pytest.raises(ValueError, match="batch algorithm only"):
        GaussianMixture(2, prior="mclust").fit(X, algorithm="online")
    with pytest.raises(ValueError, match="batch algorithm only"):
        PoissonMixture(2, prior=GammaPrior()).partial_fit(np.ones((10, 2)))


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: GaussianPrior(dof=0), "'dof'"),
        (lambda: GaussianPrior(dof=-1.0), "'dof'"),
        (lambda: GaussianPrior(shrinkage=-0.1), "'shrinkage'"),
        (lambda: GaussianPrior(scale=[[1.0, 2.0], [2.0, 1.0]]), "not positive definite"),
        (lambda: GaussianPrior(scale=[[1.0, 0.5], [0.0, 1.0]]), "symmetric"),
        (lambda: GaussianPrior(scale=-1.0), "'scale'"),
        (lambda: GaussianPrior(mean=[np.nan, 0.0]), "'mean'"),
        (lambda: GaussianPrior(weight_pseudocount=-1), "'weight_pseudocount'"),
        (lambda: GammaPrior(pseudocount=-0.5), "'pseudocount'"),
        (lambda: GammaPrior(exposure=-1), "'exposure'"),
        (lambda: BetaPrior(successes=-1), "'successes'"),
        (lambda: DirichletPrior(pseudocount=-1e-3), "'pseudocount'"),
        (lambda: DirichletPrior(pseudocount=True), "'pseudocount'"),
    ],
)
def test_bad_hyperparameters_raise_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    ("estimator", "match"),
    [
        (GaussianMixture(2, prior="bogus"), "Invalid value for 'prior'"),
        (GaussianMixture(2, prior=GammaPrior()), "GaussianMixture takes"),
        (GaussianMixture(2, prior=GaussianPrior(mean=[0.0, 0.0])), "shape"),
        (GaussianMixture(2, prior=GaussianPrior(dof=1.5)), "dof > 2"),
        (
            GaussianMixture(2, covariance_type="spherical", prior=GaussianPrior(scale=[1.0, 2.0, 3.0])),
            "'scale'",
        ),
        (PoissonMixture(2, prior="mclust"), "'mclust' is the Gaussian prior"),
        (BernoulliMixture(2, prior=GammaPrior()), "BernoulliMixture takes"),
        (VonMisesFisherMixture(2, prior=DirichletPrior()), "takes no prior"),
    ],
)
def test_bad_prior_raises_before_reading_data(tmp_path, monkeypatch, estimator, match):
    X, _ = make_mixture(100)
    path = tmp_path / "x.npy"
    np.save(path, X)

    def no_pass(*args, **kwargs):
        raise AssertionError("the data were read before the prior was checked")

    monkeypatch.setattr(fastem._stream, "scan", no_pass)
    with pytest.raises(ValueError, match=match):
        estimator.fit(fastem.sources.NpySource(path))
    with pytest.raises(ValueError, match=match):
        estimator.fit(X)


def test_scale_not_positive_definite_from_data():
    X = np.random.default_rng(0).normal(size=(50, 2))
    X = np.hstack([X, X[:, :1]])  # collinear: the data covariance is singular
    with pytest.raises(ValueError, match="not positive definite"):
        GaussianMixture(2, prior="mclust").fit(X)
    GaussianMixture(2, covariance_type="diag", prior="mclust", random_state=0).fit(X)  # diag is fine


# ---------------------------------------------------------------- persistence
def test_prior_objects_are_json_values():
    p = GaussianPrior(shrinkage=0.2, mean=[1.0, 2.0 / 3.0], dof=7, scale=[[2.0, 0.1], [0.1, 1.0]])
    assert isinstance(p, str) and json.loads(p)["prior"] == "gaussian"
    assert as_prior(str(p), (GaussianPrior,), "GaussianMixture") == p
    assert pickle.loads(pickle.dumps(p)) == p and type(pickle.loads(pickle.dumps(p))) is GaussianPrior
    assert_allclose(p.mean, [1.0, 2.0 / 3.0], rtol=0)
    assert "GaussianPrior(shrinkage=0.2" in repr(p)
    from sklearn.base import clone

    assert clone(GaussianMixture(prior=p)).prior == p


@pytest.mark.parametrize(
    "prior", ["mclust", GaussianPrior(shrinkage=0.3, dof=6.5, scale=2.0, weight_pseudocount=1.0)]
)
def test_model_file_keeps_prior(tmp_path, prior):
    X, _ = make_mixture(400, seed=13)
    gm = GaussianMixture(3, prior=prior, random_state=0, max_iter=50).fit(X)
    path = gm.save(tmp_path / "m.npz")
    back = fastem.load(path)
    assert back.prior == gm.prior
    assert as_prior(back.prior, (GaussianPrior,), "") == as_prior(gm.prior, (GaussianPrior,), "")
    assert np.array_equal(back.predict_proba(X), gm.predict_proba(X))
    refit = back.set_params(random_state=0).fit(X)
    assert np.array_equal(refit.means_, gm.means_) and refit.lower_bounds_ == gm.lower_bounds_


def test_linear_model_file_keeps_prior(tmp_path):
    X = np.random.default_rng(0).poisson(3.0, size=(200, 4)).astype(float)
    pm = PoissonMixture(2, prior=GammaPrior(pseudocount=0.5, exposure=2.0), random_state=0).fit(X)
    back = fastem.load(pm.save(tmp_path / "p.npz"))
    assert back.prior == pm.prior
    assert np.array_equal(back.rates_, pm.rates_)


# ---------------------------------------------------------------- pseudocount priors: closed forms
def _resp(log_joint):
    lse = np.logaddexp.reduce(log_joint, axis=1)
    return np.exp(log_joint - lse[:, None]), lse


def test_poisson_gamma_prior_closed_form():
    rng = np.random.default_rng(1)
    X = np.vstack([rng.poisson(1.0, (60, 3)), rng.poisson(6.0, (40, 3))]).astype(float)
    w0, lam0 = np.array([0.5, 0.5]), np.array([[0.5, 1.0, 2.0], [5.0, 4.0, 7.0]])
    a, b, c = 0.7, 2.5, 1.5
    p = GammaPrior(pseudocount=a, exposure=b, weight_pseudocount=c)
    pm = PoissonMixture(2, prior=p, weights_init=w0, rates_init=lam0, max_iter=1, tol=0).fit(X)
    lj = np.log(w0) + stats.poisson.logpmf(X[:, None, :], lam0[None]).sum(axis=2)
    r, lse = _resp(lj)
    R, S1 = r.sum(axis=0), r.T @ X
    assert_allclose(pm.rates_, (S1 + a) / (R[:, None] + b), rtol=1e-12)
    assert_allclose(pm.weights_, (R + c) / (R.sum() + 2 * c), rtol=1e-12)
    log_prior = stats.gamma.logpdf(lam0, a + 1, scale=1 / b).sum() + stats.dirichlet.logpdf(w0, [c + 1] * 2)
    assert_allclose(pm.lower_bounds_[0], (lse.sum() + log_prior) / X.shape[0], rtol=1e-12)


def test_bernoulli_beta_prior_closed_form():
    rng = np.random.default_rng(2)
    X = (rng.uniform(size=(80, 5)) < np.where(np.arange(80)[:, None] < 40, 0.2, 0.8)).astype(float)
    w0, p0 = np.array([0.4, 0.6]), np.full((2, 5), 0.3) + np.array([[0.0], [0.4]])
    s, f = 2.0, 0.5
    bm = BernoulliMixture(2, prior=BetaPrior(successes=s, failures=f), weights_init=w0, probabilities_init=p0,
                          max_iter=1, tol=0).fit(X)  # fmt: skip
    lj = np.log(w0) + stats.bernoulli.logpmf(X[:, None, :], p0[None]).sum(axis=2)
    r, lse = _resp(lj)
    R, S1 = r.sum(axis=0), r.T @ X
    assert_allclose(bm.probabilities_, (S1 + s) / (R[:, None] + s + f), rtol=1e-12)
    assert_allclose(bm.weights_, R / R.sum(), rtol=1e-12)
    log_prior = stats.beta.logpdf(p0, s + 1, f + 1).sum() + math.log(1.0)  # Dirichlet(1, 1) density is 1
    assert_allclose(bm.lower_bounds_[0], (lse.sum() + log_prior) / X.shape[0], rtol=1e-12)


def test_multinomial_dirichlet_prior_closed_form():
    rng = np.random.default_rng(3)
    X = np.vstack(
        [rng.multinomial(20, [0.7, 0.2, 0.1, 0.0], 50), rng.multinomial(20, [0.1, 0.1, 0.4, 0.4], 50)]
    )
    X = X.astype(float)
    w0, p0 = np.array([0.5, 0.5]), np.array([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]])
    a = 1.0
    mm = MultinomialMixture(2, prior=DirichletPrior(pseudocount=a), weights_init=w0, probabilities_init=p0,
                            max_iter=1, tol=0).fit(X)  # fmt: skip
    lj = np.log(w0) + np.array([stats.multinomial.logpmf(X, 20, p0[k]) for k in range(2)]).T
    r, lse = _resp(lj)
    S1 = r.T @ X
    assert_allclose(mm.probabilities_, (S1 + a) / (S1.sum(axis=1, keepdims=True) + 4 * a), rtol=1e-12)
    assert np.all(mm.probabilities_ > 0.004)  # smoothing: the unseen word keeps a real probability
    log_prior = sum(stats.dirichlet.logpdf(p0[k], [a + 1] * 4) for k in range(2))
    assert_allclose(mm.lower_bounds_[0], (lse.sum() + log_prior) / X.shape[0], rtol=1e-12)


@pytest.mark.parametrize(
    ("cls", "prior", "data"),
    [
        (PoissonMixture, GammaPrior(), lambda rng: rng.poisson(rng.choice([1.0, 5.0], (300, 1)), (300, 4))),
        (BernoulliMixture, BetaPrior(), lambda rng: (rng.uniform(size=(300, 6)) < 0.3).astype(float)),
        (MultinomialMixture, DirichletPrior(0.5), lambda rng: rng.multinomial(15, [0.5, 0.3, 0.2], 300)),
    ],
)
def test_pseudocount_priors_monotone(cls, prior, data):
    X = np.asarray(data(np.random.default_rng(4)), dtype=float)
    m = cls(3, prior=prior, tol=0.0, max_iter=100, init_params="random", random_state=0).fit(X)
    lb = np.asarray(m.lower_bounds_)
    assert np.all(np.diff(lb) >= -1e-12 * np.abs(lb[1:]))
