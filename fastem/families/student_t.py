"""Multivariate Student-t mixtures, fitted by ECM (Peel & McLachlan 2000).

Component k has density

    t(x; mu_k, Sigma_k, nu_k) = Gamma((nu+D)/2) / (Gamma(nu/2) (nu pi)^(D/2) |Sigma|^(1/2))
                                (1 + delta / nu)^(-(nu+D)/2),   delta = (x - mu)^T Sigma^-1 (x - mu),

a Gaussian scale mixture: x | tau ~ N(mu, Sigma / tau), tau ~ Gamma(nu/2, nu/2). The E-step
gives the responsibilities r_ik and the expected scales u_ik = (nu_k + D) / (nu_k + delta_ik);
the statistics (see ``fastem/_kernels/student_t.py``) are kept around a shift m_k (the E-step's
means), like the Gaussian family's. The M-step (each part maximises the expected complete-data
log-likelihood, so the log-likelihood never decreases):

    pi_k = R_k / sum_j R_j
    mu_k = m_k + d_k,  d_k = S1_k / U_k
    Sigma_k = (S2_k - U_k d_k d_k^T) / R_k  (+ reg_covar on the diagonal)
            = sum r u (x - mu_k)(x - mu_k)^T / sum r
    nu_k: the root of  log(nu/2) - psi(nu/2) + c_k = 0,
          c_k = 1 + T_k / R_k + psi((nu_old + D)/2) - log((nu_old + D)/2)

(c_k < 0 always, and log(x) - psi(x) falls from +inf to 0, so the root is unique). The root is
found by Brent's method on [DOF_MIN, DOF_MAX]; a root beyond DOF_MAX (the Gaussian limit) or
below DOF_MIN is held at the bound, with a :class:`DegenerateParameterWarning`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numba
import numpy as np
from scipy.optimize import brentq
from scipy.special import digamma, gammaln

from .._init import _seeding_sample
from .._kernels._config import BLOCK_ROWS, COV_CODES
from .._kernels.seeding import _lloyd_step, _update_closest
from .._kernels.student_t import _student_t_pass
from .._threads import serial_if_small
from .base import (
    EMPTY_MASS,
    NO_F64,
    NO_I64,
    NO_RESP,
    DegenerateParameterWarning,
    Invalid,
    ScalarStats,
    first_nonfinite,
    rows_per_call,
)
from .gaussian import (
    GaussianParams,
    _moments_from_responsibilities,
    covariances_from_precisions_cholesky,
    packed_s2_shape,
    precisions_cholesky_from_covariances,
    precisions_cholesky_from_precisions,
)
from .gaussian import initial_params as gaussian_initial_params

COVARIANCE_TYPES = ("full", "diag")

#: share of the rows trimmed by the default initialisation (``init_params="trimmed_kmeans"``)
TRIM_FRACTION = 0.1
_TRIMMED_SEEDINGS = 8
#: Lloyd iterations per competing seeding, then for the winner
_TRIMMED_SEEDING_ITER = 10
_TRIMMED_LLOYD_MAX_ITER = 100


def _nearest(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label, squared distance) of each row's nearest centre (the k-means kernel's assignment)."""
    n_samples = X.shape[0]
    labels = np.empty(n_samples, dtype=np.int32)
    dists = np.empty(n_samples)
    unused_sums, unused_counts, unused_inertia = np.zeros(centers.shape), np.zeros(len(centers)), np.zeros(1)
    _lloyd_step(X, NO_F64, centers, labels, dists, unused_sums, unused_counts, unused_inertia)
    return labels, dists


def _trimmed_threshold(dmin: np.ndarray, weights: np.ndarray, trim: float) -> float:
    """The distance above which the farthest ``trim`` share of the (weighted) rows lies."""
    order = np.argsort(dmin)
    kept_mass = np.cumsum(weights[order])
    cut = int(np.searchsorted(kept_mass, (1.0 - trim) * kept_mass[-1]))
    return float(dmin[order[min(cut, len(order) - 1)]])


