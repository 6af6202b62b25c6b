"""Gaussian mixture parameters and their sufficient statistics.

The statistics (R_k, S1_k, S2_k, log-likelihood sum) are additive over any split
of the rows; every executor produces them and the driver turns them into new
parameters with :meth:`GaussianStats.to_params` (the M-step). Moments are kept
around a per-component *shift* (the means the E-step used), which keeps them
accurate when the data sit far from the origin:

    S1_k = sum_i w_i r_ik (x_i - m_k)
    S2_k = sum_i w_i r_ik (x_i - m_k)(x_i - m_k)^T
    mu_k = m_k + S1_k / R_k,   Sigma_k = S2_k / R_k - (S1_k / R_k)(S1_k / R_k)^T
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._em import CollapsedComponents
from .._init import chunk_arguments, responsibility_chunks
from .._kernels._config import BLOCK_ROWS, COV_CODES
from .._kernels.checks import ALL_MISSING, RULE_FINITE, _first_invalid_missing
from .._kernels.gaussian import _gaussian_pass
from .._kernels.gaussian_missing import _any_nan, _conditional_fill, _gaussian_missing_pass
from .._kernels.linalg import _cholesky_lower, _precision_cholesky
from .._kernels.seeding import _responsibility_moments
from .._threads import serial_if_small
from .base import EMPTY_MASS, NO_F64, NO_I64, NO_RESP, Invalid, ScalarStats, first_nonfinite, rows_per_call

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

#: what NaN means to a :class:`GaussianFamily`: refused, or a missing entry that EM marginalises
MISSING_MODES = ("error", "marginalize")

#: the precision of the M-step's per-tile sums for float32 data (block partials are float64 either way)
ACCUMULATIONS = ("float64", "float32")

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

    Raises :class:`fastem._em.CollapsedComponents` (a ``ValueError`` with
    scikit-learn's message) when a covariance is not positive definite, naming
    the components concerned (all of them for 'tied').
    """
    covariances = np.asarray(covariances, dtype=np.float64)
    if covariance_type in ("full", "tied"):
        mats = np.ascontiguousarray(covariances.reshape((-1,) + covariances.shape[-2:]))
        prec_chol = np.empty_like(mats)
        if (
            not np.all(np.isfinite(mats))
            or _precision_cholesky(mats, prec_chol) >= 0
            or not np.all(np.isfinite(prec_chol))
        ):
            raise _collapsed(covariance_type, _ill_defined_matrices(mats), n_components=mats.shape[0])
        prec_chol = prec_chol.reshape(covariances.shape)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            prec_chol = 1.0 / np.sqrt(covariances)
        ok = (covariances > 0.0) & np.isfinite(covariances) & np.isfinite(prec_chol)
        if not np.all(ok):
            bad = ~ok if covariance_type == "spherical" else ~np.all(ok, axis=1)
            raise _collapsed(covariance_type, np.flatnonzero(bad), n_components=covariances.shape[0])
    return np.ascontiguousarray(prec_chol)


def _ill_defined_matrices(mats: np.ndarray) -> np.ndarray:
    """Indices of the matrices that are not finite and positive definite (the slow path of a failure)."""
    bad = []
    out = np.empty_like(mats[:1])
    for k in range(mats.shape[0]):
        one = mats[k : k + 1]
        if not np.all(np.isfinite(one)) or _precision_cholesky(one, out) >= 0 or not np.all(np.isfinite(out)):
            bad.append(k)
    return np.asarray(bad, dtype=np.int64)


