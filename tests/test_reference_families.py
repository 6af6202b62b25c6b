"""Sanity tests of the family oracle itself (tests/reference_families.py): fast, NumPy/SciPy only."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import reference_families as rf
from numpy.testing import assert_allclose
from scipy import integrate, special, stats


def _fit(family: str, n_iter: int, sample_weight=None, n: int = 400, seed: int = 0):
    fam = rf.REGISTRY[family]
    X, labels, _ = fam["make"](n, seed)
    weights, params = fam["explicit_init"](X, [0, 1, 2])
    final, lower_bounds = fam["run_em"](X, weights, params, n_iter, sample_weight=sample_weight)
    return X, final, lower_bounds


# ---------------------------------------------------------------------------------------------
# densities are normalised
# ---------------------------------------------------------------------------------------------


def test_poisson_pmf_sums_to_one():
    params = {"rates": np.array([[0.3, 4.0], [2.5, 1e-10], [6.0, 1.0]])}
    grid = np.array(list(itertools.product(range(60), repeat=2)), dtype=np.float64)
    total = np.exp(rf.poisson_log_density(grid, params)).sum(axis=0)
    assert_allclose(total, 1.0, rtol=1e-13)


def test_bernoulli_pmf_sums_to_one():
    params = {"probabilities": np.array([[0.1, 0.5, 0.9, 1e-10], [0.3, 0.7, 1 - 1e-10, 0.2]])}
    grid = np.array(list(itertools.product((0.0, 1.0), repeat=4)))
    total = np.exp(rf.bernoulli_log_density(grid, params)).sum(axis=0)
    assert_allclose(total, 1.0, rtol=1e-14)


def test_multinomial_pmf_sums_to_one_and_matches_scipy():
    p = np.array([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3], [1 / 3, 1 / 3, 1 / 3]])
    n = 7
    grid = np.array([c for c in itertools.product(range(n + 1), repeat=3) if sum(c) == n], dtype=np.float64)
    log_dens = rf.multinomial_log_density(grid, {"probabilities": p})
    assert_allclose(np.exp(log_dens).sum(axis=0), 1.0, rtol=1e-14)
    for k in range(len(p)):
        assert_allclose(log_dens[:, k], stats.multinomial.logpmf(grid, n, p[k]), rtol=1e-13)


def test_multinomial_rows_of_different_totals():
    X, _, (_, truth) = rf.make_multinomial(50, seed=3)
    log_dens = rf.multinomial_log_density(X, truth)
    for k in range(3):
        expected = [stats.multinomial.logpmf(x, x.sum(), truth["probabilities"][k]) for x in X]
        assert_allclose(log_dens[:, k], expected, rtol=1e-12)


@pytest.mark.parametrize("kappa", [1e-6, 0.01, 0.5, 1.0, 10.0, 100.0, 700.0])
def test_vmf_normalizer_d3_closed_form(kappa):
    # log C_3(kappa) = log kappa - log(4 pi sinh kappa); sinh written via expm1 for small kappa
    expected = math.log(kappa) - math.log(4 * math.pi) - (kappa + math.log(-math.expm1(-2 * kappa) / 2))
    assert_allclose(rf.vmf_log_normalizer(3, kappa), expected, rtol=1e-13)


@pytest.mark.parametrize("D", [2, 3, 4, 5, 10])
def test_vmf_normalizer_at_zero_is_one_over_the_sphere_area(D):
    area = 2 * math.pi ** (D / 2) / math.gamma(D / 2)
    assert_allclose(rf.vmf_log_normalizer(D, 0.0), -math.log(area), rtol=1e-14)
    # continuous at 0: C_D(kappa) = C_D(0) (1 + O(kappa^2))
    assert_allclose(rf.vmf_log_normalizer(D, 1e-7), -math.log(area), rtol=1e-12)


@pytest.mark.parametrize("kappa", [0.0, 0.7, 5.0, 60.0])
@pytest.mark.parametrize("D", [2, 3, 5])
def test_vmf_density_integrates_to_one(D, kappa):
    # on S^{D-1} with mu = e_0: integrate over t = cos(angle) with the weight of the slice
    # |S^{D-2}| (1 - t^2)^((D-3)/2)
    log_c = float(rf.vmf_log_normalizer(D, kappa))
    slice_area = 2 * math.pi ** ((D - 1) / 2) / math.gamma((D - 1) / 2)

    def integrand(t):
        return slice_area * (1 - t * t) ** ((D - 3) / 2) * math.exp(log_c + kappa * t)

    total, _ = integrate.quad(integrand, -1.0, 1.0, limit=200, epsabs=0, epsrel=1e-12)
    assert_allclose(total, 1.0, rtol=1e-9)


def test_vmf_log_density_from_parts():
    X, _, (_, truth) = rf.make_vmf(20, seed=1, D=4)
    log_dens = rf.vmf_log_density(X, truth)
    for k in range(3):
        kappa = truth["concentrations"][k]
        log_bessel = math.log(special.iv(1.0, kappa))  # I_{D/2-1} directly, fine at kappa ~ 11
        log_c = math.log(kappa) - 2 * math.log(2 * math.pi) - log_bessel
        assert_allclose(log_dens[:, k], log_c + kappa * X @ truth["mean_directions"][k], rtol=1e-13)


# ---------------------------------------------------------------------------------------------
# the vMF concentration solver
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kappa", [0.5, 2.0, 30.0, 400.0])
def test_vmf_mean_resultant_length_d3_closed_form(kappa):
    assert_allclose(rf.vmf_mean_resultant_length(3, kappa), 1 / math.tanh(kappa) - 1 / kappa, rtol=1e-13)


@pytest.mark.parametrize("kappa", [1e-4, 0.3, 3.0, 50.0, 2e3, 1e6])
@pytest.mark.parametrize("D", [2, 3, 5, 10, 40])
def test_vmf_concentration_inverts_mean_resultant_length(D, kappa):
    rbar = rf.vmf_mean_resultant_length(D, kappa)
    # conditioning: dA/dkappa ~ (D - 1) / (2 kappa^2) for large kappa, so kappa carries 2 kappa eps / D
    tol = 1e-12 + 8 * kappa * rf.EPS
    assert_allclose(rf.vmf_concentration(D, rbar), kappa, rtol=tol)


def test_vmf_concentration_edges():
    assert rf.vmf_concentration(5, 0.0) == 0.0
    assert rf.vmf_concentration(5, 1.0) == rf.KAPPA_MAX
    assert rf.vmf_concentration(5, 1.0 + 1e-16) == rf.KAPPA_MAX
    with pytest.raises(ValueError, match="outside the oracle"):
        rf.vmf_concentration(5, 1.0 - 1e-12)  # root ~ 2e12: beyond ive's range


# ---------------------------------------------------------------------------------------------
# E-step and EM
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", rf.FAMILIES)
def test_e_step_is_a_normalised_posterior(family):
    fam = rf.REGISTRY[family]
    X, _, (weights, params) = fam["make"](100, 5)
    log_prob, resp = fam["e_step"](X, weights, params)
    a = fam["log_density"](X, params) + np.log(weights)
    assert_allclose(log_prob, special.logsumexp(a, axis=1), rtol=1e-14)
    assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-14)
    assert_allclose(resp, special.softmax(a, axis=1), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("family", rf.FAMILIES)
def test_log_likelihood_never_decreases(family, weighted):
    sample_weight = np.random.default_rng(7).uniform(0.1, 3.0, 400) if weighted else None
    _, _, lower_bounds = _fit(family, 50, sample_weight)
    steps = np.diff(lower_bounds)
    assert np.all(steps >= -1e-13 * np.abs(lower_bounds[1:])), steps.min()
    assert lower_bounds[-1] > lower_bounds[0] + 0.1  # EM moved


@pytest.mark.parametrize("family", rf.FAMILIES)
def test_lower_bound_is_taken_before_the_m_step(family):
    fam = rf.REGISTRY[family]
    X, _, _ = fam["make"](200, 2)
    sw = np.random.default_rng(1).uniform(0.5, 2.0, 200)
    weights, params = fam["explicit_init"](X, [0, 1, 2])
    _, lower_bounds = fam["run_em"](X, weights, params, 4, sample_weight=sw)
    (w3, p3), _ = fam["run_em"](X, weights, params, 3, sample_weight=sw)
    log_prob, _ = fam["e_step"](X, w3, p3)
    assert lower_bounds[3] == rf.mean_log_likelihood(log_prob, sw)
    log_prob0, _ = fam["e_step"](X, weights, params)
    assert lower_bounds[0] == rf.mean_log_likelihood(log_prob0, sw)


@pytest.mark.parametrize("family", rf.FAMILIES)
def test_integer_sample_weights_equal_repeated_rows(family):
    fam = rf.REGISTRY[family]
    X, _, _ = fam["make"](300, 4)
    counts = np.random.default_rng(11).integers(0, 4, len(X))
    rows = [0, 1, 2]
    counts[rows] = np.maximum(counts[rows], 1)  # the initial rows survive the repetition
    weights, params = fam["explicit_init"](X, rows)
    (w_a, p_a), lb_a = fam["run_em"](X, weights, params, 30, sample_weight=counts.astype(np.float64))
    (w_b, p_b), lb_b = fam["run_em"](np.repeat(X, counts, axis=0), weights, params, 30)
    assert_allclose(lb_a, lb_b, rtol=1e-12)
    assert_allclose(w_a, w_b, rtol=1e-10)
    for key in p_a:
        assert_allclose(p_a[key], p_b[key], rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# M-step formulas and floors
# ---------------------------------------------------------------------------------------------


def test_multinomial_probabilities_sum_to_one():
    _, (_, params), _ = _fit("multinomial", 50, np.random.default_rng(3).uniform(0.1, 3.0, 400))
    p = params["probabilities"]
    assert np.all(p > 0)
    for row in p:
        assert abs(math.fsum(row) - 1.0) <= 4 * rf.EPS


def test_multinomial_floor_renormalises():
    X, _, _ = rf.make_multinomial(200, 0)
    X[:, 4] = 0.0  # a word nobody uses
    resp = np.full((len(X), 3), 1 / 3)
    _, params = rf.multinomial_m_step(X, resp)
    p = params["probabilities"]
    assert np.all(p[:, 4] > 0) and np.all(p[:, 4] <= rf.PROB_FLOOR)
    for row in p:
        assert abs(math.fsum(row) - 1.0) <= 4 * rf.EPS


def test_poisson_and_bernoulli_floors():
    X, _, _ = rf.make_poisson(200, 0)
    X[:, 2] = 0.0
    resp = np.random.default_rng(0).dirichlet(np.ones(3), len(X))
    _, params = rf.poisson_m_step(X, resp)
    assert np.all(params["rates"][:, 2] == rf.RATE_FLOOR)
    R, S1 = rf.sufficient_statistics(X, resp)
    assert_allclose(params["rates"][:, 3], S1[:, 3] / R, rtol=0)

    B, _, _ = rf.make_bernoulli(200, 0)
    B[:, 0] = 1.0
    B[:, 1] = 0.0
    _, params = rf.bernoulli_m_step(B, resp)
    assert np.all(params["probabilities"][:, 0] == 1 - rf.PROB_FLOOR)
    assert np.all(params["probabilities"][:, 1] == rf.PROB_FLOOR)


def test_vmf_m_step_formulas():
    X, _, _ = rf.make_vmf(300, 0, D=6)
    resp = np.random.default_rng(2).dirichlet(np.ones(3), len(X))
    sw = np.random.default_rng(3).uniform(0.5, 2.0, len(X))
    weights, params = rf.vmf_m_step(X, resp, sw)
    R, S1 = rf.sufficient_statistics(X, resp, sw)
    assert_allclose(weights, R / R.sum(), rtol=1e-15)
    norms = np.linalg.norm(S1, axis=1)
    assert_allclose(params["mean_directions"], S1 / norms[:, None], rtol=1e-15)
    for k in range(3):
        A = rf.vmf_mean_resultant_length(6, params["concentrations"][k])
        assert_allclose(A, norms[k] / R[k], rtol=1e-14)


def test_vmf_fit_recovers_the_generating_directions():
    X, labels, (weights, truth) = rf.make_vmf(1500, 0, D=5)
    w0, p0 = rf.explicit_init_vmf(X, [int(np.flatnonzero(labels == k)[0]) for k in range(3)])
    (w, p), _ = rf.run_em_vmf(X, w0, p0, 40)
    assert_allclose(w, weights, atol=0.05)
    assert np.all(np.sum(p["mean_directions"] * truth["mean_directions"], axis=1) > 0.99)
    # normalised Gaussian draws are only approximately vMF: kappa near 1 / sigma^2
    assert_allclose(p["concentrations"], truth["concentrations"], rtol=0.3)


# ---------------------------------------------------------------------------------------------
# data generators
# ---------------------------------------------------------------------------------------------


def test_generators():
    X, labels, (w, p) = rf.make_poisson(300, 1)
    assert X.shape == (300, 6) and X.dtype == np.float64 and np.all(X == np.round(X)) and np.all(X >= 0)
    assert set(np.unique(labels)) == {0, 1, 2} and p["rates"].shape == (3, 6)
    X, _, (_, p) = rf.make_bernoulli(300, 1)
    assert X.shape == (300, 8) and set(np.unique(X)) == {0.0, 1.0}
    X, _, (_, p) = rf.make_multinomial(300, 1)
    totals = X.sum(axis=1)
    assert X.shape == (300, 10) and totals.min() >= 20 and totals.max() <= 200
    assert_allclose(p["probabilities"].sum(axis=1), 1.0, rtol=1e-15)
    for D in (3, 5, 8):
        X, _, (_, p) = rf.make_vmf(300, 1, D=D)
        assert X.shape == (300, D)
        assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-15)
        assert_allclose(np.linalg.norm(p["mean_directions"], axis=1), 1.0, rtol=1e-15)
