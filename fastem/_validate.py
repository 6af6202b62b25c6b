"""Input checks and their messages, in one place for every executor.

In memory, streamed from a file or read by Dask workers, the same data gets
the same message: what is wrong, where, and what to do. "Where" is said in the
user's terms: the row and column indices counted from 0 as in NumPy (and said
to be so), plus, for a text file, the 1-based line of the file (header
included) and the column's name. A file's name appears once, at the start of
the message. Checks run before any EM work, so a refused input leaves the
estimator as it was.
"""

from __future__ import annotations

import numpy as np

from ._threads import thread_limit
from .families.base import Invalid


def invalid_message(where: str, problem: Invalid, row_offset: int = 0, place: str | None = None) -> str:
    """The message for a value a family refuses.

    Parameters
    ----------
    where : str
        What holds the data: ``"Input X"``, or a source's name (a quoted file name).
    problem : Invalid
        The family's description of the first refused value (``row`` relative to ``row_offset``).
    row_offset : int, default=0
        Global index of the first row ``problem.row`` counts from.
    place : str or None, default=None
        The same place in the file's own terms, e.g. ``"line 1235 of the file, column 'b'"``.

    Returns
    -------
    message : str
        ``"<where> contains <what> at row r, column c (counted from 0; <place>; <detail>). <fix>"``
        (no column for a problem of a whole row).
    """
    at = f"row {row_offset + problem.row}"
    if problem.column >= 0:
        at += f", column {problem.column}"
    notes = "; ".join(n for n in ("counted from 0", place, problem.detail) if n)
    return f"{where} contains {problem.what} at {at} ({notes}). {problem.fix}"


#: the values of the ``missing`` parameter (GaussianMixture, PoissonMixture, BernoulliMixture)
MISSING_OPTIONS = ("error", "marginalize")

#: added to the fix of a NaN refused under ``missing="error"`` by a family that can marginalise it
MISSING_HINT = (
    "To treat NaN as a missing entry instead, pass missing='marginalize': EM then marginalises it out."
)


def check_missing(value) -> None:
    """Refuse a ``missing`` value other than ``"error"`` or ``"marginalize"`` (ValueError)."""
    if not (isinstance(value, str) and value in MISSING_OPTIONS):
        raise ValueError(
            f"Invalid value for 'missing': {value!r}. Allowed values are {list(MISSING_OPTIONS)}: 'error' "
            "refuses NaN with the row named, 'marginalize' treats NaN as a missing entry that EM "
            "marginalises out."
        )


def first_invalid(family, X) -> Invalid | None:
    """``family.first_invalid(X)``, with the hint that ``missing='marginalize'`` exists for a refused NaN.

    The hint is added only where it applies: a family that takes a ``missing``
    setting (Gaussian, Poisson, Bernoulli) running with ``missing="error"``.
    """
    problem = family.first_invalid(X)
    if (
        problem is not None
        and problem.what == "NaN"
        and getattr(family, "missing", None) == "error"
        and "missing=" not in problem.fix
    ):
        problem = problem._replace(fix=f"{problem.fix} {MISSING_HINT}")
    return problem


def check_rows(family, X: np.ndarray, *, row_offset: int = 0, where: str = "Input X", n_jobs=None) -> None:
    """Raise ``ValueError`` at the first value of ``X`` that ``family`` cannot take."""
    with thread_limit(n_jobs, X.shape[0]):
        problem = first_invalid(family, X)
    if problem is not None:
        raise ValueError(invalid_message(where, problem, row_offset))


def check_n_features(n_features: int, expected: int, estimator_name: str, where: str = "X") -> None:
    if n_features != expected:
        raise ValueError(
            f"{where} has {n_features} features, but {estimator_name} is expecting {expected} "
            "features as input."
        )


def sample_weight_array(sample_weight, n_samples: int) -> np.ndarray | None:
    """Validated C-contiguous float64 weights (a scalar is broadcast), or None."""
    if sample_weight is None:
        return None
    sw = np.asarray(sample_weight, dtype=np.float64)
    if sw.ndim == 0:
        sw = np.full(n_samples, float(sw))
    if sw.shape != (n_samples,):
        raise ValueError(
            f"sample_weight has shape {sw.shape}, but X has {n_samples} samples: pass one weight per sample."
        )
    check_weight_chunk(sw, 0)
    if not sw.sum() > 0:
        raise ValueError(WEIGHTS_SUM_TO_ZERO)
    return np.ascontiguousarray(sw)


WEIGHTS_SUM_TO_ZERO = "sample_weight sums to zero: at least one sample needs a positive weight."


def check_weight_chunk(w: np.ndarray, start: int) -> float:
    """Refuse non-finite or negative weights (naming the row); return the chunk's sum."""
    finite = np.isfinite(w)
    if not np.all(finite):
        bad = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"sample_weight contains NaN or infinity at row {start + bad} (counted from 0).")
    if np.any(w < 0):
        bad = int(np.flatnonzero(w < 0)[0])
        raise ValueError(
            f"sample_weight contains a negative value at row {start + bad} (counted from 0): weights must "
            "be >= 0."
        )
    return float(w.sum())
