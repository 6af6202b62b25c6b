"""Data sources: where chunks of rows come from when the data do not fit in memory.

A source yields the rows of a 2-D float array in order, ``chunk_rows`` at a
time, into a few buffers that are reused from pass to pass, so that memory use
does not grow with the data. :class:`GaussianMixture` accepts a source wherever
it accepts an array (``fit``, ``predict``, ``predict_proba``,
``score_samples``, ``score``); each EM iteration is then one sequential pass
over the source while a reader thread fetches the next chunk (see
``fastem._stream``).

=================================  =========================================  ===============
source                             reads                                      needs
=================================  =========================================  ===============
:class:`NpySource`                 ``.npy`` file of any size (C order)        --
:class:`RawSource`                 raw binary with a given dtype and shape    --
:class:`HDF5Source`                a dataset of an HDF5 file                  ``fastem[hdf5]``
:class:`ZarrSource`                a Zarr array (path or array object)        ``fastem[zarr]``
:class:`ParquetSource`             Parquet file(s) / dataset, numeric columns ``fastem[parquet]``
:class:`CSVSource`                 CSV through pyarrow's streaming reader     ``fastem[csv]``
:class:`CallableSource`            ``f()`` returning an iterator of chunks    --
:class:`ArraySource`               an in-memory array, chunk by chunk         --
=================================  =========================================  ===============

A path string works directly when its suffix is known (``.npy``, ``.h5`` /
``.hdf5`` with a single dataset or ``"file.h5:/group/dataset"``, ``.zarr``,
``.parquet`` / ``.pq``, ``.csv``); a plain callable is wrapped in a
:class:`CallableSource`. Use :func:`as_source` to get the same conversion.

Column names: the names of the columns read from a Parquet or CSV file (a CSV
file's header line) become the estimator's ``feature_names_in_``, as a
DataFrame's do. Errors name the place in the input's own terms: the row and
column indices counted from 0, and for a CSV file its 1-based line number.

Missing values: every source hands NaN on as NaN, and pyarrow's null values
become NaN too: a null in a Parquet column, and in a CSV file an empty field
or one of pyarrow's null markers (``NA``, ``N/A``, ``n/a``, ``#N/A``, ``NULL``,
``null``, ``NaN``, ``nan``, ``-nan``, ...; see
``pyarrow.csv.ConvertOptions().null_values``). An estimator with
``missing="marginalize"`` (GaussianMixture, PoissonMixture, BernoulliMixture)
treats them as missing entries; otherwise they are refused with the row,
column (and a CSV file's line) named, as in memory.

Chunk sizes: the fit over a source is bitwise identical to the in-memory fit
when ``chunk_rows`` is a multiple of :data:`fastem.BLOCK_ROWS` (the default
is), and equal to within about 1e-12 relative otherwise.
"""

from __future__ import annotations

import abc
import codecs
import contextlib
import csv
import hashlib
import mmap
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from ._kernels._config import BLOCK_ROWS

__all__ = [
    "ArraySource",
    "CSVSource",
    "CallableSource",
    "HDF5Source",
    "NpySource",
    "ParquetSource",
    "RawSource",
    "Source",
    "ZarrSource",
    "as_source",
]

#: Target size of one chunk buffer; three buffers are alive during a pass.
DEFAULT_CHUNK_BYTES = 32 * 2**20

#: Rows hashed at the head and tail of a source for its checkpoint fingerprint.
FINGERPRINT_ROWS = BLOCK_ROWS


def _missing_extra(package: str, extra: str, what: str) -> ImportError:
    return ImportError(
        f"Reading {what} needs the optional package '{package}', which is not installed. "
        f'Install it with: pip install "fastem[{extra}]"'
    )


