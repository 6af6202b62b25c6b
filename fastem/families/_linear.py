"""What the linear exponential families (Poisson, Bernoulli, multinomial, vMF) share.

For each of them the per-component log-density is linear in x,
``log p_k(x) = theta_k . x + c_k + h(x)``, so they share one fused kernel
(``_kernels/expfam.py``: the product X theta^T, log-sum-exp, responsibilities
and the first moments) and one kind of statistics:

    R_k = sum_i w_i r_ik,    S1_k = sum_i w_i r_ik x_i

Each family module says how parameters map to (theta, c), how (R, S1) map
back to parameters (its M-step), which values its data may take, how to
sample and how many free parameters it has; this module does the rest.

Emptied components follow the Gaussian family's rule: a component whose mass
R_k falls below 10 eps times the mass of one average sample is emptied; the
first such component is re-seeded at the worst-explained sample of the pass
(lowest log-likelihood) with the mass of one sample, any others keep their
previous parameters with weight 0 until a later iteration re-seeds them.

Missing values (``missing="marginalize"``, Poisson and Bernoulli): NaN marks a
missing entry. Features are independent given the component, so a missing
entry drops out of its feature's term: log p_k(x) = sum over observed d of
log p(x_d | theta_kd), and the M-step of feature d uses only the rows where d
is observed. The statistics gain the missing mass

    M_kd = sum_i w_i r_ik [x_id missing]

(S1 counts a missing entry as 0), so the per-feature denominators are
R_k - M_kd: rate_kd = S1_kd / (R_k - M_kd), with a prior's pseudocounts added
to both. This is exact EM (the log-likelihood never decreases). A feature with
no observed mass in a component (R_k - M_kd <= 1e-10 R_k) does not enter the
likelihood, so its parameter keeps its previous value (with a prior: the
prior's mode). Chunks without NaN take the complete-data kernel, so data with
no NaN give results bit for bit equal to ``missing="error"``. The multinomial
family is excluded: a missing count changes the row total n, on which every
term of its likelihood depends, so it is not a drop-out; vMF likewise (the
unit-norm constraint couples the coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .._init import responsibility_chunks, responsibility_sums
from .._kernels._config import BLOCK_ROWS
from .._kernels.checks import (
    ALL_MISSING,
    EMPTY_ROW,
    NEGATIVE,
    NONFINITE,
    NOT_BINARY,
    NOT_INTEGER,
    NOT_UNIT,
    _first_invalid,
    _first_invalid_missing,
)
from .._kernels.expfam import (
    _expfam_pass,
    _expfam_pass_csr,
    _expfam_pass_missing,
    _has_nan,
    log_factorial_table,
)
from .._threads import serial_if_small
from .base import EMPTY_MASS, NO_F64, NO_I64, NO_RESP, Invalid, ScalarStats, rows_per_call

_LOG_FACTORIALS = log_factorial_table()

#: the values of the families' ``missing`` field
MISSING_MODES = ("error", "marginalize")

#: a feature whose observed mass in a component is at most this fraction of the component's mass
#: counts as unobserved there (R_k - M_kd is a difference of sums: rounding, not data, below it)
UNOBSERVED_MASS = 1e-10

#: rows per kernel call of ``impute`` (bounds its (rows, K) responsibilities)
_IMPUTE_ROWS = 65_536

_NO_MISSING_MASS = np.zeros((0, 0))


def is_csr(X) -> bool:
    """A scipy.sparse CSR matrix or array (checked without importing scipy)."""
    return getattr(X, "format", None) == "csr" and hasattr(X, "indptr")


@dataclass
class LinearParams:
    """Mixture weights plus the family's named parameter arrays (e.g. ``{"rates": (K, D)}``)."""

    weights: np.ndarray
    arrays: dict[str, np.ndarray]

    @property
    def n_components(self) -> int:
        return self.weights.shape[0]


