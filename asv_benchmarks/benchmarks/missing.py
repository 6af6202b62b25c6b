"""EM iterations with missing entries (NaN marginalised exactly) beside the same data complete.

Issue 12's cases at a size that keeps a quick ``asv run`` short (the targets
are stated for N=1e6, D=16, K=16 full; ``scripts/bench_missing.py`` runs that
size side by side in one process): complete data, 10% of the entries missing
completely at random, and every row in one of 3 missingness patterns. Same
rules as ``bench_em.py``: the same pinned parameters every run, data cached per
process, numba compilation in ``setup``.
"""

from __future__ import annotations

import functools

import numpy as np

from .common import Benchmark, overlapping_data

VARIANTS = ["complete", "mcar10", "patterns3"]
COVARIANCE_TYPES = ["full", "diag"]
N_SAMPLES, N_FEATURES, N_COMPONENTS = 200_000, 16, 16
THREE_PATTERNS = ([0], [1, 2], [3, 4])


@functools.lru_cache(maxsize=4)
def holed_data(variant: str):
    """The overlapping data of ``common.py`` with the variant's holes, and its start (cached per process)."""
    X, start = overlapping_data(N_SAMPLES, N_FEATURES, N_COMPONENTS)
    X = X.copy()
    rng = np.random.default_rng(1)
    if variant == "mcar10":
        hole = rng.random(X.shape) < 0.10
        full = hole.all(axis=1)
        hole[full, rng.integers(0, N_FEATURES, size=int(full.sum()))] = False
        X[hole] = np.nan
    elif variant == "patterns3":
        which = rng.integers(0, 3, size=N_SAMPLES)
        for p, cols in enumerate(THREE_PATTERNS):
            for c in cols:
                X[which == p, c] = np.nan
    return X, start


class MissingIteration(Benchmark):
    """One EM iteration (exact E-step over the observed entries + expected statistics, then the M-step)."""

    param_names = ["covariance_type", "variant"]
    params = (COVARIANCE_TYPES, VARIANTS)

    def setup(self, covariance_type, variant):
        try:
            from fastem.families.gaussian import GaussianFamily, GaussianParams

            family = GaussianFamily(covariance_type, 1e-6, missing="marginalize")
        except (ImportError, TypeError):  # a fastem without missing-value support
            raise NotImplementedError("missing='marginalize' is not available") from None
        self.X, start = holed_data(variant)
        means, cov = start["means"], start["covariance"]
        covariances = np.tile(cov, (N_COMPONENTS, 1, 1)) if covariance_type == "full" else (
            np.tile(np.diag(cov), (N_COMPONENTS, 1)))  # fmt: skip
        weights = np.full(N_COMPONENTS, 1.0 / N_COMPONENTS)
        self.params = GaussianParams.from_covariances(covariance_type, weights, means, covariances)
        self.family = family
        self.iterate()  # JIT warm-up, outside the timed region

    def iterate(self):
        stats = self.family.zero_stats(self.params)
        self.family.accumulate(self.X, None, self.params, stats)
        return self.family.m_step(stats)

    def time_iteration(self, *args):
        self.iterate()

    def peakmem_iteration(self, *args):
        self.iterate()

    def track_log_likelihood(self, *args):
        stats = self.family.zero_stats(self.params)
        self.family.accumulate(self.X, None, self.params, stats)
        return stats.mean_log_likelihood

    track_log_likelihood.unit = "nats/sample"