def _collapsed(covariance_type: str, bad, *, n_components: int) -> CollapsedComponents:
    """scikit-learn's ill-defined-covariance error, carrying which components are concerned."""
    if covariance_type == "tied":  # one shared covariance: every component is concerned
        return CollapsedComponents(ILL_DEFINED_COVARIANCE)
    return CollapsedComponents(ILL_DEFINED_COVARIANCE, [int(k) for k in bad], n_components)


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
class GaussianStats(ScalarStats):
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
    def zeros(cls, covariance_type: str, shift: np.ndarray) -> GaussianStats:
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

    def merge(self, other: GaussianStats) -> GaussianStats:
        """Add ``other`` (same shift) into ``self`` in place and return ``self``."""
        if not np.array_equal(self.shift, other.shift):
            raise ValueError("cannot merge statistics taken around different shifts")
        self.R += other.R
        self.S1 += other.S1
        self.S2 += other.S2
        self._merge_scalars(other)
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
            if empty.size:
                cov = np.empty((n_components, n_features, n_features))
                cov[live] = S2[live] / R_live[:, None, None] - d[live, :, None] * d[live, None, :]
                cov[empty] = (cov[live] * R_live[:, None, None]).sum(axis=0) / total  # pooled
            else:  # the same values without the copies of fancy indexing (K D^2 each)
                cov = S2 / R[:, None, None]
                cov -= d[:, :, None] * d[:, None, :]
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

    def to_map_params(self, prior) -> tuple[GaussianParams, list[int]]:
        """MAP M-step under a resolved conjugate prior (formulas in :mod:`fastem.priors`).

        Components keep well-defined covariances whatever their mass (the prior's
        scale keeps them positive definite), so only a component without weight
        (R_k below 10 eps samples and no weight pseudocount) is re-seeded, by the
        rule of :meth:`to_params`.
        """
        kind = self.covariance_type
        R = self.R
        n_components, n_features = self.shift.shape
        d = n_features
        one_sample = self.sample_mass
        kappa, nu, m0, lam = prior.shrinkage, prior.dof, prior.mean, prior.scale
        threshold = EMPTY_MASS * one_sample
        weights = prior.weight_pseudocount + np.where(R >= threshold, R, 0.0)
        empty = np.flatnonzero(~(weights >= threshold))
        if empty.size == n_components:
            raise ValueError(
                "every component has zero responsibility mass: the sample weights sum "
                "to zero or the data are degenerate. Pass positive sample weights."
            )
        Rs = np.where(R > 0, R, 1.0)  # component means of massless components are never used
        dev = np.where((R > 0)[:, None], self.S1 / Rs[:, None], 0.0)  # xbar_k - shift_k
        xbar = self.shift + dev
        means = (R[:, None] * xbar + kappa * m0) / (R + kappa)[:, None] if kappa > 0 else xbar.copy()
        e = xbar - m0
        b = np.where(R > 0, kappa * R / np.where(R + kappa > 0, R + kappa, 1.0), 0.0)
        # the normal prior of the means adds |Sigma|^(-1/2) per mean; shrinkage 0 makes it flat (as mclust)
        m = 1.0 if kappa > 0 else 0.0
        if kind in ("full", "tied"):
            S2 = _symmetric(self.S2)
            if kind == "full":
                scatter = S2 - R[:, None, None] * dev[:, :, None] * dev[:, None, :]  # W_k
                num = lam + scatter + b[:, None, None] * e[:, :, None] * e[:, None, :]
                cov = num / (nu + R + d + 1.0 + m)[:, None, None]
            else:
                between = (R[:, None, None] * dev[:, :, None] * dev[:, None, :]).sum(axis=0)
                shrunk = (b[:, None, None] * e[:, :, None] * e[:, None, :]).sum(axis=0)
                cov = (lam + S2[0] - between + shrunk) / (nu + R.sum() + d + 1.0 + m * n_components)
        else:
            scatter = self.S2[:, 0, :] - R[:, None] * dev**2  # diagonal of W_k
            if kind == "diag":
                cov = (lam + scatter + b[:, None] * e**2) / (nu + R + 2.0 + m)[:, None]
            else:
                num = lam + scatter.sum(axis=1) + b * (e**2).sum(axis=1)
                cov = num / (nu + (R + m) * d + 2.0)
        if empty.size:
            first = empty[0]
            if np.isfinite(self.scalars[2]) and self.worst_x is not None:
                means[first] = self.worst_x
            weights[first] = one_sample
        weights = weights / weights.sum()
        params = GaussianParams.from_covariances(kind, weights, means, cov)
        return params, [int(k) for k in empty]

    # ---- the statistics protocol (see ``families/base.py``)
    @property
    def shift_params(self) -> np.ndarray:
        return self.shift

    def copy(self) -> GaussianStats:
        return GaussianStats(
            self.covariance_type,
            self.shift,
            self.R.copy(),
            self.S1.copy(),
            self.S2.copy(),
            self.scalars.copy(),
            self.worst_index.copy(),
            None if self.worst_x is None else self.worst_x.copy(),
        )

    def scaled(self, factor: float) -> GaussianStats:
        """The statistics times ``factor`` (scalars unchanged): per-unit-weight blends of online EM."""
        return GaussianStats(
            self.covariance_type,
            self.shift.copy(),
            self.R * factor,
            self.S1 * factor,
            self.S2 * factor,
            self.scalars.copy(),
            self.worst_index.copy(),
            None if self.worst_x is None else self.worst_x.copy(),
        )

    def rebased(self, params: GaussianParams) -> GaussianStats:
        """The same statistics around the shift an E-step under ``params`` uses (its means)."""
        return reshift(self, params.means)

    def blended(self, old: GaussianStats, eta: float) -> GaussianStats:
        """eta * self + (1 - eta) * old, both around the same shift (``old`` from :meth:`rebased`)."""
        out = self.scaled(eta)
        out.R += (1.0 - eta) * old.R
        out.S1 += (1.0 - eta) * old.S1
        if self.covariance_type in ("full", "tied"):
            out.S2 = _symmetric(out.S2) + (1.0 - eta) * old.S2
        else:
            out.S2 += (1.0 - eta) * old.S2
        return out