def _trimmed_seeds(X, weights, n_clusters, random_state, trim) -> np.ndarray:
    """k-means++ seeding that draws only among the rows outside the farthest ``trim`` share."""
    n_samples = X.shape[0]
    centers = np.empty((n_clusters, X.shape[1]))
    centers[0] = X[random_state.choice(n_samples, p=weights / weights.sum())]
    dmin = np.empty(n_samples)
    _update_closest(X, centers[0], dmin, True)
    for c in range(1, n_clusters):
        potential = np.where(dmin <= _trimmed_threshold(dmin, weights, trim), dmin * weights, 0.0)
        total = potential.sum()
        pick = random_state.choice(n_samples, p=potential / total if total > 0.0 else weights / weights.sum())
        centers[c] = X[pick]
        _update_closest(X, centers[c], dmin, False)
    return centers


def _trimmed_lloyd(X, weights, centers, trim, max_iter) -> tuple[np.ndarray, float, float]:
    """Lloyd iterations that leave the farthest ``trim`` share out; (centres, cost, threshold)."""
    n_features = X.shape[1]
    n_clusters = centers.shape[0]
    for it in range(max_iter + 1):
        labels, dmin = _nearest(X, centers)
        threshold = _trimmed_threshold(dmin, weights, trim)
        kept_weights = np.where(dmin <= threshold, weights, 0.0)
        if it == max_iter:
            break
        mass = np.bincount(labels, weights=kept_weights, minlength=n_clusters)
        sums = np.stack([np.bincount(labels, weights=kept_weights * X[:, d], minlength=n_clusters)
                         for d in range(n_features)], axis=1)  # fmt: skip
        moved = np.where(mass[:, None] > 0, sums / np.maximum(mass, 1e-300)[:, None], centers)
        done = np.allclose(moved, centers, rtol=0, atol=1e-12 * (1.0 + np.abs(centers).max()))
        centers = moved
        if done:
            max_iter = it + 1  # one more assignment for the cost, then stop
    return centers, float((kept_weights * dmin).sum()), threshold


def trimmed_kmeans(
    X: np.ndarray, weights: np.ndarray, n_clusters: int, random_state: np.random.RandomState,
    trim: float = TRIM_FRACTION, n_seedings: int = _TRIMMED_SEEDINGS,
) -> tuple[np.ndarray, float]:  # fmt: skip
    """Trimmed k-means (Cuesta-Albertos, Gordaliza & Matran 1997) on a small sample.

    k-means places centres among gross outliers, since they dominate the sum of
    squares; a Student-t mixture started there keeps a component for the outliers
    and merges two clusters. Here the farthest ``trim`` share of the rows is left
    out of every centre update and of the cost, and seeds are drawn k-means++ style
    among the other rows only. ``n_seedings`` seedings compete after a few Lloyd
    iterations (lowest trimmed cost); the winner runs to convergence. Returns
    (centres, squared distance beyond which rows are trimmed).
    """
    # the sample is small: one thread avoids many short parallel launches (as fastem._init.kmeans)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        best = None
        for _ in range(n_seedings):
            seeds = _trimmed_seeds(X, weights, n_clusters, random_state, trim)
            centers, cost, _ = _trimmed_lloyd(X, weights, seeds, trim, _TRIMMED_SEEDING_ITER)
            if best is None or cost < best[0]:
                best = (cost, centers)
        assert best is not None
        centers, _, threshold = _trimmed_lloyd(X, weights, best[1], trim, _TRIMMED_LLOYD_MAX_ITER)
    finally:
        numba.set_num_threads(threads)
    return centers, threshold


