"""The in-memory executor: runs a family's fused pass over an array held in memory.

Executors turn (rows, parameters) into the family's additive statistics. The
driver in ``_em.py`` only sees ``executor.accumulate(params)``, so streaming
and Dask executors stand in for this one, and no executor knows which family
it runs: it calls ``family.accumulate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .families.base import NO_F64, NO_I64, NO_RESP


@dataclass
class FitPlan:
    """What ``fit`` needs from its input, whatever the input is."""

    #: runs the passes: ``executor.accumulate(params) -> statistics``
    executor: object
    #: rows that initialisation may read in memory (all rows, or a sample of them)
    init_X: np.ndarray
    init_sample_weight: np.ndarray | None
    n_samples: int
    n_features: int
    feature_names: np.ndarray | None = None


class ArrayExecutor:
    """Runs E-steps on a validated in-memory array (dense, or CSR for families that take it)."""

    def __init__(self, X, sample_weight: np.ndarray | None = None, family=None):
        self.X = X
        self.sample_weight = sample_weight
        self.family = family

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def accumulate(self, params):
        """One fused E-step + statistics pass over all rows."""
        stats = self.family.zero_stats(params)
        self.family.accumulate(self.X, self.sample_weight, params, stats, 0)
        return stats

    def score(self, params, logprob: bool = False, label: bool = False, resp: bool = False) -> dict:
        """Per-row outputs of the E-step: log-likelihood, label and/or responsibilities."""
        n = self.n_samples
        out = {
            "logprob": np.empty(n) if logprob else NO_F64,
            "label": np.empty(n, dtype=np.int64) if label else NO_I64,
            "resp": np.empty((n, params.n_components)) if resp else NO_RESP,
        }
        self.family.accumulate(self.X, None, params, None, 0, out["logprob"], out["label"], out["resp"])
        return out
