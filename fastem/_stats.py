"""Gaussian mixture parameters and their sufficient statistics.

The statistics (R_k, S1_k, S2_k, log-likelihood sum) are additive over any split
of the rows; every executor produces them and the driver turns them into new
parameters with :meth:`SufficientStats.to_params` (the M-step). Moments are kept
around a per-component *shift* (the means the E-step used), which keeps them
accurate when the data sit far from the origin:

    S1_k = sum_i w_i r_ik (x_i - m_k)
    S2_k = sum_i w_i r_ik (x_i - m_k)(x_i - m_k)^T
    mu_k = m_k + S1_k / R_k,   Sigma_k = S2_k / R_k - (S1_k / R_k)(S1_k / R_k)^T
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._kernels._config import COV_CODES
from ._kernels.linalg import _cholesky_lower, _precision_cholesky

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

#: A component whose responsibility mass R_k falls below this many average
#: samples is "emptied" (scikit-learn's stabiliser 10 * eps, relative).
EMPTY_MASS = 10 * np.finfo(np.float64).eps

ILL_DEFINED_COVARIANCE = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)


def covariance_shape(covariance_type: str, n_components: int, n_features: int) -> tuple:
    """Shape of ``covariances_`` / ``precisions_`` for a covariance type."""
    return {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]


def packed_s2_shape(covariance_type: str, n_components: int, n_features: int) -> tuple:
    """Shape of the second-moment accumulator the kernel fills."""
    return {
        "full": (n_components, n_features, n_features),
        "tied": (1, n_features, n_features),
        "diag": (n_components, 1, n_features),
        "spherical": (n_components, 1, n_features),
    }[covariance_type]


def _flip(a: np.ndarray) -> np.ndarray:
    return a[..., ::-1, ::-1]


def precisions_cholesky_from_covariances(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """Upper-triangular U with U U^T = Sigma^-1 (diag/spherical: 1/sqrt(var)).

    Raises ``ValueError`` when a covariance is not positive definite.
    """
    covariances = np.asarray(covariances, dtype=np.float64)
    if not np.all(np.isfinite(covariances)):
        raise ValueError(ILL_DEFINED_COVARIANCE)
    if covariance_type in ("full", "tied"):
        mats = np.ascontiguousarray(covariances.reshape((-1,) + covariances.shape[-2:]))
        prec_chol = np.empty_like(mats)
        if _precision_cholesky(mats, prec_chol) >= 0:
            raise ValueError(ILL_DEFINED_COVARIANCE)
        prec_chol = prec_chol.reshape(covariances.shape)
    else:
        if np.any(covariances <= 0.0):
            raise ValueError(ILL_DEFINED_COVARIANCE)
        prec_chol = 1.0 / np.sqrt(covariances)
    if not np.all(np.isfinite(prec_chol)):
        raise ValueError(ILL_DEFINED_COVARIANCE)
    return np.ascontiguousarray(prec_chol)


def precisions_cholesky_from_precisions(precisions: np.ndarray, covariance_type: str) -> np.ndarray:
    """Upper-triangular U with U U^T = P, from precision matrices P."""
    precisions = np.asarray(precisions, dtype=np.float64)
    if covariance_type in ("full", "tied"):
        # the Cholesky factor of the flipped matrix, flipped back, is upper triangular
        flipped = np.ascontiguousarray(_flip(precisions)).reshape((-1,) + precisions.shape[-2:])
        lower = np.empty_like(flipped)
        if _cholesky_lower(flipped, lower) >= 0:
            raise ValueError("precisions must be symmetric positive definite.")
        return np.ascontiguousarray(_flip(lower.reshape(precisions.shape)))
    return np.sqrt(precisions)


def covariances_from_precisions_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Sigma = (U U^T)^-1 = U^-T U^-1."""
    if covariance_type in ("full", "tied"):
        inv_u = np.linalg.inv(prec_chol)
        return np.swapaxes(inv_u, -1, -2) @ inv_u
    return 1.0 / prec_chol**2


