"""Resumable fits: the state after every complete pass, written atomically.

``fit(..., checkpoint=path)`` writes, after each pass, an
``.npz`` file (arrays only, loaded with ``allow_pickle=False``) holding the
parameters, the history of the run, the random generator's state between
initialisations, and a JSON header with

* a fingerprint of the data (format, path, file size, shape, dtype, chunk
  rows, hashes of the first and last rows, hash of the sample weights), and
* a fingerprint of the configuration (every estimator parameter that changes
  the result, the algorithm, the fastem version). ``missing`` is one of them:
  a checkpoint written with ``missing="error"`` (or before the parameter
  existed) is not resumed by a fit with ``missing="marginalize"``, nor the
  other way round, and the message says so. So is a GaussianMixture's
  ``accumulation`` (a checkpoint written before it existed counts as
  ``"float64"``).

The file is written to a temporary name in the same directory, fsynced and
renamed, so a crash leaves either the previous or the new checkpoint. A fit
started again with the same arguments resumes after the last complete pass and
ends bitwise identical to an uninterrupted fit, because the state it resumes
from is exactly (bit for bit) the state the uninterrupted fit had at that
point. A checkpoint from other data or another configuration is refused.
A checkpoint of a finished fit makes ``fit`` return that result at once.
With ``verbose >= 1`` the fit says where it resumed (or that the checkpoint
holds a finished fit).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ._em import Callback, EMRun, Resume
from ._executor import ArrayExecutor

FORMAT = "fastem-checkpoint"
VERSION = 2

#: parameters that do not change the fitted result
_IGNORED_PARAMS = {"verbose", "verbose_interval", "n_jobs"}


class CheckpointMismatchError(ValueError):
    """The checkpoint file belongs to another data set or another configuration."""


def _hash_array(a) -> str:
    h = hashlib.blake2b(digest_size=16)
    a = np.asarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    flat = a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)
    step = max(1, 2**24 // max(1, a.itemsize))
    for i in range(0, flat.shape[0], step):  # chunked: a memmap is never loaded whole
        h.update(np.ascontiguousarray(flat[i : i + step]).view(np.uint8))
    return h.hexdigest()


def params_hash(family, params) -> str:
    """One hash of every parameter array (a warm start's starting point)."""
    arrays = family.param_arrays(params)
    return _hash_array(np.concatenate([np.ravel(arrays[k]) for k in sorted(arrays)]))


def data_fingerprint(executor, sample_weight) -> dict:
    """What identifies the data of a fit (the source's scan fingerprint, or an array's hash)."""
    if getattr(executor, "fingerprint", None):
        fp = dict(executor.fingerprint)
    elif isinstance(executor, ArrayExecutor):
        X = executor.X
        fp = {"kind": "array", "n_samples": int(X.shape[0]), "n_features": int(X.shape[1]),
              "dtype": X.dtype.str}  # fmt: skip
        if getattr(X, "format", None) == "csr":  # a sparse matrix: its three arrays say everything
            fp["kind"] = "csr"
            fp["hash"] = "/".join(_hash_array(a) for a in (X.data, X.indices, X.indptr))
        else:
            fp["hash"] = _hash_array(X)
    else:  # messages name the input, never an internal class
        what = getattr(executor, "input_kind", "this kind of input")
        raise TypeError(
            f"checkpoints are not supported for {what}: fit without checkpoint=, or on an in-memory "
            "array or a fastem.sources source."
        )
    fp["sample_weight"] = None if sample_weight is None else _hash_array(sample_weight)
    return fp


def config_fingerprint(estimator, **extra) -> dict:
    """Every parameter that changes the fitted result, JSON-comparable."""
    from . import __version__

    out: dict = {"fastem": __version__, **extra}
    for name, value in sorted(estimator.get_params(deep=False).items()):
        if name in _IGNORED_PARAMS:
            continue
        if value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value
        elif isinstance(value, (np.integer, np.floating, np.bool_)):
            out[name] = value.item()
        elif isinstance(value, np.random.RandomState):
            out[name] = "RandomState instance"
        else:
            out[name] = "array:" + _hash_array(np.asarray(value, dtype=np.float64))
    return out


def _mismatch(kind: str, saved: dict, current: dict) -> list[str]:
    keys = sorted(set(saved) | set(current))
    return [f"{kind} {k}: checkpoint {saved.get(k)!r} != now {current.get(k)!r}"
            for k in keys if saved.get(k) != current.get(k)]  # fmt: skip


def save(path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``meta`` (JSON) and ``arrays`` to ``path`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    from ._stream import _fsync_dir

    _fsync_dir(directory)


def load(path) -> tuple[dict, dict[str, np.ndarray]] | None:
    """``(meta, arrays)`` of a checkpoint, or None if there is none at ``path``."""
    from .io import not_a_zip, without_pickle_advice

    path = Path(path)
    if not path.exists():
        return None
    try:
        why = not_a_zip(path)  # before NumPy, whose answer to a pickle is advice to unpickle it
        if why is not None:
            raise ValueError(why)
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("__meta__")))
    except Exception as exc:
        raise ValueError(
            f"'{path}' is not a readable fastem checkpoint ({without_pickle_advice(str(exc))}). Delete it "
            "or choose another path."
        ) from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"'{path}' is not a fastem checkpoint of version {VERSION}.")
    return meta, arrays


def check(path, meta: dict, data_fp: dict, config_fp: dict) -> None:
    """Refuse a checkpoint written for other data or another configuration."""
    saved_config = dict(meta["config"])
    if "missing" in config_fp and "missing" not in saved_config:  # written before the setting existed
        saved_config["missing"] = "error"
    if "accumulation" in config_fp and "accumulation" not in saved_config:  # likewise
        saved_config["accumulation"] = "float64"
    was, now = saved_config.get("missing"), config_fp.get("missing")
    if was != now:
        raise CheckpointMismatchError(
            f"The checkpoint '{path}' was written by a fit with missing={was!r}, but this fit has "
            f"missing={now!r}: the two read NaN differently, so it cannot be resumed. Fit with "
            f"missing={was!r} to resume it, or delete the file or pass another checkpoint path to start "
            "afresh."
        )
    problems = _mismatch("data", meta["data"], data_fp) + _mismatch("config", saved_config, config_fp)
    if problems:
        raise CheckpointMismatchError(
            f"The checkpoint '{path}' was written by a fit on other data or with another "
            "configuration, so it cannot be resumed:\n  "
            + "\n  ".join(problems[:10])
            + "\nDelete the file or pass another checkpoint path to start afresh."
        )


def _prefixed(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {prefix + name: np.asarray(a) for name, a in arrays.items()}


def _unprefixed(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name[len(prefix) :]: a for name, a in arrays.items() if name.startswith(prefix)}


def _rng_arrays(random_state: np.random.RandomState) -> tuple[dict, dict]:
    name, keys, pos, has_gauss, cached = random_state.get_state()
    return {"rng_keys": keys}, {"name": name, "pos": int(pos), "has_gauss": int(has_gauss), "cached": cached}


def _set_rng(random_state: np.random.RandomState, arrays: dict, meta: dict) -> None:
    r = meta["rng"]
    random_state.set_state((r["name"], arrays["rng_keys"], r["pos"], r["has_gauss"], r["cached"]))


class OnlineResume:
    """Where a checkpointed online fit stopped."""

    def __init__(self, params, state, passes_done: int, lower_bounds: list, done: bool, converged: bool):
        self.params, self.state, self.passes_done = params, state, passes_done
        self.lower_bounds, self.done = lower_bounds, done
        self.run = EMRun(params, len(lower_bounds), converged, lower_bounds[-1] if lower_bounds else -np.inf,
                         lower_bounds)  # fmt: skip


class Checkpoint:
    """One checkpoint file of one fit: reads what a previous run left, writes after every pass.

    The batch fit gets its writer as a driver callback (:meth:`batch_writer`);
    the online fit calls :meth:`write_online` after every pass.
    """

    def __init__(self, path, family, *, data: dict, config: dict, verbose: int = 0):
        self.path = Path(path)
        self.family = family
        config = {**config, "family": family.name, **{f"family_{k}": v for k, v in family.config.items()}}
        self.meta = {"format": FORMAT, "version": VERSION, "data": data, "config": config}
        self.verbose = verbose

    def _saved(self):
        saved = load(self.path)
        if saved is not None:
            check(self.path, saved[0], self.meta["data"], self.meta["config"])
        return saved

    # ---------------------------------------------------------------- batch EM with restarts
    def resume_batch(self, random_state: np.random.RandomState) -> Resume | None:
        """The restart loop's resume point (and ``random_state`` set as it was), or None."""
        saved = self._saved()
        if saved is None:
            return None
        meta, arrays = saved
        resume = Resume(first_init=meta["init"])
        if meta["best"] is not None:
            b = meta["best"]
            best_params = self.family.params_from_arrays(_unprefixed("best_", arrays))
            resume.best = EMRun(best_params, b["n_iter"], b["converged"], b["lower_bound"], b["lower_bounds"])
        if meta["status"] == "done":
            resume.first_init = 1 << 30
            self._say(f"holds a finished fit ({meta['init']} initialization(s)): returning its result "
                      "without any pass")  # fmt: skip
            return resume
        if meta["lower_bounds"] is not None:  # a run in progress (else: start this init afresh)
            resume.params = self.family.params_from_arrays(_unprefixed("cur_", arrays))
            resume.lower_bounds = list(meta["lower_bounds"])
        _set_rng(random_state, arrays, meta)
        # numbered as the "Initialization k" lines of verbose fits (from 0, as scikit-learn's)
        init = resume.first_init
        if meta["lower_bounds"] is None:
            self._say(f"resuming at the start of initialization {init} ({init} finished before it)")
        else:
            n = len(resume.lower_bounds)
            self._say(f"resuming initialization {init} after iteration {n} (those {n} passes are kept)")
        return resume

    def _say(self, what: str) -> None:
        """One line on stdout with ``verbose >= 1``: where a fit picked the checkpoint up."""
        if self.verbose:
            print(f"Checkpoint '{self.path}': {what}.", flush=True)

    def _write_batch(self, random_state, init: int, params, lbs, status: str, best: EMRun | None) -> None:
        rng_arrays, rng_meta = _rng_arrays(random_state)
        arrays = dict(rng_arrays)
        if params is not None:
            arrays.update(_prefixed("cur_", self.family.param_arrays(params)))
        best_meta = None
        if best is not None:
            best_meta = {"n_iter": best.n_iter, "converged": best.converged,
                         "lower_bound": best.lower_bound, "lower_bounds": best.lower_bounds}  # fmt: skip
            arrays.update(_prefixed("best_", self.family.param_arrays(best.params)))
        meta = {**self.meta, "algorithm": "batch", "init": init, "status": status, "lower_bounds": lbs,
                "best": best_meta, "rng": rng_meta}  # fmt: skip
        save(self.path, meta, arrays)

    def batch_writer(self, random_state: np.random.RandomState, n_init: int) -> Callback:
        """The driver callback that saves the state after every pass and every finished run."""
        store = self

        class _Writer(Callback):
            best: EMRun | None = None

            def on_run_start(self, init, params, lower_bounds):
                if not lower_bounds:  # a fresh run: its starting point (a resumed one is on disk)
                    store._write_batch(random_state, init, params, [], "running", self.best)

            def on_iteration(self, it):
                store._write_batch(
                    random_state, it.init, it.params, list(it.lower_bounds), "running", self.best
                )

            def on_run_end(self, init, run, best):
                self.best = best
                status = "running" if init + 1 < n_init else "done"
                store._write_batch(random_state, init + 1, None, None, status, best)

        writer = _Writer()
        saved = load(self.path)
        if saved is not None and saved[0].get("best") is not None:
            b = saved[0]["best"]
            writer.best = EMRun(self.family.params_from_arrays(_unprefixed("best_", saved[1])), b["n_iter"],
                                b["converged"], b["lower_bound"], b["lower_bounds"])  # fmt: skip
        return writer

    # ---------------------------------------------------------------- online EM
    def resume_online(self) -> OnlineResume | None:
        from .online import OnlineState

        saved = self._saved()
        if saved is None:
            return None
        meta, arrays = saved
        params = self.family.params_from_arrays(_unprefixed("cur_", arrays))
        state = OnlineState(self.family.stats_from_arrays(_unprefixed("s_", arrays)), int(meta["n_steps"]),
                            self.family)  # fmt: skip
        done = meta["status"] == "done"
        if done:
            self._say(f"holds a finished online fit ({meta['passes']} passes): returning its result")
        else:
            self._say(f"resuming the online fit after pass {meta['passes']}")
        converged = bool(meta.get("converged", False))
        return OnlineResume(params, state, meta["passes"], list(meta["lower_bounds"]), done, converged)

    def write_online(
        self, done: int, params, state, history, status: str = "running", converged=False
    ) -> None:
        arrays = {**_prefixed("cur_", self.family.param_arrays(params)),
                  **_prefixed("s_", self.family.stats_arrays(state.stats))}  # fmt: skip
        meta = {**self.meta, "algorithm": "online", "passes": done, "lower_bounds": list(history),
                "n_steps": state.n_steps, "status": status, "converged": converged}  # fmt: skip
        save(self.path, meta, arrays)
