"""Model files: save a fitted mixture estimator and load it back, without pickle.

Every estimator (``GaussianMixture``, ``PoissonMixture``, ``BernoulliMixture``,
``MultinomialMixture``, ``VonMisesFisherMixture``) has ``save``; :func:`fastem.load`
reads any of them back. Use::

    gm.save("model.npz", data=X)          # data is optional: recorded as shape + fingerprint
    gm2 = fastem.load("model.npz")        # gm2.predict(X) == gm.predict(X), bit for bit

File format (``format_version`` 1)
----------------------------------
A model file is a ZIP archive that is also a valid NumPy ``.npz`` file (so
``numpy.load(path, allow_pickle=False)`` can inspect it). Its members, all
stored uncompressed:

``header.json`` (always the first member)
    UTF-8 JSON object with the keys

    - ``format``: the string ``"fastem-model"``;
    - ``format_version``: integer, currently 1. A reader refuses files with a
      larger version than it knows;
    - ``fastem_version``: the version of fastem that wrote the file;
    - ``created``: UTC time of writing, ISO 8601;
    - ``estimator``: the class name, e.g. ``"GaussianMixture"`` or ``"PoissonMixture"``;
    - ``family``: ``"gaussian"``, ``"poisson"``, ``"bernoulli"``, ``"multinomial"`` or ``"vmf"``,
      followed by the family's configuration (``covariance_type`` for the Gaussian,
      ``normalize`` for vMF, ``"missing": "marginalize"`` for a Gaussian, Poisson or
      Bernoulli model that marginalises NaN; absent means ``"error"``;
      ``"accumulation": "float32"`` for a GaussianMixture fitted with float32
      sums; absent means ``"float64"``);
    - ``n_components``, ``n_features``;
    - ``hyperparameters``: the estimator's ``get_params()`` except the three
      ``*_init`` arrays (stored as members, see below); a ``random_state``
      that is not an int or None is stored as ``null`` and listed in
      ``notes``. ``missing`` is among them (Gaussian, Poisson, Bernoulli); a
      file written before it existed loads with the default ``"error"``. So is
      ``accumulation`` (GaussianMixture; older files load as ``"float64"``);
    - ``fit``: ``converged``, ``n_iter``, ``lower_bound`` (a number, or the
      strings ``"inf"``, ``"-inf"``, ``"nan"``), ``feature_names_in`` (list of
      strings or ``null``);
    - ``data``: ``null``, or what the model was fitted on: ``n_samples`` and
      ``n_features`` (``null`` when unknown), ``fingerprint`` and ``path``.
      The fingerprint is ``"sha256:file:<hex>"`` (SHA-256 of the file's
      bytes, the same as ``sha256sum data.npy``; for a directory store such as
      ``.zarr``, of every file's relative path and bytes in sorted order) or
      ``"sha256:array:<hex>"`` (SHA-256 of the array's C-order float64 bytes);
    - ``arrays``: for each array member, its ``shape``, ``dtype`` and the
      ``sha256`` of its data bytes; checked on load;
    - ``notes``: list of strings.

``<name>.npy`` members, float64, written with ``numpy.lib.format`` (no object arrays)
    the fitted parameter attributes (Gaussian: ``weights_`` (K,), ``means_``
    (K, D), ``covariances_``, ``precisions_``, ``precisions_cholesky_``, shapes
    as in scikit-learn for the covariance type; Poisson: ``weights_``,
    ``rates_``; ...), ``lower_bounds_`` (n_iter,) the mean log-likelihood per
    iteration, and, only when set, the ``*_init`` arrays.

Guarantees
----------
- Writes are atomic: the archive is written to a temporary file in the target
  directory, flushed and fsync-ed, then renamed over the target with
  :func:`os.replace`. A killed writer leaves the old file (or none), never a
  half-written one.
- :func:`load` checks the archive's CRCs and the per-array SHA-256, the header,
  the shapes, that the weights are non-negative and sum to one, that the
  precisions are positive definite and consistent with their Cholesky factors
  and with the covariances. Any failure raises :class:`ModelFileError` with
  one clear sentence; a file written by a newer fastem raises it too.
- :func:`load` never unpickles: a file that is not a ZIP archive (a pickle, a
  text file, random bytes) is "not a fastem model file", and a member holding
  Python objects is refused before it is read.
- Every fitted attribute is restored exactly, so a loaded model predicts bit
  for bit like the saved one.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "ModelFileError",
    "atomic_open",
    "data_fingerprint",
    "load_estimator",
    "read_header",
    "save",
]

FORMAT_NAME = "fastem-model"
#: Version of the file format this fastem writes; it reads every version up to this one.
FORMAT_VERSION = 1
HEADER_MEMBER = "header.json"

_HASH_BLOCK = 8 * 2**20


class ModelFileError(ValueError):
    """A model file is missing parts, corrupted, truncated, inconsistent or too new."""


# ----------------------------------------------------------------------------- fingerprints
def data_fingerprint(data: Any) -> str:
    """Fingerprint of training data: SHA-256 of a file's (or directory's) bytes, or of an array.

    Parameters
    ----------
    data : str, os.PathLike or array-like of shape (n_samples, n_features)
        A path is hashed as stored on disk (``sha256sum`` gives the same hex
        digest for a file); an array is hashed as C-order float64 bytes.

    Returns
    -------
    fingerprint : str
        ``"sha256:file:<hex>"`` or ``"sha256:array:<hex>"``.
    """
    h = hashlib.sha256()
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            for item in sorted(p for p in path.rglob("*") if p.is_file()):
                h.update(item.relative_to(path).as_posix().encode() + b"\0")
                _hash_file(h, item)
        else:
            _hash_file(h, path)
        return f"sha256:file:{h.hexdigest()}"
    if getattr(data, "format", None) == "csr":  # scipy.sparse: the dense rows, a block at a time
        rows = max(1, _HASH_BLOCK // (8 * max(1, data.shape[1])))
        for start in range(0, data.shape[0], rows):
            h.update(np.ascontiguousarray(data[start : start + rows].toarray(), dtype=np.float64).tobytes())
        return f"sha256:array:{h.hexdigest()}"
    X = np.asarray(data)
    # hash row blocks so a large array is never copied whole
    rows = max(1, _HASH_BLOCK // max(1, X[:1].size * 8))
    for start in range(0, X.shape[0] if X.ndim else 1, rows):
        block = X[start : start + rows] if X.ndim else X
        h.update(np.ascontiguousarray(block, dtype=np.float64).tobytes())
    return f"sha256:array:{h.hexdigest()}"


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_BLOCK):
            h.update(chunk)


def _array_digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


# ----------------------------------------------------------------------------- save
def _json_float(x: float) -> float | str:
    return float(x) if math.isfinite(x) else repr(float(x))


def _hyperparameters(gm: Any) -> tuple[dict, dict, list[str]]:
    params = gm.get_params(deep=False)
    arrays, notes = {}, []
    for name in type(gm)._init_array_params:
        value = params.pop(name)
        if value is not None:
            arrays[name] = np.asarray(value, dtype=np.float64)
    rs = params["random_state"]
    if rs is not None and not (isinstance(rs, int | np.integer) and not isinstance(rs, bool)):
        params["random_state"] = None
        notes.append(f"random_state was a {type(rs).__name__}; it is not saved (loaded as None)")
    elif rs is not None:
        params["random_state"] = int(rs)
    for key, value in params.items():
        if isinstance(value, np.generic):
            params[key] = value.item()
    return params, arrays, notes


def save(
    gm: Any,
    path: str | os.PathLike,
    *,
    data: Any = None,
    data_shape: Sequence[int | None] | None = None,
) -> Path:
    """Write a fitted mixture estimator to ``path`` atomically (see the module docstring for the format).

    Parameters
    ----------
    gm : GaussianMixture, PoissonMixture, ...
        A fitted estimator.
    path : str or os.PathLike
        Target file, written exactly under this name (``.npz`` is a good suffix).
    data : array-like or path, default=None
        The training data, recorded as its shape and :func:`data_fingerprint`.
    data_shape : (n_samples, n_features), default=None
        Shape of the training data when ``data`` is a path (read from the
        header of a ``.npy`` file when not given).

    Returns
    -------
    path : pathlib.Path
    """
    from ._base import check_is_fitted

    check_is_fitted(gm, gm._fitted_marker)
    path = Path(path)
    fitted = type(gm)._model_arrays + ("lower_bounds_",)
    arrays = {name: np.asarray(getattr(gm, name), dtype=np.float64) for name in fitted}
    hyper, init_arrays, notes = _hyperparameters(gm)
    arrays.update(init_arrays)
    names = getattr(gm, "feature_names_in_", None)
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "fastem_version": _version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "estimator": type(gm).__name__,
        "family": gm._family().name,
        **gm._family().config,
        "n_components": int(gm.n_components),
        "n_features": int(gm.n_features_in_),
        "hyperparameters": hyper,
        "fit": {
            "converged": bool(gm.converged_),
            "n_iter": int(gm.n_iter_),
            "lower_bound": _json_float(gm.lower_bound_),
            "feature_names_in": None if names is None else [str(n) for n in names],
        },
        "data": _data_record(data, data_shape),
        "arrays": {
            name: {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": _array_digest(a)}
            for name, a in arrays.items()
        },
        "notes": notes,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(HEADER_MEMBER, json.dumps(header, indent=1, allow_nan=False))
        for name, a in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(a, order="C"), allow_pickle=False)  # 0-d stays 0-d
            zf.writestr(name + ".npy", member.getvalue())
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _data_record(data: Any, data_shape: Sequence[int | None] | None) -> dict | None:
    if data is None:
        return None
    is_path = isinstance(data, (str, os.PathLike))
    shape: list[int | None] = [None, None]
    if data_shape is not None:
        shape = [None if s is None else int(s) for s in data_shape]
    elif not is_path:
        shape = [int(s) for s in np.shape(data)[:2]]
    elif str(data).endswith(".npy"):
        try:
            shape = [int(s) for s in np.load(data, mmap_mode="r", allow_pickle=False).shape[:2]]
        except (OSError, ValueError):
            pass
    return {
        "n_samples": shape[0],
        "n_features": shape[1] if len(shape) > 1 else None,
        "fingerprint": data_fingerprint(data),
        "path": os.fspath(Path(data).resolve()) if is_path else None,
    }


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the new one, never a part."""
    with atomic_open(path) as f:
        f.write(payload)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file object whose contents replace ``path`` atomically when the block exits cleanly.

    The bytes go to a temporary file in the same directory (so the rename stays
    on one file system), which is fsync-ed and renamed with :func:`os.replace`;
    the directory is fsync-ed too so the rename survives a power loss. On an
    exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; match what open() would create
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise
    with _suppress():  # not every platform can fsync a directory
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is not None and issubclass(kind, OSError)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _version() -> str:
    from . import __version__

    return __version__


