"""Per-iteration time of fastem on a local Dask cluster vs the in-memory fit, side by side, and where it goes.

    python scripts/bench_dask.py [--n 4000000] [--d 8] [--k 8] [--chunk-rows 500000] [--repeat 10]
                                 [--configs 2x1,1x2]

Case of the issue: N=4e6, D=8, K=8, diag, float64. The data are written to a
temporary Zarr store and read *by the workers*. For each cluster
configuration (``WxT``: W worker processes with T threads each; the issue's
target is 2x1, two local workers) the script alternates one in-memory
iteration (2 numba threads) with one Dask iteration of each kind and prints
the medians and their ratio:

* rows held in worker memory (the default whenever they fit: fastem reads the
  lazy Zarr array once, spread over the workers, and keeps it for the fit),
* re-reading Zarr every pass (``keep_in_memory=False``; the path for data that
  do not fit in the cluster's memory).

One iteration is one ``executor.accumulate(params)`` (E-step + statistics; the
M-step on the client takes microseconds). The breakdown uses the scheduler's
task stream. Quote ``uptime`` with the figures: the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def make_data(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    labels = rng.integers(0, k, n)
    X = centers[labels]
    X += rng.normal(size=(n, d)) * rng.uniform(0.5, 1.5, size=(k, d))[labels]
    return X


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def interleaved(runs: dict, repeat: int) -> dict[str, float]:
    """Median seconds of each callable in ``runs``, calling them in turn ``repeat`` times."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, fn in runs.items():
            tic = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - tic)
    return {name: float(np.median(values)) for name, values in times.items()}


def compute_seconds(records, name: str) -> dict[str, float]:
    """Seconds each worker spent computing tasks whose key contains ``name``."""
    per_worker: dict[str, float] = {}
    for rec in records:
        if name in str(rec["key"]):
            for ss in rec["startstops"]:
                if ss["action"] == "compute":
                    per_worker[rec["worker"]] = per_worker.get(rec["worker"], 0.0) + ss["stop"] - ss["start"]
    return per_worker


def run_config(n_workers: int, threads: int, zarr_path: str, mem_iteration, params, family, args) -> None:
    import dask.array as da
    from distributed import Client, LocalCluster, get_task_stream

    from fastem.dask import DaskExecutor

    with (
        LocalCluster(
            n_workers=n_workers, threads_per_worker=threads, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(n_workers)
        Xz = da.from_zarr(zarr_path)
        tic = time.perf_counter()
        kept = DaskExecutor(Xz, None, client, family)  # reads Zarr once, spread over the workers
        t_place = time.perf_counter() - tic
        assert kept.row_futures is not None, "the rows should fit in the cluster's memory"
        reread = DaskExecutor(Xz, None, client, family, keep_in_memory=False)
        tic = time.perf_counter()
        kept.accumulate(params)
        t_first = time.perf_counter() - tic
        reread.accumulate(params)
        medians = interleaved(
            {
                "mem": mem_iteration,
                "kept": lambda: kept.accumulate(params),
                "reread": lambda: reread.accumulate(params),
            },
            args.repeat,
        )
        with get_task_stream(client) as stream:
            tic = time.perf_counter()
            for _ in range(args.repeat):
                kept.accumulate(params)
            mean_pass = (time.perf_counter() - tic) / args.repeat
        kernel = max(compute_seconds(stream.data, "_worker_stats").values()) / args.repeat
        rows = {w: int(sum(kept.X.chunks[0][i] for i in chunks)) for w, chunks in kept.groups.items()}
        stats = kept.accumulate(params)

    t_mem = medians["mem"]
    name = f"{n_workers} worker{'s' if n_workers > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}"
    print(f"\n{name} ({load()}):")
    print(f"  in-memory, 2 numba threads:       {t_mem * 1e3:8.1f} ms/iteration")
    print(f"  dask, rows in worker memory:      {medians['kept'] * 1e3:8.1f} ms/iteration  "
          f"({medians['kept'] / t_mem:.2f}x in-memory)")  # fmt: skip
    print(f"  dask, re-reading Zarr every pass: {medians['reread'] * 1e3:8.1f} ms/iteration  "
          f"({medians['reread'] / t_mem:.2f}x)")  # fmt: skip
    print(f"  rows per worker: {sorted(rows.values())}; one task per worker per pass, "
          f"{kept.worker_threads[next(iter(kept.groups))]} numba thread(s) each")  # fmt: skip
    print(f"  of a pass (mean of {args.repeat} more): kernel on the busiest worker {kernel * 1e3:.1f} ms, "
          f"the rest (scheduling, transfers, client merge) {(mean_pass - kernel) * 1e3:.1f} ms")  # fmt: skip
    print(f"  reading Zarr into worker memory once: {t_place * 1e3:.0f} ms; first pass {t_first * 1e3:.0f} "
          "ms "
          f"(workers load the kernels); statistics {len(pickle.dumps(stats))} B per chunk")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4_000_000)
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--chunk-rows", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--configs", default="2x1,1x2", help="cluster shapes WxT, comma-separated")
    args = parser.parse_args()

    import dask.array as da

    from fastem import GaussianMixture
    from fastem._executor import ArrayExecutor
    from fastem._threads import thread_limit

    X = make_data(args.n, args.d, args.k)
    print(f"N={args.n:.0e} D={args.d} K={args.k} diag float64 ({X.nbytes / 2**20:.0f} MiB), "
          f"{-(-args.n // args.chunk_rows)} chunks of {args.chunk_rows} rows; medians of {args.repeat} "
          f"interleaved iterations; {load()}")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2 iterations do not converge
        gm = GaussianMixture(args.k, covariance_type="diag", random_state=0, max_iter=2, tol=0, n_jobs=2)
        gm.fit(X[:200_000])  # compile / load the kernels; parameters to iterate from
    params, family = gm._params(), gm._family()
    mem = ArrayExecutor(X, None, family)

    def mem_iteration():
        with thread_limit(2):
            mem.accumulate(params)

    mem_iteration()
    tmp = Path(tempfile.mkdtemp(prefix="fastem-bench-"))
    try:
        da.from_array(X, chunks=(args.chunk_rows, args.d)).to_zarr(str(tmp / "x.zarr"))
        for config in args.configs.split(","):
            n_workers, threads = (int(v) for v in config.lower().split("x"))
            run_config(n_workers, threads, str(tmp / "x.zarr"), mem_iteration, params, family, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