def _as_float_dtype(dtype) -> np.dtype:
    """float32 stays float32 (statistics still accumulate in float64); the rest become float64."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return dtype
    if dtype.kind not in "fiub":
        raise TypeError(f"data of dtype {dtype} are not numeric: fastem needs numbers.")
    return np.dtype(np.float64)


def _check_file(path: Path, what: str) -> None:
    """Missing or unreadable file: a clear error before any work."""
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: '{path}'.")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{what} '{path}' is not readable (check its permissions).")


class Source(abc.ABC):
    """Base class of data sources: rows of a 2-D numeric array, read in chunks.

    Subclasses implement :meth:`_open` (validate and read metadata; raise a
    clear error for a missing, unreadable or truncated input) and
    :meth:`_fill` (write the rows of the data into buffers handed out by
    ``take``). Everything else (prefetching, validation of every chunk,
    reservoir sampling) is shared.

    Parameters
    ----------
    chunk_rows : int or None, default=None
        Rows per chunk. None picks a multiple of ``BLOCK_ROWS`` near 32 MiB per
        chunk. Multiples of ``BLOCK_ROWS`` give results bitwise identical to the
        in-memory fit.
    """

    #: lets ``GaussianMixture`` recognise a source without importing this module
    _is_fastem_source = True
    #: short name of the format, used in messages and fingerprints
    kind = "source"

    def __init__(self, chunk_rows: int | None = None):
        if chunk_rows is not None and (
            not isinstance(chunk_rows, (int, np.integer)) or isinstance(chunk_rows, bool) or chunk_rows < 1
        ):
            raise ValueError(f"Invalid value for 'chunk_rows': {chunk_rows!r}. It must be an integer >= 1.")
        self.chunk_rows = None if chunk_rows is None else int(chunk_rows)
        self._opened = False
        self.n_samples: int | None = None
        self.n_features: int = 0
        self.dtype: np.dtype = np.dtype(np.float64)

    # ------------------------------------------------------------ to implement
    @abc.abstractmethod
    def _open(self) -> None:
        """Check the input exists and set ``n_samples`` (None if unknown), ``n_features``, ``dtype``."""

    @abc.abstractmethod
    def _fill(self, take: Callable[[], np.ndarray]) -> Iterator[tuple[np.ndarray, int]]:
        """Yield ``(chunk, n_rows)`` in row order, one per ``take()`` call.

        ``take()`` hands out a reusable buffer to fill; a source may instead
        yield arrays of its own (memory-mapped windows) and use ``take()``
        only to bound the chunks in flight.
        """

    # ------------------------------------------------------------ shared
    def open(self) -> Source:
        """Validate the input and read its metadata (idempotent). Returns ``self``."""
        if not self._opened:
            self._open()
            self._opened = True
        return self

    @property
    def name(self) -> str:
        """How messages refer to this source."""
        return f"{self.kind} source"

    @property
    def path(self) -> str | None:
        return None

    @property
    def feature_names(self) -> np.ndarray | None:
        """Names of the columns read (object array, as ``feature_names_in_``), or None without names."""
        return None

    def locate(self, row: int, column: int) -> str | None:
        """A place in the input's own terms (line of a text file, column name), or None.

        ``row`` and ``column`` are 0-based indices of the rows and columns this
        source yields (``column`` is -1 for a whole row). Called only to word an
        error message, so it may be slow (a text file is read again up to ``row``).
        """
        return None

    def resolved_chunk_rows(self) -> int:
        """``chunk_rows``, or the default: a multiple of BLOCK_ROWS near 32 MiB."""
        if self.chunk_rows is not None:
            return self.chunk_rows
        row_bytes = max(1, self.n_features) * self.dtype.itemsize
        blocks = max(1, DEFAULT_CHUNK_BYTES // (row_bytes * BLOCK_ROWS))
        return BLOCK_ROWS * int(blocks)

    def fingerprint_meta(self) -> dict:
        """Identity of the input (format, path, size) for checkpoint fingerprints."""
        meta = {"kind": self.kind, "path": self.path}
        if self.path is not None and os.path.isfile(self.path):
            meta["file_size"] = os.path.getsize(self.path)
        return meta

    def __repr__(self) -> str:
        where = f"'{self.path}'" if self.path else ""
        return f"{type(self).__name__}({where}{', ' if where else ''}chunk_rows={self.chunk_rows})"


def _rechunk(
    pieces: Iterable[np.ndarray], take: Callable[[], np.ndarray], n_features: int, name: str
) -> Iterator[tuple[np.ndarray, int]]:
    """Copy arrays of any row counts into full buffers (the last one may be partial)."""
    buf = take()
    pos = 0
    seen = 0
    for piece in pieces:
        piece = np.asarray(piece)
        if piece.ndim == 1 and n_features == 1:
            piece = piece[:, None]
        if piece.ndim != 2:
            raise ValueError(
                f"{name} yielded a chunk with {piece.ndim} dimension(s) at row {seen}: chunks must be 2-D."
            )
        if piece.shape[1] != n_features:
            raise ValueError(
                f"{name} yielded a chunk with {piece.shape[1]} columns at row {seen}, but the "
                f"data have {n_features} columns: every chunk needs the same number of columns."
            )
        if piece.dtype.kind not in "fiub":
            raise TypeError(f"{name} yielded a chunk of non-numeric dtype {piece.dtype} at row {seen}.")
        seen += piece.shape[0]
        start = 0
        while start < piece.shape[0]:
            n = min(buf.shape[0] - pos, piece.shape[0] - start)
            buf[pos : pos + n] = piece[start : start + n]
            pos += n
            start += n
            if pos == buf.shape[0]:
                yield buf, pos
                buf = take()
                pos = 0
    if pos:
        yield buf, pos


# ---------------------------------------------------------------------- files
class _FileSource(Source):
    """A source that reads one file: ``path`` and the name messages use come from it."""

    def __init__(self, path, chunk_rows: int | None = None):
        super().__init__(chunk_rows)
        self._path = Path(path)
        self._spelling = os.fspath(path)  # messages name the file as the user wrote it

    @property
    def path(self) -> str:
        return str(self._path.resolve())

    @property
    def name(self) -> str:
        return f"'{self._spelling}'"


class _BinaryFileSource(_FileSource):
    """Rows of a fixed dtype stored contiguously in a file from byte ``_offset`` on.

    Subclasses set ``_offset``, ``_file_dtype`` and the shape (in ``__init__`` or
    ``_open``). A file already in float32/float64 is read through memory-mapped
    windows (no copy); any other dtype is read into a buffer and converted.
    """

    _offset: int
    _file_dtype: np.dtype

    def _fill(self, take):
        if self._file_dtype == self.dtype and self.n_samples:
            yield from _map_windows(self._path, self._offset, self.dtype, self.n_samples, self.n_features,
                                    self.resolved_chunk_rows(), take, self.name)  # fmt: skip
            return
        yield from _read_binary(self._path, self._offset, self._file_dtype, self.dtype, self.n_samples,
                                self.n_features, take, self.name)  # fmt: skip


class NpySource(_BinaryFileSource):
    """A ``.npy`` file of any size, read chunk by chunk.

    The file is never mapped whole (touched pages would count as resident
    memory): each chunk is a memory-mapped window, unmapped once used (or, when
    the file's dtype needs converting, read with ``readinto`` into a reused
    buffer), so memory stays bounded by a few chunks.

    Parameters
    ----------
    path : str or PathLike
        A C-ordered 2-D (or 1-D, taken as one feature) numeric ``.npy`` file.
    chunk_rows : int or None, default=None
        Rows per chunk (see :class:`Source`).
    """

    kind = "npy"

    def __init__(self, path, chunk_rows: int | None = None):
        super().__init__(path, chunk_rows)
        self._offset = 0

    def _open(self) -> None:
        _check_file(self._path, ".npy file")
        try:
            with open(self._path, "rb") as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:  # version 3 differs from 2 only by a UTF-8 header, which numeric dtypes never need
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                self._offset = f.tell()
        except (ValueError, OSError, SyntaxError) as exc:
            raise ValueError(f"'{self._spelling}' is not a valid .npy file: {exc}") from None
        if fortran and len(shape) == 2 and shape[0] > 1 and shape[1] > 1:
            raise ValueError(
                f"'{self._spelling}' is stored in Fortran (column-major) order, which cannot be read row "
                "by row. Rewrite it in C order (np.save(path, np.ascontiguousarray(X)))."
            )
        if len(shape) not in (1, 2):
            raise ValueError(f"'{self._spelling}' holds an array of shape {shape}: fastem needs 2-D data.")
        if dtype.hasobject or dtype.kind not in "fiub":
            raise ValueError(f"'{self._spelling}' holds dtype {dtype}: fastem needs numeric data.")
        n_samples = int(shape[0])
        n_features = int(shape[1]) if len(shape) == 2 else 1
        expected = self._offset + n_samples * n_features * dtype.itemsize
        actual = self._path.stat().st_size
        if actual < expected:
            raise ValueError(
                f"'{self._spelling}' is truncated: its header announces shape {tuple(shape)} of {dtype} "
                f"({expected} bytes with the header) but the file has {actual} bytes."
            )
        self._file_dtype = dtype
        self.n_samples, self.n_features = n_samples, n_features
        self.dtype = _as_float_dtype(dtype)


def _map_windows(path, offset, dtype, n_samples, n_features, chunk_rows, take, name):
    """Chunks as memory-mapped windows of the file, one mapping per chunk.

    Reading from the page cache through a mapping costs no copy; ``read`` into
    a buffer costs a memcpy per byte, which on a 2-core machine competes with
    both kernel threads (measured: streamed passes at 72-76% of in-memory speed
    with ``readinto``, 93-95% through mappings). Each window is mapped in the
    reader thread with MADV_WILLNEED (read-ahead starts early) and unmapped as
    soon as the consumer drops it, so resident memory stays at the few windows
    in flight whatever the file size. The mapping is private and writable
    (copy-on-write, never written) so the kernels see ordinary writable arrays;
    MAP_POPULATE is not used: on a private writable mapping it copies every
    page (measured 2x slower). ``take()`` hands out a slot per window: it
    bounds the windows in flight like the buffers of the read path.
    """
    row_bytes = n_features * dtype.itemsize
    flags = mmap.MAP_PRIVATE
    with open(path, "rb") as f:
        for start in range(0, n_samples, chunk_rows):
            take()
            m = min(chunk_rows, n_samples - start)
            first = offset + start * row_bytes
            if os.fstat(f.fileno()).st_size < first + m * row_bytes:
                # checked before mapping: touching a page past the end would raise SIGBUS
                raise ValueError(
                    f"{name} is truncated: expected {n_samples} rows but the file ends before row "
                    f"{start + m}; was it changed during the fit?"
                )
            aligned = first - first % mmap.ALLOCATIONGRANULARITY
            length = first - aligned + m * row_bytes
            window = mmap.mmap(f.fileno(), length, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE,
                               offset=aligned)  # fmt: skip
            if hasattr(window, "madvise"):
                window.madvise(mmap.MADV_WILLNEED)
            chunk = np.frombuffer(window, dtype=dtype, count=m * n_features, offset=first - aligned)
            yield chunk.reshape(m, n_features), m
            del chunk, window


def _read_binary(path, offset, file_dtype, dtype, n_samples, n_features, take, name):
    """Sequential ``readinto`` of fixed-size rows into reused buffers."""
    native = file_dtype == dtype  # read straight into the buffer
    row_bytes = n_features * file_dtype.itemsize
    staging = None
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        done = 0
        while done < n_samples:
            buf = take()
            n = min(buf.shape[0], n_samples - done)
            if native:
                target = buf
            else:
                if staging is None or staging.shape[0] < n:
                    staging = np.empty((buf.shape[0], n_features), dtype=file_dtype)
                target = staging
            view = memoryview(target[:n].reshape(-1).view(np.uint8))
            got = 0
            while got < n * row_bytes:
                read = f.readinto(view[got:])
                if not read:
                    raise ValueError(
                        f"{name} is truncated: expected {n_samples} rows but the file ends near row "
                        f"{done + got // row_bytes}."
                    )
                got += read
            if not native:
                buf[:n] = target[:n]
            done += n
            yield buf, n


class RawSource(_BinaryFileSource):
    """Raw binary rows of a given dtype (no header), e.g. written with ``ndarray.tofile``.

    Parameters
    ----------
    path : str or PathLike
    dtype : dtype
        Element type as stored, including byte order (e.g. ``'<f4'``).
    shape : tuple of int
        ``(n_samples, n_features)``; ``n_samples`` may be -1 (taken from the file size).
    offset : int, default=0
        Bytes to skip at the start of the file.
    chunk_rows : int or None, default=None
    """

    kind = "raw"

    def __init__(self, path, dtype, shape, *, offset: int = 0, chunk_rows: int | None = None):
        super().__init__(path, chunk_rows)
        self._file_dtype = np.dtype(dtype)
        self._shape = tuple(int(s) for s in shape)
        self._offset = int(offset)
        if len(self._shape) != 2:
            raise ValueError(f"RawSource needs a 2-D shape (n_samples, n_features), got {shape}.")

    def _open(self) -> None:
        _check_file(self._path, "raw data file")
        n_samples, n_features = self._shape
        row_bytes = n_features * self._file_dtype.itemsize
        available = self._path.stat().st_size - self._offset
        if n_samples < 0:
            if available % row_bytes:
                raise ValueError(
                    f"'{self._spelling}' holds {available} bytes after the offset, not a multiple of one "
                    f"row ({n_features} x {self._file_dtype}, {row_bytes} bytes): wrong dtype or shape?"
                )
            n_samples = available // row_bytes
        elif available < n_samples * row_bytes:
            raise ValueError(
                f"'{self._spelling}' is truncated: shape {self._shape} of {self._file_dtype} needs "
                f"{n_samples * row_bytes} bytes after the offset but the file has {available}."
            )
        self.n_samples, self.n_features = int(n_samples), n_features
        self.dtype = _as_float_dtype(self._file_dtype)

    def fingerprint_meta(self) -> dict:
        return {**super().fingerprint_meta(), "offset": self._offset, "file_dtype": self._file_dtype.str}


class HDF5Source(_FileSource):
    """A 2-D dataset of an HDF5 file, read with h5py chunk by chunk.

    Parameters
    ----------
    path : str or PathLike
    dataset : str or None, default=None
        Dataset name; None works when the file holds exactly one dataset.
    chunk_rows : int or None, default=None
    """

    kind = "hdf5"

    def __init__(self, path, dataset: str | None = None, chunk_rows: int | None = None):
        super().__init__(path, chunk_rows)
        self.dataset = dataset
        self._dataset_given = dataset is not None

    @property
    def name(self) -> str:
        # as the user named the input ("file.h5:/group/x", or "file.h5" holding one dataset),
        # so that a message starts with the name the user typed
        if self._dataset_given:
            return f"'{self._spelling}:{self.dataset}'"
        return f"'{self._spelling}'" + ("" if self.dataset is None else f" (dataset '{self.dataset}')")

    @staticmethod
    def _h5py():
        try:
            import h5py
        except ImportError:
            raise _missing_extra("h5py", "hdf5", "HDF5 files") from None
        return h5py

    def _open(self) -> None:
        h5py = self._h5py()
        _check_file(self._path, "HDF5 file")
        try:
            with h5py.File(self._path, "r") as f:
                if self.dataset is None:
                    names: list[str] = []
                    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
                    if len(names) != 1:
                        raise ValueError(
                            f"'{self._spelling}' holds {len(names)} datasets ({names[:5]}): name one with "
                            "HDF5Source(path, dataset=...) or 'file.h5:/name'."
                        )
                    self.dataset = names[0]
                if self.dataset not in f:
                    raise ValueError(f"'{self._spelling}' has no dataset '{self.dataset}'.")
                ds = f[self.dataset]
                shape, dtype = ds.shape, ds.dtype
        except OSError as exc:
            raise OSError(f"'{self._spelling}' cannot be read as an HDF5 file: {exc}") from None
        if len(shape) not in (1, 2):
            raise ValueError(f"{self.name} has shape {shape}: fastem needs 2-D data.")
        self.n_samples = int(shape[0])
        self.n_features = int(shape[1]) if len(shape) == 2 else 1
        self.dtype = _as_float_dtype(dtype)

    def _fill(self, take):
        h5py = self._h5py()
        with h5py.File(self._path, "r") as f:
            ds = f[self.dataset]
            for start in range(0, self.n_samples, self.resolved_chunk_rows()):
                buf = take()
                n = min(buf.shape[0], self.n_samples - start)
                target = buf[:n] if ds.ndim == 2 else buf[:n, 0]
                if ds.dtype == self.dtype:
                    ds.read_direct(target, np.s_[start : start + n])  # no temporary
                else:
                    target[...] = ds[start : start + n]
                yield buf, n


class ZarrSource(Source):
    """A 2-D Zarr array (a path to a store, or an opened ``zarr.Array``).

    Parameters
    ----------
    array : str, PathLike or zarr.Array
    chunk_rows : int or None, default=None
        None uses a multiple of the array's own row chunking near 32 MiB.
    """

    kind = "zarr"

    def __init__(self, array, chunk_rows: int | None = None):
        super().__init__(chunk_rows)
        self._array = array
        self._path = None if hasattr(array, "shape") else Path(array)

    @property
    def path(self) -> str | None:
        return None if self._path is None else str(self._path.resolve())

    @property
    def name(self) -> str:
        return f"'{self._path}'" if self._path is not None else "Zarr array"

    def _open(self) -> None:
        try:
            import zarr
        except ImportError:
            raise _missing_extra("zarr", "zarr", "Zarr arrays") from None
        if self._path is not None:
            _check_file(self._path, "Zarr store")
            try:
                self._array = zarr.open_array(str(self._path), mode="r")
            except Exception as exc:  # zarr raises several types for a bad store
                raise ValueError(f"'{self._path}' cannot be opened as a Zarr array: {exc}") from None
        shape = self._array.shape
        if len(shape) not in (1, 2):
            raise ValueError(f"{self.name} has shape {shape}: fastem needs 2-D data.")
        self.n_samples = int(shape[0])
        self.n_features = int(shape[1]) if len(shape) == 2 else 1
        self.dtype = _as_float_dtype(self._array.dtype)

    def _fill(self, take):
        arr = self._array
        for start in range(0, self.n_samples, self.resolved_chunk_rows()):
            buf = take()
            n = min(buf.shape[0], self.n_samples - start)
            block = np.asarray(arr[start : start + n])
            buf[:n] = block.reshape(n, self.n_features)
            yield buf, n


def _arrow_batches_to_arrays(batches, columns: list[str] | None, name: str):
    """Record batches -> 2-D float arrays (nulls become NaN: missing entries, or refused as NaN)."""
    for batch in batches:
        names = batch.schema.names if columns is None else columns
        cols = batch.columns if columns is None else [batch.column(c) for c in columns]
        out = np.empty((batch.num_rows, len(cols)))
        for j, col in enumerate(cols):
            try:
                out[:, j] = col.to_numpy(zero_copy_only=False)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{name}: column '{names[j]}' is not numeric ({col.type}): {exc}") from None
        yield out


class ParquetSource(Source):
    """Numeric columns of a Parquet file, a list of files, or a directory dataset (pyarrow).

    Parameters
    ----------
    path : str, PathLike or list of them
    columns : list of str or None, default=None
        Columns to read, in order; None takes every column (all must be numeric).
    chunk_rows : int or None, default=None
    """

    kind = "parquet"

    def __init__(self, path, columns: list[str] | None = None, chunk_rows: int | None = None):
        super().__init__(chunk_rows)
        self._paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
        self.columns = None if columns is None else list(columns)

    @property
    def path(self) -> str:
        return ";".join(str(p.resolve()) for p in self._paths)

    @property
    def name(self) -> str:
        return f"'{self._paths[0]}'" + (f" (+{len(self._paths) - 1} files)" if len(self._paths) > 1 else "")

    @property
    def feature_names(self) -> np.ndarray | None:
        return None if self.columns is None else np.asarray(self.columns, dtype=object)

    def locate(self, row: int, column: int) -> str | None:
        if not self.columns or not 0 <= column < len(self.columns):
            return None
        return f"column '{self.columns[column]}'"

    def fingerprint_meta(self) -> dict:
        sizes = [sum(f.stat().st_size for f in _files(p)) for p in self._paths]
        return {"kind": self.kind, "path": self.path, "file_size": sum(sizes), "columns": self.columns}

    @staticmethod
    def _ds():
        try:
            import pyarrow.dataset as ds
        except ImportError:
            raise _missing_extra("pyarrow", "parquet", "Parquet files") from None
        return ds

    def _dataset(self):
        ds = self._ds()
        paths = [str(p) for p in self._paths]
        return ds.dataset(paths[0] if len(paths) == 1 else paths, format="parquet")

    def _open(self) -> None:
        self._ds()
        for p in self._paths:
            _check_file(p, "Parquet file")
        try:
            dataset = self._dataset()
            schema = dataset.schema
            n_rows = dataset.count_rows()
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for corrupt files
            raise ValueError(f"{self.name} cannot be read as Parquet data: {exc}") from None
        names = schema.names if self.columns is None else self.columns
        for c in names:
            if c not in schema.names:
                raise ValueError(f"{self.name} has no column '{c}'; its columns are {schema.names}.")
            t = schema.field(c).type
            if not (str(t).startswith(("int", "uint", "float", "double", "halffloat", "bool"))):
                raise ValueError(
                    f"{self.name}: column '{c}' has type {t}, which is not numeric. Choose numeric "
                    "columns with columns=[...]."
                )
        self.columns = list(names)
        self.n_samples, self.n_features = int(n_rows), len(names)
        types = {str(schema.field(c).type) for c in names}
        self.dtype = np.dtype(np.float32) if types == {"float"} else np.dtype(np.float64)

    def _fill(self, take):
        dataset = self._dataset()
        batches = dataset.to_batches(columns=self.columns, batch_size=min(self.resolved_chunk_rows(), 2**16))
        pieces = _arrow_batches_to_arrays(batches, self.columns, self.name)
        yield from _rechunk(pieces, take, self.n_features, self.name)


def _files(p: Path) -> list[Path]:
    return [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())


#: pyarrow's conversion errors: "... CSV conversion error to double: invalid value 'hello'"
_ARROW_BAD_VALUE = re.compile(r"invalid value '(.*)'", re.DOTALL)
#: pyarrow's parse errors: "CSV parse error: Expected 3 columns, got 2: 4,5"
_ARROW_BAD_COUNT = re.compile(r"Expected (\d+) columns, got (\d+)")


def _arrow_nulls() -> frozenset[str]:
    """The strings pyarrow reads as a missing value (NaN for fastem) by default."""
    import pyarrow.csv as pcsv

    return frozenset(pcsv.ConvertOptions().null_values)


def _is_arrow_number(text: str, nulls: frozenset[str]) -> bool:
    """Whether pyarrow's CSV reader turns ``text`` into a float64 (a number, inf, or a null marker)."""
    if text in nulls:
        return True
    text = text.strip()
    if not text.isascii() or "_" in text:  # float() takes "1_000" and non-ASCII digits; pyarrow does not
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