def _symmetric(S2: np.ndarray) -> np.ndarray:
    """Full symmetric matrices from the kernel's upper-triangle accumulators."""
    return np.triu(S2) + np.swapaxes(np.triu(S2, 1), -1, -2)


def reshift(stats: GaussianStats, new_shift: np.ndarray) -> GaussianStats:
    """The same statistics expressed around ``new_shift`` (a new object).

    With delta = m - m' (old shift minus new shift), per component:

        S1' = S1 + R delta
        S2' = S2 + delta S1^T + S1 delta^T + R delta delta^T

    (the diagonal of this for diag/spherical; summed over components for tied).
    """
    new_shift = np.ascontiguousarray(new_shift, dtype=np.float64)
    delta = stats.shift - new_shift
    R, S1 = stats.R, stats.S1
    kind = stats.covariance_type
    if kind in ("full", "tied"):
        cross = delta[:, :, None] * S1[:, None, :]
        per_k = cross + np.swapaxes(cross, -1, -2) + R[:, None, None] * delta[:, :, None] * delta[:, None, :]
        S2 = _symmetric(stats.S2) + (per_k if kind == "full" else per_k.sum(axis=0, keepdims=True))
    else:
        S2 = stats.S2 + (2.0 * delta * S1 + R[:, None] * delta**2)[:, None, :]
    return GaussianStats(
        kind,
        new_shift.copy(),
        R.copy(),
        S1 + R[:, None] * delta,
        np.ascontiguousarray(S2),
        stats.scalars.copy(),
        stats.worst_index.copy(),
        None if stats.worst_x is None else stats.worst_x.copy(),
    )


# ---------------------------------------------------------------- the fused pass
def accumulate_chunk(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    packed: tuple[np.ndarray, np.ndarray, np.ndarray],
    stats: GaussianStats | None,
    row_offset: int,
    cov_code: int,
    out_logprob: np.ndarray = NO_F64,
    out_label: np.ndarray = NO_I64,
    out_resp: np.ndarray = NO_RESP,
    float32_sums: bool = False,
) -> None:
    """E-step over the rows of ``X`` (and accumulation into ``stats`` if given).

    The chunk is fed to the kernel in pieces whose sizes are multiples of
    ``BLOCK_ROWS``, so the order of additions is the same for any chunking that
    respects block boundaries. ``float32_sums`` (float32 ``X`` only): the M-step
    tile sums in float32 (``accumulation="float32"``; see :mod:`fastem._kernels.gaussian`).
    """
    log_norm, means, prec = packed
    accumulate = stats is not None
    if stats is None:
        n_components, n_features = means.shape
        stats = GaussianStats.zeros("diag", np.zeros((n_components, n_features)))
        stats_numbers = 0
    else:
        stats_numbers = stats.R.size + stats.S1.size + stats.S2.size
    step = rows_per_call(stats_numbers) if accumulate else BLOCK_ROWS * 1024
    sw = NO_F64 if sample_weight is None else sample_weight
    # the E-step's quadratic form runs in the data's precision (float32: twice the SIMD lanes)
    prec = prec.astype(X.dtype, copy=False)
    n = X.shape[0]
    with serial_if_small(n, BLOCK_ROWS):
        for start in range(0, n, step):
            stop = min(n, start + step)
            _gaussian_pass(
                X[start:stop],
                sw[start:stop] if sw.size else NO_F64,
                log_norm,
                means,
                prec,
                cov_code,
                accumulate,
                row_offset + start,
                stats.R,
                stats.S1,
                stats.S2,
                stats.scalars,
                stats.worst_index,
                stats.worst_x,
                out_logprob[start:stop] if out_logprob.size else NO_F64,
                out_label[start:stop] if out_label.size else NO_I64,
                out_resp[start:stop] if out_resp.size else NO_RESP,
                float32_sums,
            )


