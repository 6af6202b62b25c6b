"""von Mises-Fisher mixture components: unit vectors on the sphere S^(D-1).

log p_k(x) = log C_D(kappa_k) + kappa_k mu_k . x, so theta_k = kappa_k mu_k and
c_k = log C_D(kappa_k), C_D(kappa) = kappa^(D/2-1) / ((2 pi)^(D/2) I_(D/2-1)(kappa)),
computed stably for large D and kappa in ``_kernels/vmf.py``. M-step
(Banerjee et al. 2005): mu_k = S1_k / ||S1_k||, and kappa_k solves
A_D(kappa) = rbar_k = ||S1_k|| / R_k exactly (safeguarded Newton from the
Banerjee approximation, not the approximation alone).

float32 data stay float32 in the kernel's product (theta is cast to float32);
every statistic accumulates in float64.

Data rule: rows must have unit norm (within 1e-4). ``normalize=True`` on the
estimator divides each row by its norm instead (on a copy of each chunk);
rows of norm 0 are refused either way. Degenerate rule: a component whose
points coincide has rbar = 1 and kappa = inf; kappa is held at ``KAPPA_MAX =
1e10`` with a :class:`~fastem.DegenerateParameterWarning`. A component whose
resultant is exactly 0 gets kappa = 0 (the uniform distribution).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .._kernels.checks import NONFINITE, NOT_UNIT, RULE_FINITE, RULE_UNIT_ROWS, _first_invalid
from .._kernels.vmf import KAPPA_MAX, log_vmf_normalizer, sample_vmf, solve_concentration
from ._linear import LinearFamily, LinearParams
from .base import DegenerateParameterWarning, Invalid

__all__ = ["KAPPA_MAX", "UNIT_NORM_TOL", "VonMisesFisherFamily"]

#: largest allowed | ||x|| - 1 | of a data row
UNIT_NORM_TOL = 1e-4

_CAP_WARNING = (
    "A von Mises-Fisher concentration reached 1e10 (the points of a component coincide) and was held "
    "there, so that the component stays a proper distribution."
)


@dataclass(frozen=True)
class VonMisesFisherFamily(LinearFamily):
    """von Mises-Fisher directions (see ``families/base.py`` for the protocol)."""

    normalize: bool = False
    name = "vmf"
    rule = RULE_UNIT_ROWS
    rule_tol = UNIT_NORM_TOL
    parameter_names = ("mean_directions", "concentrations")

    @property
    def config(self) -> dict:
        return {"normalize": bool(self.normalize)}

    def natural(self, params: LinearParams, dtype) -> tuple[np.ndarray, np.ndarray]:
        mu, kappa = params.arrays["mean_directions"], params.arrays["concentrations"]
        return (kappa[:, None] * mu).astype(dtype), log_vmf_normalizer(mu.shape[1], kappa)

    def from_moments(self, R: np.ndarray, S1: np.ndarray) -> dict[str, np.ndarray]:
        norm = np.sqrt(np.einsum("kd,kd->k", S1, S1))
        mu = np.zeros_like(S1)
        live = norm > 0
        mu[live] = S1[live] / norm[live, None]
        mu[~live, 0] = 1.0  # any direction: kappa is 0 there
        rbar = np.minimum(norm / R, 1.0)
        kappa = solve_concentration(S1.shape[1], rbar)
        if np.any(kappa >= KAPPA_MAX):
            warnings.warn(_CAP_WARNING, DegenerateParameterWarning, stacklevel=4)
        return {"mean_directions": mu, "concentrations": kappa}

    def from_point(self, x: np.ndarray, params: LinearParams) -> dict[str, np.ndarray]:
        mu = x / max(np.linalg.norm(x), np.finfo(np.float64).tiny)
        kappa = float(np.mean(params.arrays["concentrations"]))
        return {"mean_directions": mu[None, :], "concentrations": np.array([kappa])}

    def accumulate(self, X, sample_weight, params, stats, row_offset: int = 0, *outputs) -> None:
        if self.normalize:
            X = _normalized(X)
        super().accumulate(X, sample_weight, params, stats, row_offset, *outputs)

    def first_invalid(self, X) -> Invalid | None:
        if not self.normalize:
            return super().first_invalid(X)
        row, col, code = _first_invalid(X, RULE_FINITE, 0.0)
        if code == 0:
            norms = np.sqrt(np.einsum("nd,nd->n", X, X, dtype=np.float64))
            zero = np.flatnonzero(norms == 0)
            if not zero.size:
                return None
            return Invalid(int(zero[0]), -1, "a row of norm 0", "a zero vector has no direction",
                           "Remove all-zero rows before fitting.")  # fmt: skip
        return self._describe(X, int(row), int(col), NONFINITE if code == NONFINITE else NOT_UNIT)

    def initial_params(self, X, sample_weight, **kwargs) -> LinearParams:
        if self.normalize:
            X = _normalized(X)
        return super().initial_params(X, sample_weight, **kwargs)

    def sample(self, params: LinearParams, counts: np.ndarray, rng) -> np.ndarray:
        mu, kappa = params.arrays["mean_directions"], params.arrays["concentrations"]
        parts = [sample_vmf(mu[k], float(kappa[k]), int(n), rng) for k, n in enumerate(counts)]
        return np.vstack(parts)

    def n_parameters(self, params: LinearParams) -> int:
        K, D = params.arrays["mean_directions"].shape
        return K * (D - 1) + K + K - 1


def _normalized(X: np.ndarray) -> np.ndarray:
    """Rows divided by their norms, in the data's dtype (a copy; zero rows were refused)."""
    norms = np.sqrt(np.einsum("nd,nd->n", X, X, dtype=np.float64))
    return np.ascontiguousarray(X / norms[:, None].astype(X.dtype))
