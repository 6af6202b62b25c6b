"""Pictures of fitted Gaussian mixtures (optional: ``pip install "fastem[plot]"``).

matplotlib is imported only when a function here is called. Figures are made
with matplotlib's object-oriented API on the Agg canvas, so nothing here
changes pyplot's global state or backend; the ``ax`` helpers draw on any Axes.

- :func:`plot_mixture`: points coloured by responsibility, with 1- and 2-sigma
  ellipses of each component, for 2-D data or a 2-D projection (``dims``).
- :func:`plot_lower_bounds`: the log-likelihood per EM iteration.
- :func:`em_snapshots` and :func:`plot_em_progress`: EM at work, the models
  after given numbers of iterations from one starting point.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .mixture import GaussianMixture

__all__ = [
    "component_colors",
    "em_snapshots",
    "faithful_em_figure",
    "plot_ellipses",
    "plot_em_progress",
    "plot_lower_bounds",
    "plot_mixture",
    "plot_responsibilities",
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

    Parameters
    ----------
    lower_bounds : sequence of float
        Mean log-likelihood per sample at each iteration (entry i: the model
        after i EM iterations).
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
    ax.plot(x, y, color="0.25", linewidth=1.5, marker=".", markersize=4)
    shown = [m for m in mark if 0 <= m < len(y)]
    if shown:
        ax.plot(shown, y[shown], "o", color="#d62728", markersize=6, zorder=3)
        for m in shown:
            ax.annotate(str(m), (m, y[m]), textcoords="offset points", xytext=(4, -12), fontsize=8)
    if len(y) > 2 and np.all(np.isfinite(y)):
        rest = np.ptp(y[1:])
        if y[0] < y[1:].min() - 3 * max(rest, 1e-12):
            # a poor start is far below everything else: clip it so the climb stays readable
            low = y[1:].min() - 0.6 * max(rest, 1e-12)
            ax.set_ylim(low, y.max() + 0.1 * max(rest, 1e-12))
            ax.annotate(
                f"start: {y[0]:.1f}\n(off scale)",
                (0, low),
                textcoords="offset points",
                xytext=(6, 6),
                fontsize=8,
                color="0.3",
            )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("EM iteration")
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


def em_snapshots(
    X: Any,
    iterations: Sequence[int],
    *,
    weights_init: Any,
    means_init: Any,
    precisions_init: Any,
    covariance_type: str = "full",
    reg_covar: float = 1e-6,
    tol: float = 1e-8,
    max_iter: int = 1000,
) -> tuple[list[GaussianMixture], GaussianMixture]:
    """Models after exactly ``n`` EM iterations from one starting point, and the converged one.

    Each snapshot is a fresh fit from the same ``*_init`` arrays with
    ``max_iter=n`` and ``tol=0`` (EM is deterministic from its start, so the
    snapshots are the states of a single run); ``n=0`` is the start itself.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    iterations : sequence of int
    weights_init, means_init, precisions_init : array-like
        The starting point, as for :class:`~fastem.GaussianMixture`.
    covariance_type : str, default='full'
    reg_covar : float, default=1e-6
    tol, max_iter : float, int
        Convergence rule of the final, converged run.

    Returns
    -------
    snapshots : list of GaussianMixture
    converged : GaussianMixture
        Run to convergence; its ``lower_bounds_`` is the whole log-likelihood curve.
    """
    from sklearn.exceptions import ConvergenceWarning

    from .mixture import GaussianMixture

    def run(n: int, tol_: float) -> GaussianMixture:
        gm = GaussianMixture(
            len(means_init),
            covariance_type=covariance_type,
            weights_init=weights_init,
            means_init=means_init,
            precisions_init=precisions_init,
            reg_covar=reg_covar,
            tol=tol_,
            max_iter=n,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # stopping early is the point
            return gm.fit(X)

    return [run(int(n), 0.0) for n in iterations], run(max_iter, tol)


def plot_em_progress(
    X: Any,
    *,
    weights_init: Any,
    means_init: Any,
    precisions_init: Any,
    iterations: Sequence[int] = (0, 1, 2, 5, 20),
    covariance_type: str = "full",
    dims: Sequence[int] = (0, 1),
    feature_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """EM at work: the model after each of ``iterations`` and at convergence, and the log-likelihood curve.

    Every panel shows the points coloured by their responsibilities under that
    panel's parameters, with the 1-sigma (solid) and 2-sigma (dashed) ellipses.
    All panels share the axis limits so the movement is visible.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    weights_init, means_init, precisions_init : array-like
        The starting point (iteration 0).
    iterations : sequence of int, default=(0, 1, 2, 5, 20)
    covariance_type : str, default='full'
    dims : (int, int), default=(0, 1)
    feature_names : sequence of str, default=None
    title : str, default=None

    Returns
    -------
    fig : matplotlib Figure
        Save it with ``fig.savefig(path)``.
    """
    X = np.asarray(X, dtype=np.float64)
    snaps, final = em_snapshots(
        X,
        iterations,
        weights_init=weights_init,
        means_init=means_init,
        precisions_init=precisions_init,
        covariance_type=covariance_type,
    )
    panels = [*zip(iterations, snaps, strict=True), (final.n_iter_, final)]
    n_cols = 3
    n_rows = -(-len(panels) // n_cols)
    fig = new_figure(figsize=(4.1 * n_cols, 3.5 * n_rows + 3.0), layout="constrained")
    grid = fig.add_gridspec(n_rows + 1, n_cols, height_ratios=[1.0] * n_rows + [0.8])
    i, j = int(dims[0]), int(dims[1])
    pad_x, pad_y = 0.08 * np.ptp(X[:, i]), 0.08 * np.ptp(X[:, j])
    limits = (X[:, i].min() - pad_x, X[:, i].max() + pad_x), (X[:, j].min() - pad_y, X[:, j].max() + pad_y)
    n = X.shape[0]
    for p, (it, gm) in enumerate(panels):
        ax = fig.add_subplot(grid[p // n_cols, p % n_cols])
        is_final = p == len(panels) - 1
        loglik = gm.score(X) * n
        label = f"converged after {it} iterations" if is_final else f"iteration {it}"
        plot_mixture(gm, X, dims=dims, ax=ax, feature_names=feature_names)
        ax.set_title(f"{label}\nlog-likelihood {loglik:.2f}", fontsize=10)
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
        if p % n_cols:
            ax.set_ylabel("")
        if p // n_cols < n_rows - 1:
            ax.set_xlabel("")
    ax = fig.add_subplot(grid[n_rows, :])
    plot_lower_bounds(final.lower_bounds_, ax=ax, n_samples=n, mark=[m for m in iterations if m])
    ax.set_title(
        f"log-likelihood per iteration: never decreases; final {final.score(X) * n:.4f}", fontsize=10
    )
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


def faithful_em_figure(X: Any | None = None) -> Figure:
    """The demo figure: EM on Old Faithful from a deliberately poor start (as in Bishop 2006, Fig. 9.8).

    The start is deterministic and, in standardised units, the one of the
    textbook figure: equal weights, unit (axis-aligned) covariances and means
    at (-1.5, +1) and (+1.5, -1) standard deviations from the centre, across
    the two clusters rather than along them. From there EM needs about 18
    iterations, so iterations 1, 2 and 5 show the components travelling.

    Parameters
    ----------
    X : ndarray of shape (272, 2), default=None
        The Old Faithful data (:func:`fastem.datasets.load_old_faithful` when None).

    Returns
    -------
    fig : matplotlib Figure
    """
    from .datasets import load_old_faithful

    X = load_old_faithful() if X is None else np.asarray(X, dtype=np.float64)
    center, scale = X.mean(axis=0), X.std(axis=0)
    means = center + scale * np.array([[-1.5, 1.0], [1.5, -1.0]])
    precision = np.diag(1.0 / scale**2)
    return plot_em_progress(
        X,
        weights_init=np.array([0.5, 0.5]),
        means_init=means,
        precisions_init=np.stack([precision, precision]),
        feature_names=["eruption duration (min)", "waiting time to next eruption (min)"],
        title="EM on Old Faithful: 2 full-covariance Gaussians from a poor start "
        "(colour = responsibility; ellipses 1 and 2 sigma)",
    )