def accumulate_chunk_missing(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    params: GaussianParams,
    stats: GaussianStats | None,
    row_offset: int,
    out_logprob: np.ndarray = NO_F64,
    out_label: np.ndarray = NO_I64,
    out_resp: np.ndarray = NO_RESP,
) -> None:
    """:func:`accumulate_chunk` for rows with NaN marking missing entries: the exact E-step.

    Each row's log-density is that of its observed coordinates; the statistics
    are the expected complete-data ones (conditional means filled in, conditional
    covariances added to the second moments), around the same shift and in the
    same layout as complete-data statistics, so merging, streaming and
    checkpoints are unchanged (see :mod:`fastem._kernels.gaussian_missing`).
    Pieces of the chunk without NaN take the complete-data kernel.
    """
    log_norm, means, prec = params.packed()
    cov_code = COV_CODES[params.covariance_type]
    lam = precisions_from_precisions_cholesky(prec, "full") if cov_code <= 1 else np.zeros((1, 1, 1))
    lam = np.ascontiguousarray(lam)
    accumulate = stats is not None
    if stats is None:
        n_components, n_features = means.shape
        stats = GaussianStats.zeros("diag", np.zeros((n_components, n_features)))
        stats_numbers = 0
    else:
        stats_numbers = stats.R.size + stats.S1.size + stats.S2.size
    worst_before = stats.scalars[2]
    step = rows_per_call(stats_numbers) if accumulate else BLOCK_ROWS * 1024
    sw = NO_F64 if sample_weight is None else sample_weight
    n = X.shape[0]
    with serial_if_small(n, BLOCK_ROWS):
        for start in range(0, n, step):
            stop = min(n, start + step)
            piece = X[start:stop]
            args = (
                sw[start:stop] if sw.size else NO_F64,
                log_norm,
                means,
            )
            outputs = (
                out_logprob[start:stop] if out_logprob.size else NO_F64,
                out_label[start:stop] if out_label.size else NO_I64,
                out_resp[start:stop] if out_resp.size else NO_RESP,
            )
            accumulators = (stats.R, stats.S1, stats.S2, stats.scalars, stats.worst_index, stats.worst_x)
            if _any_nan(piece):
                _gaussian_missing_pass(piece, *args, prec, lam, cov_code, accumulate, row_offset + start,
                                       *accumulators, *outputs)  # fmt: skip
            else:
                _gaussian_pass(piece, *args, prec.astype(X.dtype, copy=False), cov_code, accumulate,
                               row_offset + start, *accumulators, *outputs)  # fmt: skip
    if accumulate and stats.scalars[2] != worst_before and np.isnan(stats.worst_x).any():
        # an emptied component is re-seeded at the worst row: complete it with its conditional mean
        stats.worst_x[:] = impute_rows(stats.worst_x[None], params)[0]


def impute_rows(X: np.ndarray, params: GaussianParams) -> np.ndarray:
    """A float64 copy of ``X`` with each NaN replaced by E[x_M | x_O] under the mixture ``params``.

    E[x_M | x_O] = sum_k p(k | x_O) (mu_kM + Sigma_MO Sigma_OO^-1 (x_O - mu_kO)) with p(k | x_O)
    from the observed coordinates only. Rows must keep at least one observed entry.
    """
    X = np.asarray(X)
    n_samples, n_features = X.shape
    resp = np.empty((n_samples, params.n_components))
    accumulate_chunk_missing(X, None, params, None, 0, out_resp=resp)
    kind = params.covariance_type
    if kind in ("full", "tied"):
        pc = params.precisions_cholesky if kind == "full" else params.precisions_cholesky[None]
        lam = np.ascontiguousarray(precisions_from_precisions_cholesky(pc, "full"))
    else:
        lam = np.zeros((1, 1, 1))
    out = np.empty((n_samples, n_features))
    with serial_if_small(n_samples, BLOCK_ROWS):
        _conditional_fill(X, resp, np.ascontiguousarray(params.means), lam, kind in ("full", "tied"), out)
    return out


# ---------------------------------------------------------------- initialisation
_INIT_CHUNK = 16 * BLOCK_ROWS


