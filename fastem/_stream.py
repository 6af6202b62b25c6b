"""The streaming executor: EM passes over a :mod:`fastem.sources` source.

A reader thread fills a small pool of reused chunk buffers (file reads and
h5py/pyarrow release the GIL) while the main thread runs the nogil kernel on
the previous chunk, so I/O overlaps compute and resident memory stays at a few
chunks whatever the size of the data. Every chunk is checked for NaN/inf
before it reaches the kernel, and chunks go through the same
``accumulate_chunk`` as in memory with their global ``row_offset``: with chunk
sizes that are multiples of ``BLOCK_ROWS`` the per-block partials are added in
the same order as the in-memory pass, so the fit is bitwise identical.

Missing values: a family with ``missing="marginalize"`` lets NaN through its
check (a NaN read from a file, a CSV null marker or a Parquet null is a
missing entry) and its kernel marginalises them, so streamed fits with holes
equal in-memory fits in the same way.
"""

from __future__ import annotations

import collections
import os
import queue
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._executor import FitPlan
from ._threads import thread_limit
from ._validate import (
    WEIGHTS_SUM_TO_ZERO,
    check_n_features,
    check_weight_chunk,
    first_invalid,
    invalid_message,
)
from .families.base import NO_F64, NO_I64, NO_RESP
from .sources import FINGERPRINT_ROWS, ArraySource, Source, _hash_rows, as_source

#: Chunk buffers per source: one being filled, one queued, one in the kernel.
N_BUFFERS = 3


class _Stopped(Exception):
    """Raised inside the reader thread when the consumer has gone away."""


class _Prefetcher:
    """Runs ``source._fill`` in a thread; yields filled chunk views in row order."""

    def __init__(self, source: Source, buffers: list[np.ndarray]):
        self.source = source
        self.free: queue.Queue = queue.Queue()
        for buf in buffers:
            self.free.put(buf)
        self.ready: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        # slots in the order they were taken: a source may yield its own arrays
        # (memory-mapped windows) and use the slots only to bound what is in flight
        self.taken: collections.deque = collections.deque()

    def _take(self) -> np.ndarray:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                buf = self.free.get(timeout=0.05)
            except queue.Empty:
                continue
            self.taken.append(buf)
            return buf

    def _run(self) -> None:
        try:
            for buf, n in self.source._fill(self._take):
                self.ready.put((buf, n))
                if self.stop.is_set():
                    return
        except _Stopped:
            return
        except BaseException as exc:  # re-raised in the consumer, with its traceback
            self.ready.put(exc)
            return
        self.ready.put(None)

    def __iter__(self) -> Iterator[np.ndarray]:
        thread = threading.Thread(target=self._run, name="fastem-reader", daemon=True)
        thread.start()
        try:
            while True:
                item = self.ready.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                buf, n = item
                yield buf[:n]
                del buf, item  # a memory-mapped window is unmapped once unreferenced
                self.free.put(self.taken.popleft())  # the consumer is done with this chunk
        finally:
            self.stop.set()
            thread.join()


def _buffers(source: Source) -> list[np.ndarray]:
    """The source's reusable chunk buffers (allocated once, kept for later passes)."""
    rows = source.resolved_chunk_rows()
    shape = (rows, source.n_features)
    bufs = getattr(source, "_fastem_buffers", None)
    if not bufs or bufs[0].shape != shape or bufs[0].dtype != source.dtype:
        bufs = [np.empty(shape, dtype=source.dtype) for _ in range(N_BUFFERS)]
        source._fastem_buffers = bufs
    return bufs


def _progress_bar(total: int | None, desc: str, verbose: int):
    if verbose < 1:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: lines only
        return None
    return tqdm(total=total, desc=desc, unit="rows", unit_scale=True, leave=False, file=sys.stderr)


def check_chunk(family, source: Source, chunk: np.ndarray, start: int) -> None:
    """Raise a ValueError naming the source, the global row and the column of a value ``family`` refuses.

    The row and column are 0-based indices (and said to be); the source adds
    the place in its own terms when it has one (a CSV file's line, a column's name).
    """
    problem = first_invalid(family, chunk)
    if problem is not None:
        place = source.locate(start + problem.row, problem.column)
        raise ValueError(invalid_message(source.name, problem, start, place))


