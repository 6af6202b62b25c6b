"""The EM driver: passes, convergence, restarts and callbacks. No I/O and no numba here.

One iteration is ``params -> accumulate(params) -> m_step(stats)``. The
executor's ``accumulate`` decides where rows come from (memory, disk, a
cluster) and the family's ``m_step`` what the statistics mean; the driver only
sees statistics with a ``mean_log_likelihood``. By the free-energy argument the
mean log-likelihood recorded at each E-step never decreases (up to rounding),
except on an iteration that re-seeds an emptied component.

A family's M-step (or initialisation) raises :class:`CollapsedComponents`
when components have no well-defined parameters (a Gaussian component on a
single point with ``reg_covar=0``). If only some components collapsed in an
M-step, the run has diverged: it ends there, keeping the parameters its last
E-step scored (finite, with that E-step's log-likelihood as its lower bound),
as not converged. If every component collapsed, or the initialisation did, the
run fails: the fit raises unless another initialisation gave a result (the
scikit-learn behaviour of issue #18216: the best parameters are always set).

Everything that watches a fit (verbose lines, progress bars, checkpoint
writes, the user's ``callbacks=``) is a callback: an object with any of the
methods of :class:`Callback`, or a plain callable, which is called like
``on_iteration``. The driver owns the loop; nothing wraps or patches it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .families.base import DegenerateComponentWarning

__all__ = [
    "Callback",
    "CollapsedComponents",
    "DegenerateComponentWarning",
    "EMRun",
    "Iteration",
    "fit_restarts",
    "run_em",
]


class CollapsedComponents(ValueError):
    """Components whose parameters are ill-defined (e.g. zero variance): raised by a family.

    Parameters
    ----------
    message : str
        What went wrong and how to avoid it, for the user.
    components : list of int or None
        The collapsed components; None when the whole model is concerned
        (e.g. a tied covariance).
    n_components : int or None
        The model's number of components.
    """

    def __init__(self, message: str, components: list[int] | None = None, n_components: int | None = None):
        super().__init__(message)
        self.components = components
        self.n_components = n_components

    @property
    def partial(self) -> bool:
        """True when some, not all, components collapsed: the others are still well defined."""
        return self.components is not None and 0 < len(self.components) < (self.n_components or 0)


@dataclass
class EMRun:
    """Outcome of one EM run from one initialisation."""

    params: Any
    n_iter: int
    converged: bool
    lower_bound: float
    lower_bounds: list[float] = field(default_factory=list)
    #: the components whose collapse ended this run early (see :class:`CollapsedComponents`), or None
    collapsed: list[int] | None = None


@dataclass(frozen=True)
class Iteration:
    """What a callback learns after each EM iteration.

    Attributes
    ----------
    init : int
        Index of the initialisation (restart) this run belongs to.
    n_iter : int
        Iterations done in this run, this one included.
    lower_bound : float
        Mean log-likelihood at the E-step of this iteration (with a prior, the
        log posterior per unit weight: MAP-EM, see :mod:`fastem.priors`).
    change : float
        ``lower_bound`` minus the previous iteration's (``inf`` at the first).
    params : object
        The family's parameters after this iteration's M-step.
    lower_bounds : list of float
        Every ``lower_bound`` of this run so far.
    """

    init: int
    n_iter: int
    lower_bound: float
    change: float
    params: Any
    lower_bounds: list[float]


class Callback:
    """Hooks of the driver; subclass and override any of them (all do nothing here)."""

    def on_run_start(self, init: int, params: Any, lower_bounds: list[float]) -> None:
        """A run starts (or resumes, then ``lower_bounds`` holds its history) from ``params``."""

    def on_iteration(self, iteration: Iteration) -> None:
        """An iteration finished."""

    def on_run_end(self, init: int, run: EMRun, best: EMRun) -> None:
        """A run ended; ``best`` is the best run so far, this one included."""


class _Plain(Callback):
    def __init__(self, function: Callable[[Iteration], Any]):
        self.function = function

    def on_iteration(self, iteration: Iteration) -> None:
        self.function(iteration)


def as_callbacks(callbacks: Iterable | Callable | None) -> list:
    """A list of callback objects from None, one callback, or several (plain callables wrapped)."""
    if callbacks is None:
        return []
    if callable(callbacks) and not isinstance(callbacks, Callback):
        callbacks = [callbacks]
    elif isinstance(callbacks, Callback):
        callbacks = [callbacks]
    out = []
    for cb in callbacks:
        if isinstance(cb, Callback) or any(
            hasattr(cb, h) for h in ("on_run_start", "on_iteration", "on_run_end")
        ):
            out.append(cb)
        elif callable(cb):
            out.append(_Plain(cb))
        else:
            raise TypeError(
                f"callbacks must be callables or objects with on_iteration / on_run_start / on_run_end "
                f"methods, got {type(cb).__name__}."
            )
    return out


def _call(callbacks: Sequence, hook: str, *args) -> None:
    for cb in callbacks:
        method = getattr(cb, hook, None)
        if method is not None:
            method(*args)


class VerboseLines(Callback):
    """scikit-learn's verbose output: the initialisation, every ``interval`` iterations, the result."""

    def __init__(self, verbose: int, interval: int):
        self.verbose = verbose
        self.interval = interval
        self.tic = time.perf_counter()

    def on_run_start(self, init: int, params: Any, lower_bounds: list[float]) -> None:
        print(f"Initialization {init}")
        self.tic = time.perf_counter()

    def on_iteration(self, it: Iteration) -> None:
        if it.n_iter % self.interval:
            return
        if self.verbose >= 2:
            now = time.perf_counter()
            print(f"  Iteration {it.n_iter}\t time lapse {now - self.tic:.5f}s\t ll change {it.change:.5f}")
            self.tic = now
        else:
            print(f"  Iteration {it.n_iter}")

    def on_run_end(self, init: int, run: EMRun, best: EMRun) -> None:
        if run.n_iter > 0 or run.lower_bounds:
            state = "converged" if run.converged else "did not converge"
            print(f"Initialization {state}. lower bound {run.lower_bound:.5f}.")