class CSVSource(_FileSource):
    """Numeric columns of a CSV file, parsed by pyarrow's streaming reader.

    The first line is the header (the column names) unless every field in it
    is a number (or empty): then the file has no header and its first line is
    data. To read a header line of numbers as names, pass
    ``column_names=[...]`` and ``skip_rows=1``.

    Parameters
    ----------
    path : str or PathLike
    columns : list of str or None, default=None
        Columns to read (by header name); None takes all of them.
    chunk_rows : int or None, default=None
    block_size : int, default=16 MiB
        Bytes pyarrow parses at a time.
    **csv_options
        ``delimiter``, ``skip_rows``, ``column_names``... passed to pyarrow's
        ``ReadOptions`` / ``ParseOptions`` when they name one of their fields.

    Notes
    -----
    Errors name the 1-based line of the file (header included) besides the
    0-based row index of the data: a parse error is located by reading the
    file again in Python, which happens only when there is an error.
    """

    kind = "csv"

    def __init__(self, path, columns=None, chunk_rows: int | None = None, block_size: int = 16 * 2**20,
                 **csv_options):  # fmt: skip
        super().__init__(path, chunk_rows)
        self.columns = None if columns is None else list(columns)
        self.block_size = int(block_size)
        self.csv_options = csv_options
        #: whether the first record (after ``skip_rows``) is a header line; known after ``open``
        self._header: bool | None = None
        #: every column of the file, as pyarrow names them; known after ``open``
        self._file_columns: list[str] | None = None

    @staticmethod
    def _csv():
        try:
            import pyarrow as pa
            import pyarrow.csv as pcsv
        except ImportError:
            raise _missing_extra("pyarrow", "csv", "CSV files") from None
        return pa, pcsv

    def _names_given(self) -> bool:
        return "column_names" in self.csv_options or bool(self.csv_options.get("autogenerate_column_names"))

    def _options(self, column_types=None, include: bool = True):
        pa, pcsv = self._csv()
        read_fields = {"skip_rows", "column_names", "autogenerate_column_names", "encoding"}
        parse_fields = {"delimiter", "quote_char", "escape_char"}
        read = {k: v for k, v in self.csv_options.items() if k in read_fields}
        parse = {k: v for k, v in self.csv_options.items() if k in parse_fields}
        unknown = set(self.csv_options) - read_fields - parse_fields
        if unknown:
            raise TypeError(f"unknown CSV options {sorted(unknown)}")
        if self._header is False and not self._names_given():
            read["autogenerate_column_names"] = True  # the first line is data: pyarrow names them f0, f1...
        columns = self.columns if include else None
        convert = pcsv.ConvertOptions(include_columns=columns, column_types=column_types or {})
        return (
            pcsv.ReadOptions(block_size=self.block_size, **read),
            pcsv.ParseOptions(**parse),
            convert,
        )

    def _reader(self, column_types=None, include: bool = True):
        pa, pcsv = self._csv()
        read, parse, convert = self._options(column_types, include)
        return pcsv.open_csv(self._path, read_options=read, parse_options=parse, convert_options=convert)

    # ---------------------------------------------------------------- the file as text (errors only)
    def _records(self) -> Iterator[tuple[int, list[str]]]:
        """``(line, fields)`` of every record, ``line`` 1-based where the record starts.

        Python's csv module with pyarrow's options: quoted fields may span
        lines, and empty lines are skipped (as pyarrow skips them).
        """
        opts: dict = {"delimiter": self.csv_options.get("delimiter", ",")}
        quote = self.csv_options.get("quote_char", '"')
        if quote:
            opts["quotechar"] = quote
        else:
            opts["quoting"] = csv.QUOTE_NONE
        if self.csv_options.get("escape_char"):
            opts["escapechar"] = self.csv_options["escape_char"]
        encoding = self.csv_options.get("encoding", "utf8")
        if codecs.lookup(encoding).name == "utf-8":
            encoding = "utf-8-sig"  # pyarrow skips a byte-order mark
        with open(self._path, newline="", encoding=encoding, errors="replace") as f:
            reader = csv.reader(f, **opts)
            line = 0
            try:
                for fields in reader:
                    start, line = line + 1, reader.line_num
                    if fields:
                        yield start, fields
            except csv.Error:  # a field beyond csv's size limit, a NUL byte: no more lines to tell
                return

    def _data_records(self) -> Iterator[tuple[int, int, list[str]]]:
        """``(row, line, fields)`` of the records; ``row`` is the 0-based data row (< 0: skipped, header)."""
        skip = int(self.csv_options.get("skip_rows", 0)) + (1 if self._header else 0)
        for i, (line, fields) in enumerate(self._records()):
            yield i - skip, line, fields

    def _first_line_is_header(self) -> bool:
        """False when the first record (after ``skip_rows``) holds only numbers: it is data then."""
        if self._names_given():
            return False
        nulls = _arrow_nulls()
        skip = int(self.csv_options.get("skip_rows", 0))
        with contextlib.closing(self._records()) as records:
            for i, (_, fields) in enumerate(records):
                if i == skip:
                    numbers = [v for v in fields if v.strip() and v not in nulls]
                    return not (numbers and all(_is_arrow_number(v, nulls) for v in numbers))
        return True  # an empty file: pyarrow says so

    def locate(self, row: int, column: int) -> str | None:
        named = self._header or "column_names" in self.csv_options
        with contextlib.closing(self._data_records()) as records:
            for r, line, _ in records:
                if r == row:
                    place = f"line {line} of the file"
                    if named and self.columns and 0 <= column < len(self.columns):
                        place += f", column '{self.columns[column]}'"
                    return place
        return None

    def _parse_error(self, exc: BaseException, first_row: int) -> str:
        """pyarrow's parse error, said with the line of the file it is about.

        pyarrow's streaming reader does not know line numbers; the file is read
        again from the top in Python, and the first record from data row
        ``first_row`` on that pyarrow would refuse (for the same reason, when
        pyarrow says which) is reported.
        """
        text = str(exc).strip()
        bad_value = _ARROW_BAD_VALUE.search(text)
        bad_count = _ARROW_BAD_COUNT.search(text)
        nulls = _arrow_nulls()
        expected = None if self._file_columns is None else len(self._file_columns)
        if expected is None and "column_names" in self.csv_options:
            expected = len(self.csv_options["column_names"])
        first_record = -1 if self._header else 0
        wanted = None
        if self._file_columns is not None and self.columns is not None:
            wanted = [self._file_columns.index(c) for c in self.columns if c in self._file_columns]
        named = self._header or "column_names" in self.csv_options
        with contextlib.closing(self._data_records()) as records:
            for row, line, fields in records:
                if expected is None and row >= first_record:
                    expected = len(fields)  # the header's width, or the first data line's
                if row < max(first_row, 0):
                    continue
                if len(fields) != expected:
                    if bad_value is None:
                        shown = self.csv_options.get("delimiter", ",").join(fields)
                        shown = shown if len(shown) <= 60 else shown[:57] + "..."
                        return (
                            f"{self.name} cannot be parsed at line {line}: expected {expected} columns, got "
                            f"{len(fields)} ({shown!r}). Every line needs the same number of fields."
                        )
                    continue
                if bad_count is not None:
                    continue
                for j in range(len(fields)) if wanted is None else wanted:
                    value = fields[j]
                    if bad_value is not None:
                        refused = value.strip() == bad_value.group(1).strip()
                    else:
                        refused = not _is_arrow_number(value, nulls)
                    if refused:
                        where = f"field {j + 1} of the line"
                        if named and self._file_columns:
                            where = f"column '{self._file_columns[j]}'"
                        return (
                            f"{self.name} cannot be parsed at line {line}: {where} holds {value!r}, which is "
                            "not a number. fastem reads numeric columns only: fix the value, or leave the "
                            "column out with columns=[...]."
                        )
        return f"{self.name} cannot be parsed as CSV: {text}"

    # ---------------------------------------------------------------- Source
    def _open(self) -> None:
        pa, _ = self._csv()
        _check_file(self._path, "CSV file")
        self._header = self._first_line_is_header()
        try:
            reader = self._reader(include=False)  # every column, to check the names asked for
            names = list(reader.schema.names)
            reader.close()
        except Exception as exc:  # pyarrow.lib.ArrowInvalid and friends
            if not type(exc).__module__.startswith("pyarrow"):
                raise
            raise ValueError(self._parse_error(exc, 0)) from None
        self._file_columns = names
        if self.columns is None:
            self.columns = list(names)
        for c in self.columns:
            if c not in names:
                hint = "" if self._header or self._names_given() else (
                    " (its first line holds numbers, so it has no header line and pyarrow names its "
                    "columns f0, f1, ...)")  # fmt: skip
                raise ValueError(f"{self.name} has no column '{c}'; its columns are {names}{hint}.")
            if names.count(c) > 1:
                raise ValueError(
                    f"{self.name} has the column name '{c}' {names.count(c)} times in its header line: "
                    "give every column its own name, or choose columns with columns=[...]."
                )
        # every column as float64, so that a later block cannot change the inferred type
        self._types = {c: pa.float64() for c in self.columns}
        self.n_samples = None  # known after the first pass
        self.n_features = len(self.columns)
        self.dtype = np.dtype(np.float64)

    @property
    def feature_names(self) -> np.ndarray | None:
        named = self._header or "column_names" in self.csv_options
        return np.asarray(self.columns, dtype=object) if named and self.columns is not None else None

    def _fill(self, take):
        def batches():
            done = 0
            try:
                for batch in self._reader(self._types):  # opening parses the first block already
                    yield batch
                    done += batch.num_rows
            except Exception as exc:
                if not type(exc).__module__.startswith("pyarrow"):
                    raise
                raise ValueError(self._parse_error(exc, done)) from None

        pieces = _arrow_batches_to_arrays(batches(), self.columns, self.name)
        yield from _rechunk(pieces, take, self.n_features, self.name)