def _fill_column_means(X: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    """A copy of X with each NaN replaced by its column's (weighted) mean over the observed entries.

    Only the initialisation sees it (k-means and the initial moments need complete
    rows); EM itself then marginalises the missing entries exactly. A column with no
    observed entry gets 0.
    """
    observed = ~np.isnan(X)
    w = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    mass = w @ observed
    sums = w @ np.where(observed, X, 0.0)
    col_means = np.divide(sums, mass, out=np.zeros(X.shape[1]), where=mass > 0)
    return np.where(observed, X, col_means.astype(X.dtype)).astype(X.dtype, copy=False)


def _moments_from_responsibilities(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    resp_chunks,
    covariance_type: str,
    n_components: int,
    shift: np.ndarray | None,
) -> GaussianStats:
    """Sufficient statistics from responsibilities given chunk by chunk.

    ``resp_chunks(start, stop)`` returns the (stop - start, K) responsibilities.
    Without a ``shift`` a first pass finds the weighted means to shift around.
    The sums run in a numba kernel with ordered block partials, so that the
    same rows give bitwise the same initial parameters wherever they sit in
    memory (in memory, a reservoir sample, a worker's chunk).
    """
    n_samples, n_features = X.shape
    sw = NO_F64 if sample_weight is None else sample_weight
    code = COV_CODES[covariance_type]
    if shift is None:
        x0 = np.tile(np.asarray(X[0], dtype=np.float64), (n_components, 1))
        first = GaussianStats.zeros("diag", x0)
        for start in range(0, n_samples, _INIT_CHUNK):
            stop = min(n_samples, start + _INIT_CHUNK)
            resp, labels = chunk_arguments(resp_chunks, start, stop)
            _responsibility_moments(
                X[start:stop], sw[start:stop] if sw.size else NO_F64, resp, x0, COV_CODES["diag"],
                first.R, first.S1, first.S2, labels,
            )  # fmt: skip
        shift = x0 + first.S1 / np.maximum(first.R, np.finfo(np.float64).tiny)[:, None]
    stats = GaussianStats.zeros(covariance_type, shift)
    for start in range(0, n_samples, _INIT_CHUNK):
        stop = min(n_samples, start + _INIT_CHUNK)
        resp, labels = chunk_arguments(resp_chunks, start, stop)
        _responsibility_moments(
            X[start:stop], sw[start:stop] if sw.size else NO_F64, resp, stats.shift, code, stats.R,
            stats.S1, stats.S2, labels,
        )  # fmt: skip
        stats.scalars[1] += (stop - start) if sample_weight is None else sample_weight[start:stop].sum()
        stats.scalars[3] += stop - start
    return stats


def initial_params(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    *,
    n_components: int,
    covariance_type: str,
    init_params: str,
    reg_covar: float,
    random_state: np.random.RandomState,
    prior=None,
    weights_init: np.ndarray | None = None,
    means_init: np.ndarray | None = None,
    precisions_init: np.ndarray | None = None,
    restart: int = 0,
) -> GaussianParams:
    """Initial parameters for one EM run (the ``*_init`` arrays take precedence)."""
    if weights_init is not None and means_init is not None and precisions_init is not None:
        return GaussianParams(
            covariance_type,
            np.asarray(weights_init, dtype=np.float64).copy(),
            np.array(means_init, dtype=np.float64),
            precisions_cholesky_from_precisions(precisions_init, covariance_type),
        )
    resp_chunks, shift = responsibility_chunks(
        X, sample_weight, n_components, init_params, random_state, restart=restart
    )
    stats = _moments_from_responsibilities(
        X, sample_weight, resp_chunks, covariance_type, n_components, shift
    )
    params, _ = stats.to_params(reg_covar) if prior is None else stats.to_map_params(prior)
    if weights_init is not None:
        params.weights = np.asarray(weights_init, dtype=np.float64).copy()
    if means_init is not None:
        params.means = np.array(means_init, dtype=np.float64)
    if precisions_init is not None:
        params.precisions_cholesky = precisions_cholesky_from_precisions(precisions_init, covariance_type)
        params.covariances = None
    return params


def check_fitted_arrays(arrays: dict, kind: str, n_features: int) -> None:
    """Precisions positive definite and consistent with their Cholesky factors and the covariances.

    ``arrays`` maps the estimator's attribute names to arrays already checked for
    shape and finiteness; raises ``ValueError`` with one clear sentence.
    """
    D = n_features
    U, P, C = arrays["precisions_cholesky_"], arrays["precisions_"], arrays["covariances_"]
    if kind in ("full", "tied"):
        Us, Ps, Cs = (U, P, C) if kind == "full" else (U[None], P[None], C[None])
        for k in range(Us.shape[0]):
            label = f"component {k}" if kind == "full" else "the tied covariance"
            u, p, c = Us[k], Ps[k], Cs[k]
            if np.abs(np.tril(u, -1)).max(initial=0.0) > 1e-12 * np.abs(u).max() or np.any(np.diag(u) <= 0):
                raise ValueError(
                    f"precisions_cholesky_ of {label} is not upper triangular with a "
                    "positive diagonal, so the precision is not positive definite."
                )
            if not np.allclose(p, u @ u.T, rtol=1e-10, atol=1e-12 * np.abs(p).max()):
                raise ValueError(f"precisions_ of {label} disagrees with precisions_cholesky_.")
            eig = np.linalg.eigvalsh(c)
            if not np.allclose(c, c.T, rtol=0, atol=1e-12 * np.abs(c).max()) or eig[0] <= 0:
                raise ValueError(f"covariances_ of {label} is not symmetric positive definite.")
            # C P = I up to rounding amplified by the condition number
            tol = 1e-9 + 1e-12 * eig[-1] / eig[0]
            if np.abs(c @ p - np.eye(D)).max() > tol:
                raise ValueError(f"covariances_ of {label} is not the inverse of its precision.")
    else:
        if np.any(U <= 0) or np.any(C <= 0):
            raise ValueError(f"{kind} precisions and covariances must be positive.")
        if not np.allclose(P, U**2, rtol=1e-10, atol=0) or not np.allclose(C * P, 1.0, rtol=0, atol=1e-9):
            raise ValueError("covariances_, precisions_ and precisions_cholesky_ disagree.")


# ---------------------------------------------------------------- the k-means limit
def kmeans_limit_params(means: np.ndarray, variance: float) -> GaussianParams:
    """Spherical components sharing the fixed ``variance``, with equal weights, at ``means`` (K, D).

    Hard EM (``ClassificationEM``) from these parameters with :func:`kmeans_limit_m_step`
    is Lloyd's k-means: pi_k p_k(x) is then a decreasing function of ||x - mu_k||
    only, so the E-step assigns each row to its nearest mean, and the M-step's
    means are the (weighted) centroids of the assigned rows. Soft EM with the same
    M-step tends to k-means as ``variance`` -> 0.
    """
    means = np.ascontiguousarray(means, dtype=np.float64)
    K = means.shape[0]
    return GaussianParams.from_covariances(
        "spherical", np.full(K, 1.0 / K), means, np.full(K, float(variance))
    )


def kmeans_limit_m_step(family, variance: float):
    """An M-step for ``fastem._em.fit_restarts`` that updates the means only.

    Weights stay equal and every covariance stays ``variance`` * I (see
    :func:`kmeans_limit_params`); the means are the family's M-step means
    (``family``: a spherical :class:`GaussianFamily`, or one wrapped for hard EM).
    An emptied component is re-seeded at the worst-explained row, as in the
    family's M-step.
    """

    def m_step(stats: GaussianStats) -> tuple[GaussianParams, list[int]]:
        params, emptied = family.m_step(stats)
        return kmeans_limit_params(params.means, variance), emptied

    return m_step


# ---------------------------------------------------------------- the family
@dataclass(frozen=True)
class GaussianFamily:
    """Gaussian components with one of four covariance structures (see ``families/base.py``)."""

    covariance_type: str = "full"
    reg_covar: float = 1e-6
    #: a :class:`fastem.priors.GaussianPrior` (MAP-EM) or None (maximum likelihood)
    prior: object = None
    #: the prior's hyperparameters for one fit (see :meth:`for_fit`)
    resolved_prior: object = field(default=None, compare=False)
    #: "error": NaN is refused; "marginalize": NaN marks a missing entry and EM is exact over it
    #: (the observed coordinates' marginal density, conditional moments in the statistics)
    missing: str = "error"
    #: "float64": every sum in float64; "float32" (float32 data only): the M-step's tile buffers
    #: and per-tile sums in float32, each tile's sums added into float64 block partials
    accumulation: str = "float64"
    name = "gaussian"

    def __post_init__(self):
        if self.missing not in MISSING_MODES:
            raise ValueError(f"missing must be one of {list(MISSING_MODES)}, got {self.missing!r}.")
        if self.accumulation not in ACCUMULATIONS:
            raise ValueError(f"accumulation must be one of {list(ACCUMULATIONS)}, got {self.accumulation!r}.")

    @property
    def needs_data_moments(self) -> bool:
        """Whether :meth:`for_fit` needs the data mean and covariance (a prior with data defaults)."""
        return self.prior is not None and self.prior.needs_data()

    def for_fit(self, n_components: int, n_features: int, moments=None) -> GaussianFamily:
        """The family with its prior's hyperparameters set for a fit (from ``moments`` where unset)."""
        if self.prior is None:
            return self
        resolved = self.prior.resolve(self.covariance_type, n_components, n_features, moments)
        return GaussianFamily(self.covariance_type, self.reg_covar, self.prior, resolved, self.missing,
                              self.accumulation)  # fmt: skip

    def log_prior(self, params: GaussianParams) -> float:
        """log p(theta) under the resolved prior (0 without a prior)."""
        if self.resolved_prior is None:
            return 0.0
        p = params.filled()
        return self.resolved_prior.log_prior(p.weights, p.means, p.covariances)

    @property
    def config(self) -> dict:
        """What model files and checkpoints record to rebuild this family."""
        config = {"covariance_type": self.covariance_type}
        if self.missing != "error":  # absent in files written before the setting existed
            config["missing"] = self.missing
        if self.accumulation != "float64":  # likewise
            config["accumulation"] = self.accumulation
        return config

    def zero_stats(self, params: GaussianParams) -> GaussianStats:
        return GaussianStats.zeros(params.covariance_type, params.means)

    def accumulate(
        self, X, sample_weight, params: GaussianParams, stats: GaussianStats | None, row_offset: int = 0,
        out_logprob=NO_F64, out_label=NO_I64, out_resp=NO_RESP,
    ) -> None:  # fmt: skip
        if self.missing == "marginalize" and _any_nan(X):  # a chunk without NaN takes today's path
            accumulate_chunk_missing(X, sample_weight, params, stats, row_offset,
                                     out_logprob, out_label, out_resp)  # fmt: skip
            return
        accumulate_chunk(X, sample_weight, params.packed(), stats, row_offset,
                         COV_CODES[params.covariance_type], out_logprob, out_label, out_resp,
                         self._float32_sums(X, stats is not None))  # fmt: skip

    def check_accumulation_dtype(self, dtype) -> None:
        """Refuse ``accumulation="float32"`` with rows that are not float32 (ValueError naming the fix)."""
        if self.accumulation == "float32" and np.dtype(dtype) != np.float32:
            raise ValueError(
                f"accumulation='float32' needs float32 data, got {np.dtype(dtype)}: pass "
                "X.astype(np.float32) (or a float32 data source), or leave accumulation='float64'."
            )

    def _float32_sums(self, X, accumulating: bool) -> bool:
        """Whether a pass over ``X`` takes float32 tile sums (scoring float64 rows is always allowed)."""
        if self.accumulation == "float64":
            return False
        if accumulating:
            self.check_accumulation_dtype(X.dtype)
        return X.dtype == np.float32

    def impute(self, X: np.ndarray, params: GaussianParams) -> np.ndarray:
        """A copy of ``X`` with each NaN replaced by its conditional mean under the mixture ``params``.

        Entry d of a row with observed coordinates O becomes
        E[x_d | x_O] = sum_k p(k | x_O) (mu_k + Sigma_k,dO Sigma_k,OO^-1 (x_O - mu_k,O))_d,
        with p(k | x_O) computed from the observed coordinates' marginal densities
        (diag/spherical: sum_k p(k | x_O) mu_kd). Observed entries are copied unchanged.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            float32 or float64 rows; NaN marks a missing entry. Every row must keep
            an observed entry and hold no infinity (see :meth:`first_invalid`).
        params : GaussianParams
            The fitted mixture.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
            A new array of ``X``'s dtype (conditional means computed in float64).
        """
        X = np.asarray(X)
        filled = impute_rows(X, params)
        return filled.astype(X.dtype, copy=False) if X.dtype == np.float32 else filled

    # ---- classification EM (``families/base.py::ClassificationEM``)
    def component_params(self, params: GaussianParams, k: int) -> GaussianParams:
        """Component ``k`` alone, as a one-component mixture of weight 1."""
        chol = params.precisions_cholesky
        return GaussianParams(params.covariance_type, np.ones(1), params.means[k : k + 1],
                              chol if params.covariance_type == "tied" else chol[k : k + 1])  # fmt: skip

    def add_component_stats(self, stats: GaussianStats, k: int, sub: GaussianStats) -> None:
        """Add the statistics of a one-component pass (:meth:`component_params`) into component ``k``."""
        stats.R[k] += sub.R[0]
        stats.S1[k] += sub.S1[0]
        stats.S2[0 if stats.covariance_type == "tied" else k] += sub.S2[0]  # tied: one pooled scatter

    def m_step(self, stats: GaussianStats) -> tuple[GaussianParams, list[int]]:
        if self.prior is not None:
            if self.resolved_prior is None:
                raise RuntimeError("the prior's hyperparameters were not set: call for_fit first.")
            return stats.to_map_params(self.resolved_prior)
        return stats.to_params(self.reg_covar)

    def first_invalid(self, X: np.ndarray) -> Invalid | None:
        if self.missing == "error":
            return first_nonfinite(X)
        row, column, code = (int(v) for v in _first_invalid_missing(X, RULE_FINITE, 0.0))
        if row < 0:
            return None
        if code == ALL_MISSING:
            what = "a row whose every entry is NaN (missing)"
            return Invalid(row, -1, what, "a row with no observed entry",
                           "Drop the rows with no observed value: they carry no information about the "
                           "mixture (with missing='marginalize', NaN marks a missing entry).")  # fmt: skip
        return Invalid(row, column, "infinity", "the first infinite value",
                       "Replace infinite values (NaN marks a missing entry with missing='marginalize'; "
                       "infinity is never valid).")  # fmt: skip

    def initial_params(self, X, sample_weight, *, n_components, init_params, random_state,
                       **init_arrays) -> GaussianParams:  # fmt: skip
        if self.missing == "marginalize" and _any_nan(X):
            X = _fill_column_means(X, sample_weight)
        return initial_params(
            X, sample_weight, n_components=n_components, covariance_type=self.covariance_type,
            init_params=init_params, reg_covar=self.reg_covar, random_state=random_state,
            prior=self.resolved_prior, **init_arrays,
        )  # fmt: skip

    # packing: covariances are kept as computed by the M-step; recomputing them from
    # the precisions would round differently and break bitwise resumption
    def param_arrays(self, params: GaussianParams) -> dict[str, np.ndarray]:
        out = {
            "weights": params.weights,
            "means": params.means,
            "precisions_cholesky": params.precisions_cholesky,
        }
        if params.covariances is not None:
            out["covariances"] = np.asarray(params.covariances)
        return out

    def params_from_arrays(self, arrays: dict[str, np.ndarray]) -> GaussianParams:
        cov = arrays.get("covariances")
        return GaussianParams(
            self.covariance_type,
            np.array(arrays["weights"], dtype=np.float64),
            np.array(arrays["means"], dtype=np.float64),
            np.array(arrays["precisions_cholesky"], dtype=np.float64),
            None if cov is None else np.array(cov, dtype=np.float64),
        )

    def stats_arrays(self, stats: GaussianStats) -> dict[str, np.ndarray]:
        worst_x = stats.worst_x if stats.worst_x is not None else np.zeros(stats.shift.shape[1])
        return {"shift": stats.shift, "R": stats.R, "S1": stats.S1, "S2": stats.S2, "scalars": stats.scalars,
                "worst_index": stats.worst_index, "worst_x": worst_x}  # fmt: skip

    def stats_from_arrays(self, arrays: dict[str, np.ndarray]) -> GaussianStats:
        return GaussianStats(self.covariance_type, *(arrays[k].copy() for k in
                             ("shift", "R", "S1", "S2", "scalars", "worst_index", "worst_x")))  # fmt: skip

    def sample(self, params: GaussianParams, counts: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        """``counts[k]`` draws from component k, in component order (scikit-learn's draws)."""
        params = params.filled()
        kind, means, cov = self.covariance_type, params.means, params.covariances
        if kind == "full":
            parts = [
                rng.multivariate_normal(m, c, int(n)) for m, c, n in zip(means, cov, counts, strict=True)
            ]
        elif kind == "tied":
            parts = [rng.multivariate_normal(m, cov, int(n)) for m, n in zip(means, counts, strict=True)]
        else:
            parts = [
                m + rng.standard_normal(size=(n, means.shape[1])) * np.sqrt(c)
                for m, c, n in zip(means, cov, counts, strict=True)
            ]
        return np.vstack(parts)

    def n_parameters(self, params: GaussianParams) -> int:
        K, D = params.means.shape
        cov = {"full": K * D * (D + 1) / 2, "diag": K * D, "tied": D * (D + 1) / 2, "spherical": K}
        return int(cov[self.covariance_type] + K * D + K - 1)
