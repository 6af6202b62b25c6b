"""Plain EM vs SQUAREM (SqS3) vs scikit-learn: passes and seconds to convergence from the same start.

Usage: ``python scripts/compare_acceleration.py [--n 20000] [--tol 1e-8] [--repeats 3]``. Prints a
markdown table: one row per problem (every family, overlapping and separated clusters, several D
and K), with the passes over the data (E-steps), the wall time (median of ``--repeats`` runs, the
methods interleaved within each repeat, since the machine may be shared), and the final mean
log-likelihood of each method. ``tol`` is on the change of the mean log-likelihood per sample
between iterations, in fastem's ``run_em`` as in scikit-learn's ``GaussianMixture``, so for the
Gaussian rows scikit-learn is run from the same weights, means and precisions (``n_init=1``, the
same ``reg_covar``) to the same ``tol``. fastem's seconds are the EM loop from the given parameters
(``run_em`` / ``run_squarem`` on an in-memory executor); scikit-learn's are its whole ``fit``
(validation, its initial M-step from random responsibilities, which ``*_init`` then override,
and its final E-step: about two passes more than its ``n_iter_``).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import make_mixture  # noqa: E402
from reference_families import make_bernoulli, make_multinomial, make_poisson, make_vmf  # noqa: E402

from fastem._accelerate import run_squarem  # noqa: E402
from fastem._em import run_em  # noqa: E402
from fastem._executor import ArrayExecutor  # noqa: E402
from fastem.families.bernoulli import BernoulliFamily  # noqa: E402
from fastem.families.gaussian import GaussianFamily  # noqa: E402
from fastem.families.multinomial import MultinomialFamily  # noqa: E402
from fastem.families.poisson import PoissonFamily  # noqa: E402
from fastem.families.student_t import StudentTFamily  # noqa: E402
from fastem.families.vmf import VonMisesFisherFamily  # noqa: E402


def gaussian_blobs(n: int, D: int, K: int, separation: float, seed: int = 0) -> np.ndarray:
    """K axis-aligned clusters in D dimensions (sd 0.7-1.3 per axis) whose centres lie about
    ``separation * sqrt(D)`` apart (centre coordinates drawn with sd ``separation / sqrt(2)``)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(K, D)) * separation / np.sqrt(2)
    scales = rng.uniform(0.7, 1.3, size=(K, D))
    labels = rng.integers(0, K, n)
    return np.ascontiguousarray(centres[labels] + scales[labels] * rng.normal(size=(n, D)))


def with_outliers(X: np.ndarray, share: float = 0.05, seed: int = 0) -> np.ndarray:
    """``X`` with a ``share`` of its rows replaced by gross outliers, uniform on 3x its bounding box."""
    rng = np.random.default_rng(seed)
    X = X.copy()
    rows = rng.choice(X.shape[0], int(share * X.shape[0]), replace=False)
    low, high = X.min(axis=0), X.max(axis=0)
    centre, half = (low + high) / 2, 1.5 * (high - low)
    X[rows] = centre + rng.uniform(-half, half, size=(rows.size, X.shape[1]))
    return X


def problems(n: int):
    """(name, X, family, K). make_mixture's clusters are about 4 sd apart at spread=1."""
    return [
        ("gaussian full, D=3 K=3, overlapping", make_mixture(n, spread=0.5)[0], GaussianFamily("full"), 3),
        ("gaussian full, D=3 K=3, separated", make_mixture(n, seed=7, spread=3.0)[0],
         GaussianFamily("full"), 3),
        ("gaussian full, D=3 K=5 (over-fit), overlapping", make_mixture(n, spread=0.5)[0],
         GaussianFamily("full"), 5),
        ("gaussian diag, D=10 K=6, overlapping", gaussian_blobs(n, 10, 6, 0.7), GaussianFamily("diag"), 6),
        ("gaussian diag, D=10 K=6, separated", gaussian_blobs(n, 10, 6, 2.0), GaussianFamily("diag"), 6),
        ("gaussian tied, D=8 K=4, some overlap", gaussian_blobs(n, 8, 4, 1.5, 1), GaussianFamily("tied"), 4),
        ("gaussian spherical, D=5 K=8, separated", gaussian_blobs(n, 5, 8, 6.0, 2),
         GaussianFamily("spherical"), 8),
        ("student-t full, D=3 K=3, overlapping, 5% outliers", with_outliers(make_mixture(n, spread=0.5)[0]),
         StudentTFamily("full"), 3),
        ("student-t diag, D=8 K=4, some overlap, 5% outliers", with_outliers(gaussian_blobs(n, 8, 4, 1.5, 1)),
         StudentTFamily("diag"), 4),
        ("poisson, D=6 K=3", make_poisson(n, 0)[0], PoissonFamily(), 3),
        ("poisson, D=6 K=4 (over-fit)", make_poisson(n, 0)[0], PoissonFamily(), 4),
        ("bernoulli, D=8 K=3", make_bernoulli(n, 0)[0], BernoulliFamily(), 3),
        ("bernoulli, D=8 K=5 (over-fit)", make_bernoulli(n, 0)[0], BernoulliFamily(), 5),
        ("multinomial, D=10 K=3", make_multinomial(n, 0)[0], MultinomialFamily(), 3),
        ("multinomial, D=10 K=5 (over-fit)", make_multinomial(n, 0)[0], MultinomialFamily(), 5),
        ("vmf, D=5 K=3", make_vmf(n, 0)[0], VonMisesFisherFamily(), 3),
        ("vmf, D=5 K=4 (over-fit)", make_vmf(n, 0)[0], VonMisesFisherFamily(), 4),
    ]  # fmt: skip


