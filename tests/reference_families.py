"""Plain-NumPy EM for Poisson, Bernoulli, multinomial and von Mises-Fisher mixtures: the test oracle.

Nothing here is clever or fast. Densities come from the textbook formulas (scipy's
``poisson.logpmf``, ``gammaln``, ``ive``), the log-sum-exp is the usual max-shifted one,
and the statistics R_k and S1_k of the M-step are correctly rounded sums (``math.fsum``).
The M-step formulas and floors are the shared ones of the family spec:

* pi_k = R_k / sum_j R_j
* Poisson: lambda_kd = max(S1_kd / R_k, RATE_FLOOR)
* Bernoulli: p_kd = clip(S1_kd / R_k, PROB_FLOOR, 1 - PROB_FLOOR)
* multinomial: p_k = S1_k / sum_d S1_kd, then floored at PROB_FLOOR and renormalised if needed
* vMF: mu_k = S1_k / ||S1_k||, kappa_k solves A_D(kappa) = ||S1_k|| / R_k

Parameters are plain dicts of arrays (K components, D features):

* poisson: ``{"rates": (K, D)}``
* bernoulli: ``{"probabilities": (K, D)}``
* multinomial: ``{"probabilities": (K, D)}`` (rows sum to 1)
* vmf: ``{"mean_directions": (K, D)}`` (unit rows) and ``{"concentrations": (K,)}``

The mixture weights (K,) travel beside the dict, as in ``tests/reference.py``.

The vMF functions use ``scipy.special.ive``, which is accurate (and finite) only for moderate
arguments: concentrations up to about 1e9 (AMOS returns NaN beyond) and, for large D, not too
close to 0 (ive underflows). The oracle asserts that what it computes is finite instead of
switching to an asymptotic formula: keep vMF test cases at D <= ~50 and 1e-6 <~ kappa <~ 1e8.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special, stats

FAMILIES = ("poisson", "bernoulli", "multinomial", "vmf")

RATE_FLOOR = 1e-10
PROB_FLOOR = 1e-10
KAPPA_MAX = 1e10
#: ive (AMOS) returns NaN for arguments above about 1.07e9: the oracle's kappa solver stops here
KAPPA_ORACLE_MAX = 1e9
EPS = float(np.finfo(np.float64).eps)


# ---------------------------------------------------------------------------------------------
# shared pieces: log-sum-exp, E-step, statistics, mixture weights, the EM loop
# ---------------------------------------------------------------------------------------------


def logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """log sum_k exp(a_ik), stable: max-shifted."""
    m = a.max(axis=1)
    return m + np.log(np.exp(a - m[:, None]).sum(axis=1))


def _e_step(log_dens: np.ndarray, weights) -> tuple[np.ndarray, np.ndarray]:
    """(log p(x_i), r_ik) from the (N, K) component log-densities and the mixture weights."""
    with np.errstate(divide="ignore"):
        log_w = np.log(np.asarray(weights, dtype=np.float64))
    a = log_dens + log_w
    log_prob = logsumexp_rows(a)
    resp = np.exp(a - log_prob[:, None])
    return log_prob, resp


def sufficient_statistics(X, resp, sample_weight=None) -> tuple[np.ndarray, np.ndarray]:
    """(R (K,), S1 (K, D)): R_k = sum_i w_i r_ik and S1_kd = sum_i w_i r_ik x_id, correctly rounded.

    Every family's M-step needs only these two. ``w_i * r_ik`` is rounded once before the sum.
    """
    X = np.asarray(X, dtype=np.float64)
    rw = np.asarray(resp, dtype=np.float64)
    if sample_weight is not None:
        rw = rw * np.asarray(sample_weight, dtype=np.float64)[:, None]
    n_components = rw.shape[1]
    n_features = X.shape[1]
    R = np.array([math.fsum(rw[:, k]) for k in range(n_components)])
    S1 = np.array([[math.fsum(rw[:, k] * X[:, d]) for d in range(n_features)] for k in range(n_components)])
    return R, S1


def _mixture_weights(R: np.ndarray, n_samples: int, sample_weight=None) -> np.ndarray:
    """pi_k = R_k / sum_j R_j; refuses a component the implementations would empty."""
    weight_sum = float(n_samples) if sample_weight is None else math.fsum(np.asarray(sample_weight, float))
    threshold = 10 * EPS * (weight_sum / n_samples)
    # the oracle has no emptying rule: the fixed-iteration tests must never reach it
    assert np.all(R >= threshold), f"component emptied (R = {R}); the oracle does not model that rule"
    return R / math.fsum(R)


def mean_log_likelihood(log_prob: np.ndarray, sample_weight=None) -> float:
    """sum_i w_i log p(x_i) / sum_i w_i (w_i = 1 without sample weights), correctly rounded sums."""
    log_prob = np.asarray(log_prob, dtype=np.float64)
    if sample_weight is None:
        return math.fsum(log_prob) / log_prob.shape[0]
    sw = np.asarray(sample_weight, dtype=np.float64)
    return math.fsum(sw * log_prob) / math.fsum(sw)


def _run_em(e_step, m_step, X, weights, params: dict, n_iter: int, sample_weight=None):
    """``n_iter`` EM iterations; returns ((weights, params), lower_bounds).

    ``lower_bounds[t]`` is the mean log-likelihood of the E-step at the start of iteration
    t + 1, i.e. under the parameters *before* that iteration's M-step (scikit-learn's
    ``lower_bounds_`` convention, as ``run_em`` in ``tests/reference.py``).
    """
    weights = np.asarray(weights, dtype=np.float64).copy()
    params = {key: np.asarray(value, dtype=np.float64).copy() for key, value in params.items()}
    lower_bounds = []
    for _ in range(n_iter):
        log_prob, resp = e_step(X, weights, params)
        lower_bounds.append(mean_log_likelihood(log_prob, sample_weight))
        weights, params = m_step(X, resp, sample_weight)
    return (weights, params), lower_bounds


# ---------------------------------------------------------------------------------------------
# Poisson: log p_k(x) = sum_d [x_d log lambda_kd - lambda_kd - log(x_d!)]
# ---------------------------------------------------------------------------------------------


def poisson_log_density(X, params: dict) -> np.ndarray:
    """(N, K) array of log p_k(x_i) = sum_d log Poisson(x_id; lambda_kd).

    ``X`` holds non-negative integer counts (any float dtype); a non-integer gives -inf.
    """
    X = np.asarray(X, dtype=np.float64)
    rates = np.asarray(params["rates"], dtype=np.float64)
    return stats.poisson.logpmf(X[:, None, :], rates[None, :, :]).sum(axis=2)


def poisson_e_step(X, weights, params: dict):
    """(log p(x_i) (N,), responsibilities (N, K))."""
    return _e_step(poisson_log_density(X, params), weights)


def poisson_m_step(X, resp, sample_weight=None):
    """(weights, {"rates"}): lambda_kd = max(S1_kd / R_k, RATE_FLOOR)."""
    R, S1 = sufficient_statistics(X, resp, sample_weight)
    weights = _mixture_weights(R, np.shape(X)[0], sample_weight)
    rates = np.maximum(S1 / R[:, None], RATE_FLOOR)
    return weights, {"rates": rates}


def run_em_poisson(X, weights, params: dict, n_iter: int, sample_weight=None):
    """``n_iter`` Poisson-mixture EM iterations: ((weights, params), lower_bounds)."""
    return _run_em(poisson_e_step, poisson_m_step, X, weights, params, n_iter, sample_weight)


# ---------------------------------------------------------------------------------------------
# Bernoulli: log p_k(x) = sum_d [x_d log p_kd + (1 - x_d) log(1 - p_kd)]
# ---------------------------------------------------------------------------------------------


def bernoulli_log_density(X, params: dict) -> np.ndarray:
    """(N, K) array of log p_k(x_i) = sum_d [x_id log p_kd + (1 - x_id) log(1 - p_kd)].

    ``X`` holds 0/1 values. log(1 - p) is ``log1p(-p)``: exact also for p near 0.
    """
    X = np.asarray(X, dtype=np.float64)
    p = np.asarray(params["probabilities"], dtype=np.float64)
    x = X[:, None, :]
    return (x * np.log(p)[None] + (1.0 - x) * np.log1p(-p)[None]).sum(axis=2)


def bernoulli_e_step(X, weights, params: dict):
    """(log p(x_i) (N,), responsibilities (N, K))."""
    return _e_step(bernoulli_log_density(X, params), weights)


def bernoulli_m_step(X, resp, sample_weight=None):
    """(weights, {"probabilities"}): p_kd = clip(S1_kd / R_k, PROB_FLOOR, 1 - PROB_FLOOR)."""
    R, S1 = sufficient_statistics(X, resp, sample_weight)
    weights = _mixture_weights(R, np.shape(X)[0], sample_weight)
    p = np.clip(S1 / R[:, None], PROB_FLOOR, 1.0 - PROB_FLOOR)
    return weights, {"probabilities": p}


def run_em_bernoulli(X, weights, params: dict, n_iter: int, sample_weight=None):
    """``n_iter`` Bernoulli-mixture EM iterations: ((weights, params), lower_bounds)."""
    return _run_em(bernoulli_e_step, bernoulli_m_step, X, weights, params, n_iter, sample_weight)


# ---------------------------------------------------------------------------------------------
# multinomial: log p_k(x) = log(n!) - sum_d log(x_d!) + sum_d x_d log p_kd, n = sum_d x_d
# ---------------------------------------------------------------------------------------------


def multinomial_log_density(X, params: dict) -> np.ndarray:
    """(N, K) array of log Mult(x_i; n_i, p_k) with n_i = sum_d x_id, from the gammaln formula.

    (``scipy.stats.multinomial`` replaces the last probability by 1 - sum of the others, which
    changes a floored p_kD by far more than an ulp; the direct formula does not.)
    """
    X = np.asarray(X, dtype=np.float64)
    p = np.asarray(params["probabilities"], dtype=np.float64)
    n = X.sum(axis=1)
    h = special.gammaln(n + 1.0) - special.gammaln(X + 1.0).sum(axis=1)
    return h[:, None] + special.xlogy(X[:, None, :], p[None]).sum(axis=2)


def multinomial_e_step(X, weights, params: dict):
    """(log p(x_i) (N,), responsibilities (N, K))."""
    return _e_step(multinomial_log_density(X, params), weights)


def multinomial_m_step(X, resp, sample_weight=None):
    """(weights, {"probabilities"}): p_k = S1_k / sum_d S1_kd; floored and renormalised if needed."""
    R, S1 = sufficient_statistics(X, resp, sample_weight)
    weights = _mixture_weights(R, np.shape(X)[0], sample_weight)
    p = np.empty_like(S1)
    for k in range(S1.shape[0]):
        p[k] = S1[k] / math.fsum(S1[k])
        if np.any(p[k] < PROB_FLOOR):
            p[k] = np.maximum(p[k], PROB_FLOOR)
            p[k] = p[k] / math.fsum(p[k])
    return weights, {"probabilities": p}


def run_em_multinomial(X, weights, params: dict, n_iter: int, sample_weight=None):
    """``n_iter`` multinomial-mixture EM iterations: ((weights, params), lower_bounds)."""
    return _run_em(multinomial_e_step, multinomial_m_step, X, weights, params, n_iter, sample_weight)


# ---------------------------------------------------------------------------------------------
# von Mises-Fisher on S^{D-1}: log p_k(x) = log C_D(kappa_k) + kappa_k mu_k . x
# ---------------------------------------------------------------------------------------------


def vmf_log_normalizer(n_features: int, kappa) -> np.ndarray:
    """log C_D(kappa) = (D/2 - 1) log kappa - (D/2) log(2 pi) - log I_{D/2-1}(kappa), elementwise.

    log I_nu(kappa) = log(ive(nu, kappa)) + kappa. At kappa = 0, C_D(0) = Gamma(D/2) / (2 pi^(D/2)),
    one over the area of the sphere. Asserts a finite result (ive's accurate range).
    """
    D = n_features
    kappa = np.asarray(kappa, dtype=np.float64)
    nu = D / 2.0 - 1.0
    out = np.empty(kappa.shape)
    zero = kappa == 0.0
    out[zero] = special.gammaln(D / 2.0) - math.log(2.0) - (D / 2.0) * math.log(math.pi)
    k = kappa[~zero]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_bessel = np.log(special.ive(nu, k)) + k
        out[~zero] = nu * np.log(k) - (D / 2.0) * math.log(2.0 * math.pi) - log_bessel
    assert np.all(np.isfinite(out)), f"log C_{D}(kappa) not finite for kappa = {kappa}: outside ive's range"
    return out


def vmf_mean_resultant_length(n_features: int, kappa: float) -> float:
    """A_D(kappa) = I_{D/2}(kappa) / I_{D/2-1}(kappa) as a ratio of ``ive`` values; A_D(0) = 0."""
    if kappa == 0.0:
        return 0.0
    value = float(special.ive(n_features / 2.0, kappa) / special.ive(n_features / 2.0 - 1.0, kappa))
    assert math.isfinite(value), f"A_{n_features}({kappa}) not finite: outside ive's range"
    return value


def vmf_concentration(n_features: int, rbar: float) -> float:
    """kappa with A_D(kappa) = rbar, by Brent's method on kappa to rtol = 4 eps.

    kappa = 0 for rbar = 0 and KAPPA_MAX for rbar >= 1. Roots above ``KAPPA_ORACLE_MAX`` (1e9,
    where ive stops working) raise ``ValueError``: the oracle cannot check them.
    """
    D = n_features
    if rbar <= 0.0:
        return 0.0
    if rbar >= 1.0:
        return KAPPA_MAX

    def f(kappa: float) -> float:
        return vmf_mean_resultant_length(D, kappa) - rbar

    # bracket: A_D is increasing from A_D(0) = 0 < rbar; double the upper end until f changes sign
    lo, hi = 0.0, 1.0
    while f(hi) < 0.0:
        if hi >= KAPPA_ORACLE_MAX:
            raise ValueError(f"kappa for rbar = {rbar!r} exceeds {KAPPA_ORACLE_MAX:g}: outside the oracle")
        lo, hi = hi, min(2.0 * hi, KAPPA_ORACLE_MAX)
    if f(hi) == 0.0:
        return hi
    return float(optimize.brentq(f, lo, hi, xtol=1e-300, rtol=4 * EPS, maxiter=1000))


def vmf_log_density(X, params: dict) -> np.ndarray:
    """(N, K) array of log C_D(kappa_k) + kappa_k mu_k . x_i. Rows of ``X`` should be unit vectors."""
    X = np.asarray(X, dtype=np.float64)
    mu = np.asarray(params["mean_directions"], dtype=np.float64)
    kappa = np.asarray(params["concentrations"], dtype=np.float64)
    n_features = X.shape[1]
    return vmf_log_normalizer(n_features, kappa)[None, :] + kappa[None, :] * (X @ mu.T)


def vmf_e_step(X, weights, params: dict):
    """(log p(x_i) (N,), responsibilities (N, K))."""
    return _e_step(vmf_log_density(X, params), weights)


def vmf_m_step(X, resp, sample_weight=None):
    """(weights, {"mean_directions", "concentrations"}).

    mu_k = S1_k / ||S1_k||, rbar_k = ||S1_k|| / R_k, kappa_k = ``vmf_concentration(D, rbar_k)``.
    If S1_k = 0 exactly (then kappa_k = 0 and mu_k does not matter) mu_k is the first unit vector.
    """
    R, S1 = sufficient_statistics(X, resp, sample_weight)
    weights = _mixture_weights(R, np.shape(X)[0], sample_weight)
    n_components, n_features = S1.shape
    mu = np.zeros((n_components, n_features))
    kappa = np.zeros(n_components)
    for k in range(n_components):
        norm = math.hypot(*S1[k])  # accurately rounded Euclidean norm
        if norm == 0.0:
            mu[k, 0] = 1.0
            continue
        mu[k] = S1[k] / norm
        kappa[k] = vmf_concentration(n_features, norm / R[k])
    return weights, {"mean_directions": mu, "concentrations": kappa}


def run_em_vmf(X, weights, params: dict, n_iter: int, sample_weight=None):
    """``n_iter`` vMF-mixture EM iterations: ((weights, params), lower_bounds)."""
    return _run_em(vmf_e_step, vmf_m_step, X, weights, params, n_iter, sample_weight)


# ---------------------------------------------------------------------------------------------
# data generators: (X float64 C-contiguous, labels, (true weights, true params)); 3 components
# ---------------------------------------------------------------------------------------------

POISSON_WEIGHTS = np.array([0.3, 0.45, 0.25])
_RATE_PATTERNS = np.array(
    [
        [1.0, 6.0, 12.0, 2.0, 0.5, 8.0],
        [9.0, 1.5, 2.0, 11.0, 5.0, 0.5],
        [3.0, 10.0, 0.8, 5.0, 12.0, 2.5],
    ]
)
# halfway to the common mean: the patterns alone are so far apart that EM converges in ~6 steps
POISSON_RATES = 0.5 * _RATE_PATTERNS + 0.5 * _RATE_PATTERNS.mean(axis=0)

BERNOULLI_WEIGHTS = np.array([0.35, 0.4, 0.25])
BERNOULLI_PROBABILITIES = np.array(
    [
        [0.9, 0.85, 0.8, 0.9, 0.15, 0.1, 0.2, 0.1],
        [0.1, 0.2, 0.85, 0.9, 0.8, 0.9, 0.1, 0.15],
        [0.85, 0.1, 0.15, 0.2, 0.9, 0.1, 0.85, 0.9],
    ]
)

MULTINOMIAL_WEIGHTS = np.array([0.4, 0.35, 0.25])
_TOPICS = np.array(
    [
        [10.0, 8.0, 6.0, 4.0, 1.0, 1.0, 0.5, 0.5, 2.0, 1.0],
        [0.5, 1.0, 2.0, 1.0, 10.0, 8.0, 6.0, 1.0, 0.5, 3.0],
        [2.0, 0.5, 1.0, 8.0, 1.0, 0.5, 3.0, 9.0, 10.0, 0.5],
    ]
)
_TOPICS = _TOPICS / _TOPICS.sum(axis=1, keepdims=True)
# 70% shared background: with 20-200 words a row, pure topics are separated in ~3 EM steps
MULTINOMIAL_PROBABILITIES = 0.3 * _TOPICS + 0.7 * _TOPICS.mean(axis=0)

VMF_WEIGHTS = np.array([0.4, 0.35, 0.25])
#: Gaussian noise scale around the mean direction before normalising; kappa ~ 1 / sigma^2
VMF_SIGMA = 0.3


def _labels(rng: np.random.Generator, n: int, weights: np.ndarray) -> np.ndarray:
    return rng.choice(len(weights), size=n, p=weights)


def make_poisson(n: int = 500, seed: int = 0):
    """(X (n, 6) counts as float64, labels, (weights, {"rates"})) from three Poisson components."""
    rng = np.random.default_rng(seed)
    labels = _labels(rng, n, POISSON_WEIGHTS)
    X = rng.poisson(POISSON_RATES[labels]).astype(np.float64)
    return np.ascontiguousarray(X), labels, (POISSON_WEIGHTS.copy(), {"rates": POISSON_RATES.copy()})


def make_bernoulli(n: int = 500, seed: int = 0):
    """(X (n, 8) of 0.0/1.0, labels, (weights, {"probabilities"})) from three Bernoulli components."""
    rng = np.random.default_rng(seed)
    labels = _labels(rng, n, BERNOULLI_WEIGHTS)
    X = (rng.random((n, BERNOULLI_PROBABILITIES.shape[1])) < BERNOULLI_PROBABILITIES[labels]).astype(
        np.float64
    )
    return (
        np.ascontiguousarray(X),
        labels,
        (BERNOULLI_WEIGHTS.copy(), {"probabilities": BERNOULLI_PROBABILITIES.copy()}),
    )


def make_multinomial(n: int = 500, seed: int = 0):
    """(X (n, 10) word counts as float64, labels, (weights, {"probabilities"})): row totals 20-200."""
    rng = np.random.default_rng(seed)
    labels = _labels(rng, n, MULTINOMIAL_WEIGHTS)
    totals = rng.integers(20, 201, size=n)
    X = rng.multinomial(totals, MULTINOMIAL_PROBABILITIES[labels]).astype(np.float64)
    return (
        np.ascontiguousarray(X),
        labels,
        (MULTINOMIAL_WEIGHTS.copy(), {"probabilities": MULTINOMIAL_PROBABILITIES.copy()}),
    )


def vmf_true_mean_directions(n_features: int = 5) -> np.ndarray:
    """(3, D) unit mean directions of ``make_vmf`` (D >= 3): e_0, e_1 and (-1, -1, 1, 0.5, ...)."""
    assert n_features >= 3
    mu = np.zeros((3, n_features))
    mu[0, 0] = 1.0
    mu[1, 1] = 1.0
    mu[2, :3] = [-1.0, -1.0, 1.0]
    mu[2, 3:] = 0.5
    return mu / np.linalg.norm(mu, axis=1, keepdims=True)


def make_vmf(n: int = 500, seed: int = 0, D: int = 5):
    """(X (n, D) unit rows, labels, (weights, {"mean_directions", "concentrations"})).

    Samples are normalised Gaussian draws mu_k + sigma z (not exact vMF draws); the
    "true" concentrations are the small-noise value 1 / sigma^2, an approximation.
    """
    rng = np.random.default_rng(seed)
    mu = vmf_true_mean_directions(D)
    labels = _labels(rng, n, VMF_WEIGHTS)
    Y = mu[labels] + VMF_SIGMA * rng.normal(size=(n, D))
    X = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    truth = {"mean_directions": mu, "concentrations": np.full(3, 1.0 / VMF_SIGMA**2)}
    return np.ascontiguousarray(X), labels, (VMF_WEIGHTS.copy(), truth)


# ---------------------------------------------------------------------------------------------
# explicit initial parameters from given rows: (uniform weights, params)
# ---------------------------------------------------------------------------------------------


def _uniform(rows) -> np.ndarray:
    return np.full(len(rows), 1.0 / len(rows))


def explicit_init_poisson(X, rows):
    """(weights, {"rates": X[rows] + 0.5})."""
    X = np.asarray(X, dtype=np.float64)
    return _uniform(rows), {"rates": X[list(rows)] + 0.5}


def explicit_init_bernoulli(X, rows):
    """(weights, {"probabilities": clip(X[rows], 0.1, 0.9)})."""
    X = np.asarray(X, dtype=np.float64)
    return _uniform(rows), {"probabilities": np.clip(X[list(rows)], 0.1, 0.9)}


def explicit_init_multinomial(X, rows):
    """(weights, {"probabilities": (X[rows] + 1) / row sums})."""
    X = np.asarray(X, dtype=np.float64)
    counts = X[list(rows)] + 1.0
    return _uniform(rows), {"probabilities": counts / counts.sum(axis=1, keepdims=True)}


def explicit_init_vmf(X, rows):
    """(weights, {"mean_directions": X[rows], "concentrations": 1.0}) (rows taken as they are)."""
    X = np.asarray(X, dtype=np.float64)
    return _uniform(rows), {"mean_directions": X[list(rows)].copy(), "concentrations": np.ones(len(rows))}


#: every function of a family by name, for tests parametrized over ``FAMILIES``
REGISTRY = {
    "poisson": {
        "log_density": poisson_log_density,
        "e_step": poisson_e_step,
        "m_step": poisson_m_step,
        "run_em": run_em_poisson,
        "make": make_poisson,
        "explicit_init": explicit_init_poisson,
    },
    "bernoulli": {
        "log_density": bernoulli_log_density,
        "e_step": bernoulli_e_step,
        "m_step": bernoulli_m_step,
        "run_em": run_em_bernoulli,
        "make": make_bernoulli,
        "explicit_init": explicit_init_bernoulli,
    },
    "multinomial": {
        "log_density": multinomial_log_density,
        "e_step": multinomial_e_step,
        "m_step": multinomial_m_step,
        "run_em": run_em_multinomial,
        "make": make_multinomial,
        "explicit_init": explicit_init_multinomial,
    },
    "vmf": {
        "log_density": vmf_log_density,
        "e_step": vmf_e_step,
        "m_step": vmf_m_step,
        "run_em": run_em_vmf,
        "make": make_vmf,
        "explicit_init": explicit_init_vmf,
    },
}
