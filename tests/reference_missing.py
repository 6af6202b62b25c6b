"""Plain-NumPy EM for Gaussian mixtures with missing entries (NaN), row by row: the test oracle.

Written straight from the formulas (Ghahramani & Jordan 1994; Little & Rubin),
nothing clever. For row i with observed coordinates O and missing M, and
component k with mean mu and covariance Sigma:

* E-step: log p_k(x_O) = log N(x_O; mu_O, Sigma_OO), from ``np.linalg.slogdet``
  and ``np.linalg.inv`` of Sigma_OO; r_ik = pi_k p_k(x_O) / sum_j pi_j p_j(x_O).
* Conditional moments: E[x_M | x_O, k] = mu_M + Sigma_MO Sigma_OO^-1 (x_O - mu_O),
  Cov[x_M | x_O, k] = Sigma_MM - Sigma_MO Sigma_OO^-1 Sigma_OM.
* M-step (expected complete-data statistics, w_i the sample weights):
  R_k = sum_i w_i r_ik, mu_k = sum_i w_i r_ik xhat_ik / R_k,
  Sigma_k = sum_i w_i r_ik [(xhat_ik - mu_k)(xhat_ik - mu_k)^T + C_ik] / R_k + reg_covar I,
  with xhat_ik the row with x_M replaced by its conditional mean under k, and
  C_ik the conditional covariance placed in the (M, M) block (zero elsewhere).
  tied pools the scatters over components (divided by sum_k R_k); diag keeps the
  diagonal; spherical the mean of the diagonal (reg_covar added before the mean,
  as :func:`tests.reference.m_step` does).

Covariances use scikit-learn's shapes, as in :mod:`tests.reference`.
"""

from __future__ import annotations

import math

import numpy as np
from reference import full_covariances, mean_log_likelihood

COV_TYPES = ("full", "tied", "diag", "spherical")


def conditional(x, mean, sigma):
    """(log N(x_O; mu_O, Sigma_OO), E[x | x_O] (observed entries kept), Cov[x | x_O] (zero outside M, M)).

    ``x`` is one row with NaN marking the missing entries.
    """
    x = np.asarray(x, dtype=np.float64)
    obs = ~np.isnan(x)
    mis = ~obs
    n_obs = int(obs.sum())
    if n_obs == 0:
        raise ValueError("a row with every entry missing has no likelihood")
    s_oo = sigma[np.ix_(obs, obs)]
    s_mo = sigma[np.ix_(mis, obs)]
    s_mm = sigma[np.ix_(mis, mis)]
    inv_oo = np.linalg.inv(s_oo)
    sign, logdet = np.linalg.slogdet(s_oo)
    assert sign > 0, "Sigma_OO is not positive definite"
    diff = x[obs] - mean[obs]
    log_density = -0.5 * (n_obs * np.log(2 * np.pi) + logdet + diff @ inv_oo @ diff)
    xhat = x.copy()
    xhat[mis] = mean[mis] + s_mo @ inv_oo @ diff
    cond_cov = np.zeros((x.size, x.size))
    cond_cov[np.ix_(mis, mis)] = s_mm - s_mo @ inv_oo @ s_mo.T
    return float(log_density), xhat, cond_cov


