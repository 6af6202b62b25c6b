"""Side-by-side time per EM iteration and peak memory: fastem vs scikit-learn.

Each (case, library) runs in its own subprocess with the same thread count, so
peak RSS is per library and JIT compilation happens before timing. Time per
iteration = (t(fit, max_iter=1+n) - t(fit, max_iter=1)) / n from identical
explicit initial parameters, which cancels initialisation and the final
E-step; the median over ``--repeat`` runs is reported.

    python scripts/compare_sklearn.py            # the issue's benchmark cases
    python scripts/compare_sklearn.py --quick    # smaller N, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CASES = [
    # (N, D, K, covariance_type, dtype)
    (1_000_000, 16, 16, "full", "float64"),
    (4_000_000, 8, 8, "diag", "float64"),
    (200_000, 64, 32, "full", "float64"),
    (1_000_000, 2, 8, "full", "float64"),
    (1_000_000, 16, 16, "full", "float32"),
]

#: DGEMM rate measured on this machine (2 threads); see ``--measure-dgemm``.
DEFAULT_DGEMM_GFLOPS = 85.0

WORKER = r"""
import json, resource, sys, time, warnings
import numpy as np
N, D, K, kind, dtype, lib, n_iter, repeat = sys.argv[1:9]
N, D, K, n_iter, repeat = int(N), int(D), int(K), int(n_iter), int(repeat)
rng = np.random.default_rng(0)
centers = rng.normal(scale=4.0, size=(K, D))
X = (centers[rng.integers(0, K, size=N)] + rng.normal(size=(N, D))).astype(dtype)
means = centers + 0.5
prec = {"full": np.tile(np.eye(D), (K, 1, 1)), "tied": np.eye(D),
        "diag": np.ones((K, D)), "spherical": np.ones(K)}[kind]
init = dict(weights_init=np.full(K, 1.0 / K), means_init=means, precisions_init=prec)
if lib == "fastem":
    from fastem import GaussianMixture
    GaussianMixture(K, covariance_type=kind, max_iter=2, tol=0, **init).fit(X[:5000])  # JIT warm-up
else:
    from sklearn.mixture import GaussianMixture
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
warnings.simplefilter("ignore")
def timed(max_iter):
    gm = GaussianMixture(K, covariance_type=kind, max_iter=max_iter, tol=0, **init)
    t = time.perf_counter(); gm.fit(X); return time.perf_counter() - t, gm
per_iter = []
for _ in range(repeat):
    t1, _ = timed(1)
    tn, gm = timed(1 + n_iter)
    per_iter.append((tn - t1) / n_iter)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"per_iter": sorted(per_iter)[len(per_iter) // 2], "peak_mb": peak / 1024,
                  "extra_mb": (peak - rss_before) / 1024, "data_mb": X.nbytes / 2**20,
                  "lower_bound": float(gm.lower_bound_)}))
"""


def run_case(case, lib: str, n_iter: int, repeat: int, threads: int) -> dict:
    N, D, K, kind, dtype = case
    env = dict(os.environ)
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    args = [sys.executable, "-c", WORKER, str(N), str(D), str(K), kind, dtype, lib, str(n_iter), str(repeat)]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{lib} on {case} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_dgemm(threads: int) -> float:
    code = (
        "import numpy as np, time\n"
        "a = np.random.rand(4000, 4000); b = np.random.rand(4000, 4000); a @ b\n"
        "ts = []\n"
        "for _ in range(5):\n"
        "    t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)\n"
        "print(2 * 4000**3 / sorted(ts)[2] / 1e9)\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="divide N by 10 and run one repeat")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=2, help="extra iterations timed per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-sklearn", action="store_true", help="time fastem only")
    parser.add_argument("--measure-dgemm", action="store_true", help="measure the DGEMM rate first")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    dgemm = measure_dgemm(args.threads) if args.measure_dgemm else DEFAULT_DGEMM_GFLOPS
    from fastem._kernels._vector_width import wide_vectors_enabled

    vectors = "512-bit" if wide_vectors_enabled() else "256-bit or narrower"
    print(f"threads={args.threads}  DGEMM reference={dgemm:.1f} GFLOP/s  (median of {repeat})", end="  ")
    print(f"fastem kernel vectors: {vectors}")
    header = (
        f"{'case':<32}{'fastem s/it':>12}{'sklearn s/it':>13}{'speed-up':>9}"
        f"{'GFLOP/s':>9}{'%DGEMM':>7}{'fastem MB':>10}{'sklearn MB':>11}{'data MB':>8}"
    )
    print(header)
    rows = []
    for case in CASES:
        N, D, K, kind, dtype = case
        if args.quick:
            case = (N // 10, D, K, kind, dtype)
            N = N // 10
        fe = run_case(case, "fastem", args.iters, repeat, args.threads)
        sk = None if args.no_sklearn else run_case(case, "sklearn", args.iters, repeat, args.threads)
        # useful flops of a full-covariance iteration (E: D^2/2 FMA, M: D^2/2 FMA per point and component)
        gflops = 2 * N * K * D * D / fe["per_iter"] / 1e9 if kind == "full" else float("nan")
        label = f"{kind} N={N:.0e} D={D} K={K} {dtype}"
        ratio = sk["per_iter"] / fe["per_iter"] if sk else float("nan")
        print(
            f"{label:<32}{fe['per_iter']:>12.4f}{(sk or {}).get('per_iter', float('nan')):>13.3f}"
            f"{ratio:>8.1f}x{gflops:>9.1f}{100 * gflops / dgemm:>6.0f}%"
            f"{fe['extra_mb']:>10.0f}{(sk or {}).get('extra_mb', float('nan')):>11.0f}{fe['data_mb']:>8.0f}",
            flush=True,
        )
        rows.append({"case": label, "fastem": fe, "sklearn": sk, "ratio": ratio, "gflops": gflops})
    print("MB columns: peak RSS growth during the fits (beyond data and imports), ru_maxrss.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
