"""Pinned fits of the linear families: Poisson, Bernoulli, multinomial (dense and CSR), von Mises-Fisher.

Same rules as ``bench_em.py``: explicit initial parameters, ``tol=0``,
``n_init=1``, fixed ``max_iter``, ``random_state=0``, data cached per
process, numba compilation in ``setup``. Sizes keep one fit well under a
second here, so a quick ``asv run`` stays short; ``scripts/compare_families.py``
has the full-size cases.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from .common import Benchmark

FAMILIES = ["poisson", "bernoulli", "multinomial", "multinomial-csr", "vmf"]

#: (n_samples, n_features, n_components) per family
SHAPES = {
    "poisson": (100_000, 50, 20),
    "bernoulli": (100_000, 50, 20),
    "multinomial": (100_000, 50, 20),
    "multinomial-csr": (50_000, 500, 20),
    "vmf": (50_000, 128, 16),
}


@functools.lru_cache(maxsize=8)
def family_data(family: str):
    """Seeded data with overlapping clusters, and the pinned initial parameters (cached per process)."""
    n, d, k = SHAPES[family]
    rng = np.random.default_rng(0)
    labels = rng.integers(0, k, size=n)
    weights = np.full(k, 1.0 / k)
    if family == "poisson":
        rates = rng.uniform(1.0, 5.0, size=(k, d))
        X = rng.poisson(rates[labels]).astype(np.float64)
        return X, dict(weights_init=weights, rates_init=rates * rng.uniform(0.7, 1.3, size=(k, d)))
    if family == "bernoulli":
        probs = rng.uniform(0.2, 0.8, size=(k, d))
        X = (rng.random((n, d)) < probs[labels]).astype(np.float64)
        init = np.clip(probs + rng.uniform(-0.1, 0.1, size=(k, d)), 0.05, 0.95)
        return X, dict(weights_init=weights, probabilities_init=init)
    if family == "multinomial":  # 100 counts over 50 categories
        probs = rng.dirichlet(np.full(d, 2.0), size=k)
        X = rng.multinomial(100, probs[labels]).astype(np.float64)
        init = 0.7 * probs + 0.3 * rng.dirichlet(np.full(d, 2.0), size=k)
        return X, dict(weights_init=weights, probabilities_init=init)
    if family == "multinomial-csr":  # 20-word documents over a 500-word vocabulary, sparse topics
        import scipy.sparse as sp

        probs = rng.dirichlet(np.full(d, 0.1), size=k)
        probs = (probs + 1e-4) / (1 + 1e-4 * d)  # every word possible in every topic
        words_per_doc = 20
        rows = np.repeat(np.arange(n), words_per_doc)
        words = np.empty(n * words_per_doc, dtype=np.int64)
        for j in range(k):  # one draw per topic: fast, unlike a multinomial per row
            mask = labels[rows] == j
            words[mask] = rng.choice(d, size=int(mask.sum()), p=probs[j])
        X = sp.csr_matrix((np.ones(rows.size), (rows, words)), shape=(n, d))  # duplicates summed
        init = 0.7 * probs + 0.3 * rng.dirichlet(np.full(d, 2.0), size=k)
        return X, dict(weights_init=weights, probabilities_init=init)
    centers = rng.normal(size=(k, d))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    X = (6.0 * centers[labels] + rng.normal(size=(n, d))).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    mu = centers + rng.normal(scale=0.05, size=(k, d))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    return X, dict(weights_init=weights, mean_directions_init=mu, concentrations_init=np.full(k, 50.0))


def pinned_family_estimator(family: str, init: dict, max_iter: int = 10):
    import fastem

    cls = {
        "poisson": fastem.PoissonMixture,
        "bernoulli": fastem.BernoulliMixture,
        "multinomial": fastem.MultinomialMixture,
        "multinomial-csr": fastem.MultinomialMixture,
        "vmf": fastem.VonMisesFisherMixture,
    }[family]
    n_components = init["weights_init"].shape[0]
    return cls(n_components, tol=0.0, max_iter=max_iter, n_init=1, random_state=0, **init)


class FamilyFit(Benchmark):
    """A pinned 10-iteration fit per family: time, peak memory and the log-likelihood it reaches."""

    param_names = ["family"]
    params = (FAMILIES,)

    def setup(self, family):
        self.X, init = family_data(family)
        self.estimator = pinned_family_estimator(family, init)
        warnings.simplefilter("ignore")
        self.estimator.fit(self.X[:5000])  # JIT warm-up, outside the timed region

    def time_fit(self, family):
        self.estimator.fit(self.X)

    def peakmem_fit(self, family):
        self.estimator.fit(self.X)

    def track_log_likelihood(self, family):
        return float(self.estimator.fit(self.X).score(self.X))

    track_log_likelihood.unit = "nats/sample"


class FamilyScoring(Benchmark):
    """Blockwise scoring of a fitted family model (one E-step's worth of work, no M-step)."""

    param_names = ["family"]
    params = (FAMILIES,)

    def setup(self, family):
        self.X, init = family_data(family)
        warnings.simplefilter("ignore")
        self.estimator = pinned_family_estimator(family, init, max_iter=2).fit(self.X)
        self.estimator.score_samples(self.X[:1000])

    def time_score_samples(self, family):
        self.estimator.score_samples(self.X)
