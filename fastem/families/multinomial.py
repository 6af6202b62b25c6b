"""Multinomial mixture components: count vectors (bag-of-words, categorical one-hots).

log p_k(x) = log(n!) - sum_d log(x_d!) + sum_d x_d log p_kd with n = sum_d x_d, so
theta_k = log p_k, c_k = 0 and h(x) = log(n!) - sum_d log(x_d!). M-step:
p_kd = S1_kd / sum_e S1_ke. scipy.sparse CSR input runs through a sparse pass
(the E-step a sparse product), without densifying.

Rows must hold at least one count (an empty document carries no information
about its component and is refused). Degenerate rule: a word never seen in a
component would get probability 0 and make that word impossible there; such
probabilities are raised to ``PROB_FLOOR = 1e-10`` and the row renormalised,
with a :class:`~fastem.DegenerateParameterWarning`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .._kernels.checks import RULE_COUNT_ROWS
from .._kernels.expfam import BASE_CODES
from ._linear import LinearFamily, LinearParams
from .base import DegenerateParameterWarning

__all__ = ["PROB_FLOOR", "MultinomialFamily"]

PROB_FLOOR = 1e-10

_FLOOR_WARNING = (
    "Some multinomial probabilities fell below 1e-10 (a category never occurred in a component) and were "
    "raised to 1e-10 (rows renormalised), so that the category keeps a finite log-likelihood."
)


@dataclass(frozen=True)
class MultinomialFamily(LinearFamily):
    """Multinomial count vectors (see ``families/base.py`` for the protocol)."""

    name = "multinomial"
    base_code = BASE_CODES["multinomial"]
    rule = RULE_COUNT_ROWS
    parameter_names = ("probabilities",)
    #: a pseudocount prior of ``fastem.priors`` (MAP-EM), or None
    prior: object = None
    accepts_sparse = True

    def natural(self, params: LinearParams, dtype) -> tuple[np.ndarray, np.ndarray]:
        p = params.arrays["probabilities"]
        return np.log(p).astype(dtype), np.zeros(p.shape[0])

    def from_moments(self, R: np.ndarray, S1: np.ndarray) -> dict[str, np.ndarray]:
        p = S1 / S1.sum(axis=1, keepdims=True)
        if np.any(p < PROB_FLOOR):
            warnings.warn(_FLOOR_WARNING, DegenerateParameterWarning, stacklevel=4)
            p = np.maximum(p, PROB_FLOOR)
            p = p / p.sum(axis=1, keepdims=True)
        return {"probabilities": p}

    def sample(self, params: LinearParams, counts: np.ndarray, rng, n_trials: int = 100) -> np.ndarray:
        """Draws of ``n_trials`` counts each (a multinomial mixture does not model the row totals)."""
        p = params.arrays["probabilities"]
        parts = [rng.multinomial(n_trials, p[k], size=int(n)) for k, n in enumerate(counts)]
        return np.vstack(parts).astype(np.float64)

    def n_parameters(self, params: LinearParams) -> int:
        K, D = params.arrays["probabilities"].shape
        return K * (D - 1) + K - 1
