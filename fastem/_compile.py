"""``fastem compile``: compiling fastem's numba kernels ahead of time.

numba compiles a kernel the first time it meets a new combination of argument
types and keeps the machine code in its on-disk cache, so a kernel is compiled
once per machine (and per fastem version), then loaded in milliseconds; while
it compiles, :mod:`fastem._kernels._notice` says so on stderr.

:func:`compile_kernels` (``fastem compile``) fits tiny data
with each selected family, covariance type and dtype, which compiles exactly
the kernels a fit, ``predict`` and ``score`` of that kind use, in several
processes at once (numba compiles on one thread).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ._kernels._notice import _kernel_name, install_notice, notice

FAMILIES = ("gaussian", "student-t", "poisson", "bernoulli", "multinomial", "vmf")
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
#: covariance types each family has (the others have none)
FAMILY_COVARIANCE_TYPES = {"gaussian": COVARIANCE_TYPES, "student-t": ("full", "diag")}
DTYPES = ("float64", "float32")
#: families that take ``missing="marginalize"``
MISSING_FAMILIES = ("gaussian", "poisson", "bernoulli")


# ---------------------------------------------------------------- ahead of time
@dataclass
class CompileResult:
    """What one ``fastem compile`` job did."""

    family: str
    covariance_type: str | None
    dtype: str
    seconds: float
    kernels: int  # kernels compiled (0: all were in the cache already)

    @property
    def name(self) -> str:
        kind = f" {self.covariance_type}" if self.covariance_type else ""
        return f"{self.family}{kind} {self.dtype}"


def _tiny_data(family: str, dtype: str):
    """A few rows that every family accepts, in ``dtype``."""
    import numpy as np

    rng = np.random.default_rng(0)
    if family in ("gaussian", "student-t"):
        X = np.concatenate([rng.normal(-3.0, 1.0, (40, 3)), rng.normal(3.0, 1.0, (40, 3))])
    elif family in ("poisson", "multinomial"):
        X = rng.poisson(4.0, (80, 3)) + 1  # every row has counts (multinomial needs one)
    elif family == "bernoulli":
        X = (rng.random((80, 3)) < 0.4) | (np.arange(80)[:, None] % 2 == 1)
    else:  # vmf: unit rows
        X = rng.normal(1.0, 0.5, (80, 3))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(dtype)


def _estimator(family: str, covariance_type: str | None):
    from . import mixture

    common = dict(n_components=2, max_iter=3, random_state=0)
    if family == "gaussian":
        return mixture.GaussianMixture(covariance_type=covariance_type, **common)
    if family == "student-t":
        return mixture.StudentTMixture(covariance_type=covariance_type, **common)
    classes = {
        "poisson": mixture.PoissonMixture,
        "bernoulli": mixture.BernoulliMixture,
        "multinomial": mixture.MultinomialMixture,
        "vmf": mixture.VonMisesFisherMixture,
    }
    return classes[family](**common)


def _compile_wide_full_tied(covariance_type: str, dtype: str) -> None:
    """The full/tied kernel's explicit-vector specialisation: rows of ``SIMD_MIN_FEATURES`` features.

    Narrower rows run the loop tiles, a specialisation without the vector code (faster to compile),
    so the tiny data of :func:`_tiny_data` do not compile this one. Nothing to do on hosts without
    AVX-512, where every width runs the loop tiles.
    """
    import numpy as np

    from ._kernels.gaussian_simd import SIMD_MIN_FEATURES, SIMD_TILES

    if not SIMD_TILES:
        return
    rng = np.random.default_rng(1)
    centres = np.zeros((2, SIMD_MIN_FEATURES))
    centres[1] = 4.0
    X = (centres[np.arange(80) % 2] + rng.normal(size=(80, SIMD_MIN_FEATURES))).astype(dtype)
    model = _estimator("gaussian", covariance_type).fit(X)
    model.predict_proba(X)
    model.score_samples(X)
    if dtype == "float32":
        _estimator("gaussian", covariance_type).set_params(accumulation="float32").fit(X)


def compile_one(family: str, covariance_type: str | None, dtype: str) -> CompileResult:
    """Compile (or load) the kernels of one family/covariance type/dtype by a tiny fit, predict and score."""
    import warnings

    import numpy as np

    install_notice()
    previous, notice.enabled = notice.enabled, False  # the caller reports what was done
    counter = _CompileCounter()
    X = _tiny_data(family, dtype)
    tic = time.perf_counter()
    try:
        with counter, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tiny data: convergence warnings say nothing here
            model = _estimator(family, covariance_type).fit(X)
            model.predict_proba(X)
            model.score_samples(X)
            if family == "gaussian" and dtype == "float32":  # float32 sums are their own specialisation
                _estimator(family, covariance_type).set_params(accumulation="float32").fit(X)
            if family == "gaussian" and covariance_type in ("full", "tied"):
                _compile_wide_full_tied(covariance_type, dtype)
            if family == "multinomial":  # scipy.sparse CSR rows have a kernel of their own
                from scipy import sparse

                sparse_rows = sparse.csr_matrix(X)
                model = _estimator(family, covariance_type).fit(sparse_rows)
                model.score_samples(sparse_rows)
            if family in MISSING_FAMILIES:  # missing="marginalize" has kernels of its own
                holes = X.copy()
                holes[::7, 0] = np.nan
                model = _estimator(family, covariance_type).set_params(missing="marginalize").fit(holes)
                model.score_samples(holes)
                model.impute(holes)
    finally:
        notice.enabled = previous
    return CompileResult(family, covariance_type, dtype, time.perf_counter() - tic, counter.kernels)


class _CompileCounter:
    """Counts top-level fastem kernel compilations while active."""

    def __enter__(self):
        from numba.core import event

        counter = self

        class Listener(event.Listener):
            depth = 0

            def on_start(self, ev):
                if _kernel_name((ev.data or {}).get("dispatcher")) is not None:
                    Listener.depth += 1
                    counter.kernels += Listener.depth == 1

            def on_end(self, ev):
                if _kernel_name((ev.data or {}).get("dispatcher")) is not None:
                    Listener.depth -= 1

        self.kernels = 0
        self._listener = Listener()
        event.register("numba:compile", self._listener)
        return self

    def __exit__(self, *exc):
        from numba.core import event

        event.unregister("numba:compile", self._listener)
        return False


def compile_jobs(
    families: Sequence[str] = FAMILIES,
    covariance_types: Sequence[str] = COVARIANCE_TYPES,
    dtypes: Sequence[str] = DTYPES,
) -> list[tuple[str, str | None, str]]:
    """The (family, covariance type or None, dtype) combinations a selection covers."""
    jobs = []
    for dtype in dtypes:
        for family in families:
            kinds = FAMILY_COVARIANCE_TYPES.get(family)
            if kinds is None:
                jobs.append((family, None, dtype))
            else:
                # full and tied (diag and spherical) share a kernel: apart, so that
                # parallel workers do not compile the same one at once
                order = [kind for kind in ("full", "diag", "tied", "spherical") if kind in covariance_types]
                jobs.extend((family, kind, dtype) for kind in order if kind in kinds)
    return jobs


def compile_kernels(
    families: Sequence[str] = FAMILIES,
    covariance_types: Sequence[str] = COVARIANCE_TYPES,
    dtypes: Sequence[str] = DTYPES,
    processes: int | None = None,
    report=None,
) -> list[CompileResult]:
    """Compile fastem's kernels ahead of time into numba's on-disk cache.

    Parameters
    ----------
    families, covariance_types, dtypes : sequences of str
        The selection (default: everything). Covariance types apply to the
        families that have them (Gaussian: all four; Student-t: full, diag).
    processes : int, default=None
        Worker processes; None uses one per CPU. Compilation is single-threaded,
        so separate processes compile different kernels at once.
    report : callable, default=None
        Called with each :class:`CompileResult` as it finishes.

    Returns
    -------
    list of CompileResult
        One per job, in the order they finished.
    """
    jobs = compile_jobs(families, covariance_types, dtypes)
    if not jobs:
        return []
    processes = min(len(jobs), processes or os.cpu_count() or 1)
    results: list[CompileResult] = []
    if processes <= 1:
        for job in jobs:
            results.append(compile_one(*job))
            if report is not None:
                report(results[-1])
        return results
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited locks or threads
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        futures = [pool.submit(compile_one, *job) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            results.append(future.result())
            if report is not None:
                report(results[-1])
    return results


# ---------------------------------------------------------------- the `fastem compile` command
def _choices(allowed: Sequence[str], what: str):
    """An argparse ``type``: a comma-separated subset of ``allowed``, or "all"."""
    import argparse

    def parse(text: str) -> tuple[str, ...]:
        if text == "all":
            return tuple(allowed)
        chosen = tuple(part.strip() for part in text.split(",") if part.strip())
        unknown = [part for part in chosen if part not in allowed]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(unknown) or repr(text)}: choose from {', '.join(allowed)} or all"
            )
        return chosen

    return parse


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def add_arguments(parser) -> None:
    """The options of ``fastem compile``."""
    parser.add_argument(
        "--family",
        type=_choices(FAMILIES, "family"),
        default=FAMILIES,
        metavar="LIST",
        help=f"families, comma-separated: {','.join(FAMILIES)} or all (default: all)",
    )
    parser.add_argument(
        "--covariance",
        type=_choices(COVARIANCE_TYPES, "covariance type"),
        default=COVARIANCE_TYPES,
        metavar="LIST",
        help="covariance types of the Gaussian and Student-t families: full,tied,diag,spherical or all "
        "(default: all)",
    )
    parser.add_argument(
        "--dtype",
        type=_choices(DTYPES, "dtype"),
        default=DTYPES,
        metavar="LIST",
        help="data types: float64,float32 or all (default: all)",
    )
    parser.add_argument(
        "--processes",
        type=_positive_int,
        default=None,
        metavar="N",
        help="compile in N processes at once (default: one per CPU)",
    )


def run_command(args) -> int:
    """``fastem compile``: compile the selection, one line per job, then the total."""
    from numba.core.config import CACHE_DIR

    jobs = compile_jobs(args.family, args.covariance, args.dtype)
    where = CACHE_DIR or "numba's default cache directories (__pycache__ beside fastem's modules)"
    processes = min(len(jobs), args.processes or os.cpu_count() or 1) if jobs else 0
    jobs_text = f"{len(jobs)} combination{'s' if len(jobs) != 1 else ''}"
    processes_text = f"{processes} process{'es' if processes != 1 else ''}"
    print(f"fastem: compiling the kernels of {jobs_text} in {processes_text} into {where}")

    def report(result: CompileResult) -> None:
        plural = "s" if result.kernels != 1 else ""
        what = f"{result.kernels} kernel{plural} compiled" if result.kernels else "already cached"
        print(f"  {result.name:28s} {result.seconds:6.1f} s  ({what})", flush=True)

    tic = time.perf_counter()
    results = compile_kernels(args.family, args.covariance, args.dtype, args.processes, report)
    compiled = sum(result.kernels for result in results)
    print(f"done in {time.perf_counter() - tic:.1f} s ({compiled} kernels compiled)")
    return 0