def warn_collapsed(n_iter: int, init: int, components) -> None:
    """The warning of a run stopped because the M-step left ``components`` ill-defined."""
    warnings.warn(
        f"EM stopped at iteration {n_iter} of initialization {init}: after the M-step, components "
        f"{components} have ill-defined parameters (for instance caused by singleton or "
        "collapsed samples). The run keeps the parameters that iteration's E-step scored, as not "
        "converged; increase reg_covar or decrease n_components to avoid this.",
        DegenerateComponentWarning,
        stacklevel=4,
    )


def run_em(
    accumulate: Callable,
    m_step: Callable,
    params: Any,
    *,
    tol: float,
    max_iter: int,
    lower_bound: float = -np.inf,
    history: Sequence[float] = (),
    init: int = 0,
    callbacks: Sequence = (),
    objective: Callable | None = None,
) -> EMRun:
    """Iterate E-step + M-step from ``params`` until |change| < tol or ``max_iter`` iterations.

    ``accumulate(params)`` returns the statistics of one pass, ``m_step(stats)``
    the new parameters and the emptied components. ``lower_bound`` is the
    starting value (``-inf``, or the previous lower bound with ``warm_start``),
    as in scikit-learn. ``history`` holds the lower bounds of iterations
    already done by this run (a resumed checkpoint): they count towards
    ``max_iter``. ``objective(stats, params)``, when given, replaces the mean
    log-likelihood as the lower bound (MAP-EM: the log posterior per unit
    weight at the parameters ``params`` the E-step used).
    """
    lower_bounds = list(history)
    converged = False
    n_iter = len(lower_bounds)
    if lower_bounds:
        lower_bound = lower_bounds[-1]
    for n_iter in range(len(lower_bounds) + 1, max_iter + 1):
        previous = lower_bound
        stats = accumulate(params)
        lower_bound = stats.mean_log_likelihood if objective is None else objective(stats, params)
        try:
            new_params, emptied = m_step(stats)
        except CollapsedComponents as exc:
            if not exc.partial:
                raise
            # diverged: keep the parameters this E-step scored (lower_bound is their log-likelihood)
            lower_bounds.append(lower_bound)
            warn_collapsed(n_iter, init, exc.components)
            return EMRun(params, n_iter, False, lower_bound, lower_bounds, collapsed=exc.components)
        params = new_params
        lower_bounds.append(lower_bound)
        change = lower_bound - previous
        _call(
            callbacks,
            "on_iteration",
            Iteration(init, n_iter, lower_bound, change, params, list(lower_bounds)),
        )
        if emptied:
            warnings.warn(
                f"Components {emptied} lost all responsibility mass at iteration {n_iter}; "
                f"component {emptied[0]} was re-seeded at the worst-explained sample "
                "with the pooled parameters of the others. Consider fewer components.",
                DegenerateComponentWarning,
                stacklevel=3,
            )
            continue  # a re-seed moves the likelihood: not a sign of convergence
        if abs(change) < tol:
            converged = True
            break
    return EMRun(params, n_iter, converged, lower_bound, lower_bounds)


