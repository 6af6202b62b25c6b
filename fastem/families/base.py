"""What every mixture family provides, and the few pieces they share.

A *family* is the component distribution of a mixture (Gaussian, Poisson,
...). fastem's driver, executors, online EM, checkpoints, model files and
CLI know families only through this small protocol; nothing outside
``fastem/families`` and ``fastem/_kernels`` knows what a Gaussian is.

A family object is small, immutable and picklable (it travels to Dask
workers); it holds the family's configuration (e.g. the covariance type) and
turns parameters and data into statistics and back:

``zero_stats(params)``
    empty additive statistics for an E-step under ``params``;
``accumulate(X, sample_weight, params, stats, row_offset, out_logprob, out_label, out_resp)``
    the fused kernel pass over the rows of ``X``: log-densities,
    log-sum-exp, responsibilities and the family's sufficient statistics,
    added into ``stats`` (``None``: only the optional per-row outputs);
``m_step(stats)``
    new parameters and the indices of emptied components;
``first_invalid(X)``
    the first value the family cannot take (row, column, what is wrong and
    how to fix it), or None; NaN/inf included;
``initial_params(X, sample_weight, n_components=, init_params=, random_state=, restart=, **init_arrays)``
    initial parameters from an in-memory sample of rows;
``param_arrays(params)`` / ``params_from_arrays(arrays)`` and ``stats_arrays`` / ``stats_from_arrays``
    packing for model files and checkpoints (name -> array);
``check_param_arrays(arrays, n_components, n_features)``
    validation of loaded or user-given parameters (raises ValueError);
``sample(params, n_samples, rng)``, ``n_parameters(params)``
    sampling and the free-parameter count of BIC/AIC.

Statistics objects provide ``merge(other)`` (in place), ``scaled(factor)``,
``rebased(params)`` (the same statistics expressed for an E-step under
``params``: the Gaussian moves its moments to the new shift, the others are
unchanged), ``blended(old, eta)`` (``eta * self + (1 - eta) * old``, for
online EM), ``copy()``, ``weight_sum`` and ``mean_log_likelihood``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np

from .._kernels._config import BLOCK_ROWS
from .._kernels.checks import _first_nonfinite

NO_F64 = np.empty(0)
NO_I64 = np.empty(0, dtype=np.int64)
NO_RESP = np.empty((0, 0))

#: Memory allowed for the per-block partial statistics of one kernel call.
PARTIALS_BUDGET_BYTES = 64 * 2**20

#: A component whose responsibility mass R_k falls below this many average
#: samples is "emptied" (scikit-learn's stabiliser 10 * eps, relative).
EMPTY_MASS = 10 * np.finfo(np.float64).eps


class DegenerateComponentWarning(UserWarning):
    """A mixture component lost all its responsibility mass and was re-seeded."""


class DegenerateParameterWarning(UserWarning):
    """A fitted parameter reached the boundary of its range and was held at a stated floor."""


class ScalarStats:
    """The bookkeeping every statistics class shares, on its ``scalars`` array.

    ``scalars = [sum w * loglik, sum w, worst (lowest) per-point log-likelihood,
    number of rows]``, plus ``worst_index`` / ``worst_x`` (the worst-explained
    point, where an emptied component is re-seeded).
    """

    @property
    def weight_sum(self) -> float:
        return float(self.scalars[1])

    @property
    def loglik_sum(self) -> float:
        """sum_i w_i log p(x_i): non-finite when a NaN/inf reached the kernel."""
        return float(self.scalars[0])

    @property
    def sample_mass(self) -> float:
        """Responsibility mass of one average sample: sum w / number of rows."""
        return float(self.scalars[1] / self.scalars[3]) if self.scalars[3] > 0 else 1.0

    @property
    def mean_log_likelihood(self) -> float:
        """sum_i w_i log p(x_i) / sum_i w_i: the lower bound at the E-step's parameters."""
        return float(self.scalars[0] / self.scalars[1])

    def _merge_scalars(self, other) -> None:
        """Add ``other``'s sums into ``self``; keep the lower of the two worst points."""
        self.scalars[0] += other.scalars[0]
        self.scalars[1] += other.scalars[1]
        self.scalars[3] += other.scalars[3]
        if other.scalars[2] < self.scalars[2]:
            self.scalars[2] = other.scalars[2]
            self.worst_index[:] = other.worst_index
            self.worst_x = other.worst_x.copy()