def iter_chunks(
    source: Source, *, verbose: int = 0, desc: str = "pass", family=None
) -> Iterator[tuple[int, np.ndarray]]:
    """``(first_row, chunk)`` over a source, prefetched; each chunk checked by ``family`` if given.

    Raises ``ValueError`` naming the global row index for a value the family
    refuses (without ``family`` the caller detects them more cheaply), and
    when the source yields a different number of rows than it announced.
    """
    source.open()
    bar = _progress_bar(source.n_samples, desc, verbose)
    start = 0
    try:
        for chunk in _Prefetcher(source, _buffers(source)):
            if family is not None:
                check_chunk(family, source, chunk, start)
            yield start, chunk
            start += chunk.shape[0]
            if bar is not None:
                bar.update(chunk.shape[0])
    finally:
        if bar is not None:
            bar.close()
    if source.n_samples is not None and start != source.n_samples:
        raise ValueError(
            f"{source.name} yielded {start} rows but announced {source.n_samples}: the data changed "
            "during the fit."
        )
    source.n_samples = start


# ---------------------------------------------------------------- sample weights
def _weight_array(sample_weight) -> np.ndarray | None:
    """A 1-D float64 view (np.memmap stays a memmap: weights are read chunk by chunk)."""
    if sample_weight is None:
        return None
    sw = np.asarray(sample_weight)
    if sw.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D for a data source, got shape {sw.shape}.")
    if sw.dtype.kind not in "fiu":
        raise ValueError(f"sample_weight must be numeric, got dtype {sw.dtype}.")
    return sw


def _weights_for(sw: np.ndarray | None, start: int, n: int) -> np.ndarray | None:
    if sw is None:
        return None
    # a plain writable float64 copy: a read-only memmap slice would make numba compile
    # (and run) another specialisation of the kernel
    return np.array(sw[start : start + n], dtype=np.float64, order="C")


# ---------------------------------------------------------------- first pass
@dataclass
class ScanResult:
    """What the validation pass learns: row count, an initialisation sample, a fingerprint."""

    n_samples: int
    sample: np.ndarray
    sample_weight: np.ndarray | None
    fingerprint: dict
    #: the data's weighted mean and scatter (``fastem.priors.DataMoments``) when the family's prior needs them
    moments: object = None


