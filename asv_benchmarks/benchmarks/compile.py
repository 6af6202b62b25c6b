"""Cold start: the first fit in a fresh process with an empty numba cache, and the same with a warm cache.

Each measurement runs a subprocess with ``NUMBA_CACHE_DIR`` pointed at a new
empty folder, so numba compiles every kernel the fit uses (what a newcomer's
first fit waits for); the warm case runs a second process on the filled cache.
Times include ``import fastem``. The data are Old Faithful (272 x 2, bundled),
as in ``scripts/demo``. Compilation runs on one thread: the figure tracks
compile work, and moves with the load on the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from .common import Benchmark

_FIRST_FIT = """
import time
tic = time.perf_counter()
from fastem import GaussianMixture
from fastem.datasets import load_old_faithful
X = load_old_faithful()
model = GaussianMixture(n_components=2, covariance_type={covariance_type!r}, random_state=0).fit(X)
model.predict(X)
print(time.perf_counter() - tic)
"""


def _first_fit_seconds(covariance_type: str, cache_dir: str) -> float:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir, "FASTEM_COMPILE_NOTICE": "0"}
    code = _FIRST_FIT.format(covariance_type=covariance_type)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


class ColdStart(Benchmark):
    """Seconds from ``import fastem`` to a fitted Old Faithful model, empty vs filled numba cache."""

    repeat = (1, 1, 900.0)
    timeout = 900
    params = (["full", "diag"],)
    param_names = ["covariance_type"]

    def track_cold_first_fit(self, covariance_type):
        with tempfile.TemporaryDirectory(prefix="fastem-numba-cache-") as cache_dir:
            return _first_fit_seconds(covariance_type, cache_dir)

    track_cold_first_fit.unit = "seconds"

    def track_warm_first_fit(self, covariance_type):
        with tempfile.TemporaryDirectory(prefix="fastem-numba-cache-") as cache_dir:
            _first_fit_seconds(covariance_type, cache_dir)  # fills the cache
            return _first_fit_seconds(covariance_type, cache_dir)

    track_warm_first_fit.unit = "seconds"
