"""Executor on Dask arrays: the same fused kernel, mapped over row chunks on a cluster.

One EM iteration on a ``dask.array.Array`` whose rows are held in worker
memory (the usual case, see below) is::

    params --(inside the task, or scattered once when large)--> one task per worker:
           [for each row chunk it holds: family.accumulate -> statistics of that chunk]
           --> client: pairwise merge in a tree fixed by chunk order --> M-step

Only parameters (O(K D^2) numbers) go to the workers and only sufficient
statistics (one small object per chunk) come back. One task per worker per
pass, running the kernel on that worker's threads, keeps the scheduler's
per-task cost (a few ms each on a small machine) out of the iteration time,
and no chunk moves between workers. Each chunk still gets its own statistics
and the client merges them in a tree fixed by chunk order, so the fitted
parameters do not depend on the number of workers, on which chunks each one
holds, on which finishes first, nor on a worker being lost and its chunks
recomputed.

Rows in worker memory: an array the user persisted is used where it lies
(chunks beyond a worker's share of the rows are copied once to a worker below
its share). A lazy array (Zarr, Parquet, ...) is read once, each chunk on a
chosen worker so that every worker holds rows in proportion to its threads,
and kept for the fit when it takes at most ``PERSIST_MEMORY_FRACTION`` of the
workers' free memory; otherwise every pass re-reads it, one task per chunk.

Initialisation draws a uniform random sample of ``min(n, init_sample_size)``
rows *on the workers* (row indices drawn on the client from ``random_state``,
so the sample does not depend on the chunking or the number of workers),
gathers only those rows, and runs the usual in-memory initialisation on them.
When the data have no more rows than that, the sample is all rows in order
and the initialisation equals the in-memory one. The same pass checks the
data for NaN/inf and validates ``sample_weight``.

Threads: a per-worker task runs the kernel on ``n_jobs`` numba threads, by
default as many as the worker has threads (so 2 workers x 1 thread on 2 cores
run 1 numba thread each, and 1 worker x 2 threads runs 2). A per-chunk task
(re-reading path) runs on ``n_jobs`` threads, default 1: there Dask's worker
threads are the parallelism.
"""

from __future__ import annotations

import os
import pkgutil
import warnings
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import numpy as np

try:
    import dask
    import dask.array as da
    from dask.base import tokenize
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "Fitting fastem on Dask collections needs the optional dependencies of the 'dask' extra "
        f'(missing module {exc.name!r}). Install them with: pip install "fastem[dask]"'
    ) from exc


from . import __version__
from ._base import check_feature_names, check_random_state, feature_names
from ._executor import FitPlan
from ._threads import thread_limit
from ._validate import WEIGHTS_SUM_TO_ZERO, check_n_features, first_invalid, invalid_message
from .families.base import NO_F64, NO_I64, NO_RESP

__all__ = ["ClusterError", "DaskExecutor", "plan_fit", "sample_size", "score"]

#: Initialisation sample: at least this many rows ...
SAMPLE_ROWS_MIN = 10_000
#: ... and at least this many per component.
SAMPLE_ROWS_PER_COMPONENT = 100

#: dask.config "scheduler" values that mean "do not use a distributed client".
_LOCAL_SCHEDULERS = {"sync", "synchronous", "single-threaded", "threads", "threading", "processes",
                     "multiprocessing"}  # fmt: skip

#: A lazy array is read once and kept in worker memory for the fit when it takes
#: at most this fraction of the workers' free memory (0: always re-read every pass).
PERSIST_MEMORY_FRACTION = 0.5
#: Parameters bigger than this are scattered to the workers once per pass
#: instead of travelling inside each task (through the scheduler).
SCATTER_PARAMS_BYTES = 1 << 20


class ClusterError(RuntimeError):
    """The Dask cluster went away (or is unreachable) while fastem needed it."""


def sample_size(n_samples: int, n_components: int, init_sample_size: int | None = None) -> int:
    """Rows gathered to the client for initialisation.

    ``min(n, init_sample_size)`` (the estimator's parameter, as for data sources),
    or ``min(n, max(10000, 100 K))`` when no size is given.
    """
    if init_sample_size is None:
        init_sample_size = max(SAMPLE_ROWS_MIN, SAMPLE_ROWS_PER_COMPONENT * n_components)
    return int(min(n_samples, init_sample_size))


