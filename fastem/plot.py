"""Pictures of fitted Gaussian mixtures (optional: ``pip install "fastem[plot]"``).

matplotlib is imported only when a function here is called. Figures are made
with matplotlib's object-oriented API on the Agg canvas, so nothing here
changes pyplot's global state or backend; the ``ax`` helpers draw on any Axes.

- :func:`plot_mixture`: points coloured by responsibility, with 1- and 2-sigma
  ellipses of each component, for 2-D data or a 2-D projection (``dims``).
- :func:`plot_lower_bounds`: the log-likelihood per EM iteration.
- :func:`record_em`, :func:`plot_em_trace` and :func:`plot_em_progress`: EM at
  work, the models after given numbers of iterations of one run (captured by a
  fit callback), ending with the converged one, and the log-likelihood curve.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .mixture import GaussianMixture

__all__ = [
    "EMTrace",
    "component_colors",
    "faithful_em_figure",
    "faithful_em_trace",
    "faithful_poor_start",
    "plot_ellipses",
    "plot_em_progress",
    "plot_em_trace",
    "plot_lower_bounds",
    "plot_mixture",
    "plot_responsibilities",
    "record_em",
    "require_matplotlib",
]

#: blue and red first, so two components mix to purple as in textbook figures of EM
_PALETTE = (
    "#1f5fbf",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)


def require_matplotlib():
    """Import matplotlib or raise an ImportError that names the ``plot`` extra.

    Returns
    -------
    matplotlib : module
    """
    try:
        import matplotlib
        import matplotlib.figure  # noqa: F401  (fails early if the install is broken)
    except ImportError as exc:
        raise ImportError(
            'fastem.plot needs matplotlib, an optional extra: pip install "fastem[plot]"'
        ) from exc
    return matplotlib


def component_colors(n_components: int) -> np.ndarray:
    """RGB colours, one per component, shape (n_components, 3)."""
    mpl = require_matplotlib()
    if n_components <= len(_PALETTE):
        return np.array([mpl.colors.to_rgb(c) for c in _PALETTE[:n_components]])
    cmap = mpl.colormaps["turbo"]
    return np.array([cmap(t)[:3] for t in np.linspace(0.05, 0.95, n_components)])


def _full_covariances(gm: GaussianMixture) -> np.ndarray:
    """Covariances as (K, D, D) whatever the covariance type."""
    K, D = gm.means_.shape
    cov = np.asarray(gm.covariances_)
    kind = gm.covariance_type
    if kind == "full":
        return cov
    if kind == "tied":
        return np.broadcast_to(cov, (K, D, D))
    if kind == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov[:, None, None] * np.eye(D)


def _check_dims(gm: GaussianMixture, dims: Sequence[int]) -> tuple[int, int]:
    D = gm.means_.shape[1]
    if len(dims) != 2 or not all(0 <= d < D for d in dims) or dims[0] == dims[1]:
        raise ValueError(f"dims must be two different feature indices in [0, {D}), got {tuple(dims)}")
    return int(dims[0]), int(dims[1])


def plot_ellipses(
    ax: Axes,
    gm: GaussianMixture,
    *,
    dims: Sequence[int] = (0, 1),
    n_std: Sequence[float] = (1.0, 2.0),
    colors: np.ndarray | None = None,
    linewidth: float = 1.6,
) -> Axes:
    """Draw the ``n_std``-sigma ellipses and the mean of each component, projected on ``dims``.

    The ellipse of a projection is that of the marginal Gaussian (the 2 x 2
    block of the covariance), so it is exact for any covariance type.

    Parameters
    ----------
    ax : matplotlib Axes
    gm : GaussianMixture
        Fitted.
    dims : (int, int), default=(0, 1)
        Features on the x and y axes.
    n_std : sequence of float, default=(1, 2)
        Mahalanobis radii; the outer ones are drawn dashed.
    colors : array of shape (n_components, 3), default=None
        Component colours (:func:`component_colors` when None).
    linewidth : float, default=1.6

    Returns
    -------
    ax : matplotlib Axes
    """
    require_matplotlib()
    from matplotlib.patches import Ellipse

    i, j = _check_dims(gm, dims)
    colors = component_colors(gm.n_components) if colors is None else colors
    cov = _full_covariances(gm)[:, [i, j]][:, :, [i, j]]
    for k in range(gm.means_.shape[0]):
        values, vectors = np.linalg.eigh(cov[k])
        angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
        center = gm.means_[k, [i, j]]
        for r, radius in enumerate(n_std):
            w, h = 2 * radius * np.sqrt(np.maximum(values[::-1], 0.0))
            ax.add_patch(
                Ellipse(
                    center,
                    w,
                    h,
                    angle=angle,
                    fill=False,
                    edgecolor=colors[k],
                    linewidth=linewidth,
                    linestyle="-" if r == 0 else "--",
                    zorder=3,
                )
            )
        ax.plot(*center, marker="+", color=colors[k], markersize=11, mew=2.2, zorder=4)
    return ax


def plot_responsibilities(
    ax: Axes,
    gm: GaussianMixture,
    X: Any,
    *,
    dims: Sequence[int] = (0, 1),
    colors: np.ndarray | None = None,
    size: float = 14.0,
) -> Axes:
    """Scatter ``X`` projected on ``dims``, each point coloured by its responsibilities.

    A point's colour is the responsibility-weighted mix of the component
    colours, so uncertain points between a blue and a red component look purple.

    Parameters
    ----------
    ax : matplotlib Axes
    gm : GaussianMixture
        Fitted.
    X : array-like of shape (n_samples, n_features)
    dims : (int, int), default=(0, 1)
    colors : array of shape (n_components, 3), default=None
    size : float, default=14

    Returns
    -------
    ax : matplotlib Axes
    """
    require_matplotlib()
    i, j = _check_dims(gm, dims)
    X = np.asarray(X)
    colors = component_colors(gm.n_components) if colors is None else colors
    rgb = np.clip(gm.predict_proba(X) @ colors, 0.0, 1.0)
    ax.scatter(X[:, i], X[:, j], c=rgb, s=size, linewidths=0.4, edgecolors="white", zorder=2)
    return ax


def plot_mixture(
    gm: GaussianMixture,
    X: Any,
    *,
    dims: Sequence[int] = (0, 1),
    ax: Axes | None = None,
    n_std: Sequence[float] = (1.0, 2.0),
    feature_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Axes:
    """Points coloured by responsibility plus 1- and 2-sigma ellipses of each component.

    Parameters
    ----------
    gm : GaussianMixture
        Fitted.
    X : array-like of shape (n_samples, n_features)
    dims : (int, int), default=(0, 1)
        Features to plot (a 2-D projection of higher-dimensional data).
    ax : matplotlib Axes, default=None
        Where to draw; a new figure (Agg canvas) is made when None.
    n_std : sequence of float, default=(1, 2)
    feature_names : sequence of str, default=None
        Axis labels (``feature_names_in_`` or "feature i" when None).
    title : str, default=None

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> ax = plot_mixture(gm, X)                  # doctest: +SKIP
    >>> ax.figure.savefig("mixture.png")          # doctest: +SKIP
    """
    if ax is None:
        ax = new_figure(figsize=(5.5, 4.5)).add_subplot()
    colors = component_colors(gm.n_components)
    plot_responsibilities(ax, gm, X, dims=dims, colors=colors)
    plot_ellipses(ax, gm, dims=dims, n_std=n_std, colors=colors)
    names = feature_names
    if names is None:
        names = getattr(gm, "feature_names_in_", None)
    if names is None:
        names = [f"feature {d}" for d in range(gm.means_.shape[1])]
    ax.set_xlabel(names[dims[0]])
    ax.set_ylabel(names[dims[1]])
    if title:
        ax.set_title(title)
    return ax


def plot_lower_bounds(
    lower_bounds: Sequence[float],
    *,
    ax: Axes | None = None,
    n_samples: int | None = None,
    mark: Sequence[int] = (),
) -> Axes:
    """The log-likelihood per EM iteration (``gm.lower_bounds_``).

    When the first value lies far below the rest (a poor start), the axis is
    cut above it so the climb stays readable, and the start is drawn as a
    triangle on the bottom edge labelled with its value.

    Parameters
    ----------
    lower_bounds : sequence of float
        Mean log-likelihood per sample of the model after i EM iterations, at
        entry i (``gm.lower_bounds_`` holds entries 0 to ``n_iter_ - 1``;
        :attr:`EMTrace.lower_bounds` also the last model's).
    ax : matplotlib Axes, default=None
    n_samples : int, default=None
        If given, plot the total log-likelihood (mean times n_samples).
    mark : sequence of int, default=()
        Iterations to highlight with a dot.

    Returns
    -------
    ax : matplotlib Axes
    """
    if ax is None:
        ax = new_figure(figsize=(6, 3.5)).add_subplot()
    y = np.asarray(lower_bounds, dtype=float) * (n_samples or 1)
    x = np.arange(len(y))
    off_scale = False
    if len(y) > 2 and np.all(np.isfinite(y)):
        rest = max(np.ptp(y[1:]), 1e-12)
        off_scale = bool(y[0] < y[1:].min() - 3 * rest)
    if off_scale:
        # the start is far below everything else: cut the axis above it so the climb stays readable
        low, high = y[1:].min() - 0.35 * rest, y.max() + 0.08 * rest
        ax.set_ylim(low, high)
        ax.plot(x[:2], y[:2], color="0.25", linewidth=1.2, linestyle=":")  # the jump from off scale
        ax.plot(x[1:], y[1:], color="0.25", linewidth=1.5, marker=".", markersize=4)
        start_color = "#d62728" if 0 in mark else "0.25"  # red like the other marked iterations
        ax.plot(0, low, marker="v", color=start_color, markersize=9, clip_on=False, zorder=4)
        # the label sits right of iteration 1, where the curve is well above the bottom edge
        ax.annotate(
            f"start (iteration 0): {y[0]:.2f}, off scale\n({y[1] - y[0]:.0f} below iteration 1)",
            (0, low),
            xytext=(min(1.6, len(y) - 1), low + 0.1 * (high - low)),
            va="bottom",
            fontsize=8,
            color="0.15",
            bbox=dict(boxstyle="round,pad=0.3", facecolor="white", edgecolor="0.6", linewidth=0.8),
            arrowprops=dict(arrowstyle="->", color="0.35", linewidth=1.0, shrinkB=6),
            zorder=5,
        )
    else:
        ax.plot(x, y, color="0.25", linewidth=1.5, marker=".", markersize=4)
    shown = [m for m in mark if 0 <= m < len(y) and not (off_scale and m == 0)]
    if shown:
        ax.plot(shown, y[shown], "o", color="#d62728", markersize=6, zorder=3)
        for m in shown:
            ax.annotate(str(m), (m, y[m]), textcoords="offset points", xytext=(4, -12), fontsize=8)
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(-0.5, max(len(y) - 0.5, 1.0))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("EM iterations done")
    ax.set_ylabel("log-likelihood" if n_samples else "mean log-likelihood per sample")
    ax.grid(True, alpha=0.3)
    return ax


def new_figure(**kwargs) -> Figure:
    """A matplotlib Figure on the Agg canvas, independent of pyplot."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


@dataclass
class EMTrace:
    """One EM run from a fixed start, recorded while it ran (see :func:`record_em`).

    Attributes
    ----------
    models : dict of int to GaussianMixture
        The model after n EM iterations, for each recorded n (0 is the start);
        always holds ``n_iter``, the last model.
    final : GaussianMixture
        The fitted estimator (``models[n_iter]`` is an alias of it).
    lower_bounds : ndarray of shape (n_iter + 1,)
        Mean log-likelihood per sample of the model after i iterations, for
        i = 0 .. n_iter: ``final.lower_bounds_`` plus the last model's score.
    n_iter : int
    converged : bool
    """

    models: dict[int, GaussianMixture]
    final: GaussianMixture
    lower_bounds: np.ndarray
    n_iter: int
    converged: bool


def record_em(
    X: Any,
    iterations: Sequence[int] = (),
    *,
    weights_init: Any,
    means_init: Any,
    precisions_init: Any,
    covariance_type: str = "full",
    reg_covar: float = 1e-6,
    tol: float = 1e-8,
    max_iter: int = 1000,
) -> EMTrace:
    """Run EM once from the given start and keep the models after the given numbers of iterations.

    The models are captured by a fit callback during that single run (no
    re-fitting), so every snapshot, the curve and the final model belong to
    the same run. Requested iterations the run never reached (it converged
    first) are absent from ``models``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    iterations : sequence of int, default=()
        Numbers of iterations after which to keep the model; 0 is the start.
    weights_init, means_init, precisions_init : array-like
        The starting point, as for :class:`~fastem.GaussianMixture`.
    covariance_type : str, default='full'
    reg_covar : float, default=1e-6
    tol : float, default=1e-8
    max_iter : int, default=1000

    Returns
    -------
    trace : EMTrace
    """
    from sklearn.exceptions import ConvergenceWarning

    from ._em import Callback
    from .mixture import GaussianMixture

    wanted = {int(n) for n in iterations}
    captured: dict[int, Any] = {}

    class Recorder(Callback):
        def on_run_start(self, init, params, lower_bounds):
            if 0 in wanted:
                captured[0] = params.filled()  # filled() copies: later steps cannot change it

        def on_iteration(self, it):
            if it.n_iter in wanted:
                captured[it.n_iter] = it.params.filled()

    X = np.asarray(X, dtype=np.float64)
    final = GaussianMixture(
        len(means_init),
        covariance_type=covariance_type,
        weights_init=weights_init,
        means_init=means_init,
        precisions_init=precisions_init,
        reg_covar=reg_covar,
        tol=tol,
        max_iter=max_iter,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported through EMTrace.converged
        final.fit(X, callbacks=[Recorder()])
    n_iter = final.n_iter_
    models = {n: _model_at(final, params, n) for n, params in sorted(captured.items()) if n < n_iter}
    models[n_iter] = final
    curve = np.array([*final.lower_bounds_, final.score(X)], dtype=float)
    return EMTrace(models, final, curve, n_iter, bool(final.converged_))


def _model_at(final: GaussianMixture, params: Any, n_iter: int) -> GaussianMixture:
    """A copy of ``final`` holding the parameters it had after ``n_iter`` iterations."""
    gm = copy.deepcopy(final)
    gm._publish(params)  # the estimator's own way of turning parameters into attributes
    gm.n_iter_, gm.converged_ = n_iter, False
    gm.lower_bounds_ = list(final.lower_bounds_[:n_iter])
    gm.lower_bound_ = gm.lower_bounds_[-1] if n_iter else -np.inf
    return gm


def _legend_handles(colors: np.ndarray, trace: EMTrace, n_std: Sequence[float]) -> list:
    """Proxy artists explaining the panels, in legend columns of two: components, marks, ellipses."""
    from matplotlib.lines import Line2D

    handles = []
    for k, color in enumerate(colors):
        weight = trace.final.weights_[k]
        handles.append(
            Line2D([], [], color=color, marker="o", linestyle="", markersize=7,
                   label=f"component {k} (final weight {weight:.2f})")
        )  # fmt: skip
    handles.append(
        Line2D([], [], color="0.2", marker="+", linestyle="", markersize=10, mew=2, label="component mean")
    )
    handles.append(
        Line2D([], [], color="#8a3f8f", marker="o", linestyle="", markersize=6, markeredgecolor="white",
               label="point colour: responsibilities (purple = shared)")
    )  # fmt: skip
    for r, radius in enumerate(n_std):
        mass = 1.0 - np.exp(-0.5 * radius**2)  # a 2-D Gaussian's mass within Mahalanobis radius r
        handles.append(
            Line2D([], [], color="0.2", linestyle="-" if r == 0 else "--", linewidth=1.6,
                   label=f"{radius:g}-sigma ellipse ({100 * mass:.0f}% of the component's mass)")
        )  # fmt: skip
    return handles


def plot_em_trace(
    trace: EMTrace,
    X: Any,
    *,
    dims: Sequence[int] = (0, 1),
    feature_names: Sequence[str] | None = None,
    title: str | None = None,
    n_std: Sequence[float] = (1.0, 2.0),
) -> Figure:
    """Draw a recorded EM run: one panel per kept model, in iteration order, and the log-likelihood curve.

    Every panel shows the points coloured by their responsibilities under that
    panel's parameters, with the ``n_std``-sigma ellipses (solid, then
    dashed); all share the axis limits so the movement is visible. The last
    panel is the final model; the curve covers iterations 0 to ``n_iter``.

    Parameters
    ----------
    trace : EMTrace
        From :func:`record_em`.
    X : array-like of shape (n_samples, n_features)
        The data the run was fitted on.
    dims : (int, int), default=(0, 1)
    feature_names : sequence of str, default=None
    title : str, default=None
    n_std : sequence of float, default=(1, 2)

    Returns
    -------
    fig : matplotlib Figure
        Save it with ``fig.savefig(path)``.
    """
    X = np.asarray(X, dtype=np.float64)
    panels = sorted(trace.models.items())
    n_cols = 3
    n_rows = -(-len(panels) // n_cols)
    fig = new_figure(figsize=(4.1 * n_cols, 3.5 * n_rows + 3.6), layout="constrained")
    # row 0 holds the legend (an empty Axes, so constrained layout keeps it clear of the title)
    grid = fig.add_gridspec(n_rows + 2, n_cols, height_ratios=[0.16] + [1.0] * n_rows + [0.8])
    colors = component_colors(trace.final.n_components)
    key = fig.add_subplot(grid[0, :])
    key.axis("off")
    key.legend(
        handles=_legend_handles(colors, trace, n_std), loc="center", ncols=3, fontsize=9, frameon=False
    )
    i, j = _check_dims(trace.final, dims)
    pad_x, pad_y = 0.08 * np.ptp(X[:, i]), 0.08 * np.ptp(X[:, j])
    limits = (X[:, i].min() - pad_x, X[:, i].max() + pad_x), (X[:, j].min() - pad_y, X[:, j].max() + pad_y)
    n = X.shape[0]
    for p, (it, gm) in enumerate(panels):
        ax = fig.add_subplot(grid[1 + p // n_cols, p % n_cols])
        if it == trace.n_iter:
            label = f"{'converged' if trace.converged else 'stopped'} after {it} iterations"
        elif it == 0:
            label = "start (iteration 0)"
        else:
            label = f"after {it} iteration{'s' if it > 1 else ''}"
        plot_mixture(gm, X, dims=dims, ax=ax, n_std=n_std, feature_names=feature_names)
        ax.set_title(f"{label}\nlog-likelihood {trace.lower_bounds[it] * n:.2f}", fontsize=10)
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
        if p % n_cols:
            ax.set_ylabel("")
        if p + n_cols < len(panels):  # a panel below shares this x label
            ax.set_xlabel("")
    ax = fig.add_subplot(grid[n_rows + 1, :])
    plot_lower_bounds(trace.lower_bounds, ax=ax, n_samples=n, mark=[it for it, _ in panels])
    state = "converged" if trace.converged else "stopped"
    ax.set_title(
        f"log-likelihood after each EM iteration (never decreases); {state} after {trace.n_iter}: "
        f"{trace.lower_bounds[-1] * n:.4f}",
        fontsize=10,
    )
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


def plot_em_progress(
    X: Any,
    *,
    weights_init: Any,
    means_init: Any,
    precisions_init: Any,
    iterations: Sequence[int] = (0, 1, 2, 5, 10),
    covariance_type: str = "full",
    dims: Sequence[int] = (0, 1),
    feature_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """EM at work: the model after each of ``iterations`` and at convergence, and the log-likelihood curve.

    One EM run from the given start (:func:`record_em`) drawn by
    :func:`plot_em_trace`. Iterations at or past convergence are left out:
    the last panel is always the converged model.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    weights_init, means_init, precisions_init : array-like
        The starting point (iteration 0).
    iterations : sequence of int, default=(0, 1, 2, 5, 10)
    covariance_type : str, default='full'
    dims : (int, int), default=(0, 1)
    feature_names : sequence of str, default=None
    title : str, default=None

    Returns
    -------
    fig : matplotlib Figure
        Save it with ``fig.savefig(path)``.
    """
    trace = record_em(
        X,
        iterations,
        weights_init=weights_init,
        means_init=means_init,
        precisions_init=precisions_init,
        covariance_type=covariance_type,
    )
    return plot_em_trace(trace, X, dims=dims, feature_names=feature_names, title=title)


#: the panels of the demo figure (iterations done); the converged model is added after them
FAITHFUL_ITERATIONS = (0, 1, 2, 5, 10)


def faithful_poor_start(X: Any) -> dict[str, np.ndarray]:
    """The demo's deliberately poor start on Old Faithful, as ``*_init`` keyword arguments.

    In standardised units it is the start of Bishop (2006), Fig. 9.8: equal
    weights, unit (axis-aligned) covariances and means at (-1.5, +1) and
    (+1.5, -1) standard deviations from the centre, across the two clusters
    rather than along them.

    Parameters
    ----------
    X : ndarray of shape (n_samples, 2)

    Returns
    -------
    init : dict
        ``weights_init``, ``means_init`` and ``precisions_init``.
    """
    X = np.asarray(X, dtype=np.float64)
    center, scale = X.mean(axis=0), X.std(axis=0)
    precision = np.diag(1.0 / scale**2)
    return {
        "weights_init": np.array([0.5, 0.5]),
        "means_init": center + scale * np.array([[-1.5, 1.0], [1.5, -1.0]]),
        "precisions_init": np.stack([precision, precision]),
    }


def faithful_em_trace(X: Any | None = None) -> EMTrace:
    """EM on Old Faithful from :func:`faithful_poor_start`, recorded at :data:`FAITHFUL_ITERATIONS`.

    Parameters
    ----------
    X : ndarray of shape (272, 2), default=None
        The Old Faithful data (:func:`fastem.datasets.load_old_faithful` when None).

    Returns
    -------
    trace : EMTrace
    """
    from .datasets import load_old_faithful

    X = load_old_faithful() if X is None else np.asarray(X, dtype=np.float64)
    return record_em(X, FAITHFUL_ITERATIONS, **faithful_poor_start(X), tol=1e-8)


def faithful_em_figure(X: Any | None = None, trace: EMTrace | None = None) -> Figure:
    """The demo figure: EM on Old Faithful from a deliberately poor start (as in Bishop 2006, Fig. 9.8).

    From :func:`faithful_poor_start` EM needs about 18 iterations, so the
    panels after 1, 2, 5 and 10 iterations show the components travelling
    before the converged one.

    Parameters
    ----------
    X : ndarray of shape (272, 2), default=None
        The Old Faithful data (:func:`fastem.datasets.load_old_faithful` when None).
    trace : EMTrace, default=None
        The run to draw (:func:`faithful_em_trace` of ``X`` when None).

    Returns
    -------
    fig : matplotlib Figure
    """
    from .datasets import load_old_faithful

    X = load_old_faithful() if X is None else np.asarray(X, dtype=np.float64)
    trace = faithful_em_trace(X) if trace is None else trace
    return plot_em_trace(
        trace,
        X,
        feature_names=["eruption duration (min)", "waiting time to next eruption (min)"],
        title="EM on Old Faithful: 2 full-covariance Gaussians from a deliberately poor start",
    )
