"""Compile-time settings shared by every numba kernel (one place to change them)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numba

#: fastmath flags that keep inf/NaN semantics (no "nnan"/"ninf"): reassociation
#: lets LLVM vectorise the reductions over rows, "afn" allows faster exp/log.
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

#: Rows per statistics block. Each block's sufficient statistics are computed by
#: one thread and added into the running total in row order, so results do not
#: depend on the thread count, and a stream whose chunk sizes are multiples of
#: BLOCK_ROWS reproduces the in-memory fit bit for bit.
BLOCK_ROWS = 4096

#: Rows processed together inside a block; rows sit in the SIMD lanes.
TILE_ROWS = 128

#: Tile rows for diag/spherical covariances, whose per-row work is small: longer
#: tiles amortise the per-tile sweeps (measured 12% faster at D=8, K=8; 512 was
#: slower, and 256 rows made full covariance 11% slower).
DIAG_TILE_ROWS = 256

#: Integer codes of the covariance types, as the kernels see them.
COV_CODES = {"full": 0, "tied": 1, "diag": 2, "spherical": 3}

JIT_OPTIONS = dict(nogil=True, cache=True, fastmath=set(FASTMATH), error_model="numpy")


def _kernel_sources_digest() -> str:
    """SHA-256 of every module in this folder (names and bytes), read once at import (about 1 ms)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


#: Part of every kernel's cache stamp. numba checks a cached kernel only against its own file, but a
#: kernel inlines helpers, overloads and intrinsics from the other modules here: without this, an
#: edit or an upgrade that changed only ``_simd.py`` would silently load kernels compiled from the
#: old one (cache files outlive ``pip uninstall``). Any change here recompiles every kernel once.
KERNEL_SOURCES_DIGEST = _kernel_sources_digest()


def _stamp_with_kernel_sources(dispatcher):
    # numba keeps the stamp its cache index must match in the dispatcher's cache file object
    # (numba 0.68; tests/test_compile.py fails if that moves, rather than going stale silently)
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if cache_file is not None and hasattr(cache_file, "_source_stamp"):
        cache_file._source_stamp = (cache_file._source_stamp, KERNEL_SOURCES_DIGEST)
    return dispatcher


def jit(**overrides):
    """``numba.njit`` with the package-wide options; cached kernels are tied to all kernel sources."""
    decorate = numba.njit(**{**JIT_OPTIONS, **overrides})
    return lambda function: _stamp_with_kernel_sources(decorate(function))


def _install_compile_notice() -> None:
    # every kernel module imports this one: the notice is listening before anything compiles
    from ._notice import install_notice

    install_notice()


_install_compile_notice()
