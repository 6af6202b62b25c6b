"""Side-by-side seconds per EM iteration: fastem, Intel oneDAL (daal4py) and scikit-learn.

Every library runs in this one process, on the same data, from the same
explicit initial weights, means and covariances, in float64 (plus float32 for
fastem and oneDAL where a case says so: "fastem f32" with fastem's default
float64 sums, "fastem f32acc" with ``accumulation="float32"``, float32 sums per
tile; oneDAL accumulates in float32), at ``--threads`` threads (numba:
``NUMBA_NUM_THREADS``; numpy/scikit-learn: threadpoolctl; oneDAL:
``daal4py.daalinit``). Time per iteration = (t(1 + n iterations) - t(1)) / n,
which cancels set-up, initialisation and final E-steps; the libraries are
interleaved repeat by repeat and the median over ``--repeat`` is reported, so a
change of load on a shared machine hits all of them alike (scikit-learn, 10-40x
slower, runs in the first ``--sklearn-repeat`` repeats only).

Two kinds of data (``--data``):

* ``separated``: centres N(0, 4^2) per coordinate (about 16 sd apart at D=8),
  start at the true centres + 0.5 with identity covariances: almost every
  responsibility is 0 or 1 (the old benchmark).
* ``overlapping``: unit-variance clusters whose centres are rescaled so that the
  median distance to the nearest other centre is 4 sd (3-5 sd for the cases
  here), start at K distinct data rows drawn at random, every component with
  the data covariance: responsibilities are genuinely mixed, as in real fits.

Same number of iterations: before timing, each library runs 3 iterations on
``--check-rows`` rows of every case's data kind (overlapping: from a start
near the true centres, so that no component collapses on so few rows; the
covariances are the data's) and its final parameters are
compared with a plain-NumPy EM (tests/reference.py) from the same start; the
table of max relative differences shows that each library did exactly the
requested iterations (the reference's 2-iteration result is listed to show how
far one iteration more or less would be). The final parameters of the timed
fits are compared across libraries as well.

GFLOP/s counts the useful floating-point work of a full-covariance iteration
per row and component: E-step D(D+1)/2 multiply-adds (the triangular
precision-Cholesky product) plus M-step D(D+1)/2 multiply-adds (the symmetric
second moment), a multiply-add counted as 2 flops, so 2 D(D+1) flops; O(D)
terms are left out. %DGEMM divides that by the rate of numpy's 4000x4000
float64 matrix product (2 * 4000^3 flops) at the same thread count, measured
in the same run (before and after the cases; the median of both).

    python scripts/compare_peers.py                   # both data kinds, all libraries
    python scripts/compare_peers.py --quick           # N / 10, one repeat: a smoke run
    python scripts/compare_peers.py --answer          # time to answer: default fits (issue 13, 6.)

oneDAL is optional (``pip install daal4py``); without it its columns are
skipped with a note. daal4py 2024.7 imports ``daal4py.sklearn`` on import,
which fails against scikit-learn >= 1.7; a stub module under that name is put
in ``sys.modules`` here (in this benchmark process only) before the import.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import types
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _threads_from_argv(argv: list[str]) -> int:
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return 2


if __name__ == "__main__":  # thread counts must be fixed before numpy and numba are imported
    for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(_threads_from_argv(sys.argv[1:]))

import numpy as np  # noqa: E402

#: (N, D, K, covariance_type, also float32)
CASES = [
    (1_000_000, 16, 16, "full", True),
    (4_000_000, 8, 8, "diag", False),
    (200_000, 64, 32, "full", True),
    (1_000_000, 2, 8, "full", False),
    (400_000, 32, 32, "full", False),  # the %DGEMM target holds from D=32
]
DATA_KINDS = ("overlapping", "separated")
LIBRARIES = ("fastem", "onedal", "sklearn")
#: median distance (in within-cluster sd) from a centre to its nearest other centre, overlapping data
OVERLAP_NEAREST_SD = 4.0
CHECK_ITERATIONS = 3


# ------------------------------------------------------------------ data and starts
def make_data(kind: str, n: int, d: int, k: int, seed: int = 0):
    """(X float64, centres, initial (weights, means, covariances)) for a data kind."""
    rng = np.random.default_rng(seed)
    if kind == "separated":
        centres = rng.normal(scale=4.0, size=(k, d))
    else:
        centres = rng.normal(size=(k, d))
        centres *= OVERLAP_NEAREST_SD / np.median(_nearest_centre_distances(centres))
    X = centres[rng.integers(0, k, size=n)] + rng.normal(size=(n, d))
    weights = np.full(k, 1.0 / k)
    if kind == "separated":
        means = centres + 0.5
        cov = np.tile(np.eye(d), (k, 1, 1))
    else:
        means = X[np.sort(rng.choice(n, size=k, replace=False))].copy()
        cov = np.tile(np.cov(X[: min(n, 200_000)].T), (k, 1, 1))
    return X, centres, (weights, means, cov)


def _nearest_centre_distances(centres: np.ndarray) -> np.ndarray:
    dist = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    return dist.min(axis=1)


def storage(cov: np.ndarray, kind: str) -> np.ndarray:
    """Full (K, D, D) covariances in the covariance type's own shape."""
    return cov if kind == "full" else np.stack([np.diag(c) for c in cov])