# ---------------------------------------------------------------------- worker-side tasks
# These run on the workers. They import nothing beyond fastem's own modules, get
# numpy blocks and return small objects only.


def _as_kernel_block(block: np.ndarray) -> np.ndarray:
    """A C-contiguous float32/float64 block, as the kernels need (no copy if already so)."""
    if block.dtype not in (np.float32, np.float64):
        block = block.astype(np.float64)
    return np.ascontiguousarray(block)


def _block_stats(block: np.ndarray, sample_weight: np.ndarray | None, family, params, row_offset: int,
                 n_threads: int):  # fmt: skip
    """E-step + statistics of one row chunk: the only thing a fit task sends back."""
    block = _as_kernel_block(block)
    sw = None if sample_weight is None else np.ascontiguousarray(sample_weight, dtype=np.float64)
    stats = family.zero_stats(params)
    with thread_limit(n_threads):
        family.accumulate(block, sw, params, stats, row_offset)
    return stats


def _worker_stats(blocks: list, weights: list, family, params, offsets: list[int], n_threads: int):
    """Statistics of every row chunk one worker holds, one object per chunk: one task per worker per pass.

    Returns the worker's address too, so the client notices when a chunk had to
    be recomputed elsewhere (a lost worker) and regroups the next pass.
    """
    from distributed import get_worker

    stats = [
        _block_stats(block, sw, family, params, offset, n_threads)
        for block, sw, offset in zip(blocks, weights, offsets, strict=True)
    ]
    return get_worker().address, stats


def _copy_block(block: np.ndarray) -> np.ndarray:
    """A chunk under a new key on the worker that runs this (moved there once, for the fit)."""
    return block


def _survey_block(block: np.ndarray, sample_weight: np.ndarray | None, rows: np.ndarray, family) -> dict:
    """Validation and sampling of one chunk: the first refused value, weight checks, sampled rows."""
    block = _as_kernel_block(block)
    out: dict[str, Any] = {"n_rows": block.shape[0], "invalid": first_invalid(family, block)}
    out["rows"] = np.ascontiguousarray(block[rows])
    if getattr(family, "needs_data_moments", False) and out["invalid"] is None:
        from .priors import DataMoments  # a prior's data-dependent hyperparameters

        sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        out["moments"] = DataMoments.of_rows(block, sw)
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=np.float64)
        out["sw_n"] = sw.shape[0]
        nonfinite, negative = np.flatnonzero(~np.isfinite(sw)), np.flatnonzero(sw < 0)
        # the first bad weight of the chunk (-1: none), so that the message can name its row
        out["sw_nonfinite"] = int(nonfinite[0]) if nonfinite.size else -1
        out["sw_negative"] = int(negative[0]) if negative.size else -1
        out["sw_sum"] = float(sw[np.isfinite(sw)].sum())
        out["sw_rows"] = sw[rows]
    return out


def _column_place(names, column: int) -> str | None:
    """A DataFrame column's name for a message, or None."""
    if names is None or not 0 <= column < len(names):
        return None
    return f"column '{names[column]}'"


def _block_score(
    block: np.ndarray,
    family,
    params,
    what: str,
    n_threads: int,
    names=None,
    block_info: dict | None = None,
) -> np.ndarray:
    """Per-row E-step output of one chunk: ``what`` is 'logprob', 'label' or 'resp'."""
    block = _as_kernel_block(block)
    problem = first_invalid(family, block)
    if problem is not None:
        place = _column_place(names, problem.column)
        try:
            offset = int(block_info[0]["array-location"][0][0])
        except (TypeError, KeyError, ValueError, IndexError):  # unknown chunk sizes: no global row
            try:
                chunk = f"Row chunk {int(block_info[0]['chunk-location'][0])} of input X"
            except (TypeError, KeyError, ValueError, IndexError):
                chunk = "A row chunk of input X"
            inner = "; ".join(p for p in ("row within the chunk, whose global start is unknown", place) if p)
            raise ValueError(invalid_message(chunk, problem, 0, inner)) from None
        raise ValueError(invalid_message("Input X", problem, offset, place))
    n = block.shape[0]
    outputs = {"logprob": NO_F64, "label": NO_I64, "resp": NO_RESP}
    if what == "logprob":
        outputs["logprob"] = np.empty(n)
    elif what == "label":
        outputs["label"] = np.empty(n, dtype=np.int64)
    else:
        outputs["resp"] = np.empty((n, params.n_components))
    with thread_limit(n_threads):
        family.accumulate(block, None, params, None, 0, outputs["logprob"], outputs["label"], outputs["resp"])
    return outputs[what]


