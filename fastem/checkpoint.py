"""Resumable fits: the state after every complete pass, written atomically.

``GaussianMixture.fit(..., checkpoint=path)`` writes, after each pass, an
``.npz`` file (arrays only, loaded with ``allow_pickle=False``) holding the
parameters, the history of the run, the random generator's state between
initialisations, and a JSON header with

* a fingerprint of the data (format, path, file size, shape, dtype, chunk
  rows, hashes of the first and last rows, hash of the sample weights), and
* a fingerprint of the configuration (every estimator parameter that changes
  the result, the algorithm, the fastem version).

The file is written to a temporary name in the same directory, fsynced and
renamed, so a crash leaves either the previous or the new checkpoint. A fit
started again with the same arguments resumes after the last complete pass and
ends bitwise identical to an uninterrupted fit, because the state it resumes
from is exactly (bit for bit) the state the uninterrupted fit had at that
point. A checkpoint from other data or another configuration is refused.
A checkpoint of a finished fit makes ``fit`` return that result at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ._em import EMRun, better_run, report_run, run_em
from ._executor import ArrayExecutor
from ._stats import GaussianParams, SufficientStats

FORMAT = "fastem-checkpoint"
VERSION = 1

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


def data_fingerprint(executor, sample_weight) -> dict:
    """What identifies the data of a fit (the source's scan fingerprint, or an array's hash)."""
    if getattr(executor, "fingerprint", None):
        fp = dict(executor.fingerprint)
    elif isinstance(executor, ArrayExecutor):
        X = executor.X
        fp = {"kind": "array", "n_samples": int(X.shape[0]), "n_features": int(X.shape[1]),
              "dtype": X.dtype.str, "hash": _hash_array(X)}  # fmt: skip
    else:
        raise TypeError(f"checkpoints are not supported for {type(executor).__name__} inputs.")
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
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("__meta__")))
    except Exception as exc:
        raise ValueError(
            f"'{path}' is not a readable fastem checkpoint ({exc}). Delete it or choose another path."
        ) from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"'{path}' is not a fastem checkpoint of version {VERSION}.")
    return meta, arrays


def check(path, meta: dict, data_fp: dict, config_fp: dict) -> None:
    """Refuse a checkpoint written for other data or another configuration."""
    problems = _mismatch("data", meta["data"], data_fp) + _mismatch("config", meta["config"], config_fp)
    if problems:
        raise CheckpointMismatchError(
            f"The checkpoint '{path}' was written by a fit on other data or with another "
            "configuration, so it cannot be resumed:\n  "
            + "\n  ".join(problems[:10])
            + "\nDelete the file or pass another checkpoint path to start afresh."
        )


def _params_arrays(prefix: str, params: GaussianParams) -> dict[str, np.ndarray]:
    # covariances are saved as computed by the M-step: recomputing them from the
    # precisions would round differently and break bitwise resumption
    out = {f"{prefix}weights": params.weights, f"{prefix}means": params.means,
           f"{prefix}prec_chol": params.precisions_cholesky}  # fmt: skip
    if params.covariances is not None:
        out[f"{prefix}cov"] = np.asarray(params.covariances)
    return out


def _params_from(prefix: str, arrays: dict, kind: str) -> GaussianParams:
    cov = arrays.get(f"{prefix}cov")
    return GaussianParams(
        kind,
        arrays[f"{prefix}weights"].copy(),
        arrays[f"{prefix}means"].copy(),
        arrays[f"{prefix}prec_chol"].copy(),
        None if cov is None else cov.copy(),
    )


def _rng_arrays(random_state: np.random.RandomState) -> tuple[dict, dict]:
    name, keys, pos, has_gauss, cached = random_state.get_state()
    return {"rng_keys": keys}, {"name": name, "pos": int(pos), "has_gauss": int(has_gauss), "cached": cached}


def _set_rng(random_state: np.random.RandomState, arrays: dict, meta: dict) -> None:
    r = meta["rng"]
    random_state.set_state((r["name"], arrays["rng_keys"], r["pos"], r["has_gauss"], r["cached"]))


def fit_restarts_checkpointed(
    path,
    executor,
    initialise,
    random_state: np.random.RandomState,
    *,
    covariance_type: str,
    data_fp: dict,
    config_fp: dict,
    n_init: int,
    tol: float,
    max_iter: int,
    reg_covar: float,
    start_lower_bound: float = -np.inf,
    verbose: int = 0,
    verbose_interval: int = 10,
) -> EMRun:
    """``fit_restarts`` that saves its state after every pass and resumes from ``path``."""
    saved = load(path)
    meta: dict = {"format": FORMAT, "version": VERSION, "algorithm": "batch",
                  "data": data_fp, "config": config_fp}  # fmt: skip
    best: EMRun | None = None
    first_init, resume = 0, None
    if saved is not None:
        old_meta, arrays = saved
        check(path, old_meta, data_fp, config_fp)
        if old_meta["best"] is not None:
            b = old_meta["best"]
            best = EMRun(_params_from("best_", arrays, covariance_type), b["n_iter"], b["converged"],
                         b["lower_bound"], b["lower_bounds"])  # fmt: skip
        if old_meta["status"] == "done":
            assert best is not None
            return best
        first_init = old_meta["init"]
        if old_meta["lower_bounds"] is not None:  # a run in progress (else: start this init afresh)
            resume = (_params_from("cur_", arrays, covariance_type), old_meta["lower_bounds"])
        _set_rng(random_state, arrays, old_meta)

    def write(init: int, params: GaussianParams | None, lbs: list[float] | None, status: str) -> None:
        rng_arrays, rng_meta = _rng_arrays(random_state)
        best_meta = None
        arrays = {**rng_arrays, **(_params_arrays("cur_", params) if params is not None else {})}
        if best is not None:
            best_meta = {"n_iter": best.n_iter, "converged": best.converged,
                         "lower_bound": best.lower_bound, "lower_bounds": best.lower_bounds}  # fmt: skip
            arrays.update(_params_arrays("best_", best.params))
        save(path, {**meta, "init": init, "status": status, "lower_bounds": lbs, "best": best_meta,
                    "rng": rng_meta}, arrays)  # fmt: skip

    for init in range(first_init, n_init):
        if verbose:
            print(f"Initialization {init}")
        if resume is not None:
            params, lbs = resume
            resume = None
        else:
            params, lbs = initialise(init), []
            write(init, params, lbs, "running")
        done = len(lbs)
        history = list(lbs)
        if hasattr(executor, "start_run"):
            executor.start_run(done, history[-1] if history else start_lower_bound)

        # the state after each pass is saved when the next pass starts from it
        # (the first pass starts from a state that is already on disk)
        def accumulate(p: GaussianParams, _init=init, _history=history, _done=done) -> SufficientStats:
            if len(_history) > _done:
                write(_init, p, list(_history), "running")
            return executor.accumulate(p)

        def on_iteration(n_iter, lower_bound, change, _history=history) -> None:
            _history.append(lower_bound)

        if max_iter == 0:
            run = EMRun(params, 0, False, -np.inf, [])
        elif done >= max_iter:
            run = EMRun(params, done, False, history[-1], history)
        else:
            part = run_em(
                accumulate, params, tol=tol, max_iter=max_iter - done, reg_covar=reg_covar,
                lower_bound=history[-1] if history else start_lower_bound,
                verbose=verbose, verbose_interval=verbose_interval, on_iteration=on_iteration,
            )  # fmt: skip
            run = EMRun(part.params, done + part.n_iter, part.converged, part.lower_bound,
                        list(lbs) + part.lower_bounds)  # fmt: skip
        if verbose and max_iter > 0:
            report_run(run)
        best = better_run(best, run)
        write(init + 1, None, None, "running" if init + 1 < n_init else "done")
    assert best is not None
    return best


def fit_online_checkpointed(path, estimator, executor, initialise, *, data_fp, config_fp, n_passes):
    """Online fit that saves params + running statistics after every pass, and resumes."""
    from .online import OnlineState, fit_online

    kind = estimator.covariance_type
    meta = {"format": FORMAT, "version": VERSION, "algorithm": "online", "data": data_fp, "config": config_fp}
    saved = load(path)
    state, passes_done, lbs = None, 0, []
    if saved is not None:
        old_meta, arrays = saved
        check(path, old_meta, data_fp, config_fp)
        params = _params_from("cur_", arrays, kind)
        passes_done, lbs = old_meta["passes"], old_meta["lower_bounds"]
        stats = SufficientStats(kind, arrays["s_shift"].copy(), arrays["s_R"].copy(), arrays["s_S1"].copy(),
                                arrays["s_S2"].copy(), arrays["s_scalars"].copy(),
                                arrays["s_worst_index"].copy(), arrays["s_worst_x"].copy())  # fmt: skip
        state = OnlineState(stats, int(old_meta["n_steps"]))
        if old_meta["status"] == "done":
            from ._em import EMRun as _Run

            return _Run(params, len(lbs), bool(old_meta["converged"]), lbs[-1], lbs), state
    else:
        params = initialise(0)

    def on_pass(done, p, st, history, status="running", converged=False):
        s = st.stats
        worst_x = s.worst_x if s.worst_x is not None else np.zeros(p.n_features)
        arrays = {**_params_arrays("cur_", p), "s_shift": s.shift, "s_R": s.R, "s_S1": s.S1, "s_S2": s.S2,
                  "s_scalars": s.scalars, "s_worst_index": s.worst_index, "s_worst_x": worst_x}  # fmt: skip
        save(path, {**meta, "passes": done, "lower_bounds": list(history), "n_steps": st.n_steps,
                    "status": status, "converged": converged}, arrays)  # fmt: skip

    run, state = fit_online(estimator, executor, params, n_passes=n_passes, on_pass=on_pass,
                            state=state, passes_done=passes_done, lower_bounds=lbs)  # fmt: skip
    on_pass(run.n_iter, run.params, state, run.lower_bounds, "done", run.converged)  # mark it finished
    return run, state