def scan(
    source: Source, sample_weight, capacity: int, random_state, *, verbose: int = 0, family=None
) -> ScanResult:
    """One pass: validate every chunk, draw a uniform reservoir sample, fingerprint the data.

    Reservoir sampling (Vitter's algorithm R): the first ``capacity`` rows are
    kept in order, so a source that fits in the reservoir gives exactly the
    in-memory initialisation; later row ``i`` replaces a uniformly chosen slot
    with probability ``capacity / (i + 1)``. The generator is seeded from
    ``random_state`` only when the first row beyond the reservoir arrives.
    Sample weights travel with their rows: the sample is a uniform sample of
    weighted rows, so weighted k-means on it estimates the weighted fit.
    """
    source.open()
    sw = _weight_array(sample_weight)
    if sw is not None and source.n_samples is not None and sw.shape[0] != source.n_samples:
        raise ValueError(
            f"sample_weight has {sw.shape[0]} entries, but {source.name} has {source.n_samples} rows: "
            "pass one weight per sample."
        )
    cap = capacity if source.n_samples is None else min(capacity, source.n_samples)
    sample = np.empty((max(cap, 1), source.n_features), dtype=source.dtype)
    index = np.empty(max(cap, 1), dtype=np.int64)
    filled = 0
    rng = None
    head = tail = ""
    total_w = 0.0
    n_seen = 0
    moments = None
    want_moments = bool(getattr(family, "needs_data_moments", False))
    for start, chunk in iter_chunks(source, verbose=verbose, desc="scan", family=family):
        m = chunk.shape[0]
        if sw is not None:
            if start + m > sw.shape[0]:
                raise ValueError(
                    f"sample_weight has {sw.shape[0]} entries, but {source.name} has more rows: "
                    "pass one weight per sample."
                )
            total_w += check_weight_chunk(_weights_for(sw, start, m), start)
        if want_moments:  # a prior's data-dependent hyperparameters (mclust's defaultPrior)
            from .priors import DataMoments

            part = DataMoments.of_rows(chunk, _weights_for(sw, start, m))
            moments = part if moments is None else moments.merge(part)
        if start == 0:
            head = _hash_rows(chunk[:FINGERPRINT_ROWS])
        tail = _hash_rows(chunk[-FINGERPRINT_ROWS:])
        direct = min(m, cap - filled)
        if direct > 0:
            sample[filled : filled + direct] = chunk[:direct]
            index[filled : filled + direct] = np.arange(start, start + direct)
            filled += direct
        rest = m - max(direct, 0)
        if rest > 0 and capacity > 0:
            if rng is None:
                from ._base import check_random_state

                rng = np.random.default_rng(check_random_state(random_state).randint(2**31 - 1))
            rows = np.arange(start + m - rest, start + m)
            slots = np.floor(rng.random(rest) * (rows + 1)).astype(np.int64)
            hit = np.flatnonzero(slots < capacity)
            if hit.size:
                # a slot drawn twice keeps the later row, as the sequential algorithm does
                rev = hit[::-1]
                uniq, first = np.unique(slots[rev], return_index=True)
                keep = rev[first]
                sample[uniq] = chunk[keep + (m - rest)]
                index[uniq] = rows[keep]
        n_seen = start + m
    if sw is not None:
        if sw.shape[0] != n_seen:
            raise ValueError(
                f"sample_weight has {sw.shape[0]} entries, but {source.name} has {n_seen} rows: "
                "pass one weight per sample."
            )
        if not total_w > 0:
            raise ValueError(WEIGHTS_SUM_TO_ZERO)
    sample, index = sample[:filled], index[:filled]
    sample_w = None if sw is None else np.ascontiguousarray(sw[index], dtype=np.float64)
    fingerprint = {
        **source.fingerprint_meta(),
        "n_samples": int(n_seen),
        "n_features": int(source.n_features),
        "dtype": source.dtype.str,
        "chunk_rows": int(source.resolved_chunk_rows()),
        "head": head,
        "tail": tail,
    }
    return ScanResult(int(n_seen), np.ascontiguousarray(sample), sample_w, fingerprint, moments)


# ---------------------------------------------------------------- executor
class StreamExecutor:
    """Runs E-steps over a source: one sequential, prefetched pass per call.

    With ``verbose >= 1`` each pass shows a progress bar (rows per second, if
    tqdm is installed) and prints one line: iteration, mean log-likelihood,
    its change, seconds.
    """

    #: how user-facing messages name what this executor runs on
    input_kind = "data sources"

    def __init__(self, source: Source, sample_weight, n_samples: int, family, *, verbose: int = 0):
        self.source = source
        self.sample_weight = _weight_array(sample_weight)
        self.n_samples = n_samples
        self.n_features = source.n_features
        self.family = family
        self.verbose = verbose
        self.fingerprint: dict = {}
        self.on_run_start(0, None, [])

    def on_run_start(self, init: int, params, lower_bounds: list[float]) -> None:
        """Driver callback: a (re)started run resets the iteration counter of the progress lines."""
        self._iteration = len(lower_bounds)
        self._previous = lower_bounds[-1] if lower_bounds else -np.inf

    def accumulate(self, params):
        """One fused E-step + statistics pass over every chunk, in row order."""
        family = self.family
        stats = family.zero_stats(params)
        tic = time.perf_counter()
        self._iteration += 1
        desc = f"iteration {self._iteration}"
        # The validation pass has checked every value. Here a NaN/inf (data changed
        # since) shows up as a non-finite log-likelihood sum, which costs nothing to
        # test; only then is the chunk scanned to name the row (a full scan per
        # chunk would cost about 20% of a diagonal-covariance pass).
        for start, chunk in iter_chunks(self.source, verbose=self.verbose, desc=desc):
            sw = _weights_for(self.sample_weight, start, chunk.shape[0])
            family.accumulate(chunk, sw, params, stats, start)
            if not np.isfinite(stats.loglik_sum):
                check_chunk(family, self.source, chunk, start)
        if self.verbose >= 1:
            seconds = time.perf_counter() - tic
            ll = stats.mean_log_likelihood
            print(
                f"  iteration {self._iteration:4d}  mean log-likelihood {ll:.8g}  change "
                f"{ll - self._previous:+.3e}  {seconds:.2f} s  ({self.n_samples / seconds:.3g} rows/s)",
                flush=True,
            )
            self._previous = ll
        return stats


