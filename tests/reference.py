"""Plain-NumPy Gaussian-mixture EM written straight from the formulas: the test oracle.

Nothing here is clever or fast. Densities come from the textbook formula with
``np.linalg.slogdet`` and ``np.linalg.inv`` (no precision Cholesky), moments are
two-pass (means first, then centred second moments), and the log-sum-exp is the
usual max-shifted one. Covariances use scikit-learn's shapes:

* full: (K, D, D), tied: (D, D), diag: (K, D), spherical: (K,).
"""

from __future__ import annotations

import math

import numpy as np

COV_TYPES = ("full", "tied", "diag", "spherical")


def full_covariances(covariances, covariance_type: str, n_components: int, n_features: int) -> np.ndarray:
    """The (K, D, D) covariance matrices that a covariance array of any type stands for."""
    cov = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return cov.reshape(n_components, n_features, n_features).copy()
    if covariance_type == "tied":
        return np.repeat(cov[None], n_components, axis=0)
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    if covariance_type == "spherical":
        return np.stack([c * np.eye(n_features) for c in cov])
    raise ValueError(covariance_type)


def log_gaussian(X, means, covariances, covariance_type: str) -> np.ndarray:
    """(N, K) array of log N(x_i; mu_k, Sigma_k) from the density formula.

    log N = -1/2 [ D log(2 pi) + log det Sigma + (x - mu)^T Sigma^-1 (x - mu) ]
    """
    X = np.asarray(X, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    n_components, n_features = means.shape
    sigmas = full_covariances(covariances, covariance_type, n_components, n_features)
    out = np.empty((X.shape[0], n_components))
    for k in range(n_components):
        sign, logdet = np.linalg.slogdet(sigmas[k])
        assert sign > 0, "covariance is not positive definite"
        inv = np.linalg.inv(sigmas[k])
        diff = X - means[k]
        maha = np.einsum("nd,de,ne->n", diff, inv, diff)
        out[:, k] = -0.5 * (n_features * np.log(2 * np.pi) + logdet + maha)
    return out


def logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """log sum_k exp(a_ik), stable: max-shifted."""
    m = a.max(axis=1)
    return m + np.log(np.exp(a - m[:, None]).sum(axis=1))


def e_step(X, weights, means, covariances, covariance_type: str):
    """Per-sample log-likelihood log p(x_i) and responsibilities p(k | x_i) (N x K)."""
    with np.errstate(divide="ignore"):
        log_w = np.log(np.asarray(weights, dtype=np.float64))
    a = log_gaussian(X, means, covariances, covariance_type) + log_w
    log_prob = logsumexp_rows(a)
    resp = np.exp(a - log_prob[:, None])
    return log_prob, resp


def m_step(X, resp, reg_covar: float, covariance_type: str, sample_weight=None):
    """(weights, means, covariances) from responsibilities, with two-pass weighted moments."""
    X = np.asarray(X, dtype=np.float64)
    n_samples, n_features = X.shape
    rw = np.asarray(resp, dtype=np.float64)
    if sample_weight is not None:
        rw = rw * np.asarray(sample_weight, dtype=np.float64)[:, None]
    n_components = rw.shape[1]
    R = np.array([math.fsum(rw[:, k]) for k in range(n_components)])
    weights = R / R.sum()
    # pass 1: means, with correctly rounded sums (math.fsum): exact even for data far from 0
    means = np.array(
        [[math.fsum(rw[:, k] * X[:, d]) / R[k] for d in range(n_features)] for k in range(n_components)]
    )
    # pass 2: centred second moments
    scatter = np.empty((n_components, n_features, n_features))  # sum_i r_ik (x-mu)(x-mu)^T
    for k in range(n_components):
        diff = X - means[k]
        scatter[k] = (rw[:, k, None] * diff).T @ diff
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


def mean_log_likelihood(log_prob: np.ndarray, sample_weight=None) -> float:
    """(Weighted) mean of the per-sample log-likelihoods."""
    if sample_weight is None:
        return float(np.mean(log_prob))
    sw = np.asarray(sample_weight, dtype=np.float64)
    return float(np.sum(sw * log_prob) / np.sum(sw))


def run_em(X, weights, means, covariances, covariance_type, n_iter, reg_covar, sample_weight=None):
    """``n_iter`` EM iterations; returns ((weights, means, covariances), lower_bounds).

    ``lower_bounds[t]`` is the mean log-likelihood of the E-step at the start of
    iteration t + 1, i.e. under the parameters *before* that iteration's M-step,
    which is what scikit-learn records in ``lower_bounds_``.
    """
    params = (np.asarray(weights, float), np.asarray(means, float), np.asarray(covariances, float))
    lower_bounds = []
    for _ in range(n_iter):
        log_prob, resp = e_step(X, *params, covariance_type)
        lower_bounds.append(mean_log_likelihood(log_prob, sample_weight))
        params = m_step(X, resp, reg_covar, covariance_type, sample_weight)
    return params, lower_bounds


def precisions_from_covariances(covariances, covariance_type: str) -> np.ndarray:
    """Precisions in scikit-learn's ``precisions_init`` format."""
    cov = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return np.stack([np.linalg.inv(c) for c in cov])
    if covariance_type == "tied":
        return np.linalg.inv(cov)
    return 1.0 / cov


def initial_covariances(X, covariance_type: str, n_components: int, scale: float = 1.0) -> np.ndarray:
    """Every component gets ``scale`` times the data covariance (its diagonal / mean variance)."""
    data_cov = np.atleast_2d(np.cov(np.asarray(X, dtype=np.float64).T)) * scale
    if covariance_type == "full":
        return np.repeat(data_cov[None], n_components, axis=0)
    if covariance_type == "tied":
        return data_cov
    if covariance_type == "diag":
        return np.repeat(np.diag(data_cov)[None], n_components, axis=0)
    return np.full(n_components, np.diag(data_cov).mean())


def explicit_init(X, rows, covariance_type: str, scale: float = 1.0, weights=None) -> dict:
    """Initial parameters: means at the given data rows, shared data-based covariances.

    Returns a dict with the reference's ``weights``/``means``/``covariances`` and the
    estimator keywords ``weights_init``/``means_init``/``precisions_init``.
    """
    X = np.asarray(X, dtype=np.float64)
    k = len(rows)
    w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=np.float64)
    means = X[list(rows)].copy()
    cov = initial_covariances(X, covariance_type, k, scale)
    return {
        "weights": w,
        "means": means,
        "covariances": cov,
        "kwargs": {
            "weights_init": w.copy(),
            "means_init": means.copy(),
            "precisions_init": precisions_from_covariances(cov, covariance_type),
        },
    }