def precisions(cov: np.ndarray, kind: str) -> np.ndarray:
    return np.linalg.inv(cov) if kind == "full" else 1.0 / storage(cov, kind)


# ------------------------------------------------------------------ the libraries
def load_onedal(threads: int):
    """daal4py with its scikit-learn patching module stubbed out, or (None, reason)."""
    # daal4py/__init__ imports daal4py.sklearn, which needs private scikit-learn names that
    # scikit-learn 1.7+ removed; em_gmm never touches it, so a stub under that name suffices
    sys.modules.setdefault("daal4py.sklearn", types.ModuleType("daal4py.sklearn"))
    try:
        import daal4py
    except ImportError as exc:
        return None, f"oneDAL skipped: daal4py is not installed ({exc}); pip install daal4py"
    daal4py.daalinit(threads)
    from importlib.metadata import version

    return daal4py, f"oneDAL {version('daal4py')} (daal4py), {daal4py.num_threads()} threads"


class Runner:
    """Fits ``n_iter`` EM iterations with one library from given parameters; returns final params."""

    def __init__(self, lib: str, kind: str, dtype: str, onedal=None, accumulation: str = "float64"):
        self.lib, self.kind, self.dtype, self.onedal = lib, kind, dtype, onedal
        self.accumulation = accumulation  # fastem only: "float32" sums (float32 data)

    @property
    def label(self) -> str:
        name = {"fastem": "fastem", "onedal": "oneDAL", "sklearn": "sklearn"}[self.lib]
        if self.dtype == "float64":
            return name
        return f"{name} f32acc" if self.accumulation == "float32" else f"{name} f32"

    def fit(self, X: np.ndarray, init, n_iter: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        weights, means, cov = init
        if self.lib == "onedal":
            covs = [
                np.ascontiguousarray(c if self.kind == "full" else np.diag(c)[None, :], dtype=self.dtype)
                for c in cov
            ]
            algo = self.onedal.em_gmm(
                nComponents=len(weights), maxIterations=n_iter, accuracyThreshold=0.0,
                covarianceStorage="full" if self.kind == "full" else "diagonal",
                fptype="double" if self.dtype == "float64" else "float",
            )  # fmt: skip
            res = algo.compute(X, weights[None, :].astype(self.dtype), means.astype(self.dtype), covs)
            if int(np.ravel(res.nIterations)[0]) != n_iter:
                raise RuntimeError(f"oneDAL did {np.ravel(res.nIterations)[0]} iterations, asked {n_iter}")
            shape = cov[0].shape if self.kind == "full" else (-1,)
            out_cov = np.stack([np.asarray(c, dtype=np.float64).reshape(shape) for c in res.covariances])
            return np.ravel(res.weights).astype(np.float64), np.asarray(res.means, np.float64), out_cov
        if self.lib == "fastem":
            from fastem import GaussianMixture

            extra = {} if self.accumulation == "float64" else {"accumulation": self.accumulation}
        else:
            from sklearn.mixture import GaussianMixture

            extra = {"init_params": "random_from_data"}  # cheap; the given parameters replace its result
        gm = GaussianMixture(
            len(weights), covariance_type=self.kind, max_iter=n_iter, tol=0.0, reg_covar=0.0,
            weights_init=weights, means_init=means, precisions_init=precisions(cov, self.kind), **extra,
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(X)
        if gm.n_iter_ != n_iter:
            raise RuntimeError(f"{self.label} did {gm.n_iter_} iterations, asked {n_iter}")
        return gm.weights_, gm.means_, np.asarray(gm.covariances_, dtype=np.float64)


def max_rel_diff(a, b) -> float:
    """Largest difference over weights, means, covariances, each relative to the array's largest entry."""
    return max(float(np.max(np.abs(x - y)) / np.max(np.abs(y))) for x, y in zip(a, b, strict=True))


def dgemm_gflops(repeat: int = 5) -> float:
    rng = np.random.default_rng(1)
    a, b = rng.random((4000, 4000)), rng.random((4000, 4000))
    a @ b
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * 4000**3 / statistics.median(times) / 1e9


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# ------------------------------------------------------------------ per-iteration table
def runners_for(case, libs, onedal) -> list[Runner]:
    _, _, _, kind, with_f32 = case
    out = []
    for lib in libs:
        if lib == "onedal" and onedal is None:
            continue
        out.append(Runner(lib, kind, "float64", onedal))
        if with_f32 and lib != "sklearn":
            out.append(Runner(lib, kind, "float32", onedal))
        if with_f32 and lib == "fastem":
            out.append(Runner(lib, kind, "float32", onedal, accumulation="float32"))
    return out


def iteration_check(case, data_kind: str, runners: list[Runner], rows: int) -> dict:
    """Max relative difference to the NumPy reference after CHECK_ITERATIONS iterations, per runner."""
    sys.path.insert(0, str(ROOT / "tests"))
    import reference

    N, D, K, kind, _ = case
    X, centres, init = make_data(data_kind, min(N, rows), D, K)
    weights, means, cov = init
    if data_kind == "overlapping":
        # start near the true centres: from random rows, a component can keep fewer rows than
        # dimensions on a check sample this small (D=64, K=32) and its covariance turns singular
        means = centres + 0.25 * np.random.default_rng(1).normal(size=centres.shape)
        init = (weights, means, cov)
    ref_params = {}
    for n_iter in (CHECK_ITERATIONS - 1, CHECK_ITERATIONS):
        (w, m, c), _ = reference.run_em(X, weights, means, storage(cov, kind), kind, n_iter, 0.0)
        ref_params[n_iter] = (w, m, c)
    target = ref_params[CHECK_ITERATIONS]
    out = {f"reference {CHECK_ITERATIONS - 1} it": max_rel_diff(ref_params[CHECK_ITERATIONS - 1], target)}
    for r in runners:
        Xr = np.ascontiguousarray(X, dtype=r.dtype)
        w, m, c = r.fit(Xr, init, CHECK_ITERATIONS)
        out[r.label] = max_rel_diff((w, m, c), target)
    return out


def time_case(
    case, data_kind: str, runners: list[Runner], n_iter: int, repeat: int, scale: float, sklearn_repeat: int
):
    N, D, K, kind, _ = case
    N = int(N * scale)
    X64, centres, init = make_data(data_kind, N, D, K)
    data = {"float64": X64}
    if any(r.dtype == "float32" for r in runners):
        data["float32"] = X64.astype(np.float32)
    # warm-up (JIT compilation, first-touch costs) outside the timings, on enough rows that no
    # component collapses at D=64, K=32; scikit-learn compiles nothing
    n_warm = min(N, max(5000, 100 * K * D))
    for r in runners:
        if r.lib != "sklearn":
            r.fit(data[r.dtype][:n_warm], init, 2)
    per_iter: dict[str, list[float]] = {r.label: [] for r in runners}
    finals = {}
    for rep in range(repeat):
        for r in runners:
            if r.lib == "sklearn" and rep >= sklearn_repeat:
                continue
            t = time.perf_counter()
            r.fit(data[r.dtype], init, 1)
            t1 = time.perf_counter() - t
            t = time.perf_counter()
            finals[r.label] = r.fit(data[r.dtype], init, 1 + n_iter)
            tn = time.perf_counter() - t
            per_iter[r.label].append((tn - t1) / n_iter)
    medians = {label: statistics.median(v) for label, v in per_iter.items()}
    agreement = {label: max_rel_diff(p, finals[runners[0].label]) for label, p in finals.items()}
    nearest = _nearest_centre_distances(centres)
    return medians, agreement, (float(nearest.min()), float(np.median(nearest)), float(nearest.max()))


def flops_per_iteration(N: int, D: int, K: int) -> float:
    return 2.0 * D * (D + 1) * N * K


def per_iteration_tables(args, libs, onedal) -> list[dict]:
    scale = 0.1 if args.quick else 1.0
    repeat = 1 if args.quick else args.repeat
    dgemm = [dgemm_gflops()]
    print(f"DGEMM (numpy 4000x4000 @, {args.threads} threads): {dgemm[0]:.1f} GFLOP/s", end="  ")
    print(f"[load {load_average()}]")
    rows = []
    kinds = DATA_KINDS if args.data == "both" else (args.data,)
    for data_kind in kinds:
        print(f"\n== {data_kind} data ==", flush=True)
        for case in CASES:
            if args.case and not any(sel in case_label(case) for sel in args.case):
                continue
            runners = runners_for(case, libs, onedal)
            check = {} if args.no_check else iteration_check(case, data_kind, runners, args.check_rows)
            load_before = load_average()
            medians, agreement, nearest = time_case(
                case, data_kind, runners, args.iters, repeat, scale, min(repeat, args.sklearn_repeat)
            )
            row = {
                "data": data_kind, "case": case_label(case, scale), "N": int(case[0] * scale), "D": case[1],
                "K": case[2], "covariance_type": case[3], "seconds_per_iteration": medians,
                "check_vs_reference": check, "final_params_vs_first_library": agreement,
                "nearest_centre_sd": nearest, "load": [load_before, load_average()],
            }  # fmt: skip
            rows.append(row)
            print_row(row, check)
    dgemm.append(dgemm_gflops())
    rate = statistics.median(dgemm)
    print(f"\nDGEMM after the cases: {dgemm[1]:.1f} GFLOP/s; %DGEMM below uses {rate:.1f}", end="  ")
    print(f"[load {load_average()}]")
    print_summary(rows, rate)
    if args.markdown:
        loads = sorted({load for row in rows for load in row["load"]})
        print_markdown(rows, rate, f"{loads[0]} ... {loads[-1]}" if loads else load_average())
    for row in rows:
        row["dgemm_gflops"] = rate
    return rows


def case_label(case, scale: float = 1.0) -> str:
    N, D, K, kind, _ = case
    return f"{kind} {int(N * scale):.0e}x{D} K={K}".replace("e+0", "e")


def print_row(row: dict, check: dict) -> None:
    times = "  ".join(f"{k} {v:.4f}" for k, v in row["seconds_per_iteration"].items())
    lo, med, hi = row["nearest_centre_sd"]
    print(f"{row['case']:<22} s/it: {times}   [load {row['load'][0]} -> {row['load'][1]}]", flush=True)
    if check:
        print("    iterations: max rel diff to NumPy reference EM after "
              f"{CHECK_ITERATIONS} it: " + "  ".join(f"{k} {v:.1e}" for k, v in check.items()))  # fmt: skip
    print("    timed fits, max rel diff of final params to the first library: "
          + "  ".join(f"{k} {v:.1e}" for k, v in row["final_params_vs_first_library"].items())
          + f";  nearest-centre distances {lo:.1f}/{med:.1f}/{hi:.1f} sd (min/median/max)")  # fmt: skip


def print_summary(rows: list[dict], dgemm: float) -> None:
    print(
        f"\n{'data':<12}{'case':<20}{'fastem':>9}{'oneDAL':>9}{'sklearn':>9}{'vs oneDAL':>10}"
        f"{'vs sklearn':>11}{'fastem %DGEMM':>14}{'oneDAL %DGEMM':>14}{'f32/f64 fastem':>15}{'f32acc':>7}"
        f"{'oneDAL':>7}"
    )
    for row in rows:
        s = row["seconds_per_iteration"]
        fe, od, sk = (s.get(k, float("nan")) for k in ("fastem", "oneDAL", "sklearn"))
        full = row["covariance_type"] == "full"
        gflop = flops_per_iteration(row["N"], row["D"], row["K"]) / 1e9 if full else float("nan")
        pct = [f"{100 * gflop / t / dgemm:.0f}%" if full and t == t else "-" for t in (fe, od)]
        ratios = [
            f"{s[b] / s[a]:.2f}x" if a in s and b in s else "-"
            for a, b in (("fastem", "oneDAL"), ("fastem", "sklearn"), ("fastem f32", "fastem"),
                         ("fastem f32acc", "fastem"), ("oneDAL f32", "oneDAL"))
        ]  # fmt: skip
        print(
            f"{row['data']:<12}{row['case']:<20}{fe:>9.3f}{od:>9.3f}{sk:>9.3f}{ratios[0]:>10}{ratios[1]:>11}"
            f"{pct[0]:>14}{pct[1]:>14}{ratios[2]:>15}{ratios[3]:>7}{ratios[4]:>7}"
        )
    print(
        "seconds per iteration (median); 'vs' = their time / fastem's; f32/f64 = float64 time / float32 "
        "time (throughput ratio; f32acc: fastem with accumulation='float32'); %DGEMM counts 2 D(D+1) "
        "flops per row and component."
    )


def _ratio(s: dict, a: str, b: str) -> str:
    if a not in s or b not in s:
        return "–"
    return f"{s[b] / s[a]:.2f}x" if s[b] < 10 * s[a] else f"{s[b] / s[a]:.0f}x"


def print_markdown(rows: list[dict], dgemm: float, load: str) -> None:
    """The README's speed table for these rows."""
    print(
        "\n| data | case | fastem | oneDAL | scikit-learn | oneDAL / fastem | sklearn / fastem "
        "| fastem % DGEMM | oneDAL % DGEMM | float32 speed-up fastem (oneDAL) "
        "| fastem float32 sums speed-up |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        s = row["seconds_per_iteration"]
        gflop = flops_per_iteration(row["N"], row["D"], row["K"]) / 1e9
        digits = {"fastem": 3, "oneDAL": 3, "sklearn": 1}
        cells = [f"{s[k]:.{d}f}" if k in s else "–" for k, d in digits.items()]
        cells += [_ratio(s, "fastem", "oneDAL"), _ratio(s, "fastem", "sklearn")]
        full = row["covariance_type"] == "full"
        cells += [f"{100 * gflop / s[k] / dgemm:.0f}%" if full and k in s else "–" for k in digits][:2]
        f32 = f"{_ratio(s, 'fastem f32', 'fastem')} ({_ratio(s, 'oneDAL f32', 'oneDAL')})"
        cells.append(f32 if "fastem f32" in s else "–")
        cells.append(_ratio(s, "fastem f32acc", "fastem"))
        print(f"| {row['data']} | {row['case']} | " + " | ".join(cells) + " |")
    print(f"\nDGEMM {dgemm:.1f} GFLOP/s in the same run; load average {load} on {os.cpu_count()} cores.")


# ------------------------------------------------------------------ time to answer
def mean_log_likelihood(X: np.ndarray, weights, means, cov, kind: str) -> float:
    """Mean log-likelihood of X under (weights, means, covariances), in plain NumPy, in chunks."""
    from scipy.special import logsumexp

    K, D = means.shape
    full = cov if kind == "full" else np.stack([np.diag(c) for c in cov])
    chol = np.linalg.cholesky(full)
    log_det = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    total = 0.0
    for start in range(0, X.shape[0], 100_000):
        xs = np.asarray(X[start : start + 100_000], dtype=np.float64)
        logp = np.empty((xs.shape[0], K))
        for k in range(K):
            z = np.linalg.solve(chol[k], (xs - means[k]).T)
            logp[:, k] = np.log(weights[k]) - 0.5 * (D * np.log(2 * np.pi) + log_det[k] + (z * z).sum(axis=0))
        total += logsumexp(logp, axis=1).sum()
    return total / X.shape[0]


def time_to_answer(args, libs, onedal) -> list[dict]:
    """Default fits (initialisation included) on 1e6 x 16, K=16 overlapping data."""
    import fastem.families.gaussian as gaussian
    from fastem import GaussianMixture as FastGM

    n = 100_000 if args.quick else 1_000_000
    X, centres, _ = make_data("overlapping", n, 16, 16)
    nearest = np.median(_nearest_centre_distances(centres))
    print(f"time to answer: fit from defaults, {n:.0e} x 16, K=16, full, overlapping data", end=" ")
    print(f"(nearest centres {nearest:.1f} sd apart, median)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        FastGM(2, max_iter=2).fit(X[:3000])  # JIT warm-up
    inner = gaussian.initial_params
    init_seconds: list[float] = []

    def timed_initial_params(*a, **kw):
        t = time.perf_counter()
        out = inner(*a, **kw)
        init_seconds.append(time.perf_counter() - t)
        return out

    results = []

    def record(label, seconds, n_iter, params, init=None, note=""):
        ll = mean_log_likelihood(X, *params, "full")
        results.append({"library": label, "seconds": seconds, "n_iter": n_iter, "mean_log_likelihood": ll,
                        "init_seconds": init, "load": load_average(), "note": note})  # fmt: skip
        share = f"  init {init:.2f}s = {100 * init / seconds:.0f}%" if init is not None else ""
        print(f"  {label:<34}{seconds:>8.2f}s {n_iter:>4} it  mean log-lik {ll:.5f}{share}  {note}"
              f"[load {load_average()}]", flush=True)  # fmt: skip

    for seed in range(args.answer_repeat):
        if "fastem" in libs:
            gaussian.initial_params = timed_initial_params
            try:
                init_seconds.clear()
                t = time.perf_counter()
                gm = FastGM(16, random_state=seed).fit(X)
                total = time.perf_counter() - t
            finally:
                gaussian.initial_params = inner
            record(f"fastem GaussianMixture(16) seed {seed}", total, gm.n_iter_,
                   (gm.weights_, gm.means_, gm.covariances_), sum(init_seconds))  # fmt: skip
        if onedal is not None and seed < args.peer_answer_repeat:
            t = time.perf_counter()
            init = onedal.em_gmm_init(nComponents=16, engine=onedal.engines_mt19937(seed=seed)).compute(X)
            t_init = time.perf_counter() - t
            res = onedal.em_gmm(nComponents=16).compute(X, init.weights, init.means, init.covariances)
            total = time.perf_counter() - t
            cov = np.stack([np.asarray(c).reshape(16, 16) for c in res.covariances])
            params = (np.ravel(res.weights), np.asarray(res.means), cov)
            n_iter = int(np.ravel(res.nIterations)[0])
            record(f"oneDAL em_gmm_init + em_gmm seed {seed}", total, n_iter, params, t_init, "(defaults) ")
        if "sklearn" in libs and seed < args.peer_answer_repeat:
            from sklearn.mixture import GaussianMixture as SkGM

            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gm = SkGM(16, random_state=seed).fit(X)
            total = time.perf_counter() - t
            record(f"sklearn GaussianMixture(16) seed {seed}", total, gm.n_iter_,
                   (gm.weights_, gm.means_, gm.covariances_))  # fmt: skip
    return results


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="divide N by 10 and run one repeat")
    parser.add_argument("--threads", type=int, default=2, help="threads for every library (default 2)")
    parser.add_argument("--iters", type=int, default=2, help="extra iterations timed per run (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats per library (median; default 3)")
    parser.add_argument("--sklearn-repeat", type=int, default=1, help="scikit-learn's repeats (default 1)")
    parser.add_argument("--data", choices=("both", *DATA_KINDS), default="both")
    parser.add_argument("--case", action="append", help="only cases whose label has this, e.g. 'full 1e6x16'")
    parser.add_argument("--libs", default=",".join(LIBRARIES), help="subset of fastem,onedal,sklearn")
    parser.add_argument("--no-sklearn", action="store_true", help="leave scikit-learn out (it is slow)")
    parser.add_argument("--no-check", action="store_true", help="skip the iteration check against NumPy")
    parser.add_argument("--check-rows", type=int, default=20_000, help="rows for the iteration check")
    parser.add_argument("--answer", action="store_true", help="time to answer (default fits) instead")
    parser.add_argument("--answer-repeat", type=int, default=3, help="default fits per library (--answer)")
    parser.add_argument(
        "--peer-answer-repeat", type=int, default=1, help="fits of oneDAL and sklearn (slow; default 1)"
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--markdown", action="store_true", help="also print the README's table")
    args = parser.parse_args(argv)
    libs = [lib for lib in args.libs.split(",") if lib and not (args.no_sklearn and lib == "sklearn")]
    unknown = set(libs) - set(LIBRARIES)
    if unknown:
        parser.error(f"--libs: unknown {sorted(unknown)}; choose from {','.join(LIBRARIES)}")

    import numba
    from threadpoolctl import threadpool_limits

    from fastem import GaussianMixture

    # the numba threading layer is chosen on the first parallel launch: make it fastem's usual one
    # before daal4py loads its own TBB
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        GaussianMixture(2, max_iter=2, tol=0.0).fit(np.random.default_rng(0).normal(size=(3000, 2)))
    onedal, note = load_onedal(args.threads) if "onedal" in libs else (None, "oneDAL not requested")
    import sklearn

    from fastem._kernels._vector_width import wide_vectors_enabled

    print(f"threads={args.threads}  numba {numba.__version__} ({numba.threading_layer()} layer, "
          f"{numba.get_num_threads()} threads, {'512' if wide_vectors_enabled() else '<=256'}-bit kernels)  "
          f"numpy {np.__version__}  scikit-learn {sklearn.__version__}  {note}")  # fmt: skip
    print(f"load average at start: {load_average()} on {os.cpu_count()} cores")
    with threadpool_limits(limits=args.threads):
        rows = time_to_answer(args, libs, onedal) if args.answer else per_iteration_tables(args, libs, onedal)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
