"""Per-iteration time of fastem on 2 local Dask workers vs the in-memory fit, and where the rest goes.

    python scripts/bench_dask.py [--n 4000000] [--d 8] [--k 8] [--chunk-rows 500000] [--iters 8]

Case of the issue: N=4e6, D=8, K=8, diag, float64. The data are written to a
temporary Zarr store and read *by the workers*; the figures are for the array
persisted in worker memory (what a user does when the data fit in the
cluster's RAM) and for re-reading Zarr on every iteration. One iteration is one
``executor.accumulate(params)`` (E-step + statistics; the M-step on the client
takes microseconds). The overhead breakdown uses the scheduler's task stream.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def make_data(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    labels = rng.integers(0, k, n)
    X = centers[labels]
    X += rng.normal(size=(n, d)) * rng.uniform(0.5, 1.5, size=(k, d))[labels]
    return X


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        out.append(time.perf_counter() - tic)
    return out


def em_times(executor, params, iters: int) -> list[float]:
    """Wall time of each of ``iters`` real EM iterations (new parameters every time, as in a fit)."""
    out = []
    for _ in range(iters):
        tic = time.perf_counter()
        stats = executor.accumulate(params)
        params, _ = stats.to_params(1e-6)
        out.append(time.perf_counter() - tic)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4_000_000)
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--chunk-rows", type=int, default=500_000)
    parser.add_argument("--iters", type=int, default=8)
    args = parser.parse_args()

    import dask.array as da
    from distributed import Client, LocalCluster, get_task_stream, wait

    from fastem import GaussianMixture
    from fastem._executor import ArrayExecutor
    from fastem.dask import DaskExecutor

    X = make_data(args.n, args.d, args.k)
    print(f"N={args.n:.0e} D={args.d} K={args.k} diag float64 ({X.nbytes / 2**20:.0f} MiB), "
          f"chunks of {args.chunk_rows} rows, {args.iters} timed iterations (median)")  # fmt: skip
    gm = GaussianMixture(args.k, covariance_type="diag", random_state=0, max_iter=2, tol=0, n_jobs=2)
    gm.fit(X[:200_000])  # compile / load the kernels; parameters to iterate from
    params = gm._params()

    mem = ArrayExecutor(X)
    mem.accumulate(params)
    t_mem = np.median(em_times(mem, params, args.iters))
    print(f"in-memory, 2 numba threads:      {t_mem * 1e3:8.1f} ms/iteration")

    tmp = Path(tempfile.mkdtemp(prefix="fastem-bench-"))
    try:
        da.from_array(X, chunks=(args.chunk_rows, args.d)).to_zarr(str(tmp / "x.zarr"))
        del X
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            Xz = da.from_zarr(str(tmp / "x.zarr"))
            Xp = client.persist(Xz)
            client.wait_for_workers(2)

            wait(Xp)
            ex = DaskExecutor(Xp, None, client, n_threads=1)
            tic = time.perf_counter()
            with get_task_stream(client) as first_stream:
                ex.accumulate(params)
            t_first = time.perf_counter() - tic
            with get_task_stream(client) as stream:
                times = em_times(ex, params, args.iters)
            t_dask = float(np.median(times))
            ez = DaskExecutor(Xz, None, client, n_threads=1)
            t_zarr = float(np.median(em_times(ez, params, max(3, args.iters // 2))))
            graph_build = np.median(timed(lambda: ex.graph(params), 20))

            def busy(records, name):
                per_worker: dict[str, float] = {}
                for rec in records:
                    if name not in str(rec["key"]):
                        continue
                    for ss in rec["startstops"]:
                        if ss["action"] == "compute":
                            per_worker[rec["worker"]] = per_worker.get(rec["worker"], 0.0) + (
                                ss["stop"] - ss["start"]
                            )
                return per_worker

            compute = busy(stream.data, "_block_stats")
            merge = busy(stream.data, "_merge_pair")
            first_compute = busy(first_stream.data, "_block_stats")
            kernel = max(compute.values()) / args.iters
            merges = sum(merge.values()) / args.iters
            first_kernel = max(first_compute.values())
            stats = ex.accumulate(params)
            stats_bytes = len(pickle.dumps(stats))
            params_bytes = len(pickle.dumps(params.packed()))
            ser = np.median(timed(lambda: pickle.loads(pickle.dumps(stats)), 200))
            n_tasks = len(ex.blocks)

        print(
            f"dask, 2 workers x 1 thread:      {t_dask * 1e3:8.1f} ms/iteration  "
            f"({t_dask / t_mem:.2f}x in-memory)  [X persisted on the workers]"
        )
        print(f"dask, re-reading Zarr each pass: {t_zarr * 1e3:8.1f} ms/iteration  ({t_zarr / t_mem:.2f}x)")
        print(
            f"first dask iteration:            {t_first * 1e3:8.1f} ms (workers import fastem, load kernels)"
        )
        print("\nwhere a persisted iteration goes:")
        print(f"  kernel time on the busiest worker:        {kernel * 1e3:8.1f} ms")
        print(f"  pairwise merges ({n_tasks - 1} tasks, total):        {merges * 1e3:8.2f} ms")
        print(f"  graph construction on the client:         {graph_build * 1e3:8.2f} ms")
        print(f"  rest (scheduling, transfers, idle time):  {(t_dask - kernel - graph_build) * 1e3:8.1f} ms")
        print(f"  serialization: stats {stats_bytes} B/task, params {params_bytes} B/iteration; "
              f"pickle round trip {ser * 1e6:.0f} us")  # fmt: skip
        print(f"  first-iteration kernel time on the busiest worker: {first_kernel * 1e3:.1f} ms "
              f"(steady state {kernel * 1e3:.1f} ms): kernels come from numba's on-disk cache")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
