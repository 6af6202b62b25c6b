"""Plain-NumPy EM for Poisson and Bernoulli mixtures with missing entries (NaN), row by row.

Written straight from the formulas, with no code shared with fastem: features
are independent given the component, so a missing entry drops out of its
feature's term,

    log p_k(x_i) = sum over observed d of log p(x_id | theta_kd),

the responsibilities are r_ik = pi_k p_k(x_i) / sum_j pi_j p_j(x_i), and the
M-step of feature d uses only the rows where d is observed:

    R_k = sum_i w_i r_ik,  S1_kd = sum_i w_i r_ik x_id [d obs],  N_kd = sum_i w_i r_ik [d obs],
    pi_k = (R_k + c) / (sum_j R_j + K c),
    Poisson:   rate_kd = (S1_kd + pseudocount) / (N_kd + exposure),
    Bernoulli: p_kd = (S1_kd + successes) / (N_kd + successes + failures),

with the prior's pseudocounts 0 without a prior. A feature no row of a
component observes (N_kd = 0) keeps its previous value when there is no
prior. Parameters are held at fastem's floors (rate >= 1e-10, p in
[1e-10, 1 - 1e-10]).
"""

from __future__ import annotations

import math

import numpy as np

FLOOR = 1e-10


def log_term(family: str, x: float, theta: float) -> float:
    """log p(x | theta) of one observed entry."""
    if family == "poisson":
        return x * math.log(theta) - theta - math.lgamma(x + 1.0)
    return math.log(theta) if x == 1.0 else math.log1p(-theta)


def row_log_joint(family: str, x: np.ndarray, weights: np.ndarray, means: np.ndarray) -> np.ndarray:
    """log pi_k + log p_k(x_O) for k = 0 .. K-1, over the observed entries of the row ``x``."""
    K, D = means.shape
    out = np.empty(K)
    for k in range(K):
        total = math.log(weights[k]) if weights[k] > 0 else -math.inf
        for d in range(D):
            if not math.isnan(x[d]):
                total += log_term(family, float(x[d]), float(means[k, d]))
        out[k] = total
    return out


def responsibilities(family, X, weights, means):
    """(resp (N, K), per-row log p(x_O) (N,)), row by row."""
    N = X.shape[0]
    K = means.shape[0]
    resp = np.empty((N, K))
    logprob = np.empty(N)
    for i in range(N):
        a = row_log_joint(family, X[i], weights, means)
        top = a.max()
        e = np.exp(a - top)
        logprob[i] = top + math.log(e.sum())
        resp[i] = e / e.sum()
    return resp, logprob


def prior_pseudocounts(family, prior):
    """(numerator pseudocount, denominator pseudocount, weight pseudocount) of a prior (zeros without)."""
    if prior is None:
        return 0.0, 0.0, 0.0
    if family == "poisson":
        return prior.pseudocount, prior.exposure, prior.weight_pseudocount
    return prior.successes, prior.successes + prior.failures, prior.weight_pseudocount


def em_step(family, X, sample_weight, weights, means, prior=None):
    """One EM step: (new weights, new means, sum_i w_i log p(x_i) at the given parameters)."""
    N, D = X.shape
    K = means.shape[0]
    w = np.ones(N) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    resp, logprob = responsibilities(family, X, weights, means)
    R = np.zeros(K)
    S1 = np.zeros((K, D))
    N_obs = np.zeros((K, D))
    loglik = 0.0
    for i in range(N):
        if w[i] > 0:
            loglik += w[i] * logprob[i]
        for k in range(K):
            wr = w[i] * resp[i, k]
            R[k] += wr
            for d in range(D):
                if not math.isnan(X[i, d]):
                    S1[k, d] += wr * X[i, d]
                    N_obs[k, d] += wr
    a, b, c = prior_pseudocounts(family, prior)
    new_means = means.copy()
    for k in range(K):
        for d in range(D):
            numerator, denominator = S1[k, d] + a, N_obs[k, d] + b
            if N_obs[k, d] == 0.0 and b == 0.0:
                continue  # never observed in this component and no prior: keep the previous value
            value = numerator / denominator
            if family == "poisson":
                value = max(value, FLOOR)
            else:
                value = min(max(value, FLOOR), 1.0 - FLOOR)
            new_means[k, d] = value
    new_weights = (R + c) / (R.sum() + K * c)
    return new_weights, new_means, loglik


def em(family, X, sample_weight, weights, means, n_iter, prior=None):
    """``n_iter`` EM steps; returns (weights, means, the log-likelihood sum before each step)."""
    weights = np.asarray(weights, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    history = []
    for _ in range(n_iter):
        weights, means, loglik = em_step(family, X, sample_weight, weights, means, prior)
        history.append(loglik)
    return weights, means, history


def impute(family, X, weights, means):
    """X with each NaN replaced by sum_k r_k(x_O) mean_kd, row by row."""
    out = np.array(X, dtype=np.float64)
    resp, _ = responsibilities(family, X, weights, means)
    for i in range(X.shape[0]):
        for d in range(X.shape[1]):
            if math.isnan(X[i, d]):
                out[i, d] = sum(resp[i, k] * means[k, d] for k in range(means.shape[0]))
    return out
