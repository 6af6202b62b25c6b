"""Plain EM vs SQUAREM (SqS3): passes and seconds to convergence from the same initial parameters.

Usage: ``python scripts/compare_acceleration.py [--n 20000] [--tol 1e-8]``. Prints a markdown
table: one row per problem (every family, overlapping and separated clusters, several D and K),
with the passes over the data (E-steps), the wall time, and the final mean log-likelihood of each
method (``tol`` is on the change of the mean log-likelihood per sample, as in ``run_em``).
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
from fastem.families.vmf import VonMisesFisherFamily  # noqa: E402


def gaussian_blobs(n: int, D: int, K: int, separation: float, seed: int = 0) -> np.ndarray:
    """K spherical-ish clusters in D dimensions whose centres are ``separation`` sd apart on average."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(K, D)) * separation / np.sqrt(2 * D) * np.sqrt(D)
    scales = rng.uniform(0.7, 1.3, size=(K, D))
    labels = rng.integers(0, K, n)
    return np.ascontiguousarray(centres[labels] + scales[labels] * rng.normal(size=(n, D)))


def problems(n: int):
    """(name, X, family, K)."""
    return [
        ("gaussian full, D=3 K=3, overlapping", make_mixture(n, spread=0.5)[0], GaussianFamily("full"), 3),
        ("gaussian full, D=3 K=3, separated", make_mixture(n, seed=7, spread=3.0)[0],
         GaussianFamily("full"), 3),
        ("gaussian full, D=3 K=5, overlapping", make_mixture(n, spread=0.5)[0], GaussianFamily("full"), 5),
        ("gaussian diag, D=10 K=6, overlapping", gaussian_blobs(n, 10, 6, 2.0), GaussianFamily("diag"), 6),
        ("gaussian tied, D=8 K=4, overlapping", gaussian_blobs(n, 8, 4, 1.5, 1), GaussianFamily("tied"), 4),
        ("gaussian spherical, D=5 K=8, separated", gaussian_blobs(n, 5, 8, 6.0, 2),
         GaussianFamily("spherical"), 8),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--tol", type=float, default=1e-8)
    parser.add_argument("--max-iter", type=int, default=20_000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # floors and re-seeds are reported by the fits themselves
    rows, ratios = [], []
    for name, X, family, K in problems(args.n):
        params = family.initial_params(
            X, None, n_components=K, init_params="kmeans", random_state=np.random.RandomState(0)
        )
        ex = ArrayExecutor(X, None, family)
        run_em(ex.accumulate, family.m_step, params, tol=args.tol, max_iter=2)  # compile outside the clock
        best_plain = best_fast = np.inf
        for _ in range(3):  # best of three
            plain, t_plain = timed(run_em, ex.accumulate, family.m_step, params, tol=args.tol,
                                   max_iter=args.max_iter)  # fmt: skip
            fast, t_fast = timed(run_squarem, ex.accumulate, family.m_step, params, tol=args.tol,
                                 max_iter=args.max_iter)  # fmt: skip
            best_plain, best_fast = min(best_plain, t_plain), min(best_fast, t_fast)
        ratio = fast.n_passes / plain.n_iter
        ratios.append(ratio)
        rows.append(
            f"| {name} | {plain.n_iter} | {fast.n_passes} ({fast.n_iter} it, {fast.n_rejected} rej) "
            f"| {ratio:.2f} | {best_plain:.3f} | {best_fast:.3f} | {best_plain / best_fast:.1f}x "
            f"| {fast.lower_bound - plain.lower_bound:+.1e} | {int(plain.converged)}/{int(fast.converged)} |"
        )
    print(f"n = {args.n} rows per problem, tol = {args.tol:g} (change of the mean log-likelihood), "
          "same k-means initial parameters for both methods, best of 3 timings\n")  # fmt: skip
    print("| problem | plain EM passes | SQUAREM passes | passes ratio | plain s | SQUAREM s | speed-up "
          "| LL(SQUAREM) - LL(plain) per sample | converged plain/SQUAREM |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\nmedian passes ratio (SQUAREM / plain): {np.median(ratios):.2f}")


if __name__ == "__main__":
    main()
