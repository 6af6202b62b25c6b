"""Streaming benchmarks: peak RSS, streamed vs in-memory throughput, online vs batch EM.

Usage::

    python scripts/bench_streaming.py                # everything (writes a 4 GB file under /tmp)
    python scripts/bench_streaming.py rss --gb 4     # peak RSS of fits on a .npy (needs /usr/bin/time)
    python scripts/bench_streaming.py throughput --gb 1
    python scripts/bench_streaming.py online --n 10000000

Numbers are machine-dependent (about +-20% between runs on a shared box).
Generated files are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

D, K = 8, 8


def _mixture(seed: int = 0):
    """A known mixture in D=8 with K=8 components, moderately overlapping."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(K, D))
    A = rng.normal(size=(K, D, D)) * 0.4 + np.eye(D)
    weights = rng.dirichlet(np.full(K, 5.0))
    return weights, means, A


def make_npy(path: Path, n_rows: int, dtype=np.float32, seed: int = 0, block: int = 2**20) -> None:
    """Write n_rows draws of the known mixture to ``path`` chunk by chunk (bounded memory)."""
    from fastem._stream import NpyWriter

    weights, means, A = _mixture()
    rng = np.random.default_rng(seed + 1)
    with NpyWriter(path, dtype, (D,)) as w:
        for start in range(0, n_rows, block):
            m = min(block, n_rows - start)
            z = rng.choice(K, size=m, p=weights)
            x = means[z] + np.einsum("nij,nj->ni", A[z], rng.standard_normal((m, D)))
            w.write(x.astype(dtype))


def _init_params(X_sample, cov):
    from fastem import GaussianMixture

    gm = GaussianMixture(K, covariance_type=cov, random_state=0, max_iter=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X_sample)
    return dict(weights_init=gm.weights_, means_init=gm.means_, precisions_init=gm.precisions_)


# ---------------------------------------------------------------- peak RSS
def child_fit(path: str, cov: str, max_iter: int) -> None:
    """Run inside /usr/bin/time: a streamed fit with default chunk_rows."""
    from fastem import GaussianMixture

    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(K, covariance_type=cov, random_state=0, tol=0.0, max_iter=max_iter).fit(path)
    print(f"fit {cov}: {gm.n_iter_} iterations + scan in {time.perf_counter() - tic:.1f} s, "
          f"lower bound {gm.lower_bound_:.6f}")  # fmt: skip


def bench_rss(path: Path, max_iter: int) -> dict:
    if not Path("/usr/bin/time").exists():
        raise SystemExit("/usr/bin/time is missing: apt-get install -y time")
    out = {}
    for cov in ("diag", "full"):
        cmd = ["/usr/bin/time", "-v", sys.executable, __file__, "_child_fit", str(path), cov, str(max_iter)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(res.stderr)
        kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr).group(1))
        out[cov] = kb / 1024
        print(res.stdout.strip())
        print(f"peak RSS, {cov}: {kb / 1024:.0f} MB for a {path.stat().st_size / 2**30:.2f} GiB file")
    return out


# ---------------------------------------------------------------- throughput
def _drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def bench_throughput(path: Path, repeats: int = 3) -> dict:
    """Seconds per E+M-statistics pass: in memory vs streamed from the page cache (and cold)."""
    from fastem._executor import ArrayExecutor
    from fastem._stream import StreamExecutor
    from fastem._threads import thread_limit
    from fastem.sources import NpySource

    source = NpySource(path).open()
    X = np.load(path)
    n = X.shape[0]
    out = {}
    for cov in ("diag", "full"):
        from fastem import GaussianMixture

        init = _init_params(X[:100_000], cov)
        gm = GaussianMixture(K, covariance_type=cov, **init)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.set_params(max_iter=0).fit(X[:100_000])
        params = gm._params()
        mem, stream = ArrayExecutor(X), StreamExecutor(source, None, n)
        with thread_limit(None):
            mem.accumulate(params)  # warm-up (JIT load)
            t_mem = min(_timed(mem.accumulate, params) for _ in range(repeats))
            stream.accumulate(params)  # warm the page cache
            t_stream = min(_timed(stream.accumulate, params) for _ in range(repeats))
            cold = None
            if _drop_caches():
                cold = _timed(stream.accumulate, params)
        gb = path.stat().st_size / 1e9
        out[cov] = dict(mem=t_mem, stream=t_stream, cold=cold)
        print(f"{cov}: in memory {t_mem:.2f} s/pass ({n / t_mem / 1e6:.1f} M rows/s); streamed from page "
              f"cache {t_stream:.2f} s/pass ({n / t_stream / 1e6:.1f} M rows/s) = "
              f"{100 * t_mem / t_stream:.0f}% of in-memory throughput")  # fmt: skip
        if cold is None:
            print("  cold cache: not measured (writing /proc/sys/vm/drop_caches is not permitted here)")
        else:
            print(f"  cold cache: {cold:.2f} s/pass ({gb / cold:.2f} GB/s, {n / cold / 1e6:.1f} M rows/s)")
    del X
    return out