class CallableSource(Source):
    """Chunks from a function: ``func()`` returns an iterator of 2-D arrays, once per pass.

    The chunks may have any row counts (they are copied into buffers of
    ``chunk_rows`` rows); every call must yield the same rows in the same order.

    Parameters
    ----------
    func : callable
    chunk_rows : int or None, default=None
    """

    kind = "callable"

    def __init__(self, func: Callable[[], Iterable], chunk_rows: int | None = None):
        super().__init__(chunk_rows)
        self.func = func

    @property
    def name(self) -> str:
        return f"callable source {getattr(self.func, '__qualname__', type(self.func).__name__)}"

    def fingerprint_meta(self) -> dict:
        return {"kind": self.kind, "path": None, "func": getattr(self.func, "__qualname__", "")}

    def _first(self):
        it = iter(self.func())
        try:
            first = np.asarray(next(it))
        except StopIteration:
            raise ValueError(f"{self.name} yielded no chunks.") from None
        return first, it

    def _open(self) -> None:
        first, it = self._first()
        if hasattr(it, "close"):
            it.close()
        if first.ndim not in (1, 2):
            raise ValueError(f"{self.name} yielded a chunk with {first.ndim} dimensions: chunks must be 2-D.")
        self.n_samples = None
        self.n_features = int(first.shape[1]) if first.ndim == 2 else 1
        self.dtype = _as_float_dtype(first.dtype)

    def _fill(self, take):
        yield from _rechunk(self.func(), take, self.n_features, self.name)


