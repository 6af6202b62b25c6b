"""Seconds per EM iteration with missing entries (NaN) vs complete data, side by side in one process.

Usage::

    python scripts/bench_missing.py                       # N=1e6, D=16, K=16, full, 2 threads
    python scripts/bench_missing.py --n 200000 --cov diag --repeats 5
    python scripts/bench_missing.py --memory              # also peak RSS per variant (child processes)
    python scripts/bench_missing.py --baseline /tmp/old_gaussian_missing.py   # before/after, one process

Variants on the same overlapping data and the same parameters (an iteration is
one E-step + statistics pass through ``GaussianFamily.accumulate`` and the
M-step, as the driver runs it):

* complete: no NaN (the complete-data kernel);
* mcar10: each entry missing with probability 0.10, independently (every row
  keeps an observed entry): about 80% of rows incomplete, hundreds of patterns;
* patterns3: every row incomplete, one of 3 patterns (missing {0}, {1, 2}, {3, 4}:
  10.4% of the entries).

Timings are interleaved (complete, mcar10, patterns3, complete, ...) and the
medians quoted with their ratio to complete; ``--baseline FILE`` (a copy of
``fastem/_kernels/gaussian_missing.py`` from another revision) adds its
mcar10 and patterns3 rows, interleaved with the others, for a before/after
comparison in one process; the machine load (``os.getloadavg``)
is printed, since the hosts are shared. Memory: ``tracemalloc`` peak of the
Python/NumPy allocations during one iteration (the numba kernels' per-block
partial statistics are not seen by it) and, with ``--memory``, the peak RSS of
a child process during three iterations (peak reset after building the data),
beside its RSS before them and the size of the data.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

VARIANTS = ("complete", "mcar10", "patterns3")
THREE_PATTERNS = ([0], [1, 2], [3, 4])


def make_data(n: int, d: int, k: int, variant: str, seed: int = 0):
    """Overlapping unit-variance clusters (nearest centres 4 sd apart), with the variant's holes."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    dist = np.sqrt(((centers[:, None] - centers[None]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    centers *= 4.0 / np.median(dist.min(axis=1))
    X = centers[rng.integers(0, k, size=n)] + rng.normal(size=(n, d))
    rows = np.sort(rng.choice(n, size=k, replace=False))
    start = (X[rows].copy(), np.cov(X[: min(n, 100_000)].T))
    hole_rng = np.random.default_rng(seed + 1)
    if variant == "mcar10":
        for s in range(0, n, 1 << 18):  # in slices: no N x D boolean temporaries beyond a slice
            part = X[s : s + (1 << 18)]
            hole = hole_rng.random(part.shape) < 0.10
            full = hole.all(axis=1)
            hole[full, hole_rng.integers(0, d, size=int(full.sum()))] = False
            part[hole] = np.nan
    elif variant == "patterns3":
        which = hole_rng.integers(0, 3, size=n)
        for p, cols in enumerate(THREE_PATTERNS):
            for c in cols:
                X[which == p, c] = np.nan
    return np.ascontiguousarray(X), start


def params_for(start, k: int, cov: str):
    from fastem.families.gaussian import GaussianParams

    means, data_cov = start
    covariances = {
        "full": np.tile(data_cov, (k, 1, 1)),
        "tied": data_cov,
        "diag": np.tile(np.diag(data_cov), (k, 1)),
        "spherical": np.full(k, np.diag(data_cov).mean()),
    }[cov]
    return GaussianParams.from_covariances(cov, np.full(k, 1.0 / k), means, covariances)


def load_baseline(path: str):
    """``_gaussian_missing_pass`` of another copy of the kernel module (relative imports made absolute)."""
    with open(path) as f:
        source = re.sub(r"^from \.(\w+) import", r"from fastem._kernels.\1 import", f.read(), flags=re.M)
    folder = tempfile.mkdtemp(prefix="fastem_baseline_")  # a real file: numba caches by file
    with open(os.path.join(folder, "baseline_gaussian_missing.py"), "w") as f:
        f.write(source)
    sys.path.insert(0, folder)
    try:
        return importlib.import_module("baseline_gaussian_missing")._gaussian_missing_pass
    finally:
        sys.path.remove(folder)


