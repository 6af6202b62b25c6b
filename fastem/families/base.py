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
``initial_params(X, sample_weight, n_components=, init_params=, random_state=, **init_arrays)``
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
