"""Time per EM iteration, throughput, memory and results of the fused kernels."""

from __future__ import annotations

import subprocess
import sys
import warnings

from .common import (
    ROWS_BY_FEATURES,
    Benchmark,
    mixture_data,
    overlapping_data,
    overlapping_init,
    pinned_estimator,
)

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


class EMIteration(Benchmark):
    """One EM iteration (fused E-step + moments, then the M-step)."""

    param_names = ["covariance_type", "n_features", "n_components", "dtype"]
    params = (COVARIANCE_TYPES, [2, 16, 64], [8, 32], ["float64", "float32"])

    def setup(self, covariance_type, n_features, n_components, dtype):
        self.n_samples = ROWS_BY_FEATURES[n_features]
        X, centers = mixture_data(self.n_samples, n_features, n_components, dtype)
        gm = pinned_estimator(covariance_type, centers)
        given = {"weights_init": gm.weights_init, "means_init": gm.means_init,
                 "precisions_init": gm.precisions_init}  # fmt: skip
        self._prepare(X, covariance_type, n_components, given)

    def _prepare(self, X, covariance_type, n_components, given, accumulation="float64"):
        from fastem._executor import ArrayExecutor

        try:  # fastem >= 0.2: the Gaussian is one family behind the family protocol
            from fastem.families.gaussian import GaussianFamily
        except ImportError:  # fastem 0.1 (asv continuous compares against it)
            if accumulation != "float64":
                raise NotImplementedError("no float32 sums in this version") from None
            from fastem._init import initial_params

            self.executor = ArrayExecutor(X)
            self.params = initial_params(
                X, None, n_components=n_components, covariance_type=covariance_type,
                init_params="kmeans", reg_covar=1e-6, random_state=None, **given,
            )  # fmt: skip
            self.m_step = lambda stats: stats.to_params(1e-6)
        else:
            try:
                family = GaussianFamily(covariance_type, 1e-6, **(
                    {} if accumulation == "float64" else {"accumulation": accumulation}))  # fmt: skip
            except TypeError:  # before GaussianMixture(accumulation=...) existed: asv skips the case
                raise NotImplementedError("no float32 sums in this version") from None
            self.executor = ArrayExecutor(X, None, family)
            self.params = family.initial_params(
                X, None, n_components=n_components, init_params="kmeans", random_state=None, **given
            )
            self.m_step = family.m_step
        self.iterate()  # JIT warm-up, outside the timed region

    def iterate(self):
        return self.m_step(self.executor.accumulate(self.params))

    def time_iteration(self, *args):
        self.iterate()

    def track_points_per_second(self, *args):
        import time

        tic = time.perf_counter()
        self.iterate()
        return self.n_samples / (time.perf_counter() - tic)

    track_points_per_second.unit = "points/s"


class EMIterationOverlapping(EMIteration):
    """One EM iteration on overlapping clusters (3-5 sd apart) from a start drawn from the data.

    :class:`EMIteration`'s blobs lie about 16 sd apart and start next to the
    truth, so nearly every responsibility is 0 or 1; here they are mixed, as in
    real fits (the data kind of scripts/compare_peers.py). dtype "float32-sums":
    float32 data with ``accumulation="float32"`` (float32 tile sums).
    """

    param_names = ["covariance_type", "n_features", "n_components", "dtype"]
    params = (["full", "diag"], [8, 16, 64], [8, 32], ["float64", "float32", "float32-sums"])

    def setup(self, covariance_type, n_features, n_components, dtype):
        self.n_samples = ROWS_BY_FEATURES[n_features]
        data_dtype, accumulation = ("float32", "float32") if dtype == "float32-sums" else (dtype, "float64")
        X, start = overlapping_data(self.n_samples, n_features, n_components, data_dtype)
        self._prepare(
            X, covariance_type, n_components, overlapping_init(covariance_type, start), accumulation
        )


class Fit(Benchmark):
    """A pinned 10-iteration fit: peak memory and the log-likelihood it reaches."""

    param_names = ["covariance_type"]
    params = (COVARIANCE_TYPES,)
    n_samples, n_features, n_components = 400_000, 8, 8

    def setup(self, covariance_type):
        self.X, centers = mixture_data(self.n_samples, self.n_features, self.n_components)
        self.estimator = pinned_estimator(covariance_type, centers, max_iter=10)
        warnings.simplefilter("ignore")
        self.estimator.fit(self.X[:5000])

    def time_fit(self, covariance_type):
        self.estimator.fit(self.X)

    def peakmem_fit(self, covariance_type):
        self.estimator.fit(self.X)

    def track_log_likelihood(self, covariance_type):
        return float(self.estimator.fit(self.X).score(self.X))

    track_log_likelihood.unit = "nats/sample"


class Scoring(Benchmark):
    """Blockwise parallel scoring of a fitted model."""

    param_names = ["method"]
    params = (["predict", "score_samples", "predict_proba"],)

    def setup(self, method):
        X, centers = mixture_data(400_000, 16, 16)
        self.X = X
        warnings.simplefilter("ignore")
        self.estimator = pinned_estimator("full", centers, max_iter=2).fit(X[:20_000])
        getattr(self.estimator, method)(X[:1000])

    def time_scoring(self, method):
        getattr(self.estimator, method)(self.X)


class Compile(Benchmark):
    """Kernel compile time in a fresh process with an empty numba cache."""

    repeat = (1, 1, 600.0)

    def track_compile_seconds(self):
        code = (
            "import os, tempfile, time\n"
            "os.environ['NUMBA_CACHE_DIR'] = tempfile.mkdtemp()\n"
            "import numpy as np\n"
            "from fastem import GaussianMixture\n"
            "X = np.random.default_rng(0).normal(size=(500, 3))\n"
            "t = time.perf_counter()\n"
            "GaussianMixture(2, random_state=0).fit(X).predict(X)\n"
            "print(time.perf_counter() - t)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])

    track_compile_seconds.unit = "seconds"
