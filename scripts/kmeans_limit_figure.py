"""Figure: soft EM tends to k-means as a shared spherical variance shrinks.

A mixture of K spherical Gaussians with equal weights and one shared, *fixed*
variance s^2 has E-step responsibilities softmax_k(-||x - mu_k||^2 / (2 s^2)):
as s^2 -> 0 they become the nearest-centre assignment, and the M-step (means
only) becomes Lloyd's centroid update, so EM becomes k-means. Hard EM
(``algorithm="hard"``) with those fixed covariances *is* k-means at any s^2
(tests/test_hard_em.py checks it iteration by iteration against fastem's
Lloyd).

The script fits, on four overlapping unit-variance clusters, soft EM with the
means-only M-step of ``fastem.families.gaussian.kmeans_limit_m_step`` for a
range of s^2, each from the k-means solution, and draws (with ``fastem.plot``)
the points coloured by responsibility, the 1- and 2-s circles and the k-means
centres (black crosses), plus the largest distance between the EM means and
the k-means centres and the mean responsibility not on a row's likeliest
component (1 - max_k r_ik) against s^2. Rows near a boundary stay split until s^2 is
far below their margin |d_1^2 - d_2^2|; from there on EM is k-means exactly.

    .venv/bin/python scripts/kmeans_limit_figure.py [--out kmeans_limit.png]
"""

from __future__ import annotations

import argparse

import numpy as np

from fastem import GaussianMixture
from fastem._em import fit_restarts
from fastem._executor import ArrayExecutor
from fastem._init import lloyd
from fastem.families.gaussian import GaussianFamily, kmeans_limit_m_step, kmeans_limit_params
from fastem.plot import new_figure, plot_mixture

CENTRES = np.array([[0.0, 0.0], [2.5, 0.0], [0.0, 2.5], [2.5, 2.5]])
SHOWN = (2.0, 0.5, 0.1, 0.01, 1e-5)  # the variances drawn as scatter panels


def data(n_per_cluster: int = 500) -> np.ndarray:
    rng = np.random.RandomState(0)
    return np.vstack([rng.randn(n_per_cluster, 2) + c for c in CENTRES])


def soft_em(X: np.ndarray, start: np.ndarray, variance: float):
    """Soft EM with equal weights and the shared spherical ``variance`` held fixed (means only)."""
    family = GaussianFamily("spherical")
    return fit_restarts(ArrayExecutor(X, None, family).accumulate, kmeans_limit_m_step(family, variance),
                        lambda _: kmeans_limit_params(start, variance), n_init=1, tol=1e-12,
                        max_iter=5000)  # fmt: skip


def as_estimator(params, n_features: int) -> GaussianMixture:
    """A fitted-looking GaussianMixture holding ``params`` (what ``fastem.plot`` draws)."""
    gm = GaussianMixture(params.n_components, covariance_type="spherical")
    gm._publish(params)
    gm.n_features_in_ = n_features
    return gm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="kmeans_limit.png", help="output image (default: kmeans_limit.png)")
    args = parser.parse_args()

    X = data()
    centres, labels = lloyd(X, None, X[[0, 1, 2, 3]], max_iter=300, tol=0.0)
    variances = np.logspace(1, -6, 36)
    gaps, split, runs = [], [], {}
    grid = np.concatenate([variances, SHOWN])
    for v in np.unique(10.0 ** np.round(np.log10(grid), 9))[::-1]:
        v = float(next((s for s in SHOWN if np.isclose(s, v, rtol=1e-6)), v))
        run = soft_em(X, centres, v)
        gm = as_estimator(run.params, X.shape[1])
        gaps.append((v, np.abs(run.params.means - centres).max()))
        split.append((v, float(np.mean(1.0 - gm.predict_proba(X).max(axis=1)))))
        if v in SHOWN:
            runs[v] = (gm, run)
        print(f"s^2 = {v:9.3g}: {run.n_iter:4d} iterations, max |mu - kmeans| = {gaps[-1][1]:.3g}, "
              f"mean (1 - max r) {split[-1][1]:.3g}")  # fmt: skip

    hard = GaussianMixture(4, covariance_type="spherical", means_init=centres, random_state=0).fit(
        X, algorithm="hard"
    )
    print(f"hard EM (free weights and variances) from the k-means centres: {hard.n_iter_} iterations")

    fig = new_figure(figsize=(15, 9.5), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for ax, v in zip(axes, SHOWN, strict=False):
        gm, run = runs[v]
        s = np.sqrt(v)
        plot_mixture(gm, X, ax=ax, title=f"soft EM, fixed shared variance s² = {v:g} (s = {s:.3g})")
        ax.plot(centres[:, 0], centres[:, 1], "kx", ms=12, mew=2.5, label="k-means centres")
        ax.set_xlim(-3.5, 6)
        ax.set_ylim(-3.5, 6)
        ax.legend(loc="lower right", fontsize=8)
    ax = axes[-1]
    v, g = np.array(gaps).T
    ax.loglog(v, np.maximum(g, 1e-17), "o-", ms=3, label="max |μ_EM − μ_k-means|")
    _, f = np.array(split).T
    ax.loglog(v, np.maximum(f, 1e-17), "s-", ms=3, label="mean over rows of 1 − max_k r_ik")
    ax.set_xlabel("shared spherical variance s² (fixed)")
    ax.set_ylim(1e-17, 10)
    ax.invert_xaxis()
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title("soft EM → k-means as s² → 0 (0 drawn at 1e-17)")
    ax.legend(fontsize=8)
    fig.suptitle(
        "The k-means limit: equal weights, one shared spherical covariance s²I held fixed; "
        "hard EM with it is k-means at every s²",
        fontsize=12,
    )
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