@dataclass
class LinearStats(ScalarStats):
    """Additive statistics of one E-step of a linear family (see the module docstring)."""

    #: the parameters of the E-step (emptied components keep theirs)
    previous: LinearParams
    R: np.ndarray
    S1: np.ndarray
    #: [sum w * loglik, sum w, worst (lowest) per-point log-likelihood, number of rows]
    scalars: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, np.inf, 0.0]))
    worst_index: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    worst_x: np.ndarray | None = None
    #: (K, D) missing mass M_kd = sum_i w_i r_ik [x_id missing] (``missing="marginalize"``), else None
    missing_mass: np.ndarray | None = None

    @classmethod
    def zeros(cls, params: LinearParams, n_features: int, missing: bool = False) -> LinearStats:
        K = params.n_components
        mass = np.zeros((K, n_features)) if missing else None
        return cls(params, np.zeros(K), np.zeros((K, n_features)), worst_x=np.zeros(n_features),
                   missing_mass=mass)  # fmt: skip

    def merge(self, other: LinearStats) -> LinearStats:
        """Add ``other`` into ``self`` in place (the worst point is the lower of the two)."""
        self.R += other.R
        self.S1 += other.S1
        if other.missing_mass is not None:
            if self.missing_mass is None:
                self.missing_mass = other.missing_mass.copy()
            else:
                self.missing_mass += other.missing_mass
        self._merge_scalars(other)
        return self

    def copy(self) -> LinearStats:
        worst = None if self.worst_x is None else self.worst_x.copy()
        mass = None if self.missing_mass is None else self.missing_mass.copy()
        return LinearStats(self.previous, self.R.copy(), self.S1.copy(), self.scalars.copy(),
                           self.worst_index.copy(), worst, mass)  # fmt: skip

    def scaled(self, factor: float) -> LinearStats:
        out = self.copy()
        out.R *= factor
        out.S1 *= factor
        if out.missing_mass is not None:
            out.missing_mass *= factor
        return out

    def rebased(self, params: LinearParams) -> LinearStats:
        """First moments need no shift: the same numbers, remembered as taken under ``params``."""
        out = self.copy()
        out.previous = params
        return out

    def blended(self, old: LinearStats, eta: float) -> LinearStats:
        out = self.scaled(eta)
        out.R += (1.0 - eta) * old.R
        out.S1 += (1.0 - eta) * old.S1
        if old.missing_mass is not None:
            if out.missing_mass is None:
                out.missing_mass = np.zeros_like(old.missing_mass)
            out.missing_mass += (1.0 - eta) * old.missing_mass
        return out


_PROBLEMS = {
    NONFINITE: ("{value}", "the first non-finite value",
                "Remove or impute NaN and inf values before calling fastem."),
    NEGATIVE: ("a negative count {value}", "counts must be >= 0", "Pass non-negative integer counts."),
    NOT_INTEGER: ("a non-integer count {value}", "counts must be whole numbers",
                  "Pass integer counts (round them, or use a GaussianMixture for continuous data)."),
    NOT_BINARY: ("the value {value}", "Bernoulli features must be 0 or 1",
                 "Binarise the data first, e.g. (X > threshold).astype(float)."),
    EMPTY_ROW: ("a row of zero counts", "a multinomial draw needs at least one count",
                "Remove empty rows (documents without words) before fitting."),
    ALL_MISSING: ("a row whose every entry is missing (NaN)", "it carries no information about any component",
                  "Drop the rows that are entirely NaN before fitting (e.g. X[~np.isnan(X).all(axis=1)])."),
    NOT_UNIT: ("a row of norm {value}", "von Mises-Fisher data must be unit vectors",
               "Normalise the rows (X / ||X||), or pass normalize=True to let fastem do it."),
}  # fmt: skip