def precisions_from_precisions_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """P = U U^T (diag/spherical: U^2)."""
    if covariance_type in ("full", "tied"):
        return prec_chol @ np.swapaxes(prec_chol, -1, -2)
    return prec_chol**2


@dataclass
class GaussianParams:
    """Parameters of a Gaussian mixture in scikit-learn's shapes."""

    covariance_type: str
    weights: np.ndarray
    means: np.ndarray
    precisions_cholesky: np.ndarray
    covariances: np.ndarray | None = None

    @classmethod
    def from_covariances(cls, covariance_type, weights, means, covariances) -> GaussianParams:
        covariances = np.asarray(covariances, dtype=np.float64)
        return cls(
            covariance_type,
            np.asarray(weights, dtype=np.float64),
            np.ascontiguousarray(means, dtype=np.float64),
            precisions_cholesky_from_covariances(covariances, covariance_type),
            covariances,
        )

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    def filled(self) -> GaussianParams:
        """A copy whose ``covariances`` are set (computed from the precisions if needed)."""
        cov = self.covariances
        if cov is None:
            cov = covariances_from_precisions_cholesky(self.precisions_cholesky, self.covariance_type)
        return GaussianParams(
            self.covariance_type,
            self.weights.copy(),
            self.means.copy(),
            self.precisions_cholesky.copy(),
            np.array(cov, dtype=np.float64),
        )

    def packed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log_norm, means, prec) in the layout the kernels read.

        ``log_norm[k] = log pi_k + log det U_k - D/2 log(2 pi)``.
        """
        n_components, n_features = self.means.shape
        pc = self.precisions_cholesky
        kind = self.covariance_type
        if kind == "full":
            log_det = np.log(np.diagonal(pc, axis1=1, axis2=2)).sum(axis=1)
            prec = pc
        elif kind == "tied":
            log_det = np.full(n_components, np.log(np.diag(pc)).sum())
            prec = pc[None]
        elif kind == "diag":
            log_det = np.log(pc).sum(axis=1)
            prec = pc[:, None, :]
        else:
            log_det = n_features * np.log(pc)
            prec = pc[:, None, None]
        with np.errstate(divide="ignore"):  # a zero weight gives log 0 = -inf: never chosen
            log_weights = np.log(self.weights)
        log_norm = log_weights + log_det - 0.5 * n_features * np.log(2 * np.pi)
        return (
            np.ascontiguousarray(log_norm, dtype=np.float64),
            np.ascontiguousarray(self.means, dtype=np.float64),
            np.ascontiguousarray(prec, dtype=np.float64),
        )


@dataclass
class SufficientStats:
    """Additive sufficient statistics of one E-step, around the shift ``shift``."""

    covariance_type: str
    shift: np.ndarray
    R: np.ndarray
    S1: np.ndarray
    S2: np.ndarray
    #: [sum w * loglik, sum w, worst (lowest) per-point log-likelihood, number of rows]
    scalars: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, np.inf, 0.0]))
    worst_index: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    worst_x: np.ndarray | None = None

    @classmethod
    def zeros(cls, covariance_type: str, shift: np.ndarray) -> SufficientStats:
        n_components, n_features = shift.shape
        return cls(
            covariance_type,
            np.ascontiguousarray(shift, dtype=np.float64),
            np.zeros(n_components),
            np.zeros((n_components, n_features)),
            np.zeros(packed_s2_shape(covariance_type, n_components, n_features)),
            worst_x=np.zeros(n_features),
        )

    @property
    def cov_code(self) -> int:
        return COV_CODES[self.covariance_type]

    @property
    def weight_sum(self) -> float:
        return float(self.scalars[1])

    @property
    def sample_mass(self) -> float:
        """Responsibility mass of one average sample: sum w / number of rows."""
        return float(self.scalars[1] / self.scalars[3]) if self.scalars[3] > 0 else 1.0

    @property
    def mean_log_likelihood(self) -> float:
        """sum_i w_i log p(x_i) / sum_i w_i: the lower bound at the E-step's parameters."""
        return float(self.scalars[0] / self.scalars[1])

    def merge(self, other: SufficientStats) -> SufficientStats:
        """Add ``other`` (same shift) into ``self`` in place and return ``self``."""
        if not np.array_equal(self.shift, other.shift):
            raise ValueError("cannot merge statistics taken around different shifts")
        self.R += other.R
        self.S1 += other.S1
        self.S2 += other.S2
        self.scalars[0] += other.scalars[0]
        self.scalars[1] += other.scalars[1]
        self.scalars[3] += other.scalars[3]
        if other.scalars[2] < self.scalars[2]:
            self.scalars[2] = other.scalars[2]
            self.worst_index[:] = other.worst_index
            self.worst_x = other.worst_x.copy()
        return self

    def to_params(self, reg_covar: float) -> tuple[GaussianParams, list[int]]:
        """M-step. Returns the new parameters and the indices of emptied components.

        Emptied-component rule: a component whose mass R_k is below 10 eps times
        the mass of one average sample gets no data. The first such component is
        re-seeded at the worst-explained point of the pass (lowest log-likelihood;
        its previous mean if no point is known), with the pooled covariance of
        the other components and the mass of one average sample. Any further
        emptied components keep their mean and get the pooled covariance and
        weight 0 until a later iteration re-seeds them.
        Parameters therefore stay finite whatever the data.
        """
        kind = self.covariance_type
        R = self.R
        n_components, n_features = self.shift.shape
        one_sample = self.sample_mass
        threshold = EMPTY_MASS * one_sample  # relative: rescaling all weights changes nothing
        empty = np.flatnonzero(~(R >= threshold))
        live = np.flatnonzero(R >= threshold)
        if live.size == 0:
            raise ValueError(
                "every component has zero responsibility mass: the sample weights sum "
                "to zero or the data are degenerate. Pass positive sample weights."
            )
        R_live = R[live]
        d = np.zeros_like(self.S1)
        d[live] = self.S1[live] / R_live[:, None]
        means = self.shift + d
        total = R_live.sum()
        if kind in ("full", "tied"):
            upper = np.triu(self.S2)
            S2 = upper + np.swapaxes(np.triu(self.S2, 1), -1, -2)
        else:
            S2 = self.S2[:, 0, :]
        if kind == "full":
            cov = np.empty((n_components, n_features, n_features))
            cov[live] = S2[live] / R_live[:, None, None] - d[live, :, None] * d[live, None, :]
            pooled = (cov[live] * R_live[:, None, None]).sum(axis=0) / total
            cov[empty] = pooled
            cov[:, np.arange(n_features), np.arange(n_features)] += reg_covar
        elif kind == "tied":
            between = (R_live[:, None, None] * d[live, :, None] * d[live, None, :]).sum(axis=0)
            cov = (S2[0] - between) / total
            cov[np.arange(n_features), np.arange(n_features)] += reg_covar
        else:
            var = np.empty((n_components, n_features))
            var[live] = S2[live] / R_live[:, None] - d[live] ** 2
            pooled = (var[live] * R_live[:, None]).sum(axis=0) / total
            var[empty] = pooled
            var += reg_covar
            cov = var if kind == "diag" else var.mean(axis=1)
        weights = np.where(R >= threshold, R, 0.0)
        if empty.size:
            first = empty[0]
            if np.isfinite(self.scalars[2]) and self.worst_x is not None:
                means[first] = self.worst_x
            weights[first] = one_sample
        weights = weights / weights.sum()
        params = GaussianParams.from_covariances(kind, weights, means, cov)
        return params, [int(k) for k in empty]