@dataclass
class PlanRequest:
    """What planning a fit needs to know besides the data: read from the estimator, never written."""

    family: object
    n_components: int
    random_state: object
    verbose: int = 0
    n_jobs: int | None = None
    init_sample_size: int | None = None
    #: ``check_parameters(n_features)``: hyper-parameter checks, run before the first pass
    check_parameters: object = None


def plan_fit(X, sample_weight, request: PlanRequest) -> FitPlan:
    """Open and validate the source, scan it once (sample + checks), return the plan."""
    source = as_source(X)
    if request.check_parameters is not None:
        request.check_parameters(source.n_features)  # bad parameters fail before the scan
    capacity = int(request.init_sample_size or 100_000)
    result = scan(source, sample_weight, capacity, request.random_state, verbose=request.verbose,
                  family=request.family)  # fmt: skip
    executor = StreamExecutor(
        source, sample_weight, result.n_samples, request.family, verbose=request.verbose
    )
    executor.fingerprint = result.fingerprint
    executor.data_moments = result.moments
    # column names of a Parquet or CSV file become feature_names_in_, as a DataFrame's do
    return FitPlan(executor, result.sample, result.sample_weight, result.n_samples, source.n_features,
                   source.feature_names)  # fmt: skip


def check_source_feature_names(estimator, source: Source) -> None:
    """Refuse a source whose column names differ from those the estimator was fitted with.

    Only when both have names: an array or ``.npy`` file has none, and is
    matched by position as in memory.
    """
    fitted = getattr(estimator, "feature_names_in_", None)
    names = source.feature_names
    if fitted is None or names is None or list(fitted) == list(names):
        return
    missing = [n for n in fitted if n not in set(names)]
    unexpected = [n for n in names if n not in set(fitted)]
    parts = []
    if missing:
        parts.append(f"missing: {missing[:5]}")
    if unexpected:
        parts.append(f"not seen at fit: {unexpected[:5]}")
    detail = "; ".join(parts) or "the same names in another order"
    raise ValueError(
        f"{source.name} has the columns {list(names)[:8]}, but {type(estimator).__name__} was fitted on "
        f"{list(fitted)[:8]} ({detail}). The feature names should match those that were passed during "
        "fit: choose the columns, in that order, with columns=[...]."
    )