# ---------------------------------------------------------------------- client side


def _current_client(X: da.Array):
    """The distributed client that will run the graph, or None for the local scheduler.

    A collection persisted on a cluster belongs to that cluster's client; otherwise
    the current/default client is used, unless ``dask.config`` names a local scheduler.
    """
    try:
        from distributed import default_client, futures_of
    except ImportError:  # dask without distributed: local scheduler only
        return None
    futures = futures_of(X)
    if futures:
        client = futures[0].client
        if client is None or client.status in ("closing", "closed"):
            raise ClusterError(
                "X was persisted on a Dask cluster that is no longer running (its client is "
                "closed): its chunks are gone. Start a cluster, load or persist X again, and refit."
            )
        return client
    scheduler = dask.config.get("scheduler", None)
    if isinstance(scheduler, str) and scheduler in _LOCAL_SCHEDULERS:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def _check_workers(client) -> None:
    """Fail early and clearly when a worker cannot import fastem.

    A task that references a module the worker cannot import breaks the worker's
    connection to the scheduler, and the computation then waits forever; so every
    worker is asked first, with a standard-library function that needs no fastem.
    """
    try:
        versions = client.run(pkgutil.resolve_name, "fastem:__version__", on_error="return")
    except Exception as exc:
        raise _cluster_error(client, exc) from exc
    broken = {addr: v for addr, v in versions.items() if isinstance(v, BaseException)}
    if broken:
        addr, err = next(iter(broken.items()))
        raise ImportError(
            f"fastem cannot be imported on {len(broken)} of {len(versions)} Dask workers "
            f"(e.g. {addr}: {type(err).__name__}: {err}). Install fastem on every worker, in the "
            f'same version as the client ({__version__}): pip install "fastem=={__version__}", '
            "or add it to the workers' image/environment."
        )
    other = {addr: v for addr, v in versions.items() if v != __version__}
    if other:
        addr, version = next(iter(other.items()))
        warnings.warn(
            f"Dask worker {addr} runs fastem {version}, the client runs {__version__}: install "
            "the same version everywhere.",
            RuntimeWarning,
            stacklevel=3,
        )


def _cluster_error(client, exc: BaseException) -> ClusterError:
    where = getattr(client, "scheduler", None)
    address = getattr(where, "address", None) or "unknown address"
    return ClusterError(
        f"The Dask cluster (scheduler {address}) went away or became unreachable during the "
        f"fit ({type(exc).__name__}: {exc}). The estimator was left unchanged; restart the "
        "cluster (and reload or re-persist the data) and fit again."
    )


def _compute(client, obj):
    """Compute a Delayed on ``client`` (or the local scheduler), translating cluster loss."""
    if client is None:
        return _on_cluster(None, lambda: dask.compute(obj)[0])
    return _on_cluster(client, lambda: client.compute(obj).result())


def _on_cluster(client, work):
    """``work()``, with a worker that lacks fastem or a lost cluster translated into clear errors."""
    try:
        return work()
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "fastem" or "fastem" in str(exc):
            raise ImportError(
                f"A Dask worker cannot import fastem ({exc}). Install fastem on every worker, in "
                f'the same version as the client: pip install "fastem=={__version__}".'
            ) from exc
        raise
    except Exception as exc:
        # a task's own error (bad file, ...) passes through; a lost cluster gets a clear message
        if client is not None and (client.status != "running" or isinstance(exc, CancelledError)):
            raise _cluster_error(client, exc) from exc
        raise


def _as_dask_array(X, *, lengths: bool) -> tuple[da.Array, Any]:
    """(2-D dask array with one column chunk, feature names) from a Dask array or DataFrame."""
    # a dask DataFrame's ``_meta`` is an empty pandas frame: scikit-learn's own rules apply
    names = feature_names(X._meta) if hasattr(X, "columns") else None
    if hasattr(X, "to_dask_array") and hasattr(X, "columns"):
        X = X.to_dask_array(lengths=lengths)
    if not isinstance(X, da.Array):
        raise TypeError(
            f"fastem accepts dask.array.Array and dask.dataframe.DataFrame, not {type(X).__name__}. "
            "Convert it with .to_dask_array(lengths=True)."
        )
    if X.ndim != 2:
        raise ValueError(
            f"Expected a 2D array, got a {X.ndim}D dask array instead. Reshape your data, e.g. with "
            "X.reshape(-1, 1) for a single feature."
        )
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_) or np.issubdtype(
        X.dtype, np.complexfloating
    ):
        raise ValueError(f"X has dtype {X.dtype}: fastem needs real numbers (float32 or float64).")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})  # a task needs whole rows
    return X, names