def one_iteration(family, X, params):
    stats = family.zero_stats(params)
    family.accumulate(X, None, params, stats)
    new, _ = family.m_step(stats)
    return new, stats.mean_log_likelihood


def child(args) -> None:
    """Build one variant's data, run three iterations, print peak RSS (MB) as JSON."""
    from fastem.families.gaussian import GaussianFamily

    X, start = make_data(args.n, args.d, args.k, args.variant)
    family = GaussianFamily(args.cov, 1e-6, missing="marginalize")
    params = params_for(start, args.k, args.cov)
    one_iteration(family, X[:10_000], params)  # compile or load the kernels
    before = _rss_mb("VmRSS")
    try:  # reset the peak RSS (Linux >= 4.0), so that data generation does not count
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    for _ in range(3):
        params, _ = one_iteration(family, X, params)
    peak = _rss_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": peak, "before_mb": before, "data_mb": X.nbytes / 2**20}))


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--cov", default="full", choices=["full", "tied", "diag", "spherical"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory", action="store_true", help="peak RSS per variant in child processes")
    ap.add_argument("--baseline", help="another copy of gaussian_missing.py to time beside this one")
    ap.add_argument("--child", dest="variant", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    if args.variant:
        child(args)
        return
    import fastem.families.gaussian as gaussian_family
    from fastem.families.gaussian import GaussianFamily

    family = GaussianFamily(args.cov, 1e-6, missing="marginalize")
    data = {v: make_data(args.n, args.d, args.k, v) for v in VARIANTS}
    params = params_for(data["complete"][1], args.k, args.cov)  # the same start for every variant
    current = gaussian_family._gaussian_missing_pass
    kernels = {v: current for v in VARIANTS}
    if args.baseline:
        baseline = load_baseline(args.baseline)
        for v in VARIANTS[1:]:
            kernels[f"{v} (baseline)"] = baseline
    runs = {v: v.split()[0] for v in kernels}  # row label -> data variant

    def run(label):
        gaussian_family._gaussian_missing_pass = kernels[label]
        try:
            return one_iteration(family, data[runs[label]][0], params)
        finally:
            gaussian_family._gaussian_missing_pass = current

    for label in runs:  # compile and warm up
        run(label)
    times = {label: [] for label in runs}
    load = [os.getloadavg()[0]]
    for _ in range(args.repeats):
        for label in runs:
            tic = time.perf_counter()
            run(label)
            times[label].append(time.perf_counter() - tic)
        load.append(os.getloadavg()[0])
    traced = {}
    for label in runs:
        tracemalloc.start()
        run(label)
        traced[label] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    rss = {}
    if args.memory:
        for v in VARIANTS:
            cmd = [sys.executable, __file__, "--child", v, "--n", str(args.n), "--d", str(args.d),
                   "--k", str(args.k), "--cov", args.cov, "--threads", str(args.threads)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rss[v] = json.loads(out.strip().splitlines()[-1])
    base = np.median(times["complete"])
    print(f"N={args.n} D={args.d} K={args.k} {args.cov}, {numba.get_num_threads()} threads, "
          f"{args.repeats} interleaved repeats; load average (1 min) {min(load):.1f}-{max(load):.1f} "
          f"on {os.cpu_count()} cores")  # fmt: skip
    incomplete = {v: float(np.isnan(data[v][0]).any(axis=1).mean()) for v in VARIANTS}
    header = "| variant | rows with NaN | s/iteration (median) | min | ratio to complete | numpy peak MB |"
    if rss:
        header += " peak RSS MB during iterations (before; data) |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for label, v in runs.items():
        med = np.median(times[label])
        line = (f"| {label} | {100 * incomplete[v]:.0f}% | {med:.3f} | {min(times[label]):.3f} | "
                f"{med / base:.2f}x | {traced[label]:.1f} |")  # fmt: skip
        if rss:
            line += (f" {rss[v]['peak_rss_mb']:.0f} ({rss[v]['before_mb']:.0f}; {rss[v]['data_mb']:.0f}) |"
                     if label == v else " |")  # fmt: skip
        print(line)


if __name__ == "__main__":
    main()
