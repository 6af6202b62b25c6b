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


# ---------------------------------------------------------------- MAP-EM (Fraley & Raftery's conjugate prior)
def mclust_default_prior(X, covariance_type: str, n_components: int) -> dict:
    """R mclust's ``defaultPrior``: shrinkage 0.01, data mean, dof d + 2, scale from ``var(data)``."""
    X = np.asarray(X, dtype=np.float64)
    d = X.shape[1]
    var = np.atleast_2d(np.cov(X.T, ddof=1))  # R's var(): n - 1 denominator
    fac = (1.0 / n_components) ** (2.0 / d)
    if covariance_type in ("full", "tied"):
        scale = fac * var
    else:
        scale = fac * np.trace(var) / d
    return {"shrinkage": 0.01, "mean": X.mean(axis=0), "dof": d + 2.0, "scale": scale}


def map_m_step(X, resp, covariance_type: str, prior: dict, sample_weight=None):
    """MAP (weights, means, covariances) from responsibilities: the formulas of tech. report 486.

    With n_k = sum_i r_ik, xbar_k the component mean, W_k = sum_i r_ik (x_i - xbar_k)(x_i - xbar_k)^T,
    kappa = shrinkage, e_k = xbar_k - mean, b_k = kappa n_k / (n_k + kappa):

    mu_k = (n_k xbar_k + kappa mean) / (n_k + kappa);
    full: Sigma_k = (scale + W_k + b_k e_k e_k^T) / (dof + n_k + d + 2);
    tied: Sigma = (scale + sum_k W_k + b_k e_k e_k^T) / (dof + n + d + K + 1);
    diag: sigma_kj^2 = (scale + W_kjj + b_k e_kj^2) / (dof + n_k + 3);
    spherical: sigma_k^2 = (scale + tr W_k + b_k ||e_k||^2) / (dof + (n_k + 1) d + 2);
    with shrinkage 0 the mean prior is flat and its 1 (full, diag), K (tied), d (spherical) drop out
    of the denominators (mclust's Fortran: ``if (pshrnk .gt. zero) temp = temp + dble(G)`` for EEE);
    weights (n_k + c) / (n + K c), c = weight_pseudocount (0: maximum likelihood).
    """
    X = np.asarray(X, dtype=np.float64)
    d = X.shape[1]
    rw = np.asarray(resp, dtype=np.float64)
    if sample_weight is not None:
        rw = rw * np.asarray(sample_weight, dtype=np.float64)[:, None]
    K = rw.shape[1]
    kappa, m0, nu, lam = prior["shrinkage"], np.asarray(prior["mean"], float), prior["dof"], prior["scale"]
    c = prior.get("weight_pseudocount", 0.0)
    nk = rw.sum(axis=0)
    weights = (nk + c) / (nk.sum() + K * c)
    xbar = (rw.T @ X) / nk[:, None]
    W = np.stack([(rw[:, k, None] * (X - xbar[k])).T @ (X - xbar[k]) for k in range(K)])
    means = (nk[:, None] * xbar + kappa * m0) / (nk + kappa)[:, None]
    e = xbar - m0
    b = kappa * nk / (nk + kappa)
    outer = e[:, :, None] * e[:, None, :]
    f = 1.0 if kappa > 0 else 0.0  # shrinkage 0: a flat prior on the means, without its |Sigma|^(-1/2)
    if covariance_type == "full":
        cov = (lam + W + b[:, None, None] * outer) / (nu + nk + d + 1 + f)[:, None, None]
    elif covariance_type == "tied":
        cov = (lam + (W + b[:, None, None] * outer).sum(axis=0)) / (nu + nk.sum() + d + 1 + f * K)
    elif covariance_type == "diag":
        Wd = np.stack([np.diag(w) for w in W])
        cov = (lam + Wd + b[:, None] * e**2) / (nu + nk + 2 + f)[:, None]
    else:
        tr = np.array([np.trace(w) for w in W])
        cov = (lam + tr + b * (e**2).sum(axis=1)) / (nu + (nk + f) * d + 2)
    return weights, means, cov


def map_log_prior(weights, means, covariances, covariance_type: str, prior: dict) -> float:
    """log p(theta) with scipy.stats densities: Dirichlet weights, normal means, inverse-Wishart/gamma."""
    from scipy import stats

    kappa, m0, nu, lam = prior["shrinkage"], np.asarray(prior["mean"], float), prior["dof"], prior["scale"]
    c = prior.get("weight_pseudocount", 0.0)
    K, d = np.shape(means)
    out = float(stats.dirichlet.logpdf(np.asarray(weights), np.full(K, c + 1.0)))
    full = full_covariances(covariances, covariance_type, K, d)
    for k in range(K):
        if kappa > 0:  # shrinkage 0: a flat (improper) prior on the means, left out
            out += stats.multivariate_normal.logpdf(means[k], m0, full[k] / kappa)
    if covariance_type == "full":
        out += sum(stats.invwishart.logpdf(full[k], df=nu, scale=lam) for k in range(K))
    elif covariance_type == "tied":
        out += stats.invwishart.logpdf(full[0], df=nu, scale=lam)
    elif covariance_type == "diag":
        out += float(np.sum(stats.invgamma.logpdf(covariances, nu / 2, scale=np.asarray(lam) / 2)))
    else:
        out += float(np.sum(stats.invgamma.logpdf(covariances, nu / 2, scale=lam / 2)))
    return float(out)


def run_map_em(X, weights, means, covariances, covariance_type, n_iter, prior: dict, sample_weight=None):
    """``n_iter`` MAP-EM iterations; returns ((weights, means, covariances), log posteriors per unit weight).

    The recorded value is (sum_i w_i log p(x_i) + log p(theta)) / sum_i w_i at the E-step's parameters.
    """
    params = (np.asarray(weights, float), np.asarray(means, float), np.asarray(covariances, float))
    total = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
    bounds = []
    for _ in range(n_iter):
        log_prob, resp = e_step(X, *params, covariance_type)
        loglik = mean_log_likelihood(log_prob, sample_weight) * total
        bounds.append((loglik + map_log_prior(*params, covariance_type, prior)) / total)
        params = map_m_step(X, resp, covariance_type, prior, sample_weight)
    return params, bounds
