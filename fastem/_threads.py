"""Thread control: ``n_jobs`` maps onto numba's thread count, restored afterwards."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numba


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Threads to use: None = all numba threads; negative counts back like joblib."""
    available = numba.config.NUMBA_NUM_THREADS
    if n_jobs is None:
        return available
    if n_jobs == 0:
        raise ValueError("n_jobs == 0 has no meaning: use None for all cores, or a positive count.")
    if n_jobs < 0:
        return max(1, available + 1 + n_jobs)
    return min(n_jobs, available)


#: Up to this many rows, kernels run on one thread: one block cannot be split,
#: and waking idle threads costs more than the work (badly so on a busy machine).
SERIAL_ROWS = 4096


@contextlib.contextmanager
def thread_limit(n_jobs: int | None, n_rows: int | None = None) -> Iterator[int]:
    """Run numba kernels with ``n_jobs`` threads (one for at most SERIAL_ROWS rows)."""
    previous = numba.get_num_threads()
    threads = resolve_n_jobs(n_jobs)
    if n_rows is not None and n_rows <= SERIAL_ROWS:
        threads = 1
    numba.set_num_threads(threads)
    try:
        yield threads
    finally:
        numba.set_num_threads(previous)


def cpu_count() -> int:
    return os.cpu_count() or 1


@contextlib.contextmanager
def serial_if_small(n_rows: int, block_rows: int) -> Iterator[None]:
    """One thread when the rows fit in one block: waking idle threads costs more than it saves."""
    if n_rows > block_rows:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)