def _timed(fn, *args) -> float:
    tic = time.perf_counter()
    fn(*args)
    return time.perf_counter() - tic


# ---------------------------------------------------------------- online vs batch
def bench_online(n_rows: int, cov: str = "full") -> dict:
    """One online pass vs batch EM to convergence, from the same initial parameters."""
    from fastem import GaussianMixture

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        path = Path(tmp) / "online.npy"
        make_npy(path, n_rows, dtype=np.float64, seed=7)
        X = np.load(path)
    init = _init_params(X[np.random.default_rng(0).choice(n_rows, 100_000, replace=False)], cov)
    common = dict(covariance_type=cov, random_state=0, **init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        GaussianMixture(K, max_iter=1, **common).fit(X[:50_000])  # JIT warm-up
        tic = time.perf_counter()
        batch = GaussianMixture(K, tol=1e-6, max_iter=500, **common).fit(X)
        t_batch = time.perf_counter() - tic
        tic = time.perf_counter()
        online = GaussianMixture(K, **common).fit(X, algorithm="online")
        t_online = time.perf_counter() - tic
    per_iter = t_batch / batch.n_iter_
    ll_batch = batch.score(X)
    ll_online = online.score(X)
    rel = abs(ll_online - ll_batch) / abs(ll_batch)
    print(f"batch EM ({cov}, {n_rows:.0e} x {D}, K={K}): {batch.n_iter_} iterations, {per_iter:.2f} s each, "
          f"mean log-likelihood {ll_batch:.6f}")  # fmt: skip
    print(f"one online pass (batch_size={online.batch_size}, {online.n_steps_} steps): {t_online:.2f} s "
          f"= {t_online / per_iter:.2f} batch iterations, mean log-likelihood {ll_online:.6f} "
          f"({100 * rel:.3f}% from batch)")  # fmt: skip
    return dict(per_iter=per_iter, t_online=t_online, rel=rel)


def main(argv=None) -> None:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "_child_fit":
        child_fit(argv[1], argv[2], int(argv[3]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", nargs="?", default="all", choices=["all", "rss", "throughput", "online"])
    parser.add_argument("--gb", type=float, default=4.0, help="size of the float32 file for rss (GB)")
    parser.add_argument("--throughput-gb", type=float, default=1.0, help="file size for throughput (GB)")
    parser.add_argument("--iters", type=int, default=2, help="EM iterations in the rss fits")
    parser.add_argument("--n", type=int, default=10_000_000, help="rows for online vs batch")
    args = parser.parse_args(argv)
    if args.what in ("all", "rss"):
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            path = Path(tmp) / "big.npy"
            rows = int(args.gb * 1e9) // (D * 4)
            tic = time.perf_counter()
            make_npy(path, rows)
            print(f"wrote {rows} x {D} float32 ({path.stat().st_size / 1e9:.2f} GB) in "
                  f"{time.perf_counter() - tic:.0f} s")  # fmt: skip
            bench_rss(path, args.iters)
    if args.what in ("all", "throughput"):
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            path = Path(tmp) / "mid.npy"
            make_npy(path, int(args.throughput_gb * 1e9) // (D * 4))
            bench_throughput(path)
    if args.what in ("all", "online"):
        bench_online(args.n)


if __name__ == "__main__":
    main()