# ----------------------------------------------------------------------------- load
def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a model file, checked for format and version (arrays are not read).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFileError
        If the file is not a fastem model file, is damaged, or is too new.
    """
    header, _ = _read(path, arrays=False)
    return header


def load_estimator(path: str | os.PathLike, estimators: dict[str, type]):
    """Load and check a model file; ``estimators`` maps the header's estimator names to classes.

    This is :func:`fastem.load` (which passes fastem's estimator classes).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFileError
        If the file is truncated, corrupted, inconsistent, or written by a newer fastem.
    """
    header, arrays = _read(path, arrays=True)
    where = f"model file '{os.fspath(path)}'"
    name = header.get("estimator")
    cls = estimators.get(name)
    if cls is None:
        raise ModelFileError(f"{where} has an invalid header: unknown estimator {name!r}.")
    fitted = cls._model_arrays + ("lower_bounds_",)
    for member in fitted:
        if member not in header["arrays"]:
            raise ModelFileError(f"{where} has an invalid header: array {member} missing.")
    for member in header["arrays"]:
        if member not in fitted + cls._init_array_params:
            raise ModelFileError(f"{where} has an invalid header: unknown array {member!r}.")
    K, D, n_iter = header["n_components"], header["n_features"], header["fit"]["n_iter"]
    hyper = dict(header["hyperparameters"])
    for member in cls._init_array_params:
        hyper[member] = arrays.get(member)
    try:
        gm = cls(**hyper)
    except TypeError as exc:
        raise ModelFileError(f"{where} has unknown hyper-parameters ({exc}).") from None
    try:
        gm._check_model_file(header, arrays, n_iter)
    except ValueError as exc:
        raise ModelFileError(f"{where}: {exc}") from None
    if gm.n_components != K:
        raise ModelFileError(f"{where} is inconsistent: hyper-parameters disagree with the arrays.")
    fit = header["fit"]
    for member in cls._model_arrays:
        setattr(gm, member, arrays[member])
    gm.converged_ = fit["converged"]
    gm.n_iter_ = fit["n_iter"]
    gm.lower_bound_ = fit["lower_bound"]
    gm.lower_bounds_ = [float(v) for v in arrays["lower_bounds_"]]
    gm.n_features_in_ = D
    if fit["feature_names_in"] is not None:
        gm.feature_names_in_ = np.asarray(fit["feature_names_in"], dtype=object)
    return gm


def check_array_shapes(arrays: dict, expected: dict, what: str) -> None:
    """Every array of the expected shape and finite (``lower_bounds_`` may hold +-inf); raises ValueError."""
    for name, a in arrays.items():
        if a.shape != expected[name]:
            raise ValueError(f"{name} has shape {a.shape}, expected {expected[name]} for {what}.")
        finite = np.isfinite(a) if name != "lower_bounds_" else ~np.isnan(a)
        if not np.all(finite):
            raise ValueError(f"{name} contains NaN or infinity.")
    w = arrays["weights_"]
    if np.any(w < 0) or abs(w.sum() - 1.0) > 1e-9 * max(w.shape[0], 10):
        raise ValueError(f"the weights must be non-negative and sum to 1 (sum {w.sum():.12g}).")


#: the first bytes of a ZIP archive: a local file header, or the end record of an empty archive
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def not_a_zip(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be a model file (or a checkpoint) judging by its first bytes, or None.

    Checked before NumPy sees the file: ``numpy.load`` would answer a pickle
    with advice to unpickle it, which fastem never does nor suggests.
    """
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(_ZIP_MAGIC):
        return None
    if not magic:
        return "it is empty"
    if magic.startswith(b"\x93NUMPY"):
        return "it is a single .npy array"
    return "it is not a ZIP archive"


def without_pickle_advice(text: str) -> str:
    """A reader's error text, minus NumPy's suggestions to unpickle (fastem never unpickles)."""
    if "pickle" in text.lower():
        return "it holds Python objects (pickled data), not arrays of numbers"
    return text


def _read(path: str | os.PathLike, *, arrays: bool) -> tuple[dict, dict]:
    where = f"model file '{os.fspath(path)}'"
    if not os.path.exists(path):
        raise FileNotFoundError(f"{where} does not exist")
    if os.path.isdir(path):
        raise ModelFileError(f"{where} is a directory, not a model file.")
    why = not_a_zip(path)
    if why == "it is a single .npy array":
        raise ModelFileError(f"{where} is a single .npy array, not a fastem model file.")
    if why is not None:
        raise ModelFileError(
            f"'{os.fspath(path)}' is not a fastem model file: {why} (fastem model files are .npz "
            "archives written by save)."
        )
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:  # damaged zip fields surface as many types (even NotImplementedError)
        raise ModelFileError(
            f"{where} is not a readable model file: it is truncated, corrupted or not a fastem model "
            f"({without_pickle_advice(str(exc))})."
        ) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):  # pragma: no cover - the magic check catches it
        raise ModelFileError(f"{where} is a single .npy array, not a fastem model file.")
    with npz:
        try:
            header = _parse_header(npz, where)
            out = {}
            if arrays:
                for name, spec in header["arrays"].items():
                    out[name] = _read_array(npz, name, spec, where)
        except ModelFileError:
            raise
        except Exception as exc:  # any damage the zip/npy readers notice: CRC, truncation, bad fields
            detail = without_pickle_advice(f"{type(exc).__name__}: {exc}")
            raise ModelFileError(f"{where} is corrupted or truncated ({detail}).") from None
    return header, out


