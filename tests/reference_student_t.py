"""Plain-NumPy ECM for Student-t mixtures, written straight from Peel & McLachlan (2000).

No shifts, no kernels, no blocks: dense N x K arrays and the textbook formulas, to check
``fastem.families.student_t`` against.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from scipy.special import digamma, gammaln, logsumexp


def log_t_densities(X, means, covariances, dof, covariance_type):
    """(N, K) log t_D(x_i; mu_k, Sigma_k, nu_k) and (N, K) Mahalanobis distances delta_ik."""
    N, D = X.shape
    K = means.shape[0]
    logp = np.empty((N, K))
    delta = np.empty((N, K))
    for k in range(K):
        diff = X - means[k]
        if covariance_type == "full":
            cov = covariances[k]
            delta[:, k] = np.einsum("nd,de,ne->n", diff, np.linalg.inv(cov), diff)
            logdet = np.linalg.slogdet(cov)[1]
        else:
            delta[:, k] = (diff**2 / covariances[k]).sum(axis=1)
            logdet = np.log(covariances[k]).sum()
        nu = dof[k]
        logp[:, k] = (gammaln((nu + D) / 2) - gammaln(nu / 2) - D / 2 * np.log(nu * np.pi) - logdet / 2
                      - (nu + D) / 2 * np.log1p(delta[:, k] / nu))  # fmt: skip
    return logp, delta


def ecm_step(X, w, weights, means, covariances, dof, covariance_type, reg_covar, fix_dof):
    """One ECM iteration: returns (mean log-likelihood at the input parameters, new parameters)."""
    N, D = X.shape
    K = means.shape[0]
    logp, delta = log_t_densities(X, means, covariances, dof, covariance_type)
    a = np.log(weights) + logp
    lse = logsumexp(a, axis=1)
    ll = (w * lse).sum() / w.sum()
    r = np.exp(a - lse[:, None])
    u = (dof + D) / (dof + delta)
    wr = w[:, None] * r
    R = wr.sum(axis=0)
    new_weights = R / R.sum()
    new_means = (wr * u).T @ X / (wr * u).sum(axis=0)[:, None]
    new_cov = []
    for k in range(K):
        diff = X - new_means[k]
        c = wr[:, k] * u[:, k]
        if covariance_type == "full":
            new_cov.append((c[:, None] * diff).T @ diff / R[k] + reg_covar * np.eye(D))
        else:
            new_cov.append((c[:, None] * diff**2).sum(axis=0) / R[k] + reg_covar)
    new_cov = np.array(new_cov)
    new_dof = np.array(dof, dtype=float)
    if not fix_dof:
        for k in range(K):
            c = (1 + (wr[:, k] * (np.log(u[:, k]) - u[:, k])).sum() / R[k]
                 + digamma((dof[k] + D) / 2) - np.log((dof[k] + D) / 2))  # fmt: skip

            def f(nu, c=c):
                return -digamma(nu / 2) + np.log(nu / 2) + c

            if f(1e6) >= 0:
                new_dof[k] = 1e6
            elif f(1e-3) <= 0:
                new_dof[k] = 1e-3
            else:
                new_dof[k] = brentq(f, 1e-3, 1e6, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    return ll, (new_weights, new_means, new_cov, new_dof)


def ecm(X, w, params, n_iter, covariance_type, reg_covar=1e-6, fix_dof=False):
    """``n_iter`` ECM iterations from ``params`` = (weights, means, covariances, dof).

    Returns the final parameters and the mean log-likelihood before each iteration.
    """
    w = np.ones(X.shape[0]) if w is None else np.asarray(w, dtype=float)
    lls = []
    for _ in range(n_iter):
        ll, params = ecm_step(X, w, *params, covariance_type, reg_covar, fix_dof)
        lls.append(ll)
    return params, lls
