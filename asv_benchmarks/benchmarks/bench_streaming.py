"""EM iterations streamed from a .npy file, against the same iteration in memory."""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np

from .common import Benchmark, mixture_data, pinned_estimator


class StreamedIteration(Benchmark):
    """Two pinned iterations over a .npy file (page cache warm) and over the array."""

    param_names = ["covariance_type", "where"]
    params = (["diag", "full"], ["npy", "memory"])
    n_samples, n_features, n_components = 1_000_000, 8, 8

    def setup(self, covariance_type, where):
        from fastem.sources import NpySource

        X, centers = mixture_data(self.n_samples, self.n_features, self.n_components, "float32")
        self.X = X
        if where == "npy":
            fd, self.path = tempfile.mkstemp(suffix=".npy")
            os.close(fd)
            np.save(self.path, X)
            self.data = NpySource(self.path)
        else:
            self.path = None
            self.data = X
        self.estimator = pinned_estimator(covariance_type, centers, max_iter=2)
        warnings.simplefilter("ignore")
        self.estimator.fit(self.data)  # JIT warm-up and page cache

    def teardown(self, covariance_type, where):
        if self.path:
            os.unlink(self.path)

    def time_two_iterations(self, covariance_type, where):
        self.estimator.fit(self.data)

    def peakmem_two_iterations(self, covariance_type, where):
        self.estimator.fit(self.data)