def e_step_missing(X, weights, means, covariances, covariance_type: str):
    """Per-row log p(x_O), responsibilities (N, K), filled rows xhat (N, K, D) and conditional covariances
    (N, K, D, D)."""
    X = np.asarray(X, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    sigmas = full_covariances(covariances, covariance_type, n_components, n_features)
    with np.errstate(divide="ignore"):
        log_w = np.log(np.asarray(weights, dtype=np.float64))
    a = np.empty((n_samples, n_components))
    xhat = np.empty((n_samples, n_components, n_features))
    cond_cov = np.empty((n_samples, n_components, n_features, n_features))
    for i in range(n_samples):
        for k in range(n_components):
            log_density, xhat[i, k], cond_cov[i, k] = conditional(X[i], means[k], sigmas[k])
            a[i, k] = log_w[k] + log_density
    top = a.max(axis=1)
    log_prob = top + np.log(np.exp(a - top[:, None]).sum(axis=1))
    resp = np.exp(a - log_prob[:, None])
    return log_prob, resp, xhat, cond_cov


def m_step_missing(resp, xhat, cond_cov, reg_covar: float, covariance_type: str, sample_weight=None):
    """(weights, means, covariances) from the expected complete-data statistics, two-pass."""
    rw = np.asarray(resp, dtype=np.float64)
    if sample_weight is not None:
        rw = rw * np.asarray(sample_weight, dtype=np.float64)[:, None]
    n_samples, n_components, n_features = xhat.shape
    R = np.array([math.fsum(rw[:, k]) for k in range(n_components)])
    weights = R / R.sum()
    means = np.array(
        [[math.fsum(rw[:, k] * xhat[:, k, d]) / R[k] for d in range(n_features)] for k in range(n_components)]
    )
    scatter = np.zeros((n_components, n_features, n_features))
    for k in range(n_components):
        for i in range(n_samples):
            diff = xhat[i, k] - means[k]
            scatter[k] += rw[i, k] * (np.outer(diff, diff) + cond_cov[i, k])
    eye = np.eye(n_features)
    if covariance_type == "full":
        cov = scatter / R[:, None, None] + reg_covar * eye
    elif covariance_type == "tied":
        cov = scatter.sum(axis=0) / R.sum() + reg_covar * eye
    elif covariance_type == "diag":
        cov = np.stack([np.diag(s) for s in scatter]) / R[:, None] + reg_covar
    elif covariance_type == "spherical":
        cov = (np.stack([np.diag(s) for s in scatter]) / R[:, None] + reg_covar).mean(axis=1)
    else:
        raise ValueError(covariance_type)
    return weights, means, cov


def em_missing(X, weights, means, covariances, covariance_type, n_iter, reg_covar=1e-6, sample_weight=None):
    """``n_iter`` EM iterations on data with NaN; returns ((weights, means, covariances), lower_bounds).

    ``lower_bounds[t]`` is the (weighted) mean observed-data log-likelihood
    sum_i w_i log p(x_i,O) / sum_i w_i under the parameters the E-step of
    iteration t + 1 used (scikit-learn's ``lower_bounds_`` convention, as
    :func:`tests.reference.run_em`). EM never decreases it.
    """
    params = (np.asarray(weights, float), np.asarray(means, float), np.asarray(covariances, float))
    lower_bounds = []
    for _ in range(n_iter):
        log_prob, resp, xhat, cond_cov = e_step_missing(X, *params, covariance_type)
        lower_bounds.append(mean_log_likelihood(log_prob, sample_weight))
        params = m_step_missing(resp, xhat, cond_cov, reg_covar, covariance_type, sample_weight)
    return params, lower_bounds


def score_samples_missing(X, weights, means, covariances, covariance_type):
    """Per-row log p(x_O) under the mixture."""
    return e_step_missing(X, weights, means, covariances, covariance_type)[0]


def impute_reference(X, weights, means, covariances, covariance_type):
    """X with each NaN replaced by E[x_M | x_O] = sum_k r_ik(x_O) E[x_M | x_O, k]."""
    X = np.asarray(X, dtype=np.float64)
    _, resp, xhat, _ = e_step_missing(X, weights, means, covariances, covariance_type)
    filled = np.einsum("nk,nkd->nd", resp, xhat)
    return np.where(np.isnan(X), filled, X)


def mcar(X, rate, rng, keep_one=True):
    """A copy of X with each entry missing with probability ``rate`` (every row keeps one entry)."""
    X = np.array(X, dtype=np.float64)
    hole = rng.random_sample(X.shape) < rate
    if keep_one:
        empty = hole.all(axis=1)
        hole[empty, rng.randint(X.shape[1], size=int(empty.sum()))] = False
    X[hole] = np.nan
    return X