# ---------------------------------------------------------------- outputs
class NpyWriter:
    """Writes a ``.npy`` file row block by row block, atomically.

    Rows go to a temporary file in the destination's directory behind a
    fixed-size header; :meth:`commit` writes the final header (the row count
    need not be known in advance), fsyncs and renames over ``path``. On error
    (``abort`` or leaving the ``with`` block by an exception) the temporary
    file is removed: no partial file is ever visible at ``path``.
    """

    def __init__(self, path, dtype, row_shape: tuple = ()):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(row_shape)
        self.n_rows = 0
        directory = self.path.parent if str(self.path.parent) else Path(".")
        if not directory.is_dir():
            raise FileNotFoundError(f"output directory '{directory}' does not exist.")
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        self._file = os.fdopen(fd, "wb")
        self._header_size = len(self._header(10**18))
        self._file.write(b"\0" * self._header_size)

    def _header(self, n_rows: int, size: int | None = None) -> bytes:
        shape = (n_rows, *self.row_shape)
        text = repr(
            {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        )
        if size is None:  # the reserved size: a multiple of 64, like numpy's own headers
            size = -(-(10 + len(text) + 1) // 64) * 64
        body = text + " " * (size - 10 - len(text) - 1) + "\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        self._file.write(memoryview(rows.reshape(-1).view(np.uint8)))
        self.n_rows += rows.shape[0]

    def commit(self) -> None:
        self._file.seek(0)
        self._file.write(self._header(self.n_rows, self._header_size))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)
        _fsync_dir(self.path.parent)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.commit()


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (not available on every platform)."""
    try:
        fd = os.open(directory if str(directory) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def score_source(
    estimator,
    X,
    logprob: bool = False,
    label: bool = False,
    resp: bool = False,
    out=None,
    mean: bool = False,
) -> dict:
    """Per-row outputs of the E-step over a source, chunk by chunk.

    With ``out`` (a ``.npy`` path) the single wanted output is written there
    atomically with bounded memory and returned as a read-only memory map.
    With ``mean`` only the mean log-likelihood and the row count are returned
    (keys ``mean`` and ``n_samples``), in O(1) memory.
    """
    if not getattr(X, "_is_fastem_source", False) and isinstance(X, np.ndarray):
        X = ArraySource(X)
    source = as_source(X)
    check_n_features(source.n_features, estimator.n_features_in_, type(estimator).__name__, source.name)
    check_source_feature_names(estimator, source)
    params = estimator._params()
    family = estimator._family()
    K = params.n_components
    wanted = [name for name, flag in (("logprob", logprob), ("label", label), ("resp", resp)) if flag]
    if out is not None and len(wanted) != 1:
        raise ValueError("out= takes exactly one output (log-likelihood, label or responsibilities).")
    specs = {"logprob": (np.float64, ()), "label": (np.int64, ()), "resp": (np.float64, (K,))}
    rows = source.resolved_chunk_rows()
    if mean:
        logprob = True
    chunk_out = {
        "logprob": np.empty(rows) if logprob else NO_F64,
        "label": np.empty(rows, dtype=np.int64) if label else NO_I64,
        "resp": np.empty((rows, K)) if resp else NO_RESP,
    }
    writer = NpyWriter(out, *specs[wanted[0]]) if out is not None else None
    results: dict[str, list | np.ndarray] = {}
    if writer is None and not mean:
        for name in wanted:
            dtype, tail = specs[name]
            n = source.n_samples
            results[name] = np.empty((n, *tail), dtype=dtype) if n is not None else []
    total = 0.0
    n_rows = 0
    try:
        with thread_limit(estimator.n_jobs):
            for start, chunk in iter_chunks(source, verbose=int(estimator.verbose), desc="scoring",
                                            family=family):  # fmt: skip
                m = chunk.shape[0]
                views = {k: v[:m] if v.size else v for k, v in chunk_out.items()}
                family.accumulate(chunk, None, params, None, start,
                                  views["logprob"], views["label"], views["resp"])  # fmt: skip
                if mean:
                    total += float(views["logprob"].sum())
                n_rows += m
                if writer is not None:
                    writer.write(views[wanted[0]])
                elif not mean:
                    for name in wanted:
                        target = results[name]
                        if isinstance(target, list):
                            target.append(views[name].copy())
                        else:
                            target[start : start + m] = views[name]
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if mean:
        if n_rows == 0:
            raise ValueError(f"{source.name} holds no rows.")
        return {"mean": total / n_rows, "n_samples": n_rows}
    if writer is not None:
        writer.commit()
        return {wanted[0]: np.load(writer.path, mmap_mode="r")}
    for name in wanted:
        if isinstance(results[name], list):
            dtype, tail = specs[name]
            parts = results[name]
            results[name] = np.concatenate(parts) if parts else np.empty((0, *tail), dtype=dtype)
    return results


def impute_source(estimator, family, X, out=None) -> np.ndarray:
    """``estimator.impute`` over a source, chunk by chunk (``family`` lets NaN through).

    With ``out`` (a ``.npy`` path) the completed rows are written there
    atomically with bounded memory and returned as a read-only memory map;
    otherwise they are gathered into one array.
    """
    source = as_source(X)
    check_n_features(source.n_features, estimator.n_features_in_, type(estimator).__name__, source.name)
    check_source_feature_names(estimator, source)
    params = estimator._params()
    writer = NpyWriter(out, source.dtype, (source.n_features,)) if out is not None else None
    parts: list[np.ndarray] = []
    try:
        with thread_limit(estimator.n_jobs):
            for _, chunk in iter_chunks(source, verbose=int(estimator.verbose), desc="imputing",
                                        family=family):  # fmt: skip
                filled = np.asarray(family.impute(chunk, params), dtype=source.dtype)
                if writer is not None:
                    writer.write(filled)
                else:  # the chunk buffer is reused for the next chunk: keep a copy
                    parts.append(filled.copy() if np.shares_memory(filled, chunk) else filled)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.commit()
        return np.load(writer.path, mmap_mode="r")
    if not parts:
        return np.empty((0, source.n_features), dtype=source.dtype)
    return np.concatenate(parts)