class Family(Protocol):
    """The protocol above, for type checkers."""

    name: str

    def zero_stats(self, params: Any) -> Any: ...
    def accumulate(self, X, sample_weight, params, stats, row_offset: int = 0, out_logprob=NO_F64,
                   out_label=NO_I64, out_resp=NO_RESP) -> None: ...  # fmt: skip
    def m_step(self, stats: Any) -> tuple[Any, list[int]]: ...
    def first_invalid(self, X: np.ndarray) -> Invalid | None: ...
    def initial_params(self, X, sample_weight, **kwargs) -> Any: ...
    def param_arrays(self, params: Any) -> dict[str, np.ndarray]: ...
    def params_from_arrays(self, arrays: dict[str, np.ndarray]) -> Any: ...
    def stats_arrays(self, stats: Any) -> dict[str, np.ndarray]: ...
    def stats_from_arrays(self, arrays: dict[str, np.ndarray]) -> Any: ...
    def sample(self, params: Any, n_samples: int, rng: np.random.RandomState) -> np.ndarray: ...
    def n_parameters(self, params: Any) -> int: ...


def rows_per_call(stats_numbers: int) -> int:
    """Rows per kernel call so that per-block partials stay within budget."""
    blocks = PARTIALS_BUDGET_BYTES // (8 * max(stats_numbers, 1))
    return BLOCK_ROWS * int(min(1024, max(4, blocks)))


class Invalid(NamedTuple):
    """The first value of a chunk that a family cannot take, and what to do about it."""

    row: int
    column: int
    what: str  #: e.g. "NaN", "a negative count -3.0"
    detail: str  #: e.g. "the first non-finite value"
    fix: str  #: a full sentence


def first_nonfinite(X: np.ndarray) -> Invalid | None:
    """The first NaN/inf of ``X`` (one parallel scan), or None."""
    flat = int(_first_nonfinite(X))
    if flat < 0:
        return None
    row, col = divmod(flat, X.shape[1])
    kind = "NaN" if np.isnan(X[row, col]) else "infinity"
    return Invalid(row, col, kind, "the first non-finite value",
                   "Remove or impute NaN and inf values before calling fastem.")  # fmt: skip


# ---------------------------------------------------------------- classification (hard) EM
#: memory for the gathered copy of a sub-chunk in a classification-EM pass
HARD_GATHER_BYTES = 32 * 2**20


def hard_rows(n_features: int) -> int:
    """Rows per sub-chunk of a classification-EM pass: whole blocks, the gathered copy within budget."""
    blocks = HARD_GATHER_BYTES // (8 * max(n_features, 1) * BLOCK_ROWS)
    return BLOCK_ROWS * int(min(64, max(4, blocks)))


