"""Accelerated EM: SQUAREM, scheme SqS3 (Varadhan & Roland 2008), with a monotonicity safeguard.

EM is a fixed-point map ``theta -> M(theta)`` (an E-step pass, then the
family's M-step). On overlapping clusters it converges linearly and slowly;
SQUAREM extrapolates along the path of two EM steps. In an unconstrained
coordinate vector t (see :func:`parameter_vector`), one iteration from t0 is

    t1 = M(t0),  t2 = M(t1),  r = t1 - t0,  v = t2 - t1 - r,
    alpha = ||r|| / ||v||, clamped to [1, step_max]            (SqS3)
    t' = t0 + 2 alpha r + alpha^2 v,  then one stabilising EM map t'' = M(t')

(the brief's sign convention writes alpha = -||r|| / ||v|| in [-step_max, -1]
and t' = t0 - 2 alpha r + alpha^2 v: the same point). ``alpha = 1`` gives
t' = t2, plain EM. The step bounds adapt as in the R package SQUAREM
(``step.min0 = 1, step.max0 = 1, mstep = 4``): when alpha reaches step_max,
step_max grows 4x; when an extrapolation is rejected, step_max shrinks 4x (to
no less than 1).

Safeguard. The objective at the extrapolated, stabilised point t'' is the
E-step of the next iteration (no extra pass). It is kept only if it is at
least the recorded objective at t1; otherwise the run takes the plain EM step
to t2 (whose E-step is the next pass). An extrapolation that produces invalid
parameters (non-finite values, a non-finite objective, an M-step that empties
or collapses components) falls back to t2 at once. Hence the recorded sequence
never decreases (up to rounding, and except after re-seeding an emptied
component, as in plain EM).

Bookkeeping and convergence. Every E-step at a kept point is one recorded
iteration, as in :func:`fastem._em.run_em`: t0 and t1 of each cycle, an
accepted t'' or the fallback t2. Iteration n records the objective at its point
p_n; its callbacks get M(p_n), and a converged run returns M(p_n). The
convergence test is run_em's, |L(p_n) - L(p_{n-1})| < tol, applied only when
p_n = M(p_{n-1}) is a plain EM step (never across an extrapolation, whose
change says nothing about the EM map's): a run stops only where one plain EM
step changes the objective by less than tol, plain EM's own rule. A cycle
costs 3 passes (E-steps at t0, t1 and t'); ``n_passes`` counts every call of
``accumulate`` and ``max_iter`` counts recorded iterations.

Endgame. When plain EM is about to converge (well separated clusters: a few
passes), an extrapolation cannot pay for its extra passes. From the last two
changes of consecutive plain steps the objective's rate predicts how many
passes plain EM still needs (:func:`_endgame`); at most ``ENDGAME_PASSES``,
the cycle takes the plain step to t2 instead.

Unconstrained coordinates (:func:`parameter_vector` / :func:`params_from_vector`):

* weights: log(pi_k / pi_K), k < K (the last component is the reference);
* Gaussian: the means as they are; the precision Cholesky factor U (upper
  triangular, U U^T = precision) with its upper triangle stored and its
  diagonal as log U_dd, for 'full' and 'tied'; log U = -log sigma (minus the
  log standard deviation) for 'diag' and 'spherical', so every covariance type
  uses the same scale; covariances are recomputed from U on the way back;
* Student-t: as the Gaussian ('full', 'diag'), plus the log degrees of freedom
  (clipped to the M-step's bracket on the way back);
* Poisson: log rates; Bernoulli: logits;
* multinomial: log(p_kd / p_kD), d < D (the last category is the reference);
* von Mises-Fisher: the mean directions as free vectors of R^D, divided by
  their norms on the way back (a zero vector is invalid), and log kappa.

On the way back, linear-family parameters are projected on the ranges their
M-steps produce (the rate and probability floors, kappa <= KAPPA_MAX), which
leaves every M-step output unchanged and the round trip exact to rounding.
A zero weight or zero concentration (log 0) makes the vector non-finite: that
iteration takes the plain EM step.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._em import CollapsedComponents, EMRun, Iteration, PassCounter, _call, warn_collapsed
from .families._linear import LinearParams
from .families.base import DegenerateComponentWarning
from .families.gaussian import GaussianParams, covariances_from_precisions_cholesky
from .families.student_t import DOF_MAX as _DOF_MAX
from .families.student_t import DOF_MIN as _DOF_MIN
from .families.student_t import StudentTParams

__all__ = [
    "PassCounter",
    "SquaremRun",
    "params_from_vector",
    "parameter_vector",
    "run_squarem",
]

#: the R package SQUAREM's defaults: step.min0 = 1, step.max0 = 1, mstep = 4
STEP_MIN = 1.0
STEP_MAX0 = 1.0
MSTEP = 4.0
#: R's SQUAREM skips the stabilising EM map when |alpha - 1| <= 0.01; here that step is plain EM
STABILISE_ABOVE = 0.01
#: no extrapolation when plain EM is predicted to converge within this many passes (see _endgame)
ENDGAME_PASSES = 3.0

_RATE_FLOOR = 1e-10  # = fastem.families.poisson.RATE_FLOOR
_PROB_FLOOR = 1e-10  # = fastem.families.{bernoulli, multinomial}.PROB_FLOOR
_KAPPA_MAX = 1e10  # = fastem._kernels.vmf.KAPPA_MAX


@dataclass
class SquaremRun(EMRun):
    """An :class:`~fastem._em.EMRun` plus the accelerated run's cost."""

    #: calls of ``accumulate``: passes over the data (E-steps)
    n_passes: int = 0
    #: extrapolations rejected by the safeguard (the run took the plain EM step instead)
    n_rejected: int = 0