def _trimmed_one_hot(X: np.ndarray, centers: np.ndarray, threshold: float):
    """Responsibilities for the initial M-step: nearest centre, and none for trimmed rows."""
    n_components = centers.shape[0]

    def chunk(start: int, stop: int) -> np.ndarray:
        labels, dists = _nearest(X[start:stop], centers)
        resp = np.zeros((stop - start, n_components))
        resp[np.arange(stop - start), labels] = dists <= threshold
        return resp

    return chunk


#: bracket of the degrees-of-freedom update; DOF_MAX is the Gaussian limit for any practical purpose
DOF_MIN = 1e-3
DOF_MAX = 1e6
#: degrees of freedom of every component when ``degrees_of_freedom_init`` is not given
DEFAULT_DOF = 10.0


@dataclass
class StudentTParams:
    """Parameters of a Student-t mixture (scikit-learn's Gaussian shapes plus ``dof`` (K,))."""

    covariance_type: str
    weights: np.ndarray
    means: np.ndarray
    precisions_cholesky: np.ndarray
    dof: np.ndarray
    covariances: np.ndarray | None = None

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def filled(self) -> StudentTParams:
        """A copy whose ``covariances`` are set (computed from the precisions if needed)."""
        cov = self.covariances
        if cov is None:
            cov = covariances_from_precisions_cholesky(self.precisions_cholesky, self.covariance_type)
        return StudentTParams(self.covariance_type, self.weights.copy(), self.means.copy(),
                              self.precisions_cholesky.copy(), self.dof.copy(),
                              np.array(cov, dtype=np.float64))  # fmt: skip

    def packed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(log_norm, means, prec, dof) in the layout the kernel reads.

        ``log_norm[k] = log pi_k + log det U_k + lgamma((nu+D)/2) - lgamma(nu/2) - D/2 log(nu pi)``.
        """
        D = self.means.shape[1]
        pc = self.precisions_cholesky
        if self.covariance_type == "full":
            log_det = np.log(np.diagonal(pc, axis1=1, axis2=2)).sum(axis=1)
            prec = pc
        else:
            log_det = np.log(pc).sum(axis=1)
            prec = pc[:, None, :]
        nu = np.asarray(self.dof, dtype=np.float64)
        with np.errstate(divide="ignore"):  # a zero weight gives log 0 = -inf: never chosen
            log_weights = np.log(self.weights)
        log_norm = (log_weights + log_det + gammaln(0.5 * (nu + D)) - gammaln(0.5 * nu)
                    - 0.5 * D * np.log(nu * np.pi))  # fmt: skip
        return (
            np.ascontiguousarray(log_norm, dtype=np.float64),
            np.ascontiguousarray(self.means, dtype=np.float64),
            np.ascontiguousarray(prec, dtype=np.float64),
            np.ascontiguousarray(nu),
        )


def _dof_constant(dof: np.ndarray, n_features: int) -> np.ndarray:
    """psi((nu + D)/2) - log((nu + D)/2): E[log tau] - log E[tau] given the E-step's nu."""
    h = 0.5 * (np.asarray(dof, dtype=np.float64) + n_features)
    return digamma(h) - np.log(h)