class ClassificationEM:
    """A family run by classification EM (``algorithm="hard"``): each row fully joins its likeliest component.

    It wraps a family and changes only what a fit accumulates: the statistics
    come from one-hot responsibilities r_ik = [k = z_i], z_i = argmax_k
    pi_k p_k(x_i), and the objective is the classification log-likelihood

        sum_i w_i log(pi_{z_i} p_{z_i}(x_i)) / sum_i w_i,

    which classification EM never decreases (Celeux & Govaert 1992). Scoring
    (``stats=None``: log p(x), labels, responsibilities) is the wrapped
    family's, so ``score``/``predict`` are unchanged.

    The wrapped family provides ``component_params(params, k)`` (a one-component
    mixture of component k with weight 1) and ``add_component_stats(stats, k,
    sub)`` (adds those one-component statistics into row k). Each chunk is
    processed in sub-chunks of :func:`hard_rows` rows: one kernel pass gives the
    labels, then the rows of each component are gathered and the unchanged
    fused kernel runs once more over them with that component alone, so its
    responsibility is exactly 1 and the family's own statistics (shifted
    moments, Student-t scale weights, ...) come out exactly. Cost relative to
    soft EM: one extra sweep per chunk (a K = 1 kernel pass plus a copy of the
    sub-chunk), while it is in memory; no second read of the data. The sums
    depend on the sub-chunk boundaries, so streamed and in-memory hard fits
    agree to rounding, not bit for bit.
    """

    __slots__ = ("family",)

    def __init__(self, family):
        object.__setattr__(self, "family", family)

    def __getattr__(self, name):
        if name == "family":  # during unpickling, before __setstate__
            raise AttributeError(name)
        return getattr(self.family, name)

    def __setattr__(self, name, value):
        raise AttributeError("ClassificationEM is immutable")

    def __reduce__(self):
        return (ClassificationEM, (self.family,))

    def __eq__(self, other) -> bool:
        return isinstance(other, ClassificationEM) and self.family == other.family

    def __hash__(self) -> int:
        return hash(("hard", self.family))

    def __repr__(self) -> str:
        return f"ClassificationEM({self.family!r})"

    @property
    def config(self) -> dict:
        """The wrapped family's configuration plus ``algorithm: "hard"`` (model files, checkpoints)."""
        return {**self.family.config, "algorithm": "hard"}

    def for_fit(self, n_components: int, n_features: int, moments=None) -> ClassificationEM:
        return ClassificationEM(self.family.for_fit(n_components, n_features, moments))

    def accumulate(self, X, sample_weight, params, stats, row_offset: int = 0, out_logprob=NO_F64,
                   out_label=NO_I64, out_resp=NO_RESP) -> None:  # fmt: skip
        family = self.family
        if stats is None:  # scoring: the mixture's own outputs
            family.accumulate(X, sample_weight, params, None, row_offset, out_logprob, out_label, out_resp)
            return
        K = params.n_components
        parts = [family.component_params(params, k) for k in range(K)]
        with np.errstate(divide="ignore"):
            log_weights = np.log(np.asarray(params.weights, dtype=np.float64))
        n = X.shape[0]
        step = hard_rows(X.shape[1])
        labels = np.empty(min(n, step), dtype=np.int64)
        small = np.int16 if K <= np.iinfo(np.int16).max else np.int64  # int16 sorts by radix, O(n)
        for start in range(0, n, step):
            stop = min(n, start + step)
            Xs = X[start:stop]
            sws = None if sample_weight is None else sample_weight[start:stop]
            lab = out_label[start:stop] if out_label.size else labels[: stop - start]
            family.accumulate(Xs, sws, params, None, row_offset + start,
                              out_logprob[start:stop] if out_logprob.size else NO_F64, lab,
                              out_resp[start:stop] if out_resp.size else NO_RESP)  # fmt: skip
            order = np.argsort(lab.astype(small), kind="stable")  # each component's rows, in their order
            bounds = np.concatenate([[0], np.cumsum(np.bincount(lab, minlength=K))])
            for k in np.flatnonzero(np.diff(bounds)):
                idx = order[bounds[k] : bounds[k + 1]]
                sub = family.zero_stats(parts[k])
                family.accumulate(Xs[idx], None if sws is None else sws[idx], parts[k], sub, 0)
                family.add_component_stats(stats, int(k), sub)
                # the sub-pass's log-likelihood is log p_k(x) (weight 1): add log pi_k per unit weight
                stats.scalars[0] += sub.scalars[0] + (
                    log_weights[k] * sub.scalars[1] if sub.scalars[1] else 0.0
                )
                stats.scalars[1] += sub.scalars[1]
                stats.scalars[3] += sub.scalars[3]
                # the worst-explained row (by its own component), the first one on ties
                where = row_offset + start + int(idx[int(sub.worst_index[0])]) if idx.size else 0
                if sub.scalars[2] < stats.scalars[2] or (
                    sub.scalars[2] == stats.scalars[2] and where < stats.worst_index[0]
                ):
                    stats.scalars[2] = sub.scalars[2]
                    stats.worst_index[0] = where
                    if stats.worst_x is not None and sub.worst_x is not None:
                        stats.worst_x[:] = sub.worst_x


def unwrapped(family):
    """The family itself, without a :class:`ClassificationEM` wrapper."""
    return family.family if isinstance(family, ClassificationEM) else family
