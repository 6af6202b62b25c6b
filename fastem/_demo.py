"""The Old Faithful demo: ``python -m fastem._demo`` (used by ``scripts/demo``)."""

from __future__ import annotations

import time

import numpy as np

from . import GaussianMixture, __version__
from .datasets import load_old_faithful


def main() -> int:
    X = load_old_faithful()
    tic = time.perf_counter()
    gm = GaussianMixture(n_components=2, covariance_type="full", tol=1e-8, random_state=0).fit(X)
    seconds = time.perf_counter() - tic
    order = np.argsort(gm.means_[:, 0])
    np.set_printoptions(precision=4, suppress=True)
    print(
        f"fastem {__version__}: Old Faithful ({X.shape[0]} eruptions x {X.shape[1]} features), "
        "2 full-covariance components"
    )
    print(
        f"converged: {gm.converged_} after {gm.n_iter_} iterations in {seconds:.2f} s "
        "(first run includes JIT compilation)"
    )
    for rank, k in enumerate(order):
        print(f"\ncomponent {rank}: weight {gm.weights_[k]:.4f}")
        print(f"  mean (eruptions, waiting): {gm.means_[k]}")
        print("  covariance:")
        for row in gm.covariances_[k]:
            print(f"    {row}")
    total = gm.score(X) * X.shape[0]
    print(f"\nlog-likelihood: {total:.4f}  ({total / X.shape[0]:.5f} per sample)")
    print(f"BIC: {gm.bic(X):.2f}  AIC: {gm.aic(X):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
