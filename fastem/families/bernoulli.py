"""Bernoulli mixture components: independent binary features.

log p_k(x) = sum_d [x_d log p_kd + (1 - x_d) log(1 - p_kd)], so theta_k = logit p_k and
c_k = sum_d log(1 - p_kd) (computed with log1p). M-step: p_kd = S1_kd / R_k.

Degenerate rule: a probability driven to 0 or 1 (a feature constant within a
component) would make the opposite value impossible. Probabilities are held in
[PROB_FLOOR, 1 - PROB_FLOOR] with ``PROB_FLOOR = 1e-10``, with a
:class:`~fastem.DegenerateParameterWarning`.

Missing entries (``missing="marginalize"``): a NaN drops out of its feature's
term, and p_kd = S1_kd / (R_k - M_kd), the mean over the rows where feature d is
observed (see ``families/_linear.py``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .._kernels.checks import RULE_BINARY
from ._linear import LinearFamily, LinearParams
from .base import DegenerateParameterWarning

__all__ = ["PROB_FLOOR", "BernoulliFamily"]

PROB_FLOOR = 1e-10

_CLIP_WARNING = (
    "Some Bernoulli probabilities reached 0 or 1 (a feature was constant within a component) and were "
    "held in [1e-10, 1 - 1e-10], so that the other value keeps a finite log-likelihood."
)


@dataclass(frozen=True)
class BernoulliFamily(LinearFamily):
    """Independent binary features (see ``families/base.py`` for the protocol)."""

    name = "bernoulli"
    rule = RULE_BINARY
    parameter_names = ("probabilities",)
    #: a pseudocount prior of ``fastem.priors`` (MAP-EM), or None
    prior: object = None
    #: "error": NaN is refused; "marginalize": NaN marks a missing entry (see ``families/_linear.py``)
    missing: str = "error"

    def natural(self, params: LinearParams, dtype) -> tuple[np.ndarray, np.ndarray]:
        p = params.arrays["probabilities"]
        log1m = np.log1p(-p)
        return (np.log(p) - log1m).astype(dtype), log1m.sum(axis=1)

    def natural_terms(self, params: LinearParams) -> np.ndarray:
        """c_kd = log(1 - p_kd), the per-feature parts of c_k (what a missing entry takes out)."""
        return np.log1p(-np.asarray(params.arrays["probabilities"], dtype=np.float64))

    def from_moments(self, R: np.ndarray, S1: np.ndarray) -> dict[str, np.ndarray]:
        p = S1 / (R if R.ndim == 2 else R[:, None])  # per-feature denominators with missing values
        if np.any(p < PROB_FLOOR) or np.any(p > 1.0 - PROB_FLOOR):
            warnings.warn(_CLIP_WARNING, DegenerateParameterWarning, stacklevel=4)
            p = np.clip(p, PROB_FLOOR, 1.0 - PROB_FLOOR)
        return {"probabilities": p}

    def sample(self, params: LinearParams, counts: np.ndarray, rng) -> np.ndarray:
        p = params.arrays["probabilities"]
        parts = [
            (rng.uniform(size=(int(n), p.shape[1])) < p[k]).astype(np.float64) for k, n in enumerate(counts)
        ]
        return np.vstack(parts)

    def n_parameters(self, params: LinearParams) -> int:
        K, D = params.arrays["probabilities"].shape
        return K * D + K - 1