# ---------------------------------------------------------------- coordinates
def _family_name(family: Any) -> str:
    name = family if isinstance(family, str) else getattr(family, "name", None)
    if name not in ("gaussian", "student_t", "poisson", "bernoulli", "multinomial", "vmf"):
        raise ValueError(
            f"accelerate='squarem' supports the gaussian, student_t, poisson, bernoulli, multinomial and "
            f"vmf families, not {name!r}."
        )
    return name


def _log_ratios(p: np.ndarray) -> np.ndarray:
    """log(p_j / p_last) along the last axis, the last entry dropped."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.log(p)
    return (logp[..., :-1] - logp[..., -1:]).ravel()


def _softmax_last_zero(z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_log_ratios` on rows: softmax of (z, 0)."""
    full = np.concatenate([z, np.zeros(z.shape[:-1] + (1,))], axis=-1)
    full = np.exp(full - full.max(axis=-1, keepdims=True))
    return full / full.sum(axis=-1, keepdims=True)


def _upper_indices(n_features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = np.triu_indices(n_features)
    return rows, cols, rows == cols


def parameter_vector(family: Any, params: Any) -> np.ndarray:
    """The parameters as one unconstrained float64 vector (see the module docstring).

    Parameters
    ----------
    family : family object or str
        The family (or its ``name``): gaussian, poisson, bernoulli, multinomial or vmf.
    params : GaussianParams, StudentTParams or LinearParams
        The mixture's parameters.

    Returns
    -------
    ndarray of shape (n_coordinates,)
        Non-finite entries mean the parameters sit on the boundary (a zero
        weight, a zero concentration): no extrapolation is possible there.
    """
    name = _family_name(family)
    parts = [_log_ratios(np.asarray(params.weights, dtype=np.float64))]
    with np.errstate(divide="ignore", invalid="ignore"):
        if name in ("gaussian", "student_t"):
            parts.append(np.asarray(params.means, dtype=np.float64).ravel())
            U = np.asarray(params.precisions_cholesky, dtype=np.float64)
            if params.covariance_type in ("full", "tied"):
                rows, cols, diag = _upper_indices(U.shape[-1])
                tri = U.reshape((-1,) + U.shape[-2:])[:, rows, cols]
                tri[:, diag] = np.log(tri[:, diag])
                parts.append(tri.ravel())
            else:
                parts.append(np.log(U).ravel())
            if name == "student_t":
                parts.append(np.log(np.asarray(params.dof, dtype=np.float64)))
        elif name == "poisson":
            parts.append(np.log(params.arrays["rates"]).ravel())
        elif name == "bernoulli":
            p = params.arrays["probabilities"]
            parts.append((np.log(p) - np.log1p(-p)).ravel())
        elif name == "multinomial":
            parts.append(_log_ratios(params.arrays["probabilities"]))
        else:
            parts.append(np.asarray(params.arrays["mean_directions"], dtype=np.float64).ravel())
            parts.append(np.log(params.arrays["concentrations"]).ravel())
    return np.concatenate(parts)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def params_from_vector(family: Any, vector: np.ndarray, like: Any) -> Any:
    """Parameters from a vector of :func:`parameter_vector`; ``like`` gives the shapes.

    Parameters
    ----------
    family : family object or str
        The family (or its ``name``).
    vector : ndarray of shape (n_coordinates,)
        Unconstrained coordinates.
    like : GaussianParams, StudentTParams or LinearParams
        Any parameters of the same model (shapes, covariance type).

    Returns
    -------
    GaussianParams, StudentTParams or LinearParams

    Raises
    ------
    ValueError
        When the vector has the wrong length, is not finite, or gives no
        valid parameters (a zero mean-direction vector).
    """
    name = _family_name(family)
    vector = np.asarray(vector, dtype=np.float64)
    if not np.all(np.isfinite(vector)):
        raise ValueError("the parameter vector is not finite.")
    K = like.weights.shape[0]
    weights = _softmax_last_zero(vector[: K - 1])
    at = K - 1

    def take(n: int) -> np.ndarray:
        nonlocal at
        out = vector[at : at + n]
        at += n
        return out

    if name in ("gaussian", "student_t"):
        kind = like.covariance_type
        D = like.means.shape[1]
        means = take(K * D).reshape(K, D).copy()
        U_like = like.precisions_cholesky
        if kind in ("full", "tied"):
            rows, cols, diag = _upper_indices(D)
            n_mats = K if kind == "full" else 1
            tri = take(n_mats * rows.size).reshape(n_mats, rows.size).copy()
            tri[:, diag] = np.exp(tri[:, diag])
            U = np.zeros((n_mats, D, D))
            U[:, rows, cols] = tri
            U = U.reshape(U_like.shape)
        else:
            U = np.exp(take(U_like.size)).reshape(U_like.shape)
        dof = np.clip(np.exp(take(K)), _DOF_MIN, _DOF_MAX) if name == "student_t" else None
        if at != vector.size:
            raise ValueError(f"expected {at} coordinates, got {vector.size}.")
        U = np.ascontiguousarray(U)
        cov = covariances_from_precisions_cholesky(U, kind)
        if not (np.all(np.isfinite(U)) and np.all(np.isfinite(cov))):
            raise ValueError("the parameter vector gives non-finite covariances.")
        if dof is not None:
            return StudentTParams(kind, weights, means, U, dof, cov)
        return GaussianParams(kind, weights, means, U, cov)
    shape = next(iter(like.arrays.values())).shape
    K, D = shape
    if name == "poisson":
        arrays = {"rates": np.maximum(np.exp(take(K * D)).reshape(K, D), _RATE_FLOOR)}
    elif name == "bernoulli":
        p = _sigmoid(take(K * D).reshape(K, D))
        arrays = {"probabilities": np.clip(p, _PROB_FLOOR, 1.0 - _PROB_FLOOR)}
    elif name == "multinomial":
        p = _softmax_last_zero(take(K * (D - 1)).reshape(K, D - 1))
        if np.any(p < _PROB_FLOOR):
            p = np.maximum(p, _PROB_FLOOR)
            p = p / p.sum(axis=1, keepdims=True)
        arrays = {"probabilities": p}
    else:
        mu = take(K * D).reshape(K, D)
        norms = np.sqrt(np.einsum("kd,kd->k", mu, mu))
        if not np.all(norms > 0) or not np.all(np.isfinite(norms)):
            raise ValueError("a mean-direction vector is zero: it has no direction.")
        kappa = np.minimum(np.exp(take(K)), _KAPPA_MAX)
        arrays = {"mean_directions": mu / norms[:, None], "concentrations": kappa}
    if at != vector.size:
        raise ValueError(f"expected {at} coordinates, got {vector.size}.")
    if not all(np.all(np.isfinite(a)) for a in arrays.values()):
        raise ValueError("the parameter vector gives non-finite parameters.")
    return LinearParams(weights, arrays)


# ---------------------------------------------------------------- the driver


def _emptied_warning(emptied: list[int], n_iter: int) -> None:
    warnings.warn(
        f"Components {emptied} lost all responsibility mass at iteration {n_iter}; "
        f"component {emptied[0]} was re-seeded at the worst-explained sample "
        "with the pooled parameters of the others. Consider fewer components.",
        DegenerateComponentWarning,
        stacklevel=4,
    )


def run_squarem(
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
    family: Any = None,
    objective: Callable | None = None,
) -> SquaremRun:
    """SQUAREM (SqS3) from ``params`` until a plain EM step changes the objective by less than ``tol``.

    A drop-in replacement for :func:`fastem._em.run_em` (same arguments, same
    :class:`~fastem._em.EMRun` fields and callbacks, one ``on_iteration`` per
    E-step at a kept point); see the module docstring for the scheme.

    Parameters
    ----------
    accumulate : callable
        ``accumulate(params) -> statistics`` with ``mean_log_likelihood``: one pass.
    m_step : callable
        ``m_step(statistics) -> (params, emptied components)``.
    params : object
        Starting parameters.
    tol : float
        Convergence threshold on the change of the objective over one plain EM step.
    max_iter : int
        Maximum number of recorded iterations (``history`` included); an
        extrapolation cycle records two or three.
    lower_bound : float, default=-inf
        The objective before the first iteration (``warm_start``).
    history : sequence of float, default=()
        Objectives of iterations already done (a resumed checkpoint).
    init : int, default=0
        Index of the initialisation, for callbacks and warnings.
    callbacks : sequence, default=()
        Callback objects (see :class:`fastem._em.Callback`).
    family : family object or str, optional
        The family of the parameters; by default ``m_step.__self__`` (a bound
        ``family.m_step``). Pass it when ``m_step`` is wrapped.
    objective : callable, optional
        ``objective(stats, params)``: the quantity recorded and safeguarded
        instead of the mean log-likelihood (MAP-EM: the log posterior per unit
        weight at the parameters ``params`` the E-step used), as in ``run_em``.

    Returns
    -------
    SquaremRun
        The run, with ``n_passes`` (calls of ``accumulate``) and ``n_rejected``.
    """
    if family is None:
        family = getattr(m_step, "__self__", None)
        if family is None:
            raise ValueError("run_squarem needs family= when m_step is not a bound family.m_step.")
    _family_name(family)  # unsupported families fail before any pass

    def _objective(stats: Any, at: Any) -> float:
        # the quantity EM increases: the one run_em records
        return float(stats.mean_log_likelihood if objective is None else objective(stats, at))

    counter = PassCounter(accumulate)
    step_max = STEP_MAX0
    n_rejected = 0
    lower_bounds = list(history)
    converged = False
    n_iter = len(lower_bounds)
    if lower_bounds:
        lower_bound = lower_bounds[-1]
    p = params
    stats = None  # the E-step statistics at p, when the extrapolation check already computed them
    value = -np.inf  # and their objective
    plain_step = True  # p = M(the previous recorded point): its change is a plain EM step's
    plain_changes: list[float] = []  # the changes of the latest run of consecutive plain EM steps
    anchor: Any = None  # t0 of the cycle in progress (the point before p, a plain EM step back)

    def adapt(alpha: float, rejected: bool) -> None:
        # the R package's step-length rule (step.min = 1 > 0: only step.max moves)
        nonlocal step_max, n_rejected
        if rejected:
            n_rejected += 1
            if alpha == step_max:
                step_max = max(STEP_MAX0, step_max / MSTEP)
            alpha = 1.0
        if alpha == step_max:
            step_max *= MSTEP

    while n_iter < max_iter:
        # ---- one recorded iteration at p: E-step (unless the check did it), M-step, callbacks, test
        if stats is None:
            stats = counter(p)
            value = _objective(stats, p)
        n_iter += 1
        previous, lower_bound = lower_bound, value
        try:
            p_next, emptied = m_step(stats)
        except CollapsedComponents as exc:
            if not exc.partial:
                raise
            lower_bounds.append(lower_bound)
            warn_collapsed(n_iter, init, exc.components)
            return SquaremRun(p, n_iter, False, lower_bound, lower_bounds, collapsed=exc.components,
                              n_passes=counter.count, n_rejected=n_rejected)  # fmt: skip
        lower_bounds.append(lower_bound)
        change = lower_bound - previous
        it = Iteration(init, n_iter, lower_bound, change, p_next, list(lower_bounds))
        _call(callbacks, "on_iteration", it)
        stats = None
        if emptied:
            _emptied_warning(emptied, n_iter)
            # a re-seed: no convergence test here and no extrapolation across it (as run_em)
            p, anchor, plain_step, plain_changes = p_next, None, True, []
            continue
        # run_em's test, on plain EM steps only: an accepted extrapolation is not an EM step
        if plain_step and abs(change) < tol:
            converged = True
            p = p_next
            break
        plain_changes = [*plain_changes[-1:], change] if plain_step else []
        if anchor is None or n_iter == max_iter:
            # the first EM step of a cycle: the next recorded point is p1 = M(p)
            anchor, p, plain_step = p, p_next, True
            continue
        # ---- p is t1 = M(t0) of a cycle, p_next is t2 = M(t1): extrapolate, or step plainly to t2
        p0, p1, p2 = anchor, p, p_next
        anchor, p, plain_step = None, p2, True  # the plain EM step, unless an extrapolation is kept below
        if _endgame(plain_changes, tol):
            continue
        if step_max <= STEP_MIN:
            adapt(STEP_MIN, rejected=False)  # alpha is clamped to 1: the plain EM step, no vectors needed
            continue
        t0, t1, t2 = (parameter_vector(family, q) for q in (p0, p1, p2))
        if not (np.all(np.isfinite(t0)) and np.all(np.isfinite(t1)) and np.all(np.isfinite(t2))):
            continue  # on the boundary (a zero weight): plain EM
        r = t1 - t0
        v = t2 - t1 - r
        sr2, sv2 = float(r @ r), float(v @ v)
        alpha = np.sqrt(sr2 / sv2) if sv2 > 0 else (np.inf if sr2 > 0 else 1.0)
        alpha = float(max(STEP_MIN, min(step_max, alpha)))
        if alpha <= STEP_MIN + STABILISE_ABOVE:
            adapt(alpha, rejected=False)  # t' = t2 (to 1%): the plain EM step
            continue
        try:
            extrapolated = params_from_vector(family, t0 + 2.0 * alpha * r + alpha * alpha * v, p2)
            stats_x = counter(extrapolated)
            if not np.isfinite(_objective(stats_x, extrapolated)):
                raise ValueError("non-finite objective at the extrapolated point")
            proposal, emptied_x = m_step(stats_x)  # the stabilising EM step
            if emptied_x:
                raise ValueError("the extrapolated point empties components")
            stats_p = counter(proposal)  # the next iteration's E-step
            value_p = _objective(stats_p, proposal)
            # the safeguard: never below the recorded objective at t1 (NaN fails too)
            accepted = value_p >= lower_bound
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            # CollapsedComponents is a ValueError: an invalid extrapolation, not a failed run
            accepted = False
        adapt(alpha, rejected=not accepted)
        if accepted:
            p, stats, value, plain_step = proposal, stats_p, value_p, False
    return SquaremRun(p, n_iter, converged, lower_bound, lower_bounds, n_passes=counter.count,
                      n_rejected=n_rejected)  # fmt: skip


def _endgame(plain_changes: list[float], tol: float) -> bool:
    """True when plain EM is predicted to meet the tolerance within ``ENDGAME_PASSES`` passes.

    From the last two changes of consecutive plain EM steps, c_prev and c, the
    objective's linear rate rho = c / c_prev predicts the next changes c rho^j;
    plain EM stops at the first j with c rho^j < tol. An extrapolation costs
    two passes plus the E-step that tests convergence after it, so when j is
    at most ``ENDGAME_PASSES`` the plain step is at least as cheap (and the
    cycle is kept for slow, linear convergence, where it pays).
    """
    if len(plain_changes) < 2 or not tol > 0.0:
        return False
    c_prev, c = plain_changes
    if not (0.0 < c < c_prev):
        return False
    rate = c / c_prev
    if rate == 0.0:  # c is below c_prev by more than the float range: plain EM is done next step
        return True
    return bool(np.log(tol / c) / np.log(rate) <= ENDGAME_PASSES)
