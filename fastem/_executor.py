"""The in-memory executor: runs the fused kernel over an array, chunk by chunk.

Executors turn (rows, parameters) into :class:`SufficientStats`. The driver in
``_em.py`` only sees this interface, so streaming and Dask executors can stand
in for this one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._kernels._config import BLOCK_ROWS, COV_CODES
from ._kernels.gaussian import _gaussian_pass
from ._stats import GaussianParams, SufficientStats
from ._threads import serial_if_small

_NO_F64 = np.empty(0)
_NO_I64 = np.empty(0, dtype=np.int64)
_NO_RESP = np.empty((0, 0))

#: Memory allowed for the per-block partial statistics of one kernel call.
_PARTIALS_BUDGET_BYTES = 64 * 2**20


def rows_per_call(stats_numbers: int) -> int:
    """Rows per kernel call so that per-block partials stay within budget."""
    blocks = _PARTIALS_BUDGET_BYTES // (8 * max(stats_numbers, 1))
    return BLOCK_ROWS * int(min(1024, max(4, blocks)))


def accumulate_chunk(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    packed: tuple[np.ndarray, np.ndarray, np.ndarray],
    stats: SufficientStats | None,
    row_offset: int,
    cov_code: int,
    out_logprob: np.ndarray = _NO_F64,
    out_label: np.ndarray = _NO_I64,
    out_resp: np.ndarray = _NO_RESP,
) -> None:
    """E-step over the rows of ``X`` (and accumulation into ``stats`` if given).

    The chunk is fed to the kernel in pieces whose sizes are multiples of
    ``BLOCK_ROWS``, so the order of additions is the same for any chunking that
    respects block boundaries.
    """
    log_norm, means, prec = packed
    accumulate = stats is not None
    if stats is None:
        n_components, n_features = means.shape
        stats = SufficientStats.zeros("diag", np.zeros((n_components, n_features)))
        stats_numbers = 0
    else:
        stats_numbers = stats.R.size + stats.S1.size + stats.S2.size
    step = rows_per_call(stats_numbers) if accumulate else BLOCK_ROWS * 1024
    sw = _NO_F64 if sample_weight is None else sample_weight
    n = X.shape[0]
    with serial_if_small(n, BLOCK_ROWS):
        _run_pieces(
            X, sw, packed, stats, accumulate, step, row_offset, cov_code, out_logprob, out_label, out_resp
        )


def _run_pieces(
    X, sw, packed, stats, accumulate, step, row_offset, cov_code, out_logprob, out_label, out_resp
):
    log_norm, means, prec = packed
    # the E-step's quadratic form runs in the data's precision (float32: twice the SIMD lanes)
    prec = prec.astype(X.dtype, copy=False)
    n = X.shape[0]
    for start in range(0, n, step):
        stop = min(n, start + step)
        _gaussian_pass(
            X[start:stop],
            sw[start:stop] if sw.size else _NO_F64,
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
            out_logprob[start:stop] if out_logprob.size else _NO_F64,
            out_label[start:stop] if out_label.size else _NO_I64,
            out_resp[start:stop] if out_resp.size else _NO_RESP,
        )


@dataclass
class FitPlan:
    """What ``fit`` needs from its input, whatever the input is."""

    #: runs the passes: ``executor.accumulate(params) -> SufficientStats``
    executor: object
    #: rows that initialisation may read in memory (all rows, or a sample of them)
    init_X: np.ndarray
    init_sample_weight: np.ndarray | None
    n_samples: int
    n_features: int
    feature_names: np.ndarray | None = None


class ArrayExecutor:
    """Runs E-steps on a C-contiguous float32/float64 array held in memory."""

    def __init__(self, X: np.ndarray, sample_weight: np.ndarray | None = None):
        self.X = X
        self.sample_weight = sample_weight

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def accumulate(self, params: GaussianParams) -> SufficientStats:
        """One fused E-step + moment pass over all rows."""
        stats = SufficientStats.zeros(params.covariance_type, params.means)
        accumulate_chunk(self.X, self.sample_weight, params.packed(), stats, 0, stats.cov_code)
        return stats

    def score(
        self,
        params: GaussianParams,
        logprob: bool = False,
        label: bool = False,
        resp: bool = False,
    ) -> dict[str, np.ndarray]:
        """Per-row outputs of the E-step: log-likelihood, label and/or responsibilities."""
        n = self.n_samples
        out = {
            "logprob": np.empty(n) if logprob else _NO_F64,
            "label": np.empty(n, dtype=np.int64) if label else _NO_I64,
            "resp": np.empty((n, params.n_components)) if resp else _NO_RESP,
        }
        code = COV_CODES[params.covariance_type]
        accumulate_chunk(
            self.X, None, params.packed(), None, 0, code, out["logprob"], out["label"], out["resp"]
        )
        return out