def _with_known_chunks(X: da.Array, client) -> da.Array:
    """``X`` with known row-chunk sizes (computed on the workers if needed; only lengths move)."""
    if not any(np.isnan(c) for c in X.chunks[0]):
        return X
    blocks = X.to_delayed().ravel() if X.ndim == 1 else X.to_delayed()[:, 0]
    lengths = _compute(client, dask.delayed(list)([dask.delayed(len)(b) for b in blocks]))
    chunks = (tuple(int(n) for n in lengths), *X.chunks[1:])
    return da.Array(X.dask, X.name, chunks, meta=X._meta)


def _aligned_weights(sample_weight, X: da.Array, client) -> da.Array | None:
    """Per-sample weights as a float64 dask array chunked like the rows of ``X``."""
    if sample_weight is None:
        return None
    if hasattr(sample_weight, "to_dask_array"):  # a dask Series
        sample_weight = sample_weight.to_dask_array(lengths=True)
    if isinstance(sample_weight, da.Array):
        sw = sample_weight
        if sw.ndim == 1:
            sw = _with_known_chunks(sw, client)
    else:
        sw = np.asarray(sample_weight, dtype=np.float64)
        if sw.ndim == 0:
            sw = np.full(X.shape[0], float(sw))
    if sw.ndim != 1 or sw.shape[0] != X.shape[0]:
        raise ValueError(
            f"sample_weight has shape {sw.shape}, but X has {X.shape[0]} samples: pass one weight per sample."
        )
    if not isinstance(sw, da.Array):
        sw = da.from_array(sw, chunks=(X.chunks[0],))
        if client is not None:
            # sent once and held on the workers (while the executor holds this array)
            return client.persist(sw)
        return sw
    if sw.chunks[0] != X.chunks[0]:
        sw = sw.rechunk((X.chunks[0],))
    return sw.astype(np.float64)


