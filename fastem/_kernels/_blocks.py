"""Block-parallel kernels without ``parallel=True``: a pool of Python threads runs serial numba kernels.

Every kernel processes rows in blocks of ``BLOCK_ROWS`` and writes one partial
result per block, added afterwards in block order, so results do not depend on
the thread count. Such a loop needs no parfor machinery: each kernel here is a
plain ``nogil`` function over a range of blocks, and :func:`run_blocks` gives
each thread one contiguous range. Compiling a kernel this way takes about a
third of the time numba's ``parallel=True`` takes for the same loop (parfor
analysis, outlining the body into a gufunc, and LLVM optimising and emitting
the body twice), which is most of what a first fit used to wait for.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import os
import threading
from collections.abc import Iterator, Sequence

import numba
import numpy as np

from .._threads import thread_limit
from ._config import BLOCK_ROWS, jit

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()
_partials = threading.local()  # .buffer: the calling thread's reused partials, None outside a scope


def n_blocks_of(n_rows: int) -> int:
    """Blocks of ``BLOCK_ROWS`` rows covering ``n_rows`` rows (the last one may be short)."""
    return (n_rows + BLOCK_ROWS - 1) // BLOCK_ROWS


def _thread_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():  # a forked child cannot use its parent's threads
            workers = max(1, numba.config.NUMBA_NUM_THREADS - 1)
            _pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="fastem")
            _pool_pid = os.getpid()
        return _pool


def run_blocks(kernel, n_blocks: int, *args, on_first_range=None) -> None:
    """``kernel(*args, start, stop)`` over contiguous ranges of ``range(n_blocks)``, one per thread.

    Uses ``numba.get_num_threads()`` threads (the caller's setting, as numba's
    parallel loops do, so ``n_jobs`` and ``numba.set_num_threads`` apply): the
    calling thread runs the first range, pool threads the others. Kernels must
    be ``nogil`` and write each block's results to its own slot.

    ``on_first_range(stop)``, if given, runs on the calling thread once blocks 0 to ``stop``
    (exclusive) are done, while the other threads may still run theirs: the caller can start
    merging the first blocks' partials in block order instead of waiting.
    """
    threads = min(numba.get_num_threads(), n_blocks)
    if threads <= 1:
        kernel(*args, 0, n_blocks)
        if on_first_range is not None:
            on_first_range(n_blocks)
        return
    bounds = [n_blocks * i // threads for i in range(threads + 1)]
    pool = _thread_pool()
    futures = [pool.submit(kernel, *args, bounds[i], bounds[i + 1]) for i in range(1, threads)]
    try:
        kernel(*args, bounds[0], bounds[1])
        if on_first_range is not None:
            on_first_range(bounds[1])
    finally:
        for future in futures:
            future.result()


@contextlib.contextmanager
def reused_block_partials() -> Iterator[None]:
    """Passes made on this thread inside the block keep one buffer for their per-block partials.

    A full-covariance pass writes K D^2 partial sums per block (51 MB at 2e5 x 64, K=32): fresh
    memory every pass is fresh pages, and faulting them in took 0.05-0.1 s of system time per pass
    on these virtual machines (a quarter of a 0.2 s pass), mostly on one thread. Inside the scope
    the pages stay mapped from one pass to the next; the buffer is released when the scope ends,
    so the peak memory is that of one pass, as before. Nested scopes share the outer buffer (a
    pass's partials are dead once it returns). Each calling thread has its own buffer.
    """
    if getattr(_partials, "buffer", None) is not None:
        yield
        return
    _partials.buffer = np.empty(0)
    try:
        yield
    finally:
        _partials.buffer = None


def block_partials(*shapes: tuple[int, ...]) -> list[np.ndarray]:
    """Uninitialised float64 arrays of ``shapes``: per-block partials whose kernel zeroes each
    block's slots before adding to them (the values are stale otherwise).

    Views of the calling thread's buffer inside :func:`reused_block_partials`, grown when a pass
    needs more; fresh arrays outside it.
    """
    sizes = [math.prod(shape) for shape in shapes]
    total = sum(sizes)
    buffer = getattr(_partials, "buffer", None)
    if buffer is None:
        buffer = np.empty(total)
    elif buffer.size < total:
        _partials.buffer = None  # the old pages go before the new ones are touched
        buffer = _partials.buffer = np.empty(total)
    arrays, start = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        arrays.append(buffer[start : start + size].reshape(shape))
        start += size
    return arrays


def map_on_threads(fn, items: Sequence) -> list:
    """``[fn(item) for item in items]``, the items shared among ``numba.get_num_threads()`` threads.

    For many small independent jobs (k-means seedings on a sample), whose kernels are too short to
    split their rows among threads: each thread takes the next item when it has finished one, and
    runs its kernels on one thread. Results come in item order, each what ``fn(item)`` gives alone
    (the kernels' results do not depend on the thread count). ``fn`` must not submit to the pool.
    """
    threads = min(numba.get_num_threads(), len(items))
    results: list = [None] * len(items)
    pending = iter(range(len(items)))
    lock = threading.Lock()

    def work() -> None:
        with thread_limit(1):
            while True:
                with lock:
                    index = next(pending, None)
                if index is None:
                    return
                results[index] = fn(items[index])

    if threads <= 1:
        work()
        return results
    futures = [_thread_pool().submit(work) for _ in range(threads - 1)]
    try:
        work()
    finally:
        for future in futures:
            if not future.cancel():  # a worker that never started (a busy pool) has nothing to give
                future.result()
    return results


@jit()
def _add_rows(parts, acc):
    """acc[j] += parts[blk, j] for blk in order: the serial merge of per-block partials."""
    for blk in range(parts.shape[0]):
        for j in range(parts.shape[1]):
            acc[j] += parts[blk, j]


def add_partials(parts, acc) -> None:
    """``acc += parts[0]; acc += parts[1]; ...`` in block order (float64, both C-contiguous).

    ``parts`` is (n_blocks, *acc.shape); one compiled signature serves every
    kernel, since both are seen flat.
    """
    if not acc.flags.c_contiguous:  # reshape would copy, and the sums would be lost
        raise ValueError("add_partials needs a C-contiguous accumulator")
    if parts.shape[0]:
        _add_rows(parts.reshape(parts.shape[0], -1), acc.reshape(-1))


def merge_block_scalars(part_sums, part_worst, part_worst_row, X, row_offset, acc_scalars, acc_worst_index,
                        acc_worst_x) -> None:  # fmt: skip
    """Fold a pass's per-block scalars into the statistics' accumulators, in block order.

    ``part_sums[blk]`` is (log-likelihood, weight) and ``part_worst[blk]`` the
    block's lowest log-likelihood at row ``part_worst_row[blk]`` of ``X``.
    ``acc_scalars`` is [sum w * loglik, sum w, worst, rows]; the worst row keeps the
    first block with the lowest value, as a sequential scan would.
    """
    add_partials(part_sums, acc_scalars[:2])
    acc_scalars[3] += X.shape[0]  # a whole number: exact in any order
    if part_worst.shape[0]:
        blk = int(np.argmin(part_worst))
        if part_worst[blk] < acc_scalars[2]:
            acc_scalars[2] = part_worst[blk]
            acc_worst_index[0] = row_offset + part_worst_row[blk]
            acc_worst_x[:] = X[part_worst_row[blk]]
