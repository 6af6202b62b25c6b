"""EM iterations on a local Dask cluster (2 worker processes x 1 thread) against the same fit in memory.

Skipped when the ``dask`` extra (dask, distributed) is not installed in the
benchmark environment.
"""

from __future__ import annotations

import warnings

from .common import Benchmark, mixture_data, pinned_estimator


class DaskIteration(Benchmark):
    """Five pinned diag iterations, rows persisted on 2 local workers vs in memory on 2 threads.

    The ratio of the two is the Dask executor's fixed cost per iteration
    (scheduling, transfers) relative to the kernel.
    """

    param_names = ["where"]
    params = (["dask-2x1", "memory"],)
    n_samples, n_features, n_components = 1_000_000, 8, 8
    chunk_rows = 250_000

    def setup(self, where):
        try:
            import dask.array as da
            from distributed import Client, LocalCluster
        except ImportError as exc:  # asv skips a benchmark whose setup raises NotImplementedError
            raise NotImplementedError("needs the dask extra") from exc
        X, centers = mixture_data(self.n_samples, self.n_features, self.n_components)
        self.estimator = pinned_estimator("diag", centers, max_iter=5)
        self.cluster = self.client = None
        if where == "memory":
            self.estimator.set_params(n_jobs=2)
            self.data = X
        else:
            self.cluster = LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
            )
            self.client = Client(self.cluster)
            self.data = self.client.persist(da.from_array(X, chunks=(self.chunk_rows, self.n_features)))
        warnings.simplefilter("ignore")
        self.estimator.fit(self.data)  # JIT warm-up (the workers load the kernels from the cache)

    def teardown(self, where):
        if self.client is not None:
            self.client.close()
            self.cluster.close()

    def time_five_iterations(self, where):
        self.estimator.fit(self.data)