class ArraySource(Source):
    """An in-memory array (or anything sliceable by rows, e.g. ``np.memmap``) read in chunks."""

    kind = "array"

    def __init__(self, X, chunk_rows: int | None = None):
        super().__init__(chunk_rows)
        self.X = X

    @property
    def name(self) -> str:
        return "input array"

    def _open(self) -> None:
        shape = np.shape(self.X)
        if len(shape) != 2:
            raise ValueError(f"Expected 2D array, got an array of shape {shape}.")
        self.n_samples, self.n_features = int(shape[0]), int(shape[1])
        self.dtype = _as_float_dtype(self.X.dtype)

    def _fill(self, take):
        step = self.resolved_chunk_rows()
        for start in range(0, self.n_samples, step):
            buf = take()
            n = min(step, self.n_samples - start)
            rows = self.X[start : start + n]
            buf[:n] = rows.toarray() if hasattr(rows, "toarray") else rows  # scipy.sparse: densify a chunk
            yield buf, n


_SUFFIXES = {
    ".npy": NpySource,
    ".h5": HDF5Source,
    ".hdf5": HDF5Source,
    ".he5": HDF5Source,
    ".zarr": ZarrSource,
    ".parquet": ParquetSource,
    ".pq": ParquetSource,
    ".csv": CSVSource,
}


