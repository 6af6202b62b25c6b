"""Time per EM iteration of the linear families: fastem vs pomegranate and vs the matrix product.

Everything runs in one process at ``--threads`` threads (numba for fastem,
``torch.set_num_threads`` for pomegranate, threadpoolctl for numpy's BLAS),
each case timed back to back from identical explicit initial parameters.
``tol`` is disabled (fastem ``tol=0``, pomegranate ``tol=-inf``). fastem's
time per iteration = (t(fit, max_iter=1+n) - t(fit, max_iter=1)) / n, which
cancels validation and set-up (median over ``--repeat`` runs). pomegranate
iterates 10-100x slower, so its time per iteration is t(fit, max_iter=1+n) /
(1+n), its set-up being negligible beside that (median over ``--pg-repeat``
runs). Both libraries' iteration counts are checked, and the parameters both
reach after the same 1+n iterations from the same start are compared.

Cases (N=1e6 unless ``--quick``):

* Poisson counts, D=50, K=20, float64: pomegranate GeneralMixtureModel of
  Poisson distributions.
* Bernoulli 0/1 data, D=50, K=20, float64: pomegranate Bernoulli.
* categorical, 50 levels, K=20: fastem MultinomialMixture on one-hot rows
  (N x 50 float64, one count per row) against pomegranate Categorical on the
  category index (N x 1 int64, one feature with 50 keys). A multinomial with
  one draw per row *is* that categorical, so both fit the same model.
  pomegranate's Categorical is per-feature (a D-feature Categorical is D
  independent categoricals), so it has no multinomial over count vectors.
* multinomial counts (100 draws per row, D=50, K=20), dense and CSR:
  fastem only (nothing in pomegranate models count vectors).
* von Mises-Fisher, D=384, K=50, float32 normalised Gaussian blobs: fastem
  only (pomegranate has no vMF).

The product bound is the time of ``X @ theta.T`` with numpy's BLAS (DGEMM for
the float64 cases, SGEMM for vMF) on the same data: one E-step cannot read X
and form the N x K scores faster than that.

    python scripts/compare_families.py            # the full cases
    python scripts/compare_families.py --quick    # N/10 and one repeat, a smoke run

pomegranate (and torch) are optional: ``pip install torch==2.13.0 pomegranate``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
import warnings

N_ROWS = 1_000_000
CASES = ["poisson", "bernoulli", "categorical", "multinomial", "multinomial-csr", "vmf"]


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


# ----------------------------------------------------------------------------------------------- data


def make_case(name: str, n: int, rng):
    """Data, fastem estimator kwargs, pomegranate inputs (or None), dense product operands."""
    import numpy as np

    K, D = (50, 384) if name == "vmf" else (20, 50)
    weights = np.full(K, 1.0 / K)
    labels = rng.integers(0, K, size=n)
    pg = None
    if name == "poisson":
        rates = rng.uniform(1.0, 5.0, size=(K, D))  # overlapping: neighbouring rates within noise
        X = rng.poisson(rates[labels]).astype(np.float64)
        init = rates * rng.uniform(0.7, 1.3, size=(K, D))
        kwargs = dict(rates_init=init)
        pg = ("poisson", X, init)
    elif name == "bernoulli":
        probs = rng.uniform(0.2, 0.8, size=(K, D))
        X = (rng.random((n, D)) < probs[labels]).astype(np.float64)
        init = np.clip(probs + rng.uniform(-0.1, 0.1, size=(K, D)), 0.05, 0.95)
        kwargs = dict(probabilities_init=init)
        pg = ("bernoulli", X, init)
    elif name == "categorical":
        probs = rng.dirichlet(np.full(D, 2.0), size=K)
        cat = _draw_categories(probs, labels, rng)
        X = np.zeros((n, D))
        X[np.arange(n), cat] = 1.0
        init = rng.dirichlet(np.full(D, 2.0), size=K) * 0.3 + probs * 0.7
        kwargs = dict(probabilities_init=init)
        pg = ("categorical", cat[:, None], init)
    elif name.startswith("multinomial"):
        probs = rng.dirichlet(np.full(D, 2.0), size=K)
        X = np.empty((n, D))
        for lo in range(0, n, 100_000):  # chunks keep the per-row probabilities small
            X[lo : lo + 100_000] = rng.multinomial(100, probs[labels[lo : lo + 100_000]])
        init = rng.dirichlet(np.full(D, 2.0), size=K) * 0.3 + probs * 0.7
        kwargs = dict(probabilities_init=init)
    elif name == "vmf":
        centers = rng.normal(size=(K, D))
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
        X = rng.standard_normal((n, D), dtype=np.float32)
        c32 = (10.0 * centers).astype(np.float32)  # cosine to own centre ~0.45: wide, overlapping caps
        for lo in range(0, n, 100_000):  # in place, in chunks: X alone is 1.5 GB
            block = X[lo : lo + 100_000]
            block += c32[labels[lo : lo + 100_000]]
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        mu = centers + rng.normal(scale=0.02, size=(K, D))
        mu /= np.linalg.norm(mu, axis=1, keepdims=True)
        kwargs = dict(mean_directions_init=mu, concentrations_init=np.full(K, 200.0))
    else:
        raise ValueError(name)
    dense = X
    if name == "multinomial-csr":
        import scipy.sparse as sp

        X = sp.csr_matrix(dense)
    return X, dict(weights_init=weights, **kwargs), pg, dense, K, D


def _draw_categories(probs, labels, rng):
    import numpy as np

    cum = np.cumsum(probs, axis=1)
    u = rng.random(labels.size)
    out = np.empty(labels.size, dtype=np.int64)
    for lo in range(0, labels.size, 100_000):
        c = cum[labels[lo : lo + 100_000]]
        out[lo : lo + 100_000] = (c < u[lo : lo + 100_000, None]).sum(axis=1)
    return np.minimum(out, probs.shape[1] - 1)


# ----------------------------------------------------------------------------------------------- fastem

ESTIMATORS = {
    "poisson": "PoissonMixture",
    "bernoulli": "BernoulliMixture",
    "categorical": "MultinomialMixture",
    "multinomial": "MultinomialMixture",
    "multinomial-csr": "MultinomialMixture",
    "vmf": "VonMisesFisherMixture",
}


def time_fastem(name, X, kwargs, K, n_iter, repeat, threads):
    """Median of (t(max_iter=1+n_iter) - t(max_iter=1)) / n_iter, the n_iter_ pairs, the last model."""
    import fastem

    cls = getattr(fastem, ESTIMATORS[name])

    def fit(max_iter, data=X):
        est = cls(K, tol=0.0, max_iter=max_iter, n_init=1, random_state=0, n_jobs=threads, **kwargs)
        tic = time.perf_counter()
        est.fit(data)
        return time.perf_counter() - tic, est

    fit(2, X[:5000])  # JIT warm-up outside the timings
    per_iter, iters = [], set()
    for _ in range(repeat):
        t1, e1 = fit(1)
        tn, est = fit(1 + n_iter)
        per_iter.append((tn - t1) / n_iter)
        iters.add((e1.n_iter_, est.n_iter_))
    return _median(per_iter), iters, est


# ----------------------------------------------------------------------------------------------- pomegranate


def pomegranate_available() -> bool:
    try:
        import pomegranate.gmm  # noqa: F401
    except ImportError:
        return False
    return True


def time_pomegranate(pg, weights, n_iter, repeat, threads):
    """Median of t(fit, max_iter=1+n_iter) / (1+n_iter), the iteration counts, the last model."""
    import torch
    from pomegranate.distributions import Bernoulli, Categorical, Poisson
    from pomegranate.gmm import GeneralMixtureModel

    torch.set_num_threads(threads)
    kind, data, init = pg
    X = torch.from_numpy(data)

    def model(max_iter):
        if kind == "poisson":
            dists = [Poisson(lambdas=torch.tensor(row)) for row in init]
        elif kind == "bernoulli":
            dists = [Bernoulli(probs=torch.tensor(row)) for row in init]
        else:
            dists = [Categorical(probs=torch.tensor(row[None, :])) for row in init]
        gmm = GeneralMixtureModel(dists, priors=torch.tensor(weights), max_iter=max_iter, tol=-float("inf"))
        gmm.n_m_steps = 0
        inner = gmm.from_summaries

        def counted():  # fit() calls summarize + from_summaries once per iteration
            gmm.n_m_steps += 1
            inner()

        gmm.from_summaries = counted
        return gmm

    def fit(max_iter, data=X):
        gmm = model(max_iter)
        tic = time.perf_counter()
        gmm.fit(data)
        return time.perf_counter() - tic, gmm

    fit(2, X[:5000])  # warm-up (allocator, first-call dispatch)
    per_iter, iters = [], set()
    for _ in range(repeat):
        tn, gmm = fit(1 + n_iter)
        per_iter.append(tn / (1 + n_iter))
        iters.add(gmm.n_m_steps)
    return _median(per_iter), iters, gmm


def pomegranate_params(gmm, kind):
    import numpy as np

    if kind == "poisson":
        return np.stack([d.lambdas.detach().numpy() for d in gmm.distributions])
    if kind == "bernoulli":
        return np.stack([d.probs.detach().numpy() for d in gmm.distributions])
    return np.stack([d.probs.detach().numpy()[0] for d in gmm.distributions])


# ----------------------------------------------------------------------------------------------- bound


def time_product(dense, K, repeat):
    """Median time of X @ theta.T (numpy BLAS, X's dtype)."""
    import numpy as np

    theta = np.random.default_rng(1).normal(size=(K, dense.shape[1])).astype(dense.dtype)
    out = np.empty((dense.shape[0], K), dtype=dense.dtype)
    np.matmul(dense, theta.T, out=out)
    times = []
    for _ in range(max(repeat, 5)):
        tic = time.perf_counter()
        np.matmul(dense, theta.T, out=out)
        times.append(time.perf_counter() - tic)
    return _median(times)


# ----------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="divide N by 10 and run one repeat")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=2, help="n: fits of 1 and 1+n iterations are timed")
    parser.add_argument("--repeat", type=int, default=5, help="fastem runs (median)")
    parser.add_argument("--pg-repeat", type=int, default=3, help="pomegranate runs (median)")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=CASES)
    parser.add_argument("--no-pomegranate", action="store_true", help="time fastem and the bound only")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))

    import numba
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(args.threads)
    n = N_ROWS // 10 if args.quick else N_ROWS
    repeat = 1 if args.quick else args.repeat
    pg_repeat = 1 if args.quick else args.pg_repeat
    use_pg = not args.no_pomegranate and pomegranate_available()
    if args.no_pomegranate:
        print("pomegranate: not run (--no-pomegranate)")
    elif not use_pg:
        print("pomegranate: not installed, skipped (pip install torch==2.13.0 pomegranate)")
    else:
        import pomegranate
        import torch

        torch.set_num_threads(args.threads)
        print(f"pomegranate {pomegranate.__version__} on torch {torch.__version__}, {args.threads} threads")
    blas = [f"{i['internal_api']} {i.get('version')} {i.get('architecture')}" for i in threadpool_info()
            if i["user_api"] == "blas"]  # fmt: skip
    core = {v: os.environ.get(v, "unset") for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    print(f"threads={args.threads} (numba {numba.get_num_threads()})  cores={os.cpu_count()}  N={n:.0e}  "
          f"medians of {repeat} (fastem) / {pg_repeat} (pomegranate) runs, n={args.iters}")  # fmt: skip
    print(f"numpy BLAS: {'; '.join(blas)}  ({', '.join(f'{k}={v}' for k, v in core.items())})")
    print()
    warnings.simplefilter("ignore")
    rows = []
    header = (
        "| case | fastem s/iter | pomegranate s/iter | pomegranate/fastem | product bound s "
        "| fastem/bound | iters fastem, pomegranate | max rel. param diff |"
    )
    print(header)
    print("|" + "---|" * 8)
    for name in args.cases:
        rng = np.random.default_rng(0)
        X, kwargs, pg, dense, K, D = make_case(name, n, rng)
        fe, fe_iters, est = time_fastem(name, X, kwargs, K, args.iters, repeat, args.threads)
        bound = time_product(dense, K, repeat)
        pgt, pg_iters, diff = float("nan"), None, float("nan")
        if use_pg and pg is not None:
            weights = kwargs["weights_init"]
            pgt, pg_iters, gmm = time_pomegranate(pg, weights, args.iters, pg_repeat, args.threads)
            ours = est.rates_ if pg[0] == "poisson" else est.probabilities_
            theirs = pomegranate_params(gmm, pg[0])
            diff = float(np.max(np.abs(theirs - ours) / np.abs(ours)))
            del gmm
        dtype = dense.dtype.name
        label = f"{name} N={n:.0e} D={D} K={K} {dtype}"
        iters = f"{sorted(fe_iters)}, {sorted(pg_iters) if pg_iters else '-'}"
        print(
            f"| {label} | {fe:.4f} | {pgt:.3f} | {pgt / fe:.1f}x | {bound:.4f} | {fe / bound:.2f} "
            f"| {iters} | {diff:.1e} |",
            flush=True,
        )
        rows.append({"case": label, "fastem_s_per_iter": fe, "pomegranate_s_per_iter": pgt,
                     "product_bound_s": bound, "fastem_iters": sorted(fe_iters),
                     "pomegranate_iters": sorted(pg_iters) if pg_iters else None,
                     "max_rel_param_diff": diff})  # fmt: skip
        del X, dense, pg, est
        gc.collect()
    print()
    print(
        "iters: fastem (n_iter_ of the max_iter=1 fit, of the 1+n fit); pomegranate M-steps of its 1+n fit."
    )
    print(
        "param diff: max |pomegranate - fastem| / fastem over the parameters after the same 1+n iterations."
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