def _merge_in_chunk_order(parts: list):
    """Pairwise merge of per-chunk statistics in a tree fixed by chunk order (on the client, in place).

    The tree depends only on the number of chunks, so the result is the same,
    bit for bit, for any number of workers and any order of completion.
    """
    parts = list(parts)
    while len(parts) > 1:
        paired = [parts[i].merge(parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            paired.append(parts[-1])
        parts = paired
    return parts[0]


def _params_node(family, params) -> Any:
    """The parameters as one graph key: shipped once per iteration, shared by all tasks."""
    arrays = family.param_arrays(params)
    token = tokenize(family, *(arrays[k] for k in sorted(arrays)))
    return dask.delayed(params, name="fastem-params-" + token, traverse=False)


def _params_nbytes(family, params) -> int:
    return int(sum(np.asarray(a).nbytes for a in family.param_arrays(params).values()))


def _task_threads(n_jobs: int | None) -> int | None:
    return None if n_jobs is None else int(n_jobs)


def _row_blocks(arr: da.Array) -> list:
    """The Delayed row chunks of ``arr`` (2-D with one column chunk, or 1-D), in row order."""
    return list(arr.to_delayed().ravel())


def _futures_in_memory(arr: da.Array) -> list | None:
    """The futures of ``arr``'s row chunks, in row order, if all are in cluster memory (persisted)."""
    from distributed import futures_of

    by_key = {future.key: future for future in futures_of(arr)}
    keys = [key[0] if isinstance(key, list) else key for key in arr.__dask_keys__()]
    futures = [by_key.get(key) for key in keys]
    return None if not futures or any(f is None for f in futures) else futures


def _room_for(nbytes: int, workers: dict) -> bool:
    """Whether ``nbytes`` take at most PERSIST_MEMORY_FRACTION of the workers' free memory."""
    free = 0
    for info in workers.values():
        limit = info.get("memory_limit") or 0
        if not limit:  # no limit set: the free memory is unknown, do not risk it
            return False
        free += max(0, limit - (info.get("metrics") or {}).get("memory", 0))
    return nbytes <= PERSIST_MEMORY_FRACTION * free


def _share_rows(rows: list[int], holders: list, threads: dict[str, int]) -> list[str]:
    """A worker for each chunk, so that every worker gets rows in proportion to its threads.

    A chunk stays with the worker that holds it (``holders[i]``; None: nobody)
    while that worker stays within its share (plus half the chunk); the other
    chunks go, in row order, to the worker furthest below its share (the first
    in address order among equals, so the choice is deterministic).
    """
    all_threads = sum(threads.values())
    share = {w: sum(rows) * t / all_threads for w, t in threads.items()}
    load = dict.fromkeys(threads, 0.0)
    owner: list = [None] * len(rows)
    for i, (n, holder) in enumerate(zip(rows, holders, strict=True)):
        if holder in load and load[holder] + n <= share[holder] + n / 2:
            owner[i] = holder
            load[holder] += n
    for i, n in enumerate(rows):
        if owner[i] is None:
            worker = max(threads, key=lambda w: share[w] - load[w])
            owner[i] = worker
            load[worker] += n
    return owner


def _place_rows(arr: da.Array, owner: list[str], client) -> list:
    """Futures of ``arr``'s row chunks, chunk i held by worker ``owner[i]``.

    Lazy chunks are computed there. A chunk found in memory (persisted by the
    user, or computed before under the same key) stays where it is if its owner
    is its only holder, else is copied to the owner once (a new key, so the copy
    lives as long as the executor holds it; a second replica is not kept: Dask's
    memory manager may drop it at any time). Restrictions are loose, so that a
    chunk lost with its worker is recomputed on another one; the price is that
    an idle worker may steal a copy task, so misplaced chunks are copied again.
    """
    from distributed import wait

    futures = _futures_in_memory(arr)
    if futures is None:
        blocks = _row_blocks(arr)
        futures = [None] * len(blocks)
        for worker in dict.fromkeys(owner):
            chunks = [i for i, w in enumerate(owner) if w == worker]
            computed = client.compute([blocks[i] for i in chunks], workers=[worker], allow_other_workers=True)
            for i, future in zip(chunks, computed, strict=True):
                futures[i] = future
        wait(futures)
    for _ in range(3):  # a few rounds: an idle worker may steal a copy task from a busy owner
        holders = client.who_has(futures)
        misplaced = [i for i, f in enumerate(futures) if set(holders.get(f.key, ())) != {owner[i]}]
        if not misplaced:
            break
        for i in misplaced:
            futures[i] = client.submit(
                _copy_block, futures[i], workers=[owner[i]], allow_other_workers=True, pure=False
            )
        wait([futures[i] for i in misplaced])
    return futures


class DaskExecutor:
    """Runs E-steps on a Dask cluster: one task per worker per pass; only statistics come back.

    ``input_kind`` is how messages name the input (never the class name).

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Known row-chunk sizes and a single column chunk.
    sample_weight : dask.array.Array of shape (n_samples,) or None
        Weights chunked like the rows of ``X``.
    client : distributed.Client or None
        Where to compute; None uses the local Dask scheduler (one task per chunk).
    family : object
        The component family whose ``accumulate`` runs on the chunks.
    n_threads : int or None, default=None
        numba threads per task; None: as many as the worker has threads (one
        task per worker), 1 for the per-chunk tasks of a re-reading pass.
    keep_in_memory : bool or None, default=None
        Hold the rows (and weights) in worker memory while this executor lives,
        spread over the workers in proportion to their threads. None: when
        ``X`` is already persisted or takes at most ``PERSIST_MEMORY_FRACTION``
        of the workers' free memory. False: every pass re-reads ``X``.
    """

    #: how user-facing messages name what this executor runs on
    input_kind = "Dask collections"

    def __init__(
        self,
        X: da.Array,
        sample_weight: da.Array | None,
        client,
        family,
        n_threads: int | None = None,
        keep_in_memory: bool | None = None,
    ):
        self.X = X
        self.family = family
        self.sample_weight = sample_weight  # holding it keeps persisted weights alive
        self.client = client
        self.n_threads = n_threads
        self.blocks = _row_blocks(X)
        self.sample_weight_blocks = (
            [None] * len(self.blocks) if sample_weight is None else _row_blocks(sample_weight)
        )
        self.offsets = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
        #: per chunk, the futures of its rows and weights in worker memory (None: every pass re-reads)
        self.row_futures: list | None = None
        self.weight_futures: list | None = None
        #: worker address -> the chunks it holds, in row order (one task each per pass)
        self.groups: dict = {}
        self.worker_threads: dict[str, int] = {}
        self._owner: list = []
        if client is not None and keep_in_memory is not False:
            _on_cluster(client, lambda: self._keep_rows_in_memory(keep_in_memory))

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def _keep_rows_in_memory(self, keep: bool | None) -> None:
        client = self.client
        workers = client.scheduler_info()["workers"]
        if not workers:
            return  # no workers yet: re-read (the scheduler waits for them)
        threads = {addr: max(1, int(workers[addr]["nthreads"])) for addr in sorted(workers)}
        persisted = _futures_in_memory(self.X)
        if keep is None and persisted is None:
            nbytes = self.X.nbytes + (0 if self.sample_weight is None else self.sample_weight.nbytes)
            if not _room_for(nbytes, workers):
                return
        holders: list = [None] * len(self.blocks)
        if persisted is not None:
            where = client.who_has(persisted)
            holders = [min(where.get(f.key, ()), default=None) for f in persisted]
        owner = _share_rows([int(n) for n in self.X.chunks[0]], holders, threads)
        self.row_futures = _place_rows(self.X, owner, client)
        self.weight_futures = [None] * len(self.blocks)
        if self.sample_weight is not None:
            self.weight_futures = _place_rows(self.sample_weight, owner, client)
        self.worker_threads = threads
        self._owner = owner
        self._regroup()

    def _regroup(self) -> None:
        """Ask the scheduler which worker holds which chunk (after placement, or after a lost worker)."""
        where = self.client.who_has(self.row_futures)
        groups: dict = {}
        for i, future in enumerate(self.row_futures):
            holders = where.get(future.key, ())
            worker = self._owner[i] if self._owner[i] in holders else min(holders, default=None)
            groups.setdefault(worker, []).append(i)
        self.groups = groups

    def graph(self, params):
        """The Delayed list of per-chunk statistics of one re-reading pass (not computed), in chunk order."""
        node = _params_node(self.family, params)
        task = dask.delayed(_block_stats, pure=True)
        threads = 1 if self.n_threads is None else self.n_threads
        chunks = zip(self.blocks, self.sample_weight_blocks, self.offsets, strict=False)
        return dask.delayed(list)([task(x, sw, self.family, node, int(at), threads) for x, sw, at in chunks])

    def accumulate(self, params):
        """One fused E-step + moment pass over all chunks, on the cluster."""
        if self.row_futures is None:
            return _merge_in_chunk_order(_compute(self.client, self.graph(params)))
        return _on_cluster(self.client, lambda: self._accumulate_on_workers(params))

    def _accumulate_on_workers(self, params):
        client = self.client
        if _params_nbytes(self.family, params) > SCATTER_PARAMS_BYTES:
            # sent once to each worker, not through the scheduler inside every task
            params = client.scatter(params, broadcast=True, hash=False)
        tasks = []
        for worker, chunks in self.groups.items():
            threads = self.n_threads or self.worker_threads.get(worker, 1)
            where = {} if worker is None else {"workers": [worker], "allow_other_workers": True}
            tasks.append(
                client.submit(
                    _worker_stats,
                    [self.row_futures[i] for i in chunks],
                    [self.weight_futures[i] for i in chunks],
                    self.family,
                    params,
                    [int(self.offsets[i]) for i in chunks],
                    threads,
                    pure=False,
                    **where,
                )
            )
        parts: list = [None] * len(self.row_futures)
        moved = False
        for (worker, chunks), (address, stats) in zip(self.groups.items(), client.gather(tasks), strict=True):
            moved |= address != worker
            for i, chunk_stats in zip(chunks, stats, strict=True):
                parts[i] = chunk_stats
        if moved:  # a worker was lost and its chunks recomputed elsewhere: follow them
            self._regroup()
        return _merge_in_chunk_order(parts)


def _survey(executor: DaskExecutor, sample_rows: np.ndarray | None) -> list[dict]:
    """One pass over the chunks: validation results and the sampled rows, per chunk."""
    offsets = executor.offsets
    rows_of = []
    for b in range(len(executor.blocks)):
        if sample_rows is None:
            rows_of.append(np.empty(0, dtype=np.int64))
        else:
            lo, hi = np.searchsorted(sample_rows, offsets[b : b + 2])
            rows_of.append(sample_rows[lo:hi] - offsets[b])
    if executor.row_futures is not None:  # the rows are in worker memory: survey them there
        client, family = executor.client, executor.family
        chunks = list(zip(executor.row_futures, executor.weight_futures, rows_of, strict=True))

        def survey_on_workers():
            tasks = [client.submit(_survey_block, *chunk, family, pure=False) for chunk in chunks]
            return client.gather(tasks)

        return _on_cluster(client, survey_on_workers)
    survey = dask.delayed(_survey_block, pure=True)
    tasks = [
        survey(block, sw, rows, executor.family)
        for block, sw, rows in zip(executor.blocks, executor.sample_weight_blocks, rows_of, strict=True)
    ]
    return _compute(executor.client, dask.delayed(list)(tasks))


def _raise_on_bad_survey(results: list[dict], offsets: np.ndarray, weighted: bool, names=None) -> None:
    for b, res in enumerate(results):
        problem = res["invalid"]
        if problem is not None:
            place = _column_place(names, problem.column)
            raise ValueError(invalid_message("Input X", problem, int(offsets[b]), place))
    if not weighted:
        return
    if any(res["sw_n"] != res["n_rows"] for res in results):
        raise ValueError("sample_weight and X have different chunk lengths: pass one weight per sample.")
    for b, res in enumerate(results):
        if res["sw_nonfinite"] >= 0:
            row = int(offsets[b]) + res["sw_nonfinite"]
            raise ValueError(f"sample_weight contains NaN or infinity at row {row} (counted from 0).")
    for b, res in enumerate(results):
        if res["sw_negative"] >= 0:
            row = int(offsets[b]) + res["sw_negative"]
            raise ValueError(
                f"sample_weight contains a negative value at row {row} (counted from 0): weights must "
                "be >= 0."
            )
    if not sum(res["sw_sum"] for res in results) > 0:
        raise ValueError(WEIGHTS_SUM_TO_ZERO)


def plan_fit(X, sample_weight, request) -> FitPlan:
    """Validate a Dask collection and plan a fit on it (called by the estimators' ``fit``).

    Parameters
    ----------
    X : dask.array.Array or dask.dataframe.DataFrame of shape (n_samples, n_features)
        Training data, chunked by rows.
    sample_weight : array-like or dask.array.Array of shape (n_samples,) or None
        Per-sample weights; a NumPy array is sent to the workers once.
    request : fastem._stream.PlanRequest
        The family, the number of components, the sampling seed and size, and
        the hyper-parameter check to run before any pass.

    Returns
    -------
    plan : FitPlan
        The executor of the passes on the cluster and a sample of rows for initialisation.

    Raises
    ------
    ValueError
        Invalid data or weights (checked on the workers in one pass).
    ImportError
        A worker cannot import fastem.
    ClusterError
        The cluster is gone.
    """
    X, names = _as_dask_array(X, lengths=True)
    n_features = int(X.shape[1])
    # hyper-parameters first: a typo should not cost a pass over the data
    if request.check_parameters is not None:
        request.check_parameters(n_features)
    client = _current_client(X)
    if client is not None:
        _check_workers(client)
    X = _with_known_chunks(X, client)
    n_samples = int(X.shape[0])
    if n_samples < 2:
        raise ValueError(f"Found array with {n_samples} sample(s) while a minimum of 2 is required.")
    sw = _aligned_weights(sample_weight, X, client)
    executor = DaskExecutor(X, sw, client, request.family, _task_threads(request.n_jobs))

    # a sample is drawn even for warm starts and explicit *_init arrays: fit checks its size
    m = sample_size(n_samples, request.n_components, request.init_sample_size)
    if m >= n_samples:
        sample_rows = np.arange(n_samples, dtype=np.int64)  # all rows: same init as in memory
    else:
        seed = check_random_state(request.random_state).randint(np.iinfo(np.int32).max)
        sample_rows = np.sort(np.random.default_rng(seed).choice(n_samples, size=m, replace=False))
    results = _survey(executor, sample_rows)
    _raise_on_bad_survey(results, executor.offsets, sw is not None, names)
    init_X = np.ascontiguousarray(np.concatenate([res["rows"] for res in results]))
    if getattr(request.family, "needs_data_moments", False):
        moments = None
        for res in results:  # in chunk order: the same merge as a streamed scan
            moments = res["moments"] if moments is None else moments.merge(res["moments"])
        executor.data_moments = moments
    init_sw = None
    if sw is not None:
        init_sw = np.ascontiguousarray(np.concatenate([res["sw_rows"] for res in results]))
        if init_X.shape[0] and not init_sw.sum() > 0:
            init_sw = None  # every sampled row has weight 0: initialise unweighted
    return FitPlan(executor, init_X, init_sw, n_samples, n_features, names)


def _store_npy(arr: da.Array, out: str | os.PathLike, client) -> np.ndarray:
    """Compute ``arr`` into the ``.npy`` file ``out`` (atomically) and return it memory-mapped.

    Chunks are computed a few at a time (as many as the cluster has threads) and
    written as they arrive, so the client holds only that many chunks.
    """
    arr = _with_known_chunks(arr, client)
    path = Path(out)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    blocks = list(arr.to_delayed().ravel())
    offsets = np.concatenate([[0], np.cumsum(arr.chunks[0])]).astype(np.int64)
    batch = 4
    if client is not None:
        batch = max(1, sum(w["nthreads"] for w in client.scheduler_info()["workers"].values()))
    try:
        target = np.lib.format.open_memmap(tmp, mode="w+", dtype=arr.dtype, shape=arr.shape)
        for start in range(0, len(blocks), batch):
            done = _compute(client, dask.delayed(list)(blocks[start : start + batch]))
            for b, values in enumerate(done, start):
                target[offsets[b] : offsets[b + 1]] = values
        target.flush()
        del target
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return np.load(path, mmap_mode="r")


def score(
    estimator,
    X,
    *,
    logprob: bool = False,
    label: bool = False,
    resp: bool = False,
    out: str | os.PathLike | None = None,
) -> dict:
    """Lazy per-row E-step outputs on a Dask collection (called by ``GaussianMixture._score``).

    Parameters
    ----------
    estimator : GaussianMixture
        A fitted estimator.
    X : dask.array.Array or dask.dataframe.DataFrame of shape (n_samples, n_features)
    logprob, label, resp : bool
        Which outputs to build.
    out : str or PathLike, default=None
        Compute the (single) requested output into this ``.npy`` file on the
        client, chunk by chunk, and return it as a read-only memory map.

    Returns
    -------
    outputs : dict
        ``"logprob"`` (n_samples,) float64, ``"label"`` (n_samples,) int64 and
        ``"resp"`` (n_samples, n_components) float64 as lazy ``dask.array.Array``
        for the requested keys (memory maps with ``out``), None for the others.
    """
    check_feature_names(estimator, X._meta if hasattr(X, "columns") else X)
    X, names = _as_dask_array(X, lengths=False)
    names = None if names is None else [str(n) for n in names]
    check_n_features(X.shape[1], estimator.n_features_in_, type(estimator).__name__)
    client = _current_client(X)
    if client is not None:
        _check_workers(client)
    params, family = estimator._params(), estimator._family()
    node = _params_node(family, params)
    threads = _task_threads(estimator.n_jobs) or 1  # one task per chunk: Dask's threads are the parallelism
    outputs: dict[str, Any] = {"logprob": None, "label": None, "resp": None}
    if logprob:
        outputs["logprob"] = X.map_blocks(
            _block_score, family, node, "logprob", threads, names, drop_axis=1, dtype=np.float64,
            meta=np.empty(0),
        )  # fmt: skip
    if label:
        outputs["label"] = X.map_blocks(
            _block_score, family, node, "label", threads, names, drop_axis=1, dtype=np.int64,
            meta=np.empty(0, dtype=np.int64),
        )  # fmt: skip
    if resp:
        outputs["resp"] = X.map_blocks(
            _block_score, family, node, "resp", threads, names, chunks=(X.chunks[0], (params.n_components,)),
            dtype=np.float64, meta=np.empty((0, 0)),
        )  # fmt: skip
    if out is not None:
        requested = [key for key, value in outputs.items() if value is not None]
        if len(requested) != 1:
            raise ValueError("'out' takes exactly one output (logprob, label or resp).")
        outputs[requested[0]] = _store_npy(outputs[requested[0]], out, client)
    return outputs