def as_source(X, chunk_rows: int | None = None) -> Source:
    """Turn a path, callable or source into an opened :class:`Source`.

    Parameters
    ----------
    X : Source, str, PathLike or callable
        A path with a known suffix (``.npy``, ``.h5``/``.hdf5`` optionally
        followed by ``:dataset``, ``.zarr``, ``.parquet``/``.pq``, ``.csv``),
        or a callable returning an iterator of 2-D chunks.
    chunk_rows : int or None, default=None
        Used when ``X`` is not a source already.

    Returns
    -------
    source : Source
        Validated (missing, unreadable or truncated inputs raise here).
    """
    if getattr(X, "_is_fastem_source", False):
        return X.open()
    if isinstance(X, (str, os.PathLike)):
        text = os.fspath(X)
        dataset = None
        path = Path(text)
        suffix = path.suffix.lower()
        if suffix not in _SUFFIXES and ":" in text:
            head, _, dataset = text.rpartition(":")
            if Path(head).suffix.lower() in (".h5", ".hdf5", ".he5"):
                path, suffix = Path(head), Path(head).suffix.lower()
        if suffix not in _SUFFIXES:
            raise ValueError(
                f"'{text}': cannot tell the format from its suffix: use one of "
                f"{sorted(_SUFFIXES)} or a fastem.sources class (e.g. RawSource for raw binary)."
            )
        cls = _SUFFIXES[suffix]
        if cls is HDF5Source:
            return HDF5Source(path, dataset, chunk_rows=chunk_rows).open()
        return cls(path, chunk_rows=chunk_rows).open()
    if callable(X):
        return CallableSource(X, chunk_rows=chunk_rows).open()
    raise TypeError(f"cannot read data from an object of type {type(X).__name__}.")


def _hash_rows(chunk: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(chunk).view(np.uint8).reshape(-1), digest_size=16).hexdigest()