class PassCounter:
    """Wraps ``accumulate`` and counts its calls (the estimators' ``n_passes_``).

    Parameters
    ----------
    accumulate : callable
        ``accumulate(params) -> statistics``, e.g. an executor's ``accumulate``.
    """

    def __init__(self, accumulate: Callable):
        self.accumulate = accumulate
        self.count = 0

    def __call__(self, params: Any) -> Any:
        self.count += 1
        return self.accumulate(params)


def better_run(best: EMRun | None, run: EMRun) -> EMRun:
    """The run to keep of two restarts: the higher lower bound.

    As in scikit-learn, a later run also replaces a best whose bound is -inf
    (``max_iter=0``), so the last initialisation wins then.
    """
    if best is None or run.lower_bound > best.lower_bound or best.lower_bound == -np.inf:
        return run
    return best


@dataclass
class Resume:
    """Where a checkpointed fit stopped: the next initialisation and the run in progress."""

    first_init: int = 0
    best: EMRun | None = None
    params: Any = None  #: parameters of the run in progress (None: start ``first_init`` afresh)
    lower_bounds: list[float] = field(default_factory=list)


def fit_restarts(
    accumulate: Callable,
    m_step: Callable,
    initialise: Callable[[int], Any],
    *,
    n_init: int,
    tol: float,
    max_iter: int,
    start_lower_bound: float = -np.inf,
    callbacks: Sequence = (),
    resume: Resume | None = None,
    objective: Callable | None = None,
    runner: Callable | None = None,
) -> EMRun:
    """Run EM from ``n_init`` initialisations and keep the best lower bound.

    ``runner`` is the step of one run: :func:`run_em` (plain EM, the default)
    or an accelerated replacement with the same arguments
    (``fastem._accelerate.run_squarem``).

    A run that fails (:class:`CollapsedComponents` at its initialisation or
    for all its components) is skipped with a warning when another run gives
    a result; when none does, its error is raised. ``on_run_end`` is not
    called for a failed run. ``objective`` is passed to :func:`run_em`.
    """
    resume = resume or Resume()
    best = resume.best
    failed: list[tuple[int, CollapsedComponents]] = []
    for init in range(resume.first_init, n_init):
        try:
            if resume.params is not None:
                params, history = resume.params, list(resume.lower_bounds)
                resume = Resume()
            else:
                params, history = initialise(init), []
            _call(callbacks, "on_run_start", init, params, list(history))
            if max_iter == 0:
                run = EMRun(params, 0, False, -np.inf, [])
            else:
                run = (runner or run_em)(
                    accumulate, m_step, params, tol=tol, max_iter=max_iter, lower_bound=start_lower_bound,
                    history=history, init=init, callbacks=callbacks, objective=objective,
                )  # fmt: skip
        except CollapsedComponents as exc:
            failed.append((init, exc))
            continue
        best = better_run(best, run)
        _call(callbacks, "on_run_end", init, run, best)
    if best is None:
        raise failed[0][1]
    if failed:
        warnings.warn(
            f"Initializations {[i for i, _ in failed]} failed and were skipped (the result is the best "
            f"of the others): {failed[0][1]}",
            DegenerateComponentWarning,
            stacklevel=3,
        )
    return best