def _parse_header(npz, where: str) -> dict:
    if HEADER_MEMBER not in npz.files:
        raise ModelFileError(f"{where} has no {HEADER_MEMBER}: it is an .npz archive but not a fastem model.")
    raw = npz[HEADER_MEMBER]
    try:
        header = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{where} has an unreadable header ({exc}).") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{where} is not a fastem model file (its header lacks format '{FORMAT_NAME}').")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{where} has an invalid format_version {version!r}.")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{where} uses model format version {version}, written by fastem "
            f"{header.get('fastem_version', '?')}; this fastem ({_version()}) reads versions up to "
            f"{FORMAT_VERSION}. Upgrade fastem to load it."
        )
    _check_header_fields(header, where)
    return header


def _check_header_fields(header: dict, where: str) -> None:
    def bad(what: str):
        return ModelFileError(f"{where} has an invalid header: {what}.")

    if not isinstance(header.get("estimator"), str):
        raise bad("estimator missing")
    for key in ("n_components", "n_features"):
        value = header.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad(f"{key} must be a positive integer, got {value!r}")
    if not isinstance(header.get("hyperparameters"), dict):
        raise bad("hyperparameters missing")
    fit = header.get("fit")
    if not isinstance(fit, dict):
        raise bad("fit record missing")
    if not isinstance(fit.get("converged"), bool):
        raise bad("fit.converged must be true or false")
    n_iter = fit.get("n_iter")
    if not isinstance(n_iter, int) or isinstance(n_iter, bool) or n_iter < 0:
        raise bad(f"fit.n_iter must be a non-negative integer, got {n_iter!r}")
    lb = fit.get("lower_bound")
    if isinstance(lb, str) and lb in ("inf", "-inf", "nan"):
        fit["lower_bound"] = float(lb)
    elif isinstance(lb, (int, float)) and not isinstance(lb, bool):
        fit["lower_bound"] = float(lb)
    else:
        raise bad(f"fit.lower_bound must be a number, got {lb!r}")
    names = fit.get("feature_names_in")
    if names is not None and (
        not isinstance(names, list)
        or len(names) != header["n_features"]
        or not all(isinstance(n, str) for n in names)
    ):
        raise bad("fit.feature_names_in must be null or one string per feature")
    specs = header.get("arrays")
    if not isinstance(specs, dict):
        raise bad("array table missing")
    for name, spec in specs.items():
        if not isinstance(spec, dict) or not {"shape", "dtype", "sha256"} <= spec.keys():
            raise bad(f"array {name} lacks shape, dtype or sha256")


def _read_array(npz, name: str, spec: dict, where: str) -> np.ndarray:
    if name not in npz.files:
        raise ModelFileError(f"{where} lacks the array {name}.")
    with npz.zip.open(name + ".npy") as member:  # the member's header first: never load objects
        version = np.lib.format.read_magic(member)
        # version 3 differs from 2 only by a UTF-8 header, which a numeric dtype never needs
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else (
            np.lib.format.read_array_header_2_0)  # fmt: skip
        dtype = read_header(member)[2]
    if dtype.hasobject:
        raise ModelFileError(
            f"{where}: array {name} holds Python objects, not numbers, so this is not a fastem model file."
        )
    a = npz[name]
    if not isinstance(a, np.ndarray) or a.dtype != np.float64:
        raise ModelFileError(f"{where}: array {name} is not float64.")
    if list(a.shape) != spec["shape"]:
        raise ModelFileError(f"{where}: array {name} has shape {a.shape}, the header says {spec['shape']}.")
    if _array_digest(a) != spec["sha256"]:
        raise ModelFileError(f"{where}: array {name} fails its SHA-256 check (the file is corrupted).")
    return a
