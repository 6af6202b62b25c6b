"""Checkpoints: kill -9 mid-pass, resume, bitwise identical result; foreign checkpoints refused."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import make_mixture
from numpy.testing import assert_array_equal

from fastem import BLOCK_ROWS, GaussianMixture
from fastem.checkpoint import CheckpointMismatchError
from fastem.sources import NpySource

ROOT = Path(__file__).resolve().parents[1]
N_ROWS = 3 * BLOCK_ROWS  # three chunks of BLOCK_ROWS per pass

CHILD = textwrap.dedent(
    """
    import os, signal, sys, warnings
    import numpy as np
    import fastem.families.gaussian as gaussian
    from fastem import GaussianMixture
    from fastem.sources import NpySource

    data, ckpt, out, kill_at, algorithm, n_init = sys.argv[1:7]
    kill_at = int(kill_at)
    calls = [0]
    real = gaussian.accumulate_chunk

    def counting(*args, **kw):  # one call per chunk of an EM pass
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kw)

    gaussian.accumulate_chunk = counting
    warnings.simplefilter("ignore")
    gm = GaussianMixture(3, random_state=0, tol=0.0, max_iter=6, n_init=int(n_init), batch_size=2048)
    gm.fit(NpySource(data, chunk_rows=4096), checkpoint=ckpt, algorithm=algorithm, n_passes=4)
    np.savez(out, means=gm.means_, cov=gm.covariances_, weights=gm.weights_, lbs=gm.lower_bounds_,
             calls=calls[0])
    """
)


def _run(tmp_path, kill_at, algorithm="batch", n_init=1, state="state.ckpt", out="out.npz"):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    args = [sys.executable, str(script), str(tmp_path / "x.npy"), str(tmp_path / state),
            str(tmp_path / out), str(kill_at), algorithm, str(n_init)]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.parametrize("algorithm,n_init,kill_at", [("batch", 1, 8), ("batch", 2, 23), ("online", 1, 9)])
def test_sigkill_mid_pass_then_resume_is_bitwise_identical(tmp_path, algorithm, n_init, kill_at):
    X = make_mixture(N_ROWS, seed=5)[0]
    np.save(tmp_path / "x.npy", X)
    # The uninterrupted reference also runs in a child process: every process
    # then runs the kernels from numba's on-disk cache. (Code that numba has
    # just JIT-compiled in-process can round differently in the last bit from
    # the cached object code, so a reference fitted in this process would
    # compare two compilations, not two runs.)
    # Warm numba's cache here first, so that no child compiles.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm = GaussianMixture(3, random_state=0, tol=0.0, max_iter=2, n_init=n_init, batch_size=2048)
        warm.fit(NpySource(tmp_path / "x.npy", chunk_rows=4096), algorithm=algorithm, n_passes=2)
    uninterrupted = _run(tmp_path, 0, algorithm, n_init, state="ref.ckpt", out="ref.npz")
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    ref = np.load(tmp_path / "ref.npz")
    killed = _run(tmp_path, kill_at, algorithm, n_init)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (tmp_path / "state.ckpt").exists()
    assert not (tmp_path / "out.npz").exists()
    resumed = _run(tmp_path, 0, algorithm, n_init)
    assert resumed.returncode == 0, resumed.stderr
    got = np.load(tmp_path / "out.npz")
    for key in ("means", "cov", "weights", "lbs"):
        assert_array_equal(got[key], ref[key])
    # and the streamed, checkpointed fit is the in-memory fit (to rounding)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = GaussianMixture(3, random_state=0, tol=0.0, max_iter=6, n_init=n_init, batch_size=2048)
        mem.fit(X, algorithm=algorithm, n_passes=4)
    np.testing.assert_allclose(got["means"], mem.means_, rtol=1e-12, atol=1e-14)
    # it resumed: the completed passes were not run again
    passes_total = 6 * n_init * 3 if algorithm == "batch" else 4 * 6  # online: 2 batches per chunk
    assert got["calls"] < passes_total
    assert got["calls"] > 0
    # a finished checkpoint returns the same result without any pass
    again = _run(tmp_path, 0, algorithm, n_init)
    assert again.returncode == 0 and np.load(tmp_path / "out.npz")["calls"] == 0
    assert_array_equal(np.load(tmp_path / "out.npz")["means"], ref["means"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_checkpoint_of_other_data_or_configuration_is_refused(tmp_path):
    X = make_mixture(2000, seed=1)[0]
    np.save(tmp_path / "a.npy", X)
    ckpt = tmp_path / "c.ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        GaussianMixture(3, random_state=0, max_iter=3).fit(tmp_path / "a.npy", checkpoint=ckpt)
        X2 = X.copy()
        X2[-1, 0] += 1.0  # same shape and head: only the tail hash differs
        np.save(tmp_path / "a.npy", X2)
        with pytest.raises(CheckpointMismatchError, match="tail"):
            GaussianMixture(3, random_state=0, max_iter=3).fit(tmp_path / "a.npy", checkpoint=ckpt)
        np.save(tmp_path / "a.npy", X)
        with pytest.raises(ValueError, match="n_components"):
            GaussianMixture(2, random_state=0, max_iter=3).fit(tmp_path / "a.npy", checkpoint=ckpt)
        gm = GaussianMixture(3, random_state=0, max_iter=3).fit(tmp_path / "a.npy", checkpoint=ckpt)
        with pytest.raises(ValueError, match="other data"):
            GaussianMixture(3, random_state=0, max_iter=3).fit(X[:1500], checkpoint=ckpt)
    (tmp_path / "junk.ckpt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable fastem checkpoint"):
        GaussianMixture(3, random_state=0, max_iter=3).fit(X, checkpoint=tmp_path / "junk.ckpt")
    fresh = GaussianMixture(3, random_state=0, max_iter=3).fit(tmp_path / "a.npy")
    assert_array_equal(gm.means_, fresh.means_)  # the finished checkpoint's result


def test_in_memory_fit_with_checkpoint_equals_plain_fit(tmp_path, X):
    a = GaussianMixture(3, random_state=1, n_init=2).fit(X)
    b = GaussianMixture(3, random_state=1, n_init=2).fit(X, checkpoint=tmp_path / "m.ckpt")
    assert_array_equal(a.means_, b.means_)
    assert a.lower_bounds_ == b.lower_bounds_


def test_checkpointed_restarts_keep_the_same_run_as_plain_restarts(tmp_path):
    # with max_iter=0 every bound is -inf: like scikit-learn, the last initialisation is kept
    X = make_mixture(2000, seed=3)[0]
    np.save(tmp_path / "x.npy", X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = GaussianMixture(3, random_state=0, max_iter=0, n_init=3).fit(tmp_path / "x.npy")
        ckpt = GaussianMixture(3, random_state=0, max_iter=0, n_init=3)
        ckpt.fit(tmp_path / "x.npy", checkpoint=tmp_path / "c.ckpt")
        first = GaussianMixture(3, random_state=0, max_iter=0, n_init=1).fit(tmp_path / "x.npy")
    assert not np.array_equal(plain.means_, first.means_)  # the restarts really differ
    assert_array_equal(ckpt.means_, plain.means_)


class _Interrupt(Exception):
    """Stands for a fit stopped mid-way (a kill, a Ctrl-C): the checkpoint keeps the passes done."""


def _interrupt_at(n: int):
    def callback(it):
        if it.n_iter == n:
            raise _Interrupt

    return callback


def test_a_resumed_batch_fit_says_where_it_resumed(tmp_path, capsys):
    X = make_mixture(2000, seed=2)[0]
    np.save(tmp_path / "x.npy", X)
    ckpt = tmp_path / "c.ckpt"
    kw = dict(random_state=0, tol=0.0, max_iter=5, n_init=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(_Interrupt):  # the second initialization stopped in its 4th iteration

            def second_run(it):
                if it.init == 1 and it.n_iter == 4:
                    raise _Interrupt

            GaussianMixture(3, **kw).fit(tmp_path / "x.npy", checkpoint=ckpt, callbacks=second_run)
        capsys.readouterr()
        GaussianMixture(3, verbose=0, **kw).fit(tmp_path / "x.npy", checkpoint=tmp_path / "fresh.ckpt")
        assert capsys.readouterr().out == ""  # verbose=0: nothing
        gm = GaussianMixture(3, verbose=1, **kw).fit(tmp_path / "x.npy", checkpoint=ckpt)
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0]
        == f"Checkpoint '{ckpt}': resuming initialization 1 after iteration 3 (those 3 passes are kept)."
    )
    assert lines[1] == "Initialization 1"  # the verbose lines that follow use the same numbering
    assert gm.n_iter_ == 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        GaussianMixture(3, verbose=1, **kw).fit(tmp_path / "x.npy", checkpoint=ckpt)
    out = capsys.readouterr().out
    assert out.startswith(
        f"Checkpoint '{ckpt}': holds a finished fit (2 initialization(s)): returning its result"
    )


def test_a_resumed_online_fit_says_where_it_resumed(tmp_path, capsys):
    X = make_mixture(3 * BLOCK_ROWS, seed=4)[0]
    np.save(tmp_path / "x.npy", X)
    ckpt = tmp_path / "o.ckpt"
    kw = dict(random_state=0, batch_size=2048, tol=0.0)
    source = NpySource(tmp_path / "x.npy", chunk_rows=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(_Interrupt):
            GaussianMixture(3, **kw).fit(source, checkpoint=ckpt, algorithm="online", n_passes=4,
                                         callbacks=_interrupt_at(3))  # fmt: skip
        capsys.readouterr()
        GaussianMixture(3, verbose=1, **kw).fit(source, checkpoint=ckpt, algorithm="online", n_passes=4)
        # the state after pass 3 was saved before the interruption
        assert f"Checkpoint '{ckpt}': resuming the online fit after pass 3." in capsys.readouterr().out
        GaussianMixture(3, verbose=1, **kw).fit(source, checkpoint=ckpt, algorithm="online", n_passes=4)
        assert f"Checkpoint '{ckpt}': holds a finished online fit (4 passes)" in capsys.readouterr().out