@dataclass
class StudentTStats(ScalarStats):
    """Additive ECM statistics of one E-step, around the shift ``shift`` under degrees of freedom ``dof``."""

    covariance_type: str
    shift: np.ndarray
    dof: np.ndarray
    R: np.ndarray
    U: np.ndarray
    S1: np.ndarray
    S2: np.ndarray
    T: np.ndarray
    #: [sum w * loglik, sum w, worst (lowest) per-point log-likelihood, number of rows]
    scalars: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, np.inf, 0.0]))
    worst_index: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    worst_x: np.ndarray | None = None

    @classmethod
    def zeros(cls, covariance_type: str, shift: np.ndarray, dof: np.ndarray) -> StudentTStats:
        K, D = shift.shape
        return cls(covariance_type, np.ascontiguousarray(shift, dtype=np.float64),
                   np.array(dof, dtype=np.float64), np.zeros(K), np.zeros(K), np.zeros((K, D)),
                   np.zeros(packed_s2_shape(covariance_type, K, D)), np.zeros(K),
                   worst_x=np.zeros(D))  # fmt: skip

    def merge(self, other: StudentTStats) -> StudentTStats:
        """Add ``other`` (same shift and dof) into ``self`` in place and return ``self``."""
        if not (np.array_equal(self.shift, other.shift) and np.array_equal(self.dof, other.dof)):
            raise ValueError("cannot merge statistics taken under different parameters")
        for name in ("R", "U", "S1", "S2", "T"):
            getattr(self, name)[...] += getattr(other, name)
        self._merge_scalars(other)
        return self

    def copy(self) -> StudentTStats:
        return StudentTStats(self.covariance_type, self.shift.copy(), self.dof.copy(), self.R.copy(),
                             self.U.copy(), self.S1.copy(), self.S2.copy(), self.T.copy(),
                             self.scalars.copy(), self.worst_index.copy(),
                             None if self.worst_x is None else self.worst_x.copy())  # fmt: skip

    def scaled(self, factor: float) -> StudentTStats:
        out = self.copy()
        for name in ("R", "U", "S1", "S2", "T"):
            getattr(out, name)[...] *= factor
        return out

    def rebased(self, params: StudentTParams) -> StudentTStats:
        """The same statistics around ``params.means`` and with T for ``params.dof`` (online EM).

        With delta = m - m': S1' = S1 + U delta, S2' = S2 + delta S1^T + S1 delta^T + U delta delta^T;
        T' = T + R (c(nu) - c(nu')) keeps T + R c(nu), the part the nu update reads, unchanged.
        """
        new_shift = np.ascontiguousarray(params.means, dtype=np.float64)
        new_dof = np.array(params.dof, dtype=np.float64)
        delta = self.shift - new_shift
        out = self.copy()
        U, S1 = self.U, self.S1
        if self.covariance_type == "full":
            S2 = np.triu(self.S2) + np.swapaxes(np.triu(self.S2, 1), -1, -2)
            cross = delta[:, :, None] * S1[:, None, :]
            out.S2 = (
                S2
                + cross
                + np.swapaxes(cross, -1, -2)
                + U[:, None, None] * delta[:, :, None] * delta[:, None, :]
            )
        else:
            out.S2 = self.S2 + (2.0 * delta * S1 + U[:, None] * delta**2)[:, None, :]
        out.S1 = S1 + U[:, None] * delta
        D = self.shift.shape[1]
        out.T = self.T + self.R * (_dof_constant(self.dof, D) - _dof_constant(new_dof, D))
        out.shift, out.dof = new_shift.copy(), new_dof
        return out

    def blended(self, old: StudentTStats, eta: float) -> StudentTStats:
        out = self.scaled(eta)
        for name in ("R", "U", "S1", "S2", "T"):
            getattr(out, name)[...] += (1.0 - eta) * getattr(old, name)
        return out


def solve_dof(c: float, dof_min: float = DOF_MIN, dof_max: float = DOF_MAX) -> tuple[float, int]:
    """The root of log(nu/2) - psi(nu/2) + c = 0 in [dof_min, dof_max], and -1/0/1 if held at a bound.

    The left side decreases in nu (from +inf to c < 0), so the root is unique; Brent's method
    (bracketing, so always convergent) finds it to a few ulps.
    """

    def f(nu: float) -> float:
        h = 0.5 * nu
        return float(np.log(h) - digamma(h) + c)

    if not np.isfinite(c):
        return dof_max, 1
    if f(dof_max) >= 0.0:
        return dof_max, 1
    if f(dof_min) <= 0.0:
        return dof_min, -1
    return float(brentq(f, dof_min, dof_max, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)), 0


