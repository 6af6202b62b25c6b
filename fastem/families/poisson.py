"""Poisson mixture components: independent counts per feature.

log p_k(x) = sum_d [x_d log lambda_kd - lambda_kd - log(x_d!)], so theta_k = log lambda_k,
c_k = -sum_d lambda_kd and h(x) = -sum_d log(x_d!) (a table lookup in the kernel).
M-step: lambda_kd = S1_kd / R_k, the responsibility-weighted mean count.

Degenerate rule: a rate whose every responsible count is 0 has maximum-likelihood
value 0, where log lambda = -inf would make a later nonzero count impossible
(log-likelihood -inf). Rates are therefore held at ``RATE_FLOOR = 1e-10``
(a count of 1 then costs log(1e-10) = -23 nats), with a
:class:`~fastem.DegenerateParameterWarning`.

Missing counts (``missing="marginalize"``): a NaN drops out of its feature's
term, and lambda_kd = S1_kd / (R_k - M_kd), the mean over the rows where feature
d is observed (see ``families/_linear.py``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .._kernels.checks import RULE_COUNTS
from .._kernels.expfam import BASE_CODES
from ._linear import LinearFamily, LinearParams
from .base import DegenerateParameterWarning

__all__ = ["RATE_FLOOR", "PoissonFamily"]

RATE_FLOOR = 1e-10

_FLOOR_WARNING = (
    "Some Poisson rates fell below 1e-10 (every count of a feature in a component was 0) and were held "
    "at 1e-10, so that later nonzero counts keep a finite log-likelihood."
)


@dataclass(frozen=True)
class PoissonFamily(LinearFamily):
    """Independent Poisson counts per feature (see ``families/base.py`` for the protocol)."""

    name = "poisson"
    base_code = BASE_CODES["poisson"]
    rule = RULE_COUNTS
    parameter_names = ("rates",)
    #: a pseudocount prior of ``fastem.priors`` (MAP-EM), or None
    prior: object = None
    #: "error": NaN is refused; "marginalize": NaN marks a missing entry (see ``families/_linear.py``)
    missing: str = "error"

    def natural(self, params: LinearParams, dtype) -> tuple[np.ndarray, np.ndarray]:
        rates = params.arrays["rates"]
        return np.log(rates).astype(dtype), -rates.sum(axis=1)

    def natural_terms(self, params: LinearParams) -> np.ndarray:
        """c_kd = -lambda_kd, the per-feature parts of c_k (what a missing entry takes out)."""
        return -np.asarray(params.arrays["rates"], dtype=np.float64)

    def from_moments(self, R: np.ndarray, S1: np.ndarray) -> dict[str, np.ndarray]:
        rates = S1 / (R if R.ndim == 2 else R[:, None])  # per-feature denominators with missing values
        if np.any(rates < RATE_FLOOR):
            warnings.warn(_FLOOR_WARNING, DegenerateParameterWarning, stacklevel=4)
            rates = np.maximum(rates, RATE_FLOOR)
        return {"rates": rates}

    def sample(self, params: LinearParams, counts: np.ndarray, rng) -> np.ndarray:
        rates = params.arrays["rates"]
        parts = [rng.poisson(rates[k], size=(int(n), rates.shape[1])) for k, n in enumerate(counts)]
        return np.vstack(parts).astype(np.float64)

    def n_parameters(self, params: LinearParams) -> int:
        K, D = params.arrays["rates"].shape
        return K * D + K - 1