def timed(function, *args, **kwargs):
    tic = time.perf_counter()
    out = function(*args, **kwargs)
    return out, time.perf_counter() - tic


def sklearn_fit(X: np.ndarray, family: GaussianFamily, params, tol: float, max_iter: int):
    """scikit-learn's GaussianMixture from fastem's initial parameters (None when not installed)."""
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError:
        return None
    U = params.precisions_cholesky  # precision = U U^T, as scikit-learn's precisions_cholesky_
    kind = family.covariance_type
    if kind == "full":
        precisions = U @ U.transpose(0, 2, 1)
    elif kind == "tied":
        precisions = U @ U.T
    else:
        precisions = U**2
    model = GaussianMixture(
        params.weights.size, covariance_type=kind, tol=tol, reg_covar=family.reg_covar, max_iter=max_iter,
        n_init=1, init_params="random", weights_init=params.weights, means_init=params.means,
        precisions_init=precisions, random_state=0,
    )  # fmt: skip
    return model.fit(X)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--tol", type=float, default=1e-8)
    parser.add_argument("--max-iter", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # floors and re-seeds are reported by the fits themselves
    rows, ratios, slower = [], [], []
    for name, X, family, K in problems(args.n):
        params = family.initial_params(
            X, None, n_components=K, init_params="kmeans", random_state=np.random.RandomState(0)
        )
        ex = ArrayExecutor(X, None, family)
        run_em(ex.accumulate, family.m_step, params, tol=args.tol, max_iter=2)  # compile outside the clock
        gaussian = isinstance(family, GaussianFamily)
        times: dict[str, list[float]] = {"plain": [], "fast": [], "sklearn": []}
        sk = None
        for _ in range(args.repeats):  # interleaved, medians below
            plain, t = timed(
                run_em, ex.accumulate, family.m_step, params, tol=args.tol, max_iter=args.max_iter
            )
            times["plain"].append(t)
            fast, t = timed(run_squarem, ex.accumulate, family.m_step, params, tol=args.tol,
                            max_iter=args.max_iter)  # fmt: skip
            times["fast"].append(t)
            if gaussian:
                sk, t = timed(sklearn_fit, X, family, params, args.tol, args.max_iter)
                times["sklearn"].append(t)
        t_plain, t_fast = np.median(times["plain"]), np.median(times["fast"])
        ratio = fast.n_passes / plain.n_iter
        ratios.append(ratio)
        if t_fast > t_plain:
            slower.append(name)
        sk_cell = "-"
        if sk is not None:
            sk_cell = (f"{np.median(times['sklearn']):.3f} ({sk.n_iter_} it, "
                       f"{sk.lower_bound_ - plain.lower_bound:+.0e})")  # fmt: skip
        rows.append(
            f"| {name} | {plain.n_iter} | {fast.n_passes} ({fast.n_rejected} rej) | {ratio:.2f} "
            f"| {t_plain:.3f} | {t_fast:.3f} | {sk_cell} | {t_plain / t_fast:.1f}x "
            f"| {fast.lower_bound - plain.lower_bound:+.1e} | {int(plain.converged)}/{int(fast.converged)} |"
        )
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"n = {args.n} rows per problem, tol = {args.tol:g} (change of the mean log-likelihood per "
          f"sample), same k-means initial parameters for every method, median of {args.repeats} "
          "interleaved timings\n")  # fmt: skip
    print("| problem | plain EM passes | SQUAREM passes | passes ratio | plain s | SQUAREM s "
          "| scikit-learn s (iterations, LL - plain LL) | speed-up over plain "
          "| LL(SQUAREM) - LL(plain) per sample | converged plain/SQUAREM |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(
        f"\nmedian passes ratio (SQUAREM / plain): {np.median(ratios):.2f}; "
        f"SQUAREM slower in seconds on: {', '.join(slower) or 'none'}"
    )


if __name__ == "__main__":
    main()
