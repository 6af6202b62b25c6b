"""Default fits side by side: how often fastem and scikit-learn reach the best known optimum.

For each layout, ``GaussianMixture(K, covariance_type=..., random_state=seed).fit(X)``
(every other argument at its default: ``init_params="kmeans"``, ``n_init=1``)
runs for fastem and scikit-learn with seeds 0-9 in one process, one after the
other. The best known optimum of a layout is the largest mean log-likelihood
(``score(X)``) over all those fits and a few extra ``n_init=10`` fits of both
libraries; a fit "reaches" it when its score is within ``--tol`` per sample.
Then the split of fastem's default fit time into initialisation (the family's
``initial_params``: k-means and the initial moments) and EM on 1e6 x 16, K=16
(median of ``--repeat`` fits).

    NUMBA_NUM_THREADS=2 OMP_NUM_THREADS=2 python scripts/compare_init.py
    python scripts/compare_init.py --quick     # fewer seeds and rows, a smoke run
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

#: (name, generator keywords, K, covariance_type)
LAYOUTS = [
    ("5 blobs, 2-D line, diag", dict(kind="blobs", n=80_000, d=2, geometry="line"), 5, "diag"),
    (
        "5 blobs, 2-D cross, full, unequal",
        dict(kind="blobs", n=80_000, d=2, geometry="cross", unequal=True),
        5,
        "full",
    ),
    ("5 blobs, 8-D simplex, diag", dict(kind="blobs", n=100_000, d=8, geometry="simplex"), 5, "diag"),
    (
        "5 blobs, 8-D simplex, full, unequal",
        dict(kind="blobs", n=80_000, d=8, geometry="simplex", unequal=True),
        5,
        "full",
    ),
    (
        "5 blobs, 16-D simplex, full, unequal",
        dict(kind="blobs", n=100_000, d=16, geometry="simplex", unequal=True),
        5,
        "full",
    ),
    ("overlapping 2e5 x 16, K=16, full", dict(kind="overlap", n=200_000, d=16), 16, "full"),
]
UNEQUAL = np.array([0.4, 0.25, 0.15, 0.12, 0.08])


def make_blobs(n: int, d: int, geometry: str, unequal: bool = False, seed: int = 1) -> np.ndarray:
    """Five blobs whose centres are >= 14 apart, standard deviations 0.5-2.2, rows shuffled.

    ``simplex``: every pair of centres exactly 14 apart (the hard case for
    k-means++: a broad blob carries as much D^2 mass as its neighbours);
    ``line``: centres 14 apart on a line; ``cross``: a centre and four at 14.
    """
    rng = np.random.default_rng(seed)
    K, spacing = 5, 14.0
    centres = np.zeros((K, d))
    if geometry == "simplex":
        centres[np.arange(K), np.arange(K)] = spacing / np.sqrt(2)
    elif geometry == "line":
        centres[:, 0] = spacing * np.arange(K)
    else:
        centres[1:, :2] = spacing * np.array([[1, 0], [-1, 0], [0, 1], [0, -1]])
    counts = rng.multinomial(n, UNEQUAL if unequal else np.full(K, 1 / K))
    parts = []
    for k, sd in enumerate(np.linspace(2.2, 0.6, K)):
        z = rng.normal(size=(counts[k], d)) * (sd * rng.uniform(0.8, 1.0, size=d))
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        parts.append(centres[k] + z @ q.T)  # rotated: the full case has correlations
    X = np.concatenate(parts)
    return X[rng.permutation(n)]


def make_overlap(n: int, d: int, K: int = 16, seed: int = 0) -> np.ndarray:
    """K overlapping diagonal Gaussians (centres N(0, 0.5^2), sds 0.7-1.4): many local optima."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=0.5, size=(K, d))
    sds = rng.uniform(0.7, 1.4, size=(K, d))
    labels = rng.integers(0, K, size=n)
    return centres[labels] + rng.normal(size=(n, d)) * sds[labels]


def make(spec: dict, scale: float = 1.0) -> np.ndarray:
    spec = dict(spec)
    kind = spec.pop("kind")
    spec["n"] = int(spec["n"] * scale)
    return make_blobs(**spec) if kind == "blobs" else make_overlap(**spec)


