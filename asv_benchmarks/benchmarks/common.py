"""Shared pieces of the asv suite: pinned estimators and cached data.

In the style of scikit-learn's asv_benchmarks: every timed run does the same
work (explicit initial parameters, ``tol=0``, fixed ``max_iter``, ``n_init=1``,
``random_state=0``), data generators are cached per process, and numba
compilation happens in ``setup`` (never inside ``time_*``).
"""

from __future__ import annotations

import functools

import numpy as np

#: Rows per benchmark case, chosen so one iteration takes 10-500 ms here.
ROWS_BY_FEATURES = {2: 400_000, 8: 400_000, 16: 100_000, 64: 10_000}


class Benchmark:
    """Base class: fixed repeat/number so that runs are comparable across commits."""

    timeout = 600
    repeat = (3, 7, 60.0)
    number = 1
    warmup_time = 0.0
    processes = 1


@functools.lru_cache(maxsize=8)
def mixture_data(n_samples: int, n_features: int, n_components: int, dtype: str = "float64"):
    """A seeded Gaussian mixture sample and the true means (cached per process)."""
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4.0, size=(n_components, n_features))
    labels = rng.integers(0, n_components, size=n_samples)
    X = centers[labels] + rng.normal(size=(n_samples, n_features))
    return np.ascontiguousarray(X, dtype=dtype), centers


#: overlapping data: median distance from a centre to its nearest other centre, in within-cluster sd
OVERLAP_NEAREST_SD = 4.0


@functools.lru_cache(maxsize=8)
def overlapping_data(n_samples: int, n_features: int, n_components: int, dtype: str = "float64"):
    """Unit-variance clusters 3-5 sd apart and a start drawn from the data (cached per process).

    The centres are rescaled so that the median distance to the nearest other
    centre is ``OVERLAP_NEAREST_SD``; responsibilities are genuinely mixed (unlike
    :func:`mixture_data`, whose blobs lie about 16 sd apart). Returns ``(X, start)``:
    the initial means are ``n_components`` distinct random rows, every component
    starts with the data covariance, weights are uniform (as scripts/compare_peers.py).
    """
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(n_components, n_features))
    dist = np.sqrt(((centers[:, None] - centers[None]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    centers *= OVERLAP_NEAREST_SD / np.median(dist.min(axis=1))
    X = centers[rng.integers(0, n_components, size=n_samples)] + rng.normal(size=(n_samples, n_features))
    rows = np.sort(rng.choice(n_samples, size=n_components, replace=False))
    start = {"means": X[rows].copy(), "covariance": np.cov(X.T)}
    return np.ascontiguousarray(X, dtype=dtype), start


def overlapping_init(covariance_type: str, start: dict) -> dict:
    """Explicit initial parameters from :func:`overlapping_data`'s start, in the estimator's format."""
    means, cov = start["means"], start["covariance"]
    n_components, n_features = means.shape
    precision = np.linalg.inv(cov)
    precisions = {
        "full": np.tile(precision, (n_components, 1, 1)),
        "tied": precision,
        "diag": np.tile(1.0 / np.diag(cov), (n_components, 1)),
        "spherical": np.full(n_components, 1.0 / np.mean(np.diag(cov))),
    }[covariance_type]
    return dict(weights_init=np.full(n_components, 1.0 / n_components), means_init=means.copy(),
                precisions_init=precisions)  # fmt: skip


def pinned_init(covariance_type: str, centers: np.ndarray) -> dict:
    """Explicit initial parameters: every run starts from the same point."""
    n_components, n_features = centers.shape
    precisions = {
        "full": np.tile(np.eye(n_features), (n_components, 1, 1)),
        "tied": np.eye(n_features),
        "diag": np.ones((n_components, n_features)),
        "spherical": np.ones(n_components),
    }[covariance_type]
    return dict(
        weights_init=np.full(n_components, 1.0 / n_components),
        means_init=centers + 0.5,
        precisions_init=precisions,
    )


def pinned_estimator(covariance_type: str, centers: np.ndarray, max_iter: int = 5):
    from fastem import GaussianMixture

    return GaussianMixture(
        centers.shape[0],
        covariance_type=covariance_type,
        tol=0.0,
        max_iter=max_iter,
        n_init=1,
        random_state=0,
        **pinned_init(covariance_type, centers),
    )