def dof_update(T: np.ndarray, R: np.ndarray, dof_old: np.ndarray, n_features: int) -> tuple[np.ndarray, list]:
    """The ECM degrees-of-freedom update of each component, and the bounds reached ((k, -1/1) pairs)."""
    const = 1.0 + T / R + _dof_constant(dof_old, n_features)
    out = np.empty_like(const)
    held = []
    for k, c in enumerate(const):
        out[k], where = solve_dof(float(c))
        if where:
            held.append((k, where))
    return out, held


# ---------------------------------------------------------------- the family
@dataclass(frozen=True)
class StudentTFamily:
    """Student-t components with full or diagonal scale matrices (see ``families/base.py``)."""

    covariance_type: str = "full"
    reg_covar: float = 1e-6
    fix_degrees_of_freedom: bool = False
    name = "student_t"

    @property
    def config(self) -> dict:
        return {"covariance_type": self.covariance_type,
                "fix_degrees_of_freedom": bool(self.fix_degrees_of_freedom)}  # fmt: skip

    # no prior: the hooks of MAP-EM are neutral
    needs_data_moments = False

    def for_fit(self, n_components: int, n_features: int, moments=None) -> StudentTFamily:
        return self

    def log_prior(self, params) -> float:
        return 0.0

    def zero_stats(self, params: StudentTParams) -> StudentTStats:
        return StudentTStats.zeros(params.covariance_type, params.means, params.dof)

    def accumulate(
        self, X, sample_weight, params: StudentTParams, stats: StudentTStats | None, row_offset: int = 0,
        out_logprob=NO_F64, out_label=NO_I64, out_resp=NO_RESP,
    ) -> None:  # fmt: skip
        """One fused pass; fed in pieces of multiples of ``BLOCK_ROWS`` rows (chunking-independent sums)."""
        log_norm, means, prec, dof = params.packed()
        accumulate = stats is not None
        if stats is None:
            stats = StudentTStats.zeros("diag", means, dof)
            step = BLOCK_ROWS * 1024
        else:
            step = rows_per_call(stats.R.size * 3 + stats.S1.size + stats.S2.size)
        sw = NO_F64 if sample_weight is None else sample_weight
        code = COV_CODES[params.covariance_type]
        n = X.shape[0]
        with serial_if_small(n, BLOCK_ROWS):
            for start in range(0, n, step):
                stop = min(n, start + step)
                _student_t_pass(
                    X[start:stop], sw[start:stop] if sw.size else NO_F64, log_norm, means, prec, dof, code,
                    accumulate, row_offset + start, stats.R, stats.U, stats.S1, stats.S2, stats.T,
                    stats.scalars, stats.worst_index, stats.worst_x,
                    out_logprob[start:stop] if out_logprob.size else NO_F64,
                    out_label[start:stop] if out_label.size else NO_I64,
                    out_resp[start:stop] if out_resp.size else NO_RESP,
                )  # fmt: skip

    # ---- classification EM (``families/base.py::ClassificationEM``)
    def component_params(self, params: StudentTParams, k: int) -> StudentTParams:
        """Component ``k`` alone, as a one-component mixture of weight 1."""
        return StudentTParams(params.covariance_type, np.ones(1), params.means[k : k + 1],
                              params.precisions_cholesky[k : k + 1], params.dof[k : k + 1])  # fmt: skip

    def add_component_stats(self, stats: StudentTStats, k: int, sub: StudentTStats) -> None:
        """Add the statistics of a one-component pass (:meth:`component_params`) into component ``k``."""
        for name in ("R", "U", "S1", "S2", "T"):
            getattr(stats, name)[k] += getattr(sub, name)[0]

    def m_step(self, stats: StudentTStats) -> tuple[StudentTParams, list[int]]:
        """ECM M-step (module docstring); emptied components follow the Gaussian family's rule.

        A component whose mass R_k is below 10 eps times one average sample is emptied: the first
        is re-seeded at the worst-explained point of the pass with the pooled scale matrix and the
        mass of one sample; any others keep their mean with the pooled scale matrix and weight 0.
        Emptied components keep their degrees of freedom.
        """
        kind = stats.covariance_type
        R, Uw = stats.R, stats.U
        K, D = stats.shift.shape
        one_sample = stats.sample_mass
        threshold = EMPTY_MASS * one_sample
        live = np.flatnonzero(R >= threshold)
        empty = np.flatnonzero(~(R >= threshold))
        if live.size == 0:
            raise ValueError(
                "every component has zero responsibility mass: the sample weights sum "
                "to zero or the data are degenerate. Pass positive sample weights."
            )
        R_live, U_live = R[live], Uw[live]
        d = np.zeros_like(stats.S1)
        d[live] = stats.S1[live] / U_live[:, None]
        means = stats.shift + d
        total = R_live.sum()
        if kind == "full":
            S2 = np.triu(stats.S2) + np.swapaxes(np.triu(stats.S2, 1), -1, -2)
            cov = np.empty((K, D, D))
            cov[live] = (S2[live] - U_live[:, None, None] * d[live, :, None] * d[live, None, :]) / R_live[
                :, None, None
            ]
            cov[empty] = (cov[live] * R_live[:, None, None]).sum(axis=0) / total
            cov[:, np.arange(D), np.arange(D)] += self.reg_covar
        else:
            S2 = stats.S2[:, 0, :]
            cov = np.empty((K, D))
            cov[live] = (S2[live] - U_live[:, None] * d[live] ** 2) / R_live[:, None]
            cov[empty] = (cov[live] * R_live[:, None]).sum(axis=0) / total
            cov += self.reg_covar
        dof = np.array(stats.dof, dtype=np.float64)
        if not self.fix_degrees_of_freedom:
            new, held = dof_update(stats.T[live], R_live, dof[live], D)
            dof[live] = new
            if held:
                parts = [f"component {live[k]} at {'the Gaussian limit ' if where > 0 else ''}"
                         f"{DOF_MAX if where > 0 else DOF_MIN:g}" for k, where in held]  # fmt: skip
                warnings.warn(
                    "The degrees-of-freedom update left its range, so it was held at the bound: "
                    + ", ".join(parts)
                    + ". A component at the upper bound is Gaussian in effect; "
                    "fix the degrees of freedom (fix_degrees_of_freedom=True) to silence this.",
                    DegenerateParameterWarning,
                    stacklevel=2,
                )
        weights = np.where(R >= threshold, R, 0.0)
        if empty.size:
            first = empty[0]
            if np.isfinite(stats.scalars[2]) and stats.worst_x is not None:
                means[first] = stats.worst_x
            weights[first] = one_sample
        weights = weights / weights.sum()
        prec_chol = precisions_cholesky_from_covariances(cov, kind)
        return StudentTParams(kind, weights, means, prec_chol, dof, cov), [int(k) for k in empty]

    def first_invalid(self, X: np.ndarray) -> Invalid | None:
        return first_nonfinite(X)

    def initial_params(self, X, sample_weight, *, n_components, init_params, random_state,
                       degrees_of_freedom_init=None, **init_arrays) -> StudentTParams:  # fmt: skip
        """The Gaussian family's initialisation (``init_params`` and ``*_init``), plus nu (default 10).

        ``init_params="trimmed_kmeans"`` (the estimator's default) starts from trimmed k-means
        (:func:`trimmed_kmeans`): the initial scale matrices come from the untrimmed rows only.
        """
        given = [init_arrays.get(k) is not None for k in ("weights_init", "means_init", "precisions_init")]
        if init_params == "trimmed_kmeans" and not all(given):
            Xs, sws, _ = _seeding_sample(X, sample_weight, n_components, random_state)
            weights = np.ones(Xs.shape[0]) if sws is None else np.asarray(sws, dtype=np.float64)
            centers, threshold = trimmed_kmeans(np.asarray(Xs, dtype=np.float64), weights, n_components,
                                                random_state)  # fmt: skip
            stats = _moments_from_responsibilities(X, sample_weight, _trimmed_one_hot(X, centers, threshold),
                                                   self.covariance_type, n_components, centers)  # fmt: skip
            g, _ = stats.to_params(self.reg_covar)
            if init_arrays.get("weights_init") is not None:
                g.weights = np.asarray(init_arrays["weights_init"], dtype=np.float64).copy()
            if init_arrays.get("means_init") is not None:
                g.means = np.array(init_arrays["means_init"], dtype=np.float64)
            if init_arrays.get("precisions_init") is not None:
                g.precisions_cholesky = precisions_cholesky_from_precisions(init_arrays["precisions_init"],
                                                                            self.covariance_type)  # fmt: skip
                g.covariances = None
        else:
            g: GaussianParams = gaussian_initial_params(
                X, sample_weight, n_components=n_components, covariance_type=self.covariance_type,
                init_params="kmeans" if init_params == "trimmed_kmeans" else init_params,
                reg_covar=self.reg_covar, random_state=random_state, **init_arrays,
            )  # fmt: skip
        dof = DEFAULT_DOF if degrees_of_freedom_init is None else degrees_of_freedom_init
        dof = np.array(np.broadcast_to(np.asarray(dof, dtype=np.float64), (n_components,)))
        return StudentTParams(self.covariance_type, g.weights, g.means, g.precisions_cholesky, dof,
                              g.covariances)  # fmt: skip

    def param_arrays(self, params: StudentTParams) -> dict[str, np.ndarray]:
        out = {"weights": params.weights, "means": params.means,
               "precisions_cholesky": params.precisions_cholesky, "dof": params.dof}  # fmt: skip
        if params.covariances is not None:
            out["covariances"] = np.asarray(params.covariances)
        return out

    def params_from_arrays(self, arrays: dict[str, np.ndarray]) -> StudentTParams:
        cov = arrays.get("covariances")
        return StudentTParams(
            self.covariance_type,
            *(
                np.array(arrays[k], dtype=np.float64)
                for k in ("weights", "means", "precisions_cholesky", "dof")
            ),
            None if cov is None else np.array(cov, dtype=np.float64),
        )

    _STATS = ("shift", "dof", "R", "U", "S1", "S2", "T", "scalars", "worst_index", "worst_x")

    def stats_arrays(self, stats: StudentTStats) -> dict[str, np.ndarray]:
        out = {k: getattr(stats, k) for k in self._STATS}
        if out["worst_x"] is None:
            out["worst_x"] = np.zeros(stats.shift.shape[1])
        return out

    def stats_from_arrays(self, arrays: dict[str, np.ndarray]) -> StudentTStats:
        return StudentTStats(self.covariance_type, *(arrays[k].copy() for k in self._STATS))

    def sample(self, params: StudentTParams, counts: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        """counts[k] draws of component k: mu + z / sqrt(tau), z ~ N(0, Sigma), tau ~ Gamma(nu/2, nu/2)."""
        params = params.filled()
        D = params.means.shape[1]
        parts = []
        for k, n in enumerate(counts):
            n = int(n)
            if self.covariance_type == "full":
                z = rng.multivariate_normal(np.zeros(D), params.covariances[k], n)
            else:
                z = rng.standard_normal(size=(n, D)) * np.sqrt(params.covariances[k])
            nu = params.dof[k]
            tau = rng.gamma(0.5 * nu, 2.0 / nu, size=n)
            parts.append(params.means[k] + z / np.sqrt(tau)[:, None])
        return np.vstack(parts)

    def n_parameters(self, params: StudentTParams) -> int:
        K, D = params.means.shape
        cov = K * D * (D + 1) / 2 if self.covariance_type == "full" else K * D
        return int(cov + K * D + K - 1 + (0 if self.fix_degrees_of_freedom else K))
