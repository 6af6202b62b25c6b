"""Stepwise (online, mini-batch) EM on the sufficient statistics.

Stepwise EM (Cappe & Moulines 2009; Liang & Klein 2009) keeps a running
estimate ``s`` of the expected sufficient statistics *per unit weight* and
blends in each mini-batch's statistics ``s_b`` (computed by the same fused
kernel as batch EM, under the current parameters):

    s <- (1 - eta_t) s + eta_t s_b,      eta_t = (t + t0) ** (-kappa),  kappa in (0.5, 1]

followed by the usual M-step (with the ``reg_covar`` floor). ``t`` counts the
updates made so far, ``t0 = learning_offset`` damps the first steps and
``kappa = learning_decay`` sets how fast old batches are forgotten; kappa in
(0.5, 1] makes the steps satisfy sum eta = inf, sum eta^2 < inf, so the
estimate converges to a stationary point of the likelihood.

Statistics are stored around a per-component shift (the means of the E-step
that produced them); before blending, the running estimate is moved to the
batch's parameters with ``stats.rebased(params)`` (for the Gaussian an exact
re-shift of the moments, not an approximation; other families' statistics
need no rebasing).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._em import EMRun, Iteration, _call
from ._executor import ArrayExecutor
from .families.base import DegenerateComponentWarning


def step_size(n_steps: int, learning_offset: float, learning_decay: float) -> float:
    """eta_t = (t + t0) ** -kappa for the update after ``t = n_steps`` earlier ones (at most 1)."""
    base = n_steps + learning_offset
    return 1.0 if base <= 1.0 else float(base ** (-learning_decay))


@dataclass
class OnlineState:
    """Running statistics per unit weight and the update count."""

    stats: Any
    n_steps: int
    family: Any = None

    def fits(self, family) -> bool:
        """Whether these statistics belong to ``family`` (``set_params`` may have changed it)."""
        return type(self.family) is type(family) and self.family.config == family.config


def online_step(
    family,
    params,
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    state: OnlineState | None,
    *,
    learning_offset: float,
    learning_decay: float,
    row_offset: int = 0,
) -> tuple[Any, OnlineState, float, float]:
    """One stepwise-EM update from a mini-batch.

    Returns the new parameters, the new state, the batch's mean log-likelihood
    under the parameters *before* the update, and the batch's weight. With no
    state yet the batch's statistics are taken as they are (eta = 1).
    """
    batch = family.zero_stats(params)
    family.accumulate(X, sample_weight, params, batch, row_offset)
    weight = batch.weight_sum
    if not weight > 0:  # an all-zero-weight batch carries no information
        return params, state, float("nan"), 0.0
    ll = batch.mean_log_likelihood
    unit = batch.scaled(1.0 / weight)  # per unit weight, so batches of any size blend
    if state is None:
        blended, n_steps = unit, 1
    else:
        eta = step_size(state.n_steps, learning_offset, learning_decay)
        blended = unit.blended(state.stats.rebased(params), eta)
        n_steps = state.n_steps + 1
    # the M-step sees the blend at the batch's scale, so that the emptied-component
    # rule (mass below 10 eps, re-seed with one sample's weight) keeps its meaning
    new_params, emptied = family.m_step(blended.scaled(weight))
    if emptied:
        warnings.warn(
            f"Components {emptied} lost all responsibility mass at online step {n_steps}; "
            f"component {emptied[0]} was re-seeded at the worst-explained sample of the batch.",
            DegenerateComponentWarning,
            stacklevel=3,
        )
    return new_params, OnlineState(blended, n_steps, family), ll, weight


def _executor_batches(executor, batch_size: int) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """(first_row, rows, weights) mini-batches of an in-memory or streaming executor."""
    if isinstance(executor, ArrayExecutor):
        chunks = [(0, executor.X)]
        sw_all = executor.sample_weight
    elif hasattr(executor, "source"):
        from ._stream import iter_chunks

        chunks = iter_chunks(executor.source, verbose=executor.verbose, desc="online pass")
        sw_all = executor.sample_weight
    else:
        raise TypeError(
            "algorithm='online' runs on in-memory arrays and fastem.sources sources, not on "
            f"{getattr(executor, 'input_kind', type(executor).__name__)}."
        )
    for start, chunk in chunks:
        n = chunk.shape[0]
        cuts = list(range(0, n, batch_size))
        # a short tail joins the previous batch instead of making a noisy tiny step
        if len(cuts) > 1 and n - cuts[-1] < batch_size // 2:
            cuts.pop()
        cuts.append(n)
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            sw = None
            if sw_all is not None:
                sw = np.array(sw_all[start + a : start + b], dtype=np.float64, order="C")
            yield start + a, chunk[a:b], sw


def fit_online(
    estimator,
    family,
    executor,
    params,
    *,
    n_passes: int,
    on_pass=None,
    state: OnlineState | None = None,
    passes_done: int = 0,
    lower_bounds: list[float] | None = None,
    callbacks=(),
) -> tuple[EMRun, OnlineState]:
    """``n_passes`` passes of stepwise EM in mini-batches of ``estimator.batch_size`` rows.

    The recorded value per pass (``lower_bounds_``) is the weighted mean of the
    batches' log-likelihoods, each taken under the parameters in effect before
    the batch's update (a progressive-validation estimate). The run stops early,
    converged, when it changes by less than ``tol`` between passes.
    ``on_pass(passes_done, params, state, lower_bounds)`` is called after each
    complete pass (checkpoints).
    """
    lower_bounds = list(lower_bounds or [])
    converged = False
    batch_size = int(estimator.batch_size)
    for p in range(passes_done, n_passes):
        total = 0.0
        weight = 0.0
        for start, rows, sw in _executor_batches(executor, batch_size):
            params, state, ll, w = online_step(
                family, params, rows, sw, state,
                learning_offset=estimator.learning_offset,
                learning_decay=estimator.learning_decay,
                row_offset=start,
            )  # fmt: skip
            if w > 0:
                total += ll * w
                weight += w
            if not np.isfinite(ll) and hasattr(executor, "source"):  # cheap NaN/inf detection
                from ._stream import check_chunk

                check_chunk(family, executor.source, rows, start)
        mean_ll = total / weight
        previous = lower_bounds[-1] if lower_bounds else -np.inf
        lower_bounds.append(mean_ll)
        if estimator.verbose >= 1:
            print(
                f"  online pass {p + 1}  mean log-likelihood {mean_ll:.8g}  change "
                f"{mean_ll - previous:+.3e}  steps {state.n_steps}",
                flush=True,
            )
        if on_pass is not None:
            on_pass(p + 1, params, state, lower_bounds)
        _call(
            callbacks,
            "on_iteration",
            Iteration(0, p + 1, mean_ll, mean_ll - previous, params, list(lower_bounds)),
        )
        if abs(mean_ll - previous) < estimator.tol:
            converged = True
            break
    n_iter = len(lower_bounds)
    return EMRun(params, n_iter, converged, lower_bounds[-1], lower_bounds), state