def fit_score(cls, X: np.ndarray, K: int, cov: str, seed: int, n_init: int = 1) -> tuple[float, float]:
    t = time.perf_counter()
    gm = cls(K, covariance_type=cov, random_state=seed, n_init=n_init).fit(X)
    return float(gm.score(X)), time.perf_counter() - t


def quality_table(seeds: int, scale: float, tol: float, extra: int) -> None:
    from sklearn.mixture import GaussianMixture as SkGM

    from fastem import GaussianMixture as FastGM

    FastGM(2, max_iter=2).fit(make_overlap(2000, 3))  # JIT warm-up
    print(
        f"{'layout':38s} {'best':>10s} {'fastem':>7s} {'sklearn':>7s}  {'fastem worst':>12s} "
        f"{'sklearn worst':>13s}  {'t fastem':>8s} {'t sklearn':>9s}"
    )
    totals = np.zeros(3, dtype=int)
    for name, spec, K, cov in LAYOUTS:
        X = make(spec, scale)
        f = [fit_score(FastGM, X, K, cov, s) for s in range(seeds)]
        s = [fit_score(SkGM, X, K, cov, s) for s in range(seeds)]
        extras = [
            fit_score(cls, X, K, cov, 100 + r, n_init=10)[0] for r in range(extra) for cls in (FastGM, SkGM)
        ]
        fs, ss = np.array([v for v, _ in f]), np.array([v for v, _ in s])
        best = max(fs.max(), ss.max(), *extras)
        nf, ns = int(np.sum(fs >= best - tol)), int(np.sum(ss >= best - tol))
        totals += (nf, ns, seeds)
        tf, ts = np.median([t for _, t in f]), np.median([t for _, t in s])
        print(
            f"{name:38s} {best:10.4f} {nf:>4d}/{seeds:<2d} {ns:>4d}/{seeds:<2d}  "
            f"{fs.min():12.4f} {ss.min():13.4f}  {tf:7.2f}s {ts:8.2f}s",
            flush=True,
        )
    print(f"{'total':38s} {'':10s} {totals[0]:>4d}/{totals[2]:<2d} {totals[1]:>4d}/{totals[2]:<2d}")


def time_split(repeat: int, scale: float) -> None:
    import fastem.families.gaussian as gaussian
    from fastem import GaussianMixture as FastGM

    inner = gaussian.initial_params
    spent: list[float] = []

    def timed_initial_params(*args, **kwargs):
        t = time.perf_counter()
        out = inner(*args, **kwargs)
        spent.append(time.perf_counter() - t)
        return out

    gaussian.initial_params = timed_initial_params
    try:
        n = int(1_000_000 * scale)
        rng = np.random.default_rng(0)
        separated = rng.normal(scale=4.0, size=(16, 16))[rng.integers(0, 16, size=n)] + rng.normal(
            size=(n, 16)
        )
        for label, X in (("separated (centres N(0, 4^2))", separated), ("overlapping", make_overlap(n, 16))):
            rows = []
            for seed in range(repeat):
                spent.clear()
                t = time.perf_counter()
                gm = FastGM(16, random_state=seed).fit(X)
                total = time.perf_counter() - t
                rows.append((sum(spent), total, gm.n_iter_))
            init, total, n_iter = (float(np.median([r[i] for r in rows])) for i in range(3))
            print(
                f"{n} x 16, K=16, full, {label}: init {init:.2f}s, EM {total - init:.2f}s "
                f"({n_iter:.0f} iterations), init = {100 * init / total:.0f}% of the fit",
                flush=True,
            )
    finally:
        gaussian.initial_params = inner


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=10, help="random_state 0..seeds-1 per layout")
    parser.add_argument("--extra", type=int, default=1, help="extra n_init=10 fits per library and layout")
    parser.add_argument("--tol", type=float, default=1e-3, help="per-sample log-likelihood tolerance")
    parser.add_argument("--repeat", type=int, default=3, help="fits per timing (median)")
    parser.add_argument("--quick", action="store_true", help="3 seeds, a fifth of the rows")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    seeds = 3 if args.quick else args.seeds
    warnings.simplefilter("ignore")  # convergence warnings of single fits are part of the picture
    if not args.skip_quality:
        quality_table(seeds, scale, args.tol, args.extra)
    if not args.skip_timing:
        time_split(args.repeat, scale)


if __name__ == "__main__":
    main()
