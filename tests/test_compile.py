"""Compiling kernels: the stderr notice, ``fastem compile``, the on-disk cache, and the block runner.

The subprocess tests point NUMBA_CACHE_DIR at an empty folder, so they see a
fresh machine; they compile only cheap kernels, except one diag selection.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numba
import numpy as np
import pytest

from fastem import _compile
from fastem._kernels import _notice
from fastem._kernels._blocks import add_partials, run_blocks
from fastem._kernels._config import jit

NOTICE = "fastem: compiling kernels"

# the cheapest fastem kernel: the serial merge of block partials
_CHEAP = (
    "import numpy as np; from fastem._kernels._blocks import add_partials; "
    "add_partials(np.ones((2, 3)), np.zeros(3))"
)


def _run(code_or_args, cache_dir, extra_env=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "NUMBA_NUM_THREADS": "2"}
    env.pop("FASTEM_COMPILE_NOTICE", None)
    env.update(extra_env or {})
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_notice_while_compiling_and_not_when_loading_from_the_cache(tmp_path):
    first = _run(_CHEAP, tmp_path)
    assert first.returncode == 0, first.stderr
    lines = [line for line in first.stderr.splitlines() if line.startswith(NOTICE)]
    assert len(lines) == 1, first.stderr
    assert "first use only; cached in " + str(tmp_path) in lines[0]
    second = _run(_CHEAP, tmp_path)  # a new process: loads the kernel, compiles nothing
    assert second.returncode == 0, second.stderr
    assert NOTICE not in second.stderr


def test_an_edit_to_any_kernel_module_recompiles_the_cached_kernels(tmp_path):
    # numba checks a cached kernel against its own file only; kernels inline helpers from the other
    # modules, so fastem ties every cached kernel to all of them (_config.KERNEL_SOURCES_DIGEST)
    import shutil

    import fastem

    copy = tmp_path / "src"
    shutil.copytree(
        Path(fastem.__file__).parent, copy / "fastem", ignore=shutil.ignore_patterns("__pycache__")
    )
    # the copy first on the path (before the working directory, which -c puts first)
    probe = (
        f"import sys; sys.path.insert(0, {str(copy)!r}); "
        + _CHEAP
        + "; import fastem; print(fastem.__file__)"
    )
    runs = []
    for edit in (None, None, "_simd.py", None):  # _blocks.add_partials uses nothing from _simd.py
        if edit:
            with open(copy / "fastem" / "_kernels" / edit, "a") as module:
                module.write("\n# an edit\n")
        result = _run(probe, tmp_path / "cache")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().startswith(str(copy)), result.stdout  # the copy ran
        runs.append(NOTICE in result.stderr)
    assert runs == [True, False, True, False]  # compiled, cached, recompiled after the edit, cached


def test_every_kernel_carries_the_kernel_sources_digest():
    # the digest rides on numba's cache stamp, an internal attribute: fail here if numba moves it
    import importlib
    import pkgutil

    import fastem._kernels
    from fastem._kernels._config import KERNEL_SOURCES_DIGEST

    kernels = []
    for info in pkgutil.iter_modules(fastem._kernels.__path__):
        module = importlib.import_module(f"fastem._kernels.{info.name}")
        kernels += [obj for obj in vars(module).values() if isinstance(obj, numba.core.dispatcher.Dispatcher)]
    assert len(kernels) > 50
    for kernel in kernels:
        assert kernel._cache._cache_file._source_stamp[1] == KERNEL_SOURCES_DIGEST, kernel


def test_notice_can_be_silenced(tmp_path):
    result = _run(_CHEAP, tmp_path, {"FASTEM_COMPILE_NOTICE": "0"})
    assert result.returncode == 0, result.stderr
    assert NOTICE not in result.stderr


def test_compile_command_fills_the_cache_so_a_fit_compiles_nothing(tmp_path):
    command = [
        "-m",
        "fastem",
        "compile",
        "--family",
        "gaussian",
        "--covariance",
        "diag",
        "--dtype",
        "float64",
    ]
    compiled = _run(command, tmp_path)
    assert compiled.returncode == 0, compiled.stderr
    assert "gaussian diag float64" in compiled.stdout
    assert "compiled)" in compiled.stdout and "already cached" not in compiled.stdout
    assert compiled.stdout.splitlines()[-1].startswith("done in ")
    fit = (
        "import numpy as np; from fastem import GaussianMixture; "
        "X = np.random.default_rng(0).normal(size=(200, 3)); "
        "m = GaussianMixture(2, covariance_type='diag', random_state=0).fit(X); "
        "m.predict_proba(X); m.score(X)"
    )
    after = _run(fit, tmp_path)
    assert after.returncode == 0, after.stderr
    assert NOTICE not in after.stderr  # every kernel came from the cache


def test_compile_command_rejects_an_unknown_family(tmp_path):
    result = _run(["-m", "fastem", "compile", "--family", "gauss"], tmp_path)
    assert result.returncode == 2
    assert "unknown family gauss" in result.stderr


def test_jobs_follow_the_selection():
    jobs = _compile.compile_jobs(["gaussian", "poisson", "student-t"], ["full", "spherical"], ["float32"])
    assert jobs == [
        ("gaussian", "full", "float32"),
        ("gaussian", "spherical", "float32"),
        ("poisson", None, "float32"),
        ("student-t", "full", "float32"),  # Student-t has no spherical covariance
    ]
    everything = _compile.compile_jobs()
    assert len(everything) == 2 * (4 + 2 + 4)


def test_notice_prints_one_line_per_burst_with_the_kernel_label():
    import io

    stream = io.StringIO()
    notice = _notice._Notice(stream)
    notice.enabled = True

    class FakeDispatcher:
        def __init__(self, module, name):
            self.py_func = types.SimpleNamespace(__module__=module, __name__=name)

    class FakeArray:
        dtype = "float32"

    full = FakeDispatcher("fastem._kernels.gaussian", "_blocks_full_tied")
    other = FakeDispatcher("numba.np.arrayobj", "impl")
    notice.on_start(other, None)  # numba's own helpers are not announced
    notice.on_start(full, (FakeArray(),))
    notice.on_start(full, (FakeArray(),))  # nested: same burst
    notice.on_end(full)
    notice.on_end(full)
    notice.on_start(full, (FakeArray(),))  # right after: same burst
    notice.on_end(full)
    lines = stream.getvalue().splitlines()
    assert lines == [f"{NOTICE} for full/tied covariances, float32 (first use only; not cached: numba has no "
                     "cache directory here)"]  # fmt: skip
    notice.last_end -= 2 * _notice.BURST_GAP  # later: a new line
    notice.on_start(full, (FakeArray(),))
    assert len(stream.getvalue().splitlines()) == 2
    notice.on_end(full)


def test_notice_names_float32_sums():
    import io

    stream = io.StringIO()
    notice = _notice._Notice(stream)
    notice.enabled = True
    kernel = types.SimpleNamespace(__module__="fastem._kernels.gaussian", __name__="_blocks_diag_spherical")
    dispatcher = types.SimpleNamespace(py_func=kernel)
    data = types.SimpleNamespace(dtype="float32")
    # the kernel's arguments: X, sample_weight, log_norm, means, means_acc (float32 sums), ...
    notice.on_start(dispatcher, (data, None, None, None, types.SimpleNamespace(dtype="float32")))
    notice.on_end(dispatcher)
    notice.last_end -= 2 * _notice.BURST_GAP
    notice.on_start(dispatcher, (data, None, None, None, types.SimpleNamespace(dtype="float64")))
    lines = stream.getvalue().splitlines()
    assert "diag/spherical covariances, float32 with float32 sums (first use" in lines[0]
    assert "diag/spherical covariances, float32 (first use" in lines[1]


@jit()
def _fill_blocks(out, value, blk_start, blk_stop):
    for blk in range(blk_start, blk_stop):
        out[blk] += value + blk


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n_blocks", [0, 1, 5])
def test_run_blocks_covers_every_block_once(threads, n_blocks):
    out = np.zeros(n_blocks)
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        run_blocks(_fill_blocks, n_blocks, out, 10.0)
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(out, 10.0 + np.arange(n_blocks))


@pytest.mark.parametrize("threads", [1, 2])
def test_run_blocks_hands_the_first_range_to_the_caller_when_it_is_done(threads):
    import threading

    out = np.zeros(6)
    seen = []
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        used = numba.get_num_threads()
        run_blocks(
            _fill_blocks, 6, out, 10.0,
            on_first_range=lambda stop: seen.append((threading.get_ident(), stop, out[:stop].copy())),
        )  # fmt: skip
    finally:
        numba.set_num_threads(previous)
    assert len(seen) == 1
    ident, stop, done = seen[0]
    assert ident == threading.get_ident()  # on the calling thread, which ran the first range
    assert stop == (6 if used == 1 else 3)
    np.testing.assert_array_equal(done, 10.0 + np.arange(stop))  # those blocks were finished
    np.testing.assert_array_equal(out, 10.0 + np.arange(6))


def test_run_blocks_raises_a_kernel_error():
    def failing(blk_start, blk_stop):
        if blk_start > 0:
            raise RuntimeError("block failed")

    previous = numba.get_num_threads()
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    try:
        if numba.get_num_threads() < 2:
            pytest.skip("needs two numba threads")
        with pytest.raises(RuntimeError, match="block failed"):
            run_blocks(failing, 4)
    finally:
        numba.set_num_threads(previous)


def test_map_on_threads_shares_items_among_threads_and_keeps_their_order():
    import threading

    from fastem._kernels._blocks import map_on_threads

    threads = min(2, numba.config.NUMBA_NUM_THREADS)
    meeting = threading.Barrier(threads, timeout=30)  # each thread must take an item for any to go on
    seen: list[tuple[int, int, int]] = []

    def job(item):
        if item < threads:
            meeting.wait()
        seen.append((item, threading.get_ident(), numba.get_num_threads()))
        return item * item

    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        assert map_on_threads(job, list(range(7))) == [i * i for i in range(7)]
        assert numba.get_num_threads() == threads  # the caller's setting is restored
    finally:
        numba.set_num_threads(previous)
    assert sorted(item for item, _, _ in seen) == list(range(7))
    assert len({ident for _, ident, _ in seen}) == threads
    assert {kernel_threads for _, _, kernel_threads in seen} == {1}  # each job's kernels on one thread
    assert map_on_threads(job, []) == []


def test_add_partials_adds_in_block_order():
    parts = np.array([[1e16, 1.0], [1.0, -1e16], [-1e16, 1e16]])
    acc = np.zeros(2)
    add_partials(parts, acc)
    expected = np.zeros(2)
    for row in parts:  # ((0 + a) + b) + c, element by element
        expected += row
    np.testing.assert_array_equal(acc, expected)
    # in order, the 1.0 is lost beside 1e16 in both columns; adding the 1e16s first would keep it
    np.testing.assert_array_equal(acc, [0.0, 0.0])


def test_add_partials_refuses_a_strided_accumulator():
    acc = np.zeros((2, 4))[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        add_partials(np.ones((3, 2, 2)), acc)


def test_a_linked_helper_is_inlined_into_its_caller_by_llvm():
    """``linked_jit`` (numba's private ``_nrt`` and ``forceinline`` options, which a numba upgrade
    could drop or change): the helper compiles, computes, and leaves no call in the caller's code."""
    from fastem._kernels._linked import linked_jit

    @linked_jit()
    def _scaled_sum_into(x, scale, out):
        total = 0.0
        for i in range(x.shape[0]):
            total += x[i] * scale
        out[0] = total

    @jit()
    def _caller(x, out):
        _scaled_sum_into(x, 2.0, out)
        return out[0]

    x = np.arange(5.0)
    assert _caller(x, np.zeros(1)) == 20.0
    helper_ir = _scaled_sum_into.inspect_llvm(_scaled_sum_into.signatures[0])
    assert "alwaysinline" in helper_ir
    caller_ir = _caller.inspect_llvm(_caller.signatures[0])
    calls = [line for line in caller_ir.splitlines() if "call " in line and "_scaled_sum_into" in line]
    assert not calls, calls