class LinearFamily:
    """Base of the linear families; subclasses fill the class attributes and the hooks below."""

    name: ClassVar[str]
    #: base-measure code of the kernel (0 none, 1 Poisson, 2 multinomial)
    base_code: ClassVar[int] = 0
    #: value rule of ``_kernels.checks._first_invalid``, and its tolerance
    rule: ClassVar[int]
    rule_tol: ClassVar[float] = 0.0
    #: the parameter arrays' names, e.g. ("rates",)
    parameter_names: ClassVar[tuple[str, ...]]
    #: whether the kernel runs on CSR input
    accepts_sparse: ClassVar[bool] = False

    def __post_init__(self):
        missing = getattr(self, "missing", "error")
        if missing not in MISSING_MODES:
            raise ValueError(f"Invalid value for 'missing': {missing!r}. Use 'error' (NaN is refused) or "
                             "'marginalize' (NaN marks a missing entry, integrated out by EM).")  # fmt: skip

    @property
    def marginalizes(self) -> bool:
        """Whether NaN marks a missing entry (``missing="marginalize"``)."""
        return getattr(self, "missing", "error") == "marginalize"

    @property
    def config(self) -> dict:
        return {"missing": self.missing} if self.marginalizes else {}

    # ---- priors (MAP-EM, see ``fastem.priors``): subclasses that take one have a ``prior`` field
    @property
    def needs_data_moments(self) -> bool:
        return False

    def for_fit(self, n_components: int, n_features: int, moments=None):
        """The family as a fit runs it (pseudocount priors need nothing from the data)."""
        return self

    def log_prior(self, params: LinearParams) -> float:
        """log p(theta) under the family's prior (0 without a prior)."""
        prior = getattr(self, "prior", None)
        return 0.0 if prior is None else prior.log_prior(params)

    # ---- hooks every family defines:
    # natural(params, dtype) -> (theta (K, D) in dtype, c (K,) float64) with
    #     log p_k(x) = theta_k . x + c_k + h(x);
    # from_moments(R, S1) -> {name: array}: the M-step of the components' own
    #     parameters from their (R, S1) (live components only);
    # sample(params, counts, rng) and n_parameters(params).
    def from_point(self, x: np.ndarray, params: LinearParams) -> dict[str, np.ndarray]:
        """Parameters of one component re-seeded at the data point ``x`` (the emptied-component rule).

        Missing entries of ``x`` take their conditional mean under ``params`` (:meth:`impute`).
        """
        x = np.asarray(x, dtype=np.float64)
        if np.isnan(x).any():
            x = self.impute(x[None, :], params)[0]
        return self.from_moments(np.ones(1), x[None, :])

    # ---- protocol
    def zero_stats(self, params: LinearParams) -> LinearStats:
        n_features = params.arrays[self.parameter_names[0]].shape[1]
        return LinearStats.zeros(params, n_features, missing=self.marginalizes)

    def accumulate(
        self, X, sample_weight, params: LinearParams, stats: LinearStats | None, row_offset: int = 0,
        out_logprob=NO_F64, out_label=NO_I64, out_resp=NO_RESP,
    ) -> None:  # fmt: skip
        """The fused pass over the rows of ``X`` (dense, or CSR where the family accepts it)."""
        sparse = is_csr(X)
        dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
        theta, c = self.natural(params, dtype)
        with np.errstate(divide="ignore"):  # a zero weight gives log 0 = -inf: never chosen
            const = np.ascontiguousarray(np.log(params.weights) + c, dtype=np.float64)
        theta = np.ascontiguousarray(theta, dtype=dtype)
        accumulate = stats is not None
        if stats is None:
            stats = LinearStats.zeros(params, theta.shape[1])
        marginalize = self.marginalizes and not sparse
        terms = mass = None
        if marginalize:
            terms = np.ascontiguousarray(self.natural_terms(params), dtype=np.float64)
            mass = stats.missing_mass if accumulate else _NO_MISSING_MASS
            if mass is None:  # statistics made before the family marginalised
                mass = stats.missing_mass = np.zeros_like(stats.S1)
        n_stats = stats.R.size + stats.S1.size + (stats.S1.size if marginalize else 0)
        step = rows_per_call(n_stats) if accumulate else BLOCK_ROWS * 1024
        sw = NO_F64 if sample_weight is None else sample_weight
        n = X.shape[0]
        with serial_if_small(n, BLOCK_ROWS):
            for start in range(0, n, step):
                stop = min(n, start + step)
                common = (
                    sw[start:stop] if sw.size else NO_F64, theta, const, self.base_code, _LOG_FACTORIALS,
                    accumulate, row_offset + start, stats.R, stats.S1, stats.scalars, stats.worst_index,
                    stats.worst_x,
                    out_logprob[start:stop] if out_logprob.size else NO_F64,
                    out_label[start:stop] if out_label.size else NO_I64,
                    out_resp[start:stop] if out_resp.size else NO_RESP,
                )  # fmt: skip
                if sparse:
                    _expfam_pass_csr(X.data, X.indices, X.indptr[start : stop + 1], X.shape[1], *common)
                elif marginalize and _has_nan(X[start:stop]):
                    # NaN present (inf was refused by ``first_invalid``): the masking pass
                    _expfam_pass_missing(X[start:stop], common[0], theta, const, terms, self.base_code,
                                         _LOG_FACTORIALS, accumulate, row_offset + start, stats.R, stats.S1,
                                         mass, *common[9:])  # fmt: skip
                else:  # no NaN: the complete-data pass, bit for bit as with missing="error"
                    _expfam_pass(X[start:stop], *common)

    def impute(self, X, params: LinearParams) -> np.ndarray:
        """A copy of ``X`` with each NaN replaced by its conditional mean under the mixture.

        E[x_d | x_O] = sum_k r_k(x_O) mean_kd, where r_k(x_O) are the
        responsibilities given the row's observed entries and mean_kd the
        component's mean (a Poisson rate, a Bernoulli probability). Works
        whatever the family's ``missing`` setting; a row with every entry
        missing gets the mixture's mean (r_k = pi_k). Observed entries are
        copied unchanged.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Data with NaN for the missing entries (validate it first; inf is not allowed).
        params : LinearParams
            The mixture.

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features)
            float64 (float32 if ``X`` is float32), without NaN.
        """
        X = np.asarray(X)
        dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
        out = np.array(X, dtype=dtype, order="C", copy=True)
        missing = np.isnan(out)
        rows = np.flatnonzero(missing.any(axis=1))
        if rows.size == 0:
            return out
        means = np.asarray(params.arrays[self.parameter_names[0]], dtype=np.float64)
        theta, c = self.natural(params, dtype)
        with np.errstate(divide="ignore"):
            const = np.ascontiguousarray(np.log(params.weights) + c, dtype=np.float64)
        theta = np.ascontiguousarray(theta, dtype=dtype)
        terms = np.ascontiguousarray(self.natural_terms(params), dtype=np.float64)
        scratch = LinearStats.zeros(params, out.shape[1])
        for start in range(0, rows.size, _IMPUTE_ROWS):
            idx = rows[start : start + _IMPUTE_ROWS]
            part = out[idx]  # a contiguous copy
            resp = np.empty((idx.size, params.n_components))
            with serial_if_small(idx.size, BLOCK_ROWS):
                _expfam_pass_missing(part, NO_F64, theta, const, terms, self.base_code, _LOG_FACTORIALS,
                                     False, 0, scratch.R, scratch.S1, _NO_MISSING_MASS, scratch.scalars,
                                     scratch.worst_index, scratch.worst_x, NO_F64, NO_I64, resp)  # fmt: skip
            out[idx] = np.where(missing[idx], resp @ means, part)
        return out

    # ---- classification EM (``families/base.py::ClassificationEM``)
    def component_params(self, params: LinearParams, k: int) -> LinearParams:
        """Component ``k`` alone, as a one-component mixture of weight 1."""
        return LinearParams(np.ones(1), {name: a[k : k + 1] for name, a in params.arrays.items()})

    def add_component_stats(self, stats: LinearStats, k: int, sub: LinearStats) -> None:
        """Add the statistics of a one-component pass (:meth:`component_params`) into component ``k``."""
        stats.R[k] += sub.R[0]
        stats.S1[k] += sub.S1[0]
        if sub.missing_mass is not None and stats.missing_mass is not None:
            stats.missing_mass[k] += sub.missing_mass[0]

    def m_step(self, stats: LinearStats) -> tuple[LinearParams, list[int]]:
        """New weights and parameters; emptied components by the rule of the module docstring."""
        R = stats.R
        one_sample = stats.sample_mass
        live = np.flatnonzero(R >= EMPTY_MASS * one_sample)
        empty = np.flatnonzero(~(R >= EMPTY_MASS * one_sample))
        if live.size == 0:
            raise ValueError(
                "every component has zero responsibility mass: the sample weights sum "
                "to zero or the data are degenerate. Pass positive sample weights."
            )
        arrays = {name: np.array(a, dtype=np.float64) for name, a in stats.previous.arrays.items()}
        R_live, S1_live = R[live], stats.S1[live]
        prior = getattr(self, "prior", None)
        mass = stats.missing_mass
        if mass is not None and mass[live].any():
            # per-feature denominators: the mass of the rows where the feature is observed
            observed = R_live[:, None] - mass[live]
            unobserved = observed <= UNOBSERVED_MASS * R_live[:, None]
            R_live = np.where(unobserved, 0.0, observed)
            S1_live = np.where(unobserved, 0.0, S1_live)
            if prior is not None:
                R_live, S1_live = prior.pseudo_moments(R_live, S1_live)
            # no observation and no prior: the likelihood does not depend on it, keep the previous value
            keep = ~(R_live > 0)
            if keep.any():
                previous = arrays[self.parameter_names[0]][live]
                R_live = np.where(keep, 1.0, R_live)
                S1_live = np.where(keep, previous, S1_live)
        elif prior is not None:  # MAP: the prior's pseudo-observations join the statistics
            R_live, S1_live = prior.pseudo_moments(R_live, S1_live)
        for name, values in self.from_moments(R_live, S1_live).items():
            arrays[name][live] = values
        weights = np.where(R >= EMPTY_MASS * one_sample, R, 0.0)
        if prior is not None:
            weights[live] += prior.weight_pseudocount
        if empty.size:
            first = empty[0]
            if np.isfinite(stats.scalars[2]) and stats.worst_x is not None:
                for name, values in self.from_point(stats.worst_x, stats.previous).items():
                    arrays[name][first] = values[0]
            weights[first] = one_sample
        return LinearParams(weights / weights.sum(), arrays), [int(k) for k in empty]

    def first_invalid(self, X) -> Invalid | None:
        if is_csr(X):
            return self._first_invalid_csr(X)
        if self.marginalizes:  # NaN is a missing entry; inf, bad values and all-NaN rows are not
            row, col, code = _first_invalid_missing(X, self.rule, self.rule_tol)
        else:
            row, col, code = _first_invalid(X, self.rule, self.rule_tol)
        if code == 0:
            return None
        return self._describe(X, int(row), int(col), int(code))

    def _describe(self, X, row: int, col: int, code: int) -> Invalid:
        what, detail, fix = _PROBLEMS[code]
        if code == NOT_UNIT:
            value = f"{np.linalg.norm(np.asarray(X[row], dtype=np.float64)):.6g}"
        elif code in (EMPTY_ROW, ALL_MISSING):
            value = ""
        else:
            v = float(X[row, col])
            value = ("NaN" if np.isnan(v) else "infinity") if code == NONFINITE else f"{v:g}"
        return Invalid(row, col, what.format(value=value), detail, fix)

    def _first_invalid_csr(self, X) -> Invalid | None:
        """The same checks on a CSR matrix: its stored values, then row totals."""
        data = np.asarray(X.data)
        indptr = np.asarray(X.indptr)
        bad = np.flatnonzero(~np.isfinite(data))
        codes = [(NONFINITE, bad)]
        if self.base_code:  # counts
            codes.append((NEGATIVE, np.flatnonzero(data < 0)))
            codes.append((NOT_INTEGER, np.flatnonzero(np.isfinite(data) & (data != np.floor(data)))))
        first = None
        for code, where in codes:
            if where.size and (first is None or where[0] < first[1]):
                first = (code, int(where[0]))
        if first is not None:
            code, pos = first
            row = int(np.searchsorted(indptr, pos, side="right") - 1)
            col = int(X.indices[pos])
            what, detail, fix = _PROBLEMS[code]
            v = float(data[pos])
            value = ("NaN" if np.isnan(v) else "infinity") if code == NONFINITE else f"{v:g}"
            return Invalid(row, col, what.format(value=value), detail, fix)
        if self.rule == 3:  # multinomial: every row needs a positive total
            totals = np.add.reduceat(np.append(data, 0.0), np.minimum(indptr[:-1], data.size))
            totals[indptr[:-1] == indptr[1:]] = 0.0
            empty = np.flatnonzero(totals <= 0)
            if empty.size:
                what, detail, fix = _PROBLEMS[EMPTY_ROW]
                return Invalid(int(empty[0]), -1, what, detail, fix)
        return None

    def initial_params(self, X, sample_weight, *, n_components, init_params, random_state,
                       weights_init=None, restart=0, **init_arrays) -> LinearParams:  # fmt: skip
        """Responsibilities from ``init_params`` on ``X`` (dense), then one M-step; ``*_init`` arrays win."""
        given = {name: init_arrays.get(f"{name}_init") for name in self.parameter_names}
        if weights_init is not None and all(v is not None for v in given.values()):
            return LinearParams(np.array(weights_init, dtype=np.float64),
                                {k: np.array(v, dtype=np.float64) for k, v in given.items()})  # fmt: skip
        if is_csr(X):
            X = np.ascontiguousarray(X.toarray())
        observed = None
        if self.marginalizes:
            observed = ~np.isnan(X)
            if observed.all():
                observed = None
        if observed is None:
            resp_chunks, _ = responsibility_chunks(X, sample_weight, n_components, init_params, random_state,
                                                   restart=restart)  # fmt: skip
            R, S1, weight_sum, n_rows = responsibility_sums(X, sample_weight, resp_chunks, n_components)
            # a component with no responsibility gets the overall statistics (a neutral start)
            R_all, S1_all = R.sum(), S1.sum(axis=0)
            none = ~(R > 0)
            R[none], S1[none] = R_all / n_components, S1_all / n_components
            arrays = self.from_moments(R, S1)
        else:
            R, arrays = self._initial_moments_missing(X, observed, sample_weight, n_components, init_params,
                                                      random_state, restart)  # fmt: skip
        weights = R / R.sum()
        if weights_init is not None:
            weights = np.array(weights_init, dtype=np.float64)
        for name, value in given.items():
            if value is not None:
                arrays[name] = np.array(value, dtype=np.float64)
        return LinearParams(weights, arrays)

    def _initial_moments_missing(self, X, observed, sample_weight, n_components, init_params, random_state,
                                 restart) -> tuple[np.ndarray, dict[str, np.ndarray]]:  # fmt: skip
        """Initial (R, parameters) from data with NaN.

        The responsibilities come from ``init_params`` run on a copy with each
        NaN replaced by its column's (weighted) observed mean; the statistics then
        use the observed entries only: S1_kd = sum w r x_d and the per-feature
        mass sum w r [d observed] over the rows where d is observed.
        """
        w = np.ones(X.shape[0]) if sample_weight is None else sample_weight
        obs = observed.astype(np.float64)
        zero_filled = np.ascontiguousarray(np.where(observed, X, 0.0), dtype=np.float64)
        obs_weight = w @ obs
        overall = (w @ zero_filled).sum() / obs_weight.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            column_means = np.where(obs_weight > 0, (w @ zero_filled) / obs_weight, overall)
        filled = np.ascontiguousarray(np.where(observed, X, column_means), dtype=np.float64)
        resp_chunks, _ = responsibility_chunks(filled, sample_weight, n_components, init_params, random_state,
                                               restart=restart)  # fmt: skip
        R, S1, _, _ = responsibility_sums(zero_filled, sample_weight, resp_chunks, n_components)
        _, R_obs, _, _ = responsibility_sums(np.ascontiguousarray(obs), sample_weight, resp_chunks,
                                             n_components)  # fmt: skip
        # no observed mass (a component without rows, or a feature it never sees): the column mean
        none = ~(R_obs > 0)
        R_obs[none] = 1.0
        S1[none] = np.broadcast_to(column_means, S1.shape)[none]
        none_k = ~(R > 0)
        R[none_k] = R.sum() / n_components
        return R, self.from_moments(R_obs, S1)

    def param_arrays(self, params: LinearParams) -> dict[str, np.ndarray]:
        return {"weights": params.weights, **params.arrays}

    def params_from_arrays(self, arrays: dict[str, np.ndarray]) -> LinearParams:
        named = {name: np.array(arrays[name], dtype=np.float64) for name in self.parameter_names}
        return LinearParams(np.array(arrays["weights"], dtype=np.float64), named)

    def stats_arrays(self, stats: LinearStats) -> dict[str, np.ndarray]:
        prev = {f"previous_{k}": v for k, v in self.param_arrays(stats.previous).items()}
        worst = stats.worst_x if stats.worst_x is not None else np.zeros(stats.S1.shape[1])
        out = {"R": stats.R, "S1": stats.S1, "scalars": stats.scalars, "worst_index": stats.worst_index,
               "worst_x": worst, **prev}  # fmt: skip
        if stats.missing_mass is not None:
            out["missing_mass"] = stats.missing_mass
        return out

    def stats_from_arrays(self, arrays: dict[str, np.ndarray]) -> LinearStats:
        prev = self.params_from_arrays({k[len("previous_"):]: v for k, v in arrays.items()
                                        if k.startswith("previous_")})  # fmt: skip
        mass = arrays.get("missing_mass")
        if mass is None and self.marginalizes:
            mass = np.zeros_like(arrays["S1"])
        return LinearStats(prev, arrays["R"].copy(), arrays["S1"].copy(), arrays["scalars"].copy(),
                           arrays["worst_index"].copy(), arrays["worst_x"].copy(),
                           None if mass is None else np.array(mass, dtype=np.float64))  # fmt: skip
