"""The EM driver: passes, convergence and restarts. No I/O and no numba here.

One iteration is ``params -> executor.accumulate(params) -> stats.to_params``.
The executor decides where rows come from (memory, disk, a cluster); the
driver only sees sufficient statistics. By the free-energy argument the mean
log-likelihood recorded at each E-step never decreases (up to rounding), except
on an iteration that re-seeds an emptied component.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ._stats import GaussianParams


class DegenerateComponentWarning(UserWarning):
    """A mixture component lost all its responsibility mass and was re-seeded."""


@dataclass
class EMRun:
    """Outcome of one EM run from one initialisation."""

    params: GaussianParams
    n_iter: int
    converged: bool
    lower_bound: float
    lower_bounds: list[float] = field(default_factory=list)


def run_em(
    accumulate: Callable,
    params: GaussianParams,
    *,
    tol: float,
    max_iter: int,
    reg_covar: float,
    lower_bound: float = -np.inf,
    verbose: int = 0,
    verbose_interval: int = 10,
    on_iteration: Callable | None = None,
) -> EMRun:
    """Iterate E-step + M-step from ``params`` until |change| < tol or max_iter.

    ``accumulate(params)`` returns the :class:`SufficientStats` of one pass.
    ``lower_bound`` is the starting value (``-inf``, or the previous lower bound
    with ``warm_start``), as in scikit-learn.
    """
    lower_bounds: list[float] = []
    converged = False
    n_iter = 0
    tic = time.perf_counter()
    for n_iter in range(1, max_iter + 1):
        previous = lower_bound
        stats = accumulate(params)
        lower_bound = stats.mean_log_likelihood
        params, emptied = stats.to_params(reg_covar)
        lower_bounds.append(lower_bound)
        change = lower_bound - previous
        if on_iteration is not None:
            on_iteration(n_iter, lower_bound, change)
        if verbose >= 2 and n_iter % verbose_interval == 0:
            now = time.perf_counter()
            print(f"  Iteration {n_iter}\t time lapse {now - tic:.5f}s\t ll change {change:.5f}")
            tic = now
        elif verbose == 1 and n_iter % verbose_interval == 0:
            print(f"  Iteration {n_iter}")
        if emptied:
            warnings.warn(
                f"Components {emptied} lost all responsibility mass at iteration {n_iter}; "
                f"component {emptied[0]} was re-seeded at the worst-explained sample "
                "with the pooled covariance. Consider fewer components.",
                DegenerateComponentWarning,
                stacklevel=3,
            )
            continue  # a re-seed moves the likelihood: not a sign of convergence
        if abs(change) < tol:
            converged = True
            break
    return EMRun(params, n_iter, converged, lower_bound, lower_bounds)


def better_run(best: EMRun | None, run: EMRun) -> EMRun:
    """The run to keep of two restarts: the higher lower bound.

    As in scikit-learn, a later run also replaces a best whose bound is -inf
    (``max_iter=0``), so the last initialisation wins then.
    """
    if best is None or run.lower_bound > best.lower_bound or best.lower_bound == -np.inf:
        return run
    return best


def report_run(run: EMRun) -> None:
    """The verbose line printed at the end of each initialisation."""
    state = "converged" if run.converged else "did not converge"
    print(f"Initialization {state}. lower bound {run.lower_bound:.5f}.")


def fit_restarts(
    accumulate: Callable,
    initialise: Callable[[int], GaussianParams],
    *,
    n_init: int,
    tol: float,
    max_iter: int,
    reg_covar: float,
    start_lower_bound: float = -np.inf,
    verbose: int = 0,
    verbose_interval: int = 10,
) -> EMRun:
    """Run EM from ``n_init`` initialisations and keep the best lower bound."""
    best: EMRun | None = None
    for init in range(n_init):
        if verbose:
            print(f"Initialization {init}")
        params = initialise(init)
        if max_iter == 0:
            run = EMRun(params, 0, False, -np.inf, [])
        else:
            run = run_em(
                accumulate,
                params,
                tol=tol,
                max_iter=max_iter,
                reg_covar=reg_covar,
                lower_bound=start_lower_bound,
                verbose=verbose,
                verbose_interval=verbose_interval,
            )
            if verbose:
                report_run(run)
        best = better_run(best, run)
    assert best is not None
    return best
